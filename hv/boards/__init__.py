"""Boards: which devices a machine has and where, as data.

A board is a list of slots. Each slot names the machine attribute its device is kept in
and builds it from the machine (its configuration, clock, memory and the devices built
before it), or returns None when the configuration leaves the slot empty (no disk, no
network). Adding a device to a board is one slot line; adding a board is one file here
and one line in ``BOARDS``.

* ``pc`` (``hv/boards/pc.py``): today's PC: 8259 pair, local APIC and I/O APIC, PIT,
  16550A, CMOS/RTC, 8042, VGA, IDE, floppy with DMA, NE2000, and the virtio-mmio slots;
  the emulated or synthetic BIOS, or direct boot.
* ``microvm`` (``hv/boards/microvm.py``): what Firecracker's and QEMU's microVM keep: one
  vCPU, RAM, a 16550A, the local APIC and an I/O APIC, and virtio-mmio slots; direct boot
  only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from hv.machine import Machine


@dataclass(frozen=True)
class Slot:
    """One device of a board: the machine attribute that holds it, and its builder."""
    name: str
    build: Callable[["Machine"], object]


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    slots: tuple[Slot, ...]
    bios: bool                     # boots firmware from disks (else direct boot only)


def board_named(name: str) -> Board:
    from hv.boards import microvm, pc
    boards = {b.name: b for b in (pc.BOARD, microvm.BOARD)}
    if name not in boards:
        raise ValueError(f"unknown board {name!r} ({' or '.join(boards)})")
    return boards[name]


BOARD_NAMES = ("pc", "microvm")
