//! The guest-area conformance scenario shared by every Lantern test guest.
//!
//! The arch crates (`tests/guests/x86_64`, `tests/guests/aarch64`) boot, find the
//! hypervisor and implement [`Guest`]; everything they have in common — the
//! checks, the result lines, the Xen ABI numbers and the per-layout offsets —
//! lives here once, so the three guests cannot drift apart. The crate is
//! `no_std` and never touches hardware itself, which is why its logic can be
//! unit-tested on the host against a mock [`Guest`].
#![cfg_attr(not(test), no_std)]

pub mod abi;
pub mod console;
pub mod identity;
pub mod layout;
#[cfg(test)]
mod mock;
mod scenario;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub use layout::Layout;
pub use scenario::{run, run_checks, secondary_main, shutdown, Outcome};

/// Highest vCPU count the shared per-vCPU tables can track.
pub const MAX_VCPUS: usize = 64;

/// Size of a guest page (4 KiB on every supported guest).
pub const PAGE_SIZE: u64 = 4096;

/// What an arch crate provides so the shared scenario can run on it.
///
/// Guest memory is identity-mapped in every test guest, so a guest-physical
/// address (`gpa`) is also a pointer the guest can dereference; the trait
/// still funnels every access through [`Guest::read`] / [`Guest::write`] so the
/// host tests can substitute their own memory.
pub trait Guest: Sync {
    /// The vcpu_info / runstate layout the hypervisor should apply to us.
    fn layout(&self) -> &'static Layout;

    /// Issue hypercall `nr` with up to five arguments; returns the raw result
    /// (negative Xen errno on failure), sign-extended from the guest word.
    fn hypercall(&self, nr: u32, args: [u64; 5]) -> i64;

    /// Write raw bytes to the console (`console_io` CONSOLEIO_write).
    fn console(&self, bytes: &[u8]);

    /// Read `buf.len()` bytes of guest memory at `gpa`.
    fn read(&self, gpa: u64, buf: &mut [u8]);

    /// Write `data` to guest memory at `gpa`.
    fn write(&self, gpa: u64, data: &[u8]);

    /// Guest-physical address of a buffer the guest owns (stack or static).
    fn gpa_of(&self, p: *const u8) -> u64;

    /// Guest-physical addresses of four page-aligned, zeroed RAM pages the
    /// scenario may hand to the hypervisor as vcpu_info / runstate / time pages.
    fn scratch_pages(&self) -> [u64; 4];

    /// Guest-physical address of the RAM page to replace with shared_info.
    fn shared_info_page(&self) -> u64;

    /// Number of vCPUs the domain was created with.
    fn vcpu_count(&self) -> u32;

    /// Start secondary vCPU `vcpu` so that it runs [`secondary_main`]:
    /// `VCPUOP_initialise` + `VCPUOP_up` on x86 (the first failing result is
    /// returned), PSCI `CPU_ON` on arm64. 0 on success.
    fn start_secondary(&self, vcpu: u32) -> i64;

    /// Whether the hypervisor refuses to start a vCPU still on the dummy
    /// vcpu_info (x86 `VCPUOP_initialise` does; arm64 `CPU_ON` does not).
    fn dummy_start_refused(&self) -> bool;

    /// Tell the hypervisor where to deliver event upcalls and enable the
    /// local interrupt controller path (x86: HVM callback vector; arm64: GIC
    /// CPU interface + PPI 31). 0 on success, else a negative errno.
    fn setup_upcall(&self) -> i64;

    /// Allow (`true`) or block (`false`) upcall interrupts on the calling vCPU.
    fn upcalls_enabled(&self, on: bool);

    /// The guest command line (words such as `linger`).
    fn cmdline(&self) -> &str;

    /// A short name for this guest build, e.g. `x86_64`, `x86_32`, `arm64`.
    fn name(&self) -> &'static str;

    /// A free-running cycle/tick counter (x86 TSC, arm64 CNTVCT_EL0), for
    /// the `bench` command-line word; 0 where there is none.
    fn ticks(&self) -> u64 {
        0
    }

    /// Frequency of [`Guest::ticks`] in Hz, 0 if unknown.
    fn tick_hz(&self) -> u64 {
        0
    }

    /// The cheapest possible trap to the hypervisor: the hypercall
    /// instruction itself with an unused hypercall number (expects
    /// `-ENOSYS`), the baseline the `bench` figures are compared with.
    fn bare_trap(&self) -> i64 {
        -abi::errno::ENOSYS
    }

    /// Spin for a short while without leaving the guest (used to get
    /// preempted by the hypervisor's timer rather than yielding).
    fn busy_wait(&self, iterations: u32) {
        for i in 0..iterations {
            core::hint::black_box(i);
            core::hint::spin_loop();
        }
    }
}

/// Per-vCPU counters shared between the scenario, the secondaries and the
/// upcall handlers. Plain atomics: they are touched from interrupt context.
pub struct VcpuTable {
    /// Incremented by each secondary vCPU in its main loop (proof of life).
    pub alive: [AtomicU32; MAX_VCPUS],
    /// Number of upcalls each vCPU has taken.
    pub upcalls: [AtomicU32; MAX_VCPUS],
    /// Guest-physical address of each vCPU's current vcpu_info (0 = dummy /
    /// unknown), so the upcall handler can acknowledge `evtchn_upcall_pending`.
    pub vcpu_info_gpa: [AtomicU64; MAX_VCPUS],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO32: AtomicU32 = AtomicU32::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO64: AtomicU64 = AtomicU64::new(0);

/// The one table of per-vCPU state.
pub static VCPUS: VcpuTable =
    VcpuTable { alive: [ZERO32; MAX_VCPUS], upcalls: [ZERO32; MAX_VCPUS], vcpu_info_gpa: [ZERO64; MAX_VCPUS] };

/// Called by an arch crate's upcall interrupt handler on vCPU `vcpu`.
///
/// Acknowledges the upcall the way Xen guests do — clear
/// `evtchn_upcall_pending` in the vCPU's current vcpu_info — and counts it.
/// The callback-vector upcall is level-like (re-raised while
/// `evtchn_upcall_pending` is set), so clearing it is what stops the flood.
/// `evtchn_pending_sel` is left alone: the scenario inspects it.
pub fn on_upcall<G: Guest + ?Sized>(g: &G, vcpu: u32) {
    let v = vcpu as usize;
    if v >= MAX_VCPUS {
        return;
    }
    let gpa = VCPUS.vcpu_info_gpa[v].load(Ordering::Acquire);
    if gpa != 0 {
        g.write(gpa + layout::VI_UPCALL_PENDING, &[0]);
    }
    VCPUS.upcalls[v].fetch_add(1, Ordering::AcqRel);
}
