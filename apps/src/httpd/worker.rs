//! The workers' part: a request the net core could not answer alone (a miss, a big
//! file), answered from the file system on an application core.
//!
//! A small file (up to [`CACHEABLE`] bytes) is read whole and goes back to the net core
//! as a cache entry, which answers it (and every later request for it); a folder named
//! without its `/` goes back as a redirect entry; a missing file or a refused path as
//! a page. A big file is streamed by the worker itself, in [`CHUNK`] steps, with its
//! range and conditions; then the connection goes back for its next request. Generic
//! over the share ([`Site`]) and the connection ([`Transport`]), so the host tests run
//! it against an in-memory share.

use alloc::string::String;
use alloc::vec::Vec;

use super::cache::{self, Cached, CachedFile};
use super::content_type;
use super::path::SitePath;
use super::request::{self, Method, Parse};
use super::response::{ContentRange, Head, Status};
use super::server::{cached_head, Reply, Settings};
use super::validators::{self, Answer, EntityTag, Validators};

/// What is served for a folder named with a final `/`.
pub const INDEX: &str = "index.html";
/// The biggest file read whole and handed to the net core's cache.
pub const CACHEABLE: u64 = 256 * 1024;
/// Bytes of a big file read and sent per step.
pub const CHUNK: usize = 64 * 1024;

/// Why the connection cannot take more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportError;

/// The connection, as a worker writes a big response on it.
pub trait Transport {
    /// Sends all of `data`.
    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError>;
}

/// Why the share could not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteError {
    /// Nothing has that path (also: a name the file system cannot hold).
    NotFound,
    /// The file system failed.
    Failed,
}

/// What a path names in the share.
#[derive(Debug)]
pub enum Found<R> {
    /// A folder.
    Folder,
    /// A file, open for reading from its start.
    File {
        /// Its size in bytes.
        size: u64,
        /// Its modification time (seconds since the Unix epoch), when known.
        modified: Option<u64>,
        /// Its bytes.
        reader: R,
    },
}

/// The files served.
pub trait Site {
    /// An open file.
    type Reader: FileReader;
    /// Returns what `path` (`/`-rooted, decoded, checked) names.
    fn lookup(&mut self, path: &str) -> Result<Found<Self::Reader>, SiteError>;
}

/// An open file of the site.
pub trait FileReader {
    /// Reads the next bytes into `buffer`; returns how many, 0 at the end.
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, SiteError>;
    /// Moves to byte `position` from the start.
    fn seek(&mut self, position: u64) -> Result<(), SiteError>;
}

/// Returns `len` zeroed bytes, or `None` without memory.
fn zeroed(len: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).ok()?;
    bytes.resize(len, 0);
    Some(bytes)
}

fn page(status: Status) -> Reply {
    Reply::Page(status, None)
}

/// Answers the request whose head is `head`: what the share has for it, read after the
/// volume's generation was `generation`; a big file is sent on `transport` at once,
/// stamped with `date`.
pub fn answer<S: Site, T: Transport>(
    head: &[u8],
    settings: &Settings,
    site: &mut S,
    transport: &mut T,
    generation: u64,
    date: Option<u64>,
) -> Reply {
    let Parse::Complete(request) = request::parse(head, &settings.limits) else {
        return page(Status::BadRequest);
    };
    if request.method == Method::Other {
        return page(Status::MethodNotAllowed);
    }
    let Ok(path) = SitePath::parse(request.target) else {
        return page(Status::BadRequest);
    };
    let key = cache::key(request.target);
    let (found, name) = match site.lookup(&path.fs_path()) {
        Ok(Found::Folder) if !path.is_directory_form() => {
            let location = path.with_slash();
            return match key.and_then(owned) {
                Some(key) => Reply::Found(CachedFile {
                    key,
                    generation,
                    cached: Cached::Redirect { location },
                }),
                None => Reply::Page(Status::MovedPermanently, Some(location)),
            };
        }
        Ok(Found::Folder) => match site.lookup(&path.fs_path_of(INDEX)) {
            Ok(found @ Found::File { .. }) => (found, INDEX),
            Ok(Found::Folder) | Err(SiteError::NotFound) => return page(Status::NotFound),
            Err(SiteError::Failed) => return page(Status::InternalServerError),
        },
        // `/file.txt/` names no folder.
        Ok(Found::File { .. }) if path.is_directory_form() => return page(Status::NotFound),
        Ok(found) => (found, path.file_name()),
        Err(SiteError::NotFound) => return page(Status::NotFound),
        Err(SiteError::Failed) => return page(Status::InternalServerError),
    };
    let Found::File {
        size,
        modified,
        reader,
    } = found
    else {
        return page(Status::NotFound);
    };
    let content_type = content_type::for_name(name);
    match key {
        Some(key) if size <= CACHEABLE => {
            read_whole(key, generation, size, modified, content_type, reader)
        }
        _ => stream(
            &request,
            settings,
            transport,
            size,
            modified,
            content_type,
            reader,
            date,
        ),
    }
}

/// Returns `text` as an owned string, or `None` without memory.
fn owned(text: &str) -> Option<String> {
    let mut copy = String::new();
    copy.try_reserve_exact(text.len()).ok()?;
    copy.push_str(text);
    Some(copy)
}

/// Reads a small file whole into a cache entry.
fn read_whole<R: FileReader>(
    key: &str,
    generation: u64,
    size: u64,
    modified: Option<u64>,
    content_type: &'static str,
    mut reader: R,
) -> Reply {
    let Some(mut body) = zeroed(size as usize) else {
        return page(Status::ServiceUnavailable);
    };
    let mut filled = 0;
    while filled < body.len() {
        match reader.read(&mut body[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(_) => return page(Status::InternalServerError),
        }
    }
    if filled < body.len() && filled == 0 {
        // Shorter than its lookup said, and empty now: changed meanwhile.
        return page(Status::InternalServerError);
    }
    // A file that shrank meanwhile is served as it was read.
    body.truncate(filled);
    let validators = Validators {
        etag: EntityTag::of_content(&body),
        last_modified: modified,
    };
    let (Some(head), Some(key)) = (
        cached_head(content_type, body.len() as u64, &validators),
        owned(key),
    ) else {
        return page(Status::ServiceUnavailable);
    };
    Reply::Found(CachedFile {
        key,
        generation,
        cached: Cached::File {
            body,
            head,
            content_type,
            validators,
        },
    })
}

/// Sends a big file (or the part its range names) on `transport`.
#[allow(clippy::too_many_arguments)]
fn stream<R: FileReader, T: Transport>(
    request: &request::Request<'_>,
    settings: &Settings,
    transport: &mut T,
    size: u64,
    modified: Option<u64>,
    content_type: &str,
    mut reader: R,
    date: Option<u64>,
) -> Reply {
    let keep_alive = request.keep_alive;
    let validators = Validators {
        etag: EntityTag::of_metadata(modified.unwrap_or(0), size),
        last_modified: modified,
    };
    let (status, start, length, content_range) =
        match validators::answer(request.method, &request.conditions, &validators, size) {
            Answer::Full => (Status::Ok, 0, size, None),
            Answer::NotModified => (Status::NotModified, 0, 0, None),
            Answer::Partial { start, end } => (
                Status::PartialContent,
                start,
                end - start + 1,
                Some(ContentRange::Part { start, end, size }),
            ),
            Answer::Unsatisfiable => (
                Status::RangeNotSatisfiable,
                0,
                0,
                Some(ContentRange::Unsatisfied { size }),
            ),
        };
    let head = Head {
        keep_alive: keep_alive.then_some(settings.idle_timeout),
        etag: Some(&validators.etag),
        last_modified: validators.last_modified,
        date,
        content_range,
        accept_ranges: true,
        ..Head::new(status, content_type, length)
    };
    let send_body = request.method == Method::Get && length > 0;
    let Some(mut out) = zeroed(if send_body { CHUNK } else { 0 }) else {
        return page(Status::ServiceUnavailable);
    };
    out.clear();
    if !head.write_to(&mut out) {
        return page(Status::ServiceUnavailable);
    }
    if !send_body {
        return match transport.write_all(&out) {
            Ok(()) => Reply::Answered { keep_alive },
            Err(_) => Reply::Answered { keep_alive: false },
        };
    }
    if start > 0 && reader.seek(start).is_err() {
        return page(Status::InternalServerError);
    }
    let mut remaining = length;
    let mut sent_any = false;
    while remaining > 0 {
        let at = out.len();
        let wanted = (CHUNK as u64).min(remaining) as usize;
        if out.try_reserve(wanted).is_err() {
            return Reply::Answered { keep_alive: false };
        }
        out.resize(at + wanted, 0);
        let count = match reader.read(&mut out[at..]) {
            Ok(count) => count.min(wanted),
            // Nothing sent yet: the client can still be told properly.
            Err(_) if !sent_any => return page(Status::InternalServerError),
            Err(_) => return Reply::Answered { keep_alive: false },
        };
        out.truncate(at + count);
        if count == 0 {
            if !sent_any {
                // Shorter than its lookup said, and nothing sent yet.
                return page(Status::InternalServerError);
            }
            // Shorter than announced: send what there is, then cut.
            let _ = transport.write_all(&out);
            return Reply::Answered { keep_alive: false };
        }
        remaining -= count as u64;
        if transport.write_all(&out).is_err() {
            return Reply::Answered { keep_alive: false };
        }
        sent_any = true;
        out.clear();
    }
    Reply::Answered { keep_alive }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
