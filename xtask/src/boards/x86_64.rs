//! The x86_64 board: QEMU q35 with AMD SVM (`-cpu max`, software emulation)
//! and isa-debug-exit, which turns the hypervisor's verdict into QEMU's exit
//! status. The boot module goes in as `-initrd` (the PVH start info's first
//! module); the demo guests are the x86 test guest built 64-bit and 32-bit.
//! A guest kernel given as a bzImage goes into the boot module as the ELF
//! vmlinux inside it (`crate::bzimage`); the Debian kernels `--linux` and
//! `--linux32` boot are such bzImages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use lantern_arch_x86::layout::{X86_32, X86_64 as X86_64_ABI};
use xen_abi::layout::GuestAbi;

use super::{
    BareLinux, BenchParams, BoardSpec, DemoGuest, EntryState, ExitStatuses, FaultDiagnostic, GuestSymbols, Kernel, LineCheck,
    ProbeValue,
};

/// The x86_64 board.
pub struct X86_64;

/// The native layout, and the compat layout 32-bit guests latch at their
/// first hypercall.
static GUEST_ABIS: [&dyn GuestAbi; 2] = [&X86_64_ABI, &X86_32];

/// d1: the x86 test guest built 64-bit; d2: the same guest built 32-bit
/// (compat layout), from the i686 Linux target's `core`.
const DEMO_GUESTS: &[DemoGuest] = &[
    DemoGuest {
        image: "guest64",
        crate_dir: "x86_64",
        package: "lantern-guest-x86_64",
        target: "x86_64-unknown-none",
        layout: "x86_64",
    },
    DemoGuest {
        image: "guest32",
        crate_dir: "x86_64",
        package: "lantern-guest-x86_64",
        target: "i686-unknown-linux-gnu",
        layout: "x86_32",
    },
];

/// The machine: q35 without the legacy PIT (the hypervisor calibrates
/// against the HPET, and guests see no PIT, as PVH domUs on Xen), one CPU
/// with SVM, and the exit device on port 0xf4.
const MACHINE_ARGS: &[&str] =
    &["-M", "q35,pit=off", "-cpu", "max", "-smp", "1", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"];

/// At the PVH entry: vCPU 0 held at `pvh_start32`. d2 latches the x86_32
/// layout only at its first hypercall, so `monitor domains` is checked by
/// image name.
const ENTRY_CHECKS: &[LineCheck] = &[
    LineCheck { name: "monitor domains: d1 guest64, d2 guest32", lines: &[&["d1 ", "guest64"], &["d2 ", "guest32"]] },
    LineCheck { name: "vCPU 0 held at the PVH entry (pvh_start32)", lines: &[&["rip", "pvh_start32"]] },
    LineCheck { name: "disassembly through guest memory at the entry", lines: &[&["=> ", "pvh_start32"]] },
];

impl BoardSpec for X86_64 {
    fn name(&self) -> &'static str {
        "x86_64"
    }

    /// Booted through its PVH note.
    fn kernel(&self) -> Kernel {
        Kernel { package: "lantern-platform-x86_64", target: "x86_64-unknown-none" }
    }

    fn arch_crate(&self) -> &'static str {
        "lantern-arch-x86"
    }

    fn guest_abis(&self) -> &'static [&'static dyn GuestAbi] {
        &GUEST_ABIS
    }

    fn scratch_dir(&self) -> &'static str {
        "lantern-x86_64"
    }

    fn qemu_binary(&self) -> &'static str {
        "qemu-system-x86_64"
    }

    fn qemu_package(&self) -> &'static str {
        "qemu-system-x86"
    }

    fn machine_args(&self) -> &'static [&'static str] {
        MACHINE_ARGS
    }

    /// COM2 (COM1 is the console).
    fn gdb_serial_args(&self, chardev: &str) -> Vec<String> {
        vec!["-serial".into(), format!("chardev:{chardev}")]
    }

    /// None: the module arrives through the PVH start info, and
    /// isa-debug-exit needs no word.
    fn boot_words(&self, _module_len: u64, _ram_bytes: u64) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    /// q35 keeps RAM below 4 GiB only up to 2816 MiB (more moves all but 2
    /// GiB above 4 GiB, out of the heap's reach).
    fn max_ram(&self) -> u64 {
        2816 << 20
    }

    /// A PVH domain's RAM ends below its console ring's gfn (with the other
    /// special pages under 4 GiB), and it comes out of the machine's.
    fn max_domain_mem(&self) -> u64 {
        (xen_abi::arch_x86::HVM_CONSOLE_GFN << 12).min(self.max_ram() - super::hypervisor_own_memory(0, 0))
    }

    /// A bzImage (Debian's `vmlinuz`) becomes the ELF vmlinux inside it,
    /// which the loader boots through its PVH note.
    fn guest_kernel(&self, path: &Path) -> Result<PathBuf, String> {
        crate::bzimage::kernel_elf(path)
    }

    fn module_args(&self, module: &Path, _module_len: u64, _ram_bytes: u64) -> Vec<OsString> {
        vec!["-initrd".into(), module.into()]
    }

    /// isa-debug-exit makes value v QEMU's status (v << 1) | 1: the
    /// hypervisor writes 0x10 for clean, 0x11 for failed.
    fn exit_statuses(&self) -> ExitStatuses {
        ExitStatuses { clean: 33, failed: 35 }
    }

    fn demo_guests(&self) -> &'static [DemoGuest] {
        DEMO_GUESTS
    }

    /// More than 32 (the shared_info slots), so vCPUs start on the dummy area.
    fn demo_vcpus(&self) -> u32 {
        34
    }

    fn gdb_arch(&self) -> &'static str {
        "i386:x86-64"
    }

    fn default_gdb_port(&self) -> u16 {
        1234
    }

    /// Debian's cloud kernel first (`--linux`), the generic one, and the
    /// 32-bit PAE kernel (`--linux32`).
    fn linux_flavours(&self) -> &'static [crate::linux::Flavour] {
        &[crate::linux::CLOUD_AMD64, crate::linux::GENERIC_AMD64, crate::linux::PAE_686]
    }

    /// The cloud kernel with 40 vCPUs: vCPUs 32–39 have no vcpu_info slot
    /// in shared_info, so Linux must place theirs (the 686-pae kernel
    /// stops at 32 CPUs).
    fn linux_wide_smp(&self) -> Option<u32> {
        Some(40)
    }

    /// The guest runs where it is linked and keeps its command line in a
    /// static buffer.
    fn guest_symbols(&self) -> GuestSymbols {
        GuestSymbols {
            load_base_key: None,
            probe: "lantern_guest_x86_64::guest::CMDLINE.len",
            expected: ProbeValue::ReportedLen("cmdline"),
        }
    }

    fn entry_state(&self) -> EntryState {
        EntryState { registers: "info registers rip", checks: ENTRY_CHECKS }
    }

    /// The SVM exit code, the guest's rip and the nested-page-fault address.
    fn fault_diagnostic(&self) -> FaultDiagnostic {
        FaultDiagnostic { fields: &["exit code ", "rip ", "gpa "], address_field: "gpa " }
    }

    /// The stub's view of 64 vCPUs is the figure the issue asks for; QEMU's
    /// stub reads host-physical 1 MiB..2 MiB; the hypervisor's `selftest`
    /// measures its own VMRUN/VMMCALL round trip.
    fn bench(&self) -> BenchParams {
        BenchParams { gdb_vcpus: 64, host_ram: (0x10_0000, 0x20_0000), selftest: true, bare_linux: Some(BareLinux { machine: "q35", console: "ttyS0" }) }
    }
}
