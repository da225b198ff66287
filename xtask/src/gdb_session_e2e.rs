//! gdb end to end, session hygiene and registers (part of the live gdb test,
//! on the system [`crate::gdb_e2e::live_test`] booted): x86 control and
//! segment-base registers against what the guest set up, `P` register
//! writes, `bt` through nested guest frames, README's `$lantern` example
//! verbatim, `monitor stats` counting hostile input (which must not reach
//! the console), `kill` answering at once and resuming the guests, and
//! Ctrl-C under `cargo xtask gdb` reaching gdb without killing it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boards::BoardSpec;
use crate::e2e::{num, vcpu0_report, Session};
use crate::gdb::{self, print_values, runstate_total, Json, SymbolFile};
use crate::report::Tally;

/// A domain of the live system as these checks need it.
pub struct LiveDomain {
    /// Domain id.
    pub id: u16,
    /// Its symbols.
    pub symbols: Vec<SymbolFile>,
    /// gdb's thread number of its vCPU 0.
    pub first_thread: u32,
}

/// README's example, exactly as printed there.
pub const README_EXAMPLE: &str = r#"print $lantern("d1v0", "evtchn_pending_sel")"#;

/// x86 CR0.PE and CR0.PG, EFER.LMA.
const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const EFER_LMA: u64 = 1 << 10;
/// The value the register round trip writes.
const PROBE: u64 = 0x1234;
/// The longest `kill` may take beyond a plain attach and detach.
const KILL_BUDGET: Duration = Duration::from_secs(1);

/// Runs every check of this module on the live system; `console` is what
/// the guests printed up to now, `log` the console log file.
pub fn checks(
    board: &'static dyn BoardSpec,
    port: u16,
    doms: &[LiveDomain],
    console: &str,
    s: &Session,
    work: &Path,
    tally: &mut Tally,
) {
    let name = format!("{} gdb", board.name());
    let mut rec = |what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let timeout = Duration::from_secs(180);
    let x86 = board.name() == "x86_64";
    let Some(d1) = doms.first() else { return rec("a domain to debug", false, "none") };

    // Registers, `P`, `bt` and the README example on d1's vCPU 0, stopped
    // wherever the guest idles (inside the scenario's nested functions).
    let reg = if x86 { "rax" } else { "x5" };
    // README's example in a Rust frame (frame 0 may be the hypercall page).
    let mut cmds = vec![format!("thread {}", d1.first_thread), "frame 1".into(), "info frame".into()];
    cmds.push(README_EXAMPLE.into());
    cmds.push("frame 0".into());
    cmds.extend([
        format!("set $lantern_saved = ${reg}"),
        "set debug remote 1".into(),
        format!("set ${reg} = {PROBE:#x}"),
        "set debug remote 0".into(),
        format!("p/x ${reg}"),
        format!("set ${reg} = $lantern_saved"),
        format!("p ${reg} == $lantern_saved"),
    ]);
    if x86 {
        cmds.extend(
            ["p/x $cr3", "p/x (unsigned long)&guest_pml4", "p/x $cr0", "p/x $efer", "p/x $fs_base"].map(String::from),
        );
        cmds.push("p/x $gs_base".into());
    }
    let features = board.gdb_feature_registers();
    for r in features.iter().flat_map(|f| f.registers) {
        cmds.push(format!("p/x ${r}"));
    }
    cmds.push("bt 8".into());
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = match gdb::run_batch(board, port, &d1.symbols, &refs, timeout) {
        Ok(o) => o,
        Err(e) => return rec("run gdb for the register checks", false, &e),
    };
    let text = out.text();
    let values = print_values(&out.stdout);
    let value = |i: usize| values.get(i).and_then(|v| num(v));
    let guest_sel = vcpu0_report(console, d1.id, "pending_sel");
    rec(
        &format!("README's `{README_EXAMPLE}` works as printed in a Rust frame (= the guest's pending_sel)"),
        text.contains("source language rust") && value(0).is_some() && value(0) == guest_sel,
        &format!("gdb printed {values:?}, guest {guest_sel:x?}; {text}"),
    );
    rec(
        &format!("`set ${reg} = {PROBE:#x}` goes out as one `P` packet, accepted"),
        text.contains("Sending packet: $P") && !text.contains("Sending packet: $G"),
        &text,
    );
    rec(
        &format!("`p ${reg}` reads back {PROBE:#x}, and the old value is restored"),
        value(1) == Some(PROBE) && matches!(values.get(2).map(String::as_str), Some("1" | "true")),
        &format!("{values:?}"),
    );
    if x86 {
        let (cr3, pml4, cr0, efer) = (value(3), value(4), value(5), value(6));
        rec(
            "d1: $cr3 is the guest's own page table (&guest_pml4), page-aligned",
            cr3.is_some_and(|c| c != 0 && c % 4096 == 0) && cr3 == pml4,
            &format!("cr3 {cr3:x?}, &guest_pml4 {pml4:x?}; {text}"),
        );
        rec(
            "d1 (64-bit): $cr0 has PE and PG, $efer has LMA",
            cr0.is_some_and(|c| c & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG) && efer.is_some_and(|e| e & EFER_LMA != 0),
            &format!("cr0 {cr0:x?}, efer {efer:x?}"),
        );
        rec("d1: $fs_base and $gs_base print", value(7).is_some() && value(8).is_some(), &format!("{values:?}"));
    }
    if let Some(f) = features {
        let printed: Vec<Option<u64>> = (0..f.registers.len()).map(|i| value(3 + i)).collect();
        let all_print = printed.iter().all(Option::is_some);
        let equal = printed.windows(2).all(|w| w[0] == w[1]);
        rec(f.name, all_print && (!f.equal || equal), &format!("{values:?}; {text}"));
    }
    let frames: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with('#')).collect();
    // Frames inlined into frame 0 print without an address: at least one
    // caller must have been unwound from the stack (`#N  0x... in f (...)`).
    let unwound = frames.iter().skip(1).filter(|f| f.contains(" in ") && f.contains(" 0x")).count();
    rec(
        "d1v0: `bt` unwinds at least 2 named frames, a caller among them",
        frames.len() >= 2 && unwound >= 1 && frames.iter().take(2).all(|f| !f.contains("?? (")),
        &format!("{frames:#?}; {text}"),
    );

    // The 32-bit domain's vCPU, in the same description.
    if let (true, Some(d2)) = (x86, doms.get(1)) {
        let cmds = [format!("thread {}", d2.first_thread), "p/x $cr0".into(), "p/x $efer".into(), "p/x $cr3".into()];
        let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
        match gdb::run_batch(board, port, &d2.symbols, &refs, timeout) {
            Ok(o) => {
                let v: Vec<Option<u64>> = print_values(&o.stdout).iter().map(|v| num(v)).collect();
                let (cr0, efer) = (v.first().copied().flatten(), v.get(1).copied().flatten());
                rec(
                    &format!("d{} (32-bit): $cr0 has PE, $efer no LMA, $cr3 prints", d2.id),
                    cr0.is_some_and(|c| c & CR0_PE != 0) && efer.is_some_and(|e| e & EFER_LMA == 0) && v.len() == 3,
                    &format!("{v:x?}; {}", o.text()),
                );
            }
            Err(e) => rec("run gdb for d2's registers", false, &e),
        }
    }

    stats_check(board, port, &mut rec, timeout);
    rec(
        "gdbstub's own log lines (Unknown command) stay off the shared console",
        !s.console().contains("Unknown command"),
        "grep the console log for `Unknown command`",
    );
    kill_check(board, port, &mut rec, timeout);
    ctrl_c_check(board, port, work, &mut rec);
}

/// The stub's counters, from `monitor stats --json`.
fn stats(board: &dyn BoardSpec, port: u16, timeout: Duration) -> Result<Json, String> {
    let out = gdb::run_batch(board, port, &[], &["monitor stats --json"], timeout)?;
    out.json_lines()
        .iter()
        .filter_map(|l| Json::parse(l).ok())
        .find_map(|j| j.get("stats").cloned())
        .ok_or_else(|| format!("no stats in {}", out.text()))
}

/// Hostile input of known counts between two `monitor stats`.
fn stats_check(board: &dyn BoardSpec, port: u16, rec: &mut dyn FnMut(&str, bool, &str), timeout: Duration) {
    const UNKNOWN: i128 = 5;
    const REJECTED: i128 = 3;
    const BAD_CHECKSUM: i128 = 2;
    let before = stats(board, port, timeout);
    let mut bytes = Vec::new();
    for _ in 0..UNKNOWN {
        bytes.extend(lantern_gdb_frame(b"vLanternNoSuchPacket"));
    }
    for _ in 0..REJECTED {
        bytes.extend(lantern_gdb_frame(b"mzz,qq"));
    }
    for _ in 0..BAD_CHECKSUM {
        bytes.extend(b"$qSupported#00");
    }
    let sent = send(port, &bytes);
    let after = stats(board, port, timeout);
    let (Ok(b), Ok(a), Ok(())) = (&before, &after, &sent) else {
        return rec("monitor stats before and after hostile input", false, &format!("{before:?} {after:?} {sent:?}"));
    };
    let delta = |k: &str| Some(a.get(k)?.int()? - b.get(k)?.int()?);
    rec(
        &format!("monitor stats counts {UNKNOWN} unknown, {REJECTED} rejected and {BAD_CHECKSUM} bad-checksum packets"),
        delta("unknown").is_some_and(|d| d >= UNKNOWN)
            && delta("rejected") == Some(REJECTED)
            && delta("bad_checksum") == Some(BAD_CHECKSUM)
            && delta("malformed").is_some_and(|d| d >= REJECTED + BAD_CHECKSUM),
        &format!("before {b:?}, after {a:?}"),
    );
}

/// `$body#checksum`.
fn lantern_gdb_frame(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut v = vec![b'$'];
    v.extend_from_slice(body);
    v.extend(format!("#{sum:02x}").bytes());
    v
}

/// Sends `bytes` to the stub and hangs up.
fn send(port: u16, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    s.write_all(bytes).map_err(|e| format!("send: {e}"))?;
    // Let the stub take it all before the next client connects.
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// `kill` returns at once (measured against a plain attach + detach), ends
/// the session, and the guests run on.
fn kill_check(board: &dyn BoardSpec, port: u16, rec: &mut dyn FnMut(&str, bool, &str), timeout: Duration) {
    let runstate = "monitor runstate d1v0 --json";
    let plain = gdb::run_batch(board, port, &[], &[], timeout);
    let killed = gdb::run_batch(board, port, &[], &[runstate, "kill"], timeout);
    let (Ok(plain), Ok(killed)) = (plain, killed) else { return rec("run gdb for kill", false, "gdb failed") };
    let extra = killed.elapsed.saturating_sub(plain.elapsed);
    println!(
        "   gdb kill: {:.0} ms with kill, {:.0} ms attach + detach alone",
        killed.elapsed.as_secs_f64() * 1e3,
        plain.elapsed.as_secs_f64() * 1e3
    );
    rec(
        &format!("`kill` answers within {KILL_BUDGET:?} (under cargo xtask gdb's remotetimeout)"),
        killed.text().contains("killed]") && extra < KILL_BUDGET && killed.code == Some(0),
        &format!("{extra:?} beyond attach; {}", killed.text()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = runstate_total(&killed, "d1v0");
    let after = gdb::run_batch(board, port, &[], &[runstate], timeout).ok().and_then(|o| runstate_total(&o, "d1v0"));
    rec(
        "after `kill` the guests run on (d1v0's runstate times advanced)",
        matches!((before, after), (Some(a), Some(b)) if b > a),
        &format!("before {before:?}, after {after:?}"),
    );
}

/// `cargo xtask gdb` (this binary's `gdb` command) in its own process
/// group, as a terminal's foreground job: a SIGINT to the group while gdb
/// waits in `continue` must interrupt the target, and gdb must go on with
/// its next command and exit normally.
fn ctrl_c_check(board: &dyn BoardSpec, port: u16, work: &Path, rec: &mut dyn FnMut(&str, bool, &str)) {
    use std::os::unix::process::CommandExt;
    let log = work.join("gdb-ctrl-c.log");
    let (Ok(exe), Ok(file)) = (std::env::current_exe(), std::fs::File::create(&log)) else {
        return rec("start cargo xtask gdb", false, "no executable or log file");
    };
    let Ok(err) = file.try_clone() else { return rec("start cargo xtask gdb", false, "log file") };
    let child = Command::new(exe)
        .args(["gdb", "--arch", board.name(), "--gdb-port", &port.to_string()])
        .args(["-ex", "continue", "-ex", "echo AFTER-INTERRUPT\\n", "-ex", "info threads"])
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return rec("start cargo xtask gdb", false, &e.to_string()),
    };
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while !read().contains("Continuing.") && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let pgid = child.id().to_string();
    let sent = Command::new("kill").args(["-INT", "--", &format!("-{pgid}")]).status();
    let interrupted = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if interrupted.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let text = read();
    let after = text.find("received signal SIGINT").and_then(|i| text[i..].find("AFTER-INTERRUPT"));
    rec(
        "Ctrl-C (SIGINT to the process group) under cargo xtask gdb interrupts the target; gdb runs on and exits normally",
        sent.is_ok_and(|s| s.success()) && after.is_some() && status.is_some_and(|s| s.success()),
        &format!("exit {status:?} after {:?}; log {}: {text}", interrupted.elapsed(), log.display()),
    );
}

/// What the checks parse, checked without QEMU.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::gdb::BatchOutput;

    #[test]
    fn frames_carry_their_checksum() {
        assert_eq!(lantern_gdb_frame(b"g"), b"$g#67");
        assert_eq!(lantern_gdb_frame(b""), b"$#00");
    }

    #[test]
    fn output_is_parsed_as_gdb_prints_it() {
        let out = BatchOutput {
            stdout: "$1 = 18446744073709551615\n$2 = 0x1234\n#0  0x1 in a ()\n".into(),
            stderr: String::new(),
            code: Some(0),
            elapsed: Duration::ZERO,
        };
        let v = print_values(&out.stdout);
        assert_eq!(v.first().and_then(|v| num(v)), Some(u64::MAX));
        assert_eq!(v.get(1).and_then(|v| num(v)), Some(PROBE));
    }
}
