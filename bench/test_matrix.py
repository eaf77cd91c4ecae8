"""The `hv bench` matrix as pytest-benchmark cases: the same cases, the same functions
(bench/matrix.py through bench/report.py's plan), one round each (every function already
takes the best of its own repeats). Each case's figures are in its extra_info.

    python -m pytest bench/test_matrix.py --benchmark-only            # the full matrix
    HV_BENCH_QUICK=1 python -m pytest bench/test_matrix.py --benchmark-only   # --quick's
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hv.bench import report
from hv import fastpath

PROFILE = report.QUICK if os.environ.get("HV_BENCH_QUICK") else report.FULL
DISPATCHES = ["c", "python"] if fastpath.c_available() else ["python"]
# Case keys at collection time; the cases are built again per test with its tmp_path.
KEYS = [c.key for c in report.plan(PROFILE, DISPATCHES, Path("unused"))]


@pytest.mark.parametrize("key", KEYS, ids=[k.replace(" ", "-") for k in KEYS])
def test_matrix_case(benchmark, tmp_path, key):
    case = {c.key: c for c in report.plan(PROFILE, DISPATCHES, tmp_path)}[key]
    figures = benchmark.pedantic(case.run, rounds=1, iterations=1)
    assert "error" not in figures, figures["error"]
    benchmark.extra_info.update({**case.params, **figures})
