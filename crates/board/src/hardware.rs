//! What a board's hardware and arch give the shared loop: the few things
//! that differ from one board to the next.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt::Arguments;

use lantern_common::arch::ArchDomain;
use lantern_common::domain::Domain;
use lantern_common::memory::DomId;
use xen_abi::layout::GuestAbi;

/// Where the arch's boot protocol put a domain's image: what vCPU 0 is
/// powered on with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The entry address.
    pub entry: u64,
    /// Guest-physical address of the guest DTB (the boot vCPU's argument).
    pub dtb: u64,
    /// Size of the DTB.
    pub dtb_len: usize,
    /// Where the initrd went, `[start, end)`.
    pub initrd: Option<(u64, u64)>,
}

/// What the arch's boot protocol loads into a domain.
#[derive(Clone, Copy, Debug)]
pub struct BootImage<'a> {
    /// The kernel image.
    pub image: &'a [u8],
    /// Its initial ramdisk, if any.
    pub initrd: Option<&'a [u8]>,
    /// The domain's RAM in bytes.
    pub ram: u64,
    /// Its vCPUs (the DTB's cpus).
    pub vcpus: u32,
    /// The kernel's command line.
    pub cmdline: &'a str,
}

/// A board's hardware and arch, as the shared loop uses them.
pub trait Hardware {
    /// Guest-physical end of the RAM a domain may have.
    const RAM_MAX: u64;
    /// Guest-physical address of the PV console ring.
    const CONSOLE_RING: u64;

    /// The host counter (the one the domains' clock samples).
    fn now(&self) -> u64;
    /// Arms the host timer to fire at counter value `at`.
    fn arm_timer(&self, at: u64);
    /// Disarms the host timer.
    fn disarm_timer(&self);
    /// Sleeps until an interrupt is pending (interrupts stay masked) and
    /// clears it, so that the next sleep waits again.
    fn wait_for_interrupt(&self);
    /// The next byte typed at the console, if one is waiting (polled).
    fn read_console(&self) -> Option<u8>;
    /// Prints raw text on the console.
    fn print(args: Arguments<'_>);
    /// Ends the run with exit status `status` (0 a clean verdict, 1 a
    /// failed one).
    fn power_off(&self, status: u32) -> !;

    /// The guest layout the domains are built with.
    fn abi(&self) -> &'static dyn GuestAbi;
    /// Loads `image` into `d` with the guest DTB (the arch's boot
    /// protocol).
    fn load(&self, d: &Domain, image: &BootImage<'_>) -> Result<LoadedImage, String>;
    /// The arch's per-domain object for domain `id` with `vcpus` vCPUs.
    fn arch_domain(&self, id: DomId, vcpus: u32) -> Box<dyn ArchDomain>;
}
