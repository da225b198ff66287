//! The riscv64 execution backend: [`ArchVcpu`] for a vCPU in VS-mode under
//! HS.
//!
//! Per domain, a [`RiscvDomain`] holds what its vCPUs share: the G-stage
//! tables (kept in step with the core's p2m), the VMID, pending SBI
//! `hart_start` requests and IPIs, and each blocked vCPU's timer deadline
//! (so the board can wake it). Per vCPU, a [`RiscvVcpu`] holds the context.
//!
//! Exits handled here without the core: the SBI calls (base, timer, IPI,
//! remote fences, hart state, system reset, the upcall acknowledgement),
//! `wfi` with an interrupt already waiting, the host timer when it was the
//! guest's own timer that fell due, stores to read-only RAM (dropped) and
//! accesses to ballooned-out RAM (an access fault for the guest). Anything
//! else crashes only the domain, after one line naming `scause`, `sepc`,
//! `stval`, `htval` and the guest-physical address.
//!
//! The guest timer is SBI `set_timer`, emulated: `hvip.VSTIP` is raised on
//! the way in once `time` reached the guest's deadline, and the host timer
//! is armed for the earlier of that deadline and the slice's end. The event
//! upcall is level-like: `hvip.VSEIP` follows the vCPU's
//! `evtchn_upcall_pending` on every entry.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::{ArchDomain, ArchVcpu, GdbRegisters, GuestMode, Preemption, VcpuExit, VcpuInitContext};
use lantern_common::debug::{DebugControl, DebugEvent};
use lantern_common::diag::Unhandled;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::lifecycle;
use lantern_common::memory::P2mType;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;
use xen_abi::nr::shutdown;

use crate::context::{cause, hvip, VcpuContext};
use crate::gstage::{GPerm, GStage, GPA_BITS};
use crate::hw::Hart;
use crate::sbi::{err, hart_state, reset, SbiCall, IMPL_ID, SPEC_VERSION};
use crate::trap::{self, Trap, EBREAK, WFI};
use crate::walk;

const NO_DEADLINE: u64 = u64::MAX;

/// The per-domain object ([`ArchDomain`]).
pub struct RiscvDomain {
    shared: Arc<Shared>,
}

impl RiscvDomain {
    /// The object for a domain with `vcpus` vCPUs tagged `vmid`, run on
    /// `hart`.
    pub fn new(hart: &'static dyn Hart, vmid: u16, vcpus: u32) -> Self {
        let shared = Arc::new(Shared {
            hart,
            vmid,
            vcpus,
            gstage: spin::Mutex::new(GStage::new()),
            synced_generation: AtomicU64::new(u64::MAX),
            power_on: spin::Mutex::new((0..vcpus).map(|_| None).collect()),
            timer_deadline: (0..vcpus).map(|_| AtomicU64::new(NO_DEADLINE)).collect(),
            ipi: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
            exits: AtomicU64::new(0),
        });
        RiscvDomain { shared }
    }
}

impl ArchDomain for RiscvDomain {
    fn create_vcpu(&self, domain: &Domain, id: u32) -> Box<dyn ArchVcpu> {
        Box::new(RiscvVcpu::new(self.shared.clone(), domain.id, id))
    }

    fn sync_p2m(&self, domain: &Domain) {
        self.shared.sync_gstage(domain);
    }

    fn timer_deadline(&self, vcpu: u32) -> Option<u64> {
        let d = self.shared.timer_deadline.get(vcpu as usize)?.load(Ordering::Acquire);
        (d != NO_DEADLINE).then_some(d)
    }

    fn exits(&self) -> u64 {
        self.shared.exits.load(Ordering::Relaxed)
    }

    fn soft_reset_supported(&self) -> XenResult<()> {
        // Xen on riscv has no soft reset (no CONFIG_HAS_SOFT_RESET).
        Err(Errno::ENOSYS)
    }
}

/// What a domain's vCPUs share.
struct Shared {
    hart: &'static dyn Hart,
    vmid: u16,
    vcpus: u32,
    gstage: spin::Mutex<GStage>,
    synced_generation: AtomicU64,
    /// `hart_start` requests not yet taken by their vCPU: (entry, opaque).
    power_on: spin::Mutex<Vec<Option<(u64, u64)>>>,
    timer_deadline: Vec<AtomicU64>,
    /// An SBI IPI sent to the vCPU, to raise as VSSIP on its next entry.
    ipi: Vec<AtomicBool>,
    exits: AtomicU64,
}

impl Shared {
    /// Brings the G-stage tables in line with the domain's p2m.
    fn sync_gstage(&self, d: &Domain) {
        let mut p2m = d.p2m.lock();
        let generation = p2m.generation();
        if self.synced_generation.load(Ordering::Acquire) == generation {
            return;
        }
        let changes = p2m.take_changes();
        let mut g = self.gstage.lock();
        for gfn in changes {
            // A frame whose address does not fit 64 bits maps nowhere.
            let Some(gpa) = gfn.gpa().map(|a| a.0) else { continue };
            match p2m.get(gfn) {
                Some(e) => {
                    let perm = match e.p2mt {
                        P2mType::RamRw => GPerm::Ram,
                        P2mType::RamRo => GPerm::RamReadOnly,
                    };
                    // A gfn outside the 41-bit space stays unreachable.
                    let _ = g.map(gpa, e.page.host_addr(), perm);
                }
                None => g.unmap(gpa),
            }
        }
        self.synced_generation.store(generation, Ordering::Release);
        self.hart.fence_gvma();
    }

    fn hgatp(&self) -> u64 {
        self.gstage.lock().hgatp(self.vmid)
    }
}

/// Unique keys for vCPU contexts (the world switch flushes the VS-stage
/// TLB when another context enters).
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// One riscv64 vCPU.
pub struct RiscvVcpu {
    id: u32,
    key: u64,
    ctx: VcpuContext,
    dom: Arc<Shared>,
    domid: u16,
    /// The guest's SBI timer deadline (`time` value; NO_DEADLINE: none).
    guest_timer: u64,
    /// The (slice end, guest deadline) the host timer was last armed for:
    /// reprogramming costs an SBI call, so it is done when either changes.
    armed: Option<(Option<u64>, u64)>,
    /// What the debugger armed.
    debug: DebugControl,
    /// A step ended in a hypercall the core completed: the next run
    /// reports it without entering the guest.
    step_done: bool,
}

/// A `c.ebreak` a step planted: where, and the bytes it replaced.
struct Planted {
    va: u64,
    gpa: Gpa,
    orig: [u8; 2],
}

impl RiscvVcpu {
    fn new(dom: Arc<Shared>, domid: u16, id: u32) -> Self {
        RiscvVcpu {
            id,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            ctx: VcpuContext::new(0, u64::from(id), 0),
            dom,
            domid,
            guest_timer: NO_DEADLINE,
            armed: None,
            debug: DebugControl::default(),
            step_done: false,
        }
    }

    /// The saved context (for diagnostics and tests).
    pub fn context(&self) -> &VcpuContext {
        &self.ctx
    }

    fn reset(&mut self, entry: u64, arg: u64) {
        self.ctx.reset(entry, u64::from(self.id), arg);
        self.guest_timer = NO_DEADLINE;
    }

    /// `hvip` for the next entry: the guest's own VSSIP (it clears it
    /// through `sip`) or a new IPI, VSTIP once its timer is due, VSEIP while
    /// its upcall is pending.
    fn pending_interrupts(&self, d: &Domain) -> u64 {
        let mut bits = self.ctx.hvip & hvip::VSSIP;
        if self.dom.ipi[self.id as usize].load(Ordering::Acquire) {
            bits |= hvip::VSSIP;
        }
        if self.guest_timer != NO_DEADLINE && self.dom.hart.now() >= self.guest_timer {
            bits |= hvip::VSTIP;
        }
        if d.vcpu(self.id).is_ok_and(|v| d.upcall_pending(v)) {
            bits |= hvip::VSEIP;
        }
        bits
    }

    /// Arms the host timer for the slice's end or the guest's deadline,
    /// whichever comes first (a due guest timer is already raised).
    fn arm_timer(&mut self, preempt: &dyn Preemption) {
        let slice = preempt.slice_deadline();
        let guest = if self.ctx.hvip & hvip::VSTIP != 0 { NO_DEADLINE } else { self.guest_timer };
        if self.armed != Some((slice, guest)) {
            self.dom.hart.set_timer(slice.unwrap_or(NO_DEADLINE).min(guest));
            self.armed = Some((slice, guest));
        }
    }

    fn sbi_return(&mut self, error: i64, value: u64) -> Option<VcpuExit> {
        self.ctx.x[10] = error as u64;
        self.ctx.x[11] = value;
        self.ctx.pc = self.ctx.pc.wrapping_add(4);
        None
    }

    fn crash(&self, what: &str, t: &Trap) -> VcpuExit {
        let gpa = if t.is_guest_page_fault() { t.fault_gpa() } else { 0 };
        log::error!(
            "d{}v{} crashed: unhandled {} ({}): scause {:#x} sepc {:#x} stval {:#x} htval {:#x} (gpa {:#x})",
            self.domid,
            self.id,
            what,
            t.name(),
            t.scause,
            self.ctx.pc,
            t.stval,
            t.htval,
            gpa
        );
        VcpuExit::Fault
    }

    /// Handles one trap; `None` enters the guest again.
    fn handle(&mut self, d: &Domain, t: &Trap, preempt: &mut dyn Preemption) -> Option<VcpuExit> {
        if t.is_interrupt() {
            return match t.code() {
                trap::IRQ_S_TIMER => {
                    // The timer stays pending until reprogrammed.
                    self.armed = None;
                    let now = self.dom.hart.now();
                    match preempt.slice_deadline() {
                        Some(end) if now < end => None,
                        _ => {
                            self.dom.hart.set_timer(NO_DEADLINE);
                            Some(VcpuExit::Preempted)
                        }
                    }
                }
                _ => Some(VcpuExit::HostInterrupt),
            };
        }
        match t.code() {
            cause::VS_ECALL => self.sbi(d),
            cause::VIRTUAL_INSTRUCTION if t.stval as u32 == WFI => {
                self.ctx.pc = self.ctx.pc.wrapping_add(4);
                let pending = self.pending_interrupts(d);
                if self.ctx.interrupt_waiting(pending) {
                    return None;
                }
                self.dom.timer_deadline[self.id as usize].store(self.guest_timer, Ordering::Release);
                Some(VcpuExit::Halted)
            }
            cause::BREAKPOINT => Some(VcpuExit::Debug(DebugEvent::Breakpoint { pc: self.ctx.pc })),
            cause::LOAD_GUEST_PAGE_FAULT | cause::STORE_GUEST_PAGE_FAULT | cause::FETCH_GUEST_PAGE_FAULT => {
                self.guest_page_fault(d, t)
            }
            _ => Some(self.crash("trap", t)),
        }
    }

    /// A G-stage fault: a store to read-only RAM (a read-only grant) is
    /// dropped and the guest continues after it, as Xen on x86 discards
    /// writes to `p2m_grant_map_ro`; an access to RAM the guest ballooned
    /// out gets the access fault an access nothing backs raises (`stval`
    /// the faulting virtual address); anything else is fatal (Lantern
    /// emulates no device on riscv64).
    fn guest_page_fault(&mut self, d: &Domain, t: &Trap) -> Option<VcpuExit> {
        let gpa = t.fault_gpa();
        if gpa >> GPA_BITS != 0 {
            return Some(self.crash("guest-page fault", t));
        }
        let gfn = Gpa(gpa).gfn();
        let entry = d.p2m.lock().get(gfn).map(|e| e.p2mt);
        let store = t.code() == cause::STORE_GUEST_PAGE_FAULT;
        match entry {
            Some(P2mType::RamRo) if store => {
                let Some(len) = self.insn_len(d) else {
                    return Some(self.crash("store to read-only RAM (instruction unreadable)", t));
                };
                let kind =
                    Unhandled::Access { space: "read-only RAM", index: gpa & !0xfff, write: true, answer: "dropped" };
                d.note_unhandled(Some(self.id), kind);
                self.ctx.pc = self.ctx.pc.wrapping_add(len);
                None
            }
            None if d.is_boot_ram(gfn) => {
                let kind =
                    Unhandled::Access { space: "ballooned RAM", index: gpa & !0xfff, write: store, answer: "fault" };
                d.note_unhandled(Some(self.id), kind);
                let fault = match t.code() {
                    cause::STORE_GUEST_PAGE_FAULT => cause::STORE_ACCESS,
                    cause::LOAD_GUEST_PAGE_FAULT => cause::LOAD_ACCESS,
                    _ => cause::FETCH_ACCESS,
                };
                self.ctx.inject_exception(fault, t.stval);
                None
            }
            _ => Some(self.crash("guest-page fault", t)),
        }
    }

    /// The length of the instruction at the PC, read through the guest's
    /// translation (QEMU gives no `htinst`).
    fn insn_len(&self, d: &Domain) -> Option<u64> {
        let gpa = self.translate(d, Gva(self.ctx.pc), false).ok()?;
        let low: u16 = PhysMem::new(d).read_obj(gpa).ok()?;
        Some(trap::insn_len(low))
    }

    /// The instruction at the PC, read through the guest's translation.
    fn insn_at_pc(&self, d: &Domain) -> Option<u32> {
        let mem = PhysMem::new(d);
        let half = |va: u64| -> Option<u16> { mem.read_obj(self.translate(d, Gva(va), false).ok()?).ok() };
        let low = half(self.ctx.pc)?;
        if trap::insn_len(low) == 2 {
            return Some(u32::from(low));
        }
        Some(u32::from(low) | (u32::from(half(self.ctx.pc.wrapping_add(2))?) << 16))
    }

    /// Plants a `c.ebreak` wherever the instruction at the PC may continue
    /// ([`crate::step`]); addresses the guest cannot reach or the
    /// hypervisor cannot write are left out.
    fn plant_step(&self, d: &Domain) -> Vec<Planted> {
        let Some(insn) = self.insn_at_pc(d) else { return Vec::new() };
        let mem = PhysMem::new(d);
        let mut planted = Vec::new();
        for va in crate::step::successors(insn, self.ctx.pc, &self.ctx.x, &self.ctx.vs) {
            let Ok(gpa) = self.translate(d, Gva(va), false) else { continue };
            let mut orig = [0u8; 2];
            if mem.read_bytes(gpa, &mut orig).is_err() || mem.write_bytes(gpa, &crate::step::C_EBREAK).is_err() {
                continue;
            }
            planted.push(Planted { va, gpa, orig });
        }
        self.dom.hart.sync_instructions();
        planted
    }

    /// Puts back what [`Self::plant_step`] replaced.
    fn unplant_step(&self, d: &Domain, planted: &[Planted]) {
        let mem = PhysMem::new(d);
        for p in planted.iter().rev() {
            let _ = mem.write_bytes(p.gpa, &p.orig);
        }
        self.dom.hart.sync_instructions();
    }

    /// An `ecall` from VS: a Xen hypercall for the core, or an SBI call
    /// answered here.
    fn sbi(&mut self, d: &Domain) -> Option<VcpuExit> {
        match SbiCall::decode(&self.ctx.x) {
            SbiCall::Xen { nr, args } => Some(VcpuExit::Hypercall { nr, args }),
            SbiCall::UpcallAck => {
                // Raised again on entry while evtchn_upcall_pending is set.
                self.ctx.hvip &= !hvip::VSEIP;
                self.sbi_return(err::SUCCESS, 0)
            }
            SbiCall::SpecVersion => self.sbi_return(err::SUCCESS, SPEC_VERSION),
            SbiCall::ImplId => self.sbi_return(err::SUCCESS, IMPL_ID),
            SbiCall::ImplVersion | SbiCall::MachineId => self.sbi_return(err::SUCCESS, 0),
            SbiCall::ProbeExtension(eid) => self.sbi_return(err::SUCCESS, SbiCall::probe(eid)),
            SbiCall::SetTimer(at) => {
                self.guest_timer = at;
                // A new deadline withdraws a raised timer interrupt.
                self.ctx.hvip &= !hvip::VSTIP;
                self.sbi_return(err::SUCCESS, 0)
            }
            SbiCall::SendIpi(mask) => match mask.targets(self.dom.vcpus) {
                Ok(targets) => {
                    for t in targets {
                        self.dom.ipi[t as usize].store(true, Ordering::Release);
                        if t != self.id {
                            if let Ok(v) = d.vcpu(t) {
                                d.vcpu_unblock(v);
                            }
                        }
                    }
                    self.sbi_return(err::SUCCESS, 0)
                }
                Err(e) => self.sbi_return(e, 0),
            },
            // Another vCPU's VS-stage TLB is flushed before it next runs
            // (the world switch does so for every change of context), and a
            // local fence is the caller's own instruction.
            SbiCall::RemoteFence(mask) => match mask.targets(self.dom.vcpus) {
                Ok(_) => self.sbi_return(err::SUCCESS, 0),
                Err(e) => self.sbi_return(e, 0),
            },
            SbiCall::HartStart { hartid, start_addr, opaque } => {
                let r = self.hart_start(d, hartid, start_addr, opaque);
                self.sbi_return(r, 0)
            }
            SbiCall::HartStop => Some(VcpuExit::Down),
            SbiCall::HartStatus(hartid) => match self.hart_status(d, hartid) {
                Some(s) => self.sbi_return(err::SUCCESS, s),
                None => self.sbi_return(err::INVALID_PARAM, 0),
            },
            SbiCall::SystemReset { kind, .. } => match kind {
                reset::SHUTDOWN => Some(VcpuExit::DomainShutdown(shutdown::POWEROFF)),
                reset::COLD_REBOOT | reset::WARM_REBOOT => Some(VcpuExit::DomainShutdown(shutdown::REBOOT)),
                _ => self.sbi_return(err::INVALID_PARAM, 0),
            },
            SbiCall::Unknown(eid, fid) => {
                let kind = Unhandled::Access {
                    space: "SBI",
                    index: (eid << 32) | (fid & 0xffff_ffff),
                    write: false,
                    answer: "not supported",
                };
                d.note_unhandled(Some(self.id), kind);
                self.sbi_return(err::NOT_SUPPORTED, 0)
            }
        }
    }

    fn hart_status(&self, d: &Domain, hartid: u64) -> Option<u64> {
        let v = u32::try_from(hartid).ok().and_then(|h| d.vcpu(h).ok())?;
        Some(if v.is_up() {
            hart_state::STARTED
        } else if self.dom.power_on.lock()[v.id as usize].is_some() {
            hart_state::START_PENDING
        } else {
            hart_state::STOPPED
        })
    }

    fn hart_start(&mut self, d: &Domain, hartid: u64, start_addr: u64, opaque: u64) -> i64 {
        let Some(v) = u32::try_from(hartid).ok().and_then(|h| d.vcpu(h).ok()) else {
            return err::INVALID_PARAM;
        };
        // Instructions are at least 2-byte aligned (with C).
        if start_addr & 1 != 0 {
            return err::INVALID_ADDRESS;
        }
        if v.is_up() {
            return err::ALREADY_AVAILABLE;
        }
        {
            let mut po = self.dom.power_on.lock();
            let slot = &mut po[v.id as usize];
            if slot.is_some() {
                return err::ALREADY_AVAILABLE;
            }
            *slot = Some((start_addr, opaque));
        }
        v.set_initialised();
        match lifecycle::vcpu_up(d, v) {
            Ok(()) => err::SUCCESS,
            Err(_) => {
                self.dom.power_on.lock()[v.id as usize] = None;
                err::INVALID_PARAM
            }
        }
    }
}

impl ArchVcpu for RiscvVcpu {
    fn run(&mut self, d: &Domain, preempt: &mut dyn Preemption) -> VcpuExit {
        let pending = self.dom.power_on.lock()[self.id as usize].take();
        if let Some((entry, opaque)) = pending {
            self.reset(entry, opaque);
        }
        self.dom.timer_deadline[self.id as usize].store(NO_DEADLINE, Ordering::Release);
        // Cheap when the scheduler's `sync_p2m` already did it.
        self.dom.sync_gstage(d);
        let hgatp = self.dom.hgatp();
        let hart = self.dom.hart;
        loop {
            if core::mem::take(&mut self.step_done) {
                return VcpuExit::Debug(DebugEvent::Step);
            }
            self.ctx.hvip = self.pending_interrupts(d);
            // An IPI is delivered once; the guest clears VSSIP itself.
            self.dom.ipi[self.id as usize].store(false, Ordering::Release);
            self.arm_timer(preempt);
            let pc_before = self.ctx.pc;
            let t = if self.debug.single_step {
                // One instruction: breakpoints after it, reported to the
                // hypervisor, and no interrupt meanwhile (they stay pending).
                let planted = self.plant_step(d);
                let (hvip, hedeleg) = (self.ctx.hvip, self.ctx.hedeleg);
                self.ctx.hvip = 0;
                self.ctx.hedeleg &= !(1 << cause::BREAKPOINT);
                let t = hart.run(&mut self.ctx, hgatp, self.key);
                self.ctx.hvip = hvip;
                self.ctx.hedeleg = hedeleg;
                self.unplant_step(d, &planted);
                self.dom.exits.fetch_add(1, Ordering::Relaxed);
                let at_planted = planted.iter().any(|p| p.va == self.ctx.pc);
                if !t.is_interrupt() && t.code() == cause::BREAKPOINT && at_planted {
                    return VcpuExit::Debug(DebugEvent::Step);
                }
                t
            } else {
                let t = hart.run(&mut self.ctx, hgatp, self.key);
                self.dom.exits.fetch_add(1, Ordering::Relaxed);
                t
            };
            if let Some(exit) = self.handle(d, &t, preempt) {
                return exit;
            }
            if self.debug.single_step && self.ctx.pc != pc_before {
                // The hypervisor completed the stepped instruction itself.
                return VcpuExit::Debug(DebugEvent::Step);
            }
        }
    }

    fn complete_hypercall(&mut self, ret: i64) {
        self.ctx.x[10] = ret as u64;
        self.ctx.pc = self.ctx.pc.wrapping_add(4);
        // A step over the ecall ends here.
        self.step_done = self.debug.single_step;
    }

    fn inject_upcall(&mut self, _domain: &Domain) {
        // Level-like: VSEIP follows evtchn_upcall_pending on every entry
        // (`pending_interrupts`), so there is nothing to latch here.
    }

    fn translate(&self, domain: &Domain, gva: Gva, write: bool) -> XenResult<Gpa> {
        let mem = PhysMem::new(domain);
        walk::translate(self.ctx.vs.vsatp, gva.0, write, |gpa| mem.read_obj::<u64>(Gpa(gpa)).ok())
            .map(Gpa)
            .map_err(|_| Errno::EFAULT)
    }

    fn mode(&self) -> GuestMode {
        GuestMode::Long64
    }

    fn guest_abi(&self, _domain: &Domain) -> &'static dyn GuestAbi {
        &crate::layout::RISCV64
    }

    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        match *ctx {
            VcpuInitContext::PowerOn { entry, context_id } => {
                self.reset(entry, context_id);
                Ok(())
            }
            // riscv guests bring harts up with SBI hart_start.
            VcpuInitContext::XenInitialise(_) => Err(Errno::ENOSYS),
        }
    }

    fn initialise_arg_size(&self) -> usize {
        0
    }

    fn check_upcall_vector(&self, _vector: u8) -> XenResult<()> {
        // The upcall is the fixed supervisor external interrupt.
        Err(Errno::ENOSYS)
    }

    fn set_timer_op_timeout(&self, _args: &[u64; 6]) -> XenResult<u64> {
        // As on arm: no set_timer_op; guests use the SBI timer (or
        // VCPUOP_set_singleshot_timer).
        Err(Errno::ENOSYS)
    }

    fn xen_features(&self, submap_idx: u32) -> u32 {
        match submap_idx {
            0 => GUEST_FEATURES,
            _ => 0,
        }
    }

    fn vm_assist_valid_mask(&self) -> u64 {
        1 << xen_abi::nr::vmasst::TYPE_RUNSTATE_UPDATE_FLAG
    }

    fn time_area_by_va_supported(&self) -> XenResult<()> {
        // Like arm: the time area by address is x86-only.
        Err(Errno::EINVAL)
    }

    fn gfn_limit(&self) -> u64 {
        1 << (GPA_BITS - lantern_common::memory::PAGE_SHIFT)
    }

    /// Breakpoints: `ebreak` reaches the hypervisor once `hedeleg` stops
    /// delegating it. Single-step is emulated with breakpoints
    /// ([`crate::step`]): riscv has none a hypervisor can arm. Hardware
    /// points are refused: the trigger module is M-mode's.
    fn set_debug(&mut self, ctl: &DebugControl) -> XenResult<()> {
        if !ctl.hw_points.is_empty() {
            return Err(Errno::EOPNOTSUPP);
        }
        let bit = 1 << cause::BREAKPOINT;
        if ctl.trap_breakpoints {
            self.ctx.hedeleg &= !bit;
        } else {
            self.ctx.hedeleg |= bit;
        }
        self.debug = ctl.clone();
        Ok(())
    }

    fn breakpoint_instruction(&self) -> &'static [u8] {
        &EBREAK
    }

    fn deliver_breakpoint(&mut self) {
        // What the guest's own ebreak raises: a breakpoint, stval = its PC.
        let pc = self.ctx.pc;
        self.ctx.inject_exception(cause::BREAKPOINT, pc);
    }
}

/// `XENVER_get_features` submap 0 of a riscv guest: translated (G-stage),
/// not direct-mapped, the physically registered runstate area; like arm's
/// less the SMCCC bit.
pub const GUEST_FEATURES: u32 = {
    use xen_abi::nr::xenfeat::*;
    word(&[WRITABLE_PAGE_TABLES, AUTO_TRANSLATED_PHYSMAP, NOT_DIRECT_MAPPED, RUNSTATE_PHYS_AREA])
};

impl GdbRegisters for RiscvVcpu {
    fn target_xml(&self) -> &'static str {
        crate::gdb::TARGET_XML
    }

    fn read_registers(&self, out: &mut [u8]) -> usize {
        crate::gdb::read_registers(&self.ctx, out)
    }

    fn write_registers(&mut self, data: &[u8]) -> XenResult<()> {
        crate::gdb::write_registers(&mut self.ctx, data)
    }
}

#[cfg(test)]
mod tests;
