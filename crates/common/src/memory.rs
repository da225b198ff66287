//! Guest memory: 4 KiB frames with Xen-style reference counts, and the
//! per-domain guest-physical map (p2m) from gfn to frame.
//!
//! Frames are page-aligned allocations from the hypervisor heap. The boards
//! identity-map the heap, so a frame's host virtual address is also its host
//! physical address ([`Page::host_addr`]), which is what nested/stage-2 page
//! tables point at. On the host (unit tests) the same code runs on ordinary
//! heap memory.
//!
//! Every byte access to guest memory goes through the accessors on [`Page`]:
//! bounds-checked, never handing out a Rust reference into memory the guest can
//! write concurrently.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::HashMap;

use xen_abi::errno::{Errno, XenResult};

pub use crate::addr::{Gfn, PAGE_SHIFT, PAGE_SIZE};

/// A domain identifier, as in Xen (`domid_t`).
pub type DomId = u16;

const PAGE_LAYOUT: Layout = match Layout::from_size_align(PAGE_SIZE, PAGE_SIZE) {
    Ok(l) => l,
    Err(_) => panic!("page layout"),
};

/// One 4 KiB frame of memory owned by a domain, with Xen's two counts:
/// the general reference count (`count_info`; the p2m's allocation holds one)
/// and the writable type count (`type_info`; every writable mapping the
/// hypervisor keeps, such as a registered guest area, holds one).
pub struct Page {
    ptr: NonNull<u8>,
    owner: DomId,
    refs: AtomicU32,
    writable_refs: AtomicU32,
    /// The owner's page account, for a frame of the domain's own memory
    /// (`domheap`); `None` for hypervisor frames shared with it (shared_info,
    /// grant-table frames), which Xen does not count in `tot_pages` either.
    account: Option<Arc<Reservation>>,
}

/// A domain's page accounting, after Xen's `tot_pages` / `max_pages`: how
/// many frames of its own memory exist and how many it may have. A frame
/// counts from its allocation ([`Page::alloc_ram`]) until it is freed, i.e.
/// until the last reference to it goes — so a page the domain released but
/// another holder (a grant mapping, a registered area) still pins stays
/// counted, as in Xen, and nothing has to remember to decrement.
#[derive(Debug)]
pub struct Reservation {
    tot: AtomicU64,
    max: AtomicU64,
}

impl Reservation {
    /// An account with nothing allocated and room for `max_pages`.
    pub fn new(max_pages: u64) -> Arc<Self> {
        Arc::new(Reservation { tot: AtomicU64::new(0), max: AtomicU64::new(max_pages) })
    }

    /// Frames allocated and not yet freed (`domain_tot_pages`).
    pub fn tot_pages(&self) -> u64 {
        self.tot.load(Ordering::Acquire)
    }

    /// The most frames the domain may have (`max_pages`).
    pub fn max_pages(&self) -> u64 {
        self.max.load(Ordering::Acquire)
    }

    /// Sets the limit (`XEN_DOMCTL_max_mem`); frames above it stay, only
    /// new allocations are refused.
    pub fn set_max_pages(&self, max: u64) {
        self.max.store(max, Ordering::Release);
    }

    /// Claims `n` frames, all or none: `-ENOMEM` if that would take the
    /// domain past its limit (`assign_pages`' check).
    pub fn claim(&self, n: u64) -> XenResult<()> {
        let max = self.max_pages();
        self.tot
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_add(n).filter(|&t| t <= max))
            .map(|_| ())
            .map_err(|_| Errno::ENOMEM)
    }

    /// Gives back `n` frames claimed earlier.
    pub fn release(&self, n: u64) {
        let old = self.tot.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(old >= n, "tot_pages underflow");
    }
}

// SAFETY: a Page owns its allocation exclusively; all access goes through
// raw-pointer copies or atomics, never through shared Rust references into the
// frame, so it may be shared and sent between threads.
unsafe impl Send for Page {}
// SAFETY: see the Send impl above.
unsafe impl Sync for Page {}

/// A shared handle on a [`Page`]; the Rust-level ownership that keeps the
/// frame alive, independent of the Xen-level counts.
pub type PageRef = Arc<Page>;

impl Page {
    /// Allocates a zeroed hypervisor frame shared with `owner` (not counted
    /// in its reservation), with no references taken.
    pub fn alloc(owner: DomId) -> XenResult<PageRef> {
        Self::alloc_with(owner, None)
    }

    /// Allocates a zeroed frame of `owner`'s own memory, claimed from its
    /// `account` (`-ENOMEM` at the limit) and given back when freed.
    pub fn alloc_ram(owner: DomId, account: &Arc<Reservation>) -> XenResult<PageRef> {
        account.claim(1)?;
        // On failure the account was never attached: give the claim back.
        Self::alloc_with(owner, Some(account.clone())).inspect_err(|_| account.release(1))
    }

    fn alloc_with(owner: DomId, account: Option<Arc<Reservation>>) -> XenResult<PageRef> {
        // SAFETY: PAGE_LAYOUT has non-zero size.
        let raw = unsafe { alloc_zeroed(PAGE_LAYOUT) };
        let ptr = NonNull::new(raw).ok_or(Errno::ENOMEM)?;
        Ok(Arc::new(Page { ptr, owner, refs: AtomicU32::new(0), writable_refs: AtomicU32::new(0), account }))
    }

    /// Whether the frame is its owner's own memory (counted in its
    /// reservation) rather than a hypervisor frame shared with it.
    pub fn is_ram(&self) -> bool {
        self.account.is_some()
    }

    /// The domain this frame belongs to.
    pub fn owner(&self) -> DomId {
        self.owner
    }

    /// Host address of the frame (host-physical on the identity-mapped boards).
    pub fn host_addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Xen-level general reference count.
    pub fn refs(&self) -> u32 {
        self.refs.load(Ordering::Acquire)
    }

    /// Xen-level writable type reference count.
    pub fn writable_refs(&self) -> u32 {
        self.writable_refs.load(Ordering::Acquire)
    }

    /// Takes a general reference (`get_page`).
    pub fn get(&self) {
        self.refs.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops a general reference (`put_page`).
    pub fn put(&self) {
        let old = self.refs.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(old > 0, "page reference underflow");
    }

    /// Takes a writable type reference (`get_page_type(PGT_writable_page)`).
    pub fn get_writable(&self) {
        self.writable_refs.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops a writable type reference (`put_page_type`).
    pub fn put_writable(&self) {
        let old = self.writable_refs.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(old > 0, "page type reference underflow");
    }

    fn check(offset: usize, len: usize) -> XenResult<()> {
        if offset.checked_add(len).is_some_and(|end| end <= PAGE_SIZE) {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }

    /// Copies bytes out of the frame.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> XenResult<()> {
        Self::check(offset, out.len())?;
        // SAFETY: the range lies inside the live 4 KiB allocation (checked
        // above) and `out` is a distinct Rust buffer, so the regions do not
        // overlap.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies bytes into the frame.
    pub fn write(&self, offset: usize, data: &[u8]) -> XenResult<()> {
        Self::check(offset, data.len())?;
        // SAFETY: as in `read`, with the copy in the other direction.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Fills a range of the frame with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> XenResult<()> {
        Self::check(offset, len)?;
        // SAFETY: the range lies inside the live allocation (checked above).
        unsafe { core::ptr::write_bytes(self.ptr.as_ptr().add(offset), byte, len) };
        Ok(())
    }

    /// Reads a little-endian unsigned integer of `size` bytes (1, 2, 4 or 8).
    /// 8-byte reads and naturally aligned 4-byte reads are single loads (see
    /// [`Page::write_uint`]).
    pub fn read_uint(&self, offset: usize, size: usize) -> XenResult<u64> {
        match size {
            8 if offset.is_multiple_of(8) => {
                Self::check(offset, 8)?;
                Ok(self.atomic64(offset).load(Ordering::Acquire))
            }
            8 => {
                Self::check(offset, 8)?;
                Ok(u64::from_le(self.read_u64_unaligned(offset)))
            }
            4 if offset.is_multiple_of(4) => {
                Self::check(offset, 4)?;
                Ok(self.atomic32(offset).load(Ordering::Acquire) as u64)
            }
            _ => {
                let mut b = [0u8; 8];
                self.read(offset, &mut b[..size.min(8)])?;
                Ok(u64::from_le_bytes(b))
            }
        }
    }

    /// Writes the low `size` bytes (1, 2, 4 or 8) of `value`, little-endian.
    /// Naturally aligned 4- and 8-byte stores are single atomic stores, so a
    /// guest never observes a torn `evtchn_pending_sel` or `version`; an
    /// 8-byte store at any offset is one store instruction too (Xen's
    /// `write_atomic`), e.g. the packed compat runstate's `state_entry_time`
    /// at offset 4.
    pub fn write_uint(&self, offset: usize, size: usize, value: u64) -> XenResult<()> {
        Self::check(offset, size)?;
        match size {
            8 if offset.is_multiple_of(8) => self.atomic64(offset).store(value, Ordering::Release),
            8 => self.write_u64_unaligned(offset, value.to_le()),
            4 if offset.is_multiple_of(4) => self.atomic32(offset).store(value as u32, Ordering::Release),
            _ => self.write(offset, &value.to_le_bytes()[..size])?,
        }
        Ok(())
    }

    /// One unaligned 8-byte store. Callers checked the bounds.
    ///
    /// Why this is enough: on every CPU Lantern's boards run on (for Normal
    /// memory, which guest RAM is) an unaligned 8-byte store is a
    /// single instruction, and one that stays within a cache line is
    /// single-copy atomic, so a concurrent reader sees the old or the new
    /// value, never a mix — which is what Xen's `write_atomic` gives the
    /// compat runstate too. A byte copy (`memcpy`) would give no such
    /// guarantee: the bare-metal `memcpy` may store byte by byte.
    fn write_u64_unaligned(&self, offset: usize, value: u64) {
        core::sync::atomic::fence(Ordering::Release);
        // SAFETY: offset..offset+8 lies inside the live 4 KiB allocation
        // (checked by the caller); `write_unaligned` has no alignment
        // requirement, and no Rust reference into the frame exists.
        unsafe { core::ptr::write_unaligned(self.ptr.as_ptr().add(offset) as *mut u64, value) };
    }

    /// One unaligned 8-byte load (the reader's side of
    /// [`Page::write_u64_unaligned`]). Callers checked the bounds.
    fn read_u64_unaligned(&self, offset: usize) -> u64 {
        // SAFETY: as in `write_u64_unaligned`, for a load.
        let v = unsafe { core::ptr::read_unaligned(self.ptr.as_ptr().add(offset) as *const u64) };
        core::sync::atomic::fence(Ordering::Acquire);
        v
    }

    /// Atomically ORs `mask` into the `size`-byte (4 or 8) word at `offset`
    /// (which must be naturally aligned) and returns the old value.
    pub fn fetch_or(&self, offset: usize, size: usize, mask: u64) -> XenResult<u64> {
        Self::check(offset, size)?;
        match size {
            8 if offset.is_multiple_of(8) => Ok(self.atomic64(offset).fetch_or(mask, Ordering::AcqRel)),
            4 if offset.is_multiple_of(4) => Ok(self.atomic32(offset).fetch_or(mask as u32, Ordering::AcqRel) as u64),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Atomically clears `mask` in the `size`-byte word at `offset`; returns the old value.
    pub fn fetch_and_not(&self, offset: usize, size: usize, mask: u64) -> XenResult<u64> {
        Self::check(offset, size)?;
        match size {
            8 if offset.is_multiple_of(8) => Ok(self.atomic64(offset).fetch_and(!mask, Ordering::AcqRel)),
            4 if offset.is_multiple_of(4) => {
                Ok(self.atomic32(offset).fetch_and(!(mask as u32), Ordering::AcqRel) as u64)
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Atomically replaces the naturally aligned 4-byte word at `offset`
    /// with `new` if it still holds `current` (a guest-shared word such as a
    /// grant entry's flags and domid); returns the value found, `Ok` if it
    /// was `current` and the store happened.
    pub fn compare_exchange32(&self, offset: usize, current: u32, new: u32) -> XenResult<Result<u32, u32>> {
        Self::check(offset, 4)?;
        if !offset.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        Ok(self.atomic32(offset).compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }

    fn atomic64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: callers checked that offset..offset+8 lies inside the live
        // allocation and is 8-aligned; AtomicU64 has the layout of u64, and
        // atomics are the sanctioned way to share memory another agent (the
        // guest) may write concurrently.
        unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU64) }
    }

    fn atomic32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `atomic64`, for a 4-aligned 4-byte range.
        unsafe { &*(self.ptr.as_ptr().add(offset) as *const AtomicU32) }
    }

    /// Copies the whole frame from `src` (domain fork).
    pub fn copy_from_page(&self, src: &Page) {
        // SAFETY: both are live, distinct 4 KiB allocations (a page is never
        // copied onto itself: callers pass a freshly allocated child page).
        unsafe { core::ptr::copy_nonoverlapping(src.ptr.as_ptr(), self.ptr.as_ptr(), PAGE_SIZE) };
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: ptr came from alloc_zeroed(PAGE_LAYOUT) and is freed once,
        // when the last Arc goes away.
        unsafe { dealloc(self.ptr.as_ptr(), PAGE_LAYOUT) };
        if let Some(a) = &self.account {
            a.release(1);
        }
    }
}

impl core::fmt::Debug for Page {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Page(d{} @{:#x} refs={} wr={})", self.owner, self.host_addr(), self.refs(), self.writable_refs())
    }
}

/// The type of a p2m entry, after Xen's `p2m_type_t` (the subset we use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mType {
    /// Ordinary read/write RAM.
    RamRw,
    /// RAM the guest may only read (e.g. ROM images).
    RamRo,
}

/// One guest-physical mapping.
#[derive(Clone, Debug)]
pub struct P2mEntry {
    /// The frame mapped at this gfn (it may belong to another domain, e.g. a
    /// foreign mapping; the area rules refuse those).
    pub page: PageRef,
    /// Access type.
    pub p2mt: P2mType,
}

/// A domain's guest-physical map.
///
/// Changes are recorded in a change list that the arch backend drains to keep
/// its nested/stage-2 tables in sync ([`P2m::take_changes`]).
#[derive(Default)]
pub struct P2m {
    entries: HashMap<Gfn, P2mEntry>,
    changes: Vec<Gfn>,
    generation: u64,
}

impl P2m {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry at `gfn`, if any.
    pub fn get(&self, gfn: Gfn) -> Option<&P2mEntry> {
        self.entries.get(&gfn)
    }

    /// Installs `page` at `gfn`, taking the allocation reference on it, and
    /// returns the previous entry (whose reference has been dropped).
    pub fn set(&mut self, gfn: Gfn, page: PageRef, p2mt: P2mType) -> Option<P2mEntry> {
        page.get();
        let old = self.entries.insert(gfn, P2mEntry { page, p2mt });
        if let Some(old) = &old {
            old.page.put();
        }
        self.note_change(gfn);
        old
    }

    /// Removes the entry at `gfn`, dropping its allocation reference.
    pub fn remove(&mut self, gfn: Gfn) -> Option<P2mEntry> {
        let old = self.entries.remove(&gfn);
        if let Some(old) = &old {
            old.page.put();
            self.note_change(gfn);
        }
        old
    }

    /// Allocates `count` fresh zeroed RAM pages for `owner`, claimed from
    /// `account`, at `first_gfn..`.
    pub fn populate_ram(
        &mut self,
        owner: DomId,
        account: &Arc<Reservation>,
        first_gfn: Gfn,
        count: u64,
    ) -> XenResult<()> {
        let end = first_gfn.0.checked_add(count).ok_or(Errno::EINVAL)?;
        for gfn in first_gfn.0..end {
            self.set(Gfn(gfn), Page::alloc_ram(owner, account)?, P2mType::RamRw);
        }
        Ok(())
    }

    /// Number of mapped gfns.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over all mappings (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (Gfn, &P2mEntry)> {
        self.entries.iter().map(|(g, e)| (*g, e))
    }

    /// Drops every mapping and its allocation reference (domain destruction).
    pub fn clear(&mut self) {
        let gfns: Vec<Gfn> = self.entries.keys().copied().collect();
        for gfn in gfns {
            self.remove(gfn);
        }
    }

    /// Bumped on every change; lets backends skip work when nothing changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Takes the list of gfns changed since the last call.
    pub fn take_changes(&mut self) -> Vec<Gfn> {
        core::mem::take(&mut self.changes)
    }

    fn note_change(&mut self, gfn: Gfn) {
        self.generation += 1;
        self.changes.push(gfn);
    }
}
