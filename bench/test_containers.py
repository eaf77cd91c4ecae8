"""Whole containers on the shared kernel: start (cold, warm pool), registry query round trip,
the service workload beside qemu-i386, density of idle containers.

Run: python -m pytest bench/test_containers.py --benchmark-only -s
`python -m bench.test_containers` prints the figures as a table without pytest. Process-level
figures (getpid, write to /dev/null, a bare process's start and idle RSS, CPU-bound speed) are
in bench/test_container.py.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hv import guests
from hv.container.container import LazyRegistry
from hv.container.engine import Engine, EnginePool, Step
from hv.container.kernel import Kernel
from hv.container.layers import LayeredRoot
from hv.container.guest_memory import _resident
from hv.container.process import Process, run_to_exit
from hv.container.registry import REG_SZ, LayeredRegistry, seal_layer

QEMU = shutil.which("qemu-i386")
QUICK = bool(os.environ.get("HV_BENCH_QUICK"))     # CI: prove the benchmarks run, small sizes
PROGRAMS = ("service", "hog", "syscalls")


def make_image(top: Path) -> tuple[Path, Path]:
    """A one-layer image as a directory: the service's files, and its registry layer."""
    top.mkdir(parents=True)
    (top / "bin").mkdir()
    for prog in PROGRAMS:
        shutil.copyfile(guests.linux_program_path(prog), top / "bin" / prog)
    (top / "etc").mkdir()
    (top / "etc" / "service.conf").write_text("name=bench\ngreeting=hello\nrounds=20\n")
    (top / "var" / "log").mkdir(parents=True)
    (top / "srv" / "data").mkdir(parents=True)
    for i in range(8):
        (top / "srv" / "data" / f"f{i}.bin").write_bytes(os.urandom(1 << 15))
    db = top.parent / (top.name + "-registry.db")
    with LayeredRegistry([], db) as r:
        r.create_key("HKLM\\Software\\hv\\service")
        r.set_value("HKLM\\Software\\hv\\service", "Greeting", REG_SZ, "hello")
        r.set_value("HKLM\\Software\\hv\\service", "Mode", REG_SZ, "bench")
    seal_layer(db)
    return top, db


class Container:
    """What `hv container run` opens for one container, without the record: the layered root,
    and the registry, opened at the first registry call."""

    def __init__(self, image: tuple[Path, Path], upper: Path) -> None:
        self.root = LayeredRoot([image[0]], upper / "upper")
        self.calls = LazyRegistry([image[1]], upper / "registry.db")

    def close(self) -> None:
        self.root.close()
        self.calls.close()


def start_us(warm: bool, repeat: int = 30) -> tuple[float, float]:
    """Median µs from nothing to a container's first guest instruction: (its layers, registry
    and process made and entered; the process alone). Cold includes a new engine."""
    with tempfile.TemporaryDirectory() as td:
        image = make_image(Path(td) / "image")
        pool = EnginePool(size=1, warm=1) if warm else None
        whole, proc_only = [], []
        for i in range(repeat):
            t0 = time.perf_counter()
            engine = pool.acquire() if warm else Engine()
            t1 = time.perf_counter()
            c = Container(image, Path(td) / f"c{i}")
            t2 = time.perf_counter()
            p = Process("/bin/hog", ["hog", "spin", "1"], [], c.root, registry_calls=c.calls,
                        stdout=io.BytesIO())
            engine.enter(p)
            t3 = time.perf_counter()
            whole.append(t3 - t0)
            proc_only.append((t3 - t2) + (t1 - t0))
            p.close()
            c.close()
            if warm:
                pool.release(engine)
            else:
                engine.close()
        whole.sort()
        proc_only.sort()
        return whole[len(whole) // 2] * 1e6, proc_only[len(proc_only) // 2] * 1e6


def regquery_ns(n: int = 20000, repeat: int = 3) -> float:
    """ns per registry query round trip (`syscalls regquery N` less N = 0, best of ``repeat``)."""
    with tempfile.TemporaryDirectory() as td:
        image = make_image(Path(td) / "image")
        engine = Engine(preemptible=False)

        def run(count: int, i: int) -> float:
            c = Container(image, Path(td) / f"c{count}-{i}")
            out = io.BytesIO()
            p = Process("/bin/syscalls", ["syscalls", "regquery", str(count)], [], c.root,
                        registry_calls=c.calls, stdout=out)
            t0 = time.perf_counter()
            assert run_to_exit(p, engine) == 0, p.message
            elapsed = time.perf_counter() - t0
            c.close()
            assert out.getvalue() == f"regquery x {count}: 0\n".encode()
            return elapsed

        base = min(run(0, i) for i in range(repeat))
        loaded = min(run(n, i) for i in range(repeat))
        engine.close()
        return (loaded - base) / n * 1e9


def service_seconds(rounds: int = 200, repeat: int = 3) -> tuple[float, float | None]:
    """(hv, qemu-i386) seconds for `service ROUNDS` end to end, best of ``repeat``, same run.
    hv: layers, registry, the program on the shared kernel; qemu-i386: a copy of the files on
    a tmpfs (where its 32-bit readdir works)."""
    with tempfile.TemporaryDirectory() as td:
        image = make_image(Path(td) / "image")
        best = None
        for i in range(repeat):
            t0 = time.perf_counter()
            c = Container(image, Path(td) / f"c{i}")
            k = Kernel()
            out = io.BytesIO()
            t = k.start("/bin/service", ["service", str(rounds)], root=c.root, registry_calls=c.calls,
                        stdout=out)
            k.run_all()
            k.close()
            c.close()
            elapsed = time.perf_counter() - t0
            assert t.status == 0, out.getvalue()
            best = elapsed if best is None else min(best, elapsed)
    if QEMU is None or not os.access("/dev/shm", os.W_OK):
        return best, None
    with tempfile.TemporaryDirectory(dir="/dev/shm") as td:
        make_image(Path(td) / "image")
        q = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([QEMU, str(guests.linux_program_path("service")), str(rounds)],
                           cwd=Path(td) / "image", check=True, capture_output=True)
            q.append(time.perf_counter() - t0)
    return best, min(q)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def density_kib(n: int) -> tuple[float, float]:
    """(KiB of host RSS per idle container, KiB of it that are pages the guest wrote) with N
    containers (layers, registry, a process asleep in nanosleep) on one kernel, one engine."""
    with tempfile.TemporaryDirectory() as td:
        image = make_image(Path(td) / "image")
        k = Kernel(engines=1, warm=1)
        k.run_round()
        before = _rss_bytes()
        cs = []
        for i in range(n):
            c = Container(image, Path(td) / f"c{i}")
            cs.append(c)
            t = k.start("/bin/hog", ["hog", "tick", "1", "3600000"], root=c.root, registry_calls=c.calls,
                        stdout=io.BytesIO())
            while t.process.blocked_on is None:
                assert k.pool.run(t.process, k.slice_ns) is not Step.EXITED
        for e in k.pool.idle:
            e.detach()
        per = (_rss_bytes() - before) / n / 1024
        guest = sum(_resident(b) for t in k.tasks for b in {id(a.buf): a.buf for a in t.process.space.areas
                                                          if a.kind != "image"}.values()) / n / 1024
        k.close()
        for c in cs:
            c.close()
        return per, guest


# -- pytest-benchmark ----------------------------------------------------------------------------
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm-pool"])
def test_container_start(benchmark, warm):
    whole, proc = benchmark.pedantic(start_us, args=(warm,), rounds=1, iterations=1)
    benchmark.extra_info.update(median_us=round(whole, 1), process_and_engine_us=round(proc, 1))


def test_registry_query_round_trip(benchmark):
    ns = benchmark.pedantic(regquery_ns, args=(1000 if QUICK else 20000,), rounds=1, iterations=1)
    benchmark.extra_info["ns_per_call"] = round(ns, 1)


def test_service_beside_qemu_i386(benchmark):
    hv, qemu = benchmark.pedantic(service_seconds, args=(20 if QUICK else 200, 1 if QUICK else 3),
                                  rounds=1, iterations=1)
    benchmark.extra_info["hv_s"] = round(hv, 3)
    if qemu is not None:
        benchmark.extra_info.update(qemu_i386_s=round(qemu, 3), hv_over_qemu=round(hv / qemu, 2))


@pytest.mark.parametrize("n", [1, 10] if QUICK else [1, 10, 100, 1000])
def test_idle_container_density(benchmark, n):
    per, guest = benchmark.pedantic(density_kib, args=(n,), rounds=1, iterations=1)
    benchmark.extra_info.update(kib_per_container=round(per, 1), kib_guest_pages=round(guest, 1),
                                kib_besides_guest_pages=round(per - guest, 1))


if __name__ == "__main__":
    for warm in (False, True):
        whole, proc = start_us(warm)
        print(f"start {'warm' if warm else 'cold'}: {whole:.0f} µs (process and engine {proc:.0f} µs)")
    print(f"registry query: {regquery_ns():.0f} ns")
    hv, qemu = service_seconds()
    print(f"service 200 rounds: hv {hv:.3f} s" + (f", qemu-i386 {qemu:.3f} s, {hv / qemu:.2f}x" if qemu else ""))
    for n in (1, 10, 100, 1000):
        per, guest = density_kib(n)
        print(f"density N={n}: {per:.0f} KiB per idle container ({guest:.0f} KiB of pages the guest wrote)")
