//! Isolation attacks, the guest side (issue 13): with `attack=D` on its
//! command line a test guest, after its own checks, attacks domain D the
//! way a hostile guest would; with `victim` a guest fills pages with a known
//! pattern before its checks and, after them, holds for [`HOLD_NS`] while
//! watching its own heartbeat, then checks that the pattern is intact.
//!
//! Every attack is a check of its own, passed when the hypervisor refuses
//! it with Xen's answer and hands the attacker nothing of the victim's:
//! - frames and addresses outside the attacker's RAM (the rest of the low
//!   4 GiB, where the victim's and the hypervisor's memory would be if a gfn
//!   were ever taken for a host address, MMIO ([`Guest::mmio_gpa`]), far above) through every op
//!   that takes one: vcpu_info (on a vCPU without one; a second one is
//!   `-EBUSY` before Xen looks at the frame), runstate and time area registration,
//!   decrease_reservation, grant copy by frame;
//! - the victim's domain id through every op that takes one: HVM params,
//!   reservation queries, add_to_physmap, event-channel allocation and
//!   status, remote_shutdown, grant copy by frame and map of refs it never
//!   granted (refused with Xen's XSM answers, `-EPERM`);
//! - pointers into nothing (unbacked guest-physical space, the top of the
//!   address space) for hypercalls that copy in or out (`-EFAULT`);
//! - absurd initial vCPU state (the arch's list, [`Guest::hostile_starts`]);
//! - a vCPU spinning with interrupts masked for [`SPIN_NS`] (the victim's
//!   heartbeat must continue: the hypervisor preempts it);
//! - a hypercall storm for [`STORM_NS`] (the test attaches gdb meanwhile);
//! - finally a scan of all the attacker's own RAM for the victim's pattern.

use core::cell::UnsafeCell;
use core::hint::black_box;

use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::gnttab_status as st;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::{consoleio, evtchnop, gnttabop, hvm_param, hvmop, mapspace, memop, schedop, vcpuop};
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnStatus, GnttabCopy, GnttabCopyPtr, GnttabCopyPtrUlong32, GnttabCopyUlong32,
    GnttabMapGrantRef, SchedRemoteShutdown, XenHvmParam,
};
use xen_abi::Errno;
use zerocopy::IntoBytes;

use crate::context::{expect_errno, CheckResult, Ctx};
use crate::hypercall::{self as xen, rc_name};
use crate::layout::AddToPhysmap;
use crate::pv_timer::now_ns;
use crate::{Guest, Probe, MAX_VCPUS, PAGE_SIZE, VCPUS};
use core::sync::atomic::Ordering;

/// How long the victim holds after its checks, watching its heartbeat
/// (the attacker's attacks, masked spin and storm fit well inside).
pub const HOLD_NS: u64 = 45_000_000_000;
/// The longest the victim may go without running while it holds: far
/// below [`SPIN_NS`], so an attacker that is never preempted fails it.
pub const MAX_GAP_NS: u64 = 1_000_000_000;
/// How long the attacker spins with interrupts masked.
pub const SPIN_NS: u64 = 3_000_000_000;
/// How long the attacker's hypercall storm lasts.
pub const STORM_NS: u64 = 12_000_000_000;

/// Pages of the victim's known pattern.
const VICTIM_PAGES: usize = 4;

/// The victim's pattern, filling its pages 16 bytes at a time. Stored
/// masked and unmasked at run time (through `black_box`), so that the
/// pattern itself appears in no image: the attacker's scan of its own RAM
/// finds it only if the hypervisor put the victim's memory there.
const PATTERN_MASKED: [u64; 2] = [0x6c61_6e74_6572_6e2d ^ PATTERN_MASK, 0x7669_6374_696d_2121 ^ PATTERN_MASK];
/// See [`PATTERN_MASKED`].
const PATTERN_MASK: u64 = 0x5a5a_a5a5_0ff0_f00f;

fn pattern() -> [u64; 2] {
    [black_box(PATTERN_MASKED[0]) ^ PATTERN_MASK, black_box(PATTERN_MASKED[1]) ^ PATTERN_MASK]
}

/// The victim's pattern pages.
#[repr(C, align(4096))]
struct Pages(UnsafeCell<[u8; VICTIM_PAGES * PAGE_SIZE as usize]>);

// SAFETY: only ever accessed through `Guest::read`/`write` at its address
// (volatile), by the victim's vCPU 0; never through a Rust reference.
unsafe impl Sync for Pages {}

static PATTERN_PAGES: Pages = Pages(UnsafeCell::new([0; VICTIM_PAGES * PAGE_SIZE as usize]));

fn pattern_gpa(g: &dyn Guest) -> u64 {
    g.gpa_of(PATTERN_PAGES.0.get() as *const u8)
}

/// The domain `attack=D` names, if the command line has it.
pub(crate) fn target(g: &dyn Guest) -> Option<u16> {
    g.cmdline().split_ascii_whitespace().find_map(|w| w.strip_prefix("attack=")?.parse().ok())
}

/// The `victim` word: fill the pattern pages (before the checks).
pub(crate) fn victim_fill(g: &dyn Guest) {
    let [a, b] = pattern();
    let base = pattern_gpa(g);
    for off in (0..VICTIM_PAGES as u64 * PAGE_SIZE).step_by(16) {
        g.write(base + off, a.as_bytes());
        g.write(base + off + 8, b.as_bytes());
    }
}

/// The `victim` word, after the checks: hold for [`HOLD_NS`] with a
/// heartbeat (a yield per turn), then check the pattern.
pub(crate) fn victim_hold(cx: &mut Ctx) {
    let r = heartbeat(cx);
    cx.check("victim_heartbeat_through_the_attacks", r);
    let g = cx.g;
    cx.run("victim_pattern_intact", |_| {
        let [a, b] = pattern();
        let base = pattern_gpa(g);
        for off in (0..VICTIM_PAGES as u64 * PAGE_SIZE).step_by(16) {
            let (mut x, mut y) = (0u64, 0u64);
            g.read(base + off, x.as_mut_bytes());
            g.read(base + off + 8, y.as_mut_bytes());
            ensure!(x == a && y == b, "pattern changed at +{off:#x}: {x:#x} {y:#x}");
        }
        Ok(())
    });
}

fn heartbeat(cx: &Ctx) -> CheckResult {
    let g = cx.g;
    let Some(start) = now_ns(g) else { return Err(reason!("no system time (vcpu_info not registered)")) };
    cx.say(format_args!("VICTIM hold start"));
    let (mut last, mut max_gap, mut beats) = (start, 0u64, 0u64);
    loop {
        let now = now_ns(g).unwrap_or(last);
        max_gap = max_gap.max(now.saturating_sub(last));
        last = now;
        beats += 1;
        if now.saturating_sub(start) >= HOLD_NS {
            break;
        }
        g.busy_wait(2_000);
        xen::sched_yield(g);
    }
    cx.say(format_args!("VICTIM hold end beats={beats} max_gap_ms={}", max_gap / 1_000_000));
    ensure!(max_gap < MAX_GAP_NS, "went {} ms without running", max_gap / 1_000_000);
    Ok(())
}

/// The attacker's RAM: from the 1 GiB boundary below its shared_info page
/// (0 on x86, the RAM base on arm), as many pages as it holds.
fn own_ram(cx: &Ctx) -> (u64, u64) {
    let base = cx.g.shared_info_page() & !((1 << 30) - 1);
    let pages = xen::reservation_query(cx.g, memop::CURRENT_RESERVATION).max(0) as u64;
    (base, pages)
}

/// Guest-physical frames outside the attacker's RAM (and outside a 64 MiB
/// margin above it, where a guest may map grant frames): every 16 MiB of
/// the low 4 GiB, the board's MMIO page, and far above.
fn foreign_gfns(cx: &Ctx) -> impl Iterator<Item = u64> {
    let (base, pages) = own_ram(cx);
    let own = base..base + pages * PAGE_SIZE + (64 << 20);
    // The pages the toolstack placed for us outside RAM (arm64 puts the
    // console ring in its magic region) are ours: not candidates.
    let given = [hvm_param::CONSOLE_PFN, hvm_param::STORE_PFN].map(|p| xen::hvm_get_param(cx.g, p).ok());
    let low = (0..(4u64 << 30)).step_by(16 << 20).filter(move |a| !own.contains(a));
    let far = [cx.g.mmio_gpa() & !(PAGE_SIZE - 1), 1 << 32, 1 << 40, (1 << 52) - PAGE_SIZE, !(PAGE_SIZE - 1)];
    low.chain(far).map(|a| a / PAGE_SIZE).filter(move |gfn| !given.contains(&Some(*gfn)))
}

/// The `attack=D` word: every attack, each one check.
pub(crate) fn run(cx: &mut Ctx, victim: u16) {
    cx.say(format_args!("ATTACK start victim=d{victim}"));
    let r = frames_outside_ram(cx);
    cx.check("attack_frames_outside_ram", r);
    let r = victim_domid(cx, victim);
    cx.check("attack_victim_domain_id", r);
    let r = pointers_into_nothing(cx);
    cx.check("attack_pointers_into_nothing", r);
    let r = absurd_vcpu_state(cx);
    cx.check("attack_absurd_vcpu_state", r);
    // The victim starts holding when its own checks end, about when ours
    // did: give it time before the attacks it must live through.
    settle(cx);
    let r = masked_spin(cx);
    cx.check("attack_masked_spin", r);
    let r = storm(cx);
    cx.check("attack_hypercall_storm", r);
    let r = leak_scan(cx);
    cx.check("attack_leak_scan", r);
    cx.say(format_args!("ATTACK end"));
}

fn frames_outside_ram(cx: &Ctx) -> CheckResult {
    let (g, l) = (cx.g, cx.layout);
    let narrow = l.xen_ulong_size == 4;
    let scratch = cx.pages.spare;
    // vcpu_info on a vCPU that has none yet: on one that has, Xen answers
    // -EBUSY before it looks at the frame.
    let fresh = (0..cx.vcpus.min(MAX_VCPUS as u32))
        .rev()
        .find(|&v| VCPUS.vcpu_info_gpa[v as usize].load(Ordering::Acquire) == 0);
    let mut calls = 0u32;
    for gfn in foreign_gfns(cx) {
        if let Some(v) = fresh {
            let rc = xen::register_vcpu_info(g, v, gfn, 0);
            expect_errno(rc, Errno::EINVAL)
                .map_err(|e| reason!("vCPU {v}'s vcpu_info at gfn {gfn:#x}: {}", e.as_str()))?;
            calls += 1;
        }
        let rc = xen::register_vcpu_info(g, 0, gfn, 0);
        expect_errno(rc, Errno::EBUSY).map_err(|e| reason!("vCPU 0's second vcpu_info: {}", e.as_str()))?;
        let gpa = gfn.wrapping_mul(PAGE_SIZE);
        let rc = xen::register_runstate_phys_area(g, 0, gpa);
        expect_errno(rc, Errno::EINVAL).map_err(|e| reason!("runstate at {gpa:#x}: {}", e.as_str()))?;
        let rc = xen::register_vcpu_time_phys_area(g, 0, gpa);
        expect_errno(rc, Errno::EINVAL).map_err(|e| reason!("time area at {gpa:#x}: {}", e.as_str()))?;
        calls += 3;
        // A compat xen_pfn_t is 32 bits: a wider frame would be another.
        if narrow && gfn > u32::MAX as u64 {
            continue;
        }
        let done = xen::reservation(g, l, memop::DECREASE_RESERVATION, &[gfn], 0);
        ensure!(done == 0, "decrease_reservation of gfn {gfn:#x} did {done} extents");
        let s = copy_by_frame(cx, gfn, DOMID_SELF, scratch);
        ensure!(s == st::BAD_PAGE, "grant copy from gfn {gfn:#x}: status {s}");
        calls += 2;
    }
    // vCPU 0's own areas are where they were: its time still advances.
    let t0 = now_ns(g);
    g.busy_wait(20_000);
    xen::sched_yield(g);
    ensure!(now_ns(g) > t0, "vCPU 0's time stopped after the attempts");
    cx.say(format_args!("ATTACK frames_outside_ram calls={calls}"));
    Ok(())
}

/// `GNTTABOP_copy` of one page from frame `gfn` of `dom` (by frame, not by
/// grant reference) into our page at `dest`: the op's status.
fn copy_by_frame(cx: &Ctx, gfn: u64, dom: u16, dest: u64) -> i16 {
    let len = PAGE_SIZE as u16;
    if cx.layout.xen_ulong_size == 8 {
        let arg = GnttabCopy {
            source: GnttabCopyPtr { u: gfn, domid: dom, ..Default::default() },
            dest: GnttabCopyPtr { u: dest / PAGE_SIZE, domid: DOMID_SELF, ..Default::default() },
            len,
            ..Default::default()
        };
        let (rc, out) = crate::grants::gnttab_op(cx.g, gnttabop::COPY, &arg);
        if rc != 0 {
            return i16::MIN;
        }
        out.status
    } else {
        let arg = GnttabCopyUlong32 {
            source: GnttabCopyPtrUlong32 { u: gfn as u32, domid: dom, ..Default::default() },
            dest: GnttabCopyPtrUlong32 { u: (dest / PAGE_SIZE) as u32, domid: DOMID_SELF, ..Default::default() },
            len,
            ..Default::default()
        };
        let (rc, out) = crate::grants::gnttab_op(cx.g, gnttabop::COPY, &arg);
        if rc != 0 {
            return i16::MIN;
        }
        out.status
    }
}

fn hvm_param_op(g: &dyn Guest, cmd: u64, domid: u16, index: u32, value: u64) -> i64 {
    let arg = XenHvmParam { domid, pad: 0, index, value };
    g.hypercall(nr::HVM_OP, [cmd, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
}

fn victim_domid(cx: &Ctx, victim: u16) -> CheckResult {
    let (g, l) = (cx.g, cx.layout);
    let want = |what: &str, rc: i64, e: Errno| expect_errno(rc, e).map_err(|r| reason!("{what}: {}", r.as_str()));
    want(
        "get_param(victim, CONSOLE_PFN)",
        hvm_param_op(g, hvmop::GET_PARAM, victim, hvm_param::CONSOLE_PFN, 0),
        Errno::EPERM,
    )?;
    want(
        "set_param(victim, CALLBACK_IRQ)",
        hvm_param_op(g, hvmop::SET_PARAM, victim, hvm_param::CALLBACK_IRQ, 0),
        Errno::EPERM,
    )?;
    let rc = g.hypercall(nr::MEMORY_OP, [memop::CURRENT_RESERVATION, g.gpa_of(victim.as_bytes().as_ptr()), 0, 0, 0]);
    want("current_reservation(victim)", rc, Errno::EPERM)?;
    let map = match l.add_to_physmap(mapspace::SHARED_INFO, 0, cx.pages.spare / PAGE_SIZE) {
        AddToPhysmap::Ulong64(a) => AddToPhysmap::Ulong64(xen_abi::public::XenAddToPhysmap { domid: victim, ..a }),
        AddToPhysmap::Ulong32(a) => {
            AddToPhysmap::Ulong32(xen_abi::public::XenAddToPhysmapUlong32 { domid: victim, ..a })
        }
    };
    let rc = g.hypercall(nr::MEMORY_OP, [memop::ADD_TO_PHYSMAP, g.gpa_of(map.as_bytes().as_ptr()), 0, 0, 0]);
    want("add_to_physmap(victim's shared_info)", rc, Errno::EPERM)?;
    let (rc, _) =
        xen::evtchn_op(g, evtchnop::ALLOC_UNBOUND, EvtchnAllocUnbound { dom: victim, remote_dom: DOMID_SELF, port: 0 });
    want("alloc_unbound in the victim's table", rc, Errno::EPERM)?;
    let (rc, _) = xen::evtchn_op(g, evtchnop::STATUS, EvtchnStatus { dom: victim, port: 1, ..Default::default() });
    want("status of the victim's port 1", rc, Errno::EPERM)?;
    let r = SchedRemoteShutdown { domain_id: victim, pad: 0, reason: xen_abi::nr::shutdown::CRASH };
    let rc = g.hypercall(nr::SCHED_OP, [schedop::REMOTE_SHUTDOWN, g.gpa_of(r.as_bytes().as_ptr()), 0, 0, 0]);
    want("remote_shutdown(victim)", rc, Errno::EPERM)?;
    // Reading the victim's memory by frame number, through grant copy.
    for gfn in [0u64, 0x100, 0x1000, 0x4_0000, 0x4_0100] {
        let s = copy_by_frame(cx, gfn, victim, cx.pages.spare);
        ensure!(s == st::PERMISSION_DENIED, "grant copy from the victim's frame {gfn:#x}: status {s}");
    }
    // Mapping references the victim never granted us (it grants none, or
    // only to another domain).
    for gref in [0u32, 1, 5, 8, 100, 511, 100_000] {
        let arg = GnttabMapGrantRef {
            host_addr: cx.pages.spare,
            flags: xen_abi::nr::gntmap::HOST_MAP,
            r#ref: gref,
            dom: victim,
            ..Default::default()
        };
        let (rc, out) = crate::grants::gnttab_op(g, gnttabop::MAP_GRANT_REF, &arg);
        ensure!(rc == 0, "map of the victim's ref {gref}: {}", rc_name(rc));
        ensure!(
            matches!(out.status, st::GENERAL_ERROR | st::BAD_GNTREF | st::PERMISSION_DENIED),
            "map of the victim's ref {gref}: status {}",
            out.status
        );
    }
    Ok(())
}

fn pointers_into_nothing(cx: &Ctx) -> CheckResult {
    let g = cx.g;
    let narrow = cx.layout.xen_ulong_size == 4;
    let bad: [u64; 2] = [crate::FAULT_GPA, if narrow { 0xffff_f000 } else { 0xffff_ffff_ffff_f000 }];
    for p in bad {
        let want = |what: &str, rc: i64| {
            expect_errno(rc, Errno::EFAULT).map_err(|r| reason!("{what} at {p:#x}: {}", r.as_str()))
        };
        want("console_io write", g.hypercall(nr::CONSOLE_IO, [consoleio::WRITE, 16, p, 0, 0]))?;
        want(
            "xen_version(extraversion)",
            g.hypercall(nr::XEN_VERSION, [xen_abi::nr::xenver::EXTRAVERSION, p, 0, 0, 0]),
        )?;
        want("vcpu_op(register_vcpu_info)", g.hypercall(nr::VCPU_OP, [vcpuop::REGISTER_VCPU_INFO, 0, p, 0, 0]))?;
        want("event_channel_op(status)", g.hypercall(nr::EVENT_CHANNEL_OP, [evtchnop::STATUS, p, 0, 0, 0]))?;
        want("hvm_op(get_param)", g.hypercall(nr::HVM_OP, [hvmop::GET_PARAM, p, 0, 0, 0]))?;
        want("memory_op(current_reservation)", g.hypercall(nr::MEMORY_OP, [memop::CURRENT_RESERVATION, p, 0, 0, 0]))?;
        want("sched_op(shutdown)", g.hypercall(nr::SCHED_OP, [schedop::SHUTDOWN, p, 0, 0, 0]))?;
    }
    Ok(())
}

fn absurd_vcpu_state(cx: &Ctx) -> CheckResult {
    let g = cx.g;
    let Some(down) = (1..cx.vcpus).rev().find(|&v| xen::vcpu_is_up(g, v) == 0) else {
        return Err(reason!("no vCPU is down to start with absurd state"));
    };
    let mut bad: Option<crate::context::Reason> = None;
    let mut tried = 0;
    g.hostile_starts(down, &mut |what, rc, want| {
        tried += 1;
        if rc != want && bad.is_none() {
            bad = Some(reason!("{what} on vCPU {down}: {rc} (want {want})"));
        }
    });
    if let Some(b) = bad {
        return Err(b);
    }
    ensure!(tried > 0, "the guest offers no absurd starts");
    ensure!(xen::vcpu_is_up(g, down) == 0, "vCPU {down} came up after {tried} refused starts");
    cx.say(format_args!("ATTACK absurd_vcpu_state vcpu={down} starts={tried}"));
    Ok(())
}

/// How long the attacker waits, yielding, before its masked spin (see
/// [`run`]); the victim holds [`HOLD_NS`], long enough for this, the spin
/// and the storm.
pub const SETTLE_NS: u64 = 10_000_000_000;

fn settle(cx: &Ctx) {
    let g = cx.g;
    let Some(start) = now_ns(g) else { return };
    while now_ns(g).is_some_and(|n| n.saturating_sub(start) < SETTLE_NS) {
        g.busy_wait(2_000);
        xen::sched_yield(g);
    }
}

fn masked_spin(cx: &Ctx) -> CheckResult {
    let g = cx.g;
    let start = now_ns(g).ok_or_else(|| reason!("no system time"))?;
    cx.say(format_args!("ATTACK masked_spin start"));
    g.upcalls_enabled(false);
    let mut spins = 0u64;
    while now_ns(g).is_some_and(|n| n.saturating_sub(start) < SPIN_NS) {
        g.busy_wait(1_000);
        spins += 1;
    }
    g.upcalls_enabled(true);
    cx.say(format_args!("ATTACK masked_spin end spins={spins}"));
    Ok(())
}

fn storm(cx: &Ctx) -> CheckResult {
    let g = cx.g;
    let start = now_ns(g).ok_or_else(|| reason!("no system time"))?;
    cx.say(format_args!("ATTACK storm start"));
    let mut calls = 0u64;
    let mut wrong = 0u64;
    while now_ns(g).is_some_and(|n| n.saturating_sub(start) < STORM_NS) {
        for _ in 0..64 {
            if xen::xen_version(g) <= 0 {
                wrong += 1;
            }
            if xen::evtchn_send(g, u32::MAX) != Errno::EINVAL.to_hypercall_ret() {
                wrong += 1;
            }
            if g.hypercall(nr::CONSOLE_IO, [consoleio::WRITE, 16, crate::FAULT_GPA, 0, 0])
                != Errno::EFAULT.to_hypercall_ret()
            {
                wrong += 1;
            }
            calls += 3;
        }
    }
    cx.say(format_args!("ATTACK storm end calls={calls} wrong={wrong}"));
    ensure!(wrong == 0, "{wrong} of {calls} storm calls answered wrongly");
    Ok(())
}

fn leak_scan(cx: &Ctx) -> CheckResult {
    let g = cx.g;
    let (base, pages) = own_ram(cx);
    // The last MiB is left out: RAM may end a little below what the
    // reservation counts (pages the hypervisor placed elsewhere), and a read
    // past the end would crash us rather than find anything.
    let scan = pages.saturating_sub(256);
    let [a, b] = pattern();
    let (mut found, mut holes) = (0u64, 0u64);
    for p in 0..scan {
        let gpa = base + p * PAGE_SIZE;
        // A page the balloon checks gave back reads as a hole (arm64: an
        // abort the probe survives).
        if g.probe_read(gpa) == Probe::Aborted {
            holes += 1;
            continue;
        }
        let (mut x, mut y) = (0u64, 0u64);
        g.read(gpa, x.as_mut_bytes());
        g.read(gpa + 8, y.as_mut_bytes());
        if x == a && y == b {
            found += 1;
        }
    }
    cx.say(format_args!("ATTACK leak_scan pages={scan} holes={holes} found={found}"));
    ensure!(scan > 0, "no RAM to scan");
    ensure!(found == 0, "the victim's pattern is in {found} of our pages");
    Ok(())
}
