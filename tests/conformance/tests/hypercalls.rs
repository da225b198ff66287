//! Hypercall dispatch in Xen numbering, driven as a guest would: argument
//! structs written to guest memory, numbers and pointers in, errnos out.

use lantern_common::addr::Gfn;
use lantern_common::area::Placement;
use lantern_common::domain::Domain;
use lantern_common::hypercall::{dispatch, Call, Outcome};
use lantern_common::runstate;
use lantern_conformance::*;
use xen_abi::errno::Errno;
use xen_abi::nr::hypercall as nr;
use xen_abi::nr::runstate::{
    BLOCKED as RUNSTATE_BLOCKED, RUNNABLE as RUNSTATE_RUNNABLE, RUNNING as RUNSTATE_RUNNING, XEN_RUNSTATE_UPDATE,
};
use xen_abi::nr::{consoleio, domid, evtchnop, mapspace, memop, schedop, shutdown, vcpuop, xenver};
use xen_abi::public::{
    EvtchnBindIpi, EvtchnPort, SchedRemoteShutdown, SchedShutdown, VcpuRegisterArea, VcpuRegisterVcpuInfo,
    XenAddToPhysmap, XenAddToPhysmapUlong32,
};
use zerocopy::IntoBytes;

const ARG: u64 = 0x1000; // gfn 1 holds hypercall argument structs

fn call(
    d: &Domain,
    arch: &mut [Box<dyn lantern_common::arch::ArchVcpu>],
    vcpu: u32,
    nr: u64,
    args: [u64; 6],
) -> Outcome {
    dispatch(&mut Call::new(d, vcpu, arch), nr, args)
}

fn vcpu_op(d: &Domain, arch: &mut [Box<dyn lantern_common::arch::ArchVcpu>], cmd: u64, target: u64, arg: &[u8]) -> i64 {
    write_phys(d, ARG, arg).unwrap();
    call(d, arch, 0, nr::VCPU_OP, [cmd, target, ARG, 0, 0, 0]).ret
}

fn reg_info_arg(gfn: u64, off: u32) -> VcpuRegisterVcpuInfo {
    VcpuRegisterVcpuInfo { mfn: gfn, offset: off, rsvd: 0 }
}

fn reg_info(gfn: u64, off: u32) -> Vec<u8> {
    reg_info_arg(gfn, off).as_bytes().to_vec()
}

/// The `xen_add_to_physmap` argument in the `xen_ulong_t` width of the
/// layout in force.
fn add_to_physmap(xen_ulong_size: usize, arg: XenAddToPhysmap) -> Vec<u8> {
    if xen_ulong_size == 8 {
        arg.as_bytes().to_vec()
    } else {
        let narrow = XenAddToPhysmapUlong32 {
            domid: arg.domid,
            size: arg.size,
            space: arg.space,
            idx: arg.idx as u32,
            gpfn: arg.gpfn as u32,
        };
        narrow.as_bytes().to_vec()
    }
}

#[test]
fn register_vcpu_info_errnos_through_the_hypercall() {
    for abi in layouts() {
        let (d, _) = domain(abi, 2);
        let mut arch = fake_vcpus(2);
        let a = &mut arch[..];
        let e = |x: Errno| x.to_hypercall_ret();
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, 0, &reg_info(5, 4094)), e(Errno::ENXIO));
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, 0, &reg_info(5, 3)), e(Errno::ENXIO));
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, 0, &reg_info(RAM_PAGES * 2, 0)), e(Errno::EINVAL));
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, 7, &reg_info(5, 0)), e(Errno::ENOENT));
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, 1 << 40, &reg_info(5, 0)), e(Errno::ENOENT));
        // Xen never reads `rsvd` (Linux leaves it uninitialised): garbage
        // there must not fail the registration.
        let rsvd = VcpuRegisterVcpuInfo { rsvd: 0xdead_beef, ..reg_info_arg(5, 0) };
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, 0, rsvd.as_bytes()), 0);
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, 0, &reg_info(6, 0)), e(Errno::EBUSY));
        // A bad argument pointer is EFAULT, never a crash.
        assert_eq!(
            call(&d, a, 0, nr::VCPU_OP, [vcpuop::REGISTER_VCPU_INFO, 1, u64::MAX - 3, 0, 0, 0]).ret,
            e(Errno::EFAULT)
        );
        assert_eq!(call(&d, a, 0, 9999, [0; 6]).ret, e(Errno::ENOSYS));
        assert_eq!(call(&d, a, 0, nr::VCPU_OP, [77, 0, ARG, 0, 0, 0]).ret, e(Errno::ENOSYS));
    }
}

#[test]
fn initialise_refused_on_the_dummy_area_until_registered() {
    for abi in layouts() {
        let n = abi.legacy_max_vcpus() + 1;
        let (d, _) = domain(abi, n);
        let mut arch = fake_vcpus(n);
        let a = &mut arch[..];
        let hi = (n - 1) as u64;
        let entry = 0x4000u64.to_le_bytes();
        assert_eq!(vcpu_op(&d, a, vcpuop::INITIALISE, hi, &entry), Errno::EINVAL.to_hypercall_ret());
        assert_eq!(vcpu_op(&d, a, vcpuop::UP, hi, &[]), Errno::EINVAL.to_hypercall_ret(), "not initialised");
        assert_eq!(vcpu_op(&d, a, vcpuop::IS_UP, hi, &[]), 0);
        assert_eq!(vcpu_op(&d, a, vcpuop::REGISTER_VCPU_INFO, hi, &reg_info(9, 0)), 0);
        assert_eq!(vcpu_op(&d, a, vcpuop::INITIALISE, hi, &entry), 0);
        assert_eq!(vcpu_op(&d, a, vcpuop::INITIALISE, hi, &entry), Errno::EEXIST.to_hypercall_ret());
        assert_eq!(vcpu_op(&d, a, vcpuop::UP, hi, &[]), 0);
        assert_eq!(vcpu_op(&d, a, vcpuop::IS_UP, hi, &[]), 1);
        let v = d.vcpu(hi as u32).unwrap();
        assert!(d.vcpu_runnable(v));
        assert_eq!(v.runstate().state, RUNSTATE_RUNNABLE);
        assert_eq!(vcpu_op(&d, a, vcpuop::DOWN, hi, &[]), 0);
        assert_eq!(vcpu_op(&d, a, vcpuop::IS_UP, hi, &[]), 0);
    }
}

#[test]
fn runstate_area_follows_state_changes_with_the_update_flag_clear() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let mut arch = fake_vcpus(1);
        let addr = (11u64 << 12) + 64;
        assert_eq!(
            vcpu_op(&d, &mut arch, vcpuop::REGISTER_RUNSTATE_PHYS_AREA, 0, VcpuRegisterArea { addr }.as_bytes()),
            0
        );
        let v = d.vcpu(0).unwrap();
        let area = v.areas().runstate.unwrap();
        let r0 = runstate::read_area(abi, &area);
        assert_eq!(r0.state, RUNSTATE_RUNNABLE, "populated with the current runstate");
        clock.advance(500);
        runstate::change(&d, v, RUNSTATE_RUNNING);
        clock.advance(2_000);
        runstate::change(&d, v, RUNSTATE_BLOCKED);
        clock.advance(300);
        runstate::change(&d, v, RUNSTATE_RUNNABLE);
        let r = runstate::read_area(abi, &area);
        assert_eq!(r, v.runstate(), "{}", abi.name());
        assert_eq!(r.state_entry_time & XEN_RUNSTATE_UPDATE, 0);
        assert_eq!(r.time[RUNSTATE_RUNNING as usize], 2_000);
        assert_eq!(r.time[RUNSTATE_BLOCKED as usize], 300);
        assert_eq!(r.time[RUNSTATE_RUNNABLE as usize], 500);
        // Entered the current state at the last change.
        assert_eq!(r.state_entry_time, 1_000_000 + 2_800);
        // get_runstate_info writes the same record in the layout in force.
        let out = 13u64 << 12;
        assert_eq!(call(&d, &mut arch, 0, nr::VCPU_OP, [vcpuop::GET_RUNSTATE_INFO, 0, out, 0, 0, 0]).ret, 0);
        let mut b = vec![0u8; abi.runstate().size];
        read_phys(&d, out, &mut b).unwrap();
        let e = abi.runstate().state_entry_time.offset;
        assert_eq!(u64::from_le_bytes(b[e..e + 8].try_into().unwrap()), r.state_entry_time);
    }
}

#[test]
fn time_area_versions_are_even_and_time_advances() {
    for abi in layouts() {
        let (d, clock) = domain(abi, 1);
        let mut arch = fake_vcpus(1);
        let addr = (12u64 << 12) + 32;
        assert_eq!(
            vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_PHYS_AREA, 0, VcpuRegisterArea { addr }.as_bytes()),
            0
        );
        let v = d.vcpu(0).unwrap();
        let area = v.areas().time.unwrap();
        let t0 = lantern_common::time::read_record(&d, &area, area.offset);
        clock.advance(10_000);
        lantern_common::time::update_vcpu_system_time(&d, v);
        let t1 = lantern_common::time::read_record(&d, &area, area.offset);
        assert!(t0.version.is_multiple_of(2) && t1.version.is_multiple_of(2) && t1.version > t0.version);
        assert_eq!(t1.system_time - t0.system_time, 10_000);
        assert_eq!(t1.tsc_timestamp, t1.system_time * 3);
        // The copy inside vcpu_info got the same record; its version is its
        // own (each record continues from the version it holds, as in Xen).
        let vi = v.areas().vcpu_info;
        let inner = lantern_common::time::read_record(&d, &vi, vi.offset + abi.vcpu_info().time);
        assert!(inner.version.is_multiple_of(2));
        assert_eq!(lantern_common::time::TimeInfo { version: t1.version, ..inner }, t1);
        // A misaligned time area in this layout.
        let bad = (12u64 << 12) + 2;
        assert_eq!(
            vcpu_op(&d, &mut arch, vcpuop::REGISTER_VCPU_TIME_PHYS_AREA, 0, VcpuRegisterArea { addr: bad }.as_bytes()),
            Errno::ENXIO.to_hypercall_ret()
        );
    }
}

#[test]
fn event_channel_send_sets_pending_bits_and_requests_an_upcall() {
    for abi in layouts() {
        let (d, _) = domain(abi, 2);
        let mut arch = fake_vcpus(2);
        write_phys(&d, ARG, EvtchnBindIpi { vcpu: 1, port: 0 }.as_bytes()).unwrap();
        assert_eq!(call(&d, &mut arch, 0, nr::EVENT_CHANNEL_OP, [evtchnop::BIND_IPI, ARG, 0, 0, 0, 0]).ret, 0);
        let mut bound = EvtchnBindIpi::default();
        read_phys(&d, ARG, bound.as_mut_bytes()).unwrap();
        let port = bound.port;
        assert_eq!(port, 1);
        let v1 = d.vcpu(1).unwrap();
        v1.take_upcall_request();
        // Clear the slot (vCPU 1 has a slot on x86 only; on arm it is on the dummy).
        write_phys(&d, ARG, EvtchnPort { port }.as_bytes()).unwrap();
        assert_eq!(call(&d, &mut arch, 0, nr::EVENT_CHANNEL_OP, [evtchnop::SEND, ARG, 0, 0, 0, 0]).ret, 0);
        let si = abi.shared_info();
        assert_eq!(d.shared_info().read_uint(si.evtchn_pending.offset, abi.xen_ulong_size()).unwrap(), 1 << port);
        assert!(d.upcall_pending(v1));
        assert!(v1.take_upcall_request());
        let vi = v1.areas().vcpu_info;
        let sel = vi
            .page
            .read_uint(vi.offset + abi.vcpu_info().pending_sel.offset, abi.vcpu_info().pending_sel.size)
            .unwrap();
        assert_eq!(sel & 1, 1, "word 0 selected");
        // Sending to a closed port is EINVAL.
        write_phys(&d, ARG, EvtchnPort { port: 99 }.as_bytes()).unwrap();
        assert_eq!(
            call(&d, &mut arch, 0, nr::EVENT_CHANNEL_OP, [evtchnop::SEND, ARG, 0, 0, 0, 0]).ret,
            Errno::EINVAL.to_hypercall_ret()
        );
    }
}

#[test]
fn shared_info_mapping_and_sched_ops() {
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let mut arch = fake_vcpus(1);
        let w = abi.xen_ulong_size();
        let map = XenAddToPhysmap { domid: domid::SELF, size: 0, space: mapspace::SHARED_INFO, idx: 0, gpfn: 40 };
        write_phys(&d, ARG, &add_to_physmap(w, map)).unwrap();
        assert_eq!(
            call(&d, &mut arch, 0, nr::MEMORY_OP, [memop::ADD_TO_PHYSMAP, ARG, 0, 0, 0, 0]).ret,
            0,
            "{}",
            abi.name()
        );
        assert_eq!(d.shared_info_gfn(), Some(Gfn(40)));
        assert!(std::sync::Arc::ptr_eq(&page(&d, 40), d.shared_info()));
        // The guest now sees its vcpu_info slot through that gfn.
        assert_eq!(d.vcpu(0).unwrap().areas().vcpu_info.placement, Placement::SharedInfoSlot);
        // Another domain's id is refused.
        write_phys(&d, ARG, &add_to_physmap(w, XenAddToPhysmap { domid: 5, ..map })).unwrap();
        assert_eq!(
            call(&d, &mut arch, 0, nr::MEMORY_OP, [memop::ADD_TO_PHYSMAP, ARG, 0, 0, 0, 0]).ret,
            Errno::ESRCH.to_hypercall_ret()
        );
        let o = call(&d, &mut arch, 0, nr::SCHED_OP, [schedop::YIELD, 0, 0, 0, 0, 0]);
        assert!(o.deschedule && o.ret == 0);
        // remote_shutdown is a privileged domain's: refused for oneself
        // (-EPERM, XSM) and for a domain that does not exist (-ESRCH, the
        // lookup), and nothing shuts down.
        for (domain_id, want) in [(d.id, Errno::EPERM), (5, Errno::ESRCH), (domid::SELF, Errno::ESRCH)] {
            let r = SchedRemoteShutdown { domain_id, pad: 0, reason: shutdown::CRASH };
            write_phys(&d, ARG, r.as_bytes()).unwrap();
            let ret = call(&d, &mut arch, 0, nr::SCHED_OP, [schedop::REMOTE_SHUTDOWN, ARG, 0, 0, 0, 0]).ret;
            assert_eq!(ret, want.to_hypercall_ret(), "{} remote_shutdown of {domain_id}", abi.name());
        }
        assert_eq!(d.lifecycle(), lantern_common::domain::Lifecycle::Running);
        write_phys(&d, ARG, SchedShutdown { reason: shutdown::POWEROFF }.as_bytes()).unwrap();
        let o = call(&d, &mut arch, 0, nr::SCHED_OP, [schedop::SHUTDOWN, ARG, 0, 0, 0, 0]);
        assert!(o.deschedule);
        assert_eq!(d.lifecycle(), lantern_common::domain::Lifecycle::Shutdown(shutdown::POWEROFF));
        let version = (xenver::LANTERN_MAJOR << xenver::VERSION_MAJOR_SHIFT) | xenver::LANTERN_MINOR;
        assert_eq!(call(&d, &mut arch, 0, nr::XEN_VERSION, [xenver::VERSION, 0, 0, 0, 0, 0]).ret, i64::from(version));
    }
}

#[test]
fn console_io_lines_are_split() {
    let (d, _) = domain(layouts()[0], 1);
    let mut arch = fake_vcpus(1);
    write_phys(&d, ARG, b"hello\nwor").unwrap();
    assert_eq!(call(&d, &mut arch, 0, nr::CONSOLE_IO, [consoleio::WRITE, 9, ARG, 0, 0, 0]).ret, 0);
    write_phys(&d, ARG, b"ld\n").unwrap();
    assert_eq!(call(&d, &mut arch, 0, nr::CONSOLE_IO, [consoleio::WRITE, 3, ARG, 0, 0, 0]).ret, 0);
    let lines: Vec<String> = d.console.lock().history().map(String::from).collect();
    assert_eq!(lines, ["hello", "world"]);
    assert_eq!(
        call(&d, &mut arch, 0, nr::CONSOLE_IO, [consoleio::WRITE, 1 << 40, ARG, 0, 0, 0]).ret,
        Errno::EINVAL.to_hypercall_ret()
    );
}

#[test]
fn xen_version_strings_clear_their_whole_fields() {
    let (d, _) = domain(layouts()[0], 1);
    let mut arch = fake_vcpus(1);
    write_phys(&d, ARG, &[0xff; 160]).unwrap();
    assert_eq!(call(&d, &mut arch, 0, nr::XEN_VERSION, [xenver::EXTRAVERSION, ARG, 0, 0, 0, 0]).ret, 0);
    let mut b = [0u8; 17];
    read_phys(&d, ARG, &mut b).unwrap();
    assert_eq!(&b[..9], b"-lantern\0");
    assert!(b[9..16].iter().all(|x| *x == 0), "rest of extraversion[16] cleared");
    assert_eq!(b[16], 0xff, "nothing past the field");
    assert_eq!(call(&d, &mut arch, 0, nr::XEN_VERSION, [xenver::COMPILE_INFO, ARG, 0, 0, 0, 0]).ret, 0);
    let mut info = [0u8; 145];
    read_phys(&d, ARG, &mut info).unwrap();
    assert_eq!(&info[..6], b"rustc\0");
    assert_eq!(&info[64..72], b"lantern\0");
    assert!(info[72..144].iter().all(|x| *x == 0));
    assert_eq!(info[144], 0xff);
    assert_eq!(call(&d, &mut arch, 0, nr::XEN_VERSION, [99, ARG, 0, 0, 0, 0]).ret, Errno::ENOSYS.to_hypercall_ret());
}

#[test]
fn the_upcall_vector_rule_is_the_callers_arch() {
    use xen_abi::nr::hvmop;
    use xen_abi::public::XenHvmEvtchnUpcallVector;
    for abi in layouts() {
        let (d, _) = domain(abi, 2);
        let mut arch = fake_vcpus(2);
        let set = |arch: &mut [Box<dyn lantern_common::arch::ArchVcpu>], vcpu: u32, vector: u8| {
            let arg = XenHvmEvtchnUpcallVector { vcpu, vector, pad: [0; 3] };
            write_phys(&d, ARG, arg.as_bytes()).unwrap();
            call(&d, arch, 0, nr::HVM_OP, [hvmop::SET_EVTCHN_UPCALL_VECTOR, ARG, 0, 0, 0, 0]).ret
        };
        // The fake vCPU models an arch whose upcalls ride interrupt vectors
        // from 0x10: below is refused and nothing is recorded.
        assert_eq!(set(&mut arch, 1, 0x0F), Errno::EINVAL.to_hypercall_ret());
        assert_eq!(d.vcpu(1).unwrap().upcall_vector(), 0);
        assert_eq!(set(&mut arch, 1, 0xF3), 0);
        assert_eq!(d.vcpu(1).unwrap().upcall_vector(), 0xF3);
        assert_eq!(set(&mut arch, 9, 0xF3), Errno::ENOENT.to_hypercall_ret(), "no vCPU 9");
    }
}

#[test]
fn enosys_hypercalls_are_counted_for_the_diagnostics() {
    use lantern_common::diag::Unhandled;
    let (d, _) = domain(layout("x86_64"), 1);
    let mut arch = fake_vcpus(1);
    assert_eq!(call(&d, &mut arch, 0, 63, [7, 0, 0, 0, 0, 0]).ret, Errno::ENOSYS.to_hypercall_ret());
    assert_eq!(call(&d, &mut arch, 0, 63, [7, 0, 0, 0, 0, 0]).ret, Errno::ENOSYS.to_hypercall_ret());
    // A known hypercall with an unknown sub-op is counted too, a success is not.
    assert_eq!(call(&d, &mut arch, 0, nr::VCPU_OP, [99, 0, 0, 0, 0, 0]).ret, Errno::ENOSYS.to_hypercall_ret());
    assert_eq!(call(&d, &mut arch, 0, nr::VCPU_OP, [vcpuop::IS_UP, 0, 0, 0, 0, 0]).ret, 1);
    let diag = d.diag.lock();
    assert_eq!(diag.count(&Unhandled::Hypercall { nr: 63, sub: 7 }), 2);
    assert_eq!(diag.count(&Unhandled::Hypercall { nr: nr::VCPU_OP, sub: 99 }), 1);
    assert_eq!(diag.entries().len(), 2);
    assert_eq!(diag.summary_lines(d.id)[0], "d1: hypercall 24 (vcpu_op) sub-op 99: -ENOSYS (x1)");
}

#[test]
fn get_features_is_the_arch_word_and_only_submap_is_written() {
    use xen_abi::nr::xenver;
    for abi in layouts() {
        let (d, _) = domain(abi, 1);
        let mut arch = fake_vcpus(1);
        // struct xen_feature_info { uint32_t submap_idx; uint32_t submap; }
        let get = |arch: &mut [Box<dyn lantern_common::arch::ArchVcpu>], idx: u32| {
            let mut b = idx.to_le_bytes().to_vec();
            b.extend_from_slice(&0xffff_ffffu32.to_le_bytes());
            write_phys(&d, ARG, &b).unwrap();
            let ret = call(&d, arch, 0, nr::XEN_VERSION, [xenver::GET_FEATURES, ARG, 0, 0, 0, 0]).ret;
            let mut out = [0u8; 8];
            read_phys(&d, ARG, &mut out).unwrap();
            (ret, u32::from_le_bytes(out[..4].try_into().unwrap()), u32::from_le_bytes(out[4..].try_into().unwrap()))
        };
        assert_eq!(get(&mut arch, 0), (0, 0, FAKE_FEATURES), "{}", abi.name());
        // Xen has one submap: any other index is EINVAL and nothing is written.
        assert_eq!(get(&mut arch, 1), (Errno::EINVAL.to_hypercall_ret(), 1, 0xffff_ffff));
        assert_eq!(get(&mut arch, u32::MAX).0, Errno::EINVAL.to_hypercall_ret());
    }
}
