//! The arm64 board's particulars for xtask (the rest is in `board.rs`):
//! the hypervisor package, the demo guest, QEMU `virt` at EL2
//! (`virtualization=on`, GICv3, `-cpu max`) and how the module archive gets
//! there: QEMU's generic loader puts it at [`MODULES_ADDR`] and the
//! command-line word `lantern.modules=ADDR,SIZE` tells the hypervisor;
//! `lantern.semihosting` makes its power-off set QEMU's exit status (0 when
//! every domain ended cleanly).

use std::path::{Path, PathBuf};

use crate::board::build_guest;

/// QEMU's exit status when every domain ended cleanly (semihosting exit 0).
pub const QEMU_EXIT_CLEAN: i32 = 0;
/// QEMU's exit status for the hypervisor's "failed" verdict.
pub const QEMU_EXIT_FAILED: i32 = 1;
/// Host-physical address where QEMU puts the module archive (RAM is
/// 0x4000_0000..0x6000_0000 with `-m 512M`; the hypervisor's heap stops
/// below the archive).
pub const MODULES_ADDR: u64 = 0x5800_0000;
/// Largest archive that fits between [`MODULES_ADDR`] and the end of RAM.
pub const MODULES_MAX: u64 = 0x0800_0000;
/// Rust target of everything that runs inside QEMU.
pub const TARGET: &str = "aarch64-unknown-none";
/// vCPUs of the demo domain: the scenario needs at least 3, and on arm64
/// every vCPU but 0 starts on the dummy vcpu_info area.
pub const DEMO_VCPUS: u32 = 4;
/// `(package, target)` of the hypervisor image.
pub const KERNEL: (&str, &str) = ("lantern-platform-aarch64", TARGET);
/// The machine: virt with EL2 and GICv3, one CPU; semihosting for the exit
/// status.
pub const MACHINE_ARGS: &[&str] = &[
    "-M",
    "virt,virtualization=on,gic-version=3",
    "-cpu",
    "max",
    "-m",
    "512M",
    "-smp",
    "1",
    "-semihosting-config",
    "enable=on,target=native",
];

/// The demo guest: the arm64 test guest (one domain).
pub fn build_demo_guests() -> Result<Vec<(String, PathBuf)>, String> {
    Ok(vec![("guest".to_string(), build_guest("aarch64", TARGET)?)])
}

/// The board's command-line words for an archive of `len` bytes.
pub fn module_words(len: u64) -> Result<Vec<String>, String> {
    if len > MODULES_MAX {
        return Err(format!("guest images too large: {len} bytes (at most {MODULES_MAX})"));
    }
    Ok(vec![format!("lantern.modules={MODULES_ADDR:#x},{len:#x}"), "lantern.semihosting".to_string()])
}

/// The `-device` argument that loads the archive at [`MODULES_ADDR`].
pub fn loader_device(module: &Path) -> String {
    format!("loader,file={},addr={MODULES_ADDR:#x},force-raw=on", module.display())
}
