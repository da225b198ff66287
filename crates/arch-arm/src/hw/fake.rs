//! A recording test double of [`PhysicalCpu`] for the host unit tests: a
//! scripted guest (each entry returns the next scripted exit and syndrome),
//! a settable counter, a queue of pending physical interrupts, and a record
//! of everything the vCPU logic did to the hardware.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{intid, ExitKind, PhysicalCpu, Syndrome};
use crate::context::VcpuContext;

/// One guest entry as the test double saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The context key passed to `run_context`.
    pub key: u64,
    /// The stage-2 root and VMID.
    pub vttbr: u64,
    /// The guest PC at entry.
    pub pc: u64,
    /// The list registers at entry (the first four).
    pub lrs: [u64; 4],
}

/// What the fake hardware holds and has seen.
#[derive(Debug, Default)]
struct FakeState {
    exits: VecDeque<(ExitKind, Syndrome)>,
    syndrome: Syndrome,
    counter: u64,
    pending_irqs: VecDeque<u32>,
    ended_irqs: Vec<u32>,
    hyp_timer: Option<u64>,
    ppi_enabled: u32,
    entries: Vec<Entry>,
    tlb_flushes: usize,
    loaded_forgotten: usize,
}

/// The test double: a [`PhysicalCpu`] whose guest follows a script.
#[derive(Debug, Default)]
pub struct FakeCpu {
    state: Mutex<FakeState>,
}

impl FakeCpu {
    /// A fresh fake, leaked so a domain can hold it for `'static`.
    pub fn leaked() -> &'static FakeCpu {
        Box::leak(Box::default())
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Queues the next guest exit: the next entry returns `kind` and leaves
    /// `syndrome` in the syndrome registers.
    pub fn script_exit(&self, kind: ExitKind, syndrome: Syndrome) {
        self.with(|s| s.exits.push_back((kind, syndrome)));
    }

    /// Queues a synchronous exit with ESR_EL2 = `esr`.
    pub fn script_sync(&self, esr: u64) {
        self.script_exit(ExitKind::Sync, Syndrome { esr, ..Syndrome::default() });
    }

    /// Queues an IRQ exit with `irq` pending at the CPU interface.
    pub fn script_irq(&self, irq: u32) {
        self.with(|s| {
            s.exits.push_back((ExitKind::Irq, Syndrome::default()));
            s.pending_irqs.push_back(irq);
        });
    }

    /// Sets the physical counter.
    pub fn set_counter(&self, value: u64) {
        self.with(|s| s.counter = value);
    }

    /// Scripted exits not yet taken.
    pub fn exits_left(&self) -> usize {
        self.with(|s| s.exits.len())
    }

    /// Every guest entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.with(|s| s.entries.clone())
    }

    /// Interrupts ended so far, in order.
    pub fn ended_irqs(&self) -> Vec<u32> {
        self.with(|s| s.ended_irqs.clone())
    }

    /// The EL2 timer's deadline, if armed.
    pub fn hyp_timer(&self) -> Option<u64> {
        self.with(|s| s.hyp_timer)
    }

    /// Whether PPI `irq` is enabled at the redistributor.
    pub fn ppi_enabled(&self, irq: u32) -> bool {
        self.with(|s| s.ppi_enabled & (1 << irq) != 0)
    }

    /// TLB flushes so far.
    pub fn tlb_flushes(&self) -> usize {
        self.with(|s| s.tlb_flushes)
    }

    /// How often the live EL1 context was forgotten.
    pub fn loaded_forgotten(&self) -> usize {
        self.with(|s| s.loaded_forgotten)
    }
}

impl PhysicalCpu for FakeCpu {
    fn run_context(&self, ctx: &mut VcpuContext, key: u64, vttbr: u64, _nr_lrs: usize) -> ExitKind {
        self.with(|s| {
            let lrs = [ctx.vgic.lr[0], ctx.vgic.lr[1], ctx.vgic.lr[2], ctx.vgic.lr[3]];
            s.entries.push(Entry { key, vttbr, pc: ctx.regs.pc, lrs });
            // As after a real save: the injected state is what the CPU holds.
            ctx.vgic.dirty = false;
            let (kind, syndrome) = s.exits.pop_front().expect("the guest ran past its script");
            s.syndrome = syndrome;
            kind
        })
    }

    fn forget_loaded_context(&self) {
        self.with(|s| s.loaded_forgotten += 1);
    }

    fn syndrome(&self) -> Syndrome {
        self.with(|s| s.syndrome)
    }

    fn flush_guest_tlbs(&self) {
        self.with(|s| s.tlb_flushes += 1);
    }

    fn counter(&self) -> u64 {
        self.with(|s| s.counter)
    }

    fn arm_hyp_timer_at(&self, deadline: u64) {
        self.with(|s| s.hyp_timer = Some(deadline));
    }

    fn disarm_hyp_timer(&self) {
        self.with(|s| s.hyp_timer = None);
    }

    fn ack_interrupt(&self) -> u32 {
        self.with(|s| s.pending_irqs.pop_front().unwrap_or(intid::SPURIOUS))
    }

    fn end_interrupt(&self, irq: u32) {
        self.with(|s| s.ended_irqs.push(irq));
    }

    fn set_ppi_enabled(&self, irq: u32, on: bool) {
        self.with(|s| {
            if on {
                s.ppi_enabled |= 1 << irq;
            } else {
                s.ppi_enabled &= !(1 << irq);
            }
        });
    }
}
