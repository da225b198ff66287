//! Fault isolation end to end, per board: two domains boot with `--exit`,
//! d1's test guest runs its scenario and then touches guest-physical memory
//! no RAM backs (the guest command-line word `fault`), d2's runs normally.
//! The hypervisor must crash d1 alone with a one-line diagnostic naming the
//! faulting address, let d2 finish every check and power off, and still
//! reach its orderly end (closing summary, FAIL verdict, QEMU exit status).

use std::time::{Duration, Instant};

use crate::boards::BoardSpec;
use crate::build::{build, build_demo_guests, work_dir};
use crate::e2e;
use crate::gdb;
use crate::opts::Opts;
use crate::qemu::qemu_command;
use crate::report::Tally;
use crate::summary::summary;

/// The address the guests' `fault` word reads (`FAULT_GPA` in
/// `tests/guests/scenario`); the diagnostic must name it.
const FAULT_GPA: &str = "0x30000000";

/// Upper bound for the whole boot; a hang is a failure, not a stall.
const LIMIT: Duration = Duration::from_secs(90);

/// The hypervisor's crash line for a vCPU of domain `dom`, if any: a line
/// that is not a guest's `(dN) ` line and mentions `dNvM crashed:`.
fn crash_line(console: &str, dom: u16) -> Option<&str> {
    let tag = format!("d{dom}v");
    console.lines().map(str::trim_end).find(|l| {
        e2e::domain_line(l).is_none()
            && l.split_whitespace().any(|w| w.starts_with(&tag) && w[tag.len()..].chars().all(|c| c.is_ascii_digit()))
            && l.contains(" crashed: ")
    })
}

/// Whether `line` carries every diagnostic field of `board` and names
/// [`FAULT_GPA`] as the faulting guest-physical address.
fn names_fault(board: &dyn BoardSpec, line: &str) -> bool {
    let diag = board.fault_diagnostic();
    let addr = format!("{}{FAULT_GPA}", diag.address_field);
    diag.fields.iter().all(|f| line.contains(f)) && line.contains(&addr)
}

/// One board's isolation test (see the module comment); every finding is
/// one tally record.
pub fn isolation_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} isolation", board.name());
    let started = Instant::now();
    // Two domains (d1 faults, d2 runs normally): the board's first two demo
    // guests, or its one demo guest twice.
    let images = match build_demo_guests(board) {
        Ok(g) => g.iter().cycle().take(2).cloned().collect::<Vec<_>>(),
        Err(e) => return tally.record(&format!("{name}: build guests"), false, &e),
    };
    let log = work_dir(board).join("isolation-console.log");
    let o = Opts {
        exit: true,
        timeout: Some(LIMIT.as_secs()),
        serial_log: Some(log.clone()),
        guests: images.iter().map(|(_, p)| p.clone()).collect(),
        vcpus: Some(board.demo_vcpus()),
        ..Opts::on(board)
    };
    let mut a = match build(&o) {
        Ok(a) => a,
        Err(e) => return tally.record(&format!("{name}: build"), false, &e),
    };
    // Only d1 gets the word: `build` gives every domain the same command
    // line, so add it to d1's `domain=` word (the last key, as required).
    let d1_image = a.domains[0].1.clone();
    let prefix = format!("domain={d1_image},");
    a.cmdline = a
        .cmdline
        .split(' ')
        .map(|w| if w.starts_with(&prefix) { format!("{w},cmdline=fault") } else { w.to_string() })
        .collect::<Vec<_>>()
        .join(" ");
    if !a.cmdline.contains(",cmdline=fault") {
        return tally.record(&format!("{name}: d1 command line"), false, &format!("no d1 word in `{}`", a.cmdline));
    }
    let mut s = match e2e::Session::spawn(qemu_command(&o, &a), &log) {
        Ok(s) => s,
        Err(e) => return tally.record(&format!("{name}: boot"), false, &e),
    };
    let code = s.wait_exit(LIMIT);
    let console = s.console();
    let where_ = format!("console in {}", log.display());

    let fault_said = console
        .lines()
        .any(|l| e2e::domain_line(l.trim_end()).is_some_and(|(d, b)| d == 1 && b.starts_with("FAULT now")));
    tally.record(&format!("{name}: d1 says `FAULT now`"), fault_said, &where_);

    let diag = crash_line(&console, 1);
    if let Some(l) = diag {
        println!("  {name}: diagnostic: {l}");
    }
    tally.record(
        &format!("{name}: hypervisor's one-line crash diagnostic for d1 names {FAULT_GPA}"),
        diag.is_some_and(|l| names_fault(board, l)),
        &format!("{diag:?}; {where_}"),
    );

    let d2_image = a.domains.get(1).map(|(_, n)| n.as_str()).unwrap_or("?");
    e2e::tally_guest_checks(tally, &name, &console, &[(2, d2_image)]);

    let sum = summary(&console);
    let what = |d: u16| sum.domains.iter().find(|(id, _)| *id == d).map(|(_, w)| w.as_str());
    tally.record(&format!("{name}: summary says d1: crashed"), what(1) == Some("crashed"), &format!("{sum:?}"));
    tally.record(
        &format!("{name}: summary says d2: shut down (poweroff)"),
        what(2) == Some("shut down (poweroff)"),
        &format!("{sum:?}"),
    );
    tally.record(&format!("{name}: summary says verdict FAIL"), sum.verdict == Some(false), &format!("{sum:?}"));
    tally.record(
        &format!("{name}: QEMU exit status carries the FAILED verdict"),
        code == Ok(board.exit_statuses().failed),
        &format!("QEMU exit {code:?}; {where_}"),
    );
    println!("  {name}: {:.1} s", started.elapsed().as_secs_f64());
}

/// The attacks' time limit: boot, both scenarios, the victim's 45 s hold.
const ATTACK_LIMIT: Duration = Duration::from_secs(300);

/// The line index of the first console line of domain `dom` starting with
/// `prefix`.
fn line_of(console: &str, dom: u16, prefix: &str) -> Option<usize> {
    console.lines().position(|l| e2e::domain_line(l.trim_end()).is_some_and(|(d, b)| d == dom && b.starts_with(prefix)))
}

/// One board's isolation attacks: the demo's two domains with `--exit`, d2
/// (on x86 the 32-bit guest, so the compat layout attacks) attacking d1
/// with `attack=1` after its checks (the guest side: tests/guests/scenario's
/// `attack`), d1 the `victim` holding with its pattern pages and
/// heartbeat. While d2 storms the hypervisor with hypercalls, gdb attaches
/// to d2's own session and reads its registers and memory. Every attack
/// and the victim's checks are CHECK lines; both domains must pass, power
/// off, and the run end PASS.
pub fn attack_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} attacks", board.name());
    let rec =
        |tally: &mut Tally, what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let started = Instant::now();
    let Some(port) = crate::run::free_gdb_ports() else { return rec(tally, "free TCP ports", false, "none found") };
    let log = work_dir(board).join("attacks-console.log");
    let o = Opts {
        exit: true,
        timeout: Some(ATTACK_LIMIT.as_secs()),
        serial_log: Some(log.clone()),
        gdb_port: Some(port),
        vcpus: Some(board.demo_vcpus()),
        domain_words: vec![(1, "victim".into()), (2, "attack=1".into())],
        ..Opts::on(board)
    };
    let a = match build(&o) {
        Ok(a) => a,
        Err(e) => return rec(tally, "build", false, &e),
    };
    if a.domains.len() < 2 {
        return rec(tally, "two demo domains", false, &format!("{:?}", a.domains));
    }
    let mut s = match e2e::Session::spawn(qemu_command(&o, &a), &log) {
        Ok(s) => s,
        Err(e) => return rec(tally, "boot", false, &e),
    };
    let where_ = format!("console in {}", log.display());
    // During the storm: gdb on the attacker's own line stops it mid-storm,
    // reads its registers and stack, and lets it go on.
    let storming = s.wait_for(ATTACK_LIMIT, |c| line_of(c, 2, "ATTACK storm start").is_some() || c.contains("SUMMARY"));
    let gdb_out = match storming {
        Ok(c) if line_of(&c, 2, "ATTACK storm start").is_some() => {
            let cmds = ["info threads", "info registers", "x/16xw $sp", "monitor stats"];
            gdb::run_batch_domain(board, port, 2, &[], &cmds, Duration::from_secs(120)).map(|o| o.text())
        }
        Ok(_) => Err("the run ended before d2's storm".into()),
        Err(e) => Err(e),
    };
    let text = gdb_out.unwrap_or_else(|e| e);
    rec(
        tally,
        "gdb attached to d2's own line during its hypercall storm, read its registers and memory",
        text.contains("(d2v0 ")
            && text.contains("0x")
            && !text.contains("Cannot access memory")
            && !text.contains("Remote failure"),
        &text,
    );
    let code = s.wait_exit(ATTACK_LIMIT);
    let console = s.console();
    e2e::tally_guest_checks(tally, &name, &console, &[(1, &a.domains[0].1), (2, &a.domains[1].1)]);
    let order = [
        line_of(&console, 1, "VICTIM hold start"),
        line_of(&console, 2, "ATTACK masked_spin start"),
        line_of(&console, 2, "ATTACK storm end"),
        line_of(&console, 1, "VICTIM hold end"),
    ];
    rec(
        tally,
        "the victim held (heartbeat watched) from before d2's masked spin to after its storm",
        order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
        &format!("line numbers {order:?}; {where_}"),
    );
    for key in ["ATTACK frames_outside_ram", "ATTACK storm end", "ATTACK leak_scan", "VICTIM hold end"] {
        let dom = if key.starts_with("VICTIM") { 1 } else { 2 };
        if let Some(l) = console
            .lines()
            .find(|l| e2e::domain_line(l.trim_end()).is_some_and(|(d, b)| d == dom && b.starts_with(key)))
        {
            println!("    {name}: {}", l.trim_end());
        }
    }
    let sum = summary(&console);
    let what = |d: u16| sum.domains.iter().find(|(id, _)| *id == d).map(|(_, w)| w.as_str());
    for d in [1, 2] {
        rec(
            tally,
            &format!("summary says d{d}: shut down (poweroff)"),
            what(d) == Some("shut down (poweroff)"),
            &format!("{sum:?}"),
        );
    }
    rec(tally, "summary says verdict PASS", sum.verdict == Some(true), &format!("{sum:?}; {where_}"));
    rec(
        tally,
        "QEMU exit status carries the PASS verdict",
        code == Ok(board.exit_statuses().clean),
        &format!("QEMU exit {code:?}; {where_}"),
    );
    println!("  {name}: {:.1} s", started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_judges_crash_lines() {
        let c = "(d1) FAULT now gpa=0x30000000\n(d1) d1v0 crashed: no\n\
                 (lantern) [ERROR] d1v0 crashed: nested page fault (exit code 0x400, rip 0x1234, gpa 0x30000000, info1 0x4)\n";
        let l = crash_line(c, 1).unwrap();
        assert!(l.starts_with("(lantern)"));
        let board = |name| crate::boards::by_name(name).unwrap();
        assert!(names_fault(board("x86_64"), l));
        assert!(!names_fault(board("aarch64"), l));
        assert!(crash_line(c, 2).is_none());
        assert!(crash_line("(lantern) d10v0 crashed: x", 1).is_none());
    }
}
