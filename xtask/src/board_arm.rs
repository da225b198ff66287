//! The arm64 board in xtask: builds the hypervisor image and the guests,
//! packs the guests into one newc cpio archive, and boots QEMU `virt` at EL2
//! (`virtualization=on`, GICv3, `-cpu max`, software emulation).
//!
//! How the pieces meet: QEMU loads the hypervisor ELF (`-kernel`) and the
//! archive (`-device loader` at [`MODULES_ADDR`]); `-append` carries the
//! shared boot configuration (`domain=...`, `exit`, rendered by
//! [`BootConfig::to_cmdline`]) plus the board's own words: the archive's
//! address and size (`lantern.modules=ADDR,SIZE`) and `lantern.semihosting`,
//! which makes the hypervisor's power-off set QEMU's exit status (0 when
//! every domain ended cleanly). The console also ends with a
//! `lantern: verdict PASS|FAIL` line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lantern_common::boot_config::{BootConfig, DomainSpec};
use lantern_common::cpio;

use crate::e2e;
use crate::report::Tally;
use crate::setup::root;

/// QEMU's exit status when every domain ended cleanly (semihosting exit 0).
pub const QEMU_EXIT_CLEAN: i32 = 0;
/// QEMU's exit status for the hypervisor's "failed" verdict.
pub const QEMU_EXIT_FAILED: i32 = 1;
/// Host-physical address where QEMU puts the module archive (RAM is
/// 0x4000_0000..0x6000_0000 with `-m 512M`; the hypervisor's heap stops
/// below the archive).
pub const MODULES_ADDR: u64 = 0x5800_0000;
/// Largest archive that fits between [`MODULES_ADDR`] and the end of RAM.
pub const MODULES_MAX: u64 = 0x0800_0000;
/// Rust target of everything that runs inside QEMU.
pub const TARGET: &str = "aarch64-unknown-none";
/// Default guest memory per domain.
const DEMO_MEM: u64 = 32 << 20;
/// vCPUs of the demo domain: the scenario needs at least 3, and on arm64
/// every vCPU but 0 starts on the dummy vcpu_info area.
const DEMO_VCPUS: u32 = 4;

/// Options of `cargo xtask run --arch aarch64` (the same as the x86 board's).
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// `--guest IMAGE` (repeatable, ELF or arm64 Image): boot these instead
    /// of the arm64 test guest.
    pub guests: Vec<PathBuf>,
    /// `--exit`: end once every domain has shut down, exit with the verdict.
    pub exit: bool,
    /// `--timeout S`: kill QEMU after S seconds (default 120 with `--exit`).
    pub timeout: Option<u64>,
    /// `--dry-run`: print the QEMU command line instead of running it.
    pub dry_run: bool,
    /// `--debug`: build the hypervisor with the dev profile (default release).
    pub debug: bool,
    /// `--vcpus N`: vCPUs for every domain.
    pub vcpus: Option<u32>,
    /// `--mem SIZE`: memory per domain (K/M/G suffixes).
    pub mem: Option<u64>,
    /// `--append WORD` (repeatable): extra hypervisor command-line words.
    pub append: Vec<String>,
    /// `--gdb-port P`: expose the gdb stub's serial line (a PCI 16550,
    /// `pci-serial`) on 127.0.0.1:P.
    pub gdb_port: Option<u16>,
    /// `--serial-log FILE`: write the console to FILE instead of stdout.
    pub serial_log: Option<PathBuf>,
    /// `--guest-cmdline TEXT`: command line of every domain (e.g. `bench`).
    pub guest_cmdline: Option<String>,
}

/// What [`build`] produced.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The hypervisor ELF.
    pub kernel: PathBuf,
    /// The module archive: every guest image in one newc cpio archive.
    pub module: PathBuf,
    /// The hypervisor command line (boot configuration + board words).
    pub cmdline: String,
}

/// Parses the options of `cargo xtask run` (after `--arch aarch64`, which
/// the caller may leave in: it is accepted and checked here).
pub fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--arch" => {
                let v = value("--arch")?;
                if v != "aarch64" && v != "arm64" {
                    return Err(format!("the arm64 board cannot run --arch {v}"));
                }
            }
            "--guest" => o.guests.push(PathBuf::from(value("--guest")?)),
            "--exit" => o.exit = true,
            "--dry-run" => o.dry_run = true,
            "--debug" => o.debug = true,
            "--timeout" => {
                o.timeout = Some(value("--timeout")?.parse().map_err(|_| "--timeout takes seconds".to_string())?)
            }
            "--vcpus" => o.vcpus = Some(value("--vcpus")?.parse().map_err(|_| "--vcpus takes a number".to_string())?),
            "--mem" => {
                let v = value("--mem")?;
                o.mem = Some(lantern_common::boot_config::parse_size(&v).ok_or(format!("bad --mem size {v}"))?)
            }
            "--append" => o.append.push(value("--append")?),
            "--gdb-port" => {
                o.gdb_port = Some(value("--gdb-port")?.parse().map_err(|_| "--gdb-port takes a port".to_string())?)
            }
            "--serial-log" => o.serial_log = Some(PathBuf::from(value("--serial-log")?)),
            "--guest-cmdline" => o.guest_cmdline = Some(value("--guest-cmdline")?),
            other => return Err(format!("unknown option `{other}` for the arm64 board")),
        }
    }
    Ok(o)
}

/// Runs `cargo build` with `args` and returns the path of the executable it
/// produced (from cargo's JSON messages).
fn cargo_build_executable(args: &[&str]) -> Result<PathBuf, String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args(["build", "--message-format=json-render-diagnostics"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build {} failed", args.join(" ")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let key = "\"executable\":\"";
    text.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let start = l.find(key)? + key.len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .next_back()
        .ok_or_else(|| format!("cargo build {} produced no executable", args.join(" ")))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// Builds the hypervisor and the guests, writes the module archive and
/// computes the command line.
pub fn build(opts: &Opts) -> Result<Artifacts, String> {
    let mut args = vec!["-p", "lantern-arm-virt", "--target", TARGET];
    if !opts.debug {
        args.push("--release");
    }
    let kernel = cargo_build_executable(&args)?;
    let demo = opts.guests.is_empty();
    let guests: Vec<(String, PathBuf)> = if demo {
        let manifest = root().join("tests/guests/arm64/Cargo.toml");
        let manifest = manifest.to_str().ok_or("non-UTF-8 path")?.to_string();
        vec![(
            "guest".to_string(),
            cargo_build_executable(&["--manifest-path", &manifest, "--release", "--target", TARGET])?,
        )]
    } else {
        opts.guests
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let stem = p.file_name().and_then(|s| s.to_str()).unwrap_or("guest");
                (format!("{}-{stem}", i + 1), p.clone())
            })
            .collect()
    };
    let mut files = Vec::new();
    for (name, path) in &guests {
        let data = std::fs::read(path).map_err(|e| format!("reading guest {}: {e}", path.display()))?;
        files.push((name.clone(), data));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let archive = cpio::write_newc(&refs);
    if archive.len() as u64 > MODULES_MAX {
        return Err(format!("guest images too large: {} bytes (at most {MODULES_MAX})", archive.len()));
    }
    let dir = target_dir().join("lantern-arm");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let module = dir.join("modules.cpio");
    std::fs::write(&module, &archive).map_err(|e| format!("writing {}: {e}", module.display()))?;

    let mut cfg = BootConfig { exit_when_done: opts.exit, ..BootConfig::default() };
    for (name, _) in &guests {
        let mut d = DomainSpec::new(name);
        d.vcpus = opts.vcpus.unwrap_or(if demo { DEMO_VCPUS } else { 1 });
        d.mem_bytes = opts.mem.unwrap_or(DEMO_MEM);
        d.cmdline = opts.guest_cmdline.clone().unwrap_or_default();
        cfg.domains.push(d);
    }
    let mut cmdline = format!("lantern.modules={MODULES_ADDR:#x},{:#x} lantern.semihosting", archive.len());
    let rest = cfg.to_cmdline();
    if !rest.is_empty() {
        cmdline.push(' ');
        cmdline.push_str(&rest);
    }
    for w in &opts.append {
        cmdline.push(' ');
        cmdline.push_str(w);
    }
    Ok(Artifacts { kernel, module, cmdline })
}

/// The QEMU command that boots `a` (no `timeout` wrapper: [`boot`] enforces it).
pub fn qemu_command(opts: &Opts, a: &Artifacts) -> Command {
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", "virt,virtualization=on,gic-version=3", "-cpu", "max", "-m", "512M", "-smp", "1"]);
    c.args(["-display", "none", "-monitor", "none", "-no-reboot"]);
    c.args(["-semihosting-config", "enable=on,target=native"]);
    match &opts.serial_log {
        Some(f) => c.arg("-serial").arg(format!("file:{}", f.display())),
        None => c.args(["-serial", "stdio"]),
    };
    if let Some(port) = opts.gdb_port {
        c.args([
            "-chardev",
            &format!("socket,id=gdbser,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on"),
            "-device",
            "pci-serial,chardev=gdbser",
        ]);
    }
    c.arg("-kernel").arg(&a.kernel);
    c.arg("-device").arg(format!("loader,file={},addr={MODULES_ADDR:#x},force-raw=on", a.module.display()));
    c.arg("-append").arg(&a.cmdline);
    c
}

fn limit(opts: &Opts) -> Option<Duration> {
    opts.timeout.or(if opts.exit { Some(120) } else { None }).map(Duration::from_secs)
}

/// Boots QEMU and waits for it (or the timeout); returns QEMU's exit status.
pub fn boot(opts: &Opts, a: &Artifacts) -> Result<i32, String> {
    let mut cmd = qemu_command(opts, a);
    if opts.exit || opts.timeout.is_some() {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
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

/// How a timed run ended (see [`boot_timed`]).
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// QEMU's exit status, `None` if it was killed at the timeout.
    pub status: Option<i32>,
    /// The verdict line said PASS.
    pub verdict_pass: bool,
    /// Every console line.
    pub lines: Vec<String>,
    /// QEMU start → first console line.
    pub first_line: Option<Duration>,
    /// QEMU start → first guest line (`(dN) ...`).
    pub first_guest_line: Option<Duration>,
    /// QEMU start → the last `lantern: dN: shut down` line.
    pub last_shutdown: Option<Duration>,
    /// QEMU start → exit.
    pub total: Duration,
}

/// Boots with the console on a pipe, echoing it, and timestamps the lines
/// that matter for the benchmarks (QEMU start → first line → first guest
/// line → last shutdown).
pub fn boot_timed(opts: &Opts, a: &Artifacts) -> Result<Timing, String> {
    let mut o = opts.clone();
    o.serial_log = None;
    let mut cmd = qemu_command(&o, a);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no QEMU stdout")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line.trim_end_matches('\r').to_string())).is_err() {
                break;
            }
        }
    });
    let mut t = Timing::default();
    let deadline = start + limit(opts).unwrap_or(Duration::from_secs(120));
    let mut exited = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((at, line)) => {
                println!("{line}");
                let at = at - start;
                t.first_line.get_or_insert(at);
                if line.starts_with("(d") {
                    t.first_guest_line.get_or_insert(at);
                }
                if line.starts_with("lantern: d") && line.contains(": shut down") {
                    t.last_shutdown = Some(at);
                }
                if let Some(v) = line.strip_prefix("lantern: verdict ") {
                    t.verdict_pass = v.starts_with("PASS");
                }
                t.lines.push(line);
            }
            // The reader ends when QEMU closes its stdout, i.e. exits.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !exited && Instant::now() >= deadline {
            let _ = child.kill();
            exited = true;
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    t.status = if exited { None } else { status.code() };
    t.total = start.elapsed();
    let _ = reader.join();
    Ok(t)
}

/// `cargo xtask run --arch aarch64`: build, then boot (or print with `--dry-run`).
pub fn run(opts: &Opts) -> Result<(), String> {
    let a = build(opts)?;
    if opts.dry_run {
        let c = qemu_command(opts, &a);
        let line: Vec<String> =
            std::iter::once(c.get_program()).chain(c.get_args()).map(|s| s.to_string_lossy().into_owned()).collect();
        println!("{}", line.join(" "));
        return Ok(());
    }
    match boot(opts, &a)? {
        QEMU_EXIT_CLEAN => Ok(()),
        QEMU_EXIT_FAILED => Err("the hypervisor's verdict: some domain did not end cleanly".into()),
        code => Err(format!("QEMU exited with status {code} (no verdict from the hypervisor)")),
    }
}

/// The arm64 board's part of `cargo xtask test`: boots the arm64 test guest
/// (4 vCPUs, `--exit`), records each of its `CHECK` lines, that its scenario
/// completed, and the hypervisor's verdict (QEMU's exit status).
pub fn e2e_test(tally: &mut Tally) {
    let log = target_dir().join("lantern-arm").join("e2e-console.log");
    let o = Opts { exit: true, timeout: Some(180), serial_log: Some(log.clone()), ..Opts::default() };
    let a = match build(&o) {
        Ok(a) => a,
        Err(e) => return tally.record("arm64: build", false, &e),
    };
    let mut s = match e2e::Session::spawn(qemu_command(&o, &a), &log) {
        Ok(s) => s,
        Err(e) => return tally.record("arm64: boot", false, &e),
    };
    let code = s.wait_exit(Duration::from_secs(180));
    let console = s.console();
    e2e::tally_guest_checks(tally, "arm64", &console, &[(1, "guest")]);
    tally.record(
        "arm64: verdict (every domain powered off cleanly)",
        code == Ok(QEMU_EXIT_CLEAN),
        &format!("QEMU exit {code:?}, console in {}", log.display()),
    );
}

/// A free TCP port on 127.0.0.1 (for the gdb serial line).
fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok().map(|a| a.port())
}

/// gdb against the arm64 board, for `cargo xtask test`: boots the test guest
/// with `gdb-wait` and the gdb serial line, attaches `gdb-multiarch` in batch
/// mode while every vCPU is held, checks what it prints (threads, monitor
/// command, registers of the Linux-Image-style entry, disassembly through the
/// guest's memory), lets the system run to completion with `continue`, and
/// checks that the guest's scenario still passes.
pub fn gdb_e2e_test(tally: &mut Tally) {
    let log = target_dir().join("lantern-arm").join("gdb-console.log");
    let Some(port) = free_port() else {
        return tally.record("arm64 gdb: free TCP port", false, "none found");
    };
    let o = Opts {
        exit: true,
        timeout: Some(180),
        serial_log: Some(log.clone()),
        gdb_port: Some(port),
        append: vec!["gdb-wait".into()],
        ..Opts::default()
    };
    let a = match build(&o) {
        Ok(a) => a,
        Err(e) => return tally.record("arm64 gdb: build", false, &e),
    };
    let mut s = match e2e::Session::spawn(qemu_command(&o, &a), &log) {
        Ok(s) => s,
        Err(e) => return tally.record("arm64 gdb: boot", false, &e),
    };
    if let Err(e) = s.wait_for(Duration::from_secs(60), |c| c.contains("gdb-wait: holding")) {
        return tally.record("arm64 gdb: hypervisor waits for gdb", false, &e);
    }
    let out = Command::new("timeout")
        .arg("120")
        .arg("gdb-multiarch")
        .args(["-nx", "-batch", "-ex", "set architecture aarch64", "-ex", "set pagination off"])
        .args(["-ex", &format!("target remote 127.0.0.1:{port}")])
        .args(["-ex", "info threads", "-ex", "monitor domains", "-ex", "info registers pc x0 cpsr"])
        .args(["-ex", "x/1i $pc", "-ex", "continue"])
        .stdin(Stdio::null())
        .output();
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        Err(e) => return tally.record("arm64 gdb: run gdb-multiarch", false, &e.to_string()),
    };
    let has = |needle: &str| text.contains(needle);
    let line_with = |a: &str, b: &str| text.lines().any(|l| l.contains(a) && l.contains(b));
    tally.record("arm64 gdb: threads are vCPUs d1v0..d1v3", (0..4).all(|v| has(&format!("d1v{v} "))), &text);
    tally.record("arm64 gdb: monitor domains names d1 with the arm64 layout", line_with("d1 ", "arm64"), &text);
    tally.record("arm64 gdb: vCPU 0 at the Image entry (pc 0)", line_with("pc ", "0x0 "), &text);
    tally.record("arm64 gdb: x0 holds the guest DTB address", line_with("x0 ", "0x1e00000"), &text);
    tally.record("arm64 gdb: cpsr is EL1h with DAIF masked", line_with("cpsr", "0x3c5"), &text);
    tally.record("arm64 gdb: disassembly through guest memory (Image branch)", has("b\t0x40"), &text);
    let code = s.wait_exit(Duration::from_secs(120));
    let console = s.console();
    e2e::tally_guest_checks(tally, "arm64 under gdb", &console, &[(1, "guest")]);
    tally.record("arm64 gdb: clean power-off after continue", code == Ok(QEMU_EXIT_CLEAN), &format!("{code:?}"));
}

/// The arm64 board's figures for `cargo xtask bench`: the test guest's
/// in-guest `BENCH` lines (null hypercall vs bare trap) and QEMU start →
/// first console line → first guest line → last domain shutdown.
pub fn bench() -> Result<Timing, String> {
    let o = Opts { exit: true, timeout: Some(180), guest_cmdline: Some("bench".into()), ..Opts::default() };
    let a = build(&o)?;
    let t = boot_timed(&o, &a)?;
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
    println!(
        "arm64: QEMU start -> first line {}, -> first guest line {}, -> last shutdown {}, total {}",
        ms(t.first_line),
        ms(t.first_guest_line),
        ms(t.last_shutdown),
        ms(Some(t.total))
    );
    for l in t.lines.iter().filter(|l| l.contains("BENCH ")) {
        println!("arm64: {l}");
    }
    if t.verdict_pass && t.status == Some(QEMU_EXIT_CLEAN) {
        Ok(t)
    } else {
        Err(format!("arm64 bench run did not end cleanly (status {:?})", t.status))
    }
}
