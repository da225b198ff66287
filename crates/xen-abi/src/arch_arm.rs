//! The arm parts of Xen's public headers that a guest and the hypervisor
//! both speak, named once (`arch-arm.h`): the hypercall instruction's
//! immediate, the event-channel upcall PPI and the number of vcpu_info slots
//! in shared_info. Like [`crate::arch_x86`], the hypervisor's arm backend,
//! the arm board and the arm test guest all build on it.

/// `XEN_HYPERCALL_TAG`: the immediate of Xen's hypercall instruction on
/// arm, `hvc #0xEA1` (x16 = hypercall number, x0..x4 = arguments).
pub const HYPERCALL_HVC_IMM: u16 = 0xea1;

/// `GUEST_EVTCHN_PPI`: the PPI on which Xen delivers event-channel upcalls
/// to an arm guest.
pub const EVTCHN_PPI: u32 = 31;

/// `XEN_LEGACY_MAX_VCPUS` on arm: only vCPU 0 has a vcpu_info slot in
/// shared_info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 1;
