//! Event channels from the guest's side, ending in the switch to the FIFO
//! ABI (one-way, hence the last checks of a run): `EVTCHNOP_status` of
//! bound VIRQ and IPI ports, `init_control` on vCPU 0, `expand_array`, a
//! port above the first event-array page, and priority order — and the
//! FIFO consumer the upcall handler runs once FIFO is on ([`consume`]).
//!
//! The control block and the two event-array pages are this module's own
//! page-aligned static ([`FIFO_PAGES`]): RAM the guest owns that nothing
//! else uses, touched only through [`Guest::read`] / [`Guest::write`].

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use xen_abi::nr::{domid, evtchn_fifo as ff, evtchnop, evtchnstat, virq};
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindIpi, EvtchnBindVirq, EvtchnExpandArray, EvtchnInitControl, EvtchnSetPriority,
    EvtchnStatus,
};

use crate::context::{expect_ok, read_obj, CheckResult, Ctx, WAIT_YIELDS};
use crate::hypercall::{evtchn_op, evtchn_port_op, rc_name};
use crate::{Guest, PAGE_SIZE};

/// Control block (page 0) and event-array pages 1 and 2.
#[repr(C, align(4096))]
struct FifoPages(UnsafeCell<[u8; 3 * PAGE_SIZE as usize]>);

// SAFETY: the bytes are only ever accessed through `Guest::read`/`write`
// (volatile copies of guest memory the hypervisor shares anyway), never
// through a Rust reference, so sharing the static between vCPUs is sound.
unsafe impl Sync for FifoPages {}

static FIFO_PAGES: FifoPages = FifoPages(UnsafeCell::new([0; 3 * PAGE_SIZE as usize]));

/// Guest-physical address of vCPU 0's control block once FIFO is on (0:
/// 2-level, the upcall handler leaves the event words alone).
static CONTROL_BLOCK: AtomicU64 = AtomicU64::new(0);
/// Guest-physical address of event-array page 0 (pages are contiguous).
static ARRAY: AtomicU64 = AtomicU64::new(0);
/// The consumer's own head of each queue (0: read the control block's).
static HEADS: [AtomicU32; ff::MAX_QUEUES] = [const { AtomicU32::new(0) }; ff::MAX_QUEUES];
/// Ports the consumer handled, in order (the first [`LOG_LEN`]).
const LOG_LEN: usize = 8;
static HANDLED: [AtomicU32; LOG_LEN] = [const { AtomicU32::new(0) }; LOG_LEN];
static HANDLED_COUNT: AtomicU32 = AtomicU32::new(0);

const PENDING: u32 = 1 << ff::PENDING;
const MASKED: u32 = 1 << ff::MASKED;
const LINKED: u32 = 1 << ff::LINKED;

fn word_gpa(port: u32) -> u64 {
    ARRAY.load(Ordering::Acquire) + port as u64 * ff::EVENT_WORD_SIZE as u64
}

/// The upcall handler's FIFO part on vCPU 0 (other vCPUs have no control
/// block): consume every ready queue, most urgent first, as Linux's
/// `events_fifo.c` does — take a queue's head (our own, else the control
/// block's), unlink it, clear the queue's READY bit when it empties, and
/// handle the port (log it, clear PENDING) if it is pending and unmasked.
///
/// The read-modify-writes of guest words are plain (the `Guest` trait has
/// no atomics): sound here because only vCPU 0 raises events in this
/// scenario and never while its upcall handler runs, so the hypervisor
/// does not change these words meanwhile.
pub fn consume(g: &dyn Guest, vcpu: u32) {
    let cb = CONTROL_BLOCK.load(Ordering::Acquire);
    if vcpu != 0 || cb == 0 {
        return;
    }
    for _ in 0..64 {
        let ready: u32 = read_obj(g, cb + ff::CONTROL_BLOCK_READY as u64);
        if ready == 0 {
            return;
        }
        let q = ready.trailing_zeros() as usize;
        let mut port = HEADS[q].load(Ordering::Acquire);
        if port == 0 {
            port = read_obj(g, cb + (ff::CONTROL_BLOCK_HEAD + 4 * q) as u64);
        }
        let w: u32 = read_obj(g, word_gpa(port));
        let next = w & ff::LINK_MASK;
        g.write(word_gpa(port), &(w & !(LINKED | ff::LINK_MASK)).to_le_bytes());
        if next == 0 {
            g.write(cb + ff::CONTROL_BLOCK_READY as u64, &(ready & !(1 << q)).to_le_bytes());
        }
        HEADS[q].store(next, Ordering::Release);
        if w & PENDING != 0 && w & MASKED == 0 {
            let w: u32 = read_obj(g, word_gpa(port));
            g.write(word_gpa(port), &(w & !PENDING).to_le_bytes());
            let n = HANDLED_COUNT.fetch_add(1, Ordering::AcqRel) as usize;
            if n < LOG_LEN {
                HANDLED[n].store(port, Ordering::Release);
            }
        }
    }
}

fn handled() -> u32 {
    HANDLED_COUNT.load(Ordering::Acquire)
}

fn handled_at(i: u32) -> u32 {
    HANDLED.get(i as usize).map_or(0, |h| h.load(Ordering::Acquire))
}

/// The checks, in order.
pub(crate) fn checks(cx: &mut Ctx) {
    cx.run("evtchn_status_virq", status_virq);
    cx.run("evtchn_status_ipi", status_ipi);
    let cb = cx.g.gpa_of(FIFO_PAGES.0.get() as *const u8);
    cx.run("fifo_init_control", |cx| init_control(cx, cb));
    if CONTROL_BLOCK.load(Ordering::Acquire) == 0 {
        let names = ["fifo_expand_array", "fifo_port_above_first_page", "fifo_priority_order"];
        cx.fail_all(&names, format_args!("init_control failed"));
        return;
    }
    cx.run("fifo_expand_array", |cx| expand(cx, cb + PAGE_SIZE));
    cx.run("fifo_port_above_first_page", high_port);
    cx.run("fifo_priority_order", priority_order);
}

fn bind_ipi(cx: &Ctx) -> Result<u32, crate::context::Reason> {
    let (rc, a) = evtchn_op(cx.g, evtchnop::BIND_IPI, EvtchnBindIpi { vcpu: 0, port: 0 });
    ensure!(rc == 0, "bind_ipi rc={rc} ({})", rc_name(rc));
    Ok(a.port)
}

fn status_of(cx: &Ctx, port: u32) -> Result<EvtchnStatus, crate::context::Reason> {
    let (rc, s) = evtchn_op(cx.g, evtchnop::STATUS, EvtchnStatus { dom: domid::SELF, port, ..Default::default() });
    ensure!(rc == 0, "status rc={rc} ({})", rc_name(rc));
    Ok(s)
}

/// A VIRQ_DEBUG port on vCPU 0 reads back as that VIRQ on that vCPU
/// (VIRQ_TIMER is already bound by the PV-timer checks).
fn status_virq(cx: &mut Ctx) -> CheckResult {
    let (rc, a) = evtchn_op(cx.g, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: virq::DEBUG, vcpu: 0, port: 0 });
    ensure!(rc == 0, "bind_virq rc={rc} ({})", rc_name(rc));
    let s = status_of(cx, a.port)?;
    let _ = evtchn_port_op(cx.g, evtchnop::CLOSE, a.port);
    ensure!(
        s.status == evtchnstat::VIRQ && s.u0 == virq::DEBUG && s.vcpu == 0,
        "port {}: status={} virq={} vcpu={}",
        a.port,
        s.status,
        s.u0,
        s.vcpu
    );
    Ok(())
}

/// An IPI port reads back as IPI on vCPU 0, and closed once closed.
fn status_ipi(cx: &mut Ctx) -> CheckResult {
    let port = bind_ipi(cx)?;
    let s = status_of(cx, port)?;
    ensure!(s.status == evtchnstat::IPI && s.vcpu == 0, "port {port}: status={} vcpu={}", s.status, s.vcpu);
    expect_ok(evtchn_port_op(cx.g, evtchnop::CLOSE, port))?;
    let s = status_of(cx, port)?;
    ensure!(s.status == evtchnstat::CLOSED, "port {port} after close: status={}", s.status);
    Ok(())
}

/// `init_control` of vCPU 0 on our control-block page: 0, link_bits 17.
fn init_control(cx: &mut Ctx, cb: u64) -> CheckResult {
    cx.g.write(cb, &[0; 3 * PAGE_SIZE as usize]);
    for h in &HEADS {
        h.store(0, Ordering::Release);
    }
    HANDLED_COUNT.store(0, Ordering::Release);
    ARRAY.store(cb + PAGE_SIZE, Ordering::Release);
    // Upcalls off until the consumer knows the control block.
    cx.g.upcalls_enabled(false);
    let arg = EvtchnInitControl { control_gfn: cb / PAGE_SIZE, offset: 0, vcpu: 0, link_bits: 0, pad: [0; 7] };
    let (rc, out) = evtchn_op(cx.g, evtchnop::INIT_CONTROL, arg);
    if rc == 0 {
        CONTROL_BLOCK.store(cb, Ordering::Release);
    }
    cx.g.upcalls_enabled(true);
    expect_ok(rc)?;
    ensure!(u32::from(out.link_bits) == ff::LINK_BITS, "link_bits={}", out.link_bits);
    Ok(())
}

/// Two event-array pages (ports 0..2048).
fn expand(cx: &mut Ctx, first: u64) -> CheckResult {
    for i in 0..2 {
        let (rc, _) = evtchn_op(cx.g, evtchnop::EXPAND_ARRAY, EvtchnExpandArray { array_gfn: first / PAGE_SIZE + i });
        ensure!(rc == 0, "expand_array page {i}: rc={rc} ({})", rc_name(rc));
    }
    Ok(())
}

/// Wait until the consumer has handled `n` ports in all.
fn wait_handled(cx: &Ctx, n: u32) -> bool {
    cx.wait_for(|| handled() >= n)
}

/// Fill the ports up to 1024 with unbound ones, bind an IPI above the first
/// array page (the lowest free port), send it, and see it consumed.
fn high_port(cx: &mut Ctx) -> CheckResult {
    let mut fillers = 0u32;
    let mut last = 0u32;
    while last < 1024 {
        let (rc, a) = evtchn_op(
            cx.g,
            evtchnop::ALLOC_UNBOUND,
            EvtchnAllocUnbound { dom: domid::SELF, remote_dom: domid::SELF, port: 0 },
        );
        ensure!(rc == 0, "alloc_unbound #{fillers}: rc={rc} ({})", rc_name(rc));
        last = a.port;
        fillers += 1;
    }
    expect_ok(evtchn_port_op(cx.g, evtchnop::CLOSE, last))?;
    let port = bind_ipi(cx)?;
    ensure!(port == last, "bind_ipi gave port {port}, expected the freed {last}");
    let before = handled();
    expect_ok(evtchn_port_op(cx.g, evtchnop::SEND, port))?;
    let got = wait_handled(cx, before + 1);
    let _ = evtchn_port_op(cx.g, evtchnop::CLOSE, port);
    ensure!(got, "port {port} not consumed within {WAIT_YIELDS} yields (word={:#x})", {
        let w: u32 = read_obj(cx.g, word_gpa(port));
        w
    });
    ensure!(handled_at(before) == port || before >= LOG_LEN as u32, "consumed port {}", handled_at(before));
    // Give the fillers back (ports 1.. below `last`, except any in use).
    for p in 1..last {
        let s = status_of(cx, p)?;
        if s.status == evtchnstat::UNBOUND {
            let _ = evtchn_port_op(cx.g, evtchnop::CLOSE, p);
        }
    }
    Ok(())
}

/// Of two events raised while upcalls are off, the more urgent priority
/// (lower number) is consumed first although it was raised second.
fn priority_order(cx: &mut Ctx) -> CheckResult {
    let low = bind_ipi(cx)?;
    let high = bind_ipi(cx)?;
    for (port, priority) in [(low, 10), (high, 2)] {
        let (rc, _) = evtchn_op(cx.g, evtchnop::SET_PRIORITY, EvtchnSetPriority { port, priority });
        ensure!(rc == 0, "set_priority({port}, {priority}) rc={rc} ({})", rc_name(rc));
    }
    HANDLED_COUNT.store(0, Ordering::Release);
    cx.g.upcalls_enabled(false);
    let r1 = evtchn_port_op(cx.g, evtchnop::SEND, low);
    let r2 = evtchn_port_op(cx.g, evtchnop::SEND, high);
    cx.g.upcalls_enabled(true);
    expect_ok(r1)?;
    expect_ok(r2)?;
    let got = wait_handled(cx, 2);
    ensure!(got, "{} of 2 events consumed within {WAIT_YIELDS} yields", handled());
    let order = (handled_at(0), handled_at(1));
    ensure!(order == (high, low), "consumed {order:?}, expected ({high}, {low}) (high priority first)");
    Ok(())
}
