//! The checks themselves: vcpu_info / runstate / time area registration
//! exercised through real hypercalls, one `CHECK` line per check.

// Failure reasons are fixed-size text buffers (no allocator in a guest), so
// `Result<(), Reason>` is deliberately larger than clippy likes.
#![allow(clippy::result_large_err)]

use core::fmt::{self, Write};
use core::sync::atomic::Ordering;

use crate::abi::{self, errno, hc};
use crate::console::{self, Buf};
use crate::layout::{self, Layout};
use crate::{Guest, MAX_VCPUS, PAGE_SIZE, VCPUS};

/// Totals of one scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

/// Failure reason of one check.
type Reason = Buf<160>;
type CheckResult = Result<(), Reason>;

/// Build a failure reason with `format!`-like syntax.
macro_rules! reason {
    ($($t:tt)*) => {{
        let mut r = Reason::new();
        let _ = write!(r, $($t)*);
        r
    }};
}

/// Bail out of a check with a reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            return Err(reason!($($t)*));
        }
    };
}

/// How many `SCHEDOP_yield`s to wait for something another vCPU or the
/// hypervisor must do before calling it a failure.
const WAIT_YIELDS: u32 = 2000;

/// Iterations of each `bench` loop.
const BENCH_ITERS: u32 = 2000;

/// A gfn far beyond any test domain's memory (16 GiB).
const GFN_OUTSIDE: u64 = 0x40_0000;

/// Marker written into the spare arch field of a vcpu_info before
/// re-registering it, to see the contents carried over.
const MARKER: u32 = 0x4c41_4e54; // "LANT"

/// Consistent snapshot of a runstate area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Runstate {
    pub state: u32,
    pub entry: u64,
    pub time: [u64; 4],
}

/// Mutable state of one run on vCPU 0.
struct Run<'a, G: Guest + ?Sized> {
    g: &'a G,
    l: &'static Layout,
    out: Outcome,
    vcpus: u32,
    shinfo_mapped: bool,
    pages: [u64; 4],
    /// Started secondaries.
    started: [bool; MAX_VCPUS],
    /// Registered runstate areas per vCPU (gpa, 0 = none).
    runstate_gpa: [u64; MAX_VCPUS],
    /// Registered time areas per vCPU (gpa, 0 = none).
    time_gpa: [u64; MAX_VCPUS],
}

/// Run every check on the calling vCPU (vCPU 0), print the result lines and
/// the final `SCENARIO END` line, and return the totals.
pub fn run_checks<G: Guest + ?Sized>(g: &G) -> Outcome {
    let mut r = Run {
        g,
        l: g.layout(),
        out: Outcome::default(),
        vcpus: 1,
        shinfo_mapped: false,
        pages: g.scratch_pages(),
        started: [false; MAX_VCPUS],
        runstate_gpa: [0; MAX_VCPUS],
        time_gpa: [0; MAX_VCPUS],
    };
    r.all();
    if has_word(g, "bench") {
        r.bench();
    }
    let o = r.out;
    r.say(format_args!("SCENARIO END passed={} failed={}", o.passed, o.failed));
    o
}

/// Whether the guest command line contains `word`.
fn has_word<G: Guest + ?Sized>(g: &G, word: &str) -> bool {
    g.cmdline().split_ascii_whitespace().any(|w| w == word)
}

/// Run the scenario, then power off (every check passed) or crash (any
/// failed) — unless the command line says `linger`, in which case vCPU 0
/// idles forever so a debugger can attach to a live system.
pub fn run<G: Guest + ?Sized>(g: &G) -> ! {
    let o = run_checks(g);
    if has_word(g, "fault") {
        fault(g);
    }
    if has_word(g, "linger") {
        console::line(&|b| g.console(b), format_args!("SCENARIO LINGER"));
        idle(g, 0);
    }
    let reason = if o.failed == 0 { abi::SHUTDOWN_POWEROFF } else { abi::SHUTDOWN_CRASH };
    shutdown(g, reason)
}

/// Guest-physical address the `fault` command-line word reads: 768 MiB,
/// far above the test domains' RAM (32 MiB by default; anything up to
/// 512 MiB keeps it well outside) yet inside every guest's identity mapping
/// (x86_64: the first 1 GiB; x86_32: paging off; arm64: the low 3 GiB of
/// normal memory), so the access reaches the hypervisor as a nested-page /
/// stage-2 fault rather than a guest page fault.
pub const FAULT_GPA: u64 = 0x3000_0000;

/// The `fault` command-line word: announce `FAULT now`, then read
/// [`FAULT_GPA`], which no RAM backs. The hypervisor cannot handle that and
/// must crash this domain (only); should the read return anyway, say so and
/// crash ourselves so the test still fails visibly.
fn fault<G: Guest + ?Sized>(g: &G) -> ! {
    console::line(&|b| g.console(b), format_args!("FAULT now gpa={FAULT_GPA:#x}"));
    let mut word = [0u8; 4];
    g.read(FAULT_GPA, &mut word);
    console::line(&|b| g.console(b), format_args!("FAULT survived: read {:#x}", u32::from_le_bytes(word)));
    shutdown(g, abi::SHUTDOWN_CRASH)
}

/// `SCHEDOP_shutdown(reason)`; never returns (spins if the hypervisor
/// ignores the request, so the failure is visible rather than silent).
pub fn shutdown<G: Guest + ?Sized>(g: &G, reason: u32) -> ! {
    let arg = reason.to_le_bytes();
    let rc = g.hypercall(hc::SCHED_OP, [abi::SCHEDOP_SHUTDOWN, g.gpa_of(arg.as_ptr()), 0, 0, 0]);
    console::line(&|b| g.console(b), format_args!("SCENARIO shutdown returned rc={rc}"));
    idle(g, 0)
}

/// Idle loop: stay alive (still updating runstate and time) by yielding.
fn idle<G: Guest + ?Sized>(g: &G, vcpu: u32) -> ! {
    g.upcalls_enabled(true);
    loop {
        if (vcpu as usize) < MAX_VCPUS {
            VCPUS.alive[vcpu as usize].fetch_add(1, Ordering::AcqRel);
        }
        g.busy_wait(20_000);
        sched_yield(g);
    }
}

/// Main loop of every secondary vCPU: prove liveness, take upcalls, yield.
pub fn secondary_main<G: Guest + ?Sized>(g: &G, vcpu: u32) -> ! {
    g.upcalls_enabled(true);
    let l = g.layout();
    loop {
        let v = (vcpu as usize).min(MAX_VCPUS - 1);
        VCPUS.alive[v].fetch_add(1, Ordering::AcqRel);
        // After a (remote) registration the upcall mask may have been copied
        // as 1 or set to 1 by the hypervisor; a Xen guest unmasks itself.
        let gpa = VCPUS.vcpu_info_gpa[v].load(Ordering::Acquire);
        if l.has_upcall_mask && gpa != 0 {
            g.write(gpa + layout::VI_UPCALL_MASK, &[0]);
        }
        g.busy_wait(2_000);
        sched_yield(g);
    }
}

fn sched_yield<G: Guest + ?Sized>(g: &G) -> i64 {
    g.hypercall(hc::SCHED_OP, [abi::SCHEDOP_YIELD, 0, 0, 0, 0])
}

/// Name of a (negative) Xen errno result, for failure reasons.
fn rc_name(rc: i64) -> &'static str {
    match -rc {
        0 => "0",
        errno::EPERM => "-EPERM",
        errno::ENOENT => "-ENOENT",
        errno::ENXIO => "-ENXIO",
        errno::EBUSY => "-EBUSY",
        errno::EINVAL => "-EINVAL",
        errno::ENOSYS => "-ENOSYS",
        _ if rc > 0 => "positive",
        _ => "other",
    }
}

impl<G: Guest + ?Sized> Run<'_, G> {
    fn say(&self, args: fmt::Arguments<'_>) {
        console::line(&|b| self.g.console(b), args);
    }

    fn check(&mut self, name: &str, res: CheckResult) {
        match res {
            Ok(()) => {
                self.out.passed += 1;
                self.say(format_args!("CHECK PASS {name}"));
            }
            Err(why) => {
                self.out.failed += 1;
                self.say(format_args!("CHECK FAIL {name}: {}", why.as_str()));
            }
        }
    }

    // --- guest memory helpers -------------------------------------------

    fn read_u8(&self, gpa: u64) -> u8 {
        let mut b = [0u8; 1];
        self.g.read(gpa, &mut b);
        b[0]
    }

    fn read_u32(&self, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        self.g.read(gpa, &mut b);
        u32::from_le_bytes(b)
    }

    fn read_u64(&self, gpa: u64) -> u64 {
        let mut b = [0u8; 8];
        self.g.read(gpa, &mut b);
        u64::from_le_bytes(b)
    }

    fn read_vcpu_info(&self, gpa: u64) -> [u8; 64] {
        let mut b = [0u8; 64];
        self.g.read(gpa, &mut b[..self.l.vcpu_info_size as usize]);
        b
    }

    // --- hypercall helpers ------------------------------------------------

    fn vcpu_op(&self, cmd: u64, vcpu: u32, arg: &[u8]) -> i64 {
        let p = if arg.is_empty() { 0 } else { self.g.gpa_of(arg.as_ptr()) };
        self.g.hypercall(hc::VCPU_OP, [cmd, vcpu as u64, p, 0, 0])
    }

    fn register_vcpu_info(&self, vcpu: u32, gfn: u64, offset: u32) -> i64 {
        let arg = abi::register_vcpu_info_arg(gfn, offset);
        self.vcpu_op(abi::VCPUOP_REGISTER_VCPU_INFO, vcpu, &arg)
    }

    /// Register `vcpu`'s vcpu_info at `page + offset`; on success remember
    /// where it lives (for the upcall handler and the REPORT lines).
    fn register_and_track(&self, vcpu: u32, page: u64, offset: u32) -> i64 {
        let rc = self.register_vcpu_info(vcpu, page / PAGE_SIZE, offset);
        if rc == 0 && (vcpu as usize) < MAX_VCPUS {
            VCPUS.vcpu_info_gpa[vcpu as usize].store(page + offset as u64, Ordering::Release);
        }
        rc
    }

    fn yield_now(&self) {
        sched_yield(self.g);
    }

    /// Yield until `cond` holds, at most `WAIT_YIELDS` times.
    fn wait_for(&self, mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..WAIT_YIELDS {
            if cond() {
                return true;
            }
            self.yield_now();
        }
        cond()
    }

    fn alive(&self, vcpu: u32) -> u32 {
        VCPUS.alive[vcpu as usize].load(Ordering::Acquire)
    }

    /// Wait until secondary `vcpu` shows signs of life beyond `since`.
    fn wait_alive(&self, vcpu: u32, since: u32) -> bool {
        self.wait_for(|| self.alive(vcpu) > since)
    }

    /// Consistent read of a vcpu_time_info at `gpa` (version even and
    /// unchanged across the read): `(version, system_time)`.
    fn read_time(&self, gpa: u64) -> Option<(u32, u64)> {
        for _ in 0..1000 {
            let v1 = self.read_u32(gpa + layout::TIME_VERSION);
            let st = self.read_u64(gpa + layout::TIME_SYSTEM_TIME);
            let v2 = self.read_u32(gpa + layout::TIME_VERSION);
            if v1 == v2 && v1.is_multiple_of(2) {
                return Some((v1, st));
            }
            core::hint::spin_loop();
        }
        None
    }

    /// Consistent read of a runstate area at `gpa`.
    fn read_runstate(&self, gpa: u64) -> Option<Runstate> {
        let l = self.l;
        for _ in 0..1000 {
            let e1 = self.read_u64(gpa + l.runstate_entry_offset as u64);
            let mut r = Runstate { state: self.read_u32(gpa), entry: e1 & !abi::XEN_RUNSTATE_UPDATE, time: [0; 4] };
            for (i, t) in r.time.iter_mut().enumerate() {
                *t = self.read_u64(gpa + l.runstate_time_offset as u64 + 8 * i as u64);
            }
            let e2 = self.read_u64(gpa + l.runstate_entry_offset as u64);
            if e1 == e2 && e1 & abi::XEN_RUNSTATE_UPDATE == 0 {
                return Some(r);
            }
            core::hint::spin_loop();
        }
        None
    }

    /// Count the domain's vCPUs with `VCPUOP_is_up` (-ENOENT past the end),
    /// falling back to what the arch crate knows from its boot information.
    fn probe_vcpus(&self) -> u32 {
        let hinted = self.g.vcpu_count().clamp(1, MAX_VCPUS as u32);
        let mut n = 0;
        while n < MAX_VCPUS as u32 {
            let rc = self.vcpu_op(abi::VCPUOP_IS_UP, n, &[]);
            if rc < 0 {
                break;
            }
            n += 1;
        }
        if n == 0 {
            hinted
        } else {
            n
        }
    }

    // --- the scenario -------------------------------------------------------

    fn all(&mut self) {
        self.vcpus = self.probe_vcpus();
        let l = self.l;
        self.say(format_args!(
            "REPORT guest={} layout={} vcpus={} vcpu_info_size={} pending_sel_offset={} pending_sel_width={} legacy_vcpus={}",
            self.g.name(),
            l.name,
            self.vcpus,
            l.vcpu_info_size,
            l.pending_sel_offset,
            l.pending_sel_width,
            l.legacy_vcpus
        ));

        let res = self.xen_version();
        self.check("xen_version", res);
        let res = self.map_shared_info();
        self.check("map_shared_info", res);
        let res = self.default_vcpu_info();
        self.check("default_vcpu_info_in_shared_info", res);
        let rc = self.g.setup_upcall();
        self.check("upcall_callback_set", if rc == 0 { Ok(()) } else { Err(reason!("rc={rc} ({})", rc_name(rc))) });

        self.register_errors();
        self.register_vcpu0();

        // The dummy-area vCPU (x86: first id >= 32; arm64: vCPU 1) and the
        // remote vCPU that is started first and registered while it runs.
        let (dummy, remote) = if l.legacy_vcpus > 1 { (l.legacy_vcpus, 1) } else { (1, 2) };
        self.dummy_vcpu(dummy);
        self.remote_vcpu(remote);
        self.time_area();
        self.runstate_area(remote);
        self.reports();
    }

    /// In-guest round-trip costs (`bench` on the command line): a bare trap,
    /// the null hypercall (`xen_version`) and a `register_vcpu_info` that the
    /// hypervisor must fully decode and then refuse (`-EBUSY`: vCPU 0 is
    /// registered by now). The secondaries are taken down meanwhile
    /// (`VCPUOP_down`, then `VCPUOP_up`) so they do not share the figures;
    /// other domains still do. One `BENCH` line each.
    fn bench(&mut self) {
        let g = self.g;
        let parked: [bool; MAX_VCPUS] = core::array::from_fn(|v| v != 0 && self.started[v]);
        for v in (0..MAX_VCPUS).filter(|&v| parked[v]) {
            self.vcpu_op(abi::VCPUOP_DOWN, v as u32, &[]);
        }
        let hz = match g.tick_hz() {
            0 => self.tsc_hz_from_time_area(),
            hz => hz,
        };
        let arg = abi::register_vcpu_info_arg(self.pages[1] / PAGE_SIZE, 0);
        let argp = g.gpa_of(arg.as_ptr());
        let measure = |name: &str, f: &mut dyn FnMut() -> i64| {
            let rc = f();
            let t0 = g.ticks();
            for _ in 0..BENCH_ITERS {
                f();
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
        };
        measure("bare_trap", &mut || g.bare_trap());
        measure("xen_version", &mut || g.hypercall(hc::XEN_VERSION, [abi::XENVER_VERSION, 0, 0, 0, 0]));
        measure("register_vcpu_info_ebusy", &mut || {
            g.hypercall(hc::VCPU_OP, [abi::VCPUOP_REGISTER_VCPU_INFO, 0, argp, 0, 0])
        });
        for v in (0..MAX_VCPUS).filter(|&v| parked[v]) {
            self.vcpu_op(abi::VCPUOP_UP, v as u32, &[]);
        }
    }

    /// The TSC rate Xen publishes in vCPU 0's time area: system time (ns) =
    /// ((tsc << shift) * tsc_to_system_mul) >> 32, so Hz = 1e9 · 2^32 / mul,
    /// scaled back by the shift. 0 if no time area or no multiplier.
    fn tsc_hz_from_time_area(&self) -> u64 {
        let gpa = self.time_gpa[0];
        if gpa == 0 {
            return 0;
        }
        let mul = self.read_u32(gpa + layout::TIME_TSC_TO_SYSTEM_MUL) as u128;
        let shift = self.read_u8(gpa + layout::TIME_TSC_SHIFT) as i8;
        if mul == 0 {
            return 0;
        }
        let hz = (1_000_000_000u128 << 32) / mul;
        let hz = if shift >= 0 { hz >> shift } else { hz << (-shift) };
        hz as u64
    }

    fn xen_version(&mut self) -> CheckResult {
        let rc = self.g.hypercall(hc::XEN_VERSION, [abi::XENVER_VERSION, 0, 0, 0, 0]);
        ensure!(rc >= 0, "xen_version rc={rc} ({})", rc_name(rc));
        self.say(format_args!("REPORT xen_version={}.{}", rc >> 16, rc & 0xffff));
        Ok(())
    }

    fn map_shared_info(&mut self) -> CheckResult {
        let gpa = self.g.shared_info_page();
        let (arg, _) = self.l.add_to_physmap_shared_info(gpa / PAGE_SIZE);
        let rc = self.g.hypercall(hc::MEMORY_OP, [abi::XENMEM_ADD_TO_PHYSMAP, self.g.gpa_of(arg.as_ptr()), 0, 0, 0]);
        ensure!(rc == 0, "add_to_physmap rc={rc} ({})", rc_name(rc));
        self.shinfo_mapped = true;
        for v in 0..self.vcpus.min(self.l.legacy_vcpus) {
            VCPUS.vcpu_info_gpa[v as usize].store(gpa + (v * self.l.vcpu_info_size) as u64, Ordering::Release);
        }
        self.say(format_args!("REPORT shared_info_gfn={:#x}", gpa / PAGE_SIZE));
        Ok(())
    }

    /// vCPU 0's vcpu_info starts out in shared_info slot 0: the hypervisor
    /// keeps its time fields up to date there.
    fn default_vcpu_info(&mut self) -> CheckResult {
        ensure!(self.shinfo_mapped, "shared_info not mapped");
        let slot_time = self.g.shared_info_page() + self.l.vcpu_info_time_offset as u64;
        let mut last = None;
        let ok = self.wait_for(|| {
            last = self.read_time(slot_time);
            matches!(last, Some((_, st)) if st != 0)
        });
        ensure!(ok, "shared_info slot 0 time never updated (last {:?})", last);
        Ok(())
    }

    fn register_errors(&mut self) {
        let (l, page) = (self.l, self.pages[0]);
        let gfn = page / PAGE_SIZE;
        // Offset 2 is misaligned in every layout (alignment 4 or 8).
        let rc = self.register_vcpu_info(0, gfn, 2);
        self.check("register_vcpu_info_misaligned_enxio", expect_rc(rc, -errno::ENXIO));
        // Aligned, but the area would run past the end of the page.
        let off = (PAGE_SIZE as u32) - l.vcpu_info_size + l.vcpu_info_align;
        let rc = self.register_vcpu_info(0, gfn, off);
        self.check("register_vcpu_info_page_crossing_enxio", expect_rc(rc, -errno::ENXIO));
        let rc = self.register_vcpu_info(0, GFN_OUTSIDE, 0);
        self.check("register_vcpu_info_gfn_outside_einval", expect_rc(rc, -errno::EINVAL));
    }

    fn register_vcpu0(&mut self) {
        let l = self.l;
        let slot = self.g.shared_info_page();
        let page = self.pages[0];
        // Leave a trace in the old area that must be carried across.
        if self.shinfo_mapped {
            self.g.write(slot + layout::VI_UPCALL_MASK, &[1]);
            if let Some(o) = l.arch_marker_offset {
                self.g.write(slot + o as u64, &MARKER.to_le_bytes());
            }
        }
        self.g.upcalls_enabled(false);
        let before = VCPUS.upcalls[0].load(Ordering::Acquire);
        let rc = self.register_and_track(0, page, 0);
        let registered = rc == 0;
        self.check(
            "register_vcpu_info_fresh_page",
            if registered { Ok(()) } else { Err(reason!("rc={rc} ({})", rc_name(rc))) },
        );

        let vi = self.read_vcpu_info(page);
        let res = self.contents_carried_over(registered, &vi);
        self.check("vcpu_info_contents_carried_over", res);
        let res = self.pending_sel_all_ones(registered, &vi);
        self.check("pending_sel_all_ones", res);

        let rc = self.register_vcpu_info(0, self.pages[1] / PAGE_SIZE, 0);
        self.check("register_vcpu_info_again_ebusy", expect_rc(rc, -errno::EBUSY));

        // Unmask and let the pending upcall in.
        if l.has_upcall_mask && registered {
            self.g.write(page + layout::VI_UPCALL_MASK, &[0]);
        }
        self.g.upcalls_enabled(true);
        let got = self.wait_for(|| VCPUS.upcalls[0].load(Ordering::Acquire) > before);
        let res = if !registered {
            Err(reason!("vcpu_info not registered"))
        } else if got {
            Ok(())
        } else {
            Err(reason!("no upcall within {WAIT_YIELDS} yields (upcall_pending={})", self.read_u8(page)))
        };
        self.check("upcall_delivered_after_register", res);
    }

    fn contents_carried_over(&self, registered: bool, vi: &[u8; 64]) -> CheckResult {
        ensure!(registered, "vcpu_info not registered");
        ensure!(self.shinfo_mapped, "shared_info not mapped: nothing to carry over");
        ensure!(
            vi[layout::VI_UPCALL_MASK as usize] == 1,
            "evtchn_upcall_mask={} (expected 1 carried from the shared_info slot)",
            vi[1]
        );
        if let Some(o) = self.l.arch_marker_offset {
            let o = o as usize;
            let m = u32::from_le_bytes([vi[o], vi[o + 1], vi[o + 2], vi[o + 3]]);
            ensure!(m == MARKER, "arch pad marker {m:#x} != {MARKER:#x}");
        }
        Ok(())
    }

    fn pending_sel_all_ones(&self, registered: bool, vi: &[u8; 64]) -> CheckResult {
        ensure!(registered, "vcpu_info not registered");
        check_pending_sel(self.l, vi)
    }

    /// x86: a vCPU >= 32 on the dummy area cannot be initialised until its
    /// vcpu_info is registered. arm64: register, then PSCI CPU_ON.
    fn dummy_vcpu(&mut self, d: u32) {
        let l = self.l;
        if d >= self.vcpus {
            let why = reason!("needs at least {} vCPUs, domain has {}", d + 1, self.vcpus);
            if self.g.dummy_start_refused() {
                self.check("initialise_on_dummy_refused", Err(why));
                let why = reason!("needs at least {} vCPUs, domain has {}", d + 1, self.vcpus);
                self.check("register_dummy_then_start", Err(why));
            } else {
                self.check("register_dummy_then_start", Err(why));
            }
            self.check("dummy_vcpu_upcall_delivered", Err(reason!("no vCPU {d}")));
            return;
        }
        if self.g.dummy_start_refused() {
            let rc = self.g.start_secondary(d);
            self.check("initialise_on_dummy_refused", expect_rc(rc, -errno::EINVAL));
            if rc == 0 {
                self.started[d as usize] = true;
            }
        }
        let since = self.alive(d);
        let off = 2 * l.vcpu_info_size;
        let rc = self.register_and_track(d, self.pages[0], off);
        let res = if rc != 0 {
            Err(reason!("register_vcpu_info(vcpu {d}) rc={rc} ({})", rc_name(rc)))
        } else if self.started[d as usize] {
            Err(reason!("vCPU {d} was already started on the dummy area"))
        } else {
            let rc = self.g.start_secondary(d);
            if rc != 0 {
                Err(reason!("start vCPU {d} rc={rc} ({})", rc_name(rc)))
            } else {
                self.started[d as usize] = true;
                if self.wait_alive(d, since) {
                    Ok(())
                } else {
                    Err(reason!("vCPU {d} started but never ran"))
                }
            }
        };
        let running = res.is_ok();
        self.check("register_dummy_then_start", res);

        // The registration marked events pending while the vCPU was down:
        // nothing may be lost, so once it runs (interrupts enabled) it must
        // take that upcall.
        let res = if !running {
            Err(reason!("vCPU {d} not running"))
        } else if self.wait_for(|| VCPUS.upcalls[d as usize].load(Ordering::Acquire) > 0) {
            Ok(())
        } else {
            let gpa = VCPUS.vcpu_info_gpa[d as usize].load(Ordering::Acquire);
            Err(reason!(
                "vCPU {d} took no upcall within {WAIT_YIELDS} yields (upcall_pending={} upcall_mask={})",
                self.read_u8(gpa + layout::VI_UPCALL_PENDING),
                self.read_u8(gpa + layout::VI_UPCALL_MASK)
            ))
        };
        self.check("dummy_vcpu_upcall_delivered", res);
    }

    /// Start a vCPU on its default area, then register its vcpu_info from
    /// vCPU 0 while it runs — on the same page as vCPU 0's.
    fn remote_vcpu(&mut self, r: u32) {
        let l = self.l;
        if r >= self.vcpus {
            let why = reason!("needs at least {} vCPUs, domain has {}", r + 1, self.vcpus);
            self.check("secondary_vcpu_started", Err(why));
            for name in ["register_remote_running", "two_vcpus_one_page", "remote_upcall_delivered"] {
                self.check(name, Err(reason!("no vCPU {r}")));
            }
            return;
        }
        let since = self.alive(r);
        let rc = self.g.start_secondary(r);
        let up = rc == 0 && {
            self.started[r as usize] = true;
            self.wait_alive(r, since)
        };
        self.check(
            "secondary_vcpu_started",
            if up { Ok(()) } else { Err(reason!("start vCPU {r} rc={rc} ({})", rc_name(rc))) },
        );

        let before_upcalls = VCPUS.upcalls[r as usize].load(Ordering::Acquire);
        let off = l.vcpu_info_size;
        let rc = self.register_and_track(r, self.pages[0], off);
        let after = self.alive(r);
        let res = if rc != 0 {
            Err(reason!("rc={rc} ({})", rc_name(rc)))
        } else if !up {
            Err(reason!("vCPU {r} was not running"))
        } else if !self.wait_alive(r, after) {
            Err(reason!("vCPU {r} stopped running after the registration"))
        } else {
            Ok(())
        };
        let registered = rc == 0;
        self.check("register_remote_running", res);

        // Both areas now share pages[0]: vCPU 0's must be intact.
        let page = self.pages[0];
        let res = (|| {
            ensure!(registered, "vCPU {r} not registered");
            let mine = self.read_vcpu_info(page);
            if let Some(o) = l.arch_marker_offset {
                let o = o as usize;
                let m = u32::from_le_bytes([mine[o], mine[o + 1], mine[o + 2], mine[o + 3]]);
                ensure!(m == MARKER || !self.shinfo_mapped, "vCPU 0's area clobbered: marker {m:#x}");
            }
            let theirs = self.read_vcpu_info(page + off as u64);
            let sel = l.pending_sel(&theirs);
            // The remote vCPU may already have taken its upcall and cleared
            // upcall_pending, but pending_sel stays all ones (nobody clears it).
            ensure!(sel == l.pending_sel_all_ones(), "vCPU {r}'s pending_sel={sel:#x} at offset {off:#x}");
            Ok(())
        })();
        self.check("two_vcpus_one_page", res);

        let res = if !registered || !up {
            Err(reason!("vCPU {r} not registered/running"))
        } else if self.wait_for(|| VCPUS.upcalls[r as usize].load(Ordering::Acquire) > before_upcalls) {
            Ok(())
        } else {
            Err(reason!("vCPU {r} took no upcall within {WAIT_YIELDS} yields"))
        };
        self.check("remote_upcall_delivered", res);
    }

    fn time_area(&mut self) {
        let gpa = self.pages[2];
        let arg = gpa.to_le_bytes();
        let rc = self.vcpu_op(abi::VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA, 0, &arg);
        let ok = rc == 0;
        if ok {
            self.time_gpa[0] = gpa;
        }
        let first = if ok { self.read_time(gpa) } else { None };
        let res = if !ok {
            Err(reason!("rc={rc} ({})", rc_name(rc)))
        } else {
            match first {
                Some((_, st)) if st != 0 => Ok(()),
                Some((v, _)) => Err(reason!("system_time is 0 (version {v})")),
                None => Err(reason!("version stayed odd/unstable: {}", self.read_u32(gpa))),
            }
        };
        self.check("time_area_version_even", res);

        let res = match first {
            None => Err(reason!("no valid first reading")),
            Some((_, t1)) => {
                let mut last = t1;
                let moved = self.wait_for(|| {
                    self.g.busy_wait(10_000);
                    if let Some((_, t)) = self.read_time(gpa) {
                        last = t;
                    }
                    last > t1
                });
                if moved {
                    Ok(())
                } else {
                    Err(reason!("system_time stuck at {t1}"))
                }
            }
        };
        self.check("time_area_system_time_advancing", res);
    }

    /// Register vCPU 0's runstate area and watch its times move across a
    /// timer preemption (the secondaries keep the CPU contended); also
    /// register the remote vCPU's, from vCPU 0.
    fn runstate_area(&mut self, remote: u32) {
        let l = self.l;
        let gpa = self.pages[2] + 64;
        let rc = self.vcpu_op(abi::VCPUOP_REGISTER_RUNSTATE_PHYS_AREA, 0, &gpa.to_le_bytes());
        let ok = rc == 0;
        if ok {
            self.runstate_gpa[0] = gpa;
        }
        let r1 = if ok { self.read_runstate(gpa) } else { None };
        let res = if !ok {
            Err(reason!("rc={rc} ({})", rc_name(rc)))
        } else {
            match r1 {
                Some(r) if r.state == abi::RUNSTATE_RUNNING && r.entry != 0 => Ok(()),
                Some(r) => Err(reason!("state={} entry={} (expected running, entry != 0)", r.state, r.entry)),
                None => Err(reason!("area never consistent")),
            }
        };
        self.check("runstate_area_registered", res);

        let res = match r1 {
            None => Err(reason!("no valid first reading")),
            Some(r1) => {
                // Spin without yielding until the timer has preempted us at
                // least once (time spent runnable grows), then look again.
                let mut preempted = false;
                let mut last = r1;
                for _ in 0..400 {
                    self.g.busy_wait(100_000);
                    if let Some(r) = self.read_runstate(gpa) {
                        last = r;
                        if r.time[abi::RUNSTATE_RUNNABLE as usize] > r1.time[abi::RUNSTATE_RUNNABLE as usize] {
                            preempted = true;
                            break;
                        }
                    }
                }
                let run = abi::RUNSTATE_RUNNING as usize;
                if !preempted {
                    Err(reason!(
                        "no preemption seen: running {}->{} runnable {}->{} entry {}->{}",
                        r1.time[run],
                        last.time[run],
                        r1.time[1],
                        last.time[1],
                        r1.entry,
                        last.entry
                    ))
                } else if last.time[run] <= r1.time[run] || last.entry <= r1.entry {
                    Err(reason!("running {}->{} entry {}->{}", r1.time[run], last.time[run], r1.entry, last.entry))
                } else {
                    Ok(())
                }
            }
        };
        self.check("runstate_times_advancing_across_preemption", res);

        // The remote vCPU's runstate, registered while it runs.
        if remote < self.vcpus && self.started[remote as usize] {
            let rgpa = self.pages[2] + 64 + l.runstate_size.next_multiple_of(8) as u64;
            let rc = self.vcpu_op(abi::VCPUOP_REGISTER_RUNSTATE_PHYS_AREA, remote, &rgpa.to_le_bytes());
            let res = if rc != 0 {
                Err(reason!("rc={rc} ({})", rc_name(rc)))
            } else {
                self.runstate_gpa[remote as usize] = rgpa;
                let mut last = None;
                if self.wait_for(|| {
                    last = self.read_runstate(rgpa);
                    matches!(last, Some(r) if r.entry != 0 && r.time[0] != 0)
                }) {
                    Ok(())
                } else {
                    Err(reason!("remote runstate never filled in: {:?}", last))
                }
            };
            self.check("runstate_area_remote", res);
        } else {
            self.check("runstate_area_remote", Err(reason!("vCPU {remote} not running")));
        }
    }

    /// Facts a debugger attached later can compare against.
    fn reports(&self) {
        let l = self.l;
        let shinfo = self.g.shared_info_page();
        for v in 0..self.vcpus {
            let vi_gpa = VCPUS.vcpu_info_gpa[v as usize].load(Ordering::Acquire);
            let in_slot = self.shinfo_mapped && v < l.legacy_vcpus && vi_gpa == shinfo + (v * l.vcpu_info_size) as u64;
            let kind = if vi_gpa == 0 {
                "dummy"
            } else if in_slot {
                "shared_info"
            } else {
                "guest"
            };
            let mut line = Buf::<256>::new();
            let _ = write!(line, "REPORT vcpu={v} up={} vcpu_info={kind}", (v == 0 || self.started[v as usize]) as u8);
            if vi_gpa != 0 {
                let vi = self.read_vcpu_info(vi_gpa);
                let _ = write!(
                    line,
                    " vcpu_info_gfn={:#x} vcpu_info_offset={:#x} pending_sel={:#x} upcall_pending={} upcall_mask={}",
                    vi_gpa / PAGE_SIZE,
                    vi_gpa % PAGE_SIZE,
                    l.pending_sel(&vi),
                    vi[0],
                    vi[1]
                );
            }
            let _ = write!(line, " upcalls={}", VCPUS.upcalls[v as usize].load(Ordering::Acquire));
            self.say(format_args!("{}", line.as_str()));

            let rs = self.runstate_gpa[v as usize];
            if rs != 0 {
                if let Some(r) = self.read_runstate(rs) {
                    self.say(format_args!(
                        "REPORT vcpu={v} runstate_gpa={rs:#x} runstate_state={} runstate_entry={} runstate_running={} runstate_runnable={} runstate_blocked={} runstate_offline={}",
                        r.state, r.entry, r.time[0], r.time[1], r.time[2], r.time[3]
                    ));
                }
            }
            let tg = self.time_gpa[v as usize];
            if tg != 0 {
                if let Some((ver, st)) = self.read_time(tg) {
                    self.say(format_args!("REPORT vcpu={v} time_gpa={tg:#x} time_version={ver} time_system_time={st}"));
                }
            }
        }
    }
}

/// PASS if `rc` is what was expected.
fn expect_rc(rc: i64, want: i64) -> CheckResult {
    if rc == want {
        Ok(())
    } else {
        Err(reason!("rc={rc} ({}), expected {want} ({})", rc_name(rc), rc_name(want)))
    }
}

/// After a registration `evtchn_pending_sel` is all ones in the layout's
/// width — and only that width (compat must not spill into `arch.cr2`).
fn check_pending_sel(l: &Layout, vi: &[u8; 64]) -> CheckResult {
    let sel = l.pending_sel(vi);
    ensure!(sel == l.pending_sel_all_ones(), "evtchn_pending_sel={sel:#x}");
    let after = (l.pending_sel_offset + l.pending_sel_width) as usize;
    let spill = u32::from_le_bytes([vi[after], vi[after + 1], vi[after + 2], vi[after + 3]]);
    ensure!(spill != u32::MAX, "all-ones spilled past pending_sel (offset {after:#x})");
    ensure!(vi[0] == 1, "evtchn_upcall_pending={} (expected 1)", vi[0]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ARM64, X86_32, X86_64};

    #[test]
    fn pending_sel_right_width() {
        let mut vi = [0u8; 64];
        vi[0] = 1;
        vi[4..8].copy_from_slice(&[0xff; 4]);
        assert!(check_pending_sel(&X86_32, &vi).is_ok());
        assert!(check_pending_sel(&X86_64, &vi).is_err());
        // Native width written into a compat guest's area spills into cr2.
        vi[8..12].copy_from_slice(&[0xff; 4]);
        assert!(check_pending_sel(&X86_32, &vi).is_err());
        let mut vi = [0u8; 64];
        vi[0] = 1;
        vi[8..16].copy_from_slice(&[0xff; 8]);
        assert!(check_pending_sel(&X86_64, &vi).is_ok());
        assert!(check_pending_sel(&ARM64, &vi).is_ok());
        vi[0] = 0;
        assert!(check_pending_sel(&ARM64, &vi).is_err());
    }

    #[test]
    fn expect_rc_reason_names_errnos() {
        assert!(expect_rc(-6, -errno::ENXIO).is_ok());
        let e = expect_rc(-22, -errno::ENXIO).unwrap_err();
        assert_eq!(e.as_str(), "rc=-22 (-EINVAL), expected -6 (-ENXIO)");
    }
}
