//! One connection's life: read requests from a transport, answer each from a site (the
//! share), keep the connection open while the client wants it and the idle timeout
//! allows. Generic over the transport and the site, so the same code runs in the kernel
//! (net sockets, the fs service) and in the host tests (scripted fakes).

use alloc::vec::Vec;
use core::time::Duration;

use super::content_type;
use super::path::SitePath;
use super::request::{self, Limits, Method, Parse, Request};
use super::response::{self, Head, Status};

/// What is served for a folder named with a final `/`.
pub const INDEX: &str = "index.html";

/// Why a transport call did not deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// Nothing arrived within the timeout.
    TimedOut,
    /// The connection is broken (reset, or the net service is gone).
    Failed,
}

/// A byte stream to a client.
pub trait Transport {
    /// Reads at least one byte into `buffer`, waiting at most `timeout`; returns how
    /// many, or 0 when the client closed its sending half.
    fn read(&mut self, buffer: &mut [u8], timeout: Duration) -> Result<usize, TransportError>;
    /// Sends all of `data`.
    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError>;
    /// Ends our sending half once everything written has gone out.
    fn finish(&mut self);
}

/// What a path names in the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A file of this many bytes.
    File {
        /// Its size in bytes.
        size: u64,
    },
    /// A folder.
    Folder,
}

/// Why the site could not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteError {
    /// Nothing has that path (also: a name the file system cannot hold).
    NotFound,
    /// The file system failed.
    Failed,
}

/// The files served.
pub trait Site {
    /// An open file, read from its start.
    type Reader: FileReader;
    /// Returns what `path` (`/`-rooted, decoded, checked) names.
    fn entry(&mut self, path: &str) -> Result<Entry, SiteError>;
    /// Opens the file at `path` for reading.
    fn open(&mut self, path: &str) -> Result<Self::Reader, SiteError>;
}

/// An open file of the site.
pub trait FileReader {
    /// Reads the next bytes into `buffer`; returns how many, 0 at the end.
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, SiteError>;
}

/// How a connection is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Request head limits.
    pub limits: Limits,
    /// How long an open connection may wait for the first byte of its next request.
    pub idle_timeout: Duration,
    /// How long a request head may take from its first byte to its end.
    pub head_timeout: Duration,
    /// Bytes asked for per transport read.
    pub read_size: usize,
    /// Bytes of a file read and sent per step (files are never read whole).
    pub chunk_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(5),
            head_timeout: Duration::from_secs(10),
            read_size: 8 * 1024,
            chunk_size: 64 * 1024,
        }
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closed its half between requests (or inside one).
    PeerClosed,
    /// No request began within the idle timeout.
    IdleTimeout,
    /// A request head began but did not end within the head timeout (answered 408).
    HeadTimeout,
    /// The bytes could never be a request the server accepts (answered with this status).
    Refused(Status),
    /// The last response closed the connection (the client asked, HTTP/1.0 without
    /// keep-alive, or a status that closes); it carried this status.
    Closed(Status),
    /// A write or read failed.
    TransportFailed,
    /// A file failed or ended early after its head was sent; the connection was cut so
    /// the client sees a short body rather than a wrong one.
    FileFailed,
}

/// What happened on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Requests answered.
    pub requests: u32,
    /// Why it ended.
    pub ending: Ending,
}

/// Serves requests on `transport` from `site` until the connection ends; `now` is a
/// monotonic clock. Never panics, whatever the client sends.
pub fn serve<T: Transport, S: Site>(
    transport: &mut T,
    site: &mut S,
    settings: &Settings,
    now: &dyn Fn() -> Duration,
) -> Summary {
    let mut connection = Connection {
        transport,
        site,
        settings,
        now,
        out: Vec::new(),
    };
    let mut received = Vec::with_capacity(settings.read_size);
    let mut requests = 0;
    let ending = loop {
        let request = match connection.next_request(&mut received) {
            Ok(request) => request,
            Err(ending) => break ending,
        };
        received.drain(..request.length.min(received.len()));
        requests += 1;
        match connection.respond(&request) {
            Ok((_, true)) => {}
            Ok((status, false)) => break Ending::Closed(status),
            Err(ending) => break ending,
        }
    };
    connection.transport.finish();
    Summary { requests, ending }
}

struct Connection<'a, T, S> {
    transport: &'a mut T,
    site: &'a mut S,
    settings: &'a Settings,
    now: &'a dyn Fn() -> Duration,
    /// The bytes of the response being sent (reused from one response to the next).
    out: Vec<u8>,
}

impl<T: Transport, S: Site> Connection<'_, T, S> {
    /// Returns the next request, reading until `received` holds a whole head.
    fn next_request(&mut self, received: &mut Vec<u8>) -> Result<Request, Ending> {
        let mut started = (!received.is_empty()).then(|| (self.now)());
        loop {
            match request::parse(received, &self.settings.limits) {
                Parse::Complete(request) => return Ok(request),
                Parse::Error(error) => {
                    let status = Status::from(error);
                    self.send_page(status, false, None, false)?;
                    return Err(Ending::Refused(status));
                }
                Parse::Incomplete => {}
            }
            let timeout = match started {
                None => self.settings.idle_timeout,
                Some(start) => self
                    .settings
                    .head_timeout
                    .saturating_sub((self.now)().saturating_sub(start)),
            };
            if timeout.is_zero() {
                return Err(self.head_timed_out());
            }
            let old = received.len();
            received.resize(old + self.settings.read_size.max(1), 0);
            let result = self.transport.read(&mut received[old..], timeout);
            match result {
                Ok(0) => return Err(Ending::PeerClosed),
                Ok(count) => {
                    received.truncate(old + count.min(self.settings.read_size.max(1)));
                    started.get_or_insert_with(|| (self.now)());
                }
                Err(TransportError::TimedOut) if started.is_none() => {
                    return Err(Ending::IdleTimeout)
                }
                Err(TransportError::TimedOut) => return Err(self.head_timed_out()),
                Err(TransportError::Failed) => return Err(Ending::TransportFailed),
            }
        }
    }

    fn head_timed_out(&mut self) -> Ending {
        match self.send_page(Status::RequestTimeout, false, None, false) {
            Ok(_) => Ending::HeadTimeout,
            Err(ending) => ending,
        }
    }

    /// Answers `request`; returns the status sent and whether the connection stays open.
    fn respond(&mut self, request: &Request) -> Result<(Status, bool), Ending> {
        let keep_alive = request.keep_alive;
        let head_only = match request.method {
            Method::Get => false,
            Method::Head => true,
            Method::Other => {
                return self.send_page(Status::MethodNotAllowed, keep_alive, None, false)
            }
        };
        let Ok(path) = SitePath::parse(&request.target) else {
            return self.send_page(Status::BadRequest, keep_alive, None, head_only);
        };
        let fs_path = path.fs_path();
        let (file, size, name) = match self.site.entry(&fs_path) {
            Ok(Entry::Folder) if !path.is_directory_form() => {
                let location = path.with_slash();
                return self.send_page(
                    Status::MovedPermanently,
                    keep_alive,
                    Some(&location),
                    head_only,
                );
            }
            Ok(Entry::Folder) => {
                let index = path.fs_path_of(INDEX);
                match self.site.entry(&index) {
                    Ok(Entry::File { size }) => (index, size, INDEX),
                    Ok(Entry::Folder) | Err(SiteError::NotFound) => {
                        return self.send_page(Status::NotFound, keep_alive, None, head_only)
                    }
                    Err(SiteError::Failed) => {
                        return self.send_page(Status::InternalServerError, false, None, head_only)
                    }
                }
            }
            // `/file.txt/` names no folder.
            Ok(Entry::File { .. }) if path.is_directory_form() => {
                return self.send_page(Status::NotFound, keep_alive, None, head_only)
            }
            Ok(Entry::File { size }) => (fs_path, size, path.file_name()),
            Err(SiteError::NotFound) => {
                return self.send_page(Status::NotFound, keep_alive, None, head_only)
            }
            Err(SiteError::Failed) => {
                return self.send_page(Status::InternalServerError, false, None, head_only)
            }
        };
        let content_type = content_type::for_name(name);
        self.send_file(&file, size, content_type, keep_alive, head_only)
    }

    /// Sends a status with its small HTML page (only the head for HEAD requests).
    fn send_page(
        &mut self,
        status: Status,
        keep_alive: bool,
        location: Option<&str>,
        head_only: bool,
    ) -> Result<(Status, bool), Ending> {
        let keep_alive = keep_alive && !status.closes_connection();
        let mut body = Vec::new();
        response::write_error_body(status, &mut body);
        self.out.clear();
        Head {
            status,
            content_type: response::ERROR_TYPE,
            content_length: body.len() as u64,
            keep_alive: keep_alive.then_some(self.settings.idle_timeout),
            location,
        }
        .write_to(&mut self.out);
        if !head_only {
            self.out.extend_from_slice(&body);
        }
        self.transport
            .write_all(&self.out)
            .map_err(|_| Ending::TransportFailed)?;
        Ok((status, keep_alive))
    }

    /// Sends the file at `path`, `size` bytes long, in chunks; the head shares its write
    /// with the first chunk.
    fn send_file(
        &mut self,
        path: &str,
        size: u64,
        content_type: &str,
        keep_alive: bool,
        head_only: bool,
    ) -> Result<(Status, bool), Ending> {
        let mut reader = if head_only {
            None
        } else {
            match self.site.open(path) {
                Ok(reader) => Some(reader),
                // Gone since the lookup: answer as if the lookup had missed it.
                Err(SiteError::NotFound) => {
                    return self.send_page(Status::NotFound, keep_alive, None, false)
                }
                Err(SiteError::Failed) => {
                    return self.send_page(Status::InternalServerError, false, None, false)
                }
            }
        };
        self.out.clear();
        Head {
            status: Status::Ok,
            content_type,
            content_length: size,
            keep_alive: keep_alive.then_some(self.settings.idle_timeout),
            location: None,
        }
        .write_to(&mut self.out);
        let mut remaining = if head_only { 0 } else { size };
        let mut sent_any = false;
        while let Some(reader) = reader.as_mut().filter(|_| remaining > 0) {
            let start = self.out.len();
            let wanted = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(self.settings.chunk_size.max(1));
            self.out.resize(start + wanted, 0);
            let result = reader.read(&mut self.out[start..]);
            let count = match result {
                Ok(count) => count.min(wanted),
                // Nothing sent yet: the client can still be told properly.
                Err(_) if !sent_any => {
                    return self.send_page(Status::InternalServerError, false, None, false)
                }
                Err(_) => return Err(Ending::FileFailed),
            };
            if count == 0 && !sent_any {
                // Shorter than its lookup said (changed meanwhile), and nothing sent yet.
                return self.send_page(Status::InternalServerError, false, None, false);
            }
            self.out.truncate(start + count);
            if count == 0 {
                // The file is shorter than announced: send what there is, then cut.
                let _ = self.transport.write_all(&self.out);
                return Err(Ending::FileFailed);
            }
            remaining -= count as u64;
            self.transport
                .write_all(&self.out)
                .map_err(|_| Ending::TransportFailed)?;
            sent_any = true;
            self.out.clear();
        }
        if !sent_any {
            self.transport
                .write_all(&self.out)
                .map_err(|_| Ending::TransportFailed)?;
        }
        Ok((Status::Ok, keep_alive))
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
