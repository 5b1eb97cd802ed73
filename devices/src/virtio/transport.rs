//! The transport interface the virtio drivers use, the same over PCI and MMIO: the
//! registers each transport provides, and the device initialisation sequence (virtio 1.2,
//! section 3.1.1) written once on top of them, every wait in it bounded.

use core::fmt;

use super::{Transport, FEATURE_VERSION_1};

/// Device status bit ACKNOWLEDGE: the driver has noticed the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status bit DRIVER: the driver knows how to drive it.
pub const STATUS_DRIVER: u8 = 2;
/// Device status bit DRIVER_OK: the driver is ready.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status bit FEATURES_OK: the driver has acknowledged the features it understands.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status bit FAILED: the driver gave up on the device.
pub const STATUS_FAILED: u8 = 128;

/// Status reads after a reset before the device counts as stuck. Every read is a VM exit
/// (microseconds each), so this is far more than the instant reset QEMU and Firecracker do,
/// and still a bounded stall at boot.
pub const RESET_POLLS: u32 = 100_000;
/// Times the device configuration is read again because its generation changed meanwhile,
/// before the device counts as misbehaving.
pub const CONFIG_RETRIES: u32 = 64;

/// Why a device could not be driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// PCI: a required capability (common, notify or device configuration) is missing.
    MissingCapability(u8),
    /// PCI: a capability points at a BAR that is not a memory BAR, or past its end.
    BadCapability(u8),
    /// The device does not offer `VIRTIO_F_VERSION_1`.
    LegacyOnly,
    /// The device refused the features we asked for.
    FeaturesRefused,
    /// The queue does not exist or is already in use.
    NoSuchQueue(u16),
    /// The queue size asked for is zero or larger than the device allows.
    BadQueueSize(u16),
    /// The device still reported a non-zero status after [`RESET_POLLS`] reads.
    ResetTimeout,
    /// The configuration generation changed on every one of [`CONFIG_RETRIES`] reads.
    ConfigUnstable,
    /// MMIO: the magic value is not "virt" (the window holds no virtio device).
    NotVirtio(u32),
    /// MMIO: version 1, the legacy interface, which this driver does not speak.
    LegacyInterface,
    /// MMIO: a version other than 2 (modern) or 1 (legacy).
    UnknownVersion(u32),
    /// MMIO: device id 0, a transport with no device behind it.
    NoDevice,
    /// MMIO: the window is smaller than the control registers.
    WindowTooSmall(usize),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::MissingCapability(kind) => {
                write!(f, "virtio-pci capability {kind} missing")
            }
            TransportError::BadCapability(kind) => {
                write!(
                    f,
                    "virtio-pci capability {kind} points outside a memory BAR"
                )
            }
            TransportError::LegacyOnly => f.write_str("device does not offer VIRTIO_F_VERSION_1"),
            TransportError::FeaturesRefused => f.write_str("device refused the features"),
            TransportError::NoSuchQueue(index) => {
                write!(f, "queue {index} does not exist or is in use")
            }
            TransportError::BadQueueSize(size) => write!(f, "queue size {size} not accepted"),
            TransportError::ResetTimeout => write!(
                f,
                "device did not finish its reset within {RESET_POLLS} status reads"
            ),
            TransportError::ConfigUnstable => write!(
                f,
                "configuration generation changed on each of {CONFIG_RETRIES} reads"
            ),
            TransportError::NotVirtio(magic) => {
                write!(f, "magic value {magic:#010x} is not a virtio-mmio device")
            }
            TransportError::LegacyInterface => f.write_str(
                "legacy virtio-mmio interface (version 1); only version 2 is supported \
                 (QEMU: -global virtio-mmio.force-legacy=false)",
            ),
            TransportError::UnknownVersion(version) => {
                write!(f, "unknown virtio-mmio version {version}")
            }
            TransportError::NoDevice => f.write_str("no device behind this virtio-mmio transport"),
            TransportError::WindowTooSmall(length) => {
                write!(f, "register window of {length} bytes is too small")
            }
        }
    }
}

/// A virtio transport as the drivers use it.
///
/// A transport provides the register-level methods; the provided methods are the
/// initialisation sequence of virtio 1.2 section 3.1.1 on top of them, so every
/// transport resets, negotiates and reads its configuration the same, bounded, way.
pub trait DeviceTransport: Transport {
    /// Returns the device status register.
    fn status(&self) -> u8;

    /// Writes the device status register (0 resets the device).
    fn set_status(&mut self, status: u8);

    /// Returns 32 bits of the device's features: `word` 0 is bits 0-31, 1 is bits 32-63.
    fn device_features(&mut self, word: u32) -> u32;

    /// Writes 32 bits of the driver's features, `word` as in [`Self::device_features`].
    fn set_driver_features(&mut self, word: u32, value: u32);

    /// Returns the configuration generation, which changes when the device changes its
    /// configuration.
    fn config_generation(&self) -> u32;

    /// Returns the bytes of device configuration the transport can reach.
    fn config_len(&self) -> usize;

    /// Returns the device configuration byte at `offset` (below [`Self::config_len`]).
    fn config_byte(&self, offset: usize) -> u8;

    /// Returns the largest size queue `index` supports (0: no such queue).
    fn max_queue_size(&mut self, index: u16) -> u16;

    /// Gives queue `index` its size and ring addresses and enables it (polled: no
    /// interrupt vector).
    fn enable_queue(
        &mut self,
        index: u16,
        size: u16,
        descriptors: u64,
        driver: u64,
        device: u64,
    ) -> Result<(), TransportError>;

    /// Returns the interrupt status and acknowledges it.
    fn interrupt_status(&mut self) -> u8;

    /// Resets the device and waits, at most [`RESET_POLLS`] reads, until it reads back 0.
    fn reset(&mut self) -> Result<(), TransportError> {
        self.set_status(0);
        for _ in 0..RESET_POLLS {
            if self.status() == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(TransportError::ResetTimeout)
    }

    /// Adds `bits` to the device status.
    fn add_status(&mut self, bits: u8) {
        let status = self.status();
        self.set_status(status | bits);
    }

    /// Resets the device and negotiates features: offers `choose(device features)`,
    /// which must keep `VIRTIO_F_VERSION_1`. Returns the features agreed. On an error
    /// the device is left marked FAILED.
    fn negotiate(&mut self, choose: impl FnOnce(u64) -> u64) -> Result<u64, TransportError> {
        self.reset()?;
        self.add_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let offered = u64::from(self.device_features(0)) | u64::from(self.device_features(1)) << 32;
        if offered & FEATURE_VERSION_1 == 0 {
            self.add_status(STATUS_FAILED);
            return Err(TransportError::LegacyOnly);
        }
        let wanted = (choose(offered) & offered) | FEATURE_VERSION_1;
        self.set_driver_features(0, wanted as u32);
        self.set_driver_features(1, (wanted >> 32) as u32);
        self.add_status(STATUS_FEATURES_OK);
        if self.status() & STATUS_FEATURES_OK == 0 {
            self.add_status(STATUS_FAILED);
            return Err(TransportError::FeaturesRefused);
        }
        Ok(wanted)
    }

    /// Copies the device configuration into `buffer` (as much as the transport has; the
    /// rest is zeroed), again if the device changed it meanwhile, at most
    /// [`CONFIG_RETRIES`] times.
    fn read_device_config(&self, buffer: &mut [u8]) -> Result<(), TransportError> {
        let length = buffer.len().min(self.config_len());
        buffer[length..].fill(0);
        for _ in 0..CONFIG_RETRIES {
            let before = self.config_generation();
            for (offset, byte) in buffer[..length].iter_mut().enumerate() {
                *byte = self.config_byte(offset);
            }
            if self.config_generation() == before {
                return Ok(());
            }
        }
        Err(TransportError::ConfigUnstable)
    }

    /// Tells the device the driver is ready.
    fn driver_ok(&mut self) {
        self.add_status(STATUS_DRIVER_OK);
    }
}
