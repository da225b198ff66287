//! The Xen guest ABI as Lantern speaks it, in one leaf crate: every
//! hypercall, sub-op and errno number, the `#[repr(C)]` mirrors of the public
//! structs that are the same on every architecture, and the layout axis of
//! the arch boundary ([`layout::GuestAbi`] with [`layout::StructLayout`]
//! tables). Arch crates add their own layouts (x86_64, x86_32 compat, arm64)
//! on top. The exceptions are [`arch_x86`], [`arch_arm`] and [`arch_riscv`], the
//! arch-specific public headers (`arch-x86/*.h`, `arch-arm.h`, `arch-riscv.h`) the
//! hypervisor's backend, the board and the test guest of that arch all
//! speak.
//!
//! Numbers and struct shapes are Xen's (`xen/include/public/*.h`); the names
//! follow Xen's with Rust casing, so a reader can grep Xen for them.

#![no_std]
#![warn(missing_docs)]

pub mod arch_arm;
pub mod arch_riscv;
pub mod arch_x86;
pub mod errno;
pub mod layout;
// Mirrors of a 64-bit arch's structs, laid out by the compiler: only a
// 64-bit build (the hypervisor, the tools, a 64-bit guest) lays `u64` out
// 8-aligned as they are; the 32-bit x86 test guest has no use for them.
#[cfg(target_pointer_width = "64")]
pub mod layout_nomask64;
pub mod nr;
pub mod public;
pub mod public_ext;

pub use errno::{Errno, XenResult};
