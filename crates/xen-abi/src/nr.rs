//! Every Xen number Lantern uses, named once: hypercalls, their sub-ops,
//! parameters and flags (`xen.h`, `vcpu.h`, `sched.h`, `memory.h`,
//! `event_channel.h`, `version.h`, `hvm/hvm_op.h`, `hvm/params.h`,
//! `grant_table.h`).
//! Sub-op numbers are `u64` because they arrive in a register.

/// Hypercall numbers (`__HYPERVISOR_*`, `xen.h`).
pub mod hypercall {
    /// `__HYPERVISOR_set_timer_op`.
    pub const SET_TIMER_OP: u64 = 15;
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u64 = 12;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u64 = 17;
    /// `__HYPERVISOR_iret` (PV only: an HVM guest's stub for it traps).
    pub const IRET: u64 = 23;
    /// `__HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u64 = 18;
    /// `__HYPERVISOR_grant_table_op`.
    pub const GRANT_TABLE_OP: u64 = 20;
    /// `__HYPERVISOR_vm_assist`.
    pub const VM_ASSIST: u64 = 21;
    /// `__HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: u64 = 24;
    /// `__HYPERVISOR_sched_op`.
    pub const SCHED_OP: u64 = 29;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u64 = 32;
    /// `__HYPERVISOR_hvm_op`.
    pub const HVM_OP: u64 = 34;

    /// Xen's name of hypercall `nr`, for logs and the debugger.
    pub fn name(nr: u64) -> &'static str {
        match nr {
            SET_TIMER_OP => "set_timer_op",
            MEMORY_OP => "memory_op",
            XEN_VERSION => "xen_version",
            CONSOLE_IO => "console_io",
            GRANT_TABLE_OP => "grant_table_op",
            VM_ASSIST => "vm_assist",
            VCPU_OP => "vcpu_op",
            SCHED_OP => "sched_op",
            EVENT_CHANNEL_OP => "event_channel_op",
            HVM_OP => "hvm_op",
            _ => "unknown",
        }
    }
}

/// `VCPUOP_*` (`vcpu.h`).
pub mod vcpuop {
    /// `VCPUOP_initialise`.
    pub const INITIALISE: u64 = 0;
    /// `VCPUOP_up`.
    pub const UP: u64 = 1;
    /// `VCPUOP_down`.
    pub const DOWN: u64 = 2;
    /// `VCPUOP_is_up`.
    pub const IS_UP: u64 = 3;
    /// `VCPUOP_get_runstate_info`.
    pub const GET_RUNSTATE_INFO: u64 = 4;
    /// `VCPUOP_register_runstate_memory_area`.
    pub const REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
    /// `VCPUOP_set_periodic_timer`.
    pub const SET_PERIODIC_TIMER: u64 = 6;
    /// `VCPUOP_stop_periodic_timer`.
    pub const STOP_PERIODIC_TIMER: u64 = 7;
    /// `VCPUOP_set_singleshot_timer`.
    pub const SET_SINGLESHOT_TIMER: u64 = 8;
    /// `VCPUOP_stop_singleshot_timer`.
    pub const STOP_SINGLESHOT_TIMER: u64 = 9;
    /// `VCPUOP_register_vcpu_info`.
    pub const REGISTER_VCPU_INFO: u64 = 10;
    /// `VCPUOP_register_vcpu_time_memory_area`.
    pub const REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
    /// `VCPUOP_register_runstate_phys_area`.
    pub const REGISTER_RUNSTATE_PHYS_AREA: u64 = 14;
    /// `VCPUOP_register_vcpu_time_phys_area`.
    pub const REGISTER_VCPU_TIME_PHYS_AREA: u64 = 15;
    /// `VCPU_SSHOTTMR_future`: a flag of `vcpu_set_singleshot_timer`. Xen
    /// since 4.18 accepts and ignores it (a deadline already passed fires at
    /// once instead of failing with `-ETIME`).
    pub const SSHOTTMR_FUTURE: u32 = 1 << 0;
}

/// Xen's limits on the PV timers (`xen/time.h`, `domain.c`, `sched/core.c`):
/// internal to Xen but visible to guests through the errnos and delays.
pub mod pv_timer {
    /// `MILLISECS(1)`: the shortest period `VCPUOP_set_periodic_timer` takes.
    pub const PERIOD_MIN_NS: u64 = 1_000_000;
    /// `STIME_DELTA_MAX`: the longest period it takes.
    pub const STIME_DELTA_MAX: u64 = u64::MAX >> 2;
    /// `set_timer_op` treats a deadline this many bits of ns or more ahead
    /// (about 13 days) as a wrapped guest value ...
    pub const HUGE_TIMEOUT_SHIFT: u32 = 50;
    /// ... and fires the timer this long from now instead.
    pub const HUGE_TIMEOUT_DELAY_NS: u64 = 100_000_000;
}

/// `SCHEDOP_*` (`sched.h`).
pub mod schedop {
    /// `SCHEDOP_yield`.
    pub const YIELD: u64 = 0;
    /// `SCHEDOP_block`.
    pub const BLOCK: u64 = 1;
    /// `SCHEDOP_shutdown`.
    pub const SHUTDOWN: u64 = 2;
    /// `SCHEDOP_poll`.
    pub const POLL: u64 = 3;
    /// `SCHEDOP_remote_shutdown`: a privileged domain's only.
    pub const REMOTE_SHUTDOWN: u64 = 4;
    /// The most ports one `SCHEDOP_poll` may name (`do_poll`).
    pub const POLL_MAX_PORTS: u32 = 128;
}

/// `SHUTDOWN_*` reasons (`sched.h`).
pub mod shutdown {
    /// `SHUTDOWN_poweroff`: a clean exit.
    pub const POWEROFF: u32 = 0;
    /// `SHUTDOWN_reboot`.
    pub const REBOOT: u32 = 1;
    /// `SHUTDOWN_suspend`.
    pub const SUSPEND: u32 = 2;
    /// `SHUTDOWN_crash`.
    pub const CRASH: u32 = 3;
    /// `SHUTDOWN_watchdog`.
    pub const WATCHDOG: u32 = 4;
    /// `SHUTDOWN_soft_reset`.
    pub const SOFT_RESET: u32 = 5;

    /// Xen's name of a `SHUTDOWN_*` reason.
    pub fn name(reason: u32) -> &'static str {
        match reason {
            POWEROFF => "poweroff",
            REBOOT => "reboot",
            SUSPEND => "suspend",
            CRASH => "crash",
            WATCHDOG => "watchdog",
            SOFT_RESET => "soft_reset",
            _ => "unknown",
        }
    }
}

/// `HVMOP_*` (`hvm/hvm_op.h`).
pub mod hvmop {
    /// `HVMOP_set_param`.
    pub const SET_PARAM: u64 = 0;
    /// `HVMOP_get_param`.
    pub const GET_PARAM: u64 = 1;
    /// `HVMOP_set_evtchn_upcall_vector`.
    pub const SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
}

/// `HVM_PARAM_*` indices and values (`hvm/params.h`).
pub mod hvm_param {
    /// `HVM_PARAM_CALLBACK_IRQ`: bits 63:56 the type, low bits the vector/PPI.
    pub const CALLBACK_IRQ: u32 = 0;
    /// `HVM_PARAM_STORE_PFN`.
    pub const STORE_PFN: u32 = 1;
    /// `HVM_PARAM_STORE_EVTCHN`.
    pub const STORE_EVTCHN: u32 = 2;
    /// `HVM_PARAM_CONSOLE_PFN`.
    pub const CONSOLE_PFN: u32 = 17;
    /// `HVM_PARAM_CONSOLE_EVTCHN`.
    pub const CONSOLE_EVTCHN: u32 = 18;
    /// `HVM_PARAM_TRIPLE_FAULT_REASON`: the `SHUTDOWN_*` reason a triple
    /// fault shuts an HVM domain down with (Xen's default: reboot).
    pub const TRIPLE_FAULT_REASON: u32 = 31;
    /// `HVM_PARAM_VM86_TSS` (x86).
    pub const VM86_TSS: u32 = 15;
    /// `HVM_PARAM_ACPI_IOPORTS_LOCATION` (x86).
    pub const ACPI_IOPORTS_LOCATION: u32 = 19;
    /// `HVM_PARAM_VM_GENERATION_ID_ADDR`.
    pub const VM_GENERATION_ID_ADDR: u32 = 34;
    /// `HVM_PARAM_ALTP2M`: read-only to the guest.
    pub const ALTP2M: u32 = 35;
    /// `HVM_PARAM_X87_FIP_WIDTH` (x86).
    pub const X87_FIP_WIDTH: u32 = 36;
    /// `HVM_PARAM_VM86_TSS_SIZED` (x86).
    pub const VM86_TSS_SIZED: u32 = 37;
    /// The deprecated indices Xen answers `-EINVAL` for: PAE_ENABLED,
    /// DM_DOMAIN, the MEMORY_EVENT_* ones, NESTEDHVM, BUFIOREQ_EVTCHN.
    pub const DEPRECATED: [u32; 10] = [4, 13, 20, 21, 22, 23, 24, 25, 26, 30];
    /// `HVM_NR_PARAMS`.
    pub const NR_PARAMS: u32 = 40;
    /// Shift of the type in `HVM_PARAM_CALLBACK_IRQ`.
    pub const CALLBACK_TYPE_SHIFT: u32 = 56;
    /// `HVM_PARAM_CALLBACK_TYPE_VECTOR` (x86: an IDT vector).
    pub const CALLBACK_TYPE_VECTOR: u64 = 2;
    /// `HVM_PARAM_CALLBACK_TYPE_PPI` (arm: a PPI).
    pub const CALLBACK_TYPE_PPI: u64 = 3;
}

/// `XENMEM_*` (`memory.h`).
pub mod memop {
    /// `XENMEM_increase_reservation`.
    pub const INCREASE_RESERVATION: u64 = 0;
    /// `XENMEM_decrease_reservation`.
    pub const DECREASE_RESERVATION: u64 = 1;
    /// `XENMEM_maximum_ram_page`.
    pub const MAXIMUM_RAM_PAGE: u64 = 2;
    /// `XENMEM_current_reservation`.
    pub const CURRENT_RESERVATION: u64 = 3;
    /// `XENMEM_maximum_reservation`.
    pub const MAXIMUM_RESERVATION: u64 = 4;
    /// `XENMEM_populate_physmap`.
    pub const POPULATE_PHYSMAP: u64 = 6;
    /// `XENMEM_add_to_physmap`.
    pub const ADD_TO_PHYSMAP: u64 = 7;
    /// `XENMEM_memory_map`.
    pub const MEMORY_MAP: u64 = 9;
    /// Where a reservation op's `start_extent` sits in the command
    /// (`MEMOP_EXTENT_SHIFT`): `cmd >> EXTENT_SHIFT` extents are already done.
    pub const EXTENT_SHIFT: u32 = 6;
    /// The low bits of a memory_op command (`MEMOP_CMD_MASK`); the rest
    /// carry continuation state.
    pub const CMD_MASK: u64 = (1 << EXTENT_SHIFT) - 1;
    /// The largest `extent_order` an unprivileged domain may ask for
    /// (`CONFIG_DOMU_MAX_ORDER`: 9 on x86, where it is `PAGETABLE_ORDER`,
    /// and on arm).
    pub const DOMU_MAX_ORDER: u32 = 9;
}

/// `XENMEMF_*` (`memory.h`): the `mem_flags` of a `xen_memory_reservation`.
pub mod memflags {
    /// `XENMEMF_get_address_bits`: the low byte limits the frames' machine
    /// address width (0: no limit).
    pub const ADDRESS_BITS_MASK: u32 = 0xff;
    /// `XENMEMF_node(n)` stores `n + 1` in bits 8..16 (0: no node).
    pub const NODE_SHIFT: u32 = 8;
    /// The node field's mask (after the shift).
    pub const NODE_MASK: u32 = 0xff;
    /// `XENMEMF_populate_on_demand`.
    pub const POPULATE_ON_DEMAND: u32 = 1 << 16;
    /// `XENMEMF_exact_node_request`.
    pub const EXACT_NODE_REQUEST: u32 = 1 << 17;
    /// `XENMEMF_vnode`: the node is a virtual NUMA node of the domain.
    pub const VNODE: u32 = 1 << 18;
}

/// `E820_*` types of the entries `XENMEM_memory_map` returns.
pub mod e820 {
    /// `E820_RAM`.
    pub const RAM: u32 = 1;
}

/// `XENMAPSPACE_*` (`memory.h`).
pub mod mapspace {
    /// `XENMAPSPACE_shared_info`.
    pub const SHARED_INFO: u32 = 0;
    /// `XENMAPSPACE_grant_table`.
    pub const GRANT_TABLE: u32 = 1;
}

/// `XENMAPIDX_*` (`memory.h`): flags in `xen_add_to_physmap.idx`.
pub mod mapidx {
    /// `XENMAPIDX_grant_table_status`: the index names a v2 status frame.
    pub const GRANT_TABLE_STATUS: u64 = 1 << 31;
}

/// `GNTTABOP_*` (`grant_table.h`).
pub mod gnttabop {
    /// `GNTTABOP_map_grant_ref`.
    pub const MAP_GRANT_REF: u64 = 0;
    /// `GNTTABOP_unmap_grant_ref`.
    pub const UNMAP_GRANT_REF: u64 = 1;
    /// `GNTTABOP_setup_table`.
    pub const SETUP_TABLE: u64 = 2;
    /// `GNTTABOP_dump_table`.
    pub const DUMP_TABLE: u64 = 3;
    /// `GNTTABOP_transfer`.
    pub const TRANSFER: u64 = 4;
    /// `GNTTABOP_copy`.
    pub const COPY: u64 = 5;
    /// `GNTTABOP_query_size`.
    pub const QUERY_SIZE: u64 = 6;
    /// `GNTTABOP_unmap_and_replace`.
    pub const UNMAP_AND_REPLACE: u64 = 7;
    /// `GNTTABOP_set_version`.
    pub const SET_VERSION: u64 = 8;
    /// `GNTTABOP_get_status_frames`.
    pub const GET_STATUS_FRAMES: u64 = 9;
    /// `GNTTABOP_get_version`.
    pub const GET_VERSION: u64 = 10;
}

/// `GTF_*`: the flags of a v1 grant entry (`grant_table.h`).
pub mod gtf {
    /// `GTF_invalid`: the entry grants nothing.
    pub const INVALID: u16 = 0;
    /// `GTF_permit_access`: the entry grants access to `frame` to `domid`.
    pub const PERMIT_ACCESS: u16 = 1;
    /// `GTF_accept_transfer`.
    pub const ACCEPT_TRANSFER: u16 = 2;
    /// `GTF_transitive` (v2 only).
    pub const TRANSITIVE: u16 = 3;
    /// `GTF_type_mask`.
    pub const TYPE_MASK: u16 = 3;
    /// `GTF_readonly`: the grantee may only read.
    pub const READONLY: u16 = 1 << 2;
    /// `GTF_reading`: set by Xen while the grant is mapped or copied from.
    pub const READING: u16 = 1 << 3;
    /// `GTF_writing`: set by Xen while the grant is mapped writable or copied to.
    pub const WRITING: u16 = 1 << 4;
    /// `GTF_PWT`.
    pub const PWT: u16 = 1 << 5;
    /// `GTF_PCD`.
    pub const PCD: u16 = 1 << 6;
    /// `GTF_PAT`.
    pub const PAT: u16 = 1 << 7;
    /// `GTF_sub_page` (v2 only).
    pub const SUB_PAGE: u16 = 1 << 8;
}

/// `GNTMAP_*` flags of `gnttab_map_grant_ref` (`grant_table.h`).
pub mod gntmap {
    /// `GNTMAP_device_map`.
    pub const DEVICE_MAP: u32 = 1 << 0;
    /// `GNTMAP_host_map`.
    pub const HOST_MAP: u32 = 1 << 1;
    /// `GNTMAP_readonly`.
    pub const READONLY: u32 = 1 << 2;
    /// `GNTMAP_application_map`.
    pub const APPLICATION_MAP: u32 = 1 << 3;
    /// `GNTMAP_contains_pte`.
    pub const CONTAINS_PTE: u32 = 1 << 4;
}

/// `GNTCOPY_*` flags of `gnttab_copy` (`grant_table.h`).
pub mod gntcopy {
    /// `GNTCOPY_source_gref`: the source is a grant reference, not a gmfn.
    pub const SOURCE_GREF: u16 = 1 << 0;
    /// `GNTCOPY_dest_gref`: the destination is a grant reference.
    pub const DEST_GREF: u16 = 1 << 1;
}

/// `GNTST_*`: per-operation status codes of grant-table ops, returned in
/// the argument struct's `status` field (`grant_table.h`).
pub mod gnttab_status {
    /// `GNTST_okay`.
    pub const OKAY: i16 = 0;
    /// `GNTST_general_error`.
    pub const GENERAL_ERROR: i16 = -1;
    /// `GNTST_bad_domain`.
    pub const BAD_DOMAIN: i16 = -2;
    /// `GNTST_bad_gntref`.
    pub const BAD_GNTREF: i16 = -3;
    /// `GNTST_bad_handle`.
    pub const BAD_HANDLE: i16 = -4;
    /// `GNTST_bad_virt_addr`.
    pub const BAD_VIRT_ADDR: i16 = -5;
    /// `GNTST_bad_dev_addr`.
    pub const BAD_DEV_ADDR: i16 = -6;
    /// `GNTST_no_device_space`.
    pub const NO_DEVICE_SPACE: i16 = -7;
    /// `GNTST_permission_denied`.
    pub const PERMISSION_DENIED: i16 = -8;
    /// `GNTST_bad_page`.
    pub const BAD_PAGE: i16 = -9;
    /// `GNTST_bad_copy_arg`.
    pub const BAD_COPY_ARG: i16 = -10;
    /// `GNTST_address_too_big`.
    pub const ADDRESS_TOO_BIG: i16 = -11;
    /// `GNTST_eagain`.
    pub const EAGAIN: i16 = -12;
    /// `GNTST_no_space`.
    pub const NO_SPACE: i16 = -13;
}

/// Grant-table geometry (`grant_table.h`, `xen/grant_table.h`).
pub mod gnttab {
    /// Size of a `grant_entry_v1` in bytes.
    pub const ENTRY_V1_SIZE: usize = 8;
    /// `INITIAL_NR_GRANT_FRAMES`: frames a grant table starts with.
    pub const INITIAL_FRAMES: u32 = 1;
    /// Grant table versions: v1, the one Lantern implements.
    pub const VERSION_1: u32 = 1;
    /// Grant table v2 (refused).
    pub const VERSION_2: u32 = 2;
}

/// `EVTCHNOP_*` (`event_channel.h`).
pub mod evtchnop {
    /// `EVTCHNOP_bind_interdomain`.
    pub const BIND_INTERDOMAIN: u64 = 0;
    /// `EVTCHNOP_bind_virq`.
    pub const BIND_VIRQ: u64 = 1;
    /// `EVTCHNOP_close`.
    pub const CLOSE: u64 = 3;
    /// `EVTCHNOP_send`.
    pub const SEND: u64 = 4;
    /// `EVTCHNOP_status`.
    pub const STATUS: u64 = 5;
    /// `EVTCHNOP_alloc_unbound`.
    pub const ALLOC_UNBOUND: u64 = 6;
    /// `EVTCHNOP_bind_ipi`.
    pub const BIND_IPI: u64 = 7;
    /// `EVTCHNOP_bind_vcpu`.
    pub const BIND_VCPU: u64 = 8;
    /// `EVTCHNOP_unmask`.
    pub const UNMASK: u64 = 9;
    /// `EVTCHNOP_reset` (not implemented: `-ENOSYS`).
    pub const RESET: u64 = 10;
    /// `EVTCHNOP_init_control` (FIFO ABI).
    pub const INIT_CONTROL: u64 = 11;
    /// `EVTCHNOP_expand_array` (FIFO ABI).
    pub const EXPAND_ARRAY: u64 = 12;
    /// `EVTCHNOP_set_priority` (FIFO ABI).
    pub const SET_PRIORITY: u64 = 13;
    /// `EVTCHNOP_reset_cont` (not implemented: `-ENOSYS`).
    pub const RESET_CONT: u64 = 14;
}

/// `EVTCHNSTAT_*`: the `status` field of `EVTCHNOP_status`.
pub mod evtchnstat {
    /// `EVTCHNSTAT_closed`: free (or the reserved port 0).
    pub const CLOSED: u32 = 0;
    /// `EVTCHNSTAT_unbound`: waiting for a remote domain to bind.
    pub const UNBOUND: u32 = 1;
    /// `EVTCHNSTAT_interdomain`: connected to a remote port.
    pub const INTERDOMAIN: u32 = 2;
    /// `EVTCHNSTAT_pirq`: bound to a physical IRQ (never, here).
    pub const PIRQ: u32 = 3;
    /// `EVTCHNSTAT_virq`: bound to a VIRQ.
    pub const VIRQ: u32 = 4;
    /// `EVTCHNSTAT_ipi`: an IPI channel.
    pub const IPI: u32 = 5;
}

/// The FIFO event-channel ABI (`event_channel.h`, `EVTCHN_FIFO_*`).
pub mod evtchn_fifo {
    /// `EVTCHN_FIFO_PRIORITY_MAX`: the most urgent priority.
    pub const PRIORITY_MAX: u32 = 0;
    /// `EVTCHN_FIFO_PRIORITY_DEFAULT`: every port's priority when bound.
    pub const PRIORITY_DEFAULT: u32 = 7;
    /// `EVTCHN_FIFO_PRIORITY_MIN`: the least urgent priority.
    pub const PRIORITY_MIN: u32 = 15;
    /// `EVTCHN_FIFO_MAX_QUEUES`: queues (priorities) per vCPU.
    pub const MAX_QUEUES: usize = 16;
    /// `EVTCHN_FIFO_LINK_BITS`: width of an event word's link field.
    pub const LINK_BITS: u32 = 17;
    /// `EVTCHN_FIFO_LINK_MASK`.
    pub const LINK_MASK: u32 = (1 << LINK_BITS) - 1;
    /// `EVTCHN_FIFO_NR_CHANNELS`: ports the ABI can name.
    pub const NR_CHANNELS: u32 = 1 << LINK_BITS;
    /// `EVTCHN_FIFO_PENDING`: bit number in an event word.
    pub const PENDING: u32 = 31;
    /// `EVTCHN_FIFO_MASKED`.
    pub const MASKED: u32 = 30;
    /// `EVTCHN_FIFO_LINKED`.
    pub const LINKED: u32 = 29;
    /// `EVTCHN_FIFO_BUSY`.
    pub const BUSY: u32 = 28;
    /// Size of an `event_word_t`.
    pub const EVENT_WORD_SIZE: usize = 4;
    /// Size of `struct evtchn_fifo_control_block` (`ready`, `_rsvd`, `head[16]`);
    /// `public::EvtchnFifoControlBlock` asserts these three agree with it (nr
    /// is the leaf module, so they cannot be derived from the mirror).
    pub const CONTROL_BLOCK_SIZE: usize = 8 + 4 * MAX_QUEUES;
    /// Offset of `ready` in the control block.
    pub const CONTROL_BLOCK_READY: usize = 0;
    /// Offset of `head[0]` in the control block.
    pub const CONTROL_BLOCK_HEAD: usize = 8;
    /// Required alignment of the control block's offset in its page.
    pub const CONTROL_BLOCK_ALIGN: u32 = 8;
}

/// `VIRQ_*` (`xen.h`).
pub mod virq {
    /// `VIRQ_TIMER` (per vCPU).
    pub const TIMER: u32 = 0;
    /// `VIRQ_DEBUG` (per vCPU).
    pub const DEBUG: u32 = 1;
    /// `VIRQ_CONSOLE` (global).
    pub const CONSOLE: u32 = 2;
    /// `VIRQ_XENOPROF` (per vCPU).
    pub const XENOPROF: u32 = 7;
    /// `VIRQ_ARGO` (per domain).
    pub const ARGO: u32 = 11;
    /// `VIRQ_XENPMU` (per vCPU).
    pub const XENPMU: u32 = 13;
    /// `NR_VIRQS`.
    pub const NR_VIRQS: u32 = 24;
}

/// `XENVER_*` (`version.h`).
pub mod xenver {
    /// `XENVER_version`: returns `major << 16 | minor`.
    pub const VERSION: u64 = 0;
    /// Where the major number sits in `XENVER_version`'s result (and in
    /// eax of the x86 CPUID version leaf): bits 31:16, the minor below.
    pub const VERSION_MAJOR_SHIFT: u32 = 16;
    /// `XENVER_extraversion`.
    pub const EXTRAVERSION: u64 = 1;
    /// `XENVER_compile_info`.
    pub const COMPILE_INFO: u64 = 2;
    /// `XENVER_capabilities`.
    pub const CAPABILITIES: u64 = 3;
    /// `XENVER_changeset`.
    pub const CHANGESET: u64 = 4;
    /// `XENVER_platform_parameters`.
    pub const PLATFORM_PARAMETERS: u64 = 5;
    /// `XENVER_get_features`.
    pub const GET_FEATURES: u64 = 6;
    /// `XENVER_pagesize`.
    pub const PAGESIZE: u64 = 7;
    /// `XENVER_guest_handle`.
    pub const GUEST_HANDLE: u64 = 8;
    /// `XENVER_commandline`.
    pub const COMMANDLINE: u64 = 9;
    /// `XEN_EXTRAVERSION_LEN`, `xen_extraversion_t`'s size.
    pub const EXTRAVERSION_LEN: usize = 16;
    /// `XEN_CHANGESET_INFO_LEN`.
    pub const CHANGESET_LEN: usize = 64;
    /// `XEN_CAPABILITIES_INFO_LEN`.
    pub const CAPABILITIES_LEN: usize = 1024;
    /// `XEN_COMMANDLINE_LEN`.
    pub const COMMANDLINE_LEN: usize = 1024;
    /// `XEN_GUEST_HANDLE` buffer size (`xen_domain_handle_t`).
    pub const GUEST_HANDLE_LEN: usize = 16;
    /// Field sizes of `struct xen_compile_info`: compiler, compile_by,
    /// compile_domain, compile_date.
    pub const COMPILE_INFO_FIELDS: [usize; 4] = [64, 16, 32, 32];

    /// The Xen interface version Lantern follows (major).
    pub const LANTERN_MAJOR: u32 = 4;
    /// The Xen interface version Lantern follows (minor).
    pub const LANTERN_MINOR: u32 = 19;
}

/// `XENFEAT_*` bit numbers (`features.h`).
pub mod xenfeat {
    /// `XENFEAT_writable_page_tables`.
    pub const WRITABLE_PAGE_TABLES: u32 = 0;
    /// `XENFEAT_writable_descriptor_tables`.
    pub const WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
    /// `XENFEAT_auto_translated_physmap`.
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    /// `XENFEAT_supervisor_mode_kernel`.
    pub const SUPERVISOR_MODE_KERNEL: u32 = 3;
    /// `XENFEAT_pae_pgdir_above_4gb`.
    pub const PAE_PGDIR_ABOVE_4GB: u32 = 4;
    /// `XENFEAT_mmu_pt_update_preserve_ad`.
    pub const MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
    /// `XENFEAT_highmem_assist`.
    pub const HIGHMEM_ASSIST: u32 = 6;
    /// `XENFEAT_gnttab_map_avail_bits`.
    pub const GNTTAB_MAP_AVAIL_BITS: u32 = 7;
    /// `XENFEAT_hvm_callback_vector`.
    pub const HVM_CALLBACK_VECTOR: u32 = 8;
    /// `XENFEAT_hvm_safe_pvclock`.
    pub const HVM_SAFE_PVCLOCK: u32 = 9;
    /// `XENFEAT_hvm_pirqs`.
    pub const HVM_PIRQS: u32 = 10;
    /// `XENFEAT_dom0`.
    pub const DOM0: u32 = 11;
    /// `XENFEAT_grant_map_identity`.
    pub const GRANT_MAP_IDENTITY: u32 = 12;
    /// `XENFEAT_memory_op_vnode_supported`.
    pub const MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
    /// `XENFEAT_ARM_SMCCC_supported`.
    pub const ARM_SMCCC_SUPPORTED: u32 = 14;
    /// `XENFEAT_linux_rsdp_unrestricted`.
    pub const LINUX_RSDP_UNRESTRICTED: u32 = 15;
    /// `XENFEAT_not_direct_mapped`.
    pub const NOT_DIRECT_MAPPED: u32 = 16;
    /// `XENFEAT_direct_mapped`.
    pub const DIRECT_MAPPED: u32 = 17;
    /// `XENFEAT_runstate_phys_area`.
    pub const RUNSTATE_PHYS_AREA: u32 = 18;
    /// `XENFEAT_vcpu_time_phys_area`.
    pub const VCPU_TIME_PHYS_AREA: u32 = 19;
    /// `XENFEAT_dm_msix_all_writes`.
    pub const DM_MSIX_ALL_WRITES: u32 = 20;
    /// `XENFEAT_NR_SUBMAPS`: submap indices from this one up are `-EINVAL`.
    pub const NR_SUBMAPS: u32 = 1;

    /// The feature word with each of `bits` set.
    pub const fn word(bits: &[u32]) -> u32 {
        let mut w = 0;
        let mut i = 0;
        while i < bits.len() {
            w |= 1 << bits[i];
            i += 1;
        }
        w
    }
}

/// `CONSOLEIO_*` (`xen.h`).
pub mod consoleio {
    /// `CONSOLEIO_write`.
    pub const WRITE: u64 = 0;
    /// `CONSOLEIO_read`.
    pub const READ: u64 = 1;
}

/// The PV console ring page (`io/console.h`, `struct xencons_interface`).
pub mod xencons {
    /// Bytes in the input ring `in[]` (backend to guest).
    pub const IN_RING_SIZE: usize = 1024;
    /// Bytes in the output ring `out[]` (guest to backend).
    pub const OUT_RING_SIZE: usize = 2048;
}

/// `RUNSTATE_*` and the update flag (`vcpu.h`).
pub mod runstate {
    /// `RUNSTATE_running`.
    pub const RUNNING: u32 = 0;
    /// `RUNSTATE_runnable`.
    pub const RUNNABLE: u32 = 1;
    /// `RUNSTATE_blocked`.
    pub const BLOCKED: u32 = 2;
    /// `RUNSTATE_offline`.
    pub const OFFLINE: u32 = 3;
    /// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while the area is
    /// rewritten.
    pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

    /// Xen's name of a runstate.
    pub fn name(state: u32) -> &'static str {
        match state {
            RUNNING => "running",
            RUNNABLE => "runnable",
            BLOCKED => "blocked",
            OFFLINE => "offline",
            _ => "unknown",
        }
    }
}

/// `vcpu_time_info.flags` bits (`xen.h`).
pub mod pvclock {
    /// `XEN_PVCLOCK_TSC_STABLE_BIT`: the TSC is stable across vCPUs.
    pub const TSC_STABLE_BIT: u8 = 1 << 0;
}

/// `VMASST_*` (`xen.h`): the `vm_assist` commands and the assist types.
pub mod vmasst {
    /// `VMASST_CMD_enable`.
    pub const CMD_ENABLE: u64 = 0;
    /// `VMASST_CMD_disable`.
    pub const CMD_DISABLE: u64 = 1;
    /// `VMASST_TYPE_4gb_segments` (PV only).
    pub const TYPE_4GB_SEGMENTS: u32 = 0;
    /// `VMASST_TYPE_4gb_segments_notify` (PV only).
    pub const TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
    /// `VMASST_TYPE_writable_pagetables` (PV only).
    pub const TYPE_WRITABLE_PAGETABLES: u32 = 2;
    /// `VMASST_TYPE_pae_extended_cr3` (PV only).
    pub const TYPE_PAE_EXTENDED_CR3: u32 = 3;
    /// `VMASST_TYPE_architectural_iopl` (PV only).
    pub const TYPE_ARCHITECTURAL_IOPL: u32 = 4;
    /// `VMASST_TYPE_runstate_update_flag`: runstate updates through a
    /// guest-virtual registration set `XEN_RUNSTATE_UPDATE` around the write.
    pub const TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
    /// `VMASST_TYPE_m2p_strict` (64-bit PV only).
    pub const TYPE_M2P_STRICT: u32 = 32;
}

/// `domid_t` values (`xen.h`).
pub mod domid {
    /// `DOMID_SELF`: a hypercall argument meaning "the calling domain".
    pub const SELF: u16 = 0x7FF0;
    /// `DOMID_IO`: the pseudo-domain of I/O memory (refused to a guest).
    pub const IO: u16 = 0x7FF1;
    /// `DOMID_XEN`: the hypervisor's own pseudo-domain.
    pub const XEN: u16 = 0x7FF2;
    /// `DOMID_COW`: the copy-on-write pseudo-domain of memory sharing.
    pub const COW: u16 = 0x7FF3;
    /// `DOMID_INVALID`: no domain.
    pub const INVALID: u16 = 0x7FF4;
    /// `DOMID_IDLE`: the idle domain.
    pub const IDLE: u16 = 0x7FFF;
}

/// ELF notes (`elfnote.h`).
pub mod elfnote {
    /// `XEN_ELFNOTE_PHYS32_ENTRY`: the PVH 32-bit entry point.
    pub const PHYS32_ENTRY: u32 = 18;
    /// The owner name of Xen's ELF notes.
    pub const OWNER: &str = "Xen";
}
