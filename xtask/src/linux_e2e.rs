//! Debian's unmodified Linux under Lantern, on every board that names a
//! Linux flavour: the kernel and busybox come from Debian's packages at
//! set-up time (a failed download fails the test, it is never skipped), the
//! domain boots the busybox initramfs with `lantern.test`, and its `/init`
//! reports one line — CPUs online, the hypervisor Linux detected, the Xen
//! event-channel interrupts it took, whether its clock advances — and then
//! powers off, which must end the run with the hypervisor's PASS verdict.

use std::time::Duration;

use crate::boards::BoardSpec;
use crate::build::{build, work_dir};
use crate::e2e::{domain_line, Session};
use crate::linux::{self, INIT_BANNER, KERNEL_CMDLINE};
use crate::opts::Opts;
use crate::qemu::qemu_command;
use crate::report::Tally;
use crate::summary::summary;

/// Upper bound for one Linux boot under TCG on a busy 2-core machine (it
/// takes ~15 s alone).
const LIMIT: Duration = Duration::from_secs(240);
/// vCPUs of the test domain: more than one, so CPU bring-up through PSCI,
/// the per-CPU vcpu_info registrations and the IPIs are exercised.
const VCPUS: u32 = 2;

/// The `key=value` words of `/init`'s report line.
fn report_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Boots the board's default Linux flavour with [`VCPUS`] vCPUs and checks
/// its report and the verdict.
pub fn linux_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let Some(flavour) = board.linux_flavours().first() else {
        println!("  {}: this board names no Linux flavour yet", board.name());
        return;
    };
    let name = format!("{} linux {} ({VCPUS} vCPUs)", board.name(), flavour.name);
    let guest = match linux::prepare(flavour) {
        Ok(g) => g,
        Err(e) => return tally.record(&format!("{name}: kernel and busybox from Debian's packages"), false, &e),
    };
    println!("  {name}: {}", guest.package);
    let log = work_dir(board).join("linux-console.log");
    let o = Opts {
        exit: true,
        timeout: Some(LIMIT.as_secs()),
        serial_log: Some(log.clone()),
        guests: vec![guest.kernel],
        initrds: vec![guest.initramfs],
        guest_cmdline: Some(format!("{KERNEL_CMDLINE} lantern.test")),
        vcpus: Some(VCPUS),
        mem: Some(linux::DEFAULT_MEM),
        ..Opts::on(board)
    };
    let a = match build(&o) {
        Ok(a) => a,
        Err(e) => return tally.record(&format!("{name}: build"), false, &e),
    };
    let mut s = match Session::spawn(qemu_command(&o, &a), &log) {
        Ok(s) => s,
        Err(e) => return tally.record(&format!("{name}: boot"), false, &e),
    };
    let code = s.wait_exit(LIMIT);
    let console = s.console();
    let where_ = format!("console in {}", log.display());
    let report = console
        .lines()
        .filter_map(|l| domain_line(l.trim_end()))
        .find(|(d, b)| *d == 1 && b.starts_with(&format!("{INIT_BANNER} cpus=")))
        .map(|(_, b)| b.to_string());
    tally.record(&format!("{name}: /init reports"), report.is_some(), &where_);
    let line = report.unwrap_or_default();
    let want = |key: &str, ok: &dyn Fn(&str) -> bool, what: &str| {
        let v = report_value(&line, key);
        (format!("{name}: {key} {what}"), v.is_some_and(ok), format!("`{line}`; {where_}"))
    };
    let online = format!("0-{}", VCPUS - 1);
    let checks = [
        want("cpus", &|v| v == VCPUS.to_string(), &format!("= {VCPUS}")),
        want("online", &|v| v == online, &format!("= {online}")),
        want("hypervisor", &|v| v == "xen", "= xen (/sys/hypervisor/type)"),
        want("xen_events", &|v| v.parse::<u64>().is_ok_and(|n| n > 0), "> 0 (the event-channel interrupt counts)"),
        want("clock", &|v| v == "advancing", "advancing"),
    ];
    for (check, ok, detail) in checks {
        tally.record(&check, ok, &detail);
    }
    let sum = summary(&console);
    tally.record(
        &format!("{name}: Linux powers off and the verdict is PASS"),
        sum.verdict == Some(true) && sum.domains == [(1, "shut down (poweroff)".to_string())],
        &format!("{sum:?}; QEMU {code:?}; {where_}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_init_report() {
        let l = "LANTERN-LINUX cpus=2 online=0-1 hypervisor=xen xen_events=7 clock=advancing";
        assert_eq!(report_value(l, "cpus"), Some("2"));
        assert_eq!(report_value(l, "online"), Some("0-1"));
        assert_eq!(report_value(l, "xen_events"), Some("7"));
        assert_eq!(report_value(l, "clock"), Some("advancing"));
        assert_eq!(report_value(l, "nope"), None);
    }
}
