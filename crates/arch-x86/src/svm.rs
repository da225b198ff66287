//! AMD SVM mechanics: turning SVM on, the per-vCPU hardware context (VMCB,
//! general registers, FPU state) and the VMRUN entry stub.
//!
//! VMRUN/#VMEXIT switch only RAX, RSP, RIP, control and segment state; the stub
//! swaps every other GPR by hand and uses VMLOAD/VMSAVE for FS/GS/TR/LDTR and
//! the syscall MSRs. Host interrupts stay deliverable to the guest as INTR
//! exits: `clgi; sti; vmrun; cli; stgi` (GIF is 0 after #VMEXIT).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::vmcb::{
    efer, int_ctl, intercept1, intercept2, Vmcb, VmcbSegment, ATTR_CODE32, ATTR_CODE64, ATTR_DATA32, ATTR_LDT,
    ATTR_REAL_CODE, ATTR_REAL_DATA, ATTR_TSS_BUSY,
};

/// Guest general-purpose registers the entry stub saves and restores (RAX and
/// RSP live in the VMCB). The order is fixed by the stub's offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// rbx (offset 0)
    pub rbx: u64,
    /// rcx (8)
    pub rcx: u64,
    /// rdx (16)
    pub rdx: u64,
    /// rsi (24)
    pub rsi: u64,
    /// rdi (32)
    pub rdi: u64,
    /// rbp (40)
    pub rbp: u64,
    /// r8 (48)
    pub r8: u64,
    /// r9
    pub r9: u64,
    /// r10
    pub r10: u64,
    /// r11
    pub r11: u64,
    /// r12
    pub r12: u64,
    /// r13
    pub r13: u64,
    /// r14
    pub r14: u64,
    /// r15 (104)
    pub r15: u64,
}

const _: () = assert!(core::mem::offset_of!(GuestRegs, r15) == 104);

/// FXSAVE area: the guest's x87/SSE state, swapped around VMRUN because the
/// physical FPU is shared by every vCPU.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FxArea(pub [u8; 512]);

/// The I/O (12 KiB) and MSR (8 KiB) permission maps. Every bit starts set:
/// every port and MSR access exits, so nothing reaches real hardware. Only
/// [`PermissionMaps::pass_through_port`] ever clears an I/O bit, for ports
/// the board decodes to nothing.
#[repr(C, align(4096))]
pub struct PermissionMaps {
    /// I/O permission map: one bit per port, set = intercept. Atomic because
    /// the domain's vCPUs on other CPUs read it while one vCPU opens a port
    /// (the processor reads it as plain bytes; the layouts agree).
    pub iopm: [AtomicU8; 3 * 4096],
    /// MSR permission map.
    pub msrpm: [u8; 2 * 4096],
}

impl PermissionMaps {
    /// Maps that intercept everything.
    pub fn intercept_all() -> Box<Self> {
        // Built in place: 20 KiB is too big for comfort on the boot stack.
        let mut maps: Box<core::mem::MaybeUninit<Self>> = Box::new_uninit();
        // SAFETY: every byte of the allocation is written before
        // `assume_init`, and all-ones bytes are valid `u8`s and `AtomicU8`s.
        unsafe {
            core::ptr::write_bytes(maps.as_mut_ptr(), 0xFF, 1);
            maps.assume_init()
        }
    }

    /// Lets accesses to `port` reach the machine without an exit. Only for a
    /// port the board decodes to nothing, where the machine itself answers
    /// as Lantern would (reads all ones, writes vanish) and no state is
    /// shared between domains. A stale intercept on another CPU costs one
    /// more exit, nothing else.
    pub fn pass_through_port(&self, port: u16) {
        let bit = 1u8 << (port % 8);
        self.iopm[port as usize / 8].fetch_and(!bit, Ordering::Relaxed);
    }

    /// Whether an access to `port` exits.
    pub fn intercepts_port(&self, port: u16) -> bool {
        self.iopm[port as usize / 8].load(Ordering::Relaxed) & (1 << (port % 8)) != 0
    }
}

/// Which mode a fresh vCPU starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Xen PVH entry: 32-bit flat protected mode, paging off.
    Flat32,
    /// 64-bit long mode with the given CR3 (used by raw self-tests).
    Long64 {
        /// Guest page-table root.
        cr3: u64,
    },
    /// Real mode with CS = `cs_selector` (base = selector × 16): where a
    /// startup IPI starts an application processor.
    Real {
        /// The code segment's selector.
        cs_selector: u16,
    },
}

/// Guest ASID used for every domain: TLB_CONTROL flushes on every switch
/// (QEMU offers no flush-by-ASID anyway).
pub const GUEST_ASID: u32 = 1;

/// Fills `vmcb` with the intercepts Lantern needs and an initial guest state.
pub fn init_vmcb(vmcb: &mut Vmcb, maps_pa: u64, ncr3: u64, mode: StartMode, rip: u64) {
    *vmcb = Vmcb::zeroed();
    let c = &mut vmcb.control;
    c.intercept_exceptions = 1 << 18; // #MC
                                      // CR4 writes are checked against the features the guest sees (VMRUN
                                      // would otherwise fail on a bit QEMU let through, e.g. VMXE).
    c.intercept_cr = 1 << (16 + 4);
    c.intercept_misc1 = intercept1::INTR
        | intercept1::NMI
        | intercept1::SMI
        | intercept1::INIT
        | intercept1::CPUID
        | intercept1::INVD
        | intercept1::HLT
        | intercept1::IOIO_PROT
        | intercept1::MSR_PROT
        | intercept1::SHUTDOWN;
    c.intercept_misc2 = intercept2::VMRUN
        | intercept2::VMMCALL
        | intercept2::VMLOAD
        | intercept2::VMSAVE
        | intercept2::STGI
        | intercept2::CLGI
        | intercept2::SKINIT
        | intercept2::XSETBV;
    c.iopm_base_pa = maps_pa;
    c.msrpm_base_pa = maps_pa + 3 * 4096;
    c.guest_asid = GUEST_ASID;
    c.tlb_control = 1;
    c.int_ctl = int_ctl::V_INTR_MASKING;
    c.np_enable = 1;
    c.n_cr3 = ncr3;

    let s = &mut vmcb.save;
    let data = VmcbSegment::new(0x10, ATTR_DATA32, 0xFFFF_FFFF, 0);
    s.es = data;
    s.ss = data;
    s.ds = data;
    s.fs = data;
    s.gs = data;
    s.tr = VmcbSegment::new(0, ATTR_TSS_BUSY, 0x67, 0);
    s.ldtr = VmcbSegment::new(0, ATTR_LDT, 0, 0);
    s.gdtr = VmcbSegment::new(0, 0, 0, 0);
    s.idtr = VmcbSegment::new(0, 0, 0, 0);
    s.dr6 = 0xFFFF_0FF0;
    s.dr7 = 0x400;
    s.rflags = 0x2;
    s.rip = rip;
    s.g_pat = 0x0007_0406_0007_0406;
    match mode {
        StartMode::Flat32 => {
            s.cs = VmcbSegment::new(0x08, ATTR_CODE32, 0xFFFF_FFFF, 0);
            s.cr0 = 0x11; // PE | ET
            s.cr4 = 0;
            s.efer = efer::SVME;
        }
        StartMode::Long64 { cr3 } => {
            s.cs = VmcbSegment::new(0x08, ATTR_CODE64, 0xFFFF_FFFF, 0);
            s.cr0 = 0x8000_0011; // PG | PE | ET
            s.cr3 = cr3;
            s.cr4 = 0x20; // PAE
            s.efer = efer::SVME | efer::LME | efer::LMA;
        }
        StartMode::Real { cs_selector } => {
            let data = VmcbSegment::new(0, ATTR_REAL_DATA, 0xFFFF, 0);
            (s.es, s.ss, s.ds, s.fs, s.gs) = (data, data, data, data, data);
            s.cs = VmcbSegment::new(cs_selector, ATTR_REAL_CODE, 0xFFFF, (cs_selector as u64) << 4);
            s.gdtr = VmcbSegment::new(0, 0, 0xFFFF, 0);
            s.idtr = VmcbSegment::new(0, 0, 0x3FF, 0);
            s.cr0 = 0x10; // ET: real mode, paging and caches as after INIT
            s.cr4 = 0;
            s.efer = efer::SVME;
        }
    }
}

#[cfg(target_os = "none")]
pub use hw::*;

#[cfg(target_os = "none")]
mod hw {
    use super::{FxArea, GuestRegs};
    use crate::msr;
    use crate::vmcb::{efer, Vmcb};
    use alloc::boxed::Box;
    use core::arch::{asm, global_asm};

    /// Host state areas SVM needs once per physical CPU.
    pub struct HostCpu {
        /// Area VMRUN saves host state into (VM_HSAVE_PA).
        _hsave: Box<[u8; 4096]>,
        /// Area for VMSAVE/VMLOAD of the host's FS/GS/TR/LDTR/syscall MSRs.
        host_vmcb: Box<Vmcb>,
        /// What DR0..DR3 hold (SVM does not switch them; only the
        /// debugger's hardware points are ever loaded into them).
        pub debug_addrs: [u64; 4],
    }

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);

    /// DR7's local and global enable bits of the four slots.
    const DR7_ENABLE_BITS: u64 = 0xFF;

    fn rdmsr(msr: u32) -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: callers pass architectural MSRs present on every SVM CPU.
        unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
        ((hi as u64) << 32) | lo as u64
    }

    fn wrmsr(msr: u32, value: u64) {
        // SAFETY: callers write architectural SVM/EFER MSRs with valid values.
        unsafe {
            asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
                 options(nostack))
        };
    }

    /// Checks for SVM with nested paging and turns it on (EFER.SVME, VM_HSAVE_PA).
    pub fn enable() -> Result<HostCpu, &'static str> {
        let ext = core::arch::x86_64::__cpuid(0x8000_0001);
        if ext.ecx & (1 << 2) == 0 {
            return Err("CPU has no SVM (use -cpu max or EPYC)");
        }
        let svm = core::arch::x86_64::__cpuid(0x8000_000A);
        if svm.edx & 1 == 0 {
            return Err("SVM without nested paging (use -cpu max or EPYC)");
        }
        if rdmsr(msr::VM_CR) & (1 << 4) != 0 {
            return Err("SVM disabled by firmware (VM_CR.SVMDIS)");
        }
        wrmsr(msr::EFER, rdmsr(msr::EFER) | efer::SVME);
        // SAFETY: the two boxes are plain page-sized allocations handed to
        // hardware by physical (= identity-mapped virtual) address.
        let hsave: Box<[u8; 4096]> = unsafe {
            let p: Box<Page> = Box::new(Page([0; 4096]));
            Box::from_raw(Box::into_raw(p) as *mut [u8; 4096])
        };
        wrmsr(msr::VM_HSAVE_PA, hsave.as_ptr() as u64);
        Ok(HostCpu { _hsave: hsave, host_vmcb: Box::new(Vmcb::zeroed()), debug_addrs: [u64::MAX; 4] })
    }

    global_asm!(
        r#"
        .pushsection .text.svm, "ax"
        .global lantern_svm_vmrun
        // rdi = guest VMCB pa, rsi = &mut GuestRegs, rdx = host VMSAVE area pa
        lantern_svm_vmrun:
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        push rsi
        push rdi
        push rdx
        mov rax, rdx
        vmsave rax
        mov rax, rdi
        mov rbx, [rsi + 0]
        mov rcx, [rsi + 8]
        mov rdx, [rsi + 16]
        mov rdi, [rsi + 32]
        mov rbp, [rsi + 40]
        mov r8, [rsi + 48]
        mov r9, [rsi + 56]
        mov r10, [rsi + 64]
        mov r11, [rsi + 72]
        mov r12, [rsi + 80]
        mov r13, [rsi + 88]
        mov r14, [rsi + 96]
        mov r15, [rsi + 104]
        mov rsi, [rsi + 24]
        clgi
        sti
        vmload rax
        vmrun rax
        vmsave rax
        cli
        push rsi
        mov rsi, [rsp + 24]
        mov [rsi + 0], rbx
        mov [rsi + 8], rcx
        mov [rsi + 16], rdx
        mov [rsi + 32], rdi
        mov [rsi + 40], rbp
        mov [rsi + 48], r8
        mov [rsi + 56], r9
        mov [rsi + 64], r10
        mov [rsi + 72], r11
        mov [rsi + 80], r12
        mov [rsi + 88], r13
        mov [rsi + 96], r14
        mov [rsi + 104], r15
        pop rax
        mov [rsi + 24], rax
        pop rax
        vmload rax
        stgi
        add rsp, 16
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret
        .popsection
        "#
    );

    extern "C" {
        fn lantern_svm_vmrun(vmcb_pa: u64, regs: *mut GuestRegs, host_pa: u64);
    }

    impl HostCpu {
        /// Loads the debug address registers DR0..DR3 with `addrs`, writing
        /// only those that change.
        pub fn load_debug_addrs(&mut self, addrs: &[u64; 4]) {
            for (n, (&want, held)) in addrs.iter().zip(self.debug_addrs.iter_mut()).enumerate() {
                if want == *held {
                    continue;
                }
                // SAFETY: the debug address registers only matter to DR7,
                // which the host never enables (a guest's comes from its VMCB);
                // writing them has no other effect.
                unsafe {
                    match n {
                        0 => asm!("mov dr0, {}", in(reg) want, options(nomem, nostack)),
                        1 => asm!("mov dr1, {}", in(reg) want, options(nomem, nostack)),
                        2 => asm!("mov dr2, {}", in(reg) want, options(nomem, nostack)),
                        _ => asm!("mov dr3, {}", in(reg) want, options(nomem, nostack)),
                    }
                }
                *held = want;
            }
        }

        /// Runs the guest described by `vmcb`/`regs`/`fx` until the next
        /// #VMEXIT; returns the exit code. Called with host IF = 0; a host
        /// interrupt that caused an INTR exit is still pending on return.
        pub fn vmrun(&mut self, vmcb: &mut Vmcb, regs: &mut GuestRegs, fx: &mut FxArea) -> u64 {
            let host_pa = &mut *self.host_vmcb as *mut Vmcb as u64;
            let vmcb_pa = vmcb as *mut Vmcb as u64;
            // SAFETY: the VMCB, register block and FPU area are live,
            // exclusively borrowed and (VMCB) page aligned at their
            // identity-mapped physical addresses; the stub preserves the
            // callee-saved registers and the stack, and the host never uses
            // x87/SSE state, so swapping it with FXRSTOR/FXSAVE is invisible
            // to Rust code.
            // The debugger's hardware points (DR0..DR3 loaded, DR7 enabling
            // them in the VMCB) are also written to the host's DR7 for the
            // entry: QEMU's TCG arms its breakpoints only on a `mov dr7` and
            // not when VMRUN loads the VMCB's, and the hardware leaves DR7
            // to the host after an exit. Cleared again at once after it.
            let armed = vmcb.save.dr7 & DR7_ENABLE_BITS != 0;
            // SAFETY: as above; the host enables no breakpoint of its own,
            // and between the two DR7 writes it only enters and leaves the
            // guest.
            unsafe {
                asm!("fxrstor64 [{}]", in(reg) fx.0.as_ptr(), options(nostack));
                if armed {
                    asm!("mov dr7, {}", in(reg) vmcb.save.dr7, options(nomem, nostack));
                }
                lantern_svm_vmrun(vmcb_pa, regs, host_pa);
                if armed {
                    asm!("mov dr7, {}", in(reg) crate::vmcb::dr::DR7_RESET, options(nomem, nostack));
                }
                asm!("fxsave64 [{}]", in(reg) fx.0.as_mut_ptr(), options(nostack));
            }
            vmcb.control.exitcode
        }
    }
}

#[cfg(target_os = "none")]
static HOST: spin::Mutex<Option<HostCpu>> = spin::Mutex::new(None);

/// Turns SVM on for this (the only) physical CPU; call once at boot.
#[cfg(target_os = "none")]
pub fn init_host() -> Result<(), &'static str> {
    let host = enable()?;
    *HOST.lock() = Some(host);
    Ok(())
}

/// Runs a guest on this physical CPU until its next #VMEXIT and returns the
/// exit code; [`crate::vmcb::exit::INVALID`] when SVM is not initialised (and
/// always on a host build, where there is no hardware to enter).
pub fn vmrun_current(vmcb: &mut Vmcb, regs: &mut GuestRegs, fx: &mut FxArea) -> u64 {
    #[cfg(target_os = "none")]
    {
        if let Some(host) = HOST.lock().as_mut() {
            return host.vmrun(vmcb, regs, fx);
        }
    }
    let _ = (vmcb, regs, fx);
    crate::vmcb::exit::INVALID
}

/// Loads DR0..DR3 for the next guest entries (the debugger's hardware
/// points; SVM leaves these registers to the hypervisor). Nothing on a host
/// build.
pub fn load_debug_addrs(addrs: &[u64; 4]) {
    #[cfg(target_os = "none")]
    {
        if let Some(host) = HOST.lock().as_mut() {
            host.load_debug_addrs(addrs);
        }
    }
    let _ = addrs;
}

/// A fresh FXSAVE image: FCW 0x37F, MXCSR 0x1F80 (the reset values).
pub fn initial_fx() -> FxArea {
    let mut fx = FxArea([0; 512]);
    fx.0[0..2].copy_from_slice(&0x037Fu16.to_le_bytes());
    fx.0[24..28].copy_from_slice(&0x1F80u32.to_le_bytes());
    fx.0[28..32].copy_from_slice(&0xFFFFu32.to_le_bytes());
    fx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmcb_for_pvh_entry() {
        let mut v = Box::new(Vmcb::zeroed());
        init_vmcb(&mut v, 0x10000, 0x20000, StartMode::Flat32, 0x100000);
        assert_eq!(v.control.guest_asid, 1);
        assert_ne!(v.control.intercept_misc2 & intercept2::VMRUN, 0);
        assert_eq!(v.save.efer, efer::SVME);
        assert_eq!(v.save.cs.attrib, ATTR_CODE32);
        assert_eq!(v.control.msrpm_base_pa, 0x13000);
    }
}
