//! The AMD SVM Virtual Machine Control Block (AMD64 APM vol. 2, appendix B):
//! control area (offsets 0x000–0x3FF) and state-save area (0x400–), as
//! `#[repr(C)]` structs with compile-time offset checks, plus the intercept,
//! exit-code and event-injection constants the backend uses.

use core::mem::{offset_of, size_of};

/// A segment register in the VMCB's compressed format.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmcbSegment {
    /// Selector.
    pub selector: u16,
    /// Attributes: descriptor bits 40–47 in 0–7, bits 52–55 (AVL, L, D/B, G) in 8–11.
    pub attrib: u16,
    /// Expanded limit.
    pub limit: u32,
    /// Base address.
    pub base: u64,
}

impl VmcbSegment {
    /// A segment with the given fields.
    pub const fn new(selector: u16, attrib: u16, limit: u32, base: u64) -> Self {
        VmcbSegment { selector, attrib, limit, base }
    }
}

/// Segment attributes: 64-bit code, DPL 0 (P, S, code, readable, accessed, L).
pub const ATTR_CODE64: u16 = 0x029B;
/// Segment attributes: 32-bit flat code, DPL 0 (D/B and G set).
pub const ATTR_CODE32: u16 = 0x0C9B;
/// Segment attributes: 32-bit flat read/write data, DPL 0.
pub const ATTR_DATA32: u16 = 0x0C93;
/// Segment attributes: a real-mode code segment (P, S, code, readable,
/// accessed; 16-bit, byte granular).
pub const ATTR_REAL_CODE: u16 = 0x009B;
/// Segment attributes: a real-mode read/write data segment.
pub const ATTR_REAL_DATA: u16 = 0x0093;
/// Segment attributes: busy 32/64-bit TSS.
pub const ATTR_TSS_BUSY: u16 = 0x008B;
/// Segment attributes: LDT.
pub const ATTR_LDT: u16 = 0x0082;

/// The VMCB control area (APM vol. 2, table B-1).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VmcbControl {
    /// 0x000: intercept CR reads (bits 0–15) and writes (16–31).
    pub intercept_cr: u32,
    /// 0x004: intercept DR reads (0–15) and writes (16–31).
    pub intercept_dr: u32,
    /// 0x008: intercept exception vectors (bit n = vector n).
    pub intercept_exceptions: u32,
    /// 0x00C: first misc intercept word (`INTERCEPT_*` constants).
    pub intercept_misc1: u32,
    /// 0x010: second misc intercept word (`INTERCEPT2_*`).
    pub intercept_misc2: u32,
    /// 0x014: third misc intercept word.
    pub intercept_misc3: u32,
    _rsvd0: [u8; 0x03C - 0x018],
    /// 0x03C: PAUSE filter threshold.
    pub pause_filter_threshold: u16,
    /// 0x03E: PAUSE filter count.
    pub pause_filter_count: u16,
    /// 0x040: physical address of the I/O permission map (12 KiB).
    pub iopm_base_pa: u64,
    /// 0x048: physical address of the MSR permission map (8 KiB).
    pub msrpm_base_pa: u64,
    /// 0x050: TSC offset added to guest RDTSC.
    pub tsc_offset: u64,
    /// 0x058: guest ASID (must be non-zero).
    pub guest_asid: u32,
    /// 0x05C: TLB control (1 = flush all on VMRUN).
    pub tlb_control: u8,
    _rsvd1: [u8; 3],
    /// 0x060: virtual interrupt control (V_TPR, V_IRQ, V_INTR_PRIO, V_INTR_MASKING, vector).
    pub int_ctl: u64,
    /// 0x068: interrupt shadow (bit 0) and guest interrupt mask (bit 1).
    pub int_state: u64,
    /// 0x070: exit code.
    pub exitcode: u64,
    /// 0x078: EXITINFO1.
    pub exitinfo1: u64,
    /// 0x080: EXITINFO2.
    pub exitinfo2: u64,
    /// 0x088: EXITINTINFO (event being delivered when the exit happened).
    pub exitintinfo: u64,
    /// 0x090: nested paging enable (bit 0) and SEV bits.
    pub np_enable: u64,
    /// 0x098: AVIC APIC BAR.
    pub avic_apic_bar: u64,
    /// 0x0A0: GHCB physical address.
    pub ghcb_pa: u64,
    /// 0x0A8: event injection.
    pub eventinj: u64,
    /// 0x0B0: nested page table root (nCR3).
    pub n_cr3: u64,
    /// 0x0B8: LBR virtualization / virtual VMSAVE-VMLOAD enables.
    pub virt_ext: u64,
    /// 0x0C0: VMCB clean bits.
    pub clean_bits: u32,
    _rsvd2: u32,
    /// 0x0C8: next sequential RIP (only with the NRIPS feature; not under TCG).
    pub next_rip: u64,
    /// 0x0D0: number of guest instruction bytes fetched (decode assists).
    pub insn_len: u8,
    /// 0x0D1: guest instruction bytes.
    pub insn_bytes: [u8; 15],
    _rsvd3: [u8; 0x400 - 0x0E0],
}

/// The VMCB state-save area (APM vol. 2, table B-2), at VMCB offset 0x400.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct VmcbSave {
    /// 0x000
    pub es: VmcbSegment,
    /// 0x010
    pub cs: VmcbSegment,
    /// 0x020
    pub ss: VmcbSegment,
    /// 0x030
    pub ds: VmcbSegment,
    /// 0x040
    pub fs: VmcbSegment,
    /// 0x050
    pub gs: VmcbSegment,
    /// 0x060 (selector and attributes unused)
    pub gdtr: VmcbSegment,
    /// 0x070
    pub ldtr: VmcbSegment,
    /// 0x080 (selector and attributes unused)
    pub idtr: VmcbSegment,
    /// 0x090
    pub tr: VmcbSegment,
    _rsvd0: [u8; 0x0CB - 0x0A0],
    /// 0x0CB: current privilege level.
    pub cpl: u8,
    _rsvd1: u32,
    /// 0x0D0: EFER (SVME must be set for VMRUN).
    pub efer: u64,
    _rsvd2: [u8; 0x148 - 0x0D8],
    /// 0x148
    pub cr4: u64,
    /// 0x150
    pub cr3: u64,
    /// 0x158
    pub cr0: u64,
    /// 0x160
    pub dr7: u64,
    /// 0x168
    pub dr6: u64,
    /// 0x170
    pub rflags: u64,
    /// 0x178
    pub rip: u64,
    _rsvd3: [u8; 0x1D8 - 0x180],
    /// 0x1D8
    pub rsp: u64,
    /// 0x1E0
    pub s_cet: u64,
    /// 0x1E8
    pub ssp: u64,
    /// 0x1F0
    pub isst_addr: u64,
    /// 0x1F8
    pub rax: u64,
    /// 0x200
    pub star: u64,
    /// 0x208
    pub lstar: u64,
    /// 0x210
    pub cstar: u64,
    /// 0x218
    pub sfmask: u64,
    /// 0x220
    pub kernel_gs_base: u64,
    /// 0x228
    pub sysenter_cs: u64,
    /// 0x230
    pub sysenter_esp: u64,
    /// 0x238
    pub sysenter_eip: u64,
    /// 0x240
    pub cr2: u64,
    _rsvd4: [u8; 0x268 - 0x248],
    /// 0x268: guest PAT (nested paging).
    pub g_pat: u64,
    /// 0x270
    pub dbgctl: u64,
    /// 0x278
    pub br_from: u64,
    /// 0x280
    pub br_to: u64,
    /// 0x288
    pub last_excp_from: u64,
    /// 0x290
    pub last_excp_to: u64,
    _rsvd5: [u8; 0xC00 - 0x298],
}

/// A whole VMCB: one 4 KiB, page-aligned page.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug)]
pub struct Vmcb {
    /// Control area.
    pub control: VmcbControl,
    /// State-save area.
    pub save: VmcbSave,
}

const _: () = {
    assert!(size_of::<VmcbSegment>() == 16);
    assert!(size_of::<VmcbControl>() == 0x400);
    assert!(size_of::<VmcbSave>() == 0xC00);
    assert!(size_of::<Vmcb>() == 4096);
    assert!(offset_of!(VmcbControl, pause_filter_threshold) == 0x03C);
    assert!(offset_of!(VmcbControl, iopm_base_pa) == 0x040);
    assert!(offset_of!(VmcbControl, msrpm_base_pa) == 0x048);
    assert!(offset_of!(VmcbControl, tsc_offset) == 0x050);
    assert!(offset_of!(VmcbControl, guest_asid) == 0x058);
    assert!(offset_of!(VmcbControl, tlb_control) == 0x05C);
    assert!(offset_of!(VmcbControl, int_ctl) == 0x060);
    assert!(offset_of!(VmcbControl, int_state) == 0x068);
    assert!(offset_of!(VmcbControl, exitcode) == 0x070);
    assert!(offset_of!(VmcbControl, exitinfo1) == 0x078);
    assert!(offset_of!(VmcbControl, exitinfo2) == 0x080);
    assert!(offset_of!(VmcbControl, exitintinfo) == 0x088);
    assert!(offset_of!(VmcbControl, np_enable) == 0x090);
    assert!(offset_of!(VmcbControl, eventinj) == 0x0A8);
    assert!(offset_of!(VmcbControl, n_cr3) == 0x0B0);
    assert!(offset_of!(VmcbControl, clean_bits) == 0x0C0);
    assert!(offset_of!(VmcbControl, next_rip) == 0x0C8);
    assert!(offset_of!(VmcbControl, insn_len) == 0x0D0);
    assert!(offset_of!(VmcbSave, cs) == 0x010);
    assert!(offset_of!(VmcbSave, gdtr) == 0x060);
    assert!(offset_of!(VmcbSave, idtr) == 0x080);
    assert!(offset_of!(VmcbSave, tr) == 0x090);
    assert!(offset_of!(VmcbSave, cpl) == 0x0CB);
    assert!(offset_of!(VmcbSave, efer) == 0x0D0);
    assert!(offset_of!(VmcbSave, cr4) == 0x148);
    assert!(offset_of!(VmcbSave, cr3) == 0x150);
    assert!(offset_of!(VmcbSave, cr0) == 0x158);
    assert!(offset_of!(VmcbSave, dr7) == 0x160);
    assert!(offset_of!(VmcbSave, dr6) == 0x168);
    assert!(offset_of!(VmcbSave, rflags) == 0x170);
    assert!(offset_of!(VmcbSave, rip) == 0x178);
    assert!(offset_of!(VmcbSave, rsp) == 0x1D8);
    assert!(offset_of!(VmcbSave, rax) == 0x1F8);
    assert!(offset_of!(VmcbSave, star) == 0x200);
    assert!(offset_of!(VmcbSave, kernel_gs_base) == 0x220);
    assert!(offset_of!(VmcbSave, sysenter_eip) == 0x238);
    assert!(offset_of!(VmcbSave, cr2) == 0x240);
    assert!(offset_of!(VmcbSave, g_pat) == 0x268);
    assert!(offset_of!(VmcbSave, last_excp_to) == 0x290);
    assert!(offset_of!(Vmcb, save) == 0x400);
};

impl Vmcb {
    /// An all-zero VMCB.
    pub const fn zeroed() -> Self {
        // SAFETY: every field is an integer or an array of integers, for
        // which all-zero bytes are a valid value.
        unsafe { core::mem::zeroed() }
    }
}

/// `intercept_misc1` bits.
pub mod intercept1 {
    /// Physical interrupt.
    pub const INTR: u32 = 1 << 0;
    /// NMI.
    pub const NMI: u32 = 1 << 1;
    /// SMI.
    pub const SMI: u32 = 1 << 2;
    /// INIT.
    pub const INIT: u32 = 1 << 3;
    /// Virtual interrupt window.
    pub const VINTR: u32 = 1 << 4;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// INTn.
    pub const INTN: u32 = 1 << 21;
    /// INVD.
    pub const INVD: u32 = 1 << 22;
    /// PAUSE (exits on every one: QEMU has no PAUSE filter).
    pub const PAUSE: u32 = 1 << 23;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// IN/OUT through the I/O permission map.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR/WRMSR through the MSR permission map.
    pub const MSR_PROT: u32 = 1 << 28;
    /// Triple fault / shutdown.
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// `intercept_misc2` bits.
pub mod intercept2 {
    /// VMRUN (required by VMRUN's consistency checks).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL.
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const STGI: u32 = 1 << 4;
    /// CLGI.
    pub const CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const SKINIT: u32 = 1 << 6;
    /// XSETBV.
    pub const XSETBV: u32 = 1 << 13;
}

/// `int_ctl` fields.
pub mod int_ctl {
    /// The guest's virtual TPR (bits 3–0: CR8, the APIC TPR's priority class).
    pub const V_TPR: u64 = 0xF;
    /// A virtual interrupt is pending.
    pub const V_IRQ: u64 = 1 << 8;
    /// Priority of the pending virtual interrupt (bits 16–19).
    pub const V_INTR_PRIO_SHIFT: u32 = 16;
    /// Ignore V_TPR for the pending virtual interrupt.
    pub const V_IGN_TPR: u64 = 1 << 20;
    /// Virtualize EFLAGS.IF and TPR: physical interrupts follow the host's IF.
    pub const V_INTR_MASKING: u64 = 1 << 24;
    /// Vector of the pending virtual interrupt (bits 32–39).
    pub const V_INTR_VECTOR_SHIFT: u32 = 32;
}

/// EVENTINJ / EXITINTINFO encoding.
pub mod event {
    /// The field is valid.
    pub const VALID: u64 = 1 << 31;
    /// An error code is pushed (bits 32–63).
    pub const ERROR_VALID: u64 = 1 << 11;
    /// Type: external interrupt.
    pub const TYPE_INTR: u64 = 0 << 8;
    /// Type: NMI.
    pub const TYPE_NMI: u64 = 2 << 8;
    /// Type: exception.
    pub const TYPE_EXCEPTION: u64 = 3 << 8;
    /// Type: software interrupt.
    pub const TYPE_SOFT_INT: u64 = 4 << 8;

    /// An exception event, with an optional error code.
    pub const fn exception(vector: u8, error: Option<u32>) -> u64 {
        match error {
            Some(e) => VALID | TYPE_EXCEPTION | ERROR_VALID | vector as u64 | ((e as u64) << 32),
            None => VALID | TYPE_EXCEPTION | vector as u64,
        }
    }

    /// The NMI event (vector 2).
    pub const fn nmi() -> u64 {
        VALID | TYPE_NMI | super::vector::NMI as u64
    }
}

/// #VMEXIT codes (APM vol. 2, appendix C) that the backend handles.
pub mod exit {
    /// Write to CR4 (`CR0_WRITE + n` for CRn).
    pub const CR4_WRITE: u64 = 0x14;
    /// Exception vector n exits with `EXCP_BASE + n`.
    pub const EXCP_BASE: u64 = 0x40;
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// NMI.
    pub const NMI: u64 = 0x61;
    /// Virtual interrupt window.
    pub const VINTR: u64 = 0x64;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// INVD.
    pub const INVD: u64 = 0x76;
    /// PAUSE.
    pub const PAUSE: u64 = 0x77;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7B;
    /// RDMSR/WRMSR (EXITINFO1 = 1 for write).
    pub const MSR: u64 = 0x7C;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u64 = 0x7F;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// VMLOAD.
    pub const VMLOAD: u64 = 0x82;
    /// VMSAVE.
    pub const VMSAVE: u64 = 0x83;
    /// STGI.
    pub const STGI: u64 = 0x84;
    /// CLGI.
    pub const CLGI: u64 = 0x85;
    /// SKINIT.
    pub const SKINIT: u64 = 0x86;
    /// XSETBV.
    pub const XSETBV: u64 = 0x8D;
    /// Read of DRn is `READ_DR0 + n`.
    pub const READ_DR0: u64 = 0x20;
    /// Write of DRn is `WRITE_DR0 + n`.
    pub const WRITE_DR0: u64 = 0x30;
    /// INTn (software interrupt; QEMU's TCG reports `int3` this way too).
    pub const SWINT: u64 = 0x75;
    /// Nested page fault (EXITINFO2 = faulting GPA).
    pub const NPF: u64 = 0x400;
    /// VMRUN consistency checks failed (low 32 bits all ones).
    pub const INVALID: u64 = 0xFFFF_FFFF;
}

/// EXITINFO1 of a nested page fault: a page-fault error code plus where in
/// the walk the fault hit (APM vol. 2, 15.25.6).
pub mod npf_info {
    /// The nested entry was present (a protection fault).
    pub const PRESENT: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
    /// The fault hit the final guest-physical address of the access.
    pub const FINAL_GPA: u64 = 1 << 32;
    /// The fault hit a guest page-table access during the guest's walk.
    pub const GUEST_WALK: u64 = 1 << 33;
}

/// EXITINFO1 of an IOIO exit (APM vol. 2, figure 15-2).
pub mod ioio {
    /// IN (set) or OUT (clear).
    pub const TYPE_IN: u64 = 1 << 0;
    /// String instruction (INS/OUTS).
    pub const STR: u64 = 1 << 2;
    /// REP prefix.
    pub const REP: u64 = 1 << 3;
    /// Operand size, one-hot (1, 2 or 4 bytes), in bits 4–6.
    pub const SIZE_SHIFT: u32 = 4;
    /// Address size, one-hot (A16 = 1, A32 = 2, A64 = 4), in bits 7–9.
    pub const ADDR_SHIFT: u32 = 7;
    /// The port, in bits 16–31.
    pub const PORT_SHIFT: u32 = 16;
}

/// Exception vectors the backend raises in the guest.
pub mod vector {
    /// #UD, invalid opcode.
    pub const UD: u8 = 6;
    /// #DB, debug exception.
    pub const DB: u8 = 1;
    /// #BP, breakpoint (`int3`).
    pub const BP: u8 = 3;
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// #GP, general protection.
    pub const GP: u8 = 13;
    /// #PF, page fault.
    pub const PF: u8 = 14;
}

/// VMCB segment attribute bits (descriptor bits 52–55 as stored in 8–11).
pub mod seg_attr {
    /// L: 64-bit code segment.
    pub const L: u16 = 1 << 9;
    /// D/B: 32-bit default operand and address size.
    pub const DB: u16 = 1 << 10;
}

/// CR0 bits.
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Extension type (always 1 on modern CPUs).
    pub const ET: u64 = 1 << 4;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits.
pub mod cr4 {
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// VMX enable.
    pub const VMXE: u64 = 1 << 13;
    /// RDFSBASE and friends.
    pub const FSGSBASE: u64 = 1 << 16;
    /// Process-context identifiers.
    pub const PCIDE: u64 = 1 << 17;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
}

/// RFLAGS bits.
pub mod rflags {
    /// Bit 1, reserved, always set.
    pub const FIXED: u64 = 1 << 1;
    /// Interrupt flag: maskable interrupts are taken.
    pub const IF: u64 = 1 << 9;
    /// Direction flag: string instructions walk downwards.
    pub const DF: u64 = 1 << 10;
    /// Trap flag: a #DB after every instruction (single-step).
    pub const TF: u64 = 1 << 8;
    /// Resume flag: instruction breakpoints are not taken for one instruction.
    pub const RF: u64 = 1 << 16;
}

/// Debug-register bits.
pub mod dr {
    /// DR6 reset value (the reserved-one bits).
    pub const DR6_RESET: u64 = 0xFFFF_0FF0;
    /// DR6.BS: the #DB is a single-step trap.
    pub const DR6_BS: u64 = 1 << 14;
    /// DR6.B0..B3: breakpoint slot n's condition was met.
    pub const DR6_B_MASK: u64 = 0xF;
    /// DR7 reset value (bit 10 reserved, one).
    pub const DR7_RESET: u64 = 0x400;
    /// DR7 local-enable bit of slot n: `1 << (2 * n)`.
    pub const DR7_LOCAL_SHIFT: u32 = 2;
    /// DR7's R/W field of slot n at `16 + 4n`, LEN field at `18 + 4n`.
    pub const DR7_RW_SHIFT: u32 = 16;
    /// DR7 R/W: instruction execution.
    pub const RW_EXEC: u64 = 0b00;
    /// DR7 R/W: data writes.
    pub const RW_WRITE: u64 = 0b01;
    /// DR7 R/W: data reads and writes.
    pub const RW_ACCESS: u64 = 0b11;
    /// Debug address registers (DR0..DR3).
    pub const SLOTS: usize = 4;
}

/// EFER bits.
pub mod efer {
    /// System call extensions.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// Secure virtual machine enable.
    pub const SVME: u64 = 1 << 12;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_encoding() {
        assert_eq!(event::exception(6, None), 0x8000_0306);
        assert_eq!(event::exception(13, Some(0x10)), 0x10_8000_0B0D);
    }

    #[test]
    fn zeroed_is_page_sized() {
        let v = Vmcb::zeroed();
        assert_eq!(core::mem::size_of_val(&v), 4096);
        assert_eq!(core::mem::align_of::<Vmcb>(), 4096);
    }
}
