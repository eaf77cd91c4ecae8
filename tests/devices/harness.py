"""A tiny qtest-style harness: a port bus with the devices under test, outb/inb
and friends, a clock that only moves when told, and recorded IRQ lines."""
from __future__ import annotations

from hv.devices.base import Device, RecordingIrq
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


__all__ = ["Harness", "ManualClock", "RecordingIrq"]
