//! The guest proper (compiled only for the guest targets, see `build.rs`).

#[cfg(target_arch = "x86")]
#[path = "hypercall32.rs"]
mod hypercall;
#[cfg(target_arch = "x86_64")]
#[path = "hypercall64.rs"]
mod hypercall;

#[path = "cpu.rs"]
mod cpu;
#[path = "entry.rs"]
mod entry;
#[path = "idt.rs"]
mod idt;
#[cfg(target_arch = "x86")]
#[path = "mem32.rs"]
mod mem32;
#[path = "xen_x86.rs"]
mod xen_x86;

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use lantern_guest_scenario::console::{self, Buf, LineLock, Words};
use lantern_guest_scenario::hypercall::{self as xen, Version};
use lantern_guest_scenario::identity::{GuestPages, Page};
use lantern_guest_scenario::{layout, Guest, Layout};
use xen_abi::arch_x86::DEBUG_PORT;
use xen_abi::nr::{domid, hvm_param, hvmop, hypercall as nr, vcpuop};
use xen_abi::public::XenHvmParam;
use xen_abi::Errno;
use zerocopy::IntoBytes;

use xen_x86::{HvmStartInfo, Phys32EntryNote, VcpuHvmContext};

/// Most vCPUs this guest has stacks for.
pub const MAX_VCPUS: usize = 48;
/// Per-vCPU stack size (a power of two: the upcall handler derives the vCPU
/// id from its stack pointer).
pub const STACK_SIZE: usize = 16384;
/// IDT vector the hypervisor is asked to deliver event upcalls on.
pub const UPCALL_VECTOR: u8 = 0xf3;

extern "C" {
    /// Base of the per-vCPU stacks (entry asm, .bss).
    static guest_stacks: u8;
    /// 32-bit entry point of vCPU 0, where the PVH note points (entry asm).
    fn pvh_start32();
    /// 32-bit entry point of secondary vCPUs (entry asm).
    fn ap_start32();
}

/// The PVH entry note, by which the loader finds `pvh_start32`.
#[used]
#[link_section = ".note.Xen"]
static PVH_ENTRY_NOTE: Phys32EntryNote = Phys32EntryNote::new(pvh_start32);

/// The page the hypervisor fills with hypercall stubs.
static HYPERCALL_PAGE: Page = Page::new();
/// The page replaced by shared_info and the scratch pages.
static PAGES: GuestPages = GuestPages::new();

/// Set once the hypercall page is installed: console output then goes
/// through `console_io` instead of the debug port.
static HYPERCALLS_READY: AtomicBool = AtomicBool::new(false);
/// Number of hypercall pages (informational).
static HYPERCALL_PAGES: AtomicU32 = AtomicU32::new(0);
/// Serialises console lines from different vCPUs.
static CONSOLE_LOCK: LineLock = LineLock::new();

/// The guest command line copied out of hvm_start_info.
static mut CMDLINE: Buf<256> = Buf::new();

/// Write bytes to the debug port.
fn debugcon(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: the debug port is the debug console; writing it has no
        // effect on memory or on our state.
        unsafe { core::arch::asm!("out dx, al", in("dx") DEBUG_PORT, in("al") b, options(nomem, nostack)) };
    }
}

/// Early diagnostics before (or without) a hypervisor: debug port only.
fn early(args: core::fmt::Arguments<'_>) {
    console::line(&debugcon, args);
}

/// Stop this vCPU for good without a hypervisor to shut us down.
fn halt_forever() -> ! {
    loop {
        // SAFETY: masking interrupts and halting only stops this vCPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// The x86 implementation of the scenario's [`Guest`].
pub struct X86Guest;

/// The one instance (it has no state of its own).
pub static GUEST: X86Guest = X86Guest;

// SAFETY: guest RAM and the console ring page below 4 GiB are
// identity-mapped (paging off in the 32-bit build, a 1:1 map of the first
// 4 GiB in the 64-bit one), and the shared_info, scratch and balloon pages are
// `PAGES`, which no Rust reference reaches (nor the ring, which is no RAM
// of ours).
unsafe impl Guest for X86Guest {
    fn layout(&self) -> &'static Layout {
        if cfg!(target_arch = "x86_64") {
            &layout::X86_64
        } else {
            &layout::X86_32
        }
    }

    fn image(&self) -> core::ops::Range<u64> {
        extern "C" {
            /// The linker script's bounds of the whole image (code, data,
            /// .bss with the stacks).
            static __image_start: u8;
            static __image_end: u8;
        }
        // Addresses as run (the guest runs where it is linked): only the symbols' addresses
        // are taken, nothing is read.
        core::ptr::addr_of!(__image_start) as u64..core::ptr::addr_of!(__image_end) as u64
    }

    fn hypercall(&self, nr: u64, args: [u64; 5]) -> i64 {
        if !HYPERCALLS_READY.load(Ordering::Acquire) || nr >= xen_x86::HYPERCALL_STUBS {
            return Errno::ENOSYS.to_hypercall_ret();
        }
        // SAFETY: the page was installed through the hypervisor's MSR and
        // holds a stub per hypercall number below HYPERCALL_STUBS.
        unsafe {
            let stub = HYPERCALL_PAGE.gpa() as usize + nr as usize * xen_x86::HYPERCALL_STUB_SIZE;
            hypercall::hypercall(stub, args)
        }
    }

    fn console(&self, bytes: &[u8]) {
        CONSOLE_LOCK.with(|| {
            if HYPERCALLS_READY.load(Ordering::Acquire) {
                xen::console_write(self, bytes);
            } else {
                debugcon(bytes);
            }
        });
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

    fn vcpu_count(&self) -> u32 {
        // PVH gives no vCPU count without ACPI; the scenario probes with
        // VCPUOP_is_up and only falls back to this.
        1
    }

    fn start_secondary(&self, vcpu: u32) -> i64 {
        if vcpu as usize >= MAX_VCPUS {
            return Errno::EINVAL.to_hypercall_ret();
        }
        let ctx = ap_context(vcpu);
        let rc = xen::vcpu_op(self, vcpuop::INITIALISE, vcpu, ctx.as_bytes());
        if rc != 0 {
            return rc;
        }
        xen::vcpu_up(self, vcpu)
    }

    fn dummy_start_refused(&self) -> bool {
        true
    }

    fn hostile_starts(&self, vcpu: u32, report: &mut dyn FnMut(&str, i64, i64)) {
        let good = ap_context(vcpu);
        let (eip, esp) = ap_start(vcpu);
        let einval = Errno::EINVAL.to_hypercall_ret();
        for (what, ctx) in xen_x86::refused_contexts(eip, esp) {
            report(what, xen::vcpu_op(self, vcpuop::INITIALISE, vcpu, ctx.as_bytes()), einval);
        }
        // A vCPU the domain does not have.
        let rc = xen::vcpu_op(self, vcpuop::INITIALISE, 4096, good.as_bytes());
        report("initialise vCPU 4096", rc, Errno::ENOENT.to_hypercall_ret());
    }

    fn setup_upcall(&self) -> i64 {
        let value = (hvm_param::CALLBACK_TYPE_VECTOR << hvm_param::CALLBACK_TYPE_SHIFT) | UPCALL_VECTOR as u64;
        let arg = XenHvmParam { domid: domid::SELF, pad: 0, index: hvm_param::CALLBACK_IRQ, value };
        self.hypercall(nr::HVM_OP, [hvmop::SET_PARAM, self.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0])
    }

    fn upcalls_enabled(&self, on: bool) {
        if on {
            // SAFETY: the IDT (loaded on every vCPU at entry) has a handler
            // for the upcall vector and for every exception.
            unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
        } else {
            // SAFETY: masking interrupts cannot break memory safety.
            unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
        }
    }

    fn cmdline(&self) -> &str {
        // SAFETY: written once by vCPU 0 before any secondary starts, read-only after.
        unsafe { (*core::ptr::addr_of!(CMDLINE)).as_str() }
    }

    fn ticks(&self) -> u64 {
        cpu::rdtsc()
    }

    fn raw_hypercall(&self, nr: u64, args: [u64; 5]) -> i64 {
        // SAFETY: a VMMCALL the hypervisor decodes by number like any other;
        // the fuzzer's arguments name no memory Rust owns.
        unsafe { hypercall::raw_vmmcall(nr, args) }
    }

    fn bare_trap(&self) -> i64 {
        // SAFETY: VMMCALL with a number no hypercall uses: the hypervisor
        // only decodes and refuses it.
        unsafe { hypercall::bare_vmmcall() }
    }

    fn name(&self) -> &'static str {
        if cfg!(target_arch = "x86_64") {
            "x86_64"
        } else {
            "x86_32"
        }
    }
}

/// `struct vcpu_hvm_context` for a secondary: 32-bit flat protected mode,
/// paging off, at `ap_start32`, with its own stack and `edi` = vCPU id (the
/// same state the PVH entry gives vCPU 0).
fn ap_context(vcpu: u32) -> VcpuHvmContext {
    let (eip, esp) = ap_start(vcpu);
    xen_x86::flat32_context(eip, esp, vcpu)
}

/// Where secondary vCPU `vcpu` starts: the 32-bit entry and its stack top.
fn ap_start(vcpu: u32) -> (u32, u32) {
    let stack_top = core::ptr::addr_of!(guest_stacks) as usize + (vcpu as usize + 1) * STACK_SIZE;
    (ap_start32 as *const () as usize as u32, stack_top as u32)
}

/// Find Xen's CPUID leaves: returns the base leaf.
fn find_xen_leaves() -> Option<u32> {
    let bases =
        (xen_x86::XEN_CPUID_FIRST_LEAF..xen_x86::XEN_CPUID_BASE_END).step_by(xen_x86::XEN_CPUID_LEAF_STRIDE as usize);
    bases.into_iter().find(|&base| {
        let r = cpu::cpuid(base);
        let sig = [r.1.to_le_bytes(), r.2.to_le_bytes(), r.3.to_le_bytes()];
        sig.as_flattened() == xen_x86::XEN_CPUID_SIGNATURE.as_bytes() && r.0 >= base + xen_x86::XEN_CPUID_LEAF_HYPERCALL
    })
}

/// Copy the command line out of hvm_start_info (if any).
fn read_start_info(start_info: u32) {
    if start_info == 0 {
        return;
    }
    let mut si = HvmStartInfo::default();
    GUEST.read(start_info as u64, si.as_mut_bytes());
    if si.magic != xen_x86::XEN_HVM_START_MAGIC_VALUE {
        early(format_args!("lantern-guest: bad hvm_start_info magic {:#x}", si.magic));
        return;
    }
    let cmdline = si.cmdline_paddr;
    if cmdline == 0 {
        return;
    }
    // SAFETY: only vCPU 0 runs at this point; nobody else holds a reference.
    let out = unsafe { &mut *core::ptr::addr_of_mut!(CMDLINE) };
    for i in 0..255u64 {
        let mut c = [0u8; 1];
        GUEST.read(cmdline + i, &mut c);
        if c[0] == 0 || !c[0].is_ascii() {
            break;
        }
        let _ = out.write_char(c[0] as char);
    }
}

/// Rust entry of vCPU 0 (called by the PVH entry asm with a stack).
pub extern "C" fn boot_main(vcpu: u32, start_info: u32) -> ! {
    if vcpu != 0 {
        lantern_guest_scenario::secondary_main(&GUEST, vcpu);
    }
    idt::init();
    early(format_args!("lantern-guest-{}: PVH entry ok, start_info={start_info:#x}", GUEST.name()));
    read_start_info(start_info);
    let Some(base) = find_xen_leaves() else {
        early(format_args!(
            "lantern-guest-{}: Xen CPUID signature ({} at {:#x}..) not found; halting",
            GUEST.name(),
            xen_x86::XEN_CPUID_SIGNATURE,
            xen_x86::XEN_CPUID_FIRST_LEAF
        ));
        if GUEST.cmdline().split_ascii_whitespace().any(|w| w == "selftest") {
            selftest_without_xen();
        }
        halt_forever();
    };
    let version = cpu::cpuid(base + xen_x86::XEN_CPUID_LEAF_VERSION).0;
    let (pages, msr) = {
        let r = cpu::cpuid(base + xen_x86::XEN_CPUID_LEAF_HYPERCALL);
        (r.0, r.1)
    };
    HYPERCALL_PAGES.store(pages, Ordering::Relaxed);
    let page = HYPERCALL_PAGE.gpa();
    // SAFETY: the MSR named by Xen's hypercall leaf asks the hypervisor to
    // write hypercall stubs into our page (page 0 in the low 12 bits).
    unsafe { cpu::wrmsr(msr, page) };
    HYPERCALLS_READY.store(true, Ordering::Release);
    let mut b = Buf::<160>::new();
    let _ = writeln!(
        b,
        "REPORT cpuid_base={base:#x} cpuid_version={} hypercall_msr={msr:#x} hypercall_page={page:#x} cmdline={}",
        Version(version as u64),
        Words(GUEST.cmdline())
    );
    GUEST.console(b.as_bytes());
    lantern_guest_scenario::run(&GUEST)
}

/// Exercise the interrupt paths on bare QEMU (no hypervisor): a software
/// interrupt on the upcall vector must come back through the upcall stub
/// (counted), and `ud2` must reach the exception handler, which reports on
/// the debug port.
fn selftest_without_xen() {
    let before = lantern_guest_scenario::VCPUS.upcalls[0].load(Ordering::Acquire);
    // SAFETY: the IDT is loaded and has a handler for this vector; the stub
    // saves every register it touches.
    unsafe { core::arch::asm!("int {vector}", vector = const UPCALL_VECTOR) };
    let after = lantern_guest_scenario::VCPUS.upcalls[0].load(Ordering::Acquire);
    early(format_args!("selftest: upcall vector handled, upcalls {before} -> {after}"));
    // SAFETY: deliberately raises #UD to test the exception path; the
    // handler never returns.
    unsafe { core::arch::asm!("ud2") };
}

/// Rust entry of secondary vCPUs.
pub extern "C" fn ap_main(vcpu: u32, _start_info: u32) -> ! {
    idt::load();
    lantern_guest_scenario::secondary_main(&GUEST, vcpu)
}

/// vCPU id of the caller, derived from which per-vCPU stack it runs on.
pub fn current_vcpu() -> u32 {
    let marker = 0u8;
    let sp = core::ptr::addr_of!(marker) as usize;
    let base = core::ptr::addr_of!(guest_stacks) as usize;
    (sp.wrapping_sub(base) / STACK_SIZE) as u32
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    lantern_guest_scenario::crash(&GUEST, format_args!("PANIC vcpu={}: {}", current_vcpu(), info))
}
