//! The debugger's execution controls in the core (`lantern_common::debug`):
//! breakpoints planted in and removed from guest memory, hidden from the
//! debugger's reads, kept under its writes, traps written by hand taken
//! over; and what a vCPU must arm for each.

use std::sync::Arc;

use lantern_common::addr::{Gpa, Gva};
use lantern_common::debug::{DebugControl, Debugger, HwKind, HwPoint, StopReason};
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, PhysMem, VirtMem};
use lantern_conformance::{layout, FakeVcpu, TestDomain, RAM_PAGES};
use xen_abi::Errno;

const TRAP: &[u8] = &[0xCC];
const BRK: &[u8] = &[0x00, 0x00, 0x20, 0xd4];
/// Where the fake vCPU maps guest-physical 0.
const VBASE: u64 = 0x4000_0000;

fn code() -> Vec<u8> {
    (0..32u8).map(|b| 0x90 ^ b).collect()
}

/// An x86_64 domain with [`code`] at guest-physical 0x2000.
fn domain_with_code() -> Arc<Domain> {
    let d = TestDomain::new(layout("x86_64")).build();
    PhysMem::new(&d).write_bytes(Gpa(0x2000), &code()).unwrap();
    d
}

#[test]
fn a_breakpoint_is_planted_hidden_and_removed() {
    let d = domain_with_code();
    let v = FakeVcpu::identity(RAM_PAGES).mapped_at(VBASE);
    let phys = PhysMem::new(&d);
    let mem = VirtMem::new(&d, &v);
    let mut dbg = Debugger::default();
    dbg.insert_breakpoint(&mem, VBASE + 0x2004, TRAP).unwrap();
    // Planting again is the same breakpoint.
    dbg.insert_breakpoint(&mem, VBASE + 0x2004, TRAP).unwrap();
    assert_eq!(dbg.breakpoints.len(), 1);
    let mut raw = [0u8; 8];
    phys.read_bytes(Gpa(0x2000), &mut raw).unwrap();
    assert_eq!(raw[4], 0xCC, "the guest sees the trap");
    // The debugger does not, by either address.
    let mut seen = [0u8; 8];
    mem.read_bytes(Gva(VBASE + 0x2000), &mut seen).unwrap();
    dbg.hide_breakpoints(&mem, VBASE + 0x2000, &mut seen);
    assert_eq!(seen, code()[..8]);
    let mut seen = [0u8; 8];
    phys.read_bytes(Gpa(0x2000), &mut seen).unwrap();
    dbg.hide_breakpoints(&phys, 0x2000, &mut seen);
    assert_eq!(seen, code()[..8]);
    assert!(dbg.planted_at(&d, &v, VBASE + 0x2004));
    assert!(!dbg.planted_at(&d, &v, VBASE + 0x2005), "the guest's own trap elsewhere is not the debugger's");
    assert!(dbg.control_for(d.id, 0).trap_breakpoints);
    dbg.remove_breakpoint(&d, VBASE + 0x2004).unwrap();
    phys.read_bytes(Gpa(0x2000), &mut raw).unwrap();
    assert_eq!(raw, code()[..8], "the guest's byte is back");
    assert!(!dbg.control_for(d.id, 0).trap_breakpoints);
    // Removing what is not there is not an error.
    dbg.remove_breakpoint(&d, VBASE + 0x2004).unwrap();
}

/// A client's breakpoints are bounded: past `MAX_BREAKPOINTS` a new one is
/// refused (`-ENOSPC`) and nothing is written into the guest; one already
/// planted is still found (found by the packet review: a `Z0` at each new
/// address grew the list without end).
#[test]
fn breakpoints_are_bounded() {
    use lantern_common::debug::MAX_BREAKPOINTS;
    let d = domain_with_code();
    let v = FakeVcpu::identity(RAM_PAGES).mapped_at(VBASE);
    let phys = PhysMem::new(&d);
    let mem = VirtMem::new(&d, &v);
    let mut dbg = Debugger::default();
    dbg.insert_breakpoint(&mem, VBASE + 0x2004, TRAP).unwrap();
    // Fill the rest of the list with planted breakpoints' entries.
    let planted = dbg.breakpoints[0].clone();
    dbg.breakpoints.resize(MAX_BREAKPOINTS, planted);
    assert_eq!(dbg.insert_breakpoint(&mem, VBASE + 0x2008, TRAP), Err(Errno::ENOSPC));
    let mut raw = [0u8; 16];
    phys.read_bytes(Gpa(0x2000), &mut raw).unwrap();
    assert_eq!(raw[8], code()[8], "nothing planted");
    // The one already there is the same breakpoint, not a new one.
    assert_eq!(dbg.insert_breakpoint(&mem, VBASE + 0x2004, TRAP), Ok(()));
}

#[test]
fn breakpoints_and_debugger_writes_reach_code_the_guest_maps_read_only() {
    // A kernel maps its text read-only: the guest cannot write it, a
    // debugger can (as ptrace writes a process's text).
    let d = TestDomain::new(layout("x86_64")).build();
    let v = FakeVcpu::identity(RAM_PAGES).mapped_at(VBASE).read_only_below(0x4000);
    PhysMem::new(&d).write_bytes(Gpa(0x2000), &code()).unwrap();
    let mem = VirtMem::new(&d, &v);
    assert!(mem.write_bytes(Gva(VBASE + 0x2000), &[1]).is_err(), "read-only to the guest");
    let mut dbg = Debugger::default();
    dbg.insert_breakpoint(&mem, VBASE + 0x2004, TRAP).unwrap();
    dbg.write(&mem, VBASE + 0x2010, &[0xAB, 0xCD], TRAP).unwrap();
    let mut raw = [0u8; 0x12];
    PhysMem::new(&d).read_bytes(Gpa(0x2000), &mut raw).unwrap();
    assert_eq!((raw[4], raw[0x10], raw[0x11]), (0xCC, 0xAB, 0xCD));
    // Only guest RAM: an address with no memory behind it is still refused.
    assert!(dbg.write(&mem, VBASE + (RAM_PAGES << 12), &[1], TRAP).is_err());
}

#[test]
fn a_write_over_a_breakpoint_keeps_the_trap_and_updates_what_it_hides() {
    let d = TestDomain::new(layout("arm64")).build();
    let phys = PhysMem::new(&d);
    phys.write_bytes(Gpa(0x3000), &code()).unwrap();
    let mut dbg = Debugger::default();
    dbg.insert_breakpoint(&phys, 0x3008, BRK).unwrap();
    // The debugger rewrites 16 bytes across the breakpoint.
    let new: Vec<u8> = (0..16u8).collect();
    dbg.write(&phys, 0x3004, &new, BRK).unwrap();
    let mut raw = [0u8; 16];
    phys.read_bytes(Gpa(0x3004), &mut raw).unwrap();
    assert_eq!(&raw[4..8], BRK, "still planted");
    dbg.hide_breakpoints(&phys, 0x3004, &mut raw);
    assert_eq!(raw.to_vec(), new, "reads show what the debugger wrote");
    dbg.remove_breakpoint(&d, 0x3008).unwrap();
    phys.read_bytes(Gpa(0x3004), &mut raw).unwrap();
    assert_eq!(raw.to_vec(), new, "and removing it puts that back");
}

#[test]
fn a_trap_written_by_hand_becomes_a_planted_breakpoint_and_its_restore_removes_it() {
    let d = domain_with_code();
    let phys = PhysMem::new(&d);
    let mut dbg = Debugger::default();
    // gdb's fallback when a stub refuses Z0: `X addr,1:\xcc`, later the
    // original byte back.
    dbg.write(&phys, 0x2003, TRAP, TRAP).unwrap();
    assert_eq!(dbg.breakpoints.len(), 1, "the trap is the debugger's, so hitting it stops, never crashes");
    let mut b = [0u8; 1];
    phys.read_bytes(Gpa(0x2003), &mut b).unwrap();
    assert_eq!(b, [0xCC]);
    dbg.write(&phys, 0x2003, &code()[3..4], TRAP).unwrap();
    assert!(dbg.breakpoints.is_empty());
    phys.read_bytes(Gpa(0x2003), &mut b).unwrap();
    assert_eq!(b[0], code()[3]);
}

#[test]
fn a_breakpoint_is_refused_where_it_cannot_go() {
    let d = TestDomain::new(layout("arm64")).build();
    let v = FakeVcpu::identity(RAM_PAGES).mapped_at(VBASE);
    let mut dbg = Debugger::default();
    // Not mapped, straddling a page, no trap instruction.
    assert!(dbg.insert_breakpoint(&VirtMem::new(&d, &v), 0x10, BRK).is_err());
    assert!(dbg.insert_breakpoint(&PhysMem::new(&d), 0x2ffe, BRK).is_err());
    assert!(dbg.insert_breakpoint(&PhysMem::new(&d), 0x2000, &[]).is_err());
    assert!(dbg.breakpoints.is_empty());
}

#[test]
fn a_session_end_restores_the_guests_and_disarms_everything() {
    let d = domain_with_code();
    let phys = PhysMem::new(&d);
    let mut dbg = Debugger::default();
    dbg.insert_breakpoint(&phys, 0x2001, TRAP).unwrap();
    dbg.hw_points.push((d.id, HwPoint { addr: 0x5000, len: 8, kind: HwKind::Write }));
    dbg.sessions[0].step = Some((d.id, 0));
    dbg.sessions[0].run_only = Some(vec![(d.id, 0)]);
    dbg.sessions[0].catch = Some(vec![24]);
    dbg.record(d.id, 0, StopReason::SwBreak);
    dbg.end_session(0, |id| (id == d.id).then_some(&*d));
    let mut raw = [0u8; 4];
    phys.read_bytes(Gpa(0x2000), &mut raw).unwrap();
    assert_eq!(raw, code()[..4]);
    assert_eq!(dbg.control_for(d.id, 0), DebugControl::default());
    assert!(dbg.sessions[0].run_only.is_none() && dbg.sessions[0].catch.is_none() && dbg.sessions[0].stops.is_empty());
}

#[test]
fn each_vcpu_arms_its_own_step_and_its_domains_points() {
    let mut dbg = Debugger::default();
    let p = HwPoint { addr: 0x5000, len: 4, kind: HwKind::Access };
    dbg.hw_points.push((1, p));
    dbg.hw_points.push((2, HwPoint { addr: 0x6000, len: 1, kind: HwKind::Execute }));
    dbg.sessions[0].step = Some((1, 1));
    let c = dbg.control_for(1, 1);
    assert!(c.single_step && !c.trap_breakpoints);
    assert_eq!(c.hw_points, [p]);
    assert!(!dbg.control_for(1, 0).single_step, "only the stepped vCPU steps");
    assert_eq!(dbg.control_for(3, 0), DebugControl::default());
    dbg.sessions[0].catch = Some(vec![]);
    assert!(dbg.sessions[0].catches(24) && dbg.sessions[0].catches(29), "an empty list catches every hypercall");
    dbg.sessions[0].catch = Some(vec![24]);
    assert!(dbg.sessions[0].catches(24) && !dbg.sessions[0].catches(29));
}
