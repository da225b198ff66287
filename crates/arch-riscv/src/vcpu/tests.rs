//! Host tests of the riscv64 vCPU logic, against the [`FakeHart`] double.

use super::*;
use crate::hw::fake::FakeHart;
use crate::sbi::{ext, SBI_EXT_XEN};
use crate::trap::INTERRUPT;
use lantern_common::addr::Gfn;
use lantern_common::domain::VPF_BLOCKED;
use lantern_common::memory::Page;
use lantern_testkit::TestDomain;

const ENTRY: u64 = 0x20_0000;
const DTB: u64 = 0x3e0_0000;

struct Fixture {
    d: Arc<Domain>,
    arch: RiscvDomain,
    hart: &'static FakeHart,
}

fn fixture(vcpus: u32) -> Fixture {
    let d = TestDomain::new(&crate::layout::RISCV64).id(3).vcpus(vcpus).build();
    let hart = FakeHart::leaked();
    Fixture { d, arch: RiscvDomain::new(hart, 7, vcpus), hart }
}

impl Fixture {
    /// vCPU `id`; vCPU 0 powered on at [`ENTRY`] with a1 = [`DTB`].
    fn vcpu(&self, id: u32) -> RiscvVcpu {
        let mut v = RiscvVcpu::new(self.arch.shared.clone(), self.d.id, id);
        if id == 0 {
            v.initialise(&VcpuInitContext::PowerOn { entry: ENTRY, context_id: DTB }).unwrap();
        }
        v
    }
}

/// The board's slice timer: a fixed deadline.
struct Slice(Option<u64>);
impl Preemption for Slice {
    fn slice_deadline(&self) -> Option<u64> {
        self.0
    }
    fn host_interrupt(&mut self) -> bool {
        false
    }
}

fn exception(code: u64) -> Trap {
    Trap { scause: code, ..Trap::default() }
}

fn ecall() -> Trap {
    exception(cause::VS_ECALL)
}

/// An SBI call from `v` handled inside the backend: (exit, a0, a1).
fn sbi(v: &mut RiscvVcpu, d: &Domain, eid: u64, fid: u64, args: &[u64]) -> (Option<VcpuExit>, i64, u64) {
    v.ctx.x[17] = eid;
    v.ctx.x[16] = fid;
    v.ctx.x[10..10 + args.len()].copy_from_slice(args);
    let exit = v.handle(d, &ecall(), &mut Slice(None));
    (exit, v.ctx.x[10] as i64, v.ctx.x[11])
}

#[test]
fn boot_vcpu_state() {
    let r = fixture(2);
    let v = r.vcpu(0);
    assert_eq!((v.context().pc, v.context().x[10], v.context().x[11]), (ENTRY, 0, DTB));
    assert!(v.context().supervisor);
    assert_eq!(v.mode(), GuestMode::Long64);
    assert_eq!(v.guest_abi(&r.d).name(), "riscv64");
    assert_eq!(v.initialise_arg_size(), 0);
    assert_eq!(r.vcpu(1).context().x[10], 1, "a0 = the hart id");
}

#[test]
fn xen_hypercalls_go_to_the_core_and_complete_past_the_ecall() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    v.ctx.x[17] = SBI_EXT_XEN;
    v.ctx.x[16] = 29;
    v.ctx.x[10..16].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
    r.hart.script(ecall());
    assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Hypercall { nr: 29, args: [1, 2, 3, 4, 5, 6] });
    assert_eq!(v.ctx.pc, ENTRY, "the PC stays on the ecall until completed");
    v.complete_hypercall(-22);
    assert_eq!((v.ctx.pc, v.ctx.x[10] as i64), (ENTRY + 4, -22));
    assert_eq!(r.arch.exits(), 1);
}

#[test]
fn sbi_base_extension() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    assert_eq!(sbi(&mut v, &r.d, ext::BASE, 0, &[]), (None, 0, 2 << 24));
    assert_eq!(sbi(&mut v, &r.d, ext::BASE, 1, &[]), (None, 0, 0x4c54));
    assert_eq!(sbi(&mut v, &r.d, ext::BASE, 3, &[ext::HSM]), (None, 0, 1));
    assert_eq!(sbi(&mut v, &r.d, ext::BASE, 3, &[SBI_EXT_XEN]), (None, 0, 1));
    assert_eq!(sbi(&mut v, &r.d, ext::BASE, 3, &[0x4442_434e]), (None, 0, 0));
    assert_eq!(v.ctx.pc, ENTRY + 20, "each call steps past its ecall");
    assert_eq!(sbi(&mut v, &r.d, 0x1234, 0, &[]).1, err::NOT_SUPPORTED);
    assert_eq!(sbi(&mut v, &r.d, SBI_EXT_XEN, 0x2_0000, &[]).1, err::NOT_SUPPORTED);
}

#[test]
fn hart_start_brings_a_secondary_up_at_its_entry() {
    let r = fixture(3);
    let mut v0 = r.vcpu(0);
    r.d.vcpu(0).unwrap().set_initialised();
    lifecycle::vcpu_up(&r.d, r.d.vcpu(0).unwrap()).unwrap();
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 2, &[1]), (None, 0, hart_state::STOPPED));
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 0, &[1, 0x20_0101, 9]).1, err::INVALID_ADDRESS);
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 0, &[7, 0x20_0100, 9]).1, err::INVALID_PARAM);
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 0, &[0, 0x20_0100, 9]).1, err::ALREADY_AVAILABLE);
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 0, &[1, 0x20_0100, 9]).1, err::SUCCESS);
    assert!(r.d.vcpu(1).unwrap().is_up());
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 0, &[1, 0x20_0100, 9]).1, err::ALREADY_AVAILABLE);
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 2, &[1]), (None, 0, hart_state::STARTED));
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 2, &[5]).1, err::INVALID_PARAM);
    // The secondary's first entry: at start_addr, a0 = hart id, a1 = opaque.
    let mut v1: Box<dyn ArchVcpu> = r.arch.create_vcpu(&r.d, 1);
    r.hart.script(exception(cause::ILLEGAL_INSTRUCTION));
    assert_eq!(v1.run(&r.d, &mut Slice(None)), VcpuExit::Fault);
    let e = r.hart.entries().pop().unwrap();
    assert_eq!(e.pc, 0x20_0100);
    let mut regs = [0u8; crate::gdb::REGS_SIZE];
    v1.read_registers(&mut regs);
    assert_eq!(&regs[80..96], &[&1u64.to_le_bytes()[..], &9u64.to_le_bytes()[..]].concat()[..]);
    // hart_stop takes it down.
    assert_eq!(sbi(&mut v0, &r.d, ext::HSM, 1, &[]).0, Some(VcpuExit::Down));
}

#[test]
fn system_reset() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    assert_eq!(sbi(&mut v, &r.d, ext::SRST, 0, &[0, 0]).0, Some(VcpuExit::DomainShutdown(shutdown::POWEROFF)));
    assert_eq!(sbi(&mut v, &r.d, ext::SRST, 0, &[1, 0]).0, Some(VcpuExit::DomainShutdown(shutdown::REBOOT)));
    assert_eq!(sbi(&mut v, &r.d, ext::SRST, 0, &[2, 0]).0, Some(VcpuExit::DomainShutdown(shutdown::REBOOT)));
    assert_eq!(sbi(&mut v, &r.d, ext::SRST, 0, &[9, 0]).1, err::INVALID_PARAM);
}

#[test]
fn the_guest_timer_is_raised_when_due_and_arms_the_host_timer() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    r.hart.set_now(100);
    assert_eq!(sbi(&mut v, &r.d, ext::TIME, 0, &[500]).1, 0);
    // Not due: the host timer is armed for it (before the slice's end).
    r.hart.script(Trap { scause: INTERRUPT | trap::IRQ_S_TIMER, ..Trap::default() });
    r.hart.script(ecall_xen());
    r.hart.set_now(100);
    let before = r.hart.timer_sets();
    let exit = {
        let mut slice = Slice(Some(10_000));
        // First entry: VSTIP not yet raised.
        v.ctx.x[17] = SBI_EXT_XEN;
        v.run(&r.d, &mut slice)
    };
    assert!(matches!(exit, VcpuExit::Hypercall { .. }));
    let entries = r.hart.entries();
    assert_eq!(entries[0].hvip & hvip::VSTIP, 0);
    assert!(r.hart.timer_sets() > before);
    assert_eq!(r.hart.timer(), Some(500), "re-armed for the guest deadline after the interrupt");
    // The timer interrupt at 100 < slice end went back into the guest.
    assert_eq!(entries.len(), 2);
    r.hart.set_now(600);
    r.hart.script(ecall_xen());
    v.run(&r.d, &mut Slice(Some(10_000)));
    assert_ne!(r.hart.entries()[2].hvip & hvip::VSTIP, 0, "due: VSTIP");
    assert_eq!(r.hart.timer(), Some(10_000), "only the slice is left to arm");
    // A new deadline withdraws it.
    v.complete_hypercall(0);
    sbi(&mut v, &r.d, ext::TIME, 0, &[u64::MAX]);
    assert_eq!(v.ctx.hvip & hvip::VSTIP, 0);
}

fn ecall_xen() -> Trap {
    ecall()
}

#[test]
fn the_slice_timer_preempts() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    r.hart.set_now(2000);
    r.hart.script(Trap { scause: INTERRUPT | trap::IRQ_S_TIMER, ..Trap::default() });
    assert_eq!(v.run(&r.d, &mut Slice(Some(1000))), VcpuExit::Preempted);
    assert_eq!(r.hart.timer(), None, "disarmed so its interrupt drops");
    r.hart.script(Trap { scause: INTERRUPT | trap::IRQ_S_EXTERNAL, ..Trap::default() });
    assert_eq!(v.run(&r.d, &mut Slice(Some(5000))), VcpuExit::HostInterrupt);
}

#[test]
fn wfi_blocks_with_the_guest_deadline_unless_an_interrupt_waits() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    sbi(&mut v, &r.d, ext::TIME, 0, &[777]);
    let pc = v.ctx.pc;
    let wfi = Trap { scause: cause::VIRTUAL_INSTRUCTION, stval: u64::from(WFI), ..Trap::default() };
    assert_eq!(v.handle(&r.d, &wfi, &mut Slice(None)), Some(VcpuExit::Halted));
    assert_eq!(v.ctx.pc, pc + 4);
    assert_eq!(r.arch.timer_deadline(0), Some(777));
    // An enabled event upcall already pending: wfi falls through.
    r.d.vcpu_mark_events_pending(r.d.vcpu(0).unwrap());
    v.ctx.vs.vsie = 1 << 9;
    assert_eq!(v.handle(&r.d, &wfi, &mut Slice(None)), None);
    // Another virtual instruction is fatal.
    let other = Trap { scause: cause::VIRTUAL_INSTRUCTION, stval: 0x1400_0073, ..Trap::default() };
    assert_eq!(v.handle(&r.d, &other, &mut Slice(None)), Some(VcpuExit::Fault));
}

#[test]
fn the_upcall_is_vseip_while_pending() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    r.hart.script(ecall());
    v.ctx.x[17] = SBI_EXT_XEN;
    v.run(&r.d, &mut Slice(None));
    assert_eq!(r.hart.entries()[0].hvip & hvip::VSEIP, 0);
    v.complete_hypercall(0);
    r.d.vcpu_mark_events_pending(r.d.vcpu(0).unwrap());
    v.inject_upcall(&r.d);
    r.hart.script(ecall());
    v.run(&r.d, &mut Slice(None));
    assert_ne!(r.hart.entries()[1].hvip & hvip::VSEIP, 0);
    // The ack clears it in the saved hvip; it comes back while still pending.
    v.complete_hypercall(0);
    assert_eq!(sbi(&mut v, &r.d, SBI_EXT_XEN, crate::sbi::EVTCHN_UPCALL_ACK, &[]).1, 0);
    assert_eq!(v.ctx.hvip & hvip::VSEIP, 0);
    assert_ne!(v.pending_interrupts(&r.d) & hvip::VSEIP, 0, "re-raised: evtchn_upcall_pending still set");
}

#[test]
fn an_ipi_reaches_its_target_and_wakes_it() {
    let r = fixture(3);
    let mut v0 = r.vcpu(0);
    let v2 = r.vcpu(2);
    let t = r.d.vcpu(2).unwrap();
    r.d.vcpu_block(t);
    assert_eq!(sbi(&mut v0, &r.d, ext::IPI, 0, &[0b100, 0]).1, 0);
    assert_eq!(t.pause_flags() & VPF_BLOCKED, 0, "woken");
    assert_ne!(v2.pending_interrupts(&r.d) & hvip::VSSIP, 0);
    assert_eq!(r.vcpu(1).pending_interrupts(&r.d) & hvip::VSSIP, 0, "not a target");
    assert_eq!(sbi(&mut v0, &r.d, ext::IPI, 0, &[0b1, 5]).1, err::INVALID_PARAM);
    assert_eq!(sbi(&mut v0, &r.d, ext::RFENCE, 1, &[0, u64::MAX, 0, 0]).1, 0);
}

#[test]
fn ballooned_ram_faults_in_the_guest_and_read_only_stores_are_dropped() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    r.d.p2m.lock().remove(Gfn(0x10));
    let mut vstvec: u64 = 0x8000;
    v.ctx.vs.vstvec = vstvec;
    let load = Trap { scause: cause::LOAD_GUEST_PAGE_FAULT, stval: 0x1_0008, htval: 0x1_0008 >> 2, htinst: 0 };
    assert_eq!(v.handle(&r.d, &load, &mut Slice(None)), None);
    assert_eq!((v.ctx.pc, v.ctx.vs.vscause, v.ctx.vs.vstval, v.ctx.vs.vsepc), (0x8000, 5, 0x1_0008, ENTRY));
    vstvec += 0x100;
    v.ctx.vs.vstvec = vstvec;
    let store = Trap { scause: cause::STORE_GUEST_PAGE_FAULT, ..load };
    assert_eq!(v.handle(&r.d, &store, &mut Slice(None)), None);
    assert_eq!(v.ctx.vs.vscause, cause::STORE_ACCESS);
    // A store to read-only RAM: skipped (a 4-byte sw, then a 2-byte c.sw).
    let page = Page::alloc(r.d.id).unwrap();
    r.d.p2m.lock().set(Gfn(0x20), page, P2mType::RamRo);
    PhysMem::new(&r.d).write_obj(Gpa(0x4000), &0x00b5_2023u32).unwrap();
    PhysMem::new(&r.d).write_obj(Gpa(0x4004), &0xc11cu16).unwrap();
    v.ctx.pc = 0x4000;
    let ro = Trap { scause: cause::STORE_GUEST_PAGE_FAULT, stval: 0x2_0000, htval: 0x2_0000 >> 2, htinst: 0 };
    assert_eq!(v.handle(&r.d, &ro, &mut Slice(None)), None);
    assert_eq!(v.ctx.pc, 0x4004);
    assert_eq!(v.handle(&r.d, &ro, &mut Slice(None)), None);
    assert_eq!(v.ctx.pc, 0x4006);
    // A load there would have worked: a fault is fatal, as is any access outside RAM.
    let ro_load = Trap { scause: cause::LOAD_GUEST_PAGE_FAULT, ..ro };
    assert_eq!(v.handle(&r.d, &ro_load, &mut Slice(None)), Some(VcpuExit::Fault));
    let mmio = Trap { scause: cause::LOAD_GUEST_PAGE_FAULT, stval: 0x1000_0000, htval: 0x1000_0000 >> 2, htinst: 0 };
    assert_eq!(v.handle(&r.d, &mmio, &mut Slice(None)), Some(VcpuExit::Fault));
}

#[test]
fn breakpoints_reach_the_debugger_only_when_it_asks() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    assert_ne!(v.ctx.hedeleg & (1 << cause::BREAKPOINT), 0, "the guest's own by default");
    let ctl = DebugControl { trap_breakpoints: true, ..DebugControl::default() };
    v.set_debug(&ctl).unwrap();
    assert_eq!(v.ctx.hedeleg & (1 << cause::BREAKPOINT), 0);
    r.hart.script(exception(cause::BREAKPOINT));
    assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Debug(DebugEvent::Breakpoint { pc: ENTRY }));
    assert_eq!(r.hart.entries()[0].hedeleg & (1 << cause::BREAKPOINT), 0);
    // The guest's own: delivered as the CPU would have.
    v.ctx.vs.vstvec = 0x9000;
    v.deliver_breakpoint();
    assert_eq!((v.ctx.pc, v.ctx.vs.vscause, v.ctx.vs.vsepc), (0x9000, cause::BREAKPOINT, ENTRY));
    assert_eq!(v.breakpoint_instruction(), &[0x73, 0x00, 0x10, 0x00]);
    // No trigger module: hardware points are refused, nothing changed.
    let point = lantern_common::arch::HwPoint { addr: 0x1000, len: 1, kind: lantern_common::arch::HwKind::Execute };
    let hw = DebugControl { hw_points: vec![point], ..DebugControl::default() };
    assert_eq!(v.set_debug(&hw), Err(Errno::EOPNOTSUPP));
    assert_eq!(v.ctx.hedeleg & (1 << cause::BREAKPOINT), 0);
    v.set_debug(&DebugControl::default()).unwrap();
    assert_ne!(v.ctx.hedeleg & (1 << cause::BREAKPOINT), 0);
}

#[test]
fn gstage_follows_the_p2m() {
    let r = fixture(1);
    r.arch.sync_p2m(&r.d);
    let ram = r.d.p2m.lock().get(Gfn(3)).unwrap().page.host_addr();
    assert_eq!(r.arch.shared.gstage.lock().lookup(0x3123), Some((ram + 0x123, true)));
    assert_eq!(r.hart.gvma_fences(), 1);
    r.arch.sync_p2m(&r.d);
    assert_eq!(r.hart.gvma_fences(), 1, "nothing changed: no fence");
    r.d.p2m.lock().remove(Gfn(3));
    r.arch.sync_p2m(&r.d);
    assert_eq!(r.arch.shared.gstage.lock().lookup(0x3000), None);
    let rom = Page::alloc(3).unwrap();
    let rom_addr = rom.host_addr();
    r.d.p2m.lock().set(Gfn(0x80), rom, P2mType::RamRo);
    r.arch.sync_p2m(&r.d);
    assert_eq!(r.arch.shared.gstage.lock().lookup(0x8_0000), Some((rom_addr, false)));
    // Entries carry the root and VMID.
    let mut v = r.vcpu(0);
    r.hart.script(exception(cause::ILLEGAL_INSTRUCTION));
    v.run(&r.d, &mut Slice(None));
    let h = r.hart.entries()[0].hgatp;
    assert_eq!((h >> 60, (h >> 44) & 0x3fff), (8, 7));
}

#[test]
fn abi_answers_are_arms() {
    use xen_abi::nr::xenfeat::*;
    let r = fixture(1);
    let v = r.vcpu(0);
    assert_eq!(v.check_upcall_vector(0xf3), Err(Errno::ENOSYS));
    assert_eq!(v.set_timer_op_timeout(&[0; 6]), Err(Errno::ENOSYS));
    assert_eq!(v.time_area_by_va_supported(), Err(Errno::EINVAL));
    assert_eq!(r.arch.soft_reset_supported(), Err(Errno::ENOSYS));
    let f = v.xen_features(0);
    assert_ne!(f & (1 << AUTO_TRANSLATED_PHYSMAP), 0);
    assert_eq!(f & (1 << ARM_SMCCC_SUPPORTED), 0);
    assert_eq!(v.xen_features(1), 0);
    assert_eq!(v.gfn_limit(), 1 << 29);
    assert_eq!(v.translate(&r.d, Gva(0x1234), false), Ok(Gpa(0x1234)), "MMU off: flat");
}

#[test]
fn a_step_plants_breakpoints_after_the_instruction_and_takes_them_out() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    let mem = PhysMem::new(&r.d);
    // beq a0, a1, +16 at 0x4000; the trap vector at 0x8000.
    mem.write_obj(Gpa(0x4000), &0x00b5_0863u32).unwrap();
    mem.write_obj(Gpa(0x4004), &0x0015_0513u32).unwrap();
    mem.write_obj(Gpa(0x4010), &0x0505u16).unwrap();
    v.ctx.pc = 0x4000;
    v.ctx.vs.vstvec = 0x8000;
    v.set_debug(&DebugControl { single_step: true, ..DebugControl::default() }).unwrap();
    r.d.vcpu_mark_events_pending(r.d.vcpu(0).unwrap());
    // The guest takes the branch and hits the planted c.ebreak there.
    r.hart.script_at(exception(cause::BREAKPOINT), 0x4010);
    assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Debug(DebugEvent::Step));
    let e = r.hart.entries().pop().unwrap();
    assert_eq!(e.hvip, 0, "no interrupt during the step");
    assert_eq!(e.hedeleg & (1 << cause::BREAKPOINT), 0, "the planted breakpoints come to the hypervisor");
    assert_ne!(v.ctx.hvip & hvip::VSEIP, 0, "the upcall stays pending for after the step");
    // Everything planted is gone again.
    assert_eq!(mem.read_obj::<u32>(Gpa(0x4004)).unwrap(), 0x0015_0513);
    assert_eq!(mem.read_obj::<u16>(Gpa(0x4010)).unwrap(), 0x0505);
    assert_eq!(mem.read_obj::<u16>(Gpa(0x8000)).unwrap(), 0);
    assert!(r.hart.icache_syncs() >= 2);
    // A breakpoint elsewhere (the guest's own, or the debugger's) is not the step's.
    v.ctx.pc = 0x4004;
    r.hart.script_at(exception(cause::BREAKPOINT), 0x6000);
    assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Debug(DebugEvent::Breakpoint { pc: 0x6000 }));
}

#[test]
fn a_step_over_a_hypercall_ends_when_it_completes() {
    let r = fixture(1);
    let mut v = r.vcpu(0);
    PhysMem::new(&r.d).write_obj(Gpa(0x4000), &0x0000_0073u32).unwrap();
    v.ctx.pc = 0x4000;
    v.set_debug(&DebugControl { single_step: true, ..DebugControl::default() }).unwrap();
    v.ctx.x[17] = SBI_EXT_XEN;
    r.hart.script(ecall());
    assert!(matches!(v.run(&r.d, &mut Slice(None)), VcpuExit::Hypercall { .. }));
    v.complete_hypercall(0);
    assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Debug(DebugEvent::Step));
    assert_eq!(v.ctx.pc, 0x4004);
    // An SBI call the backend answers itself ends it too.
    v.ctx.x[17] = ext::BASE;
    v.ctx.x[16] = 0;
    r.hart.script(ecall());
    assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Debug(DebugEvent::Step));
    assert_eq!(v.ctx.pc, 0x4008);
}
