"""Utility-VM containers: cold boot of the kernel to ready, a clone from the template, forwarded
file and registry calls beside the same calls in a process container, RSS per idle VM.

Run: python -m pytest bench/test_uvm.py --benchmark-only -s
`python -m bench.test_uvm` prints the figures as a table without pytest.

Per-call figures are differences: the program with N calls less the same program with 0, over
N, best of a few runs; so VM boot, program load and exit cancel out.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from hv.bench.test_containers import Container, _rss_bytes, make_image
from hv import guests
from hv.container.engine import Engine
from hv.container.layers import LayeredRoot
from hv.container.process import Process, run_to_exit
from hv.container.registry import LayeredRegistry
from hv.container.uvm import DEFAULT_RAM, UtilityVm, build_template, template_path

QUICK = bool(os.environ.get("HV_BENCH_QUICK"))


def _image(td: Path):
    top, db = make_image(td / "image")
    for prog in ("fsloop", "syscalls"):
        shutil.copyfile(guests.linux_program_path(prog), top / "bin" / prog)
    (top / "etc" / "small.txt").write_text("a small file\n" * 8)
    return top, db


def _vm(image, upper: Path, home: Path, out: io.BytesIO, template: bool = True) -> UtilityVm:
    top, db = image
    upper.mkdir(parents=True, exist_ok=True)
    root = LayeredRoot([top], upper)
    return UtilityVm(root, lambda: LayeredRegistry([db], upper / "registry.db"),
                     stdout=out.write, stderr=out.write,
                     template=template_path(home, DEFAULT_RAM) if template else None)


def cold_boot_ms(repeat: int = 5) -> float:
    """Machine built, kernel booted through paging, IDT, timer, virtio and 9P attach to ready."""
    best = None
    with tempfile.TemporaryDirectory() as td:
        image = _image(Path(td))
        for i in range(repeat):
            t0 = time.perf_counter()
            vm = _vm(image, Path(td) / f"u{i}", Path(td), io.BytesIO(), template=False)
            result = vm.machine.run()
            elapsed = time.perf_counter() - t0
            assert result.reason == "ready", result.reason
            vm.close()
            best = elapsed if best is None else min(best, elapsed)
    return best * 1e3


def clone_us(repeat: int = 20) -> tuple[float, float, float]:
    """(clone, launch to the program's first instruction, clone + run of `fsloop stat 0` to
    exit) in µs, best of ``repeat``. The clone is the VM from the template (RAM mapped
    copy-on-write, devices restored and bound to this container's layers); the launch is the
    kernel loading the 740 KB program over 9P and building its stack, timed on the VM's
    clock (the kernel reports when it enters ring 3)."""
    with tempfile.TemporaryDirectory() as td:
        home = Path(td)
        image = _image(home)
        build_template(home, DEFAULT_RAM)
        clone = whole = first = None
        for i in range(repeat):
            out = io.BytesIO()
            t0 = time.perf_counter()
            vm = _vm(image, home / f"u{i}", home, out)
            t1 = time.perf_counter()
            status = vm.run("/bin/fsloop", ["fsloop", "stat", "0", "/etc/small.txt"], [], "/")
            t2 = time.perf_counter()
            assert status == 0, out.getvalue()
            launch = vm.guest_stats["launch to first instruction us"]
            vm.close()
            clone = t1 - t0 if clone is None else min(clone, t1 - t0)
            whole = t2 - t0 if whole is None else min(whole, t2 - t0)
            first = launch if first is None else min(first, launch)
    return clone * 1e6, first, whole * 1e6


def _vm_loop_s(image, home: Path, argv: list[str], expect: bytes, tag: str) -> float:
    out = io.BytesIO()
    vm = _vm(image, home / tag, home, out)
    t0 = time.perf_counter()
    status = vm.run("/bin/" + argv[0], argv, [], "/")
    elapsed = time.perf_counter() - t0
    vm.close()
    assert status == 0 and out.getvalue() == expect, out.getvalue()
    return elapsed


def _process_loop_s(image, td: Path, argv: list[str], expect: bytes, tag: str, engine) -> float:
    c = Container(image, td / tag)
    out = io.BytesIO()
    p = Process("/bin/" + argv[0], argv, [], c.root, registry_calls=c.calls, stdout=out)
    t0 = time.perf_counter()
    assert run_to_exit(p, engine) == 0, p.message
    elapsed = time.perf_counter() - t0
    c.close()
    assert out.getvalue() == expect, out.getvalue()
    return elapsed


def call_us(kind: str, n: int, repeat: int = 3) -> tuple[float, float]:
    """(utility VM, process container) µs per call: kind is stat, openread or regquery."""
    if kind == "regquery":
        argv = lambda k: ["syscalls", "regquery", str(k)]
        expect = lambda k: f"regquery x {k}: 0\n".encode()
    else:
        argv = lambda k: ["fsloop", kind, str(k), "/etc/small.txt"]
        expect = lambda k: f"{kind} x {k}: {104 if k else 0}\n".encode()
    with tempfile.TemporaryDirectory() as td:
        home = Path(td)
        image = _image(home)
        build_template(home, DEFAULT_RAM)
        vm = [min(_vm_loop_s(image, home, argv(k), expect(k), f"v{k}-{i}") for i in range(repeat))
              for k in (0, n)]
        engine = Engine(preemptible=False)
        proc = [min(_process_loop_s(image, home, argv(k), expect(k), f"p{k}-{i}", engine)
                    for i in range(repeat)) for k in (0, n)]
        engine.close()
    return (vm[1] - vm[0]) / n * 1e6, (proc[1] - proc[0]) / n * 1e6


def idle_rss_kib(n: int) -> float:
    """Host RSS KiB per idle VM: N clones from the template, each built and left at ready
    (its RAM the template's file, mapped copy-on-write: no guest page is written yet)."""
    with tempfile.TemporaryDirectory() as td:
        home = Path(td)
        image = _image(home)
        build_template(home, DEFAULT_RAM)
        warm = _vm(image, home / "warm", home, io.BytesIO())      # the first pays for imports
        before = _rss_bytes()
        vms = [_vm(image, home / f"u{i}", home, io.BytesIO()) for i in range(n)]
        after = _rss_bytes()
        for vm in vms + [warm]:
            vm.close()
    return (after - before) / n / 1024


# -- pytest-benchmark ----------------------------------------------------------------------------
def test_uvm_cold_boot_to_ready(benchmark):
    ms = benchmark.pedantic(cold_boot_ms, args=(2 if QUICK else 5,), rounds=1, iterations=1)
    benchmark.extra_info["ms"] = round(ms, 2)


def test_uvm_clone_from_template(benchmark):
    clone, first, whole = benchmark.pedantic(clone_us, args=(3 if QUICK else 20,), rounds=1,
                                             iterations=1)
    benchmark.extra_info.update(clone_us=round(clone, 1), launch_to_first_instruction_us=first,
                                clone_to_exit_us=round(whole, 1))


@pytest.mark.parametrize("kind", ["stat", "openread", "regquery"])
def test_uvm_forwarded_call_beside_process_container(benchmark, kind):
    vm, proc = benchmark.pedantic(call_us, args=(kind, 200 if QUICK else 5000, 1 if QUICK else 3),
                                  rounds=1, iterations=1)
    benchmark.extra_info.update(vm_us=round(vm, 2), process_us=round(proc, 2))


def test_uvm_idle_rss(benchmark):
    per = benchmark.pedantic(idle_rss_kib, args=(3 if QUICK else 10,), rounds=1, iterations=1)
    benchmark.extra_info["kib_per_vm"] = round(per, 1)


if __name__ == "__main__":
    print(f"cold boot to ready          {cold_boot_ms():10.2f} ms")
    clone, first, whole = clone_us()
    print(f"clone from template         {clone:10.1f} us")
    print(f"launch to first instruction {first:10.1f} us")
    print(f"clone + run to exit         {whole:10.1f} us")
    for kind in ("stat", "openread", "regquery"):
        vm, proc = call_us(kind, 5000)
        print(f"{kind:<12} utility VM {vm:8.2f} us/call   process container {proc:8.2f} us/call")
    print(f"RSS per idle VM             {idle_rss_kib(10):10.1f} KiB")
