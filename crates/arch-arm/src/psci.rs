//! PSCI 1.0 as offered to guests (through `hvc #0`, as the guest DTB says),
//! and the hypervisor's own PSCI calls to the firmware (through SMC).

use smccc::psci as ids;

/// PSCI version reported to guests: 1.0.
pub const PSCI_VERSION_1_0: u64 = 0x0001_0000;

/// PSCI return codes (as the 64-bit value placed in x0).
pub mod ret {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// Function not supported.
    pub const NOT_SUPPORTED: i64 = -1;
    /// Invalid parameters.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// Operation denied.
    pub const DENIED: i64 = -3;
    /// CPU_ON: the target is already on.
    pub const ALREADY_ON: i64 = -4;
    /// CPU_ON: a CPU_ON for the target is pending.
    pub const ON_PENDING: i64 = -5;
    /// CPU_ON: the entry point is known to be invalid (an AArch64 vCPU
    /// asked to start in Thumb state, bit 0 set, as Xen refuses it).
    pub const INVALID_ADDRESS: i64 = -9;
}

/// AFFINITY_INFO answers.
pub mod affinity {
    /// The CPU is on.
    pub const ON: i64 = 0;
    /// The CPU is off.
    pub const OFF: i64 = 1;
    /// The CPU is being turned on.
    pub const ON_PENDING: i64 = 2;
}

/// A guest's PSCI request, decoded from x0..x3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciCall {
    /// PSCI_VERSION.
    Version,
    /// CPU_ON(target MPIDR, entry, context id).
    CpuOn {
        /// Target affinity (MPIDR bits).
        target: u64,
        /// Entry point (IPA, MMU off).
        entry: u64,
        /// Value for the target's x0.
        context_id: u64,
    },
    /// CPU_OFF.
    CpuOff,
    /// AFFINITY_INFO(target, lowest level).
    AffinityInfo {
        /// Target affinity.
        target: u64,
        /// Lowest affinity level (only 0 is supported).
        level: u64,
    },
    /// SYSTEM_OFF.
    SystemOff,
    /// SYSTEM_RESET.
    SystemReset,
    /// PSCI_FEATURES(function id).
    Features(u32),
    /// MIGRATE_INFO_TYPE.
    MigrateInfoType,
    /// Anything else (answered NOT_SUPPORTED).
    Unknown(u32),
}

impl PsciCall {
    /// Decodes the function id in `x[0]` and its arguments. 32-bit calling
    /// convention arguments are truncated to 32 bits, as SMCCC requires.
    pub fn decode(x: &[u64]) -> PsciCall {
        let fid = x[0] as u32;
        let arg = |i: usize, smc64: bool| {
            let v = x.get(i).copied().unwrap_or(0);
            if smc64 {
                v
            } else {
                v & 0xffff_ffff
            }
        };
        match fid {
            ids::PSCI_VERSION => PsciCall::Version,
            ids::PSCI_CPU_ON_32 | ids::PSCI_CPU_ON_64 => {
                let w = fid == ids::PSCI_CPU_ON_64;
                PsciCall::CpuOn { target: arg(1, w), entry: arg(2, w), context_id: arg(3, w) }
            }
            ids::PSCI_CPU_OFF => PsciCall::CpuOff,
            ids::PSCI_AFFINITY_INFO_32 | ids::PSCI_AFFINITY_INFO_64 => {
                let w = fid == ids::PSCI_AFFINITY_INFO_64;
                PsciCall::AffinityInfo { target: arg(1, w), level: arg(2, w) }
            }
            ids::PSCI_SYSTEM_OFF => PsciCall::SystemOff,
            ids::PSCI_SYSTEM_RESET => PsciCall::SystemReset,
            ids::PSCI_FEATURES => PsciCall::Features(arg(1, false) as u32),
            ids::PSCI_MIGRATE_INFO_TYPE => PsciCall::MigrateInfoType,
            other => PsciCall::Unknown(other),
        }
    }

    /// Whether this PSCI 1.0 function is implemented for guests (for
    /// PSCI_FEATURES).
    pub fn supported(fid: u32) -> bool {
        matches!(
            fid,
            ids::PSCI_VERSION
                | ids::PSCI_CPU_ON_32
                | ids::PSCI_CPU_ON_64
                | ids::PSCI_CPU_OFF
                | ids::PSCI_AFFINITY_INFO_32
                | ids::PSCI_AFFINITY_INFO_64
                | ids::PSCI_SYSTEM_OFF
                | ids::PSCI_SYSTEM_RESET
                | ids::PSCI_FEATURES
                | ids::PSCI_MIGRATE_INFO_TYPE
        )
    }
}

/// The vCPU id a PSCI target MPIDR names: affinity 0 is the vCPU id and the
/// higher affinity levels must be zero (one cluster).
pub fn mpidr_to_vcpu(mpidr: u64) -> Option<u32> {
    if mpidr & 0xff_00ff_ff00 != 0 {
        return None;
    }
    Some((mpidr & 0xff) as u32)
}

/// The hypervisor's own calls into the firmware (QEMU's built-in PSCI, which
/// uses the SMC conduit when EL2 is present).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod host {
    /// Powers the machine off. Returns only if the firmware refused.
    pub fn system_off() {
        let _ = smccc::psci::system_off::<smccc::Smc>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_cpu_on() {
        let c = PsciCall::decode(&[0xC400_0003, 1, 0x4008_0000, 7]);
        assert_eq!(c, PsciCall::CpuOn { target: 1, entry: 0x4008_0000, context_id: 7 });
        let c32 = PsciCall::decode(&[0x8400_0003, 0xffff_ffff_0000_0002, 0x1_4000_0000, 0]);
        assert_eq!(c32, PsciCall::CpuOn { target: 2, entry: 0x4000_0000, context_id: 0 });
    }

    #[test]
    fn decode_misc() {
        assert_eq!(PsciCall::decode(&[0x8400_0000]), PsciCall::Version);
        assert_eq!(PsciCall::decode(&[0x8400_0008]), PsciCall::SystemOff);
        assert_eq!(PsciCall::decode(&[0x8400_0002]), PsciCall::CpuOff);
        assert_eq!(PsciCall::decode(&[0x8400_000A, 0x8400_0008]), PsciCall::Features(0x8400_0008));
        assert_eq!(PsciCall::decode(&[0x1234]), PsciCall::Unknown(0x1234));
        assert!(PsciCall::supported(0xC400_0003));
        assert!(!PsciCall::supported(0xC400_0001));
    }

    #[test]
    fn mpidr() {
        assert_eq!(mpidr_to_vcpu(3), Some(3));
        assert_eq!(mpidr_to_vcpu(0x8000_0001), Some(1));
        assert_eq!(mpidr_to_vcpu(0x100), None);
    }
}
