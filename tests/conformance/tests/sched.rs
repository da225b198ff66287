//! The scheduler loop (`sched::Hypervisor`) driven by scripted vCPUs and a
//! recording board: round-robin order, hypercalls handled in place, why a
//! vCPU stopped deciding its runstate and its domain's lifecycle, the
//! all-stop flag, guest-timer wake-ups, p2m syncs, and the verdict.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::{ArchDomain, ArchVcpu, GdbRegisters, GuestMode, Preemption, VcpuExit, VcpuInitContext};
use lantern_common::boot_config::{DomainSpec, ShutdownAction};
use lantern_common::console::{ConsoleSink, NoSink};
use lantern_common::debug::{DebugControl, DebugEvent, StopReason};
use lantern_common::domain::{Domain, Lifecycle, VPF_BLOCKED};
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::lifecycle;
use lantern_common::sched::{Board, DomainRequest, DomainSlot, Hypervisor, SliceKind, Verdict};
use lantern_conformance::{layout, TestDomain};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;
use xen_abi::nr::hypercall;
use xen_abi::nr::runstate::{BLOCKED, OFFLINE, RUNNABLE};
use xen_abi::nr::{schedop, shutdown, xenver};

/// What every scripted vCPU of a test appends to: (domain, vCPU) of each
/// `run`, and the return values the core completed hypercalls with.
#[derive(Default)]
struct Log {
    runs: Mutex<Vec<(u16, u32)>>,
    returns: Mutex<Vec<i64>>,
    /// Breakpoint exceptions handed back to the guest.
    delivered: AtomicUsize,
    /// The last debug control each vCPU was given.
    controls: Mutex<Vec<((u16, u32), DebugControl)>>,
}

/// A vCPU that plays back a script of exits, then halts.
struct ScriptedVcpu {
    domid: u16,
    id: u32,
    script: VecDeque<VcpuExit>,
    log: Arc<Log>,
}

impl GdbRegisters for ScriptedVcpu {
    fn target_xml(&self) -> &'static str {
        ""
    }
    fn read_registers(&self, _out: &mut [u8]) -> usize {
        0
    }
    fn write_registers(&mut self, _data: &[u8]) -> XenResult<()> {
        Err(Errno::EINVAL)
    }
}

impl ArchVcpu for ScriptedVcpu {
    fn run(&mut self, _domain: &Domain, _preempt: &mut dyn Preemption) -> VcpuExit {
        self.log.runs.lock().unwrap().push((self.domid, self.id));
        self.script.pop_front().unwrap_or(VcpuExit::Halted)
    }
    fn complete_hypercall(&mut self, ret: i64) {
        self.log.returns.lock().unwrap().push(ret);
    }
    fn inject_upcall(&mut self, _domain: &Domain) {}
    fn translate(&self, _domain: &Domain, gva: Gva, _write: bool) -> XenResult<Gpa> {
        Ok(Gpa(gva.0))
    }
    fn mode(&self) -> GuestMode {
        GuestMode::Long64
    }
    fn guest_abi(&self, domain: &Domain) -> &'static dyn GuestAbi {
        domain.abi()
    }
    fn initialise(&mut self, _ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        Ok(())
    }
    fn initialise_arg_size(&self) -> usize {
        0
    }
    fn xen_features(&self, _submap_idx: u32) -> u32 {
        0
    }
    fn vm_assist_valid_mask(&self) -> u64 {
        0
    }
    fn time_area_by_va_supported(&self) -> XenResult<()> {
        Err(Errno::EINVAL)
    }
    fn set_timer_op_timeout(&self, args: &[u64; 6]) -> XenResult<u64> {
        Ok(args[0])
    }
    fn gfn_limit(&self) -> u64 {
        0
    }

    fn check_upcall_vector(&self, _vector: u8) -> XenResult<()> {
        Err(Errno::ENOSYS)
    }

    fn set_debug(&mut self, ctl: &DebugControl) -> XenResult<()> {
        self.log.controls.lock().unwrap().push(((self.domid, self.id), ctl.clone()));
        Ok(())
    }

    fn breakpoint_instruction(&self) -> &'static [u8] {
        &[0xCC]
    }

    fn deliver_breakpoint(&mut self) {
        self.log.delivered.fetch_add(1, Ordering::SeqCst);
    }
}

/// A per-domain object that counts p2m syncs and reports a settable guest
/// timer deadline for every vCPU.
#[derive(Default)]
struct CountingDomain {
    syncs: Arc<AtomicUsize>,
    deadline: Arc<AtomicU64>,
}

impl ArchDomain for CountingDomain {
    fn create_vcpu(&self, domain: &Domain, id: u32) -> Box<dyn ArchVcpu> {
        Box::new(ScriptedVcpu { domid: domain.id, id, script: VecDeque::new(), log: Arc::default() })
    }
    fn sync_p2m(&self, domain: &Domain) {
        domain.p2m.lock().take_changes();
        self.syncs.fetch_add(1, Ordering::SeqCst);
    }
    fn timer_deadline(&self, _vcpu: u32) -> Option<u64> {
        match self.deadline.load(Ordering::SeqCst) {
            0 => None,
            t => Some(t),
        }
    }
    fn exits(&self) -> u64 {
        7
    }
    fn soft_reset_supported(&self) -> XenResult<()> {
        Ok(())
    }
}

/// A board that records what the loop asked of it and stops the loop after
/// a number of idles.
#[derive(Default)]
struct RecordingBoard {
    slices: usize,
    /// The wake-up each slice was started with.
    slice_wakes: Vec<Option<u64>>,
    /// The kind of each slice.
    slice_kinds: Vec<SliceKind>,
    /// Host-counter ticks each slice takes (the counter moves only while
    /// idle without it).
    slice_cost: u64,
    polls: usize,
    idles: Vec<Option<u64>>,
    now: u64,
    /// The lines the loop announced.
    announced: Vec<String>,
    /// Scripts of the domains a restart builds, one per build (vCPU 0's).
    rebuilds: VecDeque<Vec<VcpuExit>>,
    /// A debugger request the next poll makes.
    request: Option<(u16, DomainRequest)>,
    log: Arc<Log>,
}

impl Preemption for RecordingBoard {
    fn slice_deadline(&self) -> Option<u64> {
        None
    }
    fn host_interrupt(&mut self) -> bool {
        true
    }
}

impl Board for RecordingBoard {
    fn start_slice(&mut self, kind: SliceKind, wake_at: Option<u64>) -> u64 {
        self.slices += 1;
        self.slice_wakes.push(wake_at);
        self.slice_kinds.push(kind);
        let start = self.now;
        self.now += self.slice_cost;
        match kind {
            SliceKind::Turn => start + SLICE_TICKS,
            SliceKind::Boost => start + SLICE_TICKS / 10,
            SliceKind::Rest { ends_at } => ends_at,
        }
    }
    fn poll(&mut self, hv: &mut Hypervisor) {
        self.polls += 1;
        if let Some(r) = self.request.take() {
            hv.debugger.domain_requests.push(r);
        }
    }
    fn idle(&mut self, hv: &Hypervisor, wake_at: Option<u64>) {
        self.idles.push(wake_at);
        // Time passes while idle; a test that never finishes its domains
        // would loop here, so give up loudly after a while.
        self.now += 100;
        assert!(self.idles.len() < 1000, "the loop never finished: {:?}", hv.verdict());
    }
    fn now_ticks(&self) -> u64 {
        self.now
    }
    fn console(&self) -> Arc<dyn ConsoleSink> {
        Arc::new(NoSink)
    }
    fn exit(&mut self, _verdict: &Verdict) -> ! {
        panic!("the scheduler never calls exit itself");
    }
    fn build_domain(&mut self, id: u16, spec: &DomainSpec) -> Result<DomainSlot, String> {
        let script = self.rebuilds.pop_front().ok_or("no more builds scripted")?;
        assert_eq!(spec.vcpus, 1, "rebuilt from the slot's own configuration");
        Ok(scripted(id, vec![script], &self.log).0)
    }
    fn announce(&mut self, line: &str) {
        self.announced.push(line.to_string());
    }
}

/// A whole slice on the recording board, in host-counter ticks.
const SLICE_TICKS: u64 = 1000;

/// A slot of `vcpus` scripted vCPUs (all up), vCPU `i` playing `scripts[i]`.
fn scripted(id: u16, scripts: Vec<Vec<VcpuExit>>, log: &Arc<Log>) -> (DomainSlot, Arc<AtomicUsize>, Arc<AtomicU64>) {
    let d = TestDomain::new(layout("x86_64")).id(id).vcpus(scripts.len() as u32).build();
    for v in d.vcpus().iter().skip(1) {
        v.set_initialised();
        lifecycle::vcpu_up(&d, v).unwrap();
    }
    let arch = CountingDomain::default();
    let (syncs, deadline) = (arch.syncs.clone(), arch.deadline.clone());
    let vcpus = scripts
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Box::new(ScriptedVcpu { domid: id, id: i as u32, script: s.into(), log: log.clone() }) as Box<dyn ArchVcpu>
        })
        .collect();
    (DomainSlot::from_parts(d, Box::new(arch), vcpus), syncs, deadline)
}

fn hypercall(nr: u64, args: [u64; 6]) -> VcpuExit {
    VcpuExit::Hypercall { nr, args }
}

fn poweroff() -> VcpuExit {
    VcpuExit::DomainShutdown(shutdown::POWEROFF)
}

#[test]
fn hypercalls_are_handled_in_place_and_their_results_returned() {
    let log = Arc::default();
    let (slot, syncs, _) = scripted(
        1,
        vec![vec![
            hypercall(hypercall::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0, 0]),
            hypercall(99, [0; 6]),
            poweroff(),
        ]],
        &log,
    );
    let mut hv = Hypervisor::new(vec![slot]);
    let verdict = hv.run(&mut RecordingBoard::default());
    let version = ((xenver::LANTERN_MAJOR << xenver::VERSION_MAJOR_SHIFT) | xenver::LANTERN_MINOR) as i64;
    assert_eq!(*log.returns.lock().unwrap(), [version, Errno::ENOSYS.to_hypercall_ret()]);
    // One slice ran all three exits back to back: three entries.
    assert_eq!(log.runs.lock().unwrap().len(), 3);
    assert!(syncs.load(Ordering::SeqCst) >= 3, "synced before the slice and after each hypercall");
    assert!(verdict.clean(), "{:?}", verdict.summary_lines());
    assert_eq!(verdict.summary_lines(), ["d1: shut down (poweroff)", "verdict PASS"]);
    assert_eq!(hv.exits(), 7);
}

#[test]
fn round_robin_over_every_runnable_vcpu_of_every_domain() {
    let log = Arc::default();
    let preempted = || vec![VcpuExit::Preempted, VcpuExit::Preempted, poweroff()];
    let (a, _, _) = scripted(1, vec![preempted(), vec![VcpuExit::Preempted, VcpuExit::Preempted]], &log);
    let (b, _, _) = scripted(2, vec![preempted()], &log);
    let mut hv = Hypervisor::new(vec![a, b]);
    let mut board = RecordingBoard::default();
    hv.run(&mut board);
    let runs = log.runs.lock().unwrap().clone();
    // Fair turns: d1v1, d2v0, d1v0, d1v1, ... (the cursor starts after d1v0).
    assert_eq!(&runs[..4], [(1, 1), (2, 0), (1, 0), (1, 1)]);
    assert_eq!(board.slices, runs.len(), "each run was one slice here");
    assert!(board.polls > runs.len(), "the board is polled between slices");
}

#[test]
fn why_a_vcpu_stopped_decides_its_state() {
    let log = Arc::default();
    // v0 blocks (then the domain is shut down from v1), v1 goes down via
    // SCHEDOP_shutdown after v2 faulted in the other domain.
    let (a, _, _) = scripted(1, vec![vec![VcpuExit::Halted], vec![VcpuExit::Down]], &log);
    let (b, _, _) = scripted(2, vec![vec![VcpuExit::Fault]], &log);
    let mut hv = Hypervisor::new(vec![a, b]);
    let mut board = RecordingBoard::default();
    // Run single slices by hand to look at the states in between.
    hv.run_slice(0, 0, &mut board);
    let d1 = hv.domain(1).unwrap().clone();
    let v0 = d1.vcpu(0).unwrap();
    assert_ne!(v0.pause_flags() & VPF_BLOCKED, 0, "halted ⇒ blocked");
    assert_eq!(v0.runstate().state, BLOCKED);
    hv.run_slice(0, 1, &mut board);
    let v1 = d1.vcpu(1).unwrap();
    assert!(!v1.is_up());
    assert_eq!(v1.runstate().state, OFFLINE);
    hv.run_slice(1, 0, &mut board);
    assert_eq!(hv.domain(2).unwrap().lifecycle(), Lifecycle::Crashed, "a fault crashes only its domain");
    assert_eq!(d1.lifecycle(), Lifecycle::Running);
    let verdict = hv.verdict();
    assert!(!verdict.clean());
    assert_eq!(verdict.summary_lines(), ["d1: still running", "d2: crashed", "verdict FAIL"]);
}

#[test]
fn a_yield_gives_up_the_cpu_but_stays_runnable() {
    let log = Arc::default();
    let (a, _, _) = scripted(1, vec![vec![hypercall(hypercall::SCHED_OP, [schedop::YIELD, 0, 0, 0, 0, 0])]], &log);
    let mut hv = Hypervisor::new(vec![a]);
    hv.run_slice(0, 0, &mut RecordingBoard::default());
    let d = hv.domain(1).unwrap();
    assert_eq!(log.runs.lock().unwrap().len(), 1, "the slice ended at the yield");
    assert_eq!(d.vcpu(0).unwrap().runstate().state, RUNNABLE);
}

#[test]
fn a_stopped_system_runs_nothing() {
    let log = Arc::default();
    let (a, _, _) = scripted(1, vec![vec![poweroff()]], &log);
    let mut hv = Hypervisor::new(vec![a]);
    hv.stopped.store(true, Ordering::SeqCst);
    assert_eq!(hv.pick_next(), None);
    hv.stopped.store(false, Ordering::SeqCst);
    assert_eq!(hv.pick_next(), Some((0, 0)));
}

#[test]
fn a_blocked_vcpu_wakes_at_its_guest_timer() {
    let log = Arc::default();
    let (a, _, deadline) = scripted(1, vec![vec![VcpuExit::Halted, poweroff()]], &log);
    deadline.store(250, Ordering::SeqCst);
    let mut hv = Hypervisor::new(vec![a]);
    let mut board = RecordingBoard::default();
    let verdict = hv.run(&mut board);
    assert!(verdict.clean());
    // Idle was told the deadline, and the vCPU ran again once the board's
    // counter passed it (after three idles of 100 ticks).
    assert_eq!(board.idles.first(), Some(&Some(250)));
    assert_eq!(board.idles.len(), 3);
    assert_eq!(log.runs.lock().unwrap().len(), 2);
}

/// A slice that starts while another vCPU is blocked until its timer is
/// told that deadline, so the board can end the slice then rather than keep
/// the woken vCPU waiting for a whole slice (Xen tickles a CPU on a wake).
#[test]
fn a_slice_is_told_when_a_blocked_vcpus_timer_is_due() {
    let log = Arc::default();
    let (a, _, deadline) = scripted(1, vec![vec![VcpuExit::Halted, poweroff()]], &log);
    deadline.store(250, Ordering::SeqCst);
    let yield_call = || hypercall(hypercall::SCHED_OP, [schedop::YIELD, 0, 0, 0, 0, 0]);
    let (b, _, _) = scripted(2, vec![vec![yield_call(), yield_call(), poweroff()]], &log);
    let mut hv = Hypervisor::new(vec![a, b]);
    let mut board = RecordingBoard::default();
    assert!(hv.run(&mut board).clean());
    // d2v0, then d1v0, which halts; d2v0's next two slices start while d1v0
    // is blocked until 250; d1v0's last, once woken, with nothing blocked.
    assert_eq!(*log.runs.lock().unwrap(), [(2, 0), (1, 0), (2, 0), (2, 0), (1, 0)]);
    assert_eq!(board.slice_wakes, [None, None, Some(250), Some(250), None]);
}

/// A slice is also told when a vCPU that is not blocked has its PV timer
/// due, its own or another's waiting for the CPU: a guest that keeps its
/// CPUs busy (Linux spinning on jiffies another vCPU's tick advances) gets
/// its `VIRQ_TIMER` then, not at the end of a slice.
#[test]
fn a_slice_is_told_when_a_runnable_vcpus_timer_is_due() {
    let log = Arc::default();
    // Ten seconds of system time ahead: armed, not yet due.
    const DEADLINE_NS: u64 = 10_000_000_000;
    let yield_call = || hypercall(hypercall::SCHED_OP, [schedop::YIELD, 0, 0, 0, 0, 0]);
    let set_timer = hypercall(hypercall::SET_TIMER_OP, [DEADLINE_NS, 0, 0, 0, 0, 0]);
    let (a, _, _) = scripted(1, vec![vec![set_timer, yield_call(), poweroff()], vec![yield_call()]], &log);
    let due = a.domain.clock().counter_at(DEADLINE_NS);
    let mut hv = Hypervisor::new(vec![a]);
    let mut board = RecordingBoard::default();
    assert!(hv.run(&mut board).clean());
    // v1 yields (round-robin starts after v0), v0 arms its timer and
    // yields; then v1's slice (v0 runnable, not running) and v0's own last
    // one start with it due.
    assert_eq!(*log.runs.lock().unwrap(), [(1, 1), (1, 0), (1, 0), (1, 1), (1, 0)]);
    assert_eq!(board.slice_wakes, [None, None, Some(due), Some(due)]);
}

/// A vCPU whose timer fires runs next, ahead of its turn and briefly (a
/// boost); then the turn it interrupted goes on for the rest of its slice,
/// and only then does the round-robin move on. Without the boost the woken
/// vCPU waited for its turn, without the rest the interrupted one lost it.
#[test]
fn a_vcpu_whose_timer_fires_runs_next_briefly_and_the_interrupted_turn_goes_on() {
    let log = Arc::default();
    let (runs, kinds) = boost_run(VcpuExit::Preempted, &log);
    // Turns: d2v0 (0-100), d2v1 (100-200), d1v0 halts (200-300), d2v0
    // (300-400, to end at 1300); at 400 d1v0's timer (350) has fired: it is
    // boosted, then d2v0's turn goes on, then d2v1's turn.
    assert_eq!(&runs[..7], [(2, 0), (2, 1), (1, 0), (2, 0), (1, 0), (2, 0), (2, 1)]);
    use SliceKind::{Boost, Rest, Turn};
    assert_eq!(&kinds[..7], [Turn, Turn, Turn, Turn, Boost, Rest { ends_at: 300 + SLICE_TICKS }, Turn]);
}

/// A turn that ended because its vCPU gave way is over: a boost after it
/// is followed by the round-robin, not by the rest of it.
#[test]
fn a_turn_given_up_is_not_resumed_after_a_boost() {
    let log = Arc::default();
    let (runs, kinds) = boost_run(VcpuExit::Yielded, &log);
    assert_eq!(&runs[..6], [(2, 0), (2, 1), (1, 0), (2, 0), (1, 0), (2, 1)]);
    use SliceKind::{Boost, Turn};
    assert_eq!(&kinds[..6], [Turn, Turn, Turn, Turn, Boost, Turn]);
}

/// One boost at most between two turns: two vCPUs whose timers fire
/// together get one boost, and the other waits for the next turn to have
/// started. Boosting every vCPU whose tick fires left the turns no time
/// with 40 busy vCPUs.
#[test]
fn one_boost_at_most_between_two_turns() {
    let log = Arc::default();
    use VcpuExit::{Halted, Preempted};
    let scripts = vec![
        vec![Preempted, Preempted, Preempted, Preempted, poweroff()],
        vec![Halted, Preempted, Preempted, Preempted],
        vec![Halted, Preempted, Preempted],
    ];
    let (a, _, deadline) = scripted(1, scripts, &log);
    deadline.store(350, Ordering::SeqCst);
    let mut hv = Hypervisor::new(vec![a]);
    let mut board = RecordingBoard { slice_cost: 100, ..Default::default() };
    assert!(hv.run(&mut board).clean());
    let runs = log.runs.lock().unwrap().clone();
    // v1 and v2 halt, v0 runs two turns; at 400 both timers have fired:
    // v1 is boosted, v0's turn goes on, v1's own turn starts, and only
    // then is v2 boosted.
    assert_eq!(&runs[..8], [(1, 1), (1, 2), (1, 0), (1, 0), (1, 1), (1, 0), (1, 1), (1, 2)]);
    use SliceKind::{Boost, Rest, Turn};
    assert_eq!(
        &board.slice_kinds[..8],
        [Turn, Turn, Turn, Turn, Boost, Rest { ends_at: 300 + SLICE_TICKS }, Turn, Boost]
    );
}

/// d1v0 halts until its guest timer at 350, then powers off; d2's two
/// vCPUs end each slice with `exit` (100 ticks a slice). The vCPUs' runs
/// and the slices' kinds.
fn boost_run(exit: VcpuExit, log: &Arc<Log>) -> (Vec<(u16, u32)>, Vec<SliceKind>) {
    let (a, _, deadline) = scripted(1, vec![vec![VcpuExit::Halted, poweroff()]], log);
    deadline.store(350, Ordering::SeqCst);
    let busy = || vec![exit, exit, exit, poweroff()];
    let (b, _, _) = scripted(2, vec![busy(), busy()], log);
    let mut hv = Hypervisor::new(vec![a, b]);
    let mut board = RecordingBoard { slice_cost: 100, ..Default::default() };
    assert!(hv.run(&mut board).clean());
    let runs = log.runs.lock().unwrap().clone();
    (runs, board.slice_kinds)
}

/// The board's announcements other than the page audits that follow each
/// destroy, after checking that every audit found the counts at baseline.
fn endings(board: &RecordingBoard) -> Vec<&str> {
    let (audits, rest): (Vec<&str>, Vec<&str>) =
        board.announced.iter().map(String::as_str).partition(|l| l.starts_with("page audit after destroying d"));
    for a in audits {
        assert!(a.ends_with(" pages at baseline"), "{a}");
    }
    rest
}

fn spec(on_poweroff: ShutdownAction, on_reboot: ShutdownAction, on_crash: ShutdownAction) -> DomainSpec {
    DomainSpec { on_poweroff, on_reboot, on_crash, ..DomainSpec::new("guest") }
}

#[test]
fn a_reboot_restarts_the_domain_when_its_configuration_says_so() {
    use ShutdownAction::*;
    let mut board = RecordingBoard::default();
    let (a, _, _) = scripted(1, vec![vec![VcpuExit::DomainShutdown(shutdown::REBOOT)]], &board.log);
    let old = a.domain.clone();
    // The rebuilt domain reboots again, then powers off.
    board.rebuilds = VecDeque::from([vec![VcpuExit::DomainShutdown(shutdown::REBOOT)], vec![poweroff()]]);
    let mut hv = Hypervisor::new(vec![a.with_spec(&spec(Preserve, Restart, Destroy))]);
    let verdict = hv.run(&mut board);
    assert_eq!(endings(&board), ["d1: reboot: restarted (restart 1)", "d1: reboot: restarted (restart 2)"]);
    assert_eq!(old.lifecycle(), Lifecycle::Dead, "the first incarnation was torn down");
    assert_eq!(hv.slots()[0].restarts, 2);
    assert!(!Arc::ptr_eq(&old, &hv.slots()[0].domain));
    assert_eq!(verdict.summary_lines(), ["d1: shut down (poweroff)", "verdict PASS"]);
}

#[test]
fn a_destroyed_domain_reports_how_it_ended_and_releases_its_memory() {
    use ShutdownAction::*;
    let mut board = RecordingBoard::default();
    let (a, _, _) = scripted(1, vec![vec![poweroff()]], &board.log);
    let (b, _, _) = scripted(2, vec![vec![VcpuExit::Fault]], &board.log);
    let (d1, d2) = (a.domain.clone(), b.domain.clone());
    assert!(d1.tot_pages() > 0);
    let mut hv = Hypervisor::new(vec![
        a.with_spec(&spec(Destroy, Restart, Preserve)),
        b.with_spec(&spec(Preserve, Preserve, Destroy)),
    ]);
    let verdict = hv.run(&mut board);
    // d2 runs first (the cursor starts after d1v0).
    assert_eq!(endings(&board), ["d2: crashed: destroyed", "d1: poweroff: destroyed"]);
    assert_eq!(board.announced.len(), 4, "a page audit after each destroy");
    assert_eq!((d1.lifecycle(), d2.lifecycle()), (Lifecycle::Dead, Lifecycle::Dead));
    assert_eq!(d1.tot_pages(), 0, "its RAM went back");
    assert_eq!(verdict.summary_lines(), ["d1: shut down (poweroff)", "d2: crashed", "verdict FAIL"]);
}

#[test]
fn preserve_keeps_the_domain_as_it_ended() {
    let mut board = RecordingBoard::default();
    let (a, _, _) = scripted(1, vec![vec![VcpuExit::DomainShutdown(shutdown::REBOOT)]], &board.log);
    let d = a.domain.clone();
    let mut hv = Hypervisor::new(vec![a.with_spec(&DomainSpec::new("guest"))]);
    let verdict = hv.run(&mut board);
    assert!(board.announced.is_empty());
    assert_eq!(d.lifecycle(), Lifecycle::Shutdown(shutdown::REBOOT));
    assert_eq!(verdict.summary_lines(), ["d1: shut down (reboot)", "verdict FAIL"]);
}

#[test]
fn the_debugger_destroys_and_restarts_running_domains() {
    let mut board = RecordingBoard::default();
    // d1 would run for ever (it keeps yielding): the debugger destroys it.
    let forever = || (0..2000).map(|_| VcpuExit::Preempted).collect::<Vec<_>>();
    let (a, _, _) = scripted(1, vec![forever()], &board.log);
    let (b, _, _) = scripted(2, vec![forever()], &board.log);
    let (c, _, _) = scripted(3, vec![vec![poweroff()]], &board.log);
    board.request = Some((1, DomainRequest::Destroy));
    let mut hv = Hypervisor::new(vec![a, b.with_spec(&DomainSpec::new("guest")), c]);
    hv.run_slice(2, 0, &mut board);
    board.poll(&mut hv);
    hv.act_on_endings(&mut board);
    assert_eq!(endings(&board), ["d1: on request: destroyed"]);
    assert_eq!(hv.domain(1).unwrap().lifecycle(), Lifecycle::Dead);
    // Restart needs the configuration: d1 (dead, built by hand) has none.
    hv.debugger.domain_requests.push((1, DomainRequest::Restart));
    hv.act_on_endings(&mut board);
    assert_eq!(endings(&board)[1], "d1: on request: cannot restart: built without a configuration");
    board.rebuilds.push_back(vec![poweroff()]);
    hv.debugger.domain_requests.push((2, DomainRequest::Restart));
    hv.act_on_endings(&mut board);
    assert_eq!(endings(&board)[2], "d2: on request: restarted (restart 1)");
    hv.debugger.domain_requests.push((9, DomainRequest::Destroy));
    hv.act_on_endings(&mut board);
    assert_eq!(endings(&board)[3], "d9: no such domain");
    let verdict = hv.run(&mut board);
    assert_eq!(
        verdict.summary_lines(),
        ["d1: destroyed", "d2: shut down (poweroff)", "d3: shut down (poweroff)", "verdict PASS"]
    );
}

#[test]
fn a_caught_hypercall_stops_at_its_entry_and_at_its_return() {
    let log: Arc<Log> = Arc::default();
    let version = hypercall(hypercall::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0, 0]);
    let (slot, _, _) = scripted(1, vec![vec![version, VcpuExit::Preempted]], &log);
    let mut hv = Hypervisor::new(vec![slot]);
    hv.debugger.exec.sessions[0].catch = Some(vec![hypercall::XEN_VERSION]);
    let mut board = RecordingBoard::default();
    hv.run_slice(0, 0, &mut board);
    assert_eq!(hv.debugger.exec.sessions[0].stops.len(), 1);
    assert_eq!(hv.debugger.exec.sessions[0].stops[0].reason, StopReason::HypercallEntry(hypercall::XEN_VERSION));
    assert!(hv.stopped.load(Ordering::SeqCst), "all-stop at the catchpoint");
    assert!(log.returns.lock().unwrap().is_empty(), "not dispatched before the debugger resumes");
    assert_eq!(hv.debugger.exec.held_calls.len(), 1);
    // Resumed: the held call is dispatched first, without entering the guest.
    hv.debugger.exec.sessions[0].stops.clear();
    hv.stopped.store(false, Ordering::SeqCst);
    let runs = log.runs.lock().unwrap().len();
    hv.run_slice(0, 0, &mut board);
    assert_eq!(log.runs.lock().unwrap().len(), runs, "the guest did not run");
    assert_eq!(log.returns.lock().unwrap().len(), 1);
    assert_eq!(hv.debugger.exec.sessions[0].stops[0].reason, StopReason::HypercallReturn(hypercall::XEN_VERSION));
    // Without the catchpoint the vCPU just runs on.
    hv.debugger.exec.sessions[0].catch = None;
    hv.debugger.exec.sessions[0].stops.clear();
    hv.stopped.store(false, Ordering::SeqCst);
    hv.run_slice(0, 0, &mut board);
    assert!(hv.debugger.exec.sessions[0].stops.is_empty());
}

#[test]
fn a_planted_breakpoint_stops_and_the_guests_own_reaches_the_guest() {
    let log: Arc<Log> = Arc::default();
    let bp = |pc| VcpuExit::Debug(DebugEvent::Breakpoint { pc });
    let (slot, _, _) = scripted(1, vec![vec![bp(0x2010), bp(0x2000), VcpuExit::Preempted]], &log);
    let mut hv = Hypervisor::new(vec![slot]);
    let d = hv.slots()[0].domain.clone();
    PhysMem::new(&d).write_bytes(Gpa(0x2000), &[0x90; 32]).unwrap();
    hv.debugger.exec.insert_breakpoint(&PhysMem::new(&d), 0x2000, &[0xCC]).unwrap();
    let mut board = RecordingBoard::default();
    hv.run_slice(0, 0, &mut board);
    // 0x2010 holds no trap of the debugger's: the guest gets its exception
    // and runs on into the planted one, which stops the system.
    assert_eq!(log.delivered.load(Ordering::SeqCst), 1);
    assert_eq!(hv.debugger.exec.sessions[0].stops.len(), 1);
    assert_eq!(
        (hv.debugger.exec.sessions[0].stops[0].vcpu, hv.debugger.exec.sessions[0].stops[0].reason),
        (0, StopReason::SwBreak)
    );
    assert!(hv.stopped.load(Ordering::SeqCst));
}

#[test]
fn a_step_runs_only_the_stepped_vcpu_and_resumed_threads_only_themselves() {
    let log: Arc<Log> = Arc::default();
    let many = || vec![VcpuExit::Preempted; 8];
    let (slot, _, _) = scripted(1, vec![many(), many(), many()], &log);
    let mut hv = Hypervisor::new(vec![slot]);
    hv.debugger.exec.sessions[0].step = Some((1, 2));
    for _ in 0..3 {
        assert_eq!(hv.pick_next(), Some((0, 2)));
    }
    hv.debugger.exec.sessions[0].step = None;
    hv.debugger.exec.sessions[0].run_only = Some(vec![(1, 0), (1, 2)]);
    let picked: Vec<_> = (0..4).filter_map(|_| hv.pick_next()).map(|p| p.1).collect();
    assert!(picked.iter().all(|v| *v != 1), "vCPU 1 was not resumed: {picked:?}");
    assert!(picked.contains(&0) && picked.contains(&2));
    // A step of a vCPU that cannot run ends where it is.
    hv.debugger.exec.sessions[0].run_only = None;
    let d = hv.slots()[0].domain.clone();
    d.vcpu_block(d.vcpu(1).unwrap());
    hv.debugger.exec.sessions[0].step = Some((1, 1));
    assert_eq!(hv.pick_next(), None);
    assert_eq!(hv.debugger.exec.sessions[0].stops[0].reason, StopReason::Step);
    assert!(hv.debugger.exec.sessions[0].step.is_none());
    let controls = log.controls.lock().unwrap();
    assert!(controls.last().is_some_and(|(v, c)| *v == (1, 1) && !c.single_step), "the step is disarmed");
}
