//! The local APIC as a PVH domU sees it on Xen: the xAPIC page at
//! 0xFEE00000 (a nested page fault; the access is decoded from the guest's
//! instruction, as there are no decode assists under TCG), the x2APIC MSRs
//! and `IA32_APIC_BASE`, and what an ICR write sends: fixed and NMI IPIs to
//! the addressed vCPUs (waking those that are blocked), INIT (the target
//! waits for a startup IPI) and STARTUP (the target starts in real mode at
//! vector × 4 KiB, the way Linux starts its application processors). The
//! APIC's registers, priorities and timer are [`crate::lapic`]'s.

use alloc::vec::Vec;

use lantern_common::addr::Gva;
use lantern_common::arch::VcpuExit;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, VirtMem};
use lantern_common::lifecycle;

use crate::decode::{decode_mmio, gpr, gpr_mut, MmioOp, StoreSrc, MAX_INSN_LEN};
use crate::lapic::{Delivery, Ipi, Lapic, Received};
use crate::vcpu::{SvmShared, SvmVcpu};

/// The xAPIC page's guest-physical base (`IA32_APIC_BASE`'s reset value;
/// relocating it is not supported, as on Xen).
pub const APIC_MMIO_BASE: u64 = 0xFEE0_0000;
/// The x2APIC MSR range.
pub const X2APIC_MSRS: core::ops::RangeInclusive<u32> = 0x800..=0x8FF;

/// Where an application processor is in its INIT/STARTUP sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::vcpu) enum ApStart {
    /// Running, or never sent an INIT (a vCPU Xen's way started with
    /// `VCPUOP_initialise`).
    Idle,
    /// INIT received: the next STARTUP IPI starts it.
    WaitForSipi,
    /// STARTUP received: start in real mode at `vector << 12` on next run.
    Start(u8),
}

/// One vCPU's APIC and start-up state, kept where other vCPUs' IPIs reach it.
pub(in crate::vcpu) struct VcpuApic {
    pub(in crate::vcpu) lapic: Lapic,
    pub(in crate::vcpu) start: ApStart,
    /// An NMI IPI waits for delivery.
    pub(in crate::vcpu) nmi: bool,
    /// The APIC timer's deadline in host-counter ticks, as the vCPU last
    /// left it (for the scheduler, which has no domain clock at hand).
    pub(in crate::vcpu) deadline_ticks: Option<u64>,
}

impl SvmShared {
    /// Adds APICs up to vCPU `id` (vCPU 0 is the bootstrap processor).
    pub(in crate::vcpu) fn add_apic(&self, id: u32) {
        let mut apics = self.apics.lock();
        while apics.len() <= id as usize {
            let n = apics.len() as u32;
            apics.push(VcpuApic {
                lapic: Lapic::new(crate::acpi::apic_id(n), n == 0),
                start: ApStart::Idle,
                nmi: false,
                deadline_ticks: None,
            });
        }
    }
}

impl SvmVcpu {
    /// Runs `f` on this vCPU's APIC.
    pub(in crate::vcpu) fn with_apic<R>(&self, f: impl FnOnce(&mut VcpuApic) -> R) -> R {
        f(&mut self.dom.apics.lock()[self.vcpu_id as usize])
    }

    /// The domain's clock now, in ns (the APIC timer's time base).
    pub(in crate::vcpu) fn now_ns(d: &Domain) -> u64 {
        d.clock().now_ns()
    }

    /// A nested page fault on the xAPIC page: performs the decoded access
    /// against the APIC and moves past the instruction. An instruction the
    /// decoder does not know crashes the domain with its bytes logged.
    pub(in crate::vcpu) fn apic_mmio(&mut self, d: &Domain, gpa: u64) -> Option<VcpuExit> {
        let mut bytes = [0u8; MAX_INSN_LEN];
        let rip = self.vmcb.save.cs.base.wrapping_add(self.vmcb.save.rip);
        // Only the bytes that could be read: zeros past them would make
        // another instruction.
        let n = VirtMem::new(d, self).read_prefix(Gva(rip), &mut bytes);
        let Some(insn) = decode_mmio(&bytes[..n], self.code_size()) else {
            log::error!("d{}v{}: local APIC access at {gpa:#x} by {bytes:02x?}", d.id, self.vcpu_id);
            return Some(self.crash(d, "local APIC access by an instruction the hypervisor cannot decode"));
        };
        let offset = (gpa - APIC_MMIO_BASE) as u32;
        let now = Self::now_ns(d);
        let mut ipi = None;
        let width = insn.width;
        match insn.op {
            MmioOp::Load { reg } => {
                let v = self.with_apic(|a| a.lapic.mmio_read_sized(offset, width, now));
                self.set_gpr(reg, v, width);
            }
            MmioOp::Store { src } => {
                let v = match src {
                    StoreSrc::Reg(r) => gpr(&self.vmcb.save, &self.regs, r),
                    // An 8-byte store sign-extends its 32-bit immediate.
                    StoreSrc::Imm(i) => i as i32 as i64 as u64,
                };
                ipi = self.with_apic(|a| a.lapic.mmio_write_sized(offset, width, v, now));
            }
            MmioOp::Xchg { reg } => {
                let new = gpr(&self.vmcb.save, &self.regs, reg);
                let old = self.with_apic(|a| a.lapic.mmio_read_sized(offset, width, now));
                ipi = self.with_apic(|a| a.lapic.mmio_write_sized(offset, width, new, now));
                self.set_gpr(reg, old, width);
            }
        }
        self.advance_rip(insn.len as u64);
        if let Some(ipi) = ipi {
            self.send_ipi(d, &ipi);
        }
        None
    }

    /// RDMSR/WRMSR of `IA32_APIC_BASE` or an x2APIC register; `None` means
    /// "raise #GP", as the architecture (and Xen) does for a bad access.
    pub(in crate::vcpu) fn apic_msr(&mut self, d: &Domain, index: u32, write: bool, value: u64) -> Option<u64> {
        let now = Self::now_ns(d);
        if !write {
            return self.with_apic(|a| a.lapic.msr_read(index, now).ok());
        }
        let ipi = self.with_apic(|a| a.lapic.msr_write(index, value, now)).ok()?;
        if let Some(ipi) = ipi {
            self.send_ipi(d, &ipi);
        }
        Some(0)
    }

    /// Delivers `ipi` from this vCPU to every vCPU it addresses (a
    /// lowest-priority one to the addressed APIC with the lowest PPR), and
    /// acts on what each APIC made of it: a vector raised wakes a blocked
    /// target; NMI waits for the target's next entry; INIT takes the target
    /// down to wait for a STARTUP; STARTUP after INIT brings it up, to start
    /// in real mode on its next run. INIT to oneself is ignored, as Xen does.
    /// Waking or starting another vCPU asks for the sender's slice to end.
    fn send_ipi(&mut self, d: &Domain, ipi: &Ipi) {
        let me = self.vcpu_id;
        let mut targets: Vec<u32> = {
            let apics = self.dom.apics.lock();
            let sender = &apics[me as usize].lapic;
            let (sender_id, x2apic) = (sender.apic_id(), sender.in_x2apic_mode());
            (0..apics.len() as u32)
                .filter(|&t| apics[t as usize].lapic.is_addressed_by(ipi, sender_id, x2apic))
                .collect()
        };
        if ipi.delivery == Delivery::LowestPriority {
            let apics = self.dom.apics.lock();
            let enabled = targets.iter().copied().filter(|&t| apics[t as usize].lapic.enabled());
            targets = enabled.min_by_key(|&t| apics[t as usize].lapic.ppr()).into_iter().collect();
        }
        for t in targets {
            let Ok(v) = d.vcpu(t) else { continue };
            let received = self.dom.apics.lock()[t as usize].lapic.receive(ipi);
            match received {
                Received::Nothing | Received::Smi => {}
                Received::Interrupt | Received::Nmi => {
                    if received == Received::Nmi {
                        self.dom.apics.lock()[t as usize].nmi = true;
                    }
                    if t != me {
                        d.vcpu_unblock(v);
                        self.yield_slice = true;
                    }
                }
                Received::Init if t != me => {
                    if v.is_up() {
                        lifecycle::vcpu_down(d, v);
                    }
                    let mut apics = self.dom.apics.lock();
                    apics[t as usize].lapic.reset_on_init();
                    apics[t as usize].start = ApStart::WaitForSipi;
                }
                Received::Init => {}
                Received::Startup { vector } => {
                    {
                        let mut apics = self.dom.apics.lock();
                        // A second STARTUP, or one without INIT first: ignored.
                        if apics[t as usize].start != ApStart::WaitForSipi || v.is_up() {
                            continue;
                        }
                        apics[t as usize].start = ApStart::Start(vector);
                    }
                    v.set_initialised();
                    if lifecycle::vcpu_up(d, v).is_err() {
                        self.dom.apics.lock()[t as usize].start = ApStart::WaitForSipi;
                    } else {
                        self.yield_slice = true;
                    }
                }
            }
        }
    }

    /// Takes a pending STARTUP: the vCPU restarts in real mode at the
    /// startup vector's page.
    pub(in crate::vcpu) fn take_startup(&mut self) {
        let start = self.with_apic(|a| core::mem::replace(&mut a.start, ApStart::Idle));
        match start {
            ApStart::Start(vector) => self.reset(crate::svm::StartMode::Real { cs_selector: (vector as u16) << 8 }, 0),
            other => self.with_apic(|a| a.start = other),
        }
    }

    /// Writes `value` to general register `n` as a `width`-byte load does:
    /// 4-byte loads zero-extend into the whole register (as in 64-bit
    /// mode; in 32-bit code the upper half is not visible), narrower ones
    /// keep the upper bytes.
    fn set_gpr(&mut self, n: u8, value: u64, width: u8) {
        let old = gpr(&self.vmcb.save, &self.regs, n);
        let v = match width {
            1 => (old & !0xFF) | (value & 0xFF),
            2 => (old & !0xFFFF) | (value & 0xFFFF),
            4 => value & 0xFFFF_FFFF,
            _ => value,
        };
        *gpr_mut(&mut self.vmcb.save, &mut self.regs, n) = v;
    }

    /// Raises a pending NMI IPI if no other event is being injected.
    pub(in crate::vcpu) fn inject_pending_nmi(&mut self) {
        if self.vmcb.control.eventinj & crate::vmcb::event::VALID != 0 {
            return;
        }
        if self.with_apic(|a| core::mem::take(&mut a.nmi)) {
            self.vmcb.control.eventinj = crate::vmcb::event::nmi();
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::sync::Arc;

    use lantern_common::addr::Gpa;
    use lantern_common::arch::{ArchVcpu, GuestMode, VcpuInitContext};
    use lantern_common::guest_memory::PhysMem;

    use super::*;
    use crate::vcpu::testing::{domain, vcpu};
    use crate::vcpu::SvmDomain;
    use crate::vmcb::npf_info::{FINAL_GPA, WRITE};

    /// Runs the instruction `insn` at 0x3000 as if it faulted on `gpa`.
    fn mmio(v: &mut SvmVcpu, d: &Domain, insn: &[u8], gpa: u64, write: bool) -> Option<VcpuExit> {
        PhysMem::new(d).write_bytes(Gpa(0x3000), insn).unwrap();
        v.vmcb.save.rip = 0x3000;
        v.vmcb.control.exitinfo1 = FINAL_GPA | if write { WRITE } else { 0 };
        v.vmcb.control.exitinfo2 = gpa;
        v.handle_npf(d)
    }

    #[test]
    fn xapic_page_reads_and_writes_reach_the_apic() {
        let d = domain(1);
        let mut v = vcpu(0);
        // mov eax, [0xFEE00030] (32-bit code): the version register.
        assert_eq!(mmio(&mut v, &d, &[0xA1, 0x30, 0x00, 0xE0, 0xFE], 0xFEE0_0030, false), None);
        assert_eq!((v.vmcb.save.rax, v.vmcb.save.rip), (0x0005_0014, 0x3005));
        // mov dword [0xFEE00080], 0x20: TPR; read back with mov edx, [..].
        let store = [0xC7, 0x05, 0x80, 0x00, 0xE0, 0xFE, 0x20, 0x00, 0x00, 0x00];
        assert_eq!(mmio(&mut v, &d, &store, 0xFEE0_0080, true), None);
        assert_eq!(v.vmcb.save.rip, 0x300A);
        assert_eq!(mmio(&mut v, &d, &[0x8B, 0x15, 0x80, 0x00, 0xE0, 0xFE], 0xFEE0_0080, false), None);
        assert_eq!(v.regs.rdx, 0x20);
        assert_eq!(v.with_apic(|a| a.lapic.tpr()), 0x20);
        // Nothing was mapped: every access keeps trapping.
        assert_eq!(v.dom.npt.lock().lookup(0xFEE0_0000), None);
        // An instruction the decoder does not know crashes the domain.
        assert_eq!(
            mmio(&mut v, &d, &[0x0F, 0xB6, 0x05, 0x80, 0x00, 0xE0, 0xFE], 0xFEE0_0080, false),
            Some(VcpuExit::Fault)
        );
    }

    /// The decoder is given only the bytes that could be read: an
    /// instruction whose tail is not readable (here past the end of RAM;
    /// live, another vCPU unmapping it after the fault) is not completed
    /// with zeros into another instruction.
    #[test]
    fn an_instruction_cut_short_is_not_completed_with_zeros() {
        let d = domain(1);
        let mut v = vcpu(0);
        // mov dword [0xFEE00080], 0x20 (TPR) ending 2 bytes past the end of
        // RAM: its immediate's high bytes would read as zeros.
        let end = lantern_testkit::RAM_PAGES * 4096;
        let insn = [0xC7, 0x05, 0x80, 0x00, 0xE0, 0xFE, 0x20, 0x00];
        PhysMem::new(&d).write_bytes(Gpa(end - 8), &insn).unwrap();
        v.vmcb.save.rip = end - 8;
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE;
        v.vmcb.control.exitinfo2 = 0xFEE0_0080;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
        assert_eq!((v.with_apic(|a| a.lapic.tpr()), v.vmcb.save.rip), (0, end - 8));
        // mov eax, [0xFEE00030] cut after its ModRM byte.
        PhysMem::new(&d).write_bytes(Gpa(end - 2), &[0x8B, 0x05]).unwrap();
        v.vmcb.save.rip = end - 2;
        v.vmcb.control.exitinfo1 = FINAL_GPA;
        v.vmcb.control.exitinfo2 = 0xFEE0_0030;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
    }

    /// Two vCPUs of one domain, sharing their APICs.
    fn pair() -> (Arc<Domain>, SvmVcpu, SvmVcpu) {
        let d = domain(2);
        let arch = SvmDomain::new();
        let mut v0 = SvmVcpu::new(arch.shared.clone(), 3, 0);
        v0.initialise(&VcpuInitContext::PowerOn { entry: 0x1000, context_id: 0 }).unwrap();
        let v1 = SvmVcpu::new(arch.shared.clone(), 3, 1);
        (d, v0, v1)
    }

    /// WRMSR `value` to `index` on `v`.
    fn wrmsr(v: &mut SvmVcpu, d: &Domain, index: u32, value: u64) -> bool {
        v.regs.rcx = index as u64;
        v.vmcb.save.rax = value & 0xFFFF_FFFF;
        v.regs.rdx = value >> 32;
        v.vmcb.control.exitinfo1 = 1;
        v.vmcb.control.eventinj = 0;
        v.msr_exit(d);
        v.vmcb.control.eventinj == 0
    }

    #[test]
    fn init_and_startup_ipis_start_an_ap_in_real_mode() {
        let (d, mut v0, mut v1) = pair();
        assert!(wrmsr(&mut v0, &d, 0x1B, 0xFEE0_0000 | (1 << 11) | (1 << 10) | (1 << 8)), "x2APIC on");
        assert!(!d.vcpu(1).unwrap().is_up());
        // x2APIC ICR: INIT (delivery 5, level assert) to APIC id 1, then
        // STARTUP (delivery 6) with vector 0x9A, twice as Linux sends it.
        assert!(wrmsr(&mut v0, &d, 0x830, (1u64 << 32) | (1 << 14) | (5 << 8)));
        assert!(!d.vcpu(1).unwrap().is_up(), "INIT alone starts nothing");
        assert!(wrmsr(&mut v0, &d, 0x830, (1u64 << 32) | (6 << 8) | 0x9A));
        assert!(d.vcpu(1).unwrap().is_up());
        assert!(wrmsr(&mut v0, &d, 0x830, (1u64 << 32) | (6 << 8) | 0x77));
        v1.take_startup();
        let s = &v1.vmcb.save;
        assert_eq!((v1.mode(), s.cs.selector, s.cs.base, s.rip), (GuestMode::Real, 0x9A00, 0x9A000, 0));
        // A STARTUP with no INIT before it does nothing.
        assert!(wrmsr(&mut v0, &d, 0x830, (1u64 << 32) | (6 << 8) | 0x10));
        v1.take_startup();
        assert_eq!(v1.vmcb.save.cs.selector, 0x9A00);
    }

    #[test]
    fn a_fixed_ipi_raises_the_vector_on_the_target_only() {
        let (d, mut v0, v1) = pair();
        for v in [&v0, &v1] {
            // Software-enable each APIC (SVR bit 8) through its MMIO register.
            v.with_apic(|a| a.lapic.mmio_write(0xF0, 0x1FF, 0));
        }
        // xAPIC ICR: destination APIC 1 in ICR high, fixed vector 0x40 in low.
        v0.with_apic(|a| a.lapic.mmio_write(0x310, 1 << 24, 0));
        let ipi = v0.with_apic(|a| a.lapic.mmio_write(0x300, 0x40, 0)).unwrap();
        v0.send_ipi(&d, &ipi);
        assert_eq!(v1.with_apic(|a| a.lapic.pending()), Some(0x40));
        assert_eq!(v0.with_apic(|a| a.lapic.pending()), None);
        assert!(core::mem::take(&mut v0.yield_slice), "the sender gives the target the CPU");
        // NMI (delivery 4) to self via shorthand.
        let ipi = v0.with_apic(|a| a.lapic.mmio_write(0x300, (1 << 18) | (4 << 8), 0)).unwrap();
        v0.send_ipi(&d, &ipi);
        assert!(!v0.yield_slice, "an IPI to oneself keeps the slice");
        v0.vmcb.control.eventinj = 0;
        v0.inject_pending_nmi();
        assert_eq!(v0.vmcb.control.eventinj, crate::vmcb::event::nmi());
    }

    #[test]
    fn cr8_and_the_apic_tpr_are_one_register() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.with_apic(|a| a.lapic.set_tpr(0x50));
        v.update_interrupts(&d);
        assert_eq!(v.vmcb.control.int_ctl & crate::vmcb::int_ctl::V_TPR, 5);
        // The guest wrote CR8 = 2 without an exit.
        v.vmcb.control.int_ctl = (v.vmcb.control.int_ctl & !crate::vmcb::int_ctl::V_TPR) | 2;
        v.after_exit();
        assert_eq!(v.with_apic(|a| a.lapic.tpr()), 0x20);
    }

    #[test]
    fn a_taken_virtual_interrupt_moves_to_the_isr() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.with_apic(|a| {
            a.lapic.mmio_write(0xF0, 0x1FF, 0);
            a.lapic.accept(0x50);
        });
        v.update_interrupts(&d);
        assert_eq!(v.virq, Some(crate::vcpu::VirqSource::Apic(0x50)));
        // Not taken (V_IRQ still set): still pending, not in service.
        v.after_exit();
        assert_eq!(v.with_apic(|a| a.lapic.pending()), Some(0x50));
        // Taken: the CPU cleared V_IRQ.
        v.vmcb.control.int_ctl &= !crate::vmcb::int_ctl::V_IRQ;
        v.after_exit();
        assert_eq!(v.with_apic(|a| a.lapic.pending()), None);
        assert_eq!(v.with_apic(|a| a.lapic.mmio_read(0x100 + 0x20, 0)), 1 << 16, "ISR holds 0x50");
    }
}
