//! Diagnostics of what a guest asked for and did not get: every hypercall
//! that returned `-ENOSYS`, and every trapped access (a register, port or
//! MMIO address) the hypervisor refused or answered with a default. Each
//! distinct kind is logged (at debug level) the first time it happens and
//! counted; the board prints the counts when the run ends, so a user can
//! tell why a guest stopped. With `lantern.log=debug` both show.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::memory::DomId;

/// One kind of unhandled guest request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unhandled {
    /// A hypercall (number, first argument = sub-op) that returned `-ENOSYS`.
    Hypercall {
        /// Hypercall number.
        nr: u64,
        /// Its first argument (the sub-op of multiplexed hypercalls).
        sub: u64,
    },
    /// A trapped access the arch refused or answered with a default.
    Access {
        /// The arch's name for the kind of access (`MSR`, `sysreg`, `port`,
        /// `MMIO`, `PSCI`, ...).
        space: &'static str,
        /// Register index, port, address or function id.
        index: u64,
        /// A write (else a read or a call).
        write: bool,
        /// What the guest got instead (`#GP`, `zero`, `all ones`,
        /// `ignored`, `not supported`, ...).
        answer: &'static str,
    },
}

impl Unhandled {
    /// One line describing this kind.
    pub fn describe(&self) -> String {
        match *self {
            Unhandled::Hypercall { nr, sub } => {
                format!("hypercall {nr} ({}) sub-op {sub}: -ENOSYS", xen_abi::nr::hypercall::name(nr))
            }
            Unhandled::Access { space, index, write, answer } => {
                format!("{space} {index:#x} {}: {answer}", if write { "write" } else { "read" })
            }
        }
    }
}

/// Distinct kinds kept per domain: a guest making up new hypercall numbers
/// must not grow the hypervisor's memory without bound; further kinds are
/// only counted together.
pub const MAX_KINDS: usize = 256;

/// A domain's unhandled-request counts.
#[derive(Default)]
pub struct Diagnostics {
    counts: HashMap<Unhandled, u64>,
    /// Occurrences of kinds beyond [`MAX_KINDS`].
    overflow: u64,
}

impl Diagnostics {
    /// Counts one occurrence of `kind`; returns whether it is the first.
    pub fn note(&mut self, kind: Unhandled) -> bool {
        if let Some(n) = self.counts.get_mut(&kind) {
            *n += 1;
            return false;
        }
        if self.counts.len() >= MAX_KINDS {
            self.overflow += 1;
            return false;
        }
        self.counts.insert(kind, 1);
        true
    }

    /// How often `kind` happened.
    pub fn count(&self, kind: &Unhandled) -> u64 {
        self.counts.get(kind).copied().unwrap_or(0)
    }

    /// Every kind with its count, in a stable order.
    pub fn entries(&self) -> Vec<(Unhandled, u64)> {
        let mut v: Vec<_> = self.counts.iter().map(|(k, n)| (*k, *n)).collect();
        v.sort();
        v
    }

    /// The closing lines for domain `dom`: one per kind, `dN: <kind> ×count`.
    pub fn summary_lines(&self, dom: DomId) -> Vec<String> {
        let mut lines: Vec<String> =
            self.entries().iter().map(|(k, n)| format!("d{dom}: {} (x{n})", k.describe())).collect();
        if self.overflow > 0 {
            lines.push(format!("d{dom}: {} more of kinds beyond the first {MAX_KINDS}", self.overflow));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_occurrence_and_counts() {
        let mut d = Diagnostics::default();
        let hc = Unhandled::Hypercall { nr: 99, sub: 1 };
        let msr = Unhandled::Access { space: "MSR", index: 0xc001_0055, write: false, answer: "#GP" };
        assert!(d.note(hc));
        assert!(!d.note(hc));
        assert!(d.note(msr));
        assert_eq!((d.count(&hc), d.count(&msr)), (2, 1));
        assert_eq!(
            d.summary_lines(3),
            ["d3: hypercall 99 (unknown) sub-op 1: -ENOSYS (x2)", "d3: MSR 0xc0010055 read: #GP (x1)"]
        );
    }

    #[test]
    fn a_guest_cannot_grow_the_table_without_bound() {
        let mut d = Diagnostics::default();
        for sub in 0..(MAX_KINDS as u64 + 10) {
            d.note(Unhandled::Hypercall { nr: 1000, sub });
        }
        assert_eq!(d.entries().len(), MAX_KINDS);
        assert_eq!(d.summary_lines(1).last().unwrap(), &format!("d1: 10 more of kinds beyond the first {MAX_KINDS}"));
    }
}
