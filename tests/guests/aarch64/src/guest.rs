//! The guest proper (compiled only for aarch64-unknown-none, see `build.rs`).

#[path = "entry.rs"]
mod entry;

use core::arch::asm;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lantern_guest_scenario::console::{Buf, LineLock, Words};
use lantern_guest_scenario::hypercall as xen;
use lantern_guest_scenario::identity::GuestPages;
use lantern_guest_scenario::{layout, Guest, Layout, Probe, MAX_VCPUS as TABLE_VCPUS};
use xen_abi::arch_arm::{EVTCHN_PPI, HYPERCALL_HVC_IMM as XEN_HYPERCALL_TAG};
use xen_abi::Errno;

/// Most vCPUs this guest has stacks for.
pub const MAX_VCPUS: usize = 16;
/// Per-vCPU stack size.
pub const STACK_SIZE: usize = 16384;
/// PSCI 0.2+ `CPU_ON` (SMC64 calling convention).
const PSCI_CPU_ON: u64 = 0xc400_0003;
/// GICv3: offset of the SGI/PPI frame inside a redistributor.
const GICR_SGI_FRAME: u64 = 0x1_0000;
/// GICv3: `GICR_ISENABLER0` inside the SGI frame.
const GICR_ISENABLER0: u64 = 0x100;
/// GICv3: redistributor stride (RD + SGI frames).
const GICR_STRIDE: u64 = 0x2_0000;

/// Facts taken from the device tree by vCPU 0 before secondaries start.
struct BootInfo {
    cmdline: Buf<256>,
    vcpus: u32,
    mpidr: [u64; MAX_VCPUS],
    gicr_base: u64,
}

static mut BOOT: BootInfo = BootInfo { cmdline: Buf::new(), vcpus: 1, mpidr: [0; MAX_VCPUS], gicr_base: 0 };

/// The page replaced by shared_info and the scratch pages.
static PAGES: GuestPages = GuestPages::new();

/// Serialises console lines from different vCPUs.
static CONSOLE_LOCK: LineLock = LineLock::new();
/// Number of IRQs that were not the upcall (diagnostics).
static STRAY_IRQS: AtomicU64 = AtomicU64::new(0);

fn boot() -> &'static BootInfo {
    // SAFETY: BOOT is written only by vCPU 0 in `parse_dtb`, before any
    // secondary exists and before any shared reference is taken.
    unsafe { &*core::ptr::addr_of!(BOOT) }
}

/// Raw `hvc #XEN_HYPERCALL_TAG`: x16 = number, x0..x4 = arguments, x0 = result.
fn xen_hypercall(nr: u64, a: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: a Xen hypercall only touches guest memory the arguments name
    // (buffers the caller owns); argument registers are declared clobbered.
    unsafe {
        asm!(
            "hvc #{tag}",
            tag = const XEN_HYPERCALL_TAG,
            in("x16") nr,
            inlateout("x0") a[0] => ret,
            inlateout("x1") a[1] => _,
            inlateout("x2") a[2] => _,
            inlateout("x3") a[3] => _,
            inlateout("x4") a[4] => _,
            options(nostack),
        );
    }
    ret
}

/// PSCI call through `hvc #0` (the conduit the guest DTB names).
fn psci(func: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: PSCI calls do not touch guest memory; SMCCC lets the callee
    // clobber x0-x17, declared here.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") func => ret,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            inlateout("x3") a3 => _,
            lateout("x4") _, lateout("x5") _, lateout("x6") _, lateout("x7") _,
            lateout("x8") _, lateout("x9") _, lateout("x10") _, lateout("x11") _,
            lateout("x12") _, lateout("x13") _, lateout("x14") _, lateout("x15") _,
            lateout("x16") _, lateout("x17") _,
            options(nostack),
        );
    }
    ret
}

/// The arm64 implementation of the scenario's [`Guest`].
pub struct ArmGuest;

/// The one instance.
pub static GUEST: ArmGuest = ArmGuest;

// SAFETY: the entry code maps the low 3 GiB (all of RAM) 1:1 as normal
// memory and the top GiB 1:1 as device memory (where the hypervisor puts
// the console ring, which the scenario reads and writes with aligned
// accesses only), and the shared_info, scratch and balloon pages are `PAGES`, which
// no Rust reference reaches.
unsafe impl Guest for ArmGuest {
    fn layout(&self) -> &'static Layout {
        &layout::ARM64
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
        // Addresses as run (the guest relocates itself and the references are PC-relative): only the symbols' addresses
        // are taken, nothing is read.
        core::ptr::addr_of!(__image_start) as u64..core::ptr::addr_of!(__image_end) as u64
    }

    fn mmio_gpa(&self) -> u64 {
        // The first redistributor (emulated MMIO, from the DTB).
        boot().gicr_base
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
        // SAFETY: `gpa` is identity-mapped normal memory (the trait's
        // contract); the load is one 4-byte instruction, so the exception
        // handler can skip exactly it if it aborts (see `exception`).
        unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) gpa, v = out(reg) v, options(nostack, readonly)) };
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
        psci(PSCI_CPU_ON, boot().mpidr[vcpu as usize], entry, vcpu as u64)
    }

    fn dummy_start_refused(&self) -> bool {
        false
    }

    fn hostile_starts(&self, vcpu: u32, report: &mut dyn FnMut(&str, i64, i64)) {
        let entry = entry::guest_secondary_entry as *const () as u64;
        let b = boot();
        // PSCI's INVALID_ADDRESS, INVALID_PARAMETERS and ALREADY_ON.
        let rc = psci(PSCI_CPU_ON, b.mpidr[vcpu as usize], entry | 1, vcpu as u64);
        report("CPU_ON with a Thumb entry point", rc, -9);
        report("CPU_ON of a CPU that does not exist", psci(PSCI_CPU_ON, 0xff_ff00, entry, 0), -2);
        report("CPU_ON of vCPU 0, already on", psci(PSCI_CPU_ON, b.mpidr[0], entry, 0), -4);
    }

    fn setup_upcall(&self) -> i64 {
        gic_cpu_init(0);
        0
    }

    fn upcalls_enabled(&self, on: bool) {
        if on {
            // SAFETY: the vector table is installed on every vCPU at entry.
            unsafe { asm!("msr daifclr, #2", "isb", options(nomem, nostack)) };
        } else {
            // SAFETY: masking IRQs cannot break memory safety.
            unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
        }
    }

    fn cmdline(&self) -> &str {
        boot().cmdline.as_str()
    }

    fn name(&self) -> &'static str {
        "arm64"
    }

    fn ticks(&self) -> u64 {
        let t: u64;
        // SAFETY: reading the virtual counter has no side effects.
        unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack)) };
        t
    }

    fn tick_hz(&self) -> u64 {
        let f: u64;
        // SAFETY: reading the counter frequency has no side effects.
        unsafe { asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
        f
    }

    fn bare_trap(&self) -> i64 {
        xen_hypercall(lantern_guest_scenario::UNUSED_HYPERCALL, [0; 5])
    }
}

/// Per-vCPU GIC setup: system-register CPU interface on, all priorities
/// unmasked, group 1 enabled, PPI 31 enabled in our redistributor.
fn gic_cpu_init(vcpu: u32) {
    // SAFETY: ICC_SRE_EL1 / ICC_PMR_EL1 / ICC_IGRPEN1_EL1 only configure this
    // vCPU's (virtual) GIC CPU interface.
    unsafe {
        asm!(
            "mrs {t}, S3_0_C12_C12_5",
            "orr {t}, {t}, #1",
            "msr S3_0_C12_C12_5, {t}",
            "isb",
            "mov {t}, #0xff",
            "msr S3_0_C4_C6_0, {t}",
            "mov {t}, #1",
            "msr S3_0_C12_C12_7, {t}",
            "isb",
            t = out(reg) _,
            options(nostack),
        );
    }
    let base = boot().gicr_base;
    if base != 0 {
        let reg = base + vcpu as u64 * GICR_STRIDE + GICR_SGI_FRAME + GICR_ISENABLER0;
        // SAFETY: the redistributor frame of this vCPU, from the guest DTB,
        // mapped as Device memory by our page tables.
        unsafe { core::ptr::write_volatile(reg as *mut u32, 1 << EVTCHN_PPI) };
    }
}

/// Take what we need from the guest device tree.
fn parse_dtb(dtb: u64) {
    // SAFETY: only vCPU 0 runs; no other reference to BOOT exists yet.
    let b = unsafe { &mut *core::ptr::addr_of_mut!(BOOT) };
    if dtb == 0 {
        return;
    }
    // SAFETY: the hypervisor passes the address of a valid FDT in x0.
    let Ok(fdt) = (unsafe { fdt::Fdt::from_ptr(dtb as *const u8) }) else {
        return;
    };
    if let Some(args) = fdt.chosen().bootargs() {
        let _ = b.cmdline.write_str(args);
    }
    let mut n = 0;
    for cpu in fdt.cpus() {
        if n < MAX_VCPUS {
            b.mpidr[n] = cpu.ids().first() as u64;
        }
        n += 1;
    }
    b.vcpus = (n.max(1) as u32).min(MAX_VCPUS.min(TABLE_VCPUS) as u32);
    if let Some(gic) = fdt.find_compatible(&["arm,gic-v3"]) {
        if let Some(mut regs) = gic.reg() {
            let _gicd = regs.next();
            if let Some(r) = regs.next() {
                b.gicr_base = r.starting_address as u64;
            }
        }
    }
}

/// Rust entry of every vCPU (from the entry asm, MMU and stack ready).
pub extern "C" fn vcpu_main(vcpu: u64, dtb: u64) -> ! {
    let vcpu = vcpu as u32;
    if vcpu != 0 {
        gic_cpu_init(vcpu);
        lantern_guest_scenario::secondary_main(&GUEST, vcpu);
    }
    parse_dtb(dtb);
    let b = boot();
    let mut line = Buf::<256>::new();
    let _ = writeln!(
        line,
        "REPORT dtb={dtb:#x} image_base={:#x} dt_vcpus={} gicr_base={:#x} cmdline={}",
        entry::guest_secondary_entry as *const () as u64 & !0xfff_u64,
        b.vcpus,
        b.gicr_base,
        Words(b.cmdline.as_str())
    );
    GUEST.console(line.as_bytes());
    lantern_guest_scenario::run(&GUEST)
}

/// Current vCPU id (kept in TPIDR_EL1 by the entry code).
fn current_vcpu() -> u32 {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack)) };
    v as u32
}

/// The address [`Guest::probe_read`] is loading from (0: no probe), and
/// whether that load aborted.
static PROBE_AT: AtomicU64 = AtomicU64::new(0);
static PROBE_ABORTED: AtomicBool = AtomicBool::new(false);

/// Exception class of a data abort taken without a change in EL.
const EC_DABT_CUR: u64 = 0x25;

/// Every EL1 exception lands here with the vector slot number (0..15) and
/// the saved register frame: IRQs are acknowledged and, for PPI 31, handed
/// to the scenario; the data abort of a probe load is skipped; anything
/// else is reported and crashes the domain.
///
/// # Safety
/// Only the vector code may call this, with `frame` pointing at the
/// register frame it saved (and restores on return: a probe's abort
/// rewrites the saved ELR_EL1 in it).
pub unsafe extern "C" fn exception(kind: u64, frame: *mut u64) {
    // Slots: 0-3 current EL SP0, 4-7 current EL SPx, 8-15 lower EL; the
    // second of each group of four is IRQ.
    if kind % 4 == 1 {
        let intid: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the highest-priority
        // pending group-1 interrupt of this vCPU.
        unsafe { asm!("mrs {}, S3_0_C12_C12_0", out(reg) intid, options(nomem, nostack)) };
        let intid = intid & 0xff_ffff;
        if intid >= 1020 {
            return;
        }
        if intid == EVTCHN_PPI as u64 {
            lantern_guest_scenario::on_upcall(&GUEST, current_vcpu());
        } else {
            STRAY_IRQS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: ICC_EOIR1_EL1 completes the interrupt we acknowledged.
        unsafe { asm!("msr S3_0_C12_C12_1, {}", in(reg) intid, options(nomem, nostack)) };
        return;
    }
    let (esr, far): (u64, u64);
    // SAFETY: reading syndrome registers has no side effects.
    unsafe {
        asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far, options(nomem, nostack));
    }
    // SAFETY: per the contract, the entry asm saved ELR_EL1 at frame[21].
    let elr = unsafe { *frame.add(21) };
    // A synchronous exception from EL1h (slot 4) that is the data abort of
    // the probe load in flight: record it and resume after the load.
    let probe = PROBE_AT.load(Ordering::SeqCst);
    if kind == 4 && esr >> 26 == EC_DABT_CUR && probe != 0 && far == probe {
        PROBE_ABORTED.store(true, Ordering::SeqCst);
        // SAFETY: as above; the exit path restores ELR_EL1 from frame[21].
        unsafe { *frame.add(21) = elr + 4 };
        return;
    }
    let vcpu = current_vcpu();
    lantern_guest_scenario::crash(
        &GUEST,
        format_args!("EXCEPTION vcpu={vcpu} kind={kind} esr={esr:#x} elr={elr:#x} far={far:#x}"),
    )
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    lantern_guest_scenario::crash(&GUEST, format_args!("PANIC vcpu={}: {}", current_vcpu(), info))
}
