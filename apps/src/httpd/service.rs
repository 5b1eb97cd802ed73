//! The server in the kernel: a listener from the net service, the share through the fs
//! service, and worker threads on the application cores that accept connections and
//! serve them with the connection loop.

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
        worker.join();
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
                connection::serve(&mut socket, &mut Share, settings, &now);
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
struct Share;

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

    fn open(&mut self, path: &str) -> Result<ShareFile, SiteError> {
        fs::api::File::open(path).map(ShareFile).map_err(site_error)
    }
}

/// An open file of the share.
struct ShareFile(fs::api::File);

impl FileReader for ShareFile {
    fn read(&mut self, buffer: &mut [u8]) -> Result<usize, SiteError> {
        self.0.read(buffer).map_err(site_error)
    }
}
