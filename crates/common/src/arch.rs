//! The arch plugin boundary: the two small traits a port implements.
//!
//! * [`GuestAbi`] — the *layout* axis: where each field of the Xen guest ABI
//!   structures (`vcpu_info`, `shared_info`, `vcpu_runstate_info`,
//!   `vcpu_time_info`) lives for one guest ABI, plus the ABI's legacy vCPU
//!   limit. x86 offers two (x86_64 native and x86_32 compat, chosen per
//!   domain), arm64 one.
//! * [`ArchVcpu`] — the *execution* axis: run a vCPU until the core must act,
//!   complete a hypercall, inject an event upcall, translate guest-virtual
//!   addresses, and expose the register file to the gdb stub.
//!
//! Plus [`Clock`], the time source for runstate accounting and the
//! `vcpu_time_info` records. The core never names an architecture: everything
//! that differs between them comes through these traits. See
//! `docs/porting.md` for the contract in prose.

use xen_abi::errno::XenResult;

/// A sample of the hypervisor's clock, as written into `vcpu_time_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeSample {
    /// System time in ns since the hypervisor started.
    pub system_time_ns: u64,
    /// The guest-visible counter (TSC on x86, CNTVCT on arm64) at that moment.
    pub tsc: u64,
    /// `tsc_to_system_mul`: ns = ((counter delta << shift) * mul) >> 32.
    pub tsc_to_system_mul: u32,
    /// `tsc_shift`.
    pub tsc_shift: i8,
}

/// The hypervisor's time source, supplied by the board.
pub trait Clock: Sync + Send {
    /// Samples the clock now.
    fn sample(&self) -> TimeSample;
    /// Nanoseconds since start (a cheap form of `sample().system_time_ns`).
    fn now_ns(&self) -> u64 {
        self.sample().system_time_ns
    }
}

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
    /// The guest halted/waited for an interrupt (HLT, WFI): block until an event.
    Halted,
    /// The preemption timer fired: the time slice is over.
    Preempted,
    /// A host interrupt (serial input, timer) needs the board's attention; the
    /// vCPU can run again.
    HostInterrupt,
    /// The vCPU turned itself off (e.g. PSCI CPU_OFF).
    Down,
    /// The whole domain asked to shut down outside a hypercall (e.g. PSCI
    /// SYSTEM_OFF), with a `SHUTDOWN_*` reason.
    DomainShutdown(u32),
    /// The guest did something the hypervisor cannot handle; the domain is
    /// crashed. The backend has already printed its diagnostic.
    Fault,
}

/// Guest execution mode, for layout latching and gdb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMode {
    /// Real mode or 16-bit.
    Real,
    /// 32-bit protected mode (paging may be on).
    Protected32,
    /// 64-bit (x86 long mode or AArch64).
    Long64,
}

/// The execution axis of the arch boundary: one vCPU's hardware context.
///
/// The board owns one of these per vCPU; the core's scheduler loop calls into
/// it. Object safe, so the gdb stub can hold `&mut dyn ArchVcpu`.
pub trait ArchVcpu: Send {
    /// Enters the guest and runs it until it needs the core. Exits the
    /// hardware can handle alone (CPUID, MSRs, debug-port output, ...) are
    /// handled inside; `domain` gives access to the model for those.
    fn run(&mut self, domain: &crate::domain::Domain) -> VcpuExit;

    /// Stores a hypercall's return value and moves the guest past the call.
    fn complete_hypercall(&mut self, ret: i64);

    /// Makes the event-channel upcall visible to the guest (callback vector on
    /// x86, virtual PPI on arm); the core calls it when `evtchn_upcall_pending`
    /// was set. Delivery may be deferred until the guest can take interrupts.
    fn inject_upcall(&mut self, domain: &crate::domain::Domain);

    /// Translates a guest-virtual address through the vCPU's own page tables
    /// (identity when guest paging is off) to a guest-physical address.
    fn translate(&self, domain: &crate::domain::Domain, gva: u64, write: bool) -> XenResult<u64>;

    /// The guest's current execution mode.
    fn mode(&self) -> GuestMode;

    /// Loads the initial state passed to `VCPUOP_initialise` (arch-specific
    /// bytes, already copied from the guest) or a PSCI `CPU_ON` request.
    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()>;

    /// Size in bytes of the `VCPUOP_initialise` argument for this arch, or 0
    /// when the arch brings vCPUs up another way (arm64 uses PSCI).
    fn initialise_arg_size(&self) -> usize;

    /// gdb target description XML (registers of this vCPU's architecture).
    fn gdb_target_xml(&self) -> &'static str;

    /// Serializes the register file in the order of [`Self::gdb_target_xml`]
    /// into `out`; returns the number of bytes written.
    fn gdb_read_registers(&self, out: &mut [u8]) -> usize;

    /// Writes the register file from gdb's byte order.
    fn gdb_write_registers(&mut self, data: &[u8]) -> XenResult<()>;
}

/// Initial vCPU state for [`ArchVcpu::initialise`].
#[derive(Clone, Copy, Debug)]
pub enum VcpuInitContext<'a> {
    /// The raw `VCPUOP_initialise` argument (e.g. x86 `vcpu_hvm_context`).
    XenInitialise(&'a [u8]),
    /// A PSCI `CPU_ON`: entry point and context id (x0).
    PowerOn {
        /// Entry address.
        entry: u64,
        /// Value for the first argument register.
        context_id: u64,
    },
}
