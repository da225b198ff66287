//! The board's side of the scheduler loop over a [`Hardware`]: the slice
//! timer, the gdb sessions and console input between slices, idling, the
//! verdict, and building the domains.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use lantern_common::arch::{Preemption, VcpuInitContext};
use lantern_common::boot_config::{BootConfig, DomainSpec};
use lantern_common::clock::Clock;
use lantern_common::console::ConsoleSink;
use lantern_common::domain::{Domain, DomainConfig};
use lantern_common::memory::{DomId, Gfn};
use lantern_common::sched::{Board, DomainSlot, Hypervisor, SliceKind, Verdict};
use lantern_common::{cpio, pv_console};
use lantern_virtio_serial::sessions::{ByteUart, GdbLine, GdbSessions};

use crate::console::SerialConsole;
use crate::hardware::{BootImage, Hardware};

/// Time slice before the host timer preempts a vCPU.
const SLICE_MS: u64 = 10;
/// The shortest a slice is cut to for a vCPU's due timer.
const RATELIMIT_US: u64 = 1000;
/// The longest a boosted slice lasts (a vCPU whose timer fired, ahead of
/// its turn): long enough to take the interrupt, and the vCPU it
/// interrupted waits no longer than this.
const BOOST_US: u64 = 250;
/// How often an idle host looks at the gdb serial line and the console's
/// input (neither raises an interrupt the board takes).
const INPUT_POLL_MS: u64 = 2;
/// How often the console is looked at while gdb holds the system (typing
/// needs no better).
const HELD_CONSOLE_POLL_US: u64 = 1000;

/// The board's side of the scheduler loop.
struct SliceBoard<'a, H: Hardware, U> {
    hw: H,
    /// The counter's rate in Hz.
    freq: u64,
    exit_when_done: bool,
    said_done: bool,
    /// The gdb sessions (the whole system's, and one per domain port), when
    /// the gdb line exists.
    gdb: Option<GdbSessions<U>>,
    /// When to look at the console again while gdb holds the system.
    next_console_poll: u64,
    console: Arc<SerialConsole>,
    /// Counter value at which the current slice ends.
    slice_end: u64,
    /// Domains that could not even be built (they fail the run).
    failures: usize,
    /// The module archive (a restart loads the image from it again).
    archive: &'a [u8],
    clock: Arc<dyn Clock>,
}

impl<H: Hardware, U: ByteUart> SliceBoard<'_, H, U> {
    /// Whether a gdb session holds the system (or a domain of it).
    fn gdb_holding(&self) -> bool {
        self.gdb.as_ref().is_some_and(|g| g.holding())
    }
}

impl<H: Hardware, U: ByteUart> Preemption for SliceBoard<'_, H, U> {
    fn slice_deadline(&self) -> Option<u64> {
        Some(self.slice_end)
    }

    fn host_interrupt(&mut self) -> bool {
        // The backend took the interrupt off the controller; only the host
        // timer (reported as a preemption by the backend itself) ends a
        // slice.
        false
    }
}

impl<H: Hardware, U: ByteUart> Board for SliceBoard<'_, H, U> {
    fn start_slice(&mut self, kind: SliceKind, wake_at: Option<u64>) -> u64 {
        let now = self.hw.now();
        let latest = match kind {
            SliceKind::Turn => now + self.freq * SLICE_MS / 1000,
            SliceKind::Boost => now + self.freq * BOOST_US / 1_000_000,
            SliceKind::Rest { ends_at } => ends_at,
        };
        self.slice_end = slice_end(now, self.freq, wake_at, latest, self.slice_end);
        latest
    }

    fn poll(&mut self, hv: &mut Hypervisor) {
        // Between slices the host timer belongs to the board again.
        self.hw.disarm_timer();
        if let Some(gdb) = self.gdb.as_mut() {
            gdb.poll(hv);
        }
        // Typed input: a Ctrl-A switch, a debug key or a domain's console.
        // While gdb holds the system this loop spins: reading the UART each
        // time would take QEMU's device lock so often that its main loop,
        // which moves gdb's bytes, waits for it; look every so often.
        let now = self.hw.now();
        if self.gdb_holding() && now < self.next_console_poll {
            return;
        }
        self.next_console_poll = now + self.freq * HELD_CONSOLE_POLL_US / 1_000_000;
        while let Some(b) = self.hw.read_console() {
            let console = &self.console;
            hv.serial_input(b, &mut |line| console.lantern_line(line));
        }
    }

    fn idle(&mut self, hv: &Hypervisor, wake_at: Option<u64>) {
        if self.gdb_holding() {
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
        let poll_at = self.hw.now() + self.freq * INPUT_POLL_MS / 1000;
        self.hw.arm_timer(wake_at.map_or(poll_at, |w| w.min(poll_at)));
        self.hw.wait_for_interrupt();
    }

    fn now_ticks(&self) -> u64 {
        self.hw.now()
    }

    fn console(&self) -> Arc<dyn ConsoleSink> {
        self.console.clone()
    }

    fn exit_when_done(&self) -> bool {
        self.exit_when_done
    }

    fn exit(&mut self, verdict: &Verdict) -> ! {
        self.hw.disarm_timer();
        let verdict = Verdict { failed_to_build: self.failures, ..verdict.clone() };
        for line in verdict.summary_lines() {
            H::print(format_args!("(lantern) {}\n", line));
        }
        self.hw.power_off(if verdict.clean() { 0 } else { 1 })
    }

    fn build_domain(&mut self, id: DomId, spec: &DomainSpec) -> Result<DomainSlot, String> {
        build_domain(&self.hw, id, spec, self.archive, self.clock.clone(), self.console.clone())
    }

    fn announce(&mut self, line: &str) {
        self.console.lantern_line(line);
    }
}

/// Where the slice starting at counter value `now` (ticking at `freq`)
/// and lasting until `latest` at most ends, given a vCPU's timer due at
/// `wake_at` and the last slice's end.
fn slice_end(now: u64, freq: u64, wake_at: Option<u64>, latest: u64, last_end: u64) -> u64 {
    let end = latest;
    // A deadline already past (its vCPU due but not woken) ends nothing
    // early, and a slice lasts at least RATELIMIT_US (as Xen's
    // sched_ratelimit_us): with many vCPUs' timers due one after
    // another, slices cut at each would spend the CPU on switching.
    let least = now + freq * RATELIMIT_US / 1_000_000;
    let end = wake_at.filter(|&w| w > now).map_or(end, |w| w.max(least).min(end));
    // Strictly later than the last slice's end: the backend arms the host
    // timer once per distinct deadline, and two slices cut short by the
    // same wake-up would otherwise share one.
    end.max(last_end + 1)
}

/// Builds one domain: its image and DTB loaded, vCPU 0 powered on at the
/// entry with the DTB as its boot argument.
fn build_domain<H: Hardware>(
    hw: &H,
    id: u16,
    spec: &DomainSpec,
    archive: &[u8],
    clock: Arc<dyn Clock>,
    console: Arc<dyn ConsoleSink>,
) -> Result<DomainSlot, String> {
    let image = cpio::find(archive, &spec.image)
        .ok_or_else(|| alloc::format!("no image '{}' in the module archive", spec.image))?;
    let ram = spec.mem_bytes.min(H::RAM_MAX) & !0xfff;
    let d = Domain::new(DomainConfig {
        id,
        name: spec.name.clone(),
        max_vcpus: spec.vcpus,
        ram_pages: ram >> 12,
        abi: hw.abi(),
        clock,
        console,
    })
    .map_err(|e| alloc::format!("cannot create domain: {:?}", e))?;
    pv_console::attach(&d, Gfn(H::CONSOLE_RING >> 12)).map_err(|e| alloc::format!("console ring: {e:?}"))?;
    let initrd = match &spec.initrd {
        Some(name) => {
            Some(cpio::find(archive, name).ok_or_else(|| alloc::format!("no initrd '{name}' in the module archive"))?)
        }
        None => None,
    };
    let b = hw
        .load(&d, &BootImage { image, initrd, ram, vcpus: spec.vcpus, cmdline: &spec.cmdline })
        .map_err(|e| alloc::format!("cannot load '{}': {}", spec.image, e))?;
    log::info!(
        "d{}: '{}' (image {}) {} vCPU(s), {} MiB, entry {:#x}, dtb {:#x} ({} bytes)",
        id,
        spec.name,
        spec.image,
        spec.vcpus,
        ram >> 20,
        b.entry,
        b.dtb,
        b.dtb_len
    );
    if let Some((start, end)) = b.initrd {
        log::info!("d{id}: initrd at {start:#x}..{end:#x}");
    }
    let mut slot = DomainSlot::new(d, hw.arch_domain(id, spec.vcpus)).with_spec(spec);
    let boot_vcpu = slot.vcpu_mut(0).ok_or_else(|| String::from("a domain needs a vCPU"))?;
    boot_vcpu
        .initialise(&VcpuInitContext::PowerOn { entry: b.entry, context_id: b.dtb })
        .map_err(|e| alloc::format!("starting vCPU 0: {:?}", e))?;
    Ok(slot)
}

/// The module archive of guest images at `modules` (address and size, as
/// the board's DTB names it), or an empty one.
///
/// # Safety
/// The memory must hold the archive QEMU's loader put there and nothing
/// else may use it for the rest of the run (the heap stops below it).
pub unsafe fn module_archive(modules: Option<(u64, u64)>) -> &'static [u8] {
    match modules {
        // SAFETY: the caller vouches for the memory.
        Some((addr, size)) => unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) },
        None => &[],
    }
}

/// Creates the domains of `cfg` from the images in `archive`, runs them
/// to completion with `line`'s gdb sessions and powers off with the
/// verdict (status 0 when every domain powered off cleanly). `freq` is the
/// rate of `hw`'s counter, `clock` the domains' clock over it.
pub fn run<H: Hardware, U: ByteUart>(
    hw: H,
    freq: u64,
    cfg: &BootConfig,
    archive: &[u8],
    clock: Arc<dyn Clock>,
    line: Option<GdbLine<U>>,
) -> ! {
    // The board's loop owns the sessions from here.
    let gdb = line.map(GdbSessions::new);
    let mut board = SliceBoard {
        hw,
        freq,
        exit_when_done: cfg.exit_when_done,
        said_done: false,
        gdb,
        next_console_poll: 0,
        console: Arc::new(SerialConsole::new(H::print)),
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
        board.hw.power_off(1)
    }
    let mut hv = Hypervisor::new(slots);
    H::print(format_args!("(lantern) {}\n", hv.start_serial_input()));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 62.5 MHz counter (arm64 virt's): 625,000 ticks a slice, 62,500 the
    /// ratelimit.
    const HZ: u64 = 62_500_000;
    /// Where a whole slice from 1,000 ends.
    const FULL: u64 = 1_000 + 625_000;

    #[test]
    fn a_slice_lasts_slice_ms_without_a_due_timer() {
        assert_eq!(slice_end(1_000, HZ, None, FULL, 0), 1_000 + 625_000);
    }

    #[test]
    fn a_due_timer_cuts_the_slice_but_not_below_the_ratelimit() {
        assert_eq!(slice_end(1_000, HZ, Some(1_000 + 100_000), FULL, 0), 1_000 + 100_000);
        assert_eq!(slice_end(1_000, HZ, Some(1_000 + 10), FULL, 0), 1_000 + 62_500);
        assert_eq!(slice_end(1_000, HZ, Some(1_000 + 10_000_000), FULL, 0), 1_000 + 625_000);
    }

    #[test]
    fn a_short_slice_ends_at_its_latest_even_within_the_ratelimit() {
        let boost = 1_000 + HZ * BOOST_US / 1_000_000;
        assert_eq!(slice_end(1_000, HZ, None, boost, 0), boost);
        assert_eq!(slice_end(1_000, HZ, Some(1_000 + 10), boost, 0), boost);
        // The rest of a turn: its own end, or a due timer past the ratelimit.
        let rest = 1_000 + 200_000;
        assert_eq!(slice_end(1_000, HZ, None, rest, 0), rest);
        assert_eq!(slice_end(1_000, HZ, Some(1_000 + 100_000), rest, 0), 1_000 + 100_000);
    }

    #[test]
    fn a_past_deadline_ends_nothing_early() {
        assert_eq!(slice_end(1_000, HZ, Some(999), FULL, 0), 1_000 + 625_000);
        assert_eq!(slice_end(1_000, HZ, Some(1_000), FULL, 0), 1_000 + 625_000);
    }

    #[test]
    fn each_slice_ends_strictly_later_than_the_last() {
        let first = slice_end(1_000, HZ, Some(1_000 + 100_000), FULL, 0);
        assert_eq!(slice_end(1_000, HZ, Some(1_000 + 100_000), FULL, first), first + 1);
    }
}
