//! Raw Ethernet frames for the malformed-traffic test: a valid ARP request (to prove the
//! injected frames reach the guest's stack) and a catalogue of broken Ethernet, ARP,
//! IPv4, ICMP, UDP and TCP frames, many with correct checksums so they get past the
//! first checks and into the deeper parsing.

use percore::random::XorShift64;

/// The MAC address QEMU gives the guest's first NIC.
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The guest's address on user networking.
pub const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
/// The made-up host that sends the injected frames.
pub const FAKE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xba, 0xd0, 0x01];
/// The made-up host's address.
pub const FAKE_IP: [u8; 4] = [10, 0, 2, 99];

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const PROTOCOL_ICMP: u8 = 1;
const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;

/// Returns the Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Returns an Ethernet frame from the fake host to the guest.
fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend(GUEST_MAC);
    frame.extend(FAKE_MAC);
    frame.extend(ethertype.to_be_bytes());
    frame.extend(payload);
    frame
}

/// Returns an IPv4 packet (header without options) from the fake host to the guest,
/// with a correct header checksum.
fn ipv4(protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut packet = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, protocol, 0, 0];
    packet[2..4].copy_from_slice(&total.to_be_bytes());
    packet.extend(FAKE_IP);
    packet.extend(GUEST_IP);
    let sum = checksum(&packet);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend(payload);
    packet
}

/// Fills in the TCP or UDP checksum of `segment` (at `offset`) over the pseudo-header.
fn transport_checksum(protocol: u8, segment: &mut [u8], offset: usize) {
    let mut pseudo = Vec::with_capacity(12 + segment.len());
    pseudo.extend(FAKE_IP);
    pseudo.extend(GUEST_IP);
    pseudo.extend([0, protocol]);
    pseudo.extend((segment.len() as u16).to_be_bytes());
    segment[offset..offset + 2].fill(0);
    pseudo.extend(&*segment);
    let sum = checksum(&pseudo);
    segment[offset..offset + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Returns a TCP segment to the guest's `port` with a correct checksum.
fn tcp(port: u16, flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let header = 20 + options.len();
    let mut segment = Vec::with_capacity(header + payload.len());
    segment.extend(40000u16.to_be_bytes());
    segment.extend(port.to_be_bytes());
    segment.extend(0x1000_0000u32.to_be_bytes());
    segment.extend(0u32.to_be_bytes());
    segment.push((((header / 4) as u8) & 0x0f) << 4);
    segment.push(flags);
    segment.extend(8192u16.to_be_bytes());
    segment.extend([0, 0, 0, 0]);
    segment.extend(options);
    segment.extend(payload);
    transport_checksum(PROTOCOL_TCP, &mut segment, 16);
    segment
}

/// Returns a UDP datagram to the guest's `port` with a correct checksum.
fn udp(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(8 + payload.len());
    datagram.extend(40001u16.to_be_bytes());
    datagram.extend(port.to_be_bytes());
    datagram.extend(((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend([0, 0]);
    datagram.extend(payload);
    transport_checksum(PROTOCOL_UDP, &mut datagram, 6);
    datagram
}

/// Returns an ARP request from the fake host asking for the guest's address.
pub fn arp_request() -> Vec<u8> {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend(FAKE_MAC);
    arp.extend(FAKE_IP);
    arp.extend([0; 6]);
    arp.extend(GUEST_IP);
    let mut frame = ethernet(ETHERTYPE_ARP, &arp);
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame
}

/// Returns a valid UDP datagram from the fake host to the guest's `port`.
pub fn udp_datagram(port: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_UDP, &udp(port, payload)))
}

/// Returns the payload of `frame` when it is a UDP datagram from the guest to the fake
/// host (an answer to [`udp_datagram`]).
pub fn udp_payload_to_fake_host(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < 42
        || frame[..6] != FAKE_MAC
        || frame[12..14] != ETHERTYPE_IPV4.to_be_bytes()
        || frame[14] != 0x45
        || frame[23] != PROTOCOL_UDP
        || frame[30..34] != FAKE_IP
    {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([frame[38], frame[39]]));
    frame.get(42..34 + length)
}

/// Returns true when `frame` is the guest's ARP reply to the fake host.
pub fn is_arp_reply(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[..6] == FAKE_MAC
        && frame[12..14] == ETHERTYPE_ARP.to_be_bytes()
        && frame[20..22] == [0, 2]
        && frame[28..32] == GUEST_IP
}

/// A change that breaks a valid IPv4 packet.
type Edit = fn(&mut Vec<u8>);

/// Returns `count` bytes from `random`.
fn bytes(random: &mut XorShift64, count: usize) -> Vec<u8> {
    let mut bytes = vec![0; count];
    random.fill(&mut bytes);
    bytes
}

/// Returns the catalogue of malformed frames, each with what it is.
pub fn malformed(seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    // Seeded, so a failing frame can be found again.
    let mut random = XorShift64::new(seed);
    let mut frames: Vec<(&'static str, Vec<u8>)> = Vec::new();
    // Ethernet: runts, random bodies, oversize, unknown type. (No empty frame: QEMU's
    // socket backend takes an empty datagram for the end of the connection and stops
    // reading.)
    frames.push(("one byte", vec![0x52]));
    frames.push(("runt frame", GUEST_MAC.to_vec()));
    for length in [14usize, 15, 60, 100, 600, 1514, 1515, 1600, 4000, 9000] {
        let mut frame = ethernet(
            ETHERTYPE_IPV4,
            &bytes(&mut random, length.saturating_sub(14)),
        );
        frame.truncate(length);
        frames.push(("random IPv4 body", frame));
    }
    frames.push((
        "unknown ethertype",
        ethernet(0x88b5, &bytes(&mut random, 46)),
    ));
    frames.push(("IPv6 garbage", ethernet(0x86dd, &bytes(&mut random, 80))));
    // ARP: truncated, wrong sizes, opcode 0.
    let request = arp_request();
    for cut in [15, 20, 27, 41] {
        frames.push(("truncated ARP", request[..cut].to_vec()));
    }
    let mut wrong_sizes = request.clone();
    wrong_sizes[18] = 16;
    wrong_sizes[19] = 1;
    frames.push(("ARP with wrong address sizes", wrong_sizes));
    let mut opcode_zero = request.clone();
    opcode_zero[21] = 0;
    frames.push(("ARP opcode 0", opcode_zero));
    // IPv4 headers: truncated, bad version, IHL too small and too large, total length
    // beyond the frame and below the header, bad checksum, fragments, options garbage.
    let packet = ipv4(PROTOCOL_UDP, &udp(7, b"malformed"));
    for cut in [1, 10, 19, 20, 27] {
        frames.push(("truncated IPv4", ethernet(ETHERTYPE_IPV4, &packet[..cut])));
    }
    let edits: [(&'static str, Edit); 11] = [
        ("IPv4 version 6", |p| p[0] = 0x65),
        ("IPv4 IHL 4", |p| p[0] = 0x44),
        ("IPv4 IHL 15", |p| p[0] = 0x4f),
        ("IPv4 total length 65535", |p| {
            p[2..4].copy_from_slice(&[0xff, 0xff])
        }),
        ("IPv4 total length 8", |p| p[2..4].copy_from_slice(&[0, 8])),
        ("IPv4 bad checksum", |p| p[10] ^= 0xff),
        ("IPv4 more fragments", |p| p[6] = 0x20),
        ("IPv4 fragment offset", |p| {
            p[6..8].copy_from_slice(&[0x1f, 0xff])
        }),
        ("IPv4 TTL 0", |p| p[8] = 0),
        ("IPv4 from broadcast", |p| p[12..16].fill(0xff)),
        ("IPv4 options garbage", |p| {
            p[0] = 0x47;
            p.splice(20..20, [0x83, 0xff, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]);
        }),
    ];
    for (name, edit) in &edits {
        let mut broken = packet.clone();
        edit(&mut broken);
        // Fix the header checksum unless the checksum is the point.
        if *name != "IPv4 bad checksum" && broken.len() >= 20 && broken[0] & 0x0f >= 5 {
            let header = usize::from(broken[0] & 0x0f) * 4;
            if header <= broken.len() {
                broken[10..12].fill(0);
                let sum = checksum(&broken[..header]);
                broken[10..12].copy_from_slice(&sum.to_be_bytes());
            }
        }
        frames.push((name, ethernet(ETHERTYPE_IPV4, &broken)));
    }
    // ICMP: truncated echo request, and an echo request with a bad checksum.
    frames.push((
        "truncated ICMP",
        ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_ICMP, &[8, 0])),
    ));
    frames.push((
        "ICMP bad checksum",
        ethernet(
            ETHERTYPE_IPV4,
            &ipv4(PROTOCOL_ICMP, &[8, 0, 0, 0, 0, 1, 0, 1, 1, 2]),
        ),
    ));
    // UDP: length field too large and too small, bad checksum, to a closed port.
    let mut too_long = udp(7, b"abc");
    too_long[4..6].copy_from_slice(&500u16.to_be_bytes());
    frames.push((
        "UDP length too large",
        ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_UDP, &too_long)),
    ));
    let mut too_short = udp(7, b"abcdef");
    too_short[4..6].copy_from_slice(&3u16.to_be_bytes());
    frames.push((
        "UDP length too small",
        ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_UDP, &too_short)),
    ));
    let mut bad_sum = udp(7, b"abc");
    bad_sum[6] ^= 0x55;
    frames.push((
        "UDP bad checksum",
        ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_UDP, &bad_sum)),
    ));
    frames.push((
        "UDP to a closed port",
        ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_UDP, &udp(9, b"x"))),
    ));
    // TCP: truncated header, data offset too small and too large, impossible flag sets,
    // broken options, a bad checksum, to the echo port and to a closed one.
    let syn = tcp(7, 0x02, &[], &[]);
    frames.push((
        "truncated TCP",
        ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_TCP, &syn[..12])),
    ));
    for (name, offset) in [("TCP data offset 2", 2u8), ("TCP data offset 15", 15)] {
        let mut broken = syn.clone();
        broken[12] = offset << 4;
        transport_checksum(PROTOCOL_TCP, &mut broken, 16);
        frames.push((name, ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_TCP, &broken))));
    }
    for (name, flags) in [
        ("TCP SYN+FIN", 0x03u8),
        ("TCP SYN+RST", 0x06),
        ("TCP all flags", 0xff),
        ("TCP no flags", 0x00),
        ("TCP ACK out of nowhere", 0x10),
        ("TCP RST out of nowhere", 0x04),
        ("TCP FIN out of nowhere", 0x01),
    ] {
        let segment = tcp(7, flags, &[], b"data");
        frames.push((
            name,
            ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_TCP, &segment)),
        ));
    }
    for (name, options) in [
        ("TCP option length 0", vec![2u8, 0, 0, 0]),
        ("TCP option length 1", vec![3, 1, 0, 0]),
        ("TCP option past the header", vec![8, 40, 0, 0]),
        ("TCP window scale 200", vec![3, 3, 200, 0]),
        ("TCP MSS 0", vec![2, 4, 0, 0]),
        (
            "TCP SACK garbage",
            vec![
                5, 18, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0, 0,
            ],
        ),
    ] {
        let segment = tcp(7, 0x02, &options, &[]);
        frames.push((
            name,
            ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_TCP, &segment)),
        ));
    }
    let mut bad_sum = tcp(7, 0x02, &[], &[]);
    bad_sum[16] ^= 0x55;
    frames.push((
        "TCP bad checksum",
        ethernet(ETHERTYPE_IPV4, &ipv4(PROTOCOL_TCP, &bad_sum)),
    ));
    frames.push((
        "TCP SYN to a closed port",
        ethernet(
            ETHERTYPE_IPV4,
            &ipv4(PROTOCOL_TCP, &tcp(1234, 0x02, &[], &[])),
        ),
    ));
    // Random bytes behind valid IPv4 headers, for each protocol.
    for round in 0..60 {
        let protocol = [PROTOCOL_ICMP, PROTOCOL_TCP, PROTOCOL_UDP][round % 3];
        let length = random.below(200) as usize;
        frames.push((
            "random transport payload",
            ethernet(ETHERTYPE_IPV4, &ipv4(protocol, &bytes(&mut random, length))),
        ));
    }
    // And a flood of fully random frames addressed to the guest.
    for _ in 0..300 {
        let length = random.below(1514) as usize;
        let mut frame = GUEST_MAC.to_vec();
        frame.extend(bytes(&mut random, length));
        frames.push(("random frame", frame));
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_textbook_example() {
        // The IPv4 header of RFC 1071-style worked examples: 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
        let mut filled = header;
        filled[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&filled), 0, "a correct header sums to zero");
    }

    #[test]
    fn built_packets_carry_correct_checksums() {
        let packet = ipv4(PROTOCOL_TCP, &tcp(7, 0x02, &[2, 4, 5, 0xb4], b"hi"));
        assert_eq!(checksum(&packet[..20]), 0);
        let segment = &packet[20..];
        let mut pseudo = Vec::new();
        pseudo.extend(FAKE_IP);
        pseudo.extend(GUEST_IP);
        pseudo.extend([0, PROTOCOL_TCP]);
        pseudo.extend((segment.len() as u16).to_be_bytes());
        pseudo.extend(segment);
        assert_eq!(checksum(&pseudo), 0);
    }

    #[test]
    fn the_arp_request_asks_for_the_guest_and_a_reply_is_recognised() {
        let request = arp_request();
        assert_eq!(request.len(), 42);
        assert_eq!(&request[38..42], &GUEST_IP);
        let mut reply = request.clone();
        reply[..6].copy_from_slice(&FAKE_MAC);
        reply[21] = 2;
        reply[28..32].copy_from_slice(&GUEST_IP);
        assert!(is_arp_reply(&reply));
        assert!(!is_arp_reply(&request));
    }

    #[test]
    fn a_udp_answer_is_recognised_and_its_payload_taken() {
        let request = udp_datagram(7, b"ping");
        assert_eq!(
            udp_payload_to_fake_host(&request),
            None,
            "that one goes to the guest"
        );
        // The guest's answer: addresses swapped.
        let mut answer = request.clone();
        answer[..6].copy_from_slice(&FAKE_MAC);
        answer[6..12].copy_from_slice(&GUEST_MAC);
        answer[26..30].copy_from_slice(&GUEST_IP);
        answer[30..34].copy_from_slice(&FAKE_IP);
        assert_eq!(udp_payload_to_fake_host(&answer), Some(&b"ping"[..]));
        assert_eq!(udp_payload_to_fake_host(&answer[..41]), None);
    }

    #[test]
    fn the_catalogue_is_deterministic_and_varied() {
        let (a, b) = (malformed(7), malformed(7));
        assert_eq!(a, b);
        assert!(a.len() > 400);
        assert!(
            a.iter().all(|(_, frame)| !frame.is_empty()),
            "QEMU ends on empty ones"
        );
        assert!(a.iter().any(|(_, frame)| frame.len() < 14));
        assert!(a.iter().any(|(_, frame)| frame.len() > 1514));
        assert_ne!(malformed(8), a);
    }
}
