//! Error types: the device's `IoError` and the file system's `Error`.

use core::fmt;

/// An error reported by a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// The request reached past the end of the device or was not sector-sized.
    OutOfRange,
    /// The device failed to carry out the request.
    Device,
    /// The device refuses writes.
    WriteProtected,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::OutOfRange => f.write_str("request outside the device"),
            IoError::Device => f.write_str("device error"),
            IoError::WriteProtected => f.write_str("device is write protected"),
        }
    }
}

/// An error of a file system operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// No file or directory has that path.
    NotFound,
    /// A file or directory of that name already exists.
    AlreadyExists,
    /// A path component, or the target, is a file where a directory was needed.
    NotADirectory,
    /// The target is a directory where a file was needed.
    IsADirectory,
    /// The directory still holds entries.
    DirectoryNotEmpty,
    /// No free clusters are left for the operation; nothing was changed.
    NoSpace,
    /// The directory has no room for another entry (the FAT16 root is fixed in size).
    DirectoryFull,
    /// The file would grow past the FAT limit of 4 GiB - 1 bytes.
    FileTooLarge,
    /// The name is empty, too long, or holds characters FAT does not allow.
    InvalidName,
    /// An argument makes no sense for the operation.
    InvalidArgument(&'static str),
    /// The on-disk structures are inconsistent; the detail says which one.
    Corrupt(&'static str),
    /// The volume is valid but of a kind this crate does not handle.
    Unsupported(&'static str),
    /// A field of the boot sector's BIOS parameter block holds a value FAT16 does not
    /// allow: which field, the value found, and the rule it breaks.
    BadBpb {
        /// The field, as the FAT specification names it in words ("root entries").
        field: &'static str,
        /// The value the boot sector holds.
        value: u32,
        /// What FAT16 allows instead.
        rule: &'static str,
    },
    /// Memory for the operation could not be allocated; nothing was changed.
    NoMemory,
    /// The operation did not finish in the time it was given.
    TimedOut,
    /// The block device failed.
    Io(IoError),
    /// The volume was mounted read-only, the handle was opened for reading only,
    /// or the file has the read-only attribute.
    ReadOnly,
    /// The file behind a handle was removed or renamed.
    StaleHandle,
    /// No file service runs (no share or disk was given to the kernel), or its core
    /// failed.
    NoService,
}

impl From<IoError> for Error {
    fn from(error: IoError) -> Self {
        Error::Io(error)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("no such file or directory"),
            Error::AlreadyExists => f.write_str("file or directory already exists"),
            Error::NotADirectory => f.write_str("not a directory"),
            Error::IsADirectory => f.write_str("is a directory"),
            Error::DirectoryNotEmpty => f.write_str("directory not empty"),
            Error::NoSpace => f.write_str("no space left on the volume"),
            Error::DirectoryFull => f.write_str("directory is full"),
            Error::FileTooLarge => f.write_str("file too large for FAT"),
            Error::InvalidName => f.write_str("invalid file name"),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Corrupt(what) => write!(f, "corrupt volume: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported volume: {what}"),
            Error::BadBpb { field, value, rule } => {
                write!(
                    f,
                    "BPB field {field} = {value} is not valid for FAT16: {rule}"
                )
            }
            Error::NoMemory => f.write_str("out of memory"),
            Error::TimedOut => f.write_str("timed out"),
            Error::Io(error) => write!(f, "I/O error: {error}"),
            Error::ReadOnly => f.write_str("read-only"),
            Error::StaleHandle => f.write_str("file handle no longer refers to a file"),
            Error::NoService => f.write_str(
                "no file service is running (none mounts a volume without fs.disk=diskN on \
                 the kernel command line, which `cargo xtask run --share DIR` adds; or its \
                 core failed)",
            ),
        }
    }
}

impl core::error::Error for Error {}

/// The result type of file system operations.
pub type Result<T> = core::result::Result<T, Error>;
