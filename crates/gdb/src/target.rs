//! The `gdbstub` target over the hypervisor model: threads are the vCPUs of
//! every domain, registers are a raw byte blob in the order of the arch's
//! target description, memory goes through the selected vCPU's own page
//! tables and then its domain's guest-physical map.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use core::num::NonZeroUsize;

use gdbstub::arch::{Arch, RegId, Registers};
use gdbstub::common::{Pid, Signal, Tid};
use gdbstub::outputln;
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::single_register_access::{SingleRegisterAccess, SingleRegisterAccessOps};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps, WatchKind,
};
use gdbstub::target::ext::catch_syscalls::{CatchSyscalls, CatchSyscallsOps, SyscallNumbers};
use gdbstub::target::ext::extended_mode::{Args, AttachKind, ExtendedMode, ExtendedModeOps, ShouldTerminate};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::target_description_xml_override::{
    TargetDescriptionXmlOverride, TargetDescriptionXmlOverrideOps,
};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use ref_cast::RefCast;

use crate::thread_id::{split_tid, tid_of};

/// Largest register file any arch may return (bytes).
pub const MAX_REGS: usize = lantern_common::arch::MAX_GDB_REGISTERS;

/// `EFAULT`, the gdb error code for an unreadable or unwritable address.
const GDB_EFAULT: u8 = 14;
/// `EINVAL`, for a thread id that names no vCPU.
const GDB_EINVAL: u8 = 22;

use lantern_common::addr::{Gpa, Gva};
use lantern_common::debug::{HwKind, HwPoint, Session};
use lantern_common::guest_memory::{GuestMemory, PhysMem, VirtMem};
use lantern_common::memory::DomId;
use lantern_common::register_view::RegisterView;
use lantern_common::sched::{DebuggerState, DomainSlot, Hypervisor};
use xen_abi::errno::XenResult;

/// The architecture as the stub sees it: a register file of opaque bytes
/// whose layout only the target description (from the arch crate) knows.
pub enum LanternArch {}

/// The register file: raw bytes in target-description order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegBlob(pub Vec<u8>);

impl Registers for RegBlob {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        // Never used: the stub reports stops without register values.
        0
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        for b in &self.0 {
            write_byte(Some(*b));
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.0.clear();
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

impl Arch for LanternArch {
    // Wide enough for every guest address (gdb sends 32-bit ones for 32-bit
    // guests; they fit).
    type Usize = u64;
    type Registers = RegBlob;
    type BreakpointKind = usize;
    // `p`/`P` name a register by its place in the target description; its
    // size is known only to the vCPU's description, so none is given here.
    type RegId = RawRegId;

    fn target_description_xml() -> Option<&'static str> {
        // Served per vCPU through the override extension instead.
        None
    }
}

/// A gdb register number, as `p`/`P` send it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawRegId(pub usize);

impl RegId for RawRegId {
    fn from_raw_id(id: usize) -> Option<(Self, Option<NonZeroUsize>)> {
        Some((RawRegId(id), None))
    }

    fn to_raw_id(&self) -> Option<usize> {
        Some(self.0)
    }
}

/// The stub's target: the hypervisor itself, borrowed for the duration of
/// one poll (a transparent wrapper, so gdbstub's `Target` can be implemented
/// here for the core's type).
#[derive(RefCast)]
#[repr(transparent)]
pub struct HvTarget(Hypervisor);

impl HvTarget {
    /// The target view of `hv`.
    pub fn borrow(hv: &mut Hypervisor) -> &mut HvTarget {
        HvTarget::ref_cast_mut(hv)
    }

    /// The hypervisor.
    pub fn hv(&self) -> &Hypervisor {
        &self.0
    }

    /// The domains' slots.
    pub fn slots(&self) -> &[DomainSlot] {
        self.0.slots()
    }

    /// The debugger's own state.
    pub fn debugger(&mut self) -> &mut DebuggerState {
        &mut self.0.debugger
    }

    /// The session being served (see `DebuggerState::serving`).
    pub fn session(&self) -> &Session {
        self.0.debugger.session()
    }

    fn session_mut(&mut self) -> &mut Session {
        self.0.debugger.session_mut()
    }

    /// The domain the session debugs on its own (`None`: the whole system).
    pub fn scope(&self) -> Option<DomId> {
        self.session().scope
    }

    /// Whether the session may show and control domain `dom`.
    fn in_scope(&self, dom: DomId) -> bool {
        self.scope().is_none_or(|s| s == dom)
    }

    /// Whether the session being served controls domain `dom` now: it is in
    /// its scope, and (for the whole-system session) no session of its own
    /// has taken it over. Execution controls are armed only there.
    fn controls(&self, dom: DomId) -> bool {
        self.in_scope(dom) && self.0.debugger.exec.owner(dom) == self.0.debugger.serving
    }

    /// The register description the session gives gdb for slot `si`'s
    /// vCPUs: a 32-bit guest's own session uses the arch's narrow one.
    fn view(&self, si: usize) -> RegisterView {
        if self.scope().is_some() && self.slots()[si].image_32bit {
            RegisterView::Narrow
        } else {
            RegisterView::Full
        }
    }

    /// The slot index and vCPU id a thread id names (in the session's
    /// scope).
    pub fn resolve(&self, tid: Tid) -> Option<(usize, u32)> {
        let (domid, v) = split_tid(tid);
        if !self.in_scope(u16::try_from(domid).ok()?) {
            return None;
        }
        let si = self.slots().iter().position(|s| s.domain.id as usize == domid)?;
        let s = &self.slots()[si];
        (v < s.domain.max_vcpus() && (v as usize) < s.vcpus.len()).then_some((si, v))
    }

    /// The first vCPU of the session's first domain (the thread a stop is
    /// reported on).
    pub fn first_tid(&self) -> Option<Tid> {
        self.0.domains().find(|d| d.max_vcpus() > 0 && self.in_scope(d.id)).and_then(|d| tid_of(d.id, 0))
    }

    /// `dNvM <state> <layout>` for `info threads`.
    pub fn describe(&self, si: usize, v: u32) -> String {
        let d = &self.slots()[si].domain;
        let mut s = String::new();
        let state = d.vcpu(v).map(|vc| d.vcpu_state(vc).name()).unwrap_or("?");
        let _ = write!(s, "d{}v{} {} {}", d.id, v, state, d.abi().name());
        s
    }

    /// Reads guest memory as gdb addresses it (the vCPU's virtual space, or
    /// guest-physical with `monitor phys on`); returns the bytes read before
    /// the first unreachable page.
    /// The debugger's own trap instructions never show: it reads what the
    /// guest wrote.
    pub fn read_mem(&self, si: usize, v: u32, start: u64, data: &mut [u8]) -> usize {
        let s = &self.slots()[si];
        let exec = &self.0.debugger.exec;
        if self.session().physical_addresses {
            let mem = PhysMem::new(&s.domain);
            let n = mem.read_prefix(Gpa(start), data);
            exec.hide_breakpoints(&mem, start, &mut data[..n]);
            n
        } else {
            let mem = VirtMem::new(&s.domain, &*s.vcpus[v as usize]);
            let n = mem.read_prefix(Gva(start), data);
            exec.hide_breakpoints(&mem, start, &mut data[..n]);
            n
        }
    }

    /// Writes guest memory; a write that cannot complete changes nothing.
    /// Planted traps stay in place under it (see `Debugger::write`).
    pub fn write_mem(&mut self, si: usize, v: u32, start: u64, data: &[u8]) -> bool {
        let phys = self.session().physical_addresses;
        let (slots, debugger) = self.0.slots_and_debugger();
        let s = &slots[si];
        let trap = s.vcpus[v as usize].breakpoint_instruction();
        let done = if phys {
            debugger.exec.write(&PhysMem::new(&s.domain), start, data, trap)
        } else {
            debugger.exec.write(&VirtMem::new(&s.domain, &*s.vcpus[v as usize]), start, data, trap)
        };
        let dom = s.domain.id;
        // A trap gdb wrote by hand is now planted: arm its trapping.
        let _ = self.apply_debug(dom);
        done.is_ok()
    }

    /// The vCPU whose address space a breakpoint lives in: gdb's selected
    /// thread, else the first vCPU.
    fn selected(&self) -> Option<(usize, u32)> {
        let pick = self.session().selected.and_then(|(dom, v)| tid_of(dom, v)).and_then(|t| self.resolve(t));
        pick.or_else(|| self.first_tid().and_then(|t| self.resolve(t)))
    }

    /// Pushes the debugger's controls to every vCPU of domain `dom`; on a
    /// refusal (more hardware points than the arch has) the vCPUs keep
    /// what they had and the error is returned.
    pub fn apply_debug(&mut self, dom: DomId) -> XenResult<()> {
        let (slots, debugger) = self.0.slots_mut_and_debugger();
        let Some(s) = slots.iter_mut().find(|s| s.domain.id == dom) else { return Ok(()) };
        let mut result = Ok(());
        for (v, vcpu) in s.vcpus.iter_mut().enumerate() {
            if let Err(e) = vcpu.set_debug(&debugger.exec.control_for(dom, v as u32)) {
                result = Err(e);
            }
        }
        result
    }

    /// Ends what the session armed in its domains: its breakpoints come out
    /// of guest memory, hardware points, step and catchpoints are disarmed
    /// in their vCPUs.
    pub fn end_debugging(&mut self) {
        let (slots, debugger) = self.0.slots_mut_and_debugger();
        let doms: Vec<DomId> = slots.iter().map(|s| s.domain.id).collect();
        let slots: &[DomainSlot] = slots;
        let me = debugger.serving;
        debugger.exec.end_session(me, |id| slots.iter().find(|s| s.domain.id == id).map(|s| &*s.domain));
        for d in doms {
            let _ = self.apply_debug(d);
        }
    }

    /// Records that gdb gave vCPU `tid` a resume action.
    fn note_resumed(&mut self, tid: Tid) {
        if let Some((si, v)) = self.resolve(tid) {
            let dom = self.slots()[si].domain.id;
            self.session_mut().resumed.push((dom, v));
        }
    }

    /// Adds a hardware point in the selected thread's domain; false when
    /// the arch has no room for it (or cannot watch that way).
    fn add_hw_point(&mut self, point: HwPoint) -> bool {
        let Some((si, _)) = self.selected() else { return false };
        let dom = self.slots()[si].domain.id;
        if !self.controls(dom) {
            return false;
        }
        self.0.debugger.exec.hw_points.push((dom, point));
        if self.apply_debug(dom).is_ok() {
            return true;
        }
        self.0.debugger.exec.hw_points.pop();
        let _ = self.apply_debug(dom);
        false
    }

    fn remove_hw_point(&mut self, point: HwPoint) -> bool {
        let Some((si, _)) = self.selected() else { return false };
        let dom = self.slots()[si].domain.id;
        if !self.controls(dom) {
            return false;
        }
        let points = &mut self.0.debugger.exec.hw_points;
        let Some(i) = points.iter().position(|p| *p == (dom, point)) else { return false };
        points.remove(i);
        let _ = self.apply_debug(dom);
        true
    }
}

/// Fatal errors never happen: every failure is a gdb error reply.
pub type Fatal = &'static str;

impl Target for HvTarget {
    type Arch = LanternArch;
    type Error = Fatal;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_catch_syscalls(&mut self) -> Option<CatchSyscallsOps<'_, Self>> {
        Some(self)
    }

    fn use_no_ack_mode(&self) -> bool {
        // Keep acknowledgements: over a serial line they let gdb resend a
        // packet the framer rejected (bad checksum), at one byte per packet.
        false
    }

    fn support_target_description_xml_override(&mut self) -> Option<TargetDescriptionXmlOverrideOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    fn support_extended_mode(&mut self) -> Option<ExtendedModeOps<'_, Self>> {
        // For `kill`/`vKill` alone: without extended mode gdbstub never
        // answers them (gdb then waits out its `remotetimeout`).
        Some(self)
    }
}

/// gdb's `kill` ends the session and resumes everything, like `detach`: a
/// debugger never kills the hypervisor, and a domain is destroyed only on
/// request (`monitor destroy dN`). Starting or attaching to processes
/// (`target extended-remote`'s `run`, `attach`) has no meaning here.
impl ExtendedMode for HvTarget {
    fn run(&mut self, _filename: Option<&[u8]>, _args: Args<'_, '_>) -> TargetResult<Pid, Self> {
        Err(TargetError::Errno(GDB_EINVAL))
    }

    fn attach(&mut self, _pid: Pid) -> TargetResult<(), Self> {
        Err(TargetError::Errno(GDB_EINVAL))
    }

    fn query_if_attached(&mut self, _pid: Pid) -> TargetResult<AttachKind, Self> {
        // The system was running before gdb came: gdb detaches on quit.
        Ok(AttachKind::Attach)
    }

    fn kill(&mut self, _pid: Option<Pid>) -> TargetResult<ShouldTerminate, Self> {
        // Ending the session (the stub's Disconnected state) lets every vCPU
        // run again.
        Ok(ShouldTerminate::Yes)
    }

    fn restart(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl MultiThreadBase for HvTarget {
    fn read_registers(&mut self, regs: &mut RegBlob, tid: Tid) -> TargetResult<(), Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        let mut buf = vec![0u8; MAX_REGS];
        let n = self.view(di).read(&*self.slots()[di].vcpus[v as usize], &mut buf);
        if n == 0 {
            return Err(TargetError::Errno(GDB_EINVAL));
        }
        buf.truncate(n);
        regs.0 = buf;
        Ok(())
    }

    fn write_registers(&mut self, regs: &RegBlob, tid: Tid) -> TargetResult<(), Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        let view = self.view(di);
        view.write(&mut *self.0.slots_mut()[di].vcpus[v as usize], &regs.0).map_err(|_| TargetError::Errno(GDB_EINVAL))
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        match self.read_mem(di, v, start, data) {
            0 if !data.is_empty() => Err(TargetError::Errno(GDB_EFAULT)),
            n => Ok(n),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        if self.write_mem(di, v, start, data) {
            Ok(())
        } else {
            Err(TargetError::Errno(GDB_EFAULT))
        }
    }

    fn list_active_threads(&mut self, thread_is_active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        for d in self.0.domains().filter(|d| self.in_scope(d.id)) {
            for v in 0..d.max_vcpus() {
                if let Some(tid) = tid_of(d.id, v) {
                    thread_is_active(tid);
                }
            }
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }

    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<Tid> for HvTarget {
    fn read_register(&mut self, tid: Tid, reg: RawRegId, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        match self.view(di).read_one(&*self.slots()[di].vcpus[v as usize], reg.0, buf) {
            0 => Err(TargetError::Errno(GDB_EINVAL)),
            n => Ok(n),
        }
    }

    fn write_register(&mut self, tid: Tid, reg: RawRegId, val: &[u8]) -> TargetResult<(), Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        let view = self.view(di);
        view.write_one(&mut *self.0.slots_mut()[di].vcpus[v as usize], reg.0, val)
            .map_err(|_| TargetError::Errno(GDB_EINVAL))
    }
}

impl MultiThreadResume for HvTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        // All-stop: whatever gdb asked per thread, everything the session
        // holds runs again.
        self.session_mut().resume_requested = true;
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        let s = self.session_mut();
        s.resumed.clear();
        s.run_only = None;
        if let Some((dom, _)) = s.step.take() {
            let _ = self.apply_debug(dom);
        }
        Ok(())
    }

    fn set_resume_action_continue(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.note_resumed(tid);
        Ok(())
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for HvTarget {
    fn set_resume_action_step(&mut self, tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        // One vCPU steps; while it does, only it runs (`sched`), so the
        // others' "continue" waits for the step: all-stop.
        self.note_resumed(tid);
        if let Some((si, v)) = self.resolve(tid) {
            let dom = self.slots()[si].domain.id;
            if self.controls(dom) {
                self.session_mut().step = Some((dom, v));
                let _ = self.apply_debug(dom);
            }
        }
        Ok(())
    }
}

impl Breakpoints for HvTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for HvTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some((si, v)) = self.selected() else { return Ok(false) };
        if !self.controls(self.slots()[si].domain.id) {
            return Ok(false);
        }
        let phys = self.session().physical_addresses;
        let (slots, debugger) = self.0.slots_mut_and_debugger();
        let s = &slots[si];
        let trap = s.vcpus[v as usize].breakpoint_instruction();
        let done = if phys {
            debugger.exec.insert_breakpoint(&PhysMem::new(&s.domain), addr, trap)
        } else {
            debugger.exec.insert_breakpoint(&VirtMem::new(&s.domain, &*s.vcpus[v as usize]), addr, trap)
        };
        let dom = s.domain.id;
        let _ = self.apply_debug(dom);
        Ok(done.is_ok())
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some((si, _)) = self.selected() else { return Ok(false) };
        // A domain another session controls holds none of this session's
        // breakpoints (they came out when it took the domain over), and
        // that session's are not this one's to take out: done, as for any
        // breakpoint that is not there.
        if !self.controls(self.slots()[si].domain.id) {
            return Ok(true);
        }
        let (slots, debugger) = self.0.slots_mut_and_debugger();
        let d = slots[si].domain.clone();
        let done = debugger.exec.remove_breakpoint(&d, addr);
        let _ = self.apply_debug(d.id);
        Ok(done.is_ok())
    }
}

impl HwBreakpoint for HvTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.add_hw_point(HwPoint { addr, len: 1, kind: HwKind::Execute }))
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        Ok(self.remove_hw_point(HwPoint { addr, len: 1, kind: HwKind::Execute }))
    }
}

/// gdb's watchpoint kind as the core's.
fn hw_kind(kind: WatchKind) -> HwKind {
    match kind {
        WatchKind::Write => HwKind::Write,
        WatchKind::Read => HwKind::Read,
        WatchKind::ReadWrite => HwKind::Access,
    }
}

impl HwWatchpoint for HvTarget {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        Ok(self.add_hw_point(HwPoint { addr, len, kind: hw_kind(kind) }))
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        Ok(self.remove_hw_point(HwPoint { addr, len, kind: hw_kind(kind) }))
    }
}

impl CatchSyscalls for HvTarget {
    fn enable_catch_syscalls(&mut self, filter: Option<SyscallNumbers<'_, u64>>) -> TargetResult<(), Self> {
        // Hypercalls are the guests' system calls: `catch syscall N` stops a
        // vCPU at hypercall N's entry and return.
        self.session_mut().catch = Some(filter.map(|f| f.collect()).unwrap_or_default());
        Ok(())
    }

    fn disable_catch_syscalls(&mut self) -> TargetResult<(), Self> {
        self.session_mut().catch = None;
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for HvTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        // gdb resumes only the threads it named (its step over a breakpoint
        // does, and `set scheduler-locking on`): the others stay stopped.
        let s = self.session_mut();
        s.run_only = Some(s.resumed.clone());
        Ok(())
    }
}

impl ThreadExtraInfo for HvTarget {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let Some((di, v)) = self.resolve(tid) else { return Ok(0) };
        let s = self.describe(di, v);
        let n = s.len().min(buf.len());
        buf[..n].copy_from_slice(&s.as_bytes()[..n]);
        Ok(n)
    }
}

impl TargetDescriptionXmlOverride for HvTarget {
    fn target_description_xml(
        &self,
        annex: &[u8],
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        if annex != b"target.xml" {
            return Err(TargetError::Errno(GDB_EINVAL));
        }
        // Every vCPU of a board has the same architecture, and every vCPU
        // of a domain the same view: the first one's description stands for
        // all the session shows.
        let xml = self
            .slots()
            .iter()
            .enumerate()
            .filter(|(_, s)| self.in_scope(s.domain.id))
            .find_map(|(si, s)| s.vcpus.first().map(|a| self.view(si).target_xml(&**a)));
        let xml = xml.ok_or(TargetError::NonFatal)?;
        let xml = xml.as_bytes();
        let start = (offset as usize).min(xml.len());
        let n = (xml.len() - start).min(length).min(buf.len());
        buf[..n].copy_from_slice(&xml[start..start + n]);
        Ok(n)
    }
}

impl MonitorCmd for HvTarget {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let Ok(cmd) = core::str::from_utf8(cmd) else {
            outputln!(out, "error: command is not UTF-8");
            return Ok(());
        };
        let system_stopped = self.0.stopped.load(core::sync::atomic::Ordering::Acquire);
        let scope = self.scope();
        let (slots, debugger) = self.0.slots_and_debugger();
        let text = crate::monitor::run(&mut crate::monitor::View { slots, debugger, system_stopped, scope }, cmd);
        out.write_raw(text.as_bytes());
        Ok(())
    }
}
