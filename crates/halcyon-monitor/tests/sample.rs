//! Samplers: output parsing, sampler specifications, the built-ins on this machine's /proc, and
//! the command runner (output, failures, timeouts that kill the process group).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use halcyon_monitor::sample::{
    FIELDS_MAX, OUTPUT_MAX, fs_use, parse_loadavg, parse_meminfo, parse_output, process_count,
    process_count_of, run_command, user_id,
};
use halcyon_monitor::{Sample, Sampler, check_sampler};

const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn output_numbers_and_records() {
    let cases: &[(&str, &[f64])] = &[
        ("42", &[42.0]),
        ("42\n", &[42.0]),
        ("  -3.5  \n\n", &[-3.5]),
        ("\n97.25\n", &[97.25]),
        ("0 3", &[0.0, 3.0]),
        ("0\t3  17\n", &[0.0, 3.0, 17.0]),
        ("0,3", &[0.0, 3.0]),
        ("0, 3 ,17", &[0.0, 3.0, 17.0]),
        ("1e3", &[1000.0]),
        ("+5", &[5.0]),
    ];
    for (output, fields) in cases {
        assert_eq!(
            parse_output(output),
            Ok(Sample::record(fields)),
            "{output:?}"
        );
    }
    let widest = vec!["1"; FIELDS_MAX].join(" ");
    assert_eq!(parse_output(&widest).unwrap().fields.len(), FIELDS_MAX);
}

#[test]
fn output_errors() {
    let too_wide = vec!["1"; FIELDS_MAX + 1].join(" ");
    let too_wide_error = format!("{too_wide:?}: the record has 65 fields; expected at most 64");
    let cases: Vec<(&str, String)> = vec![
        ("", "the output is empty; expected a number such as 42, or a record such as \"0 3\"".into()),
        (" \n\n", "the output is empty; expected a number such as 42, or a record such as \"0 3\"".into()),
        ("42\n43\n", "the output has 2 lines; expected one line: a number such as 42, or a record such as \"0 3\"".into()),
        ("abc", "\"abc\": \"abc\" is not a number; expected a number such as 42 or 0.5, or a record of numbers such as \"0 3\"".into()),
        ("90%", "\"90%\": \"90%\" is not a number; expected a number such as 42 or 0.5, or a record of numbers such as \"0 3\"".into()),
        ("0 abc 3", "\"0 abc 3\": field 2 (X@1) \"abc\" is not a number; expected a number such as 42 or 0.5".into()),
        ("1,,2", "\"1,,2\": field 2 (X@1) is empty; expected a number between the commas".into()),
        ("1,2,", "\"1,2,\": field 3 (X@2) is empty; expected a number between the commas".into()),
        ("nan", "\"nan\": \"nan\" is not a number; expected a number such as 42 or 0.5, or a record of numbers such as \"0 3\"".into()),
        ("1 inf", "\"1 inf\": field 2 (X@1) \"inf\" is not a number; expected a number such as 42 or 0.5".into()),
        (&too_wide, too_wide_error),
    ];
    let mut failures = Vec::new();
    for (output, expected) in &cases {
        let got = parse_output(output).map_err(|e| e.to_string());
        if got.as_ref() != Err(expected) {
            failures.push(format!(
                "{output:?}\n  expected: {expected}\n  got:      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sampler_specifications() {
    assert_eq!(
        Sampler::parse("builtin:process_count httpd"),
        Ok(Sampler::ProcessCount("httpd".into()))
    );
    assert_eq!(
        Sampler::parse(" builtin:fs_use   /tmp "),
        Ok(Sampler::FsUse(PathBuf::from("/tmp")))
    );
    assert_eq!(Sampler::parse("builtin:memory"), Ok(Sampler::Memory));
    assert_eq!(Sampler::parse("builtin:load"), Ok(Sampler::Load));
    assert_eq!(
        Sampler::parse("df -P /tmp | awk 'NR==2{print $5+0}'"),
        Ok(Sampler::Command(
            "df -P /tmp | awk 'NR==2{print $5+0}'".into()
        ))
    );
    let cases = [
        (
            "",
            "the sampler is empty; expected a command, or builtin:process_count NAME, builtin:fs_use PATH, builtin:memory or builtin:load",
        ),
        (
            "builtin:process_count",
            "builtin:process_count needs an argument; expected a process name, e.g. builtin:process_count httpd",
        ),
        (
            "builtin:fs_use",
            "builtin:fs_use needs an argument; expected an absolute path, e.g. builtin:fs_use /tmp",
        ),
        (
            "builtin:fs_use tmp",
            "builtin:fs_use \"tmp\": the path is relative; expected an absolute path such as /tmp",
        ),
        (
            "builtin:memory 1",
            "builtin:memory takes no argument, but was given \"1\"",
        ),
        (
            "builtin:load 5",
            "builtin:load takes no argument, but was given \"5\"",
        ),
        (
            "builtin:proces_count httpd",
            "unknown built-in sampler \"builtin:proces_count\"; expected process_count, fs_use, memory or load; hint: did you mean builtin:process_count?",
        ),
        (
            "builtin:mem",
            "unknown built-in sampler \"builtin:mem\"; expected process_count, fs_use, memory or load; hint: did you mean builtin:memory?",
        ),
        (
            "builtin:cpu",
            "unknown built-in sampler \"builtin:cpu\"; expected process_count, fs_use, memory or load",
        ),
    ];
    for (spec, expected) in cases {
        assert_eq!(
            check_sampler(spec).unwrap_err().to_string(),
            expected,
            "{spec:?}"
        );
    }
}

/// The first line of a /proc file of this process, without its newline.
fn own(file: &str) -> Vec<u8> {
    std::fs::read(format!("/proc/self/{file}")).unwrap()
}

#[test]
fn process_count_finds_this_process() {
    let comm = String::from_utf8(own("comm"))
        .unwrap()
        .trim_end()
        .to_owned();
    assert!(process_count(&comm).unwrap() >= 1, "comm {comm:?}");
    let sampled = Sampler::parse(&format!("builtin:process_count {comm}"))
        .unwrap()
        .sample(TIMEOUT)
        .unwrap();
    assert!(sampled.fields[0] >= 1.0);

    // argv[0]'s basename: the test binary's full name, longer than comm's 15 characters.
    let cmdline = own("cmdline");
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap();
    let basename =
        String::from_utf8(argv0.rsplit(|b| *b == b'/').next().unwrap().to_vec()).unwrap();
    assert!(basename.len() > 15, "{basename:?}");
    assert!(
        process_count(&basename).unwrap() >= 1,
        "argv[0] {basename:?}"
    );

    assert_eq!(process_count("no-such-process-halcyon-7f3a").unwrap(), 0);
}

#[test]
fn fs_use_of_the_root_file_system() {
    let percent = fs_use(std::path::Path::new("/"), TIMEOUT).unwrap();
    assert!((0.0..=100.0).contains(&percent), "{percent}");
    let sampled = Sampler::parse("builtin:fs_use /")
        .unwrap()
        .sample(TIMEOUT)
        .unwrap();
    assert!((0.0..=100.0).contains(&sampled.fields[0]));
    assert_eq!(
        fs_use(std::path::Path::new("/no/such/directory"), TIMEOUT)
            .unwrap_err()
            .to_string(),
        "builtin:fs_use \"/no/such/directory\": No such file or directory (os error 2)"
    );
    assert_eq!(
        fs_use(std::path::Path::new("/proc"), TIMEOUT)
            .unwrap_err()
            .to_string(),
        "builtin:fs_use \"/proc\": the file system reports no blocks (a pseudo file system?)"
    );
}

#[test]
fn memory_and_load() {
    let meminfo =
        "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n";
    assert_eq!(parse_meminfo(meminfo), Ok(75.0));
    assert_eq!(
        parse_meminfo("MemTotal: 100 kB\n").unwrap_err().to_string(),
        "/proc/meminfo: no MemAvailable line"
    );
    assert_eq!(
        parse_meminfo("MemTotal: lots kB\nMemAvailable: 1 kB\n")
            .unwrap_err()
            .to_string(),
        "/proc/meminfo: MemTotal: \"lots\" is not a number of kB"
    );
    assert_eq!(parse_loadavg("0.52 0.58 0.59 1/467 12345\n"), Ok(0.52));
    assert_eq!(
        parse_loadavg("").unwrap_err().to_string(),
        "/proc/loadavg: \"\" is not a load average"
    );

    let memory = Sampler::Memory.sample(TIMEOUT).unwrap().fields[0];
    assert!(memory > 0.0 && memory < 100.0, "{memory}");
    let load = Sampler::Load.sample(TIMEOUT).unwrap().fields[0];
    assert!(load >= 0.0, "{load}");
}

#[test]
fn command_sampler() {
    let sampler = Sampler::parse("echo 42").unwrap();
    assert_eq!(sampler.sample(TIMEOUT), Ok(Sample::number(42.0)));
    let record = Sampler::parse("printf '0 3\\n'").unwrap();
    assert_eq!(record.sample(TIMEOUT), Ok(Sample::record(&[0.0, 3.0])));
    assert_eq!(
        run_command("echo hello; echo world >&2", TIMEOUT),
        Ok("hello\n".into())
    );
}

#[test]
fn command_errors() {
    let error = |command: &str| {
        Sampler::parse(command)
            .unwrap()
            .sample(TIMEOUT)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        error("echo full"),
        "command \"echo full\": \"full\": \"full\" is not a number; expected a number such as 42 or 0.5, or a record of numbers such as \"0 3\""
    );
    assert_eq!(
        error("true"),
        "command \"true\": the output is empty; expected a number such as 42, or a record such as \"0 3\""
    );
    assert_eq!(
        error("echo 12; echo oops >&2; exit 3"),
        "command \"echo 12; echo oops >&2; exit 3\": ended with exit status 3: oops"
    );
    assert_eq!(
        error("kill -9 $$"),
        "command \"kill -9 $$\": ended with signal 9"
    );
    let flood = format!("head -c {} /dev/zero | tr '\\0' 1", OUTPUT_MAX * 4);
    assert_eq!(
        error(&flood),
        format!("command {flood:?}: printed more than 4096 bytes; expected one number or record")
    );
}

/// True while `pid` exists and is not a zombie (a killed process whose new parent, after its
/// shell died, has not reaped it yet).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'));
    exists && !zombie
}

/// Waits (bounded) for `pid` to vanish.
fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_group() {
    let dir = std::env::temp_dir().join(format!("halcyon-monitor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    // The shell starts a child in the same process group, then waits for it.
    let command = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let started = Instant::now();
    let error = run_command(&command, Duration::from_millis(300)).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        error.to_string(),
        format!("command {command:?}: timed out after 300ms; its process group was killed")
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "sleep {pid} survived the timeout");

    // A background process that keeps the output open after the shell exits.
    let command = format!("sleep 30 & echo $! > {}; echo 1", pid_file.display());
    let error = run_command(&command, Duration::from_millis(300)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "command {command:?}: timed out after 300ms (it exited, but a process it started kept its output open); its process group was killed"
        )
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "sleep {pid} survived the timeout");

    // A background process that closed its output is killed when the command is done.
    let command = format!(
        "sleep 30 >/dev/null 2>&1 & echo $! > {}; echo 7",
        pid_file.display()
    );
    assert_eq!(run_command(&command, TIMEOUT), Ok("7\n".into()));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(pid), "sleep {pid} was left behind");
    std::fs::remove_dir_all(&dir).unwrap();

    // Through a sampler: the timeout is the sampler's.
    let error = Sampler::parse("sleep 5; echo 1")
        .unwrap()
        .sample(Duration::from_millis(300))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("timed out after 300ms; its process group was killed"),
        "{error}"
    );
}

#[test]
fn process_count_skips_zombies_and_filters_by_user() {
    // A copy of sleep(1) under a name of its own: its comm is that name.
    let dir = tempfile::tempdir().unwrap();
    let name = format!("zmb{}", std::process::id() % 100_000);
    let program = dir.path().join(&name);
    std::fs::copy("/bin/sleep", &program).unwrap();
    let mut child = std::process::Command::new(&program)
        .arg("30")
        .spawn()
        .unwrap();
    assert_eq!(process_count(&name).unwrap(), 1);
    let me = own("status");
    let uid: u32 = String::from_utf8(me)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert_eq!(process_count_of(&name, Some(uid)).unwrap(), 1);
    assert_eq!(process_count_of(&name, Some(uid + 1)).unwrap(), 0);
    assert_eq!(user_id(&uid.to_string()), Ok(uid));
    assert_eq!(user_id("root"), Ok(0));
    assert_eq!(
        user_id("no-such-user-here"),
        Err("user \"no-such-user-here\": no such user on this node".to_owned())
    );
    // Killed and not yet reaped: a zombie, not counted.
    child.kill().unwrap();
    let started = std::time::Instant::now();
    while process_count(&name).unwrap() != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the zombie is counted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait().unwrap();
}

#[test]
fn a_command_gets_the_variables_it_is_given() {
    let sampled = Sampler::parse("echo $HALCYON_VALUE_A $HALCYON_VALUE_B")
        .unwrap()
        .sample_with_env(
            TIMEOUT,
            &[("HALCYON_VALUE_A", "4"), ("HALCYON_VALUE_B", "2")],
        )
        .unwrap();
    assert_eq!(sampled, Sample::record(&[4.0, 2.0]));
}
