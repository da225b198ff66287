//! `#[repr(C)]` mirrors, in the native layout (64-bit handles and
//! `xen_ulong_t`, natural alignment: x86_64 and arm64), of the public structs
//! `cargo xtask abi` describes that `public` has no mirror for, and
//! [`NATIVE_STRUCTS`]: the layout table of the argument structs both native
//! ABIs share, built from these mirrors and from `public`'s. The x86_32
//! compat shapes live in the x86 arch crate.
//!
//! Xen's unions are mirrored as Rust unions so that every member's offset
//! comes from `offset_of!`; those types only describe layouts (the core reads
//! the members it needs through the table, e.g. `addr.h`).

use crate::layout::StructLayout;
use crate::public::{GnttabCopy, GnttabMapGrantRef, GnttabSetupTable, GnttabUnmapGrantRef};
use crate::struct_layout;

/// `addr` of `struct vcpu_register_runstate_memory_area` and
/// `struct vcpu_register_time_memory_area` with a 64-bit guest handle:
/// `union { XEN_GUEST_HANDLE(...) h; T *v; uint64_t p; }`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union RegisterAreaAddr {
    /// The guest handle (a guest-virtual address).
    pub h: u64,
    /// The same address as a C pointer.
    pub v: u64,
    /// The address as a `uint64_t` (the phys-area variants' meaning).
    pub p: u64,
}

/// `struct vcpu_register_runstate_memory_area` / `..._time_memory_area`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VcpuRegisterMemoryArea {
    /// The area's address.
    pub addr: RegisterAreaAddr,
}

/// `struct vcpu_set_singleshot_timer`.
#[repr(C)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time of the deadline (ns).
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}

/// `struct vcpu_set_periodic_timer`.
#[repr(C)]
pub struct VcpuSetPeriodicTimer {
    /// Period (ns).
    pub period_ns: u64,
}

/// `u.unbound` of `struct evtchn_status`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EvtchnStatusUnbound {
    /// The domain allowed to bind.
    pub dom: u16,
}

/// `u.interdomain` of `struct evtchn_status`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EvtchnStatusInterdomain {
    /// The remote domain.
    pub dom: u16,
    /// The remote port.
    pub port: u32,
}

/// `u` of `struct evtchn_status`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union EvtchnStatusU {
    /// `EVTCHNSTAT_unbound`.
    pub unbound: EvtchnStatusUnbound,
    /// `EVTCHNSTAT_interdomain`.
    pub interdomain: EvtchnStatusInterdomain,
    /// `EVTCHNSTAT_pirq`.
    pub pirq: u32,
    /// `EVTCHNSTAT_virq`.
    pub virq: u32,
}

/// `struct evtchn_status` (the same in every layout: no 64-bit member).
#[repr(C)]
pub struct EvtchnStatus {
    /// Domain (in).
    pub dom: u16,
    /// Port (in).
    pub port: u32,
    /// `EVTCHNSTAT_*` (out).
    pub status: u32,
    /// The vCPU the channel notifies (out).
    pub vcpu: u32,
    /// Per-status details (out).
    pub u: EvtchnStatusU,
}

/// `struct evtchn_init_control`.
#[repr(C)]
pub struct EvtchnInitControl {
    /// Guest frame of the control block (in).
    pub control_gfn: u64,
    /// Byte offset of the control block in that frame (in).
    pub offset: u32,
    /// The vCPU (in).
    pub vcpu: u32,
    /// Bits in a LINK field (out).
    pub link_bits: u8,
    /// Padding.
    pub _pad: [u8; 7],
}

/// `struct evtchn_expand_array`.
#[repr(C)]
pub struct EvtchnExpandArray {
    /// Guest frame of the next event-array page.
    pub array_gfn: u64,
}

/// `struct evtchn_set_priority` (the same in every layout).
#[repr(C)]
pub struct EvtchnSetPriority {
    /// The port.
    pub port: u32,
    /// The new priority.
    pub priority: u32,
}

/// `EVTCHN_FIFO_MAX_QUEUES`: the queues of a FIFO control block.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = crate::nr::evtchn_fifo::MAX_QUEUES;

/// `struct evtchn_fifo_control_block` (the same in every layout).
#[repr(C)]
pub struct EvtchnFifoControlBlock {
    /// Bitmap of the queues with events ready.
    pub ready: u32,
    /// Reserved.
    pub _rsvd: u32,
    /// Head of each priority's queue.
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}

/// `struct xen_memory_reservation` with a 64-bit handle and `xen_ulong_t`.
#[repr(C)]
pub struct XenMemoryReservation {
    /// Guest handle of the `xen_pfn_t` extent array.
    pub extent_start: u64,
    /// Extents in the array.
    pub nr_extents: u64,
    /// log2 of each extent's size in pages.
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    /// Target domain.
    pub domid: u16,
}

/// `struct sched_poll` with a 64-bit handle.
#[repr(C)]
pub struct SchedPoll {
    /// Guest handle of the `evtchn_port_t` array.
    pub ports: u64,
    /// Ports in the array.
    pub nr_ports: u32,
    /// Absolute system-time timeout (ns), 0 for none.
    pub timeout: u64,
}

/// `XENCONS_RING_IDX`.
pub type XenconsRingIdx = u32;

/// `struct xencons_interface` (`io/console.h`; the same in every layout).
#[repr(C)]
pub struct XenconsInterface {
    /// Ring of input to the guest.
    pub r#in: [u8; 1024],
    /// Ring of output from the guest.
    pub out: [u8; 2048],
    /// Input consumer index.
    pub in_cons: XenconsRingIdx,
    /// Input producer index.
    pub in_prod: XenconsRingIdx,
    /// Output consumer index.
    pub out_cons: XenconsRingIdx,
    /// Output producer index.
    pub out_prod: XenconsRingIdx,
    /// `XENCONSOLE_CONNECTED` / `XENCONSOLE_DISCONNECTED`.
    pub connection: u8,
}

/// The layout-table entries of a struct that has no 64-bit member, so is the
/// same in every layout, written once for the native table and reused by the
/// compat one.
#[macro_export]
macro_rules! same_everywhere_structs {
    () => {
        [
            $crate::struct_layout!("gnttab_query_size", $crate::public::GnttabQuerySize, {
                "dom" => dom: u16,
                "nr_frames" => nr_frames: u32,
                "max_nr_frames" => max_nr_frames: u32,
                "status" => status: i16,
            }),
            $crate::struct_layout!("gnttab_set_version", $crate::public::GnttabSetVersion, {
                "version" => version: u32,
            }),
            $crate::struct_layout!("grant_entry_v1", $crate::public::GrantEntryV1, {
                "flags" => flags: u16,
                "domid" => domid: u16,
                "frame" => frame: u32,
            }),
            $crate::struct_layout!("evtchn_alloc_unbound", $crate::public::EvtchnAllocUnbound, {
                "dom" => dom: u16,
                "remote_dom" => remote_dom: u16,
                "port" => port: u32,
            }),
            $crate::struct_layout!("evtchn_bind_interdomain", $crate::public::EvtchnBindInterdomain, {
                "remote_dom" => remote_dom: u16,
                "remote_port" => remote_port: u32,
                "local_port" => local_port: u32,
            }),
            $crate::struct_layout!("evtchn_bind_virq", $crate::public::EvtchnBindVirq, {
                "virq" => virq: u32,
                "vcpu" => vcpu: u32,
                "port" => port: u32,
            }),
            $crate::struct_layout!("evtchn_status", $crate::public_ext::EvtchnStatus, {
                "dom" => dom: u16,
                "port" => port: u32,
                "status" => status: u32,
                "vcpu" => vcpu: u32,
                "u.unbound.dom" => u.unbound.dom: u16,
                "u.interdomain.dom" => u.interdomain.dom: u16,
                "u.interdomain.port" => u.interdomain.port: u32,
                "u.pirq" => u.pirq: u32,
                "u.virq" => u.virq: u32,
            }),
            $crate::struct_layout!("evtchn_set_priority", $crate::public_ext::EvtchnSetPriority, {
                "port" => port: u32,
                "priority" => priority: u32,
            }),
            $crate::struct_layout!("evtchn_fifo_control_block", $crate::public_ext::EvtchnFifoControlBlock, {
                "ready" => ready: u32,
                "head" => head: [u32; $crate::public_ext::EVTCHN_FIFO_MAX_QUEUES],
            }),
            $crate::struct_layout!("xencons_interface", $crate::public_ext::XenconsInterface, {
                "in" => r#in: [u8; 1024],
                "out" => out: [u8; 2048],
                "in_cons" => in_cons: u32,
                "in_prod" => in_prod: u32,
                "out_cons" => out_cons: u32,
                "out_prod" => out_prod: u32,
                "connection" => connection: u8,
            }),
        ]
    };
}

/// The structs whose layout is the same in every ABI (no 64-bit member).
pub const SAME_EVERYWHERE: &[StructLayout] = &same_everywhere_structs!();

/// The argument structs of the native layouts (x86_64 and arm64 alike):
/// what `cargo xtask abi` shows beyond the shared-memory structs.
pub const NATIVE_ARGS: &[StructLayout] = &[
    struct_layout!("vcpu_register_runstate_memory_area", VcpuRegisterMemoryArea, {
        "addr.h" => addr.h: u64,
        "addr.v" => addr.v: u64,
        "addr.p" => addr.p: u64,
    }),
    struct_layout!("vcpu_register_time_memory_area", VcpuRegisterMemoryArea, {
        "addr.h" => addr.h: u64,
        "addr.v" => addr.v: u64,
        "addr.p" => addr.p: u64,
    }),
    struct_layout!("vcpu_set_singleshot_timer", VcpuSetSingleshotTimer, {
        "timeout_abs_ns" => timeout_abs_ns: u64,
        "flags" => flags: u32,
    }),
    struct_layout!("vcpu_set_periodic_timer", VcpuSetPeriodicTimer, {
        "period_ns" => period_ns: u64,
    }),
    struct_layout!("gnttab_setup_table", GnttabSetupTable, {
        "dom" => dom: u16,
        "nr_frames" => nr_frames: u32,
        "status" => status: i16,
        "frame_list" => frame_list: u64,
    }),
    struct_layout!("gnttab_map_grant_ref", GnttabMapGrantRef, {
        "host_addr" => host_addr: u64,
        "flags" => flags: u32,
        "ref" => r#ref: u32,
        "dom" => dom: u16,
        "status" => status: i16,
        "handle" => handle: u32,
        "dev_bus_addr" => dev_bus_addr: u64,
    }),
    struct_layout!("gnttab_unmap_grant_ref", GnttabUnmapGrantRef, {
        "host_addr" => host_addr: u64,
        "dev_bus_addr" => dev_bus_addr: u64,
        "handle" => handle: u32,
        "status" => status: i16,
    }),
    struct_layout!("gnttab_copy", GnttabCopy, {
        "source.u" => source.u: u64,
        "source.domid" => source.domid: u16,
        "source.offset" => source.offset: u16,
        "dest.u" => dest.u: u64,
        "dest.domid" => dest.domid: u16,
        "dest.offset" => dest.offset: u16,
        "len" => len: u16,
        "flags" => flags: u16,
        "status" => status: i16,
    }),
    struct_layout!("evtchn_init_control", EvtchnInitControl, {
        "control_gfn" => control_gfn: u64,
        "offset" => offset: u32,
        "vcpu" => vcpu: u32,
        "link_bits" => link_bits: u8,
    }),
    struct_layout!("evtchn_expand_array", EvtchnExpandArray, {
        "array_gfn" => array_gfn: u64,
    }),
    struct_layout!("xen_memory_reservation", XenMemoryReservation, {
        "extent_start" => extent_start: u64,
        "nr_extents" => nr_extents: u64,
        "extent_order" => extent_order: u32,
        "mem_flags" => mem_flags: u32,
        "domid" => domid: u16,
    }),
    struct_layout!("sched_poll", SchedPoll, {
        "ports" => ports: u64,
        "nr_ports" => nr_ports: u32,
        "timeout" => timeout: u64,
    }),
];
