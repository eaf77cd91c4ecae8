"""What every device model is: a register file behind one read/write pair.

A device does not know about buses or addresses. The board (``hv.machine``)
registers it on the port or MMIO bus at its default (or configured) location and
the bus calls ``read(offset, size)`` / ``write(offset, size, value)`` with
``offset`` relative to the registration's base plus its bias, so a device that
answers on scattered ports (the 8042 at 0x60 and 0x64) still sees offsets named
after its datasheet.

Interrupt lines and output sinks are injected objects, so a device is tested
with direct calls and a fake line (see ``tests/devices/harness.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from hv.memory import ROM_BASE, ROM_END

if TYPE_CHECKING:
    from hv.memory import GuestMemory


class IrqLine(Protocol):
    """One interrupt request wire from a device to an interrupt controller."""

    def set_level(self, level: bool) -> None: ...

    def pulse(self) -> None: ...


class NullIrq:
    """A wire to nowhere, for devices built without a controller."""

    level = False

    def set_level(self, level: bool) -> None:
        self.level = bool(level)

    def pulse(self) -> None:
        pass


class RecordingIrq:
    """A wire that remembers its level and counts rising edges (for tests)."""

    def __init__(self) -> None:
        self.level = False
        self.edges = 0

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level and not self.level:
            self.edges += 1
        self.level = level

    def pulse(self) -> None:
        self.set_level(True)
        self.set_level(False)


@dataclass(frozen=True)
class PortRange:
    """A run of I/O ports a device answers on; ``bias`` is added to the offset
    the device sees, so ranges split by another device keep datasheet offsets."""

    base: int
    length: int
    bias: int = 0


class Device:
    """Base class: a name, where it sits by default, and the register access pair.

    Subclasses set ``name``, ``ports`` (a tuple of PortRange) or ``mmio``
    (a tuple of (base, length)), optionally ``irq`` (the default ISA line), and
    implement ``read``/``write``. Unimplemented registers read as all ones and
    ignore writes, as an ISA bus does.
    """

    name = "device"
    ports: tuple[PortRange, ...] = ()
    mmio: tuple[tuple[int, int], ...] = ()
    irq: int | None = None

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        pass

    def reset(self) -> None:
        """Return every register to its power-on value."""


class ByteRegisterDevice(Device):
    """A device of 8-bit registers: a wider access is what the ISA bus makes of it,
    byte cycles at successive ports (low byte first). Subclasses implement
    ``_byte_read(offset)`` / ``_byte_write(offset, value)``."""

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(max(1, min(size, 4))):
            value |= self._byte_read(offset + i) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(max(1, min(size, 4))):
            self._byte_write(offset + i, value >> (8 * i) & 0xFF)

    def _byte_read(self, offset: int) -> int:
        return 0xFF

    def _byte_write(self, offset: int, value: int) -> None:
        pass


class SharedStateDevice(Device):
    """A device some of whose registers the C fast path may serve (``bind_fast``).

    C then moves part of the device's state on its own (a data cursor, a read
    flip-flop), so before the Python model acts on any access it takes that state
    back (``_pull``), and afterwards hands the new state to C (``_push``).
    Subclasses implement ``_read``/``_write``; unbound, the wrappers cost nothing.
    """

    _bound = False

    def read(self, offset: int, size: int) -> int:
        if not self._bound:
            return self._read(offset, size)
        self._pull()
        value = self._read(offset, size)
        self._push()
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if not self._bound:
            self._write(offset, size, value)
            return
        self._pull()
        self._write(offset, size, value)
        self._push()

    def _read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def _write(self, offset: int, size: int, value: int) -> None:
        pass

    def _pull(self) -> None:
        """Take back the state C changed."""

    def _push(self) -> None:
        """Hand C the state it may act on."""


Sink = Callable[[bytes], None]


def write_ram(mem: "GuestMemory", addr: int, data: bytes) -> None:
    """Store ``data`` at guest address ``addr`` the way a bus master (the 8237, a
    firmware service) does on the PC: bytes aimed at the ROM window 0xC0000-0xFFFFF are
    dropped, since a ROM does not change when written (the vCPU drops the CPU's own
    writes there too), so nothing a guest does can alter the firmware a reset reruns.
    The whole range must lie in guest memory (GuestMemoryError otherwise), as for
    ``GuestMemory.write``."""
    end = addr + len(data)
    mem.check(addr, len(data))
    if end <= ROM_BASE or addr >= ROM_END:
        mem.write(addr, data)
        return
    if addr < ROM_BASE:
        mem.write(addr, data[:ROM_BASE - addr])
    if end > ROM_END:
        mem.write(ROM_END, data[ROM_END - addr:])
