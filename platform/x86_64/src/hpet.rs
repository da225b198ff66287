//! The board's HPET: the reference the TSC and the APIC timer are calibrated
//! against (it states its own period, so no second reference is needed), and
//! the probe that tells whether the legacy PIT's ports decode anything.

use x86::io::{inb, outb};

/// Where q35 decodes the HPET's registers (ACPI's HPET table names the same
/// address; the board is fixed, so it is not parsed).
const HPET_BASE: usize = 0xFED0_0000;
/// General capabilities: the counter period in femtoseconds in bits 63:32.
const REG_CAPABILITIES: usize = 0x000;
/// General configuration: bit 0 starts the main counter.
const REG_CONFIG: usize = 0x010;
const CONFIG_ENABLE: u64 = 1;
/// The main counter.
const REG_COUNTER: usize = 0x0F0;
/// The HPET specification's longest allowed period (100 ns).
const MAX_PERIOD_FS: u64 = 100_000_000;
const FS_PER_SEC: u64 = 1_000_000_000_000_000;
const FS_PER_US: u64 = 1_000_000_000;

/// The legacy PIT's ports (channels 0–2 and the command port).
pub static PIT_PORTS: [core::ops::RangeInclusive<u16>; 1] = [0x40..=PIT_COMMAND];

/// The PIT's channel-2 data port and its mode/command port.
const PIT_CHANNEL2: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
/// PIT command: channel 2, low byte then high byte, mode 0, binary.
const PIT_CH2_LOHI_MODE0: u8 = 0xB0;
/// PIT command: latch channel 2's count.
const PIT_CH2_LATCH: u8 = 0x80;

/// The running HPET main counter.
pub struct Hpet {
    period_fs: u64,
}

fn read(reg: usize) -> u64 {
    // SAFETY: the HPET's register page is in the identity-mapped low 4 GiB
    // (uncached device memory) and `reg` is one of its 64-bit registers.
    unsafe { core::ptr::read_volatile((HPET_BASE + reg) as *const u64) }
}

fn write(reg: usize, value: u64) {
    // SAFETY: as in `read`; only the hypervisor programs the HPET.
    unsafe { core::ptr::write_volatile((HPET_BASE + reg) as *mut u64, value) }
}

impl Hpet {
    /// Starts the main counter; `None` when no HPET answers at the board's
    /// address (its capabilities then read as no valid period).
    pub fn start() -> Option<Hpet> {
        let period_fs = read(REG_CAPABILITIES) >> 32;
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return None;
        }
        write(REG_CONFIG, read(REG_CONFIG) | CONFIG_ENABLE);
        Some(Hpet { period_fs })
    }

    /// The counter's rate.
    pub fn hz(&self) -> u64 {
        FS_PER_SEC / self.period_fs
    }

    /// The main counter now.
    pub fn counter(&self) -> u64 {
        read(REG_COUNTER)
    }

    /// Counter ticks in `us` microseconds.
    pub fn ticks_in_us(&self, us: u64) -> u64 {
        us * FS_PER_US / self.period_fs
    }
}

/// Whether the legacy PIT's ports 0x40–0x43 decode nothing (QEMU's
/// `-M q35,pit=off`): a count programmed into channel 2 and latched reads
/// back as all ones only when no PIT is there (a running PIT's count never
/// exceeds what was loaded).
pub fn pit_absent() -> bool {
    let loaded: u16 = 0x1234;
    // SAFETY: channel 2 drives only the speaker gate, which stays off (port
    // 0x61 is not touched); the hypervisor uses no PIT channel.
    let latched = unsafe {
        outb(PIT_COMMAND, PIT_CH2_LOHI_MODE0);
        outb(PIT_CHANNEL2, loaded as u8);
        outb(PIT_CHANNEL2, (loaded >> 8) as u8);
        outb(PIT_COMMAND, PIT_CH2_LATCH);
        let low = inb(PIT_CHANNEL2) as u16;
        low | (inb(PIT_CHANNEL2) as u16) << 8
    };
    latched == u16::MAX
}
