"""Machine snapshots of a 16 MiB PC (the timer guest mid-run): the time to save one beside the
time to restore one, and a restore against building the same machine from power-on.

The snapshot is taken in another process, so the restores here start from a file this
process never wrote (its pages may be in the host's page cache, as a template's are).
``extra_info`` also holds the first restore of a brand-new process, split into what any
first machine pays (imports, loading and patching the engine) and the restore itself.
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
