//! In-guest round-trip costs, for the `bench` command-line word: a bare
//! trap, the null hypercall (`xen_version`) and a `register_vcpu_info` that
//! the hypervisor must fully decode and then refuse (`-EBUSY`: vCPU 0 is
//! registered by then). One `BENCH` line each.

use xen_abi::nr::{hypercall as nr, vcpuop};
use xen_abi::public::VcpuRegisterVcpuInfo;
use zerocopy::IntoBytes;

use crate::console;
use crate::context::Ctx;
use crate::hypercall;
use crate::time_area;
use crate::{Guest, MAX_VCPUS, PAGE_SIZE};

/// Iterations of each `bench` loop.
const BENCH_ITERS: u32 = 2000;

/// Measure and print every figure. The secondaries are taken down meanwhile
/// (`VCPUOP_down`, then `VCPUOP_up`) so they do not share the figures;
/// other domains still do.
pub(crate) fn run(cx: &Ctx) {
    let g = cx.g;
    let parked: [bool; MAX_VCPUS] = core::array::from_fn(|v| v != 0 && cx.started[v]);
    for v in (0..MAX_VCPUS).filter(|&v| parked[v]) {
        hypercall::vcpu_down(g, v as u32);
    }
    let hz = match g.tick_hz() {
        0 => time_area::tick_hz(g, cx.time_gpa[0]),
        hz => hz,
    };
    // Built once, outside the loop: the figure is the hypercall's cost.
    let arg = VcpuRegisterVcpuInfo { mfn: cx.pages.second_vcpu_info / PAGE_SIZE, offset: 0, rsvd: 0 };
    let argp = g.gpa_of(arg.as_bytes().as_ptr());
    measure(g, hz, "bare_trap", &mut || g.bare_trap());
    measure(g, hz, "xen_version", &mut || hypercall::xen_version(g));
    measure(g, hz, "register_vcpu_info_ebusy", &mut || {
        g.hypercall(nr::VCPU_OP, [vcpuop::REGISTER_VCPU_INFO, 0, argp, 0, 0])
    });
    for v in (0..MAX_VCPUS).filter(|&v| parked[v]) {
        hypercall::vcpu_up(g, v as u32);
    }
}

/// One `BENCH` line: the ticks per call of `call` over [`BENCH_ITERS`]
/// calls (after one warm-up call whose result is printed), in ns at `hz`.
fn measure(g: &dyn Guest, hz: u64, name: &str, call: &mut dyn FnMut() -> i64) {
    let rc = call();
    let t0 = g.ticks();
    for _ in 0..BENCH_ITERS {
        call();
    }
    let t1 = g.ticks();
    let per = t1.wrapping_sub(t0) / BENCH_ITERS as u64;
    let ns = if hz != 0 { (per as u128 * 1_000_000_000 / hz as u128) as u64 } else { 0 };
    console::line(
        &|b| g.console(b),
        format_args!(
            "BENCH name={name} iterations={BENCH_ITERS} ticks_per_call={per} tick_hz={hz} ns_per_call={ns} rc={rc}"
        ),
    );
}
