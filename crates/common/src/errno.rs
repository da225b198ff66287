//! Xen error numbers as returned to guests (negated) and the core's `Result` type.
//!
//! The values are Xen's own (`xen/include/public/errno.h`), which match Linux's
//! for the subset used here; guests compare against them.

use core::fmt;

/// A Xen errno, stored positive; [`Errno::to_hypercall_ret`] negates it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// The result of a core operation that a guest may see.
pub type XenResult<T = ()> = Result<T, Errno>;

// Xen's errno names document themselves.
#[allow(missing_docs)]
impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const ESRCH: Errno = Errno(3);
    pub const EIO: Errno = Errno(5);
    pub const ENXIO: Errno = Errno(6);
    pub const E2BIG: Errno = Errno(7);
    pub const EAGAIN: Errno = Errno(11);
    pub const ENOMEM: Errno = Errno(12);
    pub const EACCES: Errno = Errno(13);
    pub const EFAULT: Errno = Errno(14);
    pub const EBUSY: Errno = Errno(16);
    pub const EEXIST: Errno = Errno(17);
    pub const ENODEV: Errno = Errno(19);
    pub const EINVAL: Errno = Errno(22);
    pub const ENOSPC: Errno = Errno(28);
    pub const ERANGE: Errno = Errno(34);
    pub const ENOSYS: Errno = Errno(38);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const EALREADY: Errno = Errno(114);

    /// The value a hypercall returns for this error: `-errno`.
    pub const fn to_hypercall_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// Xen's symbolic name, for logs and the gdb stub.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            5 => "EIO",
            6 => "ENXIO",
            7 => "E2BIG",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            22 => "EINVAL",
            28 => "ENOSPC",
            34 => "ERANGE",
            38 => "ENOSYS",
            95 => "EOPNOTSUPP",
            114 => "EALREADY",
            _ => "E?",
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
