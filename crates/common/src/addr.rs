//! Typed guest addresses: guest-physical addresses ([`Gpa`]), guest-virtual
//! addresses ([`Gva`]) and guest frame numbers ([`Gfn`]) are distinct types,
//! so a virtual address can never be looked up in the p2m by mistake.

use core::fmt;

/// Size of a guest page on every supported architecture (4 KiB granule).
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address {
    ($(#[$m:meta])* $name:ident, $fmt:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or `None` on overflow.
            pub fn checked_add(self, bytes: u64) -> Option<Self> {
                self.0.checked_add(bytes).map($name)
            }

            /// Byte offset within its 4 KiB page.
            pub const fn page_offset(self) -> usize {
                (self.0 as usize) & (PAGE_SIZE - 1)
            }

            /// Bytes from here to the end of its page.
            pub const fn bytes_to_page_end(self) -> usize {
                PAGE_SIZE - self.page_offset()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($fmt, "{:#x}"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address!(
    /// A guest-physical address (an intermediate physical address, in
    /// two-stage translation terms).
    Gpa,
    "gpa:"
);
address!(
    /// A guest-virtual address, meaningful only with one vCPU's translation.
    Gva,
    "gva:"
);

/// A guest frame number: a guest-physical address >> 12.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Gfn(pub u64);

impl Gfn {
    /// `INVALID_GFN`.
    pub const INVALID: Gfn = Gfn(u64::MAX);

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The address of the frame's first byte, or `None` if it does not fit
    /// in 64 bits.
    pub fn gpa(self) -> Option<Gpa> {
        let a = self.0.checked_shl(PAGE_SHIFT)?;
        (a >> PAGE_SHIFT == self.0).then_some(Gpa(a))
    }

    /// The frame `n` frames on, or `None` on overflow.
    pub fn checked_add(self, n: u64) -> Option<Gfn> {
        self.0.checked_add(n).map(Gfn)
    }
}

impl Gpa {
    /// The frame this address lies in.
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> PAGE_SHIFT)
    }
}

impl fmt::Debug for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gfn:{:#x}", self.0)
    }
}

impl fmt::LowerHex for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::Display for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_offsets() {
        let a = Gpa(0x1234_5678);
        assert_eq!(a.gfn(), Gfn(0x12345));
        assert_eq!(a.page_offset(), 0x678);
        assert_eq!(a.bytes_to_page_end(), 0x1000 - 0x678);
        assert_eq!(Gfn(0x12345).gpa(), Some(Gpa(0x1234_5000)));
        assert_eq!(Gfn(u64::MAX).gpa(), None);
        assert_eq!(Gfn(1 << 52).gpa(), None, "the shift must not wrap");
        assert_eq!(Gfn((1 << 52) - 1).gpa(), Some(Gpa(!0xFFF)));
        assert_eq!(Gpa(u64::MAX).checked_add(1), None);
        assert_eq!(format!("{:?}", Gva(0x10)), "gva:0x10");
    }
}
