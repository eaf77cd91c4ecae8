"""A hostile guest cannot make the host use unbounded memory (hv issue 8.3).

``tests/hostile/fuzzer.c`` is built as a flat kernel and run on a machine with every
device (IDE, floppy, NE2000 and the four virtio-mmio devices, disks as snapshots) in a
subprocess, under each dispatcher. From a seeded PRNG it hammers every port with single
and string I/O of up to 16K elements, the virtio windows with random values, builds
rings with wild descriptors (4 GiB lengths, 64-bit addresses, loops, indirect tables, a
3.5 GiB console chain of one RAM range repeated) and touches unmapped memory. The
process's peak RSS must stay within guest RAM + 64 MiB, and the guest must reach its
end (power-off code 42): no host exception stopped it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hv import fastpath

HERE = Path(__file__).resolve().parent / "hostile"
GUEST_RAM = 16 << 20
ALLOWANCE = 64 << 20
ITERATIONS = 3000
FINISHED = 42

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(290),
    pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ld") is None,
                       reason="gcc and GNU ld are needed to build the hostile guest"),
]


def build(tmp_path: Path, seed: int) -> Path:
    obj, out = tmp_path / "fuzzer.o", tmp_path / "fuzzer.bin"
    subprocess.run(["gcc", "-m32", "-ffreestanding", "-fno-pic", "-fno-pie", "-fno-stack-protector",
                    "-fno-asynchronous-unwind-tables", "-nostdlib", "-O2", f"-DSEED={seed}",
                    f"-DITERATIONS={ITERATIONS}", "-c", str(HERE / "fuzzer.c"), "-o", str(obj)],
                   check=True, capture_output=True)
    subprocess.run(["ld", "-m", "elf_i386", "-T", str(HERE / "fuzzer.ld"), "-o", str(out), str(obj)],
                   check=True, capture_output=True)
    return out


def run_child(kernel: Path, dispatch: str, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "child.py"), str(kernel), dispatch, str(tmp_path)],
                          capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dispatch", ["c", "python"])
def test_a_guest_fuzzing_every_device_and_ring_keeps_host_memory_within_guest_ram_plus_64_mib(
        tmp_path, dispatch):
    if dispatch == "c" and not fastpath.c_available():
        pytest.skip("the C dispatch was not built")
    report = run_child(build(tmp_path, seed=0x5EED1 if dispatch == "c" else 0x5EED2), dispatch, tmp_path)
    # VmHWM, not ru_maxrss: the child's ru_maxrss also counts the pages it shared with the
    # forking pytest before exec (GiBs late in a full run), which say nothing about hv.
    peak = report["vm_hwm_kib"] * 1024
    assert report["exit_code"] == FINISHED, report
    assert peak <= GUEST_RAM + ALLOWANCE, f"peak RSS {peak >> 20} MiB: {report}"
    reasons = report["needs_reset"]
    # The run did what it claims: wild rings were refused, the 3.5 GiB console chain too.
    assert any(r.startswith("console: chain readable bytes, more than") for r in reasons), reasons
    assert sum(n for r, n in reasons.items() if "outside guest RAM" in r) > 0, reasons
    assert report["exits"] > ITERATIONS
