//! gdb thread ids for vCPUs: `tid = domid * TIDS_PER_DOMAIN + vcpu + 1`, so
//! a vCPU keeps its thread id for the life of the system whatever other
//! domains come and go.

use core::num::NonZeroUsize;

use gdbstub::common::Tid;

/// Thread ids per domain.
pub const TIDS_PER_DOMAIN: usize = 1024;

/// The thread id of vCPU `vcpu` of domain `domid`.
pub fn tid_of(domid: u16, vcpu: u32) -> Option<Tid> {
    if vcpu as usize >= TIDS_PER_DOMAIN - 1 {
        return None;
    }
    NonZeroUsize::new(domid as usize * TIDS_PER_DOMAIN + vcpu as usize + 1)
}

/// `(domid, vcpu)` of a thread id.
pub fn split_tid(tid: Tid) -> (usize, u32) {
    let t = tid.get() - 1;
    (t / TIDS_PER_DOMAIN, (t % TIDS_PER_DOMAIN) as u32)
}
