//! A recording test double of [`Hart`] for the host unit tests: a scripted
//! guest (each entry returns the next scripted trap), a settable counter and
//! a record of what the vCPU logic did to the hardware.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::Hart;
use crate::context::VcpuContext;
use crate::trap::Trap;

/// One guest entry as the double saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The context key.
    pub key: u64,
    /// `hgatp`.
    pub hgatp: u64,
    /// The PC at entry.
    pub pc: u64,
    /// `hvip` at entry.
    pub hvip: u64,
    /// `hedeleg` at entry.
    pub hedeleg: u64,
}

#[derive(Debug, Default)]
struct FakeState {
    traps: VecDeque<(Trap, Option<u64>)>,
    icache_syncs: usize,
    now: u64,
    timer: Option<u64>,
    timer_sets: usize,
    entries: Vec<Entry>,
    gvma_fences: usize,
}

/// The test double.
#[derive(Debug, Default)]
pub struct FakeHart {
    state: Mutex<FakeState>,
}

impl FakeHart {
    /// A fresh double, leaked so a domain can hold it for `'static`.
    pub fn leaked() -> &'static FakeHart {
        Box::leak(Box::default())
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Queues the next trap.
    pub fn script(&self, trap: Trap) {
        self.with(|s| s.traps.push_back((trap, None)));
    }

    /// Queues the next trap, taken with the guest's PC at `pc` (the guest
    /// ran on to there).
    pub fn script_at(&self, trap: Trap, pc: u64) {
        self.with(|s| s.traps.push_back((trap, Some(pc))));
    }

    /// `fence.i`s so far.
    pub fn icache_syncs(&self) -> usize {
        self.with(|s| s.icache_syncs)
    }

    /// Sets the counter.
    pub fn set_now(&self, now: u64) {
        self.with(|s| s.now = now);
    }

    /// The armed host timer (None: off).
    pub fn timer(&self) -> Option<u64> {
        self.with(|s| s.timer)
    }

    /// How often the timer was programmed.
    pub fn timer_sets(&self) -> usize {
        self.with(|s| s.timer_sets)
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.with(|s| s.entries.clone())
    }

    /// `hfence.gvma`s so far.
    pub fn gvma_fences(&self) -> usize {
        self.with(|s| s.gvma_fences)
    }

    /// Scripted traps not yet taken.
    pub fn traps_left(&self) -> usize {
        self.with(|s| s.traps.len())
    }
}

impl Hart for FakeHart {
    fn run(&self, ctx: &mut VcpuContext, hgatp: u64, key: u64) -> Trap {
        self.with(|s| {
            s.entries.push(Entry { key, hgatp, pc: ctx.pc, hvip: ctx.hvip, hedeleg: ctx.hedeleg });
            let (trap, pc) = s.traps.pop_front().expect("the guest ran past its script");
            if let Some(pc) = pc {
                ctx.pc = pc;
            }
            trap
        })
    }

    fn fence_gvma(&self) {
        self.with(|s| s.gvma_fences += 1);
    }

    fn sync_instructions(&self) {
        self.with(|s| s.icache_syncs += 1);
    }

    fn now(&self) -> u64 {
        self.with(|s| s.now)
    }

    fn set_timer(&self, deadline: u64) {
        self.with(|s| {
            s.timer = (deadline != u64::MAX).then_some(deadline);
            s.timer_sets += 1;
        });
    }
}
