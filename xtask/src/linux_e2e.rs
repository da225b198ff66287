//! Debian's unmodified Linux under Lantern, on every board that names a
//! Linux flavour: the kernel and busybox come from Debian's packages at
//! set-up time (a failed download fails the test, it is never skipped), the
//! domain boots the busybox initramfs with `lantern.test`, and its `/init`
//! reports one line — CPUs online, the hypervisor Linux detected, the Xen
//! event-channel interrupts it took, whether its clock advances — and holds
//! for [`HOLD_S`] seconds while `gdb-multiarch`, attached to the live
//! system, checks the areas Linux registered (every vCPU's vcpu_info on a
//! guest page of its own, aligned for the layout, not in shared_info; a
//! runstate area per vCPU); then Linux powers off, which must end the run
//! with the hypervisor's PASS verdict. One more boot gives the shell
//! instead, its console on a Unix socket: a command typed there must reach
//! the shell and its computed output come back, and `poweroff -f` typed
//! there must end the run with the PASS verdict.

use std::io::Write;
use std::time::Duration;

use crate::boards::BoardSpec;
use crate::build::work_dir;
use crate::e2e::{build_and_boot, connect_console, domain_line};
use crate::gdb::{self, Json};
use crate::linux::{self, INIT_BANNER, SHELL_BANNER};
use crate::opts::Opts;
use crate::report::Tally;
use crate::summary::summary;

/// Upper bound for one Linux boot under TCG on a busy 2-core machine (it
/// takes ~15 s alone).
const LIMIT: Duration = Duration::from_secs(240);
/// vCPU counts each flavour boots with: one, and two, so CPU bring-up
/// through PSCI, the per-CPU vcpu_info registrations and the IPIs are
/// exercised.
const VCPU_COUNTS: [u32; 2] = [1, 2];
/// Seconds `/init` stays up after its report. gdb attaches within a second
/// or two; while it is attached every vCPU is stopped, so Linux cannot power
/// off under it.
const HOLD_S: u32 = 12;
/// vCPUs of the shell boot (two, so the answer to [`SHELL_COMMAND`] is not
/// the default one).
const SHELL_VCPUS: u32 = 2;
/// The last line busybox's shell prints before its first prompt.
const ASH_GREETING: &str = "Enter 'help' for a list of built-in commands.";
/// What the shell test types: the hypervisor Linux detected, its CPU count
/// and a shell computation, so that the terminal's echo of the typed line
/// (which holds none of the answers) cannot pass for the output.
const SHELL_COMMAND: &str = "cat /sys/hypervisor/type; grep -c ^processor /proc/cpuinfo; echo done-$((6*7))";

/// The `key=value` words of `/init`'s report line.
pub fn report_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Boots every Linux flavour of the board with each of [`VCPU_COUNTS`]
/// vCPUs and checks each run's report, gdb's view and the verdict.
pub fn linux_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    if board.linux_flavours().is_empty() {
        println!("  {}: this board boots no Linux flavour in its tests yet", board.name());
    }
    for flavour in board.linux_flavours() {
        let name = format!("{} linux {}", board.name(), flavour.name);
        let guest = match linux::prepare(flavour) {
            Ok(g) => g,
            Err(e) => {
                tally.record(&format!("{name}: kernel and busybox from Debian's packages"), false, &e);
                continue;
            }
        };
        println!("  {name}: {}", guest.package);
        let wide = board.linux_wide_smp().filter(|_| Some(flavour) == board.linux_flavours().first());
        for vcpus in VCPU_COUNTS.into_iter().chain(wide) {
            boot_and_check(board, flavour, &guest, &format!("{name} ({vcpus} vCPUs)"), vcpus, tally);
        }
        // The input path is Lantern's, not the kernel's: the first flavour
        // (the cloud one) and any in another layout (the 32-bit kernel,
        // whose `run --linux32` shell is part of the x86 promise).
        let first = board.linux_flavours().first();
        if Some(flavour) == first || first.is_some_and(|f| f.layout != flavour.layout) {
            shell_check(board, &guest, &format!("{name} shell ({SHELL_VCPUS} vCPUs)"), tally);
        }
    }
}

/// The lines domain 1 wrote to the console after its `after`-th byte, with
/// the `(d1) ` prefix and line ends removed.
fn domain_lines_after(console: &str, after: usize) -> Vec<&str> {
    console
        .get(after..)
        .unwrap_or("")
        .lines()
        .filter_map(|l| domain_line(l.trim_end()))
        .filter(|(d, _)| *d == 1)
        .map(|(_, b)| b.trim_end())
        .collect()
}

/// Whether the output of [`SHELL_COMMAND`] on a `vcpus`-CPU Xen guest is
/// among `lines`, in order: `xen`, the CPU count, `done-42`.
fn shell_answered(lines: &[&str], vcpus: u32) -> bool {
    let want = ["xen".to_string(), vcpus.to_string(), "done-42".to_string()];
    let mut at = lines.iter();
    want.iter().all(|w| at.any(|l| l == w))
}

/// Linux to its shell with the console on a socket: waits for the prompt,
/// types [`SHELL_COMMAND`], checks its answers, then types `poweroff -f`
/// and checks the clean end.
fn shell_check(board: &'static dyn BoardSpec, guest: &linux::LinuxGuest, name: &str, tally: &mut Tally) {
    let dir = work_dir(board);
    let log = dir.join("linux-shell.log");
    let sock = dir.join("linux-shell.sock");
    let _ = std::fs::remove_file(&sock);
    let mut o = Opts {
        exit: true,
        timeout: Some(LIMIT.as_secs()),
        serial_log: Some(log.clone()),
        console_socket: Some(sock.clone()),
        vcpus: Some(SHELL_VCPUS),
        ..Opts::on(board)
    };
    o.boot_linux(guest, "");
    let Some((_, mut s)) = build_and_boot(&o, &log, name, tally) else { return };
    let mut input = match connect_console(&sock, &log) {
        Ok(i) => i,
        Err(e) => return tally.record(&format!("{name}: console socket"), false, &e),
    };
    let mut type_in = |text: &str| {
        input.write_all(text.as_bytes()).and_then(|_| input.flush()).map_err(|e| format!("typing {text:?}: {e}"))
    };
    let where_ = format!("console in {}", log.display());
    // The console shows a domain's output a line at a time, so the prompt
    // itself (no line end) only appears with the next line: the last line
    // busybox's shell prints before it says the prompt is there.
    let prompt = |c: &str| c.find(SHELL_BANNER).is_some_and(|at| c[at..].contains(ASH_GREETING));
    let r = s.wait_for(LIMIT, prompt);
    tally.record(&format!("{name}: /init gives a shell prompt on hvc0"), r.is_ok(), &format!("{r:?}; {where_}"));
    if r.is_err() {
        return;
    }
    let typed_at = s.console().len();
    let r = type_in(&format!("{SHELL_COMMAND}\r")).and_then(|_| {
        s.wait_for(Duration::from_secs(60), |c| shell_answered(&domain_lines_after(c, typed_at), SHELL_VCPUS))
    });
    let seen = domain_lines_after(&s.console(), typed_at).join(" | ");
    tally.record(
        &format!("{name}: a command typed into the console socket runs in the shell (xen, {SHELL_VCPUS}, done-42)"),
        r.is_ok(),
        &format!("{r:?}; d1 wrote `{seen}`; {where_}"),
    );
    // Linux powers off within a second of the command.
    let code = type_in("poweroff -f\r").and_then(|_| s.wait_exit(Duration::from_secs(60)));
    let sum = summary(&s.console());
    tally.record(
        &format!("{name}: `poweroff -f` typed at the shell powers off and the verdict is PASS"),
        sum.verdict == Some(true) && sum.domains == [(1, "shut down (poweroff)".to_string())],
        &format!("{sum:?}; QEMU {code:?}; {where_}"),
    );
    drop(s);
    let _ = std::fs::remove_file(&sock);
}

/// One boot of `guest` with `vcpus` vCPUs: `/init`'s report, gdb on the
/// live system, the clean power-off.
fn boot_and_check(
    board: &'static dyn BoardSpec,
    flavour: &linux::Flavour,
    guest: &linux::LinuxGuest,
    name: &str,
    vcpus: u32,
    tally: &mut Tally,
) {
    let Some(port) = crate::run::free_gdb_ports() else {
        return tally.record(&format!("{name}: a free TCP port for gdb"), false, "none found");
    };
    let log = work_dir(board).join(format!("linux-console-{vcpus}.log"));
    let mut o = Opts {
        exit: true,
        timeout: Some(LIMIT.as_secs()),
        serial_log: Some(log.clone()),
        vcpus: Some(vcpus),
        gdb_port: Some(port),
        ..Opts::on(board)
    };
    o.boot_linux(guest, &format!("lantern.test lantern.hold={HOLD_S}"));
    let Some((_, mut s)) = build_and_boot(&o, &log, name, tally) else { return };
    let banner = format!("{INIT_BANNER} cpus=");
    match s.wait_for(LIMIT, |c| c.contains(&banner)) {
        Ok(_) => gdb_checks(board, flavour, port, name, vcpus, tally),
        Err(e) => tally.record(&format!("{name}: /init reports (before gdb)"), false, &e),
    }
    let code = s.wait_exit(LIMIT);
    let console = s.console();
    let where_ = format!("console in {}", log.display());
    let report = console
        .lines()
        .filter_map(|l| domain_line(l.trim_end()))
        .find(|(d, b)| *d == 1 && b.starts_with(&format!("{INIT_BANNER} cpus=")))
        .map(|(_, b)| b.to_string());
    tally.record(&format!("{name}: /init reports"), report.is_some(), &where_);
    let line = report.unwrap_or_default();
    let want = |key: &str, ok: &dyn Fn(&str) -> bool, what: &str| {
        let v = report_value(&line, key);
        (format!("{name}: {key} {what}"), v.is_some_and(ok), format!("`{line}`; {where_}"))
    };
    let online = if vcpus == 1 { "0".to_string() } else { format!("0-{}", vcpus - 1) };
    let checks = [
        want("cpus", &|v| v == vcpus.to_string(), &format!("= {vcpus}")),
        want("online", &|v| v == online, &format!("= {online}")),
        want("hypervisor", &|v| v == "xen", "= xen (/sys/hypervisor/type)"),
        want("xen_events", &|v| v.parse::<u64>().is_ok_and(|n| n > 0), "> 0 (the event-channel interrupt counts)"),
        want("clock", &|v| v == "advancing", "advancing"),
    ];
    for (check, ok, detail) in checks {
        tally.record(&check, ok, &detail);
    }
    let sum = summary(&console);
    tally.record(
        &format!("{name}: Linux powers off and the verdict is PASS"),
        sum.verdict == Some(true) && sum.domains == [(1, "shut down (poweroff)".to_string())],
        &format!("{sum:?}; QEMU {code:?}; {where_}"),
    );
}

/// The JSON answer of the `monitor` command whose answer has key `key`.
fn answer(lines: &[&str], key: &str) -> Option<Json> {
    lines.iter().filter_map(|l| Json::parse(l).ok()).find(|j| j.get(key).is_some())
}

/// gdb on the live Linux: every vCPU's vcpu_info on a guest page Linux
/// registered — placement `guest`, the board's layout, a distinct
/// (gfn, offset) per vCPU, not on the shared_info page, aligned for the
/// layout — a runstate area per vCPU, and one thread per vCPU.
fn gdb_checks(
    board: &'static dyn BoardSpec,
    flavour: &linux::Flavour,
    port: u16,
    name: &str,
    vcpus: u32,
    tally: &mut Tally,
) {
    let cmds =
        ["info threads", "monitor shared-info d1 --json", "monitor vcpu-info d1 --json", "monitor areas d1 --json"];
    let out = match gdb::run_plain_batch(port, &cmds, Duration::from_secs(120)) {
        Ok(o) => o,
        Err(e) => return tally.record(&format!("{name}: gdb-multiarch attaches to the running Linux"), false, &e),
    };
    let text = out.text();
    let lines = out.json_lines();
    let threads = (0..vcpus).filter(|v| text.contains(&format!("(d1v{v} "))).count() as u32;
    tally.record(&format!("{name}: gdb: info threads lists d1v0..d1v{}", vcpus - 1), threads == vcpus, &text);
    let Some(layout) = board.guest_abis().iter().copied().find(|a| a.name() == flavour.layout) else {
        return tally.record(&format!("{name}: the board knows layout {}", flavour.layout), false, "");
    };
    let align = layout.struct_layout("vcpu_info").map_or(1, |l| l.align as u64);
    let shared_gfn = answer(&lines, "evtchn_abi").and_then(|j| j.get("gfn").and_then(Json::int));
    let vcpu_info = answer(&lines, "vcpus");
    let infos: Vec<&Json> =
        vcpu_info.as_ref().and_then(|j| j.get("vcpus")).map(Json::items).unwrap_or(&[]).iter().collect();
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    for vi in &infos {
        let field = |k: &str| vi.get(k).and_then(Json::int);
        let (v, gfn, offset) = (field("v"), field("gfn"), field("offset"));
        let placement = vi.get("placement").and_then(Json::str).unwrap_or("?");
        let lay = vi.get("layout").and_then(Json::str).unwrap_or("?");
        let ok = placement == "guest"
            && lay == layout.name()
            && gfn.is_some()
            && gfn != shared_gfn
            && offset.is_some_and(|o| o % align as i128 == 0)
            && !seen.contains(&(gfn, offset));
        if !ok {
            bad.push(format!("v{v:?}: {placement} {lay} gfn {gfn:?} offset {offset:?}"));
        }
        seen.push((gfn, offset));
    }
    tally.record(
        &format!(
            "{name}: gdb: every vCPU's vcpu_info is on a guest page Linux registered ({} layout, {align}-aligned, distinct, not shared_info)",
            layout.name()
        ),
        infos.len() == vcpus as usize && bad.is_empty() && shared_gfn.is_some(),
        &format!("{} vCPUs, shared_info gfn {shared_gfn:?}, wrong: {bad:?}", infos.len()),
    );
    let areas = answer(&lines, "areas");
    let runstates = areas
        .as_ref()
        .and_then(|j| j.get("areas"))
        .map(Json::items)
        .unwrap_or(&[])
        .iter()
        .filter(|a| a.get("kind").and_then(Json::str) == Some("runstate"))
        .count() as u32;
    tally.record(
        &format!("{name}: gdb: monitor areas lists the runstate area Linux registered on each vCPU"),
        runstates == vcpus,
        &format!("{runstates} runstate areas"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_answer_is_computed_output_not_the_echo() {
        let echo = format!("~ # {SHELL_COMMAND}");
        assert!(!shell_answered(&[echo.as_str()], 2), "the echoed command alone");
        assert!(shell_answered(&[echo.as_str(), "xen", "2", "done-42", "~ # "], 2));
        assert!(!shell_answered(&["xen", "1", "done-42"], 2), "the wrong CPU count");
        let console = "(d1) old\n(d1) xen\n(lantern) x\n(d2) 2\n(d1) 2\r\n(d1) done-42\n";
        let after = console.find("(d1) xen").unwrap();
        assert_eq!(domain_lines_after(console, after), ["xen", "2", "done-42"]);
    }

    #[test]
    fn reads_the_init_report() {
        let l = "LANTERN-LINUX cpus=2 online=0-1 hypervisor=xen xen_events=7 clock=advancing";
        assert_eq!(report_value(l, "cpus"), Some("2"));
        assert_eq!(report_value(l, "online"), Some("0-1"));
        assert_eq!(report_value(l, "xen_events"), Some("7"));
        assert_eq!(report_value(l, "clock"), Some("advancing"));
        assert_eq!(report_value(l, "nope"), None);
    }
}
