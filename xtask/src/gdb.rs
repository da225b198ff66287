//! `cargo xtask gdb`: starts `gdb-multiarch` set up for Lantern — the
//! architecture, `tools/gdb/lantern.py`, the test guests' symbols — and
//! attaches it to the gdb stub of a running `cargo xtask run`: the
//! whole-system session on the base port P, or with `--domain N` domain N's
//! own session on P+N. Also the batch-mode runner the end-to-end tests and
//! benchmarks use.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boards::{self, BoardSpec};
use crate::paths::root;
use crate::qemu::domain_gdb_port;
use crate::CmdResult;

/// `tools/gdb/lantern.py`.
pub fn lantern_py() -> PathBuf {
    root().join("tools/gdb/lantern.py")
}

/// A symbol file to load, optionally relocated by `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolFile {
    /// The ELF.
    pub path: PathBuf,
    /// Added to every section address (`symbol-file -o`).
    pub offset: Option<u64>,
}

impl SymbolFile {
    /// Parses `ELF` or `ELF@OFFSET` (OFFSET in hex with `0x`, or decimal).
    pub fn parse(s: &str) -> Result<SymbolFile, String> {
        match s.rsplit_once('@') {
            Some((p, off)) => {
                let offset = match off.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => off.parse(),
                }
                .map_err(|_| format!("bad symbol offset in `{s}`"))?;
                Ok(SymbolFile { path: PathBuf::from(p), offset: Some(offset) })
            }
            None => Ok(SymbolFile { path: PathBuf::from(s), offset: None }),
        }
    }
}

/// Which of a run's gdb sessions to attach to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    /// The whole system, on the run's gdb port P.
    System,
    /// Domain N's own session, on P+N (the virtio-serial line only).
    Domain(u16),
}

impl Session {
    /// The TCP port of this session when the run's gdb port is `base`.
    pub fn port(self, base: u16) -> Result<u16, String> {
        match self {
            Session::System => Ok(base),
            Session::Domain(d) => domain_gdb_port(base, d),
        }
    }
}

/// The gdb commands (in order) that set up a whole-system session on
/// `port`: architecture, helpers, symbols, then `target remote`.
pub fn setup_commands(board: &dyn BoardSpec, port: u16, symbols: &[SymbolFile]) -> Vec<String> {
    session_commands(board, Some(board.gdb_arch()), port, symbols)
}

/// The gdb commands that set up `session` of a run whose gdb port is
/// `base`. A domain's session sets no architecture: gdb takes it from the
/// stub's target description, which names the domain's own (`i386` for a
/// 32-bit x86 domain, where forcing the board's `i386:x86-64` would read
/// its registers in the wrong layout).
pub fn session_setup_commands(
    board: &dyn BoardSpec,
    base: u16,
    session: Session,
    symbols: &[SymbolFile],
) -> Result<Vec<String>, String> {
    let port = session.port(base)?;
    Ok(match session {
        Session::System => setup_commands(board, port, symbols),
        Session::Domain(_) => session_commands(board, None, port, symbols),
    })
}

fn session_commands(board: &dyn BoardSpec, arch: Option<&str>, port: u16, symbols: &[SymbolFile]) -> Vec<String> {
    let mut ex = vec![
        "set pagination off".to_string(),
        "set confirm off".to_string(),
        // Serial-line latency: allow slow replies (e.g. a long monitor answer).
        "set remotetimeout 20".to_string(),
    ];
    if let Some(arch) = arch {
        ex.push(format!("set architecture {arch}"));
    }
    if let Some(abi) = board.gdb_osabi() {
        ex.push(format!("set osabi {abi}"));
    }
    ex.push(format!("source {}", lantern_py().display()));
    // The first file is the program's (`symbol-file`); gdb treats any
    // other like a shared library, where a breakpoint it cannot insert is
    // quietly left pending and `continue` runs on (docs/gdb-linux.md).
    for (i, s) in symbols.iter().enumerate() {
        let load = if i == 0 { "symbol-file" } else { "add-symbol-file" };
        match s.offset {
            Some(o) => ex.push(format!("{load} -o {o:#x} {}", s.path.display())),
            None => ex.push(format!("{load} {}", s.path.display())),
        }
    }
    ex.push(format!("target remote 127.0.0.1:{port}"));
    ex
}

fn to_args(ex: &[String]) -> Vec<String> {
    ex.iter().flat_map(|e| ["-ex".to_string(), e.clone()]).collect()
}

/// What a batch run of gdb printed.
#[derive(Clone, Debug)]
pub struct BatchOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error (gdb prints errors and some warnings here).
    pub stderr: String,
    /// Exit code (`None` if killed by a signal; 124 = timed out).
    pub code: Option<i32>,
    /// Wall time of the whole run (attach included).
    pub elapsed: Duration,
}

impl BatchOutput {
    /// stdout followed by stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Every line that is a JSON object (the `--json` monitor answers), in
    /// order. In batch mode gdb prints the stub's console output (monitor
    /// answers) on stderr, so both streams are searched, stdout first.
    pub fn json_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .chain(self.stderr.lines())
            .map(str::trim)
            .filter(|l| l.starts_with('{') && l.ends_with('}'))
            .collect()
    }
}

/// `$N = VALUE` lines of a batch's output, in order.
pub fn print_values(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('$')?;
            let (n, v) = rest.split_once(" = ")?;
            n.parse::<u32>().ok()?;
            Some(v.trim().to_string())
        })
        .collect()
}

/// The total of a `monitor runstate dNvM --json` answer's hypervisor times.
pub fn runstate_total(out: &BatchOutput, vcpu: &str) -> Option<i128> {
    out.json_lines().iter().filter_map(|l| Json::parse(l).ok()).find_map(|j| {
        if j.get("vcpu")?.str()? != vcpu {
            return None;
        }
        j.get("hypervisor")?.get("time")?.items().iter().map(Json::int).sum::<Option<i128>>()
    })
}

/// Runs `gdb-multiarch -batch` attached to 127.0.0.1:`port` (after the
/// usual setup, see [`setup_commands`]), then `commands` one by one; killed
/// after `timeout`. gdb detaches at the end of the batch (the system runs on).
pub fn run_batch(
    board: &dyn BoardSpec,
    port: u16,
    symbols: &[SymbolFile],
    commands: &[&str],
    timeout: Duration,
) -> Result<BatchOutput, String> {
    let mut ex = setup_commands(board, port, symbols);
    ex.extend(commands.iter().map(|c| c.to_string()));
    run_gdb_batch(&ex, timeout)
}

/// Runs `gdb-multiarch -batch` attached to domain `domain`'s own session of
/// a run whose gdb port is `base` (127.0.0.1:`base + domain`, set up by
/// [`session_setup_commands`]: the architecture from the stub), then
/// `commands`; killed after `timeout`. `symbols`: e.g.
/// [`domain_symbols`]`(board, domain)`.
pub fn run_batch_domain(
    board: &dyn BoardSpec,
    base: u16,
    domain: u16,
    symbols: &[SymbolFile],
    commands: &[&str],
    timeout: Duration,
) -> Result<BatchOutput, String> {
    let mut ex = session_setup_commands(board, base, Session::Domain(domain), symbols)?;
    ex.extend(commands.iter().map(|c| c.to_string()));
    run_gdb_batch(&ex, timeout)
}

/// `gdb-multiarch -nx -batch` with `ex` as `-ex` commands.
fn batch_command(ex: &[String]) -> Command {
    let mut c = Command::new("gdb-multiarch");
    c.args(["-nx", "-batch"]).args(to_args(ex));
    c
}

/// `gdb-multiarch -nx -batch` with `ex` as `-ex` commands, killed after `timeout`.
fn run_gdb_batch(ex: &[String], timeout: Duration) -> Result<BatchOutput, String> {
    let started = Instant::now();
    let gdb = batch_command(ex);
    let out = Command::new("timeout")
        .arg(format!("{}", timeout.as_secs().max(1)))
        .arg(gdb.get_program())
        .args(gdb.get_args())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run gdb-multiarch ({e}); is it installed?"))?;
    Ok(BatchOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        elapsed: started.elapsed(),
    })
}

/// Runs `gdb-multiarch -batch` attached to 127.0.0.1:`port` with no
/// Lantern setup (for QEMU's own gdb stub), then `commands`.
pub fn run_plain_batch(port: u16, commands: &[&str], timeout: Duration) -> Result<BatchOutput, String> {
    let mut ex = vec!["set pagination off".to_string(), format!("target remote 127.0.0.1:{port}")];
    ex.extend(commands.iter().map(|c| c.to_string()));
    run_gdb_batch(&ex, timeout)
}

/// Sends a hostile byte stream to the stub on 127.0.0.1:`port` the way a
/// broken or malicious client would — bad checksums, line noise, an
/// oversized packet, a malformed command, a packet cut off by a disconnect —
/// then hangs up. Afterwards the hypervisor must still run and a real gdb
/// must still attach (the end-to-end robustness test).
pub fn send_hostile_input(port: u16) -> Result<(), String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    s.set_nodelay(true).ok();
    let mut send = |b: &[u8]| s.write_all(b).map_err(|e| format!("send: {e}"));
    send(b"$qSupported#00")?; // bad checksum
    send(b"\x7f\x80garbage\xff+-+")?; // noise, stray acks
    let mut big = b"$".to_vec();
    big.extend(std::iter::repeat_n(b'A', 64 * 1024));
    big.extend(b"#00");
    send(&big)?; // oversized
    send(b"$mzz,qq#")?; // malformed command: checksum appended below
    let sum = b"mzz,qq".iter().fold(0u8, |a, b| a.wrapping_add(*b));
    send(format!("{sum:02x}").as_bytes())?;
    send(b"$m1000,4")?; // cut off by the disconnect
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// The default symbols on `board`: its first demo guest's ELF, when it was
/// built.
pub fn default_symbols(board: &dyn BoardSpec) -> Vec<SymbolFile> {
    domain_symbols(board, 1)
}

/// The default symbols of domain `domain`'s session on `board`: the ELF of
/// the demo guest that domain runs (x86: d1 the 64-bit test guest, d2 the
/// 32-bit one), when it was built.
pub fn domain_symbols(board: &dyn BoardSpec, domain: u16) -> Vec<SymbolFile> {
    board
        .demo_guests()
        .get(usize::from(domain).wrapping_sub(1))
        .map(|g| g.elf())
        .filter(|elf| elf.exists())
        .map(|path| SymbolFile { path, offset: None })
        .into_iter()
        .collect()
}

/// The help text of `cargo xtask gdb` (the boards and their ports from the
/// registry).
fn usage() -> String {
    let ports: Vec<String> =
        boards::all().iter().map(|b| format!("{} for {}", b.default_gdb_port(), b.name())).collect();
    format!(
        "\
usage: cargo xtask gdb [--arch {}] [--gdb-port P] [--domain N] [--symbols ELF[@OFFSET]]...
                       [--no-symbols] [--batch SCRIPT] [-ex CMD]... [--dry-run]
  Starts gdb-multiarch attached to the gdb stub of a running `cargo xtask run`
  (default port P: {}), with tools/gdb/lantern.py
  loaded and the test guest's symbols (if built). --batch runs SCRIPT and exits.
options:
  --gdb-port P            the run's gdb port (its whole-system session)
  --domain N              domain N's own session instead, on port P+N (virtio-serial line);
                          symbols: the demo guest domain N runs; the architecture comes
                          from the stub (i386 for a 32-bit x86 domain)
  --symbols ELF[@OFFSET]  load these symbols instead (repeatable; OFFSET relocates them)
  --no-symbols            load no symbols
  --dry-run               print the gdb command line instead of running it",
        boards::names("|", "|"),
        ports.join(", "),
    )
}

/// The options of `cargo xtask gdb`.
#[derive(Clone, Debug)]
pub struct GdbArgs {
    /// `--arch NAME`.
    pub board: &'static dyn BoardSpec,
    /// `--gdb-port P`: the run's gdb port (default: the board's).
    pub port: Option<u16>,
    /// `--domain N`: that domain's own session.
    pub session: Session,
    /// `--symbols` (repeatable).
    pub symbols: Vec<SymbolFile>,
    /// `--no-symbols`.
    pub no_symbols: bool,
    /// `--batch SCRIPT`.
    pub batch: Option<PathBuf>,
    /// `-ex CMD` (repeatable), after the setup.
    pub extra: Vec<String>,
    /// `--dry-run`: print the gdb command line.
    pub dry_run: bool,
}

impl GdbArgs {
    /// The base port: `--gdb-port` or the board's default.
    pub fn base_port(&self) -> u16 {
        self.port.unwrap_or(self.board.default_gdb_port())
    }

    /// The symbols to load: `--symbols`, else the session's demo guest's
    /// (none with `--no-symbols`).
    pub fn symbols(&self) -> Vec<SymbolFile> {
        match (self.no_symbols, self.symbols.is_empty(), self.session) {
            (true, _, _) => Vec::new(),
            (false, false, _) => self.symbols.clone(),
            (false, true, Session::System) => default_symbols(self.board),
            (false, true, Session::Domain(d)) => domain_symbols(self.board, d),
        }
    }

    /// The setup commands, then `-ex` ones.
    pub fn commands(&self) -> Result<Vec<String>, String> {
        let mut ex = session_setup_commands(self.board, self.base_port(), self.session, &self.symbols())?;
        ex.extend(self.extra.iter().cloned());
        Ok(ex)
    }
}

/// Parses the options of `cargo xtask gdb`; `Ok(None)` means `--help`.
pub fn parse_gdb_args(args: &[String]) -> Result<Option<GdbArgs>, String> {
    let mut g = GdbArgs {
        board: boards::default_board(),
        port: None,
        session: Session::System,
        symbols: Vec::new(),
        no_symbols: false,
        batch: None,
        extra: Vec::new(),
        dry_run: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{}", usage()));
        match a.as_str() {
            "--arch" => g.board = boards::by_name(&value("--arch")?)?,
            "--gdb-port" => {
                g.port = Some(value("--gdb-port")?.parse::<u16>().map_err(|_| "--gdb-port takes a port".to_string())?)
            }
            "--domain" => {
                let v = value("--domain")?;
                let d = v.strip_prefix('d').unwrap_or(&v);
                match d.parse::<u16>() {
                    Ok(d) if d >= 1 => g.session = Session::Domain(d),
                    _ => return Err(format!("--domain takes a domain id (1, 2, ...), not `{v}`")),
                }
            }
            "--symbols" => g.symbols.push(SymbolFile::parse(&value("--symbols")?)?),
            "--no-symbols" => g.no_symbols = true,
            "--batch" => g.batch = Some(PathBuf::from(value("--batch")?)),
            "-ex" => g.extra.push(value("-ex")?),
            "--dry-run" => g.dry_run = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`\n{}", usage())),
        }
    }
    // The port must exist (P+N within range) before anything starts.
    g.session.port(g.base_port())?;
    Ok(Some(g))
}

/// `cargo xtask gdb ...`.
pub fn cmd_gdb(args: &[String]) -> CmdResult {
    let Some(g) = parse_gdb_args(args)? else {
        println!("{}", usage());
        return Ok(());
    };
    let port = g.session.port(g.base_port())?;
    let what = match g.session {
        Session::System => format!("the whole system ({})", g.board.gdb_arch()),
        Session::Domain(d) => format!("d{d}'s own session (architecture from the stub)"),
    };
    if g.dry_run {
        let mut c = match &g.batch {
            Some(script) => batch_command(&batch_commands(&g, script)?),
            None => interactive_gdb(&g.commands()?),
        };
        c.stdin(Stdio::null());
        eprintln!("xtask: gdb-multiarch → 127.0.0.1:{port}, {what}");
        println!("{}", crate::qemu::command_line(&c));
        return Ok(());
    }
    crate::setup::ensure_qemu_and_gdb()?;
    if let Some(script) = &g.batch {
        let out = run_gdb_batch(&batch_commands(&g, script)?, Duration::from_secs(600))?;
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
        return if out.code == Some(0) { Ok(()) } else { Err(format!("gdb exited with {:?}", out.code)) };
    }
    let ex = g.commands()?;
    eprintln!("xtask: gdb-multiarch → 127.0.0.1:{port}, {what}");
    // The wrapper becomes gdb (`cargo run` execs xtask the same way): a
    // Ctrl-C at the terminal reaches gdb alone, which interrupts the target,
    // and no parent is left to die of it and orphan gdb.
    let e = interactive_gdb(&ex).exec();
    Err(format!("cannot run gdb-multiarch ({e})"))
}

/// The setup, `source SCRIPT`, then the `-ex` commands.
fn batch_commands(g: &GdbArgs, script: &std::path::Path) -> Result<Vec<String>, String> {
    let mut ex = session_setup_commands(g.board, g.base_port(), g.session, &g.symbols())?;
    ex.push(format!("source {}", script.display()));
    ex.extend(g.extra.iter().cloned());
    Ok(ex)
}

/// The interactive `gdb-multiarch` of `cargo xtask gdb`, running `ex` first.
pub fn interactive_gdb(ex: &[String]) -> Command {
    let mut c = Command::new("gdb-multiarch");
    c.arg("-q").args(to_args(ex));
    c
}

/// A parsed JSON value (just enough for the stub's `--json` answers, which
/// hold only objects, arrays, strings, integers, booleans and null).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer (the stub prints no fractions).
    Int(i128),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, keys in order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON document.
    pub fn parse(text: &str) -> Result<Json, String> {
        let b = text.trim().as_bytes();
        let (v, rest) = parse_value(b)?;
        if rest.iter().all(u8::is_ascii_whitespace) {
            Ok(v)
        } else {
            Err("trailing characters after JSON".into())
        }
    }

    /// Member `k` of an object.
    pub fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer value, if any.
    pub fn int(&self) -> Option<i128> {
        match self {
            Json::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string value, if any.
    pub fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of an array (empty for anything else).
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

fn parse_value(b: &[u8]) -> Result<(Json, &[u8]), String> {
    let b = skip_ws(b);
    match b.first() {
        Some(b'{') => {
            let mut m = Vec::new();
            let mut r = skip_ws(&b[1..]);
            if let Some(rest) = r.strip_prefix(b"}") {
                return Ok((Json::Obj(m), rest));
            }
            loop {
                let (k, rest) = parse_value(r)?;
                let Json::Str(k) = k else { return Err("object key is not a string".into()) };
                let rest = skip_ws(rest).strip_prefix(b":").ok_or("missing ':'")?;
                let (v, rest) = parse_value(rest)?;
                m.push((k, v));
                let rest = skip_ws(rest);
                match rest.first() {
                    Some(b',') => r = &rest[1..],
                    Some(b'}') => return Ok((Json::Obj(m), &rest[1..])),
                    _ => return Err("expected ',' or '}'".into()),
                }
            }
        }
        Some(b'[') => {
            let mut a = Vec::new();
            let mut r = skip_ws(&b[1..]);
            if let Some(rest) = r.strip_prefix(b"]") {
                return Ok((Json::Arr(a), rest));
            }
            loop {
                let (v, rest) = parse_value(r)?;
                a.push(v);
                let rest = skip_ws(rest);
                match rest.first() {
                    Some(b',') => r = &rest[1..],
                    Some(b']') => return Ok((Json::Arr(a), &rest[1..])),
                    _ => return Err("expected ',' or ']'".into()),
                }
            }
        }
        Some(b'"') => {
            let mut s = String::new();
            let mut i = 1;
            while i < b.len() {
                match b[i] {
                    b'"' => return Ok((Json::Str(s), &b[i + 1..])),
                    b'\\' => {
                        let c = *b.get(i + 1).ok_or("bad escape")?;
                        match c {
                            b'n' => s.push('\n'),
                            b't' => s.push('\t'),
                            b'r' => s.push('\r'),
                            b'u' => {
                                let hex = std::str::from_utf8(b.get(i + 2..i + 6).ok_or("bad \\u")?)
                                    .map_err(|_| "bad \\u")?;
                                let cp = u32::from_str_radix(hex, 16).map_err(|_| "bad \\u")?;
                                s.push(char::from_u32(cp).unwrap_or('?'));
                                i += 4;
                            }
                            other => s.push(other as char),
                        }
                        i += 2;
                    }
                    _ => {
                        let len = utf8_len(b[i]);
                        s.push_str(std::str::from_utf8(&b[i..i + len]).map_err(|_| "bad UTF-8")?);
                        i += len;
                    }
                }
            }
            Err("unterminated string".into())
        }
        Some(b't') if b.starts_with(b"true") => Ok((Json::Bool(true), &b[4..])),
        Some(b'f') if b.starts_with(b"false") => Ok((Json::Bool(false), &b[5..])),
        Some(b'n') if b.starts_with(b"null") => Ok((Json::Null, &b[4..])),
        Some(c) if *c == b'-' || c.is_ascii_digit() => {
            let n = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let v = std::str::from_utf8(&b[..n]).map_err(|_| "bad number")?.parse().map_err(|_| "bad number")?;
            Ok((Json::Int(v), &b[n..]))
        }
        _ => Err("unexpected character in JSON".into()),
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// One comparison between what a guest printed and what the stub says.
#[derive(Clone, Debug)]
pub struct GuestCheck {
    /// What was compared.
    pub name: String,
    /// Whether they agree.
    pub ok: bool,
    /// Both values, for the report.
    pub detail: String,
}

/// The monitor commands [`check_against_guest`] needs, to append to a batch.
pub fn guest_check_commands(dom: u16) -> Vec<String> {
    vec![
        "monitor domains --json".to_string(),
        format!("monitor vcpu-info d{dom} --json"),
        format!("monitor areas d{dom} --json"),
    ]
}

/// `key=value` pairs of the guest's `(dN) REPORT ...` lines.
fn reports(console: &str, dom: u16) -> Vec<Vec<(String, String)>> {
    let prefix = format!("(d{dom}) REPORT ");
    console
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix(&prefix))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn num(s: &str) -> Option<i128> {
    match s.strip_prefix("0x") {
        Some(h) => i128::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Compares what domain `dom`'s test guest printed about itself (its
/// `REPORT` lines: layout, shared_info gfn, per-vCPU vcpu_info placement,
/// gfn, offset, `evtchn_pending_sel`, `evtchn_upcall_pending`/`_mask`,
/// runstate and time area addresses) with the stub's `--json` answers in
/// `out` (a batch that ran [`guest_check_commands`]). Run it after the guest
/// printed its report and went quiet (e.g. `linger`), so neither side moved.
pub fn check_against_guest(console: &str, dom: u16, out: &BatchOutput) -> Vec<GuestCheck> {
    let mut checks = Vec::new();
    let mut check = |name: String, guest: Option<String>, stub: Option<String>| {
        let ok = guest.is_some() && guest == stub;
        checks.push(GuestCheck { name, ok, detail: format!("guest {guest:?}, stub {stub:?}") });
    };
    let docs: Vec<Json> = out.json_lines().iter().filter_map(|l| Json::parse(l).ok()).collect();
    let find = |key: &str| docs.iter().find(|d| d.get(key).is_some());
    let domain = find("domains")
        .and_then(|d| d.get("domains")?.items().iter().find(|x| x.get("id").and_then(Json::int) == Some(dom as i128)));
    // The answer about this domain (a batch may hold several domains').
    let list_for = |key: &str| -> Vec<Json> {
        docs.iter()
            .filter_map(|d| d.get(key))
            .find(|l| l.items().first().and_then(|x| x.get("d")?.int()) == Some(dom as i128))
            .map(|l| l.items().to_vec())
            .unwrap_or_default()
    };
    let vcpus = list_for("vcpus");
    let areas = list_for("areas");
    let hex = |v: Option<i128>| v.map(|v| format!("{v:#x}"));
    for r in reports(console, dom) {
        let get = |k: &str| r.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(layout) = get("layout") {
            // The guest and the stub both use Xen's layout names.
            let stub = domain.and_then(|d| d.get("layout")?.str()).map(str::to_string);
            check(format!("d{dom} layout"), Some(layout.to_string()), stub);
        }
        if let Some(g) = get("shared_info_gfn") {
            let stub = domain.and_then(|d| d.get("shared_info_gfn")?.int());
            check(format!("d{dom} shared_info gfn"), hex(num(g)), hex(stub));
        }
        let Some(v) = get("vcpu").and_then(num) else { continue };
        let vinfo = vcpus.iter().find(|x| x.get("v").and_then(Json::int) == Some(v));
        let field = |f: &str| vinfo.and_then(|x| x.get("fields")?.get(f)?.int());
        let name = format!("d{dom}v{v}");
        if let Some(kind) = get("vcpu_info") {
            let stub = vinfo.and_then(|x| x.get("placement")?.str()).map(str::to_string);
            check(format!("{name} vcpu_info placement"), Some(kind.to_string()), stub);
        }
        if let Some(g) = get("vcpu_info_gfn") {
            check(format!("{name} vcpu_info gfn"), hex(num(g)), hex(vinfo.and_then(|x| x.get("gfn")?.int())));
        }
        if let Some(o) = get("vcpu_info_offset") {
            check(format!("{name} vcpu_info offset"), hex(num(o)), hex(vinfo.and_then(|x| x.get("offset")?.int())));
        }
        if let Some(p) = get("pending_sel") {
            check(format!("{name} evtchn_pending_sel"), hex(num(p)), hex(field("evtchn_pending_sel")));
        }
        if let Some(p) = get("upcall_pending") {
            check(format!("{name} evtchn_upcall_pending"), hex(num(p)), hex(field("evtchn_upcall_pending")));
        }
        if let (Some(m), Some(stub)) = (get("upcall_mask"), field("evtchn_upcall_mask")) {
            // Only where the layout has a mask (not arm64).
            check(format!("{name} evtchn_upcall_mask"), hex(num(m)), hex(Some(stub)));
        }
        for (key, kind) in [("runstate_gpa", "runstate"), ("time_gpa", "time")] {
            if let Some(gpa) = get(key) {
                let stub = areas
                    .iter()
                    .find(|a| {
                        a.get("v").and_then(Json::int) == Some(v) && a.get("kind").and_then(Json::str) == Some(kind)
                    })
                    .and_then(|a| Some((a.get("gfn")?.int()? << 12) | a.get("offset")?.int()?));
                check(format!("{name} {kind} area address"), hex(num(gpa)), hex(stub));
            }
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let s = SymbolFile::parse("/tmp/g.elf@0x40000000").unwrap();
        assert_eq!(s.offset, Some(0x4000_0000));
        assert_eq!(SymbolFile::parse("g.elf").unwrap().offset, None);
        let ex = setup_commands(boards::by_name("aarch64").unwrap(), 1235, &[s]);
        assert!(ex.contains(&"set architecture aarch64".to_string()));
        assert!(ex.contains(&"set osabi none".to_string()));
        assert!(ex.contains(&"symbol-file -o 0x40000000 /tmp/g.elf".to_string()));
        assert_eq!(ex.last().unwrap(), "target remote 127.0.0.1:1235");
    }

    #[test]
    fn domain_sessions_attach_to_p_plus_n_with_the_stubs_architecture() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let g = parse_gdb_args(&args(&["--gdb-port", "4000"])).unwrap().unwrap();
        assert_eq!((g.session, g.base_port()), (Session::System, 4000));
        let ex = g.commands().unwrap();
        assert!(ex.contains(&"set architecture i386:x86-64".to_string()), "{ex:?}");
        assert_eq!(ex.last().unwrap(), "target remote 127.0.0.1:4000");
        let g =
            parse_gdb_args(&args(&["--domain", "2", "--gdb-port", "4000", "--symbols", "/g32.elf"])).unwrap().unwrap();
        assert_eq!(g.session, Session::Domain(2));
        let ex = g.commands().unwrap();
        assert!(!ex.iter().any(|e| e.starts_with("set architecture")), "the stub's description decides: {ex:?}");
        assert!(ex.contains(&"symbol-file /g32.elf".to_string()));
        assert_eq!(ex.last().unwrap(), "target remote 127.0.0.1:4002");
        // The board's default port, `dN` spelling, arm64's osabi kept.
        let g = parse_gdb_args(&args(&["--arch", "aarch64", "--domain", "d1", "--no-symbols"])).unwrap().unwrap();
        let ex = g.commands().unwrap();
        assert!(ex.contains(&"set osabi none".to_string()) && !ex.iter().any(|e| e.starts_with("add-symbol")));
        assert_eq!(ex.last().unwrap(), "target remote 127.0.0.1:1236");
        assert!(parse_gdb_args(&args(&["--domain", "0"])).is_err());
        assert!(parse_gdb_args(&args(&["--domain", "x"])).is_err());
        assert!(parse_gdb_args(&args(&["--domain", "7"])).is_err(), "no port beyond the last domain port");
        assert!(parse_gdb_args(&args(&["--domain", "1", "--gdb-port", "65535"])).is_err());
        assert!(parse_gdb_args(&args(&["--help"])).unwrap().is_none());
        assert!(parse_gdb_args(&args(&["--dry-run"])).unwrap().unwrap().dry_run);
        let ex = session_setup_commands(boards::by_name("x86_64").unwrap(), 1234, Session::Domain(1), &[]).unwrap();
        assert_eq!(ex.last().unwrap(), "target remote 127.0.0.1:1235");
    }

    #[test]
    fn json_and_guest_comparison() {
        let j = Json::parse(r#"{"a":[1,-2,{"b":"x\"y"}],"c":null,"d":true,"e":18446744073709551615}"#).unwrap();
        assert_eq!(j.get("a").unwrap().items()[1], Json::Int(-2));
        assert_eq!(j.get("a").unwrap().items()[2].get("b").unwrap().str(), Some("x\"y"));
        assert_eq!(j.get("e").unwrap().int(), Some(u64::MAX as i128));
        let console = "(d1) REPORT guest=x86_64 layout=x86_32 vcpus=2\n(d1) REPORT shared_info_gfn=0x114\n\
            (d1) REPORT vcpu=0 up=1 vcpu_info=guest vcpu_info_gfn=0x115 vcpu_info_offset=0x40 pending_sel=0xffffffff upcall_pending=0 upcall_mask=0 upcalls=1\n\
            (d1) REPORT vcpu=0 runstate_gpa=0x117040 runstate_state=1\n";
        let out = BatchOutput {
            stdout: String::new(),
            stderr: [
                r#"{"domains":[{"id":1,"layout":"x86_32","shared_info_gfn":276}]}"#,
                r#"{"vcpus":[{"d":1,"v":0,"placement":"guest","gfn":277,"offset":64,"fields":{"evtchn_pending_sel":4294967295,"evtchn_upcall_pending":0,"evtchn_upcall_mask":1}}]}"#,
                r#"{"areas":[{"d":1,"v":0,"kind":"runstate","gfn":279,"offset":64}]}"#,
            ]
            .join("\n"),
            code: Some(0),
            elapsed: Duration::ZERO,
        };
        let checks = check_against_guest(console, 1, &out);
        let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        assert_eq!(checks.len(), 9);
        assert_eq!(failed, ["d1v0 evtchn_upcall_mask"]);
    }
}
