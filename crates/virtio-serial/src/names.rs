//! The gdb lines' port names, shared by the boards (which look the ports up)
//! and xtask (which names them on QEMU's command line): the whole-system
//! session's port, and one port per domain for that domain's own session.

use alloc::format;
use alloc::string::String;

/// The prefix of every gdb port's name: the boards take every port named so.
pub const GDB_PORT_PREFIX: &str = "org.lantern.gdb.";

/// The port of the whole-system gdb session (`-device
/// virtserialport,name=...`).
pub const GDB_PORT_NAME: &str = "org.lantern.gdb.0";

/// Ports given data queues (the device may offer 31; QEMU's `nr=` is the
/// port id): port 0 (virtconsole's, unused), the whole-system port 1, and
/// one per domain from port 2 — domains 1 to 6. Each costs its receive
/// buffers (32 KiB) whether QEMU has it or not.
pub const MAX_PORTS: u32 = 8;

/// Which session a gdb port carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortScope {
    /// The whole system ([`GDB_PORT_NAME`]).
    System,
    /// One domain's own session ([`domain_port_name`]).
    Domain(u16),
}

/// The port of domain `domid`'s own gdb session: `org.lantern.gdb.d<N>`.
pub fn domain_port_name(domid: u16) -> String {
    format!("{GDB_PORT_PREFIX}d{domid}")
}

/// The session a port named `name` carries; `None` for a name that is no
/// gdb port's (or a domain id that is not one: 0, leading zeros, too big).
pub fn port_scope(name: &str) -> Option<PortScope> {
    if name == GDB_PORT_NAME {
        return Some(PortScope::System);
    }
    let n = name.strip_prefix(GDB_PORT_PREFIX)?.strip_prefix('d')?;
    // One spelling per domain, so a name maps back to itself.
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().map(PortScope::Domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes_round_trip() {
        assert_eq!(port_scope(GDB_PORT_NAME), Some(PortScope::System));
        assert!(GDB_PORT_NAME.starts_with(GDB_PORT_PREFIX));
        assert_eq!(domain_port_name(1), "org.lantern.gdb.d1");
        for d in [1, 2, 17, u16::MAX] {
            assert_eq!(port_scope(&domain_port_name(d)), Some(PortScope::Domain(d)));
        }
        for bad in [
            "org.lantern.gdb.d0",
            "org.lantern.gdb.d01",
            "org.lantern.gdb.d",
            "org.lantern.gdb.d+1",
            "org.lantern.gdb.d65536",
            "org.lantern.gdb.1",
            "org.lantern.gdb.x1",
            "org.other.d1",
        ] {
            assert_eq!(port_scope(bad), None, "{bad}");
        }
    }
}
