"""The ring-3 system-call round trip: `int $0x80` from ring 3 through a DPL-3 trap gate
into a ring-0 handler on the TSS stack, and its `iret` back (hv delivers it: the engine
does not). Goal: <= 2 us with the C delivery.

The figure is ``us_per_round_trip`` in extra_info: (time for N calls - time for none) / N,
both runs in the same round. Run: python -m pytest bench/test_ring3.py --benchmark-enable
"""
from __future__ import annotations

import time

import pytest

from hv.bench.guests import ring3_kernel
from hv.machine import Machine, MachineConfig

CALLS = {"c": 100_000, "python": 500}


def run_kernel(path, dispatch: str) -> float:
    m = Machine(MachineConfig(kernel=str(path), kernel_format="flat", dispatch=dispatch,
                              timeout=300))
    try:
        t = time.perf_counter()
        result = m.run()
        elapsed = time.perf_counter() - t
        assert result.exit_code == 0, result.reason
        return elapsed
    finally:
        m.close()


def ring3_round_trip_us(tmp_path, dispatch: str, calls: int | None = None) -> float:
    """Microseconds per ring-3 system call round trip (also used by `hv bench`)."""
    n = calls or CALLS[dispatch]
    base, loaded = tmp_path / "r0.bin", tmp_path / "rn.bin"
    base.write_bytes(ring3_kernel(0))
    loaded.write_bytes(ring3_kernel(n))
    empty = min(run_kernel(base, dispatch) for _ in range(3))
    full = min(run_kernel(loaded, dispatch) for _ in range(3))
    return (full - empty) / n * 1e6


@pytest.mark.parametrize("dispatch", ["c", "python"])
def test_ring3_system_call_round_trip(benchmark, tmp_path, dispatch):
    from hv import fastpath
    if dispatch == "c" and not fastpath.c_available():
        pytest.skip("the C fast path was not built")
    n = CALLS[dispatch] if benchmark.enabled else 50   # the CI smoke run: once, small
    result = benchmark.pedantic(lambda: ring3_round_trip_us(tmp_path, dispatch, n),
                                rounds=1, iterations=1)
    if benchmark.enabled:               # 50 calls (the smoke run) are within the noise
        assert result > 0
    benchmark.extra_info["us_per_round_trip"] = round(result, 3)
    benchmark.extra_info["calls"] = n
