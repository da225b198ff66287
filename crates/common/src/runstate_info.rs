//! The hypervisor's own record of a vCPU's runstate ([`RunstateInfo`]); the
//! accounting and the guest's runstate area are in `runstate`.

use xen_abi::nr::runstate::{OFFLINE, RUNNABLE};

/// The hypervisor's record of a vCPU's runstate (`vcpu_runstate_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunstateInfo {
    /// Current `RUNSTATE_*`.
    pub state: u32,
    /// When the current state was entered (ns of system time).
    pub state_entry_time: u64,
    /// Total ns spent in each state before the current one was entered.
    pub time: [u64; 4],
}

impl RunstateInfo {
    pub(crate) fn new(up: bool, now: u64) -> Self {
        RunstateInfo { state: if up { RUNNABLE } else { OFFLINE }, state_entry_time: now, time: [0; 4] }
    }
}
