//! The service reserve: memory set aside at boot, outside every core's heap, handed to
//! the devices as DMA memory.

use devices::virtio::dma::DmaRegion;
use percore::BootInfo;

/// Hands out DMA memory from the service reserve, in order; never the same byte twice.
pub struct ReserveCursor {
    next: u64,
    end: u64,
}

impl ReserveCursor {
    /// Returns a cursor at the start of the reserve `info` records.
    pub fn new(info: &BootInfo) -> Self {
        let reserve = info.service_reserve.unwrap_or_default();
        ReserveCursor {
            next: reserve.start,
            end: reserve.end,
        }
    }

    /// Returns the bytes of the reserve not handed out yet.
    pub fn left(&self) -> u64 {
        self.end.saturating_sub(self.next)
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
