//! Lantern's arm64 backend: the Xen arm64 guest ABI layout, the EL2 world
//! switch, stage-2 translation, GICv3 virtual interrupts and PSCI.
//!
//! Only [`hw`]'s hardware part (system registers, the world switch, the GIC,
//! the timer) is built for the bare-metal target alone; everything else,
//! the vCPU and exit-handling logic in [`vcpu`] included, is unit-tested on
//! the host against a test double of [`hw::PhysicalCpu`].

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod boot;
pub mod context;
pub mod debug;
pub mod esr;
pub mod fdt_gen;
pub mod gdb;
pub mod guest;
pub mod hw;
pub mod layout;
pub mod psci;
pub mod stage2;
pub mod vcpu;
pub mod vgic;
pub mod walk;
