//! The QEMU command line that boots a build on its board (machine, console,
//! gdb serial line, hypervisor image, boot module, command line), and its
//! shell rendering for `cargo xtask run --dry-run`.

use std::process::Command;

use crate::build::Artifacts;
use crate::opts::{GdbTransport, Opts};

use lantern_virtio_serial::{domain_port_name, GDB_PORT_NAME, MAX_PORTS};

/// The id of the host-socket chardev that carries the gdb stub's serial
/// line; each board attaches its gdb UART to it.
const GDB_CHARDEV: &str = "gdbser";

/// The id given to the virtio-serial device that carries the gdb ports.
const GDB_VIRTIO_SERIAL: &str = "lantern-gdb-vs";

/// Domains that get a gdb port of their own: the hypervisor gives data
/// queues to ports 0 to `MAX_PORTS - 1`; port 0 is virtconsole's and port 1
/// the whole system's, so domain N's is port `1 + N`.
pub const MAX_DOMAIN_GDB_PORTS: u16 = MAX_PORTS as u16 - 2;

/// TCP ports a run with the gdb line on `base` may listen on: the whole
/// system's, then one per domain (see [`domain_gdb_ports`]).
pub const GDB_PORT_SPAN: u16 = 1 + MAX_DOMAIN_GDB_PORTS;

/// The domains of a run whose gdb line is on TCP port `base` that get a
/// session of their own, with its TCP port: domain N on `base + N`, for
/// the domains in `domains` (ids from 1) up to [`MAX_DOMAIN_GDB_PORTS`].
pub fn domain_gdb_ports(base: u16, domains: &[(u16, String)]) -> Vec<(u16, u16)> {
    domains
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| (1..=MAX_DOMAIN_GDB_PORTS).contains(id))
        .filter_map(|id| Some((id, base.checked_add(id)?)))
        .collect()
}

/// Domain `domid`'s gdb session's TCP port when the whole system's is on
/// `base` (`cargo xtask gdb --domain N`).
pub fn domain_gdb_port(base: u16, domid: u16) -> Result<u16, String> {
    if !(1..=MAX_DOMAIN_GDB_PORTS).contains(&domid) {
        return Err(format!("domain {domid} has no gdb port of its own (domains 1 to {MAX_DOMAIN_GDB_PORTS} do)"));
    }
    base.checked_add(domid).ok_or_else(|| format!("gdb port {base} + domain {domid} is past 65535"))
}

/// The id of the chardev that carries the console when input comes from a
/// socket ([`Opts::console_socket`]).
const CONSOLE_CHARDEV: &str = "console";

/// The QEMU command that boots `a` (no `timeout` wrapper: the callers
/// enforce it).
pub fn qemu_command(opts: &Opts, a: &Artifacts) -> Command {
    let board = opts.board;
    let mut c = Command::new(board.qemu_binary());
    c.args(board.machine_args());
    c.arg("-m").arg(format!("{}M", a.ram_bytes >> 20));
    c.args(["-display", "none", "-monitor", "none", "-no-reboot"]);
    match (&opts.console_socket, &opts.serial_log) {
        // The console both ways through a socket QEMU waits on: its client
        // types the input and keeps the output.
        (Some(sock), _) => {
            c.arg("-chardev").arg(format!("socket,id={CONSOLE_CHARDEV},path={},server=on,wait=on", sock.display()));
            c.arg("-serial").arg(format!("chardev:{CONSOLE_CHARDEV}"))
        }
        (None, Some(f)) => c.arg("-serial").arg(format!("file:{}", f.display())),
        (None, None) => c.args(["-serial", "stdio"]),
    };
    if let Some(port) = opts.gdb_port {
        c.arg("-chardev")
            .arg(format!("socket,id={GDB_CHARDEV},host=127.0.0.1,port={port},server=on,wait=off,nodelay=on"));
        match opts.gdb_transport {
            // Both boards take it on their PCI(e) bus. A virtserialport (not
            // a virtconsole): lossless, and it reports the socket's client
            // connecting and leaving.
            GdbTransport::Virtio => {
                c.args([
                    "-device".to_string(),
                    format!("virtio-serial-pci,id={GDB_VIRTIO_SERIAL}"),
                    "-device".to_string(),
                    format!("virtserialport,bus={GDB_VIRTIO_SERIAL}.0,nr=1,chardev={GDB_CHARDEV},name={GDB_PORT_NAME}"),
                ]);
                // One more port per domain, for that domain's own session;
                // the port id (`nr`) is what the hypervisor sees.
                for (d, tcp) in domain_gdb_ports(port, &a.domains) {
                    let chardev = format!("{GDB_CHARDEV}-d{d}");
                    c.arg("-chardev")
                        .arg(format!("socket,id={chardev},host=127.0.0.1,port={tcp},server=on,wait=off,nodelay=on"));
                    c.arg("-device").arg(format!(
                        "virtserialport,bus={GDB_VIRTIO_SERIAL}.0,nr={},chardev={chardev},name={}",
                        1 + d,
                        domain_port_name(d)
                    ));
                }
                &mut c
            }
            GdbTransport::Uart => c.args(board.gdb_serial_args(GDB_CHARDEV)),
        };
    }
    if let Some(port) = opts.qemu_gdb_port {
        c.arg("-gdb").arg(format!("tcp:127.0.0.1:{port}"));
    }
    c.arg("-kernel").arg(&a.kernel);
    c.args(board.module_args(&a.module, a.module_len, a.ram_bytes));
    c.arg("-append").arg(&a.cmdline);
    c
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Renders a command as a shell line.
pub fn command_line(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    #[test]
    fn boots_each_board_on_its_own_machine() {
        let a = Artifacts {
            kernel: "/k".into(),
            module: "/m.cpio".into(),
            module_len: 1 << 20,
            ram_bytes: 192 << 20,
            cmdline: "domain=g".into(),
            domains: vec![(1, "g".into())],
        };
        let line = |arch: &str| {
            let o = Opts {
                gdb_port: Some(4000),
                gdb_transport: GdbTransport::Uart,
                ..Opts::on(crate::boards::by_name(arch).unwrap())
            };
            command_line(&qemu_command(&o, &a))
        };
        let common = "-display none -monitor none -no-reboot -serial stdio \
                      -chardev socket,id=gdbser,host=127.0.0.1,port=4000,server=on,wait=off,nodelay=on";
        assert_eq!(
            line("x86_64"),
            format!(
                "qemu-system-x86_64 -M q35,pit=off -cpu max -smp 1 -device isa-debug-exit,iobase=0xf4,iosize=0x04 -m 192M \
                 {common} -serial chardev:gdbser -kernel /k -initrd /m.cpio -append domain=g"
            )
        );
        assert_eq!(
            line("aarch64"),
            format!(
                "qemu-system-aarch64 -M virt,virtualization=on,gic-version=3 -cpu max -smp 1 \
                 -semihosting-config enable=on,target=native -m 192M {common} -device pci-serial,chardev=gdbser \
                 -kernel /k -device loader,file=/m.cpio,addr=0x4be00000,force-raw=on -append domain=g"
            )
        );
    }

    #[test]
    fn the_gdb_line_is_a_virtio_serial_port_by_default() {
        let a = Artifacts {
            kernel: "/k".into(),
            module: "/m.cpio".into(),
            module_len: 1 << 20,
            ram_bytes: 192 << 20,
            cmdline: "domain=g".into(),
            domains: vec![(1, "g".into())],
        };
        for b in crate::boards::all() {
            let o = Opts { gdb_port: Some(4000), ..Opts::on(*b) };
            let line = command_line(&qemu_command(&o, &a));
            assert!(
                line.contains(
                    "-device virtio-serial-pci,id=lantern-gdb-vs -device \
                     virtserialport,bus=lantern-gdb-vs.0,nr=1,chardev=gdbser,name=org.lantern.gdb.0"
                ),
                "{line}"
            );
            assert!(!line.contains("pci-serial,") && !line.contains("chardev:gdbser"), "{line}");
        }
    }

    #[test]
    fn each_domain_gets_a_gdb_port_of_its_own_on_p_plus_n() {
        let a = Artifacts {
            kernel: "/k".into(),
            module: "/m.cpio".into(),
            module_len: 1 << 20,
            ram_bytes: 192 << 20,
            cmdline: "domain=g".into(),
            domains: vec![(1, "guest64".into()), (2, "guest32".into())],
        };
        let o = Opts { gdb_port: Some(4000), ..Opts::on(crate::boards::default_board()) };
        let line = command_line(&qemu_command(&o, &a));
        for (d, tcp) in [(1, 4001), (2, 4002)] {
            assert!(
                line.contains(&format!(
                    "-chardev socket,id=gdbser-d{d},host=127.0.0.1,port={tcp},server=on,wait=off,nodelay=on \
                     -device virtserialport,bus=lantern-gdb-vs.0,nr={},chardev=gdbser-d{d},name=org.lantern.gdb.d{d}",
                    1 + d
                )),
                "{line}"
            );
        }
        assert!(!line.contains("gdbser-d3"), "{line}");
        // The UART line is the whole system's only.
        let uart = Opts { gdb_transport: GdbTransport::Uart, ..o };
        assert!(!command_line(&qemu_command(&uart, &a)).contains("gdbser-d"));
        // Ports stop where the hypervisor's data queues do.
        let many: Vec<(u16, String)> = (1..=10).map(|i| (i, format!("g{i}"))).collect();
        let ports = domain_gdb_ports(4000, &many);
        assert_eq!(ports.len(), usize::from(MAX_DOMAIN_GDB_PORTS));
        assert_eq!(ports.last(), Some(&(MAX_DOMAIN_GDB_PORTS, 4000 + MAX_DOMAIN_GDB_PORTS)));
        assert_eq!(domain_gdb_ports(65535, &many), [], "none past 65535");
        assert_eq!(domain_gdb_port(1234, 2), Ok(1236));
        assert!(domain_gdb_port(1234, 0).is_err() && domain_gdb_port(1234, MAX_DOMAIN_GDB_PORTS + 1).is_err());
        // 1 + N stays a port id the hypervisor gives queues to.
        assert!(u32::from(1 + MAX_DOMAIN_GDB_PORTS) < MAX_PORTS);
    }
}
