//! Builds the domains named by the boot configuration from the guest images
//! in the boot module (a cpio archive), and runs them with the core's
//! round-robin scheduler until they finish. [`X86Board`] is this board's
//! side of the scheduler loop: the APIC tick preempts, virtio-serial ports
//! carry gdb's sessions (the whole system's and one per domain; else COM2
//! the whole system's), COM1 prints the domains' consoles and takes serial input (switched with
//! Ctrl-A x3 between the domains' PV consoles and the debug keys),
//! isa-debug-exit ends the run.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use lantern_arch_x86::vcpu::SvmDomain;
use lantern_arch_x86::{acpi, pvh};
use lantern_common::addr::Gpa;
use lantern_common::arch::{Preemption, VcpuInitContext};
use lantern_common::boot_config::{BootConfig, DomainSpec};
use lantern_common::clock::Clock;
use lantern_common::console::{ConsoleSink, LinePrefixer};
use lantern_common::domain::{Domain, DomainConfig};
use lantern_common::memory::DomId;
use lantern_common::memory::{Gfn, P2mType, Page, PAGE_SIZE};
use lantern_common::sched::{Board, DomainSlot, Hypervisor, SliceKind, Verdict};
use lantern_common::{cpio, loader, pv_console};
use xen_abi::arch_x86::HVM_CONSOLE_GFN;
use xen_abi::nr::{hvm_param, shutdown};

use crate::gdb_line::GdbSessions;
use crate::interrupts;

/// The domains' console lines go to COM1 as `(dN) line`.
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

/// How often COM1 is looked at while gdb holds the system (typing needs no
/// better).
const HELD_CONSOLE_POLL_US: u64 = 1000;

/// This board's side of the scheduler loop.
struct X86Board<'a> {
    exit_when_done: bool,
    /// The gdb sessions: the whole system's, and one per domain port
    /// (none without a gdb line).
    gdb: Option<GdbSessions>,
    /// When to look at COM1 again while gdb holds the system (TSC).
    next_console_poll: u64,
    console: Arc<SerialConsole>,
    /// The boot module (a restart loads the image from it again).
    archive: &'a [u8],
    clock: Arc<dyn Clock>,
}

impl X86Board<'_> {
    /// Whether a gdb session holds the system (or a domain of it).
    fn gdb_holding(&self) -> bool {
        self.gdb.as_ref().is_some_and(|g| g.holding())
    }
}

impl Preemption for X86Board<'_> {
    fn slice_deadline(&self) -> Option<u64> {
        // The one-shot APIC timer, armed per slice (`start_slice`), ends it:
        // nothing to arm per guest entry.
        None
    }

    fn host_interrupt(&mut self) -> bool {
        let before = interrupts::TIMER_TICKS.load(Ordering::Relaxed);
        interrupts::take_pending();
        interrupts::TIMER_TICKS.load(Ordering::Relaxed) != before
    }
}

impl Board for X86Board<'_> {
    fn start_slice(&mut self, kind: SliceKind, wake_at: Option<u64>) -> u64 {
        let now = self.now_ticks();
        let latest = match kind {
            SliceKind::Turn => now + interrupts::slice_tsc(),
            SliceKind::Boost => now + interrupts::tsc_for_us(interrupts::BOOST_US),
            SliceKind::Rest { ends_at } => ends_at,
        };
        interrupts::arm_timer_at(wake_at, interrupts::RATELIMIT_US, latest);
        latest
    }

    fn poll(&mut self, hv: &mut Hypervisor) {
        if let Some(gdb) = self.gdb.as_mut() {
            gdb.poll(hv);
        }
        // Typed input: a Ctrl-A switch, a debug key or a domain's console.
        // While gdb holds the system this loop spins: reading COM1's status
        // each time would take QEMU's device lock so often that its main
        // loop, which moves gdb's bytes, waits for it; look every so often.
        let now = self.now_ticks();
        if self.gdb_holding() && now < self.next_console_poll {
            return;
        }
        self.next_console_poll = now + interrupts::TSC_HZ.load(Ordering::Relaxed) * HELD_CONSOLE_POLL_US / 1_000_000;
        while let Some(b) = crate::serial::try_read() {
            hv.serial_input(b, &mut |line| {
                LINES.close(&print_raw);
                crate::println!("(lantern) {line}")
            });
        }
    }

    fn idle(&mut self, _hv: &Hypervisor, wake_at: Option<u64>) {
        if self.gdb_holding() {
            // gdb holds the system: look at the line again right away (it
            // raises no interrupt here), instead of sleeping a whole tick.
            core::hint::spin_loop();
            return;
        }
        // Until a blocked vCPU's timer is due, and at the latest a slice
        // from now, to look at the serial lines (they raise no interrupt).
        interrupts::arm_timer_at(wake_at, 0, self.now_ticks() + interrupts::slice_tsc());
        interrupts::wait_for_interrupt();
    }

    fn now_ticks(&self) -> u64 {
        // SAFETY: RDTSC has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    fn console(&self) -> Arc<dyn ConsoleSink> {
        self.console.clone()
    }

    fn exit_when_done(&self) -> bool {
        self.exit_when_done
    }

    fn exit(&mut self, verdict: &Verdict) -> ! {
        for line in verdict.summary_lines() {
            crate::println!("(lantern) {line}");
        }
        crate::exit_qemu(verdict.clean())
    }

    fn build_domain(&mut self, id: DomId, spec: &DomainSpec) -> Result<DomainSlot, String> {
        build_domain(id, spec, self.archive, self.clock.clone(), self.console.clone())
    }

    fn announce(&mut self, line: &str) {
        LINES.close(&print_raw);
        crate::println!("(lantern) {line}");
    }
}

/// Builds one domain: its image loaded, its initrd (if any) and the PVH
/// start info placed above it, vCPU 0 powered on at the PVH entry.
fn build_domain(
    id: u16,
    spec: &DomainSpec,
    archive: &[u8],
    clock: Arc<dyn Clock>,
    console: Arc<dyn ConsoleSink>,
) -> Result<DomainSlot, String> {
    let image = cpio::find(archive, &spec.image)
        .ok_or_else(|| format!("guest image '{}' not in the boot module", spec.image))?;
    let initrd = match &spec.initrd {
        Some(name) => Some(cpio::find(archive, name).ok_or_else(|| format!("no initrd '{name}' in the boot module"))?),
        None => None,
    };
    let d = Domain::new(DomainConfig {
        id,
        name: spec.name.clone(),
        max_vcpus: spec.vcpus,
        ram_pages: spec.mem_bytes / 4096,
        abi: &lantern_arch_x86::layout::X86_64,
        clock,
        console,
    })
    .map_err(|e| format!("creating domain: {e:?}"))?;
    // Xen's default for an HVM domain: a triple fault reboots it.
    d.set_hvm_param(hvm_param::TRIPLE_FAULT_REASON as usize, shutdown::REBOOT as u64)
        .map_err(|e| format!("HVM parameters: {e:?}"))?;
    let img = loader::load_elf(&d, image).map_err(|e| format!("loading '{}': {e:?}", spec.image))?;
    let entry = img.phys32_entry.unwrap_or(img.entry);
    // The console ring where Xen's toolstack puts it, among the special
    // pages just below 4 GiB: above any RAM a domain here has, and listed
    // reserved in the memory map all the same.
    let console_gfn = Gfn(HVM_CONSOLE_GFN);
    if spec.mem_bytes > console_gfn.0 << 12 {
        return Err(format!(
            "{} MiB of RAM would cover the console ring's gfn {:#x}",
            spec.mem_bytes >> 20,
            console_gfn.0
        ));
    }
    pv_console::attach(&d, console_gfn).map_err(|e| format!("console ring: {e:?}"))?;
    let acpi = place_acpi_tables(&d, spec)?;
    let mut reserved: Vec<Gpa> = acpi.pages().map(Gpa).collect();
    reserved.push(Gpa(console_gfn.0 << 12));
    let boot = pvh::BootInputs {
        image_end: Gpa(img.high),
        mem_bytes: spec.mem_bytes,
        cmdline: &spec.cmdline,
        reserved: &reserved,
        rsdp: Gpa(acpi.rsdp),
        initrd,
    };
    let placed = pvh::write_start_info(&d, &boot).map_err(|e| format!("booting '{}': {e}", spec.image))?;
    log::info!(
        "d{id}: '{}' (image {}) {} vCPUs, {} MiB, loaded at {:#x}-{:#x}, PVH entry {:#x}{}",
        spec.name,
        spec.image,
        spec.vcpus,
        spec.mem_bytes >> 20,
        img.low,
        img.high,
        entry,
        if img.phys32_entry.is_none() { " (e_entry: no PVH note)" } else { "" }
    );
    if let Some((start, end)) = placed.initrd {
        log::info!("d{id}: initrd at {:#x}..{:#x} (PVH module 0)", start.0, end.0);
    }
    let mut slot = DomainSlot::new(d, Box::new(SvmDomain::new())).with_spec(spec).with_32bit_image(!img.elf64);
    let boot_vcpu = slot.vcpu_mut(0).ok_or("a domain needs a vCPU")?;
    boot_vcpu
        .initialise(&VcpuInitContext::PowerOn { entry, context_id: placed.start_info.0 })
        .map_err(|e| format!("starting vCPU 0: {e:?}"))?;
    Ok(slot)
}

/// Builds the domain's ACPI tables (`lantern_arch_x86::acpi`) and maps
/// them at the toolstack's ACPI address, on pages of their own above the
/// domain's RAM.
fn place_acpi_tables(d: &Domain, spec: &DomainSpec) -> Result<acpi::AcpiTables, String> {
    let tables = acpi::build(spec.vcpus);
    if spec.mem_bytes > acpi::ACPI_INFO_GPA {
        return Err(format!(
            "{} MiB of RAM would cover the ACPI tables at {:#x}",
            spec.mem_bytes >> 20,
            acpi::ACPI_INFO_GPA
        ));
    }
    for (i, gpa) in tables.pages().enumerate() {
        let page = Page::alloc(d.id).map_err(|e| format!("ACPI table page: {e:?}"))?;
        page.write(0, &tables.bytes[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]).map_err(|e| format!("ACPI tables: {e:?}"))?;
        d.p2m.lock().set(Gpa(gpa).gfn(), page, P2mType::RamRw);
    }
    Ok(tables)
}

/// Runs the configuration to completion and ends the run with its verdict.
pub fn run(cfg: &BootConfig, archive: &[u8]) -> ! {
    if let Err(e) = lantern_arch_x86::svm::init_host() {
        crate::println!("(lantern) FATAL: {e}");
        crate::exit_qemu(false);
    }
    for w in &cfg.unknown {
        log::warn!("ignoring unknown boot option '{w}'");
    }
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::tsc_clock(interrupts::TSC_HZ.load(Ordering::Relaxed)));
    let mut board = X86Board {
        exit_when_done: cfg.exit_when_done,
        gdb: crate::gdb_line::probe_line().map(GdbSessions::new),
        next_console_poll: 0,
        console: Arc::new(SerialConsole),
        archive,
        clock: clock.clone(),
    };
    let mut slots = Vec::new();
    for (i, spec) in cfg.domains.iter().enumerate() {
        match board.build_domain(i as u16 + 1, spec) {
            Ok(slot) => slots.push(slot),
            Err(e) => {
                crate::println!("(lantern) d{}: {e}", i + 1);
                crate::exit_qemu(false);
            }
        }
    }
    if slots.is_empty() {
        crate::println!("(lantern) no domains configured (use domain=IMAGE on the command line)");
        crate::exit_qemu(false);
    }
    let mut hv = Hypervisor::new(slots);
    crate::println!("(lantern) {}", hv.start_serial_input());
    if cfg.wait_for_gdb {
        match board.gdb.as_mut() {
            Some(gdb) => {
                gdb.wait_for_gdb(&hv);
                crate::println!("(lantern) gdb-wait: holding every vCPU until gdb attaches on {}", gdb.name());
            }
            None => log::warn!("gdb-wait: there is no gdb line (virtio-serial device or COM2); not waiting"),
        }
    }
    let t0 = clock.now_ns();
    let verdict = hv.run(&mut board);
    let ms = (clock.now_ns() - t0) / 1_000_000;
    let exits = hv.exits();
    crate::println!("(lantern) all domains finished in {ms} ms, {exits} exits ({} exits/s)", exits * 1000 / ms.max(1));
    for line in hv.diagnostic_lines() {
        log::debug!("unhandled: {line}");
    }
    board.exit(&verdict)
}
