//! The read path's requests: a large sequential read of a contiguous file must reach
//! the device in large requests, not one per cluster or per call.

mod common;

use common::*;
use fs::OpenOptions;

/// Returns (device reads, bytes read) to read `/big.bin` in `piece`-byte calls.
fn read_in_pieces(volume: &mut TestVolume, piece: usize, expected: &[u8]) -> (u64, u64) {
    let before = volume.cache_stats();
    let mut file = volume.open("/big.bin", OpenOptions::read()).unwrap();
    let mut buffer = vec![0u8; piece];
    let mut at = 0;
    loop {
        let count = volume.read(&mut file, &mut buffer).unwrap();
        if count == 0 {
            break;
        }
        assert!(buffer[..count] == expected[at..at + count]);
        at += count;
    }
    assert_eq!(at, expected.len());
    let after = volume.cache_stats();
    (
        after.device_reads - before.device_reads,
        after.bytes_read - before.bytes_read,
    )
}

#[test]
fn sequential_reads_use_large_requests() {
    let dir = temp_dir("read-path");
    let image = dir.join("big.img");
    mkfs(&image, 65536, &[]);
    let source = dir.join("source");
    std::fs::create_dir_all(&source).unwrap();
    let data = Rng::new(8).bytes(16 << 20);
    std::fs::write(source.join("big.bin"), &data).unwrap();
    mcopy_in(&image, &source);
    for piece in [4096, 64 << 10, 1 << 20] {
        let mut volume = mount_image(&image);
        let (requests, bytes) = read_in_pieces(&mut volume, piece, &data);
        println!(
            "16 MiB in {piece}-byte calls: {requests} device reads, {bytes} bytes, {} bytes per request",
            bytes / requests.max(1)
        );
        // The file is contiguous: one request per call, straight into the caller's
        // buffer (nothing read twice, nothing through the sector cache).
        assert_eq!(bytes, 16 << 20, "{piece}-byte calls");
        assert_eq!(requests, (16 << 20) / piece as u64, "{piece}-byte calls");
    }
}
