//! `cargo xtask gdb`: starts `gdb-multiarch` set up for Lantern — the
//! architecture, `tools/gdb/lantern.py`, the test guests' symbols — and
//! attaches it to the gdb stub of a running `cargo xtask run`. Also the
//! batch-mode runner the end-to-end tests and benchmarks use.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boards::{self, BoardSpec};
use crate::paths::root;
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
    /// Added to every section address (`add-symbol-file -o`).
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

/// The gdb commands (in order) that set up a session: architecture,
/// helpers, symbols, then `target remote`.
pub fn setup_commands(board: &dyn BoardSpec, port: u16, symbols: &[SymbolFile]) -> Vec<String> {
    let mut ex = vec![
        "set pagination off".to_string(),
        "set confirm off".to_string(),
        // Serial-line latency: allow slow replies (e.g. a long monitor answer).
        "set remotetimeout 20".to_string(),
        format!("set architecture {}", board.gdb_arch()),
        format!("source {}", lantern_py().display()),
    ];
    if let Some(abi) = board.gdb_osabi() {
        ex.insert(4, format!("set osabi {abi}"));
    }
    for s in symbols {
        match s.offset {
            Some(o) => ex.push(format!("add-symbol-file {} -o {o:#x}", s.path.display())),
            None => ex.push(format!("add-symbol-file {}", s.path.display())),
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

/// `gdb-multiarch -nx -batch` with `ex` as `-ex` commands, killed after `timeout`.
fn run_gdb_batch(ex: &[String], timeout: Duration) -> Result<BatchOutput, String> {
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg(format!("{}", timeout.as_secs().max(1)))
        .arg("gdb-multiarch")
        .args(["-nx", "-batch"])
        .args(to_args(ex))
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
    board
        .demo_guests()
        .first()
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
usage: cargo xtask gdb [--arch {}] [--gdb-port P] [--symbols ELF[@OFFSET]]...
                       [--no-symbols] [--batch SCRIPT] [-ex CMD]...
  Starts gdb-multiarch attached to the gdb stub of a running `cargo xtask run`
  (default port {}), with tools/gdb/lantern.py
  loaded and the test guest's symbols (if built). --batch runs SCRIPT and exits.",
        boards::names("|", "|"),
        ports.join(", "),
    )
}

/// `cargo xtask gdb ...`.
pub fn cmd_gdb(args: &[String]) -> CmdResult {
    let mut board = boards::default_board();
    let mut port = None;
    let mut symbols = Vec::new();
    let mut no_symbols = false;
    let mut batch = None;
    let mut extra = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{}", usage()));
        match a.as_str() {
            "--arch" => board = boards::by_name(&value("--arch")?)?,
            "--gdb-port" => {
                port = Some(value("--gdb-port")?.parse::<u16>().map_err(|_| "--gdb-port takes a port".to_string())?)
            }
            "--symbols" => symbols.push(SymbolFile::parse(&value("--symbols")?)?),
            "--no-symbols" => no_symbols = true,
            "--batch" => batch = Some(PathBuf::from(value("--batch")?)),
            "-ex" => extra.push(value("-ex")?),
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => return Err(format!("unknown option `{other}`\n{}", usage())),
        }
    }
    crate::setup::ensure_qemu_and_gdb()?;
    let port = port.unwrap_or(board.default_gdb_port());
    if symbols.is_empty() && !no_symbols {
        symbols = default_symbols(board);
    }
    if let Some(script) = batch {
        let mut cmds: Vec<String> = vec![format!("source {}", script.display())];
        cmds.extend(extra);
        let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let out = run_batch(board, port, &symbols, &refs, Duration::from_secs(600))?;
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
        return if out.code == Some(0) { Ok(()) } else { Err(format!("gdb exited with {:?}", out.code)) };
    }
    let mut ex = setup_commands(board, port, &symbols);
    ex.extend(extra);
    eprintln!("xtask: gdb-multiarch → 127.0.0.1:{port} ({})", board.gdb_arch());
    // The wrapper becomes gdb (`cargo run` execs xtask the same way): a
    // Ctrl-C at the terminal reaches gdb alone, which interrupts the target,
    // and no parent is left to die of it and orphan gdb.
    let e = interactive_gdb(&ex).exec();
    Err(format!("cannot run gdb-multiarch ({e})"))
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
        assert!(ex.contains(&"add-symbol-file /tmp/g.elf -o 0x40000000".to_string()));
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
