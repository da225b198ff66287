//! Host benchmark of the guest-area mechanism: register + unregister every
//! vCPU's vcpu_info, runstate and time areas, and fork a domain with all of
//! them registered, for 1, 8, 64 and 512 vCPUs (four vCPUs' areas share each
//! page). Prints a table with the cost per vCPU, which must stay flat: the
//! mechanism is linear in the number of vCPUs.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lantern_common::arch::{Clock, GuestAbi, TimeSample};
use lantern_common::domain::{Domain, DomainConfig};
use lantern_common::guest_area::{self, AreaKind};
use lantern_common::lifecycle;

struct MonoClock(Instant);

impl Clock for MonoClock {
    fn sample(&self) -> TimeSample {
        let ns = self.0.elapsed().as_nanos() as u64;
        TimeSample { system_time_ns: ns, tsc: ns, tsc_to_system_mul: 1 << 31, tsc_shift: 1 }
    }
}

const SHARING: u32 = 4;

fn build(abi: &'static dyn GuestAbi, vcpus: u32, clock: Arc<dyn Clock>) -> Arc<Domain> {
    let pages = (vcpus / SHARING + 1) as u64 * 3 + 4;
    Domain::new(DomainConfig { id: 1, name: "bench".into(), max_vcpus: vcpus, ram_pages: pages, abi, clock }).unwrap()
}

fn register_all(d: &Domain) {
    for v in d.vcpus() {
        let page = (v.id / SHARING) as u64 * 3;
        let slot = (v.id % SHARING) as u64;
        guest_area::register_vcpu_info(d, Some(v.id), v, page, slot * 64).unwrap();
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
    let clock: Arc<dyn Clock> = Arc::new(MonoClock(Instant::now()));
    let abi: &'static dyn GuestAbi = &lantern_arch_x86::layout::X86_64;
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
