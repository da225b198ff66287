//! Loads a guest ELF image (ELF32 or ELF64) into a domain's guest-physical
//! memory: every `PT_LOAD` segment at its physical address, bytes beyond
//! `p_filesz` up to `p_memsz` zeroed (some guests do not clear their own
//! .bss), and the 32-bit entry point Xen's `PHYS32_ENTRY` note names.

use xmas_elf::header::Class;
use xmas_elf::program::Type;
use xmas_elf::ElfFile;

use alloc::vec::Vec;

use crate::addr::Gpa;
use crate::domain::Domain;
use crate::guest_memory::{GuestMemory, PhysMem};
use xen_abi::nr::elfnote;

/// Largest segment accepted (a guest asking for more is malformed here).
const MAX_SEGMENT: u64 = 1 << 30;

/// Why an image could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not a parseable ELF file.
    BadElf(&'static str),
    /// A segment's file bytes lie outside the image.
    SegmentOutOfFile,
    /// A segment is larger than the loader accepts or wraps the address space.
    SegmentTooLarge,
    /// A segment does not fit in the domain's RAM.
    OutsideGuestMemory(u64),
}

/// What the loader found out about the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// `e_entry`.
    pub entry: u64,
    /// Entry from the Xen `PHYS32_ENTRY` note, if present.
    pub phys32_entry: Option<u64>,
    /// Lowest guest-physical address loaded.
    pub low: u64,
    /// One past the highest guest-physical address loaded (memsz included).
    pub high: u64,
    /// ELF class: true for ELF64 (an ELF32 file may still hold 64-bit code).
    pub elf64: bool,
    /// `e_machine`.
    pub machine: u16,
}

/// Finds the `PHYS32_ENTRY` note in a block of ELF notes.
pub fn find_phys32_entry(notes: &[u8]) -> Option<u64> {
    let mut pos = 0usize;
    let rd = |o: usize| -> Option<u32> { Some(u32::from_le_bytes(notes.get(o..o + 4)?.try_into().ok()?)) };
    while pos + 12 <= notes.len() {
        let namesz = rd(pos)? as usize;
        let descsz = rd(pos + 4)? as usize;
        let ty = rd(pos + 8)?;
        let name_at = pos + 12;
        let desc_at = name_at.checked_add(namesz.checked_add(3)? & !3)?;
        let next = desc_at.checked_add(descsz.checked_add(3)? & !3)?;
        let name = notes.get(name_at..name_at + namesz)?;
        if ty == elfnote::PHYS32_ENTRY && name.strip_suffix(&[0]).unwrap_or(name) == elfnote::OWNER.as_bytes() {
            let desc = notes.get(desc_at..desc_at + descsz)?;
            return match descsz {
                4 => Some(u32::from_le_bytes(desc.try_into().ok()?) as u64),
                8 => Some(u64::from_le_bytes(desc.try_into().ok()?)),
                _ => None,
            };
        }
        pos = next;
    }
    None
}

/// The parser indexes (and asserts the alignment of) the program header
/// table without checking it against the file: check first, so a malformed
/// image is an error, never a panic.
fn check_program_headers(elf: &ElfFile<'_>, len: usize) -> Result<(), LoadError> {
    let (min_entry, align) = if elf.header.pt1.class() == Class::SixtyFour { (56, 8) } else { (32, 4) };
    let off = elf.header.pt2.ph_offset();
    let count = elf.header.pt2.ph_count() as u64;
    let entry = elf.header.pt2.ph_entry_size() as u64;
    let end = count.checked_mul(entry).and_then(|n| n.checked_add(off));
    if count > 0
        && (entry < min_entry
            || !off.is_multiple_of(align)
            || !entry.is_multiple_of(align)
            || end.is_none_or(|e| e > len as u64))
    {
        return Err(LoadError::BadElf("program header table outside the file or misaligned"));
    }
    Ok(())
}

/// Loads `image` into `d`'s memory; see the module comment.
pub fn load_elf(d: &Domain, image: &[u8]) -> Result<LoadedImage, LoadError> {
    // The ELF parser reads headers in place and asserts their alignment; an
    // image inside an archive is only 4-byte aligned, so copy it if needed.
    let copy: Vec<u64>;
    let image = if (image.as_ptr() as usize).is_multiple_of(8) {
        image
    } else {
        let mut words = alloc::vec![0u64; image.len().div_ceil(8)];
        // SAFETY: `words` owns at least `image.len()` initialised bytes, any
        // byte pattern is a valid u64, and the two buffers are distinct.
        unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), words.as_mut_ptr() as *mut u8, image.len()) };
        copy = words;
        // SAFETY: viewing the first `image.len()` bytes of the u64 buffer as
        // bytes; it lives as long as `copy`, which outlives `image` here.
        unsafe { core::slice::from_raw_parts(copy.as_ptr() as *const u8, image.len()) }
    };
    let elf = ElfFile::new(image).map_err(LoadError::BadElf)?;
    check_program_headers(&elf, image.len())?;
    let mut out = LoadedImage {
        entry: elf.header.pt2.entry_point(),
        phys32_entry: None,
        low: u64::MAX,
        high: 0,
        elf64: elf.header.pt1.class() == Class::SixtyFour,
        // e_machine sits at offset 18 in both ELF classes.
        machine: u16::from_le_bytes([image[18], image[19]]),
    };
    for ph in elf.program_iter() {
        let (offset, filesz, memsz) = (ph.offset(), ph.file_size(), ph.mem_size());
        let file_end = offset.checked_add(filesz).ok_or(LoadError::SegmentOutOfFile)?;
        if file_end > image.len() as u64 {
            return Err(LoadError::SegmentOutOfFile);
        }
        let bytes = &image[offset as usize..file_end as usize];
        match ph.get_type() {
            Ok(Type::Note) if out.phys32_entry.is_none() => out.phys32_entry = find_phys32_entry(bytes),
            Ok(Type::Load) => {
                if memsz > MAX_SEGMENT || filesz > memsz {
                    return Err(LoadError::SegmentTooLarge);
                }
                let pa = ph.physical_addr();
                let end = pa.checked_add(memsz).ok_or(LoadError::SegmentTooLarge)?;
                PhysMem::new(d).write_bytes(Gpa(pa), bytes).map_err(|_| LoadError::OutsideGuestMemory(pa))?;
                // Zero the rest (.bss): some guests do not clear their own.
                let bss = pa + filesz;
                PhysMem::new(d)
                    .fill(Gpa(bss), (memsz - filesz) as usize, 0)
                    .map_err(|_| LoadError::OutsideGuestMemory(bss))?;
                if memsz > 0 {
                    out.low = out.low.min(pa);
                    out.high = out.high.max(end);
                }
            }
            _ => {}
        }
    }
    if out.low == u64::MAX {
        out.low = 0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], ty: u32, desc: &[u8]) -> alloc::vec::Vec<u8> {
        let mut v = alloc::vec::Vec::new();
        v.extend_from_slice(&(name.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(name);
        v.resize((v.len() + 3) & !3, 0);
        v.extend_from_slice(desc);
        v.resize((v.len() + 3) & !3, 0);
        v
    }

    #[test]
    fn phys32_entry_note_found_after_other_notes() {
        let mut n = note(b"GNU\0", 3, &[1, 2, 3, 4, 5]);
        n.extend(note(b"Xen\0", 6, b"xen-3.0\0"));
        n.extend(note(b"Xen\0", elfnote::PHYS32_ENTRY, &0x10_0040u64.to_le_bytes()));
        assert_eq!(find_phys32_entry(&n), Some(0x10_0040));
        assert_eq!(find_phys32_entry(&note(b"Xen\0", elfnote::PHYS32_ENTRY, &0x2000u32.to_le_bytes())), Some(0x2000));
        assert_eq!(find_phys32_entry(&note(b"Xen\0", 17, &[0; 8])), None);
        assert_eq!(find_phys32_entry(&[0xFF; 11]), None);
        // A bogus size must not panic.
        let mut bad = note(b"Xen\0", elfnote::PHYS32_ENTRY, &[0; 8]);
        bad[4] = 0xFF;
        bad[7] = 0xFF;
        assert_eq!(find_phys32_entry(&bad), None);
    }

    /// A minimal ELF64 header (an executable for no particular machine) with
    /// one program header entry claimed at `phoff`, followed by `extra` zero
    /// bytes.
    fn elf64(phoff: u64, extra: usize) -> alloc::vec::Vec<u64> {
        let mut b = alloc::vec![0u8; 64 + extra];
        b[..8].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[32..40].copy_from_slice(&phoff.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[58..60].copy_from_slice(&64u16.to_le_bytes());
        // Return 8-aligned storage, as the parser wants.
        let mut w = alloc::vec![0u64; b.len().div_ceil(8)];
        for (i, x) in b.iter().enumerate() {
            w[i / 8] |= (*x as u64) << (8 * (i % 8));
        }
        w
    }

    fn bytes(w: &[u64], len: usize) -> &[u8] {
        // SAFETY: test helper viewing a u64 buffer as its first `len` bytes.
        unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u8, len) }
    }

    #[test]
    fn program_header_table_is_checked() {
        let ok = elf64(64, 56);
        let elf = ElfFile::new(bytes(&ok, 120)).unwrap();
        assert_eq!(check_program_headers(&elf, 120), Ok(()));
        let outside = elf64(0x1000, 56);
        let elf = ElfFile::new(bytes(&outside, 120)).unwrap();
        assert!(check_program_headers(&elf, 120).is_err());
        let misaligned = elf64(60, 60);
        let elf = ElfFile::new(bytes(&misaligned, 124)).unwrap();
        assert!(check_program_headers(&elf, 124).is_err());
    }

    #[test]
    fn rejects_non_elf() {
        assert!(ElfFile::new(b"not an elf at all, clearly").is_err());
    }
}
