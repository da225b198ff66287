//! The boards' logger ([`ConsoleLogger`]) and which records it prints on
//! the shared console:
//! Lantern's own (targets `lantern*`, the crates' module paths) at the
//! configured level, every other crate's — gdbstub's "Unknown command" for
//! each packet it does not know, say — only when the level is `debug` or
//! finer (`lantern.log=debug`), so a client sending junk cannot flood the
//! console the guests share.

/// The prefix of every Lantern crate's log target.
pub const OWN_TARGET_PREFIX: &str = "lantern";

/// Whether a record of `level` from `target` is shown at maximum level `max`.
pub fn shown_at(target: &str, level: log::Level, max: log::LevelFilter) -> bool {
    level <= max && (target.starts_with(OWN_TARGET_PREFIX) || max >= log::LevelFilter::Debug)
}

/// Whether the record `metadata` describes is shown at the current maximum
/// level (the loggers' `enabled`).
pub fn shown(metadata: &log::Metadata<'_>) -> bool {
    shown_at(metadata.target(), metadata.level(), log::max_level())
}

/// Every board's `log` backend: one `(lantern) ` line per record shown
/// ([`shown`]), prefixed with its level unless it is `info`, written with
/// the board's console print function.
pub struct ConsoleLogger(pub fn(core::fmt::Arguments<'_>));

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        shown(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match record.level() {
            log::Level::Info => (self.0)(format_args!("(lantern) {}\n", record.args())),
            l => (self.0)(format_args!("(lantern) {}: {}\n", l, record.args())),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::{Level, LevelFilter};

    #[test]
    fn other_crates_only_at_debug() {
        assert!(shown_at("lantern_common::domain", Level::Info, LevelFilter::Info));
        assert!(shown_at("lantern_platform_x86_64", Level::Warn, LevelFilter::Info));
        assert!(!shown_at("lantern_common::domain", Level::Debug, LevelFilter::Info));
        assert!(!shown_at("gdbstub::stub::core_impl", Level::Info, LevelFilter::Info));
        assert!(!shown_at("gdbstub::stub::core_impl", Level::Error, LevelFilter::Warn));
        assert!(shown_at("gdbstub::stub::core_impl", Level::Info, LevelFilter::Debug));
        assert!(!shown_at("gdbstub::stub::core_impl", Level::Trace, LevelFilter::Debug));
        assert!(shown_at("gdbstub::stub::core_impl", Level::Trace, LevelFilter::Trace));
    }
}
