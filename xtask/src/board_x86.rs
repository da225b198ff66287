//! The x86_64 board's particulars for xtask (the rest is in `board.rs`):
//! the hypervisor package, the demo guests (the x86 test guest built 64-bit
//! and 32-bit), QEMU q35 with AMD SVM (`-cpu max`, software emulation) and
//! isa-debug-exit, which turns the hypervisor's verdict into QEMU's exit
//! status. The boot module goes in as `-initrd` (the PVH start info's first
//! module).

use std::path::PathBuf;

use crate::board::build_guest;

/// QEMU's exit status when the hypervisor reports that every domain ended
/// cleanly (isa-debug-exit value 0x10 → (0x10 << 1) | 1).
pub const QEMU_EXIT_CLEAN: i32 = 33;
/// QEMU's exit status for the hypervisor's "failed" verdict (value 0x11).
pub const QEMU_EXIT_FAILED: i32 = 35;
/// vCPUs of each demo domain: more than 32, so vCPUs start on the dummy area.
pub const DEMO_VCPUS: u32 = 34;
/// `(package, target)` of the hypervisor image (booted through its PVH note).
pub const KERNEL: (&str, &str) = ("lantern-platform-x86_64", "x86_64-unknown-none");
/// The machine: q35, one CPU with SVM, and the exit device on port 0xf4.
pub const MACHINE_ARGS: &[&str] =
    &["-M", "q35", "-cpu", "max", "-m", "1G", "-smp", "1", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"];

/// The demo guests: the x86 test guest built 64-bit (d1) and 32-bit (d2,
/// compat layout).
pub fn build_demo_guests() -> Result<Vec<(String, PathBuf)>, String> {
    let g64 = build_guest("x86_64", "x86_64-unknown-none")?;
    let g32 = build_guest("x86_64", "i686-unknown-linux-gnu")?;
    Ok(vec![("guest64".to_string(), g64), ("guest32".to_string(), g32)])
}
