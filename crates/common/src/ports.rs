//! A domain's event-channel port table (the state; the `EVTCHNOP_*`
//! operations on it are in `evtchn`).

use alloc::vec::Vec;

use crate::memory::DomId;
use xen_abi::errno::{Errno, XenResult};

/// Most ports a domain may have (a 2-level ABI allows more; we need few).
pub const MAX_PORTS: u32 = 1024;

/// What a port is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Not allocated.
    Free,
    /// Allocated, waiting for `remote` to bind.
    Unbound {
        /// Domain allowed to bind.
        remote: DomId,
    },
    /// Bound to a VIRQ.
    Virq {
        /// VIRQ number.
        virq: u32,
    },
    /// An IPI channel.
    Ipi,
    /// Bound to another port of the same domain (loopback interdomain).
    Loopback {
        /// The peer port.
        peer: u32,
    },
    /// Bound to the hypervisor's PV console backend (in Xen an interdomain
    /// channel to `xenconsoled`): a send makes the backend drain the ring.
    ConsoleBackend,
}

/// One port.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    /// Binding.
    pub state: ChannelState,
    /// vCPU notified when the port becomes pending.
    pub notify_vcpu: u32,
}

/// A domain's port table. Port 0 is reserved, as in Xen.
pub struct EventChannels {
    pub(crate) ports: Vec<Channel>,
}

impl Default for EventChannels {
    fn default() -> Self {
        Self::new()
    }
}

impl EventChannels {
    /// A table with only the reserved port 0.
    pub fn new() -> Self {
        EventChannels { ports: alloc::vec![Channel { state: ChannelState::Ipi, notify_vcpu: 0 }] }
    }

    pub(crate) fn alloc(&mut self, state: ChannelState, notify_vcpu: u32) -> XenResult<u32> {
        if let Some(p) = self.ports.iter().skip(1).position(|c| c.state == ChannelState::Free) {
            self.ports[p + 1] = Channel { state, notify_vcpu };
            return Ok(p as u32 + 1);
        }
        if self.ports.len() as u32 >= MAX_PORTS {
            return Err(Errno::ENOSPC);
        }
        self.ports.push(Channel { state, notify_vcpu });
        Ok(self.ports.len() as u32 - 1)
    }

    /// The channel at `port`, if allocated.
    pub fn get(&self, port: u32) -> Option<Channel> {
        self.ports.get(port as usize).copied().filter(|c| port != 0 && c.state != ChannelState::Free)
    }

    /// Every allocated port.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Channel)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, c)| c.state != ChannelState::Free)
            .map(|(p, c)| (p as u32, *c))
    }
}
