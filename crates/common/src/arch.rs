//! The arch plugin boundary: the small traits a port implements. Together
//! with the layout axis (`xen_abi::layout::GuestAbi`) they are the whole
//! contract between the core and an architecture; `docs/porting.md` says it
//! in prose.
//!
//! * [`ArchDomain`] — the *per-domain* object: keeps the nested / stage-2
//!   tables in step with the p2m, owns per-domain device models, creates the
//!   domain's vCPUs and reports their guest-timer deadlines.
//! * [`ArchVcpu`] — the *execution* axis: run a vCPU until the core must act,
//!   complete a hypercall, inject an event upcall, translate guest-virtual
//!   addresses, load an initial state, name the layout its mode implies.
//! * [`GdbRegisters`] — the register file as the gdb stub sees it, split from
//!   execution (every [`ArchVcpu`] is one).
//! * [`Preemption`] — the board's time-slice timer as a running vCPU sees it.
//!
//! The core never names an architecture: everything that differs between
//! them comes through these traits.

use alloc::boxed::Box;

use crate::addr::{Gpa, Gva};
use crate::domain::Domain;
use alloc::vec::Vec;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;

/// Why a vCPU stopped running and handed control back to the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuExit {
    /// The guest made a hypercall; arguments are in Xen's order for the
    /// guest's calling convention. The core dispatches it and calls
    /// [`ArchVcpu::complete_hypercall`].
    Hypercall {
        /// Hypercall number.
        nr: u64,
        /// Up to six arguments.
        args: [u64; 6],
    },
    /// The guest halted/waited for an interrupt: block until an event.
    Halted,
    /// The preemption timer fired: the time slice is over.
    Preempted,
    /// The guest gave way (a PAUSE or WFE while it spins on another vCPU)
    /// or woke one that should run now: the slice is over and the vCPU
    /// still runnable, but its turn is done (a boost does not bring it
    /// back for the rest, see [`crate::sched::SliceKind`]).
    Yielded,
    /// A host interrupt (serial input, timer) needs the board's attention; the
    /// vCPU can run again.
    HostInterrupt,
    /// The vCPU turned itself off (e.g. a firmware CPU-off call).
    Down,
    /// The whole domain asked to shut down outside a hypercall (e.g. a
    /// firmware system-off call), with a `SHUTDOWN_*` reason.
    DomainShutdown(u32),
    /// The guest did something the hypervisor cannot handle; the domain is
    /// crashed. The backend has already printed its diagnostic.
    Fault,
    /// Something the debugger armed ([`ArchVcpu::set_debug`]) happened: a
    /// breakpoint instruction, a completed step, a hardware point.
    Debug(DebugEvent),
}

/// What a hardware point watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwKind {
    /// Instruction fetch at the address (a hardware breakpoint).
    Execute,
    /// Data writes.
    Write,
    /// Data reads.
    Read,
    /// Data reads and writes.
    Access,
}

/// One hardware breakpoint or watchpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwPoint {
    /// Guest-virtual address.
    pub addr: u64,
    /// Bytes covered (1 for a breakpoint's instruction address).
    pub len: u64,
    /// What triggers it.
    pub kind: HwKind,
}

/// What a vCPU's backend arms for its next entries
/// ([`ArchVcpu::set_debug`]). The default arms nothing: the guest runs as if
/// no debugger existed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugControl {
    /// Execute one instruction and exit with [`DebugEvent::Step`], taking no
    /// interrupt meanwhile (so the step lands on the next instruction).
    pub single_step: bool,
    /// Intercept the arch's breakpoint instruction and report it as
    /// [`DebugEvent::Breakpoint`] (the debugger planted some in this domain).
    pub trap_breakpoints: bool,
    /// The domain's hardware points, in slot order (the backend refuses more
    /// than its debug registers hold).
    pub hw_points: Vec<HwPoint>,
}

/// Why a vCPU stopped for the debugger ([`VcpuExit::Debug`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugEvent {
    /// The vCPU executed the arch's breakpoint instruction, which is at
    /// guest-virtual `pc` (the vCPU's PC is left there).
    Breakpoint {
        /// Address of the breakpoint instruction.
        pc: u64,
    },
    /// A single-step completed.
    Step,
    /// Hardware point `slot` of the [`DebugControl`] triggered.
    HwPoint {
        /// Index into [`DebugControl::hw_points`].
        slot: usize,
    },
}

/// Guest execution mode, for layout latching and gdb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMode {
    /// Real mode or 16-bit.
    Real,
    /// 32-bit protected mode (paging may be on).
    Protected32,
    /// 64-bit.
    Long64,
}

impl GuestMode {
    /// Name used by tools.
    pub fn name(self) -> &'static str {
        match self {
            GuestMode::Real => "real",
            GuestMode::Protected32 => "32-bit",
            GuestMode::Long64 => "64-bit",
        }
    }
}

/// Initial vCPU state for [`ArchVcpu::initialise`].
#[derive(Clone, Copy, Debug)]
pub enum VcpuInitContext<'a> {
    /// The raw `VCPUOP_initialise` argument (the arch's context struct).
    XenInitialise(&'a [u8]),
    /// Start at `entry` the way the arch's boot protocol starts a CPU, with
    /// `context_id` in the protocol's argument register: the boot vCPU
    /// (argument = the boot-information address) or a firmware CPU-on call.
    PowerOn {
        /// Entry address.
        entry: u64,
        /// Value for the protocol's argument register.
        context_id: u64,
    },
}

/// The board's time-slice timer, as a vCPU's run loop sees it.
pub trait Preemption {
    /// Host-counter value at which the current time slice ends, for backends
    /// whose timer is armed per guest entry; `None` when the board arms its
    /// own timer for the slice instead ([`crate::sched::Board::start_slice`]).
    fn slice_deadline(&self) -> Option<u64>;
    /// A host interrupt made the guest exit: the board services what is
    /// pending. Returns whether the time slice is over.
    fn host_interrupt(&mut self) -> bool;
}

/// The gdb view of one vCPU's registers: a target description and the
/// register file serialised in its order.
pub trait GdbRegisters {
    /// gdb target description XML for this vCPU's architecture and mode.
    fn target_xml(&self) -> &'static str;
    /// Serialises the register file in the order of [`Self::target_xml`]
    /// into `out`; returns the number of bytes written.
    fn read_registers(&self, out: &mut [u8]) -> usize;
    /// Loads the register file from gdb's byte order.
    fn write_registers(&mut self, data: &[u8]) -> XenResult<()>;
    /// Serialises gdb register number `regnum` (its place in
    /// [`Self::target_xml`]) into `out`; returns the bytes written, 0 if
    /// there is no such register or `out` is too small. By default a slice
    /// of the whole file.
    fn read_register(&self, regnum: usize, out: &mut [u8]) -> usize {
        let Some((offset, size)) = crate::target_xml::register_span(self.target_xml(), regnum) else { return 0 };
        let mut file = alloc::vec![0u8; MAX_GDB_REGISTERS];
        if out.len() < size || self.read_registers(&mut file) < offset + size {
            return 0;
        }
        out[..size].copy_from_slice(&file[offset..offset + size]);
        size
    }
    /// Loads gdb register number `regnum` from `data` (exactly its size).
    /// By default the whole file is read, patched and written back, so the
    /// same validation applies as to a whole-file write.
    fn write_register(&mut self, regnum: usize, data: &[u8]) -> XenResult<()> {
        let (offset, size) =
            crate::target_xml::register_span(self.target_xml(), regnum).ok_or(xen_abi::errno::Errno::EINVAL)?;
        let mut file = alloc::vec![0u8; MAX_GDB_REGISTERS];
        let n = self.read_registers(&mut file);
        if data.len() != size || n < offset + size {
            return Err(xen_abi::errno::Errno::EINVAL);
        }
        file.truncate(n);
        file[offset..offset + size].copy_from_slice(data);
        self.write_registers(&file)
    }
    /// The arch's narrow description, for a guest of 32-bit code debugged
    /// in a session of its own (x86: gdb's i386 layout), if it has one.
    fn narrow_registers(&self) -> Option<&'static NarrowRegisters> {
        None
    }
}

/// A register description narrower than an arch's own (a 32-bit guest's
/// view), laid out from pieces of the full register file: the full file
/// stays the one source of truth, read and validated by the arch alone.
#[derive(Debug)]
pub struct NarrowRegisters {
    /// gdb target description XML of the narrow layout.
    pub target_xml: &'static str,
    /// Where the narrow file's bytes come from, in narrow order, covering
    /// the whole narrow file.
    pub pieces: &'static [RegPiece],
}

/// `len` bytes at `narrow` in the narrow register file are the bytes at
/// `full` in the full one (a 32-bit register is the low half of a 64-bit
/// one, little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegPiece {
    /// Offset in the narrow file.
    pub narrow: usize,
    /// Offset in the full file.
    pub full: usize,
    /// Bytes.
    pub len: usize,
}

impl NarrowRegisters {
    /// Bytes in the narrow register file.
    pub fn size(&self) -> usize {
        self.pieces.iter().map(|p| p.narrow + p.len).max().unwrap_or(0)
    }
}

/// Largest register file any arch's [`GdbRegisters`] returns (bytes).
pub const MAX_GDB_REGISTERS: usize = 4096;

/// The execution axis of the arch boundary: one vCPU's hardware context.
///
/// The scheduler owns one of these per vCPU (in the domain's slot) and calls
/// into it. Object safe, so the gdb stub can hold `&mut dyn ArchVcpu`.
pub trait ArchVcpu: GdbRegisters + Send {
    /// Enters the guest and runs it until it needs the core. Exits the
    /// hardware can handle alone (CPUID, MSRs, debug-port output, ...) are
    /// handled inside; `domain` gives access to the model for those and
    /// `preempt` to the board's slice timer.
    fn run(&mut self, domain: &Domain, preempt: &mut dyn Preemption) -> VcpuExit;

    /// Stores a hypercall's return value and moves the guest past the call.
    fn complete_hypercall(&mut self, ret: i64);

    /// Makes the event-channel upcall visible to the guest; the core calls it
    /// when `evtchn_upcall_pending` was set. Delivery may be deferred until
    /// the guest can take interrupts.
    fn inject_upcall(&mut self, domain: &Domain);

    /// Translates a guest-virtual address through the vCPU's own page tables
    /// (identity when guest paging is off).
    fn translate(&self, domain: &Domain, gva: Gva, write: bool) -> XenResult<Gpa>;

    /// The guest's current execution mode.
    fn mode(&self) -> GuestMode;

    /// The guest ABI layout the vCPU's current mode implies for `domain`.
    /// The core decodes mode-dependent arguments with it and latches it for
    /// the domain where Xen does (mapping shared_info); an arch with one
    /// layout returns it always.
    fn guest_abi(&self, domain: &Domain) -> &'static dyn GuestAbi;

    /// Loads an initial state: a `VCPUOP_initialise` argument (arch bytes,
    /// already copied from the guest) or a power-on request.
    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()>;

    /// Size in bytes of the `VCPUOP_initialise` argument for this arch, or 0
    /// when the arch brings vCPUs up another way (firmware calls).
    fn initialise_arg_size(&self) -> usize;

    /// Whether `vector` may carry event upcalls
    /// (`HVMOP_set_evtchn_upcall_vector`): `Ok` where the arch delivers
    /// upcalls on interrupt vectors and `vector` is one, the arch's errno
    /// otherwise (`-ENOSYS` where the op does not exist).
    fn check_upcall_vector(&self, vector: u8) -> XenResult<()>;

    /// Whether a guest may read (`write` false) or set HVM parameter
    /// `index` (below `HVM_NR_PARAMS`) of its own domain, as the arch's Xen
    /// decides: `-EPERM` for what only the toolstack may touch, `-EINVAL`
    /// for deprecated indices, `-EEXIST` for a read-only one. The default
    /// allows all of them, as Xen's arm port does.
    fn hvm_param_access(&self, index: u32, write: bool) -> XenResult<()> {
        let _ = (index, write);
        Ok(())
    }

    /// The absolute timeout of a `set_timer_op` hypercall made with `args`,
    /// as the arch's calling convention passes a 64-bit argument (one
    /// register, or low and high halves in two on a 32-bit caller), or the
    /// arch's errno where Xen offers no `set_timer_op` (`-ENOSYS`).
    fn set_timer_op_timeout(&self, args: &[u64; 6]) -> XenResult<u64>;

    /// Feature word `submap_idx` (below `xenfeat::NR_SUBMAPS`) of
    /// `XENVER_get_features`: the `XENFEAT_*` bits Xen gives a guest of
    /// this arch and type, less any for an interface Lantern lacks.
    fn xen_features(&self, submap_idx: u32) -> u32;

    /// `arch_vm_assist_valid_mask`: the `VMASST_TYPE_*` bits a guest of this
    /// arch and type may enable or disable with `vm_assist`.
    fn vm_assist_valid_mask(&self) -> u64;

    /// Whether `VCPUOP_register_vcpu_time_memory_area` (a time area by
    /// guest-virtual address) exists: `Ok` where Xen offers it, the errno
    /// the arch's `vcpu_op` gives an op it does not list otherwise.
    fn time_area_by_va_supported(&self) -> XenResult<()>;

    /// One past the highest gfn the arch's nested / stage-2 tables can map
    /// for this guest: populating a gfn at or above it fails.
    fn gfn_limit(&self) -> u64;

    /// Arms what the debugger asks of this vCPU from its next entry on
    /// (single-step, trapping breakpoint instructions, hardware points),
    /// keeping the guest's own debug state aside. `-EOPNOTSUPP` for what the
    /// arch cannot do, `-ENOSPC` for more hardware points than it has; a
    /// refused control changes nothing. An arch without debug support
    /// accepts only the empty control.
    fn set_debug(&mut self, ctl: &DebugControl) -> XenResult<()> {
        if *ctl == DebugControl::default() {
            Ok(())
        } else {
            Err(Errno::EOPNOTSUPP)
        }
    }

    /// The arch's breakpoint instruction, as the debugger plants it (empty:
    /// the arch has none the debugger may use).
    fn breakpoint_instruction(&self) -> &'static [u8] {
        &[]
    }

    /// The guest executed a breakpoint instruction the debugger did not
    /// plant ([`DebugEvent::Breakpoint`]): deliver the exception to the
    /// guest as the CPU would have without the debugger.
    fn deliver_breakpoint(&mut self) {}
}

/// The per-domain arch object: what a domain's vCPUs share in hardware
/// terms. The scheduler holds one per domain beside the domain itself.
pub trait ArchDomain: Send {
    /// Creates the context of vCPU `id`: offline, in its reset state. The
    /// boot vCPU is then started with [`ArchVcpu::initialise`]
    /// ([`VcpuInitContext::PowerOn`]) by the arch's boot protocol.
    fn create_vcpu(&self, domain: &Domain, id: u32) -> Box<dyn ArchVcpu>;

    /// Brings the nested / stage-2 tables in line with the domain's p2m
    /// (draining `P2m::take_changes`). The scheduler calls it before any of
    /// the domain's vCPUs runs.
    fn sync_p2m(&self, domain: &Domain);

    /// Host-counter value at which blocked vCPU `vcpu`'s own guest timer
    /// fires, if it armed one the hypervisor must wake it for.
    fn timer_deadline(&self, vcpu: u32) -> Option<u64>;

    /// Exits the domain's vCPUs have taken (for benchmarks and the closing
    /// summary).
    fn exits(&self) -> u64;

    /// Whether the domain may be soft reset (`domain_soft_reset`): `Ok`
    /// where Xen offers it, the arch's errno otherwise (`-ENOSYS` where Xen
    /// has no soft reset).
    fn soft_reset_supported(&self) -> XenResult<()>;
}
