//! Domain lifecycle end to end, per board, through `--domain` files: d1's
//! configuration says `on_reboot = "restart"` and its test guest asks for a
//! reboot after its checks (the guest command-line word `reboot`), so the
//! hypervisor must build it again and again; d2 lingers. gdb then restarts
//! d2 (`monitor restart d2`: its scenario runs a second time) and destroys
//! both (`monitor destroy`), which ends the `--exit` run with their closing
//! lines and the verdict.

use std::path::Path;
use std::time::Duration;

use crate::boards::BoardSpec;
use crate::build::{build_demo_guests, work_dir};
use crate::e2e;
use crate::gdb::{default_symbols, run_batch};
use crate::opts::Opts;
use crate::report::Tally;
use crate::run::free_gdb_ports;
use crate::summary::summary;

/// Upper bound for each wait; a hang is a failure, not a stall.
const LIMIT: Duration = Duration::from_secs(90);

/// Writes one `xl.cfg`-style file for a test-guest domain.
/// `on_reboot` and `on_crash` both say `restart` or neither does: d1 is
/// rebuilt whatever ends it (a check of its scenario may time out while gdb
/// holds the system), so destroying it on request always meets it running.
fn write_cfg(path: &Path, name: &str, kernel: &Path, vcpus: u32, extra: &str, restart: bool) -> Result<(), String> {
    let action = if restart { "restart" } else { "destroy" };
    let text = format!(
        "# written by `cargo xtask test` (lifecycle)\nname = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\n\
         vcpus = {vcpus}\nmemory = 32\nextra = \"{extra}\"\non_reboot = \"{action}\"\non_crash = \"{action}\"\n",
        kernel.display()
    );
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// How many console lines contain `needle`.
fn count(console: &str, needle: &str) -> usize {
    console.lines().filter(|l| l.contains(needle)).count()
}

/// One board's lifecycle test (see the module comment).
pub fn lifecycle_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} lifecycle", board.name());
    let guest = match build_demo_guests(board) {
        Ok(g) => g[0].1.clone(),
        Err(e) => return tally.record(&format!("{name}: build guests"), false, &e),
    };
    let dir = work_dir(board);
    let (rebooter, lingerer) = (dir.join("lifecycle-rebooter.cfg"), dir.join("lifecycle-lingerer.cfg"));
    let vcpus = board.demo_vcpus();
    if let Err(e) = write_cfg(&rebooter, "rebooter", &guest, vcpus, "reboot", true)
        .and_then(|_| write_cfg(&lingerer, "lingerer", &guest, vcpus, "linger", false))
    {
        return tally.record(&format!("{name}: configuration files"), false, &e);
    }
    let Some(port) = free_gdb_ports() else { return tally.record(&format!("{name}: a free port"), false, "none") };
    let log = dir.join("lifecycle-console.log");
    let o = Opts {
        exit: true,
        timeout: Some(LIMIT.as_secs() * 3),
        serial_log: Some(log.clone()),
        gdb_port: Some(port),
        domain_files: vec![rebooter, lingerer],
        ..Opts::on(board)
    };
    let Some((a, mut s)) = e2e::build_and_boot(&o, &log, &name, tally) else { return };
    let names: Vec<&str> = a.domains.iter().map(|(_, n)| n.as_str()).collect();
    tally.record(
        &format!("{name}: --domain files name the domains"),
        names == ["rebooter", "lingerer"],
        &format!("{names:?}"),
    );
    // d1 reboots; its configuration restarts it, twice at least.
    let r = s.wait_for(LIMIT, |c| c.contains("(lantern) d1: reboot: restarted (restart 2)"));
    tally.record(&format!("{name}: on_reboot=restart builds d1 again after each reboot"), r.is_ok(), &format!("{r:?}"));
    let console = s.console();
    let ends = count(&console, "(d1) SCENARIO END passed=");
    tally.record(
        &format!("{name}: each incarnation of d1 ran its whole scenario"),
        ends >= 2 && !console.contains("(d1) CHECK FAIL"),
        &format!("{ends} scenario ends, console in {}", log.display()),
    );
    let r = s.wait_for(LIMIT, |c| c.contains("(d2) SCENARIO LINGER"));
    tally.record(&format!("{name}: d2 lingers"), r.is_ok(), &format!("{r:?}"));
    // gdb restarts d2 (its scenario runs again from the start).
    let symbols = default_symbols(board);
    let out = run_batch(board, port, &symbols, &["monitor restart d2", "monitor domains --json"], LIMIT);
    let text = out.as_ref().map(|o| o.text()).unwrap_or_else(|e| e.clone());
    tally.record(&format!("{name}: monitor restart d2 is accepted"), text.contains("d2: restart requested"), &text);
    let r = s.wait_for(LIMIT, |c| {
        c.contains("(lantern) d2: on request: restarted (restart 1)") && count(c, "(d2) SCENARIO LINGER") >= 2
    });
    tally.record(&format!("{name}: d2 was built again and ran its scenario again"), r.is_ok(), &format!("{r:?}"));
    // The restart counts show in `monitor domains`, then gdb destroys both.
    let out = run_batch(
        board,
        port,
        &symbols,
        &["monitor domains --json", "monitor destroy d1", "monitor destroy d2"],
        LIMIT,
    );
    let text = out.as_ref().map(|o| o.text()).unwrap_or_else(|e| e.clone());
    let json = out.as_ref().ok().and_then(|o| o.json_lines().first().map(|l| l.to_string())).unwrap_or_default();
    let restarts = |id: i128| {
        crate::gdb::Json::parse(&json).ok().and_then(|j| {
            j.get("domains")?
                .items()
                .iter()
                .find(|d| d.get("id").and_then(|i| i.int()) == Some(id))?
                .get("restarts")?
                .int()
        })
    };
    tally.record(
        &format!("{name}: monitor domains counts the restarts"),
        restarts(1).is_some_and(|n| n >= 2) && restarts(2) == Some(1),
        &format!("d1 {:?}, d2 {:?}: {json}", restarts(1), restarts(2)),
    );
    tally.record(
        &format!("{name}: monitor destroy is accepted for both"),
        text.contains("d1: destroy requested") && text.contains("d2: destroy requested"),
        &text,
    );
    let code = s.wait_exit(LIMIT);
    let console = s.console();
    let sum = summary(&console);
    tally.record(
        &format!("{name}: destroyed on request: the run ends, both domains `destroyed`"),
        sum.domains == [(1, "destroyed".to_string()), (2, "destroyed".to_string())]
            && console.contains("(lantern) d1: on request: destroyed")
            && console.contains("(lantern) d2: on request: destroyed"),
        &format!("{:?}, console in {}", sum.domains, log.display()),
    );
    tally.record(
        &format!("{name}: the operator's destroy is no failure (verdict PASS, clean exit status)"),
        sum.verdict == Some(true) && code == Ok(board.exit_statuses().clean),
        &format!("{:?}, QEMU exit {code:?}", sum.verdict),
    );
}
