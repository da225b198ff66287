//! `cargo xtask`: Lantern's front door — `run`, `test`, `gdb`, `bench`,
//! `abi`. Sets up what a fresh Debian machine lacks (rustup targets from
//! `rust-toolchain.toml`, QEMU and gdb-multiarch from Debian's packages)
//! before doing anything that needs it.

mod abi;
mod bench;
mod boards;
mod build;
mod bzimage;
mod clock_e2e;
mod console_e2e;
mod debug_e2e;
mod e2e;
mod fuzz;
mod gdb;
mod gdb_e2e;
mod gdb_session_e2e;
mod gdb_transport_e2e;
mod host;
mod isolation;
mod lifecycle_e2e;
mod linux;
mod linux_beside_e2e;
mod linux_e2e;
#[cfg(test)]
mod module_graph;
mod opts;
mod paths;
mod qemu;
mod report;
mod run;
mod setup;
mod summary;
mod xl_cfg;
mod xtf;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  run     boot Lantern in QEMU with the demo domains and a gdb port
  test    every test: host unit tests, then the QEMU + gdb scenarios on every
          board; ends with `N passed, N failed` (`--only GROUP`: one group,
          `--arch BOARD`: one board)
  bench   benchmarks (host guest-area benchmark; in-guest, gdb, Linux boot and
          hypercall-fuzzing figures per board; `--only linux` runs one)
  fuzz    N random hypercalls per guest layout beside a well-behaved domain
          (`--arch BOARD --calls N [--seed S]`), then the page audit
  abi     print the guest-ABI struct layouts (`--json` for machines)
  gdb     start gdb-multiarch attached to a running `cargo xtask run`
  xtf     run every test-hvm* image of a local Xen Test Framework build (DIR)
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
        "run" => run::cmd_run(rest),
        "gdb" => gdb::cmd_gdb(rest),
        "xtf" => xtf::cmd_xtf(rest),
        "fuzz" => fuzz::cmd_fuzz(rest),
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

/// One board's part of `cargo xtask test`: a heading and its test.
type BoardTest = (&'static str, &'static str, fn(&'static dyn boards::BoardSpec, &mut report::Tally));

/// Every board's end-to-end groups, in the order they run.
const BOARD_TESTS: &[BoardTest] = &[
    ("scenario", "QEMU scenarios", e2e::scenario_test),
    ("clock", "guest time against host wall time under a CPU hog", clock_e2e::clock_test),
    ("console", "the serial console (PV console rings, Ctrl-A switch, debug keys)", console_e2e::console_test),
    ("isolation", "a guest fault crashes only its own domain", isolation::isolation_test),
    (
        "attacks",
        "a hostile guest's attacks on another domain: refused, nothing leaks, the victim runs on",
        isolation::attack_test,
    ),
    (
        "lifecycle",
        "domain lifecycle (--domain files, restart on reboot, monitor restart/destroy)",
        lifecycle_e2e::lifecycle_test,
    ),
    ("gdb", "gdb on the live demo", gdb_e2e::live_test),
    ("wait-gdb", "gdb attached before the first guest instruction", gdb_e2e::wait_gdb_test),
    ("debugger", "breakpoints, hardware breakpoints, stepi, watchpoints on the live demo", debug_e2e::live_test),
    ("catch-syscall", "hypercall catchpoints from the first instruction", debug_e2e::catch_test),
    (
        "domain-session",
        "a domain's own gdb session on its own port, beside the running system",
        debug_e2e::session_test,
    ),
    (
        "gdb-transport",
        "the virtio-serial gdb line: a vanished client, 100,000 malformed packets",
        gdb_transport_e2e::transport_test,
    ),
    (
        "fuzz",
        "100,000 fuzzed hypercalls per guest layout beside a well-behaved domain, then the page audit",
        fuzz::fuzz_test,
    ),
    ("linux", "Debian's unmodified Linux", linux_e2e::linux_test),
    ("linux-beside", "Debian's Linux beside the scenario guest", linux_beside_e2e::linux_beside_test),
];

/// `cargo xtask test [--only GROUP] [--arch BOARD]`: everything, or (while
/// developing) only the host tests (`host`) or one end-to-end group, on
/// every board or (`--arch`) on one: a port's groups can then run without
/// the other boards' QEMU runs.
fn cmd_test(args: &[String]) -> CmdResult {
    let groups: Vec<&str> = std::iter::once("host").chain(BOARD_TESTS.iter().map(|t| t.0)).collect();
    let usage =
        || format!("usage: cargo xtask test [--only {}] [--arch {}]", groups.join("|"), boards::names("|", "|"));
    let (mut only, mut arch) = (None, None);
    let mut rest = args;
    while let [flag, value, tail @ ..] = rest {
        match flag.as_str() {
            "--only" if only.is_none() && groups.contains(&value.as_str()) => only = Some(value.as_str()),
            "--arch" if arch.is_none() => arch = Some(boards::by_name(value)?),
            _ => return Err(usage()),
        }
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(usage());
    }
    setup::ensure_rust_targets()?;
    setup::ensure_qemu_and_gdb()?;
    let mut tally = report::Tally::default();
    if only.is_none_or(|g| g == "host") {
        host::run_host_tests(&mut tally);
    }
    for &board in boards::all().iter().filter(|b| arch.is_none_or(|a| a.name() == b.name())) {
        for (group, heading, test) in BOARD_TESTS {
            if only.is_none_or(|g| g == *group) {
                println!("== {} board: {heading}", board.name());
                test(board, &mut tally);
            }
        }
    }
    tally.finish()
}

/// Loaded boots per board of `cargo xtask bench --only clock`.
const CLOCK_RUNS: usize = 10;

fn cmd_bench(args: &[String]) -> CmdResult {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", bench::usage());
        return Ok(());
    }
    let (boards, rest) = bench::selected_boards(args)?;
    let figures = bench::selected_figures(&rest)?;
    setup::ensure_rust_targets()?;
    setup::ensure_qemu_and_gdb()?;
    for figure in figures {
        match figure {
            bench::Figure::Host => host::run_host_bench()?,
            bench::Figure::Guest => boards.iter().try_for_each(|&board| bench::bench(board, 5))?,
            bench::Figure::Gdb => boards.iter().try_for_each(|&board| gdb_e2e::bench(board, 5))?,
            bench::Figure::Linux => boards.iter().try_for_each(|&board| bench::linux_bench(board, 3))?,
            bench::Figure::Fuzz => boards.iter().try_for_each(|&board| fuzz::fuzz_bench(board))?,
            bench::Figure::Clock => boards.iter().try_for_each(|&board| clock_e2e::bench(board, CLOCK_RUNS))?,
        }
    }
    Ok(())
}
