"""CPU-bound guest under hv (timer running) against the same code on bare Unicorn.

The figure that matters is ``ratio_vs_unicorn`` in extra_info: bare-Unicorn time
divided by hv time, measured in the same run (target >= 0.9 for the checksum
kernel). Run: python -m pytest bench/test_cpu.py --benchmark-only
"""
from __future__ import annotations

import time

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from bench.guests import bare, boot_sector
from hv.machine import DriveSpec, Machine, MachineConfig


def run_bare(code: bytes) -> float:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 1 << 20)
    uc.reg_write(X.UC_X86_REG_CR0, uc.reg_read(X.UC_X86_REG_CR0) & ~1)
    for r in (X.UC_X86_REG_CS, X.UC_X86_REG_DS, X.UC_X86_REG_SS):
        uc.reg_write(r, 0)
    uc.mem_write(0x7C00, code)
    t = time.perf_counter()
    uc.emu_start(0x7C00, 1 << 48)
    return time.perf_counter() - t


def run_hv(img, dispatch: str) -> tuple[float, Machine]:
    """Time from the kernel's POST-code write to the end of the run (boot excluded)."""
    m = Machine(MachineConfig(fda=DriveSpec(str(img)), dispatch=dispatch, timeout=120))
    start = {}
    post_write = m.post.write

    def mark(offset, size, value):
        start.setdefault("t", time.perf_counter())
        post_write(offset, size, value)
    m.post.write = mark
    m.run()
    elapsed = time.perf_counter() - start["t"]
    m.close()
    return elapsed, m


@pytest.mark.parametrize("kernel", ["checksum", "tight"])
@pytest.mark.parametrize("dispatch", ["c", "python"])
def test_cpu_loop_under_hv_vs_bare_unicorn(benchmark, tmp_path, kernel, dispatch):
    from hv import fastpath
    if dispatch == "c" and not fastpath.c_available():
        pytest.skip("the C fast path was not built")
    if dispatch == "python" and kernel == "tight":
        pytest.skip("the Python block hook on the 3-instruction loop takes minutes; see checksum")
    img = tmp_path / "cpu.img"
    img.write_bytes(boot_sector(kernel))
    bare_code = bare(kernel)
    bare_times, hv_times = [], []

    def one_round():
        bare_times.append(run_bare(bare_code))
        elapsed, m = run_hv(img, dispatch)
        hv_times.append(elapsed)
        return m

    m = benchmark.pedantic(one_round, rounds=3, iterations=1)
    best_bare, best_hv = min(bare_times), min(hv_times)
    benchmark.extra_info.update({
        "bare_unicorn_s": round(best_bare, 4),
        "hv_s": round(best_hv, 4),
        "ratio_vs_unicorn": round(best_bare / best_hv, 3),
        "timer_irqs": m.stats.total("irq-inject"),
        "exits": m.stats.total(),
    })
