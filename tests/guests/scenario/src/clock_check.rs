//! The `clock-check` command-line word: vCPU 0 prints its guest time once
//! a second of that time for [`SECONDS`] seconds, so xtask can hold it
//! against the host's wall clock at which each line arrived (the test of a
//! hypervisor whose counter calibration went wrong under a loaded host).
//!
//! Guest time is what a Xen guest's pvclock computes from its registered
//! `vcpu_time_info`: `system_time` plus the counter ticks since
//! `tsc_timestamp`, scaled by `tsc_to_system_mul` / `tsc_shift` — not the
//! bare `system_time`, which only moves when the hypervisor rewrites the
//! record.

use xen_abi::public::VcpuTimeInfo;

use crate::context::Ctx;
use crate::hypercall;
use crate::time_area::read_time;
use crate::Guest;

/// How many seconds of guest time the check spans (one `CLOCK` line at
/// each whole second, from 0 to this).
pub(crate) const SECONDS: u64 = 10;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Xen's pvclock: the system time at counter value `ticks` by record `t`.
pub(crate) fn guest_ns(t: &VcpuTimeInfo, ticks: u64) -> u64 {
    let delta = ticks.wrapping_sub(t.tsc_timestamp);
    // A counter read just before the record was rewritten: no time passed.
    let delta = if delta > u64::MAX / 2 { 0 } else { delta };
    let shifted = if t.tsc_shift >= 0 { delta << t.tsc_shift } else { delta >> -t.tsc_shift };
    t.system_time + ((shifted as u128 * t.tsc_to_system_mul as u128) >> 32) as u64
}

/// The guest time now and the counter it was computed from, by vCPU 0's
/// time area at `gpa`; `None` when the record cannot be read consistently.
fn now(g: &dyn Guest, gpa: u64) -> Option<(u64, u64)> {
    let t = read_time(g, gpa)?;
    let ticks = g.ticks();
    Some((guest_ns(&t, ticks), ticks))
}

/// Print `CLOCK n=<second> t_ns=<guest time> ticks=<counter>` at each whole
/// second of guest time from the first reading, then `CLOCK END`. Between
/// lines vCPU 0 spins briefly and yields, so the other vCPUs run and the
/// hypervisor keeps rewriting the record, as in any guest.
pub(crate) fn run(cx: &Ctx) {
    let g = cx.g;
    let gpa = cx.time_gpa[0];
    let Some((start, _)) = (if gpa == 0 { None } else { now(g, gpa) }) else {
        cx.say(format_args!("CLOCK END error=no-time-area"));
        return;
    };
    for n in 0..=SECONDS {
        let due = start + n * NS_PER_SEC;
        loop {
            match now(g, gpa) {
                Some((ns, ticks)) if ns >= due => {
                    cx.say(format_args!("CLOCK n={n} t_ns={ns} ticks={ticks}"));
                    break;
                }
                Some(_) => {}
                None => {
                    cx.say(format_args!("CLOCK END error=torn-record"));
                    return;
                }
            }
            g.busy_wait(2_000);
            hypercall::sched_yield(g);
        }
    }
    cx.say(format_args!("CLOCK END seconds={SECONDS}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Xen's counter scaling as the hypervisor computes it (the scenario
    /// crate does not depend on the hypervisor's crates).
    fn scale(hz: u64) -> (u32, i8) {
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
        (((1_000_000_000u128 << 32) / f) as u32, shift)
    }

    fn record(hz: u64, tsc: u64, system_time: u64) -> VcpuTimeInfo {
        let (mul, shift) = scale(hz);
        VcpuTimeInfo { tsc_timestamp: tsc, system_time, tsc_to_system_mul: mul, tsc_shift: shift, ..Default::default() }
    }

    #[test]
    fn one_second_of_ticks_is_one_second_of_guest_time() {
        for hz in [62_500_000u64, 1_000_000_000, 2_605_000_000] {
            let t = record(hz, 1_000, 5 * NS_PER_SEC);
            let ns = guest_ns(&t, 1_000 + hz);
            assert!(ns.abs_diff(6 * NS_PER_SEC) < 1_000, "{hz} Hz: {ns}");
        }
    }

    #[test]
    fn a_counter_behind_the_record_adds_nothing() {
        let t = record(1_000_000_000, 1_000, 7);
        assert_eq!(guest_ns(&t, 999), 7);
    }
}
