//! Builds the domains named in the boot configuration (guest images from the
//! module archive QEMU loaded) and runs them with the core's round-robin
//! scheduler. [`RiscvBoard`] is this board's side of the scheduler loop:
//! the supervisor timer ends each slice, a virtio-serial port (or the PCI
//! 16550) carries gdb, the 16550 console prints the domains' consoles and
//! takes serial input (Ctrl-A x3 switches it between the domains' PV
//! consoles and the debug keys), the `sifive_test` finisher ends the run.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use lantern_arch_riscv::boot;
use lantern_arch_riscv::guest::GuestMap;
use lantern_arch_riscv::hw::hs::{self, HsHart};
use lantern_arch_riscv::layout::RISCV64;
use lantern_arch_riscv::vcpu::RiscvDomain;
use lantern_common::arch::{Preemption, VcpuInitContext};
use lantern_common::boot_config::{BootConfig, DomainSpec};
use lantern_common::clock::Clock;
use lantern_common::console::{ConsoleSink, LinePrefixer};
use lantern_common::domain::{Domain, DomainConfig};
use lantern_common::memory::DomId;
use lantern_common::memory::Gfn;
use lantern_common::sched::{Board, DomainSlot, Hypervisor, Verdict};
use lantern_common::{cpio, pv_console};

use super::clock::counter_clock;
use super::gdb_line::{GdbLine, GdbSessions};
use super::Machine;

/// Time slice before the supervisor timer preempts a vCPU.
const SLICE_MS: u64 = 10;
/// The shortest a slice is cut to for a blocked vCPU's due timer.
const RATELIMIT_US: u64 = 1000;
/// How often an idle host looks at the gdb serial line and the console's
/// input (neither raises an interrupt: Lantern does not drive the PLIC).
const INPUT_POLL_MS: u64 = 2;
/// How often the console is looked at while gdb holds the system (typing
/// needs no better).
const HELD_CONSOLE_POLL_US: u64 = 1000;

/// The domains' console lines go to the 16550 as `(dN) line`.
struct SerialConsole;

/// The console's open-line state (one serial line for every domain).
static LINES: LinePrefixer = LinePrefixer::new();

/// Prints raw console text.
fn print_raw(args: core::fmt::Arguments<'_>) {
    crate::print!("{}", args);
}

impl ConsoleSink for SerialConsole {
    fn line(&self, dom: DomId, line: &str) {
        LINES.line(dom, line, &print_raw);
    }

    fn partial(&self, dom: DomId, text: &str) -> bool {
        LINES.partial(dom, text, &print_raw);
        true
    }
}

/// The board's side of the scheduler loop.
struct RiscvBoard<'m> {
    machine: &'m Machine,
    exit_when_done: bool,
    said_done: bool,
    /// The gdb sessions (the whole system's, and one per domain port), when
    /// the gdb line exists.
    gdb: Option<GdbSessions>,
    /// When to look at the console again while gdb holds the system.
    next_console_poll: u64,
    console: Arc<SerialConsole>,
    /// Counter value at which the current slice ends.
    slice_end: u64,
    /// Domains that could not even be built (they fail the run).
    failures: usize,
    /// The module archive (a restart loads the image from it again).
    archive: &'m [u8],
    clock: Arc<dyn Clock>,
}

impl Preemption for RiscvBoard<'_> {
    fn slice_deadline(&self) -> Option<u64> {
        Some(self.slice_end)
    }

    fn host_interrupt(&mut self) -> bool {
        // Only the supervisor timer (reported as a preemption by the
        // backend itself) ends a slice.
        false
    }
}

impl Board for RiscvBoard<'_> {
    fn start_slice(&mut self, wake_at: Option<u64>) {
        let now = hs::now();
        let end = now + self.machine.freq * SLICE_MS / 1000;
        // A deadline already past (its vCPU due but not woken) ends nothing
        // early, and a slice lasts at least RATELIMIT_US (as Xen's
        // sched_ratelimit_us): with many vCPUs' timers due one after
        // another, slices cut at each would spend the CPU on switching.
        let least = now + self.machine.freq * RATELIMIT_US / 1_000_000;
        let end = wake_at.filter(|&w| w > now).map_or(end, |w| w.max(least).min(end));
        // Strictly later than the last slice's end: the backend arms the
        // timer once per distinct deadline, and two slices cut short by
        // the same wake-up would otherwise share one.
        self.slice_end = end.max(self.slice_end + 1);
    }

    fn poll(&mut self, hv: &mut Hypervisor) {
        // Between slices the timer belongs to the board again.
        hs::set_timer(u64::MAX);
        if let Some(gdb) = self.gdb.as_mut() {
            gdb.poll(hv);
        }
        // Typed input: a Ctrl-A switch, a debug key or a domain's console.
        // While gdb holds the system this loop spins: reading the 16550 each
        // time would take QEMU's device lock so often that its main loop,
        // which moves gdb's bytes, waits for it; look every so often.
        let now = hs::now();
        if self.gdb.as_ref().is_some_and(|g| g.holding()) && now < self.next_console_poll {
            return;
        }
        self.next_console_poll = now + self.machine.freq * HELD_CONSOLE_POLL_US / 1_000_000;
        while let Some(b) = super::console::try_read() {
            hv.serial_input(b, &mut |line| {
                LINES.close(&print_raw);
                crate::println!("(lantern) {}", line)
            });
        }
    }

    fn idle(&mut self, hv: &Hypervisor, wake_at: Option<u64>) {
        if self.gdb.as_ref().is_some_and(|g| g.holding()) {
            // gdb holds the system: look at the line again right away (it
            // raises no interrupt here) instead of sleeping a poll period
            // between each of gdb's packets.
            core::hint::spin_loop();
            return;
        }
        if hv.all_finished() {
            if self.exit_when_done {
                return;
            }
            if !self.said_done {
                self.said_done = true;
                log::info!("every domain has finished; staying up for gdb (boot with `exit` to power off)");
            }
        }
        // Wake up regularly to look at the serial lines.
        let poll_at = hs::now() + self.machine.freq * INPUT_POLL_MS / 1000;
        hs::set_timer(wake_at.map_or(poll_at, |w| w.min(poll_at)));
        // Interrupts stay masked in HS (sstatus.SIE 0): wfi still wakes on
        // the pending timer, which the next set_timer clears.
        hs::wait_for_interrupt();
        hs::set_timer(u64::MAX);
    }

    fn now_ticks(&self) -> u64 {
        hs::now()
    }

    fn console(&self) -> Arc<dyn ConsoleSink> {
        self.console.clone()
    }

    fn exit_when_done(&self) -> bool {
        self.exit_when_done
    }

    fn exit(&mut self, verdict: &Verdict) -> ! {
        hs::set_timer(u64::MAX);
        let verdict = Verdict { failed_to_build: self.failures, ..verdict.clone() };
        for line in verdict.summary_lines() {
            crate::println!("(lantern) {}", line);
        }
        super::power::off(if verdict.clean() { 0 } else { 1 })
    }

    fn build_domain(&mut self, id: DomId, spec: &DomainSpec) -> Result<DomainSlot, String> {
        build_domain(id, spec, self.archive, self.clock.clone(), self.console.clone())
    }

    fn announce(&mut self, line: &str) {
        LINES.close(&print_raw);
        crate::println!("(lantern) {}", line);
    }
}

/// Builds one domain: its image and DTB loaded, vCPU 0 powered on at the
/// entry with `a0` = 0 (its hart id) and `a1` = the DTB.
fn build_domain(
    id: u16,
    spec: &DomainSpec,
    archive: &[u8],
    clock: Arc<dyn Clock>,
    console: Arc<dyn ConsoleSink>,
) -> Result<DomainSlot, String> {
    let image = cpio::find(archive, &spec.image)
        .ok_or_else(|| alloc::format!("no image '{}' in the module archive", spec.image))?;
    let ram = spec.mem_bytes.min(GuestMap::RAM_MAX) & !0xfff;
    let d = Domain::new(DomainConfig {
        id,
        name: spec.name.clone(),
        max_vcpus: spec.vcpus,
        ram_pages: ram >> 12,
        abi: &RISCV64,
        clock,
        console,
    })
    .map_err(|e| alloc::format!("cannot create domain: {:?}", e))?;
    pv_console::attach(&d, Gfn(GuestMap::CONSOLE_RING >> 12)).map_err(|e| alloc::format!("console ring: {e:?}"))?;
    let initrd = match &spec.initrd {
        Some(name) => {
            Some(cpio::find(archive, name).ok_or_else(|| alloc::format!("no initrd '{name}' in the module archive"))?)
        }
        None => None,
    };
    let b = boot::load(&d, image, initrd, ram, spec.vcpus, &spec.cmdline)
        .map_err(|e| alloc::format!("cannot load '{}': {}", spec.image, e))?;
    log::info!(
        "d{}: '{}' (image {}) {} vCPU(s), {} MiB, entry {:#x}, dtb {:#x} ({} bytes)",
        id,
        spec.name,
        spec.image,
        spec.vcpus,
        ram >> 20,
        b.entry,
        b.dtb.0,
        b.dtb_len
    );
    if let Some((start, end)) = b.initrd {
        log::info!("d{id}: initrd at {start:#x}..{end:#x}");
    }
    let mut slot = DomainSlot::new(d, Box::new(RiscvDomain::new(&HsHart, id, spec.vcpus))).with_spec(spec);
    let boot_vcpu = slot.vcpu_mut(0).ok_or_else(|| String::from("a domain needs a vCPU"))?;
    boot_vcpu
        .initialise(&VcpuInitContext::PowerOn { entry: b.entry, context_id: b.dtb.0 })
        .map_err(|e| alloc::format!("starting vCPU 0: {:?}", e))?;
    Ok(slot)
}

/// Creates the domains of `cfg`, runs them to completion and powers off
/// with the verdict (status 0 when every domain powered off cleanly).
pub fn run(m: &Machine, cfg: &BootConfig, line: Option<GdbLine>) -> ! {
    let archive: &[u8] = match m.dt.modules {
        // SAFETY: QEMU's loader put the archive there and the heap stops
        // below it, so nothing else uses that memory.
        Some((addr, size)) => unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) },
        None => &[],
    };
    let clock: Arc<dyn Clock> = Arc::new(counter_clock(m.boot_ticks, m.freq));
    // The board's loop owns the sessions from here.
    let gdb = line.map(GdbSessions::new);
    let mut board = RiscvBoard {
        machine: m,
        exit_when_done: cfg.exit_when_done,
        said_done: false,
        gdb,
        next_console_poll: 0,
        console: Arc::new(SerialConsole),
        slice_end: 0,
        failures: 0,
        archive,
        clock,
    };
    let mut slots = Vec::new();
    for (i, spec) in cfg.domains.iter().enumerate() {
        let id = (i + 1) as u16;
        match board.build_domain(id, spec) {
            Ok(slot) => slots.push(slot),
            Err(e) => {
                log::error!("d{}: {}", id, e);
                board.failures += 1;
            }
        }
    }
    if slots.is_empty() {
        log::error!("no domain could be started");
        super::power::off(1)
    }
    let mut hv = Hypervisor::new(slots);
    crate::println!("(lantern) {}", hv.start_serial_input());
    if cfg.wait_for_gdb {
        match board.gdb.as_mut() {
            Some(gdb) => {
                log::info!("gdb-wait: holding every vCPU until gdb attaches on {}", gdb.name());
                gdb.wait_for_gdb(&hv);
            }
            None => log::warn!("gdb-wait: there is no gdb line (virtio-serial or pci-serial device); not waiting"),
        }
    }
    let verdict = hv.run(&mut board);
    for line in hv.diagnostic_lines() {
        log::debug!("unhandled: {line}");
    }
    // The machine powers off next: tearing every domain down first would
    // only cost time.
    core::mem::forget(hv);
    board.exit(&verdict)
}
