//! The board side of the scheduler loop for a board whose one host timer is
//! armed per slice (the backend arms it for [`Preemption::slice_deadline`]
//! at each guest entry; between slices and while idle it is the board's):
//! the slice and its ratelimit, polling the gdb sessions and the console's
//! input, idling until the next deadline or input poll, the verdict and
//! power-off, and building each domain from the module archive; and what
//! such boards read alike from their device tree ([`dt`]).
//!
//! A board brings only its hardware, through [`Hardware`]: the counter,
//! the host timer, waiting for an interrupt, console input and output,
//! power-off, and its arch's guest layout, boot protocol and per-domain
//! object. Naming no architecture, so that two boards cannot drift apart
//! in what the scheduler sees of them.
//!
//! [`Preemption::slice_deadline`]: lantern_common::arch::Preemption::slice_deadline

#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

extern crate alloc;

mod console;
pub mod dt;
mod hardware;
mod slice;

pub use console::SerialConsole;
pub use hardware::{BootImage, Hardware, LoadedImage};
pub use slice::{module_archive, run};
