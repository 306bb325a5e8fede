//! The watchdog, with regular files standing in for /dev/watchdog.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_watchdog_is_fed_while_the_lease_holds_and_disarmed_on_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("watchdog");
    std::fs::write(&device, b"").unwrap();
    // The three daemons share one stand-in file (a real device is per machine).
    let mut spec = Spec::new();
    spec.quorum.watchdog = Some(device.clone());
    let mut c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    let v = c.status(1).unwrap();
    assert!(
        v["watchdog"].as_str().unwrap().starts_with("armed"),
        "{v:#}"
    );
    // Keepalives accumulate (three daemons, one per lease renewal each while leases hold).
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let before = size(&device);
    std::thread::sleep(Duration::from_millis(1000));
    let after = size(&device);
    assert!(after > before + 10, "{before} -> {after}");
    let text = std::fs::read(&device).unwrap();
    assert!(
        text.iter().all(|b| *b == b'k'),
        "only keepalives while running"
    );
    // A clean stop of every daemon: each writes the magic 'V' last.
    for i in 1..=3 {
        c.stop(i);
    }
    let text = std::fs::read(&device).unwrap();
    assert_eq!(text.iter().filter(|b| **b == b'V').count(), 3);
    assert_eq!(*text.last().unwrap(), b'V');
    // Nothing more is written after the stop.
    let len = text.len();
    let waited = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read(&device).unwrap().len(),
        len,
        "{:?}",
        waited.elapsed()
    );
    // An absent device: the daemon runs without it and says so.
    std::fs::remove_file(&device).unwrap();
    c.start(1);
    c.wait_for(1, "watchdog reported absent", FORM_TIMEOUT, |v| {
        v["watchdog"]
            .as_str()
            .is_some_and(|w| w.starts_with("ABSENT"))
    });
    let log = std::fs::read_to_string(c.path().join("n1.log")).unwrap();
    assert!(log.contains("running WITHOUT a watchdog"), "{log}");
}
