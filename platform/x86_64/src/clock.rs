//! The board's [`Clock`]: system time from the TSC, calibrated at boot.

use lantern_common::arch::{Clock, TimeSample};

/// TSC-based clock; `tsc0` is the hypervisor's time zero.
pub struct TscClock {
    tsc0: u64,
    hz: u64,
    mul: u32,
    shift: i8,
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

impl TscClock {
    /// A clock counting from now at `hz` TSC ticks per second.
    pub fn new(hz: u64) -> Self {
        // Xen's scale: ns = ((delta << shift) * mul) >> 32, mul < 2^32.
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
        TscClock { tsc0: rdtsc(), hz, mul, shift }
    }
}

impl Clock for TscClock {
    fn sample(&self) -> TimeSample {
        let tsc = rdtsc();
        let ns = ((tsc - self.tsc0) as u128 * 1_000_000_000 / self.hz as u128) as u64;
        TimeSample { system_time_ns: ns, tsc, tsc_to_system_mul: self.mul, tsc_shift: self.shift }
    }
}
