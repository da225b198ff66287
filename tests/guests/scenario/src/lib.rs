//! The guest-area conformance scenario shared by every Lantern test guest.
//!
//! The arch crates (`tests/guests/x86_64`, `tests/guests/aarch64`) boot, find the
//! hypervisor and implement [`Guest`]; everything they have in common — the
//! checks, the result lines, the hypercalls and the per-layout offsets —
//! lives here once, so the three guests cannot drift apart. Xen's numbers and
//! argument structs come from `xen_abi` (`crates/xen-abi`). The crate is
//! `no_std` and never touches hardware itself, which is why its logic can be
//! unit-tested on the host against a mock [`Guest`].
//!
//! Modules, by job:
//! - the run: `run` ([`run()`], [`run_checks`]: the order of the checks,
//!   the end of the run),
//!   `context` (the state one run shares, result plumbing);
//! - the checks, one module per topic: `basics` (xen_version, shared_info),
//!   `upcall` (event upcalls), `vcpu_info` (registration on vCPU 0),
//!   `bringup` (secondary vCPUs: dummy area, remote registration), `time_area`,
//!   `runstate`, `pv_timer` (PV timers waking and ticking vCPU 0), `balloon`
//!   (giving memory back and taking it again), `pv_console` (the PV console
//!   ring: `console_ring`, and the `console-echo` command-line word), `fifo`
//!   (event-channel status and the FIFO ABI; last, as the switch is
//!   one-way);
//! - `bench` (the `bench` command-line word), `clock_check` (the
//!   `clock-check` word: guest time once a second) and `report` (`REPORT`
//!   lines);
//! - `fuzz` (the `fuzz` command-line word: random hypercalls instead of
//!   the checks, for `cargo xtask fuzz`);
//! - the tools they use: [`hypercall`], [`layout`], [`console`], [`identity`].
#![cfg_attr(not(test), no_std)]
// Failure reasons are fixed-size text buffers (no allocator in a guest), so
// `Result<(), Reason>` is deliberately larger than clippy likes.
#![allow(clippy::result_large_err)]

#[macro_use]
mod context;
pub mod debuggee;

mod attack;
mod balloon;
mod basics;
mod bench;
mod bringup;
mod clock_check;
pub mod console;
mod fifo;
pub mod fuzz;
mod grants;
pub mod hypercall;
pub mod identity;
pub mod layout;
#[cfg(test)]
mod mock;
mod pv_console;
mod pv_timer;
mod report;
mod run;
mod runstate;
mod time_area;
mod upcall;
mod va_area;
mod vcpu_info;

use core::sync::atomic::{AtomicU32, AtomicU64};

pub use balloon::Probe;
pub use bringup::secondary_main;
pub use context::Outcome;
pub use layout::Layout;
pub use run::{crash, run, run_checks, shutdown};
pub use upcall::on_upcall;

/// Highest vCPU count the shared per-vCPU tables can track.
pub const MAX_VCPUS: usize = 64;

/// Guest-physical address the `fault` command-line word reads: 768 MiB,
/// far above the test domains' RAM (32 MiB by default; anything up to
/// 512 MiB keeps it well outside) yet inside every guest's identity mapping
/// (x86_64: the first 4 GiB; x86_32: paging off; arm64: the low 3 GiB of
/// normal memory), so the access reaches the hypervisor as a nested-page /
/// stage-2 fault rather than a guest page fault.
pub const FAULT_GPA: u64 = 0x3000_0000;

/// Size of a guest page (4 KiB on every supported guest).
pub const PAGE_SIZE: u64 = 4096;

/// A hypercall number no hypercall uses: the hypervisor decodes it and
/// answers `-ENOSYS`, so a call with it costs the bare trap and nothing else
/// (the `bench` baseline, [`Guest::bare_trap`]).
pub const UNUSED_HYPERCALL: u64 = 0xffff;

/// The x86 local APIC's default MMIO base (`IA32_APIC_BASE` at reset):
/// device memory no RAM backs, where [`Guest::mmio_gpa`] points by default.
pub const LAPIC_MMIO_GPA: u64 = 0xFEE0_0000;

/// What an arch crate provides so the shared scenario can run on it.
///
/// # Safety
/// The scenario dereferences the guest-physical addresses this trait hands
/// it: [`Guest::scratch_pages`] and [`Guest::shared_info_page`] must name
/// page-aligned RAM pages the guest owns and no Rust reference aliases, and
/// unless [`Guest::read`] / [`Guest::write`] / [`Guest::gpa_of`] are
/// overridden, guest memory must be identity-mapped (virtual ==
/// guest-physical), as it is in every test guest and in the host mock.
pub unsafe trait Guest: Sync {
    /// The vcpu_info / runstate layout the hypervisor should apply to us.
    fn layout(&self) -> &'static Layout;

    /// Issue hypercall `nr` (`xen_abi::nr::hypercall`) with up to five
    /// arguments; returns the raw result (negative Xen errno on failure),
    /// sign-extended from the guest word.
    fn hypercall(&self, nr: u64, args: [u64; 5]) -> i64;

    /// Write raw bytes to the console (`console_io` CONSOLEIO_write).
    fn console(&self, bytes: &[u8]);

    /// Read `buf.len()` bytes of guest memory at `gpa` (volatile: the
    /// hypervisor changes these pages behind the compiler's back).
    fn read(&self, gpa: u64, buf: &mut [u8]) {
        // SAFETY: the trait's contract: RAM is identity-mapped and the
        // scenario only names pages it was given (or shared_info, or its own
        // live buffers), which no Rust reference aliases.
        unsafe { identity::read(gpa, buf) }
    }

    /// Write `data` to guest memory at `gpa` (volatile).
    fn write(&self, gpa: u64, data: &[u8]) {
        // SAFETY: as for `read`.
        unsafe { identity::write(gpa, data) }
    }

    /// Read the aligned `u32` at `gpa` with a single load, so a value the
    /// hypervisor updates concurrently (a ring index) is never torn.
    fn read_u32(&self, gpa: u64) -> u32 {
        // SAFETY: as for `read`; the callers pass aligned ring indices.
        unsafe { identity::read_u32(gpa) }
    }

    /// Write the aligned `u32` at `gpa` with a single store.
    fn write_u32(&self, gpa: u64, v: u32) {
        // SAFETY: as for `read_u32`.
        unsafe { identity::write_u32(gpa, v) }
    }

    /// Guest-physical address of a buffer the guest owns (stack or static).
    fn gpa_of(&self, p: *const u8) -> u64 {
        // Identity mapping: the pointer is the address.
        p as usize as u64
    }

    /// Guest-physical addresses of four page-aligned, zeroed RAM pages the
    /// scenario may hand to the hypervisor as vcpu_info / runstate / time pages.
    fn scratch_pages(&self) -> [u64; 4];

    /// Guest-physical address of the RAM page to replace with shared_info.
    fn shared_info_page(&self) -> u64;

    /// Guest-physical addresses of two page-aligned RAM pages nothing else
    /// in the guest touches, which the balloon checks release to the
    /// hypervisor and populate again (only ever accessed through
    /// [`Guest::read`] / [`Guest::write`] / [`Guest::probe_read`]).
    fn balloon_pages(&self) -> [u64; 2];

    /// A 4-byte load from `gpa` that may fault: the value read, or
    /// [`Probe::Aborted`] if the load took a data abort (which the guest
    /// then skips). Without an abort handler of its own a guest just reads.
    fn probe_read(&self, gpa: u64) -> Probe {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b);
        Probe::Value(u32::from_le_bytes(b))
    }

    /// What Xen gives this guest for a 4-byte read of a page it gave back
    /// (a p2m hole), as its layout states it: x86 HVM emulates it as MMIO
    /// nobody claims (all ones), arm injects a data abort.
    fn ballooned_read(&self) -> Probe {
        if self.layout().ballooned_read_aborts {
            Probe::Aborted
        } else {
            Probe::Value(u32::MAX)
        }
    }

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

    /// Start vCPU `vcpu` (down) with absurd initial state, each way the
    /// arch has (x86 `VCPUOP_initialise` contexts Xen refuses; arm64 PSCI
    /// `CPU_ON` a Thumb entry, a CPU that does not exist, one already on),
    /// calling `report(what, result, Xen's result)` for each; afterwards
    /// the vCPU must still be down (the `attack` word). A guest that offers
    /// none (the host-side test guests) fails that attack visibly.
    fn hostile_starts(&self, vcpu: u32, report: &mut dyn FnMut(&str, i64, i64)) {
        let _ = (vcpu, report);
    }

    /// Frequency of [`Guest::ticks`] in Hz, 0 if unknown.
    fn tick_hz(&self) -> u64 {
        0
    }

    /// The cheapest possible trap to the hypervisor: the hypercall
    /// instruction itself with [`UNUSED_HYPERCALL`] (expects `-ENOSYS`), the
    /// baseline the `bench` figures are compared with.
    fn bare_trap(&self) -> i64 {
        xen_abi::Errno::ENOSYS.to_hypercall_ret()
    }

    /// Issue hypercall `nr` whatever its number: [`Guest::hypercall`] goes
    /// through the hypercall page where there is one, which has stubs only
    /// for the numbers below its size; the fuzzer (`fuzz`) also needs the
    /// numbers above, which only the raw trap can make.
    fn raw_hypercall(&self, nr: u64, args: [u64; 5]) -> i64 {
        self.hypercall(nr, args)
    }

    /// The guest-physical range the guest's own image (code, data, stacks)
    /// occupies, which the fuzzer must never name as an address the
    /// hypervisor reads a frame list from or writes to: where the image
    /// starts at 0 (arm64), a null pointer is a pointer into our own code.
    /// Empty by default (the host mocks have no image in guest memory).
    fn image(&self) -> core::ops::Range<u64> {
        0..0
    }

    /// A guest-physical address of an emulated device's MMIO (no RAM), for
    /// the fuzzer's argument pointers: x86's local APIC by default.
    fn mmio_gpa(&self) -> u64 {
        LAPIC_MMIO_GPA
    }

    /// Spin for a short while without leaving the guest (used to get
    /// preempted by the hypervisor's timer rather than yielding). No
    /// `spin_loop` hint: a PAUSE is a spin-wait, which a hypervisor may end
    /// the slice at when another vCPU could run (x86's does).
    fn busy_wait(&self, iterations: u32) {
        for i in 0..iterations {
            core::hint::black_box(i);
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

/// The one table of per-vCPU state. It is defined here, at the crate root,
/// because debugger scripts name it `lantern_guest_scenario::VCPUS`.
pub static VCPUS: VcpuTable =
    VcpuTable { alive: [ZERO32; MAX_VCPUS], upcalls: [ZERO32; MAX_VCPUS], vcpu_info_gpa: [ZERO64; MAX_VCPUS] };
