//! The one typed accessor for guest memory. [`PhysMem`] addresses a
//! domain's guest-physical space through its p2m; [`VirtMem`] addresses one
//! vCPU's guest-virtual space through its own page tables
//! ([`ArchVcpu::translate`]) and then the p2m. Both offer the same
//! [`GuestMemory`] operations: bytes, and whole `#[repr(C)]` mirrors read and
//! written through zerocopy. The page-chunking loop exists once, here.
//!
//! Semantics every user relies on:
//! * reads copy page by page and fail with `-EFAULT` at the first address
//!   that does not translate or is not mapped ([`GuestMemory::read_prefix`]
//!   returns how much was copied instead);
//! * writes are all-or-nothing: every page is translated and checked
//!   writable (read/write RAM) before the first byte is stored;
//! * a guest struct is copied out once, so a guest changing it meanwhile
//!   cannot make the hypervisor see two different values.

use alloc::vec::Vec;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::addr::{Gpa, Gva, PAGE_SIZE};
use crate::arch::ArchVcpu;
use crate::domain::Domain;
use crate::memory::{P2mType, PageRef};
use xen_abi::errno::{Errno, XenResult};

/// An address type the accessor understands.
pub trait GuestAddress: Copy {
    /// The raw value.
    fn raw(self) -> u64;
    /// The address whose raw value is `raw`.
    fn from_raw(raw: u64) -> Self;
}

impl GuestAddress for Gpa {
    fn raw(self) -> u64 {
        self.0
    }
    fn from_raw(raw: u64) -> Self {
        Gpa(raw)
    }
}

impl GuestAddress for Gva {
    fn raw(self) -> u64 {
        self.0
    }
    fn from_raw(raw: u64) -> Self {
        Gva(raw)
    }
}

/// Guest memory as one address space sees it.
pub trait GuestMemory {
    /// The addresses of this space.
    type Addr: GuestAddress;

    /// The domain whose memory this is.
    fn domain(&self) -> &Domain;

    /// The guest-physical address of `raw` in this space, for a read or a
    /// write; `-EFAULT` if it does not translate.
    fn resolve(&self, raw: u64, write: bool) -> XenResult<Gpa>;

    /// Copies `out.len()` bytes from `addr`; `-EFAULT` if any is unreachable.
    fn read_bytes(&self, addr: Self::Addr, out: &mut [u8]) -> XenResult<()> {
        match read_chunks(self, addr.raw(), out) {
            (_, None) => Ok(()),
            (_, Some(e)) => Err(e),
        }
    }

    /// Copies as many bytes from `addr` as are reachable before the first
    /// unreachable page; returns that count.
    fn read_prefix(&self, addr: Self::Addr, out: &mut [u8]) -> usize {
        read_chunks(self, addr.raw(), out).0
    }

    /// Stores `data` at `addr`, or nothing at all if any page of the range
    /// is unreachable or not writable (`-EFAULT`).
    fn write_bytes(&self, addr: Self::Addr, data: &[u8]) -> XenResult<()> {
        let pieces = resolve_for_write(self, addr.raw(), data.len(), true)?;
        for (page, offset, range) in pieces {
            page.write(offset, &data[range])?;
        }
        Ok(())
    }

    /// Stores `data` at `addr` as a debugger does: through the space's
    /// mapping whatever the guest's own page permissions say (as ptrace
    /// writes a read-only text page — a kernel maps its code read-only, and
    /// gdb still plants breakpoints there), but only into guest RAM the
    /// domain's guest-physical map lets it write. All or nothing.
    fn poke(&self, addr: Self::Addr, data: &[u8]) -> XenResult<()> {
        let pieces = resolve_for_write(self, addr.raw(), data.len(), false)?;
        for (page, offset, range) in pieces {
            page.write(offset, &data[range])?;
        }
        Ok(())
    }

    /// Sets `len` bytes at `addr` to `byte` (a loader zeroing `.bss`), or
    /// nothing at all if any page of the range is unreachable or not
    /// writable (`-EFAULT`).
    fn fill(&self, addr: Self::Addr, len: usize, byte: u8) -> XenResult<()> {
        let pieces = resolve_for_write(self, addr.raw(), len, true)?;
        for (page, offset, range) in pieces {
            page.fill(offset, range.len(), byte)?;
        }
        Ok(())
    }

    /// Reads a whole `T` (a `#[repr(C)]` mirror) from `addr`.
    fn read_obj<T: FromBytes + IntoBytes>(&self, addr: Self::Addr) -> XenResult<T>
    where
        Self: Sized,
    {
        let mut value = T::new_zeroed();
        self.read_bytes(addr, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Writes a whole `T` (a `#[repr(C)]` mirror) at `addr`.
    fn write_obj<T: IntoBytes + Immutable>(&self, addr: Self::Addr, value: &T) -> XenResult<()>
    where
        Self: Sized,
    {
        self.write_bytes(addr, value.as_bytes())
    }
}

/// A domain's guest-physical address space.
#[derive(Clone, Copy)]
pub struct PhysMem<'a> {
    domain: &'a Domain,
}

impl<'a> PhysMem<'a> {
    /// The guest-physical space of `domain`.
    pub fn new(domain: &'a Domain) -> Self {
        PhysMem { domain }
    }
}

impl GuestMemory for PhysMem<'_> {
    type Addr = Gpa;

    fn domain(&self) -> &Domain {
        self.domain
    }

    fn resolve(&self, raw: u64, _write: bool) -> XenResult<Gpa> {
        Ok(Gpa(raw))
    }
}

/// One vCPU's guest-virtual address space.
#[derive(Clone, Copy)]
pub struct VirtMem<'a> {
    domain: &'a Domain,
    vcpu: &'a dyn ArchVcpu,
}

impl<'a> VirtMem<'a> {
    /// The guest-virtual space of `vcpu`, a vCPU of `domain`.
    pub fn new(domain: &'a Domain, vcpu: &'a dyn ArchVcpu) -> Self {
        VirtMem { domain, vcpu }
    }
}

impl GuestMemory for VirtMem<'_> {
    type Addr = Gva;

    fn domain(&self) -> &Domain {
        self.domain
    }

    fn resolve(&self, raw: u64, write: bool) -> XenResult<Gpa> {
        self.vcpu.translate(self.domain, Gva(raw), write).map_err(|_| Errno::EFAULT)
    }
}

/// The chunks of `len` bytes at `start`: (address, range in the caller's
/// buffer), split at page boundaries of the *source* space. `None` for a
/// chunk whose address overflows.
fn chunks(start: u64, len: usize) -> impl Iterator<Item = Option<(u64, core::ops::Range<usize>)>> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let Some(addr) = start.checked_add(done as u64) else {
            done = len;
            return Some(None);
        };
        let n = (PAGE_SIZE - (addr as usize & (PAGE_SIZE - 1))).min(len - done);
        let range = done..done + n;
        done += n;
        Some(Some((addr, range)))
    })
}

/// The frame and offset behind `gpa`, if it is mapped (and writable RAM
/// when `write`).
fn frame_of(domain: &Domain, gpa: Gpa, write: bool) -> XenResult<(PageRef, usize)> {
    let p2m = domain.p2m.lock();
    let e = p2m.get(gpa.gfn()).ok_or(Errno::EFAULT)?;
    if write && e.p2mt != P2mType::RamRw {
        return Err(Errno::EFAULT);
    }
    Ok((e.page.clone(), gpa.page_offset()))
}

/// Reads into `out` chunk by chunk; returns the bytes copied and the error
/// that stopped it, if any.
fn read_chunks<M: GuestMemory + ?Sized>(mem: &M, start: u64, out: &mut [u8]) -> (usize, Option<Errno>) {
    let mut done = 0;
    for chunk in chunks(start, out.len()) {
        let Some((addr, range)) = chunk else { return (done, Some(Errno::EFAULT)) };
        let copied = mem
            .resolve(addr, false)
            .and_then(|gpa| frame_of(mem.domain(), gpa, false))
            .and_then(|(page, offset)| page.read(offset, &mut out[range.clone()]));
        if let Err(e) = copied {
            return (done, Some(e));
        }
        done = range.end;
    }
    (done, None)
}

/// Translates and checks every page of a write before anything is stored;
/// `as_guest`: the space's own write permissions apply too (not for a
/// debugger's write).
fn resolve_for_write<M: GuestMemory + ?Sized>(
    mem: &M,
    start: u64,
    len: usize,
    as_guest: bool,
) -> XenResult<Vec<(PageRef, usize, core::ops::Range<usize>)>> {
    chunks(start, len)
        .map(|chunk| {
            let (addr, range) = chunk.ok_or(Errno::EFAULT)?;
            let gpa = mem.resolve(addr, as_guest)?;
            let (page, offset) = frame_of(mem.domain(), gpa, true)?;
            Ok((page, offset, range))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_split_at_page_boundaries_and_stop_on_overflow() {
        let c: alloc::vec::Vec<_> = chunks(0xFF0, 0x20).collect();
        assert_eq!(c, [Some((0xFF0, 0..0x10)), Some((0x1000, 0x10..0x20))]);
        let c: alloc::vec::Vec<_> = chunks(u64::MAX - 7, 0x20).collect();
        assert_eq!(c, [Some((u64::MAX - 7, 0..8)), None]);
        assert_eq!(chunks(5, 0).count(), 0);
    }
}
