//! FAT16 file system: on-disk format, volume, directories and files, on top of a block
//! device the crate defines. Pure logic in safe Rust; no clock or hardware access.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod bpb;
mod cache;
mod device;
mod dir;
mod disk;
mod error;
mod fat;
mod file;
mod lfn;
mod mbr;
mod metadata;
mod shortname;
mod time;
mod volume;

pub use bpb::{FatType, Layout};
pub use cache::CacheStats;
pub use device::{BlockDevice, RamDisk, SECTOR_SIZE};
pub use error::{Error, IoError, Result};
pub use file::{File, SeekFrom};
pub use mbr::{locate as locate_volume, Partition};
pub use metadata::{Attributes, DirEntry, Metadata};
pub use time::{Clock, FixedClock, Timestamp};
pub use volume::{MountOptions, OpenOptions, Volume, VolumeInfo};
