//! The argument structs of the x86 layouts beyond the shared-memory ones
//! (timers, guest-virtual area registration, grant tables, event channels,
//! memory reservations, polling, the console ring): the x86_64 table is the
//! native one of `xen_abi::public_ext`; the x86_32 compat table is built
//! from the compat mirrors `xen_abi::public` has for the structs the core
//! decodes in both shapes, and from layout-only `packed(4)` mirrors here for
//! the rest (on i386 a `uint64_t` is only 4-byte aligned and guest handles,
//! `xen_pfn_t` and `xen_ulong_t` are 32 bits). One mirror per shape: a
//! compat shape `public` already has is not repeated here.

use xen_abi::layout::StructLayout;
use xen_abi::public::{
    GnttabCopyUlong32, GnttabSetupTableHandle32, SchedPollHandle32, VcpuSetSingleshotTimerAlign4,
    XenMemoryReservationCompat,
};
use xen_abi::public_ext::{NATIVE_ARGS, SAME_EVERYWHERE};
use xen_abi::struct_layout;

/// `struct vcpu_register_vcpu_info` (x86_32 compat: 4-aligned `mfn`).
#[repr(C, packed(4))]
pub struct RegisterVcpuInfo32 {
    pub mfn: u64,
    pub offset: u32,
    pub rsvd: u32,
}

/// `addr` of the guest-virtual area registrations (x86_32 compat: a 4-byte
/// handle in a union with a 4-aligned `uint64_t`).
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
pub union RegisterAreaAddr32 {
    pub h: u32,
    pub v: u32,
    pub p: u64,
}

/// `struct vcpu_register_{runstate,time}_memory_area` (x86_32 compat).
#[repr(C, packed(4))]
pub struct RegisterMemoryArea32 {
    pub addr: RegisterAreaAddr32,
}

/// `struct vcpu_set_periodic_timer` (x86_32 compat).
#[repr(C, packed(4))]
pub struct SetPeriodicTimer32 {
    pub period_ns: u64,
}

/// `struct gnttab_map_grant_ref` (x86_32 compat).
#[repr(C, packed(4))]
pub struct GnttabMapGrantRef32 {
    pub host_addr: u64,
    pub flags: u32,
    pub r#ref: u32,
    pub dom: u16,
    pub status: i16,
    pub handle: u32,
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref` (x86_32 compat).
#[repr(C, packed(4))]
pub struct GnttabUnmapGrantRef32 {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: u32,
    pub status: i16,
}

/// `struct evtchn_init_control` (x86_32 compat).
#[repr(C, packed(4))]
pub struct EvtchnInitControl32 {
    pub control_gfn: u64,
    pub offset: u32,
    pub vcpu: u32,
    pub link_bits: u8,
    pub _pad: [u8; 7],
}

/// `struct evtchn_expand_array` (x86_32 compat).
#[repr(C, packed(4))]
pub struct EvtchnExpandArray32 {
    pub array_gfn: u64,
}

/// Everything x86_64 adds to its shared-memory structs and `arch_vcpu_info`.
pub const EXT_64: &[StructLayout] =
    &xen_abi::layout::concat_structs::<{ SAME_EVERYWHERE.len() + NATIVE_ARGS.len() }>(SAME_EVERYWHERE, NATIVE_ARGS);

const COMPAT_ARGS: &[StructLayout] = &[
    struct_layout!("vcpu_register_runstate_memory_area", RegisterMemoryArea32, {
        "addr.h" => addr.h: u32,
        "addr.v" => addr.v: u32,
        "addr.p" => addr.p: u64,
    }),
    struct_layout!("vcpu_register_time_memory_area", RegisterMemoryArea32, {
        "addr.h" => addr.h: u32,
        "addr.v" => addr.v: u32,
        "addr.p" => addr.p: u64,
    }),
    struct_layout!("vcpu_set_singleshot_timer", VcpuSetSingleshotTimerAlign4, {
        "timeout_abs_ns" => timeout_abs_ns: u64,
        "flags" => flags: u32,
    }),
    struct_layout!("vcpu_set_periodic_timer", SetPeriodicTimer32, {
        "period_ns" => period_ns: u64,
    }),
    struct_layout!("gnttab_setup_table", GnttabSetupTableHandle32, {
        "dom" => dom: u16,
        "nr_frames" => nr_frames: u32,
        "status" => status: i16,
        "frame_list" => frame_list: u32,
    }),
    struct_layout!("gnttab_map_grant_ref", GnttabMapGrantRef32, {
        "host_addr" => host_addr: u64,
        "flags" => flags: u32,
        "ref" => r#ref: u32,
        "dom" => dom: u16,
        "status" => status: i16,
        "handle" => handle: u32,
        "dev_bus_addr" => dev_bus_addr: u64,
    }),
    struct_layout!("gnttab_unmap_grant_ref", GnttabUnmapGrantRef32, {
        "host_addr" => host_addr: u64,
        "dev_bus_addr" => dev_bus_addr: u64,
        "handle" => handle: u32,
        "status" => status: i16,
    }),
    struct_layout!("gnttab_copy", GnttabCopyUlong32, {
        "source.u" => source.u: u32,
        "source.domid" => source.domid: u16,
        "source.offset" => source.offset: u16,
        "dest.u" => dest.u: u32,
        "dest.domid" => dest.domid: u16,
        "dest.offset" => dest.offset: u16,
        "len" => len: u16,
        "flags" => flags: u16,
        "status" => status: i16,
    }),
    struct_layout!("evtchn_init_control", EvtchnInitControl32, {
        "control_gfn" => control_gfn: u64,
        "offset" => offset: u32,
        "vcpu" => vcpu: u32,
        "link_bits" => link_bits: u8,
    }),
    struct_layout!("evtchn_expand_array", EvtchnExpandArray32, {
        "array_gfn" => array_gfn: u64,
    }),
    struct_layout!("xen_memory_reservation", XenMemoryReservationCompat, {
        "extent_start" => extent_start: u32,
        "nr_extents" => nr_extents: u32,
        "extent_order" => extent_order: u32,
        "mem_flags" => mem_flags: u32,
        "domid" => domid: u16,
    }),
    struct_layout!("sched_poll", SchedPollHandle32, {
        "ports" => ports: u32,
        "nr_ports" => nr_ports: u32,
        "timeout" => timeout: u64,
    }),
];

/// Everything x86_32 adds to its shared-memory structs and `arch_vcpu_info`.
pub const EXT_32: &[StructLayout] =
    &xen_abi::layout::concat_structs::<{ SAME_EVERYWHERE.len() + COMPAT_ARGS.len() }>(SAME_EVERYWHERE, COMPAT_ARGS);
