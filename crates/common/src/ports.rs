//! A domain's event-channel port table and the event-channel ABI in force
//! (the state; the `EVTCHNOP_*` operations on it are in `evtchn`, the FIFO
//! state in `fifo`).

use alloc::vec::Vec;

use alloc::boxed::Box;

use crate::fifo::Fifo;
use crate::memory::DomId;
use xen_abi::errno::{Errno, XenResult};

/// Most ports a domain may have whatever its ABI allows: Lantern's
/// `max_evtchn_port + 1` (Xen's per-domain cap), which bounds the table's
/// heap use while leaving FIFO guests ports above the first event-array page.
pub const MAX_PORTS: u32 = 8192;

/// The event-channel ABI in force for a domain.
pub enum EvtchnAbi {
    /// Pending and mask bitmaps in shared_info (the default).
    TwoLevel,
    /// Event words in guest array pages, per-vCPU priority queues.
    Fifo(Box<Fifo>),
}

impl EvtchnAbi {
    /// Short name (`2-level`, `fifo`).
    pub fn name(&self) -> &'static str {
        match self {
            EvtchnAbi::TwoLevel => "2-level",
            EvtchnAbi::Fifo(_) => "fifo",
        }
    }

    /// Per-port ABI state of a newly bound port.
    pub(crate) fn init_port(&mut self, port: u32) {
        if let EvtchnAbi::Fifo(f) = self {
            f.init_port(port);
        }
    }
}

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
    /// Bound to a port of another domain (`ECS_INTERDOMAIN`).
    Interdomain {
        /// The peer domain.
        remote_dom: DomId,
        /// Its port.
        remote_port: u32,
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

/// A domain's port table and the event-channel ABI in force. Port 0 is
/// reserved, as in Xen.
pub struct EventChannels {
    pub(crate) ports: Vec<Channel>,
    /// 2-level (the default) or FIFO once the guest called `init_control`.
    pub(crate) abi: EvtchnAbi,
    /// Bits of the domain's `xen_ulong_t` (the 2-level port limit is its square).
    word_bits: u32,
}

impl Default for EventChannels {
    fn default() -> Self {
        Self::new()
    }
}

impl EventChannels {
    /// A table with only the reserved port 0, for a 64-bit `xen_ulong_t`.
    pub fn new() -> Self {
        Self::with_word_size(8)
    }

    /// A table with only the reserved port 0, 2-level, for a `xen_ulong_t`
    /// of `size` bytes.
    pub fn with_word_size(size: usize) -> Self {
        EventChannels {
            ports: alloc::vec![Channel { state: ChannelState::Ipi, notify_vcpu: 0 }],
            abi: EvtchnAbi::TwoLevel,
            word_bits: (size * 8) as u32,
        }
    }

    /// Follows a change of the layout in force (the 2-level limit is the
    /// square of `xen_ulong_t`'s bits).
    pub(crate) fn set_word_size(&mut self, size: usize) {
        self.word_bits = (size * 8) as u32;
    }

    /// Ports the ABI in force can name: `bits * bits` for 2-level (1024 in
    /// x86_32 compat, 4096 for 64-bit words), `EVTCHN_FIFO_NR_CHANNELS` for
    /// FIFO — both capped at [`MAX_PORTS`].
    pub fn port_limit(&self) -> u32 {
        let abi_limit = match self.abi {
            EvtchnAbi::TwoLevel => self.word_bits * self.word_bits,
            EvtchnAbi::Fifo(_) => xen_abi::nr::evtchn_fifo::NR_CHANNELS,
        };
        abi_limit.min(MAX_PORTS)
    }

    /// Xen's `port_is_valid`: the port lies in the table (allocated once,
    /// possibly free now; port 0 included).
    pub fn is_valid(&self, port: u32) -> bool {
        (port as usize) < self.ports.len()
    }

    /// Short name of the ABI in force (`2-level`, `fifo`).
    pub fn abi_name(&self) -> &'static str {
        self.abi.name()
    }

    /// Xen's `get_free_port`: the lowest free port, bound to `state`.
    pub(crate) fn alloc(&mut self, state: ChannelState, notify_vcpu: u32) -> XenResult<u32> {
        let port = match self.ports.iter().skip(1).position(|c| c.state == ChannelState::Free) {
            Some(p) => p as u32 + 1,
            None if (self.ports.len() as u32) < self.port_limit() => {
                self.ports.push(Channel { state: ChannelState::Free, notify_vcpu: 0 });
                self.ports.len() as u32 - 1
            }
            None => return Err(Errno::ENOSPC),
        };
        self.ports[port as usize] = Channel { state, notify_vcpu };
        self.abi.init_port(port);
        Ok(port)
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
