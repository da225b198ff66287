//! A board's in-guest figures for `cargo xtask bench`: timed boots of one
//! demo domain with `cmdline=bench`, its `BENCH` lines (hypercall round
//! trips, their ratio to a bare trap), boot times, and the hypervisor's own
//! round trip where the board has a `selftest` boot word.

use std::time::Duration;

use crate::boards::BoardSpec;
use crate::build::build;
use crate::e2e;
use crate::opts::Opts;
use crate::run::boot_timed;

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
