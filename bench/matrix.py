"""The benchmark matrix's measurements, one function per figure set, each returning a dict.

Every function runs real machines and times the guest's own work between POST codes
(port 0x80) it writes itself, so machine construction, boot and driver set-up are
outside the timed span unless the figure is about them (``boot``, ``machines``).
``bench/report.py`` (``hv bench``) runs them side by side and writes the report;
``bench/test_matrix.py`` runs the same functions under pytest-benchmark;
``bench/test_devices.py`` and ``bench/test_cpu.py`` build on the helpers here.

    exit_cost(dispatch, n)                 ns per port I/O and MMIO exit
    disk(device, op, size, dispatch)       sequential MB/s and exits per MiB
    net(device, size, dispatch, frames)    packets/s and exits per packet
    boot(kind)                             reset to the first guest instruction
    cpu(kernel, dispatch, iterations)      hv against bare Unicorn on the same code
    machines(n)                            n machines in one process: time and memory
    container_*(...)                       process containers (issue 9): start, calls,
                                           service and CPU beside qemu-i386, density
    uvm_*(...)                             utility VMs (issue 12): cold boot, start from
                                           the template, forwarded calls, idle RSS

The container and utility-VM functions wrap bench/test_container.py, test_containers.py
and test_uvm.py (imported when called: they need pytest, which ``hv bench`` otherwise does
not), and give their figures names and units.
"""
from __future__ import annotations

import functools
import gc
import os
import struct
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from hv.bench.guests import (CHECKSUM_BODY, boot_sector, CRC_ITERATIONS, FIRST_INSTRUCTION, KERNELS,
                          LOOP_ITERATIONS, POST_READ_DONE, POST_START, POST_WRITE_DONE,
                          ata_sequential, ne2000_transmit)
from hv.machine import DriveSpec, Machine, MachineConfig
from hv.guests.asm import assemble

KiB, MiB = 1 << 10, 1 << 20
PAGE = 4096
TIMEOUT = 600
PARAMS_MAGIC = b"HVBENCH\0"          # the benchmark guests' patchable parameter block
BLK_READ, BLK_WRITE, BLK_CHECK = 1, 2, 4   # blkbench ops bits


def _tmp(tmp: Path | None) -> Path:
    return Path(tmp) if tmp is not None else Path(tempfile.mkdtemp(prefix="hv-bench-"))


def dispatch_kind(m: Machine) -> str:
    return m.vcpu.fast.kind


# ---- one run, marked by the guest's POST codes ------------------------------------------

@dataclass
class Mark:
    t: float
    exits: Counter
    virtio: tuple[int, int, int] | None     # doorbells, chains, interrupts


@dataclass
class Run:
    machine: Machine
    marks: dict[int, Mark]
    serial: str

    def between(self, a: int, b: int) -> tuple[float, Counter, tuple[int, int, int] | None]:
        if a not in self.marks or b not in self.marks:
            raise AssertionError(f"POST codes seen: {sorted(self.marks)}; serial: {self.serial!r}")
        ma, mb = self.marks[a], self.marks[b]
        exits = mb.exits - ma.exits
        vio = None if ma.virtio is None else tuple(y - x for x, y in zip(ma.virtio, mb.virtio))
        return mb.t - ma.t, exits, vio


def marked_run(config: MachineConfig, virtio: str | None = None) -> Run:
    """Run a machine to its end, noting time, exits and the virtio device's counters at
    the first write of each POST code. The hook replaces the POST device's ``write`` on
    the instance, which both dispatchers call (the C one through ``hv_py_out``)."""
    m = Machine(config)
    marks: dict[int, Mark] = {}
    transport = m.virtio[virtio] if virtio else None
    post_write = m.post.write

    def mark(offset, size, value):
        code = value & 0xFF
        if code not in marks:
            t = time.perf_counter()
            vs = transport.stats if transport is not None else None
            marks[code] = Mark(t, m.stats.counts,
                               (vs.doorbells, vs.chains, vs.interrupts) if vs else None)
        post_write(offset, size, value)
    m.post.write = mark
    try:
        result = m.run()
    finally:
        m.close()
    serial = m.serial_log.decode("latin-1")
    assert result.exit_code == 0, f"{result.reason}; serial: {serial!r}"
    return Run(m, marks, serial)


def exit_kinds(exits: Counter) -> str:
    by_kind = Counter()
    for (kind, _who), n in exits.items():
        by_kind[kind] += n
    return " ".join(f"{k}={v}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]))


def best(runs: list[dict], key: str = "seconds") -> dict:
    """The fastest of repeated runs (the least disturbed by the rest of the machine)."""
    return min(runs, key=lambda f: f[key])


# ---- exit cost ------------------------------------------------------------------------------

UNROLL = 16                  # accesses per loop iteration: the loop's own cost shrinks
PIO_PORT = 0x21              # master PIC IMR: a C shadow register under C dispatch
MMIO_EMPTY_SEG = 0xD280      # 0xD2800: the console's slot page past its 0x200-byte window
MMIO_DEVICE_SEG = 0xD200     # 0xD2000: virtio-console MagicValue, a Python device model
QUEUE_NOTIFY = 0x50          # virtio-mmio QueueNotify: under C dispatch a doorbell returns
                             # to the host loop (the console's queue 0 is not set up: no-op)
ACCESS = {"nop": "nop", "pio": f"in ${PIO_PORT:#x}, %al", "mmio": "movl %es:0, %eax",
          "mmio_device": "movl %fs:0, %eax"}
# (POST code ending the loop, what the loop does, in which phase); 1 starts the first.
FRESH_LOOPS = [(2, "nop", "fresh"), (3, "pio", "fresh")]
STEADY_LOOPS = [(4, "nop", "steady"), (5, "pio", "steady"), (6, "mmio", "steady"),
                (7, "mmio_device", "steady")]
FRESH_MAX = 100_000          # a fresh-slice loop must end before the 10 ms housekeeping stop


def _loop(code: int, access: str, n: int) -> str:
    return f"""
        mov ${max(1, n // UNROLL)}, %ecx
1:
""" + (ACCESS[access] + "\n") * UNROLL + f"""
        dec %ecx
        jnz 1b
        mov ${code}, %al
        out %al, $0x80
"""


def exit_cost_guest(n: int) -> bytes:
    """Loops of accesses (``UNROLL`` per iteration), interrupts off and masked at both
    PICs, each ended by a POST code (1 before the first): a `nop` baseline and
    `in al, 0x21` in a fresh slice (no return to the host loop since the guest started,
    at most FRESH_MAX accesses); then a virtio doorbell write, which under C dispatch
    returns to the host loop; then the steady-state loops of ``n`` accesses: `nop`,
    `in al, 0x21`, a 32-bit read of 0xD2800 (nothing there) and of 0xD2000 (virtio
    MagicValue)."""
    fresh = min(n, FRESH_MAX)
    loops = "".join(_loop(c, a, fresh) for c, a, _ in FRESH_LOOPS)
    loops += f"""
        movl $0, %fs:{QUEUE_NOTIFY:#x}
"""
    loops += "".join(_loop(c, a, n) for c, a, _ in STEADY_LOOPS)
    return assemble(f"""
        cli
        mov $0xFF, %al                  # mask every IRQ: a pending timer IRQ with IF clear
        out %al, $0x21                  # would cost an EFLAGS read at every block start
        out %al, $0xA1                  # (the block hook's irq_pending test), in both loops
        xor %ax, %ax
        mov %ax, %ds
        mov ${MMIO_EMPTY_SEG:#x}, %ax
        mov %ax, %es
        mov ${MMIO_DEVICE_SEG:#x}, %ax
        mov %ax, %fs
        mov $1, %al
        out %al, $0x80
{loops}
        hlt
""")


def exit_cost(dispatch: str, n: int = 1_000_000, repeats: int = 3, tmp: Path | None = None) -> dict:
    """ns per exit: (loop of n accesses - the same loop of `nop`s) / n, min over repeats,
    in the steady state (after the host loop has run once during the guest's loops, as it
    does in any guest that runs longer than 10 ms); the port I/O figure also in a fresh
    slice (``exit_ns_pio_fresh_slice``). Also the exits counted per access in the timed
    loop (1.0 when each access exits once)."""
    img = _tmp(tmp) / f"exitcost-{n}.img"
    img.write_bytes(exit_cost_guest(n))
    counts = {"fresh": max(1, min(n, FRESH_MAX) // UNROLL) * UNROLL,
              "steady": max(1, n // UNROLL) * UNROLL}
    per: dict[tuple[str, str], list[float]] = {}
    exits: dict[str, float] = {}
    kind = None
    for _ in range(repeats):
        run = marked_run(MachineConfig(fda=DriveSpec(str(img)), dispatch=dispatch, timeout=TIMEOUT))
        kind = dispatch_kind(run.machine)
        for code, access, phase in FRESH_LOOPS + STEADY_LOOPS:
            seconds, ex, _ = run.between(code - 1, code)
            per.setdefault((access, phase), []).append(seconds / counts[phase] * 1e9)
            if phase == "steady":
                # the loop's own exits: the accesses' kinds, not the timer or the POST write
                exits[access] = sum(v for (k, w), v in ex.items()
                                    if k in ("pio", "mmio", "unassigned") and w != "post") / counts[phase]
    nop = min(per[("nop", "steady")])
    f = {"dispatch": kind, "accesses": counts["steady"], "loop_ns_nop": round(nop, 2)}
    for access in ("pio", "mmio", "mmio_device"):
        f[f"exit_ns_{access}"] = round(max(0.0, min(per[(access, "steady")]) - nop), 2)
        f[f"exits_per_access_{access}"] = round(exits[access], 3)
    f["exit_ns_pio_fresh_slice"] = round(max(0.0, min(per[("pio", "fresh")])
                                             - min(per[("nop", "fresh")])), 2)
    return f


# ---- guest images built from guests/src ------------------------------------------------------

@functools.cache
def built_dir() -> Path:
    """blkbench and netbench built fresh from guests/src (as guests/build.py does)."""
    from hv.guests.build import TARGETS, build_target
    out = Path(tempfile.mkdtemp(prefix="hv-bench-guests-"))
    for target in TARGETS:
        if target.name in ("blkbench", "netbench"):
            build_target(target, out)
    return out


def patched_image(name: str, dest: Path, *values: int) -> Path:
    """A copy of guest ``name`` with the u32s after its "HVBENCH\\0" block set to ``values``."""
    data = bytearray((built_dir() / f"{name}.img").read_bytes())
    at = data.find(PARAMS_MAGIC)
    if at < 0 or data.find(PARAMS_MAGIC, at + 1) >= 0:
        raise RuntimeError(f"{name}: no single {PARAMS_MAGIC!r} parameter block")
    struct.pack_into(f"<{len(values)}I", data, at + len(PARAMS_MAGIC), *values)
    dest.write_bytes(data)
    return dest


def tagged_disk(path: Path, size: int) -> Path:
    """``size`` bytes whose every sector starts with its LBA (le32): what blkbench checks."""
    data = bytearray(size)
    for lba in range(size // 512):
        struct.pack_into("<I", data, lba * 512, lba)
    path.write_bytes(data)
    return path


# ---- disk ------------------------------------------------------------------------------------

def virtio_figures(vio: tuple[int, int, int], exits: Counter, total: int, what: str) -> dict:
    """Doorbells, chains per doorbell, and exits per batch (a batch = one doorbell)."""
    doorbells, chains, interrupts = vio
    per = (lambda n: round(n / doorbells, 2)) if doorbells else (lambda n: None)
    # The C dispatch records QueueNotify without Python (counted as mmio) and stops the
    # engine so the host loop runs the device (counted as timer): the stop is the return
    # to the host loop, the one that costs.
    stops = sum(n for (kind, _), n in exits.items() if kind != "mmio")
    return {
        "doorbells": doorbells,
        what: chains,                              # a disk write run's include the FLUSH
        f"{what}_per_doorbell": per(chains),
        "exits_per_batch": per(total),
        "host_loop_returns_per_batch": per(stops),
        "interrupts": interrupts,
    }


def disk_files(device: str, op: str, size: int, tmp: Path) -> tuple[Path, Path]:
    """(boot floppy, disk) for one disk run; a fresh tagged disk every time."""
    disk = tagged_disk(tmp / f"disk-{device}-{op}-{size}.img", size)
    if device == "ide":
        boot = tmp / f"ata-{op}-{size}.img"
        boot.write_bytes(ata_sequential(size, write=(op == "write")))
    else:
        ops = BLK_READ | BLK_CHECK if op == "read" else BLK_WRITE
        boot = patched_image("blkbench", tmp / f"blkbench-{op}.img", ops)
    return boot, disk


def disk_once(device: str, op: str, size: int, boot: Path, disk: Path,
              dispatch: str = "auto") -> dict:
    """One machine run; the figures of the timed phase."""
    if device == "ide":
        run = marked_run(MachineConfig(fda=DriveSpec(str(boot)), hda=DriveSpec(str(disk)),
                                       dispatch=dispatch, timeout=TIMEOUT))
    else:
        run = marked_run(MachineConfig(fda=DriveSpec(str(boot)), vda=DriveSpec(str(disk)),
                                       dispatch=dispatch, timeout=TIMEOUT), virtio="blk")
        assert run.serial.rstrip().endswith(", ok"), run.serial
        blk = run.machine.virtio["blk"].device
        assert (blk.bytes_read if op == "read" else blk.bytes_written) == size
    a, b = (POST_START, POST_READ_DONE) if op == "read" else (POST_READ_DONE, POST_WRITE_DONE)
    seconds, exits, vio = run.between(a, b)
    total = sum(exits.values())
    f = {
        "seconds": seconds,
        "bytes": size,
        "mb_per_s": round(size / seconds / 1e6, 3),
        "exits": total,
        "exits_per_mib": round(total / (size / MiB), 2),
        "exit_kinds": exit_kinds(exits),
        "dispatch": dispatch_kind(run.machine),
    }
    if vio is not None:
        f.update(virtio_figures(vio, exits, total, "requests"))
    else:
        f["commands"] = -(-size // (128 * KiB)) + (op == "write")    # + FLUSH CACHE
    return f


def disk(device: str, op: str, size: int, dispatch: str = "c", repeats: int = 3,
         tmp: Path | None = None) -> dict:
    """Sequential read or write of ``size`` bytes on ide (ATA PIO) or virtio (virtio-blk),
    the fastest of ``repeats`` runs (each on a fresh disk)."""
    tmp = _tmp(tmp)
    if device == "virtio":
        built_dir()
    runs = [disk_once(device, op, size, *disk_files(device, op, size, tmp), dispatch=dispatch)
            for _ in range(repeats)]
    return best(runs)


# ---- network ---------------------------------------------------------------------------------

def net_files(device: str, size: int, frames: int, tmp: Path) -> Path:
    if device == "ne2000":
        boot = tmp / f"ne2000-{frames}-{size}.img"
        boot.write_bytes(ne2000_transmit(frames, size))
        return boot
    return patched_image("netbench", tmp / f"netbench-{frames}-{size}.img", frames, size)


def net_once(device: str, size: int, frames: int, boot: Path, dispatch: str = "auto") -> dict:
    switch = f"switch:bench-{uuid.uuid4().hex[:12]}"       # this machine's port alone on it
    if device == "ne2000":
        run = marked_run(MachineConfig(fda=DriveSpec(str(boot)), net=switch, dispatch=dispatch,
                                       timeout=TIMEOUT))
        sent = run.machine.netport.tx_frames
    else:
        run = marked_run(MachineConfig(fda=DriveSpec(str(boot)), virtio_net=switch,
                                       dispatch=dispatch, timeout=TIMEOUT), virtio="net")
        assert run.serial.rstrip().endswith(", ok"), run.serial
        sent = run.machine.vnet.counters.tx_frames
    assert sent == frames, (sent, frames)
    seconds, exits, vio = run.between(POST_START, POST_READ_DONE)
    total = sum(exits.values())
    f = {
        "seconds": seconds,
        "frames": frames,
        "packets_per_s": round(frames / seconds),
        "mb_per_s": round(frames * size / seconds / 1e6, 3),
        "exits": total,
        "exits_per_packet": round(total / frames, 3),
        "exit_kinds": exit_kinds(exits),
        "dispatch": dispatch_kind(run.machine),
    }
    if vio is not None:
        f.update(virtio_figures(vio, exits, total, "frames_sent"))
    return f


def net(device: str, size: int, dispatch: str = "c", frames: int = 2000, repeats: int = 3,
        tmp: Path | None = None) -> dict:
    """Transmit ``frames`` frames of ``size`` bytes on ne2000 or virtio (virtio-net), on a
    switch port nobody else is on; the fastest of ``repeats`` runs."""
    tmp = _tmp(tmp)
    if device == "virtio":
        built_dir()
    boot = net_files(device, size, frames, tmp)
    return best([net_once(device, size, frames, boot, dispatch) for _ in range(repeats)])


# ---- boot ------------------------------------------------------------------------------------

KERNEL_FIRST_INSTRUCTION = b"\xf4"     # hlt, entered at 0008:00100000 with interrupts off


def boot(kind: str, repeats: int = 5, dispatch: str = "c", tmp: Path | None = None) -> dict:
    """Reset to the first boot-sector instruction (emulated or synthetic BIOS, boot sector
    `cli; hlt`) or the first kernel instruction (direct, kernel `hlt`): ``Machine.run()``
    time and exits; the machine's construction is reported apart (``build_ms``)."""
    tmp = _tmp(tmp)
    if kind == "direct":
        path = tmp / "kernel.bin"
        path.write_bytes(KERNEL_FIRST_INSTRUCTION)
        config = lambda: MachineConfig(kernel=str(path), kernel_format="flat", dispatch=dispatch,
                                       timeout=30)
        where = "0008:100001"
    else:
        path = tmp / "boot.img"
        path.write_bytes(FIRST_INSTRUCTION)
        config = lambda: MachineConfig(fda=DriveSpec(str(path)), bios=kind, dispatch=dispatch,
                                       timeout=30)
        where = "0000:7C02"
    runs = []
    for i in range(repeats + 1):                 # the first run warms caches; not counted
        t0 = time.perf_counter()
        m = Machine(config())
        t1 = time.perf_counter()
        r = m.run()
        t2 = time.perf_counter()
        m.close()
        assert r.exit_code == 0 and where in r.reason, r.reason
        if i:
            stats = m.stats
            runs.append({"seconds": t2 - t1, "build_ms": round((t1 - t0) * 1e3, 2),
                         "exits": stats.total(), "pio_exits": stats.total("pio"),
                         "hypercalls": stats.total("hypercall"), "softints": stats.total("softint"),
                         "dispatch": dispatch_kind(m)})
    f = best(runs)
    f["ms"] = round(f["seconds"] * 1e3, 3)
    return f


# ---- CPU-bound guest against bare Unicorn ---------------------------------------------------

def kernel_body(kernel: str, iterations: int | None = None) -> str:
    """A kernel of bench/guests.py, optionally with another iteration count."""
    if iterations is None:
        return KERNELS[kernel]
    if kernel == "checksum":
        return CHECKSUM_BODY.replace(f"${CRC_ITERATIONS},", f"${iterations},", 1)
    return KERNELS[kernel].replace(f"${LOOP_ITERATIONS * 8},", f"${iterations},", 1)


def kernel_boot_sector(kernel: str, iterations: int | None = None) -> bytes:
    """bench/guests.py:boot_sector with ``iterations``."""
    return boot_sector(kernel, kernel_body(kernel, iterations))


def kernel_bare(kernel: str, iterations: int | None = None) -> bytes:
    return assemble(kernel_body(kernel, iterations) + "\n hlt\n", boot_sector=False)


def run_bare(code: bytes) -> float:
    """Seconds bare Unicorn takes to run ``code`` at 0000:7C00 (real mode, no hooks)."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 1 << 20)
    uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) & ~1)
    for r in (X.UC_X86_REG_CS, X.UC_X86_REG_DS, X.UC_X86_REG_SS):
        uc.reg_write(r, 0)
    uc.mem_write(0x7C00, code)
    t = time.perf_counter()
    uc.emu_start(0x7C00, 1 << 48)
    return time.perf_counter() - t


def run_hv(img: Path, dispatch: str) -> tuple[float, Machine]:
    """Time from the kernel's POST-code write to the end of the run (boot excluded)."""
    m = Machine(MachineConfig(fda=DriveSpec(str(img)), dispatch=dispatch, timeout=TIMEOUT))
    start = {}
    post_write = m.post.write

    def mark(offset, size, value):
        start.setdefault("t", time.perf_counter())
        post_write(offset, size, value)
    m.post.write = mark
    try:
        r = m.run()
    finally:
        m.close()
    assert r.exit_code == 0, r.reason
    return time.perf_counter() - start["t"], m


def cpu(kernel: str, dispatch: str = "c", iterations: int | None = None, repeats: int = 3,
        tmp: Path | None = None) -> dict:
    """The same kernel on bare Unicorn and under hv (timer running), alternating, best of
    ``repeats`` each; ``ratio_vs_unicorn`` = bare time / hv time (1.0 = no overhead)."""
    img = _tmp(tmp) / f"cpu-{kernel}.img"
    img.write_bytes(kernel_boot_sector(kernel, iterations))
    code = kernel_bare(kernel, iterations)
    bare_t, hv_t, m = [], [], None
    for _ in range(repeats):
        bare_t.append(run_bare(code))
        t, m = run_hv(img, dispatch)
        hv_t.append(t)
    b, h = min(bare_t), min(hv_t)
    return {"bare_unicorn_s": round(b, 4), "hv_s": round(h, 4), "ratio_vs_unicorn": round(b / h, 3),
            "iterations": iterations or (CRC_ITERATIONS if kernel == "checksum" else LOOP_ITERATIONS * 8),
            "timer_irqs": m.stats.total("irq-inject"), "exits": m.stats.total(),
            "dispatch": dispatch_kind(m)}


# ---- many machines in one process ----------------------------------------------------------

def rss_bytes() -> int:
    """Resident set size of this process (/proc/self/statm, field 2, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def touched_pages(m: Machine) -> int:
    """Guest RAM pages holding anything but zeros: the pages the guest (or firmware)
    wrote. A lower bound of what guest RAM adds to RSS (a page written with zeros
    is resident yet not counted; reading an untouched page maps the shared zero page,
    which RSS does not count)."""
    buf, zero, n = m.mem.buffer, bytes(PAGE), 0
    for at in range(0, len(buf), PAGE):
        if buf[at:at + PAGE] != zero:
            n += 1
    return n


def machines(n: int, guest: str = "hello", dispatch: str = "c", warm_up: bool = True) -> dict:
    """Build ``n`` machines, run each one's guest to its end, keep them all alive, then
    measure: total time, RSS growth, and per-machine overhead besides guest RAM =
    RSS growth / n - the guest RAM pages the guest touched (mean). With ``warm_up`` one
    machine is built and run first, kept alive through the measurement and not counted,
    so one-time costs (the engine's first allocations, imports) stay out of the figure."""
    from hv import guests
    img = str(guests.image_path(guest))
    warm = None
    if warm_up:                          # load the engine and fill the allocator's caches
        warm = Machine(MachineConfig(fda=DriveSpec(img, readonly=True), dispatch=dispatch,
                                     timeout=60))
        warm.run()
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    alive: list[Machine] = []
    error = None
    try:
        for _ in range(n):
            m = Machine(MachineConfig(fda=DriveSpec(img, readonly=True), dispatch=dispatch,
                                      timeout=60))
            alive.append(m)
            r = m.run()
            if r.exit_code != 0:
                raise RuntimeError(f"machine {len(alive)}: {r.reason}")
    except Exception as e:              # threads, memory, files: report what limits it
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    gc.collect()
    growth = rss_bytes() - rss0
    built = len(alive)
    touched = sum(touched_pages(m) for m in alive) * PAGE / max(1, built)
    threads = len(os.listdir("/proc/self/task"))
    for m in alive + ([warm] if warm else []):
        m.close()
    per = growth / max(1, built)
    f = {"machines": built, "asked": n, "seconds": round(seconds, 3),
         "ms_per_machine": round(seconds / max(1, built) * 1e3, 2),
         "rss_growth_mib": round(growth / MiB, 2),
         "rss_per_machine_mib": round(per / MiB, 3),
         "guest_touched_mib": round(touched / MiB, 3),
         "overhead_mib": round((per - touched) / MiB, 3),
         "guest_ram_mib": round(alive[0].mem.size / MiB, 1) if alive else None,
         "threads": threads}
    if error:
        f["error"] = error
    return f


def python_heap_per_machine(k: int = 3, guest: str = "hello", dispatch: str = "c") -> float:
    """MiB of Python objects one machine keeps (tracemalloc over ``k`` machines built and
    run after a warm-up one): the share of the per-machine overhead that is Python's."""
    import tracemalloc
    from hv import guests
    img = str(guests.image_path(guest))
    cfg = lambda: MachineConfig(fda=DriveSpec(img, readonly=True), dispatch=dispatch, timeout=60)
    warm = Machine(cfg())
    warm.run()
    gc.collect()
    tracemalloc.start()
    try:
        alive = []
        for _ in range(k):
            alive.append(Machine(cfg()))
            alive[-1].run()
        gc.collect()
        size = sum(s.size for s in tracemalloc.take_snapshot().statistics("filename"))
    finally:
        tracemalloc.stop()
    for m in alive + [warm]:
        m.close()
    return round(size / k / MiB, 3)


def machines_in_subprocess(n: int, guest: str = "hello", dispatch: str = "c",
                           timeout: float = 600) -> dict:
    """``machines(n)`` in a fresh Python process, so the RSS growth is these n machines'
    alone (not memory that earlier benchmarks freed and the allocator hands out again)."""
    import json
    import subprocess
    import sys
    # The installed hv, run from a neutral folder so no checkout shadows it.
    p = subprocess.run([sys.executable, "-m", "hv.bench.matrix", "machines", str(n), guest, dispatch],
                       capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    if p.returncode != 0:
        return {"machines": 0, "asked": n, "error": (p.stderr.strip().splitlines() or ["?"])[-1]
                + f" (exit status {p.returncode})"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def ring3(dispatch: str = "c", calls: int = 100_000, repeats: int = 3,
          tmp: Path | None = None) -> dict:
    """The ring-3 system call round trip (bench/guests.py RING3_SOURCE: `int $0x80` from
    ring 3 through a DPL-3 trap gate, the handler's `iret` back): a kernel making ``calls``
    calls minus the same kernel making none, per call, best of ``repeats`` each."""
    from hv.bench.guests import ring3_kernel
    tmp = _tmp(tmp)
    times = {}
    for n in (0, calls):
        path = tmp / f"ring3-{n}.bin"
        path.write_bytes(ring3_kernel(n))
        best = None
        for _ in range(repeats):
            m = Machine(MachineConfig(kernel=str(path), kernel_format="flat", dispatch=dispatch,
                                      timeout=300))
            try:
                t0 = time.perf_counter()
                r = m.run()
                t = time.perf_counter() - t0
            finally:
                m.close()
            assert r.exit_code == 0, r.reason
            best = t if best is None else min(best, t)
        times[n] = best
    return {"dispatch": dispatch, "calls": calls,
            "us_per_round_trip": round((times[calls] - times[0]) / calls * 1e6, 3)}


LINUX_MARKER = "INIT-RUNNING"
LINUX_LIMIT_S = 600


def seconds_until(argv: list[str], marker: str, limit: float = LINUX_LIMIT_S) -> float:
    """Start ``argv`` and return the seconds until ``marker`` appears on its stdout; the
    process is killed then (or after ``limit``, which raises)."""
    import select
    import subprocess
    t0 = time.perf_counter()
    # From a neutral folder: `python -m hv` run in a checkout would import its source tree.
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    seen = b""
    try:
        while marker.encode() not in seen:
            left = limit - (time.perf_counter() - t0)
            if left <= 0:
                raise RuntimeError(f"{argv[0]}: no {marker!r} within {limit:g} s")
            ready, _, _ = select.select([p.stdout], [], [], left)
            chunk = os.read(p.stdout.fileno(), 65536) if ready else b""
            if ready and not chunk:
                raise RuntimeError(f"{argv[0]} exited before {marker!r}: {seen[-300:]!r}")
            seen = seen[-4096:] + chunk
        return time.perf_counter() - t0
    finally:
        p.kill()
        p.wait()


def linux_boot(kernel: Path, initrd: Path, qemu: bool = True, cmdline: str = "console=ttyS0",
               marker: str = LINUX_MARKER) -> dict:
    """Wall seconds from starting the emulator to ``marker`` on the serial port (the
    initrd's /init prints it), for hv and, if installed, qemu-system-i386 (TCG), with the
    same kernel, initrd, command line and 256 MiB."""
    import shutil
    import sys
    hv_s = seconds_until([sys.executable, "-m", "hv", "run", "--kernel", str(kernel), "--initrd",
                          str(initrd), "--append", cmdline, "--mem", "256M", "--serial", "stdio",
                          "--no-live", "--timeout", str(LINUX_LIMIT_S)], marker)
    f = {"hv_s": round(hv_s, 2), "qemu_s": None, "hv_over_qemu": None}
    if qemu and shutil.which("qemu-system-i386"):
        q = seconds_until(["qemu-system-i386", "-kernel", str(kernel), "-initrd", str(initrd),
                           "-append", cmdline, "-m", "256", "-display", "none", "-serial", "stdio",
                           "-monitor", "none", "-no-reboot"], marker)
        f.update(qemu_s=round(q, 2), hv_over_qemu=round(hv_s / q, 2))
    return f


def _cpio_newc(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A "newc" cpio archive (what the kernel's initramfs unpacker reads) of (name, mode,
    data, rdev minor of major 5) entries; tests/linux_fixture.py has the commented one."""
    import stat
    out = bytearray()
    for ino, (name, mode, data, minor) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], 1):
        n = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0,
                  5 if minor else 0, minor, len(n), 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + n + bytes(-(110 + len(n)) % 4)
        out += data + bytes(-len(data) % 4)
    return bytes(out)


def cached_debian_linux(tmp: Path | None = None) -> tuple[Path, Path] | None:
    """(kernel, initrd whose /init prints LINUX_MARKER and powers off) when the test suite
    has cached Debian's kernel and busybox (tests/linux_fixture.py: $HV_TEST_CACHE or
    ~/.cache/hv-tests, debian-i386/); else None. Never downloads anything."""
    import gzip
    import stat
    base = Path(os.environ.get("HV_TEST_CACHE") or Path.home() / ".cache" / "hv-tests") / "debian-i386"
    kernel, busybox = base / "vmlinuz", base / "busybox"
    if not (kernel.is_file() and busybox.is_file()):
        return None
    script = f"#!/bin/busybox sh\necho {LINUX_MARKER}\n/bin/busybox poweroff -f\n".encode()
    d = stat.S_IFDIR | 0o755
    archive = _cpio_newc([("bin", d, b"", 0), ("dev", d, b"", 0),
                          ("dev/console", stat.S_IFCHR | 0o600, b"", 1),
                          ("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), 0),
                          ("init", stat.S_IFREG | 0o755, script, 0)])
    initrd = _tmp(tmp) / "linux-initrd.gz"
    initrd.write_bytes(gzip.compress(archive, mtime=0))
    return kernel, initrd


# ---- process containers (issue 9) -----------------------------------------------------------

def qemu_i386() -> str | None:
    import shutil
    return shutil.which("qemu-i386")


def container_start(warm: bool, repeats: int = 30) -> dict:
    """Create to the first guest instruction (layers, registry, process, entered on an
    engine): median of ``repeats``; cold makes a new Unicorn engine each time, warm takes
    one from the pool."""
    from hv.bench.test_containers import start_us
    whole, proc = start_us(warm, repeats)
    return {"warm": warm, "repeats": repeats, "ms": round(whole / 1e3, 4),
            "process_and_engine_ms": round(proc / 1e3, 4)}


def container_call(mode: str, n: int, repeats: int = 3) -> dict:
    """ns per round trip of `syscalls MODE N` (getpid, devnull: write to /dev/null) less
    N = 0, best of ``repeats``; served by the C fast path when built (``path``), and the
    Python path beside it for getpid."""
    from hv.bench.test_container import call_round_trip_ns
    from hv.container.engine import Engine, c_available
    engine = Engine()
    try:
        fast = c_available()
        f = {"calls": n, "path": "c" if fast else "python",
             "ns_per_call": round(call_round_trip_ns(mode, n, engine, fast, repeats), 1)}
        if fast and mode == "getpid":
            f["python_path_ns_per_call"] = round(
                call_round_trip_ns(mode, max(1, n // 10), engine, False, repeats), 1)
    finally:
        engine.close()
    f["us_per_call"] = round(f["ns_per_call"] / 1e3, 4)
    return f


def container_regquery(n: int, repeats: int = 3) -> dict:
    """ns per registry query round trip in a process container (`syscalls regquery N`)."""
    from hv.bench.test_containers import regquery_ns
    ns = regquery_ns(n, repeats)
    return {"calls": n, "ns_per_call": round(ns, 1), "us_per_call": round(ns / 1e3, 3)}


def container_service(rounds: int, repeats: int = 3) -> dict:
    """The service workload end to end (layers, registry, the program on the shared
    kernel) and qemu-i386 running the same binary in the same run, best of ``repeats``."""
    from hv.bench.test_containers import service_seconds
    hv_s, qemu_s = service_seconds(rounds, repeats)
    return {"rounds": rounds, "hv_s": round(hv_s, 4), "qemu_i386_s": _round(qemu_s, 4),
            "hv_over_qemu": round(hv_s / qemu_s, 2) if qemu_s else None}


def container_cpu(iterations: int) -> dict:
    """`cpuloop N` as a process (preemptible engine: the block hook on), without the block
    hook, and under qemu-i386: the same binary, best of 3 each."""
    from hv.bench.test_container import cpuloop_seconds
    hv_s, plain_s, qemu_s = cpuloop_seconds(iterations)
    return {"iterations": iterations, "hv_s": round(hv_s, 4), "hv_no_block_hook_s": round(plain_s, 4),
            "qemu_i386_s": _round(qemu_s, 4),
            "hv_over_qemu": round(hv_s / qemu_s, 2) if qemu_s else None,
            "hv_no_block_hook_over_qemu": round(plain_s / qemu_s, 2) if qemu_s else None}


def container_density(n: int) -> dict:
    """``n`` idle containers (layers, registry, a process asleep in nanosleep) on one kernel
    with one engine: host RSS per container, the pages its guest wrote, and the rest."""
    from hv.bench.test_containers import density_kib
    per, guest = density_kib(n)
    return {"containers": n, "kib_per_container": round(per, 1), "kib_guest_pages": round(guest, 1),
            "mib_besides_guest_pages": round((per - guest) / 1024, 3)}


# ---- utility VMs (issue 12) ------------------------------------------------------------------

def uvm_cold_boot(repeats: int = 5) -> dict:
    """Machine built and hv's kernel booted to ready (paging, IDT, timer, virtio, 9P attach),
    no template: best of ``repeats``."""
    from hv.bench.test_uvm import cold_boot_ms
    return {"repeats": repeats, "ms": round(cold_boot_ms(repeats), 3)}


def uvm_start(repeats: int = 20) -> dict:
    """Start from the template: the clone (RAM mapped copy-on-write, devices restored) plus
    the launch to the program's first instruction (its kernel's clock), each the best of
    ``repeats``; and clone + a whole `fsloop stat 0` run to exit."""
    from hv.bench.test_uvm import clone_us
    clone, launch, whole = clone_us(repeats)
    return {"repeats": repeats, "clone_ms": round(clone / 1e3, 4), "launch_ms": round(launch / 1e3, 4),
            "ms": round((clone + launch) / 1e3, 4), "clone_to_exit_ms": round(whole / 1e3, 3)}


def uvm_call(kind: str, n: int, repeats: int = 3) -> dict:
    """µs per forwarded call (stat, openread: open+read+close of a small file, regquery)
    in a utility VM and the same program's call in a process container."""
    from hv.bench.test_uvm import call_us
    vm, proc = call_us(kind, n, repeats)
    return {"kind": kind, "calls": n, "vm_us": round(vm, 2), "process_us": round(proc, 2),
            "vm_over_process": round(vm / proc, 1) if proc > 0 else None}


def uvm_idle(n: int) -> dict:
    """Host RSS per idle VM: ``n`` clones from the template left at ready."""
    from hv.bench.test_uvm import idle_rss_kib
    kib = idle_rss_kib(n)
    return {"vms": n, "kib_per_vm": round(kib, 1), "mib_per_vm": round(kib / 1024, 3)}


def _round(v, digits):
    return None if v is None else round(v, digits)


# Figure sets measured in a fresh process: RSS growth in this one would reuse memory that
# earlier cases freed and come out too small.
SUBPROCESS = {"container-density": container_density, "uvm-idle": uvm_idle}


def in_subprocess(what: str, *args, timeout: float = 600) -> dict:
    """``what`` (a SUBPROCESS key, or "machines") in ``python -m hv.bench.matrix``."""
    import json
    import subprocess
    import sys
    # The installed hv, run from a neutral folder so no checkout shadows it.
    p = subprocess.run([sys.executable, "-m", "hv.bench.matrix", what, *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    if p.returncode != 0:
        raise RuntimeError((p.stderr.strip().splitlines() or ["?"])[-1]
                           + f" (exit status {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _main(argv: list[str]) -> int:
    import json
    if argv[:1] == ["machines"]:
        n, guest, dispatch = int(argv[1]), argv[2], argv[3]
        f = machines(n, guest, dispatch)
        if "error" not in f:
            f["python_heap_mib_per_machine"] = python_heap_per_machine(3, guest, dispatch)
        print(json.dumps(f))
        return 0
    if len(argv) == 2 and argv[0] in SUBPROCESS:
        print(json.dumps(SUBPROCESS[argv[0]](int(argv[1]))))
        return 0
    print("usage: python -m hv.bench.matrix machines N GUEST DISPATCH | "
          + " | ".join(f"{k} N" for k in SUBPROCESS), flush=True)
    return 2


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv[1:]))
