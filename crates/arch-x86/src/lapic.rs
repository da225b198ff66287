//! One vCPU's local APIC as Xen emulates it for an HVM/PVH domU: the xAPIC
//! MMIO page and the x2APIC MSRs over one register state, IA32_APIC_BASE and
//! its mode transitions, IRR/ISR/PPR priority, the error register, the timer
//! (one-shot and periodic at Xen's 10 ns bus clock) and ICR decoding into an
//! [`Ipi`] the caller routes. Pure state, no time source of its own: every
//! entry point that can see time is handed `now_ns` (guest time in ns).

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1B;
/// The first and last MSR of the x2APIC register window.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8FF;

/// IA32_APIC_BASE bits.
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
pub const APIC_BASE_ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Where the xAPIC page lives; Xen refuses to move it (#GP).
pub const APIC_DEFAULT_BASE: u64 = 0xFEE0_0000;

/// The version register Xen's vlapic reports: version 0x14, six LVT entries
/// (max LVT index 5), no directed-EOI support (bit 24 clear).
pub const LAPIC_VERSION: u32 = 0x0005_0014;
/// Xen's APIC bus clock: one timer tick per 10 ns before the divider.
pub const APIC_BUS_CYCLE_NS: u64 = 10;

/// Register offsets in the xAPIC page; the x2APIC MSR is
/// `0x800 + offset / 16`.
pub mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const PPR: u32 = 0xA0;
    pub const EOI: u32 = 0xB0;
    pub const LDR: u32 = 0xD0;
    pub const DFR: u32 = 0xE0;
    pub const SVR: u32 = 0xF0;
    pub const ISR: u32 = 0x100;
    pub const TMR: u32 = 0x180;
    pub const IRR: u32 = 0x200;
    pub const ESR: u32 = 0x280;
    /// Not among the six LVTs the version advertises; Xen still lets x2APIC
    /// read it (as zero) and accepts, then drops, writes.
    pub const LVT_CMCI: u32 = 0x2F0;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_PERF: u32 = 0x340;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3E0;
    /// x2APIC only (MSR 0x83F).
    pub const SELF_IPI: u32 = 0x3F0;
}

/// Number of LVT entries (timer, thermal, perf, LINT0, LINT1, error).
const LVT_COUNT: usize = 6;
const LVT_TIMER_INDEX: usize = 0;
const LVT_ERROR_INDEX: usize = 5;

const VECTOR_MASK: u32 = 0xFF;
/// Vectors 0–15 are illegal for fixed interrupts.
const FIRST_LEGAL_VECTOR: u8 = 16;
const LVT_MASKED: u32 = 1 << 16;
const LVT_DELIVERY_STATUS: u32 = 1 << 12;
const LVT_POLARITY: u32 = 1 << 13;
const LVT_REMOTE_IRR: u32 = 1 << 14;
const LVT_LEVEL: u32 = 1 << 15;
const DELIVERY_MODE_MASK: u32 = 0x700;
const TIMER_MODE_MASK: u32 = 0b11 << 17;
const TIMER_MODE_ONESHOT: u32 = 0;
const TIMER_MODE_PERIODIC: u32 = 1 << 17;
const TIMER_MODE_TSC_DEADLINE: u32 = 2 << 17;

/// The bits each LVT keeps (Xen's per-entry masks); x2APIC writes with any
/// other bit set #GP.
const LVT_COMMON_BITS: u32 = LVT_MASKED | LVT_DELIVERY_STATUS | VECTOR_MASK;
const LVT_LINT_BITS: u32 = LVT_COMMON_BITS | DELIVERY_MODE_MASK | LVT_POLARITY | LVT_REMOTE_IRR | LVT_LEVEL;
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    LVT_COMMON_BITS | TIMER_MODE_MASK,
    LVT_COMMON_BITS | DELIVERY_MODE_MASK,
    LVT_COMMON_BITS | DELIVERY_MODE_MASK,
    LVT_LINT_BITS,
    LVT_LINT_BITS,
    LVT_COMMON_BITS,
];

const SVR_ENABLED: u32 = 1 << 8;
const SVR_FOCUS_DISABLED: u32 = 1 << 9;
/// SVR bits an xAPIC write keeps: vector, enable, focus (no directed EOI).
const SVR_WRITABLE: u32 = 0x3FF;
const SVR_RESET: u32 = 0xFF;

const TPR_MASK: u32 = 0xFF;
const PRIORITY_CLASS: u32 = 0xF0;
const XAPIC_ID_SHIFT: u32 = 24;
const XAPIC_LDR_MASK: u32 = 0xFF00_0000;
const XAPIC_ICR_HIGH_MASK: u32 = 0xFF00_0000;
const DFR_MODEL_SHIFT: u32 = 28;
const DFR_MODEL_FLAT: u32 = 0xF;
const DFR_MODEL_CLUSTER: u32 = 0x0;
/// DFR's low 28 bits read as ones.
const DFR_RESERVED_ONES: u32 = 0x0FFF_FFFF;
const DFR_RESET: u32 = 0xFFFF_FFFF;
/// TDCR bits 0, 1 and 3 select the divider.
const TIMER_DIVIDE_MASK: u32 = 0xB;

/// ESR bits.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

/// ICR fields.
const ICR_DEST_LOGICAL: u32 = 1 << 11;
const ICR_DELIVERY_STATUS: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
const ICR_SHORTHAND_MASK: u32 = 0b11 << ICR_SHORTHAND_SHIFT;
/// ICR low bits an x2APIC write may set (no delivery status, no reserved).
const X2APIC_ICR_WRITABLE: u32 =
    VECTOR_MASK | DELIVERY_MODE_MASK | ICR_DEST_LOGICAL | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL | ICR_SHORTHAND_MASK;

const XAPIC_BROADCAST: u32 = 0xFF;
const X2APIC_BROADCAST: u32 = 0xFFFF_FFFF;
/// The xAPIC page is 4 KiB; registers end with TDCR.
const XAPIC_LAST_REGISTER: u32 = reg::TIMER_DIVIDE;

/// The guest did something that raises #GP(0): the caller injects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gp;

/// An ICR delivery mode the caller acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    /// INIT with level assert (or edge): reset the target.
    Init,
    /// INIT level de-assert (level-triggered, assert clear): does nothing on
    /// an xAPIC, as Xen.
    InitDeassert,
    /// Start-up IPI; the vector is the start page (CS = vector << 8).
    Startup,
}

/// An IPI's destination field: an APIC ID (physical) or a logical
/// destination. In xAPIC mode it is ICR bits 63:56, in x2APIC mode 63:32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    Physical(u32),
    Logical(u32),
}

/// The ICR destination shorthand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An interprocessor interrupt a write to ICR (or SELF_IPI) sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    pub vector: u8,
    pub delivery: Delivery,
    pub dest: Dest,
    pub shorthand: Shorthand,
    /// ICR bit 14 (assert).
    pub level: bool,
    /// ICR bit 15 (level-triggered).
    pub trigger_level: bool,
}

/// What an IPI did to the APIC receiving it ([`Lapic::receive`]); the
/// vCPU-level effects are the caller's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Dropped (APIC disabled, INIT de-assert).
    Nothing,
    /// A vector is now in IRR: kick the vCPU.
    Interrupt,
    Nmi,
    Smi,
    /// Reset the vCPU (and call [`Lapic::reset_on_init`]).
    Init,
    /// Start the vCPU in real mode at `vector << 12` (CS = vector << 8).
    Startup {
        vector: u8,
    },
}

/// A 256-bit vector bitmap (IRR/ISR/TMR), in the register order: word `i`
/// holds vectors `32*i .. 32*i+31`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct VectorSet([u32; 8]);

impl VectorSet {
    fn set(&mut self, v: u8) {
        self.0[v as usize / 32] |= 1 << (v % 32);
    }
    fn clear(&mut self, v: u8) {
        self.0[v as usize / 32] &= !(1 << (v % 32));
    }
    fn highest(&self) -> Option<u8> {
        let (i, word) = self.0.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
        Some((i as u32 * 32 + 31 - word.leading_zeros()) as u8)
    }
    fn any(&self) -> bool {
        self.0.iter().any(|w| *w != 0)
    }
}

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct Lapic {
    /// The APIC ID given at creation (Lantern: the vCPU id); the xAPIC ID
    /// register and the x2APIC ID come back to it on reset and on entering
    /// x2APIC mode.
    initial_id: u32,
    bsp: bool,
    apic_base: u64,
    /// The xAPIC ID register (ID in bits 31:24; Xen lets the guest write it).
    xapic_id: u32,
    tpr: u32,
    /// The xAPIC LDR; in x2APIC mode the LDR is derived from the ID.
    xapic_ldr: u32,
    dfr: u32,
    svr: u32,
    isr: VectorSet,
    tmr: VectorSet,
    irr: VectorSet,
    /// What ESR reads: the errors latched by the last ESR write.
    esr: u32,
    /// Errors seen since the last ESR write.
    pending_esr: u32,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; LVT_COUNT],
    timer_initial: u32,
    timer_divide: u32,
    /// When the running timer next reaches zero (guest ns); None: stopped.
    timer_deadline: Option<u64>,
}

impl Lapic {
    /// A local APIC in its power-on state: enabled in xAPIC mode at
    /// 0xFEE00000, software-disabled (SVR = 0xFF), every LVT masked.
    pub fn new(apic_id: u32, bsp: bool) -> Self {
        let mut lapic = Lapic {
            initial_id: apic_id,
            bsp,
            apic_base: 0,
            xapic_id: 0,
            tpr: 0,
            xapic_ldr: 0,
            dfr: DFR_RESET,
            svr: SVR_RESET,
            isr: VectorSet::default(),
            tmr: VectorSet::default(),
            irr: VectorSet::default(),
            esr: 0,
            pending_esr: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            timer_initial: 0,
            timer_divide: 0,
            timer_deadline: None,
        };
        lapic.reset();
        lapic
    }

    /// Power-on/reset state (also what enabling a disabled APIC gives).
    fn reset(&mut self) {
        self.apic_base = APIC_DEFAULT_BASE | APIC_BASE_ENABLE | if self.bsp { APIC_BASE_BSP } else { 0 };
        self.xapic_id = self.initial_id << XAPIC_ID_SHIFT;
        self.reset_on_init();
    }

    /// What an INIT does to the APIC: every register back to its reset value
    /// except the ID, IA32_APIC_BASE (and so the mode) and the version; the
    /// timer stops, the APIC is software-disabled with every LVT masked.
    pub fn reset_on_init(&mut self) {
        self.tpr = 0;
        self.xapic_ldr = 0;
        self.dfr = DFR_RESET;
        self.svr = SVR_RESET;
        self.isr = VectorSet::default();
        self.tmr = VectorSet::default();
        self.irr = VectorSet::default();
        self.esr = 0;
        self.pending_esr = 0;
        self.icr_low = 0;
        self.icr_high = 0;
        self.lvt = [LVT_MASKED; LVT_COUNT];
        self.timer_initial = 0;
        self.timer_divide = 0;
        self.timer_deadline = None;
    }

    /// The APIC ID as the current mode reports it (8 bits in xAPIC mode).
    pub fn apic_id(&self) -> u32 {
        if self.in_x2apic_mode() {
            self.initial_id
        } else {
            self.xapic_id >> XAPIC_ID_SHIFT
        }
    }

    /// IA32_APIC_BASE.EXTD (only settable while enabled).
    pub fn in_x2apic_mode(&self) -> bool {
        self.apic_base & APIC_BASE_EXTD != 0
    }

    fn in_xapic_mode(&self) -> bool {
        self.apic_base & (APIC_BASE_ENABLE | APIC_BASE_EXTD) == APIC_BASE_ENABLE
    }

    /// IA32_APIC_BASE.EN.
    pub fn hardware_enabled(&self) -> bool {
        self.apic_base & APIC_BASE_ENABLE != 0
    }

    /// SVR bit 8.
    pub fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLED != 0
    }

    /// Both enables: only then are fixed interrupts accepted from the bus
    /// and delivered to the vCPU.
    pub fn enabled(&self) -> bool {
        self.hardware_enabled() && self.software_enabled()
    }

    /// IA32_APIC_BASE as RDMSR reads it.
    pub fn apic_base_msr(&self) -> u64 {
        self.apic_base
    }

    /// WRMSR IA32_APIC_BASE (x2APIC advertised): reserved bits, moving the
    /// xAPIC window, disabled→x2APIC, x2APIC→xAPIC and disabled with EXTD all
    /// #GP; enabling a disabled APIC resets it; disabling resets it too (so
    /// a disabled APIC's timer stops and nothing stays pending); entering
    /// x2APIC mode makes the ID the full initial ID and the LDR derived.
    pub fn write_apic_base_msr(&mut self, value: u64) -> Result<(), Gp> {
        if value & !(APIC_BASE_ADDR_MASK | APIC_BASE_ENABLE | APIC_BASE_BSP | APIC_BASE_EXTD) != 0 {
            return Err(Gp);
        }
        if value & (APIC_BASE_EXTD | APIC_BASE_ENABLE) == APIC_BASE_ENABLE
            && value & APIC_BASE_ADDR_MASK != APIC_DEFAULT_BASE
        {
            return Err(Gp);
        }
        let changed = self.apic_base ^ value;
        if changed & APIC_BASE_ENABLE != 0 {
            // The enable bit flips: EXTD must be clear on both sides of it.
            if value & APIC_BASE_EXTD != 0 {
                return Err(Gp);
            }
            self.reset();
        } else if changed & APIC_BASE_EXTD != 0 && !self.in_xapic_mode() {
            // Leaving x2APIC for xAPIC, or EXTD while disabled.
            return Err(Gp);
        }
        self.apic_base = value;
        Ok(())
    }

    /// The LDR as the current mode reads it: in x2APIC mode the cluster form
    /// derived from the ID, (id >> 4) << 16 | 1 << (id & 0xF).
    pub fn ldr(&self) -> u32 {
        if self.in_x2apic_mode() {
            let id = self.initial_id;
            ((id >> 4) << 16) | (1 << (id & 0xF))
        } else {
            self.xapic_ldr
        }
    }

    /// TPR bits 7:0.
    pub fn tpr(&self) -> u8 {
        self.tpr as u8
    }

    /// Sets TPR (for a caller keeping it in step with CR8 / VMCB V_TPR,
    /// which hold TPR[7:4]).
    pub fn set_tpr(&mut self, tpr: u8) {
        self.tpr = tpr as u32;
    }

    /// The processor priority: TPR if its class is at least the highest
    /// in-service class, else that class.
    pub fn ppr(&self) -> u8 {
        let isr_vector = self.isr.highest().map_or(0, u32::from);
        if self.tpr & PRIORITY_CLASS >= isr_vector & PRIORITY_CLASS {
            self.tpr as u8
        } else {
            (isr_vector & PRIORITY_CLASS) as u8
        }
    }

    /// An edge-triggered fixed interrupt arrives (the event-channel upcall,
    /// the timer, a routed IPI): sets its IRR bit. Vectors below 16 are not
    /// accepted and raise ESR "receive illegal vector" instead. Like Xen's
    /// vlapic_set_irq this does not look at the enables: a disabled APIC
    /// keeps it in IRR without delivering ([`Lapic::receive`] is the gated
    /// path for IPIs).
    pub fn accept(&mut self, vector: u8) {
        if vector < FIRST_LEGAL_VECTOR {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        self.tmr.clear(vector);
        self.irr.set(vector);
    }

    /// Records an APIC error; the first time a bit is seen since the last
    /// ESR write, an unmasked LVT error entry raises its vector (one with an
    /// illegal vector folds in "receive illegal vector" instead).
    fn error(&mut self, bit: u32) {
        if self.pending_esr & bit != 0 {
            return;
        }
        self.pending_esr |= bit;
        let lvt_error = self.lvt[LVT_ERROR_INDEX];
        if lvt_error & LVT_MASKED == 0 {
            let vector = (lvt_error & VECTOR_MASK) as u8;
            if vector >= FIRST_LEGAL_VECTOR {
                self.accept(vector);
            } else {
                self.pending_esr |= ESR_RECEIVE_ILLEGAL_VECTOR;
            }
        }
    }

    /// The vector to inject next, if any: the highest in IRR whose priority
    /// class is above PPR's, while the APIC is hardware- and
    /// software-enabled. (Xen compares against ISR here and leaves TPR to
    /// the hardware's V_TPR; this model applies the whole PPR itself.)
    pub fn pending(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let vector = self.irr.highest()?;
        (vector as u32 & PRIORITY_CLASS > self.ppr() as u32 & PRIORITY_CLASS).then_some(vector)
    }

    /// Whether a HLT should end: something in IRR of an enabled APIC
    /// (deliberately not filtered by PPR, as Xen's wakeup check).
    pub fn has_pending_for_wakeup(&self) -> bool {
        self.enabled() && self.irr.any()
    }

    /// The vCPU took `vector` (the injection completed): IRR → ISR.
    pub fn ack(&mut self, vector: u8) {
        self.irr.clear(vector);
        self.isr.set(vector);
    }

    /// End of interrupt: clears the highest in-service vector and returns it
    /// (with whether it was level-triggered, for an IOAPIC EOI), or None
    /// when nothing was in service.
    pub fn eoi(&mut self) -> Option<(u8, bool)> {
        let vector = self.isr.highest()?;
        self.isr.clear(vector);
        Some((vector, self.tmr.0[vector as usize / 32] & (1 << (vector % 32)) != 0))
    }

    /// An IPI routed to this APIC (the caller checked
    /// [`Lapic::is_addressed_by`], and for lowest priority picked this
    /// target by lowest [`Lapic::ppr`] among the enabled ones). Fixed and
    /// lowest-priority vectors are dropped unless [`Lapic::enabled`]; NMI,
    /// SMI, INIT and SIPI are returned for the caller to act on.
    pub fn receive(&mut self, ipi: &Ipi) -> Received {
        match ipi.delivery {
            Delivery::Fixed | Delivery::LowestPriority => {
                if !self.enabled() {
                    return Received::Nothing;
                }
                self.accept(ipi.vector);
                if ipi.vector < FIRST_LEGAL_VECTOR {
                    Received::Nothing
                } else {
                    Received::Interrupt
                }
            }
            Delivery::Nmi => Received::Nmi,
            Delivery::Smi => Received::Smi,
            Delivery::Init => Received::Init,
            Delivery::InitDeassert => Received::Nothing,
            Delivery::Startup => Received::Startup { vector: ipi.vector },
        }
    }

    /// Whether this APIC is a destination of `ipi` sent by the APIC with ID
    /// `sender_id`. `x2apic_mode` is the sender's mode: it decides which
    /// physical destination is the broadcast (0xFF or 0xFFFFFFFF). Logical
    /// destinations are matched in this APIC's own format: x2APIC cluster
    /// (bits 31:16 cluster equal, bits 15:0 intersect), or by DFR in xAPIC
    /// mode — flat (MDA & LDR[31:24] ≠ 0) or cluster (high nibbles equal,
    /// low nibbles intersect); any other DFR model matches nothing (Xen).
    pub fn is_addressed_by(&self, ipi: &Ipi, sender_id: u32, x2apic_mode: bool) -> bool {
        let is_self = self.apic_id() == sender_id;
        match ipi.shorthand {
            Shorthand::SelfOnly => is_self,
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => !is_self,
            Shorthand::None => match ipi.dest {
                Dest::Physical(id) => {
                    let broadcast = if x2apic_mode { X2APIC_BROADCAST } else { XAPIC_BROADCAST };
                    id == broadcast || id == self.apic_id()
                }
                Dest::Logical(mda) => self.matches_logical(mda),
            },
        }
    }

    fn matches_logical(&self, mda: u32) -> bool {
        if self.in_x2apic_mode() {
            let ldr = self.ldr();
            return ldr >> 16 == mda >> 16 && ldr & mda & 0xFFFF != 0;
        }
        let logical_id = self.xapic_ldr >> XAPIC_ID_SHIFT;
        let mda = mda & 0xFF;
        match self.dfr >> DFR_MODEL_SHIFT {
            DFR_MODEL_FLAT => logical_id & mda != 0,
            DFR_MODEL_CLUSTER => logical_id >> 4 == mda >> 4 && logical_id & mda & 0xF != 0,
            _ => false,
        }
    }

    // ---- register access ----

    /// Reads the 32-bit register at `offset` (16-byte aligned), as both
    /// interfaces see it. None: no such register (Xen's MMIO reads those as
    /// zero; x2APIC #GPs).
    fn read_register(&self, offset: u32, now_ns: u64) -> Option<u32> {
        Some(match offset {
            reg::ID => {
                if self.in_x2apic_mode() {
                    self.initial_id
                } else {
                    self.xapic_id
                }
            }
            reg::VERSION => LAPIC_VERSION,
            reg::TPR => self.tpr,
            reg::PPR => self.ppr() as u32,
            reg::LDR => self.ldr(),
            reg::DFR => self.dfr,
            reg::SVR => self.svr,
            reg::ESR => self.esr,
            reg::LVT_CMCI => 0,
            reg::ICR_LOW => self.icr_low,
            reg::ICR_HIGH => self.icr_high,
            o if (reg::ISR..reg::ISR + 0x80).contains(&o) => self.isr.0[(o - reg::ISR) as usize / 16],
            o if (reg::TMR..reg::TMR + 0x80).contains(&o) => self.tmr.0[(o - reg::TMR) as usize / 16],
            o if (reg::IRR..reg::IRR + 0x80).contains(&o) => self.irr.0[(o - reg::IRR) as usize / 16],
            o if (reg::LVT_TIMER..=reg::LVT_ERROR).contains(&o) => self.lvt[(o - reg::LVT_TIMER) as usize / 16],
            reg::TIMER_INITIAL => {
                if self.timer_counts() {
                    self.timer_initial
                } else {
                    0
                }
            }
            reg::TIMER_CURRENT => self.timer_current_count(now_ns),
            reg::TIMER_DIVIDE => self.timer_divide,
            _ => return None,
        })
    }

    /// Writes the register at `offset` with the xAPIC semantics (x2APIC
    /// validates first, then lands here). Returns the IPI an ICR write sends.
    fn write_register(&mut self, offset: u32, value: u32, now_ns: u64) -> Option<Ipi> {
        // Any expiry due before this write happens under the old settings.
        self.poll_timer(now_ns);
        match offset {
            reg::ID => self.xapic_id = value,
            reg::TPR => self.tpr = value & TPR_MASK,
            reg::EOI => {
                self.eoi();
            }
            reg::LDR => self.xapic_ldr = value & XAPIC_LDR_MASK,
            reg::DFR => self.dfr = value | DFR_RESERVED_ONES,
            reg::SVR => {
                self.svr = value & SVR_WRITABLE;
                if !self.software_enabled() {
                    for lvt in &mut self.lvt {
                        *lvt |= LVT_MASKED;
                    }
                }
            }
            reg::ESR => {
                self.esr = self.pending_esr;
                self.pending_esr = 0;
            }
            reg::ICR_LOW => {
                self.icr_low = value & !ICR_DELIVERY_STATUS;
                return self.send_ipi(self.icr_low, self.icr_high);
            }
            reg::ICR_HIGH => {
                self.icr_high = if self.in_x2apic_mode() { value } else { value & XAPIC_ICR_HIGH_MASK };
            }
            o if (reg::LVT_TIMER..=reg::LVT_ERROR).contains(&o) => {
                let index = (o - reg::LVT_TIMER) as usize / 16;
                let mut value = value;
                if !self.software_enabled() {
                    value |= LVT_MASKED;
                }
                value &= LVT_WRITABLE[index];
                if index == LVT_TIMER_INDEX {
                    self.write_lvt_timer(value, now_ns);
                } else {
                    self.lvt[index] = value;
                }
            }
            // Ignored unless one-shot or periodic; 0 stops the timer.
            reg::TIMER_INITIAL if self.timer_counts() => {
                self.timer_initial = value;
                self.timer_deadline = (value != 0).then(|| now_ns.saturating_add(self.timer_period_ns()));
            }
            reg::TIMER_DIVIDE => {
                let old_divisor = self.timer_divisor();
                self.timer_divide = value & TIMER_DIVIDE_MASK;
                if let Some(deadline) = self.timer_deadline {
                    // The count left keeps its value; its ticks get longer or
                    // shorter.
                    let left = deadline.saturating_sub(now_ns) as u128;
                    let scaled = left * self.timer_divisor() as u128 / old_divisor as u128;
                    self.timer_deadline = Some(now_ns.saturating_add(scaled as u64));
                }
            }
            // Read-only or absent: dropped.
            _ => {}
        }
        None
    }

    /// Turns an ICR value into the IPI to send. Fixed and lowest-priority
    /// with a vector below 16 send nothing and set ESR "send illegal
    /// vector"; delivery modes 3 (remote read) and 7 (ExtINT) send nothing
    /// (Xen ignores the first and crashes the domain on the second).
    fn send_ipi(&mut self, low: u32, high: u32) -> Option<Ipi> {
        let vector = (low & VECTOR_MASK) as u8;
        let level = low & ICR_LEVEL_ASSERT != 0;
        let trigger_level = low & ICR_TRIGGER_LEVEL != 0;
        let delivery = match (low & DELIVERY_MODE_MASK) >> 8 {
            0 => Delivery::Fixed,
            1 => Delivery::LowestPriority,
            2 => Delivery::Smi,
            4 => Delivery::Nmi,
            5 if trigger_level && !level => Delivery::InitDeassert,
            5 => Delivery::Init,
            6 => Delivery::Startup,
            _ => return None,
        };
        if matches!(delivery, Delivery::Fixed | Delivery::LowestPriority) && vector < FIRST_LEGAL_VECTOR {
            self.error(ESR_SEND_ILLEGAL_VECTOR);
            return None;
        }
        let dest_id = if self.in_x2apic_mode() { high } else { high >> XAPIC_ID_SHIFT };
        let dest = if low & ICR_DEST_LOGICAL != 0 { Dest::Logical(dest_id) } else { Dest::Physical(dest_id) };
        let shorthand = match (low & ICR_SHORTHAND_MASK) >> ICR_SHORTHAND_SHIFT {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        };
        Some(Ipi { vector, delivery, dest, shorthand, level, trigger_level })
    }

    /// A read of the xAPIC page at `offset` (0..4096), 4 bytes wide.
    pub fn mmio_read(&self, offset: u32, now_ns: u64) -> u32 {
        self.mmio_read_sized(offset, 4, now_ns) as u32
    }

    /// A read of `width` bytes (1, 2, 4 or 8) of the xAPIC page. Accesses
    /// that fit in a register's low 32 bits read that part of it, others
    /// (8 bytes, straddling) and absent registers read 0, as Xen. In x2APIC
    /// mode or hardware-disabled the page is not there: all ones.
    pub fn mmio_read_sized(&self, offset: u32, width: u8, now_ns: u64) -> u64 {
        if !self.in_xapic_mode() {
            return all_ones(width);
        }
        let within = offset & 0xF;
        if within + width as u32 > 4 || offset > XAPIC_LAST_REGISTER + 3 {
            return 0;
        }
        let value = self.read_register(offset & !0xF, now_ns).unwrap_or(0);
        (value >> (within * 8)) as u64 & all_ones(width)
    }

    /// A 4-byte write to the xAPIC page; returns the IPI an ICR write sends.
    pub fn mmio_write(&mut self, offset: u32, value: u32, now_ns: u64) -> Option<Ipi> {
        self.mmio_write_sized(offset, 4, value as u64, now_ns)
    }

    /// A write of `width` bytes: one that fits in a register's low 32 bits
    /// merges into it (Xen allows sub-word accesses), others drop; writes to
    /// read-only and absent registers drop; in x2APIC mode or
    /// hardware-disabled the write goes nowhere.
    pub fn mmio_write_sized(&mut self, offset: u32, width: u8, value: u64, now_ns: u64) -> Option<Ipi> {
        if !self.in_xapic_mode() {
            return None;
        }
        let within = offset & 0xF;
        let offset = offset & !0xF;
        if within + width as u32 > 4 || offset > XAPIC_LAST_REGISTER {
            return None;
        }
        let value = if width < 4 {
            let shift = within * 8;
            let mask = (all_ones(width) as u32) << shift;
            let old = self.read_register(offset, now_ns).unwrap_or(0);
            (old & !mask) | (((value as u32) << shift) & mask)
        } else {
            value as u32
        };
        self.write_register(offset, value, now_ns)
    }

    /// RDMSR of IA32_APIC_BASE or an x2APIC MSR. #GP outside x2APIC mode,
    /// for write-only (EOI, SELF_IPI) and absent registers (DFR, ICR high
    /// 0x831, ...); ICR reads as one 64-bit value.
    pub fn msr_read(&self, msr: u32, now_ns: u64) -> Result<u64, Gp> {
        if msr == MSR_APIC_BASE {
            return Ok(self.apic_base);
        }
        if !self.in_x2apic_mode() || !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(Gp);
        }
        let offset = (msr - MSR_X2APIC_FIRST) << 4;
        match offset {
            reg::DFR | reg::ICR_HIGH | reg::EOI | reg::SELF_IPI => Err(Gp),
            reg::ICR_LOW => Ok((self.icr_high as u64) << 32 | self.icr_low as u64),
            _ => self.read_register(offset, now_ns).map(u64::from).ok_or(Gp),
        }
    }

    /// WRMSR of IA32_APIC_BASE or an x2APIC MSR, with Xen's x2APIC checks:
    /// #GP outside x2APIC mode, for read-only and absent registers, for
    /// reserved bits in TPR/SVR/LVTs/TDCR/ICR/SELF_IPI, and for a nonzero
    /// EOI or ESR write. ICR is 64 bits (destination in 63:32); SELF_IPI
    /// sends a fixed self IPI. The timer's initial count takes bits 31:0
    /// (Xen ignores the rest).
    pub fn msr_write(&mut self, msr: u32, value: u64, now_ns: u64) -> Result<Option<Ipi>, Gp> {
        if msr == MSR_APIC_BASE {
            return self.write_apic_base_msr(value).map(|()| None);
        }
        if !self.in_x2apic_mode() || !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(Gp);
        }
        let offset = (msr - MSR_X2APIC_FIRST) << 4;
        let allowed: u64 = match offset {
            reg::TPR => TPR_MASK as u64,
            reg::SVR => (VECTOR_MASK | SVR_ENABLED | SVR_FOCUS_DISABLED) as u64,
            reg::LVT_CMCI => (LVT_COMMON_BITS | DELIVERY_MODE_MASK) as u64,
            o if (reg::LVT_TIMER..=reg::LVT_ERROR).contains(&o) => {
                LVT_WRITABLE[(o - reg::LVT_TIMER) as usize / 16] as u64
            }
            reg::TIMER_INITIAL => u64::MAX,
            reg::TIMER_DIVIDE => TIMER_DIVIDE_MASK as u64,
            reg::ICR_LOW => (u32::MAX as u64) << 32 | X2APIC_ICR_WRITABLE as u64,
            reg::SELF_IPI => VECTOR_MASK as u64,
            reg::EOI | reg::ESR => 0,
            _ => return Err(Gp),
        };
        if value & !allowed != 0 {
            return Err(Gp);
        }
        Ok(match offset {
            reg::LVT_CMCI => None,
            reg::ICR_LOW => {
                self.icr_high = (value >> 32) as u32;
                self.write_register(reg::ICR_LOW, value as u32, now_ns)
            }
            reg::SELF_IPI => {
                let shorthand_self = 1 << ICR_SHORTHAND_SHIFT;
                self.send_ipi(shorthand_self | value as u32, 0)
            }
            _ => self.write_register(offset, value as u32, now_ns),
        })
    }

    // ---- timer ----

    fn timer_mode(&self) -> u32 {
        self.lvt[LVT_TIMER_INDEX] & TIMER_MODE_MASK
    }

    /// Whether the count-down timer is in use: one-shot or periodic. In
    /// TSC-deadline mode (not advertised) and the reserved mode Xen keeps
    /// the LVT value but the counter is off: the initial count ignores
    /// writes and both counts read 0.
    fn timer_counts(&self) -> bool {
        matches!(self.timer_mode(), TIMER_MODE_ONESHOT | TIMER_MODE_PERIODIC)
    }

    /// TDCR → divider: 0b0000 → 2, 0b0001 → 4, … 0b1010 → 128, 0b1011 → 1.
    fn timer_divisor(&self) -> u64 {
        let d = self.timer_divide;
        let code = ((d & 3) | ((d & 8) >> 1)) + 1;
        1 << (code & 7)
    }

    fn tick_ns(&self) -> u64 {
        APIC_BUS_CYCLE_NS * self.timer_divisor()
    }

    fn timer_period_ns(&self) -> u64 {
        self.timer_initial as u64 * self.tick_ns()
    }

    /// ns until the running timer next reaches zero, a periodic timer's
    /// missed expiries folded in; None when stopped or a one-shot ran out.
    fn timer_left_ns(&self, now_ns: u64) -> Option<u64> {
        let deadline = self.timer_deadline?;
        if now_ns < deadline {
            return Some(deadline - now_ns);
        }
        let period = self.timer_period_ns();
        (self.timer_mode() == TIMER_MODE_PERIODIC && period != 0).then(|| period - (now_ns - deadline) % period)
    }

    fn timer_current_count(&self, now_ns: u64) -> u32 {
        if !self.timer_counts() {
            return 0;
        }
        self.timer_left_ns(now_ns).map_or(0, |left| left.div_ceil(self.tick_ns()) as u32)
    }

    fn write_lvt_timer(&mut self, value: u32, now_ns: u64) {
        let old_mode = self.timer_mode();
        let new_mode = value & TIMER_MODE_MASK;
        if (old_mode == TIMER_MODE_TSC_DEADLINE) != (new_mode == TIMER_MODE_TSC_DEADLINE) {
            self.timer_initial = 0;
        }
        // A running count carries over a switch between one-shot and
        // periodic; any other mode stops it.
        let left = self.timer_left_ns(now_ns);
        self.lvt[LVT_TIMER_INDEX] = value;
        self.timer_deadline = match left {
            Some(left) if self.timer_counts() && self.timer_initial != 0 => Some(now_ns.saturating_add(left)),
            _ => None,
        };
    }

    /// When the timer next raises an interrupt (guest ns), None when it
    /// would raise nothing: stopped, masked or not counting. A masked timer
    /// still counts (its current count runs down) without waking anyone.
    pub fn timer_deadline_ns(&self) -> Option<u64> {
        if self.lvt[LVT_TIMER_INDEX] & LVT_MASKED != 0 || !self.timer_counts() {
            return None;
        }
        self.timer_deadline
    }

    /// Fires the timer if it has reached zero by `now_ns`: sets the LVT
    /// vector in IRR unless masked (several missed periods raise it once),
    /// then reloads (periodic) or stops (one-shot). Returns whether a vector
    /// was raised.
    pub fn poll_timer(&mut self, now_ns: u64) -> bool {
        let Some(deadline) = self.timer_deadline else {
            return false;
        };
        if now_ns < deadline {
            return false;
        }
        let period = self.timer_period_ns();
        self.timer_deadline = if self.timer_mode() == TIMER_MODE_PERIODIC && period != 0 {
            Some(now_ns + period - (now_ns - deadline) % period)
        } else {
            None
        };
        let lvt = self.lvt[LVT_TIMER_INDEX];
        if lvt & LVT_MASKED != 0 {
            return false;
        }
        let vector = (lvt & VECTOR_MASK) as u8;
        self.accept(vector);
        vector >= FIRST_LEGAL_VECTOR
    }
}

/// All ones in the low `width` bytes.
fn all_ones(width: u8) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (width as u32 * 8)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An xAPIC-mode APIC, software-enabled with spurious vector 0xFF.
    fn enabled(id: u32) -> Lapic {
        let mut lapic = Lapic::new(id, id == 0);
        lapic.mmio_write(reg::SVR, SVR_ENABLED | 0xFF, 0);
        lapic
    }

    fn x2apic(id: u32) -> Lapic {
        let mut lapic = enabled(id);
        let base = lapic.apic_base_msr() | APIC_BASE_EXTD;
        lapic.write_apic_base_msr(base).unwrap();
        lapic
    }

    fn msr(offset: u32) -> u32 {
        MSR_X2APIC_FIRST + (offset >> 4)
    }

    #[test]
    fn power_on_state() {
        let bsp = Lapic::new(0, true);
        assert_eq!(bsp.apic_base_msr(), 0xFEE0_0000 | APIC_BASE_BSP | APIC_BASE_ENABLE);
        let ap = Lapic::new(3, false);
        assert_eq!(ap.apic_base_msr(), 0xFEE0_0800);
        assert_eq!(ap.mmio_read(reg::ID, 0), 3 << 24);
        assert_eq!(ap.apic_id(), 3);
        assert_eq!(ap.mmio_read(reg::VERSION, 0), 0x0005_0014);
        assert_eq!(ap.mmio_read(reg::SVR, 0), 0xFF);
        assert_eq!(ap.mmio_read(reg::DFR, 0), 0xFFFF_FFFF);
        for lvt in (reg::LVT_TIMER..=reg::LVT_ERROR).step_by(16) {
            assert_eq!(ap.mmio_read(lvt, 0), LVT_MASKED, "{lvt:#x}");
        }
        assert!(!ap.in_x2apic_mode() && !ap.software_enabled());
    }

    #[test]
    fn priority_follows_tpr_and_isr() {
        let mut lapic = enabled(0);
        lapic.accept(0x41);
        assert_eq!(lapic.pending(), Some(0x41));
        // TPR class 4 blocks class 4 (strictly greater needed) but not 5.
        lapic.mmio_write(reg::TPR, 0x40, 0);
        assert_eq!(lapic.mmio_read(reg::PPR, 0), 0x40);
        assert_eq!(lapic.pending(), None);
        lapic.accept(0x50);
        assert_eq!(lapic.pending(), Some(0x50));
        lapic.ack(0x50);
        // ISR class 5 above TPR class 4: PPR is the class, 0x50.
        assert_eq!(lapic.mmio_read(reg::PPR, 0), 0x50);
        assert_eq!(lapic.pending(), None);
        lapic.accept(0x5F);
        assert_eq!(lapic.pending(), None, "same class as in service");
        lapic.accept(0x60);
        assert_eq!(lapic.pending(), Some(0x60));
        // TPR above ISR: PPR is the whole TPR, low nibble too.
        lapic.mmio_write(reg::TPR, 0x73, 0);
        assert_eq!(lapic.ppr(), 0x73);
        assert_eq!(lapic.pending(), None);
        assert!(lapic.has_pending_for_wakeup(), "wakeup ignores PPR");
        lapic.mmio_write(reg::TPR, 0x1FF, 0);
        assert_eq!(lapic.tpr(), 0xFF, "TPR keeps 8 bits");
        // Same class in TPR and ISR: PPR is the TPR, low nibble and all.
        let mut same = enabled(0);
        same.accept(0x3A);
        same.ack(0x3A);
        same.set_tpr(0x35);
        assert_eq!(same.ppr(), 0x35);
        same.set_tpr(0x2F);
        assert_eq!(same.ppr(), 0x30);
    }

    #[test]
    fn eoi_clears_highest_in_service_first() {
        let mut lapic = enabled(0);
        for v in [0x30, 0x80, 0x51] {
            lapic.accept(v);
            lapic.ack(v);
        }
        assert_eq!(lapic.mmio_read(reg::ISR + 0x40, 0), 1 << 0, "vector 0x80 in ISR word 4");
        assert_eq!(lapic.eoi(), Some((0x80, false)));
        lapic.mmio_write(reg::EOI, 0, 0);
        assert_eq!(lapic.ppr(), 0x30);
        assert_eq!(lapic.eoi(), Some((0x30, false)));
        assert_eq!(lapic.eoi(), None);
        assert_eq!(lapic.ppr(), 0);
    }

    #[test]
    fn irr_bitmap_layout() {
        let mut lapic = enabled(0);
        lapic.accept(0x21);
        lapic.accept(0xFF);
        assert_eq!(lapic.mmio_read(reg::IRR + 0x10, 0), 1 << 1);
        assert_eq!(lapic.mmio_read(reg::IRR + 0x70, 0), 1 << 31);
        assert_eq!(lapic.pending(), Some(0xFF));
        lapic.ack(0xFF);
        assert_eq!(lapic.mmio_read(reg::IRR + 0x70, 0), 0);
        assert_eq!(lapic.mmio_read(reg::ISR + 0x70, 0), 1 << 31);
    }

    #[test]
    fn software_disable_masks_delivery_and_lvts() {
        let mut lapic = enabled(0);
        lapic.mmio_write(reg::LVT_TIMER, 0xEC, 0);
        assert_eq!(lapic.mmio_read(reg::LVT_TIMER, 0), 0xEC);
        lapic.accept(0x40);
        assert_eq!(lapic.pending(), Some(0x40));
        lapic.mmio_write(reg::SVR, 0xFF, 0);
        assert_eq!(lapic.pending(), None);
        assert!(!lapic.has_pending_for_wakeup());
        assert_eq!(lapic.mmio_read(reg::LVT_TIMER, 0), 0xEC | LVT_MASKED);
        // LVT writes stay masked while software-disabled.
        lapic.mmio_write(reg::LVT_LINT0, 0x700, 0);
        assert_eq!(lapic.mmio_read(reg::LVT_LINT0, 0), 0x700 | LVT_MASKED);
        // IPIs are dropped; the interrupt already in IRR survives re-enabling.
        let ipi = Ipi {
            vector: 0x90,
            delivery: Delivery::Fixed,
            dest: Dest::Physical(0),
            shorthand: Shorthand::None,
            level: true,
            trigger_level: false,
        };
        assert_eq!(lapic.receive(&ipi), Received::Nothing);
        lapic.mmio_write(reg::SVR, 0x1FF, 0);
        assert_eq!(lapic.pending(), Some(0x40));
        assert_eq!(lapic.receive(&ipi), Received::Interrupt);
        assert_eq!(lapic.pending(), Some(0x90));
    }

    #[test]
    fn esr_latches_on_write() {
        let mut lapic = enabled(0);
        lapic.accept(3);
        assert_eq!(lapic.pending(), None, "vector 3 is not accepted");
        assert_eq!(lapic.mmio_read(reg::ESR, 0), 0, "not latched before a write");
        lapic.mmio_write(reg::ESR, 0, 0);
        assert_eq!(lapic.mmio_read(reg::ESR, 0), ESR_RECEIVE_ILLEGAL_VECTOR);
        lapic.mmio_write(reg::ESR, 0, 0);
        assert_eq!(lapic.mmio_read(reg::ESR, 0), 0, "the next write latches the new (no) errors");
        // A fixed IPI with vector < 16 is not sent.
        assert_eq!(lapic.mmio_write(reg::ICR_LOW, 0x0000_4005, 0), None);
        lapic.mmio_write(reg::ESR, 0, 0);
        assert_eq!(lapic.mmio_read(reg::ESR, 0), ESR_SEND_ILLEGAL_VECTOR);
        // An unmasked LVT error raises its vector once per new error bit.
        lapic.mmio_write(reg::LVT_ERROR, 0xFE, 0);
        lapic.accept(1);
        assert_eq!(lapic.pending(), Some(0xFE));
        lapic.ack(0xFE);
        lapic.eoi();
        lapic.accept(2);
        assert_eq!(lapic.pending(), None, "bit already pending: no second LVT error");
    }

    #[test]
    fn xapic_register_masks() {
        let mut lapic = enabled(1);
        lapic.mmio_write(reg::LDR, 0x1234_5678, 0);
        assert_eq!(lapic.mmio_read(reg::LDR, 0), 0x1200_0000);
        lapic.mmio_write(reg::DFR, 0, 0);
        assert_eq!(lapic.mmio_read(reg::DFR, 0), 0x0FFF_FFFF);
        lapic.mmio_write(reg::ICR_HIGH, 0x0312_3456, 0);
        assert_eq!(lapic.mmio_read(reg::ICR_HIGH, 0), 0x0300_0000);
        lapic.mmio_write(reg::VERSION, 0, 0);
        lapic.mmio_write(reg::PPR, 0xFF, 0);
        assert_eq!(lapic.mmio_read(reg::VERSION, 0), LAPIC_VERSION);
        assert_eq!(lapic.ppr(), 0);
        // Sub-word access within a register; straddling or 8-byte reads 0.
        assert_eq!(lapic.mmio_read_sized(reg::VERSION + 2, 1, 0), 0x05);
        assert_eq!(lapic.mmio_read_sized(reg::VERSION, 2, 0), 0x14);
        assert_eq!(lapic.mmio_read_sized(reg::VERSION + 3, 2, 0), 0);
        assert_eq!(lapic.mmio_read_sized(reg::VERSION, 8, 0), 0);
        assert_eq!(lapic.mmio_read(reg::VERSION + 4, 0), 0);
        lapic.mmio_write_sized(reg::TPR + 1, 1, 0x55, 0);
        assert_eq!(lapic.tpr(), 0, "byte 1 of TPR is beyond its 8 bits");
        lapic.mmio_write_sized(reg::TPR, 1, 0x55, 0);
        assert_eq!(lapic.tpr(), 0x55);
        assert_eq!(lapic.mmio_read(0x800, 0), 0, "beyond the registers");
    }

    #[test]
    fn mmio_is_gone_outside_xapic_mode() {
        let mut lapic = x2apic(2);
        assert_eq!(lapic.mmio_read(reg::VERSION, 0), 0xFFFF_FFFF);
        assert_eq!(lapic.mmio_read_sized(reg::VERSION, 1, 0), 0xFF);
        lapic.mmio_write(reg::TPR, 0x30, 0);
        assert_eq!(lapic.tpr(), 0);
        let mut disabled = Lapic::new(0, true);
        disabled.write_apic_base_msr(APIC_DEFAULT_BASE).unwrap();
        assert_eq!(disabled.mmio_read(reg::ID, 0), 0xFFFF_FFFF);
        assert_eq!(disabled.msr_read(msr(reg::ID), 0), Err(Gp));
    }

    #[test]
    fn apic_base_transitions() {
        let mut lapic = enabled(5);
        let xapic = lapic.apic_base_msr();
        // Reserved bits, moving the window.
        assert_eq!(lapic.write_apic_base_msr(xapic | 1 << 9), Err(Gp));
        assert_eq!(lapic.write_apic_base_msr(xapic | 1 << 52), Err(Gp));
        assert_eq!(lapic.write_apic_base_msr(0xFED0_0000 | APIC_BASE_ENABLE), Err(Gp));
        // xAPIC → x2APIC keeps state; x2APIC → xAPIC directly is refused.
        lapic.accept(0x40);
        lapic.write_apic_base_msr(xapic | APIC_BASE_EXTD).unwrap();
        assert!(lapic.in_x2apic_mode());
        assert_eq!(lapic.pending(), Some(0x40));
        assert_eq!(lapic.write_apic_base_msr(xapic), Err(Gp));
        // x2APIC → disabled with EXTD still set is refused; clearing both works.
        assert_eq!(lapic.write_apic_base_msr(APIC_DEFAULT_BASE | APIC_BASE_EXTD), Err(Gp));
        lapic.write_apic_base_msr(APIC_DEFAULT_BASE).unwrap();
        assert!(!lapic.hardware_enabled() && !lapic.in_x2apic_mode());
        assert_eq!(lapic.pending(), None);
        // Disabled → x2APIC directly is refused, EXTD alone too.
        assert_eq!(lapic.write_apic_base_msr(xapic | APIC_BASE_EXTD), Err(Gp));
        assert_eq!(lapic.write_apic_base_msr(APIC_DEFAULT_BASE | APIC_BASE_EXTD), Err(Gp));
        // Disabled → xAPIC: reset state.
        lapic.write_apic_base_msr(xapic).unwrap();
        assert!(!lapic.software_enabled());
        assert_eq!(lapic.mmio_read(reg::IRR + 0x20, 0), 0, "disabling cleared IRR");
        // A disabled APIC may sit anywhere; through msr_write too.
        assert_eq!(lapic.msr_write(MSR_APIC_BASE, 0x1234_5000, 0), Ok(None));
        assert_eq!(lapic.msr_read(MSR_APIC_BASE, 0), Ok(0x1234_5000));
    }

    #[test]
    fn x2apic_id_ldr_and_reads() {
        let mut lapic = x2apic(0x23);
        assert_eq!(lapic.msr_read(0x802, 0), Ok(0x23));
        assert_eq!(lapic.msr_read(0x803, 0), Ok(0x0005_0014));
        assert_eq!(lapic.msr_read(0x80D, 0), Ok(2 << 16 | 1 << 3));
        assert_eq!(lapic.msr_read(0x80F, 0), Ok(0x1FF));
        assert_eq!(lapic.msr_read(msr(reg::LVT_CMCI), 0), Ok(0));
        // Write-only and absent registers.
        for absent in [0x80B, 0x83F, 0x80E, 0x831, 0x809, 0x800, 0x840, 0x8FF] {
            assert_eq!(lapic.msr_read(absent, 0), Err(Gp), "{absent:#x}");
        }
        assert_eq!(lapic.msr_read(0x7FF, 0), Err(Gp));
        // Read-only registers.
        for read_only in [0x802, 0x803, 0x80A, 0x80D, 0x810, 0x820, 0x839, 0x80E] {
            assert_eq!(lapic.msr_write(read_only, 0, 0), Err(Gp), "{read_only:#x}");
        }
        // The 64-bit ICR.
        lapic.msr_write(0x830, 0x0000_0007_0000_40F0, 0).unwrap();
        assert_eq!(lapic.msr_read(0x830, 0), Ok(0x0000_0007_0000_40F0));
        // Accesses in xAPIC mode #GP.
        let mut xapic = enabled(0);
        assert_eq!(xapic.msr_read(0x802, 0), Err(Gp));
        assert_eq!(xapic.msr_write(0x808, 0, 0), Err(Gp));
    }

    #[test]
    fn x2apic_write_checks() {
        let mut lapic = x2apic(1);
        assert_eq!(lapic.msr_write(0x808, 0x100, 0), Err(Gp), "TPR reserved bits");
        assert_eq!(lapic.msr_write(0x808, 1 << 32, 0), Err(Gp), "TPR high half");
        assert_eq!(lapic.msr_write(0x808, 0x20, 0), Ok(None));
        assert_eq!(lapic.tpr(), 0x20);
        assert_eq!(lapic.msr_write(0x80B, 1, 0), Err(Gp), "nonzero EOI");
        lapic.accept(0x40);
        lapic.ack(0x40);
        assert_eq!(lapic.msr_write(0x80B, 0, 0), Ok(None));
        assert_eq!(lapic.ppr(), 0x20, "EOI 0 retired 0x40");
        assert_eq!(lapic.msr_write(0x828, 1, 0), Err(Gp), "nonzero ESR");
        assert_eq!(lapic.msr_write(0x828, 0, 0), Ok(None));
        assert_eq!(lapic.msr_write(0x80F, 1 << 12, 0), Err(Gp), "no directed EOI");
        assert_eq!(lapic.msr_write(0x832, 3 << 17, 0), Ok(None), "timer mode bits are writable");
        assert_eq!(lapic.msr_write(0x832, 0x700, 0), Err(Gp), "no delivery mode in LVT timer");
        assert_eq!(lapic.msr_write(0x835, 0x1_A7FF, 0), Ok(None), "LINT0 takes every LINT bit");
        assert_eq!(lapic.msr_write(0x837, 0x400, 0), Err(Gp), "LVT error takes no delivery mode");
        assert_eq!(lapic.msr_write(0x83E, 4, 0), Err(Gp), "TDCR bit 2");
        assert_eq!(lapic.msr_write(0x830, 1 << 12, 0), Err(Gp), "ICR delivery status");
        assert_eq!(lapic.msr_write(0x830, 1 << 20, 0), Err(Gp), "ICR reserved bit");
        assert_eq!(lapic.msr_write(0x83F, 0x100, 0), Err(Gp), "SELF_IPI reserved bits");
        assert_eq!(lapic.msr_write(MSR_X2APIC_LAST + 1, 0, 0), Err(Gp));
    }

    #[test]
    fn icr_writes_send_ipis() {
        let mut lapic = enabled(0);
        lapic.mmio_write(reg::ICR_HIGH, 0x0200_0000, 0);
        let ipi = lapic.mmio_write(reg::ICR_LOW, 0x0000_4850, 0).unwrap();
        assert_eq!(
            ipi,
            Ipi {
                vector: 0x50,
                delivery: Delivery::Fixed,
                dest: Dest::Logical(2),
                shorthand: Shorthand::None,
                level: true,
                trigger_level: false
            }
        );
        assert_eq!(lapic.mmio_read(reg::ICR_LOW, 0) & ICR_DELIVERY_STATUS, 0, "always idle");
        // Linux's INIT assert / de-assert / SIPI sequence.
        let init = lapic.mmio_write(reg::ICR_LOW, 0x0000_C500, 0).unwrap();
        assert_eq!((init.delivery, init.dest), (Delivery::Init, Dest::Physical(2)));
        let deassert = lapic.mmio_write(reg::ICR_LOW, 0x0000_8500, 0).unwrap();
        assert_eq!(deassert.delivery, Delivery::InitDeassert);
        let sipi = lapic.mmio_write(reg::ICR_LOW, 0x0000_0698, 0).unwrap();
        assert_eq!((sipi.delivery, sipi.vector), (Delivery::Startup, 0x98));
        let nmi = lapic.mmio_write(reg::ICR_LOW, 0x000C_0400, 0).unwrap();
        assert_eq!((nmi.delivery, nmi.shorthand), (Delivery::Nmi, Shorthand::AllExcludingSelf));
        assert_eq!(lapic.mmio_write(reg::ICR_LOW, 0x0000_0740, 0), None, "ExtINT is not sent");
        // Receiving them.
        let mut target = enabled(2);
        assert_eq!(target.receive(&sipi), Received::Startup { vector: 0x98 });
        assert_eq!(target.receive(&init), Received::Init);
        assert_eq!(target.receive(&deassert), Received::Nothing);
        assert_eq!(target.receive(&nmi), Received::Nmi);
        // x2APIC: 32-bit destination, SELF_IPI.
        let mut x2 = x2apic(0x105);
        let ipi = x2.msr_write(0x830, 0x0000_0107_0000_00EE, 0).unwrap().unwrap();
        assert_eq!((ipi.dest, ipi.vector), (Dest::Physical(0x107), 0xEE));
        let own = x2.msr_write(0x83F, 0x31, 0).unwrap().unwrap();
        assert_eq!((own.shorthand, own.delivery, own.vector), (Shorthand::SelfOnly, Delivery::Fixed, 0x31));
        assert!(x2.is_addressed_by(&own, 0x105, true));
        assert_eq!(x2.msr_write(0x83F, 0x0F, 0), Ok(None), "illegal self vector");
    }

    fn fixed(dest: Dest, shorthand: Shorthand) -> Ipi {
        Ipi { vector: 0x40, delivery: Delivery::Fixed, dest, shorthand, level: true, trigger_level: false }
    }

    #[test]
    fn physical_and_shorthand_addressing() {
        let lapic = enabled(3);
        assert!(lapic.is_addressed_by(&fixed(Dest::Physical(3), Shorthand::None), 0, false));
        assert!(!lapic.is_addressed_by(&fixed(Dest::Physical(4), Shorthand::None), 0, false));
        assert!(lapic.is_addressed_by(&fixed(Dest::Physical(0xFF), Shorthand::None), 0, false));
        assert!(!lapic.is_addressed_by(&fixed(Dest::Physical(0xFF), Shorthand::None), 0, true));
        assert!(lapic.is_addressed_by(&fixed(Dest::Physical(0xFFFF_FFFF), Shorthand::None), 0, true));
        // Shorthands ignore the destination field.
        let anywhere = Dest::Physical(9);
        assert!(lapic.is_addressed_by(&fixed(anywhere, Shorthand::SelfOnly), 3, false));
        assert!(!lapic.is_addressed_by(&fixed(anywhere, Shorthand::SelfOnly), 0, false));
        assert!(lapic.is_addressed_by(&fixed(anywhere, Shorthand::AllIncludingSelf), 3, false));
        assert!(lapic.is_addressed_by(&fixed(anywhere, Shorthand::AllExcludingSelf), 0, false));
        assert!(!lapic.is_addressed_by(&fixed(anywhere, Shorthand::AllExcludingSelf), 3, false));
    }

    #[test]
    fn logical_addressing() {
        // Flat: LDR bit per CPU, as Linux's flat mode sets it.
        let mut flat = enabled(1);
        flat.mmio_write(reg::LDR, 0x0200_0000, 0);
        let logical = |mda| fixed(Dest::Logical(mda), Shorthand::None);
        assert!(flat.is_addressed_by(&logical(0x03), 0, false));
        assert!(!flat.is_addressed_by(&logical(0x05), 0, false));
        assert!(flat.is_addressed_by(&logical(0xFF), 0, false));
        // Cluster: cluster 2, member bit 1.
        let mut cluster = enabled(9);
        cluster.mmio_write(reg::DFR, 0x0FFF_FFFF, 0);
        cluster.mmio_write(reg::LDR, 0x2200_0000, 0);
        assert!(cluster.is_addressed_by(&logical(0x23), 0, false));
        assert!(!cluster.is_addressed_by(&logical(0x13), 0, false), "other cluster");
        assert!(!cluster.is_addressed_by(&logical(0x25), 0, false), "other member");
        // A logical ID of 0 matches nothing in flat mode.
        let unset = enabled(2);
        assert!(!unset.is_addressed_by(&logical(0xFF), 0, false));
        // x2APIC cluster: ID 0x23 is cluster 2, bit 3.
        let x2 = x2apic(0x23);
        assert!(x2.is_addressed_by(&logical(2 << 16 | 0x0008), 0, true));
        assert!(x2.is_addressed_by(&logical(2 << 16 | 0xFFFF), 0, true));
        assert!(!x2.is_addressed_by(&logical(2 << 16 | 0x0004), 0, true));
        assert!(!x2.is_addressed_by(&logical(3 << 16 | 0x0008), 0, true));
    }

    #[test]
    fn oneshot_timer_counts_down_and_stops() {
        let mut lapic = enabled(0);
        lapic.mmio_write(reg::TIMER_DIVIDE, 0b0011, 0); // divide by 16: 160 ns ticks
        lapic.mmio_write(reg::LVT_TIMER, 0xEC, 0);
        lapic.mmio_write(reg::TIMER_INITIAL, 1000, 1_000);
        assert_eq!(lapic.timer_deadline_ns(), Some(1_000 + 160_000));
        assert_eq!(lapic.mmio_read(reg::TIMER_INITIAL, 0), 1000);
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 1_000), 1000);
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 1_000 + 160 * 250), 750);
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 1_000 + 160 * 250 + 1), 750);
        assert!(!lapic.poll_timer(160_999));
        assert_eq!(lapic.pending(), None);
        assert!(lapic.poll_timer(161_000));
        assert_eq!(lapic.pending(), Some(0xEC));
        assert_eq!(lapic.timer_deadline_ns(), None, "one-shot stops");
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 200_000), 0);
        assert!(!lapic.poll_timer(10_000_000));
        // Writing 0 stops a running timer.
        lapic.mmio_write(reg::TIMER_INITIAL, 5, 0);
        lapic.mmio_write(reg::TIMER_INITIAL, 0, 10);
        assert_eq!(lapic.timer_deadline_ns(), None);
        assert!(!lapic.poll_timer(1_000_000));
    }

    #[test]
    fn periodic_timer_reloads() {
        let mut lapic = enabled(0);
        lapic.mmio_write(reg::TIMER_DIVIDE, 0b1011, 0); // divide by 1: 10 ns ticks
        lapic.mmio_write(reg::LVT_TIMER, TIMER_MODE_PERIODIC | 0xEF, 0);
        lapic.mmio_write(reg::TIMER_INITIAL, 100, 0);
        assert_eq!(lapic.timer_deadline_ns(), Some(1_000));
        assert!(lapic.poll_timer(1_000));
        assert_eq!(lapic.timer_deadline_ns(), Some(2_000));
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 1_500), 50);
        // Late polls fold missed periods into one interrupt and keep phase.
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 4_300), 70, "counts on past an unpolled zero");
        assert!(lapic.poll_timer(4_300));
        assert_eq!(lapic.timer_deadline_ns(), Some(5_000));
        // Masked: still counts, raises nothing, no deadline to wait for.
        lapic.ack(0xEF);
        lapic.eoi();
        lapic.mmio_write(reg::LVT_TIMER, LVT_MASKED | TIMER_MODE_PERIODIC | 0xEF, 4_300);
        assert_eq!(lapic.timer_deadline_ns(), None);
        assert!(!lapic.poll_timer(5_000));
        assert_eq!(lapic.pending(), None);
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 5_250), 75);
        // Unmasked again: the next expiry raises.
        lapic.mmio_write(reg::LVT_TIMER, TIMER_MODE_PERIODIC | 0xEF, 5_250);
        assert_eq!(lapic.timer_deadline_ns(), Some(6_000));
    }

    #[test]
    fn timer_divide_and_modes() {
        let mut lapic = enabled(0);
        let divisors = [
            (0b0000, 2),
            (0b0001, 4),
            (0b0010, 8),
            (0b0011, 16),
            (0b1000, 32),
            (0b1001, 64),
            (0b1010, 128),
            (0b1011, 1),
        ];
        for (code, divisor) in divisors {
            lapic.mmio_write(reg::TIMER_DIVIDE, code | 0xF4, 0);
            assert_eq!(lapic.mmio_read(reg::TIMER_DIVIDE, 0), code);
            lapic.mmio_write(reg::TIMER_INITIAL, 10, 0);
            assert_eq!(lapic.mmio_read(reg::LVT_TIMER, 0), LVT_MASKED);
            assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 0), 10);
            assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 10 * divisor), 9, "divide {divisor}");
        }
        // A divide change mid-count keeps the count, rescales its ticks.
        lapic.mmio_write(reg::TIMER_DIVIDE, 0b0000, 0); // 20 ns ticks
        lapic.mmio_write(reg::LVT_TIMER, 0x40, 0);
        lapic.mmio_write(reg::TIMER_INITIAL, 100, 0);
        lapic.mmio_write(reg::TIMER_DIVIDE, 0b0010, 1_000); // 80 ns ticks
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 1_000), 50);
        assert_eq!(lapic.timer_deadline_ns(), Some(1_000 + 50 * 80));
        // TSC-deadline mode (not advertised): the counter is off, as in Xen.
        lapic.mmio_write(reg::LVT_TIMER, TIMER_MODE_TSC_DEADLINE | 0x40, 600);
        assert_eq!(lapic.mmio_read(reg::LVT_TIMER, 0), TIMER_MODE_TSC_DEADLINE | 0x40);
        assert_eq!(lapic.timer_deadline_ns(), None);
        lapic.mmio_write(reg::TIMER_INITIAL, 100, 700);
        assert_eq!(lapic.mmio_read(reg::TIMER_INITIAL, 700), 0);
        assert_eq!(lapic.mmio_read(reg::TIMER_CURRENT, 700), 0);
        assert!(!lapic.poll_timer(1_000_000));
        // Back to one-shot: the initial count was cleared, nothing runs.
        lapic.mmio_write(reg::LVT_TIMER, 0x40, 800);
        assert_eq!(lapic.mmio_read(reg::TIMER_INITIAL, 800), 0);
        assert_eq!(lapic.timer_deadline_ns(), None);
    }

    #[test]
    fn masked_oneshot_expiry_is_not_raised_by_a_later_unmask() {
        let mut lapic = enabled(0);
        lapic.mmio_write(reg::TIMER_DIVIDE, 0b1011, 0);
        lapic.mmio_write(reg::LVT_TIMER, LVT_MASKED | 0x40, 0);
        lapic.mmio_write(reg::TIMER_INITIAL, 10, 0);
        lapic.mmio_write(reg::LVT_TIMER, 0x40, 500);
        assert!(!lapic.poll_timer(600));
        assert_eq!(lapic.pending(), None);
    }

    #[test]
    fn an_unpolled_expiry_is_raised_before_a_register_write_changes_it() {
        let mut lapic = enabled(0);
        lapic.mmio_write(reg::TIMER_DIVIDE, 0b1011, 0);
        lapic.mmio_write(reg::LVT_TIMER, TIMER_MODE_PERIODIC | 0x40, 0);
        lapic.mmio_write(reg::TIMER_INITIAL, 10, 0);
        // Expired at 100 while unmasked; masking at 150 must not lose it.
        lapic.mmio_write(reg::LVT_TIMER, LVT_MASKED | TIMER_MODE_PERIODIC | 0x40, 150);
        assert_eq!(lapic.pending(), Some(0x40));
    }

    #[test]
    fn init_resets_registers_but_not_id_or_base() {
        let mut lapic = x2apic(7);
        lapic.msr_write(0x808, 0x30, 0).unwrap();
        lapic.msr_write(0x832, 0x40, 0).unwrap();
        lapic.msr_write(0x838, 1000, 0).unwrap();
        lapic.accept(0x50);
        let base = lapic.apic_base_msr();
        lapic.reset_on_init();
        assert_eq!(lapic.apic_base_msr(), base);
        assert_eq!(lapic.msr_read(0x802, 0), Ok(7));
        assert_eq!(lapic.msr_read(0x80D, 0), Ok(1 << 7), "LDR stays derived");
        assert_eq!(lapic.tpr(), 0);
        assert_eq!(lapic.msr_read(0x832, 0), Ok(LVT_MASKED as u64));
        assert_eq!(lapic.msr_read(0x80F, 0), Ok(0xFF));
        assert_eq!(lapic.timer_deadline_ns(), None);
        assert_eq!(lapic.msr_read(0x820, 0), Ok(0), "IRR cleared");
    }

    #[test]
    fn xapic_id_write_and_x2apic_entry() {
        let mut lapic = enabled(4);
        lapic.mmio_write(reg::ID, 9 << 24, 0);
        assert_eq!(lapic.apic_id(), 9);
        let base = lapic.apic_base_msr();
        lapic.write_apic_base_msr(base | APIC_BASE_EXTD).unwrap();
        assert_eq!(lapic.apic_id(), 4, "x2APIC ID is the initial one");
    }
}
