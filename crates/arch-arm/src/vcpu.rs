//! The arm64 execution backend: [`ArchVcpu`] for a vCPU at EL1 under EL2.
//!
//! Per domain, an [`ArmDomain`] holds what its vCPUs share: the stage-2 tables
//! (kept in sync with the core's p2m), the VMID, pending PSCI `CPU_ON`
//! requests, and each blocked vCPU's virtual-timer deadline (so the board can
//! wake it). Per vCPU, an [`ArmVcpu`] holds the EL1 context.
//!
//! Exits handled here without the core: PSCI (`hvc #0` / `smc`), WFI with an
//! interrupt already pending, virtual-timer expiry, the emulated GIC frames,
//! and interrupts meant for the hypervisor's own bookkeeping. Everything the
//! hypervisor cannot make sense of crashes only the domain, with ESR, ELR and
//! IPA in the diagnostic.
//!
//! Every touch of the hardware (the world switch, syndrome registers, TLB
//! maintenance, the GIC CPU interface, the timers) goes through the
//! [`PhysicalCpu`] the domain was created with, so this logic runs on the
//! host too, where the unit tests below drive it through a test double.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use alloc::boxed::Box;

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

use crate::context::VcpuContext;
use crate::debug::{debug_regs, BRK0, SPSR_SS};
use crate::esr::{self, ec, Esr};
use crate::guest::{self, EVTCHN_PPI, VTIMER_PPI};
use crate::hw::{intid, ExitKind, PhysicalCpu, Syndrome};
use crate::psci::{self, affinity, ret, PsciCall};
use crate::stage2::{S2Perm, Stage2};
use crate::vgic::{Frame, Vgic};
use crate::walk::{self, Stage1Regs};

/// The Xen hypercall immediate: `hvc #0xEA1` (`XEN_HYPERCALL_TAG`).
pub use xen_abi::arch_arm::HYPERCALL_HVC_IMM as XEN_HVC_IMM;
/// List register bit asking for a maintenance interrupt when the guest
/// deactivates the interrupt (non-hardware interrupts only).
const LR_EOI: u64 = 1 << 41;

/// A trapped system register Lantern answers itself (MDCR_EL2 traps the PMU
/// and the debug registers because neither is switched per vCPU; see
/// docs/arm64-el1-state.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulatedSysreg {
    /// MDSCR_EL1: kept per vCPU in [`crate::context::El1Sysregs::mdscr_el1`]
    /// (and loaded for the vCPU, so software single-step still works).
    Mdscr,
    /// A debug register (breakpoints, watchpoints, the OS lock, the debug
    /// communication channel, claim tags): reads as zero, writes ignored,
    /// so no guest's breakpoint is ever armed in the CPU.
    DebugRazWi,
    /// A PMU register: reads as zero, writes ignored, so no counter runs
    /// and none shows another vCPU's events.
    PmuRazWi,
}

/// Which [`EmulatedSysreg`] the encoding (op0, op1, CRn, CRm, op2) is, if any.
pub fn emulated_sysreg(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> Option<EmulatedSysreg> {
    match (op0, op1, crn, crm, op2) {
        (2, 0, 0, 2, 2) => Some(EmulatedSysreg::Mdscr),
        // op0 = 2 with op1 = 0 (EL1 debug) or 3 (EL0 debug channel): the
        // debug registers TDA, TDOSA and TDRA trap.
        (2, 0 | 3, ..) => Some(EmulatedSysreg::DebugRazWi),
        // PMCR_EL0 .. PMUSERENR_EL0 / PMOVSSET_EL0 (CRn 9, CRm 12..14 at
        // op1 3), PMINTEN{SET,CLR}_EL1 and PMMIR_EL1 (op1 0, CRm 14), the
        // event counters and types (CRn 14, CRm 8..15 at op1 3).
        (3, 3, 9, 12..=14, _) | (3, 0, 9, 14, _) | (3, 3, 14, 8..=15, _) => Some(EmulatedSysreg::PmuRazWi),
        _ => None,
    }
}
const NO_DEADLINE: u64 = u64::MAX;

/// The per-domain EL2 object ([`ArchDomain`]): owns what the domain's vCPUs
/// share.
pub struct ArmDomain {
    shared: Arc<ArmShared>,
    nr_lrs: usize,
}

impl ArmDomain {
    /// The object for a domain with `vcpus` vCPUs tagged `vmid`, run on
    /// `cpu`; `nr_lrs` list registers come from the physical GIC.
    pub fn new(cpu: &'static dyn PhysicalCpu, vmid: u16, vcpus: u32, nr_lrs: usize) -> Self {
        let shared = Arc::new(ArmShared {
            cpu,
            vmid,
            vcpus,
            stage2: spin::Mutex::new(Stage2::new()),
            synced_generation: AtomicU64::new(u64::MAX),
            power_on: spin::Mutex::new((0..vcpus).map(|_| None).collect()),
            timer_deadline: (0..vcpus).map(|_| AtomicU64::new(NO_DEADLINE)).collect(),
            exits: AtomicU64::new(0),
            vgic: Vgic::new(vcpus),
        });
        ArmDomain { shared, nr_lrs }
    }
}

impl ArchDomain for ArmDomain {
    fn create_vcpu(&self, domain: &Domain, id: u32) -> Box<dyn ArchVcpu> {
        Box::new(ArmVcpu::new(self.shared.clone(), domain.id, id, self.nr_lrs))
    }

    fn sync_p2m(&self, domain: &Domain) {
        self.shared.sync_stage2(domain);
    }

    fn timer_deadline(&self, vcpu: u32) -> Option<u64> {
        let d = self.shared.timer_deadline.get(vcpu as usize)?.load(Ordering::Acquire);
        (d != NO_DEADLINE).then_some(d)
    }

    fn exits(&self) -> u64 {
        self.shared.exits.load(Ordering::Relaxed)
    }

    fn soft_reset_supported(&self) -> XenResult<()> {
        // Xen on arm has no soft reset (no CONFIG_HAS_SOFT_RESET).
        Err(Errno::ENOSYS)
    }
}

/// State shared by all vCPUs of one domain: the stage-2 tables, the VMID,
/// pending PSCI `CPU_ON` requests and blocked vCPUs' virtual-timer deadlines.
struct ArmShared {
    /// The physical CPU the domain's vCPUs run on.
    cpu: &'static dyn PhysicalCpu,
    /// The domain's VMID (tags its TLB entries).
    vmid: u16,
    vcpus: u32,
    stage2: spin::Mutex<Stage2>,
    synced_generation: AtomicU64,
    power_on: spin::Mutex<Vec<Option<(u64, u64)>>>,
    timer_deadline: Vec<AtomicU64>,
    exits: AtomicU64,
    /// The virtual distributor and redistributors.
    vgic: Vgic,
}

impl ArmShared {
    /// Brings the stage-2 tables in line with the domain's p2m.
    fn sync_stage2(&self, d: &Domain) {
        let mut p2m = d.p2m.lock();
        let generation = p2m.generation();
        if self.synced_generation.load(Ordering::Acquire) == generation {
            return;
        }
        let changes = p2m.take_changes();
        let mut s2 = self.stage2.lock();
        for gfn in changes {
            // A frame whose address does not fit 64 bits maps nowhere: its
            // shifted number would wrap onto a low frame (found by the
            // in-guest fuzzer: an add_to_physmap far above 2^52 replaced,
            // then unmapped, a page of the guest's code).
            let Some(ipa) = gfn.gpa().map(|a| a.0) else { continue };
            match p2m.get(gfn) {
                Some(e) => {
                    let perm = match e.p2mt {
                        P2mType::RamRw => S2Perm::Ram,
                        P2mType::RamRo => S2Perm::RamReadOnly,
                    };
                    // A gfn outside the 4 GiB IPA space stays unreachable.
                    let _ = s2.map(ipa, e.page.host_addr(), perm);
                }
                None => {
                    s2.unmap(ipa);
                }
            }
        }
        self.synced_generation.store(generation, Ordering::Release);
        self.cpu.flush_guest_tlbs();
    }

    fn vttbr(&self) -> u64 {
        self.stage2.lock().vttbr(self.vmid)
    }
}

/// Unique keys for vCPU contexts: the world switch skips reloading EL1
/// state when the same context enters again.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// One arm64 vCPU.
pub struct ArmVcpu {
    id: u32,
    key: u64,
    ctx: VcpuContext,
    dom: Arc<ArmShared>,
    nr_lrs: usize,
    domid: u16,
    /// The slice deadline this vCPU last armed the EL2 timer for: re-arming
    /// on every guest entry costs a timer reprogram each time, so it is done
    /// once per slice (every slice has a new, later deadline; between slices
    /// the board owns the timer).
    armed_slice: Option<u64>,
    /// What the debugger armed in this vCPU.
    debug: DebugControl,
    /// A step ended in a hypercall the core completed: the next run reports
    /// it without entering the guest.
    step_done: bool,
    /// The immediate of the last `BRK` the guest executed (for delivering
    /// the guest's own breakpoint to it).
    last_brk: u16,
}

impl ArmVcpu {
    /// vCPU `id` of the domain `domid` sharing `dom`, in its reset state;
    /// the boot vCPU is started with `initialise(PowerOn)` (entry, x0 = the
    /// guest DTB), the others through PSCI `CPU_ON`.
    fn new(dom: Arc<ArmShared>, domid: u16, id: u32, nr_lrs: usize) -> Self {
        ArmVcpu {
            id,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            ctx: VcpuContext::new(0, 0, id as u64),
            dom,
            nr_lrs,
            domid,
            armed_slice: None,
            debug: DebugControl::default(),
            step_done: false,
            last_brk: 0,
        }
    }

    /// The saved context (for the gdb stub and diagnostics).
    pub fn context(&self) -> &VcpuContext {
        &self.ctx
    }

    fn reset(&mut self, entry: u64, context_id: u64) {
        let debug = self.ctx.debug;
        self.ctx.reset(entry, context_id);
        // A reset vCPU keeps what the debugger armed in it.
        self.ctx.debug = debug;
        self.dom.cpu.forget_loaded_context();
    }

    fn vtimer_firing(&self) -> bool {
        let ctl = self.ctx.sys.cntv_ctl_el0;
        // ENABLE set, IMASK clear, and the compare value reached (CNTVOFF is 0).
        ctl & 1 != 0 && ctl & 2 == 0 && self.dom.cpu.counter() >= self.ctx.sys.cntv_cval_el0
    }

    /// Injects the virtual timer when it has fired, and keeps the physical
    /// PPI 27 disabled while a virtual one is in flight, so the still-high
    /// timer line does not bounce the vCPU straight back to EL2.
    fn update_vtimer(&mut self) {
        let enabled = self.dom.vgic.enabled(self.id, VTIMER_PPI);
        let firing = self.vtimer_firing();
        let priority = self.dom.vgic.priority(self.id, VTIMER_PPI);
        if !self.ctx.vgic.holds(VTIMER_PPI, self.nr_lrs)
            && firing
            && enabled
            && self.ctx.vgic.inject(VTIMER_PPI, priority, self.nr_lrs)
        {
            for lr in self.ctx.vgic.lr.iter_mut().take(self.nr_lrs) {
                if *lr & 0xffff_ffff == VTIMER_PPI as u64 {
                    *lr |= LR_EOI;
                }
            }
        }
        // A fired timer the guest has not enabled at its redistributor keeps
        // its line high too: leave the physical PPI off until it is enabled
        // (the next entry looks again).
        let quiet = !self.ctx.vgic.holds(VTIMER_PPI, self.nr_lrs) && (!firing || enabled);
        self.dom.cpu.set_ppi_enabled(intid::PPI_VTIMER, quiet);
    }

    /// Moves the interrupts raised for this vCPU that the guest has enabled
    /// from the virtual GIC into free list registers.
    fn flush_vgic(&mut self) {
        let (lrs, nr_lrs) = (&mut self.ctx.vgic, self.nr_lrs);
        self.dom.vgic.flush(self.id, |irq| lrs.inject(irq.intid, irq.priority, nr_lrs));
    }

    /// Whether an interrupt is waiting that the guest would take: in a list
    /// register, enabled and pending in the virtual GIC, or an enabled
    /// virtual timer that has fired.
    fn interrupt_waiting(&self) -> bool {
        self.ctx.vgic.any_pending(self.nr_lrs)
            || self.dom.vgic.has_deliverable(self.id)
            || (self.vtimer_firing() && self.dom.vgic.enabled(self.id, VTIMER_PPI))
    }

    /// `ICC_SGI1R_EL1` / `ICC_ASGI1R_EL1` written with `value`: raises the
    /// SGI on every target vCPU (the affinity-0 list of the Aff3.Aff2.Aff1
    /// cluster and 16-vCPU range it names, or every other vCPU with IRM) and
    /// wakes those that are blocked.
    fn send_sgi(&mut self, d: &Domain, value: u64) {
        let intid = ((value >> 24) & 0xf) as u32;
        let targets: Vec<u32> = if value & (1 << 40) != 0 {
            (0..self.dom.vcpus).filter(|&t| t != self.id).collect()
        } else {
            // Lantern's vCPUs all sit in cluster 0.0.0 with Aff0 = vCPU id.
            let cluster = (value >> 16) & 0xff | ((value >> 32) & 0xff) << 8 | ((value >> 48) & 0xff) << 16;
            if cluster != 0 {
                return;
            }
            let range = ((value >> 44) & 0xf) as u32 * 16;
            (0..16).filter(|b| value & (1 << b) != 0).map(|b| range + b).filter(|&t| t < self.dom.vcpus).collect()
        };
        for t in targets {
            self.dom.vgic.raise(t, intid);
            if t != self.id {
                if let Ok(v) = d.vcpu(t) {
                    d.vcpu_unblock(v);
                }
            }
        }
    }

    /// Arms the EL2 timer for the end of the board's time slice.
    fn arm_slice(&mut self, preempt: &dyn Preemption) {
        let deadline = preempt.slice_deadline();
        if deadline.is_some() && deadline != self.armed_slice {
            if let Some(at) = deadline {
                self.dom.cpu.arm_hyp_timer_at(at);
            }
            self.armed_slice = deadline;
        }
    }

    /// Moves the guest past the 4-byte instruction it trapped on. The PC
    /// wraps at the top of the address space (a guest may run code in the
    /// last page of TTBR1's range): a checked add would panic the
    /// hypervisor in a build with overflow checks.
    fn step_over(&mut self) {
        self.ctx.regs.pc = self.ctx.regs.pc.wrapping_add(4);
    }

    fn crash(&self, what: &str, syn: &Syndrome) -> VcpuExit {
        let e = Esr(syn.esr);
        log::error!(
            "d{}v{} crashed: unhandled {} ({}): esr {:#x} elr {:#x} far {:#x} ipa {:#x}",
            self.domid,
            self.id,
            what,
            e.ec_name(),
            syn.esr,
            self.ctx.regs.pc,
            syn.far,
            esr::fault_ipa(syn.hpfar, syn.far)
        );
        VcpuExit::Fault
    }

    fn handle_irq(&mut self) -> Option<VcpuExit> {
        let cpu = self.dom.cpu;
        let irq = cpu.ack_interrupt();
        if irq == intid::SPURIOUS {
            return None;
        }
        if irq == intid::PPI_HYP_TIMER {
            cpu.disarm_hyp_timer();
        }
        cpu.end_interrupt(irq);
        match irq {
            intid::PPI_HYP_TIMER => Some(VcpuExit::Preempted),
            // Virtual timer or a completed virtual interrupt: re-evaluated on
            // the way back in.
            intid::PPI_VTIMER | intid::PPI_MAINTENANCE => None,
            _ => Some(VcpuExit::HostInterrupt),
        }
    }

    /// Handles a synchronous exit with syndrome `syn`.
    fn handle_sync(&mut self, d: &Domain, syn: &Syndrome) -> Option<VcpuExit> {
        let e = Esr(syn.esr);
        match e.ec() {
            ec::HVC64 => match e.imm16() {
                XEN_HVC_IMM => {
                    let x = &self.ctx.regs.x;
                    Some(VcpuExit::Hypercall { nr: x[16], args: [x[0], x[1], x[2], x[3], x[4], 0] })
                }
                0 => self.psci(d),
                imm => {
                    let kind =
                        Unhandled::Access { space: "HVC", index: imm as u64, write: false, answer: "not supported" };
                    d.note_unhandled(Some(self.id), kind);
                    self.ctx.regs.x[0] = ret::NOT_SUPPORTED as u64;
                    None
                }
            },
            ec::SMC64 => {
                // A trapped SMC leaves ELR at the instruction itself.
                self.step_over();
                self.psci(d)
            }
            ec::WFX => {
                self.step_over();
                if e.is_wfe() {
                    return Some(VcpuExit::Yielded);
                }
                if self.interrupt_waiting() {
                    return None;
                }
                let ctl = self.ctx.sys.cntv_ctl_el0;
                let deadline = if ctl & 1 != 0 && ctl & 2 == 0 { self.ctx.sys.cntv_cval_el0 } else { NO_DEADLINE };
                self.dom.timer_deadline[self.id as usize].store(deadline, Ordering::Release);
                Some(VcpuExit::Halted)
            }
            ec::DABT_LOWER => self.data_abort(d, syn),
            ec::BRK64 => {
                // ELR_EL2 is the BRK itself; the core tells the debugger's
                // from the guest's own.
                self.last_brk = e.imm16();
                Some(VcpuExit::Debug(DebugEvent::Breakpoint { pc: self.ctx.regs.pc }))
            }
            ec::SOFTWARE_STEP_LOWER if self.debug.single_step => Some(VcpuExit::Debug(DebugEvent::Step)),
            // A step the debugger no longer wants (it disarmed meanwhile).
            ec::SOFTWARE_STEP_LOWER => None,
            // A point the debugger no longer has: the guest retries the
            // instruction, which no longer traps.
            ec::BREAKPOINT_LOWER => self
                .ctx
                .debug
                .breakpoint_hit(self.ctx.regs.pc)
                .map(|slot| VcpuExit::Debug(DebugEvent::HwPoint { slot })),
            ec::WATCHPOINT_LOWER => {
                self.ctx.debug.watchpoint_hit(syn.far).map(|slot| VcpuExit::Debug(DebugEvent::HwPoint { slot }))
            }
            ec::SYSREG => {
                // ICC_SGI1R_EL1 / ICC_ASGI1R_EL1 writes (IPIs) trap with IMO
                // set; ICC_SGI0R_EL1 would raise Group 0 SGIs, which a guest
                // (all Group 1 here) cannot take, so it is ignored.
                let iss = e.iss();
                let (op0, op1, crn, crm, op2) =
                    ((iss >> 20) & 3, (iss >> 14) & 7, (iss >> 10) & 0xf, (iss >> 1) & 0xf, (iss >> 17) & 7);
                let write = iss & 1 == 0;
                let rt = ((iss >> 5) & 0x1f) as usize;
                if (op0, op1, crn, crm) == (3, 0, 12, 11) && write && matches!(op2, 5..=7) {
                    let value = if rt == 31 { 0 } else { self.ctx.regs.x[rt] };
                    if op2 == 7 {
                        let kind = Unhandled::Access {
                            space: "sysreg ICC_SGI0R_EL1",
                            index: 0,
                            write: true,
                            answer: "ignored",
                        };
                        d.note_unhandled(Some(self.id), kind);
                    } else {
                        self.send_sgi(d, value);
                    }
                    self.step_over();
                    return None;
                }
                if let Some(reg) = emulated_sysreg(op0, op1, crn, crm, op2) {
                    let value = match (reg, write) {
                        (EmulatedSysreg::Mdscr, true) => {
                            self.ctx.sys.mdscr_el1 = if rt == 31 { 0 } else { self.ctx.regs.x[rt] };
                            // What the debugger armed is built on the guest's value.
                            if let Ok(regs) = debug_regs(&self.debug, self.ctx.sys.mdscr_el1) {
                                self.ctx.debug = regs;
                            }
                            // The saved copy changed: load it on entry.
                            self.dom.cpu.forget_loaded_context();
                            None
                        }
                        (EmulatedSysreg::Mdscr, false) => Some(self.ctx.sys.mdscr_el1),
                        (_, false) => Some(0),
                        (_, true) => None,
                    };
                    if let (Some(v), true) = (value, rt != 31) {
                        self.ctx.regs.x[rt] = v;
                    }
                    self.step_over();
                    return None;
                }
                Some(self.crash("system register access", syn))
            }
            _ => Some(self.crash("exception", syn)),
        }
    }

    /// A stage-2 data abort: a write to read-only RAM (a read-only grant
    /// mapping) is discarded and the guest continues after the store, as Xen
    /// on x86 discards writes to `p2m_grant_map_ro` (Xen on arm would retry
    /// the faulting store forever); a store without an instruction syndrome
    /// cannot be stepped over safely (it may write back its base register)
    /// and is fatal. Anything else is an MMIO access ([`Self::mmio`]).
    fn data_abort(&mut self, d: &Domain, syn: &Syndrome) -> Option<VcpuExit> {
        let e = Esr(syn.esr);
        let ipa = esr::fault_ipa(syn.hpfar, syn.far);
        let read_only_ram = d.p2m.lock().get(Gpa(ipa).gfn()).is_some_and(|entry| entry.p2mt == P2mType::RamRo);
        if !(read_only_ram && e.permission_fault()) {
            return self.mmio(d, syn);
        }
        match e.data_abort() {
            Some(access) if access.write => {
                let kind =
                    Unhandled::Access { space: "read-only RAM", index: ipa & !0xfff, write: true, answer: "dropped" };
                d.note_unhandled(Some(self.id), kind);
                self.step_over();
                None
            }
            _ => Some(self.crash("access to read-only RAM", syn)),
        }
    }

    /// Emulates an access to the virtual GIC frames. An access to RAM the
    /// guest ballooned out gets the data abort Xen injects for an access
    /// nothing handles; anything else is fatal.
    fn mmio(&mut self, d: &Domain, syn: &Syndrome) -> Option<VcpuExit> {
        let e = Esr(syn.esr);
        let ipa = esr::fault_ipa(syn.hpfar, syn.far);
        let gfn = lantern_common::memory::Gfn(ipa >> lantern_common::memory::PAGE_SHIFT);
        if guest::classify(ipa, self.dom.vcpus).is_none() && d.is_boot_ram(gfn) && d.p2m.lock().get(gfn).is_none() {
            let write = e.data_abort().is_some_and(|a| a.write);
            let kind = Unhandled::Access { space: "ballooned RAM", index: ipa & !0xfff, write, answer: "abort" };
            d.note_unhandled(Some(self.id), kind);
            self.inject_data_abort(syn.far);
            return None;
        }
        let (Some(frame), Some(access)) = (guest::classify(ipa, self.dom.vcpus), e.data_abort()) else {
            return Some(self.crash("stage-2 data abort", syn));
        };
        if !crate::vgic::width_allowed(frame, access.size) {
            let kind =
                Unhandled::Access { space: "GIC register width", index: ipa, write: access.write, answer: "abort" };
            d.note_unhandled(Some(self.id), kind);
            self.inject_data_abort(syn.far);
            return None;
        }
        let reg = access.reg as usize;
        if access.write {
            let value = if reg == 31 { 0 } else { self.ctx.regs.x[reg] };
            if let Some(n) = self.dom.vgic.write(frame, access.size, value) {
                // Newly enabled or pending: that vCPU must look again.
                if n != self.id {
                    if let Ok(v) = d.vcpu(n) {
                        d.vcpu_unblock(v);
                    }
                }
            }
        } else if reg != 31 {
            // The register holding the accessed bytes, shifted down to them.
            let (aligned, shift) = match frame {
                Frame::Dist(o) => (Frame::Dist(o & !3), (o & 3) * 8),
                Frame::Redist(n, o) => (Frame::Redist(n, o & !3), (o & 3) * 8),
            };
            let mut v = self.dom.vgic.read(aligned);
            if access.size == 8 {
                let high = match aligned {
                    Frame::Dist(o) => self.dom.vgic.read(Frame::Dist(o + 4)),
                    Frame::Redist(n, o) => self.dom.vgic.read(Frame::Redist(n, o + 4)),
                };
                v = (v & 0xffff_ffff) | (high << 32);
            } else {
                let bits = access.size * 8;
                v = (v >> shift) & ((1u64 << bits) - 1);
                // LDRSB/LDRSH/LDRSW (SSE): the loaded value's top bit fills
                // the register above it (to 32 bits for a W register, cut
                // below), as Xen's sign_extend does for an emulated load.
                if access.sign_extend && v & (1 << (bits - 1)) != 0 {
                    v |= u64::MAX << bits;
                }
            }
            if !access.sixty_four {
                v &= 0xffff_ffff;
            }
            self.ctx.regs.x[reg] = v;
        }
        self.step_over();
        None
    }

    /// Injects a synchronous data abort for virtual address `far` into the
    /// guest at EL1, as Xen's `inject_dabt64_exception` does: ESR_EL1 with
    /// the "same EL" or "lower EL" data-abort class, IL set and an empty ISS;
    /// the interrupted state in ELR/SPSR_EL1; EL1h with every exception
    /// masked at VBAR_EL1's synchronous vector for the mode it came from.
    fn inject_data_abort(&mut self, far: u64) {
        let from = self.ctx.regs.pstate;
        let from_el0 = (from >> 2) & 3 == 0;
        // The classes read the same in ESR_EL1 as in ESR_EL2 (0x24 "from a
        // lower EL", 0x25 "from the same EL").
        let class = if from_el0 { ec::DABT_LOWER } else { ec::DABT_CUR };
        self.ctx.sys.far_el1 = far;
        self.inject_sync((u64::from(class) << 26) | (1 << 25));
    }

    /// Takes a synchronous exception with syndrome `esr` into the guest at
    /// EL1: the interrupted state in ELR/SPSR_EL1, EL1h with every exception
    /// masked at VBAR_EL1's synchronous vector for the mode it came from.
    fn inject_sync(&mut self, esr: u64) {
        let from = self.ctx.regs.pstate;
        let from_el0 = (from >> 2) & 3 == 0;
        let vector = if from_el0 { 0x400 } else { 0x200 };
        self.ctx.sys.esr_el1 = esr;
        self.ctx.sys.elr_el1 = self.ctx.regs.pc;
        self.ctx.sys.spsr_el1 = from;
        self.ctx.regs.pstate = crate::context::SPSR_EL1H_MASKED;
        self.ctx.regs.pc = self.ctx.sys.vbar_el1 + vector;
        // The EL1 registers just edited must be loaded on the next entry.
        self.dom.cpu.forget_loaded_context();
    }

    fn psci(&mut self, d: &Domain) -> Option<VcpuExit> {
        let call = PsciCall::decode(&self.ctx.regs.x[0..4]);
        let r: i64 = match call {
            PsciCall::Version => psci::PSCI_VERSION_1_0 as i64,
            PsciCall::CpuOn { target, entry, context_id } => self.cpu_on(d, target, entry, context_id),
            PsciCall::CpuOff => return Some(VcpuExit::Down),
            PsciCall::AffinityInfo { target, level } => {
                match (level, psci::mpidr_to_vcpu(target).and_then(|t| d.vcpu(t).ok())) {
                    (0, Some(v)) if v.is_up() => affinity::ON,
                    (0, Some(v)) if self.dom.power_on.lock()[v.id as usize].is_some() => affinity::ON_PENDING,
                    (0, Some(_)) => affinity::OFF,
                    _ => ret::INVALID_PARAMETERS,
                }
            }
            PsciCall::SystemOff => return Some(VcpuExit::DomainShutdown(shutdown::POWEROFF)),
            PsciCall::SystemReset => return Some(VcpuExit::DomainShutdown(shutdown::REBOOT)),
            PsciCall::Features(fid) => {
                if PsciCall::supported(fid) {
                    ret::SUCCESS
                } else {
                    ret::NOT_SUPPORTED
                }
            }
            // 2: no trusted OS needs migrating.
            PsciCall::MigrateInfoType => 2,
            PsciCall::Unknown(fid) => {
                let kind =
                    Unhandled::Access { space: "PSCI", index: fid as u64, write: false, answer: "not supported" };
                d.note_unhandled(Some(self.id), kind);
                ret::NOT_SUPPORTED
            }
        };
        self.ctx.regs.x[0] = r as u64;
        None
    }

    fn cpu_on(&mut self, d: &Domain, target: u64, entry: u64, context_id: u64) -> i64 {
        let Some(v) = psci::mpidr_to_vcpu(target).and_then(|t| d.vcpu(t).ok()) else {
            return ret::INVALID_PARAMETERS;
        };
        // Every domain here is AArch64, where bit 0 of an entry point asks
        // for Thumb state, which does not exist: refused before anything
        // changes, as Xen's vPSCI does.
        if entry & 1 != 0 {
            return ret::INVALID_ADDRESS;
        }
        if v.is_up() {
            return ret::ALREADY_ON;
        }
        {
            let mut po = self.dom.power_on.lock();
            let slot = &mut po[v.id as usize];
            if slot.is_some() {
                return ret::ON_PENDING;
            }
            *slot = Some((entry, context_id));
        }
        v.set_initialised();
        match lifecycle::vcpu_up(d, v) {
            Ok(()) => ret::SUCCESS,
            Err(_) => {
                self.dom.power_on.lock()[v.id as usize] = None;
                ret::DENIED
            }
        }
    }
}

impl ArchVcpu for ArmVcpu {
    fn run(&mut self, d: &Domain, preempt: &mut dyn Preemption) -> VcpuExit {
        let pending = self.dom.power_on.lock()[self.id as usize].take();
        if let Some((entry, context_id)) = pending {
            // The core may already have injected an upcall for this vCPU
            // (events can be marked pending while it is still off); a fresh
            // CPU interface must not lose it: the upcall PPI stays pending
            // while `evtchn_upcall_pending` is set.
            let had_upcall = self.ctx.vgic.holds(EVTCHN_PPI, self.nr_lrs);
            self.reset(entry, context_id);
            if had_upcall || d.vcpu(self.id).is_ok_and(|v| d.upcall_pending(v)) {
                self.dom.vgic.raise(self.id, EVTCHN_PPI);
            }
        }
        self.dom.timer_deadline[self.id as usize].store(NO_DEADLINE, Ordering::Release);
        // Cheap when the scheduler's `sync_p2m` already did it (the p2m's
        // generation is unchanged); keeps a direct caller correct too.
        self.dom.sync_stage2(d);
        let vttbr = self.dom.vttbr();
        let cpu = self.dom.cpu;
        loop {
            if core::mem::take(&mut self.step_done) {
                return VcpuExit::Debug(DebugEvent::Step);
            }
            self.update_vtimer();
            self.flush_vgic();
            self.arm_slice(preempt);
            let pc_before = self.ctx.regs.pc;
            if self.debug.single_step {
                // The step is active-not-pending on the way in.
                self.ctx.regs.pstate |= SPSR_SS;
            }
            let kind = cpu.run_context(&mut self.ctx, self.key, vttbr, self.nr_lrs);
            self.ctx.regs.pstate &= !SPSR_SS;
            self.dom.exits.fetch_add(1, Ordering::Relaxed);
            let exit = match kind {
                ExitKind::Irq => self.handle_irq(),
                ExitKind::Sync => self.handle_sync(d, &cpu.syndrome()),
                ExitKind::Fiq | ExitKind::SError | ExitKind::Aarch32 => {
                    Some(self.crash("asynchronous exception or AArch32 state", &cpu.syndrome()))
                }
            };
            if let Some(exit) = exit {
                return exit;
            }
            if self.debug.single_step && self.ctx.regs.pc != pc_before {
                // The hypervisor completed the stepped instruction itself.
                return VcpuExit::Debug(DebugEvent::Step);
            }
        }
    }

    fn complete_hypercall(&mut self, ret: i64) {
        // ELR_EL2 already points past the HVC.
        self.ctx.regs.x[0] = ret as u64;
        // A step over the HVC ends here.
        self.step_done = self.debug.single_step;
    }

    fn inject_upcall(&mut self, _domain: &Domain) {
        // Arm has no upcall mask: the PPI is raised in the virtual GIC and
        // reaches the guest once it has enabled PPI 31 at its redistributor
        // (Linux does so only after registering its vcpu_info).
        self.dom.vgic.raise(self.id, EVTCHN_PPI);
    }

    fn translate(&self, domain: &Domain, gva: Gva, write: bool) -> XenResult<Gpa> {
        let regs = Stage1Regs {
            sctlr: self.ctx.sys.sctlr_el1,
            tcr: self.ctx.sys.tcr_el1,
            ttbr0: self.ctx.sys.ttbr0_el1,
            ttbr1: self.ctx.sys.ttbr1_el1,
        };
        let mem = PhysMem::new(domain);
        walk::translate(&regs, gva.0, write, |ipa| mem.read_obj::<u64>(Gpa(ipa)).ok())
            .map(Gpa)
            .map_err(|_| Errno::EFAULT)
    }

    fn mode(&self) -> GuestMode {
        GuestMode::Long64
    }

    fn guest_abi(&self, _domain: &Domain) -> &'static dyn GuestAbi {
        &crate::layout::ARM64
    }

    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        match *ctx {
            VcpuInitContext::PowerOn { entry, context_id } => {
                self.reset(entry, context_id);
                Ok(())
            }
            // arm64 guests bring vCPUs up with PSCI CPU_ON.
            VcpuInitContext::XenInitialise(_) => Err(Errno::ENOSYS),
        }
    }

    fn initialise_arg_size(&self) -> usize {
        0
    }

    fn check_upcall_vector(&self, _vector: u8) -> XenResult<()> {
        // Xen on arm has no per-vCPU upcall vector (the event PPI is fixed).
        Err(Errno::ENOSYS)
    }

    fn set_timer_op_timeout(&self, _args: &[u64; 6]) -> XenResult<u64> {
        // Xen's arm hypercall table has no set_timer_op: arm guests use the
        // generic timer (or VCPUOP_set_singleshot_timer).
        Err(Errno::ENOSYS)
    }

    fn xen_features(&self, submap_idx: u32) -> u32 {
        match submap_idx {
            0 => GUEST_FEATURES,
            _ => 0,
        }
    }

    fn vm_assist_valid_mask(&self) -> u64 {
        // Xen on arm: only the runstate update flag.
        1 << xen_abi::nr::vmasst::TYPE_RUNSTATE_UPDATE_FLAG
    }

    fn time_area_by_va_supported(&self) -> XenResult<()> {
        // Xen's arm vcpu_op lists only vcpu_info and the runstate area by
        // address; every other op, the time area included, is -EINVAL.
        Err(Errno::EINVAL)
    }

    fn set_debug(&mut self, ctl: &DebugControl) -> XenResult<()> {
        self.ctx.debug = debug_regs(ctl, self.ctx.sys.mdscr_el1)?;
        self.debug = ctl.clone();
        Ok(())
    }

    fn breakpoint_instruction(&self) -> &'static [u8] {
        &BRK0
    }

    fn deliver_breakpoint(&mut self) {
        // What the guest's BRK raises at EL1: class 0x3C, IL, its immediate.
        let esr = (u64::from(ec::BRK64) << 26) | (1 << 25) | u64::from(self.last_brk);
        self.inject_sync(esr);
    }

    fn gfn_limit(&self) -> u64 {
        1 << (crate::stage2::IPA_BITS - lantern_common::memory::PAGE_SHIFT)
    }
}

/// `XENVER_get_features` submap 0 of an arm guest, as Xen's: translated
/// (stage 2) and not direct-mapped, SMCCC calls supported, the physically
/// registered runstate area (the time area is x86-only in Xen). Left out:
/// `memory_op_vnode_supported` (no `XENMEM_get_vnumainfo`).
pub const GUEST_FEATURES: u32 = {
    use xen_abi::nr::xenfeat::*;
    word(&[WRITABLE_PAGE_TABLES, AUTO_TRANSLATED_PHYSMAP, ARM_SMCCC_SUPPORTED, NOT_DIRECT_MAPPED, RUNSTATE_PHYS_AREA])
};

impl GdbRegisters for ArmVcpu {
    fn target_xml(&self) -> &'static str {
        crate::gdb::TARGET_XML
    }

    fn read_registers(&self, out: &mut [u8]) -> usize {
        crate::gdb::read_registers(&self.ctx, out)
    }

    fn write_registers(&mut self, data: &[u8]) -> XenResult<()> {
        crate::gdb::write_registers(&mut self.ctx, data)?;
        self.dom.cpu.forget_loaded_context();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::LR_STATE_SHIFT;
    use crate::hw::fake::FakeCpu;
    use crate::psci::PSCI_VERSION_1_0;
    use lantern_common::addr::Gfn;
    use lantern_common::memory::Page;
    use lantern_testkit::TestDomain;
    use smccc::psci as fid;

    const NR_LRS: usize = 4;
    const ENTRY: u64 = 0x4008_0000;
    const DTB: u64 = 0x4000_0000;

    /// A domain, its arch object and the fake CPU they run on.
    struct Fixture {
        d: Arc<Domain>,
        arch: ArmDomain,
        cpu: &'static FakeCpu,
    }

    /// The guest enables SGI/PPI `intid` at vCPU `vcpu`'s redistributor.
    fn enable_private(r: &Fixture, vcpu: u32, intid: u32) {
        r.arch.shared.vgic.write(Frame::Redist(vcpu, crate::vgic::SGI_FRAME + 0x100), 4, 1 << intid);
    }

    fn fixture(vcpus: u32) -> Fixture {
        let d = TestDomain::new(&crate::layout::ARM64).id(3).vcpus(vcpus).build();
        let cpu = FakeCpu::leaked();
        Fixture { d, arch: ArmDomain::new(cpu, 7, vcpus, NR_LRS), cpu }
    }

    impl Fixture {
        /// vCPU `id` in its reset state; vCPU 0 powered on at [`ENTRY`] with
        /// x0 = [`DTB`], as the boot protocol starts it.
        fn vcpu(&self, id: u32) -> ArmVcpu {
            let mut v = ArmVcpu::new(self.arch.shared.clone(), self.d.id, id, NR_LRS);
            if id == 0 {
                v.initialise(&VcpuInitContext::PowerOn { entry: ENTRY, context_id: DTB }).unwrap();
            }
            v
        }
    }

    /// The board's slice timer: a fixed deadline, never a host interrupt.
    struct Slice(Option<u64>);
    impl Preemption for Slice {
        fn slice_deadline(&self) -> Option<u64> {
            self.0
        }
        fn host_interrupt(&mut self) -> bool {
            false
        }
    }

    fn esr(class: u32, iss: u32) -> u64 {
        ((class as u64) << 26) | (1 << 25) | iss as u64
    }

    fn sync(esr: u64) -> Syndrome {
        Syndrome { esr, ..Syndrome::default() }
    }

    /// `hvc #imm`.
    fn hvc(imm: u16) -> Syndrome {
        sync(esr(ec::HVC64, imm as u32))
    }

    /// The Xen hypercall `hvc #0xEA1`.
    fn xen_hvc() -> Syndrome {
        hvc(XEN_HVC_IMM)
    }

    /// A PSCI call through `hvc #0` with x0..x3 = `regs`; returns the exit
    /// and the value left in x0.
    fn psci_call(v: &mut ArmVcpu, d: &Domain, regs: [u64; 4]) -> (Option<VcpuExit>, i64) {
        v.ctx.regs.x[..4].copy_from_slice(&regs);
        let exit = v.handle_sync(d, &hvc(0));
        (exit, v.ctx.regs.x[0] as i64)
    }

    /// ISS of a trapped MSR/MRS with the given encoding and transfer register.
    fn sysreg_iss(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, rt: u32, read: bool) -> u32 {
        (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) | read as u32
    }

    /// A stage-2 data abort at `ipa` with a valid syndrome.
    fn data_abort(ipa: u64, size: usize, reg: u32, sixty_four: bool, write: bool) -> Syndrome {
        let sas = size.trailing_zeros();
        let iss = (1 << 24) | (sas << 22) | (reg << 16) | ((sixty_four as u32) << 15) | ((write as u32) << 6) | 0x07;
        Syndrome { esr: esr(ec::DABT_LOWER, iss), far: ipa & 0xfff, hpfar: (ipa >> 12) << 4 }
    }

    #[test]
    fn no_soft_reset_on_arm() {
        let r = fixture(1);
        assert_eq!(r.arch.soft_reset_supported(), Err(Errno::ENOSYS));
        // And the core refuses before touching the domain.
        r.d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
        assert_eq!(lifecycle::soft_reset(&r.d, &r.arch), Err(Errno::ENOSYS));
        assert!(r.d.is_finished());
    }

    #[test]
    fn features_are_xens_for_an_arm_guest() {
        use xen_abi::nr::xenfeat::*;
        let r = fixture(1);
        let f = r.vcpu(0).xen_features(0);
        for bit in [WRITABLE_PAGE_TABLES, AUTO_TRANSLATED_PHYSMAP, ARM_SMCCC_SUPPORTED, NOT_DIRECT_MAPPED] {
            assert_ne!(f & (1 << bit), 0, "bit {bit}");
        }
        assert_ne!(f & (1 << RUNSTATE_PHYS_AREA), 0);
        // x86-only bits.
        for bit in [HVM_CALLBACK_VECTOR, HVM_SAFE_PVCLOCK, VCPU_TIME_PHYS_AREA, DIRECT_MAPPED] {
            assert_eq!(f & (1 << bit), 0, "bit {bit}");
        }
        assert_eq!(r.vcpu(0).xen_features(1), 0);
    }

    #[test]
    fn no_per_vcpu_upcall_vector_on_arm() {
        let r = fixture(1);
        assert_eq!(r.vcpu(0).check_upcall_vector(0xF3), Err(Errno::ENOSYS));
    }

    #[test]
    fn boot_vcpu_state() {
        let r = fixture(1);
        let v = r.vcpu(0);
        assert_eq!((v.context().regs.pc, v.context().regs.x[0]), (ENTRY, DTB));
        assert_eq!(v.context().vmpidr, 0x8000_0000);
        assert_eq!(r.vcpu(2).context().vmpidr, 0x8000_0002);
        assert_eq!(v.mode(), GuestMode::Long64);
        assert_eq!(v.guest_abi(&r.d).name(), "arm64");
        assert_eq!(v.initialise_arg_size(), 0);
        assert_eq!(r.cpu.loaded_forgotten(), 1, "a reset context must be reloaded in full");
    }

    #[test]
    fn xen_initialise_is_not_offered() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        assert_eq!(v.initialise(&VcpuInitContext::XenInitialise(&[0; 64])), Err(Errno::ENOSYS));
    }

    #[test]
    fn set_timer_op_is_not_offered() {
        // Xen's arm hypercall table has no set_timer_op.
        let r = fixture(1);
        assert_eq!(r.vcpu(0).set_timer_op_timeout(&[1_000_000, 0, 0, 0, 0, 0]), Err(Errno::ENOSYS));
    }

    #[test]
    fn hypercall_register_convention() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.ctx.regs.x[16] = xen_abi::nr::hypercall::SCHED_OP;
        v.ctx.regs.x[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        let exit = v.run(&r.d, &mut Slice(Some(777)));
        // x16 is the number, x0..x4 the arguments (x5 is not one).
        assert_eq!(exit, VcpuExit::Hypercall { nr: xen_abi::nr::hypercall::SCHED_OP, args: [1, 2, 3, 4, 5, 0] });
        v.complete_hypercall(Errno::ENOSYS.to_hypercall_ret());
        assert_eq!(v.ctx.regs.x[0] as i64, Errno::ENOSYS.to_hypercall_ret(), "the result goes to x0");
        assert_eq!(v.ctx.regs.pc, ENTRY, "ELR_EL2 already points past the HVC");
        // The entry used this vCPU's key and the domain's stage 2, and the
        // slice timer was armed for the board's deadline.
        let entry = &r.cpu.entries()[0];
        assert_eq!((entry.key, entry.vttbr, entry.pc), (v.key, r.arch.shared.vttbr(), ENTRY));
        assert_eq!(entry.vttbr >> 48, 7, "VMID");
        assert_eq!(r.cpu.hyp_timer(), Some(777));
        assert_eq!(r.arch.exits(), 1);
    }

    #[test]
    fn other_hvc_immediates_are_not_supported() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        assert_eq!(v.handle_sync(&r.d, &hvc(0x1234)), None);
        assert_eq!(v.ctx.regs.x[0] as i64, ret::NOT_SUPPORTED);
    }

    #[test]
    fn psci_queries() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        assert_eq!(psci_call(&mut v, &r.d, [fid::PSCI_VERSION as u64, 0, 0, 0]), (None, PSCI_VERSION_1_0 as i64));
        let cpu_on = fid::PSCI_CPU_ON_64 as u64;
        assert_eq!(psci_call(&mut v, &r.d, [fid::PSCI_FEATURES as u64, cpu_on, 0, 0]), (None, ret::SUCCESS));
        assert_eq!(psci_call(&mut v, &r.d, [fid::PSCI_FEATURES as u64, 0xC400_0001, 0, 0]), (None, ret::NOT_SUPPORTED));
        assert_eq!(psci_call(&mut v, &r.d, [fid::PSCI_MIGRATE_INFO_TYPE as u64, 0, 0, 0]), (None, 2));
        assert_eq!(psci_call(&mut v, &r.d, [0x8400_00ff, 0, 0, 0]), (None, ret::NOT_SUPPORTED));
        // The unknown function is counted for `lantern.log=debug`.
        let unknown = Unhandled::Access { space: "PSCI", index: 0x8400_00ff, write: false, answer: "not supported" };
        assert_eq!(r.d.diag.lock().count(&unknown), 1);
    }

    #[test]
    fn psci_cpu_on_a_down_vcpu_then_affinity_info() {
        let r = fixture(2);
        let mut v0 = r.vcpu(0);
        let affinity_info = |v: &mut ArmVcpu, target: u64, level: u64| {
            psci_call(v, &r.d, [fid::PSCI_AFFINITY_INFO_64 as u64, target, level, 0])
        };
        assert_eq!(affinity_info(&mut v0, 1, 0), (None, affinity::OFF));
        assert_eq!(affinity_info(&mut v0, 0, 0), (None, affinity::ON));
        assert!(!r.d.vcpu(1).unwrap().is_up());

        // A Thumb entry point (bit 0) is refused and leaves the vCPU down.
        let thumb = psci_call(&mut v0, &r.d, [fid::PSCI_CPU_ON_64 as u64, 1, 0x4010_0001, 0x55]);
        assert_eq!(thumb, (None, ret::INVALID_ADDRESS));
        assert!(!r.d.vcpu(1).unwrap().is_up());
        let on = psci_call(&mut v0, &r.d, [fid::PSCI_CPU_ON_64 as u64, 1, 0x4010_0000, 0x55]);
        assert_eq!(on, (None, ret::SUCCESS));
        assert!(r.d.vcpu(1).unwrap().is_up());
        assert!(r.d.vcpu(1).unwrap().is_initialised());
        assert_eq!(affinity_info(&mut v0, 1, 0), (None, affinity::ON));
        // Only affinity level 0 is known, and only existing vCPUs.
        assert_eq!(affinity_info(&mut v0, 1, 1), (None, ret::INVALID_PARAMETERS));
        assert_eq!(affinity_info(&mut v0, 5, 0), (None, ret::INVALID_PARAMETERS));

        // The target starts at the entry with x0 = the context id when it
        // first runs.
        let mut v1 = r.vcpu(1);
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        let exit = v1.run(&r.d, &mut Slice(None));
        assert_eq!(exit, VcpuExit::Hypercall { nr: 0, args: [0x55, 0, 0, 0, 0, 0] });
        assert_eq!(r.cpu.entries()[0].pc, 0x4010_0000);
        assert_eq!(r.cpu.hyp_timer(), None, "no slice deadline: the timer stays off");
        assert!(r.arch.shared.power_on.lock()[1].is_none(), "the request is consumed");
    }

    #[test]
    fn psci_cpu_on_an_up_vcpu_is_already_on() {
        let r = fixture(2);
        let mut v0 = r.vcpu(0);
        let cpu_on =
            |v: &mut ArmVcpu, target: u64| psci_call(v, &r.d, [fid::PSCI_CPU_ON_64 as u64, target, 0x4010_0000, 0]).1;
        assert_eq!(cpu_on(&mut v0, 0), ret::ALREADY_ON);
        assert_eq!(cpu_on(&mut v0, 1), ret::SUCCESS);
        assert_eq!(cpu_on(&mut v0, 1), ret::ALREADY_ON);
        // Higher affinity levels and absent vCPUs are invalid targets.
        assert_eq!(cpu_on(&mut v0, 0x100), ret::INVALID_PARAMETERS);
        assert_eq!(cpu_on(&mut v0, 2), ret::INVALID_PARAMETERS);
    }

    #[test]
    fn cpu_on_keeps_an_upcall_marked_while_the_vcpu_was_off() {
        let r = fixture(2);
        let mut v0 = r.vcpu(0);
        let mut v1 = r.vcpu(1);
        enable_private(&r, 1, EVTCHN_PPI);
        assert_eq!(psci_call(&mut v0, &r.d, [fid::PSCI_CPU_ON_64 as u64, 1, 0x4010_0000, 0]).1, ret::SUCCESS);
        r.d.vcpu_mark_events_pending(r.d.vcpu(1).unwrap());
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        v1.run(&r.d, &mut Slice(None));
        let lr = r.cpu.entries()[0].lrs[0];
        assert_eq!((lr & 0xffff_ffff) as u32, EVTCHN_PPI);
        assert_eq!(lr >> LR_STATE_SHIFT, 1, "pending");
    }

    #[test]
    fn psci_cpu_off_and_system_calls() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let call = |v: &mut ArmVcpu, f: u32| psci_call(v, &r.d, [f as u64, 0, 0, 0]).0;
        assert_eq!(call(&mut v, fid::PSCI_CPU_OFF), Some(VcpuExit::Down));
        assert_eq!(call(&mut v, fid::PSCI_SYSTEM_OFF), Some(VcpuExit::DomainShutdown(shutdown::POWEROFF)));
        assert_eq!(call(&mut v, fid::PSCI_SYSTEM_RESET), Some(VcpuExit::DomainShutdown(shutdown::REBOOT)));
    }

    #[test]
    fn psci_through_smc_moves_past_the_instruction() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.ctx.regs.x[0] = fid::PSCI_SYSTEM_OFF as u64;
        let exit = v.handle_sync(&r.d, &sync(esr(ec::SMC64, 0)));
        assert_eq!(exit, Some(VcpuExit::DomainShutdown(shutdown::POWEROFF)));
        assert_eq!(v.ctx.regs.pc, ENTRY + 4);
        v.ctx.regs.x[0] = fid::PSCI_VERSION as u64;
        assert_eq!(v.handle_sync(&r.d, &sync(esr(ec::SMC64, 0))), None);
        assert_eq!((v.ctx.regs.x[0], v.ctx.regs.pc), (PSCI_VERSION_1_0, ENTRY + 8));
    }

    #[test]
    fn wfi_with_nothing_pending_halts_and_records_the_vtimer_deadline() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let wfi = sync(esr(ec::WFX, 0));
        r.cpu.set_counter(100);
        // Virtual timer off: halted with no deadline of its own.
        assert_eq!(v.handle_sync(&r.d, &wfi), Some(VcpuExit::Halted));
        assert_eq!(v.ctx.regs.pc, ENTRY + 4);
        assert_eq!(r.arch.timer_deadline(0), None);
        // Enabled and unmasked, not yet due: the board must wake it then.
        v.ctx.sys.cntv_ctl_el0 = 1;
        v.ctx.sys.cntv_cval_el0 = 5000;
        assert_eq!(v.handle_sync(&r.d, &wfi), Some(VcpuExit::Halted));
        assert_eq!(r.arch.timer_deadline(0), Some(5000));
        // Masked (IMASK): no deadline.
        v.ctx.sys.cntv_ctl_el0 = 3;
        assert_eq!(v.handle_sync(&r.d, &wfi), Some(VcpuExit::Halted));
        assert_eq!(r.arch.timer_deadline(0), None);
        assert_eq!(r.arch.timer_deadline(9), None, "no such vCPU");
    }

    #[test]
    fn wfi_with_an_interrupt_due_continues() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let wfi = sync(esr(ec::WFX, 0));
        enable_private(&r, 0, VTIMER_PPI);
        // The virtual timer has fired.
        v.ctx.sys.cntv_ctl_el0 = 1;
        v.ctx.sys.cntv_cval_el0 = 50;
        r.cpu.set_counter(100);
        assert_eq!(v.handle_sync(&r.d, &wfi), None);
        assert_eq!(v.ctx.regs.pc, ENTRY + 4);
        // An upcall raised but not enabled by the guest: nothing to take.
        v.ctx.sys.cntv_ctl_el0 = 0;
        v.inject_upcall(&r.d);
        assert_eq!(v.handle_sync(&r.d, &wfi), Some(VcpuExit::Halted));
        // Enabled, it is due.
        enable_private(&r, 0, EVTCHN_PPI);
        assert_eq!(v.handle_sync(&r.d, &wfi), None);
        // And once in a list register, still due.
        v.flush_vgic();
        assert_eq!(v.handle_sync(&r.d, &wfi), None);
        assert_eq!(r.arch.timer_deadline(0), None);
    }

    #[test]
    fn running_again_clears_the_recorded_deadline() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.ctx.sys.cntv_ctl_el0 = 1;
        v.ctx.sys.cntv_cval_el0 = 5000;
        r.cpu.script_exit(ExitKind::Sync, sync(esr(ec::WFX, 0)));
        assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Halted);
        assert_eq!(r.arch.timer_deadline(0), Some(5000));
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        assert!(matches!(v.run(&r.d, &mut Slice(None)), VcpuExit::Hypercall { .. }));
        assert_eq!(r.arch.timer_deadline(0), None);
    }

    #[test]
    fn wfe_yields_the_slice() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        assert_eq!(v.handle_sync(&r.d, &sync(esr(ec::WFX, 1))), Some(VcpuExit::Yielded));
        assert_eq!(v.ctx.regs.pc, ENTRY + 4);
    }

    #[test]
    fn icc_sgi1r_writes_are_skipped() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let sgi1r_write = sync(esr(ec::SYSREG, sysreg_iss(3, 0, 12, 11, 5, 2, false)));
        assert_eq!(v.handle_sync(&r.d, &sgi1r_write), None);
        assert_eq!(v.ctx.regs.pc, ENTRY + 4);
    }

    #[test]
    fn debug_and_pmu_registers_are_emulated_not_passed_through() {
        use EmulatedSysreg::*;
        // MDSCR_EL1, DBGBVR0_EL1, DBGWCR3_EL1, OSLAR_EL1, MDCCSR_EL0.
        assert_eq!(emulated_sysreg(2, 0, 0, 2, 2), Some(Mdscr));
        assert_eq!(emulated_sysreg(2, 0, 0, 0, 4), Some(DebugRazWi));
        assert_eq!(emulated_sysreg(2, 0, 0, 3, 7), Some(DebugRazWi));
        assert_eq!(emulated_sysreg(2, 0, 1, 0, 4), Some(DebugRazWi));
        assert_eq!(emulated_sysreg(2, 3, 0, 1, 0), Some(DebugRazWi));
        // PMCR_EL0, PMUSERENR_EL0, PMINTENSET_EL1, PMEVCNTR0_EL0, PMCCFILTR_EL0.
        assert_eq!(emulated_sysreg(3, 3, 9, 12, 0), Some(PmuRazWi));
        assert_eq!(emulated_sysreg(3, 3, 9, 14, 0), Some(PmuRazWi));
        assert_eq!(emulated_sysreg(3, 0, 9, 14, 1), Some(PmuRazWi));
        assert_eq!(emulated_sysreg(3, 3, 14, 8, 0), Some(PmuRazWi));
        assert_eq!(emulated_sysreg(3, 3, 14, 15, 7), Some(PmuRazWi));
        // ICC_SGI1R_EL1, the virtual counter, SCTLR_EL1: none of these.
        assert_eq!(emulated_sysreg(3, 0, 12, 11, 5), None);
        assert_eq!(emulated_sysreg(3, 3, 14, 0, 2), None);
        assert_eq!(emulated_sysreg(3, 0, 1, 0, 0), None);
    }

    #[test]
    fn mdscr_is_per_vcpu_and_debug_and_pmu_reads_are_zero() {
        let r = fixture(2);
        let (mut v0, mut v1) = (r.vcpu(0), r.vcpu(1));
        let forgotten = r.cpu.loaded_forgotten();
        v0.ctx.regs.x[3] = 0x8000; // MDSCR_EL1.MDE
        let mdscr_write = sync(esr(ec::SYSREG, sysreg_iss(2, 0, 0, 2, 2, 3, false)));
        assert_eq!(v0.handle_sync(&r.d, &mdscr_write), None);
        assert_eq!(v0.ctx.sys.mdscr_el1, 0x8000);
        assert_eq!(v0.ctx.regs.pc, ENTRY + 4);
        assert_eq!(r.cpu.loaded_forgotten(), forgotten + 1, "the edited context is reloaded on entry");
        let mdscr_read = sync(esr(ec::SYSREG, sysreg_iss(2, 0, 0, 2, 2, 4, true)));
        v1.ctx.regs.x[4] = 7;
        assert_eq!(v1.handle_sync(&r.d, &mdscr_read), None);
        assert_eq!(v1.ctx.regs.x[4], 0, "v1 does not see v0's MDSCR_EL1");
        v0.ctx.regs.x[4] = 7;
        assert_eq!(v0.handle_sync(&r.d, &mdscr_read), None);
        assert_eq!(v0.ctx.regs.x[4], 0x8000);
        // DBGBVR0_EL1 and PMCCNTR_EL0 (3, 3, 9, 13, 0) read as zero after a write.
        for (op0, op1, crn, crm, op2) in [(2, 0, 0, 0, 4), (3, 3, 9, 13, 0)] {
            v0.ctx.regs.x[5] = 0xdead;
            let w = sync(esr(ec::SYSREG, sysreg_iss(op0, op1, crn, crm, op2, 5, false)));
            assert_eq!(v0.handle_sync(&r.d, &w), None);
            let rd = sync(esr(ec::SYSREG, sysreg_iss(op0, op1, crn, crm, op2, 5, true)));
            assert_eq!(v0.handle_sync(&r.d, &rd), None);
            assert_eq!(v0.ctx.regs.x[5], 0, "({op0}, {op1}, {crn}, {crm}, {op2}) reads as zero");
        }
    }

    #[test]
    fn unknown_sysreg_trap_crashes_the_domain() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        // A read of an SGI register is no SGI.
        let sgi1r_read = sync(esr(ec::SYSREG, sysreg_iss(3, 0, 12, 11, 5, 2, true)));
        assert_eq!(v.handle_sync(&r.d, &sgi1r_read), Some(VcpuExit::Fault));
        let impdef = sync(esr(ec::SYSREG, sysreg_iss(3, 1, 15, 2, 0, 0, true)));
        assert_eq!(v.handle_sync(&r.d, &impdef), Some(VcpuExit::Fault));
        assert_eq!(v.ctx.regs.pc, ENTRY, "a crashed vCPU stays at the instruction");
    }

    #[test]
    fn unhandled_exception_classes_crash_the_domain() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        assert_eq!(v.handle_sync(&r.d, &sync(esr(ec::IABT_LOWER, 0x07))), Some(VcpuExit::Fault));
    }

    #[test]
    fn a_brk_is_reported_and_the_guests_own_is_delivered_to_it() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.ctx.sys.vbar_el1 = 0x8_0000;
        let exit = v.handle_sync(&r.d, &sync(esr(ec::BRK64, 0x800)));
        assert_eq!(exit, Some(VcpuExit::Debug(DebugEvent::Breakpoint { pc: ENTRY })));
        // Not the debugger's: the guest takes it at EL1 as the CPU would
        // have given it, the BRK as the return address.
        v.deliver_breakpoint();
        assert_eq!(v.ctx.sys.esr_el1, (0x3c << 26) | (1 << 25) | 0x800);
        assert_eq!(v.ctx.sys.elr_el1, ENTRY);
        assert_eq!(v.ctx.regs.pc, 0x8_0200);
    }

    #[test]
    fn debug_exceptions_map_to_the_points_armed() {
        use lantern_common::debug::{HwKind, HwPoint};
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let ctl = DebugControl {
            single_step: true,
            hw_points: vec![
                HwPoint { addr: 0x9000, len: 8, kind: HwKind::Write },
                HwPoint { addr: ENTRY, len: 1, kind: HwKind::Execute },
            ],
            ..DebugControl::default()
        };
        v.set_debug(&ctl).unwrap();
        assert_eq!(
            v.handle_sync(&r.d, &sync(esr(ec::SOFTWARE_STEP_LOWER, 0))),
            Some(VcpuExit::Debug(DebugEvent::Step))
        );
        assert_eq!(
            v.handle_sync(&r.d, &sync(esr(ec::BREAKPOINT_LOWER, 0))),
            Some(VcpuExit::Debug(DebugEvent::HwPoint { slot: 1 }))
        );
        let mut watch = sync(esr(ec::WATCHPOINT_LOWER, 0));
        watch.far = 0x9004;
        assert_eq!(v.handle_sync(&r.d, &watch), Some(VcpuExit::Debug(DebugEvent::HwPoint { slot: 0 })));
        // Disarmed: a late step exception is dropped, not a crash.
        v.set_debug(&DebugControl::default()).unwrap();
        assert_eq!(v.handle_sync(&r.d, &sync(esr(ec::SOFTWARE_STEP_LOWER, 0))), None);
    }

    #[test]
    fn ballooned_ram_gets_a_data_abort_and_far_holes_crash() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.ctx.sys.vbar_el1 = 0x8_0000;
        r.d.p2m.lock().remove(Gfn(5));
        let before = r.cpu.loaded_forgotten();
        // A load from EL1h: the same-EL abort at VBAR_EL1 + 0x200.
        let mut syn = data_abort(0x5008, 4, 3, false, false);
        syn.far = 0x5008;
        assert_eq!(v.handle_sync(&r.d, &syn), None);
        assert_eq!(v.ctx.regs.pc, 0x8_0200);
        assert_eq!((v.ctx.sys.elr_el1, v.ctx.sys.spsr_el1), (ENTRY, crate::context::SPSR_EL1H_MASKED));
        assert_eq!(v.ctx.sys.esr_el1, (u64::from(ec::DABT_CUR) << 26) | (1 << 25));
        assert_eq!(v.ctx.sys.far_el1, 0x5008);
        assert_eq!(v.ctx.regs.pstate, crate::context::SPSR_EL1H_MASKED);
        assert_eq!(r.cpu.loaded_forgotten(), before + 1, "the edited EL1 registers are reloaded");
        // From EL0: the lower-EL class and vector.
        v.ctx.regs.pstate = 0;
        v.ctx.regs.pc = 0x7000;
        assert_eq!(v.handle_sync(&r.d, &syn), None);
        assert_eq!((v.ctx.regs.pc, v.ctx.sys.elr_el1, v.ctx.sys.spsr_el1), (0x8_0400, 0x7000, 0));
        assert_eq!(v.ctx.sys.esr_el1 >> 26, u64::from(ec::DABT_LOWER));
        // Populated RAM that faults, or a hole past the domain's RAM, is
        // not ballooned memory: the domain crashes as before.
        assert_eq!(v.handle_sync(&r.d, &data_abort(0x6000, 4, 3, false, false)), Some(VcpuExit::Fault));
        assert_eq!(v.handle_sync(&r.d, &data_abort(0x3000_0000, 4, 3, false, false)), Some(VcpuExit::Fault));
    }

    #[test]
    fn mmio_reads_of_the_distributor() {
        let r = fixture(2);
        let mut v = r.vcpu(0);
        let gicd = crate::guest::GuestMap::GICD_BASE;
        // 32-bit GICD_TYPER into w5.
        assert_eq!(v.handle_sync(&r.d, &data_abort(gicd + 4, 4, 5, false, false)), None);
        assert_eq!(v.ctx.regs.x[5], (9 << 19) | 1);
        assert_eq!(v.ctx.regs.pc, ENTRY + 4);
        // GICD_CTLR: affinity routing on.
        v.handle_sync(&r.d, &data_abort(gicd, 4, 6, false, false));
        assert_eq!(v.ctx.regs.x[6], 1 << 4);
        // EnableGrp1A is the guest's to set, and reads back.
        v.ctx.regs.x[9] = 0x13;
        v.handle_sync(&r.d, &data_abort(gicd, 4, 9, false, true));
        v.handle_sync(&r.d, &data_abort(gicd, 4, 6, false, false));
        assert_eq!(v.ctx.regs.x[6], (1 << 4) | (1 << 1));
        // PIDR2 says GICv3.
        v.handle_sync(&r.d, &data_abort(gicd + 0xffe8, 4, 7, false, false));
        assert_eq!(v.ctx.regs.x[7], 0x3b);
        // A byte read (of a priority register, which takes bytes) is
        // truncated to the access size.
        r.arch.shared.vgic.write(Frame::Dist(0x420), 4, 0x4433_2211);
        v.ctx.regs.x[8] = u64::MAX;
        v.handle_sync(&r.d, &data_abort(gicd + 0x422, 1, 8, false, false));
        assert_eq!(v.ctx.regs.x[8], 0x33);
        // Unimplemented registers read as zero.
        v.ctx.regs.x[9] = u64::MAX;
        v.handle_sync(&r.d, &data_abort(gicd + 0x100, 4, 9, false, false));
        assert_eq!(v.ctx.regs.x[9], 0);
        assert_eq!(v.ctx.regs.pc, ENTRY + 28);
    }

    #[test]
    fn mmio_reads_of_a_redistributor() {
        let r = fixture(2);
        let mut v = r.vcpu(0);
        let gicr1 = crate::guest::GuestMap::GICR_BASE + crate::guest::GuestMap::GICR_STRIDE;
        // 64-bit GICR_TYPER of the last redistributor.
        v.handle_sync(&r.d, &data_abort(gicr1 + 8, 8, 1, true, false));
        assert_eq!(v.ctx.regs.x[1], (1 << 32) | (1 << 8) | (1 << 4));
        // Its high word through a 32-bit read.
        v.handle_sync(&r.d, &data_abort(gicr1 + 0xc, 4, 2, false, false));
        assert_eq!(v.ctx.regs.x[2], 1);
    }

    #[test]
    fn mmio_writes_and_xzr_reads_are_ignored() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let gicd = crate::guest::GuestMap::GICD_BASE;
        v.ctx.regs.x[3] = 0x1234;
        assert_eq!(v.handle_sync(&r.d, &data_abort(gicd, 4, 3, false, true)), None);
        assert_eq!(v.ctx.regs.x[3], 0x1234);
        assert_eq!(v.handle_sync(&r.d, &data_abort(gicd + 4, 4, 31, false, false)), None);
        assert_eq!(v.ctx.regs.pc, ENTRY + 8);
    }

    #[test]
    fn gic_accesses_of_a_width_the_register_lacks_get_a_data_abort() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.ctx.sys.vbar_el1 = 0x8_0000;
        let gicd = crate::guest::GuestMap::GICD_BASE;
        let sgi = crate::guest::GuestMap::GICR_BASE + crate::vgic::SGI_FRAME;
        let refused = |v: &mut ArmVcpu, syn: Syndrome| {
            v.ctx.regs.pc = ENTRY;
            v.ctx.regs.pstate = crate::context::SPSR_EL1H_MASKED;
            assert_eq!(v.handle_sync(&r.d, &syn), None);
            assert_eq!((v.ctx.regs.pc, v.ctx.sys.elr_el1), (0x8_0200, ENTRY), "a data abort at the access");
            assert_eq!(v.ctx.sys.esr_el1 >> 26, u64::from(ec::DABT_CUR));
        };
        // strb w1, [GICR_ISENABLER0 + 1] with w1 = 0x80: the store carries
        // one byte, but the whole register used to land in the word and
        // enable SGIs 0..15 and PPIs 16..23 besides.
        v.ctx.regs.x[1] = 0xffff_ff80;
        refused(&mut v, data_abort(sgi + 0x101, 1, 1, false, true));
        assert_eq!(r.arch.shared.vgic.read(Frame::Redist(0, crate::vgic::SGI_FRAME + 0x100)), 0);
        // A halfword store to GICR_ICFGR1, a doubleword one to
        // GICD_ISENABLER1, a byte one to GICD_IROUTER32, a byte load of
        // GICD_IIDR: none is an access these registers take.
        refused(&mut v, data_abort(sgi + 0xc04, 2, 1, false, true));
        assert_eq!(r.arch.shared.vgic.read(Frame::Redist(0, crate::vgic::SGI_FRAME + 0xc04)), 0);
        refused(&mut v, data_abort(gicd + 0x104, 8, 1, true, true));
        assert_eq!(r.arch.shared.vgic.read(Frame::Dist(0x104)), 0);
        refused(&mut v, data_abort(gicd + 0x6100, 1, 1, false, true));
        assert_eq!(r.arch.shared.vgic.read(Frame::Dist(0x6100)), 0);
        v.ctx.regs.x[2] = 7;
        refused(&mut v, data_abort(gicd + 0x8, 1, 2, false, false));
        assert_eq!(v.ctx.regs.x[2], 7, "the load's register is left alone");
        // The widths the registers do take still work: a byte priority,
        // a doubleword IROUTER, a word enable.
        v.ctx.regs.pc = ENTRY;
        v.handle_sync(&r.d, &data_abort(sgi + 0x41b, 1, 1, false, true));
        v.handle_sync(&r.d, &data_abort(gicd + 0x6108, 8, 1, true, true));
        v.handle_sync(&r.d, &data_abort(sgi + 0x100, 4, 1, false, true));
        assert_eq!(v.ctx.regs.pc, ENTRY + 12);
        assert_eq!(r.arch.shared.vgic.priority(0, 27), 0x80);
        assert_eq!(r.arch.shared.vgic.read(Frame::Dist(0x6108)), 0xffff_ff80);
        assert_eq!(r.arch.shared.vgic.read(Frame::Redist(0, crate::vgic::SGI_FRAME + 0x100)), 0xffff_ff80);
    }

    #[test]
    fn sign_extending_gic_loads_fill_the_register_with_the_top_bit() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let sgi = crate::guest::GuestMap::GICR_BASE + crate::vgic::SGI_FRAME;
        r.arch.shared.vgic.write(Frame::Redist(0, crate::vgic::SGI_FRAME + 0x41c), 4, 0x7f00_a0c0);
        let load = |v: &mut ArmVcpu, off: u64, size: usize, sixty_four: bool, sign: bool| {
            let mut syn = data_abort(sgi + off, size, 4, sixty_four, false);
            syn.esr |= (sign as u64) << 21;
            v.ctx.regs.x[4] = 0x5555_5555_5555_5555;
            assert_eq!(v.handle_sync(&r.d, &syn), None);
            v.ctx.regs.x[4]
        };
        // ldrsb x4 / ldrsb w4 of priority byte 0xc0.
        assert_eq!(load(&mut v, 0x41c, 1, true, true), 0xffff_ffff_ffff_ffc0);
        assert_eq!(load(&mut v, 0x41c, 1, false, true), 0xffff_ffc0);
        // ldrsw x4 of a word whose top bit is clear, ldrb w4: no sign.
        assert_eq!(load(&mut v, 0x41c, 4, true, true), 0x7f00_a0c0);
        assert_eq!(load(&mut v, 0x41d, 1, false, false), 0xa0);
        // ldrsw x4 of GICR_ISENABLER0 with SGI 31 enabled.
        r.arch.shared.vgic.write(Frame::Redist(0, crate::vgic::SGI_FRAME + 0x100), 4, 1 << 31);
        assert_eq!(load(&mut v, 0x100, 4, true, true), 0xffff_ffff_8000_0000);
    }

    #[test]
    fn an_instruction_in_the_last_word_of_the_address_space_is_stepped_over() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let last = u64::MAX - 3;
        let gicd = crate::guest::GuestMap::GICD_BASE;
        let mdscr_read = sync(esr(ec::SYSREG, sysreg_iss(2, 0, 0, 2, 2, 1, true)));
        let smc = sync(esr(ec::SMC64, 0));
        v.ctx.regs.x[0] = u64::from(fid::PSCI_VERSION);
        for syn in [data_abort(gicd + 4, 4, 5, false, false), mdscr_read, smc] {
            v.ctx.regs.pc = last;
            assert_eq!(v.handle_sync(&r.d, &syn), None);
            assert_eq!(v.ctx.regs.pc, 0, "the PC wraps as the CPU's does");
        }
    }

    #[test]
    fn data_aborts_outside_the_gic_crash_the_domain() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        assert_eq!(v.handle_sync(&r.d, &data_abort(0x0900_0000, 4, 0, false, false)), Some(VcpuExit::Fault));
        // The redistributor of a vCPU the domain does not have.
        let gicr1 = crate::guest::GuestMap::GICR_BASE + crate::guest::GuestMap::GICR_STRIDE;
        assert_eq!(v.handle_sync(&r.d, &data_abort(gicr1, 4, 0, false, false)), Some(VcpuExit::Fault));
        // No instruction syndrome: cannot be emulated.
        let mut no_isv = data_abort(crate::guest::GuestMap::GICD_BASE, 4, 0, false, false);
        no_isv.esr &= !(1 << 24);
        assert_eq!(v.handle_sync(&r.d, &no_isv), Some(VcpuExit::Fault));
        assert_eq!(v.ctx.regs.pc, ENTRY);
    }

    #[test]
    fn writes_to_read_only_ram_are_discarded() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let page = Page::alloc(r.d.id).unwrap();
        page.write(0, &[0xAB; 4]).unwrap();
        r.d.p2m.lock().set(Gfn(0x90), page.clone(), P2mType::RamRo);
        // str w3, [x?] at 0x90010: a permission fault (level 3).
        let mut store = data_abort(0x9_0010, 4, 3, false, true);
        store.esr = (store.esr & !0x3f) | 0x0f;
        assert_eq!(v.handle_sync(&r.d, &store), None);
        assert_eq!(v.ctx.regs.pc, ENTRY + 4, "the store is skipped");
        let mut b = [0u8; 4];
        page.read(0, &mut b).unwrap();
        assert_eq!(b, [0xAB; 4], "and not performed");
        // Without a syndrome it cannot be stepped over.
        let mut no_isv = store;
        no_isv.esr &= !(1 << 24);
        assert_eq!(v.handle_sync(&r.d, &no_isv), Some(VcpuExit::Fault));
        // A read permission fault there is not a discarded write.
        let mut load = data_abort(0x9_0010, 4, 3, false, false);
        load.esr = (load.esr & !0x3f) | 0x0f;
        assert_eq!(v.handle_sync(&r.d, &load), Some(VcpuExit::Fault));
        // Writable RAM: a permission fault there is fatal as before.
        r.d.p2m.lock().set(Gfn(0x90), page, P2mType::RamRw);
        assert_eq!(v.handle_sync(&r.d, &store), Some(VcpuExit::Fault));
        assert_eq!(v.ctx.regs.pc, ENTRY + 4);
    }

    #[test]
    fn hyp_timer_interrupt_ends_the_slice() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        r.cpu.script_irq(intid::PPI_HYP_TIMER);
        assert_eq!(v.run(&r.d, &mut Slice(Some(1000))), VcpuExit::Preempted);
        assert_eq!(r.cpu.ended_irqs(), [intid::PPI_HYP_TIMER]);
        assert_eq!(r.cpu.hyp_timer(), None, "disarmed so its line drops");
    }

    #[test]
    fn other_host_interrupts_go_to_the_board() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        r.cpu.script_irq(33);
        assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::HostInterrupt);
        assert_eq!(r.cpu.ended_irqs(), [33]);
    }

    #[test]
    fn vtimer_maintenance_and_spurious_interrupts_reenter_the_guest() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        r.cpu.script_irq(intid::PPI_VTIMER);
        r.cpu.script_irq(intid::PPI_MAINTENANCE);
        r.cpu.script_exit(ExitKind::Irq, Syndrome::default()); // nothing left to acknowledge
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        assert!(matches!(v.run(&r.d, &mut Slice(None)), VcpuExit::Hypercall { .. }));
        assert_eq!(r.cpu.ended_irqs(), [intid::PPI_VTIMER, intid::PPI_MAINTENANCE]);
        assert_eq!(r.cpu.entries().len(), 4);
        assert_eq!(r.arch.exits(), 4);
        assert_eq!(r.cpu.exits_left(), 0);
    }

    #[test]
    fn asynchronous_exceptions_and_aarch32_crash_the_domain() {
        let r = fixture(1);
        for kind in [ExitKind::Fiq, ExitKind::SError, ExitKind::Aarch32] {
            let mut v = r.vcpu(0);
            r.cpu.script_exit(kind, Syndrome::default());
            assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Fault, "{kind:?}");
        }
    }

    #[test]
    fn a_fired_vtimer_is_injected_with_its_ppi_masked() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        enable_private(&r, 0, VTIMER_PPI);
        v.ctx.sys.cntv_ctl_el0 = 1;
        v.ctx.sys.cntv_cval_el0 = 50;
        r.cpu.set_counter(100);
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        v.run(&r.d, &mut Slice(None));
        let lr = r.cpu.entries()[0].lrs[0];
        assert_eq!((lr & 0xffff_ffff) as u32, VTIMER_PPI);
        assert_ne!(lr & LR_EOI, 0, "a maintenance interrupt reports the guest's EOI");
        assert!(!r.cpu.ppi_enabled(intid::PPI_VTIMER), "the still-high line must not exit again");
        // Once the guest has completed it and the timer is off, PPI 27 is
        // unmasked again.
        v.ctx.vgic.lr[0] = 0;
        v.ctx.sys.cntv_ctl_el0 = 0;
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        v.run(&r.d, &mut Slice(None));
        assert_eq!(r.cpu.entries()[1].lrs[0], 0);
        assert!(r.cpu.ppi_enabled(intid::PPI_VTIMER));
    }

    #[test]
    fn a_pending_vtimer_is_not_injected_twice() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        enable_private(&r, 0, VTIMER_PPI);
        v.ctx.sys.cntv_ctl_el0 = 1;
        r.cpu.set_counter(100);
        v.update_vtimer();
        v.update_vtimer();
        assert_eq!(v.ctx.vgic.lr.iter().filter(|lr| **lr != 0).count(), 1);
    }

    #[test]
    fn a_fired_vtimer_the_guest_has_not_enabled_stays_out_and_quiet() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.ctx.sys.cntv_ctl_el0 = 1;
        r.cpu.set_counter(100);
        v.update_vtimer();
        assert!(!v.ctx.vgic.holds(VTIMER_PPI, NR_LRS), "PPI 27 disabled at the redistributor");
        assert!(!r.cpu.ppi_enabled(intid::PPI_VTIMER), "its high line must not storm EL2");
        assert_eq!(v.handle_sync(&r.d, &sync(esr(ec::WFX, 0))), Some(VcpuExit::Halted), "nothing the guest takes");
        enable_private(&r, 0, VTIMER_PPI);
        v.update_vtimer();
        assert!(v.ctx.vgic.holds(VTIMER_PPI, NR_LRS));
    }

    #[test]
    fn the_upcall_waits_in_the_vgic_until_the_guest_enables_ppi_31() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        v.inject_upcall(&r.d);
        v.flush_vgic();
        assert!(!v.ctx.vgic.holds(EVTCHN_PPI, NR_LRS), "Linux takes PPI 31 only once it enabled it");
        // The guest sets PPI 31's priority (a byte write) and enables it.
        let sgi_frame = crate::guest::GuestMap::GICR_BASE + crate::vgic::SGI_FRAME;
        v.ctx.regs.x[3] = 0x80;
        assert_eq!(v.handle_sync(&r.d, &data_abort(sgi_frame + 0x400 + 31, 1, 3, false, true)), None);
        v.ctx.regs.x[4] = 1 << EVTCHN_PPI;
        assert_eq!(v.handle_sync(&r.d, &data_abort(sgi_frame + 0x100, 4, 4, false, true)), None);
        v.flush_vgic();
        assert!(v.ctx.vgic.holds(EVTCHN_PPI, NR_LRS));
        assert!(v.ctx.vgic.dirty, "the list registers must be rewritten on entry");
        assert_eq!((v.ctx.vgic.lr[0] >> 48) & 0xff, 0x80, "at the guest's priority");
    }

    #[test]
    fn an_sgi_reaches_its_targets_and_wakes_them() {
        let r = fixture(3);
        let mut v0 = r.vcpu(0);
        for t in 0..3 {
            r.arch.shared.vgic.write(Frame::Redist(t, crate::vgic::SGI_FRAME + 0x100), 4, 0xffff);
        }
        let v2 = r.d.vcpu(2).unwrap();
        r.d.vcpu_block(v2);
        // ICC_SGI1R_EL1 <- x5: SGI 3 to target list {2} of cluster 0.
        v0.ctx.regs.x[5] = (3 << 24) | 0b100;
        assert_eq!(v0.handle_sync(&r.d, &sgi1r_write(5)), None);
        assert!(r.arch.shared.vgic.has_deliverable(2));
        assert!(!r.arch.shared.vgic.has_deliverable(1), "not a target");
        assert_eq!(v2.pause_flags() & lantern_common::domain::VPF_BLOCKED, 0, "the blocked target wakes");
        // IRM: every vCPU but the sender.
        v0.ctx.regs.x[5] = (5 << 24) | (1 << 40);
        v0.handle_sync(&r.d, &sgi1r_write(5));
        assert!(r.arch.shared.vgic.has_deliverable(1));
        assert!(!r.arch.shared.vgic.has_deliverable(0));
        let mut v2 = r.vcpu(2);
        v2.flush_vgic();
        assert!(v2.ctx.vgic.holds(3, NR_LRS) && v2.ctx.vgic.holds(5, NR_LRS));
    }

    /// The syndrome of `msr ICC_SGI1R_EL1, x<rt>` trapping to EL2.
    fn sgi1r_write(rt: u64) -> Syndrome {
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (rt << 5) | (11 << 1);
        Syndrome { esr: ((ec::SYSREG as u64) << 26) | (1 << 25) | iss, far: 0, hpfar: 0 }
    }

    #[test]
    fn stage2_follows_the_p2m() {
        let r = fixture(1);
        r.arch.sync_p2m(&r.d);
        let ram = r.d.p2m.lock().get(Gfn(3)).unwrap().page.host_addr();
        assert_eq!(r.arch.shared.stage2.lock().lookup(0x3123), Some((ram + 0x123, true)));
        assert_eq!(r.arch.shared.stage2.lock().mapped_pages(), 64);
        assert_eq!(r.cpu.tlb_flushes(), 1);
        // Nothing changed: no work, no flush.
        r.arch.sync_p2m(&r.d);
        assert_eq!(r.cpu.tlb_flushes(), 1);
        // Unmap.
        r.d.p2m.lock().remove(Gfn(3));
        r.arch.sync_p2m(&r.d);
        assert_eq!(r.arch.shared.stage2.lock().lookup(0x3000), None);
        assert_eq!(r.cpu.tlb_flushes(), 2);
        // Map read-only, then beyond the 4 GiB IPA space (stays unreachable).
        let rom = Page::alloc(3).unwrap();
        let rom_addr = rom.host_addr();
        r.d.p2m.lock().set(Gfn(0x80), rom, P2mType::RamRo);
        r.d.p2m.lock().set(Gfn(1 << 20), Page::alloc(3).unwrap(), P2mType::RamRw);
        r.arch.sync_p2m(&r.d);
        assert_eq!(r.arch.shared.stage2.lock().lookup(0x8_0000), Some((rom_addr, false)));
        assert_eq!(r.arch.shared.stage2.lock().mapped_pages(), 64);
        // A frame number whose address wraps 64 bits onto frame 5 leaves
        // frame 5 alone, mapped or removed.
        let before = r.arch.shared.stage2.lock().lookup(0x5000);
        assert!(before.is_some());
        let wraps = Gfn((1 << 52) + 5);
        r.d.p2m.lock().set(wraps, Page::alloc(3).unwrap(), P2mType::RamRw);
        r.arch.sync_p2m(&r.d);
        assert_eq!(r.arch.shared.stage2.lock().lookup(0x5000), before);
        r.d.p2m.lock().remove(wraps);
        r.arch.sync_p2m(&r.d);
        assert_eq!(r.arch.shared.stage2.lock().lookup(0x5000), before, "the wrapped unmap left frame 5 mapped");
    }

    #[test]
    fn run_syncs_stage2_before_entering() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        v.run(&r.d, &mut Slice(None));
        assert!(r.arch.shared.stage2.lock().lookup(0).is_some());
        assert_eq!(r.cpu.entries()[0].vttbr & 0xffff_ffff_ffff, r.arch.shared.stage2.lock().root_pa());
    }

    #[test]
    fn translate_with_the_mmu_off_is_flat() {
        let r = fixture(1);
        let v = r.vcpu(0);
        assert_eq!(v.translate(&r.d, Gva(0x1234), true), Ok(Gpa(0x1234)));
    }

    #[test]
    fn gdb_register_writes_force_a_full_reload() {
        let r = fixture(1);
        let mut v = r.vcpu(0);
        let mut regs = [0u8; crate::gdb::REGS_SIZE];
        assert_eq!(v.read_registers(&mut regs), crate::gdb::REGS_SIZE);
        regs[0] = 0x42;
        let before = r.cpu.loaded_forgotten();
        v.write_registers(&regs).unwrap();
        assert_eq!(v.ctx.regs.x[0], DTB | 0x42);
        assert_eq!(r.cpu.loaded_forgotten(), before + 1);
        assert_eq!(v.target_xml(), crate::gdb::TARGET_XML);
    }

    #[test]
    fn create_vcpu_through_the_arch_domain() {
        let r = fixture(2);
        let mut v: Box<dyn ArchVcpu> = r.arch.create_vcpu(&r.d, 1);
        assert_eq!(v.initialise(&VcpuInitContext::PowerOn { entry: 0x5000, context_id: 9 }), Ok(()));
        r.cpu.script_exit(ExitKind::Sync, xen_hvc());
        assert_eq!(v.run(&r.d, &mut Slice(None)), VcpuExit::Hypercall { nr: 0, args: [9, 0, 0, 0, 0, 0] });
        assert_eq!(r.cpu.entries()[0].pc, 0x5000);
    }
}
