//! Build script: for aarch64-unknown-none, enable the guest code
//! (`lantern_guest` cfg) and link it as a self-relocating position-independent
//! image (linked at 0, relocated by its own entry code) so it runs wherever
//! the hypervisor places it, as a Linux Image would. Any other target gets a
//! host stub.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(lantern_guest)");
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var("TARGET").unwrap_or_default() != "aarch64-unknown-none" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cfg=lantern_guest");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=-pie");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rustc-link-arg-bins=-znotext");
    println!("cargo:rustc-link-arg-bins=-znoexecstack");
}
