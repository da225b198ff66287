//! Host tests of the generator against a guest that records every call and
//! answers from a fixed table (it dereferences nothing the fuzzer hands
//! it): the same seed gives the same calls, every hypercall and sub-op is
//! reached, and the calls the fuzzer must never make are never made.

use std::collections::BTreeSet;
use std::sync::Mutex;

use xen_abi::nr::{evtchnop, gnttabop, hvmop, hypercall as nr, memop, schedop, vcpuop, vmasst, xenver};
use xen_abi::Errno;

use super::*;
use crate::layout::{ARM64, RISCV64, X86_32, X86_64};
use crate::{Probe, LAPIC_MMIO_GPA};

/// The fuzzer's pages are one static: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A guest that records `(nr, args)` and answers by the call's number.
struct Recorder {
    layout: &'static Layout,
    calls: Mutex<Vec<(u64, [u64; 5])>>,
    /// Every frame handed over in an extent list, and every page a
    /// shutdown argument pointed into.
    given: Mutex<BTreeSet<u64>>,
    shutdowns: Mutex<BTreeSet<u64>>,
    /// A rule broken, if any (checked at the call, while the argument
    /// memory still holds what the fuzzer wrote).
    broken: Mutex<Vec<String>>,
    /// Where the guest's own image is ([`Guest::image`]).
    image: core::ops::Range<u64>,
}

impl Recorder {
    fn new(layout: &'static Layout) -> Self {
        Recorder {
            layout,
            calls: Mutex::new(Vec::new()),
            given: Mutex::new(BTreeSet::new()),
            shutdowns: Mutex::new(BTreeSet::new()),
            broken: Mutex::new(Vec::new()),
            image: 0..0,
        }
    }

    /// Whether `addr` is in the guest's own image (for a null pointer, where
    /// the image starts at 0).
    fn in_image(&self, addr: u64) -> bool {
        self.image.contains(&addr)
    }

    /// Whether `addr` is readable memory of the fuzzer's (its argument
    /// pages).
    fn readable(&self, addr: u64) -> bool {
        let base = PAGES.args[0].gpa();
        addr >= base && addr < base + ARG_PAGES as u64 * PAGE_SIZE
    }

    /// Whether the extent of `1 << order` frames at `gfn` may be handed
    /// over: the pool and the table page, or numbers beyond any domain's
    /// RAM (from [`FAULT_GPA`] up), never the fuzzer's own argument pages
    /// and hole nor anything past the pool (the rest of the guest).
    fn allowed_extent(&self, gfn: u64, order: u32) -> bool {
        let first = PAGES.args[0].gpa() / PAGE_SIZE;
        let table = PAGES.table.gpa() / PAGE_SIZE;
        let pool_end = PAGES.pool[POOL_PAGES - 1].gpa() / PAGE_SIZE + 1;
        let end = gfn.saturating_add(1 << order.min(32));
        let pool_or_table = gfn >= table && end <= pool_end;
        // Any overlap with the guest's pages other than the pool or table.
        let overlaps_own = gfn < pool_end + 64 && end > first.saturating_sub(64);
        gfn >= FAULT_GPA / PAGE_SIZE && (pool_or_table || !overlaps_own)
    }

    fn check(&self, n: u64, mut a: [u64; 5]) {
        // What the hypervisor sees: a compat guest's registers are 32 bits.
        let n = if self.layout.xen_ulong_size == 4 {
            a = a.map(|x| x & 0xFFFF_FFFF);
            n & 0xFFFF_FFFF
        } else {
            n
        };
        let mut broken = self.broken.lock().unwrap();
        if n == nr::SCHED_OP && a[0] == schedop::SHUTDOWN && self.readable(a[1]) {
            broken.push(format!("readable shutdown {a:x?}"));
        }
        if n == nr::SCHED_OP && a[0] == schedop::SHUTDOWN {
            self.shutdowns.lock().unwrap().insert(a[1] / PAGE_SIZE);
        }
        if n == nr::SCHED_OP && a[0] == schedop::BLOCK {
            broken.push("block".into());
        }
        // A poll's struct read from page 0 has no timeout the fuzzer chose
        // (zeros there: no ports, no timeout, a vCPU blocked for good).
        if n == nr::SCHED_OP && a[0] == schedop::POLL && a[1] == 0 {
            broken.push("poll with its struct at 0".into());
        }
        if n == nr::VCPU_OP && a[0] == vcpuop::DOWN && a[1] as u32 == 0 {
            broken.push("down of vCPU 0".into());
        }
        if n == nr::VCPU_OP && a[0] == vcpuop::INITIALISE && (a[1] as u32) < 2 && self.readable(a[2]) {
            broken.push(format!("readable initialise of vCPU {}", a[1]));
        }
        // Nothing of ours the hypervisor reads a context or writes an area
        // or an output to may be in our image.
        if n == nr::VCPU_OP && a[0] == vcpuop::INITIALISE && self.in_image(a[2]) {
            broken.push(format!("initialise of vCPU {} from our image", a[1] as u32));
        }
        let area = [
            vcpuop::REGISTER_RUNSTATE_PHYS_AREA,
            vcpuop::REGISTER_VCPU_TIME_PHYS_AREA,
            vcpuop::REGISTER_RUNSTATE_MEMORY_AREA,
            vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA,
        ];
        if n == nr::VCPU_OP && area.contains(&a[0]) && self.readable(a[2]) && self.readable(a[2].wrapping_add(7)) {
            let mut b = [0u8; 8];
            self.read(a[2], &mut b);
            let addr = if self.layout.xen_ulong_size == 8 {
                u64::from_le_bytes(b)
            } else {
                u32::from_le_bytes(b[..4].try_into().unwrap()) as u64
            };
            // (0 unregisters a guest-virtual area.)
            let va = matches!(a[0], vcpuop::REGISTER_RUNSTATE_MEMORY_AREA | vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA);
            if self.in_image(addr) && !(va && addr == 0) {
                broken.push(format!("area {} registered at {addr:#x}, in our image", a[0]));
            }
        }
        // An array of more than one grant op ends the argument pages: the
        // elements after the first are in the hole, never stale bytes.
        if n == nr::GRANT_TABLE_OP && a[2] as u32 != 1 && self.readable(a[1]) {
            use xen_abi::public::{GnttabCopy, GnttabCopyUlong32, GnttabMapGrantRef, GnttabUnmapGrantRef};
            let elem = match a[0] {
                gnttabop::MAP_GRANT_REF => Some(core::mem::size_of::<GnttabMapGrantRef>()),
                gnttabop::UNMAP_GRANT_REF => Some(core::mem::size_of::<GnttabUnmapGrantRef>()),
                gnttabop::COPY if self.layout.xen_ulong_size == 8 => Some(core::mem::size_of::<GnttabCopy>()),
                gnttabop::COPY => Some(core::mem::size_of::<GnttabCopyUlong32>()),
                _ => None,
            };
            if let Some(elem) = elem {
                if self.readable(a[1] + elem as u64) {
                    broken.push(format!(
                        "grant op {} x{}: element 2 at {:#x} is stale bytes",
                        a[0],
                        a[2] as u32,
                        a[1] + elem as u64
                    ));
                }
            }
        }
        if matches!(n, nr::EVENT_CHANNEL_OP | nr::GRANT_TABLE_OP) && self.in_image(a[1]) {
            broken.push(format!("hypercall {n} op {} argument {:#x} in our image", a[0], a[1]));
        }
        if n == nr::MEMORY_OP && matches!(a[0] & memop::CMD_MASK, memop::DECREASE_RESERVATION | memop::POPULATE_PHYSMAP)
        {
            // The extent list, where it is ours to read.
            let w = self.layout.xen_ulong_size as u64;
            let mut r = [0u8; 24];
            if self.readable(a[1]) && self.readable(a[1].wrapping_add(23)) {
                self.read(a[1], &mut r);
                let order = if w == 8 {
                    u32::from_le_bytes(r[16..20].try_into().unwrap())
                } else {
                    u32::from_le_bytes(r[8..12].try_into().unwrap())
                };
                let (start, count) = if w == 8 {
                    (u64::from_le_bytes(r[0..8].try_into().unwrap()), u64::from_le_bytes(r[8..16].try_into().unwrap()))
                } else {
                    (
                        u32::from_le_bytes(r[0..4].try_into().unwrap()) as u64,
                        u32::from_le_bytes(r[4..8].try_into().unwrap()) as u64,
                    )
                };
                if count > 0 && self.in_image(start) {
                    broken.push(format!("a frame list at {start:#x}, in our image"));
                }
                // Where 0 is RAM but not our image, page 0 holds whatever
                // the hypervisor wrote at earlier null pointers: frame
                // numbers of ours among them.
                if count > 0 && start == 0 {
                    broken.push("a frame list at 0, page 0's stale bytes".into());
                }
                for i in 0..count.min(4) {
                    let at = start.wrapping_add(i * w);
                    if self.readable(at) && self.readable(at.wrapping_add(w - 1)) {
                        let mut g = [0u8; 8];
                        self.read(at, &mut g[..w as usize]);
                        let gfn = u64::from_le_bytes(g);
                        self.given.lock().unwrap().insert(gfn);
                        if !self.allowed_extent(gfn, order) {
                            broken.push(format!("gives away gfn {gfn:#x} order {order}"));
                        }
                    }
                }
            }
        }
    }
}

// SAFETY: every address the recorder reads or writes is one the fuzzer
// writes itself (its static pages) or checked readable first.
unsafe impl Guest for Recorder {
    fn layout(&self) -> &'static Layout {
        self.layout
    }

    fn hypercall(&self, n: u64, a: [u64; 5]) -> i64 {
        self.check(n, a);
        self.calls.lock().unwrap().push((n, a));
        // A spread of answers, so the histogram has several entries.
        match n.wrapping_add(a[0]) % 4 {
            0 => 0,
            1 => Errno::EINVAL.to_hypercall_ret(),
            2 => Errno::EFAULT.to_hypercall_ret(),
            _ => 3,
        }
    }

    fn console(&self, _bytes: &[u8]) {}

    fn image(&self) -> core::ops::Range<u64> {
        self.image.clone()
    }

    fn scratch_pages(&self) -> [u64; 4] {
        [0; 4]
    }

    fn shared_info_page(&self) -> u64 {
        0
    }

    fn balloon_pages(&self) -> [u64; 2] {
        [0; 2]
    }

    fn ballooned_read(&self) -> Probe {
        Probe::Value(0)
    }

    fn vcpu_count(&self) -> u32 {
        2
    }

    fn start_secondary(&self, _vcpu: u32) -> i64 {
        0
    }

    fn dummy_start_refused(&self) -> bool {
        true
    }

    fn setup_upcall(&self) -> i64 {
        0
    }

    fn upcalls_enabled(&self, _on: bool) {}

    fn cmdline(&self) -> &str {
        "fuzz calls=1000 seed=7 self=1 peers=2,3"
    }

    fn name(&self) -> &'static str {
        "recorder"
    }
}

/// What a run called (`(nr, args)`, in order), its results, the rules broken.
type Run = (Vec<(u64, [u64; 5])>, Histogram, Vec<String>);

/// `calls` calls from `seed` in `layout`.
fn run_fuzzer(layout: &'static Layout, seed: u64, calls: u64) -> Run {
    run_fuzzer_in(Recorder::new(layout), seed, calls)
}

/// As [`run_fuzzer`], the guest being `g`.
fn run_fuzzer_in(g: Recorder, seed: u64, calls: u64) -> Run {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = Fuzzer::new(&g, seed, calls, 1, &[2, 3]);
    f.run();
    assert_eq!(f.calls(), calls, "the run makes exactly its calls");
    let hist = f.histogram().clone();
    let calls = g.calls.into_inner().unwrap();
    let mut broken = g.broken.into_inner().unwrap();
    // A frame the hypervisor was asked to populate is readable after: no
    // shutdown argument may point into one, nor near the frames handed
    // over beyond the fuzzer's own pages (they are drawn from a range).
    let own = PAGES.args[0].gpa() / PAGE_SIZE..PAGES.pool[POOL_PAGES - 1].gpa() / PAGE_SIZE + 1;
    let given: Vec<u64> = g.given.into_inner().unwrap().into_iter().filter(|g| *g != 0 && !own.contains(g)).collect();
    for page in g.shutdowns.into_inner().unwrap() {
        if let Some(g) = given.iter().find(|g| g.abs_diff(page) < 4096) {
            broken.push(format!("a shutdown argument in frame {page:#x}, near {g:#x}, which was handed over"));
        }
    }
    (calls, hist, broken)
}

#[test]
fn the_same_seed_makes_the_same_calls() {
    for layout in [&X86_64, &X86_32, &ARM64] {
        let (a, ha, _) = run_fuzzer(layout, 42, 3000);
        let (b, hb, _) = run_fuzzer(layout, 42, 3000);
        assert_eq!(a, b, "{}", layout.name);
        assert_eq!(ha, hb);
        let (c, _, _) = run_fuzzer(layout, 43, 3000);
        assert_ne!(a, c, "another seed, other calls");
    }
    // The two x86 layouts do not make the same calls from one seed.
    assert_ne!(run_fuzzer(&X86_64, 42, 500).0, run_fuzzer(&X86_32, 42, 500).0);
}

#[test]
fn every_hypercall_and_sub_op_is_reached() {
    let (calls, hist, _) = run_fuzzer(&X86_64, 1, 40_000);
    let seen: BTreeSet<(u64, u64)> = calls.iter().map(|(n, a)| (*n, a[0])).collect();
    let want: &[(u64, &[u64])] = &[
        (nr::VCPU_OP, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15]),
        (nr::MEMORY_OP, &[0, 1, 2, 3, 4, 6, 7, 9]),
        (nr::EVENT_CHANNEL_OP, &[0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]),
        (nr::GRANT_TABLE_OP, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
        (nr::HVM_OP, &[hvmop::SET_PARAM, hvmop::GET_PARAM, hvmop::SET_EVTCHN_UPCALL_VECTOR]),
        (nr::XEN_VERSION, &[xenver::VERSION, xenver::GET_FEATURES, xenver::COMMANDLINE]),
        (nr::SCHED_OP, &[schedop::YIELD, schedop::POLL, schedop::SHUTDOWN]),
        (nr::VM_ASSIST, &[vmasst::CMD_ENABLE, vmasst::CMD_DISABLE]),
    ];
    for (n, subs) in want {
        for s in *subs {
            assert!(seen.contains(&(*n, *s)), "hypercall {n} sub-op {s} never made");
        }
        // And unknown sub-ops of each.
        assert!(seen.iter().any(|(m, s)| m == n && *s > 64), "hypercall {n}: no unknown sub-op");
    }
    assert!(calls.iter().any(|(n, _)| *n == nr::SET_TIMER_OP));
    assert!(calls.iter().any(|(n, _)| *n == nr::CONSOLE_IO));
    assert!(calls.iter().filter(|(n, _)| *n > 64).count() > 100, "unknown numbers");
    // The known evtchn/gnttab numbers are what the table above lists.
    assert_eq!(evtchnop::RESET_CONT, 14);
    assert_eq!(gnttabop::GET_VERSION, 10);
    assert_eq!(hist.total(), 40_000);
    assert!(hist.count(Errno::EINVAL) > 0 && hist.count(Errno::EFAULT) > 0);
}

#[test]
fn pointers_reach_every_class() {
    let (calls, _, _) = run_fuzzer(&X86_64, 5, 20_000);
    let base = PAGES.args[0].gpa();
    let args = |a: &[u64; 5]| [a[1], a[2]];
    let any = |p: &dyn Fn(u64) -> bool| calls.iter().any(|(_, a)| args(a).iter().any(|&x| p(x)));
    assert!(any(&|x| x >= base && x < base + 2 * PAGE_SIZE && x % 8 == 0), "valid");
    assert!(any(&|x| x >= base && x < base + 2 * PAGE_SIZE && x % 8 != 0), "misaligned");
    assert!(any(&|x| x >= base + PAGE_SIZE - 24 && x < base + PAGE_SIZE && x % 8 != 0), "page-crossing");
    assert!(any(&|x| (PAGES.hole.gpa()..PAGES.hole.gpa() + PAGE_SIZE).contains(&x)), "the hole");
    assert!(any(&|x| (UNMAPPED_GPA..UNMAPPED_GPA + UNMAPPED_LEN).contains(&x)), "unmapped");
    assert!(any(&|x| (LAPIC_MMIO_GPA..LAPIC_MMIO_GPA + PAGE_SIZE).contains(&x)), "mmio");
    assert!(any(&|x| x >= 0xFFFF_8000_0000_0000), "hypervisor");
    assert!(any(&|x| (1 << 33..1 << 41).contains(&x)), "another domain's range");
}

#[test]
fn the_calls_that_would_end_the_domain_are_never_made() {
    for layout in [&X86_64, &X86_32, &ARM64, &RISCV64] {
        let (_, _, broken) = run_fuzzer(layout, 9, 30_000);
        assert!(broken.is_empty(), "{}: {broken:?}", layout.name);
    }
}

/// arm64's image starts at 0 (the guest is linked there), so a null
/// pointer is a pointer into our own code: the hypervisor reads and writes
/// it as the RAM it is. Found on arm64: a frame list read from 0 gave away
/// our code pages, and areas registered at 0 were written over our code.
#[test]
fn with_the_image_at_zero_no_null_pointer_names_it() {
    for seed in [2, 5, 9] {
        let mut g = Recorder::new(&ARM64);
        g.image = 0..0x4_0000;
        let (_, _, broken) = run_fuzzer_in(g, seed, 30_000);
        assert!(broken.is_empty(), "seed {seed}: {broken:?}");
    }
    // Where the image is elsewhere, address 0 is still fuzzed.
    let (calls, _, _) = run_fuzzer(&X86_64, 5, 20_000);
    assert!(calls.iter().any(|(n, a)| *n == nr::EVENT_CHANNEL_OP && a[1] == 0), "a null pointer");
}

#[test]
fn histogram_line() {
    let mut h = Histogram::default();
    for rc in [0, 0, 5, Errno::EINVAL.to_hypercall_ret(), Errno::ENOSYS.to_hypercall_ret(), -4000] {
        h.add(rc);
    }
    assert_eq!(h.to_string(), "0=2 >0=1 -EINVAL=1 -ENOSYS=1 other=1");
    assert_eq!(h.total(), 6);
}
