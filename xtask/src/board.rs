//! The board-neutral half of `cargo xtask run|test|bench`: one option set and
//! parser for both architectures, building the hypervisor and the guests,
//! packing the guests into one newc cpio archive, rendering the boot
//! configuration, booting QEMU (plain, timed, or as a test session) and
//! reading the hypervisor's closing `(lantern) ...` lines. What differs per
//! architecture (kernel package, demo guests, QEMU machine, how the archive
//! reaches the hypervisor, exit statuses) lives in `board_x86.rs` and
//! `board_arm.rs`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lantern_common::boot_config::{BootConfig, DomainSpec};
use lantern_common::cpio;

pub use crate::gdb::GdbArch as Arch;

use crate::report::Tally;
use crate::setup::root;
use crate::{board_arm, board_x86, e2e};

/// Default guest memory per domain.
pub const DEMO_MEM: u64 = 32 << 20;
/// Prefix of the hypervisor's own console lines (guests' are `(dN) `).
pub const HV_PREFIX: &str = "(lantern) ";

/// Options of `cargo xtask run` (both boards).
#[derive(Clone, Debug)]
pub struct Opts {
    /// `--arch x86_64|aarch64` (default x86_64).
    pub arch: Arch,
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
    /// `--gdb-port P`: expose the gdb stub's serial line on 127.0.0.1:P.
    pub gdb_port: Option<u16>,
    /// `--wait-gdb`: hold every vCPU before its first instruction until gdb
    /// attaches and continues (the boot-configuration word `gdb-wait`).
    pub wait_gdb: bool,
    /// `--serial-log FILE`: write the console to FILE instead of stdout.
    pub serial_log: Option<PathBuf>,
    /// Only the first N demo guests (benchmarks run one domain alone).
    pub demo_domains: Option<usize>,
    /// QEMU's own gdb stub on 127.0.0.1:P (`-gdb`), for comparisons.
    pub qemu_gdb_port: Option<u16>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            arch: Arch::X86_64,
            guests: Vec::new(),
            exit: false,
            timeout: None,
            dry_run: false,
            debug: false,
            vcpus: None,
            mem: None,
            append: Vec::new(),
            guest_cmdline: None,
            gdb_port: None,
            wait_gdb: false,
            serial_log: None,
            demo_domains: None,
            qemu_gdb_port: None,
        }
    }
}

impl Opts {
    /// Default options on `arch`.
    pub fn on(arch: Arch) -> Opts {
        Opts { arch, ..Opts::default() }
    }
}

/// The help text of `cargo xtask run`.
pub const RUN_USAGE: &str = "\
usage: cargo xtask run [options]
  Builds Lantern and the guests and boots them in QEMU; the gdb stub listens on
  127.0.0.1:1234 (x86_64) / 127.0.0.1:1235 (aarch64) unless --gdb-port says otherwise.
options:
  --arch x86_64|aarch64   board (default x86_64)
  --guest ELF             boot this guest image instead of the demo guests (repeatable)
  --exit                  end when every domain has shut down; exit status = verdict
  --timeout S             kill QEMU after S seconds (default 120 with --exit)
  --dry-run               print the QEMU command line (shell-quoted) instead of running it
  --debug                 build the hypervisor with the dev profile (default release)
  --vcpus N               vCPUs of every domain (demo default: 34 x86_64, 4 aarch64)
  --mem SIZE              memory of every domain (K/M/G suffixes; default 32M)
  --append WORD           extra hypervisor command-line word (repeatable)
  --guest-cmdline TEXT    command line of every domain (e.g. bench)
  --gdb-port P            gdb stub port
  --wait-gdb              hold every vCPU before its first instruction until gdb continues
  --serial-log FILE       console to FILE instead of the terminal
Without --exit the demo guests get `linger` and stay alive for gdb.";

/// Parses the options of `cargo xtask run`. `Ok(None)` means `--help`.
pub fn parse_opts(args: &[String]) -> Result<Option<Opts>, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(v: String, what: &str) -> Result<T, String> {
            v.parse().map_err(|_| format!("{what}, not `{v}`"))
        }
        match a.as_str() {
            "--arch" => o.arch = Arch::parse(&value("--arch")?)?,
            "--guest" => o.guests.push(PathBuf::from(value("--guest")?)),
            "--exit" => o.exit = true,
            "--dry-run" => o.dry_run = true,
            "--debug" => o.debug = true,
            "--timeout" => o.timeout = Some(num(value("--timeout")?, "--timeout takes seconds")?),
            "--vcpus" => o.vcpus = Some(num(value("--vcpus")?, "--vcpus takes a number")?),
            "--mem" => {
                let v = value("--mem")?;
                o.mem = Some(lantern_common::boot_config::parse_size(&v).ok_or(format!("bad --mem size {v}"))?)
            }
            "--append" => o.append.push(value("--append")?),
            "--guest-cmdline" => o.guest_cmdline = Some(value("--guest-cmdline")?),
            "--gdb-port" => o.gdb_port = Some(num(value("--gdb-port")?, "--gdb-port takes a port")?),
            "--wait-gdb" => o.wait_gdb = true,
            "--serial-log" => o.serial_log = Some(PathBuf::from(value("--serial-log")?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`\n{RUN_USAGE}")),
        }
    }
    Ok(Some(o))
}

/// What [`build`] produced.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The hypervisor ELF.
    pub kernel: PathBuf,
    /// The boot module: every guest image in one newc cpio archive.
    pub module: PathBuf,
    /// The hypervisor command line (boot configuration + board words).
    pub cmdline: String,
    /// `(domain id, image name)` of every domain, in order.
    pub domains: Vec<(u16, String)>,
}

/// Runs `cargo build` with `args` and returns the path of the executable it
/// produced (the last `compiler-artifact` of cargo's JSON messages).
pub fn cargo_build_executable(args: &[&str]) -> Result<PathBuf, String> {
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

/// Builds a test-guest crate (`tests/guests/<dir>`) in release for `target`.
pub fn build_guest(dir: &str, target: &str) -> Result<PathBuf, String> {
    let manifest = root().join("tests/guests").join(dir).join("Cargo.toml");
    let manifest = manifest.to_str().ok_or("non-UTF-8 path")?.to_string();
    cargo_build_executable(&["--manifest-path", &manifest, "--release", "--target", target])
}

/// cargo's target directory (where the boards keep their files too).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

/// This board's scratch directory under the target directory.
pub fn work_dir(arch: Arch) -> PathBuf {
    target_dir().join(match arch {
        Arch::X86_64 => "lantern-x86",
        Arch::Aarch64 => "lantern-arm",
    })
}

/// vCPUs of each demo domain on `arch`.
pub fn demo_vcpus(arch: Arch) -> u32 {
    match arch {
        Arch::X86_64 => board_x86::DEMO_VCPUS,
        Arch::Aarch64 => board_arm::DEMO_VCPUS,
    }
}

/// QEMU's exit statuses for the hypervisor's verdicts `(clean, failed)`.
pub fn exit_codes(arch: Arch) -> (i32, i32) {
    match arch {
        Arch::X86_64 => (board_x86::QEMU_EXIT_CLEAN, board_x86::QEMU_EXIT_FAILED),
        Arch::Aarch64 => (board_arm::QEMU_EXIT_CLEAN, board_arm::QEMU_EXIT_FAILED),
    }
}

/// Builds the hypervisor and the guests, writes the boot module and computes
/// the command line.
pub fn build(opts: &Opts) -> Result<Artifacts, String> {
    let (package, target) = match opts.arch {
        Arch::X86_64 => board_x86::KERNEL,
        Arch::Aarch64 => board_arm::KERNEL,
    };
    let mut args = vec!["-p", package, "--target", target];
    if !opts.debug {
        args.push("--release");
    }
    let kernel = cargo_build_executable(&args)?;
    let demo = opts.guests.is_empty();
    let mut guests: Vec<(String, PathBuf)> = if demo {
        match opts.arch {
            Arch::X86_64 => board_x86::build_demo_guests()?,
            Arch::Aarch64 => board_arm::build_demo_guests()?,
        }
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
    if let Some(n) = opts.demo_domains {
        guests.truncate(n.max(1));
    }
    let mut files = Vec::new();
    for (name, path) in &guests {
        let data = std::fs::read(path).map_err(|e| format!("reading guest {}: {e}", path.display()))?;
        files.push((name.clone(), data));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let archive = cpio::write_newc(&refs);
    // The board's own command-line words (how it finds the archive, ...).
    let mut words = match opts.arch {
        Arch::X86_64 => Vec::new(),
        Arch::Aarch64 => board_arm::module_words(archive.len() as u64)?,
    };
    let dir = work_dir(opts.arch);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let module = dir.join("boot.cpio");
    std::fs::write(&module, &archive).map_err(|e| format!("writing {}: {e}", module.display()))?;

    let mut cfg = BootConfig { exit_when_done: opts.exit, ..BootConfig::default() };
    for (name, _) in &guests {
        let mut d = DomainSpec::new(name);
        d.vcpus = opts.vcpus.unwrap_or(if demo { demo_vcpus(opts.arch) } else { 1 });
        d.mem_bytes = opts.mem.unwrap_or(DEMO_MEM);
        let mut cmd: Vec<&str> = opts.guest_cmdline.iter().map(String::as_str).collect();
        if demo && !opts.exit {
            // The demo guests stay alive after their checks (for gdb).
            cmd.push("linger");
        }
        d.cmdline = cmd.join(" ");
        cfg.domains.push(d);
    }
    let rest = cfg.to_cmdline();
    if !rest.is_empty() {
        words.push(rest);
    }
    if opts.wait_gdb {
        words.push("gdb-wait".into());
    }
    words.extend(opts.append.iter().cloned());
    let domains = guests.iter().enumerate().map(|(i, (n, _))| (i as u16 + 1, n.clone())).collect();
    Ok(Artifacts { kernel, module, cmdline: words.join(" "), domains })
}

/// The QEMU command that boots `a` (no `timeout` wrapper: the callers
/// enforce it).
pub fn qemu_command(opts: &Opts, a: &Artifacts) -> Command {
    let mut c = Command::new(match opts.arch {
        Arch::X86_64 => "qemu-system-x86_64",
        Arch::Aarch64 => "qemu-system-aarch64",
    });
    let machine = match opts.arch {
        Arch::X86_64 => board_x86::MACHINE_ARGS,
        Arch::Aarch64 => board_arm::MACHINE_ARGS,
    };
    c.args(machine);
    c.args(["-display", "none", "-monitor", "none", "-no-reboot"]);
    match &opts.serial_log {
        Some(f) => c.arg("-serial").arg(format!("file:{}", f.display())),
        None => c.args(["-serial", "stdio"]),
    };
    if let Some(port) = opts.gdb_port {
        c.arg("-chardev").arg(format!("socket,id=gdbser,host=127.0.0.1,port={port},server=on,wait=off,nodelay=on"));
        c.args(match opts.arch {
            // COM2.
            Arch::X86_64 => ["-serial", "chardev:gdbser"],
            // virt has one PL011 (the console): a PCI 16550 carries gdb.
            Arch::Aarch64 => ["-device", "pci-serial,chardev=gdbser"],
        });
    }
    if let Some(port) = opts.qemu_gdb_port {
        c.arg("-gdb").arg(format!("tcp:127.0.0.1:{port}"));
    }
    c.arg("-kernel").arg(&a.kernel);
    match opts.arch {
        Arch::X86_64 => c.arg("-initrd").arg(&a.module),
        Arch::Aarch64 => c.arg("-device").arg(board_arm::loader_device(&a.module)),
    };
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
        println!("{RUN_USAGE}");
        return Ok(());
    };
    crate::setup::ensure_rust_targets()?;
    crate::setup::ensure_qemu_and_gdb()?;
    let port = *opts.gdb_port.get_or_insert(opts.arch.default_port());
    let a = build(&opts)?;
    if opts.dry_run {
        println!("{}", command_line(&qemu_command(&opts, &a)));
        return Ok(());
    }
    eprintln!(
        "xtask: gdb stub on 127.0.0.1:{port} — attach with `cargo xtask gdb --arch {} --gdb-port {port}`",
        opts.arch.name()
    );
    let (clean, failed) = exit_codes(opts.arch);
    match boot(&opts, &a)? {
        c if c == clean => Ok(()),
        c if c == failed => Err("the hypervisor's verdict: some domain did not end cleanly".into()),
        code => Err(format!("QEMU exited with status {code} (no verdict from the hypervisor)")),
    }
}

/// The hypervisor's closing lines in a console: `(lantern) dN: ...` per
/// domain and `(lantern) verdict PASS|FAIL`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// `(domain, what)`: `shut down (poweroff)`, `crashed`, ...
    pub domains: Vec<(u16, String)>,
    /// `Some(true)` for `verdict PASS`, `Some(false)` for FAIL.
    pub verdict: Option<bool>,
}

/// A hypervisor line `(lantern) dN: what` → `(N, what)`.
fn hv_domain_line(line: &str) -> Option<(u16, &str)> {
    let rest = line.strip_prefix(HV_PREFIX)?.strip_prefix('d')?;
    let (id, what) = rest.split_once(": ")?;
    Some((id.parse().ok()?, what))
}

/// Reads the closing lines (see [`Summary`]) from `console`.
pub fn summary(console: &str) -> Summary {
    let mut s = Summary::default();
    for l in console.lines().map(str::trim_end) {
        if let Some(v) = l.strip_prefix(HV_PREFIX).and_then(|r| r.strip_prefix("verdict ")) {
            s.verdict = Some(v.starts_with("PASS"));
        } else if let Some((id, what)) = hv_domain_line(l) {
            if what.starts_with("shut down") || matches!(what, "crashed" | "dead" | "still running") {
                s.domains.push((id, what.to_string()));
            }
        }
    }
    s
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
    let mut cmd = qemu_command(&o, a);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    let out = child.stdout.take().ok_or("no QEMU stdout")?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line.trim_end_matches('\r').to_string())).is_err() {
                break;
            }
        }
    });
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

/// Human name of a board in test names.
pub fn label(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "arm64",
    }
}

/// A board's part of `cargo xtask test`: boots the demo guests with
/// `--exit`, records every `CHECK` line, that each scenario completed, that
/// the hypervisor's closing lines say every domain powered off and PASS, and
/// QEMU's exit status.
pub fn e2e_test(arch: Arch, tally: &mut Tally) {
    let name = label(arch);
    let log = work_dir(arch).join("e2e-console.log");
    let o = Opts { exit: true, timeout: Some(180), serial_log: Some(log.clone()), ..Opts::on(arch) };
    let a = match build(&o) {
        Ok(a) => a,
        Err(e) => return tally.record(&format!("{name}: build"), false, &e),
    };
    let mut s = match e2e::Session::spawn(qemu_command(&o, &a), &log) {
        Ok(s) => s,
        Err(e) => return tally.record(&format!("{name}: boot"), false, &e),
    };
    let code = s.wait_exit(Duration::from_secs(180));
    let console = s.console();
    let doms: Vec<(u16, &str)> = a.domains.iter().map(|(d, n)| (*d, n.as_str())).collect();
    e2e::tally_guest_checks(tally, name, &console, &doms);
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
    tally.record(
        &format!("{name}: QEMU exit status carries the clean verdict"),
        code == Ok(exit_codes(arch).0),
        &format!("QEMU exit {code:?}, console in {}", log.display()),
    );
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok().map(|a| a.port())
}

/// `BENCH name=N ... ns_per_call=X` lines → `(name, ns_per_call)`.
fn bench_lines(lines: &[String]) -> Vec<(String, f64)> {
    lines
        .iter()
        .filter_map(|l| {
            let (_, body) = e2e::domain_line(l)?;
            let rest = body.strip_prefix("BENCH ")?;
            let kv = |k: &str| rest.split_whitespace().find_map(|w| w.strip_prefix(k)?.strip_prefix('='));
            Some((kv("name")?.to_string(), kv("ns_per_call")?.parse().ok()?))
        })
        .collect()
}

/// `(min, median)` of `v` (NaN when empty).
pub fn min_median(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    (v.first().copied().unwrap_or(f64::NAN), v.get(v.len() / 2).copied().unwrap_or(f64::NAN))
}

/// A board's figures for `cargo xtask bench`: `runs` boots of one demo
/// domain with `cmdline=bench` (the other domain would share the CPU); the
/// guest's in-guest round trips (bare trap, `xen_version`,
/// `register_vcpu_info`) and the ratio to the bare trap; QEMU start → first
/// guest line → last shutdown.
pub fn bench(arch: Arch, runs: usize) -> Result<(), String> {
    let o = Opts {
        exit: true,
        timeout: Some(240),
        guest_cmdline: Some("bench".into()),
        demo_domains: Some(1),
        ..Opts::on(arch)
    };
    let a = build(&o)?;
    let mut per_name: Vec<(String, Vec<f64>)> = Vec::new();
    let (mut first, mut last, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t = boot_timed(&o, &a, false)?;
        if t.status != Some(exit_codes(arch).0) || t.summary().verdict != Some(true) {
            let tail: Vec<&String> = t.lines.iter().rev().take(15).collect();
            return Err(format!("{} bench run {i} did not end cleanly ({:?}): {tail:?}", label(arch), t.status));
        }
        let lines = bench_lines(&t.lines);
        let bare = lines.iter().find(|(n, _)| n == "bare_trap").map(|(_, ns)| *ns);
        let mut record = |n: String, x: f64| match per_name.iter_mut().find(|(m, _)| *m == n) {
            Some((_, v)) => v.push(x),
            None => per_name.push((n, vec![x])),
        };
        for (n, ns) in lines {
            // The ratio within one boot: both ran under the same host load.
            if let (Some(b), true) = (bare, n != "bare_trap") {
                record(format!("`{n}` / bare trap (same boot)"), ns / b);
            }
            record(format!("in-guest `{n}` round trip"), ns);
        }
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        first.push(ms(t.first_guest_line));
        last.push(ms(t.last_shutdown));
        total.push(ms(Some(t.total)));
    }
    let vcpus = demo_vcpus(arch);
    println!(
        "== {} board: one domain ({}, {vcpus} vCPUs, cmdline=bench), {runs} boots; min / median",
        label(arch),
        a.domains[0].1
    );
    println!("| figure | min | median |");
    println!("|---|---|---|");
    per_name.sort_by_key(|(n, _)| n.contains(" / "));
    for (n, v) in &per_name {
        let (lo, med) = min_median(v);
        if n.contains(" / ") {
            println!("| {n} | {lo:.2}x | {med:.2}x |");
        } else {
            println!("| {n} | {lo:.0} ns | {med:.0} ns |");
        }
    }
    for (what, v) in [
        ("QEMU start -> first guest line", &first),
        ("QEMU start -> last shutdown", &last),
        ("QEMU start -> exit", &total),
    ] {
        let (lo, med) = min_median(v);
        println!("| {what} | {lo:.0} ms | {med:.0} ms |");
    }
    if arch == Arch::X86_64 {
        // The hypervisor's own VMRUN/VMMCALL round trip, without any guest
        // kernel: the `selftest` boot word runs two raw guests.
        let st = Opts { exit: true, timeout: Some(60), append: vec!["selftest".into()], ..Opts::on(arch) };
        let t = boot_timed(&st, &build(&st)?, false)?;
        for l in t.lines.iter().filter(|l| l.contains("round trip")) {
            println!("selftest: {l}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_run_options() {
        let args: Vec<String> =
            ["--arch", "aarch64", "--exit", "--vcpus", "3", "--wait-gdb", "--gdb-port", "4000", "--mem", "16M"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let o = parse_opts(&args).unwrap().unwrap();
        assert_eq!(o.arch, Arch::Aarch64);
        assert!(o.exit && o.wait_gdb);
        assert_eq!((o.vcpus, o.gdb_port, o.mem), (Some(3), Some(4000), Some(16 << 20)));
        assert!(parse_opts(&["--help".to_string()]).unwrap().is_none());
        assert!(parse_opts(&["--arch".to_string(), "mips".to_string()]).is_err());
        assert!(parse_opts(&["--bogus".to_string()]).is_err());
    }

    #[test]
    fn reads_closing_lines() {
        let c = "(lantern) boot\n(d1) CHECK PASS x\n(lantern) all domains finished in 5 ms\n\
                 (lantern) d1: shut down (poweroff)\n(lantern) d2: crashed\n(lantern) verdict FAIL\n";
        let s = summary(c);
        assert_eq!(s.domains, vec![(1, "shut down (poweroff)".to_string()), (2, "crashed".to_string())]);
        assert_eq!(s.verdict, Some(false));
        assert_eq!(shell_quote("a b"), "'a b'");
    }
}
