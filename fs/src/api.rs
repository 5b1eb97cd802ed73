//! Files for applications on any core, served by the fs service (see `service`).
//!
//! The shapes follow `std::fs`: `File::open`/`create`, `read`, `read_to_end`,
//! `write_all`, `seek`, and `read_dir`, `metadata`, `remove_file`, `remove_dir`,
//! `rename`, `create_dir`, plus [`sync`]. Errors are [`Error`]. Every call blocks the calling
//! thread (its core runs other threads meanwhile) until the fs core has done the work.
//!
//! Large reads: [`File::read_chunk`] moves the caller's buffer to the fs core, which
//! reads into it straight from the disk (whole runs of contiguous clusters in one
//! request) and moves it back, so a file streams in constant memory with no copy.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::service::call;
use crate::{DirEntry, Error, Metadata, OpenOptions, Result, SeekFrom};

/// Bytes moved per request in `write_all`, and the most `open_and_read` reads.
const CHUNK: usize = 64 * 1024;

/// The most one call to the fs core reads: large enough that a sequential read of a
/// contiguous file goes to the disk in 1 MiB requests, small enough that other
/// operations do not wait long behind it.
pub const READ_CHUNK: usize = 1 << 20;

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

    /// Reads up to `buffer.len()` bytes (at most [`READ_CHUNK`]); returns how many (0
    /// at the end).
    pub fn read(&mut self, buffer: &mut [u8]) -> Result<usize> {
        let wanted = buffer.len().min(READ_CHUNK);
        let chunk = self.read_chunk(Vec::new(), wanted)?;
        buffer[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }

    /// Reads up to `max` bytes (at most [`READ_CHUNK`]) from the position into `buffer`,
    /// replacing what it held, and returns it: shorter than `max` only at the end of the
    /// file, empty there.
    ///
    /// The buffer moves to the fs core, which reads into it straight from the disk, and
    /// back: nothing is copied. Pass the returned buffer to the next call to stream a
    /// file of any size in `max` bytes of memory. On an error the buffer is dropped.
    pub fn read_chunk(&mut self, mut buffer: Vec<u8>, max: usize) -> Result<Vec<u8>> {
        let max = max.min(READ_CHUNK);
        buffer.clear();
        buffer.try_reserve(max).map_err(|_| Error::NoMemory)?;
        let mut handle = self.handle.clone();
        let (handle, buffer) = call(move |volume| {
            let size = u64::from(volume.file_metadata(&handle)?.size);
            let left = size.saturating_sub(handle.position());
            // Within the capacity reserved above: no allocation on the fs core.
            buffer.resize(max.min(usize::try_from(left).unwrap_or(usize::MAX)), 0);
            let count = volume.read(&mut handle, &mut buffer)?;
            buffer.truncate(count);
            Ok((handle, buffer))
        })?;
        self.handle = handle;
        Ok(buffer)
    }

    /// Reads everything from the current position to the end the file had when the call
    /// began and appends it to `out`; returns how many bytes it read. Memory for the
    /// rest of the file is reserved first: `NoMemory` if there is not enough, with `out`
    /// as it was.
    pub fn read_to_end(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let start = out.len();
        let size = u64::from(self.metadata()?.size);
        let mut left =
            usize::try_from(size.saturating_sub(self.position())).map_err(|_| Error::NoMemory)?;
        out.try_reserve(left).map_err(|_| Error::NoMemory)?;
        let mut chunk = Vec::new();
        while left > 0 {
            let wanted = left.min(READ_CHUNK);
            chunk = self.read_chunk(chunk, wanted)?;
            // Within the capacity reserved above.
            out.extend_from_slice(&chunk);
            left -= chunk.len();
            if chunk.len() < wanted {
                // The file became shorter meanwhile.
                break;
            }
        }
        Ok(out.len() - start)
    }

    /// Returns the position in the file.
    pub fn position(&self) -> u64 {
        self.handle.position()
    }

    /// Writes all of `data` at the current position.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(CHUNK) {
            let mut handle = self.handle.clone();
            let piece = owned_bytes(piece)?;
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

/// Returns a copy of `data` to move to the fs core, or `NoMemory`.
fn owned_bytes(data: &[u8]) -> Result<Vec<u8>> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(data.len())
        .map_err(|_| Error::NoMemory)?;
    copy.extend_from_slice(data);
    Ok(copy)
}

/// Writes every change the fs service holds in its cache to the disk and flushes the
/// disk. Every operation that returned Ok before `sync` was called is then on the disk.
pub fn sync() -> Result<()> {
    call(|volume| volume.flush())
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

/// Removes the empty directory at `path`.
pub fn remove_dir(path: &str) -> Result<()> {
    let path = owned(path);
    changing(call(move |volume| volume.remove_dir(&path)))
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

/// Returns the whole content of the file at `path`. A file up to [`READ_CHUNK`] long
/// takes one call to the fs core (open, size and contents together).
pub fn read(path: &str) -> Result<Vec<u8>> {
    let path = owned(path);
    let (mut file, size, mut out) = call(move |volume| {
        let mut handle = volume.open(&path, OpenOptions::read())?;
        let size = volume.file_metadata(&handle)?.size as usize;
        let mut data = Vec::new();
        data.try_reserve_exact(size.min(READ_CHUNK))
            .map_err(|_| Error::NoMemory)?;
        data.resize(size.min(READ_CHUNK), 0);
        let count = volume.read(&mut handle, &mut data)?;
        data.truncate(count);
        Ok((File { handle }, size, data))
    })?;
    if out.len() < size {
        out.try_reserve_exact(size - out.len())
            .map_err(|_| Error::NoMemory)?;
        file.read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Creates (or replaces) the file at `path` with `contents`, and flushes the volume, in
/// one operation: everything it needs (name, room, free clusters) is checked first, so
/// on an error other than an I/O error nothing changed.
pub fn write(path: &str, contents: &[u8]) -> Result<()> {
    let path = owned(path);
    let contents = owned_bytes(contents)?;
    call(move |volume| {
        volume.write_file(&path, &contents)?;
        volume.flush()
    })
}
