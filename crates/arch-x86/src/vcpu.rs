//! The SVM execution backend: [`SvmDomain`] implements the core's
//! [`ArchDomain`] (nested page tables kept in sync with the domain's p2m,
//! the exit count) and [`SvmVcpu`] its [`ArchVcpu`] and [`GdbRegisters`] —
//! VMCB per vCPU, the run loop that dispatches each #VMEXIT to its handler
//! (one file per kind of exit under `vcpu/exits/`), callback-vector
//! upcalls, guest page walks and the gdb register file.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::{ArchDomain, ArchVcpu, GdbRegisters, GuestMode, Preemption, VcpuExit, VcpuInitContext};
use lantern_common::debug::{DebugControl, DebugEvent};
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::memory::{P2mType, PAGE_SHIFT};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;
use xen_abi::nr::hvm_param;

use crate::hvm_context::{HvmContext, VCPU_HVM_CONTEXT_SIZE};
use crate::npt::NestedPageTable;
use crate::paging::{self, PagingState};
use crate::svm::{self, FxArea, GuestRegs, PermissionMaps, StartMode};
use crate::vmcb::{cr0, dr, efer, event, exit, int_ctl, intercept1, seg_attr, vector, Vmcb};

mod exits;

use exits::debug::GuestDebugRegs;

pub use exits::io::declare_undecoded_ports;

pub use exits::io::DEBUG_PORT;

/// The lowest IDT vector that is an interrupt rather than an exception
/// (Xen refuses lower ones for event upcalls).
const FIRST_INTERRUPT_VECTOR: u8 = 0x10;

/// PAUSE's length: `rep; nop` (F3 90), as compilers and Linux's
/// `cpu_relax` emit it.
const PAUSE_LEN: u64 = 2;

/// The per-domain SVM object ([`ArchDomain`]): owns what the domain's vCPUs
/// share.
pub struct SvmDomain {
    shared: Arc<SvmShared>,
}

impl SvmDomain {
    /// Empty nested tables; they fill from the p2m's change list on first run.
    pub fn new() -> Self {
        SvmDomain {
            shared: Arc::new(SvmShared {
                npt: spin::Mutex::new(NestedPageTable::new()),
                sink: exits::npf::SinkPage::new(),
                exits: AtomicU64::new(0),
                apics: spin::Mutex::new(alloc::vec::Vec::new()),
                maps: PermissionMaps::intercept_all(),
            }),
        }
    }
}

impl Default for SvmDomain {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchDomain for SvmDomain {
    fn create_vcpu(&self, domain: &Domain, id: u32) -> Box<dyn ArchVcpu> {
        Box::new(SvmVcpu::new(self.shared.clone(), domain.id, id))
    }

    fn sync_p2m(&self, domain: &Domain) {
        self.shared.sync(domain);
    }

    fn timer_deadline(&self, vcpu: u32) -> Option<u64> {
        // The local APIC timer's, as the vCPU last left it.
        self.shared.apics.lock().get(vcpu as usize).and_then(|a| a.deadline_ticks)
    }

    fn exits(&self) -> u64 {
        self.shared.exits.load(Ordering::Relaxed)
    }

    fn soft_reset_supported(&self) -> XenResult<()> {
        // Xen soft-resets HVM domains, and every Lantern x86 domain is one.
        Ok(())
    }
}

/// What a domain's vCPUs share: the nested page tables, the read-only page
/// backing every unclaimed MMIO frame (see [`exits::npf`]), the exit
/// count, every vCPU's local APIC (IPIs reach other vCPUs' APICs), and the
/// I/O and MSR permission maps (per domain, because a port one domain has
/// been let through to stays intercepted, and so logged, for the others).
struct SvmShared {
    npt: spin::Mutex<NestedPageTable>,
    sink: Box<exits::npf::SinkPage>,
    exits: AtomicU64,
    apics: spin::Mutex<alloc::vec::Vec<exits::apic::VcpuApic>>,
    maps: Box<PermissionMaps>,
}

impl SvmShared {
    /// Applies the p2m changes since the last call to the nested tables.
    fn sync(&self, d: &Domain) {
        let mut p2m = d.p2m.lock();
        let changes = p2m.take_changes();
        if changes.is_empty() {
            return;
        }
        let mut npt = self.npt.lock();
        for gfn in changes {
            // A frame whose address does not fit 64 bits maps nowhere: its
            // shifted number would wrap onto a low frame (found by the
            // in-guest fuzzer on arm64, where it unmapped guest code).
            let Some(gpa) = gfn.gpa() else { continue };
            match p2m.get(gfn) {
                Some(e) => npt.map(gpa.0, e.page.host_addr(), e.p2mt == P2mType::RamRw),
                None => npt.unmap(gpa.0),
            }
        }
    }
}

/// One vCPU's SVM context.
pub struct SvmVcpu {
    vcpu_id: u32,
    domid: u16,
    dom: Arc<SvmShared>,
    vmcb: Box<Vmcb>,
    regs: GuestRegs,
    fx: Box<FxArea>,
    /// What the virtual interrupt raised for the last entry came from.
    virq: Option<VirqSource>,
    /// End the slice at the next exit: an IPI of this vCPU's woke or
    /// started another vCPU, or it spun (PAUSE) while another could run, so
    /// that the other runs while this one waits for it (every vCPU shares
    /// the machine's CPUs; without this a sender spinning on the target's
    /// answer burns its whole slice, and with many vCPUs everyone's, before
    /// the target runs).
    yield_slice: bool,
    /// What the debugger armed in this vCPU.
    debug: DebugControl,
    /// The guest's own debug registers (a shadow; see `exits::debug`).
    guest_dr: GuestDebugRegs,
    /// DR7 and DR0..DR3 for `debug`'s hardware points.
    debug_dr: (u64, [u64; dr::SLOTS]),
    /// A step ended inside a hypercall the core completed: the next run
    /// reports it without entering the guest.
    step_done: bool,
}

/// The source of the virtual interrupt (`V_IRQ`) raised for a VMRUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VirqSource {
    /// Xen's callback vector: level-like while `evtchn_upcall_pending` is
    /// set, never in the APIC's ISR (no EOI, as on Xen).
    Callback,
    /// A vector of the local APIC's IRR, moved to its ISR once taken.
    Apic(u8),
}

impl SvmVcpu {
    /// vCPU `vcpu_id` of domain `domid`, in its reset state (32-bit flat
    /// protected mode at 0) until it is initialised or powered on.
    fn new(dom: Arc<SvmShared>, domid: u16, vcpu_id: u32) -> Self {
        let mut v = SvmVcpu {
            vcpu_id,
            domid,
            dom,
            vmcb: Box::new(Vmcb::zeroed()),
            regs: GuestRegs::default(),
            fx: Box::new(svm::initial_fx()),
            virq: None,
            yield_slice: false,
            debug: DebugControl::default(),
            guest_dr: GuestDebugRegs::default(),
            debug_dr: (dr::DR7_RESET, [0; dr::SLOTS]),
            step_done: false,
        };
        v.dom.add_apic(vcpu_id);
        v.reset(StartMode::Flat32, 0);
        v
    }

    /// Starts the vCPU the way Xen starts a PVH guest: 32-bit flat protected
    /// mode, paging off, at `entry` with `ebx` = `start_info`.
    fn power_on_pvh(&mut self, entry: u64, start_info: u64) {
        self.reset(StartMode::Flat32, entry);
        self.regs.rbx = start_info;
    }

    /// `VCPUOP_initialise`: a checked `vcpu_hvm_context` replaces the whole
    /// state; a refused one leaves the vCPU untouched.
    fn load_hvm_context(&mut self, b: &[u8]) -> XenResult<()> {
        let ctx = HvmContext::decode(b)?;
        let (mode, rip) = ctx.start();
        self.reset(mode, rip);
        ctx.load(&mut self.vmcb.save, &mut self.regs);
        Ok(())
    }

    fn reset(&mut self, mode: StartMode, rip: u64) {
        let ncr3 = self.dom.npt.lock().root_pa();
        // The maps are identity mapped: their address is host-physical.
        let maps_pa = &*self.dom.maps as *const PermissionMaps as u64;
        svm::init_vmcb(&mut self.vmcb, maps_pa, ncr3, mode, rip);
        self.apply_debug_intercepts();
        self.guest_dr = GuestDebugRegs::default();
        self.regs = GuestRegs::default();
        *self.fx = svm::initial_fx();
    }

    /// The VMCB (for diagnostics and gdb).
    pub fn vmcb(&self) -> &Vmcb {
        &self.vmcb
    }

    fn paging_state(&self) -> PagingState {
        let s = &self.vmcb.save;
        PagingState { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer }
    }

    /// 64-bit mode: long mode active and a 64-bit code segment.
    fn is_long(&self) -> bool {
        self.vmcb.save.efer & efer::LMA != 0 && self.vmcb.save.cs.attrib & seg_attr::L != 0
    }

    fn inject_exception(&mut self, vector: u8, error: Option<u32>) {
        self.vmcb.control.eventinj = event::exception(vector, error);
    }

    fn crash(&self, d: &Domain, why: &str) -> VcpuExit {
        let c = &self.vmcb.control;
        log::error!(
            "d{}v{} crashed: {} (exit code {:#x}, rip {:#x}, gpa {:#x}, info1 {:#x}, cr0 {:#x}, cs {:#x})",
            d.id,
            self.vcpu_id,
            why,
            c.exitcode,
            self.vmcb.save.rip,
            c.exitinfo2,
            c.exitinfo1,
            self.vmcb.save.cr0,
            self.vmcb.save.cs.selector
        );
        VcpuExit::Fault
    }

    /// The callback vector to deliver upcalls on, if the guest set one up.
    fn callback_vector(&self, d: &Domain) -> Option<u8> {
        let per_vcpu = d.vcpu(self.vcpu_id).map(|v| v.upcall_vector()).unwrap_or(0);
        if per_vcpu != 0 {
            return Some(per_vcpu);
        }
        let param = d.hvm_param(hvm_param::CALLBACK_IRQ as usize).unwrap_or(0);
        // HVM_PARAM_CALLBACK_TYPE_VECTOR (2) in bits 63:56.
        (param >> hvm_param::CALLBACK_TYPE_SHIFT == hvm_param::CALLBACK_TYPE_VECTOR
            && param as u8 >= FIRST_INTERRUPT_VECTOR)
            .then_some(param as u8)
    }

    /// Chooses the virtual interrupt for the next entry: Xen's callback
    /// vector while `evtchn_upcall_pending` is set (level-like, ahead of
    /// the APIC, as Xen's `hvm_vcpu_has_pending_irq` orders them), else the
    /// local APIC's highest deliverable vector (after firing its timer if
    /// due). A virtual interrupt raised before and not yet taken is
    /// withdrawn first, so a higher one can take its place. A pending NMI
    /// IPI is injected as an event.
    fn update_interrupts(&mut self, d: &Domain) {
        let now = d.clock().now_ns();
        let tpr_class = self.with_apic(|a| {
            a.lapic.poll_timer(now);
            a.lapic.tpr() >> 4
        });
        // CR8 is the TPR's class: a `mov cr8` runs without an exit against
        // V_TPR, which mirrors the APIC's TPR both ways ([`Self::after_exit`]).
        self.vmcb.control.int_ctl = (self.vmcb.control.int_ctl & !int_ctl::V_TPR) | tpr_class as u64;
        self.vmcb.control.int_ctl &= !int_ctl::V_IRQ;
        self.virq = None;
        if self.debug.single_step {
            // Interrupts wait while the debugger steps: `stepi` lands on the
            // next instruction, not in a handler.
            return;
        }
        self.inject_pending_nmi();
        let upcall = d.vcpu(self.vcpu_id).is_ok_and(|v| d.upcall_pending(v));
        let choice = match self.callback_vector(d) {
            Some(vector) if upcall => Some((vector, VirqSource::Callback)),
            _ => self.with_apic(|a| a.lapic.pending()).map(|vector| (vector, VirqSource::Apic(vector))),
        };
        let Some((vector, source)) = choice else { return };
        let c = &mut self.vmcb.control;
        c.int_ctl = (c.int_ctl & !(0xFFu64 << int_ctl::V_INTR_VECTOR_SHIFT) & !(0xF << int_ctl::V_INTR_PRIO_SHIFT))
            | int_ctl::V_IRQ
            | int_ctl::V_IGN_TPR
            | (0xF << int_ctl::V_INTR_PRIO_SHIFT)
            | ((vector as u64) << int_ctl::V_INTR_VECTOR_SHIFT);
        self.virq = Some(source);
    }

    /// After an exit: a CR8 write the guest made becomes the APIC's TPR; a
    /// virtual interrupt the guest took (the CPU cleared `V_IRQ`) moves
    /// from the APIC's IRR to its ISR; an event whose
    /// delivery the exit interrupted (EXITINTINFO) is injected again.
    fn after_exit(&mut self) {
        let cr8 = (self.vmcb.control.int_ctl & int_ctl::V_TPR) as u8;
        self.with_apic(|a| {
            if a.lapic.tpr() >> 4 != cr8 {
                a.lapic.set_tpr(cr8 << 4);
            }
        });
        if let Some(VirqSource::Apic(vector)) = self.virq {
            if self.vmcb.control.int_ctl & int_ctl::V_IRQ == 0 {
                self.with_apic(|a| a.lapic.ack(vector));
            }
        }
        let info = self.vmcb.control.exitintinfo;
        let kind = info & (7 << 8);
        self.vmcb.control.eventinj =
            if info & event::VALID != 0 && matches!(kind, event::TYPE_INTR | event::TYPE_NMI | event::TYPE_EXCEPTION) {
                info
            } else {
                0
            };
    }

    /// Moves RIP past an instruction of `len` bytes (wrapping at 4 GiB
    /// outside 64-bit mode).
    pub(in crate::vcpu) fn advance_rip(&mut self, len: u64) {
        let mut next = self.vmcb.save.rip.wrapping_add(len);
        if !self.is_long() {
            next &= 0xFFFF_FFFF;
        }
        self.vmcb.save.rip = next;
    }

    /// Stores the APIC timer's deadline in host-counter ticks, for the
    /// scheduler to wake the vCPU by ([`ArchDomain::timer_deadline`]).
    fn cache_timer_deadline(&self, d: &Domain) {
        self.with_apic(|a| a.deadline_ticks = a.lapic.timer_deadline_ns().map(|ns| d.clock().counter_at(ns)));
    }

    /// HLT with nothing to deliver. With interrupts enabled the vCPU blocks
    /// until an event. With them disabled it goes down, as Xen's `hvm_hlt`
    /// takes it ("a pretty sure sign that we want to shut down"), and the
    /// last vCPU of the domain to go down powers the domain off: that is
    /// how Linux's halt and power-off end a PVH domain that has no ACPI S5.
    fn halt(&self, d: &Domain) -> VcpuExit {
        if self.vmcb.save.rflags & crate::vmcb::rflags::IF != 0 {
            return VcpuExit::Halted;
        }
        if d.vcpus().iter().any(|v| v.id != self.vcpu_id && v.is_up()) {
            VcpuExit::Down
        } else {
            VcpuExit::DomainShutdown(xen_abi::nr::shutdown::POWEROFF)
        }
    }

    /// A triple fault shuts the domain down with the reason in
    /// `HVM_PARAM_TRIPLE_FAULT_REASON`, as Xen's `hvm_triple_fault` does
    /// (the board sets Xen's default, reboot, when it builds the domain):
    /// Linux's last resort for `reboot` on a PVH domain, after ACPI (no
    /// reset register here) and the keyboard controller (no device).
    fn triple_fault(&self, d: &Domain) -> VcpuExit {
        let reason = d.hvm_param(hvm_param::TRIPLE_FAULT_REASON as usize).unwrap_or(0) as u32;
        log::warn!(
            "d{}v{}: triple fault at rip {:#x}: shutting down ({})",
            d.id,
            self.vcpu_id,
            self.vmcb.save.rip,
            xen_abi::nr::shutdown::name(reason)
        );
        VcpuExit::DomainShutdown(reason)
    }

    /// Whether a HLT must not block: an APIC interrupt is deliverable and
    /// the guest takes interrupts, or an NMI waits.
    fn wakes_from_halt(&self) -> bool {
        let interruptible = self.vmcb.save.rflags & crate::vmcb::rflags::IF != 0;
        self.with_apic(|a| a.nmi || (interruptible && a.lapic.pending().is_some()))
    }

    /// Intercepts PAUSE only while another vCPU of the domain is runnable.
    /// Every Lantern vCPU of a board shares one CPU, so a guest spinning
    /// on a lock or a flag another of its vCPUs holds (Linux's CPU
    /// bring-up, cross-CPU calls, TLB shootdowns) would spin away its whole
    /// slice while that vCPU waits for the CPU; Xen's pause-loop exiting
    /// yields for the same reason. With no other vCPU to run, a PAUSE stays
    /// a plain instruction: QEMU implements no PAUSE filter, so each
    /// intercepted one is a world switch.
    fn intercept_pause_if_contended(&mut self, d: &Domain) {
        let contended = d.vcpus().iter().any(|v| v.id != self.vcpu_id && d.vcpu_runnable(v));
        let c = &mut self.vmcb.control;
        if contended {
            c.intercept_misc1 |= intercept1::PAUSE;
        } else {
            c.intercept_misc1 &= !intercept1::PAUSE;
        }
    }

    /// Enters the guest until an exit the core must act on. The scheduler
    /// has synced the nested tables with the p2m before the call
    /// (`ArchDomain::sync_p2m`); no exit handled here changes the p2m.
    fn run_until_exit(&mut self, d: &Domain, preempt: &mut dyn Preemption) -> VcpuExit {
        loop {
            if core::mem::take(&mut self.step_done) {
                return VcpuExit::Debug(DebugEvent::Step);
            }
            self.update_interrupts(d);
            let rip_before = self.vmcb.save.rip;
            let guest_tf = self.enter_debug();
            let code = svm::vmrun_current(&mut self.vmcb, &mut self.regs, &mut self.fx);
            self.leave_debug(guest_tf);
            self.dom.exits.fetch_add(1, Ordering::Relaxed);
            self.after_exit();
            match code {
                c if c == exit::EXCP_BASE + vector::DB as u64 => {
                    if let Some(e) = self.debug_exception() {
                        return e;
                    }
                }
                c if c == exit::EXCP_BASE + vector::BP as u64 || c == exit::SWINT => {
                    if let Some(e) = self.breakpoint_exit(d, c) {
                        return e;
                    }
                }
                c if (exit::READ_DR0..exit::WRITE_DR0 + 16).contains(&c) => {
                    if let Some(e) = self.dr_access(d, c) {
                        return e;
                    }
                }
                exit::VMMCALL => {
                    if let Some(e) = self.hypercall_exit() {
                        return e;
                    }
                }
                exit::CPUID => self.handle_cpuid(),
                exit::CR4_WRITE => {
                    if let Some(e) = self.handle_cr4_write(d) {
                        return e;
                    }
                }
                exit::MSR => self.msr_exit(d),
                exit::IOIO => {
                    if let Some(e) = self.handle_io(d) {
                        return e;
                    }
                }
                exit::HLT => {
                    self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(1);
                    if !self.wakes_from_halt() {
                        return self.halt(d);
                    }
                }
                exit::INTR => {
                    // The board's periodic tick preempts; any other host
                    // interrupt is serviced and the guest continues its slice.
                    return if preempt.host_interrupt() { VcpuExit::Preempted } else { VcpuExit::HostInterrupt };
                }
                exit::NMI | exit::VINTR => {}
                exit::INVD => self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(2),
                exit::PAUSE => {
                    // A spin-wait while another vCPU of the domain could run
                    // (`intercept_pause_if_contended`): that vCPU is likely
                    // what it waits for, and it shares this CPU, so the
                    // slice ends here instead of spinning to its end.
                    self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(PAUSE_LEN);
                    self.yield_slice = true;
                }
                exit::NPF => {
                    if let Some(e) = self.handle_npf(d) {
                        return e;
                    }
                }
                exit::SHUTDOWN => return self.triple_fault(d),
                // SVM itself is hidden from the guest (CPUID): its
                // instructions are invalid opcodes, as is XSETBV without XSAVE.
                exit::VMRUN | exit::VMLOAD..=exit::SKINIT | exit::XSETBV => self.inject_exception(vector::UD, None),
                c if c & 0xFFFF_FFFF == exit::INVALID => return self.crash(d, "invalid guest state (VMRUN failed)"),
                c if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&c) => {
                    return self.crash(d, "machine check");
                }
                _ => return self.crash(d, "unhandled #VMEXIT"),
            }
            if self.step_ends_here() && self.vmcb.save.rip != rip_before {
                // The hypervisor completed the stepped instruction itself.
                return VcpuExit::Debug(DebugEvent::Step);
            }
            if core::mem::take(&mut self.yield_slice) {
                return VcpuExit::Yielded;
            }
        }
    }
}

impl ArchVcpu for SvmVcpu {
    fn run(&mut self, d: &Domain, preempt: &mut dyn Preemption) -> VcpuExit {
        self.take_startup();
        // Once per entry from the scheduler, not per VMRUN: while this vCPU
        // runs, only its own exits change whether another is runnable, and
        // those that wake or start one end the slice anyway (`yield_slice`).
        self.intercept_pause_if_contended(d);
        let exit = self.run_until_exit(d, preempt);
        self.cache_timer_deadline(d);
        exit
    }

    fn complete_hypercall(&mut self, ret: i64) {
        self.vmcb.save.rax = if self.is_long() { ret as u64 } else { ret as u32 as u64 };
        // Past the 3-byte VMMCALL.
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(3);
        // A step over the VMMCALL ends here.
        self.step_done = self.debug.single_step;
    }

    fn inject_upcall(&mut self, d: &Domain) {
        self.update_interrupts(d);
    }

    fn translate(&self, d: &Domain, gva: Gva, write: bool) -> XenResult<Gpa> {
        let mem = PhysMem::new(d);
        let mut read = |gpa: u64, size: usize| -> XenResult<u64> {
            let mut b = [0u8; 8];
            mem.read_bytes(Gpa(gpa), &mut b[..size])?;
            Ok(u64::from_le_bytes(b))
        };
        paging::translate(&self.paging_state(), gva.0, write, &mut read).map(Gpa)
    }

    fn guest_abi(&self, _domain: &Domain) -> &'static dyn GuestAbi {
        // Xen's rule: a guest in 64-bit mode speaks the native layout, any
        // other mode the 32-bit compat one.
        if self.is_long() {
            &crate::layout::X86_64
        } else {
            &crate::layout::X86_32
        }
    }

    fn mode(&self) -> GuestMode {
        if self.is_long() {
            GuestMode::Long64
        } else if self.vmcb.save.cr0 & cr0::PE != 0 {
            GuestMode::Protected32
        } else {
            GuestMode::Real
        }
    }

    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        match ctx {
            VcpuInitContext::XenInitialise(b) => self.load_hvm_context(b),
            VcpuInitContext::PowerOn { entry, context_id } => {
                self.power_on_pvh(*entry, *context_id);
                Ok(())
            }
        }
    }

    fn initialise_arg_size(&self) -> usize {
        VCPU_HVM_CONTEXT_SIZE
    }

    fn check_upcall_vector(&self, vector: u8) -> XenResult<()> {
        // Vectors below 0x10 are exceptions, not interrupts.
        if vector < FIRST_INTERRUPT_VECTOR {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    fn hvm_param_access(&self, index: u32, write: bool) -> XenResult<()> {
        use xen_abi::nr::hvm_param as p;
        // Xen's x86 lists (hvm_allow_get_param / hvm_allow_set_param).
        let both = [
            p::CALLBACK_IRQ,
            p::VM86_TSS,
            p::VM86_TSS_SIZED,
            p::ACPI_IOPORTS_LOCATION,
            p::VM_GENERATION_ID_ADDR,
            p::STORE_EVTCHN,
            p::CONSOLE_EVTCHN,
            p::X87_FIP_WIDTH,
        ];
        let read_only = [p::STORE_PFN, p::CONSOLE_PFN, p::ALTP2M];
        if both.contains(&index) || (!write && read_only.contains(&index)) {
            Ok(())
        } else if p::DEPRECATED.contains(&index) {
            Err(Errno::EINVAL)
        } else if write && index == p::ALTP2M {
            Err(Errno::EEXIST)
        } else {
            Err(Errno::EPERM)
        }
    }

    fn set_timer_op_timeout(&self, args: &[u64; 6]) -> XenResult<u64> {
        Ok(self.wide_hypercall_arg(args))
    }

    fn xen_features(&self, submap_idx: u32) -> u32 {
        match submap_idx {
            0 => HVM_FEATURES,
            _ => 0,
        }
    }

    fn vm_assist_valid_mask(&self) -> u64 {
        // Xen's HVM_VM_ASSIST_MASK: the other assists are PV-only.
        1 << xen_abi::nr::vmasst::TYPE_RUNSTATE_UPDATE_FLAG
    }

    fn time_area_by_va_supported(&self) -> XenResult<()> {
        Ok(())
    }

    fn set_debug(&mut self, ctl: &DebugControl) -> XenResult<()> {
        self.arm_debug(ctl)
    }

    fn breakpoint_instruction(&self) -> &'static [u8] {
        &exits::debug::INT3
    }

    fn deliver_breakpoint(&mut self) {
        self.deliver_int3();
    }

    fn gfn_limit(&self) -> u64 {
        1 << (crate::npt::GPA_BITS - PAGE_SHIFT)
    }
}

/// `XENVER_get_features` submap 0 of an HVM/PVH guest, as Xen's: a
/// translated (HAP) guest that is not direct-mapped, with the HVM callback
/// vector, the safe pvclock and the physically registered runstate and time
/// areas. Left out: `memory_op_vnode_supported` (no `XENMEM_get_vnumainfo`),
/// `dm_msix_all_writes` (no device model), `hvm_pirqs` (no PIRQs).
/// `supervisor_mode_kernel` is a PV-era bit Xen no longer reports.
pub const HVM_FEATURES: u32 = {
    use xen_abi::nr::xenfeat::*;
    word(&[
        WRITABLE_PAGE_TABLES,
        AUTO_TRANSLATED_PHYSMAP,
        HVM_CALLBACK_VECTOR,
        HVM_SAFE_PVCLOCK,
        NOT_DIRECT_MAPPED,
        RUNSTATE_PHYS_AREA,
        VCPU_TIME_PHYS_AREA,
    ])
};

impl GdbRegisters for SvmVcpu {
    fn target_xml(&self) -> &'static str {
        crate::gdbregs::TARGET_XML
    }

    fn read_registers(&self, out: &mut [u8]) -> usize {
        crate::gdbregs::read(&self.vmcb, &self.regs, &self.fx, out)
    }

    fn write_registers(&mut self, data: &[u8]) -> XenResult<()> {
        crate::gdbregs::write(&mut self.vmcb, &mut self.regs, &mut self.fx, data)
    }

    fn narrow_registers(&self) -> Option<&'static lantern_common::arch::NarrowRegisters> {
        Some(&crate::gdbregs::I386)
    }
}

/// Fixtures shared by the tests here and in [`exits`].
#[cfg(test)]
mod testing {
    use super::*;
    use lantern_testkit::TestDomain;

    /// Domain 3 with `vcpus` vCPUs and the kit's RAM from gfn 0.
    pub(super) fn domain(vcpus: u32) -> Arc<Domain> {
        TestDomain::new(&crate::layout::X86_64).id(3).vcpus(vcpus).build()
    }

    /// vCPU `id` of a fresh domain 3, powered on at 0x1000 with `ebx` = 0x2000.
    pub(super) fn vcpu(id: u32) -> SvmVcpu {
        let mut v = SvmVcpu::new(SvmDomain::new().shared, 3, id);
        v.initialise(&VcpuInitContext::PowerOn { entry: 0x1000, context_id: 0x2000 }).unwrap();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{domain, vcpu};
    use super::*;
    use crate::hvm_context::{VCPU_HVM_MODE_32B, VCPU_HVM_MODE_64B};
    use crate::vmcb::{ATTR_CODE32, ATTR_DATA32};
    use lantern_common::addr::Gfn;
    use xen_abi::errno::Errno;

    #[test]
    fn pause_is_intercepted_only_while_another_vcpu_of_the_domain_could_run() {
        let d = domain(2);
        let mut v0 = vcpu(0);
        let (dv0, dv1) = (d.vcpu(0).unwrap(), d.vcpu(1).unwrap());
        dv0.set_initialised();
        lantern_common::lifecycle::vcpu_up(&d, dv0).unwrap();
        let pause = |v: &SvmVcpu| v.vmcb.control.intercept_misc1 & intercept1::PAUSE != 0;
        v0.intercept_pause_if_contended(&d);
        assert!(!pause(&v0), "vCPU 1 is down: a PAUSE stays an instruction");
        dv1.set_initialised();
        lantern_common::lifecycle::vcpu_up(&d, dv1).unwrap();
        v0.intercept_pause_if_contended(&d);
        assert!(pause(&v0), "vCPU 1 could run: a PAUSE ends vCPU 0's slice");
        d.vcpu_block(dv1);
        v0.intercept_pause_if_contended(&d);
        assert!(!pause(&v0), "vCPU 1 waits for an event: nothing to yield to");
        // The others decide: seen from vCPU 1, a blocked vCPU 0 is no reason.
        let mut v1 = vcpu(1);
        d.vcpu_unblock(dv1);
        d.vcpu_block(dv0);
        v1.intercept_pause_if_contended(&d);
        assert!(!pause(&v1));
    }

    #[test]
    fn pvh_entry_state() {
        let v = vcpu(0);
        assert_eq!(v.regs.rbx, 0x2000);
        assert_eq!(v.vmcb.save.rip, 0x1000);
        assert_eq!(v.mode(), GuestMode::Protected32);
        assert_eq!(v.initialise_arg_size(), 128);
    }

    #[test]
    fn hvm_context_64() {
        let mut v = vcpu(1);
        let mut ctx = [0u8; VCPU_HVM_CONTEXT_SIZE];
        ctx[0] = VCPU_HVM_MODE_64B as u8;
        let put = |ctx: &mut [u8], i: usize, val: u64| ctx[8 + 8 * i..16 + 8 * i].copy_from_slice(&val.to_le_bytes());
        put(&mut ctx, 8, 0x20_0000); // rip
        put(&mut ctx, 4, 0x30_0000); // rsp
        put(&mut ctx, 10, 0x8000_0011); // cr0
        put(&mut ctx, 11, 0x9000); // cr3
        put(&mut ctx, 12, 0x20); // cr4
        put(&mut ctx, 13, efer::LME); // efer
        v.initialise(&VcpuInitContext::XenInitialise(&ctx)).unwrap();
        assert_eq!(v.mode(), GuestMode::Long64);
        assert_eq!((v.vmcb.save.rip, v.vmcb.save.rsp, v.vmcb.save.cr3), (0x20_0000, 0x30_0000, 0x9000));
        // Long mode without paging is refused.
        put(&mut ctx, 10, 0x11);
        assert_eq!(v.initialise(&VcpuInitContext::XenInitialise(&ctx)), Err(Errno::EINVAL));
        assert_eq!(v.initialise(&VcpuInitContext::XenInitialise(&ctx[..64])), Err(Errno::EINVAL));
    }

    #[test]
    fn hvm_context_32() {
        let mut v = vcpu(2);
        v.regs.r9 = 0x99; // not in the context: cleared by the reset
        let mut ctx = [0u8; VCPU_HVM_CONTEXT_SIZE];
        ctx[0] = VCPU_HVM_MODE_32B as u8;
        let put = |ctx: &mut [u8], off: usize, val: u32| ctx[8 + off..12 + off].copy_from_slice(&val.to_le_bytes());
        put(&mut ctx, 16, 0x8000); // esp
        put(&mut ctx, 28, 2); // edi
        put(&mut ctx, 32, 0x4000); // eip
        put(&mut ctx, 40, 0x1); // cr0: PE
        put(&mut ctx, 84, 0xFFFF_FFFF); // cs_limit
                                        // Attributes as Xen requires them: CS code, DS and SS data, TR a
                                        // busy TSS (ES left null).
        let put16 = |ctx: &mut [u8], off: usize, val: u16| ctx[8 + off..10 + off].copy_from_slice(&val.to_le_bytes());
        put16(&mut ctx, 104, ATTR_CODE32);
        put16(&mut ctx, 106, ATTR_DATA32);
        put16(&mut ctx, 108, ATTR_DATA32);
        put16(&mut ctx, 112, 0x8B);
        v.initialise(&VcpuInitContext::XenInitialise(&ctx)).unwrap();
        assert_eq!(v.mode(), GuestMode::Protected32);
        assert_eq!(v.guest_abi(&domain(1)).name(), "x86_32");
        let s = &v.vmcb.save;
        assert_eq!((s.rip, s.rsp, s.cr0, s.rflags), (0x4000, 0x8000, 0x11, 0x2));
        assert_eq!((s.cs.selector, s.cs.attrib, s.cs.limit), (0x08, ATTR_CODE32, 0xFFFF_FFFF));
        assert_eq!((s.ds.selector, s.ds.attrib), (0x10, ATTR_DATA32));
        assert_eq!(s.es.attrib, 0, "a null ES stays null");
        assert_eq!(s.fs.attrib, ATTR_DATA32, "fs and gs keep the reset state");
        // A data segment in CS is refused and leaves the vCPU as it was.
        put16(&mut ctx, 104, ATTR_DATA32);
        assert_eq!(v.initialise(&VcpuInitContext::XenInitialise(&ctx)), Err(Errno::EINVAL));
        assert_eq!(v.vmcb.save.cs.attrib, ATTR_CODE32);
        put16(&mut ctx, 104, ATTR_CODE32);
        assert_eq!((v.regs.rdi, v.regs.rbx, v.regs.r9), (2, 0, 0));
        // An unknown mode leaves the vCPU as it was.
        ctx[0] = 7;
        assert_eq!(v.initialise(&VcpuInitContext::XenInitialise(&ctx)), Err(Errno::EINVAL));
        assert_eq!(v.vmcb.save.rip, 0x4000);
    }

    #[test]
    fn hvm_params_follow_xens_x86_lists() {
        use xen_abi::nr::hvm_param as p;
        let v = vcpu(1);
        for (index, read, set) in [
            (p::CALLBACK_IRQ, Ok(()), Ok(())),
            (p::CONSOLE_EVTCHN, Ok(()), Ok(())),
            // The toolstack's: the guest may read them, never move them.
            (p::CONSOLE_PFN, Ok(()), Err(Errno::EPERM)),
            (p::STORE_PFN, Ok(()), Err(Errno::EPERM)),
            (p::ALTP2M, Ok(()), Err(Errno::EEXIST)),
            (p::TRIPLE_FAULT_REASON, Err(Errno::EPERM), Err(Errno::EPERM)),
            (4, Err(Errno::EINVAL), Err(Errno::EINVAL)),
        ] {
            assert_eq!(v.hvm_param_access(index, false), read, "read {index}");
            assert_eq!(v.hvm_param_access(index, true), set, "set {index}");
        }
    }

    #[test]
    fn soft_reset_is_offered() {
        assert_eq!(SvmDomain::new().soft_reset_supported(), Ok(()));
    }

    #[test]
    fn features_are_xens_for_an_hvm_guest() {
        use xen_abi::nr::xenfeat::*;
        let v = vcpu(0);
        let f = v.xen_features(0);
        for bit in [WRITABLE_PAGE_TABLES, AUTO_TRANSLATED_PHYSMAP, HVM_CALLBACK_VECTOR, HVM_SAFE_PVCLOCK] {
            assert_ne!(f & (1 << bit), 0, "bit {bit}");
        }
        for bit in [RUNSTATE_PHYS_AREA, VCPU_TIME_PHYS_AREA, NOT_DIRECT_MAPPED] {
            assert_ne!(f & (1 << bit), 0, "bit {bit}");
        }
        for bit in [ARM_SMCCC_SUPPORTED, DIRECT_MAPPED, DOM0, MMU_PT_UPDATE_PRESERVE_AD, HVM_PIRQS] {
            assert_eq!(f & (1 << bit), 0, "bit {bit}");
        }
        assert_eq!(v.xen_features(1), 0);
    }

    #[test]
    fn upcall_vectors_must_be_interrupts() {
        let v = vcpu(0);
        assert_eq!(v.check_upcall_vector(0x0F), Err(Errno::EINVAL));
        assert_eq!(v.check_upcall_vector(0x10), Ok(()));
        assert_eq!(v.check_upcall_vector(0xFF), Ok(()));
    }

    #[test]
    fn upcall_vector_raised_while_pending() {
        let d = domain(1);
        let mut v = vcpu(0);
        d.vcpu(0).unwrap().set_upcall_vector(0xF3);
        v.update_interrupts(&d);
        assert_eq!(v.vmcb.control.int_ctl & int_ctl::V_IRQ, 0, "nothing pending yet");
        d.vcpu_mark_events_pending(d.vcpu(0).unwrap());
        v.update_interrupts(&d);
        assert_ne!(v.vmcb.control.int_ctl & int_ctl::V_IRQ, 0);
        assert_eq!((v.vmcb.control.int_ctl >> int_ctl::V_INTR_VECTOR_SHIFT) as u8, 0xF3);
    }

    #[test]
    fn hlt_with_interrupts_off_takes_the_vcpu_down_and_the_last_powers_off() {
        let d = domain(2);
        let v0 = vcpu(0);
        let mut v1 = vcpu(1);
        assert_eq!(v1.halt(&d), VcpuExit::Down, "vCPU 0 is still up");
        v1.vmcb.save.rflags |= crate::vmcb::rflags::IF;
        assert_eq!(v1.halt(&d), VcpuExit::Halted, "interrupts on: it waits for an event");
        lantern_common::lifecycle::vcpu_down(&d, d.vcpu(1).unwrap());
        assert_eq!(v0.halt(&d), VcpuExit::DomainShutdown(xen_abi::nr::shutdown::POWEROFF));
    }

    #[test]
    fn npt_follows_p2m() {
        let d = domain(1);
        let v = vcpu(0);
        v.dom.sync(&d);
        let (hpa, w) = v.dom.npt.lock().lookup(0x3000).unwrap();
        assert_eq!(hpa, d.p2m.lock().get(Gfn(3)).unwrap().page.host_addr());
        assert!(w);
        d.p2m.lock().remove(Gfn(3));
        v.dom.sync(&d);
        assert_eq!(v.dom.npt.lock().lookup(0x3000), None);
        // A read-only p2m entry (a read-only grant mapping) is read-only in
        // the nested tables.
        let page = lantern_common::memory::Page::alloc(d.id).unwrap();
        d.p2m.lock().set(Gfn(3), page.clone(), P2mType::RamRo);
        v.dom.sync(&d);
        assert_eq!(v.dom.npt.lock().lookup(0x3000), Some((page.host_addr(), false)));
        // A frame number whose address wraps 64 bits onto frame 5 leaves
        // frame 5 alone, mapped or removed.
        let before = v.dom.npt.lock().lookup(0x5000);
        let wraps = Gfn((1 << 52) + 5);
        d.p2m.lock().set(wraps, lantern_common::memory::Page::alloc(d.id).unwrap(), P2mType::RamRw);
        v.dom.sync(&d);
        assert_eq!(v.dom.npt.lock().lookup(0x5000), before);
        d.p2m.lock().remove(wraps);
        v.dom.sync(&d);
        assert_eq!(v.dom.npt.lock().lookup(0x5000), before);
        assert!(before.is_some());
    }
}
