//! `cargo xtask`: Lantern's front door — `run`, `test`, `gdb`, `bench`,
//! `abi`. Sets up what a fresh Debian machine lacks (rustup targets from
//! `rust-toolchain.toml`, QEMU and gdb-multiarch from Debian's packages)
//! before doing anything that needs it.

mod abi;
mod host;
mod report;
mod setup;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  run     boot Lantern in QEMU with the demo domains and a gdb port
  test    every test: host unit tests, then the QEMU + gdb scenarios on both
          architectures; ends with `N passed, N failed`
  bench   benchmarks (host guest-area benchmark; in-guest figures per board)
  abi     print the guest-ABI struct layouts (`--json` for machines)
  gdb     start gdb-multiarch attached to a running `cargo xtask run`
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        "test" => cmd_test(rest),
        "abi" => abi::cmd_abi(rest),
        "bench" => cmd_bench(rest),
        "run" => cmd_run(rest),
        "gdb" => Err("no board exists yet: `cargo xtask gdb` needs a running `cargo xtask run`".into()),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Result type for commands: a message for the user on failure.
pub type CmdResult = Result<(), String>;

fn cmd_test(args: &[String]) -> CmdResult {
    if let Some(a) = args.first() {
        return Err(format!("`cargo xtask test` takes no options (got `{a}`)"));
    }
    setup::ensure_rust_targets()?;
    setup::ensure_qemu_and_gdb()?;
    let mut tally = report::Tally::default();
    host::run_host_tests(&mut tally);
    tally.finish()
}

fn cmd_bench(args: &[String]) -> CmdResult {
    if let Some(a) = args.first() {
        return Err(format!("`cargo xtask bench` takes no options yet (got `{a}`)"));
    }
    host::run_host_bench()
}

fn cmd_run(_args: &[String]) -> CmdResult {
    Err("no board exists yet: the x86_64 and arm64 boards are being built (issues 3 and 5); \
         until they land, `cargo xtask test` runs the host tests"
        .into())
}
