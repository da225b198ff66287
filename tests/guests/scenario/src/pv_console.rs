//! The PV console ring, driven the way a Xen frontend (Linux's hvc_xen)
//! drives it: found through `HVM_PARAM_CONSOLE_PFN` / `CONSOLE_EVTCHN`,
//! output produced into `out[]` then the port notified, input consumed from
//! `in[]`. The `console_ring` check writes one line through it; the
//! `console-echo` command-line word waits for a typed line and echoes it.

use core::mem::offset_of;
use core::sync::atomic::{fence, Ordering};

use xen_abi::nr::hvm_param;
use xen_abi::nr::xencons::{IN_RING_SIZE, OUT_RING_SIZE};
use xen_abi::public::XenconsInterface;

use crate::console::Buf;
use crate::context::{CheckResult, Ctx};
use crate::hypercall::{self, rc_name};
use crate::{Guest, PAGE_SIZE};

const IN: u64 = offset_of!(XenconsInterface, in_) as u64;
const OUT: u64 = offset_of!(XenconsInterface, out) as u64;
const IN_CONS: u64 = offset_of!(XenconsInterface, in_cons) as u64;
const IN_PROD: u64 = offset_of!(XenconsInterface, in_prod) as u64;
const OUT_CONS: u64 = offset_of!(XenconsInterface, out_cons) as u64;
const OUT_PROD: u64 = offset_of!(XenconsInterface, out_prod) as u64;

/// The domain's console ring: where it is mapped and its port.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    /// Guest-physical address of the ring page.
    pub gpa: u64,
    /// The console event channel.
    pub port: u32,
}

impl Ring {
    /// The ring the hypervisor published in the HVM params, or the failing
    /// result of the first `HVMOP_get_param` that failed.
    pub fn find(g: &dyn Guest) -> Result<Ring, i64> {
        let gfn = hypercall::hvm_get_param(g, hvm_param::CONSOLE_PFN)?;
        let port = hypercall::hvm_get_param(g, hvm_param::CONSOLE_EVTCHN)?;
        Ok(Ring { gpa: gfn * PAGE_SIZE, port: port as u32 })
    }

    fn index(&self, g: &dyn Guest, off: u64) -> u32 {
        g.read_u32(self.gpa + off)
    }

    fn set_index(&self, g: &dyn Guest, off: u64, v: u32) {
        g.write_u32(self.gpa + off, v);
    }

    /// Puts as much of `bytes` into `out[]` as fits and publishes it (bytes
    /// first, then the producer index); returns how much went in.
    pub fn write(&self, g: &dyn Guest, bytes: &[u8]) -> usize {
        let cons = self.index(g, OUT_CONS);
        let prod = self.index(g, OUT_PROD);
        let room = OUT_RING_SIZE.saturating_sub(prod.wrapping_sub(cons) as usize);
        let n = bytes.len().min(room);
        // The consumer index is read before its freed slots are reused.
        fence(Ordering::SeqCst);
        for (i, b) in bytes[..n].iter().enumerate() {
            let at = prod.wrapping_add(i as u32) as usize & (OUT_RING_SIZE - 1);
            g.write(self.gpa + OUT + at as u64, core::slice::from_ref(b));
        }
        fence(Ordering::Release);
        self.set_index(g, OUT_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Writes `bytes` whole (waiting for room) and notifies the backend;
    /// returns the notify's result.
    pub fn send(&self, g: &dyn Guest, mut bytes: &[u8]) -> i64 {
        loop {
            let n = self.write(g, bytes);
            bytes = &bytes[n..];
            let rc = hypercall::evtchn_send(g, self.port);
            if rc != 0 || bytes.is_empty() {
                return rc;
            }
            hypercall::sched_yield(g);
        }
    }

    /// Whether the backend has consumed everything produced.
    pub fn drained(&self, g: &dyn Guest) -> bool {
        self.index(g, OUT_CONS) == self.index(g, OUT_PROD)
    }

    /// Takes one byte from `in[]`, if the backend has put one there.
    pub fn read_byte(&self, g: &dyn Guest) -> Option<u8> {
        let cons = self.index(g, IN_CONS);
        let prod = self.index(g, IN_PROD);
        if cons == prod {
            return None;
        }
        // The producer index is read before the byte it covers.
        fence(Ordering::Acquire);
        let mut b = [0u8];
        g.read(self.gpa + IN + (cons as usize & (IN_RING_SIZE - 1)) as u64, &mut b);
        fence(Ordering::SeqCst);
        self.set_index(g, IN_CONS, cons.wrapping_add(1));
        Some(b[0])
    }
}

/// `console_ring`: the ring and port are published, a line written to
/// `out[]` and notified is consumed (the console shows it as
/// `(dN) CONSOLE RING ...`).
pub(crate) fn check(cx: &mut Ctx) {
    cx.run("console_ring", |cx| -> CheckResult {
        let ring = match Ring::find(cx.g) {
            Ok(r) => r,
            Err(rc) => return Err(reason!("HVMOP_get_param(CONSOLE_*) rc={rc} ({})", rc_name(rc))),
        };
        cx.say(format_args!("REPORT console_gfn={:#x} console_port={}", ring.gpa / PAGE_SIZE, ring.port));
        let mut line = Buf::<128>::new();
        let _ = core::fmt::write(&mut line, format_args!("CONSOLE RING hello from {} through out[]\n", cx.g.name()));
        let rc = ring.send(cx.g, line.as_bytes());
        ensure!(rc == 0, "EVTCHNOP_send on the console port rc={rc} ({})", rc_name(rc));
        ensure!(cx.wait_for(|| ring.drained(cx.g)), "the backend never consumed out[]");
        Ok(())
    });
}

/// The `console-echo` command-line word: say `CONSOLE ECHO waiting` through
/// the ring, read one line from `in[]` (up to CR or LF), and echo it back
/// as `CONSOLE ECHO got=LINE`. Waits as long as it takes: only runs that
/// type at the console ask for it.
pub(crate) fn echo(g: &dyn Guest) {
    let Ok(ring) = Ring::find(g) else {
        crate::console::line(&|b| g.console(b), format_args!("CONSOLE ECHO no console ring"));
        return;
    };
    ring.send(g, b"CONSOLE ECHO waiting\n");
    let mut got = Buf::<128>::new();
    loop {
        match ring.read_byte(g) {
            Some(b'\r' | b'\n') if !got.as_bytes().is_empty() => break,
            Some(b) if b.is_ascii_graphic() || b == b' ' => {
                let _ = core::fmt::Write::write_char(&mut got, b as char);
            }
            Some(_) => {}
            None => {
                hypercall::sched_yield(g);
            }
        }
    }
    let mut line = Buf::<160>::new();
    let _ = core::fmt::write(&mut line, format_args!("CONSOLE ECHO got={}\n", got.as_str()));
    ring.send(g, line.as_bytes());
}
