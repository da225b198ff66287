//! The PV timer state of one vCPU (its field on `Vcpu`): the single-shot
//! deadline, the periodic timer's period and phase, and the poll in
//! progress, with the pure transitions on them. The operations that fire
//! `VIRQ_TIMER` and the scheduler's use of them are in `pv_timer`.
//!
//! Deadlines are absolute system time in ns ([`crate::clock::Clock`]).

/// One vCPU's PV timers and poll state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimers {
    /// Deadline of the single-shot timer, if armed.
    singleshot: Option<u64>,
    /// Period of the periodic timer, 0 when stopped.
    period: u64,
    /// The deadline the periodic timer last fired for (Xen's
    /// `periodic_last_event`, kept across a stop as Xen keeps it).
    periodic_last: u64,
    /// Set while the vCPU is blocked in `SCHEDOP_poll` (Xen's bit in
    /// `poll_mask`).
    polling: bool,
    /// The one port a poll of a single port waits for (`poll_evtchn`); any
    /// port of the domain wakes a poll of several.
    poll_port: Option<u32>,
    /// When the poll gives up, if it has a timeout.
    poll_timeout: Option<u64>,
}

impl VcpuTimers {
    /// Deadline of the single-shot timer, if armed.
    pub fn singleshot(&self) -> Option<u64> {
        self.singleshot
    }

    /// The periodic timer's period and next deadline, if it runs.
    pub fn periodic(&self) -> Option<(u64, u64)> {
        (self.period != 0).then(|| (self.period, self.periodic_last.saturating_add(self.period)))
    }

    /// Whether the vCPU waits in `SCHEDOP_poll`.
    pub fn polling(&self) -> bool {
        self.polling
    }

    /// When the poll in progress gives up, if it has a timeout.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.poll_timeout.filter(|_| self.polling)
    }

    /// Arms (`Some`) or stops (`None`) the single-shot timer.
    pub(crate) fn set_singleshot(&mut self, deadline: Option<u64>) {
        self.singleshot = deadline;
    }

    /// Sets the periodic timer's period (0 stops it); its phase stays.
    pub(crate) fn set_period(&mut self, period: u64) {
        self.period = period;
    }

    /// Disarms and reports the single-shot timer if it has expired by `now`.
    pub(crate) fn take_expired_singleshot(&mut self, now: u64) -> bool {
        let expired = self.singleshot.is_some_and(|s| s <= now);
        if expired {
            self.singleshot = None;
        }
        expired
    }

    /// Whether the periodic timer is due at `now`; if so its deadline moves
    /// on by whole periods from the last one (not from `now`), so the ticks
    /// keep their phase however late they are looked at, and a vCPU that
    /// was off the CPU for several periods gets one tick, not a burst.
    pub(crate) fn take_periodic_tick(&mut self, now: u64) -> bool {
        match self.periodic() {
            Some((period, next)) if now >= next => {
                let missed = (now - next) / period;
                self.periodic_last = next.saturating_add(missed.saturating_mul(period));
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline that should wake the vCPU if it is blocked:
    /// the single-shot timer or the poll's timeout (the periodic timer does
    /// not tick for a vCPU off the CPU).
    pub(crate) fn wake_deadline(&self) -> Option<u64> {
        [self.singleshot, self.poll_timeout()].into_iter().flatten().min()
    }

    /// Starts a poll: woken by `port` if given, by any port otherwise, and
    /// at `timeout` if given.
    pub(crate) fn start_poll(&mut self, port: Option<u32>, timeout: Option<u64>) {
        (self.polling, self.poll_port, self.poll_timeout) = (true, port, timeout);
    }

    /// Ends the poll, if any; returns whether there was one.
    pub(crate) fn end_poll(&mut self) -> bool {
        let was = self.polling;
        (self.polling, self.poll_port, self.poll_timeout) = (false, None, None);
        was
    }

    /// Ends the poll if its timeout has passed by `now`; returns whether.
    pub(crate) fn take_expired_poll(&mut self, now: u64) -> bool {
        self.poll_timeout().is_some_and(|t| t <= now) && self.end_poll()
    }

    /// Ends the poll if event `port` is one it waits for; returns whether.
    pub(crate) fn take_poll_for(&mut self, port: u32) -> bool {
        self.polling && self.poll_port.is_none_or(|p| p == port) && self.end_poll()
    }
}
