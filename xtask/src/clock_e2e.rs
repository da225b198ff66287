//! The `clock` group of `cargo xtask test`: guest time must track host wall
//! time while the host is loaded. A CPU hog (busy threads in this process,
//! one per host CPU) runs from before QEMU starts — so the hypervisor
//! calibrates its counter on a loaded host — until the run ends. One demo
//! domain boots with `clock-check` and prints its pvclock time once a second
//! of guest time; each line is timestamped on arrival, and the guest's time
//! deltas are held against the host's. The counter rate the guest's lines
//! imply is also held against the frequency the hypervisor says it uses
//! (x86: the TSC as calibrated; arm64: CNTFRQ_EL0).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::boards::BoardSpec;
use crate::build::build;
use crate::opts::Opts;
use crate::qemu::qemu_command;
use crate::report::Tally;

/// How far guest time may drift from host wall time (and the stated
/// counter frequency from the measured one): the 5 %.
pub const TOLERANCE: f64 = 0.05;
/// How long the whole boot may take, hog included.
const BOOT_LIMIT: Duration = Duration::from_secs(150);
/// vCPUs of the one domain: the scenario's secondary-vCPU checks want a
/// second one; more would only slow the loaded run.
const VCPUS: u32 = 2;

/// Busy threads that keep every host CPU loaded until dropped (also when a
/// test step fails or panics: the drop stops and joins them).
pub struct Hog {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Hog {
    /// Starts `n` spinning threads.
    pub fn start(n: usize) -> Hog {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // Work the optimiser cannot drop, checked often
                        // enough that the hog stops promptly.
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    }
                })
            })
            .collect();
        Hog { stop, threads }
    }

    /// One thread per host CPU.
    pub fn per_cpu() -> Hog {
        Hog::start(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One `CLOCK n=.. t_ns=.. ticks=..` line and when it arrived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockLine {
    /// Host time of arrival, seconds from the first line's.
    pub host_s: f64,
    /// The guest's pvclock time, ns.
    pub guest_ns: u64,
    /// The guest's counter when it read that time.
    pub ticks: u64,
}

/// What one loaded boot measured.
#[derive(Clone, Debug, Default)]
pub struct Measurement {
    /// The counter frequency the hypervisor states, MHz.
    pub stated_mhz: Option<f64>,
    /// Guest time elapsed / host time elapsed, first to last `CLOCK` line.
    pub time_ratio: Option<f64>,
    /// Counter ticks per host second over the same span, MHz.
    pub counter_mhz: Option<f64>,
    /// Host seconds between the first and the last `CLOCK` line.
    pub span_s: f64,
    /// `CLOCK` lines seen.
    pub lines: usize,
    /// The guest's `CLOCK END` line, if it printed one.
    pub end: Option<String>,
    /// Every console line (for failure messages).
    pub console: Vec<String>,
}

/// The options of the loaded boot: one demo domain with `clock-check`.
pub fn opts(board: &'static dyn BoardSpec) -> Opts {
    Opts {
        exit: true,
        timeout: Some(BOOT_LIMIT.as_secs()),
        guest_cmdline: Some("clock-check".into()),
        demo_domains: Some(1),
        vcpus: Some(VCPUS),
        ..Opts::on(board)
    }
}

/// Boots `o` (already built as `a`) with a CPU hog beside QEMU until the
/// guest's `CLOCK END` line (or the limit), and measures.
pub fn measure_loaded(o: &Opts, a: &crate::build::Artifacts) -> Result<Measurement, String> {
    let _hog = Hog::per_cpu();
    let mut o = o.clone();
    o.serial_log = None;
    let (mut child, start, rx, _reader) = crate::run::spawn_timestamped(qemu_command(&o, a))?;
    let mut timed: Vec<(Instant, String)> = Vec::new();
    let outcome = loop {
        match rx.recv_timeout(BOOT_LIMIT.saturating_sub(start.elapsed())) {
            Ok((at, line)) => {
                let done = guest_body(&line).is_some_and(|b| b.starts_with("CLOCK END"));
                timed.push((at, line));
                if done {
                    break Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break Err(format!("no `CLOCK END` line within {} s", BOOT_LIMIT.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("QEMU exited before `CLOCK END`".to_string()),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let m = measurement(&timed);
    match outcome {
        Ok(()) => Ok(m),
        Err(e) => {
            let tail: Vec<&String> = m.console.iter().rev().take(12).rev().collect();
            Err(format!("{e}; last lines: {tail:?}"))
        }
    }
}

/// The body of a guest console line `(dN) body`.
fn guest_body(line: &str) -> Option<&str> {
    crate::e2e::domain_line(line.trim_end()).map(|(_, b)| b)
}

/// A `CLOCK n=.. t_ns=.. ticks=..` line's `(t_ns, ticks)`.
fn clock_fields(body: &str) -> Option<(u64, u64)> {
    let rest = body.strip_prefix("CLOCK n=")?;
    let mut t = None;
    let mut k = None;
    for kv in rest.split_whitespace() {
        match kv.split_once('=') {
            Some(("t_ns", v)) => t = v.parse().ok(),
            Some(("ticks", v)) => k = v.parse().ok(),
            _ => {}
        }
    }
    Some((t?, k?))
}

/// The counter frequency the hypervisor's boot line states: x86 `TSC
/// 2605.123 MHz, ...`, arm64 `generic counter 62.500 MHz ...`, riscv64
/// `timebase 10.000 MHz ...`.
pub fn stated_mhz(console: &[String]) -> Option<f64> {
    console.iter().find_map(|l| {
        ["TSC ", "generic counter ", "timebase "].iter().find_map(|p| {
            let at = l.find(p)?;
            let mut words = l[at + p.len()..].split_whitespace();
            let n: f64 = words.next()?.parse().ok()?;
            words.next()?.starts_with("MHz").then_some(n)
        })
    })
}

/// Everything measured from the timestamped console.
pub fn measurement(timed: &[(Instant, String)]) -> Measurement {
    let console: Vec<String> = timed.iter().map(|(_, l)| l.clone()).collect();
    let t0 = timed.first().map(|(t, _)| *t);
    let lines: Vec<ClockLine> = timed
        .iter()
        .filter_map(|(at, l)| {
            let (guest_ns, ticks) = clock_fields(guest_body(l)?)?;
            Some(ClockLine { host_s: (*at - t0?).as_secs_f64(), guest_ns, ticks })
        })
        .collect();
    let end = timed.iter().find_map(|(_, l)| guest_body(l).filter(|b| b.starts_with("CLOCK END")).map(str::to_string));
    let (time_ratio, counter_mhz, span_s) = rates(&lines).map_or((None, None, 0.0), |(r, c, s)| (Some(r), Some(c), s));
    Measurement { stated_mhz: stated_mhz(&console), time_ratio, counter_mhz, span_s, lines: lines.len(), end, console }
}

/// Guest time / host time, counter ticks per host µs (MHz) and the host
/// span, from the first to the last line (at least two lines a second
/// apart). Console latency shifts each arrival by milliseconds, which over
/// ten seconds is well inside the tolerance.
pub fn rates(lines: &[ClockLine]) -> Option<(f64, f64, f64)> {
    let (first, last) = (lines.first()?, lines.last()?);
    let host = last.host_s - first.host_s;
    if host < 1.0 {
        return None;
    }
    let guest = last.guest_ns.checked_sub(first.guest_ns)? as f64 / 1e9;
    let ticks = last.ticks.wrapping_sub(first.ticks) as f64;
    Some((guest / host, ticks / host / 1e6, host))
}

/// The board's part of `cargo xtask test --only clock`.
pub fn clock_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = board.name();
    let o = opts(board);
    let a = match build(&o) {
        Ok(a) => a,
        Err(e) => return tally.record(&format!("{name}: clock: build"), false, &e),
    };
    let m = match measure_loaded(&o, &a) {
        Ok(m) => m,
        Err(e) => return tally.record(&format!("{name}: clock: the guest printed its time for 10 s"), false, &e),
    };
    println!(
        "{name}: clock under a CPU hog: stated {:?} MHz, guest counter {:?} MHz, guest/host time {:?} over {:.1} s",
        m.stated_mhz, m.counter_mhz, m.time_ratio, m.span_s
    );
    let end_ok = m.end.as_deref().is_some_and(|e| !e.contains("error"));
    tally.record(
        &format!("{name}: clock: the guest printed its time for 10 s"),
        end_ok && m.lines >= MIN_LINES,
        &format!("{} CLOCK lines, end {:?}", m.lines, m.end),
    );
    let within = |x: Option<f64>| x.is_some_and(|x| (x - 1.0).abs() <= TOLERANCE);
    tally.record(
        &format!("{name}: clock: guest time tracks host wall time within 5 % under a CPU hog"),
        within(m.time_ratio),
        &format!("guest/host time {:?} over {:.1} s", m.time_ratio, m.span_s),
    );
    tally.record(
        &format!("{name}: clock: the hypervisor's counter frequency is the counter's real rate within 5 %"),
        within(m.stated_mhz.zip(m.counter_mhz).map(|(s, c)| s / c)),
        &format!("hypervisor says {:?} MHz, guest counter ran at {:?} MHz", m.stated_mhz, m.counter_mhz),
    );
}

/// `cargo xtask bench --only clock`: `runs` loaded boots of `board`, one
/// line each, then the spread of the stated frequency and the worst
/// guest/host time ratio (the figures of `docs/reliability.md`).
pub fn bench(board: &'static dyn BoardSpec, runs: usize) -> Result<(), String> {
    let name = board.name();
    let o = opts(board);
    let a = build(&o)?;
    let mut stated = Vec::new();
    let mut worst: Option<f64> = None;
    for run in 1..=runs {
        match measure_loaded(&o, &a) {
            Ok(m) => {
                println!(
                    "clock {name} run {run}/{runs}: stated {} MHz, counter {} MHz, guest/host time {} over {:.2} s",
                    m.stated_mhz.map_or("?".into(), |x| format!("{x:.3}")),
                    m.counter_mhz.map_or("?".into(), |x| format!("{x:.3}")),
                    m.time_ratio.map_or("?".into(), |x| format!("{x:.5}")),
                    m.span_s
                );
                stated.extend(m.stated_mhz);
                if let Some(r) = m.time_ratio {
                    worst = Some(worst.map_or(r, |w: f64| if (r - 1.0).abs() > (w - 1.0).abs() { r } else { w }));
                }
            }
            Err(e) => println!("clock {name} run {run}/{runs}: {e}"),
        }
    }
    stated.sort_by(f64::total_cmp);
    if let (Some(lo), Some(hi)) = (stated.first(), stated.last()) {
        println!(
            "clock {name}: {} boots under a CPU hog: stated frequency {lo:.3}..{hi:.3} MHz (median {:.3}), \
             worst guest/host time ratio {}",
            stated.len(),
            stated[stated.len() / 2],
            worst.map_or("?".into(), |w| format!("{w:.5}"))
        );
    }
    Ok(())
}

/// At least this many `CLOCK` lines (of the guest's 11) for a verdict.
const MIN_LINES: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stated_frequency_is_read_from_every_board() {
        let x86 = vec!["(lantern) TSC 2605.123 MHz, APIC timer 62.500 MHz (against the HPET)".to_string()];
        assert_eq!(stated_mhz(&x86), Some(2605.123));
        let arm = vec!["x".to_string(), "(lantern) generic counter 62.500 MHz (CNTFRQ_EL0)".to_string()];
        assert_eq!(stated_mhz(&arm), Some(62.5));
        let riscv = vec!["(lantern) timebase 10.000 MHz (from the DTB)".to_string()];
        assert_eq!(stated_mhz(&riscv), Some(10.0));
        assert_eq!(stated_mhz(&["TSC calibrated".to_string()]), None);
    }

    #[test]
    fn rates_come_from_the_first_and_last_lines() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let timed = vec![
            (at(0.0), "(lantern) TSC 3000.000 MHz, APIC".to_string()),
            (at(0.5), "(d1) CLOCK n=0 t_ns=100 ticks=1000".to_string()),
            (at(5.5), "(d1) CLOCK n=5 t_ns=6000000100 ticks=12500001000".to_string()),
            (at(10.5), "(d1) CLOCK n=10 t_ns=12000000100 ticks=25000001000".to_string()),
            (at(10.6), "(d1) CLOCK END seconds=10".to_string()),
        ];
        let m = measurement(&timed);
        assert_eq!(m.lines, 3);
        assert_eq!(m.end.as_deref(), Some("CLOCK END seconds=10"));
        assert!((m.time_ratio.unwrap() - 1.2).abs() < 1e-9, "{m:?}");
        assert!((m.counter_mhz.unwrap() - 2500.0).abs() < 1e-6, "{m:?}");
        assert_eq!(m.stated_mhz, Some(3000.0));
    }

    #[test]
    fn the_hog_stops_when_dropped() {
        let started = Instant::now();
        drop(Hog::start(2));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
