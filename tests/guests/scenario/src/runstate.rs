//! The runstate area (`VCPUOP_register_runstate_phys_area`): vCPU 0's,
//! watched across a timer preemption, and a running remote vCPU's,
//! registered from vCPU 0; and the consistent read of a runstate area.

use xen_abi::nr::runstate::{RUNNABLE, RUNNING, XEN_RUNSTATE_UPDATE};

use crate::context::{expect_ok, read_obj, CheckResult, Ctx};
use crate::hypercall;
use crate::Guest;

/// Where vCPU 0's runstate area goes on the areas page: past its 32-byte
/// time area, 8-aligned. The remote vCPU's follows it.
const RUNSTATE_AREA_OFFSET: u64 = 64;

/// How many busy spins of 100 000 iterations to wait for a preemption.
const PREEMPTION_SPINS: u32 = 400;

/// How often to retry a read the hypervisor keeps tearing.
const READ_TRIES: u32 = 1000;

/// Consistent snapshot of a runstate area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Runstate {
    pub state: u32,
    pub entry: u64,
    pub time: [u64; 4],
}

/// Consistent read of the runstate area at `gpa` (`state_entry_time`
/// unchanged across the read and without `XEN_RUNSTATE_UPDATE`).
pub(crate) fn read_runstate(g: &dyn Guest, gpa: u64) -> Option<Runstate> {
    let l = g.layout();
    let read_u64 = |gpa: u64| read_obj::<u64>(g, gpa);
    let entry_gpa = gpa + l.runstate_entry_offset as u64;
    for _ in 0..READ_TRIES {
        let e1 = read_u64(entry_gpa);
        let mut r = Runstate { state: read_obj(g, gpa), entry: e1 & !XEN_RUNSTATE_UPDATE, time: [0; 4] };
        for (i, t) in r.time.iter_mut().enumerate() {
            *t = read_u64(gpa + l.runstate_time_offset as u64 + 8 * i as u64);
        }
        let e2 = read_u64(entry_gpa);
        if e1 == e2 && e1 & XEN_RUNSTATE_UPDATE == 0 {
            return Some(r);
        }
        core::hint::spin_loop();
    }
    None
}

/// Register vCPU 0's runstate area and watch its times move across a
/// timer preemption (the secondaries keep the CPU contended); also
/// register the remote vCPU's, from vCPU 0.
pub(crate) fn checks(cx: &mut Ctx, remote: u32) {
    let gpa = cx.pages.areas + RUNSTATE_AREA_OFFSET;
    let rc = hypercall::register_runstate_phys_area(cx.g, 0, gpa);
    if rc == 0 {
        cx.runstate_gpa[0] = gpa;
    }
    let first = if rc == 0 { read_runstate(cx.g, gpa) } else { None };
    cx.check("runstate_area_registered", registered(rc, first));
    cx.check("runstate_times_advancing_across_preemption", advancing_across_preemption(cx, gpa, first));
    let res = remote_area(cx, remote);
    cx.check("runstate_area_remote", res);
}

/// The registration (result `rc`) succeeded and the area says running.
fn registered(rc: i64, first: Option<Runstate>) -> CheckResult {
    expect_ok(rc)?;
    match first {
        Some(r) if r.state == RUNNING && r.entry != 0 => Ok(()),
        Some(r) => Err(reason!("state={} entry={} (expected running, entry != 0)", r.state, r.entry)),
        None => Err(reason!("area never consistent")),
    }
}

/// Spinning without yielding until the timer has preempted us at least
/// once (time spent runnable grows), the running time and the state entry
/// time must have moved on too.
fn advancing_across_preemption(cx: &Ctx, gpa: u64, first: Option<Runstate>) -> CheckResult {
    let Some(r1) = first else { return Err(reason!("no valid first reading")) };
    let (run, runnable) = (RUNNING as usize, RUNNABLE as usize);
    let mut preempted = false;
    let mut last = r1;
    for _ in 0..PREEMPTION_SPINS {
        cx.g.busy_wait(100_000);
        if let Some(r) = read_runstate(cx.g, gpa) {
            last = r;
            if r.time[runnable] > r1.time[runnable] {
                preempted = true;
                break;
            }
        }
    }
    ensure!(
        preempted,
        "no preemption seen: running {}->{} runnable {}->{} entry {}->{}",
        r1.time[run],
        last.time[run],
        r1.time[runnable],
        last.time[runnable],
        r1.entry,
        last.entry
    );
    ensure!(
        last.time[run] > r1.time[run] && last.entry > r1.entry,
        "running {}->{} entry {}->{}",
        r1.time[run],
        last.time[run],
        r1.entry,
        last.entry
    );
    Ok(())
}

/// The remote vCPU's runstate, registered while it runs, fills in.
fn remote_area(cx: &mut Ctx, remote: u32) -> CheckResult {
    ensure!(remote < cx.vcpus && cx.started[remote as usize], "vCPU {remote} not running");
    let gpa = cx.pages.areas + RUNSTATE_AREA_OFFSET + cx.layout.runstate_size.next_multiple_of(8) as u64;
    let rc = hypercall::register_runstate_phys_area(cx.g, remote, gpa);
    expect_ok(rc)?;
    cx.runstate_gpa[remote as usize] = gpa;
    let mut last = None;
    let filled = cx.wait_for(|| {
        last = read_runstate(cx.g, gpa);
        matches!(last, Some(r) if r.entry != 0 && r.time[RUNNING as usize] != 0)
    });
    ensure!(filled, "remote runstate never filled in: {:?}", last);
    Ok(())
}
