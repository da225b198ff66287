//! The boot configuration shared by every board: which domains to build
//! (guest image, vCPUs, memory, guest command line) and run-wide flags,
//! parsed from the hypervisor's command line (however the board received
//! it).
//!
//! Syntax: whitespace-separated words, double quotes group a word.
//!
//! ```text
//! exit gdb-wait domain=guest64,vcpus=40,mem=64M,cmdline="quiet x=1" domain=guest32
//! ```
//!
//! * `domain=IMAGE[,name=NAME][,vcpus=N][,mem=SIZE][,initrd=FILE]
//!   [,on_poweroff=A][,on_reboot=A][,on_crash=A][,cmdline=TEXT]` — one
//!   domain per word, in domain-id order (ids from 1); `IMAGE` and `FILE`
//!   name files in the boot module archive (`FILE` is the guest's initial
//!   ramdisk); `NAME` is what tools show (default `IMAGE`); `SIZE` takes
//!   K/M/G suffixes; `A` is what happens when the domain ends that way
//!   (`destroy`, `restart` or `preserve`, as in Xen's `xl.cfg`; default
//!   `preserve`: the domain stays for gdb); `cmdline` must come last (it may
//!   contain commas).
//! * `exit` — end the run once every domain has shut down.
//! * `gdb-wait` — stop before the first guest instruction until gdb attaches.
//! * `log=LEVEL` — the hypervisor's log level (`error`, `warn`, `info`,
//!   `debug`, `trace`); `debug` also shows every unhandled guest request
//!   (see `diag`).
//! * `lantern.` may prefix any word; unknown words are kept in
//!   [`BootConfig::unknown`] for the board to warn about.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Default vCPUs per domain.
pub const DEFAULT_VCPUS: u32 = 1;
/// Default guest memory (64 MiB).
pub const DEFAULT_MEM: u64 = 64 << 20;
/// Most vCPUs one domain may ask for.
pub const MAX_VCPUS: u32 = 128;

/// What happens to a domain when it ends a given way (`xl.cfg`'s
/// `on_poweroff`, `on_reboot`, `on_crash`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShutdownAction {
    /// Tear the domain down: its memory and everything it holds released.
    Destroy,
    /// Tear it down and build it again from its configuration.
    Restart,
    /// Leave it as it ended, for inspection.
    #[default]
    Preserve,
}

impl ShutdownAction {
    /// The `xl.cfg` spelling.
    pub fn name(self) -> &'static str {
        match self {
            ShutdownAction::Destroy => "destroy",
            ShutdownAction::Restart => "restart",
            ShutdownAction::Preserve => "preserve",
        }
    }

    /// Parses the `xl.cfg` spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [ShutdownAction::Destroy, ShutdownAction::Restart, ShutdownAction::Preserve].into_iter().find(|a| a.name() == s)
    }
}

/// One domain to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// Name of the guest image in the module archive.
    pub image: String,
    /// The domain's name (what tools show).
    pub name: String,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// Name of the guest's initial ramdisk in the module archive, if any.
    pub initrd: Option<String>,
    /// Command line handed to the guest.
    pub cmdline: String,
    /// When the guest powers off.
    pub on_poweroff: ShutdownAction,
    /// When the guest asks for a reboot.
    pub on_reboot: ShutdownAction,
    /// When the guest crashes (or is crashed by the hypervisor).
    pub on_crash: ShutdownAction,
}

impl DomainSpec {
    /// A domain running `image` with the defaults.
    pub fn new(image: &str) -> Self {
        DomainSpec {
            image: image.to_string(),
            name: image.to_string(),
            vcpus: DEFAULT_VCPUS,
            mem_bytes: DEFAULT_MEM,
            initrd: None,
            cmdline: String::new(),
            on_poweroff: ShutdownAction::Preserve,
            on_reboot: ShutdownAction::Preserve,
            on_crash: ShutdownAction::Preserve,
        }
    }

    /// What to do when the domain has ended with `SHUTDOWN_*` `reason`
    /// (`None` for a crash by the hypervisor): suspend and soft reset are
    /// not endings (the domain is kept as it is).
    pub fn action_for(&self, reason: Option<u32>) -> ShutdownAction {
        use xen_abi::nr::shutdown;
        match reason {
            Some(shutdown::POWEROFF) => self.on_poweroff,
            Some(shutdown::REBOOT) => self.on_reboot,
            // A watchdog expiry is handled as a crash (Xen's `on_watchdog`
            // is not in the subset this configuration reads).
            Some(shutdown::CRASH | shutdown::WATCHDOG) | None => self.on_crash,
            Some(_) => ShutdownAction::Preserve,
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootConfig {
    /// Domains in id order.
    pub domains: Vec<DomainSpec>,
    /// End the run when every domain has finished.
    pub exit_when_done: bool,
    /// Wait for gdb before running guests.
    pub wait_for_gdb: bool,
    /// `log=LEVEL`, if given.
    pub log_level: Option<log::LevelFilter>,
    /// Words that were not understood.
    pub unknown: Vec<String>,
}

/// A malformed configuration word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(core::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

/// Parses a size with an optional K/M/G suffix (bytes otherwise).
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mul) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul)
}

fn parse_domain(value: &str) -> Result<DomainSpec, ConfigError> {
    let (head, cmdline) = match value.find(",cmdline=") {
        Some(i) => (&value[..i], Some(&value[i + ",cmdline=".len()..])),
        None => (value, None),
    };
    let mut parts = head.split(',');
    let image = parts.next().unwrap_or("");
    if image.is_empty() {
        return Err(ConfigError("domain= needs an image name".to_string()));
    }
    let mut spec = DomainSpec::new(image);
    for p in parts {
        let (k, v) = p.split_once('=').ok_or_else(|| ConfigError(alloc::format!("bad domain option '{p}'")))?;
        match k {
            "vcpus" => {
                spec.vcpus = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_VCPUS).contains(n))
                    .ok_or_else(|| ConfigError(alloc::format!("vcpus must be 1..={MAX_VCPUS}: '{v}'")))?
            }
            "mem" => {
                spec.mem_bytes = parse_size(v)
                    .filter(|&m| m >= 1 << 20 && m % 4096 == 0)
                    .ok_or_else(|| ConfigError(alloc::format!("bad mem size '{v}'")))?
            }
            "initrd" if !v.is_empty() => spec.initrd = Some(v.to_string()),
            "name" if !v.is_empty() => spec.name = v.to_string(),
            "on_poweroff" | "on_reboot" | "on_crash" => {
                let a = ShutdownAction::parse(v)
                    .ok_or_else(|| ConfigError(alloc::format!("{k} must be destroy|restart|preserve: '{v}'")))?;
                match k {
                    "on_poweroff" => spec.on_poweroff = a,
                    "on_reboot" => spec.on_reboot = a,
                    _ => spec.on_crash = a,
                }
            }
            _ => return Err(ConfigError(alloc::format!("unknown domain option '{p}'"))),
        }
    }
    if let Some(c) = cmdline {
        spec.cmdline = c.to_string();
    }
    Ok(spec)
}

/// Parses a command line into a [`BootConfig`].
pub fn parse(cmdline: &str) -> Result<BootConfig, ConfigError> {
    let mut cfg = BootConfig::default();
    for word in split_words(cmdline) {
        let w = word.strip_prefix("lantern.").unwrap_or(&word);
        match w.split_once('=') {
            Some(("domain" | "dom", v)) => cfg.domains.push(parse_domain(v)?),
            None if w == "exit" => cfg.exit_when_done = true,
            None if w == "gdb-wait" => cfg.wait_for_gdb = true,
            Some(("log", v)) => {
                cfg.log_level =
                    Some(v.parse().map_err(|_| {
                        ConfigError(alloc::format!("log level must be error|warn|info|debug|trace: '{v}'"))
                    })?)
            }
            _ => cfg.unknown.push(word.clone()),
        }
    }
    Ok(cfg)
}

impl BootConfig {
    /// Renders the configuration back into command-line syntax (what xtask
    /// passes to QEMU); `parse(&cfg.to_cmdline()) == cfg` for known words.
    pub fn to_cmdline(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        if self.exit_when_done {
            words.push("exit".to_string());
        }
        if self.wait_for_gdb {
            words.push("gdb-wait".to_string());
        }
        if let Some(level) = self.log_level {
            words.push(alloc::format!("log={}", level.as_str().to_ascii_lowercase()));
        }
        for d in &self.domains {
            let mut w = alloc::format!("domain={},vcpus={}", d.image, d.vcpus);
            if d.mem_bytes % (1 << 20) == 0 {
                w += &alloc::format!(",mem={}M", d.mem_bytes >> 20);
            } else {
                w += &alloc::format!(",mem={}", d.mem_bytes);
            }
            if let Some(initrd) = &d.initrd {
                w += &alloc::format!(",initrd={initrd}");
            }
            if d.name != d.image {
                w += &alloc::format!(",name={}", d.name);
            }
            for (key, a) in [("on_poweroff", d.on_poweroff), ("on_reboot", d.on_reboot), ("on_crash", d.on_crash)] {
                if a != ShutdownAction::Preserve {
                    w += &alloc::format!(",{key}={}", a.name());
                }
            }
            if !d.cmdline.is_empty() {
                w += &alloc::format!(",cmdline={}", d.cmdline);
            }
            if w.contains(char::is_whitespace) {
                w = alloc::format!("\"{w}\"");
            }
            words.push(w);
        }
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example() {
        let c = parse(r#"exit lantern.gdb-wait domain=guest64,vcpus=40,mem=32M,cmdline="a, b" dom=g32 foo=1"#).unwrap();
        assert!(c.exit_when_done && c.wait_for_gdb);
        assert_eq!(c.domains.len(), 2);
        assert_eq!(
            c.domains[0],
            DomainSpec {
                image: "guest64".into(),
                vcpus: 40,
                mem_bytes: 32 << 20,
                cmdline: "a, b".into(),
                ..DomainSpec::new("guest64")
            }
        );
        assert_eq!(c.domains[1], DomainSpec::new("g32"));
        assert_eq!(c.unknown, ["foo=1"]);
    }

    #[test]
    fn round_trip() {
        let c = parse(
            r#"exit lantern.log=debug domain=x.elf,vcpus=2,mem=8M,initrd=ramdisk,name=web,on_reboot=restart,on_crash=destroy,cmdline="hello world" domain=y"#,
        )
        .unwrap();
        assert_eq!(c.domains[0].initrd.as_deref(), Some("ramdisk"));
        assert_eq!(c.domains[0].name, "web");
        assert_eq!(
            (c.domains[0].on_poweroff, c.domains[0].on_reboot, c.domains[0].on_crash),
            (ShutdownAction::Preserve, ShutdownAction::Restart, ShutdownAction::Destroy)
        );
        assert_eq!(c.domains[1].name, "y");
        assert_eq!(c.log_level, Some(log::LevelFilter::Debug));
        assert_eq!(parse(&c.to_cmdline()).unwrap(), c);
    }

    #[test]
    fn errors() {
        assert!(parse("domain=").is_err());
        assert!(parse("domain=x,vcpus=0").is_err());
        assert!(parse("domain=x,vcpus=1000").is_err());
        assert!(parse("domain=x,mem=12").is_err());
        assert!(parse("domain=x,colour=red").is_err());
        assert!(parse("domain=x,initrd=").is_err());
        assert!(parse("log=loud").is_err());
        assert!(parse("domain=x,on_reboot=rename-restart").is_err());
        assert!(parse("domain=x,name=").is_err());
        assert_eq!(parse("").unwrap(), BootConfig::default());
    }

    #[test]
    fn actions_by_ending() {
        use xen_abi::nr::shutdown;
        let c = parse("domain=x,on_poweroff=destroy,on_reboot=restart,on_crash=preserve").unwrap();
        let d = &c.domains[0];
        assert_eq!(d.action_for(Some(shutdown::POWEROFF)), ShutdownAction::Destroy);
        assert_eq!(d.action_for(Some(shutdown::REBOOT)), ShutdownAction::Restart);
        assert_eq!(d.action_for(Some(shutdown::CRASH)), ShutdownAction::Preserve);
        assert_eq!(d.action_for(Some(shutdown::SUSPEND)), ShutdownAction::Preserve);
        let d = DomainSpec { on_crash: ShutdownAction::Restart, ..DomainSpec::new("y") };
        assert_eq!(d.action_for(None), ShutdownAction::Restart, "a crash by the hypervisor");
        assert_eq!(d.action_for(Some(shutdown::WATCHDOG)), ShutdownAction::Restart);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size("99999999999999999G"), None);
        assert_eq!(parse_size(""), None);
    }
}
