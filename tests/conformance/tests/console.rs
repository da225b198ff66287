//! The PV console and the serial console, in every layout: the ring page and
//! port a domain gets (and `HVM_PARAM_CONSOLE_*` answering them), the output
//! ring drained on notify and at every poll (wrap-around, partial lines, a
//! runaway producer), serial input into `in[]` (full ring, corrupt consumer),
//! the Ctrl-A x3 switch, and the debug keys' dumps.

use std::sync::{Arc, Mutex};

use lantern_common::addr::Gfn;
use lantern_common::arch::ArchVcpu;
use lantern_common::console_input::{switch_message, InputTarget, Key, SerialInput, SWITCH_CHAR};
use lantern_common::debug_keys;
use lantern_common::domain::Domain;
use lantern_common::hypercall::{dispatch, Call};
use lantern_common::ports::ChannelState;
use lantern_common::sched::Hypervisor;
use lantern_common::{evtchn, grant_table, guest_area, pv_console};
use lantern_conformance::*;
use xen_abi::errno::Errno;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::xencons::{IN_RING_SIZE, OUT_RING_SIZE};
use xen_abi::nr::{domid, evtchnop, gntmap, gtf, hvm_param, hvmop};
use xen_abi::public::{EvtchnBindIpi, EvtchnPort, GrantEntryV1, XenHvmParam, XenconsInterface};
use zerocopy::IntoBytes;

const ARG: u64 = 0x1000;
/// Where the tests put the console ring: above the test domains' RAM.
const RING_GFN: u64 = 0x200;

const OUT: usize = std::mem::offset_of!(XenconsInterface, out);
const IN: usize = std::mem::offset_of!(XenconsInterface, in_);
const IN_CONS: usize = std::mem::offset_of!(XenconsInterface, in_cons);
const IN_PROD: usize = std::mem::offset_of!(XenconsInterface, in_prod);
const OUT_CONS: usize = std::mem::offset_of!(XenconsInterface, out_cons);
const OUT_PROD: usize = std::mem::offset_of!(XenconsInterface, out_prod);

fn call(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], nr: u64, args: [u64; 6]) -> i64 {
    dispatch(&mut Call::new(d, 0, arch), nr, args).ret
}

fn get_param(d: &Domain, arch: &mut [Box<dyn ArchVcpu>], index: u32) -> Result<u64, i64> {
    let p = XenHvmParam { domid: domid::SELF, pad: 0, index, value: 0 };
    write_phys(d, ARG, p.as_bytes()).unwrap();
    match call(d, arch, nr::HVM_OP, [hvmop::GET_PARAM, ARG, 0, 0, 0, 0]) {
        0 => {
            let mut out = XenHvmParam::default();
            read_phys(d, ARG, zerocopy::IntoBytes::as_mut_bytes(&mut out)).unwrap();
            Ok(out.value)
        }
        e => Err(e),
    }
}

/// A domain with a console at [`RING_GFN`].
fn with_console(abi: &'static dyn xen_abi::layout::GuestAbi, id: u16) -> Arc<Domain> {
    let d = TestDomain::new(abi).id(id).vcpus(2).build();
    pv_console::attach(&d, Gfn(RING_GFN)).unwrap();
    d
}

/// The guest's side of `out[]`: writes `text` at its producer index and
/// advances it (as a frontend does: bytes, barrier, index).
fn guest_write(d: &Domain, text: &[u8]) {
    let ring = page(d, RING_GFN);
    let prod = ring.read_uint(OUT_PROD, 4).unwrap() as u32;
    for (i, &b) in text.iter().enumerate() {
        let at = OUT + (prod.wrapping_add(i as u32) as usize & (OUT_RING_SIZE - 1));
        ring.write_uint(at, 1, b as u64).unwrap();
    }
    ring.write_uint(OUT_PROD, 4, prod.wrapping_add(text.len() as u32) as u64).unwrap();
}

fn set_out_indices(d: &Domain, cons: u32, prod: u32) {
    let ring = page(d, RING_GFN);
    ring.write_uint(OUT_CONS, 4, cons as u64).unwrap();
    ring.write_uint(OUT_PROD, 4, prod as u64).unwrap();
}

fn history(d: &Domain) -> Vec<String> {
    d.console.lock().history().map(String::from).collect()
}

fn port_pending(d: &Domain, port: u32) -> bool {
    evtchn::pending_and_masked(d, port).0
}

fn clear_pending(d: &Domain, port: u32) {
    let abi = d.abi();
    let w = abi.xen_ulong_size();
    let off = abi.shared_info().evtchn_pending.offset + (port as usize / (w * 8)) * w;
    d.shared_info().write_uint(off, w, 0).unwrap();
}

/// What the guest finds in its input ring: the bytes between its consumer
/// and the producer index, and the producer index.
fn guest_read_input(d: &Domain) -> (Vec<u8>, u32) {
    let ring = page(d, RING_GFN);
    let cons = ring.read_uint(IN_CONS, 4).unwrap() as u32;
    let prod = ring.read_uint(IN_PROD, 4).unwrap() as u32;
    let bytes = (0..prod.wrapping_sub(cons))
        .map(|i| ring.read_uint(IN + (cons.wrapping_add(i) as usize & (IN_RING_SIZE - 1)), 1).unwrap() as u8)
        .collect();
    (bytes, prod)
}

#[test]
fn every_console_is_a_ring_page_and_a_backend_port_named_by_the_hvm_params() {
    for abi in layouts() {
        let bare = TestDomain::new(abi).build();
        let mut arch = fake_vcpus(1);
        // Without a console both params stay absent.
        assert_eq!(get_param(&bare, &mut arch, hvm_param::CONSOLE_PFN), Err(Errno::ENOENT.to_hypercall_ret()));
        assert_eq!(get_param(&bare, &mut arch, hvm_param::CONSOLE_EVTCHN), Err(Errno::ENOENT.to_hypercall_ret()));

        let d = with_console(abi, 1);
        let mut arch = fake_vcpus(2);
        let c = pv_console::of(&d).unwrap();
        assert_eq!(get_param(&d, &mut arch, hvm_param::CONSOLE_PFN), Ok(RING_GFN));
        assert_eq!(get_param(&d, &mut arch, hvm_param::CONSOLE_EVTCHN), Ok(c.port as u64));
        assert!(Arc::ptr_eq(&page(&d, RING_GFN), c.page()), "the ring is what the guest sees at the gfn");
        assert_eq!(d.evtchn.lock().get(c.port).unwrap().state, ChannelState::ConsoleBackend);
        assert_eq!(pv_console::attach(&d, Gfn(RING_GFN + 1)).err(), Some(Errno::EEXIST));
    }
}

#[test]
fn output_is_drained_on_notify_in_lines_and_the_guest_is_told() {
    for abi in layouts() {
        let d = with_console(abi, 1);
        let mut arch = fake_vcpus(2);
        let port = pv_console::of(&d).unwrap().port;
        guest_write(&d, b"hello\nwor");
        write_phys(&d, ARG, EvtchnPort { port }.as_bytes()).unwrap();
        assert_eq!(call(&d, &mut arch, nr::EVENT_CHANNEL_OP, [evtchnop::SEND, ARG, 0, 0, 0, 0]), 0);
        // The complete line is out; the partial one waits for its newline.
        assert_eq!(history(&d), ["hello"]);
        let ring = page(&d, RING_GFN);
        assert_eq!(ring.read_uint(OUT_CONS, 4).unwrap(), 9, "everything consumed");
        assert!(port_pending(&d, port), "the backend notifies the guest that space is free");
        clear_pending(&d, port);
        guest_write(&d, b"ld\n");
        // No notify this time: the poll drains it.
        Hypervisor::new(vec![slot(d.clone(), fake_vcpus(2))]).poll_consoles();
        assert_eq!(history(&d), ["hello", "world"]);
        assert!(port_pending(&d, port));
        // Nothing new: nothing consumed, nobody notified.
        clear_pending(&d, port);
        assert_eq!(pv_console::drain(&d), 0);
        assert!(!port_pending(&d, port));
    }
}

#[test]
fn output_wraps_around_the_ring_end_and_the_index_width() {
    let d = with_console(layouts()[0], 1);
    // Across the end of out[]...
    set_out_indices(&d, OUT_RING_SIZE as u32 - 3, OUT_RING_SIZE as u32 - 3);
    guest_write(&d, b"abcdef\n");
    assert_eq!(pv_console::drain(&d), 7);
    // ...and across the wrap of the 32-bit indices.
    set_out_indices(&d, u32::MAX - 1, u32::MAX - 1);
    guest_write(&d, b"wrapped\n");
    assert_eq!(pv_console::drain(&d), 8);
    assert_eq!(page(&d, RING_GFN).read_uint(OUT_CONS, 4).unwrap(), 6);
    assert_eq!(history(&d), ["abcdef", "wrapped"]);
}

#[test]
fn a_runaway_producer_index_never_reads_past_the_ring() {
    let d = with_console(layouts()[0], 1);
    let ring = page(&d, RING_GFN);
    ring.fill(OUT, OUT_RING_SIZE, b'x').unwrap();
    // 10000 bytes claimed: only the last ring's worth can be there.
    set_out_indices(&d, 0, 10_000);
    assert_eq!(pv_console::drain(&d), OUT_RING_SIZE);
    assert_eq!(ring.read_uint(OUT_CONS, 4).unwrap(), 10_000);
    // A consumer ahead of the producer is the same lie.
    set_out_indices(&d, 50, 10);
    assert_eq!(pv_console::drain(&d), OUT_RING_SIZE);
    assert_eq!(ring.read_uint(OUT_CONS, 4).unwrap(), 10);
    let total: usize = history(&d).iter().map(|l| l.len()).sum();
    assert!(total <= 2 * OUT_RING_SIZE, "no more than the ring holds was taken each time");
    // The ring still works afterwards.
    guest_write(&d, b"\nsane\n");
    pv_console::drain(&d);
    assert_eq!(history(&d).last().map(String::as_str), Some("sane"));
}

#[test]
fn input_fills_in_until_full_and_a_corrupt_consumer_gets_nothing() {
    for abi in layouts() {
        let d = with_console(abi, 1);
        let port = pv_console::of(&d).unwrap().port;
        assert_eq!(pv_console::input(&d, b"ls\r"), 3);
        assert_eq!(guest_read_input(&d), (b"ls\r".to_vec(), 3));
        assert!(port_pending(&d, port), "input raises the console port");
        // Fill the rest: 1021 more fit, then nothing.
        let big = vec![b'z'; IN_RING_SIZE];
        assert_eq!(pv_console::input(&d, &big), IN_RING_SIZE - 3);
        assert_eq!(pv_console::input(&d, b"q"), 0, "a full ring takes nothing");
        let (bytes, prod) = guest_read_input(&d);
        assert_eq!((bytes.len(), prod), (IN_RING_SIZE, IN_RING_SIZE as u32));
        // The guest consumes 2: exactly 2 more fit, wrapping to the start.
        let ring = page(&d, RING_GFN);
        ring.write_uint(IN_CONS, 4, 2).unwrap();
        assert_eq!(pv_console::input(&d, b"abc"), 2);
        assert_eq!(ring.read_uint(IN, 2).unwrap(), u64::from(u16::from_le_bytes(*b"ab")));
        // A consumer index claiming more than the ring holds: nothing written.
        ring.write_uint(IN_CONS, 4, 5000).unwrap();
        let before = ring.read_uint(IN_PROD, 4).unwrap();
        assert_eq!(pv_console::input(&d, b"x"), 0);
        assert_eq!(ring.read_uint(IN_PROD, 4).unwrap(), before);
    }
}

#[test]
fn a_console_port_the_guest_closed_is_not_notified() {
    let d = with_console(layouts()[0], 1);
    let port = pv_console::of(&d).unwrap().port;
    evtchn::close(&d, port).unwrap();
    // Reuse the port number for an IPI: backend traffic must not raise it.
    assert_eq!(evtchn::bind_ipi(&d, 0), Ok(port));
    assert_eq!(pv_console::input(&d, b"x"), 1);
    assert!(!port_pending(&d, port));
}

#[test]
fn three_ctrl_a_switch_and_fewer_are_passed_through() {
    let mut s = SerialInput::new();
    assert_eq!(s.push(SWITCH_CHAR), Key::Held);
    assert_eq!(s.push(SWITCH_CHAR), Key::Held);
    assert_eq!(s.push(b'x'), Key::Pass { held: 2, key: b'x' }, "two Ctrl-A then a key is no switch");
    assert_eq!(s.push(b'y'), Key::Pass { held: 0, key: b'y' });
    assert_eq!(s.push(SWITCH_CHAR), Key::Held);
    assert_eq!(s.push(SWITCH_CHAR), Key::Held);
    assert_eq!(s.push(SWITCH_CHAR), Key::Switch);
    // A fourth starts a new run.
    assert_eq!(s.push(SWITCH_CHAR), Key::Held);
    // The cycle: the domains in order, then the hypervisor, then round.
    let mut s = SerialInput::new();
    assert_eq!(s.target(), InputTarget::Hypervisor);
    assert_eq!(s.switch(&[1, 2]), InputTarget::Domain(1));
    assert_eq!(s.switch(&[1, 2]), InputTarget::Domain(2));
    assert_eq!(s.switch(&[1, 2]), InputTarget::Hypervisor);
    assert_eq!(s.switch(&[1, 2]), InputTarget::Domain(1));
    // The current domain went away: start over.
    assert_eq!(s.switch(&[2]), InputTarget::Domain(2));
    assert_eq!(SerialInput::new().switch(&[]), InputTarget::Hypervisor);
    assert!(switch_message(InputTarget::Domain(2)).contains("d2"));
}

#[test]
fn serial_bytes_reach_the_target_domain_and_debug_keys_the_hypervisor() {
    let abi = layouts()[0];
    let (d1, d2) = (with_console(abi, 1), with_console(abi, 2));
    let mut hv = Hypervisor::new(vec![slot(d1.clone(), fake_vcpus(2)), slot(d2.clone(), fake_vcpus(2))]);
    assert!(hv.start_serial_input().contains("d1"), "input starts at the first domain");
    let said = Mutex::new(Vec::<String>::new());
    let mut say = |l: &str| said.lock().unwrap().push(l.to_string());
    let feed = |hv: &mut Hypervisor, bytes: &[u8], say: &mut dyn FnMut(&str)| {
        for &b in bytes {
            hv.serial_input(b, say);
        }
    };
    feed(&mut hv, b"ab\x01\x01c", &mut say);
    assert_eq!(guest_read_input(&d1).0, b"ab\x01\x01c", "held Ctrl-As are delivered before the key");
    feed(&mut hv, b"\x01\x01\x01", &mut say);
    assert_eq!(hv.input.target(), InputTarget::Domain(2));
    feed(&mut hv, b"to2", &mut say);
    assert_eq!(guest_read_input(&d2).0, b"to2");
    assert_eq!(guest_read_input(&d1).0.len(), 5, "d1 got nothing more");
    feed(&mut hv, b"\x01\x01\x01q", &mut say);
    assert_eq!(hv.input.target(), InputTarget::Hypervisor);
    let lines = said.lock().unwrap().clone();
    assert!(lines[0].contains("d2") && lines[1].contains("hypervisor"), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("d1 'test1'")), "q dumps d1: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("d2 'test2'")), "q dumps d2: {lines:?}");
    // Debug keys went nowhere near the rings.
    assert_eq!(guest_read_input(&d2).0, b"to2");
}

#[test]
fn key_h_lists_every_key() {
    let d = with_console(layouts()[0], 1);
    let out = debug_keys::run(&[&d], b'h');
    for (k, what) in debug_keys::KEYS {
        assert!(out.contains(&format!("  {}  {what}", *k as char)), "{out}");
    }
    assert!(debug_keys::run(&[&d], b'Z').contains("no debug key 'Z'"));
}

#[test]
fn key_q_shows_each_vcpu_info_where_it_lives() {
    for abi in layouts() {
        let d = with_console(abi, 1);
        let v0 = d.vcpu(0).unwrap();
        guest_area::register_vcpu_info(&d, Some(0), v0, Gfn(5), 0x40).unwrap();
        let out = debug_keys::run(&[&d], b'q');
        let port = pv_console::of(&d).unwrap().port;
        let head = format!("d1 'test1' layout {} vcpus 2 running pause 0", abi.name());
        assert!(out.lines().next().unwrap().starts_with(&head), "{out}");
        assert!(out.contains(&format!("console gfn {RING_GFN:#x} port {port}")), "{out}");
        assert!(out.contains("d1v0 ") && out.contains("vcpu_info guest: gfn 0x5 offset 0x40"), "{out}");
        let v1 = out.lines().find(|l| l.trim_start().starts_with("d1v1 ")).unwrap();
        let default =
            guest_area::location(&d, lantern_common::area::AreaKind::VcpuInfo, &d.vcpu(1).unwrap().areas().vcpu_info);
        assert!(v1.ends_with(&default.to_string()), "{v1}");
        assert!(v1.contains(" down "), "vCPU 1 is down: {v1}");
    }
}

#[test]
fn key_r_shows_runstates_and_their_areas() {
    let d = with_console(layouts()[0], 1);
    guest_area::register_runstate_area(&d, Some(0), d.vcpu(0).unwrap(), 0x6000 + 0x80).unwrap();
    let out = debug_keys::run(&[&d], b'r');
    let l0 = out.lines().find(|l| l.starts_with("d1v0 ")).unwrap();
    assert!(l0.starts_with("d1v0 runnable since ") && l0.ends_with("area at gfn 0x6 offset 0x80"), "{l0}");
    let l1 = out.lines().find(|l| l.starts_with("d1v1 ")).unwrap();
    assert!(l1.starts_with("d1v1 offline ") && l1.ends_with("no area registered"), "{l1}");
}

#[test]
fn key_e_lists_ports_with_binding_vcpu_and_bits() {
    for abi in layouts() {
        let d = with_console(abi, 1);
        let mut arch = fake_vcpus(2);
        write_phys(&d, ARG, EvtchnBindIpi { vcpu: 1, port: 0 }.as_bytes()).unwrap();
        assert_eq!(call(&d, &mut arch, nr::EVENT_CHANNEL_OP, [evtchnop::BIND_IPI, ARG, 0, 0, 0, 0]), 0);
        let ipi = pv_console::of(&d).unwrap().port + 1;
        evtchn::send(&d, ipi).unwrap();
        let out = debug_keys::run(&[&d], b'e');
        let console = pv_console::of(&d).unwrap().port;
        assert!(out.starts_with("d1 event channels: 2 ports bound\n"), "{out}");
        assert!(out.contains(&format!("  port {console}: console backend vcpu 0 pending 0 masked 0")), "{out}");
        assert!(out.contains(&format!("  port {ipi}: ipi vcpu 1 pending 1 masked 0")), "{out}");
    }
}

#[test]
fn key_g_shows_grant_entries_in_use_with_their_pins() {
    for abi in layouts() {
        let d1 = with_console(abi, 1);
        let d2 = TestDomain::new(abi).id(2).build();
        grant_table::map_frame(&d1, 0, Gfn(50)).unwrap();
        let e = GrantEntryV1 { flags: gtf::PERMIT_ACCESS, domid: 2, frame: 10 };
        write_phys(&d1, gaddr(50, 8 * 3), e.as_bytes()).unwrap();
        let dir = vec![d1.clone()];
        grant_table::map_grant_ref(&d2, &dir, gaddr(40, 0), gntmap::HOST_MAP, 3, 1).unwrap();
        let out = debug_keys::run(&[&d1, &d2], b'g');
        assert!(out.contains("d1 grant table v1: 1 frames [0x32], 512 entries, 1 in use, 0 mappings held"), "{out}");
        assert!(out.contains("  gref 3: flags 0x"), "{out}");
        assert!(out.contains("to d2 frame 0xa maps/copies read 0 write 1"), "{out}");
        assert!(out.contains("d2 grant table v1: 0 frames [], 0 entries, 0 in use, 1 mappings held"), "{out}");
    }
}

#[test]
fn soft_reset_binds_the_console_port_again() {
    let d = with_console(layouts()[0], 1);
    let mut arch = fake_vcpus(2);
    let old = pv_console::of(&d).unwrap().port;
    d.shutdown(xen_abi::nr::shutdown::SOFT_RESET);
    lantern_common::lifecycle::soft_reset(&d, &FakeDomain).unwrap();
    let c = pv_console::of(&d).unwrap();
    assert_eq!(d.evtchn.lock().get(c.port).unwrap().state, ChannelState::ConsoleBackend);
    assert_eq!(get_param(&d, &mut arch, hvm_param::CONSOLE_EVTCHN), Ok(c.port as u64));
    assert_eq!(c.port, old, "the first free port again, after every port was closed");
    guest_write(&d, b"after reset\n");
    write_phys(&d, ARG, EvtchnPort { port: c.port }.as_bytes()).unwrap();
    assert_eq!(call(&d, &mut arch, nr::EVENT_CHANNEL_OP, [evtchnop::SEND, ARG, 0, 0, 0, 0]), 0);
    assert_eq!(history(&d).last().map(String::as_str), Some("after reset"));
}
