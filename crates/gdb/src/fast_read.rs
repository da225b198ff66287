//! gdb's memory reads (`m`) answered by the stub itself rather than by the
//! protocol engine: a 1 MiB `dump` is 128 of them, each 16 KiB of hex, and
//! the engine encodes byte by byte through run-length checks and a
//! per-byte connection write — the stub's main cost once the line is fast
//! (under TCG every instruction of the hypervisor is emulated). The data
//! comes from the same target method (`read_addrs`) the engine would call,
//! for the thread gdb selected with `Hg`; anything unusual (an error, a
//! thread the engine chose itself) is left to the engine.

use alloc::vec::Vec;

use gdbstub::common::Tid;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The thread an `Hg` packet selects for memory and register accesses:
/// `Some(Some(tid))` for a given thread, `Some(None)` for "any" (`0`),
/// `None` if the packet is not one the stub follows (`-1`, malformed).
pub fn parse_hg(body: &[u8]) -> Option<Option<Tid>> {
    let id = body.strip_prefix(b"Hg")?;
    // Multiprocess form `p<pid>.<tid>`; the pid is the engine's business.
    let tid = match id.strip_prefix(b"p") {
        Some(rest) => &rest[rest.iter().position(|&b| b == b'.')? + 1..],
        None => id,
    };
    match tid {
        b"0" => Some(None),
        _ => Some(Some(Tid::new(usize::from_str_radix(core::str::from_utf8(tid).ok()?, 16).ok()?)?)),
    }
}

/// `(address, length)` of an `m` packet.
pub fn parse_m(body: &[u8]) -> Option<(u64, usize)> {
    let args = core::str::from_utf8(body.strip_prefix(b"m")?).ok()?;
    let (addr, len) = args.split_once(',')?;
    Some((u64::from_str_radix(addr, 16).ok()?, usize::from_str_radix(len, 16).ok()?))
}

/// Appends the framed reply `$<hex of data>#<checksum>` to `out`.
pub fn encode_hex_reply(data: &[u8], out: &mut Vec<u8>) {
    let start = out.len() + 1;
    out.push(b'$');
    out.resize(start + 2 * data.len(), 0);
    let mut sum = 0u8;
    for (pair, &b) in out[start..].chunks_exact_mut(2).zip(data) {
        let (hi, lo) = (HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]);
        pair[0] = hi;
        pair[1] = lo;
        sum = sum.wrapping_add(hi).wrapping_add(lo);
    }
    out.extend_from_slice(&[b'#', HEX[(sum >> 4) as usize], HEX[(sum & 0xf) as usize]]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hg_in_both_forms_and_m() {
        assert_eq!(parse_hg(b"Hgp1.401"), Some(Tid::new(0x401)));
        assert_eq!(parse_hg(b"Hg801"), Some(Tid::new(0x801)));
        assert_eq!(parse_hg(b"Hg0"), Some(None));
        assert_eq!(parse_hg(b"Hgp1.0"), Some(None));
        assert_eq!(parse_hg(b"Hg-1"), None);
        assert_eq!(parse_hg(b"Hgzz"), None);
        assert_eq!(parse_m(b"m40003000,2002"), Some((0x4000_3000, 0x2002)));
        assert_eq!(parse_m(b"m40003000"), None);
        assert_eq!(parse_m(b"mzz,4"), None);
    }

    #[test]
    fn encodes_hex_with_the_packet_checksum() {
        let mut out = b"+".to_vec();
        encode_hex_reply(&[0x00, 0xab, 0xff], &mut out);
        let sum = b"00abff".iter().fold(0u8, |a, b| a.wrapping_add(*b));
        assert_eq!(out, alloc::format!("+$00abff#{sum:02x}").into_bytes());
        let mut empty = Vec::new();
        encode_hex_reply(&[], &mut empty);
        assert_eq!(empty, b"$#00");
    }
}
