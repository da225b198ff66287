//! vCPU system time: the `vcpu_time_info` record inside vcpu_info and in the
//! optional time area, written with Xen's odd/even `version` protocol (odd
//! while an update is in progress, so a guest retries a torn read).

use core::sync::atomic::{fence, Ordering};

use crate::area::AreaMap;
use crate::clock::TimeSample;
use crate::domain::{Domain, Vcpu};
use xen_abi::layout::GuestAbi;

/// A decoded `vcpu_time_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeInfo {
    /// `version`.
    pub version: u32,
    /// `tsc_timestamp`.
    pub tsc_timestamp: u64,
    /// `system_time` (ns).
    pub system_time: u64,
    /// `tsc_to_system_mul`.
    pub tsc_to_system_mul: u32,
    /// `tsc_shift`.
    pub tsc_shift: i8,
    /// `flags`.
    pub flags: u8,
}

/// Writes a fresh time record for `v` (`update_vcpu_system_time`) into its
/// vcpu_info (wherever it lives) and its time area, if registered.
pub fn update_vcpu_system_time(d: &Domain, v: &Vcpu) {
    let sample = d.clock().sample();
    let (vcpu_info, time_area) = {
        let a = v.areas.lock();
        (a.vcpu_info.clone(), a.time.clone())
    };
    let ti = d.abi().vcpu_info().time;
    write_record(d, &vcpu_info, vcpu_info.offset + ti, &sample);
    if let Some(area) = time_area {
        write_record(d, &area, area.offset, &sample);
    }
}

/// Populates a newly registered time area with a fresh record.
pub(crate) fn write_time_area(d: &Domain, _v: &Vcpu, area: &AreaMap) {
    let sample = d.clock().sample();
    write_record(d, area, area.offset, &sample);
}

/// `version_update_begin`: the odd version marking an update in progress,
/// derived from the version the record holds now, so versions never restart
/// or go backwards (a forked child, a re-registered area, a torn odd value
/// left behind all continue upwards).
pub fn version_update_begin(current: u32) -> u32 {
    current.wrapping_add(1) | 1
}

/// `version_update_end`: the even version closing an update begun at `odd`.
pub fn version_update_end(odd: u32) -> u32 {
    odd.wrapping_add(1)
}

fn write_record(d: &Domain, area: &AreaMap, base: usize, s: &TimeSample) {
    let l = d.abi().time_info();
    let p = &area.page;
    let current = p.read_uint(base + l.version.offset, 4).unwrap_or(0) as u32;
    let odd = version_update_begin(current);
    let _ = p.write_uint(base + l.version.offset, 4, odd as u64);
    fence(Ordering::Release);
    let _ = p.write_uint(base + l.tsc_timestamp.offset, 8, s.tsc);
    let _ = p.write_uint(base + l.system_time.offset, 8, s.system_time_ns);
    let _ = p.write_uint(base + l.tsc_to_system_mul.offset, 4, s.tsc_to_system_mul as u64);
    let _ = p.write_uint(base + l.tsc_shift.offset, 1, s.tsc_shift as u8 as u64);
    let _ = p.write_uint(base + l.flags.offset, 1, TSC_STABLE as u64);
    fence(Ordering::Release);
    let _ = p.write_uint(base + l.version.offset, 4, version_update_end(odd) as u64);
}

/// A time record for `s` with `version`, as the bytes of a `vcpu_time_info`
/// in `abi`'s layout (for areas written through guest-virtual memory);
/// returns the buffer and the layout's size.
pub fn encode_record(abi: &dyn GuestAbi, s: &TimeSample, version: u32) -> ([u8; 32], usize) {
    let l = abi.time_info();
    let mut buf = [0u8; 32];
    let mut put = |f: xen_abi::layout::Field, v: u64| {
        buf[f.offset..f.offset + f.size].copy_from_slice(&v.to_le_bytes()[..f.size])
    };
    put(l.version, version as u64);
    put(l.tsc_timestamp, s.tsc);
    put(l.system_time, s.system_time_ns);
    put(l.tsc_to_system_mul, s.tsc_to_system_mul as u64);
    put(l.tsc_shift, s.tsc_shift as u8 as u64);
    put(l.flags, TSC_STABLE as u64);
    (buf, l.size)
}

/// Lantern runs on one physical CPU with one counter: always stable.
const TSC_STABLE: u8 = xen_abi::nr::pvclock::TSC_STABLE_BIT;

/// Decodes a `vcpu_time_info` at `base` in `area`'s frame.
pub fn read_record(d: &Domain, area: &AreaMap, base: usize) -> TimeInfo {
    let l = d.abi().time_info();
    let rd = |f: xen_abi::layout::Field| area.page.read_uint(base + f.offset, f.size).unwrap_or(0);
    TimeInfo {
        version: rd(l.version) as u32,
        tsc_timestamp: rd(l.tsc_timestamp),
        system_time: rd(l.system_time),
        tsc_to_system_mul: rd(l.tsc_to_system_mul) as u32,
        tsc_shift: rd(l.tsc_shift) as u8 as i8,
        flags: rd(l.flags) as u8,
    }
}
