//! The layout tables of the hypercall argument and shared-ring structs
//! `cargo xtask abi` describes beyond the shared-memory ones, built from the
//! `#[repr(C)]` mirrors in [`public`](crate::public) (this module defines no
//! struct of its own): [`SAME_EVERYWHERE`], the structs with no 64-bit
//! member, and [`NATIVE_ARGS`], the argument structs both native ABIs
//! (x86_64, arm64: 64-bit handles and `xen_ulong_t`, natural alignment)
//! share. The x86_32 compat table lives in the x86 arch crate.
//!
//! Paths are Xen's C names, whatever the mirror's Rust field is called: a
//! union is listed member by member at the offset and with the size of each
//! member (`addr.h` / `addr.v` / `addr.p` all name the one `addr` of
//! [`VcpuRegisterArea`]; `u.unbound.dom` and `u.pirq` the low bytes of
//! [`EvtchnStatus`]'s `u0`).

use crate::layout::StructLayout;
use crate::nr::evtchn_fifo::MAX_QUEUES;
use crate::public::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindVirq, EvtchnExpandArray, EvtchnFifoControlBlock,
    EvtchnInitControl, EvtchnSetPriority, EvtchnStatus, GnttabCopy, GnttabMapGrantRef, GnttabQuerySize,
    GnttabSetVersion, GnttabSetupTable, GnttabUnmapGrantRef, GrantEntryV1, SchedPoll, VcpuRegisterArea,
    VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, XenMemoryReservation, XenconsInterface,
};
use crate::struct_layout;

/// The structs whose layout is the same in every ABI (no 64-bit member).
pub const SAME_EVERYWHERE: &[StructLayout] = &[
    struct_layout!("gnttab_query_size", GnttabQuerySize, {
        "dom" => dom: u16,
        "nr_frames" => nr_frames: u32,
        "max_nr_frames" => max_nr_frames: u32,
        "status" => status: i16,
    }),
    struct_layout!("gnttab_set_version", GnttabSetVersion, {
        "version" => version: u32,
    }),
    struct_layout!("grant_entry_v1", GrantEntryV1, {
        "flags" => flags: u16,
        "domid" => domid: u16,
        "frame" => frame: u32,
    }),
    struct_layout!("evtchn_alloc_unbound", EvtchnAllocUnbound, {
        "dom" => dom: u16,
        "remote_dom" => remote_dom: u16,
        "port" => port: u32,
    }),
    struct_layout!("evtchn_bind_interdomain", EvtchnBindInterdomain, {
        "remote_dom" => remote_dom: u16,
        "remote_port" => remote_port: u32,
        "local_port" => local_port: u32,
    }),
    struct_layout!("evtchn_bind_virq", EvtchnBindVirq, {
        "virq" => virq: u32,
        "vcpu" => vcpu: u32,
        "port" => port: u32,
    }),
    struct_layout!("evtchn_status", EvtchnStatus, {
        "dom" => dom: u16,
        "port" => port: u32,
        "status" => status: u32,
        "vcpu" => vcpu: u32,
        "u.unbound.dom" => u0: u16,
        "u.interdomain.dom" => u0: u16,
        "u.interdomain.port" => u1: u32,
        "u.pirq" => u0: u32,
        "u.virq" => u0: u32,
    }),
    struct_layout!("evtchn_set_priority", EvtchnSetPriority, {
        "port" => port: u32,
        "priority" => priority: u32,
    }),
    struct_layout!("evtchn_fifo_control_block", EvtchnFifoControlBlock, {
        "ready" => ready: u32,
        "head" => head: [u32; MAX_QUEUES],
    }),
    struct_layout!("xencons_interface", XenconsInterface, {
        "in" => in_: [u8; crate::nr::xencons::IN_RING_SIZE],
        "out" => out: [u8; crate::nr::xencons::OUT_RING_SIZE],
        "in_cons" => in_cons: u32,
        "in_prod" => in_prod: u32,
        "out_cons" => out_cons: u32,
        "out_prod" => out_prod: u32,
        "connection" => connection: u8,
    }),
];

/// The argument structs of the native layouts (x86_64 and arm64 alike):
/// what `cargo xtask abi` shows beyond the shared-memory structs.
pub const NATIVE_ARGS: &[StructLayout] = &[
    struct_layout!("vcpu_register_runstate_memory_area", VcpuRegisterArea, {
        "addr.h" => addr: u64,
        "addr.v" => addr: u64,
        "addr.p" => addr: u64,
    }),
    struct_layout!("vcpu_register_time_memory_area", VcpuRegisterArea, {
        "addr.h" => addr: u64,
        "addr.v" => addr: u64,
        "addr.p" => addr: u64,
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
