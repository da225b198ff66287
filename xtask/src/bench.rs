//! A board's in-guest figures for `cargo xtask bench`: timed boots of one
//! demo domain with `cmdline=bench`, its `BENCH` lines (hypercall round
//! trips, their ratio to a bare trap), boot times, and the hypervisor's own
//! round trip where the board has a `selftest` boot word; and the Linux
//! boot figure: Debian's kernel under Lantern against the same kernel and
//! initramfs booted directly in QEMU. Which figures run is `--only`'s.

use std::process::Command;
use std::time::Duration;

use crate::boards::{BareLinux, BoardSpec};
use crate::build::build;
use crate::e2e;
use crate::linux::{self, LinuxGuest, INIT_FIRST_LINE};
use crate::opts::Opts;
use crate::qemu::qemu_command;
use crate::run::{boot_timed, time_to_line};

/// The figures of `cargo xtask bench`, as `--only` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    /// The host guest-area mechanism benchmark.
    Host,
    /// Each board's in-guest hypercall round trips and boot times.
    Guest,
    /// Each board's gdb stub figures.
    Gdb,
    /// Each board's Linux boot, under Lantern and on bare QEMU.
    Linux,
    /// Each board's in-guest hypercall fuzzing: a million calls per
    /// layout, with calls/s.
    Fuzz,
    /// Each board's clock under a CPU hog over repeated boots (only when
    /// named: it loads every host CPU for minutes).
    Clock,
}

impl Figure {
    /// Every figure, in the order `cargo xtask bench` runs them.
    pub const ALL: [Figure; 6] = [Figure::Host, Figure::Guest, Figure::Gdb, Figure::Linux, Figure::Fuzz, Figure::Clock];
    /// What `cargo xtask bench` without `--only` runs.
    pub const DEFAULT: [Figure; 5] = [Figure::Host, Figure::Guest, Figure::Gdb, Figure::Linux, Figure::Fuzz];

    /// The name `--only` takes.
    pub fn name(self) -> &'static str {
        match self {
            Figure::Host => "host",
            Figure::Guest => "guest",
            Figure::Gdb => "gdb",
            Figure::Linux => "linux",
            Figure::Fuzz => "fuzz",
            Figure::Clock => "clock",
        }
    }
}

/// The usage line of `cargo xtask bench`.
pub fn usage() -> String {
    let names: Vec<&str> = Figure::ALL.iter().map(|f| f.name()).collect();
    format!(
        "usage: cargo xtask bench [--arch BOARD] [--only FIGURE[,FIGURE...]] (figures: {}; default all but clock; \
         boards: every board unless --arch names some)",
        names.join(", ")
    )
}

/// The figures `cargo xtask bench ARGS` runs: all of them, or those
/// `--only a,b` names (repeatable), in [`Figure::ALL`]'s order.
/// The boards `--arch NAME` (repeatable) names, every board without one,
/// and the other arguments.
pub fn selected_boards(args: &[String]) -> Result<(Vec<&'static dyn BoardSpec>, Vec<String>), String> {
    let (mut boards, mut rest) = (Vec::new(), Vec::new());
    let mut args = args.iter();
    while let Some(a) = args.next() {
        if a == "--arch" {
            let name = args.next().ok_or_else(|| format!("`--arch` needs a board; {}", usage()))?;
            boards.push(crate::boards::by_name(name).map_err(|e| format!("{e}; {}", usage()))?);
        } else {
            rest.push(a.clone());
        }
    }
    if boards.is_empty() {
        boards = crate::boards::all().to_vec();
    }
    Ok((boards, rest))
}

pub fn selected_figures(args: &[String]) -> Result<Vec<Figure>, String> {
    let mut named: Vec<Figure> = Vec::new();
    let mut args = args.iter();
    while let Some(a) = args.next() {
        let list = match a.as_str() {
            "--only" => args.next().ok_or_else(|| format!("`--only` needs a figure; {}", usage()))?.as_str(),
            other => match other.strip_prefix("--only=") {
                Some(list) => list,
                None => return Err(format!("unknown option `{other}`; {}", usage())),
            },
        };
        for name in list.split(',') {
            let f = Figure::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| format!("unknown figure `{name}`; {}", usage()))?;
            named.push(f);
        }
    }
    if named.is_empty() {
        return Ok(Figure::DEFAULT.to_vec());
    }
    Ok(Figure::ALL.into_iter().filter(|f| named.contains(f)).collect())
}

/// `BENCH name=N ... ns_per_call=X` lines → `(name, ns_per_call)`.
fn bench_lines(lines: &[String]) -> Vec<(String, f64)> {
    lines
        .iter()
        .filter_map(|l| {
            let (_, body) = e2e::domain_line(l)?;
            let rest = body.strip_prefix("BENCH ")?;
            let kv = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k)?.strip_prefix('='));
            Some((kv("name")?.to_string(), kv("ns_per_call")?.parse().ok()?))
        })
        .collect()
}

/// `(min, median)` of `v` (NaN when empty).
pub fn min_median(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v.first().copied().unwrap_or(f64::NAN), v.get(v.len() / 2).copied().unwrap_or(f64::NAN))
}

/// A board's figures for `cargo xtask bench`: `runs` boots of one demo
/// domain with `cmdline=bench` (the other domain would share the CPU); the
/// guest's in-guest round trips (bare trap, `xen_version`,
/// `register_vcpu_info`) and the ratio to the bare trap; QEMU start → first
/// guest line → last shutdown.
pub fn bench(board: &'static dyn BoardSpec, runs: usize) -> Result<(), String> {
    let o = Opts {
        exit: true,
        timeout: Some(240),
        guest_cmdline: Some("bench".into()),
        demo_domains: Some(1),
        ..Opts::on(board)
    };
    let a = build(&o)?;
    let clean = board.exit_statuses().clean;
    let mut per_name: Vec<(String, Vec<f64>)> = Vec::new();
    let (mut first, mut last, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t = boot_timed(&o, &a, false)?;
        if t.status != Some(clean) || t.summary().verdict != Some(true) {
            let tail: Vec<&String> = t.lines.iter().rev().take(15).collect();
            return Err(format!("{} bench run {i} did not end cleanly ({:?}): {tail:?}", board.name(), t.status));
        }
        let lines = bench_lines(&t.lines);
        let bare = lines.iter().find(|(n, _)| n == "bare_trap").map(|(_, ns)| *ns);
        let mut record = |n: String, x: f64| match per_name.iter_mut().find(|(m, _)| *m == n) {
            Some((_, v)) => v.push(x),
            None => per_name.push((n, vec![x])),
        };
        for (n, ns) in lines {
            // The ratio within one boot: both ran under the same host load.
            if let (Some(b), true) = (bare, n != "bare_trap") {
                record(format!("`{n}` / bare trap (same boot)"), ns / b);
            }
            record(format!("in-guest `{n}` round trip"), ns);
        }
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        first.push(ms(t.first_guest_line));
        last.push(ms(t.last_shutdown));
        total.push(ms(Some(t.total)));
    }
    let vcpus = board.demo_vcpus();
    println!(
        "== {} board: one domain ({}, {vcpus} vCPUs, cmdline=bench), {runs} boots; min / median",
        board.name(),
        a.domains[0].1
    );
    println!("| figure | min | median |");
    println!("|---|---|---|");
    per_name.sort_by_key(|(n, _)| n.contains(" / "));
    for (n, v) in &per_name {
        let (lo, med) = min_median(v);
        if n.contains(" / ") {
            println!("| {n} | {lo:.2}x | {med:.2}x |");
        } else {
            println!("| {n} | {lo:.0} ns | {med:.0} ns |");
        }
    }
    for (what, v) in [
        ("QEMU start -> first guest line", &first),
        ("QEMU start -> last shutdown", &last),
        ("QEMU start -> exit", &total),
    ] {
        let (lo, med) = min_median(v);
        println!("| {what} | {lo:.0} ms | {med:.0} ms |");
    }
    if board.bench().selftest {
        // The hypervisor's own hypercall round trip, without any guest
        // kernel: the `selftest` boot word runs raw guests.
        let st = Opts { exit: true, timeout: Some(60), append: vec!["selftest".into()], ..Opts::on(board) };
        let t = boot_timed(&st, &build(&st)?, false)?;
        for l in t.lines.iter().filter(|l| l.contains("round trip")) {
            println!("selftest: {l}");
        }
    }
    Ok(())
}

/// vCPU counts of the Linux boot figure.
const LINUX_VCPU_COUNTS: [u32; 3] = [1, 2, 4];
/// vCPU counts of the Linux boot figure's rows with [`PRESET_LPJ`] (and the
/// board's wide-SMP count).
const LPJ_VCPU_COUNTS: [u32; 1] = [4];
/// `lpj=` on both kernels' command lines in the figure's last rows: every
/// CPU takes this loops-per-jiffy instead of calibrating its delay loop. On
/// x86 without an invariant TSC (QEMU's TCG CPU has none) each application
/// processor calibrates on the boot CPU's ticks, which, with the vCPUs
/// sharing one CPU, is where an SMP boot spends most of its extra time; the
/// rows show the rest. The value only scales `udelay` (about this machine's
/// TSC rate over HZ = 250).
const PRESET_LPJ: &str = "lpj=10000000";
/// Upper bound for one Linux boot to its init under TCG on a busy 2-core
/// machine (~5–10 s alone).
const LINUX_LIMIT: Duration = Duration::from_secs(180);

/// Which TCG the bare-QEMU side of the Linux figure runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// `-accel tcg,thread=single`: one host thread for every vCPU, as
    /// Lantern's QEMU runs (its machine has one CPU): the hypervisor's own
    /// overhead.
    SingleThreadedTcg,
    /// QEMU's default (multi-threaded TCG, a host thread per vCPU): what a
    /// user would get instead of Lantern.
    Default,
}

/// The QEMU command that boots `kernel` with `initrd` and `vcpus` CPUs
/// directly on the board's machine (no hypervisor): the board's `-cpu`,
/// the console on stdio, Linux's console on the board's UART. An error if
/// the board names no `-cpu` or no bare-Linux machine.
pub fn bare_linux_command(
    board: &dyn BoardSpec,
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    vcpus: u32,
    mem: u64,
    accel: Accel,
    extra: &str,
) -> Result<Command, String> {
    let BareLinux { machine, console } =
        board.bench().bare_linux.ok_or_else(|| format!("the {} board names no bare-Linux machine", board.name()))?;
    let args = board.machine_args();
    let cpu = args
        .iter()
        .position(|a| *a == "-cpu")
        .and_then(|i| args.get(i + 1))
        .ok_or_else(|| format!("the {} board's machine names no -cpu", board.name()))?;
    let mut c = Command::new(board.qemu_binary());
    c.args(["-M", machine, "-cpu", cpu, "-smp", &vcpus.to_string(), "-m", &format!("{}M", mem >> 20)]);
    if accel == Accel::SingleThreadedTcg {
        c.args(["-accel", "tcg,thread=single"]);
    }
    c.args(["-display", "none", "-monitor", "none", "-no-reboot", "-serial", "stdio"]);
    c.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
    let append = if extra.is_empty() { format!("console={console}") } else { format!("console={console} {extra}") };
    c.arg("-append").arg(append);
    Ok(c)
}

/// [`seconds`] of the boots of a side that ran `runs` times, saying how
/// many failed.
fn seconds_of(v: &[f64], runs: usize) -> String {
    match runs - v.len() {
        0 => seconds(v),
        failed => format!("{} ({failed} of {runs} failed)", seconds(v)),
    }
}

/// `median(a) / median(b)`.
pub fn median_ratio(a: &[f64], b: &[f64]) -> f64 {
    min_median(a).1 / min_median(b).1
}

/// `min / median` of boot times in seconds.
fn seconds(v: &[f64]) -> String {
    let (lo, med) = min_median(v);
    format!("{lo:.2} / {med:.2} s")
}

/// The Linux boot figure on `board`: QEMU start → `/init`'s first line
/// ([`INIT_FIRST_LINE`]) for the board's first Linux flavour under Lantern
/// (the `run --linux` domain; Lantern's QEMU has one CPU) and for the same
/// kernel and initramfs directly in QEMU with the same vCPU count, on
/// single-threaded and on default TCG; `runs` rounds of the three,
/// alternating (each round in a rotated order, so none always goes first),
/// for each of [`LINUX_VCPU_COUNTS`] and the board's wide-SMP count
/// ([`BoardSpec::linux_wide_smp`]). QEMU is killed at the line.
pub fn linux_bench(board: &'static dyn BoardSpec, runs: usize) -> Result<(), String> {
    let (Some(flavour), Some(_)) = (board.linux_flavours().first(), board.bench().bare_linux) else {
        println!("== {} board: no Linux boot figure (the board names no Linux flavour or bare machine)", board.name());
        return Ok(());
    };
    let guest: LinuxGuest = linux::prepare(flavour)?;
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut bare_failures: Vec<String> = Vec::new();
    let plain = LINUX_VCPU_COUNTS.into_iter().chain(board.linux_wide_smp()).map(|n| (n, ""));
    let preset = LPJ_VCPU_COUNTS.into_iter().chain(board.linux_wide_smp()).map(|n| (n, PRESET_LPJ));
    for (vcpus, extra) in plain.chain(preset) {
        // With its gdb line, as `run --linux` boots it.
        let gdb_port = Some(crate::run::free_gdb_ports().ok_or("no free TCP ports for the gdb line")?);
        let mut o = Opts { vcpus: Some(vcpus), gdb_port, ..Opts::on(board) };
        o.boot_linux(&guest, extra);
        let a = build(&o)?;
        let bare =
            |accel| bare_linux_command(board, &guest.kernel, &guest.initramfs, vcpus, linux::DEFAULT_MEM, accel, extra);
        // Lantern, bare single-threaded TCG, bare default TCG.
        let mut times: [Vec<f64>; 3] = Default::default();
        for round in 0..runs {
            for k in 0..3 {
                let side = (k + round) % 3;
                let cmd = match side {
                    0 => qemu_command(&o, &a),
                    1 => bare(Accel::SingleThreadedTcg)?,
                    _ => bare(Accel::Default)?,
                };
                match time_to_line(cmd, INIT_FIRST_LINE, LINUX_LIMIT) {
                    Ok(t) => times[side].push(t.as_secs_f64()),
                    Err(e) => {
                        let what =
                            format!("{} Linux bench, {vcpus} vCPUs, side {side}, round {round}: {e}", board.name());
                        // Lantern's failure fails the figure. A bare QEMU
                        // boot that hangs (default TCG at 40 vCPUs has, in
                        // the guest kernel) is no reason to lose the rest:
                        // it is counted in its cell and listed below.
                        if side == 0 {
                            return Err(what);
                        }
                        println!("xtask: {what}");
                        bare_failures.push(what);
                    }
                }
            }
        }
        rows.push((if extra.is_empty() { vcpus.to_string() } else { format!("{vcpus}, {extra}") }, times));
    }
    println!(
        "== {} board: {} with the busybox initramfs, QEMU start -> `{INIT_FIRST_LINE}`, {runs} alternating runs \
         each; min / median",
        board.name(),
        guest.package
    );
    println!(
        "| vCPUs | Lantern (QEMU -smp 1) | bare QEMU, -accel tcg,thread=single | bare QEMU, default accel \
         | Lantern / bare single-threaded (median) | Lantern / bare default (median) |"
    );
    println!("|---|---|---|---|---|---|");
    for (vcpus, [lantern, single, multi]) in &rows {
        println!(
            "| {vcpus} | {} | {} | {} | {:.2}x | {:.2}x |",
            seconds(lantern),
            seconds_of(single, runs),
            seconds_of(multi, runs),
            median_ratio(lantern, single),
            median_ratio(lantern, multi)
        );
    }
    println!("({} boots in {:.0} s)", rows.len() * 3 * runs, started.elapsed().as_secs_f64());
    if !bare_failures.is_empty() {
        println!("bare QEMU boots that failed ({}), left out of their medians:", bare_failures.len());
        bare_failures.iter().for_each(|f| println!("  {f}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::command_line;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn only_selects_figures_in_the_suites_order() {
        assert_eq!(selected_figures(&[]).unwrap(), Figure::DEFAULT);
        assert_eq!(selected_figures(&args("--only clock,host")).unwrap(), [Figure::Host, Figure::Clock]);
        assert_eq!(selected_figures(&args("--only linux")).unwrap(), [Figure::Linux]);
        assert_eq!(selected_figures(&args("--only linux,host")).unwrap(), [Figure::Host, Figure::Linux]);
        assert_eq!(selected_figures(&args("--only=gdb --only guest")).unwrap(), [Figure::Guest, Figure::Gdb]);
        assert!(selected_figures(&args("--only")).is_err());
        assert!(selected_figures(&args("--only linx")).is_err());
        assert!(selected_figures(&args("--quick")).is_err());
    }

    #[test]
    fn arch_selects_boards_and_leaves_the_figures() {
        let (b, rest) = selected_boards(&args("--arch x86_64 --only linux")).unwrap();
        assert_eq!(b.iter().map(|b| b.name()).collect::<Vec<_>>(), ["x86_64"]);
        assert_eq!(rest, args("--only linux"));
        assert_eq!(selected_boards(&[]).unwrap().0.len(), crate::boards::all().len());
        assert!(selected_boards(&args("--arch riscv")).is_err());
        assert!(selected_boards(&args("--arch")).is_err());
    }

    #[test]
    fn medians_and_their_ratio() {
        assert_eq!(min_median(&[3.0, 1.0, 2.0]), (1.0, 2.0));
        assert_eq!(median_ratio(&[9.0, 6.0, 30.0], &[6.0, 50.0, 3.0]), 1.5);
        assert_eq!(seconds(&[5.744, 4.891, 9.0]), "4.89 / 5.74 s");
        // A side with failed boots says so; one with none left says NaN.
        assert_eq!(seconds_of(&[5.744, 4.891, 9.0], 3), "4.89 / 5.74 s");
        assert_eq!(seconds_of(&[5.744, 4.891], 3), "4.89 / 5.74 s (1 of 3 failed)");
        assert_eq!(seconds_of(&[], 3), "NaN / NaN s (3 of 3 failed)");
    }

    #[test]
    fn bare_linux_boots_the_same_kernel_on_the_boards_cpu_without_a_hypervisor() {
        let board = crate::boards::by_name("aarch64").unwrap();
        let line = |accel| {
            command_line(
                &bare_linux_command(board, "/k".as_ref(), "/i.cpio".as_ref(), 4, 256 << 20, accel, "").unwrap(),
            )
        };
        let rest = "-display none -monitor none -no-reboot -serial stdio -kernel /k -initrd /i.cpio \
                    -append console=ttyAMA0";
        assert_eq!(
            line(Accel::SingleThreadedTcg),
            format!(
                "qemu-system-aarch64 -M virt,gic-version=3 -cpu max -smp 4 -m 256M -accel tcg,thread=single {rest}"
            )
        );
        assert_eq!(
            line(Accel::Default),
            format!("qemu-system-aarch64 -M virt,gic-version=3 -cpu max -smp 4 -m 256M {rest}")
        );
        // The same -cpu as the board boots Lantern on.
        let machine = board.machine_args();
        let cpu = machine[machine.iter().position(|a| *a == "-cpu").unwrap() + 1];
        assert!(line(Accel::Default).contains(&format!(" -cpu {cpu} ")));
        let x86 = crate::boards::by_name("x86_64").unwrap();
        let x86_line = command_line(
            &bare_linux_command(x86, "/k".as_ref(), "/i".as_ref(), 40, 1 << 30, Accel::Default, "").unwrap(),
        );
        assert!(x86_line.starts_with("qemu-system-x86_64 -M q35 -cpu max -smp 40 -m 1024M "), "{x86_line}");
        assert!(x86_line.ends_with("-kernel /k -initrd /i -append console=ttyS0"), "{x86_line}");
        // Words for both kernels follow the console on the command line.
        let preset = bare_linux_command(x86, "/k".as_ref(), "/i".as_ref(), 4, 1 << 30, Accel::Default, PRESET_LPJ);
        assert!(command_line(&preset.unwrap()).ends_with(&format!("-append 'console=ttyS0 {PRESET_LPJ}'")));
    }
}
