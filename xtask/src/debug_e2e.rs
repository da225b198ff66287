//! The debugger end to end, for `cargo xtask test`: real `gdb-multiarch`
//! on a live board plants a hardware breakpoint (the guest, which checksums
//! its own code, sees nothing), a software breakpoint at a function every
//! vCPU calls (hit on the vCPU that called it, with a backtrace), steps one
//! instruction while a timer interrupt is pending, and watches a guest
//! variable; and, attached from the first instruction, catches the
//! `VCPUOP_register_vcpu_info` hypercall and reads the area before and after
//! it. Afterwards the guests must still be running.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::boards::BoardSpec;
use crate::build::work_dir;
use crate::gdb::runstate_total;
use crate::gdb::{self, Json};
use crate::gdb_e2e::{boot_held, boot_lingering, domains_under_test};
use crate::opts::Opts;
use crate::report::Tally;
use crate::run::free_gdb_ports;
use crate::summary::summary;

/// The guest function every live vCPU calls (tests/guests/scenario's
/// `debuggee`), its argument, and the variables it writes.
const TICK: &str = "lantern_guest_scenario::debuggee::tick";
const HEARTBEAT: &str = "lantern_guest_scenario::debuggee::HEARTBEAT";
const CODE_CHANGED: &str = "lantern_guest_scenario::debuggee::CODE_CHANGED";

/// Xen's `__HYPERVISOR_vcpu_op` and `VCPUOP_register_vcpu_info`.
const HYPERCALL_VCPU_OP: u32 = 24;
/// How many catchpoint stops the test follows (x86 probes its 34 vCPUs
/// with `VCPUOP_is_up` before it registers a vcpu_info).
const CATCH_STOPS: usize = 160;

/// The section of a batch's stdout after `echo @@name` and before the next
/// marker.
fn section<'a>(stdout: &'a str, name: &str) -> &'a str {
    let mark = format!("@@{name}\n");
    let Some(start) = stdout.find(&mark) else { return "" };
    let rest = &stdout[start + mark.len()..];
    &rest[..rest.find("@@").unwrap_or(rest.len())]
}

/// The last number after `key` in `text` (decimal or 0x-hex), e.g. the
/// `value: N` of a printed atomic.
fn last_number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.rfind(key)? + key.len();
    let digits: String = text[at..].trim_start().chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    match digits.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => digits.parse().ok(),
    }
}

/// How many times the software breakpoint test continues to a hit.
const BREAK_HITS: usize = 6;

/// `(vCPU of the current thread, vcpu argument of tick)` of one stop's
/// section: the `thread` command's `[Current thread is N (Thread 1.TID)]`
/// and the stop line's `tick (vcpu=K)`.
fn breakpoint_hit(section: &str) -> Option<(u32, Option<u32>)> {
    let tid: u32 = section.split("(Thread 1.").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let arg = section
        .lines()
        .find(|l| l.contains("hit Breakpoint") || l.starts_with("#0"))
        .and_then(|l| l.split("vcpu=").nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
    Some(((tid - 1) % 1024, arg))
}

/// The two instruction addresses of an `x/2i $pc` listing.
fn listed_addresses(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("=>").trim_start();
            let a = l.strip_prefix("0x")?.split(|c: char| !c.is_ascii_hexdigit()).next()?;
            u64::from_str_radix(a, 16).ok()
        })
        .collect()
}

/// Breakpoints, stepping and watchpoints on the live demo of `board`.
pub fn live_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} debugger", board.name());
    let rec =
        |tally: &mut Tally, what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let Some(port) = free_gdb_ports() else { return rec(tally, "free TCP port", false, "none found") };
    let log = work_dir(board).join("debugger-console.log");
    let o = Opts { timeout: Some(600), serial_log: Some(log.clone()), gdb_port: Some(port), ..Opts::on(board) };
    let vcpus = board.demo_vcpus();
    let (mut s, a, console) = match boot_lingering(&o, "guests linger") {
        Ok(x) => x,
        Err(e) => return rec(tally, "boot the demo and wait for SCENARIO LINGER", false, &e),
    };
    let doms = domains_under_test(board, &a, vcpus, &console);
    let Some(d) = doms.first() else { return rec(tally, "a demo domain", false, "none") };
    let dn = format!("d{}", d.id);
    let hw = board.hw_points();
    if !hw {
        println!(
            "    {name}: the board has no hardware breakpoints or watchpoints (BoardSpec::hw_points), so instead of \
             their hits this checks that gdb's hbreak and hardware watch are refused with a clear message while the \
             system runs on (the software breakpoint after them still hits), and that a software watchpoint \
             (set can-use-hw-watchpoints 0) triggers with old and new value"
        );
    }
    let mut cmds: Vec<String> = vec![
        "set language rust".into(),
        format!("thread {}", d.first_thread),
        // 1. A hardware breakpoint: the guest's code stays as it was (or,
        // without hardware points, the stub refuses it and plants nothing).
        "echo @@hbreak\\n".into(),
        format!("hbreak {TICK}"),
        // Between the hits the guest runs the function whole, checksum and all.
        "continue".into(),
    ];
    if hw {
        cmds.extend(["continue".into(), "continue".into()]);
    }
    cmds.extend([
        "delete".into(),
        format!("print {CODE_CHANGED}"),
        // 2. A software breakpoint, hit on several vCPUs.
        "echo @@break\\n".into(),
        format!("break {TICK}"),
    ]);
    for i in 0..BREAK_HITS {
        cmds.push(format!("echo @@hit{i}\\n"));
        cmds.push("continue".into());
        cmds.push("thread".into());
        cmds.push("bt".into());
    }
    cmds.extend([
        "delete".into(),
        "echo @@memory\\n".into(),
        format!("print {CODE_CHANGED}"),
        // 3. One instruction while vCPU 0's 1 ms periodic timer is pending.
        "echo @@step\\n".into(),
        format!("break {TICK} thread {}", d.first_thread),
        "continue".into(),
        "delete".into(),
        "shell sleep 0.2".into(),
        "x/2i $pc".into(),
        "stepi".into(),
        "echo @@stepped\\n".into(),
        "print/x $pc".into(),
        format!("monitor vcpu-info {dn}v0 --json"),
        // 4. A watchpoint on the variable every tick writes.
        "echo @@watch\\n".into(),
        format!("watch {HEARTBEAT}"),
        "continue".into(),
        "delete".into(),
    ]);
    if !hw {
        // Refused in hardware: gdb's own watchpoint, single-stepping the
        // current vCPU and comparing the value after each step.
        cmds.extend([
            "echo @@swatch\\n".into(),
            "set can-use-hw-watchpoints 0".into(),
            format!("watch {HEARTBEAT}"),
            "continue".into(),
            "delete".into(),
        ]);
    }
    cmds.extend(["echo @@end\\n".into(), format!("monitor runstate {dn}v0 --json")]);
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = match gdb::run_batch(board, port, &d.symbols, &refs, Duration::from_secs(300)) {
        Ok(o) => o,
        Err(e) => return rec(tally, "run gdb-multiarch", false, &e),
    };
    let text = out.text();
    let so = &out.stdout;

    let hb = section(so, "hbreak");
    let unchanged = last_number_after(hb, "value:");
    if hw {
        rec(
            tally,
            &format!("hbreak {TICK}: hit on a vCPU of {dn}"),
            hb.contains("Hardware assisted breakpoint") && hb.contains("tick"),
            &text,
        );
        rec(
            tally,
            "the guest checksumming its own code saw no change under the hardware breakpoint",
            unchanged == Some(0),
            &format!("CODE_CHANGED {unchanged:?}; {hb}"),
        );
    } else {
        // gdb prints the refusal on stderr; the batch's sections are stdout.
        rec(
            tally,
            &format!("hbreak {TICK} refused: gdb says it cannot insert the hardware breakpoint, nothing stops"),
            out.stderr.contains("Cannot insert hardware breakpoint 1")
                && !hb.contains("Hardware assisted breakpoint 1,")
                && !hb.contains("hit "),
            &text,
        );
        rec(
            tally,
            "the refused hardware breakpoint planted nothing (the guest checksumming its own code saw no change)",
            unchanged == Some(0),
            &format!("CODE_CHANGED {unchanged:?}; {hb}"),
        );
        let first = section(so, "hit0");
        rec(
            tally,
            "after the refusal the system runs on: the software breakpoint set next hits",
            first.contains("hit Breakpoint 2,") && first.contains("tick"),
            &text,
        );
    }

    let br: String = (0..BREAK_HITS).map(|i| section(so, &format!("hit{i}"))).collect();
    let hits: Vec<_> = (0..BREAK_HITS).filter_map(|i| breakpoint_hit(section(so, &format!("hit{i}")))).collect();
    let on_its_thread = hits.iter().all(|(t, arg)| Some(*t) == *arg);
    rec(
        tally,
        "break at a guest function: every stop is on the vCPU that called it (thread = its vcpu argument)",
        on_its_thread && hits.len() == BREAK_HITS,
        &format!("hits (thread vcpu, argument) {hits:?}; {text}"),
    );
    let distinct: std::collections::BTreeSet<u32> = hits.iter().map(|h| h.0).collect();
    rec(
        tally,
        "the breakpoint hit on more than one vCPU",
        distinct.len() >= 2 || vcpus < 2,
        &format!("vCPUs {distinct:?}"),
    );
    let frames = br.lines().filter(|l| l.starts_with("#1 ")).count();
    rec(tally, "bt at the breakpoint shows at least 2 frames", frames == BREAK_HITS, &br);
    let seen = last_number_after(section(so, "memory"), "value:");
    rec(
        tally,
        "the planted breakpoint is in guest memory (the guest's checksum saw it) yet hidden from gdb's reads",
        seen.is_some_and(|n| n > 0) && !text.contains("Cannot insert breakpoint"),
        &format!("CODE_CHANGED {seen:?}"),
    );

    let step = section(so, "step");
    let listed = listed_addresses(step);
    let after = last_number_after(section(so, "stepped"), "=");
    rec(
        tally,
        "stepi lands on exactly the next instruction",
        listed.len() >= 2 && after == Some(listed[1]),
        &format!("listed {listed:x?}, pc after {after:x?}; {step}"),
    );
    let pending = out.json_lines().iter().filter_map(|l| Json::parse(l).ok()).find_map(|j| {
        let v = j.get("vcpus")?.items().first()?.clone();
        v.get("fields")?.get("evtchn_upcall_pending")?.int()
    });
    rec(
        tally,
        "... while an interrupt (the periodic timer's upcall) was pending",
        pending == Some(1),
        &format!("evtchn_upcall_pending {pending:?}"),
    );

    let w = section(so, "watch");
    let triggered = |w: &str| w.contains("Old value") && w.contains("New value");
    if hw {
        rec(
            tally,
            &format!("watch {HEARTBEAT}: triggers with old and new value"),
            w.contains("Hardware watchpoint") && triggered(w),
            &text,
        );
    } else {
        rec(
            tally,
            &format!("watch {HEARTBEAT} in hardware refused: gdb says it cannot insert the hardware watchpoint"),
            out.stderr.contains("Could not insert hardware watchpoint") && !triggered(w),
            &text,
        );
        let sw = section(so, "swatch");
        rec(
            tally,
            &format!("software watchpoint on {HEARTBEAT} (can-use-hw-watchpoints 0): triggers with old and new value"),
            sw.contains("Watchpoint ") && !sw.contains("Hardware watchpoint") && triggered(sw),
            &text,
        );
    }

    // The system runs on after the session.
    let t0 = runstate_total(&out, &format!("{dn}v0"));
    std::thread::sleep(Duration::from_secs(2));
    let cmd = format!("monitor runstate {dn}v0 --json");
    let t1 = gdb::run_batch(board, port, &[], &[cmd.as_str()], Duration::from_secs(120))
        .ok()
        .and_then(|o| runstate_total(&o, &format!("{dn}v0")));
    rec(
        tally,
        "guests still run after the debugging session (runstate times advanced)",
        matches!((t0, t1), (Some(a), Some(b)) if b > a),
        &format!("before {t0:?}, after {t1:?}"),
    );
    let bad = summary(&s.console());
    rec(tally, "no domain ended during the debugging session", bad.domains.is_empty(), &format!("{bad:?}"));
    let alive = s.wait_exit(Duration::from_millis(10)).is_err();
    rec(tally, "QEMU still running", alive, &format!("console in {}", log.display()));
}

/// `catch syscall 24` from the first instruction: a stop at the entry of
/// `VCPUOP_register_vcpu_info` with vCPU 0's vcpu_info still in its
/// shared_info slot, and at its return with it in the guest's page.
pub fn catch_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} catch-syscall", board.name());
    let rec =
        |tally: &mut Tally, what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let Some(port) = free_gdb_ports() else { return rec(tally, "free TCP port", false, "none found") };
    let log = work_dir(board).join("catch-console.log");
    let o = Opts {
        exit: true,
        timeout: Some(400),
        serial_log: Some(log.clone()),
        gdb_port: Some(port),
        wait_gdb: true,
        demo_domains: Some(1),
        ..Opts::on(board)
    };
    let (mut s, _) = match boot_held(&o) {
        Ok(x) => x,
        Err((step, e)) => return rec(tally, step, false, &e),
    };
    if !board.gdb_catches_syscalls() {
        println!(
            "    {name}: this board's gdb-multiarch has no `catch syscall` for its architecture \
             (BoardSpec::gdb_catches_syscalls), so the same catchpoints are checked through the remote protocol \
             itself: QCatchSyscalls:1;{HYPERCALL_VCPU_OP:x}, stop replies with syscall_entry / syscall_return, \
             the monitor's vcpu-info and debug answers at each stop, then QCatchSyscalls:0 and the run to its end"
        );
        return catch_raw(board, port, &mut s, &rec, tally);
    }
    // lantern.py sets up the OS ABI `catch syscall` needs and names Xen's
    // hypercalls: `lantern catch vcpu_op` is `catch syscall 24`.
    let mut cmds: Vec<String> = vec!["lantern catch vcpu_op".into()];
    for i in 0..CATCH_STOPS {
        cmds.push(format!("echo @@stop{i}\\n"));
        cmds.push("continue".into());
        cmds.push("monitor vcpu-info d1v0 --json".into());
    }
    cmds.extend(["echo @@end\\n".into(), "delete".into(), "continue".into()]);
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = match gdb::run_batch(board, port, &gdb::default_symbols(board), &refs, Duration::from_secs(300)) {
        Ok(o) => o,
        Err(e) => return rec(tally, "run gdb-multiarch", false, &e),
    };
    let text = out.text();
    // gdb prints the monitor's answer on stderr, in order: pair each stop
    // (stdout) with the n-th JSON answer.
    let answers: Vec<String> = out
        .json_lines()
        .iter()
        .filter_map(|l| Json::parse(l).ok())
        .map(|j| {
            j.get("vcpus")
                .and_then(|v| v.items().first().cloned())
                .and_then(|v| v.get("placement").and_then(Json::str).map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    let stops: Vec<&str> = (0..CATCH_STOPS)
        .map(|i| {
            let s = section(&out.stdout, &format!("stop{i}"));
            if s.contains("returned from syscall") {
                "return"
            } else if s.contains("call to syscall") {
                "call"
            } else {
                "?"
            }
        })
        .collect();
    rec(
        tally,
        "catch syscall 24 stops at hypercall entries and returns",
        stops.iter().filter(|s| **s == "call").count() >= 2 && stops.iter().filter(|s| **s == "return").count() >= 2,
        &format!("{stops:?}; {text}"),
    );
    let seen: Vec<(&str, &str)> = stops.iter().copied().zip(answers.iter().map(String::as_str)).collect();
    let registered = seen.windows(2).any(|w| w[0] == ("call", "shared_info") && w[1] == ("return", "guest"));
    let named = (0..CATCH_STOPS).all(|i| {
        let s = section(&out.stdout, &format!("stop{i}"));
        !s.contains("syscall") || s.contains(&format!("hypercall vcpu_op ({HYPERCALL_VCPU_OP})"))
    });
    rec(
        tally,
        "lantern catch vcpu_op: every catchpoint stop names Xen's hypercall",
        named && out.stdout.contains(&format!("Lantern: d1v0 hypercall vcpu_op ({HYPERCALL_VCPU_OP}) entry")),
        &out.stdout,
    );
    rec(
        tally,
        "VCPUOP_register_vcpu_info caught: vcpu_info in shared_info at the call, in the guest's page at the return",
        registered,
        &format!("(stop, placement) {seen:?}"),
    );
    let code = s.wait_exit(Duration::from_secs(200));
    let sum = summary(&s.console());
    rec(
        tally,
        "clean power-off after the catchpoints are deleted (verdict PASS)",
        code == Ok(board.exit_statuses().clean) && sum.verdict == Some(true),
        &format!("{code:?} {sum:?}"),
    );
}

/// A bare client of the gdb remote protocol (acknowledged mode, run-length
/// encoded replies expanded): what the catch-syscall test speaks to the stub
/// on a board whose gdb cannot `catch syscall`.
struct RawSession {
    stream: TcpStream,
    /// Bytes read and not yet taken as a packet.
    pending: Vec<u8>,
}

impl RawSession {
    fn connect(port: u16) -> Result<RawSession, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
        stream.set_nodelay(true).ok();
        Ok(RawSession { stream, pending: Vec::new() })
    }

    fn send(&mut self, body: &str) -> Result<(), String> {
        let sum = body.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        self.stream.write_all(format!("${body}#{sum:02x}").as_bytes()).map_err(|e| format!("send {body}: {e}"))
    }

    /// The next packet's body (acknowledged), waiting at most `limit`.
    fn recv(&mut self, limit: Duration) -> Result<String, String> {
        let start = Instant::now();
        loop {
            if let Some(body) = take_packet(&mut self.pending)? {
                self.stream.write_all(b"+").map_err(|e| format!("ack: {e}"))?;
                return Ok(body);
            }
            let left = limit.checked_sub(start.elapsed()).ok_or_else(|| format!("no reply within {limit:?}"))?;
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok();
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("the stub closed the connection".into()),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    fn request(&mut self, body: &str, limit: Duration) -> Result<String, String> {
        self.send(body)?;
        self.recv(limit)
    }

    /// `qRcmd`: a monitor command's output (its `O` packets, hex-decoded,
    /// up to the closing `OK`).
    fn monitor(&mut self, command: &str) -> Result<String, String> {
        let hex: String = command.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(&format!("qRcmd,{hex}"))?;
        let mut out = String::new();
        loop {
            let reply = self.recv(Duration::from_secs(30))?;
            match reply.strip_prefix('O') {
                Some(h) if reply != "OK" => out.extend(
                    (0..h.len() / 2).filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()).map(char::from),
                ),
                _ if reply == "OK" => return Ok(out),
                _ => return Err(format!("monitor {command}: {reply}")),
            }
        }
    }

    /// The first JSON object a monitor command answers with `--json`.
    fn monitor_json(&mut self, command: &str) -> Result<Json, String> {
        let out = self.monitor(&format!("{command} --json"))?;
        let line = out.lines().find(|l| l.starts_with('{')).ok_or_else(|| format!("no JSON from {command}: {out}"))?;
        Json::parse(line)
    }
}

/// A whole `$body#xx` at the front of what was read (acks and noise
/// before it dropped), its checksum checked and its run-length
/// encoding expanded.
fn take_packet(pending: &mut Vec<u8>) -> Result<Option<String>, String> {
    let Some(start) = pending.iter().position(|&b| b == b'$') else {
        pending.clear();
        return Ok(None);
    };
    let Some(hash) = pending[start..].iter().position(|&b| b == b'#').map(|h| start + h) else {
        return Ok(None);
    };
    if pending.len() < hash + 3 {
        return Ok(None);
    }
    let raw = pending[start + 1..hash].to_vec();
    let sum = std::str::from_utf8(&pending[hash + 1..hash + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
    pending.drain(..hash + 3);
    if sum != Some(raw.iter().fold(0u8, |a, b| a.wrapping_add(*b))) {
        return Err(format!("bad checksum on {:?}", String::from_utf8_lossy(&raw)));
    }
    let mut body = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match (b, body.last().copied()) {
            (b'*', Some(prev)) => {
                let count = bytes.next().ok_or("a run length at the end of a packet")?.wrapping_sub(29);
                body.extend(std::iter::repeat_n(prev, count as usize));
            }
            _ => body.push(b),
        }
    }
    Ok(Some(String::from_utf8_lossy(&body).into_owned()))
}

/// What a stop reply says: `("call" | "return" | "?", hypercall number,
/// thread id)`.
fn raw_stop(reply: &str) -> (&'static str, Option<u64>, Option<u64>) {
    let field = |key: &str| {
        reply.split(';').find_map(|f| f.split_once(':').filter(|(k, _)| k.ends_with(key)).map(|(_, v)| v.to_string()))
    };
    let hex = |v: &str| u64::from_str_radix(v, 16).ok();
    let tid = field("thread").and_then(|t| hex(t.rsplit('.').next().unwrap_or(&t)));
    match (field("syscall_entry"), field("syscall_return")) {
        (Some(n), _) => ("call", hex(&n), tid),
        (_, Some(n)) => ("return", hex(&n), tid),
        _ => ("?", None, tid),
    }
}

/// The catch-syscall test over raw packets (see [`catch_test`]): the same
/// checks, with the stop replies and the monitor's answers read directly.
fn catch_raw(
    board: &'static dyn BoardSpec,
    port: u16,
    s: &mut crate::e2e::Session,
    rec: &dyn Fn(&mut Tally, &str, bool, &str),
    tally: &mut Tally,
) {
    let mut log = Vec::new();
    let mut raw = match RawSession::connect(port) {
        Ok(r) => r,
        Err(e) => return rec(tally, "connect to the stub", false, &e),
    };
    let step = |raw: &mut RawSession, body: &str, limit: Duration, log: &mut Vec<String>| {
        let reply = raw.request(body, limit);
        log.push(format!("-> {body}  <- {reply:?}"));
        reply
    };
    let limit = Duration::from_secs(60);
    let setup = step(&mut raw, "qSupported:multiprocess+;swbreak+;hwbreak+", limit, &mut log)
        .and_then(|_| step(&mut raw, "?", limit, &mut log))
        .and_then(|_| step(&mut raw, &format!("QCatchSyscalls:1;{HYPERCALL_VCPU_OP:x}"), limit, &mut log));
    rec(
        tally,
        &format!("QCatchSyscalls:1;{HYPERCALL_VCPU_OP:x} accepted (OK)"),
        setup.as_deref() == Ok("OK"),
        &log.join("\n"),
    );
    // Each stop: its kind, the monitor's placement of d1v0's vcpu_info,
    // and the monitor's own account of the stop.
    let mut stops: Vec<(&str, Option<u64>, Option<u64>)> = Vec::new();
    let mut placements: Vec<String> = Vec::new();
    let mut accounts: Vec<String> = Vec::new();
    let registered = |st: &[(&str, Option<u64>, Option<u64>)], pl: &[String]| {
        st.iter().zip(pl).collect::<Vec<_>>().windows(2).any(|w| {
            (w[0].0 .0, w[0].1.as_str(), w[1].0 .0, w[1].1.as_str()) == ("call", "shared_info", "return", "guest")
        })
    };
    // `vCont;c`, as gdb continues: every vCPU (a bare `c` resumes only
    // the `Hc` thread).
    for _ in 0..CATCH_STOPS {
        let reply = match step(&mut raw, "vCont;c", Duration::from_secs(120), &mut log) {
            Ok(r) => r,
            Err(_) => break,
        };
        let stop = raw_stop(&reply);
        stops.push(stop);
        if stop.0 == "?" {
            break;
        }
        let placement = raw
            .monitor_json("vcpu-info d1v0")
            .ok()
            .and_then(|j| j.get("vcpus")?.items().first()?.get("placement")?.str().map(str::to_string));
        placements.push(placement.unwrap_or_default());
        let last = raw.monitor_json("debug").ok().and_then(|j| {
            let l = j.get("last_stop")?;
            Some(format!(
                "{} {} {} ({})",
                l.get("vcpu")?.str()?,
                l.get("reason")?.str()?,
                l.get("name")?.str()?,
                l.get("nr")?.int()?
            ))
        });
        accounts.push(last.unwrap_or_default());
        let calls = stops.iter().filter(|s| s.0 == "call").count();
        let returns = stops.iter().filter(|s| s.0 == "return").count();
        if calls >= 2 && returns >= 2 && registered(&stops, &placements) {
            break;
        }
    }
    let detail = format!("stops {stops:?}; placements {placements:?}; monitor {accounts:?}");
    let nr = Some(u64::from(HYPERCALL_VCPU_OP));
    let calls = stops.iter().filter(|s| s.0 == "call" && s.1 == nr).count();
    let returns = stops.iter().filter(|s| s.0 == "return" && s.1 == nr).count();
    rec(
        tally,
        &format!(
            "stop replies carry syscall_entry:{HYPERCALL_VCPU_OP:x} at hypercall entries and \
             syscall_return:{HYPERCALL_VCPU_OP:x} at returns"
        ),
        calls >= 2 && returns >= 2 && stops.iter().all(|s| s.0 != "?"),
        &format!("{detail}\n{}", log.join("\n")),
    );
    // The monitor names each stop as lantern.py's stop notice would: the
    // vCPU of the stop reply's thread, the reason, Xen's hypercall.
    let named = stops.iter().zip(&accounts).all(|((kind, _, tid), account)| {
        let vcpu = tid.map(|t| format!("d{}v{}", (t - 1) / 1024, (t - 1) % 1024)).unwrap_or_default();
        let reason = if *kind == "call" { "hypercall-entry" } else { "hypercall-return" };
        *account == format!("{vcpu} {reason} vcpu_op ({HYPERCALL_VCPU_OP})")
    });
    rec(
        tally,
        "monitor debug names every catchpoint stop: the stop reply's vCPU, entry or return, Xen's vcpu_op",
        named && !accounts.is_empty() && accounts.iter().any(|a| a.starts_with("d1v0 hypercall-entry")),
        &detail,
    );
    rec(
        tally,
        "VCPUOP_register_vcpu_info caught: vcpu_info in shared_info at the call, in the guest's page at the return",
        registered(&stops, &placements),
        &detail,
    );
    // Cleared: the guest runs to its end with no further catchpoint stop.
    let cleared = step(&mut raw, "QCatchSyscalls:0", limit, &mut log);
    rec(tally, "QCatchSyscalls:0 accepted (OK)", cleared.as_deref() == Ok("OK"), &log.join("\n"));
    raw.send("vCont;c").ok();
    let code = s.wait_exit(Duration::from_secs(200));
    let after = raw.recv(Duration::from_secs(2));
    rec(
        tally,
        "no catchpoint stop after QCatchSyscalls:0 (the guest ran on to its end)",
        !after.as_deref().unwrap_or("").contains("syscall_"),
        &format!("after the last continue: {after:?}"),
    );
    let sum = summary(&s.console());
    rec(
        tally,
        "clean power-off after the catchpoints are cleared (verdict PASS)",
        code == Ok(board.exit_statuses().clean) && sum.verdict == Some(true),
        &format!("{code:?} {sum:?}"),
    );
}

/// The `(vcpu, running time)` of each `monitor runstate dNvM --json`
/// answer in a batch's output, in order.
fn running_times(out: &gdb::BatchOutput) -> Vec<(String, i128)> {
    out.json_lines()
        .iter()
        .filter_map(|l| Json::parse(l).ok())
        .filter_map(|j| {
            let vcpu = j.get("vcpu")?.str()?.to_string();
            let running = j.get("hypervisor")?.get("time")?.items().first()?.int()?;
            Some((vcpu, running))
        })
        .collect()
}

/// How much `vcpu`'s running time grew between its first two answers.
fn running_growth(times: &[(String, i128)], vcpu: &str) -> Option<i128> {
    let mut of = times.iter().filter(|(v, _)| v == vcpu).map(|(_, t)| *t);
    let (a, b) = (of.next()?, of.next()?);
    Some(b - a)
}

/// A domain's own session (its own line, port P+N): gdb attached to the
/// last demo domain (on x86 the 32-bit guest, shown in i386's layout) sees
/// only that domain's vCPUs, breaks at a function with that domain's
/// symbols and unwinds it, and while it holds its domain stopped the other
/// domain keeps running.
pub fn session_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} domain-session", board.name());
    let rec =
        |tally: &mut Tally, what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let Some(port) = free_gdb_ports() else { return rec(tally, "free TCP ports", false, "none found") };
    let log = work_dir(board).join("domain-session-console.log");
    let o = Opts { timeout: Some(600), serial_log: Some(log.clone()), gdb_port: Some(port), ..Opts::on(board) };
    let vcpus = board.demo_vcpus();
    let (mut s, a, console) = match boot_lingering(&o, "guests linger") {
        Ok(x) => x,
        Err(e) => return rec(tally, "boot the demo and wait for SCENARIO LINGER", false, &e),
    };
    let doms = domains_under_test(board, &a, vcpus, &console);
    let (Some(other), Some(d)) = (doms.first(), doms.last()) else {
        return rec(tally, "two demo domains", false, &format!("{} domains", doms.len()));
    };
    if other.id == d.id {
        return rec(tally, "two demo domains", false, "only one");
    }
    let (dn, on) = (format!("d{}", d.id), format!("d{}", other.id));
    let cmds: Vec<String> = vec![
        "set language rust".into(),
        "echo @@threads\\n".into(),
        "info threads".into(),
        "echo @@arch\\n".into(),
        "show architecture".into(),
        "echo @@break\\n".into(),
        format!("break {TICK}"),
        "continue".into(),
        "thread".into(),
        "bt".into(),
        // Held at the breakpoint: the other domain runs, this one does not.
        "echo @@held\\n".into(),
        format!("monitor runstate {on}v0 --json"),
        format!("monitor runstate {dn}v0 --json"),
        "shell sleep 1".into(),
        format!("monitor runstate {on}v0 --json"),
        format!("monitor runstate {dn}v0 --json"),
        "monitor debug".into(),
        "delete".into(),
        "echo @@end\\n".into(),
    ];
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = match gdb::run_batch_domain(board, port, d.id, &d.symbols, &refs, Duration::from_secs(300)) {
        Ok(o) => o,
        Err(e) => return rec(tally, "run gdb-multiarch on the domain's own port", false, &e),
    };
    let text = out.text();
    let so = &out.stdout;
    println!("    {name}: transcript\n{}", text.lines().map(|l| format!("      | {l}")).collect::<Vec<_>>().join("\n"));

    let threads = section(so, "threads");
    let listed = threads.lines().filter(|l| l.contains("Thread ")).count();
    rec(
        tally,
        &format!("info threads lists {dn}'s {vcpus} vCPUs and no other domain's"),
        listed == vcpus as usize && threads.contains(&format!("({dn}v0 ")) && !threads.contains(&format!("({on}v")),
        threads,
    );
    let arch = section(so, "arch");
    let want_arch = if board.demo_guests().last().is_some_and(|g| g.target.starts_with("i686")) {
        "\"i386\")"
    } else {
        board.gdb_arch()
    };
    rec(
        tally,
        &format!("the session's architecture comes from the stub ({want_arch})"),
        arch.contains(want_arch),
        arch,
    );
    let br = section(so, "break");
    // `thread` names the stub's thread id; `info threads` maps it to a vCPU.
    let current = br.split("(Thread 1.").nth(1).and_then(|r| r.split(')').next()).unwrap_or("?");
    let on_domain = threads.contains(&format!("Thread 1.{current} ({dn}v"));
    rec(
        tally,
        &format!("break {TICK} with {dn}'s own symbols hits on a vCPU of {dn}"),
        br.contains("hit Breakpoint 1,") && br.contains("tick") && on_domain,
        &text,
    );
    // A caller gdb cannot name (`#1 0x00000000 in ?? ()`) is a failed unwind.
    let caller = br.lines().find(|l| l.starts_with("#1 "));
    rec(tally, "bt shows at least 2 frames", caller.is_some_and(|l| !l.contains("?? (")), br);
    let times = running_times(&out);
    let (grew_other, grew_held) =
        (running_growth(&times, &format!("{on}v0")), running_growth(&times, &format!("{dn}v0")));
    rec(
        tally,
        &format!("while {dn}'s session holds it, {on} keeps running and {dn} does not"),
        grew_other.is_some_and(|g| g > 0) && grew_held == Some(0),
        &format!("running time grew {on}v0 {grew_other:?} ns, {dn}v0 {grew_held:?} ns over 1 s; {times:?}"),
    );
    // gdb prints a monitor command's answer on stderr.
    rec(
        tally,
        "monitor debug names the domain's session and that it holds its domain",
        out.stderr.contains(&format!("session attached: {dn} alone, stopped")),
        &out.stderr,
    );
    // Detached: the domain runs again.
    let t0 = runstate_total(&out, &format!("{dn}v0"));
    std::thread::sleep(Duration::from_secs(1));
    let cmd = format!("monitor runstate {dn}v0 --json");
    let t1 = gdb::run_batch(board, port, &[], &[cmd.as_str()], Duration::from_secs(120))
        .ok()
        .and_then(|o| runstate_total(&o, &format!("{dn}v0")));
    rec(
        tally,
        &format!("{dn} runs again after its session detached"),
        matches!((t0, t1), (Some(a), Some(b)) if b > a),
        &format!("before {t0:?}, after {t1:?}"),
    );
    let bad = summary(&s.console());
    rec(tally, "no domain ended during the sessions", bad.domains.is_empty(), &format!("{bad:?}"));
    let alive = s.wait_exit(Duration::from_millis(10)).is_err();
    rec(tally, "QEMU still running", alive, &format!("console in {}", log.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_packet_after_acks_and_expands_run_lengths() {
        // `0* ` is "0" and 3 more: "0000"; the checksum is over the raw bytes.
        let body = b"O30* 31";
        let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        let mut pending = b"+".to_vec();
        pending.extend_from_slice(b"$");
        pending.extend_from_slice(body);
        pending.extend_from_slice(format!("#{sum:02x}$O").as_bytes());
        assert_eq!(take_packet(&mut pending), Ok(Some("O3000031".into())));
        // What follows the packet stays for the next one.
        assert_eq!(pending, b"$O");
        assert_eq!(take_packet(&mut pending), Ok(None));
    }

    #[test]
    fn refuses_a_packet_with_a_bad_checksum() {
        let mut pending = b"$OK#00".to_vec();
        assert!(take_packet(&mut pending).is_err());
    }

    #[test]
    fn reads_catchpoint_stop_replies() {
        assert_eq!(raw_stop("T05thread:p01.401;syscall_entry:18;"), ("call", Some(24), Some(0x401)));
        assert_eq!(raw_stop("T05thread:401;syscall_return:18;"), ("return", Some(24), Some(0x401)));
        assert_eq!(raw_stop("T05thread:p01.402;swbreak:;"), ("?", None, Some(0x402)));
        assert_eq!(raw_stop("W00"), ("?", None, None));
    }
}
