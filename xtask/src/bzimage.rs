//! Turns an x86 `bzImage` (Debian's `/boot/vmlinuz-*`) into the ELF vmlinux
//! inside it, which the hypervisor's ELF loader boots through its PVH note:
//! the setup header (the x86 boot protocol, version 2.08 or later) says
//! where the compressed payload lies, and the payload is decompressed
//! (gzip, the lz4 legacy frame, or xz with the x86 BCJ filter). A file that
//! is already an ELF passes through unchanged. [`kernel_elf`] caches the
//! extraction under `target/bzimage/`.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::paths::target_dir;

/// The first bytes of an ELF file.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// Offset of `setup_sects` (count of 512-byte setup sectors after the boot
/// sector) in the setup header.
const SETUP_SECTS_AT: usize = 0x1f1;
/// What a `setup_sects` of 0 means (old kernels).
const SETUP_SECTS_IF_ZERO: usize = 4;
/// Size of one setup sector.
const SECTOR: usize = 512;
/// Offset of the setup header's signature.
const HEADER_MAGIC_AT: usize = 0x202;
/// The setup header's signature.
const HEADER_MAGIC: &[u8; 4] = b"HdrS";
/// Offset of the boot protocol version (u16, major in the high byte).
const PROTOCOL_AT: usize = 0x206;
/// The first protocol version with `payload_offset` and `payload_length`.
const MIN_PROTOCOL: u16 = 0x0208;
/// Offset of `payload_offset` (u32, from the start of the protected-mode
/// code).
const PAYLOAD_OFFSET_AT: usize = 0x248;
/// Offset of `payload_length` (u32).
const PAYLOAD_LENGTH_AT: usize = 0x24c;
/// The kernel's build appends the uncompressed size (u32 LE) after every
/// compressed payload.
const SIZE_TRAILER: usize = 4;

/// gzip's magic.
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// xz's stream header magic.
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
/// The lz4 legacy frame's magic (LE), as `lz4 -l` writes it.
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// Each lz4 legacy block decompresses to at most this many bytes.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// zstd's frame magic (LE): named in the error, not decoded.
const ZSTD_MAGIC: u32 = 0xfd2f_b528;

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// The first bytes of `data`, in hex, for an error.
fn leading_bytes(data: &[u8]) -> String {
    let shown: Vec<String> = data.iter().take(8).map(|b| format!("{b:02x}")).collect();
    if shown.is_empty() {
        "nothing: the file is empty".into()
    } else {
        shown.join(" ")
    }
}

/// Whether `data` carries an x86 setup header.
pub fn is_bzimage(data: &[u8]) -> bool {
    data.get(HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4) == Some(HEADER_MAGIC)
}

/// The compressed payload of the bzImage `data` (with its size trailer).
pub fn payload(data: &[u8]) -> Result<&[u8], String> {
    let protocol = u16_at(data, PROTOCOL_AT).ok_or("the setup header is cut short")?;
    if protocol < MIN_PROTOCOL {
        return Err(format!(
            "boot protocol {}.{:02}: the payload is found from protocol 2.08 on",
            protocol >> 8,
            protocol & 0xff
        ));
    }
    let sects = match *data.get(SETUP_SECTS_AT).ok_or("the setup header is cut short")? as usize {
        0 => SETUP_SECTS_IF_ZERO,
        n => n,
    };
    let protected_mode = (sects + 1) * SECTOR;
    let (Some(offset), Some(length)) = (u32_at(data, PAYLOAD_OFFSET_AT), u32_at(data, PAYLOAD_LENGTH_AT)) else {
        return Err("the setup header is cut short".into());
    };
    let start = protected_mode + offset as usize;
    let end = start + length as usize;
    data.get(start..end).ok_or_else(|| {
        format!("the payload ({length} bytes at {start:#x}) runs past the end of the file ({} bytes)", data.len())
    })
}

/// Decompresses the lz4 legacy frame `stream` (after its magic): blocks of
/// a u32 LE compressed length and the block. It ends where fewer than 4
/// bytes remain, or at a length no block can have (the size trailer).
fn unlz4_legacy(stream: &[u8]) -> Result<Vec<u8>, String> {
    let bound = lz4_flex::block::get_maximum_output_size(LZ4_LEGACY_BLOCK);
    let mut out = Vec::new();
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    let mut rest = stream;
    while rest.len() >= 4 {
        let len = u32_at(rest, 0).unwrap_or(0);
        if len == LZ4_LEGACY_MAGIC {
            // A concatenated frame: its blocks follow.
            rest = &rest[4..];
            continue;
        }
        if len as usize > bound {
            break;
        }
        let data = rest[4..].get(..len as usize).ok_or_else(|| {
            format!("lz4 block of {len} bytes, only {} left: the payload is truncated", rest.len() - 4)
        })?;
        let n = lz4_flex::block::decompress_into(data, &mut block).map_err(|e| format!("lz4 block: {e}"))?;
        out.extend_from_slice(&block[..n]);
        rest = &rest[4 + len as usize..];
    }
    Ok(out)
}

/// Decompresses a bzImage payload by its magic.
fn decompress(payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if payload.starts_with(GZIP_MAGIC) {
        flate2::read::GzDecoder::new(payload).read_to_end(&mut out).map_err(|e| format!("gzip payload: {e}"))?;
    } else if payload.starts_with(XZ_MAGIC) {
        // One stream: the size trailer follows it.
        lzma_rust2::XzReader::new(payload, false).read_to_end(&mut out).map_err(|e| format!("xz payload: {e}"))?;
    } else if u32_at(payload, 0) == Some(LZ4_LEGACY_MAGIC) {
        out = unlz4_legacy(&payload[4..])?;
    } else if u32_at(payload, 0) == Some(ZSTD_MAGIC) {
        return Err("zstd payload: not supported (gzip, lz4 and xz are)".into());
    } else {
        return Err(format!(
            "payload compressed with an unsupported codec (starts with {}; gzip, lz4 and xz are supported)",
            leading_bytes(payload)
        ));
    }
    Ok(out)
}

/// The ELF vmlinux of `data` (the file `name`): `data` itself if it is an
/// ELF, the decompressed payload if it is a bzImage, else an error naming
/// the file and what it starts with.
pub fn vmlinux<'a>(data: &'a [u8], name: &Path) -> Result<Cow<'a, [u8]>, String> {
    let named = |e: String| format!("{}: {e}", name.display());
    if data.starts_with(ELF_MAGIC) {
        return Ok(Cow::Borrowed(data));
    }
    if !is_bzimage(data) {
        return Err(named(format!(
            "neither an ELF file nor an x86 bzImage (no \"HdrS\" at {HEADER_MAGIC_AT:#x}; starts with {})",
            leading_bytes(data)
        )));
    }
    let payload = payload(data).map_err(named)?;
    let elf = decompress(payload).map_err(named)?;
    let trailer = payload.len().checked_sub(SIZE_TRAILER).and_then(|at| u32_at(payload, at));
    if trailer != Some(elf.len() as u32) {
        return Err(named(format!(
            "the payload decompressed to {} bytes, but its size trailer says {}: truncated or corrupt",
            elf.len(),
            trailer.map_or("nothing".into(), |t| t.to_string())
        )));
    }
    if !elf.starts_with(ELF_MAGIC) {
        return Err(named(format!("the decompressed payload is not an ELF (starts with {})", leading_bytes(&elf))));
    }
    Ok(Cow::Owned(elf))
}

/// The cache file for the extraction of `path`: named after the file and a
/// hash of its absolute path, size and modification time, so a changed or
/// replaced kernel is extracted anew.
fn cache_path(path: &Path) -> Result<PathBuf, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).hash(&mut h);
    meta.len().hash(&mut h);
    meta.modified().ok().hash(&mut h);
    let stem = path.file_name().and_then(|n| n.to_str()).unwrap_or("kernel");
    Ok(target_dir().join("bzimage").join(format!("{stem}-{:016x}.elf", h.finish())))
}

/// The ELF file to boot for the kernel at `path`: `path` itself if it is an
/// ELF, else its extracted vmlinux (cached under `target/bzimage/`; a
/// repeated run reads the cache).
pub fn kernel_elf(path: &Path) -> Result<PathBuf, String> {
    let cached = cache_path(path)?;
    if cached.is_file() {
        return Ok(cached);
    }
    let data = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let Cow::Owned(elf) = vmlinux(&data, path)? else {
        return Ok(path.to_path_buf());
    };
    let dir = cached.parent().ok_or("no cache directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // Written aside and renamed: an interrupted run leaves no half file
    // that a later run would take for the cache.
    let partial = cached.with_extension("partial");
    std::fs::write(&partial, &elf).map_err(|e| format!("writing {}: {e}", partial.display()))?;
    std::fs::rename(&partial, &cached).map_err(|e| format!("renaming {}: {e}", partial.display()))?;
    eprintln!(
        "xtask: {} is a bzImage: booting its vmlinux ({} bytes, {})",
        path.display(),
        elf.len(),
        cached.display()
    );
    Ok(cached)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A fake vmlinux: the ELF magic and `len` bytes that compress but not
    /// to nothing.
    fn fake_elf(len: usize) -> Vec<u8> {
        let mut v = ELF_MAGIC.to_vec();
        let mut x: u32 = 0x1234_5678;
        v.extend((0..len).map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Mostly runs, some noise.
            if i % 64 < 8 {
                x as u8
            } else {
                (i / 4096) as u8
            }
        }));
        v
    }

    /// `stream` with the kernel's size trailer for `elf`.
    fn with_trailer(mut stream: Vec<u8>, elf: &[u8]) -> Vec<u8> {
        stream.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        stream
    }

    /// A bzImage of boot protocol `protocol` whose payload is `payload`:
    /// `setup_sects` sectors of setup after the boot sector, then 0x200
    /// bytes of protected-mode code before the payload.
    fn bzimage(payload: &[u8], setup_sects: u8, protocol: u16) -> Vec<u8> {
        let sects = if setup_sects == 0 { SETUP_SECTS_IF_ZERO } else { setup_sects as usize };
        let pm = (sects + 1) * SECTOR;
        let offset = 0x200usize;
        let mut img = vec![0u8; pm + offset];
        img[0..2].copy_from_slice(b"MZ");
        img[SETUP_SECTS_AT] = setup_sects;
        img[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4].copy_from_slice(HEADER_MAGIC);
        img[PROTOCOL_AT..PROTOCOL_AT + 2].copy_from_slice(&protocol.to_le_bytes());
        img[PAYLOAD_OFFSET_AT..PAYLOAD_OFFSET_AT + 4].copy_from_slice(&(offset as u32).to_le_bytes());
        img[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(payload);
        // Whatever follows the payload in a real image (the rest of the
        // decompressor) must not be read as part of it.
        img.extend_from_slice(&[0xcc; 100]);
        img
    }

    fn gzip(elf: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(elf).unwrap();
        e.finish().unwrap()
    }

    fn xz_x86(elf: &[u8]) -> Vec<u8> {
        let mut opts = lzma_rust2::XzOptions::with_preset(6);
        opts.set_check_sum_type(lzma_rust2::CheckType::Crc32);
        opts.prepend_pre_filter(lzma_rust2::filter::FilterType::BcjX86, 0);
        let mut w = lzma_rust2::XzWriter::new(Vec::new(), opts).unwrap();
        w.write_all(elf).unwrap();
        w.finish().unwrap()
    }

    /// The lz4 legacy frame written by hand around lz4_flex's blocks.
    fn lz4_legacy(elf: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in elf.chunks(LZ4_LEGACY_BLOCK) {
            let block = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(block.len() as u32).to_le_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    fn name() -> &'static Path {
        Path::new("vmlinuz-test")
    }

    #[test]
    fn extracts_gzip_xz_and_lz4_payloads() {
        let small = fake_elf(200 << 10);
        // Two lz4 blocks, the second short.
        let big = fake_elf(LZ4_LEGACY_BLOCK + (1 << 20));
        let cases: [(&str, &[u8], Vec<u8>); 3] =
            [("gzip", &small, gzip(&small)), ("xz", &small, xz_x86(&small)), ("lz4", &big, lz4_legacy(&big))];
        for (codec, elf, stream) in cases {
            for setup_sects in [0, 1, 30] {
                let img = bzimage(&with_trailer(stream.clone(), elf), setup_sects, 0x020f);
                let got = vmlinux(&img, name()).unwrap_or_else(|e| panic!("{codec}: {e}"));
                assert!(matches!(got, Cow::Owned(_)), "{codec}");
                assert!(got.as_ref() == elf, "{codec}, setup_sects {setup_sects}: a different vmlinux");
            }
        }
    }

    #[test]
    fn an_elf_passes_through_unchanged() {
        let elf = fake_elf(100);
        assert!(matches!(vmlinux(&elf, name()), Ok(Cow::Borrowed(b)) if b == elf.as_slice()));
    }

    #[test]
    fn anything_else_is_an_error_naming_the_file_and_its_magic() {
        let e = vmlinux(b"PK\x03\x04zipzip", name()).unwrap_err();
        assert!(e.starts_with("vmlinuz-test: ") && e.contains("50 4b 03 04"), "{e}");
        let e = vmlinux(b"", name()).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        // A setup header whose payload is no codec we know.
        let img = bzimage(b"BZh91AY&SY....", 1, 0x020f);
        let e = vmlinux(&img, name()).unwrap_err();
        assert!(e.contains("unsupported codec") && e.contains("42 5a 68"), "{e}");
        let zstd = with_trailer(ZSTD_MAGIC.to_le_bytes().to_vec(), b"");
        assert!(vmlinux(&bzimage(&zstd, 1, 0x020f), name()).unwrap_err().contains("zstd"));
    }

    #[test]
    fn a_protocol_before_2_08_is_refused() {
        let elf = fake_elf(1000);
        let payload = with_trailer(gzip(&elf), &elf);
        let e = vmlinux(&bzimage(&payload, 1, 0x0207), name()).unwrap_err();
        assert!(e.contains("protocol 2.07"), "{e}");
        assert!(vmlinux(&bzimage(&payload, 1, 0x0208), name()).is_ok());
    }

    #[test]
    fn a_truncated_payload_is_an_error() {
        let elf = fake_elf(300 << 10);
        for (codec, stream) in [("gzip", gzip(&elf)), ("xz", xz_x86(&elf)), ("lz4", lz4_legacy(&elf))] {
            let payload = with_trailer(stream, &elf);
            // The file ends inside the payload.
            let mut img = bzimage(&payload, 1, 0x020f);
            img.truncate(img.len() - 100 - payload.len() / 2);
            let e = vmlinux(&img, name()).unwrap_err();
            assert!(e.contains("runs past the end"), "{codec}: {e}");
            // The header names a payload cut short inside the file.
            let cut = &payload[..payload.len() / 2];
            let e = vmlinux(&bzimage(cut, 1, 0x020f), name()).unwrap_err();
            assert!(e.starts_with("vmlinuz-test: "), "{codec}: {e}");
        }
        // A whole stream with the wrong trailer: something is missing.
        let wrong = with_trailer(gzip(&elf), &elf[1..]);
        assert!(vmlinux(&bzimage(&wrong, 1, 0x020f), name()).unwrap_err().contains("size trailer"));
    }

    #[test]
    fn the_extraction_is_cached_per_file_version_and_an_elf_is_used_in_place() {
        let dir = std::env::temp_dir().join(format!("lantern-bzimage-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("vmlinuz-cache");
        let elf = fake_elf(10 << 10);
        std::fs::write(&src, bzimage(&with_trailer(gzip(&elf), &elf), 1, 0x020f)).unwrap();
        let first = kernel_elf(&src).unwrap();
        assert!(first.starts_with(target_dir().join("bzimage")), "{}", first.display());
        assert_eq!(std::fs::read(&first).unwrap(), elf);
        // A second run takes the cache as it is, without extracting again.
        std::fs::write(&first, b"\x7fELF cached").unwrap();
        assert_eq!(kernel_elf(&src).unwrap(), first);
        assert_eq!(std::fs::read(&first).unwrap(), b"\x7fELF cached");
        // Another kernel at the same path is another cache entry.
        let elf2 = fake_elf(20 << 10);
        std::fs::write(&src, bzimage(&with_trailer(xz_x86(&elf2), &elf2), 1, 0x020f)).unwrap();
        let second = kernel_elf(&src).unwrap();
        assert_ne!(second, first);
        assert_eq!(std::fs::read(&second).unwrap(), elf2);
        // An ELF is booted from where it is.
        let plain = dir.join("vmlinux");
        std::fs::write(&plain, &elf).unwrap();
        assert_eq!(kernel_elf(&plain).unwrap(), plain);
        for p in [first, second] {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_payload_that_is_no_elf_is_an_error() {
        let text = b"not an ELF at all, just text".repeat(10);
        let payload = with_trailer(gzip(&text), &text);
        let e = vmlinux(&bzimage(&payload, 1, 0x020f), name()).unwrap_err();
        assert!(e.contains("not an ELF"), "{e}");
    }
}
