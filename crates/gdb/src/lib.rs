//! Lantern's embedded gdb stub: a `gdbstub` target over the core's model of
//! domains and vCPUs (threads = vCPUs), naming no architecture.

#![cfg_attr(not(test), no_std)]
