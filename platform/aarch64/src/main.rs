//! Lantern for QEMU `virt` (arm64): the bare-metal image that boots at EL2.
//!
//! The real board lives in `board/` and only builds for
//! `aarch64-unknown-none`; on any other target this is a stub so that
//! workspace-wide host commands (`cargo clippy --workspace`) still work.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod board;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "lantern-platform-aarch64 is a bare-metal image: build it for aarch64-unknown-none \
         (cargo xtask run --arch aarch64)"
    );
    std::process::exit(2);
}
