//! The network device a stack runs on: whole Ethernet frames in and out.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

/// Which TCP and UDP checksums of IPv4 frames a [`Device`] (with its driver) takes off the
/// stack. The IPv4 header checksum is never offloaded: the stack always computes and
/// checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChecksumOffload {
    /// The device fills in the TCP and UDP checksums of transmitted frames, so the stack
    /// leaves them out.
    pub transmit: bool,
    /// Every received TCP or UDP frame has had its checksum checked below the stack (by
    /// the device or the driver) and a bad one is never delivered, so the stack need not
    /// check it again.
    pub receive: bool,
}

/// An Ethernet device: frames without FCS, up to 1514 bytes.
pub trait Device {
    /// Returns the device's MAC address.
    fn mac(&self) -> [u8; 6];
    /// Copies the next received frame into `out` and returns its length; `None` when no
    /// frame waits. A frame longer than `out` is dropped (and counted by the device).
    fn receive(&mut self, out: &mut [u8]) -> Option<usize>;
    /// Sends `frame`; returns false when the device has no room now (try again later).
    fn transmit(&mut self, frame: &[u8]) -> bool;
    /// Returns true when a frame given to `transmit` now would be taken. The stack asks
    /// before it builds a frame, so nothing is built only to be dropped.
    fn can_transmit(&mut self) -> bool {
        true
    }
    /// Returns the checksums the device takes off the stack; none unless it says so. It
    /// must not change while the stack runs.
    fn checksum_offload(&self) -> ChecksumOffload {
        ChecksumOffload::default()
    }

    /// Returns true when the device can interrupt its core as a frame arrives, so the
    /// service may halt when idle instead of polling (see [`Device::arm_wakeup`]).
    fn can_wake(&self) -> bool {
        false
    }

    /// Asks for an interrupt at the next received frame; returns true when a frame
    /// already waits (no interrupt comes for it: poll instead of halting).
    fn arm_wakeup(&mut self) -> bool {
        true
    }

    /// Stops asking for interrupts (the service polls again).
    fn disarm_wakeup(&mut self) {}
}

/// A simulated cable between two devices, for tests: what one end transmits the other
/// receives, in order, with a bounded queue each way.
#[derive(Debug)]
pub struct Wire;

/// One end of a [`Wire`].
#[derive(Debug)]
pub struct WireEnd {
    mac: [u8; 6],
    inbound: Rc<RefCell<VecDeque<Vec<u8>>>>,
    outbound: Rc<RefCell<VecDeque<Vec<u8>>>>,
    capacity: usize,
}

impl Wire {
    /// Returns two connected ends with MAC addresses `a` and `b`, each direction holding
    /// at most `capacity` frames.
    pub fn pair(a: [u8; 6], b: [u8; 6], capacity: usize) -> (WireEnd, WireEnd) {
        let (ab, ba) = (
            Rc::new(RefCell::new(VecDeque::new())),
            Rc::new(RefCell::new(VecDeque::new())),
        );
        (
            WireEnd {
                mac: a,
                inbound: ba.clone(),
                outbound: ab.clone(),
                capacity,
            },
            WireEnd {
                mac: b,
                inbound: ab,
                outbound: ba,
                capacity,
            },
        )
    }
}

impl WireEnd {
    /// Puts a frame on the wire towards this end, as if the other end had sent it
    /// (tests use it to inject malformed frames).
    pub fn inject(&self, frame: &[u8]) {
        self.inbound.borrow_mut().push_back(frame.to_vec());
    }
}

impl Device for WireEnd {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn receive(&mut self, out: &mut [u8]) -> Option<usize> {
        loop {
            let frame = self.inbound.borrow_mut().pop_front()?;
            if frame.len() <= out.len() {
                out[..frame.len()].copy_from_slice(&frame);
                return Some(frame.len());
            }
        }
    }

    fn can_transmit(&mut self) -> bool {
        self.outbound.borrow().len() < self.capacity
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        let mut outbound = self.outbound.borrow_mut();
        if outbound.len() >= self.capacity {
            return false;
        }
        outbound.push_back(frame.to_vec());
        true
    }
}

impl<D: Device + ?Sized> Device for alloc::boxed::Box<D> {
    fn mac(&self) -> [u8; 6] {
        (**self).mac()
    }

    fn receive(&mut self, out: &mut [u8]) -> Option<usize> {
        (**self).receive(out)
    }

    fn transmit(&mut self, frame: &[u8]) -> bool {
        (**self).transmit(frame)
    }

    fn can_transmit(&mut self) -> bool {
        (**self).can_transmit()
    }

    fn checksum_offload(&self) -> ChecksumOffload {
        (**self).checksum_offload()
    }

    fn can_wake(&self) -> bool {
        (**self).can_wake()
    }

    fn arm_wakeup(&mut self) -> bool {
        (**self).arm_wakeup()
    }

    fn disarm_wakeup(&mut self) {
        (**self).disarm_wakeup()
    }
}
