//! The one list of guest ABI layouts that every conformance test, property
//! test, the bench and the fake board are run in.

use xen_abi::layout::GuestAbi;

/// One guest ABI layout Lantern supports, and what a vCPU of its arch shows
/// gdb (the fake board gives its fake vCPUs that register file).
pub struct Layout {
    /// The layout's struct offsets and sizes, alignments and legacy vCPU limit.
    pub abi: &'static dyn GuestAbi,
    /// The board arch whose guests use the layout, spelled as xtask's boards
    /// spell it (`x86_64`, `aarch64`): the fake board's `--arch`.
    pub arch: &'static str,
    /// The arch's gdb target description (`target.xml`).
    pub gdb_target_xml: &'static str,
    /// The size in bytes of the arch's gdb register file (a `g` reply).
    pub gdb_registers_size: usize,
}

impl Layout {
    /// One entry of [`LAYOUTS`], kept to one line per layout.
    pub const fn new(
        abi: &'static dyn GuestAbi,
        arch: &'static str,
        gdb_target_xml: &'static str,
        gdb_registers_size: usize,
    ) -> Self {
        Layout { abi, arch, gdb_target_xml, gdb_registers_size }
    }
}

/// Every guest ABI layout Lantern supports, the one list of them in the tests.
///
/// Every cross-arch test iterates this list (property tests draw from it), so
/// a new port joins all of them, and the fake board, by adding its layout
/// here: one line, plus its arch crate as a dependency of this crate. For
/// riscv64 that line would read
/// `Layout::new(&lantern_arch_riscv::layout::RISCV64, "riscv64", lantern_arch_riscv::gdb::TARGET_XML, lantern_arch_riscv::gdb::REGS_SIZE),`.
/// Nothing else in the conformance crate lists layouts; tests that check a
/// particular layout's numbers look it up by name with [`layout`].
#[rustfmt::skip]
pub static LAYOUTS: &[Layout] = &[
    Layout::new(&lantern_arch_x86::layout::X86_64, "x86_64", lantern_arch_x86::gdbregs::TARGET_XML, lantern_arch_x86::gdbregs::REGS_SIZE),
    Layout::new(&lantern_arch_x86::layout::X86_32, "x86_64", lantern_arch_x86::gdbregs::TARGET_XML, lantern_arch_x86::gdbregs::REGS_SIZE),
    Layout::new(&lantern_arch_arm::layout::ARM64, "aarch64", lantern_arch_arm::gdb::TARGET_XML, lantern_arch_arm::gdb::REGS_SIZE),
    Layout::new(&lantern_arch_riscv::layout::RISCV64, "riscv64", lantern_arch_riscv::gdb::TARGET_XML, lantern_arch_riscv::gdb::REGS_SIZE),
];

/// The layouts of [`LAYOUTS`], for tests that check a rule in each.
pub fn layouts() -> Vec<&'static dyn GuestAbi> {
    LAYOUTS.iter().map(|l| l.abi).collect()
}

/// The layout called `name` (`x86_64`, `x86_32`, `arm64`): for tests whose
/// expectations are one layout's numbers.
pub fn layout(name: &str) -> &'static dyn GuestAbi {
    match LAYOUTS.iter().find(|l| l.abi.name() == name) {
        Some(l) => l.abi,
        None => panic!("no layout {name} in LAYOUTS"),
    }
}
