//! The serial console end to end, per board: the demo guests boot with
//! `console-echo` (and `linger`), QEMU's console is a Unix socket the test
//! types into and reads the console from (kept in a log file). The test checks that
//! each guest's line written to its PV console ring arrives as `(dN) ...`,
//! types a line into each domain in turn (Ctrl-A three times moves input
//! on) and waits for the guest to echo it back through its ring, then moves
//! input to the hypervisor and presses `q`, whose dump must show the console
//! ring, port and vcpu_info placement each guest reported.

use std::io::Write;
use std::time::Duration;

use crate::boards::BoardSpec;
use crate::build::work_dir;
use crate::e2e;
use crate::opts::Opts;
use crate::report::Tally;

/// Upper bound for each wait (a boot under TCG on a busy machine is slow).
const LIMIT: Duration = Duration::from_secs(240);
/// Ctrl-A, three times: the input switch.
const SWITCH: &[u8] = b"\x01\x01\x01";

/// The `k=v` value of `key` in `line`.
fn value<'a>(line: &'a [(String, String)], key: &str) -> Option<&'a str> {
    line.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// What the `q` dump must say of domain `dom`, from its REPORT lines: the
/// console ring and port on the domain's line, and each vCPU's vcpu_info
/// placement (a registered page's gfn and offset, or its shared_info slot).
fn expected_dump(console: &str, dom: u16) -> Vec<(String, Vec<String>)> {
    let mut want = Vec::new();
    if let Some(c) = e2e::report_values(console, dom, &[]).into_iter().find(|l| value(l, "console_gfn").is_some()) {
        let (gfn, port) = (value(&c, "console_gfn").unwrap_or("?"), value(&c, "console_port").unwrap_or("?"));
        want.push((format!("d{dom} '"), vec![format!(" console gfn {gfn} port {port}")]));
    }
    for l in e2e::report_values(console, dom, &[]) {
        let (Some(v), Some(kind)) = (value(&l, "vcpu"), value(&l, "vcpu_info")) else { continue };
        let what = match kind {
            "guest" => format!(
                "vcpu_info guest: gfn {} offset {}",
                value(&l, "vcpu_info_gfn").unwrap_or("?"),
                value(&l, "vcpu_info_offset").unwrap_or("?")
            ),
            "shared_info" => format!("vcpu_info shared_info: shared_info slot {v} "),
            other => format!("vcpu_info {other}"),
        };
        want.push((format!("  d{dom}v{v} "), vec![what]));
    }
    want
}

/// One board's console test (see the module comment).
pub fn console_test(board: &'static dyn BoardSpec, tally: &mut Tally) {
    let name = format!("{} console", board.name());
    let dir = work_dir(board);
    let log = dir.join("console-e2e.log");
    let sock = dir.join("console-e2e.sock");
    let _ = std::fs::remove_file(&sock);
    let o = Opts {
        timeout: Some(LIMIT.as_secs() * 3),
        serial_log: Some(log.clone()),
        console_socket: Some(sock.clone()),
        guest_cmdline: Some("console-echo".into()),
        ..Opts::on(board)
    };
    let Some((a, mut s)) = e2e::build_and_boot(&o, &log, &name, tally) else { return };
    let mut input = match e2e::connect_console(&sock, &log) {
        Ok(i) => i,
        Err(e) => return tally.record(&format!("{name}: console socket"), false, &e),
    };
    let mut type_in = |bytes: &[u8]| input.write_all(bytes).and_then(|_| input.flush()).map_err(|e| e.to_string());
    let doms: Vec<u16> = a.domains.iter().map(|(d, _)| *d).collect();
    let first = format!("(lantern) *** serial input now goes to d{}'s console", doms[0]);
    let r = s.wait_for(LIMIT, |c| c.contains(&first));
    tally.record(&format!("{name}: serial input starts at d{}", doms[0]), r.is_ok(), &format!("{r:?}"));
    for (i, &d) in doms.iter().enumerate() {
        let ring = format!("(d{d}) CONSOLE RING hello from ");
        let r = s.wait_for(LIMIT, |c| c.contains(&ring));
        tally.record(&format!("{name}: d{d}'s out[] line arrives as (d{d})"), r.is_ok(), &format!("{r:?}"));
        let waiting = format!("(d{d}) CONSOLE ECHO waiting");
        let typed = format!("typed-into-d{d}");
        let echoed = format!("(d{d}) CONSOLE ECHO got={typed}");
        let r = s
            .wait_for(LIMIT, |c| c.contains(&waiting))
            .and_then(|_| type_in(format!("{typed}\r").as_bytes()))
            .and_then(|_| s.wait_for(LIMIT, |c| c.contains(&echoed)));
        tally.record(&format!("{name}: a line typed at the console reaches d{d}'s in[]"), r.is_ok(), &format!("{r:?}"));
        let next = match doms.get(i + 1) {
            Some(n) => format!("(lantern) *** serial input now goes to d{n}'s console"),
            None => String::from("(lantern) *** serial input now goes to the hypervisor"),
        };
        let r = type_in(SWITCH).and_then(|_| s.wait_for(LIMIT, |c| c.contains(&next)));
        tally.record(&format!("{name}: Ctrl-A x3 after d{d}: {next}"), r.is_ok(), &format!("{r:?}"));
    }
    // Debug key q: every domain's dump line, after the switch notice.
    let last = doms[doms.len() - 1];
    let end = format!("(lantern)   d{last}v{} ", board.demo_vcpus() - 1);
    let r = type_in(b"q").and_then(|_| s.wait_for(LIMIT, |c| c.contains(&end)));
    tally.record(&format!("{name}: debug key q dumps every vCPU"), r.is_ok(), &format!("{r:?}"));
    let console = s.console();
    let dump: Vec<&str> = console
        .lines()
        .skip_while(|l| !l.contains("serial input now goes to the hypervisor"))
        .filter_map(|l| l.trim_end().strip_prefix("(lantern) "))
        .collect();
    for &d in &doms {
        let want = expected_dump(&console, d);
        tally.record(
            &format!("{name}: d{d} reported its console ring and vcpu_info placements"),
            want.len() > 1,
            &format!("{want:?}"),
        );
        for (prefix, parts) in want {
            let line = dump.iter().find(|l| l.starts_with(&prefix));
            let ok = line.is_some_and(|l| parts.iter().all(|p| l.contains(p.as_str())));
            tally.record(
                &format!("{name}: q shows `{}` as d{d} reported: {}", prefix.trim(), parts.join(", ")),
                ok,
                &format!("dump line {line:?}, console in {}", log.display()),
            );
        }
    }
    drop(s);
    let _ = std::fs::remove_file(&sock);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dump_expectations_follow_the_reports() {
        let log = "(d1) REPORT console_gfn=0xfefff console_port=1\n\
                   (d1) REPORT vcpu=0 up=1 vcpu_info=guest vcpu_info_gfn=0x12 vcpu_info_offset=0x40 upcalls=3\n\
                   (d1) REPORT vcpu=1 up=1 vcpu_info=shared_info vcpu_info_gfn=0x11 vcpu_info_offset=0x40\n\
                   (d1) REPORT vcpu=2 up=0 vcpu_info=dummy upcalls=0\n\
                   (d2) REPORT console_gfn=0x1 console_port=9\n";
        let want = expected_dump(log, 1);
        assert_eq!(want[0], ("d1 '".to_string(), vec![" console gfn 0xfefff port 1".to_string()]));
        assert_eq!(want[1].1, ["vcpu_info guest: gfn 0x12 offset 0x40"]);
        assert_eq!(want[2].1, ["vcpu_info shared_info: shared_info slot 1 "]);
        assert_eq!(want[3], ("  d1v2 ".to_string(), vec!["vcpu_info dummy".to_string()]));
    }
}
