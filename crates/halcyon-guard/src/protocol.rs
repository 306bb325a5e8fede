//! The guard's line protocol (daemon -> guard on the guard's stdin, replies on its stdout).
//!
//! Requests, one per line, ASCII, fields separated by spaces, at most [`LINE_MAX`] bytes
//! before the `\n`:
//!
//! | request | meaning |
//! | --- | --- |
//! | `extend DEADLINE` | the lease runs until DEADLINE, absolute CLOCK_BOOTTIME nanoseconds; a deadline never moves backwards |
//! | `register_group PGID` | SIGKILL process group PGID on a fence (a failover package's service or script) |
//! | `unregister_group PGID` | forget it (the daemon stopped it) |
//! | `register_address IFINDEX ADDR/PREFIX` | delete this relocatable address (IPv4 or IPv6) on a fence |
//! | `unregister_address IFINDEX ADDR/PREFIX` | forget it |
//! | `release` | the daemon halted everything itself: forget all registrations and the deadline |
//! | `status` | report the state |
//!
//! Every request line gets exactly one reply line, in order: `ok <command> ...` or
//! `err <code> <message>` with code one of `parse`, `expired`, `not_armed`, `fenced`,
//! `forbidden`, `full`, `unavailable`. Lines starting with `event ` are not replies: the guard
//! sends `event ready ...` once at start and `event fenced ...` after each fence.

use std::fmt;
use std::net::IpAddr;

use crate::clock::BootTime;

/// Longest request line accepted, without its `\n`.
pub const LINE_MAX: usize = 255;

/// A relocatable address as the guard knows it: interface index, address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    pub interface_index: u32,
    pub address: IpAddr,
    pub prefix_length: u8,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.interface_index, self.address, self.prefix_length
        )
    }
}

/// One request of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Extend(BootTime),
    RegisterGroup(i32),
    UnregisterGroup(i32),
    RegisterAddress(Address),
    UnregisterAddress(Address),
    Release,
    Status,
}

impl Request {
    /// The command word.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Extend(_) => "extend",
            Request::RegisterGroup(_) => "register_group",
            Request::UnregisterGroup(_) => "unregister_group",
            Request::RegisterAddress(_) => "register_address",
            Request::UnregisterAddress(_) => "unregister_address",
            Request::Release => "release",
            Request::Status => "status",
        }
    }

    /// Parses one line (without its `\n`). Never allocates.
    pub fn parse(line: &[u8]) -> Result<Request, ParseError<'_>> {
        if line.len() > LINE_MAX {
            return Err(ParseError::TooLong { limit: LINE_MAX });
        }
        if !line
            .iter()
            .all(|b| b.is_ascii() && (*b >= b' ' || *b == b'\t'))
        {
            return Err(ParseError::NotText);
        }
        // ASCII checked above, so this cannot fail.
        let text = std::str::from_utf8(line).map_err(|_| ParseError::NotText)?;
        let mut words = text.split_ascii_whitespace();
        let Some(command) = words.next() else {
            return Err(ParseError::Empty);
        };
        let request = match command {
            "extend" => {
                let found = next(&mut words, "extend", "DEADLINE")?;
                let nanos = number(found, "extend", "DEADLINE")?;
                if nanos == 0 {
                    return Err(ParseError::OutOfRange {
                        command: "extend",
                        argument: "DEADLINE",
                        found,
                        expected: "nanoseconds of CLOCK_BOOTTIME, greater than 0",
                    });
                }
                Request::Extend(BootTime::from_nanos(nanos))
            }
            "register_group" => Request::RegisterGroup(pgid(&mut words, "register_group")?),
            "unregister_group" => Request::UnregisterGroup(pgid(&mut words, "unregister_group")?),
            "register_address" => {
                Request::RegisterAddress(address(&mut words, "register_address")?)
            }
            "unregister_address" => {
                Request::UnregisterAddress(address(&mut words, "unregister_address")?)
            }
            "release" => Request::Release,
            "status" => Request::Status,
            other => return Err(ParseError::UnknownCommand(other)),
        };
        if let Some(found) = words.next() {
            return Err(ParseError::ExtraArgument {
                command: request.command(),
                found,
            });
        }
        Ok(request)
    }
}

impl fmt::Display for Request {
    /// The request line, without the `\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command())?;
        match self {
            Request::Extend(deadline) => write!(f, " {deadline}"),
            Request::RegisterGroup(pgid) | Request::UnregisterGroup(pgid) => write!(f, " {pgid}"),
            Request::RegisterAddress(address) | Request::UnregisterAddress(address) => {
                write!(f, " {address}")
            }
            Request::Release | Request::Status => Ok(()),
        }
    }
}

/// Why a request line was rejected; the message names the command, argument and text found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError<'a> {
    #[error("empty line")]
    Empty,
    #[error("line longer than {limit} bytes")]
    TooLong { limit: usize },
    #[error("line is not printable ASCII text")]
    NotText,
    #[error(
        "unknown command {0:?} (expected extend, register_group, unregister_group, register_address, unregister_address, release or status)"
    )]
    UnknownCommand(&'a str),
    #[error("{command}: missing argument {argument}")]
    MissingArgument {
        command: &'static str,
        argument: &'static str,
    },
    #[error("{command}: unexpected extra argument {found:?}")]
    ExtraArgument {
        command: &'static str,
        found: &'a str,
    },
    #[error("{command}: {argument} {found:?} is not a decimal number")]
    BadNumber {
        command: &'static str,
        argument: &'static str,
        found: &'a str,
    },
    #[error("{command}: {argument} {found} is out of range (expected {expected})")]
    OutOfRange {
        command: &'static str,
        argument: &'static str,
        found: &'a str,
        expected: &'static str,
    },
    #[error("{command}: {found:?} is not an IPv4 or IPv6 address")]
    BadAddress {
        command: &'static str,
        found: &'a str,
    },
    #[error("{command}: prefix length {found:?} is not a number from 0 to {max}")]
    BadPrefix {
        command: &'static str,
        found: &'a str,
        max: u8,
    },
}

fn next<'a>(
    words: &mut impl Iterator<Item = &'a str>,
    command: &'static str,
    argument: &'static str,
) -> Result<&'a str, ParseError<'a>> {
    words
        .next()
        .ok_or(ParseError::MissingArgument { command, argument })
}

/// A plain decimal number: digits only (no sign), fitting in a u64.
fn number<'a>(
    found: &'a str,
    command: &'static str,
    argument: &'static str,
) -> Result<u64, ParseError<'a>> {
    if found.is_empty() || !found.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber {
            command,
            argument,
            found,
        });
    }
    found.parse().map_err(|_| ParseError::OutOfRange {
        command,
        argument,
        found,
        expected: "at most 18446744073709551615",
    })
}

fn pgid<'a>(
    words: &mut impl Iterator<Item = &'a str>,
    command: &'static str,
) -> Result<i32, ParseError<'a>> {
    let found = next(words, command, "PGID")?;
    let value = number(found, command, "PGID")?;
    match i32::try_from(value) {
        // 0 would mean the guard's own group to kill(2), 1 the init process's group.
        Ok(pgid) if pgid > 1 => Ok(pgid),
        _ => Err(ParseError::OutOfRange {
            command,
            argument: "PGID",
            found,
            expected: "a process group id from 2 to 2147483647",
        }),
    }
}

fn address<'a>(
    words: &mut impl Iterator<Item = &'a str>,
    command: &'static str,
) -> Result<Address, ParseError<'a>> {
    let found = next(words, command, "IFINDEX")?;
    let index = number(found, command, "IFINDEX")?;
    let interface_index = match u32::try_from(index) {
        Ok(index) if index > 0 && index <= i32::MAX as u32 => index,
        _ => {
            return Err(ParseError::OutOfRange {
                command,
                argument: "IFINDEX",
                found,
                expected: "an interface index from 1 to 2147483647",
            });
        }
    };
    let found = next(words, command, "ADDRESS/PREFIX")?;
    let Some((text, prefix)) = found.split_once('/') else {
        return Err(ParseError::MissingArgument {
            command,
            argument: "/PREFIX after the address",
        });
    };
    let address: IpAddr = text.parse().map_err(|_| ParseError::BadAddress {
        command,
        found: text,
    })?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(ParseError::OutOfRange {
            command,
            argument: "ADDRESS",
            found: text,
            expected: "a unicast address",
        });
    }
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_length = match prefix.parse::<u8>() {
        Ok(length) if length <= max && prefix.bytes().all(|b| b.is_ascii_digit()) => length,
        _ => {
            return Err(ParseError::BadPrefix {
                command,
                found: prefix,
                max,
            });
        }
    };
    Ok(Address {
        interface_index,
        address,
        prefix_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn err(line: &str) -> String {
        Request::parse(line.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn requests_round_trip() {
        let v4 = Address {
            interface_index: 3,
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 5, 10)),
            prefix_length: 24,
        };
        let v6 = Address {
            interface_index: 7,
            address: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10)),
            prefix_length: 64,
        };
        for request in [
            Request::Extend(BootTime::from_nanos(123_456_789_000)),
            Request::RegisterGroup(4242),
            Request::UnregisterGroup(2),
            Request::RegisterAddress(v4),
            Request::UnregisterAddress(v6),
            Request::Release,
            Request::Status,
        ] {
            let line = request.to_string();
            assert!(line.len() <= LINE_MAX);
            assert_eq!(Request::parse(line.as_bytes()), Ok(request), "{line}");
        }
        assert_eq!(
            Request::RegisterAddress(v4).to_string(),
            "register_address 3 198.18.5.10/24"
        );
        // Runs of spaces and tabs separate fields too.
        assert_eq!(
            Request::parse(b"  extend\t 5  "),
            Ok(Request::Extend(BootTime::from_nanos(5)))
        );
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(err(""), "empty line");
        assert_eq!(err("   "), "empty line");
        assert_eq!(err(&"x".repeat(256)), "line longer than 255 bytes");
        assert!(
            Request::parse("x".repeat(255).as_bytes())
                .is_err_and(|e| matches!(e, ParseError::UnknownCommand(_)))
        );
        assert_eq!(Request::parse(b"extend \xff"), Err(ParseError::NotText));
        assert_eq!(Request::parse(b"status\r"), Err(ParseError::NotText));
        assert!(err("fence now").starts_with("unknown command \"fence\" (expected extend,"));
        assert_eq!(err("extend"), "extend: missing argument DEADLINE");
        assert_eq!(
            err("extend -5"),
            "extend: DEADLINE \"-5\" is not a decimal number"
        );
        assert_eq!(
            err("extend +5"),
            "extend: DEADLINE \"+5\" is not a decimal number"
        );
        assert_eq!(
            err("extend 5ms"),
            "extend: DEADLINE \"5ms\" is not a decimal number"
        );
        assert_eq!(
            err("extend 0"),
            "extend: DEADLINE 0 is out of range (expected nanoseconds of CLOCK_BOOTTIME, greater than 0)"
        );
        assert_eq!(
            err("extend 99999999999999999999"),
            "extend: DEADLINE 99999999999999999999 is out of range (expected at most 18446744073709551615)"
        );
        assert_eq!(err("extend 5 6"), "extend: unexpected extra argument \"6\"");
        assert_eq!(
            err("release now"),
            "release: unexpected extra argument \"now\""
        );
        assert_eq!(
            err("register_group"),
            "register_group: missing argument PGID"
        );
        assert_eq!(
            err("register_group 1"),
            "register_group: PGID 1 is out of range (expected a process group id from 2 to 2147483647)"
        );
        assert_eq!(
            err("unregister_group 0"),
            "unregister_group: PGID 0 is out of range (expected a process group id from 2 to 2147483647)"
        );
        assert_eq!(
            err("register_group 2147483648"),
            "register_group: PGID 2147483648 is out of range (expected a process group id from 2 to 2147483647)"
        );
        assert_eq!(
            err("register_address 3"),
            "register_address: missing argument ADDRESS/PREFIX"
        );
        assert_eq!(
            err("register_address 0 198.18.5.10/24"),
            "register_address: IFINDEX 0 is out of range (expected an interface index from 1 to 2147483647)"
        );
        assert_eq!(
            err("register_address 3 198.18.5.10"),
            "register_address: missing argument /PREFIX after the address"
        );
        assert_eq!(
            err("register_address 3 198.18.5.300/24"),
            "register_address: \"198.18.5.300\" is not an IPv4 or IPv6 address"
        );
        assert_eq!(
            err("unregister_address 3 198.18.5.10/33"),
            "unregister_address: prefix length \"33\" is not a number from 0 to 32"
        );
        assert_eq!(
            err("register_address 3 2001:2::1/129"),
            "register_address: prefix length \"129\" is not a number from 0 to 128"
        );
        assert_eq!(
            err("register_address 3 198.18.5.10/+4"),
            "register_address: prefix length \"+4\" is not a number from 0 to 32"
        );
        assert_eq!(
            err("register_address 3 0.0.0.0/0"),
            "register_address: ADDRESS 0.0.0.0 is out of range (expected a unicast address)"
        );
        assert_eq!(
            err("register_address 3 198.18.5.10/24 eth0"),
            "register_address: unexpected extra argument \"eth0\""
        );
    }
}
