//! Host benchmark: this crate's virtio-blk driver (`devices::virtio::blk`) against the
//! `virtio-drivers` crate (0.13, `device::blk::VirtIOBlk`), so the choice between them rests
//! on a measurement.
//!
//! Both drivers talk to the same emulated device: a thread pinned to another CPU that polls
//! the available ring over shared memory, follows the descriptor chain (direct or indirect),
//! copies the sectors from a RAM disk into the driver's buffer, writes the status byte and
//! the used entry, and goes straight on to the next request. What is measured is read
//! requests per second as seen by the driver thread: submit, notify, wait for the used
//! entry, and take the result. The device's work per request is the same for both drivers
//! (same descriptor layout: header, one data buffer, status byte), so the difference between
//! two figures is driver-side cost.
//!
//! - `manada`: `BlkQueue::read` (range check, header and status byte written into its DMA
//!   slot, chain added), `BlkQueue::kick` (publish, SeqCst fence, notify through a
//!   `Transport` that stores into a doorbell word), then `BlkQueue::complete` until the
//!   request comes back (used entry checked, status byte and used length validated).
//!   Deeper queues do the same per request, completions matched to buffers by id.
//! - `virtio-drivers`: its own public MMIO transport (`MmioTransport`) over a register block
//!   in ordinary memory (its fake transport is `#[cfg(test)]` only, and its `Transport` trait
//!   cannot be implemented here without depending on `zerocopy`). Queue depth 1 is
//!   `VirtIOBlk::read_blocks` (add, notify by a volatile store to the QueueNotify register,
//!   spin on the used index, pop, status); deeper queues are `read_blocks_nb` +
//!   `peek_used` + `complete_read_blocks`. Its queue has a fixed 16 descriptors, so without
//!   `VIRTIO_F_INDIRECT_DESC` at most five three-descriptor reads fit; at depth 16 the device
//!   offers indirect descriptors, and the crate then allocates (and frees) an indirect table
//!   on the heap per request, as it would against QEMU, which offers that feature by default.
//!
//! Each figure is the median of several runs; every run sets up the driver and the device
//! afresh, warms up, then counts completed requests for a fixed time. Runs of the different
//! cases are interleaved so drift hits them alike. Data read back is checked against the RAM
//! disk after every run.
//!
//! `cargo bench -p devices --bench driver_compare`; `DRIVER_COMPARE_QUICK=1` for a short
//! smoke run; `DRIVER_COMPARE_JSON=path` also writes `[{"name", "value", "unit"}, ...]`.
//!
//! Here: the table of cases, timing and the report; `device` is the emulated device,
//! `host` the shared memory and CPU pinning, `manada` and `virtio_drivers_crate` drive it.

mod device;
mod host;
mod manada;
mod virtio_drivers_crate;

use std::time::{Duration, Instant};

use devices::virtio::blk::SECTOR_SIZE;

use host::affinity;
use manada::measure_manada;
use virtio_drivers_crate::measure_virtio_drivers;

/// RAM disk size: small enough to stay in cache, so the device is as fast as it can be.
const DISK_BYTES: usize = 1 << 20;
const DISK_SECTORS: u64 = (DISK_BYTES / SECTOR_SIZE) as u64;
/// The most descriptors one request may use (the device checks).
const MAX_CHAIN: usize = 8;
/// virtio-drivers' virtio-blk queue size (fixed in the crate).
const VD_QUEUE_SIZE: u16 = 16;

/// The byte at `index` of the RAM disk.
fn disk_byte(index: usize) -> u8 {
    (index * 7 + index / SECTOR_SIZE) as u8
}

/// Returns the sector after a `sectors`-long read at `sector`, wrapping at the disk's end.
fn next_sector(sector: u64, sectors: u64) -> u64 {
    let next = sector + sectors;
    if next + sectors > DISK_SECTORS {
        0
    } else {
        next
    }
}

fn check_data(what: &str, sector: u64, data: &[u8]) {
    let start = sector as usize * SECTOR_SIZE;
    let wrong = data
        .iter()
        .enumerate()
        .position(|(index, byte)| *byte != disk_byte(start + index));
    assert!(
        wrong.is_none(),
        "{what}: read of sector {sector} returned wrong data at byte {wrong:?}"
    );
}

/// Warms up, then calls `step` (which returns requests completed) for `budget`; returns
/// requests per second.
fn timed(warmup: Duration, budget: Duration, mut step: impl FnMut() -> u64) -> (f64, u64) {
    let start = Instant::now();
    while start.elapsed() < warmup {
        for _ in 0..64 {
            step();
        }
    }
    let start = Instant::now();
    let mut done = 0u64;
    loop {
        for _ in 0..64 {
            done += step();
        }
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return (done as f64 / elapsed.as_secs_f64(), done);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Cpus {
    driver: Option<usize>,
    device: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    runs: usize,
    warmup: Duration,
    budget: Duration,
    cpus: Cpus,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Driver {
    Manada,
    VirtioDrivers { indirect: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Case {
    driver: Driver,
    depth: usize,
    len: usize,
}

impl Case {
    fn measure(&self, settings: &Settings) -> f64 {
        match self.driver {
            Driver::Manada => measure_manada(self.depth, self.len, settings),
            Driver::VirtioDrivers { indirect } => {
                measure_virtio_drivers(self.depth, self.len, indirect, settings)
            }
        }
    }

    fn key(&self) -> String {
        let driver = match self.driver {
            Driver::Manada => "manada",
            Driver::VirtioDrivers { indirect: false } => "virtio_drivers",
            Driver::VirtioDrivers { indirect: true } => "virtio_drivers_indirect",
        };
        format!("qd{}_{}k_{}", self.depth, self.len / 1024, driver)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

struct Row {
    label: &'static str,
    depth: usize,
    ours: Case,
    theirs: Case,
}

fn main() {
    let quick = std::env::var_os("DRIVER_COMPARE_QUICK").is_some();
    let allowed = affinity::allowed();
    let cpus = match allowed.as_slice() {
        [first, second, ..] => Cpus {
            driver: Some(*first),
            device: Some(*second),
        },
        _ => Cpus {
            driver: None,
            device: None,
        },
    };
    if let Some(cpu) = cpus.driver {
        assert!(
            affinity::pin(cpu),
            "cannot pin the driver thread to CPU {cpu}"
        );
    }
    let settings = Settings {
        runs: if quick { 1 } else { 7 },
        warmup: Duration::from_millis(if quick { 5 } else { 30 }),
        budget: Duration::from_millis(if quick { 20 } else { 200 }),
        cpus,
    };

    let case = |driver, depth, len| Case { driver, depth, len };
    let manada = Driver::Manada;
    let direct = Driver::VirtioDrivers { indirect: false };
    let indirect = Driver::VirtioDrivers { indirect: true };
    let mut rows = Vec::new();
    for (label, depth, theirs) in [
        ("read_blocks, direct", 1, direct),
        ("read_blocks, indirect", 1, indirect),
        ("read_blocks_nb, direct", 4, direct),
        ("read_blocks_nb, indirect", 16, indirect),
    ] {
        for len in [4096, 65536] {
            rows.push(Row {
                label,
                depth,
                ours: case(manada, depth, len),
                theirs: case(theirs, depth, len),
            });
        }
    }
    let mut cases: Vec<Case> = Vec::new();
    for row in &rows {
        for one in [row.ours, row.theirs] {
            if !cases.contains(&one) {
                cases.push(one);
            }
        }
    }

    let started = Instant::now();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..settings.runs {
        for (one, samples) in cases.iter().zip(samples.iter_mut()) {
            samples.push(one.measure(&settings));
        }
    }
    let figure = |wanted: &Case| -> (f64, f64, f64) {
        let index = cases
            .iter()
            .position(|one| one == wanted)
            .expect("measured");
        let values = &samples[index];
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(0.0, f64::max);
        (median(values), low, high)
    };

    println!(
        "virtio-blk reads, own driver (manada) vs virtio-drivers 0.13: requests/s, median of {} \
         run(s) of {} ms; driver on CPU {}, RAM-disk device thread on CPU {}",
        settings.runs,
        settings.budget.as_millis(),
        cpus.driver.map_or("?".to_string(), |cpu| cpu.to_string()),
        cpus.device.map_or("?".to_string(), |cpu| cpu.to_string()),
    );
    println!(
        "{:<4} {:>6}  {:<26} {:>18} {:>18} {:>9} {:>10} {:>10} {:>9}",
        "qd",
        "size",
        "virtio-drivers API",
        "manada req/s",
        "v-d req/s",
        "ratio",
        "ns manada",
        "ns v-d",
        "Δ ns"
    );
    let mut records: Vec<(String, f64, &str)> = Vec::new();
    let spread = |(median, low, high): (f64, f64, f64)| {
        let percent = if median > 0.0 {
            (high - low) / median * 50.0
        } else {
            0.0
        };
        format!("{median:>10.0} ±{percent:>4.1}%")
    };
    for row in &rows {
        let ours = figure(&row.ours);
        let theirs = figure(&row.theirs);
        let ratio = ours.0 / theirs.0;
        let ns_ours = 1e9 / ours.0;
        let ns_theirs = 1e9 / theirs.0;
        println!(
            "{:<4} {:>4} K  {:<26} {:>18} {:>18} {:>8.2}x {:>10.0} {:>10.0} {:>9.0}",
            row.depth,
            row.ours.len / 1024,
            row.label,
            spread(ours),
            spread(theirs),
            ratio,
            ns_ours,
            ns_theirs,
            ns_theirs - ns_ours,
        );
        for (one, value) in [(row.ours, ours.0), (row.theirs, theirs.0)] {
            let name = format!("virtio_blk_{}", one.key());
            if !records.iter().any(|record| record.0 == name) {
                records.push((name, value, "req/s"));
            }
        }
        records.push((
            format!(
                "virtio_blk_{}_ratio",
                row.theirs
                    .key()
                    .replace("virtio_drivers", "manada_over_virtio_drivers")
            ),
            ratio,
            "x",
        ));
    }
    println!(
        "ratio = manada / virtio-drivers (above 1: manada faster). ns = 1e9 / (req/s): the \
         time per request, device included. Δ ns = v-d minus manada: at depth 1 the \
         driver-side difference (same device work; with indirect, plus the device's extra \
         table fetch); deeper, the device is the bottleneck and driver work overlaps it. \
         ± is half the min-max spread. Total {:.1} s.",
        started.elapsed().as_secs_f64()
    );

    if let Some(path) = std::env::var_os("DRIVER_COMPARE_JSON") {
        let body: Vec<String> = records
            .iter()
            .map(|(name, value, unit)| {
                format!("  {{\"name\": \"{name}\", \"value\": {value:.4}, \"unit\": \"{unit}\"}}")
            })
            .collect();
        let json = format!("[\n{}\n]\n", body.join(",\n"));
        std::fs::write(&path, json).expect("write DRIVER_COMPARE_JSON");
        println!("wrote {}", path.to_string_lossy());
    }
}
