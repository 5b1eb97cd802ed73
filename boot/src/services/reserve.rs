//! The service reserve: memory set aside at boot, outside every core's heap, handed to
//! the devices as DMA memory.

use devices::virtio::dma::DmaRegion;
use percore::memory;
use percore::{println, BootInfo};

const MIB: u64 = 1 << 20;

/// All RAM and the usable part of it, in bytes, recorded by the plan for the message
/// that says how much `--mem` a device would need.
pub static MEMORY_TOTALS: spin::Once<(u64, u64)> = spin::Once::new();

/// Hands out DMA memory from the service reserve, in order; never the same byte twice.
pub struct ReserveCursor {
    start: u64,
    next: u64,
    end: u64,
}

impl ReserveCursor {
    /// Returns a cursor at the start of the reserve `info` records.
    pub fn new(info: &BootInfo) -> Self {
        let reserve = info.service_reserve.unwrap_or_default();
        ReserveCursor {
            start: reserve.start,
            next: reserve.start,
            end: reserve.end,
        }
    }

    /// Says that the reserve has no room for `kind` at `location` (`size` bytes), and how
    /// much guest memory (`--mem`) would give it room.
    pub fn report_full(&self, service: &str, kind: &str, location: &str, size: usize) {
        let (ram, usable) = *MEMORY_TOTALS.get().unwrap_or(&(0, 0));
        let needed = self.next - self.start + size as u64;
        match memory::usable_for_reserve(needed) {
            Some(usable_needed) => println!(
                "manada: {service}: the device-service reserve ({} KiB) has no room for {kind} {location} ({} KiB); run with --mem {}M or more",
                (self.end - self.start) / 1024,
                size / 1024,
                (ram - usable + usable_needed).div_ceil(MIB)
            ),
            None => println!("manada: {service}: no reserved memory left for {kind} {location}"),
        }
    }

    /// Returns `size` zeroed bytes of the reserve as a DMA region, or `None` when it ran out.
    pub fn take(&mut self, size: usize) -> Option<DmaRegion> {
        if self.next + size as u64 > self.end {
            return None;
        }
        let start = self.next;
        self.next += size as u64;
        // SAFETY: this range of the service reserve is handed out once, to one device,
        // and used by nothing else; the reserve is identity-mapped RAM.
        unsafe {
            core::ptr::write_bytes(start as *mut u8, 0, size);
            DmaRegion::from_raw(start as *mut u8, size).ok()
        }
    }
}
