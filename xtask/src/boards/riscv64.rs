//! The riscv64 board: QEMU `virt` with the H extension (`-cpu rv64,h=true`)
//! under OpenSBI (`-bios default`), which enters the hypervisor in HS-mode.
//! QEMU's generic loader puts the boot module just below the 2 MiB where
//! QEMU puts its own DTB, and the command-line word
//! `lantern.modules=ADDR,SIZE` tells the hypervisor; the `sifive_test`
//! finisher turns its verdict into QEMU's exit status. The demo guests are
//! the riscv64 test guest twice: two domains, so the scenario's grant-table
//! checks have a peer.

use std::ffi::OsString;
use std::path::Path;

use lantern_arch_riscv::layout::RISCV64;
use xen_abi::layout::GuestAbi;

use super::{
    BenchParams, BoardSpec, DemoGuest, EntryState, ExitStatuses, FaultDiagnostic, FeatureRegisters, GuestSymbols, Kernel,
    LineCheck, ProbeValue,
};

/// The riscv64 board.
pub struct Riscv64;

/// Rust target of everything that runs inside QEMU.
const TARGET: &str = "riscv64gc-unknown-none-elf";

/// Where virt's RAM starts.
const RAM_BASE: u64 = 0x8000_0000;
/// QEMU puts its DTB in the 2 MiB below the lower of the end of RAM and
/// 3 GiB; the module archive goes below that, 2 MiB aligned.
const DTB_CEILING: u64 = 0xc000_0000;
const MODULES_ALIGN: u64 = 2 << 20;
/// The most RAM: the hypervisor's heap stops below the module archive,
/// which sits below 3 GiB, so RAM above that would go unused.
const MAX_RAM: u64 = 1 << 30;

static GUEST_ABIS: [&dyn GuestAbi; 1] = [&RISCV64];

/// d1 and d2: the same riscv64 test guest (one build), under two names.
const DEMO_GUESTS: &[DemoGuest] = &[
    DemoGuest { image: "guest", crate_dir: "riscv64", package: "lantern-guest-riscv64", target: TARGET, layout: "riscv64" },
    DemoGuest { image: "guest2", crate_dir: "riscv64", package: "lantern-guest-riscv64", target: TARGET, layout: "riscv64" },
];

/// The machine: virt, one hart with the H extension, OpenSBI.
const MACHINE_ARGS: &[&str] = &["-M", "virt", "-cpu", "rv64,h=true", "-smp", "1", "-bios", "default"];

/// At the entry: pc at the image base, a0 = hart 0, a1 = the guest DTB
/// (2 MiB below the top of a 32 MiB domain), and the guest's first
/// instruction (`csrw sie, zero`).
const ENTRY_CHECKS: &[LineCheck] = &[
    LineCheck { name: "monitor domains names d1 with the riscv64 layout", lines: &[&["d1 ", "riscv64"]] },
    LineCheck { name: "vCPU 0 at the image base (pc 0x200000)", lines: &[&["pc ", "0x200000"]] },
    LineCheck { name: "a0 holds the hart id 0", lines: &[&["a0 ", "0x0\t"]] },
    LineCheck { name: "a1 holds the guest DTB address", lines: &[&["a1 ", "0x1e00000"]] },
    LineCheck { name: "disassembly through guest memory (the entry's csrw)", lines: &[&["csrw", "sie"]] },
];

/// Where the module archive of `module_len` bytes goes in `ram_bytes` of
/// RAM: below QEMU's DTB, on a 2 MiB boundary.
fn modules_addr(module_len: u64, ram_bytes: u64) -> Result<u64, String> {
    let room = module_len.next_multiple_of(MODULES_ALIGN);
    let top = (RAM_BASE + ram_bytes).min(DTB_CEILING) - MODULES_ALIGN;
    if room + (64 << 20) > top - RAM_BASE {
        return Err(format!("guest images too large: {module_len} bytes in {} MiB of RAM", ram_bytes >> 20));
    }
    Ok(top - room)
}

impl BoardSpec for Riscv64 {
    fn name(&self) -> &'static str {
        "riscv64"
    }

    fn kernel(&self) -> Kernel {
        Kernel { package: "lantern-platform-riscv64", target: TARGET }
    }

    fn arch_crate(&self) -> &'static str {
        "lantern-arch-riscv"
    }

    fn guest_abis(&self) -> &'static [&'static dyn GuestAbi] {
        &GUEST_ABIS
    }

    fn scratch_dir(&self) -> &'static str {
        "lantern-riscv64"
    }

    fn qemu_binary(&self) -> &'static str {
        "qemu-system-riscv64"
    }

    fn qemu_package(&self) -> &'static str {
        "qemu-system-misc"
    }

    fn machine_args(&self) -> &'static [&'static str] {
        MACHINE_ARGS
    }

    /// virt's one 16550 is the console: a PCI 16550 carries gdb.
    fn gdb_serial_args(&self, chardev: &str) -> Vec<String> {
        vec!["-device".into(), format!("pci-serial,chardev={chardev}")]
    }

    fn boot_words(&self, module_len: u64, ram_bytes: u64) -> Result<Vec<String>, String> {
        let addr = modules_addr(module_len, ram_bytes)?;
        Ok(vec![format!("lantern.modules={addr:#x},{module_len:#x}")])
    }

    fn max_ram(&self) -> u64 {
        MAX_RAM
    }

    fn max_domain_mem(&self) -> u64 {
        // Bounded by what the host can give one domain, well inside the
        // guest map's RAM window (GuestMap::RAM_MAX).
        (MAX_RAM / 2).min(lantern_arch_riscv::guest::GuestMap::RAM_MAX)
    }

    /// The generic loader, raw below QEMU's DTB (see [`modules_addr`]).
    fn module_args(&self, module: &Path, module_len: u64, ram_bytes: u64) -> Vec<OsString> {
        let addr = modules_addr(module_len, ram_bytes).unwrap_or(RAM_BASE);
        vec!["-device".into(), format!("loader,file={},addr={addr:#x},force-raw=on", module.display()).into()]
    }

    /// The finisher's statuses.
    fn exit_statuses(&self) -> ExitStatuses {
        ExitStatuses { clean: 0, failed: 1 }
    }

    fn demo_guests(&self) -> &'static [DemoGuest] {
        DEMO_GUESTS
    }

    /// As on arm64: the scenario needs at least 3, and every vCPU but 0
    /// starts on the dummy vcpu_info area.
    fn demo_vcpus(&self) -> u32 {
        4
    }

    fn gdb_arch(&self) -> &'static str {
        "riscv:rv64"
    }

    /// No OS ABI: the guest is bare metal.
    fn gdb_osabi(&self) -> Option<&'static str> {
        Some("none")
    }

    fn default_gdb_port(&self) -> u16 {
        1236
    }

    /// The guest's supervisor CSRs from the csr feature.
    fn gdb_feature_registers(&self) -> Option<FeatureRegisters> {
        Some(FeatureRegisters {
            name: "d1: gdb takes the csr feature ($sstatus, $stvec, $satp print)",
            registers: &["sstatus", "stvec", "satp"],
            equal: false,
        })
    }

    /// No hardware points: QEMU 7.2's riscv triggers (Sdtrig) are M-mode's
    /// to hand out and trap to M-mode, not to the hypervisor, so the stub
    /// refuses `Z1`..`Z4` (arch-riscv's set_debug).
    fn hw_points(&self) -> bool {
        false
    }

    /// Debian's gdb 13.1 refuses `catch syscall` on riscv ("not supported
    /// on this architecture yet").
    fn gdb_catches_syscalls(&self) -> bool {
        false
    }

    /// The guest runs where it is linked (GUEST_IMAGE_BASE) and keeps its
    /// boot facts (vCPU count) in a static.
    fn guest_symbols(&self) -> GuestSymbols {
        GuestSymbols {
            load_base_key: None,
            probe: "lantern_guest_riscv64::guest::BOOT.vcpus",
            expected: ProbeValue::DomainVcpus,
        }
    }

    fn entry_state(&self) -> EntryState {
        EntryState { registers: "info registers pc a0 a1", checks: ENTRY_CHECKS }
    }

    /// The cause, the guest PC, the trap values and the guest-physical
    /// address.
    fn fault_diagnostic(&self) -> FaultDiagnostic {
        FaultDiagnostic { fields: &["scause ", "sepc ", "stval ", "htval ", "gpa "], address_field: "gpa " }
    }

    /// virt's RAM starts at 2 GiB, the hypervisor 2 MiB above it, so QEMU's
    /// stub reads 1 MiB from 2 GiB + 16 MiB. No selftest, no bare Linux.
    fn bench(&self) -> BenchParams {
        BenchParams { gdb_vcpus: 16, host_ram: (0x8100_0000, 0x8110_0000), selftest: false, bare_linux: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_archive_sits_below_qemus_dtb() {
        // 256 MiB: RAM ends at 0x9000_0000, the DTB in its last 2 MiB.
        assert_eq!(modules_addr(3 << 20, 256 << 20), Ok(0x9000_0000 - (2 << 20) - (4 << 20)));
        // 2 GiB: the DTB sits below 3 GiB whatever the RAM.
        assert_eq!(modules_addr(1, 2 << 30), Ok(0xc000_0000 - (4 << 20)));
        assert!(modules_addr(200 << 20, 256 << 20).is_err());
    }
}
