//! Property test: random sequences of map / unmap / fork / soft reset / kill
//! on the guest-area mechanism, checked step by step against a simple
//! reference model — results (errnos), placements, and every page's
//! reference and writable-type counts.

use std::collections::HashMap;
use std::sync::Arc;

use lantern_common::addr::{Gfn, Gpa};
use lantern_common::area::{AreaKind, Placement};
use lantern_common::domain::Domain;
use lantern_common::guest_area;
use lantern_common::lifecycle;
use lantern_common::memory::PAGE_SIZE;
use lantern_conformance::{layouts, TestClock, TestDomain, LAYOUTS};
use proptest::prelude::*;
use xen_abi::errno::Errno;
use xen_abi::layout::GuestAbi;

const RAM: u64 = 8;
const GFNS: u64 = 10; // gfns 8 and 9 are outside the domain

#[derive(Clone, Debug)]
enum Op {
    Map { vcpu: u32, kind: usize, gfn: u64, offset: usize },
    Unmap { vcpu: u32, kind: usize },
    Fork,
    SoftReset,
    Kill,
}

fn offsets() -> impl Strategy<Value = usize> {
    prop_oneof![
        (0usize..64).prop_map(|i| i * 64), // aligned, fits for every kind
        (0usize..PAGE_SIZE),               // anything, mostly misaligned
        (PAGE_SIZE - 80..PAGE_SIZE),       // near the end: crossing
        Just(4usize),                      // compat-only alignment
    ]
}

fn op(vcpus: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..vcpus, 0usize..3, 0..GFNS, offsets()).prop_map(|(vcpu, kind, gfn, offset)| Op::Map { vcpu, kind, gfn, offset }),
        3 => (0..vcpus, 0usize..3).prop_map(|(vcpu, kind)| Op::Unmap { vcpu, kind }),
        1 => Just(Op::Fork),
        1 => Just(Op::SoftReset),
        1 => Just(Op::Kill),
    ]
}

/// The reference model: which (gfn, offset) each (vCPU, kind) is on.
#[derive(Default)]
struct Model {
    areas: HashMap<(u32, usize), (u64, usize)>,
    dead: bool,
}

impl Model {
    fn expect_map(
        &self,
        abi: &dyn GuestAbi,
        vcpu: u32,
        kind: AreaKind,
        ki: usize,
        gfn: u64,
        offset: usize,
    ) -> Result<(), Errno> {
        if offset > PAGE_SIZE - kind.size(abi) || !offset.is_multiple_of(kind.align(abi)) {
            return Err(Errno::ENXIO);
        }
        if gfn >= RAM || self.dead {
            return Err(Errno::EINVAL);
        }
        if kind == AreaKind::VcpuInfo && self.areas.contains_key(&(vcpu, ki)) {
            return Err(Errno::EBUSY);
        }
        Ok(())
    }

    fn on_gfn(&self, gfn: u64) -> u32 {
        self.areas.values().filter(|(g, _)| *g == gfn).count() as u32
    }
}

fn check(d: &Domain, abi: &dyn GuestAbi, m: &Model) -> Result<(), TestCaseError> {
    for v in d.vcpus() {
        let a = v.areas();
        for (ki, kind) in AreaKind::ALL.iter().enumerate() {
            let got = a.get(*kind).filter(|x| x.placement == Placement::Guest).map(|x| (x.gfn.unwrap().0, x.offset));
            prop_assert_eq!(got, m.areas.get(&(v.id, ki)).copied(), "vcpu {} {}", v.id, kind.name());
        }
        if !m.areas.contains_key(&(v.id, 0)) {
            let want = if v.id < abi.legacy_max_vcpus() { Placement::SharedInfoSlot } else { Placement::Dummy };
            prop_assert_eq!(a.vcpu_info.placement, want);
        }
    }
    let p2m = d.p2m.lock();
    for gfn in 0..RAM {
        match p2m.get(Gfn(gfn)) {
            Some(e) => {
                let n = m.on_gfn(gfn);
                prop_assert_eq!((e.page.refs(), e.page.writable_refs()), (1 + n, n), "gfn {}", gfn);
            }
            None => prop_assert!(m.dead),
        }
    }
    Ok(())
}

fn run(abi: &'static dyn GuestAbi, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let vcpus = abi.legacy_max_vcpus().min(2) + 2;
    let clock = Arc::new(TestClock::default());
    let d = TestDomain::new(abi).name("model").vcpus(vcpus).ram_pages(RAM).clock(clock.clone()).build();
    // Keep every frame alive so counts can be checked after kill too.
    let frames: Vec<_> = (0..RAM).map(|g| d.p2m.lock().get(Gfn(g)).unwrap().page.clone()).collect();
    let mut m = Model::default();
    for op in ops {
        match op {
            Op::Map { vcpu, kind: ki, gfn, offset } => {
                let kind = AreaKind::ALL[ki];
                let want = m.expect_map(abi, vcpu, kind, ki, gfn, offset);
                let v = d.vcpu(vcpu).unwrap();
                let gaddr = (gfn << 12) + offset as u64;
                let got = match kind {
                    AreaKind::VcpuInfo => guest_area::map_guest_area(
                        &d,
                        Some(0),
                        v,
                        kind,
                        Some(Gpa(gaddr)),
                        Some(&mut guest_area::vcpu_info_populate),
                    ),
                    AreaKind::Runstate => guest_area::register_runstate_area(&d, Some(0), v, gaddr),
                    AreaKind::Time => guest_area::register_time_area(&d, Some(0), v, gaddr),
                };
                prop_assert_eq!(got, want, "map vcpu {} {} at {:#x}", vcpu, kind.name(), gaddr);
                if got.is_ok() {
                    m.areas.insert((vcpu, ki), (gfn, offset));
                }
                prop_assert_eq!(v.pause_count(), 0);
            }
            Op::Unmap { vcpu, kind: ki } => {
                guest_area::unmap_guest_area(&d, d.vcpu(vcpu).unwrap(), AreaKind::ALL[ki]);
                m.areas.remove(&(vcpu, ki));
            }
            Op::Fork => {
                let child = lifecycle::fork(&d, 2, clock.clone());
                if m.dead {
                    prop_assert!(child.is_ok());
                    continue;
                }
                let child = child.unwrap();
                // Same gfn in the parent ⇒ same frame in the child.
                let mut by_gfn: HashMap<u64, usize> = HashMap::new();
                for v in child.vcpus() {
                    let a = v.areas();
                    for (ki, kind) in AreaKind::ALL.iter().enumerate() {
                        let want = m.areas.get(&(v.id, ki)).copied();
                        let got = a.get(*kind).filter(|x| x.placement == Placement::Guest);
                        prop_assert_eq!(got.map(|x| (x.gfn.unwrap().0, x.offset)), want);
                        if let Some(x) = got {
                            let addr = x.page.host_addr() as usize;
                            prop_assert_eq!(*by_gfn.entry(x.gfn.unwrap().0).or_insert(addr), addr);
                        }
                    }
                }
                let distinct: std::collections::HashSet<u64> = m.areas.values().map(|(g, _)| *g).collect();
                prop_assert_eq!(child.p2m.lock().len(), distinct.len());
                lifecycle::kill(&child);
                check(&d, abi, &m)?;
            }
            Op::SoftReset => {
                d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
                let r = lifecycle::soft_reset(&d, &lantern_conformance::FakeDomain);
                if m.dead {
                    prop_assert_eq!(r, Err(xen_abi::errno::Errno::EINVAL), "a dead domain is not shut down");
                } else {
                    prop_assert_eq!(r, Ok(()));
                    m.areas.clear();
                }
            }
            Op::Kill => {
                lifecycle::kill(&d);
                m.areas.clear();
                m.dead = true;
            }
        }
        check(&d, abi, &m)?;
    }
    if m.dead {
        prop_assert!(frames.iter().all(|p| p.refs() == 0 && p.writable_refs() == 0));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn guest_areas_match_the_reference_model(which in 0..LAYOUTS.len(), ops in prop::collection::vec(op(4), 1..24)) {
        let abi = layouts()[which];
        // Ops name vCPUs up to 3; clamp to the domain's vCPUs.
        let vcpus = abi.legacy_max_vcpus().min(2) + 2;
        let ops = ops.into_iter().map(|o| match o {
            Op::Map { vcpu, kind, gfn, offset } => Op::Map { vcpu: vcpu % vcpus, kind, gfn, offset },
            Op::Unmap { vcpu, kind } => Op::Unmap { vcpu: vcpu % vcpus, kind },
            o => o,
        }).collect();
        run(abi, ops)?;
    }
}
