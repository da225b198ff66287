//! Property test: random hypercalls with random argument bytes and pointers
//! (valid, unmapped, page-crossing, absurd) never panic the core, return
//! either success or a Xen errno, and leave every page's reference counts
//! consistent with the areas actually registered and the FIFO event-channel
//! pages held — in every layout.

use std::collections::HashMap;

use lantern_common::arch::ArchVcpu;
use lantern_common::area::{AreaKind, Placement};
use lantern_common::domain::Domain;
use lantern_common::hypercall::{dispatch, Call};
use lantern_conformance::{domain, fake_vcpus, layouts, write_phys, LAYOUTS, RAM_PAGES};
use proptest::prelude::*;
use xen_abi::errno::Errno;
use xen_abi::nr::{gnttabop, hypercall};

/// The errnos hypercall `nr` with arguments `args` may legally return, per
/// hypercall and sub-op, as Xen defines them for the checks the core makes.
fn legal_errnos(nr: u64, args: &[u64; 6]) -> &'static [Errno] {
    use xen_abi::nr::{consoleio, evtchnop, hvmop, memop, schedop, vcpuop, xenver};
    let cmd = args[0];
    match nr {
        hypercall::VCPU_OP => match cmd {
            vcpuop::INITIALISE => &[Errno::ENOENT, Errno::EINVAL, Errno::ENOSYS, Errno::EFAULT, Errno::EEXIST],
            vcpuop::UP => &[Errno::ENOENT, Errno::EINVAL],
            vcpuop::DOWN | vcpuop::IS_UP => &[Errno::ENOENT],
            vcpuop::GET_RUNSTATE_INFO => &[Errno::ENOENT, Errno::EFAULT],
            vcpuop::REGISTER_VCPU_INFO => &[Errno::ENOENT, Errno::EFAULT, Errno::EINVAL, Errno::ENXIO, Errno::EBUSY],
            vcpuop::REGISTER_RUNSTATE_PHYS_AREA | vcpuop::REGISTER_VCPU_TIME_PHYS_AREA => {
                &[Errno::ENOENT, Errno::EFAULT, Errno::EINVAL, Errno::ENXIO]
            }
            // By guest-virtual address only the argument itself can fault;
            // the fake models an arch that has the time area.
            vcpuop::REGISTER_RUNSTATE_MEMORY_AREA | vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA => {
                &[Errno::ENOENT, Errno::EFAULT]
            }
            // The period's bounds; another vCPU's single-shot timer.
            vcpuop::SET_PERIODIC_TIMER | vcpuop::SET_SINGLESHOT_TIMER => &[Errno::ENOENT, Errno::EFAULT, Errno::EINVAL],
            vcpuop::STOP_PERIODIC_TIMER => &[Errno::ENOENT],
            vcpuop::STOP_SINGLESHOT_TIMER => &[Errno::ENOENT, Errno::EINVAL],
            _ => &[Errno::ENOENT, Errno::ENOSYS],
        },
        hypercall::XEN_VERSION => match cmd {
            xenver::VERSION | xenver::PAGESIZE => &[],
            xenver::GET_FEATURES => &[Errno::EFAULT, Errno::EINVAL],
            xenver::EXTRAVERSION
            | xenver::COMPILE_INFO
            | xenver::CAPABILITIES
            | xenver::CHANGESET
            | xenver::PLATFORM_PARAMETERS
            | xenver::GUEST_HANDLE
            | xenver::COMMANDLINE => &[Errno::EFAULT],
            _ => &[Errno::ENOSYS],
        },
        hypercall::CONSOLE_IO => match cmd {
            consoleio::WRITE => &[Errno::EINVAL, Errno::EFAULT],
            consoleio::READ => &[],
            _ => &[Errno::ENOSYS],
        },
        hypercall::SCHED_OP => match cmd {
            schedop::YIELD | schedop::BLOCK => &[],
            schedop::SHUTDOWN => &[Errno::EFAULT],
            // Too many ports or one the table has no slot for; an unreadable
            // struct or port array.
            schedop::POLL => &[Errno::EFAULT, Errno::EINVAL],
            schedop::REMOTE_SHUTDOWN => &[Errno::EFAULT, Errno::ESRCH, Errno::EPERM],
            _ => &[Errno::ENOSYS],
        },
        hypercall::MEMORY_OP => match cmd & memop::CMD_MASK {
            memop::ADD_TO_PHYSMAP => {
                &[Errno::EFAULT, Errno::ESRCH, Errno::EPERM, Errno::ENOSYS, Errno::EINVAL, Errno::EBUSY, Errno::EDOM]
            }
            // The reservation ops answer the extents done, never an errno.
            memop::INCREASE_RESERVATION | memop::DECREASE_RESERVATION | memop::POPULATE_PHYSMAP => &[],
            memop::MAXIMUM_RAM_PAGE => &[Errno::EINVAL],
            memop::CURRENT_RESERVATION | memop::MAXIMUM_RESERVATION => {
                &[Errno::EINVAL, Errno::EFAULT, Errno::ESRCH, Errno::EPERM]
            }
            memop::MEMORY_MAP => &[Errno::EFAULT, Errno::ENOSYS],
            _ => &[Errno::ENOSYS],
        },
        hypercall::EVENT_CHANNEL_OP => match cmd {
            evtchnop::ALLOC_UNBOUND => &[Errno::EFAULT, Errno::ESRCH, Errno::EPERM, Errno::ENOSPC],
            evtchnop::BIND_INTERDOMAIN => &[Errno::EFAULT, Errno::ESRCH, Errno::EINVAL, Errno::ENOSPC],
            evtchnop::BIND_VIRQ => &[Errno::EFAULT, Errno::EINVAL, Errno::ENOENT, Errno::EEXIST, Errno::ENOSPC],
            evtchnop::BIND_IPI => &[Errno::EFAULT, Errno::ENOENT, Errno::ENOSPC],
            evtchnop::BIND_VCPU => &[Errno::EFAULT, Errno::ENOENT, Errno::EINVAL],
            evtchnop::STATUS => &[Errno::EFAULT, Errno::ESRCH, Errno::EINVAL, Errno::EPERM],
            evtchnop::SEND | evtchnop::CLOSE => &[Errno::EFAULT, Errno::EINVAL],
            evtchnop::UNMASK => &[Errno::EFAULT, Errno::EINVAL, Errno::ENOENT],
            evtchnop::INIT_CONTROL => &[Errno::EFAULT, Errno::ENOENT, Errno::EINVAL],
            evtchnop::EXPAND_ARRAY => &[Errno::EFAULT, Errno::EOPNOTSUPP, Errno::ENOSPC, Errno::EINVAL],
            evtchnop::SET_PRIORITY => &[Errno::EFAULT, Errno::EINVAL, Errno::ENOSYS],
            _ => &[Errno::ENOSYS],
        },
        hypercall::HVM_OP => match cmd {
            hvmop::SET_PARAM => &[Errno::EFAULT, Errno::ESRCH, Errno::EPERM, Errno::EINVAL, Errno::EEXIST],
            hvmop::GET_PARAM => &[Errno::EFAULT, Errno::ESRCH, Errno::EPERM, Errno::EINVAL, Errno::ENOENT],
            hvmop::SET_EVTCHN_UPCALL_VECTOR => &[Errno::EFAULT, Errno::EINVAL, Errno::ENOENT],
            _ => &[Errno::ENOSYS],
        },
        // Batched grant ops report per-op GNTST_* codes in their structs; the
        // hypercall itself fails only on the call's own shape (and a
        // negative count, for every sub-op).
        hypercall::GRANT_TABLE_OP => match args[0] {
            gnttabop::SETUP_TABLE
            | gnttabop::QUERY_SIZE
            | gnttabop::MAP_GRANT_REF
            | gnttabop::UNMAP_GRANT_REF
            | gnttabop::COPY => &[Errno::EFAULT, Errno::EINVAL, Errno::ENOMEM],
            gnttabop::SET_VERSION => &[Errno::EFAULT, Errno::EINVAL, Errno::ENOSYS],
            gnttabop::GET_VERSION => &[Errno::EFAULT, Errno::EINVAL, Errno::ESRCH, Errno::EPERM],
            // A negative count is refused before the sub-op is looked at.
            _ => &[Errno::EINVAL, Errno::ENOSYS],
        },
        // A type outside the arch's mask, then an unknown command.
        hypercall::VM_ASSIST => &[Errno::EINVAL, Errno::ENOSYS],
        // Never fails where the arch has it (a past or absurd deadline fires
        // early instead); -ENOSYS where it has not.
        hypercall::SET_TIMER_OP => &[Errno::ENOSYS],
        _ => &[Errno::ENOSYS],
    }
}

#[derive(Clone, Debug)]
struct Hc {
    nr: u64,
    args: [u64; 6],
    arg_bytes: Vec<u8>,
}

fn pointer() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0..RAM_PAGES * 4096).prop_map(|a| a & !7), // somewhere in RAM, aligned
        0..RAM_PAGES * 4096,                        // anywhere in RAM
        (0u64..16).prop_map(|i| 4096 - i),          // straddling a page end
        Just(RAM_PAGES * 4096 + 8),                 // just past RAM
        any::<u64>(),                               // absurd
    ]
}

fn small_or_any() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..32, 1 => any::<u64>()]
}

/// Sub-commands: mostly ones that exist, sometimes anything.
fn command() -> impl Strategy<Value = u64> {
    prop_oneof![6 => prop::sample::select(vec![0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]), 1 => small_or_any()]
}

/// Argument structs that often look right: a leading u64 that is a small gfn
/// or a guest address in RAM, then a u32 offset-ish and a u32 that is mostly
/// zero (reserved fields), then noise.
fn arg_bytes() -> impl Strategy<Value = Vec<u8>> {
    let head = prop_oneof![0..RAM_PAGES + 2, (0..RAM_PAGES * 4096).prop_map(|a| a & !7), any::<u64>()];
    let off = prop_oneof![(0u32..64).prop_map(|i| i * 64), 0u32..4096, any::<u32>()];
    let rsvd = prop_oneof![4 => Just(0u32), 1 => any::<u32>()];
    (head, off, rsvd, prop::collection::vec(any::<u8>(), 0..32)).prop_map(|(h, o, r, tail)| {
        let mut b = h.to_le_bytes().to_vec();
        b.extend_from_slice(&o.to_le_bytes());
        b.extend_from_slice(&r.to_le_bytes());
        b.extend(tail);
        b
    })
}

fn hypercall() -> impl Strategy<Value = Hc> {
    let nr = prop_oneof![
        8 => prop::sample::select(vec![
            hypercall::MEMORY_OP,
            hypercall::XEN_VERSION,
            hypercall::CONSOLE_IO,
            hypercall::VCPU_OP,
            hypercall::SCHED_OP,
            hypercall::EVENT_CHANNEL_OP,
            hypercall::HVM_OP,
            hypercall::GRANT_TABLE_OP,
            hypercall::VM_ASSIST,
            hypercall::SET_TIMER_OP,
        ]),
        1 => 0u64..64,
        1 => any::<u64>(),
    ];
    (nr, command(), small_or_any(), pointer(), pointer(), any::<[u64; 3]>(), arg_bytes()).prop_map(
        |(nr, a0, a1, p0, p1, rest, arg_bytes)| {
            // vcpu_op takes (cmd, vcpuid, ptr); the others (cmd, ptr, ...).
            let args = if nr == hypercall::VCPU_OP {
                [a0, a1 % 8, p0, rest[0], rest[1], rest[2]]
            } else {
                [a0, p0, p1, rest[0], rest[1], rest[2]]
            };
            Hc { nr, args, arg_bytes }
        },
    )
}

/// Page address → (expected general refs, expected writable refs) from the
/// p2m and the registered areas; checked against the pages' own counts.
fn check_counts(d: &Domain) -> Result<(), TestCaseError> {
    let mut expect: HashMap<u64, (u32, u32, lantern_common::memory::PageRef)> = HashMap::new();
    for (_, e) in d.p2m.lock().iter() {
        expect.entry(e.page.host_addr()).or_insert((0, 0, e.page.clone())).0 += 1;
    }
    let si = d.shared_info().clone();
    expect.entry(si.host_addr()).or_insert((0, 0, si.clone())).0 += 1; // the domain's own
    for v in d.vcpus() {
        prop_assert_eq!(v.pause_count(), 0, "vCPU {} left paused", v.id);
        let a = v.areas();
        for kind in AreaKind::ALL {
            if let Some(m) = a.get(kind).filter(|m| m.placement == Placement::Guest) {
                let e = expect.entry(m.page.host_addr()).or_insert((0, 0, m.page.clone()));
                e.0 += 1;
                e.1 += 1;
            }
        }
    }
    // FIFO control blocks and event-array pages: one general and one
    // writable reference each, as a registered area holds.
    for page in lantern_common::evtchn::held_pages(d) {
        let e = expect.entry(page.host_addr()).or_insert((0, 0, page.clone()));
        e.0 += 1;
        e.1 += 1;
    }
    // Every frame of the domain's own memory still alive is mapped, held
    // by an area, or kept unmapped; tot_pages counts exactly those.
    let own_ram = expect.values().filter(|(_, _, p)| p.is_ram() && p.owner() == d.id).count() as u64;
    prop_assert_eq!(d.tot_pages(), own_ram + d.unmapped_pages(), "tot_pages");
    for (addr, (refs, wr, page)) in expect {
        prop_assert_eq!((page.refs(), page.writable_refs()), (refs, wr), "page {:#x}", addr);
    }
    prop_assert!(!d.lock.is_locked());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_hypercalls_never_break_the_core(which in 0..LAYOUTS.len(), calls in prop::collection::vec(hypercall(), 1..32)) {
        let abi = layouts()[which];
        let (d, _) = domain(abi, 4);
        let mut arch: Vec<Box<dyn ArchVcpu>> = fake_vcpus(4);
        for (i, hc) in calls.iter().enumerate() {
            // Put the random argument bytes wherever the pointer aims, if it can.
            let _ = write_phys(&d, hc.args[if hc.nr == hypercall::VCPU_OP { 2 } else { 1 }], &hc.arg_bytes);
            let vcpu = (i % 4) as u32;
            let out = dispatch(&mut Call::new(&d, vcpu, &mut arch), hc.nr, hc.args);
            let legal = legal_errnos(hc.nr, &hc.args);
            prop_assert!(
                out.ret >= 0 || legal.iter().any(|e| e.to_hypercall_ret() == out.ret),
                "{:?} returned {}, not one of {:?}", hc, out.ret, legal
            );
            check_counts(&d)?;
        }
    }
}
