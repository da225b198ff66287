//! Lantern riscv64 test guest: entered in VS-mode at `GUEST_IMAGE_BASE`
//! (a0 = hart id, a1 = guest DTB), talks to the hypervisor with `ecall`
//! in Lantern's SBI extension for Xen (`SBI_EXT_XEN`), brings secondaries
//! up with SBI HSM `hart_start` and takes event upcalls as the supervisor
//! external interrupt; runs the shared guest-area scenario.
//!
//! Build it with `--target riscv64gc-unknown-none-elf`; for any other target
//! (e.g. a workspace-wide host `cargo build`/`clippy`) it compiles to a stub
//! that says so.
#![cfg_attr(lantern_guest, no_std)]
#![cfg_attr(lantern_guest, no_main)]

#[cfg(lantern_guest)]
mod guest;

#[cfg(not(lantern_guest))]
fn main() {
    eprintln!("lantern-guest-riscv64 is a guest image: build it with --target riscv64gc-unknown-none-elf");
    std::process::exit(1);
}
