//! The block device trait the file system runs on, and a RAM disk for tests.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::IoError;

/// The size of one sector in bytes; every `BlockDevice` uses it.
pub const SECTOR_SIZE: usize = 512;

/// A device of 512-byte sectors, addressed by logical block address.
///
/// Buffers passed to `read` and `write` hold a whole number of sectors; a longer buffer
/// covers consecutive sectors starting at `lba`.
pub trait BlockDevice {
    /// Returns the number of sectors on the device.
    fn sector_count(&self) -> u64;
    /// Reads `buf.len() / 512` sectors starting at `lba` into `buf`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `buf.len() / 512` sectors starting at `lba` from `buf`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError>;
    /// Returns once every completed write is durable.
    fn flush(&mut self) -> Result<(), IoError>;
}

impl<T: BlockDevice + ?Sized> BlockDevice for alloc::boxed::Box<T> {
    fn sector_count(&self) -> u64 {
        (**self).sector_count()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        (**self).write(lba, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        (**self).flush()
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for &mut T {
    fn sector_count(&self) -> u64 {
        (**self).sector_count()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        (**self).write(lba, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        (**self).flush()
    }
}

/// Returns the byte range of a request, or an error if it is not sector-sized or
/// reaches past `total_bytes`.
fn byte_range(
    lba: u64,
    len: usize,
    total_bytes: usize,
) -> Result<core::ops::Range<usize>, IoError> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(IoError::OutOfRange);
    }
    let start = usize::try_from(lba)
        .ok()
        .and_then(|lba| lba.checked_mul(SECTOR_SIZE))
        .ok_or(IoError::OutOfRange)?;
    let end = start.checked_add(len).ok_or(IoError::OutOfRange)?;
    if end > total_bytes {
        return Err(IoError::OutOfRange);
    }
    Ok(start..end)
}

/// A block device held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RamDisk {
    bytes: Vec<u8>,
}

impl RamDisk {
    /// Returns a zero-filled disk of `sectors` sectors.
    pub fn new(sectors: usize) -> Self {
        RamDisk {
            bytes: vec![0; sectors * SECTOR_SIZE],
        }
    }

    /// Returns a disk holding `bytes`, padded with zeros to a whole number of sectors.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Self {
        let padded = bytes.len().div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
        bytes.resize(padded, 0);
        RamDisk { bytes }
    }

    /// Returns the disk's contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Returns the disk's contents, consuming the disk.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl BlockDevice for RamDisk {
    fn sector_count(&self) -> u64 {
        (self.bytes.len() / SECTOR_SIZE) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let range = byte_range(lba, buf.len(), self.bytes.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), IoError> {
        let range = byte_range(lba, buf.len(), self.bytes.len())?;
        self.bytes[range].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_disk_reads_back_writes_and_rejects_out_of_range() {
        let mut disk = RamDisk::new(4);
        assert_eq!(disk.sector_count(), 4);
        let data = [7u8; 1024];
        disk.write(2, &data).unwrap();
        let mut back = [0u8; 1024];
        disk.read(2, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(disk.read(3, &mut back), Err(IoError::OutOfRange));
        assert_eq!(disk.write(0, &[0u8; 100]), Err(IoError::OutOfRange));
        assert_eq!(disk.read(u64::MAX, &mut back), Err(IoError::OutOfRange));
    }
}
