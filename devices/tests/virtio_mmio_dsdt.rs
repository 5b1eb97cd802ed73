//! The DSDT scan on the real tables of QEMU 7.2's `-machine microvm,acpi=on` (the AML
//! after the 36-byte header, dumped by a kernel booted with those devices), then on
//! tables mutated at random: never a panic, never a hang.

use devices::virtio_mmio::dsdt::{self, AmlError};
use devices::virtio_mmio::{DeviceWindow, Source};

mod common;
use common::Rng;

/// `-device virtio-net-device` then `-device virtio-blk-device`.
const NET_BLK: &[u8] = include_bytes!("data/microvm-dsdt-net-blk.aml");
/// Two `virtio-blk-device`s, then a `virtio-net-device`.
const BLK_BLK_NET: &[u8] = include_bytes!("data/microvm-dsdt-blk-blk-net.aml");

fn window(base: u64, interrupt: u32) -> DeviceWindow {
    DeviceWindow {
        base,
        size: 0x200,
        interrupt: Some(interrupt),
        source: Source::Acpi,
    }
}

fn found(aml: &[u8]) -> Vec<(String, Result<DeviceWindow, AmlError>)> {
    dsdt::devices(aml)
        .map(|device| (device.name().to_string(), device.window))
        .collect()
}

#[test]
fn finds_the_virtio_devices_of_qemu_microvm_in_attach_order() {
    // QEMU gives the first device the top transport; the DSDT lists them in that order,
    // which is the order they were attached.
    assert_eq!(
        found(NET_BLK),
        [
            ("VR23".to_string(), Ok(window(0xfeb0_2e00, 47))),
            ("VR22".to_string(), Ok(window(0xfeb0_2c00, 46))),
        ]
    );
    assert_eq!(
        found(BLK_BLK_NET),
        [
            ("VR23".to_string(), Ok(window(0xfeb0_2e00, 47))),
            ("VR22".to_string(), Ok(window(0xfeb0_2c00, 46))),
            ("VR21".to_string(), Ok(window(0xfeb0_2a00, 45))),
        ]
    );
}

#[test]
fn skips_the_other_devices_of_the_table() {
    // FWCF (QEMU0002), COM1 and RTC (EISA ids), GED (ACPI0013) with an operation region,
    // a field and a method, PWRB: all present in the real table, none taken.
    for name in [&b"FWCF"[..], b"COM1", b"RTC_", b"GED_", b"PWRB"] {
        assert!(NET_BLK.windows(4).any(|w| w == name));
    }
    assert_eq!(found(NET_BLK).len(), 2);
    assert_eq!(found(&[]).len(), 0);
    assert_eq!(found(&NET_BLK[..0x100]).len(), 0);
}

#[test]
fn a_table_cut_short_loses_only_the_cut_devices() {
    // Cut inside VR22: VR23 is still whole; VR22's package now runs past the end.
    let vr22 = NET_BLK
        .windows(4)
        .position(|w| w == b"VR22")
        .expect("VR22 in the table");
    assert_eq!(
        found(&NET_BLK[..vr22 + 20]),
        [("VR23".to_string(), Ok(window(0xfeb0_2e00, 47)))]
    );
}

#[test]
fn a_device_with_bad_resources_is_reported_not_skipped() {
    // Turn VR23's Memory32Fixed descriptor (0x86) into an unknown large item (0x8F):
    // the device is still ours (its _HID says so) but names no window.
    let mut table = NET_BLK.to_vec();
    let descriptor = table
        .windows(3)
        .position(|w| w == [0x86, 0x09, 0x00])
        .expect("Memory32Fixed in the table");
    table[descriptor] = 0x8F;
    let devices = found(&table);
    assert_eq!(devices[0], ("VR23".to_string(), Err(AmlError::NoWindow)));
    assert_eq!(devices[1].1, Ok(window(0xfeb0_2c00, 46)));
    // A different _HID is not a virtio-mmio device at all.
    let mut table = NET_BLK.to_vec();
    let hid = table
        .windows(8)
        .position(|w| w == b"LNRO0005")
        .expect("_HID in the table");
    table[hid + 7] = b'6';
    assert_eq!(found(&table).len(), 1);
}

#[test]
fn mutated_tables_never_panic_and_stay_bounded() {
    let mut rng = Rng::new(18);
    for round in 0..10_000 {
        let mut table = if round % 2 == 0 {
            NET_BLK.to_vec()
        } else {
            BLK_BLK_NET.to_vec()
        };
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(table.len() as u64) as usize;
            table[at] = match rng.below(4) {
                0 => 0x5B,
                1 => 0x82,
                2 => 0xFF,
                _ => rng.next_u64() as u8,
            };
        }
        if rng.below(4) == 0 {
            let keep = rng.below(table.len() as u64) as usize;
            table.truncate(keep);
        }
        for device in dsdt::devices(&table) {
            if let Ok(window) = device.window {
                assert!(window.size > 0 && window.base.checked_add(window.size).is_some());
            }
        }
    }
}

#[test]
fn a_table_built_to_be_slow_ends_within_the_budget() {
    // Names whose buffers end in a DeviceOp, a package length reaching the end of the
    // table and a name: every such false candidate's body is every Name after it, so a
    // scan without a budget would take 100,000^2 / 2 steps.
    const UNITS: usize = 100_000;
    const UNIT: usize = 19;
    let total = UNITS * UNIT;
    let mut table = Vec::with_capacity(total);
    for unit in 0..UNITS {
        let length = total - (unit * UNIT + 11);
        table.extend([0x08, b'N', b'A', b'M', b'E', 0x11, 13, 0x0A, 10, 0x5B, 0x82]);
        table.extend([
            0xC0 | (length & 0x0F) as u8,
            (length >> 4) as u8,
            (length >> 12) as u8,
            (length >> 20) as u8,
        ]);
        table.extend(b"WXYZ");
    }
    assert_eq!(table.len(), total);
    let started = std::time::Instant::now();
    let results: Vec<_> = dsdt::devices(&table).map(|device| device.window).collect();
    assert_eq!(results, [Err(AmlError::TooComplex)]);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
