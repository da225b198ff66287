//! The SBI a guest's `ecall` reaches (SBI 2.0 numbering): the calls Lantern
//! answers, decoded from `a7` (extension), `a6` (function) and `a0`..`a5`,
//! and the error codes it returns in `a0` (the value goes in `a1`). Xen
//! hypercalls ride the firmware-specific extension
//! [`xen_abi::arch_riscv::SBI_EXT_XEN`].

pub use xen_abi::arch_riscv::{EVTCHN_UPCALL_ACK, SBI_EXT_XEN};

/// Extension ids.
pub mod ext {
    /// The base extension.
    pub const BASE: u64 = 0x10;
    /// Timer.
    pub const TIME: u64 = 0x5449_4d45;
    /// Inter-processor interrupts.
    pub const IPI: u64 = 0x0073_5049;
    /// Remote fences.
    pub const RFENCE: u64 = 0x5246_4e43;
    /// Hart state management.
    pub const HSM: u64 = 0x0048_534d;
    /// System reset.
    pub const SRST: u64 = 0x5352_5354;
}

/// SBI error codes (`a0`).
pub mod err {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// Not supported.
    pub const NOT_SUPPORTED: i64 = -2;
    /// Invalid parameter.
    pub const INVALID_PARAM: i64 = -3;
    /// Invalid address.
    pub const INVALID_ADDRESS: i64 = -5;
    /// Already available (a started hart).
    pub const ALREADY_AVAILABLE: i64 = -6;
}

/// `sbi_get_spec_version`: 2.0 (major in bits 30:24).
pub const SPEC_VERSION: u64 = 2 << 24;
/// `sbi_get_impl_id`: 'LT', Lantern.
pub const IMPL_ID: u64 = 0x4c54;

/// `hart_get_status` answers.
pub mod hart_state {
    /// Running.
    pub const STARTED: u64 = 0;
    /// Off.
    pub const STOPPED: u64 = 1;
    /// `hart_start` accepted, not yet running.
    pub const START_PENDING: u64 = 2;
}

/// `system_reset` types.
pub mod reset {
    /// Shut down.
    pub const SHUTDOWN: u64 = 0;
    /// Cold reboot.
    pub const COLD_REBOOT: u64 = 1;
    /// Warm reboot.
    pub const WARM_REBOOT: u64 = 2;
}

/// A set of harts as SBI names them: `mask` bits from `base`, or every hart
/// when `base` is all ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HartMask {
    /// Bit n: hart `base + n`.
    pub mask: u64,
    /// The first hart of the mask; `u64::MAX`: all harts.
    pub base: u64,
}

impl HartMask {
    /// The hart ids below `harts` this mask names, or `Err` for a base
    /// past the last hart.
    pub fn targets(&self, harts: u32) -> Result<alloc::vec::Vec<u32>, i64> {
        if self.base == u64::MAX {
            return Ok((0..harts).collect());
        }
        if self.mask != 0 && self.base >= u64::from(harts) {
            return Err(err::INVALID_PARAM);
        }
        let mut out = alloc::vec::Vec::new();
        for bit in 0..64 {
            if self.mask & (1 << bit) != 0 {
                let h = self.base.saturating_add(bit);
                if h >= u64::from(harts) {
                    return Err(err::INVALID_PARAM);
                }
                out.push(h as u32);
            }
        }
        Ok(out)
    }
}

/// One SBI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbiCall {
    /// A Xen hypercall: number (`a6`) and arguments.
    Xen {
        /// Hypercall number.
        nr: u64,
        /// `a0`..`a5`.
        args: [u64; 6],
    },
    /// Lantern's upcall acknowledgement.
    UpcallAck,
    /// `sbi_get_spec_version`.
    SpecVersion,
    /// `sbi_get_impl_id`.
    ImplId,
    /// `sbi_get_impl_version`.
    ImplVersion,
    /// `sbi_probe_extension`.
    ProbeExtension(u64),
    /// `sbi_get_mvendorid`, `marchid`, `mimpid`: 0.
    MachineId,
    /// `sbi_set_timer`.
    SetTimer(u64),
    /// `sbi_send_ipi`.
    SendIpi(HartMask),
    /// A remote fence of the guest's own translations (`remote_fence_i`,
    /// `remote_sfence_vma[_asid]`).
    RemoteFence(HartMask),
    /// `sbi_hart_start`.
    HartStart {
        /// Target hart.
        hartid: u64,
        /// Where it starts.
        start_addr: u64,
        /// Its `a1`.
        opaque: u64,
    },
    /// `sbi_hart_stop`.
    HartStop,
    /// `sbi_hart_get_status`.
    HartStatus(u64),
    /// `sbi_system_reset`.
    SystemReset {
        /// Shutdown or reboot.
        kind: u64,
        /// The reason code.
        reason: u64,
    },
    /// Anything else: `(extension, function)`.
    Unknown(u64, u64),
}

impl SbiCall {
    /// Decodes the call in `x` (the guest's registers, x0..x31).
    pub fn decode(x: &[u64; 32]) -> SbiCall {
        let (a0, a1, a2) = (x[10], x[11], x[12]);
        let (fid, eid) = (x[16], x[17]);
        let mask = HartMask { mask: a0, base: a1 };
        match (eid, fid) {
            (SBI_EXT_XEN, EVTCHN_UPCALL_ACK) => SbiCall::UpcallAck,
            (SBI_EXT_XEN, nr) if nr < EVTCHN_UPCALL_ACK => {
                SbiCall::Xen { nr, args: [x[10], x[11], x[12], x[13], x[14], x[15]] }
            }
            (ext::BASE, 0) => SbiCall::SpecVersion,
            (ext::BASE, 1) => SbiCall::ImplId,
            (ext::BASE, 2) => SbiCall::ImplVersion,
            (ext::BASE, 3) => SbiCall::ProbeExtension(a0),
            (ext::BASE, 4..=6) => SbiCall::MachineId,
            (ext::TIME, 0) => SbiCall::SetTimer(a0),
            (ext::IPI, 0) => SbiCall::SendIpi(mask),
            (ext::RFENCE, 0..=2) => SbiCall::RemoteFence(mask),
            (ext::HSM, 0) => SbiCall::HartStart { hartid: a0, start_addr: a1, opaque: a2 },
            (ext::HSM, 1) => SbiCall::HartStop,
            (ext::HSM, 2) => SbiCall::HartStatus(a0),
            (ext::SRST, 0) => SbiCall::SystemReset { kind: a0, reason: a1 },
            (e, f) => SbiCall::Unknown(e, f),
        }
    }

    /// `sbi_probe_extension`'s answer for `eid`: 1 for what Lantern serves.
    pub fn probe(eid: u64) -> u64 {
        matches!(eid, ext::BASE | ext::TIME | ext::IPI | ext::RFENCE | ext::HSM | ext::SRST | SBI_EXT_XEN) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(eid: u64, fid: u64, args: &[u64]) -> SbiCall {
        let mut x = [0u64; 32];
        x[17] = eid;
        x[16] = fid;
        x[10..10 + args.len()].copy_from_slice(args);
        SbiCall::decode(&x)
    }

    #[test]
    fn decodes_the_calls_lantern_serves() {
        assert_eq!(call(SBI_EXT_XEN, 29, &[1, 2, 3, 4, 5, 6]), SbiCall::Xen { nr: 29, args: [1, 2, 3, 4, 5, 6] });
        assert_eq!(call(SBI_EXT_XEN, EVTCHN_UPCALL_ACK, &[]), SbiCall::UpcallAck);
        assert_eq!(call(SBI_EXT_XEN, EVTCHN_UPCALL_ACK + 1, &[]), SbiCall::Unknown(SBI_EXT_XEN, 0x1_0001));
        assert_eq!(call(ext::BASE, 0, &[]), SbiCall::SpecVersion);
        assert_eq!(call(ext::BASE, 3, &[ext::HSM]), SbiCall::ProbeExtension(ext::HSM));
        assert_eq!(call(ext::TIME, 0, &[1234]), SbiCall::SetTimer(1234));
        assert_eq!(call(ext::IPI, 0, &[0b10, 0]), SbiCall::SendIpi(HartMask { mask: 2, base: 0 }));
        assert_eq!(
            call(ext::HSM, 0, &[1, 0x20_0000, 7]),
            SbiCall::HartStart { hartid: 1, start_addr: 0x20_0000, opaque: 7 }
        );
        assert_eq!(call(ext::HSM, 2, &[3]), SbiCall::HartStatus(3));
        assert_eq!(call(ext::SRST, 0, &[1, 0]), SbiCall::SystemReset { kind: 1, reason: 0 });
        assert_eq!(call(ext::HSM, 3, &[]), SbiCall::Unknown(ext::HSM, 3), "no suspend");
        assert_eq!(call(0x4442_434e, 0, &[]), SbiCall::Unknown(0x4442_434e, 0), "no debug console");
    }

    #[test]
    fn probe_names_the_served_extensions() {
        for e in [ext::BASE, ext::TIME, ext::IPI, ext::RFENCE, ext::HSM, ext::SRST, SBI_EXT_XEN] {
            assert_eq!(SbiCall::probe(e), 1, "{e:#x}");
        }
        assert_eq!(SbiCall::probe(0x4442_434e), 0);
        assert_eq!(SbiCall::probe(0x01), 0, "no legacy console");
    }

    #[test]
    fn hart_masks() {
        assert_eq!(HartMask { mask: 0b101, base: 0 }.targets(4), Ok(vec![0, 2]));
        assert_eq!(HartMask { mask: 0b1, base: 3 }.targets(4), Ok(vec![3]));
        assert_eq!(HartMask { mask: 0, base: u64::MAX }.targets(3), Ok(vec![0, 1, 2]));
        assert_eq!(HartMask { mask: 0b10, base: 3 }.targets(4), Err(err::INVALID_PARAM));
        assert_eq!(HartMask { mask: 1, base: 9 }.targets(4), Err(err::INVALID_PARAM));
        assert_eq!(HartMask { mask: 0, base: 9 }.targets(4), Ok(vec![]));
    }
}
