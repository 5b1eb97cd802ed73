//! FAT16 file system: on-disk format, volume, directories and files, on top of a block
//! device the crate defines, and the fs service that shares one volume with every core
//! (`service`, `api`). Safe Rust; no hardware access: the service's clock is the
//! kernel's wall clock (`percore::time::wall_clock`).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod api;
mod bpb;
mod bytes;
mod cache;
mod check;
mod device;
mod dir;
mod disk;
mod error;
mod fat;
mod file;
pub mod generation;
mod lfn;
mod mbr;
mod metadata;
pub mod service;
mod shortname;
mod time;
mod volume;
mod writeback;

pub use bpb::{FatType, Layout};
pub use cache::CacheStats;
pub use device::{BlockDevice, RamDisk, SECTOR_SIZE};
pub use error::{Error, IoError, Result};
pub use file::{File, SeekFrom};
pub use mbr::{locate as locate_volume, Partition};
pub use metadata::{Attributes, DirEntry, Metadata};
pub use time::{Clock, FixedClock, Timestamp};
pub use volume::{MountOptions, OpenOptions, Volume, VolumeInfo};
pub use writeback::WRITE_BACK_DELAY;
