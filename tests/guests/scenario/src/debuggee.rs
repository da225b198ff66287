//! What the debugger tests stop at, step through and watch in a lingering
//! guest: [`tick`], a function every live vCPU calls on each turn of its
//! idle loop, which writes [`HEARTBEAT`] and checks that the guest's own
//! code is unchanged ([`CODE_CHANGED`]), so a test can tell a breakpoint
//! planted in guest memory (which the guest sees) from a hardware one
//! (which it does not).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::hypercall;
use crate::Guest;

/// Advanced by every [`tick`] of every vCPU (a watchpoint target).
pub static HEARTBEAT: AtomicU64 = AtomicU64::new(0);

/// How many [`tick`]s found their own code bytes different from the first
/// time they looked.
pub static CODE_CHANGED: AtomicU32 = AtomicU32::new(0);

/// The checksum of [`tick`]'s first bytes as first seen (0: not yet).
static CODE_SUM: AtomicU32 = AtomicU32::new(0);

/// How many bytes of [`tick`] the guest checks: past its entry, where a
/// debugger puts a breakpoint on the function.
const CHECKED_BYTES: usize = 32;

/// The periodic timer vCPU 0 runs while lingering, so that a debugger
/// stopping it for a moment finds a timer interrupt pending.
const LINGER_TIMER_NS: u64 = 1_000_000;

/// Called by every live vCPU on each turn of its idle loop while lingering.
#[inline(never)]
pub fn tick(vcpu: u32) {
    // A plain load and store, not a read-modify-write: a watchpoint trap
    // inside arm64's exclusive load/store pair clears its monitor, so the
    // pair would retry forever under a debugger (vCPUs racing here lose a
    // count now and then; it is a heartbeat, not a counter).
    HEARTBEAT.store(HEARTBEAT.load(Ordering::Acquire).wrapping_add(1), Ordering::Release);
    let sum = code_sum();
    match CODE_SUM.compare_exchange(0, sum, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(first) if first != sum => {
            CODE_CHANGED.fetch_add(1, Ordering::AcqRel);
        }
        Err(_) => {}
    }
    // Keep `vcpu` live in the function, so a debugger can print it.
    core::hint::black_box(vcpu);
}

/// A checksum (never 0) of [`tick`]'s first bytes, read as data.
#[inline(never)]
fn code_sum() -> u32 {
    let code = tick as *const () as *const u8;
    let mut sum = 1u32;
    for i in 0..CHECKED_BYTES {
        // SAFETY: the first bytes of a function are mapped, readable code
        // (the test guests map their image identically and never execute-only).
        let b = unsafe { core::ptr::read_volatile(code.add(i)) };
        sum = sum.wrapping_mul(31).wrapping_add(b as u32);
    }
    sum.max(1)
}

/// vCPU 0 enters its idle loop for good: run a fast periodic timer on it
/// (its `VIRQ_TIMER` is bound by the PV-timer checks).
pub fn start_lingering(g: &dyn Guest) {
    hypercall::set_periodic_timer(g, 0, LINGER_TIMER_NS);
}
