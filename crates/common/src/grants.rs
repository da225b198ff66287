//! The state of a domain's grant table (v1): the shared frames the guest
//! writes its `grant_entry_v1`s into, the active (pinned) entries other
//! domains are using, and the maptrack table of the mappings this domain
//! holds of other domains' grants. The operations live in
//! [`crate::grant_table`]; this module sits below [`crate::domain::Domain`].

use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::memory::{DomId, Gfn, PageRef, PAGE_SIZE};
use xen_abi::nr::gnttab::{ENTRY_V1_SIZE, VERSION_1};

/// Most frames a grant table may grow to (a domain's `max_grant_frames`;
/// Xen's toolstack default for a guest is 32, the hypervisor's own 64).
pub const MAX_GRANT_FRAMES: u32 = 32;

/// v1 entries per frame.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / ENTRY_V1_SIZE) as u32;

/// Most mappings a domain may hold at once (Xen's default
/// `max_maptrack_frames`, 1024, of 256 16-byte entries each).
pub const MAX_MAPTRACK: usize = 1024 * 256;

/// One shared frame of the table.
#[derive(Clone, Debug)]
pub struct GrantFrame {
    /// The frame (owned by the domain; the table holds one general
    /// reference on it, as Xen's xenheap pages carry one).
    pub page: PageRef,
    /// Where the guest last mapped it (`XENMAPSPACE_grant_table`), or
    /// [`Gfn::INVALID`].
    pub gfn: Gfn,
}

/// An entry in use by its grantee (Xen's `active_grant_entry`): pinned
/// from the first map or copy until the last unmap or the copy's end.
#[derive(Clone, Debug)]
pub struct ActiveGrant {
    /// The domain using it.
    pub domid: DomId,
    /// The granted gfn, as read from the entry at the first pin.
    pub gfn: Gfn,
    /// The frame behind that gfn at the first pin.
    pub page: PageRef,
    /// Whether the frame was writable RAM at the first pin (a later
    /// writable pin of a frame first pinned read-only needs it).
    pub writable: bool,
    /// Read-only pins (maps or copies from).
    pub readers: u32,
    /// Writable pins (maps or copies to).
    pub writers: u32,
}

impl ActiveGrant {
    /// Whether anything still pins the entry.
    pub fn pinned(&self) -> bool {
        self.readers + self.writers > 0
    }
}

/// One mapping this domain holds of another's grant (Xen's `grant_mapping`).
#[derive(Clone, Debug)]
pub struct GrantMapping {
    /// The granting domain.
    pub granter: DomId,
    /// The grant reference in its table.
    pub gref: u32,
    /// Where the frame is mapped in this domain's p2m.
    pub gfn: Gfn,
    /// Whether it was mapped read-only.
    pub readonly: bool,
    /// The granted frame; the mapping holds a general reference on it, and
    /// a writable type reference unless `readonly`.
    pub page: PageRef,
}

/// A domain's grant table.
#[derive(Debug)]
pub struct GrantTable {
    /// The version in force (always 1).
    pub version: u32,
    /// The shared frames, allocated lazily up to [`MAX_GRANT_FRAMES`].
    pub frames: Vec<GrantFrame>,
    /// Pinned entries, by grant reference.
    pub active: HashMap<u32, ActiveGrant>,
    /// This domain's mappings, indexed by grant handle.
    pub maptrack: Vec<Option<GrantMapping>>,
}

impl Default for GrantTable {
    fn default() -> Self {
        GrantTable { version: VERSION_1, frames: Vec::new(), active: HashMap::new(), maptrack: Vec::new() }
    }
}

impl GrantTable {
    /// An empty table (frames come with the first use).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of v1 entries the current frames hold.
    pub fn nr_entries(&self) -> u32 {
        self.frames.len() as u32 * ENTRIES_PER_FRAME
    }

    /// The frame and byte offset of entry `gref` (which must be in range).
    pub fn entry_location(&self, gref: u32) -> Option<(&PageRef, usize)> {
        let f = self.frames.get((gref / ENTRIES_PER_FRAME) as usize)?;
        Some((&f.page, (gref % ENTRIES_PER_FRAME) as usize * ENTRY_V1_SIZE))
    }

    /// A free grant handle, if the maptrack table has room.
    pub fn free_handle(&self) -> Option<u32> {
        match self.maptrack.iter().position(Option::is_none) {
            Some(h) => Some(h as u32),
            None if self.maptrack.len() < MAX_MAPTRACK => Some(self.maptrack.len() as u32),
            None => None,
        }
    }

    /// Stores `m` under handle `h` (from [`GrantTable::free_handle`]).
    pub fn put_mapping(&mut self, h: u32, m: GrantMapping) {
        let h = h as usize;
        if h == self.maptrack.len() {
            self.maptrack.push(Some(m));
        } else {
            self.maptrack[h] = Some(m);
        }
    }

    /// Number of live mappings this domain holds.
    pub fn nr_mappings(&self) -> usize {
        self.maptrack.iter().flatten().count()
    }
}
