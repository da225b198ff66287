//! The hardware boundary of the riscv64 backend: what the vCPU logic in
//! [`crate::vcpu`] asks of the physical hart, as the [`Hart`] trait.
//!
//! Only the code behind it touches hypervisor CSRs, fences and the timer,
//! and only it is built for bare metal ([`hs`]: the trap vector, the world
//! switch, HS configuration, the host timer through SBI); the host tests
//! drive the vCPU logic through the recording double in `fake.rs`.

use crate::context::VcpuContext;
use crate::trap::Trap;

#[cfg(test)]
pub mod fake;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
pub mod hs;

/// The physical hart in HS-mode, as the vCPU logic drives it.
pub trait Hart: Sync {
    /// Runs a vCPU context once: loads its registers, FP state, VS CSRs,
    /// `hvip` and `hedeleg`, enters it in VS/VU with G-stage `hgatp`, and
    /// saves everything back when it traps; returns the trap. `key`
    /// identifies the context (a different one than last time flushes the
    /// VS-stage TLB: vCPUs of a domain share a VMID but not page tables).
    fn run(&self, ctx: &mut VcpuContext, hgatp: u64, key: u64) -> Trap;

    /// Invalidates G-stage translations (`hfence.gvma`), after the tables
    /// changed.
    fn fence_gvma(&self);

    /// Makes instructions the hypervisor wrote into guest memory visible to
    /// the guest's instruction fetch (`fence.i`).
    fn sync_instructions(&self);

    /// The `time` counter (guests read the same: `htimedelta` is 0).
    fn now(&self) -> u64;

    /// Arms the host's supervisor timer for an absolute `time` value
    /// (`u64::MAX`: off); its interrupt ends a guest's run.
    fn set_timer(&self, deadline: u64);
}
