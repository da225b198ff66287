//! Reading the hypervisor's closing console lines: `(lantern) dN: ...` per
//! domain (how it ended) and `(lantern) verdict PASS|FAIL`.

/// Prefix of the hypervisor's own console lines (guests' are `(dN) `).
const HV_PREFIX: &str = "(lantern) ";

/// The hypervisor's closing lines in a console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// `(domain, what)`: `shut down (poweroff)`, `crashed`, ...
    pub domains: Vec<(u16, String)>,
    /// `Some(true)` for `verdict PASS`, `Some(false)` for FAIL.
    pub verdict: Option<bool>,
}

/// A hypervisor line `(lantern) dN: what` → `(N, what)`.
pub fn hv_domain_line(line: &str) -> Option<(u16, &str)> {
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
            if what.starts_with("shut down") || matches!(what, "crashed" | "destroyed" | "still running") {
                s.domains.push((id, what.to_string()));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_closing_lines() {
        let c = "(lantern) boot\n(d1) CHECK PASS x\n(lantern) all domains finished in 5 ms\n\
                 (lantern) d1: shut down (poweroff)\n(lantern) d2: crashed\n(lantern) verdict FAIL\n";
        let s = summary(c);
        assert_eq!(s.domains, vec![(1, "shut down (poweroff)".to_string()), (2, "crashed".to_string())]);
        assert_eq!(s.verdict, Some(false));
    }
}
