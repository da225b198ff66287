//! What the device-tree boards read alike from QEMU's DTB and from the
//! bootargs in its /chosen: the generic ECAM host bridge's windows, and
//! Lantern's own `lantern.modules=` and `lantern.log=` words.

use fdt::Fdt;
use lantern_virtio_serial::ecam_line::EcamWindows;

/// The windows of the DTB's generic ECAM host bridge, if it has one.
pub fn pci_windows(fdt: &Fdt) -> Option<EcamWindows> {
    let pci = fdt.find_compatible(&["pci-host-ecam-generic"])?;
    let ecam = pci.reg().and_then(|mut r| r.next()).map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64))?;
    let ranges = pci.property("ranges").map_or(&[][..], |p| p.value);
    Some(EcamWindows::from_ranges(ecam, ranges))
}

/// Lantern's own words in the bootargs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanternArgs {
    /// The guest-module archive (`lantern.modules=ADDR,SIZE`).
    pub modules: Option<(u64, u64)>,
    /// Log level (`lantern.log=trace|debug|info|warn|error`; another word
    /// is `info`).
    pub log_level: log::LevelFilter,
}

/// Reads [`LanternArgs`] from `bootargs` (other words are left alone).
pub fn lantern_args(bootargs: &str) -> LanternArgs {
    let mut args = LanternArgs { modules: None, log_level: log::LevelFilter::Info };
    for tok in bootargs.split_ascii_whitespace() {
        if let Some(v) = tok.strip_prefix("lantern.modules=") {
            let mut it = v.split(',');
            if let (Some(a), Some(s)) = (it.next().and_then(parse_num), it.next().and_then(parse_num)) {
                args.modules = Some((a, s));
            }
        } else if let Some(v) = tok.strip_prefix("lantern.log=") {
            args.log_level = match v {
                "trace" => log::LevelFilter::Trace,
                "debug" => log::LevelFilter::Debug,
                "warn" => log::LevelFilter::Warn,
                "error" => log::LevelFilter::Error,
                _ => log::LevelFilter::Info,
            };
        }
    }
    args
}

/// A number in decimal or `0x` hex.
fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lantern_words_are_read_and_others_left() {
        let a = lantern_args("console=x lantern.modules=0x4800_0000,12 lantern.log=debug lantern.semihosting");
        assert_eq!(a.modules, None, "an underscore is no number");
        assert_eq!(a.log_level, log::LevelFilter::Debug);
        let a = lantern_args("lantern.modules=0x48000000,4096 lantern.log=loud");
        assert_eq!(a, LanternArgs { modules: Some((0x4800_0000, 4096)), log_level: log::LevelFilter::Info });
        assert_eq!(lantern_args("").modules, None);
    }
}
