//! The IOIO exit: port I/O. No device answers (IN reads all ones, OUT is
//! dropped) except the debug port, whose bytes, from OUT or a string OUTS,
//! become the domain's console output. A port the board declares undecoded
//! is let through to the machine after its first access in a domain (logged
//! once, as every unanswered port): the machine answers it exactly as the
//! exit would, without the exit's cost (Linux's PIT calibration on AMD reads
//! port 0x42 100,000 times when no PIT answers).

use core::ops::RangeInclusive;

use lantern_common::addr::Gva;
use lantern_common::arch::VcpuExit;
use lantern_common::diag::Unhandled;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, VirtMem};

use crate::vcpu::SvmVcpu;
use crate::vmcb::{ioio, rflags, seg_attr, vector};

/// The debug port whose bytes become the domain's console output.
pub use xen_abi::arch_x86::DEBUG_PORT;

/// Most bytes one exit copies for `rep outs`: a longer one is resumed by
/// re-executing the instruction with the remaining count.
const MAX_PER_EXIT: u64 = 4096;

/// The ports the board decodes to nothing, declared once at boot.
static UNDECODED: spin::Once<&'static [RangeInclusive<u16>]> = spin::Once::new();

/// Declares the ports the machine decodes to nothing (reads all ones, writes
/// vanish, no state). The board calls this at most once, before any domain
/// runs, and only for ports it has checked (e.g. the PIT's on a machine
/// without one); later calls are ignored.
pub fn declare_undecoded_ports(ranges: &'static [RangeInclusive<u16>]) {
    UNDECODED.call_once(|| ranges);
}

fn undecoded(port: u16) -> bool {
    UNDECODED.get().is_some_and(|ranges| ranges.iter().any(|r| r.contains(&port)))
}

impl SvmVcpu {
    /// Emulates the IN/OUT/OUTS described by EXITINFO1 and continues at
    /// EXITINFO2; string IN crashes the domain (never emulated).
    pub(in crate::vcpu) fn handle_io(&mut self, d: &Domain) -> Option<VcpuExit> {
        let info = self.vmcb.control.exitinfo1;
        let port = (info >> ioio::PORT_SHIFT) as u16;
        let is_in = info & ioio::TYPE_IN != 0;
        let string = info & ioio::STR != 0;
        let rep = info & ioio::REP != 0;
        let size = ((info >> ioio::SIZE_SHIFT) & 7) as u32; // one-hot: 1, 2 or 4 bytes
        let next_rip = self.vmcb.control.exitinfo2;
        if string {
            if is_in {
                return Some(self.crash(d, "string IN is not emulated"));
            }
            // Address size from EXITINFO1 (A16/A32/A64); QEMU leaves those
            // bits clear, so fall back to the code segment's default.
            let addr_mask = match (info >> ioio::ADDR_SHIFT) & 7 {
                4 => u64::MAX,
                2 => 0xFFFF_FFFF,
                1 => 0xFFFF,
                _ if self.is_long() => u64::MAX,
                _ if self.vmcb.save.cs.attrib & seg_attr::DB != 0 => 0xFFFF_FFFF,
                _ => 0xFFFF,
            };
            let total = if rep { self.regs.rcx & addr_mask } else { 1 };
            let count = total.min(MAX_PER_EXIT);
            // EFLAGS.DF walks the source downwards.
            let step = if self.vmcb.save.rflags & rflags::DF != 0 {
                (size.max(1) as u64).wrapping_neg()
            } else {
                size.max(1) as u64
            };
            // An unreadable element faults as the CPU's would: CR2 names
            // it, and RSI/RCX count the elements sent before it.
            let linear_mask = if self.is_long() { u64::MAX } else { 0xFFFF_FFFF };
            let mut fault = None;
            let mut done = 0;
            while done < count {
                let offset = self.regs.rsi.wrapping_add(done.wrapping_mul(step)) & addr_mask;
                let gva = self.vmcb.save.ds.base.wrapping_add(offset) & linear_mask;
                let mut b = [0u8; 1];
                if VirtMem::new(d, self).read_bytes(Gva(gva), &mut b).is_err() {
                    fault = Some(gva);
                    break;
                }
                if port == DEBUG_PORT {
                    d.console.lock().write(&b);
                }
                done += 1;
            }
            let keep = !addr_mask;
            let advance = |r: u64, by: u64| (r & keep) | (r.wrapping_add(by) & addr_mask);
            self.regs.rsi = advance(self.regs.rsi, done.wrapping_mul(step));
            if rep {
                self.regs.rcx = advance(self.regs.rcx, done.wrapping_neg());
            }
            if let Some(gva) = fault {
                self.vmcb.save.cr2 = gva;
                self.inject_exception(vector::PF, Some(0));
                return None;
            }
            if rep && total > count {
                return None; // RIP unchanged: continue next entry.
            }
        } else if is_in {
            // No device answers: all ones. A 32-bit IN zero-extends into RAX.
            let kind = Unhandled::Access { space: "port", index: port as u64, write: false, answer: "all ones" };
            d.note_unhandled(Some(self.vcpu_id), kind);
            self.pass_through_if_undecoded(port);
            let rax = &mut self.vmcb.save.rax;
            *rax = match size {
                1 => *rax | 0xFF,
                2 => *rax | 0xFFFF,
                _ => 0xFFFF_FFFF,
            };
        } else if port == DEBUG_PORT {
            d.console.lock().write(&[self.vmcb.save.rax as u8]);
        } else {
            let kind = Unhandled::Access { space: "port", index: port as u64, write: true, answer: "dropped" };
            d.note_unhandled(Some(self.vcpu_id), kind);
            self.pass_through_if_undecoded(port);
        }
        self.vmcb.save.rip = next_rip;
        None
    }

    /// Stops intercepting `port` for this domain once it has been logged, if
    /// the board declared it undecoded.
    fn pass_through_if_undecoded(&self, port: u16) {
        if undecoded(port) {
            self.dom.maps.pass_through_port(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::String;
    use alloc::vec::Vec;
    use lantern_common::diag::Unhandled;

    use lantern_common::addr::Gpa;
    use lantern_common::guest_memory::{GuestMemory, PhysMem};

    use super::DEBUG_PORT;
    use crate::vcpu::testing::{domain, vcpu};
    use crate::vmcb::event;

    /// EXITINFO1 for an access of `size` bytes to `port`.
    fn info(port: u16, size: u64, flags: u64) -> u64 {
        (port as u64) << 16 | size << 4 | flags
    }

    fn history(d: &lantern_common::domain::Domain) -> Vec<String> {
        d.console.lock().history().map(String::from).collect()
    }

    #[test]
    fn in_reads_all_ones_and_out_reaches_the_debug_port() {
        let d = domain(1);
        let mut v = vcpu(0);
        for (size, before, after) in
            [(1, 0x1234_5600, 0x1234_56FF), (2, 0x1234_0000, 0x1234_FFFF), (4, 0xFFFF_0000_1234_5678, 0xFFFF_FFFF)]
        {
            v.vmcb.save.rax = before;
            v.vmcb.control.exitinfo1 = info(0x71, size, 1);
            v.vmcb.control.exitinfo2 = 0x1002;
            assert_eq!(v.handle_io(&d), None);
            assert_eq!((v.vmcb.save.rax, v.vmcb.save.rip), (after, 0x1002), "IN of {size} bytes");
        }
        for b in *b"ok\n" {
            v.vmcb.save.rax = b as u64;
            v.vmcb.control.exitinfo1 = info(DEBUG_PORT, 1, 0);
            assert_eq!(v.handle_io(&d), None);
        }
        // Another port's OUT is dropped.
        v.vmcb.save.rax = b'x' as u64;
        v.vmcb.control.exitinfo1 = info(0x80, 1, 0);
        assert_eq!(v.handle_io(&d), None);
        assert_eq!(history(&d), ["ok"]);
        // Both kinds of unanswered access are counted for `lantern.log=debug`;
        // the debug port is not one of them.
        let diag = d.diag.lock();
        let read = Unhandled::Access { space: "port", index: 0x71, write: false, answer: "all ones" };
        let write = Unhandled::Access { space: "port", index: 0x80, write: true, answer: "dropped" };
        assert_eq!((diag.count(&read), diag.count(&write)), (3, 1));
        assert_eq!(diag.entries().len(), 2);
    }

    #[test]
    fn an_undecoded_port_is_let_through_after_its_first_access_in_each_domain() {
        static PIT: [core::ops::RangeInclusive<u16>; 1] = [0x40..=0x43];
        super::declare_undecoded_ports(&PIT);
        let d = domain(1);
        let (mut v, other) = (vcpu(0), vcpu(0));
        assert!(v.dom.maps.intercepts_port(0x42));
        v.vmcb.control.exitinfo1 = info(0x42, 1, 1);
        assert_eq!(v.handle_io(&d), None);
        assert_eq!(v.vmcb.save.rax & 0xFF, 0xFF, "the first access is answered by the exit");
        assert!(!v.dom.maps.intercepts_port(0x42), "then the machine answers it");
        let read = Unhandled::Access { space: "port", index: 0x42, write: false, answer: "all ones" };
        assert_eq!(d.diag.lock().count(&read), 1);
        // Its neighbours, writes to other ports and other domains keep exiting.
        assert!(v.dom.maps.intercepts_port(0x41) && v.dom.maps.intercepts_port(0x44));
        assert!(other.dom.maps.intercepts_port(0x42));
        v.vmcb.control.exitinfo1 = info(0x43, 1, 0);
        assert_eq!(v.handle_io(&d), None);
        assert!(!v.dom.maps.intercepts_port(0x43));
        // A port the board did not declare is never let through.
        v.vmcb.control.exitinfo1 = info(0x61, 1, 1);
        assert_eq!(v.handle_io(&d), None);
        assert!(v.dom.maps.intercepts_port(0x61));
    }

    #[test]
    fn rep_outs_to_the_debug_port() {
        let d = domain(1);
        let mut v = vcpu(0);
        PhysMem::new(&d).write_bytes(Gpa(0x6000), b"hello\nworld\n").unwrap();
        // rep outsb, 32-bit code segment (address size from CS), forwards.
        v.regs.rsi = 0x6000;
        v.regs.rcx = 12;
        v.vmcb.control.exitinfo1 = info(DEBUG_PORT, 1, (1 << 2) | (1 << 3));
        v.vmcb.control.exitinfo2 = 0x1002;
        assert_eq!(v.handle_io(&d), None);
        assert_eq!(history(&d), ["hello", "world"]);
        assert_eq!((v.regs.rsi, v.regs.rcx, v.vmcb.save.rip), (0x600C, 0, 0x1002));
        // An unreadable source raises #PF and leaves RIP alone.
        v.vmcb.save.rip = 0x1000;
        v.regs.rsi = 0x10_0000;
        v.regs.rcx = 1;
        assert_eq!(v.handle_io(&d), None);
        assert_eq!(v.vmcb.control.eventinj, event::exception(14, Some(0)));
        assert_eq!(v.vmcb.save.rip, 0x1000);
    }

    /// A `rep outs` whose source runs into an unreadable page faults there
    /// as the CPU does: CR2 names the address, and RSI/RCX count the
    /// elements already sent, so returning from the guest's #PF handler
    /// does not send them again.
    #[test]
    fn rep_outs_faulting_midway_reports_the_address_and_keeps_progress() {
        let d = domain(1);
        let mut v = vcpu(0);
        let end = lantern_testkit::RAM_PAGES * 4096;
        PhysMem::new(&d).write_bytes(Gpa(end - 3), b"abc").unwrap();
        v.vmcb.save.cr2 = 0x1234;
        v.regs.rsi = end - 3;
        v.regs.rcx = 5;
        v.vmcb.control.exitinfo1 = info(DEBUG_PORT, 1, (1 << 2) | (1 << 3));
        v.vmcb.control.exitinfo2 = 0x1002;
        assert_eq!(v.handle_io(&d), None);
        assert_eq!(v.vmcb.control.eventinj, event::exception(14, Some(0)));
        assert_eq!(v.vmcb.save.cr2, end, "the address that faulted");
        assert_eq!((v.regs.rsi, v.regs.rcx, v.vmcb.save.rip), (end, 2, 0x1000));
        // Resumed with the page readable: the rest, once.
        PhysMem::new(&d).write_bytes(Gpa(0x6000), b"\n").unwrap();
        v.vmcb.control.eventinj = 0;
        v.regs.rsi = 0x6000;
        v.regs.rcx = 1;
        assert_eq!(v.handle_io(&d), None);
        assert_eq!(history(&d), ["abc"]);
    }
}
