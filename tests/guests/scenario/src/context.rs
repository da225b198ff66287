//! What one run of the checks shares: the [`Ctx`] context (the guest, its
//! layout, what has been set up so far, the tally) and the plumbing every
//! check uses — failure reasons ([`reason!`], [`ensure!`]), `CHECK` lines,
//! waiting for another vCPU or the hypervisor, reading guest memory.

use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use xen_abi::Errno;
use zerocopy::{FromBytes, IntoBytes};

use crate::console::{self, Buf};
use crate::hypercall::{self, rc_name};
use crate::layout::{Layout, VCPU_INFO_MAX};
use crate::{Guest, MAX_VCPUS, VCPUS};

/// Totals of one scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

/// Failure reason of one check.
pub(crate) type Reason = Buf<160>;
/// What a check returns: pass, or fail with a reason.
pub(crate) type CheckResult = Result<(), Reason>;

/// Build a failure reason with `format!`-like syntax.
macro_rules! reason {
    ($($t:tt)*) => {{
        let mut r = $crate::context::Reason::new();
        let _ = core::fmt::Write::write_fmt(&mut r, format_args!($($t)*));
        r
    }};
}

/// Bail out of a check with a reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            return Err(reason!($($t)*));
        }
    };
}

/// How many `SCHEDOP_yield`s to wait for something another vCPU or the
/// hypervisor must do before calling it a failure.
pub(crate) const WAIT_YIELDS: u32 = 2000;

/// What the scenario puts on the scratch pages the guest gives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pages {
    /// The registered vcpu_info areas, all on one page: vCPU 0 at offset 0,
    /// the remote vCPU at 1 × size, the dummy-area vCPU at 2 × size.
    pub vcpu_info: u64,
    /// Where vCPU 0's refused second registration (and the bench's) points.
    pub second_vcpu_info: u64,
    /// vCPU 0's time area at offset 0, then the runstate areas.
    pub areas: u64,
    /// The areas registered by guest-virtual address (time at offset 0,
    /// runstate after it).
    pub spare: u64,
}

/// The state one run shares between its checks (on vCPU 0).
pub(crate) struct Ctx<'g> {
    /// The guest under test.
    pub g: &'g dyn Guest,
    /// Its layout.
    pub layout: &'static Layout,
    /// Checks passed and failed so far.
    pub outcome: Outcome,
    /// vCPUs the domain has.
    pub vcpus: u32,
    /// Whether `XENMEM_add_to_physmap` put shared_info in place.
    pub shared_info_mapped: bool,
    /// The scratch pages.
    pub pages: Pages,
    /// Secondaries started so far.
    pub started: [bool; MAX_VCPUS],
    /// Registered runstate area per vCPU (gpa, 0 = none).
    pub runstate_gpa: [u64; MAX_VCPUS],
    /// Registered time area per vCPU (gpa, 0 = none).
    pub time_gpa: [u64; MAX_VCPUS],
}

impl<'g> Ctx<'g> {
    /// A fresh run on `g`: one vCPU known, nothing set up.
    pub fn new(g: &'g dyn Guest) -> Self {
        let [vcpu_info, second_vcpu_info, areas, spare] = g.scratch_pages();
        Ctx {
            g,
            layout: g.layout(),
            outcome: Outcome::default(),
            vcpus: 1,
            shared_info_mapped: false,
            pages: Pages { vcpu_info, second_vcpu_info, areas, spare },
            started: [false; MAX_VCPUS],
            runstate_gpa: [0; MAX_VCPUS],
            time_gpa: [0; MAX_VCPUS],
        }
    }

    /// Print one console line.
    pub fn say(&self, args: fmt::Arguments<'_>) {
        console::line(&|b| self.g.console(b), args);
    }

    /// Tally check `name` and print its `CHECK PASS` / `CHECK FAIL` line.
    pub fn check(&mut self, name: &str, res: CheckResult) {
        match res {
            Ok(()) => {
                self.outcome.passed += 1;
                self.say(format_args!("CHECK PASS {name}"));
            }
            Err(why) => {
                self.outcome.failed += 1;
                self.say(format_args!("CHECK FAIL {name}: {}", why.as_str()));
            }
        }
    }

    /// Run check `name` and tally it.
    pub fn run(&mut self, name: &str, check: impl FnOnce(&mut Self) -> CheckResult) {
        let res = check(self);
        self.check(name, res);
    }

    /// Fail every check in `names` with the same reason (they cannot run).
    pub fn fail_all(&mut self, names: &[&str], args: fmt::Arguments<'_>) {
        for name in names {
            let mut why = Reason::new();
            let _ = why.write_fmt(args);
            self.check(name, Err(why));
        }
    }

    /// A `T` of guest memory at `gpa` (see [`read_obj`]).
    pub fn read<T: FromBytes + IntoBytes>(&self, gpa: u64) -> T {
        read_obj(self.g, gpa)
    }

    /// The raw bytes of a vcpu_info (this layout's size) at `gpa`.
    pub fn read_vcpu_info(&self, gpa: u64) -> [u8; VCPU_INFO_MAX] {
        let mut b = [0u8; VCPU_INFO_MAX];
        self.g.read(gpa, &mut b[..self.layout.vcpu_info_size as usize]);
        b
    }

    /// Yield until `cond` holds, at most [`WAIT_YIELDS`] times.
    pub fn wait_for(&self, mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..WAIT_YIELDS {
            if cond() {
                return true;
            }
            hypercall::sched_yield(self.g);
        }
        cond()
    }

    /// Proof-of-life count of secondary `vcpu`.
    pub fn alive(&self, vcpu: u32) -> u32 {
        VCPUS.alive[vcpu as usize].load(Ordering::Acquire)
    }

    /// Wait until secondary `vcpu` shows signs of life beyond `since`.
    pub fn wait_alive(&self, vcpu: u32, since: u32) -> bool {
        self.wait_for(|| self.alive(vcpu) > since)
    }
}

/// A `T` read from guest memory at `gpa`, in the guest's (little-endian)
/// byte order: the one accessor for numbers and mirrors the scenario reads.
pub(crate) fn read_obj<T: FromBytes + IntoBytes>(g: &dyn Guest, gpa: u64) -> T {
    let mut t = T::new_zeroed();
    g.read(gpa, t.as_mut_bytes());
    t
}

/// PASS if `rc` is 0, else the result named.
pub(crate) fn expect_ok(rc: i64) -> CheckResult {
    ensure!(rc == 0, "rc={rc} ({})", rc_name(rc));
    Ok(())
}

/// PASS if `rc` is the (negated) errno `want`.
pub(crate) fn expect_errno(rc: i64, want: Errno) -> CheckResult {
    let want = want.to_hypercall_ret();
    ensure!(rc == want, "rc={rc} ({}), expected {want} ({})", rc_name(rc), rc_name(want));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_errno_reason_names_errnos() {
        assert!(expect_errno(Errno::ENXIO.to_hypercall_ret(), Errno::ENXIO).is_ok());
        let e = expect_errno(Errno::EINVAL.to_hypercall_ret(), Errno::ENXIO).unwrap_err();
        assert_eq!(e.as_str(), "rc=-22 (-EINVAL), expected -6 (-ENXIO)");
    }

    #[test]
    fn expect_ok_reason() {
        assert!(expect_ok(0).is_ok());
        assert_eq!(expect_ok(Errno::EBUSY.to_hypercall_ret()).unwrap_err().as_str(), "rc=-16 (-EBUSY)");
    }
}
