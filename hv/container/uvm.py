"""Utility-VM containers (``hv container run --isolation vm``): the program in a microVM.

The VM is a ``microvm`` board (one vCPU, UART, APICs, virtio-mmio) booted directly into
hv's trimmed kernel (``guests/src/uvm/uvm.c``, shipped as ``guests/images/uvmkernel.elf``).
The kernel runs one static Linux i386 program at ring 3 and serves its process, memory and
time calls itself; file calls reach the host as 9P2000.L over virtio-9p, served from the
container's ``LayeredRoot``, and registry calls as registry messages over hv's registry
device, served by its ``LayeredRegistry``. The program's memory never leaves the VM.

Three hypercalls of its own (beside direct boot's console, power-off and time):

    0x0010 UVM_WRITE   EBX stream (1 stdout, 2 stderr), ECX phys addr, EDX len -> EAX written
    0x0011 UVM_READY   EBX phys addr of the launch block, ECX its size: the host fills it
    0x0012 UVM_STATS   EBX phys addr of the kernel's counters (8 x u32), at exit
    0x0013 UVM_READ    EBX phys addr, ECX len: read the container's stdin -> EAX bytes (0: end)

Fast start: the kernel is booted once to UVM_READY (paging, IDT, timer, virtio drivers, 9P
attached) and saved as a template snapshot under ``$HV_HOME/templates/`` keyed by the kernel
image's hash and the RAM size. Each container is a clone: the template's RAM mapped
copy-on-write, its own 9P and registry devices bound to its own layers, and its launch block
(program, working directory, argv, env) written into the clone before it runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
import tempfile
import time
from pathlib import Path
from typing import Callable

from hv import guests
from hv.devices.fs_virtio9p import Virtio9p
from hv.devices.registry_virtio import VirtioRegistry
from hv.machine import Machine, MachineConfig

HC_WRITE, HC_READY, HC_STATS, HC_READ = 0x0010, 0x0011, 0x0012, 0x0013
READ_MAX = 64 << 10                      # the kernel's bounce buffer
LAUNCH_MAGIC = 0x4C4D5655                     # "UVML"
LAUNCH_HEADER = struct.Struct("<IIQII")        # magic, size, epoch_ns, argc, envc
STATS_FIELDS = ("ticks", "syscalls", "guest_calls", "p9_calls", "reg_calls", "unknown_calls",
                "p9_messages", "doorbells", "entry_lo", "entry_hi")
DEFAULT_RAM = 64 << 20
MIN_RAM, MAX_RAM = 4 << 20, 128 << 20         # the kernel identity-maps RAM below 128 MiB
EXIT_VM_FAILED = 125


class UvmError(Exception):
    """A one-line message: the VM could not be made or the launch does not fit."""


def kernel_path() -> Path:
    return Path(guests.IMAGES_DIR) / "uvmkernel.elf"


def check_ram(size: int | None) -> int:
    size = DEFAULT_RAM if size is None else size
    if not MIN_RAM <= size <= MAX_RAM:
        raise UvmError(f"--memory: a utility VM takes {MIN_RAM >> 20}m to {MAX_RAM >> 20}m of RAM")
    return size


def _config(ram: int, devices: dict) -> MachineConfig:
    return MachineConfig(board="microvm", kernel=str(kernel_path()), mem_size=ram,
                         extra_virtio=devices, clock="wall")


class _LazyRegistry:
    """The container's registry, opened at the first registry message (opening costs ms)."""

    def __init__(self, opener: Callable[[], object]) -> None:
        self._opener, self._registry = opener, None

    def __getattr__(self, name):
        if self._registry is None:
            self._registry = self._opener()
        return getattr(self._registry, name)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()


def launch_block(prog: str, cwd: str, argv: list[str], env: list[str], size: int) -> bytes:
    strings = [s.encode() for s in [prog, cwd] + argv + env]
    if any(b"\0" in s for s in strings):
        raise UvmError("an argument or environment string contains a NUL byte")
    body = b"".join(s + b"\0" for s in strings)
    block = LAUNCH_HEADER.pack(LAUNCH_MAGIC, LAUNCH_HEADER.size + len(body), 0, len(argv), len(env))
    block += body
    if len(block) > size:
        raise UvmError(f"argument list too long for the utility VM ({len(block)} > {size} bytes)")
    return bytearray(block)


class _CpuShare:
    """``--cpus F`` for a VM: a host-side quota. Every 10 ms of the clock the vCPU thread's
    CPU time since the start is compared with F x the wall time, and the excess is slept away
    between slices. The guest's clock runs on through the pause: to it, the time went to
    another tenant. An idle guest (in ``hlt``) uses no CPU and is never paused."""

    PERIOD_NS = 10_000_000
    MAX_PAUSE_NS = 100_000_000

    def __init__(self, machine, share: float) -> None:
        self.machine, self.share = machine, share
        self.start = None
        self.pauses = self.paused_ns = 0
        machine.clock.after(self.PERIOD_NS, self._tick)

    def _tick(self, now: int) -> None:
        cpu, wall = time.thread_time_ns(), time.monotonic_ns()
        if self.start is None:
            self.start = (cpu, wall)
        else:
            used, elapsed = cpu - self.start[0], wall - self.start[1]
            pause = min(int(used / self.share) - elapsed, self.MAX_PAUSE_NS)
            if pause > 0:
                time.sleep(pause / 1e9)
                self.pauses += 1
                self.paused_ns += pause
        self.machine.clock.after(self.PERIOD_NS, self._tick)


class UtilityVm:
    """One container's VM. ``root`` a LayeredRoot, ``open_registry()`` its LayeredRegistry;
    ``stdout``/``stderr`` take bytes. ``run(prog, argv, env, cwd)`` -> exit status."""

    def __init__(self, root, open_registry: Callable[[], object], *, memory: int | None = None,
                 stdout: Callable[[bytes], object], stderr: Callable[[bytes], object],
                 template: Path | None = None, cpus: float | None = None,
                 stdin: int | None = None) -> None:
        self.ram = check_ram(memory)
        self.stdin = stdin                       # a host fd the program's fd 0 reads, or none
        self.registry = _LazyRegistry(open_registry)
        self.p9 = Virtio9p(root)
        self.reg = VirtioRegistry(self.registry)
        self.stdout, self.stderr = stdout, stderr
        self.guest_stats: dict[str, int] = {}
        self.launch: bytearray | None = None     # written at UVM_READY, or into a clone
        self.launch_clock: int | None = None
        self.template = template
        self.message = ""
        config = _config(self.ram, {"9p": self.p9, "registry": self.reg})
        if template is not None:
            meta = json.loads(template.with_suffix(".json").read_text())
            self.launch_addr, self.launch_size = meta["launch_addr"], meta["launch_size"]
            self.machine = Machine(config, restore=str(template))
        else:
            self.machine = Machine(config)
        self._register()
        self.cpu_share = _CpuShare(self.machine, cpus) if cpus is not None and cpus < 1 else None

    def _register(self) -> None:
        hc = self.machine.hypercalls
        for number, name, handler in ((HC_WRITE, "uvm:write", self._hc_write),
                                      (HC_READY, "uvm:ready", self._hc_ready),
                                      (HC_STATS, "uvm:stats", self._hc_stats),
                                      (HC_READ, "uvm:read", self._hc_read)):
            hc.register(number, name, _kernel_only(handler))

    # -- hypercalls ----------------------------------------------------------------------------
    def _hc_write(self, ctx) -> None:
        write_from_guest(ctx, self.stdout, self.stderr)

    def _hc_read(self, ctx) -> None:
        """The program reads its stdin: the host's, when it is a pipe or a terminal (as a
        process container's). The vCPU waits in the read, as a blocking device would."""
        addr, n = ctx.regs.ebx, min(ctx.regs.ecx, READ_MAX)
        data = b""
        if self.stdin is not None and n:
            try:
                data = os.read(self.stdin, n)
            except OSError:
                data = b""                       # an unreadable stdin reads as its end
        try:
            ctx.mem.write(addr, data)
        except ValueError:
            data = b""
        ctx.regs.eax = len(data)

    def _hc_ready(self, ctx) -> None:
        if self.launch is None:               # a template boot: stop here, to be saved
            self.launch_addr, self.launch_size = ctx.regs.ebx, ctx.regs.ecx
            self.machine.finish(0, "ready")
            return
        self._write_launch(ctx.regs.ebx, ctx.regs.ecx)

    def _hc_stats(self, ctx) -> None:
        try:
            raw = bytes(ctx.mem.read(ctx.regs.ebx, 4 * len(STATS_FIELDS)))
        except ValueError:
            return
        stats = dict(zip(STATS_FIELDS, struct.unpack(f"<{len(STATS_FIELDS)}I", raw)))
        entry = stats.pop("entry_lo") | stats.pop("entry_hi") << 32
        if entry and self.launch_clock is not None:
            # launch block written -> the program's first instruction, on the VM's clock
            stats["launch to first instruction us"] = max(0, entry - self.launch_clock) // 1000
        self.guest_stats = stats

    def _write_launch(self, addr: int, size: int) -> None:
        block = self.launch
        if len(block) > size:
            raise UvmError("the launch block does not fit")
        # CLOCK_REALTIME in the guest = its hv clock reading + this offset.
        block[8:16] = struct.pack("<Q", _realtime_offset(self.machine))
        self.machine.mem.write(addr, bytes(block))

    # -- running -------------------------------------------------------------------------------
    def run(self, prog: str, argv: list[str], env: list[str], cwd: str = "/") -> int:
        self.launch = launch_block(prog, cwd, argv, env, 65536)
        self.launch_clock = self.machine.clock.now()
        if self.template is not None:
            self._write_launch(self.launch_addr, self.launch_size)
        result = self.machine.run()
        self.message = result.reason
        for line in bytes(self.machine.serial_log).splitlines():    # the kernel's complaints
            self.stderr(b"hv: utility VM: " + line + b"\n")
        if not result.reason.startswith("guest powered off"):
            self.stderr(f"hv: utility VM: {result.reason}\n".encode())
            return EXIT_VM_FAILED
        return result.exit_code

    def counters(self) -> dict[str, int]:
        """For --stats: the kernel's counters, the VM's exits, 9P messages, registry calls."""
        out = dict(self.guest_stats)
        exits = self.machine.stats
        out["exits"] = exits.total()
        for (kind, who), n in sorted(exits.counts.items()):
            out[f"exits {kind} {who}"] = n
        out.update(self.p9.counters())
        out.update(self.reg.counters())
        if self.cpu_share is not None:
            out["cpu share pauses"] = self.cpu_share.pauses
            out["cpu share paused ms"] = self.cpu_share.paused_ns // 1_000_000
        return out

    def close(self) -> None:
        self.machine.close()
        self.registry.close()


def write_from_guest(ctx, stdout: Callable[[bytes], object], stderr: Callable[[bytes], object]) -> None:
    """HC_WRITE: EBX the stream (2 is stderr, anything else stdout), ECX and EDX the guest
    buffer, at most 1 MiB a call; EAX the bytes taken (0 for a buffer outside guest RAM)."""
    stream, addr, n = ctx.regs.ebx, ctx.regs.ecx, min(ctx.regs.edx, 1 << 20)
    try:
        data = bytes(ctx.mem.read(addr, n))
    except ValueError:
        ctx.regs.eax = 0
        return
    (stderr if stream == 2 else stdout)(data)
    ctx.regs.eax = len(data)


def _kernel_only(handler):
    """The program at ring 3 must not use the kernel's channel (a vmcall at CPL 3 is #UD on
    a real CPU): it gets EAX = 0xFFFFFFFF and nothing happens."""
    def checked(ctx) -> None:
        if ctx.regs.cs & 3:
            ctx.regs.eax = 0xFFFFFFFF
            return
        handler(ctx)
    return checked


def _realtime_offset(machine) -> int:
    """Add to the guest's hv clock reading (``clock.now()``) to get Unix time in ns."""
    return (time.time_ns() - machine.clock.now()) & (2**64 - 1)


# -- templates -------------------------------------------------------------------------------------
def template_path(home: Path, ram: int) -> Path:
    digest = hashlib.sha256(kernel_path().read_bytes()).hexdigest()[:16]
    return Path(home) / "templates" / f"uvm-{digest}-{ram >> 20}m.snap"


def build_template(home: Path, ram: int) -> Path:
    """Boot the kernel to UVM_READY with throw-away layers and save it (once per kernel and
    RAM size; written to a temporary name and renamed, so a half-written one is never used)."""
    from hv.container.layers import LayeredRoot
    from hv.container.registry import LayeredRegistry
    path = template_path(home, ram)
    if path.exists() and path.with_suffix(".json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hv-uvm-template-") as td:
        root = LayeredRoot.from_directory(Path(td))
        vm = UtilityVm(root, lambda: LayeredRegistry([], Path(td) / "registry.db"), memory=ram,
                       stdout=lambda b: None, stderr=lambda b: None)
        try:
            result = vm.machine.run()
            if result.reason != "ready":
                raise UvmError(f"the utility-VM kernel did not reach ready: {result.reason}")
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            vm.machine.save(tmp)
            meta = {"launch_addr": vm.launch_addr, "launch_size": vm.launch_size}
            tmp_meta = tmp.with_suffix(".jsontmp")
            tmp_meta.write_text(json.dumps(meta))
            os.rename(tmp_meta, path.with_suffix(".json"))
            os.rename(tmp, path)
        finally:
            vm.close()
    return path


def run_in_vm(root, open_registry, prog: str, argv: list[str], env: list[str], cwd: str, *,
              memory: int | None, stdout, stderr, home: Path | None, cold: bool = False,
              stats: dict | None = None, cpus: float | None = None,
              stdin: int | None = None) -> int:
    """Run one program in a utility VM (cloned from the template unless ``cold``)."""
    ram = check_ram(memory)
    template = None if cold or home is None else build_template(home, ram)
    try:
        vm = UtilityVm(root, open_registry, memory=ram, stdout=stdout, stderr=stderr,
                       template=template, cpus=cpus, stdin=stdin)
    except (ValueError, OSError, KeyError) as e:
        if template is None:
            raise UvmError(f"cannot build the utility VM: {e}") from None
        # A template another hv version wrote, or a damaged one: made again, once.
        for stale in (template, template.with_suffix(".json")):
            stale.unlink(missing_ok=True)
        template = build_template(home, ram)
        vm = UtilityVm(root, open_registry, memory=ram, stdout=stdout, stderr=stderr,
                       template=template, cpus=cpus, stdin=stdin)
    try:
        status = vm.run(prog, argv, env, cwd)
        if stats is not None:
            stats.update(vm.counters())
        return status
    finally:
        vm.close()


__all__ = ["UtilityVm", "UvmError", "run_in_vm", "build_template", "template_path", "kernel_path",
           "DEFAULT_RAM"]


# -- hv container run --isolation vm ------------------------------------------------------------------
def run_vm_containers(store, containers, *, stats: bool = False,
                      stdin_fd: int | None = None) -> list[int]:
    """Each container's program in a utility VM of its own, one after the other; the
    containers' records, logs and layers are the same as a process container's."""
    from hv.container.container import EXIT_CANNOT_RUN, _image_env

    def prepare(c, image):
        r = c.record
        root = store.open_root(c, image)
        env = [f"{k}={v}" for k, v in _image_env(image).items()] + r["env"]
        return lambda stdout, stderr, counters: run_in_vm(
            root, lambda: store.open_registry(c, image), r["argv"][0], r["argv"], env,
            r["workdir"], memory=r["memory"], stdout=stdout, stderr=stderr, home=store.home,
            stats=counters, cpus=r["cpus"], stdin=stdin_fd if len(containers) == 1 else None)
    return run_each_in_a_vm(store, containers, prepare, UvmError, EXIT_CANNOT_RUN, stats=stats)


def run_each_in_a_vm(store, containers, prepare, vm_error: type[Exception], failed_status: int, *,
                     stats: bool = False) -> list[int]:
    """Each container's program in a VM of its own, one after the other, its record, logs
    and layers kept as a process container's. ``prepare(container, image)`` readies one run
    and returns ``run(stdout, stderr, counters) -> exit status``; a ``vm_error`` from it
    ends the container with ``failed_status`` and is said in one line."""
    from hv.container.container import ContainerError, _Tee
    statuses = []
    for c in containers:
        r = c.record
        image = store.image_of(c)                # a damaged record or a replaced image: said now
        run = prepare(c, image)
        out, err = _Tee(1, c.path / "stdout"), _Tee(2, c.path / "stderr")
        counters: dict = {}
        r.update(state="running", hv_pid=os.getpid(), started=time.time())
        c.save()
        try:
            status = run(out.write, err.write, counters)
        except vm_error as e:
            r.update(state="exited", status=failed_status)
            c.save()
            raise ContainerError(f"{c.name}: {e}") from None
        finally:
            out.close()
            err.close()
            if r["state"] == "running":
                r.update(state="exited", status=130, message="hv was interrupted")
                c.save()
        r.update(state="exited", status=status)
        c.save()
        if stats:
            print_stats(counters)
        if status in (126, 127) and counters.get("syscalls", 1) == 0:   # the kernel's loader
            why = "no such file" if status == 127 else "not a static i386 executable"
            raise ContainerError(f"{c.name}: cannot run {r['argv'][0]}: {why}", status)
        statuses.append(status)
    return statuses


def print_stats(counters: dict) -> None:
    import sys
    width = max((len(k) for k in counters), default=0)
    for k, v in counters.items():
        print(f"  {k.ljust(width)}  {v}", file=sys.stderr)
