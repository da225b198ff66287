//! `cargo xtask xtf DIR`: runs every Xen Test Framework image (`test-hvm*`)
//! under a local XTF build, one QEMU at a time, as the only domain of an
//! `--exit` run; prints each test's result (SUCCESS, SKIP, FAILURE, ERROR, or
//! no result, with the first line that says why) and a summary table; fails
//! on FAILURE, ERROR or no result. XTF itself is never part of this
//! repository or of CI: point this at a checkout you built.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::boards;
use crate::build::{build, work_dir};
use crate::e2e::{domain_line, Session};
use crate::opts::Opts;
use crate::qemu::qemu_command;
use crate::CmdResult;

/// How long one XTF test may run.
const LIMIT: Duration = Duration::from_secs(60);

/// What one test ended with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// `Test result: SUCCESS`.
    Success,
    /// `Test result: SKIP` (a feature the test needs is absent).
    Skip,
    /// `Test result: FAILURE`.
    Failure,
    /// `Test result: ERROR`.
    Error,
    /// No result line (the guest stopped, crashed or timed out).
    NoResult,
}

impl Outcome {
    /// The name in the summary.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Success => "SUCCESS",
            Outcome::Skip => "SKIP",
            Outcome::Failure => "FAILURE",
            Outcome::Error => "ERROR",
            Outcome::NoResult => "no result",
        }
    }

    /// Whether the run as a whole fails because of it.
    pub fn is_bad(&self) -> bool {
        matches!(self, Outcome::Failure | Outcome::Error | Outcome::NoResult)
    }
}

/// Reads a test's console: its `Test result:` line, and the first line that
/// explains a failure (XTF's `Failure:`/`Error:` lines, else the
/// hypervisor's crash diagnostic or its last line).
pub fn outcome(console: &str) -> (Outcome, Option<String>) {
    let guest: Vec<&str> = console.lines().filter_map(|l| domain_line(l.trim_end()).map(|(_, b)| b)).collect();
    let result = guest.iter().find_map(|l| l.split("Test result: ").nth(1)).map(str::trim);
    let outcome = match result {
        Some(r) if r.starts_with("SUCCESS") => Outcome::Success,
        Some(r) if r.starts_with("SKIP") => Outcome::Skip,
        Some(r) if r.starts_with("FAILURE") => Outcome::Failure,
        Some(r) if r.starts_with("ERROR") => Outcome::Error,
        _ => Outcome::NoResult,
    };
    if outcome == Outcome::Success {
        return (outcome, None);
    }
    let said = |l: &&&str| {
        let t = l.trim_start();
        !t.starts_with("Test result")
            && (t.starts_with("Fail") || t.starts_with("Error") || t.starts_with("Skip") || t.contains("FAIL"))
    };
    // Failing tests often say why in free text just before their result
    // line ("  Expected #UD, got #NM"); a crashed one names its exception.
    let before_result = || {
        let end = guest.iter().position(|l| l.contains("Test result: "))?;
        guest[..end].iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string())
    };
    let why = guest
        .iter()
        .find(said)
        .map(|l| l.trim().to_string())
        .or_else(|| result.and(before_result()))
        .or_else(|| console.lines().find(|l| l.contains("crashed:")).map(|l| l.trim().to_string()))
        .or_else(|| guest.iter().find(|l| l.starts_with("Unhandled exception")).map(|l| l.to_string()))
        .or_else(|| console.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string()));
    (outcome, why)
}

/// The vCPUs a test's `.cfg` (beside its image) asks for: its last
/// `vcpus = N` line (XTF appends a test's own configuration after the
/// default one), else 1.
pub fn cfg_vcpus(cfg: &str) -> u32 {
    cfg.lines()
        .rev()
        .find_map(|l| l.split('#').next()?.trim().strip_prefix("vcpus")?.trim().strip_prefix('=')?.trim().parse().ok())
        .unwrap_or(1)
}

/// Every `test-hvm*` file under `dir` (XTF puts each in `tests/<name>/`), sorted.
fn images(dir: &Path) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() && depth < 3 {
                walk(&path, depth + 1, out)?;
            } else if path.is_file() && name.starts_with("test-hvm") && !name.contains('.') {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 0, &mut out).map_err(|e| format!("{}: {e}", dir.display()))?;
    out.sort();
    Ok(out)
}

/// `cargo xtask xtf DIR [--arch A]`.
pub fn cmd_xtf(args: &[String]) -> CmdResult {
    let mut dir = None;
    let mut board = boards::default_board();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--arch" => board = boards::by_name(it.next().ok_or("--arch needs a value")?)?,
            "-h" | "--help" => {
                println!("usage: cargo xtask xtf DIR [--arch A]   (DIR: a built XTF checkout)");
                return Ok(());
            }
            d if dir.is_none() => dir = Some(PathBuf::from(d)),
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    let dir = dir.ok_or("usage: cargo xtask xtf DIR [--arch A] (DIR: a built XTF checkout)")?;
    let tests = images(&dir)?;
    if tests.is_empty() {
        return Err(format!("no test-hvm* images under {}", dir.display()));
    }
    crate::setup::ensure_rust_targets()?;
    crate::setup::ensure_qemu_and_gdb()?;
    let log = work_dir(board).join("xtf-console.log");
    let mut results = Vec::new();
    for t in &tests {
        let cfg = std::fs::read_to_string(
            t.with_file_name(format!("{}.cfg", t.file_name().and_then(|n| n.to_str()).unwrap_or(""))),
        )
        .unwrap_or_default();
        let opts = Opts {
            exit: true,
            timeout: Some(LIMIT.as_secs()),
            serial_log: Some(log.clone()),
            guests: vec![t.clone()],
            vcpus: Some(cfg_vcpus(&cfg)),
            ..Opts::on(board)
        };
        let a = build(&opts)?;
        let mut s = Session::spawn(qemu_command(&opts, &a), &log)?;
        let _ = s.wait_exit(LIMIT);
        let (outcome, why) = outcome(&s.console());
        let name = t.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        match &why {
            Some(w) => println!("{name}: {} — {w}", outcome.name()),
            None => println!("{name}: {}", outcome.name()),
        }
        results.push((name, outcome));
    }
    println!("\n| result | count |\n|---|---:|");
    for o in [Outcome::Success, Outcome::Skip, Outcome::Failure, Outcome::Error, Outcome::NoResult] {
        println!("| {} | {} |", o.name(), results.iter().filter(|(_, r)| *r == o).count());
    }
    let bad = results.iter().filter(|(_, r)| r.is_bad()).count();
    if bad > 0 {
        Err(format!("{bad} of {} XTF tests did not succeed or skip", results.len()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xtf_results_and_why() {
        let ok =
            "(lantern) booting\n(d1) --- Xen Test Framework ---\n(d1) Test result: SUCCESS\n(lantern) verdict PASS\n";
        assert_eq!(outcome(ok), (Outcome::Success, None));
        let skip = "(d1) Skip: no HAP\n(d1) Test result: SKIP\n";
        assert_eq!(outcome(skip), (Outcome::Skip, Some("Skip: no HAP".into())));
        let fail =
            "(d1) Failure: Data leaked via IO_APIC REG_SELECT\n(d1) Test result: FAILURE\n(lantern) verdict PASS\n";
        assert_eq!(outcome(fail), (Outcome::Failure, Some("Failure: Data leaked via IO_APIC REG_SELECT".into())));
        assert!(Outcome::Failure.is_bad() && !Outcome::Skip.is_bad());
        let crash = "(d1) --- Xen Test Framework ---\n(lantern) d1v0 crashed: triple fault (exit code 0x7f)\n(lantern) verdict FAIL\n";
        let (o, why) = outcome(crash);
        assert_eq!(o, Outcome::NoResult);
        assert!(why.unwrap().contains("crashed: triple fault"));
        assert_eq!(outcome("").0, Outcome::NoResult);
        let free_text = "(d1)   Expected #UD, got #NM (cr0: EM MP TS)\n(d1) Test result: FAILURE\n";
        assert_eq!(outcome(free_text).1.as_deref(), Some("Expected #UD, got #NM (cr0: EM MP TS)"));
        let exception =
            "(d1) Vec 13 #GP[0000]\n(d1) Unhandled exception at 0010:001037ef\n(lantern) d1: shut down (crash)\n";
        assert_eq!(outcome(exception).1.as_deref(), Some("Unhandled exception at 0010:001037ef"));
        // A clean power-off without a result line is still no result.
        assert_eq!(outcome("(d1) hello\n(lantern) verdict PASS\n").0, Outcome::NoResult);
    }

    #[test]
    fn a_tests_own_vcpus_line_wins() {
        assert_eq!(cfg_vcpus("name=\"t\"\nvcpus=1 \n# Test Extra Configuration:\nvcpus = 3\n"), 3);
        assert_eq!(cfg_vcpus("memory=128\n"), 1);
        assert_eq!(cfg_vcpus("vcpus=2 # two\n"), 2);
    }

    #[test]
    fn finds_test_images_only() {
        let dir = std::env::temp_dir().join(format!("lantern-xtf-{}", std::process::id()));
        let t = dir.join("tests/example");
        std::fs::create_dir_all(&t).unwrap();
        for f in ["test-hvm64-example", "test-hvm32-example", "test-hvm64-example.o", "test-pv64-example", "info.json"]
        {
            std::fs::write(t.join(f), b"").unwrap();
        }
        let found: Vec<String> =
            images(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(found, ["test-hvm32-example", "test-hvm64-example"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
