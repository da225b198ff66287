//! The nested-page-fault exit: a guest access to a frame the nested tables
//! do not map (or map read-only). Probes of the platform-device window get
//! an all-ones sink page, as Xen answers unclaimed MMIO; any other fault
//! crashes the domain.

use alloc::boxed::Box;

use lantern_common::addr::Gpa;
use lantern_common::arch::VcpuExit;
use lantern_common::domain::Domain;
use lantern_common::memory::PAGE_SIZE;

use crate::vcpu::{SvmShared, SvmVcpu};

/// The platform-device window (I/O APIC, HPET, local APIC) a PVH guest may
/// probe although Lantern emulates none of those devices.
const UNCLAIMED_MMIO: core::ops::Range<u64> = 0xFEC0_0000..0xFF00_0000;

/// A page standing in for unclaimed MMIO: reads as all ones at first.
#[repr(C, align(4096))]
pub(in crate::vcpu) struct SinkPage([u8; PAGE_SIZE]);

impl SvmShared {
    /// Xen answers accesses to MMIO nobody claims with all-ones reads and
    /// dropped writes (guests probe for an HPET or APIC that way). Without
    /// decode assists we cannot emulate the access, so the frame gets a
    /// private page filled with 0xFF instead: a probe reads "no device".
    /// Only for the platform-device window; any other stray access still
    /// crashes the domain.
    fn map_unclaimed(&self, d: &Domain, gpa: u64) -> bool {
        if !UNCLAIMED_MMIO.contains(&gpa) || d.p2m.lock().get(Gpa(gpa).gfn()).is_some() {
            return false;
        }
        let page = Box::new(SinkPage([0xFF; PAGE_SIZE]));
        self.npt.lock().map(gpa & !0xFFF, page.0.as_ptr() as u64, true);
        self.sinks.lock().push(page);
        true
    }
}

impl SvmVcpu {
    /// The nested page fault at EXITINFO2: retried after mapping a sink
    /// page, or the domain crashes.
    pub(in crate::vcpu) fn handle_npf(&mut self, d: &Domain) -> Option<VcpuExit> {
        if self.dom.map_unclaimed(d, self.vmcb.control.exitinfo2) {
            None
        } else {
            Some(self.crash(d, "nested page fault (unmapped or read-only gpa)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use lantern_common::arch::VcpuExit;

    use crate::vcpu::testing::{domain, vcpu};

    #[test]
    fn unclaimed_mmio_gets_a_sink_page() {
        let d = domain(1);
        let mut v = vcpu(0);
        // Unclaimed MMIO probes get an all-ones page; RAM holes do not.
        assert!(v.dom.map_unclaimed(&d, 0xFED0_0000));
        assert!(!v.dom.map_unclaimed(&d, 0x8000_0000));
        let (hpa, writable) = v.dom.npt.lock().lookup(0xFED0_0000).unwrap();
        assert!(writable);
        let sinks = v.dom.sinks.lock();
        assert_eq!((sinks.len(), hpa), (1, sinks[0].0.as_ptr() as u64));
        assert!(sinks[0].0.iter().all(|&b| b == 0xFF));
        drop(sinks);
        // Through the exit: the local APIC window is a sink, a RAM hole is not.
        v.vmcb.control.exitinfo2 = 0xFEE0_0030;
        assert_eq!(v.handle_npf(&d), None);
        v.vmcb.control.exitinfo2 = 0x8000_0000;
        assert_eq!(v.handle_npf(&d), Some(VcpuExit::Fault));
    }
}
