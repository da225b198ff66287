//! The fake arch vCPU of the host tests: the arch side of the plugin
//! boundary with no CPU behind it.

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::{ArchDomain, ArchVcpu, GdbRegisters, GuestMode, Preemption, VcpuExit, VcpuInitContext};
use lantern_common::debug::DebugControl;
use lantern_common::sched::DomainSlot;
use std::sync::Arc;

use lantern_common::domain::Domain;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;

use crate::domain::RAM_PAGES;

/// An arch vCPU for tests: its "page tables" map guest-virtual
/// `virt_base + gpa` to `gpa` for the first `mapped_bytes` of guest-physical
/// memory and nothing else; `VCPUOP_initialise` takes 8 bytes, an entry point,
/// which it records; it counts the upcalls injected; and it shows gdb the
/// register file it was given, refusing, as the real arches do, a write
/// shorter than that file.
pub struct FakeVcpu {
    /// Guest-virtual address of guest-physical 0.
    pub virt_base: u64,
    /// How many bytes of guest-physical memory, from 0, are mapped.
    pub mapped_bytes: u64,
    /// How many of them, from 0, the guest's page tables map read-only
    /// (a kernel's text).
    pub read_only_bytes: u64,
    /// The entry point of the last initialise or power-on.
    pub entry: Option<u64>,
    /// Upcalls injected so far.
    pub upcalls: u32,
    /// The errno of `VCPUOP_register_vcpu_time_memory_area` when the fake
    /// models an arch without it; `None`: the op exists.
    pub no_time_area_by_va: Option<Errno>,
    /// A 64-bit hypercall argument comes as two 32-bit halves, low first
    /// (a 32-bit calling convention), instead of in one register.
    pub split_wide_args: bool,
    /// The debugger's controls, as last armed.
    pub debug: DebugControl,
    /// The breakpoint instruction the fake's arch has (none by default).
    trap: &'static [u8],
    target_xml: &'static str,
    registers: Vec<u8>,
}

impl FakeVcpu {
    /// Guest-virtual == guest-physical over `ram_pages`, no registers.
    pub fn identity(ram_pages: u64) -> Self {
        FakeVcpu {
            virt_base: 0,
            mapped_bytes: ram_pages << 12,
            read_only_bytes: 0,
            entry: None,
            upcalls: 0,
            no_time_area_by_va: None,
            split_wide_args: false,
            debug: DebugControl::default(),
            trap: &[],
            target_xml: "",
            registers: Vec::new(),
        }
    }

    /// Gives the fake's arch a breakpoint instruction (and so debugger
    /// support: it arms any control).
    pub fn with_breakpoint(self, trap: &'static [u8]) -> Self {
        FakeVcpu { trap, ..self }
    }

    /// Maps guest-physical 0 at `virt_base` instead, so that a guest-physical
    /// address used as a virtual one does not translate.
    pub fn mapped_at(self, virt_base: u64) -> Self {
        FakeVcpu { virt_base, ..self }
    }

    /// Maps the first `bytes` of guest-physical memory read-only.
    pub fn read_only_below(self, bytes: u64) -> Self {
        FakeVcpu { read_only_bytes: bytes, ..self }
    }

    /// Models an arch with no time area by guest-virtual address: the op
    /// fails with `errno`.
    pub fn without_time_area_by_va(self, errno: Errno) -> Self {
        FakeVcpu { no_time_area_by_va: Some(errno), ..self }
    }

    /// Gives the vCPU a gdb register file: its target description and its
    /// initial contents (whose length is the file's size).
    pub fn with_registers(self, target_xml: &'static str, registers: Vec<u8>) -> Self {
        FakeVcpu { target_xml, registers, ..self }
    }

    /// As the `Box<dyn ArchVcpu>` the scheduler and the hypercall layer take.
    pub fn boxed(self) -> Box<dyn ArchVcpu> {
        Box::new(self)
    }
}

/// `n` identity-mapped fake vCPUs over [`RAM_PAGES`], for hypercall tests.
pub fn fake_vcpus(n: u32) -> Vec<Box<dyn ArchVcpu>> {
    (0..n).map(|_| FakeVcpu::identity(RAM_PAGES).boxed()).collect()
}

impl ArchVcpu for FakeVcpu {
    fn run(&mut self, _domain: &Domain, _preempt: &mut dyn Preemption) -> VcpuExit {
        VcpuExit::Halted
    }

    fn complete_hypercall(&mut self, _ret: i64) {}

    fn inject_upcall(&mut self, _domain: &Domain) {
        self.upcalls += 1;
    }

    fn translate(&self, _domain: &Domain, gva: Gva, write: bool) -> XenResult<Gpa> {
        match gva.0.checked_sub(self.virt_base) {
            Some(gpa) if write && gpa < self.read_only_bytes => Err(Errno::EFAULT),
            Some(gpa) if gpa < self.mapped_bytes => Ok(Gpa(gpa)),
            _ => Err(Errno::EFAULT),
        }
    }

    fn mode(&self) -> GuestMode {
        GuestMode::Long64
    }

    fn guest_abi(&self, domain: &Domain) -> &'static dyn GuestAbi {
        // A fake vCPU speaks whatever layout its domain was built with.
        domain.abi()
    }

    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        self.entry = Some(match ctx {
            VcpuInitContext::XenInitialise(b) => u64::from_le_bytes(b[..8].try_into().unwrap()),
            VcpuInitContext::PowerOn { entry, .. } => *entry,
        });
        Ok(())
    }

    fn initialise_arg_size(&self) -> usize {
        8
    }

    fn check_upcall_vector(&self, vector: u8) -> XenResult<()> {
        // The rule of the arch whose vectors the tests model: 0x10 and up.
        if vector < 0x10 {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    fn set_timer_op_timeout(&self, args: &[u64; 6]) -> XenResult<u64> {
        Ok(if self.split_wide_args { (args[0] & 0xFFFF_FFFF) | (args[1] << 32) } else { args[0] })
    }

    fn xen_features(&self, submap_idx: u32) -> u32 {
        match submap_idx {
            0 => FAKE_FEATURES,
            _ => 0,
        }
    }

    fn vm_assist_valid_mask(&self) -> u64 {
        FAKE_VM_ASSIST_MASK
    }

    fn time_area_by_va_supported(&self) -> XenResult<()> {
        match self.no_time_area_by_va {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn gfn_limit(&self) -> u64 {
        FAKE_GFN_LIMIT
    }

    fn set_debug(&mut self, ctl: &DebugControl) -> XenResult<()> {
        if self.trap.is_empty() && *ctl != DebugControl::default() {
            return Err(Errno::EOPNOTSUPP);
        }
        self.debug = ctl.clone();
        Ok(())
    }

    fn breakpoint_instruction(&self) -> &'static [u8] {
        self.trap
    }
}

/// The fake's `vm_assist` mask: the runstate update flag (as both arches)
/// and, so a test sees that the mask comes from the arch, type 1 too.
pub const FAKE_VM_ASSIST_MASK: u64 =
    (1 << xen_abi::nr::vmasst::TYPE_RUNSTATE_UPDATE_FLAG) | (1 << xen_abi::nr::vmasst::TYPE_4GB_SEGMENTS_NOTIFY);

/// The fake's [`ArchVcpu::gfn_limit`]: 4 GiB of guest-physical space.
pub const FAKE_GFN_LIMIT: u64 = 1 << 20;

/// The fake's `XENVER_get_features` word: a pattern no arch reports, so a
/// test sees that the word comes from the arch and not from the core.
pub const FAKE_FEATURES: u32 = 0x5a5a_0f0f;

impl GdbRegisters for FakeVcpu {
    fn target_xml(&self) -> &'static str {
        self.target_xml
    }

    fn read_registers(&self, out: &mut [u8]) -> usize {
        out[..self.registers.len()].copy_from_slice(&self.registers);
        self.registers.len()
    }

    fn write_registers(&mut self, data: &[u8]) -> XenResult<()> {
        let n = self.registers.len();
        if data.len() < n {
            return Err(Errno::EINVAL);
        }
        self.registers.copy_from_slice(&data[..n]);
        Ok(())
    }
}

/// The fake per-domain arch object: no nested tables to keep in step, no
/// guest timers; it creates identity-mapped [`FakeVcpu`]s.
#[derive(Default)]
pub struct FakeDomain;

impl ArchDomain for FakeDomain {
    fn create_vcpu(&self, _domain: &Domain, _id: u32) -> Box<dyn ArchVcpu> {
        FakeVcpu::identity(RAM_PAGES).boxed()
    }

    fn sync_p2m(&self, domain: &Domain) {
        domain.p2m.lock().take_changes();
    }

    fn timer_deadline(&self, _vcpu: u32) -> Option<u64> {
        None
    }

    fn exits(&self) -> u64 {
        0
    }

    fn soft_reset_supported(&self) -> XenResult<()> {
        // The arch the fake models offers soft reset (x86 HVM).
        Ok(())
    }
}

/// A scheduler slot for `domain` with the given vCPU contexts (one per vCPU).
pub fn slot(domain: Arc<Domain>, vcpus: Vec<Box<dyn ArchVcpu>>) -> DomainSlot {
    assert_eq!(vcpus.len(), domain.max_vcpus() as usize, "one context per vCPU");
    DomainSlot::from_parts(domain, Box::new(FakeDomain), vcpus)
}
