//! A host-side stand-in for a board: serves the gdb stub on a TCP port over
//! a model of one domain per guest ABI layout of the chosen arch (`--arch`,
//! any arch in the kit's list of layouts), whose vCPUs are fakes with that
//! arch's real register layout, so the real `gdb-multiarch` and
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use lantern_common::addr::Gfn;
use lantern_common::arch::ArchVcpu;
use lantern_common::domain::Domain;
use lantern_common::guest_area;
use lantern_common::sched::Hypervisor;
use lantern_conformance::{slot, write_phys, FakeVcpu, HostClock, Layout, TestDomain, LAYOUTS};
use lantern_gdb::{GdbStub, Transport};

/// RAM of each fake domain: room for the areas and the guest string below.
const RAM_PAGES: u64 = 256;

/// The debug transport: one gdb connection at a time on a non-blocking
/// listener, read a byte per call as the board's UART is; a connection that
/// ends is a hang-up, as the boards' virtio-serial line reports it.
struct Tcp {
    listener: TcpListener,
    conn: Option<TcpStream>,
    hung_up: bool,
}

impl Tcp {
    fn drop_conn(&mut self) {
        self.hung_up |= self.conn.take().is_some();
    }
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
            Err(e) if e.kind() == ErrorKind::WouldBlock => None,
            _ => {
                self.drop_conn();
                None
            }
        }
    }

    fn take_hangup(&mut self) -> bool {
        std::mem::take(&mut self.hung_up)
    }

    fn write_all(&mut self, data: &[u8]) {
        if let Some(c) = self.conn.as_mut() {
            c.set_nonblocking(false).ok();
            if c.write_all(data).is_err() {
                self.drop_conn();
                return;
            }
            c.set_nonblocking(true).ok();
        }
    }
}

/// Domain `id` in `layout`, its fake vCPUs identity-mapped over its RAM and
/// holding the arch's gdb register file, zero but for the vCPU id in byte 0.
fn domain(id: u16, layout: &Layout, vcpus: u32) -> (Arc<Domain>, Vec<Box<dyn ArchVcpu>>) {
    let clock = Arc::new(HostClock::new());
    let d = TestDomain::new(layout.abi).id(id).name(format!("fake{id}")).vcpus(vcpus).ram_pages(RAM_PAGES).clock(clock);
    let arch = (0..vcpus)
        .map(|v| {
            let mut regs = vec![0u8; layout.gdb_registers_size];
            regs[0] = v as u8;
            FakeVcpu::identity(RAM_PAGES).with_registers(layout.gdb_target_xml, regs).boxed()
        })
        .collect();
    (d.build(), arch)
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
    let layouts: Vec<&Layout> = LAYOUTS.iter().filter(|l| l.arch == arch).collect();
    if layouts.is_empty() {
        let mut known: Vec<&str> = LAYOUTS.iter().map(|l| l.arch).collect();
        known.dedup();
        eprintln!("fake board: no layout for --arch {arch} (known: {})", known.join(", "));
        std::process::exit(2);
    }
    for (i, layout) in layouts.into_iter().enumerate() {
        // The first domain gets --vcpus; further ones (x86_32 beside x86_64)
        // two, enough to show a second thread in them.
        add(domain(i as u16 + 1, layout, if i == 0 { vcpus } else { 2 }));
    }
    for d in &doms {
        d.map_shared_info(Gfn(0x80)).expect("shared_info");
        for v in 0..d.max_vcpus() {
            let vc = d.vcpu(v).expect("vcpu");
            guest_area::register_vcpu_info(d, None, vc, Gfn(0x90 + v as u64 / 64), (v as u64 % 64) * 64)
                .expect("vcpu_info");
        }
        guest_area::register_runstate_area(d, None, d.vcpu(0).expect("v0"), 0xa0 << 12).expect("runstate");
        write_phys(d, 0x1000, b"lantern fake guest\0").expect("write");
    }
    let mut hv = Hypervisor::new(doms.into_iter().zip(archs).map(|(d, a)| slot(d, a)).collect());
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    println!("fake board ({arch}): gdb stub on 127.0.0.1:{port} for {seconds} s");
    let mut io = Tcp { listener, conn: None, hung_up: false };
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
