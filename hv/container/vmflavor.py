"""The VM flavors of a container: the full VM and the enlightened VM (``--isolation full|enlightened``).

Both boot hv's guest kernel in its "full" configuration (``guests/images/uvmfull.sys`` behind the
boot sector ``guests/images/fatboot.bin``) through a BIOS from a FAT16 disk that holds the
container's files, its registry as a hive (``/.hv/registry.hiv``) and the launch block
(``/.hv/launch``). The kernel serves every call inside the VM, with its own FAT, registry and disk
driver; nothing reaches the host but the disk's sectors and the program's output:

    full         ``pc`` board, ``--bios emulated``, the disk on IDE (``hda``); output on COM1
    enlightened  ``pc`` board, ``--bios synthetic``, the disk on virtio-blk (``vda``, BIOS drive
                 0x80 as SeaBIOS makes it); output through the UVM_WRITE hypercall (0x0010)

After the run the host reads the disk back (``fatdisk``; every byte of it is hostile), takes the
exit status and the kernel's counters from ``/.hv/exit``, and applies what changed to the
container's upper layer and registry layer, so ``hv container diff|commit`` see the VM's writes
as a process container's. The disk layout is "hv disk layout 1" (``docs/images.md``).
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import secrets
import stat
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hv import guests
from hv.container import fatdisk, hive
from hv.container.fatdisk import ATTR_HIDDEN, ATTR_SYSTEM, Dir, FatError, File

FLAVORS = ("full", "enlightened")
HV_DIR = ".hv"
LAUNCH, HIVE, EXIT = "launch", "registry.hiv", "exit"
LAUNCH_MAX = 65536
EXIT_MAX = 4096
POST_ENTRY = 0xE0                  # the kernel's POST code: "the program's first instruction next"
EXIT_VM_FAILED = 125
LAYOUT = "hv disk layout 1"
_EXIT_LINE = re.compile(r"([a-z0-9_]+) (\d{1,20})")
HV_ATTR = ATTR_HIDDEN | ATTR_SYSTEM


class FlavorError(Exception):
    """A one-line message: the disk or the VM could not be made, or read back."""


def boot_files() -> tuple[bytes, bytes]:
    """(boot sector, loader and kernel) of the full configuration, as ``hv build`` makes them."""
    d = Path(guests.IMAGES_DIR)
    try:
        return (d / "fatboot.bin").read_bytes(), (d / "uvmfull.sys").read_bytes()
    except OSError as e:
        raise FlavorError(f"the full-VM kernel is not built ({e.filename}: {e.strerror}; "
                          f"run hv build)") from None


# -- the container's view as a tree ------------------------------------------------------------

def view_tree(root, warn: Callable[[str], object] = lambda s: None) -> tuple[Dir, dict[str, str | None]]:
    """The LayeredRoot's merged view as a ``fatdisk.Dir`` (files copied from the layers when the
    disk is written), and a manifest: guest path -> "f" for a file, None for a directory.
    Symlinks are stored as the file they name; one that dangles or names a directory, and
    special files, are left out with a warning (and are not in the manifest, so the read-back
    never takes them for deletions)."""
    top = Dir()
    manifest: dict[str, str | None] = {}
    todo = [("/", top)]
    while todo:
        path, d = todo.pop()
        for e in root.listdir(path):
            p = path.rstrip("/") + "/" + e.name
            try:
                st = root.stat(p, follow=True)
            except OSError:
                warn(f"{p}: a symlink that leads nowhere; left off the disk")
                continue
            if stat.S_ISDIR(st.st_mode):
                if e.d_type == 10:                    # DT_LNK
                    warn(f"{p}: a symlink to a directory; left off the disk")
                    continue
                d.entries[e.name] = child = Dir(mtime=st.st_mtime)
                manifest[p] = None
                todo.append((p, child))
            elif stat.S_ISREG(st.st_mode):
                d.entries[e.name] = File(None, st.st_mtime, size=st.st_size,
                                         opener=lambda p=p: root.open(p, os.O_RDONLY))
                manifest[p] = "f"
            else:
                warn(f"{p}: not a regular file or directory; left off the disk")
    return top, manifest


def _read_all(root, path: str) -> bytes:
    fd = root.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# -- the disk ----------------------------------------------------------------------------------

@dataclass
class BuiltDisk:
    path: Path
    manifest: dict[str, str | None]
    hive_before: dict
    hive_bytes: bytes
    offsets: dict[str, tuple[int, int]]          # file -> (byte offset of its data, size)
    entries: dict[str, int]                      # file -> byte offset of its directory entry
    geometry: fatdisk.Geometry
    warnings: list[str] = field(default_factory=list)


def build_disk(path: str | os.PathLike, root, registry, *, size: int = fatdisk.DEFAULT_SIZE,
               launch: bytes | None = None, launch_slot: bool = False, boot: bytes | None = None,
               kernel: bytes | None = None) -> BuiltDisk:
    """The disk of a VM flavor: ``root``'s view, ``registry``'s view as a hive (None: an empty
    registry), the launch block if given (or, with ``launch_slot``, room for one that
    ``write_launch`` fills), the boot sector and kernel (default: the built ones)."""
    if boot is None or kernel is None:
        b, k = boot_files()
        boot, kernel = boot or b, kernel or k
    warnings: list[str] = []
    tree, manifest = view_tree(root, warnings.append)
    before = hive.from_registry(registry)
    hive_bytes = hive.encode(before)
    hv_dir = Dir({HIVE: File(hive_bytes, time.time(), HV_ATTR)}, time.time(), HV_ATTR)
    if launch is not None or launch_slot:
        hv_dir.entries[LAUNCH] = File(bytes(launch) if launch is not None else bytes(LAUNCH_MAX),
                                      time.time(), HV_ATTR)
    tree.entries.pop(HV_DIR, None)             # (a layer never shows one; the disk's is hv's)
    tree.entries = {HV_DIR: hv_dir, **tree.entries}
    entries: dict[str, int] = {}
    try:
        offsets = fatdisk.build(path, tree, size=size, boot=boot, reserved_data=kernel,
                                entries=entries)
        g = fatdisk.geometry(size, fatdisk.reserved_sectors(len(kernel)))
    except FatError as e:
        raise FlavorError(str(e)) from None
    return BuiltDisk(Path(path), manifest, before, hive_bytes, offsets, entries, g, warnings)


def write_launch(disk, built: BuiltDisk, launch: bytes) -> None:
    """Fill the launch slot of ``built`` through ``disk`` (a Disk: its sectors, an overlay's
    when the base is shared): the data, the directory entry's size, and the FAT chain cut to
    the clusters the data needs (the rest freed in both FATs), so the file is exact."""
    g, path = built.geometry, f"/{HV_DIR}/{LAUNCH}"
    if path not in built.offsets:
        raise FlavorError("the disk has no launch slot")
    off, slot = built.offsets[path]
    if not 0 < len(launch) <= slot:
        raise FlavorError(f"the launch block is {len(launch)} bytes (at most {slot})")
    cb = g.cluster_bytes
    padded = bytes(launch).ljust(-(-len(launch) // fatdisk.SECTOR) * fatdisk.SECTOR, b"\0")
    disk.write(off // fatdisk.SECTOR, padded)
    _patch(disk, built.entries[path] + 28, struct.pack("<I", len(launch)))
    first = (off // fatdisk.SECTOR - g.first_data) // g.spc + 2
    need, have = -(-len(launch) // cb), -(-slot // cb)
    chain = struct.pack("<H", fatdisk.EOC) + bytes(2 * (have - need))
    for copy in range(fatdisk.FAT_COUNT):
        _patch(disk, (g.reserved + copy * g.fat_sectors) * fatdisk.SECTOR + 2 * (first + need - 1), chain)


def _patch(disk, offset: int, data: bytes) -> None:
    """Bytes at ``offset`` of a Disk, through whole sectors (read, change, write)."""
    lba, skip = divmod(offset, fatdisk.SECTOR)
    count = -(-(skip + len(data)) // fatdisk.SECTOR)
    raw = bytearray(disk.read(lba, count))
    raw[skip:skip + len(data)] = data
    disk.write(lba, bytes(raw))


def cached_base(cache_dir: Path, key: str, root, open_registry, *, size: int, boot: bytes,
                kernel: bytes) -> BuiltDisk:
    """The disk of a fresh container of an image (``key``: the image's ID), with a launch slot:
    built once per image, size, boot sector and kernel under ``cache_dir``, then shared
    read-only (each VM writes to an overlay of its own). ``open_registry()`` gives the registry
    view, asked for only when the disk is built."""
    digest = hashlib.sha256(f"{LAYOUT}|{key}|{size}|".encode() + boot + kernel).hexdigest()[:32]
    path = cache_dir / f"{digest}.img"
    meta = path.with_suffix(".json")
    try:
        m = json.loads(meta.read_text())
        hive_bytes = bytes.fromhex(m["hive"])
        g = fatdisk.Geometry(**m["geometry"])
        if path.stat().st_size == size:
            return BuiltDisk(path, m["manifest"], hive.decode(hive_bytes), hive_bytes,
                             {k: tuple(v) for k, v in m["offsets"].items()}, m["entries"], g)
    except (OSError, ValueError, KeyError, TypeError, hive.HiveError):
        pass                               # missing or damaged: made again
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{digest}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        built = build_disk(tmp.with_suffix(".img"), root, open_registry(), size=size, launch_slot=True,
                           boot=boot, kernel=kernel)
        tmp.with_suffix(".json").write_text(json.dumps({
            "manifest": built.manifest, "hive": built.hive_bytes.hex(), "offsets": built.offsets,
            "entries": built.entries, "geometry": dataclasses.asdict(built.geometry)}))
        os.replace(tmp.with_suffix(".img"), path)
        os.replace(tmp.with_suffix(".json"), meta)
    finally:
        tmp.with_suffix(".img").unlink(missing_ok=True)
        tmp.with_suffix(".json").unlink(missing_ok=True)
    built.path = path
    return built


def _fresh(root) -> bool:
    """The container's files are its image's: nothing in its upper layer, no volumes."""
    upper = getattr(root, "upper", None)
    if upper is None or getattr(root, "_mounts", None):
        return False
    with os.scandir(upper) as it:
        return next(it, None) is None


def launch_block(prog: str, cwd: str, argv: list[str], env: list[str]) -> bytearray:
    from hv.container.uvm import UvmError, launch_block as uvm_block
    try:
        return uvm_block(prog, cwd, argv, env, LAUNCH_MAX)
    except UvmError as e:
        raise FlavorError(str(e)) from None


UNCHANGED = object()       # a file the run did not touch: not read back


@dataclass
class ReadBack:
    files: dict[str, object]                   # guest path -> data, None (a directory) or UNCHANGED
    hive_bytes: bytes | None
    exit_text: bytes | None


def read_back(path, disk: BuiltDisk | None = None, dirty: bytearray | None = None) -> ReadBack:
    """Everything on the disk (a file name or a Disk), checked (a FatError for anything
    malformed). With the disk as
    built and ``dirty`` (one byte per sector, nonzero: written during the run), a file whose
    entry, chain and sectors are as written is UNCHANGED and not read."""
    files: dict[str, object] = {}
    hv_files: dict[str, bytes] = {}
    with fatdisk.Volume(path) as v:
        tree = v.tree()
        g = v.g
        for p, e in fatdisk.walk(tree):
            if p == f"/{HV_DIR}" or p.startswith(f"/{HV_DIR}/"):
                if not e.is_dir and p.count("/") == 2:
                    if e.size > hive.HIVE_MAX:
                        raise FatError(f"{p}: {e.size} bytes")
                    hv_files[p[len(HV_DIR) + 2:]] = v.read_file(e)
                continue
            if e.is_dir:
                files[p] = None
            elif disk is not None and dirty is not None and _untouched(g, e, disk.offsets.get(p), dirty):
                files[p] = UNCHANGED
            else:
                files[p] = v.read_file(e)
    return ReadBack(files, hv_files.get(HIVE), hv_files.get(EXIT))


def _untouched(g, e, written: tuple[int, int] | None, dirty: bytearray) -> bool:
    if written is None or e.size != written[1]:
        return False
    if not e.size:
        return True
    n = -(-e.size // g.cluster_bytes)
    first = (written[0] // fatdisk.SECTOR - g.first_data) // g.spc + 2
    if e.chain is None or e.chain[:n] != list(range(first, first + n)):
        return False
    lo = written[0] // fatdisk.SECTOR
    return not any(dirty[lo:lo + n * g.spc])


def parse_exit(text: bytes | None) -> tuple[int | None, dict[str, int]]:
    """``/.hv/exit``: (status or None, counters)."""
    if text is None:
        return None, {}
    if len(text) > EXIT_MAX:
        raise FlavorError(f"/.hv/exit is {len(text)} bytes (at most {EXIT_MAX})")
    status, counters = None, {}
    for line in text.decode("ascii", "replace").splitlines():
        m = _EXIT_LINE.fullmatch(line.strip())
        if not m:
            continue
        name, value = m.group(1), int(m.group(2))
        if name == "status":
            status = value if value <= 255 else None
        elif value < 2**64:
            counters[name] = value
    return status, counters


def apply_files(root, manifest: dict[str, str | None], files: dict[str, object],
                warn: Callable[[str], object] = lambda s: None) -> list[tuple[str, str]]:
    """Make ``root``'s view hold what the disk holds, where the two differ: deletions
    (whiteouts in the upper), new files and directories, files whose bytes differ from the
    view's. A change the layered root refuses (a name it reserves, such as ``.wh.*``) is
    skipped with a warning. Returns the changes made as (A|C|D, path)."""
    changes = []

    def attempt(kind: str, p: str, action, *args) -> None:
        try:
            action(*args)
            changes.append((kind, p))
        except OSError as e:
            warn(f"{p}: not applied ({e.strerror or e})")
    # Deletions and type changes: the topmost path of each removed subtree.
    for p, kind in manifest.items():
        parent = p.rsplit("/", 1)[0] or "/"
        parent_kept = parent == "/" or (files.get(parent, ...) is None
                                        and manifest.get(parent, "") is None)
        now = files.get(p, ...)
        if (now is ... or (now is None) != (kind is None)) and parent_kept:
            attempt("D", p, _remove_tree, root, p)
    for p, data in files.items():                     # parents come before children
        was = manifest.get(p, ...)
        if data is UNCHANGED:
            continue
        if data is None:
            if was is not None or _missing(root, p):
                attempt("A", p, _make_dir, root, p)
        elif was is None or was is ... or _missing(root, p):
            attempt("A", p, _write_file, root, p, data)
        elif _differs(root, p, data):
            attempt("C", p, _write_file, root, p, data)
    return changes


def _differs(root, path: str, data: bytes) -> bool:
    try:
        return _read_all(root, path) != data
    except OSError:
        return True


def _make_dir(root, path: str) -> None:
    if not _missing(root, path):
        _remove_tree(root, path)        # something the disk did not hold (a symlink left off)
    root.mkdir(path, 0o755)


def _missing(root, path: str) -> bool:
    try:
        root.stat(path, follow=False)
        return False
    except OSError:
        return True


def _write_file(root, path: str, data: bytes) -> None:
    try:
        st = root.stat(path, follow=False)
        if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
            _remove_tree(root, path)               # stored as a file: the file replaces it
    except OSError:
        pass
    fd = root.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _remove_tree(root, path: str) -> None:
    try:
        st = root.stat(path, follow=False)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    if not stat.S_ISDIR(st.st_mode):
        root.unlink(path)
        return
    for e in root.listdir(path):
        _remove_tree(root, f"{path}/{e.name}")
    root.rmdir(path)


# -- running -----------------------------------------------------------------------------------

def _track_writes(disk) -> bytearray:
    """One byte per sector of ``disk``, set when the guest writes it (IDE, virtio-blk and INT 13h
    all write through the Disk object), so the read-back skips the files nobody touched."""
    dirty = bytearray(disk.sectors)
    write = disk.write

    def tracked(lba: int, data) -> None:
        write(lba, data)                    # checks the range first: a bad one raises here
        n = len(data) // fatdisk.SECTOR
        dirty[lba:lba + n] = b"\1" * n
    disk.write = tracked
    return dirty


def _ms(a: int, b: int) -> float:
    return round((b - a) / 1e6, 3)


def run_disk_vm(flavor: str, root, open_registry: Callable[[], object], prog: str,
                argv: list[str], env: list[str], cwd: str = "/", *, memory: int | None = None,
                stdout: Callable[[bytes], object], stderr: Callable[[bytes], object],
                stats: dict | None = None, disk_dir: str | os.PathLike | None = None,
                size: int = fatdisk.DEFAULT_SIZE, timeout: float | None = None,
                boot: bytes | None = None, kernel: bytes | None = None,
                dispatch: str = "auto", cpus: float | None = None,
                cache_dir: str | os.PathLike | None = None, cache_key: str | None = None,
                keep: list | None = None, inject: Callable[[object], object] | None = None) -> int:
    """Run one program in a full (``flavor="full"``) or enlightened VM: build the disk from
    ``root`` and ``open_registry()``, boot it, pass the output through, read the disk back and
    apply the changes to ``root`` (its upper layer) and the registry (its upper layer). Returns
    the program's exit status (125: the VM failed). ``stats`` gets the exits by kind, the
    kernel's counters and the time split in ms: disk_ms, machine_ms, boot_ms (machine built ->
    the program's first instruction), run_ms, readback_ms; start_ms = disk+machine+boot,
    workload_ms = run+readback. ``cpus`` < 1: the utility VM's host-side CPU quota.
    ``cache_dir`` and ``cache_key``: the image's ID, given while the container's registry layer
    is empty (as after create): then, while its upper layer is empty too and it has no volumes,
    the disk is built once per image under ``cache_dir`` and shared. ``inject(machine)`` runs
    when the kernel is up and the program next (its POST code E0h): a test's fault then hits the
    guest kernel serving the program. With ``keep`` (a list) the VM is not closed but appended
    to it, an object with ``machine`` and ``close()``."""
    from hv.container.uvm import HC_WRITE, _CpuShare, _kernel_only, check_ram, write_from_guest
    from hv.machine import DriveSpec, Machine, MachineConfig
    if flavor not in FLAVORS:
        raise FlavorError(f"unknown VM flavor {flavor!r} ({' or '.join(FLAVORS)})")
    try:
        ram = check_ram(memory)
    except Exception as e:
        raise FlavorError(str(e)) from None
    t0 = time.perf_counter_ns()
    own_dir = None
    if disk_dir is None:
        own_dir = tempfile.TemporaryDirectory(prefix="hv-flavor-")
        disk_dir = own_dir.name
    disk_path = Path(disk_dir) / "disk.img"
    registry = None                  # opened when needed: creating a fresh upper costs ms

    def reg():
        nonlocal registry
        if registry is None:
            registry = open_registry()
        return registry
    machine = None
    try:
        launch = launch_block(prog, cwd, argv, env)
        if boot is None or kernel is None:
            b, k = boot_files()
            boot, kernel = boot or b, kernel or k
        try:
            if cache_dir is not None and cache_key and _fresh(root):
                disk = cached_base(Path(cache_dir), cache_key, root, reg, size=size,
                                   boot=boot, kernel=kernel)
            else:
                disk = build_disk(disk_path, root, reg(), size=size, launch_slot=True,
                                  boot=boot, kernel=kernel)
        except OSError as e:
            raise FlavorError(f"cannot build the disk: {e.strerror or e}") from None
        for w in disk.warnings:
            stderr(f"hv: {flavor} VM: {w}\n".encode())
        t1 = time.perf_counter_ns()
        # The VM writes to an overlay of its own (snapshot): the disk file stays as built
        # (shareable when cached), and nothing is flushed to the host's storage.
        spec = DriveSpec(str(disk.path), snapshot=True)
        if flavor == "full":
            config = MachineConfig(board="pc", bios="emulated", hda=spec, mem_size=ram,
                                   serial=stdout, clock="wall", timeout=timeout, dispatch=dispatch)
        else:
            config = MachineConfig(board="pc", bios="synthetic", vda=spec, mem_size=ram,
                                   clock="wall", timeout=timeout, dispatch=dispatch)
        try:
            machine = Machine(config)
        except (ValueError, OSError) as e:
            raise FlavorError(f"cannot build the {flavor} VM: {e}") from None
        vdisk = machine.slots["hda"] if flavor == "full" else machine.vdisk
        # CLOCK_REALTIME in the guest = its clock reading + epoch_ns (as the utility VM's).
        launch[8:16] = struct.pack("<Q", (time.time_ns() - machine.clock.now()) & (2**64 - 1))
        write_launch(vdisk, disk, launch)
        dirty = _track_writes(vdisk)
        entry: list[int] = []
        post_write = machine.post.write

        def on_post(offset: int, size_: int, value: int) -> None:
            if not entry and offset == 0 and value & 0xFF == POST_ENTRY:
                entry.append(time.perf_counter_ns())
                if inject is not None:
                    inject(machine)         # the kernel is up, the program next
            post_write(offset, size_, value)
        machine.post.write = on_post
        if flavor == "enlightened":
            machine.hypercalls.register(HC_WRITE, "uvm:write", _kernel_only(
                lambda ctx: write_from_guest(ctx, stdout, stderr)))
            from hv.boot import HC_POWEROFF, HC_TIME, HYPERCALLS
            for nr in (HC_POWEROFF, HC_TIME):       # hv_poweroff(status), the hv clock
                name, handler = HYPERCALLS[nr]
                machine.hypercalls.register(nr, name, _kernel_only(handler))
        if cpus is not None and cpus < 1:
            _CpuShare(machine, cpus)
        t2 = time.perf_counter_ns()
        result = machine.run()
        t3 = time.perf_counter_ns()
        exits = machine.stats
        code = EXIT_VM_FAILED
        status, counters, changes = None, {}, []
        if not result.reason.startswith("guest powered off"):
            stderr(f"hv: {flavor} VM: {result.reason}\n".encode())
        else:
            try:
                back = read_back(vdisk, disk, dirty)
                status, counters = parse_exit(back.exit_text)
                after = None                  # everything checked before anything is applied
                if back.hive_bytes is not None and back.hive_bytes != disk.hive_bytes:
                    after = hive.decode(back.hive_bytes)
                changes = apply_files(root, disk.manifest, back.files,
                                      lambda w: stderr(f"hv: {flavor} VM: {w}\n".encode()))
                if after is not None:
                    changes += hive.apply(reg(), disk.hive_before, after)
                code = status if status is not None else result.exit_code
            except (FatError, hive.HiveError, FlavorError) as e:
                stderr(f"hv: {flavor} VM: its disk cannot be read back: {e}\n".encode())
        t4 = time.perf_counter_ns()
        if keep is not None:
            keep.append(KeptVm(machine))        # a neighbour that stays alive (RAM, devices)
        else:
            machine.close()
        machine = None
        if stats is not None:
            t_entry = entry[0] if entry else None
            timing = {"disk_ms": _ms(t0, t1), "machine_ms": _ms(t1, t2),
                      "boot_ms": _ms(t2, t_entry) if t_entry else None,
                      "run_ms": _ms(t_entry or t2, t3), "readback_ms": _ms(t3, t4)}
            timing["start_ms"] = _ms(t0, t_entry) if t_entry else None
            timing["workload_ms"] = _ms(t_entry or t2, t4)
            stats.update(counters)
            stats["exits"] = exits.total()
            for (kind, who), n in sorted(exits.counts.items()):
                stats[f"exits {kind} {who}"] = n
            stats["changes"] = len(changes)
            stats.update(timing)
        return code
    finally:
        if machine is not None:
            machine.close()
        if registry is not None:
            registry.close()
        if own_dir is not None:
            own_dir.cleanup()


class KeptVm:
    """A VM left running after its program ended (``keep=``): its RAM and devices stay."""

    def __init__(self, machine) -> None:
        self.machine = machine

    def close(self) -> None:
        self.machine.close()


def run_in_vm_flavor(flavor: str, store, container, argv: list[str] | None = None,
                     env: list[str] | None = None, cwd: str | None = None, *,
                     stdout: Callable[[bytes], object], stderr: Callable[[bytes], object],
                     stats: dict | None = None, keep: list | None = None,
                     inject: Callable[[object], object] | None = None,
                     memory: int | None = None, timeout: float | None = None) -> int:
    """Run a program of ``container`` (a ContainerStore's) in a ``flavor`` VM ("full" or
    "enlightened"): its layers and registry are read into the disk and its writes applied to
    them after the run; returns the exit status. ``argv`` (default the record's), ``env`` (default
    the image's; the record's -e values are added), ``cwd`` (default the record's), ``memory``
    (default the record's) and ``cpus`` (the record's) as ``hv container run``; ``stats``,
    ``keep``, ``inject`` and ``timeout`` as ``run_disk_vm``. The record is not changed."""
    from hv.container.container import _image_env
    image = store.image_of(container)
    r = container.record
    argv = list(argv or r["argv"])
    if env is None:
        env = [f"{k}={v}" for k, v in _image_env(image).items()]
    env = list(env) + list(r["env"])
    root = store.open_root(container, image)
    try:
        return run_disk_vm(flavor, root, lambda: store.open_registry(container, image), argv[0], argv,
                           env, cwd or r["workdir"],
                           memory=memory if memory is not None else r["memory"],
                           cpus=r["cpus"], stdout=stdout, stderr=stderr, stats=stats,
                           disk_dir=container.path, timeout=timeout, keep=keep, inject=inject,
                           cache_dir=store.home / "cache" / "flavor-disks",
                           cache_key=None if container.registry_db.exists() else image.id)
    finally:
        root.close()
        (container.path / "disk.img").unlink(missing_ok=True)


# -- hv container run --isolation full|enlightened -----------------------------------------------

def run_flavor_containers(store, containers, flavor: str, *, stats: bool = False) -> list[int]:
    """Each container's program in a VM of the flavor, one after the other; records, logs and
    layers as a process container's (the disk is built in the container's directory and removed
    after the run: the layers hold the result)."""
    from hv.container.uvm import run_each_in_a_vm

    def prepare(c, image):
        return lambda stdout, stderr, counters: run_in_vm_flavor(
            flavor, store, c, stdout=stdout, stderr=stderr, stats=counters)
    return run_each_in_a_vm(store, containers, prepare, FlavorError, EXIT_VM_FAILED, stats=stats)


# -- hv image to-disk -------------------------------------------------------------------------------

def image_to_disk(store, name: str, out: str | os.PathLike, size: int = fatdisk.DEFAULT_SIZE,
                  warn: Callable[[str], object] = lambda s: None) -> BuiltDisk:
    """``hv image to-disk``: the image's layers flattened, its registry as the hive, and, when
    the image names a command (Entrypoint + Cmd), the launch block for it."""
    from hv.container.container import _image_env
    from hv.container.layers import LayeredRoot
    from hv.container.registry import LayeredRegistry, RegistryError
    image = store.get(name)
    cmd = [a for a in (image.config.get("Entrypoint") or []) + (image.config.get("Cmd") or [])
           if isinstance(a, str)]
    launch = None
    if cmd:
        env = [f"{k}={v}" for k, v in _image_env(image).items()]
        launch = launch_block(cmd[0], image.config.get("WorkingDir") or "/", cmd, env)
    dbs = [db for _, db in image.layers if db is not None]
    root = LayeredRoot(image.lowers, None) if image.lowers else None
    registry = LayeredRegistry(dbs, None) if dbs else None
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tempfile.TemporaryDirectory(prefix="hv-to-disk-") as empty:
            view = root or LayeredRoot.from_directory(Path(empty))
            try:
                disk = build_disk(tmp, view, registry, size=size, launch=launch)
            except (RegistryError, hive.HiveError) as e:
                raise FlavorError(f"{name}: its registry cannot be written as a hive: {e}") from None
            finally:
                if root is None:
                    view.close()
        os.replace(tmp, out)
        disk.path = out
        for w in disk.warnings:
            warn(w)
        return disk
    finally:
        tmp.unlink(missing_ok=True)
        if root is not None:
            root.close()
        if registry is not None:
            registry.close()


def parse_disk_size(text: str) -> int:
    """``32M`` -> bytes (K, M, G: powers of 1024; a bare number is bytes)."""
    m = re.fullmatch(r"(\d{1,12})([kmg]?)(i?b)?", text.strip(), re.I)
    if not m:
        raise FlavorError(f"--size {text!r}: expected a size such as 32M or 1G")
    n = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if n % fatdisk.SECTOR or not fatdisk.MIN_SIZE <= n <= fatdisk.MAX_SIZE:
        raise FlavorError(f"--size {text}: a disk is {fatdisk.MIN_SIZE >> 20}M to "
                          f"{fatdisk.MAX_SIZE >> 30}G, in whole 512-byte sectors")
    return n
