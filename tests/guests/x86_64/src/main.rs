//! Lantern x86 test guest: a PVH guest that runs the shared guest-area
//! scenario, built 64-bit (`x86_64-unknown-none`, long mode, native layout)
//! or 32-bit (`i686-unknown-linux-gnu`, protected mode, compat layout).
//!
//! Build it with `--target x86_64-unknown-none` or `--target
//! i686-unknown-linux-gnu`; for any other target (e.g. a workspace-wide host
//! `cargo build`/`clippy`) it compiles to a stub that says so.
#![cfg_attr(lantern_guest, no_std)]
#![cfg_attr(lantern_guest, no_main)]

#[cfg(lantern_guest)]
mod guest;

#[cfg(not(lantern_guest))]
fn main() {
    eprintln!(
        "lantern-guest-x86_64 is a guest image: build it with --target x86_64-unknown-none or i686-unknown-linux-gnu"
    );
    std::process::exit(1);
}
