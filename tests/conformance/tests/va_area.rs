//! The runstate and time areas registered by guest-virtual address
//! (`VCPUOP_register_runstate_memory_area`,
//! `VCPUOP_register_vcpu_time_memory_area`) and `vm_assist`, driven as a
//! guest would, with a fake vCPU whose page tables put guest-virtual
//! addresses far from the guest-physical ones and can be moved.

use std::sync::Mutex;

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::{ArchVcpu, GdbRegisters, GuestMode, Preemption, VcpuExit, VcpuInitContext};
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::hypercall::{dispatch, Call};
use lantern_common::sched::Hypervisor;
use lantern_common::{lifecycle, runstate, time, va_area};
use lantern_conformance::*;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::runstate::{BLOCKED, RUNNABLE, RUNNING, XEN_RUNSTATE_UPDATE};
use xen_abi::nr::{vcpuop, vmasst};
use xen_abi::public::VcpuRegisterArea;
use zerocopy::IntoBytes;

/// Where the fake vCPU's page tables put guest-physical 0.
const VBASE: u64 = 0x4000_0000;
/// Guest-physical page of the hypercall argument.
const ARG_GPA: u64 = 0x1000;
/// The area's guest-virtual address: gfn 11, offset 64, under [`VBASE`].
const AREA_VA: u64 = VBASE + (11 << 12) + 64;

fn arch_at(virt_base: u64) -> Box<dyn ArchVcpu> {
    FakeVcpu::identity(RAM_PAGES).mapped_at(virt_base).boxed()
}

/// `vcpu_op(cmd, target, &arg)` from vCPU 0, the argument at [`ARG_GPA`]
/// (seen by the caller at `VBASE + ARG_GPA`).
fn vcpu_op(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], cmd: u64, target: u64, arg: &[u8]) -> i64 {
    write_phys(d, ARG_GPA, arg).unwrap();
    dispatch(&mut Call::new(d, 0, arch), nr::VCPU_OP, [cmd, target, VBASE + ARG_GPA, 0, 0, 0]).ret
}

fn vm_assist(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], cmd: u64, ty: u64) -> i64 {
    dispatch(&mut Call::new(d, 0, arch), nr::VM_ASSIST, [cmd, ty, 0, 0, 0, 0]).ret
}

fn register_arg(va: u64) -> Vec<u8> {
    VcpuRegisterArea { addr: va }.as_bytes().to_vec()
}

/// A runstate record read from guest-physical `gpa` in `abi`'s layout, by
/// the layout's field offsets.
fn runstate_at(d: &Domain, abi: &dyn GuestAbi, gpa: u64) -> (u32, u64, [u64; 4]) {
    let l = abi.runstate();
    let rd = |off: usize, size: usize| read(d, gpa >> 12, (gpa & 0xfff) as usize + off, size);
    let mut t = [0; 4];
    for (i, x) in t.iter_mut().enumerate() {
        *x = rd(l.time.offset + 8 * i, 8);
    }
    (rd(l.state.offset, l.state.size) as u32, rd(l.state_entry_time.offset, 8), t)
}

#[test]
fn runstate_by_va_lands_through_the_vcpus_tables_at_each_update() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let mut arch = vec![arch_at(VBASE)];
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, &register_arg(AREA_VA)), 0);
        let v = d.vcpu(0).unwrap();
        assert_eq!(v.areas().runstate_va, Some(Gva(AREA_VA)));
        assert!(v.areas().runstate.is_none(), "{}: no page mapped for a VA registration", abi.name());
        let gpa = AREA_VA - VBASE;
        assert_eq!(runstate_at(&d, abi, gpa).0, RUNNABLE, "{}: written at registration", abi.name());

        clock.advance(700);
        runstate::change(&d, v, RUNNING);
        assert!(va_area::update_runstate(&d, v, &*arch[0]));
        let (state, entry, t) = runstate_at(&d, abi, gpa);
        assert_eq!((state, entry, t), (RUNNING, v.runstate().state_entry_time, v.runstate().time), "{}", abi.name());
        assert_eq!(t[RUNNABLE as usize], 700);

        // The guest moves the mapping: the same VA now means gfn 16.
        arch[0] = arch_at(VBASE - 0x5000);
        clock.advance(300);
        runstate::change(&d, v, BLOCKED);
        assert!(va_area::update_runstate(&d, v, &*arch[0]));
        let moved = runstate_at(&d, abi, gpa + 0x5000);
        assert_eq!(moved.0, BLOCKED, "{}: the update followed the new translation", abi.name());
        assert_eq!(moved.2[RUNNING as usize], 300);
        assert_eq!(runstate_at(&d, abi, gpa).0, RUNNING, "{}: the old place is left alone", abi.name());
    }
}

#[test]
fn an_unmapped_va_is_accepted_and_never_written_and_zero_unregisters() {
    for abi in layouts() {
        let (d, _clock) = domain(abi, 2);
        let mut arch = vec![arch_at(VBASE), arch_at(VBASE)];
        let before = d.p2m.lock().iter().count();
        // Below VBASE nothing translates: Xen stores the handle and returns 0.
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 1, &register_arg(0x10)), 0);
        let v1 = d.vcpu(1).unwrap();
        assert_eq!(v1.areas().runstate_va, Some(Gva(0x10)));
        assert!(!va_area::update_runstate(&d, v1, &*arch[1]), "{}: the write is not made", abi.name());
        assert_eq!(d.p2m.lock().iter().count(), before);
        // A null handle unregisters.
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 1, &register_arg(0)), 0);
        assert_eq!(v1.areas().runstate_va, None);
        assert!(!va_area::update_runstate(&d, v1, &*arch[1]));
        // An argument the caller cannot read is -EFAULT, a vCPU it names
        // that does not exist -ENOENT.
        let bad = dispatch(
            &mut Call::new(&d, 0, &mut arch),
            nr::VCPU_OP,
            [vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, ARG_GPA, 0, 0, 0],
        );
        assert_eq!(bad.ret, Errno::EFAULT.to_hypercall_ret());
        assert_eq!(
            vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 7, &register_arg(AREA_VA)),
            Errno::ENOENT.to_hypercall_ret()
        );
    }
}

#[test]
fn a_physical_area_is_the_one_updated_while_both_are_registered() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let mut arch = vec![arch_at(VBASE)];
        let v = d.vcpu(0).unwrap();
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, &register_arg(AREA_VA)), 0);
        let phys = (20u64 << 12) + 128;
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_PHYS_AREA, 0, &register_arg(phys)), 0);
        clock.advance(100);
        runstate::change(&d, v, RUNNING);
        assert!(!va_area::update_runstate(&d, v, &*arch[0]), "{}: the VA area waits", abi.name());
        assert_eq!(runstate_at(&d, abi, phys).0, RUNNING);
        assert_eq!(runstate_at(&d, abi, AREA_VA - VBASE).0, RUNNABLE);
        // Unregistering the physical area hands updates back to the VA one.
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_PHYS_AREA, 0, &register_arg(!0)), 0);
        assert!(va_area::update_runstate(&d, v, &*arch[0]));
        assert_eq!(runstate_at(&d, abi, AREA_VA - VBASE).0, RUNNING);
    }
}

#[test]
fn a_32_bit_caller_passes_only_a_4_byte_handle() {
    let abi = layout("x86_32");
    let (d, _clock) = domain(abi, 1);
    let mut arch = vec![arch_at(VBASE)];
    // The upper half of the union is not part of a compat handle.
    let arg = register_arg(AREA_VA | (0xdead_beef << 32));
    assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, &arg), 0);
    assert_eq!(d.vcpu(0).unwrap().areas().runstate_va, Some(Gva(AREA_VA)));
    // A native caller's handle is the whole 8 bytes.
    let (d, _clock) = domain(layout("x86_64"), 1);
    assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, &arg), 0);
    assert_eq!(d.vcpu(0).unwrap().areas().runstate_va, Some(Gva(AREA_VA | (0xdead_beef << 32))));
}

/// A fake vCPU that, each time it is asked to translate (so before each
/// store the update makes), records the area's `state_entry_time` as a
/// reader looking at guest memory at that moment would see it.
struct Observer {
    inner: FakeVcpu,
    entry_gpa: u64,
    seen: Mutex<Vec<u64>>,
}

impl GdbRegisters for Observer {
    fn target_xml(&self) -> &'static str {
        ""
    }
    fn read_registers(&self, _out: &mut [u8]) -> usize {
        0
    }
    fn write_registers(&mut self, _data: &[u8]) -> XenResult<()> {
        Err(Errno::EINVAL)
    }
}

impl ArchVcpu for Observer {
    fn run(&mut self, d: &Domain, p: &mut dyn Preemption) -> VcpuExit {
        self.inner.run(d, p)
    }
    fn complete_hypercall(&mut self, ret: i64) {
        self.inner.complete_hypercall(ret)
    }
    fn inject_upcall(&mut self, d: &Domain) {
        self.inner.inject_upcall(d)
    }
    fn translate(&self, d: &Domain, gva: Gva, write: bool) -> XenResult<Gpa> {
        let mut b = [0u8; 8];
        PhysMem::new(d).read_bytes(Gpa(self.entry_gpa), &mut b).unwrap();
        self.seen.lock().unwrap().push(u64::from_le_bytes(b));
        self.inner.translate(d, gva, write)
    }
    fn mode(&self) -> GuestMode {
        self.inner.mode()
    }
    fn guest_abi(&self, d: &Domain) -> &'static dyn GuestAbi {
        self.inner.guest_abi(d)
    }
    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        self.inner.initialise(ctx)
    }
    fn initialise_arg_size(&self) -> usize {
        self.inner.initialise_arg_size()
    }
    fn check_upcall_vector(&self, vector: u8) -> XenResult<()> {
        self.inner.check_upcall_vector(vector)
    }
    fn xen_features(&self, idx: u32) -> u32 {
        self.inner.xen_features(idx)
    }
    fn vm_assist_valid_mask(&self) -> u64 {
        self.inner.vm_assist_valid_mask()
    }
    fn time_area_by_va_supported(&self) -> XenResult<()> {
        self.inner.time_area_by_va_supported()
    }
    fn set_timer_op_timeout(&self, args: &[u64; 6]) -> XenResult<u64> {
        self.inner.set_timer_op_timeout(args)
    }
    fn gfn_limit(&self) -> u64 {
        self.inner.gfn_limit()
    }
}

#[test]
fn update_flag_is_seen_mid_update_only_with_the_assist() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let mut arch = vec![arch_at(VBASE)];
        let v = d.vcpu(0).unwrap();
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, &register_arg(AREA_VA)), 0);
        let entry_gpa = AREA_VA - VBASE + abi.runstate().state_entry_time.offset as u64;
        let observer = || Observer {
            inner: FakeVcpu::identity(RAM_PAGES).mapped_at(VBASE),
            entry_gpa,
            seen: Mutex::new(Vec::new()),
        };
        let flagged = |seen: &[u64]| seen.iter().any(|t| t & XEN_RUNSTATE_UPDATE != 0);

        // Assist off: one store of the whole record, never flagged.
        let off = observer();
        clock.advance(10);
        runstate::change(&d, v, RUNNING);
        assert!(va_area::update_runstate(&d, v, &off));
        assert!(!flagged(&off.seen.lock().unwrap()), "{}: no flag without the assist", abi.name());

        assert_eq!(vm_assist(&d, &mut arch, vmasst::CMD_ENABLE, vmasst::TYPE_RUNSTATE_UPDATE_FLAG as u64), 0);
        let on = observer();
        clock.advance(10);
        runstate::change(&d, v, BLOCKED);
        assert!(va_area::update_runstate(&d, v, &on));
        let seen = on.seen.lock().unwrap().clone();
        assert!(flagged(&seen), "{}: a reader mid-update sees XEN_RUNSTATE_UPDATE: {seen:x?}", abi.name());
        let (state, entry, _) = runstate_at(&d, abi, AREA_VA - VBASE);
        assert_eq!((state, entry), (BLOCKED, v.runstate().state_entry_time), "{}: flag cleared at the end", abi.name());
    }
}

#[test]
fn vm_assist_takes_the_arch_mask_and_xens_errnos() {
    for abi in layouts() {
        let (d, _clock) = domain(abi, 1);
        let mut arch = fake_vcpus(1);
        let flag = vmasst::TYPE_RUNSTATE_UPDATE_FLAG as u64;
        assert_eq!(vm_assist(&d, &mut arch, vmasst::CMD_ENABLE, flag), 0);
        assert!(d.vm_assist_enabled(vmasst::TYPE_RUNSTATE_UPDATE_FLAG));
        assert_eq!(vm_assist(&d, &mut arch, vmasst::CMD_DISABLE, flag), 0);
        assert!(!d.vm_assist_enabled(vmasst::TYPE_RUNSTATE_UPDATE_FLAG));
        // The mask is the arch's: the fake also allows type 1.
        assert_eq!(vm_assist(&d, &mut arch, vmasst::CMD_ENABLE, vmasst::TYPE_4GB_SEGMENTS_NOTIFY as u64), 0);
        assert_eq!(d.vm_assist(), FAKE_VM_ASSIST_MASK & !(1 << flag));
        // A type outside the mask, or beyond a long's bits: -EINVAL, even
        // with an unknown command.
        for ty in [vmasst::TYPE_4GB_SEGMENTS as u64, vmasst::TYPE_M2P_STRICT as u64, 64, 1000] {
            assert_eq!(vm_assist(&d, &mut arch, vmasst::CMD_ENABLE, ty), Errno::EINVAL.to_hypercall_ret(), "type {ty}");
            assert_eq!(vm_assist(&d, &mut arch, 7, ty), Errno::EINVAL.to_hypercall_ret());
        }
        // A valid type with an unknown command: -ENOSYS.
        assert_eq!(vm_assist(&d, &mut arch, 2, flag), Errno::ENOSYS.to_hypercall_ret());
        // Both arguments are unsigned ints: the registers' upper halves are
        // not part of them.
        assert_eq!(vm_assist(&d, &mut arch, 1 << 32, (7 << 32) | flag), 0);
        assert!(d.vm_assist_enabled(vmasst::TYPE_RUNSTATE_UPDATE_FLAG));
    }
}

/// The `vcpu_time_info` at guest-physical `gpa`: (version, system_time).
fn time_at(d: &Domain, abi: &dyn GuestAbi, gpa: u64) -> (u32, u64) {
    let l = abi.time_info();
    let rd = |f: xen_abi::layout::Field| read(d, gpa >> 12, (gpa & 0xfff) as usize + f.offset, f.size);
    (rd(l.version) as u32, rd(l.system_time))
}

#[test]
fn time_area_by_va_is_written_through_the_translation_with_even_versions() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let mut arch = vec![arch_at(VBASE)];
        let v = d.vcpu(0).unwrap();
        let va = VBASE + (12 << 12) + 32;
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA, 0, &register_arg(va)), 0);
        assert_eq!(v.areas().time_va, Some(Gva(va)));
        let (v0, t0) = time_at(&d, abi, va - VBASE);
        assert!(v0.is_multiple_of(2) && v0 > 0, "{}: a complete record at registration", abi.name());
        assert_eq!(t0, d.clock().sample().system_time_ns);
        clock.advance(5_000);
        time::update_vcpu_system_time(&d, v);
        assert!(va_area::update_time(&d, v, &*arch[0]));
        let (v1, t1) = time_at(&d, abi, va - VBASE);
        assert!(v1.is_multiple_of(2) && v1 > v0, "{}: versions continue upwards", abi.name());
        assert_eq!(t1 - t0, 5_000);
        // Moved mapping: the next update lands at the new place.
        arch[0] = arch_at(VBASE - 0x3000);
        assert!(va_area::update_time(&d, v, &*arch[0]));
        assert!(time_at(&d, abi, va - VBASE + 0x3000).0.is_multiple_of(2));
        assert!(time_at(&d, abi, va - VBASE + 0x3000).0 > 0);
    }
}

#[test]
fn time_area_by_va_is_the_arch_errno_where_the_arch_lacks_it() {
    for abi in layouts() {
        let (d, _clock) = domain(abi, 1);
        let mut arch =
            vec![FakeVcpu::identity(RAM_PAGES).mapped_at(VBASE).without_time_area_by_va(Errno::EINVAL).boxed()];
        let va = VBASE + (12 << 12);
        assert_eq!(
            vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA, 0, &register_arg(va)),
            Errno::EINVAL.to_hypercall_ret()
        );
        assert_eq!(d.vcpu(0).unwrap().areas().time_va, None);
        assert_eq!(time_at(&d, abi, va - VBASE).0, 0, "{}: nothing written", abi.name());
    }
}

/// A board whose slices never end early and that has no host interrupts.
struct NoPreemption;

impl Preemption for NoPreemption {
    fn slice_deadline(&self) -> Option<u64> {
        None
    }
    fn host_interrupt(&mut self) -> bool {
        false
    }
}

#[test]
fn the_scheduler_rewrites_va_areas_around_each_slice_through_the_running_vcpu() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let mut arch = vec![arch_at(VBASE)];
        let time_va = VBASE + (12 << 12) + 32;
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, &register_arg(AREA_VA)), 0);
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA, 0, &register_arg(time_va)), 0);
        let (v0, _) = time_at(&d, abi, time_va - VBASE);
        let mut hv = Hypervisor::new(vec![slot(d.clone(), arch)]);
        clock.advance(1_000);
        // The fake vCPU halts at once: running, then blocked at the slice's end.
        hv.run_slice(0, 0, &mut NoPreemption);
        let v = d.vcpu(0).unwrap();
        let (state, entry, t) = runstate_at(&d, abi, AREA_VA - VBASE);
        assert_eq!((state, entry, t), (BLOCKED, v.runstate().state_entry_time, v.runstate().time), "{}", abi.name());
        let (v1, t1) = time_at(&d, abi, time_va - VBASE);
        assert!(v1 > v0 && v1.is_multiple_of(2), "{}: time area rewritten at the slice's start", abi.name());
        assert_eq!(t1, d.clock().sample().system_time_ns);
        // The guest remaps the page: the next slice writes the new place.
        hv.slots_mut()[0].vcpus[0] = arch_at(VBASE - 0x5000);
        d.vcpu_unblock(v);
        clock.advance(1_000);
        hv.run_slice(0, 0, &mut NoPreemption);
        assert_eq!(runstate_at(&d, abi, AREA_VA - VBASE + 0x5000).2, v.runstate().time, "{}", abi.name());
    }
}

#[test]
fn a_physical_time_area_is_the_one_written_even_at_a_va_registration() {
    for abi in layouts() {
        let (d, _clock) = domain(abi, 1);
        let mut arch = vec![arch_at(VBASE)];
        let phys = (20u64 << 12) + 256;
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_PHYS_AREA, 0, &register_arg(phys)), 0);
        let va = VBASE + (12 << 12);
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA, 0, &register_arg(va)), 0);
        assert_eq!(time_at(&d, abi, va - VBASE).0, 0, "{}: the VA area waits", abi.name());
        let v = d.vcpu(0).unwrap();
        assert!(!va_area::update_time(&d, v, &*arch[0]));
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_PHYS_AREA, 0, &register_arg(!0)), 0);
        assert!(va_area::update_time(&d, v, &*arch[0]));
        assert!(time_at(&d, abi, va - VBASE).0 > 0);
    }
}

#[test]
fn a_soft_reset_forgets_both_va_registrations() {
    for abi in layouts() {
        let (d, _clock) = domain(abi, 1);
        let mut arch = vec![arch_at(VBASE)];
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_MEMORY_AREA, 0, &register_arg(AREA_VA)), 0);
        let time_va = VBASE + (12 << 12);
        assert_eq!(vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA, 0, &register_arg(time_va)), 0);
        d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
        assert_eq!(lifecycle::soft_reset(&d, &FakeDomain), Ok(()), "{}", abi.name());
        let a = d.vcpu(0).unwrap().areas();
        assert_eq!((a.runstate_va, a.time_va), (None, None), "{}", abi.name());
    }
}
