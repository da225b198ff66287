//! Reader (and, for tools and tests, writer) of "newc" cpio archives: the
//! boards receive every guest image packed in one archive, because the boot
//! protocol hands the hypervisor a single module.

use alloc::vec::Vec;

/// Why an archive could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// A header does not start with the newc magic `070701`/`070702`.
    BadMagic(usize),
    /// A header field is not hexadecimal.
    BadField(usize),
    /// A name or file body runs past the end of the archive.
    Truncated(usize),
}

/// One file in the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path as stored (no leading `./` stripping is done here).
    pub name: &'a str,
    /// `c_mode` (file type and permissions).
    pub mode: u32,
    /// File contents.
    pub data: &'a [u8],
}

const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn hex_field(hdr: &[u8], index: usize, at: usize) -> Result<u32, CpioError> {
    let start = 6 + 8 * index;
    let s = core::str::from_utf8(&hdr[start..start + 8]).map_err(|_| CpioError::BadField(at))?;
    u32::from_str_radix(s, 16).map_err(|_| CpioError::BadField(at))
}

/// Iterator over the entries of a newc archive (stops at `TRAILER!!!`).
pub struct Entries<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

/// Iterates over the entries of `archive`.
pub fn entries(archive: &[u8]) -> Entries<'_> {
    Entries { data: archive, pos: 0, done: false }
}

impl<'a> Entries<'a> {
    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, CpioError> {
        let at = self.pos;
        let hdr = self.data.get(at..at + HEADER_LEN).ok_or(CpioError::Truncated(at))?;
        if &hdr[..6] != b"070701" && &hdr[..6] != b"070702" {
            return Err(CpioError::BadMagic(at));
        }
        let mode = hex_field(hdr, 1, at)?;
        let filesize = hex_field(hdr, 6, at)? as usize;
        let namesize = hex_field(hdr, 11, at)? as usize;
        let name_start = at + HEADER_LEN;
        let name_bytes = self.data.get(name_start..name_start + namesize).ok_or(CpioError::Truncated(at))?;
        // namesize counts the terminating NUL.
        let name_bytes = name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes);
        let name = core::str::from_utf8(name_bytes).map_err(|_| CpioError::BadField(at))?;
        let data_start = align4(name_start + namesize);
        let data = self.data.get(data_start..data_start + filesize).ok_or(CpioError::Truncated(at))?;
        self.pos = align4(data_start + filesize);
        if name == TRAILER {
            return Ok(None);
        }
        Ok(Some(Entry { name, mode, data }))
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Finds the file called `name` (a leading `./` on either side is ignored).
pub fn find<'a>(archive: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let want = name.trim_start_matches("./");
    entries(archive).filter_map(Result::ok).find(|e| e.name.trim_start_matches("./") == want).map(|e| e.data)
}

/// `c_mode` of a directory (0040755).
pub const MODE_DIR: u32 = 0o040755;
/// `c_mode` of an executable regular file (0100755).
pub const MODE_EXECUTABLE: u32 = 0o100755;
/// `c_mode` of a plain regular file (0100644).
pub const MODE_FILE: u32 = 0o100644;

/// Builds a newc archive of regular files (mode 0100644), with trailer.
pub fn write_newc(files: &[(&str, &[u8])]) -> Vec<u8> {
    let with_modes: Vec<(&str, u32, &[u8])> = files.iter().map(|(n, d)| (*n, MODE_FILE, *d)).collect();
    write_newc_entries(&with_modes)
}

/// Builds a newc archive of `(name, c_mode, contents)` entries, with
/// trailer: what a Linux initramfs needs (directories before what they
/// hold, executables).
pub fn write_newc_entries(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let fields = [ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        out.extend_from_slice(b"070701");
        for f in fields {
            let mut hex = [0u8; 8];
            for (i, h) in hex.iter_mut().enumerate() {
                *h = b"0123456789ABCDEF"[((f >> (28 - 4 * i)) & 0xF) as usize];
            }
            out.extend_from_slice(&hex);
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(align4(out.len()), 0);
        out.extend_from_slice(data);
        out.resize(align4(out.len()), 0);
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        push(name, *mode, data, i as u32 + 1);
    }
    push(TRAILER, 0, &[], 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = write_newc(&[("guest64.elf", b"hello"), ("dir/g32", &[1, 2, 3, 4, 5, 6, 7])]);
        let all: Vec<_> = entries(&a).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "guest64.elf");
        assert_eq!(all[0].data, b"hello");
        assert_eq!(all[1].data.len(), 7);
        assert_eq!(find(&a, "./dir/g32"), Some(&[1u8, 2, 3, 4, 5, 6, 7][..]));
        assert_eq!(find(&a, "missing"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(entries(b"garbage").next(), Some(Err(CpioError::Truncated(0))));
        let mut a = write_newc(&[("x", b"1")]);
        a[0] = b'1';
        assert_eq!(entries(&a).next(), Some(Err(CpioError::BadMagic(0))));
        let a = write_newc(&[("x", b"12345678")]);
        assert!(matches!(entries(&a[..118]).next(), Some(Err(CpioError::Truncated(0)))));
    }

    #[test]
    fn modes_are_kept() {
        let a = write_newc_entries(&[("bin", MODE_DIR, &[]), ("bin/sh", MODE_EXECUTABLE, b"#!")]);
        let all: Vec<_> = entries(&a).collect::<Result<_, _>>().unwrap();
        assert_eq!((all[0].name, all[0].mode), ("bin", MODE_DIR));
        assert_eq!((all[1].name, all[1].mode, all[1].data), ("bin/sh", MODE_EXECUTABLE, &b"#!"[..]));
    }

    #[test]
    fn empty_archive() {
        assert_eq!(entries(&write_newc(&[])).count(), 0);
        assert_eq!(entries(&[]).count(), 0);
    }
}
