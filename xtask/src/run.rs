//! Running QEMU: `cargo xtask run` itself, and the plain and timed boots the
//! tests and benchmarks use (the timed one timestamps every console line).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::build::{build, Artifacts};
use crate::e2e;
use crate::opts::GdbTransport;
use crate::opts::{parse_opts, run_usage, Opts};
use crate::qemu::{command_line, domain_gdb_ports, qemu_command, GDB_PORT_SPAN};
use crate::summary::{hv_domain_line, summary, Summary};

/// How long a boot may run: `--timeout`, or 120 s with `--exit`, else for ever.
fn limit(opts: &Opts) -> Option<Duration> {
    opts.timeout.or(if opts.exit { Some(120) } else { None }).map(Duration::from_secs)
}

/// Boots QEMU and waits for it (or the timeout); returns QEMU's exit status.
pub fn boot(opts: &Opts, a: &Artifacts) -> Result<i32, String> {
    let mut cmd = qemu_command(opts, a);
    // The console is interactive only on a terminal run without --exit /
    // --timeout; otherwise QEMU must not read the caller's stdin.
    if opts.exit || opts.timeout.is_some() || opts.serial_log.is_some() {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    let limit = limit(opts);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.code().unwrap_or(-1));
        }
        if limit.is_some_and(|l| start.elapsed() > l) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("QEMU timed out after {} s", limit.unwrap_or_default().as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cargo xtask run`: build, announce the gdb port, then boot (or print the
/// QEMU command line with `--dry-run`).
pub fn cmd_run(args: &[String]) -> Result<(), String> {
    let Some(mut opts) = parse_opts(args)? else {
        println!("{}", run_usage());
        return Ok(());
    };
    crate::setup::ensure_rust_targets()?;
    crate::setup::ensure_qemu_and_gdb()?;
    if let Some(flavour) = opts.linux {
        let linux = crate::linux::prepare(flavour)?;
        eprintln!(
            "xtask: booting {} with a busybox initramfs (its init reports on a `{} …` line)",
            linux.package,
            crate::linux::INIT_BANNER
        );
        let extra = opts.guest_cmdline.take().unwrap_or_default();
        opts.boot_linux(&linux, &extra);
    }
    let port = *opts.gdb_port.get_or_insert(opts.board.default_gdb_port());
    let a = build(&opts)?;
    let ports = gdb_ports_line(&opts, &a.domains, port);
    if opts.dry_run {
        eprintln!("xtask: {ports}");
        println!("{}", command_line(&qemu_command(&opts, &a)));
        return Ok(());
    }
    eprintln!("xtask: {ports}");
    eprintln!("xtask: attach with `cargo xtask gdb --arch {} --gdb-port {port} [--domain N]`", opts.board.name());
    let exit = opts.board.exit_statuses();
    match boot(&opts, &a)? {
        c if c == exit.clean => Ok(()),
        c if c == exit.failed => Err("the hypervisor's verdict: some domain did not end cleanly".into()),
        code => Err(format!("QEMU exited with status {code} (no verdict from the hypervisor)")),
    }
}

/// Which gdb session listens where: `gdb: whole system on 127.0.0.1:P;
/// d1 on :P+1; ...` (the per-domain ports only on the virtio-serial line).
pub fn gdb_ports_line(opts: &Opts, domains: &[(u16, String)], port: u16) -> String {
    let mut line = format!("gdb: whole system on 127.0.0.1:{port}");
    if opts.gdb_transport == GdbTransport::Virtio {
        let each = domain_gdb_ports(port, domains);
        for (d, tcp) in &each {
            line.push_str(&format!("; d{d} on :{tcp}"));
        }
        if !each.is_empty() {
            line.push_str(" (cargo xtask gdb --domain N)");
        }
        if each.len() < domains.len() {
            line.push_str(&format!("; d{} and up have no port of their own", each.len() + 1));
        }
    }
    line
}

/// How a timed boot went (see [`boot_timed`]).
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// QEMU's exit status (`None` if it was killed at the timeout).
    pub status: Option<i32>,
    /// Every console line.
    pub lines: Vec<String>,
    /// QEMU start → first console line.
    pub first_line: Option<Duration>,
    /// QEMU start → first guest line (`(dN) ...`).
    pub first_guest_line: Option<Duration>,
    /// QEMU start → the last `(lantern) dN: shut down` line.
    pub last_shutdown: Option<Duration>,
    /// QEMU start → exit.
    pub total: Duration,
}

impl Timing {
    /// The closing lines of this run.
    pub fn summary(&self) -> Summary {
        summary(&self.lines.join("\n"))
    }
}

/// Boots with the console on a pipe and timestamps its lines; `echo`
/// prints them as they come.
pub fn boot_timed(opts: &Opts, a: &Artifacts, echo: bool) -> Result<Timing, String> {
    let mut o = opts.clone();
    o.serial_log = None;
    let (mut child, start, rx, reader) = spawn_timestamped(qemu_command(&o, a))?;
    let deadline = start + limit(opts).unwrap_or(Duration::from_secs(120));
    let mut t = Timing::default();
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((at, line)) => {
                if echo {
                    println!("{line}");
                }
                let at = at - start;
                t.first_line.get_or_insert(at);
                if e2e::domain_line(&line).is_some() {
                    t.first_guest_line.get_or_insert(at);
                }
                if hv_domain_line(&line).is_some_and(|(_, w)| w.starts_with("shut down")) {
                    t.last_shutdown = Some(at);
                }
                t.lines.push(line);
            }
            // The reader ends when QEMU closes its stdout, i.e. exits.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !killed && Instant::now() >= deadline {
            let _ = child.kill();
            killed = true;
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    t.status = if killed { None } else { status.code() };
    t.total = start.elapsed();
    let _ = reader.join();
    Ok(t)
}

/// What [`spawn_timestamped`] returns: the child, its start, its console
/// lines with the time each arrived, and the thread reading them (it ends
/// when the child closes its stdout).
pub(crate) type Timestamped = (Child, Instant, mpsc::Receiver<(Instant, String)>, std::thread::JoinHandle<()>);

/// Starts `cmd` (a QEMU whose console is its stdout) with stdin on
/// /dev/null, and timestamps its console lines as a thread reads them.
pub(crate) fn spawn_timestamped(mut cmd: Command) -> Result<Timestamped, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    let out = child.stdout.take().ok_or("no QEMU stdout")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    // Bytes, not `lines()`: a kernel's console is not guaranteed UTF-8, and
    // one bad byte must not end the reading.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
            if tx.send((Instant::now(), String::from_utf8_lossy(&line).trim_end().to_string())).is_err() {
                break;
            }
        }
    });
    Ok((child, start, rx, reader))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Option<u16> {
    free_ports(1)
}

/// The base port of a run's gdb line: `P` such that `P` (the whole
/// system's session) and the `P + N` of every domain that may have a
/// session of its own are all free ([`GDB_PORT_SPAN`] ports).
pub fn free_gdb_ports() -> Option<u16> {
    free_ports(GDB_PORT_SPAN)
}

/// `P` such that the `n` TCP ports `P..P + n` on 127.0.0.1 are all free
/// (within `LANTERN_PORT_RANGE` when it is set).
pub fn free_ports(n: u16) -> Option<u16> {
    let n = n.max(1);
    let all_free = |p: u16| (0..n).all(|i| p.checked_add(i).is_some_and(port_free));
    // `LANTERN_PORT_RANGE=START-END`: only ports from that range (several
    // test runs on one machine, each with a range of its own).
    if let Some((lo, hi)) = std::env::var(PORT_RANGE_VAR).ok().as_deref().and_then(parse_port_range) {
        // Round robin from after the last ports handed out: they may not
        // be bound yet, and binding alone would hand them out twice. The
        // block stays inside the range (the next one is another run's).
        let bases = (hi - lo) as u32 + 1;
        let bases = bases.checked_sub(n as u32 - 1)?;
        let start = NEXT_IN_RANGE.load(std::sync::atomic::Ordering::Relaxed);
        let port = (0..bases).map(|i| lo + ((start + i) % bases) as u16).find(|p| all_free(*p))?;
        NEXT_IN_RANGE.store((port - lo) as u32 + n as u32, std::sync::atomic::Ordering::Relaxed);
        return Some(port);
    }
    // An ephemeral port the system picks, as long as the ones after it are
    // free too (a few tries).
    (0..32).find_map(|_| {
        let p = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        all_free(p).then_some(p)
    })
}

/// Whether 127.0.0.1:`port` can be listened on now.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The environment variable that confines [`free_port`] to a range.
pub const PORT_RANGE_VAR: &str = "LANTERN_PORT_RANGE";

/// Where [`free_port`] looks first in the range (an offset from its start).
static NEXT_IN_RANGE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// `START-END` → `(START, END)`.
fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once('-')?;
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo <= hi).then_some((lo, hi))
}

/// Starts `cmd` (a QEMU whose console is its stdout) with stdin on
/// /dev/null, and returns the time from its start to the first console line
/// that contains `needle`. QEMU is killed right then — a benchmark that
/// times a boot need not wait for the power-off — or at `limit`, which is
/// an error, as is QEMU exiting before the line.
pub fn time_to_line(cmd: Command, needle: &str, limit: Duration) -> Result<Duration, String> {
    let (mut child, start, rx, reader) = spawn_timestamped(cmd)?;
    let mut tail: Vec<String> = Vec::new();
    let outcome = loop {
        let left = limit.saturating_sub(start.elapsed());
        match rx.recv_timeout(left) {
            Ok((at, line)) if line.contains(needle) => break Ok(at - start),
            Ok((_, line)) => {
                tail.push(line);
                if tail.len() > 10 {
                    tail.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break Err(format!("no `{needle}` line within {} s; last lines: {tail:?}", limit.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(format!("QEMU exited before a `{needle}` line; last lines: {tail:?}"))
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    // Not joined: a process QEMU's stdout was handed on to would keep the
    // pipe open; the reader ends at the pipe's end or its next line.
    drop(reader);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_free_ports_come_from_the_range() {
        // The process-wide cursor is shared with other tests: only the
        // block's properties are checked, not where it starts.
        let want = 5;
        let p = free_ports(want).expect("a block");
        assert!((0..want).all(|i| port_free(p + i)), "{p}");
        if let Some((lo, hi)) = std::env::var(PORT_RANGE_VAR).ok().as_deref().and_then(parse_port_range) {
            assert!(p >= lo && p + want - 1 <= hi, "{p} outside {lo}-{hi}");
        }
        // The next block does not overlap: the cursor moved past it.
        let q = free_ports(want).expect("another block");
        assert!(q >= p + want || q + want <= p, "{p} and {q} overlap");
        assert!(free_gdb_ports().is_some());
    }

    #[test]
    fn the_gdb_ports_line_names_each_domains_port() {
        let opts = Opts::default();
        let two = [(1, "guest64".to_string()), (2, "guest32".to_string())];
        assert_eq!(
            gdb_ports_line(&opts, &two, 1234),
            "gdb: whole system on 127.0.0.1:1234; d1 on :1235; d2 on :1236 (cargo xtask gdb --domain N)"
        );
        let uart = Opts { gdb_transport: GdbTransport::Uart, ..Opts::default() };
        assert_eq!(gdb_ports_line(&uart, &two, 1234), "gdb: whole system on 127.0.0.1:1234");
        let many: Vec<(u16, String)> = (1..=9).map(|i| (i, format!("g{i}"))).collect();
        let line = gdb_ports_line(&opts, &many, 4000);
        assert!(line.contains("d6 on :4006") && !line.contains(":4007"), "{line}");
        assert!(line.ends_with("d7 and up have no port of their own"), "{line}");
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(parse_port_range("47200-47299"), Some((47200, 47299)));
        assert_eq!(parse_port_range("5-5"), Some((5, 5)));
        assert_eq!(parse_port_range("9-5"), None);
        assert_eq!(parse_port_range("47200"), None);
    }

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn time_to_line_stops_at_the_line_and_fails_without_it() {
        // Found: returned at the line, long before the command would end.
        let t = time_to_line(sh("echo boot; echo 'x init up y'; exec sleep 30"), "init up", Duration::from_secs(10))
            .unwrap();
        assert!(t < Duration::from_secs(5), "{t:?}");
        // Ended without the line, and never printed it in time.
        let e = time_to_line(sh("echo boot; echo done"), "init up", Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("exited before") && e.contains("done"), "{e}");
        let e = time_to_line(sh("echo boot; exec sleep 30"), "init up", Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("within"), "{e}");
    }
}
