//! The server in the kernel: the net-core part ([`Server`]) runs as the connection
//! handler of a `net::HandlerListener`, and worker threads on the application cores
//! take the requests it hands off, answer them from the fs service ([`Share`]) and give
//! the connections back.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

use net::trace::{self, Counter};
use percore::placement::{service_core, Service};
use percore::println;

use super::date;
use super::options::Options;
use super::server::{Reply, Server, Session, Settings};
use super::worker::{self, FileReader, Found, Site, SiteError, Transport, TransportError};
use manada::AppError;

/// The net core's part as a connection handler.
struct Httpd {
    server: Server,
}

/// The most memory the net core's cache takes.
const MAX_CACHE: usize = 64 << 20;

impl net::Handler for Httpd {
    type Connection = Session;

    fn attach(&mut self) -> net::Result<()> {
        // On the net core: the cache takes an eighth of what its heap has left.
        let heap = percore::global::heap_stats();
        let free = heap.bytes_total.saturating_sub(heap.bytes_in_use);
        let cache = (free / 8).min(MAX_CACHE);
        let max_entry = (cache / 8).min(worker::CACHEABLE as usize + 4096);
        if self.server.attach(cache, max_entry) {
            Ok(())
        } else {
            Err(net::Error::OutOfMemory)
        }
    }

    fn open(&mut self, _peer: net::SocketAddrV4, now_ms: u64) -> Option<Session> {
        Some(self.server.open(now_ms))
    }

    fn event(
        &mut self,
        session: &mut Session,
        io: &mut net::Io<'_>,
        event: net::Event,
        now_ms: u64,
    ) -> net::Next {
        self.server.event(session, io, event, now_ms)
    }
}

type Listener = net::HandlerListener<Httpd>;

/// Starts the server and its workers and serves until they all stop (normally never).
pub(super) fn main() -> Result<(), AppError> {
    let command_line = percore::boot_info().command_line();
    let options = Options::from_arguments(|key| command_line.get(key)).map_err(|error| {
        println!("httpd: {error}");
        AppError("a bad kernel argument")
    })?;
    if service_core(Service::Fs).is_none() {
        match command_line.get("fs.disk") {
            None => println!(
                "httpd: no file system to serve: share a folder (cargo xtask run --share DIR) \
                 or attach a FAT16 image (--disk IMAGE)"
            ),
            Some(disk) => println!(
                "httpd: the fs service did not start on {disk}; the manada: lines above say \
                 why (a disk without a FAT16 volume, or too little memory for the devices: \
                 then give the guest more with --mem)"
            ),
        }
        return Err(AppError("no fs service"));
    }
    if options.trace {
        trace::enable();
    }
    let settings = Settings {
        idle_timeout: options.idle_timeout,
        ..Settings::default()
    };
    let handler = Httpd {
        server: Server::new(settings, date::unix_now, fs::generation::current),
    };
    let listener = Listener::bind(options.port, handler).map_err(|error| {
        println!("httpd: cannot listen on port {}: {error}", options.port);
        AppError("cannot listen")
    })?;
    let listener = Arc::new(listener);
    let cores = manada::app_cores();
    let mut workers = Vec::new();
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
    if options.trace {
        let port = options.trace_port;
        if percore::try_spawn_on(cores[0], move || report_trace(port)).is_err() {
            println!("httpd: no trace report on port {port}");
        }
    }
    println!(
        "httpd: serving the share on port {} from the net core (core {}), {} workers on \
         cores {:?} for misses and big files",
        options.port,
        service_core(Service::Net).unwrap_or(0),
        workers.len(),
        cores
    );
    for worker in workers {
        // A worker that faulted was reported where it failed; the others go on.
        let _ = worker.join();
    }
    Err(AppError("every worker stopped"))
}

/// Answers what the net core hands off, until the listener fails for good.
fn work(listener: &Listener, settings: &Settings) {
    let mut share = Share;
    loop {
        let (stream, mut session, _) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error @ (net::Error::NoService | net::Error::Closed)) => {
                println!(
                    "httpd: a worker on core {} stops: {error}",
                    percore::current_core()
                );
                return;
            }
            // A connection that failed before it was ours; the next may be fine.
            Err(_) => {
                percore::sleep(Duration::from_millis(1));
                continue;
            }
        };
        // Read before the file is, so a change meanwhile outdates what is cached.
        let generation = fs::generation::current();
        let mut socket = Socket(stream);
        let Some(head) = session.head() else {
            continue;
        };
        let reply = worker::answer(
            head,
            settings,
            &mut share,
            &mut socket,
            generation,
            date::unix_now(),
        );
        if let Reply::Answered { keep_alive: false } = reply {
            // Dropping the stream closes it once what was written went out.
            continue;
        }
        session.set_reply(reply);
        // A failure here dropped the stream, which closes it.
        let _ = listener.resume(socket.0, session);
    }
}

/// A handed-off connection, as a worker writes a big file on it.
struct Socket(net::TcpStream);

impl Transport for Socket {
    fn write_all(&mut self, data: &[u8]) -> Result<(), TransportError> {
        self.0.write_all(data).map_err(|_| TransportError)
    }
}

/// Serves the trace counters, one line per core, to whoever connects to `port`
/// (`cargo xtask bench http --trace` reads them before and after a load).
fn report_trace(port: u16) {
    let Ok(listener) = net::TcpListener::bind(port) else {
        println!("httpd: cannot listen on port {port} for the trace");
        return;
    };
    while let Ok((mut stream, _)) = listener.accept() {
        let mut report = trace::report(percore::core_count());
        if let Ok((bytes, sockets)) = net::service::usage() {
            report.push_str(&alloc::format!(
                "net heap_bytes_in_use={bytes} sockets_in_use={sockets}\n"
            ));
        }
        let _ = stream.write_all(report.as_bytes());
        let _ = stream.shutdown();
    }
}

/// Bytes a lookup reads ahead: one fs round trip answers a small file.
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

/// Runs an fs call, counted in the trace.
fn fs_call<T>(call: impl FnOnce() -> T) -> T {
    let started = trace::start();
    let result = call();
    trace::finish(started, Counter::FsCallCycles, Some(Counter::FsCalls));
    result
}

/// The shared folder, through the fs service.
///
/// A lookup opens the file and reads its first 64 KiB in the same call to the fs core
/// (`fs::api::open_and_read`), so a small file costs one round trip.
struct Share;

impl Site for Share {
    type Reader = ShareFile;

    fn lookup(&mut self, path: &str) -> Result<Found<ShareFile>, SiteError> {
        let file = |file, metadata: fs::Metadata, ahead| Found::File {
            size: u64::from(metadata.size),
            modified: date::from_fat(metadata.modified),
            reader: ShareFile {
                file,
                ahead,
                taken: 0,
            },
        };
        match fs_call(|| fs::api::open_and_read(path, READ_AHEAD)) {
            Ok((_, metadata, _)) if metadata.attributes.contains(fs::Attributes::VOLUME_ID) => {
                Err(SiteError::NotFound)
            }
            Ok((opened, metadata, ahead)) => Ok(file(opened, metadata, ahead)),
            Err(fs::Error::IsADirectory) => Ok(Found::Folder),
            Err(fs::Error::NotFound) => Err(SiteError::NotFound),
            // Anything else (the root folder, say): ask for the metadata alone.
            Err(_) => {
                let metadata = fs_call(|| fs::api::metadata(path)).map_err(site_error)?;
                if metadata.attributes.contains(fs::Attributes::VOLUME_ID) {
                    Err(SiteError::NotFound)
                } else if metadata.is_dir() {
                    Ok(Found::Folder)
                } else {
                    let opened = fs_call(|| fs::api::File::open(path)).map_err(site_error)?;
                    Ok(file(opened, metadata, Vec::new()))
                }
            }
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
        fs_call(|| self.file.read(buffer)).map_err(site_error)
    }

    fn seek(&mut self, position: u64) -> Result<(), SiteError> {
        // The file itself stands right after the bytes read ahead.
        if let Ok(position) = usize::try_from(position) {
            if position <= self.ahead.len() {
                self.taken = position;
                return Ok(());
            }
        }
        self.ahead = Vec::new();
        self.taken = 0;
        fs_call(|| self.file.seek(fs::SeekFrom::Start(position)))
            .map(|_| ())
            .map_err(site_error)
    }
}
