//! Lantern's embedded gdb stub: a `gdbstub` target over the core's model of
//! domains and vCPUs (threads = vCPUs), naming no architecture, driven as a
//! non-blocking state machine from the board's scheduler loop.
//!
//! The board owns a [`GdbStub`] and calls [`GdbStub::poll`] on every loop
//! iteration (`sched::Board::poll`) with a [`Transport`] over its dedicated
//! line (virtio-serial, or a UART). Semantics:
//!
//! * **All-stop.** While gdb holds the system (after it attaches, after a
//!   Ctrl-C, or from the start with [`GdbStub::wait_for_gdb`]) the stub sets
//!   `Hypervisor::stopped`, so the scheduler runs nothing; `continue`,
//!   `detach` and `kill` resume everything.
//! * **Execution control.** Breakpoints (planted and hidden by the core's
//!   `debug` module), hardware points, single-step and hypercall
//!   catchpoints are armed through [`HvTarget`]; the scheduler records the
//!   stops in `DebuggerState::exec` and the stub reports each on the thread
//!   that stopped. A session's end takes everything it armed out again.
//! * **Hang-up.** A transport that sees its client go away (a virtio-serial
//!   port's host side closing) reports it ([`Transport::take_hangup`]): the
//!   session ends and everything runs again, as on a detach. A serial line
//!   cannot tell, so a new session is also recognised by its first packets:
//!   `qSupported` always starts one (and stops the system), and so does `?`
//!   while the system runs.
//! * **Robust framing.** Bytes go through [`framing::Framer`] first: line
//!   noise is dropped, a bad checksum is answered with `-`, a truncated or
//!   oversized packet is dropped, and a packet `gdbstub` cannot parse gets an
//!   error reply; none of it stops or crashes the hypervisor.

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

mod fast_read;
pub mod framing;
pub mod json;
pub mod monitor;
pub mod target;
pub mod thread_id;

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use gdbstub::common::{Signal, Tid};
use gdbstub::conn::Connection;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{GdbStubBuilder, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::MultiThreadBase;

use gdbstub::target::ext::breakpoints::WatchKind;
use gdbstub::target::ext::catch_syscalls::CatchSyscallPosition;
use lantern_common::debug::{HwKind, StopReason};
use lantern_common::domain::Lifecycle;
use lantern_common::memory::DomId;
use lantern_common::sched::Hypervisor;

pub use framing::FrameStats;
pub use target::HvTarget;
pub use thread_id::{split_tid, tid_of, TIDS_PER_DOMAIN};

/// Largest packet body accepted (and `PacketSize` advertised, less framing):
/// large enough that gdb reads memory in 16 KiB requests (fewer round trips,
/// each of which costs the same fixed time on the line).
pub const MAX_PACKET: usize = 32 * 1024;

/// Most bytes one `m` reply carries: its hex fills the `PacketSize`
/// advertised (gdb's own largest request); a longer read is cut to it.
pub const MAX_READ: usize = (MAX_PACKET + 4) / 2;

/// Bytes taken from the line per poll while guests run, so a flood of input
/// cannot starve them; while the system is stopped the stub drains all.
pub const RUNNING_POLL_BUDGET: usize = 4096;

/// The byte pipe to gdb: a board implements it over its virtio-serial port
/// or its dedicated UART.
pub trait Transport {
    /// The next received byte, if one is waiting (never blocks).
    fn read_byte(&mut self) -> Option<u8>;
    /// Sends bytes (may block until the UART has room).
    fn write_all(&mut self, data: &[u8]);
    /// Pushes out anything buffered.
    fn flush(&mut self) {}
    /// Whether the client went away (the host side of the line closed)
    /// since the last call, after every byte it sent has been read. A line
    /// that cannot tell (a UART) never says so.
    fn take_hangup(&mut self) -> bool {
        false
    }
}

/// `gdbstub`'s connection: output collects here and is handed to the
/// [`Transport`] at the end of each packet.
#[derive(Default)]
struct OutBuf(Vec<u8>);

impl Connection for OutBuf {
    type Error = ();

    fn write(&mut self, byte: u8) -> Result<(), ()> {
        self.0.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), ()> {
        self.0.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ()> {
        Ok(())
    }
}

type Machine = GdbStubStateMachine<'static, HvTarget, OutBuf>;

/// Counters describing what the stub has seen (for tests and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StubStats {
    /// Framing counters.
    pub frames: FrameStats,
    /// gdb sessions started (`qSupported`, or `?` while running).
    pub sessions: u64,
    /// Packets rejected with an error (by `gdbstub`, its engine then
    /// rebuilt, or a memory read the stub could not parse): well framed,
    /// but their command could not be parsed or handled.
    pub engine_errors: u64,
    /// Packets answered with the empty reply: commands `gdbstub` does not
    /// know or the target does not support (gdb probes with some, e.g.
    /// `vMustReplyEmpty`, on every attach).
    pub unknown: u64,
    /// Replies resent because gdb answered `-`.
    pub resent: u64,
    /// Times the transport reported that the client went away.
    pub hangups: u64,
    /// Memory reads the stub answered itself (see `fast_read`).
    pub fast_reads: u64,
}

/// The empty reply: what an unknown packet gets.
const EMPTY_REPLY: &[u8] = b"$#00";

impl StubStats {
    /// Malformed packets: a bad checksum, cut off, oversized, or rejected by
    /// the engine.
    pub fn malformed(&self) -> u64 {
        self.frames.bad_checksum + self.frames.truncated + self.frames.oversized + self.engine_errors
    }

    /// The counters by name, in the order `monitor stats` shows them.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        alloc::vec![
            ("packets", self.frames.packets),
            ("sessions", self.sessions),
            ("unknown", self.unknown),
            ("malformed", self.malformed()),
            ("bad_checksum", self.frames.bad_checksum),
            ("truncated", self.frames.truncated),
            ("oversized", self.frames.oversized),
            ("rejected", self.engine_errors),
            ("garbage_bytes", self.frames.garbage),
            ("resent", self.resent),
        ]
    }
}

/// The embedded gdb stub.
pub struct GdbStub {
    /// The protocol engine; built on the first poll (building needs the
    /// target, which exists only while a poll borrows the hypervisor).
    machine: Option<Machine>,
    framer: Framer,
    /// Output waiting to go to the transport.
    pending: Vec<u8>,
    /// The last reply (without its `+`), for a `-` from gdb.
    last_reply: Vec<u8>,
    /// A gdb session is attached (between its `qSupported` and its detach).
    session: bool,
    /// `--wait-gdb`: hold the system until gdb attaches.
    hold_for_attach: bool,
    /// Packets that set up the session (`qSupported`, `Hg`, `Hc`), replayed
    /// into a rebuilt engine so it formats thread ids the same way.
    replay: Vec<Vec<u8>>,
    /// Domain lifecycles when gdb last resumed (to report a crash as a stop).
    at_resume: Vec<(u16, Lifecycle)>,
    /// The thread gdb's last `Hg` selected for memory reads (as the
    /// engine sees it), when the stub answers `m` itself.
    mem_tid: Option<Tid>,
    stats: StubStats,
    last_error: alloc::string::String,
    /// The domain this session debugs on its own (`None`: the whole system).
    scope: Option<DomId>,
}

use framing::{Event, Framer};

impl Default for GdbStub {
    fn default() -> Self {
        Self::new()
    }
}

impl GdbStub {
    /// A stub with no session; the system runs until gdb attaches.
    pub fn new() -> Self {
        GdbStub {
            machine: None,
            framer: Framer::new(MAX_PACKET),
            pending: Vec::new(),
            last_reply: Vec::new(),
            session: false,
            hold_for_attach: false,
            replay: Vec::new(),
            at_resume: Vec::new(),
            mem_tid: None,
            stats: StubStats::default(),
            last_error: alloc::string::String::new(),
            scope: None,
        }
    }

    /// A stub for one domain's own session (its own line): it sees only
    /// that domain's vCPUs, and stopping it stops only that domain.
    pub fn for_domain(domain: DomId) -> Self {
        GdbStub { scope: Some(domain), ..Self::new() }
    }

    /// The domain this stub debugs on its own, or `None` for the
    /// whole-system session.
    pub fn scope(&self) -> Option<DomId> {
        self.scope
    }

    /// `--wait-gdb`: keep every vCPU stopped until gdb attaches and
    /// continues. Call before the scheduler loop starts.
    pub fn wait_for_gdb(&mut self, hv: &Hypervisor) {
        self.hold_for_attach = true;
        hv.stopped.store(true, Ordering::Release);
    }

    /// Whether the stub holds the system stopped.
    pub fn holding(&self) -> bool {
        self.hold_for_attach || (self.session && !matches!(self.machine, Some(GdbStubStateMachine::Running(_))))
    }

    /// Whether a gdb session is attached.
    pub fn attached(&self) -> bool {
        self.session
    }

    /// Counters.
    pub fn stats(&self) -> StubStats {
        StubStats { frames: self.framer.stats, ..self.stats }
    }

    /// The last error of the protocol engine (for diagnostics).
    pub fn last_engine_error(&self) -> &str {
        &self.last_error
    }

    /// Services the serial line: reads what gdb sent, answers it, and sets
    /// `hv.stopped` to whether the debugger holds the system. Never blocks
    /// waiting for input.
    pub fn poll(&mut self, hv: &mut Hypervisor, io: &mut dyn Transport) {
        // The requests on this line are this session's.
        hv.debugger.serving = hv.debugger.exec.session_for(self.scope);
        // The target is the hypervisor itself, borrowed for this poll.
        let t = HvTarget::borrow(hv);
        if self.machine.is_none() {
            self.machine = fresh_machine(t);
        }
        self.check_stop_events(t);
        let mut n = 0;
        loop {
            // The budget is looked at again after a hang-up: the system may
            // have been released.
            let budget = if self.holding() { usize::MAX } else { RUNNING_POLL_BUDGET };
            while n < budget {
                let Some(b) = io.read_byte() else { break };
                n += 1;
                if let Some(ev) = self.framer.push(b) {
                    self.on_event(t, ev);
                }
                if !self.pending.is_empty() && !self.framer.in_packet() {
                    io.write_all(&self.pending);
                    self.pending.clear();
                }
            }
            // Everything the departed client sent has been read: end its
            // session, then read what the next one sent.
            if !io.take_hangup() {
                break;
            }
            self.hang_up(t);
        }
        if !self.pending.is_empty() {
            io.write_all(&self.pending);
            self.pending.clear();
        }
        io.flush();
        let holding = self.holding();
        match self.scope {
            None => t.hv().stopped.store(holding, Ordering::Release),
            Some(_) => t.debugger().session_mut().holding = holding,
        }
    }

    /// While gdb waits for the system to stop: a domain that crashed, or
    /// every domain having finished, is reported as a stop.
    fn check_stop_events(&mut self, t: &mut HvTarget) {
        if !self.session {
            // Nobody to tell: a stop recorded as a session ended is void.
            t.debugger().session_mut().stops.clear();
            return;
        }
        if !matches!(self.machine, Some(GdbStubStateMachine::Running(_))) {
            return;
        }
        if let Some(reason) = self.debug_stop(t) {
            self.report_stop(t, reason);
            return;
        }
        let doms: Vec<_> = t.hv().domains().filter(|d| self.scope.is_none_or(|s| s == d.id)).cloned().collect();
        let crashed = doms.iter().find(|d| {
            d.lifecycle() == Lifecycle::Crashed
                && !self.at_resume.iter().any(|(id, l)| *id == d.id && *l == Lifecycle::Crashed)
        });
        let all_done_now = !doms.is_empty() && doms.iter().all(|d| d.is_finished());
        let all_done_before = self.at_resume.iter().all(|(_, l)| *l != Lifecycle::Running);
        let reason = match crashed {
            Some(d) => tid_of(d.id, 0).map(|tid| (tid, Signal::SIGSEGV)),
            None if all_done_now && !all_done_before => t.first_tid().map(|tid| (tid, Signal::SIGTRAP)),
            None => None,
        };
        let Some((tid, signal)) = reason else { return };
        self.report_stop(t, MultiThreadStopReason::SignalWithThread { tid, signal });
    }

    /// Reports a stop gdb waits for. The stop reply is the last packet
    /// sent, so a `-` for it resends it (not the reply before it).
    fn report_stop(&mut self, t: &mut HvTarget, reason: MultiThreadStopReason<u64>) {
        if let Some(GdbStubStateMachine::Running(m)) = self.machine.take() {
            let start = self.pending.len();
            let r = m.report_stop(t, reason);
            self.settle(t, r.ok());
            if self.pending.len() > start {
                self.last_reply = self.pending[start..].to_vec();
            }
        }
    }

    /// The oldest stop the scheduler recorded for the debugger, as gdb's
    /// stop reason on the thread that stopped.
    fn debug_stop(&mut self, t: &mut HvTarget) -> Option<MultiThreadStopReason<u64>> {
        let stops = &mut t.debugger().session_mut().stops;
        while !stops.is_empty() {
            let s = stops.remove(0);
            let Some(tid) = tid_of(s.domain, s.vcpu) else { continue };
            t.debugger().session_mut().last_stop = Some(s);
            return Some(match s.reason {
                StopReason::SwBreak => MultiThreadStopReason::SwBreak(tid),
                StopReason::HwBreak => MultiThreadStopReason::HwBreak(tid),
                StopReason::Watch { kind, addr } => {
                    let kind = match kind {
                        HwKind::Read => WatchKind::Read,
                        HwKind::Access => WatchKind::ReadWrite,
                        HwKind::Write | HwKind::Execute => WatchKind::Write,
                    };
                    MultiThreadStopReason::Watch { tid, kind, addr }
                }
                // gdb takes a SIGTRAP on the thread it stepped as the step's end.
                StopReason::Step => MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGTRAP },
                StopReason::HypercallEntry(nr) => MultiThreadStopReason::CatchSyscall {
                    tid: Some(tid),
                    number: nr,
                    position: CatchSyscallPosition::Entry,
                },
                StopReason::HypercallReturn(nr) => MultiThreadStopReason::CatchSyscall {
                    tid: Some(tid),
                    number: nr,
                    position: CatchSyscallPosition::Return,
                },
            });
        }
        None
    }

    fn on_event(&mut self, t: &mut HvTarget, ev: Event) {
        match ev {
            Event::Ack => {}
            Event::Nack => {
                if !self.last_reply.is_empty() {
                    self.stats.resent += 1;
                    self.pending.extend_from_slice(&self.last_reply);
                }
            }
            Event::BadChecksum | Event::Oversized => self.pending.push(b'-'),
            Event::Interrupt => {
                // Ctrl-C only means something while gdb waits for a stop;
                // stray 0x03 bytes on an idle line must not stop the system.
                if self.session && matches!(self.machine, Some(GdbStubStateMachine::Running(_))) {
                    // The stop reply Ctrl-C brings is the last packet sent
                    // (what a `-` then resends).
                    let start = self.pending.len();
                    self.feed(t, &[0x03]);
                    if self.pending.len() > start {
                        self.last_reply = self.pending[start..].to_vec();
                    }
                }
            }
            Event::Packet => {
                let body = self.framer.body().to_vec();
                self.on_packet(t, &body);
            }
        }
    }

    fn on_packet(&mut self, t: &mut HvTarget, body: &[u8]) {
        let new_session =
            body.starts_with(b"qSupported") || (body == b"?" && !self.holding() && !self.session_running());
        if new_session {
            // A domain's own session takes its domain over from the
            // whole-system one; then whatever an earlier client armed and
            // left behind goes.
            t.debugger().session_mut().attached = true;
            if let Some(dom) = self.scope {
                t.debugger().exec.hand_over(dom);
            }
            t.end_debugging();
            self.stats.sessions += 1;
            self.session = true;
            self.hold_for_attach = false;
            self.replay.clear();
            self.mem_tid = None;
            self.machine = fresh_machine(t);
        }
        if body.starts_with(b"qRcmd,") {
            // `monitor stats` reads the counters from the debugger state.
            t.debugger().transport_counters = self.stats().named();
        }
        let capped;
        let mut body = body;
        if body.first() == Some(&b'm') {
            match fast_read::parse_m(body) {
                // What the stub cannot parse the engine must not read
                // either: it would take a length the stub never saw.
                None => return self.reply_error(),
                // A reply is built whole in memory, and the engine reads
                // chunk after chunk (its address sum overflowing past the
                // top of the address space): a read is cut to what a reply
                // of the advertised packet size holds. The protocol lets a
                // reply be short; gdb asks again for the rest.
                Some((addr, len)) if len > MAX_READ => {
                    capped = alloc::format!("m{addr:x},{MAX_READ:x}").into_bytes();
                    body = &capped;
                }
                Some(_) => {}
            }
        }
        if self.read_memory(t, body) {
            return;
        }
        let frame = frame(body);
        let start = self.pending.len();
        if self.feed(t, &frame) {
            let reply = &self.pending[start..];
            let reply = reply.strip_prefix(b"+").unwrap_or(reply);
            if reply == EMPTY_REPLY {
                self.stats.unknown += 1;
            }
            self.last_reply = reply.to_vec();
            self.accepted(t, body);
        } else {
            // The engine rejected the packet and is gone: answer with an
            // error and rebuild it with the session's settings.
            self.pending.truncate(start);
            self.reply_error();
            self.rebuild(t);
        }
    }

    /// Bookkeeping for a packet the engine took: the session's settings
    /// to replay into a rebuilt engine, and the thread `Hg` selected. Only
    /// here: a rejected packet replayed would kill every rebuilt engine.
    fn accepted(&mut self, t: &mut HvTarget, body: &[u8]) {
        if body.starts_with(b"qSupported") || body.starts_with(b"Hg") || body.starts_with(b"Hc") {
            let key = &body[..2];
            self.replay.retain(|p| !p.starts_with(key));
            self.replay.push(body.to_vec());
        }
        if body.starts_with(b"Hg") {
            // "Any" is the first thread, as the engine picks it. Breakpoints
            // live in the selected thread's domain.
            self.mem_tid = fast_read::parse_hg(body).and_then(|tid| tid.or_else(|| t.first_tid()));
            // A thread id past the domain ids names no vCPU (not one of the
            // domain its low 16 bits would give).
            let selected = self.mem_tid.map(split_tid).and_then(|(d, v)| Some((u16::try_from(d).ok()?, v)));
            t.debugger().session_mut().selected = selected;
        }
    }

    /// Answers the packet just received with `E01` (malformed).
    fn reply_error(&mut self) {
        self.stats.engine_errors += 1;
        self.pending.push(b'+');
        self.last_reply = frame_vec(b"E01");
        self.pending.extend_from_slice(&self.last_reply);
    }

    /// Answers an `m` packet without the engine (see [`fast_read`]) when the
    /// system is stopped in a session and the read succeeds; false leaves
    /// the packet to the engine.
    fn read_memory(&mut self, t: &mut HvTarget, body: &[u8]) -> bool {
        let (Some(tid), Some((addr, len))) = (self.mem_tid, fast_read::parse_m(body)) else { return false };
        if !self.session
            || !matches!(self.machine, Some(GdbStubStateMachine::Idle(_)))
            || len == 0
            // gdb asks at most what fits its PacketSize in hex; longer reads
            // were cut to that (`on_packet`).
            || len > MAX_READ
        {
            return false;
        }
        let mut data = alloc::vec![0; len];
        let n = match t.read_addrs(addr, &mut data, tid) {
            Ok(n) if n > 0 => n.min(len),
            _ => return false,
        };
        self.pending.push(b'+');
        let start = self.pending.len();
        fast_read::encode_hex_reply(&data[..n], &mut self.pending);
        self.last_reply = self.pending[start..].to_vec();
        self.stats.fast_reads += 1;
        true
    }

    /// Whether gdb resumed the system and waits for a stop.
    fn session_running(&self) -> bool {
        self.session && matches!(self.machine, Some(GdbStubStateMachine::Running(_)))
    }

    /// Feeds bytes to the engine; false if it failed (and is gone).
    fn feed(&mut self, t: &mut HvTarget, bytes: &[u8]) -> bool {
        for &b in bytes {
            let Some(m) = self.machine.take() else { return false };
            let r = match m {
                GdbStubStateMachine::Idle(m) => m.incoming_data(t, b),
                GdbStubStateMachine::Running(m) => m.incoming_data(t, b),
                GdbStubStateMachine::CtrlCInterrupt(_) | GdbStubStateMachine::Disconnected(_) => {
                    // `settle` never leaves these states in place.
                    return false;
                }
            };
            match r {
                Ok(m) => {
                    if !self.settle(t, Some(m)) {
                        return false;
                    }
                }
                Err(e) => {
                    log::debug!("gdb: engine error {e:?}");
                    self.last_error = alloc::format!("{e:?}");
                    return false;
                }
            }
        }
        true
    }

    /// Takes the engine's new state, moving it on from the states that need
    /// the stub's action; drains its output. False if the engine failed.
    fn settle(&mut self, t: &mut HvTarget, m: Option<Machine>) -> bool {
        let Some(mut m) = m else { return false };
        loop {
            self.pending.append(&mut conn_of(&mut m).0);
            m = match m {
                GdbStubStateMachine::CtrlCInterrupt(c) => {
                    // gdb interrupted: everything stops; report it on the
                    // first vCPU.
                    let reason = t
                        .first_tid()
                        .map(|tid| MultiThreadStopReason::SignalWithThread { tid, signal: Signal::SIGINT });
                    t.debugger().session_mut().resume_requested = false;
                    match c.interrupt_handled(t, reason) {
                        Ok(m) => m,
                        Err(_) => return false,
                    }
                }
                GdbStubStateMachine::Disconnected(d) => {
                    // detach, kill or a session that ended: run again, with
                    // nothing of the session left in the guests.
                    self.end_session(t);
                    d.return_to_idle()
                }
                GdbStubStateMachine::Running(r) => {
                    if core::mem::take(&mut t.debugger().session_mut().resume_requested) {
                        self.at_resume = t.hv().domains().map(|d| (d.id, d.lifecycle())).collect();
                    }
                    self.machine = Some(GdbStubStateMachine::Running(r));
                    return true;
                }
                idle @ GdbStubStateMachine::Idle(_) => {
                    self.machine = Some(idle);
                    return true;
                }
            };
        }
    }

    /// The session is over (detach, kill, or the client went away): nothing
    /// holds the system any more.
    fn end_session(&mut self, t: &mut HvTarget) {
        // Breakpoints come out of the guests, hardware points, steps and
        // catchpoints are disarmed.
        t.end_debugging();
        t.debugger().session_mut().attached = false;
        self.session = false;
        self.replay.clear();
        self.mem_tid = None;
    }

    /// The transport says the client went away: its session ends as on a
    /// detach and everything runs again; its half-sent packet and unsent
    /// replies are dropped, and the next client meets a fresh engine.
    /// Without a session (e.g. a client that closed before `qSupported`)
    /// only the line's state is reset: `--wait-gdb` keeps holding.
    fn hang_up(&mut self, t: &mut HvTarget) {
        self.stats.hangups += 1;
        if self.session {
            log::debug!("gdb: the client went away; resuming everything");
            self.end_session(t);
        }
        t.debugger().session_mut().resume_requested = false;
        let counted = self.framer.stats;
        self.framer = Framer::new(MAX_PACKET);
        self.framer.stats = counted;
        self.pending.clear();
        self.last_reply.clear();
        self.machine = fresh_machine(t);
    }

    /// A new engine carrying the current session's settings.
    fn rebuild(&mut self, t: &mut HvTarget) {
        self.machine = fresh_machine(t);
        let replay = core::mem::take(&mut self.replay);
        let keep = self.pending.len();
        for p in &replay {
            self.feed(t, &frame(p));
        }
        self.pending.truncate(keep);
        self.replay = replay;
    }
}

fn conn_of(m: &mut Machine) -> &mut OutBuf {
    match m {
        GdbStubStateMachine::Idle(i) => i.borrow_conn(),
        GdbStubStateMachine::Running(i) => i.borrow_conn(),
        GdbStubStateMachine::CtrlCInterrupt(i) => i.borrow_conn(),
        GdbStubStateMachine::Disconnected(i) => i.borrow_conn(),
    }
}

fn fresh_machine(target: &mut HvTarget) -> Option<Machine> {
    match GdbStubBuilder::new(OutBuf::default()).packet_buffer_size(MAX_PACKET + 4).build() {
        Ok(stub) => match stub.run_state_machine(target) {
            Ok(m) => Some(m),
            Err(e) => {
                log::error!("gdb: cannot start the stub: {e:?}");
                None
            }
        },
        Err(e) => {
            log::error!("gdb: cannot build the stub: {e:?}");
            None
        }
    }
}

/// `$body#cs`.
fn frame(body: &[u8]) -> Vec<u8> {
    frame_vec(body)
}

/// Frames a packet body with its checksum.
pub fn frame_vec(body: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut v = Vec::with_capacity(body.len() + 4);
    v.push(b'$');
    v.extend_from_slice(body);
    v.push(b'#');
    v.push(HEX[(sum >> 4) as usize]);
    v.push(HEX[(sum & 15) as usize]);
    v
}
