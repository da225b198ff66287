//! Lantern's arch-neutral core: domains, vCPUs, guest memory, the guest-area
//! mechanism (vcpu_info, runstate, time), event channels, grant tables, hypercall dispatch
//! and the scheduler loop. It never names an architecture; ports plug in
//! through the traits in [`arch`].

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod addr;
pub mod arch;
pub mod area;
pub mod audit;
pub mod boot_config;
pub mod clock;
pub mod console;
pub mod console_input;
pub mod cpio;
pub mod debug;
pub mod debug_keys;
pub mod diag;
pub mod directory;
pub mod domain;
pub mod evtchn;
pub mod fifo;
pub mod grant_table;
pub mod grants;
pub mod guest_area;
pub mod guest_memory;
pub mod heap;
pub mod hypercall;
pub mod lifecycle;
pub mod loader;
pub mod log_filter;
pub mod memory;
pub mod ports;
pub mod pv_console;
pub mod pv_timer;
pub mod pv_timer_state;
pub mod register_view;
pub mod runstate;
pub mod runstate_info;
pub mod sched;
pub mod target_xml;
pub mod time;
pub mod va_area;
