//! Two processes and this one take blocks from one range at the same time: no port is handed
//! out twice, and every block of the range is handed out once.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};

use halcyon_testkit::{PortAllocator, ports};

const HOLDER: &str = env!("CARGO_BIN_EXE_halcyon-testkit-ports");

/// A holder process, killed by its PID when the test ends (also on a panic).
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn concurrent_processes_never_receive_overlapping_blocks() {
    const LEN: u16 = 3;
    const PER_PROCESS: u16 = 10;
    // Room for exactly three processes' blocks, reserved from the machine-wide allocator.
    let total = LEN * PER_PROCESS * 3;
    let reserved = ports::allocate(total, [IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (low, high) = (reserved.base(), reserved.base() + total);
    let spawn = || {
        Holder(
            Command::new(HOLDER)
                .arg(dir.path())
                .args([low, high, LEN, PER_PROCESS].map(|n| n.to_string()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let mut holders = [spawn(), spawn()];
    let allocator = PortAllocator::with_directory(dir.path(), low, high);
    let mine: Vec<_> = (0..PER_PROCESS)
        .map(|_| allocator.allocate(LEN).unwrap())
        .collect();
    let mut ports: Vec<u16> = mine.iter().flat_map(|b| b.ports()).collect();
    for holder in &mut holders {
        let stdout = BufReader::new(holder.0.stdout.take().unwrap());
        let mut ready = false;
        for line in stdout.lines() {
            let line = line.unwrap();
            if line == "ready" {
                ready = true;
                break;
            }
            let mut words = line.split_whitespace().skip(1);
            let base: u16 = words.next().unwrap().parse().unwrap();
            let len: u16 = words.next().unwrap().parse().unwrap();
            ports.extend(base..base + len);
        }
        assert!(ready, "a holder could not take its blocks");
    }
    ports.sort_unstable();
    let count = ports.len();
    ports.dedup();
    assert_eq!(ports.len(), count, "a port was handed out twice");
    assert_eq!(ports, (low..high).collect::<Vec<_>>());
    // Every block is held: one more is refused, and freed once a holder exits.
    assert!(allocator.allocate(LEN).is_err());
    let [first, _second] = holders;
    drop(first);
    allocator.allocate(LEN).unwrap();
}
