//! Grant tables between two cooperating domains: the granter (command-line
//! word `grant-to=D`, D the peer's domid) offers pages through its grant
//! table; the mapper (`grant-from=D`) maps them, reads and answers, and
//! checks Xen's refusals. No event channel: each side polls the other's
//! progress in the shared page, yielding, for at most [`PEER_WAIT_NS`].
//!
//! The convention both sides share (refs into the granter's table):
//! * [`REF_RW`]: a page granted writable; the mapper writes its reply at
//!   [`REPLY_OFFSET`] and waits for the granter's acknowledgement at
//!   [`ACK_OFFSET`] before unmapping, so the granter sees the entry's
//!   `GTF_reading | GTF_writing` while it is mapped;
//! * [`REF_RO`]: a page granted read-only (`GTF_readonly`);
//! * [`REF_REVOKED`]: an entry granted and revoked before the mapper looks;
//! * [`REF_OTHER`]: an entry granted to a domain that is not the mapper;
//! * [`FORGED_REF`]: a reference beyond any table.
//!
//! A guest with neither word (a board with one domain) prints a visible
//! `REPORT grants=not_run` line instead.

use core::sync::atomic::{fence, AtomicU16, Ordering};

use xen_abi::nr::domid::SELF as DOMID_SELF;
use xen_abi::nr::gnttab_status as st;
use xen_abi::nr::{gntcopy, gntmap, gnttab, gnttabop, gtf, hypercall, mapspace, memop};
use xen_abi::public::{
    GnttabCopy, GnttabCopyPtr, GnttabCopyPtrUlong32, GnttabCopyUlong32, GnttabMapGrantRef, GnttabSetupTable,
    GnttabSetupTableHandle32, GnttabUnmapGrantRef,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::context::{expect_ok, CheckResult, Ctx};
use crate::hypercall::{self as hc, rc_name};
use crate::identity::Page;
use crate::time_area::read_time;
use crate::{Guest, PAGE_SIZE, VCPUS};

/// The writable grant.
pub const REF_RW: u32 = 8;
/// The read-only grant.
pub const REF_RO: u32 = 9;
/// The revoked grant.
pub const REF_REVOKED: u32 = 10;
/// The grant to a third domain.
pub const REF_OTHER: u32 = 11;
/// A reference no table has (Xen's tables hold at most 64 frames).
pub const FORGED_REF: u32 = 0x00FF_FFFF;
/// Where in the writable page the mapper's reply goes.
pub const REPLY_OFFSET: u64 = 2048;
/// Where in the writable page the granter acknowledges the reply.
pub const ACK_OFFSET: u64 = 2056;
/// The reply's first word.
const REPLY_MAGIC: u32 = 0x4752_4e54;
/// The acknowledgement word.
const ACK_MAGIC: u32 = 0x4143_4b21;
/// How long (Xen system time) one side waits for the other: the peer may
/// still be running its earlier checks (tens of vCPUs under TCG).
const PEER_WAIT_NS: u64 = 90_000_000_000;
/// Yields to wait where vCPU 0 has no vcpu_info to read the time from.
const PEER_WAIT_YIELDS: u32 = 1_000_000;

/// The pages this module uses (each side a subset), in `.bss`.
#[repr(C)]
struct GrantPages {
    /// Hypercall arguments (read back through guest memory, since the
    /// hypervisor writes the statuses).
    args: Page,
    /// Granter: replaced by grant-table frame 0.
    table: Page,
    /// Granter: the page granted writable.
    rw: Page,
    /// Granter: the page granted read-only.
    ro: Page,
    /// Mapper: where the writable grant is mapped (a hole once unmapped).
    map_rw: Page,
    /// Mapper: where the read-only grant is mapped.
    map_ro: Page,
    /// Mapper: the destination of the copy.
    copy: Page,
}

static PAGES: GrantPages = GrantPages {
    args: Page::new(),
    table: Page::new(),
    rw: Page::new(),
    ro: Page::new(),
    map_rw: Page::new(),
    map_ro: Page::new(),
    copy: Page::new(),
};

/// The byte at `i` of the writable page's pattern.
fn rw_byte(i: u64) -> u8 {
    (i as u8) ^ 0xA5 ^ ((i >> 8) as u8)
}

/// The byte at `i` of the read-only page's pattern.
fn ro_byte(i: u64) -> u8 {
    (i as u8) ^ 0x3C ^ ((i >> 8) as u8).wrapping_mul(3)
}

/// The value of `domid=` in word `key=` of the command line.
fn peer_word(g: &dyn Guest, key: &str) -> Option<u16> {
    g.cmdline().split_ascii_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// Runs this guest's side, if its command line gives it one.
pub(crate) fn checks(cx: &mut Ctx) {
    if let Some(peer) = peer_word(cx.g, "grant-to") {
        granter(cx, peer);
    } else if let Some(peer) = peer_word(cx.g, "grant-from") {
        mapper(cx, peer);
    } else {
        cx.say(format_args!("REPORT grants=not_run reason=no_peer_domain"));
    }
}

/// Waits, yielding, until `cond` holds or [`PEER_WAIT_NS`] of Xen system
/// time (vCPU 0's vcpu_info) have passed.
fn wait_peer(cx: &Ctx, mut cond: impl FnMut() -> bool) -> bool {
    let vcpu_info = VCPUS.vcpu_info_gpa[0].load(Ordering::Acquire);
    let time_gpa = (vcpu_info != 0).then(|| vcpu_info + cx.layout.vcpu_info_time_offset as u64);
    let now = || time_gpa.and_then(|gpa| read_time(cx.g, gpa)).map(|t| t.system_time);
    let start = now();
    let mut yields = 0u32;
    loop {
        if cond() {
            return true;
        }
        let expired = match (start, now()) {
            (Some(s), Some(n)) => n.saturating_sub(s) > PEER_WAIT_NS,
            _ => yields >= PEER_WAIT_YIELDS,
        };
        if expired {
            return cond();
        }
        hc::sched_yield(cx.g);
        yields = yields.saturating_add(1);
    }
}

/// `grant_table_op(cmd, arg, 1)` with `arg` placed in the argument page;
/// returns the hypercall's result and the argument as the hypervisor left
/// it.
pub(crate) fn gnttab_op<T: IntoBytes + FromBytes + zerocopy::Immutable>(g: &dyn Guest, cmd: u64, arg: &T) -> (i64, T) {
    let gpa = PAGES.args.gpa();
    g.write(gpa, arg.as_bytes());
    let rc = g.hypercall(hypercall::GRANT_TABLE_OP, [cmd, gpa, 1, 0, 0]);
    let mut out = T::new_zeroed();
    g.read(gpa, out.as_mut_bytes());
    (rc, out)
}

/// `GNTTABOP_map_grant_ref` of `gref` of `dom` at `gpa`: the status and the
/// handle.
fn map(g: &dyn Guest, gpa: u64, flags: u32, gref: u32, dom: u16) -> (i16, u32) {
    let arg = GnttabMapGrantRef { host_addr: gpa, flags, r#ref: gref, dom, ..Default::default() };
    let (rc, out) = gnttab_op(g, gnttabop::MAP_GRANT_REF, &arg);
    if rc != 0 {
        return (i16::MIN, 0);
    }
    (out.status, out.handle)
}

/// `GNTTABOP_unmap_grant_ref` of `handle` at `gpa`: the status.
fn unmap(g: &dyn Guest, gpa: u64, handle: u32) -> i16 {
    let arg = GnttabUnmapGrantRef { host_addr: gpa, handle, ..Default::default() };
    let (rc, out) = gnttab_op(g, gnttabop::UNMAP_GRANT_REF, &arg);
    if rc != 0 {
        return i16::MIN;
    }
    out.status
}

/// Expects the `GNTST_*` status `want`.
fn expect_status(got: i16, want: i16, what: &str) -> CheckResult {
    ensure!(got == want, "{what}: status {got}, expected {want}");
    Ok(())
}

/// The fingerprint of `len` bytes at `gpa`: a position-weighted sum, so a
/// shifted or partial copy does not match.
fn fingerprint(g: &dyn Guest, gpa: u64, len: u64) -> u32 {
    let mut buf = [0u8; 256];
    let mut sum = 0u32;
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        g.read(gpa + off, &mut buf[..n]);
        for (i, b) in buf[..n].iter().enumerate() {
            sum = sum.wrapping_mul(31).wrapping_add(*b as u32 ^ (off as u32 + i as u32));
        }
        off += n as u64;
    }
    sum
}

/// The fingerprint of `len` bytes of a pattern.
fn pattern_fingerprint(pattern: fn(u64) -> u8, len: u64) -> u32 {
    let mut sum = 0u32;
    for i in 0..len {
        sum = sum.wrapping_mul(31).wrapping_add(pattern(i) as u32 ^ i as u32);
    }
    sum
}

/// Fills `len` bytes at `gpa` with `pattern`.
fn fill(g: &dyn Guest, gpa: u64, len: u64, pattern: fn(u64) -> u8) {
    let mut buf = [0u8; 256];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(off + i as u64);
        }
        g.write(gpa + off, &buf[..n]);
        off += n as u64;
    }
}

/// A `u32` of guest memory.
fn read_u32(g: &dyn Guest, gpa: u64) -> u32 {
    let mut b = [0u8; 4];
    g.read(gpa, &mut b);
    u32::from_le_bytes(b)
}

/// Stores a `u32` of guest memory with one 4-byte store (so a discarded
/// write through a read-only mapping is one instruction to step over).
fn store_u32(gpa: u64, v: u32) {
    // SAFETY: `gpa` is one of this module's pages (identity-mapped, never a
    // Rust object's contents) or a grant mapped at one.
    unsafe { core::ptr::write_volatile(gpa as usize as *mut u32, v) };
}

/// The flags word of entry `gref` of the table at `table` (the granter's
/// frame 0), shared with the hypervisor.
fn flags_of(table: u64, gref: u32) -> &'static AtomicU16 {
    let at = table + gref as u64 * gnttab::ENTRY_V1_SIZE as u64;
    // SAFETY: the entry lies in grant-table frame 0, mapped at `table` for
    // the rest of the run (the table is never torn down while the domain
    // lives); its flags are a naturally aligned u16 the hypervisor updates
    // with atomic operations too.
    unsafe { &*(at as usize as *const AtomicU16) }
}

/// Writes entry `gref` granting `frame` to `domid` with `flags`: domid and
/// frame first, then (after a fence) the flags, so the entry is never valid
/// with stale contents.
fn write_entry(g: &dyn Guest, table: u64, gref: u32, flags: u16, domid: u16, frame: u32) {
    let at = table + gref as u64 * gnttab::ENTRY_V1_SIZE as u64;
    g.write(at + 2, &domid.to_le_bytes());
    g.write(at + 4, &frame.to_le_bytes());
    fence(Ordering::SeqCst);
    flags_of(table, gref).store(flags, Ordering::SeqCst);
}

/// Revokes entry `gref` as a frontend ends foreign access: only if the
/// hypervisor has no pin on it (`GTF_reading | GTF_writing` clear), by one
/// compare-exchange of the flags to `GTF_invalid`.
fn revoke(table: u64, gref: u32) -> Result<(), u16> {
    let f = flags_of(table, gref);
    let cur = f.load(Ordering::SeqCst);
    if cur & (gtf::READING | gtf::WRITING) != 0 {
        return Err(cur);
    }
    f.compare_exchange(cur, gtf::INVALID, Ordering::SeqCst, Ordering::SeqCst).map(|_| ())
}

/// The granter's side.
fn granter(cx: &mut Ctx, peer: u16) {
    let g = cx.g;
    let table = PAGES.table.gpa();
    let mut set_up = false;
    cx.run("grant_setup_table", |cx| {
        let arg = cx.layout.add_to_physmap(mapspace::GRANT_TABLE, 0, table / PAGE_SIZE);
        let rc = g.hypercall(hypercall::MEMORY_OP, [memop::ADD_TO_PHYSMAP, g.gpa_of(arg.as_bytes().as_ptr()), 0, 0, 0]);
        ensure!(rc == 0, "add_to_physmap(grant_table, 0) rc={rc} ({})", rc_name(rc));
        let frames = PAGES.args.gpa() + 512;
        let gfn = if cx.layout.xen_ulong_size == 8 {
            let arg = GnttabSetupTable { dom: DOMID_SELF, nr_frames: 1, frame_list: frames, ..Default::default() };
            let (rc, out) = gnttab_op(g, gnttabop::SETUP_TABLE, &arg);
            ensure!(rc == 0 && out.status == st::OKAY, "setup_table rc={rc} status={}", out.status);
            let mut b = [0u8; 8];
            g.read(frames, &mut b);
            u64::from_le_bytes(b)
        } else {
            let arg = GnttabSetupTableHandle32 {
                dom: DOMID_SELF,
                nr_frames: 1,
                frame_list: frames as u32,
                ..Default::default()
            };
            let (rc, out) = gnttab_op(g, gnttabop::SETUP_TABLE, &arg);
            ensure!(rc == 0 && out.status == st::OKAY, "setup_table rc={rc} status={}", out.status);
            read_u32(g, frames) as u64
        };
        ensure!(
            gfn == table / PAGE_SIZE,
            "setup_table says frame 0 is at gfn {gfn:#x}, mapped at {:#x}",
            table / PAGE_SIZE
        );
        // A fresh table is all GTF_invalid.
        ensure!(fingerprint(g, table, PAGE_SIZE) == pattern_fingerprint(|_| 0, PAGE_SIZE), "fresh table not zeroed");
        set_up = true;
        Ok(())
    });
    if !set_up {
        cx.fail_all(
            &[
                "grant_offer",
                "grant_peer_reply",
                "grant_flags_while_mapped",
                "grant_flags_clear_after_unmap",
                "grant_revoke",
            ],
            format_args!("no grant table"),
        );
        return;
    }
    let (rw, ro) = (PAGES.rw.gpa(), PAGES.ro.gpa());
    fill(g, rw, PAGE_SIZE, rw_byte);
    fill(g, ro, PAGE_SIZE, ro_byte);
    // The reply area starts clear (the pattern does not look like a reply).
    g.write(rw + REPLY_OFFSET, &[0; 16]);
    write_entry(g, table, REF_RO, gtf::PERMIT_ACCESS | gtf::READONLY, peer, (ro / PAGE_SIZE) as u32);
    write_entry(g, table, REF_REVOKED, gtf::PERMIT_ACCESS, peer, (rw / PAGE_SIZE) as u32);
    let revoked = revoke(table, REF_REVOKED);
    write_entry(g, table, REF_OTHER, gtf::PERMIT_ACCESS, peer.wrapping_add(100), (rw / PAGE_SIZE) as u32);
    // Last: the writable grant, which the mapper polls for.
    write_entry(g, table, REF_RW, gtf::PERMIT_ACCESS, peer, (rw / PAGE_SIZE) as u32);
    cx.check(
        "grant_offer",
        match revoked {
            Ok(()) => Ok(()),
            Err(f) => Err(reason!("an unmapped entry could not be revoked (flags {f:#x})")),
        },
    );
    cx.say(format_args!("REPORT grants_offered_to=d{peer} rw_ref={REF_RW} ro_ref={REF_RO}"));

    let replied = wait_peer(cx, || read_u32(g, rw + REPLY_OFFSET) == REPLY_MAGIC);
    cx.run("grant_peer_reply", |_| {
        ensure!(replied, "no reply from d{peer} in {} s", PEER_WAIT_NS / 1_000_000_000);
        let seen_rw = read_u32(g, rw + REPLY_OFFSET + 4);
        let seen_ro = read_u32(g, rw + REPLY_OFFSET + 8);
        let want_rw = pattern_fingerprint(rw_byte, REPLY_OFFSET);
        let want_ro = pattern_fingerprint(ro_byte, PAGE_SIZE);
        ensure!(seen_rw == want_rw, "d{peer} read {seen_rw:#x} of the writable page, expected {want_rw:#x}");
        ensure!(seen_ro == want_ro, "d{peer} read {seen_ro:#x} of the read-only page, expected {want_ro:#x}");
        Ok(())
    });
    cx.run("grant_flags_while_mapped", |_| {
        ensure!(replied, "no reply");
        let (frw, fro) =
            (flags_of(table, REF_RW).load(Ordering::SeqCst), flags_of(table, REF_RO).load(Ordering::SeqCst));
        let both = gtf::READING | gtf::WRITING;
        ensure!(frw & both == both, "writable grant mapped: flags {frw:#x}, expected reading|writing");
        ensure!(fro & both == gtf::READING, "read-only grant mapped: flags {fro:#x}, expected reading only");
        Ok(())
    });
    // Let the mapper unmap.
    g.write(rw + ACK_OFFSET, &ACK_MAGIC.to_le_bytes());
    let pinned = |gref| flags_of(table, gref).load(Ordering::SeqCst) & (gtf::READING | gtf::WRITING);
    let cleared = wait_peer(cx, || pinned(REF_RW) == 0 && pinned(REF_RO) == 0);
    cx.run("grant_flags_clear_after_unmap", |_| {
        ensure!(cleared, "flags still rw={:#x} ro={:#x}", pinned(REF_RW), pinned(REF_RO));
        Ok(())
    });
    cx.run("grant_revoke", |_| {
        for gref in [REF_RW, REF_RO, REF_OTHER] {
            if let Err(f) = revoke(table, gref) {
                return Err(reason!("ref {gref} not revoked: flags {f:#x}"));
            }
        }
        Ok(())
    });
}

/// The mapper's side.
fn mapper(cx: &mut Ctx, peer: u16) {
    let g = cx.g;
    let (at_rw, at_ro) = (PAGES.map_rw.gpa(), PAGES.map_ro.gpa());
    let mut rw = None;
    let mut last = 0;
    let offered = wait_peer(cx, || {
        let (s, h) = map(g, at_rw, gntmap::HOST_MAP, REF_RW, peer);
        last = s;
        if s == st::OKAY {
            rw = Some(h);
        }
        s == st::OKAY
    });
    let later = [
        "grant_map_ro_writable_refused",
        "grant_map_ro",
        "grant_ro_write_discarded",
        "grant_forged_ref",
        "grant_revoked_ref",
        "grant_not_granted_to_us",
        "grant_copy",
        "grant_peer_ack",
        "grant_unmap",
    ];
    cx.run("grant_map_rw", |_| {
        ensure!(
            offered,
            "map of d{peer} ref {REF_RW} never succeeded in {} s (last status {last})",
            PEER_WAIT_NS / 1_000_000_000
        );
        let got = fingerprint(g, at_rw, REPLY_OFFSET);
        let want = pattern_fingerprint(rw_byte, REPLY_OFFSET);
        ensure!(got == want, "mapped page reads {got:#x}, d{peer}'s pattern is {want:#x}");
        Ok(())
    });
    let Some(rw_handle) = rw else {
        cx.fail_all(&later, format_args!("d{peer}'s writable grant never mapped"));
        return;
    };
    cx.run("grant_map_ro_writable_refused", |_| {
        let (s, h) = map(g, at_ro, gntmap::HOST_MAP, REF_RO, peer);
        if s == st::OKAY {
            unmap(g, at_ro, h);
        }
        expect_status(s, st::GENERAL_ERROR, "writable map of a GTF_readonly grant")
    });
    let mut ro = None;
    cx.run("grant_map_ro", |_| {
        let (s, h) = map(g, at_ro, gntmap::HOST_MAP | gntmap::READONLY, REF_RO, peer);
        expect_status(s, st::OKAY, "read-only map of the read-only grant")?;
        ro = Some(h);
        let got = fingerprint(g, at_ro, PAGE_SIZE);
        let want = pattern_fingerprint(ro_byte, PAGE_SIZE);
        ensure!(got == want, "mapped page reads {got:#x}, d{peer}'s pattern is {want:#x}");
        Ok(())
    });
    cx.run("grant_ro_write_discarded", |_| {
        ensure!(ro.is_some(), "not mapped");
        let before = read_u32(g, at_ro + 16);
        store_u32(at_ro + 16, !before);
        let after = read_u32(g, at_ro + 16);
        ensure!(after == before, "a write through the read-only mapping landed: {before:#x} -> {after:#x}");
        Ok(())
    });
    let spare = PAGES.copy.gpa();
    cx.run("grant_forged_ref", |_| {
        let (s, _) = map(g, spare, gntmap::HOST_MAP | gntmap::READONLY, FORGED_REF, peer);
        expect_status(s, st::BAD_GNTREF, "map of a reference beyond the table")
    });
    cx.run("grant_revoked_ref", |_| {
        let (s, h) = map(g, spare, gntmap::HOST_MAP | gntmap::READONLY, REF_REVOKED, peer);
        if s == st::OKAY {
            unmap(g, spare, h);
        }
        expect_status(s, st::GENERAL_ERROR, "map of a revoked grant")
    });
    cx.run("grant_not_granted_to_us", |_| {
        let (s, h) = map(g, spare, gntmap::HOST_MAP | gntmap::READONLY, REF_OTHER, peer);
        if s == st::OKAY {
            unmap(g, spare, h);
        }
        expect_status(s, st::GENERAL_ERROR, "map of a grant to another domain")
    });
    cx.run("grant_copy", |cx| {
        let (flags, len) = (gntcopy::SOURCE_GREF, PAGE_SIZE as u16);
        let status = if cx.layout.xen_ulong_size == 8 {
            let arg = GnttabCopy {
                source: GnttabCopyPtr { u: REF_RO as u64, domid: peer, ..Default::default() },
                dest: GnttabCopyPtr { u: spare / PAGE_SIZE, domid: DOMID_SELF, ..Default::default() },
                len,
                flags,
                ..Default::default()
            };
            let (rc, out) = gnttab_op(g, gnttabop::COPY, &arg);
            expect_ok(rc)?;
            out.status
        } else {
            let arg = GnttabCopyUlong32 {
                source: GnttabCopyPtrUlong32 { u: REF_RO, domid: peer, ..Default::default() },
                dest: GnttabCopyPtrUlong32 { u: (spare / PAGE_SIZE) as u32, domid: DOMID_SELF, ..Default::default() },
                len,
                flags,
                ..Default::default()
            };
            let (rc, out) = gnttab_op(g, gnttabop::COPY, &arg);
            expect_ok(rc)?;
            out.status
        };
        expect_status(status, st::OKAY, "copy of d{peer}'s read-only grant into our page")?;
        let got = fingerprint(g, spare, PAGE_SIZE);
        ensure!(got == pattern_fingerprint(ro_byte, PAGE_SIZE), "copied page reads {got:#x}");
        Ok(())
    });
    // The reply: what we read of both pages, then the magic word last.
    let seen_rw = fingerprint(g, at_rw, REPLY_OFFSET);
    let seen_ro = if ro.is_some() { fingerprint(g, at_ro, PAGE_SIZE) } else { 0 };
    g.write(at_rw + REPLY_OFFSET + 4, &seen_rw.to_le_bytes());
    g.write(at_rw + REPLY_OFFSET + 8, &seen_ro.to_le_bytes());
    fence(Ordering::SeqCst);
    g.write(at_rw + REPLY_OFFSET, &REPLY_MAGIC.to_le_bytes());
    let acked = wait_peer(cx, || read_u32(g, at_rw + ACK_OFFSET) == ACK_MAGIC);
    cx.run("grant_peer_ack", |_| {
        ensure!(acked, "d{peer} never acknowledged the reply");
        Ok(())
    });
    cx.run("grant_unmap", |_| {
        if let Some(h) = ro {
            expect_status(unmap(g, at_ro, h), st::OKAY, "unmap of the read-only mapping")?;
        }
        expect_status(unmap(g, at_rw, rw_handle), st::OKAY, "unmap of the writable mapping")?;
        // The handle is gone.
        expect_status(unmap(g, at_rw, rw_handle), st::BAD_HANDLE, "second unmap of the same handle")
    });
}
