//! Making a fresh Debian machine ready: rustup targets listed in
//! `rust-toolchain.toml`, and every board's QEMU + gdb-multiarch from
//! Debian's packages. Anything that cannot be installed is a loud error,
//! never a skipped test.

use std::process::{Command, Stdio};

use crate::paths::root;
use crate::{boards, CmdResult};

fn toolchain_file() -> Result<(String, Vec<String>), String> {
    let path = root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut channel = String::new();
    let mut targets = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("channel") {
            channel = v.trim_start_matches([' ', '=']).trim().trim_matches('"').to_string();
        } else if let Some(v) = line.strip_prefix("targets") {
            let list = v.trim_start_matches([' ', '=']).trim().trim_start_matches('[').trim_end_matches(']');
            targets =
                list.split(',').map(|t| t.trim().trim_matches('"').to_string()).filter(|t| !t.is_empty()).collect();
        }
    }
    if channel.is_empty() || targets.is_empty() {
        return Err(format!("{}: no channel or targets", path.display()));
    }
    Ok((channel, targets))
}

/// Adds the toolchain's targets that rustup has not installed yet.
pub fn ensure_rust_targets() -> CmdResult {
    let (channel, targets) = toolchain_file()?;
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed", "--toolchain", &channel])
        .output()
        .map_err(|e| format!("rustup not found ({e}); install Rust with rustup"))?;
    let installed = String::from_utf8_lossy(&installed.stdout).to_string();
    let missing: Vec<&String> = targets.iter().filter(|t| !installed.lines().any(|l| l.trim() == t.as_str())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: adding rust targets {missing:?} to toolchain {channel}");
    let ok = Command::new("rustup")
        .args(["target", "add", "--toolchain", &channel])
        .args(missing.iter().map(|s| s.as_str()))
        .status()
        .map_err(|e| e.to_string())?
        .success();
    if ok {
        Ok(())
    } else {
        Err("rustup target add failed".into())
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure every board's QEMU binary and `gdb-multiarch` exist,
/// installing Debian's packages when missing (as root).
pub fn ensure_qemu_and_gdb() -> CmdResult {
    let mut tools: Vec<&str> = boards::all().iter().map(|b| b.qemu_binary()).collect();
    tools.push("gdb-multiarch");
    if tools.iter().all(|t| have(t)) {
        return Ok(());
    }
    let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    let sudo: &[&str] = if is_root { &[] } else { &["sudo"] };
    eprintln!("xtask: installing QEMU and gdb-multiarch from Debian's packages");
    let run = |args: &[&str]| -> CmdResult {
        let mut full: Vec<&str> = sudo.to_vec();
        full.extend_from_slice(args);
        let st = Command::new(full[0])
            .args(&full[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", full.join(" ")))?;
        if st.success() {
            Ok(())
        } else {
            Err(format!("`{}` failed ({st})", full.join(" ")))
        }
    };
    run(&["apt-get", "update"])?;
    let mut install = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    for b in boards::all() {
        if !install.contains(&b.qemu_package()) {
            install.push(b.qemu_package());
        }
    }
    install.push("gdb-multiarch");
    run(&install)?;
    match tools.iter().find(|t| !have(t)) {
        Some(t) => Err(format!("{t} is still missing after installing Debian's packages")),
        None => Ok(()),
    }
}
