//! `monitor` commands (gdb's `qRcmd`): what gdb cannot know by itself about
//! domains, vCPUs and their guest areas, decoded with the layout in force
//! (from the `GuestAbi` struct tables, so every layout comes out right
//! without the stub naming any). Every command also has
//! a `--json` form: exactly one line of JSON, for scripts.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

use lantern_common::addr::{Gva, PAGE_SIZE};
use lantern_common::area::{AreaKind, AreaLocation, AreaMap, Placement};
use lantern_common::domain::Domain;
use lantern_common::grant_table;
use lantern_common::guest_area;
use lantern_common::memory::{DomId, Gfn, Page, PageRef};
use xen_abi::layout::{GuestAbi, StructLayout};
use xen_abi::nr::runstate;

use crate::json::Json;
use crate::thread_id::tid_of;
use lantern_common::debug::StopReason;
use lantern_common::sched::{DebuggerState, DomainRequest, DomainSlot};

/// Help text (also the answer to an unknown command).
pub const HELP: &str = "\
Lantern monitor commands (add --json to any for one line of JSON):
  help                    this text
  domains                 every domain: id, name, layout, vCPUs, lifecycle, pause count
  vcpus [dN]              every vCPU: thread id, state, mode, pause count, runstate
  vcpu-info dNvM|dN|all   vcpu_info decoded in the layout in force, and where it lives
  runstate dNvM           runstate (hypervisor copy and the registered areas, by address or VA)
  time dNvM               vcpu_time_info (in vcpu_info and the registered time area)
  shared-info dN          shared_info: where it is mapped, event-channel ABI, wallclock, event words
  areas [dN]              every vCPU area: kind, gfn, offset, size, layout, page refs
  grants [dN]             grant tables: version, frames, entries in use, pins, maps held
  pause dN | unpause dN   domain pause count +1 / -1
  destroy dN              tear the domain down (memory, areas, grants, channels released)
  restart dN              tear it down and build it again from its configuration (same id)
  phys on|off             memory addresses are guest-physical / guest-virtual
  debug                   breakpoints planted, hardware points, step, catchpoints, last stop
  hypercalls              Xen's hypercall numbers and names (for `catch syscall N`)
  stats                   the stub's counters: packets, sessions, unknown and malformed packets
";

/// Which vCPUs a command names.
enum Sel {
    All,
    Domain(u16),
    Vcpu(u16, u32),
}

fn parse_sel(s: &str) -> Option<Sel> {
    if s == "all" {
        return Some(Sel::All);
    }
    let rest = s.strip_prefix('d')?;
    match rest.split_once('v') {
        Some((d, v)) => Some(Sel::Vcpu(d.parse().ok()?, v.parse().ok()?)),
        None => Some(Sel::Domain(rest.parse().ok()?)),
    }
}

/// Output sink: text or JSON, with errors in either form.
struct Out {
    json: bool,
    text: String,
}

impl Out {
    fn error(&mut self, msg: &str) {
        if self.json {
            let mut j = Json::new();
            j.begin_obj().kv_str("error", msg).end_obj();
            self.text = j.finish();
        } else {
            self.text = format!("error: {msg}");
        }
    }
}

/// What the monitor commands see: the domains' slots (read-only: commands
/// inspect and pause, they never run or rebuild anything) and the debugger's
/// own state (`monitor phys` changes the addressing mode; `monitor destroy`
/// and `restart` leave a request there for the scheduler loop).
pub struct View<'a> {
    /// Every domain's slot.
    pub slots: &'a [DomainSlot],
    /// The debugger's state.
    pub debugger: &'a mut DebuggerState,
    /// The whole-system session holds every domain stopped.
    pub system_stopped: bool,
    /// The domain a domain's own session is for (`None`: the whole
    /// system's). Such a session reads about every domain but acts
    /// (pause, unpause, destroy, restart) on its own alone: a domain's line
    /// must not end or hold another domain.
    pub scope: Option<DomId>,
}

/// Every monitor command, in `help`'s order.
pub const COMMANDS: &[&str] = &[
    "help",
    "domains",
    "vcpus",
    "vcpu-info",
    "runstate",
    "time",
    "shared-info",
    "areas",
    "grants",
    "pause",
    "unpause",
    "destroy",
    "restart",
    "phys",
    "debug",
    "hypercalls",
    "stats",
];

/// Runs one monitor command line; returns its output (ending in a newline).
pub fn run(t: &mut View<'_>, line: &str) -> String {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let json = words.contains(&"--json");
    words.retain(|w| *w != "--json");
    let mut out = Out { json, text: String::new() };
    let cmd = words.first().copied().unwrap_or("help");
    let arg = words.get(1).copied();
    let r = match cmd {
        "help" => {
            if json {
                let mut j = Json::new();
                j.begin_obj().key("commands").begin_arr();
                for c in COMMANDS {
                    j.str(c);
                }
                j.end_arr().end_obj();
                out.text = j.finish();
            } else {
                out.text = HELP.to_string();
            }
            Ok(())
        }
        "domains" => {
            domains(t, &mut out);
            Ok(())
        }
        "vcpus" => select(t, arg).map(|sel| vcpus(t, &sel, &mut out)),
        "vcpu-info" => match arg {
            None => Err("usage: vcpu-info dNvM|dN|all".to_string()),
            Some(_) => select(t, arg).map(|sel| vcpu_info(t, &sel, &mut out)),
        },
        "runstate" => one_vcpu(t, arg).map(|(di, v)| runstate_cmd(t, di, v, &mut out)),
        "time" => one_vcpu(t, arg).map(|(di, v)| time_cmd(t, di, v, &mut out)),
        "shared-info" => one_domain(t, arg).map(|di| shared_info(t, di, &mut out)),
        "areas" => select(t, arg).map(|sel| areas(t, &sel, &mut out)),
        "grants" => domains_of(t, arg).map(|ds| grants(t, &ds, &mut out)),
        "pause" | "unpause" => one_own_domain(t, arg).and_then(|di| pause(t, di, cmd == "pause", &mut out)),
        "destroy" | "restart" => {
            one_own_domain(t, arg).and_then(|di| domain_request(t, di, cmd == "restart", &mut out))
        }
        "phys" => phys(t, arg, &mut out),
        "debug" => {
            debug_state(t, &mut out);
            Ok(())
        }
        "hypercalls" => {
            hypercalls(&mut out);
            Ok(())
        }
        "stats" => {
            stats(t, &mut out);
            Ok(())
        }
        other => Err(format!("unknown command `{other}` (try `monitor help`)")),
    };
    if let Err(e) = r {
        out.error(&e);
    }
    if !out.text.ends_with('\n') {
        out.text.push('\n');
    }
    out.text
}

fn domain_index(t: &View<'_>, id: u16) -> Result<usize, String> {
    t.slots.iter().position(|s| s.domain.id == id).ok_or_else(|| format!("no domain d{id}"))
}

fn select(t: &View<'_>, arg: Option<&str>) -> Result<Sel, String> {
    match arg {
        None => Ok(Sel::All),
        Some(a) => {
            let sel = parse_sel(a).ok_or_else(|| format!("bad selector `{a}` (want dN, dNvM or all)"))?;
            match sel {
                Sel::Domain(d) => domain_index(t, d).map(|_| sel),
                Sel::Vcpu(d, v) => {
                    let di = domain_index(t, d)?;
                    if v < t.slots[di].domain.max_vcpus() {
                        Ok(sel)
                    } else {
                        Err(format!("no vCPU d{d}v{v}"))
                    }
                }
                Sel::All => Ok(sel),
            }
        }
    }
}

fn one_vcpu(t: &View<'_>, arg: Option<&str>) -> Result<(usize, u32), String> {
    match arg.map(|a| select(t, Some(a))) {
        Some(Ok(Sel::Vcpu(d, v))) => Ok((domain_index(t, d)?, v)),
        Some(Err(e)) => Err(e),
        _ => Err("this command wants one vCPU: dNvM".to_string()),
    }
}

fn one_domain(t: &View<'_>, arg: Option<&str>) -> Result<usize, String> {
    match arg.map(|a| select(t, Some(a))) {
        Some(Ok(Sel::Domain(d))) => domain_index(t, d),
        Some(Err(e)) => Err(e),
        _ => Err("this command wants one domain: dN".to_string()),
    }
}

/// As [`one_domain`], for a command that acts on the domain: in a domain's
/// own session only that domain.
fn one_own_domain(t: &View<'_>, arg: Option<&str>) -> Result<usize, String> {
    let di = one_domain(t, arg)?;
    match t.scope {
        Some(own) if t.slots[di].domain.id != own => {
            Err(format!("this session is d{own}'s: it acts on d{own} alone (attach to the whole system for others)"))
        }
        _ => Ok(di),
    }
}

/// Every `(domain index, vCPU)` a selection names.
fn vcpus_of(t: &View<'_>, sel: &Sel) -> Vec<(usize, u32)> {
    let mut v = Vec::new();
    for (di, d) in t.slots.iter().map(|s| &s.domain).enumerate() {
        for id in 0..d.max_vcpus() {
            let take = match sel {
                Sel::All => true,
                Sel::Domain(x) => *x == d.id,
                Sel::Vcpu(x, y) => *x == d.id && *y == id,
            };
            if take {
                v.push((di, id));
            }
        }
    }
    v
}

fn domains(t: &View<'_>, out: &mut Out) {
    let mut j = Json::new();
    j.begin_obj().key("domains").begin_arr();
    let mut s =
        String::from("dom  name              layout  vcpus lifecycle    paused shared_info_gfn  ram_pages restarts\n");
    for slot in t.slots {
        let d = &slot.domain;
        let si = d.shared_info_gfn().map(|g| g.0);
        let ram = d.p2m.lock().len() as u64;
        let life = d.lifecycle().name();
        j.begin_obj()
            .kv_uint("id", d.id as u64)
            .kv_str("name", &d.name)
            .kv_str("layout", d.abi().name())
            .kv_uint("vcpus", d.max_vcpus() as u64)
            .kv_str("lifecycle", &life)
            .kv_uint("pause_count", d.pause_count() as u64)
            .kv_opt_uint("shared_info_gfn", si)
            .kv_uint("ram_pages", ram)
            .kv_uint("restarts", slot.restarts as u64)
            .end_obj();
        let sig = si.map(|g| format!("{g:#x}")).unwrap_or_else(|| "-".to_string());
        let _ = writeln!(
            s,
            "d{:<3} {:<17} {:<7} {:<5} {:<12} {:<6} {:<16} {:<9} {}",
            d.id,
            d.name,
            d.abi().name(),
            d.max_vcpus(),
            life,
            d.pause_count(),
            sig,
            ram,
            slot.restarts
        );
    }
    j.end_arr().end_obj();
    out.text = if out.json { j.finish() } else { s };
}

fn vcpus(t: &View<'_>, sel: &Sel, out: &mut Out) {
    let mut j = Json::new();
    j.begin_obj().key("vcpus").begin_arr();
    let mut s = String::from("vcpu     tid     state    mode    pause flags runstate  vector vcpu_info\n");
    for (di, id) in vcpus_of(t, sel) {
        let d = &t.slots[di].domain;
        let Ok(v) = d.vcpu(id) else { continue };
        let name = format!("d{}v{}", d.id, id);
        let tid = tid_of(d.id, id).map(|t| t.get() as u64).unwrap_or(0);
        let state = d.vcpu_state(v).name();
        let mode = t.slots.get(di).and_then(|s| s.vcpus.get(id as usize)).map(|a| a.mode().name()).unwrap_or("?");
        let rs = runstate::name(v.runstate().state);
        let placement = v.areas().vcpu_info.placement.name();
        j.begin_obj()
            .kv_str("vcpu", &name)
            .kv_uint("d", d.id as u64)
            .kv_uint("v", id as u64)
            .kv_uint("tid", tid)
            .kv_str("state", state)
            .kv_str("mode", mode)
            .kv_uint("pause_count", v.pause_count() as u64)
            .kv_uint("pause_flags", v.pause_flags() as u64)
            .kv_str("runstate", rs)
            .kv_uint("upcall_vector", v.upcall_vector() as u64)
            .kv_str("vcpu_info", placement)
            .end_obj();
        let _ = writeln!(
            s,
            "{:<8} {:<7} {:<8} {:<7} {:<5} {:<5} {:<9} {:<6} {}",
            name,
            tid,
            state,
            mode,
            v.pause_count(),
            v.pause_flags(),
            rs,
            v.upcall_vector(),
            placement
        );
    }
    j.end_arr().end_obj();
    out.text = if out.json { j.finish() } else { s };
}

/// A decoded field value.
enum Val {
    /// Up to 8 bytes, as an integer (sign-extended where the ABI says signed).
    Int(i128),
    /// A wider field: the non-zero `xen_ulong_t` words as `(index, value)`.
    Words(Vec<(usize, u64)>),
}

/// Fields whose ABI type is signed (`int8_t tsc_shift`, `int state`): the
/// struct tables carry sizes only.
fn is_signed(path: &str) -> bool {
    path.ends_with("tsc_shift")
}

/// Reads one field of a struct at `base` in `page`.
fn read_field(page: &Page, base: usize, path: &str, off: usize, size: usize, word: usize) -> Val {
    if size <= 8 {
        let raw = page.read_uint(base + off, size).unwrap_or(0);
        let v = if is_signed(path) && size < 8 {
            let shift = 64 - 8 * size as u32;
            (((raw << shift) as i64) >> shift) as i128
        } else {
            raw as i128
        };
        Val::Int(v)
    } else {
        let word = word.max(1);
        let words = (0..size / word)
            .filter_map(|i| {
                let w = page.read_uint(base + off + i * word, word).unwrap_or(0);
                (w != 0).then_some((i, w))
            })
            .collect();
        Val::Words(words)
    }
}

/// Whether a field is best read in hex (bit masks, addresses, frames).
fn hexish(path: &str) -> bool {
    ["pending_sel", "cr2", "pfn", "p2m", "mfn", "mask", "evtchn_pending"].iter().any(|k| path.contains(k))
        && !path.ends_with("evtchn_upcall_mask")
}

/// Decodes every field of `layout` at `base` in `page` into `j` (as an
/// object) and `s` (grouped by the first path component, one line each).
/// `skip` filters fields out (e.g. the vcpu_info slots of shared_info).
fn decode(
    layout: &StructLayout,
    abi: &dyn GuestAbi,
    page: &Page,
    base: usize,
    skip: &dyn Fn(&str) -> bool,
    j: &mut Json,
    s: &mut String,
) {
    j.begin_obj();
    let mut group: Option<&str> = None;
    let mut first = true;
    for f in layout.fields.iter().filter(|f| !skip(f.path)) {
        let val = read_field(page, base, f.path, f.field.offset, f.field.size, abi.xen_ulong_size());
        let (prefix, leaf) = match f.path.split_once('.') {
            Some((p, l)) => (Some(p), l),
            None => (None, f.path),
        };
        // Fields without a group share the first line; each group
        // (`time.`, `arch.`) gets a line of its own.
        let mut sep = " ";
        if first || prefix != group {
            if !first {
                s.push('\n');
            }
            s.push_str("  ");
            match prefix {
                Some(p) => {
                    let _ = write!(s, "{p}:");
                }
                None => sep = "",
            }
            group = prefix;
            first = false;
        }
        j.key(f.path);
        match &val {
            Val::Int(v) => {
                if *v < 0 {
                    j.int(*v as i64);
                } else {
                    j.uint(*v as u64);
                }
                if hexish(f.path) {
                    let _ = write!(s, "{sep}{leaf}={:#x}", *v as u64);
                } else {
                    let _ = write!(s, "{sep}{leaf}={v}");
                }
            }
            Val::Words(ws) => {
                j.begin_arr();
                let _ = write!(s, "{sep}{leaf}=[");
                for (n, (i, w)) in ws.iter().enumerate() {
                    j.begin_arr().uint(*i as u64).uint(*w).end_arr();
                    let _ = write!(s, "{}{i}:{w:#x}", if n > 0 { " " } else { "" });
                }
                j.end_arr();
                s.push(']');
            }
        }
    }
    j.end_obj();
    s.push('\n');
}

/// Where an area lives: `(placement, gfn, offset, slot)`, as the core
/// describes it for every tool.
fn where_is(d: &Domain, kind: AreaKind, a: &AreaMap) -> (Placement, Option<u64>, usize, Option<u64>) {
    let l = guest_area::location(d, kind, a);
    (l.placement, l.gfn, l.offset, l.slot)
}

/// Where the area `v` registered at guest-virtual `va` is now, through the
/// vCPU's own page tables: the gfn and, when the area fits in that page and
/// the page is RAM, the page to decode it from. `None`: it does not
/// translate now (the next update would be a write not made).
fn va_where(t: &View<'_>, di: usize, id: u32, va: Gva, size: usize) -> Option<(u64, Option<PageRef>)> {
    let slot = &t.slots[di];
    let gpa = slot.vcpus.get(id as usize)?.translate(&slot.domain, va, false).ok()?;
    let fits = gpa.page_offset() + size <= PAGE_SIZE;
    let page = fits.then(|| slot.domain.p2m.lock().get(gpa.gfn()).map(|e| e.page.clone())).flatten();
    Some((gpa.gfn().0, page))
}

/// The `area_va` part of `runstate` / `time`: the registered guest-virtual
/// address, the gfn it maps to now and, if it can be read, the decoded area.
fn va_area_section(
    t: &View<'_>,
    di: usize,
    id: u32,
    va: Option<Gva>,
    layout: &StructLayout,
    j: &mut Json,
    s: &mut String,
) {
    let d = &t.slots[di].domain;
    j.key("area_va");
    let Some(va) = va else {
        j.null();
        return;
    };
    let at = va_where(t, di, id, va, layout.size);
    let gfn = at.as_ref().map(|(g, _)| *g);
    let now = gfn.map(|g| format!("now gfn {g:#x}")).unwrap_or_else(|| "not mapped now".to_string());
    let _ = writeln!(s, "registered by guest-virtual address {:#x} ({now}):", va.0);
    j.begin_obj().kv_uint("va", va.0).kv_opt_uint("gfn", gfn);
    if let Some((_, Some(page))) = at {
        j.key("fields");
        decode(layout, d.abi(), &page, (va.0 as usize) % PAGE_SIZE, &|_| false, j, s);
    }
    j.end_obj();
}

fn where_text(placement: Placement, gfn: Option<u64>, offset: usize, slot: Option<u64>) -> String {
    AreaLocation { placement, gfn, offset, slot }.to_string()
}

fn where_json(j: &mut Json, p: Placement, gfn: Option<u64>, offset: usize, slot: Option<u64>) {
    j.kv_str("placement", p.name()).kv_opt_uint("gfn", gfn).kv_uint("offset", offset as u64).kv_opt_uint("slot", slot);
}

fn vcpu_info(t: &View<'_>, sel: &Sel, out: &mut Out) {
    let mut j = Json::new();
    let mut s = String::new();
    j.begin_obj().key("vcpus").begin_arr();
    for (di, id) in vcpus_of(t, sel) {
        let d = &t.slots[di].domain;
        let Ok(v) = d.vcpu(id) else { continue };
        let abi = d.abi();
        let Some(layout) = abi.struct_layout("vcpu_info") else { continue };
        let area = v.areas().vcpu_info;
        let (p, gfn, off, slot) = where_is(d, AreaKind::VcpuInfo, &area);
        let state = d.vcpu_state(v).name();
        let _ =
            writeln!(s, "d{}v{} {} {}: vcpu_info at {}", d.id, id, abi.name(), state, where_text(p, gfn, off, slot));
        j.begin_obj().kv_str("vcpu", &format!("d{}v{}", d.id, id)).kv_uint("d", d.id as u64).kv_uint("v", id as u64);
        j.kv_str("layout", abi.name()).kv_str("state", state).kv_uint("size", layout.size as u64);
        where_json(&mut j, p, gfn, off, slot);
        j.key("fields");
        decode(layout, abi, &area.page, area.offset, &|_| false, &mut j, &mut s);
        j.end_obj();
    }
    j.end_arr().end_obj();
    out.text = if out.json { j.finish() } else { s };
}

fn runstate_cmd(t: &View<'_>, di: usize, id: u32, out: &mut Out) {
    let d = &t.slots[di].domain;
    let Ok(v) = d.vcpu(id) else { return };
    let abi = d.abi();
    let r = v.runstate();
    let mut j = Json::new();
    let mut s = String::new();
    j.begin_obj().kv_str("vcpu", &format!("d{}v{}", d.id, id)).kv_str("layout", abi.name());
    j.key("hypervisor").begin_obj().kv_str("state", runstate::name(r.state)).kv_uint("state_num", r.state as u64);
    j.kv_uint("state_entry_time", r.state_entry_time).key("time").begin_arr();
    for x in r.time {
        j.uint(x);
    }
    j.end_arr().end_obj();
    let _ = writeln!(
        s,
        "d{}v{} runstate (hypervisor): {} since {} ns; time running={} runnable={} blocked={} offline={}",
        d.id,
        id,
        runstate::name(r.state),
        r.state_entry_time,
        r.time[0],
        r.time[1],
        r.time[2],
        r.time[3]
    );
    j.key("area");
    match (v.areas().runstate, abi.struct_layout("vcpu_runstate_info")) {
        (Some(a), Some(layout)) => {
            let (p, gfn, off, slot) = where_is(d, AreaKind::Runstate, &a);
            let _ = writeln!(s, "registered area at {} ({} layout):", where_text(p, gfn, off, slot), abi.name());
            j.begin_obj();
            where_json(&mut j, p, gfn, off, slot);
            j.key("fields");
            decode(layout, abi, &a.page, a.offset, &|_| false, &mut j, &mut s);
            j.end_obj();
        }
        _ => {
            s.push_str("no runstate area registered\n");
            j.null();
        }
    }
    if let Some(layout) = abi.struct_layout("vcpu_runstate_info") {
        va_area_section(t, di, id, v.areas().runstate_va, layout, &mut j, &mut s);
    }
    j.end_obj();
    out.text = if out.json { j.finish() } else { s };
}

fn time_cmd(t: &View<'_>, di: usize, id: u32, out: &mut Out) {
    let d = &t.slots[di].domain;
    let Ok(v) = d.vcpu(id) else { return };
    let abi = d.abi();
    let Some(layout) = abi.struct_layout("vcpu_time_info") else { return };
    let areas = v.areas();
    let now = d.clock().now_ns();
    let mut j = Json::new();
    let mut s = String::new();
    j.begin_obj().kv_str("vcpu", &format!("d{}v{}", d.id, id)).kv_str("layout", abi.name()).kv_uint("now_ns", now);
    let vi = &areas.vcpu_info;
    let (p, gfn, off, slot) = where_is(d, AreaKind::VcpuInfo, vi);
    let _ = writeln!(s, "d{}v{} hypervisor time now {} ns", d.id, id, now);
    let _ = writeln!(s, "vcpu_info.time (vcpu_info at {}):", where_text(p, gfn, off, slot));
    j.key("vcpu_info_time");
    decode(layout, abi, &vi.page, vi.offset + abi.vcpu_info().time, &|_| false, &mut j, &mut s);
    j.key("area");
    match &areas.time {
        Some(a) => {
            let (p, gfn, off, slot) = where_is(d, AreaKind::Time, a);
            let _ = writeln!(s, "registered time area at {}:", where_text(p, gfn, off, slot));
            j.begin_obj();
            where_json(&mut j, p, gfn, off, slot);
            j.key("fields");
            decode(layout, abi, &a.page, a.offset, &|_| false, &mut j, &mut s);
            j.end_obj();
        }
        None => {
            s.push_str("no time area registered\n");
            j.null();
        }
    }
    va_area_section(t, di, id, areas.time_va, layout, &mut j, &mut s);
    j.end_obj();
    out.text = if out.json { j.finish() } else { s };
}

fn shared_info(t: &View<'_>, di: usize, out: &mut Out) {
    let d = &t.slots[di].domain;
    let abi = d.abi();
    let page = d.shared_info();
    let gfn = d.shared_info_gfn().map(|g| g.0);
    let mut j = Json::new();
    let mut s = String::new();
    j.begin_obj().kv_uint("d", d.id as u64).kv_str("layout", abi.name()).kv_opt_uint("gfn", gfn);
    j.kv_uint("refs", page.refs() as u64).kv_uint("writable_refs", page.writable_refs() as u64);
    // The event words below are only in use under the 2-level ABI.
    let evtchn_abi = lantern_common::evtchn::abi_name(d);
    j.kv_str("evtchn_abi", evtchn_abi);
    let _ = writeln!(
        s,
        "d{} shared_info ({} layout) {}; page refs {} writable {}; event channels {}",
        d.id,
        abi.name(),
        gfn.map(|g| format!("mapped at gfn {g:#x}")).unwrap_or_else(|| "not mapped by the guest".to_string()),
        page.refs(),
        page.writable_refs(),
        evtchn_abi
    );
    if let Some(layout) = abi.struct_layout("shared_info") {
        j.key("fields");
        // The vcpu_info slots are shown per vCPU by `vcpu-info`.
        decode(layout, abi, page, 0, &|p| p.starts_with("vcpu_info["), &mut j, &mut s);
    }
    j.end_obj();
    out.text = if out.json { j.finish() } else { s };
}

fn areas(t: &View<'_>, sel: &Sel, out: &mut Out) {
    let mut j = Json::new();
    let mut s = String::from("vcpu     kind      placement    gfn        offset size layout refs wr\n");
    j.begin_obj().key("areas").begin_arr();
    for (di, id) in vcpus_of(t, sel) {
        let d = &t.slots[di].domain;
        let Ok(v) = d.vcpu(id) else { continue };
        let abi = d.abi();
        let slots = v.areas();
        for kind in AreaKind::ALL {
            let Some(a) = slots.get(kind) else { continue };
            let (p, gfn, off, slot) = where_is(d, kind, a);
            let name = format!("d{}v{}", d.id, id);
            let size = kind.size(abi) as u64;
            j.begin_obj().kv_str("vcpu", &name).kv_uint("d", d.id as u64).kv_uint("v", id as u64);
            j.kv_str("kind", kind.name());
            where_json(&mut j, p, gfn, off, slot);
            j.kv_uint("size", size).kv_str("layout", abi.name());
            j.kv_uint("refs", a.page.refs() as u64).kv_uint("writable_refs", a.page.writable_refs() as u64);
            j.end_obj();
            let g = gfn.map(|g| format!("{g:#x}")).unwrap_or_else(|| "-".to_string());
            let _ = writeln!(
                s,
                "{:<8} {:<9} {:<12} {:<10} {:<6} {:<4} {:<6} {:<4} {}",
                name,
                kind.name(),
                p.name(),
                g,
                format!("{off:#x}"),
                size,
                abi.name(),
                a.page.refs(),
                a.page.writable_refs()
            );
        }
        // The guest-virtual registrations: no page held, so no references;
        // the gfn is where the vCPU's tables put the address now.
        for (kind, va) in [(AreaKind::Runstate, slots.runstate_va), (AreaKind::Time, slots.time_va)] {
            let Some(va) = va else { continue };
            let name = format!("d{}v{}", d.id, id);
            let size = kind.size(abi);
            let gfn = va_where(t, di, id, va, size).map(|(g, _)| g);
            let off = (va.0 as usize) % PAGE_SIZE;
            j.begin_obj().kv_str("vcpu", &name).kv_uint("d", d.id as u64).kv_uint("v", id as u64);
            j.kv_str("kind", kind.name()).kv_str("placement", "guest_va").kv_uint("va", va.0);
            j.kv_opt_uint("gfn", gfn)
                .kv_uint("offset", off as u64)
                .kv_uint("size", size as u64)
                .kv_str("layout", abi.name());
            j.kv_uint("refs", 0).kv_uint("writable_refs", 0);
            j.end_obj();
            let g = gfn.map(|g| format!("{g:#x}")).unwrap_or_else(|| "-".to_string());
            let _ = writeln!(
                s,
                "{:<8} {:<9} {:<12} {:<10} {:<6} {:<4} {:<6} {:<4} {}   (va {:#x})",
                name,
                kind.name(),
                "guest_va",
                g,
                format!("{off:#x}"),
                size,
                abi.name(),
                0,
                0,
                va.0
            );
        }
    }
    j.end_arr().end_obj();
    out.text = if out.json { j.finish() } else { s };
}

/// The domain indices `arg` names: one (`dN`) or all (none given).
fn domains_of(t: &View<'_>, arg: Option<&str>) -> Result<Vec<usize>, String> {
    match arg {
        None | Some("all") => Ok((0..t.slots.len()).collect()),
        Some(_) => one_domain(t, arg).map(|di| alloc::vec![di]),
    }
}

fn gfn_text(g: Gfn) -> String {
    if g == Gfn::INVALID {
        "-".to_string()
    } else {
        format!("{:#x}", g.0)
    }
}

/// `grants`: each domain's grant table from [`grant_table::summary`].
fn grants(t: &View<'_>, dis: &[usize], out: &mut Out) {
    let mut j = Json::new();
    let mut s = String::new();
    j.begin_obj().key("grants").begin_arr();
    for &di in dis {
        let d = &t.slots[di].domain;
        let g = grant_table::summary(d);
        j.begin_obj().kv_uint("d", d.id as u64).kv_uint("version", g.version as u64);
        j.key("frames").begin_arr();
        for f in &g.frames {
            if *f == Gfn::INVALID {
                j.null();
            } else {
                j.uint(f.0);
            }
        }
        j.end_arr();
        let frames: Vec<String> = g.frames.iter().map(|f| gfn_text(*f)).collect();
        let _ = writeln!(s, "d{} grant table v{} frames [{}]", d.id, g.version, frames.join(" "));
        j.key("entries").begin_arr();
        for e in &g.entries {
            j.begin_obj().kv_uint("ref", e.gref as u64).kv_uint("flags", e.flags as u64);
            j.kv_uint("domid", e.domid as u64).kv_uint("frame", e.frame as u64).end_obj();
            let _ = writeln!(s, "  entry ref {} flags {:#x} d{} frame {:#x}", e.gref, e.flags, e.domid, e.frame);
        }
        j.end_arr().key("active").begin_arr();
        for a in &g.active {
            j.begin_obj().kv_uint("ref", a.gref as u64).kv_uint("domid", a.domid as u64);
            j.kv_uint("gfn", a.gfn.0).kv_uint("readers", a.readers as u64).kv_uint("writers", a.writers as u64);
            j.kv_uint("refs", a.refs.0 as u64).kv_uint("writable_refs", a.refs.1 as u64).end_obj();
            let _ = writeln!(
                s,
                "  pinned ref {} by d{} gfn {:#x} readers {} writers {} refs {} wr {}",
                a.gref, a.domid, a.gfn.0, a.readers, a.writers, a.refs.0, a.refs.1
            );
        }
        j.end_arr().key("maps").begin_arr();
        for m in &g.maps {
            j.begin_obj().kv_uint("handle", m.handle as u64).kv_uint("granter", m.granter as u64);
            j.kv_uint("ref", m.gref as u64).kv_uint("gfn", m.gfn.0).key("readonly").bool(m.readonly);
            j.kv_uint("refs", m.refs.0 as u64).kv_uint("writable_refs", m.refs.1 as u64).end_obj();
            let _ = writeln!(
                s,
                "  map handle {} of d{} ref {} at gfn {:#x} {} refs {} wr {}",
                m.handle,
                m.granter,
                m.gref,
                m.gfn.0,
                if m.readonly { "ro" } else { "rw" },
                m.refs.0,
                m.refs.1
            );
        }
        j.end_arr().end_obj();
        let _ =
            writeln!(s, "  {} entries in use, {} pinned, {} maps held", g.entries.len(), g.active.len(), g.maps.len());
    }
    j.end_arr().end_obj();
    out.text = if out.json { j.finish() } else { s };
}

fn pause(t: &View<'_>, di: usize, on: bool, out: &mut Out) -> Result<(), String> {
    let d = &t.slots[di].domain;
    if on {
        d.pause();
    } else {
        d.unpause().map_err(|_| format!("d{} is not paused", d.id))?;
    }
    let mut j = Json::new();
    j.begin_obj().kv_uint("d", d.id as u64).kv_uint("pause_count", d.pause_count() as u64).end_obj();
    out.text = if out.json {
        j.finish()
    } else {
        format!("d{} {} (pause count {})", d.id, if on { "paused" } else { "unpaused" }, d.pause_count())
    };
    Ok(())
}

/// `destroy dN` / `restart dN`: asks the scheduler loop, which acts as
/// soon as this answer is sent (it builds with the board; the stub cannot).
fn domain_request(t: &mut View<'_>, di: usize, restart: bool, out: &mut Out) -> Result<(), String> {
    let slot = &t.slots[di];
    let id = slot.domain.id;
    if restart && slot.spec.is_none() {
        return Err(format!("d{id} was built without a configuration: it cannot be restarted"));
    }
    if !restart && slot.domain.lifecycle() == lantern_common::domain::Lifecycle::Dead {
        return Err(format!("d{id} is already destroyed"));
    }
    let request = if restart { DomainRequest::Restart } else { DomainRequest::Destroy };
    t.debugger.domain_requests.push((id, request));
    let what = if restart { "restart" } else { "destroy" };
    let mut j = Json::new();
    j.begin_obj().kv_uint("d", id as u64).kv_str("requested", what).end_obj();
    out.text = if out.json {
        j.finish()
    } else {
        format!("d{id}: {what} requested; the console says `(lantern) d{id}: on request: ...` when it is done")
    };
    Ok(())
}

fn phys(t: &mut View<'_>, arg: Option<&str>, out: &mut Out) -> Result<(), String> {
    match arg {
        Some("on") => t.debugger.session_mut().physical_addresses = true,
        Some("off") => t.debugger.session_mut().physical_addresses = false,
        None => {}
        Some(a) => return Err(format!("phys wants on or off, not `{a}`")),
    }
    let mut j = Json::new();
    j.begin_obj()
        .kv_str("addressing", if t.debugger.session().physical_addresses { "physical" } else { "virtual" })
        .end_obj();
    out.text = if out.json {
        j.finish()
    } else if t.debugger.session().physical_addresses {
        "memory addresses are guest-physical".to_string()
    } else {
        "memory addresses are guest-virtual (through the selected vCPU's page tables)".to_string()
    };
    Ok(())
}

/// The hypercall numbers the debugger names: every number below this has
/// its name looked up.
const HYPERCALL_NAME_RANGE: u64 = 64;

/// `(nr, name)` of every hypercall Xen's ABI names here.
fn named_hypercalls() -> impl Iterator<Item = (u64, &'static str)> {
    (0..HYPERCALL_NAME_RANGE).map(|nr| (nr, xen_abi::nr::hypercall::name(nr))).filter(|(_, n)| *n != "unknown")
}

fn hypercalls(out: &mut Out) {
    let mut j = Json::new();
    let mut s = String::new();
    j.begin_obj().key("hypercalls").begin_arr();
    for (nr, name) in named_hypercalls() {
        j.begin_obj().kv_uint("nr", nr).kv_str("name", name).end_obj();
        let _ = writeln!(s, "{nr:3} {name}");
    }
    j.end_arr().end_obj();
    out.text = if out.json { j.finish() } else { s };
}

/// `dNvM` of a vCPU.
fn vcpu_name((d, v): (u16, u32)) -> String {
    format!("d{d}v{v}")
}

fn debug_state(t: &View<'_>, out: &mut Out) {
    let e = &t.debugger.exec;
    // The step, catchpoints and last stop are the asking session's own.
    let sess = t.debugger.session();
    let mut j = Json::new();
    let mut s = String::new();
    j.begin_obj().key("breakpoints").begin_arr();
    for b in &e.breakpoints {
        j.begin_obj().kv_uint("d", b.domain as u64).kv_uint("addr", b.addr).kv_uint("gpa", b.gpa.0).end_obj();
        let _ = writeln!(s, "d{}: breakpoint at {:#x} (gpa {:#x})", b.domain, b.addr, b.gpa.0);
    }
    j.end_arr().key("hw_points").begin_arr();
    for (d, p) in &e.hw_points {
        j.begin_obj().kv_uint("d", *d as u64).kv_str("kind", p.kind.name()).kv_uint("addr", p.addr);
        j.kv_uint("len", p.len).end_obj();
        let _ = writeln!(s, "d{d}: hardware {} at {:#x}, {} bytes", p.kind.name(), p.addr, p.len);
    }
    j.end_arr().key("step");
    match sess.step {
        Some(v) => {
            j.str(&vcpu_name(v));
            let _ = writeln!(s, "stepping {}", vcpu_name(v));
        }
        None => {
            j.null();
        }
    }
    j.key("catch");
    match &sess.catch {
        None => {
            j.null();
        }
        Some(list) => {
            j.begin_arr();
            for nr in list {
                j.uint(*nr);
            }
            j.end_arr();
            let what: Vec<String> =
                list.iter().map(|nr| format!("{} ({nr})", xen_abi::nr::hypercall::name(*nr))).collect();
            let what = if what.is_empty() { "every hypercall".to_string() } else { what.join(", ") };
            let _ = writeln!(s, "catching {what}");
        }
    }
    // Who is attached, after what is armed.
    let mut attached = String::new();
    j.key("sessions").begin_arr();
    for x in e.sessions.iter().filter(|x| x.attached) {
        let scope = x.scope.map_or_else(|| "system".to_string(), |d| format!("d{d}"));
        let held = if x.scope.is_some() { x.holding } else { t.system_stopped };
        j.begin_obj().kv_str("scope", &scope).key("holding").bool(held).end_obj();
        let what = x.scope.map_or_else(|| "the whole system".to_string(), |d| format!("d{d} alone"));
        let _ = writeln!(attached, "session attached: {what}, {}", if held { "stopped" } else { "running" });
    }
    j.end_arr();
    j.key("last_stop");
    match sess.last_stop {
        None => {
            j.null();
        }
        Some(st) => {
            j.begin_obj().kv_str("vcpu", &vcpu_name((st.domain, st.vcpu))).kv_str("reason", st.reason.name());
            let mut line = format!("last stop: {} {}", vcpu_name((st.domain, st.vcpu)), st.reason.name());
            match st.reason {
                StopReason::HypercallEntry(nr) | StopReason::HypercallReturn(nr) => {
                    let name = xen_abi::nr::hypercall::name(nr);
                    j.kv_uint("nr", nr).kv_str("name", name);
                    line.push_str(&format!(" {name} ({nr})"));
                }
                StopReason::Watch { kind, addr } => {
                    j.kv_str("kind", kind.name()).kv_uint("addr", addr);
                    line.push_str(&format!(" {} {addr:#x}", kind.name()));
                }
                _ => {}
            }
            j.end_obj();
            let _ = writeln!(s, "{line}");
        }
    }
    j.end_obj();
    if s.is_empty() {
        s.push_str("nothing armed\n");
    }
    s.push_str(&attached);
    out.text = if out.json { j.finish() } else { s };
}

/// `stats`: the counters the stub published in the debugger state (as of
/// the packet that asked).
fn stats(t: &View<'_>, out: &mut Out) {
    let counters = &t.debugger.transport_counters;
    if out.json {
        let mut j = Json::new();
        j.begin_obj().key("stats").begin_obj();
        for (name, n) in counters {
            j.kv_uint(name, *n);
        }
        j.end_obj().end_obj();
        out.text = j.finish();
    } else {
        for (name, n) in counters {
            let _ = writeln!(out.text, "{name:<14}{n}");
        }
    }
}
