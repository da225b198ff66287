//! In-guest hypercall fuzzing, for the `fuzz` command-line word
//! (`fuzz calls=N seed=S self=D peers=A,B`, which `cargo xtask fuzz` gives
//! each fuzz domain): instead of the checks, `N` random hypercalls, then a
//! `fuzz:` line with the results by errno, then power-off.
//!
//! The generator ([`ops`], [`sequences`]) covers every hypercall and sub-op
//! Lantern implements and unknown ones, with argument structs that are
//! valid, edge-valued, random, truncated or overlapping, and pointers that
//! are valid, misaligned, page-crossing, unmapped, in MMIO, beyond the
//! domain's RAM (where another domain's memory would be) and in the
//! hypervisor's range ([`PtrClass`]); a share of the iterations are
//! sequences that have state (areas, ports, grants, ballooning, timers,
//! vCPUs). Everything is drawn from one [`Rng`] seeded from `seed` and the
//! layout, so a seed replays the same calls (what the hypervisor answers
//! can still depend on the other domains' timing).
//!
//! A hypercall with bad arguments must fail with an errno, so the fuzz
//! domain crashing is a finding — unless the fuzzer asked for it. What it
//! therefore never does (each would end or wedge the domain by design):
//! `SCHEDOP_shutdown` with a readable argument (only unreadable ones, which
//! must give `-EFAULT`), `SCHEDOP_block` (it waits for an event whose
//! delivery depends on masks the fuzzer randomises), `SCHEDOP_poll` without
//! a timeout, `VCPUOP_down` of vCPU 0 (nobody would bring it up), and
//! `VCPUOP_initialise` with a readable random context of a vCPU that could
//! then run it. Everything the hypervisor may write — outputs, areas, FIFO
//! words, grant copies, populated or removed frames — goes to the fuzzer's
//! own pages ([`FuzzPages`]): the argument pages, which it rewrites before
//! every call, and a pool of frames it never touches itself; frame numbers
//! are drawn from the pool and from numbers no RAM has. Upcalls stay off on
//! every vCPU, so the random callback vectors it sets are never taken.

mod ops;
mod sequences;

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use xen_abi::Errno;

use crate::console::Buf;
use crate::identity::Page;
use crate::{hypercall, Guest, Layout, FAULT_GPA, PAGE_SIZE};

/// Argument pages: the structs the fuzzer builds, and the outputs.
pub const ARG_PAGES: usize = 2;
/// Frames the fuzzer hands to the hypervisor by number.
pub const POOL_PAGES: usize = 8;
/// Where [`PtrClass::Unmapped`] points besides the hole: 16 MiB at
/// 512 MiB, far above the domains' RAM, inside every guest's identity
/// map, and disjoint from every frame [`Fuzzer::gfn`] hands over (which the
/// hypervisor may populate: a pointer there would then be readable).
pub const UNMAPPED_GPA: u64 = 0x2000_0000;
/// Its size.
pub const UNMAPPED_LEN: u64 = 1 << 24;
/// Calls between two `FUZZ progress` lines.
const PROGRESS_EVERY: u64 = 10_000;
/// Grant references the fuzzer writes and maps (of its own table and its
/// peers').
const GRANT_REFS: u32 = 16;

/// The fuzzer's pages, in this order (one `.bss` object, so they are
/// contiguous): the argument pages, then a page that is ballooned out
/// before the first call and never populated again (so a struct that runs
/// off the argument pages is truncated there, and a batch that walks off
/// them stops there), the page grant-table frame 0 is mapped at, and the
/// pool.
#[repr(C)]
pub struct FuzzPages {
    args: [Page; ARG_PAGES],
    hole: Page,
    table: Page,
    pool: [Page; POOL_PAGES],
}

/// The one set of fuzzer pages.
static PAGES: FuzzPages = FuzzPages {
    args: [Page::new(), Page::new()],
    hole: Page::new(),
    table: Page::new(),
    pool: [Page::new(), Page::new(), Page::new(), Page::new(), Page::new(), Page::new(), Page::new(), Page::new()],
};

/// Whether this domain is fuzzing (secondaries then idle with upcalls off).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The call in flight: its index, number and first argument, for a crash
/// report.
static CURRENT: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Whether the `fuzz` word is running in this domain.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// The call in flight, for the crash line of a fuzz domain:
/// `(index, hypercall number, first argument)`.
pub fn current() -> (u64, u64, u64) {
    (CURRENT[0].load(Ordering::Acquire), CURRENT[1].load(Ordering::Acquire), CURRENT[2].load(Ordering::Acquire))
}

/// splitmix64: tiny, fast, and every seed gives a full-period stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.bits() % n
        }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// One of `items` by weight.
    pub fn weighted<T: Copy>(&mut self, items: &[(u32, T)]) -> T {
        let total: u64 = items.iter().map(|(w, _)| *w as u64).sum();
        let mut at = self.below(total);
        for (w, t) in items {
            if at < *w as u64 {
                return *t;
            }
            at -= *w as u64;
        }
        items[items.len() - 1].1
    }
}

/// Results by errno: `0`, positive, each of Xen's errnos, anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    zero: u64,
    positive: u64,
    errno: [u64; Errno::ALL.len()],
    other: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { zero: 0, positive: 0, errno: [0; Errno::ALL.len()], other: 0 }
    }
}

impl Histogram {
    /// Counts one result.
    pub fn add(&mut self, rc: i64) {
        match rc {
            0 => self.zero += 1,
            rc if rc > 0 => self.positive += 1,
            rc => match Errno::from_hypercall_ret(rc).and_then(|e| Errno::ALL.iter().position(|&x| x == e)) {
                Some(i) => self.errno[i] += 1,
                None => self.other += 1,
            },
        }
    }

    /// Every result counted.
    pub fn total(&self) -> u64 {
        self.zero + self.positive + self.other + self.errno.iter().sum::<u64>()
    }

    /// How many results were `-e`.
    pub fn count(&self, e: Errno) -> u64 {
        Errno::ALL.iter().position(|&x| x == e).map_or(0, |i| self.errno[i])
    }
}

impl core::fmt::Display for Histogram {
    /// `0=N >0=N -EPERM=N ... other=N`, the entries that are not zero.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "0={}", self.zero)?;
        if self.positive != 0 {
            write!(f, " >0={}", self.positive)?;
        }
        for (i, &n) in self.errno.iter().enumerate() {
            if n != 0 {
                write!(f, " -{}={n}", Errno::ALL[i].name())?;
            }
        }
        if self.other != 0 {
            write!(f, " other={}", self.other)?;
        }
        Ok(())
    }
}

/// How an argument pointer is chosen (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtrClass {
    /// In the argument pages, 8-aligned, wholly inside them.
    Valid,
    /// As valid, then moved by 1 to 7 bytes.
    Misaligned,
    /// Straddling the boundary between the two argument pages.
    PageCrossing,
    /// Running off the end of the argument pages into the hole: only the
    /// head is readable.
    Truncated,
    /// Address 0 (RAM on x86, where nothing of the fuzzer lives), or the
    /// hole where 0 is inside our own image (arm64's starts there): see
    /// [`Fuzzer::null`].
    Null,
    /// The hole page, or guest-physical memory no RAM backs.
    Unmapped,
    /// An emulated device's registers.
    Mmio,
    /// Beyond the domain's RAM and its identity map, where another
    /// domain's memory would be in a machine's address space.
    OtherDomain,
    /// The hypervisor's part of the address space: the top of it, and
    /// addresses that wrap past the end.
    Hypervisor,
}

const PTR_CLASSES: &[(u32, PtrClass)] = &[
    (55, PtrClass::Valid),
    (7, PtrClass::Misaligned),
    (7, PtrClass::PageCrossing),
    (6, PtrClass::Truncated),
    (3, PtrClass::Null),
    (7, PtrClass::Unmapped),
    (5, PtrClass::Mmio),
    (4, PtrClass::OtherDomain),
    (6, PtrClass::Hypervisor),
];

/// An argument pointer: the address to pass, and how many bytes of the
/// struct the fuzzer may write there (0 where it is not the fuzzer's
/// memory, less than the struct where it is truncated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ptr {
    /// The address.
    pub addr: u64,
    /// Bytes writable at it.
    pub room: usize,
}

/// One fuzz domain's run.
pub struct Fuzzer<'g> {
    g: &'g dyn Guest,
    layout: &'static Layout,
    rng: Rng,
    /// Our own domain id (`self=`), beside `DOMID_SELF`.
    self_id: u16,
    /// The other domains (`peers=`): the other fuzz domain, the
    /// well-behaved one.
    peers: [u16; 4],
    npeers: usize,
    limit: u64,
    calls: u64,
    /// Calls `trace.0..trace.1` are printed one a line (`trace=A-B`, for
    /// reducing a failing seed; empty by default).
    pub trace: (u64, u64),
    hist: Histogram,
    /// Ports the fuzzer bound and has not seen closed.
    ports: Ring<u32, 16>,
    /// Grant handles the fuzzer holds, with where they are mapped.
    handles: Ring<(u32, u64), 8>,
    /// Whether vCPU 1 has been started (initialised).
    secondary_started: bool,
    /// The last struct's address, for overlapping arguments.
    last_arg: u64,
    /// Set while the struct being built is the first of an array the
    /// hypervisor reads `count` elements of: [`Self::place`] then puts it at
    /// the very end of the argument pages, so an element read past it is in
    /// the hole (as with a reservation's extent list), never stale bytes of
    /// earlier calls. A stale `gnttab_copy` there named our own code page
    /// as its destination, which the hypervisor rightly wrote (found on
    /// arm64, seed 1).
    array_tail: bool,
}

/// A small ring of recent values (the fuzzer's idea of its state; it may
/// be stale, which is one more kind of input).
#[derive(Clone, Copy, Debug)]
struct Ring<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
    next: usize,
}

impl<T: Copy + Default, const N: usize> Ring<T, N> {
    fn new() -> Self {
        Ring { items: [T::default(); N], len: 0, next: 0 }
    }

    fn push(&mut self, v: T) {
        self.items[self.next] = v;
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
    }

    fn pick(&self, rng: &mut Rng) -> Option<T> {
        (self.len > 0).then(|| self.items[rng.below(self.len as u64) as usize])
    }
}

/// The value of `key=` on the command line, as a number.
fn word_value(g: &dyn Guest, key: &str) -> Option<u64> {
    g.cmdline().split_ascii_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl<'g> Fuzzer<'g> {
    /// A run of `limit` calls from `seed` (mixed with the layout's name, so
    /// the two x86 layouts do not make the same calls).
    pub fn new(g: &'g dyn Guest, seed: u64, limit: u64, self_id: u16, peers: &[u16]) -> Self {
        let layout = g.layout();
        let salt = layout.name.bytes().fold(0u64, |h, b| h.wrapping_mul(0x100_0000_01B3) ^ b as u64);
        let mut p = [0u16; 4];
        let npeers = peers.len().min(4);
        p[..npeers].copy_from_slice(&peers[..npeers]);
        Fuzzer {
            g,
            layout,
            rng: Rng::new(seed ^ salt),
            self_id,
            peers: p,
            npeers,
            limit,
            calls: 0,
            trace: (0, 0),
            hist: Histogram::default(),
            ports: Ring::new(),
            handles: Ring::new(),
            secondary_started: false,
            last_arg: PAGES.args[0].gpa(),
            array_tail: false,
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// The results so far.
    pub fn histogram(&self) -> &Histogram {
        &self.hist
    }

    /// Whether the run has made all its calls.
    fn done(&self) -> bool {
        self.calls >= self.limit
    }

    /// Whether the layout is x86_32 compat (32-bit handles and
    /// `xen_ulong_t`, arguments truncated to 32 bits by the calling
    /// convention).
    fn narrow(&self) -> bool {
        self.layout.xen_ulong_size == 4
    }

    /// Makes one hypercall (unless the run is over: then `None`) and
    /// counts its result.
    fn call(&mut self, nr: u64, args: [u64; 5]) -> Option<i64> {
        if self.done() {
            return None;
        }
        CURRENT[0].store(self.calls, Ordering::Release);
        CURRENT[1].store(nr, Ordering::Release);
        CURRENT[2].store(args[0], Ordering::Release);
        let rc = self.g.raw_hypercall(nr, args);
        if (self.trace.0..self.trace.1).contains(&self.calls) {
            let mut b = Buf::<400>::new();
            let mut arg = [0u8; 40];
            if self.ours(args[1], 40) {
                self.g.read(args[1], &mut arg);
            }
            let _ = writeln!(b, "FUZZ call {} nr={nr} args={args:x?} rc={rc} arg1={arg:02x?}", self.calls);
            self.g.console(b.as_bytes());
        }
        self.count(rc);
        Some(rc)
    }

    /// Counts one result (of a call made some other way, e.g. a vCPU
    /// start), printing progress every [`PROGRESS_EVERY`] calls.
    fn count(&mut self, rc: i64) {
        self.hist.add(rc);
        self.calls += 1;
        if self.calls.is_multiple_of(PROGRESS_EVERY) {
            let mut b = Buf::<480>::new();
            let _ = writeln!(b, "FUZZ progress {} calls={} {}", self.layout.name, self.calls, self.hist);
            self.g.console(b.as_bytes());
        }
    }

    /// Runs until `limit` calls are made: mostly single random calls, a
    /// sixth of the time a stateful sequence.
    pub fn run(&mut self) {
        while !self.done() {
            if self.rng.chance(16) {
                sequences::one(self);
            } else {
                ops::one(self);
            }
        }
    }

    // ---- argument pointers and values ---------------------------------

    /// The argument pages' base and length.
    fn args_span(&self) -> (u64, u64) {
        (PAGES.args[0].gpa(), ARG_PAGES as u64 * PAGE_SIZE)
    }

    /// Whether `size` bytes at `addr` lie in the argument pages.
    fn ours(&self, addr: u64, size: u64) -> bool {
        let (base, len) = self.args_span();
        addr >= base && addr.checked_add(size).is_some_and(|end| end <= base + len)
    }

    /// A pointer for a `size`-byte argument, of a random class.
    fn ptr(&mut self, size: usize) -> Ptr {
        let class = self.rng.weighted(PTR_CLASSES);
        self.ptr_of(class, size)
    }

    /// A pointer of `class` for a `size`-byte argument.
    fn ptr_of(&mut self, class: PtrClass, size: usize) -> Ptr {
        let (base, len) = self.args_span();
        let size = (size.max(1) as u64).min(len);
        let narrow = self.narrow();
        let r = &mut self.rng;
        match class {
            PtrClass::Valid => Ptr { addr: base + r.below((len - size) / 8 + 1) * 8, room: size as usize },
            PtrClass::Misaligned if size + 8 <= len => {
                Ptr { addr: base + r.below((len - size - 8) / 8 + 1) * 8 + 1 + r.below(7), room: size as usize }
            }
            PtrClass::PageCrossing if size >= 2 => {
                Ptr { addr: base + PAGE_SIZE - 1 - r.below(size - 1), room: size as usize }
            }
            PtrClass::Truncated if size >= 2 => {
                let head = 1 + r.below(size - 1);
                Ptr { addr: base + len - head, room: head as usize }
            }
            PtrClass::Misaligned | PtrClass::PageCrossing | PtrClass::Truncated => self.ptr_of(PtrClass::Valid, 1),
            PtrClass::Null => Ptr { addr: self.null(), room: 0 },
            PtrClass::Unmapped => {
                let addr = if r.chance(50) {
                    PAGES.hole.gpa() + r.below(PAGE_SIZE)
                } else {
                    UNMAPPED_GPA + r.below(UNMAPPED_LEN)
                };
                Ptr { addr, room: 0 }
            }
            PtrClass::Mmio => Ptr { addr: self.g.mmio_gpa() + r.below(PAGE_SIZE) / 8 * 8, room: 0 },
            PtrClass::OtherDomain => {
                let addr = if narrow { 0x8000_0000 + r.below(0x4000_0000) } else { (1 << 33) + r.below(1 << 40) };
                Ptr { addr: addr & !7, room: 0 }
            }
            PtrClass::Hypervisor => {
                let addr = match (narrow, r.below(3)) {
                    (false, 0) => 0xFFFF_8000_0000_0000 + r.below(1 << 40),
                    (false, 1) => u64::MAX - r.below(64),
                    (false, _) => 0x8000_0000_0000_0000 + r.below(1 << 20),
                    (true, 0) => 0xF580_0000 + r.below(0x0800_0000),
                    (true, _) => 0xFFFF_FFFF - r.below(64),
                };
                Ptr { addr, room: 0 }
            }
        }
    }

    /// Writes the part of `bytes` that `p` has room for.
    fn write_at(&self, p: Ptr, bytes: &[u8]) {
        let n = p.room.min(bytes.len());
        if n > 0 {
            self.g.write(p.addr, &bytes[..n]);
        }
    }

    /// Places `bytes` (a struct) at a random pointer; returns the address
    /// to pass. The last struct's address is remembered for overlapping
    /// arguments.
    fn place(&mut self, bytes: &[u8]) -> u64 {
        if self.array_tail {
            let (base, len) = self.args_span();
            let addr = base + len - bytes.len() as u64;
            self.g.write(addr, bytes);
            self.last_arg = addr;
            return addr;
        }
        let p = self.ptr(bytes.len());
        self.write_at(p, bytes);
        self.last_arg = p.addr;
        p.addr
    }

    /// The null pointer for an argument the hypervisor reads and acts on
    /// as if the fuzzer had written it (an extent list, a `sched_poll`):
    /// the hole. Where [`Self::null`] is 0 that is RAM the fuzzer does not
    /// control (x86, riscv64): page 0 holds what the hypervisor wrote at
    /// earlier null pointers, so a frame list read there named our own
    /// code page (riscv64, seed 5: decrease_reservation gave it away), and
    /// zeros there are a poll without ports or timeout, which blocks the
    /// vCPU until an event, for good in a fuzz domain (riscv64, seed 4).
    fn null_read(&self) -> u64 {
        PAGES.hole.gpa()
    }

    /// As [`Self::place`], for a struct whose contents keep the call
    /// short (a `sched_poll`'s timeout): the null class is
    /// [`Self::null_read`]. The same draws as [`Self::place`], so the rest
    /// of the stream is unchanged.
    fn place_bounded(&mut self, bytes: &[u8]) -> u64 {
        if self.array_tail {
            return self.place(bytes);
        }
        let p = match self.rng.weighted(PTR_CLASSES) {
            PtrClass::Null => Ptr { addr: self.null_read(), room: 0 },
            class => self.ptr_of(class, bytes.len()),
        };
        self.write_at(p, bytes);
        self.last_arg = p.addr;
        p.addr
    }

    /// Places `bytes` at a pointer of `class`.
    fn place_as(&mut self, class: PtrClass, bytes: &[u8]) -> u64 {
        let p = self.ptr_of(class, bytes.len());
        self.write_at(p, bytes);
        self.last_arg = p.addr;
        p.addr
    }

    /// A pointer for a nested buffer (an extent list, a port array, an
    /// output): usually its own, sometimes overlapping the struct placed
    /// last.
    fn nested(&mut self, bytes: &[u8]) -> u64 {
        if self.rng.chance(15) {
            let at = self.last_arg.wrapping_add(self.rng.below(16));
            if self.ours(at, bytes.len() as u64) {
                self.g.write(at, bytes);
            }
            return at;
        }
        let p = self.ptr(bytes.len());
        self.write_at(p, bytes);
        p.addr
    }

    /// A pointer for an output buffer of `size` bytes (nothing written).
    fn out(&mut self, size: usize) -> u64 {
        if self.rng.chance(10) {
            return self.last_arg.wrapping_add(self.rng.below(16));
        }
        self.ptr(size).addr
    }

    /// A 32-bit value: an edge or random bits.
    fn u32_edge(&mut self) -> u32 {
        const EDGES: &[u32] = &[
            0,
            1,
            2,
            3,
            7,
            8,
            15,
            16,
            31,
            32,
            33,
            63,
            64,
            127,
            128,
            255,
            256,
            1023,
            1024,
            4095,
            4096,
            8191,
            8192,
            0x7fff,
            0x8000,
            0xffff,
            0x1_0000,
            0x1_ffff,
            0x2_0000,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_fffe,
            0xffff_ffff,
        ];
        if self.rng.chance(80) {
            self.rng.pick(EDGES)
        } else {
            self.rng.bits() as u32
        }
    }

    /// A 64-bit value: an edge or random bits.
    fn u64_edge(&mut self) -> u64 {
        const EDGES: &[u64] = &[
            1 << 32,
            (1 << 32) + 1,
            1 << 48,
            1 << 50,
            1 << 52,
            1 << 62,
            1 << 63,
            u64::MAX >> 2,
            u64::MAX - 1,
            u64::MAX,
        ];
        match self.rng.below(10) {
            0..=5 => self.u32_edge() as u64,
            6..=8 => self.rng.pick(EDGES),
            _ => self.rng.bits(),
        }
    }

    /// The gfn of pool page `i`.
    fn pool_gfn(&self, i: usize) -> u64 {
        PAGES.pool[i % POOL_PAGES].gpa() / PAGE_SIZE
    }

    /// The gfn of a random pool page.
    fn random_pool_gfn(&mut self) -> u64 {
        let i = self.rng.below(POOL_PAGES as u64) as usize;
        self.pool_gfn(i)
    }

    /// A frame number to hand the hypervisor: a pool frame, the grant
    /// table's page, or a number no RAM of ours has (never one of the
    /// fuzzer's code, data or argument pages, nor the hole; nor frame 0,
    /// which is the guest's first code page on arm64).
    fn gfn(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=59 => {
                let i = self.rng.below(POOL_PAGES as u64) as usize;
                self.pool_gfn(i)
            }
            60..=68 => PAGES.table.gpa() / PAGE_SIZE,
            _ => {
                // Never where a pointer class points (a frame populated
                // there would make those pointers readable).
                let fault = FAULT_GPA / PAGE_SIZE;
                let edges = [fault, fault + 1, 1 << 20, 1 << 36, (1 << 36) - 1, 0xffff_ffff, u64::MAX];
                if self.rng.chance(80) {
                    self.rng.pick(&edges)
                } else {
                    fault + self.rng.below(1 << 16)
                }
            }
        }
    }

    /// A frame number for a frame the hypervisor writes bytes into that the
    /// fuzzer does not choose (an area, an event-channel control block, a
    /// copy's destination): as [`Self::gfn`], but never the grant table's
    /// page. Those bytes in our grant table are grant entries: one that
    /// granted ourselves our own code page let a later copy to that grant
    /// write over our code (found on arm64, seed 1: the hypervisor did as
    /// Xen does with a self-grant).
    fn written_gfn(&mut self) -> u64 {
        let gfn = self.gfn();
        if gfn == PAGES.table.gpa() / PAGE_SIZE {
            self.random_pool_gfn()
        } else {
            gfn
        }
    }

    /// A null pointer, where that names nothing of ours; where the image
    /// starts at 0 (arm64), the hole page instead. A null pointer there is
    /// a pointer into our own code, which the hypervisor rightly reads and
    /// writes as the RAM it is (as Xen does): a frame list read from it
    /// gave away our code pages, a vcpu_info or runstate area registered
    /// at it, or an output written to it, overwrote our code, and a vCPU
    /// context read from it started vCPU 1 at random.
    pub(crate) fn null(&self) -> u64 {
        if self.g.image().contains(&0) {
            PAGES.hole.gpa()
        } else {
            0
        }
    }

    /// The "no area" address for an area registration `cmd`: the
    /// unregister value (0 for a guest-virtual area, `!0` for a physical
    /// one) or, for a physical one, a null pointer (a real address: see
    /// [`Self::null`]).
    pub(crate) fn no_area(&mut self, cmd: u64) -> u64 {
        use xen_abi::nr::vcpuop;
        match cmd {
            vcpuop::REGISTER_RUNSTATE_PHYS_AREA | vcpuop::REGISTER_VCPU_TIME_PHYS_AREA => {
                if self.rng.chance(50) {
                    !0
                } else {
                    self.null()
                }
            }
            _ => 0,
        }
    }

    /// A frame number for an extent of `1 << order` frames that may be
    /// given back or populated whole: order 0 as [`Self::gfn`]; a larger
    /// one from the range no RAM of ours has, aligned, so the extent never
    /// reaches past the pool into the guest's own memory.
    fn extent_gfn(&mut self, order: u32) -> u64 {
        if order == 0 {
            return self.gfn();
        }
        let align = 1u64 << order.min(16);
        (FAULT_GPA / PAGE_SIZE + self.rng.below(1 << 16)) & !(align - 1)
    }

    /// A guest-physical address for an area the hypervisor writes: in a
    /// pool frame (aligned, misaligned or crossing its end), or where
    /// [`Self::written_gfn`] points.
    fn frame_addr(&mut self, size: u64) -> u64 {
        let gfn = self.written_gfn();
        let off = match self.rng.below(6) {
            0..=2 => self.rng.below(PAGE_SIZE / 64) * 64,
            3 => self.rng.below(PAGE_SIZE),
            4 => PAGE_SIZE - size.min(PAGE_SIZE) + self.rng.below(size.min(PAGE_SIZE)),
            _ => 0,
        };
        gfn.wrapping_mul(PAGE_SIZE).wrapping_add(off)
    }

    /// A domain id: ourselves (by `DOMID_SELF` or number), a peer, a
    /// pseudo-domain, domain 0 (which does not exist here), or any.
    fn domid(&mut self) -> u16 {
        use xen_abi::nr::domid;
        match self.rng.below(100) {
            0..=39 => domid::SELF,
            40..=49 => self.self_id,
            50..=74 if self.npeers > 0 => self.peers[self.rng.below(self.npeers as u64) as usize],
            75..=84 => self.rng.pick(&[domid::IO, domid::XEN, domid::COW, domid::INVALID, domid::IDLE]),
            85..=89 => 0,
            _ => self.rng.bits() as u16,
        }
    }

    /// A peer's domain id (ourselves if there is none).
    fn peer(&mut self) -> u16 {
        if self.npeers == 0 {
            self.self_id
        } else {
            self.peers[self.rng.below(self.npeers as u64) as usize]
        }
    }

    /// A vCPU id: 0, 1 (the fuzz domains have two), or beyond.
    fn vcpu(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=3 => 0,
            4..=6 => 1,
            _ => {
                let any = self.rng.bits() as u32;
                self.rng.pick(&[2, 31, 32, 33, 63, 64, 1024, u32::MAX, any])
            }
        }
    }

    /// A port: one we bound, a small one, or an edge.
    fn port(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=5 => match self.ports.pick(&mut self.rng) {
                Some(p) => p,
                None => self.rng.below(8) as u32,
            },
            6..=7 => self.rng.below(16) as u32,
            _ => self.rng.pick(&[1023, 1024, 4095, 4096, 8191, 8192, (1 << 17) - 1, 1 << 17, u32::MAX]),
        }
    }

    /// A small count (0 to 4), sometimes an edge.
    fn count_small(&mut self) -> u64 {
        if self.rng.chance(85) {
            self.rng.below(5)
        } else {
            self.u32_edge() as u64
        }
    }

    /// A timer value: in the past (system time is well past a
    /// millisecond after boot), near, far, or an edge (the huge-timeout
    /// rule, overflow).
    fn timer_value(&mut self) -> u64 {
        match self.rng.below(10) {
            0..=3 => self.rng.below(1_000_000),
            4..=5 => self.rng.pick(&[0, 1, 999_999, 1_000_000, 1_000_001]),
            6..=7 => 1 << (40 + self.rng.below(24)),
            _ => self.u64_edge(),
        }
    }

    /// Remembers the port an `EVTCHNOP_<cmd>` that returned `rc` wrote
    /// into its struct at `arg` (when the struct is ours to read back).
    fn note_port(&mut self, cmd: u64, arg: u64, rc: i64) {
        use xen_abi::nr::evtchnop;
        let at = match cmd {
            evtchnop::ALLOC_UNBOUND | evtchnop::BIND_IPI => 4,
            evtchnop::BIND_INTERDOMAIN | evtchnop::BIND_VIRQ => 8,
            _ => return,
        };
        if rc == 0 && self.ours(arg.wrapping_add(at), 4) {
            let mut b = [0u8; 4];
            self.g.read(arg + at, &mut b);
            self.ports.push(u32::from_le_bytes(b));
        }
    }

    /// Remembers the handle a successful `GNTTABOP_map_grant_ref` wrote
    /// into its struct at `uop` (with where it mapped), when the status
    /// says it mapped and the struct is ours to read back.
    fn note_handle(&mut self, uop: u64) {
        let size = core::mem::size_of::<xen_abi::public::GnttabMapGrantRef>() as u64;
        if !self.ours(uop, size) {
            return;
        }
        let mut m = xen_abi::public::GnttabMapGrantRef::default();
        self.g.read(uop, zerocopy::IntoBytes::as_mut_bytes(&mut m));
        if m.status == 0 {
            self.handles.push((m.handle, m.host_addr));
        }
    }

    /// Overwrites a random aligned word of `bytes` with an edge value (the
    /// "edge-valued" shape of structs where every field is a number, not a
    /// place the hypervisor writes to), or fills it with random bytes.
    fn mutate(&mut self, bytes: &mut [u8]) {
        match self.rng.below(10) {
            0..=5 => {}
            6..=8 if bytes.len() >= 4 => {
                let wide = bytes.len() >= 8 && self.rng.chance(40);
                let w = if wide { 8 } else { 4 };
                let at = self.rng.below((bytes.len() / w) as u64) as usize * w;
                let v = self.u64_edge();
                bytes[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            _ => bytes.iter_mut().for_each(|b| *b = self.rng.bits() as u8),
        }
    }
}

/// The `fuzz` word (see the module comment): the calls and the `fuzz:`
/// line (the caller then powers the domain off).
pub fn run(g: &dyn Guest) {
    ACTIVE.store(true, Ordering::Release);
    g.upcalls_enabled(false);
    let limit = word_value(g, "calls").unwrap_or(1000);
    let seed = word_value(g, "seed").unwrap_or(1);
    let self_id = word_value(g, "self").unwrap_or(u64::from(xen_abi::nr::domid::SELF)) as u16;
    let mut peers = [0u16; 4];
    let mut npeers = 0;
    if let Some(list) = g.cmdline().split_ascii_whitespace().find_map(|w| w.strip_prefix("peers=")) {
        for p in list.split(',').filter_map(|p| p.parse().ok()).take(4) {
            peers[npeers] = p;
            npeers += 1;
        }
    }
    let name = g.layout().name;
    crate::console::line(
        &|b| g.console(b),
        format_args!("FUZZ start {name} calls={limit} seed={seed} self=d{self_id} peers={npeers}"),
    );
    // The hole must be a hole before the first call.
    let hole = [PAGES.hole.gpa() / PAGE_SIZE];
    let rc = hypercall::reservation(g, g.layout(), xen_abi::nr::memop::DECREASE_RESERVATION, &hole, 1);
    if rc != 1 {
        crate::console::line(&|b| g.console(b), format_args!("FUZZ cannot balloon out the hole page: rc={rc}"));
    }
    // Frame 0 of our grant table where the grant sequences write entries.
    let table = g.layout().add_to_physmap(xen_abi::nr::mapspace::GRANT_TABLE, 0, PAGES.table.gpa() / PAGE_SIZE);
    let rc = g.hypercall(
        xen_abi::nr::hypercall::MEMORY_OP,
        [xen_abi::nr::memop::ADD_TO_PHYSMAP, g.gpa_of(table.as_bytes().as_ptr()), 0, 0, 0],
    );
    if rc != 0 {
        crate::console::line(&|b| g.console(b), format_args!("FUZZ cannot map grant-table frame 0: rc={rc}"));
    }
    let mut f = Fuzzer::new(g, seed, limit, self_id, &peers[..npeers]);
    if let Some((a, b)) = g.cmdline().split_ascii_whitespace().find_map(|w| w.strip_prefix("trace=")?.split_once('-')) {
        f.trace = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
    }
    f.run();
    let mut b = Buf::<480>::new();
    let _ = writeln!(b, "fuzz: {name} {} calls, {}, crashes: none", f.calls(), f.histogram());
    g.console(b.as_bytes());
}

/// A secondary vCPU of a fuzz domain: stays alive, upcalls off (the
/// fuzzer sets random callback vectors).
pub fn secondary_idle(g: &dyn Guest, vcpu: u32) -> ! {
    g.upcalls_enabled(false);
    loop {
        let v = (vcpu as usize).min(crate::MAX_VCPUS - 1);
        crate::VCPUS.alive[v].fetch_add(1, Ordering::AcqRel);
        g.busy_wait(2_000);
        hypercall::sched_yield(g);
    }
}

#[cfg(test)]
mod tests;
