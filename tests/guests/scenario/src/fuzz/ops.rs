//! Single random hypercalls: a number (every one Lantern implements, by
//! weight, and unknown ones), a sub-op (every one it implements and unknown
//! ones) and arguments built for that sub-op (see the parent module for the
//! shapes and the calls it never makes).

use xen_abi::nr::{
    consoleio, evtchnop, gnttabop, hvm_param, hvmop, hypercall as nr, mapspace, memop, schedop, vcpuop, vmasst, xenver,
};
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq, EvtchnExpandArray,
    EvtchnInitControl, EvtchnPort, EvtchnSetPriority, EvtchnStatus, GnttabCopy, GnttabCopyPtr, GnttabCopyPtrUlong32,
    GnttabCopyUlong32, GnttabGetVersion, GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable,
    GnttabSetupTableHandle32, GnttabUnmapGrantRef, SchedPoll, SchedPollHandle32, SchedShutdown, VcpuRegisterArea,
    VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, VcpuSetSingleshotTimerAlign4, XenAddToPhysmap,
    XenAddToPhysmapUlong32, XenFeatureInfo, XenHvmEvtchnUpcallVector, XenHvmParam, XenMemoryMap, XenMemoryMapCompat,
    XenMemoryReservation, XenMemoryReservationCompat,
};
use zerocopy::IntoBytes;

use super::{Fuzzer, PtrClass, GRANT_REFS};
use crate::PAGE_SIZE;

/// The hypercalls, by weight (unknown numbers are drawn in [`unknown`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Vcpu,
    Memory,
    Evtchn,
    Grant,
    Hvm,
    Version,
    Console,
    Sched,
    VmAssist,
    SetTimer,
    Unknown,
}

const CALLS: &[(u32, Call)] = &[
    (18, Call::Vcpu),
    (14, Call::Memory),
    (18, Call::Evtchn),
    (14, Call::Grant),
    (7, Call::Hvm),
    (6, Call::Version),
    (3, Call::Console),
    (6, Call::Sched),
    (3, Call::VmAssist),
    (4, Call::SetTimer),
    (7, Call::Unknown),
];

/// One random call.
pub(super) fn one(f: &mut Fuzzer<'_>) {
    match f.rng.weighted(CALLS) {
        Call::Vcpu => vcpu_op(f),
        Call::Memory => memory_op(f),
        Call::Evtchn => evtchn_op(f),
        Call::Grant => grant_op(f),
        Call::Hvm => hvm_op(f),
        Call::Version => xen_version(f),
        Call::Console => console_io(f),
        Call::Sched => sched_op(f),
        Call::VmAssist => vm_assist(f),
        Call::SetTimer => set_timer(f),
        Call::Unknown => unknown(f),
    }
}

/// A sub-op: one of `known` (85 %), else one nobody implements, or a known
/// one with bits set above the 32 a sub-op has. In the compat layout the
/// register is 32 bits, so the high bits never reach the hypervisor: the
/// sub-op is what it sees (else a "junk" vCPU op the fuzzer builds no safe
/// arguments for would arrive as, say, `VCPUOP_down` of vCPU 0).
fn sub_op(f: &mut Fuzzer<'_>, known: &[u64]) -> u64 {
    let cmd = match f.rng.below(100) {
        0..=84 => f.rng.pick(known),
        85..=94 => f.rng.pick(&[known.len() as u64 + 20, 31, 63, 64, 255, 0xffff, u32::MAX as u64, u64::MAX]),
        _ => f.rng.pick(known) | (f.rng.bits() << 32),
    };
    if f.narrow() {
        cmd & 0xFFFF_FFFF
    } else {
        cmd
    }
}

/// A random call number nobody implements (or one Xen has that Lantern
/// does not: the PV-only and platform ones), with random arguments.
fn unknown(f: &mut Fuzzer<'_>) {
    let implemented = [
        nr::VCPU_OP,
        nr::MEMORY_OP,
        nr::EVENT_CHANNEL_OP,
        nr::GRANT_TABLE_OP,
        nr::HVM_OP,
        nr::XEN_VERSION,
        nr::CONSOLE_IO,
        nr::SCHED_OP,
        nr::VM_ASSIST,
        nr::SET_TIMER_OP,
    ];
    let mut n = match f.rng.below(10) {
        0..=6 => f.rng.below(64),
        7 => f.rng.pick(&[64, 65, 127, 128, 255, 256, 0xffff, 0x1_0000]),
        8 => u32::MAX as u64 - f.rng.below(4),
        _ => f.rng.bits(),
    };
    if f.narrow() {
        n &= 0xFFFF_FFFF;
    }
    if implemented.contains(&n) {
        n = 0xfffe;
    }
    let args = [f.u64_edge(), f.u64_edge(), f.u64_edge(), f.u64_edge(), f.u64_edge()];
    f.call(n, args);
}

// ---- vcpu_op -----------------------------------------------------------

fn vcpu_op(f: &mut Fuzzer<'_>) {
    let cmd = sub_op(
        f,
        &[
            vcpuop::INITIALISE,
            vcpuop::UP,
            vcpuop::DOWN,
            vcpuop::IS_UP,
            vcpuop::GET_RUNSTATE_INFO,
            vcpuop::REGISTER_RUNSTATE_MEMORY_AREA,
            vcpuop::SET_PERIODIC_TIMER,
            vcpuop::STOP_PERIODIC_TIMER,
            vcpuop::SET_SINGLESHOT_TIMER,
            vcpuop::STOP_SINGLESHOT_TIMER,
            vcpuop::REGISTER_VCPU_INFO,
            vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA,
            vcpuop::REGISTER_RUNSTATE_PHYS_AREA,
            vcpuop::REGISTER_VCPU_TIME_PHYS_AREA,
        ],
    );
    let mut vcpu = f.vcpu();
    let arg = match cmd {
        vcpuop::INITIALISE => {
            // A readable random context only for a vCPU the domain does
            // not have; vCPU 1 is started with a real one (sequences).
            if vcpu < 2 {
                let class = f.rng.pick(&[PtrClass::Null, PtrClass::Unmapped, PtrClass::Mmio, PtrClass::Hypervisor]);
                f.ptr_of(class, 64).addr
            } else {
                let mut ctx = [0u8; 256];
                f.mutate(&mut ctx);
                f.place(&ctx)
            }
        }
        // Never vCPU 0 (it is us; nobody would bring it up again).
        vcpuop::DOWN => {
            vcpu = vcpu.max(1);
            0
        }
        vcpuop::UP | vcpuop::IS_UP | vcpuop::STOP_PERIODIC_TIMER | vcpuop::STOP_SINGLESHOT_TIMER => f.u64_edge(),
        vcpuop::GET_RUNSTATE_INFO => f.out(48),
        vcpuop::REGISTER_VCPU_INFO => {
            let addr = f.frame_addr(64);
            let mut offset = (addr % PAGE_SIZE) as u32;
            if f.rng.chance(10) {
                offset = f.u32_edge();
            }
            let a = VcpuRegisterVcpuInfo { mfn: addr / PAGE_SIZE, offset, rsvd: if f.rng.chance(5) { 1 } else { 0 } };
            f.place(a.as_bytes())
        }
        vcpuop::REGISTER_RUNSTATE_MEMORY_AREA
        | vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA
        | vcpuop::REGISTER_RUNSTATE_PHYS_AREA
        | vcpuop::REGISTER_VCPU_TIME_PHYS_AREA => {
            let addr = if f.rng.chance(10) { f.no_area(cmd) } else { f.frame_addr(48) };
            f.place(VcpuRegisterArea { addr }.as_bytes())
        }
        vcpuop::SET_PERIODIC_TIMER => {
            let period_ns = f.timer_value();
            f.place(VcpuSetPeriodicTimer { period_ns }.as_bytes())
        }
        vcpuop::SET_SINGLESHOT_TIMER => {
            let timeout_abs_ns = f.timer_value();
            let flags = if f.rng.chance(70) { f.rng.below(2) as u32 } else { f.u32_edge() };
            if f.narrow() {
                f.place(VcpuSetSingleshotTimerAlign4 { timeout_abs_ns, flags }.as_bytes())
            } else {
                f.place(VcpuSetSingleshotTimer { timeout_abs_ns, flags, pad: 0 }.as_bytes())
            }
        }
        _ => {
            let p = f.ptr(32);
            let mut junk = [0u8; 32];
            f.mutate(&mut junk);
            f.write_at(p, &junk);
            p.addr
        }
    };
    let extra = f.rng.bits() & 0xff;
    f.call(nr::VCPU_OP, [cmd, vcpu as u64, arg, extra, 0]);
}

// ---- memory_op ---------------------------------------------------------

fn memory_op(f: &mut Fuzzer<'_>) {
    let mut cmd = sub_op(
        f,
        &[
            memop::INCREASE_RESERVATION,
            memop::DECREASE_RESERVATION,
            memop::MAXIMUM_RAM_PAGE,
            memop::CURRENT_RESERVATION,
            memop::MAXIMUM_RESERVATION,
            memop::POPULATE_PHYSMAP,
            memop::ADD_TO_PHYSMAP,
            memop::MEMORY_MAP,
        ],
    );
    let arg = match cmd & memop::CMD_MASK {
        memop::INCREASE_RESERVATION | memop::DECREASE_RESERVATION | memop::POPULATE_PHYSMAP => {
            // The start extent is the command's high bits (a continuation):
            // small ones now and then, and the unknown-op draw's huge ones.
            if f.rng.chance(10) {
                cmd |= f.rng.below(8) << memop::EXTENT_SHIFT;
            }
            reservation(f)
        }
        memop::CURRENT_RESERVATION | memop::MAXIMUM_RESERVATION => {
            let d = f.domid();
            f.place(d.as_bytes())
        }
        memop::ADD_TO_PHYSMAP => add_to_physmap(f),
        memop::MAXIMUM_RAM_PAGE => f.u64_edge(),
        memop::MEMORY_MAP => {
            let nr_entries = f.count_small() as u32;
            let buffer = f.out(20 * nr_entries.clamp(1, 8) as usize);
            if f.narrow() {
                f.place(XenMemoryMapCompat { nr_entries, buffer: buffer as u32 }.as_bytes())
            } else {
                f.place(XenMemoryMap { nr_entries, pad: 0, buffer }.as_bytes())
            }
        }
        // An unknown op: an argument nothing of ours is at (whatever it
        // is read as, no frame of ours can be named by it).
        _ => {
            let class = f.rng.pick(&[PtrClass::Unmapped, PtrClass::Mmio, PtrClass::OtherDomain, PtrClass::Hypervisor]);
            f.ptr_of(class, 32).addr
        }
    };
    f.call(nr::MEMORY_OP, [cmd, arg, 0, 0, 0]);
}

/// A `xen_memory_reservation` whose extent list names [`Fuzzer::gfn`]s.
/// The list is the one argument whose stale or misread bytes could name
/// any frame of ours (decrease_reservation would take our code away), so
/// it is written last, whole, and where the hypervisor reads past it
/// there is only more of it and then the hole: at the end of the argument
/// pages (its tail running into the hole), across their page boundary, or
/// at an address nothing of ours is at.
fn reservation(f: &mut Fuzzer<'_>) -> u64 {
    let w = f.layout.xen_ulong_size as u64;
    let n = f.rng.below(5);
    let extent_order = if f.rng.chance(85) { 0 } else { f.u32_edge() };
    let (base, len) = f.args_span();
    let end = base + len;
    // The region the list fills: its start, how many entries it holds.
    let (region, room) = match f.rng.below(10) {
        0..=5 => (end - 64, 64 / w),
        6 | 7 => {
            // Only the first entries before the hole.
            let k = f.rng.below(n + 1);
            (end - k * w, k)
        }
        _ => (base + PAGE_SIZE - 2 * w, 4),
    };
    let start = match f.rng.below(20) {
        0 => f.null_read(),
        1 => f.ptr_of(PtrClass::Unmapped, 8).addr & !7,
        2 => f.ptr_of(PtrClass::Hypervisor, 8).addr & !7,
        _ => region,
    };
    // Past the end region's entries is the hole, so any count is safe
    // there; elsewhere the count stays within the entries written.
    let at_end = region + room * w == end;
    let nr_extents = match f.rng.below(10) {
        0 if at_end => f.u64_edge(),
        _ if at_end => n,
        _ => n.min(room),
    };
    let mem_flags = if f.rng.chance(85) { 0 } else { f.u32_edge() };
    let domid = if f.rng.chance(80) { xen_abi::nr::domid::SELF } else { f.domid() };
    let mut bytes = [0u8; 40];
    let size = if f.narrow() {
        let r = XenMemoryReservationCompat {
            extent_start: start as u32,
            nr_extents: nr_extents as u32,
            extent_order,
            mem_flags,
            domid,
            pad: 0,
        };
        bytes[..r.as_bytes().len()].copy_from_slice(r.as_bytes());
        r.as_bytes().len()
    } else {
        let r = XenMemoryReservation { extent_start: start, nr_extents, extent_order, mem_flags, domid, pad: [0; 6] };
        bytes[..r.as_bytes().len()].copy_from_slice(r.as_bytes());
        r.as_bytes().len()
    };
    let mut arg = f.place(&bytes[..size]);
    // The list, last and whole.
    let mut list = [0u8; 64];
    for i in 0..room.min(64 / w) as usize {
        let gfn = f.extent_gfn(extent_order);
        list[i * w as usize..(i + 1) * w as usize].copy_from_slice(&gfn.to_le_bytes()[..w as usize]);
    }
    let len = room * w;
    f.g.write(region, &list[..len as usize]);
    // A struct the list overwrote would carry an order its frame numbers
    // were not drawn for: it moves to the first half of the first argument
    // page, which no list region reaches.
    if arg < region + len && region < arg.wrapping_add(size as u64) {
        arg = base + f.rng.below(PAGE_SIZE / 2 / 8) * 8;
        f.g.write(arg, &bytes[..size]);
    }
    arg
}

/// A `xen_add_to_physmap`: shared_info or a grant frame (or an unknown
/// space) at one of [`Fuzzer::gfn`].
fn add_to_physmap(f: &mut Fuzzer<'_>) -> u64 {
    let space = match f.rng.below(10) {
        0..=4 => mapspace::SHARED_INFO,
        5..=8 => mapspace::GRANT_TABLE,
        _ => f.u32_edge(),
    };
    let idx = match f.rng.below(10) {
        0..=6 => f.rng.below(3),
        7 => xen_abi::nr::mapidx::GRANT_TABLE_STATUS | f.rng.below(2),
        _ => f.u64_edge(),
    };
    let gpfn = f.gfn();
    let domid = if f.rng.chance(80) { xen_abi::nr::domid::SELF } else { f.domid() };
    let size = if f.rng.chance(90) { 0 } else { f.u32_edge() as u16 };
    if f.narrow() {
        f.place(XenAddToPhysmapUlong32 { domid, size, space, idx: idx as u32, gpfn: gpfn as u32 }.as_bytes())
    } else {
        f.place(XenAddToPhysmap { domid, size, space, idx, gpfn }.as_bytes())
    }
}

// ---- event_channel_op --------------------------------------------------

fn evtchn_op(f: &mut Fuzzer<'_>) {
    let cmd = sub_op(
        f,
        &[
            evtchnop::BIND_INTERDOMAIN,
            evtchnop::BIND_VIRQ,
            evtchnop::CLOSE,
            evtchnop::SEND,
            evtchnop::STATUS,
            evtchnop::ALLOC_UNBOUND,
            evtchnop::BIND_IPI,
            evtchnop::BIND_VCPU,
            evtchnop::UNMASK,
            evtchnop::RESET,
            evtchnop::INIT_CONTROL,
            evtchnop::EXPAND_ARRAY,
            evtchnop::SET_PRIORITY,
            evtchnop::RESET_CONT,
        ],
    );
    let arg = evtchn_arg(f, cmd);
    if let Some(rc) = f.call(nr::EVENT_CHANNEL_OP, [cmd, arg, 0, 0, 0]) {
        f.note_port(cmd, arg, rc);
    }
}

/// The argument of `EVTCHNOP_<cmd>`, placed.
pub(super) fn evtchn_arg(f: &mut Fuzzer<'_>, cmd: u64) -> u64 {
    match cmd {
        evtchnop::BIND_INTERDOMAIN => {
            let a = EvtchnBindInterdomain { remote_dom: f.domid(), pad: 0, remote_port: f.port(), local_port: 0 };
            f.place(a.as_bytes())
        }
        evtchnop::BIND_VIRQ => {
            let virq = if f.rng.chance(80) { f.rng.below(26) as u32 } else { f.u32_edge() };
            let a = EvtchnBindVirq { virq, vcpu: f.vcpu(), port: 0 };
            f.place(a.as_bytes())
        }
        evtchnop::CLOSE | evtchnop::SEND | evtchnop::UNMASK => {
            let port = f.port();
            f.place(EvtchnPort { port }.as_bytes())
        }
        evtchnop::STATUS => {
            let a = EvtchnStatus { dom: f.domid(), pad: 0, port: f.port(), status: 0, vcpu: 0, u0: 0, u1: 0 };
            let mut b = [0u8; 24];
            b[..a.as_bytes().len()].copy_from_slice(a.as_bytes());
            f.place(&b[..a.as_bytes().len()])
        }
        evtchnop::ALLOC_UNBOUND => {
            let dom = if f.rng.chance(70) { xen_abi::nr::domid::SELF } else { f.domid() };
            let a = EvtchnAllocUnbound { dom, remote_dom: f.domid(), port: 0 };
            f.place(a.as_bytes())
        }
        evtchnop::BIND_IPI => {
            let a = EvtchnBindIpi { vcpu: f.vcpu(), port: 0 };
            f.place(a.as_bytes())
        }
        evtchnop::BIND_VCPU => {
            let a = EvtchnBindVcpu { port: f.port(), vcpu: f.vcpu() };
            f.place(a.as_bytes())
        }
        evtchnop::RESET | evtchnop::RESET_CONT => {
            // Only ever of another domain (ours would close the ports the
            // fuzzer tracks, which is fine, but also ones it never bound).
            let d = f.peer();
            f.place(d.as_bytes())
        }
        evtchnop::INIT_CONTROL => {
            let addr = f.frame_addr(72);
            let link_bits = if f.rng.chance(80) { 17 } else { f.u32_edge() as u8 };
            let a = EvtchnInitControl {
                control_gfn: addr / PAGE_SIZE,
                offset: if f.rng.chance(80) { (addr % PAGE_SIZE) as u32 } else { f.u32_edge() },
                vcpu: f.vcpu(),
                link_bits,
                pad: [0; 7],
            };
            f.place(a.as_bytes())
        }
        evtchnop::EXPAND_ARRAY => {
            let array_gfn = f.gfn();
            f.place(EvtchnExpandArray { array_gfn }.as_bytes())
        }
        evtchnop::SET_PRIORITY => {
            let priority = if f.rng.chance(80) { f.rng.below(17) as u32 } else { f.u32_edge() };
            let a = EvtchnSetPriority { port: f.port(), priority };
            f.place(a.as_bytes())
        }
        _ => {
            let mut junk = [0u8; 24];
            f.mutate(&mut junk);
            f.place(&junk)
        }
    }
}

// ---- grant_table_op ----------------------------------------------------

fn grant_op(f: &mut Fuzzer<'_>) {
    let cmd = sub_op(
        f,
        &[
            gnttabop::MAP_GRANT_REF,
            gnttabop::UNMAP_GRANT_REF,
            gnttabop::SETUP_TABLE,
            gnttabop::DUMP_TABLE,
            gnttabop::TRANSFER,
            gnttabop::COPY,
            gnttabop::QUERY_SIZE,
            gnttabop::UNMAP_AND_REPLACE,
            gnttabop::SET_VERSION,
            gnttabop::GET_STATUS_FRAMES,
            gnttabop::GET_VERSION,
        ],
    );
    let count = match f.rng.below(10) {
        0..=7 => 1,
        8 => f.rng.below(4),
        _ => f.u32_edge() as u64,
    };
    // More than one element: the first ends the argument pages, so those
    // after it are unreadable (see `Fuzzer::array_tail`).
    f.array_tail = count != 1;
    let uop = match cmd {
        gnttabop::MAP_GRANT_REF => {
            let a = map_ref(f);
            f.place(a.as_bytes())
        }
        gnttabop::UNMAP_GRANT_REF => {
            let (handle, host_addr) = match f.handles.pick(&mut f.rng) {
                Some(h) if f.rng.chance(70) => h,
                _ => (f.u32_edge(), f.frame_addr(PAGE_SIZE)),
            };
            let a = GnttabUnmapGrantRef { host_addr, dev_bus_addr: 0, handle, status: 0, pad: 0 };
            f.place(a.as_bytes())
        }
        gnttabop::SETUP_TABLE => {
            let nr_frames = f.count_small() as u32;
            let list = f.out(8 * nr_frames.clamp(1, 4) as usize);
            let dom = if f.rng.chance(70) { xen_abi::nr::domid::SELF } else { f.domid() };
            if f.narrow() {
                let a =
                    GnttabSetupTableHandle32 { dom, pad0: 0, nr_frames, status: 0, pad1: 0, frame_list: list as u32 };
                f.place(a.as_bytes())
            } else {
                let a = GnttabSetupTable { dom, pad0: 0, nr_frames, status: 0, pad1: [0; 6], frame_list: list };
                f.place(a.as_bytes())
            }
        }
        gnttabop::COPY => copy_op(f),
        gnttabop::QUERY_SIZE => {
            let a = GnttabQuerySize { dom: f.domid(), pad0: 0, nr_frames: 0, max_nr_frames: 0, status: 0, pad1: 0 };
            f.place(a.as_bytes())
        }
        gnttabop::SET_VERSION => {
            let version = if f.rng.chance(80) { f.rng.below(4) as u32 } else { f.u32_edge() };
            f.place(GnttabSetVersion { version }.as_bytes())
        }
        gnttabop::GET_VERSION => {
            let a = GnttabGetVersion { dom: f.domid(), pad: 0, version: 0 };
            f.place(a.as_bytes())
        }
        _ => {
            let mut junk = [0u8; 32];
            f.mutate(&mut junk);
            f.place(&junk)
        }
    };
    f.array_tail = false;
    if let Some(rc) = f.call(nr::GRANT_TABLE_OP, [cmd, uop, count, 0, 0]) {
        if cmd == gnttabop::MAP_GRANT_REF && rc == 0 {
            f.note_handle(uop);
        }
    }
}

/// A `gnttab_map_grant_ref` of one of our own grant references or a
/// peer's, at a frame the fuzzer may give away.
pub(super) fn map_ref(f: &mut Fuzzer<'_>) -> GnttabMapGrantRef {
    use xen_abi::nr::gntmap;
    let flags = match f.rng.below(10) {
        0..=5 => gntmap::HOST_MAP,
        6..=7 => gntmap::HOST_MAP | gntmap::READONLY,
        8 => f.rng.pick(&[0, gntmap::DEVICE_MAP, gntmap::CONTAINS_PTE | gntmap::HOST_MAP, gntmap::APPLICATION_MAP]),
        _ => f.u32_edge(),
    };
    let dom = if f.rng.chance(50) { xen_abi::nr::domid::SELF } else { f.domid() };
    let r#ref = if f.rng.chance(85) { f.rng.below(GRANT_REFS as u64) as u32 } else { f.u32_edge() };
    // Any frame of [`Fuzzer::gfn`], the grant table's included: a mapping
    // replaces the frame, writing nothing into it.
    let host_addr = f.gfn().wrapping_mul(PAGE_SIZE);
    GnttabMapGrantRef { host_addr, flags, r#ref, dom, status: 0, handle: 0, dev_bus_addr: 0 }
}

/// A `gnttab_copy` between a grant reference and a frame of ours.
fn copy_op(f: &mut Fuzzer<'_>) -> u64 {
    use xen_abi::nr::gntcopy;
    let flags = match f.rng.below(10) {
        0..=7 => f.rng.below(4) as u16,
        _ => f.u32_edge() as u16,
    };
    let end = |f: &mut Fuzzer<'_>, gref: bool, dest: bool| -> (u64, u16, u16) {
        let u = match (gref, dest) {
            (true, _) => f.rng.below(GRANT_REFS as u64 + 2),
            (false, true) => f.written_gfn(),
            (false, false) => f.gfn(),
        };
        let domid = if f.rng.chance(60) { xen_abi::nr::domid::SELF } else { f.domid() };
        let offset = if f.rng.chance(80) { f.rng.below(PAGE_SIZE / 8) as u16 * 8 } else { f.u32_edge() as u16 };
        (u, domid, offset)
    };
    let s = end(f, flags & gntcopy::SOURCE_GREF != 0, false);
    let d = end(f, flags & gntcopy::DEST_GREF != 0, true);
    let len = if f.rng.chance(80) { f.rng.below(PAGE_SIZE + 1) as u16 } else { f.u32_edge() as u16 };
    if f.narrow() {
        let a = GnttabCopyUlong32 {
            source: GnttabCopyPtrUlong32 { u: s.0 as u32, domid: s.1, offset: s.2 },
            dest: GnttabCopyPtrUlong32 { u: d.0 as u32, domid: d.1, offset: d.2 },
            len,
            flags,
            status: 0,
            pad: [0; 2],
        };
        f.place(a.as_bytes())
    } else {
        let a = GnttabCopy {
            source: GnttabCopyPtr { u: s.0, domid: s.1, offset: s.2, pad: 0 },
            dest: GnttabCopyPtr { u: d.0, domid: d.1, offset: d.2, pad: 0 },
            len,
            flags,
            status: 0,
            pad: [0; 2],
        };
        f.place(a.as_bytes())
    }
}

// ---- the rest ----------------------------------------------------------

fn hvm_op(f: &mut Fuzzer<'_>) {
    let cmd = sub_op(f, &[hvmop::SET_PARAM, hvmop::GET_PARAM, hvmop::SET_EVTCHN_UPCALL_VECTOR]);
    let arg = match cmd {
        hvmop::SET_PARAM | hvmop::GET_PARAM => {
            let index =
                if f.rng.chance(85) { f.rng.below(hvm_param::NR_PARAMS as u64 + 2) as u32 } else { f.u32_edge() };
            let value = if index == hvm_param::CALLBACK_IRQ && f.rng.chance(50) {
                // A vector callback (never taken: upcalls stay off).
                (hvm_param::CALLBACK_TYPE_VECTOR << hvm_param::CALLBACK_TYPE_SHIFT) | f.rng.below(256)
            } else {
                f.u64_edge()
            };
            let domid = if f.rng.chance(70) { xen_abi::nr::domid::SELF } else { f.domid() };
            f.place(XenHvmParam { domid, pad: 0, index, value }.as_bytes())
        }
        hvmop::SET_EVTCHN_UPCALL_VECTOR => {
            let a = XenHvmEvtchnUpcallVector { vcpu: f.vcpu(), vector: f.rng.bits() as u8, pad: [0; 3] };
            f.place(a.as_bytes())
        }
        _ => f.u64_edge(),
    };
    f.call(nr::HVM_OP, [cmd, arg, 0, 0, 0]);
}

fn xen_version(f: &mut Fuzzer<'_>) {
    let cmd = sub_op(
        f,
        &[
            xenver::VERSION,
            xenver::EXTRAVERSION,
            xenver::COMPILE_INFO,
            xenver::CAPABILITIES,
            xenver::CHANGESET,
            xenver::PLATFORM_PARAMETERS,
            xenver::GET_FEATURES,
            xenver::PAGESIZE,
            xenver::GUEST_HANDLE,
            xenver::COMMANDLINE,
        ],
    );
    let arg = match cmd {
        xenver::GET_FEATURES => {
            let submap_idx = if f.rng.chance(80) { f.rng.below(2) as u32 } else { f.u32_edge() };
            f.place(XenFeatureInfo { submap_idx, submap: 0 }.as_bytes())
        }
        xenver::CAPABILITIES | xenver::COMMANDLINE => f.out(xenver::CAPABILITIES_LEN),
        xenver::COMPILE_INFO => f.out(xenver::COMPILE_INFO_FIELDS.iter().sum()),
        xenver::CHANGESET => f.out(xenver::CHANGESET_LEN),
        _ => f.out(xenver::GUEST_HANDLE_LEN),
    };
    f.call(nr::XEN_VERSION, [cmd, arg, 0, 0, 0]);
}

fn console_io(f: &mut Fuzzer<'_>) {
    let cmd = sub_op(f, &[consoleio::WRITE, consoleio::READ]);
    // Writes are short or empty so the console stays readable: a valid
    // buffer of no bytes, or any length at an address nothing of
    // ours is at (refused; a readable buffer would be printed whole).
    let (len, buf) = match f.rng.below(10) {
        // Nothing to print (the `fuzz:` line is the valid write).
        0..=4 => (0, f.ptr_of(PtrClass::Valid, 1).addr),
        _ => {
            let class = f.rng.pick(&[PtrClass::Unmapped, PtrClass::Hypervisor, PtrClass::OtherDomain]);
            let len = if f.rng.chance(50) { f.rng.below(64) } else { f.u64_edge() };
            (len, f.ptr_of(class, 1).addr)
        }
    };
    f.call(nr::CONSOLE_IO, [cmd, len, buf, 0, 0]);
}

fn sched_op(f: &mut Fuzzer<'_>) {
    let cmd = match f.rng.below(10) {
        0..=3 => schedop::YIELD,
        4..=6 => schedop::POLL,
        7 => schedop::SHUTDOWN,
        _ => f.rng.pick(&[schedop::BLOCK + 3, 4, 5, 7, 0xff, u32::MAX as u64, u64::MAX]),
    };
    let arg = match cmd {
        schedop::POLL => poll(f),
        // Only unreadable reasons: a readable one would end the domain.
        schedop::SHUTDOWN => {
            let class = f.rng.pick(&[PtrClass::Unmapped, PtrClass::Hypervisor, PtrClass::OtherDomain]);
            let p = f.ptr_of(class, core::mem::size_of::<SchedShutdown>());
            p.addr
        }
        _ => f.u64_edge(),
    };
    f.call(nr::SCHED_OP, [cmd, arg, 0, 0, 0]);
}

/// A `sched_poll` that cannot wait long: its timeout is always in the
/// past (system time starts at 0 at boot; these are below a millisecond).
fn poll(f: &mut Fuzzer<'_>) -> u64 {
    let n = if f.rng.chance(85) { f.rng.below(4) as u32 } else { f.u32_edge() };
    let mut ports = [0u8; 16];
    for i in 0..4 {
        let p = f.port();
        ports[i * 4..i * 4 + 4].copy_from_slice(&p.to_le_bytes());
    }
    let list = f.nested(&ports[..4 * n.clamp(1, 4) as usize]);
    let timeout = 1 + f.rng.below(1000);
    if f.narrow() {
        f.place_bounded(SchedPollHandle32 { ports: list as u32, nr_ports: n, timeout }.as_bytes())
    } else {
        f.place_bounded(SchedPoll { ports: list, nr_ports: n, pad: 0, timeout }.as_bytes())
    }
}

fn vm_assist(f: &mut Fuzzer<'_>) {
    let cmd = sub_op(f, &[vmasst::CMD_ENABLE, vmasst::CMD_DISABLE]);
    let ty = if f.rng.chance(80) { f.rng.below(34) } else { f.u64_edge() };
    f.call(nr::VM_ASSIST, [cmd, ty, 0, 0, 0]);
}

fn set_timer(f: &mut Fuzzer<'_>) {
    let t = f.timer_value();
    let args = if f.narrow() { [t & 0xFFFF_FFFF, t >> 32, 0, 0, 0] } else { [t, f.u64_edge(), 0, 0, 0] };
    f.call(nr::SET_TIMER_OP, args);
}
