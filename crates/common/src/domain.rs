//! Domains and vCPUs: identity, lifecycle, pausing, the guest-physical map,
//! the shared_info page, and the per-vCPU guest areas.
//!
//! Locking, after Xen: `Domain::lock` is the domain lock and is held only for
//! the short critical sections that swap guest areas or tear them down; the
//! p2m, the per-vCPU area slots, the grant table and the event channels have
//! their own spin locks. Lock order: domain lock → event channels (two
//! domains' in domain-id order) → vCPU areas → grant table → p2m: raising
//! an event reads the vCPU's vcpu_info placement, and FIFO `expand_array`
//! looks its frame up in the p2m, under the event-channel lock.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::area::{AreaMap, Placement, VcpuAreas};
use crate::clock::Clock;
use crate::console::{Console, ConsoleSink, PvConsole};
use crate::diag::{Diagnostics, Unhandled};
use crate::grants::GrantTable;
use crate::memory::{DomId, Gfn, P2m, P2mType, Page, PageRef, Reservation};
use crate::ports::EventChannels;
use crate::pv_timer_state::VcpuTimers;
use crate::runstate_info::RunstateInfo;
use xen_abi::errno::{Errno, XenResult};
use xen_abi::layout::GuestAbi;
use xen_abi::public::E820Entry;

/// `VPF_down`: the vCPU is offline (not yet brought up, or `VCPUOP_down`).
pub const VPF_DOWN: u32 = 1 << 0;
/// `VPF_blocked`: the vCPU waits for an event (`SCHEDOP_block`, HLT, WFI).
pub const VPF_BLOCKED: u32 = 1 << 1;

/// Number of HVM parameters a domain stores (`HVM_NR_PARAMS`).
const HVM_NR_PARAMS: usize = xen_abi::nr::hvm_param::NR_PARAMS as usize;

/// Lifecycle of a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Created and (unless paused) running.
    Running,
    /// The guest shut itself down with a `SHUTDOWN_*` reason.
    Shutdown(u32),
    /// Crashed by the hypervisor after an unhandled fault.
    Crashed,
    /// Killed: every area unmapped and every page released.
    Dead,
}

impl Lifecycle {
    /// Name used by tools: `running`, `shutdown:REASON`, `crashed`, `dead`.
    pub fn name(self) -> String {
        match self {
            Lifecycle::Running => String::from("running"),
            Lifecycle::Shutdown(r) => alloc::format!("shutdown:{r}"),
            Lifecycle::Crashed => String::from("crashed"),
            Lifecycle::Dead => String::from("dead"),
        }
    }
}

/// What a person sees as a vCPU's state (gdb, monitor commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// Offline.
    Down,
    /// On the physical CPU right now.
    Running,
    /// Waiting for an event.
    Blocked,
    /// Paused (by the hypervisor, the debugger or its domain being paused).
    Paused,
    /// Ready to run.
    Runnable,
}

impl VcpuState {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            VcpuState::Down => "down",
            VcpuState::Running => "running",
            VcpuState::Blocked => "blocked",
            VcpuState::Paused => "paused",
            VcpuState::Runnable => "runnable",
        }
    }
}

/// Everything needed to create a domain.
pub struct DomainConfig {
    /// Domain id.
    pub id: DomId,
    /// Human-readable name (the guest image's name).
    pub name: String,
    /// Number of vCPUs.
    pub max_vcpus: u32,
    /// RAM pages populated at gfn 0 upwards.
    pub ram_pages: u64,
    /// The guest ABI initially in force (an arch with two may latch the
    /// other later).
    pub abi: &'static dyn GuestAbi,
    /// The hypervisor clock.
    pub clock: Arc<dyn Clock>,
    /// Where the domain's console lines go.
    pub console: Arc<dyn ConsoleSink>,
}

/// One virtual CPU.
pub struct Vcpu {
    /// vCPU id within its domain.
    pub id: u32,
    pause_count: AtomicU32,
    pause_flags: AtomicU32,
    initialised: AtomicBool,
    running: AtomicBool,
    upcall_needed: AtomicBool,
    upcall_vector: AtomicU8,
    pub(crate) areas: spin::Mutex<VcpuAreas>,
    pub(crate) runstate: spin::Mutex<RunstateInfo>,
    pub(crate) timers: spin::Mutex<VcpuTimers>,
}

impl Vcpu {
    /// Current pause count (hypervisor-internal pauses, debugger pauses).
    pub fn pause_count(&self) -> u32 {
        self.pause_count.load(Ordering::Acquire)
    }

    /// Whether the vCPU is paused by a pause count.
    pub fn is_paused(&self) -> bool {
        self.pause_count() > 0
    }

    /// The `VPF_*` flags.
    pub fn pause_flags(&self) -> u32 {
        self.pause_flags.load(Ordering::Acquire)
    }

    /// Whether the vCPU is up (not `VPF_down`).
    pub fn is_up(&self) -> bool {
        self.pause_flags() & VPF_DOWN == 0
    }

    /// Whether the vCPU has been given an initial context.
    pub fn is_initialised(&self) -> bool {
        self.initialised.load(Ordering::Acquire)
    }

    /// Marks the vCPU as having an initial context.
    pub fn set_initialised(&self) {
        self.initialised.store(true, Ordering::Release);
    }

    /// Whether the scheduler has it on the CPU now.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub(crate) fn set_running(&self, on: bool) {
        self.running.store(on, Ordering::Release);
    }

    /// Sets `VPF_*` flags.
    pub fn set_flag(&self, f: u32) {
        self.pause_flags.fetch_or(f, Ordering::AcqRel);
    }

    /// Clears `VPF_*` flags.
    pub fn clear_flag(&self, f: u32) {
        self.pause_flags.fetch_and(!f, Ordering::AcqRel);
    }

    /// Takes the "an upcall must be injected" request, if any.
    pub fn take_upcall_request(&self) -> bool {
        self.upcall_needed.swap(false, Ordering::AcqRel)
    }

    /// Per-vCPU upcall vector from `HVMOP_set_evtchn_upcall_vector` (0 = none).
    pub fn upcall_vector(&self) -> u8 {
        self.upcall_vector.load(Ordering::Acquire)
    }

    /// Sets the per-vCPU upcall vector.
    pub fn set_upcall_vector(&self, v: u8) {
        self.upcall_vector.store(v, Ordering::Release);
    }

    /// A snapshot of the vCPU's area slots.
    pub fn areas(&self) -> VcpuAreas {
        self.areas.lock().clone()
    }

    /// The hypervisor's copy of the runstate.
    pub fn runstate(&self) -> RunstateInfo {
        *self.runstate.lock()
    }

    /// A snapshot of the PV timers and the poll state.
    pub fn timers(&self) -> VcpuTimers {
        *self.timers.lock()
    }
}

/// One domain.
pub struct Domain {
    /// Domain id.
    pub id: DomId,
    /// Name.
    pub name: String,
    abi: spin::RwLock<&'static dyn GuestAbi>,
    /// The domain lock (`domain_lock()` in Xen).
    pub lock: spin::Mutex<()>,
    /// Guest-physical map.
    pub p2m: spin::Mutex<P2m>,
    reservation: Arc<Reservation>,
    boot_ram_pages: u64,
    /// Frames of the domain's own memory that no gfn maps: what
    /// `increase_reservation` allocates for a translated guest, and the RAM
    /// a populate replaced. Xen keeps both assigned to the domain (counted
    /// in `tot_pages`) until it dies; so does Lantern.
    unmapped: spin::Mutex<Vec<PageRef>>,
    memory_map: spin::Mutex<Vec<E820Entry>>,
    shared_info: PageRef,
    shared_info_gfn: AtomicU64,
    dummy: PageRef,
    vcpus: Vec<Vcpu>,
    pause_count: AtomicU32,
    lifecycle: spin::Mutex<Lifecycle>,
    /// Event channels.
    pub evtchn: spin::Mutex<EventChannels>,
    /// Console output, split into lines.
    pub console: spin::Mutex<Console>,
    /// What the guest asked for and did not get.
    pub diag: spin::Mutex<Diagnostics>,
    /// The PV console ring and port, once the builder attached one.
    pub(crate) pv_console: spin::Mutex<Option<PvConsole>>,
    /// The grant table (v1) and the grant mappings this domain holds.
    pub grant_table: spin::Mutex<GrantTable>,
    hvm_params: spin::Mutex<[u64; HVM_NR_PARAMS]>,
    vm_assist: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl Domain {
    /// Creates a domain: RAM populated, shared_info allocated, every vCPU on
    /// its default vcpu_info (shared_info slot or dummy), vCPU 0 up and
    /// initialised, the others down.
    pub fn new(cfg: DomainConfig) -> XenResult<Arc<Domain>> {
        if cfg.max_vcpus == 0 {
            return Err(Errno::EINVAL);
        }
        let shared_info = Page::alloc(cfg.id)?;
        // The domain's own (xenheap-style) reference on its shared_info page.
        shared_info.get();
        let dummy = Page::alloc(cfg.id)?;
        // The toolstack's default: the domain may have as much memory as it
        // was built with (`maxmem` = `memory`).
        let reservation = Reservation::new(cfg.ram_pages);
        let mut p2m = P2m::new();
        p2m.populate_ram(cfg.id, &reservation, Gfn(0), cfg.ram_pages)?;
        let now = cfg.clock.now_ns();
        let vcpus = (0..cfg.max_vcpus)
            .map(|id| Vcpu {
                id,
                pause_count: AtomicU32::new(0),
                pause_flags: AtomicU32::new(if id == 0 { 0 } else { VPF_DOWN }),
                initialised: AtomicBool::new(id == 0),
                running: AtomicBool::new(false),
                upcall_needed: AtomicBool::new(false),
                upcall_vector: AtomicU8::new(0),
                areas: spin::Mutex::new(VcpuAreas::new(AreaMap::dummy(dummy.clone()))),
                runstate: spin::Mutex::new(RunstateInfo::new(id == 0, now)),
                timers: spin::Mutex::new(VcpuTimers::default()),
            })
            .collect();
        let d = Arc::new(Domain {
            id: cfg.id,
            name: cfg.name,
            abi: spin::RwLock::new(cfg.abi),
            lock: spin::Mutex::new(()),
            p2m: spin::Mutex::new(p2m),
            reservation,
            boot_ram_pages: cfg.ram_pages,
            unmapped: spin::Mutex::new(Vec::new()),
            memory_map: spin::Mutex::new(Vec::new()),
            shared_info,
            shared_info_gfn: AtomicU64::new(Gfn::INVALID.0),
            dummy,
            vcpus,
            pause_count: AtomicU32::new(0),
            lifecycle: spin::Mutex::new(Lifecycle::Running),
            evtchn: spin::Mutex::new(EventChannels::with_word_size(cfg.abi.xen_ulong_size())),
            console: spin::Mutex::new(Console::new(cfg.id, cfg.console)),
            diag: spin::Mutex::new(Diagnostics::default()),
            pv_console: spin::Mutex::new(None),
            grant_table: spin::Mutex::new(GrantTable::new()),
            hvm_params: spin::Mutex::new([0; HVM_NR_PARAMS]),
            vm_assist: AtomicU64::new(0),
            clock: cfg.clock,
        });
        for v in &d.vcpus {
            d.vcpu_info_reset(v);
        }
        Ok(d)
    }

    /// The guest ABI in force.
    pub fn abi(&self) -> &'static dyn GuestAbi {
        *self.abi.read()
    }

    /// Switches the layout in force (an arch with a 32-bit compat layout
    /// latches it when the guest maps shared_info in that mode). Only allowed
    /// while no vCPU has a guest-registered area, as the areas' sizes and
    /// alignment were checked against the old layout; returns whether the
    /// layout changed.
    pub fn latch_abi(&self, abi: &'static dyn GuestAbi) -> XenResult<bool> {
        let _g = self.lock.lock();
        if core::ptr::addr_eq(*self.abi.read() as *const dyn GuestAbi, abi as *const dyn GuestAbi) {
            return Ok(false);
        }
        if self.vcpus.iter().any(|v| v.areas.lock().has_guest_areas()) {
            return Err(Errno::EBUSY);
        }
        *self.abi.write() = abi;
        self.evtchn.lock().set_word_size(abi.xen_ulong_size());
        // Default vcpu_info slots move with the layout.
        for v in &self.vcpus {
            let mut a = v.areas.lock();
            if a.vcpu_info.placement != Placement::Guest {
                a.vcpu_info = self.default_vcpu_info(v.id);
            }
        }
        Ok(true)
    }

    /// The `VMASST_TYPE_*` bits the guest has enabled with `vm_assist`.
    pub fn vm_assist(&self) -> u64 {
        self.vm_assist.load(Ordering::Acquire)
    }

    /// Whether assist `ty` (a `VMASST_TYPE_*`) is enabled.
    pub fn vm_assist_enabled(&self, ty: u32) -> bool {
        ty < 64 && self.vm_assist() & (1 << ty) != 0
    }

    /// Enables or disables assist `ty`; the caller has checked it against
    /// the arch's valid mask.
    pub(crate) fn set_vm_assist(&self, ty: u32, on: bool) {
        let bit = 1u64 << ty;
        if on {
            self.vm_assist.fetch_or(bit, Ordering::AcqRel);
        } else {
            self.vm_assist.fetch_and(!bit, Ordering::AcqRel);
        }
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Number of vCPUs.
    pub fn max_vcpus(&self) -> u32 {
        self.vcpus.len() as u32
    }

    /// vCPU by id.
    pub fn vcpu(&self, id: u32) -> XenResult<&Vcpu> {
        self.vcpus.get(id as usize).ok_or(Errno::ENOENT)
    }

    /// All vCPUs.
    pub fn vcpus(&self) -> &[Vcpu] {
        &self.vcpus
    }

    /// The shared_info frame.
    pub fn shared_info(&self) -> &PageRef {
        &self.shared_info
    }

    /// The gfn shared_info is mapped at, if the guest mapped it.
    pub fn shared_info_gfn(&self) -> Option<Gfn> {
        match Gfn(self.shared_info_gfn.load(Ordering::Acquire)) {
            Gfn::INVALID => None,
            g => Some(g),
        }
    }

    /// Lifecycle state.
    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.lock()
    }

    /// Whether the domain will never run again.
    pub fn is_finished(&self) -> bool {
        !matches!(self.lifecycle(), Lifecycle::Running)
    }

    /// HVM parameter value.
    pub fn hvm_param(&self, index: usize) -> XenResult<u64> {
        self.hvm_params.lock().get(index).copied().ok_or(Errno::EINVAL)
    }

    /// Sets an HVM parameter.
    pub fn set_hvm_param(&self, index: usize, value: u64) -> XenResult<()> {
        *self.hvm_params.lock().get_mut(index).ok_or(Errno::EINVAL)? = value;
        Ok(())
    }

    /// Domain-wide pause count (`domain_pause`), e.g. from the debugger.
    pub fn pause_count(&self) -> u32 {
        self.pause_count.load(Ordering::Acquire)
    }

    /// `domain_pause`.
    pub fn pause(&self) {
        self.pause_count.fetch_add(1, Ordering::AcqRel);
    }

    /// `domain_unpause`; `-EINVAL` if not paused.
    pub fn unpause(&self) -> XenResult<()> {
        self.pause_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| c.checked_sub(1))
            .map(|_| ())
            .map_err(|_| Errno::EINVAL)
    }

    /// `vcpu_pause`: the vCPU will not be scheduled until unpaused. With one
    /// physical CPU a remote vCPU is never on the CPU while the hypervisor
    /// runs, so no wait for descheduling is needed; an SMP scheduler must
    /// wait here until the vCPU has left its CPU.
    pub fn vcpu_pause(&self, v: &Vcpu) {
        v.pause_count.fetch_add(1, Ordering::AcqRel);
    }

    /// `vcpu_unpause`.
    pub fn vcpu_unpause(&self, v: &Vcpu) {
        let old = v.pause_count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(old > 0, "vcpu pause count underflow");
    }

    /// Whether the scheduler may run `v` now.
    pub fn vcpu_runnable(&self, v: &Vcpu) -> bool {
        !self.is_finished() && self.pause_count() == 0 && v.pause_count() == 0 && v.pause_flags() == 0
    }

    /// What a person sees as `v`'s state.
    pub fn vcpu_state(&self, v: &Vcpu) -> VcpuState {
        if v.is_running() {
            VcpuState::Running
        } else if !v.is_up() {
            VcpuState::Down
        } else if v.is_paused() || self.pause_count() > 0 {
            VcpuState::Paused
        } else if v.pause_flags() & VPF_BLOCKED != 0 {
            VcpuState::Blocked
        } else {
            VcpuState::Runnable
        }
    }

    /// The default vcpu_info placement for vCPU `id` in the layout in force:
    /// its shared_info slot below the legacy limit, else the dummy area.
    pub(crate) fn default_vcpu_info(&self, id: u32) -> AreaMap {
        let abi = self.abi();
        if id < abi.legacy_max_vcpus() {
            let off = abi.shared_info().vcpu_info + id as usize * abi.vcpu_info().size;
            AreaMap::shared_info_slot(self.shared_info.clone(), off)
        } else {
            AreaMap::dummy(self.dummy.clone())
        }
    }

    /// `vcpu_info_reset`: points `v`'s vcpu_info at its default placement.
    /// Callers drop any guest page reference the old placement held.
    pub(crate) fn vcpu_info_reset(&self, v: &Vcpu) {
        v.areas.lock().vcpu_info = self.default_vcpu_info(v.id);
    }

    /// Looks up `gfn` for a hypervisor-held writable mapping: the frame must
    /// be read/write RAM owned by this domain. Takes a general and a writable
    /// type reference on success (`get_page_from_gfn` + `get_page_type`).
    pub fn get_writable_page(&self, gfn: Gfn) -> XenResult<PageRef> {
        let p2m = self.p2m.lock();
        let e = p2m.get(gfn).ok_or(Errno::EINVAL)?;
        if e.page.owner() != self.id || e.p2mt != P2mType::RamRw {
            return Err(Errno::EINVAL);
        }
        e.page.get();
        e.page.get_writable();
        Ok(e.page.clone())
    }

    /// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`: maps the shared_info
    /// frame at `gfn`, replacing (and releasing) whatever RAM was there, and
    /// unmapping it from its previous gfn.
    pub fn map_shared_info(&self, gfn: Gfn) -> XenResult<()> {
        let mut p2m = self.p2m.lock();
        let old = Gfn(self.shared_info_gfn.swap(gfn.0, Ordering::AcqRel));
        if old != Gfn::INVALID && old != gfn {
            p2m.remove(old);
        }
        p2m.set(gfn, self.shared_info.clone(), P2mType::RamRw);
        Ok(())
    }

    /// Frames of the domain's own memory in existence (`domain_tot_pages`):
    /// mapped RAM, RAM no gfn maps ([`Domain::unmapped_pages`]), and RAM
    /// released but still pinned by another holder. shared_info and grant
    /// frames are hypervisor frames and do not count.
    pub fn tot_pages(&self) -> u64 {
        self.reservation.tot_pages()
    }

    /// The most frames of its own memory the domain may have (`max_pages`).
    pub fn max_pages(&self) -> u64 {
        self.reservation.max_pages()
    }

    /// Sets [`Domain::max_pages`] (`XEN_DOMCTL_max_mem`).
    pub fn set_max_pages(&self, max: u64) {
        self.reservation.set_max_pages(max)
    }

    /// Allocates one zeroed frame of the domain's own memory, `-ENOMEM` at
    /// its limit.
    pub fn alloc_ram(&self) -> XenResult<PageRef> {
        Page::alloc_ram(self.id, &self.reservation)
    }

    /// Whether `gfn` lies in the RAM the domain was built with (gfn 0 up to
    /// its initial size), mapped now or not: a hole there is memory the
    /// guest gave back (ballooned out), which the arch answers as Xen
    /// answers an access to a p2m hole.
    pub fn is_boot_ram(&self, gfn: Gfn) -> bool {
        gfn.0 < self.boot_ram_pages
    }

    /// How many of the domain's frames no gfn maps.
    pub fn unmapped_pages(&self) -> u64 {
        self.unmapped.lock().len() as u64
    }

    /// `increase_reservation` for a translated guest: `1 << order` frames
    /// assigned to the domain (counted) but mapped nowhere, all or none.
    pub fn increase_reservation(&self, order: u32) -> XenResult<()> {
        let pages = (0..1u64 << order).map(|_| self.alloc_ram()).collect::<XenResult<Vec<_>>>()?;
        self.unmapped.lock().extend(pages);
        Ok(())
    }

    /// `populate_physmap` of one extent: fresh zeroed RAM at
    /// `gfn..gfn + (1 << order)`, all or none. `-EINVAL` past `gfn_limit`
    /// (what the arch's tables can map), `-EPERM` if a gfn of the extent
    /// holds another domain's frame (a grant mapping: Xen refuses to unmap
    /// one this way), `-ENOMEM` at the domain's limit. Where a gfn already
    /// holds the domain's RAM, the new frame replaces it and the old one
    /// stays the domain's, unmapped (Xen's `p2m_add_page`); shared_info or
    /// a grant frame there is unmapped.
    pub fn populate_extent(&self, gfn: Gfn, order: u32, gfn_limit: u64) -> XenResult<()> {
        let n = 1u64 << order;
        let end = gfn.0.checked_add(n).filter(|&e| e <= gfn_limit).ok_or(Errno::EINVAL)?;
        {
            let p2m = self.p2m.lock();
            if (gfn.0..end).any(|g| p2m.get(Gfn(g)).is_some_and(|e| e.page.owner() != self.id)) {
                return Err(Errno::EPERM);
            }
        }
        let pages = (0..n).map(|_| self.alloc_ram()).collect::<XenResult<Vec<_>>>()?;
        let mut p2m = self.p2m.lock();
        // Checked again under the lock: a grant map may have raced in.
        if (gfn.0..end).any(|g| p2m.get(Gfn(g)).is_some_and(|e| e.page.owner() != self.id)) {
            return Err(Errno::EPERM);
        }
        let mut replaced = Vec::new();
        for (g, page) in (gfn.0..end).zip(pages) {
            if let Some(old) = p2m.set(Gfn(g), page, P2mType::RamRw) {
                self.forget_special_gfn(&old.page, Gfn(g));
                if old.page.is_ram() {
                    replaced.push(old.page);
                }
            }
        }
        drop(p2m);
        self.unmapped.lock().extend(replaced);
        Ok(())
    }

    /// `guest_remove_page`: unmaps the frame at `gfn` and drops the
    /// domain's allocation of it (freed, and uncounted, once nothing else
    /// holds it). `-EINVAL` if nothing is mapped there, `-ENXIO` if the
    /// frame is another domain's (a grant mapping). shared_info or a grant
    /// frame at `gfn` is unmapped, the frame itself staying the domain's.
    pub fn remove_page(&self, gfn: Gfn) -> XenResult<()> {
        let mut p2m = self.p2m.lock();
        let e = p2m.get(gfn).ok_or(Errno::EINVAL)?;
        if e.page.owner() != self.id {
            return Err(Errno::ENXIO);
        }
        if let Some(old) = p2m.remove(gfn) {
            self.forget_special_gfn(&old.page, gfn);
        }
        Ok(())
    }

    /// Notes that `page`, just unmapped from `gfn`, is no longer there if
    /// it is shared_info (grant frames find their gfn from the p2m itself).
    fn forget_special_gfn(&self, page: &PageRef, gfn: Gfn) {
        if Arc::ptr_eq(page, &self.shared_info) {
            let _ = self.shared_info_gfn.compare_exchange(gfn.0, Gfn::INVALID.0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Keeps `page`, a frame of the domain's own memory a mapping just
    /// replaced, assigned to the domain though no gfn maps it (Xen's
    /// `p2m_add_page` leaves the RAM a grant mapping covers so).
    pub(crate) fn keep_unmapped(&self, page: PageRef) {
        if page.is_ram() && page.owner() == self.id {
            self.unmapped.lock().push(page);
        }
    }

    /// The frames of the domain's own memory no gfn maps (each holds no
    /// reference: only the list keeps it), for the page-count audit.
    pub fn unmapped_frames(&self) -> Vec<PageRef> {
        self.unmapped.lock().clone()
    }

    /// The dummy vcpu_info page (no guest can see it; it holds no
    /// reference), for the page-count audit.
    pub fn dummy_page(&self) -> &PageRef {
        &self.dummy
    }

    /// Releases the frames no gfn maps (domain destruction).
    pub(crate) fn release_unmapped(&self) {
        self.unmapped.lock().clear();
    }

    /// The memory map the domain was booted with (`XENMEM_memory_map`),
    /// empty if its boot protocol hands it none.
    pub fn memory_map(&self) -> Vec<E820Entry> {
        self.memory_map.lock().clone()
    }

    /// Records the memory map the boot protocol gave the guest, which
    /// `XENMEM_memory_map` then returns (Xen's `XENMEM_set_memory_map`).
    pub fn set_memory_map(&self, entries: Vec<E820Entry>) {
        *self.memory_map.lock() = entries;
    }

    /// Counts an unhandled request of `v` (`None`: not tied to a vCPU) and
    /// logs the first of its kind at debug level.
    pub fn note_unhandled(&self, v: Option<u32>, kind: Unhandled) {
        if self.diag.lock().note(kind) {
            match v {
                Some(v) => log::debug!("d{}v{}: {} (first time)", self.id, v, kind.describe()),
                None => log::debug!("d{}: {} (first time)", self.id, kind.describe()),
            }
        }
    }

    /// Soft reset's step for shared_info (Xen's `arch_domain_soft_reset`):
    /// the gfn shared_info is mapped at, if any, gets a fresh RAM page, and
    /// shared_info is no longer mapped anywhere. The frame itself stays the
    /// domain's (its own reference).
    pub(crate) fn replace_shared_info_gfn(&self) -> XenResult<()> {
        let mut p2m = self.p2m.lock();
        let Some(gfn) = self.shared_info_gfn() else {
            return Ok(());
        };
        match p2m.get(gfn) {
            Some(e) if alloc::sync::Arc::ptr_eq(&e.page, &self.shared_info) => {}
            _ => return Err(Errno::EINVAL),
        }
        let fresh = self.alloc_ram()?;
        p2m.set(gfn, fresh, P2mType::RamRw);
        self.shared_info_gfn.store(Gfn::INVALID.0, Ordering::Release);
        Ok(())
    }

    /// Records that the guest shut down with `reason`.
    pub fn shutdown(&self, reason: u32) {
        let mut l = self.lifecycle.lock();
        if *l == Lifecycle::Running {
            *l = Lifecycle::Shutdown(reason);
        }
    }

    /// Crashes the domain (unhandled guest fault).
    pub fn crash(&self) {
        let mut l = self.lifecycle.lock();
        if !matches!(*l, Lifecycle::Dead) {
            *l = Lifecycle::Crashed;
        }
    }

    pub(crate) fn set_lifecycle(&self, l: Lifecycle) {
        *self.lifecycle.lock() = l;
    }

    /// Marks events pending for `v` (`vcpu_mark_events_pending`): sets
    /// `evtchn_upcall_pending` in its vcpu_info and, if it was clear, asks the
    /// arch to inject the upcall and wakes the vCPU.
    pub fn vcpu_mark_events_pending(&self, v: &Vcpu) {
        let abi = self.abi();
        let area = v.areas.lock().vcpu_info.clone();
        let off = area.offset + abi.vcpu_info().upcall_pending.offset;
        let was = area.page.read_uint(off, 1).unwrap_or(1);
        if was != 0 {
            return;
        }
        let _ = area.page.write_uint(off, 1, 1);
        self.vcpu_kick(v);
    }

    /// Requests an upcall injection and unblocks `v`.
    pub fn vcpu_kick(&self, v: &Vcpu) {
        v.upcall_needed.store(true, Ordering::Release);
        self.vcpu_unblock(v);
    }

    /// Clears `VPF_blocked` (an event arrived); a wake-up of a vCPU blocked
    /// in `SCHEDOP_poll` ends the poll too, whatever woke it.
    pub fn vcpu_unblock(&self, v: &Vcpu) {
        if v.pause_flags.fetch_and(!VPF_BLOCKED, Ordering::AcqRel) & VPF_BLOCKED != 0 {
            v.timers.lock().end_poll();
        }
    }

    /// Blocks `v` until an event, unless its upcall is already pending.
    pub fn vcpu_block(&self, v: &Vcpu) {
        v.set_flag(VPF_BLOCKED);
        if self.events_need_delivery(v) {
            v.clear_flag(VPF_BLOCKED);
        }
    }

    /// `local_events_need_delivery`: an upcall is requested or pending for
    /// `v`, so blocking (`SCHEDOP_block`, `SCHEDOP_poll`) returns at once.
    pub fn events_need_delivery(&self, v: &Vcpu) -> bool {
        v.upcall_needed.load(Ordering::Acquire) || self.upcall_pending(v)
    }

    /// Reads `evtchn_upcall_pending` of `v`'s vcpu_info.
    pub fn upcall_pending(&self, v: &Vcpu) -> bool {
        let abi = self.abi();
        let area = v.areas.lock().vcpu_info.clone();
        area.page.read_uint(area.offset + abi.vcpu_info().upcall_pending.offset, 1).is_ok_and(|b| b != 0)
    }
}
