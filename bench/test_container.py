"""Process containers: system-call round trips, start-up, idle memory, CPU-bound speed.

Run: python -m pytest bench/test_container.py --benchmark-only -s
Each benchmark puts its derived figure in extra_info (ns per call, ms per start, MiB per
idle process, the ratio to qemu-i386 measured in the same run). `python -m hv.bench.test_container`
prints the same figures as a table without pytest.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import time

import pytest

from hv import guests
from hv.container.engine import Engine, EnginePool, Step, c_available
from hv.container.process import Process, run_to_exit

QEMU = shutil.which("qemu-i386")


def _run(program: str, args: list[str], engine: Engine, fast: bool = True) -> float:
    """Seconds to run one program to its exit on ``engine``."""
    p = Process(str(guests.linux_program_path(program)), [program, *args], [], stdout=io.BytesIO(),
                fast_calls=fast)
    t0 = time.perf_counter()
    status = run_to_exit(p, engine)
    elapsed = time.perf_counter() - t0
    assert status == 0, p.message
    return elapsed


def call_round_trip_ns(mode: str, n: int, engine: Engine, fast: bool = True, repeat: int = 3) -> float:
    """ns per call of ``syscalls MODE N``, less the same program with N = 0 (best of ``repeat``)."""
    base = min(_run("syscalls", [mode, "0"], engine, fast) for _ in range(repeat))
    loaded = min(_run("syscalls", [mode, str(n)], engine, fast) for _ in range(repeat))
    return (loaded - base) / n * 1e9


def start_ms(warm: bool, repeat: int = 20) -> float:
    """Median ms from creating a process to its first guest instruction; cold includes a new engine."""
    pool = EnginePool(size=1, warm=1) if warm else None
    times = []
    path = str(guests.linux_program_path("hello"))
    for _ in range(repeat):
        t0 = time.perf_counter()
        engine = pool.acquire() if warm else Engine()
        p = Process(path, ["hello"], [], stdout=io.BytesIO())
        engine.enter(p)
        times.append(time.perf_counter() - t0)
        p.close()
        if warm:
            pool.release(engine)
    times.sort()
    return times[len(times) // 2] * 1e3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def idle_rss_per_process(n: int) -> float:
    """MiB of host RSS per idle process: N copies of `io` blocked reading an empty stdin pipe,
    run on one shared engine (RSS after minus before, over N)."""
    r, w = os.pipe()
    pool = EnginePool(size=1, warm=1)
    path = str(guests.linux_program_path("io"))
    before = _rss_bytes()
    procs = []
    for _ in range(n):
        p = Process(path, ["io"], [], stdin=r, stdout=io.BytesIO())
        assert pool.run(p) is Step.BLOCKED
        procs.append(p)
    pool.idle[0].detach()          # every process idle, none attached
    per = (_rss_bytes() - before) / n / (1 << 20)
    for p in procs:
        p.close()
    pool.close()
    os.close(r)
    os.close(w)
    return per


def cpuloop_seconds(iterations: int) -> tuple[float, float, float | None]:
    """(hv on a preemptible engine, hv with no block hook, qemu-i386) seconds for
    `cpuloop N`: the same binary in the same run."""
    hv = min(_run("cpuloop", [str(iterations)], Engine()) for _ in range(3))
    plain = min(_run("cpuloop", [str(iterations)], Engine(preemptible=False)) for _ in range(3))
    if QEMU is None:
        return hv, plain, None
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([QEMU, str(guests.linux_program_path("cpuloop")), str(iterations)], check=True,
                       capture_output=True)
        times.append(time.perf_counter() - t0)
    return hv, plain, min(times)


needs_c = pytest.mark.skipif(not c_available(), reason="the C fast path was not built")


@needs_c
@pytest.mark.parametrize("path", ["c", "python"])
def test_getpid_round_trip(benchmark, path):
    engine = Engine()
    n = 200_000 if path == "c" else 50_000
    ns = benchmark.pedantic(call_round_trip_ns, args=("getpid", n, engine, path == "c"), rounds=1,
                            iterations=1)
    benchmark.extra_info["ns_per_call"] = round(ns, 1)


@needs_c
def test_write_to_dev_null_round_trip(benchmark):
    engine = Engine()
    ns = benchmark.pedantic(call_round_trip_ns, args=("devnull", 200_000, engine), rounds=1, iterations=1)
    benchmark.extra_info["ns_per_call"] = round(ns, 1)


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_start_to_first_instruction(benchmark, warm):
    ms = benchmark.pedantic(start_ms, args=(warm,), rounds=1, iterations=1)
    benchmark.extra_info["median_ms"] = round(ms, 3)


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 10, 100, 1000])
def test_idle_rss_per_process(benchmark, n):
    mib = benchmark.pedantic(idle_rss_per_process, args=(n,), rounds=1, iterations=1)
    benchmark.extra_info["mib_per_idle_process"] = round(mib, 3)


def test_cpu_bound_beside_qemu_i386(benchmark):
    hv, plain, qemu = benchmark.pedantic(cpuloop_seconds, args=(20_000_000,), rounds=1, iterations=1)
    benchmark.extra_info.update(hv_s=round(hv, 3), hv_no_block_hook_s=round(plain, 3))
    if qemu is not None:
        benchmark.extra_info.update(qemu_i386_s=round(qemu, 3), hv_over_qemu=round(hv / qemu, 2),
                                    hv_no_block_hook_over_qemu=round(plain / qemu, 2))


def main() -> None:
    if c_available():
        engine = Engine()
        print(f"getpid, C path:          {call_round_trip_ns('getpid', 1_000_000, engine):8.1f} ns")
        print(f"getpid, Python path:     {call_round_trip_ns('getpid', 100_000, engine, False):8.1f} ns")
        print(f"write to /dev/null (C):  {call_round_trip_ns('devnull', 1_000_000, engine):8.1f} ns")
    print(f"start, cold:             {start_ms(False):8.3f} ms")
    print(f"start, warm:             {start_ms(True):8.3f} ms")
    for n in (1, 10, 100, 1000):
        print(f"idle RSS, N={n:<5}        {idle_rss_per_process(n):8.3f} MiB per process")
    hv, plain, qemu = cpuloop_seconds(50_000_000)
    print(f"cpuloop 50M: hv {hv:.3f} s, hv without block hook {plain:.3f} s"
          + (f", qemu-i386 {qemu:.3f} s; ratios {hv / qemu:.2f} / {plain / qemu:.2f}" if qemu else ""))


if __name__ == "__main__":
    main()
