//! How an operation on one domain finds another by id: the arch-neutral
//! directory a hypercall (grant maps and copies) or a teardown (revoking the
//! maps other domains hold of a dying granter) looks domains up in.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::domain::Domain;
use crate::memory::DomId;

/// The domains an operation may name, by id. Callers check the domain they
/// act for themselves first; a directory need not list it.
pub trait DomainDirectory {
    /// Domain `id`, if it exists.
    fn find(&self, id: DomId) -> Option<&Domain>;
}

/// The empty directory: only the calling domain exists.
pub struct NoDomains;

impl DomainDirectory for NoDomains {
    fn find(&self, _id: DomId) -> Option<&Domain> {
        None
    }
}

impl DomainDirectory for Vec<Arc<Domain>> {
    fn find(&self, id: DomId) -> Option<&Domain> {
        self.iter().find(|d| d.id == id).map(|d| &**d)
    }
}

/// Domain `id` as `me` sees it: `me` itself, or one from `dir`.
pub fn lookup<'a>(me: &'a Domain, dir: &'a dyn DomainDirectory, id: DomId) -> Option<&'a Domain> {
    if id == me.id {
        Some(me)
    } else {
        dir.find(id)
    }
}
