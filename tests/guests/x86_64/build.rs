//! Build script: for the guest targets, enable the guest code (`lantern_guest`
//! cfg) and link with our own linker script (load address 1 MiB, PVH note
//! segment); for any other target the crate is a host stub.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(lantern_guest)");
    println!("cargo:rerun-if-changed=linker.ld");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-none" && target != "i686-unknown-linux-gnu" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cfg=lantern_guest");
    println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=-znoexecstack");
}
