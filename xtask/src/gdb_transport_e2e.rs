//! The gdb line's session hygiene end to end, over the default transport (a
//! virtio-serial port): a client that sends `qSupported` and closes the
//! socket must leave the guests running, and a flood of 100,000 malformed
//! packets must neither stop them nor the stub. Guest progress is measured
//! by d1v0's runstate times read through later gdb sessions. Each domain's
//! own line (port P+N) attaches beside the whole system's. Then the UART
//! fallback (`--gdb-transport uart`) once: chosen, announced, working.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::boards::BoardSpec;
use crate::build::work_dir;
use crate::gdb;
use crate::gdb::runstate_total;
use crate::gdb_e2e::boot_lingering;
use crate::opts::{GdbTransport, Opts};
use crate::report::Tally;
use crate::run::{free_gdb_ports, free_port};
use crate::summary::summary;

/// Malformed packets in the flood.
const FLOOD_PACKETS: usize = 100_000;
/// Every this many packets of the flood, one oversized packet.
const OVERSIZED_EVERY: usize = 1000;
/// Bigger than the stub's largest packet (`lantern_gdb::MAX_PACKET`, 32 KiB).
const OVERSIZED_LEN: usize = 40 * 1024;

/// How much d1v0's runstate times must grow between two samples taken
/// `SETTLE` or more apart (ns): a system held stopped for most of that time
/// (by a session nobody ends) falls short.
const MIN_PROGRESS_NS: i128 = 1_500_000_000;
/// The pause before a later sample.
const SETTLE: Duration = Duration::from_secs(3);
/// Longest the flood may take to be read.
const FLOOD_LIMIT: Duration = Duration::from_secs(180);

/// d1v0's runstate total (ns) through a fresh gdb session (which detaches).
fn progress(board: &dyn BoardSpec, port: u16) -> Result<i128, String> {
    let out = gdb::run_batch(board, port, &[], &["monitor runstate d1v0 --json"], Duration::from_secs(120))?;
    runstate_total(&out, "d1v0").ok_or_else(|| format!("no runstate for d1v0: {}", out.text()))
}

fn packet(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut p = b"$".to_vec();
    p.extend_from_slice(body);
    p.extend_from_slice(format!("#{sum:02x}").as_bytes());
    p
}

/// A client that starts a session (`qSupported`, as gdb's first packet) and
/// hangs up without detaching; returns what the stub answered.
fn attach_and_vanish(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    s.set_nodelay(true).ok();
    s.write_all(&packet(b"qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386"))
        .map_err(|e| format!("send: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(10) && !String::from_utf8_lossy(&got).contains("PacketSize") {
        if let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The flood: garbage, bad checksums, well-framed nonsense, packets cut off
/// by the next `$`, and now and then an oversized one; never a packet that
/// starts a session (`qSupported`, `?`).
fn flood_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..FLOOD_PACKETS {
        if i % OVERSIZED_EVERY == OVERSIZED_EVERY - 1 {
            out.push(b'$');
            out.extend(std::iter::repeat_n(b'A', OVERSIZED_LEN));
            out.extend_from_slice(b"#00");
            continue;
        }
        match i % 4 {
            // Line noise without a packet start.
            0 => out.extend((0..8).map(|_| (rand() as u8) | 0x80).filter(|b| *b != 0x83)),
            // A bad checksum.
            1 => {
                let p = packet(format!("m{:x},4", rand() & 0xffff_f000).as_bytes());
                let n = p.len();
                out.extend_from_slice(&p[..n - 2]);
                out.extend_from_slice(if &p[n - 2..] == b"00" { b"01" } else { b"00" });
            }
            // Framed nonsense: the engine rejects it.
            2 => out.extend(packet(format!("mzz,{:x}q", rand() & 0xff).as_bytes())),
            // Cut off by the next packet's `$`.
            _ => out.extend_from_slice(b"$m1000,4"),
        }
    }
    out
}

/// Sends the flood while a thread drains the stub's answers; returns the
/// bytes sent and answered and the time it took.
fn flood(port: u16) -> Result<(usize, usize, Duration), String> {
    let bytes = flood_bytes();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    // A stub that stopped reading must fail the test, not hang it.
    s.set_write_timeout(Some(FLOOD_LIMIT)).ok();
    s.set_read_timeout(Some(FLOOD_LIMIT)).ok();
    let mut r = s.try_clone().map_err(|e| format!("clone: {e}"))?;
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        let mut buf = [0u8; 65536];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k,
                Err(e) => return Err(format!("the flood was not read to its end: {e}")),
            }
        }
    });
    let start = Instant::now();
    s.write_all(&bytes).map_err(|e| format!("send: {e}"))?;
    // Half-close: QEMU reads the flood to its end (as fast as the stub takes
    // it), sees the end of the stream and closes its side, which ends the
    // reader.
    s.shutdown(std::net::Shutdown::Write).ok();
    let answered = reader.join().map_err(|_| "reader thread panicked".to_string())??;
    Ok((bytes.len(), answered, start.elapsed()))
}

/// The test (see the module doc).
pub fn transport_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} gdb-transport", board.name());
    let rec =
        |tally: &mut Tally, what: &str, ok: bool, detail: &str| tally.record(&format!("{name}: {what}"), ok, detail);
    let Some(port) = free_gdb_ports() else { return rec(tally, "free TCP port", false, "none found") };
    let log = work_dir(board).join("gdb-transport-console.log");
    let o = Opts { timeout: Some(900), serial_log: Some(log.clone()), gdb_port: Some(port), ..Opts::on(board) };
    let (mut s, _a, _console) = match boot_lingering(&o, "guests linger") {
        Ok(x) => x,
        Err(e) => return rec(tally, "boot the demo and wait for SCENARIO LINGER", false, &e),
    };
    let console = s.console();
    rec(
        tally,
        "the hypervisor chose the virtio-serial line",
        console.lines().any(|l| l.contains("gdb line: virtio-serial")),
        &format!("console in {}", log.display()),
    );
    let lines: Vec<&str> = console.lines().filter(|l| l.contains("gdb line: virtio-serial")).collect();
    rec(
        tally,
        "the hypervisor found the whole system's port and each domain's",
        ["'org.lantern.gdb.0' (whole system)", "'org.lantern.gdb.d1' (domain 1)", "'org.lantern.gdb.d2' (domain 2)"]
            .iter()
            .all(|want| lines.iter().any(|l| l.contains(want))),
        &format!("{lines:?}"),
    );

    // (b) A client that attaches and vanishes.
    let p0 = progress(board, port);
    let answer = attach_and_vanish(port);
    rec(
        tally,
        "a client's qSupported is answered",
        answer.as_ref().is_ok_and(|a| a.contains("PacketSize")),
        &format!("{answer:?}"),
    );
    std::thread::sleep(SETTLE);
    let p1 = progress(board, port);
    rec(
        tally,
        "after a client sent qSupported and closed the socket, d1v0 ran on (runstate times advanced >= 1.5 s)",
        matches!((&p0, &p1), (Ok(a), Ok(b)) if *b - *a >= MIN_PROGRESS_NS),
        &format!("before {p0:?}, after {p1:?}"),
    );

    // (c) 100,000 malformed packets.
    let p2 = progress(board, port);
    let sent = flood(port);
    rec(tally, &format!("{FLOOD_PACKETS} malformed packets sent"), sent.is_ok(), &format!("{sent:?}"));
    let delta = |a: &Result<i128, String>, b: &Result<i128, String>| match (a, b) {
        (Ok(a), Ok(b)) => format!("{:.2} s", (b - a) as f64 / 1e9),
        _ => "?".into(),
    };
    println!("    {name}: d1v0 runstate advanced {} around the vanished client", delta(&p0, &p1));
    if let Ok((bytes, answered, took)) = &sent {
        println!("    {name}: flood of {bytes} bytes took {took:?}, {answered} bytes answered");
    }
    std::thread::sleep(SETTLE);
    let p3 = progress(board, port);
    rec(
        tally,
        "after the flood the stub answers and d1v0 ran on through it (runstate times advanced >= 1.5 s)",
        matches!((&p2, &p3), (Ok(a), Ok(b)) if *b - *a >= MIN_PROGRESS_NS),
        &format!("before {p2:?}, after {p3:?}"),
    );
    println!("    {name}: d1v0 runstate advanced {} around the flood", delta(&p2, &p3));

    // (d) Each domain's own line: gdb attaches on P+N (the architecture from
    // the stub) and lists the domain's vCPU 0; the whole system's line
    // answers after.
    for d in 1..=2u16 {
        let out = gdb::run_batch_domain(board, port, d, &[], &["info threads"], Duration::from_secs(120));
        let text = out.map(|o| o.text()).unwrap_or_else(|e| e);
        rec(
            tally,
            &format!("d{d}'s own gdb line (port {}) attaches and lists d{d}v0", port + d),
            text.contains(&format!("(d{d}v0 ")),
            &text,
        );
    }
    let p4 = progress(board, port);
    rec(tally, "the whole-system line answers after the domains' sessions", p4.is_ok(), &format!("{p4:?}"));
    let alive = s.wait_exit(Duration::from_millis(10)).is_err();
    rec(tally, "QEMU still running at the end (no crash)", alive, &format!("console in {}", log.display()));
    let bad = summary(&s.console());
    rec(tally, "no domain ended", bad.domains.is_empty(), &format!("{bad:?}"));
    drop(s);
    uart_fallback(board, tally, &rec);
}

/// `--gdb-transport uart`: without the virtio device the hypervisor falls
/// back to the board's 16550, says so, and gdb works over it.
fn uart_fallback(board: &'static dyn BoardSpec, tally: &mut Tally, rec: &dyn Fn(&mut Tally, &str, bool, &str)) {
    let Some(port) = free_port() else { return rec(tally, "free TCP port", false, "none found") };
    let log = work_dir(board).join("gdb-uart-console.log");
    let o = Opts {
        timeout: Some(600),
        serial_log: Some(log.clone()),
        gdb_port: Some(port),
        gdb_transport: GdbTransport::Uart,
        ..Opts::on(board)
    };
    let (s, _a, _console) = match boot_lingering(&o, "guests linger (UART line)") {
        Ok(x) => x,
        Err(e) => return rec(tally, "--gdb-transport uart: boot", false, &e),
    };
    let console = s.console();
    let said = console.lines().find(|l| l.contains("gdb line: ")).unwrap_or_default().to_string();
    rec(
        tally,
        "--gdb-transport uart: the hypervisor falls back to the 16550 and says so",
        said.contains("COM2") || said.contains("pci-serial"),
        &said,
    );
    let out = gdb::run_batch(board, port, &[], &["monitor domains"], Duration::from_secs(180));
    let text = out.map(|o| o.text()).unwrap_or_else(|e| e);
    rec(
        tally,
        "--gdb-transport uart: gdb attaches and the monitor answers",
        text.lines().any(|l| l.starts_with("d1 ") && l.contains("running")),
        &text,
    );
}
