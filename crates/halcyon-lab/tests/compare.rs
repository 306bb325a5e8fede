//! `halcyon-lab compare` end to end, keepalived only and one run (fast: a few seconds). Root
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
}
