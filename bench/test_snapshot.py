"""Machine snapshots of a 16 MiB PC (the timer guest mid-run): the time to save one beside the
time to restore one, and a restore against building the same machine from power-on.

The snapshot is taken in another process, so the restores here start from a file this
process never wrote (its pages may be in the host's page cache, as a template's are).
``extra_info`` also holds the first restore of a brand-new process, split into what any
first machine pays (imports, loading and patching the engine) and the restore itself.
``test_hundred_clones_rss`` restores 100 clones of one snapshot in a fresh process and reports
what each adds to the process's RSS: idle, after it ran a little, and after it gave its
engine back (docs/snapshots.md has the figures).
Run: python -m pytest bench/test_snapshot.py --benchmark-only
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hv import guests
from hv.machine import DriveSpec, Machine, MachineConfig

SAVE_TURN = 20            # host-loop turns into the timer guest: PIT running, IRQs flowing

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from hv import guests
from hv.machine import DriveSpec, Machine, MachineConfig
cfg = lambda: MachineConfig(clock="virtual", fda=DriveSpec(str(guests.image_path("timer")),
                                                           snapshot=True))
mode, path = sys.argv[1], sys.argv[2]
if mode == "save":
    m = Machine(cfg()); service, turns = m.service, [0]
    def hook():
        turns[0] += 1
        if turns[0] == %d:
            m.save(path)
        service()
    m.service = hook; m.run(); m.close()
else:
    t1 = time.perf_counter()
    m = Machine(cfg(), restore=path)
    t2 = time.perf_counter()
    m2 = Machine(cfg(), restore=path)
    t3 = time.perf_counter()
    print(json.dumps({"imports_ms": (t1 - t0) * 1e3, "first_restore_ms": (t2 - t1) * 1e3,
                      "second_restore_ms": (t3 - t2) * 1e3}))
""" % SAVE_TURN


# 100 clones of one snapshot in one process: what each adds to the process's memory
# (/proc/self/smaps_rollup), idle after the restore, again after each has run a few
# host-loop turns, and after each gave its engine back. One process, because that is
# where a clone's own cost shows: in 100 processes each would also carry an interpreter
# and hv's imports (tens of MiB), and the page sharing they rely on is the same
# MAP_PRIVATE file mapping measured here.
CLONES_CHILD = r"""
import ctypes, gc, json, re, sys, time
from hv import guests
from hv.machine import DriveSpec, Machine, MachineConfig
path, n, turns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = lambda: MachineConfig(clock="virtual", fda=DriveSpec(str(guests.image_path("timer")),
                                                           snapshot=True))
def rollup():
    out = {}
    for line in open("/proc/self/smaps_rollup"):
        f = line.split()
        if len(f) == 3 and f[2] == "kB":
            out[f[0].rstrip(":")] = int(f[1])
    return out
def file_rss():                      # the snapshot file's mappings: guest RAM of the clones
    out, mine = {"Rss": 0, "Private_Dirty": 0}, False
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            mine = line.rstrip().endswith(path)
        elif mine and line.split(":")[0] in out:
            out[line.split(":")[0]] += int(line.split()[1])
    return out
def run_turns(m, k):
    service, left = m.service, [k]
    def hook():
        left[0] -= 1
        if left[0] < 0:
            m.stop_requested = True          # leave the loop between slices
        service()
    m.service = hook
    m.run()
    m.service = service
# One clone first, run too: what any process pays once (the engine library, its patches).
warm = Machine(cfg(), restore=path)
run_turns(warm, turns)
r0, f0 = rollup(), file_rss()
t0 = time.perf_counter()
clones = [Machine(cfg(), restore=path) for _ in range(n)]
t1 = time.perf_counter()
r1, f1 = rollup(), file_rss()
engines_idle = sum("uc" in vars(m.vcpu) for m in clones)    # engines made so far
t2 = time.perf_counter()
for m in clones:
    run_turns(m, turns)
t3 = time.perf_counter()
r2, f2 = rollup(), file_rss()
for m in clones:                     # each gives its engine back (Machine.release_engine)
    m.release_engine()
gc.collect()                         # (the binding's hook wrappers are reference cycles)
r3 = rollup()
try:                                 # what of it the C allocator keeps for reuse (glibc)
    ctypes.CDLL(None).malloc_trim(0)
except AttributeError:
    pass
r4 = rollup()
each = lambda a, b, k: round((b[k] - a[k]) / n, 1)
print(json.dumps({
    "clones": n, "turns_run": turns, "engines_while_idle": engines_idle,
    "restore_ms_per_clone": round((t1 - t0) * 1e3 / n, 2),
    "idle_rss_kib_per_clone": each(r0, r1, "Rss"),
    "idle_private_dirty_kib_per_clone": each(r0, r1, "Private_Dirty"),
    "idle_guest_ram_rss_kib_per_clone": each(f0, f1, "Rss"),
    "idle_guest_ram_copied_kib_per_clone": each(f0, f1, "Private_Dirty"),
    "run_ms_per_clone": round((t3 - t2) * 1e3 / n, 2),
    "ran_rss_kib_per_clone": each(r0, r2, "Rss"),
    "ran_private_dirty_kib_per_clone": each(r0, r2, "Private_Dirty"),
    "ran_guest_ram_rss_kib_per_clone": each(f0, f2, "Rss"),
    "ran_guest_ram_copied_kib_per_clone": each(f0, f2, "Private_Dirty"),
    "released_rss_kib_per_clone": each(r0, r3, "Rss"),
    "released_private_dirty_kib_per_clone": each(r0, r3, "Private_Dirty"),
    "released_after_malloc_trim_rss_kib_per_clone": each(r0, r4, "Rss"),
}))
"""
CLONES = 20 if os.environ.get("HV_BENCH_QUICK") else 100
CLONE_TURNS = 5


def config() -> MachineConfig:
    return MachineConfig(clock="virtual", fda=DriveSpec(str(guests.image_path("timer")),
                                                        snapshot=True))


@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "timer16.hvsnap"
    # (children run from a neutral folder: in a checkout, its hv/ would shadow the installed hv)
    subprocess.run([sys.executable, "-c", CHILD, "save", str(path)], check=True, timeout=120,
                   cwd=path.parent)
    return path


def test_restore_16mib(benchmark, snapshot_file):
    built = []

    def restore():
        built.append(Machine(config(), restore=str(snapshot_file)))

    def close_last():
        while built:
            built.pop().close()
    benchmark.pedantic(restore, setup=close_last, rounds=30, iterations=1, warmup_rounds=2)
    close_last()
    fresh = subprocess.run([sys.executable, "-c", CHILD, "restore", str(snapshot_file)],
                           capture_output=True, text=True, check=True, timeout=120,
                           cwd=snapshot_file.parent)
    st = os.stat(snapshot_file)
    benchmark.extra_info.update({
        "file_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512,
        **{f"new_process_{k}": round(v, 2) for k, v in json.loads(fresh.stdout).items()},
    })


def test_restore_16mib_with_its_engine(benchmark, snapshot_file):
    """A restore as above plus the engine the vCPU makes at its first run (created, memory
    and devices mapped, the saved registers loaded): the whole way to the first instruction."""
    built = []

    def restore():
        m = Machine(config(), restore=str(snapshot_file))
        m.vcpu.start_engine()
        built.append(m)

    def close_last():
        while built:
            built.pop().close()
    benchmark.pedantic(restore, setup=close_last, rounds=30, iterations=1, warmup_rounds=2)
    close_last()


def test_power_on_16mib_for_comparison(benchmark):
    """What building the same machine costs without a snapshot (firmware not yet run)."""
    built = []

    def build():
        built.append(Machine(config()))

    def close_last():
        while built:
            built.pop().close()
    benchmark.pedantic(build, setup=close_last, rounds=30, iterations=1, warmup_rounds=2)
    close_last()


def test_save_16mib(benchmark, tmp_path):
    m = Machine(config())
    service, turns = m.service, [0]

    def hook():
        turns[0] += 1
        if turns[0] == SAVE_TURN:
            m.stop_requested = True        # leave the loop between slices, state intact
        service()
    m.service = hook
    m.run()
    path = tmp_path / "s.hvsnap"
    try:
        benchmark.pedantic(lambda: m.save(path), rounds=10, iterations=1, warmup_rounds=1)
        st = os.stat(path)
        benchmark.extra_info.update({"file_bytes": st.st_size,
                                     "allocated_bytes": st.st_blocks * 512})
    finally:
        m.close()


def test_hundred_clones_rss(benchmark, snapshot_file):
    """RSS per clone for 100 clones of one 16 MiB snapshot in a fresh process: idle, after
    each ran CLONE_TURNS host-loop turns, after each released its engine (the timed figure
    is that whole child process)."""
    out = {}

    def clones():
        run = subprocess.run([sys.executable, "-c", CLONES_CHILD, str(snapshot_file), str(CLONES),
                              str(CLONE_TURNS)], capture_output=True, text=True, check=True,
                             timeout=600, cwd=snapshot_file.parent)
        out.update(json.loads(run.stdout))
    benchmark.pedantic(clones, rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    assert out["engines_while_idle"] == 0       # a restored clone holds no engine until it runs
