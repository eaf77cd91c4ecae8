"""The VM flavors of a container (hv/container/vmflavor.py): `hv image to-disk` of the service
image, and one run of the service in an enlightened and in a full VM split into its steps
(disk, machine, boot to the program's first instruction, run, read-back).

Run: python -m pytest bench/test_vm_flavors.py --benchmark-only -s
`python -m bench.test_vm_flavors` prints the figures as a table without pytest.
Figures are medians over a few runs (the first run of a process, which pays for imports and
the engine, and the first of an image, which builds its cached disk, are left out).
"""
from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import pytest

from hv import guests
from hv.bench.test_containers import make_image

QUICK = bool(os.environ.get("HV_BENCH_QUICK"))
BUILT = (Path(guests.IMAGES_DIR) / "uvmfull.sys").exists()
needs_kernel = pytest.mark.skipif(not BUILT, reason="the full-VM kernel is not built")
STEPS = ("disk_ms", "machine_ms", "boot_ms", "run_ms", "readback_ms", "start_ms", "workload_ms")


def _store(td: Path):
    from hv.container.container import ContainerStore
    from hv.container.images import ImageStore
    top, db = make_image(td / "image")
    (top / ".hv").mkdir()
    os.replace(db, top / ".hv" / "registry.db")
    ImageStore(td / "home").build(top, "svc")
    return ContainerStore(td / "home")


def to_disk_ms(repeat: int = 5) -> float:
    from hv.container.vmflavor import image_to_disk
    times = []
    with tempfile.TemporaryDirectory() as td:
        store = _store(Path(td))
        for _ in range(repeat):
            t0 = time.perf_counter()
            image_to_disk(store.images, "svc", Path(td) / "svc.img")
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def flavor_steps(flavor: str, repeat: int = 5) -> dict[str, float]:
    """Median of each step over ``repeat`` runs of fresh containers (after two warm-ups)."""
    from hv.container.vmflavor import run_in_vm_flavor
    runs = []
    with tempfile.TemporaryDirectory() as td:
        store = _store(Path(td))
        image = store.images.get("svc")
        for i in range(repeat + 2):
            c = store.create(image, ["/bin/service"])
            out, stats = io.BytesIO(), {}
            status = run_in_vm_flavor(flavor, store, c, stdout=out.write, stderr=out.write,
                                      stats=stats)
            assert status == 0, out.getvalue()
            store.remove(c, force=True)
            if i >= 2:
                runs.append(stats)
    return {k: statistics.median(r[k] for r in runs) for k in STEPS} | {"exits": runs[-1]["exits"]}


# -- pytest-benchmark ----------------------------------------------------------------------------
@needs_kernel
def test_to_disk_of_the_service_image(benchmark):
    ms = benchmark.pedantic(to_disk_ms, args=(2 if QUICK else 5,), rounds=1, iterations=1)
    benchmark.extra_info["ms"] = round(ms, 2)


@needs_kernel
@pytest.mark.parametrize("flavor", ["enlightened", "full"])
def test_service_in_a_vm_flavor(benchmark, flavor):
    steps = benchmark.pedantic(flavor_steps, args=(flavor, 2 if QUICK else 5), rounds=1,
                               iterations=1)
    benchmark.extra_info.update({k: round(v, 2) for k, v in steps.items()})


if __name__ == "__main__":
    print(f"to-disk of the service image   {to_disk_ms():8.2f} ms")
    for flavor in ("enlightened", "full"):
        steps = flavor_steps(flavor)
        print(f"{flavor:<12} " + "  ".join(f"{k} {v:.1f}" for k, v in steps.items()))
