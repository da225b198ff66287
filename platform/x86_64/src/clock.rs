//! The board's clock: the core's [`CounterClock`] over the TSC, calibrated
//! at boot.

use lantern_common::clock::CounterClock;

/// The TSC now.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter; it has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The clock with time zero now, the TSC ticking at `hz`.
pub fn tsc_clock(hz: u64) -> CounterClock {
    CounterClock::new(rdtsc, rdtsc(), hz)
}
