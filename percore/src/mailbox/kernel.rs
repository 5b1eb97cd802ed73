//! The kernel's own messages between cores, in one place: their kinds, what each
//! carries, and how each is written into a message and read back.
//!
//! Every kind from [`KERNEL_KINDS`] up is the kernel's; `Mailbox::try_send` refuses them
//! to applications, so only the code below writes them. What a message hands over
//! travels as a typed [`KernelMessage`]: a thread to start or a job to run is a box that
//! moves inside the message (`ipc::Owned`, taken back once and only as its own type), a
//! wake-up is a waiter token, freed blocks are their addresses and sizes. The one place
//! that acts on them is the core's loop (`sched::dispatch`).

use alloc::boxed::Box;
use core::fmt;

use ipc::{Kind, Message, Owned};

use crate::heap::BLOCKS_PER_MESSAGE;
use crate::threads::{RunJob, Start, WaiterToken};

/// Message kinds from this value up belong to the kernel (thread start-up, wake-ups,
/// remote frees, jobs); applications use the kinds below it.
pub const KERNEL_KINDS: u16 = 0x3000;

/// Start the thread whose `Start` travels with the message.
const SPAWN: Kind = Kind::new(KERNEL_KINDS + 1);
/// Make the blocked thread of the token in word 0 ready.
const WAKE: Kind = Kind::new(KERNEL_KINDS + 2);
/// Up to three `(address, size)` blocks going home (zero size: none).
const REMOTE_FREE: Kind = Kind::new(KERNEL_KINDS + 3);
/// Run the job that travels with the message in the core's loop, outside any thread.
const RUN: Kind = Kind::new(KERNEL_KINDS + 4);

/// Freed blocks of the receiving core's heap, as `(address, size)`.
pub(crate) type Blocks = heapless::Vec<(usize, usize), BLOCKS_PER_MESSAGE>;

/// A message of the kernel to the kernel of another core.
pub(crate) enum KernelMessage {
    /// Start this thread here (`spawn_on`).
    Spawn(Box<Start>),
    /// Make the thread of this token ready (it lives on the receiving core).
    Wake(WaiterToken),
    /// Free these blocks of the receiving core's heap, freed on the sending core.
    RemoteFree(Blocks),
    /// Run this job in the receiving core's loop (`run_on`).
    Run(Box<RunJob>),
}

/// A message of a kernel kind that does not read as one (nothing sends such a message:
/// only this module writes kernel kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) Kind);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a malformed kernel message of kind {:#x}",
            self.0.value()
        )
    }
}

impl KernelMessage {
    /// Returns the message that carries `self` from core `source`.
    pub(crate) fn into_message(self, source: usize) -> Message {
        let source = source as u16;
        match self {
            KernelMessage::Spawn(start) => {
                Message::with_owned(SPAWN, source, Owned::new(start), [0; 32])
            }
            KernelMessage::Run(job) => Message::with_owned(RUN, source, Owned::new(job), [0; 32]),
            KernelMessage::Wake(token) => {
                Message::new(WAKE, source, words(&[token.into_raw() as u64]))
            }
            KernelMessage::RemoteFree(blocks) => {
                let mut values = [0u64; 2 * BLOCKS_PER_MESSAGE];
                for (i, &(addr, size)) in blocks.iter().enumerate() {
                    values[2 * i] = addr as u64;
                    values[2 * i + 1] = size as u64;
                }
                Message::new(REMOTE_FREE, source, words(&values))
            }
        }
    }

    /// Returns the kernel message `message` carries.
    pub(crate) fn from_message(mut message: Message) -> Result<KernelMessage, Malformed> {
        let kind = message.header().kind();
        let owned = |message: &mut Message| message.take_owned().ok_or(Malformed(kind));
        match kind {
            SPAWN => owned(&mut message)?
                .into_box::<Start>()
                .map(KernelMessage::Spawn)
                .map_err(|_| Malformed(kind)),
            RUN => owned(&mut message)?
                .into_box::<RunJob>()
                .map(KernelMessage::Run)
                .map_err(|_| Malformed(kind)),
            WAKE => Ok(KernelMessage::Wake(WaiterToken::from_raw(
                message.inline_word(0) as usize,
            ))),
            REMOTE_FREE => {
                let mut blocks = Blocks::new();
                for i in 0..BLOCKS_PER_MESSAGE {
                    let (addr, size) = (
                        message.inline_word(2 * i) as usize,
                        message.inline_word(2 * i + 1) as usize,
                    );
                    if size != 0 {
                        let _ = blocks.push((addr, size));
                    }
                }
                Ok(KernelMessage::RemoteFree(blocks))
            }
            _ => Err(Malformed(kind)),
        }
    }
}

/// Returns 48 inline bytes holding `values` (the rest zero).
fn words(values: &[u64]) -> [u8; ipc::INLINE_BYTES] {
    let mut all = [0u64; 6];
    all[..values.len()].copy_from_slice(values);
    ipc::message::bytes_from_words(&all)
}

/// Returns true when `message` is the kernel's (its kind is [`KERNEL_KINDS`] or above).
pub(crate) fn is_kernel(message: &Message) -> bool {
    message.header().kind().value() >= KERNEL_KINDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicUsize, Ordering};

    fn round_trip(message: KernelMessage) -> KernelMessage {
        let message = message.into_message(5);
        assert_eq!(message.header().source(), 5);
        assert!(is_kernel(&message));
        KernelMessage::from_message(message).expect("reads back")
    }

    #[test]
    fn every_kernel_message_reads_back_as_it_was_written() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let job: RunJob = Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let KernelMessage::Run(job) = round_trip(KernelMessage::Run(Box::new(job))) else {
            panic!("a job comes back as a job");
        };
        (*job)();
        assert_eq!(ran.load(Ordering::Relaxed), 1);

        let start = Start {
            job: Box::new(|| {}),
            packet: None,
        };
        assert!(matches!(
            round_trip(KernelMessage::Spawn(Box::new(start))),
            KernelMessage::Spawn(start) if start.packet.is_none()
        ));

        let token = WaiterToken::from_raw(3 << 48 | 0x1230);
        let KernelMessage::Wake(back) = round_trip(KernelMessage::Wake(token)) else {
            panic!("a wake-up comes back as a wake-up");
        };
        assert_eq!(back.into_raw(), token.into_raw());

        let blocks = Blocks::from_slice(&[(0x1000, 16), (0x2000, 4096)]).unwrap();
        let KernelMessage::RemoteFree(back) = round_trip(KernelMessage::RemoteFree(blocks)) else {
            panic!("blocks come back as blocks");
        };
        assert_eq!(back.as_slice(), &[(0x1000, 16), (0x2000, 4096)]);
    }

    #[test]
    fn a_kernel_kind_without_its_payload_is_malformed() {
        let bare = Message::new(SPAWN, 1, [0; 48]);
        assert_eq!(
            KernelMessage::from_message(bare).err(),
            Some(Malformed(SPAWN))
        );
        // A job is not a thread start: the box is taken back only as its own type.
        let job: RunJob = Box::new(|| {});
        let mut swapped = KernelMessage::Run(Box::new(job)).into_message(0);
        let owned = swapped.take_owned().unwrap();
        let spawn = Message::with_owned(SPAWN, 0, owned, [0; 32]);
        assert_eq!(
            KernelMessage::from_message(spawn).err(),
            Some(Malformed(SPAWN))
        );
        let unknown = Message::new(Kind::new(KERNEL_KINDS + 9), 0, [0; 48]);
        assert!(KernelMessage::from_message(unknown).is_err());
    }
}
