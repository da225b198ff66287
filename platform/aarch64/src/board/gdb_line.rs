//! The gdb stub's lines on virt: the ports of a virtio-serial device
//! (`-device virtio-serial-pci` with `virtserialport`s named
//! `org.lantern.gdb.0` for the whole system and `org.lantern.gdb.dN` for
//! domain N's own session) when QEMU has one, else the PCI 16550 (`-device
//! pci-serial`; the whole system only), both behind the PCIe host bridge
//! (`lantern_virtio_serial::ecam_line`, shared with riscv64's virt). The
//! virtio device's BARs go into the bridge's 32-bit memory window (mapped
//! Device by the boot identity map, unlike the 64-bit window above 512 GiB).

use lantern_virtio_serial::ecam_line::{self, EcamWindows};

use super::dt::BoardInfo;

/// The gdb stub's line, once probed (the board's loop takes it from here
/// into its gdb sessions).
pub static GDB_LINE: spin::Mutex<Option<GdbLine>> = spin::Mutex::new(None);

/// The gdb stub's line: the virtio-serial device or the PCI 16550.
pub type GdbLine = ecam_line::EcamGdbLine;

/// The virtio-serial device if QEMU has one, else the PCI 16550, else
/// nothing; says which.
pub fn probe_line(info: &BoardInfo) -> Option<GdbLine> {
    let w = EcamWindows { ecam: info.ecam?, io: info.pci_io, mem32: info.pci_mem32 };
    // SAFETY: the windows come from the DTB, are mapped Device, and only
    // the boot path (before the scheduler loop) probes them.
    unsafe { ecam_line::probe_line(w) }
}
