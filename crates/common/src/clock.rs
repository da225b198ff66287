//! The hypervisor's time source: [`Clock`] (supplied by the board), the
//! [`TimeSample`] written into `vcpu_time_info`, Xen's counter scaling, and
//! [`CounterClock`] over a free-running counter guests can read too.

/// A sample of the hypervisor's clock, as written into `vcpu_time_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSample {
    /// System time in ns since the hypervisor started.
    pub system_time_ns: u64,
    /// The guest-visible free-running counter at that moment.
    pub tsc: u64,
    /// `tsc_to_system_mul`: ns = ((counter delta << shift) * mul) >> 32.
    pub tsc_to_system_mul: u32,
    /// `tsc_shift`.
    pub tsc_shift: i8,
}

/// The hypervisor's time source, supplied by the board.
pub trait Clock: Sync + Send {
    /// Samples the clock now.
    fn sample(&self) -> TimeSample;
    /// Nanoseconds since start (a cheap form of `sample().system_time_ns`).
    fn now_ns(&self) -> u64 {
        self.sample().system_time_ns
    }
    /// The counter value [`Clock::sample`] reports as `tsc` once system time
    /// has reached `ns` (rounded up, never early): how a deadline in system
    /// time becomes one in the host counter the board idles on.
    fn counter_at(&self, ns: u64) -> u64;
}

/// Xen's counter scaling for a counter running at `hz`: the `(mul, shift)`
/// such that ns = ((delta << shift) * mul) >> 32 (a negative shift shifts
/// right), with the shifted frequency brought into (1 GHz, 2 GHz] so that
/// `mul` fits 32 bits.
pub fn counter_scale(hz: u64) -> (u32, i8) {
    let mut shift: i8 = 0;
    let mut f = hz.max(1) as u128;
    while f <= 1_000_000_000 {
        f <<= 1;
        shift += 1;
    }
    while f > 2_000_000_000 {
        f >>= 1;
        shift -= 1;
    }
    (((1_000_000_000u128 << 32) / f) as u32, shift)
}

/// A [`Clock`] over a free-running counter that guests can read too: the
/// board supplies the read function and the frequency.
pub struct CounterClock {
    read: fn() -> u64,
    origin: u64,
    hz: u64,
    mul: u32,
    shift: i8,
}

impl CounterClock {
    /// A clock whose time zero is counter value `origin`.
    pub fn new(read: fn() -> u64, origin: u64, hz: u64) -> Self {
        let (mul, shift) = counter_scale(hz);
        CounterClock { read, origin, hz: hz.max(1), mul, shift }
    }
}

impl Clock for CounterClock {
    fn sample(&self) -> TimeSample {
        let now = (self.read)();
        let ns = (now.wrapping_sub(self.origin) as u128 * 1_000_000_000 / self.hz as u128) as u64;
        TimeSample { system_time_ns: ns, tsc: now, tsc_to_system_mul: self.mul, tsc_shift: self.shift }
    }

    fn counter_at(&self, ns: u64) -> u64 {
        let ticks = (ns as u128 * self.hz as u128).div_ceil(1_000_000_000);
        self.origin.wrapping_add(ticks.min(u64::MAX as u128) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a guest computes from a record: Xen's pvclock formula.
    fn guest_ns(delta: u64, mul: u32, shift: i8) -> u64 {
        let d = if shift >= 0 { delta << shift } else { delta >> -shift };
        ((d as u128 * mul as u128) >> 32) as u64
    }

    #[test]
    fn scaling_matches_the_counter_for_common_frequencies() {
        for hz in [24_000_000u64, 62_500_000, 1_000_000_000, 2_450_000_000, 3_000_000_000] {
            let (mul, shift) = counter_scale(hz);
            let one_second = guest_ns(hz, mul, shift);
            let err = one_second.abs_diff(1_000_000_000);
            assert!(err < 1_000, "{hz} Hz: guest computes {one_second} ns for 1 s");
        }
    }

    static COUNTER: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    #[test]
    fn counter_at_is_the_first_tick_at_or_after_the_deadline() {
        use core::sync::atomic::Ordering::SeqCst;
        let c = CounterClock::new(|| COUNTER.load(SeqCst), 1000, 62_500_000);
        for ns in [1u64, 15, 16, 17, 1_000_000, 123_456_789] {
            let t = c.counter_at(ns);
            COUNTER.store(t, SeqCst);
            assert!(c.sample().system_time_ns >= ns, "{ns} ns: counter {t} is early");
            COUNTER.store(t - 1, SeqCst);
            assert!(c.sample().system_time_ns < ns, "{ns} ns: counter {t} is late");
        }
        assert_eq!(c.counter_at(0), 1000, "time zero is the origin");
    }
}
