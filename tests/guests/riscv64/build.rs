//! Build script: for riscv64gc-unknown-none-elf, enable the guest code
//! (`lantern_guest` cfg) and link it statically at
//! `xen_abi::arch_riscv::GUEST_IMAGE_BASE`, where the hypervisor loads the
//! image and enters vCPU 0 (the linker script reads the address as the
//! symbol `__guest_image_base`, so the number has one home). Any other
//! target gets a host stub.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(lantern_guest)");
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var("TARGET").unwrap_or_default() != "riscv64gc-unknown-none-elf" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cfg=lantern_guest");
    println!("cargo:rustc-link-arg-bins=--defsym=__guest_image_base={:#x}", xen_abi::arch_riscv::GUEST_IMAGE_BASE);
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=-znoexecstack");
}
