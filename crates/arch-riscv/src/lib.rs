//! Lantern's riscv64 backend: the Xen riscv64 guest ABI layout, the
//! H-extension world switch (guests in VS-mode under HS), G-stage
//! translation, the SBI a guest's `ecall` reaches, and the boot protocol.
//!
//! Only [`hw`]'s hardware part (CSRs, the world switch, fences, the timer)
//! is built for the bare-metal target alone; everything else, the vCPU and
//! trap handling in [`vcpu`] included, is unit-tested on the host against a
//! test double of [`hw::Hart`].

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod boot;
pub mod context;
pub mod fdt_gen;
pub mod gdb;
pub mod gstage;
pub mod guest;
pub mod hw;
pub mod layout;
pub mod sbi;
pub mod step;
pub mod trap;
pub mod vcpu;
pub mod walk;
