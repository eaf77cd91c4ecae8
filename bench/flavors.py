"""``hv flavors``: one workload, the four flavors, side by side, each measured.

    hv flavors service [--instances 1,10,100,1000] [--out DIR] [--budget SIZE] [--flavors LIST]

The same image and program run as a process container, in a utility VM, in an enlightened VM
(synthetic BIOS, virtio-blk) and in a full VM (emulated BIOS, IDE). For each flavor the report
gives start time (create to the program's first instruction), workload time, host memory per
instance against N, exits by kind, where the calls were served, and the outcome of isolation
checks: every outcome is what a check measured, never what the flavor is supposed to do.

The built-in workload ``service`` is ``guests/src/linux/service.c`` on an image built here
(its configuration, registry keys, a log and 8 data files) in a private ``HV_HOME``, so
nothing of the user's is touched. Output: ``DIR/flavors.md``, ``DIR/flavors.json`` and PNG
plots (when matplotlib is installed).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hv import guests

FLAVORS = ("process", "utility_vm", "enlightened_vm", "full_vm")
LABELS = {"process": "process container", "utility_vm": "utility VM",
          "enlightened_vm": "enlightened VM", "full_vm": "full VM"}
ISOLATION_ARG = {"process": "process", "utility_vm": "vm", "enlightened_vm": "enlightened",
                 "full_vm": "full"}
PROGRAMS = ("service", "hog", "leak", "probe")
WORKLOADS = {"service": ["/bin/service", "20"]}
IMAGE_NAME = "hv-flavors-service"
DEFAULT_INSTANCES = (1, 10, 100, 1000)
# How many instances each flavor is measured at by default: beyond these a run would take
# more than the two minutes `hv flavors` is meant to last (a VM instance boots a machine).
MAX_INSTANCES = {"process": 1000, "utility_vm": 100, "enlightened_vm": 10, "full_vm": 10}
TARGET_START_MS = {"process": 0.5, "utility_vm": 1.0, "enlightened_vm": 50.0, "full_vm": 200.0}
SECRET = "flavor-secret-7d1f"

CHECKS = {
    "files": "Can a neighbour read my files? (A writes /secret.txt, B reads it)",
    "memory": "Can a neighbour read my memory? (A holds a secret at 0x50000000, B looks there)",
    "global_objects": "Can a neighbour open my global-namespace objects? (Global\\ section)",
    "cpu_hog": "Does a CPU hog next door change my latency? (mean sleep lateness, 20 x 5 ms)",
    "cpu_hog_quota": "... and with the hog under --cpus 0.2?",
    "kernel_fault": "Does a kernel-level fault in one instance stop its neighbours?",
    "base_image": "Is the base image unchanged after the container is deleted?",
}
# The answer that means "isolated" for each check.
ISOLATED = {"files": False, "memory": False, "global_objects": False, "cpu_hog": False,
            "cpu_hog_quota": False, "kernel_fault": False, "base_image": True}


class FlavorError(Exception):
    """A flavor that cannot run here (its kernel or API missing): reported, not raised."""


# -- the image ------------------------------------------------------------------------------------

def build_image(store, extra_files: dict[str, bytes] | None = None):
    """The service image: the programs, its configuration, registry keys, a log folder and
    8 data files of 32 KiB (fixed bytes, so every run of the report reads the same data)."""
    from hv.container.registry import REG_SZ, LayeredRegistry, seal_layer
    from hv.container.images import REGISTRY_MEMBER
    with tempfile.TemporaryDirectory(prefix="hv-flavors-image-") as td:
        top = Path(td) / "image"
        (top / "bin").mkdir(parents=True)
        for prog in PROGRAMS:
            shutil.copyfile(guests.linux_program_path(prog), top / "bin" / prog)
            (top / "bin" / prog).chmod(0o755)
        (top / "etc").mkdir()
        (top / "etc" / "service.conf").write_text("name=flavors\ngreeting=hello\nrounds=20\n")
        (top / "var" / "log").mkdir(parents=True)
        (top / "srv" / "data").mkdir(parents=True)
        rng = random.Random(13)
        for i in range(8):
            (top / "srv" / "data" / f"f{i}.bin").write_bytes(rng.randbytes(1 << 15))
        for rel, data in (extra_files or {}).items():
            (top / rel).parent.mkdir(parents=True, exist_ok=True)
            (top / rel).write_bytes(data)
        db = top / REGISTRY_MEMBER
        db.parent.mkdir(parents=True, exist_ok=True)
        with LayeredRegistry([], db) as r:
            r.create_key("HKLM\\Software\\hv\\service")
            r.set_value("HKLM\\Software\\hv\\service", "Greeting", REG_SZ, "hello")
            r.set_value("HKLM\\Software\\hv\\service", "Mode", REG_SZ, "flavors")
        seal_layer(db)
        return store.images.build(top, IMAGE_NAME)


def image_digest(image) -> str:
    """A hash of every file, directory and registry layer of the image as stored."""
    h = hashlib.sha256()
    for low in image.lowers:
        for dirpath, dirnames, filenames in os.walk(low):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                h.update(str(p.relative_to(low)).encode() + b"\0")
                if p.is_file() and not p.is_symlink():
                    h.update(p.read_bytes())
    for _, db in image.layers:
        if db is not None:
            h.update(Path(db).read_bytes())
    return h.hexdigest()


# -- one instance ---------------------------------------------------------------------------------

@dataclass
class Run:
    """One program run in one flavor."""
    status: int
    out: bytes
    start_ms: float
    workload_ms: float
    exits: dict[str, int] = field(default_factory=dict)
    guest_calls: int | None = None      # system calls the instance's own kernel served
    host_calls: int | None = None       # ... and the host served (a shared kernel, 9P, registry)
    container: object = None


class Bench:
    """A private HV_HOME with the service image and its container store."""

    def __init__(self, home: Path) -> None:
        from hv.container.container import ContainerStore
        self.home = home
        self.store = ContainerStore(home)
        self.image = build_image(self.store)

    def create(self, argv: list[str], volumes=(), cpus=None):
        return self.store.create(self.image, argv, volumes=volumes, cpus=cpus)

    def env(self) -> list[str]:
        from hv.container.container import _image_env
        return [f"{k}={v}" for k, v in _image_env(self.image).items()]

    def remove(self, c) -> None:
        self.store.remove(c, force=True)


# process containers: one shared kernel ---------------------------------------------------------

class ProcessFlavor:
    name = "process"

    def __init__(self, bench: Bench) -> None:
        from hv.container.kernel import Kernel
        self.bench = bench
        self.kernel = Kernel(warm=1)

    def start(self, argv, volumes=(), cpus=None, name=None):
        """A container started on the shared kernel: (task, container, output, t0)."""
        from hv.container.container import LazyRegistry
        t0 = time.monotonic_ns()
        b = self.bench
        c = b.create(argv, volumes, cpus)
        root = b.store.open_root(c, b.image)
        reg = LazyRegistry([db for _, db in b.image.layers if db is not None], c.registry_db)
        out = io.BytesIO()
        task = self.kernel.start(argv[0], argv, b.env(), root, cwd="/", cpus=cpus, stdout=out,
                                 stderr=out, registry_calls=reg, name=name)
        task.opened = (root, reg)
        return task, c, out, t0

    def start_light(self, argv, upper: Path):
        """A container without a record in the store (its layers, registry and process only):
        what the density figure counts, at a thousand instances without a thousand fsyncs."""
        from hv.container.container import LazyRegistry
        from hv.container.layers import LayeredRoot
        b = self.bench
        upper.mkdir()
        root = LayeredRoot(b.image.lowers, upper / "upper")
        reg = LazyRegistry([db for _, db in b.image.layers if db is not None], upper / "registry.db")
        task = self.kernel.start(argv[0], argv, b.env(), root, cwd="/", stdout=io.BytesIO(),
                                 registry_calls=reg)
        task.opened = (root, reg)
        return task

    def run_beside(self, neighbour, task) -> None:
        """Run the kernel until ``task`` exits, then end ``neighbour`` (a holder or a hog)."""
        while task.ended_ns is None:
            if not self.kernel.run_round():
                self.kernel._nap()
        neighbour.kill()
        self.kernel._ended(neighbour)
        self.finish(neighbour)
        self.finish(task)

    def finish(self, task) -> None:
        for o in task.opened:
            o.close()

    def run(self, argv, volumes=(), cpus=None) -> Run:
        task, c, out, t0 = self.start(argv, volumes, cpus)
        self.kernel.run_all()
        self.finish(task)
        counts = task.process.call_counts()
        calls = sum(counts.values())
        return Run(task.status, out.getvalue(), (task.started_ns - t0) / 1e6,
                   (task.ended_ns - task.started_ns) / 1e6, {"system call (host kernel)": calls},
                   guest_calls=0, host_calls=calls, container=c)

    def close(self) -> None:
        self.kernel.close()


# utility VMs -------------------------------------------------------------------------------------

class UtilityVmFlavor:
    name = "utility_vm"

    def __init__(self, bench: Bench) -> None:
        from hv.container.uvm import DEFAULT_RAM, build_template
        self.bench = bench
        self.ram = DEFAULT_RAM
        self.template = build_template(bench.home, self.ram)     # once per HV_HOME, then cached

    def clone(self, argv, volumes=(), cpus=None, out=None):
        from hv.container.uvm import UtilityVm
        b = self.bench
        c = b.create(argv, volumes, cpus)
        root = b.store.open_root(c, b.image)
        out = out if out is not None else io.BytesIO()
        vm = UtilityVm(root, lambda: b.store.open_registry(c, b.image), memory=self.ram,
                       stdout=out.write, stderr=out.write, template=self.template, cpus=cpus)
        return vm, c, out

    def run(self, argv, volumes=(), cpus=None, keep: list | None = None, inject=None) -> Run:
        t0 = time.perf_counter()
        vm, c, out = self.clone(argv, volumes, cpus)
        t1 = time.perf_counter()
        if inject is not None:
            inject(vm.machine)
        status = vm.run(argv[0], argv, self.bench.env(), "/")
        t2 = time.perf_counter()
        counters = vm.counters()
        launch_ms = counters.get("launch to first instruction us", 0) / 1e3
        if keep is not None:
            keep.append(vm)         # a neighbour that stays alive (its RAM, its devices)
        else:
            vm.close()
        exits = {k[len("exits "):]: v for k, v in counters.items() if k.startswith("exits ")}
        return Run(status, out.getvalue(), (t1 - t0) * 1e3 + launch_ms,
                   max(0.0, (t2 - t1) * 1e3 - launch_ms), exits,
                   guest_calls=counters.get("guest_calls"),
                   host_calls=counters.get("p9_calls", 0) + counters.get("reg_calls", 0),
                   container=c)

    def close(self) -> None:
        pass


# enlightened and full VMs -------------------------------------------------------------------------

class DiskVmFlavor:
    """A pc machine booting hv's kernel in its "full" configuration from the container's disk
    (``hv image to-disk``): enlightened = synthetic BIOS + virtio-blk, full = emulated BIOS + IDE."""

    def __init__(self, bench: Bench, name: str) -> None:
        try:
            from hv.container import vmflavor
        except ImportError as e:
            raise FlavorError(f"the VM flavors are not built into this hv ({e})") from None
        self.vmflavor = vmflavor
        self.bench = bench
        self.name = name
        self.kind = "enlightened" if name == "enlightened_vm" else "full"

    def run(self, argv, volumes=(), cpus=None, keep: list | None = None, inject=None) -> Run:
        b = self.bench
        t0 = time.perf_counter()
        c = b.create(argv, volumes, cpus)
        out = io.BytesIO()
        stats: dict = {}
        status = self.vmflavor.run_in_vm_flavor(
            self.kind, b.store, c, argv, env=b.env(), cwd="/", stdout=out.write,
            stderr=out.write, stats=stats, keep=keep, inject=inject)
        elapsed = (time.perf_counter() - t0) * 1e3
        exits = {k[len("exits "):]: v for k, v in stats.items() if k.startswith("exits ")}
        start = stats.get("start_ms", elapsed)
        # The kernel's file and registry calls are answered from its own disk here: every
        # call is served in the guest; what crosses to the host is disk sectors.
        served = sum(stats.get(k, 0) for k in ("guest_calls", "p9_calls", "reg_calls"))
        return Run(status, out.getvalue(), start, stats.get("workload_ms", elapsed - start), exits,
                   guest_calls=served, host_calls=0, container=c)

    def close(self) -> None:
        pass


def make_flavor(name: str, bench: Bench):
    if name == "process":
        return ProcessFlavor(bench)
    if name == "utility_vm":
        return UtilityVmFlavor(bench)
    return DiskVmFlavor(bench, name)


# -- isolation checks -----------------------------------------------------------------------------
# Each returns {"leaked"/"changed"/...: bool, "evidence": str}. Two instances of one flavor are
# neighbours the way that flavor's instances are on one host: process containers share one
# kernel (one hv process); VMs are separate machines.

def _line(out: bytes, prefix: str) -> str:
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(prefix):
            return line
    return out.decode(errors="replace").strip()[-80:]


def check_files(f, shared_volume: Path | None = None) -> dict:
    """A writes a secret file, B (a new container of the same image) reads that path."""
    vols = [(str(shared_volume), "/shared", False)] if shared_volume else []
    path = "/shared/secret.txt" if shared_volume else "/secret.txt"
    a = f.run(["/bin/probe", "put", path, SECRET], volumes=vols)
    b = f.run(["/bin/probe", "get", path], volumes=vols)
    seen = _line(b.out, "get:")
    return {"yes": SECRET in seen, "evidence": f"A: {_line(a.out, 'put')}; B: {seen}"}


def check_memory(f) -> dict:
    """A holds a secret in private memory; B, alive at the same time, reads that address."""
    if isinstance(f, ProcessFlavor):
        ta, _, oa, _ = f.start(["/bin/probe", "hold", SECRET, "3000"])
        while b"holding" not in oa.getvalue() and ta.ended_ns is None:
            f.kernel.run_round()
        tb, _, ob, _ = f.start(["/bin/probe", "peek"])
        f.run_beside(ta, tb)
        seen = _line(ob.getvalue(), "peek:")
    else:
        keep: list = []
        f.run(["/bin/probe", "hold", SECRET, "0"], keep=keep)     # its VM (and RAM) stays
        try:
            seen = _line(f.run(["/bin/probe", "peek"]).out, "peek:")
        finally:
            for vm in keep:
                vm.close()
    return {"yes": SECRET in seen, "evidence": f"B: {seen}"}


def check_global_objects(f) -> dict:
    """A creates the section Global\\hvflavors holding a secret; B opens it."""
    name = "Global\\hvflavors"
    if isinstance(f, ProcessFlavor):
        ta, _, oa, _ = f.start(["/bin/leak", "write", name, SECRET])
        while b"wrote" not in oa.getvalue() and ta.ended_ns is None:
            f.kernel.run_round()
        tb, _, ob, _ = f.start(["/bin/leak", "read", name])
        f.kernel.run_all(timeout=20)
        f.finish(ta)
        f.finish(tb)
        a_out, b_out = oa.getvalue(), ob.getvalue()
    else:
        a_out = f.run(["/bin/leak", "write", name, SECRET]).out
        b_out = f.run(["/bin/leak", "read", name]).out
    seen = _line(b_out, "section:")
    return {"yes": SECRET in seen, "evidence": f"A: {_line(a_out, 'section') if b'section' in a_out else _line(a_out, 'wrote')}; B: {seen}"}


def _lateness_us(out: bytes) -> float | None:
    # hog tick prints "... worst W us, mean M us"
    import re
    m = re.search(rb"mean\s+(\d+(?:\.\d+)?)", out)
    return float(m.group(1)) if m else None


TICK = ["/bin/hog", "tick", "20", "5"]


def _tick_alone(f) -> float | None:
    return _lateness_us(f.run(TICK).out)


def _hog_subprocess(bench: Bench, flavor: str, cpus: float | None) -> subprocess.Popen:
    """A CPU hog VM next door: its own hv process (a VM's vCPU is a host thread of its own)."""
    argv = [sys.executable, "-m", "hv", "container", "run", "--rm", "--isolation",
            ISOLATION_ARG[flavor]]
    if cpus is not None:
        argv += ["--cpus", str(cpus)]
    argv += [IMAGE_NAME, "/bin/hog", "cpu"]
    env = dict(os.environ, HV_HOME=str(bench.home))
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tempfile.gettempdir(), start_new_session=True)


def check_cpu_hog(f, cpus: float | None) -> dict:
    alone = _tick_alone(f)
    if isinstance(f, ProcessFlavor):
        hog, _, _, _ = f.start(["/bin/hog", "cpu"], cpus=cpus)
        tb, _, ob, _ = f.start(TICK)
        f.run_beside(hog, tb)
        near = _lateness_us(ob.getvalue())
    else:
        p = _hog_subprocess(f.bench, f.name, cpus)
        try:
            time.sleep(1.0)                         # the hog is spinning
            near = _lateness_us(f.run(TICK).out)
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if alone is None or near is None:
        return {"yes": None, "evidence": "the latency probe gave no figure"}
    # "Changed" = half as late again and 0.2 ms more: back-to-back runs alone differ by a few
    # per cent; a neighbour that holds the CPU for whole slices shows as milliseconds.
    changed = near > 1.5 * alone and near - alone > 200
    return {"yes": changed, "evidence": f"mean lateness {alone:.0f} us alone, {near:.0f} us "
                                        f"beside the hog", "alone_us": alone, "beside_hog_us": near}


class InjectedKernelFault(RuntimeError):
    """The fault the kernel_fault check injects into the kernel serving instance A."""


def check_kernel_fault(f) -> dict:
    """A kernel-level fault while serving instance A: does neighbour B still finish?"""
    argv_b = WORKLOADS["service"]
    if isinstance(f, ProcessFlavor):
        ta, _, _, _ = f.start(["/bin/hog", "spin", "20000000"])
        tb, _, ob, _ = f.start(argv_b)
        pool = f.kernel.pool
        real_run = pool.run

        def faulty_run(process, max_ns=None):
            # The shared kernel fails while it serves A: one host process serves every task.
            if process is ta.process:
                raise InjectedKernelFault("kernel fault while serving instance A")
            return real_run(process, max_ns)
        pool.run = faulty_run
        error = None
        try:
            f.kernel.run_all(timeout=30)
        except InjectedKernelFault as e:
            error = str(e)
        finally:
            pool.run = real_run
            f.kernel.close()
            f.finish(ta)
            f.finish(tb)
            from hv.container.kernel import Kernel
            f.kernel = Kernel(warm=1)
        finished = tb.status == 0 and b"runs:" in ob.getvalue().lower()
        return {"yes": not finished,
                "evidence": f"A: {error or 'no fault'}; B: "
                            f"{'finished' if finished else 'did not finish'}"}

    def triple_fault(machine) -> None:
        # A's guest kernel loses its interrupt table: the next interrupt or system call
        # faults, the fault handler faults, and the CPU shuts down (a triple fault).
        from hv.bench.flavors import _zero_idt
        _zero_idt(machine)
    keep: list = []
    a = f.run(["/bin/hog", "spin", "20000000"], keep=keep, inject=triple_fault)
    try:
        b = f.run(argv_b)
    finally:
        for vm in keep:
            vm.close()
    finished = b.status == 0
    return {"yes": not finished,
            "evidence": f"A: exit {a.status} ({_line(a.out, 'hv:') or 'no output'}); B: "
                        f"{'finished' if finished else 'did not finish'}"}


def _zero_idt(machine) -> None:
    from unicorn.x86_const import UC_X86_REG_IDTR
    uc = machine.vcpu.uc
    _, base, limit, _ = uc.reg_read(UC_X86_REG_IDTR)
    machine.mem.write(base, bytes(limit + 1))


def check_base_image(f) -> dict:
    """Run a container that changes and deletes files of the image, delete the container, and
    compare the image's files and registry layers, byte for byte, with before."""
    b = f.bench
    before = image_digest(b.image)
    r = f.run(["/bin/probe", "put", "/etc/service.conf", "overwritten"])
    changed_in_container = b"put /etc/service.conf" in r.out
    b.remove(r.container)
    after = image_digest(b.image)
    return {"yes": before == after,
            "evidence": f"container wrote /etc/service.conf: {changed_in_container}; "
                        f"image digest {'unchanged' if before == after else 'CHANGED'}"}


def run_checks(f, shared_volume: Path | None = None) -> dict:
    out = {}
    for key, fn in (("files", lambda: check_files(f, shared_volume)),
                    ("memory", lambda: check_memory(f)),
                    ("global_objects", lambda: check_global_objects(f)),
                    ("cpu_hog", lambda: check_cpu_hog(f, None)),
                    ("cpu_hog_quota", lambda: check_cpu_hog(f, 0.2)),
                    ("kernel_fault", lambda: check_kernel_fault(f)),
                    ("base_image", lambda: check_base_image(f))):
        try:
            out[key] = fn()
        except Exception as e:       # a check that cannot run is reported, never guessed
            out[key] = {"yes": None, "evidence": f"check failed to run: {type(e).__name__}: {e}"}
    return out


# -- density -------------------------------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def density(flavor: str, n: int) -> dict:
    """Host RSS per idle instance with ``n`` of them alive, measured in this (fresh) process:
    each instance ran the service workload and stays alive (its memory, its machine)."""
    with tempfile.TemporaryDirectory(prefix="hv-flavors-density-") as td:
        bench = Bench(Path(td))
        f = make_flavor(flavor, bench)
        try:
            if flavor == "process":
                # Idle process containers: each asleep in nanosleep on the one kernel.
                f.run(WORKLOADS["service"])          # warm-up: imports, the engine
                before = _rss()
                tasks = []
                for i in range(n):
                    t = f.start_light(["/bin/hog", "tick", "1", "3600000"], Path(td) / f"u{i}")
                    tasks.append(t)
                    while t.process.blocked_on is None:
                        f.kernel.run_round()
                after = _rss()
            else:
                keep: list = []
                f.run(WORKLOADS["service"])          # warm-up (and the template)
                before = _rss()
                for _ in range(n):
                    f.run(WORKLOADS["service"], keep=keep)
                after = _rss()
                for vm in keep:
                    vm.close()
        finally:
            f.close()
    return {"instances": n, "rss_mib_per_instance": round((after - before) / n / 2**20, 3)}


def density_in_subprocess(flavor: str, n: int, timeout: float = 300) -> dict:
    p = subprocess.run([sys.executable, "-m", "hv.bench.flavors", "--density", flavor, str(n)],
                       capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    if p.returncode != 0:
        raise RuntimeError((p.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- the report ------------------------------------------------------------------------------------

def measure(flavors: list[str], instances: list[int], budget: int, workload: str = "service",
            shared_volume: bool = False, checks: bool = True, repeats: int = 3,
            log=lambda s: None) -> dict:
    argv = WORKLOADS[workload]
    doc: dict = {"workload": workload, "argv": argv, "budget_mib": budget // 2**20,
                 "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                             "platform": platform.platform()},
                 "checks": CHECKS, "flavors": {}}
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="hv-flavors-") as td:
        bench = Bench(Path(td) / "home")
        volume = Path(td) / "volume" if shared_volume else None
        if volume:
            volume.mkdir()
        for name in flavors:
            log(f"{LABELS[name]}: running {' '.join(argv)}")
            entry: dict = {"label": LABELS[name], "isolation_arg": ISOLATION_ARG[name]}
            doc["flavors"][name] = entry
            try:
                f = make_flavor(name, bench)
            except FlavorError as e:
                entry["error"] = str(e)
                continue
            try:
                f.run(argv)                                  # warm-up: imports, templates, caches
                runs = [f.run(argv) for _ in range(repeats)]
                best = min(runs, key=lambda r: r.start_ms + r.workload_ms)
                outputs[name] = best.out
                entry.update(status=best.status, output_sha256=hashlib.sha256(best.out).hexdigest(),
                             start_ms=round(min(r.start_ms for r in runs), 3),
                             workload_ms=round(min(r.workload_ms for r in runs), 3),
                             exits=best.exits, exits_total=sum(best.exits.values()),
                             calls_in_guest=best.guest_calls, calls_by_host=best.host_calls,
                             target_start_ms=TARGET_START_MS[name])
                for r in runs:
                    bench.remove(r.container)
                if checks:
                    log(f"{LABELS[name]}: isolation checks")
                    entry["isolation"] = run_checks(f, volume)
            except Exception as e:
                entry["error"] = f"{type(e).__name__}: {e}"
            finally:
                f.close()
            dens = {}
            for n in instances:
                if n > MAX_INSTANCES[name] or "error" in entry:
                    continue
                log(f"{LABELS[name]}: density at N = {n}")
                try:
                    dens[str(n)] = density_in_subprocess(name, n)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                    dens[str(n)] = {"instances": n, "error": str(e)}
            entry["density"] = dens
            per = [d["rss_mib_per_instance"] for d in dens.values() if "rss_mib_per_instance" in d]
            if per:
                entry["rss_mib_per_instance"] = per[-1]
                entry["instances_in_budget"] = int(budget / 2**20 / max(per[-1], 1e-3))
    ran = [n for n in flavors if "output_sha256" in doc["flavors"][n]]
    doc["same_output"] = len({doc["flavors"][n]["output_sha256"] for n in ran}) <= 1 if ran else None
    if ran:
        doc["output"] = outputs[ran[0]].decode(errors="replace")
    doc["order"] = order_findings(doc)
    return doc


EXPECTED_ORDER = ["process", "utility_vm", "enlightened_vm", "full_vm"]


def isolation_score(entry: dict) -> int | None:
    iso = entry.get("isolation")
    if not iso:
        return None
    return sum(1 for k, v in iso.items() if v.get("yes") is not None and v["yes"] == ISOLATED[k])


def order_findings(doc: dict) -> list[str]:
    """The expected order, checked against what was measured: start time rising and isolation
    not falling from process container to full VM."""
    fl = doc["flavors"]
    have = [n for n in EXPECTED_ORDER if "start_ms" in fl.get(n, {})]
    notes = []
    starts = [(n, fl[n]["start_ms"]) for n in have]
    by_start = [n for n, _ in sorted(starts, key=lambda x: x[1])]
    if by_start == have:
        notes.append("start time: " + " < ".join(f"{LABELS[n]} ({fl[n]['start_ms']:.3g} ms)"
                                                 for n in have) + " — as expected")
    else:
        notes.append("start time: measured order " + " < ".join(LABELS[n] for n in by_start)
                     + " differs from the expected " + " < ".join(LABELS[n] for n in have)
                     + EXPLAIN_START)
    scores = [(n, isolation_score(fl[n])) for n in have if isolation_score(fl[n]) is not None]
    if scores:
        rising = all(a[1] <= b[1] for a, b in zip(scores, scores[1:]))
        text = ", ".join(f"{LABELS[n]} {s}/{len(CHECKS)}" for n, s in scores)
        notes.append(f"isolation (checks passed): {text} — "
                     + ("does not fall from process container to full VM, as expected" if rising
                        else "NOT in the expected order" + EXPLAIN_ISOLATION))
    return notes


EXPLAIN_START = (": an enlightened VM boots through the synthetic BIOS, whose services are "
                 "host calls, so its boot is short; where a full VM starts faster, the emulated "
                 "BIOS's work was smaller than the synthetic path's fixed costs on this run")
EXPLAIN_ISOLATION = (": a check that could not run counts as not passed; see the matrix for "
                     "which check differs")


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def verdict(check: str, r: dict) -> str:
    yes = r.get("yes")
    if yes is None:
        return "not measured"
    word = "yes" if yes else "no"
    return word + (" (isolated)" if yes == ISOLATED[check] else " (exposed)")


def markdown(doc: dict, command: str) -> str:
    fl = doc["flavors"]
    names = [n for n in FLAVORS if n in fl]
    lines = [f"# hv flavors: `{' '.join(doc['argv'])}` four ways", "",
             f"Command: `{command}`", "",
             f"Machine: {doc['machine']['cpus']} CPUs, Python {doc['machine']['python']}, "
             f"{doc['machine']['platform']}.", "",
             "| flavor | start (ms) | target | workload (ms) | RSS per instance (MiB) | instances in "
             f"{doc['budget_mib']} MiB | exits | calls in guest / by host | exit status |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for n in names:
        e = fl[n]
        if "error" in e and "start_ms" not in e:
            lines.append(f"| {LABELS[n]} | not run: {e['error']} | | | | | | | |")
            continue
        lines.append(f"| {LABELS[n]} | {_fmt(e.get('start_ms'))} | ≤ {_fmt(e.get('target_start_ms'))}"
                     f" | {_fmt(e.get('workload_ms'))} | {_fmt(e.get('rss_mib_per_instance'))} | "
                     f"{_fmt(e.get('instances_in_budget'))} | {_fmt(e.get('exits_total'))} | "
                     f"{_fmt(e.get('calls_in_guest'))} / {_fmt(e.get('calls_by_host'))} | "
                     f"{_fmt(e.get('status'))} |")
    lines += ["", "Start: create to the program's first instruction (best of the runs); workload: "
              "first instruction to exit. RSS per instance: host memory growth with N idle instances "
              "alive, divided by N, at the largest N measured.", ""]
    same = doc.get("same_output")
    lines.append(f"Same output in every flavor that ran: **{'yes' if same else 'NO' if same is False else '—'}**.")
    lines += ["", "## Order", ""] + [f"- {t}" for t in doc.get("order", [])]
    lines += ["", "## Isolation, as measured", "",
              "| check | " + " | ".join(LABELS[n] for n in names) + " |",
              "| --- |" + " --- |" * len(names)]
    for key, text in CHECKS.items():
        cells = []
        for n in names:
            r = fl[n].get("isolation", {}).get(key)
            cells.append(verdict(key, r) if r else "—")
        lines.append(f"| {text} | " + " | ".join(cells) + " |")
    lines += ["", "Evidence (what each check saw):", ""]
    for n in names:
        for key, r in fl[n].get("isolation", {}).items():
            lines.append(f"- {LABELS[n]}, {key}: {r.get('evidence')}")
    lines += ["", "## Memory per instance against N", "",
              "| flavor | " + " | ".join(f"N = {k}" for k in sorted({int(k) for n in names for k in fl[n].get('density', {})})) + " |"]
    ns = sorted({int(k) for n in names for k in fl[n].get("density", {})})
    lines.append("| --- |" + " ---: |" * len(ns))
    for n in names:
        d = fl[n].get("density", {})
        lines.append(f"| {LABELS[n]} | " + " | ".join(
            _fmt(d.get(str(k), {}).get("rss_mib_per_instance")) if str(k) in d else "not measured"
            for k in ns) + " |")
    lines += ["", "## Exits by kind", ""]
    for n in names:
        ex = fl[n].get("exits") or {}
        top = sorted(ex.items(), key=lambda kv: -kv[1])[:8]
        lines.append(f"- {LABELS[n]}: " + (", ".join(f"{k} {v}" for k, v in top) or "none"))
    if doc.get("output"):
        lines += ["", "## The workload's output", "", "```", doc["output"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def plots(doc: dict, out: Path) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fl = doc["flavors"]
    names = [n for n in FLAVORS if "start_ms" in fl.get(n, {})]
    written = []
    if names:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        xs = range(len(names))
        w = 0.38
        ax.bar([x - w / 2 for x in xs], [fl[n]["start_ms"] for n in names], w, label="start")
        ax.bar([x + w / 2 for x in xs], [fl[n]["workload_ms"] for n in names], w, label="workload")
        ax.set_yscale("log")
        ax.set_xticks(list(xs), [LABELS[n] for n in names])
        ax.set_ylabel("milliseconds (log)")
        ax.set_title(f"{' '.join(doc['argv'])}: start and workload time")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "flavors-time.png", dpi=110)
        plt.close(fig)
        written.append("flavors-time.png")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for n in FLAVORS:
        d = fl.get(n, {}).get("density", {})
        pts = sorted((int(k), v["rss_mib_per_instance"]) for k, v in d.items()
                     if "rss_mib_per_instance" in v)
        if pts:
            ax.plot([p[0] for p in pts], [max(p[1], 1e-3) for p in pts], marker="o", label=LABELS[n])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("instances alive (N)")
    ax.set_ylabel("host MiB per instance")
    ax.set_title("memory per instance")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "flavors-memory.png", dpi=110)
    plt.close(fig)
    written.append("flavors-memory.png")
    iso = [n for n in FLAVORS if fl.get(n, {}).get("isolation")]
    if iso:
        keys = list(CHECKS)
        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        colors = {True: "#7fc97f", False: "#f0027f", None: "#cccccc"}
        for i, k in enumerate(keys):
            for j, n in enumerate(iso):
                r = fl[n]["isolation"].get(k, {})
                yes = r.get("yes")
                ok = None if yes is None else yes == ISOLATED[k]
                ax.add_patch(plt.Rectangle((j, len(keys) - 1 - i), 1, 1, color=colors[ok], ec="white"))
                ax.text(j + 0.5, len(keys) - 0.5 - i, "—" if yes is None else ("yes" if yes else "no"),
                        ha="center", va="center", fontsize=9)
        ax.set_xlim(0, len(iso))
        ax.set_ylim(0, len(keys))
        ax.set_xticks([j + 0.5 for j in range(len(iso))], [LABELS[n] for n in iso], fontsize=8)
        ax.set_yticks([len(keys) - 0.5 - i for i in range(len(keys))], keys, fontsize=8)
        ax.set_title("isolation checks (green: isolated, pink: exposed)")
        fig.tight_layout()
        fig.savefig(out / "flavors-isolation.png", dpi=110)
        plt.close(fig)
        written.append("flavors-isolation.png")
    return written


# -- command line ------------------------------------------------------------------------------------

def parse_size(text: str) -> int:
    from hv.memory import parse_bytes
    return parse_bytes(text, "budget")


def parser() -> argparse.ArgumentParser:
    from hv.cliargs import OneLineParser
    ap = OneLineParser(prog="hv flavors",
                       description="Run one workload as a process container, in a utility VM, an "
                                   "enlightened VM and a full VM; write a report of what each costs "
                                   "and what each protects (DIR/flavors.md, flavors.json, plots).")
    ap.add_argument("workload", choices=sorted(WORKLOADS), help="the workload (built in: service)")
    ap.add_argument("--instances", default=",".join(map(str, DEFAULT_INSTANCES)), metavar="N,...",
                    help="instance counts for the memory-per-instance measurement (default "
                         "1,10,100,1000; each flavor stops at its own limit: process 1000, utility "
                         "VM 100, enlightened and full VM 10)")
    ap.add_argument("--out", default="flavors-out", metavar="DIR",
                    help="where the report goes (default flavors-out)")
    ap.add_argument("--budget", default="16G", metavar="SIZE",
                    help="host memory budget for the density column (default 16G)")
    ap.add_argument("--flavors", default=",".join(FLAVORS), metavar="LIST",
                    help="which flavors, comma-separated (default all four)")
    ap.add_argument("--no-checks", action="store_true", help="skip the isolation checks")
    ap.add_argument("--share-volume", action="store_true",
                    help="break isolation on purpose: the files check's two instances share a "
                         "volume (the matrix shows what that does)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--density"] and len(argv) == 3:
        print(json.dumps(density(argv[1], int(argv[2]))))
        return 0
    from hv.cliargs import parse
    args, status = parse(parser(), argv, "hv flavors: error: ")
    if args is None:
        return status
    try:
        instances = sorted({int(x) for x in args.instances.split(",") if x.strip()})
        if not instances or min(instances) < 1:
            raise ValueError
    except ValueError:
        print(f"hv flavors: error: --instances: {args.instances!r} is not a list of counts like "
              f"1,10,100", file=sys.stderr)
        return 2
    flavors = [x.strip() for x in args.flavors.split(",") if x.strip()]
    bad = [x for x in flavors if x not in FLAVORS]
    if bad or not flavors:
        print(f"hv flavors: error: --flavors: unknown {', '.join(bad) or 'empty list'} (choose from "
              f"{', '.join(FLAVORS)})", file=sys.stderr)
        return 2
    try:
        budget = parse_size(args.budget)
    except ValueError as e:
        print(f"hv flavors: error: --budget: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"hv flavors: error: {out}: {e.strerror}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    doc = measure(flavors, instances, budget, args.workload, shared_volume=args.share_volume,
                  checks=not args.no_checks,
                  log=lambda s: print(f"hv flavors: {s}", file=sys.stderr, flush=True))
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    command = "hv flavors " + " ".join(argv)
    doc["command"] = command
    (out / "flavors.json").write_text(json.dumps(doc, indent=1) + "\n")
    written = plots(doc, out)
    md = markdown(doc, command)
    md += "\n" + ("Plots: " + ", ".join(f"![{p}]({p})" for p in written) if written
                  else "Plots: not drawn (matplotlib is not installed: pip install 'hv[bench]').") + "\n"
    (out / "flavors.md").write_text(md)
    print(md)
    print(f"hv flavors: wrote {out / 'flavors.md'}, {out / 'flavors.json'} and {len(written)} plots "
          f"in {doc['seconds']} s", file=sys.stderr)
    failed = [n for n in flavors if "error" in doc["flavors"][n]]
    return 1 if failed and len(failed) == len(flavors) else 0


if __name__ == "__main__":
    sys.exit(main())
