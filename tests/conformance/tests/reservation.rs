//! Memory reservation (ballooning) in every layout: `XENMEM_increase_reservation`,
//! `decrease_reservation`, `populate_physmap`, the reservation queries and
//! `XENMEM_memory_map`, driven as a guest would — argument and extent list in
//! guest memory, extents done out — with the domain's page account checked
//! after every path.

use std::sync::Arc;

use lantern_common::addr::Gfn;
use lantern_common::arch::ArchVcpu;
use lantern_common::domain::Domain;
use lantern_common::grant_table;
use lantern_common::hypercall::{dispatch, Call};
use lantern_common::lifecycle;
use lantern_conformance::*;
use proptest::prelude::*;
use xen_abi::errno::Errno;
use xen_abi::layout::GuestAbi;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::{domid, e820, gntmap, gtf, memflags, memop};
use xen_abi::public::{E820Entry, GrantEntryV1, XenMemoryMap, XenMemoryMapCompat};
use zerocopy::{FromBytes, IntoBytes};

/// gfn 1 holds the argument struct, gfn 2 the extent list; the tests
/// balloon gfns from [`FIRST`] up.
const ARG: u64 = 0x1000;
const LIST: u64 = 0x2000;
const FIRST: u64 = 40;

struct Guest {
    abi: &'static dyn GuestAbi,
    d: Arc<Domain>,
    arch: Vec<Box<dyn ArchVcpu>>,
    others: Vec<Arc<Domain>>,
}

impl Guest {
    fn new(abi: &'static dyn GuestAbi) -> Self {
        let (d, _) = domain(abi, 1);
        Guest { abi, d, arch: fake_vcpus(1), others: Vec::new() }
    }

    fn memory_op(&mut self, cmd: u64, arg: u64) -> i64 {
        dispatch(
            &mut Call::with_domains(&self.d, 0, &mut self.arch, &self.others),
            nr::MEMORY_OP,
            [cmd, arg, 0, 0, 0, 0],
        )
        .ret
    }

    /// `op` over `gfns` (order-0 extents unless `r` says otherwise), with
    /// `start_extent` in the command.
    fn reserve(&mut self, op: u64, start_extent: u64, r: Reservation, gfns: &[u64]) -> i64 {
        write_phys(&self.d, LIST, &pfn_list(self.abi, gfns)).unwrap();
        write_phys(&self.d, ARG, &r.bytes(self.abi)).unwrap();
        self.memory_op(op | (start_extent << memop::EXTENT_SHIFT), ARG)
    }

    fn op(&mut self, op: u64, gfns: &[u64]) -> i64 {
        self.reserve(op, 0, Reservation::new(LIST, gfns.len() as u64, domid::SELF), gfns)
    }

    fn query(&mut self, op: u64, dom: u16) -> i64 {
        write_phys(&self.d, ARG, &dom.to_le_bytes()).unwrap();
        self.memory_op(op, ARG)
    }

    fn current(&mut self) -> i64 {
        self.query(memop::CURRENT_RESERVATION, domid::SELF)
    }

    fn mapped(&self, gfn: u64) -> bool {
        self.d.p2m.lock().get(Gfn(gfn)).is_some()
    }

    /// The account matches the frames that exist, and the guest's query
    /// says the same.
    fn balanced(&mut self) {
        assert_eq!(self.d.tot_pages(), expected_tot_pages(&self.d), "{}", self.abi.name());
        let tot = self.d.tot_pages() as i64;
        assert_eq!(self.current(), tot, "{}", self.abi.name());
    }
}

#[test]
fn decrease_then_populate_round_trips() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        assert_eq!(g.current(), RAM_PAGES as i64, "{}", abi.name());
        assert_eq!(g.query(memop::MAXIMUM_RESERVATION, domid::SELF), RAM_PAGES as i64);
        let gfns = [FIRST, FIRST + 1, FIRST + 5, FIRST + 9];
        for &gfn in &gfns {
            write_phys(&g.d, gaddr(gfn, 0), &[0xAB; 64]).unwrap();
        }
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &gfns), 4, "{}", abi.name());
        assert_eq!(g.current(), RAM_PAGES as i64 - 4);
        assert!(gfns.iter().all(|&gfn| !g.mapped(gfn)));
        g.balanced();
        // The p2m's change list names every removed gfn, so the arch can
        // drop them from its tables.
        let changes = g.d.p2m.lock().take_changes();
        assert!(gfns.iter().all(|gfn| changes.contains(&Gfn(*gfn))));
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &gfns), 4);
        assert_eq!(g.current(), RAM_PAGES as i64);
        g.balanced();
        for &gfn in &gfns {
            let mut b = [0xFFu8; 4096];
            read_phys(&g.d, gaddr(gfn, 0), &mut b).unwrap();
            assert!(b.iter().all(|&x| x == 0), "gfn {gfn} repopulated with zeros");
        }
    }
}

#[test]
fn extents_of_higher_order_and_the_guest_order_limit() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        let r = Reservation { extent_order: 2, ..Reservation::new(LIST, 1, domid::SELF) };
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 0, r, &[FIRST]), 1);
        assert!((FIRST..FIRST + 4).all(|gfn| !g.mapped(gfn)));
        assert_eq!(g.current(), RAM_PAGES as i64 - 4);
        // Above DOMU_MAX_ORDER nothing happens: zero extents done.
        let big = Reservation { extent_order: memop::DOMU_MAX_ORDER + 1, ..r };
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 0, big, &[FIRST + 8]), 0);
        assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 0, big, &[FIRST]), 0);
        assert!(g.mapped(FIRST + 8));
        // Repopulated as one order-2 extent.
        assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 0, r, &[FIRST]), 1);
        assert!((FIRST..FIRST + 4).all(|gfn| g.mapped(gfn)));
        g.balanced();
        // An order-9 extent is allowed but does not fit under max_pages.
        let max_order = Reservation { extent_order: memop::DOMU_MAX_ORDER, ..r };
        g.d.set_max_pages(RAM_PAGES + 511);
        assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 0, max_order, &[1024]), 0, "all or nothing");
        assert!(!g.mapped(1024));
        g.d.set_max_pages(RAM_PAGES + 512);
        assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 0, max_order, &[1024]), 1);
        assert!((1024..1536).all(|gfn| g.mapped(gfn)));
        g.balanced();
    }
}

#[test]
fn a_domain_cannot_grow_past_max_pages() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        // Fully populated: a hole cannot be filled.
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[100]), 0, "{}", abi.name());
        assert_eq!(g.op(memop::INCREASE_RESERVATION, &[0]), 0);
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST, FIRST + 1]), 2);
        // Room for two: three asked, two done.
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[100, 101, 102]), 2);
        assert!(g.mapped(100) && g.mapped(101) && !g.mapped(102));
        assert_eq!(g.current(), RAM_PAGES as i64);
        g.balanced();
        // A lower limit refuses new frames and keeps the ones there.
        g.d.set_max_pages(10);
        assert_eq!(g.query(memop::MAXIMUM_RESERVATION, domid::SELF), 10);
        assert_eq!(g.current(), RAM_PAGES as i64);
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[100]), 1);
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[100]), 0);
        g.balanced();
    }
}

#[test]
fn increase_reservation_assigns_frames_no_gfn_maps() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        g.d.set_max_pages(RAM_PAGES + 8);
        // A null extent list is fine for increase_reservation.
        let r = Reservation { extent_order: 1, ..Reservation::new(0, 5, domid::SELF) };
        assert_eq!(g.reserve(memop::INCREASE_RESERVATION, 0, r, &[]), 4, "{}: 4 extents of 2 fit", abi.name());
        assert_eq!(g.d.unmapped_pages(), 8);
        assert_eq!(g.current(), RAM_PAGES as i64 + 8);
        assert_eq!(g.d.p2m.lock().len() as u64, RAM_PAGES);
        g.balanced();
        lifecycle::kill(&g.d);
        assert_eq!(g.d.tot_pages(), 0, "kill releases the unmapped frames too");
    }
}

#[test]
fn decrease_stops_at_the_first_gfn_that_is_not_populated() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST + 1]), 1);
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST, FIRST + 1, FIRST + 2]), 1, "{}", abi.name());
        assert!(!g.mapped(FIRST) && g.mapped(FIRST + 2));
        // In an order-1 extent the page before the hole goes, the extent
        // does not count.
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST + 6]), 1);
        let r = Reservation { extent_order: 1, ..Reservation::new(LIST, 1, domid::SELF) };
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 0, r, &[FIRST + 5]), 0);
        assert!(!g.mapped(FIRST + 5), "the page before the hole went");
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 0, r, &[FIRST + 7]), 1);
        assert!(!g.mapped(FIRST + 7) && !g.mapped(FIRST + 8));
        // An extent list the hypervisor cannot read stops the call there.
        let unreadable = Reservation::new(RAM_PAGES << 12, 2, domid::SELF);
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 0, unreadable, &[]), 0);
        // So does an argument it cannot read: start_extent comes back.
        assert_eq!(g.memory_op(memop::DECREASE_RESERVATION | (3 << memop::EXTENT_SHIFT), u64::MAX - 4), 3);
        g.balanced();
    }
}

#[test]
fn start_extent_in_the_command_resumes_a_call() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        let gfns = [FIRST, FIRST + 1, FIRST + 2];
        let r = Reservation::new(LIST, 3, domid::SELF);
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 1, r, &gfns), 3, "{}", abi.name());
        assert!(g.mapped(FIRST) && !g.mapped(FIRST + 1) && !g.mapped(FIRST + 2), "extent 0 skipped");
        assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 2, r, &gfns), 3);
        assert!(g.mapped(FIRST + 2) && !g.mapped(FIRST + 1));
        // Nothing left to do: start_extent back, nothing touched.
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 3, r, &gfns), 3);
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 7, r, &gfns), 7);
        assert!(g.mapped(FIRST));
        // A count too big to encode a continuation for is refused whole.
        let huge = Reservation::new(LIST, u64::from(u32::MAX >> memop::EXTENT_SHIFT) + 1, domid::SELF);
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 0, huge, &gfns), 0);
        assert!(g.mapped(FIRST));
        g.balanced();
        // The queries take no start_extent.
        write_phys(&g.d, ARG, &domid::SELF.to_le_bytes()).unwrap();
        for op in [memop::CURRENT_RESERVATION, memop::MAXIMUM_RESERVATION, memop::MAXIMUM_RAM_PAGE] {
            assert_eq!(g.memory_op(op | (1 << memop::EXTENT_SHIFT), ARG), Errno::EINVAL.to_hypercall_ret());
        }
    }
}

#[test]
fn only_the_caller_itself_may_be_named() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        let other = TestDomain::new(abi).id(2).build();
        g.others.push(other.clone());
        let own = g.d.id;
        for dom in [2u16, 9] {
            for op in [memop::DECREASE_RESERVATION, memop::POPULATE_PHYSMAP, memop::INCREASE_RESERVATION] {
                let r = Reservation::new(LIST, 1, dom);
                assert_eq!(g.reserve(op, 0, r, &[FIRST]), 0, "{} op {op} on d{dom}", abi.name());
            }
        }
        assert_eq!(other.tot_pages(), RAM_PAGES);
        assert!(g.mapped(FIRST));
        assert_eq!(g.query(memop::CURRENT_RESERVATION, 2), Errno::EPERM.to_hypercall_ret());
        assert_eq!(g.query(memop::MAXIMUM_RESERVATION, 9), Errno::ESRCH.to_hypercall_ret());
        assert_eq!(g.query(memop::CURRENT_RESERVATION, own), RAM_PAGES as i64);
        assert_eq!(g.memory_op(memop::CURRENT_RESERVATION, u64::MAX - 1), Errno::EFAULT.to_hypercall_ret());
        // The domain's own id works as DOMID_SELF does.
        let r = Reservation::new(LIST, 1, own);
        assert_eq!(g.reserve(memop::DECREASE_RESERVATION, 0, r, &[FIRST]), 1);
        g.balanced();
    }
}

#[test]
fn mem_flags_a_guest_may_not_use_refuse_the_call() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST, FIRST + 1]), 2);
        let r = Reservation::new(LIST, 1, domid::SELF);
        let refused = [
            12,                                                         // an address width of a page
            1,                                                          // or less
            (1 << memflags::NODE_SHIFT) | memflags::EXACT_NODE_REQUEST, // exact physical node 0
        ];
        for f in refused {
            assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 0, Reservation { mem_flags: f, ..r }, &[FIRST]), 0, "{f:#x}");
        }
        let pod = Reservation { mem_flags: memflags::POPULATE_ON_DEMAND, ..r };
        assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 0, pod, &[FIRST]), 0, "no populate-on-demand of oneself");
        assert!(!g.mapped(FIRST));
        // A wide address limit, a preferred node or a virtual node are fine.
        let allowed = [32, 2 << memflags::NODE_SHIFT, memflags::VNODE | memflags::EXACT_NODE_REQUEST];
        for (i, f) in allowed.into_iter().enumerate() {
            let gfn = [FIRST, FIRST + 1, 200][i];
            if i == 2 {
                assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST + 2]), 1);
            }
            assert_eq!(g.reserve(memop::POPULATE_PHYSMAP, 0, Reservation { mem_flags: f, ..r }, &[gfn]), 1, "{f:#x}");
        }
        g.balanced();
    }
}

#[test]
fn populate_past_the_arch_limit_or_over_populated_ram() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        assert_eq!(g.query(memop::MAXIMUM_RAM_PAGE, 0), FAKE_GFN_LIMIT as i64);
        g.d.set_max_pages(RAM_PAGES + 4);
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[FAKE_GFN_LIMIT]), 0, "{}", abi.name());
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[FAKE_GFN_LIMIT - 1]), 1);
        // Populating a populated gfn: fresh zeros there, the old frame stays
        // the domain's (counted), as Xen leaves it.
        write_phys(&g.d, gaddr(FIRST, 0), &[7; 16]).unwrap();
        let before = g.d.tot_pages();
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[FIRST]), 1);
        assert_eq!(read(&g.d, FIRST, 0, 8), 0);
        assert_eq!(g.d.tot_pages(), before + 1);
        assert_eq!(g.d.unmapped_pages(), 1);
        g.balanced();
        lifecycle::kill(&g.d);
        assert_eq!(g.d.tot_pages(), 0);
    }
}

#[test]
fn shared_info_gfn_is_unmapped_by_decrease_and_not_counted() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        g.d.map_shared_info(Gfn(FIRST)).unwrap();
        // The RAM shared_info replaced is freed; shared_info is not the
        // domain's own memory.
        assert_eq!(g.current(), RAM_PAGES as i64 - 1, "{}", abi.name());
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST]), 1);
        assert!(!g.mapped(FIRST));
        assert_eq!(g.d.shared_info_gfn(), None);
        assert_eq!(g.current(), RAM_PAGES as i64 - 1);
        g.balanced();
        // Populate over shared_info puts RAM there and unmaps it too.
        g.d.map_shared_info(Gfn(FIRST + 1)).unwrap();
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[FIRST, FIRST + 1]), 2);
        assert_eq!(g.d.shared_info_gfn(), None);
        assert!(!Arc::ptr_eq(&page(&g.d, FIRST + 1), g.d.shared_info()));
        g.balanced();
    }
}

/// d2 grants its gfn 5 to d1, which maps it at `at`; returns d2 and the handle.
fn grant_to(g: &mut Guest, at: u64) -> (Arc<Domain>, u32) {
    let d2 = TestDomain::new(g.abi).id(2).build();
    grant_table::map_frame(&d2, 0, Gfn(60)).unwrap();
    let e = GrantEntryV1 { flags: gtf::PERMIT_ACCESS, domid: g.d.id, frame: 5 };
    write_phys(&d2, gaddr(60, 8 * 3), e.as_bytes()).unwrap();
    g.others.push(d2.clone());
    let h = grant_table::map_grant_ref(&g.d, &g.others, at << 12, gntmap::HOST_MAP, 3, 2).unwrap();
    (d2, h)
}

#[test]
fn a_grant_mapping_is_neither_released_nor_replaced_nor_counted() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        // Map into a ballooned-out hole, as Linux does.
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST]), 1);
        let (d2, h) = grant_to(&mut g, FIRST);
        assert_eq!(g.current(), RAM_PAGES as i64 - 1, "{}: the granted frame is d2's", abi.name());
        // d2's table frame replaced one of its RAM pages.
        assert_eq!(d2.tot_pages(), RAM_PAGES - 1);
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST]), 0, "-ENXIO: not the caller's frame");
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[FIRST]), 0, "-EPERM: a grant mapping is not replaced");
        assert!(Arc::ptr_eq(&page(&g.d, FIRST), &page(&d2, 5)));
        g.balanced();
        // Mapped over RAM instead: that frame stays d1's, counted, unmapped.
        let h2 = grant_table::map_grant_ref(&g.d, &g.others, (FIRST + 1) << 12, gntmap::HOST_MAP, 3, 2).unwrap();
        assert_eq!(g.current(), RAM_PAGES as i64 - 1);
        assert_eq!(g.d.unmapped_pages(), 1);
        g.balanced();
        for (at, h) in [(FIRST, h), (FIRST + 1, h2)] {
            grant_table::unmap_grant_ref(&g.d, &g.others, at << 12, 0, h).unwrap();
        }
        assert!(!g.mapped(FIRST) && !g.mapped(FIRST + 1));
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[FIRST, FIRST + 1]), 1, "room for one: the covered frame counts");
        g.balanced();
        lifecycle::kill(&g.d);
        assert_eq!(g.d.tot_pages(), 0);
        assert_eq!(d2.tot_pages(), RAM_PAGES - 1);
        lifecycle::kill(&d2);
        assert_eq!(d2.tot_pages(), 0, "kill releases all");
    }
}

#[test]
fn memory_map_returns_the_boot_map_or_enosys() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        let native = abi.xen_ulong_size() == 8;
        let map_arg = |nr: u32, buffer: u64| {
            if native {
                XenMemoryMap { nr_entries: nr, pad: 0, buffer }.as_bytes().to_vec()
            } else {
                XenMemoryMapCompat { nr_entries: nr, buffer: buffer as u32 }.as_bytes().to_vec()
            }
        };
        write_phys(&g.d, ARG, &map_arg(4, LIST)).unwrap();
        assert_eq!(g.memory_op(memop::MEMORY_MAP, ARG), Errno::ENOSYS.to_hypercall_ret(), "{}: no map", abi.name());
        let map = vec![E820Entry::new(0, 0x9_f000, e820::RAM), E820Entry::new(0x10_0000, 0x300_0000, e820::RAM)];
        g.d.set_memory_map(map.clone());
        for (room, stored) in [(4u32, 2usize), (1, 1), (0, 0)] {
            write_phys(&g.d, LIST, &[0xEE; 60]).unwrap();
            write_phys(&g.d, ARG, &map_arg(room, LIST)).unwrap();
            assert_eq!(g.memory_op(memop::MEMORY_MAP, ARG), 0);
            let mut back = vec![0u8; if native { 16 } else { 8 }];
            read_phys(&g.d, ARG, &mut back).unwrap();
            assert_eq!(u32::from_le_bytes(back[..4].try_into().unwrap()) as usize, stored);
            let mut buf = [0u8; 60];
            read_phys(&g.d, LIST, &mut buf).unwrap();
            for (i, e) in map.iter().enumerate().take(stored) {
                assert_eq!(&E820Entry::read_from_bytes(&buf[i * 20..i * 20 + 20]).unwrap(), e);
            }
            assert!(buf[stored * 20..].iter().all(|&b| b == 0xEE), "nothing past what was stored");
        }
        write_phys(&g.d, ARG, &map_arg(2, RAM_PAGES << 12)).unwrap();
        assert_eq!(g.memory_op(memop::MEMORY_MAP, ARG), Errno::EFAULT.to_hypercall_ret());
        assert_eq!(g.memory_op(memop::MEMORY_MAP, u64::MAX - 2), Errno::EFAULT.to_hypercall_ret());
    }
}

#[test]
fn kill_releases_every_frame() {
    for abi in layouts() {
        let mut g = Guest::new(abi);
        g.d.set_max_pages(RAM_PAGES + 4);
        assert_eq!(g.op(memop::DECREASE_RESERVATION, &[FIRST]), 1);
        assert_eq!(g.op(memop::POPULATE_PHYSMAP, &[300, 301]), 2);
        assert_eq!(g.op(memop::INCREASE_RESERVATION, &[0, 0]), 2);
        g.balanced();
        lifecycle::kill(&g.d);
        assert_eq!(g.d.tot_pages(), 0, "{}", abi.name());
        assert!(g.d.p2m.lock().is_empty());
    }
}

#[derive(Clone, Debug)]
enum Step {
    Decrease(Vec<u64>, u32),
    Populate(Vec<u64>, u32),
    Increase(u64, u32),
    Limit(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let gfns = || prop::collection::vec(prop_oneof![3 => 3u64..80, 1 => 0u64..FAKE_GFN_LIMIT + 4], 1..6);
    prop_oneof![
        4 => (gfns(), 0u32..3).prop_map(|(g, o)| Step::Decrease(g, o)),
        4 => (gfns(), 0u32..3).prop_map(|(g, o)| Step::Populate(g, o)),
        1 => (1u64..4, 0u32..2).prop_map(|(n, o)| Step::Increase(n, o)),
        1 => (RAM_PAGES - 8..RAM_PAGES + 24).prop_map(Step::Limit),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random balloon traffic: tot_pages always equals the populated gfns
    /// of the domain's own RAM plus the frames it keeps unmapped, never
    /// exceeds max_pages unless the limit was lowered under it, and the
    /// guest's query agrees; kill brings it to zero.
    #[test]
    fn tot_pages_follows_random_balloon_traffic(which in 0..LAYOUTS.len(), steps in prop::collection::vec(step(), 1..24)) {
        let abi = layouts()[which];
        let mut g = Guest::new(abi);
        for s in steps {
            // gfns 1 and 2 hold the argument and the list: keep them.
            let keep = |v: &[u64]| v.iter().map(|&x| if x == 1 || x == 2 { x + 2 } else { x }).collect::<Vec<_>>();
            let before = g.d.tot_pages();
            let grew = match &s {
                Step::Decrease(v, o) => {
                    let r = Reservation { extent_order: *o, ..Reservation::new(LIST, v.len() as u64, domid::SELF) };
                    let v: Vec<u64> = keep(v).into_iter().map(|x| if x < 3 + (1 << o) { x + 8 } else { x }).collect();
                    prop_assert!(g.reserve(memop::DECREASE_RESERVATION, 0, r, &v) <= v.len() as i64);
                    false
                }
                Step::Populate(v, o) => {
                    let r = Reservation { extent_order: *o, ..Reservation::new(LIST, v.len() as u64, domid::SELF) };
                    let done = g.reserve(memop::POPULATE_PHYSMAP, 0, r, &keep(v));
                    prop_assert!(done >= 0 && done <= v.len() as i64);
                    prop_assert_eq!(g.d.tot_pages(), before + (done as u64) * (1 << o));
                    true
                }
                Step::Increase(n, o) => {
                    let r = Reservation { extent_order: *o, ..Reservation::new(0, *n, domid::SELF) };
                    let done = g.reserve(memop::INCREASE_RESERVATION, 0, r, &[]);
                    prop_assert_eq!(g.d.tot_pages(), before + (done as u64) * (1 << o));
                    true
                }
                Step::Limit(m) => {
                    g.d.set_max_pages(*m);
                    false
                }
            };
            prop_assert_eq!(g.d.tot_pages(), expected_tot_pages(&g.d));
            prop_assert_eq!(g.current(), g.d.tot_pages() as i64);
            if grew && g.d.tot_pages() > before {
                prop_assert!(g.d.tot_pages() <= g.d.max_pages());
            }
        }
        lifecycle::kill(&g.d);
        prop_assert_eq!(g.d.tot_pages(), 0);
    }
}
