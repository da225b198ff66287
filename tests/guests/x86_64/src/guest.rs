//! The guest proper (compiled only for the guest targets, see `build.rs`).

#[cfg(target_arch = "x86")]
#[path = "entry32.rs"]
mod entry;
#[cfg(target_arch = "x86_64")]
#[path = "entry64.rs"]
mod entry;

#[path = "cpu.rs"]
mod cpu;
#[path = "idt.rs"]
mod idt;
#[cfg(target_arch = "x86")]
#[path = "mem32.rs"]
mod mem32;

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use lantern_guest_scenario::console::{Buf, Words};
use lantern_guest_scenario::{abi, layout, Guest, Layout};

/// Most vCPUs this guest has stacks for.
pub const MAX_VCPUS: usize = 48;
/// Per-vCPU stack size (a power of two: the upcall handler derives the vCPU
/// id from its stack pointer).
pub const STACK_SIZE: usize = 16384;
/// IDT vector the hypervisor is asked to deliver event upcalls on.
pub const UPCALL_VECTOR: u8 = 0xf3;

/// `hvm_start_info.magic`.
const HVM_START_MAGIC: u32 = 0x336e_c578;

extern "C" {
    /// Page the hypervisor fills with hypercall stubs (entry asm, .bss).
    static guest_hypercall_page: u8;
    /// Page replaced by shared_info (entry asm, .bss).
    static guest_shared_info: u8;
    /// Four zeroed scratch pages (entry asm, .bss).
    static guest_scratch: u8;
    /// Base of the per-vCPU stacks (entry asm, .bss).
    static guest_stacks: u8;
    /// 32-bit entry point of secondary vCPUs (entry asm).
    fn ap_start32();
}

/// Set once the hypercall page is installed: console output then goes
/// through `console_io` instead of the debug port.
static HYPERCALLS_READY: AtomicBool = AtomicBool::new(false);
/// Number of hypercall pages (informational).
static HYPERCALL_PAGES: AtomicU32 = AtomicU32::new(0);
/// Serialises console lines from different vCPUs.
static CONSOLE_LOCK: AtomicBool = AtomicBool::new(false);

/// The guest command line copied out of hvm_start_info.
static mut CMDLINE: Buf<256> = Buf::new();

/// Write bytes to the 0xe9 debug port (QEMU `-debugcon`, Lantern's debug port).
fn debugcon(bytes: &[u8]) {
    for &b in bytes {
        // SAFETY: port 0xe9 is the debug console; writing it has no effect
        // on memory or on our state.
        unsafe { core::arch::asm!("out dx, al", in("dx") 0xe9u16, in("al") b, options(nomem, nostack)) };
    }
}

/// Early diagnostics before (or without) a hypervisor: debug port only.
fn early(args: core::fmt::Arguments<'_>) {
    let mut b = Buf::<256>::new();
    let _ = b.write_fmt(args);
    let _ = b.write_str("\n");
    debugcon(b.as_bytes());
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

impl Guest for X86Guest {
    fn layout(&self) -> &'static Layout {
        if cfg!(target_arch = "x86_64") {
            &layout::X86_64
        } else {
            &layout::X86_32
        }
    }

    fn hypercall(&self, nr: u32, args: [u64; 5]) -> i64 {
        if !HYPERCALLS_READY.load(Ordering::Acquire) || nr >= 128 {
            return -abi::errno::ENOSYS;
        }
        // SAFETY: the page was installed through the hypervisor's MSR and
        // holds a 32-byte stub per hypercall number (< 128).
        unsafe {
            let stub = core::ptr::addr_of!(guest_hypercall_page) as usize + nr as usize * 32;
            entry::hypercall(stub, args)
        }
    }

    fn console(&self, bytes: &[u8]) {
        while CONSOLE_LOCK.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        if HYPERCALLS_READY.load(Ordering::Acquire) {
            self.hypercall(
                abi::hc::CONSOLE_IO,
                [abi::CONSOLEIO_WRITE, bytes.len() as u64, bytes.as_ptr() as u64, 0, 0],
            );
        } else {
            debugcon(bytes);
        }
        CONSOLE_LOCK.store(false, Ordering::Release);
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) {
        // SAFETY: guest RAM is identity-mapped, and the scenario only names
        // pages it was given (or shared_info), which are not Rust objects.
        unsafe { lantern_guest_scenario::identity::read(gpa, buf) }
    }

    fn write(&self, gpa: u64, data: &[u8]) {
        // SAFETY: as for `read`.
        unsafe { lantern_guest_scenario::identity::write(gpa, data) }
    }

    fn gpa_of(&self, p: *const u8) -> u64 {
        // Identity mapping (paging off in the 32-bit guest, 1:1 in the
        // 64-bit one).
        p as usize as u64
    }

    fn scratch_pages(&self) -> [u64; 4] {
        let base = core::ptr::addr_of!(guest_scratch) as usize as u64;
        [base, base + 4096, base + 2 * 4096, base + 3 * 4096]
    }

    fn shared_info_page(&self) -> u64 {
        core::ptr::addr_of!(guest_shared_info) as usize as u64
    }

    fn vcpu_count(&self) -> u32 {
        // PVH gives no vCPU count without ACPI; the scenario probes with
        // VCPUOP_is_up and only falls back to this.
        1
    }

    fn start_secondary(&self, vcpu: u32) -> i64 {
        if vcpu as usize >= MAX_VCPUS {
            return -abi::errno::EINVAL;
        }
        let ctx = ap_context(vcpu);
        let rc = self.hypercall(abi::hc::VCPU_OP, [abi::VCPUOP_INITIALISE, vcpu as u64, ctx.as_ptr() as u64, 0, 0]);
        if rc != 0 {
            return rc;
        }
        self.hypercall(abi::hc::VCPU_OP, [abi::VCPUOP_UP, vcpu as u64, 0, 0, 0])
    }

    fn dummy_start_refused(&self) -> bool {
        true
    }

    fn setup_upcall(&self) -> i64 {
        let value = (abi::HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | UPCALL_VECTOR as u64;
        let arg = abi::hvm_param_arg(abi::HVM_PARAM_CALLBACK_IRQ, value);
        self.hypercall(abi::hc::HVM_OP, [abi::HVMOP_SET_PARAM, arg.as_ptr() as u64, 0, 0, 0])
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

    fn bare_trap(&self) -> i64 {
        // SAFETY: VMMCALL with a number no hypercall uses: the hypervisor
        // only decodes and refuses it.
        unsafe { entry::bare_vmmcall() }
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
fn ap_context(vcpu: u32) -> [u8; 128] {
    let stack_top = core::ptr::addr_of!(guest_stacks) as usize + (vcpu as usize + 1) * STACK_SIZE;
    abi::vcpu_hvm_context_32(ap_start32 as *const () as usize as u32, stack_top as u32, vcpu)
}

/// Find Xen's CPUID leaves: returns the base leaf.
fn find_xen_leaves() -> Option<u32> {
    for base in (0x4000_0000u32..0x4001_0000).step_by(0x100) {
        let r = cpu::cpuid(base);
        let sig = [r.1.to_le_bytes(), r.2.to_le_bytes(), r.3.to_le_bytes()];
        if sig.as_flattened() == b"XenVMMXenVMM" && r.0 >= base + 2 {
            return Some(base);
        }
    }
    None
}

/// Copy the command line out of hvm_start_info (if any).
fn read_start_info(start_info: u32) {
    if start_info == 0 {
        return;
    }
    let si = start_info as usize;
    let mut b = [0u8; 32];
    GUEST.read(si as u64, &mut b);
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if magic != HVM_START_MAGIC {
        early(format_args!("lantern-guest: bad hvm_start_info magic {magic:#x}"));
        return;
    }
    let cmdline = u64::from_le_bytes(b[24..32].try_into().unwrap_or([0; 8]));
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
            "lantern-guest-{}: Xen CPUID signature (XenVMMXenVMM at 0x40000000..) not found; halting",
            GUEST.name()
        ));
        if GUEST.cmdline().split_ascii_whitespace().any(|w| w == "selftest") {
            selftest_without_xen();
        }
        halt_forever();
    };
    let version = cpu::cpuid(base + 1).0;
    let (pages, msr) = {
        let r = cpu::cpuid(base + 2);
        (r.0, r.1)
    };
    HYPERCALL_PAGES.store(pages, Ordering::Relaxed);
    let page = core::ptr::addr_of!(guest_hypercall_page) as usize as u64;
    // SAFETY: the MSR named by Xen's leaf base+2 asks the hypervisor to
    // write hypercall stubs into our page (page 0 in the low 12 bits).
    unsafe { cpu::wrmsr(msr, page) };
    HYPERCALLS_READY.store(true, Ordering::Release);
    let mut b = Buf::<160>::new();
    let _ = writeln!(
        b,
        "REPORT cpuid_base={base:#x} cpuid_version={}.{} hypercall_msr={msr:#x} hypercall_page={page:#x} cmdline={}",
        version >> 16,
        version & 0xffff,
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
    unsafe { core::arch::asm!("int 0xf3") };
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
    let mut b = Buf::<256>::new();
    let _ = writeln!(b, "PANIC vcpu={}: {}", current_vcpu(), info);
    GUEST.console(b.as_bytes());
    lantern_guest_scenario::shutdown(&GUEST, abi::SHUTDOWN_CRASH)
}
