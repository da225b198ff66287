//! The hypervisor's debug keys (Xen's keyhandlers): what a person typing at
//! the serial console gets while input goes to the hypervisor — the domains
//! and their vCPUs' guest areas, runstates, event channels and grant tables,
//! described with the same model (and the same area wording) as the gdb
//! stub's monitor commands.

use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use crate::area::AreaKind;
use crate::domain::Domain;
use crate::evtchn;
use crate::grants::ENTRIES_PER_FRAME;
use crate::guest_area;
use crate::ports::ChannelState;
use crate::pv_console;
use xen_abi::nr::{gtf, runstate};
use xen_abi::public::GrantEntryV1;

/// Every key with what it dumps, in the order `h` lists them.
pub const KEYS: &[(u8, &str)] = &[
    (b'h', "this list"),
    (b'q', "domains and vCPUs: state, layout, where each vcpu_info lives"),
    (b'r', "runstates of every vCPU (hypervisor copy, registered area)"),
    (b'e', "event channels of every domain: port, binding, vCPU, pending/masked"),
    (b'g', "grant tables of every domain: version, frames, entries in use, pins"),
];

/// Runs debug key `key` over `domains`; returns its output (complete lines).
pub fn run(domains: &[&Domain], key: u8) -> String {
    let mut s = String::new();
    match key {
        b'h' => help(&mut s),
        b'q' => domains.iter().for_each(|d| domain_info(d, &mut s)),
        b'r' => domains.iter().for_each(|d| runstates(d, &mut s)),
        b'e' => domains.iter().for_each(|d| event_channels(d, &mut s)),
        b'g' => domains.iter().for_each(|d| grant_table(d, &mut s)),
        k => {
            let shown = if k.is_ascii_graphic() { format!("'{}'", k as char) } else { format!("{k:#04x}") };
            let _ = writeln!(s, "no debug key {shown} (h lists them)");
        }
    }
    s
}

fn help(s: &mut String) {
    s.push_str("debug keys (while serial input goes to the hypervisor):\n");
    for (k, what) in KEYS {
        let _ = writeln!(s, "  {}  {what}", *k as char);
    }
}

fn domain_info(d: &Domain, s: &mut String) {
    let si = d.shared_info_gfn().map(|g| format!("{:#x}", g.0)).unwrap_or_else(|| String::from("unmapped"));
    let _ = write!(
        s,
        "d{} '{}' layout {} vcpus {} {} pause {} shared_info gfn {si}",
        d.id,
        d.name,
        d.abi().name(),
        d.max_vcpus(),
        d.lifecycle().name(),
        d.pause_count()
    );
    match pv_console::of(d) {
        Some(c) => {
            let _ = writeln!(s, " console gfn {:#x} port {}", c.gfn.0, c.port);
        }
        None => s.push_str(" no console\n"),
    }
    for v in d.vcpus() {
        let a = v.areas();
        let _ = writeln!(
            s,
            "  d{}v{} {} pause {} flags {:#x} vector {} vcpu_info {}: {}",
            d.id,
            v.id,
            d.vcpu_state(v).name(),
            v.pause_count(),
            v.pause_flags(),
            v.upcall_vector(),
            a.vcpu_info.placement.name(),
            guest_area::location(d, AreaKind::VcpuInfo, &a.vcpu_info)
        );
    }
}

fn runstates(d: &Domain, s: &mut String) {
    for v in d.vcpus() {
        let r = v.runstate();
        let _ = write!(
            s,
            "d{}v{} {} since {} ns; ns running {} runnable {} blocked {} offline {}; ",
            d.id,
            v.id,
            runstate::name(r.state),
            r.state_entry_time,
            r.time[0],
            r.time[1],
            r.time[2],
            r.time[3]
        );
        match v.areas().runstate {
            Some(a) => {
                let _ = writeln!(s, "area at {}", guest_area::location(d, AreaKind::Runstate, &a));
            }
            None => s.push_str("no area registered\n"),
        }
    }
}

fn binding(state: ChannelState) -> String {
    match state {
        ChannelState::Free => String::from("free"),
        ChannelState::Unbound { remote } => format!("unbound (for d{remote})"),
        ChannelState::Virq { virq } => format!("virq {virq}"),
        ChannelState::Ipi => String::from("ipi"),
        ChannelState::Loopback { peer } => format!("interdomain to own port {peer}"),
        ChannelState::ConsoleBackend => String::from("console backend"),
        #[allow(unreachable_patterns)]
        other => format!("{other:?}"),
    }
}

fn event_channels(d: &Domain, s: &mut String) {
    let ports: alloc::vec::Vec<_> = d.evtchn.lock().iter().collect();
    let _ = writeln!(s, "d{} event channels: {} ports bound", d.id, ports.len());
    for (port, c) in ports {
        let (pending, masked) = evtchn::pending_and_masked(d, port);
        let _ = writeln!(
            s,
            "  port {port}: {} vcpu {} pending {} masked {}",
            binding(c.state),
            c.notify_vcpu,
            pending as u8,
            masked as u8
        );
    }
}

fn grant_table(d: &Domain, s: &mut String) {
    let gt = d.grant_table.lock();
    let gfns: alloc::vec::Vec<String> = gt
        .frames
        .iter()
        .map(|f| if f.gfn.0 == crate::memory::Gfn::INVALID.0 { String::from("-") } else { format!("{:#x}", f.gfn.0) })
        .collect();
    let mut used = String::new();
    let mut in_use = 0;
    for gref in 0..gt.frames.len() as u32 * ENTRIES_PER_FRAME {
        let Some((page, off)) = gt.entry_location(gref) else { continue };
        let mut e = GrantEntryV1::default();
        if page.read(off, zerocopy::IntoBytes::as_mut_bytes(&mut e)).is_err() || e.flags & gtf::TYPE_MASK == 0 {
            continue;
        }
        in_use += 1;
        let (r, w) = gt.active.get(&gref).map(|a| (a.readers, a.writers)).unwrap_or((0, 0));
        let _ = writeln!(
            used,
            "  gref {gref}: flags {:#x} to d{} frame {:#x} maps/copies read {r} write {w}",
            e.flags, e.domid, e.frame
        );
    }
    let _ = writeln!(
        s,
        "d{} grant table v{}: {} frames [{}], {} entries, {in_use} in use, {} mappings held",
        d.id,
        gt.version,
        gt.frames.len(),
        gfns.join(" "),
        gt.nr_entries(),
        gt.nr_mappings()
    );
    s.push_str(&used);
}
