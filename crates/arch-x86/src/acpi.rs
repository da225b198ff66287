//! The ACPI tables a PVH domain finds through `hvm_start_info.rsdp_paddr`,
//! built the way Xen's toolstack builds them for PVH (`libxl_x86_acpi.c`,
//! `libacpi`): an RSDP (revision 2) naming an RSDT and an XSDT, a
//! hardware-reduced FADT (revision 5: no PM timer, no SCI, no legacy
//! devices, no VGA, no CMOS RTC), a DSDT with no AML, and a MADT with one
//! enabled local-APIC entry per vCPU (ACPI processor id = vCPU id, the id
//! Linux's `xen_vcpu_nr` takes from it) and no I/O APIC, since a PVH domU
//! has only a local APIC. The tables sit at [`ACPI_TABLES_GPA`], where
//! libxl puts them, and the RSDP in the page after them.

use alloc::vec::Vec;

/// `ACPI_INFO_PHYSICAL_ADDRESS` (libxl): the toolstack's ACPI area. The
/// tables start one page above it (libxl keeps that page for `acpi_info`).
pub const ACPI_INFO_GPA: u64 = 0xFC00_0000;
/// Where the tables start.
pub const ACPI_TABLES_GPA: u64 = ACPI_INFO_GPA + 0x1000;
/// The local APIC's MMIO base every MADT names (`LAPIC_BASE_ADDRESS`).
pub const LAPIC_BASE_GPA: u32 = 0xFEE0_0000;

/// Bytes of the common table header (signature .. creator revision).
const HEADER_LEN: usize = 36;
/// Bytes of an ACPI 2.0 RSDP.
const RSDP_LEN: usize = 36;
/// The RSDP revision with an XSDT.
const RSDP_REVISION: u8 = 2;
/// FADT revision (ACPI 5.0, the `acpi_revision` libxl gives PVH) and its
/// length in that revision.
const FADT_REVISION: u8 = 5;
const FADT_LEN: usize = 268;
/// FADT offsets used here (ACPI 5.0 table 5-34).
const FADT_DSDT: usize = 40;
const FADT_IAPC_BOOT_ARCH: usize = 109;
const FADT_FLAGS: usize = 112;
const FADT_X_DSDT: usize = 140;
/// `IAPC_BOOT_ARCH`: no VGA, no CMOS RTC (and, by leaving bit 1 clear, no
/// 8042 keyboard controller and no legacy devices).
const IAPC_NO_VGA: u16 = 1 << 2;
const IAPC_NO_CMOS_RTC: u16 = 1 << 5;
/// FADT flags: `HW_REDUCED_ACPI`, plus "no fixed power/sleep buttons"
/// (libxl's default without `ACPI_HAS_BUTTONS`).
const FADT_PWR_BUTTON: u32 = 1 << 4;
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;
/// MADT revision (ACPI 5.0) and its Processor Local APIC entry.
const MADT_REVISION: u8 = 3;
const MADT_TYPE_LOCAL_APIC: u8 = 0;
const MADT_LOCAL_APIC_LEN: u8 = 8;
const MADT_TYPE_LOCAL_X2APIC: u8 = 9;
const MADT_LOCAL_X2APIC_LEN: u8 = 16;
/// Local APIC entry flag: the processor is enabled.
const MADT_LAPIC_ENABLED: u32 = 1;
/// The highest APIC id a (8-bit) Processor Local APIC entry can carry;
/// higher ids take a Local x2APIC entry.
const MAX_XAPIC_ID: u32 = 0xFE;

/// OEM fields of every table.
const OEM_ID: &[u8; 6] = b"LANTRN";
const OEM_TABLE_ID: &[u8; 8] = b"LANTERN ";
const CREATOR_ID: &[u8; 4] = b"LNTN";

/// The tables of one domain: `bytes` go to guest-physical [`ACPI_TABLES_GPA`].
pub struct AcpiTables {
    /// Every table, then the RSDP, contiguous.
    pub bytes: Vec<u8>,
    /// Guest-physical address of the RSDP (for `rsdp_paddr`).
    pub rsdp: u64,
}

impl AcpiTables {
    /// The page-aligned guest-physical range the tables occupy (to list
    /// reserved in the memory map).
    pub fn pages(&self) -> impl Iterator<Item = u64> {
        (ACPI_TABLES_GPA..ACPI_TABLES_GPA + self.bytes.len() as u64).step_by(0x1000)
    }
}

/// The APIC id of vCPU `vcpu`: Lantern uses the vCPU id itself (Xen uses
/// twice it; Linux needs only that CPUID, the MADT and the local APIC agree).
pub fn apic_id(vcpu: u32) -> u32 {
    vcpu
}

/// Builds the tables for a domain with `vcpus` vCPUs.
pub fn build(vcpus: u32) -> AcpiTables {
    let mut out = Vec::new();
    let at = |out: &Vec<u8>| ACPI_TABLES_GPA + out.len() as u64;

    let dsdt_at = at(&out);
    out.extend_from_slice(&table(b"DSDT", 2, &[]));
    align8(&mut out);

    let fadt_at = at(&out);
    let mut fadt = [0u8; FADT_LEN - HEADER_LEN];
    put(&mut fadt, FADT_DSDT - HEADER_LEN, &(dsdt_at as u32).to_le_bytes());
    put(&mut fadt, FADT_IAPC_BOOT_ARCH - HEADER_LEN, &(IAPC_NO_VGA | IAPC_NO_CMOS_RTC).to_le_bytes());
    let flags = FADT_HW_REDUCED_ACPI | FADT_PWR_BUTTON | FADT_SLP_BUTTON;
    put(&mut fadt, FADT_FLAGS - HEADER_LEN, &flags.to_le_bytes());
    put(&mut fadt, FADT_X_DSDT - HEADER_LEN, &dsdt_at.to_le_bytes());
    out.extend_from_slice(&table(b"FACP", FADT_REVISION, &fadt));
    align8(&mut out);

    let madt_at = at(&out);
    let mut madt = Vec::new();
    madt.extend_from_slice(&LAPIC_BASE_GPA.to_le_bytes());
    madt.extend_from_slice(&0u32.to_le_bytes()); // no dual 8259s (no PCAT_COMPAT)
    for v in 0..vcpus {
        let id = apic_id(v);
        if id <= MAX_XAPIC_ID && v <= 0xFF {
            madt.extend_from_slice(&[MADT_TYPE_LOCAL_APIC, MADT_LOCAL_APIC_LEN, v as u8, id as u8]);
            madt.extend_from_slice(&MADT_LAPIC_ENABLED.to_le_bytes());
        } else {
            madt.extend_from_slice(&[MADT_TYPE_LOCAL_X2APIC, MADT_LOCAL_X2APIC_LEN, 0, 0]);
            madt.extend_from_slice(&id.to_le_bytes());
            madt.extend_from_slice(&MADT_LAPIC_ENABLED.to_le_bytes());
            madt.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.extend_from_slice(&table(b"APIC", MADT_REVISION, &madt));
    align8(&mut out);

    let rsdt_at = at(&out);
    let rsdt: Vec<u8> = [fadt_at, madt_at].iter().flat_map(|&a| (a as u32).to_le_bytes()).collect();
    out.extend_from_slice(&table(b"RSDT", 1, &rsdt));
    align8(&mut out);

    let xsdt_at = at(&out);
    let xsdt: Vec<u8> = [fadt_at, madt_at].iter().flat_map(|&a| a.to_le_bytes()).collect();
    out.extend_from_slice(&table(b"XSDT", 1, &xsdt));

    // The RSDP in a page of its own after the tables, as libxl places it
    // for a guest that reads `rsdp_paddr`.
    out.resize(out.len().next_multiple_of(0x1000), 0);
    let rsdp_at = at(&out);
    let mut rsdp = [0u8; RSDP_LEN];
    rsdp[0..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(OEM_ID);
    rsdp[15] = RSDP_REVISION;
    rsdp[16..20].copy_from_slice(&(rsdt_at as u32).to_le_bytes());
    rsdp[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    rsdp[24..32].copy_from_slice(&xsdt_at.to_le_bytes());
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    out.extend_from_slice(&rsdp);
    out.resize(out.len().next_multiple_of(0x1000), 0);
    AcpiTables { bytes: out, rsdp: rsdp_at }
}

/// A table: the common header (with its checksum) and `body`.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(signature);
    t.extend_from_slice(&(len as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// The byte that makes `bytes` sum to zero (mod 256) once stored in a zero
/// checksum field.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)).wrapping_neg()
}

fn put(buf: &mut [u8], off: usize, v: &[u8]) {
    buf[off..off + v.len()].copy_from_slice(v);
}

fn align8(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(8), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &AcpiTables, gpa: u64) -> &[u8] {
        &t.bytes[(gpa - ACPI_TABLES_GPA) as usize..]
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
    }
    /// The table at `gpa`, whole, after checking its checksum.
    fn checked(t: &AcpiTables, gpa: u64, sig: &[u8; 4]) -> Vec<u8> {
        let b = at(t, gpa);
        assert_eq!(&b[..4], sig);
        let len = u32_at(b, 4) as usize;
        assert!(sums_to_zero(&b[..len]), "{} checksum", core::str::from_utf8(sig).unwrap());
        b[..len].to_vec()
    }

    #[test]
    fn rsdp_names_both_root_tables_and_every_checksum_holds() {
        let t = build(4);
        assert_eq!(t.rsdp % 0x1000, 0);
        assert_eq!(t.bytes.len() % 0x1000, 0);
        let r = at(&t, t.rsdp);
        assert_eq!(&r[..8], b"RSD PTR ");
        assert!(sums_to_zero(&r[..20]), "ACPI 1.0 checksum");
        assert!(sums_to_zero(&r[..RSDP_LEN]), "extended checksum");
        assert_eq!(r[15], 2);
        let xsdt = checked(&t, u64_at(r, 24), b"XSDT");
        let rsdt = checked(&t, u32_at(r, 16) as u64, b"RSDT");
        assert_eq!((xsdt.len() - HEADER_LEN) / 8, 2);
        for i in 0..2 {
            let (x, r32) = (u64_at(&xsdt, HEADER_LEN + 8 * i), u32_at(&rsdt, HEADER_LEN + 4 * i));
            assert_eq!(x, r32 as u64);
        }
        let fadt = checked(&t, u64_at(&xsdt, HEADER_LEN), b"FACP");
        assert_eq!((fadt.len(), fadt[8]), (FADT_LEN, FADT_REVISION));
        assert_ne!(u32_at(&fadt, FADT_FLAGS) & FADT_HW_REDUCED_ACPI, 0);
        let dsdt = u64_at(&fadt, FADT_X_DSDT);
        assert_eq!(dsdt, u32_at(&fadt, FADT_DSDT) as u64);
        assert_eq!(checked(&t, dsdt, b"DSDT").len(), HEADER_LEN);
        checked(&t, u64_at(&xsdt, HEADER_LEN + 8), b"APIC");
    }

    #[test]
    fn madt_has_one_enabled_lapic_per_vcpu_with_its_acpi_id() {
        for vcpus in [1u32, 2, 40] {
            let t = build(vcpus);
            let r = at(&t, t.rsdp);
            let xsdt = checked(&t, u64_at(r, 24), b"XSDT");
            let madt = checked(&t, u64_at(&xsdt, HEADER_LEN + 8), b"APIC");
            assert_eq!(u32_at(&madt, HEADER_LEN), LAPIC_BASE_GPA);
            assert_eq!(u32_at(&madt, HEADER_LEN + 4), 0, "no PCAT_COMPAT");
            let mut entries = &madt[HEADER_LEN + 8..];
            let mut seen = Vec::new();
            while !entries.is_empty() {
                let (kind, len) = (entries[0], entries[1] as usize);
                assert_eq!(kind, MADT_TYPE_LOCAL_APIC, "no I/O APIC or other entries");
                assert_eq!(u32_at(entries, 4), MADT_LAPIC_ENABLED);
                assert_eq!(entries[3] as u32, apic_id(entries[2] as u32));
                seen.push(entries[2] as u32);
                entries = &entries[len..];
            }
            assert_eq!(seen, (0..vcpus).collect::<Vec<_>>());
        }
    }

    #[test]
    fn tables_fit_their_pages() {
        let t = build(128);
        assert!(t.pages().count() <= 4);
        assert_eq!(t.pages().next(), Some(ACPI_TABLES_GPA));
        assert!(t.rsdp < ACPI_TABLES_GPA + t.bytes.len() as u64);
    }
}
