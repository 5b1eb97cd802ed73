//! The interrupt vectors the kernel uses besides the CPU's exceptions: the IDT
//! (`interrupts`) installs their handlers, the local APIC (`apic`) and the devices send
//! them.

/// The vector of the wake-up IPI that ends an idle core's `hlt`.
pub const WAKEUP_VECTOR: u8 = 0xF0;
/// The vector of each core's APIC timer (it only ends a `hlt`, like the wake-up IPI).
pub const TIMER_VECTOR: u8 = 0xEF;
/// The vector of the network device's MSI-X interrupt, sent to the net core.
pub const DEVICE_VECTOR: u8 = 0xE0;
/// The APIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xFF;
