//! `cargo xtask`: Lantern's front door — `run`, `test`, `gdb`, `bench`,
//! `abi`. Sets up what a fresh Debian machine lacks (rustup targets from
//! `rust-toolchain.toml`, QEMU and gdb-multiarch from Debian's packages)
//! before doing anything that needs it.

mod abi;
mod board_arm;
mod board_x86;
mod e2e;
mod gdb;
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
    println!("== x86_64 board: QEMU scenarios");
    board_x86::e2e_test(&mut tally);
    println!("== arm64 board: QEMU scenarios");
    board_arm::e2e_test(&mut tally);
    println!("== arm64 board: gdb");
    board_arm::gdb_e2e_test(&mut tally);
    tally.finish()
}

fn cmd_bench(args: &[String]) -> CmdResult {
    if let Some(a) = args.first() {
        return Err(format!("`cargo xtask bench` takes no options yet (got `{a}`)"));
    }
    setup::ensure_rust_targets()?;
    setup::ensure_qemu_and_gdb()?;
    host::run_host_bench()?;
    board_x86::bench()?;
    board_arm::bench()?;
    Ok(())
}

/// `--arch` of a `run`/`gdb` command line: `x86_64` (default) or `aarch64`.
fn arch_of(args: &[String]) -> Result<&'static str, String> {
    match args.windows(2).find(|w| w[0] == "--arch").map(|w| w[1].as_str()) {
        None | Some("x86_64") => Ok("x86_64"),
        Some("aarch64") | Some("arm64") => Ok("aarch64"),
        Some(other) => Err(format!("unknown --arch `{other}` (x86_64 or aarch64)")),
    }
}

fn cmd_run(args: &[String]) -> CmdResult {
    setup::ensure_rust_targets()?;
    setup::ensure_qemu_and_gdb()?;
    // `--wait-gdb` is the boot-configuration word `gdb-wait`.
    let args: Vec<String> = args
        .iter()
        .flat_map(|a| {
            if a == "--wait-gdb" {
                vec!["--append".to_string(), "gdb-wait".to_string()]
            } else {
                vec![a.clone()]
            }
        })
        .collect();
    let announce = |arch: gdb::GdbArch, port: u16| {
        eprintln!(
            "xtask: gdb stub on 127.0.0.1:{port} — attach with `cargo xtask gdb --arch {} --gdb-port {port}`",
            arch.name()
        )
    };
    match arch_of(&args)? {
        "aarch64" => {
            let mut o = board_arm::parse_opts(&args)?;
            let port = *o.gdb_port.get_or_insert(gdb::GdbArch::Aarch64.default_port());
            announce(gdb::GdbArch::Aarch64, port);
            board_arm::run(&o)
        }
        _ => {
            let mut o = board_x86::parse_opts(&args)?;
            let port = *o.gdb_port.get_or_insert(gdb::GdbArch::X86_64.default_port());
            announce(gdb::GdbArch::X86_64, port);
            board_x86::run(&o)
        }
    }
}
