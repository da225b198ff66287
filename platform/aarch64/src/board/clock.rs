//! The board's clock: the core's [`CounterClock`] over the generic counter
//! (CNTPCT; the guests' CNTVCT is the same count, CNTVOFF_EL2 being 0).

use lantern_arch_arm::hw::timer;
pub use lantern_common::clock::CounterClock;

/// The clock with time zero at counter value `t0`, ticking at `hz`.
pub fn counter_clock(t0: u64, hz: u64) -> CounterClock {
    CounterClock::new(timer::now, t0, hz)
}
