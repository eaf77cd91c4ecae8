"""Guest physical memory: one host buffer, shared with the engine without copies.

The PC map (first megabyte):
  0x00000-0x9FFFF  conventional RAM
  0xA0000-0xBFFFF  video memory; behaves as RAM (programs keep data past the screen)
  0xC0000-0xFFFFF  ROM (option ROMs, BIOS at 0xF0000); guest writes are ignored
  0x100000-...     extended RAM, up to the configured size

The whole range 0..max(size, 1 MiB) is one ``mmap`` buffer handed to Unicorn with
``mem_map_ptr``, so device models read and write guest memory through ``view``
and the guest sees it at once. Unicorn does not invalidate translated code on
host writes (docs/unicorn.md §5), so every host write goes through ``write`` (or calls
``invalidate``) which drops translations of the touched range.

Every address and length a guest hands a device is hostile: ``check`` refuses a
range that is not entirely inside the buffer, and device models turn that into
their own error (an ATA ABRT, a NEEDS_RESET), never a host exception.
"""
from __future__ import annotations

import mmap
import re
from typing import Callable

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

CONVENTIONAL_END = 0xA0000
VIDEO_BASE, VIDEO_END = 0xA0000, 0xC0000
ROM_BASE, ROM_END = 0xC0000, 0x100000
BIOS_BASE = 0xF0000
HIGH_BASE = 0x100000

MIN_SIZE = 64 * KiB
MAX_SIZE = 3 * GiB  # stays below the 32-bit MMIO hole


class GuestMemoryError(ValueError):
    """A guest-supplied address or length that falls outside guest RAM."""


def parse_bytes(text: str, what: str = "size") -> int:
    """'1440K', '64M', '1G' or a byte count -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGTP]?)(i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"bad {what} {text!r} (use e.g. 640K, 16M, 1G)")
    return int(m.group(1)) * {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": GiB << 10,
                              "P": GiB << 20}[m.group(2).upper()]


def parse_size(text: str) -> int:
    """Guest RAM: '640K', '16M', '256M', '1G' or a byte count -> bytes."""
    n = parse_bytes(text, "memory size")
    if n > MAX_SIZE:
        raise ValueError(f"memory size {text!r} is too large (at most 3G: "
                         "the 32-bit address space above it holds devices)")
    if n < MIN_SIZE:
        raise ValueError(f"memory size {text!r} is too small (at least 64K)")
    if n % (4 * KiB):
        raise ValueError(f"memory size {text!r} must be a multiple of 4K")
    return n


class GuestMemory:
    def __init__(self, size: int, backing: tuple[str, int] | None = None) -> None:
        """``backing``: (file, offset) of a RAM image to map copy-on-write (a snapshot):
        pages are read from the file on first touch and copied only when written, so
        many machines restored from one snapshot share its untouched pages."""
        self.size = size                              # RAM the guest is told about
        self.span = max(size, HIGH_BASE)              # bytes backed by the buffer
        if backing is None:
            self.buffer = mmap.mmap(-1, self.span)
        else:
            path, offset = backing
            with open(path, "rb") as f:
                self.buffer = mmap.mmap(f.fileno(), self.span, flags=mmap.MAP_PRIVATE,
                                        prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        self.view = memoryview(self.buffer)
        # Restored from a snapshot: the ROM area already holds the machine's ROM as saved,
        # with what the firmware wrote there at power-on (its tables).
        self.restored = backing is not None
        # Set by the vCPU: drop translated code for [lo, hi).
        self.invalidate: Callable[[int, int], None] = lambda lo, hi: None
        # Called with (addr, length) after each host write while a debugger watches memory.
        self.write_observers: list[Callable[[int, int], None]] = []

    def check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.span:
            raise GuestMemoryError(f"guest range {addr:#x}+{length:#x} outside guest memory")

    def read(self, addr: int, length: int) -> bytes:
        self.check(addr, length)
        return bytes(self.view[addr:addr + length])

    def write(self, addr: int, data: bytes) -> None:
        """Host (device) write into guest memory; drops stale translations."""
        self.check(addr, len(data))
        self.view[addr:addr + len(data)] = data
        self.invalidate(addr, addr + len(data))
        for observe in self.write_observers:
            observe(addr, len(data))

    def load_rom(self, addr: int, image: bytes) -> None:
        """Place a ROM image (guest writes to ROM are ignored by the vCPU). Memory restored
        from a snapshot keeps the ROM it was saved with: placing the pristine image again
        would undo the tables the firmware wrote into it at power-on, and copy 64 KiB of
        the shared file mapping into every clone."""
        if addr < ROM_BASE or addr + len(image) > ROM_END:
            raise GuestMemoryError(f"ROM at {addr:#x}+{len(image):#x} outside 0xC0000-0xFFFFF")
        if not self.restored and self.view[addr:addr + len(image)] != image:
            self.write(addr, image)

    def u8(self, addr: int) -> int:
        self.check(addr, 1)
        return self.view[addr]

    def u16(self, addr: int) -> int:
        self.check(addr, 2)
        return int.from_bytes(self.view[addr:addr + 2], "little")

    def u32(self, addr: int) -> int:
        self.check(addr, 4)
        return int.from_bytes(self.view[addr:addr + 4], "little")

    def u64(self, addr: int) -> int:
        self.check(addr, 8)
        return int.from_bytes(self.view[addr:addr + 8], "little")

    def put8(self, addr: int, v: int) -> None:
        self.write(addr, bytes([v & 0xFF]))

    def put16(self, addr: int, v: int) -> None:
        self.write(addr, (v & 0xFFFF).to_bytes(2, "little"))

    def put32(self, addr: int, v: int) -> None:
        self.write(addr, (v & 0xFFFFFFFF).to_bytes(4, "little"))

    def close(self) -> None:
        self.view.release()
        self.buffer.close()
