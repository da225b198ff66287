//! Lantern's cross-arch host tests: the test kit (`lantern-testkit`,
//! re-exported here) plus the one list of guest ABI layouts every test runs
//! in.
//!
//! `crates/common` and `crates/gdb` never name an architecture, not even in
//! their tests; this crate sits on top of the dependency graph and names them
//! all, in one place ([`layouts::LAYOUTS`]).

pub mod layouts;

pub use lantern_testkit::*;
pub use layouts::{layout, layouts, Layout, LAYOUTS};
