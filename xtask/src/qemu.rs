//! The QEMU command line that boots a build on its board (machine, console,
//! gdb serial line, hypervisor image, boot module, command line), and its
//! shell rendering for `cargo xtask run --dry-run`.

use std::process::Command;

use crate::build::Artifacts;
use crate::opts::{GdbTransport, Opts};

/// The id of the host-socket chardev that carries the gdb stub's serial
/// line; each board attaches its gdb UART to it.
const GDB_CHARDEV: &str = "gdbser";

/// The id given to the virtio-serial device that carries the gdb port.
const GDB_VIRTIO_SERIAL: &str = "lantern-gdb-vs";
/// The gdb port's name, by which the hypervisor finds it
/// (`lantern_virtio_serial::GDB_PORT_NAME`).
pub const GDB_PORT_NAME: &str = "org.lantern.gdb.0";

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
            GdbTransport::Virtio => c.args([
                "-device".to_string(),
                format!("virtio-serial-pci,id={GDB_VIRTIO_SERIAL}"),
                "-device".to_string(),
                format!("virtserialport,bus={GDB_VIRTIO_SERIAL}.0,nr=1,chardev={GDB_CHARDEV},name={GDB_PORT_NAME}"),
            ]),
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
}
