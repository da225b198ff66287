//! Building what a boot needs: the hypervisor image and the guests (cargo,
//! for the board's targets), the boot module (every guest image in one newc
//! cpio archive) and the hypervisor command line (boot configuration plus
//! the board's own words).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use lantern_common::boot_config::{BootConfig, DomainSpec};
use lantern_common::cpio;

use crate::boards::BoardSpec;
use crate::opts::Opts;
use crate::paths::{root, target_dir};

/// Default guest memory per domain.
pub const DEMO_MEM: u64 = 32 << 20;

/// What [`build`] produced.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The hypervisor ELF.
    pub kernel: PathBuf,
    /// The boot module: every guest image in one newc cpio archive.
    pub module: PathBuf,
    /// Its size in bytes.
    pub module_len: u64,
    /// QEMU's RAM: the domains' total plus the hypervisor's own.
    pub ram_bytes: u64,
    /// The hypervisor command line (boot configuration + board words).
    pub cmdline: String,
    /// `(domain id, domain name)` of every domain, in order.
    pub domains: Vec<(u16, String)>,
}

/// Runs `cargo build` with `args` and returns the path of the executable it
/// produced (the last `compiler-artifact` of cargo's JSON messages).
pub fn cargo_build_executable(args: &[&str]) -> Result<PathBuf, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(["build", "--message-format=json-render-diagnostics"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build {} failed", args.join(" ")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let key = "\"executable\":\"";
    text.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let start = l.find(key)? + key.len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .next_back()
        .ok_or_else(|| format!("cargo build {} produced no executable", args.join(" ")))
}

/// Builds a test-guest crate (`tests/guests/<dir>`) in release for `target`.
pub fn build_guest(dir: &str, target: &str) -> Result<PathBuf, String> {
    let manifest = root().join("tests/guests").join(dir).join("Cargo.toml");
    let manifest = manifest.to_str().ok_or("non-UTF-8 path")?.to_string();
    cargo_build_executable(&["--manifest-path", &manifest, "--release", "--target", target])
}

/// Builds `board`'s demo guests: `(image name, ELF)` per demo domain.
pub fn build_demo_guests(board: &dyn BoardSpec) -> Result<Vec<(String, PathBuf)>, String> {
    board.demo_guests().iter().map(|g| Ok((g.image.to_string(), build_guest(g.crate_dir, g.target)?))).collect()
}

/// `board`'s scratch directory under the target directory.
pub fn work_dir(board: &dyn BoardSpec) -> PathBuf {
    target_dir().join(board.scratch_dir())
}

/// Builds the hypervisor and the guests, writes the boot module and computes
/// the command line.
pub fn build(opts: &Opts) -> Result<Artifacts, String> {
    let board = opts.board;
    let image = board.kernel();
    let mut args = vec!["-p", image.package, "--target", image.target];
    if !opts.dev_build {
        args.push("--release");
    }
    let kernel = cargo_build_executable(&args)?;
    // The shorthand (demo guests, --guest/--linux) first, then each
    // --domain file; only the demo when neither gives a domain.
    let xl: Vec<crate::xl_cfg::XlDomain> =
        opts.domain_files.iter().map(|f| crate::xl_cfg::read(f)).collect::<Result<_, _>>()?;
    let demo = opts.guests.is_empty() && xl.is_empty();
    let mut guests: Vec<(String, PathBuf)> = if demo {
        build_demo_guests(board)?
    } else {
        opts.guests
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let stem = p.file_name().and_then(|s| s.to_str()).unwrap_or("guest");
                Ok((format!("{}-{stem}", i + 1), board.guest_kernel(p)?))
            })
            .collect::<Result<_, String>>()?
    };
    if let Some(n) = opts.demo_domains {
        guests.truncate(n.max(1));
    }
    // Every file in the archive: `(name in the archive, path)`.
    let mut files: Vec<(String, PathBuf)> = guests.clone();
    // The Nth initrd travels in the archive beside the Nth guest.
    let mut initrds = Vec::new();
    for (i, path) in opts.initrds.iter().enumerate() {
        let name = format!("{}-initrd", i + 1);
        files.push((name.clone(), path.clone()));
        initrds.push(name);
    }
    let mut cfg = BootConfig { exit_when_done: opts.exit, log_level: opts.log, ..BootConfig::default() };
    let grant_pair = demo && guests.len() >= 2;
    for (i, (name, _)) in guests.iter().enumerate() {
        let mut d = DomainSpec::new(name);
        d.initrd = initrds.get(i).cloned();
        d.vcpus = opts.vcpus.unwrap_or(if demo { board.demo_vcpus() } else { 1 });
        d.mem_bytes = opts.mem.unwrap_or(DEMO_MEM);
        let mut cmd: Vec<&str> = opts.guest_cmdline.iter().map(String::as_str).collect();
        if demo && !opts.exit {
            // The demo guests stay alive after their checks (for gdb).
            cmd.push("linger");
        }
        if let Some(w) = grant_words(grant_pair, i) {
            cmd.push(w);
        }
        cmd.extend(opts.domain_words.iter().filter(|(d, _)| usize::from(*d) == i + 1).map(|(_, w)| w.as_str()));
        d.cmdline = cmd.join(" ");
        cfg.domains.push(d);
    }
    for x in &xl {
        let id = cfg.domains.len() + 1;
        let stem = x.kernel.file_name().and_then(|s| s.to_str()).unwrap_or("kernel");
        let image = format!("{id}-{stem}");
        files.push((image.clone(), board.guest_kernel(&x.kernel)?));
        let initrd = x.ramdisk.as_ref().map(|r| {
            files.push((format!("{id}-initrd"), r.clone()));
            format!("{id}-initrd")
        });
        if !x.ignored.is_empty() {
            eprintln!("xtask: d{id} ({}): ignoring keys Lantern does not read: {}", x.name, x.ignored.join(", "));
        }
        cfg.domains.push(DomainSpec {
            name: x.name.clone(),
            vcpus: x.vcpus,
            mem_bytes: x.mem_bytes,
            initrd,
            cmdline: x.cmdline.clone(),
            on_poweroff: x.on_poweroff,
            on_reboot: x.on_reboot,
            on_crash: x.on_crash,
            ..DomainSpec::new(&image)
        });
    }
    let mut contents = Vec::new();
    for (name, path) in &files {
        let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        contents.push((name.clone(), data));
    }
    let refs: Vec<(&str, &[u8])> = contents.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let archive = cpio::write_newc(&refs);
    let module_len = archive.len() as u64;
    let sizes: Vec<(String, u64)> = cfg.domains.iter().map(|d| (d.name.clone(), d.mem_bytes)).collect();
    let ram_bytes = crate::boards::ram_for(board, &sizes, module_len)?;
    let mut words = board.boot_words(module_len, ram_bytes)?;
    let dir = work_dir(board);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let module = dir.join("boot.cpio");
    std::fs::write(&module, &archive).map_err(|e| format!("writing {}: {e}", module.display()))?;

    let rest = cfg.to_cmdline();
    if !rest.is_empty() {
        words.push(rest);
    }
    if opts.wait_gdb {
        words.push("gdb-wait".into());
    }
    words.extend(opts.append.iter().cloned());
    let domains = cfg.domains.iter().enumerate().map(|(i, d)| (i as u16 + 1, d.name.clone())).collect();
    Ok(Artifacts { kernel, module, module_len, ram_bytes, cmdline: words.join(" "), domains })
}

/// The scenario's grant-table roles of demo domain `index` (from 0) when the
/// demo runs at least two domains: d1 grants to d2, d2 maps d1's grants.
pub fn grant_words(pair: bool, index: usize) -> Option<&'static str> {
    match (pair, index) {
        (true, 0) => Some("grant-to=2"),
        (true, 1) => Some("grant-from=1"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::grant_words;

    #[test]
    fn demo_pairs_grant_from_d1_to_d2() {
        assert_eq!(grant_words(true, 0), Some("grant-to=2"));
        assert_eq!(grant_words(true, 1), Some("grant-from=1"));
        assert_eq!(grant_words(true, 2), None);
        assert_eq!(grant_words(false, 0), None);
    }
}
