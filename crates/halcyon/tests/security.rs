//! Credentials in the daemon (issue 17): with the credentials `halcyon init` writes beside
//! the configuration, heartbeats are authenticated with the cluster's key; forged ones are
//! refused and counted and change nothing; credentials that fail a check refuse the start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use halcyon_membership::HmacSealer;
use halcyon_membership::wire::{self, HeartbeatMessage};

/// `halcyon init` for the test cluster, into `pki` beside its configuration.
fn init_credentials(c: &Cluster) {
    let out = Command::new(BIN)
        .arg("init")
        .arg("--config")
        .arg(c.config_dir())
        .arg("--dir")
        .arg(c.config_dir().join("pki"))
        .output()
        .expect("running halcyon init");
    assert!(
        out.status.success(),
        "halcyon init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn with_credentials_heartbeats_are_authenticated_and_forged_ones_change_nothing() {
    let mut c = Cluster::configure(Spec::new());
    init_credentials(&c);
    for i in 1..=3 {
        c.start(i);
    }
    c.wait_web_on(1, "n1", FORM_TIMEOUT);
    c.wait_all_members(1, FORM_TIMEOUT);
    let v = c.status(1).unwrap();
    assert_eq!(v["heartbeat_auth"]["authenticated"], true, "{v:#}");
    assert!(
        v["heartbeat_auth"]["accepted"].as_u64().unwrap() > 0,
        "{v:#}"
    );
    let incarnation = node_of(&v, "n3")["incarnation"].clone();

    // n3's heartbeats, from n3's address, with a key that is not the cluster's, claiming a
    // new incarnation: unauthenticated, they must not reach the detector.
    let cluster_id = u64::from(c.config().id);
    let forger = HmacSealer::new(cluster_id, &[[7u8; 32]]).unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    const FORGED: u64 = 40;
    for seq in 0..FORGED {
        let message = HeartbeatMessage {
            cluster_id,
            node: 3,
            incarnation: 99,
            network: 0,
            seq: 1_000_000 + seq,
            send_time_ms: 0,
        };
        socket
            .send_to(&wire::encode(&message, &forger), ("127.0.0.1", c.port()))
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let v = loop {
        let v = c.status(1).unwrap();
        if v["heartbeat_auth"]["forged"].as_u64().unwrap() >= FORGED {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "forged heartbeats not counted: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(node_of(&v, "n3")["incarnation"], incarnation, "{v:#}");
    assert_eq!(node_of(&v, "n3")["member"], true, "{v:#}");
    assert_eq!(package_of(&v, "web")["nodes"][0], "n1", "{v:#}");
    let text = status_text(&c, 1);
    assert!(
        text.contains(&format!("refused: {FORGED} forged")),
        "{text}"
    );
    assert!(!text.contains("NOT authenticated"), "{text}");
}

#[test]
fn without_credentials_status_says_heartbeats_are_not_authenticated() {
    let c = Cluster::start_with(Spec::new());
    c.wait_all_members(1, FORM_TIMEOUT);
    let v = c.status(1).unwrap();
    assert_eq!(v["heartbeat_auth"]["authenticated"], false, "{v:#}");
    let text = status_text(&c, 1);
    assert!(text.contains("NOT authenticated"), "{text}");
}

#[test]
fn a_heartbeat_key_others_may_read_refuses_the_start_naming_the_file() {
    let mut c = Cluster::configure(Spec::new());
    init_credentials(&c);
    let key = c.config_dir().join("pki/heartbeat.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    c.start(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = c.exited(1) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "n1 started with a group-readable key:\n{}",
            c.log_tail("n1", 20)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", c.log_tail("n1", 20));
    let log = c.log_tail("n1", 20);
    assert!(log.contains(&key.display().to_string()), "{log}");
}
