//! The shared test kit of Lantern's cross-arch host tests: a settable clock,
//! an arch vCPU that translates identity, domain builders, and the list of
//! layouts every rule is checked in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lantern_common::arch::{ArchVcpu, Clock, GuestMode, TimeSample, VcpuExit, VcpuInitContext};
use lantern_common::domain::{Domain, DomainConfig};
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;

/// Every guest ABI layout Lantern supports.
pub fn layouts() -> Vec<&'static dyn GuestAbi> {
    vec![&lantern_arch_x86::layout::X86_64, &lantern_arch_x86::layout::X86_32, &lantern_arch_arm::layout::ARM64]
}

/// A clock the test moves by hand.
#[derive(Default)]
pub struct TestClock(pub AtomicU64);

impl TestClock {
    pub fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn sample(&self) -> TimeSample {
        let ns = self.0.load(Ordering::SeqCst);
        TimeSample { system_time_ns: ns, tsc: ns * 3, tsc_to_system_mul: 0x5555_5555, tsc_shift: 0 }
    }
}

pub const RAM_PAGES: u64 = 64;

pub fn domain_with(abi: &'static dyn GuestAbi, vcpus: u32, id: u16) -> (Arc<Domain>, Arc<TestClock>) {
    let clock = Arc::new(TestClock(AtomicU64::new(1_000_000)));
    let d = Domain::new(DomainConfig {
        id,
        name: format!("test{id}"),
        max_vcpus: vcpus,
        ram_pages: RAM_PAGES,
        abi,
        clock: clock.clone(),
    })
    .unwrap();
    (d, clock)
}

pub fn domain(abi: &'static dyn GuestAbi, vcpus: u32) -> (Arc<Domain>, Arc<TestClock>) {
    domain_with(abi, vcpus, 1)
}

/// An arch vCPU for hypercall tests: guest-virtual == guest-physical below
/// `limit`, initialise takes 8 bytes (an entry point).
pub struct FakeVcpu {
    pub limit: u64,
    pub entry: Option<u64>,
    pub upcalls: u32,
}

impl FakeVcpu {
    pub fn boxed() -> Box<dyn ArchVcpu> {
        Box::new(FakeVcpu { limit: RAM_PAGES << 12, entry: None, upcalls: 0 })
    }
}

impl ArchVcpu for FakeVcpu {
    fn run(&mut self, _domain: &Domain) -> VcpuExit {
        VcpuExit::Halted
    }
    fn complete_hypercall(&mut self, _ret: i64) {}
    fn inject_upcall(&mut self, _domain: &Domain) {
        self.upcalls += 1;
    }
    fn translate(&self, _domain: &Domain, gva: u64, _write: bool) -> XenResult<u64> {
        if gva < self.limit {
            Ok(gva)
        } else {
            Err(Errno::EFAULT)
        }
    }
    fn mode(&self) -> GuestMode {
        GuestMode::Long64
    }
    fn initialise(&mut self, ctx: &VcpuInitContext<'_>) -> XenResult<()> {
        match ctx {
            VcpuInitContext::XenInitialise(b) => {
                self.entry = Some(u64::from_le_bytes(b[..8].try_into().unwrap()));
                Ok(())
            }
            VcpuInitContext::PowerOn { entry, .. } => {
                self.entry = Some(*entry);
                Ok(())
            }
        }
    }
    fn initialise_arg_size(&self) -> usize {
        8
    }
    fn gdb_target_xml(&self) -> &'static str {
        ""
    }
    fn gdb_read_registers(&self, _out: &mut [u8]) -> usize {
        0
    }
    fn gdb_write_registers(&mut self, _data: &[u8]) -> XenResult<()> {
        Ok(())
    }
}

pub fn fake_vcpus(n: u32) -> Vec<Box<dyn ArchVcpu>> {
    (0..n).map(|_| FakeVcpu::boxed()).collect()
}

/// The frame at `gfn` of `d`.
pub fn page(d: &Domain, gfn: u64) -> lantern_common::memory::PageRef {
    d.p2m.lock().get(gfn).unwrap().page.clone()
}

/// Reads `size` bytes at `off` of the frame at `gfn` as a little-endian integer.
pub fn read(d: &Domain, gfn: u64, off: usize, size: usize) -> u64 {
    page(d, gfn).read_uint(off, size).unwrap()
}

/// `gfn << 12 | off`.
pub fn gaddr(gfn: u64, off: usize) -> u64 {
    (gfn << 12) | off as u64
}
