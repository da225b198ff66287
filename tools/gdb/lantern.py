"""gdb helpers for Lantern's embedded gdb stub.

Load with `source tools/gdb/lantern.py` (cargo xtask gdb does it). Adds:

  lantern vcpu-info [dNvM|dN|all]   vcpu_info of vCPUs as a table
  lantern areas [dN]                every registered guest area as a table
  lantern domains                   the domains as a table
  lantern json CMD...               the raw --json answer of a monitor command
  lantern catch [NAME|NR ...]       catch hypercalls (all, or those named, e.g.
                                    `lantern catch vcpu_op`): gdb's `catch syscall`
                                    with Xen's numbers; each catchpoint stop then
                                    names the hypercall and whether it is its
                                    entry or its return
  $lantern("dNvM", "path.to.field" [, "command"])
                                    one value from a monitor command's JSON,
                                    usable in expressions and breakpoint
                                    conditions; the command defaults to
                                    vcpu-info, "runstate" and "time" also work.

Everything comes from the stub's `monitor ... --json` output (one line of
JSON per command; schemas in docs/gdb.md).

Loading it sets the expression language to C: in a Rust frame gdb's Rust
parser turns "d1v0" into a `&str`, which needs the guest's `malloc`, so
`print $lantern("d1v0", "evtchn_pending_sel")` would fail on a stop in a
Rust guest. C expressions still name Rust items by path
(`print lantern_guest_scenario::VCPUS`); `set language rust` brings Rust's
syntax back (write b"d1v0" there).
"""

import json

import gdb

gdb.execute("set language c")


def monitor_json(command):
    """Runs `monitor COMMAND --json` and returns the parsed JSON."""
    out = gdb.execute("monitor %s --json" % command, to_string=True)
    # The answer is one line of JSON; gdb may print its own notices (a
    # language warning for the frame) into the same capture.
    lines = [l for l in out.strip().splitlines() if l.startswith("{")]
    line = lines[-1] if lines else "{}"
    data = json.loads(line)
    if isinstance(data, dict) and "error" in data:
        raise gdb.GdbError("lantern: %s" % data["error"])
    return data


def _where(v):
    p = v.get("placement")
    if p == "guest":
        return "gfn %#x+%#x" % (v["gfn"], v["offset"])
    if p == "shared_info":
        return "shared_info[%s]" % v.get("slot")
    return p or "-"


def _hex(x):
    return "-" if x is None else "%#x" % x


def _table(rows, headers):
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(str(c))) for w, c in zip(widths, r)]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    lines = [fmt % tuple(headers)]
    lines += [fmt % tuple(str(c) for c in r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def lookup(obj, path):
    """Finds `path` in a monitor JSON object: a field name of the decoded
    struct (`evtchn_pending_sel`, `time.system_time`), a top-level key
    (`gfn`, `placement`), or a dotted walk (`area.fields.state`)."""
    if isinstance(obj, dict) and "vcpus" in obj and isinstance(obj["vcpus"], list):
        if len(obj["vcpus"]) != 1:
            raise gdb.GdbError("lantern: name one vCPU (dNvM)")
        obj = obj["vcpus"][0]
    for fields in ("fields",):
        if isinstance(obj.get(fields), dict) and path in obj[fields]:
            return obj[fields][path]
    if path in obj:
        return obj[path]
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise gdb.GdbError("lantern: no field %r" % path)
    return cur


class LanternPrefix(gdb.Command):
    """Lantern hypervisor helpers: lantern vcpu-info|areas|domains|json."""

    def __init__(self):
        super().__init__("lantern", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)


class VcpuInfoCmd(gdb.Command):
    """lantern vcpu-info [dNvM|dN|all]: vcpu_info of vCPUs as a table."""

    def __init__(self):
        super().__init__("lantern vcpu-info", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        sel = arg.strip() or "all"
        data = monitor_json("vcpu-info %s" % sel)
        rows = []
        for v in data["vcpus"]:
            f = v["fields"]
            rows.append(
                (
                    v["vcpu"],
                    v["layout"],
                    v["state"],
                    _where(v),
                    f.get("evtchn_upcall_pending", "-"),
                    f.get("evtchn_upcall_mask", "-"),
                    _hex(f.get("evtchn_pending_sel")),
                    f.get("time.version", "-"),
                    f.get("time.system_time", "-"),
                )
            )
        headers = ("vcpu", "layout", "state", "vcpu_info", "pending", "mask", "pending_sel", "tver", "system_time")
        gdb.write(_table(rows, headers) + "\n")


class AreasCmd(gdb.Command):
    """lantern areas [dN]: every vCPU area (kind, where, size, layout, refs)."""

    def __init__(self):
        super().__init__("lantern areas", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        data = monitor_json(("areas %s" % arg.strip()).strip())
        rows = [
            (a["vcpu"], a["kind"], a["placement"], _hex(a["gfn"]), _hex(a["offset"]), a["size"], a["layout"],
             a["refs"], a["writable_refs"])
            for a in data["areas"]
        ]
        headers = ("vcpu", "kind", "placement", "gfn", "offset", "size", "layout", "refs", "wr")
        gdb.write(_table(rows, headers) + "\n")


class DomainsCmd(gdb.Command):
    """lantern domains: the domains as a table."""

    def __init__(self):
        super().__init__("lantern domains", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        data = monitor_json("domains")
        rows = [
            (d["id"], d["name"], d["layout"], d["vcpus"], d["lifecycle"], d["pause_count"], _hex(d["shared_info_gfn"]))
            for d in data["domains"]
        ]
        gdb.write(_table(rows, ("id", "name", "layout", "vcpus", "lifecycle", "paused", "shared_info")) + "\n")


class JsonCmd(gdb.Command):
    """lantern json CMD...: print the --json answer of a monitor command."""

    def __init__(self):
        super().__init__("lantern json", gdb.COMMAND_DATA)

    def invoke(self, arg, from_tty):
        gdb.write(json.dumps(monitor_json(arg.strip() or "help"), indent=1) + "\n")


def _arg_str(v):
    """A string argument of a convenience function: a C string literal, or
    (in Rust expressions, where "..." needs the inferior's allocator) a byte
    string literal b"..."."""
    try:
        return v.string()
    except (gdb.error, RuntimeError):
        pass
    t = v.type.strip_typedefs()
    if t.code in (gdb.TYPE_CODE_ARRAY, getattr(gdb, "TYPE_CODE_STRING", -1)):
        lo, hi = t.range()
        # Rust byte strings cannot be subscripted: view them as a u8 array.
        arr = v.cast(t.target().array(lo, hi))
        return bytes(int(arr[i]) & 0xFF for i in range(lo, hi + 1)).decode().rstrip("\0")
    raise gdb.GdbError('lantern: pass names as strings ("d1v0", or b"d1v0" in Rust expressions)')


def _u64_type():
    for name in ("unsigned long long", "u64", "unsigned long"):
        try:
            return gdb.lookup_type(name)
        except gdb.error:
            continue
    return None


class LanternFunction(gdb.Function):
    """$lantern("dNvM", "path.to.field" [, "vcpu-info"|"runstate"|"time"])
    returns one value of the stub's JSON for that vCPU, e.g.
    $lantern("d1v0", "evtchn_pending_sel") or
    $lantern("d1v0", "area.fields.state", "runstate")."""

    def __init__(self):
        super().__init__("lantern")

    def invoke(self, vcpu, path, command=None):
        cmd = _arg_str(command) if command is not None else "vcpu-info"
        value = lookup(monitor_json("%s %s" % (cmd, _arg_str(vcpu))), _arg_str(path))
        if isinstance(value, bool):
            return gdb.Value(int(value))
        if isinstance(value, int):
            # gdb.Value(int) is a signed long; keep the unsigned bit pattern.
            t = _u64_type()
            if value >= 0 and t is not None:
                return gdb.Value(value & 0xFFFFFFFFFFFFFFFF).cast(t)
            return gdb.Value(value)
        if value is None:
            return gdb.Value(-1)
        if isinstance(value, (list, dict)):
            return gdb.Value(json.dumps(value))
        return gdb.Value(str(value))


class CatchCmd(gdb.Command):
    """Catch hypercalls: lantern catch [NAME|NR ...] (no argument: all)."""

    def __init__(self):
        super().__init__("lantern catch", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        names = {h["name"]: h["nr"] for h in monitor_json("hypercalls")["hypercalls"]}
        nrs = []
        for word in arg.split():
            if word.isdigit():
                nrs.append(int(word))
            elif word in names:
                nrs.append(names[word])
            else:
                raise gdb.GdbError("lantern: no hypercall `%s` (monitor hypercalls lists them)" % word)
        # gdb offers `catch syscall` only under an OS ABI with system calls
        # (the guests' system calls are hypercalls, reported by number);
        # its names for the numbers are Linux's, the stop notice below
        # gives Xen's.
        gdb.execute("set osabi GNU/Linux")
        gdb.execute("catch syscall %s" % " ".join(str(n) for n in nrs), from_tty)


def _on_stop(event):
    """Names the hypercall of a catchpoint stop (gdb would use Linux's name)."""
    if not isinstance(event, gdb.BreakpointEvent):
        return
    # A catchpoint has neither a location nor an expression.
    if not any(getattr(b, "location", None) is None and getattr(b, "expression", None) is None
               for b in event.breakpoints):
        return
    try:
        last = monitor_json("debug").get("last_stop") or {}
    except (gdb.error, gdb.GdbError, ValueError):
        return
    if last.get("reason", "").startswith("hypercall-"):
        where = "entry" if last["reason"] == "hypercall-entry" else "return"
        print("Lantern: %s hypercall %s (%d) %s" % (last["vcpu"], last["name"], last["nr"], where))


gdb.events.stop.connect(_on_stop)

LanternPrefix()
CatchCmd()
VcpuInfoCmd()
AreasCmd()
DomainsCmd()
JsonCmd()
LanternFunction()
