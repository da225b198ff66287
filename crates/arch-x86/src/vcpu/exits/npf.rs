//! The nested-page-fault exit: a guest access to a frame the nested tables
//! do not map (or map read-only). The platform-device window, and RAM the
//! guest ballooned out (a p2m hole, which Xen treats as emulated MMIO no
//! ioreq server claims), answer as Xen answers MMIO nobody claims: reads
//! return all ones, writes are discarded. A write to read-only RAM (a
//! read-only grant mapping) is discarded too, as Xen discards writes to
//! `p2m_grant_map_ro` / `p2m_ram_ro` frames, and the guest continues after
//! the store. Any other fault crashes the domain.

use alloc::boxed::Box;

use lantern_common::addr::{Gpa, Gva};
use lantern_common::arch::VcpuExit;
use lantern_common::diag::Unhandled;
use lantern_common::domain::Domain;
use lantern_common::guest_memory::{GuestMemory, VirtMem};
use lantern_common::memory::{P2mType, PAGE_SIZE};

use crate::decode::{decode_mov_store_len, CodeSize, MAX_INSN_LEN};
use crate::vcpu::{SvmShared, SvmVcpu};
use crate::vmcb::{cr0, npf_info, seg_attr};

/// The platform-device window (I/O APIC, HPET, local APIC) a PVH guest may
/// probe although Lantern emulates none of those devices.
const UNCLAIMED_MMIO: core::ops::Range<u64> = 0xFEC0_0000..0xFF00_0000;

/// The page standing in for every unclaimed MMIO frame of a domain: all
/// ones, mapped read-only so it stays that way.
#[repr(C, align(4096))]
pub(in crate::vcpu) struct SinkPage(pub(in crate::vcpu) [u8; PAGE_SIZE]);

impl SinkPage {
    /// A fresh all-ones page.
    pub(in crate::vcpu) fn new() -> Box<Self> {
        Box::new(SinkPage([0xFF; PAGE_SIZE]))
    }
}

impl SvmShared {
    /// Maps the domain's sink page read-only at `gpa`'s frame if `gpa` is
    /// unclaimed MMIO (in the platform-device window or in the RAM the
    /// domain was built with, and nothing in the p2m): reads then see "no
    /// device" without an exit, writes fault and are dropped by
    /// [`SvmVcpu::handle_npf`]. When the guest populates the gfn again, the
    /// p2m change replaces the sink with the new frame. Returns whether
    /// `gpa` is unclaimed MMIO.
    fn map_unclaimed(&self, d: &Domain, gpa: u64) -> bool {
        let gfn = Gpa(gpa).gfn();
        if !(UNCLAIMED_MMIO.contains(&gpa) || d.is_boot_ram(gfn)) || d.p2m.lock().get(gfn).is_some() {
            return false;
        }
        self.npt.lock().map(gpa & !0xFFF, self.sink.0.as_ptr() as u64, false);
        true
    }
}

impl SvmVcpu {
    /// The default operand/address size of the code the vCPU runs.
    pub(in crate::vcpu) fn code_size(&self) -> CodeSize {
        let s = &self.vmcb.save;
        if self.is_long() {
            CodeSize::Bits64
        } else if s.cr0 & cr0::PE != 0 && s.cs.attrib & seg_attr::DB != 0 {
            CodeSize::Bits32
        } else {
            CodeSize::Bits16
        }
    }

    /// The nested page fault at EXITINFO2. A write to read-only RAM is
    /// skipped without being performed. Unclaimed MMIO gets the read-only
    /// sink page; a read retries against it, a write is skipped. Anything
    /// else, or a write by an instruction the decoder does not know, crashes
    /// the domain.
    pub(in crate::vcpu) fn handle_npf(&mut self, d: &Domain) -> Option<VcpuExit> {
        let (info, gpa) = (self.vmcb.control.exitinfo1, self.vmcb.control.exitinfo2);
        if gpa & !0xFFF == super::apic::APIC_MMIO_BASE && info & npf_info::GUEST_WALK == 0 {
            return self.apic_mmio(d, gpa);
        }
        let write = info & npf_info::WRITE != 0;
        let read_only_ram = d.p2m.lock().get(Gpa(gpa).gfn()).is_some_and(|e| e.p2mt == P2mType::RamRo);
        if write && read_only_ram {
            d.note_unhandled(
                Some(self.vcpu_id),
                Unhandled::Access { space: "read-only RAM", index: gpa & !0xFFF, write, answer: "dropped" },
            );
            return self.skip_store(d, gpa, info, "read-only RAM");
        }
        if !self.dom.map_unclaimed(d, gpa) {
            return Some(self.crash(d, "nested page fault (unmapped or read-only gpa)"));
        }
        let answer = if write { "dropped" } else { "all ones" };
        d.note_unhandled(Some(self.vcpu_id), Unhandled::Access { space: "MMIO", index: gpa & !0xFFF, write, answer });
        if !write {
            return None;
        }
        self.skip_store(d, gpa, info, "unclaimed MMIO")
    }

    /// Moves RIP past the store that faulted on `gpa` (decoded at RIP for
    /// its length, with no decode assists under TCG), so the write is
    /// discarded; a guest page-table update or an instruction the decoder
    /// does not know crashes the domain.
    fn skip_store(&mut self, d: &Domain, gpa: u64, info: u64, what: &str) -> Option<VcpuExit> {
        if info & npf_info::GUEST_WALK != 0 {
            log::error!("d{}v{}: guest page-table update in {what} {gpa:#x}", d.id, self.vcpu_id);
            return Some(self.crash(d, "guest page-table update in unclaimed MMIO or read-only RAM"));
        }
        let mut bytes = [0u8; MAX_INSN_LEN];
        let rip = self.vmcb.save.cs.base.wrapping_add(self.vmcb.save.rip);
        let n = VirtMem::new(d, self).read_prefix(Gva(rip), &mut bytes);
        let Some(len) = decode_mov_store_len(&bytes[..n], self.code_size()) else {
            log::error!("d{}v{}: write to {what} {gpa:#x} by {bytes:02x?}", d.id, self.vcpu_id);
            return Some(
                self.crash(
                    d,
                    "write to unclaimed MMIO or read-only RAM by an instruction the hypervisor cannot decode",
                ),
            );
        };
        let mut next = self.vmcb.save.rip.wrapping_add(len as u64);
        if self.code_size() != CodeSize::Bits64 {
            next &= 0xFFFF_FFFF;
        }
        self.vmcb.save.rip = next;
        None
    }
}

#[cfg(test)]
mod tests {
    use lantern_common::addr::{Gfn, Gpa};
    use lantern_common::arch::VcpuExit;
    use lantern_common::guest_memory::{GuestMemory, PhysMem};

    use crate::vcpu::testing::{domain, vcpu};
    use crate::vmcb::npf_info::{FINAL_GPA, PRESENT, WRITE};

    #[test]
    fn unclaimed_mmio_reads_map_the_sink_read_only() {
        let d = domain(1);
        let mut v = vcpu(0);
        // A read of the HPET window: the shared sink, read-only, retried.
        v.vmcb.control.exitinfo1 = FINAL_GPA;
        v.vmcb.control.exitinfo2 = 0xFED0_0000;
        assert_eq!(v.handle_npf(&d), None);
        let sink = v.dom.sink.0.as_ptr() as u64;
        assert_eq!(v.dom.npt.lock().lookup(0xFED0_0000), Some((sink, false)));
        assert!(v.dom.sink.0.iter().all(|&b| b == 0xFF));
        assert_eq!(v.vmcb.save.rip, 0x1000, "a read is retried, not skipped");
        // A RAM hole is no sink.
        v.vmcb.control.exitinfo2 = 0x8000_0000;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
        assert_eq!(v.dom.npt.lock().lookup(0x8000_0000), None);
    }

    #[test]
    fn unclaimed_mmio_writes_are_skipped() {
        let d = domain(1);
        let mut v = vcpu(0);
        // mov dword [0xFEC00000], 0x12345678 (XTF xsa-239 selects an I/O
        // APIC register and reads it back).
        let insn = [0xC7, 0x05, 0x00, 0x00, 0xC0, 0xFE, 0x78, 0x56, 0x34, 0x12];
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &insn).unwrap();
        v.vmcb.save.rip = 0x3000;
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE;
        v.vmcb.control.exitinfo2 = 0xFEC0_0000;
        assert_eq!(v.handle_npf(&d), None);
        assert_eq!(v.vmcb.save.rip, 0x300A);
        // The frame is now the sink, read-only, still all ones.
        assert_eq!(v.dom.npt.lock().lookup(0xFEC0_0000), Some((v.dom.sink.0.as_ptr() as u64, false)));
        assert!(v.dom.sink.0.iter().all(|&b| b == 0xFF));
        // The next write faults on the present read-only entry: skipped too.
        v.vmcb.save.rip = 0x3000;
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE | PRESENT;
        assert_eq!(v.handle_npf(&d), None);
        assert_eq!(v.vmcb.save.rip, 0x300A);
        // An instruction the decoder does not know crashes the domain
        // (add dword [0xFEC00000], eax).
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x01, 0x05, 0x00, 0x00, 0xC0, 0xFE]).unwrap();
        v.vmcb.save.rip = 0x3000;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
        assert_eq!(v.vmcb.save.rip, 0x3000);
    }

    /// A store whose bytes end past what can be read is not completed with
    /// zeros to find its length (only an immediate may be missing: the
    /// length does not depend on it).
    #[test]
    fn a_store_cut_short_is_not_skipped() {
        let d = domain(1);
        let mut v = vcpu(0);
        let end = lantern_testkit::RAM_PAGES * 4096;
        // mov [0xFEC00000], eax without its last displacement byte.
        PhysMem::new(&d).write_bytes(Gpa(end - 5), &[0x89, 0x05, 0x00, 0x00, 0xC0]).unwrap();
        v.vmcb.save.rip = end - 5;
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE;
        v.vmcb.control.exitinfo2 = 0xFEC0_0000;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
        assert_eq!(v.vmcb.save.rip, end - 5);
        // mov dword [0xFEC00000], imm32 without its immediate: 10 bytes.
        PhysMem::new(&d).write_bytes(Gpa(end - 6), &[0xC7, 0x05, 0x00, 0x00, 0xC0, 0xFE]).unwrap();
        v.vmcb.save.rip = end - 6;
        assert_eq!(v.handle_npf(&d), None);
        assert_eq!(v.vmcb.save.rip, end + 4);
    }

    #[test]
    fn ballooned_ram_reads_all_ones_until_populated_again() {
        let d = domain(1);
        let mut v = vcpu(0);
        d.p2m.lock().remove(Gfn(9));
        v.dom.sync(&d);
        v.vmcb.control.exitinfo1 = FINAL_GPA;
        v.vmcb.control.exitinfo2 = 0x9010;
        assert_eq!(v.handle_npf(&d), None, "a read of a ballooned-out gfn is retried against the sink");
        let sink = v.dom.sink.0.as_ptr() as u64;
        assert_eq!(v.dom.npt.lock().lookup(0x9010), Some((sink + 0x10, false)));
        // A write by a known instruction is dropped.
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x89, 0x08]).unwrap();
        v.vmcb.save.rip = 0x3000;
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE | PRESENT;
        assert_eq!(v.handle_npf(&d), None);
        assert_eq!(v.vmcb.save.rip, 0x3002);
        // Populated again: the new frame replaces the sink.
        let page = d.alloc_ram().unwrap();
        d.p2m.lock().set(Gfn(9), page.clone(), lantern_common::memory::P2mType::RamRw);
        v.dom.sync(&d);
        assert_eq!(v.dom.npt.lock().lookup(0x9010), Some((page.host_addr() + 0x10, true)));
    }

    #[test]
    fn writes_to_ram_holes_still_crash() {
        let d = domain(1);
        let mut v = vcpu(0);
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x89, 0x08]).unwrap();
        v.vmcb.save.rip = 0x3000;
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE;
        for gpa in [0x8000_0000, 0xFF00_0000, 0xFEB0_0000] {
            v.vmcb.control.exitinfo2 = gpa;
            assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault), "{gpa:#x}");
            assert_eq!(v.vmcb.save.rip, 0x3000);
        }
    }

    #[test]
    fn writes_to_read_only_ram_are_discarded() {
        use lantern_common::memory::{P2mType, Page};
        let d = domain(1);
        let mut v = vcpu(0);
        // mov dword [eax], ecx at 0x3000; the frame at 0x5000 read-only RAM
        // (as a read-only grant mapping is).
        PhysMem::new(&d).write_bytes(Gpa(0x3000), &[0x89, 0x08]).unwrap();
        let page = Page::alloc(d.id).unwrap();
        page.write(0, &[0xAB; 4]).unwrap();
        d.p2m.lock().set(Gpa(0x5000).gfn(), page.clone(), P2mType::RamRo);
        v.vmcb.save.rip = 0x3000;
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE | PRESENT;
        v.vmcb.control.exitinfo2 = 0x5010;
        assert_eq!(v.handle_npf(&d), None);
        assert_eq!(v.vmcb.save.rip, 0x3002, "the store is skipped");
        let mut b = [0u8; 4];
        page.read(0, &mut b).unwrap();
        assert_eq!(b, [0xAB; 4], "and not performed");
        // A read fault on it cannot be (the nested tables map it readable
        // before every entry): fatal, not retried forever.
        v.vmcb.control.exitinfo1 = FINAL_GPA;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
        // Writable RAM that faults is still fatal (nothing to discard).
        d.p2m.lock().set(Gpa(0x5000).gfn(), page, P2mType::RamRw);
        v.vmcb.control.exitinfo1 = FINAL_GPA | WRITE | PRESENT;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
    }
}
