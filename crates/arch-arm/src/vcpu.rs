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

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use alloc::boxed::Box;

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::{ArchDomain, ArchVcpu, GdbRegisters, GuestMode, Preemption, VcpuExit, VcpuInitContext};
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::lifecycle;
use lantern_common::memory::P2mType;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;
use xen_abi::nr::shutdown;

use crate::context::VcpuContext;
use crate::el2::{self, ExitKind};
use crate::esr::{self, ec, Esr};
use crate::guest::{self, EVTCHN_PPI, VIRQ_PRIORITY, VTIMER_PPI};
use crate::psci::{self, affinity, ret, PsciCall};
use crate::stage2::{S2Perm, Stage2};
use crate::walk::{self, Stage1Regs};
use crate::{gic, timer};

/// The Xen hypercall immediate: `hvc #0xEA1`.
pub const XEN_HVC_IMM: u16 = 0xea1;
/// List register bit asking for a maintenance interrupt when the guest
/// deactivates the interrupt (non-hardware interrupts only).
const LR_EOI: u64 = 1 << 41;
const NO_DEADLINE: u64 = u64::MAX;

/// The per-domain EL2 object ([`ArchDomain`]): owns what the domain's vCPUs
/// share.
pub struct ArmDomain {
    shared: Arc<ArmShared>,
    nr_lrs: usize,
}

impl ArmDomain {
    /// The object for a domain with `vcpus` vCPUs tagged `vmid`; `nr_lrs`
    /// list registers come from the physical GIC.
    pub fn new(vmid: u16, vcpus: u32, nr_lrs: usize) -> Self {
        let shared = Arc::new(ArmShared {
            vmid,
            vcpus,
            stage2: spin::Mutex::new(Stage2::new()),
            synced_generation: AtomicU64::new(u64::MAX),
            power_on: spin::Mutex::new((0..vcpus).map(|_| None).collect()),
            timer_deadline: (0..vcpus).map(|_| AtomicU64::new(NO_DEADLINE)).collect(),
            exits: AtomicU64::new(0),
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
}

/// State shared by all vCPUs of one domain: the stage-2 tables, the VMID,
/// pending PSCI `CPU_ON` requests and blocked vCPUs' virtual-timer deadlines.
struct ArmShared {
    /// The domain's VMID (tags its TLB entries).
    vmid: u16,
    vcpus: u32,
    stage2: spin::Mutex<Stage2>,
    synced_generation: AtomicU64,
    power_on: spin::Mutex<Vec<Option<(u64, u64)>>>,
    timer_deadline: Vec<AtomicU64>,
    exits: AtomicU64,
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
            let ipa = gfn.0 << lantern_common::memory::PAGE_SHIFT;
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
        el2::flush_guest_tlbs();
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
        }
    }

    /// The saved context (for the gdb stub and diagnostics).
    pub fn context(&self) -> &VcpuContext {
        &self.ctx
    }

    fn reset(&mut self, entry: u64, context_id: u64) {
        self.ctx.reset(entry, context_id);
        el2::invalidate_loaded();
    }

    fn vtimer_firing(&self) -> bool {
        let ctl = self.ctx.sys.cntv_ctl_el0;
        // ENABLE set, IMASK clear, and the compare value reached (CNTVOFF is 0).
        ctl & 1 != 0 && ctl & 2 == 0 && timer::now() >= self.ctx.sys.cntv_cval_el0
    }

    /// Injects the virtual timer when it has fired, and keeps the physical
    /// PPI 27 disabled while a virtual one is in flight, so the still-high
    /// timer line does not bounce the vCPU straight back to EL2.
    fn update_vtimer(&mut self) {
        if !self.ctx.vgic.holds(VTIMER_PPI, self.nr_lrs)
            && self.vtimer_firing()
            && self.ctx.vgic.inject(VTIMER_PPI, VIRQ_PRIORITY, self.nr_lrs)
        {
            for lr in self.ctx.vgic.lr.iter_mut().take(self.nr_lrs) {
                if *lr & 0xffff_ffff == VTIMER_PPI as u64 {
                    *lr |= LR_EOI;
                }
            }
        }
        gic::set_ppi_enabled(gic::PPI_VTIMER, !self.ctx.vgic.holds(VTIMER_PPI, self.nr_lrs));
    }

    /// Arms the EL2 timer for the end of the board's time slice.
    fn arm_slice(preempt: &dyn Preemption) {
        if let Some(deadline) = preempt.slice_deadline() {
            timer::arm_hyp_timer_at(deadline);
        }
    }

    fn crash(&self, what: &str, syn: &el2::Syndrome) -> VcpuExit {
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
        let intid = gic::ack();
        if intid == gic::SPURIOUS {
            return None;
        }
        if intid == gic::PPI_HYP_TIMER {
            timer::disarm_hyp_timer();
        }
        gic::eoi(intid);
        match intid {
            gic::PPI_HYP_TIMER => Some(VcpuExit::Preempted),
            // Virtual timer or a completed virtual interrupt: re-evaluated on
            // the way back in.
            gic::PPI_VTIMER | gic::PPI_MAINTENANCE => None,
            _ => Some(VcpuExit::HostInterrupt),
        }
    }

    fn handle_sync(&mut self, d: &Domain) -> Option<VcpuExit> {
        let syn = el2::syndrome();
        let e = Esr(syn.esr);
        match e.ec() {
            ec::HVC64 => match e.imm16() {
                XEN_HVC_IMM => {
                    let x = &self.ctx.regs.x;
                    Some(VcpuExit::Hypercall { nr: x[16], args: [x[0], x[1], x[2], x[3], x[4], 0] })
                }
                0 => self.psci(d),
                _ => {
                    self.ctx.regs.x[0] = ret::NOT_SUPPORTED as u64;
                    None
                }
            },
            ec::SMC64 => {
                // A trapped SMC leaves ELR at the instruction itself.
                self.ctx.regs.pc += 4;
                self.psci(d)
            }
            ec::WFX => {
                self.ctx.regs.pc += 4;
                if e.is_wfe() {
                    return Some(VcpuExit::Preempted);
                }
                if self.ctx.vgic.any_pending(self.nr_lrs) || self.vtimer_firing() {
                    return None;
                }
                let ctl = self.ctx.sys.cntv_ctl_el0;
                let deadline = if ctl & 1 != 0 && ctl & 2 == 0 { self.ctx.sys.cntv_cval_el0 } else { NO_DEADLINE };
                self.dom.timer_deadline[self.id as usize].store(deadline, Ordering::Release);
                Some(VcpuExit::Halted)
            }
            ec::DABT_LOWER => self.mmio(&syn),
            ec::SYSREG => {
                // ICC_SGI1R_EL1 writes (IPIs) trap with IMO set; SGIs between
                // vCPUs are not offered, so they are ignored rather than fatal.
                let iss = e.iss();
                let (op0, op1, crn, crm, op2) =
                    ((iss >> 20) & 3, (iss >> 14) & 7, (iss >> 10) & 0xf, (iss >> 1) & 0xf, (iss >> 17) & 7);
                if (op0, op1, crn, crm, op2) == (3, 0, 12, 11, 5) {
                    self.ctx.regs.pc += 4;
                    return None;
                }
                Some(self.crash("system register access", &syn))
            }
            _ => Some(self.crash("exception", &syn)),
        }
    }

    /// Emulates an access to the virtual GIC frames; anything else is fatal.
    fn mmio(&mut self, syn: &el2::Syndrome) -> Option<VcpuExit> {
        let e = Esr(syn.esr);
        let ipa = esr::fault_ipa(syn.hpfar, syn.far);
        let (Some(dev), Some(access)) = (guest::classify(ipa, self.dom.vcpus), e.data_abort()) else {
            return Some(self.crash("stage-2 data abort", syn));
        };
        if !access.write && access.reg != 31 {
            let aligned = match dev {
                guest::Mmio::Gicd(o) => guest::Mmio::Gicd(o & !3),
                guest::Mmio::Gicr(n, o) => guest::Mmio::Gicr(n, o & !3),
            };
            let mut v = guest::vgic_read(aligned, self.dom.vcpus);
            if access.size < 8 {
                v &= (1u64 << (access.size * 8)) - 1;
            }
            if !access.sixty_four {
                v &= 0xffff_ffff;
            }
            self.ctx.regs.x[access.reg as usize] = v;
        }
        self.ctx.regs.pc += 4;
        None
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
            PsciCall::Unknown(_) => ret::NOT_SUPPORTED,
        };
        self.ctx.regs.x[0] = r as u64;
        None
    }

    fn cpu_on(&mut self, d: &Domain, target: u64, entry: u64, context_id: u64) -> i64 {
        let Some(v) = psci::mpidr_to_vcpu(target).and_then(|t| d.vcpu(t).ok()) else {
            return ret::INVALID_PARAMETERS;
        };
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
                self.ctx.vgic.inject(EVTCHN_PPI, VIRQ_PRIORITY, self.nr_lrs);
            }
        }
        self.dom.timer_deadline[self.id as usize].store(NO_DEADLINE, Ordering::Release);
        self.dom.sync_stage2(d);
        let vttbr = self.dom.vttbr();
        loop {
            self.update_vtimer();
            Self::arm_slice(preempt);
            let kind = el2::run_context(&mut self.ctx, self.key, vttbr, self.nr_lrs);
            self.dom.exits.fetch_add(1, Ordering::Relaxed);
            let exit = match kind {
                ExitKind::Irq => self.handle_irq(),
                ExitKind::Sync => self.handle_sync(d),
                ExitKind::Fiq | ExitKind::SError | ExitKind::Aarch32 => {
                    let syn = el2::syndrome();
                    Some(self.crash("asynchronous exception or AArch32 state", &syn))
                }
            };
            if let Some(exit) = exit {
                return exit;
            }
        }
    }

    fn complete_hypercall(&mut self, ret: i64) {
        // ELR_EL2 already points past the HVC.
        self.ctx.regs.x[0] = ret as u64;
    }

    fn inject_upcall(&mut self, _domain: &Domain) {
        // Arm has no upcall mask: the PPI is masked by the guest's own
        // PSTATE.I / ICV priority state, so inject unconditionally.
        let _ = self.ctx.vgic.inject(EVTCHN_PPI, VIRQ_PRIORITY, self.nr_lrs);
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
}

impl GdbRegisters for ArmVcpu {
    fn target_xml(&self) -> &'static str {
        crate::gdb::TARGET_XML
    }

    fn read_registers(&self, out: &mut [u8]) -> usize {
        crate::gdb::read_registers(&self.ctx, out)
    }

    fn write_registers(&mut self, data: &[u8]) -> XenResult<()> {
        crate::gdb::write_registers(&mut self.ctx, data)?;
        el2::invalidate_loaded();
        Ok(())
    }
}
