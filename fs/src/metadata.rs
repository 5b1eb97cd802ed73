//! What `stat` and directory listings report: attributes, sizes and timestamps.

use alloc::string::String;

use crate::time::Timestamp;

/// The attribute byte of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Attributes(pub u8);

impl Attributes {
    /// The file may not be written.
    pub const READ_ONLY: u8 = 0x01;
    /// The entry is hidden from normal listings.
    pub const HIDDEN: u8 = 0x02;
    /// The entry belongs to the operating system.
    pub const SYSTEM: u8 = 0x04;
    /// The entry is the volume label.
    pub const VOLUME_ID: u8 = 0x08;
    /// The entry is a directory.
    pub const DIRECTORY: u8 = 0x10;
    /// The file changed since the last backup.
    pub const ARCHIVE: u8 = 0x20;

    /// Returns whether every bit of `flags` is set.
    pub fn contains(self, flags: u8) -> bool {
        self.0 & flags == flags
    }
}

/// The kind, size, attributes and timestamps of a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// The size in bytes (0 for directories).
    pub size: u32,
    /// The attribute byte.
    pub attributes: Attributes,
    /// When the entry was created.
    pub created: Timestamp,
    /// When the file was last written.
    pub modified: Timestamp,
    /// The day the file was last accessed (time of day is zero).
    pub accessed: Timestamp,
}

impl Metadata {
    /// Returns whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.attributes.contains(Attributes::DIRECTORY)
    }

    /// Returns whether the entry is a regular file.
    pub fn is_file(&self) -> bool {
        !self.is_dir()
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The long name, or the short name when the entry has no long name.
    pub name: String,
    /// The 8.3 name as stored, like `LONGFI~1.TXT`.
    pub short_name: String,
    /// The entry's metadata.
    pub metadata: Metadata,
}
