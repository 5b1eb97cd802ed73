//! Files for applications, shaped like `std::fs`: every call goes to the fs core by
//! message and blocks only the calling thread (see the `fs` crate's `api`).

pub use fs::api::{create_dir, metadata, read, read_dir, remove_file, rename, write, File};
pub use fs::{DirEntry, Error, Metadata, OpenOptions, Result, SeekFrom};
