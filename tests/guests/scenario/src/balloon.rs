//! Ballooning: the guest gives two pages back to the hypervisor
//! (`XENMEM_decrease_reservation`) and takes them again
//! (`XENMEM_populate_physmap`); `XENMEM_current_reservation` follows by
//! exactly that many pages; a page given back reads as Xen answers an access
//! to a p2m hole on this arch ([`Guest::ballooned_read`]); a page taken back
//! reads as zeros; and `XENMEM_increase_reservation` stops at
//! `XENMEM_maximum_reservation`. These run last: the domain ends at its limit.

use xen_abi::nr::memop;

use crate::context::{CheckResult, Ctx};
use crate::hypercall::{self, rc_name};
use crate::{Guest, PAGE_SIZE};

/// The byte the balloon pages hold before they are given back.
const PATTERN: u8 = 0x5a;

/// `balloon_decrease`, `balloon_hole_read`, `balloon_populate`,
/// `balloon_limit`, in that order (each builds on the one before).
pub(crate) fn checks(cx: &mut Ctx) {
    cx.run("balloon_decrease", decrease);
    cx.run("balloon_hole_read", hole_read);
    cx.run("balloon_populate", populate);
    cx.run("balloon_limit", limit);
}

/// What a guest reads, or takes, on a 4-byte load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The load completed with this value.
    Value(u32),
    /// The load took a data abort (the guest's handler skipped it).
    Aborted,
}

fn gfns(g: &dyn Guest) -> [u64; 2] {
    g.balloon_pages().map(|gpa| gpa / PAGE_SIZE)
}

fn current(cx: &Ctx) -> i64 {
    hypercall::reservation_query(cx.g, memop::CURRENT_RESERVATION)
}

/// Both pages given back: 2 extents done, the reservation 2 pages smaller.
fn decrease(cx: &mut Ctx) -> CheckResult {
    let before = current(cx);
    ensure!(before > 0, "current_reservation rc={before} ({})", rc_name(before));
    for gpa in cx.g.balloon_pages() {
        cx.g.write(gpa, &[PATTERN; 64]);
    }
    let rc = hypercall::reservation(cx.g, cx.layout, memop::DECREASE_RESERVATION, &gfns(cx.g), 0);
    ensure!(rc == 2, "decrease_reservation of 2 pages: {rc} done ({})", rc_name(rc));
    let after = current(cx);
    ensure!(after == before - 2, "current_reservation {before} -> {after}, not -2");
    Ok(())
}

/// A read of a page given back: what Xen answers on this arch.
fn hole_read(cx: &mut Ctx) -> CheckResult {
    let gpa = cx.g.balloon_pages()[0];
    let got = cx.g.probe_read(gpa + 8);
    let want = cx.g.ballooned_read();
    ensure!(got == want, "read of ballooned-out gpa {:#x}: {:?}, Xen gives {:?}", gpa + 8, got, want);
    Ok(())
}

/// Both pages taken back: 2 extents, the reservation back up, the pages
/// fresh (zeros, not the pattern they held).
fn populate(cx: &mut Ctx) -> CheckResult {
    let before = current(cx);
    let rc = hypercall::reservation(cx.g, cx.layout, memop::POPULATE_PHYSMAP, &gfns(cx.g), 0);
    ensure!(rc == 2, "populate_physmap of 2 pages: {rc} done ({})", rc_name(rc));
    let after = current(cx);
    ensure!(after == before + 2, "current_reservation {before} -> {after}, not +2");
    for gpa in cx.g.balloon_pages() {
        let mut chunk = [0xffu8; 64];
        for off in (0..PAGE_SIZE).step_by(chunk.len()) {
            cx.g.read(gpa + off, &mut chunk);
            ensure!(chunk.iter().all(|&b| b == 0), "repopulated page {gpa:#x} not zero at +{off:#x}");
        }
    }
    Ok(())
}

/// `increase_reservation` asked for one extent more than there is room
/// for under the maximum: exactly the room is granted.
fn limit(cx: &mut Ctx) -> CheckResult {
    let max = hypercall::reservation_query(cx.g, memop::MAXIMUM_RESERVATION);
    let cur = current(cx);
    ensure!(max >= cur && cur > 0, "maximum_reservation {max} below current {cur}");
    let room = max - cur;
    ensure!(room < 1024, "room for {room} pages: not a test domain's limit");
    let rc = hypercall::reservation(cx.g, cx.layout, memop::INCREASE_RESERVATION, &[], room as u64 + 1);
    ensure!(rc == room, "increase_reservation of {} with room for {room}: {rc} done", room + 1);
    let now = current(cx);
    ensure!(now == max, "current_reservation {now} after filling to maximum {max}");
    Ok(())
}
