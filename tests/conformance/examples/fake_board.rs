//! A host-side stand-in for a board: serves the gdb stub on a TCP port over
//! a model of a few domains whose vCPUs are fakes with a real register
//! layout (x86_64 or aarch64), so the real `gdb-multiarch` and
//! `tools/gdb/lantern.py` can be exercised without QEMU:
//!
//! ```sh
//! cargo run -p lantern-conformance --example fake_board -- --arch x86_64 --port 4444 --seconds 60
//! gdb-multiarch -batch -ex 'set architecture i386:x86-64' -ex 'target remote 127.0.0.1:4444' -ex 'info threads'
//! ```
//!
//! Like a serial line, a closed TCP connection is not a hang-up for the
//! stub: the next connection simply continues the byte stream.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lantern_common::arch::{ArchVcpu, Clock, GuestMode, TimeSample, VcpuExit, VcpuInitContext};
use lantern_common::domain::{Domain, DomainConfig};
use lantern_common::guest_area;
use lantern_common::sched::Hypervisor;
use lantern_gdb::{GdbStub, Transport};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;

const RAM_PAGES: u64 = 256;

struct HostClock(Instant, AtomicU64);

impl Clock for HostClock {
    fn sample(&self) -> TimeSample {
        let ns = self.0.elapsed().as_nanos() as u64 + self.1.load(Ordering::Relaxed);
        TimeSample { system_time_ns: ns, tsc: ns * 2, tsc_to_system_mul: 0x8000_0000, tsc_shift: 0 }
    }
}

/// Identity-translating vCPU with a register file of the chosen arch.
struct FakeVcpu {
    xml: &'static str,
    regs: Vec<u8>,
}

impl ArchVcpu for FakeVcpu {
    fn run(&mut self, _d: &Domain) -> VcpuExit {
        VcpuExit::Preempted
    }
    fn complete_hypercall(&mut self, _ret: i64) {}
    fn inject_upcall(&mut self, _d: &Domain) {}
    fn translate(&self, _d: &Domain, gva: u64, _write: bool) -> XenResult<u64> {
        if gva < RAM_PAGES << 12 {
            Ok(gva)
        } else {
            Err(Errno::EFAULT)
        }
    }
    fn mode(&self) -> GuestMode {
        GuestMode::Long64
    }
    fn initialise(&mut self, _ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        Ok(())
    }
    fn initialise_arg_size(&self) -> usize {
        0
    }
    fn gdb_target_xml(&self) -> &'static str {
        self.xml
    }
    fn gdb_read_registers(&self, out: &mut [u8]) -> usize {
        out[..self.regs.len()].copy_from_slice(&self.regs);
        self.regs.len()
    }
    fn gdb_write_registers(&mut self, data: &[u8]) -> XenResult<()> {
        let n = data.len().min(self.regs.len());
        self.regs[..n].copy_from_slice(&data[..n]);
        Ok(())
    }
}

struct Tcp {
    listener: TcpListener,
    conn: Option<TcpStream>,
}

impl Transport for Tcp {
    fn read_byte(&mut self) -> Option<u8> {
        if self.conn.is_none() {
            if let Ok((s, _)) = self.listener.accept() {
                s.set_nonblocking(true).ok()?;
                s.set_nodelay(true).ok()?;
                self.conn = Some(s);
            }
        }
        let mut b = [0u8];
        match self.conn.as_mut()?.read(&mut b) {
            Ok(1) => Some(b[0]),
            Ok(_) => {
                self.conn = None;
                None
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }

    fn write_all(&mut self, data: &[u8]) {
        if let Some(c) = self.conn.as_mut() {
            c.set_nonblocking(false).ok();
            if c.write_all(data).is_err() {
                self.conn = None;
                return;
            }
            c.set_nonblocking(true).ok();
        }
    }
}

fn domain(
    id: u16,
    abi: &'static dyn GuestAbi,
    vcpus: u32,
    xml: &'static str,
    nregs: usize,
) -> (Arc<Domain>, Vec<Box<dyn ArchVcpu>>) {
    let clock = Arc::new(HostClock(Instant::now(), AtomicU64::new(1_000_000)));
    let d =
        Domain::new(DomainConfig { id, name: format!("fake{id}"), max_vcpus: vcpus, ram_pages: RAM_PAGES, abi, clock })
            .expect("domain");
    let arch = (0..vcpus)
        .map(|v| {
            let mut regs = vec![0u8; nregs];
            regs[0] = v as u8;
            Box::new(FakeVcpu { xml, regs }) as Box<dyn ArchVcpu>
        })
        .collect();
    (d, arch)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let arch = get("--arch").unwrap_or_else(|| "x86_64".into());
    let port: u16 = get("--port").and_then(|p| p.parse().ok()).unwrap_or(4444);
    let seconds: u64 = get("--seconds").and_then(|p| p.parse().ok()).unwrap_or(60);
    let vcpus: u32 = get("--vcpus").and_then(|p| p.parse().ok()).unwrap_or(4);
    let wait = args.iter().any(|a| a == "--wait-gdb");

    let (mut doms, mut archs) = (Vec::new(), Vec::new());
    let mut add = |(d, a): (Arc<Domain>, Vec<Box<dyn ArchVcpu>>)| {
        doms.push(d);
        archs.push(a);
    };
    if arch == "aarch64" {
        let (xml, n) = (lantern_arch_arm::gdb::TARGET_XML, lantern_arch_arm::gdb::REGS_SIZE);
        add(domain(1, &lantern_arch_arm::layout::ARM64, vcpus, xml, n));
    } else {
        let (xml, n) = (lantern_arch_x86::gdbregs::TARGET_XML, lantern_arch_x86::gdbregs::REGS_SIZE);
        add(domain(1, &lantern_arch_x86::layout::X86_64, vcpus, xml, n));
        add(domain(2, &lantern_arch_x86::layout::X86_32, 2, xml, n));
    }
    for d in &doms {
        d.map_shared_info(0x80).expect("shared_info");
        for v in 0..d.max_vcpus() {
            let vc = d.vcpu(v).expect("vcpu");
            guest_area::register_vcpu_info(d, None, vc, 0x90 + v as u64 / 64, (v as u64 % 64) * 64).expect("vcpu_info");
        }
        guest_area::register_runstate_area(d, None, d.vcpu(0).expect("v0"), 0xa0 << 12).expect("runstate");
        d.write_gpa(0x1000, b"lantern fake guest\0").expect("write");
    }
    let mut hv = Hypervisor::new(doms, archs);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    println!("fake board ({arch}): gdb stub on 127.0.0.1:{port} for {seconds} s");
    let mut io = Tcp { listener, conn: None };
    let mut stub = GdbStub::new();
    if wait {
        stub.wait_for_gdb(&hv);
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        stub.poll(&mut hv, &mut io);
        // "Run" guests: the scheduler would pick a vCPU here unless stopped.
        let _ = hv.pick_next();
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("fake board: done ({:?})", stub.stats());
}
