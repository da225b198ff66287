//! The one host test kit of Lantern: the clocks, the domain builders and the
//! fake arch vCPU (with its per-domain object) that every host test is
//! written with — the conformance crate's cross-arch tests and the arch
//! crates' own unit tests alike. It names no architecture; a test passes the
//! layout it runs in. When the core's API changes, this kit is what adapts.

pub mod clock;
pub mod domain;
pub mod reservation;
pub mod vcpu;

pub use clock::{HostClock, TestClock};
pub use domain::{domain, gaddr, page, read, read_phys, write_phys, TestDomain, RAM_PAGES};
pub use reservation::{expected_tot_pages, pfn_list, Reservation};
pub use vcpu::{fake_vcpus, slot, FakeDomain, FakeVcpu, FAKE_FEATURES, FAKE_GFN_LIMIT, FAKE_VM_ASSIST_MASK};
