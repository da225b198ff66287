//! Drives the gdb stub through an in-memory serial line with real packet
//! exchanges: attach, target description, threads, registers, memory, every
//! monitor command (text and JSON, in all three guest layouts), all-stop,
//! and robustness against a hostile or broken line.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use lantern_common::addr::{Gfn, Gpa, Gva};
use lantern_common::arch::ArchVcpu;
use lantern_common::domain::{Domain, Lifecycle};
use lantern_common::guest_memory::{GuestMemory, PhysMem};
use lantern_common::sched::Hypervisor;
use lantern_common::{guest_area, va_area};
use lantern_conformance::{layout, slot, write_phys, FakeVcpu, TestClock, TestDomain, RAM_PAGES};
use lantern_gdb::{frame_vec, GdbStub, Transport};
use serde_json::Value;
use xen_abi::layout::GuestAbi;

/// Guest-virtual addresses of the fake vCPUs: `VBASE + gpa` for RAM, so a
/// guest-physical address read as a virtual one is unmapped.
const VBASE: u64 = 0x4000_0000;
const FAKE_XML: &str = r#"<?xml version="1.0"?><target version="1.0"><architecture>fake</architecture><feature name="org.lantern.fake"><reg name="r0" bitsize="64"/><reg name="r1" bitsize="64"/></feature></target>"#;

/// Domain `id`, named `guest{id}`, on a test clock at 5 ms whose negative
/// `tsc_shift` checks that the monitor keeps the field's sign; its fake vCPUs
/// map RAM at `VBASE` and hold two registers, `0x1111_0000 + vCPU id` and
/// `0xdead_beef`.
fn guest(id: u16, abi: &'static dyn GuestAbi, vcpus: u32) -> (Arc<Domain>, Vec<Box<dyn ArchVcpu>>) {
    let clock = Arc::new(TestClock::starting_at(5_000_000).with_tsc_shift(-1));
    let d = TestDomain::new(abi).id(id).name(format!("guest{id}")).vcpus(vcpus).clock(clock).build();
    let arch = (0..vcpus)
        .map(|v| {
            let regs = [0x1111_0000 + v as u64, 0xdead_beef].iter().flat_map(|r| r.to_le_bytes()).collect();
            FakeVcpu::identity(RAM_PAGES)
                .mapped_at(VBASE)
                .with_registers(FAKE_XML, regs)
                .with_breakpoint(&[0xCC])
                .boxed()
        })
        .collect();
    (d, arch)
}

/// d1: x86_64, 4 vCPUs, vcpu_info of v0 registered at gfn 5 offset 0x40, a
/// runstate and time area, shared_info mapped at gfn 8. d2: x86_32, 2 vCPUs,
/// v1 registered at gfn 6 offset 0x20. d3: arm64, 2 vCPUs, v0 at gfn 7, on
/// FIFO event channels (v0's control block at gfn 10).
fn system() -> Hypervisor {
    let (d1, a1) = guest(1, layout("x86_64"), 4);
    d1.map_shared_info(Gfn(8)).unwrap();
    guest_area::register_vcpu_info(&d1, Some(0), d1.vcpu(0).unwrap(), Gfn(5), 0x40).unwrap();
    guest_area::register_runstate_area(&d1, Some(0), d1.vcpu(0).unwrap(), (9 << 12) | 0x100).unwrap();
    guest_area::register_time_area(&d1, Some(0), d1.vcpu(0).unwrap(), (9 << 12) | 0x200).unwrap();
    let (d2, a2) = guest(2, layout("x86_32"), 2);
    guest_area::register_vcpu_info(&d2, Some(1), d2.vcpu(1).unwrap(), Gfn(6), 0x20).unwrap();
    let (d3, a3) = guest(3, layout("arm64"), 2);
    guest_area::register_vcpu_info(&d3, Some(0), d3.vcpu(0).unwrap(), Gfn(7), 0).unwrap();
    lantern_common::evtchn::init_control(&d3, 10, 0, 0).unwrap();
    // A recognisable guest variable at gpa 0x3000 (gva VBASE + 0x3000).
    write_phys(&d1, 0x3000, b"lantern!").unwrap();
    Hypervisor::new(vec![slot(d1, a1), slot(d2, a2), slot(d3, a3)])
}

/// An in-memory line; `hangup` plays a virtio-serial port whose host side
/// closed once the bytes in `rx` have been read.
#[derive(Default)]
struct Line {
    rx: VecDeque<u8>,
    tx: Vec<u8>,
    hangup: bool,
}

impl Transport for Line {
    fn read_byte(&mut self) -> Option<u8> {
        self.rx.pop_front()
    }
    fn write_all(&mut self, data: &[u8]) {
        self.tx.extend_from_slice(data);
    }
    fn take_hangup(&mut self) -> bool {
        self.rx.is_empty() && std::mem::take(&mut self.hangup)
    }
}

/// gdb's side of the line: sends packets, parses replies (acks, RLE, `O`
/// console packets of qRcmd).
struct Client {
    hv: Hypervisor,
    stub: GdbStub,
    line: Line,
}

fn unrle(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'*' && i + 1 < body.len() {
            let n = body[i + 1] as usize - 29;
            let last = *out.last().unwrap();
            out.extend(std::iter::repeat_n(last, n));
            i += 2;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

fn hex(s: &[u8]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &[u8]) -> Vec<u8> {
    s.chunks(2).map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap()).collect()
}

impl Client {
    fn new(hv: Hypervisor) -> Self {
        Client { hv, stub: GdbStub::new(), line: Line::default() }
    }

    /// Sends bytes and polls like the board's loop until they are consumed
    /// (a poll takes a bounded number of bytes while the system runs).
    fn raw(&mut self, bytes: &[u8]) {
        self.line.rx.extend(bytes);
        loop {
            self.stub.poll(&mut self.hv, &mut self.line);
            if self.line.rx.is_empty() {
                break;
            }
        }
    }

    /// Everything the stub sent since the last call.
    fn take_tx(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.line.tx)
    }

    /// Splits output into acks and packet bodies (checksums verified).
    fn packets(tx: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut acks = Vec::new();
        let mut pkts = Vec::new();
        let mut i = 0;
        while i < tx.len() {
            match tx[i] {
                b'$' => {
                    let end = i + tx[i..].iter().position(|b| *b == b'#').expect("unterminated reply");
                    let body = &tx[i + 1..end];
                    let sum = u8::from_str_radix(std::str::from_utf8(&tx[end + 1..end + 3]).unwrap(), 16).unwrap();
                    assert_eq!(sum, body.iter().fold(0u8, |a, b| a.wrapping_add(*b)), "reply checksum");
                    pkts.push(unrle(body));
                    i = end + 3;
                }
                b => {
                    acks.push(b);
                    i += 1;
                }
            }
        }
        (acks, pkts)
    }

    /// Sends one packet; returns the last reply packet (after `O` packets).
    fn cmd(&mut self, body: &str) -> String {
        self.raw(&frame_vec(body.as_bytes()));
        let tx = self.take_tx();
        let (acks, pkts) = Self::packets(&tx);
        assert_eq!(acks, b"+", "ack for {body}: {}", String::from_utf8_lossy(&tx));
        String::from_utf8(pkts.last().cloned().unwrap_or_default()).unwrap()
    }

    /// `monitor LINE`: the console output.
    fn monitor(&mut self, line: &str) -> String {
        self.raw(&frame_vec(format!("qRcmd,{}", hex(line.as_bytes())).as_bytes()));
        let tx = self.take_tx();
        let (_, pkts) = Self::packets(&tx);
        assert_eq!(pkts.last().map(|p| p.as_slice()), Some(&b"OK"[..]), "monitor {line}");
        let mut s = Vec::new();
        for p in &pkts[..pkts.len() - 1] {
            assert_eq!(p[0], b'O');
            s.extend(unhex(&p[1..]));
        }
        String::from_utf8(s).unwrap()
    }

    fn json(&mut self, line: &str) -> Value {
        let out = self.monitor(&format!("{line} --json"));
        assert_eq!(out.matches('\n').count(), 1, "one line: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{line}: {e}: {out}"))
    }

    fn attach(&mut self) -> String {
        self.raw(b"+");
        self.cmd("qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;xmlRegisters=i386")
    }

    fn stopped(&self) -> bool {
        self.hv.stopped.load(Ordering::SeqCst)
    }
}

fn attached() -> Client {
    let mut c = Client::new(system());
    let r = c.attach();
    assert!(r.contains("PacketSize="), "{r}");
    assert!(r.contains("qXfer:features:read+"), "{r}");
    c
}

#[test]
fn attach_stops_everything_and_continue_detach_resume() {
    let mut c = Client::new(system());
    c.raw(b"");
    assert!(!c.stopped(), "runs before gdb attaches");
    c.attach();
    assert!(c.stopped(), "attach stops the system");
    assert!(c.hv.pick_next().is_none(), "scheduler runs nothing while stopped");
    let q = c.cmd("?");
    assert!(q.starts_with("T05thread:p01.0401"), "{q}");
    // continue: vCont;c replies only at the next stop.
    c.raw(&frame_vec(b"vCont;c"));
    assert_eq!(c.take_tx(), b"+");
    assert!(!c.stopped(), "continue resumes");
    // Ctrl-C stops again and reports SIGINT.
    c.raw(b"\x03");
    let (_, pkts) = Client::packets(&c.take_tx());
    assert!(String::from_utf8_lossy(&pkts[0]).starts_with("T02thread:p01.0401"), "{:?}", pkts);
    assert!(c.stopped());
    assert_eq!(c.cmd("D;1"), "OK");
    assert!(!c.stopped(), "detach resumes");
    assert!(!c.stub.attached());
}

#[test]
fn wait_for_gdb_holds_until_continue() {
    let mut c = Client::new(system());
    c.stub.wait_for_gdb(&c.hv);
    c.raw(b"");
    assert!(c.stopped());
    c.attach();
    c.cmd("?");
    assert!(c.stopped());
    c.raw(&frame_vec(b"c"));
    let tx = c.take_tx();
    assert!(!c.stopped(), "{} {}", String::from_utf8_lossy(&tx), c.stub.last_engine_error());
}

#[test]
fn target_xml_threads_and_extra_info() {
    let mut c = attached();
    let xml = c.cmd("qXfer:features:read:target.xml:0,ffb");
    assert_eq!(xml, format!("m{FAKE_XML}"));
    assert_eq!(c.cmd(&format!("qXfer:features:read:target.xml:{:x},ffb", FAKE_XML.len())), "l");
    let first = c.cmd("qfThreadInfo");
    assert_eq!(first, "mp01.0401,p01.0402,p01.0403,p01.0404,p01.0801,p01.0802,p01.0c01,p01.0c02");
    assert_eq!(c.cmd("qsThreadInfo"), "l");
    let info = unhex(c.cmd("qThreadExtraInfo,p1.401").as_bytes());
    assert_eq!(String::from_utf8(info).unwrap(), "d1v0 runnable x86_64");
    let info = unhex(c.cmd("qThreadExtraInfo,p1.402").as_bytes());
    assert_eq!(String::from_utf8(info).unwrap(), "d1v1 down x86_64");
    let info = unhex(c.cmd("qThreadExtraInfo,p1.802").as_bytes());
    assert_eq!(String::from_utf8(info).unwrap(), "d2v1 down x86_32");
    let info = unhex(c.cmd("qThreadExtraInfo,p1.c01").as_bytes());
    assert_eq!(String::from_utf8(info).unwrap(), "d3v0 runnable arm64");
    assert_eq!(c.cmd("Tp01.0c02"), "OK");
    assert!(c.cmd("Tp01.0c03").starts_with('E'));
}

#[test]
fn registers_read_write_per_thread() {
    let mut c = attached();
    assert_eq!(c.cmd("Hgp1.402"), "OK");
    assert_eq!(c.cmd("g"), format!("{}{}", hex(&0x1111_0001u64.to_le_bytes()), hex(&0xdead_beefu64.to_le_bytes())));
    let new = format!("{}{}", hex(&7u64.to_le_bytes()), hex(&9u64.to_le_bytes()));
    assert_eq!(c.cmd(&format!("G{new}")), "OK");
    assert_eq!(c.cmd("g"), new);
    assert_eq!(c.cmd("Hgp1.401"), "OK");
    assert!(c.cmd("g").starts_with(&hex(&0x1111_0000u64.to_le_bytes())));
    // A too-short register file is refused by the arch, not applied.
    assert!(c.cmd("G00").starts_with('E'));
}

#[test]
fn large_memory_reads_match_the_guest_and_follow_hg() {
    let mut c = attached();
    // Runs and varied bytes: what the engine would have run-length encoded.
    let pattern: Vec<u8> = (0..0x2000u32).map(|i| if i % 512 < 300 { 0 } else { (i * 7) as u8 }).collect();
    write_phys(&c.hv.domains().next().unwrap().clone(), 0x4000, &pattern).unwrap();
    c.cmd("Hgp1.401");
    let before = c.stub.stats().fast_reads;
    assert_eq!(c.cmd(&format!("m{:x},2000", VBASE + 0x4000)), hex(&pattern));
    assert_eq!(c.stub.stats().fast_reads, before + 1, "answered by the stub's own encoder");
    // gdb's own request size with 32 KiB packets (0x4002 bytes) too.
    assert_eq!(c.cmd(&format!("m{:x},4002", VBASE + 0x2000)).len(), 2 * 0x4002);
    assert_eq!(c.stub.stats().fast_reads, before + 2, "gdb's largest reads take the fast path");
    // The same read for d2's thread sees d2's memory, not d1's.
    c.cmd("Hgp1.801");
    assert_ne!(c.cmd(&format!("m{:x},2000", VBASE + 0x4000)), hex(&pattern));
    // Errors stay the engine's: an unmapped address.
    assert_eq!(c.cmd("m3000,8"), "E0e");
    // "Any" thread is the first one (d1v0).
    c.cmd("Hg0");
    assert_eq!(c.cmd(&format!("m{:x},8", VBASE + 0x3000)), hex(b"lantern!"));
}

#[test]
fn memory_virtual_physical_and_unmapped() {
    let mut c = attached();
    c.cmd("Hgp1.401");
    assert_eq!(c.cmd(&format!("m{:x},8", VBASE + 0x3000)), hex(b"lantern!"));
    // Unmapped (untranslatable) address: an error, never other memory.
    assert_eq!(c.cmd("m3000,8"), "E0e");
    assert_eq!(c.cmd(&format!("m{:x},8", VBASE + (RAM_PAGES << 12))), "E0e");
    // A read across a page boundary into an unmapped page: the mapped part.
    let last = VBASE + (RAM_PAGES << 12) - 4;
    assert_eq!(c.cmd(&format!("m{last:x},8")).len(), 8);
    // Across a mapped boundary: whole.
    assert_eq!(c.cmd(&format!("m{:x},2000", VBASE + 0x2800)).len(), 0x4000);
    // Writes land in the guest and are read back.
    assert_eq!(c.cmd(&format!("M{:x},4:01020304", VBASE + 0x3ffe)), "OK");
    assert_eq!(c.cmd(&format!("m{:x},4", VBASE + 0x3ffe)), "01020304");
    assert!(c.cmd("M3000,4:01020304").starts_with('E'));
    // monitor phys on: the same variable by guest-physical address.
    assert!(c.monitor("phys on").contains("guest-physical"));
    assert_eq!(c.cmd("m3000,8"), hex(b"lantern!"));
    assert_eq!(c.cmd(&format!("m{:x},1", RAM_PAGES << 12)), "E0e");
    assert_eq!(c.json("phys off")["addressing"], "virtual");
    assert_eq!(c.cmd("m3000,8"), "E0e");
}

#[test]
fn monitor_domains_vcpus_and_help() {
    let mut c = attached();
    assert!(c.monitor("help").contains("vcpu-info dNvM|dN|all"));
    assert!(c.json("help")["commands"].as_array().unwrap().len() >= 11);
    let text = c.monitor("domains");
    assert!(text.contains("guest2") && text.contains("x86_32"), "{text}");
    let j = c.json("domains");
    let doms = j["domains"].as_array().unwrap();
    assert_eq!(doms.len(), 3);
    assert_eq!(doms[0]["layout"], "x86_64");
    assert_eq!(doms[0]["shared_info_gfn"], 8);
    assert_eq!(doms[1]["shared_info_gfn"], Value::Null);
    assert_eq!(doms[2]["layout"], "arm64");
    assert_eq!(doms[0]["vcpus"], 4);
    let j = c.json("vcpus d1");
    let vs = j["vcpus"].as_array().unwrap();
    assert_eq!(vs.len(), 4);
    assert_eq!(vs[0]["tid"], 0x401);
    assert_eq!(vs[0]["state"], "runnable");
    assert_eq!(vs[1]["state"], "down");
    assert_eq!(vs[0]["vcpu_info"], "guest");
    assert_eq!(vs[1]["vcpu_info"], "shared_info");
    assert_eq!(c.json("vcpus")["vcpus"].as_array().unwrap().len(), 8);
    assert!(c.monitor("vcpus d3").contains("d3v1"));
    assert!(c.monitor("vcpus d9").starts_with("error: no domain d9"));
    assert_eq!(c.json("vcpus d9")["error"], "no domain d9");
    assert!(c.monitor("frobnicate").contains("unknown command"));
}

#[test]
fn monitor_vcpu_info_in_every_layout() {
    let mut c = attached();
    // x86_64: registered on a guest page; pending_sel all ones (8 bytes).
    let j = c.json("vcpu-info d1v0");
    let v = &j["vcpus"][0];
    assert_eq!(v["layout"], "x86_64");
    assert_eq!(v["placement"], "guest");
    assert_eq!(v["gfn"], 5);
    assert_eq!(v["offset"], 0x40);
    assert_eq!(v["size"], 64);
    assert_eq!(v["fields"]["evtchn_pending_sel"], u64::MAX);
    assert_eq!(v["fields"]["evtchn_upcall_pending"], 1);
    assert_eq!(v["fields"]["time.tsc_shift"], -1);
    assert_eq!(v["fields"]["time.system_time"], 5_000_000);
    // x86_64 v1: still in its shared_info slot 1.
    let v = &c.json("vcpu-info d1v1")["vcpus"][0];
    assert_eq!(v["placement"], "shared_info");
    assert_eq!(v["slot"], 1);
    assert_eq!(v["gfn"], 8);
    assert_eq!(v["offset"], 64);
    // x86_32 compat: pending_sel is 4 bytes.
    let v = &c.json("vcpu-info d2v1")["vcpus"][0];
    assert_eq!(v["layout"], "x86_32");
    assert_eq!(v["fields"]["evtchn_pending_sel"], 0xffff_ffffu64);
    assert_eq!(v["gfn"], 6);
    // arm64: 48 bytes, no upcall mask; vCPU 1 beyond the legacy limit → dummy.
    let v = &c.json("vcpu-info d3v0")["vcpus"][0];
    assert_eq!(v["size"], 48);
    assert!(v["fields"].get("evtchn_upcall_mask").is_none());
    assert_eq!(v["fields"]["evtchn_pending_sel"], u64::MAX);
    assert_eq!(c.json("vcpu-info d3v1")["vcpus"][0]["placement"], "dummy");
    assert_eq!(c.json("vcpu-info d1")["vcpus"].as_array().unwrap().len(), 4);
    assert_eq!(c.json("vcpu-info all")["vcpus"].as_array().unwrap().len(), 8);
    let text = c.monitor("vcpu-info d1v0");
    assert!(text.contains("d1v0 x86_64 runnable: vcpu_info at gfn 0x5 offset 0x40"), "{text}");
    assert!(text.contains("evtchn_pending_sel=0xffffffffffffffff"), "{text}");
    assert!(text.contains("time: version="), "{text}");
    assert!(c.monitor("vcpu-info d1v1").contains("shared_info slot 1 (gfn 0x8 offset 0x40)"));
    assert!(c.monitor("vcpu-info d3v1").contains("dummy"));
    assert!(c.monitor("vcpu-info d1v9").starts_with("error"));
}

#[test]
fn monitor_runstate_time_shared_info_areas() {
    let mut c = attached();
    let j = c.json("runstate d1v0");
    assert_eq!(j["hypervisor"]["state"], "runnable");
    assert_eq!(j["area"]["gfn"], 9);
    assert_eq!(j["area"]["offset"], 0x100);
    assert_eq!(j["area"]["fields"]["state"], xen_abi::nr::runstate::RUNNABLE);
    assert_eq!(j["area"]["fields"]["state_entry_time"], j["hypervisor"]["state_entry_time"]);
    assert_eq!(c.json("runstate d1v1")["area"], Value::Null);
    assert!(c.monitor("runstate d1v0").contains("registered area at gfn 0x9 offset 0x100"));
    assert!(c.monitor("runstate d1").starts_with("error"));

    let j = c.json("time d1v0");
    assert_eq!(j["vcpu_info_time"]["system_time"], 5_000_000);
    assert_eq!(j["vcpu_info_time"]["tsc_to_system_mul"], 0x5555_5555);
    assert_eq!(j["area"]["gfn"], 9);
    assert_eq!(j["area"]["fields"]["tsc_timestamp"], 15_000_000);
    assert_eq!(j["area"]["fields"]["version"].as_u64().unwrap() % 2, 0);
    assert!(c.monitor("time d1v0").contains("registered time area at gfn 0x9 offset 0x200"));

    let j = c.json("shared-info d1");
    assert_eq!(j["gfn"], 8);
    assert!(j["fields"].get("wc_version").is_some());
    assert!(j["fields"].get("vcpu_info[0].evtchn_pending_sel").is_none());
    assert!(j["fields"]["evtchn_pending"].is_array());
    assert_eq!(c.json("shared-info d2")["gfn"], Value::Null);
    assert!(c.monitor("shared-info d2").contains("not mapped by the guest"));
    assert_eq!(j["evtchn_abi"], "2-level");
    assert!(c.monitor("shared-info d1").contains("event channels 2-level"));
    assert_eq!(c.json("shared-info d3")["evtchn_abi"], "fifo");
    assert!(c.monitor("shared-info d3").contains("event channels fifo"));

    let j = c.json("areas d1");
    let areas = j["areas"].as_array().unwrap();
    // 4 vcpu_info placements + runstate + time of v0.
    assert_eq!(areas.len(), 6);
    let vi = &areas[0];
    assert_eq!(
        (vi["kind"].as_str(), vi["placement"].as_str(), vi["gfn"].as_u64()),
        (Some("vcpu_info"), Some("guest"), Some(5))
    );
    // p2m allocation + the area's general reference; one writable reference.
    assert_eq!(vi["refs"], 2);
    assert_eq!(vi["writable_refs"], 1);
    // runstate and time share gfn 9: two areas → 3 general, 2 writable.
    assert_eq!(areas[1]["kind"], "runstate");
    assert_eq!(areas[1]["refs"], 3);
    assert_eq!(areas[2]["writable_refs"], 2);
    assert_eq!(c.json("areas")["areas"].as_array().unwrap().len(), 10);
    assert!(c.monitor("areas d2").contains("d2v1     vcpu_info guest        0x6"));
}

#[test]
fn monitor_pause_unpause() {
    let mut c = attached();
    assert_eq!(c.json("pause d2")["pause_count"], 1);
    assert_eq!(c.hv.domain(2).unwrap().pause_count(), 1);
    assert!(c.monitor("unpause d2").contains("pause count 0"));
    assert!(c.monitor("unpause d2").starts_with("error: d2 is not paused"));
    assert!(c.monitor("pause d1v0").starts_with("error"));
}

#[test]
fn monitor_destroy_and_restart_leave_a_request_for_the_loop() {
    use lantern_common::sched::DomainRequest;
    let mut c = attached();
    let text = c.monitor("destroy d2");
    assert!(text.starts_with("d2: destroy requested"), "{text}");
    assert_eq!(c.hv.debugger.domain_requests, [(2, DomainRequest::Destroy)]);
    assert_eq!(c.hv.domain(2).unwrap().lifecycle(), Lifecycle::Running, "the stub itself tears nothing down");
    // Built by hand here, so there is no configuration to restart from.
    assert!(c.monitor("restart d1").starts_with("error: d1 was built without a configuration"));
    c.hv.slots_mut()[0].spec = Some(lantern_common::boot_config::DomainSpec::new("guest"));
    assert_eq!(c.json("restart d1")["requested"], "restart");
    assert_eq!(c.hv.debugger.domain_requests, [(2, DomainRequest::Destroy), (1, DomainRequest::Restart)]);
    assert!(c.monitor("destroy d9").starts_with("error"));
    assert!(c.monitor("destroy").starts_with("error"));
    assert_eq!(c.json("domains")["domains"][0]["restarts"], 0);
}

/// A domain's own session reads about every domain but acts on its own
/// alone: from d2's line, pausing, destroying or restarting d1 is refused
/// and leaves d1 as it was (found by the packet review: any session could
/// end any domain).
#[test]
fn a_domain_session_acts_on_its_own_domain_alone() {
    use lantern_common::sched::DomainRequest;
    let mut c = Client::new(system());
    c.stub = GdbStub::for_domain(2);
    c.attach();
    assert!(c.monitor("domains").contains("d1"), "it still reads about d1");
    for cmd in ["pause d1", "unpause d1", "destroy d1", "restart d1"] {
        let text = c.monitor(cmd);
        assert!(text.starts_with("error: this session is d2's"), "{cmd}: {text}");
    }
    assert_eq!(c.hv.domain(1).unwrap().pause_count(), 0);
    assert!(c.hv.debugger.domain_requests.is_empty());
    // Its own domain it may pause and destroy.
    assert!(c.monitor("pause d2").contains("pause count 1"), "own domain");
    assert!(c.monitor("unpause d2").contains("pause count 0"));
    assert!(c.monitor("destroy d2").starts_with("d2: destroy requested"));
    assert_eq!(c.hv.debugger.domain_requests, [(2, DomainRequest::Destroy)]);
}

/// A `-` for a stop reply resends the stop reply, not the packet before it
/// (stops were not recorded as the last packet sent; found by the packet
/// review).
#[test]
fn a_nack_after_a_stop_reply_resends_the_stop() {
    let mut c = attached();
    c.raw(&frame_vec(b"vCont;c"));
    c.take_tx();
    c.hv.debugger.exec.record(1, 0, lantern_common::debug::StopReason::SwBreak);
    c.raw(b"");
    let stop = c.take_tx();
    let (_, pkts) = Client::packets(&stop);
    assert!(pkts.last().is_some_and(|p| p.starts_with(b"T05")), "{:?}", String::from_utf8_lossy(&stop));
    c.raw(b"-");
    assert_eq!(c.take_tx(), stop, "the stop reply again");
}

#[test]
fn bad_checksum_garbage_truncated_oversized_keep_running() {
    let mut c = Client::new(system());
    // Bad checksum: nacked, nothing else.
    c.raw(b"$qSupported#00");
    assert_eq!(c.take_tx(), b"-");
    assert!(!c.stopped(), "a bad packet must not stop the system");
    // Garbage bytes (no 0x03 among them: that is Ctrl-C).
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 13) as u8).filter(|b| *b != 3 && *b != b'$').collect();
    c.raw(&garbage);
    assert!(!c.stopped());
    // A stray Ctrl-C with no session attached is ignored.
    c.raw(b"\x03");
    assert!(!c.stopped());
    // Oversized packet: dropped and nacked.
    let mut big = b"$".to_vec();
    big.extend(std::iter::repeat_n(b'A', 100_000));
    big.extend(b"#00");
    c.take_tx();
    c.raw(&big);
    assert_eq!(c.take_tx(), b"-");
    assert!(!c.stopped());
    // A packet cut off mid-way, then a new gdb attaches.
    c.raw(b"+$qSupported:multipro");
    let r = c.attach();
    assert!(r.contains("PacketSize"), "{r}");
    assert!(c.stopped());
    assert_eq!(
        c.cmd("qfThreadInfo").len(),
        "mp01.0401,p01.0402,p01.0403,p01.0404,p01.0801,p01.0802,p01.0c01,p01.0c02".len()
    );
    assert!(c.stub.stats().frames.truncated >= 1);
    assert!(c.stub.stats().frames.oversized >= 1);
}

#[test]
fn malformed_commands_get_errors_and_the_session_survives() {
    let mut c = attached();
    c.cmd("Hgp1.402");
    // Valid framing, nonsense contents the protocol engine cannot parse.
    assert_eq!(c.cmd("mzz,qq"), "E01");
    assert_eq!(c.cmd(&format!("m{},8", "f".repeat(40))), "E01");
    assert_eq!(c.cmd("Z0,zz,1"), "E01");
    // The rebuilt engine kept the session: thread ids still multiprocess,
    // Hg still selects d1v1.
    assert!(c.cmd("g").starts_with(&hex(&0x1111_0001u64.to_le_bytes())));
    assert!(c.cmd("qfThreadInfo").starts_with("mp01.0401"));
    assert!(c.stopped());
    assert_eq!(c.stub.stats().engine_errors, 3);
    // Unknown packets get the empty reply.
    assert_eq!(c.cmd("vFrobnicate"), "");
    // A nack makes the stub resend its last reply.
    c.raw(b"-");
    let (_, p) = Client::packets(&c.take_tx());
    assert_eq!(p, vec![Vec::<u8>::new()]);
}

#[test]
fn gdb_vanishes_while_running_then_new_session() {
    let mut c = attached();
    c.raw(&frame_vec(b"c"));
    assert!(!c.stopped());
    // gdb died mid-packet; a new one connects while the system runs.
    c.raw(b"$m4000");
    c.take_tx();
    assert!(!c.stopped());
    c.attach();
    assert!(c.stopped());
    assert!(c.cmd("?").starts_with("T05"));
    assert_eq!(c.stub.stats().sessions, 2);
    // A `?` while running (gdb reconnecting without qSupported) also stops.
    c.cmd("D");
    assert!(!c.stopped());
    assert!(c.cmd("?").starts_with("T05"));
    assert!(c.stopped());
}

#[test]
fn a_hang_up_ends_the_session_and_everything_runs() {
    // A client that sends qSupported and closes: its packet is answered
    // first, then the close ends the session.
    let mut c = Client::new(system());
    c.line.rx.extend(frame_vec(b"qSupported:swbreak+"));
    c.line.hangup = true;
    c.raw(b"");
    assert!(!c.stopped(), "the system runs after the client went away");
    assert!(!c.stub.holding() && !c.stub.attached());
    assert!(c.hv.pick_next().is_some(), "the scheduler runs vCPUs again");
    assert_eq!((c.stub.stats().sessions, c.stub.stats().hangups), (1, 1));
    // Stopped by a real session, half-way through a packet: the same.
    c.take_tx();
    c.attach();
    assert!(c.cmd("?").starts_with("T05"));
    assert!(c.stopped());
    c.line.rx.extend(b"$m4000,");
    c.line.hangup = true;
    c.raw(b"");
    assert!(!c.stopped() && !c.stub.holding());
    // The next client starts cleanly (the cut-off packet is forgotten).
    c.take_tx();
    c.attach();
    assert!(c.stopped());
    assert!(c.cmd("?").starts_with("T05"));
    assert_eq!(c.stub.stats().sessions, 3);
}

#[test]
fn a_hang_up_without_a_session_keeps_wait_for_gdb_holding() {
    let mut c = Client::new(system());
    c.stub.wait_for_gdb(&c.hv);
    c.line.hangup = true;
    c.raw(b"");
    assert!(c.stopped(), "no session ended: --wait-gdb still holds");
    assert_eq!(c.stub.stats().hangups, 1);
}

#[test]
fn crash_while_running_is_reported_as_a_stop() {
    let mut c = attached();
    c.raw(&frame_vec(b"c"));
    assert!(!c.stopped());
    c.hv.domain(2).unwrap().crash();
    c.raw(b"");
    let (_, p) = Client::packets(&c.take_tx());
    assert!(String::from_utf8_lossy(&p[0]).starts_with("T0bthread:p01.0801"), "{p:?}");
    assert!(c.stopped());
}

/// Host-side cost of the stub: prints numbers (run with --nocapture).
#[test]
fn measure_vcpu_info_all_64() {
    let (d, a) = guest(1, layout("x86_64"), 64);
    for v in 0..64 {
        guest_area::register_vcpu_info(&d, None, d.vcpu(v).unwrap(), Gfn(10 + v as u64 / 64), (v as u64 % 64) * 64)
            .unwrap();
    }
    let mut c = Client::new(Hypervisor::new(vec![slot(d, a)]));
    c.attach();
    let cmd = frame_vec(format!("qRcmd,{}", hex(b"vcpu-info d1 --json")).as_bytes());
    let n = 50;
    let t = Instant::now();
    let mut wire = 0;
    for _ in 0..n {
        c.raw(&cmd);
        wire = c.take_tx().len();
    }
    let per = t.elapsed() / n;
    let j = c.json("vcpu-info d1");
    assert_eq!(j["vcpus"].as_array().unwrap().len(), 64);
    let payload = c.monitor("vcpu-info d1 --json").len();
    println!(
        "vcpu-info d1 --json (64 vCPUs): {payload} bytes JSON, {wire} bytes on the wire, {per:?} host time per request; \
         at 115200 baud (11.5 KB/s) {:.2} s, at 150 KB/s {:.2} s",
        wire as f64 / 11520.0,
        wire as f64 / 150_000.0
    );
    let t = Instant::now();
    let m = frame_vec(format!("m{:x},2000", VBASE).as_bytes());
    c.cmd("Hgp1.401");
    for _ in 0..n {
        c.raw(&m);
        c.take_tx();
    }
    println!("m 8 KiB: {:?} host time per request", t.elapsed() / n);
}

mod fuzz {
    //! Random byte streams on the serial line: noise, real packets (valid or
    //! with broken checksums), acks, nacks and Ctrl-C in any order. The stub
    //! must never panic, and a gdb that then attaches gets a working session
    //! whose detach resumes the system.

    use super::*;
    use proptest::prelude::*;

    /// Packets gdb really sends, plus a few it never would.
    const BODIES: &[&str] = &[
        "qSupported:multiprocess+;xmlRegisters=i386",
        "?",
        "qfThreadInfo",
        "qsThreadInfo",
        "Hgp1.402",
        "Hc-1",
        "g",
        "m4000,40",
        "mffffffffffff0000,10",
        "M4000,4:deadbeef",
        "qXfer:features:read:target.xml:0,ffb",
        "qRcmd,646f6d61696e73",
        "qRcmd,766370752d696e666f206431763020",
        "c",
        "vCont;c",
        "vCont?",
        "D",
        "k",
        "T1",
        "qC",
        "QStartNoAckMode",
        "mzz,qq",
        "X4000,2:ab",
        "Z0,4000,1",
    ];

    fn chunk() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::sample::select(BODIES).prop_map(|b| frame_vec(b.as_bytes())),
            2 => prop::sample::select(BODIES).prop_map(|b| {
                // Broken checksum or cut short.
                let mut f = frame_vec(b.as_bytes());
                let n = f.len();
                if n.is_multiple_of(2) { f[n - 1] ^= 1; } else { f.truncate(n / 2); }
                f
            }),
            2 => prop::collection::vec(any::<u8>(), 1..64),
            1 => prop::sample::select(vec![b"+".to_vec(), b"-".to_vec(), b"\x03".to_vec(), b"$".to_vec(), b"#".to_vec()]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

        #[test]
        fn any_line_noise_then_a_working_session(chunks in prop::collection::vec(chunk(), 1..24)) {
            let mut c = Client::new(system());
            for ch in &chunks {
                c.raw(ch);
            }
            // A new gdb connects; its first byte may complete (and fail) a
            // frame the noise left open, which the stub answers with `-` —
            // gdb just retransmits. Then the full handshake must work.
            c.raw(b"+");
            c.take_tx();
            let r = c.attach();
            prop_assert!(r.contains("PacketSize="), "{}", r);
            prop_assert!(c.stopped());
            prop_assert!(c.cmd("qfThreadInfo").starts_with("mp01.0401"));
            c.cmd("Hgp1.401");
            prop_assert!(!c.cmd("g").is_empty());
            prop_assert!(c.cmd("?").starts_with("T05"));
            prop_assert!(c.cmd("m4000,10").len() == 32 || c.cmd("m4000,10").starts_with('E'));
            prop_assert_eq!(c.cmd("D"), "OK");
            prop_assert!(!c.stopped(), "detach resumes the system");
        }
    }
}

/// Every layout of `LAYOUTS` through the stub, with its own arch's register
/// file: the target description gdb reads back is the arch's (in chunks, as
/// gdb reads it), `g` returns a register file of the arch's size and `G`
/// writes one back, and the monitor decodes the domain's areas in the
/// layout. A new port's layout line is enough to run it here.
#[test]
fn every_layout_serves_its_arch_through_the_stub() {
    for l in lantern_conformance::LAYOUTS {
        let d = TestDomain::new(l.abi).id(1).vcpus(2).build();
        guest_area::register_vcpu_info(&d, None, d.vcpu(1).unwrap(), Gfn(5), 0).unwrap();
        let regs: Vec<u8> = (0..l.gdb_registers_size).map(|i| i as u8).collect();
        let arch = (0..2)
            .map(|_| FakeVcpu::identity(RAM_PAGES).with_registers(l.gdb_target_xml, regs.clone()).boxed())
            .collect();
        let mut c = Client::new(Hypervisor::new(vec![slot(d, arch)]));
        c.attach();
        let mut xml = String::new();
        loop {
            let part = c.cmd(&format!("qXfer:features:read:target.xml:{:x},200", xml.len()));
            xml.push_str(&part[1..]);
            if part.starts_with('l') {
                break;
            }
            assert!(part.starts_with('m'), "{}: {part}", l.abi.name());
        }
        assert_eq!(xml, l.gdb_target_xml, "{}: target description", l.abi.name());
        assert_eq!(c.cmd("Hgp1.402"), "OK");
        assert_eq!(c.cmd("g"), hex(&regs), "{}: register file", l.abi.name());
        let new: Vec<u8> = regs.iter().map(|b| b ^ 0xFF).collect();
        assert_eq!(c.cmd(&format!("G{}", hex(&new))), "OK");
        assert_eq!(c.cmd("g"), hex(&new));
        let text = c.monitor("vcpu-info d1v1");
        assert!(text.contains(l.abi.name()), "{}: {text}", l.abi.name());
        assert!(text.contains("vcpu_info at gfn 0x5 offset 0x0"), "{}: {text}", l.abi.name());
    }
}

#[test]
fn monitor_grants_lists_tables_pins_and_maps() {
    use lantern_common::grant_table;
    use xen_abi::nr::{gntmap, gtf};
    let (d1, a1) = guest(1, layout("x86_64"), 1);
    let (d2, a2) = guest(2, layout("x86_32"), 1);
    grant_table::map_frame(&d1, 0, Gfn(20)).unwrap();
    // Entry 7: d1's gfn 10 granted to d2 (flags, domid, frame).
    let entry = [gtf::PERMIT_ACCESS.to_le_bytes(), 2u16.to_le_bytes()].concat();
    write_phys(&d1, (20 << 12) + 7 * 8, &[entry, 10u32.to_le_bytes().to_vec()].concat()).unwrap();
    let dir = vec![d1.clone()];
    let h = grant_table::map_grant_ref(&d2, &dir, 30 << 12, gntmap::HOST_MAP, 7, 1).unwrap();
    let mut c = Client::new(Hypervisor::new(vec![slot(d1.clone(), a1), slot(d2.clone(), a2)]));
    c.attach();
    let j = c.json("grants");
    let g = j["grants"].as_array().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!((g[0]["d"].as_u64(), g[0]["version"].as_u64()), (Some(1), Some(1)));
    assert_eq!(g[0]["frames"][0], 20);
    let e = &g[0]["entries"][0];
    assert_eq!((e["ref"].as_u64(), e["domid"].as_u64(), e["frame"].as_u64()), (Some(7), Some(2), Some(10)));
    assert_eq!(e["flags"].as_u64(), Some((gtf::PERMIT_ACCESS | gtf::READING | gtf::WRITING) as u64));
    let a = &g[0]["active"][0];
    assert_eq!((a["ref"].as_u64(), a["domid"].as_u64(), a["writers"].as_u64()), (Some(7), Some(2), Some(1)));
    let m = &g[1]["maps"][0];
    assert_eq!((m["handle"].as_u64(), m["granter"].as_u64(), m["gfn"].as_u64()), (Some(h as u64), Some(1), Some(30)));
    assert_eq!(m["readonly"], false);
    assert_eq!(m["writable_refs"], 1);
    assert_eq!(g[1]["frames"].as_array().unwrap().len(), 0, "d2 never used its table");
    let text = c.monitor("grants d2");
    assert!(text.contains("map handle 0 of d1 ref 7 at gfn 0x1e rw"), "{text}");
    assert!(text.contains("0 entries in use, 0 pinned, 1 maps held"), "{text}");
    assert!(c.monitor("grants d9").starts_with("error"));
    // After the unmap nothing is left mapped or pinned.
    grant_table::unmap_grant_ref(&d2, &dir, 30 << 12, 0, h).unwrap();
    let j = c.json("grants");
    assert_eq!(j["grants"][0]["active"].as_array().unwrap().len(), 0);
    assert_eq!(j["grants"][1]["maps"].as_array().unwrap().len(), 0);
    assert_eq!(j["grants"][0]["entries"][0]["flags"].as_u64(), Some(gtf::PERMIT_ACCESS as u64));
}

#[test]
fn monitor_shows_areas_registered_by_guest_virtual_address() {
    let (d, a) = guest(1, layout("x86_64"), 2);
    let va = VBASE + (10 << 12) + 0x40;
    let (v0, v1) = (d.vcpu(0).unwrap(), d.vcpu(1).unwrap());
    va_area::register_runstate(&d, v1, Gva(va), &*a[1]);
    va_area::register_time(&d, v1, Gva(va + 0x100), &*a[1]);
    // Below VBASE nothing translates.
    va_area::register_runstate(&d, v0, Gva(0x10), &*a[0]);
    let mut c = Client::new(Hypervisor::new(vec![slot(d, a)]));
    c.attach();

    let j = c.json("runstate d1v1");
    assert_eq!(j["area"], Value::Null, "no physical area");
    assert_eq!(j["area_va"]["va"], va);
    assert_eq!(j["area_va"]["gfn"], 10);
    assert_eq!(j["area_va"]["fields"]["state"], j["hypervisor"]["state_num"]);
    assert!(c.monitor("runstate d1v1").contains(&format!("registered by guest-virtual address {va:#x} (now gfn 0xa)")));
    let j = c.json("runstate d1v0");
    assert_eq!((j["area_va"]["va"].as_u64(), &j["area_va"]["gfn"]), (Some(0x10), &Value::Null));
    assert!(c.monitor("runstate d1v0").contains("(not mapped now)"));

    let j = c.json("time d1v1");
    assert_eq!(j["area_va"]["gfn"], 10);
    let version = j["area_va"]["fields"]["version"].as_u64().unwrap();
    assert!(version > 0 && version.is_multiple_of(2), "{version}");

    let j = c.json("areas d1");
    let va_rows: Vec<_> = j["areas"].as_array().unwrap().iter().filter(|a| a["placement"] == "guest_va").collect();
    assert_eq!(va_rows.len(), 3);
    assert!(va_rows.iter().any(|a| a["kind"] == "time" && a["va"] == va + 0x100 && a["gfn"] == 10 && a["refs"] == 0));
    assert!(c.monitor("areas d1").contains("guest_va"));
}

#[test]
fn breakpoints_are_planted_by_the_stub_hidden_from_reads_and_removed() {
    let mut c = attached();
    let addr = VBASE + 0x3000;
    assert_eq!(c.cmd("Hgp1.401"), "OK");
    assert_eq!(c.cmd(&format!("Z0,{addr:x},1")), "OK");
    let d1 = c.hv.slots()[0].domain.clone();
    let mut raw = [0u8; 8];
    PhysMem::new(&d1).read_bytes(Gpa(0x3000), &mut raw).unwrap();
    assert_eq!(&raw, b"\xccantern!", "the trap is in the guest's memory");
    assert_eq!(unhex(c.cmd(&format!("m{addr:x},8")).as_bytes()), b"lantern!", "and hidden from gdb");
    let armed = |c: &Client, v: usize| c.hv.debugger.exec.control_for(1, v as u32).trap_breakpoints;
    assert!(armed(&c, 0) && armed(&c, 3), "every vCPU of d1 traps breakpoints");
    let state = c.json("debug --json");
    assert_eq!(state["breakpoints"][0]["d"], 1);
    assert_eq!(state["breakpoints"][0]["gpa"], 0x3000);
    assert!(c.monitor("debug").contains(&format!("d1: breakpoint at {addr:#x} (gpa 0x3000)")));
    let calls = c.json("hypercalls --json");
    let vcpu_op = calls["hypercalls"].as_array().unwrap().iter().find(|h| h["name"] == "vcpu_op").cloned();
    assert_eq!(vcpu_op.map(|h| h["nr"].clone()), Some(serde_json::json!(24)));
    assert_eq!(c.cmd(&format!("z0,{addr:x},1")), "OK");
    PhysMem::new(&d1).read_bytes(Gpa(0x3000), &mut raw).unwrap();
    assert_eq!(&raw, b"lantern!");
    assert!(!armed(&c, 0));
}

#[test]
fn step_catchpoints_and_their_stops_reach_gdb() {
    let mut c = attached();
    assert_eq!(c.cmd("QCatchSyscalls:1;18"), "OK");
    assert_eq!(c.hv.debugger.exec.sessions[0].catch, Some(vec![0x18]));
    // Step d1v1 alone; the stop comes on its thread.
    c.raw(&frame_vec(b"vCont;s:p1.402"));
    c.take_tx();
    assert_eq!(c.hv.debugger.exec.sessions[0].step, Some((1, 1)));
    assert_eq!(c.hv.debugger.exec.sessions[0].run_only, Some(vec![(1, 1)]), "gdb resumed no other thread");
    c.hv.debugger.exec.record(1, 1, lantern_common::debug::StopReason::Step);
    c.raw(b"");
    let (_, pkts) = Client::packets(&c.take_tx());
    assert_eq!(pkts.last().map(|p| String::from_utf8_lossy(p).into_owned()), Some("T05thread:p01.0402;".into()));
    // A hypercall entry on d2v0.
    c.raw(&frame_vec(b"vCont;c"));
    c.take_tx();
    assert_eq!(c.hv.debugger.exec.sessions[0].run_only, None);
    c.hv.debugger.exec.record(2, 0, lantern_common::debug::StopReason::HypercallEntry(0x18));
    c.raw(b"");
    let (_, pkts) = Client::packets(&c.take_tx());
    let stop = String::from_utf8_lossy(pkts.last().unwrap()).into_owned();
    assert!(stop.starts_with("T05thread:p01.0801;") && stop.contains("syscall_entry:18;"), "{stop}");
    assert!(c.monitor("debug").contains("last stop: d2v0 hypercall-entry vcpu_op (24)"), "{}", c.monitor("debug"));
    // Detach: nothing stays armed.
    c.cmd("D;1");
    assert_eq!(c.hv.debugger.exec.sessions[0].catch, None);
}

#[test]
fn single_registers_by_number_per_thread() {
    let mut c = attached();
    assert_eq!(c.cmd("Hgp1.402"), "OK");
    assert_eq!(c.cmd("p0"), hex(&0x1111_0001u64.to_le_bytes()));
    assert_eq!(c.cmd("p1"), hex(&0xdead_beefu64.to_le_bytes()));
    assert!(c.cmd("p2").starts_with('E'), "no register 2 in the description");
    assert_eq!(c.cmd(&format!("P1={}", hex(&0x1234u64.to_le_bytes()))), "OK");
    assert_eq!(c.cmd("p1"), hex(&0x1234u64.to_le_bytes()));
    assert_eq!(c.cmd("p0"), hex(&0x1111_0001u64.to_le_bytes()), "the other register is unchanged");
    // Another thread's register file is its own.
    assert_eq!(c.cmd("Hgp1.401"), "OK");
    assert_eq!(c.cmd("p1"), hex(&0xdead_beefu64.to_le_bytes()));
    // A value of the wrong size, or a register the description lacks, is refused.
    assert!(c.cmd("P1=1234").starts_with('E'));
    assert!(c.cmd(&format!("P7={}", hex(&1u64.to_le_bytes()))).starts_with('E'));
    assert_eq!(c.cmd("p1"), hex(&0xdead_beefu64.to_le_bytes()));
}

#[test]
fn kill_and_vkill_answer_and_resume_everything() {
    let mut c = attached();
    assert!(c.stopped());
    assert_eq!(c.cmd("vKill;1"), "OK");
    assert!(!c.stopped(), "kill resumes like detach");
    assert!(c.hv.domains().count() == 3, "no domain was destroyed");
    // A new session, then the old-style `k`: answered, and resumed too.
    c.attach();
    assert!(c.stopped());
    assert_eq!(c.cmd("k"), "OK");
    assert!(!c.stopped());
    // After a kill a new gdb attaches as usual.
    assert!(c.attach().contains("PacketSize"));
    assert!(c.stopped());
    assert_eq!(c.cmd("qAttached:1"), "1", "gdb detaches (not kills) on quit");
    assert!(c.cmd("vRun;").starts_with('E'), "no processes to start");
}

#[test]
fn unknown_and_malformed_packets_are_counted_and_shown_by_monitor_stats() {
    let mut c = attached();
    let before = c.stub.stats();
    for _ in 0..3 {
        assert_eq!(c.cmd("vFrobnicate"), "");
    }
    assert_eq!(c.cmd("qNoSuchQuery:1"), "");
    assert_eq!(c.cmd("mzz,qq"), "E01");
    c.raw(b"$qSupported#00"); // bad checksum
    assert_eq!(c.take_tx(), b"-");
    let after = c.stub.stats();
    assert_eq!(after.unknown - before.unknown, 4);
    assert_eq!(after.engine_errors - before.engine_errors, 1);
    assert_eq!(after.malformed() - before.malformed(), 2);
    let j = c.json("stats");
    let stats = &j["stats"];
    assert_eq!(stats["unknown"], after.unknown, "{j}");
    assert_eq!(stats["malformed"], after.malformed(), "{j}");
    assert_eq!(stats["bad_checksum"], after.frames.bad_checksum, "{j}");
    assert_eq!(stats["sessions"], 1, "{j}");
    let text = c.monitor("stats");
    assert!(text.lines().any(|l| l.split_whitespace().eq(["unknown", &after.unknown.to_string()])), "{text}");
    assert!(text.lines().any(|l| l.starts_with("malformed")), "{text}");
    assert!(c.monitor("help").contains("stats"));
}

impl Client {
    /// Talks on another line from now on: `other`'s stub and line swap
    /// places with this client's (the hypervisor stays).
    fn switch(&mut self, other: &mut (GdbStub, Line)) {
        std::mem::swap(&mut self.stub, &mut other.0);
        std::mem::swap(&mut self.line, &mut other.1);
    }

    /// The domains the scheduler picks vCPUs of, over `n` picks.
    fn scheduled_domains(&mut self, n: usize) -> Vec<u16> {
        let mut doms = Vec::new();
        for _ in 0..n {
            if let Some((si, _)) = self.hv.pick_next() {
                doms.push(self.hv.slots()[si].domain.id);
            }
        }
        doms.sort();
        doms.dedup();
        doms
    }
}

#[test]
fn a_domain_session_shows_controls_and_stops_only_its_domain() {
    let mut c = Client::new(system());
    let mut system_line = (GdbStub::new(), Line::default());
    c.stub = GdbStub::for_domain(2);
    c.attach();
    assert!(!c.stopped(), "a domain's session does not stop the system");
    assert_eq!(c.scheduled_domains(20), [1, 3], "d2 is held, the others run");
    let threads = c.cmd("qfThreadInfo");
    assert_eq!(threads, "mp01.0801,p01.0802", "only d2's vCPUs are threads");
    let q = c.cmd("?");
    assert!(q.starts_with("T05thread:p01.0801"), "{q}");
    assert!(c.cmd("Hgp1.401").starts_with('E') || c.cmd("g").starts_with('E'), "d1's vCPU is not this session's");
    assert_eq!(c.cmd("Hgp1.801"), "OK");
    assert!(!c.cmd("g").starts_with('E'));
    // A breakpoint in d2, then continue: d2 runs again, and its stop is
    // reported here, holding d2 alone.
    assert_eq!(c.cmd(&format!("Z0,{:x},1", VBASE + 0x3000)), "OK");
    c.raw(&frame_vec(b"vCont;c"));
    c.take_tx();
    assert_eq!(c.scheduled_domains(20), [1, 2, 3]);
    c.hv.debugger.exec.record(2, 1, lantern_common::debug::StopReason::SwBreak);
    c.raw(b"");
    let (_, pkts) = Client::packets(&c.take_tx());
    assert_eq!(
        pkts.last().map(|p| String::from_utf8_lossy(p).into_owned()),
        Some("T05thread:p01.0802;swbreak:;".into())
    );
    assert_eq!(c.scheduled_domains(20), [1, 3], "the stop holds d2 only");
    let state = c.monitor("debug");
    assert!(state.contains("session attached: d2 alone, stopped"), "{state}");
    // The whole-system session, meanwhile: it sees every domain, but d2's
    // execution is not its to control.
    c.switch(&mut system_line);
    c.attach();
    assert!(c.stopped(), "the whole-system session stops everything");
    assert!(c.cmd("qfThreadInfo").contains("p01.0801"));
    assert_eq!(c.cmd("Hgp1.801"), "OK");
    assert_eq!(c.cmd(&format!("Z0,{:x},1", VBASE + 0x3100)), "E16", "d2 belongs to its own session (EINVAL)");
    assert_eq!(c.hv.debugger.exec.owner(2), 1);
    assert_eq!(c.cmd("D;1"), "OK");
    assert!(!c.stopped());
    // The domain's session goes away: its breakpoint comes out, d2 runs.
    c.switch(&mut system_line);
    c.line.hangup = true;
    c.raw(b"");
    assert_eq!(c.hv.debugger.exec.owner(2), 0);
    assert!(c.hv.debugger.exec.breakpoints.is_empty(), "the session's breakpoint is gone");
    let d2 = c.hv.slots()[1].domain.clone();
    let mut raw = [0u8; 8];
    PhysMem::new(&d2).read_bytes(Gpa(0x3000), &mut raw).unwrap();
    assert_ne!(raw[0], 0xCC, "the guest's byte is back");
    assert_eq!(c.scheduled_domains(20), [1, 2, 3]);
}

/// gdb may send any thread id: one whose domain part does not fit a domain
/// id selects no vCPU, as a thread of a missing domain does; it is not cut
/// to 16 bits onto another domain's (2^16 domains past d2v0 is 0x4000801).
#[test]
fn a_thread_id_past_the_domain_ids_is_no_other_domains_thread() {
    let mut c = attached();
    let planted_in = |c: &mut Client, hg: &str| {
        c.cmd(hg);
        assert_eq!(c.cmd(&format!("Z0,{:x},1", VBASE + 0x3000)), "OK", "{hg}");
        let d = c.hv.debugger.exec.breakpoints.iter().map(|b| b.domain).collect::<Vec<_>>();
        assert_eq!(c.cmd(&format!("z0,{:x},1", VBASE + 0x3000)), "OK", "{hg}");
        d
    };
    assert_eq!(planted_in(&mut c, "Hgp1.801"), [2]);
    // A missing domain's thread: the breakpoint goes to the first vCPU's.
    assert_eq!(planted_in(&mut c, "Hgp1.2401"), [1]);
    assert_eq!(planted_in(&mut c, "Hgp1.4000801"), [1], "not d2's");
}

/// gdb asks at most what a reply of its PacketSize holds; a client asking
/// more (up to a length of 2^64 - 1) gets that much and no more, and a
/// length the stub cannot parse is refused: the engine would read on,
/// chunk after chunk, through every mapped byte of the guest into one
/// reply in memory (and end it with an error code glued to the data).
#[test]
fn a_memory_read_longer_than_a_reply_holds_is_cut_to_the_packet_size() {
    let mut c = attached();
    c.cmd("Hgp1.401");
    let d1 = c.hv.domains().next().unwrap().clone();
    let mut ram = vec![0u8; lantern_gdb::MAX_READ];
    PhysMem::new(&d1).read_bytes(Gpa(0), &mut ram).unwrap();
    for len in ["4003", "8000", "10000", "ffffffffffffffff"] {
        assert_eq!(c.cmd(&format!("m{VBASE:x},{len}")), hex(&ram), "m{VBASE:x},{len}");
    }
    // gdb's own largest read is whole.
    assert_eq!(c.cmd(&format!("m{VBASE:x},{:x}", lantern_gdb::MAX_READ)), hex(&ram));
    // `x` is a hex digit to the engine: no length the stub did not see.
    assert_eq!(c.cmd(&format!("m{VBASE:x},xffffffffffffff")), "E01");
    assert_eq!(c.cmd(&format!("m{VBASE:x},8")), hex(&ram[..8]), "the session goes on");
}

/// A guest whose page tables map the last page of the address space: a
/// long read there gives that page and stops at the top; it neither wraps
/// to address 0 nor overflows the engine's address sum (a panic: the
/// whole machine halts).
#[test]
fn a_long_read_at_the_top_of_the_address_space_stops_there() {
    let top = 0u64.wrapping_sub(RAM_PAGES << 12);
    let d = TestDomain::new(layout("x86_64")).id(1).vcpus(1).build();
    write_phys(&d, (RAM_PAGES - 1) << 12, b"last page").unwrap();
    let arch = vec![FakeVcpu::identity(RAM_PAGES)
        .mapped_at(top)
        .with_registers(FAKE_XML, vec![0; 16])
        .with_breakpoint(&[0xCC])
        .boxed()];
    let mut c = Client::new(Hypervisor::new(vec![slot(d, arch)]));
    c.attach();
    c.cmd("Hgp1.401");
    let last = u64::MAX - 0xfff;
    for len in ["1000", "8000", "10000", "ffffffffffffffff"] {
        let r = c.cmd(&format!("m{last:x},{len}"));
        assert_eq!(r.len(), 0x2000, "m{last:x},{len}: the last page only");
        assert!(r.starts_with(&hex(b"last page")));
    }
    assert_eq!(c.cmd("m0,8"), "E0e", "address 0 is not mapped");
}

/// `Hg`, `Hc` and `qSupported` are replayed into an engine rebuilt after
/// a malformed packet; one the engine itself rejected must not be, or
/// every rebuilt engine dies on it and the next one starts bare: thread
/// ids lose their `p1.` and `g` reads a thread that does not exist. Nor
/// may a rejected `Hg` move the stub's own memory reads to another thread
/// (`+401` is a number to Rust, not to the engine).
#[test]
fn a_rejected_thread_selection_is_not_replayed_into_the_rebuilt_engine() {
    let mut c = attached();
    let d2v0 = hex(&0x1111_0000u64.to_le_bytes());
    assert_eq!(c.cmd("Hgp1.801"), "OK");
    for bad in ["Hgzz", "Hgp1", "Hg-1", "Hcqq", "Hgp1.401x0z", "Hgp1.+401", "Hg+401"] {
        assert_eq!(c.cmd(bad), "E01", "{bad}");
        // A packet the engine rejects after it: another rebuild.
        assert_eq!(c.cmd("Z0,zz,1"), "E01");
        assert!(c.cmd("g").starts_with(&d2v0), "after {bad}: still d2v0's registers");
        assert!(c.cmd("qfThreadInfo").starts_with("mp01.0401"), "after {bad}: still multiprocess");
        // d2's memory, not d1's variable.
        assert_eq!(c.cmd(&format!("m{:x},8", VBASE + 0x3000)), hex(&[0; 8]), "after {bad}");
    }
    assert_eq!(c.stub.stats().engine_errors, 14);
}

mod random_packets {
    //! Thousands of packets from a seeded generator: the commands gdb
    //! sends, with addresses, lengths, thread ids, register numbers,
    //! breakpoint kinds, qXfer offsets and monitor arguments at and past
    //! their edges (the top of the address space, lengths near 2^64,
    //! numbers wider than 64 bits, odd-length and non-hex digits, `x`,
    //! `-1`, `0`, `+`), binary `X` data with escaped `#`, `$`, `}` and `*`
    //! (and a `}` left dangling), stray run-length `*`, and random bytes;
    //! each after line noise, a packet cut off by the next `$`, or a
    //! checksum cut short. Every complete packet must be acked and
    //! answered (a resume by a stop reply after Ctrl-C), a nack must
    //! resend that answer, a bad checksum or an oversized packet must be
    //! nacked, and nothing may change the domains the session must not
    //! reach: d1 and d3 in d2's own session, d3 (whose thread ids the
    //! generator never names) in the whole-system one.

    use super::*;

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
            &xs[self.below(xs.len())]
        }
        fn chance(&mut self, one_in: usize) -> bool {
            self.below(one_in) == 0
        }
    }

    /// A hex number field: usual values, edges, and malformed ones.
    fn num(r: &mut Rng) -> String {
        let top = u64::MAX - (r.next() % 0x2000);
        match r.below(14) {
            0 => format!("{:x}", r.next() % 0x100),
            1 => format!("{:x}", VBASE + r.next() % (RAM_PAGES << 12)),
            2 => format!("{:x}", VBASE + (RAM_PAGES << 12) - r.next() % 0x20),
            3 => format!("{:x}", r.next() % (RAM_PAGES << 12)),
            4 => format!("{top:x}"),
            5 => "ffffffffffffffff".into(),
            6 => format!("1{:016x}", r.next()),
            7 => format!("{:0>40x}", r.next() % 0x10000),
            8 => format!("{:x}", r.next()),
            9 => r.pick(&["", "-1", "0", "x", "xx10", "+10", "zz", "1g", "-0", " 1"]).to_string(),
            10 => format!("{:x}", lantern_gdb::MAX_READ + r.below(3) - 1),
            11 => format!("{:x}", lantern_gdb::MAX_PACKET + r.below(8)),
            12 => format!("{:x}", 1u64 << r.below(64)),
            _ => format!("{:x}", r.next() % 0x40),
        }
    }

    /// A thread id (any form gdb may send, and worse); never one of d3's
    /// ids when `no_d3`, or any vCPU of the session's other domains could
    /// be named legitimately.
    fn tid(r: &mut Rng, no_d3: bool) -> String {
        loop {
            let id = match r.below(10) {
                0 => format!("{:x}", 0x401 + r.below(6)),
                1 => format!("{:x}", 0x801 + r.below(4)),
                2 => format!("{:x}", 0xc01 + r.below(3)),
                3 => format!("{:x}", (r.next() % 0x10_0000) * 0x400 + 1 + r.below(0x400) as u64),
                4 => format!("{:x}", (1u64 << 26) + 0x801),
                5 => r.pick(&["0", "-1", "ffffffffffffffff", "10000000000000000", "", "zz", "+401"]).to_string(),
                _ => num(r),
            };
            // d3's threads, whatever the bits above the 64 Ki domains.
            let d3 = usize::from_str_radix(&id, 16)
                .ok()
                .and_then(|t| t.checked_sub(1))
                .is_some_and(|t| t / lantern_gdb::TIDS_PER_DOMAIN == 3);
            if no_d3 && d3 {
                continue;
            }
            return match r.below(4) {
                0 => id,
                1 => format!("p{}.{id}", r.pick(&["1", "0", "-1", "2", "ffffffffffffffffff", ""])),
                2 => format!("p{id}"),
                _ => format!("p1.{id}"),
            };
        }
    }

    /// `X` data: random bytes, escaped as gdb escapes them (and not).
    fn binary(r: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..r.below(24) {
            let any = r.next() as u8;
            let b = *r.pick(&[b'#', b'$', b'}', b'*', 0, 0xff, 0x03, any]);
            if matches!(b, b'#' | b'$' | b'}' | b'*') {
                out.extend([b'}', b ^ 0x20]);
            } else {
                out.push(b);
            }
        }
        if r.chance(8) {
            out.push(b'}');
        }
        out
    }

    fn hexdata(r: &mut Rng) -> String {
        let mut s: String = (0..r.below(40)).map(|_| format!("{:02x}", r.next() as u8)).collect();
        if r.chance(4) {
            s.push(*r.pick(&['a', 'z', 'x', '*']));
        }
        s
    }

    fn monitor_line(r: &mut Rng) -> String {
        // Every command, one nobody defines, and none.
        let mut cmds = lantern_gdb::monitor::COMMANDS.to_vec();
        cmds.extend(["frobnicate", ""]);
        let mut line = r.pick(&cmds).to_string();
        for _ in 0..r.below(3) {
            let d = r.pick(&["0", "1", "2", "3", "4", "65535", "65536", "99999999999999999999", "-1", "+2", ""]);
            let v = r.pick(&["0", "1", "3", "4", "4294967295", "4294967296", "-1", ""]);
            let arg = match r.below(6) {
                0 => format!("d{d}"),
                1 => format!("d{d}v{v}"),
                2 => r.pick(&["all", "on", "off", "--json", "dv", "vd1", "d1v1v1"]).to_string(),
                _ => format!("d{}v{}", r.below(4), r.below(5)),
            };
            line.push(' ');
            line.push_str(&arg);
        }
        line
    }

    /// One packet body.
    fn body(r: &mut Rng, no_d3: bool) -> Vec<u8> {
        let s = match r.below(30) {
            0..=3 => format!("m{},{}", num(r), num(r)),
            4 => format!("M{},{}:{}", num(r), num(r), hexdata(r)),
            5 | 6 => {
                let mut b = format!("X{},{}:", num(r), num(r)).into_bytes();
                b.extend(binary(r));
                return b;
            }
            7 => "g".into(),
            8 => format!("G{}", if r.chance(2) { "11".repeat(16) } else { hexdata(r) }),
            9 => format!("p{}", num(r)),
            10 => format!("P{}={}", num(r), if r.chance(2) { "22".repeat(8) } else { hexdata(r) }),
            11 | 12 => format!("Hg{}", tid(r, no_d3)),
            13 => format!("Hc{}", tid(r, no_d3)),
            14 => format!("T{}", tid(r, no_d3)),
            15 => {
                let act = r.pick(&["c", "s", "C05", "S05", "t", "r0,1", "x", ""]);
                match r.below(3) {
                    0 => format!("vCont;{act}"),
                    1 => format!("vCont;{act}:{}", tid(r, no_d3)),
                    _ => "vCont?".into(),
                }
            }
            16 | 17 => {
                let z = if r.chance(2) { 'Z' } else { 'z' };
                format!("{z}{},{},{}", r.pick(&["0", "1", "2", "3", "4", "5", "9", "ff", "100", ""]), num(r), num(r))
            }
            18 => {
                let annex = r.pick(&["target.xml", "", "other.xml", "target.xml:"]);
                format!("qXfer:features:read:{annex}:{},{}", num(r), num(r))
            }
            19 | 20 => {
                let mut h = hex(monitor_line(r).as_bytes());
                if r.chance(6) {
                    h.push(*r.pick(&['a', 'q', '*']));
                }
                format!("qRcmd,{h}")
            }
            21 => format!("qThreadExtraInfo,{}", tid(r, no_d3)),
            22 => r
                .pick(&["qfThreadInfo", "qsThreadInfo", "qC", "?", "qAttached", "qAttached:1", "vMustReplyEmpty"])
                .to_string(),
            23 => r.pick(&["c", "s", "C05", "S05;1", "!", "c", "s", "vKill;1", "D", "D;1", "k"]).to_string(),
            24 if r.chance(3) => r
                .pick(&["qSupported", "qSupported:", "qSupported:;", "qSupported:multiprocess+", "QStartNoAckMode"])
                .to_string(),
            24 => "g".into(),
            25 => format!("QCatchSyscalls:{}", r.pick(&["0", "1", "1;0;1d", "1;zz", "1;ffffffffffffffffff"])),
            26 => {
                // A valid prefix, then run-length markers.
                let mut b = r.pick(&["m", "M", "g", "p", "Hg", "qRcmd,", "qXfer:"]).as_bytes().to_vec();
                for _ in 0..r.below(6) {
                    let n = 29 + r.below(60) as u8;
                    b.extend([b'*', if n == b'#' || n == b'$' { b'0' } else { n }, b'0']);
                }
                return b;
            }
            _ => {
                // Random bytes (a `#` or `$` would end or restart the frame).
                return (0..r.below(48)).map(|_| r.next() as u8).filter(|b| *b != b'#' && *b != b'$').collect();
            }
        };
        s.into_bytes()
    }

    /// What a packet may not touch: the guest RAM and register files of
    /// the domains in `doms`.
    fn snapshot(hv: &Hypervisor, doms: &[u16]) -> Vec<(u16, Vec<u8>, Vec<Vec<u8>>)> {
        hv.slots()
            .iter()
            .filter(|s| doms.contains(&s.domain.id))
            .map(|s| {
                let mut ram = vec![0u8; (RAM_PAGES << 12) as usize];
                PhysMem::new(&s.domain).read_bytes(Gpa(0), &mut ram).unwrap();
                let regs = s
                    .vcpus
                    .iter()
                    .map(|v| {
                        let mut b = vec![0u8; 4096];
                        let n = v.read_registers(&mut b);
                        b.truncate(n);
                        b
                    })
                    .collect();
                (s.domain.id, ram, regs)
            })
            .collect()
    }

    /// Noise a vanished or broken client leaves before the next packet.
    fn noise(r: &mut Rng) -> Vec<u8> {
        match r.below(8) {
            // Bytes outside a packet (no `-`: a nack resends, tested apart;
            // no Ctrl-C: it stops a running system).
            0 => (0..r.below(16)).map(|_| r.next() as u8).filter(|b| !matches!(b, b'$' | b'-' | 3)).collect(),
            // A packet cut off: the next `$` abandons it.
            1 => {
                let mut b = b"$".to_vec();
                b.extend(body(r, true).into_iter().filter(|b| *b != b'#'));
                b
            }
            // `#` and one checksum digit, then the next `$`.
            2 => format!("$m{},4#{}", num(r), r.pick(&["", "0", "a"])).into_bytes(),
            3 => b"+".to_vec(),
            _ => Vec::new(),
        }
    }

    fn run(mut c: Client, packets: usize, seed: u64, guarded: &[u16], no_d3: bool) {
        let mut r = Rng(seed);
        let before = snapshot(&c.hv, guarded);
        let mut answered = 0;
        let (mut writes, mut reads) = (0, 0);
        for i in 0..packets {
            if !c.stub.attached() {
                // gdb attaches, then selects a thread of its own.
                c.attach();
                c.cmd(if no_d3 { "Hgp1.401" } else { "Hgp1.802" });
            }
            // Sometimes a broken frame alone: nacked, nothing else.
            if r.chance(40) {
                let mut f = frame_vec(&body(&mut r, no_d3));
                if r.chance(2) {
                    let n = f.len();
                    f[n - 1] = if f[n - 1] == b'0' { b'1' } else { b'0' };
                } else {
                    f = [b"$".as_slice(), &vec![b'A'; lantern_gdb::MAX_PACKET + 1 + r.below(64)], b"#00"].concat();
                }
                c.take_tx();
                c.raw(&f);
                assert_eq!(c.take_tx(), b"-", "packet {i}: a broken frame is nacked");
                continue;
            }
            let b = body(&mut r, no_d3);
            let mut bytes = noise(&mut r);
            bytes.extend(frame_vec(&b));
            c.take_tx();
            c.raw(&bytes);
            let tx = c.take_tx();
            let shown = String::from_utf8_lossy(&b).into_owned();
            let (acks, mut pkts) = Client::packets(&tx);
            assert_eq!(acks.iter().filter(|a| **a == b'+').count(), 1, "packet {i} {shown:?}: one ack in {tx:?}");
            if pkts.is_empty() {
                // A resume: the answer is the stop reply Ctrl-C brings.
                c.raw(b"\x03");
                pkts = Client::packets(&c.take_tx()).1;
                assert!(!pkts.is_empty(), "packet {i} {shown:?}: no answer, not even after Ctrl-C");
                continue;
            }
            answered += 1;
            if pkts.last().is_some_and(|p| p == b"OK") && matches!(b.first(), Some(b'M' | b'X' | b'G' | b'P' | b'Z')) {
                writes += 1;
            }
            if b.first() == Some(&b'm') && pkts.last().is_some_and(|p| !p.is_empty() && p[0] != b'E') {
                reads += 1;
            }
            // A nack resends exactly that answer.
            if r.chance(10) {
                let answer = &tx[tx.iter().position(|x| *x == b'$').unwrap()..];
                c.raw(b"-");
                assert_eq!(c.take_tx(), answer, "packet {i} {shown:?}: resent");
            }
        }
        assert!(answered > packets / 2, "{answered} of {packets} answered at once");
        // The run reached guest memory: reads, and writes that landed.
        assert!(writes >= 10 && reads >= 5, "{writes} writes and {reads} reads answered");
        let after = snapshot(&c.hv, guarded);
        for (b, a) in before.iter().zip(&after) {
            assert!(b.1 == a.1, "d{}'s memory changed", b.0);
            assert_eq!(b.2, a.2, "d{}'s registers changed", b.0);
        }
        let e = &c.hv.debugger.exec;
        assert!(e.breakpoints.iter().all(|bp| !guarded.contains(&bp.domain)), "{:?}", e.breakpoints);
        assert!(e.hw_points.iter().all(|(d, _)| !guarded.contains(d)), "{:?}", e.hw_points);
        // The session still works, and its end lets everything run.
        c.attach();
        assert!(c.cmd("qfThreadInfo").starts_with("mp01."));
        assert!(c.cmd("?").starts_with("T05"));
        assert_eq!(c.cmd("D"), "OK");
        assert!(!c.stub.attached());
        assert!(c.hv.debugger.exec.breakpoints.is_empty(), "a detach takes every breakpoint out");
        assert!(c.hv.debugger.exec.hw_points.is_empty(), "and every hardware point");
    }

    #[test]
    fn thousands_of_random_packets_in_the_whole_system_session() {
        for seed in [0x5eed_0001, 0x5eed_0002] {
            let mut c = Client::new(system());
            c.attach();
            run(c, 3000, seed, &[3], true);
        }
    }

    #[test]
    fn thousands_of_random_packets_in_a_domain_session_reach_only_its_domain() {
        for seed in [0x5eed_0003, 0x5eed_0004] {
            let mut c = Client::new(system());
            c.stub = GdbStub::for_domain(2);
            c.attach();
            run(c, 3000, seed, &[1, 3], false);
        }
    }
}

/// d2's own session owns d2's breakpoints: the whole-system session, which
/// may not plant one there (E16), may not take one out either (a `z0` of
/// its own at the same address): the domain's gdb would wait at a
/// breakpoint that is gone. Its `z0` there succeeds, removing nothing, as
/// for a breakpoint that is not there (it has none in d2: they came out
/// at the hand-over), so gdb's removals at each stop do not fail.
#[test]
fn the_whole_system_session_cannot_remove_a_domain_sessions_breakpoint() {
    let mut c = Client::new(system());
    let mut system_line = (GdbStub::new(), Line::default());
    c.stub = GdbStub::for_domain(2);
    c.attach();
    c.cmd("Hgp1.801");
    let at = VBASE + 0x3000;
    assert_eq!(c.cmd(&format!("Z0,{at:x},1")), "OK");
    c.switch(&mut system_line);
    c.attach();
    assert_eq!(c.cmd("Hgp1.801"), "OK");
    assert_eq!(c.cmd(&format!("Z0,{at:x},1")), "E16");
    assert_eq!(c.cmd(&format!("z0,{at:x},1")), "OK");
    assert_eq!(c.hv.debugger.exec.breakpoints.len(), 1, "d2's breakpoint stays");
    let d2 = c.hv.slots()[1].domain.clone();
    let mut raw = [0u8; 1];
    PhysMem::new(&d2).read_bytes(Gpa(0x3000), &mut raw).unwrap();
    assert_eq!(raw[0], 0xCC, "still planted");
    assert_eq!(c.cmd("D"), "OK");
    // d2's session takes it out itself.
    c.switch(&mut system_line);
    assert_eq!(c.cmd(&format!("z0,{at:x},1")), "OK");
    assert!(c.hv.debugger.exec.breakpoints.is_empty());
}
