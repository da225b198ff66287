//! The runstate and time areas a guest registers by guest-virtual address
//! (`VCPUOP_register_runstate_memory_area`,
//! `VCPUOP_register_vcpu_time_memory_area`), as Xen keeps them: only the
//! address is stored — no page is mapped or referenced — and every update
//! translates it afresh through the vCPU's own page tables, so it is written
//! only while that vCPU is the one running (the scheduler calls
//! [`update_runstate`] and [`update_time`] at the edges of its time slice).
//!
//! Xen's rules, which Lantern follows:
//! * registration never fails on the address: a null address unregisters,
//!   any other is stored and written once through the caller's page tables;
//!   an address that does not translate is a write silently not made, now
//!   and at every later update;
//! * a physically registered area of the same kind, when there is one, is
//!   the one updated; the guest-virtual one waits until it is unregistered;
//! * the runstate record is written with `XEN_RUNSTATE_UPDATE` set in
//!   `state_entry_time` around the write only when the domain enabled
//!   `VMASST_TYPE_runstate_update_flag` (the physical area always uses it);
//! * the time record is written with the odd/even `version` protocol.

use core::sync::atomic::{fence, Ordering};

use crate::addr::Gva;
use crate::arch::ArchVcpu;
use crate::domain::{Domain, Vcpu};
use crate::guest_memory::{GuestMemory, VirtMem};
use crate::runstate_info::RunstateInfo;
use xen_abi::errno::XenResult;
use xen_abi::nr::runstate::XEN_RUNSTATE_UPDATE;
use xen_abi::nr::vmasst::TYPE_RUNSTATE_UPDATE_FLAG;

/// `VCPUOP_register_runstate_memory_area` for `v`: stores `va` (0
/// unregisters) and writes the current runstate there through `via`, the
/// caller's arch context (Xen copies through the current vCPU's tables,
/// whichever vCPU the area belongs to).
pub fn register_runstate(d: &Domain, v: &Vcpu, va: Gva, via: &dyn ArchVcpu) {
    let va = (va.0 != 0).then_some(va);
    v.areas.lock().runstate_va = va;
    if let Some(va) = va {
        let (buf, size) = crate::runstate::encode(d.abi(), &v.runstate());
        let _ = VirtMem::new(d, via).write_bytes(va, &buf[..size]);
    }
}

/// `VCPUOP_register_vcpu_time_memory_area` for `v`: stores `va` (0
/// unregisters) and forces a time update: the vcpu_info record, and the new
/// area through `via`, the caller's arch context — unless a physical time
/// area is registered, which is then the one written.
pub fn register_time(d: &Domain, v: &Vcpu, va: Gva, via: &dyn ArchVcpu) {
    v.areas.lock().time_va = (va.0 != 0).then_some(va);
    crate::time::update_vcpu_system_time(d, v);
    update_time(d, v, via);
}

/// Refreshes `v`'s guest-virtual runstate area, if it has one and no
/// physical area, through `arch`, `v`'s own context while it is current.
/// Returns whether the record was written.
pub fn update_runstate(d: &Domain, v: &Vcpu, arch: &dyn ArchVcpu) -> bool {
    let va = {
        let a = v.areas.lock();
        match (&a.runstate, a.runstate_va) {
            (None, Some(va)) => va,
            _ => return false,
        }
    };
    write_runstate(d, va, &v.runstate(), arch).is_ok()
}

/// Refreshes `v`'s guest-virtual time area under the same rules as
/// [`update_runstate`].
pub fn update_time(d: &Domain, v: &Vcpu, arch: &dyn ArchVcpu) -> bool {
    let va = {
        let a = v.areas.lock();
        match (&a.time, a.time_va) {
            (None, Some(va)) => va,
            _ => return false,
        }
    };
    write_time(d, va, arch).is_ok()
}

/// Writes `info` at `va` in the layout in force. With the update-flag
/// assist on, the byte of `state_entry_time` that holds
/// `XEN_RUNSTATE_UPDATE` is stored first with the flag set, then the record
/// (flag still set), then that byte again with the flag clear, each ordered
/// after the previous one.
pub fn write_runstate(d: &Domain, va: Gva, info: &RunstateInfo, arch: &dyn ArchVcpu) -> XenResult<()> {
    let abi = d.abi();
    let mem = VirtMem::new(d, arch);
    let flagged = d.vm_assist_enabled(TYPE_RUNSTATE_UPDATE_FLAG);
    let mut info = *info;
    let entry = abi.runstate().state_entry_time;
    // Little-endian in every layout: the flag is in the field's last byte.
    let flag_byte = Gva(va.0.wrapping_add((entry.offset + entry.size - 1) as u64));
    let top = |t: u64| [(t >> 56) as u8];
    if flagged {
        info.state_entry_time |= XEN_RUNSTATE_UPDATE;
        mem.write_bytes(flag_byte, &top(info.state_entry_time))?;
        fence(Ordering::Release);
    }
    let (buf, size) = crate::runstate::encode(abi, &info);
    let r = mem.write_bytes(va, &buf[..size]);
    if flagged {
        info.state_entry_time &= !XEN_RUNSTATE_UPDATE;
        fence(Ordering::Release);
        mem.write_bytes(flag_byte, &top(info.state_entry_time))?;
    }
    r
}

/// Writes a fresh time record at `va` in the layout in force: the odd
/// `version` alone, then the record, then the even `version`.
pub fn write_time(d: &Domain, va: Gva, arch: &dyn ArchVcpu) -> XenResult<()> {
    let abi = d.abi();
    let l = abi.time_info();
    let mem = VirtMem::new(d, arch);
    let version_at = Gva(va.0.wrapping_add(l.version.offset as u64));
    let mut current = [0u8; 4];
    mem.read_bytes(version_at, &mut current)?;
    let odd = crate::time::version_update_begin(u32::from_le_bytes(current));
    mem.write_bytes(version_at, &odd.to_le_bytes())?;
    fence(Ordering::Release);
    let (buf, size) = crate::time::encode_record(abi, &d.clock().sample(), odd);
    mem.write_bytes(va, &buf[..size])?;
    fence(Ordering::Release);
    mem.write_bytes(version_at, &crate::time::version_update_end(odd).to_le_bytes())
}
