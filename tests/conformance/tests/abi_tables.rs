//! The layout tables `cargo xtask abi --json` exports, checked against
//! sizes, alignments and offsets derived by hand from the C declarations in
//! Xen's `xen/include/public` (written above each entry), with the i386
//! rules for x86_32 (`uint64_t` 4-aligned; handles, `xen_pfn_t`,
//! `xen_ulong_t` and `unsigned long` 4 bytes) and the arm rules for arm64
//! (handles 8 bytes, 8-aligned; `xen_ulong_t` and `xen_pfn_t` 64-bit).

use lantern_conformance::{layout, layouts};

/// One struct in one layout: size, alignment, and every field exported as
/// (path, offset, size).
struct Expect {
    size: usize,
    align: usize,
    fields: &'static [(&'static str, usize, usize)],
}

const fn e(size: usize, align: usize, fields: &'static [(&'static str, usize, usize)]) -> Expect {
    Expect { size, align, fields }
}

/// (struct, x86_64, x86_32, arm64).
fn table() -> Vec<(&'static str, Expect, Expect, Expect)> {
    // union { XEN_GUEST_HANDLE(...) h; T *v; uint64_t p; } addr;
    const AREA64: &[(&str, usize, usize)] = &[("addr.h", 0, 8), ("addr.v", 0, 8), ("addr.p", 0, 8)];
    const AREA32: &[(&str, usize, usize)] = &[("addr.h", 0, 4), ("addr.v", 0, 4), ("addr.p", 0, 8)];
    // { uint64_t timeout_abs_ns; uint32_t flags; }
    const SSHOT: &[(&str, usize, usize)] = &[("timeout_abs_ns", 0, 8), ("flags", 8, 4)];
    // { uint64_t period_ns; }
    const PERIODIC: &[(&str, usize, usize)] = &[("period_ns", 0, 8)];
    // { uint64_t mfn; uint32_t offset; uint32_t rsvd; }
    const RVI: &[(&str, usize, usize)] = &[("mfn", 0, 8), ("offset", 8, 4), ("rsvd", 12, 4)];
    // { domid_t dom; uint32_t nr_frames; int16_t status; XEN_GUEST_HANDLE(xen_pfn_t) frame_list; }
    const SETUP64: &[(&str, usize, usize)] =
        &[("dom", 0, 2), ("nr_frames", 4, 4), ("status", 8, 2), ("frame_list", 16, 8)];
    const SETUP32: &[(&str, usize, usize)] =
        &[("dom", 0, 2), ("nr_frames", 4, 4), ("status", 8, 2), ("frame_list", 12, 4)];
    // { domid_t dom; uint32_t nr_frames; uint32_t max_nr_frames; int16_t status; }
    const QUERY: &[(&str, usize, usize)] =
        &[("dom", 0, 2), ("nr_frames", 4, 4), ("max_nr_frames", 8, 4), ("status", 12, 2)];
    // { uint64_t host_addr; uint32_t flags; grant_ref_t ref; domid_t dom; int16_t status;
    //   grant_handle_t handle; uint64_t dev_bus_addr; }
    const MAP: &[(&str, usize, usize)] = &[
        ("host_addr", 0, 8),
        ("flags", 8, 4),
        ("ref", 12, 4),
        ("dom", 16, 2),
        ("status", 18, 2),
        ("handle", 20, 4),
        ("dev_bus_addr", 24, 8),
    ];
    // { uint64_t host_addr; uint64_t dev_bus_addr; grant_handle_t handle; int16_t status; }
    const UNMAP: &[(&str, usize, usize)] =
        &[("host_addr", 0, 8), ("dev_bus_addr", 8, 8), ("handle", 16, 4), ("status", 20, 2)];
    // struct gnttab_copy_ptr { union { grant_ref_t ref; xen_pfn_t gmfn; } u; domid_t domid; uint16_t offset; }
    //   source, dest; uint16_t len; uint16_t flags; int16_t status;
    const COPY64: &[(&str, usize, usize)] = &[
        ("source.u", 0, 8),
        ("source.domid", 8, 2),
        ("source.offset", 10, 2),
        ("dest.u", 16, 8),
        ("dest.domid", 24, 2),
        ("dest.offset", 26, 2),
        ("len", 32, 2),
        ("flags", 34, 2),
        ("status", 36, 2),
    ];
    const COPY32: &[(&str, usize, usize)] = &[
        ("source.u", 0, 4),
        ("source.domid", 4, 2),
        ("source.offset", 6, 2),
        ("dest.u", 8, 4),
        ("dest.domid", 12, 2),
        ("dest.offset", 14, 2),
        ("len", 16, 2),
        ("flags", 18, 2),
        ("status", 20, 2),
    ];
    // { uint32_t version; }
    const SETVER: &[(&str, usize, usize)] = &[("version", 0, 4)];
    // { uint16_t flags; domid_t domid; uint32_t frame; }
    const GE1: &[(&str, usize, usize)] = &[("flags", 0, 2), ("domid", 2, 2), ("frame", 4, 4)];
    // { domid_t dom, remote_dom; evtchn_port_t port; }
    const UNBOUND: &[(&str, usize, usize)] = &[("dom", 0, 2), ("remote_dom", 2, 2), ("port", 4, 4)];
    // { domid_t remote_dom; evtchn_port_t remote_port; evtchn_port_t local_port; }
    const INTERDOM: &[(&str, usize, usize)] = &[("remote_dom", 0, 2), ("remote_port", 4, 4), ("local_port", 8, 4)];
    // { uint32_t virq; uint32_t vcpu; evtchn_port_t port; }
    const VIRQ: &[(&str, usize, usize)] = &[("virq", 0, 4), ("vcpu", 4, 4), ("port", 8, 4)];
    // { domid_t dom; evtchn_port_t port; uint32_t status; uint32_t vcpu;
    //   union { struct { domid_t dom; } unbound; struct { domid_t dom; evtchn_port_t port; } interdomain;
    //           uint32_t pirq; uint32_t virq; } u; }
    const STATUS: &[(&str, usize, usize)] = &[
        ("dom", 0, 2),
        ("port", 4, 4),
        ("status", 8, 4),
        ("vcpu", 12, 4),
        ("u.unbound.dom", 16, 2),
        ("u.interdomain.dom", 16, 2),
        ("u.interdomain.port", 20, 4),
        ("u.pirq", 16, 4),
        ("u.virq", 16, 4),
    ];
    // { uint64_t control_gfn; uint32_t offset; uint32_t vcpu; uint8_t link_bits; uint8_t _pad[7]; }
    const INIT: &[(&str, usize, usize)] =
        &[("control_gfn", 0, 8), ("offset", 8, 4), ("vcpu", 12, 4), ("link_bits", 16, 1)];
    // { uint64_t array_gfn; }
    const EXPAND: &[(&str, usize, usize)] = &[("array_gfn", 0, 8)];
    // { evtchn_port_t port; uint32_t priority; }
    const PRIO: &[(&str, usize, usize)] = &[("port", 0, 4), ("priority", 4, 4)];
    // { uint32_t ready; uint32_t _rsvd; uint32_t head[EVTCHN_FIFO_MAX_QUEUES = 16]; }
    const FIFO: &[(&str, usize, usize)] = &[("ready", 0, 4), ("head", 8, 64)];
    // { XEN_GUEST_HANDLE(xen_pfn_t) extent_start; xen_ulong_t nr_extents; unsigned int extent_order;
    //   unsigned int mem_flags; domid_t domid; }
    const RES64: &[(&str, usize, usize)] = &[
        ("extent_start", 0, 8),
        ("nr_extents", 8, 8),
        ("extent_order", 16, 4),
        ("mem_flags", 20, 4),
        ("domid", 24, 2),
    ];
    const RES32: &[(&str, usize, usize)] =
        &[("extent_start", 0, 4), ("nr_extents", 4, 4), ("extent_order", 8, 4), ("mem_flags", 12, 4), ("domid", 16, 2)];
    // { XEN_GUEST_HANDLE(evtchn_port_t) ports; unsigned int nr_ports; uint64_t timeout; }
    const POLL64: &[(&str, usize, usize)] = &[("ports", 0, 8), ("nr_ports", 8, 4), ("timeout", 16, 8)];
    const POLL32: &[(&str, usize, usize)] = &[("ports", 0, 4), ("nr_ports", 4, 4), ("timeout", 8, 8)];
    // { char in[1024]; char out[2048]; XENCONS_RING_IDX in_cons, in_prod; XENCONS_RING_IDX out_cons, out_prod;
    //   uint8_t connection; }
    const CONS: &[(&str, usize, usize)] = &[
        ("in", 0, 1024),
        ("out", 1024, 2048),
        ("in_cons", 3072, 4),
        ("in_prod", 3076, 4),
        ("out_cons", 3080, 4),
        ("out_prod", 3084, 4),
        ("connection", 3088, 1),
    ];
    let same = |size, align, f| (e(size, align, f), e(size, align, f), e(size, align, f));
    let native_compat = |s64, a64, f64, s32, a32, f32| (e(s64, a64, f64), e(s32, a32, f32), e(s64, a64, f64));
    let rows = vec![
        // x86_64 { unsigned long cr2; unsigned long pad; }, x86_32 { unsigned long cr2; unsigned long pad[5]; },
        // arm { } (empty).
        (
            "arch_vcpu_info",
            (e(16, 8, &[("cr2", 0, 8), ("pad", 8, 8)]), e(24, 4, &[("cr2", 0, 4), ("pad", 4, 20)]), e(0, 1, &[])),
        ),
        ("vcpu_register_vcpu_info", native_compat(16, 8, RVI, 16, 4, RVI)),
        ("vcpu_register_runstate_memory_area", native_compat(8, 8, AREA64, 8, 4, AREA32)),
        ("vcpu_register_time_memory_area", native_compat(8, 8, AREA64, 8, 4, AREA32)),
        ("vcpu_set_singleshot_timer", native_compat(16, 8, SSHOT, 12, 4, SSHOT)),
        ("vcpu_set_periodic_timer", native_compat(8, 8, PERIODIC, 8, 4, PERIODIC)),
        ("gnttab_setup_table", native_compat(24, 8, SETUP64, 16, 4, SETUP32)),
        ("gnttab_query_size", same(16, 4, QUERY)),
        ("gnttab_map_grant_ref", native_compat(32, 8, MAP, 32, 4, MAP)),
        ("gnttab_unmap_grant_ref", native_compat(24, 8, UNMAP, 24, 4, UNMAP)),
        ("gnttab_copy", native_compat(40, 8, COPY64, 24, 4, COPY32)),
        ("gnttab_set_version", same(4, 4, SETVER)),
        ("grant_entry_v1", same(8, 4, GE1)),
        ("evtchn_alloc_unbound", same(8, 4, UNBOUND)),
        ("evtchn_bind_interdomain", same(12, 4, INTERDOM)),
        ("evtchn_bind_virq", same(12, 4, VIRQ)),
        ("evtchn_status", same(24, 4, STATUS)),
        ("evtchn_init_control", native_compat(24, 8, INIT, 24, 4, INIT)),
        ("evtchn_expand_array", native_compat(8, 8, EXPAND, 8, 4, EXPAND)),
        ("evtchn_set_priority", same(8, 4, PRIO)),
        ("evtchn_fifo_control_block", same(72, 4, FIFO)),
        ("xen_memory_reservation", native_compat(32, 8, RES64, 20, 4, RES32)),
        ("sched_poll", native_compat(24, 8, POLL64, 16, 4, POLL32)),
        ("xencons_interface", same(3092, 4, CONS)),
    ];
    rows.into_iter().map(|(n, (a, b, c))| (n, a, b, c)).collect()
}

#[test]
fn every_new_abi_struct_matches_the_c_headers_in_every_layout() {
    let mut bad = Vec::new();
    for (name, x64, x32, arm) in table() {
        for (lname, want) in [("x86_64", x64), ("x86_32", x32), ("arm64", arm)] {
            let Some(got) = layout(lname).struct_layout(name) else {
                bad.push(format!("{lname} {name}: missing"));
                continue;
            };
            if (got.size, got.align) != (want.size, want.align) {
                bad.push(format!(
                    "{lname} {name}: size/align {}/{} want {}/{}",
                    got.size, got.align, want.size, want.align
                ));
            }
            let got_fields: Vec<_> = got.fields.iter().map(|f| (f.path, f.field.offset, f.field.size)).collect();
            if got_fields != want.fields {
                bad.push(format!("{lname} {name}: fields {got_fields:?} want {:?}", want.fields));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn no_layout_exports_a_struct_twice() {
    for abi in layouts() {
        let mut names: Vec<_> = abi.structs().iter().map(|s| s.name).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "{}", abi.name());
    }
}
