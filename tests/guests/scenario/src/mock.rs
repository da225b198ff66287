//! Host test: the whole scenario against a small simulated Xen (memory is
//! host memory, secondaries are threads), for each layout of `layout.rs`.
//! It proves the scenario's own logic and expectations, not a hypervisor.

use std::alloc::{alloc_zeroed, Layout as AllocLayout};
use std::cell::Cell;
use std::mem::offset_of;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use xen_abi::nr::xencons::OUT_RING_SIZE;
use xen_abi::nr::{
    consoleio, domid, hvm_param, hvmop, hypercall as hc, mapspace, memop, runstate, schedop, vcpuop, vmasst, xenver,
};
use xen_abi::nr::{evtchn_fifo as ff, evtchnop, evtchnstat};
use xen_abi::public::{
    EvtchnAllocUnbound, EvtchnBindIpi, EvtchnBindVirq, EvtchnExpandArray, EvtchnInitControl, EvtchnPort,
    EvtchnSetPriority, EvtchnStatus,
};
use xen_abi::public::{
    VcpuRegisterArea, VcpuRegisterVcpuInfo, VcpuTimeInfo, XenAddToPhysmap, XenAddToPhysmapUlong32, XenHvmParam,
    XenMemoryReservation, XenMemoryReservationCompat, XenconsInterface,
};
use xen_abi::Errno;
use zerocopy::{FromBytes, IntoBytes};

use crate::layout::{Layout, ARM64, RISCV64, VCPU_INFO_MAX, VI_UPCALL_MASK, VI_UPCALL_PENDING, X86_32, X86_64};
use crate::{run_checks, secondary_main, Guest, Probe, PAGE_SIZE, VCPUS};

/// The console port the mock publishes.
const MOCK_CONSOLE_PORT: u32 = 5;

thread_local! {
    /// Which simulated vCPU the current thread is.
    static ME: Cell<u32> = const { Cell::new(0) };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Where {
    Slot,
    Dummy,
    At(u64),
}

struct VcpuState {
    vi: Where,
    registered: bool,
    initialised: bool,
    up: bool,
    irq_on: bool,
    time: u64,
    runstate: u64,
    rs_time: [u64; 4],
    rs_entry: u64,
    /// The areas registered by (identity-mapped) virtual address; a
    /// physical one, when set, is the one updated.
    runstate_va: u64,
    time_va: u64,
}

/// A simulated event channel: `EVTCHNSTAT_*`, the VIRQ, the FIFO priority.
#[derive(Clone, Copy, Default)]
struct Port {
    status: u32,
    virq: u32,
    priority: u32,
}

/// The simulated event channels (vCPU 0 only, FIFO once initialised).
#[derive(Default)]
struct Evtchn {
    ports: Vec<Port>,
    control_block: u64,
    array: Vec<u64>,
    tails: [u32; ff::MAX_QUEUES],
}

/// vCPU 0's PV timers (the only vCPU the scenario sets them on).
#[derive(Default)]
struct Timers {
    port: Option<u32>,
    singleshot: Option<u64>,
    period: u64,
    next: u64,
}

struct State {
    timers: Timers,
    mapped: bool,
    /// Pages the domain has (`tot_pages`), its limit, and the gfns it gave back.
    tot: u64,
    max: u64,
    ballooned: Vec<u64>,
    vcpus: Vec<VcpuState>,
    lines: String,
    partial: String,
    evtchn: Evtchn,
}

struct MockXen {
    layout: &'static Layout,
    ram: u64,
    pages: u64,
    nvcpus: u32,
    dummy_refused: bool,
    clock: AtomicU64,
    done: AtomicBool,
    st: Mutex<State>,
}

impl MockXen {
    fn new(layout: &'static Layout, nvcpus: u32, dummy_refused: bool) -> &'static Self {
        let pages = 16;
        // SAFETY: non-zero size, valid alignment; leaked for the test's life.
        let ram = unsafe {
            alloc_zeroed(AllocLayout::from_size_align(pages * PAGE_SIZE as usize, PAGE_SIZE as usize).unwrap())
        };
        let vcpus = (0..nvcpus)
            .map(|v| VcpuState {
                vi: if v < layout.legacy_vcpus { Where::Slot } else { Where::Dummy },
                registered: false,
                initialised: v == 0,
                up: v == 0,
                irq_on: false,
                time: 0,
                runstate: 0,
                rs_time: [0; 4],
                rs_entry: 0,
                runstate_va: 0,
                time_va: 0,
            })
            .collect();
        Box::leak(Box::new(MockXen {
            layout,
            ram: ram as u64,
            pages: pages as u64,
            nvcpus,
            dummy_refused,
            clock: AtomicU64::new(1_000_000),
            done: AtomicBool::new(false),
            st: Mutex::new(State {
                timers: Timers::default(),
                mapped: false,
                tot: pages as u64,
                max: pages as u64,
                ballooned: Vec::new(),
                vcpus,
                lines: String::new(),
                partial: String::new(),
                evtchn: Evtchn::default(),
            }),
        }))
    }

    fn now(&self) -> u64 {
        self.clock.fetch_add(1_000, Ordering::SeqCst)
    }

    fn shinfo(&self) -> u64 {
        self.ram + PAGE_SIZE
    }

    /// The console ring page.
    fn ring(&self) -> u64 {
        self.ram + 12 * PAGE_SIZE
    }

    /// `HVMOP_get_param`: the console ring and [`MOCK_CONSOLE_PORT`].
    fn hvm_op(&self, cmd: u64, arg: u64) -> i64 {
        let mut p: XenHvmParam = self.get(arg);
        p.value = match (cmd, p.index) {
            (hvmop::GET_PARAM, hvm_param::CONSOLE_PFN) => self.ring() / PAGE_SIZE,
            (hvmop::GET_PARAM, hvm_param::CONSOLE_EVTCHN) => MOCK_CONSOLE_PORT as u64,
            _ => return 0,
        };
        self.put(arg, p.as_bytes());
        0
    }

    /// `EVTCHNOP_send` on the console port: the backend drains `out[]`
    /// into console lines.
    /// `EVTCHNOP_send` on the console port: the backend drains `out[]`.
    fn console_send(&self) -> i64 {
        let cons_at = self.ring() + offset_of!(XenconsInterface, out_cons) as u64;
        let cons: u32 = self.get(cons_at);
        let prod: u32 = self.get(self.ring() + offset_of!(XenconsInterface, out_prod) as u64);
        let out = self.ring() + offset_of!(XenconsInterface, out) as u64;
        let bytes: Vec<u8> = (0..prod.wrapping_sub(cons))
            .map(|i| self.get::<u8>(out + (cons.wrapping_add(i) as usize % OUT_RING_SIZE) as u64))
            .collect();
        self.put(cons_at, &prod.to_le_bytes());
        let mut st = self.st.lock().unwrap();
        st.partial.push_str(std::str::from_utf8(&bytes).unwrap());
        while let Some(i) = st.partial.find('\n') {
            let line: String = st.partial.drain(..=i).collect();
            st.lines.push_str(&format!("(d1) {line}"));
        }
        0
    }

    fn vi_addr(&self, st: &State, v: u32) -> Option<u64> {
        match st.vcpus[v as usize].vi {
            Where::Slot if st.mapped => Some(self.shinfo() + (v * self.layout.vcpu_info_size) as u64),
            Where::At(a) => Some(a),
            _ => None,
        }
    }

    fn put(&self, gpa: u64, bytes: &[u8]) {
        self.write(gpa, bytes);
    }

    /// Read a hypercall argument struct (or a number) at `gpa`.
    fn get<T: FromBytes + IntoBytes>(&self, gpa: u64) -> T {
        crate::context::read_obj(self, gpa)
    }

    /// Write the time fields (version even) into a vcpu_time_info at `gpa`.
    fn put_time(&self, gpa: u64, now: u64) {
        let version_gpa = gpa + offset_of!(VcpuTimeInfo, version) as u64;
        let ver: u32 = self.get(version_gpa);
        let ver = (ver | 1).wrapping_add(1);
        self.put(gpa + offset_of!(VcpuTimeInfo, system_time) as u64, &now.to_le_bytes());
        self.put(version_gpa, &ver.to_le_bytes());
    }

    /// "Context switch" of vCPU `v`: it was runnable for a while, runs now.
    fn schedule_in(&self, st: &mut State, v: u32, waited: u64) {
        let now = self.now();
        let l = self.layout;
        let s = &mut st.vcpus[v as usize];
        s.rs_time[runstate::RUNNING as usize] += now.saturating_sub(s.rs_entry.max(1_000_000)) / 2;
        s.rs_time[runstate::RUNNABLE as usize] += waited;
        s.rs_entry = now;
        let pick = |phys: u64, va: u64| if phys != 0 { phys } else { va };
        let (rs, tm) = (pick(s.runstate, s.runstate_va), pick(s.time, s.time_va));
        if rs != 0 {
            self.put(rs, &runstate::RUNNING.to_le_bytes());
            self.put(rs + l.runstate_entry_offset as u64, &now.to_le_bytes());
            for i in 0..4 {
                let t = st.vcpus[v as usize].rs_time[i];
                self.put(rs + l.runstate_time_offset as u64 + 8 * i as u64, &t.to_le_bytes());
            }
        }
        if tm != 0 {
            self.put_time(tm, now);
        }
        if let Some(a) = self.vi_addr(st, v) {
            self.put_time(a + l.vcpu_info_time_offset as u64, now);
        }
    }

    /// Deliver a pending upcall to the calling vCPU if it can take one.
    fn maybe_upcall(&self) {
        let v = ME.with(|m| m.get());
        let deliver = {
            let st = self.st.lock().unwrap();
            let s = &st.vcpus[v as usize];
            match self.vi_addr(&st, v) {
                Some(a) if s.irq_on && s.registered => {
                    let pending: u8 = self.get(a + VI_UPCALL_PENDING);
                    let mask: u8 = self.get(a + VI_UPCALL_MASK);
                    pending == 1 && (!self.layout.has_upcall_mask || mask == 0)
                }
                _ => false,
            }
        };
        if deliver {
            crate::on_upcall(self, v);
        }
    }

    /// The event-channel ops the scenario makes, on vCPU 0: binds, status,
    /// close, and FIFO set-up, priorities and sends (linking as Xen does).
    fn evtchn_op(&self, cmd: u64, arg: u64) -> i64 {
        if cmd == evtchnop::SEND && self.get::<EvtchnPort>(arg).port == MOCK_CONSOLE_PORT {
            return self.console_send();
        }
        let mut st = self.st.lock().unwrap();
        let e = &mut st.evtchn;
        if e.ports.is_empty() {
            e.ports.push(Port { status: evtchnstat::IPI, ..Port::default() }); // reserved port 0
                                                                               // Ports 1.. up to the console's are the toolstack's (bound).
            for _ in 1..=MOCK_CONSOLE_PORT {
                e.ports.push(Port { status: evtchnstat::INTERDOMAIN, ..Port::default() });
            }
        }
        let alloc = |e: &mut Evtchn, status: u32, virq: u32| -> u32 {
            let p = Port { status, virq, priority: ff::PRIORITY_DEFAULT };
            match (1..e.ports.len()).find(|&i| e.ports[i].status == evtchnstat::CLOSED) {
                Some(i) => {
                    e.ports[i] = p;
                    i as u32
                }
                None => {
                    e.ports.push(p);
                    e.ports.len() as u32 - 1
                }
            }
        };
        match cmd {
            evtchnop::BIND_VIRQ => {
                let mut a: EvtchnBindVirq = self.get(arg);
                a.port = alloc(e, evtchnstat::VIRQ, a.virq);
                self.put(arg, a.as_bytes());
                if a.virq == xen_abi::nr::virq::TIMER {
                    st.timers.port = Some(a.port);
                }
            }
            evtchnop::BIND_IPI => {
                let mut a: EvtchnBindIpi = self.get(arg);
                a.port = alloc(e, evtchnstat::IPI, 0);
                self.put(arg, a.as_bytes());
            }
            evtchnop::ALLOC_UNBOUND => {
                let mut a: EvtchnAllocUnbound = self.get(arg);
                a.port = alloc(e, evtchnstat::UNBOUND, 0);
                self.put(arg, a.as_bytes());
            }
            evtchnop::STATUS => {
                let mut a: EvtchnStatus = self.get(arg);
                let Some(p) = e.ports.get(a.port as usize).copied() else {
                    return Errno::EINVAL.to_hypercall_ret();
                };
                a.status = if a.port == 0 { evtchnstat::CLOSED } else { p.status };
                a.vcpu = 0;
                a.u0 = p.virq;
                self.put(arg, a.as_bytes());
            }
            evtchnop::CLOSE => {
                let EvtchnPort { port } = self.get(arg);
                match e.ports.get_mut(port as usize) {
                    Some(p) if port != 0 && p.status != evtchnstat::CLOSED => p.status = evtchnstat::CLOSED,
                    _ => return Errno::EINVAL.to_hypercall_ret(),
                }
                if let Some(w) = Self::word(e, port) {
                    let v: u32 = self.get(w);
                    self.put(w, &(v & !(1 << ff::PENDING)).to_le_bytes());
                }
            }
            evtchnop::INIT_CONTROL => {
                let mut a: EvtchnInitControl = self.get(arg);
                e.control_block = a.control_gfn * PAGE_SIZE + a.offset as u64;
                a.link_bits = ff::LINK_BITS as u8;
                self.put(arg, a.as_bytes());
            }
            evtchnop::EXPAND_ARRAY => {
                let a: EvtchnExpandArray = self.get(arg);
                e.array.push(a.array_gfn * PAGE_SIZE);
            }
            evtchnop::SET_PRIORITY => {
                let a: EvtchnSetPriority = self.get(arg);
                e.ports[a.port as usize].priority = a.priority;
            }
            evtchnop::SEND => {
                let EvtchnPort { port } = self.get(arg);
                if e.control_block == 0 {
                    return Errno::ENOSYS.to_hypercall_ret();
                }
                let Some(w) = Self::word(e, port) else { return 0 };
                let word: u32 = self.get(w);
                let q = e.ports[port as usize].priority as usize;
                let mut word = word | (1 << ff::PENDING);
                let link = word & (1 << ff::MASKED) == 0 && word & (1 << ff::LINKED) == 0;
                if link {
                    word |= 1 << ff::LINKED;
                }
                self.put(w, &word.to_le_bytes());
                if link {
                    let tail = e.tails[q];
                    let tail_word = Self::word(e, tail).filter(|_| tail != 0 && tail != port);
                    let linked = match tail_word {
                        Some(tw) => {
                            let t: u32 = self.get(tw);
                            if t & (1 << ff::LINKED) != 0 {
                                self.put(tw, &((t & !ff::LINK_MASK) | port).to_le_bytes());
                            }
                            t & (1 << ff::LINKED) != 0
                        }
                        None => false,
                    };
                    e.tails[q] = port;
                    if !linked {
                        let cb = e.control_block;
                        self.put(cb + (ff::CONTROL_BLOCK_HEAD + 4 * q) as u64, &port.to_le_bytes());
                        let ready: u32 = self.get(cb + ff::CONTROL_BLOCK_READY as u64);
                        self.put(cb + ff::CONTROL_BLOCK_READY as u64, &(ready | 1 << q).to_le_bytes());
                        if let Some(vi) = self.vi_addr(&st, 0) {
                            self.put(vi + VI_UPCALL_PENDING, &[1]);
                        }
                    }
                }
            }
            _ => return Errno::ENOSYS.to_hypercall_ret(),
        }
        0
    }

    /// Where `port`'s FIFO event word is, if an array page covers it.
    fn word(e: &Evtchn, port: u32) -> Option<u64> {
        let words = (PAGE_SIZE / 4) as u32;
        e.array.get((port / words) as usize).map(|p| p + (port % words) as u64 * 4)
    }

    /// `VIRQ_TIMER` on vCPU 0: its port pending, the selector bit and
    /// `evtchn_upcall_pending` set (delivered by `maybe_upcall`).
    fn fire_timer(&self, st: &State) {
        let (Some(port), Some(vi)) = (st.timers.port, self.vi_addr(st, 0)) else { return };
        let l = self.layout;
        let w = l.xen_ulong_size;
        let word = self.shinfo() + l.evtchn_pending_offset() + (port / (w * 8) * w) as u64;
        let mut b = [0u8; 8];
        self.read(word, &mut b[..w as usize]);
        let v = u64::from_le_bytes(b) | 1 << (port % (w * 8));
        self.put(word, &v.to_le_bytes()[..w as usize]);
        self.put(vi + l.pending_sel_offset as u64, &[0xff; 8][..w as usize]);
        self.put(vi + VI_UPCALL_PENDING, &[1]);
    }

    /// Fire vCPU 0's timers that are due at the mock's time.
    fn run_timers(&self) {
        let now = self.clock.load(Ordering::SeqCst);
        let mut st = self.st.lock().unwrap();
        let t = &mut st.timers;
        let mut fire = false;
        if t.singleshot.is_some_and(|d| d <= now) {
            t.singleshot = None;
            fire = true;
        }
        if t.period != 0 && now >= t.next {
            t.next += (now - t.next) / t.period * t.period + t.period;
            fire = true;
        }
        if fire {
            self.fire_timer(&st);
        }
    }

    fn vcpu_op(&self, cmd: u64, v: u64, arg: u64) -> i64 {
        let l = self.layout;
        if v >= self.nvcpus as u64 {
            return Errno::ENOENT.to_hypercall_ret();
        }
        let v = v as u32;
        let mut st = self.st.lock().unwrap();
        match cmd {
            vcpuop::IS_UP => st.vcpus[v as usize].up as i64,
            vcpuop::INITIALISE => {
                if st.vcpus[v as usize].vi == Where::Dummy {
                    return Errno::EINVAL.to_hypercall_ret();
                }
                st.vcpus[v as usize].initialised = true;
                0
            }
            vcpuop::UP => {
                if !st.vcpus[v as usize].initialised {
                    return Errno::EINVAL.to_hypercall_ret();
                }
                if !st.vcpus[v as usize].up {
                    st.vcpus[v as usize].up = true;
                    self.spawn(v);
                }
                0
            }
            vcpuop::REGISTER_VCPU_INFO => {
                let VcpuRegisterVcpuInfo { mfn: gfn, offset: off, .. } = self.get(arg);
                if off > PAGE_SIZE as u32 - l.vcpu_info_size || off % l.vcpu_info_align != 0 {
                    return Errno::ENXIO.to_hypercall_ret();
                }
                if gfn < self.ram / PAGE_SIZE || gfn >= self.ram / PAGE_SIZE + self.pages {
                    return Errno::EINVAL.to_hypercall_ret();
                }
                if st.vcpus[v as usize].registered {
                    return Errno::EBUSY.to_hypercall_ret();
                }
                let new = gfn * PAGE_SIZE + off as u64;
                let mut area = [0u8; VCPU_INFO_MAX];
                match self.vi_addr(&st, v) {
                    Some(old) => self.read(old, &mut area[..l.vcpu_info_size as usize]),
                    None if l.has_upcall_mask => area[VI_UPCALL_MASK as usize] = 1,
                    None => {}
                }
                let o = l.pending_sel_offset as usize;
                area[o..o + l.xen_ulong_size as usize].fill(0xff);
                area[VI_UPCALL_PENDING as usize] = 1;
                self.put(new, &area[..l.vcpu_info_size as usize]);
                self.put_time(new + l.vcpu_info_time_offset as u64, self.now());
                let s = &mut st.vcpus[v as usize];
                s.vi = Where::At(new);
                s.registered = true;
                0
            }
            vcpuop::REGISTER_RUNSTATE_PHYS_AREA | vcpuop::REGISTER_VCPU_TIME_PHYS_AREA => {
                let VcpuRegisterArea { addr: gpa } = self.get(arg);
                // `!0` unregisters.
                let gpa = if gpa == !0 { 0 } else { gpa };
                if cmd == vcpuop::REGISTER_RUNSTATE_PHYS_AREA {
                    st.vcpus[v as usize].runstate = gpa;
                } else {
                    st.vcpus[v as usize].time = gpa;
                }
                self.schedule_in(&mut st, v, 0);
                0
            }
            vcpuop::REGISTER_RUNSTATE_MEMORY_AREA | vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA => {
                if let (vcpuop::REGISTER_VCPU_TIME_MEMORY_AREA, Some(e)) = (cmd, l.time_area_by_va_errno) {
                    return e.to_hypercall_ret();
                }
                let VcpuRegisterArea { addr: va } = self.get(arg);
                if cmd == vcpuop::REGISTER_RUNSTATE_MEMORY_AREA {
                    st.vcpus[v as usize].runstate_va = va;
                } else {
                    st.vcpus[v as usize].time_va = va;
                }
                self.schedule_in(&mut st, v, 0);
                0
            }
            vcpuop::SET_SINGLESHOT_TIMER => {
                // `timeout_abs_ns` leads the struct in every layout.
                let deadline: u64 = self.get(arg);
                if deadline < self.clock.load(Ordering::SeqCst) {
                    self.fire_timer(&st);
                } else {
                    st.timers.singleshot = Some(deadline);
                }
                0
            }
            vcpuop::SET_PERIODIC_TIMER => {
                let period: u64 = self.get(arg);
                // Never fired before: due at once, as in Xen.
                st.timers.period = period;
                st.timers.next = 0;
                0
            }
            vcpuop::STOP_PERIODIC_TIMER => {
                st.timers.period = 0;
                0
            }
            _ => Errno::ENOSYS.to_hypercall_ret(),
        }
    }

    /// `vm_assist`: only the runstate update flag, as for HVM and arm.
    fn vm_assist(&self, cmd: u64, ty: u64) -> i64 {
        if ty != vmasst::TYPE_RUNSTATE_UPDATE_FLAG as u64 {
            return Errno::EINVAL.to_hypercall_ret();
        }
        match cmd {
            vmasst::CMD_ENABLE | vmasst::CMD_DISABLE => 0,
            _ => Errno::ENOSYS.to_hypercall_ret(),
        }
    }

    /// `XENMEM_add_to_physmap` of shared_info, in the layout's shape: only
    /// onto the page the guest named as its shared_info page.
    fn add_to_physmap(&self, arg: u64) -> i64 {
        let (dom, space, idx, gpfn) = if self.layout.xen_ulong_size == 8 {
            let a: XenAddToPhysmap = self.get(arg);
            (a.domid, a.space, a.idx, a.gpfn)
        } else {
            let a: XenAddToPhysmapUlong32 = self.get(arg);
            (a.domid, a.space, a.idx as u64, a.gpfn as u64)
        };
        // Host addresses exceed 32 bits; a 32-bit guest's are not.
        let mask = if self.layout.xen_ulong_size == 8 { u64::MAX } else { u32::MAX as u64 };
        if dom != domid::SELF
            || space != mapspace::SHARED_INFO
            || idx != 0
            || gpfn != (self.shinfo() / PAGE_SIZE) & mask
        {
            return Errno::EINVAL.to_hypercall_ret();
        }
        self.st.lock().unwrap().mapped = true;
        0
    }

    /// The reservation ops and queries, by Xen's rules for a guest that
    /// names itself; the add_to_physmap of shared_info.
    fn memory_op(&self, cmd: u64, arg: u64) -> i64 {
        let op = cmd & memop::CMD_MASK;
        if op == memop::ADD_TO_PHYSMAP {
            return self.add_to_physmap(arg);
        }
        let mut st = self.st.lock().unwrap();
        match op {
            memop::CURRENT_RESERVATION => return st.tot as i64,
            memop::MAXIMUM_RESERVATION => return st.max as i64,
            memop::DECREASE_RESERVATION | memop::POPULATE_PHYSMAP | memop::INCREASE_RESERVATION => {}
            _ => return Errno::ENOSYS.to_hypercall_ret(),
        }
        let w = self.layout.xen_ulong_size as u64;
        let (list, nr, order, dom) = if w == 8 {
            let r: XenMemoryReservation = self.get(arg);
            (r.extent_start, r.nr_extents, r.extent_order, r.domid)
        } else {
            // The host's addresses do not fit a compat handle or xen_pfn_t:
            // the high bits come from the argument's own address (the list
            // is on the same stack) and from the mock's RAM.
            let r: XenMemoryReservationCompat = self.get(arg);
            ((arg & !0xffff_ffff) | r.extent_start as u64, r.nr_extents as u64, r.extent_order, r.domid)
        };
        if dom != domid::SELF || order != 0 {
            return 0;
        }
        let first = self.ram / PAGE_SIZE;
        let mut done = 0;
        while done < nr {
            if op == memop::INCREASE_RESERVATION {
                if st.tot == st.max {
                    break;
                }
                st.tot += 1;
                done += 1;
                continue;
            }
            let mut b = [0u8; 8];
            self.read(list + done * w, &mut b[..w as usize]);
            let gfn = if w == 8 { u64::from_le_bytes(b) } else { (first & !0xffff_ffff) | u64::from_le_bytes(b) };
            let ballooned = st.ballooned.iter().position(|&g| g == gfn);
            match (op, ballooned) {
                (memop::DECREASE_RESERVATION, None) if (first..first + self.pages).contains(&gfn) => {
                    st.ballooned.push(gfn);
                    st.tot -= 1;
                }
                (memop::POPULATE_PHYSMAP, Some(i)) if st.tot < st.max => {
                    st.ballooned.swap_remove(i);
                    st.tot += 1;
                    self.write(gfn * PAGE_SIZE, &[0; PAGE_SIZE as usize]);
                }
                _ => break,
            }
            done += 1;
        }
        done as i64
    }

    fn spawn(&self, v: u32) {
        // SAFETY: every MockXen is leaked by `new`, so it lives forever.
        let me: &'static MockXen = unsafe { &*(self as *const MockXen) };
        std::thread::spawn(move || {
            ME.with(|m| m.set(v));
            secondary_main(me, v);
        });
    }
}

// SAFETY: the mock's "guest memory" is host memory, identity-mapped by
// definition: its pages are leaked allocations nobody holds a reference to.
unsafe impl Guest for MockXen {
    fn layout(&self) -> &'static Layout {
        self.layout
    }

    fn hypercall(&self, nr: u64, a: [u64; 5]) -> i64 {
        let me = ME.with(|m| m.get());
        if self.done.load(Ordering::SeqCst) && me != 0 {
            // The run is over: park this secondary for good.
            loop {
                std::thread::park();
            }
        }
        let rc = match nr {
            hc::XEN_VERSION if a[0] == xenver::VERSION => {
                ((xenver::LANTERN_MAJOR << xenver::VERSION_MAJOR_SHIFT) | xenver::LANTERN_MINOR) as i64
            }
            hc::CONSOLE_IO if a[0] == consoleio::WRITE => {
                let mut b = vec![0u8; a[1] as usize];
                self.read(a[2], &mut b);
                let mut st = self.st.lock().unwrap();
                st.partial.push_str(std::str::from_utf8(&b).unwrap());
                while let Some(i) = st.partial.find('\n') {
                    let line: String = st.partial.drain(..=i).collect();
                    st.lines.push_str(&format!("(d1) {line}"));
                }
                0
            }
            hc::MEMORY_OP => self.memory_op(a[0], a[1]),
            hc::VCPU_OP => self.vcpu_op(a[0], a[1], a[2]),
            hc::VM_ASSIST => self.vm_assist(a[0], a[1]),
            hc::SCHED_OP if a[0] == schedop::YIELD => {
                // Give the secondary threads a chance, as a real yield would;
                // a millisecond passes.
                std::thread::sleep(std::time::Duration::from_micros(20));
                self.clock.fetch_add(1_000_000, Ordering::SeqCst);
                self.run_timers();
                let mut st = self.st.lock().unwrap();
                self.schedule_in(&mut st, me, 100);
                0
            }
            hc::SCHED_OP if matches!(a[0], schedop::BLOCK | schedop::POLL) && me == 0 => {
                // Sleep until the single-shot deadline, if there is one.
                if let Some(d) = self.st.lock().unwrap().timers.singleshot {
                    self.clock.fetch_max(d, Ordering::SeqCst);
                }
                self.run_timers();
                let mut st = self.st.lock().unwrap();
                self.schedule_in(&mut st, me, 0);
                0
            }
            hc::SET_TIMER_OP if self.layout.set_timer_op_errno.is_some() => {
                self.layout.set_timer_op_errno.map_or(0, |e| e.to_hypercall_ret())
            }
            hc::SET_TIMER_OP => {
                let t = if self.layout.xen_ulong_size == 4 { a[0] | a[1] << 32 } else { a[0] };
                self.st.lock().unwrap().timers.singleshot = (t != 0).then_some(t);
                0
            }
            hc::SCHED_OP => 0,
            hc::HVM_OP => self.hvm_op(a[0], a[1]),
            hc::EVENT_CHANNEL_OP => self.evtchn_op(a[0], a[1]),
            _ => Errno::ENOSYS.to_hypercall_ret(),
        };
        self.maybe_upcall();
        rc
    }

    fn console(&self, bytes: &[u8]) {
        crate::hypercall::console_write(self, bytes);
    }

    fn scratch_pages(&self) -> [u64; 4] {
        let b = self.ram + 2 * PAGE_SIZE;
        [b, b + PAGE_SIZE, b + 2 * PAGE_SIZE, b + 3 * PAGE_SIZE]
    }

    fn shared_info_page(&self) -> u64 {
        self.shinfo()
    }

    fn balloon_pages(&self) -> [u64; 2] {
        [self.ram + 6 * PAGE_SIZE, self.ram + 7 * PAGE_SIZE]
    }

    fn probe_read(&self, gpa: u64) -> Probe {
        if self.st.lock().unwrap().ballooned.contains(&(gpa / PAGE_SIZE)) {
            return self.ballooned_read();
        }
        let mut b = [0u8; 4];
        self.read(gpa, &mut b);
        Probe::Value(u32::from_le_bytes(b))
    }

    fn vcpu_count(&self) -> u32 {
        self.nvcpus
    }

    fn start_secondary(&self, vcpu: u32) -> i64 {
        if self.dummy_refused {
            let rc = self.vcpu_op(vcpuop::INITIALISE, vcpu as u64, 0);
            if rc != 0 {
                return rc;
            }
        } else {
            self.st.lock().unwrap().vcpus[vcpu as usize].initialised = true;
        }
        self.vcpu_op(vcpuop::UP, vcpu as u64, 0)
    }

    fn dummy_start_refused(&self) -> bool {
        self.dummy_refused
    }

    fn setup_upcall(&self) -> i64 {
        0
    }

    fn upcalls_enabled(&self, on: bool) {
        let v = ME.with(|m| m.get());
        self.st.lock().unwrap().vcpus[v as usize].irq_on = on;
        if on {
            self.maybe_upcall();
        }
    }

    fn cmdline(&self) -> &str {
        ""
    }

    fn name(&self) -> &'static str {
        "mock"
    }

    fn busy_wait(&self, _iterations: u32) {
        // Pretend the timer preempted us: time passed while runnable.
        let v = ME.with(|m| m.get());
        let mut st = self.st.lock().unwrap();
        self.schedule_in(&mut st, v, 5_000);
    }
}

#[test]
fn scenario_passes_against_mock_xen() {
    for (layout, nvcpus, refused) in
        [(&X86_64, 34, true), (&X86_32, 34, true), (&ARM64, 3, false), (&RISCV64, 3, false)]
    {
        for v in 0..crate::MAX_VCPUS {
            VCPUS.vcpu_info_gpa[v].store(0, Ordering::SeqCst);
        }
        let x = MockXen::new(layout, nvcpus, refused);
        let out = run_checks(x);
        x.done.store(true, Ordering::SeqCst);
        let log = x.st.lock().unwrap().lines.clone();
        println!("{log}");
        assert_eq!(out.failed, 0, "layout {}:\n{log}", layout.name);
        assert!(out.passed >= 20, "layout {}: only {} checks", layout.name, out.passed);
        for line in log.lines() {
            let body = line.strip_prefix("(d1) ").unwrap();
            assert!(
                ["CHECK PASS ", "REPORT ", "SCENARIO END ", "CONSOLE RING "].iter().any(|p| body.starts_with(p)),
                "bad line {line:?}"
            );
        }
        assert!(log.contains(&format!("SCENARIO END passed={} failed=0", out.passed)));
        assert!(log.contains(&format!("layout={}", layout.name)));
        assert!(log.contains("REPORT grants=not_run"), "no peer, no grants: said so");
        assert!(log.contains("(d1) CONSOLE RING hello from mock through out[]\n"), "the ring line arrived");
    }
}
