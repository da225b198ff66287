//! Lantern's arm64 backend: the Xen arm64 guest ABI layout, the EL2 world
//! switch, stage-2 translation, GICv3 virtual interrupts and PSCI.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod boot;
pub mod context;
pub mod esr;
pub mod fdt_gen;
pub mod gdb;
pub mod guest;
pub mod layout;
pub mod psci;
pub mod stage2;
pub mod walk;

// EL2-only code (system registers, the world switch, the GIC, the timer) is
// built for the bare-metal target only; the rest is unit-tested on the host.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod el2;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod gic;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod timer;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod vcpu;
