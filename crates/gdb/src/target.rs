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
    MultiThreadSchedulerLockingOps,
};
use gdbstub::target::ext::base::single_register_access::{SingleRegisterAccess, SingleRegisterAccessOps};
use gdbstub::target::ext::base::BaseOps;
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
use lantern_common::guest_memory::{GuestMemory, PhysMem, VirtMem};
use lantern_common::sched::{DebuggerState, DomainSlot, Hypervisor};

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

    /// The slot index and vCPU id a thread id names.
    pub fn resolve(&self, tid: Tid) -> Option<(usize, u32)> {
        let (domid, v) = split_tid(tid);
        let si = self.slots().iter().position(|s| s.domain.id as usize == domid)?;
        let s = &self.slots()[si];
        (v < s.domain.max_vcpus() && (v as usize) < s.vcpus.len()).then_some((si, v))
    }

    /// The first vCPU of the first domain (the thread a stop is reported on).
    pub fn first_tid(&self) -> Option<Tid> {
        self.0.domains().find(|d| d.max_vcpus() > 0).and_then(|d| tid_of(d.id, 0))
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
    pub fn read_mem(&self, si: usize, v: u32, start: u64, data: &mut [u8]) -> usize {
        let s = &self.slots()[si];
        if self.0.debugger.physical_addresses {
            PhysMem::new(&s.domain).read_prefix(Gpa(start), data)
        } else {
            VirtMem::new(&s.domain, &*s.vcpus[v as usize]).read_prefix(Gva(start), data)
        }
    }

    /// Writes guest memory; a write that cannot complete changes nothing.
    pub fn write_mem(&self, si: usize, v: u32, start: u64, data: &[u8]) -> bool {
        let s = &self.slots()[si];
        let done = if self.0.debugger.physical_addresses {
            PhysMem::new(&s.domain).write_bytes(Gpa(start), data)
        } else {
            VirtMem::new(&s.domain, &*s.vcpus[v as usize]).write_bytes(Gva(start), data)
        };
        done.is_ok()
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

    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        // No breakpoints at all (the guests' memory is not ours to patch);
        // gdb is told so and does not insert any.
        true
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
        let n = self.slots()[di].vcpus[v as usize].read_registers(&mut buf);
        if n == 0 {
            return Err(TargetError::Errno(GDB_EINVAL));
        }
        buf.truncate(n);
        regs.0 = buf;
        Ok(())
    }

    fn write_registers(&mut self, regs: &RegBlob, tid: Tid) -> TargetResult<(), Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        self.0.slots_mut()[di].vcpus[v as usize].write_registers(&regs.0).map_err(|_| TargetError::Errno(GDB_EINVAL))
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
        for d in self.0.domains() {
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
        match self.slots()[di].vcpus[v as usize].read_register(reg.0, buf) {
            0 => Err(TargetError::Errno(GDB_EINVAL)),
            n => Ok(n),
        }
    }

    fn write_register(&mut self, tid: Tid, reg: RawRegId, val: &[u8]) -> TargetResult<(), Self> {
        let (di, v) = self.resolve(tid).ok_or(TargetError::Errno(GDB_EINVAL))?;
        self.0.slots_mut()[di].vcpus[v as usize].write_register(reg.0, val).map_err(|_| TargetError::Errno(GDB_EINVAL))
    }
}

impl MultiThreadResume for HvTarget {
    fn resume(&mut self) -> Result<(), Self::Error> {
        // All-stop: whatever gdb asked per thread, everything runs again.
        self.0.debugger.resume_requested = true;
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn set_resume_action_continue(&mut self, _tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        Ok(())
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSchedulerLocking for HvTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        // gdb asked to resume only some threads; the hypervisor is all-stop
        // and resumes every vCPU (documented in docs/gdb.md).
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
        // Every vCPU of a board has the same architecture: the first one's
        // description stands for all.
        let xml = self.slots().iter().flat_map(|s| s.vcpus.first()).next().map(|a| a.target_xml());
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
        let (slots, debugger) = self.0.slots_and_debugger();
        let text = crate::monitor::run(&mut crate::monitor::View { slots, debugger }, cmd);
        out.write_raw(text.as_bytes());
        Ok(())
    }
}
