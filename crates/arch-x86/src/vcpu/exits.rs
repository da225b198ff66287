//! The #VMEXIT handlers, one file per kind of exit; [`SvmVcpu::run`]
//! (`super`) dispatches on the exit code. Each handler either completes the
//! exit in place (and moves RIP past the instruction, or injects the fault
//! the guest would have seen) or returns the [`VcpuExit`] the core must act
//! on.
//!
//! [`SvmVcpu::run`]: lantern_common::arch::ArchVcpu::run
//! [`VcpuExit`]: lantern_common::arch::VcpuExit

pub(super) mod apic;
mod cpuid;
mod cr;
pub(super) mod debug;
mod hypercall;
pub(super) mod io;
mod msr;
pub(super) mod npf;
