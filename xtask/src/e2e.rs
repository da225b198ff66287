//! End to end on a board: a QEMU session with its serial console in a log
//! file (stdin from /dev/null, killed on drop) or, for tests that type at
//! it, behind a Unix socket copied into that log, waiting for console lines,
//! turning the test guests' `CHECK` lines into tallied results, and the
//! board's scenario test of `cargo xtask test`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::boards::BoardSpec;
use crate::build::{build, work_dir, Artifacts};
use crate::opts::Opts;
use crate::qemu::qemu_command;
use crate::report::Tally;
use crate::summary::summary;

/// A running QEMU whose console goes to `log`.
pub struct Session {
    child: Child,
    /// The console log file.
    pub log: PathBuf,
}

impl Session {
    /// Spawns `cmd` (whose serial console already goes to `log`).
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<Session, String> {
        let _ = std::fs::remove_file(log);
        std::fs::write(log, b"").map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| format!("cannot start QEMU ({e}); is it installed?"))?;
        Ok(Session { child, log: log.to_path_buf() })
    }

    /// Console text so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until `pred` holds for the console text, QEMU exits, or `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console();
            if pred(&text) {
                return Ok(text);
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                let text = self.console();
                return if pred(&text) {
                    Ok(text)
                } else {
                    Err(format!("QEMU exited ({st}) before the expected output"))
                };
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {}s waiting for console output", timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<i32, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(st.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!("QEMU still running after {}s: killed", timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to QEMU's console socket once QEMU has created it (QEMU waits
/// for us before it starts the machine, so nothing is missed), and copies
/// everything QEMU sends on it to `log` in the background. The stream is
/// what the serial device sent; QEMU's own chardev log can repeat a byte
/// the device had to retry when the socket was momentarily full.
pub fn connect_console(sock: &Path, log: &Path) -> Result<UnixStream, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match UnixStream::connect(sock) {
            Ok(s) => {
                let mut reader = s.try_clone().map_err(|e| e.to_string())?;
                let mut out = std::fs::OpenOptions::new()
                    .append(true)
                    .open(log)
                    .map_err(|e| format!("{}: {e}", log.display()))?;
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = reader.read(&mut buf) {
                        if out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
                return Ok(s);
            }
            Err(e) if Instant::now() > deadline => return Err(format!("{}: {e}", sock.display())),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One guest check result from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Domain id from the `(dN) ` prefix.
    pub domain: u16,
    /// Check name.
    pub name: String,
    /// Passed?
    pub passed: bool,
    /// Reason on failure.
    pub reason: String,
}

/// Splits a console line `(dN) rest` into `(N, rest)`.
pub fn domain_line(line: &str) -> Option<(u16, &str)> {
    let rest = line.strip_prefix("(d")?;
    let close = rest.find(") ")?;
    Some((rest[..close].parse().ok()?, &rest[close + 2..]))
}

/// Every `CHECK PASS name` / `CHECK FAIL name: reason` line.
pub fn checks(console: &str) -> Vec<Check> {
    console
        .lines()
        .filter_map(|l| {
            let (domain, body) = domain_line(l.trim_end())?;
            if let Some(name) = body.strip_prefix("CHECK PASS ") {
                Some(Check { domain, name: name.to_string(), passed: true, reason: String::new() })
            } else {
                let rest = body.strip_prefix("CHECK FAIL ")?;
                let (name, reason) = rest.split_once(": ").unwrap_or((rest, ""));
                Some(Check { domain, name: name.to_string(), passed: false, reason: reason.to_string() })
            }
        })
        .collect()
}

/// `SCENARIO END passed=N failed=M` of domain `dom`, if printed.
pub fn scenario_end(console: &str, dom: u16) -> Option<(u64, u64)> {
    console.lines().find_map(|l| {
        let (d, body) = domain_line(l.trim_end())?;
        let rest = body.strip_prefix("SCENARIO END ")?;
        if d != dom {
            return None;
        }
        let mut p = None;
        let mut f = None;
        for kv in rest.split_whitespace() {
            match kv.split_once('=') {
                Some(("passed", v)) => p = v.parse().ok(),
                Some(("failed", v)) => f = v.parse().ok(),
                _ => {}
            }
        }
        Some((p?, f?))
    })
}

/// A number as the guests and gdb print them: `0x`-prefixed hex or decimal.
pub fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A number from domain `dom`'s `REPORT vcpu=0 ...` lines.
pub fn vcpu0_report(console: &str, dom: u16, key: &str) -> Option<u64> {
    report_values(console, dom, &[("vcpu", "0")])
        .into_iter()
        .flatten()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| num(&v))
}

/// `REPORT k=v ...` values of domain `dom` whose line contains all of `filter`'s pairs.
pub fn report_values(console: &str, dom: u16, filter: &[(&str, &str)]) -> Vec<Vec<(String, String)>> {
    console
        .lines()
        .filter_map(|l| {
            let (d, body) = domain_line(l.trim_end())?;
            let rest = body.strip_prefix("REPORT ")?;
            if d != dom {
                return None;
            }
            let kv: Vec<(String, String)> = rest
                .split_whitespace()
                .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect();
            filter.iter().all(|(k, v)| kv.iter().any(|(a, b)| a == k && b == v)).then_some(kv)
        })
        .collect()
}

/// Records every guest check of `domains` under `label`, and a failure for
/// a domain whose scenario did not finish or whose counts disagree.
pub fn tally_guest_checks(tally: &mut Tally, label: &str, console: &str, domains: &[(u16, &str)]) {
    let all = checks(console);
    for (dom, guest) in domains {
        let mine: Vec<&Check> = all.iter().filter(|c| c.domain == *dom).collect();
        for c in &mine {
            tally.record(&format!("{label} {guest} (d{dom}): {}", c.name), c.passed, &c.reason);
        }
        match scenario_end(console, *dom) {
            Some((p, f)) => {
                let seen_p = mine.iter().filter(|c| c.passed).count() as u64;
                let seen_f = mine.len() as u64 - seen_p;
                let ok = (p, f) == (seen_p, seen_f) && p > 0;
                tally.record(
                    &format!("{label} {guest} (d{dom}): scenario completed"),
                    ok,
                    &format!("guest says passed={p} failed={f}, console shows {seen_p}/{seen_f}"),
                );
            }
            None => tally.record(
                &format!("{label} {guest} (d{dom}): scenario completed"),
                false,
                "no `SCENARIO END` line on the console",
            ),
        }
    }
}

/// A board's part of `cargo xtask test`: boots the demo guests with
/// `--exit`, records every `CHECK` line, that each scenario completed, that
/// the hypervisor's closing lines say every domain powered off and PASS, and
/// QEMU's exit status.
/// Builds what `o` runs and boots it with its console in `log`; a failure
/// of either is recorded in `tally` as `{name}: build` / `{name}: boot`.
pub fn build_and_boot(o: &Opts, log: &Path, name: &str, tally: &mut Tally) -> Option<(Artifacts, Session)> {
    let a = build(o).map_err(|e| tally.record(&format!("{name}: build"), false, &e)).ok()?;
    let s =
        Session::spawn(qemu_command(o, &a), log).map_err(|e| tally.record(&format!("{name}: boot"), false, &e)).ok()?;
    Some((a, s))
}

pub fn scenario_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = board.name();
    let log = work_dir(board).join("e2e-console.log");
    let o = Opts { exit: true, timeout: Some(180), serial_log: Some(log.clone()), ..Opts::on(board) };
    let Some((a, mut s)) = build_and_boot(&o, &log, name, tally) else { return };
    let code = s.wait_exit(Duration::from_secs(180));
    let console = s.console();
    let doms: Vec<(u16, &str)> = a.domains.iter().map(|(d, n)| (*d, n.as_str())).collect();
    tally_guest_checks(tally, name, &console, &doms);
    if a.domains.len() >= 2 {
        // The grant checks must have run, not been skipped: the last check
        // of each side.
        let ran = |dom: u16, name: &str| checks(&console).iter().any(|c| c.domain == dom && c.name == name);
        tally.record(
            &format!("{name}: grant tables exercised between d1 and d2"),
            ran(1, "grant_revoke") && ran(2, "grant_unmap"),
            "no grant_revoke (d1) or grant_unmap (d2) check on the console",
        );
    }
    let sum = summary(&console);
    for (d, _) in &a.domains {
        let what = sum.domains.iter().find(|(id, _)| id == d).map(|(_, w)| w.as_str());
        tally.record(
            &format!("{name}: hypervisor says d{d} shut down (poweroff)"),
            what == Some("shut down (poweroff)"),
            &format!("{what:?}"),
        );
    }
    tally.record(&format!("{name}: hypervisor verdict PASS"), sum.verdict == Some(true), &format!("{sum:?}"));
    // No gdb port here, so QEMU has neither the virtio-serial device nor a
    // second UART: an absent UART reads all ones, and a stub that took it
    // for a line parsed 0xff bytes between every two slices.
    tally.record(
        &format!("{name}: without a gdb port there is no gdb line"),
        console.lines().any(|l| l.contains("gdb line: none")),
        &format!("no `gdb line: none` line; console in {}", log.display()),
    );
    tally.record(
        &format!("{name}: QEMU exit status carries the clean verdict"),
        code == Ok(board.exit_statuses().clean),
        &format!("QEMU exit {code:?}, console in {}", log.display()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "(lantern) booting\n(d1) CHECK PASS default_vcpu_info\n(d1) CHECK FAIL enxio: got -22\n\
                       (d2) CHECK PASS x\n(d1) REPORT vcpu=0 vcpu_info=slot\n(d1) SCENARIO END passed=1 failed=1\n";

    #[test]
    fn parses_checks_reports_and_ends() {
        let c = checks(LOG);
        assert_eq!(c.len(), 3);
        assert_eq!(c[1], Check { domain: 1, name: "enxio".into(), passed: false, reason: "got -22".into() });
        assert_eq!(scenario_end(LOG, 1), Some((1, 1)));
        assert_eq!(scenario_end(LOG, 2), None);
        let r = report_values(LOG, 1, &[("vcpu", "0")]);
        assert_eq!(r[0][1], ("vcpu_info".to_string(), "slot".to_string()));
    }

    #[test]
    fn unfinished_scenario_is_a_failure() {
        let mut t = Tally::default();
        tally_guest_checks(&mut t, "x86_64", LOG, &[(1, "g64"), (2, "g32")]);
        // d1: 1 pass + 1 fail + completed(ok: counts agree); d2: 1 pass + not completed.
        assert_eq!((t.passed, t.failed), (3, 2));
    }
}
