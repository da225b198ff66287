//! The register state of a domain's virtual GICv3 (distributor and one
//! redistributor per vCPU) and the rules that decide which virtual
//! interrupts may reach a vCPU's list registers.
//!
//! Interrupts raised for a vCPU (its SGIs from other vCPUs, the event PPI,
//! the virtual timer) are recorded here as pending; only those the guest has
//! enabled are moved into the vCPU's list registers, at the priority the
//! guest gave them, when it next enters. Everything after that (acknowledge,
//! priority masking against ICC_PMR, group enables, EOI) is the hardware
//! virtual CPU interface's job. As in Xen's vGIC, every interrupt is Group 1
//! (IGROUPR reads as all ones, writes are ignored) and the distributor's
//! enable bits are stored but do not gate SGIs and PPIs.
//!
//! Only SGIs and PPIs (INTIDs 0..32) have sources; the SPIs the distributor
//! reports (32..64) keep what the guest writes so probing works, but nothing
//! raises them (Lantern passes no devices through).

use alloc::vec::Vec;

/// INTIDs per redistributor (SGIs 0..16 and PPIs 16..32).
pub const PRIVATE_IRQS: u32 = 32;
/// SPIs the distributor implements (GICD_TYPER.ITLinesNumber = 1).
pub const SPIS: u32 = 32;
/// Number of INTIDs in all: 64.
pub const NR_IRQS: u32 = PRIVATE_IRQS + SPIS;

/// Where in the distributor or a redistributor an access lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The distributor, at this offset.
    Dist(u64),
    /// Redistributor of vCPU `.0`, at offset `.1` (RD frame, then SGI frame).
    Redist(u32, u64),
}

/// GICD_CTLR.ARE_NS: affinity routing, always on. The guest sees the
/// non-secure view of a GIC with two security states, as under Xen.
const CTLR_ARE: u32 = 1 << 4;
/// GICD_CTLR bits a guest may change: EnableGrp1A only (as in Xen).
const CTLR_WRITABLE: u32 = 1 << 1;
/// GICR_WAKER.ProcessorSleep and ChildrenAsleep.
const WAKER_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// PIDR2 offset and its value: ArchRev 3 (GICv3).
const PIDR2: u64 = 0xffe8;
const PIDR2_GICV3: u64 = 0x3b;
/// GICD_IIDR / GICR_IIDR: implementer ARM.
const IIDR: u64 = 0x43b;
/// Offset of the SGI frame inside a redistributor.
pub const SGI_FRAME: u64 = 0x1_0000;

/// The per-interrupt state of a group of 32 INTIDs.
#[derive(Clone, Debug, Default)]
struct Bank {
    enabled: u32,
    pending: u32,
    active: u32,
    priority: [u8; 32],
    config: [u32; 2],
}

/// GICR_ICFGR0: every SGI edge-triggered (read-only).
const ICFGR0_SGIS_EDGE: u32 = 0xaaaa_aaaa;

impl Bank {
    /// The value of register `reg` of this bank.
    fn read(&self, reg: BankReg) -> u64 {
        match reg {
            BankReg::Group => u32::MAX as u64,
            BankReg::SetEnable | BankReg::ClearEnable => self.enabled as u64,
            BankReg::SetPending | BankReg::ClearPending => self.pending as u64,
            BankReg::SetActive | BankReg::ClearActive => self.active as u64,
            BankReg::Priority(i) => u32::from_le_bytes(self.priority[i * 4..i * 4 + 4].try_into().unwrap()) as u64,
            BankReg::Config(i) => self.config[i] as u64,
        }
    }

    fn write(&mut self, reg: BankReg, v: u32, sgi_bank: bool) {
        match reg {
            BankReg::Group => {}
            BankReg::SetEnable => self.enabled |= v,
            BankReg::ClearEnable => self.enabled &= !v,
            BankReg::SetPending => self.pending |= v,
            BankReg::ClearPending => self.pending &= !v,
            BankReg::SetActive => self.active |= v,
            BankReg::ClearActive => self.active &= !v,
            BankReg::Priority(i) => self.priority[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes()),
            // SGIs are always edge-triggered; the rest keep what was written.
            BankReg::Config(0) if sgi_bank => {}
            BankReg::Config(i) => self.config[i] = v,
        }
    }
}

/// One banked register: which, and for priorities and configs, the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BankReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
    Priority(usize),
    Config(usize),
}

/// Decodes a distributor-layout offset into (bank index, register): the
/// same layout serves the SGI frame (bank 0 only).
fn decode(off: u64) -> Option<(usize, BankReg)> {
    let word = |base: u64| ((off - base) / 4) as usize;
    Some(match off {
        0x0080..=0x00ff => (word(0x80), BankReg::Group),
        0x0100..=0x017f => (word(0x100), BankReg::SetEnable),
        0x0180..=0x01ff => (word(0x180), BankReg::ClearEnable),
        0x0200..=0x027f => (word(0x200), BankReg::SetPending),
        0x0280..=0x02ff => (word(0x280), BankReg::ClearPending),
        0x0300..=0x037f => (word(0x300), BankReg::SetActive),
        0x0380..=0x03ff => (word(0x380), BankReg::ClearActive),
        0x0400..=0x07ff => (word(0x400) / 8, BankReg::Priority(word(0x400) % 8)),
        0x0c00..=0x0cff => (word(0xc00) / 2, BankReg::Config(word(0xc00) % 2)),
        _ => return None,
    })
}

/// One vCPU's redistributor.
#[derive(Clone, Debug)]
struct Redistributor {
    waker: u32,
    private: Bank,
}

/// The distributor: the control register, the SPIs' state and routes.
#[derive(Clone, Debug, Default)]
struct Distributor {
    ctlr: u32,
    spis: Bank,
    irouter: [u64; SPIS as usize],
}

/// A domain's virtual GICv3.
pub struct Vgic {
    dist: spin::Mutex<Distributor>,
    redist: Vec<spin::Mutex<Redistributor>>,
}

/// An interrupt to put in a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deliverable {
    /// Its INTID.
    pub intid: u32,
    /// The priority the guest gave it.
    pub priority: u8,
}

impl Vgic {
    /// The GIC of a domain with `vcpus` vCPUs, in its reset state
    /// (everything disabled, redistributors asleep).
    pub fn new(vcpus: u32) -> Self {
        let redist = (0..vcpus)
            .map(|_| {
                let private = Bank { config: [ICFGR0_SGIS_EDGE, 0], ..Bank::default() };
                spin::Mutex::new(Redistributor { waker: WAKER_SLEEP | WAKER_CHILDREN_ASLEEP, private })
            })
            .collect();
        Vgic { dist: spin::Mutex::new(Distributor::default()), redist }
    }

    /// Number of redistributors (vCPUs).
    pub fn vcpus(&self) -> u32 {
        self.redist.len() as u32
    }

    /// A guest read of the 32-bit (or, for GICR_TYPER / GICD_IROUTER, 64-bit)
    /// register at the aligned offset `frame`.
    pub fn read(&self, frame: Frame) -> u64 {
        match frame {
            Frame::Dist(off) => {
                let d = self.dist.lock();
                match off {
                    0x0000 => (d.ctlr | CTLR_ARE) as u64,
                    // TYPER: ITLinesNumber 1 (64 INTIDs), IDbits 10.
                    0x0004 => (9 << 19) | ((NR_IRQS / 32 - 1) as u64),
                    0x0008 => IIDR,
                    PIDR2 => PIDR2_GICV3,
                    0x6100..=0x61ff => d.irouter[((off - 0x6100) / 8) as usize % SPIS as usize] >> ((off & 4) * 8),
                    _ => match decode(off) {
                        // With affinity routing, bank 0 (SGIs/PPIs) lives
                        // in the redistributors: RAZ here.
                        Some((1, reg)) => d.spis.read(reg),
                        _ => 0,
                    },
                }
            }
            Frame::Redist(n, off) => {
                let Some(r) = self.redist.get(n as usize) else { return 0 };
                let r = r.lock();
                match off {
                    0x0004 => IIDR,
                    // TYPER: affinity (Aff0 = vCPU id), processor number, Last.
                    0x0008 | 0x000c => {
                        let last = (n + 1 == self.vcpus()) as u64;
                        let typer = ((n as u64) << 32) | ((n as u64) << 8) | (last << 4);
                        typer >> ((off & 4) * 8)
                    }
                    0x0014 => r.waker as u64,
                    PIDR2 => PIDR2_GICV3,
                    o if o >= SGI_FRAME => match decode(o - SGI_FRAME) {
                        Some((0, reg)) => r.private.read(reg),
                        _ => 0,
                    },
                    _ => 0,
                }
            }
        }
    }

    /// A guest write of `value` (the access's `size` bytes) at `frame`.
    /// Priority registers take byte writes; everything else is a whole
    /// 32-bit (or 64-bit IROUTER) register. Returns the vCPU whose
    /// deliverable set may have grown (it must re-evaluate its list
    /// registers and, if blocked, wake).
    pub fn write(&self, frame: Frame, size: usize, value: u64) -> Option<u32> {
        match frame {
            Frame::Dist(off) => {
                let mut d = self.dist.lock();
                match off {
                    0x0000 => d.ctlr = value as u32 & CTLR_WRITABLE,
                    0x6100..=0x61ff => {
                        let i = ((off - 0x6100) / 8) as usize % SPIS as usize;
                        let shift = (off & 4) * 8;
                        let mask = if size == 8 { u64::MAX } else { 0xffff_ffff << shift };
                        d.irouter[i] = (d.irouter[i] & !mask) | ((value << shift) & mask);
                    }
                    _ => {
                        if let Some((1, reg)) = decode(off & !3) {
                            let v = merge(d.spis.read(reg) as u32, off, size, value, reg);
                            d.spis.write(reg, v, false);
                        }
                    }
                }
                None
            }
            Frame::Redist(n, off) => {
                let r = self.redist.get(n as usize)?;
                let mut r = r.lock();
                match off {
                    0x0014 => {
                        let sleep = value as u32 & WAKER_SLEEP;
                        r.waker = sleep | if sleep != 0 { WAKER_CHILDREN_ASLEEP } else { 0 };
                        None
                    }
                    o if o >= SGI_FRAME => {
                        let (0, reg) = decode((o - SGI_FRAME) & !3)? else { return None };
                        let v = merge(r.private.read(reg) as u32, o, size, value, reg);
                        r.private.write(reg, v, true);
                        matches!(reg, BankReg::SetEnable | BankReg::SetPending).then_some(n)
                    }
                    _ => None,
                }
            }
        }
    }

    /// Makes SGI or PPI `intid` pending on vCPU `vcpu` (a no-op for an
    /// unknown vCPU or INTID).
    pub fn raise(&self, vcpu: u32, intid: u32) {
        if intid < PRIVATE_IRQS {
            if let Some(r) = self.redist.get(vcpu as usize) {
                r.lock().private.pending |= 1 << intid;
            }
        }
    }

    /// Whether `intid` (an SGI or PPI) is enabled on `vcpu`.
    pub fn enabled(&self, vcpu: u32, intid: u32) -> bool {
        intid < PRIVATE_IRQS
            && self.redist.get(vcpu as usize).is_some_and(|r| r.lock().private.enabled & (1 << intid) != 0)
    }

    /// Whether `vcpu` has a pending interrupt it has enabled (a WFI must not
    /// block then).
    pub fn has_deliverable(&self, vcpu: u32) -> bool {
        self.redist.get(vcpu as usize).is_some_and(|r| {
            let b = &r.lock().private;
            b.pending & b.enabled != 0
        })
    }

    /// The priority the guest gave `intid` on `vcpu`.
    pub fn priority(&self, vcpu: u32, intid: u32) -> u8 {
        match self.redist.get(vcpu as usize) {
            Some(r) if intid < PRIVATE_IRQS => r.lock().private.priority[intid as usize],
            _ => 0,
        }
    }

    /// Takes `vcpu`'s pending, enabled interrupts for its list registers:
    /// `place` is offered each one, in INTID order, and returns whether it
    /// found a list register; those placed stop being pending here (the
    /// list register owns them now), the rest stay pending for the next
    /// entry.
    pub fn flush(&self, vcpu: u32, mut place: impl FnMut(Deliverable) -> bool) {
        let Some(r) = self.redist.get(vcpu as usize) else { return };
        let mut r = r.lock();
        let b = &mut r.private;
        let mut ready = b.pending & b.enabled;
        while ready != 0 {
            let intid = ready.trailing_zeros();
            ready &= ready - 1;
            if place(Deliverable { intid, priority: b.priority[intid as usize] }) {
                b.pending &= !(1 << intid);
            }
        }
    }
}

/// Whether a `size`-byte access to the register at `frame` has a width the
/// GIC architecture gives that register: the 32-bit registers take word
/// accesses only, the priority registers bytes as well, the 64-bit ones
/// (GICD_IROUTER<n>, GICR_TYPER) words and doublewords. Without this a byte
/// or halfword store to a word register wrote the whole source register
/// into it (bits the store does not carry). Xen's vGICv3 refuses the same
/// widths with a data abort to the guest. Reserved offsets, which read as
/// zero and ignore writes, take any width, as there.
pub fn width_allowed(frame: Frame, size: usize) -> bool {
    let word = size == 4;
    match frame {
        Frame::Dist(off) => match off & !3 {
            0x0000 | 0x0004 | 0x0008 | PIDR2 => word,
            // IROUTER0..IROUTER1019.
            0x6000..=0x7fdc => word || size == 8,
            o => match decode(o) {
                Some((_, BankReg::Priority(_))) => word || size == 1,
                Some(_) => word,
                None => true,
            },
        },
        Frame::Redist(_, off) => match off & !3 {
            0x0000 | 0x0004 | 0x0014 | PIDR2 => word,
            0x0008 | 0x000c => word || size == 8,
            o if o >= SGI_FRAME => match decode(o - SGI_FRAME) {
                Some((0, BankReg::Priority(_))) => word || size == 1,
                Some((0, _)) => word,
                _ => true,
            },
            _ => true,
        },
    }
}

/// A sub-word write (byte writes to the priority registers) merged into the
/// register's current value; whole-word writes pass through.
fn merge(current: u32, off: u64, size: usize, value: u64, reg: BankReg) -> u32 {
    match reg {
        BankReg::Priority(_) if size < 4 => {
            let shift = (off & 3) * 8;
            let mask = (((1u64 << (size * 8)) - 1) << shift) as u32;
            (current & !mask) | (((value << shift) as u32) & mask)
        }
        _ => value as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISENABLER0: u64 = SGI_FRAME + 0x100;
    const ICENABLER0: u64 = SGI_FRAME + 0x180;
    const ISPENDR0: u64 = SGI_FRAME + 0x200;
    const IPRIORITYR: u64 = SGI_FRAME + 0x400;

    fn delivered(g: &Vgic, vcpu: u32) -> Vec<Deliverable> {
        let mut out = Vec::new();
        g.flush(vcpu, |d| {
            out.push(d);
            true
        });
        out
    }

    #[test]
    fn a_raised_ppi_waits_until_the_guest_enables_it() {
        let g = Vgic::new(2);
        g.raise(0, 31);
        assert!(!g.has_deliverable(0));
        assert!(delivered(&g, 0).is_empty(), "disabled: stays in the distributor");
        assert_eq!(g.write(Frame::Redist(0, ISENABLER0), 4, 1 << 31), Some(0));
        assert!(g.has_deliverable(0));
        assert_eq!(delivered(&g, 0), vec![Deliverable { intid: 31, priority: 0 }]);
        assert!(delivered(&g, 0).is_empty(), "placed once");
    }

    #[test]
    fn enables_are_per_vcpu_and_clear_enable_clears() {
        let g = Vgic::new(2);
        g.write(Frame::Redist(1, ISENABLER0), 4, 0b101);
        assert_eq!(g.read(Frame::Redist(1, ISENABLER0)), 0b101);
        assert_eq!(g.read(Frame::Redist(0, ISENABLER0)), 0);
        g.write(Frame::Redist(1, ICENABLER0), 4, 0b100);
        assert_eq!(g.read(Frame::Redist(1, ICENABLER0)), 0b001);
        g.raise(1, 2);
        assert!(delivered(&g, 1).is_empty());
    }

    #[test]
    fn byte_priority_writes_land_in_their_byte_and_reach_the_list_register() {
        let g = Vgic::new(1);
        g.write(Frame::Redist(0, IPRIORITYR + 27), 1, 0xa0);
        g.write(Frame::Redist(0, IPRIORITYR + 24), 1, 0x10);
        assert_eq!(g.read(Frame::Redist(0, IPRIORITYR + 24)), 0xa000_0010);
        g.write(Frame::Redist(0, ISENABLER0), 4, 1 << 27);
        g.write(Frame::Redist(0, ISPENDR0), 4, 1 << 27);
        assert_eq!(delivered(&g, 0), vec![Deliverable { intid: 27, priority: 0xa0 }]);
    }

    #[test]
    fn an_interrupt_without_a_free_list_register_stays_pending() {
        let g = Vgic::new(1);
        g.write(Frame::Redist(0, ISENABLER0), 4, 0b11);
        g.raise(0, 0);
        g.raise(0, 1);
        let mut first = true;
        g.flush(0, |_| core::mem::replace(&mut first, false));
        assert_eq!(delivered(&g, 0), vec![Deliverable { intid: 1, priority: 0 }]);
    }

    #[test]
    fn waker_sleep_and_typer_describe_each_redistributor() {
        let g = Vgic::new(3);
        assert_eq!(g.read(Frame::Redist(0, 0x14)), (WAKER_SLEEP | WAKER_CHILDREN_ASLEEP) as u64);
        g.write(Frame::Redist(0, 0x14), 4, 0);
        assert_eq!(g.read(Frame::Redist(0, 0x14)), 0, "awake: ChildrenAsleep follows ProcessorSleep");
        let t = g.read(Frame::Redist(2, 0x8)) | (g.read(Frame::Redist(2, 0xc)) << 32);
        assert_eq!(t >> 32, 2);
        assert_ne!(t & (1 << 4), 0, "the last redistributor says Last");
        assert_eq!(g.read(Frame::Redist(1, 0x8)) & (1 << 4), 0);
        assert_eq!(g.read(Frame::Dist(PIDR2)) >> 4 & 0xf, 3);
    }

    #[test]
    fn the_distributor_keeps_spi_state_and_enables_but_raz_for_bank_zero() {
        let g = Vgic::new(1);
        g.write(Frame::Dist(0), 4, 0x13);
        assert_eq!(g.read(Frame::Dist(0)) as u32, (1 << 1) | CTLR_ARE, "only EnableGrp1A is writable");
        g.write(Frame::Dist(0x104), 4, 0xf0);
        assert_eq!(g.read(Frame::Dist(0x104)), 0xf0);
        g.write(Frame::Dist(0x100), 4, 0xff);
        assert_eq!(g.read(Frame::Dist(0x100)), 0, "SGIs/PPIs are the redistributors' with ARE");
        assert_eq!(g.read(Frame::Dist(0x84)), u32::MAX as u64, "every interrupt is Group 1");
        g.write(Frame::Dist(0x6100 + 8), 8, 0x0000_0001_0000_0002);
        assert_eq!(g.read(Frame::Dist(0x6108)) | (g.read(Frame::Dist(0x610c)) << 32), 0x1_0000_0002);
    }

    #[test]
    fn sgi_configuration_is_read_only() {
        let g = Vgic::new(1);
        g.write(Frame::Redist(0, SGI_FRAME + 0xc00), 4, 0);
        assert_eq!(g.read(Frame::Redist(0, SGI_FRAME + 0xc00)), ICFGR0_SGIS_EDGE as u64);
        g.write(Frame::Redist(0, SGI_FRAME + 0xc04), 4, 0x5555);
        assert_eq!(g.read(Frame::Redist(0, SGI_FRAME + 0xc04)), 0x5555);
    }
}
