//! Xen error numbers as returned to guests (negated) and the `Result` type
//! every guest-visible operation returns.
//!
//! The values are Xen's own (`xen/include/public/errno.h`), which match
//! Linux's for the subset used here; guests compare against them.

use core::fmt;

/// A Xen errno, stored positive; [`Errno::to_hypercall_ret`] negates it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub i32);

/// The result of an operation a guest may see.
pub type XenResult<T = ()> = Result<T, Errno>;

macro_rules! errnos {
    ($($name:ident = $v:literal),* $(,)?) => {
        // Xen's errno names document themselves.
        #[allow(missing_docs)]
        impl Errno {
            $(pub const $name: Errno = Errno($v);)*

            /// Every errno Lantern can return, in numeric order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name),*];

            /// Xen's symbolic name, for logs and the gdb stub.
            pub const fn name(self) -> &'static str {
                match self.0 {
                    $($v => stringify!($name),)*
                    _ => "E?",
                }
            }
        }
    };
}

errnos! {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EIO = 5,
    ENXIO = 6,
    E2BIG = 7,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EBUSY = 16,
    EEXIST = 17,
    ENODEV = 19,
    EINVAL = 22,
    ENOSPC = 28,
    EDOM = 33,
    ERANGE = 34,
    ENOSYS = 38,
    ETIME = 62,
    EOPNOTSUPP = 95,
    EALREADY = 114,
}

impl Errno {
    /// The value a hypercall returns for this error: `-errno`.
    pub const fn to_hypercall_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// The errno a hypercall return value encodes, if it is one (`-4095..=-1`,
    /// as Linux's `IS_ERR_VALUE`).
    pub const fn from_hypercall_ret(ret: i64) -> Option<Errno> {
        if ret < 0 && ret >= -4095 {
            Some(Errno(-ret as i32))
        } else {
            None
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Folds a hypercall result into the register value a guest sees.
pub fn hypercall_ret(r: XenResult<i64>) -> i64 {
    match r {
        Ok(v) => v,
        Err(e) => e.to_hypercall_ret(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_round_trip() {
        assert_eq!(Errno::EINVAL.name(), "EINVAL");
        assert_eq!(Errno(9999).name(), "E?");
        for &e in Errno::ALL {
            assert_eq!(Errno::from_hypercall_ret(e.to_hypercall_ret()), Some(e));
        }
        assert_eq!(Errno::from_hypercall_ret(0), None);
        assert_eq!(hypercall_ret(Err(Errno::ENOSYS)), -38);
        assert!(Errno::ALL.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
