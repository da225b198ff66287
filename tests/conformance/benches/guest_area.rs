//! Host benchmark of the guest-area mechanism: register + unregister every
//! vCPU's vcpu_info, runstate and time areas, and fork a domain with all of
//! them registered, for 1, 8, 64 and 512 vCPUs (four vCPUs' areas share each
//! page). Prints a table with the cost per vCPU, which must stay flat: the
//! mechanism is linear in the number of vCPUs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lantern_common::addr::Gfn;
use lantern_common::area::AreaKind;
use lantern_common::clock::Clock;
use lantern_common::domain::Domain;
use lantern_common::guest_area;
use lantern_common::lifecycle;
use lantern_conformance::{HostClock, TestDomain};
use xen_abi::layout::GuestAbi;

/// Keeps freed 4 KiB pages for reuse instead of returning them to the host
/// OS, as a hypervisor's own heap does: otherwise glibc trims its heap once
/// more than 128 KiB is free and every round pays page faults, which measures
/// the host kernel rather than the guest-area mechanism.
struct PageCache {
    free: std::sync::Mutex<Vec<usize>>,
}

// SAFETY: pages handed out are System allocations of exactly the page layout
// (either fresh or previously freed by a caller with that layout); every
// other layout goes straight to System.
unsafe impl GlobalAlloc for PageCache {
    // SAFETY: GlobalAlloc's contract; a cached page is exactly `PAGE`, the rest is System's.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout == PAGE {
            if let Some(p) = self.free.lock().ok().and_then(|mut f| f.pop()) {
                return p as *mut u8;
            }
        }
        // SAFETY: forwarding the caller's layout unchanged.
        unsafe { System.alloc(layout) }
    }

    // SAFETY: as `alloc`; a cached page is zeroed before it is handed out.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout == PAGE {
            if let Some(p) = self.free.lock().ok().and_then(|mut f| f.pop()) {
                // SAFETY: a cached page is a live, exclusively owned 4 KiB block.
                unsafe { std::ptr::write_bytes(p as *mut u8, 0, 4096) };
                return p as *mut u8;
            }
        }
        // SAFETY: forwarding the caller's layout unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    // SAFETY: the caller passes a block this allocator returned with this layout.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout == PAGE {
            // try_lock: never allocate while holding the lock (the Vec may
            // grow); on contention fall back to freeing.
            if let Ok(mut f) = self.free.try_lock() {
                if f.len() < f.capacity() {
                    f.push(ptr as usize);
                    return;
                }
            }
        }
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

const PAGE: Layout = match Layout::from_size_align(4096, 4096) {
    Ok(l) => l,
    Err(_) => panic!("page layout"),
};

#[global_allocator]
static ALLOC: PageCache = PageCache { free: std::sync::Mutex::new(Vec::new()) };

const SHARING: u32 = 4;

fn build(abi: &'static dyn GuestAbi, vcpus: u32, clock: Arc<dyn Clock>) -> Arc<Domain> {
    let pages = (vcpus / SHARING + 1) as u64 * 3 + 4;
    TestDomain::new(abi).name("bench").vcpus(vcpus).ram_pages(pages).clock(clock).build()
}

fn register_all(d: &Domain) {
    for v in d.vcpus() {
        let page = (v.id / SHARING) as u64 * 3;
        let slot = (v.id % SHARING) as u64;
        guest_area::register_vcpu_info(d, Some(v.id), v, Gfn(page), slot * 64).unwrap();
        guest_area::register_runstate_area(d, Some(v.id), v, ((page + 1) << 12) + slot * 64).unwrap();
        guest_area::register_time_area(d, Some(v.id), v, ((page + 2) << 12) + slot * 32).unwrap();
    }
}

fn unregister_all(d: &Domain) {
    for v in d.vcpus() {
        for kind in AreaKind::ALL {
            guest_area::unmap_guest_area(d, v, kind);
        }
    }
}

/// Best-of-`rounds` time of `f`, each round running it `iters` times.
fn measure(rounds: u32, iters: u32, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters
        })
        .min()
        .unwrap()
}

fn main() {
    // Room for every page the largest case frees, reserved up front so the
    // allocator never grows the cache from inside dealloc.
    ALLOC.free.lock().unwrap().reserve_exact(1 << 14);
    let clock: Arc<dyn Clock> = Arc::new(HostClock::new());
    let abi = lantern_conformance::layout("x86_64");
    println!("guest-area benchmark (layout {}, {} vCPUs' areas per page, best of 7 rounds)", abi.name(), SHARING);
    println!("{:>6} | {:>14} {:>12} | {:>14} {:>12}", "vCPUs", "map+unmap", "per vCPU", "fork", "per vCPU");
    let mut per_vcpu = Vec::new();
    for n in [1u32, 8, 64, 512] {
        let iters = (4096 / n).max(4);
        let d = build(abi, n, clock.clone());
        let map_unmap = measure(7, iters, || {
            register_all(&d);
            unregister_all(&d);
        });
        register_all(&d);
        let fork = measure(7, iters.min(64), || {
            let child = lifecycle::fork(&d, 2, clock.clone()).unwrap();
            lifecycle::kill(&child);
            black_box(child);
        });
        let (mu, fk) = (map_unmap.as_nanos() as f64, fork.as_nanos() as f64);
        println!(
            "{n:>6} | {:>11.1} us {:>9.0} ns | {:>11.1} us {:>9.0} ns",
            mu / 1e3,
            mu / n as f64,
            fk / 1e3,
            fk / n as f64
        );
        per_vcpu.push((n, mu / n as f64, fk / n as f64));
    }
    for (lo, hi) in [(1, 3), (2, 3)] {
        let (n0, mu0, fk0) = per_vcpu[lo];
        let (n1, mu1, fk1) = per_vcpu[hi];
        println!(
            "per-vCPU cost at {n1} vs {n0} vCPUs: map+unmap {:.2}x, fork {:.2}x (1.0 = perfectly linear)",
            mu1 / mu0,
            fk1 / fk0
        );
    }
}
