//! `#[repr(C)]` mirrors of the Xen public structs whose layout is the same
//! in every native ABI (64-bit `xen_ulong_t`, natural alignment), and of the
//! hypercall argument structs the core decodes. Each derives zerocopy's
//! traits, so guest memory is read and written as these types by the one
//! typed accessor, never at typed-in byte offsets.
//!
//! A layout whose `xen_ulong_t` is 32 bits or whose `uint64_t` is only
//! 4-aligned (x86_32 compat) keeps its own mirrors of the structs that
//! change, in its arch crate; where the core must decode such a struct it has
//! both shapes here, named by the width of `xen_ulong_t`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Derives for a plain-data mirror.
macro_rules! mirror {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident: $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
    };
}

mirror! {
    /// `struct vcpu_time_info`: 32 bytes in every layout.
    pub struct VcpuTimeInfo {
        /// Odd while the hypervisor updates the record.
        pub version: u32,
        /// Padding.
        pub pad0: u32,
        /// Counter value at `system_time`.
        pub tsc_timestamp: u64,
        /// Nanoseconds since boot at `tsc_timestamp`.
        pub system_time: u64,
        /// Counter-to-ns multiplier (32.32 fixed point after `tsc_shift`).
        pub tsc_to_system_mul: u32,
        /// Counter shift before the multiplication.
        pub tsc_shift: i8,
        /// `XEN_PVCLOCK_*` flags.
        pub flags: u8,
        /// Padding.
        pub pad1: [u8; 2],
    }
}

mirror! {
    /// `struct vcpu_runstate_info` with natural alignment (48 bytes).
    pub struct VcpuRunstateInfo {
        /// `RUNSTATE_*`.
        pub state: u32,
        /// Padding before the 8-aligned `state_entry_time`.
        pub pad: u32,
        /// System time at entry to `state`, `XEN_RUNSTATE_UPDATE` in bit 63
        /// while the hypervisor rewrites the area.
        pub state_entry_time: u64,
        /// Time spent in each runstate (ns).
        pub time: [u64; 4],
    }
}

mirror! {
    /// `struct vcpu_register_vcpu_info` (`VCPUOP_register_vcpu_info`).
    pub struct VcpuRegisterVcpuInfo {
        /// Guest frame of the area (Xen's name; a gfn for HVM guests).
        pub mfn: u64,
        /// Byte offset within that frame.
        pub offset: u32,
        /// Reserved.
        pub rsvd: u32,
    }
}

mirror! {
    /// `struct vcpu_register_runstate_memory_area` and the phys-area
    /// variants' argument: one guest address (a union of a handle and a
    /// `uint64_t` in Xen).
    pub struct VcpuRegisterArea {
        /// Guest-virtual (memory_area) or guest-physical (phys_area) address.
        pub addr: u64,
    }
}

mirror! {
    /// `struct xen_hvm_param` (`HVMOP_set_param` / `HVMOP_get_param`).
    pub struct XenHvmParam {
        /// Target domain.
        pub domid: u16,
        /// Padding.
        pub pad: u16,
        /// `HVM_PARAM_*`.
        pub index: u32,
        /// The value (in for set, out for get).
        pub value: u64,
    }
}

mirror! {
    /// `struct xen_hvm_evtchn_upcall_vector`.
    pub struct XenHvmEvtchnUpcallVector {
        /// vCPU id.
        pub vcpu: u32,
        /// IDT vector.
        pub vector: u8,
        /// Padding (the C struct is 8 bytes).
        pub pad: [u8; 3],
    }
}

mirror! {
    /// `struct xen_add_to_physmap` with a 64-bit `xen_ulong_t`.
    pub struct XenAddToPhysmap {
        /// Target domain.
        pub domid: u16,
        /// Number of pages (for `XENMAPSPACE_gmfn_range`).
        pub size: u16,
        /// `XENMAPSPACE_*`.
        pub space: u32,
        /// Index into the space.
        pub idx: u64,
        /// Guest frame to map at.
        pub gpfn: u64,
    }
}

mirror! {
    /// `struct xen_add_to_physmap` with a 32-bit `xen_ulong_t`.
    pub struct XenAddToPhysmapUlong32 {
        /// Target domain.
        pub domid: u16,
        /// Number of pages.
        pub size: u16,
        /// `XENMAPSPACE_*`.
        pub space: u32,
        /// Index into the space.
        pub idx: u32,
        /// Guest frame to map at.
        pub gpfn: u32,
    }
}

mirror! {
    /// `struct sched_shutdown` (`SCHEDOP_shutdown`).
    pub struct SchedShutdown {
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }
}

mirror! {
    /// `struct sched_remote_shutdown` (`SCHEDOP_remote_shutdown`).
    pub struct SchedRemoteShutdown {
        /// The domain to shut down.
        pub domain_id: u16,
        /// C's padding before `reason`.
        pub pad: u16,
        /// `SHUTDOWN_*`.
        pub reason: u32,
    }
}

mirror! {
    /// `struct xen_feature_info` (`XENVER_get_features`).
    pub struct XenFeatureInfo {
        /// Which 32-bit word of features (in).
        pub submap_idx: u32,
        /// That word's bits (out).
        pub submap: u32,
    }
}

mirror! {
    /// `struct evtchn_alloc_unbound`.
    pub struct EvtchnAllocUnbound {
        /// Allocating domain.
        pub dom: u16,
        /// Domain allowed to bind the other end.
        pub remote_dom: u16,
        /// The new port (out).
        pub port: u32,
    }
}

mirror! {
    /// `struct evtchn_bind_interdomain`.
    pub struct EvtchnBindInterdomain {
        /// The other domain.
        pub remote_dom: u16,
        /// Padding.
        pub pad: u16,
        /// Its unbound port.
        pub remote_port: u32,
        /// The new local port (out).
        pub local_port: u32,
    }
}

mirror! {
    /// `struct evtchn_bind_virq`.
    pub struct EvtchnBindVirq {
        /// `VIRQ_*`.
        pub virq: u32,
        /// vCPU to deliver to.
        pub vcpu: u32,
        /// The new port (out).
        pub port: u32,
    }
}

mirror! {
    /// `struct evtchn_bind_ipi`.
    pub struct EvtchnBindIpi {
        /// vCPU to deliver to.
        pub vcpu: u32,
        /// The new port (out).
        pub port: u32,
    }
}

mirror! {
    /// `struct evtchn_bind_vcpu`.
    pub struct EvtchnBindVcpu {
        /// The port.
        pub port: u32,
        /// Its new vCPU.
        pub vcpu: u32,
    }
}

mirror! {
    /// `struct evtchn_send`, `evtchn_close`, `evtchn_unmask`: one port.
    pub struct EvtchnPort {
        /// The port.
        pub port: u32,
    }
}

mirror! {
    /// `struct evtchn_status`: the same in every layout (no `xen_ulong_t`).
    pub struct EvtchnStatus {
        /// Domain whose port is asked about (in; `DOMID_SELF` allowed).
        pub dom: u16,
        /// Padding.
        pub pad: u16,
        /// The port (in).
        pub port: u32,
        /// `EVTCHNSTAT_*` (out).
        pub status: u32,
        /// vCPU the port notifies (out).
        pub vcpu: u32,
        /// `u.unbound.dom`, `u.interdomain.dom` (low 16 bits; out), or
        /// `u.pirq` / `u.virq` (all 32 bits).
        pub u0: u32,
        /// `u.interdomain.port` (out).
        pub u1: u32,
    }
}

mirror! {
    /// `struct evtchn_init_control` (FIFO ABI).
    pub struct EvtchnInitControl {
        /// Guest frame holding the vCPU's control block (in).
        pub control_gfn: u64,
        /// Offset of the control block in that frame (in).
        pub offset: u32,
        /// The vCPU (in).
        pub vcpu: u32,
        /// `EVTCHN_FIFO_LINK_BITS` (out; a `uint8_t` in the C struct).
        pub link_bits: u8,
        /// Padding (`_pad[7]`).
        pub pad: [u8; 7],
    }
}

mirror! {
    /// `struct evtchn_expand_array` (FIFO ABI).
    pub struct EvtchnExpandArray {
        /// Guest frame to add to the event array (in).
        pub array_gfn: u64,
    }
}

mirror! {
    /// `struct evtchn_set_priority` (FIFO ABI).
    pub struct EvtchnSetPriority {
        /// The port.
        pub port: u32,
        /// `EVTCHN_FIFO_PRIORITY_*` range.
        pub priority: u32,
    }
}

mirror! {
    /// `struct evtchn_fifo_control_block`: one per vCPU in a guest page,
    /// written by the hypervisor (`head`) and shared with the guest
    /// (`ready`). `nr::evtchn_fifo::CONTROL_BLOCK_*` are asserted below to
    /// agree with it.
    pub struct EvtchnFifoControlBlock {
        /// Bitmap of the queues with linked events.
        pub ready: u32,
        /// Reserved (`_rsvd`).
        pub rsvd: u32,
        /// Head port of each priority's queue.
        pub head: [u32; crate::nr::evtchn_fifo::MAX_QUEUES],
    }
}

mirror! {
    /// `struct grant_entry_v1`: one entry of a v1 grant table, written by
    /// the granting guest.
    pub struct GrantEntryV1 {
        /// `GTF_*`.
        pub flags: u16,
        /// The domain the access is granted to.
        pub domid: u16,
        /// The granted frame (a gfn of the granter).
        pub frame: u32,
    }
}

mirror! {
    /// `struct xen_memory_reservation` with 64-bit handles, `xen_pfn_t` and
    /// `xen_ulong_t` (x86_64, arm64).
    pub struct XenMemoryReservation {
        /// Guest handle of the `xen_pfn_t` array (in: gfns to populate or
        /// release; may be null for increase_reservation).
        pub extent_start: u64,
        /// Number of extents.
        pub nr_extents: u64,
        /// Each extent is `1 << extent_order` pages.
        pub extent_order: u32,
        /// `XENMEMF_*`.
        pub mem_flags: u32,
        /// Target domain.
        pub domid: u16,
        /// Padding to the struct's 8-byte alignment.
        pub pad: [u8; 6],
    }
}

mirror! {
    /// `struct xen_memory_reservation` in the x86_32 compat layout: 4-byte
    /// handle, `xen_pfn_t` and `xen_ulong_t`.
    pub struct XenMemoryReservationCompat {
        /// Guest handle of the `xen_pfn_t` (32-bit) array.
        pub extent_start: u32,
        /// Number of extents.
        pub nr_extents: u32,
        /// Each extent is `1 << extent_order` pages.
        pub extent_order: u32,
        /// `XENMEMF_*`.
        pub mem_flags: u32,
        /// Target domain.
        pub domid: u16,
        /// Padding to the struct's 4-byte alignment.
        pub pad: u16,
    }
}

mirror! {
    /// `struct xen_memory_map` with a 64-bit guest handle.
    pub struct XenMemoryMap {
        /// In: entries the buffer holds; out: entries stored.
        pub nr_entries: u32,
        /// Padding before the 8-aligned handle.
        pub pad: u32,
        /// Guest handle of the entry buffer.
        pub buffer: u64,
    }
}

mirror! {
    /// `struct xen_memory_map` in the x86_32 compat layout.
    pub struct XenMemoryMapCompat {
        /// In: entries the buffer holds; out: entries stored.
        pub nr_entries: u32,
        /// Guest handle of the entry buffer.
        pub buffer: u32,
    }
}

/// One entry of the map `XENMEM_memory_map` returns, in the BIOS e820
/// format: 20 bytes, packed (the `u64`s are stored as byte arrays so the
/// struct has no alignment and no padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct E820Entry {
    /// Base address, little-endian.
    pub addr: [u8; 8],
    /// Length in bytes, little-endian.
    pub size: [u8; 8],
    /// `E820_*` type (`nr::e820`), little-endian.
    pub kind: [u8; 4],
}

impl E820Entry {
    /// The entry for `size` bytes of type `kind` at `addr`.
    pub fn new(addr: u64, size: u64, kind: u32) -> Self {
        E820Entry { addr: addr.to_le_bytes(), size: size.to_le_bytes(), kind: kind.to_le_bytes() }
    }
}

mirror! {
    /// `struct gnttab_setup_table` with a 64-bit guest handle (x86_64, arm).
    pub struct GnttabSetupTable {
        /// Target domain (in).
        pub dom: u16,
        /// Padding.
        pub pad0: u16,
        /// Frames wanted (in).
        pub nr_frames: u32,
        /// `GNTST_*` (out).
        pub status: i16,
        /// Padding before the 8-aligned handle.
        pub pad1: [u8; 6],
        /// Guest handle of the `xen_pfn_t` array receiving the frames' gfns.
        pub frame_list: u64,
    }
}

mirror! {
    /// `struct gnttab_setup_table` with a 32-bit guest handle (x86_32
    /// compat, where `xen_pfn_t` is 32 bits too).
    pub struct GnttabSetupTableHandle32 {
        /// Target domain (in).
        pub dom: u16,
        /// Padding.
        pub pad0: u16,
        /// Frames wanted (in).
        pub nr_frames: u32,
        /// `GNTST_*` (out).
        pub status: i16,
        /// Padding.
        pub pad1: u16,
        /// Guest handle of the `xen_pfn_t` array.
        pub frame_list: u32,
    }
}

mirror! {
    /// `struct gnttab_query_size`.
    pub struct GnttabQuerySize {
        /// Target domain (in).
        pub dom: u16,
        /// Padding.
        pub pad0: u16,
        /// Frames in use (out).
        pub nr_frames: u32,
        /// Most frames the table may grow to (out).
        pub max_nr_frames: u32,
        /// `GNTST_*` (out).
        pub status: i16,
        /// Padding.
        pub pad1: u16,
    }
}

mirror! {
    /// `struct gnttab_set_version`.
    pub struct GnttabSetVersion {
        /// Requested version (in); the version in force (out).
        pub version: u32,
    }
}

mirror! {
    /// `struct gnttab_get_version`.
    pub struct GnttabGetVersion {
        /// Target domain (in).
        pub dom: u16,
        /// Padding.
        pub pad: u16,
        /// The version in force (out).
        pub version: u32,
    }
}

mirror! {
    /// `struct gnttab_map_grant_ref`: the same 32 bytes in every layout.
    pub struct GnttabMapGrantRef {
        /// Where to map (for an HVM guest: a guest-physical address).
        pub host_addr: u64,
        /// `GNTMAP_*`.
        pub flags: u32,
        /// The grant reference in `dom`'s table.
        pub r#ref: u32,
        /// The granting domain.
        pub dom: u16,
        /// `GNTST_*` (out).
        pub status: i16,
        /// Handle for the unmap (out).
        pub handle: u32,
        /// Device address of the frame (out).
        pub dev_bus_addr: u64,
    }
}

mirror! {
    /// `struct gnttab_unmap_grant_ref`: the same 24 bytes in every layout.
    pub struct GnttabUnmapGrantRef {
        /// The address the grant was mapped at.
        pub host_addr: u64,
        /// The device address, or 0.
        pub dev_bus_addr: u64,
        /// The map's handle.
        pub handle: u32,
        /// `GNTST_*` (out).
        pub status: i16,
        /// Padding.
        pub pad: u16,
    }
}

mirror! {
    /// One side of a `struct gnttab_copy` with a 64-bit `xen_pfn_t`.
    pub struct GnttabCopyPtr {
        /// A grant reference (low 32 bits) or a gmfn (`GNTCOPY_*_gref`).
        pub u: u64,
        /// The domain.
        pub domid: u16,
        /// Byte offset within the frame.
        pub offset: u16,
        /// Padding.
        pub pad: u32,
    }
}

mirror! {
    /// `struct gnttab_copy` with a 64-bit `xen_pfn_t` (x86_64, arm).
    pub struct GnttabCopy {
        /// Source.
        pub source: GnttabCopyPtr,
        /// Destination.
        pub dest: GnttabCopyPtr,
        /// Bytes to copy.
        pub len: u16,
        /// `GNTCOPY_*`.
        pub flags: u16,
        /// `GNTST_*` (out).
        pub status: i16,
        /// Padding.
        pub pad: [u8; 2],
    }
}

mirror! {
    /// One side of a `struct gnttab_copy` with a 32-bit `xen_pfn_t`.
    pub struct GnttabCopyPtrUlong32 {
        /// A grant reference or a gmfn.
        pub u: u32,
        /// The domain.
        pub domid: u16,
        /// Byte offset within the frame.
        pub offset: u16,
    }
}

mirror! {
    /// `struct gnttab_copy` with a 32-bit `xen_pfn_t` (x86_32 compat).
    pub struct GnttabCopyUlong32 {
        /// Source.
        pub source: GnttabCopyPtrUlong32,
        /// Destination.
        pub dest: GnttabCopyPtrUlong32,
        /// Bytes to copy.
        pub len: u16,
        /// `GNTCOPY_*`.
        pub flags: u16,
        /// `GNTST_*` (out).
        pub status: i16,
        /// Padding.
        pub pad: [u8; 2],
    }
}

mirror! {
    /// `struct vcpu_set_periodic_timer`: the same 8 bytes in every layout.
    pub struct VcpuSetPeriodicTimer {
        /// Period in ns.
        pub period_ns: u64,
    }
}

mirror! {
    /// `struct vcpu_set_singleshot_timer` with 8-aligned `uint64_t` (x86_64,
    /// arm: 16 bytes).
    pub struct VcpuSetSingleshotTimer {
        /// Absolute system time of the deadline, in ns.
        pub timeout_abs_ns: u64,
        /// `VCPU_SSHOTTMR_*`.
        pub flags: u32,
        /// Tail padding.
        pub pad: u32,
    }
}

/// `struct vcpu_set_singleshot_timer` with 4-aligned `uint64_t` (x86_32
/// compat: 12 bytes, so a guest's struct at the end of a page reads whole).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuSetSingleshotTimerAlign4 {
    /// Absolute system time of the deadline, in ns.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
}

mirror! {
    /// `struct sched_poll` with a 64-bit guest handle (x86_64, arm: 24 bytes).
    pub struct SchedPoll {
        /// Guest handle of the `evtchn_port_t` array.
        pub ports: u64,
        /// Ports in the array.
        pub nr_ports: u32,
        /// Padding before the 8-aligned `timeout`.
        pub pad: u32,
        /// Absolute system time to give up at, in ns (0: never).
        pub timeout: u64,
    }
}

/// `struct sched_poll` with a 32-bit guest handle and 4-aligned `uint64_t`
/// (x86_32 compat: 16 bytes).
#[repr(C, packed(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SchedPollHandle32 {
    /// Guest handle of the `evtchn_port_t` array.
    pub ports: u32,
    /// Ports in the array.
    pub nr_ports: u32,
    /// Absolute system time to give up at, in ns (0: never).
    pub timeout: u64,
}

/// `struct xencons_interface`: the PV console ring page. The guest produces
/// into `out` and consumes from `in`; the backend does the opposite. The
/// indices are free-running (`XENCONS_RING_IDX`, a `uint32_t`) and masked
/// with the ring size on every access. `connection` is the byte newer
/// headers append (`XENCONSOLE_CONNECTED` = 0 / `_DISCONNECTED` = 1; a page
/// zeroed by an older backend reads as connected). Written by hand: arrays
/// this large have no `Default`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenconsInterface {
    /// Input ring: backend to guest.
    pub in_: [u8; crate::nr::xencons::IN_RING_SIZE],
    /// Output ring: guest to backend.
    pub out: [u8; crate::nr::xencons::OUT_RING_SIZE],
    /// Next input byte the guest will consume.
    pub in_cons: u32,
    /// Next input byte the backend will produce.
    pub in_prod: u32,
    /// Next output byte the backend will consume.
    pub out_cons: u32,
    /// Next output byte the guest will produce.
    pub out_prod: u32,
    /// Whether the backend is connected (`XENCONSOLE_*`).
    pub connection: u8,
    /// Tail padding to the struct's 4-byte alignment.
    pub pad: [u8; 3],
}

// The sizes Xen's headers promise (and guests rely on).
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<VcpuTimeInfo>() == 32);
    assert!(size_of::<VcpuRunstateInfo>() == 48 && offset_of!(VcpuRunstateInfo, state_entry_time) == 8);
    assert!(size_of::<VcpuRegisterVcpuInfo>() == 16);
    assert!(size_of::<XenHvmParam>() == 16 && offset_of!(XenHvmParam, value) == 8);
    assert!(size_of::<XenHvmEvtchnUpcallVector>() == 8);
    assert!(size_of::<XenAddToPhysmap>() == 24 && size_of::<XenAddToPhysmapUlong32>() == 16);
    assert!(size_of::<XenMemoryReservation>() == 32 && offset_of!(XenMemoryReservation, domid) == 24);
    assert!(size_of::<XenMemoryReservationCompat>() == 20 && offset_of!(XenMemoryReservationCompat, domid) == 16);
    assert!(size_of::<XenMemoryMap>() == 16 && size_of::<XenMemoryMapCompat>() == 8);
    assert!(size_of::<E820Entry>() == 20);
    assert!(size_of::<EvtchnAllocUnbound>() == 8 && size_of::<EvtchnBindInterdomain>() == 12);
    assert!(size_of::<EvtchnBindVirq>() == 12 && size_of::<EvtchnBindIpi>() == 8);
    assert!(size_of::<EvtchnStatus>() == 24 && offset_of!(EvtchnStatus, u0) == 16);
    assert!(size_of::<EvtchnInitControl>() == 24 && offset_of!(EvtchnInitControl, link_bits) == 16);
    assert!(size_of::<EvtchnExpandArray>() == 8 && size_of::<EvtchnSetPriority>() == 8);
    assert!(size_of::<GrantEntryV1>() == crate::nr::gnttab::ENTRY_V1_SIZE);
    assert!(size_of::<GnttabSetupTable>() == 24 && offset_of!(GnttabSetupTable, frame_list) == 16);
    assert!(size_of::<GnttabSetupTableHandle32>() == 16 && offset_of!(GnttabSetupTableHandle32, frame_list) == 12);
    assert!(size_of::<GnttabQuerySize>() == 16 && size_of::<GnttabGetVersion>() == 8);
    assert!(size_of::<GnttabMapGrantRef>() == 32 && offset_of!(GnttabMapGrantRef, dev_bus_addr) == 24);
    assert!(size_of::<GnttabUnmapGrantRef>() == 24 && offset_of!(GnttabUnmapGrantRef, status) == 20);
    assert!(size_of::<GnttabCopy>() == 40 && offset_of!(GnttabCopy, status) == 36);
    assert!(size_of::<VcpuSetPeriodicTimer>() == 8);
    assert!(size_of::<VcpuSetSingleshotTimer>() == 16 && size_of::<VcpuSetSingleshotTimerAlign4>() == 12);
    assert!(size_of::<SchedPoll>() == 24 && offset_of!(SchedPoll, timeout) == 16);
    assert!(size_of::<SchedPollHandle32>() == 16 && offset_of!(SchedPollHandle32, timeout) == 8);
    assert!(size_of::<GnttabCopyUlong32>() == 24 && offset_of!(GnttabCopyUlong32, status) == 20);
    assert!(offset_of!(XenconsInterface, out) == 1024 && offset_of!(XenconsInterface, in_cons) == 3072);
    assert!(offset_of!(XenconsInterface, out_prod) == 3084 && offset_of!(XenconsInterface, connection) == 3088);
    assert!(size_of::<XenconsInterface>() == 3092);
    assert!(size_of::<EvtchnFifoControlBlock>() == 72 && offset_of!(EvtchnFifoControlBlock, head) == 8);
    {
        use crate::nr::evtchn_fifo::{CONTROL_BLOCK_HEAD, CONTROL_BLOCK_READY, CONTROL_BLOCK_SIZE};
        assert!(size_of::<EvtchnFifoControlBlock>() == CONTROL_BLOCK_SIZE);
        assert!(offset_of!(EvtchnFifoControlBlock, ready) == CONTROL_BLOCK_READY);
        assert!(offset_of!(EvtchnFifoControlBlock, head) == CONTROL_BLOCK_HEAD);
    }
};
