//! Finding the virtio-serial device on a PCI bus and bringing it up: BARs
//! the firmware left unassigned get addresses from a window the board names
//! (arm virt assigns nothing; SeaBIOS on q35 assigns them but leaves bus
//! mastering off), then the modern virtio-pci transport and the driver.

use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, MemoryBarType, PciRoot,
};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::DeviceType;
use virtio_drivers::Hal;

use crate::{Error, VirtioSerial};

/// Why no port came up on the bus.
#[derive(Debug)]
pub enum ProbeError {
    /// No virtio console on the bus (the ordinary case: no such `-device`).
    Absent,
    /// A BAR needs an address and the window has no room (or there is none).
    NoRoomForBar(u8),
    /// The virtio-pci transport did not come up.
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    /// The device did.
    Device(Error),
}

/// A range of bus addresses BARs may be placed in (CPU = bus address):
/// `(base, size)`, handed out upwards.
pub struct BarWindow {
    next: u64,
    end: u64,
}

impl BarWindow {
    /// The window `[base, base + size)`.
    pub fn new(base: u64, size: u64) -> BarWindow {
        BarWindow { next: base, end: base + size }
    }

    /// A naturally aligned block of `size` bytes (a BAR's size is a power of two).
    fn take(&mut self, size: u64) -> Option<u64> {
        let size = size.max(16);
        let at = self.next.checked_add(size - 1)? & !(size - 1);
        let end = at.checked_add(size)?;
        (end <= self.end).then(|| {
            self.next = end;
            at
        })
    }
}

/// Brings up the first virtio console on `bus` of `root`, with the ports
/// whose names start with `prefix`; BARs without an address are placed in
/// `window`.
pub fn probe<H: Hal, C: ConfigurationAccess>(
    root: &mut PciRoot<C>,
    bus: u8,
    mut window: Option<BarWindow>,
    prefix: &'static str,
) -> Result<(VirtioSerial<H, PciTransport>, DeviceFunction), ProbeError> {
    let df = root
        .enumerate_bus(bus)
        .find(|(_, info)| virtio_device_type(info) == Some(DeviceType::Console))
        .map(|(df, _)| df)
        .ok_or(ProbeError::Absent)?;
    // Only memory BARs matter: the modern interface lives in them.
    let bars = root.bars(df).map_err(|_| ProbeError::NoRoomForBar(0))?;
    for (i, bar) in bars.iter().enumerate() {
        let Some(BarInfo::Memory { address_type, address: 0, size, .. }) = bar else { continue };
        let at = window.as_mut().and_then(|w| w.take(*size)).ok_or(ProbeError::NoRoomForBar(i as u8))?;
        match address_type {
            MemoryBarType::Width64 => root.set_bar_64(df, i as u8, at),
            _ => root.set_bar_32(df, i as u8, at as u32),
        }
    }
    let (_, cmd) = root.get_status_command(df);
    root.set_command(df, cmd | Command::MEMORY_SPACE | Command::BUS_MASTER);
    let transport = PciTransport::new::<H, C>(root, df).map_err(ProbeError::Transport)?;
    let dev = VirtioSerial::new(transport, prefix).map_err(ProbeError::Device)?;
    Ok((dev, df))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_window_hands_out_aligned_blocks_until_full() {
        let mut w = BarWindow::new(0x1000_0100, 0x10000);
        assert_eq!(w.take(0x1000), Some(0x1000_1000));
        assert_eq!(w.take(0x4000), Some(0x1000_4000));
        assert_eq!(w.take(0x8), Some(0x1000_8000), "at least 16 bytes");
        assert_eq!(w.take(0x8000), None, "no room left");
        assert_eq!(w.take(0x4000), Some(0x1000_c000));
    }
}
