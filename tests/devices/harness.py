"""A tiny qtest-style harness: a port bus with the devices under test, outb/inb
and friends, a clock that only moves when told, and recorded IRQ lines."""
from __future__ import annotations

import signal
import time
from contextlib import contextmanager

from hv.devices.base import Device, RecordingIrq
from hv.memory import GuestMemory
from hv.virtio.queue import ram_ranges
from hv.bus import PortBus
from hv.clock import Clock


class ManualClock(Clock):
    """A virtual clock that stands still until ``step`` moves it."""

    def __init__(self) -> None:
        self._t = 0
        super().__init__(source=lambda: self._t)

    def step(self, ns: int) -> int:
        self._t += ns
        return self.run_due()


class CrawlingClock(ManualClock):
    """Each read of the time is ``crawl`` ns after the previous one: a host thread
    preempted between two reads inside one register access (a loaded host)."""

    def __init__(self, crawl: int) -> None:
        super().__init__()
        self._source = self._crawl
        self.crawl = crawl

    def _crawl(self) -> int:
        self._t += self.crawl
        return self._t


class Harness:
    def __init__(self, *devices: Device) -> None:
        self.bus = PortBus()
        for dev in devices:
            for r in dev.ports:
                self.bus.register(r.base, r.length, dev, r.bias)

    def outb(self, port: int, value: int) -> None:
        self.bus.write(port, 1, value)

    def outw(self, port: int, value: int) -> None:
        self.bus.write(port, 2, value)

    def inb(self, port: int) -> int:
        return self.bus.read(port, 1)

    def inw(self, port: int) -> int:
        return self.bus.read(port, 2)


class DeviceHang(AssertionError):
    """A device call did not return within its time limit (a loop that never ends)."""


@contextmanager
def time_limit(seconds: float):
    """Fail with DeviceHang if the body runs longer than ``seconds``.

    For property tests: pytest-timeout's one alarm per test cannot stop Hypothesis from
    replaying a hanging example while it shrinks, so each example gets its own alarm.
    The per-test alarm pytest-timeout set (if any) is re-armed afterwards."""
    def on_alarm(signum, frame):
        raise DeviceHang(f"a device call did not return within {seconds:g} s")
    outer_handler = signal.signal(signal.SIGALRM, on_alarm)
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - start), 0.001))


class CHarness(Harness):
    """A Harness whose port accesses go through the C dispatch (``hv_port_in`` and
    ``hv_port_out``, the functions the engine calls for IN and OUT) with the devices
    bound to it: what C serves on its own (a data window, a shadow register) never
    reaches the model, the rest calls back into Python as under a running guest.
    No engine: the C functions are called directly. ``close()`` when done."""

    def __init__(self, *devices: Device) -> None:
        from types import SimpleNamespace
        from hv import fastpath
        super().__init__(*devices)
        self.fast = fastpath.CFastpath(None)
        machine = SimpleNamespace(devices=list(devices), ports=self.bus)
        self.fast.set_devices(SimpleNamespace(machine=machine, _after_io=lambda: None))
        port_of = {}
        for dev in devices:
            port_of[id(dev)] = {r.bias + i: r.base + i for r in dev.ports for i in range(r.length)}
            dev.bind_fast(self.fast, port_of[id(dev)].__getitem__)
        self._lib, self._null = self.fast._lib, self.fast._ffi.NULL
        self.bus = _CBus(self)

    def model_accesses(self, dev: Device) -> list[int]:
        """From now on, the offset of every access to ``dev`` that C passed on to the
        model (``dev._read``/``_write``), in order."""
        seen: list[int] = []
        real_read, real_write = dev._read, dev._write
        dev._read = lambda off, size: seen.append(off) or real_read(off, size)
        dev._write = lambda off, size, value: seen.append(off) or real_write(off, size, value)
        return seen

    def close(self) -> None:
        self.fast.close()


class _CBus:
    """``read``/``write`` as PortBus has them, through the C dispatch."""

    def __init__(self, h: CHarness) -> None:
        self._h = h

    def read(self, port: int, size: int) -> int:
        h = self._h
        return h._lib.hv_port_in(h._null, port, size, h.fast.ctl)

    def write(self, port: int, size: int, value: int) -> None:
        h = self._h
        h._lib.hv_port_out(h._null, port, size, value, h.fast.ctl)


def port_access(h: Harness, port: int, size: int, write: bool, value: int, out: list) -> None:
    """One access of a random guest program: a write of ``value`` cut to ``size`` bytes,
    or a read whose value goes to ``out`` (for comparing two dispatchers)."""
    if write:
        h.bus.write(port, size, value & ((1 << 8 * size) - 1))
    else:
        out.append(h.bus.read(port, size))


def port_burst(h: Harness, port: int, n: int, size: int, write: bool, out: list) -> None:
    """``n`` accesses of a data port (``rep insw``/``outsw``): reads go to ``out``,
    writes send a fixed pseudo-random sequence."""
    for i in range(n):
        port_access(h, port, size, write, i * 0x9E3779B1, out)


__all__ = ["CHarness", "DeviceHang", "Harness", "ManualClock", "RecordingIrq", "port_access",
           "port_burst", "time_limit"]


class GuardedMemory(GuestMemory):
    """Guest memory that records every host write falling outside guest RAM (in ``bad``)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.bad: list[tuple[int, int]] = []

    def write(self, addr, data):
        if len(data) and not any(lo <= addr and addr + len(data) <= hi for lo, hi in ram_ranges(self)):
            self.bad.append((addr, len(data)))
        super().write(addr, data)
