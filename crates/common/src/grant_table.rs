//! Grant tables v1, after Xen's `common/grant_table.c`: a domain grants
//! another access to one of its frames by writing a `grant_entry_v1` into its
//! shared table frames; the grantee maps the frame into its own p2m
//! (`GNTTABOP_map_grant_ref`), unmaps it, or copies bytes through it
//! (`GNTTABOP_copy`). Per-operation failures are `GNTST_*` statuses
//! ([`Status`]); hypercall-level failures (bad arguments, faults) are errnos.
//!
//! Rules (Xen's, for an HVM mapper and granter):
//! * only the domain named in the entry may pin it, and only while the entry
//!   says `GTF_permit_access` (checked at the first pin; later pins by the
//!   same domain follow the active entry); otherwise `GNTST_general_error`;
//! * a `GTF_readonly` entry is never pinned writable (`GNTST_general_error`,
//!   Xen's status for "write-pin of a r/o grant entry");
//! * an entry holds at most 128 pins of each kind (read-only, writable);
//!   the next is `GNTST_general_error`, as Xen's 8-bit pin counters refuse;
//! * `GTF_reading` is set while anything pins the entry, `GTF_writing` while
//!   anything pins it writable; both are cleared by the last unpin;
//! * a mapping holds a general reference on the granted frame and, when
//!   writable, a writable type reference, until it is unmapped or torn down;
//!   the mapper's p2m entry (RamRw or RamRo) holds the p2m's own reference;
//! * a dying domain's mappings, and every mapping other domains hold of its
//!   grants, are torn down ([`release_all`]), leaving no dangling p2m entry
//!   and no page reference behind.
//!
//! Locking: a domain's grant table lock comes before its p2m lock; no
//! operation holds two domains' grant table locks at once.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::directory::{lookup, DomainDirectory};
use crate::domain::{Domain, Lifecycle};
use crate::grants::{ActiveGrant, GrantFrame, GrantMapping, GrantTable, MAX_GRANT_FRAMES};
use crate::memory::{DomId, Gfn, P2m, P2mType, Page, PageRef, PAGE_SHIFT, PAGE_SIZE};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::gnttab::{INITIAL_FRAMES, VERSION_1, VERSION_2};
use xen_abi::nr::gnttab_status as st;
use xen_abi::nr::{gntmap, gtf, mapidx};

/// A `GNTST_*` status.
pub type Status = i16;

/// Pins of one kind (read-only or writable) an entry may hold: Xen counts
/// each kind in 8 bits and refuses a pin once the counter's top bit is set
/// (`GNTPIN_incr2oflow_mask`), so it can never overflow.
const PIN_LIMIT: u32 = 1 << 7;

/// How often a guest may race a grant entry's flags update before the pin
/// fails (Xen allows five tries).
const SET_STATUS_TRIES: usize = 5;

/// Grows `gt` to at least `n` frames (each owned by `d`, with the table's
/// reference on it).
fn grow(d: &Domain, gt: &mut GrantTable, n: u32) -> XenResult<()> {
    if n > MAX_GRANT_FRAMES {
        return Err(Errno::EINVAL);
    }
    while (gt.frames.len() as u32) < n.max(INITIAL_FRAMES) {
        let page = Page::alloc(d.id)?;
        page.get();
        gt.frames.push(GrantFrame { page, gfn: Gfn::INVALID });
    }
    Ok(())
}

/// The gfn frame `f` is mapped at in `p2m`, or [`Gfn::INVALID`]
/// (`gnttab_shared_gfn`).
fn shared_gfn(f: &GrantFrame, p2m: &P2m) -> Gfn {
    match p2m.get(f.gfn) {
        Some(e) if Arc::ptr_eq(&e.page, &f.page) => f.gfn,
        _ => Gfn::INVALID,
    }
}

/// `GNTTABOP_query_size`: (frames in use, most frames allowed).
pub fn query_size(d: &Domain) -> Result<(u32, u32), Status> {
    let mut gt = d.grant_table.lock();
    grow(d, &mut gt, INITIAL_FRAMES).map_err(|_| st::GENERAL_ERROR)?;
    Ok((gt.frames.len() as u32, MAX_GRANT_FRAMES))
}

/// `GNTTABOP_setup_table`: grows the table to `nr_frames` and returns the
/// gfns its first `nr_frames` frames are mapped at (an HVM guest maps them
/// with `XENMAPSPACE_grant_table`; an unmapped frame reads as
/// [`Gfn::INVALID`]).
pub fn setup_table(d: &Domain, nr_frames: u32) -> Result<Vec<Gfn>, Status> {
    if nr_frames > MAX_GRANT_FRAMES {
        return Err(st::GENERAL_ERROR);
    }
    let mut gt = d.grant_table.lock();
    grow(d, &mut gt, nr_frames).map_err(|_| st::GENERAL_ERROR)?;
    let p2m = d.p2m.lock();
    Ok(gt.frames[..nr_frames as usize].iter().map(|f| shared_gfn(f, &p2m)).collect())
}

/// `GNTTABOP_set_version`: v1 is the version in force and stays; v2 is
/// unavailable (`-ENOSYS`, as Xen when `max_grant_version` is 1); anything
/// else is `-EINVAL`. Returns the version in force, which Xen writes back
/// whatever the outcome, and the outcome.
pub fn set_version(d: &Domain, version: u32) -> (u32, XenResult<()>) {
    let current = d.grant_table.lock().version;
    let r = match version {
        VERSION_1 => Ok(()),
        VERSION_2 => Err(Errno::ENOSYS),
        _ => Err(Errno::EINVAL),
    };
    (current, r)
}

/// `GNTTABOP_get_version`.
pub fn get_version(d: &Domain) -> u32 {
    d.grant_table.lock().version
}

/// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`: maps table frame `idx`
/// at `gfn` (growing the table to `idx + 1` frames), replacing whatever was
/// there and unmapping the frame from its previous gfn. A v2 status frame
/// (`XENMAPIDX_grant_table_status`) or an index beyond the most frames
/// allowed is `-EINVAL`.
pub fn map_frame(d: &Domain, idx: u64, gfn: Gfn) -> XenResult<()> {
    if idx & mapidx::GRANT_TABLE_STATUS != 0 || idx >= MAX_GRANT_FRAMES as u64 || gfn == Gfn::INVALID {
        return Err(Errno::EINVAL);
    }
    let mut gt = d.grant_table.lock();
    grow(d, &mut gt, idx as u32 + 1).map_err(|_| Errno::EINVAL)?;
    let f = &mut gt.frames[idx as usize];
    let mut p2m = d.p2m.lock();
    let old = shared_gfn(f, &p2m);
    if old != Gfn::INVALID && old != gfn {
        p2m.remove(old);
    }
    p2m.set(gfn, f.page.clone(), P2mType::RamRw);
    f.gfn = gfn;
    Ok(())
}

/// Sets `GTF_reading` (and `GTF_writing` unless `readonly`) in the entry at
/// `off` of `page`, checking first — unless the entry is already pinned —
/// that it permits access to `grantee` (Xen's `_set_status_v1`).
fn set_status(
    page: &Page,
    off: usize,
    grantee: DomId,
    readonly: bool,
    mapflag: bool,
    pinned: bool,
) -> Result<(), Status> {
    let mask = gtf::TYPE_MASK | if mapflag { gtf::SUB_PAGE } else { 0 };
    let mut cur = page.read_uint(off, 4).map_err(|_| st::GENERAL_ERROR)? as u32;
    for _ in 0..SET_STATUS_TRIES {
        let (flags, domid) = (cur as u16, (cur >> 16) as u16);
        if !pinned && (flags & mask != gtf::PERMIT_ACCESS || domid != grantee) {
            return Err(st::GENERAL_ERROR);
        }
        let mut new = flags | gtf::READING;
        if !readonly {
            if flags & gtf::READONLY != 0 {
                return Err(st::GENERAL_ERROR);
            }
            new |= gtf::WRITING;
        }
        match page.compare_exchange32(off, cur, (cur & 0xFFFF_0000) | new as u32) {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(found)) => cur = found,
            Err(_) => return Err(st::GENERAL_ERROR),
        }
    }
    Err(st::GENERAL_ERROR)
}

/// Clears `GTF_writing` once no writable pin is left, `GTF_reading` once no
/// pin is left (`reduce_status_for_pin`).
fn reduce_status(page: &Page, off: usize, readers: u32, writers: u32) {
    let mut clear = 0u16;
    if writers == 0 {
        clear |= gtf::WRITING;
    }
    if readers + writers == 0 {
        clear |= gtf::READING;
    }
    let _ = page.fetch_and_not(off, 4, clear as u64);
}

/// The frame at `gfn` of `d` for a grant: RAM owned by `d` (a foreign
/// mapping is refused), writable RAM unless `readonly` (`get_paged_frame`).
/// Returns it and whether it is writable RAM.
fn paged_frame(d: &Domain, gfn: Gfn, readonly: bool) -> Result<(PageRef, bool), Status> {
    let p2m = d.p2m.lock();
    let e = p2m.get(gfn).ok_or(st::BAD_PAGE)?;
    let writable = e.p2mt == P2mType::RamRw;
    if e.page.owner() != d.id || (!readonly && !writable) {
        return Err(st::BAD_PAGE);
    }
    Ok((e.page.clone(), writable))
}

/// Whether one more pin of `a` would reach Xen's counter limit: a map
/// checks the counter it increments; a copy refuses once any counter has
/// reached it (`acquire_grant_for_copy`).
fn near_overflow(a: &ActiveGrant, readonly: bool, mapflag: bool) -> bool {
    if mapflag {
        (if readonly { a.readers } else { a.writers }) >= PIN_LIMIT
    } else {
        a.readers >= PIN_LIMIT || a.writers >= PIN_LIMIT
    }
}

/// Pins entry `gref` of `granter`'s table for `grantee` (a map when
/// `mapflag`, else a copy) and returns the granted frame.
fn pin(granter: &Domain, gref: u32, grantee: DomId, readonly: bool, mapflag: bool) -> Result<PageRef, Status> {
    let mut gt = granter.grant_table.lock();
    grow(granter, &mut gt, INITIAL_FRAMES).map_err(|_| st::GENERAL_ERROR)?;
    if gref >= gt.nr_entries() {
        return Err(st::BAD_GNTREF);
    }
    let (entry, off) = gt.entry_location(gref).map(|(p, o)| (p.clone(), o)).ok_or(st::BAD_GNTREF)?;
    let (pinned, writers) = match gt.active.get(&gref) {
        Some(a) if a.pinned() && (a.domid != grantee || near_overflow(a, readonly, mapflag)) => {
            return Err(st::GENERAL_ERROR)
        }
        Some(a) => (a.pinned(), a.writers),
        None => (false, 0),
    };
    if !pinned || (!readonly && writers == 0) {
        set_status(&entry, off, grantee, readonly, mapflag, pinned)?;
    }
    if !pinned {
        let frame = entry.read_uint(off + 4, 4).map_err(|_| st::GENERAL_ERROR)?;
        match paged_frame(granter, Gfn(frame), readonly) {
            Ok((page, writable)) => {
                let a = ActiveGrant { domid: grantee, gfn: Gfn(frame), page, writable, readers: 0, writers: 0 };
                gt.active.insert(gref, a);
            }
            Err(s) => {
                reduce_status(&entry, off, 0, 0);
                return Err(s);
            }
        }
    }
    let a = gt.active.get_mut(&gref).ok_or(st::GENERAL_ERROR)?;
    if !readonly && !a.writable {
        // First pinned read-only on a read-only frame: no writable pin.
        reduce_status(&entry, off, a.readers, a.writers);
        return Err(st::BAD_PAGE);
    }
    if readonly {
        a.readers += 1;
    } else {
        a.writers += 1;
    }
    Ok(a.page.clone())
}

/// Drops one pin of entry `gref` of `granter`'s table.
fn unpin(granter: &Domain, gref: u32, readonly: bool) {
    let mut gt = granter.grant_table.lock();
    let Some(a) = gt.active.get_mut(&gref) else { return };
    if readonly {
        a.readers = a.readers.saturating_sub(1);
    } else {
        a.writers = a.writers.saturating_sub(1);
    }
    let (readers, writers) = (a.readers, a.writers);
    if readers + writers == 0 {
        gt.active.remove(&gref);
    }
    if let Some((entry, off)) = gt.entry_location(gref) {
        reduce_status(entry, off, readers, writers);
    }
}

/// A live domain other than a dead one, as a grant operation sees it.
fn live<'a>(me: &'a Domain, dir: &'a dyn DomainDirectory, id: DomId) -> Option<&'a Domain> {
    lookup(me, dir, id).filter(|d| d.lifecycle() != Lifecycle::Dead)
}

/// `GNTTABOP_map_grant_ref` for an HVM mapper: maps grant `gref` of domain
/// `dom` at the guest-physical `host_addr` of `mapper` and returns the grant
/// handle.
pub fn map_grant_ref(
    mapper: &Domain,
    dir: &dyn DomainDirectory,
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: DomId,
) -> Result<u32, Status> {
    if flags & (gntmap::DEVICE_MAP | gntmap::HOST_MAP) == 0 {
        return Err(st::BAD_GNTREF);
    }
    // An HVM domain has no device or PTE-based mappings.
    if flags & (gntmap::DEVICE_MAP | gntmap::APPLICATION_MAP | gntmap::CONTAINS_PTE) != 0 {
        return Err(st::GENERAL_ERROR);
    }
    let granter = live(mapper, dir, dom).ok_or(st::BAD_DOMAIN)?;
    if mapper.grant_table.lock().free_handle().is_none() {
        return Err(st::NO_SPACE);
    }
    let readonly = flags & gntmap::READONLY != 0;
    let page = pin(granter, gref, mapper.id, readonly, true)?;
    let gfn = Gfn(host_addr >> PAGE_SHIFT);
    let mut gt = mapper.grant_table.lock();
    let handle = gt.free_handle();
    let mut p2m = mapper.p2m.lock();
    // Only the mapper's own ordinary memory may be replaced: not another
    // mapping (foreign), nor shared_info or a grant-table frame.
    let refused = p2m.get(gfn).is_some_and(|e| {
        e.page.owner() != mapper.id
            || Arc::ptr_eq(&e.page, mapper.shared_info())
            || gt.frames.iter().any(|f| Arc::ptr_eq(&f.page, &e.page))
    });
    let Some(handle) = handle.filter(|_| !refused) else {
        drop(p2m);
        drop(gt);
        unpin(granter, gref, readonly);
        return Err(if refused { st::GENERAL_ERROR } else { st::NO_SPACE });
    };
    page.get();
    if !readonly {
        page.get_writable();
    }
    let covered = p2m.set(gfn, page.clone(), if readonly { P2mType::RamRo } else { P2mType::RamRw });
    drop(p2m);
    if let Some(old) = covered {
        mapper.keep_unmapped(old.page);
    }
    gt.put_mapping(handle, GrantMapping { granter: dom, gref, gfn, readonly, page });
    Ok(handle)
}

/// Tears down mapping `m` held by `holder`: its p2m entry (if it still
/// maps the frame), its page references, and its pin in `granter`'s table.
fn release(holder: &Domain, granter: Option<&Domain>, m: GrantMapping) {
    {
        let mut p2m = holder.p2m.lock();
        if p2m.get(m.gfn).is_some_and(|e| Arc::ptr_eq(&e.page, &m.page)) {
            p2m.remove(m.gfn);
        }
    }
    if !m.readonly {
        m.page.put_writable();
    }
    m.page.put();
    if let Some(g) = granter {
        unpin(g, m.gref, m.readonly);
    }
}

/// `GNTTABOP_unmap_grant_ref`: unmaps the mapping `handle` of `mapper`,
/// which must be at `host_addr` (a host address of 0 unmaps nothing, as in
/// Xen); a device address other than 0 is `GNTST_bad_dev_addr` (there are
/// no device mappings).
pub fn unmap_grant_ref(
    mapper: &Domain,
    dir: &dyn DomainDirectory,
    host_addr: u64,
    dev_bus_addr: u64,
    handle: u32,
) -> Result<(), Status> {
    let m = {
        let mut gt = mapper.grant_table.lock();
        let slot = gt.maptrack.get_mut(handle as usize).filter(|s| s.is_some()).ok_or(st::BAD_HANDLE)?;
        let m = slot.as_ref().ok_or(st::BAD_HANDLE)?;
        if dev_bus_addr != 0 {
            return Err(st::BAD_DEV_ADDR);
        }
        if host_addr == 0 {
            return Ok(());
        }
        if Gfn(host_addr >> PAGE_SHIFT) != m.gfn {
            return Err(st::GENERAL_ERROR);
        }
        slot.take().ok_or(st::BAD_HANDLE)?
    };
    release(mapper, lookup(mapper, dir, m.granter), m);
    Ok(())
}

/// One side of a `GNTTABOP_copy`.
#[derive(Clone, Copy, Debug)]
pub struct CopyPtr {
    /// The domain (`DOMID_SELF` allowed).
    pub domid: DomId,
    /// Whether `frame` is a grant reference (`GNTCOPY_*_gref`) or a gmfn.
    pub is_gref: bool,
    /// The grant reference or the gmfn.
    pub frame: u64,
    /// Byte offset within the frame.
    pub offset: u16,
}

/// The frame behind one side of a copy, pinned if it is a grant.
fn acquire_for_copy(caller: &Domain, d: &Domain, p: &CopyPtr, readonly: bool) -> Result<PageRef, Status> {
    if p.is_gref {
        pin(d, p.frame as u32, caller.id, readonly, false)
    } else {
        paged_frame(d, Gfn(p.frame), readonly).map(|(page, _)| page)
    }
}

/// The domain of one side of a copy: a gmfn only for `DOMID_SELF`
/// (`GNTST_permission_denied`), a grant of any live domain.
fn copy_domain<'a>(caller: &'a Domain, dir: &'a dyn DomainDirectory, p: &CopyPtr) -> Result<&'a Domain, Status> {
    if !p.is_gref && p.domid != DOMID_SELF {
        return Err(st::PERMISSION_DENIED);
    }
    let id = if p.domid == DOMID_SELF { caller.id } else { p.domid };
    live(caller, dir, id).ok_or(st::BAD_DOMAIN)
}

/// `GNTTABOP_copy` of one operation: `len` bytes from `src` to `dst`, each
/// inside its frame (`GNTST_bad_copy_arg`), with the grant rules of a
/// read-only pin of the source and a writable pin of the destination.
pub fn copy(caller: &Domain, dir: &dyn DomainDirectory, src: CopyPtr, dst: CopyPtr, len: u16) -> Status {
    match copy_inner(caller, dir, src, dst, len) {
        Ok(()) => st::OKAY,
        Err(s) => s,
    }
}

fn copy_inner(caller: &Domain, dir: &dyn DomainDirectory, src: CopyPtr, dst: CopyPtr, len: u16) -> Result<(), Status> {
    let len = len as usize;
    if src.offset as usize + len > PAGE_SIZE || dst.offset as usize + len > PAGE_SIZE {
        return Err(st::BAD_COPY_ARG);
    }
    let sd = copy_domain(caller, dir, &src)?;
    let dd = copy_domain(caller, dir, &dst)?;
    let from = acquire_for_copy(caller, sd, &src, true)?;
    let r = acquire_for_copy(caller, dd, &dst, false).and_then(|to| {
        let r = (|| {
            let mut buf = vec![0u8; len];
            from.read(src.offset as usize, &mut buf)?;
            to.write(dst.offset as usize, &buf)
        })()
        .map_err(|_| st::GENERAL_ERROR);
        if dst.is_gref {
            unpin(dd, dst.frame as u32, false);
        }
        r
    });
    if src.is_gref {
        unpin(sd, src.frame as u32, true);
    }
    r
}

/// Tears down `d`'s grant state as it dies (`gnttab_release_mappings` and
/// more): every mapping it holds, every mapping the domains of `dir` hold
/// of its grants (so no other domain keeps a dangling mapping or a page
/// reference of it), and its table frames.
pub fn release_all(d: &Domain, dir: &dyn DomainDirectory) {
    let held: Vec<GrantMapping> = core::mem::take(&mut d.grant_table.lock().maptrack).into_iter().flatten().collect();
    for m in held {
        release(d, lookup(d, dir, m.granter), m);
    }
    let mut mappers: Vec<DomId> =
        d.grant_table.lock().active.values().map(|a| a.domid).filter(|&id| id != d.id).collect();
    mappers.sort_unstable();
    mappers.dedup();
    for holder in mappers.into_iter().filter_map(|id| dir.find(id)) {
        let revoked: Vec<GrantMapping> = {
            let mut gt = holder.grant_table.lock();
            gt.maptrack
                .iter_mut()
                .filter(|s| s.as_ref().is_some_and(|m| m.granter == d.id))
                .filter_map(Option::take)
                .collect()
        };
        for m in revoked {
            release(holder, Some(d), m);
        }
    }
    let frames = {
        let mut gt = d.grant_table.lock();
        gt.active.clear();
        core::mem::take(&mut gt.frames)
    };
    let mut p2m = d.p2m.lock();
    for f in frames {
        if shared_gfn(&f, &p2m) != Gfn::INVALID {
            p2m.remove(f.gfn);
        }
        f.page.put();
    }
}

/// One entry of a grant table that is in use: granting something
/// (`GTF_permit_access` or another type) or still marked pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRow {
    /// The grant reference.
    pub gref: u32,
    /// `GTF_*` as the guest and the hypervisor left them.
    pub flags: u16,
    /// The domain the entry names.
    pub domid: DomId,
    /// The granted gfn.
    pub frame: u32,
}

/// One pinned entry of a grant table (the granter's side of a mapping or a
/// copy in progress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveRow {
    /// The grant reference.
    pub gref: u32,
    /// The domain using it.
    pub domid: DomId,
    /// The granted gfn at the first pin.
    pub gfn: Gfn,
    /// Read-only and writable pins.
    pub readers: u32,
    /// Writable pins.
    pub writers: u32,
    /// The frame's general and writable reference counts.
    pub refs: (u32, u32),
}

/// One mapping a domain holds of another domain's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRow {
    /// The grant handle.
    pub handle: u32,
    /// The granting domain and its grant reference.
    pub granter: DomId,
    /// The grant reference.
    pub gref: u32,
    /// Where it is mapped in the holder's p2m.
    pub gfn: Gfn,
    /// Whether it is mapped read-only.
    pub readonly: bool,
    /// The frame's general and writable reference counts.
    pub refs: (u32, u32),
}

/// A domain's grant state for debuggers (the gdb stub's `monitor grants`,
/// a serial debug key): the table's version and frames, its entries in use,
/// its pinned entries and the mappings the domain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The version in force.
    pub version: u32,
    /// Where each table frame is mapped in the domain ([`Gfn::INVALID`]:
    /// not mapped by the guest).
    pub frames: Vec<Gfn>,
    /// Entries in use, by reference.
    pub entries: Vec<EntryRow>,
    /// Pinned entries, by reference.
    pub active: Vec<ActiveRow>,
    /// Mappings held, by handle.
    pub maps: Vec<MapRow>,
}

/// The grant state of `d` (see [`Summary`]); takes `d`'s grant-table lock,
/// then its p2m lock, never another domain's.
pub fn summary(d: &Domain) -> Summary {
    let gt = d.grant_table.lock();
    let frames = {
        let p2m = d.p2m.lock();
        gt.frames.iter().map(|f| shared_gfn(f, &p2m)).collect()
    };
    let mut entries = Vec::new();
    for gref in 0..gt.nr_entries() {
        let Some((page, off)) = gt.entry_location(gref) else { break };
        let Ok(raw) = page.read_uint(off, 8) else { continue };
        let (flags, domid, frame) = (raw as u16, (raw >> 16) as u16, (raw >> 32) as u32);
        if flags & (gtf::TYPE_MASK | gtf::READING | gtf::WRITING) != 0 {
            entries.push(EntryRow { gref, flags, domid, frame });
        }
    }
    let mut active: Vec<ActiveRow> = gt
        .active
        .iter()
        .map(|(&gref, a)| ActiveRow {
            gref,
            domid: a.domid,
            gfn: a.gfn,
            readers: a.readers,
            writers: a.writers,
            refs: (a.page.refs(), a.page.writable_refs()),
        })
        .collect();
    active.sort_by_key(|a| a.gref);
    let maps = gt
        .maptrack
        .iter()
        .enumerate()
        .filter_map(|(h, m)| {
            let m = m.as_ref()?;
            Some(MapRow {
                handle: h as u32,
                granter: m.granter,
                gref: m.gref,
                gfn: m.gfn,
                readonly: m.readonly,
                refs: (m.page.refs(), m.page.writable_refs()),
            })
        })
        .collect();
    Summary { version: gt.version, frames, entries, active, maps }
}
