//! Lantern's arm64 backend: the Xen arm64 guest ABI layout, the EL2 world
//! switch, stage-2 translation, GICv3 virtual interrupts and PSCI.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod layout;
