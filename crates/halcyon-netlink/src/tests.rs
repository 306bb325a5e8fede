//! The real socket path, against loopback: works without root (reads only, and changes that
//! the kernel refuses before it checks privileges or that address nothing that exists).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;

fn loopback_index() -> u32 {
    interface_index("lo").expect("lo has an index")
}

#[test]
fn loopback_has_an_index_and_is_up() {
    let index = loopback_index();
    assert!(index >= 1);
    let mut client = Client::open().unwrap();
    assert_eq!(client.interface_index("lo"), Ok(index));
    let link = client.link(index).unwrap();
    assert_eq!(link.name, "lo");
    assert_eq!(link.index, index);
    assert!(link.is_up(), "{link:?}");
}

#[test]
fn the_dump_has_127_0_0_1_on_loopback() {
    let index = loopback_index();
    let mut client = Client::open().unwrap();
    let all = client.addresses(AddressFamily::All).unwrap();
    let ipv4 = client.addresses(AddressFamily::Ipv4).unwrap();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for found in [&all, &ipv4] {
        let entry = found
            .iter()
            .find(|entry| entry.address() == Some(localhost))
            .unwrap_or_else(|| panic!("no 127.0.0.1 in {found:?}"));
        assert_eq!(entry.interface_index(), index);
        assert_eq!(entry.header().prefix_length, 8);
    }
    assert!(
        ipv4.iter()
            .all(|entry| entry.address().is_some_and(|a| a.is_ipv4()))
    );
    assert!(all.len() >= ipv4.len());
}

#[test]
fn the_allocation_free_dump_sees_the_same_addresses() {
    let mut socket = Socket::open(SocketOptions::DEFAULT).unwrap();
    let mut buffer = [0u8; 16 * 1024];
    let mut count = 0;
    let mut localhost = false;
    socket
        .dump_addresses(AddressFamily::Ipv4, &mut buffer, |message| {
            count += 1;
            localhost |= message.address() == Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
            Ok(())
        })
        .unwrap();
    assert!(localhost && count >= 1);
}

#[test]
fn an_unknown_interface_is_no_such_interface() {
    assert_eq!(interface_index("hcnone0"), Err(Error::NoSuchInterface));
    assert_eq!(
        interface_index("a-name-too-long-for-linux"),
        Err(Error::Encode(EncodeError::InterfaceNameInvalid {
            length: 25
        }))
    );
    let mut client = Client::open().unwrap();
    assert_eq!(client.link(i32::MAX as u32), Err(Error::NoSuchInterface));
}

#[test]
fn deleting_an_absent_address_is_refused_by_the_kernel() {
    let mut client = Client::open().unwrap();
    let absent = InterfaceAddress {
        interface_index: loopback_index(),
        address: "198.18.250.251".parse().unwrap(),
        prefix_length: 32,
    };
    let result = client.delete_address(&absent);
    assert!(
        matches!(
            result,
            Err(Error::Refused {
                code: libc::EADDRNOTAVAIL | libc::EPERM
            })
        ),
        "{result:?}"
    );
    // The socket stays usable after a refusal.
    assert_eq!(client.interface_index("lo"), Ok(absent.interface_index));
}

#[test]
fn a_buffer_too_small_for_the_answer_is_a_precise_error() {
    let mut socket = Socket::open(SocketOptions::DEFAULT).unwrap();
    let mut tiny = [0u8; 32];
    let result = socket.dump_addresses(AddressFamily::All, &mut tiny, |_| Ok(()));
    assert!(
        matches!(
            result,
            Err(Error::DatagramTruncated { length, capacity: 32 }) if length > 32
        ),
        "{result:?}"
    );
    // The rest of that dump is skipped by sequence: the next request gets its own answer.
    let mut buffer = [0u8; 8192];
    assert!(socket.interface_index("lo", &mut buffer).is_ok());
}

#[test]
fn a_receive_with_nothing_to_read_times_out() {
    let timeout = Duration::from_millis(50);
    let socket = Socket::open(SocketOptions {
        receive_timeout: timeout,
        datagrams_per_answer_max: 4,
    })
    .unwrap();
    let mut buffer = [0u8; 64];
    let started = Instant::now();
    assert_eq!(
        socket.receive(&mut buffer),
        Err(Error::TimedOut { timeout })
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(40), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn every_error_has_an_errno_and_an_io_error() {
    let cases = [
        (
            Error::System {
                call: "recv",
                code: libc::EBADF,
            },
            libc::EBADF,
        ),
        (Error::Refused { code: libc::EEXIST }, libc::EEXIST),
        (
            Error::TimedOut {
                timeout: Duration::from_millis(1),
            },
            libc::EAGAIN,
        ),
        (
            Error::DatagramTruncated {
                length: 9,
                capacity: 8,
            },
            libc::EMSGSIZE,
        ),
        (Error::AnswerUnfinished { datagrams: 16 }, libc::ETIMEDOUT),
        (Error::AnswerTooLong { messages: 1 }, libc::EOVERFLOW),
        (
            Error::Decode(DecodeError::HeaderTruncated { available: 3 }),
            libc::EBADMSG,
        ),
        (
            Error::Encode(EncodeError::InterfaceIndexInvalid { index: 0 }),
            libc::EINVAL,
        ),
        (Error::NoSuchInterface, libc::ENODEV),
    ];
    for (error, errno) in cases {
        assert_eq!(error.errno(), errno, "{error}");
        let io = std::io::Error::from(error);
        assert!(!io.to_string().is_empty());
    }
    let refused = std::io::Error::from(Error::Refused {
        code: libc::EADDRNOTAVAIL,
    });
    assert_eq!(refused.raw_os_error(), Some(libc::EADDRNOTAVAIL));
}

/// The kernel announces a link change to a subscribed socket at once. Run in a network
/// namespace of this test's own thread (`unshare`: only the thread moves, and the namespace
/// goes with it), where setting `lo` down and up disturbs nothing else; needs root.
#[test]
fn a_subscribed_socket_hears_a_link_go_down_and_up() {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (a_subscribed_socket_hears_a_link_go_down_and_up)");
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: moves only this thread, which ends with the test.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        let mut events = crate::LinkEvents::open(Duration::from_millis(500)).unwrap();
        let mut client = Client::open().unwrap();
        let lo = client.interface_index("lo").unwrap();
        let mut heard = |up: bool| {
            client.set_link_up(lo, up).unwrap();
            let started = Instant::now();
            loop {
                assert!(started.elapsed() < Duration::from_secs(2), "not announced");
                let changes = events.receive().unwrap();
                if changes
                    .iter()
                    .any(|c| c.link.index == lo && !c.removed && c.link.is_up() == up)
                {
                    return started.elapsed();
                }
            }
        };
        let up = heard(true);
        let down = heard(false);
        eprintln!("announced after {up:?} (up) and {down:?} (down)");
        // With nothing changing, a read times out.
        assert!(matches!(events.receive(), Err(Error::TimedOut { .. })));
    })
    .join()
    .unwrap();
}
