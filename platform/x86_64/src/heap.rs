//! The hypervisor heap and frame allocator: one `GlobalAlloc` over the RAM
//! that `hvm_start_info` reports free.
//!
//! Guest memory, nested page tables and VMCBs are all page-sized, page-aligned
//! allocations, and there are many of them (a 64 MiB domain is 16 Ki frames),
//! so a first-fit list allocator would go quadratic. Instead:
//! * requests up to 2 KiB come from power-of-two size classes carved out of
//!   whole pages, with one free list per class;
//! * larger requests take a power-of-two run of pages, with one free list per
//!   run length (order), carved from a bump pointer when the list is empty.
//!
//! Freed blocks go back to their list, so the common case (a page freed and
//! allocated again) is O(1). The identity map makes every pointer returned
//! here a host-physical address too.

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

/// The global allocator (see the module comment).
pub struct Heap {
    state: Mutex<State>,
}

#[global_allocator]
static HEAP: Heap =
    Heap { state: Mutex::new(State { next: 0, end: 0, small: [0; SMALL_CLASSES], pages: [0; ORDERS], used_pages: 0 }) };

/// Hands the physical range `[start, end)` (identity mapped, unused) to the heap.
pub fn init(start: usize, end: usize) {
    let mut st = HEAP.state.lock();
    st.next = (start + PAGE - 1) & !(PAGE - 1);
    st.end = end & !(PAGE - 1);
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
            let len = layout.size();
            // Guest RAM is zeroed page by page at domain creation; under
            // emulation one `rep stosq` per page is several times faster than
            // the generic byte-oriented memset.
            // SAFETY: `p` is a fresh allocation of at least `len` bytes; the
            // asm writes exactly `len / 8` words then `len % 8` bytes into it.
            unsafe {
                core::arch::asm!(
                    "rep stosq",
                    "mov rcx, {tail}",
                    "rep stosb",
                    tail = in(reg) len % 8,
                    inout("rcx") len / 8 => _,
                    inout("rdi") p => _,
                    in("rax") 0u64,
                    options(nostack),
                );
            }
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
