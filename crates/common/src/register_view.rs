//! Which register description a debugger session gives gdb for a vCPU —
//! the arch's own, or its narrow one for a 32-bit guest debugged in a
//! session of its own — and the register file in that description, built
//! from (and written back through) the arch's full file.

use alloc::vec;
use alloc::vec::Vec;

use crate::arch::{GdbRegisters, NarrowRegisters, MAX_GDB_REGISTERS};
use crate::target_xml::register_span;
use xen_abi::errno::{Errno, XenResult};

/// The description a session uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegisterView {
    /// The arch's own description (every vCPU of a board alike: what the
    /// whole-system session shows).
    #[default]
    Full,
    /// The arch's narrow description if it has one (else the full one):
    /// a 32-bit guest's own session.
    Narrow,
}

impl RegisterView {
    fn narrow(self, v: &dyn GdbRegisters) -> Option<&'static NarrowRegisters> {
        match self {
            RegisterView::Full => None,
            RegisterView::Narrow => v.narrow_registers(),
        }
    }

    /// The target description.
    pub fn target_xml(self, v: &dyn GdbRegisters) -> &'static str {
        self.narrow(v).map_or_else(|| v.target_xml(), |n| n.target_xml)
    }

    /// The register file into `out`; bytes written (0 if `out` is short).
    pub fn read(self, v: &dyn GdbRegisters, out: &mut [u8]) -> usize {
        let Some(n) = self.narrow(v) else { return v.read_registers(out) };
        let mut full = vec![0u8; MAX_GDB_REGISTERS];
        let len = v.read_registers(&mut full);
        let size = n.size();
        if out.len() < size || n.pieces.iter().any(|p| p.full + p.len > len) {
            return 0;
        }
        for p in n.pieces {
            out[p.narrow..p.narrow + p.len].copy_from_slice(&full[p.full..p.full + p.len]);
        }
        size
    }

    /// Loads the register file from gdb's bytes. A narrow file patches the
    /// full one (a shorter file only the pieces it covers), which the arch
    /// then validates and writes as a whole.
    pub fn write(self, v: &mut dyn GdbRegisters, data: &[u8]) -> XenResult<()> {
        let Some(n) = self.narrow(v) else { return v.write_registers(data) };
        let mut full = vec![0u8; MAX_GDB_REGISTERS];
        let len = v.read_registers(&mut full);
        full.truncate(len);
        if data.len() > n.size() {
            return Err(Errno::EINVAL);
        }
        for p in n.pieces.iter().filter(|p| p.narrow + p.len <= data.len()) {
            let dst = full.get_mut(p.full..p.full + p.len).ok_or(Errno::EINVAL)?;
            dst.copy_from_slice(&data[p.narrow..p.narrow + p.len]);
        }
        v.write_registers(&full)
    }

    /// gdb register `regnum` (its place in [`RegisterView::target_xml`])
    /// into `out`; bytes written, 0 if there is none or `out` is short.
    pub fn read_one(self, v: &dyn GdbRegisters, regnum: usize, out: &mut [u8]) -> usize {
        if self.narrow(v).is_none() {
            return v.read_register(regnum, out);
        }
        let Some((offset, size)) = register_span(self.target_xml(v), regnum) else { return 0 };
        let mut file = vec![0u8; MAX_GDB_REGISTERS];
        if out.len() < size || self.read(v, &mut file) < offset + size {
            return 0;
        }
        out[..size].copy_from_slice(&file[offset..offset + size]);
        size
    }

    /// Loads gdb register `regnum` from `data` (exactly its size).
    pub fn write_one(self, v: &mut dyn GdbRegisters, regnum: usize, data: &[u8]) -> XenResult<()> {
        if self.narrow(v).is_none() {
            return v.write_register(regnum, data);
        }
        let (offset, size) = register_span(self.target_xml(v), regnum).ok_or(Errno::EINVAL)?;
        let mut file: Vec<u8> = vec![0u8; MAX_GDB_REGISTERS];
        let n = self.read(v, &mut file);
        if data.len() != size || n < offset + size {
            return Err(Errno::EINVAL);
        }
        file.truncate(n);
        file[offset..offset + size].copy_from_slice(data);
        self.write(v, &file)
    }
}
