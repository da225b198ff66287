//! gdb end to end, for `cargo xtask test` and `cargo xtask bench`: boots a
//! board with the gdb serial line, attaches real `gdb-multiarch` in batch
//! mode and checks what it shows against what the test guests printed
//! about themselves; measures attach time, a whole-system `vcpu-info` and a
//! 1 MiB memory read (our stub vs QEMU's built-in one).

use std::time::Duration;

use crate::bench::min_median;
use crate::boards::{BoardSpec, ProbeValue};
use crate::build::{build, work_dir, Artifacts};
use crate::e2e::{self, num, vcpu0_report, Session};
use crate::gdb::{self, print_values, runstate_total, BatchOutput, Json, SymbolFile};
use crate::gdb_session_e2e::LiveDomain;
use crate::opts::Opts;
use crate::qemu::qemu_command;
use crate::report::Tally;
use crate::run::{free_gdb_ports, free_port};
use crate::summary::summary;

/// Per-domain facts the checks need: which ELF holds its symbols, the gdb
/// thread number of its vCPU 0, and a symbol to read.
pub(crate) struct DomainUnderTest {
    pub(crate) id: u16,
    pub(crate) symbols: Vec<SymbolFile>,
    /// gdb's thread number (1-based, in the stub's order) of vCPU 0.
    pub(crate) first_thread: u32,
    /// A gdb expression whose value the guest told us: `(expr, expected)`.
    variable: (String, String),
}

/// The guest's `REPORT ... key=value` value from the first line holding it.
fn report(console: &str, dom: u16, key: &str) -> Option<String> {
    e2e::report_values(console, dom, &[]).into_iter().flatten().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Describes the demo domains of `board` after the guests printed their
/// reports (`console`).
pub(crate) fn domains_under_test(
    board: &dyn BoardSpec,
    a: &Artifacts,
    vcpus: u32,
    console: &str,
) -> Vec<DomainUnderTest> {
    let symbols = board.guest_symbols();
    a.domains
        .iter()
        .zip(board.demo_guests())
        .map(|((id, _), guest)| {
            // A guest linked at 0 is relocated by the load address it reported.
            let offset = symbols.load_base_key.and_then(|key| report(console, *id, key)).and_then(|b| num(&b));
            let expected = match symbols.expected {
                ProbeValue::ReportedLen(key) => report(console, *id, key).unwrap_or_default().len(),
                ProbeValue::DomainVcpus => vcpus as usize,
            };
            DomainUnderTest {
                id: *id,
                symbols: vec![SymbolFile { path: guest.elf(), offset }],
                first_thread: (*id as u32 - 1) * vcpus + 1,
                variable: (symbols.probe.into(), expected.to_string()),
            }
        })
        .collect()
}

fn has_line(text: &str, parts: &[&str]) -> bool {
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// Boots the demo alive (`linger`) with a gdb port and waits for
/// every domain's `SCENARIO LINGER` (or `END`).
pub(crate) fn boot_lingering(o: &Opts, what: &str) -> Result<(Session, Artifacts, String), String> {
    let a = build(o)?;
    let log = o.serial_log.clone().ok_or("no serial log")?;
    let mut s = Session::spawn(qemu_command(o, &a), &log)?;
    let ids: Vec<u16> = a.domains.iter().map(|(d, _)| *d).collect();
    let console = s
        .wait_for(Duration::from_secs(240), |c| {
            ids.iter().all(|d| {
                let p = format!("(d{d}) SCENARIO ");
                c.lines().any(|l| l.starts_with(&p) && (l.contains("LINGER") || l.contains("END")))
            })
        })
        .map_err(|e| format!("{what}: {e}"))?;
    Ok((s, a, console))
}

/// The live-system gdb test of `board` (see the module doc).
pub fn live_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} gdb", board.name());
    let rec =
        |tally: &mut Tally, what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let Some(port) = free_gdb_ports() else { return rec(tally, "free TCP port", false, "none found") };
    let log = work_dir(board).join("gdb-live-console.log");
    let o = Opts { timeout: Some(600), serial_log: Some(log.clone()), gdb_port: Some(port), ..Opts::on(board) };
    let vcpus = board.demo_vcpus();
    let (mut s, a, console) = match boot_lingering(&o, "guests linger") {
        Ok(x) => x,
        Err(e) => return rec(tally, "boot the demo and wait for SCENARIO LINGER", false, &e),
    };
    rec(tally, "every domain reached SCENARIO LINGER", true, "");
    let doms = domains_under_test(board, &a, vcpus, &console);

    // 1. A broken client first: the stub must survive it.
    let hostile = gdb::send_hostile_input(port);
    rec(
        tally,
        "hostile input sent (garbage, bad checksums, oversized, cut-off packet)",
        hostile.is_ok(),
        &format!("{hostile:?}"),
    );

    // 2. One gdb session per domain (its own symbols), all checks on it.
    let timeout = Duration::from_secs(180);
    let mut before = Vec::new();
    for (i, d) in doms.iter().enumerate() {
        let dn = format!("d{}", d.id);
        let mut cmds: Vec<String> = Vec::new();
        if i == 0 {
            cmds.push("info threads".into());
            cmds.push("monitor grants --json".into());
        }
        cmds.push(format!("thread {}", d.first_thread));
        // The stop may be outside Rust code (e.g. the hypercall page):
        // parse the expressions as Rust.
        cmds.push("set language rust".into());
        cmds.push(format!("print {}", d.variable.0));
        cmds.push(format!("monitor vcpu-info {dn}v0"));
        cmds.push(format!("monitor runstate {dn}v0"));
        cmds.push(format!("monitor areas {dn}"));
        cmds.extend(gdb::guest_check_commands(d.id));
        cmds.push(format!("monitor runstate {dn}v0 --json"));
        cmds.push(format!("lantern vcpu-info {dn}v0"));
        cmds.push(format!("lantern areas {dn}"));
        cmds.push(format!("print/x $lantern(b\"{dn}v0\", b\"gfn\")"));
        cmds.push(format!("print $lantern(b\"{dn}v0\", b\"area.fields.state\", b\"runstate\")"));
        let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let out = match gdb::run_batch(board, port, &d.symbols, &refs, timeout) {
            Ok(o) => o,
            Err(e) => return rec(tally, &format!("{dn}: run gdb-multiarch"), false, &e),
        };
        let text = out.text();
        rec(
            tally,
            &format!("{dn}: gdb attached after the hostile input"),
            has_line(&text, &["Remote debugging"]) || text.contains("Thread "),
            &text,
        );
        if i == 0 {
            let layouts: Vec<(u16, &str)> =
                a.domains.iter().zip(board.demo_guests()).map(|((id, _), g)| (*id, g.layout)).collect();
            let missing: Vec<String> = layouts
                .iter()
                .flat_map(|(dom, lay)| (0..vcpus).map(move |v| (dom, v, lay)))
                .filter(|(dom, v, lay)| {
                    !text.lines().any(|l| {
                        l.contains(&format!("(d{dom}v{v} ")) && l.contains(&format!(" {lay})")) && {
                            ["running", "runnable", "blocked", "paused", "down"].iter().any(|s| l.contains(s))
                        }
                    })
                })
                .map(|(dom, v, _)| format!("d{dom}v{v}"))
                .collect();
            rec(
                tally,
                &format!("info threads lists all {} vCPUs as dNvM with state and layout", layouts.len() as u32 * vcpus),
                missing.is_empty(),
                &format!("missing {missing:?}"),
            );
        }
        if i == 0 && doms.len() >= 2 {
            // The scenario unmapped and revoked everything it granted.
            let g = out.json_lines().iter().filter_map(|l| Json::parse(l).ok()).find(|j| j.get("grants").is_some());
            let left: Option<usize> = g.as_ref().and_then(|j| {
                j.get("grants")?
                    .items()
                    .iter()
                    .map(|d| {
                        Some(
                            d.get("active")?.items().len()
                                + d.get("maps")?.items().len()
                                + d.get("entries")?.items().len(),
                        )
                    })
                    .sum()
            });
            let d1_table =
                g.as_ref().and_then(|j| j.get("grants")?.items().first()?.get("frames").map(|f| f.items().len()));
            rec(
                tally,
                "monitor grants --json: after the scenario's unmap and revoke nothing is pinned, mapped or granted",
                left == Some(0) && d1_table.is_some_and(|n| n >= 1),
                &format!("left {left:?}, d1 frames {d1_table:?}; {text}"),
            );
        }
        // The stub's thread id of dNv0 is N * 1024 + 1.
        let tid = format!("Thread 1.{})", d.id as u32 * 1024 + 1);
        rec(
            tally,
            &format!("{dn}: `thread {}` selects {dn}v0", d.first_thread),
            has_line(&text, &["Switching to thread", &tid]),
            &text,
        );
        let values = print_values(&out.stdout);
        rec(
            tally,
            &format!("{dn}: guest variable by symbol ({} = {})", d.variable.0, d.variable.1),
            values.first() == Some(&d.variable.1),
            &format!("gdb printed {values:?}; symbols {:?}; {text}", d.symbols),
        );
        rec(
            tally,
            &format!("{dn}: monitor vcpu-info (text)"),
            has_line(&text, &[&format!("{dn}v0 "), "vcpu_info at"]),
            &text,
        );
        rec(
            tally,
            &format!("{dn}: monitor runstate (text)"),
            has_line(&text, &[&format!("{dn}v0 runstate"), "time running="]),
            &text,
        );
        rec(tally, &format!("{dn}: monitor areas (text)"), has_line(&text, &[&format!("{dn}v0"), "runstate"]), &text);
        for c in gdb::check_against_guest(&console, d.id, &out) {
            rec(tally, &format!("stub agrees with the guest: {}", c.name), c.ok, &c.detail);
        }
        // runstate --json: the registered area is where the guest put it.
        let rs =
            out.json_lines().iter().filter_map(|l| Json::parse(l).ok()).find(|j| {
                j.get("vcpu").and_then(Json::str) == Some(&format!("{dn}v0")) && j.get("hypervisor").is_some()
            });
        let stub_gpa = rs
            .as_ref()
            .and_then(|j| j.get("area"))
            .and_then(|a| Some(((a.get("gfn")?.int()? as u64) << 12) | a.get("offset")?.int()? as u64));
        let guest_gpa = vcpu0_report(&console, d.id, "runstate_gpa");
        rec(
            tally,
            &format!("{dn}: monitor runstate --json area = the guest's runstate_gpa"),
            stub_gpa.is_some() && stub_gpa == guest_gpa,
            &format!("stub {stub_gpa:x?}, guest {guest_gpa:x?}"),
        );
        before.push((dn.clone(), runstate_total(&out, &format!("{dn}v0"))));
        rec(
            tally,
            &format!("{dn}: lantern vcpu-info table"),
            has_line(&text, &["vcpu", "layout", "pending_sel"]) && has_line(&text, &[&format!("{dn}v0 ")]),
            &text,
        );
        rec(tally, &format!("{dn}: lantern areas table"), has_line(&text, &["vcpu", "kind", "placement"]), &text);
        let gfn = vcpu0_report(&console, d.id, "vcpu_info_gfn");
        rec(
            tally,
            &format!("{dn}: $lantern(\"{dn}v0\", \"gfn\") = the guest's vcpu_info gfn"),
            values.get(1).and_then(|v| num(v)).is_some() && values.get(1).and_then(|v| num(v)) == gfn,
            &format!("{values:?} vs guest {gfn:x?}"),
        );
        rec(
            tally,
            &format!("{dn}: $lantern(..., \"area.fields.state\", \"runstate\") is a runstate"),
            values.get(2).and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v <= 3),
            &format!("{values:?}"),
        );
    }

    // 3. After the detach the system runs on: vCPU 0's runstate times grow.
    std::thread::sleep(Duration::from_secs(2));
    for (dn, t0) in before {
        let cmd = format!("monitor runstate {dn}v0 --json");
        let after = gdb::run_batch(board, port, &[], &[cmd.as_str()], timeout)
            .ok()
            .and_then(|o| runstate_total(&o, &format!("{dn}v0")));
        rec(
            tally,
            &format!("{dn}: guest still alive after detach (runstate times advanced)"),
            matches!((t0, after), (Some(a), Some(b)) if b > a),
            &format!("before {t0:?}, after {after:?}"),
        );
    }
    let live: Vec<LiveDomain> = doms
        .iter()
        .map(|d| LiveDomain { id: d.id, symbols: d.symbols.clone(), first_thread: d.first_thread })
        .collect();
    crate::gdb_session_e2e::checks(board, port, &live, &console, &s, &work_dir(board), tally);
    let alive = s.wait_exit(Duration::from_millis(10)).is_err();
    rec(tally, "QEMU still running at the end (no crash)", alive, &format!("console in {}", log.display()));
    let bad = summary(&s.console());
    rec(tally, "no domain ended during the gdb session", bad.domains.is_empty(), &format!("{bad:?}"));
}

/// Builds and boots `o` (a `--wait-gdb` run) and waits until the
/// hypervisor holds every vCPU for gdb; an error names the step that failed.
pub(crate) fn boot_held(o: &Opts) -> Result<(Session, Artifacts), (&'static str, String)> {
    let a = build(o).map_err(|e| ("build", e))?;
    let log = o.serial_log.clone().ok_or(("boot", "no serial log".to_string()))?;
    let mut s = Session::spawn(qemu_command(o, &a), &log).map_err(|e| ("boot", e))?;
    s.wait_for(Duration::from_secs(60), |c| c.contains("gdb-wait: holding"))
        .map_err(|e| ("hypervisor waits for gdb", e))?;
    Ok((s, a))
}

/// `--wait-gdb` on `board`: gdb attaches before the first guest
/// instruction, sees the entry state, `continue`s, and the run then ends
/// cleanly.
pub fn wait_gdb_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} gdb-wait", board.name());
    let rec =
        |tally: &mut Tally, what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let Some(port) = free_gdb_ports() else { return rec(tally, "free TCP port", false, "none found") };
    let log = work_dir(board).join("gdb-wait-console.log");
    let o = Opts {
        exit: true,
        timeout: Some(240),
        serial_log: Some(log.clone()),
        gdb_port: Some(port),
        wait_gdb: true,
        ..Opts::on(board)
    };
    let (mut s, a) = match boot_held(&o) {
        Ok(x) => x,
        Err((step, e)) => return rec(tally, step, false, &e),
    };
    let entry = board.entry_state();
    let cmds = ["info threads", "monitor domains", entry.registers, "x/1i $pc", "continue"];
    let out = match gdb::run_batch(board, port, &gdb::default_symbols(board), &cmds, Duration::from_secs(180)) {
        Ok(o) => o,
        Err(e) => return rec(tally, "run gdb-multiarch", false, &e),
    };
    let text = out.text();
    let v = board.demo_vcpus();
    let ranges: Vec<String> = a.domains.iter().map(|(d, _)| format!("d{d}v0..d{d}v{}", v - 1)).collect();
    let all = a.domains.iter().all(|(d, _)| (0..v).all(|i| text.contains(&format!("(d{d}v{i} "))));
    rec(tally, &format!("threads are vCPUs {}", ranges.join(", ")), all, &text);
    for check in entry.checks {
        rec(tally, check.name, check.holds(&text), &text);
    }
    let code = s.wait_exit(Duration::from_secs(200));
    let console = s.console();
    let doms: Vec<(u16, &str)> = a.domains.iter().map(|(d, n)| (*d, n.as_str())).collect();
    e2e::tally_guest_checks(tally, &format!("{} under gdb", board.name()), &console, &doms);
    let sum = summary(&console);
    rec(
        tally,
        "clean power-off after continue (verdict PASS)",
        code == Ok(board.exit_statuses().clean) && sum.verdict == Some(true),
        &format!("{code:?} {sum:?}"),
    );
}

/// A gdb command that prints the wall clock (`STAMP <ns>`), around the
/// command a figure times: the time from gdb's command to its end.
const STAMP: &str = "shell date +STAMP%s%N";

/// The time between the first two [`STAMP`]s of a batch's output.
fn stamped(out: &BatchOutput) -> Result<f64, String> {
    let t: Vec<f64> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("STAMP")?.parse::<f64>().ok())
        .map(|ns| ns / 1e9)
        .collect();
    match t[..] {
        [a, b, ..] => Ok(b - a),
        _ => Err(format!("no timestamps in gdb's output: {}", out.text())),
    }
}

/// gdb figures of `cargo xtask bench` on `board`: attach time,
/// `lantern vcpu-info all` on a domain of the board's many vCPUs
/// ([`BenchParams::gdb_vcpus`](crate::boards::BenchParams)), and, through
/// our stub on its default line (virtio-serial) vs QEMU's built-in stub on
/// the same VM, a bare attach (`target remote` + detach) and a 1 MiB memory
/// read (from gdb's `dump` to its end, between two [`STAMP`]s).
pub fn bench(board: &'static dyn BoardSpec, runs: usize) -> Result<(), String> {
    let params = board.bench();
    let vcpus = params.gdb_vcpus;
    let port = free_gdb_ports().ok_or("no free port")?;
    // Not one of the gdb line's ports (the whole system's and each domain's).
    let qport = loop {
        let p = free_port().ok_or("no free port")?;
        if !(port..port.saturating_add(crate::qemu::GDB_PORT_SPAN)).contains(&p) {
            break p;
        }
    };
    let log = work_dir(board).join("gdb-bench-console.log");
    let o = Opts {
        timeout: Some(900),
        serial_log: Some(log),
        gdb_port: Some(port),
        qemu_gdb_port: Some(qport),
        vcpus: Some(vcpus),
        demo_domains: Some(1),
        ..Opts::on(board)
    };
    let a = build(&o)?;
    let mut s = Session::spawn(qemu_command(&o, &a), o.serial_log.as_ref().ok_or("no log")?)?;
    s.wait_for(Duration::from_secs(240), |c| c.contains("(d1) SCENARIO "))?;
    let t = Duration::from_secs(300);
    let secs = |o: &BatchOutput| o.elapsed.as_secs_f64();
    let mut attach = Vec::new();
    let mut vinfo = Vec::new();
    let mut ours = Vec::new();
    let mut qemu = Vec::new();
    // Bare attach (`target remote` then the batch's detach, no Lantern
    // setup) to each stub.
    let mut attach_ours = Vec::new();
    let mut attach_qemu = Vec::new();
    let mut notes = Vec::new();
    for _ in 0..runs {
        let e = gdb::run_batch(board, port, &[], &[], t)?;
        attach.push(secs(&e));
        let bare = gdb::run_plain_batch(port, &[], t)?;
        attach_ours.push(secs(&bare));
        let v = gdb::run_batch(board, port, &[], &[STAMP, "lantern vcpu-info all", STAMP], t)?;
        let rows = v.stdout.lines().filter(|l| l.starts_with("d1v")).count();
        if rows != vcpus as usize {
            notes.push(format!("vcpu-info all printed {rows} rows, not {vcpus}"));
        }
        vinfo.push(stamped(&v)?);
        // The same 1 MiB of guest RAM: guest-physical 1 MiB..2 MiB of d1.
        let m = gdb::run_plain_batch(
            port,
            &["monitor phys on", STAMP, "dump binary memory /dev/null 0x100000 0x200000", STAMP, "monitor phys off"],
            t,
        )?;
        if m.stderr.contains("Cannot access") || m.code != Some(0) {
            notes.push(format!("our stub's read failed: {}", m.text()));
        }
        ours.push(stamped(&m)?);
        // QEMU's stub sees the host: 1 MiB of the board's host-physical RAM.
        let (start, end) = params.host_ram;
        let dump = format!("dump binary memory /dev/null {start:#x} {end:#x}");
        let q = gdb::run_plain_batch(
            qport,
            &["maintenance packet Qqemu.PhyMemMode:1", STAMP, &dump, STAMP, "maintenance packet Qqemu.PhyMemMode:0"],
            t,
        )?;
        let q0 = gdb::run_plain_batch(qport, &[], t)?;
        if q.code != Some(0) {
            notes.push(format!("QEMU stub read failed: {}", q.text()));
        }
        qemu.push(stamped(&q)?);
        attach_qemu.push(secs(&q0));
    }
    let ms = |v: f64| format!("{:.1} ms", v * 1e3);
    let (a0, a1) = min_median(&attach);
    let (v0, v1) = min_median(&vinfo);
    let (o0, o1) = min_median(&ours);
    let (q0, q1) = min_median(&qemu);
    let (b0, b1) = min_median(&attach_ours);
    let (c0, c1) = min_median(&attach_qemu);
    println!("== gdb ({}, one domain of {vcpus} vCPUs, {runs} runs each; min / median)", board.name());
    println!("| figure | min | median |");
    println!("|---|---|---|");
    println!("| gdb attach (target remote + detach, batch) | {} | {} |", ms(a0), ms(a1));
    println!("| `lantern vcpu-info all` ({vcpus} vCPUs), from the command | {} | {} |", ms(v0), ms(v1));
    println!("| 1 MiB read (`dump` command), our stub over virtio-serial, guest-physical | {} | {} |", ms(o0), ms(o1));
    println!("| 1 MiB read (`dump` command), QEMU's -gdb stub, host-physical | {} | {} |", ms(q0), ms(q1));
    println!("| read ratio ours / QEMU (median; goal <= 2x) | {:.2}x | |", o1 / q1.max(1e-9));
    println!("| bare attach, our stub ({vcpus} threads) | {} | {} |", ms(b0), ms(b1));
    println!("| bare attach, QEMU's -gdb stub (1 CPU) | {} | {} |", ms(c0), ms(c1));
    println!("| attach ratio ours / QEMU (median; goal <= 1.5x) | {:.2}x | |", b1 / c1.max(1e-9));
    for n in notes {
        println!("note: {n}");
    }
    drop(s);
    Ok(())
}
