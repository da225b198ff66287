//! The device tree a riscv64 guest boots with (`a1` at entry): memory, one
//! cpu node per vCPU, `/chosen`, and the `hypervisor` node naming the
//! grant-table window, written with `vm-fdt`. No interrupt controller: the
//! guest's interrupts are the VS-level ones (timer and IPI through SBI, the
//! event upcall as the supervisor external interrupt).

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use vm_fdt::FdtWriter;

use crate::guest::GuestMap;

/// The timer's rate guests see (`time`; QEMU virt's 10 MHz).
pub const TIMEBASE_HZ: u32 = 10_000_000;

/// What goes into a guest's device tree.
#[derive(Clone, Debug)]
pub struct GuestDtConfig {
    /// Number of vCPUs.
    pub vcpus: u32,
    /// RAM size in bytes (from [`GuestMap::RAM_BASE`]).
    pub ram_size: u64,
    /// `/chosen/bootargs`.
    pub bootargs: String,
    /// The initrd's guest-physical range `[start, end)`.
    pub initrd: Option<(u64, u64)>,
}

/// Builds the DTB blob.
pub fn build(cfg: &GuestDtConfig) -> Result<Vec<u8>, vm_fdt::Error> {
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_string("compatible", "lantern,riscv64-guest")?;
    f.property_string("model", "Lantern riscv64 guest")?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", &cfg.bootargs)?;
    if let Some((start, end)) = cfg.initrd {
        f.property_u64("linux,initrd-start", start)?;
        f.property_u64("linux,initrd-end", end)?;
    }
    f.end_node(chosen)?;

    let mem = f.begin_node(&alloc::format!("memory@{:x}", GuestMap::RAM_BASE))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &[GuestMap::RAM_BASE, cfg.ram_size])?;
    f.end_node(mem)?;

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    f.property_u32("timebase-frequency", TIMEBASE_HZ)?;
    for i in 0..cfg.vcpus {
        let cpu = f.begin_node(&alloc::format!("cpu@{i}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "riscv")?;
        f.property_u32("reg", i)?;
        f.property_string("riscv,isa", "rv64imafdc")?;
        f.property_string("mmu-type", "riscv,sv39")?;
        f.property_string("status", "okay")?;
        let intc = f.begin_node("interrupt-controller")?;
        f.property_u32("#interrupt-cells", 1)?;
        f.property_null("interrupt-controller")?;
        f.property_string("compatible", "riscv,cpu-intc")?;
        f.end_node(intc)?;
        f.end_node(cpu)?;
    }
    f.end_node(cpus)?;

    // Named exactly `hypervisor`, as Xen's toolstack names it (Linux looks
    // the node up by that name).
    let hyp = f.begin_node("hypervisor")?;
    f.property_string_list("compatible", vec!["xen,xen-4.19".to_string(), "xen,xen".to_string()])?;
    f.property_array_u64("reg", &[GuestMap::GRANT_BASE, GuestMap::GRANT_SIZE])?;
    f.end_node(hyp)?;

    f.end_node(root)?;
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_dt_parses() {
        let cfg = GuestDtConfig {
            vcpus: 3,
            ram_size: 64 << 20,
            bootargs: "hello".into(),
            initrd: Some((0x300_0000, 0x310_0000)),
        };
        let blob = build(&cfg).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("hello"));
        let mem = fdt.memory().regions().next().unwrap();
        assert_eq!((mem.starting_address as u64, mem.size), (0, Some(64 << 20)));
        assert_eq!(fdt.cpus().count(), 3);
        let cpu2 = fdt.cpus().nth(2).unwrap();
        assert_eq!(cpu2.ids().first(), 2);
        assert_eq!(cpu2.property("riscv,isa").unwrap().as_str(), Some("rv64imafdc"));
        let hyp = fdt.find_node("/hypervisor").unwrap();
        assert!(hyp.compatible().unwrap().all().any(|c| c == "xen,xen"));
        let reg = hyp.reg().unwrap().next().unwrap();
        assert_eq!(
            (reg.starting_address as u64, reg.size),
            (GuestMap::GRANT_BASE, Some(GuestMap::GRANT_SIZE as usize))
        );
        let chosen = fdt.find_node("/chosen").unwrap();
        let start = chosen.property("linux,initrd-start").unwrap().value;
        assert_eq!(u64::from_be_bytes(start.try_into().unwrap()), 0x300_0000);
    }
}
