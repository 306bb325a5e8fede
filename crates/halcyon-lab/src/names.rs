//! Names of everything a lab creates, and the address plan.
//!
//! A lab id is the owning process's PID in decimal followed by one letter (`a`..`z`, a counter
//! within the process), e.g. `4711b`. Every object carries it after the prefix `hl`:
//!
//! | object | name | example |
//! | --- | --- | --- |
//! | host namespace | `hl<id>h<host>` | `hl4711bh2` |
//! | client namespace | `hl<id>c` | `hl4711bc` |
//! | bridge of network n | `hl<id>b<n>` | `hl4711bb1` |
//! | bridge-side veth of host i on network n (client: i = 0) | `hl<id>v<i>n<n>` | `hl4711bv2n1` |
//! | bridge-side veth of host i's standby interface on network n | `hl<id>s<i>n<n>` | `hl4711bs2n1` |
//! | interface inside a namespace on network n | `eth<n>` | `eth1` |
//! | standby interface inside a host namespace on network n | `eth<n>s` | `eth1s` |
//! | lab directory | `$TMPDIR/halcyon-lab-<id>` | |
//! | owner record | `/run/halcyon-lab/<id>` (PID and start time of the owner) | |
//!
//! The longest name, a veth with a 7-digit PID and a 2-digit host, is 15 characters: exactly the
//! kernel's interface name limit (IFNAMSIZ - 1). Cleanup recognises a lab's objects by parsing
//! these names back into an id.
//!
//! Address plan (all inside 198.18.0.0/15, RFC 2544 benchmarking space):
//!
//! | what | address |
//! | --- | --- |
//! | network n (1 or 2) | `198.18.<n>.0/24` |
//! | host i (1..=32) on network n | `198.18.<n>.<i>` |
//! | host i's standby interface on network n (when the lab has one) | `198.18.<n>.<100 + i>` |
//! | relocatable (package) addresses on network n | `198.18.<n>.200` .. `198.18.<n>.249` |
//! | client (network 1 only) | `198.18.1.250` |

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Prefix of every object a lab creates.
pub const PREFIX: &str = "hl";
/// Directory of owner records, one file per live lab.
pub const OWNER_DIRECTORY: &str = "/run/halcyon-lab";
/// Largest number of hosts in one lab.
pub const HOSTS_MAX: usize = 32;
/// Largest number of IP networks in one lab.
pub const NETWORKS_MAX: usize = 2;
/// The client namespace, where a host number is expected (hosts are numbered from 1).
pub const CLIENT: usize = 0;
/// Host part of the client's address on network 1.
pub const CLIENT_HOST_OCTET: u8 = 250;
/// First host part of the relocatable (package) addresses.
pub const RELOCATABLE_FIRST_OCTET: u8 = 200;
/// Added to the host number for the host part of a standby interface's address.
pub const STANDBY_HOST_OFFSET: u8 = 100;
/// Number of relocatable addresses per network.
pub const RELOCATABLE_COUNT: u8 = 50;
/// Prefix length of every lab network.
pub const NETWORK_PREFIX_LENGTH: u8 = 24;

const _: () = assert!(HOSTS_MAX < STANDBY_HOST_OFFSET as usize);
const _: () = assert!(STANDBY_HOST_OFFSET as usize + HOSTS_MAX < RELOCATABLE_FIRST_OCTET as usize);
const _: () = assert!(
    (RELOCATABLE_FIRST_OCTET as usize + RELOCATABLE_COUNT as usize) <= CLIENT_HOST_OCTET as usize
);

/// Identifies one lab: owner PID plus a per-process letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabId {
    pub pid: u32,
    pub slot: u8,
}

impl fmt::Display for LabId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}{}", self.pid, (b'a' + self.slot) as char)
    }
}

impl LabId {
    pub fn parse(text: &str) -> Option<LabId> {
        let (id, rest) = split_id(text)?;
        rest.is_empty().then_some(id)
    }

    pub fn host_namespace(&self, host: usize) -> String {
        if host == CLIENT {
            format!("{PREFIX}{self}c")
        } else {
            format!("{PREFIX}{self}h{host}")
        }
    }

    pub fn bridge(&self, network: usize) -> String {
        format!("{PREFIX}{self}b{network}")
    }

    /// The bridge-side end of the veth of `host` (CLIENT for the client) on `network`.
    pub fn bridge_port(&self, host: usize, network: usize) -> String {
        format!("{PREFIX}{self}v{host}n{network}")
    }

    /// The bridge-side end of the veth of `host`'s standby interface on `network`.
    pub fn standby_port(&self, host: usize, network: usize) -> String {
        format!("{PREFIX}{self}s{host}n{network}")
    }

    pub fn directory(&self) -> PathBuf {
        std::env::temp_dir().join(format!("halcyon-lab-{self}"))
    }

    pub fn owner_record(&self) -> PathBuf {
        PathBuf::from(OWNER_DIRECTORY).join(self.to_string())
    }
}

/// Splits `<pid><letter>` off the front of `text`.
fn split_id(text: &str) -> Option<(LabId, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 10 {
        return None;
    }
    let pid = text[..digits].parse().ok()?;
    let slot = *text.as_bytes().get(digits)?;
    if !slot.is_ascii_lowercase() {
        return None;
    }
    Some((
        LabId {
            pid,
            slot: slot - b'a',
        },
        &text[digits + 1..],
    ))
}

/// The lab id inside an object name made by this module (`hl<id>h3`, `hl<id>b1`, ...).
pub fn lab_of(name: &str) -> Option<LabId> {
    let (id, rest) = split_id(name.strip_prefix(PREFIX)?)?;
    let mut chars = rest.chars();
    let role = chars.next()?;
    let tail = chars.as_str();
    let numbers_ok = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || byte == b'n')
    };
    match role {
        'c' if tail.is_empty() => Some(id),
        'h' | 'b' | 'v' | 's' if numbers_ok(tail) => Some(id),
        _ => None,
    }
}

/// Address of `host` (CLIENT for the client) on `network`.
pub fn host_address(host: usize, network: usize) -> Ipv4Addr {
    let host_octet = if host == CLIENT {
        CLIENT_HOST_OCTET
    } else {
        host as u8
    };
    Ipv4Addr::new(198, 18, network as u8, host_octet)
}

/// The `index`-th relocatable address on `network` (198.18.<network>.200 + index).
pub fn relocatable_address(network: usize, index: u8) -> Ipv4Addr {
    assert!(
        index < RELOCATABLE_COUNT,
        "relocatable address index {index} out of range"
    );
    Ipv4Addr::new(198, 18, network as u8, RELOCATABLE_FIRST_OCTET + index)
}

/// Address of `host`'s standby interface on `network`.
pub fn standby_address(host: usize, network: usize) -> Ipv4Addr {
    assert!(
        host != CLIENT && host <= HOSTS_MAX,
        "no standby interface on host {host}"
    );
    Ipv4Addr::new(198, 18, network as u8, STANDBY_HOST_OFFSET + host as u8)
}

/// Name of the interface on `network` inside every namespace.
pub fn interface(network: usize) -> String {
    format!("eth{network}")
}

/// Name of the standby interface on `network` inside a host namespace that has one.
pub fn standby_interface(network: usize) -> String {
    format!("eth{network}s")
}

/// True for addresses a lab may send to: 198.18.0.0/15 and loopback.
pub fn is_lab_address(address: Ipv4Addr) -> bool {
    let octets = address.octets();
    (octets[0] == 198 && (octets[1] & 0xfe) == 18) || octets[0] == 127
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_lab() {
        let id = LabId {
            pid: 4194304,
            slot: 25,
        };
        let names = [
            id.host_namespace(1),
            id.host_namespace(32),
            id.host_namespace(CLIENT),
            id.bridge(2),
            id.bridge_port(32, 2),
            id.bridge_port(CLIENT, 1),
            id.standby_port(32, 2),
        ];
        for name in &names {
            assert_eq!(lab_of(name), Some(id), "{name}");
        }
        assert_eq!(id.bridge_port(32, 2).len(), 15);
        assert_eq!(id.standby_port(32, 2).len(), 15);
        assert_eq!(LabId::parse(&id.to_string()), Some(id));
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            "eth0", "hl", "hlx", "hl12", "hl12a", "hl12ax1", "hl12Ah1", "hl12ah", "hl12acx", "br0",
        ] {
            assert_eq!(lab_of(name), None, "{name}");
        }
    }

    #[test]
    fn address_plan_stays_in_the_lab_range() {
        assert_eq!(host_address(3, 2), Ipv4Addr::new(198, 18, 2, 3));
        assert_eq!(host_address(CLIENT, 1), Ipv4Addr::new(198, 18, 1, 250));
        assert_eq!(relocatable_address(1, 0), Ipv4Addr::new(198, 18, 1, 200));
        assert_eq!(standby_address(3, 1), Ipv4Addr::new(198, 18, 1, 103));
        for address in [
            host_address(HOSTS_MAX, NETWORKS_MAX),
            relocatable_address(2, RELOCATABLE_COUNT - 1),
            standby_address(HOSTS_MAX, NETWORKS_MAX),
        ] {
            assert!(is_lab_address(address));
        }
        assert!(is_lab_address(Ipv4Addr::new(198, 19, 255, 255)));
        assert!(!is_lab_address(Ipv4Addr::new(198, 20, 0, 1)));
        assert!(!is_lab_address(Ipv4Addr::new(198, 17, 0, 1)));
    }
}
