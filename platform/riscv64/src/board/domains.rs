//! Builds the domains named in the boot configuration (guest images from the
//! module archive QEMU loaded) and runs them with the core's round-robin
//! scheduler, through the board side of the loop shared with arm64's virt
//! (`lantern_board`). [`RiscvHardware`] is what this board brings to it:
//! the supervisor timer ends each slice, a virtio-serial port (or the PCI
//! 16550) carries gdb, the 16550 console prints the domains' consoles and
//! takes serial input (Ctrl-A x3 switches it between the domains' PV
//! consoles and the debug keys), the `sifive_test` finisher ends the run.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

use lantern_arch_riscv::boot;
use lantern_arch_riscv::guest::GuestMap;
use lantern_arch_riscv::hw::hs::{self, HsHart};
use lantern_arch_riscv::layout::RISCV64;
use lantern_arch_riscv::vcpu::RiscvDomain;
use lantern_board::{BootImage, Hardware, LoadedImage};
use lantern_common::arch::ArchDomain;
use lantern_common::boot_config::BootConfig;
use lantern_common::clock::Clock;
use lantern_common::domain::Domain;
use lantern_common::memory::DomId;
use xen_abi::layout::GuestAbi;

use super::clock::counter_clock;
use super::gdb_line::GdbLine;
use super::Machine;

/// This board's hardware and arch, as the shared loop uses them. Neither
/// the gdb line nor the console raises an interrupt here (Lantern does not
/// drive the PLIC): the loop polls them.
struct RiscvHardware;

impl Hardware for RiscvHardware {
    const RAM_MAX: u64 = GuestMap::RAM_MAX;
    const CONSOLE_RING: u64 = GuestMap::CONSOLE_RING;

    fn now(&self) -> u64 {
        hs::now()
    }

    fn arm_timer(&self, at: u64) {
        hs::set_timer(at);
    }

    fn disarm_timer(&self) {
        hs::set_timer(u64::MAX);
    }

    fn wait_for_interrupt(&self) {
        // Interrupts stay masked in HS (sstatus.SIE 0): wfi still wakes on
        // the pending timer, which the next set_timer clears.
        hs::wait_for_interrupt();
        hs::set_timer(u64::MAX);
    }

    fn read_console(&self) -> Option<u8> {
        super::console::try_read()
    }

    fn print(args: core::fmt::Arguments<'_>) {
        crate::print!("{}", args);
    }

    fn power_off(&self, status: u32) -> ! {
        super::power::off(status)
    }

    fn abi(&self) -> &'static dyn GuestAbi {
        &RISCV64
    }

    /// The image and DTB loaded; vCPU 0 enters with `a0` = 0 (its hart id)
    /// and `a1` = the DTB.
    fn load(&self, d: &Domain, i: &BootImage<'_>) -> Result<LoadedImage, String> {
        let b = boot::load(d, i.image, i.initrd, i.ram, i.vcpus, i.cmdline)?;
        Ok(LoadedImage { entry: b.entry, dtb: b.dtb.0, dtb_len: b.dtb_len, initrd: b.initrd })
    }

    fn arch_domain(&self, id: DomId, vcpus: u32) -> Box<dyn ArchDomain> {
        Box::new(RiscvDomain::new(&HsHart, id, vcpus))
    }
}

/// Creates the domains of `cfg`, runs them to completion and powers off
/// with the verdict (status 0 when every domain powered off cleanly).
pub fn run(m: &Machine, cfg: &BootConfig, line: Option<GdbLine>) -> ! {
    // SAFETY: QEMU's loader put the archive there and the heap stops below
    // it, so nothing else uses that memory.
    let archive = unsafe { lantern_board::module_archive(m.dt.modules) };
    let clock: Arc<dyn Clock> = Arc::new(counter_clock(m.boot_ticks, m.freq));
    lantern_board::run(RiscvHardware, m.freq, cfg, archive, clock, line)
}
