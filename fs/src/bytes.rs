//! Little-endian fields of on-disk structures (boot sectors, partition tables,
//! directory entries, FATs): every FAT number is stored little-endian.

/// Returns the little-endian `u16` at `offset` of `bytes`.
pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

/// Returns the little-endian `u32` at `offset` of `bytes`.
pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ])
}
