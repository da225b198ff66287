//! Stateful sequences: the orders of calls a hypervisor keeps state
//! across (areas registered and replaced, ports bound and closed, grants
//! made, mapped and revoked, frames given back and repopulated, timers
//! armed and stopped, vCPUs brought up and down), each step with its
//! arguments mostly valid and sometimes not, so the interesting case is the
//! state in between.

use xen_abi::nr::{evtchnop, gnttabop, gtf, hypercall as nr, mapspace, memop, vcpuop, virq};
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVirq, EvtchnPort, GnttabUnmapGrantRef,
    VcpuRegisterArea, VcpuRegisterVcpuInfo, VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, VcpuSetSingleshotTimerAlign4,
};
use zerocopy::IntoBytes;

use super::{ops, Fuzzer, PtrClass, GRANT_REFS, PAGES, POOL_PAGES};
use crate::{hypercall, PAGE_SIZE};

/// The sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seq {
    Areas,
    Ports,
    Grants,
    Balloon,
    Timers,
    Vcpus,
}

const SEQS: &[(u32, Seq)] =
    &[(20, Seq::Areas), (22, Seq::Ports), (22, Seq::Grants), (12, Seq::Balloon), (12, Seq::Timers), (12, Seq::Vcpus)];

/// One sequence.
pub(super) fn one(f: &mut Fuzzer<'_>) {
    match f.rng.weighted(SEQS) {
        Seq::Areas => areas(f),
        Seq::Ports => ports(f),
        Seq::Grants => grants(f),
        Seq::Balloon => balloon(f),
        Seq::Timers => timers(f),
        Seq::Vcpus => vcpus(f),
    }
}

/// `vcpu_op(cmd, vcpu, arg)` with `arg` placed (valid most of the time).
fn vcpu_call(f: &mut Fuzzer<'_>, cmd: u64, vcpu: u32, arg: &[u8]) -> Option<i64> {
    let p = if arg.is_empty() { 0 } else { f.place(arg) };
    f.call(nr::VCPU_OP, [cmd, vcpu as u64, p, 0, 0])
}

/// A pool frame's address at a random 64-byte slot.
fn pool_addr(f: &mut Fuzzer<'_>) -> u64 {
    let i = f.rng.below(POOL_PAGES as u64) as usize;
    f.pool_gfn(i) * PAGE_SIZE + f.rng.below(PAGE_SIZE / 64) * 64
}

/// Register, re-register (`-EBUSY` for vcpu_info), replace and unregister
/// a vCPU's areas.
fn areas(f: &mut Fuzzer<'_>) {
    let vcpu = f.rng.below(2) as u32;
    for _ in 0..1 + f.rng.below(3) {
        let addr = pool_addr(f);
        let a = VcpuRegisterVcpuInfo { mfn: addr / PAGE_SIZE, offset: (addr % PAGE_SIZE) as u32, rsvd: 0 };
        vcpu_call(f, vcpuop::REGISTER_VCPU_INFO, vcpu, a.as_bytes());
    }
    let kinds = [
        vcpuop::REGISTER_RUNSTATE_PHYS_AREA,
        vcpuop::REGISTER_VCPU_TIME_PHYS_AREA,
        vcpuop::REGISTER_RUNSTATE_MEMORY_AREA,
        vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA,
    ];
    for _ in 0..2 + f.rng.below(4) {
        let cmd = f.rng.pick(&kinds);
        let addr = match f.rng.below(4) {
            0 => f.no_area(cmd),
            1 => f.frame_addr(48),
            _ => pool_addr(f),
        };
        vcpu_call(f, cmd, vcpu, VcpuRegisterArea { addr }.as_bytes());
    }
}

/// Allocate, bind (loopback, VIRQ, IPI), send, unmask, rebind, close and
/// close again.
fn ports(f: &mut Fuzzer<'_>) {
    let mut mine = [0u32; 4];
    let mut n = 0;
    // Loopback: an unbound port for ourselves, bound to from our side.
    let remote = if f.rng.chance(60) { xen_abi::nr::domid::SELF } else { f.peer() };
    if let Some((0, port)) = bind(
        f,
        evtchnop::ALLOC_UNBOUND,
        EvtchnAllocUnbound { dom: xen_abi::nr::domid::SELF, remote_dom: remote, port: 0 }.as_bytes(),
        4,
    ) {
        mine[n] = port;
        n += 1;
        let a =
            EvtchnBindInterdomain { remote_dom: xen_abi::nr::domid::SELF, pad: 0, remote_port: port, local_port: 0 };
        if let Some((0, local)) = bind(f, evtchnop::BIND_INTERDOMAIN, a.as_bytes(), 8) {
            mine[n] = local;
            n += 1;
        }
    }
    let any = f.rng.below(virq::NR_VIRQS as u64 + 2) as u32;
    let v = f.rng.pick(&[virq::TIMER, virq::DEBUG, virq::CONSOLE, any]);
    let vcpu = f.rng.below(2) as u32;
    if let Some((0, port)) = bind(f, evtchnop::BIND_VIRQ, EvtchnBindVirq { virq: v, vcpu, port: 0 }.as_bytes(), 8) {
        mine[n] = port;
        n += 1;
    }
    if let Some((0, port)) = bind(f, evtchnop::BIND_IPI, EvtchnBindIpi { vcpu, port: 0 }.as_bytes(), 4) {
        mine[n] = port;
        n += 1;
    }
    for _ in 0..2 + f.rng.below(6) {
        let port = if n > 0 && f.rng.chance(80) { mine[f.rng.below(n as u64) as usize] } else { f.port() };
        let cmd = f.rng.pick(&[
            evtchnop::SEND,
            evtchnop::UNMASK,
            evtchnop::STATUS,
            evtchnop::BIND_VCPU,
            evtchnop::SET_PRIORITY,
            evtchnop::CLOSE,
        ]);
        let arg = match cmd {
            evtchnop::SEND | evtchnop::UNMASK | evtchnop::CLOSE => f.place(EvtchnPort { port }.as_bytes()),
            _ => ops::evtchn_arg(f, cmd),
        };
        f.call(nr::EVENT_CHANNEL_OP, [cmd, arg, 0, 0, 0]);
    }
    // Close everything, some twice (the second must fail, nothing else).
    for &port in &mine[..n] {
        for _ in 0..1 + f.rng.below(2) {
            let arg = f.place_as(PtrClass::Valid, EvtchnPort { port }.as_bytes());
            f.call(nr::EVENT_CHANNEL_OP, [evtchnop::CLOSE, arg, 0, 0, 0]);
        }
    }
}

/// An event-channel call that returns a port at `port_at` in its struct:
/// the result and that port (when the struct was ours to read back).
fn bind(f: &mut Fuzzer<'_>, cmd: u64, arg: &[u8], port_at: u64) -> Option<(i64, u32)> {
    let p = f.place_as(PtrClass::Valid, arg);
    let rc = f.call(nr::EVENT_CHANNEL_OP, [cmd, p, 0, 0, 0])?;
    let mut b = [0u8; 4];
    f.g.read(p + port_at, &mut b);
    let port = u32::from_le_bytes(b);
    if rc == 0 {
        f.ports.push(port);
    }
    Some((rc, port))
}

/// Grant a pool frame (to ourselves or a peer), map it, copy through it,
/// unmap it, revoke the grant and try the stale reference again.
fn grants(f: &mut Fuzzer<'_>) {
    // Make sure frame 0 of our table is where we write (a random call may
    // have moved or ballooned it).
    let table_gfn = PAGES.table.gpa() / PAGE_SIZE;
    let a = f.layout.add_to_physmap(mapspace::GRANT_TABLE, 0, table_gfn);
    let p = f.place_as(PtrClass::Valid, a.as_bytes());
    if f.call(nr::MEMORY_OP, [memop::ADD_TO_PHYSMAP, p, 0, 0, 0]) != Some(0) {
        return;
    }
    let r = f.rng.below(GRANT_REFS as u64) as u32;
    let frame = f.random_pool_gfn() as u32;
    let to = if f.rng.chance(60) { f.self_id } else { f.peer() };
    let readonly = if f.rng.chance(30) { gtf::READONLY } else { 0 };
    write_entry(f, r, gtf::PERMIT_ACCESS | readonly, to, frame);
    for _ in 0..1 + f.rng.below(2) {
        let mut m = ops::map_ref(f);
        m.r#ref = r;
        m.dom = if f.rng.chance(70) { xen_abi::nr::domid::SELF } else { m.dom };
        m.host_addr = f.random_pool_gfn() * PAGE_SIZE;
        let uop = f.place_as(PtrClass::Valid, m.as_bytes());
        if f.call(nr::GRANT_TABLE_OP, [gnttabop::MAP_GRANT_REF, uop, 1, 0, 0]) == Some(0) {
            f.note_handle(uop);
        }
    }
    // Sometimes revoke while mapped (the entry stays in use: Xen's guest
    // must not, but the hypervisor must cope), then unmap what we hold.
    let revoke_first = f.rng.chance(30);
    if revoke_first {
        write_entry(f, r, gtf::INVALID, 0, 0);
    }
    for _ in 0..1 + f.rng.below(3) {
        let (handle, host_addr) = f.handles.pick(&mut f.rng).unwrap_or((f.rng.below(8) as u32, 0));
        let u = GnttabUnmapGrantRef { host_addr, dev_bus_addr: 0, handle, status: 0, pad: 0 };
        let uop = f.place_as(PtrClass::Valid, u.as_bytes());
        f.call(nr::GRANT_TABLE_OP, [gnttabop::UNMAP_GRANT_REF, uop, 1, 0, 0]);
    }
    write_entry(f, r, gtf::INVALID, 0, 0);
    // The stale reference.
    let mut m = ops::map_ref(f);
    m.r#ref = r;
    m.dom = xen_abi::nr::domid::SELF;
    m.host_addr = f.pool_gfn(0) * PAGE_SIZE;
    let uop = f.place_as(PtrClass::Valid, m.as_bytes());
    if f.call(nr::GRANT_TABLE_OP, [gnttabop::MAP_GRANT_REF, uop, 1, 0, 0]) == Some(0) {
        f.note_handle(uop);
    }
}

/// Writes grant entry `r` of our table (frame 0, at `PAGES.table`): the
/// v1 entry's frame and domain first, its flags last.
fn write_entry(f: &Fuzzer<'_>, r: u32, flags: u16, domid: u16, frame: u32) {
    let at = PAGES.table.gpa() + r as u64 * xen_abi::nr::gnttab::ENTRY_V1_SIZE as u64;
    f.g.write(at + 2, &domid.to_le_bytes());
    f.g.write(at + 4, &frame.to_le_bytes());
    f.g.write(at, &flags.to_le_bytes());
}

/// Give pool frames back and populate them again (some twice, some never
/// given back).
fn balloon(f: &mut Fuzzer<'_>) {
    let n = 1 + f.rng.below(3) as usize;
    let mut gfns = [0u64; 3];
    for g in gfns.iter_mut().take(n) {
        *g = f.random_pool_gfn();
    }
    let ops = [memop::DECREASE_RESERVATION, memop::POPULATE_PHYSMAP];
    for _ in 0..1 + f.rng.below(2) {
        for op in ops {
            let k = 1 + f.rng.below(n as u64) as usize;
            if f.done() {
                return;
            }
            let rc = hypercall::reservation(f.g, f.layout, op, &gfns[..k], 0);
            f.count(rc);
        }
    }
    // And the balance: how much we hold now.
    let dom = xen_abi::nr::domid::SELF;
    let p = f.place_as(PtrClass::Valid, dom.as_bytes());
    f.call(nr::MEMORY_OP, [memop::CURRENT_RESERVATION, p, 0, 0, 0]);
}

/// Arm, re-arm and stop the single-shot and periodic timers, of vCPU 0 and
/// 1, and `set_timer_op`.
fn timers(f: &mut Fuzzer<'_>) {
    for _ in 0..2 + f.rng.below(4) {
        let vcpu = f.rng.below(2) as u32;
        match f.rng.below(5) {
            0 => {
                let timeout_abs_ns = f.timer_value();
                let flags = f.rng.below(2) as u32;
                if f.narrow() {
                    let a = VcpuSetSingleshotTimerAlign4 { timeout_abs_ns, flags };
                    vcpu_call(f, vcpuop::SET_SINGLESHOT_TIMER, vcpu, a.as_bytes());
                } else {
                    let a = VcpuSetSingleshotTimer { timeout_abs_ns, flags, pad: 0 };
                    vcpu_call(f, vcpuop::SET_SINGLESHOT_TIMER, vcpu, a.as_bytes());
                }
            }
            1 => {
                vcpu_call(f, vcpuop::STOP_SINGLESHOT_TIMER, vcpu, &[]);
            }
            2 => {
                let period_ns = f.timer_value();
                vcpu_call(f, vcpuop::SET_PERIODIC_TIMER, vcpu, VcpuSetPeriodicTimer { period_ns }.as_bytes());
            }
            3 => {
                vcpu_call(f, vcpuop::STOP_PERIODIC_TIMER, vcpu, &[]);
            }
            _ => {
                let t = f.timer_value();
                let args = if f.narrow() { [t & 0xFFFF_FFFF, t >> 32, 0, 0, 0] } else { [t, 0, 0, 0, 0] };
                f.call(nr::SET_TIMER_OP, args);
            }
        }
    }
}

/// Start vCPU 1 (once, with a real context), then take it down, ask, bring
/// it up, initialise it again (already initialised) and ask again.
fn vcpus(f: &mut Fuzzer<'_>) {
    if !f.secondary_started && !f.done() {
        let rc = f.g.start_secondary(1);
        f.count(rc);
        f.secondary_started = rc == 0;
    }
    for _ in 0..2 + f.rng.below(4) {
        let cmd = f.rng.pick(&[vcpuop::DOWN, vcpuop::UP, vcpuop::IS_UP, vcpuop::GET_RUNSTATE_INFO, vcpuop::INITIALISE]);
        let vcpu = if f.rng.chance(85) { 1 } else { f.vcpu().max(1) };
        let arg = match cmd {
            vcpuop::GET_RUNSTATE_INFO => f.out(48),
            // Never a context vCPU 1 could run: only unreadable ones.
            vcpuop::INITIALISE => {
                let class = f.rng.pick(&[PtrClass::Unmapped, PtrClass::Hypervisor]);
                f.ptr_of(class, 64).addr
            }
            _ => 0,
        };
        f.call(nr::VCPU_OP, [cmd, vcpu as u64, arg, 0, 0]);
    }
    // Leave it up most of the time (it then takes its share of slices).
    if f.rng.chance(70) {
        f.call(nr::VCPU_OP, [vcpuop::UP, 1, 0, 0, 0]);
    }
}
