//! The concurrency check: many keep-alive clients open at once, each fetching files.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::client::Client;
use super::site::{check_file, SiteFile, BIG};

/// The keep-alive clients that run at once in the concurrency check.
pub const CONCURRENT_CLIENTS: usize = 50;
/// Requests each of them sends on its one connection.
pub const REQUESTS_PER_CLIENT: usize = 4;

/// One of the concurrent clients, on its connection that is already open: it keeps the
/// connection busy (a small request every 300 ms, well within the idle timeout) until
/// every client is connected, then sends `REQUESTS_PER_CLIENT` requests for small files
/// back to back; every tenth client then fetches the big one too.
fn concurrent_client(
    mut client: Client,
    index: usize,
    site: &[SiteFile],
    all_open: &AtomicBool,
) -> Result<(), String> {
    let small: Vec<&SiteFile> = site.iter().filter(|file| file.bytes.len() < BIG).collect();
    while !all_open.load(Ordering::Acquire) {
        check_file(&client.request("GET", small[0].target)?, small[0])?;
        thread::sleep(Duration::from_millis(300));
    }
    let big = site.iter().filter(|file| file.bytes.len() >= BIG);
    let files = (0..REQUESTS_PER_CLIENT)
        .map(|step| small[(index + step) % small.len()])
        .chain(big.filter(|_| index.is_multiple_of(10)));
    for file in files {
        check_file(&client.request("GET", file.target)?, file)?;
    }
    Ok(())
}

/// Runs `CONCURRENT_CLIENTS` clients with their connections open at the same time.
///
/// The connections are opened one after the other, each with a first request: QEMU's
/// user networking listens on the host with a backlog of one, so a burst of connects
/// would wait in the host's SYN retries (see the echo test) rather than in the guest.
pub(super) fn concurrent_clients(port: u16, site: &[SiteFile]) -> Result<(), String> {
    let all_open = AtomicBool::new(false);
    thread::scope(|scope| {
        let mut clients = Vec::new();
        let mut opening = Ok(());
        for index in 0..CONCURRENT_CLIENTS {
            let opened = Client::connect(port, Duration::from_secs(60)).and_then(|mut client| {
                check_file(&client.request("GET", site[0].target)?, &site[0])?;
                Ok(client)
            });
            match opened {
                Ok(client) => {
                    let all_open = &all_open;
                    clients.push(scope.spawn(move || {
                        concurrent_client(client, index, site, all_open)
                            .map_err(|error| format!("client {index}: {error}"))
                    }));
                }
                Err(error) => {
                    opening = Err(format!("client {index} could not open: {error}"));
                    break;
                }
            }
        }
        all_open.store(true, Ordering::Release);
        let mut failures = Vec::new();
        for client in clients {
            if let Err(error) = client
                .join()
                .unwrap_or_else(|_| Err("a client panicked".into()))
            {
                failures.push(error);
            }
        }
        opening?;
        match failures.first() {
            None => Ok(()),
            Some(first) => Err(format!(
                "{} of {CONCURRENT_CLIENTS} concurrent clients failed; first: {first}",
                failures.len()
            )),
        }
    })
}
