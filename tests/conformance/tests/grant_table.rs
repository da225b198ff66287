//! Grant tables v1 through the hypercall, in every layout: a domain grants a
//! frame by writing an entry into its table frame (mapped with
//! `XENMAPSPACE_grant_table`), another maps, unmaps and copies through it,
//! with Xen's permission, flag and reference-count rules.

use std::sync::Arc;

use lantern_common::addr::Gfn;
use lantern_common::arch::ArchVcpu;
use lantern_common::domain::Domain;
use lantern_common::hypercall::{dispatch, Call};
use lantern_common::lifecycle;
use lantern_common::memory::P2mType;
use lantern_conformance::*;
use xen_abi::errno::Errno;
use xen_abi::layout::GuestAbi;
use xen_abi::nr::gnttab_status as st;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::{domid, gntcopy, gntmap, gnttabop, gtf, mapidx, mapspace, memop};
use xen_abi::public::{
    GnttabCopy, GnttabCopyPtr, GnttabCopyPtrUlong32, GnttabCopyUlong32, GnttabMapGrantRef, GnttabQuerySize,
    GnttabSetVersion, GnttabSetupTable, GnttabSetupTableHandle32, GnttabUnmapGrantRef, GrantEntryV1, XenAddToPhysmap,
    XenAddToPhysmapUlong32,
};
use zerocopy::{FromBytes, IntoBytes};

/// gfn 1 holds argument structs, gfn 2 the setup_table frame list.
const ARG: u64 = 0x1000;
const LIST: u64 = 0x2000;
/// Where d1 maps its grant-table frame 0.
const TABLE_GFN: u64 = 50;
/// d1's granted frame, and where d2 maps it.
const SHARED_GFN: u64 = 10;
const MAP_GFN: u64 = 60;

struct World {
    abi: &'static dyn GuestAbi,
    d: [Arc<Domain>; 3],
    arch: [Vec<Box<dyn ArchVcpu>>; 3],
}

impl World {
    fn new(abi: &'static dyn GuestAbi) -> World {
        let d = [1, 2, 3].map(|id| TestDomain::new(abi).id(id).build());
        World { abi, d, arch: [fake_vcpus(1), fake_vcpus(1), fake_vcpus(1)] }
    }

    /// Hypercall `nr` from domain index `i`, which sees the other two.
    fn call(&mut self, i: usize, nr: u64, args: [u64; 6]) -> i64 {
        let others: Vec<Arc<Domain>> = (0..3).filter(|&j| j != i).map(|j| self.d[j].clone()).collect();
        let d = self.d[i].clone();
        dispatch(&mut Call::with_domains(&d, 0, &mut self.arch[i], &others), nr, args).ret
    }

    /// `grant_table_op(cmd, ARG, count)` from `i` with `arg` at ARG; returns
    /// the result and the bytes at ARG afterwards.
    fn gnttab(&mut self, i: usize, cmd: u64, arg: &[u8], count: u64) -> (i64, Vec<u8>) {
        write_phys(&self.d[i], ARG, arg).unwrap();
        let r = self.call(i, nr::GRANT_TABLE_OP, [cmd, ARG, count, 0, 0, 0]);
        let mut out = vec![0u8; arg.len()];
        read_phys(&self.d[i], ARG, &mut out).unwrap();
        (r, out)
    }

    /// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx, gpfn)` from `i`.
    fn map_table_frame(&mut self, i: usize, idx: u64, gpfn: u64) -> i64 {
        let (dom, space) = (domid::SELF, mapspace::GRANT_TABLE);
        if self.abi.xen_ulong_size() == 8 {
            let a = XenAddToPhysmap { domid: dom, size: 0, space, idx, gpfn };
            write_phys(&self.d[i], ARG, a.as_bytes()).unwrap();
        } else {
            let a = XenAddToPhysmapUlong32 { domid: dom, size: 0, space, idx: idx as u32, gpfn: gpfn as u32 };
            write_phys(&self.d[i], ARG, a.as_bytes()).unwrap();
        }
        self.call(i, nr::MEMORY_OP, [memop::ADD_TO_PHYSMAP, ARG, 0, 0, 0, 0])
    }

    /// d1 writes grant entry `gref` into its table frame as a guest would.
    fn grant(&self, gref: u32, to: u16, flags: u16, frame: u32) {
        let e = GrantEntryV1 { flags, domid: to, frame };
        write_phys(&self.d[0], gaddr(TABLE_GFN, gref as usize * 8), e.as_bytes()).unwrap();
    }

    fn entry_flags(&self, gref: u32) -> u16 {
        let mut b = [0u8; 8];
        read_phys(&self.d[0], gaddr(TABLE_GFN, gref as usize * 8), &mut b).unwrap();
        GrantEntryV1::read_from_bytes(&b).unwrap().flags
    }

    fn map(&mut self, i: usize, gref: u32, dom: u16, flags: u32, at_gfn: u64) -> GnttabMapGrantRef {
        let op = GnttabMapGrantRef { host_addr: at_gfn << 12, flags, r#ref: gref, dom, ..Default::default() };
        let (r, out) = self.gnttab(i, gnttabop::MAP_GRANT_REF, op.as_bytes(), 1);
        assert_eq!(r, 0, "batched ops return 0");
        GnttabMapGrantRef::read_from_bytes(&out).unwrap()
    }

    fn unmap(&mut self, i: usize, handle: u32, at_gfn: u64) -> i16 {
        let op = GnttabUnmapGrantRef { host_addr: at_gfn << 12, handle, ..Default::default() };
        let (r, out) = self.gnttab(i, gnttabop::UNMAP_GRANT_REF, op.as_bytes(), 1);
        assert_eq!(r, 0);
        GnttabUnmapGrantRef::read_from_bytes(&out).unwrap().status
    }

    /// One `GNTTABOP_copy` from `i` in the layout's shape; returns its status.
    fn copy(&mut self, i: usize, src: (u16, u64, u16), dst: (u16, u64, u16), len: u16, flags: u16) -> i16 {
        let (r, out) = if self.abi.xen_ulong_size() == 8 {
            let p = |(domid, u, offset): (u16, u64, u16)| GnttabCopyPtr { u, domid, offset, pad: 0 };
            let c = GnttabCopy { source: p(src), dest: p(dst), len, flags, status: 7, pad: [0; 2] };
            let (r, out) = self.gnttab(i, gnttabop::COPY, c.as_bytes(), 1);
            (r, GnttabCopy::read_from_bytes(&out).unwrap().status)
        } else {
            let p = |(domid, u, offset): (u16, u64, u16)| GnttabCopyPtrUlong32 { u: u as u32, domid, offset };
            let c = GnttabCopyUlong32 { source: p(src), dest: p(dst), len, flags, status: 7, pad: [0; 2] };
            let (r, out) = self.gnttab(i, gnttabop::COPY, c.as_bytes(), 1);
            (r, GnttabCopyUlong32::read_from_bytes(&out).unwrap().status)
        };
        assert_eq!(r, 0);
        out
    }

    /// d1 with its table frame mapped and a pattern in its SHARED_GFN.
    fn with_table(abi: &'static dyn GuestAbi) -> World {
        let mut w = World::new(abi);
        assert_eq!(w.map_table_frame(0, 0, TABLE_GFN), 0, "{}", abi.name());
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        write_phys(&w.d[0], gaddr(SHARED_GFN, 0), &pattern).unwrap();
        w
    }
}

fn pattern_at(d: &Domain, gfn: u64) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    read_phys(d, gaddr(gfn, 0), &mut b).unwrap();
    b
}

#[test]
fn a_granted_frame_maps_into_the_grantee_and_unmap_restores_the_counts() {
    for abi in layouts() {
        let mut w = World::with_table(abi);
        let shared = page(&w.d[0], SHARED_GFN);
        let (refs, wr) = (shared.refs(), shared.writable_refs());
        w.grant(5, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32);
        let m = w.map(1, 5, 1, gntmap::HOST_MAP, MAP_GFN);
        assert_eq!(m.status, st::OKAY, "{}", abi.name());
        assert_eq!(m.dev_bus_addr, 0);
        // d2 sees d1's bytes at its own gfn, as read/write RAM.
        assert_eq!(pattern_at(&w.d[1], MAP_GFN), pattern_at(&w.d[0], SHARED_GFN));
        let e = w.d[1].p2m.lock().get(Gfn(MAP_GFN)).cloned().unwrap();
        assert!(Arc::ptr_eq(&e.page, &shared) && e.p2mt == P2mType::RamRw);
        write_phys(&w.d[1], gaddr(MAP_GFN, 8), b"from d2").unwrap();
        let mut b = [0u8; 7];
        read_phys(&w.d[0], gaddr(SHARED_GFN, 8), &mut b).unwrap();
        assert_eq!(&b, b"from d2");
        // The mapping's general reference, the mapper's p2m entry's, and a
        // writable type reference.
        assert_eq!((shared.refs(), shared.writable_refs()), (refs + 2, wr + 1));
        assert_eq!(w.entry_flags(5), gtf::PERMIT_ACCESS | gtf::READING | gtf::WRITING);
        // A second map of the same grant by the same domain pins it again.
        let m2 = w.map(1, 5, 1, gntmap::HOST_MAP | gntmap::READONLY, MAP_GFN + 1);
        assert_eq!(m2.status, st::OKAY);
        assert_ne!(m2.handle, m.handle);
        assert_eq!(w.unmap(1, m.handle, MAP_GFN), st::OKAY);
        assert_eq!(w.entry_flags(5), gtf::PERMIT_ACCESS | gtf::READING, "a read-only pin remains");
        assert_eq!(w.unmap(1, m2.handle, MAP_GFN + 1), st::OKAY);
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr), "{}", abi.name());
        assert_eq!(w.entry_flags(5), gtf::PERMIT_ACCESS, "GTF_reading/writing cleared");
        assert!(w.d[1].p2m.lock().get(Gfn(MAP_GFN)).is_none(), "no dangling mapping");
        assert_eq!(w.d[1].grant_table.lock().nr_mappings(), 0);
        // The handle is gone.
        assert_eq!(w.unmap(1, m.handle, MAP_GFN), st::BAD_HANDLE);
    }
}

#[test]
fn a_read_only_grant_maps_only_read_only() {
    for abi in layouts() {
        let mut w = World::with_table(abi);
        let shared = page(&w.d[0], SHARED_GFN);
        let (refs, wr) = (shared.refs(), shared.writable_refs());
        w.grant(6, 2, gtf::PERMIT_ACCESS | gtf::READONLY, SHARED_GFN as u32);
        // Xen's status for a write-pin of a read-only entry.
        assert_eq!(w.map(1, 6, 1, gntmap::HOST_MAP, MAP_GFN).status, st::GENERAL_ERROR, "{}", abi.name());
        assert_eq!(w.entry_flags(6), gtf::PERMIT_ACCESS | gtf::READONLY, "no flag left behind");
        assert_eq!(page(&w.d[1], MAP_GFN).owner(), 2, "d2's own RAM untouched");
        let m = w.map(1, 6, 1, gntmap::HOST_MAP | gntmap::READONLY, MAP_GFN);
        assert_eq!(m.status, st::OKAY);
        let e = w.d[1].p2m.lock().get(Gfn(MAP_GFN)).cloned().unwrap();
        assert!(Arc::ptr_eq(&e.page, &shared) && e.p2mt == P2mType::RamRo);
        assert_eq!(pattern_at(&w.d[1], MAP_GFN), pattern_at(&w.d[0], SHARED_GFN));
        assert_eq!(write_phys(&w.d[1], gaddr(MAP_GFN, 0), b"x"), Err(Errno::EFAULT));
        assert_eq!((shared.refs(), shared.writable_refs()), (refs + 2, wr), "no writable type reference");
        assert_eq!(w.entry_flags(6), gtf::PERMIT_ACCESS | gtf::READONLY | gtf::READING);
        // Pinned read-only, it still refuses a writable map.
        assert_eq!(w.map(1, 6, 1, gntmap::HOST_MAP, MAP_GFN + 1).status, st::GENERAL_ERROR);
        assert_eq!(w.unmap(1, m.handle, MAP_GFN), st::OKAY);
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr));
        assert_eq!(w.entry_flags(6), gtf::PERMIT_ACCESS | gtf::READONLY);
    }
}

#[test]
fn forged_references_domains_flags_and_handles_fail_with_their_status() {
    for abi in layouts() {
        let mut w = World::with_table(abi);
        let shared = page(&w.d[0], SHARED_GFN);
        let (refs, wr) = (shared.refs(), shared.writable_refs());
        let n = abi.name();
        w.grant(1, 3, gtf::PERMIT_ACCESS, SHARED_GFN as u32); // to d3
        w.grant(2, 2, gtf::INVALID, SHARED_GFN as u32); // not permitting
        w.grant(3, 2, gtf::ACCEPT_TRANSFER, SHARED_GFN as u32); // not an access grant
        w.grant(4, 2, gtf::PERMIT_ACCESS, 4000); // no such frame
        w.grant(7, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32); // good
        let host = gntmap::HOST_MAP;
        assert_eq!(w.map(1, 512, 1, host, MAP_GFN).status, st::BAD_GNTREF, "beyond the one frame {n}");
        assert_eq!(w.map(1, u32::MAX, 1, host, MAP_GFN).status, st::BAD_GNTREF);
        assert_eq!(w.map(1, 1, 1, host, MAP_GFN).status, st::GENERAL_ERROR, "granted to d3");
        assert_eq!(w.map(1, 2, 1, host, MAP_GFN).status, st::GENERAL_ERROR);
        assert_eq!(w.map(1, 3, 1, host, MAP_GFN).status, st::GENERAL_ERROR);
        assert_eq!(w.map(1, 4, 1, host, MAP_GFN).status, st::BAD_PAGE);
        assert_eq!(w.map(1, 7, 9, host, MAP_GFN).status, st::BAD_DOMAIN);
        assert_eq!(w.map(1, 7, domid::SELF, host, MAP_GFN).status, st::BAD_DOMAIN, "DOMID_SELF is no granter");
        assert_eq!(w.map(1, 7, 1, 0, MAP_GFN).status, st::BAD_GNTREF, "neither host nor device map");
        assert_eq!(w.map(1, 7, 1, host | gntmap::DEVICE_MAP, MAP_GFN).status, st::GENERAL_ERROR);
        assert_eq!(w.map(1, 7, 1, host | gntmap::CONTAINS_PTE, MAP_GFN).status, st::GENERAL_ERROR);
        // d3 may map what was granted to it, not what was granted to d2.
        assert_eq!(w.map(2, 7, 1, host, MAP_GFN).status, st::GENERAL_ERROR);
        // Nothing above left a pin, a flag or a reference behind.
        for gref in [1, 2, 3, 4, 7] {
            assert_eq!(w.entry_flags(gref) & (gtf::READING | gtf::WRITING), 0, "{n} {gref}");
        }
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr));
        // Pinned by d2, the entry refuses d3 even if it names d3 meanwhile.
        let m = w.map(1, 7, 1, host, MAP_GFN);
        assert_eq!(m.status, st::OKAY);
        w.grant(7, 3, gtf::PERMIT_ACCESS | gtf::READING | gtf::WRITING, SHARED_GFN as u32);
        assert_eq!(w.map(2, 7, 1, host, MAP_GFN).status, st::GENERAL_ERROR);
        // A mapping never lands on another mapping.
        w.grant(8, 2, gtf::PERMIT_ACCESS, 11);
        assert_eq!(w.map(1, 8, 1, host, MAP_GFN).status, st::GENERAL_ERROR);
        // Unmap: unknown handles, a wrong address, a device address.
        assert_eq!(w.unmap(1, m.handle + 1, MAP_GFN), st::BAD_HANDLE);
        assert_eq!(w.unmap(1, u32::MAX, MAP_GFN), st::BAD_HANDLE);
        assert_eq!(w.unmap(2, m.handle, MAP_GFN), st::BAD_HANDLE, "handles are per domain");
        assert_eq!(w.unmap(1, m.handle, MAP_GFN + 1), st::GENERAL_ERROR);
        let op = GnttabUnmapGrantRef {
            host_addr: MAP_GFN << 12,
            dev_bus_addr: 0x1000,
            handle: m.handle,
            ..Default::default()
        };
        let (_, out) = w.gnttab(1, gnttabop::UNMAP_GRANT_REF, op.as_bytes(), 1);
        assert_eq!(GnttabUnmapGrantRef::read_from_bytes(&out).unwrap().status, st::BAD_DEV_ADDR);
        assert_eq!(w.unmap(1, m.handle, MAP_GFN), st::OKAY);
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr));
        // Batched: two ops, each with its own status; a fault is -EFAULT.
        w.grant(7, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32);
        let a = GnttabMapGrantRef { host_addr: MAP_GFN << 12, flags: host, r#ref: 7, dom: 1, ..Default::default() };
        let b = GnttabMapGrantRef { r#ref: 9999, ..a };
        let mut both = a.as_bytes().to_vec();
        both.extend_from_slice(b.as_bytes());
        let (r, out) = w.gnttab(1, gnttabop::MAP_GRANT_REF, &both, 2);
        assert_eq!(r, 0);
        assert_eq!(GnttabMapGrantRef::read_from_bytes(&out[..32]).unwrap().status, st::OKAY);
        assert_eq!(GnttabMapGrantRef::read_from_bytes(&out[32..]).unwrap().status, st::BAD_GNTREF);
        let r = w.call(1, nr::GRANT_TABLE_OP, [gnttabop::MAP_GRANT_REF, u64::MAX - 8, 1, 0, 0, 0]);
        assert_eq!(r, Errno::EFAULT.to_hypercall_ret());
        let r = w.call(1, nr::GRANT_TABLE_OP, [gnttabop::MAP_GRANT_REF, ARG, 1 << 31, 0, 0, 0]);
        assert_eq!(r, Errno::EINVAL.to_hypercall_ret(), "a negative count");
        assert_eq!(w.call(1, nr::GRANT_TABLE_OP, [77, ARG, 1, 0, 0, 0]), Errno::ENOSYS.to_hypercall_ret());
    }
}

#[test]
fn killing_the_granter_or_the_mapper_tears_the_mapping_down() {
    for abi in layouts() {
        // The granter dies while d2 maps its frame writable.
        let mut w = World::with_table(abi);
        let shared = page(&w.d[0], SHARED_GFN);
        w.grant(5, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32);
        let m = w.map(1, 5, 1, gntmap::HOST_MAP, MAP_GFN);
        assert_eq!(m.status, st::OKAY);
        lifecycle::kill_among(&w.d[0], &vec![w.d[1].clone(), w.d[2].clone()]);
        assert!(w.d[1].p2m.lock().get(Gfn(MAP_GFN)).is_none(), "{}", abi.name());
        assert_eq!(w.d[1].grant_table.lock().nr_mappings(), 0);
        // With d1's memory released, no reference of any kind is left.
        assert_eq!((shared.refs(), shared.writable_refs()), (0, 0));
        assert_eq!(w.unmap(1, m.handle, MAP_GFN), st::BAD_HANDLE);
        assert_eq!(w.map(1, 5, 1, gntmap::HOST_MAP, MAP_GFN).status, st::BAD_DOMAIN, "dead");

        // The mapper dies while it maps d1's frame.
        let mut w = World::with_table(abi);
        let shared = page(&w.d[0], SHARED_GFN);
        let (refs, wr) = (shared.refs(), shared.writable_refs());
        w.grant(5, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32);
        assert_eq!(w.map(1, 5, 1, gntmap::HOST_MAP, MAP_GFN).status, st::OKAY);
        lifecycle::kill_among(&w.d[1], &vec![w.d[0].clone(), w.d[2].clone()]);
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr));
        assert_eq!(w.entry_flags(5), gtf::PERMIT_ACCESS);
        assert!(w.d[0].grant_table.lock().active.is_empty());
    }
}

#[test]
fn copy_between_domains_checks_bounds_permissions_and_pins() {
    for abi in layouts() {
        let mut w = World::with_table(abi);
        let n = abi.name();
        let shared = page(&w.d[0], SHARED_GFN);
        let (refs, wr) = (shared.refs(), shared.writable_refs());
        w.grant(3, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32);
        w.grant(4, 2, gtf::PERMIT_ACCESS | gtf::READONLY, 12);
        w.grant(5, 3, gtf::PERMIT_ACCESS, 13);
        write_phys(&w.d[1], gaddr(20, 100), b"d2 writes this").unwrap();
        let me = domid::SELF;
        let (sg, dg) = (gntcopy::SOURCE_GREF, gntcopy::DEST_GREF);
        // d2's gmfn 20 into d1's grant 3.
        assert_eq!(w.copy(1, (me, 20, 100), (1, 3, 500), 14, dg), st::OKAY, "{n}");
        let mut b = [0u8; 14];
        read_phys(&w.d[0], gaddr(SHARED_GFN, 500), &mut b).unwrap();
        assert_eq!(&b, b"d2 writes this");
        // d1's read-only grant 4 into d2's gmfn 21; a ref's upper bits are
        // not part of it.
        write_phys(&w.d[0], gaddr(12, 0), b"read only").unwrap();
        assert_eq!(w.copy(1, (1, 4, 0), (me, 21, 8), 9, sg), st::OKAY);
        let mut b = [0u8; 9];
        read_phys(&w.d[1], gaddr(21, 8), &mut b).unwrap();
        assert_eq!(&b, b"read only");
        // Grant to grant.
        assert_eq!(w.copy(1, (1, 4, 0), (1, 3, 0), 4, sg | dg), st::OKAY);
        // Failures.
        assert_eq!(w.copy(1, (me, 20, 4000), (1, 3, 0), 200, dg), st::BAD_COPY_ARG);
        assert_eq!(w.copy(1, (me, 20, 0), (1, 3, 4095), 2, dg), st::BAD_COPY_ARG);
        assert_eq!(w.copy(1, (me, 20, 0), (1, 4, 0), 4, dg), st::GENERAL_ERROR, "into a read-only grant");
        assert_eq!(w.copy(1, (1, 5, 0), (me, 21, 0), 4, sg), st::GENERAL_ERROR, "granted to d3");
        assert_eq!(w.copy(1, (1, 9999, 0), (me, 21, 0), 4, sg), st::BAD_GNTREF);
        assert_eq!(w.copy(1, (1, SHARED_GFN, 0), (me, 21, 0), 4, 0), st::PERMISSION_DENIED, "another's gmfn");
        assert_eq!(w.copy(1, (2, 20, 0), (me, 21, 0), 4, 0), st::PERMISSION_DENIED, "own id is not DOMID_SELF");
        assert_eq!(w.copy(1, (9, 3, 0), (me, 21, 0), 4, sg), st::BAD_DOMAIN);
        assert_eq!(w.copy(1, (me, 4000, 0), (1, 3, 0), 4, dg), st::BAD_PAGE);
        // d3 copies what was granted to it.
        assert_eq!(w.copy(2, (1, 5, 0), (me, 21, 0), 4, sg), st::OKAY);
        // No pin, flag or reference outlives a copy.
        for gref in [3, 4, 5] {
            assert_eq!(w.entry_flags(gref) & (gtf::READING | gtf::WRITING), 0, "{n} {gref}");
        }
        assert!(w.d[0].grant_table.lock().active.is_empty());
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr));
    }
}

#[test]
fn table_size_setup_and_version() {
    for abi in layouts() {
        let mut w = World::new(abi);
        let n = abi.name();
        let q = GnttabQuerySize { dom: domid::SELF, ..Default::default() };
        let (r, out) = w.gnttab(0, gnttabop::QUERY_SIZE, q.as_bytes(), 1);
        let q = GnttabQuerySize::read_from_bytes(&out).unwrap();
        assert_eq!((r, q.status, q.nr_frames, q.max_nr_frames), (0, st::OKAY, 1, 32), "{n}");
        let other = GnttabQuerySize { dom: 2, ..Default::default() };
        let (_, out) = w.gnttab(0, gnttabop::QUERY_SIZE, other.as_bytes(), 1);
        assert_eq!(GnttabQuerySize::read_from_bytes(&out).unwrap().status, st::PERMISSION_DENIED);
        let (_, out) = w.gnttab(0, gnttabop::QUERY_SIZE, GnttabQuerySize { dom: 9, ..q }.as_bytes(), 1);
        assert_eq!(GnttabQuerySize::read_from_bytes(&out).unwrap().status, st::BAD_DOMAIN);
        assert_eq!(w.gnttab(0, gnttabop::QUERY_SIZE, q.as_bytes(), 2).0, Errno::EINVAL.to_hypercall_ret());

        // Frame 0 mapped at TABLE_GFN, frame 2 grown by add_to_physmap.
        assert_eq!(w.map_table_frame(0, 0, TABLE_GFN), 0);
        assert_eq!(w.map_table_frame(0, 2, TABLE_GFN + 2), 0);
        assert_eq!(w.map_table_frame(0, 32, 40), Errno::EINVAL.to_hypercall_ret(), "beyond max");
        let status_frame = mapidx::GRANT_TABLE_STATUS;
        assert_eq!(w.map_table_frame(0, status_frame, 40), Errno::EINVAL.to_hypercall_ret(), "v1: no status frames");
        // Moving frame 2 unmaps it from its old gfn.
        assert_eq!(w.map_table_frame(0, 2, TABLE_GFN + 3), 0);
        assert!(w.d[0].p2m.lock().get(Gfn(TABLE_GFN + 2)).is_none());
        let ws = abi.xen_ulong_size();
        let setup = |nr: u32| -> Vec<u8> {
            if ws == 8 {
                GnttabSetupTable { dom: domid::SELF, nr_frames: nr, frame_list: LIST, ..Default::default() }
                    .as_bytes()
                    .to_vec()
            } else {
                let s = GnttabSetupTableHandle32 {
                    dom: domid::SELF,
                    nr_frames: nr,
                    frame_list: LIST as u32,
                    ..Default::default()
                };
                s.as_bytes().to_vec()
            }
        };
        write_phys(&w.d[0], LIST, &[0u8; 64]).unwrap();
        let (r, out) = w.gnttab(0, gnttabop::SETUP_TABLE, &setup(4), 1);
        assert_eq!((r, i16::from_le_bytes([out[8], out[9]])), (0, st::OKAY), "{n}");
        let mut list = vec![0u8; 4 * ws];
        read_phys(&w.d[0], LIST, &mut list).unwrap();
        let gfns: Vec<u64> = list
            .chunks(ws)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..ws].copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        let invalid = u64::MAX >> (64 - 8 * ws as u32);
        assert_eq!(gfns, [TABLE_GFN, invalid, TABLE_GFN + 3, invalid], "{n}");
        let (_, out) = w.gnttab(0, gnttabop::SETUP_TABLE, &setup(33), 1);
        assert_eq!(i16::from_le_bytes([out[8], out[9]]), st::GENERAL_ERROR);
        let q = GnttabQuerySize { dom: domid::SELF, ..Default::default() };
        let (_, out) = w.gnttab(0, gnttabop::QUERY_SIZE, q.as_bytes(), 1);
        assert_eq!(GnttabQuerySize::read_from_bytes(&out).unwrap().nr_frames, 4);

        // v1 stays; v2 is unavailable; the version in force is written back.
        let (r, out) = w.gnttab(0, gnttabop::SET_VERSION, GnttabSetVersion { version: 2 }.as_bytes(), 1);
        assert_eq!(
            (r, GnttabSetVersion::read_from_bytes(&out).unwrap().version),
            (Errno::ENOSYS.to_hypercall_ret(), 1)
        );
        let (r, _) = w.gnttab(0, gnttabop::SET_VERSION, GnttabSetVersion { version: 3 }.as_bytes(), 1);
        assert_eq!(r, Errno::EINVAL.to_hypercall_ret());
        let (r, out) = w.gnttab(0, gnttabop::SET_VERSION, GnttabSetVersion { version: 1 }.as_bytes(), 1);
        assert_eq!((r, GnttabSetVersion::read_from_bytes(&out).unwrap().version), (0, 1));
        let (r, out) = w.gnttab(0, gnttabop::GET_VERSION, &[0xf0, 0x7f, 0, 0, 0, 0, 0, 0], 1);
        assert_eq!((r, u32::from_le_bytes(out[4..8].try_into().unwrap())), (0, 1));
        let (r, _) = w.gnttab(0, gnttabop::GET_VERSION, &[9, 0, 0, 0, 0, 0, 0, 0], 1);
        assert_eq!(r, Errno::ESRCH.to_hypercall_ret());

        // Killing the domain releases its table frames.
        let f0 = page(&w.d[0], TABLE_GFN);
        lifecycle::kill(&w.d[0]);
        assert_eq!(f0.refs(), 0);
    }
}

#[test]
fn the_summary_lists_entries_pins_and_maps_and_nothing_after_unmap_and_revoke() {
    use lantern_common::grant_table::{summary, ActiveRow, EntryRow, MapRow};
    for abi in layouts() {
        let mut w = World::with_table(abi);
        let shared = page(&w.d[0], SHARED_GFN);
        let (refs, wr) = (shared.refs(), shared.writable_refs());
        w.grant(5, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32);
        let s = summary(&w.d[0]);
        assert_eq!((s.version, s.frames.clone()), (1, vec![Gfn(TABLE_GFN)]), "{}", abi.name());
        assert_eq!(
            s.entries,
            vec![EntryRow { gref: 5, flags: gtf::PERMIT_ACCESS, domid: 2, frame: SHARED_GFN as u32 }]
        );
        assert!(s.active.is_empty() && s.maps.is_empty());
        let m = w.map(1, 5, 1, gntmap::HOST_MAP, MAP_GFN);
        assert_eq!(m.status, st::OKAY);
        let s = summary(&w.d[0]);
        assert_eq!(s.entries[0].flags, gtf::PERMIT_ACCESS | gtf::READING | gtf::WRITING);
        let counts = (refs + 2, wr + 1);
        let pin = ActiveRow { gref: 5, domid: 2, gfn: Gfn(SHARED_GFN), readers: 0, writers: 1, refs: counts };
        assert_eq!(s.active, vec![pin]);
        let held = summary(&w.d[1]);
        let map = MapRow { handle: m.handle, granter: 1, gref: 5, gfn: Gfn(MAP_GFN), readonly: false, refs: counts };
        assert_eq!(held.maps, vec![map]);
        assert_eq!(w.unmap(1, m.handle, MAP_GFN), st::OKAY);
        // Revoked as a guest does: the entry back to GTF_invalid.
        w.grant(5, 0, gtf::INVALID, 0);
        let (s, held) = (summary(&w.d[0]), summary(&w.d[1]));
        assert!(s.entries.is_empty() && s.active.is_empty() && held.maps.is_empty(), "{s:?} {held:?}");
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr));
    }
}

#[test]
fn pins_of_one_kind_stop_before_xens_8_bit_counter_overflows() {
    for abi in layouts() {
        let mut w = World::with_table(abi);
        let shared = page(&w.d[0], SHARED_GFN);
        let (refs, wr) = (shared.refs(), shared.writable_refs());
        w.grant(5, 2, gtf::PERMIT_ACCESS, SHARED_GFN as u32);
        // Xen refuses a pin once the counter's top bit is set: 128 of a kind.
        let ro = gntmap::HOST_MAP | gntmap::READONLY;
        let handles: Vec<u32> = (0..128)
            .map(|i| {
                let m = w.map(1, 5, 1, ro, 100 + i);
                assert_eq!(m.status, st::OKAY, "{} pin {i}", abi.name());
                m.handle
            })
            .collect();
        assert_eq!(w.map(1, 5, 1, ro, 300).status, st::GENERAL_ERROR, "{}: 129th read pin", abi.name());
        // A copy, which needs any counter below its top bit, is refused too.
        let copy = w.copy(1, (1, 5, 0), (domid::SELF, MAP_GFN, 0), 8, gntcopy::SOURCE_GREF);
        assert_eq!(copy, st::GENERAL_ERROR);
        // Writable pins have their own counter.
        let m = w.map(1, 5, 1, gntmap::HOST_MAP, 301);
        assert_eq!(m.status, st::OKAY);
        assert_eq!(w.unmap(1, m.handle, 301), st::OKAY);
        // One unmapped: room for one more.
        assert_eq!(w.unmap(1, handles[0], 100), st::OKAY);
        let again = w.map(1, 5, 1, ro, 100);
        assert_eq!(again.status, st::OKAY);
        for (i, h) in handles.iter().enumerate().skip(1) {
            assert_eq!(w.unmap(1, *h, 100 + i as u64), st::OKAY);
        }
        assert_eq!(w.unmap(1, again.handle, 100), st::OKAY);
        assert_eq!((shared.refs(), shared.writable_refs()), (refs, wr));
        assert_eq!(w.entry_flags(5), gtf::PERMIT_ACCESS);
    }
}
