//! The `virtio-drivers` [`Hal`] of a hypervisor whose heap pointers are
//! physical addresses (both boards run on an identity map) and whose MMIO is
//! mapped where it sits: DMA memory comes from the heap, sharing is a no-op.

use core::alloc::Layout;
use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

/// DMA through the identity-mapped heap.
pub struct IdentityHal;

fn pages_layout(pages: usize) -> Layout {
    // PAGE_SIZE is a power of two and the sizes are small: never fails.
    Layout::from_size_align(pages.max(1) * PAGE_SIZE, PAGE_SIZE).unwrap_or(Layout::new::<u8>())
}

// SAFETY: memory from `dma_alloc` is zeroed, page aligned, owned by the
// caller until `dma_dealloc`, and (identity map) its address is its physical
// address; `mmio_phys_to_virt` returns the address itself, which the boards
// map (Device / uncached) before probing; shared buffers are already visible
// to the device at their own addresses.
unsafe impl Hal for IdentityHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout's size is not zero.
        let p = unsafe { alloc::alloc::alloc_zeroed(pages_layout(pages)) };
        match NonNull::new(p) {
            Some(p) => (p.as_ptr() as PhysAddr, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller passes back what `dma_alloc` returned for `pages`.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), pages_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
