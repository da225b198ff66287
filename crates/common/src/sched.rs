//! The hypervisor's domains and the round-robin scheduler loop shared by
//! every board: pick a runnable vCPU, account its runstate, enter it through
//! its [`ArchVcpu`], and act on why it came back.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::{ArchVcpu, VcpuExit};
use crate::domain::{Domain, Lifecycle, VPF_BLOCKED};
use crate::hypercall::{self, Call};
use crate::runstate;
use xen_abi::nr::runstate::{BLOCKED, OFFLINE, RUNNABLE, RUNNING};
use xen_abi::nr::shutdown;

/// Hypercalls a vCPU may make back to back before the loop polls the board
/// (gdb, consoles) again.
const HYPERCALL_BURST: u32 = 256;

/// All domains with their vCPUs' arch contexts.
pub struct Hypervisor {
    /// Domains, in creation order.
    pub domains: Vec<Arc<Domain>>,
    /// Arch contexts, `arch[i][v]` for `domains[i]` vCPU `v`.
    pub arch: Vec<Vec<Box<dyn ArchVcpu>>>,
    /// All-stop: set while a debugger holds the system stopped.
    pub stopped: AtomicBool,
    cursor: usize,
}

/// What the board does between guest slices.
pub trait Board {
    /// Polls devices (gdb serial line, ...) with access to the hypervisor.
    fn poll(&mut self, hv: &mut Hypervisor);
    /// Nothing can run: wait for an interrupt.
    fn idle(&mut self, hv: &Hypervisor);
    /// Whether the loop should return once every domain has finished (the
    /// `--exit` mode); otherwise the board keeps polling (gdb stays usable).
    fn exit_when_done(&self) -> bool {
        true
    }
}

/// How the run ended: per domain, its final lifecycle.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// `(domain id, lifecycle)` for every domain.
    pub domains: Vec<(u16, Lifecycle)>,
}

impl Verdict {
    /// The closing console lines every board prints: one per domain
    /// (`dN: shut down (poweroff)`, `dN: crashed`, ...) and then
    /// `verdict PASS` or `verdict FAIL`, so tools parse one format.
    pub fn summary_lines(&self) -> Vec<alloc::string::String> {
        use alloc::format;
        let mut lines: Vec<_> = self
            .domains
            .iter()
            .map(|(id, l)| match l {
                Lifecycle::Shutdown(r) => format!("d{id}: shut down ({})", shutdown::name(*r)),
                Lifecycle::Crashed => format!("d{id}: crashed"),
                Lifecycle::Dead => format!("d{id}: dead"),
                Lifecycle::Running => format!("d{id}: still running"),
            })
            .collect();
        lines.push(format!("verdict {}", if self.clean() { "PASS" } else { "FAIL" }));
        lines
    }

    /// Every domain powered off cleanly.
    pub fn clean(&self) -> bool {
        self.domains.iter().all(|(_, l)| *l == Lifecycle::Shutdown(shutdown::POWEROFF))
    }
}

impl Hypervisor {
    /// A hypervisor over `domains` with their arch contexts.
    pub fn new(domains: Vec<Arc<Domain>>, arch: Vec<Vec<Box<dyn ArchVcpu>>>) -> Self {
        Hypervisor { domains, arch, stopped: AtomicBool::new(false), cursor: 0 }
    }

    /// Domain by id.
    pub fn domain(&self, id: u16) -> Option<&Arc<Domain>> {
        self.domains.iter().find(|d| d.id == id)
    }

    /// Whether every domain has finished.
    pub fn all_finished(&self) -> bool {
        self.domains.iter().all(|d| d.is_finished())
    }

    /// The verdict so far.
    pub fn verdict(&self) -> Verdict {
        Verdict { domains: self.domains.iter().map(|d| (d.id, d.lifecycle())).collect() }
    }

    /// Round-robin: the next runnable (domain index, vCPU id) after the last.
    pub fn pick_next(&mut self) -> Option<(usize, u32)> {
        if self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let slots: usize = self.domains.iter().map(|d| d.max_vcpus() as usize).sum();
        for step in 1..=slots {
            let mut flat = (self.cursor + step) % slots;
            for (i, d) in self.domains.iter().enumerate() {
                let n = d.max_vcpus() as usize;
                if flat < n {
                    let v = d.vcpus().get(flat)?;
                    if d.vcpu_runnable(v) {
                        self.cursor = (self.cursor + step) % slots;
                        return Some((i, flat as u32));
                    }
                    break;
                }
                flat -= n;
            }
        }
        None
    }

    /// Runs one time slice of the vCPU `(di, vid)`, handling hypercalls in
    /// place until it must give up the CPU.
    pub fn run_slice(&mut self, di: usize, vid: u32) {
        let d = self.domains[di].clone();
        let Ok(v) = d.vcpu(vid) else { return };
        runstate::change(&d, v, RUNNING);
        v.set_running(true);
        crate::time::update_vcpu_system_time(&d, v);
        let arch = &mut self.arch[di];
        let mut burst = 0;
        let exit = loop {
            if v.take_upcall_request() {
                arch[vid as usize].inject_upcall(&d);
            }
            match arch[vid as usize].run(&d) {
                VcpuExit::Hypercall { nr, args } => {
                    let out = hypercall::dispatch(&mut Call::new(&d, vid, arch), nr, args);
                    arch[vid as usize].complete_hypercall(out.ret);
                    burst += 1;
                    if out.deschedule || burst >= HYPERCALL_BURST || !d.vcpu_runnable(v) {
                        break None;
                    }
                }
                other => break Some(other),
            }
        };
        v.set_running(false);
        match exit {
            Some(VcpuExit::Halted) => d.vcpu_block(v),
            Some(VcpuExit::Down) => d.vcpu_down(v),
            Some(VcpuExit::DomainShutdown(reason)) => d.shutdown(reason),
            Some(VcpuExit::Fault) => d.crash(),
            _ => {}
        }
        let next = if !v.is_up() {
            OFFLINE
        } else if v.pause_flags() & VPF_BLOCKED != 0 {
            BLOCKED
        } else {
            RUNNABLE
        };
        runstate::change(&d, v, next);
    }

    /// The main loop: schedules until every domain has finished (when the
    /// board wants that) and returns the verdict.
    pub fn run(&mut self, board: &mut dyn Board) -> Verdict {
        loop {
            board.poll(self);
            if self.all_finished() && board.exit_when_done() {
                return self.verdict();
            }
            match self.pick_next() {
                Some((di, vid)) => self.run_slice(di, vid),
                None => board.idle(self),
            }
        }
    }
}
