//! The time area (`VCPUOP_register_vcpu_time_phys_area`): checks that it is
//! registered, consistent and advancing; the consistent read of a
//! `vcpu_time_info` (also the one inside vcpu_info); the counter rate it
//! publishes.

use core::mem::offset_of;

use crate::context::{expect_ok, read_obj, CheckResult, Ctx};
use crate::hypercall;
use crate::Guest;
use xen_abi::public::VcpuTimeInfo;

/// Byte offset of `version` in `struct vcpu_time_info`.
const VERSION_OFFSET: u64 = offset_of!(VcpuTimeInfo, version) as u64;

/// How often to retry a read the hypervisor keeps tearing.
const READ_TRIES: u32 = 1000;

/// Consistent read of a `vcpu_time_info` at `gpa`: `version` even and
/// unchanged across the read (Xen's seqlock protocol).
pub(crate) fn read_time(g: &dyn Guest, gpa: u64) -> Option<VcpuTimeInfo> {
    for _ in 0..READ_TRIES {
        // Byte by byte from the start, so `version` is read first.
        let t: VcpuTimeInfo = read_obj(g, gpa);
        let again: u32 = read_obj(g, gpa + VERSION_OFFSET);
        if t.version == again && t.version.is_multiple_of(2) {
            return Some(t);
        }
        core::hint::spin_loop();
    }
    None
}

/// The counter rate a time area at `gpa` publishes: system time (ns) =
/// ((ticks << shift) * tsc_to_system_mul) >> 32, so Hz = 1e9 · 2^32 / mul,
/// scaled back by the shift. 0 if no area (`gpa` 0) or no multiplier.
pub(crate) fn tick_hz(g: &dyn Guest, gpa: u64) -> u64 {
    if gpa == 0 {
        return 0;
    }
    let Some(t) = read_time(g, gpa) else { return 0 };
    if t.tsc_to_system_mul == 0 {
        return 0;
    }
    let hz = (1_000_000_000u128 << 32) / t.tsc_to_system_mul as u128;
    let hz = if t.tsc_shift >= 0 { hz >> t.tsc_shift } else { hz << (-t.tsc_shift) };
    hz as u64
}

/// Register vCPU 0's time area at the start of the areas page and watch it.
pub(crate) fn checks(cx: &mut Ctx) {
    let gpa = cx.pages.areas;
    let rc = hypercall::register_vcpu_time_phys_area(cx.g, 0, gpa);
    if rc == 0 {
        cx.time_gpa[0] = gpa;
    }
    let first = if rc == 0 { read_time(cx.g, gpa) } else { None };
    cx.check("time_area_version_even", version_even(cx, rc, gpa, first));
    cx.check("time_area_system_time_advancing", system_time_advancing(cx, gpa, first));
}

/// The registration (result `rc`) succeeded and the first reading is
/// consistent, with a system time.
fn version_even(cx: &Ctx, rc: i64, gpa: u64, first: Option<VcpuTimeInfo>) -> CheckResult {
    expect_ok(rc)?;
    match first {
        Some(t) if t.system_time != 0 => Ok(()),
        Some(t) => Err(reason!("system_time is 0 (version {})", t.version)),
        None => Err(reason!("version stayed odd/unstable: {}", cx.read::<u32>(gpa + VERSION_OFFSET))),
    }
}

/// Later readings show a larger system time than the first.
fn system_time_advancing(cx: &Ctx, gpa: u64, first: Option<VcpuTimeInfo>) -> CheckResult {
    let Some(first) = first else { return Err(reason!("no valid first reading")) };
    let t1 = first.system_time;
    let mut last = t1;
    let moved = cx.wait_for(|| {
        cx.g.busy_wait(10_000);
        if let Some(t) = read_time(cx.g, gpa) {
            last = t.system_time;
        }
        last > t1
    });
    ensure!(moved, "system_time stuck at {t1}");
    Ok(())
}
