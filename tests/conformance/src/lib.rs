//! The shared test kit of Lantern's cross-arch host tests: the one list of
//! guest ABI layouts, the fake arch vCPU, the clocks and the domain builders
//! that this crate's tests, bench and fake board are written with.
//!
//! `crates/common` and `crates/gdb` never name an architecture, not even in
//! their tests; this crate sits on top of the dependency graph and names them
//! all, in one place ([`layouts::LAYOUTS`]). When the core's API changes, this
//! kit is what adapts: the tests see only the items re-exported here.

pub mod clock;
pub mod domain;
pub mod layouts;
pub mod vcpu;

pub use clock::{HostClock, TestClock};
pub use domain::{domain, gaddr, page, read, read_phys, write_phys, TestDomain, RAM_PAGES};
pub use layouts::{layout, layouts, Layout, LAYOUTS};
pub use vcpu::{fake_vcpus, slot, FakeDomain, FakeVcpu};
