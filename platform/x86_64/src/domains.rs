//! Builds the domains named by the boot configuration from the guest images
//! in the boot module (a cpio archive), and runs them with the core's
//! round-robin scheduler until they finish.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use lantern_arch_x86::vcpu::{SvmDomain, SvmVcpu};
use lantern_common::arch::{ArchVcpu, Clock};
use lantern_common::domain::{Domain, DomainConfig};
use lantern_common::sched::{Board, Hypervisor};
use lantern_gdb::{GdbStub, Transport};

use crate::interrupts;
use lantern_common::{boot_config::BootConfig, cpio, loader};

/// `XEN_HVM_START_MAGIC_VALUE`.
const HVM_START_MAGIC: u32 = 0x336e_c578;

fn console_sink(dom: u16, line: &str) {
    crate::println!("(d{dom}) {line}");
}

/// Takes pending host interrupts after an INTR exit; true if the timer ticked.
fn interrupt_hook() -> bool {
    let before = interrupts::TIMER_TICKS.load(Ordering::Relaxed);
    interrupts::take_pending();
    interrupts::TIMER_TICKS.load(Ordering::Relaxed) != before
}

/// COM2 (I/O port 0x2F8): the gdb stub's serial line.
struct Com2(uart_16550::SerialPort);

impl Transport for Com2 {
    fn read_byte(&mut self) -> Option<u8> {
        self.0.try_receive().ok()
    }

    fn write_all(&mut self, data: &[u8]) {
        // send_raw: `send` would rewrite 0x08/0x7F, corrupting packets.
        for &b in data {
            self.0.send_raw(b);
        }
    }
}

struct X86Board {
    exit_when_done: bool,
    gdb: GdbStub,
    com2: Com2,
}

impl Board for X86Board {
    fn poll(&mut self, hv: &mut Hypervisor) {
        self.gdb.poll(hv, &mut self.com2);
    }

    fn idle(&mut self, _hv: &Hypervisor) {
        if self.gdb.holding() {
            // gdb holds the system: look at the line again right away (COM2
            // raises no interrupt here), instead of sleeping a whole tick.
            core::hint::spin_loop();
            return;
        }
        interrupts::wait_for_interrupt();
    }

    fn exit_when_done(&self) -> bool {
        self.exit_when_done
    }
}

/// Writes the guest's `hvm_start_info` (+ command line and a one-entry memory
/// map) at `gpa`; returns its address.
fn write_start_info(d: &Domain, gpa: u64, mem_bytes: u64, cmdline: &str) -> Result<u64, String> {
    let cmdline_gpa = gpa + 64;
    let memmap_gpa = cmdline_gpa + ((cmdline.len() as u64 + 1 + 15) & !15);
    let mut si = [0u8; 56];
    si[0..4].copy_from_slice(&HVM_START_MAGIC.to_le_bytes());
    si[4..8].copy_from_slice(&1u32.to_le_bytes()); // version 1: has a memory map
    si[24..32].copy_from_slice(&cmdline_gpa.to_le_bytes());
    si[40..48].copy_from_slice(&memmap_gpa.to_le_bytes());
    si[48..52].copy_from_slice(&1u32.to_le_bytes());
    let mut mm = [0u8; 24];
    mm[8..16].copy_from_slice(&mem_bytes.to_le_bytes());
    mm[16..20].copy_from_slice(&1u32.to_le_bytes()); // E820 RAM
    let mut cl: Vec<u8> = cmdline.as_bytes().to_vec();
    cl.push(0);
    d.write_gpa(gpa, &si)
        .and_then(|_| d.write_gpa(cmdline_gpa, &cl))
        .and_then(|_| d.write_gpa(memmap_gpa, &mm))
        .map_err(|e| format!("start info does not fit in guest memory ({e:?})"))?;
    Ok(gpa)
}

/// A domain with the arch contexts of its vCPUs.
type BuiltDomain = (Arc<Domain>, Vec<Box<dyn ArchVcpu>>);

/// Builds one domain and its vCPUs.
fn build_domain(
    id: u16,
    spec: &lantern_common::boot_config::DomainSpec,
    archive: &[u8],
    clock: Arc<dyn Clock>,
) -> Result<BuiltDomain, String> {
    let image = cpio::find(archive, &spec.image)
        .ok_or_else(|| format!("guest image '{}' not in the boot module", spec.image))?;
    let d = Domain::new(DomainConfig {
        id,
        name: spec.image.clone(),
        max_vcpus: spec.vcpus,
        ram_pages: spec.mem_bytes / 4096,
        abi: &lantern_arch_x86::layout::X86_64,
        clock,
    })
    .map_err(|e| format!("creating domain: {e:?}"))?;
    let img = loader::load_elf(&d, image).map_err(|e| format!("loading '{}': {e:?}", spec.image))?;
    let entry = img.pvh_entry.unwrap_or(img.entry);
    let si_gpa = write_start_info(&d, (img.high + 0xFFF) & !0xFFF, spec.mem_bytes, &spec.cmdline)?;
    log::info!(
        "d{id}: '{}' {} vCPUs, {} MiB, image {:#x}-{:#x}, PVH entry {:#x}{}",
        spec.image,
        spec.vcpus,
        spec.mem_bytes >> 20,
        img.low,
        img.high,
        entry,
        if img.pvh_entry.is_none() { " (e_entry: no PVH note)" } else { "" }
    );
    let svm = SvmDomain::new();
    let vcpus = (0..spec.vcpus)
        .map(|v| {
            let (rip, si) = if v == 0 { (entry, si_gpa) } else { (0, 0) };
            Box::new(SvmVcpu::new_pvh(svm.clone(), id, v, rip, si)) as Box<dyn ArchVcpu>
        })
        .collect();
    Ok((d, vcpus))
}

/// Runs the configuration to completion and returns whether every domain
/// ended cleanly.
pub fn run(cfg: &BootConfig, archive: &[u8]) -> bool {
    if let Err(e) = lantern_arch_x86::svm::init_host() {
        crate::println!("(lantern) FATAL: {e}");
        return false;
    }
    lantern_arch_x86::vcpu::set_interrupt_hook(interrupt_hook);
    lantern_common::console::set_sink(console_sink);
    for w in &cfg.unknown {
        log::warn!("ignoring unknown boot option '{w}'");
    }
    let clock: Arc<dyn Clock> = Arc::new(crate::clock::tsc_clock(interrupts::TSC_HZ.load(Ordering::Relaxed)));
    let mut domains = Vec::new();
    let mut arch = Vec::new();
    for (i, spec) in cfg.domains.iter().enumerate() {
        match build_domain(i as u16 + 1, spec, archive, clock.clone()) {
            Ok((d, a)) => {
                domains.push(d);
                arch.push(a);
            }
            Err(e) => {
                crate::println!("(lantern) d{}: {e}", i + 1);
                return false;
            }
        }
    }
    if domains.is_empty() {
        crate::println!("(lantern) no domains configured (use domain=IMAGE on the command line)");
        return false;
    }
    let mut hv = Hypervisor::new(domains, arch);
    // SAFETY: 0x2F8 is COM2 on q35; only the gdb stub touches those ports.
    let mut com2 = unsafe { uart_16550::SerialPort::new(0x2F8) };
    com2.init();
    let mut board = X86Board { exit_when_done: cfg.exit_when_done, gdb: GdbStub::new(), com2: Com2(com2) };
    if cfg.wait_for_gdb {
        board.gdb.wait_for_gdb(&hv);
        crate::println!("(lantern) gdb-wait: holding every vCPU until gdb attaches on COM2");
    }
    let t0 = clock.now_ns();
    let verdict = hv.run(&mut board);
    let ms = (clock.now_ns() - t0) / 1_000_000;
    let exits = lantern_arch_x86::vcpu::EXIT_COUNT.load(Ordering::Relaxed);
    crate::println!("(lantern) all domains finished in {ms} ms, {exits} exits ({} exits/s)", exits * 1000 / ms.max(1));
    for line in verdict.summary_lines() {
        crate::println!("(lantern) {line}");
    }
    verdict.clean()
}
