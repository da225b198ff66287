//! What happens when a domain ends: its configuration's `on_poweroff`,
//! `on_reboot` or `on_crash` action (destroy, restart, preserve), and the
//! debugger's `monitor destroy` / `monitor restart` requests. A restart
//! keeps the domain id (Xen's toolstack gives the new domain a new one;
//! here gdb's thread ids and scripts stay valid across it).

use alloc::format;

use super::{Board, DomainRequest, Hypervisor, OtherSlots};
use crate::audit::audit_pages;
use crate::boot_config::ShutdownAction;
use crate::domain::Lifecycle;
use crate::lifecycle;
use xen_abi::nr::shutdown;

impl Hypervisor {
    /// Carries out the action of every domain that has ended since the last
    /// look, then the debugger's pending requests (so a request meets the
    /// domain as its configuration left it: a crash already restarted).
    pub fn act_on_endings(&mut self, board: &mut dyn Board) {
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let reason = match slot.domain.lifecycle() {
                // Running again (after a soft reset): its next ending counts.
                Lifecycle::Running => {
                    slot.ending_handled = false;
                    continue;
                }
                Lifecycle::Dead => continue,
                _ if slot.ending_handled => continue,
                Lifecycle::Shutdown(r) => Some(r),
                Lifecycle::Crashed => None,
            };
            slot.ending_handled = true;
            let action = slot.spec.as_ref().map_or(ShutdownAction::Preserve, |s| s.action_for(reason));
            let why = match reason {
                Some(r) => shutdown::name(r),
                None => "crashed",
            };
            self.act(i, action, why, board);
        }
        for (id, request) in core::mem::take(&mut self.debugger.domain_requests) {
            match self.slots.iter().position(|s| s.domain.id == id) {
                Some(i) => {
                    let action = match request {
                        DomainRequest::Destroy => ShutdownAction::Destroy,
                        DomainRequest::Restart => ShutdownAction::Restart,
                    };
                    self.act(i, action, "on request", board);
                }
                None => board.announce(&format!("d{id}: no such domain")),
            }
        }
    }

    /// Applies `action` to the domain in slot `i`; `why` names the ending
    /// (or the request) in the line the board prints.
    fn act(&mut self, i: usize, action: ShutdownAction, why: &str, board: &mut dyn Board) {
        let id = self.slots[i].domain.id;
        if action == ShutdownAction::Preserve {
            return;
        }
        let spec = match (action, &self.slots[i].spec) {
            (ShutdownAction::Restart, None) => {
                board.announce(&format!("d{id}: {why}: cannot restart: built without a configuration"));
                return;
            }
            (ShutdownAction::Restart, Some(spec)) => Some(spec.clone()),
            _ => None,
        };
        self.destroy(i);
        // Everything the domain held must be given back: the counts of
        // every frame left (the survivors' and the dead domain's own) must
        // be what their holders account for.
        // Taken before a restart rebuilds the slot, printed after the line
        // saying what happened.
        let audit = audit_pages(self.slots.iter().map(|s| &*s.domain));
        let audit_line = format!("page audit after destroying d{id}: {audit}");
        let Some(spec) = spec else {
            board.announce(&format!("d{id}: {why}: destroyed"));
            board.announce(&audit_line);
            return;
        };
        match board.build_domain(id, &spec) {
            Ok(new) => {
                let restarts = self.slots[i].restarts + 1;
                self.slots[i] = new.with_spec(&spec);
                self.slots[i].restarts = restarts;
                board.announce(&format!("d{id}: {why}: restarted (restart {restarts})"));
            }
            Err(e) => board.announce(&format!("d{id}: {why}: destroyed; restart failed: {e}")),
        }
        board.announce(&audit_line);
    }

    /// Tears slot `i`'s domain down (every page and mapping released, its
    /// peers' ends closed), remembering how it had ended.
    fn destroy(&mut self, i: usize) {
        let (before, rest) = self.slots.split_at_mut(i);
        let Some((slot, after)) = rest.split_first_mut() else { return };
        let l = slot.domain.lifecycle();
        if l == Lifecycle::Dead {
            return;
        }
        slot.ended = (l != Lifecycle::Running).then_some(l);
        lifecycle::kill_among(&slot.domain, &OtherSlots { before, after });
    }
}
