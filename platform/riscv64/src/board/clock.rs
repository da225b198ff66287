//! The board's clock: the core's [`CounterClock`] over the `time` counter
//! (which guests read too: `htimedelta` is 0).

use lantern_arch_riscv::hw::hs;
pub use lantern_common::clock::CounterClock;

/// The clock with time zero at counter value `t0`, ticking at `hz`.
pub fn counter_clock(t0: u64, hz: u64) -> CounterClock {
    CounterClock::new(hs::now, t0, hz)
}
