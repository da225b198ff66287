//! The hypervisor's domains and the round-robin scheduler loop shared by
//! every board: pick a runnable vCPU (round-robin turns, and a short boost
//! for a vCPU whose timer has just fired: [`SliceKind`]), account its
//! runstate, enter it through its [`ArchVcpu`], and act on why it came
//! back. The board plugs in through
//! [`Board`]: the preemption timer, idle, the console sink, the debug
//! transport and the exit.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::{ArchDomain, ArchVcpu, Preemption, VcpuExit};
use crate::boot_config::DomainSpec;
use crate::console::ConsoleSink;
use crate::console_input::{self, InputTarget, Key, SerialInput, SWITCH_CHAR};
use crate::debug::{DebugEvent, Debugger, HeldCall, HwKind, Session, StopReason, SYSTEM_SESSION};
use crate::debug_keys;
use crate::directory::DomainDirectory;
use crate::domain::{Domain, Lifecycle, VPF_BLOCKED};
use crate::hypercall::{self, Call};
use crate::lifecycle;
use crate::memory::DomId;
use crate::pv_console;
use crate::pv_timer;
use crate::runstate;
use crate::va_area;
use xen_abi::nr::runstate::{BLOCKED, OFFLINE, RUNNABLE, RUNNING};
use xen_abi::nr::shutdown;

mod endings;

/// Hypercalls a vCPU may make back to back before the loop polls the board
/// (gdb, consoles) again.
const HYPERCALL_BURST: u32 = 256;

/// One domain with everything the scheduler runs it with: the core's model,
/// the per-domain arch object and the arch contexts of its vCPUs (indexed by
/// vCPU id).
pub struct DomainSlot {
    /// The domain.
    pub domain: Arc<Domain>,
    /// Its per-domain arch object.
    pub arch: Box<dyn ArchDomain>,
    /// Its vCPUs' arch contexts, `vcpus[id]`.
    pub vcpus: Vec<Box<dyn ArchVcpu>>,
    /// The configuration it was built from: what its endings do, and what a
    /// restart builds again (`None`: built by hand, e.g. in tests; its
    /// endings are preserved and it cannot be restarted).
    pub spec: Option<DomainSpec>,
    /// How it had ended when it was destroyed (`None` while it exists, or
    /// when it was destroyed on request while running).
    pub ended: Option<Lifecycle>,
    /// Times it has been built again (`on_reboot=restart`, `monitor restart`).
    pub restarts: u32,
    /// Its image is 32-bit code (an ELF32): its own debugger session shows
    /// its vCPUs' registers in the arch's narrow description.
    pub image_32bit: bool,
    /// Its current ending has been acted on.
    ending_handled: bool,
}

impl DomainSlot {
    /// A slot for `domain`, with one vCPU context per vCPU created by `arch`.
    pub fn new(domain: Arc<Domain>, arch: Box<dyn ArchDomain>) -> Self {
        let vcpus = (0..domain.max_vcpus()).map(|id| arch.create_vcpu(&domain, id)).collect();
        Self::from_parts(domain, arch, vcpus)
    }

    /// A slot from its parts: `vcpus[id]` is vCPU `id`'s arch context.
    pub fn from_parts(domain: Arc<Domain>, arch: Box<dyn ArchDomain>, vcpus: Vec<Box<dyn ArchVcpu>>) -> Self {
        DomainSlot {
            domain,
            arch,
            vcpus,
            spec: None,
            ended: None,
            restarts: 0,
            image_32bit: false,
            ending_handled: false,
        }
    }

    /// The same slot, remembering the configuration it was built from.
    pub fn with_spec(mut self, spec: &DomainSpec) -> Self {
        self.spec = Some(spec.clone());
        self
    }

    /// The same slot, with a 32-bit image (see [`DomainSlot::image_32bit`]).
    pub fn with_32bit_image(mut self, is_32bit: bool) -> Self {
        self.image_32bit = is_32bit;
        self
    }

    /// How the domain ended, for the verdict: its lifecycle, or for a
    /// destroyed domain the one it had when it was destroyed.
    pub fn outcome(&self) -> Lifecycle {
        match self.domain.lifecycle() {
            Lifecycle::Dead => self.ended.unwrap_or(Lifecycle::Dead),
            l => l,
        }
    }

    /// vCPU `id`'s arch context.
    pub fn vcpu(&self, id: u32) -> Option<&dyn ArchVcpu> {
        self.vcpus.get(id as usize).map(|v| &**v)
    }

    /// vCPU `id`'s arch context, mutably.
    pub fn vcpu_mut(&mut self, id: u32) -> Option<&mut (dyn ArchVcpu + 'static)> {
        self.vcpus.get_mut(id as usize).map(|v| &mut **v)
    }
}

/// What the debugger makes of `event` on vCPU `vid` of `d`: the stop to
/// report, or `None` for a breakpoint instruction it did not plant (the
/// guest's own, delivered to it).
fn debug_stop(dbg: &Debugger, d: &Domain, vid: u32, vcpu: &dyn ArchVcpu, event: DebugEvent) -> Option<StopReason> {
    match event {
        DebugEvent::Breakpoint { pc } => dbg.planted_at(d, vcpu, pc).then_some(StopReason::SwBreak),
        DebugEvent::Step => Some(StopReason::Step),
        DebugEvent::HwPoint { slot } => {
            let point = dbg.control_for(d.id, vid).hw_points.get(slot).copied();
            Some(match point {
                Some(p) if p.kind != HwKind::Execute => StopReason::Watch { kind: p.kind, addr: p.addr },
                _ => StopReason::HwBreak,
            })
        }
    }
}

/// The domains of the slots around the running one: what its hypercalls
/// find other domains in.
struct OtherSlots<'a> {
    before: &'a [DomainSlot],
    after: &'a [DomainSlot],
}

impl DomainDirectory for OtherSlots<'_> {
    fn find(&self, id: DomId) -> Option<&Domain> {
        self.before.iter().chain(self.after).map(|s| &*s.domain).find(|d| d.id == id)
    }
}

/// All domains, each in its slot.
pub struct Hypervisor {
    slots: Vec<DomainSlot>,
    /// All-stop: set while a debugger holds the system stopped.
    pub stopped: AtomicBool,
    /// The attached debugger's own state (it borrows the whole hypervisor
    /// as its target, so what it keeps between requests lives here).
    pub debugger: DebuggerState,
    /// Where serial input goes (the board feeds it bytes).
    pub input: SerialInput,
    cursor: usize,
    /// vCPUs whose timer fired since they last ran, oldest first: they run
    /// ahead of their turn, briefly ([`SliceKind::Boost`]).
    boosted: Vec<(DomId, u32)>,
    /// The turn in progress: whose, and where it ends at the latest (host
    /// counter).
    turn: Option<(DomId, u32, u64)>,
    /// A turn the boost interrupted: it goes on once the boost has run.
    interrupted: Option<(DomId, u32, u64)>,
    /// A boost may run: none has since the last turn started. With many
    /// busy vCPUs whose ticks come one after another (40 at Linux's 250 Hz
    /// fire 10,000 times a second), boosting every one would leave the
    /// turns no time: a 40-vCPU Debian boot was still bringing up its 38th
    /// CPU after 105 s (13 s to `/init` with the limit).
    boost_allowed: bool,
}

/// What a slice is for, which decides how long it may last (the board
/// knows the lengths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceKind {
    /// A vCPU's turn in the round-robin: a whole slice.
    Turn,
    /// A vCPU whose timer has just fired runs ahead of its turn, briefly:
    /// long enough to take the interrupt, not to run its load; then the
    /// turn it interrupted goes on ([`SliceKind::Rest`]). Xen raises a
    /// timer on the CPU its vCPU runs on, at once; here the vCPUs share
    /// one CPU, and a tick taken only when its vCPU's turn comes round
    /// (or taken at the start of a whole slice) holds up whatever waits on
    /// it elsewhere: Linux's per-CPU delay calibration times the jiffies
    /// that the boot CPU's tick advances, and gives up on a jiffy seen more
    /// than ~1.5 ms late.
    Boost,
    /// The rest of a turn that boosts interrupted, until `ends_at` (host
    /// counter).
    Rest {
        /// Where the interrupted turn was to end.
        ends_at: u64,
    },
}

/// What the attached debuggers keep between their requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebuggerState {
    /// Domains a debugger asked to destroy or restart (`monitor destroy
    /// dN`, `monitor restart dN`), oldest first: the loop does them once
    /// the requests are answered, with the board that builds domains.
    pub domain_requests: Vec<(DomId, DomainRequest)>,
    /// Breakpoints, watchpoints, and every session's single-step,
    /// catchpoints and stops.
    pub exec: Debugger,
    /// The session whose requests are being served (the stub sets it for
    /// each poll of its line): what [`DebuggerState::session`] is.
    pub serving: usize,
    /// The debug transport's counters, `(name, count)`, as the stub last
    /// published them (for `monitor stats`; the core never reads them).
    pub transport_counters: Vec<(&'static str, u64)>,
}

impl DebuggerState {
    /// The session being served.
    pub fn session(&self) -> &Session {
        &self.exec.sessions[self.serving]
    }

    /// The session being served, mutably.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.exec.sessions[self.serving]
    }
}

/// What the debugger may ask the hypervisor to do to a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainRequest {
    /// Tear it down.
    Destroy,
    /// Tear it down and build it again from its configuration.
    Restart,
}

/// What the board provides to the scheduler loop. As a [`Preemption`] it is
/// the slice timer a running vCPU sees.
pub trait Board: Preemption {
    /// A time slice of `kind` is about to start (the slice timer
    /// restarts). It ends when its kind says, or sooner at `wake_at` (host
    /// counter), when a vCPU's guest or PV timer is due: a vCPU whose timer
    /// fires does not wait for the running one's slice to end, as Xen's
    /// scheduler is tickled on a wake-up. Returns where the slice ends at
    /// the latest, `wake_at` aside (host counter).
    fn start_slice(&mut self, kind: SliceKind, wake_at: Option<u64>) -> u64;
    /// Services the board's devices between slices — above all the debug
    /// transport (the gdb stub), which may inspect and change `hv`.
    fn poll(&mut self, hv: &mut Hypervisor);
    /// Nothing can run: wait for an interrupt, or at the latest until the
    /// host counter reaches `wake_at` (a blocked vCPU's guest timer or PV
    /// timer deadline).
    fn idle(&mut self, hv: &Hypervisor, wake_at: Option<u64>);
    /// The host counter now, in the units of [`ArchDomain::timer_deadline`]:
    /// the counter the domains' [`crate::clock::Clock`] samples, so that
    /// [`crate::clock::Clock::counter_at`] converts a PV deadline to it.
    fn now_ticks(&self) -> u64;
    /// Where the domains' console lines go.
    fn console(&self) -> Arc<dyn ConsoleSink>;
    /// Whether the loop should return once every domain has finished (the
    /// `--exit` mode); otherwise the board keeps polling (gdb stays usable).
    fn exit_when_done(&self) -> bool {
        true
    }
    /// Ends the run with `verdict` (powers the machine off with its status).
    fn exit(&mut self, verdict: &Verdict) -> !;
    /// Builds domain `id` again from `spec` (a restart): its image loaded
    /// afresh from the boot module, its boot vCPU powered on.
    fn build_domain(&mut self, id: DomId, spec: &DomainSpec) -> Result<DomainSlot, String> {
        let _ = (id, spec);
        Err(String::from("this board cannot build a domain after boot"))
    }
    /// Prints one of the hypervisor's own lines (a domain destroyed or
    /// restarted).
    fn announce(&mut self, line: &str) {
        log::warn!("{line}");
    }
}

/// How the run ended: per domain, its final lifecycle.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// `(domain id, lifecycle)` for every domain.
    pub domains: Vec<(u16, Lifecycle)>,
    /// Domains the board could not even build (each fails the run).
    pub failed_to_build: usize,
}

impl Verdict {
    /// The closing console lines every board prints: one per domain
    /// (`dN: shut down (poweroff)`, `dN: crashed`, ...) and then
    /// `verdict PASS` or `verdict FAIL`, so tools parse one format.
    pub fn summary_lines(&self) -> Vec<String> {
        use alloc::format;
        let mut lines: Vec<_> = self
            .domains
            .iter()
            .map(|(id, l)| match l {
                Lifecycle::Shutdown(r) => format!("d{id}: shut down ({})", shutdown::name(*r)),
                Lifecycle::Crashed => format!("d{id}: crashed"),
                Lifecycle::Dead => format!("d{id}: destroyed"),
                Lifecycle::Running => format!("d{id}: still running"),
            })
            .collect();
        lines.push(format!("verdict {}", if self.clean() { "PASS" } else { "FAIL" }));
        lines
    }

    /// Every domain was built and powered off cleanly, or was destroyed
    /// on request while running (the operator's choice, not a failure).
    pub fn clean(&self) -> bool {
        self.failed_to_build == 0
            && self.domains.iter().all(|(_, l)| matches!(*l, Lifecycle::Shutdown(shutdown::POWEROFF) | Lifecycle::Dead))
    }
}

impl Hypervisor {
    /// A hypervisor over `slots`.
    pub fn new(slots: Vec<DomainSlot>) -> Self {
        Hypervisor {
            slots,
            stopped: AtomicBool::new(false),
            debugger: DebuggerState::default(),
            input: SerialInput::new(),
            cursor: 0,
            boosted: Vec::new(),
            turn: None,
            interrupted: None,
            boost_allowed: true,
        }
    }

    /// Every domain's slot, in creation order.
    pub fn slots(&self) -> &[DomainSlot] {
        &self.slots
    }

    /// Every domain's slot, mutably (the debugger reads and writes vCPU
    /// state through this).
    pub fn slots_mut(&mut self) -> &mut [DomainSlot] {
        &mut self.slots
    }

    /// The slots read-only and the debugger state mutably, at once (a
    /// debugger command inspects the model while it changes its own mode).
    pub fn slots_and_debugger(&mut self) -> (&[DomainSlot], &mut DebuggerState) {
        (&self.slots, &mut self.debugger)
    }

    /// The slots and the debugger state, both mutably (the debugger arms
    /// what it planted in the vCPUs).
    pub fn slots_mut_and_debugger(&mut self) -> (&mut [DomainSlot], &mut DebuggerState) {
        (&mut self.slots, &mut self.debugger)
    }

    /// Domains, in creation order.
    pub fn domains(&self) -> impl Iterator<Item = &Arc<Domain>> {
        self.slots.iter().map(|s| &s.domain)
    }

    /// Domain by id.
    pub fn domain(&self, id: u16) -> Option<&Arc<Domain>> {
        self.domains().find(|d| d.id == id)
    }

    /// Whether every domain has finished.
    pub fn all_finished(&self) -> bool {
        self.domains().all(|d| d.is_finished())
    }

    /// The verdict so far.
    pub fn verdict(&self) -> Verdict {
        Verdict { domains: self.slots.iter().map(|s| (s.domain.id, s.outcome())).collect(), failed_to_build: 0 }
    }

    /// The unhandled-request counts of every domain, one line per kind
    /// (the board logs them at debug level when the run ends).
    pub fn diagnostic_lines(&self) -> Vec<String> {
        self.domains().flat_map(|d| d.diag.lock().summary_lines(d.id)).collect()
    }

    /// Domains that can take serial input: a PV console and not dead.
    fn input_domains(&self) -> Vec<DomId> {
        self.domains()
            .filter(|d| d.lifecycle() != Lifecycle::Dead && pv_console::of(d).is_some())
            .map(|d| d.id)
            .collect()
    }

    /// The end of boot: serial input moves from the hypervisor to the first
    /// domain with a console (as Xen hands it to dom0). Returns the line
    /// the board prints to say so.
    pub fn start_serial_input(&mut self) -> String {
        let t = self.input.switch(&self.input_domains());
        console_input::switch_message(t)
    }

    /// One byte of serial input: part of a Ctrl-A switch, a debug key (input
    /// to the hypervisor), or a byte for the target domain's console ring.
    /// `say` prints the hypervisor's own lines (switch notices, key output).
    pub fn serial_input(&mut self, byte: u8, say: &mut dyn FnMut(&str)) {
        match self.input.push(byte) {
            Key::Held => {}
            Key::Switch => {
                let t = self.input.switch(&self.input_domains());
                say(&console_input::switch_message(t));
            }
            Key::Pass { held, key } => {
                for b in core::iter::repeat_n(SWITCH_CHAR, held as usize).chain(core::iter::once(key)) {
                    self.deliver_input(b, say);
                }
            }
        }
    }

    fn deliver_input(&mut self, b: u8, say: &mut dyn FnMut(&str)) {
        match self.input.target() {
            InputTarget::Hypervisor => {
                let domains: Vec<&Domain> = self.domains().map(|d| &**d).collect();
                for line in debug_keys::run(&domains, b).lines() {
                    say(line);
                }
            }
            InputTarget::Domain(id) => {
                if let Some(d) = self.domain(id) {
                    pv_console::input(d, &[b]);
                }
            }
        }
    }

    /// Drains every domain's PV console output ring (the backend also
    /// drains on the guest's notification; this catches a guest that
    /// wrote without notifying).
    pub fn poll_consoles(&self) {
        for d in self.domains() {
            pv_console::drain(d);
        }
        // The domain someone types at shows its unfinished line (its
        // prompt, the echo of what was typed) without waiting for a newline.
        if let InputTarget::Domain(id) = self.input.target() {
            if let Some(d) = self.domain(id) {
                d.console.lock().show_partial();
            }
        }
    }

    /// Exits every vCPU has taken so far.
    pub fn exits(&self) -> u64 {
        self.slots.iter().map(|s| s.arch.exits()).sum()
    }

    /// Round-robin: the next runnable (slot index, vCPU id) after the last
    /// that its debugger session lets run (see `Debugger::may_run`).
    pub fn pick_next(&mut self) -> Option<(usize, u32)> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        self.end_stuck_steps();
        // A step the whole-system session ended just now stops everything.
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let slots: usize = self.slots.iter().map(|s| s.domain.max_vcpus() as usize).sum();
        for step in 1..=slots {
            let mut flat = (self.cursor + step) % slots;
            for (i, s) in self.slots.iter().enumerate() {
                let d = &s.domain;
                let n = d.max_vcpus() as usize;
                if flat < n {
                    let v = d.vcpus().get(flat)?;
                    if self.debugger.exec.may_run(d.id, flat as u32) && d.vcpu_runnable(v) {
                        self.cursor = (self.cursor + step) % slots;
                        return Some((i, flat as u32));
                    }
                    break;
                }
                flat -= n;
            }
        }
        None
    }

    /// The next slice at host-counter time `now`: a vCPU whose timer fired
    /// (a [`SliceKind::Boost`], one since the last turn started), then the
    /// turn it interrupted (its [`SliceKind::Rest`]), else the next
    /// [`SliceKind::Turn`] of the round-robin ([`Hypervisor::pick_next`]).
    pub fn next_slice(&mut self, now: u64) -> Option<(usize, u32, SliceKind)> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let open = self.turn.take().filter(|t| now < t.2);
        while self.boost_allowed && !self.boosted.is_empty() {
            let (dom, vid) = self.boosted.remove(0);
            let Some(si) = self.runnable_slot(dom, vid) else { continue };
            match open {
                // Its own turn: it just goes on.
                Some(turn) if (turn.0, turn.1) == (dom, vid) => {
                    return Some((si, vid, SliceKind::Rest { ends_at: turn.2 }));
                }
                Some(turn) => self.interrupted = Some(turn),
                None => {}
            }
            return Some((si, vid, SliceKind::Boost));
        }
        if let Some((dom, vid, ends_at)) = self.interrupted.take() {
            if let Some(si) = self.runnable_slot(dom, vid).filter(|_| now < ends_at) {
                return Some((si, vid, SliceKind::Rest { ends_at }));
            }
        }
        self.pick_next().map(|(si, vid)| (si, vid, SliceKind::Turn))
    }

    /// The slot of domain `dom` if its vCPU `vid` is runnable and its
    /// debugger session lets it run.
    fn runnable_slot(&self, dom: DomId, vid: u32) -> Option<usize> {
        let si = self.slots.iter().position(|s| s.domain.id == dom)?;
        let d = &self.slots[si].domain;
        let v = d.vcpus().get(vid as usize)?;
        (self.debugger.exec.may_run(dom, vid) && d.vcpu_runnable(v)).then_some(si)
    }

    /// While a session single-steps a vCPU only it runs of that session's
    /// domains. One that cannot run (blocked, down, or gone) completes its
    /// step where it is: the stop is reported at once rather than when an
    /// event wakes it.
    fn end_stuck_steps(&mut self) {
        let steps: Vec<(DomId, u32)> = self.debugger.exec.sessions.iter().filter_map(|s| s.step).collect();
        for (dom, vid) in steps {
            let runnable = self.slots.iter().find(|s| s.domain.id == dom).is_some_and(|s| {
                let d = &s.domain;
                d.vcpu(vid).is_ok_and(|v| d.vcpu_runnable(v))
            });
            if !runnable {
                self.stop_for_debugger(dom, vid, StopReason::Step);
            }
        }
    }

    /// Records a stop for the debugger session `dom` belongs to and stops
    /// what that session holds — the whole system, or its domain — until it
    /// has been reported and gdb resumes.
    fn stop_for_debugger(&mut self, dom: DomId, vid: u32, reason: StopReason) {
        let exec = &mut self.debugger.exec;
        let session = exec.record(dom, vid, reason);
        if session == SYSTEM_SESSION {
            self.stopped.store(true, Ordering::Release);
        } else {
            exec.sessions[session].holding = true;
        }
        if let Some(s) = self.slots.iter_mut().find(|s| s.domain.id == dom) {
            if let Some(v) = s.vcpus.get_mut(vid as usize) {
                // The step is over: the vCPU keeps only the rest.
                let _ = v.set_debug(&self.debugger.exec.control_for(dom, vid));
            }
        }
    }

    /// Fires the PV timers that have expired (their `VIRQ_TIMER` wakes a
    /// blocked vCPU that bound it; a poll's timeout ends the poll), and wakes
    /// blocked vCPUs whose own guest timer has fired (the backend injects
    /// the timer interrupt when they run).
    /// Each vCPU whose timer fired is boosted: it runs next, briefly.
    pub fn wake_expired_timers(&mut self, now_ticks: u64) {
        for s in &self.slots {
            let now_ns = s.domain.clock().now_ns();
            for v in s.domain.vcpus() {
                let mut fired = pv_timer::fire_expired(&s.domain, v, now_ns);
                if v.pause_flags() & VPF_BLOCKED != 0 && s.arch.timer_deadline(v.id).is_some_and(|t| t <= now_ticks) {
                    s.domain.vcpu_unblock(v);
                    fired = true;
                }
                if fired && !self.boosted.contains(&(s.domain.id, v.id)) {
                    self.boosted.push((s.domain.id, v.id));
                }
            }
        }
    }

    /// The earliest deadline, in host-counter ticks, at which a vCPU's
    /// timer is due: a blocked vCPU's guest timer, PV single-shot timer or
    /// poll timeout (it wakes), and any other vCPU's PV single-shot timer
    /// (system time, converted through its domain's clock; the loop has
    /// fired the expired ones, so these are ahead). Xen raises a
    /// `VIRQ_TIMER` at once on the CPU its vCPU runs on; here the vCPUs
    /// share one CPU, so the slice in progress ends then and the loop fires
    /// it. Without the running and runnable vCPUs' timers, a busy vCPU's
    /// ticks came only at slice ends: Linux's per-CPU delay calibration
    /// (`calibrate_delay_direct`, timing jiffies that another vCPU's tick
    /// advances) failed on every application processor and fell back to
    /// its slow search.
    pub fn next_timer_deadline(&self) -> Option<u64> {
        self.slots
            .iter()
            .flat_map(|s| {
                s.domain.vcpus().iter().flat_map(|v| {
                    let blocked = v.pause_flags() & VPF_BLOCKED != 0;
                    let pv = if blocked { pv_timer::wake_deadline(v) } else { pv_timer::singleshot_deadline(v) };
                    let guest = if blocked { s.arch.timer_deadline(v.id) } else { None };
                    [guest, pv.map(|ns| s.domain.clock().counter_at(ns))]
                })
            })
            .flatten()
            .min()
    }

    /// Runs one time slice of the vCPU `(si, vid)`, handling hypercalls in
    /// place until it must give up the CPU. Returns whether its turn is
    /// still under way: false when it gave way (blocked, yielded, went
    /// down), true when something else ended the slice (the slice timer, a
    /// host interrupt, a burst of hypercalls, the debugger).
    pub fn run_slice(&mut self, si: usize, vid: u32, preempt: &mut dyn Preemption) -> bool {
        let (before, rest) = self.slots.split_at_mut(si);
        let Some((slot, after)) = rest.split_first_mut() else { return false };
        let others = OtherSlots { before, after };
        let d = slot.domain.clone();
        let Ok(v) = d.vcpu(vid) else { return false };
        runstate::change(&d, v, RUNNING);
        v.set_running(true);
        crate::time::update_vcpu_system_time(&d, v);
        // The areas registered by guest-virtual address translate through
        // this vCPU's own tables, so they are written while it is current.
        va_area::update_runstate(&d, v, &*slot.vcpus[vid as usize]);
        va_area::update_time(&d, v, &*slot.vcpus[vid as usize]);
        // The periodic timer ticks while its vCPU is scheduled (as in Xen,
        // where a context switch runs it): every slice looks at it.
        pv_timer::periodic_work(&d, v, d.clock().now_ns());
        let mut burst = 0;
        // A hypercall held at its entry catchpoint goes first: the vCPU is
        // still inside it.
        let mut held = self.debugger.exec.take_held_call(d.id, vid);
        let mut stop = None;
        let mut gave_way = false;
        let exit = loop {
            let (nr, args, resumed) = match held.take() {
                Some(call) => (call.nr, call.args, true),
                None => {
                    // Every entry sees the p2m as it is now: a hypercall (this
                    // domain's, or another's mapping a grant here) may have
                    // changed it.
                    slot.arch.sync_p2m(&d);
                    if v.take_upcall_request() {
                        slot.vcpus[vid as usize].inject_upcall(&d);
                    }
                    match slot.vcpus[vid as usize].run(&d, preempt) {
                        VcpuExit::Hypercall { nr, args } if self.debugger.exec.catches(d.id, nr) => {
                            let call = HeldCall { domain: d.id, vcpu: vid, nr, args };
                            self.debugger.exec.held_calls.push(call);
                            stop = Some(StopReason::HypercallEntry(nr));
                            break None;
                        }
                        VcpuExit::Hypercall { nr, args } => (nr, args, false),
                        VcpuExit::Debug(event) => {
                            let vcpu = &mut slot.vcpus[vid as usize];
                            match debug_stop(&self.debugger.exec, &d, vid, &**vcpu, event) {
                                Some(reason) => {
                                    stop = Some(reason);
                                    break None;
                                }
                                None => {
                                    // The guest's own breakpoint instruction.
                                    vcpu.deliver_breakpoint();
                                    continue;
                                }
                            }
                        }
                        other => break Some(other),
                    }
                }
            };
            let out = hypercall::dispatch(&mut Call::with_domains(&d, vid, &mut slot.vcpus, &others), nr, args);
            slot.vcpus[vid as usize].complete_hypercall(out.ret);
            burst += 1;
            if resumed && self.debugger.exec.catches(d.id, nr) {
                stop = Some(StopReason::HypercallReturn(nr));
                break None;
            }
            if out.deschedule || burst >= HYPERCALL_BURST || !d.vcpu_runnable(v) {
                gave_way = out.deschedule;
                break None;
            }
        };
        v.set_running(false);
        match exit {
            Some(VcpuExit::Halted) => d.vcpu_block(v),
            Some(VcpuExit::Down) => lifecycle::vcpu_down(&d, v),
            Some(VcpuExit::DomainShutdown(reason)) => d.shutdown(reason),
            Some(VcpuExit::Fault) => d.crash(),
            Some(VcpuExit::Yielded) => gave_way = true,
            _ => {}
        }
        let next = if !v.is_up() {
            OFFLINE
        } else if v.pause_flags() & VPF_BLOCKED != 0 {
            BLOCKED
        } else {
            RUNNABLE
        };
        runstate::change(&d, v, next);
        va_area::update_runstate(&d, v, &*slot.vcpus[vid as usize]);
        if let Some(reason) = stop {
            self.stop_for_debugger(d.id, vid, reason);
        }
        next == RUNNABLE && !gave_way
    }

    /// The main loop: schedules until every domain has finished (when the
    /// board wants that) and returns the verdict.
    pub fn run(&mut self, board: &mut dyn Board) -> Verdict {
        loop {
            board.poll(self);
            self.act_on_endings(board);
            self.poll_consoles();
            self.wake_expired_timers(board.now_ticks());
            if self.all_finished() && board.exit_when_done() {
                return self.verdict();
            }
            match self.next_slice(board.now_ticks()) {
                Some((si, vid, kind)) => {
                    let ends_at = board.start_slice(kind, self.next_timer_deadline());
                    let dom = self.slots[si].domain.id;
                    // Whatever slice it gets, it takes its interrupt now.
                    self.boosted.retain(|&b| b != (dom, vid));
                    match kind {
                        SliceKind::Turn => self.boost_allowed = true,
                        SliceKind::Boost => self.boost_allowed = false,
                        SliceKind::Rest { .. } => {}
                    }
                    let under_way = self.run_slice(si, vid, board);
                    // A turn, or the rest of one, that a boost may interrupt.
                    self.turn = (under_way && kind != SliceKind::Boost).then_some((dom, vid, ends_at));
                }
                None => {
                    let wake_at = self.next_timer_deadline();
                    board.idle(self, wake_at);
                }
            }
        }
    }
}
