//! Linux beside the scenario guest, on every board that names a Linux
//! flavour: two domains from `--domain` files — d1 the board's test guest
//! running its whole scenario, d2 Debian's kernel (the board's first
//! flavour) with the busybox initramfs, 2 vCPUs — share the machine (on
//! x86 the scenario guest is the 32-bit one: the compat layout beside a
//! native Linux). Both
//! must pass: every check of d1, d2's `/init` report (2 CPUs, Xen found,
//! event-channel interrupts, an advancing clock). d2's init then reboots
//! (`lantern.reboot`: the firmware's system reset) and its configuration
//! says `on_reboot = "restart"`, so Linux must boot a second time and report
//! again; gdb then destroys it (`monitor destroy d2`), which ends the run:
//! d1 powered off, d2 destroyed, PASS.

use std::path::Path;
use std::time::Duration;

use crate::boards::BoardSpec;
use crate::build::{build_demo_guests, work_dir};
use crate::e2e::{self, domain_line};
use crate::gdb::run_plain_batch;
use crate::linux::{self, INIT_BANNER};
use crate::linux_e2e::report_value;
use crate::opts::Opts;
use crate::report::Tally;
use crate::summary::summary;

/// Upper bound for the run (Linux alone takes ~15 s under TCG; here it
/// shares the CPU with the scenario).
const LIMIT: Duration = Duration::from_secs(300);
/// Linux's vCPUs.
const LINUX_VCPUS: u32 = 2;

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One board's test (see the module comment).
pub fn linux_beside_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let Some(flavour) = board.linux_flavours().first() else {
        println!("  {}: this board boots no Linux flavour in its tests yet", board.name());
        return;
    };
    let name = format!("{} linux beside the scenario", board.name());
    let guest = match linux::prepare(flavour) {
        Ok(g) => g,
        Err(e) => return tally.record(&format!("{name}: kernel and busybox from Debian's packages"), false, &e),
    };
    // The scenario guest in the other layout when the board has two (x86:
    // the 32-bit compat guest beside the 64-bit Linux), else the board's.
    let pick = board.demo_guests().iter().position(|g| g.layout != flavour.layout).unwrap_or(0);
    let scenario = match build_demo_guests(board) {
        Ok(g) => g[pick].1.clone(),
        Err(e) => return tally.record(&format!("{name}: build guests"), false, &e),
    };
    let dir = work_dir(board);
    let (d1, d2) = (dir.join("beside-scenario.cfg"), dir.join("beside-linux.cfg"));
    let written = write(
        &d1,
        &format!(
            "name = \"scenario\"\nkernel = \"{}\"\nvcpus = {}\nmemory = 32\non_poweroff = \"preserve\"\n",
            scenario.display(),
            board.demo_vcpus()
        ),
    )
    .and_then(|_| {
        write(
            &d2,
            &format!(
                "name = \"linux\"\nkernel = \"{}\"\nramdisk = \"{}\"\nextra = \"{} lantern.test lantern.reboot\"\n\
                 vcpus = {LINUX_VCPUS}\nmemory = {}\non_reboot = \"restart\"\n",
                guest.kernel.display(),
                guest.initramfs.display(),
                guest.cmdline,
                linux::DEFAULT_MEM >> 20
            ),
        )
    });
    if let Err(e) = written {
        return tally.record(&format!("{name}: configuration files"), false, &e);
    }
    let Some(port) = crate::run::free_gdb_ports() else {
        return tally.record(&format!("{name}: a free TCP port for gdb"), false, "none found");
    };
    let log = dir.join("beside-console.log");
    let o = Opts {
        exit: true,
        timeout: Some(LIMIT.as_secs()),
        serial_log: Some(log.clone()),
        domain_files: vec![d1, d2],
        gdb_port: Some(port),
        ..Opts::on(board)
    };
    let Some((a, mut s)) = e2e::build_and_boot(&o, &log, &name, tally) else { return };
    let banner = format!("(d2) {INIT_BANNER} cpus=");
    let r = s.wait_for(LIMIT, |c| {
        c.contains("(lantern) d2: reboot: restarted (restart 1)") && c.matches(banner.as_str()).count() >= 2
    });
    tally.record(
        &format!("{name}: Linux's reboot restarts d2 (on_reboot = \"restart\") and it boots again to its report"),
        r.is_ok(),
        &format!("{r:?}; console in {}", log.display()),
    );
    let out = run_plain_batch(port, &["monitor destroy d2"], Duration::from_secs(60));
    let text = out.as_ref().map(|o| o.text()).unwrap_or_else(|e| e.clone());
    tally.record(&format!("{name}: monitor destroy d2 is accepted"), text.contains("d2: destroy requested"), &text);
    let code = s.wait_exit(LIMIT);
    let console = s.console();
    let where_ = format!("console in {}", log.display());
    e2e::tally_guest_checks(tally, &name, &console, &[(1, a.domains[0].1.as_str())]);
    let report = console
        .lines()
        .filter_map(|l| domain_line(l.trim_end()))
        .find(|(d, b)| *d == 2 && b.starts_with(&format!("{INIT_BANNER} cpus=")))
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    let value = |k: &str| report_value(&report, k).unwrap_or_default().to_string();
    tally.record(
        &format!("{name}: d2's /init reports {LINUX_VCPUS} CPUs on Xen, event-channel interrupts, a running clock"),
        value("cpus") == LINUX_VCPUS.to_string()
            && value("hypervisor") == "xen"
            && value("xen_events").parse::<u64>().is_ok_and(|n| n > 0)
            && value("clock") == "advancing",
        &format!("`{report}`; {where_}"),
    );
    let sum = summary(&console);
    let want = [(1, "shut down (poweroff)".to_string()), (2, "destroyed".to_string())];
    tally.record(
        &format!("{name}: d1 powers off, d2 is destroyed, verdict PASS"),
        sum.domains == want && sum.verdict == Some(true) && code == Ok(board.exit_statuses().clean),
        &format!("{sum:?}; QEMU {code:?}; {where_}"),
    );
}
