//! Builds the domains named in the boot configuration (guest images from the
//! module archive QEMU loaded) and runs them with the core's round-robin
//! scheduler, preempting with the EL2 timer.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use lantern_arch_arm::fdt_gen::{self, GuestDtConfig};
use lantern_arch_arm::guest::GuestMap;
use lantern_arch_arm::layout::ARM64;
use lantern_arch_arm::vcpu::{self, ArmDomain, ArmVcpu};
use lantern_arch_arm::{gic, timer};
use lantern_common::arch::{ArchVcpu, Clock};
use lantern_common::boot_config::BootConfig;
use lantern_common::domain::{Domain, DomainConfig, VPF_BLOCKED};
use lantern_common::sched::{Board, Hypervisor};
use lantern_common::{console, cpio, loader};
use lantern_gdb::{GdbStub, Transport};

use super::clock::counter_clock;
use super::pci_uart::{PciUart, GDB_UART};
use super::Machine;

/// Time slice before the EL2 timer preempts a vCPU.
const SLICE_MS: u64 = 10;
/// `e_machine` of AArch64 ELF files.
const EM_AARCH64: u16 = 183;
/// arm64 Image header magic ("ARM\x64") at offset 56.
const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Room reserved at the top of guest RAM for the guest DTB.
const DTB_RESERVE: u64 = 2 << 20;
/// How often an idle host looks at the gdb serial line (it raises no
/// interrupt: the PCI INTx is not routed).
const GDB_POLL_MS: u64 = 2;

/// The gdb stub's byte pipe over the PCI 16550.
struct UartTransport<'a>(&'a mut PciUart);

impl Transport for UartTransport<'_> {
    fn read_byte(&mut self) -> Option<u8> {
        self.0.poll_read()
    }

    fn write_all(&mut self, data: &[u8]) {
        self.0.write(data);
    }
}

/// The board's side of the scheduler loop.
struct ArmBoard {
    exit_when_done: bool,
    said_done: bool,
    /// The gdb stub, when the gdb serial line exists.
    gdb: Option<GdbStub>,
    freq: u64,
    arm: Vec<(Arc<Domain>, Arc<ArmDomain>)>,
}

impl ArmBoard {
    /// Earliest virtual-timer deadline of a blocked vCPU.
    fn next_deadline(&self) -> Option<u64> {
        let mut best: Option<u64> = None;
        for (d, a) in &self.arm {
            for v in d.vcpus() {
                if v.pause_flags() & VPF_BLOCKED != 0 {
                    if let Some(t) = a.timer_deadline(v.id) {
                        best = Some(best.map_or(t, |b| b.min(t)));
                    }
                }
            }
        }
        best
    }
}

impl Board for ArmBoard {
    fn poll(&mut self, hv: &mut Hypervisor) {
        // Each slice starts afresh.
        vcpu::end_slice();
        if let Some(stub) = self.gdb.as_mut() {
            if let Some(uart) = GDB_UART.lock().as_mut() {
                stub.poll(hv, &mut UartTransport(uart));
            }
        }
        // Wake blocked vCPUs whose virtual timer has fired; the backend
        // injects the timer interrupt when they run.
        let now = timer::now();
        for (d, a) in &self.arm {
            for v in d.vcpus() {
                if v.pause_flags() & VPF_BLOCKED != 0 && a.timer_deadline(v.id).is_some_and(|t| t <= now) {
                    d.vcpu_unblock(v);
                }
            }
        }
    }

    fn idle(&mut self, hv: &Hypervisor) {
        if hv.all_finished() {
            if self.exit_when_done {
                return;
            }
            if !self.said_done {
                self.said_done = true;
                log::info!("every domain has finished; staying up for gdb (boot with `exit` to power off)");
            }
        }
        // The last vCPU's virtual timer may still be armed in the CPU; its
        // level-triggered PPI would keep waking us. Blocked vCPUs' timers
        // are tracked as deadlines instead (the backend unmasks PPI 27 again
        // on the next entry).
        gic::set_ppi_enabled(gic::PPI_VTIMER, false);
        // With a gdb line, wake up regularly to look at it.
        let gdb_deadline = self.gdb.as_ref().map(|_| timer::now() + self.freq * GDB_POLL_MS / 1000);
        let deadline = match (self.next_deadline(), gdb_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match deadline {
            Some(t) => timer::arm_hyp_timer_at(t),
            None => timer::disarm_hyp_timer(),
        }
        // Interrupts stay masked at EL2: WFI still wakes on a pending one,
        // which is then taken off the GIC here.
        aarch64_cpu::asm::wfi();
        let intid = gic::ack();
        if intid != gic::SPURIOUS {
            if intid == gic::PPI_HYP_TIMER {
                timer::disarm_hyp_timer();
            }
            gic::eoi(intid);
        }
    }

    fn exit_when_done(&self) -> bool {
        self.exit_when_done
    }
}

fn console_sink(dom: u16, line: &str) {
    crate::println!("(d{}) {}", dom, line);
}

/// Loads `image` (ELF or arm64 Image) into `d`; returns the entry IPA and the
/// end of the loaded range.
fn load_image(d: &Domain, image: &[u8], ram: u64) -> Result<(u64, u64), String> {
    if image.starts_with(b"\x7fELF") {
        // xmas-elf reads headers in place and insists on their natural
        // alignment; a cpio member is only 4-byte aligned, so copy it to an
        // 8-byte aligned buffer first.
        let mut aligned = alloc::vec![0u64; image.len().div_ceil(8)];
        // SAFETY: the u64 buffer holds at least `image.len()` bytes.
        let bytes = unsafe { core::slice::from_raw_parts_mut(aligned.as_mut_ptr() as *mut u8, image.len()) };
        bytes.copy_from_slice(image);
        let li = loader::load_elf(d, bytes).map_err(|e| alloc::format!("{e:?}"))?;
        if li.machine != EM_AARCH64 || !li.elf64 {
            return Err(alloc::format!("not an AArch64 ELF64 (e_machine {})", li.machine));
        }
        return Ok((li.entry, li.high));
    }
    let rd32 = |o: usize| image.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let rd64 = |o: usize| image.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if rd32(56) == Some(IMAGE_MAGIC) {
        // Linux arm64 boot protocol: a 2 MiB-aligned base + text_offset.
        let text_offset = rd64(8).unwrap_or(0);
        let image_size = rd64(16).unwrap_or(0).max(image.len() as u64);
        let load = GuestMap::RAM_BASE + (2 << 20) + text_offset;
        if load.saturating_add(image_size).saturating_add(DTB_RESERVE) > GuestMap::RAM_BASE + ram {
            return Err(String::from("Image does not fit in guest RAM"));
        }
        d.write_gpa(load, image).map_err(|e| alloc::format!("write: {e:?}"))?;
        return Ok((load, load + image_size));
    }
    Err(String::from("neither an ELF file nor an arm64 Image"))
}

/// Creates the domains of `cfg`, runs them to completion and returns the
/// exit status (0 when every domain powered off cleanly).
pub fn run(m: &Machine, cfg: &BootConfig) -> i32 {
    let archive: &[u8] = match m.dt.modules {
        // SAFETY: QEMU's loader put the archive there and the heap stops
        // below it, so nothing else uses that memory.
        Some((addr, size)) => unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) },
        None => &[],
    };
    let clock: Arc<dyn Clock> = Arc::new(counter_clock(m.boot_ticks, m.freq));
    console::set_sink(console_sink);
    vcpu::set_slice_ticks(m.freq * SLICE_MS / 1000);

    let mut domains = Vec::new();
    let mut arch: Vec<Vec<Box<dyn ArchVcpu>>> = Vec::new();
    let mut arm = Vec::new();
    let mut failures = 0;
    for (i, spec) in cfg.domains.iter().enumerate() {
        let id = (i + 1) as u16;
        let Some(image) = cpio::find(archive, &spec.image) else {
            log::error!("d{}: no image '{}' in the module archive", id, spec.image);
            failures += 1;
            continue;
        };
        let ram = spec.mem_bytes.min(GuestMap::RAM_MAX) & !0xfff;
        let d = match Domain::new(DomainConfig {
            id,
            name: spec.image.clone(),
            max_vcpus: spec.vcpus,
            ram_pages: ram >> 12,
            abi: &ARM64,
            clock: clock.clone(),
        }) {
            Ok(d) => d,
            Err(e) => {
                log::error!("d{}: cannot create domain: {:?}", id, e);
                failures += 1;
                continue;
            }
        };
        let (entry, high) = match load_image(&d, image, ram) {
            Ok(x) => x,
            Err(e) => {
                log::error!("d{}: cannot load '{}': {}", id, spec.image, e);
                failures += 1;
                continue;
            }
        };
        let dtb =
            match fdt_gen::build(&GuestDtConfig { vcpus: spec.vcpus, ram_size: ram, bootargs: spec.cmdline.clone() }) {
                Ok(b) => b,
                Err(e) => {
                    log::error!("d{}: guest DTB: {:?}", id, e);
                    failures += 1;
                    continue;
                }
            };
        let dtb_ipa = GuestMap::RAM_BASE + ram - DTB_RESERVE;
        if high > dtb_ipa || dtb.len() as u64 > DTB_RESERVE || d.write_gpa(dtb_ipa, &dtb).is_err() {
            log::error!("d{}: no room for the guest DTB below {:#x}", id, ram);
            failures += 1;
            continue;
        }
        log::info!(
            "d{}: '{}' {} vCPU(s), {} MiB, entry {:#x}, dtb {:#x} ({} bytes)",
            id,
            spec.image,
            spec.vcpus,
            ram >> 20,
            entry,
            dtb_ipa,
            dtb.len()
        );
        let a = ArmDomain::new(id, spec.vcpus);
        let vcpus: Vec<Box<dyn ArchVcpu>> = (0..spec.vcpus)
            .map(|v| Box::new(ArmVcpu::new(a.clone(), id, v, entry, dtb_ipa, m.gic.nr_lrs())) as Box<dyn ArchVcpu>)
            .collect();
        arm.push((d.clone(), a));
        domains.push(d);
        arch.push(vcpus);
    }
    if domains.is_empty() {
        log::error!("no domain could be started");
        return 1;
    }
    let mut hv = Hypervisor::new(domains, arch);
    let gdb = GDB_UART.lock().is_some().then(GdbStub::new);
    let mut board = ArmBoard { exit_when_done: cfg.exit_when_done, said_done: false, gdb, freq: m.freq, arm };
    if cfg.wait_for_gdb {
        match board.gdb.as_mut() {
            Some(stub) => {
                log::info!("gdb-wait: holding every vCPU until gdb attaches on the gdb serial line");
                stub.wait_for_gdb(&hv);
            }
            None => log::warn!("gdb-wait: there is no gdb serial line (-device pci-serial); not waiting"),
        }
    }
    let verdict = hv.run(&mut board);
    vcpu::end_slice();
    // The machine powers off next: tearing every domain down first would
    // only cost time.
    core::mem::forget(hv);
    for line in verdict.summary_lines() {
        // A domain that could not even be built also fails the run.
        let line = if failures > 0 && line == "verdict PASS" { String::from("verdict FAIL") } else { line };
        crate::println!("(lantern) {}", line);
    }
    if verdict.clean() && failures == 0 {
        0
    } else {
        1
    }
}
