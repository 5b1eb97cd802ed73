//! virtio-net checksum offload (`VIRTIO_NET_F_CSUM`, `VIRTIO_NET_F_GUEST_CSUM`) against a
//! fake device played step by step on the same memory: it reads each transmitted packet's
//! header and completes partial checksums as a device would, and delivers received
//! packets with the header flags a device may set. Frames are built by smoltcp and every
//! checksum is judged by smoltcp's own `verify_checksum` and by the naive sum below, never
//! by the driver's code.

use devices::virtio::dma::DmaRegion;
use devices::virtio::net::{
    ChecksumDrops, NetConfig, NetError, NetFault, NetQueues, BUFFER_SIZE, FLAG_DATA_VALID,
    FLAG_NEEDS_CHECKSUM, HEADER_SIZE,
};
use devices::virtio::queue::SplitQueue;
use net::ChecksumOffload;
use smoltcp::phy::{Checksum, ChecksumCapabilities};
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber, UdpPacket, UdpRepr,
};

mod common;
use common::HostMemory;

const QUEUE_SIZE: u16 = 8;
const SOURCE: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const DESTINATION: Ipv4Address = Ipv4Address::new(192, 168, 7, 200);

// ---- Frames, built by smoltcp -------------------------------------------------------

/// Returns smoltcp's checksum settings: TCP and UDP checksums computed on transmit or
/// left out (as the stack does when the device takes them).
fn capabilities(transport_checksums: bool) -> ChecksumCapabilities {
    let mut capabilities = ChecksumCapabilities::default();
    if !transport_checksums {
        capabilities.tcp = Checksum::Rx;
        capabilities.udp = Checksum::Rx;
    }
    capabilities
}

fn ethernet_ipv4(protocol: IpProtocol, payload_len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + payload_len];
    frame[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let repr = Ipv4Repr {
        src_addr: SOURCE,
        dst_addr: DESTINATION,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    };
    repr.emit(
        &mut Ipv4Packet::new_unchecked(&mut frame[14..]),
        &ChecksumCapabilities::default(),
    );
    frame
}

/// Returns a TCP segment (with an MSS option) in IPv4 in Ethernet.
fn tcp_frame(payload: &[u8], checksummed: bool) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: 49152,
        dst_port: 80,
        control: TcpControl::Psh,
        seq_number: TcpSeqNumber(0x1234_5678),
        ack_number: Some(TcpSeqNumber(7)),
        window_len: 4096,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let mut frame = ethernet_ipv4(IpProtocol::Tcp, repr.buffer_len());
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut frame[34..]),
        &IpAddress::Ipv4(SOURCE),
        &IpAddress::Ipv4(DESTINATION),
        &capabilities(checksummed),
    );
    frame
}

fn udp_frame(payload: &[u8], checksummed: bool) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: 68,
        dst_port: 67,
    };
    let mut frame = ethernet_ipv4(IpProtocol::Udp, 8 + payload.len());
    repr.emit(
        &mut UdpPacket::new_unchecked(&mut frame[34..]),
        &IpAddress::Ipv4(SOURCE),
        &IpAddress::Ipv4(DESTINATION),
        payload.len(),
        |buffer| buffer.copy_from_slice(payload),
        &capabilities(checksummed),
    );
    frame
}

/// An ICMP echo request (smoltcp always checks ICMP itself).
fn icmp_frame() -> Vec<u8> {
    let mut frame = ethernet_ipv4(IpProtocol::Icmp, 12);
    frame[34..].copy_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g']);
    frame
}

fn arp_frame() -> Vec<u8> {
    let mut frame = vec![0xFF; 42];
    frame[12..14].copy_from_slice(&[0x08, 0x06]);
    frame
}

/// Returns `frame` with IPv4 options (one 4-byte option of NOPs) before its payload.
fn with_ip_options(frame: &[u8]) -> Vec<u8> {
    let mut longer = frame[..34].to_vec();
    longer.extend_from_slice(&[1, 1, 1, 1]);
    longer.extend_from_slice(&frame[34..]);
    let mut packet = Ipv4Packet::new_unchecked(&mut longer[14..]);
    packet.set_header_len(24);
    packet.set_total_len(packet.total_len() + 4);
    packet.fill_checksum();
    longer
}

fn fragment(frame: &[u8], more_fragments: bool, offset: u16) -> Vec<u8> {
    let mut fragment = frame.to_vec();
    let mut packet = Ipv4Packet::new_unchecked(&mut fragment[14..]);
    packet.set_more_frags(more_fragments);
    packet.set_frag_offset(offset);
    packet.fill_checksum();
    fragment
}

/// Returns true if the TCP or UDP checksum of `frame` (whole, IPv4 header of any length)
/// is right by smoltcp's judgement.
fn smoltcp_accepts(frame: &[u8]) -> bool {
    let packet = Ipv4Packet::new_checked(&frame[14..]).expect("IPv4");
    let (source, destination) = (
        IpAddress::Ipv4(packet.src_addr()),
        IpAddress::Ipv4(packet.dst_addr()),
    );
    match packet.next_header() {
        IpProtocol::Tcp => TcpPacket::new_checked(packet.payload())
            .expect("TCP")
            .verify_checksum(&source, &destination),
        IpProtocol::Udp => UdpPacket::new_checked(packet.payload())
            .expect("UDP")
            .verify_checksum(&source, &destination),
        other => panic!("not TCP or UDP: {other}"),
    }
}

// ---- An independent, naive checksum -----------------------------------------------

/// Returns the one's-complement sum of `bytes` as 16-bit words, folded after every add.
fn naive_sum(bytes: &[u8]) -> u16 {
    let mut total: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = (u32::from(pair[0]) << 8) | u32::from(pair.get(1).copied().unwrap_or(0));
        total += word;
        if total > 0xFFFF {
            total -= 0xFFFF;
        }
    }
    total as u16
}

/// Returns the pseudo-header sum of an IPv4 frame's segment (from the IPv4 header alone).
fn naive_pseudo_header(frame: &[u8]) -> u16 {
    let ip = &frame[14..];
    let header_len = usize::from(ip[0] & 0x0F) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, ip[9]]);
    pseudo.extend_from_slice(&((total_len - header_len) as u16).to_be_bytes());
    naive_sum(&pseudo)
}

/// What a device does with `VIRTIO_NET_HDR_F_NEEDS_CSUM`: sums from `start` to the end and
/// stores the complement at `start + offset`.
fn device_completes(frame: &mut [u8], start: usize, offset: usize) {
    let checksum = !naive_sum(&frame[start..]);
    frame[start + offset..start + offset + 2].copy_from_slice(&checksum.to_be_bytes());
}

// ---- The fake device ------------------------------------------------------------------

/// `virtio_net_hdr` as the device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Header {
    flags: u8,
    gso_type: u8,
    header_len: u16,
    gso_size: u16,
    checksum_start: u16,
    checksum_offset: u16,
    buffers: u16,
}

impl Header {
    fn parse(bytes: &[u8]) -> Header {
        let word = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        Header {
            flags: bytes[0],
            gso_type: bytes[1],
            header_len: word(2),
            gso_size: word(4),
            checksum_start: word(6),
            checksum_offset: word(8),
            buffers: word(10),
        }
    }

    fn bytes(&self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        bytes[0] = self.flags;
        bytes[1] = self.gso_type;
        for (at, value) in [
            (2, self.header_len),
            (4, self.gso_size),
            (6, self.checksum_start),
            (8, self.checksum_offset),
            (10, self.buffers),
        ] {
            bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    fn received(flags: u8, checksum_start: u16, checksum_offset: u16) -> Header {
        Header {
            flags,
            checksum_start,
            checksum_offset,
            buffers: 1,
            ..Header::default()
        }
    }
}

/// The device's side of one virtqueue.
struct Ring {
    descriptors: u64,
    available: u64,
    used: u64,
    seen: u16,
    used_index: u16,
}

impl Ring {
    fn new(queue: &SplitQueue) -> Ring {
        Ring {
            descriptors: queue.descriptor_table_address(),
            available: queue.available_address(),
            used: queue.used_address(),
            seen: 0,
            used_index: 0,
        }
    }
}

/// A device that runs only when a test step asks it to.
struct FakeDevice {
    memory: DmaRegion,
    receive: Ring,
    transmit: Ring,
}

impl FakeDevice {
    fn new(memory: DmaRegion, net: &NetQueues) -> FakeDevice {
        FakeDevice {
            memory,
            receive: Ring::new(net.receive_queue()),
            transmit: Ring::new(net.transmit_queue()),
        }
    }

    fn offset(&self, address: u64) -> usize {
        (address - self.memory.address()) as usize
    }

    /// Takes the next available chain of `ring`: its head, buffer address and length.
    fn next_available(memory: &DmaRegion, base: u64, ring: &mut Ring) -> Option<(u16, u64, u32)> {
        let offset = |address: u64| (address - base) as usize;
        if memory.read_u16(offset(ring.available + 2)) == ring.seen {
            return None;
        }
        let slot = u64::from(ring.seen % QUEUE_SIZE);
        let head = memory.read_u16(offset(ring.available + 4 + 2 * slot));
        ring.seen = ring.seen.wrapping_add(1);
        let descriptor = offset(ring.descriptors + 16 * u64::from(head));
        Some((
            head,
            memory.read_u64(descriptor),
            memory.read_u32(descriptor + 8),
        ))
    }

    fn push_used(memory: &DmaRegion, base: u64, ring: &mut Ring, id: u16, len: u32) {
        let offset = |address: u64| (address - base) as usize;
        let entry = offset(ring.used + 4 + 8 * u64::from(ring.used_index % QUEUE_SIZE));
        memory.write_u32(entry, u32::from(id));
        memory.write_u32(entry + 4, len);
        ring.used_index = ring.used_index.wrapping_add(1);
        memory.write_u16(offset(ring.used + 2), ring.used_index);
    }

    /// Returns the next transmitted packet's header and frame, and returns its buffer.
    fn transmitted(&mut self) -> (Header, Vec<u8>) {
        let base = self.memory.address();
        let (head, address, len) =
            Self::next_available(&self.memory, base, &mut self.transmit).expect("a packet");
        let mut packet = vec![0u8; len as usize];
        self.memory.read_bytes(self.offset(address), &mut packet);
        Self::push_used(&self.memory, base, &mut self.transmit, head, 0);
        let frame = packet.split_off(HEADER_SIZE);
        (Header::parse(&packet), frame)
    }

    /// Writes `header` and `frame` into the next receive buffer.
    fn deliver(&mut self, header: Header, frame: &[u8]) {
        let base = self.memory.address();
        let (head, address, len) =
            Self::next_available(&self.memory, base, &mut self.receive).expect("a buffer");
        assert_eq!(len as usize, BUFFER_SIZE);
        let at = self.offset(address);
        self.memory.write_bytes(at, &header.bytes());
        self.memory.write_bytes(at + HEADER_SIZE, frame);
        let used = (HEADER_SIZE + frame.len()) as u32;
        Self::push_used(&self.memory, base, &mut self.receive, head, used);
    }
}

/// Runs `test` with queues whose negotiated offloads are `checksum`, and their device.
fn with_queues(checksum: ChecksumOffload, test: impl FnOnce(&mut NetQueues, &mut FakeDevice)) {
    let memory = HostMemory::new(NetQueues::memory_size(QUEUE_SIZE));
    let config = NetConfig {
        mac: [2, 0, 0, 0, 0, 1],
        link_up: true,
        checksum,
    };
    let mut net = NetQueues::new(memory.region(), QUEUE_SIZE, config).expect("queues");
    let mut device = FakeDevice::new(memory.region(), &net);
    test(&mut net, &mut device);
}

const TRANSMIT: ChecksumOffload = ChecksumOffload {
    transmit: true,
    receive: false,
};
const RECEIVE: ChecksumOffload = ChecksumOffload {
    transmit: false,
    receive: true,
};

/// Sends `frame` through the queues; returns what the device got.
fn send(net: &mut NetQueues, device: &mut FakeDevice, frame: &[u8]) -> (Header, Vec<u8>) {
    net.transmit(frame).expect("transmit");
    net.publish_and_needs_notify();
    let sent = device.transmitted();
    assert_eq!(net.reclaim_transmitted(), 1);
    sent
}

/// Delivers `frame` with `header`; returns what the driver made of it.
fn receive(
    net: &mut NetQueues,
    device: &mut FakeDevice,
    header: Header,
    frame: &[u8],
) -> Result<Vec<u8>, NetError> {
    device.deliver(header, frame);
    let mut out = vec![0u8; BUFFER_SIZE];
    let result = net.receive_into(&mut out).expect("a frame");
    assert_eq!(net.receive_buffers_posted(), usize::from(QUEUE_SIZE));
    net.publish_and_needs_notify();
    result.map(|len| out[..len].to_vec())
}

// ---- Transmit ------------------------------------------------------------------------

#[test]
fn tcp_and_udp_leave_the_checksum_to_the_device() {
    let payloads: [&[u8]; 4] = [b"", b"x", b"GET / HTTP/1.0\r\n\r\n", &[0xA5; 1400]];
    for payload in payloads {
        for (complete, offset) in [
            (tcp_frame(payload, true), 16),
            (udp_frame(payload, true), 6),
            (with_ip_options(&tcp_frame(payload, true)), 16),
            (with_ip_options(&udp_frame(payload, true)), 6),
        ] {
            let start = 14 + usize::from(complete[14] & 0x0F) * 4;
            // What the stack hands over: no TCP/UDP checksum; and a stale one is ignored.
            let mut stack = complete.clone();
            stack[start + offset..start + offset + 2].copy_from_slice(&[0, 0]);
            let mut stale = complete.clone();
            stale[start + offset] ^= 0x5A;
            with_queues(TRANSMIT, |net, device| {
                for given in [&stack, &stale] {
                    let (header, mut frame) = send(net, device, given);
                    assert_eq!(
                        header,
                        Header {
                            flags: FLAG_NEEDS_CHECKSUM,
                            checksum_start: start as u16,
                            checksum_offset: offset as u16,
                            ..Header::default()
                        }
                    );
                    let field =
                        u16::from_be_bytes([frame[start + offset], frame[start + offset + 1]]);
                    assert_eq!(field, naive_pseudo_header(&frame), "partial, not inverted");
                    device_completes(&mut frame, start, offset);
                    assert!(smoltcp_accepts(&frame));
                    assert_eq!(frame, complete);
                }
            });
        }
    }
}

#[test]
fn other_frames_go_as_given_with_flags_zero() {
    let tcp = tcp_frame(b"data", false);
    let udp = udp_frame(b"data", false);
    let truncated_tcp = {
        // The IPv4 length says 19 bytes of TCP: too short for a header.
        let mut frame = tcp[..14 + 20 + 19].to_vec();
        let mut packet = Ipv4Packet::new_unchecked(&mut frame[14..]);
        packet.set_total_len(20 + 19);
        frame
    };
    let frames = [
        arp_frame(),
        icmp_frame(),
        fragment(&tcp, true, 0),
        fragment(&udp, false, 1480),
        tcp[..13].to_vec(),
        tcp[..30].to_vec(),
        tcp[..tcp.len() - 1].to_vec(),
        truncated_tcp,
        vec![],
    ];
    with_queues(TRANSMIT, |net, device| {
        for given in &frames {
            let (header, frame) = send(net, device, given);
            assert_eq!(header, Header::default(), "{given:x?}");
            assert_eq!(&frame, given);
        }
    });
}

#[test]
fn a_segment_with_bytes_after_it_is_checksummed_by_the_driver() {
    for complete in [tcp_frame(b"padded", true), udp_frame(b"padded", true)] {
        let mut stack = complete.clone();
        let field = if complete[23] == 6 { 34 + 16 } else { 34 + 6 };
        stack[field..field + 2].copy_from_slice(&[0, 0]);
        stack.extend_from_slice(&[0xEE; 5]);
        with_queues(TRANSMIT, |net, device| {
            let (header, frame) = send(net, device, &stack);
            assert_eq!(header, Header::default());
            assert_eq!(frame[..complete.len()], complete[..]);
            assert!(smoltcp_accepts(&frame));
        });
    }
}

// ---- Receive -------------------------------------------------------------------------

#[test]
fn partial_checksums_are_completed() {
    for payload in [&b""[..], b"odd", &[0x3C; 1401]] {
        for (complete, offset) in [
            (tcp_frame(payload, true), 16u16),
            (udp_frame(payload, true), 6),
            (with_ip_options(&tcp_frame(payload, true)), 16),
        ] {
            let start = 14 + usize::from(complete[14] & 0x0F) * 4;
            let field = start + usize::from(offset);
            let mut partial = complete.clone();
            let pseudo = naive_pseudo_header(&complete);
            partial[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
            with_queues(RECEIVE, |net, device| {
                let header = Header::received(FLAG_NEEDS_CHECKSUM, start as u16, offset);
                let got = receive(net, device, header, &partial).expect("delivered");
                assert!(smoltcp_accepts(&got));
                assert_eq!(got, complete);
                assert_eq!(net.checksum_drops(), ChecksumDrops::default());
            });
        }
    }
}

#[test]
fn data_valid_is_trusted_for_whole_segments() {
    let mut unchecked = tcp_frame(b"the device checked this", true);
    let last = unchecked.len() - 1;
    unchecked[last] ^= 1; // a checksum the device vouched for is not looked at again
    with_queues(RECEIVE, |net, device| {
        for frame in [tcp_frame(b"fine", true), unchecked.clone()] {
            let header = Header::received(FLAG_DATA_VALID, 0, 0);
            assert_eq!(receive(net, device, header, &frame), Ok(frame));
        }
        // But a fragment cannot have been validated: it is dropped.
        let header = Header::received(FLAG_DATA_VALID, 0, 0);
        let piece = fragment(&tcp_frame(b"piece", true), true, 0);
        assert_eq!(
            receive(net, device, header, &piece),
            Err(NetError::BadChecksum)
        );
    });
}

#[test]
fn without_flags_the_driver_checks_and_drops_what_is_bad() {
    let good_tcp = tcp_frame(b"hello", true);
    let good_udp = udp_frame(b"hello", true);
    let no_udp_checksum = udp_frame(b"unchecked by design", false);
    let mut corrupt_tcp = good_tcp.clone();
    *corrupt_tcp.last_mut().expect("bytes") ^= 0x80;
    let mut corrupt_udp = good_udp.clone();
    corrupt_udp[40] ^= 0x01;
    let mut malformed = good_tcp.clone();
    malformed[14] = 0x44; // IHL 4
    with_queues(RECEIVE, |net, device| {
        let plain = Header::received(0, 0, 0);
        for good in [
            &good_tcp,
            &good_udp,
            &no_udp_checksum,
            &icmp_frame(),
            &arp_frame(),
        ] {
            assert_eq!(receive(net, device, plain, good).as_ref(), Ok(good));
        }
        let bad = [
            corrupt_tcp,
            corrupt_udp,
            malformed,
            fragment(&good_tcp, true, 0),
            fragment(&good_udp, false, 8),
        ];
        for frame in &bad {
            assert_eq!(
                receive(net, device, plain, frame),
                Err(NetError::BadChecksum),
                "{frame:x?}"
            );
        }
        assert_eq!(
            net.checksum_drops(),
            ChecksumDrops {
                bad_checksum: bad.len() as u64,
                bad_placement: 0
            }
        );
        // The queues go on.
        for _ in 0..2 * QUEUE_SIZE {
            assert_eq!(receive(net, device, plain, &good_tcp), Ok(good_tcp.clone()));
        }
    });
}

#[test]
fn a_partial_checksum_placed_outside_the_frame_is_dropped_and_counted() {
    let frame = udp_frame(b"abc", true);
    let len = frame.len() as u16;
    let placements = [
        (len, 0),
        (len - 1, 0),
        (len - 2, 1),
        (34, len),
        (0, u16::MAX),
        (u16::MAX, u16::MAX),
    ];
    with_queues(RECEIVE, |net, device| {
        for (start, offset) in placements {
            let header = Header::received(FLAG_NEEDS_CHECKSUM, start, offset);
            match receive(net, device, header, &frame) {
                Err(NetError::BadDevice(NetFault::ChecksumPlacement(placement))) => {
                    assert_eq!((placement.start, placement.offset), (start, offset));
                }
                other => panic!("{start}+{offset}: {other:?}"),
            }
        }
        assert_eq!(
            net.checksum_drops(),
            ChecksumDrops {
                bad_checksum: 0,
                bad_placement: placements.len() as u64
            }
        );
        // A placement that fits but is wrong for the frame yields a wrong checksum, and the
        // driver does not check a frame the device took charge of: the spec's contract.
        let header = Header::received(FLAG_NEEDS_CHECKSUM, 34, 6);
        assert!(receive(net, device, header, &frame).is_ok());
    });
}

// ---- Without the features ------------------------------------------------------------

#[test]
fn features_not_negotiated_change_nothing() {
    let stack = tcp_frame(b"as given", false);
    let mut corrupt = tcp_frame(b"corrupt", true);
    corrupt[60] ^= 0xFF;
    with_queues(ChecksumOffload::default(), |net, device| {
        for given in [&stack, &udp_frame(b"x", false), &icmp_frame()] {
            let (header, frame) = send(net, device, given);
            assert_eq!(header.bytes(), [0; HEADER_SIZE]);
            assert_eq!(&frame, given);
        }
        // Flags from a device that should not set them are ignored, and the frame comes
        // up untouched and unchecked: the stack checks it.
        for header in [
            Header::received(0, 0, 0),
            Header::received(FLAG_NEEDS_CHECKSUM, u16::MAX, u16::MAX),
            Header::received(FLAG_NEEDS_CHECKSUM, 34, 16),
            Header::received(FLAG_DATA_VALID, 0, 0),
        ] {
            assert_eq!(receive(net, device, header, &corrupt), Ok(corrupt.clone()));
        }
        assert_eq!(net.checksum_drops(), ChecksumDrops::default());
    });
}
