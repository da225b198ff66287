//! `--domain FILE`: the subset of Xen's `xl.cfg` syntax Lantern reads — one
//! domain per file: `name`, `type`, `kernel`, `ramdisk`, `extra` (or
//! `cmdline`, `root`), `vcpus`, `memory`, `on_poweroff`, `on_reboot`,
//! `on_crash` — with xl's defaults (1 vCPU, 32 MiB, destroy / restart /
//! destroy). Keys outside the subset are reported and ignored, as a domain
//! with a disk or a network card still boots without them here.
//!
//! The file is `KEY = VALUE` lines; a value is a number, a string in single
//! or double quotes, or a `[ ... ]` list (which may span lines); `#` starts
//! a comment. Relative paths are relative to the file's directory.

use std::path::{Path, PathBuf};

use lantern_common::boot_config::ShutdownAction;

/// One domain's configuration, read from its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlDomain {
    /// `name` (default: the file's stem).
    pub name: String,
    /// `kernel`: the guest image.
    pub kernel: PathBuf,
    /// `ramdisk`: its initial ramdisk.
    pub ramdisk: Option<PathBuf>,
    /// The guest's command line: `cmdline`, else `root=ROOT EXTRA`.
    pub cmdline: String,
    /// `vcpus`.
    pub vcpus: u32,
    /// `memory`, in bytes (the file says MiB).
    pub mem_bytes: u64,
    /// `on_poweroff`.
    pub on_poweroff: ShutdownAction,
    /// `on_reboot`.
    pub on_reboot: ShutdownAction,
    /// `on_crash`.
    pub on_crash: ShutdownAction,
    /// Keys outside the subset, in file order (ignored; the caller says so).
    pub ignored: Vec<String>,
}

/// A value on the right of `=`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Num(u64),
    List(Vec<Value>),
}

/// Splits the text into `(line number, key, value)` settings.
fn settings(text: &str) -> Result<Vec<(usize, String, Value)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    loop {
        // Skip blanks, newlines, `;` separators and comments.
        while let Some(&c) = chars.peek() {
            match c {
                '\n' => {
                    line += 1;
                    chars.next();
                }
                '#' => {
                    while chars.peek().is_some_and(|&c| c != '\n') {
                        chars.next();
                    }
                }
                c if c.is_whitespace() || c == ';' => {
                    chars.next();
                }
                _ => break,
            }
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                key.push(c);
                chars.next();
            } else {
                break;
            }
        }
        skip_spaces(&mut chars);
        if key.is_empty() || chars.next() != Some('=') {
            return Err(format!("line {line}: expected `KEY = VALUE`"));
        }
        let at = line;
        let value = parse_value(&mut chars, &mut line)?;
        skip_spaces(&mut chars);
        match chars.peek() {
            None | Some('\n' | ';' | '#') => {}
            Some(c) => return Err(format!("line {line}: unexpected `{c}` after the value of {key}")),
        }
        out.push((at, key, value));
    }
}

fn skip_spaces(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|&c| c == ' ' || c == '\t' || c == '\r') {
        chars.next();
    }
}

fn parse_value(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) -> Result<Value, String> {
    skip_spaces(chars);
    match chars.peek().copied() {
        Some(q @ ('"' | '\'')) => {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some(c) if c == q => return Ok(Value::Str(s)),
                    Some('\\') if q == '"' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some(c) => s.push(c),
                        None => break,
                    },
                    Some('\n') | None => break,
                    Some(c) => s.push(c),
                }
            }
            Err(format!("line {line}: unterminated string"))
        }
        Some('[') => {
            chars.next();
            let mut items = Vec::new();
            loop {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        *line += 1;
                    }
                    if c.is_whitespace() || c == ',' {
                        chars.next();
                    } else {
                        break;
                    }
                }
                match chars.peek() {
                    Some(']') => {
                        chars.next();
                        return Ok(Value::List(items));
                    }
                    None => return Err(format!("line {line}: unterminated list")),
                    _ => items.push(parse_value(chars, line)?),
                }
            }
        }
        Some(c) if c.is_ascii_digit() => {
            let mut n = String::new();
            while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                n.push(chars.next().unwrap_or_default());
            }
            let v = match n.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => n.parse(),
            };
            v.map(Value::Num).map_err(|_| format!("line {line}: bad number `{n}`"))
        }
        _ => Err(format!("line {line}: expected a number, a quoted string or a [list]")),
    }
}

/// Parses one domain's configuration; `dir` resolves relative paths and
/// `stem` is the default name.
pub fn parse(text: &str, dir: &Path, stem: &str) -> Result<XlDomain, String> {
    let mut d = XlDomain {
        name: stem.to_string(),
        kernel: PathBuf::new(),
        ramdisk: None,
        cmdline: String::new(),
        vcpus: 1,
        mem_bytes: 32 << 20,
        on_poweroff: ShutdownAction::Destroy,
        on_reboot: ShutdownAction::Restart,
        on_crash: ShutdownAction::Destroy,
        ignored: Vec::new(),
    };
    let (mut extra, mut root, mut cmdline) = (None, None, None);
    for (line, key, value) in settings(text)? {
        let string = |v: &Value| match v {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(format!("line {line}: {key} takes a quoted string")),
        };
        let number = |v: &Value| match v {
            Value::Num(n) => Ok(*n),
            // xl also takes a number in quotes.
            Value::Str(s) => s.trim().parse().map_err(|_| format!("line {line}: {key} takes a number, not `{s}`")),
            Value::List(_) => Err(format!("line {line}: {key} takes a number")),
        };
        let path = |v: &Value| string(v).map(|s| dir.join(s));
        match key.as_str() {
            "name" => d.name = string(&value)?,
            "type" | "builder" => match string(&value)?.as_str() {
                "pvh" => {}
                other => {
                    return Err(format!(
                        "line {line}: {key} = \"{other}\": Lantern runs PVH guests only (type = \"pvh\")"
                    ))
                }
            },
            "kernel" => d.kernel = path(&value)?,
            "ramdisk" => d.ramdisk = Some(path(&value)?),
            "extra" => extra = Some(string(&value)?),
            "root" => root = Some(string(&value)?),
            "cmdline" => cmdline = Some(string(&value)?),
            "vcpus" | "maxvcpus" => {
                let n = number(&value)?;
                d.vcpus = u32::try_from(n)
                    .ok()
                    .filter(|n| (1..=lantern_common::boot_config::MAX_VCPUS).contains(n))
                    .ok_or_else(|| {
                        format!("line {line}: {key} must be 1..={}, not {n}", lantern_common::boot_config::MAX_VCPUS)
                    })?;
            }
            "memory" | "maxmem" => {
                let mib = number(&value)?;
                if mib == 0 {
                    return Err(format!("line {line}: {key} must be at least 1 (MiB)"));
                }
                d.mem_bytes =
                    mib.checked_mul(1 << 20).ok_or_else(|| format!("line {line}: {key} = {mib} MiB overflows"))?;
            }
            "on_poweroff" | "on_reboot" | "on_crash" => {
                let v = string(&value)?;
                let a = ShutdownAction::parse(&v).ok_or_else(|| {
                    format!("line {line}: {key} = \"{v}\": Lantern does destroy, restart or preserve")
                })?;
                match key.as_str() {
                    "on_poweroff" => d.on_poweroff = a,
                    "on_reboot" => d.on_reboot = a,
                    _ => d.on_crash = a,
                }
            }
            _ => d.ignored.push(key),
        }
    }
    if d.kernel.as_os_str().is_empty() {
        return Err("no kernel = \"...\" line: which image does the domain boot?".into());
    }
    if d.name.is_empty() || d.name.contains([',', '"']) || d.name.contains(char::is_whitespace) {
        return Err(format!("name = \"{}\": a name needs characters and no spaces, commas or quotes", d.name));
    }
    d.cmdline = match cmdline {
        Some(c) => c,
        None => [root.map(|r| format!("root={r}")), extra].into_iter().flatten().collect::<Vec<_>>().join(" "),
    };
    Ok(d)
}

/// Reads and parses `path`; errors name the file.
pub fn read(path: &Path) -> Result<XlDomain, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--domain {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("domain");
    parse(&text, dir, stem).map_err(|e| format!("--domain {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subset_with_xls_defaults() {
        let text = r#"
# a Linux guest
name = "web"
type = "pvh"
kernel = "vmlinuz"    # relative to the file
ramdisk = '/boot/initrd.img'
extra = "console=hvc0 quiet"
vcpus = 2
memory = 256
on_reboot = "destroy"; on_crash = "preserve"
disk = [ 'phy:/dev/vg/web,xvda,w',
         'file:/tmp/b.img,xvdb,r' ]
vif = [ "bridge=xenbr0" ]
"#;
        let d = parse(text, Path::new("/cfg"), "web-cfg").unwrap();
        assert_eq!(d.name, "web");
        assert_eq!(d.kernel, PathBuf::from("/cfg/vmlinuz"));
        assert_eq!(d.ramdisk, Some(PathBuf::from("/boot/initrd.img")));
        assert_eq!(d.cmdline, "console=hvc0 quiet");
        assert_eq!((d.vcpus, d.mem_bytes), (2, 256 << 20));
        assert_eq!(
            (d.on_poweroff, d.on_reboot, d.on_crash),
            (ShutdownAction::Destroy, ShutdownAction::Destroy, ShutdownAction::Preserve)
        );
        assert_eq!(d.ignored, ["disk", "vif"]);

        let d = parse("kernel = \"k\"\nroot = \"/dev/xvda1\"\nextra = \"ro\"\n", Path::new("."), "plain").unwrap();
        assert_eq!((d.name.as_str(), d.vcpus, d.mem_bytes), ("plain", 1, 32 << 20));
        assert_eq!(
            (d.on_poweroff, d.on_reboot, d.on_crash),
            (ShutdownAction::Destroy, ShutdownAction::Restart, ShutdownAction::Destroy)
        );
        assert_eq!(d.cmdline, "root=/dev/xvda1 ro");
        let d = parse("kernel = \"k\"\ncmdline = \"a b\"\nextra = \"ignored\"\nvcpus = \"3\"", Path::new("."), "c")
            .unwrap();
        assert_eq!((d.cmdline.as_str(), d.vcpus), ("a b", 3));
    }

    #[test]
    fn refuses_what_it_cannot_do_with_the_line() {
        let err = |t: &str| parse(t, Path::new("."), "x").unwrap_err();
        assert!(err("name = \"x\"").contains("no kernel"));
        assert!(err("kernel = \"k\"\ntype = \"hvm\"").starts_with("line 2: type = \"hvm\""));
        assert!(err("kernel = \"k\"\nbuilder = \"hvm\"").contains("PVH guests only"));
        assert!(err("kernel = \"k\"\non_crash = \"coredump-destroy\"").contains("destroy, restart or preserve"));
        assert!(err("kernel = \"k\"\nvcpus = 0").contains("vcpus must be 1..="));
        assert!(err("kernel = \"k\"\nmemory = 0").contains("at least 1"));
        assert!(err("kernel = \"k\nvcpus = 1").contains("unterminated string"));
        assert!(err("kernel = \"k\"\ndisk = [ 'a',").contains("unterminated list"));
        assert!(err("kernel \"k\"").contains("expected `KEY = VALUE`"));
        assert!(err("kernel = k").contains("expected a number"));
        assert!(err("kernel = \"k\" \"j\"").contains("unexpected"));
        assert!(err("kernel = \"k\"\nname = \"a b\"").contains("no spaces"));
        assert!(err("kernel = \"k\"\nmemory = 12x").contains("bad number"));
    }
}
