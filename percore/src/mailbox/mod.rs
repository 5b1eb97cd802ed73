//! This core's mailbox: a sender into every other core's ring for this core, one
//! endpoint over all inbound rings, and the doorbell that lets it halt when idle.
//!
//! Every core has one inbound [`Ring`] per source core (the slot for itself is unused),
//! carved from its own memory and initialised by itself before it reports online. The
//! boot core publishes where each core's rings and doorbell are ([`MailboxLocation`]
//! in `BootInfo`); each core then takes its own ends: the receivers of its inbound
//! rings and, in every other core's rings, the sender for itself.
//!
//! Sending: [`Mailbox::try_send`] publishes without ringing the doorbell, so a batch
//! costs one [`Mailbox::notify`]; [`Mailbox::send`] waits while the ring is full
//! (after ringing, so a halted receiver wakes to drain it) and rings afterwards.
//! Waiting: [`Mailbox::wait`] halts this core until a message arrives, never missing one.
//!
//! Two families share the rings: the application's messages (kinds below
//! [`KERNEL_KINDS`]) and the kernel's (`kernel`). The mailbox only sorts them: the
//! kernel's loop polls with a handler for its own and keeps the application's for it;
//! an application's poll keeps the kernel's for the kernel, which handles them as soon
//! as the application lets go of the mailbox (`sched::with_mailbox`) or on its loop's
//! next turn. So the mailbox calls no one.
//!
//! A core that failed is fenced (`crate::fence`): it set its bit before it halted for
//! good, and from then on nobody sends to it; a send to it is an error instead of a wait
//! on a ring that nobody drains.

use alloc::collections::VecDeque;
use ipc::doorbell::WakeMemo;
use ipc::{Doorbell, Endpoint, Full, Message, Receiver, Sender};

use crate::fence::is_fenced;

mod kernel;

pub(crate) use kernel::KernelMessage;
pub use kernel::KERNEL_KINDS;

/// Slots per ring: 64 cache lines, 4 KiB.
pub const RING_SLOTS: usize = 64;
/// Most messages taken from one ring per endpoint round.
const RECEIVE_BATCH: usize = 16;

/// A ring of kernel messages between two cores.
pub type Ring = ipc::Ring<Message, RING_SLOTS>;

/// Where one core's mailbox lives, as published in `BootInfo`.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLocation {
    /// The core's inbound rings, indexed by source core (its own index unused).
    pub inbound: &'static [Ring],
    /// The core's doorbell.
    pub doorbell: &'static Doorbell,
    /// The core's APIC id, for the wake-up interrupt.
    pub apic_id: u32,
}

/// Receives one round from `endpoint`: kernel messages go to `kernel`, the others to
/// `application`. Returns how many messages it took.
fn receive_round(
    endpoint: &mut Endpoint<'static, Message, RING_SLOTS, { crate::MAX_CORES }>,
    mut kernel: impl FnMut(usize, Message),
    mut application: impl FnMut(usize, Message),
) -> usize {
    endpoint.poll(|source, message| {
        if kernel::is_kernel(&message) {
            kernel(usize::from(source), message);
        } else {
            application(usize::from(source), message);
        }
    })
}

/// Why a mailbox could not be opened or a message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxError {
    /// The destination is not a core of this run, or is this core.
    NoSuchCore(usize),
    /// A ring end this core needs was already taken (a second mailbox for one core).
    AlreadyOpen,
    /// The destination core failed: nobody will read the message.
    CoreFailed(usize),
}

impl core::fmt::Display for MailboxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MailboxError::NoSuchCore(core) => write!(f, "no mailbox to core {core}"),
            MailboxError::AlreadyOpen => f.write_str("the mailbox is open already"),
            MailboxError::CoreFailed(core) => write!(f, "core {core} failed"),
        }
    }
}

/// This core's mailbox.
pub struct Mailbox {
    me: usize,
    /// `outbound[d]`: the sender into core `d`'s ring for this core, and its memo.
    outbound: heapless::Vec<Option<Outbound>, { crate::MAX_CORES }>,
    endpoint: Endpoint<'static, Message, RING_SLOTS, { crate::MAX_CORES }>,
    doorbell: &'static Doorbell,
    /// Application messages that arrived while the kernel served the mailbox.
    inbox: VecDeque<(usize, Message)>,
    /// Kernel messages that arrived while the application polled.
    kept_for_kernel: VecDeque<(usize, Message)>,
}

struct Outbound {
    sender: Sender<'static, Message, RING_SLOTS>,
    memo: WakeMemo,
    doorbell: &'static Doorbell,
    apic_id: u32,
}

impl core::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mailbox")
            .field("me", &self.me)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Mailbox {
    /// Opens core `me`'s mailbox among the cores at `locations` (indexed by core).
    pub fn open(me: usize, locations: &[MailboxLocation]) -> Result<Mailbox, MailboxError> {
        let own = locations.get(me).ok_or(MailboxError::NoSuchCore(me))?;
        let mut outbound = heapless::Vec::new();
        let mut endpoint = Endpoint::new(RECEIVE_BATCH);
        for (core, location) in locations.iter().enumerate() {
            if core == me {
                let _ = outbound.push(None);
                continue;
            }
            let ring = location
                .inbound
                .get(me)
                .ok_or(MailboxError::NoSuchCore(me))?;
            let sender = ring.take_sender().ok_or(MailboxError::AlreadyOpen)?;
            let _ = outbound.push(Some(Outbound {
                sender,
                memo: WakeMemo::new(),
                doorbell: location.doorbell,
                apic_id: location.apic_id,
            }));
            let inbound = own
                .inbound
                .get(core)
                .ok_or(MailboxError::NoSuchCore(core))?;
            let receiver: Receiver<'static, Message, RING_SLOTS> =
                inbound.take_receiver().ok_or(MailboxError::AlreadyOpen)?;
            if endpoint.attach(core as u16, receiver).is_err() {
                return Err(MailboxError::NoSuchCore(core));
            }
        }
        Ok(Mailbox {
            me,
            outbound,
            endpoint,
            doorbell: own.doorbell,
            inbox: VecDeque::new(),
            kept_for_kernel: VecDeque::new(),
        })
    }

    /// Returns this core's index.
    pub fn core(&self) -> usize {
        self.me
    }

    fn outbound(&mut self, to: usize) -> Result<&mut Outbound, MailboxError> {
        self.outbound
            .get_mut(to)
            .and_then(Option::as_mut)
            .ok_or(MailboxError::NoSuchCore(to))
    }

    /// Publishes `message` to core `to` if its ring has room, without ringing its
    /// doorbell: call [`Mailbox::notify`] after a batch. Returns the message if the ring
    /// is full.
    ///
    /// # Panics
    /// Panics if `to` is this core or not a core of this run, or if the message has a
    /// kernel kind ([`KERNEL_KINDS`] and up).
    pub fn try_send(&mut self, to: usize, message: Message) -> Result<(), Full<Message>> {
        assert!(
            !kernel::is_kernel(&message),
            "message kinds from {KERNEL_KINDS:#x} up are the kernel's"
        );
        self.try_send_any(to, message)
    }

    /// Publishes `message` from the kernel to core `to` if its ring has room, as
    /// [`Mailbox::try_send`] does; returns the message if the ring is full.
    pub(crate) fn try_send_kernel(
        &mut self,
        to: usize,
        message: KernelMessage,
    ) -> Result<(), Full<Message>> {
        let message = message.into_message(self.me);
        self.try_send_any(to, message)
    }

    /// Like [`Mailbox::try_send`], for a message already encoded (of either family).
    pub(crate) fn try_send_any(
        &mut self,
        to: usize,
        message: Message,
    ) -> Result<(), Full<Message>> {
        let outbound = self
            .outbound(to)
            .unwrap_or_else(|_| panic!("no mailbox to core {to}"));
        outbound.sender.try_send(message)
    }

    /// Wakes core `to` if it is halted waiting for messages.
    pub fn notify(&mut self, to: usize) {
        if let Ok(outbound) = self.outbound(to) {
            let apic_id = outbound.apic_id;
            outbound.doorbell.notify_once(&mut outbound.memo, || {
                (crate::platform::hooks().wake)(apic_id)
            });
        }
    }

    /// Sends `message` to core `to`, waiting while its ring is full (the receiver is
    /// woken first, so it drains the ring), then wakes the receiver if it is halted.
    /// `wait` runs while the ring is full: spin now, a scheduler yield later. Messages
    /// are never dropped, except to a core that failed: then the message is dropped and
    /// the error says so, at once or as soon as the core fails while the sender waits.
    ///
    /// # Panics
    /// Panics if `to` is this core or not a core of this run.
    pub fn send(
        &mut self,
        to: usize,
        message: Message,
        mut wait: impl FnMut(),
    ) -> Result<(), MailboxError> {
        let mut message = message;
        loop {
            if is_fenced(to) {
                return Err(MailboxError::CoreFailed(to));
            }
            match self.try_send(to, message) {
                Ok(()) => break,
                Err(Full(back)) => {
                    message = back;
                    self.notify(to);
                    wait();
                }
            }
        }
        self.notify(to);
        Ok(())
    }

    /// Hands the application messages that are waiting to `handle` with their source
    /// core: first those the kernel kept, then one round from all inbound rings (fair,
    /// batched). Kernel messages met on the way are kept for the kernel. Returns how many
    /// messages were taken in all (those kept for the kernel count).
    pub fn poll(&mut self, mut handle: impl FnMut(usize, Message)) -> usize {
        let mut handled = 0;
        while let Some((source, message)) = self.inbox.pop_front() {
            handle(source, message);
            handled += 1;
        }
        let kept = &mut self.kept_for_kernel;
        handled
            + receive_round(
                &mut self.endpoint,
                |source, message| kept.push_back((source, message)),
                handle,
            )
    }

    /// Serves one round for the kernel: hands `kernel` the kernel messages an
    /// application's poll kept, then those of one round from all inbound rings, and
    /// keeps application messages for the application's next [`Mailbox::poll`]. Returns
    /// how many messages it took from the rings.
    pub(crate) fn poll_for_kernel(&mut self, mut kernel: impl FnMut(usize, Message)) -> usize {
        while let Some((source, message)) = self.kept_for_kernel.pop_front() {
            kernel(source, message);
        }
        let inbox = &mut self.inbox;
        receive_round(&mut self.endpoint, kernel, |source, message| {
            inbox.push_back((source, message))
        })
    }

    /// Takes one kernel message an application's poll kept, if any.
    pub(crate) fn take_kept(&mut self) -> Option<(usize, Message)> {
        self.kept_for_kernel.pop_front()
    }

    /// Serves every message core `source` has sent that is still in its ring, for the
    /// kernel as [`Mailbox::poll_for_kernel`] does: after `source` failed, what it sent
    /// before is all it will ever send. Returns how many messages it took.
    pub(crate) fn drain_for_kernel(
        &mut self,
        source: usize,
        mut kernel: impl FnMut(usize, Message),
    ) -> usize {
        let inbox = &mut self.inbox;
        let Ok(source) = u16::try_from(source) else {
            return 0;
        };
        self.endpoint.drain(source, |source, message| {
            if kernel::is_kernel(&message) {
                kernel(usize::from(source), message);
            } else {
                inbox.push_back((usize::from(source), message));
            }
        })
    }

    /// Halts this core until a message may have arrived; returns at once if one is
    /// already waiting. A message published at any moment still wakes it. (Kernel
    /// messages an application's poll kept do not count: the kernel handles them when
    /// the application lets go of the mailbox, before its core can idle.)
    pub fn wait(&mut self) {
        if !self.inbox.is_empty() {
            return;
        }
        let halt = crate::platform::hooks().halt;
        self.endpoint.halt_if_idle(self.doorbell, halt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::{Kind, Message};
    use std::boxed::Box;
    use std::vec::Vec;

    fn locations(cores: usize) -> Vec<MailboxLocation> {
        (0..cores)
            .map(|core| MailboxLocation {
                inbound: Box::leak(
                    (0..cores)
                        .map(|_| Ring::new())
                        .collect::<Vec<_>>()
                        .into_boxed_slice(),
                ),
                doorbell: Box::leak(Box::new(Doorbell::new())),
                apic_id: core as u32,
            })
            .collect()
    }

    fn message(value: u64) -> Message {
        Message::from_slice(Kind::new(1), 0, &value.to_le_bytes()).unwrap()
    }

    #[test]
    fn messages_travel_between_every_pair() {
        let locations = locations(3);
        let mut boxes: Vec<Mailbox> = (0..3)
            .map(|core| Mailbox::open(core, &locations).unwrap())
            .collect();
        for (from, mailbox) in boxes.iter_mut().enumerate() {
            for to in (0..3).filter(|&to| to != from) {
                mailbox
                    .try_send(to, message((from * 10 + to) as u64))
                    .unwrap();
            }
        }
        for (to, mailbox) in boxes.iter_mut().enumerate() {
            let mut got = Vec::new();
            mailbox.poll(|source, m| got.push((source, m.inline_word(0))));
            got.sort();
            let expected: Vec<(usize, u64)> = (0..3)
                .filter(|&s| s != to)
                .map(|s| (s, (s * 10 + to) as u64))
                .collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_full_ring_refuses_without_losing_anything() {
        let locations = locations(2);
        let mut a = Mailbox::open(0, &locations).unwrap();
        let mut b = Mailbox::open(1, &locations).unwrap();
        for i in 0..RING_SLOTS as u64 {
            a.try_send(1, message(i)).unwrap();
        }
        let Err(Full(back)) = a.try_send(1, message(999)) else {
            panic!("ring should be full")
        };
        assert_eq!(back.inline_word(0), 999);
        let mut seen = Vec::new();
        while b.poll(|_, m| seen.push(m.inline_word(0))) > 0 {}
        assert_eq!(seen, (0..RING_SLOTS as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_core_cannot_open_its_mailbox_twice() {
        let locations = locations(2);
        let _first = Mailbox::open(0, &locations).unwrap();
        assert_eq!(
            Mailbox::open(0, &locations).unwrap_err(),
            MailboxError::AlreadyOpen
        );
        assert_eq!(
            Mailbox::open(5, &locations).unwrap_err(),
            MailboxError::NoSuchCore(5)
        );
    }

    #[test]
    fn send_waits_for_room_while_the_receiver_drains() {
        let locations = locations(2);
        let mut a = Mailbox::open(0, &locations).unwrap();
        let mut b = Mailbox::open(1, &locations).unwrap();
        let receiver = std::thread::spawn(move || {
            let mut next = 0u64;
            while next < 10_000 {
                b.poll(|_, m| {
                    assert_eq!(m.inline_word(0), next);
                    next += 1;
                });
            }
        });
        for i in 0..10_000u64 {
            a.send(1, message(i), std::thread::yield_now).unwrap();
        }
        receiver.join().unwrap();
    }

    fn wake_up(word: usize) -> Message {
        KernelMessage::Wake(crate::threads::WaiterToken::from_raw(word)).into_message(0)
    }

    #[test]
    fn each_family_reaches_its_own_handler_in_order() {
        let locations = locations(2);
        let mut a = Mailbox::open(0, &locations).unwrap();
        let mut b = Mailbox::open(1, &locations).unwrap();
        for i in 0..4 {
            a.try_send(1, message(i)).unwrap();
            a.try_send_any(1, wake_up(16 * (i as usize + 1))).unwrap();
        }
        // The application's poll keeps the kernel's messages for the kernel...
        let mut seen = Vec::new();
        assert_eq!(b.poll(|_, m| seen.push(m.inline_word(0))), 8);
        assert_eq!(seen, [0, 1, 2, 3]);
        assert_eq!(b.take_kept().map(|(source, _)| source), Some(0));
        // ...which gets the rest first, in order, on its next poll.
        a.try_send_any(1, wake_up(80)).unwrap();
        a.try_send(1, message(4)).unwrap();
        let mut kernel = Vec::new();
        b.poll_for_kernel(|_, m| kernel.push(m.inline_word(0)));
        assert_eq!(kernel, [32, 48, 64, 80]);
        assert!(b.take_kept().is_none());
        let mut seen = Vec::new();
        b.poll(|_, m| seen.push(m.inline_word(0)));
        assert_eq!(seen, [4], "kept for the application");
    }

    #[test]
    #[should_panic(expected = "are the kernel's")]
    fn an_application_cannot_send_a_kernel_kind() {
        let locations = locations(2);
        let mut a = Mailbox::open(0, &locations).unwrap();
        let _ = a.try_send(1, wake_up(16));
    }

    #[test]
    fn draining_a_source_takes_all_its_messages_and_no_others() {
        let locations = locations(3);
        let mut a = Mailbox::open(0, &locations).unwrap();
        let mut b = Mailbox::open(1, &locations).unwrap();
        let mut c = Mailbox::open(2, &locations).unwrap();
        for i in 0..40 {
            a.try_send(2, message(i)).unwrap();
            b.try_send(2, message(100 + i)).unwrap();
        }
        // More than one endpoint batch: a drain empties the ring, not one round.
        let kernel = |_, _| panic!("no kernel messages here");
        assert_eq!(c.drain_for_kernel(0, kernel), 40);
        assert_eq!(c.drain_for_kernel(0, kernel), 0);
        let mut from_a = Vec::new();
        let mut from_b = 0;
        while c.poll(|source, m| {
            if source == 0 {
                from_a.push(m.inline_word(0));
            } else {
                from_b += 1;
            }
        }) > 0
        {}
        assert_eq!(
            from_a,
            (0..40).collect::<Vec<_>>(),
            "kept in order for the app"
        );
        assert_eq!(from_b, 40);
    }
}
