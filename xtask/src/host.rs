//! Host-side work: the workspace's unit and property tests, lint gates
//! (rustfmt, clippy on the host and both bare-metal targets), the ABI doc
//! check, and the host benchmark.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::report::{parse_cargo_test, Tally};
use crate::setup::root;
use crate::CmdResult;

/// Each bare-metal target with the crates that build for it (and must be
/// clippy-clean there): the arch-neutral crates everywhere, each arch's own
/// crates only on its target.
const BARE_METAL: [(&str, &[&str]); 3] = [
    (
        "x86_64-unknown-none",
        &[
            "lantern-xen-abi",
            "lantern-common",
            "lantern-gdb",
            "lantern-arch-x86",
            "lantern-platform-x86_64",
            "lantern-guest-x86_64",
        ],
    ),
    (
        "aarch64-unknown-none",
        &[
            "lantern-xen-abi",
            "lantern-common",
            "lantern-gdb",
            "lantern-arch-arm",
            "lantern-platform-aarch64",
            "lantern-guest-aarch64",
        ],
    ),
    // The 32-bit x86 test guest is built from the i686 Linux target's `core`.
    ("i686-unknown-linux-gnu", &["lantern-guest-x86_64"]),
];

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

    for (target, crates) in BARE_METAL {
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
