//! Decoding of ESR_EL2 (exception syndrome) values for guest exits.

/// Exception classes (ESR_EL2.EC) the backend handles.
pub mod ec {
    /// WFI or WFE trapped (HCR_EL2.TWI/TWE).
    pub const WFX: u32 = 0x01;
    /// Access to SIMD/FP trapped.
    pub const FP: u32 = 0x07;
    /// HVC from AArch64.
    pub const HVC64: u32 = 0x16;
    /// SMC from AArch64 (HCR_EL2.TSC).
    pub const SMC64: u32 = 0x17;
    /// MSR/MRS/system instruction trapped.
    pub const SYSREG: u32 = 0x18;
    /// Instruction abort from a lower EL (stage-2 fault on fetch).
    pub const IABT_LOWER: u32 = 0x20;
    /// Data abort from a lower EL (stage-2 fault on a load/store).
    pub const DABT_LOWER: u32 = 0x24;
    /// Data abort taken at EL2 itself.
    pub const DABT_CUR: u32 = 0x25;
    /// BRK instruction.
    pub const BRK64: u32 = 0x3c;
    /// Hardware breakpoint from a lower EL (MDCR_EL2.TDE).
    pub const BREAKPOINT_LOWER: u32 = 0x30;
    /// Software step from a lower EL (MDCR_EL2.TDE).
    pub const SOFTWARE_STEP_LOWER: u32 = 0x32;
    /// Watchpoint from a lower EL (MDCR_EL2.TDE); FAR holds the address.
    pub const WATCHPOINT_LOWER: u32 = 0x34;
}

/// A decoded ESR_EL2 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// Exception class.
    pub fn ec(self) -> u32 {
        ((self.0 >> 26) & 0x3f) as u32
    }

    /// Instruction length bit: true for a 32-bit instruction.
    pub fn il32(self) -> bool {
        self.0 & (1 << 25) != 0
    }

    /// Instruction-specific syndrome.
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// HVC/SMC immediate.
    pub fn imm16(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// For WFx: true when the trapped instruction was WFE (false: WFI).
    pub fn is_wfe(self) -> bool {
        self.0 & 1 != 0
    }

    /// Decodes a data abort's syndrome when the hardware supplied one.
    pub fn data_abort(self) -> Option<DataAbort> {
        let iss = self.iss();
        let valid = iss & (1 << 24) != 0;
        valid.then(|| DataAbort {
            size: 1 << ((iss >> 22) & 3),
            sign_extend: iss & (1 << 21) != 0,
            reg: ((iss >> 16) & 0x1f) as u8,
            sixty_four: iss & (1 << 15) != 0,
            write: iss & (1 << 6) != 0,
        })
    }

    /// Data/instruction fault status code (DFSC/IFSC).
    pub fn fault_status(self) -> u32 {
        self.iss() & 0x3f
    }

    /// Whether the fault status is a permission fault (DFSC/IFSC 0b0011xx,
    /// any level): the translation exists but forbids the access.
    pub fn permission_fault(self) -> bool {
        self.fault_status() & 0x3c == 0x0c
    }

    /// Human-readable name of the exception class, for diagnostics.
    pub fn ec_name(self) -> &'static str {
        match self.ec() {
            0x00 => "unknown",
            ec::WFX => "wfi/wfe",
            ec::FP => "fp/simd access",
            0x0e => "illegal execution state",
            ec::HVC64 => "hvc",
            ec::SMC64 => "smc",
            ec::SYSREG => "msr/mrs trap",
            ec::IABT_LOWER => "instruction abort",
            0x22 => "pc alignment",
            ec::DABT_LOWER => "data abort",
            ec::DABT_CUR => "data abort (el2)",
            0x26 => "sp alignment",
            0x2f => "serror",
            ec::BRK64 => "brk",
            _ => "other",
        }
    }
}

/// The syndrome of a data abort with a valid instruction syndrome (ISV = 1):
/// enough to emulate the access without decoding the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: usize,
    /// Whether a load sign-extends.
    pub sign_extend: bool,
    /// Transfer register number (31 = xzr).
    pub reg: u8,
    /// Whether the register is 64-bit (SF).
    pub sixty_four: bool,
    /// Write (store) rather than read.
    pub write: bool,
}

/// The faulting IPA of a stage-2 abort from HPFAR_EL2 and FAR_EL2.
pub fn fault_ipa(hpfar: u64, far: u64) -> u64 {
    // HPFAR_EL2.FIPA (bits 47:4) holds IPA bits 55:12.
    ((hpfar & 0x0000_ffff_ffff_fff0) << 8) | (far & 0xfff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hvc_syndrome() {
        // EC 0x16, IL, imm 0xEA1
        let e = Esr((0x16 << 26) | (1 << 25) | u64::from(xen_abi::arch_arm::HYPERCALL_HVC_IMM));
        assert_eq!(e.ec(), ec::HVC64);
        assert_eq!(e.imm16(), xen_abi::arch_arm::HYPERCALL_HVC_IMM);
        assert!(e.il32());
    }

    #[test]
    fn data_abort_syndrome() {
        // str w3, [...] : ISV, SAS=2 (word), SRT=3, WnR
        let iss = (1 << 24) | (2 << 22) | (3 << 16) | (1 << 6) | 0x07;
        let e = Esr((0x24 << 26) | (1 << 25) | iss);
        let d = e.data_abort().unwrap();
        assert_eq!(d.size, 4);
        assert_eq!(d.reg, 3);
        assert!(d.write);
        assert_eq!(e.fault_status(), 7);
        assert_eq!(Esr(0x24 << 26).data_abort(), None);
    }

    #[test]
    fn ipa() {
        // IPA 0x0900_0234: HPFAR.FIPA holds IPA >> 12 at bit 4.
        let hpfar = (0x0900_0234u64 >> 12) << 4;
        assert_eq!(fault_ipa(hpfar, 0xffff_0000_0000_0234), 0x0900_0234);
    }
}
