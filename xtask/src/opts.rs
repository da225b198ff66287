//! The options of `cargo xtask run` (one set for every board), their parser
//! and help text. The tests build the same options in code.

use std::path::PathBuf;

use crate::boards::{self, BoardSpec};
use crate::linux::{Flavour, PAE_686};

/// The flavour `--linux32` stands for.
const LINUX32: Flavour = PAE_686;

/// Options of `cargo xtask run`.
#[derive(Clone, Debug)]
pub struct Opts {
    /// `--arch NAME`: the board (default: the registry's first).
    pub board: &'static dyn BoardSpec,
    /// `--guest ELF` (repeatable): boot these images instead of the demo guests.
    pub guests: Vec<PathBuf>,
    /// `--initrd FILE` (repeatable): the Nth is the initial ramdisk of the
    /// Nth `--guest`.
    pub initrds: Vec<PathBuf>,
    /// `--domain FILE` (repeatable): a domain from a subset of `xl.cfg`,
    /// after the shorthand's (see [`crate::xl_cfg`]).
    pub domain_files: Vec<PathBuf>,
    /// `--linux` / `--linux-flavour NAME` / `--linux32`: boot one of the
    /// board's Debian kernels with the busybox initramfs (set up on first
    /// use).
    pub linux: Option<&'static crate::linux::Flavour>,
    /// `--exit`: end once every domain has shut down, exit with the verdict.
    pub exit: bool,
    /// `--timeout S`: kill QEMU after S seconds (default 120 with `--exit`).
    pub timeout: Option<u64>,
    /// `--dry-run`: print the QEMU command line instead of running it.
    pub dry_run: bool,
    /// `--dev-build`: build the hypervisor with the dev profile (default
    /// release).
    pub dev_build: bool,
    /// `--log LEVEL`: the hypervisor's log level (`lantern.log=LEVEL`);
    /// `debug` shows every unhandled guest request.
    pub log: Option<log::LevelFilter>,
    /// `--vcpus N`: vCPUs for every domain.
    pub vcpus: Option<u32>,
    /// `--mem SIZE`: memory per domain (K/M/G suffixes).
    pub mem: Option<u64>,
    /// `--append WORD` (repeatable): extra hypervisor command-line words.
    pub append: Vec<String>,
    /// `--guest-cmdline TEXT`: command line for every domain (e.g. `bench`).
    pub guest_cmdline: Option<String>,
    /// Extra command-line words for one domain (by id, from 1), after
    /// everything else; no flag (the tests' own, e.g. the isolation
    /// attacks' `attack=D` and `victim`).
    pub domain_words: Vec<(u16, String)>,
    /// `--gdb-port P`: expose the gdb stub's serial line on 127.0.0.1:P (the
    /// whole system's session) and, on the virtio-serial line, domain N's
    /// own session on P+N.
    pub gdb_port: Option<u16>,
    /// `--gdb-transport virtio|uart`: the device that carries the gdb stub's
    /// line (the hypervisor uses whichever it finds).
    pub gdb_transport: GdbTransport,
    /// `--wait-gdb`: hold every vCPU before its first instruction until gdb
    /// attaches and continues (the boot-configuration word `gdb-wait`).
    pub wait_gdb: bool,
    /// `--serial-log FILE`: write the console to FILE instead of stdout.
    pub serial_log: Option<PathBuf>,
    /// The console on this Unix socket, both ways (QEMU listens and waits
    /// for its client before it starts; `serial_log` is then unused): the
    /// console tests type there and keep what comes back.
    pub console_socket: Option<PathBuf>,
    /// Only the first N demo guests (benchmarks run one domain alone).
    pub demo_domains: Option<usize>,
    /// QEMU's own gdb stub on 127.0.0.1:P (`-gdb`), for comparisons.
    pub qemu_gdb_port: Option<u16>,
}

/// The device that carries the gdb stub's line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GdbTransport {
    /// A virtio-serial port (`virtio-serial-pci` + `virtserialport`): fast,
    /// and the hypervisor sees gdb go away.
    Virtio,
    /// The board's 16550 (COM2 on x86, `pci-serial` on arm): one trap per
    /// byte, no hang-up.
    Uart,
}

impl std::str::FromStr for GdbTransport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "virtio" => Ok(GdbTransport::Virtio),
            "uart" => Ok(GdbTransport::Uart),
            _ => Err(format!("--gdb-transport takes virtio|uart, not `{s}`")),
        }
    }
}

impl Default for Opts {
    fn default() -> Self {
        Opts::on(boards::default_board())
    }
}

impl Opts {
    /// Boots `guest` (a Debian kernel with its busybox initramfs) as the one
    /// domain: its flavour's command line then `extra` on the kernel
    /// command line, [`crate::linux::DEFAULT_MEM`] unless a size is set.
    pub fn boot_linux(&mut self, guest: &crate::linux::LinuxGuest, extra: &str) {
        self.guests = vec![guest.kernel.clone()];
        self.initrds = vec![guest.initramfs.clone()];
        self.guest_cmdline = Some(format!("{} {extra}", guest.cmdline).trim_end().to_string());
        self.mem.get_or_insert(crate::linux::DEFAULT_MEM);
    }

    /// Default options on `board`.
    pub fn on(board: &'static dyn BoardSpec) -> Opts {
        Opts {
            board,
            guests: Vec::new(),
            initrds: Vec::new(),
            domain_files: Vec::new(),
            linux: None,
            exit: false,
            timeout: None,
            dry_run: false,
            dev_build: false,
            log: None,
            vcpus: None,
            mem: None,
            append: Vec::new(),
            guest_cmdline: None,
            domain_words: Vec::new(),
            gdb_port: None,
            gdb_transport: GdbTransport::Virtio,
            wait_gdb: false,
            serial_log: None,
            console_socket: None,
            demo_domains: None,
            qemu_gdb_port: None,
        }
    }
}

/// The help text of `cargo xtask run` (the board-dependent parts from the
/// registry).
pub fn run_usage() -> String {
    let all = boards::all();
    let ports: Vec<String> = all.iter().map(|b| format!("127.0.0.1:{} ({})", b.default_gdb_port(), b.name())).collect();
    let vcpus: Vec<String> = all.iter().map(|b| format!("{} {}", b.demo_vcpus(), b.name())).collect();
    let arch = format!("--arch {}", boards::names("|", "|"));
    format!(
        "\
usage: cargo xtask run [options]
  Builds Lantern and the guests and boots them in QEMU; the gdb stub listens on
  {} unless --gdb-port says otherwise.
options:
  {arch:<23} board (default {})
  --guest ELF             boot this guest image instead of the demo guests (repeatable;
                          x86_64: a bzImage boots as the ELF vmlinux inside it)
  --domain FILE           one more domain from an xl.cfg-style file (repeatable): name, type
                          (pvh), kernel, ramdisk, extra/cmdline, vcpus, memory (MiB),
                          on_poweroff/on_reboot/on_crash = destroy|restart|preserve
  --linux                 boot the board's Debian kernel with a busybox initramfs (fetched
                          from Debian's packages on first use, cached under target/linux)
  --linux-flavour NAME    the same with another of the board's Debian kernels
  --linux32               x86_64: the same with Debian's 32-bit kernel (686-pae, i386 busybox)
  --initrd FILE           initial ramdisk of the --guest in the same position (repeatable;
                          aarch64: placed in guest RAM and named in the guest DT's /chosen;
                          x86_64: placed above the image, the PVH start info's one module)
  --exit                  end when every domain has shut down; exit status = verdict
  --timeout S             kill QEMU after S seconds (default 120 with --exit)
  --dry-run               print the QEMU command line (shell-quoted) instead of running it
  --dev-build             build the hypervisor with the dev profile (default release)
  --log LEVEL             hypervisor log level: error|warn|info|debug|trace (debug also
                          lists every hypercall answered -ENOSYS and every register,
                          port or MMIO access refused or defaulted, with counts at the end)
  --vcpus N               vCPUs of every --guest/demo domain (demo default: {})
  --mem SIZE              memory of every --guest/demo domain (K/M/G suffixes; default 32M);
                          QEMU gets the domains' total plus the hypervisor's own
  --append WORD           extra hypervisor command-line word (repeatable)
  --guest-cmdline TEXT    command line of every --guest/demo domain (e.g. bench)
  --gdb-port P            gdb stub port: the whole system's session on P and, on the
                          virtio-serial line, domain N's own session on P+N (domains 1-6;
                          attach with `cargo xtask gdb --domain N`)
  --gdb-transport T       virtio (default: a virtio-serial port) or uart (the board's 16550)
  --wait-gdb              hold every vCPU before its first instruction until gdb continues
  --serial-log FILE       console to FILE instead of the terminal
Without --exit the demo guests get `linger` and stay alive for gdb.",
        ports.join(" / "),
        boards::default_board().name(),
        vcpus.join(", "),
    )
}

/// Parses the options of `cargo xtask run`. `Ok(None)` means `--help`.
pub fn parse_opts(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts::default();
    let mut linux_flavour: Option<Option<String>> = None;
    let mut linux32 = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(v: String, what: &str) -> Result<T, String> {
            v.parse().map_err(|_| format!("{what}, not `{v}`"))
        }
        match a.as_str() {
            "--arch" => o.board = boards::by_name(&value("--arch")?)?,
            "--guest" => o.guests.push(PathBuf::from(value("--guest")?)),
            "--initrd" => o.initrds.push(PathBuf::from(value("--initrd")?)),
            "--domain" => o.domain_files.push(PathBuf::from(value("--domain")?)),
            "--linux" => linux_flavour = Some(None),
            "--linux-flavour" => linux_flavour = Some(Some(value("--linux-flavour")?)),
            "--linux32" => {
                linux_flavour = Some(Some(LINUX32.name.to_string()));
                linux32 = true;
            }
            "--exit" => o.exit = true,
            "--dry-run" => o.dry_run = true,
            "--dev-build" => o.dev_build = true,
            "--log" => {
                let v = value("--log")?;
                o.log = Some(v.parse().map_err(|_| format!("--log takes error|warn|info|debug|trace, not `{v}`"))?)
            }
            "--timeout" => o.timeout = Some(num(value("--timeout")?, "--timeout takes seconds")?),
            "--vcpus" => o.vcpus = Some(num(value("--vcpus")?, "--vcpus takes a number")?),
            "--mem" => {
                let v = value("--mem")?;
                o.mem = Some(lantern_common::boot_config::parse_size(&v).ok_or(format!("bad --mem size {v}"))?)
            }
            "--append" => o.append.push(value("--append")?),
            "--guest-cmdline" => o.guest_cmdline = Some(value("--guest-cmdline")?),
            "--gdb-port" => o.gdb_port = Some(num(value("--gdb-port")?, "--gdb-port takes a port")?),
            "--gdb-transport" => o.gdb_transport = value("--gdb-transport")?.parse()?,
            "--wait-gdb" => o.wait_gdb = true,
            "--serial-log" => o.serial_log = Some(PathBuf::from(value("--serial-log")?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`\n{}", run_usage())),
        }
    }
    if let Some(name) = linux_flavour {
        let flavours = o.board.linux_flavours();
        let pick = match &name {
            None => flavours.first(),
            Some(n) => flavours.iter().find(|f| f.name == n),
        };
        let names: Vec<&str> = flavours.iter().map(|f| f.name).collect();
        o.linux = Some(pick.ok_or_else(|| match name {
            None => format!("--linux: no Debian kernel is set up for the {} board yet", o.board.name()),
            Some(_) if linux32 => format!(
                "--linux32 boots the 32-bit x86 kernel ({}); the {} board boots {names:?}",
                LINUX32.name,
                o.board.name()
            ),
            Some(n) => format!("--linux-flavour {n}: the {} board boots {names:?}", o.board.name()),
        })?);
        if !o.guests.is_empty() {
            return Err("--linux boots its own kernel: give it no --guest".into());
        }
    }
    if o.initrds.len() > o.guests.len() {
        return Err(format!(
            "{} --initrd for {} --guest: each initrd belongs to the --guest in the same position",
            o.initrds.len(),
            o.guests.len()
        ));
    }
    Ok(Some(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_run_options() {
        let args: Vec<String> =
            ["--arch", "aarch64", "--exit", "--vcpus", "3", "--wait-gdb", "--gdb-port", "4000", "--mem", "16M"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let o = parse_opts(&args).unwrap().unwrap();
        assert_eq!(o.board.name(), "aarch64");
        assert!(o.exit && o.wait_gdb);
        assert_eq!((o.vcpus, o.gdb_port, o.mem), (Some(3), Some(4000), Some(16 << 20)));
        assert!(parse_opts(&["--help".to_string()]).unwrap().is_none());
        assert!(parse_opts(&["--arch".to_string(), "mips".to_string()]).is_err());
        assert!(parse_opts(&["--bogus".to_string()]).is_err());
        let o = parse_opts(&["--log".to_string(), "debug".to_string(), "--dev-build".to_string()]).unwrap().unwrap();
        assert_eq!((o.log, o.dev_build), (Some(log::LevelFilter::Debug), true));
        assert!(parse_opts(&["--log".to_string(), "loud".to_string()]).is_err());
        assert!(parse_opts(&["--debug".to_string()]).is_err(), "renamed to --dev-build");
        assert_eq!(o.gdb_transport, GdbTransport::Virtio, "virtio-serial is the default gdb line");
        let uart = parse_opts(&["--gdb-transport".to_string(), "uart".to_string()]).unwrap().unwrap();
        assert_eq!(uart.gdb_transport, GdbTransport::Uart);
        assert!(parse_opts(&["--gdb-transport".to_string(), "tcp".to_string()]).is_err());
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse_opts(&args(&["--guest", "Image", "--initrd", "root.cpio"])).unwrap().unwrap();
        assert_eq!(o.initrds, [PathBuf::from("root.cpio")]);
        assert!(parse_opts(&args(&["--initrd", "root.cpio"])).is_err(), "an initrd needs its --guest");
        let o = parse_opts(&args(&["--arch", "aarch64", "--linux"])).unwrap().unwrap();
        assert_eq!(o.linux.map(|f| f.name), Some("cloud-arm64"));
        let o = parse_opts(&args(&["--arch", "aarch64", "--linux-flavour", "arm64"])).unwrap().unwrap();
        assert_eq!(o.linux.map(|f| f.name), Some("arm64"));
        assert!(parse_opts(&args(&["--arch", "aarch64", "--linux-flavour", "rt"])).is_err());
        let o = parse_opts(&args(&["--linux"])).unwrap().unwrap();
        assert_eq!(o.linux.map(|f| (f.name, f.debian_arch)), Some(("cloud-amd64", "amd64")));
        let o = parse_opts(&args(&["--linux-flavour", "amd64"])).unwrap().unwrap();
        assert_eq!(o.linux.map(|f| f.meta_package), Some("linux-image-amd64"));
        let o = parse_opts(&args(&["--linux32", "--arch", "x86_64"])).unwrap().unwrap();
        assert_eq!(o.linux.map(|f| (f.name, f.debian_arch)), Some(("686-pae", "i386")));
        let e = parse_opts(&args(&["--arch", "aarch64", "--linux32"])).unwrap_err();
        assert!(e.starts_with("--linux32") && e.contains("aarch64"), "{e}");
        let o = parse_opts(&args(&["--domain", "a.cfg", "--domain", "b.cfg"])).unwrap().unwrap();
        assert_eq!(o.domain_files, [PathBuf::from("a.cfg"), PathBuf::from("b.cfg")]);
    }
}
