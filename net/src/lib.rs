//! TCP/IP on top of a network device, and the net service that owns it.
//!
//! Nothing here yet: the crate exists so the workspace has its final shape, and fills
//! once the virtio-net driver does (see ARCHITECTURE.md).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
