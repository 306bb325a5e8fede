use super::*;

fn u16_of(bytes: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([bytes[at], bytes[at + 1]])
}

fn u32_of(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// A datagram's messages, failing the test on a decode error.
fn all_messages(datagram: &[u8]) -> Vec<Message<'_>> {
    messages(datagram)
        .collect::<Result<Vec<_>, _>>()
        .expect("well-formed datagram")
}

fn v4(interface_index: u32, text: &str, prefix_length: u8) -> InterfaceAddress {
    InterfaceAddress {
        interface_index,
        address: text.parse().unwrap(),
        prefix_length,
    }
}

/// An answer message as the kernel writes it: header, then `payload`.
fn kernel_message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((HEADER_BYTES + payload.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
    out
}

fn raw_attribute(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
    out
}

/// An `RTM_NEWADDR` payload as a dump reports it.
fn reported_address_payload() -> Vec<u8> {
    let mut payload = vec![AF_INET, 24, 0x80, 0];
    payload.extend_from_slice(&7u32.to_ne_bytes());
    payload.extend(raw_attribute(IFA_ADDRESS, &[198, 18, 0, 50]));
    payload.extend(raw_attribute(IFA_LOCAL, &[198, 18, 0, 50]));
    payload.extend(raw_attribute(4, b"eth0\0")); // IFA_LABEL
    payload.extend(raw_attribute(IFA_CACHEINFO, &[0; 16]));
    payload.extend(raw_attribute(IFA_FLAGS, &0x80u32.to_ne_bytes()));
    payload
}

/// An `RTM_NEWLINK` payload: index 3, up with a carrier, name and hardware address.
fn link_payload() -> Vec<u8> {
    let mut payload = vec![AF_UNSPEC, 0];
    payload.extend_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
    payload.extend_from_slice(&3i32.to_ne_bytes());
    payload.extend_from_slice(&(IFF_UP | IFF_LOWER_UP).to_ne_bytes());
    payload.extend_from_slice(&0u32.to_ne_bytes());
    payload.extend(raw_attribute(IFLA_IFNAME, b"eth1\0"));
    payload.extend(raw_attribute(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 9]));
    payload
}

#[test]
fn a_loopback_address_is_added_with_host_scope_like_ip_does() {
    // The kernel refuses any other scope for 127.0.0.0/8 ("ipv4: Invalid scope value").
    let mut out = [0u8; REQUEST_BYTES_MAX];
    encode_address_change(&mut out, 1, AddressChange::Add, &v4(1, "127.0.0.100", 8)).unwrap();
    assert_eq!(&out[16..20], &[AF_INET, 8, 0, RT_SCOPE_HOST]);
    encode_address_change(&mut out, 1, AddressChange::Add, &v4(1, "198.18.0.1", 24)).unwrap();
    assert_eq!(&out[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
    assert_eq!(address_scope("::1".parse().unwrap()), RT_SCOPE_HOST);
    assert_eq!(
        address_scope("2001:2::1".parse().unwrap()),
        RT_SCOPE_UNIVERSE
    );
}

#[test]
fn a_delete_request_has_the_kernels_layout() {
    let mut out = [0u8; REQUEST_BYTES_MAX];
    let length = encode_address_change(
        &mut out,
        9,
        AddressChange::Delete,
        &v4(5, "198.18.5.10", 24),
    )
    .unwrap();
    assert_eq!(length, 16 + 8 + 8 + 8);
    assert_eq!(u32_of(&out, 0), 40);
    assert_eq!(u16_of(&out, 4), RTM_DELADDR);
    assert_eq!(u16_of(&out, 6), NLM_F_REQUEST | NLM_F_ACK);
    assert_eq!(u32_of(&out, 8), 9);
    assert_eq!(&out[16..20], &[AF_INET, 24, 0, 0]);
    assert_eq!(u32_of(&out, 20), 5);
    assert_eq!(u16_of(&out, 24), 8);
    assert_eq!(u16_of(&out, 26), IFA_LOCAL);
    assert_eq!(&out[28..32], &[198, 18, 5, 10]);
    assert_eq!(u16_of(&out, 34), IFA_ADDRESS);
    assert_eq!(&out[36..40], &[198, 18, 5, 10]);

    let v6 = InterfaceAddress {
        interface_index: 2,
        address: "2001:2::1".parse().unwrap(),
        prefix_length: 64,
    };
    let length = encode_address_change(&mut out, 10, AddressChange::Delete, &v6).unwrap();
    assert_eq!(length, 16 + 8 + 20 + 20);
    assert_eq!(out[16], AF_INET6);
    assert_eq!(u16_of(&out, 24), 20);
}

#[test]
fn add_and_replace_requests_differ_only_in_their_flags() {
    let address = v4(4, "198.18.1.7", 24);
    let mut add = [0u8; REQUEST_BYTES_MAX];
    let mut replace = [0u8; REQUEST_BYTES_MAX];
    let length = encode_address_change(&mut add, 3, AddressChange::Add, &address).unwrap();
    encode_address_change(&mut replace, 3, AddressChange::Replace, &address).unwrap();
    assert_eq!(u16_of(&add, 4), RTM_NEWADDR);
    assert_eq!(
        u16_of(&add, 6),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    );
    assert_eq!(
        u16_of(&replace, 6),
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    );
    assert_eq!(add[8..length], replace[8..length]);
}

#[test]
fn an_address_request_decodes_to_what_was_encoded() {
    for (address, family) in [
        (v4(12, "198.18.3.4", 20), AF_INET),
        (
            InterfaceAddress {
                interface_index: 2,
                address: "fd00::5".parse().unwrap(),
                prefix_length: 64,
            },
            AF_INET6,
        ),
    ] {
        let mut out = [0u8; REQUEST_BYTES_MAX];
        let length = encode_address_change(&mut out, 77, AddressChange::Replace, &address).unwrap();
        let found = all_messages(&out[..length]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].header.sequence, 77);
        assert_eq!(found[0].header.length as usize, length);
        let Body::Address(message) = found[0].body().unwrap() else {
            panic!("not an address: {:?}", found[0]);
        };
        assert_eq!(message.header.family, family);
        assert_eq!(message.header.prefix_length, address.prefix_length);
        assert_eq!(message.header.interface_index, address.interface_index);
        assert_eq!(message.address(), Some(address.address));
        let kinds: Vec<u16> = message.attributes().map(|a| a.kind).collect();
        assert_eq!(kinds, [IFA_LOCAL, IFA_ADDRESS]);
    }
}

#[test]
fn a_reported_address_is_deleted_with_everything_but_its_cache_information() {
    let payload = reported_address_payload();
    let datagram = kernel_message(RTM_NEWADDR, 5, &payload);
    let found = all_messages(&datagram);
    let Body::Address(reported) = found[0].body().unwrap() else {
        panic!("not an address");
    };
    assert_eq!(reported.address(), Some("198.18.0.50".parse().unwrap()));
    assert_eq!(reported.all_flags(), 0x80);
    assert_eq!(reported.header.interface_index, 7);

    let mut out = [0u8; REQUEST_BYTES_MAX];
    let length = encode_delete_reported(&mut out, 6, &reported).unwrap();
    let request = all_messages(&out[..length]);
    assert_eq!(request[0].header.kind, RTM_DELADDR);
    assert_eq!(request[0].header.flags, NLM_F_REQUEST | NLM_F_ACK);
    let Body::Address(deleted) = request[0].body().unwrap() else {
        panic!("not an address");
    };
    assert_eq!(deleted.header, reported.header);
    let kinds: Vec<u16> = deleted.attributes().map(|a| a.kind).collect();
    assert_eq!(kinds, [IFA_ADDRESS, IFA_LOCAL, 4, IFA_FLAGS]);
    assert_eq!(deleted.attribute(4), Some(&b"eth0\0"[..]));
}

#[test]
fn all_flags_come_from_the_header_without_ifa_flags() {
    let mut payload = vec![AF_INET6, 64, IFA_F_TENTATIVE as u8, 0];
    payload.extend_from_slice(&2u32.to_ne_bytes());
    payload.extend(raw_attribute(IFA_ADDRESS, &[0xfd; 16]));
    let message = AddressMessage::decode(&payload).unwrap();
    assert_eq!(message.all_flags(), IFA_F_TENTATIVE);
    assert_eq!(
        message.address(),
        Some(IpAddr::V6(Ipv6Addr::from([0xfd; 16])))
    );
}

#[test]
fn a_link_request_by_name_carries_the_name_with_its_nul() {
    let mut out = [0u8; REQUEST_BYTES_MAX];
    let length = encode_link_by_name(&mut out, 4, "eth0").unwrap();
    assert_eq!(length, 16 + 16 + 12);
    assert_eq!(u16_of(&out, 4), RTM_GETLINK);
    assert_eq!(u16_of(&out, 6), NLM_F_REQUEST | NLM_F_ACK);
    assert_eq!(u16_of(&out, 32), 9);
    assert_eq!(u16_of(&out, 34), IFLA_IFNAME);
    assert_eq!(&out[36..44], b"eth0\0\0\0\0");

    let length = encode_link_by_index(&mut out, 5, 3).unwrap();
    assert_eq!(length, 32);
    assert_eq!(u32_of(&out, 20), 3);
}

#[test]
fn set_link_up_changes_only_the_up_flag() {
    let mut out = [0u8; REQUEST_BYTES_MAX];
    for (up, flags) in [(true, IFF_UP), (false, 0)] {
        let length = encode_set_link_up(&mut out, 8, 6, up).unwrap();
        assert_eq!(length, 32);
        assert_eq!(u16_of(&out, 4), RTM_NEWLINK);
        assert_eq!(u32_of(&out, 20), 6);
        assert_eq!(u32_of(&out, 24), flags);
        assert_eq!(u32_of(&out, 28), IFF_UP);
    }
}

#[test]
fn a_link_message_gives_name_flags_and_hardware_address() {
    let payload = link_payload();
    let link = LinkMessage::decode(&payload).unwrap();
    assert_eq!(link.index, 3);
    assert_eq!(link.device_type, 1);
    assert_eq!(link.name(), Some(&b"eth1"[..]));
    assert_eq!(link.hardware_address(), Some(&[2, 0, 0, 0, 0, 9][..]));
    assert!(link.is_up() && link.has_carrier());
}

#[test]
fn a_dump_request_names_its_family() {
    let mut out = [0u8; REQUEST_BYTES_MAX];
    for family in [AddressFamily::All, AddressFamily::Ipv4, AddressFamily::Ipv6] {
        let length = encode_address_dump(&mut out, 1, family).unwrap();
        assert_eq!(length, 24);
        let header = Header::decode(&out).unwrap();
        assert!(header.is_dump());
        assert_eq!(header.kind, RTM_GETADDR);
        assert_eq!(out[16], family.number());
    }
}

#[test]
fn acknowledgements_and_errors_are_told_apart_by_sequence() {
    let mut datagram = Vec::new();
    for (sequence, raw) in [(3u32, -99i32), (4, 0)] {
        let mut payload = raw.to_ne_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // the request's header
        datagram.extend(kernel_message(NLMSG_ERROR, sequence, &payload));
    }
    let found = all_messages(&datagram);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].header.sequence, 3);
    assert_eq!(found[0].body(), Ok(Body::Error { code: 99 }));
    assert_eq!(found[1].body(), Ok(Body::Error { code: 0 }));
    let done = kernel_message(NLMSG_DONE, 4, &0u32.to_ne_bytes());
    assert_eq!(all_messages(&done)[0].body(), Ok(Body::Done));
}

#[test]
fn error_codes_that_are_not_errnos_are_refused() {
    assert_eq!(error_code(&(-22i32).to_ne_bytes()), Ok(22));
    assert_eq!(error_code(&0i32.to_ne_bytes()), Ok(0));
    assert_eq!(
        error_code(&5i32.to_ne_bytes()),
        Err(DecodeError::ErrorCodeInvalid { code: 5 })
    );
    assert_eq!(
        error_code(&i32::MIN.to_ne_bytes()),
        Err(DecodeError::ErrorCodeInvalid { code: i32::MIN })
    );
    assert_eq!(
        error_code(&[0, 0]),
        Err(DecodeError::PayloadTruncated {
            what: "netlink error",
            available: 2,
            needed: 4
        })
    );
}

#[test]
fn malformed_message_headers_give_precise_errors() {
    let good = kernel_message(RTM_NEWADDR, 1, &reported_address_payload());
    assert_eq!(
        messages(&good[..10]).next(),
        Some(Err(DecodeError::HeaderTruncated { available: 10 }))
    );
    let mut short = good.clone();
    short[0..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(
        messages(&short).next(),
        Some(Err(DecodeError::LengthBelowHeader { length: 8 }))
    );
    let mut long = good.clone();
    long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    assert_eq!(
        messages(&long).next(),
        Some(Err(DecodeError::LengthBeyondData {
            length: 1000,
            available: good.len()
        }))
    );
    // After an error the iterator ends.
    let mut iterator = messages(&long);
    assert!(iterator.next().unwrap().is_err());
    assert_eq!(iterator.next(), None);
}

#[test]
fn malformed_payloads_and_attributes_give_precise_errors() {
    assert_eq!(
        AddressMessage::decode(&[AF_INET, 24, 0]),
        Err(DecodeError::PayloadTruncated {
            what: "ifaddrmsg",
            available: 3,
            needed: 8
        })
    );
    assert_eq!(
        LinkMessage::decode(&[0; 15]),
        Err(DecodeError::PayloadTruncated {
            what: "ifinfomsg",
            available: 15,
            needed: 16
        })
    );
    let mut payload = vec![AF_INET, 24, 0, 0, 1, 0, 0, 0];
    payload.extend_from_slice(&[8, 0]);
    assert_eq!(
        AddressMessage::decode(&payload),
        Err(DecodeError::AttributeHeaderTruncated { available: 2 })
    );
    payload.truncate(8);
    payload.extend_from_slice(&2u16.to_ne_bytes());
    payload.extend_from_slice(&IFA_LOCAL.to_ne_bytes());
    assert_eq!(
        AddressMessage::decode(&payload),
        Err(DecodeError::AttributeLengthBelowHeader {
            kind: IFA_LOCAL,
            length: 2
        })
    );
    payload.truncate(8);
    payload.extend_from_slice(&12u16.to_ne_bytes());
    payload.extend_from_slice(&IFA_LOCAL.to_ne_bytes());
    payload.extend_from_slice(&[198, 18, 0, 1]);
    assert_eq!(
        AddressMessage::decode(&payload),
        Err(DecodeError::AttributeLengthBeyondData {
            kind: IFA_LOCAL,
            length: 12,
            available: 8
        })
    );
}

#[test]
fn every_truncation_of_a_datagram_is_an_error() {
    let mut datagram = kernel_message(RTM_NEWADDR, 1, &reported_address_payload());
    datagram.extend(kernel_message(RTM_NEWLINK, 1, &link_payload()));
    datagram.extend(kernel_message(NLMSG_DONE, 1, &0u32.to_ne_bytes()));
    assert_eq!(all_messages(&datagram).len(), 3);
    let boundaries: Vec<usize> = {
        let mut at = 0;
        let mut ends = vec![0];
        for message in all_messages(&datagram) {
            at += align4(message.header.length as usize);
            ends.push(at);
        }
        ends
    };
    for cut in 0..datagram.len() {
        let decoded: Result<Vec<_>, _> = messages(&datagram[..cut]).collect();
        if boundaries.contains(&cut) {
            assert!(decoded.is_ok(), "cut at a message boundary {cut}");
        } else {
            assert!(
                decoded.is_err(),
                "cut inside a message at {cut}: {decoded:?}"
            );
        }
    }
}

#[test]
fn every_truncation_inside_an_attribute_is_an_error() {
    let payload = reported_address_payload();
    // The last attribute of a message need not have (all of) its padding.
    let mut boundaries = vec![IFADDRMSG_BYTES];
    let mut at = IFADDRMSG_BYTES;
    for attribute in attributes(&payload[IFADDRMSG_BYTES..]) {
        let length = ATTRIBUTE_HEADER_BYTES + attribute.unwrap().value.len();
        boundaries.extend(at + length..=at + align4(length));
        at += align4(length);
    }
    assert_eq!(at, payload.len());
    for cut in IFADDRMSG_BYTES..payload.len() {
        let decoded = AddressMessage::decode(&payload[..cut]);
        assert_eq!(decoded.is_ok(), boundaries.contains(&cut), "cut {cut}");
    }
}

#[test]
fn encoders_refuse_bad_arguments_precisely() {
    let mut out = [0u8; REQUEST_BYTES_MAX];
    assert_eq!(
        encode_address_change(&mut out, 1, AddressChange::Add, &v4(1, "198.18.0.1", 33)),
        Err(EncodeError::PrefixLengthInvalid {
            prefix_length: 33,
            max: 32
        })
    );
    let v6 = InterfaceAddress {
        interface_index: 1,
        address: "fd00::1".parse().unwrap(),
        prefix_length: 129,
    };
    assert_eq!(
        encode_address_change(&mut out, 1, AddressChange::Add, &v6),
        Err(EncodeError::PrefixLengthInvalid {
            prefix_length: 129,
            max: 128
        })
    );
    for index in [0, 1 << 31, u32::MAX] {
        assert_eq!(
            encode_address_change(
                &mut out,
                1,
                AddressChange::Add,
                &v4(index, "198.18.0.1", 24)
            ),
            Err(EncodeError::InterfaceIndexInvalid { index })
        );
        assert_eq!(
            encode_set_link_up(&mut out, 1, index, true),
            Err(EncodeError::InterfaceIndexInvalid { index })
        );
        assert_eq!(
            encode_link_by_index(&mut out, 1, index),
            Err(EncodeError::InterfaceIndexInvalid { index })
        );
    }
    for name in ["", "a-name-of-16-byt", "nul\0inside"] {
        assert_eq!(
            encode_link_by_name(&mut out, 1, name),
            Err(EncodeError::InterfaceNameInvalid { length: name.len() })
        );
    }
    assert!(encode_link_by_name(&mut out, 1, "fifteen-bytes-x").is_ok());
    let long = [0u8; 70_000];
    let mut big = vec![0u8; 80_000];
    let mut writer = Writer::new(&mut big, RTM_NEWADDR, 0, 1).unwrap();
    assert_eq!(
        writer.put_attribute(IFA_LOCAL, &long),
        Err(EncodeError::AttributeTooLong {
            kind: IFA_LOCAL,
            length: 70_000
        })
    );
}

#[test]
fn every_encoder_reports_a_buffer_that_is_too_small() {
    let reported_payload = reported_address_payload();
    let reported = AddressMessage::decode(&reported_payload).unwrap();
    type Encode<'a> = Box<dyn Fn(&mut [u8]) -> Result<usize, EncodeError> + 'a>;
    let encoders: Vec<Encode<'_>> = vec![
        Box::new(|out| encode_address_change(out, 1, AddressChange::Add, &v4(2, "198.18.0.9", 24))),
        Box::new(|out| encode_delete_reported(out, 1, &reported)),
        Box::new(|out| encode_address_dump(out, 1, AddressFamily::Ipv4)),
        Box::new(|out| encode_link_by_index(out, 1, 2)),
        Box::new(|out| encode_link_by_name(out, 1, "eth0")),
        Box::new(|out| encode_set_link_up(out, 1, 2, true)),
    ];
    for encode in &encoders {
        let mut out = [0u8; REQUEST_BYTES_MAX];
        let needed = encode(&mut out).unwrap();
        for available in 0..needed {
            let mut small = vec![0u8; available];
            match encode(&mut small) {
                Err(EncodeError::BufferTooSmall {
                    needed: n,
                    available: a,
                }) => assert!(n > available && a == available, "{n} {a}"),
                other => panic!("{available} of {needed} bytes: {other:?}"),
            }
        }
    }
}

/// xorshift64*: a fixed-seed source of bytes, so a failure replays exactly.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Decodes everything a datagram holds; returns how many steps it took (messages and
/// attributes), which must stay within one per 4 bytes.
fn decode_everything(datagram: &[u8]) -> usize {
    let mut steps = 0;
    for message in messages(datagram) {
        steps += 1;
        let Ok(message) = message else { break };
        assert!(message.payload.len() <= datagram.len());
        match message.body() {
            Ok(Body::Address(address)) => {
                steps += address.attributes().count();
                let _ = (address.address(), address.all_flags());
            }
            Ok(Body::Link(link)) => {
                steps += link.attributes().count();
                let _ = (link.name(), link.hardware_address(), link.is_up());
            }
            Ok(_) | Err(_) => {}
        }
        steps += attributes(message.payload).count();
    }
    steps
}

#[test]
fn random_bytes_never_panic_and_never_loop() {
    let mut random = Random(0x5eed_0000_0014_0004);
    let mut buffer = [0u8; 256];
    for _ in 0..20_000 {
        let length = random.below(buffer.len() + 1);
        for byte in &mut buffer[..length] {
            *byte = random.next() as u8;
        }
        // Plausible headers now and then, so that the payload decoders run too.
        if length >= HEADER_BYTES && random.below(2) == 0 {
            let message_length = HEADER_BYTES + random.below(length - HEADER_BYTES + 1);
            buffer[0..4].copy_from_slice(&(message_length as u32).to_ne_bytes());
            let kinds = [
                NLMSG_ERROR,
                NLMSG_DONE,
                RTM_NEWADDR,
                RTM_NEWLINK,
                RTM_DELADDR,
            ];
            let kind = kinds[random.below(kinds.len())];
            buffer[4..6].copy_from_slice(&kind.to_ne_bytes());
        }
        let steps = decode_everything(&buffer[..length]);
        assert!(
            steps <= 3 * (length / 4 + 1),
            "{steps} steps for {length} bytes"
        );
    }
}

#[test]
fn corrupted_valid_datagrams_never_panic() {
    let mut valid = kernel_message(RTM_NEWADDR, 1, &reported_address_payload());
    valid.extend(kernel_message(RTM_NEWLINK, 1, &link_payload()));
    let mut random = Random(0x5eed_0000_0014_0005);
    for _ in 0..20_000 {
        let mut datagram = valid.clone();
        for _ in 0..1 + random.below(4) {
            let at = random.below(datagram.len());
            datagram[at] = random.next() as u8;
        }
        let cut = random.below(datagram.len() + 1);
        decode_everything(&datagram[..cut]);
    }
}
