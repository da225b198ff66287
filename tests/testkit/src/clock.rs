//! The hypervisor clocks of the host tests: one the test moves by hand, one
//! that follows the host's monotonic time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lantern_common::clock::{Clock, TimeSample};

/// A clock the test moves by hand: system time starts where the test says
/// and changes only by [`TestClock::advance`]; the counter reads three ticks
/// per nanosecond, so a test can tell `tsc_timestamp` from `system_time`.
pub struct TestClock {
    now_ns: AtomicU64,
    tsc_shift: i8,
}

impl TestClock {
    /// System time `ns`, `tsc_shift` 0 (with `tsc_to_system_mul` 1/3 the
    /// record converts counter ticks back to nanoseconds exactly).
    pub fn starting_at(ns: u64) -> Self {
        TestClock { now_ns: AtomicU64::new(ns), tsc_shift: 0 }
    }

    /// The same clock publishing `shift` as `tsc_shift`: a negative one lets
    /// a test check that decoders keep the field's sign.
    pub fn with_tsc_shift(self, shift: i8) -> Self {
        TestClock { tsc_shift: shift, ..self }
    }

    /// Moves system time on by `ns`.
    pub fn advance(&self, ns: u64) {
        self.now_ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Default for TestClock {
    /// System time 0.
    fn default() -> Self {
        TestClock::starting_at(0)
    }
}

impl Clock for TestClock {
    fn sample(&self) -> TimeSample {
        let ns = self.now_ns.load(Ordering::SeqCst);
        TimeSample { system_time_ns: ns, tsc: ns * 3, tsc_to_system_mul: 0x5555_5555, tsc_shift: self.tsc_shift }
    }

    fn counter_at(&self, ns: u64) -> u64 {
        ns.saturating_mul(3)
    }
}

/// A clock that follows the host's monotonic time, for the bench and the
/// fake board, where time must move by itself.
pub struct HostClock {
    started: Instant,
}

impl HostClock {
    /// System time 1 ms at creation: a time record the hypervisor wrote never
    /// reads 0, the value of one it never wrote.
    const START_NS: u64 = 1_000_000;

    /// A clock starting now.
    pub fn new() -> Self {
        HostClock { started: Instant::now() }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        HostClock::new()
    }
}

impl Clock for HostClock {
    fn sample(&self) -> TimeSample {
        let ns = self.started.elapsed().as_nanos() as u64 + Self::START_NS;
        // Two counter ticks per nanosecond; mul 1/2 converts them back.
        TimeSample { system_time_ns: ns, tsc: ns * 2, tsc_to_system_mul: 0x8000_0000, tsc_shift: 0 }
    }

    fn counter_at(&self, ns: u64) -> u64 {
        ns.saturating_mul(2)
    }
}
