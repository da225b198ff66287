//! A whole run: the checks in their order ([`run_checks`]), then what the
//! command line asks for (`fuzz` instead of the checks, `attack=D`/`victim`, `bench`, `clock-check`, `fault`,
//! `console-echo`, `linger`, `reboot`) and the end of the
//! domain ([`run`], [`shutdown`]).

use core::sync::atomic::Ordering;

use xen_abi::nr::shutdown as shutdown_reason;

use crate::console;
use crate::context::{Ctx, Outcome};
use crate::hypercall;
use crate::{
    attack, balloon, basics, bench, bringup, clock_check, fifo, grants, pv_console, pv_timer, report, runstate,
    time_area, upcall, va_area, vcpu_info,
};
use crate::{Guest, FAULT_GPA, MAX_VCPUS, VCPUS};

/// Run every check on the calling vCPU (vCPU 0), print the result lines and
/// the final `SCENARIO END` line, and return the totals.
pub fn run_checks(g: &dyn Guest) -> Outcome {
    if has_word(g, "victim") {
        attack::victim_fill(g);
    }
    let mut cx = Ctx::new(g);
    cx.vcpus = bringup::probe_vcpus(g);
    report::guest(&cx);
    basics::checks(&mut cx);
    upcall::callback_set(&mut cx);
    vcpu_info::refusals(&mut cx);
    vcpu_info::register_vcpu0(&mut cx);
    let (dummy, remote) = bringup::dummy_and_remote(cx.layout);
    bringup::dummy_vcpu(&mut cx, dummy);
    bringup::remote_vcpu(&mut cx, remote);
    time_area::checks(&mut cx);
    runstate::checks(&mut cx, remote);
    va_area::checks(&mut cx);
    pv_timer::checks(&mut cx);
    grants::checks(&mut cx);
    // The limit check leaves the domain at its maximum reservation: nothing
    // after it may populate memory.
    balloon::checks(&mut cx);
    pv_console::check(&mut cx);
    // Last: switching to FIFO event channels cannot be undone.
    fifo::checks(&mut cx);
    report::vcpus(&cx);
    // The isolation attacks, after everything else (see `attack`).
    if let Some(victim) = attack::target(g) {
        attack::run(&mut cx, victim);
    }
    if has_word(g, "victim") {
        attack::victim_hold(&mut cx);
    }
    if has_word(g, "bench") {
        bench::run(&cx);
    }
    if has_word(g, "clock-check") {
        clock_check::run(&cx);
    }
    let o = cx.outcome;
    cx.say(format_args!("SCENARIO END passed={} failed={}", o.passed, o.failed));
    o
}

/// Whether the guest command line contains `word`.
fn has_word(g: &dyn Guest, word: &str) -> bool {
    g.cmdline().split_ascii_whitespace().any(|w| w == word)
}

/// Run the scenario, echo one console-ring input line if the command line
/// says `console-echo`, then power off (every check passed; with `reboot`
/// on the command line, ask for a reboot instead) or crash (any failed) —
/// unless the command line says `linger`, in which case vCPU 0 idles
/// forever so a debugger can attach to a live system.
pub fn run(g: &dyn Guest) -> ! {
    if has_word(g, "fuzz") {
        crate::fuzz::run(g);
        shutdown(g, shutdown_reason::POWEROFF);
    }
    let o = run_checks(g);
    if has_word(g, "fault") {
        fault(g);
    }
    if has_word(g, "console-echo") {
        pv_console::echo(g);
    }
    if has_word(g, "linger") {
        console::line(&|b| g.console(b), format_args!("SCENARIO LINGER"));
        crate::debuggee::start_lingering(g);
        linger(g);
    }
    let reason = match (o.failed, has_word(g, "reboot")) {
        (0, false) => shutdown_reason::POWEROFF,
        (0, true) => shutdown_reason::REBOOT,
        _ => shutdown_reason::CRASH,
    };
    shutdown(g, reason)
}

/// The `fault` command-line word: announce `FAULT now`, then read
/// [`FAULT_GPA`], which no RAM backs. The hypervisor cannot handle that and
/// must crash this domain (only); should the read return anyway, say so and
/// crash ourselves so the test still fails visibly.
fn fault(g: &dyn Guest) -> ! {
    console::line(&|b| g.console(b), format_args!("FAULT now gpa={FAULT_GPA:#x}"));
    let mut word = [0u8; 4];
    g.read(FAULT_GPA, &mut word);
    console::line(&|b| g.console(b), format_args!("FAULT survived: read {:#x}", u32::from_le_bytes(word)));
    shutdown(g, shutdown_reason::CRASH)
}

/// `SCHEDOP_shutdown(reason)` (`xen_abi::nr::shutdown`); never returns
/// (spins if the hypervisor ignores the request, so the failure is visible
/// rather than silent).
pub fn shutdown(g: &dyn Guest, reason: u32) -> ! {
    let rc = hypercall::sched_shutdown(g, reason);
    console::line(&|b| g.console(b), format_args!("SCENARIO shutdown returned rc={rc}"));
    idle(g, 0)
}

/// Print `args` as one line (what went wrong), then shut down with
/// `SHUTDOWN_crash`: how the guests' panic and exception handlers end.
pub fn crash(g: &dyn Guest, args: core::fmt::Arguments<'_>) -> ! {
    console::line(&|b| g.console(b), args);
    shutdown(g, shutdown_reason::CRASH)
}

/// vCPU 0's idle loop while lingering: as [`idle`], calling the debugger's
/// target function on each turn.
fn linger(g: &dyn Guest) -> ! {
    g.upcalls_enabled(true);
    loop {
        VCPUS.alive[0].fetch_add(1, Ordering::AcqRel);
        crate::debuggee::tick(0);
        g.busy_wait(20_000);
        hypercall::sched_yield(g);
    }
}

/// Idle loop: stay alive (still updating runstate and time) by yielding.
fn idle(g: &dyn Guest, vcpu: u32) -> ! {
    g.upcalls_enabled(true);
    loop {
        if (vcpu as usize) < MAX_VCPUS {
            VCPUS.alive[vcpu as usize].fetch_add(1, Ordering::AcqRel);
        }
        g.busy_wait(20_000);
        hypercall::sched_yield(g);
    }
}
