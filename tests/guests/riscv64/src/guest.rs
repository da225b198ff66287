//! The guest proper (compiled only for riscv64gc-unknown-none-elf, see
//! `build.rs`): the hypercall and SBI calls, the scenario's [`Guest`], the
//! device-tree facts, the vCPU entry and the trap handler.

#[path = "entry.rs"]
mod entry;

use core::arch::asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lantern_guest_scenario::console::{Buf, LineLock, Words};
use lantern_guest_scenario::hypercall as xen;
use lantern_guest_scenario::identity::GuestPages;
use lantern_guest_scenario::{layout, Guest, Layout, Probe, MAX_VCPUS as TABLE_VCPUS};
use xen_abi::arch_riscv::{EVTCHN_UPCALL_ACK, EVTCHN_UPCALL_IRQ, SBI_EXT_XEN};
use xen_abi::Errno;

/// Most vCPUs this guest has stacks for.
pub const MAX_VCPUS: usize = 16;
/// Per-vCPU stack size.
pub const STACK_SIZE: usize = 16384;

/// SBI base extension (`probe_extension` is its function 3).
const SBI_EXT_BASE: u64 = 0x10;
const SBI_BASE_PROBE_EXTENSION: u64 = 3;
/// SBI hart state management extension ("HSM"); `hart_start` is function 0.
const SBI_EXT_HSM: u64 = 0x48_534d;
const SBI_HSM_HART_START: u64 = 0;
/// SBI timer extension ("TIME"); `set_timer` is function 0.
const SBI_EXT_TIME: u64 = 0x5449_4d45;
const SBI_TIME_SET_TIMER: u64 = 0;
/// An extension id in the firmware-specific range that nobody defines.
const SBI_EXT_UNDEFINED: u64 = 0x0aff_fff0;
/// SBI error codes the hostile starts expect.
const SBI_ERR_NOT_SUPPORTED: i64 = -2;
const SBI_ERR_INVALID_PARAM: i64 = -3;
const SBI_ERR_INVALID_ADDRESS: i64 = -5;
const SBI_ERR_ALREADY_AVAILABLE: i64 = -6;
/// A hart id no domain has.
const NO_SUCH_HART: u64 = 0xff_ff00;

/// `scause`: the interrupt bit, and the causes this guest handles.
const SCAUSE_INTERRUPT: u64 = 1 << 63;
const IRQ_SUPERVISOR_SOFTWARE: u64 = 1;
const IRQ_SUPERVISOR_TIMER: u64 = 5;
const EXC_LOAD_ACCESS_FAULT: u64 = 5;
const EXC_LOAD_PAGE_FAULT: u64 = 13;
/// `sie` / `sip` bits of the three supervisor interrupts.
const SIE_SSIE: u64 = 1 << IRQ_SUPERVISOR_SOFTWARE;
const SIE_STIE: u64 = 1 << IRQ_SUPERVISOR_TIMER;
const SIE_SEIE: u64 = 1 << EVTCHN_UPCALL_IRQ;
/// `sstatus.SIE`: interrupts taken at all.
const SSTATUS_SIE: u64 = 1 << 1;

/// Facts taken from the device tree by vCPU 0 before secondaries start.
struct BootInfo {
    cmdline: Buf<256>,
    vcpus: u32,
    hart_ids: [u64; MAX_VCPUS],
    /// `timebase-frequency` of `/cpus` (the `time` CSR's rate), 0 if absent.
    timebase_hz: u64,
    /// The first `/memory` region.
    ram: (u64, u64),
    /// The `hypervisor` node's `reg`: the grant-table window.
    grant_window: (u64, u64),
}

static mut BOOT: BootInfo = BootInfo {
    cmdline: Buf::new(),
    vcpus: 1,
    hart_ids: [0; MAX_VCPUS],
    timebase_hz: 0,
    ram: (0, 0),
    grant_window: (0, 0),
};

/// The page replaced by shared_info and the scratch pages.
static PAGES: GuestPages = GuestPages::new();

/// Serialises console lines from different vCPUs.
static CONSOLE_LOCK: LineLock = LineLock::new();
/// Timer and software interrupts taken (this guest arms neither; counted
/// for diagnostics).
static STRAY_IRQS: AtomicU64 = AtomicU64::new(0);

fn boot() -> &'static BootInfo {
    // SAFETY: BOOT is written only by vCPU 0 in `parse_dtb`, before any
    // secondary exists and before any shared reference is taken.
    unsafe { &*core::ptr::addr_of!(BOOT) }
}

/// A Xen hypercall: `ecall` with a7 = [`SBI_EXT_XEN`], a6 = the number,
/// a0..a5 the arguments (a5 unused by the scenario), a0 = the result.
fn xen_hypercall(nr: u64, a: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: a Xen hypercall only touches guest memory the arguments name
    // (buffers the caller owns); the argument registers are declared
    // clobbered.
    unsafe {
        asm!(
            "ecall",
            in("a7") SBI_EXT_XEN,
            in("a6") nr,
            inlateout("a0") a[0] => ret,
            inlateout("a1") a[1] => _,
            inlateout("a2") a[2] => _,
            inlateout("a3") a[3] => _,
            inlateout("a4") a[4] => _,
            inlateout("a5") 0u64 => _,
            options(nostack),
        );
    }
    ret
}

/// A standard SBI call: a7 = extension, a6 = function, a0..a2 arguments;
/// returns (error, value) from a0 and a1.
fn sbi(ext: u64, func: u64, a0: u64, a1: u64, a2: u64) -> (i64, u64) {
    let (err, val): (i64, u64);
    // SAFETY: the SBI calls this guest makes (probe, hart_start, set_timer)
    // do not touch guest memory; SBI returns in a0/a1 and preserves the
    // rest, but the other argument registers are declared clobbered anyway.
    unsafe {
        asm!(
            "ecall",
            in("a7") ext,
            in("a6") func,
            inlateout("a0") a0 => err,
            inlateout("a1") a1 => val,
            inlateout("a2") a2 => _,
            lateout("a3") _, lateout("a4") _, lateout("a5") _,
            options(nostack),
        );
    }
    (err, val)
}

/// SBI HSM `hart_start(hartid, start_addr, opaque)`: the SBI error.
fn hart_start(hart: u64, entry: u64, opaque: u64) -> i64 {
    sbi(SBI_EXT_HSM, SBI_HSM_HART_START, hart, entry, opaque).0
}

/// The riscv64 implementation of the scenario's [`Guest`].
pub struct RiscvGuest;

/// The one instance.
pub static GUEST: RiscvGuest = RiscvGuest;

// SAFETY: the MMU stays off (vsatp = 0), so every guest-physical address is
// its own virtual address, as the trait's default accessors assume; the
// shared_info, scratch and balloon pages are `PAGES`, which no Rust
// reference reaches.
unsafe impl Guest for RiscvGuest {
    fn layout(&self) -> &'static Layout {
        &layout::RISCV64
    }

    fn hypercall(&self, nr: u64, args: [u64; 5]) -> i64 {
        xen_hypercall(nr, args)
    }

    fn image(&self) -> core::ops::Range<u64> {
        extern "C" {
            /// The linker script's bounds of the whole image (code, data,
            /// .bss with the stacks).
            static __image_start: u8;
            static __image_end: u8;
        }
        // Only the symbols' addresses are taken, nothing is read.
        core::ptr::addr_of!(__image_start) as u64..core::ptr::addr_of!(__image_end) as u64
    }

    fn console(&self, bytes: &[u8]) {
        CONSOLE_LOCK.with(|| xen::console_write(self, bytes));
    }

    fn scratch_pages(&self) -> [u64; 4] {
        PAGES.scratch()
    }

    fn shared_info_page(&self) -> u64 {
        PAGES.shared_info()
    }

    fn balloon_pages(&self) -> [u64; 2] {
        PAGES.balloon()
    }

    fn probe_read(&self, gpa: u64) -> Probe {
        PROBE_ABORTED.store(false, Ordering::SeqCst);
        PROBE_AT.store(gpa, Ordering::SeqCst);
        let v: u32;
        // SAFETY: `gpa` is guest RAM the caller names (the MMU is off); if
        // the load faults, `trap` resumes after it (it decodes the length).
        unsafe { asm!("lw {v}, 0({a})", a = in(reg) gpa, v = out(reg) v, options(nostack)) };
        PROBE_AT.store(0, Ordering::SeqCst);
        if PROBE_ABORTED.load(Ordering::SeqCst) {
            Probe::Aborted
        } else {
            Probe::Value(v)
        }
    }

    fn vcpu_count(&self) -> u32 {
        boot().vcpus
    }

    fn start_secondary(&self, vcpu: u32) -> i64 {
        if vcpu as usize >= MAX_VCPUS {
            return Errno::EINVAL.to_hypercall_ret();
        }
        let entry = entry::guest_secondary_entry as *const () as u64;
        hart_start(boot().hart_ids[vcpu as usize], entry, vcpu as u64)
    }

    fn dummy_start_refused(&self) -> bool {
        false
    }

    fn hostile_starts(&self, vcpu: u32, report: &mut dyn FnMut(&str, i64, i64)) {
        let entry = entry::guest_secondary_entry as *const () as u64;
        let b = boot();
        let rc = hart_start(b.hart_ids[vcpu as usize], entry | 1, vcpu as u64);
        report("hart_start at an odd address", rc, SBI_ERR_INVALID_ADDRESS);
        report("hart_start of a hart that does not exist", hart_start(NO_SUCH_HART, entry, 0), SBI_ERR_INVALID_PARAM);
        report("hart_start of vCPU 0, already started", hart_start(b.hart_ids[0], entry, 0), SBI_ERR_ALREADY_AVAILABLE);
        // Beside the starts, the SBI the hypervisor answers: an extension
        // nobody defines is refused, the Xen extension is there.
        let (rc, _) = sbi(SBI_EXT_UNDEFINED, 0, 0, 0, 0);
        report("a call to an undefined SBI extension", rc, SBI_ERR_NOT_SUPPORTED);
        let (rc, present) = sbi(SBI_EXT_BASE, SBI_BASE_PROBE_EXTENSION, SBI_EXT_XEN, 0, 0);
        report("probe_extension(SBI_EXT_XEN): error", rc, 0);
        report("probe_extension(SBI_EXT_XEN): present", (present != 0) as i64, 1);
    }

    fn setup_upcall(&self) -> i64 {
        enable_upcall_irq();
        0
    }

    fn upcalls_enabled(&self, on: bool) {
        if on {
            // SAFETY: `stvec` is installed on every vCPU at entry, so an
            // interrupt taken from here on lands in the trap vector.
            unsafe { asm!("csrs sstatus, {}", in(reg) SSTATUS_SIE, options(nomem, nostack)) };
        } else {
            // SAFETY: masking interrupts cannot break memory safety.
            unsafe { asm!("csrc sstatus, {}", in(reg) SSTATUS_SIE, options(nomem, nostack)) };
        }
    }

    fn cmdline(&self) -> &str {
        boot().cmdline.as_str()
    }

    fn name(&self) -> &'static str {
        "riscv64"
    }

    fn ticks(&self) -> u64 {
        let t: u64;
        // SAFETY: reading the time counter has no side effects.
        unsafe { asm!("rdtime {}", out(reg) t, options(nomem, nostack)) };
        t
    }

    fn tick_hz(&self) -> u64 {
        boot().timebase_hz
    }

    fn bare_trap(&self) -> i64 {
        xen_hypercall(lantern_guest_scenario::UNUSED_HYPERCALL, [0; 5])
    }
}

/// Let the supervisor external interrupt (the upcall) through `sie`; the
/// timer and software interrupts stay off (this guest arms neither).
fn enable_upcall_irq() {
    // SAFETY: `sie` only selects which interrupts this vCPU may take.
    unsafe {
        asm!(
            "csrc sie, {off}",
            "csrs sie, {on}",
            off = in(reg) SIE_STIE | SIE_SSIE,
            on = in(reg) SIE_SEIE,
            options(nomem, nostack),
        )
    };
}

/// Take what we need from the guest device tree.
fn parse_dtb(dtb: u64) {
    // SAFETY: only vCPU 0 runs; no other reference to BOOT exists yet.
    let b = unsafe { &mut *core::ptr::addr_of_mut!(BOOT) };
    if dtb == 0 {
        return;
    }
    // SAFETY: the hypervisor passes the address of a valid FDT in a1.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }) else {
        return;
    };
    if let Some(args) = fdt.find_node("/chosen").and_then(|c| c.property("bootargs")).and_then(|p| p.as_str()) {
        let _ = b.cmdline.write_str(args);
    }
    if let Some(cpus) = fdt.find_node("/cpus") {
        b.timebase_hz = cpus.property("timebase-frequency").and_then(|p| p.as_usize()).unwrap_or(0) as u64;
        let mut n = 0;
        for cpu in fdt.cpus() {
            if n < MAX_VCPUS {
                b.hart_ids[n] = cpu.ids().first() as u64;
            }
            n += 1;
        }
        b.vcpus = (n.max(1) as u32).min(MAX_VCPUS.min(TABLE_VCPUS) as u32);
    }
    let first_reg = |node: Option<fdt::node::FdtNode<'_, '_>>| {
        let r = node?.reg()?.next()?;
        Some((r.starting_address as u64, r.size.unwrap_or(0) as u64))
    };
    b.ram = first_reg(fdt.find_node("/memory")).unwrap_or((0, 0));
    b.grant_window = first_reg(fdt.find_compatible(&["xen,xen"])).unwrap_or((0, 0));
}

/// Rust entry of every vCPU (from the entry asm, stack and trap vector
/// ready): `dtb` is 0 on secondaries; `hart` is what the hypervisor passed
/// in a0, which the ABI makes the vCPU id.
pub extern "C" fn vcpu_main(vcpu: u64, dtb: u64, hart: u64) -> ! {
    let vcpu = vcpu as u32;
    if hart != vcpu as u64 {
        lantern_guest_scenario::crash(&GUEST, format_args!("ENTRY vcpu={vcpu} entered with a0 (hart id)={hart:#x}"));
    }
    if vcpu != 0 {
        enable_upcall_irq();
        lantern_guest_scenario::secondary_main(&GUEST, vcpu);
    }
    parse_dtb(dtb);
    let b = boot();
    let mut line = Buf::<320>::new();
    let _ = writeln!(
        line,
        "REPORT dtb={dtb:#x} image_base={:#x} dt_vcpus={} ram={:#x}+{:#x} grant_window={:#x}+{:#x} timebase_hz={} cmdline={}",
        GUEST.image().start,
        b.vcpus,
        b.ram.0,
        b.ram.1,
        b.grant_window.0,
        b.grant_window.1,
        b.timebase_hz,
        Words(b.cmdline.as_str())
    );
    GUEST.console(line.as_bytes());
    lantern_guest_scenario::run(&GUEST)
}

/// Current vCPU id (kept in `tp` by the entry code).
fn current_vcpu() -> u32 {
    let v: u64;
    // SAFETY: reading `tp` has no side effects.
    unsafe { asm!("mv {}, tp", out(reg) v, options(nomem, nostack)) };
    v as u32
}

/// The address [`Guest::probe_read`] is loading from (0: no probe), and
/// whether that load faulted.
static PROBE_AT: AtomicU64 = AtomicU64::new(0);
static PROBE_ABORTED: AtomicBool = AtomicBool::new(false);

/// Every trap lands here with the register frame the vector saved: the
/// upcall is handed to the scenario and acknowledged; stray timer and
/// software interrupts are silenced; the access fault of a probe load is
/// skipped; anything else is reported and crashes the domain.
///
/// # Safety
/// Only the trap vector may call this, with `frame` pointing at the
/// register frame it saved (and restores on return: a probe's fault
/// rewrites the saved `sepc` in it).
pub unsafe extern "C" fn trap(frame: *mut u64) {
    let (scause, stval): (u64, u64);
    // SAFETY: reading the trap CSRs has no side effects.
    unsafe { asm!("csrr {}, scause", "csrr {}, stval", out(reg) scause, out(reg) stval, options(nomem, nostack)) };
    // SAFETY: per the contract, the vector saved sepc at this slot.
    let sepc = unsafe { *frame.add(entry::FRAME_SEPC) };
    if scause & SCAUSE_INTERRUPT != 0 {
        match scause & !SCAUSE_INTERRUPT {
            EVTCHN_UPCALL_IRQ => {
                lantern_guest_scenario::on_upcall(&GUEST, current_vcpu());
                // Level-like: the hypervisor drops VSEIP now and raises it
                // again if evtchn_upcall_pending was set meanwhile.
                xen_hypercall(EVTCHN_UPCALL_ACK, [0; 5]);
                return;
            }
            IRQ_SUPERVISOR_TIMER => {
                // Nothing here arms the SBI timer: push it out of reach and
                // stop listening.
                STRAY_IRQS.fetch_add(1, Ordering::Relaxed);
                sbi(SBI_EXT_TIME, SBI_TIME_SET_TIMER, u64::MAX, 0, 0);
                // SAFETY: `sie` only selects which interrupts we take.
                unsafe { asm!("csrc sie, {}", in(reg) SIE_STIE, options(nomem, nostack)) };
                return;
            }
            IRQ_SUPERVISOR_SOFTWARE => {
                STRAY_IRQS.fetch_add(1, Ordering::Relaxed);
                // SAFETY: clearing our own pending software interrupt.
                unsafe { asm!("csrc sip, {}", in(reg) SIE_SSIE, options(nomem, nostack)) };
                return;
            }
            _ => {}
        }
    }
    // The load of the probe in flight faulted (a page the guest gave back):
    // record it and resume after the load, whatever its encoded length.
    let probe = PROBE_AT.load(Ordering::SeqCst);
    if matches!(scause, EXC_LOAD_ACCESS_FAULT | EXC_LOAD_PAGE_FAULT) && probe != 0 && stval == probe {
        PROBE_ABORTED.store(true, Ordering::SeqCst);
        // SAFETY: sepc is the probe's load instruction, in our own code.
        let low = unsafe { core::ptr::read_volatile(sepc as *const u16) };
        let len = if low & 3 == 3 { 4 } else { 2 };
        // SAFETY: as above; the exit path restores sepc from this slot.
        unsafe { *frame.add(entry::FRAME_SEPC) = sepc + len };
        return;
    }
    // SAFETY: per the contract, the vector saved sstatus at this slot.
    let sstatus = unsafe { *frame.add(entry::FRAME_SSTATUS) };
    // In a fuzz domain, the hypercall last made is the likely culprit.
    let mut fuzz = Buf::<96>::new();
    if lantern_guest_scenario::fuzz::active() {
        let (index, nr, arg0) = lantern_guest_scenario::fuzz::current();
        let _ = write!(fuzz, " fuzz_call={index} nr={nr} arg0={arg0:#x}");
    }
    lantern_guest_scenario::crash(
        &GUEST,
        format_args!(
            "EXCEPTION vcpu={} scause={scause:#x} sepc={sepc:#x} stval={stval:#x} sstatus={sstatus:#x} stray_irqs={}{}",
            current_vcpu(),
            STRAY_IRQS.load(Ordering::Relaxed),
            fuzz.as_str()
        ),
    )
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    lantern_guest_scenario::crash(&GUEST, format_args!("PANIC vcpu={}: {}", current_vcpu(), info))
}
