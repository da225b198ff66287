//! A heap for a hypervisor: one `GlobalAlloc` over a range of free RAM,
//! which a board declares as its `#[global_allocator]`.
//!
//! Guest memory, page tables and vCPU control blocks are page-sized,
//! page-aligned allocations, and there are many of them (a 256 MiB domain
//! is 64 Ki frames, all freed at once when it is destroyed), so a first-fit
//! list allocator, or a buddy allocator that scans its free lists to merge,
//! goes quadratic. Instead:
//! * requests up to 2 KiB come from power-of-two size classes carved out of
//!   whole pages, with one free list per class;
//! * larger requests take a power-of-two run of pages, with one free list per
//!   run length (order), carved from a bump pointer when the list is empty.
//!
//! Freed blocks go back to their list (never merged), so a block freed and
//! allocated again is O(1). The price: memory freed in one size is reused
//! only in that size — guest frames, the bulk, are all one size.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;

use spin::Mutex;

const PAGE: usize = 4096;
const SMALL_CLASSES: usize = 8; // 16 B .. 2 KiB
const ORDERS: usize = 48;

struct State {
    next: usize,
    end: usize,
    small: [usize; SMALL_CLASSES],
    pages: [usize; ORDERS],
    used_pages: usize,
}

/// Zeroes `len` bytes at `p` (a board may pass a faster routine than the
/// generic one: under emulation the difference is large).
pub type ZeroFn = unsafe fn(p: *mut u8, len: usize);

/// Zeroes with `core::ptr::write_bytes`.
///
/// # Safety
/// `p` must be valid for writes of `len` bytes.
pub unsafe fn write_zeroes(p: *mut u8, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::write_bytes(p, 0, len) };
}

/// The allocator (see the module comment); a board declares one as its
/// `#[global_allocator]` and hands it its free RAM with [`Heap::init`].
pub struct Heap {
    state: Mutex<State>,
    zero: ZeroFn,
}

impl Heap {
    /// An empty heap that zeroes with `zero`.
    pub const fn new(zero: ZeroFn) -> Self {
        Heap {
            state: Mutex::new(State { next: 0, end: 0, small: [0; SMALL_CLASSES], pages: [0; ORDERS], used_pages: 0 }),
            zero,
        }
    }

    /// Hands the range `[start, end)` to the heap.
    ///
    /// # Safety
    /// The range must be memory nothing else uses, for as long as the heap
    /// lives, addressable at these addresses.
    pub unsafe fn init(&self, start: usize, end: usize) {
        let mut st = self.state.lock();
        st.next = (start + PAGE - 1) & !(PAGE - 1);
        st.end = end & !(PAGE - 1);
    }

    /// Bytes the heap has carved from its range so far (freed blocks are
    /// kept on their lists, so this never shrinks).
    pub fn used_bytes(&self) -> usize {
        self.state.lock().used_pages * PAGE
    }
}

fn small_class(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(16);
    if size > PAGE / 2 {
        return None;
    }
    Some(size.next_power_of_two().trailing_zeros() as usize - 4)
}

fn page_order(layout: &Layout) -> usize {
    let pages = layout.size().max(1).div_ceil(PAGE);
    pages.next_power_of_two().trailing_zeros() as usize
}

impl State {
    fn pop(head: &mut usize) -> Option<usize> {
        if *head == 0 {
            return None;
        }
        let block = *head;
        // SAFETY: every block on a free list is free heap memory whose first
        // word we wrote in `push`; nobody else references it.
        *head = unsafe { *(block as *const usize) };
        Some(block)
    }

    fn push(head: &mut usize, block: usize) {
        // SAFETY: `block` was just freed by its owner and is at least 16 bytes
        // of heap memory we own again.
        unsafe { *(block as *mut usize) = *head };
        *head = block;
    }

    fn alloc_pages(&mut self, order: usize, align: usize) -> usize {
        if align <= PAGE << order {
            if let Some(b) = Self::pop(&mut self.pages[order]) {
                return b;
            }
        }
        // Runs are naturally aligned to their own size only when needed: the
        // bump pointer is page aligned, so align it further for big aligns.
        let align = align.max(PAGE);
        let start = (self.next + align - 1) & !(align - 1);
        let size = PAGE << order;
        if start + size > self.end {
            return 0;
        }
        // Give the alignment gap back as single pages.
        let mut gap = self.next;
        while gap < start {
            Self::push(&mut self.pages[0], gap);
            gap += PAGE;
        }
        self.next = start + size;
        self.used_pages += size / PAGE;
        start
    }
}

// SAFETY: blocks are handed out at most once until freed (free lists and a
// monotonic bump pointer), sized and aligned for the requested layout (size
// classes are powers of two carved from page-aligned pages, so a class block is
// aligned to its size ≥ align).
unsafe impl GlobalAlloc for Heap {
    // SAFETY: GlobalAlloc's contract (non-zero size); the impl's SAFETY above holds.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut st = self.state.lock();
        if let Some(class) = small_class(&layout) {
            if let Some(b) = State::pop(&mut st.small[class]) {
                return b as *mut u8;
            }
            let page = st.alloc_pages(0, PAGE);
            if page == 0 {
                return null_mut();
            }
            let size = 16usize << class;
            let mut off = size;
            while off < PAGE {
                State::push(&mut st.small[class], page + off);
                off += size;
            }
            return page as *mut u8;
        }
        let order = page_order(&layout);
        if order >= ORDERS {
            return null_mut();
        }
        st.alloc_pages(order, layout.align()) as *mut u8
    }

    // SAFETY: as `alloc`, and the returned block is zeroed before it is handed out.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarding the caller's contract to `alloc`.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: `p` is a fresh allocation of at least `layout.size()` bytes.
            unsafe { (self.zero)(p, layout.size()) };
        }
        p
    }

    // SAFETY: the caller passes a block `alloc` returned with this layout, so it goes back to its own list.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let mut st = self.state.lock();
        if let Some(class) = small_class(&layout) {
            State::push(&mut st.small[class], ptr as usize);
        } else {
            let order = page_order(&layout);
            State::push(&mut st.pages[order], ptr as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C, align(4096))]
    struct Arena([u8; 64 * PAGE]);

    #[test]
    fn blocks_are_aligned_distinct_reused_and_zeroed() {
        let arena = Box::leak(Box::new(Arena([0; 64 * PAGE])));
        let start = arena.0.as_mut_ptr() as usize;
        let heap = Heap::new(write_zeroes);
        // SAFETY: the leaked arena is used by nothing else.
        unsafe { heap.init(start, start + 64 * PAGE) };
        let page = Layout::from_size_align(PAGE, PAGE).unwrap();
        let small = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: non-zero layouts; every block is freed with its own layout.
        unsafe {
            let a = heap.alloc(page);
            let b = heap.alloc(page);
            assert!((a as usize).is_multiple_of(PAGE) && (b as usize).is_multiple_of(PAGE) && a != b);
            a.write_bytes(0xaa, PAGE);
            heap.dealloc(a, page);
            let c = heap.alloc_zeroed(page);
            assert_eq!(c, a, "the freed frame comes back first");
            assert!(core::slice::from_raw_parts(c, PAGE).iter().all(|&x| x == 0), "zeroed");
            let s1 = heap.alloc(small);
            let s2 = heap.alloc(small);
            assert!(
                s1 != s2 && (s1 as usize).is_multiple_of(32) && (s2 as usize).is_multiple_of(32),
                "the 32-byte class"
            );
            assert_eq!(s1 as usize / PAGE, s2 as usize / PAGE, "carved from one page");
            let big = Layout::from_size_align(3 * PAGE, PAGE).unwrap();
            let r = heap.alloc(big);
            assert!(!r.is_null() && (r as usize).is_multiple_of(PAGE));
            let used = heap.used_bytes();
            assert!(used >= 7 * PAGE, "{used}");
            // Out of range: a null pointer, not a wild one.
            let huge = Layout::from_size_align(128 * PAGE, PAGE).unwrap();
            assert!(heap.alloc(huge).is_null());
            for p in [b, c, r] {
                heap.dealloc(p, if p == r { big } else { page });
            }
            heap.dealloc(s1, small);
            heap.dealloc(s2, small);
        }
    }

    #[test]
    fn freeing_a_big_domain_is_linear() {
        // 16 Ki frames allocated and freed (a 64 MiB domain) stay well under
        // a second even unoptimised: every free is O(1).
        const N: usize = 16 * 1024;
        let layout = Layout::from_size_align(N * PAGE + PAGE, PAGE).unwrap();
        // SAFETY: a non-zero layout; the region is leaked to the heap.
        let base = unsafe { std::alloc::alloc(layout) } as usize;
        let heap = Heap::new(write_zeroes);
        // SAFETY: the region is used by nothing else.
        unsafe { heap.init(base, base + N * PAGE + PAGE) };
        let page = Layout::from_size_align(PAGE, PAGE).unwrap();
        let t = std::time::Instant::now();
        // SAFETY: as above.
        let frames: Vec<*mut u8> = (0..N).map(|_| unsafe { heap.alloc(page) }).collect();
        assert!(frames.iter().all(|p| !p.is_null()));
        for p in frames {
            // SAFETY: each frame once, with its layout.
            unsafe { heap.dealloc(p, page) };
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
