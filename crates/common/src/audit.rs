//! The page-count audit: recounts, from every holder the model knows, the
//! general and writable-type references each frame should carry, and
//! compares them with the counts the frames do carry.
//!
//! Xen's counts are bookkeeping beside Rust's own ownership (`Arc`), so a
//! path that forgets a `put` leaves a frame pinned forever, and one that
//! puts twice lets a guest's later `get` go unmatched — neither shows until
//! something frees or reuses the frame. After a domain is destroyed
//! ([`crate::lifecycle::kill_among`]) the scheduler runs this over every
//! slot (`sched/endings.rs`) and prints the verdict, so a hypercall fuzzer
//! (`cargo xtask fuzz`) sees whether everything the destroyed domain did
//! was undone. The holders, one reference each (a writable one too where
//! marked):
//!
//! - every p2m entry of every domain that maps the frame (a grant mapping
//!   maps another domain's frame);
//! - the domain's own reference on its shared_info frame;
//! - a guest area on a guest page (writable);
//! - a FIFO control block or event-array page (writable);
//! - a grant-table frame (the table's reference);
//! - a grant mapping in a maptrack table (writable unless read-only).
//!
//! Frames that only Rust keeps alive (the dummy vcpu_info page, the frames
//! no gfn maps, an active grant entry's frame) are checked too, against
//! zero. A destroyed domain must in addition have no frame of its own
//! memory left (`tot_pages` back to 0): one still counted is held by a
//! holder the destroy missed.

use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::area::{AreaKind, Placement};
use crate::domain::{Domain, Lifecycle};
use crate::memory::{DomId, PageRef};

/// A frame whose counts differ from what its holders account for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The frame's owner.
    pub owner: DomId,
    /// Its host address (which frame it is).
    pub host_addr: u64,
    /// General references it carries, and how many its holders account for.
    pub refs: (u32, u32),
    /// Writable type references it carries, and how many are accounted for.
    pub writable: (u32, u32),
}

/// What [`audit_pages`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageAudit {
    /// Frames looked at.
    pub pages: usize,
    /// Frames whose counts are off.
    pub mismatches: Vec<Mismatch>,
    /// Destroyed domains with frames of their own memory still allocated:
    /// `(domain, tot_pages)`.
    pub leaked: Vec<(DomId, u64)>,
}

impl PageAudit {
    /// Whether every count is back at what its holders account for.
    pub fn clean(&self) -> bool {
        self.mismatches.is_empty() && self.leaked.is_empty()
    }
}

impl core::fmt::Display for PageAudit {
    /// One line: `N pages at baseline`, or what is off (the first few
    /// frames, then how many more).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.clean() {
            return write!(f, "{} pages at baseline", self.pages);
        }
        write!(f, "{} of {} pages off baseline", self.mismatches.len(), self.pages)?;
        for m in self.mismatches.iter().take(4) {
            write!(
                f,
                "; d{} frame {:#x}: refs {} (expected {}), writable {} (expected {})",
                m.owner, m.host_addr, m.refs.0, m.refs.1, m.writable.0, m.writable.1
            )?;
        }
        if self.mismatches.len() > 4 {
            write!(f, "; {} more", self.mismatches.len() - 4)?;
        }
        for (d, n) in &self.leaked {
            write!(f, "; destroyed d{d} still has {n} frames of its memory")?;
        }
        Ok(())
    }
}

/// Expected counts of one frame, while they are being added up.
struct Tally {
    page: PageRef,
    refs: u32,
    writable: u32,
}

/// Recounts every frame the `domains` hold (see the module comment) and
/// compares. Takes each domain's locks one at a time, in the documented
/// order for one domain; call it where no hypercall runs (between slices).
pub fn audit_pages<'a>(domains: impl IntoIterator<Item = &'a Domain>) -> PageAudit {
    let mut seen: HashMap<u64, Tally> = HashMap::new();
    let mut add = |page: &PageRef, refs: u32, writable: u32| {
        let t = seen.entry(page.host_addr()).or_insert_with(|| Tally { page: page.clone(), refs: 0, writable: 0 });
        t.refs += refs;
        t.writable += writable;
    };
    let mut leaked = Vec::new();
    for d in domains {
        if d.lifecycle() == Lifecycle::Dead && d.tot_pages() != 0 {
            leaked.push((d.id, d.tot_pages()));
        }
        add(d.shared_info(), 1, 0);
        add(d.dummy_page(), 0, 0);
        for page in d.unmapped_frames() {
            add(&page, 0, 0);
        }
        for v in d.vcpus() {
            let areas = v.areas();
            for kind in AreaKind::ALL {
                if let Some(a) = areas.get(kind) {
                    let guest = a.placement == Placement::Guest;
                    add(&a.page, guest as u32, guest as u32);
                }
            }
        }
        for page in crate::evtchn::held_pages(d) {
            add(&page, 1, 1);
        }
        {
            let gt = d.grant_table.lock();
            for f in &gt.frames {
                add(&f.page, 1, 0);
            }
            for a in gt.active.values() {
                add(&a.page, 0, 0);
            }
            for m in gt.maptrack.iter().flatten() {
                add(&m.page, 1, !m.readonly as u32);
            }
        }
        for (_, e) in d.p2m.lock().iter() {
            add(&e.page, 1, 0);
        }
    }
    let mut mismatches: Vec<Mismatch> = seen
        .values()
        .filter(|t| (t.page.refs(), t.page.writable_refs()) != (t.refs, t.writable))
        .map(|t| Mismatch {
            owner: t.page.owner(),
            host_addr: t.page.host_addr(),
            refs: (t.page.refs(), t.refs),
            writable: (t.page.writable_refs(), t.writable),
        })
        .collect();
    mismatches.sort_by_key(|m| (m.owner, m.host_addr));
    PageAudit { pages: seen.len(), mismatches, leaked }
}
