//! The x86_64 board in xtask: builds the hypervisor image and the guests,
//! packs the guests into the boot module (newc cpio), and boots QEMU q35 with
//! AMD SVM (`-cpu max`, software emulation), ending with the hypervisor's
//! verdict from isa-debug-exit.

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

/// QEMU's exit status when the hypervisor reports that every domain ended
/// cleanly (isa-debug-exit value 0x10 → (0x10 << 1) | 1).
pub const QEMU_EXIT_CLEAN: i32 = 33;
/// QEMU's exit status for the hypervisor's "failed" verdict (value 0x11).
pub const QEMU_EXIT_FAILED: i32 = 35;
/// Default guest memory per domain.
const DEMO_MEM: u64 = 32 << 20;
/// vCPUs of each demo domain: more than 32, so vCPUs start on the dummy area.
const DEMO_VCPUS: u32 = 34;

/// Options of `cargo xtask run` for this board.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// `--guest ELF` (repeatable): boot these images instead of the demo guests.
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
    /// `--guest-cmdline TEXT`: command line for every domain (e.g. `bench`).
    pub guest_cmdline: Option<String>,
    /// `--gdb-port P`: expose the hypervisor's second serial line (COM2, the
    /// gdb stub's) on 127.0.0.1:P.
    pub gdb_port: Option<u16>,
    /// `--serial-log FILE`: write the console to FILE instead of stdout.
    pub serial_log: Option<PathBuf>,
}

/// What [`build`] produced.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The hypervisor ELF (booted through its PVH note).
    pub kernel: PathBuf,
    /// The boot module: every guest image in one newc cpio archive.
    pub module: PathBuf,
    /// The hypervisor command line (boot configuration).
    pub cmdline: String,
}

/// Parses the options of `cargo xtask run` (after `--arch x86_64`, which the
/// caller may leave in: it is accepted and checked here).
pub fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--arch" => {
                let v = value("--arch")?;
                if v != "x86_64" {
                    return Err(format!("the x86 board cannot run --arch {v}"));
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
            "--guest-cmdline" => o.guest_cmdline = Some(value("--guest-cmdline")?),
            "--gdb-port" => {
                o.gdb_port = Some(value("--gdb-port")?.parse().map_err(|_| "--gdb-port takes a port".to_string())?)
            }
            "--serial-log" => o.serial_log = Some(PathBuf::from(value("--serial-log")?)),
            other => return Err(format!("unknown option `{other}` for the x86_64 board")),
        }
    }
    Ok(o)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cargo build` with `args` and returns the path of the one executable
/// it produced (read from cargo's JSON messages).
fn cargo_build_executable(args: &[&str]) -> Result<PathBuf, String> {
    let out = cargo()
        .args(["build", "--message-format=json-render-diagnostics"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo build {} failed", args.join(" ")));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = start + l[start..].find('"')?;
            Some(PathBuf::from(&l[start..end]))
        })
        .next_back()
        .ok_or_else(|| format!("cargo build {} produced no executable", args.join(" ")))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// The demo guests: the x86 test guest built 64-bit and 32-bit.
fn build_demo_guests() -> Result<Vec<(String, PathBuf)>, String> {
    let manifest = root().join("tests/guests/x86/Cargo.toml");
    let manifest = manifest.to_str().ok_or("non-UTF-8 path")?.to_string();
    let g64 = cargo_build_executable(&["--manifest-path", &manifest, "--release", "--target", "x86_64-unknown-none"])?;
    let g32 =
        cargo_build_executable(&["--manifest-path", &manifest, "--release", "--target", "i686-unknown-linux-gnu"])?;
    Ok(vec![("guest64".to_string(), g64), ("guest32".to_string(), g32)])
}

/// Builds the hypervisor and the guests, writes the boot module and computes
/// the command line.
pub fn build(opts: &Opts) -> Result<Artifacts, String> {
    let mut args = vec!["-p", "lantern-x86-qemu", "--target", "x86_64-unknown-none"];
    if !opts.debug {
        args.push("--release");
    }
    let kernel = cargo_build_executable(&args)?;
    let guests: Vec<(String, PathBuf)> = if opts.guests.is_empty() {
        build_demo_guests()?
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
    let dir = target_dir().join("lantern-x86");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let module = dir.join("boot.cpio");
    std::fs::write(&module, cpio::write_newc(&refs)).map_err(|e| format!("writing {}: {e}", module.display()))?;

    let demo = opts.guests.is_empty();
    let mut cfg = BootConfig { exit_when_done: opts.exit, ..BootConfig::default() };
    for (name, _) in &guests {
        let mut d = DomainSpec::new(name);
        d.vcpus = opts.vcpus.unwrap_or(if demo { DEMO_VCPUS } else { 1 });
        d.mem_bytes = opts.mem.unwrap_or(DEMO_MEM);
        let mut words: Vec<&str> = opts.guest_cmdline.iter().map(String::as_str).collect();
        if demo && !opts.exit {
            // The demo guests stay alive after their checks (for gdb).
            words.push("linger");
        }
        d.cmdline = words.join(" ");
        cfg.domains.push(d);
    }
    let mut cmdline = cfg.to_cmdline();
    for w in &opts.append {
        cmdline.push(' ');
        cmdline.push_str(w);
    }
    Ok(Artifacts { kernel, module, cmdline })
}

/// The QEMU command that boots `a` (no `timeout` wrapper: [`run`] enforces it).
pub fn qemu_command(opts: &Opts, a: &Artifacts) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-M", "q35", "-cpu", "max", "-m", "1G", "-smp", "1", "-display", "none", "-no-reboot"]);
    c.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    match &opts.serial_log {
        Some(f) => c.arg("-serial").arg(format!("file:{}", f.display())),
        None => c.args(["-serial", "stdio"]),
    };
    if let Some(port) = opts.gdb_port {
        c.args([
            "-chardev",
            &format!("socket,id=gdbser,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on"),
            "-serial",
            "chardev:gdbser",
        ]);
    }
    c.arg("-kernel").arg(&a.kernel);
    c.arg("-initrd").arg(&a.module);
    c.arg("-append").arg(&a.cmdline);
    c
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Renders a command as a shell line.
pub fn command_line(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Boots QEMU and waits for it (or the timeout); returns QEMU's exit status.
pub fn boot(opts: &Opts, a: &Artifacts) -> Result<i32, String> {
    let mut cmd = qemu_command(opts, a);
    if opts.exit || opts.timeout.is_some() {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let limit = opts.timeout.or(if opts.exit { Some(120) } else { None }).map(Duration::from_secs);
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

/// `cargo xtask run` on x86_64: build, then boot (or print with `--dry-run`).
pub fn run(opts: &Opts) -> Result<(), String> {
    let a = build(opts)?;
    if opts.dry_run {
        println!("{}", command_line(&qemu_command(opts, &a)));
        return Ok(());
    }
    match boot(opts, &a)? {
        QEMU_EXIT_CLEAN => Ok(()),
        QEMU_EXIT_FAILED => Err("the hypervisor's verdict: some domain did not end cleanly".into()),
        code => Err(format!("QEMU exited with status {code} (no verdict from the hypervisor)")),
    }
}

/// Console timestamps of one boot (for `cargo xtask bench`).
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
    /// QEMU start → the last `(XEN) dN: shut down` line.
    pub last_shutdown: Option<Duration>,
    /// QEMU start → exit.
    pub total: Duration,
}

/// Boots with the console on a pipe (echoed) and timestamps its lines.
pub fn boot_timed(opts: &Opts, a: &Artifacts) -> Result<Timing, String> {
    let mut o = opts.clone();
    o.serial_log = None;
    let mut cmd = qemu_command(&o, a);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let out = child.stdout.take().ok_or("no QEMU stdout")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let deadline = start + Duration::from_secs(opts.timeout.unwrap_or(120));
    let mut t = Timing::default();
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((at, line)) => {
                println!("{line}");
                let at = at - start;
                t.first_line.get_or_insert(at);
                if e2e::domain_line(&line).is_some() {
                    t.first_guest_line.get_or_insert(at);
                }
                if line.starts_with("(XEN) d") && line.contains(": shut down") {
                    t.last_shutdown = Some(at);
                }
                t.lines.push(line);
            }
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

/// The x86 board's part of `cargo xtask test`: boots both test guests (34
/// vCPUs each, `--exit`), records every `CHECK` line, that each scenario
/// completed, and the hypervisor's verdict (QEMU's exit status).
pub fn e2e_test(tally: &mut Tally) {
    let log = target_dir().join("lantern-x86").join("e2e-console.log");
    let o = Opts { exit: true, timeout: Some(180), serial_log: Some(log.clone()), ..Opts::default() };
    let a = match build(&o) {
        Ok(a) => a,
        Err(e) => return tally.record("x86_64: build", false, &e),
    };
    let mut s = match e2e::Session::spawn(qemu_command(&o, &a), &log) {
        Ok(s) => s,
        Err(e) => return tally.record("x86_64: boot", false, &e),
    };
    let code = s.wait_exit(Duration::from_secs(180));
    let console = s.console();
    e2e::tally_guest_checks(tally, "x86_64", &console, &[(1, "guest64"), (2, "guest32")]);
    tally.record(
        "x86_64: verdict (every domain powered off cleanly)",
        code == Ok(QEMU_EXIT_CLEAN),
        &format!("QEMU exit {code:?}, console in {}", log.display()),
    );
}

/// The x86 board's figures for `cargo xtask bench`: the guests' in-guest
/// `BENCH` lines (bare trap vs null hypercall vs register_vcpu_info), the
/// hypervisor's own VMRUN round trip (`selftest`), and QEMU start → first
/// console line → first guest line → last domain shutdown.
pub fn bench() -> Result<Timing, String> {
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
    let self_test = Opts { exit: true, timeout: Some(60), append: vec!["selftest".into()], ..Opts::default() };
    let a = build(&self_test)?;
    let st = boot_timed(&self_test, &a)?;
    for l in st.lines.iter().filter(|l| l.contains("round trip")) {
        println!("x86_64: {l}");
    }
    let o = Opts { exit: true, timeout: Some(180), guest_cmdline: Some("bench".into()), ..Opts::default() };
    let a = build(&o)?;
    let t = boot_timed(&o, &a)?;
    println!(
        "x86_64: QEMU start -> first line {}, -> first guest line {}, -> last shutdown {}, total {}",
        ms(t.first_line),
        ms(t.first_guest_line),
        ms(t.last_shutdown),
        ms(Some(t.total))
    );
    for l in t.lines.iter().filter(|l| l.contains("BENCH ")) {
        println!("x86_64: {l}");
    }
    if t.status == Some(QEMU_EXIT_CLEAN) {
        Ok(t)
    } else {
        Err(format!("x86_64 bench run did not end cleanly (status {:?})", t.status))
    }
}
