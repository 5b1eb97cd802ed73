//! Files for applications on any core, served by the fs service (see `service`).
//!
//! The shapes follow `std::fs`: `File::open`/`create`, `read`, `read_to_end`,
//! `write_all`, `seek`, and `read_dir`, `metadata`, `remove_file`, `rename`,
//! `create_dir`. Errors are [`Error`]. Every call blocks the calling thread (its core
//! runs other threads meanwhile) until the fs core has done the work.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::service::call;
use crate::{DirEntry, Error, Metadata, OpenOptions, Result, SeekFrom};

/// Bytes moved per request in `read_to_end` and `write_all`.
const CHUNK: usize = 64 * 1024;

/// An open file of the shared volume.
#[derive(Debug, Clone)]
pub struct File {
    handle: crate::File,
}

impl File {
    /// Opens an existing file for reading.
    pub fn open(path: &str) -> Result<File> {
        Self::open_with(path, OpenOptions::read())
    }

    /// Creates a file (or truncates an existing one) for writing.
    pub fn create(path: &str) -> Result<File> {
        let path = path.to_string();
        changing(call(move |volume| volume.create(&path))).map(|handle| File { handle })
    }

    /// Opens `path` with `options`.
    pub fn open_with(path: &str, options: OpenOptions) -> Result<File> {
        let path = path.to_string();
        let opened = call(move |volume| volume.open(&path, options));
        let opened = if options.truncate || options.create || options.create_new {
            changing(opened)
        } else {
            opened
        };
        opened.map(|handle| File { handle })
    }

    /// Reads up to `buffer.len()` bytes; returns how many (0 at the end).
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize> {
        let mut handle = self.handle.clone();
        let wanted = buffer.len().min(CHUNK);
        let (handle, data) = call(move |volume| {
            let mut data = vec![0u8; wanted];
            let count = volume.read(&mut handle, &mut data)?;
            data.truncate(count);
            Ok((handle, data))
        })?;
        self.handle = handle;
        buffer[..data.len()].copy_from_slice(&data);
        Ok(data.len())
    }

    /// Reads everything from the current position on and appends it to `out`; returns
    /// how many bytes it read.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let start = out.len();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let count = self.read(&mut chunk)?;
            if count == 0 {
                return Ok(out.len() - start);
            }
            out.extend_from_slice(&chunk[..count]);
        }
    }

    /// Writes all of `data` at the current position.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(CHUNK) {
            let mut handle = self.handle.clone();
            let piece = piece.to_vec();
            self.handle = changing(call(move |volume| {
                let written = volume.write(&mut handle, &piece)?;
                if written == piece.len() {
                    Ok(handle)
                } else {
                    Err(Error::NoSpace)
                }
            }))?;
        }
        Ok(())
    }

    /// Moves the position; returns the new one.
    pub fn seek(&mut self, to: SeekFrom) -> Result<u64> {
        let mut handle = self.handle.clone();
        let (handle, position) = call(move |volume| {
            let position = volume.seek(&mut handle, to)?;
            Ok((handle, position))
        })?;
        self.handle = handle;
        Ok(position)
    }

    /// Returns the file's metadata.
    pub fn metadata(&self) -> Result<Metadata> {
        let handle = self.handle.clone();
        call(move |volume| volume.file_metadata(&handle))
    }
}

/// Opens the file at `path` for reading and reads up to `max` bytes (at most 64 KiB) from
/// its start, in one call to the fs core: the file, its metadata and the bytes. A server
/// answers a small file with this one round trip instead of three.
pub fn open_and_read(path: &str, max: usize) -> Result<(File, Metadata, Vec<u8>)> {
    let path = owned(path);
    let wanted = max.min(CHUNK);
    call(move |volume| {
        let mut handle = volume.open(&path, OpenOptions::read())?;
        let metadata = volume.file_metadata(&handle)?;
        let size = usize::try_from(metadata.size).unwrap_or(usize::MAX);
        let mut data = vec![0u8; wanted.min(size)];
        let count = volume.read(&mut handle, &mut data)?;
        data.truncate(count);
        Ok((File { handle }, metadata, data))
    })
}

/// Returns `result` after recording that the volume changed (see `generation`): a call
/// that writes bumps the generation once it returned, whether it succeeded or not.
fn changing<T>(result: Result<T>) -> Result<T> {
    crate::generation::bump();
    result
}

fn owned(path: &str) -> String {
    path.to_string()
}

/// Returns the entries of the directory at `path`.
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>> {
    let path = owned(path);
    call(move |volume| volume.read_dir(&path))
}

/// Returns the metadata of `path`.
pub fn metadata(path: &str) -> Result<Metadata> {
    let path = owned(path);
    call(move |volume| volume.metadata(&path))
}

/// Removes the file at `path`.
pub fn remove_file(path: &str) -> Result<()> {
    let path = owned(path);
    changing(call(move |volume| volume.remove_file(&path)))
}

/// Renames `from` to `to` (across directories too).
pub fn rename(from: &str, to: &str) -> Result<()> {
    let (from, to) = (owned(from), owned(to));
    changing(call(move |volume| volume.rename(&from, &to)))
}

/// Creates the directory `path`.
pub fn create_dir(path: &str) -> Result<()> {
    let path = owned(path);
    changing(call(move |volume| volume.create_dir(&path)))
}

/// Returns the whole content of the file at `path`.
pub fn read(path: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    File::open(path)?.read_to_end(&mut out)?;
    Ok(out)
}

/// Creates (or truncates) the file at `path` with `contents`, and flushes the volume.
pub fn write(path: &str, contents: &[u8]) -> Result<()> {
    File::create(path)?.write_all(contents)?;
    call(|volume| volume.flush())
}
