"""Machine snapshots: the whole state between slices, in one file, restored copy-on-write.

A snapshot holds

* the CPU: the engine's context blob (every register, segment caches, descriptor tables,
  control and debug registers, x87/SSE, the engine's MSRs, the interrupt shadow), hv's
  own CPU state (IA32_APIC_BASE, the TSC offset, HLT, the A20 gate, a pending interrupt
  hold), the clock (virtual time, and the virtual clock's counters);
* every device model's ``state()`` (timers as absolute virtual deadlines, re-armed on
  restore) and the synthetic BIOS's host-side state;
* guest RAM as an image at a page-aligned offset, with all-zero pages left as holes of a
  sparse file (they cost no disk space, and read as zeros);
* references to the disk images (path, size, modification time), checked on restore: a
  snapshot is a moment of the machine, and a disk that changed since is another machine;
* for a disk attached with ``snapshot`` (a throw-away overlay, as every built-in guest's
  boot disk is), the sectors written so far: they exist nowhere else;
* the keystrokes still waiting to be typed (``--input``).

Layout: a 64-byte header (magic ``HVSNAP``, format version, the JSON's length and offset,
the RAM image's offset and length), the JSON, then RAM, then the throw-away overlays'
sectors (their runs and offsets are in the JSON). Restoring in a fresh process maps
the RAM image with ``MAP_PRIVATE``: pages come from the file on first touch and are copied
only when written, so many machines started from one template share it.

What is not saved: frames queued on a virtual network (the network outside the machine
moves on), host-side output sinks and what they were sent, exit counts, and the debugger.
"""
from __future__ import annotations

import base64
import json
import os
import struct
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hv.cpu import context_size
from hv.devices.disk_store import DiskError
from hv.vcpu import ENV_OLD_EXCEPTION

if TYPE_CHECKING:
    from hv.machine import Machine

MAGIC = b"HVSNAP\0\0"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQQ")        # magic, version, reserved, json off/len, ram off/len
HEADER_SIZE = 64
PAGE = 4096
CTX_HEADER = 40
# The engine's CPU state holds one kind of host pointer: the breakpoints and watchpoints it
# inserted for DR0-DR3 (4 pointers just before old_exception, whose place vcpu.calibrate
# checks). They mean nothing in another engine: saved as zeros, and zeros on restore (a
# fresh engine has inserted none; the guest's DR7 arms them again when it is next written).
HW_BREAKPOINTS = slice(ENV_OLD_EXCEPTION - 32, ENV_OLD_EXCEPTION)

# MachineConfig fields that make a machine what it is (its hardware), checked on restore.
HARDWARE = ("board", "mem_size", "bios", "kernel", "kernel_format", "initrd", "cmdline", "net", "nic_base",
            "nic_irq", "vda", "virtio_net", "balloon_target", "clock",
            "fda", "fdb", "hda", "hdb", "hdc", "hdd")
DRIVES = ("fda", "fdb", "hda", "hdb", "hdc", "hdd", "vda")
SECTOR = 512
CHUNK = 2048                 # sectors copied at a time (1 MiB)
MAX_JSON = 64 << 20          # a description larger than this is not one hv wrote
TIME_MAX = 1 << 62           # ns (146 years): sums of saved times stay inside C's int64


class SnapshotError(ValueError):
    """A snapshot that cannot be taken or restored; one line, for the user."""


# -- JSON with bytes ---------------------------------------------------------------------
def _encode(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(bytes(obj)).decode()}
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"$b64"}:
            return base64.b64decode(obj["$b64"])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


# -- what a machine is -------------------------------------------------------------------
def hardware(config) -> dict:
    out = {}
    for name in HARDWARE:
        value = getattr(config, name, None)
        if name in DRIVES and value is not None:
            value = {"path": str(Path(value.path).resolve()), "readonly": value.readonly,
                     "snapshot": value.snapshot}
        elif name in ("kernel", "initrd") and value:
            value = str(Path(value).resolve())
        elif isinstance(value, bytes):
            value = value.hex()
        out[name] = value
    out["nic_mac"] = config.nic_mac.hex()
    return out


def disk_identity(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# -- save -------------------------------------------------------------------------------------
def _deadline(timer) -> int | None:
    # [device-state helper] a clock Timer's absolute deadline, None when not armed
    return None if timer is None or timer.cancelled else timer.deadline


def save(machine: "Machine", path: str | os.PathLike) -> dict:
    """Write ``machine``'s state to ``path`` (between slices: on the vCPU thread, or while
    the machine is not running). Returns the metadata written."""
    cfg = machine.config
    # [device-state helper] What the fast path deferred (doorbells, buffered serial output)
    # happens before the devices are read; every disk's completed writes reach its file
    # (an overlay's allocation table lives in memory until flushed) before its identity
    # is recorded.
    machine.vcpu.fast.service()
    try:
        machine.disks.flush()
    except OSError as e:                          # DiskError is one
        raise SnapshotError(f"cannot flush the disks before the snapshot: {e}") from None
    devices = {}
    for dev in machine.devices:
        state = getattr(dev, "state", None)
        if state is None:
            raise SnapshotError(f"the {dev.name} device cannot be saved yet (no state())")
        try:
            devices[dev.name] = state()
        except ValueError as e:                   # a device that cannot be saved says why
            raise SnapshotError(str(e)) from None
    vcpu = machine.vcpu
    # (a machine restored but not run yet holds its registers as data: no engine is made)
    blob = bytearray(vcpu.cpu_blob())
    blob[HW_BREAKPOINTS] = bytes(32)
    fast = vcpu.fast
    meta = {
        "hardware": hardware(cfg),
        "disks": {slot: disk_identity(getattr(cfg, slot).path) for slot in DRIVES
                  if getattr(cfg, slot, None) is not None},
        "cpu": {"blob": blob, "apic_base": vcpu.apic_base, "tsc": vcpu.tsc(),
                "halted": vcpu.halted, "a20": vcpu.a20, "irq_hold": int(fast.irq_hold),
                # A kick waiting for the next slice (output just flushed for --until, a
                # request) stops it at its first block: where the vCPU stops is state too.
                "kick": int(bool(fast.kick))},
        "clock": {"now": machine.clock.now(),
                  "blocks": int(getattr(fast, "blocks", 0)),
                  "skip_ns": int(fast.ctl.skip_ns if fast.kind == "c" else
                                 getattr(fast, "skip_ns", 0))},
        "devices": devices,
        "bios_state": machine.bios_state,
        # [device-state helper] hv's own periodic timer: where the vCPU stops depends on it.
        "host_timers": {"housekeeping": _deadline(machine._housekeeping_timer)},
        "input": list(machine._input),
    }
    mem = machine.mem
    # A throw-away overlay's sectors go after RAM, at offsets from RAM's end (RAM's own place
    # depends on the JSON's length, and the JSON holds these offsets).
    overlays, at = {}, 0
    for slot, disk in _snapshot_disks(machine):
        runs = _allocated_runs(disk._backend.table)
        overlays[slot] = {"runs": runs, "at": at}
        at += sum(n for _, n in runs) * SECTOR
    meta["overlays"] = overlays
    body = json.dumps(_encode(meta), separators=(",", ":")).encode()
    ram_off = -(-(HEADER_SIZE + len(body)) // PAGE) * PAGE
    disk_off = ram_off + mem.span
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_body(fd, machine, body, ram_off, disk_off, overlays)
        finally:
            os.close(fd)
        os.replace(tmp, path)                     # never a half-written snapshot
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SnapshotError(f"{path}: {e.strerror or e}") from None
    return meta


def _write_body(fd: int, machine, body: bytes, ram_off: int, disk_off: int,
                overlays: dict) -> None:
    mem = machine.mem
    os.pwrite(fd, HEADER.pack(MAGIC, VERSION, 0, HEADER_SIZE, len(body), ram_off, mem.span)
              .ljust(HEADER_SIZE, b"\0"), 0)
    os.pwrite(fd, body, HEADER_SIZE)
    zero = bytes(PAGE)
    view = mem.view
    for at in range(0, mem.span, PAGE):           # all-zero pages stay holes
        page = view[at:at + PAGE]
        if page != zero:
            os.pwrite(fd, page, ram_off + at)
    os.ftruncate(fd, disk_off)
    for slot, disk in _snapshot_disks(machine):
        at = disk_off + overlays[slot]["at"]
        for lba, n in overlays[slot]["runs"]:
            for lo in range(lba, lba + n, CHUNK):     # bounded host memory per write
                data = disk._backend.read(lo, min(CHUNK, lba + n - lo))
                os.pwrite(fd, data, at)
                at += len(data)
    os.fsync(fd)


def _snapshot_disks(machine):
    """(slot, Disk) of every disk attached with ``snapshot``: its overlay is anonymous."""
    for slot in DRIVES:
        disk = machine.vdisk if slot == "vda" else machine.slots.get(slot)
        if disk is not None and disk.snapshot:
            yield slot, disk


def _allocated_runs(table) -> list[list[int]]:
    """[lba, count] runs of the sectors an overlay holds."""
    runs, lba, n = [], 0, len(table)
    if table.count(0) == n:                       # the usual case: nothing written
        return runs
    while lba < n:
        if table[lba] == 0:
            lba += 1
            continue
        start = lba
        while lba < n and table[lba] != 0:
            lba += 1
        runs.append([start, lba - start])
    return runs


# -- restore ------------------------------------------------------------------------------------
def read(path: str | os.PathLike) -> tuple[dict, int]:
    """(metadata, RAM offset) of a snapshot file; SnapshotError if it is not one hv reads."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_SIZE)
            if len(head) < HEADER.size or head[:8] != MAGIC:
                raise SnapshotError(f"{path}: not an hv snapshot")
            _, version, _, json_off, json_len, ram_off, ram_len = HEADER.unpack_from(head)
            if version != VERSION:
                raise SnapshotError(f"{path}: snapshot format version {version}; this hv reads "
                                    f"version {VERSION}")
            if json_len > MAX_JSON or json_off < HEADER_SIZE or json_off > ram_off:
                raise SnapshotError(f"{path}: the snapshot's header is damaged")
            f.seek(json_off)
            body = f.read(json_len)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise SnapshotError(f"{path}: {e.strerror}") from None
    if len(body) != json_len or ram_off % PAGE or ram_off + ram_len > size:
        raise SnapshotError(f"{path}: the snapshot is truncated")
    try:
        meta = _decode(json.loads(body))
    except (ValueError, UnicodeDecodeError, TypeError):
        raise SnapshotError(f"{path}: the snapshot's description is damaged") from None
    try:
        _validate(meta, ram_off + ram_len, size)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise SnapshotError(f"{path}: the snapshot's description is damaged ({e})") from None
    meta["_ram"] = (ram_off, ram_len)
    meta["_path"] = str(path)
    return meta, ram_off


def _is_int(v, lo: int = 0, hi: int = (1 << 64) - 1) -> bool:
    return type(v) is int and lo <= v <= hi


def _validate(meta, disk_off: int, size: int) -> None:
    """Everything hv reads from the description outside the device models (which check
    their own states) has the type and range it must: a hostile file is one error line."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(what)
    need(isinstance(meta, dict), "not a record")
    for key in ("hardware", "disks", "cpu", "clock", "devices", "bios_state", "host_timers",
                "overlays"):
        need(isinstance(meta.get(key), dict), f"no {key}")
    hw = meta["hardware"]
    need(_is_int(hw.get("mem_size"), 1, 1 << 40), "mem_size")
    for slot in DRIVES:
        d = hw.get(slot)
        need(d is None or (isinstance(d, dict) and isinstance(d.get("path"), str) and
                           type(d.get("readonly")) is bool and type(d.get("snapshot")) is bool),
             f"drive {slot}")
    for key in ("board", "bios", "clock", "net", "virtio_net", "kernel_format", "cmdline"):
        need(isinstance(hw.get(key), str) or (key == "cmdline" and hw.get(key) is None), key)
    for key in ("kernel", "initrd"):
        need(hw.get(key) is None or isinstance(hw[key], str), key)
    for key in ("nic_base", "nic_irq", "balloon_target"):
        need(_is_int(hw.get(key), 0, 1 << 40), key)
    need(isinstance(hw.get("nic_mac"), str) and len(hw["nic_mac"]) == 12, "nic_mac")
    bytes.fromhex(hw["nic_mac"])
    for slot, ident in meta["disks"].items():
        need(slot in DRIVES and isinstance(hw.get(slot), dict) and isinstance(ident, dict) and
             _is_int(ident.get("size")) and _is_int(ident.get("mtime_ns")), f"disk {slot}")
    cpu = meta["cpu"]
    need(isinstance(cpu.get("blob"), bytes), "cpu blob")
    need(_is_int(cpu.get("apic_base")) and _is_int(cpu.get("tsc")) and
         _is_int(cpu.get("irq_hold"), 0, 1) and _is_int(cpu.get("kick", 0), 0, 1),
         "cpu registers")
    need(type(cpu.get("halted")) is bool and type(cpu.get("a20")) is bool, "cpu flags")
    c = meta["clock"]
    need(all(_is_int(c.get(k), 0, TIME_MAX) for k in ("now", "blocks", "skip_ns")), "clock")
    need(all(isinstance(k, str) and (v is None or _is_int(v, 0, TIME_MAX))
             for k, v in meta["bios_state"].items()), "bios_state")
    h = meta["host_timers"].get("housekeeping")
    need(h is None or _is_int(h, 0, TIME_MAX), "host timers")
    keys = meta.get("input", [])
    need(isinstance(keys, list) and len(keys) <= 1 << 20 and
         all(isinstance(k, bytes) and len(k) <= 16 for k in keys), "input")
    for slot, o in meta["overlays"].items():
        need(slot in DRIVES and isinstance(hw.get(slot), dict) and hw[slot]["snapshot"] and
             isinstance(o, dict) and _is_int(o.get("at")) and isinstance(o.get("runs"), list)
             and not (hw[slot]["readonly"] and o["runs"]), f"overlay {slot}")
        end = 0
        for run in o["runs"]:
            need(isinstance(run, list) and len(run) == 2 and _is_int(run[0], 0, 1 << 40) and
                 _is_int(run[1], 1, 1 << 40) and run[0] >= end, f"overlay {slot} runs")
            end = run[0] + run[1]
        total = sum(n for _, n in o["runs"]) * SECTOR
        need(disk_off + o["at"] + total <= size, f"overlay {slot} is truncated")


def check(meta: dict, config, path) -> None:
    """Refuse a snapshot of another machine, or one whose disks changed since."""
    mine, theirs = hardware(config), meta["hardware"]
    diff = [k for k in set(theirs) | set(mine) if mine.get(k) != theirs.get(k)]
    if diff:
        raise SnapshotError(f"{path}: taken on another machine configuration "
                            f"({', '.join(sorted(diff))} differ)")
    for slot, ident in meta["disks"].items():
        spec = getattr(config, slot)
        try:
            now = disk_identity(spec.path)
        except OSError as e:
            raise SnapshotError(f"{path}: disk {spec.path}: {e.strerror}") from None
        if now != ident:
            raise SnapshotError(f"{path}: disk {spec.path} changed since the snapshot was taken")
    if meta["_ram"][1] != max(config.mem_size, 1 << 20):
        raise SnapshotError(f"{path}: the snapshot's RAM image is not the machine's size")


def config_from(meta: dict, **host) -> "Any":
    """A MachineConfig for ``hv run --restore``: the snapshot's hardware plus the host-side
    choices (sinks, dispatch, timeout...) given as keyword arguments."""
    from hv.machine import DriveSpec, MachineConfig
    hw = dict(meta["hardware"])
    for slot in DRIVES:
        if hw.get(slot):
            hw[slot] = DriveSpec(hw[slot]["path"], hw[slot]["readonly"], hw[slot]["snapshot"])
    hw["nic_mac"] = bytes.fromhex(hw["nic_mac"])
    return MachineConfig(**hw, **host)


# ``hv run`` options that choose hardware, with their defaults: with --restore the snapshot
# chooses it, so none of them may be given.
HARDWARE_OPTIONS = {"image": None, "fda": None, "fdb": None, "hda": None, "hdb": None,
                    "hdc": None, "hdd": None, "vda": None, "snapshot": False, "net": None,
                    "nic": "ne2000", "virtio_net": None, "balloon": None, "kernel": None,
                    "initrd": None, "kernel_format": "auto", "append": "", "machine": "pc",
                    "mem": "16M", "bios": "synthetic", "clock": "wall"}


def restore_args(args) -> None:
    """``hv run --restore FILE``: set ``args``'s hardware options to the snapshot's, so the
    run builds the machine the snapshot was taken on (SnapshotError: one line)."""
    given = [k for k, default in HARDWARE_OPTIONS.items() if getattr(args, k, default) != default]
    if given:
        what = "IMAGE" if given[0] == "image" else "--" + given[0].replace("_", "-")
        raise SnapshotError(f"--restore: the machine comes from the snapshot; {what} "
                            "cannot be given with it")
    meta, _ = read(args.restore)
    hw = meta["hardware"]
    try:
        for slot in DRIVES:
            d = hw.get(slot)
            if d:
                setattr(args, slot, d["path"] + (",ro" if d["readonly"] else "")
                        + (",snapshot" if d["snapshot"] else ""))
        mac = bytes.fromhex(hw["nic_mac"])
        args.nic = (f"ne2000,iobase={int(hw['nic_base']):#x},irq={int(hw['nic_irq'])},"
                    f"mac={':'.join(f'{b:02x}' for b in mac)}")
        args.mem, args.bios, args.clock = str(hw["mem_size"]), str(hw["bios"]), str(hw["clock"])
        args.machine = str(hw.get("board") or "pc")
        args.net, args.virtio_net = str(hw["net"]), str(hw["virtio_net"])
        args.balloon = str(hw["balloon_target"]) if hw["balloon_target"] else None
        args.kernel, args.initrd = hw.get("kernel"), hw.get("initrd")
        args.kernel_format, args.append = str(hw["kernel_format"]), str(hw["cmdline"] or "")
    except (KeyError, TypeError, ValueError):
        raise SnapshotError(f"{args.restore}: the snapshot's machine description is "
                            "damaged") from None


def load_overlays(machine: "Machine", meta: dict) -> None:
    """Refill every throw-away overlay with the sectors the snapshot holds for it (and
    nothing else: sectors written since the save are forgotten)."""
    ram_off, ram_len = meta["_ram"]
    disk_off = ram_off + ram_len
    disks = dict(_snapshot_disks(machine))
    if set(disks) != set(meta["overlays"]):
        raise SnapshotError("the snapshot's throw-away disks are not this machine's")
    with open(meta["_path"], "rb") as f:
        for slot, disk in disks.items():
            backend = disk._backend
            backend.table = array("I", bytes(4 * len(backend.table)))
            backend.next_slot = 1
            o = meta["overlays"][slot]
            at = disk_off + o["at"]
            for lba, n in o["runs"]:
                if lba + n > disk.sectors:
                    raise SnapshotError(f"the snapshot's {slot} sectors lie beyond its disk")
                for lo in range(lba, lba + n, CHUNK):
                    count = min(CHUNK, lba + n - lo)
                    data = os.pread(f.fileno(), count * SECTOR, at)
                    if len(data) != count * SECTOR:
                        raise SnapshotError(f"the snapshot's {slot} sectors are truncated")
                    try:
                        disk.write(lo, data)
                    except DiskError as e:
                        raise SnapshotError(f"cannot refill the {slot} overlay: {e}") from None
                    at += len(data)


def apply(machine: "Machine", meta: dict, ram_copied: bool) -> None:
    """Load the CPU, clock and devices (RAM is already there: mapped from the file, or
    copied in when ``ram_copied``). A machine whose vCPU has not run yet gets the CPU
    state as data (hv/vcpu.py): its engine is made, and loads it, when it first runs."""
    vcpu, fast, clock = machine.vcpu, machine.vcpu.fast, machine.clock
    names = {dev.name for dev in machine.devices}
    if set(meta["devices"]) != names:            # checked before anything changes
        odd = sorted(set(meta["devices"]) ^ names)
        raise SnapshotError(f"the snapshot's devices are not this machine's ({', '.join(odd)})")
    load_overlays(machine, meta)
    # Keys the saved run had still to type, then (a new machine) those its own --input adds.
    pending = list(meta.get("input", []))
    if not ram_copied:
        pending += list(machine.config.input_keys)
    machine._input.clear()
    machine._input.extend(pending)
    cpu = meta["cpu"]
    blob = bytearray(cpu["blob"])
    if len(blob) != context_size() - CTX_HEADER:
        raise SnapshotError("the snapshot's CPU state is not this engine's layout")
    blob[HW_BREAKPOINTS] = bytes(32)
    vcpu.load_cpu_blob(bytes(blob))
    if vcpu.a20 != cpu["a20"]:
        vcpu.set_a20(cpu["a20"])
    vcpu.halted = cpu["halted"]
    fast.irq_hold = cpu["irq_hold"]
    fast.kick = cpu.get("kick", 0)
    vcpu.set_apic_base(cpu["apic_base"])
    # The clock: its counters first (the virtual clock's source), then its origin.
    c = meta["clock"]
    if fast.virtual:
        if fast.kind == "c":
            fast.ctl.blocks, fast.ctl.skip_ns = c["blocks"], c["skip_ns"]
        else:
            fast.blocks, fast.skip_ns = c["blocks"], c["skip_ns"]
    clock.set_now(c["now"])
    clock.clear_timers()
    # The TSC is a 64-bit counter: an offset from the clock taken modulo 2^64 fits the C
    # side's int64 whatever the guest wrote to it.
    now = clock.now()
    vcpu.set_tsc(now + ((cpu["tsc"] - now + (1 << 63)) % (1 << 64)) - (1 << 63))
    machine.bios_state.clear()
    machine.bios_state.update(meta["bios_state"])
    for dev in machine.devices:
        state = meta["devices"][dev.name]
        # [device-state helper] A damaged or foreign state is one line for the user.
        try:
            dev.load_state(state)
        except (ValueError, TypeError, KeyError) as e:
            raise SnapshotError(f"the snapshot's {dev.name} state cannot be loaded: {e}") from None
    machine.rearm_host_timers()
    # [device-state helper] hv's periodic timer at its saved deadline, so the vCPU stops
    # where it would have (a run after a restore repeats the run it continues).
    saved = meta.get("host_timers", {}).get("housekeeping")
    if isinstance(saved, int) and not isinstance(saved, bool) and saved >= 0:
        machine._housekeeping_timer.cancel()
        machine._housekeeping_timer = clock.at(saved, machine._housekeeping)
    if ram_copied and vcpu.started:
        vcpu.uc.ctl_flush_tb()
