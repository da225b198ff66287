//! Builds the domains named in the boot configuration (guest images from the
//! module archive QEMU loaded) and runs them with the core's round-robin
//! scheduler, through the board side of the loop shared with riscv64's virt
//! (`lantern_board`). [`ArmHardware`] is what this board brings to it: the
//! EL2 timer ends each slice, a virtio-serial port (or the PCI 16550) carries
//! gdb, the PL011 prints the domains' consoles and takes serial input (Ctrl-A
//! x3 switches it between the domains' PV consoles and the debug keys),
//! semihosting (or PSCI) ends the run.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

use lantern_arch_arm::boot;
use lantern_arch_arm::guest::GuestMap;
use lantern_arch_arm::hw::{gic, intid, timer, El2};
use lantern_arch_arm::layout::ARM64;
use lantern_arch_arm::vcpu::ArmDomain;
use lantern_board::{BootImage, Hardware, LoadedImage};
use lantern_common::arch::ArchDomain;
use lantern_common::boot_config::BootConfig;
use lantern_common::clock::Clock;
use lantern_common::domain::Domain;
use lantern_common::memory::DomId;
use xen_abi::layout::GuestAbi;

use super::clock::counter_clock;
use super::gdb_line::GDB_LINE;
use super::Machine;

/// This board's hardware and arch, as the shared loop uses them. Neither
/// the gdb line nor the console raises an interrupt here (the PCI INTx is
/// not routed, the PL011's receive interrupt is masked): the loop polls
/// them.
struct ArmHardware<'m> {
    machine: &'m Machine,
}

impl Hardware for ArmHardware<'_> {
    const RAM_MAX: u64 = GuestMap::RAM_MAX;
    const CONSOLE_RING: u64 = GuestMap::CONSOLE_RING;

    fn now(&self) -> u64 {
        timer::now()
    }

    fn arm_timer(&self, at: u64) {
        timer::arm_hyp_timer_at(at);
    }

    fn disarm_timer(&self) {
        timer::disarm_hyp_timer();
    }

    fn wait_for_interrupt(&self) {
        // The last vCPU's virtual timer may still be armed in the CPU; its
        // level-triggered PPI would keep waking us. Blocked vCPUs' timers
        // are tracked as deadlines instead (the backend unmasks PPI 27 again
        // on the next entry).
        gic::set_ppi_enabled(intid::PPI_VTIMER, false);
        // Interrupts stay masked at EL2: WFI still wakes on a pending one,
        // which is then taken off the GIC here.
        aarch64_cpu::asm::wfi();
        let irq = gic::ack();
        if irq != intid::SPURIOUS {
            if irq == intid::PPI_HYP_TIMER {
                timer::disarm_hyp_timer();
            }
            gic::eoi(irq);
        }
    }

    fn read_console(&self) -> Option<u8> {
        super::console::try_read()
    }

    fn print(args: core::fmt::Arguments<'_>) {
        crate::print!("{}", args);
    }

    fn power_off(&self, status: u32) -> ! {
        super::power::off(status as i32, self.machine)
    }

    fn abi(&self) -> &'static dyn GuestAbi {
        &ARM64
    }

    /// The image and DTB loaded; vCPU 0 enters with `x0` = the DTB.
    fn load(&self, d: &Domain, i: &BootImage<'_>) -> Result<LoadedImage, String> {
        let b = boot::load(d, i.image, i.initrd, i.ram, i.vcpus, i.cmdline)?;
        Ok(LoadedImage { entry: b.entry, dtb: b.dtb.0, dtb_len: b.dtb_len, initrd: b.initrd })
    }

    fn arch_domain(&self, id: DomId, vcpus: u32) -> Box<dyn ArchDomain> {
        Box::new(ArmDomain::new(&El2, id, vcpus, self.machine.gic.nr_lrs()))
    }
}

/// Creates the domains of `cfg`, runs them to completion and powers off
/// with the verdict (status 0 when every domain powered off cleanly).
pub fn run(m: &Machine, cfg: &BootConfig) -> ! {
    // SAFETY: QEMU's loader put the archive there and the heap stops below
    // it, so nothing else uses that memory.
    let archive = unsafe { lantern_board::module_archive(m.dt.modules) };
    let clock: Arc<dyn Clock> = Arc::new(counter_clock(m.boot_ticks, m.freq));
    let line = GDB_LINE.lock().take();
    lantern_board::run(ArmHardware { machine: m }, m.freq, cfg, archive, clock, line)
}
