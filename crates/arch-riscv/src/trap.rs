//! What a trap from the guest says: `scause` (interrupt bit and cause),
//! `stval`, and for guest-page faults `htval` (the guest-physical address
//! shifted right by 2; QEMU leaves `htinst` 0, so the trapping instruction
//! is read from guest memory where its length matters).

use crate::context::cause;

/// The interrupt bit of `scause`.
pub const INTERRUPT: u64 = 1 << 63;
/// Supervisor timer interrupt (the host timer: the slice or a guest timer).
pub const IRQ_S_TIMER: u64 = 5;
/// Supervisor external interrupt.
pub const IRQ_S_EXTERNAL: u64 = 9;
/// Supervisor software interrupt.
pub const IRQ_S_SOFT: u64 = 1;

/// The trap CSRs of one exit from the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    /// `scause`.
    pub scause: u64,
    /// `stval`: the faulting guest-virtual address or the instruction.
    pub stval: u64,
    /// `htval`: for a guest-page fault, the guest-physical address >> 2.
    pub htval: u64,
    /// `htinst`.
    pub htinst: u64,
}

impl Trap {
    /// Whether an interrupt (not an exception) caused the exit.
    pub fn is_interrupt(&self) -> bool {
        self.scause & INTERRUPT != 0
    }

    /// The cause without the interrupt bit.
    pub fn code(&self) -> u64 {
        self.scause & !INTERRUPT
    }

    /// Whether this is a guest-page fault (fetch, load or store).
    pub fn is_guest_page_fault(&self) -> bool {
        !self.is_interrupt()
            && matches!(
                self.code(),
                cause::FETCH_GUEST_PAGE_FAULT | cause::LOAD_GUEST_PAGE_FAULT | cause::STORE_GUEST_PAGE_FAULT
            )
    }

    /// The faulting guest-physical address of a guest-page fault: `htval`
    /// gives bits 63:2, `stval` (the guest-virtual address) the low two.
    pub fn fault_gpa(&self) -> u64 {
        (self.htval << 2) | (self.stval & 3)
    }

    /// The cause's name, for diagnostics.
    pub fn name(&self) -> &'static str {
        if self.is_interrupt() {
            return match self.code() {
                IRQ_S_SOFT => "supervisor software interrupt",
                IRQ_S_TIMER => "supervisor timer interrupt",
                IRQ_S_EXTERNAL => "supervisor external interrupt",
                _ => "interrupt",
            };
        }
        match self.code() {
            cause::MISALIGNED_FETCH => "instruction address misaligned",
            cause::FETCH_ACCESS => "instruction access fault",
            cause::ILLEGAL_INSTRUCTION => "illegal instruction",
            cause::BREAKPOINT => "breakpoint",
            cause::MISALIGNED_LOAD => "load address misaligned",
            cause::LOAD_ACCESS => "load access fault",
            cause::MISALIGNED_STORE => "store address misaligned",
            cause::STORE_ACCESS => "store access fault",
            cause::USER_ECALL => "ecall from VU",
            cause::VS_ECALL => "ecall from VS",
            cause::FETCH_PAGE_FAULT => "instruction page fault",
            cause::LOAD_PAGE_FAULT => "load page fault",
            cause::STORE_PAGE_FAULT => "store page fault",
            cause::FETCH_GUEST_PAGE_FAULT => "instruction guest-page fault",
            cause::LOAD_GUEST_PAGE_FAULT => "load guest-page fault",
            cause::VIRTUAL_INSTRUCTION => "virtual instruction",
            cause::STORE_GUEST_PAGE_FAULT => "store guest-page fault",
            _ => "exception",
        }
    }
}

/// `wfi`.
pub const WFI: u32 = 0x1050_0073;
/// `ebreak`, as the debugger plants it.
pub const EBREAK: [u8; 4] = 0x0010_0073u32.to_le_bytes();

/// Length in bytes of the instruction whose first halfword is `low`: 2 for
/// a compressed one (low bits not 0b11), else 4.
pub fn insn_len(low: u16) -> u64 {
    if low & 3 == 3 {
        4
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_guest_page_faults() {
        let t = Trap { scause: cause::STORE_GUEST_PAGE_FAULT, stval: 0x8000_0006, htval: 0x1000_0000 >> 2, htinst: 0 };
        assert!(t.is_guest_page_fault() && !t.is_interrupt());
        assert_eq!(t.fault_gpa(), 0x1000_0002);
        assert_eq!(t.name(), "store guest-page fault");
        let irq = Trap { scause: INTERRUPT | IRQ_S_TIMER, ..Trap::default() };
        assert!(irq.is_interrupt() && !irq.is_guest_page_fault());
        assert_eq!(irq.code(), 5);
        assert_eq!(irq.name(), "supervisor timer interrupt");
        // Interrupt 21 is not a guest-page fault.
        assert!(!Trap { scause: INTERRUPT | 21, ..Trap::default() }.is_guest_page_fault());
    }

    #[test]
    fn instruction_lengths() {
        assert_eq!(insn_len(0x0073), 4, "ecall");
        assert_eq!(insn_len(0x9002), 2, "c.ebreak");
        assert_eq!(insn_len(0xc11c), 2, "c.sw");
        assert_eq!(u32::from_le_bytes(EBREAK), 0x0010_0073);
    }
}
