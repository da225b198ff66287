//! GICv3 for the hypervisor: distributor, this CPU's redistributor, the
//! system-register CPU interface (ICC_*) used at EL2, and the virtual CPU
//! interface control (ICH_*) whose list registers carry guest interrupts.
//! The INTIDs it is used with are in [`super::intid`].

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use aarch64_cpu::registers::*;

const GICD_CTLR: usize = 0x0000;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_GRP1: u32 = 1 << 1;
const GICD_CTLR_GRP0: u32 = 1;
const GICR_WAKER: usize = 0x0014;
const GICR_TYPER: usize = 0x0008;
const GICR_FRAME: usize = 0x2_0000;
const SGI_BASE: usize = 0x1_0000;
const GICR_IGROUPR0: usize = SGI_BASE + 0x0080;
const GICR_ISENABLER0: usize = SGI_BASE + 0x0100;
const GICR_ICENABLER0: usize = SGI_BASE + 0x0180;
const GICR_IPRIORITYR: usize = SGI_BASE + 0x0400;

/// The physical GIC as the hypervisor drives it.
pub struct Gic {
    gicd: usize,
    gicr: usize,
    nr_lrs: usize,
}

fn rd32(addr: usize) -> u32 {
    // SAFETY: `addr` is inside a GIC MMIO frame found in the DTB and mapped
    // as Device memory by the board.
    unsafe { read_volatile(addr as *const u32) }
}

fn wr32(addr: usize, v: u32) {
    // SAFETY: as in `rd32`.
    unsafe { write_volatile(addr as *mut u32, v) }
}

fn rd64(addr: usize) -> u64 {
    // SAFETY: as in `rd32`.
    unsafe { read_volatile(addr as *const u64) }
}

impl Gic {
    /// Initialises the distributor at `gicd` and finds and wakes the
    /// redistributor of the CPU with affinity `mpidr` in the region at
    /// `gicr_base`; enables the system-register interface at EL2.
    ///
    /// # Safety
    /// `gicd` and `gicr_base` must be the GICv3 frames from the DTB, mapped as
    /// Device memory.
    pub unsafe fn init(gicd: usize, gicr_base: usize, mpidr: u64) -> Gic {
        // Distributor: affinity routing, both groups on.
        wr32(gicd + GICD_CTLR, 0);
        while rd32(gicd + GICD_CTLR) & GICD_CTLR_RWP != 0 {}
        wr32(gicd + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_GRP1 | GICD_CTLR_GRP0);
        while rd32(gicd + GICD_CTLR) & GICD_CTLR_RWP != 0 {}

        // Find this CPU's redistributor: GICR_TYPER[63:32] is its affinity,
        // bit 4 marks the last frame.
        let aff = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
        let mut gicr = gicr_base;
        loop {
            let typer = rd64(gicr + GICR_TYPER);
            if typer >> 32 == aff || typer & (1 << 4) != 0 {
                break;
            }
            gicr += GICR_FRAME;
        }
        // Wake it: clear ProcessorSleep, wait for ChildrenAsleep to clear.
        let w = rd32(gicr + GICR_WAKER);
        wr32(gicr + GICR_WAKER, w & !(1 << 1));
        while rd32(gicr + GICR_WAKER) & (1 << 2) != 0 {}
        // All SGIs/PPIs Group 1 (non-secure in a one-security-state GIC).
        wr32(gicr + GICR_IGROUPR0, 0xffff_ffff);
        wr32(gicr + GICR_ICENABLER0, 0xffff_ffff);

        // CPU interface: system registers at EL2 and (for the guest) EL1.
        ICC_SRE_EL2.set(ICC_SRE_EL2.get() | 0b1001);
        // SAFETY: barrier only.
        unsafe { asm!("isb", options(nostack)) };
        // SAFETY: ICC_PMR_EL1 / ICC_BPR1_EL1 / ICC_IGRPEN1_EL1 exist with
        // GICv3 and SRE enabled; at EL2 they act on the physical interface.
        unsafe {
            asm!(
                "msr S3_0_C4_C6_0, {pmr}",   // ICC_PMR_EL1
                "msr S3_0_C12_C12_3, xzr",   // ICC_BPR1_EL1
                "msr S3_0_C12_C12_7, {one}", // ICC_IGRPEN1_EL1
                "isb",
                pmr = in(reg) 0xffu64,
                one = in(reg) 1u64,
                options(nostack)
            )
        };
        // Virtual interface on; guests see ICV_* through their ICC_* accesses.
        let nr_lrs = ((ICH_VTR_EL2.get() & 0x1f) + 1) as usize;
        GICR.store(gicr, Ordering::Release);
        ICH_HCR_EL2.set(1);
        Gic { gicd, gicr, nr_lrs }
    }

    /// Number of list registers this CPU implements.
    pub fn nr_lrs(&self) -> usize {
        self.nr_lrs
    }

    /// Distributor base.
    pub fn gicd(&self) -> usize {
        self.gicd
    }

    /// This CPU's redistributor base.
    pub fn gicr(&self) -> usize {
        self.gicr
    }

    /// Enables private interrupt `intid` (< 32) at `priority`.
    pub fn enable_ppi(&self, intid: u32, priority: u8) {
        let prio = self.gicr + GICR_IPRIORITYR + (intid as usize & !3);
        let shift = (intid % 4) * 8;
        let v = rd32(prio) & !(0xff << shift);
        wr32(prio, v | ((priority as u32) << shift));
        wr32(self.gicr + GICR_ISENABLER0, 1 << intid);
        PPI_ENABLED.fetch_or(1 << intid, Ordering::Relaxed);
    }

    /// Disables private interrupt `intid` (< 32).
    pub fn disable_ppi(&self, intid: u32) {
        wr32(self.gicr + GICR_ICENABLER0, 1 << intid);
        PPI_ENABLED.fetch_and(!(1 << intid), Ordering::Relaxed);
    }
}

/// This CPU's redistributor, for [`set_ppi_enabled`].
static GICR: AtomicUsize = AtomicUsize::new(0);
/// Cached enable bits of PPIs switched with [`set_ppi_enabled`].
static PPI_ENABLED: AtomicU32 = AtomicU32::new(0);

/// Enables or disables private interrupt `intid` (< 32) at this CPU's
/// redistributor, skipping the MMIO write when nothing changes.
pub fn set_ppi_enabled(intid: u32, on: bool) {
    let bit = 1u32 << intid;
    let cur = PPI_ENABLED.load(Ordering::Relaxed);
    if (cur & bit != 0) == on {
        return;
    }
    let gicr = GICR.load(Ordering::Acquire);
    if gicr == 0 {
        return;
    }
    if on {
        wr32(gicr + GICR_ISENABLER0, bit);
        PPI_ENABLED.store(cur | bit, Ordering::Relaxed);
    } else {
        wr32(gicr + GICR_ICENABLER0, bit);
        PPI_ENABLED.store(cur & !bit, Ordering::Relaxed);
    }
}

/// Acknowledges the highest-priority pending Group 1 interrupt (ICC_IAR1_EL1).
pub fn ack() -> u32 {
    let v: u64;
    // SAFETY: reading ICC_IAR1_EL1 acknowledges an interrupt; no memory effect.
    unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) v, options(nostack)) };
    v as u32
}

/// Ends (drops priority and deactivates, EOImode = 0) interrupt `intid`.
pub fn eoi(intid: u32) {
    // SAFETY: writing ICC_EOIR1_EL1 completes an acknowledged interrupt.
    unsafe {
        asm!(
            "msr S3_0_C12_C12_1, {}",
            "isb",
            in(reg) intid as u64,
            options(nostack)
        )
    };
}

/// Reads list register `i` (0..16).
pub fn read_lr(i: usize) -> u64 {
    match i {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        15 => ICH_LR15_EL2.get(),
        _ => 0,
    }
}

/// Writes list register `i` (0..16).
pub fn write_lr(i: usize, v: u64) {
    match i {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        3 => ICH_LR3_EL2.set(v),
        4 => ICH_LR4_EL2.set(v),
        5 => ICH_LR5_EL2.set(v),
        6 => ICH_LR6_EL2.set(v),
        7 => ICH_LR7_EL2.set(v),
        8 => ICH_LR8_EL2.set(v),
        9 => ICH_LR9_EL2.set(v),
        10 => ICH_LR10_EL2.set(v),
        11 => ICH_LR11_EL2.set(v),
        12 => ICH_LR12_EL2.set(v),
        13 => ICH_LR13_EL2.set(v),
        14 => ICH_LR14_EL2.set(v),
        15 => ICH_LR15_EL2.set(v),
        _ => {}
    }
}
