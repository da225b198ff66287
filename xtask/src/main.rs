//! `cargo xtask`: Lantern's front door — `run`, `test`, `gdb`, `bench`,
//! `abi`. Sets up what a fresh Debian machine lacks (rustup targets from
//! `rust-toolchain.toml`, QEMU and gdb-multiarch from Debian's packages)
//! before doing anything that needs it.

mod abi;
mod board;
mod board_arm;
mod board_x86;
mod e2e;
mod gdb;
mod gdb_e2e;
mod host;
mod isolation;
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
        "run" => board::cmd_run(rest),
        "gdb" => gdb::cmd_gdb(rest),
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
    for arch in [board::Arch::X86_64, board::Arch::Aarch64] {
        println!("== {} board: QEMU scenarios", board::label(arch));
        board::e2e_test(arch, &mut tally);
        println!("== {} board: a guest fault crashes only its own domain", board::label(arch));
        isolation::isolation_test(arch, &mut tally);
        println!("== {} board: gdb on the live demo", board::label(arch));
        gdb_e2e::live_test(arch, &mut tally);
        println!("== {} board: gdb attached before the first guest instruction", board::label(arch));
        gdb_e2e::wait_gdb_test(arch, &mut tally);
    }
    tally.finish()
}

fn cmd_bench(args: &[String]) -> CmdResult {
    if let Some(a) = args.first() {
        return Err(format!("`cargo xtask bench` takes no options yet (got `{a}`)"));
    }
    setup::ensure_rust_targets()?;
    setup::ensure_qemu_and_gdb()?;
    host::run_host_bench()?;
    board::bench(board::Arch::X86_64, 5)?;
    board::bench(board::Arch::Aarch64, 5)?;
    gdb_e2e::bench(board::Arch::X86_64, 5)?;
    gdb_e2e::bench(board::Arch::Aarch64, 5)?;
    Ok(())
}
