//! Internet checksums (RFC 1071) of the TCP and UDP segments in Ethernet frames carrying
//! IPv4, for virtio-net's checksum offload: finding the segment, the pseudo-header sum a
//! partially checksummed frame carries, completing a partial checksum, and checking one.
//!
//! Every function takes untrusted bytes and cannot panic: [`classify`] checks each length
//! and offset it reads before the others use them, and [`complete_partial`] checks the
//! device's offsets.

/// Bytes of an Ethernet header without a VLAN tag.
pub const ETHERNET_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPV4_MINIMUM_HEADER: usize = 20;
const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;

/// A transport protocol whose checksum covers a pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// Returns the offset of the checksum field from the start of the protocol's header.
    pub const fn checksum_offset(self) -> usize {
        match self {
            Protocol::Tcp => 16,
            Protocol::Udp => 6,
        }
    }

    const fn minimum_header(self) -> usize {
        match self {
            Protocol::Tcp => 20,
            Protocol::Udp => 8,
        }
    }

    const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTOCOL_TCP,
            Protocol::Udp => PROTOCOL_UDP,
        }
    }
}

/// A whole (unfragmented) TCP or UDP segment in an Ethernet frame carrying IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Offset of the segment in the frame: the Ethernet header plus the IPv4 header.
    pub start: usize,
    /// Offset just past the segment: the end of the IPv4 packet for TCP, the end the UDP
    /// length field gives for UDP. Ethernet padding may follow.
    pub end: usize,
    /// The one's-complement sum of the pseudo-header (source, destination, protocol,
    /// segment length), folded and not inverted: what a partially checksummed segment
    /// carries in its checksum field.
    pub pseudo_header: u16,
}

impl Segment {
    /// Returns the offset of the checksum field in the frame.
    pub const fn checksum_field(&self) -> usize {
        self.start + self.protocol.checksum_offset()
    }
}

/// What an Ethernet frame carries, as far as TCP and UDP checksums go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// A whole TCP or UDP segment over IPv4.
    Segment(Segment),
    /// A fragment of an IPv4 packet carrying TCP or UDP: its checksum covers the whole
    /// packet, so no single frame can be checked or completed.
    Fragment,
    /// An IPv4 packet whose headers contradict each other or the frame (truncated, a
    /// header length below 20 bytes, a TCP or UDP header that does not fit, ...).
    Malformed,
    /// Anything else: not IPv4, or IPv4 carrying another protocol (ICMP, ...).
    Other,
}

/// Returns what `frame` (an Ethernet frame without FCS) carries. Reads only the headers.
pub fn classify(frame: &[u8]) -> Contents {
    let Some(&[high, low]) = frame.get(12..ETHERNET_HEADER) else {
        return Contents::Other;
    };
    if u16::from_be_bytes([high, low]) != ETHERTYPE_IPV4 {
        return Contents::Other;
    }
    let Some(packet) = frame.get(ETHERNET_HEADER..) else {
        return Contents::Other;
    };
    let Some(header) = packet.get(..IPV4_MINIMUM_HEADER) else {
        return Contents::Malformed;
    };
    let (version, header_len) = (header[0] >> 4, usize::from(header[0] & 0x0F) * 4);
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if version != 4
        || header_len < IPV4_MINIMUM_HEADER
        || total_len < header_len
        || total_len > packet.len()
    {
        return Contents::Malformed;
    }
    let protocol = match header[9] {
        PROTOCOL_TCP => Protocol::Tcp,
        PROTOCOL_UDP => Protocol::Udp,
        _ => return Contents::Other,
    };
    // More fragments (flag bit 0x2000) or a fragment offset (low 13 bits).
    if u16::from_be_bytes([header[6], header[7]]) & 0x3FFF != 0 {
        return Contents::Fragment;
    }
    let start = ETHERNET_HEADER + header_len;
    let ip_end = ETHERNET_HEADER + total_len;
    let Some(segment) = frame.get(start..ip_end) else {
        return Contents::Malformed;
    };
    if segment.len() < protocol.minimum_header() {
        return Contents::Malformed;
    }
    let len = match protocol {
        Protocol::Tcp => segment.len(),
        Protocol::Udp => {
            let len = usize::from(u16::from_be_bytes([segment[4], segment[5]]));
            if !(protocol.minimum_header()..=segment.len()).contains(&len) {
                return Contents::Malformed;
            }
            len
        }
    };
    // The segment is at most 65535 - 20 bytes: the IPv4 total length is a u16.
    let length = u16::try_from(len).unwrap_or(u16::MAX);
    let mut pseudo = sum(&header[12..20], 0);
    pseudo += u64::from(protocol.number()) + u64::from(length);
    Contents::Segment(Segment {
        protocol,
        start,
        end: start + len,
        pseudo_header: fold(pseudo),
    })
}

/// Returns `initial` plus the big-endian 16-bit words of `data`, an odd last byte padded
/// with zero, unfolded.
pub fn sum(data: &[u8], initial: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    let mut total = initial;
    for word in &mut words {
        total += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let &[last] = words.remainder() {
        total += u64::from(last) << 8;
    }
    total
}

/// Returns `total` folded into 16 bits with end-around carry (the one's-complement sum).
pub fn fold(mut total: u64) -> u16 {
    while total > 0xFFFF {
        total = (total & 0xFFFF) + (total >> 16);
    }
    total as u16
}

/// Returns the checksum to store for data whose one's-complement sum (the field counted
/// as zero) is `total`: its complement, with 0 sent as 0xFFFF (the same value in one's
/// complement, and the only form UDP accepts, where 0 means "no checksum").
fn finish(total: u64) -> u16 {
    match !fold(total) {
        0 => 0xFFFF,
        checksum => checksum,
    }
}

/// Returns true if the checksum of `segment` (found in `frame` by [`classify`]) is right;
/// a UDP checksum of zero (none sent) counts as right.
pub fn verify(frame: &[u8], segment: &Segment) -> bool {
    let Some(data) = frame.get(segment.start..segment.end) else {
        return false;
    };
    let field = segment.protocol.checksum_offset();
    if segment.protocol == Protocol::Udp && data.get(field..field + 2) == Some(&[0, 0]) {
        return true;
    }
    fold(sum(data, u64::from(segment.pseudo_header))) == 0xFFFF
}

/// Returns the full checksum of `segment` (found in `frame` by [`classify`]), whatever its
/// checksum field holds now; `None` if the segment is not in `frame`.
pub fn compute(frame: &[u8], segment: &Segment) -> Option<u16> {
    let data = frame.get(segment.start..segment.end)?;
    let field = segment.protocol.checksum_offset();
    // The field is at an even offset, so both halves keep the word alignment.
    let before = data.get(..field)?;
    let after = data.get(field + 2..)?;
    Some(finish(sum(
        after,
        sum(before, u64::from(segment.pseudo_header)),
    )))
}

/// A partial checksum's place that does not fit the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPlacement {
    /// Where checksumming was to start (`csum_start`).
    pub start: u16,
    /// Where the checksum was to go, from `start` (`csum_offset`).
    pub offset: u16,
}

/// Completes a partial checksum as virtio-net's `VIRTIO_NET_HDR_F_NEEDS_CSUM` asks: sums
/// `frame` from `start` to its end (the checksum field holds the pseudo-header sum and is
/// counted) and stores the complement at `start + offset`. Refuses, changing nothing,
/// when the two-byte field does not lie within the frame.
pub fn complete_partial(frame: &mut [u8], start: u16, offset: u16) -> Result<(), BadPlacement> {
    let bad = BadPlacement { start, offset };
    let field = usize::from(start) + usize::from(offset);
    if field + 2 > frame.len() {
        return Err(bad);
    }
    let covered = frame.get(usize::from(start)..).ok_or(bad)?;
    let checksum = finish(sum(covered, 0));
    frame
        .get_mut(field..field + 2)
        .ok_or(bad)?
        .copy_from_slice(&checksum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns an Ethernet frame with an IPv4 header (no options, no fragment) around
    /// `payload` for `protocol`.
    fn ipv4_frame(protocol: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; ETHERNET_HEADER + 20];
        frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let ip = &mut frame[ETHERNET_HEADER..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = protocol;
        ip[12..16].copy_from_slice(&[10, 0, 2, 15]);
        ip[16..20].copy_from_slice(&[10, 0, 2, 2]);
        frame.extend_from_slice(payload);
        frame
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let mut segment = vec![0u8; 8];
        segment[0..2].copy_from_slice(&1234u16.to_be_bytes());
        segment[2..4].copy_from_slice(&53u16.to_be_bytes());
        segment[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        segment.extend_from_slice(payload);
        segment
    }

    #[test]
    fn sums_fold_with_end_around_carry_and_pad_odd_bytes() {
        // RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2 after folding.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(sum(&[0xAB], 0), 0xAB00);
        assert_eq!(fold(0x1_FFFF), 0x0001);
        assert_eq!(fold(0xFFFF_FFFF), 0xFFFF);
    }

    #[test]
    fn segments_are_found_and_everything_else_is_named() {
        let frame = ipv4_frame(PROTOCOL_UDP, &udp(b"hello"));
        let Contents::Segment(segment) = classify(&frame) else {
            panic!("not a segment: {:?}", classify(&frame));
        };
        assert_eq!(segment.protocol, Protocol::Udp);
        assert_eq!((segment.start, segment.end), (34, frame.len()));
        assert_eq!(segment.checksum_field(), 40);
        // 0a00 + 020f + 0a00 + 0202 + 0011 + 000d
        assert_eq!(
            segment.pseudo_header,
            0x0a00 + 0x020f + 0x0a00 + 0x0202 + 0x11 + 13
        );

        assert_eq!(classify(&ipv4_frame(1, &[8, 0, 0, 0])), Contents::Other);
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(classify(&arp), Contents::Other);
        assert_eq!(classify(&frame[..13]), Contents::Other);
        assert_eq!(classify(&frame[..14]), Contents::Malformed);
        assert_eq!(classify(&frame[..33]), Contents::Malformed);
        assert_eq!(classify(&frame[..frame.len() - 1]), Contents::Malformed);

        let mut fragment = frame.clone();
        fragment[ETHERNET_HEADER + 6] = 0x20; // more fragments
        assert_eq!(classify(&fragment), Contents::Fragment);
        fragment[ETHERNET_HEADER + 6] = 0x40; // don't fragment: whole
        assert!(matches!(classify(&fragment), Contents::Segment(_)));
        fragment[ETHERNET_HEADER + 7] = 1; // offset 8
        assert_eq!(classify(&fragment), Contents::Fragment);

        for (at, value) in [(0, 0x65), (0, 0x44), (2, 0xFF), (3, 0)] {
            let mut bad = frame.clone();
            bad[ETHERNET_HEADER + at] = value;
            assert_eq!(
                classify(&bad),
                Contents::Malformed,
                "byte {at} = {value:#x}"
            );
        }
        // A UDP length beyond the packet or below the header; a TCP header cut short.
        for length in [0u16, 7, 14] {
            let mut bad = frame.clone();
            bad[38..40].copy_from_slice(&length.to_be_bytes());
            assert_eq!(classify(&bad), Contents::Malformed, "UDP length {length}");
        }
        assert_eq!(
            classify(&ipv4_frame(PROTOCOL_TCP, &[0; 19])),
            Contents::Malformed
        );
        // Ethernet padding after the packet is not part of the segment.
        let mut padded = ipv4_frame(PROTOCOL_TCP, &[0; 20]);
        padded.extend_from_slice(&[0xEE; 6]);
        let Contents::Segment(segment) = classify(&padded) else {
            panic!("padded TCP not found");
        };
        assert_eq!(segment.end, padded.len() - 6);
    }

    #[test]
    fn computed_checksums_verify_and_partial_ones_complete() {
        for payload in [&b""[..], b"a", b"odd length!", &[0xFF; 1000]] {
            let mut frame = ipv4_frame(PROTOCOL_UDP, &udp(payload));
            let Contents::Segment(segment) = classify(&frame) else {
                panic!("UDP not found");
            };
            let field = segment.checksum_field();
            let checksum = compute(&frame, &segment).expect("in frame");
            frame[field..field + 2].copy_from_slice(&checksum.to_be_bytes());
            assert!(verify(&frame, &segment));
            let mut corrupt = frame.clone();
            *corrupt.last_mut().expect("bytes") ^= 0x10;
            assert!(!verify(&corrupt, &segment));

            // What a device completing a partial checksum produces is the same.
            let mut partial = frame.clone();
            partial[field..field + 2].copy_from_slice(&segment.pseudo_header.to_be_bytes());
            complete_partial(&mut partial, segment.start as u16, 6).expect("fits");
            assert_eq!(partial, frame);
        }
        // UDP without a checksum passes; TCP with a zero field is checked.
        let frame = ipv4_frame(PROTOCOL_UDP, &udp(b"no checksum"));
        let Contents::Segment(segment) = classify(&frame) else {
            panic!("UDP not found");
        };
        assert!(verify(&frame, &segment));
        let frame = ipv4_frame(PROTOCOL_TCP, &[0; 20]);
        let Contents::Segment(segment) = classify(&frame) else {
            panic!("TCP not found");
        };
        assert!(!verify(&frame, &segment));
    }

    #[test]
    fn a_partial_checksum_outside_the_frame_is_refused_untouched() {
        let frame = ipv4_frame(PROTOCOL_UDP, &udp(b"x"));
        let len = frame.len() as u16;
        for (start, offset) in [
            (len, 0),
            (len - 1, 0),
            (len - 2, 1),
            (34, len),
            (u16::MAX, u16::MAX),
            (0, u16::MAX),
        ] {
            let mut copy = frame.clone();
            assert_eq!(
                complete_partial(&mut copy, start, offset),
                Err(BadPlacement { start, offset })
            );
            assert_eq!(copy, frame);
        }
        let mut copy = frame.clone();
        assert_eq!(complete_partial(&mut copy, len - 2, 0), Ok(()));
        assert_eq!(complete_partial(&mut copy, 0, len - 2), Ok(()));
    }
}
