//! The SVM execution backend: [`SvmVcpu`] implements the core's
//! [`ArchVcpu`] — VMCB per vCPU, nested page tables kept in sync with the
//! domain's p2m, the exits handled in place (CPUID, MSRs, port I/O, the
//! hypercall page), the Xen hypercall conventions, callback-vector upcalls,
//! guest page walks and the gdb register file.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::{ArchDomain, ArchVcpu, GdbRegisters, GuestMode, Preemption, VcpuExit, VcpuInitContext};
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem, VirtMem};
use lantern_common::memory::{P2mType, PAGE_SHIFT, PAGE_SIZE};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;
use xen_abi::nr::{hvm_param, xenver};

use crate::cpuid;
use crate::npt::NestedPageTable;
use crate::paging::{self, PagingState};
use crate::svm::{self, FxArea, GuestRegs, PermissionMaps, StartMode};
use crate::vmcb::{
    efer, event, exit, int_ctl, Vmcb, VmcbSegment, ATTR_CODE32, ATTR_CODE64, ATTR_DATA32, ATTR_TSS_BUSY,
};

/// The debug port whose bytes become the domain's console output.
pub const DEBUG_PORT: u16 = 0xE9;

/// The I/O and MSR permission maps, one copy shared by every vCPU (every
/// access is intercepted).
static MAPS: spin::Once<usize> = spin::Once::new();

fn maps_pa() -> u64 {
    *MAPS.call_once(|| Box::leak(PermissionMaps::intercept_all()) as *const PermissionMaps as usize) as u64
}

/// The platform-device window (I/O APIC, HPET, local APIC) a PVH guest may
/// probe although Lantern emulates none of those devices.
const UNCLAIMED_MMIO: core::ops::Range<u64> = 0xFEC0_0000..0xFF00_0000;

/// A page standing in for unclaimed MMIO: reads as all ones at first.
#[repr(C, align(4096))]
struct SinkPage([u8; PAGE_SIZE]);

/// The per-domain SVM object ([`ArchDomain`]): owns what the domain's vCPUs
/// share.
pub struct SvmDomain {
    shared: Arc<SvmShared>,
}

impl SvmDomain {
    /// Empty nested tables; they fill from the p2m's change list on first run.
    pub fn new() -> Self {
        SvmDomain {
            shared: Arc::new(SvmShared {
                npt: spin::Mutex::new(NestedPageTable::new()),
                sinks: spin::Mutex::new(alloc::vec::Vec::new()),
                exits: AtomicU64::new(0),
            }),
        }
    }
}

impl Default for SvmDomain {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchDomain for SvmDomain {
    fn create_vcpu(&self, domain: &Domain, id: u32) -> Box<dyn ArchVcpu> {
        Box::new(SvmVcpu::new(self.shared.clone(), domain.id, id))
    }

    fn sync_p2m(&self, domain: &Domain) {
        self.shared.sync(domain);
    }

    fn timer_deadline(&self, _vcpu: u32) -> Option<u64> {
        // No guest timer of its own yet: a halted vCPU waits for an event.
        None
    }

    fn exits(&self) -> u64 {
        self.shared.exits.load(Ordering::Relaxed)
    }
}

/// What a domain's vCPUs share: the nested page tables, the pages backing
/// unclaimed MMIO probes, and the exit count.
struct SvmShared {
    npt: spin::Mutex<NestedPageTable>,
    sinks: spin::Mutex<alloc::vec::Vec<Box<SinkPage>>>,
    exits: AtomicU64,
}

impl SvmShared {
    /// Xen answers accesses to MMIO nobody claims with all-ones reads and
    /// dropped writes (guests probe for an HPET or APIC that way). Without
    /// decode assists we cannot emulate the access, so the frame gets a
    /// private page filled with 0xFF instead: a probe reads "no device".
    /// Only for the platform-device window; any other stray access still
    /// crashes the domain.
    fn map_unclaimed(&self, d: &Domain, gpa: u64) -> bool {
        if !UNCLAIMED_MMIO.contains(&gpa) || d.p2m.lock().get(Gpa(gpa).gfn()).is_some() {
            return false;
        }
        let page = Box::new(SinkPage([0xFF; PAGE_SIZE]));
        self.npt.lock().map(gpa & !0xFFF, page.0.as_ptr() as u64, true);
        self.sinks.lock().push(page);
        true
    }

    /// Applies the p2m changes since the last call to the nested tables.
    fn sync(&self, d: &Domain) {
        let mut p2m = d.p2m.lock();
        let changes = p2m.take_changes();
        if changes.is_empty() {
            return;
        }
        let mut npt = self.npt.lock();
        for gfn in changes {
            match p2m.get(gfn) {
                Some(e) => npt.map(gfn.0 << PAGE_SHIFT, e.page.host_addr(), e.p2mt == P2mType::RamRw),
                None => npt.unmap(gfn.0 << PAGE_SHIFT),
            }
        }
    }
}

/// One vCPU's SVM context.
pub struct SvmVcpu {
    vcpu_id: u32,
    domid: u16,
    dom: Arc<SvmShared>,
    vmcb: Box<Vmcb>,
    regs: GuestRegs,
    fx: Box<FxArea>,
}

/// `VCPU_HVM_MODE_32B` / `VCPU_HVM_MODE_64B` of `vcpu_hvm_context`.
const VCPU_HVM_MODE_32B: u32 = 0;
const VCPU_HVM_MODE_64B: u32 = 1;
/// `sizeof(struct vcpu_hvm_context)`: mode, pad, then the 120-byte union.
pub const VCPU_HVM_CONTEXT_SIZE: usize = 128;

impl SvmVcpu {
    /// vCPU `vcpu_id` of domain `domid`, in its reset state (32-bit flat
    /// protected mode at 0) until it is initialised or powered on.
    fn new(dom: Arc<SvmShared>, domid: u16, vcpu_id: u32) -> Self {
        let mut v = SvmVcpu {
            vcpu_id,
            domid,
            dom,
            vmcb: Box::new(Vmcb::zeroed()),
            regs: GuestRegs::default(),
            fx: Box::new(svm::initial_fx()),
        };
        v.reset(StartMode::Flat32, 0);
        v
    }

    /// Starts the vCPU the way Xen starts a PVH guest: 32-bit flat protected
    /// mode, paging off, at `entry` with `ebx` = `start_info`.
    fn power_on_pvh(&mut self, entry: u64, start_info: u64) {
        self.reset(StartMode::Flat32, entry);
        self.regs.rbx = start_info;
    }

    fn reset(&mut self, mode: StartMode, rip: u64) {
        let ncr3 = self.dom.npt.lock().root_pa();
        svm::init_vmcb(&mut self.vmcb, maps_pa(), ncr3, mode, rip);
        self.regs = GuestRegs::default();
        *self.fx = svm::initial_fx();
    }

    /// The VMCB (for diagnostics and gdb).
    pub fn vmcb(&self) -> &Vmcb {
        &self.vmcb
    }

    fn paging_state(&self) -> PagingState {
        let s = &self.vmcb.save;
        PagingState { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer }
    }

    fn is_long(&self) -> bool {
        self.vmcb.save.efer & efer::LMA != 0 && self.vmcb.save.cs.attrib & (1 << 9) != 0
    }

    fn inject_exception(&mut self, vector: u8, error: Option<u32>) {
        self.vmcb.control.eventinj = event::exception(vector, error);
    }

    fn crash(&self, d: &Domain, why: &str) -> VcpuExit {
        let c = &self.vmcb.control;
        log::error!(
            "d{}v{} crashed: {} (exit code {:#x}, rip {:#x}, gpa {:#x}, info1 {:#x}, cr0 {:#x}, cs {:#x})",
            d.id,
            self.vcpu_id,
            why,
            c.exitcode,
            self.vmcb.save.rip,
            c.exitinfo2,
            c.exitinfo1,
            self.vmcb.save.cr0,
            self.vmcb.save.cs.selector
        );
        VcpuExit::Fault
    }

    /// The callback vector to deliver upcalls on, if the guest set one up.
    fn callback_vector(&self, d: &Domain) -> Option<u8> {
        let per_vcpu = d.vcpu(self.vcpu_id).map(|v| v.upcall_vector()).unwrap_or(0);
        if per_vcpu != 0 {
            return Some(per_vcpu);
        }
        let param = d.hvm_param(hvm_param::CALLBACK_IRQ as usize).unwrap_or(0);
        // HVM_PARAM_CALLBACK_TYPE_VECTOR (2) in bits 63:56.
        (param >> hvm_param::CALLBACK_TYPE_SHIFT == hvm_param::CALLBACK_TYPE_VECTOR && param as u8 >= 0x10)
            .then_some(param as u8)
    }

    /// Raises the callback vector as a virtual interrupt while
    /// `evtchn_upcall_pending` is set (level-like, as Xen's callback vector).
    fn update_upcall(&mut self, d: &Domain) {
        let Ok(v) = d.vcpu(self.vcpu_id) else { return };
        let Some(vector) = self.callback_vector(d) else { return };
        let c = &mut self.vmcb.control;
        if c.int_ctl & int_ctl::V_IRQ != 0 || !d.upcall_pending(v) {
            return;
        }
        c.int_ctl = (c.int_ctl & !(0xFFu64 << int_ctl::V_INTR_VECTOR_SHIFT) & !(0xF << int_ctl::V_INTR_PRIO_SHIFT))
            | int_ctl::V_IRQ
            | int_ctl::V_IGN_TPR
            | (0xF << int_ctl::V_INTR_PRIO_SHIFT)
            | ((vector as u64) << int_ctl::V_INTR_VECTOR_SHIFT);
    }

    fn latch_abi(&self, d: &Domain) {
        let abi = self.guest_abi(d);
        if let Ok(true) = d.latch_abi(abi) {
            log::info!("d{}: {} guest ABI latched", d.id, abi.name());
        }
    }

    fn write_hypercall_page(&mut self, d: &Domain, value: u64) -> bool {
        if value & 0xFFF != 0 {
            return false;
        }
        let mut page = [0u8; PAGE_SIZE];
        for (i, chunk) in page.chunks_exact_mut(32).enumerate() {
            chunk.copy_from_slice(&cpuid::hypercall_stub(i as u32));
        }
        if PhysMem::new(d).write_bytes(Gpa(value), &page).is_err() {
            return false;
        }
        self.latch_abi(d);
        true
    }

    fn handle_cpuid(&mut self) {
        let leaf = self.vmcb.save.rax as u32;
        let sub = self.regs.rcx as u32;
        let r = cpuid::xen_leaf(leaf, self.vcpu_id, self.domid, (xenver::LANTERN_MAJOR, xenver::LANTERN_MINOR))
            .unwrap_or_else(|| {
                let h = core::arch::x86_64::__cpuid_count(leaf, sub);
                let r = cpuid::Regs { eax: h.eax, ebx: h.ebx, ecx: h.ecx, edx: h.edx };
                cpuid::filter_host_leaf(leaf, sub, r, self.vcpu_id)
            });
        self.vmcb.save.rax = r.eax as u64;
        self.regs.rbx = r.ebx as u64;
        self.regs.rcx = r.ecx as u64;
        self.regs.rdx = r.edx as u64;
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(2);
    }

    /// Emulates RDMSR/WRMSR; `false` means "raise #GP".
    fn handle_msr(&mut self, d: &Domain, write: bool) -> bool {
        let msr = self.regs.rcx as u32;
        let value = (self.regs.rdx << 32) | (self.vmcb.save.rax & 0xFFFF_FFFF);
        let s = &mut self.vmcb.save;
        let slot: Option<&mut u64> = match msr {
            0xC000_0081 => Some(&mut s.star),
            0xC000_0082 => Some(&mut s.lstar),
            0xC000_0083 => Some(&mut s.cstar),
            0xC000_0084 => Some(&mut s.sfmask),
            0xC000_0100 => Some(&mut s.fs.base),
            0xC000_0101 => Some(&mut s.gs.base),
            0xC000_0102 => Some(&mut s.kernel_gs_base),
            0x174 => Some(&mut s.sysenter_cs),
            0x175 => Some(&mut s.sysenter_esp),
            0x176 => Some(&mut s.sysenter_eip),
            0x277 => Some(&mut s.g_pat),
            0x1D9 => Some(&mut s.dbgctl),
            _ => None,
        };
        let result: Option<u64> = if let Some(slot) = slot {
            if write {
                *slot = value;
            }
            Some(*slot)
        } else {
            match (msr, write) {
                (0xC000_0080, false) => Some(s.efer & !efer::SVME),
                // Only SCE, LME and NXE are the guest's to set (LMA is
                // hardware's, SVME is ours): anything else is a #GP, as it
                // would otherwise fail VMRUN's checks and crash the domain.
                (0xC000_0080, true) if value & !(efer::SCE | efer::LME | efer::LMA | efer::NXE) == 0 => {
                    s.efer = (value & !efer::LMA) | (s.efer & efer::LMA) | efer::SVME;
                    Some(0)
                }
                (cpuid::HYPERCALL_PAGE_MSR, true) => {
                    if !self.write_hypercall_page(d, value) {
                        return false;
                    }
                    Some(0)
                }
                (0x10, false) => {
                    // SAFETY: RDTSC has no side effects.
                    Some(unsafe { core::arch::x86_64::_rdtsc() })
                }
                // No local APIC is emulated (CPUID hides it), so APIC_BASE
                // (0x1B) faults like other absent MSRs. MTRR capabilities/
                // default type, MISC_ENABLE, microcode
                // signature, MCG_CAP, SPEC_CTRL, TSC_AUX: benign zeros.
                (0xFE | 0x2FF | 0x1A0 | 0x8B | 0x179 | 0x48 | 0xC000_0103, false) => Some(0),
                (0x2FF | 0x48 | 0x49 | 0x8B | 0xC000_0103 | 0x1A0, true) => Some(0),
                _ => None,
            }
        };
        let Some(v) = result else { return false };
        if !write {
            self.vmcb.save.rax = v & 0xFFFF_FFFF;
            self.regs.rdx = v >> 32;
        }
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(2);
        true
    }

    fn handle_io(&mut self, d: &Domain) -> Option<VcpuExit> {
        let info = self.vmcb.control.exitinfo1;
        let port = (info >> 16) as u16;
        let is_in = info & 1 != 0;
        let string = info & (1 << 2) != 0;
        let rep = info & (1 << 3) != 0;
        let size = ((info >> 4) & 7) as u32; // one-hot: 1, 2 or 4 bytes
        let next_rip = self.vmcb.control.exitinfo2;
        if string {
            if is_in {
                return Some(self.crash(d, "string IN is not emulated"));
            }
            // Address size from EXITINFO1 (A16/A32/A64); QEMU leaves those
            // bits clear, so fall back to the code segment's default.
            let addr_mask = match (info >> 7) & 7 {
                4 => u64::MAX,
                2 => 0xFFFF_FFFF,
                1 => 0xFFFF,
                _ if self.is_long() => u64::MAX,
                _ if self.vmcb.save.cs.attrib & (1 << 10) != 0 => 0xFFFF_FFFF,
                _ => 0xFFFF,
            };
            // Bounded work per exit: a longer `rep outs` is resumed by
            // re-executing the instruction with the remaining count.
            const MAX_PER_EXIT: u64 = 4096;
            let total = if rep { self.regs.rcx & addr_mask } else { 1 };
            let count = total.min(MAX_PER_EXIT);
            // EFLAGS.DF walks the source downwards.
            let step = if self.vmcb.save.rflags & (1 << 10) != 0 {
                (size.max(1) as u64).wrapping_neg()
            } else {
                size.max(1) as u64
            };
            for i in 0..count {
                let offset = self.regs.rsi.wrapping_add(i.wrapping_mul(step)) & addr_mask;
                let gva = self.vmcb.save.ds.base.wrapping_add(offset);
                let mut b = [0u8; 1];
                if VirtMem::new(d, self).read_bytes(Gva(gva), &mut b).is_err() {
                    self.inject_exception(14, Some(0));
                    return None;
                }
                if port == DEBUG_PORT {
                    d.console.lock().write(&b);
                }
            }
            let keep = !addr_mask;
            let advance = |r: u64, by: u64| (r & keep) | (r.wrapping_add(by) & addr_mask);
            self.regs.rsi = advance(self.regs.rsi, count.wrapping_mul(step));
            if rep {
                self.regs.rcx = advance(self.regs.rcx, count.wrapping_neg());
                if total > count {
                    return None; // RIP unchanged: continue next entry.
                }
            }
        } else if is_in {
            // No device answers: all ones. A 32-bit IN zero-extends into RAX.
            let rax = &mut self.vmcb.save.rax;
            *rax = match size {
                1 => *rax | 0xFF,
                2 => *rax | 0xFFFF,
                _ => 0xFFFF_FFFF,
            };
        } else if port == DEBUG_PORT {
            d.console.lock().write(&[self.vmcb.save.rax as u8]);
        }
        self.vmcb.save.rip = next_rip;
        None
    }

    /// General register `n` (ModRM/REX numbering), honouring the operand size.
    fn gpr(&self, n: u8) -> u64 {
        let r = &self.regs;
        match n {
            0 => self.vmcb.save.rax,
            1 => r.rcx,
            2 => r.rdx,
            3 => r.rbx,
            4 => self.vmcb.save.rsp,
            5 => r.rbp,
            6 => r.rsi,
            7 => r.rdi,
            8 => r.r8,
            9 => r.r9,
            10 => r.r10,
            11 => r.r11,
            12 => r.r12,
            13 => r.r13,
            14 => r.r14,
            _ => r.r15,
        }
    }

    /// Emulates `mov cr4, reg` (the only CR4 write form): decodes the
    /// instruction at RIP (no decode assists under TCG) and loads the value
    /// if every bit is one the guest may set, else raises #GP.
    fn handle_cr4_write(&mut self, d: &Domain) -> Option<VcpuExit> {
        // Up to 15 bytes, as far as they are readable (the instruction may
        // end just before an unmapped page).
        let mut bytes = [0u8; 15];
        let rip = self.vmcb.save.cs.base.wrapping_add(self.vmcb.save.rip);
        VirtMem::new(d, self).read_prefix(Gva(rip), &mut bytes);
        let Some((len, reg)) = decode_mov_to_cr4(&bytes, self.is_long()) else {
            return Some(self.crash(d, "CR4 write by an instruction the hypervisor cannot decode"));
        };
        let mut value = self.gpr(reg);
        if !self.is_long() {
            value &= 0xFFFF_FFFF;
        }
        // VME..OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, SMEP, SMAP; XSAVE is hidden
        // and VMX absent, so OSXSAVE and VMXE are reserved here.
        const ALLOWED: u64 = 0x0FFF | (1 << 16) | (1 << 17) | (1 << 20) | (1 << 21);
        let pae_off_in_long = self.vmcb.save.efer & efer::LMA != 0 && value & 0x20 == 0;
        if value & !ALLOWED != 0 || pae_off_in_long {
            self.inject_exception(13, Some(0));
            return None;
        }
        self.vmcb.save.cr4 = value;
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(len as u64);
        None
    }

    fn hypercall_exit(&mut self) -> Option<VcpuExit> {
        if self.vmcb.save.cpl != 0 {
            // Xen refuses hypercalls from guest user mode.
            self.complete_hypercall(-(Errno::EPERM.0 as i64));
            return None;
        }
        let r = &self.regs;
        let (nr, args) = if self.is_long() {
            (self.vmcb.save.rax, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9])
        } else {
            let m = 0xFFFF_FFFF;
            (self.vmcb.save.rax & m, [r.rbx & m, r.rcx & m, r.rdx & m, r.rsi & m, r.rdi & m, r.rbp & m])
        };
        Some(VcpuExit::Hypercall { nr, args })
    }

    fn load_hvm_context(&mut self, b: &[u8]) -> XenResult<()> {
        if b.len() < VCPU_HVM_CONTEXT_SIZE {
            return Err(Errno::EINVAL);
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4])) as u64;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let base = 8; // mode + pad
        match u32_at(0) as u32 {
            VCPU_HVM_MODE_32B => {
                let r = |i: usize| u32_at(base + 4 * i);
                let (cr0, cr3, cr4) = (r(10), r(11), r(12));
                let efer_v = u64_at(base + 56);
                let seg = |i: usize, sel: u16, default: u16| {
                    let ar = u16_at(base + 104 + 2 * i);
                    VmcbSegment::new(
                        sel,
                        if ar == 0 { default } else { ar },
                        u32_at(base + 84 + 4 * i) as u32,
                        u32_at(base + 64 + 4 * i),
                    )
                };
                self.reset(StartMode::Flat32, r(8));
                let s = &mut self.vmcb.save;
                s.cs = seg(0, 0x08, ATTR_CODE32);
                s.ds = seg(1, 0x10, ATTR_DATA32);
                s.ss = seg(2, 0x10, ATTR_DATA32);
                s.es = seg(3, 0x10, ATTR_DATA32);
                s.tr = seg(4, 0, ATTR_TSS_BUSY);
                s.cr0 = cr0 | 0x10;
                s.cr3 = cr3;
                s.cr4 = cr4;
                s.efer = efer_v | efer::SVME;
                s.rflags = r(9) | 2;
                s.rax = r(0);
                s.rsp = r(4);
                self.regs.rcx = r(1);
                self.regs.rdx = r(2);
                self.regs.rbx = r(3);
                self.regs.rbp = r(5);
                self.regs.rsi = r(6);
                self.regs.rdi = r(7);
            }
            VCPU_HVM_MODE_64B => {
                let r = |i: usize| u64_at(base + 8 * i);
                let (cr0, cr3, cr4, efer_v) = (r(10), r(11), r(12), r(13));
                if cr0 & (1 << 31) == 0 || efer_v & efer::LME == 0 || cr4 & 0x20 == 0 {
                    return Err(Errno::EINVAL);
                }
                self.reset(StartMode::Long64 { cr3 }, r(8));
                let s = &mut self.vmcb.save;
                s.cs = VmcbSegment::new(0x08, ATTR_CODE64, 0xFFFF_FFFF, 0);
                s.cr0 = cr0 | 0x10;
                s.cr4 = cr4;
                s.efer = efer_v | efer::LMA | efer::SVME;
                s.rflags = r(9) | 2;
                s.rax = r(0);
                s.rsp = r(4);
                self.regs.rcx = r(1);
                self.regs.rdx = r(2);
                self.regs.rbx = r(3);
                self.regs.rbp = r(5);
                self.regs.rsi = r(6);
                self.regs.rdi = r(7);
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }
}

/// Decodes `[prefixes] [REX] 0F 22 /r` with ModRM.reg = 4 (CR4) and a
/// register operand; returns (instruction length, source register number).
pub fn decode_mov_to_cr4(bytes: &[u8], long: bool) -> Option<(usize, u8)> {
    let mut i = 0;
    // Legacy prefixes carry no meaning for MOV to CR (operand size is fixed).
    while i < 4 && matches!(bytes.get(i)?, 0x66 | 0x67 | 0xF2 | 0xF3 | 0x2E | 0x3E | 0x26 | 0x36 | 0x64 | 0x65) {
        i += 1;
    }
    let mut rex = 0u8;
    if long && (0x40..=0x4F).contains(bytes.get(i)?) {
        rex = bytes[i];
        i += 1;
    }
    if bytes.get(i..i + 2)? != [0x0F, 0x22] {
        return None;
    }
    let modrm = *bytes.get(i + 2)?;
    let reg = ((modrm >> 3) & 7) | ((rex & 4) << 1);
    if reg != 4 {
        return None;
    }
    // MOV to CR always uses the register form, whatever ModRM.mod says.
    let rm = (modrm & 7) | ((rex & 1) << 3);
    Some((i + 3, rm))
}

impl ArchVcpu for SvmVcpu {
    fn run(&mut self, d: &Domain, preempt: &mut dyn Preemption) -> VcpuExit {
        loop {
            // Exits handled here may change the p2m (a guest's hypercall page).
            self.dom.sync(d);
            self.update_upcall(d);
            let code = svm::vmrun_current(&mut self.vmcb, &mut self.regs, &mut self.fx);
            self.dom.exits.fetch_add(1, Ordering::Relaxed);
            self.vmcb.control.eventinj = 0;
            match code {
                exit::VMMCALL => {
                    if let Some(e) = self.hypercall_exit() {
                        return e;
                    }
                }
                exit::CPUID => self.handle_cpuid(),
                exit::CR4_WRITE => {
                    if let Some(e) = self.handle_cr4_write(d) {
                        return e;
                    }
                }
                exit::MSR => {
                    if !self.handle_msr(d, self.vmcb.control.exitinfo1 & 1 != 0) {
                        self.inject_exception(13, Some(0));
                    }
                }
                exit::IOIO => {
                    if let Some(e) = self.handle_io(d) {
                        return e;
                    }
                }
                exit::HLT => {
                    self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(1);
                    return VcpuExit::Halted;
                }
                exit::INTR => {
                    // The board's periodic tick preempts; any other host
                    // interrupt is serviced and the guest continues its slice.
                    return if preempt.host_interrupt() { VcpuExit::Preempted } else { VcpuExit::HostInterrupt };
                }
                exit::NMI | exit::VINTR => {}
                exit::INVD => self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(2),
                exit::NPF => {
                    if !self.dom.map_unclaimed(d, self.vmcb.control.exitinfo2) {
                        return self.crash(d, "nested page fault (unmapped or read-only gpa)");
                    }
                }
                exit::SHUTDOWN => return self.crash(d, "triple fault"),
                exit::VMRUN | 0x82..=0x86 | exit::XSETBV => self.inject_exception(6, None),
                c if c & 0xFFFF_FFFF == exit::INVALID => return self.crash(d, "invalid guest state (VMRUN failed)"),
                c if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&c) => {
                    return self.crash(d, "machine check");
                }
                _ => return self.crash(d, "unhandled #VMEXIT"),
            }
        }
    }

    fn complete_hypercall(&mut self, ret: i64) {
        self.vmcb.save.rax = if self.is_long() { ret as u64 } else { ret as u32 as u64 };
        self.vmcb.save.rip = self.vmcb.save.rip.wrapping_add(3);
    }

    fn inject_upcall(&mut self, d: &Domain) {
        self.update_upcall(d);
    }

    fn translate(&self, d: &Domain, gva: Gva, write: bool) -> XenResult<Gpa> {
        let mem = PhysMem::new(d);
        let mut read = |gpa: u64, size: usize| -> XenResult<u64> {
            let mut b = [0u8; 8];
            mem.read_bytes(Gpa(gpa), &mut b[..size])?;
            Ok(u64::from_le_bytes(b))
        };
        paging::translate(&self.paging_state(), gva.0, write, &mut read).map(Gpa)
    }

    fn guest_abi(&self, _domain: &Domain) -> &'static dyn GuestAbi {
        // Xen's rule: a guest in 64-bit mode speaks the native layout, any
        // other mode the 32-bit compat one.
        if self.is_long() {
            &crate::layout::X86_64
        } else {
            &crate::layout::X86_32
        }
    }

    fn mode(&self) -> GuestMode {
        if self.is_long() {
            GuestMode::Long64
        } else if self.vmcb.save.cr0 & 1 != 0 {
            GuestMode::Protected32
        } else {
            GuestMode::Real
        }
    }

    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        match ctx {
            VcpuInitContext::XenInitialise(b) => self.load_hvm_context(b),
            VcpuInitContext::PowerOn { entry, context_id } => {
                self.power_on_pvh(*entry, *context_id);
                Ok(())
            }
        }
    }

    fn initialise_arg_size(&self) -> usize {
        VCPU_HVM_CONTEXT_SIZE
    }
}

impl GdbRegisters for SvmVcpu {
    fn target_xml(&self) -> &'static str {
        crate::gdbregs::TARGET_XML
    }

    fn read_registers(&self, out: &mut [u8]) -> usize {
        crate::gdbregs::read(&self.vmcb, &self.regs, &self.fx, out)
    }

    fn write_registers(&mut self, data: &[u8]) -> XenResult<()> {
        crate::gdbregs::write(&mut self.vmcb, &mut self.regs, &mut self.fx, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lantern_common::addr::Gfn;
    use lantern_common::clock::{Clock, TimeSample};
    use lantern_common::console::NoSink;
    use lantern_common::domain::DomainConfig;

    struct FixedClock;
    impl Clock for FixedClock {
        fn sample(&self) -> TimeSample {
            TimeSample { system_time_ns: 1000, tsc: 5000, tsc_to_system_mul: 1 << 31, tsc_shift: 0 }
        }
    }

    fn domain(vcpus: u32) -> Arc<Domain> {
        Domain::new(DomainConfig {
            id: 3,
            name: "t".into(),
            max_vcpus: vcpus,
            ram_pages: 64,
            abi: &crate::layout::X86_64,
            clock: Arc::new(FixedClock),
            console: Arc::new(NoSink),
        })
        .unwrap()
    }

    fn vcpu(id: u32) -> SvmVcpu {
        let mut v = SvmVcpu::new(SvmDomain::new().shared, 3, id);
        v.initialise(&VcpuInitContext::PowerOn { entry: 0x1000, context_id: 0x2000 }).unwrap();
        v
    }

    #[test]
    fn pvh_entry_state() {
        let v = vcpu(0);
        assert_eq!(v.regs.rbx, 0x2000);
        assert_eq!(v.vmcb.save.rip, 0x1000);
        assert_eq!(v.mode(), GuestMode::Protected32);
        assert_eq!(v.initialise_arg_size(), 128);
    }

    #[test]
    fn hypercall_conventions() {
        let mut v = vcpu(0);
        // 32-bit: eax, ebx, ecx, edx, esi, edi, ebp (upper halves ignored).
        v.vmcb.save.rax = 0xFFFF_0000_0000_0011;
        v.regs = GuestRegs { rbx: 1, rcx: 2, rdx: 3, rsi: 4, rdi: 5, rbp: 0x1_0000_0006, ..GuestRegs::default() };
        assert_eq!(v.hypercall_exit(), Some(VcpuExit::Hypercall { nr: 17, args: [1, 2, 3, 4, 5, 6] }));
        v.complete_hypercall(-38);
        assert_eq!(v.vmcb.save.rax, 0xFFFF_FFDA);
        assert_eq!(v.vmcb.save.rip, 0x1003);
        // 64-bit: rax, rdi, rsi, rdx, r10, r8.
        v.vmcb.save.efer |= efer::LMA;
        v.vmcb.save.cs.attrib = ATTR_CODE64;
        v.vmcb.save.rax = 24;
        v.regs = GuestRegs { rdi: 10, rsi: 11, rdx: 12, r10: 13, r8: 14, r9: 15, ..GuestRegs::default() };
        assert_eq!(v.hypercall_exit(), Some(VcpuExit::Hypercall { nr: 24, args: [10, 11, 12, 13, 14, 15] }));
        v.complete_hypercall(-38);
        assert_eq!(v.vmcb.save.rax as i64, -38);
        // From guest user mode: -EPERM without reaching the core.
        v.vmcb.save.cpl = 3;
        assert_eq!(v.hypercall_exit(), None);
        assert_eq!(v.vmcb.save.rax as i64, -1);
    }

    #[test]
    fn mov_to_cr4_decoding() {
        assert_eq!(decode_mov_to_cr4(&[0x0F, 0x22, 0xE5], true), Some((3, 5))); // mov cr4, rbp
        assert_eq!(decode_mov_to_cr4(&[0x41, 0x0F, 0x22, 0xE0], true), Some((4, 8))); // mov cr4, r8
        assert_eq!(decode_mov_to_cr4(&[0x0F, 0x22, 0xE0], false), Some((3, 0))); // mov cr4, eax
        assert_eq!(decode_mov_to_cr4(&[0x0F, 0x22, 0xC0], true), None); // mov cr0, rax
        assert_eq!(decode_mov_to_cr4(&[0x44, 0x0F, 0x22, 0xE0], true), None); // cr12
        assert_eq!(decode_mov_to_cr4(&[0x90; 15], true), None);
    }

    #[test]
    fn cr4_write_checked() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.vmcb.save.rip = 0x3000;
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x0F, 0x22, 0xE0]).unwrap();
        v.vmcb.save.rax = 0x20 | 0x200;
        assert_eq!(v.handle_cr4_write(&d), None);
        assert_eq!((v.vmcb.save.cr4, v.vmcb.save.rip), (0x220, 0x3003));
        v.vmcb.save.rip = 0x3000;
        v.vmcb.save.rax = 1 << 13; // VMXE
        assert_eq!(v.handle_cr4_write(&d), None);
        assert_eq!(v.vmcb.control.eventinj, event::exception(13, Some(0)));
        assert_eq!(v.vmcb.save.rip, 0x3000);
    }

    #[test]
    fn cpuid_xen_leaves() {
        let mut v = vcpu(5);
        v.vmcb.save.rax = 0x4000_0004;
        v.handle_cpuid();
        assert_eq!((v.regs.rbx, v.regs.rcx), (5, 3));
        assert_eq!(v.vmcb.save.rip, 0x1002);
    }

    #[test]
    fn hypercall_page_latches_compat_in_32bit_mode() {
        let d = domain(1);
        let mut v = vcpu(0);
        v.regs.rcx = cpuid::HYPERCALL_PAGE_MSR as u64;
        v.vmcb.save.rax = 0x5000;
        assert!(v.handle_msr(&d, true));
        let mut stub = [0u8; 9];
        PhysMem::new(&d).read_bytes(Gpa(0x5000 + 17 * 32), &mut stub).unwrap();
        assert_eq!(stub, [0xB8, 17, 0, 0, 0, 0x0F, 0x01, 0xD9, 0xC3]);
        assert_eq!(d.abi().name(), "x86_32");
        // Outside guest memory or not page aligned: #GP (false).
        v.vmcb.save.rax = 0x10_0000;
        assert!(!v.handle_msr(&d, true));
        v.vmcb.save.rax = 0x5001;
        assert!(!v.handle_msr(&d, true));
    }

    #[test]
    fn msrs() {
        let d = domain(1);
        let mut v = vcpu(0);
        // EFER keeps SVME hidden and set; LMA stays hardware-owned.
        v.regs.rcx = 0xC000_0080;
        v.vmcb.save.rax = efer::LME;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.efer, efer::LME | efer::SVME);
        assert!(v.handle_msr(&d, false));
        assert_eq!(v.vmcb.save.rax, efer::LME);
        v.vmcb.save.rax = 1 << 20;
        assert!(!v.handle_msr(&d, true), "reserved EFER bit");
        // FS base lives in the VMCB.
        v.regs.rcx = 0xC000_0100;
        v.vmcb.save.rax = 0x1234;
        v.regs.rdx = 0xFFFF_8000;
        assert!(v.handle_msr(&d, true));
        assert_eq!(v.vmcb.save.fs.base, 0xFFFF_8000_0000_1234);
        // Unknown MSRs (and APIC_BASE: no local APIC) fault.
        v.regs.rcx = 0x1B;
        assert!(!v.handle_msr(&d, false));
    }

    #[test]
    fn hvm_context_64() {
        let mut v = vcpu(1);
        let mut ctx = [0u8; VCPU_HVM_CONTEXT_SIZE];
        ctx[0] = VCPU_HVM_MODE_64B as u8;
        let put = |ctx: &mut [u8], i: usize, val: u64| ctx[8 + 8 * i..16 + 8 * i].copy_from_slice(&val.to_le_bytes());
        put(&mut ctx, 8, 0x20_0000); // rip
        put(&mut ctx, 4, 0x30_0000); // rsp
        put(&mut ctx, 10, 0x8000_0011); // cr0
        put(&mut ctx, 11, 0x9000); // cr3
        put(&mut ctx, 12, 0x20); // cr4
        put(&mut ctx, 13, efer::LME); // efer
        v.initialise(&VcpuInitContext::XenInitialise(&ctx)).unwrap();
        assert_eq!(v.mode(), GuestMode::Long64);
        assert_eq!((v.vmcb.save.rip, v.vmcb.save.rsp, v.vmcb.save.cr3), (0x20_0000, 0x30_0000, 0x9000));
        // Long mode without paging is refused.
        put(&mut ctx, 10, 0x11);
        assert_eq!(v.initialise(&VcpuInitContext::XenInitialise(&ctx)), Err(Errno::EINVAL));
        assert_eq!(v.initialise(&VcpuInitContext::XenInitialise(&ctx[..64])), Err(Errno::EINVAL));
    }

    #[test]
    fn upcall_vector_raised_while_pending() {
        let d = domain(1);
        let mut v = vcpu(0);
        d.vcpu(0).unwrap().set_upcall_vector(0xF3);
        v.update_upcall(&d);
        assert_eq!(v.vmcb.control.int_ctl & int_ctl::V_IRQ, 0, "nothing pending yet");
        d.vcpu_mark_events_pending(d.vcpu(0).unwrap());
        v.update_upcall(&d);
        assert_ne!(v.vmcb.control.int_ctl & int_ctl::V_IRQ, 0);
        assert_eq!((v.vmcb.control.int_ctl >> int_ctl::V_INTR_VECTOR_SHIFT) as u8, 0xF3);
    }

    #[test]
    fn npt_follows_p2m() {
        let d = domain(1);
        let v = vcpu(0);
        v.dom.sync(&d);
        let (hpa, w) = v.dom.npt.lock().lookup(0x3000).unwrap();
        assert_eq!(hpa, d.p2m.lock().get(Gfn(3)).unwrap().page.host_addr());
        assert!(w);
        d.p2m.lock().remove(Gfn(3));
        v.dom.sync(&d);
        assert_eq!(v.dom.npt.lock().lookup(0x3000), None);
        // Unclaimed MMIO probes get an all-ones page; RAM holes do not.
        assert!(v.dom.map_unclaimed(&d, 0xFED0_0000));
        assert!(!v.dom.map_unclaimed(&d, 0x8000_0000));
    }
}
