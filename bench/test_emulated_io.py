"""Emulated device throughput: ATA PIO disk and NE2000 transmit.

Figures in extra_info: MB/s and exits per MiB for the disk, packets/s and exits per
packet for the NIC; times run from the guest's start marker (POST code 0x01) to its
halt, so the boot is excluded. Run: python -m pytest bench/test_emulated_io.py --benchmark-only
"""
from __future__ import annotations

import time

import pytest

from hv.bench.guests import ata_sequential, ne2000_transmit
from hv.machine import DriveSpec, Machine, MachineConfig

MiB = 1 << 20


def timed_run(config: MachineConfig) -> tuple[float, Machine]:
    m = Machine(config)
    start = {}
    post_write = m.post.write

    def mark(offset, size, value):
        start.setdefault("t", time.perf_counter())
        start.setdefault("exits", m.stats.total())
        post_write(offset, size, value)
    m.post.write = mark
    result = m.run()
    elapsed = time.perf_counter() - start["t"]
    m.close()
    assert result.exit_code == 0, result.reason
    m.exits_after_start = m.stats.total() - start["exits"]
    return elapsed, m


@pytest.mark.parametrize("mib", [1, 16])
@pytest.mark.parametrize("op", ["read", "write"])
def test_ide_sequential(benchmark, tmp_path, op, mib):
    boot = tmp_path / "boot.img"
    boot.write_bytes(ata_sequential(mib * MiB, write=(op == "write")))
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes((mib + 1) * MiB))
    runs = []

    def one():
        runs.append(timed_run(MachineConfig(fda=DriveSpec(str(boot)), hda=DriveSpec(str(disk)),
                                            timeout=600)))
    benchmark.pedantic(one, rounds=1 if mib > 1 else 3, iterations=1)
    elapsed, m = min(runs, key=lambda r: r[0])
    benchmark.extra_info.update({
        "mb_per_s": round(mib * MiB / elapsed / 1e6, 3),
        "exits_per_mib": round(m.exits_after_start / mib),
        "dispatch": m.vcpu.fast.kind,
    })


@pytest.mark.parametrize("size", [64, 1500])
def test_ne2000_transmit(benchmark, tmp_path, size):
    frames = 2000
    boot = tmp_path / "boot.img"
    boot.write_bytes(ne2000_transmit(frames, size))
    runs = []

    def one():
        runs.append(timed_run(MachineConfig(fda=DriveSpec(str(boot)), net="none", timeout=600)))
    benchmark.pedantic(one, rounds=3, iterations=1)
    elapsed, m = min(runs, key=lambda r: r[0])
    benchmark.extra_info.update({
        "packets_per_s": round(frames / elapsed),
        "exits_per_packet": round(m.exits_after_start / frames, 1),
        "dispatch": m.vcpu.fast.kind,
    })
