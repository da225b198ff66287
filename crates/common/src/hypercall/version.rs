//! `xen_version` and `console_io`: what the hypervisor is, and the
//! hypervisor console a guest writes to before it has a PV console.

use zerocopy::IntoBytes;

use super::Call;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::nr::{consoleio, xenfeat, xenver};
use xen_abi::public::XenFeatureInfo;

const COMPILE: [usize; 4] = xenver::COMPILE_INFO_FIELDS;

pub(super) fn xen_version(call: &mut Call<'_>, cmd: u64, arg: u64) -> XenResult<i64> {
    match cmd {
        xenver::VERSION => Ok(((xenver::LANTERN_MAJOR << xenver::VERSION_MAJOR_SHIFT) | xenver::LANTERN_MINOR) as i64),
        xenver::EXTRAVERSION => copy_strings(call, arg, &[(b"-lantern", xenver::EXTRAVERSION_LEN)]),
        xenver::CHANGESET => copy_strings(call, arg, &[(b"lantern", xenver::CHANGESET_LEN)]),
        xenver::CAPABILITIES => copy_strings(call, arg, &[(b"hvm-3.0", xenver::CAPABILITIES_LEN)]),
        xenver::COMMANDLINE => copy_strings(call, arg, &[(b"", xenver::COMMANDLINE_LEN)]),
        // struct xen_compile_info { char compiler[64], compile_by[16],
        //   compile_domain[32], compile_date[32]; }
        xenver::COMPILE_INFO => copy_strings(
            call,
            arg,
            &[(b"rustc", COMPILE[0]), (b"lantern", COMPILE[1]), (b"", COMPILE[2]), (b"", COMPILE[3])],
        ),
        // struct xen_platform_parameters { xen_ulong_t virt_start; }: no
        // hypervisor hole in an HVM guest's address space.
        xenver::PLATFORM_PARAMETERS => {
            let w = call.domain.abi().xen_ulong_size();
            call.copy_to_guest(arg, &[0u8; 8][..w]).map(|_| 0)
        }
        xenver::GUEST_HANDLE => call.copy_to_guest(arg, &[0u8; xenver::GUEST_HANDLE_LEN]).map(|_| 0),
        xenver::GET_FEATURES => {
            let info: XenFeatureInfo = call.read(arg)?;
            // Like Xen: only the submaps that exist; their bits are the
            // arch's (and guest type's) to say.
            if info.submap_idx >= xenfeat::NR_SUBMAPS {
                return Err(Errno::EINVAL);
            }
            let submap = call.caller()?.xen_features(info.submap_idx);
            // Like Xen, only the `submap` field goes back to the guest.
            let at = core::mem::offset_of!(XenFeatureInfo, submap) as u64;
            call.copy_to_guest(arg.wrapping_add(at), submap.as_bytes()).map(|_| 0)
        }
        xenver::PAGESIZE => Ok(crate::memory::PAGE_SIZE as i64),
        _ => Err(Errno::ENOSYS),
    }
}

/// Copies fixed-size, NUL-padded string fields (Xen clears each whole field,
/// so a guest never sees stale bytes past the string).
fn copy_strings(call: &mut Call<'_>, arg: u64, fields: &[(&[u8], usize)]) -> XenResult<i64> {
    let mut buf = [0u8; 1024];
    let mut at = 0;
    for (text, size) in fields {
        let n = text.len().min(size - 1);
        buf[at..at + n].copy_from_slice(&text[..n]);
        at += size;
    }
    call.copy_to_guest(arg, &buf[..at]).map(|_| 0)
}

/// Longest single console write accepted in one go (Xen chunks likewise).
const CONSOLE_CHUNK: usize = 256;

pub(super) fn console_io(call: &mut Call<'_>, cmd: u64, count: u64, buf: u64) -> XenResult<i64> {
    match cmd {
        consoleio::WRITE => {
            let count = usize::try_from(count).map_err(|_| Errno::EINVAL)?;
            if count > 64 * 1024 {
                return Err(Errno::EINVAL);
            }
            let mut chunk = [0u8; CONSOLE_CHUNK];
            let mut done = 0;
            while done < count {
                let n = (count - done).min(CONSOLE_CHUNK);
                call.copy_from_guest(buf + done as u64, &mut chunk[..n])?;
                call.domain.console.lock().write(&chunk[..n]);
                done += n;
            }
            Ok(0)
        }
        consoleio::READ => Ok(0),
        _ => Err(Errno::ENOSYS),
    }
}
