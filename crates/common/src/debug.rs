//! The debugger's hold on guest execution, kept by the core so that every
//! board and every stub session sees one state: the software breakpoints it
//! planted (and hides from memory reads), its hardware breakpoints and
//! watchpoints, the vCPU it single-steps, its hypercall catchpoints, and the
//! stop events the scheduler records for the stub to report.
//!
//! The arch backends only arm what a [`DebugControl`] asks for and report a
//! [`DebugEvent`]; which planted breakpoint was hit, whether a trap was the
//! guest's own, and which stop to report are decided here, for every arch.

use alloc::vec::Vec;

use crate::addr::Gpa;
use crate::arch::ArchVcpu;
pub use crate::arch::{DebugControl, DebugEvent, HwKind, HwPoint};
use crate::domain::Domain;
use crate::guest_memory::{GuestAddress, GuestMemory, PhysMem};
use crate::memory::DomId;
use xen_abi::errno::{Errno, XenResult};

/// Longest breakpoint instruction of any arch (arm64's `BRK` is 4 bytes).
pub const MAX_TRAP_LEN: usize = 4;
/// The most software breakpoints planted at once, over all sessions: far
/// more than any debugging asks for (an `rbreak` over a whole kernel plants
/// tens of thousands), and a bound on what a client's `Z0`s can take of the
/// hypervisor's heap (about 40 bytes each).
pub const MAX_BREAKPOINTS: usize = 65_536;

/// A software breakpoint the debugger planted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwBreakpoint {
    /// The domain whose memory holds it.
    pub domain: DomId,
    /// The address gdb gave (guest-virtual, or guest-physical with
    /// `monitor phys on`).
    pub addr: u64,
    /// Where the trap instruction sits.
    pub gpa: Gpa,
    /// The guest's own bytes under it.
    pub saved: [u8; MAX_TRAP_LEN],
    /// Length of the trap instruction.
    pub len: usize,
}

/// Why the debugger stopped the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A planted software breakpoint.
    SwBreak,
    /// A hardware breakpoint.
    HwBreak,
    /// A watchpoint of `kind` on the data at `addr`.
    Watch {
        /// The watchpoint's kind.
        kind: HwKind,
        /// The watched address.
        addr: u64,
    },
    /// A single-step completed.
    Step,
    /// A hypercall `nr` is about to be dispatched.
    HypercallEntry(u64),
    /// Hypercall `nr` has returned (its result is in the guest's register).
    HypercallReturn(u64),
}

impl StopReason {
    /// Name used by tools.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::SwBreak => "breakpoint",
            StopReason::HwBreak => "hardware-breakpoint",
            StopReason::Watch { .. } => "watchpoint",
            StopReason::Step => "step",
            StopReason::HypercallEntry(_) => "hypercall-entry",
            StopReason::HypercallReturn(_) => "hypercall-return",
        }
    }
}

impl HwKind {
    /// Name used by tools.
    pub fn name(self) -> &'static str {
        match self {
            HwKind::Execute => "execute",
            HwKind::Write => "write",
            HwKind::Read => "read",
            HwKind::Access => "access",
        }
    }
}

/// A stop waiting to be reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugStop {
    /// The domain of the vCPU that stopped.
    pub domain: DomId,
    /// The vCPU.
    pub vcpu: u32,
    /// Why.
    pub reason: StopReason,
}

/// A hypercall held at its entry catchpoint: dispatched when its vCPU runs
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldCall {
    /// The caller's domain.
    pub domain: DomId,
    /// The caller.
    pub vcpu: u32,
    /// Hypercall number.
    pub nr: u64,
    /// Its arguments, as read at the call.
    pub args: [u64; 6],
}

/// One debugger session's own controls. Session 0 is the whole-system
/// session; the others each debug one domain on their own line. A domain
/// belongs to the attached session scoped to it, else to the whole-system
/// session: its stops are reported there, and only that session's step,
/// resume set and catchpoints apply to its vCPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    /// The domain it debugs on its own; `None` for the whole system.
    pub scope: Option<DomId>,
    /// A scoped session is attached (it owns its domain meanwhile).
    pub attached: bool,
    /// A scoped session holds its domain stopped (the whole-system
    /// session's hold is `Hypervisor::stopped`, which stops every domain).
    pub holding: bool,
    /// Addresses are guest-physical (`monitor phys on`) instead of the
    /// selected vCPU's guest-virtual ones.
    pub physical_addresses: bool,
    /// The session resumed its domains and waits for the next stop.
    pub resume_requested: bool,
    /// The vCPU whose address space breakpoints are planted in (the
    /// session's selected thread).
    pub selected: Option<(DomId, u32)>,
    /// The vCPU being single-stepped: while set, only it runs of the
    /// session's domains.
    pub step: Option<(DomId, u32)>,
    /// The only vCPUs the session resumed (scheduler locking, and gdb's
    /// step over a breakpoint, resume single threads); `None`: all of its
    /// vCPUs run.
    pub run_only: Option<Vec<(DomId, u32)>>,
    /// The vCPUs given a resume action by the request being assembled.
    pub resumed: Vec<(DomId, u32)>,
    /// Hypercall catchpoints: `None` off, `Some(empty)` every hypercall,
    /// otherwise the numbers caught.
    pub catch: Option<Vec<u64>>,
    /// Stops waiting to be reported, oldest first.
    pub stops: Vec<DebugStop>,
    /// The stop last reported to the debugger.
    pub last_stop: Option<DebugStop>,
}

impl Session {
    /// Whether hypercall `nr` is caught.
    pub fn catches(&self, nr: u64) -> bool {
        self.catch.as_ref().is_some_and(|list| list.is_empty() || list.contains(&nr))
    }

    /// Forgets the step, resume set, catchpoints and stops (the session
    /// ended or started afresh); the line's own settings stay.
    fn reset(&mut self) {
        self.selected = None;
        self.step = None;
        self.run_only = None;
        self.resumed.clear();
        self.catch = None;
        self.stops.clear();
        self.last_stop = None;
        self.resume_requested = false;
        self.holding = false;
    }
}

/// The whole-system session's index.
pub const SYSTEM_SESSION: usize = 0;

/// The debugger's execution controls (part of `sched::DebuggerState`):
/// what is armed in the domains, and every session's own controls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debugger {
    /// Planted software breakpoints.
    pub breakpoints: Vec<SwBreakpoint>,
    /// Hardware points, per domain, in the order they were inserted.
    pub hw_points: Vec<(DomId, HwPoint)>,
    /// Hypercalls held at their entry catchpoint.
    pub held_calls: Vec<HeldCall>,
    /// The sessions, [`SYSTEM_SESSION`] first (always there).
    pub sessions: Vec<Session>,
}

impl Default for Debugger {
    fn default() -> Self {
        Debugger {
            breakpoints: Vec::new(),
            hw_points: Vec::new(),
            held_calls: Vec::new(),
            sessions: alloc::vec![Session::default()],
        }
    }
}

impl Debugger {
    /// The index of the session scoped to `scope` (`None`: the whole
    /// system), made on first use.
    pub fn session_for(&mut self, scope: Option<DomId>) -> usize {
        if let Some(i) = self.sessions.iter().position(|s| s.scope == scope) {
            return i;
        }
        self.sessions.push(Session { scope, ..Session::default() });
        self.sessions.len() - 1
    }

    /// The session `domain` belongs to: the attached one scoped to it, else
    /// the whole-system session.
    pub fn owner(&self, domain: DomId) -> usize {
        self.sessions.iter().position(|s| s.attached && s.scope == Some(domain)).unwrap_or(SYSTEM_SESSION)
    }

    /// The session `domain` belongs to.
    pub fn owner_session(&self, domain: DomId) -> &Session {
        &self.sessions[self.owner(domain)]
    }

    /// Whether the session of `domain` lets vCPU `vcpu` run: it does not
    /// hold the domain, and the vCPU is the one it steps, or one it resumed.
    pub fn may_run(&self, domain: DomId, vcpu: u32) -> bool {
        let s = self.owner_session(domain);
        !s.holding
            && s.step.is_none_or(|st| st == (domain, vcpu))
            && s.run_only.as_ref().is_none_or(|only| only.contains(&(domain, vcpu)))
    }

    /// What vCPU `vcpu` of `domain` must arm.
    pub fn control_for(&self, domain: DomId, vcpu: u32) -> DebugControl {
        DebugControl {
            single_step: self.owner_session(domain).step == Some((domain, vcpu)),
            trap_breakpoints: self.breakpoints.iter().any(|b| b.domain == domain),
            hw_points: self.hw_points.iter().filter(|(d, _)| *d == domain).map(|(_, p)| *p).collect(),
        }
    }

    /// Whether hypercall `nr` of `domain` is caught (by its session).
    pub fn catches(&self, domain: DomId, nr: u64) -> bool {
        self.owner_session(domain).catches(nr)
    }

    /// Records a stop with the session `domain` belongs to; returns that
    /// session's index. A completed step is over.
    pub fn record(&mut self, domain: DomId, vcpu: u32, reason: StopReason) -> usize {
        let i = self.owner(domain);
        let s = &mut self.sessions[i];
        if reason == StopReason::Step || s.step == Some((domain, vcpu)) {
            s.step = None;
        }
        s.stops.push(DebugStop { domain, vcpu, reason });
        i
    }

    /// The held hypercall of `(domain, vcpu)`, taken out.
    pub fn take_held_call(&mut self, domain: DomId, vcpu: u32) -> Option<HeldCall> {
        let i = self.held_calls.iter().position(|c| c.domain == domain && c.vcpu == vcpu)?;
        Some(self.held_calls.remove(i))
    }

    /// The planted breakpoint of `domain` at `gpa`, if any.
    pub fn breakpoint_at(&self, domain: DomId, gpa: Gpa) -> Option<&SwBreakpoint> {
        self.breakpoints.iter().find(|b| b.domain == domain && b.gpa == gpa)
    }

    /// Plants `trap` at `addr` of `mem`'s space (a domain's guest-virtual
    /// space through one of its vCPUs, or its guest-physical one), saving the
    /// bytes under it. Planting twice at one place is one breakpoint.
    pub fn insert_breakpoint<M: GuestMemory>(&mut self, mem: &M, addr: u64, trap: &[u8]) -> XenResult<()> {
        if trap.is_empty() || trap.len() > MAX_TRAP_LEN {
            return Err(Errno::EOPNOTSUPP);
        }
        let domain = mem.domain();
        // A debugger plants breakpoints in read-only code too (see `poke`).
        let gpa = mem.resolve(addr, false)?;
        if self.breakpoint_at(domain.id, gpa).is_some() {
            return Ok(());
        }
        // A trap may not straddle a page: the bytes after the first page
        // could be anywhere in guest-physical memory.
        if (gpa.0 & 0xfff) + trap.len() as u64 > 0x1000 {
            return Err(Errno::EINVAL);
        }
        if self.breakpoints.len() >= MAX_BREAKPOINTS {
            return Err(Errno::ENOSPC);
        }
        let phys = PhysMem::new(domain);
        let mut saved = [0u8; MAX_TRAP_LEN];
        phys.read_bytes(gpa, &mut saved[..trap.len()])?;
        phys.write_bytes(gpa, trap)?;
        self.breakpoints.push(SwBreakpoint { domain: domain.id, addr, gpa, saved, len: trap.len() });
        Ok(())
    }

    /// Removes the breakpoint gdb planted at `addr` in `domain`, putting the
    /// guest's bytes back. Removing one that is not there is not an error
    /// (gdb removes what a restarted domain no longer has).
    pub fn remove_breakpoint(&mut self, domain: &Domain, addr: u64) -> XenResult<()> {
        let Some(i) = self.breakpoints.iter().position(|b| b.domain == domain.id && b.addr == addr) else {
            return Ok(());
        };
        let b = self.breakpoints.remove(i);
        PhysMem::new(domain).write_bytes(b.gpa, &b.saved[..b.len])
    }

    /// Session `session` ended (or starts afresh): the breakpoints and
    /// hardware points in its domains come out — the guests' bytes go back
    /// into the domains `find` still knows — and its step, resume set,
    /// catchpoints and stops are forgotten. Its domains are its scope, or
    /// for the whole-system session every domain no scoped session owns.
    /// Held hypercalls stay held until their vCPU runs; nothing is lost.
    pub fn end_session<'a>(&mut self, session: usize, find: impl Fn(DomId) -> Option<&'a Domain>) {
        let scope = self.sessions.get(session).and_then(|s| s.scope);
        let mine = |d: DomId, me: &Debugger| match scope {
            Some(s) => d == s,
            None => me.owner(d) == SYSTEM_SESSION,
        };
        let (gone, kept): (Vec<_>, Vec<_>) =
            core::mem::take(&mut self.breakpoints).into_iter().partition(|b| mine(b.domain, self));
        self.breakpoints = kept;
        for b in gone {
            if let Some(d) = find(b.domain) {
                // A domain rebuilt meanwhile has other memory; its bytes are
                // not ours to restore (a failed write changes nothing).
                let _ = PhysMem::new(d).write_bytes(b.gpa, &b.saved[..b.len]);
            }
        }
        let points = core::mem::take(&mut self.hw_points);
        self.hw_points = points.into_iter().filter(|(d, _)| !mine(*d, self)).collect();
        if let Some(s) = self.sessions.get_mut(session) {
            s.reset();
        }
    }

    /// A session scoped to `domain` takes it over from the whole-system
    /// session: the system session's step and resume set let go of its
    /// vCPUs (they would wait for a domain it no longer controls).
    pub fn hand_over(&mut self, domain: DomId) {
        let sys = &mut self.sessions[SYSTEM_SESSION];
        if sys.step.is_some_and(|(d, _)| d == domain) {
            sys.step = None;
        }
        if let Some(only) = sys.run_only.as_mut() {
            only.retain(|(d, _)| *d != domain);
        }
        sys.stops.retain(|st| st.domain != domain);
    }

    /// Replaces planted trap bytes in `data`, just read from `start` in
    /// `mem`'s space, with the guest's own: the debugger sees the memory the
    /// guest wrote, never its own traps.
    pub fn hide_breakpoints<M: GuestMemory>(&self, mem: &M, start: u64, data: &mut [u8]) {
        let dom = mem.domain().id;
        if !self.breakpoints.iter().any(|b| b.domain == dom) {
            return;
        }
        self.each_page(mem, start, data.len(), |off, gpa, n| {
            for b in self.breakpoints.iter().filter(|b| b.domain == dom) {
                for (k, byte) in b.saved[..b.len].iter().enumerate() {
                    let at = b.gpa.0 + k as u64;
                    if (gpa..gpa + n as u64).contains(&at) {
                        data[off + (at - gpa) as usize] = *byte;
                    }
                }
            }
        });
    }

    /// The debugger writes `data` at `start` in `mem`'s space. Bytes that
    /// land on a planted trap become the guest's saved bytes there and the
    /// trap stays. A write of exactly the arch's `trap` where none is planted
    /// plants a breakpoint (gdb plants its own traps through memory writes
    /// when a stub refuses `Z0`), and a write of a breakpoint's saved bytes
    /// over it removes it: a trap written by hand never reaches a guest as
    /// an exception it did not raise. All or nothing, as every write.
    pub fn write<M: GuestMemory>(&mut self, mem: &M, start: u64, data: &[u8], trap: &[u8]) -> XenResult<()> {
        let domain = mem.domain();
        let dom = domain.id;
        if !trap.is_empty() && data == trap {
            let gpa = mem.resolve(start, false)?;
            if self.breakpoint_at(dom, gpa).is_none() {
                return self.insert_breakpoint(mem, start, trap);
            }
        }
        if let Ok(gpa) = mem.resolve(start, false) {
            if let Some(i) =
                self.breakpoints.iter().position(|b| b.domain == dom && b.gpa == gpa && &b.saved[..b.len] == data)
            {
                let b = self.breakpoints.remove(i);
                return PhysMem::new(domain).write_bytes(b.gpa, &b.saved[..b.len]);
            }
        }
        mem.poke(M::Addr::from_raw(start), data)?;
        let phys = PhysMem::new(domain);
        let mut hits = Vec::new();
        self.each_page(mem, start, data.len(), |off, gpa, n| {
            for (bi, b) in self.breakpoints.iter().enumerate().filter(|(_, b)| b.domain == dom) {
                for k in 0..b.len {
                    let at = b.gpa.0 + k as u64;
                    if (gpa..gpa + n as u64).contains(&at) {
                        hits.push((bi, k, data[off + (at - gpa) as usize]));
                    }
                }
            }
        });
        for (bi, k, byte) in hits {
            let b = &mut self.breakpoints[bi];
            b.saved[k] = byte;
            let _ = phys.write_bytes(Gpa(b.gpa.0 + k as u64), &trap[k..k + 1]);
        }
        Ok(())
    }

    /// Calls `f(offset in the buffer, gpa, bytes)` for each page-sized piece
    /// of `len` bytes at `start` that translates.
    fn each_page<M: GuestMemory>(&self, mem: &M, start: u64, len: usize, mut f: impl FnMut(usize, u64, usize)) {
        let mut off = 0usize;
        while off < len {
            let Some(addr) = start.checked_add(off as u64) else { return };
            let n = (0x1000 - (addr & 0xfff) as usize).min(len - off);
            if let Ok(gpa) = mem.resolve(addr, false) {
                f(off, gpa.0, n);
            }
            off += n;
        }
    }

    /// Whether the breakpoint instruction `vcpu` of `domain` executed at
    /// guest-virtual `pc` is one the debugger planted (else it is the
    /// guest's own).
    pub fn planted_at(&self, domain: &Domain, vcpu: &dyn ArchVcpu, pc: u64) -> bool {
        let mem = crate::guest_memory::VirtMem::new(domain, vcpu);
        mem.resolve(pc, false).is_ok_and(|gpa| self.breakpoint_at(domain.id, gpa).is_some())
    }
}
