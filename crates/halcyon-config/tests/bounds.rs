//! The longest a node may legitimately take to start or halt a package
//! (`Package::run_bound`, `Package::halt_bound`): the coordinator's bound on a node's action
//! is built on them (ARCHITECTURE.md, "A node that does not complete its work").

use std::time::Duration;

use halcyon_config::limits::KILL_WAIT;

const CLUSTER: &str = r#"
[cluster]
name = "c"
id = 1

[[network]]
name = "lan1"
kind = "ip"
subnets = ["198.18.1.0/24"]

[[node]]
name = "n1"
number = 1
interface = [{ network = "lan1", address = "198.18.1.1" }]

[[node]]
name = "n2"
number = 2
interface = [{ network = "lan1", address = "198.18.1.2" }]

[[node]]
name = "n3"
number = 3
interface = [{ network = "lan1", address = "198.18.1.3" }]
"#;

fn package(text: &str) -> halcyon_config::Package {
    let config = halcyon_config::load_texts(&[("cluster.toml", CLUSTER), ("p.toml", text)])
        .unwrap_or_else(|d| panic!("{d:?}"));
    config.package("p").expect("package p").clone()
}

#[test]
fn a_halt_may_take_every_resources_halt_timeout_and_kill_waits_in_turn() {
    let p = package(
        r#"
[package]
name = "p"
type = "failover"
nodes = ["n1", "n2"]
run_timeout = "7s"

[[resource]]
kind = "ip"
network = "lan1"
address = "198.18.1.50/24"

[[resource]]
kind = "script"
name = "prepare"
run = "true"
halt = "true"
halt_timeout = "3s"

[[resource]]
kind = "service"
name = "srv"
command = "sleep 1000"
halt_timeout = "5s"
"#,
    );
    // The address: nothing to wait for; the script and the service: their timeout, then
    // the process and its group killed.
    let expected = Duration::from_secs(3 + 5) + KILL_WAIT * 4;
    assert_eq!(p.halt_bound(), expected);
    assert_eq!(p.run_bound(), Duration::from_secs(7) + expected);
}

#[test]
fn a_package_of_addresses_only_halts_at_once_and_starts_within_its_run_timeout() {
    let p = package(
        r#"
[package]
name = "p"
type = "failover"
nodes = ["n1", "n2"]
run_timeout = "2s"

[[resource]]
kind = "ip"
network = "lan1"
address = "198.18.1.50/24"
"#,
    );
    assert_eq!(p.halt_bound(), Duration::ZERO);
    assert_eq!(p.run_bound(), Duration::from_secs(2));
}

#[test]
fn the_defaults_give_the_default_timeouts() {
    let p = package(
        r#"
[package]
name = "p"
type = "failover"
nodes = ["n1", "n2"]

[[resource]]
kind = "service"
name = "srv"
command = "sleep 1000"
"#,
    );
    let halt = halcyon_config::DEFAULT_SERVICE_HALT_TIMEOUT + KILL_WAIT * 2;
    assert_eq!(p.halt_bound(), halt);
    assert_eq!(p.run_bound(), halcyon_config::DEFAULT_SCRIPT_TIMEOUT + halt);
}
