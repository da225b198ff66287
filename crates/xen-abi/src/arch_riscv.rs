//! The riscv64 parts of the guest ABI that a guest and the hypervisor both
//! speak, named once. Xen's public `arch-riscv.h` gives the slot count
//! (`XEN_LEGACY_MAX_VCPUS` = 1) and empty `arch_vcpu_info` /
//! `arch_shared_info`; upstream Xen defines no hypercall convention for
//! riscv yet, so the calling convention and the upcall below are Lantern's
//! proposal (documented in `docs/abi.md`): a Xen hypercall is an SBI call in
//! a firmware-specific extension, beside the standard SBI extensions a
//! guest's `ecall` also reaches.

/// `XEN_LEGACY_MAX_VCPUS` on riscv: only vCPU 0 has a vcpu_info slot in
/// shared_info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 1;

/// The SBI extension id (in `a7`) of Lantern's Xen hypercalls: in the SBI
/// firmware-specific range 0x0A00_0000..=0x0AFF_FFFF, the bytes "XEN"
/// after the range's 0x0A. The hypercall number is in `a6` (the SBI
/// function id), its arguments in `a0`..`a5`, Xen's result in `a0`.
pub const SBI_EXT_XEN: u64 = 0x0a58_454e;

/// The function id (in `a6`, extension [`SBI_EXT_XEN`]) that acknowledges
/// an event-channel upcall: it clears the pending virtual supervisor
/// external interrupt. Above every Xen hypercall number, so it cannot be
/// taken for one.
pub const EVTCHN_UPCALL_ACK: u64 = 0x1_0000;

/// The interrupt on which the event-channel upcall arrives: the supervisor
/// external interrupt (`scause` interrupt 9, `sie.SEIE`), which the
/// hypervisor raises through `hvip.VSEIP`. Not the software interrupt,
/// which SBI IPIs between the guest's own harts use.
pub const EVTCHN_UPCALL_IRQ: u64 = 9;

/// Where the guest's RAM starts in guest-physical space: at 0, as the core
/// populates a domain's memory from gfn 0.
pub const GUEST_RAM_BASE: u64 = 0;

/// The boot vCPU's entry: the guest image is linked and loaded here (2 MiB
/// into RAM, as riscv Linux's `Image` expects its load offset).
pub const GUEST_IMAGE_BASE: u64 = 0x20_0000;

/// The guest device tree's distance below the top of the domain's RAM; it
/// is passed to the boot vCPU in `a1` (`a0` = its hart id, the vCPU id).
pub const GUEST_DTB_BELOW_RAM_TOP: u64 = 2 << 20;
