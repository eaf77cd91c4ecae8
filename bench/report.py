"""``hv bench``: the benchmark matrix side by side in one run, with a progress line per
case on stderr, then ``bench-report.md``, ``bench-*.png`` (matplotlib, when installed)
and a JSON file (``summary``: the headline figures; ``targets``: each target, its
measured value and PASS/MISS; ``results``: every case's figures).

    hv bench [--quick] [--json FILE] [--out DIR]

The measurements are bench/matrix.py's; docs/benchmarks.md explains each figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hv.bench import matrix

KiB, MiB = 1 << 10, 1 << 20

# Environment variable for the test suite only: an even smaller matrix than --quick
# (the same cases and keys, smaller sizes and counts); never used by a person.
TINY_ENV = "HV_BENCH_TINY"


@dataclass
class Profile:
    """How much work each group does."""
    name: str
    exit_n: dict[str, int]             # accesses per loop, by dispatch
    exit_repeats: int
    disk_sizes: list[int]
    ide_python_max: int                # IDE under Python dispatch: sizes up to this only
    disk_repeats: int
    disk_slow_repeats: int             # IDE-python at >= 4 MiB: ~5 s a run
    net_frames: dict[tuple[str, str], int]
    net_repeats: int
    net_virtio_python: bool
    boot_repeats: int
    cpu_iterations: dict[str, int | None]   # kernel -> iterations (None: bench/guests.py's)
    cpu_python_iterations: int | None  # CRC under Python dispatch (None: skip)
    cpu_repeats: int
    machine_counts: list[int]
    ring3_calls: int = 100_000         # ring-3 system calls per run (C dispatch)
    linux: bool = False                # Debian's Linux to /init, hv and QEMU (if cached)
    # process containers (issue 9) and utility VMs (issue 12)
    container_starts: int = 30         # starts per median
    container_calls: int = 200_000     # getpid, write to /dev/null round trips per run
    container_repeats: int = 3
    regquery_calls: int = 20_000
    service_rounds: int = 200
    cpuloop_iterations: int = 50_000_000
    density_counts: list[int] = field(default_factory=lambda: [1, 10, 100, 1000])
    uvm_repeats: int = 5               # cold boots; starts from the template take 4x this
    uvm_calls: int = 5000              # forwarded calls per run
    uvm_idle_n: int = 10               # idle VMs alive at once


FULL = Profile(
    "full", {"c": 2_000_000, "python": 200_000}, 3,
    [64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB], 16 * MiB, 3, 1,
    {("ne2000", "c"): 2000, ("ne2000", "python"): 1000, ("virtio", "c"): 20000,
     ("virtio", "python"): 20000}, 3, True,
    5, {"checksum": None, "tight": None}, 1_000_000, 3, [1, 10, 100], linux=True)
# Containers are cheap to measure: --quick keeps their repeats and trims counts.
QUICK = Profile(
    "quick", {"c": 500_000, "python": 50_000}, 2,
    [64 * KiB, 1 * MiB, 16 * MiB], 1 * MiB, 1, 1,
    {("ne2000", "c"): 1000, ("ne2000", "python"): 300, ("virtio", "c"): 10000}, 1, False,
    3, {"checksum": None, "tight": None}, None, 3, [1, 10],
    container_starts=20, container_calls=100_000, container_repeats=2, regquery_calls=5000,
    service_rounds=200, cpuloop_iterations=20_000_000, density_counts=[1, 10], uvm_repeats=3,
    uvm_calls=1000, uvm_idle_n=3)
TINY = Profile(
    "tiny", {"c": 100_000, "python": 10_000}, 1,
    [64 * KiB, 16 * MiB], 64 * KiB, 1, 1,
    {("ne2000", "c"): 100, ("ne2000", "python"): 50, ("virtio", "c"): 1000}, 1, False,
    1, {"checksum": 2_000_000, "tight": 4_000_000}, None, 1, [1, 2], ring3_calls=5_000,
    container_starts=5, container_calls=20_000, container_repeats=1, regquery_calls=500,
    service_rounds=20, cpuloop_iterations=2_000_000, density_counts=[1, 2], uvm_repeats=1,
    uvm_calls=100, uvm_idle_n=1)


def size_label(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB"


def _sig(value: float, digits: int = 2) -> str:
    """``value`` with the precision a single run has: two significant figures."""
    return "" if not value else f"{float(f'{value:.{digits}g}'):g}"


def size_key(n: int) -> str:
    return f"{n // MiB}M" if n >= MiB else f"{n // KiB}K"


@dataclass
class Case:
    key: str                           # results key
    label: str                         # the progress line's name
    run: Callable[[], dict]
    show: Callable[[dict], str]        # the progress line's value
    params: dict = field(default_factory=dict)


def plan(p: Profile, dispatches: list[str], tmp: Path) -> list[Case]:
    cases: list[Case] = []
    for d in dispatches:
        cases.append(Case(
            f"exit {d}", f"exit cost, {p.exit_n[d]:,} accesses each ({d})",
            lambda d=d: matrix.exit_cost(d, p.exit_n[d], p.exit_repeats, tmp),
            lambda f: (f"pio {f['exit_ns_pio']:.1f} ns, mmio {f['exit_ns_mmio']:.1f} ns, "
                       f"mmio->device {f['exit_ns_mmio_device']:.0f} ns"),
            {"group": "exit", "dispatch": d}))
    for device in ("ide", "virtio"):
        for d in dispatches:
            for size in p.disk_sizes:
                if device == "ide" and d == "python" and size > p.ide_python_max:
                    continue
                for op in ("read", "write"):
                    slow = device == "ide" and d == "python" and size >= 4 * MiB
                    reps = p.disk_slow_repeats if slow else p.disk_repeats
                    cases.append(Case(
                        f"disk {device} {op} {size_key(size)} {d}",
                        f"disk {device} {op} {size_label(size)} ({d})",
                        lambda device=device, op=op, size=size, d=d, reps=reps:
                            matrix.disk(device, op, size, d, reps, tmp),
                        lambda f: f"{f['mb_per_s']:,.1f} MB/s, {f['exits_per_mib']:,.0f} exits/MiB",
                        {"group": "disk", "device": device, "op": op, "size": size, "dispatch": d}))
    for device in ("ne2000", "virtio"):
        for d in dispatches:
            if (device, d) not in p.net_frames:
                continue
            frames = p.net_frames[(device, d)]
            for size in (64, 1500):
                cases.append(Case(
                    f"net {device} {size} {d}", f"net {device} {size} B x {frames:,} ({d})",
                    lambda device=device, size=size, d=d, frames=frames:
                        matrix.net(device, size, d, frames, p.net_repeats, tmp),
                    lambda f: f"{f['packets_per_s']:,} packets/s, {f['exits_per_packet']:g} exits/packet",
                    {"group": "net", "device": device, "size": size, "dispatch": d}))
    boot_dispatch = dispatches[0]
    for kind in ("emulated", "synthetic", "direct"):
        name = {"emulated": "emulated BIOS", "synthetic": "synthetic BIOS", "direct": "direct boot"}[kind]
        cases.append(Case(
            f"boot {kind}", f"boot {name} ({boot_dispatch})",
            lambda kind=kind: matrix.boot(kind, p.boot_repeats, boot_dispatch, tmp),
            lambda f: f"{f['ms']:.2f} ms, {f['exits']} exits",
            {"group": "boot", "kind": kind, "dispatch": boot_dispatch}))
    cpu_runs = [(k, dispatches[0], it) for k, it in p.cpu_iterations.items()]
    if "python" in dispatches and p.cpu_python_iterations:
        cpu_runs.append(("checksum", "python", p.cpu_python_iterations))
    for kernel, d, it in cpu_runs:
        cases.append(Case(
            f"cpu {kernel} {d}", f"cpu {kernel} vs bare Unicorn ({d})",
            lambda kernel=kernel, d=d, it=it: matrix.cpu(kernel, d, it, p.cpu_repeats, tmp),
            lambda f: f"ratio {f['ratio_vs_unicorn']:.3f} (hv {f['hv_s']:.3f} s, bare {f['bare_unicorn_s']:.3f} s)",
            {"group": "cpu", "kernel": kernel, "dispatch": d}))
    if "c" in dispatches:
        cases.append(Case(
            "ring3 c", f"ring-3 system call round trip, {p.ring3_calls:,} calls (c)",
            lambda: matrix.ring3("c", p.ring3_calls, p.cpu_repeats, tmp),
            lambda f: f"{f['us_per_round_trip']:.2f} us per int 0x80 + iret",
            {"group": "ring3", "dispatch": "c"}))
    if p.linux:
        def linux_boot():
            found = matrix.cached_debian_linux(tmp)
            if found is None:
                raise RuntimeError("no cached Debian i386 kernel (pytest -m slow "
                                   "tests/test_linux_boot.py fetches it)")
            return matrix.linux_boot(*found)
        cases.append(Case(
            "linux", "Debian's Linux to /init: hv and qemu-system-i386", linux_boot,
            lambda f: (f"hv {f['hv_s']:.1f} s" + (f", QEMU {f['qemu_s']:.1f} s "
                       f"({f['hv_over_qemu']:.2f}x)" if f["qemu_s"] else ", no QEMU")),
            {"group": "linux"}))
    cases += container_cases(p)
    for n in p.machine_counts:
        cases.append(Case(
            f"machines {n}", f"{n} machine{'s' * (n > 1)} in one process ({dispatches[0]})",
            lambda n=n: matrix.machines_in_subprocess(n, "hello", dispatches[0]),
            lambda f: (f"error: {f['error']}" if "error" in f else
                       f"{f['seconds']:.2f} s, {f['rss_per_machine_mib']:.2f} MiB RSS/machine, "
                       f"overhead {f['overhead_mib']:.2f} MiB"),
            {"group": "machines", "n": n, "dispatch": dispatches[0]}))
    return cases


UVM_CALLS = {"stat": "stat", "openread": "open+read", "regquery": "registry query"}


def container_cases(p: Profile) -> list[Case]:
    """Process containers (issue 9) and utility VMs (issue 12): one case per figure set, so a
    failing one (no qemu-i386 is not a failure: its figures are None) leaves the others."""
    reps = p.container_repeats
    cases = [Case(
        f"container start {kind}", f"container start, {kind}, median of {p.container_starts}",
        lambda warm=(kind == "warm"): matrix.container_start(warm, p.container_starts),
        lambda f: f"{f['ms']:.3f} ms to the first instruction",
        {"group": "container", "what": "start", "kind": kind}) for kind in ("cold", "warm")]
    for mode, name in (("getpid", "getpid"), ("devnull", "write to /dev/null")):
        cases.append(Case(
            f"container {mode}", f"container {name} round trip, {p.container_calls:,} calls",
            lambda mode=mode: matrix.container_call(mode, p.container_calls, reps),
            lambda f: f"{f['ns_per_call']:.0f} ns ({f['path']} path)",
            {"group": "container", "what": mode}))
    cases.append(Case(
        "container regquery", f"container registry query, {p.regquery_calls:,} calls",
        lambda: matrix.container_regquery(p.regquery_calls, reps),
        lambda f: f"{f['us_per_call']:.1f} us per query", {"group": "container", "what": "regquery"}))
    vs_qemu = lambda f: (f"hv {f['hv_s']:.3f} s, qemu-i386 {f['qemu_i386_s']:.3f} s "
                         f"({f['hv_over_qemu']:.2f}x)" if f["qemu_i386_s"] else
                         f"hv {f['hv_s']:.3f} s, no qemu-i386")
    cases.append(Case(
        "container service", f"container service workload, {p.service_rounds} rounds, beside qemu-i386",
        lambda: matrix.container_service(p.service_rounds, reps), vs_qemu,
        {"group": "container", "what": "service"}))
    cases.append(Case(
        "container cpu", f"container cpuloop {p.cpuloop_iterations:,}, beside qemu-i386",
        lambda: matrix.container_cpu(p.cpuloop_iterations), vs_qemu,
        {"group": "container", "what": "cpu"}))
    for n in p.density_counts:
        cases.append(Case(
            f"container density {n}", f"{n} idle container{'s' * (n > 1)} in one process",
            lambda n=n: matrix.in_subprocess("container-density", n),
            lambda f: (f"{f['kib_per_container']:,.0f} KiB RSS per container, "
                       f"{f['mib_besides_guest_pages']:.3f} MiB besides its guest pages"),
            {"group": "container", "what": "density", "n": n}))
    cases.append(Case(
        "uvm cold boot", f"utility VM cold boot to ready, best of {p.uvm_repeats}",
        lambda: matrix.uvm_cold_boot(p.uvm_repeats), lambda f: f"{f['ms']:.1f} ms",
        {"group": "uvm", "what": "cold boot"}))
    cases.append(Case(
        "uvm start", f"utility VM start from the template, best of {4 * p.uvm_repeats}",
        lambda: matrix.uvm_start(4 * p.uvm_repeats),
        lambda f: f"{f['ms']:.2f} ms (clone {f['clone_ms']:.2f} ms + launch {f['launch_ms']:.2f} ms)",
        {"group": "uvm", "what": "start"}))
    for kind, name in UVM_CALLS.items():
        cases.append(Case(
            f"uvm {kind}", f"utility VM forwarded {name}, {p.uvm_calls:,} calls, beside a process container",
            lambda kind=kind: matrix.uvm_call(kind, p.uvm_calls, reps),
            lambda f: f"VM {f['vm_us']:.1f} us, process container {f['process_us']:.1f} us",
            {"group": "uvm", "what": kind}))
    cases.append(Case(
        "uvm idle", f"{p.uvm_idle_n} idle utility VM{'s' * (p.uvm_idle_n > 1)} from the template",
        lambda: matrix.in_subprocess("uvm-idle", p.uvm_idle_n),
        lambda f: f"{f['mib_per_vm']:.2f} MiB RSS per VM", {"group": "uvm", "what": "idle", "n": p.uvm_idle_n}))
    return cases


# ---- summary and targets ----------------------------------------------------------------

def _get(results: dict, key: str, field_: str):
    f = results.get(key)
    if not f or "error" in f and field_ not in f:
        return None
    return f.get(field_)


def _ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def summarize(results: dict, p: Profile) -> tuple[dict, list[dict], list[str]]:
    """(summary, targets, notes)."""
    g = lambda key, f: _get(results, key, f)
    s: dict = {}
    for d in ("python", "c"):
        s[f"exit_ns_pio_{d}"] = g(f"exit {d}", "exit_ns_pio")
        s[f"exit_ns_mmio_{d}"] = g(f"exit {d}", "exit_ns_mmio")
    s["exit_ns_mmio_device_c"] = g("exit c", "exit_ns_mmio_device")
    s["exit_ns_pio_c_fresh_slice"] = g("exit c", "exit_ns_pio_fresh_slice")
    s["exit_ratio_pio"] = _ratio(s["exit_ns_pio_python"], s["exit_ns_pio_c"])
    s["exit_ratio_mmio"] = _ratio(s["exit_ns_mmio_python"], s["exit_ns_mmio_c"])
    s["disk_read_16m_mbps_ide"] = g("disk ide read 16M c", "mb_per_s")
    s["disk_read_16m_mbps_virtio"] = g("disk virtio read 16M c", "mb_per_s")
    s["disk_exits_per_mib_ide"] = g("disk ide read 16M c", "exits_per_mib")
    s["disk_exits_per_mib_virtio"] = g("disk virtio read 16M c", "exits_per_mib")
    # the emulated disk under both dispatchers, at the largest size both ran
    both = [f["size"] for k, f in results.items() if k.startswith("disk ide read ")
            and f.get("dispatch") == "python" and "error" not in f
            and "mb_per_s" in results.get(k.replace(" python", " c"), {})]
    cmp = size_key(max(both)) if both else "1M"
    for op in ("read", "write"):
        s[f"ide_{op}_c_vs_python"] = _ratio(g(f"disk ide {op} {cmp} c", "mb_per_s"),
                                            g(f"disk ide {op} {cmp} python", "mb_per_s"))
    s["ide_c_vs_python_at"] = cmp
    s["virtio_vs_ide_read_16m"] = _ratio(s["disk_read_16m_mbps_virtio"], s["disk_read_16m_mbps_ide"])
    s["net_pps_1500_ne2000"] = g("net ne2000 1500 c", "packets_per_s")
    s["net_pps_1500_virtio"] = g("net virtio 1500 c", "packets_per_s")
    for kind in ("emulated", "synthetic"):
        s[f"boot_ms_{kind}_bios"] = g(f"boot {kind}", "ms")
    s["boot_ms_direct"] = g("boot direct", "ms")
    s["cpu_ratio_vs_unicorn"] = g("cpu checksum c", "ratio_vs_unicorn")
    s["cpu_ratio_tight_loop"] = g("cpu tight c", "ratio_vs_unicorn")
    s["ring3_syscall_us_c"] = g("ring3 c", "us_per_round_trip")
    if p.linux:
        s["linux_boot_s_hv"] = g("linux", "hv_s")
        s["linux_boot_s_qemu"] = g("linux", "qemu_s")
        s["linux_boot_hv_over_qemu"] = g("linux", "hv_over_qemu")
    ok = [k for k in results if k.startswith("machines ") and "error" not in results[k]]
    largest = max(ok, key=lambda k: results[k]["machines"], default=None)
    s["machine_overhead_mib"] = results[largest]["overhead_mib"] if largest else None
    s["machine_overhead_at_n"] = results[largest]["machines"] if largest else None

    # process containers (issue 9) and utility VMs (issue 12)
    s["container_start_cold_ms"] = g("container start cold", "ms")
    s["container_start_warm_ms"] = g("container start warm", "ms")
    s["container_getpid_us"] = g("container getpid", "us_per_call")
    s["container_devnull_us"] = g("container devnull", "us_per_call")
    s["container_regquery_us"] = g("container regquery", "us_per_call")
    s["container_service_hv_over_qemu"] = g("container service", "hv_over_qemu")
    s["container_cpu_hv_over_qemu"] = g("container cpu", "hv_over_qemu")
    dense = [k for k in results if k.startswith("container density ") and "error" not in results[k]]
    densest = max(dense, key=lambda k: results[k]["containers"], default=None)
    s["container_idle_mib_besides_guest"] = results[densest]["mib_besides_guest_pages"] if densest else None
    s["container_idle_at_n"] = results[densest]["containers"] if densest else None
    s["uvm_cold_boot_ms"] = g("uvm cold boot", "ms")
    s["uvm_start_from_template_ms"] = g("uvm start", "ms")
    for kind in UVM_CALLS:
        s[f"uvm_{kind}_us"] = g(f"uvm {kind}", "vm_us")
        s[f"uvm_{kind}_process_container_us"] = g(f"uvm {kind}", "process_us")
    s["uvm_idle_mib_per_vm"] = g("uvm idle", "mib_per_vm")

    def target(name: str, value, op: str, limit: float, unit: str = "", beside: str | None = None) -> dict:
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        t = {"target": name, "measured": value, "op": op, "limit": limit, "unit": unit,
             "status": "n/a" if met is None else ("PASS" if met else "MISS")}
        if beside:
            t["beside"] = beside
        return t

    def process_container(kind: str) -> str | None:
        v = s[f"uvm_{kind}_process_container_us"]
        return None if v is None else f"process container {v:g} us"
    t = [
        target("C dispatch: port I/O exit", s["exit_ns_pio_c"], "<=", 60, "ns"),
        target("C dispatch: MMIO exit (answered in C)", s["exit_ns_mmio_c"], "<=", 60, "ns"),
        target("port I/O exit: Python / C", s["exit_ratio_pio"], ">=", 15, "x"),
        target("MMIO exit: Python / C", s["exit_ratio_mmio"], ">=", 15, "x"),
        target(f"IDE read {cmp}iB: C dispatch / Python dispatch", s["ide_read_c_vs_python"], ">=", 10, "x"),
        target(f"IDE write {cmp}iB: C dispatch / Python dispatch", s["ide_write_c_vs_python"], ">=", 10, "x"),
        target("virtio-blk read 16 MiB", s["disk_read_16m_mbps_virtio"], ">=", 1000, "MB/s"),
        target("virtio-blk / IDE read 16 MiB", s["virtio_vs_ide_read_16m"], ">=", 100, "x"),
        target("CPU (CRC kernel, C) vs bare Unicorn", s["cpu_ratio_vs_unicorn"], ">=", 0.9, "x"),
        target("ring-3 system call round trip (int 0x80 + iret, C)", s["ring3_syscall_us_c"],
               "<=", 2, "us"),
        target(f"per-machine overhead besides guest RAM ({s['machine_overhead_at_n']} machines)",
               s["machine_overhead_mib"], "<=", 5, "MiB"),
    ]
    if p.linux:
        t.append(target("Linux boot to /init: hv / qemu-system-i386", s["linux_boot_hv_over_qemu"],
                        "<=", 2, "x"))
    t += [
        target("container start, cold (create to first instruction)", s["container_start_cold_ms"],
               "<=", 0.5, "ms"),
        target("container start, from the warm pool", s["container_start_warm_ms"], "<=", 0.1, "ms"),
        target("container getpid round trip", s["container_getpid_us"], "<=", 1, "us"),
        target("container service workload: hv / qemu-i386", s["container_service_hv_over_qemu"],
               "<=", 2, "x"),
        target("container CPU-bound (cpuloop): hv / qemu-i386", s["container_cpu_hv_over_qemu"],
               "<=", 1.2, "x"),
        target(f"host memory per idle container besides guest pages (N={s['container_idle_at_n']})",
               s["container_idle_mib_besides_guest"], "<=", 2, "MiB"),
        target("utility VM: start from the template to the first instruction",
               s["uvm_start_from_template_ms"], "<=", 1, "ms"),
        target("utility VM: cold boot to ready", s["uvm_cold_boot_ms"], "<=", 20, "ms"),
    ]
    t += [target(f"utility VM: forwarded {name}", s[f"uvm_{kind}_us"], "<=", 30, "us",
                 process_container(kind)) for kind, name in UVM_CALLS.items()]
    t.append(target("utility VM: RSS per idle VM", s["uvm_idle_mib_per_vm"], "<=", 4, "MiB"))
    notes = []
    if p.ide_python_max < max(p.disk_sizes):
        notes.append(f"IDE under Python dispatch ran only up to {size_label(p.ide_python_max)} in this "
                     f"profile ({p.name}): 16 MiB takes about 20 s per direction there. The IDE "
                     f"C/Python ratio is compared at {cmp}iB.")
    for k, f in results.items():
        if "error" in f:
            notes.append(f"{k}: {f['error']}")
    no_qemu = [k for k in ("container service", "container cpu")
               if k in results and "error" not in results[k] and results[k].get("qemu_i386_s") is None]
    if no_qemu:
        notes.append(f"{', '.join(no_qemu)}: qemu-i386 was not found (or /dev/shm is not writable for "
                     "the service's files), so the ratio to it was not measured.")
    if densest and s["container_idle_at_n"] < 1000:
        notes.append(f"Idle containers: the largest N in this profile ({p.name}) is "
                     f"{s['container_idle_at_n']}; issue 9's target is at N = 1000 (`hv bench`).")
    return s, t, notes


# ---- the machine this ran on --------------------------------------------------------------

def machine_info() -> dict:
    import unicorn
    from hv import fastpath
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
            "unicorn": unicorn.__version__, "c_dispatch_built": fastpath.c_available(),
            "platform": platform.platform()}


# ---- output -----------------------------------------------------------------------------

def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(doc: dict) -> str:
    r, s = doc["results"], doc["summary"]
    m = doc["machine"]
    out = ["# hv benchmark report", "",
           f"Command: `{doc['command']}` ({doc['profile']} profile), {doc['started']}, "
           f"{doc['seconds']:.0f} s.", "",
           f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, "
           f"unicorn {m['unicorn']}, C dispatch {'built' if m['c_dispatch_built'] else 'NOT built'}, "
           f"{m['platform']}.", "",
           "All figures below were measured in this one run. Times are the fastest of the "
           "repeats; guest work is timed between POST codes the guest writes itself "
           "(see docs/benchmarks.md).", "",
           "## Targets", "", "| target | measured | target | result |", "| --- | --- | --- | --- |"]
    for t in doc["targets"]:
        beside = f" ({t['beside']})" if t.get("beside") else ""
        out.append(f"| {t['target']} | {_fmt(t['measured'])} {t['unit']}{beside} | {t['op']} "
                   f"{t['limit']:g} {t['unit']} | {t['status']} |")
    out += ["", "Informational, with no target: NE2000 and virtio-net packet rates, boot times and "
            "exits, the CPU tight-loop ratio and the CRC kernel under Python dispatch, the time "
            "to build many machines; for containers, write to /dev/null, the registry query of a process "
            "container, and the density rows below the largest N. They are plotted to compare the "
            "devices, not to pass."]
    if doc["notes"]:
        out += ["", "Notes:", ""] + [f"- {n}" for n in doc["notes"]]
    out += ["", "## Summary", "", "| key | value |", "| --- | --- |"]
    out += [f"| `{k}` | {_fmt(v)} |" for k, v in s.items()]

    out += ["", "## Exit cost (ns per exit)", "",
            "A loop of N accesses minus the same loop of `nop`s, per access, in the steady "
            "state (after the host loop has run once during the guest's loops).", "",
            "| access | Python dispatch | C dispatch | Python / C |", "| --- | --- | --- | --- |"]
    rows = [("`in al, 0x21` (PIC IMR)", "pio"), ("32-bit read of 0xD2800 (empty MMIO)", "mmio"),
            ("32-bit read of 0xD2000 (virtio MagicValue, Python model)", "mmio_device")]
    for name, k in rows:
        py, c = _get(r, "exit python", f"exit_ns_{k}"), _get(r, "exit c", f"exit_ns_{k}")
        out.append(f"| {name} | {_fmt(py, 1)} | {_fmt(c, 1)} | {_fmt(_ratio(py, c), 1)} |")
    py, c = (_get(r, f"exit {d}", "exit_ns_pio_fresh_slice") for d in ("python", "c"))
    out.append(f"| `in al, 0x21` in a fresh slice (no host-loop return yet) | {_fmt(py, 1)} | "
               f"{_fmt(c, 1)} | {_fmt(_ratio(py, c), 1)} |")

    out += ["", "## Disk: emulated (IDE, ATA PIO) vs synthetic (virtio-blk)", "",
            "| device | dispatch | op | size | MB/s | exits/MiB | exits |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, f in r.items():
        if k.startswith("disk ") and "error" not in f:
            out.append(f"| {f['device']} | {f['dispatch']} | {f['op']} | {size_label(f['size'])} | "
                       f"{_fmt(f['mb_per_s'], 1)} | {_fmt(f['exits_per_mib'], 1)} | {_fmt(f['exits'])} |")

    out += ["", "## Network: NE2000 vs virtio-net (transmit)", "",
            "| device | dispatch | frame | frames | packets/s | MB/s | exits/packet |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, f in r.items():
        if k.startswith("net ") and "error" not in f:
            out.append(f"| {f['device']} | {f['dispatch']} | {f['size']} B | {_fmt(f['frames'])} | "
                       f"{_fmt(f['packets_per_s'])} | {_fmt(f['mb_per_s'], 2)} | {_fmt(f['exits_per_packet'], 3)} |")

    out += ["", "## Boot: reset to the first boot-sector / kernel instruction", "",
            "| boot | run (ms) | build (ms) | exits | port I/O | hypercalls |",
            "| --- | --- | --- | --- | --- | --- |"]
    for kind in ("emulated", "synthetic", "direct"):
        f = r.get(f"boot {kind}")
        if f and "error" not in f:
            out.append(f"| {kind} | {_fmt(f['ms'], 3)} | {_fmt(f['build_ms'])} | {_fmt(f['exits'])} | "
                       f"{_fmt(f['pio_exits'])} | {_fmt(f['hypercalls'])} |")

    out += ["", "## CPU-bound guest: hv vs bare Unicorn", "",
            "| kernel | dispatch | iterations | bare Unicorn (s) | hv (s) | ratio |",
            "| --- | --- | --- | --- | --- | --- |"]
    for k, f in r.items():
        if k.startswith("cpu ") and "error" not in f:
            out.append(f"| {f['kernel']} | {f['dispatch']} | {_fmt(f['iterations'])} | "
                       f"{_fmt(f['bare_unicorn_s'], 4)} | {_fmt(f['hv_s'], 4)} | {_fmt(f['ratio_vs_unicorn'], 3)} |")

    out += ["", "## Many machines in one process (guest `hello`, each run to its end, all kept alive)", "",
            "| machines | total (s) | ms/machine | RSS growth (MiB) | RSS/machine (MiB) | guest RAM touched (MiB) "
            "| overhead/machine (MiB) | Python heap/machine (MiB) | threads |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k, f in r.items():
        if k.startswith("machines "):
            if "error" in f and not f.get("machines"):
                out.append(f"| {f['asked']} | failed: {f['error']} | | | | | | | |")
                continue
            out.append(f"| {f['machines']} | {_fmt(f['seconds'], 3)} | {_fmt(f['ms_per_machine'], 1)} | "
                       f"{_fmt(f['rss_growth_mib'], 1)} | {_fmt(f['rss_per_machine_mib'], 3)} | "
                       f"{_fmt(f['guest_touched_mib'], 3)} | {_fmt(f['overhead_mib'], 3)} | "
                       f"{_fmt(f.get('python_heap_mib_per_machine'), 3)} | {_fmt(f['threads'])} |")
    out += container_markdown(r)
    if doc["plots"]:
        out += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in doc["plots"]]
    else:
        out += ["", f"Plots skipped: {doc.get('plots_skipped', 'matplotlib is not installed')}."]
    return "\n".join(out) + "\n"


def container_markdown(r: dict) -> list[str]:
    """The process-container and utility-VM sections."""
    ok = lambda k: r.get(k) if r.get(k) and "error" not in r[k] else None
    out = ["", "## Process containers (issue 9)", "",
           "| figure | value | how |", "| --- | --- | --- |"]
    for kind in ("cold", "warm"):
        f = ok(f"container start {kind}")
        if f:
            out.append(f"| start, {kind} | {_fmt(f['ms'], 3)} ms | create to the first guest "
                       f"instruction, median of {f['repeats']} (process and engine alone: "
                       f"{_fmt(f['process_and_engine_ms'], 3)} ms) |")
    for mode, name in (("getpid", "getpid"), ("devnull", "write to /dev/null")):
        f = ok(f"container {mode}")
        if f:
            extra = (f"; Python path {_fmt(f['python_path_ns_per_call'], 0)} ns"
                     if f.get("python_path_ns_per_call") is not None else "")
            out.append(f"| {name} round trip | {_fmt(f['ns_per_call'], 0)} ns | {_fmt(f['calls'])} calls "
                       f"less none, {f['path']} path{extra} |")
    f = ok("container regquery")
    if f:
        out.append(f"| registry query round trip | {_fmt(f['us_per_call'], 2)} us | "
                   f"{_fmt(f['calls'])} queries less none |")
    for key, name, what in (("container service", "service workload", "rounds"),
                            ("container cpu", "CPU-bound `cpuloop`", "iterations")):
        f = ok(key)
        if f:
            q = (f"qemu-i386 {_fmt(f['qemu_i386_s'], 3)} s, hv / qemu-i386 {_fmt(f['hv_over_qemu'])}"
                 if f["qemu_i386_s"] else "no qemu-i386")
            out.append(f"| {name}, {_fmt(f[what])} {what} | {_fmt(f['hv_s'], 3)} s | {q} |")
    out += ["", "Idle containers (layers, registry, a process asleep in nanosleep) on one kernel "
            "and one engine, each N in a fresh process. RSS growth over N: memory the process gives back "
            "after the baseline reading (N = 1 comes out negative) weighs 1/N on each row, so read "
            "the largest N:", "",
            "| containers | RSS/container (KiB) | its guest pages (KiB) | besides guest pages (MiB) |",
            "| --- | --- | --- | --- |"]
    for k, f in r.items():
        if k.startswith("container density ") and "error" not in f:
            out.append(f"| {_fmt(f['containers'])} | {_fmt(f['kib_per_container'], 1)} | "
                       f"{_fmt(f['kib_guest_pages'], 1)} | {_fmt(f['mib_besides_guest_pages'], 3)} |")

    out += ["", "## Utility VMs (issue 12)", "", "| figure | value | how |", "| --- | --- | --- |"]
    f = ok("uvm cold boot")
    if f:
        out.append(f"| cold boot to ready | {_fmt(f['ms'], 2)} ms | machine built, kernel booted, "
                   f"no template; best of {f['repeats']} |")
    f = ok("uvm start")
    if f:
        out.append(f"| start from the template | {_fmt(f['ms'], 3)} ms | clone {_fmt(f['clone_ms'], 3)} ms "
                   f"+ launch to the first instruction {_fmt(f['launch_ms'], 3)} ms, best of "
                   f"{f['repeats']} each; clone to exit of a whole run {_fmt(f['clone_to_exit_ms'], 2)} ms |")
    f = ok("uvm idle")
    if f:
        out.append(f"| RSS per idle VM | {_fmt(f['mib_per_vm'], 3)} MiB | {f['vms']} "
                   f"clone{'s' * (f['vms'] > 1)} at ready, in a fresh process |")
    out += ["", "Forwarded calls, per call (N calls less none), beside the same program's calls "
            "in a process container:", "",
            "| call | utility VM (us) | process container (us) | VM / process |", "| --- | --- | --- | --- |"]
    for kind, name in UVM_CALLS.items():
        f = ok(f"uvm {kind}")
        if f:
            out.append(f"| {name} | {_fmt(f['vm_us'], 2)} | {_fmt(f['process_us'], 2)} | "
                       f"{_fmt(f['vm_over_process'], 1)} |")
    return out


def plots(doc: dict, out: Path) -> list[str]:
    """The PNGs; raises ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    r, written = doc["results"], []

    def save(fig, name):
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))

    # exit cost
    fig, ax = plt.subplots(figsize=(7, 4))
    kinds = [("pio", "port I/O\n(in al,0x21)"), ("mmio", "MMIO, empty\n(0xD2800)"),
             ("mmio_device", "MMIO to a Python\nmodel (0xD2000)")]
    for i, d in enumerate(("python", "c")):
        vals = [_get(r, f"exit {d}", f"exit_ns_{k}") or 0 for k, _ in kinds]
        bars = ax.bar([x + i * 0.38 for x in range(len(kinds))], vals, 0.38, label=f"{d} dispatch",
                      color="tab:blue" if d == "c" else "tab:cyan")
        ax.bar_label(bars, labels=[_sig(v) for v in vals], fontsize=8)
    ax.set_xticks([x + 0.19 for x in range(len(kinds))], [n for _, n in kinds])
    ax.set_yscale("log")
    ax.set_ylabel("ns per exit")
    ax.set_title("Exit cost")
    ax.legend()
    save(fig, "bench-exit-cost.png")

    # disk
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    series: dict[tuple, list] = {}
    for k, f in r.items():
        if k.startswith("disk ") and "error" not in f:
            series.setdefault((f["device"], f["dispatch"], f["op"]), []).append(f)
    # One colour per run: C and Python dispatch of the same device are told apart by hue, not
    # only by line style.
    colours = {("ide", "c"): "tab:blue", ("ide", "python"): "tab:cyan",
               ("virtio", "c"): "tab:green", ("virtio", "python"): "tab:olive"}
    sizes = sorted({f["size"] for fs in series.values() for f in fs})
    for (device, d, op), fs in sorted(series.items()):
        fs.sort(key=lambda f: f["size"])
        x = [f["size"] for f in fs]
        style = dict(linestyle="-" if d == "c" else "--", marker="o" if d == "c" else "s",
                     color=colours.get((device, d)), label=f"{device} ({d} dispatch)")
        ax = axes[0] if op == "read" else axes[1]
        ax.plot(x, [f["mb_per_s"] for f in fs], **style)
        if op == "read":
            axes[2].plot(x, [f["exits_per_mib"] for f in fs], **style)
    for ax, title, yl in ((axes[0], "Sequential read", "MB/s"), (axes[1], "Sequential write", "MB/s"),
                          (axes[2], "Exits per MiB (read)", "exits per MiB")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [size_label(n) for n in sizes], fontsize=8)   # 64 KiB, not 2^16
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("transfer size")
        ax.set_ylabel(yl)
        ax.set_title(title)
        ax.legend(fontsize=8)
    save(fig, "bench-disk.png")

    # net
    fig, ax = plt.subplots(figsize=(7, 4))
    nets = [(k, f) for k, f in r.items() if k.startswith("net ") and "error" not in f]
    labels = [f"{f['device']} ({f['dispatch']})\n{f['size']} B" for _, f in nets]
    bars = ax.bar(range(len(nets)), [f["packets_per_s"] for _, f in nets],
                  color=["tab:blue" if f["device"] == "ne2000" else "tab:green" for _, f in nets])
    ax.bar_label(bars, labels=[f"{f['exits_per_packet']:g} ex/pkt" for _, f in nets], fontsize=7)
    ax.set_xticks(range(len(nets)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("packets/s")
    ax.set_title("Transmit: NE2000 vs virtio-net")
    save(fig, "bench-net.png")

    # boot
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    boots = [(kind, r.get(f"boot {kind}")) for kind in ("emulated", "synthetic", "direct")]
    boots = [(k, f) for k, f in boots if f and "error" not in f]
    a1.bar([k for k, _ in boots], [f["ms"] for _, f in boots], color="tab:orange")
    a1.set_ylabel("ms, reset to first instruction")
    a1.set_title("Boot time")
    a2.bar([k for k, _ in boots], [max(1, f["exits"]) for _, f in boots], color="tab:red")
    a2.set_yscale("log")
    a2.set_ylabel("exits")
    a2.set_title("Boot exits")
    save(fig, "bench-boot.png")

    # cpu
    fig, ax = plt.subplots(figsize=(6, 3.5))
    cpus = [(k, f) for k, f in r.items() if k.startswith("cpu ") and "error" not in f]
    bars = ax.bar([f"{f['kernel']}\n({f['dispatch']})" for _, f in cpus],
                  [f["ratio_vs_unicorn"] for _, f in cpus], color="tab:purple")
    ax.bar_label(bars, labels=[_sig(f["ratio_vs_unicorn"]) for _, f in cpus])
    # The CRC kernel under C dispatch is the target (the targets table); the rest is informational.
    ax.axhline(0.9, color="gray", linestyle=":", label="target 0.9 (CRC kernel, C dispatch)")
    ax.set_ylabel("bare Unicorn time / hv time")
    ax.set_title("CPU-bound guest vs bare Unicorn")
    ax.legend()
    save(fig, "bench-cpu.png")

    # many machines
    ms = sorted((f for k, f in r.items() if k.startswith("machines ") and f.get("machines")),
                key=lambda f: f["machines"])
    if ms:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
        n = [f["machines"] for f in ms]
        a1.plot(n, [f["seconds"] for f in ms], marker="o")
        a1.set_xscale("log")
        a1.set_yscale("log")
        a1.set_xlabel("machines in one process")
        a1.set_ylabel("total seconds (build + run)")
        a1.set_title("Time as machines grow")
        a2.plot(n, [f["rss_growth_mib"] for f in ms], marker="o", label="RSS growth")
        a2.plot(n, [f["overhead_mib"] * f["machines"] for f in ms], marker="x", label="overhead besides guest RAM")
        a2.set_xscale("log")
        a2.set_yscale("log")
        a2.set_xlabel("machines in one process")
        a2.set_ylabel("MiB")
        a2.set_title("Memory as machines grow")
        a2.legend(fontsize=8)
        save(fig, "bench-machines.png")

    # containers and utility VMs: start times (log axis) and per-call cost beside each other
    starts = [(name, _get(r, key, "ms")) for name, key in (
        ("container\ncold", "container start cold"), ("container\nwarm pool", "container start warm"),
        ("utility VM\nfrom template", "uvm start"), ("utility VM\ncold boot", "uvm cold boot"))]
    starts = [(n, v) for n, v in starts if v]
    calls = [(name, _get(r, f"uvm {kind}", "vm_us"), _get(r, f"uvm {kind}", "process_us"))
             for kind, name in UVM_CALLS.items()]
    calls = [c for c in calls if c[1] is not None and c[2] is not None]
    if starts or calls:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
        targets = {"container\ncold": 0.5, "container\nwarm pool": 0.1,
                   "utility VM\nfrom template": 1, "utility VM\ncold boot": 20}
        bars = a1.bar(range(len(starts)), [v for _, v in starts], color="tab:orange")
        a1.bar_label(bars, labels=[_sig(v) for _, v in starts], fontsize=8)
        a1.scatter(range(len(starts)), [targets[n] for n, _ in starts], marker="_", s=600,
                   color="black", label="target", zorder=3)
        a1.set_xticks(range(len(starts)), [n for n, _ in starts], fontsize=8)
        a1.set_yscale("log")
        a1.set_ylabel("ms to the first instruction")
        a1.set_title("Container start")
        a1.legend(fontsize=8)
        x = range(len(calls))
        for i, (label, colour, idx) in enumerate((("utility VM", "tab:green", 1),
                                                  ("process container", "tab:blue", 2))):
            vals = [max(c[idx], 0.01) for c in calls]
            bars = a2.bar([v + i * 0.38 for v in x], vals, 0.38, label=label, color=colour)
            a2.bar_label(bars, labels=[_sig(c[idx]) for c in calls], fontsize=8)
        a2.axhline(30, color="gray", linestyle=":", label="target 30 us (utility VM)")
        a2.set_xticks([v + 0.19 for v in x], [c[0] for c in calls])
        a2.set_yscale("log")
        a2.set_ylabel("us per call")
        a2.set_title("Forwarded calls")
        a2.legend(fontsize=8)
        save(fig, "bench-containers.png")
    return written


# ---- main -------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="hv bench", description="Run the benchmark matrix side by "
                                 "side and write bench-report.md, bench-*.png and a JSON file.")
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats "
                    "(about 30 s); IDE under Python dispatch only up to 1 MiB")
    ap.add_argument("--json", metavar="FILE", help="where the JSON goes (default DIR/bench-report.json)")
    ap.add_argument("--out", metavar="DIR", default="bench-out",
                    help="the folder for the report, plots and JSON (default bench-out/)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    profile = QUICK if args.quick else FULL
    if os.environ.get(TINY_ENV):
        profile = TINY
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json) if args.json else out / "bench-report.json"
    from hv import fastpath
    dispatches = ["c", "python"] if fastpath.c_available() else ["python"]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t_start = time.perf_counter()
    results: dict[str, dict] = {}
    err = sys.stderr
    if not fastpath.c_available():
        print("hv bench: the C dispatch was not built; measuring Python dispatch only", file=err)
    with tempfile.TemporaryDirectory(prefix="hv-bench-") as td:
        cases = plan(profile, dispatches, Path(td))
        width = len(str(len(cases)))
        for i, case in enumerate(cases, 1):
            print(f"[{i:>{width}}/{len(cases)}] {case.label} ...", end=" ", file=err, flush=True)
            t0 = time.perf_counter()
            try:
                figures = case.run()
                shown = case.show(figures)
            except Exception as e:          # one broken case must not lose the rest
                figures = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
                shown = "FAILED: " + figures["error"]
                traceback.print_exc(file=err)
            results[case.key] = {**case.params, **figures}
            print(f"{shown} ({time.perf_counter() - t0:.1f} s)", file=err, flush=True)
    summary, targets, notes = summarize(results, profile)
    doc = {
        "command": "hv bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "profile": profile.name, "started": started,
        "seconds": round(time.perf_counter() - t_start, 1),
        "machine": machine_info(), "summary": summary, "targets": targets, "notes": notes,
        "results": results, "plots": [],
    }
    try:
        doc["plots"] = plots(doc, out)
    except ImportError:
        doc["plots_skipped"] = "matplotlib is not installed (pip install 'hv[bench]')"
        print(f"hv bench: plots skipped: {doc['plots_skipped']}", file=err)
    (out / "bench-report.md").write_text(markdown(doc))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{'target':<62} {'measured':>14}  result", file=err)
    for t in targets:
        print(f"{t['target']:<62} {_fmt(t['measured']):>11} {t['unit']:<3} {t['status']}", file=err)
    print(f"\nwrote {out / 'bench-report.md'}, {json_path}"
          + (f", {len(doc['plots'])} plots" if doc["plots"] else " (plots skipped)"), file=err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
