//! The board's [`Clock`]: system time from the generic counter (CNTPCT; the
//! guests' CNTVCT is the same count, CNTVOFF_EL2 being 0).

use lantern_arch_arm::timer;
use lantern_common::arch::{Clock, TimeSample};

/// Counter-based clock; `t0` is the hypervisor's time zero.
pub struct CounterClock {
    t0: u64,
    hz: u64,
    mul: u32,
    shift: i8,
}

impl CounterClock {
    /// A clock counting from counter value `t0` at `hz` ticks per second.
    pub fn new(t0: u64, hz: u64) -> Self {
        // Xen's scaling: ns = ((delta << shift) * mul) >> 32, mul < 2^32, so
        // bring the frequency into (1 GHz, 2 GHz] with the shift first.
        let hz = hz.max(1);
        let mut shift: i8 = 0;
        let mut f = hz as u128;
        while f <= 1_000_000_000 {
            f <<= 1;
            shift += 1;
        }
        while f > 2_000_000_000 {
            f >>= 1;
            shift -= 1;
        }
        let mul = ((1_000_000_000u128 << 32) / f) as u32;
        CounterClock { t0, hz, mul, shift }
    }
}

impl Clock for CounterClock {
    fn sample(&self) -> TimeSample {
        let now = timer::now();
        let ns = ((now - self.t0) as u128 * 1_000_000_000 / self.hz as u128) as u64;
        TimeSample { system_time_ns: ns, tsc: now, tsc_to_system_mul: self.mul, tsc_shift: self.shift }
    }
}
