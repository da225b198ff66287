//! Domain builders for the host tests, and helpers that look at a domain's
//! frames the way a test's assertions need.

use std::sync::Arc;

use lantern_common::addr::{Gfn, Gpa};
use lantern_common::clock::Clock;
use lantern_common::console::NoSink;
use lantern_common::domain::{Domain, DomainConfig};
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::memory::{DomId, PageRef};
use xen_abi::errno::XenResult;
use xen_abi::layout::GuestAbi;

use crate::clock::TestClock;

/// RAM pages of a test domain unless the test asks for another size.
pub const RAM_PAGES: u64 = 64;

/// System time of the [`TestClock`] a [`TestDomain`] gets unless the test
/// gives it a clock.
const CLOCK_START_NS: u64 = 1_000_000;

/// A domain to build for a test: every setting has a default (id 1, named
/// `test1`, one vCPU, [`RAM_PAGES`] of RAM, a [`TestClock`] at 1 ms) that
/// the test overrides one by one before [`TestDomain::build`].
pub struct TestDomain {
    abi: &'static dyn GuestAbi,
    id: DomId,
    name: Option<String>,
    vcpus: u32,
    ram_pages: u64,
    clock: Option<Arc<dyn Clock>>,
}

impl TestDomain {
    /// The defaults, in layout `abi`.
    pub fn new(abi: &'static dyn GuestAbi) -> Self {
        TestDomain { abi, id: 1, name: None, vcpus: 1, ram_pages: RAM_PAGES, clock: None }
    }

    /// Domain id (the default name follows it: `test{id}`).
    pub fn id(self, id: DomId) -> Self {
        TestDomain { id, ..self }
    }

    /// Domain name.
    pub fn name(self, name: impl Into<String>) -> Self {
        TestDomain { name: Some(name.into()), ..self }
    }

    /// Number of vCPUs.
    pub fn vcpus(self, vcpus: u32) -> Self {
        TestDomain { vcpus, ..self }
    }

    /// RAM pages, populated from gfn 0 up.
    pub fn ram_pages(self, ram_pages: u64) -> Self {
        TestDomain { ram_pages, ..self }
    }

    /// The hypervisor clock (a test that moves time keeps its own `Arc`).
    pub fn clock(self, clock: Arc<dyn Clock>) -> Self {
        TestDomain { clock: Some(clock), ..self }
    }

    /// Creates the domain; a test domain that cannot be created is a broken
    /// test, so this panics rather than return the error.
    pub fn build(self) -> Arc<Domain> {
        let id = self.id;
        Domain::new(DomainConfig {
            id,
            name: self.name.unwrap_or_else(|| format!("test{id}")),
            max_vcpus: self.vcpus,
            ram_pages: self.ram_pages,
            abi: self.abi,
            clock: self.clock.unwrap_or_else(|| Arc::new(TestClock::starting_at(CLOCK_START_NS))),
            // Tests read the console's history instead.
            console: Arc::new(NoSink),
        })
        .expect("test domain")
    }
}

/// The common case: domain 1 in layout `abi` with `vcpus` vCPUs, and the
/// test clock it runs on, for the test to move.
pub fn domain(abi: &'static dyn GuestAbi, vcpus: u32) -> (Arc<Domain>, Arc<TestClock>) {
    let clock = Arc::new(TestClock::starting_at(CLOCK_START_NS));
    (TestDomain::new(abi).vcpus(vcpus).clock(clock.clone()).build(), clock)
}

/// The frame at `gfn` of `d`.
pub fn page(d: &Domain, gfn: u64) -> PageRef {
    d.p2m.lock().get(Gfn(gfn)).unwrap().page.clone()
}

/// Reads `size` bytes at `off` of the frame at `gfn` as a little-endian integer.
pub fn read(d: &Domain, gfn: u64, off: usize, size: usize) -> u64 {
    page(d, gfn).read_uint(off, size).unwrap()
}

/// The guest-physical address `gfn << 12 | off`.
pub fn gaddr(gfn: u64, off: usize) -> u64 {
    (gfn << 12) | off as u64
}

/// Writes `data` at guest-physical `gpa` of `d` (test set-up: the argument
/// structs a guest would have written).
pub fn write_phys(d: &Domain, gpa: u64, data: &[u8]) -> XenResult<()> {
    PhysMem::new(d).write_bytes(Gpa(gpa), data)
}

/// Reads `out.len()` bytes at guest-physical `gpa` of `d`.
pub fn read_phys(d: &Domain, gpa: u64, out: &mut [u8]) -> XenResult<()> {
    PhysMem::new(d).read_bytes(Gpa(gpa), out)
}
