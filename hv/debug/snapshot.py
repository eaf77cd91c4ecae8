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
  snapshot is a moment of the machine, and a disk that changed since is another machine.

Layout: a 64-byte header (magic ``HVSNAP``, format version, the JSON's length and offset,
the RAM image's offset and length), the JSON, then RAM. Restoring in a fresh process maps
the RAM image with ``MAP_PRIVATE``: pages come from the file on first touch and are copied
only when written, so many machines started from one template share it.

What is not saved: frames queued on a virtual network (the network outside the machine
moves on), disks attached with ``--snapshot`` (their overlay is a temporary file: refused),
host-side output sinks, and the debugger.
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unicorn import x86_const as X

if TYPE_CHECKING:
    from hv.machine import Machine

MAGIC = b"HVSNAP\0\0"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQQ")        # magic, version, reserved, json off/len, ram off/len
HEADER_SIZE = 64
PAGE = 4096
CTX_HEADER = 40

# MachineConfig fields that make a machine what it is (its hardware), checked on restore.
HARDWARE = ("mem_size", "bios", "kernel", "kernel_format", "cmdline", "net", "nic_base",
            "nic_irq", "vda", "virtio_net", "balloon_target", "clock",
            "fda", "fdb", "hda", "hdb", "hdc", "hdd")
DRIVES = ("fda", "fdb", "hda", "hdb", "hdc", "hdd", "vda")


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
    for slot in DRIVES:
        spec = getattr(cfg, slot, None)
        if spec is not None and spec.snapshot:
            raise SnapshotError(f"--{slot} {spec.path} is attached with snapshot: its writes "
                                "live in a temporary overlay a snapshot cannot refer to")
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
    vcpu, uc = machine.vcpu, machine.vcpu.uc
    ctx = uc.context_save()
    blob = ctypes.string_at(ctypes.cast(ctx.context, ctypes.c_void_p).value + CTX_HEADER,
                            ctx.size - CTX_HEADER)
    fast = vcpu.fast
    meta = {
        "hardware": hardware(cfg),
        "disks": {slot: disk_identity(getattr(cfg, slot).path) for slot in DRIVES
                  if getattr(cfg, slot, None) is not None},
        "cpu": {"blob": blob, "apic_base": vcpu.cpu.apic_base, "tsc": vcpu.cpu.tsc(),
                "halted": vcpu.halted, "a20": vcpu.a20, "irq_hold": int(fast.irq_hold)},
        "clock": {"now": machine.clock.now(),
                  "blocks": int(getattr(fast, "blocks", 0)),
                  "skip_ns": int(fast.ctl.skip_ns if fast.kind == "c" else
                                 getattr(fast, "skip_ns", 0))},
        "devices": devices,
        "bios_state": machine.bios_state,
        # [device-state helper] hv's own periodic timer: where the vCPU stops depends on it.
        "host_timers": {"housekeeping": _deadline(machine._housekeeping_timer)},
    }
    body = json.dumps(_encode(meta), separators=(",", ":")).encode()
    ram_off = -(-(HEADER_SIZE + len(body)) // PAGE) * PAGE
    mem = machine.mem
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, HEADER.pack(MAGIC, VERSION, 0, HEADER_SIZE, len(body), ram_off, mem.span)
                  .ljust(HEADER_SIZE, b"\0"), 0)
        os.pwrite(fd, body, HEADER_SIZE)
        zero = bytes(PAGE)
        view = mem.view
        for at in range(0, mem.span, PAGE):       # all-zero pages stay holes
            page = view[at:at + PAGE]
            if page != zero:
                os.pwrite(fd, page, ram_off + at)
        os.ftruncate(fd, ram_off + mem.span)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)                         # never a half-written snapshot
    return meta


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
            f.seek(json_off)
            body = f.read(json_len)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise SnapshotError(f"{path}: {e.strerror}") from None
    if len(body) != json_len or ram_off % PAGE or ram_off + ram_len > size:
        raise SnapshotError(f"{path}: the snapshot is truncated")
    try:
        meta = _decode(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        raise SnapshotError(f"{path}: the snapshot's description is damaged") from None
    meta["_ram"] = (ram_off, ram_len)
    return meta, ram_off


def check(meta: dict, config, path) -> None:
    """Refuse a snapshot of another machine, or one whose disks changed since."""
    mine, theirs = hardware(config), meta["hardware"]
    diff = [k for k in theirs if mine.get(k) != theirs[k]]
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


def apply(machine: "Machine", meta: dict, ram_copied: bool) -> None:
    """Load the CPU, clock and devices (RAM is already there: mapped from the file, or
    copied in when ``ram_copied``)."""
    vcpu, uc, fast, clock = machine.vcpu, machine.vcpu.uc, machine.vcpu.fast, machine.clock
    cpu = meta["cpu"]
    ctx = uc.context_save()
    env = ctypes.cast(ctx.context, ctypes.c_void_p).value + CTX_HEADER
    blob = cpu["blob"]
    if len(blob) != ctx.size - CTX_HEADER:
        raise SnapshotError("the snapshot's CPU state is not this engine's layout")
    ctypes.memmove(env, blob, len(blob))
    uc.context_restore(ctx)
    if vcpu.a20 != cpu["a20"]:
        vcpu.set_a20(cpu["a20"])
    vcpu.halted = cpu["halted"]
    fast.irq_hold = cpu["irq_hold"]
    vcpu.cpu.set_apic_base(cpu["apic_base"])
    # The clock: its counters first (the virtual clock's source), then its origin.
    c = meta["clock"]
    if fast.virtual:
        if fast.kind == "c":
            fast.ctl.blocks, fast.ctl.skip_ns = c["blocks"], c["skip_ns"]
        else:
            fast.blocks, fast.skip_ns = c["blocks"], c["skip_ns"]
    clock.set_now(c["now"])
    clock.clear_timers()
    vcpu.cpu.set_tsc(cpu["tsc"])
    machine.bios_state.clear()
    machine.bios_state.update(meta["bios_state"])
    for dev in machine.devices:
        state = meta["devices"].get(dev.name)
        if state is None:
            raise SnapshotError(f"the snapshot has no state for the {dev.name} device")
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
    if ram_copied:
        uc.ctl_flush_tb()
