"""CPU-bound guest under hv (timer running) against the same code on bare Unicorn.

The figure that matters is ``ratio_vs_unicorn`` in extra_info: bare-Unicorn time
divided by hv time, measured in the same run (target >= 0.9 for the checksum
kernel). Run: python -m pytest bench/test_cpu.py --benchmark-only
"""
from __future__ import annotations

import pytest

from hv.bench.guests import bare, boot_sector
from hv.bench.matrix import run_bare, run_hv  # noqa: F401 (shared with `hv bench`)


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
