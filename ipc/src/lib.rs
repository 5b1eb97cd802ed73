//! Lock-free mailboxes between cores: cache-line rings, typed messages, fair endpoints.
//!
//! Every ordered pair of cores gets one single-producer single-consumer [`Ring`] whose
//! slots are single cache lines carrying their own sequence number, so the receiver
//! polls the slot itself and the two cores never write the same line (see [`ring`]).
//! On top of that sit [`Message`]s with a small header and an inline payload, or a boxed
//! value whose ownership moves with the message ([`Owned`]), an [`Endpoint`] that serves
//! all of a core's inbound rings fairly, and a [`Doorbell`] that lets an idle core halt
//! without losing a wake-up.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod doorbell;
pub mod endpoint;
pub mod message;
#[allow(unsafe_code)]
pub mod raw;
pub mod ring;
mod sync;
pub mod wire;

pub use doorbell::{Doorbell, WakeMemo};
pub use endpoint::Endpoint;
pub use message::{Header, Kind, Message, INLINE_BYTES, INLINE_BYTES_WITH_OWNED};
pub use raw::Owned;
pub use ring::{Full, Receiver, Ring, Sender};
pub use wire::{Wire, Words, SLOT_PAYLOAD_BYTES, SLOT_WORDS};
