//! Line-oriented console output: fixed-size buffers, no allocation, and a
//! lock so lines from different vCPUs never interleave.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

/// A fixed-capacity text buffer usable with `write!`; text past the capacity
/// is dropped (a truncated line beats a panic inside a test guest).
pub struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are appended (truncation backs off to a char
        // boundary), so the contents are always valid UTF-8.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Forget the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for Buf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut take = s.len().min(N - self.len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Displays a command line as one `key=value`-safe word: its
/// whitespace-separated words joined with commas (empty stays empty).
pub struct Words<'a>(pub &'a str);

impl fmt::Display for Words<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.0.split_ascii_whitespace().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(w)?;
        }
        Ok(())
    }
}

/// Format one console line (newline appended) and hand it to `out` whole,
/// so lines from different vCPUs never interleave mid-line.
pub fn line(out: &dyn Fn(&[u8]), args: fmt::Arguments<'_>) {
    let mut b = Buf::<256>::new();
    let _ = fmt::write(&mut b, args);
    let _ = fmt::Write::write_str(&mut b, "\n");
    out(b.as_bytes());
}

/// Serialises console output from different vCPUs: a spin lock (there is
/// no scheduler to sleep on), held while one line goes out.
pub struct LineLock(AtomicBool);

impl LineLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        LineLock(AtomicBool::new(false))
    }

    /// Run `f` holding the lock.
    pub fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        while self.0.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        let r = f();
        self.0.store(false, Ordering::Release);
        r
    }
}

impl Default for LineLock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn truncates_on_char_boundary() {
        let mut b = Buf::<4>::new();
        let _ = write!(b, "ab\u{e9}\u{e9}");
        assert_eq!(b.as_str(), "ab\u{e9}");
    }

    #[test]
    fn words_joined_with_commas() {
        assert_eq!(format!("{}", Words("  linger  bench ")), "linger,bench");
        assert_eq!(format!("{}", Words("")), "");
    }

    #[test]
    fn line_lock_is_released() {
        let lock = LineLock::new();
        assert_eq!(lock.with(|| 1), 1);
        assert_eq!(lock.with(|| 2), 2, "a second holder gets the lock");
    }

    #[test]
    fn line_appends_newline() {
        let got = std::cell::RefCell::new(Vec::new());
        line(&|b| got.borrow_mut().extend_from_slice(b), format_args!("CHECK PASS {}", "x"));
        assert_eq!(&got.borrow()[..], b"CHECK PASS x\n");
    }
}
