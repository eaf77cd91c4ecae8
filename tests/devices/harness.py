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


__all__ = ["DeviceHang", "Harness", "ManualClock", "RecordingIrq", "time_limit"]


class GuardedMemory(GuestMemory):
    """Guest memory that records every host write falling outside guest RAM (in ``bad``)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.bad: list[tuple[int, int]] = []

    def write(self, addr, data):
        if len(data) and not any(lo <= addr and addr + len(data) <= hi for lo, hi in ram_ranges(self)):
            self.bad.append((addr, len(data)))
        super().write(addr, data)
