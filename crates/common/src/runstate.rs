//! vCPU runstate accounting and the runstate area, written with the
//! `XEN_RUNSTATE_UPDATE` protocol so a guest reading concurrently can tell a
//! torn record from a complete one.

use crate::area::AreaMap;
use crate::domain::{Domain, Vcpu};
use xen_abi::layout::GuestAbi;

use crate::runstate_info::RunstateInfo;
use xen_abi::nr::runstate::XEN_RUNSTATE_UPDATE;

/// Moves `v` to `new_state` at the clock's current time, accounting the time
/// spent in the old state, and refreshes the guest's runstate area.
pub fn change(d: &Domain, v: &Vcpu, new_state: u32) {
    let now = d.clock().now_ns();
    {
        let mut r = v.runstate.lock();
        if r.state == new_state {
            return;
        }
        let spent = now.saturating_sub(r.state_entry_time);
        let old = r.state as usize;
        if let Some(t) = r.time.get_mut(old) {
            *t += spent;
        }
        r.state = new_state;
        r.state_entry_time = now;
    }
    update_runstate_area(d, v);
}

/// Writes `v`'s runstate to its registered runstate area, if any. Returns
/// whether an area was written.
pub fn update_runstate_area(d: &Domain, v: &Vcpu) -> bool {
    let Some(area) = v.areas.lock().runstate.clone() else {
        return false;
    };
    write_area(d.abi(), &area, &v.runstate());
    true
}

/// Writes `info` into `area` in `abi`'s layout: first `state_entry_time`
/// with `XEN_RUNSTATE_UPDATE` set, then the record, then the final
/// `state_entry_time`; each step ordered after the previous one.
pub fn write_area(abi: &dyn GuestAbi, area: &AreaMap, info: &RunstateInfo) {
    use core::sync::atomic::{fence, Ordering};
    let l = abi.runstate();
    let base = area.offset;
    let p = &area.page;
    let entry = l.state_entry_time;
    let _ = p.write_uint(base + entry.offset, entry.size, info.state_entry_time | XEN_RUNSTATE_UPDATE);
    fence(Ordering::Release);
    let _ = p.write_uint(base + l.state.offset, l.state.size, info.state as u64);
    for (i, t) in info.time.iter().enumerate() {
        let _ = p.write_uint(base + l.time.offset + i * 8, 8, *t);
    }
    fence(Ordering::Release);
    let _ = p.write_uint(base + entry.offset, entry.size, info.state_entry_time);
}

/// `info` as the bytes of a `vcpu_runstate_info` in `abi`'s layout (the
/// compat one is packed), for `VCPUOP_get_runstate_info`; returns the buffer
/// and the layout's size.
pub fn encode(abi: &dyn GuestAbi, info: &RunstateInfo) -> ([u8; 64], usize) {
    let l = abi.runstate();
    let mut buf = [0u8; 64];
    let mut put = |off: usize, bytes: &[u8]| buf[off..off + bytes.len()].copy_from_slice(bytes);
    put(l.state.offset, &info.state.to_le_bytes()[..l.state.size]);
    put(l.state_entry_time.offset, &info.state_entry_time.to_le_bytes()[..l.state_entry_time.size]);
    for (i, t) in info.time.iter().enumerate() {
        put(l.time.offset + i * 8, &t.to_le_bytes());
    }
    (buf, l.size)
}

/// Reads a runstate record from guest memory in `abi`'s layout.
pub fn read_area(abi: &dyn GuestAbi, area: &AreaMap) -> RunstateInfo {
    let l = abi.runstate();
    let p = &area.page;
    let rd = |off: usize, size: usize| p.read_uint(area.offset + off, size).unwrap_or(0);
    let mut time = [0; 4];
    for (i, t) in time.iter_mut().enumerate() {
        *t = rd(l.time.offset + i * 8, 8);
    }
    RunstateInfo {
        state: rd(l.state.offset, l.state.size) as u32,
        state_entry_time: rd(l.state_entry_time.offset, l.state_entry_time.size),
        time,
    }
}
