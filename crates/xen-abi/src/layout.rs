//! The layout axis of the arch boundary: where each field of the Xen guest
//! ABI structs (`vcpu_info`, `shared_info`, `vcpu_runstate_info`,
//! `vcpu_time_info`, and the argument structs) lives for one guest ABI.
//!
//! A [`GuestAbi`] is a `static` in an arch crate, built from `#[repr(C)]`
//! mirrors of Xen's public headers with `offset_of!` (through
//! [`struct_layout!`](crate::struct_layout) and [`field_of!`](crate::field_of)),
//! so the numbers cannot drift from the types. x86 offers two (x86_64 native
//! and x86_32 compat, chosen per domain), arm64 one.

/// One field of a guest ABI struct: byte offset and size within the struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset from the start of the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

impl Field {
    /// A field at `offset` of `size` bytes.
    pub const fn new(offset: usize, size: usize) -> Self {
        Field { offset, size }
    }
}

/// A named field in a [`StructLayout`] table (`path` uses dots for nesting
/// and `name[i]` for array elements, e.g. `time.system_time`, `time[2]`).
#[derive(Clone, Copy, Debug)]
pub struct NamedField {
    /// Dotted path of the field.
    pub path: &'static str,
    /// Offset and size.
    pub field: Field,
}

/// A complete description of one guest ABI struct, used by `xtask abi`,
/// `docs/abi.md` and the gdb stub's decoders.
#[derive(Clone, Copy, Debug)]
pub struct StructLayout {
    /// Xen's name for the struct (`vcpu_info`, `shared_info`, ...).
    pub name: &'static str,
    /// `sizeof`.
    pub size: usize,
    /// `alignof`.
    pub align: usize,
    /// Every leaf field, in offset order.
    pub fields: &'static [NamedField],
}

impl StructLayout {
    /// Looks a field up by its dotted path.
    pub fn field(&self, path: &str) -> Option<Field> {
        self.fields.iter().find(|f| f.path == path).map(|f| f.field)
    }
}

/// Offsets the core needs inside `vcpu_info`.
#[derive(Clone, Copy, Debug)]
pub struct VcpuInfoLayout {
    /// `sizeof(vcpu_info)` (64 on x86 in both layouts, 48 on arm64).
    pub size: usize,
    /// Required alignment of a registered vcpu_info area.
    pub align: usize,
    /// `evtchn_upcall_pending` (1 byte).
    pub upcall_pending: Field,
    /// `evtchn_upcall_mask` (1 byte) where the ABI has one (x86); `None` on arm.
    pub upcall_mask: Option<Field>,
    /// `evtchn_pending_sel` (`xen_ulong_t`: 8 bytes native, 4 in x86_32 compat).
    pub pending_sel: Field,
    /// Offset of the embedded `vcpu_time_info`.
    pub time: usize,
}

/// Offsets the core needs inside `shared_info`.
#[derive(Clone, Copy, Debug)]
pub struct SharedInfoLayout {
    /// `sizeof(shared_info)`.
    pub size: usize,
    /// Offset of `vcpu_info[0]`; slot `i` is at `vcpu_info + i * sizeof(vcpu_info)`.
    pub vcpu_info: usize,
    /// `evtchn_pending[]`: array of `xen_ulong_t` words.
    pub evtchn_pending: Field,
    /// `evtchn_mask[]`: array of `xen_ulong_t` words.
    pub evtchn_mask: Field,
    /// `wc_version`.
    pub wc_version: Field,
    /// `wc_sec`.
    pub wc_sec: Field,
    /// `wc_nsec`.
    pub wc_nsec: Field,
}

/// Offsets inside `vcpu_runstate_info`.
#[derive(Clone, Copy, Debug)]
pub struct RunstateLayout {
    /// `sizeof(vcpu_runstate_info)` (48 native, 44 x86_32 compat).
    pub size: usize,
    /// Required alignment of a registered runstate area.
    pub align: usize,
    /// `state` (int).
    pub state: Field,
    /// `state_entry_time` (u64, with `XEN_RUNSTATE_UPDATE` in bit 63).
    pub state_entry_time: Field,
    /// `time[4]` (u64 each).
    pub time: Field,
}

/// Offsets inside `vcpu_time_info` (32 bytes in every layout).
#[derive(Clone, Copy, Debug)]
pub struct TimeInfoLayout {
    /// `sizeof(vcpu_time_info)`.
    pub size: usize,
    /// Required alignment of a registered time area.
    pub align: usize,
    /// `version` (u32; odd while an update is in progress).
    pub version: Field,
    /// `tsc_timestamp` (u64).
    pub tsc_timestamp: Field,
    /// `system_time` (u64, ns).
    pub system_time: Field,
    /// `tsc_to_system_mul` (u32).
    pub tsc_to_system_mul: Field,
    /// `tsc_shift` (i8).
    pub tsc_shift: Field,
    /// `flags` (u8).
    pub flags: Field,
}

/// The layout axis of the arch boundary: one guest ABI's struct layouts.
///
/// Implementations are `static` values in the arch crates, built from
/// `#[repr(C)]` mirrors of Xen's public headers with `offset_of!`, so the
/// numbers here cannot drift from the types.
pub trait GuestAbi: Sync + Send {
    /// Short name shown to users: `x86_64`, `x86_32` or `arm64`.
    fn name(&self) -> &'static str;
    /// `XEN_LEGACY_MAX_VCPUS`: vCPUs below this id have a slot in shared_info
    /// (32 on x86, 1 on arm64); the rest start on the dummy area.
    fn legacy_max_vcpus(&self) -> u32;
    /// Size of `xen_ulong_t` (event-channel words and `evtchn_pending_sel`).
    fn xen_ulong_size(&self) -> usize;
    /// `vcpu_info` offsets.
    fn vcpu_info(&self) -> &VcpuInfoLayout;
    /// `shared_info` offsets.
    fn shared_info(&self) -> &SharedInfoLayout;
    /// `vcpu_runstate_info` offsets.
    fn runstate(&self) -> &RunstateLayout;
    /// `vcpu_time_info` offsets.
    fn time_info(&self) -> &TimeInfoLayout;
    /// Every struct of this ABI, fully described (for tools and the gdb stub).
    fn structs(&self) -> &'static [StructLayout];

    /// Whether `vcpu_info` has an `evtchn_upcall_mask` (x86 yes, arm no).
    fn has_upcall_mask(&self) -> bool {
        self.vcpu_info().upcall_mask.is_some()
    }

    /// Finds a struct description by name.
    fn struct_layout(&self, name: &str) -> Option<&'static StructLayout> {
        self.structs().iter().find(|s| s.name == name)
    }
}

/// Builds a [`StructLayout`] for a `#[repr(C)]` mirror type from its fields,
/// with offsets from `offset_of!` and sizes from the named field types:
///
/// ```ignore
/// struct_layout!("vcpu_runstate_info", Runstate, {
///     "state" => state: i32,
///     "time[1]" => time[1]: u64,
/// })
/// ```
#[macro_export]
macro_rules! struct_layout {
    ($name:literal, $ty:ty, { $( $path:literal => $($field:ident).+ $([$idx:literal])? : $fty:ty ),* $(,)? }) => {
        $crate::layout::StructLayout {
            name: $name,
            size: ::core::mem::size_of::<$ty>(),
            align: ::core::mem::align_of::<$ty>(),
            fields: &[ $(
                $crate::layout::NamedField {
                    path: $path,
                    field: $crate::layout::Field::new(
                        ::core::mem::offset_of!($ty, $($field).+) $( + $idx * ::core::mem::size_of::<$fty>() )?,
                        ::core::mem::size_of::<$fty>(),
                    ),
                },
            )* ],
        }
    };
}

/// A field's [`Field`] (offset and size) in a `#[repr(C)]` mirror type.
#[macro_export]
macro_rules! field_of {
    ($ty:ty, $($field:ident).+ : $fty:ty) => {
        $crate::layout::Field::new(::core::mem::offset_of!($ty, $($field).+), ::core::mem::size_of::<$fty>())
    };
}

/// `a` followed by `b`, as one array of `N` (= `a.len() + b.len()`)
/// entries: lets an ABI's `static` struct table be assembled from tables kept
/// in different modules.
pub const fn concat_structs<const N: usize>(a: &[StructLayout], b: &[StructLayout]) -> [StructLayout; N] {
    assert!(a.len() + b.len() == N && N > 0);
    let first = if a.is_empty() { b[0] } else { a[0] };
    let mut out = [first; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < a.len() { a[i] } else { b[i - a.len()] };
        i += 1;
    }
    out
}
