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
