//! The FIFO event-channel ABI: a 32-bit event word per port (PENDING,
//! MASKED, LINKED and BUSY bits and a 17-bit link) in guest event-array
//! pages, and per vCPU a control block in guest RAM with a READY bitmap and
//! one queue head per priority. Pending, unmasked ports are linked onto the
//! tail of their vCPU's queue for their priority; the guest consumes from the
//! heads, most urgent priority (0) first.
//!
//! This is the state and the event-word logic, below the domain that holds
//! it (in its port table); the `EVTCHNOP_*` operations that set it up are in
//! `evtchn::fifo`. Every control block and array page is a guest frame taken
//! with a general and a writable type reference (as a registered guest area
//! is), released when the state is dropped (the domain's ports closed on
//! kill or soft reset), so ballooning the frame out cannot leave the
//! hypervisor writing a page the domain no longer owns.

use alloc::vec::Vec;
use core::ops::Range;

use crate::addr::PAGE_SIZE;
use crate::memory::PageRef;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::evtchn_fifo as nr;

/// Event words per event-array page.
pub const WORDS_PER_PAGE: u32 = (PAGE_SIZE / nr::EVENT_WORD_SIZE) as u32;
/// Most event-array pages a domain can add (enough for every FIFO port).
pub const MAX_ARRAY_PAGES: usize = (nr::NR_CHANNELS / WORDS_PER_PAGE) as usize;

const PENDING: u32 = 1 << nr::PENDING;
const MASKED: u32 = 1 << nr::MASKED;
const LINKED: u32 = 1 << nr::LINKED;
const BUSY: u32 = 1 << nr::BUSY;

/// Attempts at linking a tail word the guest keeps changing before the
/// event is given up as linked (the guest is misbehaving; only it suffers).
const LINK_TRIES: u32 = 4;

/// A guest frame the hypervisor holds (general + writable reference).
struct Held {
    page: PageRef,
}

impl Held {
    fn new(page: PageRef) -> Held {
        Held { page }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.page.put_writable();
        self.page.put();
    }
}

/// One vCPU's control block and the hypervisor's tails of its queues.
struct FifoVcpu {
    control: Option<(Held, usize)>,
    tails: [u32; nr::MAX_QUEUES],
}

/// FIFO state of one port that lives outside the guest's event word.
#[derive(Clone, Copy, Default)]
struct FifoPort {
    priority: u8,
    /// The queue (vCPU, priority) the port was last linked on.
    last_vcpu: u32,
    last_priority: u8,
    /// Raised while no event-array page covered it; re-raised on expansion.
    saved_pending: bool,
}

/// A domain's FIFO event-channel state.
pub struct Fifo {
    vcpus: Vec<FifoVcpu>,
    array: Vec<Held>,
    ports: Vec<FifoPort>,
}

impl Fifo {
    /// Empty state for `nr_vcpus` vCPUs: no control block, no array page.
    pub(crate) fn new(nr_vcpus: u32) -> Fifo {
        Fifo {
            vcpus: (0..nr_vcpus).map(|_| FifoVcpu { control: None, tails: [0; nr::MAX_QUEUES] }).collect(),
            array: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Ports the event array covers now.
    pub fn array_ports(&self) -> u32 {
        self.array.len() as u32 * WORDS_PER_PAGE
    }

    /// Whether `vcpu` has a control block.
    pub(crate) fn has_control_block(&self, vcpu: u32) -> bool {
        self.vcpus.get(vcpu as usize).is_some_and(|v| v.control.is_some())
    }

    /// Maps `vcpu`'s control block at `offset` of `page` (which the caller
    /// took references on; they are ours now, even on error).
    pub(crate) fn map_control_block(&mut self, vcpu: u32, page: PageRef, offset: usize) -> XenResult<()> {
        let held = Held::new(page);
        let v = self.vcpus.get_mut(vcpu as usize).ok_or(Errno::ENOENT)?;
        if v.control.is_some() {
            return Err(Errno::EINVAL);
        }
        v.control = Some((held, offset));
        Ok(())
    }

    /// Whether every array slot is in use.
    pub(crate) fn array_full(&self) -> bool {
        self.array.len() >= MAX_ARRAY_PAGES
    }

    /// Adds `page` (referenced by the caller, ours now) as the next event
    /// array page; returns the ports it covers, for the caller to re-raise
    /// those that were raised while uncovered.
    pub(crate) fn add_array_page(&mut self, page: PageRef) -> XenResult<Range<u32>> {
        let held = Held::new(page);
        if self.array_full() {
            return Err(Errno::ENOSPC);
        }
        let first = self.array_ports();
        self.array.push(held);
        Ok(first..self.array_ports())
    }

    /// Every frame held (control blocks and array pages), for accounting.
    pub fn held_pages(&self) -> Vec<PageRef> {
        let cbs = self.vcpus.iter().filter_map(|v| v.control.as_ref().map(|(h, _)| h.page.clone()));
        cbs.chain(self.array.iter().map(|h| h.page.clone())).collect()
    }

    fn port_mut(&mut self, port: u32) -> &mut FifoPort {
        let i = port as usize;
        if self.ports.len() <= i {
            self.ports.resize(i + 1, FifoPort { priority: nr::PRIORITY_DEFAULT as u8, ..FifoPort::default() });
        }
        &mut self.ports[i]
    }

    /// `evtchn_fifo_init`: a newly bound port starts at the default priority.
    pub(crate) fn init_port(&mut self, port: u32) {
        let p = self.port_mut(port);
        p.priority = nr::PRIORITY_DEFAULT as u8;
        p.saved_pending = false;
    }

    /// Remembers that a 2-level port was pending when the domain switched.
    pub(crate) fn save_pending(&mut self, port: u32) {
        self.port_mut(port).saved_pending = true;
    }

    /// Takes the "raised while uncovered" flag of `port`.
    pub(crate) fn take_saved_pending(&mut self, port: u32) -> bool {
        core::mem::take(&mut self.port_mut(port).saved_pending)
    }

    /// `EVTCHNOP_set_priority` on a valid port: future events use the new
    /// queue; one already linked stays where it is.
    pub(crate) fn set_priority(&mut self, port: u32, priority: u32) -> XenResult<()> {
        if priority > nr::PRIORITY_MIN {
            return Err(Errno::EINVAL);
        }
        self.port_mut(port).priority = priority as u8;
        Ok(())
    }

    /// The port's priority (tests, the monitor).
    pub fn priority(&self, port: u32) -> u32 {
        self.ports.get(port as usize).map_or(nr::PRIORITY_DEFAULT, |p| p.priority as u32)
    }

    /// The frame and offset of `port`'s event word, if the array covers it.
    fn word(&self, port: u32) -> Option<(PageRef, usize)> {
        if port >= self.array_ports() {
            return None;
        }
        let page = &self.array[(port / WORDS_PER_PAGE) as usize].page;
        Some((page.clone(), (port % WORDS_PER_PAGE) as usize * nr::EVENT_WORD_SIZE))
    }

    /// The event word of `port` (0 if uncovered), for tests and the monitor.
    pub fn event_word(&self, port: u32) -> u32 {
        self.word(port).and_then(|(p, o)| p.read_uint(o, 4).ok()).unwrap_or(0) as u32
    }

    /// `evtchn_fifo_set_pending`: sets PENDING; if the port is unmasked and
    /// not yet linked, links it at the tail of `vcpu`'s queue for its
    /// priority (or makes it the head of an empty queue and sets the
    /// priority's READY bit). Returns whether that READY bit was clear: the
    /// caller then marks events pending on `vcpu` (the upcall).
    #[must_use]
    pub(crate) fn set_pending(&mut self, port: u32, vcpu: u32) -> bool {
        let Some((page, off)) = self.word(port) else {
            self.port_mut(port).saved_pending = true;
            return false;
        };
        // No control block (or no such vCPU): the guest must not unmask
        // before it has one, so the event is dropped (as Xen does).
        let Some((cb, cb_off)) =
            self.vcpus.get(vcpu as usize).and_then(|v| v.control.as_ref()).map(|(h, o)| (h.page.clone(), *o))
        else {
            return false;
        };
        let _ = page.fetch_or(off, 4, PENDING as u64);
        let meta = *self.port_mut(port);
        let q = meta.priority as usize;
        let mut linked = true;
        let unmasked = page.read_uint(off, 4).is_ok_and(|w| w as u32 & MASKED == 0);
        if unmasked && page.fetch_or(off, 4, LINKED as u64).is_ok_and(|w| w as u32 & LINKED == 0) {
            // If it was the tail of the queue it was last on, that queue is
            // empty now (the guest consumed it): forget that tail, so a
            // later event there does not link behind a word now in use here.
            let last = &mut self.vcpus[meta.last_vcpu as usize].tails[meta.last_priority as usize];
            if *last == port {
                *last = 0;
            }
            let p = self.port_mut(port);
            p.last_vcpu = vcpu;
            p.last_priority = q as u8;
            let tail = self.vcpus[vcpu as usize].tails[q];
            linked = tail != 0 && self.word(tail).is_some_and(|(tp, toff)| set_link(&tp, toff, port));
            if !linked {
                let _ = cb.write_uint(cb_off + nr::CONTROL_BLOCK_HEAD + 4 * q, 4, port as u64);
            }
            self.vcpus[vcpu as usize].tails[q] = port;
        }
        let bit = 1u64 << q;
        !linked && cb.fetch_or(cb_off + nr::CONTROL_BLOCK_READY, 4, bit).is_ok_and(|r| r & bit == 0)
    }

    /// `evtchn_fifo_clear_pending`: only the PENDING bit; the guest unlinks
    /// and skips a linked word that is no longer pending.
    pub(crate) fn clear_pending(&mut self, port: u32) {
        self.port_mut(port).saved_pending = false;
        if let Some((page, off)) = self.word(port) {
            let _ = page.fetch_and_not(off, 4, PENDING as u64);
        }
    }

    /// `evtchn_fifo_unmask`: clears MASKED and links the port if pending;
    /// returns whether the caller must mark events pending on `vcpu`.
    #[must_use]
    pub(crate) fn unmask(&mut self, port: u32, vcpu: u32) -> bool {
        let Some((page, off)) = self.word(port) else { return false };
        let _ = page.fetch_and_not(off, 4, MASKED as u64);
        page.read_uint(off, 4).is_ok_and(|w| w as u32 & PENDING != 0) && self.set_pending(port, vcpu)
    }
}

/// Points the LINKED tail word at `link`, unless the guest unlinked it
/// meanwhile (then the queue is empty and the caller writes the head).
/// The guest may change the word between our read and our store, so the
/// store is a compare-exchange; after the first lost race BUSY is set so a
/// well-behaved guest holds off unmasking until the link is written.
fn set_link(page: &PageRef, off: usize, link: u32) -> bool {
    let Ok(w) = page.read_uint(off, 4) else { return false };
    let mut w = w as u32;
    let mut busy = false;
    for _ in 0..=LINK_TRIES {
        if w & LINKED == 0 {
            if busy {
                let _ = page.fetch_and_not(off, 4, BUSY as u64);
            }
            return false;
        }
        let new = (w & !(BUSY | nr::LINK_MASK)) | link;
        match page.compare_exchange32(off, w, new) {
            Ok(Ok(_)) => return true,
            Ok(Err(cur)) => w = cur,
            Err(_) => return false,
        }
        if !busy {
            busy = true;
            let _ = page.fetch_or(off, 4, BUSY as u64);
            w = page.read_uint(off, 4).map_or(0, |x| x as u32);
        }
    }
    let _ = page.fetch_and_not(off, 4, BUSY as u64);
    log::warn!("evtchn fifo: tail word kept changing; port {link} treated as linked");
    true
}
