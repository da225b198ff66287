//! Counting test results across cargo test binaries and QEMU scenarios, and
//! printing the closing `N passed, N failed` line.

use crate::CmdResult;

/// Running totals.
#[derive(Default)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    failures: Vec<String>,
}

impl Tally {
    /// Records one named check.
    pub fn record(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            self.failures.push(if detail.is_empty() { name.to_string() } else { format!("{name}: {detail}") });
        }
    }

    /// Adds counts from a runner that reports its own totals.
    pub fn add(&mut self, group: &str, passed: u64, failed: u64) {
        self.passed += passed;
        self.failed += failed;
        if failed > 0 {
            self.failures.push(format!("{group}: {failed} failed"));
        }
    }

    /// Prints the failures and the closing line; fails if anything failed.
    pub fn finish(self) -> CmdResult {
        println!();
        if !self.failures.is_empty() {
            println!("failures:");
            for f in &self.failures {
                println!("  {f}");
            }
        }
        println!("{} passed, {} failed", self.passed, self.failed);
        if self.failed == 0 && self.passed > 0 {
            Ok(())
        } else if self.passed == 0 && self.failed == 0 {
            Err("no test ran".into())
        } else {
            Err(format!("{} test(s) failed", self.failed))
        }
    }
}

/// Sums `test result: ... N passed; M failed` lines of cargo test output.
pub fn parse_cargo_test(output: &str) -> (u64, u64, usize) {
    let (mut passed, mut failed, mut binaries) = (0, 0, 0);
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { continue };
        binaries += 1;
        for part in rest.split(['.', ';']) {
            let mut it = part.split_whitespace();
            if let (Some(n), Some(what)) = (it.next(), it.next()) {
                match (n.parse::<u64>(), what) {
                    (Ok(n), "passed") => passed += n,
                    (Ok(n), "failed") => failed += n,
                    _ => {}
                }
            }
        }
    }
    (passed, failed, binaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_cargo_test_results() {
        let out = "test result: ok. 13 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.02s\n\
                   noise\n  test result: FAILED. 2 passed; 1 failed; 0 ignored\n";
        assert_eq!(parse_cargo_test(out), (15, 1, 2));
    }
}
