//! The gdb stub's line on riscv64 virt: a virtio-serial device or the PCI
//! 16550 behind the generic ECAM bridge
//! (`lantern_virtio_serial::ecam_line`, shared with arm64's virt).

use lantern_virtio_serial::ecam_line::{self, EcamWindows};

use super::dt::BoardInfo;

/// The gdb stub's line: the virtio-serial device or the PCI 16550.
pub type GdbLine = ecam_line::EcamGdbLine;

/// The virtio-serial device if QEMU has one, else the PCI 16550, else
/// nothing.
pub fn probe_line(info: &BoardInfo) -> Option<GdbLine> {
    let w = EcamWindows { ecam: info.ecam?, io: info.pci_io, mem32: info.pci_mem32 };
    // SAFETY: the windows come from QEMU's DTB, translation is off in HS,
    // and only the boot path probes them.
    unsafe { ecam_line::probe_line(w) }
}
