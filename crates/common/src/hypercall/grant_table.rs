//! `grant_table_op`: decodes the `GNTTABOP_*` argument structs in the shape
//! of the caller's layout and hands each operation to [`crate::grant_table`].
//! Batched ops (map, unmap, copy) return 0 with a `GNTST_*` status in every
//! struct; the others return an errno only for bad arguments or faults.

use core::mem::{offset_of, size_of};

use zerocopy::IntoBytes;

use super::Call;
use crate::directory::lookup;
use crate::domain::Domain;
use crate::grant_table::{self as gt, CopyPtr, Status};
use crate::memory::Gfn;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::gnttab_status as st;
use xen_abi::nr::{gntcopy, gnttabop};
use xen_abi::public::{
    GnttabCopy, GnttabCopyUlong32, GnttabGetVersion, GnttabMapGrantRef, GnttabQuerySize, GnttabSetVersion,
    GnttabSetupTable, GnttabSetupTableHandle32, GnttabUnmapGrantRef,
};

pub(super) fn grant_table_op(call: &mut Call<'_>, cmd: u64, uop: u64, count: u64) -> XenResult<i64> {
    // `count` is an `unsigned int` that Xen refuses when negative as an int.
    let count = count as u32;
    if (count as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let one = || if count == 1 { Ok(()) } else { Err(Errno::EINVAL) };
    match cmd {
        gnttabop::SETUP_TABLE => {
            one()?;
            setup_table(call, uop)
        }
        gnttabop::QUERY_SIZE => {
            one()?;
            let mut q: GnttabQuerySize = call.read(uop)?;
            match own_domain(call, q.dom).and_then(gt::query_size) {
                Ok((nr, max)) => {
                    (q.nr_frames, q.max_nr_frames, q.status) = (nr, max, st::OKAY);
                }
                Err(s) => q.status = s,
            }
            call.write(uop, &q).map(|_| 0)
        }
        gnttabop::SET_VERSION => {
            let mut v: GnttabSetVersion = call.read(uop)?;
            let (current, r) = gt::set_version(call.domain, v.version);
            v.version = current;
            call.write(uop, &v)?;
            r.map(|_| 0)
        }
        gnttabop::GET_VERSION => {
            let mut v: GnttabGetVersion = call.read(uop)?;
            v.version = gt::get_version(match own_domain(call, v.dom) {
                Ok(d) => d,
                Err(st::BAD_DOMAIN) => return Err(Errno::ESRCH),
                Err(_) => return Err(Errno::EPERM),
            });
            let at = offset_of!(GnttabGetVersion, version) as u64;
            call.copy_to_guest(uop.wrapping_add(at), v.version.as_bytes()).map(|_| 0)
        }
        gnttabop::MAP_GRANT_REF => batch::<GnttabMapGrantRef>(call, uop, count, |call, op| {
            match gt::map_grant_ref(call.domain, call.domains, op.host_addr, op.flags, op.r#ref, op.dom) {
                Ok(h) => (op.handle, op.dev_bus_addr, op.status) = (h, 0, st::OKAY),
                Err(s) => op.status = s,
            }
        }),
        gnttabop::UNMAP_GRANT_REF => batch::<GnttabUnmapGrantRef>(call, uop, count, |call, op| {
            op.status = match gt::unmap_grant_ref(call.domain, call.domains, op.host_addr, op.dev_bus_addr, op.handle) {
                Ok(()) => st::OKAY,
                Err(s) => s,
            };
        }),
        gnttabop::COPY => copy(call, uop, count),
        _ => Err(Errno::ENOSYS),
    }
}

/// The domain a non-batched op names: the caller (`DOMID_SELF` or its own
/// id); another existing domain is `GNTST_permission_denied` (no domain is
/// privileged over another), an unknown one `GNTST_bad_domain`.
fn own_domain<'a>(call: &Call<'a>, dom: u16) -> Result<&'a Domain, Status> {
    if dom == DOMID_SELF || dom == call.domain.id {
        Ok(call.domain)
    } else if lookup(call.domain, call.domains, dom).is_some() {
        Err(st::PERMISSION_DENIED)
    } else {
        Err(st::BAD_DOMAIN)
    }
}

/// Runs `op` over `count` structs `T` at `uop`, each read, handled and
/// written back in turn (`-EFAULT` at the first that faults).
fn batch<T: zerocopy::FromBytes + IntoBytes + zerocopy::Immutable>(
    call: &mut Call<'_>,
    uop: u64,
    count: u32,
    op: impl Fn(&Call<'_>, &mut T),
) -> XenResult<i64> {
    for i in 0..count as u64 {
        let at = uop.wrapping_add(i * size_of::<T>() as u64);
        let mut v: T = call.read(at)?;
        op(call, &mut v);
        call.write(at, &v)?;
    }
    Ok(0)
}

/// `GNTTABOP_setup_table` in the caller's shape: the frames' gfns go to the
/// `xen_pfn_t` array, then only `status` is written back.
fn setup_table(call: &mut Call<'_>, uop: u64) -> XenResult<i64> {
    let w = call.caller()?.guest_abi(call.domain).xen_ulong_size();
    let (dom, nr_frames, frame_list) = if w == 8 {
        let a: GnttabSetupTable = call.read(uop)?;
        (a.dom, a.nr_frames, a.frame_list)
    } else {
        let a: GnttabSetupTableHandle32 = call.read(uop)?;
        (a.dom, a.nr_frames, a.frame_list as u64)
    };
    let status = match own_domain(call, dom).and_then(|d| gt::setup_table(d, nr_frames)) {
        Ok(gfns) => {
            for (i, g) in gfns.iter().enumerate() {
                let v = if *g == Gfn::INVALID { u64::MAX } else { g.0 };
                call.copy_to_guest(frame_list.wrapping_add((i * w) as u64), &v.to_le_bytes()[..w])?;
            }
            st::OKAY
        }
        Err(s) => s,
    };
    const _: () = assert!(offset_of!(GnttabSetupTable, status) == offset_of!(GnttabSetupTableHandle32, status));
    let at = offset_of!(GnttabSetupTable, status) as u64;
    call.copy_to_guest(uop.wrapping_add(at), status.as_bytes()).map(|_| 0)
}

/// `GNTTABOP_copy` in the caller's shape; only each op's `status` is
/// written back.
fn copy(call: &mut Call<'_>, uop: u64, count: u32) -> XenResult<i64> {
    let w = call.caller()?.guest_abi(call.domain).xen_ulong_size();
    let (size, status_at) = if w == 8 {
        (size_of::<GnttabCopy>(), offset_of!(GnttabCopy, status))
    } else {
        (size_of::<GnttabCopyUlong32>(), offset_of!(GnttabCopyUlong32, status))
    };
    for i in 0..count as u64 {
        let at = uop.wrapping_add(i * size as u64);
        let (src, dst, len) = if w == 8 {
            let c: GnttabCopy = call.read(at)?;
            let p = |u: u64, gref: bool| if gref { u & u32::MAX as u64 } else { u };
            let sg = c.flags & gntcopy::SOURCE_GREF != 0;
            let dg = c.flags & gntcopy::DEST_GREF != 0;
            (
                CopyPtr { domid: c.source.domid, is_gref: sg, frame: p(c.source.u, sg), offset: c.source.offset },
                CopyPtr { domid: c.dest.domid, is_gref: dg, frame: p(c.dest.u, dg), offset: c.dest.offset },
                c.len,
            )
        } else {
            let c: GnttabCopyUlong32 = call.read(at)?;
            let sg = c.flags & gntcopy::SOURCE_GREF != 0;
            let dg = c.flags & gntcopy::DEST_GREF != 0;
            (
                CopyPtr { domid: c.source.domid, is_gref: sg, frame: c.source.u as u64, offset: c.source.offset },
                CopyPtr { domid: c.dest.domid, is_gref: dg, frame: c.dest.u as u64, offset: c.dest.offset },
                c.len,
            )
        };
        let status = gt::copy(call.domain, call.domains, src, dst, len);
        call.copy_to_guest(at.wrapping_add(status_at as u64), status.as_bytes())?;
    }
    Ok(0)
}
