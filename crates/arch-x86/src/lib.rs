//! Lantern's x86_64 backend: the Xen x86 guest ABI layouts (x86_64 native
//! and x86_32 compat, chosen per domain) and the AMD SVM execution backend.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod cpuid;
pub mod decode;
pub mod gdbregs;
pub mod hvm_context;
pub mod lapic;
pub mod layout;
pub mod layout_ext;
pub mod msr;
pub mod npt;
pub mod paging;
pub mod pvh;
pub mod svm;
pub mod vcpu;
pub mod vmcb;
