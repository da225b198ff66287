//! What the gdb end-to-end tests read back: values the guests reported on
//! the console, and what gdb printed (`$N = ...` lines, monitor JSON).

use crate::e2e;
use crate::gdb::{BatchOutput, Json};

/// The guest's `REPORT ... key=value` value from the first line holding it.
pub(crate) fn report(console: &str, dom: u16, key: &str) -> Option<String> {
    e2e::report_values(console, dom, &[]).into_iter().flatten().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A number from the guest's `REPORT vcpu=0 ...` lines.
pub(crate) fn vcpu0_report(console: &str, dom: u16, key: &str) -> Option<u64> {
    e2e::report_values(console, dom, &[("vcpu", "0")])
        .into_iter()
        .flatten()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| num(&v))
}

pub(crate) fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `$N = VALUE` lines of a batch's output, in order.
pub(crate) fn print_values(text: &str) -> Vec<String> {
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
pub(crate) fn runstate_total(out: &BatchOutput, vcpu: &str) -> Option<i128> {
    out.json_lines().iter().filter_map(|l| Json::parse(l).ok()).find_map(|j| {
        if j.get("vcpu")?.str()? != vcpu {
            return None;
        }
        j.get("hypervisor")?.get("time")?.items().iter().map(Json::int).sum::<Option<i128>>()
    })
}
