//! The page-count audit (`lantern_common::audit`) in every layout: a fresh
//! domain, guest areas, FIFO pages and grant mappings between two domains
//! are at baseline; a forgotten or an extra `put` is found; a destroyed
//! domain whose frame something still holds is reported as leaking.

use lantern_common::addr::Gfn;
use lantern_common::audit::audit_pages;
use lantern_common::{grant_table, guest_area, lifecycle};
use lantern_conformance::*;
use xen_abi::nr::{gntmap, gtf};
use xen_abi::public::GrantEntryV1;
use zerocopy::IntoBytes;

/// RAM frames each test domain has.
const RAM: u64 = 64;

#[test]
fn a_fresh_domain_is_at_baseline() {
    for abi in layouts() {
        let d = TestDomain::new(abi).vcpus(2).ram_pages(RAM).build();
        let a = audit_pages([&*d]);
        assert!(a.clean(), "{}: {a}", abi.name());
        // The RAM, shared_info and the dummy page.
        assert_eq!(a.pages as u64, RAM + 2, "{}", abi.name());
        assert_eq!(a.to_string(), format!("{} pages at baseline", RAM + 2));
    }
}

#[test]
fn a_forgotten_and_an_extra_put_are_found() {
    for abi in layouts() {
        let d = TestDomain::new(abi).ram_pages(RAM).build();
        let p = page(&d, 3);
        p.get();
        p.get_writable();
        let a = audit_pages([&*d]);
        assert_eq!(a.mismatches.len(), 1, "{}", abi.name());
        assert_eq!((a.mismatches[0].refs, a.mismatches[0].writable), ((2, 1), (1, 0)));
        assert!(a.to_string().starts_with(&format!("1 of {} pages off baseline; d1 frame", RAM + 2)), "{a}");
        p.put();
        p.put_writable();
        p.put();
        assert_eq!(audit_pages([&*d]).mismatches[0].refs, (0, 1));
        p.get();
        assert!(audit_pages([&*d]).clean());
    }
}

#[test]
fn areas_fifo_and_kill_balance() {
    for abi in layouts() {
        let d = TestDomain::new(abi).vcpus(2).ram_pages(RAM).build();
        let v = d.vcpu(0).unwrap();
        guest_area::register_vcpu_info(&d, Some(0), v, Gfn(4), 0).unwrap();
        guest_area::register_runstate_area(&d, Some(0), v, gaddr(5, 0)).unwrap();
        guest_area::register_time_area(&d, Some(0), v, gaddr(5, 0x100)).unwrap();
        lantern_common::evtchn::init_control(&d, 6, 0, 0).unwrap();
        lantern_common::evtchn::expand_array(&d, 7).unwrap();
        let a = audit_pages([&*d]);
        assert!(a.clean(), "{}: {a}", abi.name());
        lifecycle::kill(&d);
        let a = audit_pages([&*d]);
        assert!(a.clean(), "{}: after kill: {a}", abi.name());
    }
}

#[test]
fn grant_mappings_between_domains_balance_and_die_with_the_granter() {
    for abi in layouts() {
        let granter = TestDomain::new(abi).id(1).ram_pages(RAM).build();
        let mapper = TestDomain::new(abi).id(2).ram_pages(RAM).build();
        grant_table::setup_table(&granter, 1).unwrap();
        grant_table::map_frame(&granter, 0, Gfn(10)).unwrap();
        let entry = GrantEntryV1 { flags: gtf::PERMIT_ACCESS, domid: 2, frame: 20 };
        write_phys(&granter, gaddr(10, 8), entry.as_bytes()).unwrap();
        let dir = vec![granter.clone(), mapper.clone()];
        let h = grant_table::map_grant_ref(&mapper, &dir, gaddr(30, 0), gntmap::HOST_MAP, 1, 1).unwrap();
        let a = audit_pages([&*granter, &*mapper]);
        assert!(a.clean(), "{}: mapped: {a}", abi.name());
        // Destroying the granter tears the mapper's mapping down.
        lifecycle::kill_among(&granter, &dir);
        let a = audit_pages([&*granter, &*mapper]);
        assert!(a.clean(), "{}: granter destroyed with handle {h} mapped: {a}", abi.name());
    }
}

#[test]
fn a_destroyed_domain_whose_frame_is_still_held_leaks() {
    for abi in layouts() {
        let d = TestDomain::new(abi).ram_pages(RAM).build();
        let held = page(&d, 0);
        lifecycle::kill(&d);
        assert_eq!(audit_pages([&*d]).leaked, vec![(1, 1)], "{}", abi.name());
        drop(held);
        assert!(audit_pages([&*d]).clean());
    }
}
