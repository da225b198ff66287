//! What a guest reading concurrently sees while the core writes its areas:
//! a reader thread spins on the page while the core writes, and every value
//! it observes must be one the protocol allows — never a torn or skipped
//! intermediate state. End states alone cannot tell these mistakes apart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use lantern_common::guest_area::register_runstate_area;
use lantern_common::runstate;
use lantern_common::runstate_info::RunstateInfo;
use lantern_conformance::*;
use xen_abi::nr::runstate::XEN_RUNSTATE_UPDATE;

/// Two `state_entry_time`s none of whose bytes are equal (and without the
/// update flag), so any mix of the two is neither.
const A: u64 = 0x1122_3344_5566_7788;
const B: u64 = 0x2a3b_4c5d_6e7f_8091;

#[test]
fn compat_state_entry_time_is_at_4_and_never_torn() {
    let abi = layout("x86_32");
    let entry = abi.runstate().state_entry_time;
    assert_eq!((entry.offset, entry.size), (4, 8), "compat vcpu_runstate_info is packed");
    let (d, _) = domain(abi, 1);
    let v = d.vcpu(0).unwrap();
    register_runstate_area(&d, Some(0), v, gaddr(20, 0)).unwrap();
    let area = v.areas().runstate.unwrap();
    let at = area.offset + entry.offset;
    assert_eq!(at % 8, 4, "the field is not naturally aligned");
    let info = |t| RunstateInfo { state: 0, state_entry_time: t, time: [1, 2, 3, 4] };
    runstate::write_area(abi, &area, &info(A));
    assert_eq!(area.page.read_uint(at, 8).unwrap(), A);

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (page, stop) = (area.page.clone(), stop.clone());
        thread::spawn(move || {
            let mut bad = Vec::new();
            let mut reads = 0u64;
            while !stop.load(Ordering::Acquire) || reads < 1000 {
                let seen = page.read_uint(at, 8).unwrap();
                reads += 1;
                if ![A, B, A | XEN_RUNSTATE_UPDATE, B | XEN_RUNSTATE_UPDATE].contains(&seen) && bad.len() < 8 {
                    bad.push(seen);
                }
            }
            bad
        })
    };
    for i in 0..200_000 {
        runstate::write_area(abi, &area, &info(if i % 2 == 0 { B } else { A }));
    }
    stop.store(true, Ordering::Release);
    let bad = reader.join().unwrap();
    assert!(bad.is_empty(), "reader saw torn state_entry_time values: {bad:#x?}");
    assert_eq!(area.page.read_uint(at, 8).unwrap(), A);
}

/// Spins a reader on a clone of `page` while `write` runs at least `n`
/// times, and on until the reader has caught an update in progress or
/// [`OBSERVE_BUDGET`] has passed (on a loaded machine the reader may get a
/// CPU only now and then; a time bound, not a count, keeps that from
/// failing a correct writer); the reader calls `look` on each pass. Returns
/// how often it saw an update in progress and the first torn records it saw.
/// How long [`observe`] keeps writing for a reader that has not yet caught
/// an update in progress.
const OBSERVE_BUDGET: std::time::Duration = std::time::Duration::from_secs(30);

fn observe(
    page: lantern_common::memory::PageRef,
    n: u32,
    mut write: impl FnMut(u32),
    look: impl Fn(&lantern_common::memory::Page) -> Seen + Send + 'static,
) -> (u64, Vec<String>) {
    use std::sync::atomic::AtomicU64;
    // One observation at a time: each needs a CPU for its reader.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let in_progress = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, started, in_progress) = (stop.clone(), started.clone(), in_progress.clone());
        thread::spawn(move || {
            let mut torn = Vec::new();
            started.store(true, Ordering::Release);
            while !stop.load(Ordering::Acquire) {
                match look(&page) {
                    Seen::InProgress => {
                        in_progress.fetch_add(1, Ordering::Relaxed);
                    }
                    Seen::Torn(what) if torn.len() < 4 => torn.push(what),
                    _ => {}
                }
            }
            torn
        })
    };
    while !started.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let started_at = std::time::Instant::now();
    let mut i = 0u32;
    loop {
        write(i);
        i = i.wrapping_add(1);
        let seen = in_progress.load(Ordering::Relaxed) > 0;
        if i >= n && (seen || started_at.elapsed() > OBSERVE_BUDGET) {
            break;
        }
    }
    stop.store(true, Ordering::Release);
    let torn = reader.join().unwrap();
    (in_progress.load(Ordering::Relaxed), torn)
}

/// What one reader pass saw.
enum Seen {
    /// The writer's "update in progress" mark.
    InProgress,
    /// A complete record, consistent.
    Consistent,
    /// The writer moved on between the reader's two looks: retry.
    Retry,
    /// A record the protocol said was complete but was not.
    Torn(String),
}

#[test]
fn time_records_are_written_with_the_odd_version_step() {
    use lantern_common::time;
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let v = d.vcpu(0).unwrap();
        register_runstate_area(&d, Some(0), v, gaddr(21, 0)).unwrap();
        lantern_common::guest_area::register_time_area(&d, Some(0), v, gaddr(22, 0)).unwrap();
        let area = v.areas().time.unwrap();
        let l = abi.time_info();
        let base = area.offset;
        let (in_progress, torn) = observe(
            area.page.clone(),
            100_000,
            |_| {
                clock.advance(1);
                time::update_vcpu_system_time(&d, v);
            },
            move |p| {
                let v1 = p.read_uint(base + l.version.offset, 4).unwrap();
                if v1 % 2 == 1 {
                    return Seen::InProgress;
                }
                let tsc = p.read_uint(base + l.tsc_timestamp.offset, 8).unwrap();
                let sys = p.read_uint(base + l.system_time.offset, 8).unwrap();
                let v2 = p.read_uint(base + l.version.offset, 4).unwrap();
                match (v1 == v2, tsc == sys * 3) {
                    (false, _) => Seen::Retry,
                    (true, true) => Seen::Consistent,
                    (true, false) => Seen::Torn(format!("version {v1}: tsc {tsc} system_time {sys}")),
                }
            },
        );
        assert!(torn.is_empty(), "{}: torn time records behind an even version: {torn:?}", abi.name());
        assert!(in_progress > 0, "{}: the reader never saw an odd version", abi.name());
    }
}

#[test]
fn runstate_is_written_with_the_update_flag_first() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let v = d.vcpu(0).unwrap();
        register_runstate_area(&d, Some(0), v, gaddr(23, 0)).unwrap();
        let area = v.areas().runstate.unwrap();
        let l = abi.runstate();
        let base = area.offset;
        let area2 = area.clone();
        let record = |i: u32| {
            let e = 1000 + i as u64;
            RunstateInfo { state: i % 4, state_entry_time: e, time: [e, e + 1, e + 2, e + 3] }
        };
        runstate::write_area(abi, &area, &record(0));
        // Record `i`: entry time 1000 + i, state i % 4, time[k] = entry + k.
        let (in_progress, torn) = observe(
            area.page.clone(),
            100_000,
            move |i| runstate::write_area(abi, &area2, &record(i)),
            move |p| {
                let e1 = p.read_uint(base + l.state_entry_time.offset, 8).unwrap();
                if e1 & XEN_RUNSTATE_UPDATE != 0 {
                    return Seen::InProgress;
                }
                let state = p.read_uint(base + l.state.offset, 4).unwrap();
                let t3 = p.read_uint(base + l.time.offset + 24, 8).unwrap();
                let t0 = p.read_uint(base + l.time.offset, 8).unwrap();
                let e2 = p.read_uint(base + l.state_entry_time.offset, 8).unwrap();
                if e1 != e2 || e1 == 0 {
                    return Seen::Retry;
                }
                if state == (e1 - 1000) % 4 && t0 == e1 && t3 == e1 + 3 {
                    Seen::Consistent
                } else {
                    Seen::Torn(format!("entry {e1}: state {state} time[0] {t0} time[3] {t3}"))
                }
            },
        );
        assert!(torn.is_empty(), "{}: torn runstate without XEN_RUNSTATE_UPDATE: {torn:?}", abi.name());
        assert!(in_progress > 0, "{}: the reader never saw XEN_RUNSTATE_UPDATE", abi.name());
    }
}

#[test]
fn a_masked_event_waits_pending_until_unmask_raises_it() {
    use lantern_common::evtchn;
    for abi in layouts() {
        let n = abi.name();
        let (d, _) = domain(abi, 1);
        let v = d.vcpu(0).unwrap();
        let port = evtchn::bind_ipi(&d, 0).unwrap();
        let (si, vi, w) = (abi.shared_info(), abi.vcpu_info(), abi.xen_ulong_size());
        let (word, bit) = ((port as usize / (w * 8)), 1u64 << (port as usize % (w * 8)));
        let sel = |d: &lantern_common::domain::Domain| {
            let a = d.vcpu(0).unwrap().areas().vcpu_info;
            a.page.read_uint(a.offset + vi.pending_sel.offset, vi.pending_sel.size).unwrap()
        };
        d.shared_info().write_uint(si.evtchn_mask.offset + word * w, w, bit).unwrap();
        v.take_upcall_request();
        evtchn::send(&d, port).unwrap();
        // The intermediate state: pending, but masked, so nothing raised.
        assert_ne!(d.shared_info().read_uint(si.evtchn_pending.offset + word * w, w).unwrap() & bit, 0, "{n}");
        assert_eq!(sel(&d), 0, "{n}: a masked port selects no word");
        assert!(!d.upcall_pending(v), "{n}: a masked port raises no upcall");
        assert!(!v.take_upcall_request(), "{n}: nor asks the arch for one");
        // Unmasking re-raises it.
        evtchn::unmask(&d, port).unwrap();
        assert_eq!(d.shared_info().read_uint(si.evtchn_mask.offset + word * w, w).unwrap() & bit, 0);
        assert_ne!(sel(&d) & (1 << word), 0, "{n}: unmask selects the word");
        assert!(d.upcall_pending(v), "{n}: unmask raises the upcall");
        assert!(v.take_upcall_request(), "{n}: and asks the arch to inject it");
    }
}

#[test]
fn soft_reset_closes_every_event_channel() {
    use lantern_common::{evtchn, lifecycle};
    for abi in layouts() {
        let (d, _) = domain(abi, 2);
        let ipi = evtchn::bind_ipi(&d, 1).unwrap();
        let virq = evtchn::bind_virq(&d, 0, 0).unwrap();
        let unbound = evtchn::alloc_unbound(&d, d.id).unwrap();
        d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
        lifecycle::soft_reset(&d, &FakeDomain).unwrap();
        for port in [ipi, virq, unbound] {
            assert_eq!(evtchn::send(&d, port), Err(xen_abi::errno::Errno::EINVAL), "{}: port {port}", abi.name());
        }
        // The same VIRQ can be bound again, from the first port up.
        assert_eq!(evtchn::bind_virq(&d, 0, 0).unwrap(), ipi.min(virq).min(unbound));
    }
}
