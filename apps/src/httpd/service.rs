//! The server in the kernel: a listener from the net service, the share through the fs
//! service, and worker threads on the application cores that accept connections and
//! serve them with the connection loop.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

use percore::{println, Instant};

use super::connection::{
    self, Entry, FileReader, Settings, Site, SiteError, Transport, TransportError,
};
use super::options::Options;
use crate::app::AppError;

/// Starts the workers and serves until they all stop (normally never).
pub(super) fn main() -> Result<(), AppError> {
    let command_line = percore::boot_info().command_line();
    let options = Options::from_arguments(|key| command_line.get(key)).map_err(|error| {
        println!("httpd: {error}");
        AppError("a bad kernel argument")
    })?;
    if fs::service::service_core().is_none() {
        println!("httpd: no file system to serve: share a folder (cargo xtask run --share DIR)");
        return Err(AppError("no fs service"));
    }
    let listener = net::TcpListener::bind(options.port).map_err(|error| {
        println!("httpd: cannot listen on port {}: {error}", options.port);
        AppError("cannot listen")
    })?;
    let cores = crate::app::app_cores();
    let settings = Settings {
        idle_timeout: options.idle_timeout,
        ..Settings::default()
    };
    let listener = Arc::new(listener);
    let mut workers = Vec::with_capacity(options.workers);
    for index in 0..options.workers {
        let core = cores[index % cores.len()];
        let listener = listener.clone();
        match percore::try_spawn_on(core, move || work(&listener, &settings)) {
            Ok(handle) => workers.push(handle),
            Err(error) => {
                println!("httpd: worker {index} not started on core {core}: {error:?}");
                break;
            }
        }
    }
    if workers.is_empty() {
        return Err(AppError("no worker started"));
    }
    println!(
        "httpd: serving the share on port {} with {} workers on cores {:?}; forwarded: see xtask",
        options.port,
        workers.len(),
        cores
    );
    for worker in workers {
        // A worker that faulted was reported where it failed; the others go on.
        let _ = worker.join();
    }
    Err(AppError("every worker stopped"))
}

/// Accepts and serves connections, one at a time, until the listener fails for good.
fn work(listener: &net::TcpListener, settings: &Settings) {
    let start = Instant::now();
    let now = move || start.elapsed();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let mut socket = Socket {
                    stream,
                    timeout: None,
                };
                connection::serve(&mut socket, &mut Share::default(), settings, &now);
            }
            Err(error @ (net::Error::NoService | net::Error::Closed)) => {
                println!(
                    "httpd: a worker on core {} stops: {error}",
                    percore::current_core()
                );
                return;
            }
            // A connection that failed before it was ours; the next may be fine.
            Err(_) => percore::sleep(Duration::from_millis(1)),
        }
    }
}

/// A client connection from the net service.
struct Socket {
    stream: net::TcpStream,
    /// The read timeout last set (set again only when it changes).
    timeout: Option<Duration>,
}

impl Transport for Socket {
    fn read(&mut self, buffer: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        if self.timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout));
            self.timeout = Some(timeout);
        }
        self.stream.read(buffer).map_err(|error| match error {
            net::Error::TimedOut => TransportError::TimedOut,
            _ => TransportError::Failed,
        })
    }

    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.stream
            .write_all(data)
            .map_err(|_| TransportError::Failed)
    }

    fn finish(&mut self) {
        // The stream closes when dropped; a failed shutdown leaves nothing to do.
        let _ = self.stream.shutdown();
    }
}

/// The shared folder, through the fs service.
///
/// A lookup opens the file and reads its first chunk in the same call to the fs core
/// (`fs::api::open_and_read`); the connection loop opens the file it just looked up, so
/// a small file costs one round trip instead of three (lookup, open, read).
#[derive(Default)]
struct Share {
    /// The file the last lookup opened, with its path.
    opened: Option<(String, ShareFile)>,
}

/// Bytes the lookup reads ahead: the connection loop's chunk.
const READ_AHEAD: usize = 64 * 1024;

/// Returns how the server reports an fs error: names that do not resolve are not found;
/// everything else is the server's failure.
fn site_error(error: fs::Error) -> SiteError {
    match error {
        fs::Error::NotFound
        | fs::Error::NotADirectory
        | fs::Error::IsADirectory
        | fs::Error::InvalidName => SiteError::NotFound,
        _ => SiteError::Failed,
    }
}

impl Site for Share {
    type Reader = ShareFile;

    fn entry(&mut self, path: &str) -> Result<Entry, SiteError> {
        self.opened = None;
        match fs::api::open_and_read(path, READ_AHEAD) {
            Ok((_, metadata, _)) if metadata.attributes.contains(fs::Attributes::VOLUME_ID) => {
                Err(SiteError::NotFound)
            }
            Ok((file, metadata, ahead)) => {
                self.opened = Some((
                    path.into(),
                    ShareFile {
                        file,
                        ahead,
                        taken: 0,
                    },
                ));
                Ok(Entry::File {
                    size: u64::from(metadata.size),
                })
            }
            Err(fs::Error::IsADirectory) => Ok(Entry::Folder),
            Err(fs::Error::NotFound) => Err(SiteError::NotFound),
            // Anything else (the root folder, say): ask for the metadata alone.
            Err(_) => {
                let metadata = fs::api::metadata(path).map_err(site_error)?;
                if metadata.attributes.contains(fs::Attributes::VOLUME_ID) {
                    Err(SiteError::NotFound)
                } else if metadata.is_dir() {
                    Ok(Entry::Folder)
                } else {
                    Ok(Entry::File {
                        size: u64::from(metadata.size),
                    })
                }
            }
        }
    }

    fn open(&mut self, path: &str) -> Result<ShareFile, SiteError> {
        match self.opened.take() {
            Some((opened, file)) if opened == path => Ok(file),
            _ => fs::api::File::open(path)
                .map(|file| ShareFile {
                    file,
                    ahead: Vec::new(),
                    taken: 0,
                })
                .map_err(site_error),
        }
    }
}

/// An open file of the share, with the bytes its lookup read ahead.
struct ShareFile {
    file: fs::api::File,
    ahead: Vec<u8>,
    /// How many of `ahead` were handed out.
    taken: usize,
}

impl FileReader for ShareFile {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, SiteError> {
        if self.taken < self.ahead.len() {
            let count = buffer.len().min(self.ahead.len() - self.taken);
            buffer[..count].copy_from_slice(&self.ahead[self.taken..self.taken + count]);
            self.taken += count;
            return Ok(count);
        }
        self.file.read(buffer).map_err(site_error)
    }
}
