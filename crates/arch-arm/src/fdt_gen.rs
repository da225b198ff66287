//! The device tree a guest is booted with (x0 at entry, as for an arm64
//! Linux Image): memory, cpus, PSCI over HVC, the virtual GICv3, the timer
//! and the `/hypervisor` node that tells a Xen-aware kernel which PPI carries
//! event-channel upcalls. Written with `vm-fdt`.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use vm_fdt::FdtWriter;

use crate::guest::{GuestMap, EVTCHN_PPI, VTIMER_PPI};

/// What goes into a guest's device tree.
#[derive(Clone, Debug)]
pub struct GuestDtConfig {
    /// Number of vCPUs.
    pub vcpus: u32,
    /// RAM size in bytes (RAM starts at [`GuestMap::RAM_BASE`]).
    pub ram_size: u64,
    /// `/chosen/bootargs`.
    pub bootargs: String,
    /// The initial ramdisk's IPA range `[start, end)`, named in `/chosen`
    /// as `linux,initrd-start` / `linux,initrd-end`.
    pub initrd: Option<(u64, u64)>,
}

const GIC_PHANDLE: u32 = 1;
/// Interrupt specifier type for a PPI.
const GIC_PPI: u32 = 1;
/// Level-triggered, active high.
const IRQ_LEVEL_HIGH: u32 = 4;

fn ppi(intid: u32) -> [u32; 3] {
    [GIC_PPI, intid - 16, IRQ_LEVEL_HIGH]
}

/// Builds the DTB blob.
pub fn build(cfg: &GuestDtConfig) -> Result<Vec<u8>, vm_fdt::Error> {
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_string("compatible", "lantern,arm64-guest")?;
    f.property_string("model", "Lantern arm64 guest")?;
    f.property_u32("interrupt-parent", GIC_PHANDLE)?;

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
    for i in 0..cfg.vcpus {
        let cpu = f.begin_node(&alloc::format!("cpu@{i}"))?;
        f.property_string("device_type", "cpu")?;
        f.property_string("compatible", "arm,armv8")?;
        f.property_u32("reg", i)?;
        f.property_string("enable-method", "psci")?;
        f.end_node(cpu)?;
    }
    f.end_node(cpus)?;

    let psci = f.begin_node("psci")?;
    f.property_string_list("compatible", vec!["arm,psci-1.0".to_string(), "arm,psci-0.2".to_string()])?;
    f.property_string("method", "hvc")?;
    f.end_node(psci)?;

    let gic = f.begin_node(&alloc::format!("interrupt-controller@{:x}", GuestMap::GICD_BASE))?;
    f.property_string("compatible", "arm,gic-v3")?;
    f.property_u32("#interrupt-cells", 3)?;
    f.property_null("interrupt-controller")?;
    f.property_u32("#redistributor-regions", 1)?;
    f.property_array_u64(
        "reg",
        &[GuestMap::GICD_BASE, GuestMap::GICD_SIZE, GuestMap::GICR_BASE, GuestMap::GICR_STRIDE * cfg.vcpus as u64],
    )?;
    f.property_phandle(GIC_PHANDLE)?;
    f.end_node(gic)?;

    let timer = f.begin_node("timer")?;
    f.property_string("compatible", "arm,armv8-timer")?;
    let mut irqs = Vec::new();
    // Secure physical, non-secure physical, virtual, hypervisor.
    for intid in [29, 30, VTIMER_PPI, 26] {
        irqs.extend_from_slice(&ppi(intid));
    }
    f.property_array_u32("interrupts", &irqs)?;
    f.property_null("always-on")?;
    f.end_node(timer)?;

    // Named exactly `hypervisor`, without a unit address, as Xen's toolstack
    // names it: Linux (`fdt_find_hyper_node`) looks for that name at depth 1
    // and otherwise never detects Xen.
    let hyp = f.begin_node("hypervisor")?;
    f.property_string_list("compatible", vec!["xen,xen-4.19".to_string(), "xen,xen".to_string()])?;
    f.property_array_u64("reg", &[GuestMap::GRANT_BASE, GuestMap::GRANT_SIZE])?;
    f.property_array_u32("interrupts", &ppi(EVTCHN_PPI))?;
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
            vcpus: 2,
            ram_size: 64 << 20,
            bootargs: "hello world".into(),
            initrd: Some((0x300_0000, 0x312_3456)),
        };
        let blob = build(&cfg).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("hello world"));
        let chosen = fdt.find_node("/chosen").unwrap();
        let u64_prop = |name: &str| {
            u64::from_be_bytes(chosen.property(name).unwrap().value.try_into().expect("a 64-bit cell pair"))
        };
        assert_eq!((u64_prop("linux,initrd-start"), u64_prop("linux,initrd-end")), (0x300_0000, 0x312_3456));
        let mem = fdt.memory().regions().next().unwrap();
        assert_eq!(mem.starting_address as u64, GuestMap::RAM_BASE);
        assert_eq!(mem.size, Some(64 << 20));
        assert_eq!(fdt.cpus().count(), 2);
        assert_eq!(fdt.cpus().nth(1).unwrap().ids().first(), 1);
        let psci = fdt.find_compatible(&["arm,psci-1.0"]).unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let regs: Vec<_> = gic.reg().unwrap().collect();
        assert_eq!(regs[0].starting_address as u64, GuestMap::GICD_BASE);
        assert_eq!(regs[1].starting_address as u64, GuestMap::GICR_BASE);
        assert_eq!(regs[1].size, Some(2 * GuestMap::GICR_STRIDE as usize));
        let hyp = fdt.find_compatible(&["xen,xen"]).unwrap();
        assert_eq!(hyp.name, "hypervisor", "Linux finds Xen only by this exact node name");
        assert!(fdt.find_node("/hypervisor").is_some());
        // PPI 31 is PPI number 15 in the GIC binding.
        let irq: Vec<_> = hyp
            .property("interrupts")
            .unwrap()
            .value
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(irq, vec![1, 15, 4]);
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        let t: Vec<_> = timer
            .property("interrupts")
            .unwrap()
            .value
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(t[7], VTIMER_PPI - 16);
    }
}
