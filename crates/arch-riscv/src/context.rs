//! One vCPU's saved state: the general-purpose and floating-point
//! registers, the PC, the privilege it runs at, and the VS-level CSRs the
//! world switch loads before entry and saves after each trap.

/// `sstatus` / `vsstatus` bits the backend uses.
pub mod sstatus {
    /// Supervisor interrupt enable.
    pub const SIE: u64 = 1 << 1;
    /// SIE before the last trap.
    pub const SPIE: u64 = 1 << 5;
    /// The privilege the last trap came from (1: S).
    pub const SPP: u64 = 1 << 8;
    /// Floating-point state (2 bits; 3 = dirty).
    pub const FS_MASK: u64 = 3 << 13;
    /// FS = Initial.
    pub const FS_INITIAL: u64 = 1 << 13;
    /// 64-bit U-mode (UXL = 2), as the reset value reads.
    pub const UXL_64: u64 = 2 << 32;
}

/// Interrupt-pending bits in `hvip` (the VS-level ones, HS numbering).
pub mod hvip {
    /// Virtual supervisor software interrupt (the guest's SBI IPI).
    pub const VSSIP: u64 = 1 << 2;
    /// Virtual supervisor timer interrupt (the guest's SBI timer).
    pub const VSTIP: u64 = 1 << 6;
    /// Virtual supervisor external interrupt (the event-channel upcall).
    pub const VSEIP: u64 = 1 << 10;
    /// All three.
    pub const ALL: u64 = VSSIP | VSTIP | VSEIP;
}

/// The VS-level CSRs (the guest's own supervisor CSRs while V=1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VsCsrs {
    /// `vsstatus` (the guest's `sstatus`).
    pub vsstatus: u64,
    /// `vsie` (the guest's `sie`, guest bit numbering).
    pub vsie: u64,
    /// `vstvec`.
    pub vstvec: u64,
    /// `vsscratch`.
    pub vsscratch: u64,
    /// `vsepc`.
    pub vsepc: u64,
    /// `vscause`.
    pub vscause: u64,
    /// `vstval`.
    pub vstval: u64,
    /// `vsatp` (0: the guest's MMU is off).
    pub vsatp: u64,
}

/// A vCPU's register file as the world switch loads and saves it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuContext {
    /// x0..x31 (x0 is always 0; the world switch reads and writes this
    /// array in place, so it comes first).
    pub x: [u64; 32],
    /// The guest's PC (`sepc` at entry and after a trap).
    pub pc: u64,
    /// Whether the guest runs in VS (true) or VU (false): `sstatus.SPP`
    /// at entry, and what the trap left there.
    pub supervisor: bool,
    /// f0..f31.
    pub f: [u64; 32],
    /// `fcsr`.
    pub fcsr: u64,
    /// The VS-level CSRs.
    pub vs: VsCsrs,
    /// `hvip`'s VS bits as the guest left them (it clears VSSIP through
    /// its `sip`).
    pub hvip: u64,
    /// Exceptions delegated straight to the guest (`hedeleg`); the
    /// debugger takes the breakpoint bit away.
    pub hedeleg: u64,
}

/// Exception causes (`scause` without the interrupt bit).
pub mod cause {
    /// Instruction address misaligned.
    pub const MISALIGNED_FETCH: u64 = 0;
    /// Instruction access fault.
    pub const FETCH_ACCESS: u64 = 1;
    /// Illegal instruction.
    pub const ILLEGAL_INSTRUCTION: u64 = 2;
    /// Breakpoint (`ebreak`).
    pub const BREAKPOINT: u64 = 3;
    /// Load address misaligned.
    pub const MISALIGNED_LOAD: u64 = 4;
    /// Load access fault.
    pub const LOAD_ACCESS: u64 = 5;
    /// Store/AMO address misaligned.
    pub const MISALIGNED_STORE: u64 = 6;
    /// Store/AMO access fault.
    pub const STORE_ACCESS: u64 = 7;
    /// `ecall` from U or VU.
    pub const USER_ECALL: u64 = 8;
    /// `ecall` from VS.
    pub const VS_ECALL: u64 = 10;
    /// Instruction page fault.
    pub const FETCH_PAGE_FAULT: u64 = 12;
    /// Load page fault.
    pub const LOAD_PAGE_FAULT: u64 = 13;
    /// Store/AMO page fault.
    pub const STORE_PAGE_FAULT: u64 = 15;
    /// Instruction guest-page fault.
    pub const FETCH_GUEST_PAGE_FAULT: u64 = 20;
    /// Load guest-page fault.
    pub const LOAD_GUEST_PAGE_FAULT: u64 = 21;
    /// Virtual instruction.
    pub const VIRTUAL_INSTRUCTION: u64 = 22;
    /// Store/AMO guest-page fault.
    pub const STORE_GUEST_PAGE_FAULT: u64 = 23;
}

/// What the guest handles itself: misaligned accesses, breakpoints, its
/// own page faults and its user mode's `ecall`.
pub const HEDELEG_DEFAULT: u64 = (1 << cause::MISALIGNED_FETCH)
    | (1 << cause::BREAKPOINT)
    | (1 << cause::MISALIGNED_LOAD)
    | (1 << cause::MISALIGNED_STORE)
    | (1 << cause::USER_ECALL)
    | (1 << cause::FETCH_PAGE_FAULT)
    | (1 << cause::LOAD_PAGE_FAULT)
    | (1 << cause::STORE_PAGE_FAULT);

impl VcpuContext {
    /// A vCPU about to run its first instruction at `entry` in VS-mode with
    /// its MMU off, `a0` = `hartid`, `a1` = `arg`, interrupts off.
    pub fn new(entry: u64, hartid: u64, arg: u64) -> Self {
        let mut c = VcpuContext {
            x: [0; 32],
            pc: 0,
            supervisor: true,
            f: [0; 32],
            fcsr: 0,
            vs: VsCsrs::default(),
            hvip: 0,
            hedeleg: HEDELEG_DEFAULT,
        };
        c.reset(entry, hartid, arg);
        c
    }

    /// Back to the boot state (the debugger's breakpoint routing stays).
    pub fn reset(&mut self, entry: u64, hartid: u64, arg: u64) {
        let hedeleg = self.hedeleg;
        *self = VcpuContext {
            x: [0; 32],
            pc: entry,
            supervisor: true,
            f: [0; 32],
            fcsr: 0,
            vs: VsCsrs { vsstatus: sstatus::UXL_64, ..VsCsrs::default() },
            hvip: 0,
            hedeleg,
        };
        self.x[10] = hartid;
        self.x[11] = arg;
    }

    /// Takes exception `cause` with trap value `tval` into the guest, as
    /// the CPU would have without the hypervisor: the interrupted PC and
    /// privilege in `vsepc` / `vsstatus.SPP`, interrupts off (SIE into
    /// SPIE), VS-mode at `vstvec`'s base (exceptions never use the
    /// vectored table).
    pub fn inject_exception(&mut self, cause: u64, tval: u64) {
        let s = &mut self.vs;
        s.vscause = cause;
        s.vstval = tval;
        s.vsepc = self.pc;
        let sie = s.vsstatus & sstatus::SIE != 0;
        s.vsstatus &= !(sstatus::SPP | sstatus::SPIE | sstatus::SIE);
        if sie {
            s.vsstatus |= sstatus::SPIE;
        }
        if self.supervisor {
            s.vsstatus |= sstatus::SPP;
        }
        self.supervisor = true;
        self.pc = s.vstvec & !3;
    }

    /// Interrupts the guest would take now (or wake from `wfi` for): the
    /// pending VS interrupts it enabled in `sie` (`hvip` bit n+1 is guest
    /// bit n).
    pub fn interrupt_waiting(&self, hvip: u64) -> bool {
        ((hvip & hvip::ALL) >> 1) & self.vs.vsie != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_state() {
        let c = VcpuContext::new(0x20_0000, 3, 0x1fe_0000);
        assert_eq!((c.pc, c.x[10], c.x[11]), (0x20_0000, 3, 0x1fe_0000));
        assert!(c.supervisor);
        assert_eq!(c.vs.vsatp, 0, "MMU off");
        assert_eq!(c.vs.vsstatus & sstatus::SIE, 0, "interrupts off");
        assert_eq!(c.hedeleg & (1 << cause::BREAKPOINT), 1 << cause::BREAKPOINT);
        assert_eq!(c.hedeleg & (1 << cause::VS_ECALL), 0, "hypercalls reach the hypervisor");
    }

    #[test]
    fn an_injected_exception_enters_the_guest_handler() {
        let mut c = VcpuContext::new(0x1000, 0, 0);
        c.vs.vstvec = 0x8001; // vectored: exceptions still go to the base
        c.vs.vsstatus |= sstatus::SIE;
        c.supervisor = false;
        c.inject_exception(cause::LOAD_ACCESS, 0xdead);
        assert_eq!(c.pc, 0x8000);
        assert_eq!((c.vs.vscause, c.vs.vstval, c.vs.vsepc), (5, 0xdead, 0x1000));
        assert_eq!(c.vs.vsstatus & (sstatus::SIE | sstatus::SPIE | sstatus::SPP), sstatus::SPIE);
        assert!(c.supervisor);
    }

    #[test]
    fn waiting_interrupts_are_the_enabled_pending_ones() {
        let mut c = VcpuContext::new(0, 0, 0);
        assert!(!c.interrupt_waiting(hvip::VSEIP));
        c.vs.vsie = 1 << 9; // SEIE
        assert!(c.interrupt_waiting(hvip::VSEIP));
        assert!(!c.interrupt_waiting(hvip::VSSIP));
        assert!(!c.interrupt_waiting(0));
    }
}
