//! The boards xtask can build, boot, test and debug: the [`BoardSpec`] trait
//! holds everything that differs between them, and the registry lists them.
//! The rest of xtask asks a board, never an architecture: porting Lantern to
//! a new board means one new file here implementing [`BoardSpec`] and one
//! line in the `registry!` below.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use xen_abi::layout::GuestAbi;

use crate::paths::target_dir;

/// Declares each board's module and lists its spec, in registry order (the
/// first is the default `--arch`): one line per board.
macro_rules! registry {
    ($($module:ident :: $spec:ident),+ $(,)?) => {
        $(mod $module;)+
        static BOARDS: &[&dyn BoardSpec] = &[$(&$module::$spec),+];
    };
}

registry! {
    x86_64::X86_64,
    aarch64::Aarch64,
    riscv64::Riscv64,
}

/// Everything xtask needs to know about one board: how to build and boot
/// it, how gdb reaches it, and what its tests expect to see.
pub trait BoardSpec: Sync {
    /// The board's name: the Rust target arch (`x86_64`, `aarch64`), as
    /// `--arch` takes it and as test names and section headers show it.
    fn name(&self) -> &'static str;
    /// The hypervisor image.
    fn kernel(&self) -> Kernel;
    /// The `crates/arch-*` package the image is built on (clippy-checked on
    /// the image's target by `cargo xtask test`).
    fn arch_crate(&self) -> &'static str;
    /// The guest-ABI layouts this board's domains can run in, in the order
    /// `cargo xtask abi` prints them.
    fn guest_abis(&self) -> &'static [&'static dyn GuestAbi];
    /// The board's scratch directory under cargo's target directory (boot
    /// module, console logs).
    fn scratch_dir(&self) -> &'static str;
    /// The QEMU system emulator that runs the board.
    fn qemu_binary(&self) -> &'static str;
    /// The Debian package that provides [`Self::qemu_binary`].
    fn qemu_package(&self) -> &'static str;
    /// The machine: model, CPU, memory, CPU count and the device (if any)
    /// that turns the hypervisor's verdict into QEMU's exit status.
    fn machine_args(&self) -> &'static [&'static str];
    /// The QEMU arguments that attach the gdb stub's serial line to the
    /// host socket chardev named `chardev`.
    fn gdb_serial_args(&self, chardev: &str) -> Vec<String>;
    /// The board's own hypervisor command-line words for a boot module of
    /// `module_len` bytes in a machine of `ram_bytes` (where to find the
    /// module, how to report the verdict); an error if the module cannot
    /// reach the hypervisor.
    fn boot_words(&self, module_len: u64, ram_bytes: u64) -> Result<Vec<String>, String>;
    /// The most RAM the hypervisor can use on this machine (QEMU's `-m`
    /// may not exceed it).
    fn max_ram(&self) -> u64;
    /// The most RAM one domain can have (its guest-physical map's RAM
    /// window).
    fn max_domain_mem(&self) -> u64;
    /// The QEMU arguments that hand the boot module at `module` (of
    /// `module_len` bytes, in a machine of `ram_bytes`) to the hypervisor.
    fn module_args(&self, module: &Path, module_len: u64, ram_bytes: u64) -> Vec<OsString>;
    /// QEMU's exit statuses for the hypervisor's verdicts.
    fn exit_statuses(&self) -> ExitStatuses;
    /// The demo domains' guests, one per domain in domain-id order (d1
    /// first).
    fn demo_guests(&self) -> &'static [DemoGuest];
    /// vCPUs of each demo domain.
    fn demo_vcpus(&self) -> u32;
    /// gdb's `set architecture` name.
    fn gdb_arch(&self) -> &'static str;
    /// gdb's `set osabi` for the board's guests, when gdb's default (the
    /// host's, GNU/Linux) is wrong for them.
    fn gdb_osabi(&self) -> Option<&'static str> {
        None
    }
    /// The gdb stub's port when `--gdb-port` is not given.
    fn default_gdb_port(&self) -> u16;
    /// Registers of the board's own target-description features that the
    /// live gdb test prints in a guest frame (None: it has none to check
    /// beyond its arch's own checks there).
    fn gdb_feature_registers(&self) -> Option<FeatureRegisters> {
        None
    }
    /// Whether the board's stub takes hardware breakpoints and watchpoints
    /// (gdb's `hbreak`, `watch` with hardware watchpoints): false where the
    /// CPU has no debug triggers the hypervisor can use, so the debugger
    /// test checks the refusal and gdb's software watchpoint instead.
    fn hw_points(&self) -> bool {
        true
    }
    /// Whether the board's gdb-multiarch offers `catch syscall` for its
    /// architecture (the stub's hypercall catchpoints are arch-neutral):
    /// false where gdb refuses it, so the catch-syscall test speaks the
    /// remote protocol's `QCatchSyscalls` to the stub itself.
    fn gdb_catches_syscalls(&self) -> bool {
        true
    }

    /// The Debian kernels this board boots with `run --linux` (the first is
    /// the default; `--linux-flavour NAME` picks another). Empty: none yet.
    fn linux_flavours(&self) -> &'static [crate::linux::Flavour] {
        &[]
    }
    /// A vCPU count beyond the shared_info's vcpu_info slots that `cargo
    /// xtask test` boots the first Linux flavour with (None: the board's
    /// flavours stop below it).
    fn linux_wide_smp(&self) -> Option<u32> {
        None
    }
    /// The file the boot module carries for the guest kernel at `path`: a
    /// kernel format the hypervisor's loader does not take turned into one
    /// it does (default: `path` as it is).
    fn guest_kernel(&self, path: &Path) -> Result<PathBuf, String> {
        Ok(path.to_path_buf())
    }
    /// How the live gdb test reads a demo guest through its symbols.
    fn guest_symbols(&self) -> GuestSymbols;
    /// What gdb must show of a vCPU held before its first instruction
    /// (`--wait-gdb`).
    fn entry_state(&self) -> EntryState;
    /// What the hypervisor's crash diagnostic for a guest fault must name.
    fn fault_diagnostic(&self) -> FaultDiagnostic;
    /// The parameters of the board's `cargo xtask bench` figures.
    fn bench(&self) -> BenchParams;
}

/// Boards appear in options and test output by name.
impl fmt::Debug for dyn BoardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A board's hypervisor image: the package and the Rust target it is built for.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// The platform package (`platform/<board>`).
    pub package: &'static str,
    /// Its bare-metal Rust target.
    pub target: &'static str,
}

/// A live gdb check of registers from a board's own target-description
/// features ([`BoardSpec::gdb_feature_registers`]).
#[derive(Clone, Copy, Debug)]
pub struct FeatureRegisters {
    /// The check's name in the tally.
    pub name: &'static str,
    /// The registers, as gdb names them (without `$`); each must print a
    /// number.
    pub registers: &'static [&'static str],
    /// Whether they must all print the same value.
    pub equal: bool,
}

/// QEMU's exit statuses for the hypervisor's two verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatuses {
    /// Every domain ended cleanly.
    pub clean: i32,
    /// Some domain did not.
    pub failed: i32,
}

/// One demo domain's guest: a test-guest crate built for one target.
#[derive(Clone, Copy, Debug)]
pub struct DemoGuest {
    /// The image's name in the boot module (the domain's name).
    pub image: &'static str,
    /// The crate's directory under `tests/guests/`.
    pub crate_dir: &'static str,
    /// The crate's package, which is also its ELF's file name.
    pub package: &'static str,
    /// The Rust target the domain's image is built for.
    pub target: &'static str,
    /// The Xen guest-ABI layout the domain runs in, as the gdb stub names
    /// it (one of the board's [`BoardSpec::guest_abis`]).
    pub layout: &'static str,
}

impl DemoGuest {
    /// The ELF a release build of this guest produces (its symbols for gdb).
    pub fn elf(&self) -> PathBuf {
        target_dir().join(self.target).join("release").join(self.package)
    }
}

/// How the live gdb test reads a guest through its ELF symbols.
#[derive(Clone, Copy, Debug)]
pub struct GuestSymbols {
    /// For a guest linked at 0 and relocated at load time: the `REPORT` key
    /// under which it prints its load address, by which gdb relocates the
    /// symbols. `None` for a guest that runs where it is linked.
    pub load_base_key: Option<&'static str>,
    /// A gdb expression (Rust syntax) naming one of the guest's statics.
    pub probe: &'static str,
    /// Where the value the probe must print comes from.
    pub expected: ProbeValue,
}

/// The source of a symbol probe's expected value.
#[derive(Clone, Copy, Debug)]
pub enum ProbeValue {
    /// The length of the string the guest reported under this `REPORT` key.
    ReportedLen(&'static str),
    /// The number of vCPUs of the guest's domain.
    DomainVcpus,
}

/// What gdb shows of vCPU 0 held at its entry point (`--wait-gdb`).
#[derive(Clone, Copy, Debug)]
pub struct EntryState {
    /// The gdb command that prints the registers the checks read.
    pub registers: &'static str,
    /// The checks on gdb's output (threads, `monitor domains`, the
    /// registers, `x/1i $pc`).
    pub checks: &'static [LineCheck],
}

/// A named check on command output: each group of words must share one
/// line (groups may sit on different lines).
#[derive(Clone, Copy, Debug)]
pub struct LineCheck {
    /// The check's name in the tally.
    pub name: &'static str,
    /// The groups of words.
    pub lines: &'static [&'static [&'static str]],
}

impl LineCheck {
    /// Whether `text` has a line for every group.
    pub fn holds(&self, text: &str) -> bool {
        self.lines.iter().all(|parts| text.lines().any(|l| parts.iter().all(|p| l.contains(p))))
    }
}

/// The fields of the hypervisor's one-line crash diagnostic for a guest
/// fault on this board.
#[derive(Clone, Copy, Debug)]
pub struct FaultDiagnostic {
    /// Every field the line must carry (exit reason, program counter, ...).
    pub fields: &'static [&'static str],
    /// The field followed by the faulting guest-physical address.
    pub address_field: &'static str,
}

/// The parameters of a board's `cargo xtask bench` figures.
#[derive(Clone, Copy, Debug)]
pub struct BenchParams {
    /// vCPUs of the one domain the gdb benchmark inspects.
    pub gdb_vcpus: u32,
    /// `(start, end)` of the host-physical RAM that QEMU's own gdb stub
    /// reads in the 1 MiB memory-read comparison.
    pub host_ram: (u64, u64),
    /// Whether the hypervisor has the `selftest` boot word (a raw guest's
    /// hypercall round trip, without a guest kernel).
    pub selftest: bool,
    /// How the Linux boot benchmark boots the board's first Linux flavour
    /// directly in QEMU, without the hypervisor (`None`: no such figure).
    pub bare_linux: Option<BareLinux>,
}

/// The bare-QEMU side of the Linux boot benchmark: the same kernel and
/// initramfs on the board's machine without virtualization (and with the
/// board's own `-cpu`, so both sides emulate the same CPU).
#[derive(Clone, Copy, Debug)]
pub struct BareLinux {
    /// QEMU's `-M` value: the board's machine without EL2 / SVM.
    pub machine: &'static str,
    /// The kernel's console on that machine (`console=` word).
    pub console: &'static str,
}

/// The hypervisor's own memory besides its domains' RAM: its image,
/// stacks and heap (page tables, per-page and per-vCPU records; about a
/// sixteenth of the guest RAM it maps), and the boot module it keeps.
pub fn hypervisor_own_memory(guest_bytes: u64, module_len: u64) -> u64 {
    (64 << 20) + guest_bytes / 16 + module_len
}

/// QEMU's RAM for `domains` on `board` with a boot module of `module_len`
/// bytes: the domains' total plus the hypervisor's own, in whole 64 MiB.
/// A clear error when a domain or the total asks for more than the board
/// (or this host) has, before anything boots.
pub fn ram_for(board: &dyn BoardSpec, domains: &[(String, u64)], module_len: u64) -> Result<u64, String> {
    const MIB: u64 = 1 << 20;
    for (name, mem) in domains {
        if *mem > board.max_domain_mem() {
            return Err(format!(
                "domain {name} asks for {} MiB; a domain on the {} board has at most {} MiB",
                mem / MIB,
                board.name(),
                board.max_domain_mem() / MIB
            ));
        }
    }
    let guests: u64 = domains.iter().map(|(_, m)| m).sum();
    let ram = (guests + hypervisor_own_memory(guests, module_len)).next_multiple_of(64 * MIB);
    if ram > board.max_ram() {
        return Err(format!(
            "the domains ask for {} MiB in total, and the hypervisor needs {} MiB of its own: {} MiB is more \
             than the {} board's {} MiB",
            guests / MIB,
            (ram - guests) / MIB,
            ram / MIB,
            board.name(),
            board.max_ram() / MIB
        ));
    }
    if let Some(avail) = host_available_memory() {
        if ram > avail {
            return Err(format!(
                "the domains ask for {} MiB in total ({} MiB with the hypervisor's own), more than this host's \
                 {} MiB available",
                guests / MIB,
                ram / MIB,
                avail / MIB
            ));
        }
    }
    Ok(ram)
}

/// `MemAvailable` of /proc/meminfo, in bytes (`None` where there is none).
fn host_available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// Every board, the default first.
pub fn all() -> &'static [&'static dyn BoardSpec] {
    BOARDS
}

/// The board `--arch` uses when it is not given.
pub fn default_board() -> &'static dyn BoardSpec {
    BOARDS[0]
}

/// The board called `name`.
pub fn by_name(name: &str) -> Result<&'static dyn BoardSpec, String> {
    BOARDS
        .iter()
        .copied()
        .find(|b| b.name() == name)
        .ok_or_else(|| format!("unknown --arch `{name}` ({})", names(", ", " or ")))
}

/// Every board's name, joined by `sep` but the last two by `last`
/// (`x86_64, aarch64 or riscv64`).
pub fn names(sep: &str, last: &str) -> String {
    let names: Vec<&str> = BOARDS.iter().map(|b| b.name()).collect();
    match names.split_last() {
        Some((tail, [])) => tail.to_string(),
        Some((tail, head)) => format!("{}{last}{tail}", head.join(sep)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_boards_up_by_their_one_name() {
        assert_eq!(by_name("aarch64").unwrap().default_gdb_port(), 1235);
        assert_eq!(by_name("x86_64").unwrap().default_gdb_port(), 1234);
        assert!(by_name("mips").is_err());
        // One spelling per architecture: the Rust target arch, no aliases.
        assert!(by_name("arm64").is_err() && by_name("x86-64").is_err());
        assert_eq!(default_board().name(), "x86_64");
        // The list names every board once, in registry order.
        let listed: Vec<&str> = all().iter().map(|b| b.name()).collect();
        assert_eq!(names("|", "|"), listed.join("|"));
        let prose = names(", ", " or ");
        assert!(prose.ends_with(&format!(" or {}", listed[listed.len() - 1])), "{prose}");
        assert_eq!(by_name("mips").unwrap_err(), format!("unknown --arch `mips` ({prose})"));
    }

    #[test]
    fn every_board_is_consistent() {
        for (i, b) in all().iter().enumerate() {
            let name = b.name();
            assert!(b.kernel().target.starts_with(name), "{name}: kernel target {}", b.kernel().target);
            assert!(!all()[..i].iter().any(|o| o.name() == name), "{name} registered twice");
            assert!(!all()[..i].iter().any(|o| o.default_gdb_port() == b.default_gdb_port()), "{name}: port");
            assert!(!all()[..i].iter().any(|o| o.scratch_dir() == b.scratch_dir()), "{name}: scratch dir");
            assert!(!b.demo_guests().is_empty(), "{name}: no demo guest");
            let layouts: Vec<&str> = b.guest_abis().iter().map(|a| a.name()).collect();
            for g in b.demo_guests() {
                assert!(layouts.contains(&g.layout), "{name}: {} runs in unknown layout {}", g.image, g.layout);
            }
            let statuses = b.exit_statuses();
            assert_ne!(statuses.clean, statuses.failed, "{name}: verdicts indistinguishable");
            assert!(b.max_domain_mem() <= b.max_ram(), "{name}: a domain bigger than the machine");
            assert!(!b.machine_args().contains(&"-m"), "{name}: QEMU's memory is sized from the domains");
            let flavours = b.linux_flavours();
            for (j, f) in flavours.iter().enumerate() {
                assert!(!flavours[..j].iter().any(|o| o.name == f.name), "{name}: flavour {} twice", f.name);
                assert!(f.cmdline.contains("console=hvc0"), "{name}: {} has no console on hvc0", f.name);
                assert!(layouts.contains(&f.layout), "{name}: {} registers in unknown layout {}", f.name, f.layout);
            }
        }
    }

    #[test]
    fn qemu_memory_is_the_domains_total_plus_the_hypervisors_own() {
        const MIB: u64 = 1 << 20;
        for b in all() {
            let name = b.name();
            let two = [("a".to_string(), 256 * MIB), ("b".to_string(), 32 * MIB)];
            let ram = ram_for(*b, &two, 40 * MIB).unwrap();
            assert_eq!(ram % (64 * MIB), 0, "{name}");
            assert!(ram >= 288 * MIB + hypervisor_own_memory(288 * MIB, 40 * MIB), "{name}: {ram}");
            assert!(ram < 288 * MIB + hypervisor_own_memory(288 * MIB, 40 * MIB) + 64 * MIB, "{name}: {ram}");
            let big = [("huge".to_string(), b.max_domain_mem() + 4096)];
            let e = ram_for(*b, &big, 0).unwrap_err();
            assert!(e.starts_with("domain huge asks for") && e.contains(name), "{e}");
            let many: Vec<(String, u64)> =
                (0..64).map(|i| (format!("d{i}"), b.max_domain_mem().min(b.max_ram() / 2))).collect();
            let e = ram_for(*b, &many, 0).unwrap_err();
            assert!(e.contains("in total"), "{e}");
        }
    }
}
