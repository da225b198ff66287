//! Host test: the whole scenario against a small simulated Xen (memory is
//! host memory, secondaries are threads), for each of the three layouts.
//! It proves the scenario's own logic and expectations, not a hypervisor.

use std::alloc::{alloc_zeroed, Layout as AllocLayout};
use std::cell::Cell;
use std::mem::offset_of;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use xen_abi::nr::xencons::OUT_RING_SIZE;
use xen_abi::nr::{
    consoleio, domid, evtchnop, hvm_param, hvmop, hypercall as hc, mapspace, runstate, schedop, vcpuop, xenver,
};
use xen_abi::public::{
    EvtchnPort, VcpuRegisterArea, VcpuRegisterVcpuInfo, VcpuTimeInfo, XenAddToPhysmap, XenAddToPhysmapUlong32,
    XenHvmParam, XenconsInterface,
};
use xen_abi::Errno;
use zerocopy::{FromBytes, IntoBytes};

use crate::layout::{Layout, ARM64, VCPU_INFO_MAX, VI_UPCALL_MASK, VI_UPCALL_PENDING, X86_32, X86_64};
use crate::{run_checks, secondary_main, Guest, PAGE_SIZE, VCPUS};

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
}

struct State {
    mapped: bool,
    vcpus: Vec<VcpuState>,
    lines: String,
    partial: String,
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
            st: Mutex::new(State { mapped: false, vcpus, lines: String::new(), partial: String::new() }),
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
    fn evtchn_op(&self, cmd: u64, arg: u64) -> i64 {
        let EvtchnPort { port } = self.get(arg);
        if cmd != evtchnop::SEND || port != MOCK_CONSOLE_PORT {
            return Errno::EINVAL.to_hypercall_ret();
        }
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
        let (rs, tm) = (s.runstate, s.time);
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
                if cmd == vcpuop::REGISTER_RUNSTATE_PHYS_AREA {
                    st.vcpus[v as usize].runstate = gpa;
                } else {
                    st.vcpus[v as usize].time = gpa;
                }
                self.schedule_in(&mut st, v, 0);
                0
            }
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
            hc::MEMORY_OP => self.add_to_physmap(a[1]),
            hc::VCPU_OP => self.vcpu_op(a[0], a[1], a[2]),
            hc::SCHED_OP if a[0] == schedop::YIELD => {
                // Give the secondary threads a chance, as a real yield would.
                std::thread::sleep(std::time::Duration::from_micros(20));
                let mut st = self.st.lock().unwrap();
                self.schedule_in(&mut st, me, 100);
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
    for (layout, nvcpus, refused) in [(&X86_64, 34, true), (&X86_32, 34, true), (&ARM64, 3, false)] {
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
        assert!(log.contains("(d1) CONSOLE RING hello from mock through out[]\n"), "the ring line arrived");
    }
}
