//! `memory_op`: mapping shared_info and grant frames into the physmap, the
//! reservation ops that grow and shrink a domain's memory (ballooning), the
//! reservation queries and the boot memory map.

use super::{check_self, Call};
use crate::addr::Gfn;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::{mapspace, memflags, memop};
use xen_abi::public::{
    E820Entry, XenAddToPhysmap, XenAddToPhysmapUlong32, XenMemoryMap, XenMemoryMapCompat, XenMemoryReservation,
    XenMemoryReservationCompat,
};
use zerocopy::IntoBytes;

pub(super) fn memory_op(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    let op = cmd & memop::CMD_MASK;
    let start_extent = cmd >> memop::EXTENT_SHIFT;
    match op {
        memop::INCREASE_RESERVATION | memop::DECREASE_RESERVATION | memop::POPULATE_PHYSMAP => {
            Ok(reservation_op(call, op, start_extent, arg) as i64)
        }
        memop::ADD_TO_PHYSMAP => {
            // Xen's `xen_add_to_physmap.size` is 16 bits: a start_extent that
            // does not fit is malicious or buggy input.
            if start_extent > u64::from(u16::MAX) {
                return Err(Errno::EDOM);
            }
            // Xen latches the shared_info layout (native or compat) from the
            // caller's mode when shared_info is mapped; the argument's shape
            // (xen_ulong_t idx and gpfn) follows the same mode.
            let abi = call.caller()?.guest_abi(d);
            let (domid, space, idx, gpfn) = if abi.xen_ulong_size() == 8 {
                let a: XenAddToPhysmap = call.read(arg)?;
                (a.domid, a.space, a.idx, a.gpfn)
            } else {
                let a: XenAddToPhysmapUlong32 = call.read(arg)?;
                (a.domid, a.space, a.idx as u64, a.gpfn as u64)
            };
            check_self(call, domid)?;
            if space == mapspace::GRANT_TABLE {
                return crate::grant_table::map_frame(d, idx, Gfn(gpfn)).map(|_| 0);
            }
            if space != mapspace::SHARED_INFO {
                return Err(Errno::ENOSYS);
            }
            if idx != 0 {
                return Err(Errno::EINVAL);
            }
            if let Ok(true) = d.latch_abi(abi) {
                log::info!("d{}: {} guest ABI latched", d.id, abi.name());
            }
            d.map_shared_info(Gfn(gpfn)).map(|_| 0)
        }
        memop::MAXIMUM_RAM_PAGE => {
            if start_extent != 0 {
                return Err(Errno::EINVAL);
            }
            // Xen answers its own `max_page` (one past the highest host
            // frame), which tells a translated guest nothing it can use;
            // Lantern answers the same kind of bound for the guest: one past
            // the highest gfn the arch could map for it.
            Ok(call.caller()?.gfn_limit() as i64)
        }
        memop::CURRENT_RESERVATION | memop::MAXIMUM_RESERVATION => {
            if start_extent != 0 {
                return Err(Errno::EINVAL);
            }
            let domid: u16 = call.read(arg)?;
            // Xen's domain lookup, then xsm_memory_stat_reservation.
            check_self(call, domid)?;
            Ok(if op == memop::CURRENT_RESERVATION { d.tot_pages() } else { d.max_pages() } as i64)
        }
        memop::MEMORY_MAP => memory_map(call, arg),
        _ => Err(Errno::ENOSYS),
    }
}

/// One `xen_memory_reservation`, whichever layout it came in.
struct Reservation {
    extent_start: u64,
    nr_extents: u64,
    extent_order: u32,
    mem_flags: u32,
    domid: u16,
}

/// `XENMEM_{increase,decrease}_reservation` and `XENMEM_populate_physmap`,
/// after Xen's `do_memory_op`: the result is the number of extents done,
/// counting the `start_extent` a continuation carries in `cmd`; anything
/// that stops the call (an unreadable argument, an extent list entry that
/// cannot be read, a refused domain, an order or flags a guest may not use,
/// an extent that fails) ends it there with that count, never an errno.
/// Lantern never preempts the loop, so it never creates a continuation
/// itself; a guest that passes a `start_extent` resumes where it says.
fn reservation_op(call: &Call<'_>, op: u64, start_extent: u64, arg: u64) -> u64 {
    let Ok(abi) = call.caller().map(|v| v.guest_abi(call.domain)) else {
        return start_extent;
    };
    let pfn_size = abi.xen_ulong_size() as u64;
    let r = if pfn_size == 8 {
        call.read::<XenMemoryReservation>(arg).map(|r| Reservation {
            extent_start: r.extent_start,
            nr_extents: r.nr_extents,
            extent_order: r.extent_order,
            mem_flags: r.mem_flags,
            domid: r.domid,
        })
    } else {
        call.read::<XenMemoryReservationCompat>(arg).map(|r| Reservation {
            extent_start: r.extent_start.into(),
            nr_extents: r.nr_extents.into(),
            extent_order: r.extent_order,
            mem_flags: r.mem_flags,
            domid: r.domid,
        })
    };
    let Ok(r) = r else {
        return start_extent;
    };
    // The count must fit the continuation encoding; a start at or past the
    // end has nothing to do.
    if r.nr_extents > u64::from(u32::MAX >> memop::EXTENT_SHIFT) || start_extent >= r.nr_extents {
        return start_extent;
    }
    // Only the caller itself: another domain, existing or not, is refused
    // to an unprivileged caller before anything happens.
    if check_self(call, r.domid).is_err() || !flags_allowed(r.mem_flags) {
        return start_extent;
    }
    // Populate-on-demand of oneself is refused, as is any order above what
    // a guest may ask for.
    if (op == memop::POPULATE_PHYSMAP && r.mem_flags & memflags::POPULATE_ON_DEMAND != 0)
        || r.extent_order > memop::DOMU_MAX_ORDER
    {
        return start_extent;
    }
    let d = call.domain;
    let gfn_limit = call.caller().map(|v| v.gfn_limit()).unwrap_or(0);
    let mut done = start_extent;
    while done < r.nr_extents {
        let ok = match op {
            memop::INCREASE_RESERVATION => d.increase_reservation(r.extent_order).is_ok(),
            _ => {
                let Some(gfn) = read_pfn(call, r.extent_start, done, pfn_size) else {
                    break;
                };
                if op == memop::POPULATE_PHYSMAP {
                    d.populate_extent(Gfn(gfn), r.extent_order, gfn_limit).is_ok()
                } else {
                    decrease_extent(d, gfn, r.extent_order)
                }
            }
        };
        if !ok {
            break;
        }
        done += 1;
    }
    done
}

/// Whether an unprivileged caller may pass `mem_flags` (Xen's
/// `construct_memop_from_reservation` and `propagate_node`): an address
/// width no wider than a page is refused, as is an exact-node request for
/// a physical node; a virtual node is accepted and, with no virtual NUMA
/// topology, ignored. Lantern honours no address width (a translated
/// guest never sees machine addresses) and no node.
fn flags_allowed(mem_flags: u32) -> bool {
    let bits = mem_flags & memflags::ADDRESS_BITS_MASK;
    if bits != 0 && bits <= crate::addr::PAGE_SHIFT {
        return false;
    }
    let node_set = (mem_flags >> memflags::NODE_SHIFT) & memflags::NODE_MASK != 0;
    mem_flags & memflags::VNODE != 0 || !node_set || mem_flags & memflags::EXACT_NODE_REQUEST == 0
}

/// Entry `i` of the guest's `xen_pfn_t` array at `list`.
fn read_pfn(call: &Call<'_>, list: u64, i: u64, pfn_size: u64) -> Option<u64> {
    let at = i.checked_mul(pfn_size).and_then(|o| list.checked_add(o))?;
    if pfn_size == 8 {
        call.read::<u64>(at).ok()
    } else {
        call.read::<u32>(at).ok().map(u64::from)
    }
}

/// `decrease_reservation` of the extent at `gfn`: every page of it
/// removed (`guest_remove_page`), stopping at the first that cannot be —
/// the pages before it stay removed and the extent does not count.
fn decrease_extent(d: &crate::domain::Domain, gfn: u64, order: u32) -> bool {
    (0..1u64 << order).all(|j| gfn.checked_add(j).is_some_and(|g| d.remove_page(Gfn(g)).is_ok()))
}

/// `XENMEM_memory_map`: the map the domain was booted with, as many
/// entries as the guest's buffer holds, and the number stored written back.
/// `-ENOSYS` when the domain has none (Xen's answer where no map was set,
/// and on arm, which has no such op).
fn memory_map(call: &Call<'_>, arg: u64) -> XenResult<i64> {
    let d = call.domain;
    let native = call.caller()?.guest_abi(d).xen_ulong_size() == 8;
    let (nr, pad, buffer) = if native {
        let m: XenMemoryMap = call.read(arg)?;
        (m.nr_entries, m.pad, m.buffer)
    } else {
        let m: XenMemoryMapCompat = call.read(arg)?;
        (m.nr_entries, 0, u64::from(m.buffer))
    };
    let map = d.memory_map();
    if map.is_empty() {
        return Err(Errno::ENOSYS);
    }
    let n = (nr as usize).min(map.len());
    let entries: &[E820Entry] = &map[..n];
    call.copy_to_guest(buffer, entries.as_bytes())?;
    if native {
        call.write(arg, &XenMemoryMap { nr_entries: n as u32, pad, buffer })?;
    } else {
        call.write(arg, &XenMemoryMapCompat { nr_entries: n as u32, buffer: buffer as u32 })?;
    }
    Ok(0)
}
