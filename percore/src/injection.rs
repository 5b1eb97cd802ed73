//! The fault injector's logic: which deliberate fault to raise, on which core, where and
//! when, parsed from `selftest=fault:core=K:kind=KIND[:in=thread|loop][:after=MS]`.
//!
//! Plain data: the running core arms and raises it (`fault::arm`, the platform's
//! `raise` hook), which is why it lies below both.

use core::fmt;

use crate::MAX_CORES;

/// A deliberate fault the injector raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A Rust panic.
    Panic,
    /// A read of an unmapped address (#PF).
    PageFault,
    /// `ud2` (#UD).
    InvalidOpcode,
    /// A read of a non-canonical address (#GP).
    GeneralProtection,
    /// A division by zero (#DE).
    DivideError,
}

impl FaultKind {
    const ALL: [FaultKind; 5] = [
        FaultKind::Panic,
        FaultKind::PageFault,
        FaultKind::InvalidOpcode,
        FaultKind::GeneralProtection,
        FaultKind::DivideError,
    ];

    /// Returns the name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Panic => "panic",
            FaultKind::PageFault => "page-fault",
            FaultKind::InvalidOpcode => "invalid-opcode",
            FaultKind::GeneralProtection => "general-protection",
            FaultKind::DivideError => "divide-error",
        }
    }
}

/// Where an injected fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In the first of the core's threads that resumes (from a yield, a sleep or a
    /// wait) once the delay passed: that thread fails alone, unless it is inside a
    /// critical section.
    Thread,
    /// In the core's kernel loop, outside any thread, as soon as the delay passed (the
    /// core's timer wakes it): the whole core fails.
    Loop,
}

/// One injected fault, from `selftest=fault:core=K:kind=KIND[:in=thread|loop][:after=MS]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// The core that faults.
    pub core: usize,
    /// What it raises.
    pub kind: FaultKind,
    /// Where (default: a thread).
    pub place: Place,
    /// Milliseconds after the core started its scheduler (default 0).
    pub after_ms: u64,
}

/// Why a `selftest=fault:...` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectionError {
    /// The value does not start with `fault:`.
    NotAFault,
    /// A field is not `core=`, `kind=`, `in=` or `after=`, or has no `=`.
    UnknownField,
    /// `core=` is missing or not a number below the core limit.
    BadCore,
    /// `kind=` is missing or names no fault kind.
    BadKind,
    /// `in=` is neither `thread` nor `loop`.
    BadPlace,
    /// `after=` is not a number of milliseconds.
    BadDelay,
}

impl fmt::Display for InjectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InjectionError::NotAFault => "it does not start with `fault:`",
            InjectionError::UnknownField => "a field is not one of core=, kind=, in=, after=",
            InjectionError::BadCore => "core= must name a core by number",
            InjectionError::BadKind => {
                "kind= must be panic, page-fault, invalid-opcode, general-protection or divide-error"
            }
            InjectionError::BadPlace => "in= must be thread or loop",
            InjectionError::BadDelay => "after= must be a number of milliseconds",
        })?;
        f.write_str(" (expected fault:core=K:kind=KIND[:in=thread|loop][:after=MS])")
    }
}

impl Injection {
    /// Parses the value of a `selftest=` word that asks for an injected fault.
    pub fn parse(text: &str) -> Result<Injection, InjectionError> {
        let fields = text
            .strip_prefix("fault:")
            .ok_or(InjectionError::NotAFault)?;
        let (mut core, mut kind, mut place, mut after_ms) = (None, None, Place::Thread, 0);
        for field in fields.split(':') {
            let (key, value) = field.split_once('=').ok_or(InjectionError::UnknownField)?;
            match key {
                "core" => {
                    core = Some(
                        value
                            .parse::<usize>()
                            .ok()
                            .filter(|&core| core < MAX_CORES)
                            .ok_or(InjectionError::BadCore)?,
                    );
                }
                "kind" => {
                    kind = Some(
                        FaultKind::ALL
                            .into_iter()
                            .find(|kind| kind.name() == value)
                            .ok_or(InjectionError::BadKind)?,
                    );
                }
                "in" => {
                    place = match value {
                        "thread" => Place::Thread,
                        "loop" => Place::Loop,
                        _ => return Err(InjectionError::BadPlace),
                    };
                }
                "after" => after_ms = value.parse().map_err(|_| InjectionError::BadDelay)?,
                _ => return Err(InjectionError::UnknownField),
            }
        }
        Ok(Injection {
            core: core.ok_or(InjectionError::BadCore)?,
            kind: kind.ok_or(InjectionError::BadKind)?,
            place,
            after_ms,
        })
    }
}

/// A fault armed on one core: what, where, and from which TSC value on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed {
    kind: FaultKind,
    place: Place,
    deadline: u64,
}

impl Armed {
    /// Returns `injection` armed to strike from TSC value `deadline` on.
    pub fn new(injection: &Injection, deadline: u64) -> Armed {
        Armed {
            kind: injection.kind,
            place: injection.place,
            deadline,
        }
    }

    /// Returns the TSC value from which it strikes at `place`, if that is its place.
    pub fn deadline_at(self, place: Place) -> Option<u64> {
        (self.place == place).then_some(self.deadline)
    }

    /// Returns the fault to raise at `place` at time `now`, if it is due there.
    pub fn due(self, place: Place, now: u64) -> Option<FaultKind> {
        (self.place == place && now >= self.deadline).then_some(self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injections_parse_with_defaults_and_refuse_bad_fields() {
        assert_eq!(
            Injection::parse("fault:core=3:kind=page-fault:after=2000:in=loop"),
            Ok(Injection {
                core: 3,
                kind: FaultKind::PageFault,
                place: Place::Loop,
                after_ms: 2000
            })
        );
        assert_eq!(
            Injection::parse("fault:kind=panic:core=0"),
            Ok(Injection {
                core: 0,
                kind: FaultKind::Panic,
                place: Place::Thread,
                after_ms: 0
            })
        );
        for kind in FaultKind::ALL {
            let text = std::format!("fault:core=1:kind={}", kind.name());
            assert_eq!(Injection::parse(&text).map(|i| i.kind), Ok(kind));
        }
        let refused = [
            ("page-fault", InjectionError::NotAFault),
            ("fault:core=1", InjectionError::BadKind),
            ("fault:kind=panic", InjectionError::BadCore),
            ("fault:core=64:kind=panic", InjectionError::BadCore),
            ("fault:core=x:kind=panic", InjectionError::BadCore),
            ("fault:core=1:kind=explode", InjectionError::BadKind),
            ("fault:core=1:kind=panic:in=heap", InjectionError::BadPlace),
            (
                "fault:core=1:kind=panic:after=soon",
                InjectionError::BadDelay,
            ),
            (
                "fault:core=1:kind=panic:when=now",
                InjectionError::UnknownField,
            ),
            ("fault:core=1:kind=panic:loop", InjectionError::UnknownField),
        ];
        for (text, error) in refused {
            assert_eq!(Injection::parse(text), Err(error), "{text}");
        }
        let message = std::format!("{}", InjectionError::BadPlace);
        assert!(message.contains("fault:core=K:kind=KIND"), "{message}");
    }

    #[test]
    fn an_armed_fault_is_due_only_at_its_place_and_time() {
        let armed = Armed {
            kind: FaultKind::InvalidOpcode,
            place: Place::Loop,
            deadline: 1_000,
        };
        assert_eq!(armed.due(Place::Loop, 999), None);
        assert_eq!(armed.due(Place::Thread, 5_000), None);
        assert_eq!(
            armed.due(Place::Loop, 1_000),
            Some(FaultKind::InvalidOpcode)
        );
    }
}
