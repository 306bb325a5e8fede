//! `halcyon-lab compare` end to end, keepalived only, one run and a 2 s split of each kind
//! (fast: a few seconds). Root
//! only; skipped with a message when keepalived is not installed. Pacemaker is deliberately not
//! run here (its first start takes about 20 s and every run more): the full comparison is the
//! documented command in the README.

use std::process::Command;

use halcyon_lab::running_as_root_or_skip;

const LAB_BINARY: &str = env!("CARGO_BIN_EXE_halcyon-lab");

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
    })
}

#[test]
fn compare_measures_a_keepalived_failover_with_zero_guard_violations() {
    if !running_as_root_or_skip("compare_measures_a_keepalived_failover") {
        return;
    }
    if !on_path("keepalived") {
        eprintln!(
            "skipped: keepalived is not installed (apt-get install -y keepalived) \
             (compare_measures_a_keepalived_failover)"
        );
        return;
    }
    let output = Command::new(LAB_BINARY)
        .args([
            "compare",
            "--systems",
            "keepalived",
            "--keepalived-advert",
            "0.1",
            "--runs",
            "1",
            "--idle-seconds",
            "2",
            "--split-seconds",
            "2",
        ])
        .output()
        .expect("halcyon-lab runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "compare failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let row = stdout
        .lines()
        .find(|line| line.starts_with("keepalived ") && line.contains("advert_int 0.1 s"))
        .unwrap_or_else(|| panic!("no keepalived row:\n{stdout}\n{stderr}"));
    // runs, median, p90, worst: "1  0.312 s  0.312 s  0.312 s".
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    assert_eq!(cells.get(2), Some(&"1"), "one run measured: {row}");
    let median: f64 = cells
        .get(3)
        .and_then(|cell| cell.strip_suffix(" s"))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no measured median in {row}"));
    assert!(median > 0.0 && median < 30.0, "median {median} s: {row}");
    assert!(
        stdout.contains(
            "guard violations (packets from a lab namespace to outside 198.18.0.0/15, all labs): 0"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("command: "), "{stdout}");
    // keepalived has no quorum: cut off or stopped for 2 s, the holder keeps the address
    // while a backup takes it (at 0.1 s adverts within about 0.35 s).
    let split = stdout
        .split_once("split brain: keepalived [advert_int 0.1 s")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no split brain figures:\n{stdout}\n{stderr}"));
    for fault in [
        "cut off from the other hosts for 2 s",
        "every process of the manager on the holder",
    ] {
        let line = split
            .lines()
            .find(|line| line.contains(fault))
            .unwrap_or_else(|| panic!("no line for {fault:?}:\n{stdout}"));
        let seconds: f64 = line
            .split_once("on two hosts for ")
            .and_then(|(_, rest)| rest.split_once(" s"))
            .and_then(|(number, _)| number.parse().ok())
            .unwrap_or_else(|| panic!("no time on two hosts in {line}"));
        assert!(
            (0.5..=5.0).contains(&seconds),
            "keepalived split for {seconds} s of a 2 s fault: {line}"
        );
    }
}
