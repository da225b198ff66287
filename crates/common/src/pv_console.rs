//! The hypervisor-side backend of every domain's PV console (the job Xen's
//! `xenconsoled` does in dom0): a `xencons_interface` ring page the domain
//! builder maps at a reserved gfn, an event channel bound to this backend,
//! the output ring drained into the domain's [`Console`](crate::console)
//! lines, and serial input written into the input ring.
//!
//! The ring indices are free-running `u32`s the two sides share; every byte
//! is addressed through `index & (size - 1)`, so whatever the guest writes
//! into the indices, no access leaves the ring.

use core::mem::offset_of;
use core::sync::atomic::{fence, Ordering};

use crate::console::PvConsole;
use crate::domain::Domain;
use crate::memory::{Gfn, P2mType, Page};
use crate::ports::ChannelState;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::hvm_param;
use xen_abi::nr::xencons::{IN_RING_SIZE, OUT_RING_SIZE};
use xen_abi::public::XenconsInterface;

const IN: usize = offset_of!(XenconsInterface, in_);
const OUT: usize = offset_of!(XenconsInterface, out);
const IN_CONS: usize = offset_of!(XenconsInterface, in_cons);
const IN_PROD: usize = offset_of!(XenconsInterface, in_prod);
const OUT_CONS: usize = offset_of!(XenconsInterface, out_cons);
const OUT_PROD: usize = offset_of!(XenconsInterface, out_prod);

/// Gives `d` a PV console, as Xen's toolstack does when it builds a domain:
/// a zeroed ring page mapped at `gfn` (which the builder keeps out of the
/// guest's usable memory map), a port bound to this backend, and both
/// published in `HVM_PARAM_CONSOLE_PFN` / `HVM_PARAM_CONSOLE_EVTCHN`.
/// `-EEXIST` if it already has one.
pub fn attach(d: &Domain, gfn: Gfn) -> XenResult<PvConsole> {
    let mut slot = d.pv_console.lock();
    if slot.is_some() {
        return Err(Errno::EEXIST);
    }
    let page = Page::alloc(d.id)?;
    let port = d.evtchn.lock().alloc(ChannelState::ConsoleBackend, 0)?;
    d.p2m.lock().set(gfn, page.clone(), P2mType::RamRw);
    d.set_hvm_param(hvm_param::CONSOLE_PFN as usize, gfn.0)?;
    d.set_hvm_param(hvm_param::CONSOLE_EVTCHN as usize, port as u64)?;
    let c = PvConsole { gfn, port, page };
    *slot = Some(c.clone());
    Ok(c)
}

/// `d`'s PV console, if it has one.
pub fn of(d: &Domain) -> Option<PvConsole> {
    d.pv_console.lock().clone()
}

/// Rebinds the console's port after every port of `d` was closed (soft
/// reset), so the rebuilt guest finds a live console again.
pub(crate) fn rebind(d: &Domain) {
    let mut slot = d.pv_console.lock();
    let Some(c) = slot.as_mut() else { return };
    if let Ok(port) = d.evtchn.lock().alloc(ChannelState::ConsoleBackend, 0) {
        c.port = port;
        let _ = d.set_hvm_param(hvm_param::CONSOLE_EVTCHN as usize, port as u64);
    }
}

/// The guest sent an event on `port`: if that is its console port, the
/// backend drains the ring (Xen's `xenconsoled` wakes on the notification).
pub fn kick(d: &Domain, port: u32) {
    if of(d).is_some_and(|c| c.port == port) {
        drain(d);
    }
}

/// Notifies the guest on its console port, if the port is still bound to
/// this backend (the guest may have closed it).
fn notify(d: &Domain, port: u32) {
    crate::evtchn::raise_from_backend(d, port);
}

/// How much of a ring of `size` bytes the indices say is filled. A producer
/// index further ahead than the ring holds is the guest's error: only the
/// last `size` bytes it claims can still be in the ring, so only those are
/// taken (what `xenconsoled` does too).
fn filled(prod: u32, cons: u32, size: usize) -> (u32, usize) {
    let n = prod.wrapping_sub(cons) as usize;
    if n > size {
        (prod.wrapping_sub(size as u32), size)
    } else {
        (cons, n)
    }
}

/// Takes everything the guest produced into `out[]`, hands it to the
/// domain's console (complete lines reach the sink as `(dN) line`), and
/// tells the guest the space is free again. Returns the bytes taken.
pub fn drain(d: &Domain) -> usize {
    let Some(c) = of(d) else { return 0 };
    let page = c.page();
    let (Ok(prod), Ok(cons)) = (page.read_uint(OUT_PROD, 4), page.read_uint(OUT_CONS, 4)) else { return 0 };
    let (cons, n) = filled(prod as u32, cons as u32, OUT_RING_SIZE);
    if n == 0 {
        return 0;
    }
    // The producer index is read before the bytes it covers.
    fence(Ordering::Acquire);
    let mut bytes = [0u8; OUT_RING_SIZE];
    for (i, b) in bytes[..n].iter_mut().enumerate() {
        let at = OUT + (cons.wrapping_add(i as u32) as usize & (OUT_RING_SIZE - 1));
        *b = page.read_uint(at, 1).unwrap_or(0) as u8;
    }
    // Every byte is read before the guest may reuse its slot.
    fence(Ordering::SeqCst);
    let _ = page.write_uint(OUT_CONS, 4, cons.wrapping_add(n as u32) as u64);
    d.console.lock().write(&bytes[..n]);
    notify(d, c.port);
    n
}

/// Writes `bytes` into `d`'s input ring `in[]` as far as it has room and
/// raises the console port; returns how many were taken (input that does not
/// fit is dropped, like characters typed faster than a UART drains). A guest
/// whose consumer index claims more than the ring holds gets nothing.
pub fn input(d: &Domain, bytes: &[u8]) -> usize {
    let Some(c) = of(d) else { return 0 };
    let page = c.page();
    let (Ok(prod), Ok(cons)) = (page.read_uint(IN_PROD, 4), page.read_uint(IN_CONS, 4)) else { return 0 };
    let (prod, cons) = (prod as u32, cons as u32);
    let used = prod.wrapping_sub(cons) as usize;
    if used > IN_RING_SIZE {
        return 0;
    }
    let n = bytes.len().min(IN_RING_SIZE - used);
    if n == 0 {
        return 0;
    }
    // The consumer index is read before the slots it frees are reused.
    fence(Ordering::SeqCst);
    for (i, &b) in bytes[..n].iter().enumerate() {
        let at = IN + (prod.wrapping_add(i as u32) as usize & (IN_RING_SIZE - 1));
        let _ = page.write_uint(at, 1, b as u64);
    }
    // The bytes are visible before the index that publishes them.
    fence(Ordering::Release);
    let _ = page.write_uint(IN_PROD, 4, prod.wrapping_add(n as u32) as u64);
    notify(d, c.port);
    n
}

#[cfg(test)]
mod tests {
    use super::filled;

    #[test]
    fn filled_clamps_a_runaway_producer() {
        assert_eq!(filled(10, 4, 2048), (4, 6));
        assert_eq!(filled(3, u32::MAX - 2, 2048), (u32::MAX - 2, 6));
        assert_eq!(filled(5000, 0, 2048), (5000 - 2048, 2048));
        // A consumer ahead of the producer is a huge distance too.
        assert_eq!(filled(0, 1, 2048), (0u32.wrapping_sub(2048), 2048));
    }
}
