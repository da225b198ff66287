//! Real Linux guests from Debian's packages: resolves the kernel version a
//! Debian meta package points at today (`apt-cache depends`, since Debian
//! replaces kernel versions), downloads the kernel and `busybox-static` for
//! the guest's Debian architecture (`apt-get download`, adding the foreign
//! architecture first when needed), unpacks them under `target/linux/`
//! (cached; never committed), and builds a small initramfs whose `/init`
//! reports what the guest sees of its world and then gives a shell.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lantern_common::cpio::{self, MODE_DIR, MODE_EXECUTABLE};

use crate::paths::target_dir;

/// A Debian kernel a board can boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flavour {
    /// Short name, also the cache directory (`cloud-arm64`).
    pub name: &'static str,
    /// Debian architecture of its packages (`arm64`).
    pub debian_arch: &'static str,
    /// The meta package whose dependency names today's kernel package.
    pub meta_package: &'static str,
    /// The kernel command line `run --linux` gives it (before
    /// `--guest-cmdline`): the console on the Xen PV console, early
    /// messages through `console_io` by the architecture's own option.
    pub cmdline: &'static str,
    /// The guest ABI layout the kernel registers its areas in (its
    /// word size: `x86_32` for the 32-bit kernel).
    pub layout: &'static str,
}

/// Debian bookworm's arm64 cloud kernel.
pub const CLOUD_ARM64: Flavour = Flavour {
    name: "cloud-arm64",
    debian_arch: "arm64",
    meta_package: "linux-image-cloud-arm64",
    cmdline: KERNEL_CMDLINE,
    layout: "arm64",
};
/// Debian bookworm's generic arm64 kernel.
pub const GENERIC_ARM64: Flavour = Flavour {
    name: "arm64",
    debian_arch: "arm64",
    meta_package: "linux-image-arm64",
    cmdline: KERNEL_CMDLINE,
    layout: "arm64",
};
/// Debian bookworm's amd64 cloud kernel (a bzImage; the x86 board's
/// default).
pub const CLOUD_AMD64: Flavour = Flavour {
    name: "cloud-amd64",
    debian_arch: "amd64",
    meta_package: "linux-image-cloud-amd64",
    cmdline: X86_KERNEL_CMDLINE,
    layout: "x86_64",
};
/// Debian bookworm's generic amd64 kernel (a bzImage, xz payload).
pub const GENERIC_AMD64: Flavour = Flavour {
    name: "amd64",
    debian_arch: "amd64",
    meta_package: "linux-image-amd64",
    cmdline: X86_KERNEL_CMDLINE,
    layout: "x86_64",
};
/// Debian bookworm's 32-bit PAE kernel, with i386 busybox (`--linux32`).
pub const PAE_686: Flavour = Flavour {
    name: "686-pae",
    debian_arch: "i386",
    meta_package: "linux-image-686-pae",
    cmdline: X86_KERNEL_CMDLINE,
    layout: "x86_32",
};

/// What one flavour's set-up produced.
#[derive(Clone, Debug)]
pub struct LinuxGuest {
    /// The kernel as Debian ships it (`/boot/vmlinuz-*`).
    pub kernel: PathBuf,
    /// The initramfs built around busybox.
    pub initramfs: PathBuf,
    /// The kernel package it came from (with its version).
    pub package: String,
    /// Its flavour's kernel command line ([`Flavour::cmdline`]).
    pub cmdline: &'static str,
}

/// The arm64 kernels' command line (the console on the Xen PV console;
/// early messages through `console_io`, the `xenboot` earlycon).
pub const KERNEL_CMDLINE: &str = "console=hvc0 earlycon=xenboot";
/// The x86 kernels' command line: the same console; x86 Linux's early
/// console on Xen is `earlyprintk=xen` (`console_io` too).
pub const X86_KERNEL_CMDLINE: &str = "console=hvc0 earlyprintk=xen";
/// Guest memory `run --linux` gives unless `--mem` says otherwise.
pub const DEFAULT_MEM: u64 = 256 << 20;

/// The first word an init prints, so tests and people find its report.
pub const INIT_BANNER: &str = "LANTERN-LINUX";
/// What `/init` prints just before it starts the shell.
pub const SHELL_BANNER: &str = "LANTERN-LINUX shell";
/// The line `/init` prints first, as soon as it has a console (before it
/// looks at anything, so it appears with or without a hypervisor): the end
/// of the boot that `cargo xtask bench` times.
pub const INIT_FIRST_LINE: &str = "LANTERN-LINUX init up";

/// The `/init` of the initramfs. It prints [`INIT_FIRST_LINE`] once the
/// console is open, mounts the pseudo file systems, prints one report line (CPUs online, the hypervisor type Linux detected, the
/// Xen event-channel interrupt count, whether its clock advances), and then
/// either powers off (`lantern.test` on the kernel command line; after
/// `lantern.hold=S` seconds if given; `lantern.reboot` reboots instead) or
/// starts a shell on the console.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
echo "LANTERN-LINUX init up"
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
hyp=$(cat /sys/hypervisor/type 2>/dev/null || echo none)
events=$(awk '/ events$|xen/ {for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i} END {print n + 0}' /proc/interrupts)
t0=$(cut -d' ' -f1 /proc/uptime)
sleep 1
t1=$(cut -d' ' -f1 /proc/uptime)
clock=stopped
[ "$t0" != "$t1" ] && clock=advancing
echo "LANTERN-LINUX cpus=$(grep -c ^processor /proc/cpuinfo) online=$(cat /sys/devices/system/cpu/online) hypervisor=$hyp xen_events=$events clock=$clock"
if grep -qw lantern.test /proc/cmdline; then
    cat /proc/interrupts
    # lantern.hold=S: stay up S seconds first (a debugger looks meanwhile).
    hold=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^lantern.hold=//p')
    [ -n "$hold" ] && sleep "$hold"
    # lantern.reboot: end with a reboot (PSCI SYSTEM_RESET) instead.
    grep -qw lantern.reboot /proc/cmdline && reboot -f
    poweroff -f
fi
echo "LANTERN-LINUX shell (poweroff -f ends the domain)"
exec setsid cttyhack sh
"#;

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Makes `arch` installable: adds it as a foreign architecture (and
/// refreshes the package lists) unless it is the machine's own or already
/// added.
fn ensure_architecture(arch: &str) -> Result<(), String> {
    let native = run(Command::new("dpkg").arg("--print-architecture"))?;
    let foreign = run(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if native.trim() == arch || foreign.lines().any(|l| l.trim() == arch) {
        return Ok(());
    }
    eprintln!("xtask: adding Debian architecture {arch} (dpkg --add-architecture; apt-get update)");
    run(&mut as_root(&["dpkg", "--add-architecture", arch]))?;
    run(&mut as_root(&["apt-get", "update"]))?;
    Ok(())
}

/// `args` as a command run as root (through `sudo` unless we are root).
fn as_root(args: &[&str]) -> Command {
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = Command::new(if is_root { args[0] } else { "sudo" });
    cmd.args(if is_root { &args[1..] } else { args });
    cmd
}

/// The package `meta` depends on today, from `apt-cache depends` output.
pub fn dependency_of(depends_output: &str, prefix: &str) -> Option<String> {
    depends_output.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        let name = dep.split(':').next()?.trim();
        name.starts_with(prefix).then(|| name.to_string())
    })
}

/// Downloads `package:arch` into `dir` (unless a `.deb` of it is there) and
/// unpacks it into `dir/root`.
fn fetch(package: &str, arch: &str, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let is_it = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
    };
    let listed = |dir: &Path| -> Result<Vec<PathBuf>, String> {
        Ok(std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten().map(|e| e.path()).collect())
    };
    let mut debs: Vec<PathBuf> = listed(dir)?.into_iter().filter(|p| is_it(p)).collect();
    if debs.is_empty() {
        eprintln!("xtask: downloading {package}:{arch} from Debian's packages");
        run(Command::new("apt-get").args(["download", &format!("{package}:{arch}")]).current_dir(dir))?;
        debs = listed(dir)?.into_iter().filter(|p| is_it(p)).collect();
    }
    let deb =
        debs.first().ok_or_else(|| format!("apt-get download {package}:{arch} left no .deb in {}", dir.display()))?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.join("root")))?;
    Ok(())
}

/// The initramfs: `/init`, busybox, and the directories they need.
pub fn initramfs(busybox: &[u8]) -> Vec<u8> {
    cpio::write_newc_entries(&[
        ("bin", MODE_DIR, &[]),
        ("dev", MODE_DIR, &[]),
        ("proc", MODE_DIR, &[]),
        ("sys", MODE_DIR, &[]),
        ("bin/busybox", MODE_EXECUTABLE, busybox),
        ("init", MODE_EXECUTABLE, INIT.as_bytes()),
    ])
}

/// Sets up `flavour`: today's kernel package and busybox-static, cached
/// under `target/linux/<name>/`, and the initramfs. A failed download is an
/// error, never a skip.
pub fn prepare(flavour: &Flavour) -> Result<LinuxGuest, String> {
    ensure_architecture(flavour.debian_arch)?;
    let arch = flavour.debian_arch;
    let depends = run(Command::new("apt-cache").args(["depends", &format!("{}:{arch}", flavour.meta_package)]))?;
    let package = dependency_of(&depends, "linux-image-")
        .ok_or_else(|| format!("apt-cache depends {}:{arch} names no linux-image package", flavour.meta_package))?;
    let dir = target_dir().join("linux").join(flavour.name);
    fetch(&package, arch, &dir.join(&package))?;
    fetch("busybox-static", arch, &dir.join("busybox-static"))?;
    let boot = dir.join(&package).join("root/boot");
    let kernel = std::fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))
        .ok_or_else(|| format!("{package} has no /boot/vmlinuz-*"))?;
    let busybox_path = dir.join("busybox-static/root/bin/busybox");
    let busybox = std::fs::read(&busybox_path).map_err(|e| format!("{}: {e}", busybox_path.display()))?;
    let initramfs = dir.join("initramfs.cpio");
    std::fs::write(&initramfs, self::initramfs(&busybox)).map_err(|e| format!("{}: {e}", initramfs.display()))?;
    Ok(LinuxGuest { kernel, initramfs, package, cmdline: flavour.cmdline })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_todays_kernel_package() {
        let out = "linux-image-cloud-arm64:arm64\n  Depends: linux-image-6.1.0-57-cloud-arm64:arm64\n";
        assert_eq!(dependency_of(out, "linux-image-").as_deref(), Some("linux-image-6.1.0-57-cloud-arm64"));
        assert_eq!(dependency_of("linux-image-cloud-arm64\n", "linux-image-"), None);
        let out = "linux-image-686-pae:i386\n  Depends: linux-image-6.1.0-57-686-pae:i386\n";
        assert_eq!(dependency_of(out, "linux-image-").as_deref(), Some("linux-image-6.1.0-57-686-pae"));
    }

    #[test]
    fn the_initramfs_holds_init_and_busybox_with_their_directories_first() {
        let a = initramfs(b"\x7fELF...");
        let all: Vec<_> = cpio::entries(&a).collect::<Result<_, _>>().unwrap();
        let names: Vec<_> = all.iter().map(|e| e.name).collect();
        let bin = names.iter().position(|n| *n == "bin").unwrap();
        assert!(bin < names.iter().position(|n| *n == "bin/busybox").unwrap(), "a directory before what it holds");
        let init = all.iter().find(|e| e.name == "init").unwrap();
        assert_eq!(init.mode, MODE_EXECUTABLE);
        assert!(init.data.starts_with(b"#!/bin/busybox sh\n"));
        assert!(String::from_utf8_lossy(init.data).contains(INIT_BANNER));
    }

    #[test]
    fn init_prints_its_first_line_before_anything_else() {
        // The console is only sure to be open after the redirect (the
        // initramfs holds no /dev/console node): the first line is the
        // first echo right after it.
        let first_echo = INIT.lines().find(|l| l.starts_with("echo ")).unwrap();
        assert_eq!(first_echo, format!("echo \"{INIT_FIRST_LINE}\""));
        let before: Vec<_> = INIT.lines().take_while(|l| !l.starts_with("echo ")).collect();
        assert_eq!(before.last(), Some(&"exec </dev/console >/dev/console 2>&1"), "the line right after the redirect");
        assert!(INIT_FIRST_LINE.starts_with(INIT_BANNER) && !INIT_FIRST_LINE.contains("cpus="));
    }
}
