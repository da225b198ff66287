//! Host-side work: the workspace's unit and property tests, lint gates
//! (rustfmt, clippy on the host and every board's bare-metal targets), the
//! ABI doc check, and the host benchmark.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::paths::root;
use crate::report::{parse_cargo_test, Tally};
use crate::{boards, CmdResult};

/// The crates every board's hypervisor image is built from, whatever the
/// architecture.
const ARCH_NEUTRAL: [&str; 5] =
    ["lantern-xen-abi", "lantern-common", "lantern-gdb", "lantern-virtio-serial", "lantern-board"];

/// Each bare-metal target with the crates that build for it (and must be
/// clippy-clean there): on each board's image target, the arch-neutral
/// crates, the board's arch crate, its platform and the demo guests built
/// for that target; on a target only a demo guest uses (the 32-bit x86
/// guest is built from the i686 Linux target's `core`), that guest.
fn bare_metal_targets() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut targets: Vec<(&str, Vec<&str>)> = boards::all()
        .iter()
        .map(|b| {
            let mut crates = ARCH_NEUTRAL.to_vec();
            crates.extend([b.arch_crate(), b.kernel().package]);
            (b.kernel().target, crates)
        })
        .collect();
    for g in boards::all().iter().flat_map(|b| b.demo_guests()) {
        match targets.iter_mut().find(|(t, _)| *t == g.target) {
            Some((_, crates)) if crates.contains(&g.package) => {}
            Some((_, crates)) => crates.push(g.package),
            None => targets.push((g.target, vec![g.package])),
        }
    }
    targets
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd`, echoing its output, and returns (success, combined output).
fn run_echo(mut cmd: Command) -> (bool, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (false, format!("failed to start {cmd:?}: {e}")),
    };
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        println!("{line}");
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&err_thread.join().unwrap_or_default());
    let ok = child.wait().is_ok_and(|s| s.success());
    (ok, out)
}

/// Host tests plus lint gates, each recorded in `tally`.
pub fn run_host_tests(tally: &mut Tally) {
    println!("== host unit and property tests");
    // The workspace's default-members are exactly the host-testable crates
    // (the boards and guests are bare-metal binaries, built per target).
    let mut c = cargo();
    c.args(["test", "--color", "never"]);
    let (ok, out) = run_echo(c);
    let (passed, failed, binaries) = parse_cargo_test(&out);
    tally.add("host tests", passed, failed);
    if !ok && failed == 0 {
        tally.record("host tests build", false, "cargo test failed before running tests");
    }
    if binaries == 0 {
        tally.record("host tests", false, "no test binary ran");
    }

    println!("== lint gates");
    let mut c = cargo();
    c.args(["fmt", "--all", "--", "--check"]);
    let (ok, _) = run_echo(c);
    tally.record("rustfmt --check", ok, "run `cargo fmt --all`");

    let mut c = cargo();
    c.args(["clippy", "--all-targets", "--color", "never", "--", "-D", "warnings"]);
    let (ok, _) = run_echo(c);
    tally.record("clippy (host)", ok, "");

    for (target, crates) in bare_metal_targets() {
        let mut c = cargo();
        c.args(["clippy", "--target", target, "--color", "never"]);
        for p in crates {
            c.args(["-p", p]);
        }
        c.args(["--", "-D", "warnings"]);
        let (ok, _) = run_echo(c);
        tally.record(&format!("clippy ({target})"), ok, "");
    }

    match crate::abi::doc_is_current() {
        Ok(ok) => tally.record("docs/abi.md matches the layouts", ok, "run `cargo xtask abi --write-doc`"),
        Err(e) => tally.record("docs/abi.md matches the layouts", false, &e),
    }
}

/// `cargo xtask bench` (host part): the guest-area benchmark.
pub fn run_host_bench() -> CmdResult {
    let mut c = cargo();
    c.args(["bench", "-p", "lantern-conformance", "--bench", "guest_area"]);
    let (ok, _) = run_echo(c);
    if ok {
        Ok(())
    } else {
        Err("host benchmark failed".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every board's image target gets the arch-neutral crates, its arch
    /// crate, its platform and its demo guests; every target a demo guest is
    /// built for is linted with that guest; no target twice. (A property of
    /// the registry, so a new board needs no edit here.)
    #[test]
    fn lints_every_crate_on_each_board_target() {
        let targets = bare_metal_targets();
        let on = |t: &str| targets.iter().find(|(x, _)| *x == t).map(|(_, c)| c.clone()).unwrap_or_default();
        for b in boards::all() {
            let crates = on(b.kernel().target);
            for c in ARCH_NEUTRAL.iter().copied().chain([b.arch_crate(), b.kernel().package]) {
                assert!(crates.contains(&c), "{}: {c} not linted on {}", b.name(), b.kernel().target);
            }
            for g in b.demo_guests() {
                assert!(on(g.target).contains(&g.package), "{}: {} not linted on {}", b.name(), g.package, g.target);
            }
        }
        let mut names: Vec<&str> = targets.iter().map(|(t, _)| *t).collect();
        names.dedup();
        assert_eq!(names.len(), targets.len(), "a target listed twice: {targets:?}");
        // The registry as it stands: the 32-bit x86 guest's own target is linted too.
        assert!(on("i686-unknown-linux-gnu").contains(&"lantern-guest-x86_64"));
    }
}
