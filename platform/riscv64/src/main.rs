//! Lantern for QEMU `virt` (riscv64): the bare-metal image OpenSBI enters
//! in HS-mode.
//!
//! The real board lives in `board/` and only builds for
//! `riscv64gc-unknown-none-elf`; on any other target this is a stub so that
//! workspace-wide host commands (`cargo clippy --workspace`) still work.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod board;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "lantern-platform-riscv64 is a bare-metal image: build it for riscv64gc-unknown-none-elf \
         (cargo xtask run --arch riscv64)"
    );
    std::process::exit(2);
}
