//! The TSC rate and the start-up delays, decided from what the processor says about itself:
//! a rate stated by CPUID (the hypervisor leaf, Intel's leaves 0x15 and 0x16), or one
//! measured over a short window against a reference clock, with the error bound of that
//! measurement; and whether the application processors need the old INIT wait.
//!
//! Pure logic: `boot` reads CPUID and the clocks and passes the values in, so every
//! decision and every sum is tested on the host with made-up processors and clocks.

/// The slowest TSC this kernel expects: 500 MHz (every x86-64 processor's TSC runs at
/// its base clock, above 1 GHz). A pause between two reads of a reference clock longer
/// than half its wrap at this rate could hide a wrap, so a window with such a pause is
/// refused; the PIT, which wraps every 55 ms, may be left 27 ms between reads.
pub const SLOWEST_TSC_HZ: u64 = 500_000_000;

/// The processor's maker, from CPUID leaf 0's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    Amd,
    Hygon,
    Other,
}

impl Vendor {
    /// Returns the vendor whose signature is in `ebx`, `edx`, `ecx` of CPUID leaf 0
    /// ("GenuineIntel", "AuthenticAMD", "HygonGenuine": four ASCII bytes a register,
    /// little-endian).
    pub fn from_signature(ebx: u32, edx: u32, ecx: u32) -> Vendor {
        match (ebx, edx, ecx) {
            (0x756E_6547, 0x4965_6E69, 0x6C65_746E) => Vendor::Intel,
            (0x6874_7541, 0x6974_6E65, 0x444D_4163) => Vendor::Amd,
            (0x6F67_7948, 0x6E65_476E, 0x656E_6975) => Vendor::Hygon,
            _ => Vendor::Other,
        }
    }
}

/// Returns the display family from `eax` of CPUID leaf 1 (the extended family is added
/// only when the base family is 0xF, as both Intel and AMD define it).
pub fn family(leaf_1_eax: u32) -> u32 {
    let base = (leaf_1_eax >> 8) & 0xF;
    if base == 0xF {
        base + ((leaf_1_eax >> 20) & 0xFF)
    } else {
        base
    }
}

/// What CPUID told the boot core, as far as the TSC and start-up are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidFacts {
    pub vendor: Option<Vendor>,
    /// Display family (see [`family`]).
    pub family: u32,
    /// Highest basic leaf (`eax` of leaf 0).
    pub max_leaf: u32,
    /// Leaf 0x15: `eax` (denominator), `ebx` (numerator), `ecx` (crystal Hz), when
    /// `max_leaf` reaches it.
    pub leaf_15: [u32; 3],
    /// Leaf 0x16 `eax`: the processor's base frequency in MHz, when `max_leaf` reaches it.
    pub base_mhz: u32,
    /// CPUID leaf 1 `ecx` bit 31: running under a hypervisor.
    pub hypervisor: bool,
    /// Highest hypervisor leaf (`eax` of leaf 0x4000_0000), under a hypervisor.
    pub max_hypervisor_leaf: u32,
    /// Leaf 0x4000_0010 `eax` (TSC kHz) and `ebx` (APIC bus kHz), when offered.
    pub hypervisor_timing: [u32; 2],
}

/// Who stated the TSC rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stated {
    /// The hypervisor's timing leaf 0x4000_0010 (KVM, QEMU with `vmware-cpuid-freq`).
    Hypervisor,
    /// Intel's leaf 0x15: crystal clock times the TSC ratio.
    Crystal,
    /// Intel's leaf 0x16: the base frequency, which the TSC runs at.
    BaseFrequency,
}

impl Stated {
    /// Returns the name shown on the console.
    pub fn name(self) -> &'static str {
        match self {
            Stated::Hypervisor => "hypervisor leaf",
            Stated::Crystal => "cpuid 0x15",
            Stated::BaseFrequency => "cpuid 0x16",
        }
    }
}

impl CpuidFacts {
    /// Returns the TSC rate in Hz that the hypervisor or the processor states, and who
    /// stated it, or `None` when nothing does: then it must be measured.
    ///
    /// The hypervisor's leaf comes first (it is what the guest's TSC really runs at).
    /// Leaves 0x15 and 0x16 are Intel's; as in Linux, the TSC runs at the crystal rate
    /// times the ratio of 0x15, or else at the base frequency of 0x16.
    pub fn stated_tsc_hz(&self) -> Option<(u64, Stated)> {
        if self.hypervisor && self.max_hypervisor_leaf >= 0x4000_0010 {
            let khz = u64::from(self.hypervisor_timing[0]);
            if khz != 0 {
                return Some((khz * 1000, Stated::Hypervisor));
            }
        }
        if self.vendor != Some(Vendor::Intel) {
            return None;
        }
        let [denominator, numerator, crystal_hz] = self.leaf_15.map(u64::from);
        if self.max_leaf >= 0x15 && denominator != 0 && numerator != 0 && crystal_hz != 0 {
            return Some((crystal_hz * numerator / denominator, Stated::Crystal));
        }
        // Without a crystal rate, Linux derives the crystal from the base frequency and
        // multiplies it back by the same ratio: that is the base frequency.
        let base_hz = u64::from(self.base_mhz) * 1_000_000;
        (self.max_leaf >= 0x16 && base_hz != 0).then_some((base_hz, Stated::BaseFrequency))
    }

    /// Returns the local APIC timer's input clock in Hz when the hypervisor states it
    /// (leaf 0x4000_0010 `ebx`), else `None`: then it is measured against the TSC.
    pub fn stated_apic_hz(&self) -> Option<u64> {
        let khz = u64::from(self.hypervisor_timing[1]);
        (self.hypervisor && self.max_hypervisor_leaf >= 0x4000_0010 && khz != 0)
            .then_some(khz * 1000)
    }

    /// Returns true when an application processor needs the 10 ms wait between INIT and
    /// STARTUP that the MultiProcessor Specification asks for. As in Linux, Intel
    /// processors from family 6 on, AMD from family 0xF and Hygon from 0x18 do not; nor
    /// does a virtual processor, whose INIT is done when the hypervisor says so.
    pub fn needs_init_delay(&self) -> bool {
        let modern = match self.vendor {
            Some(Vendor::Intel) => self.family >= 6,
            Some(Vendor::Amd) => self.family >= 0xF,
            Some(Vendor::Hygon) => self.family >= 0x18,
            Some(Vendor::Other) | None => false,
        };
        !(modern || self.hypervisor)
    }

    /// Returns true when a second STARTUP should follow the first for a processor that
    /// has not started yet, as the MultiProcessor Specification asks: on bare processors.
    /// A hypervisor delivers every STARTUP it is sent (KVM, QEMU), and under QEMU's TCG
    /// a second one costs every core that did start an exit and the emulator's lock.
    pub fn needs_second_startup(&self) -> bool {
        !self.hypervisor
    }
}

/// A reference clock: a counter of known rate and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// Counts per second.
    pub hz: u64,
    /// Width of the counter in bits (it wraps at `2^bits`).
    pub bits: u32,
    /// True for a counter that counts down (the PIT).
    pub counts_down: bool,
}

impl Reference {
    /// The PIT's channel 0 in rate-generator mode with a 65536 reload: 16 bits, down.
    pub const PIT: Reference = Reference {
        hz: 1_193_182,
        bits: 16,
        counts_down: true,
    };

    /// Returns the ACPI PM timer (3.579545 MHz), 24 or 32 bits wide.
    pub fn pm_timer(is_32_bit: bool) -> Reference {
        Reference {
            hz: 3_579_545,
            bits: if is_32_bit { 32 } else { 24 },
            counts_down: false,
        }
    }

    /// Returns an HPET main counter (read as its low 32 bits) whose period is
    /// `femtoseconds` per count, or `None` for a period the HPET specification does not
    /// allow (0, or above 100 ns).
    pub fn hpet(femtoseconds: u32) -> Option<Reference> {
        (femtoseconds != 0 && femtoseconds <= 100_000_000).then(|| Reference {
            hz: 1_000_000_000_000_000 / u64::from(femtoseconds),
            bits: 32,
            counts_down: false,
        })
    }

    fn mask(&self) -> u64 {
        if self.bits >= 64 {
            u64::MAX
        } else {
            (1 << self.bits) - 1
        }
    }

    /// Returns how many counts passed from reading `earlier` to reading `later`,
    /// assuming the counter wrapped at most once.
    pub fn counts_between(&self, earlier: u64, later: u64) -> u64 {
        let (from, to) = if self.counts_down {
            (later, earlier)
        } else {
            (earlier, later)
        };
        to.wrapping_sub(from) & self.mask()
    }

    /// Returns the most TSC ticks two reads may be apart so that the counter surely
    /// did not wrap in between, whatever the TSC rate (half a wrap at [`SLOWEST_TSC_HZ`]).
    pub fn longest_pause(&self) -> u64 {
        let wrap = u128::from(self.mask()) + 1;
        (wrap * u128::from(SLOWEST_TSC_HZ) / u128::from(self.hz.max(1)) / 2)
            .min(u128::from(u64::MAX)) as u64
    }
}

/// One read of a reference clock between two TSC reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub tsc_before: u64,
    pub value: u64,
    pub tsc_after: u64,
}

impl Reading {
    /// Returns the TSC ticks the read may have happened at any point of.
    pub fn spread(&self) -> u64 {
        self.tsc_after.saturating_sub(self.tsc_before)
    }

    /// Returns the middle of the read's TSC bracket.
    pub fn tsc(&self) -> u64 {
        self.tsc_before + self.spread() / 2
    }

    /// Returns the reading of `candidates` with the tightest TSC bracket.
    pub fn tightest(candidates: &[Reading]) -> Option<Reading> {
        candidates.iter().copied().min_by_key(Reading::spread)
    }
}

/// Why a calibration window gave no rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// Two reads were so far apart that the reference may have wrapped unseen (the
    /// processor was busy elsewhere, e.g. its host thread was descheduled).
    Paused,
    /// The reference did not move, or the TSC did not: not a working clock.
    Stopped,
}

/// A rate measured over one window, with how far off it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// The TSC rate in Hz.
    pub hz: u64,
    /// The window's length in reference counts.
    pub counts: u64,
    /// The window's length in TSC ticks.
    pub ticks: u64,
    /// The error bound in parts per million: half of each end's TSC bracket, plus one
    /// reference count (the two reads' quantization together stay within one count).
    pub error_ppm: u64,
}

impl Measurement {
    /// Returns the window's length in microseconds.
    pub fn micros(&self, reference: &Reference) -> u64 {
        self.counts * 1_000_000 / reference.hz.max(1)
    }

    /// Returns how many ticks of a second counter that counted `other_ticks` over the
    /// same window run per second (the local APIC timer, measured alongside).
    pub fn rate_of(&self, other_ticks: u64) -> u64 {
        (u128::from(other_ticks) * u128::from(self.hz) / u128::from(self.ticks.max(1))) as u64
    }
}

/// Counts a window must hold before a long pause is unfolded with the rate so far
/// (1024: the rate's own error, about 0.1 %, then keeps a 64-wrap pause within a
/// sixteenth of a wrap).
pub const UNFOLD_AFTER: u64 = 1024;
/// The longest pause unfolded, in wraps of the counter (3.5 s on the PIT).
pub const UNFOLD_WRAPS: u64 = 64;

/// A calibration window in progress: opened with one reading, followed through polls
/// (so wraps are counted), closed with another reading.
#[derive(Debug, Clone)]
pub struct Window {
    reference: Reference,
    start: Reading,
    last_value: u64,
    last_tsc: u64,
    counts: u64,
    paused: bool,
}

impl Window {
    /// Returns a window on `reference` that starts at `start`.
    pub fn open(reference: Reference, start: Reading) -> Window {
        Window {
            reference,
            start,
            last_value: start.value,
            last_tsc: start.tsc_after,
            counts: 0,
            paused: false,
        }
    }

    /// Records a read of the reference (`value`, right after TSC `tsc`) and returns the
    /// counts since the window opened.
    ///
    /// After a pause longer than [`Reference::longest_pause`] the counter may have
    /// wrapped unseen. Once the window holds [`UNFOLD_AFTER`] counts, the rate so far
    /// (good to a few hundred ppm) says how many counts the pause took, to well within
    /// half a wrap: the wraps are added back. Earlier, or after a pause too long for
    /// that, the window is refused ([`WindowError::Paused`]).
    pub fn poll(&mut self, value: u64, tsc: u64) -> u64 {
        let gap = tsc.saturating_sub(self.last_tsc);
        let mut step = self.reference.counts_between(self.last_value, value);
        if gap > self.reference.longest_pause() {
            match self.unfold(gap, step) {
                Some(unfolded) => step = unfolded,
                None => self.paused = true,
            }
        }
        self.counts += step;
        self.last_value = value;
        self.last_tsc = tsc;
        self.counts
    }

    /// Returns `step` plus the whole wraps a pause of `gap` TSC ticks took, from the
    /// rate so far; `None` when the window is too young or the pause too long to tell.
    fn unfold(&self, gap: u64, step: u64) -> Option<u64> {
        if self.counts < UNFOLD_AFTER {
            return None;
        }
        let wrap = self.reference.mask() + 1;
        let ticks = self.last_tsc.saturating_sub(self.start.tsc()).max(1);
        let expected = u128::from(gap) * u128::from(self.counts) / u128::from(ticks);
        if expected > u128::from(wrap) * u128::from(UNFOLD_WRAPS) {
            return None;
        }
        let expected = expected as u64;
        let wraps = (expected.saturating_sub(step) + wrap / 2) / wrap;
        Some(step + wraps * wrap)
    }

    /// Closes the window with `end` and returns the measured rate.
    pub fn close(mut self, end: Reading) -> Result<Measurement, WindowError> {
        self.poll(end.value, end.tsc_before);
        if self.paused {
            return Err(WindowError::Paused);
        }
        let ticks = end.tsc().saturating_sub(self.start.tsc());
        if self.counts == 0 || ticks == 0 {
            return Err(WindowError::Stopped);
        }
        let hz = u128::from(ticks) * u128::from(self.reference.hz) / u128::from(self.counts);
        let bracket = (self.start.spread() + end.spread()).div_ceil(2);
        let error_ppm = (u128::from(bracket) * 1_000_000).div_ceil(u128::from(ticks))
            + 1_000_000u128.div_ceil(u128::from(self.counts));
        Ok(Measurement {
            hz: hz.min(u128::from(u64::MAX)) as u64,
            counts: self.counts,
            ticks,
            error_ppm: error_ppm.min(u128::from(u64::MAX)) as u64,
        })
    }
}

/// Returns the difference between `measured` and `reference` rates in parts per
/// million of `reference` (0 when `reference` is 0).
pub fn difference_ppm(measured: u64, reference: u64) -> u64 {
    if reference == 0 {
        return 0;
    }
    (u128::from(measured.abs_diff(reference)) * 1_000_000 / u128::from(reference)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up machine: a TSC of `tsc_hz` and a reference clock, both from one time.
    struct Machine {
        tsc_hz: u64,
        reference: Reference,
        /// Nanoseconds since power-on.
        now: u64,
        /// Nanoseconds a TSC read and a reference read take.
        read_ns: u64,
    }

    impl Machine {
        fn tsc(&mut self) -> u64 {
            self.now += self.read_ns;
            (u128::from(self.now) * u128::from(self.tsc_hz) / 1_000_000_000) as u64
        }

        fn counter(&mut self) -> u64 {
            self.now += self.read_ns;
            let counts =
                (u128::from(self.now) * u128::from(self.reference.hz) / 1_000_000_000) as u64;
            let value = counts & self.reference.mask();
            if self.reference.counts_down {
                self.reference.mask() - value
            } else {
                value
            }
        }

        fn reading(&mut self) -> Reading {
            let tsc_before = self.tsc();
            let value = self.counter();
            let tsc_after = self.tsc();
            Reading {
                tsc_before,
                value,
                tsc_after,
            }
        }

        /// Measures over `window_ns`, sleeping `pause_ns` once half-way.
        fn measure(&mut self, window_ns: u64, pause_ns: u64) -> Result<Measurement, WindowError> {
            let want = self.reference.hz * window_ns / 1_000_000_000;
            let mut window = Window::open(self.reference, self.reading());
            let mut paused = false;
            loop {
                let tsc = self.tsc();
                let value = self.counter();
                let counts = window.poll(value, tsc);
                if counts >= want {
                    break;
                }
                if !paused && counts >= want / 2 {
                    self.now += pause_ns;
                    paused = true;
                }
            }
            window.close(self.reading())
        }
    }

    fn machine(reference: Reference) -> Machine {
        Machine {
            tsc_hz: 2_591_234_567,
            reference,
            now: 123_456_789,
            read_ns: 400,
        }
    }

    #[test]
    fn vendors_and_families() {
        // "GenuineIntel" in ebx, edx, ecx order.
        assert_eq!(
            Vendor::from_signature(0x756e_6547, 0x4965_6e69, 0x6c65_746e),
            Vendor::Intel
        );
        // QEMU's qemu64 model: "AuthenticAMD", family 0xF.
        assert_eq!(
            Vendor::from_signature(0x6874_7541, 0x6974_6e65, 0x444d_4163),
            Vendor::Amd
        );
        assert_eq!(Vendor::from_signature(0, 0, 0), Vendor::Other);
        // Each name split into ebx, edx, ecx as CPUID returns it.
        for (name, vendor) in [
            (b"GenuineIntel", Vendor::Intel),
            (b"AuthenticAMD", Vendor::Amd),
            (b"HygonGenuine", Vendor::Hygon),
            (b"GenuineIotel", Vendor::Other),
        ] {
            let word = |at: usize| u32::from_le_bytes(name[at..at + 4].try_into().unwrap());
            assert_eq!(Vendor::from_signature(word(0), word(4), word(8)), vendor);
        }
        assert_eq!(family(0x60fb1), 0xF);
        assert_eq!(family(0x506e3), 6);
        assert_eq!(family(0x00a2_0f10), 0x19, "AMD Zen 3: 0xF + 0xA");
    }

    fn intel() -> CpuidFacts {
        CpuidFacts {
            vendor: Some(Vendor::Intel),
            family: 6,
            max_leaf: 0x1b,
            ..CpuidFacts::default()
        }
    }

    #[test]
    fn the_hypervisor_leaf_comes_first() {
        let facts = CpuidFacts {
            hypervisor: true,
            max_hypervisor_leaf: 0x4000_0010,
            hypervisor_timing: [2_100_000, 1_000_000],
            leaf_15: [2, 200, 24_000_000],
            ..intel()
        };
        assert_eq!(
            facts.stated_tsc_hz(),
            Some((2_100_000_000, Stated::Hypervisor))
        );
        assert_eq!(facts.stated_apic_hz(), Some(1_000_000_000));
        // A hypervisor whose highest leaf stops short (QEMU's TCG: 0x4000_0001) states
        // nothing there, whatever the leaf reads.
        let short = CpuidFacts {
            max_hypervisor_leaf: 0x4000_0001,
            ..facts
        };
        assert_eq!(
            short.stated_tsc_hz(),
            Some((2_400_000_000, Stated::Crystal))
        );
        assert_eq!(short.stated_apic_hz(), None);
    }

    #[test]
    fn intel_leaves_15_and_16() {
        let crystal = CpuidFacts {
            leaf_15: [2, 176, 24_000_000],
            ..intel()
        };
        assert_eq!(
            crystal.stated_tsc_hz(),
            Some((2_112_000_000, Stated::Crystal))
        );
        // Skylake: no crystal rate in 0x15; it comes from the base frequency.
        let skylake = CpuidFacts {
            leaf_15: [2, 292, 0],
            base_mhz: 3600,
            ..intel()
        };
        assert_eq!(
            skylake.stated_tsc_hz(),
            Some((3_600_000_000, Stated::BaseFrequency))
        );
        let base_only = CpuidFacts {
            base_mhz: 2900,
            ..intel()
        };
        assert_eq!(
            base_only.stated_tsc_hz(),
            Some((2_900_000_000, Stated::BaseFrequency))
        );
        // Leaves beyond the highest one read as garbage (another leaf): never trusted.
        let old = CpuidFacts {
            max_leaf: 0xd,
            leaf_15: [2, 176, 24_000_000],
            base_mhz: 2900,
            ..intel()
        };
        assert_eq!(old.stated_tsc_hz(), None);
        // AMD does not define these leaves.
        let amd = CpuidFacts {
            vendor: Some(Vendor::Amd),
            ..crystal
        };
        assert_eq!(amd.stated_tsc_hz(), None);
    }

    #[test]
    fn init_delay_only_for_old_bare_processors() {
        assert!(!intel().needs_init_delay());
        let pentium = CpuidFacts {
            family: 5,
            ..intel()
        };
        assert!(pentium.needs_init_delay());
        let guest = CpuidFacts {
            hypervisor: true,
            ..pentium
        };
        assert!(!guest.needs_init_delay());
        let qemu64 = CpuidFacts {
            vendor: Some(Vendor::Amd),
            family: 0xF,
            hypervisor: true,
            ..CpuidFacts::default()
        };
        assert!(!qemu64.needs_init_delay());
        let k8_bare = CpuidFacts {
            hypervisor: false,
            family: 0xE,
            ..qemu64
        };
        assert!(k8_bare.needs_init_delay());
        assert!(
            CpuidFacts::default().needs_init_delay(),
            "unknown: be careful"
        );
    }

    #[test]
    fn second_startup_only_on_bare_processors() {
        assert!(intel().needs_second_startup());
        let guest = CpuidFacts {
            hypervisor: true,
            ..intel()
        };
        assert!(!guest.needs_second_startup());
    }

    #[test]
    fn counters_wrap() {
        assert_eq!(Reference::PIT.counts_between(10, 5), 5);
        assert_eq!(
            Reference::PIT.counts_between(3, 65_530),
            9,
            "down through 0"
        );
        let pm = Reference::pm_timer(false);
        assert_eq!(pm.counts_between(0xFF_FFF0, 0x10), 0x20);
        assert_eq!(
            Reference::pm_timer(true).counts_between(u32::MAX.into(), 1),
            2
        );
        let hpet = Reference::hpet(10_000_000).unwrap();
        assert_eq!(hpet.hz, 100_000_000);
        assert_eq!(Reference::hpet(0), None);
        assert_eq!(Reference::hpet(100_000_001), None);
        // The PIT wraps every 55 ms: reads more than ~27 ms apart at 500 MHz are suspect.
        assert_eq!(Reference::PIT.longest_pause(), 13_731_350);
    }

    #[test]
    fn short_windows_measure_within_their_bound() {
        let cases = [
            (Reference::PIT, 1_000_000),
            (Reference::pm_timer(false), 500_000),
            (Reference::hpet(10_000_000).unwrap(), 500_000),
        ];
        for (reference, window_ns) in cases {
            let mut machine = machine(reference);
            let measured = machine.measure(window_ns, 0).unwrap();
            let off = difference_ppm(measured.hz, machine.tsc_hz);
            assert!(
                off <= measured.error_ppm,
                "{reference:?}: {} Hz is {off} ppm off, bound {}",
                measured.hz,
                measured.error_ppm
            );
            assert!(measured.error_ppm < 3_000, "{measured:?}");
            let micros = measured.micros(&reference);
            assert!((window_ns / 1000..window_ns / 1000 + 10).contains(&micros));
        }
    }

    #[test]
    fn a_pause_that_may_hide_a_wrap_refuses_a_young_window() {
        // 60 ms away in the middle of a 1 ms PIT window: a whole wrap could have passed,
        // and 600 counts do not give the rate well enough to tell how many.
        let mut pit = machine(Reference::PIT);
        assert_eq!(pit.measure(1_000_000, 60_000_000), Err(WindowError::Paused));
        // The same pause on the PM timer (wraps after 4.7 s) only lengthens the window.
        let mut pm = machine(Reference::pm_timer(false));
        let measured = pm.measure(500_000, 60_000_000).unwrap();
        assert!(difference_ppm(measured.hz, pm.tsc_hz) <= measured.error_ppm);
        assert!(measured.micros(&pm.reference) > 60_000);
    }

    #[test]
    fn long_pauses_in_an_established_window_are_unfolded() {
        // 10 ms windows paused half-way (5 ms: 6,000 counts in) for 60 ms, 1.3 s and
        // 3 s: 1, 23 and 54 wraps of the PIT, all added back; and 2 ms windows paused
        // after 1 ms (1,193 counts).
        for pause_ns in [60_000_000, 1_300_000_000] {
            let mut pit = machine(Reference::PIT);
            let measured = pit.measure(2_000_000, pause_ns).unwrap();
            let off = difference_ppm(measured.hz, pit.tsc_hz);
            assert!(
                off <= measured.error_ppm,
                "{pause_ns} ns: {off} ppm, {measured:?}"
            );
        }
        for pause_ns in [60_000_000, 1_300_000_000, 3_000_000_000] {
            let mut pit = machine(Reference::PIT);
            let measured = pit.measure(10_000_000, pause_ns).unwrap();
            let off = difference_ppm(measured.hz, pit.tsc_hz);
            assert!(
                off <= measured.error_ppm,
                "{pause_ns} ns: {off} ppm, {measured:?}"
            );
            assert!(measured.micros(&Reference::PIT) > pause_ns / 1000);
        }
        // Beyond 64 wraps (3.5 s) the window is refused rather than guessed.
        let mut pit = machine(Reference::PIT);
        assert_eq!(
            pit.measure(10_000_000, 4_000_000_000),
            Err(WindowError::Paused)
        );
    }

    #[test]
    fn a_stopped_clock_gives_no_rate() {
        let reading = Reading {
            tsc_before: 100,
            value: 7,
            tsc_after: 110,
        };
        let window = Window::open(Reference::pm_timer(true), reading);
        let later = Reading {
            tsc_before: 1_000_000,
            ..reading
        };
        assert_eq!(window.close(later), Err(WindowError::Stopped));
    }

    #[test]
    fn the_tightest_bracket_wins_and_rates_convert() {
        let wide = Reading {
            tsc_before: 0,
            value: 1,
            tsc_after: 100,
        };
        let tight = Reading {
            tsc_before: 40,
            value: 2,
            tsc_after: 50,
        };
        assert_eq!(Reading::tightest(&[wide, tight]), Some(tight));
        assert_eq!(tight.tsc(), 45);
        let measurement = Measurement {
            hz: 2_000_000_000,
            counts: 1,
            ticks: 1_000_000,
            error_ppm: 0,
        };
        // 31,250 APIC timer ticks in 0.5 ms: 62.5 MHz.
        assert_eq!(measurement.rate_of(31_250), 62_500_000);
        assert_eq!(difference_ppm(1_001_000, 1_000_000), 1000);
        assert_eq!(difference_ppm(5, 0), 0);
    }
}
