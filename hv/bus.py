"""Port-I/O and MMIO buses: who answers at which address.

Registration refuses overlaps (a board bug, reported when the machine is built);
an access that reaches no device reads as all ones, is ignored on write and is
counted as ``unassigned``. Port lookup is one dict lookup, never a scan.
"""
from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from hv import exits

if TYPE_CHECKING:
    from hv.devices.base import Device


class BusConflict(ValueError):
    pass


def _ones(size: int) -> int:
    return (1 << (8 * size)) - 1


class PortBus:
    """The 64 KiB x86 I/O space."""

    SIZE = 0x10000

    def __init__(self, stats: exits.ExitStats | None = None) -> None:
        self.stats = stats or exits.ExitStats()
        # port -> (device, offset the device sees). A dict of the assigned ports, not a
        # 64 Ki-entry list: that was 512 KiB per machine, the most of a restored clone.
        self._slot: dict[int, tuple["Device", int]] = {}

    def register(self, base: int, length: int, device: "Device", bias: int = 0) -> None:
        if base < 0 or length <= 0 or base + length > self.SIZE:
            raise BusConflict(f"{device.name}: ports {base:#x}+{length} outside the I/O space")
        for port in range(base, base + length):
            if port in self._slot:
                other = self._slot[port][0].name
                raise BusConflict(f"{device.name}: port {port:#x} already belongs to {other}")
        for port in range(base, base + length):
            self._slot[port] = (device, port - base + bias)

    def assigned(self) -> list[tuple[int, "Device", int]]:
        """(port, device, offset) for every port some device answers."""
        return [(port, *slot) for port, slot in sorted(self._slot.items())]

    def device_at(self, port: int) -> "Device | None":
        slot = self._slot.get(port & 0xFFFF)
        return slot[0] if slot else None

    def offset_at(self, port: int) -> int:
        slot = self._slot.get(port & 0xFFFF)
        return slot[1] if slot else 0

    def host_read(self, port: int, size: int) -> int:
        """A register read by host code (a synthetic BIOS service): not an exit."""
        slot = self._slot.get(port & 0xFFFF)
        if slot is None:
            return _ones(size)
        dev, off = slot
        return dev.read(off, size) & _ones(size)

    def host_write(self, port: int, size: int, value: int) -> None:
        """A register write by host code: not an exit."""
        slot = self._slot.get(port & 0xFFFF)
        if slot is not None:
            dev, off = slot
            dev.write(off, size, value & _ones(size))

    def read(self, port: int, size: int) -> int:
        slot = self._slot.get(port & 0xFFFF)
        if slot is None:
            self.stats.count(exits.UNASSIGNED, f"port {port:#x}")
            return _ones(size)
        dev, off = slot
        self.stats.count(exits.PIO, dev.name)
        return dev.read(off, size) & _ones(size)

    def write(self, port: int, size: int, value: int) -> None:
        slot = self._slot.get(port & 0xFFFF)
        if slot is None:
            self.stats.count(exits.UNASSIGNED, f"port {port:#x}")
            return
        dev, off = slot
        self.stats.count(exits.PIO, dev.name)
        dev.write(off, size, value & _ones(size))


class MmioBus:
    """Physical-address windows answered by devices instead of RAM."""

    def __init__(self, stats: exits.ExitStats | None = None) -> None:
        self.stats = stats or exits.ExitStats()
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int, "Device"]] = []

    def register(self, base: int, length: int, device: "Device") -> None:
        if length <= 0:
            raise BusConflict(f"{device.name}: empty MMIO window")
        for b, ln, d in self._ranges:
            if base < b + ln and b < base + length:
                raise BusConflict(
                    f"{device.name}: MMIO {base:#x}+{length:#x} overlaps {d.name} at {b:#x}+{ln:#x}")
        i = bisect.bisect(self._starts, base)
        self._starts.insert(i, base)
        self._ranges.insert(i, (base, length, device))

    def ranges(self) -> list[tuple[int, int, "Device"]]:
        return list(self._ranges)

    def find(self, addr: int) -> tuple[int, int, "Device"] | None:
        i = bisect.bisect(self._starts, addr) - 1
        if i >= 0:
            b, ln, d = self._ranges[i]
            if addr < b + ln:
                return b, ln, d
        return None

    def read(self, addr: int, size: int) -> int:
        hit = self.find(addr)
        if hit is None:
            self.stats.count(exits.UNASSIGNED, "mmio")
            return _ones(size)
        b, _, dev = hit
        self.stats.count(exits.MMIO, dev.name)
        return dev.read(addr - b, size) & _ones(size)

    def write(self, addr: int, size: int, value: int) -> None:
        hit = self.find(addr)
        if hit is None:
            self.stats.count(exits.UNASSIGNED, "mmio")
            return
        b, _, dev = hit
        self.stats.count(exits.MMIO, dev.name)
        dev.write(addr - b, size, value & _ones(size))

    # The C dispatch counts its exits itself.
    def read_uncounted(self, addr: int, size: int) -> int:
        hit = self.find(addr)
        if hit is None:
            return _ones(size)
        b, _, dev = hit
        return dev.read(addr - b, size) & _ones(size)

    def write_uncounted(self, addr: int, size: int, value: int) -> None:
        hit = self.find(addr)
        if hit is not None:
            b, _, dev = hit
            dev.write(addr - b, size, value & _ones(size))
