//! Phase-1 SVM self-test: runs tiny hand-assembled guests (64-bit and 32-bit)
//! that exercise VMMCALL, CPUID, `out 0xe9` and HLT, and measures the bare
//! VMMCALL round trip.

use alloc::boxed::Box;
use alloc::vec::Vec;

use lantern_arch_x86::npt::NestedPageTable;
use lantern_arch_x86::svm::{self, GuestRegs, PermissionMaps, StartMode};
use lantern_arch_x86::vmcb::{exit, Vmcb};

use crate::start_info::StartInfo;

#[repr(C, align(4096))]
struct GuestPage([u8; 4096]);

/// Runs both raw guests and exits QEMU with the verdict.
pub fn run(_info: &StartInfo) -> ! {
    let mut host = match svm::enable() {
        Ok(h) => h,
        Err(e) => {
            crate::println!("(lantern) FATAL: {e}");
            crate::exit_qemu(false);
        }
    };
    log::info!("SVM enabled");
    let maps = PermissionMaps::intercept_all();
    let ok64 = run_guest(&mut host, &maps, true);
    let ok32 = run_guest(&mut host, &maps, false);
    crate::println!("(lantern) selftest 64-bit: {}, 32-bit: {}", ok64, ok32);
    crate::exit_qemu(ok64 && ok32);
}

fn run_guest(host: &mut svm::HostCpu, maps: &PermissionMaps, long: bool) -> bool {
    // Guest memory: 4 frames at gpa 0..0x4000. Page 0: code, page 1-3: page
    // tables for 64-bit mode (PML4, PDPT, PD with one 2 MiB identity page).
    let mut pages: Vec<Box<GuestPage>> = (0..4).map(|_| Box::new(GuestPage([0; 4096]))).collect();
    let mut npt = NestedPageTable::new();
    for (i, p) in pages.iter().enumerate() {
        npt.map(i as u64 * 4096, p.0.as_ptr() as u64, true);
    }
    // Loop: N x vmmcall; then cpuid; out 0xe9 'K'; hlt.
    let code: &[u8] = &[
        0x0f,
        0x01,
        0xd9, // vmmcall
        0x0f,
        0xa2, // cpuid
        0xb0,
        b'K', // mov al, 'K'
        0xe6,
        xen_abi::arch_x86::DEBUG_PORT as u8, // out DEBUG_PORT (imm8), al
        0xf4,                                // hlt
    ];
    pages[0].0[..code.len()].copy_from_slice(code);
    let mode = if long {
        let pml4 = &mut pages[1].0;
        pml4[..8].copy_from_slice(&(0x2000u64 | 7).to_le_bytes());
        let pdpt = &mut pages[2].0;
        pdpt[..8].copy_from_slice(&(0x3000u64 | 7).to_le_bytes());
        let pd = &mut pages[3].0;
        pd[..8].copy_from_slice(&(0x87u64).to_le_bytes());
        StartMode::Long64 { cr3: 0x1000 }
    } else {
        StartMode::Flat32
    };
    let mut vmcb = Box::new(Vmcb::zeroed());
    let maps_pa = maps as *const PermissionMaps as u64;
    svm::init_vmcb(&mut vmcb, maps_pa, npt.root_pa(), mode, 0);
    let mut regs = GuestRegs::default();
    let mut fx = Box::new(svm::initial_fx());
    let name = if long { "64-bit" } else { "32-bit" };
    let mut seen = (false, false, false);
    let mut vmmcalls = 0u64;
    let mut cycles = 0u64;
    const ROUNDS: u64 = 2000;
    for _ in 0..ROUNDS + 100 {
        // SAFETY: reading the TSC has no side effects.
        let t0 = unsafe { core::arch::x86_64::_rdtsc() };
        let code = host.vmrun(&mut vmcb, &mut regs, &mut fx);
        // SAFETY: as above.
        let t1 = unsafe { core::arch::x86_64::_rdtsc() };
        match code {
            exit::VMMCALL => {
                vmmcalls += 1;
                cycles += t1 - t0;
                seen.0 = true;
                if vmmcalls < ROUNDS {
                    continue; // re-execute the same vmmcall: a tight loop
                }
                vmcb.save.rip += 3;
            }
            exit::CPUID => {
                seen.1 = true;
                vmcb.save.rax = 0x1234;
                vmcb.save.rip += 2;
            }
            exit::IOIO => {
                let port = (vmcb.control.exitinfo1 >> 16) & 0xFFFF;
                crate::println!("(lantern) {name} guest: out {port:#x} <- {:?}", vmcb.save.rax as u8 as char);
                seen.2 = port == u64::from(xen_abi::arch_x86::DEBUG_PORT) && vmcb.save.rax as u8 == b'K';
                vmcb.save.rip = vmcb.control.exitinfo2;
            }
            exit::HLT => {
                crate::println!(
                    "(lantern) {name} guest halted: vmmcall={} cpuid={} out={} ; VMMCALL round trip {} cycles",
                    seen.0,
                    seen.1,
                    seen.2,
                    cycles / vmmcalls.max(1)
                );
                return seen.0 && seen.1 && seen.2;
            }
            exit::INTR => crate::interrupts::take_pending(),
            other => {
                crate::println!(
                    "(lantern) {name} guest: unexpected exit {other:#x} info1={:#x} info2={:#x} rip={:#x}",
                    vmcb.control.exitinfo1,
                    vmcb.control.exitinfo2,
                    vmcb.save.rip
                );
                return false;
            }
        }
    }
    false
}
