//! Lantern arm64 test guest: entered like a Linux Image at EL1 (x0 = DTB),
//! talks to the hypervisor with `hvc #0xEA1`, brings secondaries up with
//! PSCI CPU_ON and takes event upcalls as PPI 31 through the GICv3 CPU
//! interface; runs the shared guest-area scenario.
//!
//! Build it with `--target aarch64-unknown-none`; for any other target (e.g.
//! a workspace-wide host `cargo build`/`clippy`) it compiles to a stub that
//! says so.
#![cfg_attr(lantern_guest, no_std)]
#![cfg_attr(lantern_guest, no_main)]

#[cfg(lantern_guest)]
mod guest;

#[cfg(not(lantern_guest))]
fn main() {
    eprintln!("lantern-guest-aarch64 is a guest image: build it with --target aarch64-unknown-none");
    std::process::exit(1);
}
