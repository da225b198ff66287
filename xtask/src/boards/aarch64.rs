//! The aarch64 board: QEMU `virt` at EL2 (`virtualization=on`, GICv3, `-cpu
//! max`). QEMU's generic loader puts the boot module at [`MODULES_ADDR`] and
//! the command-line word `lantern.modules=ADDR,SIZE` tells the hypervisor;
//! `lantern.semihosting` makes its power-off set QEMU's exit status. The
//! demo guests are the arm64 test guest twice: two domains, so the
//! scenario's grant-table checks have a peer.

use std::ffi::OsString;
use std::path::Path;

use lantern_arch_arm::layout::ARM64;
use xen_abi::layout::GuestAbi;

use super::{
    BareLinux, BenchParams, BoardSpec, DemoGuest, EntryState, ExitStatuses, FaultDiagnostic, FeatureRegisters, GuestSymbols,
    Kernel, LineCheck, ProbeValue,
};

/// The aarch64 board.
pub struct Aarch64;

/// Rust target of everything that runs inside QEMU.
const TARGET: &str = "aarch64-unknown-none";

/// Where virt's RAM starts.
const RAM_BASE: u64 = 0x4000_0000;
/// QEMU's generic loader puts the module archive at the top of RAM, on a
/// 2 MiB boundary (the hypervisor's heap stops below it).
const MODULES_ALIGN: u64 = 2 << 20;
/// The most RAM: the hypervisor's EL2 identity map covers 1..256 GiB.
const MAX_RAM: u64 = 255 << 30;

static GUEST_ABIS: [&dyn GuestAbi; 1] = [&ARM64];

/// d1 and d2: the same arm64 test guest (one build), under two names.
const DEMO_GUESTS: &[DemoGuest] = &[
    DemoGuest { image: "guest", crate_dir: "aarch64", package: "lantern-guest-aarch64", target: TARGET, layout: "arm64" },
    DemoGuest { image: "guest2", crate_dir: "aarch64", package: "lantern-guest-aarch64", target: TARGET, layout: "arm64" },
];

/// The machine: virt with EL2 and GICv3, one CPU; semihosting for the exit
/// status.
const MACHINE_ARGS: &[&str] = &[
    "-M",
    "virt,virtualization=on,gic-version=3",
    "-cpu",
    "max",
    "-smp",
    "1",
    "-semihosting-config",
    "enable=on,target=native",
];

/// At the Image entry: pc 0, x0 = the guest DTB, EL1h with DAIF masked, and
/// the Image header's first branch.
const ENTRY_CHECKS: &[LineCheck] = &[
    LineCheck { name: "monitor domains names d1 with the arm64 layout", lines: &[&["d1 ", "arm64"]] },
    LineCheck { name: "vCPU 0 at the Image entry (pc 0)", lines: &[&["pc ", "0x0 "]] },
    LineCheck { name: "x0 holds the guest DTB address", lines: &[&["x0 ", "0x1e00000"]] },
    LineCheck { name: "cpsr is EL1h with DAIF masked", lines: &[&["cpsr", "0x3c5"]] },
    LineCheck { name: "disassembly through guest memory (Image branch)", lines: &[&["b\t0x40"]] },
];

/// Where the module archive of `module_len` bytes goes in `ram_bytes` of
/// RAM: the highest 2 MiB boundary it fits above.
fn modules_addr(module_len: u64, ram_bytes: u64) -> Result<u64, String> {
    let room = module_len.next_multiple_of(MODULES_ALIGN);
    if room + (64 << 20) > ram_bytes {
        return Err(format!("guest images too large: {module_len} bytes in {} MiB of RAM", ram_bytes >> 20));
    }
    Ok(RAM_BASE + ram_bytes - room)
}

impl BoardSpec for Aarch64 {
    fn name(&self) -> &'static str {
        "aarch64"
    }

    fn kernel(&self) -> Kernel {
        Kernel { package: "lantern-platform-aarch64", target: TARGET }
    }

    fn arch_crate(&self) -> &'static str {
        "lantern-arch-arm"
    }

    fn guest_abis(&self) -> &'static [&'static dyn GuestAbi] {
        &GUEST_ABIS
    }

    fn scratch_dir(&self) -> &'static str {
        "lantern-aarch64"
    }

    fn qemu_binary(&self) -> &'static str {
        "qemu-system-aarch64"
    }

    fn qemu_package(&self) -> &'static str {
        "qemu-system-arm"
    }

    fn machine_args(&self) -> &'static [&'static str] {
        MACHINE_ARGS
    }

    /// virt has one PL011 (the console): a PCI 16550 carries gdb.
    fn gdb_serial_args(&self, chardev: &str) -> Vec<String> {
        vec!["-device".into(), format!("pci-serial,chardev={chardev}")]
    }

    fn boot_words(&self, module_len: u64, ram_bytes: u64) -> Result<Vec<String>, String> {
        let addr = modules_addr(module_len, ram_bytes)?;
        Ok(vec![format!("lantern.modules={addr:#x},{module_len:#x}"), "lantern.semihosting".to_string()])
    }

    fn max_ram(&self) -> u64 {
        MAX_RAM
    }

    fn max_domain_mem(&self) -> u64 {
        lantern_arch_arm::guest::GuestMap::RAM_MAX
    }

    /// The generic loader, raw at the top of RAM (see [`modules_addr`]).
    fn module_args(&self, module: &Path, module_len: u64, ram_bytes: u64) -> Vec<OsString> {
        // boot_words has refused a module that does not fit.
        let addr = modules_addr(module_len, ram_bytes).unwrap_or(RAM_BASE);
        vec!["-device".into(), format!("loader,file={},addr={addr:#x},force-raw=on", module.display()).into()]
    }

    /// The semihosting exit status the hypervisor asks for.
    fn exit_statuses(&self) -> ExitStatuses {
        ExitStatuses { clean: 0, failed: 1 }
    }

    fn demo_guests(&self) -> &'static [DemoGuest] {
        DEMO_GUESTS
    }

    /// The scenario needs at least 3, and on arm64 every vCPU but 0 starts
    /// on the dummy vcpu_info area.
    fn demo_vcpus(&self) -> u32 {
        4
    }

    fn gdb_arch(&self) -> &'static str {
        "aarch64"
    }

    /// gdb's GNU/Linux ABI for aarch64 ends every backtrace at a pc below
    /// 0x8000 (where a Linux process cannot run: its `_start` guard), and the
    /// test guest runs linked at 0 — `bt` showed one frame. Without an OS
    /// ABI the guard is at 0x20.
    fn gdb_osabi(&self) -> Option<&'static str> {
        Some("none")
    }

    fn default_gdb_port(&self) -> u16 {
        1235
    }

    /// gdb's pauth feature: the masks it strips Linux's signed return
    /// addresses with.
    fn gdb_feature_registers(&self) -> Option<FeatureRegisters> {
        Some(FeatureRegisters {
            name: "d1: gdb takes the pauth feature ($pauth_cmask and $pauth_dmask print, equal)",
            registers: &["pauth_cmask", "pauth_dmask"],
            equal: true,
        })
    }

    fn linux_flavours(&self) -> &'static [crate::linux::Flavour] {
        &[crate::linux::CLOUD_ARM64, crate::linux::GENERIC_ARM64]
    }

    /// The guest is position independent, linked at 0, and reports where
    /// it was loaded; it keeps its boot facts (vCPU count) in a static.
    fn guest_symbols(&self) -> GuestSymbols {
        GuestSymbols {
            load_base_key: Some("image_base"),
            probe: "lantern_guest_aarch64::guest::BOOT.vcpus",
            expected: ProbeValue::DomainVcpus,
        }
    }

    fn entry_state(&self) -> EntryState {
        EntryState { registers: "info registers pc x0 cpsr", checks: ENTRY_CHECKS }
    }

    /// The syndrome, the exception link register and the stage-2 fault
    /// address.
    fn fault_diagnostic(&self) -> FaultDiagnostic {
        FaultDiagnostic { fields: &["esr ", "elr ", "ipa "], address_field: "ipa " }
    }

    /// The test guest supports at most 16 vCPUs; virt's RAM starts at 1 GiB
    /// and the hypervisor at 1 GiB + 2 MiB, so QEMU's stub reads 1 MiB from
    /// 1 GiB + 16 MiB. No `selftest` boot word here. Linux alone on QEMU
    /// runs at EL1 of the same virt machine (no `virtualization=on`), its
    /// console on the PL011.
    fn bench(&self) -> BenchParams {
        BenchParams {
            gdb_vcpus: 16,
            host_ram: (0x4100_0000, 0x4110_0000),
            selftest: false,
            bare_linux: Some(BareLinux { machine: "virt,gic-version=3", console: "ttyAMA0" }),
        }
    }
}
