//! The hardware boundary of the arm64 backend: what the vCPU logic in
//! [`crate::vcpu`] asks of the physical CPU, as the [`PhysicalCpu`] trait.
//!
//! Only the code behind this boundary touches EL2 system registers, the GIC
//! or the timer, and only it is built for bare metal alone:
//!
//! * [`el2`] — exception vectors, the world switch, EL1 system-register and
//!   virtual-GIC save/restore, EL2 configuration;
//! * [`gic`] — the physical GICv3 (distributor, redistributor, CPU interface);
//! * [`timer`] — the counter and the EL2 physical timer;
//! * [`El2`] — those three as a [`PhysicalCpu`].
//!
//! On the host, the unit tests drive the vCPU logic through the test double
//! in `fake.rs` instead, the way the x86 backend keeps its SVM hardware part
//! behind `svm::HostCpu`.

use crate::context::VcpuContext;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod el2;
#[cfg(test)]
pub mod fake;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod gic;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod timer;

/// The GIC interrupt IDs the hypervisor itself handles.
pub mod intid {
    /// The EL2 (hypervisor) physical timer PPI.
    pub const PPI_HYP_TIMER: u32 = 26;
    /// The EL1 virtual timer PPI.
    pub const PPI_VTIMER: u32 = 27;
    /// The GIC maintenance interrupt PPI.
    pub const PPI_MAINTENANCE: u32 = 25;
    /// Xen's event-channel upcall PPI on arm (`GUEST_EVTCHN_PPI`).
    pub const PPI_EVTCHN: u32 = xen_abi::arch_arm::EVTCHN_PPI;
    /// INTID meaning "nothing pending".
    pub const SPURIOUS: u32 = 1023;
}

/// Why a guest entry returned to EL2: which lower-EL vector took the exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A synchronous exception (HVC, SMC, abort, trapped instruction).
    Sync,
    /// A physical IRQ arrived while the guest ran.
    Irq,
    /// A physical FIQ arrived.
    Fiq,
    /// An SError.
    SError,
    /// An exception from AArch32 EL0/EL1 (not supported: the guest is crashed).
    Aarch32,
}

impl ExitKind {
    /// The exit kind for the number the exit vectors hand back (0..3: the
    /// AArch64 sync/IRQ/FIQ/SError vectors, anything else: AArch32).
    pub fn from_vector(n: u64) -> ExitKind {
        match n {
            0 => ExitKind::Sync,
            1 => ExitKind::Irq,
            2 => ExitKind::Fiq,
            3 => ExitKind::SError,
            _ => ExitKind::Aarch32,
        }
    }
}

/// Syndrome registers of the last exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Syndrome {
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// HPFAR_EL2.
    pub hpfar: u64,
}

/// The physical CPU at EL2, as the vCPU logic drives it: the world switch,
/// the exit syndrome, TLB maintenance, the GIC CPU interface and the timers.
///
/// Every method acts on the CPU the caller runs on. [`El2`] is the real one;
/// the host tests use a recording test double.
pub trait PhysicalCpu: Sync {
    /// Runs a whole vCPU context once: loads its EL1 and virtual-GIC state
    /// (skipping what is still live from its previous run, identified by the
    /// non-zero `key`), enters the guest with stage-2 `vttbr`, and saves
    /// everything back on exit.
    fn run_context(&self, ctx: &mut VcpuContext, key: u64, vttbr: u64, nr_lrs: usize) -> ExitKind;

    /// Forgets which context is live, so the next [`Self::run_context`]
    /// reloads every EL1 register (after a saved context was edited).
    fn forget_loaded_context(&self);

    /// The syndrome of the exception that just exited the guest.
    fn syndrome(&self) -> Syndrome;

    /// Invalidates the guests' stage-1 and stage-2 TLB entries, after the
    /// stage-2 tables changed.
    fn flush_guest_tlbs(&self);

    /// The physical counter (CNTPCT_EL0); guests' virtual counter equals it
    /// (CNTVOFF_EL2 is 0).
    fn counter(&self) -> u64;

    /// Arms the EL2 physical timer (PPI 26) for an absolute counter value.
    fn arm_hyp_timer_at(&self, deadline: u64);

    /// Stops the EL2 physical timer.
    fn disarm_hyp_timer(&self);

    /// Acknowledges the highest-priority pending Group 1 interrupt; returns
    /// its INTID ([`intid::SPURIOUS`] when none is pending).
    fn ack_interrupt(&self) -> u32;

    /// Ends (priority drop and deactivation) acknowledged interrupt `intid`.
    fn end_interrupt(&self, intid: u32);

    /// Enables or disables private interrupt `intid` (< 32) at this CPU's
    /// redistributor.
    fn set_ppi_enabled(&self, intid: u32, on: bool);
}

/// This CPU's EL2 hardware: [`el2`], [`gic`] and [`timer`] as a
/// [`PhysicalCpu`].
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub struct El2;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
impl PhysicalCpu for El2 {
    fn run_context(&self, ctx: &mut VcpuContext, key: u64, vttbr: u64, nr_lrs: usize) -> ExitKind {
        el2::run_context(ctx, key, vttbr, nr_lrs)
    }

    fn forget_loaded_context(&self) {
        el2::invalidate_loaded();
    }

    fn syndrome(&self) -> Syndrome {
        el2::syndrome()
    }

    fn flush_guest_tlbs(&self) {
        el2::flush_guest_tlbs();
    }

    fn counter(&self) -> u64 {
        timer::now()
    }

    fn arm_hyp_timer_at(&self, deadline: u64) {
        timer::arm_hyp_timer_at(deadline);
    }

    fn disarm_hyp_timer(&self) {
        timer::disarm_hyp_timer();
    }

    fn ack_interrupt(&self) -> u32 {
        gic::ack()
    }

    fn end_interrupt(&self, intid: u32) {
        gic::eoi(intid);
    }

    fn set_ppi_enabled(&self, intid: u32, on: bool) {
        gic::set_ppi_enabled(intid, on);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_kind_from_vector_number() {
        assert_eq!(ExitKind::from_vector(0), ExitKind::Sync);
        assert_eq!(ExitKind::from_vector(1), ExitKind::Irq);
        assert_eq!(ExitKind::from_vector(2), ExitKind::Fiq);
        assert_eq!(ExitKind::from_vector(3), ExitKind::SError);
        assert_eq!(ExitKind::from_vector(4), ExitKind::Aarch32);
        assert_eq!(ExitKind::from_vector(99), ExitKind::Aarch32);
    }
}
