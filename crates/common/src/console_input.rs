//! Where serial input goes: to the hypervisor (its debug keys) or to one
//! domain's PV console, one target at a time, switched like Xen's console
//! by typing Ctrl-A three times in a row. This is the state and its rules;
//! the scheduler's `Hypervisor::serial_input` routes the bytes.

use alloc::format;
use alloc::string::String;

use crate::memory::DomId;

/// The switch character: Ctrl-A.
pub const SWITCH_CHAR: u8 = 0x01;
/// How many switch characters in a row switch the input.
pub const SWITCH_COUNT: u8 = 3;

/// Who receives serial input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputTarget {
    /// The hypervisor: every byte is a debug key.
    Hypervisor,
    /// A domain's PV console input ring.
    Domain(DomId),
}

/// What one input byte amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A switch character, held back: it may be part of a switch.
    Held,
    /// The third switch character in a row: switch the input.
    Switch,
    /// Deliver `held` switch characters (those held back by a run that
    /// turned out shorter than a switch), then `key`.
    Pass {
        /// Switch characters to deliver first.
        held: u8,
        /// The byte itself.
        key: u8,
    },
}

/// The serial input state: the current target and the switch characters
/// seen in a row.
#[derive(Clone, Copy, Debug)]
pub struct SerialInput {
    target: InputTarget,
    held: u8,
}

impl Default for SerialInput {
    fn default() -> Self {
        Self::new()
    }
}

impl SerialInput {
    /// Input to the hypervisor, as at boot (the board moves it on to the
    /// first domain once the domains are built, as Xen does at the end of
    /// its boot).
    pub const fn new() -> Self {
        SerialInput { target: InputTarget::Hypervisor, held: 0 }
    }

    /// The current target.
    pub fn target(&self) -> InputTarget {
        self.target
    }

    /// Classifies one input byte.
    pub fn push(&mut self, b: u8) -> Key {
        if b == SWITCH_CHAR {
            self.held += 1;
            if self.held == SWITCH_COUNT {
                self.held = 0;
                return Key::Switch;
            }
            return Key::Held;
        }
        Key::Pass { held: core::mem::take(&mut self.held), key: b }
    }

    /// Moves input to the target after the current one in the cycle: each
    /// domain of `domains` (those that can take input, in creation order),
    /// then the hypervisor, then round again — Xen's order of dom0, the
    /// boot-time domUs, Xen. Returns the new target.
    pub fn switch(&mut self, domains: &[DomId]) -> InputTarget {
        let next = match self.target {
            InputTarget::Hypervisor => domains.first().copied(),
            InputTarget::Domain(cur) => match domains.iter().position(|d| *d == cur) {
                Some(i) => domains.get(i + 1).copied(),
                // The current domain went away: start over at the first.
                None => domains.first().copied(),
            },
        };
        self.target = next.map_or(InputTarget::Hypervisor, InputTarget::Domain);
        self.target
    }
}

/// The line announcing that input now goes to `t`.
pub fn switch_message(t: InputTarget) -> String {
    let to = match t {
        InputTarget::Hypervisor => String::from("the hypervisor (debug keys: h for help)"),
        InputTarget::Domain(d) => format!("d{d}'s console"),
    };
    format!("*** serial input now goes to {to}; Ctrl-A three times moves it on")
}
