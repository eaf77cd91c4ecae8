"""Synthetic (virtio) against emulated (ATA PIO, NE2000) device throughput, in one run.

Disk: the whole disk (1 or 16 MiB) read, or written and flushed, sequentially.
  ide     bench/guests.py:ata_sequential, 256-sector commands, `rep insw` per sector
  virtio  guests/src/blkbench.c, 128 KiB requests, 4 per doorbell, polled (EVENT_IDX)
Net: F frames of 64 or 1500 bytes transmitted on a switch port nobody else is on.
  ne2000  bench/guests.py:ne2000_transmit, remote DMA + TXP + wait for PTX per frame
  virtio  guests/src/netbench.c, 32 chains per doorbell, polled (EVENT_IDX)

Both sides of a pair are timed the same way: from one POST code (port 0x80) to the next,
written by the guest itself, so boot and driver set-up are excluded. Disk: 0x01 before
the first request, 0x02 when the reads are done, 0x03 when the writes and a flush are
(a read run times 0x01..0x02, a write run 0x02..0x03). Net: 0x01 before the first
frame, 0x02 when the last one completed. Exits are ``machine.stats`` deltas between the
same two codes (one POST write included); for virtio also the transport's doorbells and
used chains (requests) between them.

The figures are in each benchmark's extra_info (``--benchmark-json``); the last test
prints the side-by-side table and the ratios the issue asks for (virtio vs IDE read
MB/s at 16 MiB: >= 1 GB/s and >= 100x; at most one exit per request batch).

    python -m pytest bench/test_devices.py --benchmark-only -s
    python -m hv.bench.test_devices            # the same table without pytest
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from hv.bench import matrix
from hv.bench.matrix import MiB, Mark, Run, marked_run, patched_image  # noqa: F401 (re-exported)

NET_FRAMES = {"ne2000": 2000, "virtio": 20000}

# Figures of the runs done so far in this process, for the summary: key -> figures.
RESULTS: dict[tuple, dict] = {}

# The runs themselves are bench/matrix.py's (shared with `hv bench`); these wrappers keep
# this file's sizes in MiB and its default dispatch.
_built_dir = matrix.built_dir
_exit_kinds = matrix.exit_kinds
_virtio_figures = matrix.virtio_figures


def tagged_disk(path: Path, mib: int) -> Path:
    return matrix.tagged_disk(path, mib * MiB)


def disk_files(device: str, op: str, mib: int, tmp: Path) -> tuple[Path, Path]:
    """(boot floppy, disk) for one disk run; a fresh tagged disk every time."""
    return matrix.disk_files(device, op, mib * MiB, tmp)


def disk_run(device: str, op: str, mib: int, boot: Path, disk: Path) -> dict:
    """One machine run; the figures of the timed phase."""
    return matrix.disk_once(device, op, mib * MiB, boot, disk)


DISK_CASES = [pytest.param(dev, op, mib, id=f"{dev}-{op}-{mib}MiB")
              for dev in ("ide", "virtio") for op in ("read", "write") for mib in (1, 16)]


@pytest.mark.parametrize("device, op, mib", DISK_CASES)
def test_disk_sequential(benchmark, tmp_path, device, op, mib):
    _built_dir()
    runs: list[dict] = []
    rounds = 1 if device == "ide" and mib > 1 else 3     # 16 MiB of ATA PIO: seconds a phase
    benchmark.pedantic(lambda boot, disk: runs.append(disk_run(device, op, mib, boot, disk)),
                       setup=lambda: (disk_files(device, op, mib, tmp_path), {}),
                       rounds=rounds, iterations=1)
    best = min(runs, key=lambda f: f["seconds"])
    RESULTS[("disk", device, op, mib)] = best
    benchmark.extra_info.update({k: v for k, v in best.items() if k != "seconds"})


# ---- network ----------------------------------------------------------------------------------

def net_files(device: str, size: int, tmp: Path) -> Path:
    return matrix.net_files(device, size, NET_FRAMES[device], tmp)


def net_run(device: str, size: int, boot: Path) -> dict:
    return matrix.net_once(device, size, NET_FRAMES[device], boot)


NET_CASES = [pytest.param(dev, size, id=f"{dev}-{size}")
             for dev in ("ne2000", "virtio") for size in (64, 1500)]


@pytest.mark.parametrize("device, size", NET_CASES)
def test_net_transmit(benchmark, tmp_path, device, size):
    _built_dir()
    runs: list[dict] = []
    benchmark.pedantic(lambda boot: runs.append(net_run(device, size, boot)),
                       setup=lambda: ((net_files(device, size, tmp_path),), {}),
                       rounds=3, iterations=1)
    best = min(runs, key=lambda f: f["seconds"])
    RESULTS[("net", device, size)] = best
    benchmark.extra_info.update({k: v for k, v in best.items() if k != "seconds"})


# ---- side by side ------------------------------------------------------------------------------

def _figures(key: tuple, tmp: Path) -> dict:
    """A case's figures from this run, running it now if it was filtered out."""
    if key not in RESULTS:
        if key[0] == "disk":
            RESULTS[key] = disk_run(*key[1:], *disk_files(*key[1:], tmp))
        else:
            RESULTS[key] = net_run(*key[1:], net_files(*key[1:], tmp))
    return RESULTS[key]


def summary(tmp: Path) -> dict:
    """The issue's figures: virtio vs IDE at 16 MiB, virtio-net vs NE2000."""
    out = {}
    for op in ("read", "write"):
        ide, vio = _figures(("disk", "ide", op, 16), tmp), _figures(("disk", "virtio", op, 16), tmp)
        out[f"virtio_{op}_16MiB_mb_per_s"] = vio["mb_per_s"]
        out[f"ide_{op}_16MiB_mb_per_s"] = ide["mb_per_s"]
        out[f"virtio_vs_ide_{op}_16MiB"] = round(vio["mb_per_s"] / ide["mb_per_s"], 1)
        out[f"virtio_{op}_exits_per_batch"] = vio["exits_per_batch"]
        out[f"virtio_{op}_host_loop_returns_per_batch"] = vio["host_loop_returns_per_batch"]
    for size in (64, 1500):
        ne, vio = _figures(("net", "ne2000", size), tmp), _figures(("net", "virtio", size), tmp)
        out[f"virtio_vs_ne2000_{size}_packets"] = round(vio["packets_per_s"] / ne["packets_per_s"], 1)
    out["target_read_1GBps_met"] = out["virtio_read_16MiB_mb_per_s"] >= 1000
    out["target_read_100x_met"] = out["virtio_vs_ide_read_16MiB"] >= 100
    return out


def table() -> str:
    """Every case run so far, one line each."""
    lines = [f"{'case':<22} {'MB/s':>10} {'pkt/s':>9} {'exits':>7} {'exits/MiB':>10} "
             f"{'exits/pkt':>9} {'doorbells':>9} {'req/db':>7} {'exits/batch':>11} {'returns/batch':>13}  exit kinds"]
    for key in sorted(RESULTS, key=lambda k: tuple(str(x).rjust(5) for x in k)):
        f = RESULTS[key]
        name = "-".join(str(x) for x in key) + ("MiB" if key[0] == "disk" else "B")

        def col(k, w):
            v = f.get(k)
            return f"{'' if v is None else v:>{w}}"
        lines.append(f"{name:<22} {col('mb_per_s', 10)} {col('packets_per_s', 9)} {col('exits', 7)} "
                     f"{col('exits_per_mib', 10)} {col('exits_per_packet', 9)} {col('doorbells', 9)} "
                     f"{col('requests_per_doorbell', 7) if key[0] == 'disk' else col('frames_sent_per_doorbell', 7)} "
                     f"{col('exits_per_batch', 11)} {col('host_loop_returns_per_batch', 13)}  {f['exit_kinds']}")
    return "\n".join(lines)


def test_virtio_against_emulated_summary(benchmark, tmp_path):
    ratios = {}
    benchmark.pedantic(lambda: ratios.update(summary(tmp_path)), rounds=1, iterations=1)
    benchmark.extra_info.update(ratios)
    print("\n" + table())
    print("\n".join(f"{k}: {v}" for k, v in ratios.items()))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="hv-bench-") as td:
        ratios = summary(Path(td))
    print(table())
    print("\n".join(f"{k}: {v}" for k, v in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
