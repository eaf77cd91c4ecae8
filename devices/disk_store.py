"""The host side of every disk: raw image files and their geometry.

One store serves every front end (today the host disk port and the synthetic
BIOS; later the IDE, floppy and virtio-blk controllers), so geometry rules and
bounds checks live in one place.

Floppies take their geometry from the image size (160K .. 2.88M); an image
smaller than 1.44 MB that is not a standard size is a 1.44 MB disk whose
missing tail reads as zeros. Hard disks report LBA capacity and a CHS geometry
of 16 heads x 63 sectors (what QEMU guesses for a disk with no partition
table), rounded up to whole cylinders; sectors past the end of the file read as
zeros, and writing one extends the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512

# bytes -> (cylinders, heads, sectors per track, CMOS drive type)
FLOPPY_FORMATS = {
    163840: (40, 1, 8, 1),     # 160K, reported as a 360K drive
    184320: (40, 1, 9, 1),     # 180K
    327680: (40, 2, 8, 1),     # 320K
    368640: (40, 2, 9, 1),     # 360K
    737280: (80, 2, 9, 3),     # 720K
    1228800: (80, 2, 15, 2),   # 1.2M
    1474560: (80, 2, 18, 4),   # 1.44M
    2949120: (80, 2, 36, 5),   # 2.88M
}
FLOPPY_144 = 1474560
FLOPPY_MAX = 2949120
HD_HEADS, HD_SPT = 16, 63


class DiskError(Exception):
    """A guest request the disk refuses; ``code`` is the host-disk status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# Status codes shared by the host disk port and the synthetic BIOS.
OK, NO_DRIVE, OUT_OF_RANGE, WRITE_PROTECTED, BAD_BUFFER, BAD_COMMAND = range(6)


class ImageError(ValueError):
    """Bad user input: the image cannot be used. The message is one line."""


@dataclass(frozen=True)
class Geometry:
    cylinders: int
    heads: int
    sectors: int          # per track

    @property
    def total(self) -> int:
        return self.cylinders * self.heads * self.sectors


def check_image(path: str | os.PathLike, writable: bool) -> int:
    """Validate a user-supplied image before anything touches it; return its size."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such image")
    if not p.is_file():
        raise ImageError(f"{p}: not a regular file")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror})") from None
    if size == 0:
        raise ImageError(f"{p}: image is empty")
    if size % SECTOR:
        raise ImageError(f"{p}: size {size} is not a multiple of 512 bytes")
    if writable and not os.access(p, os.W_OK):
        raise ImageError(f"{p}: image is read-only (attach it with ,ro)")
    return size


class Disk:
    """A raw image attached as a floppy ('floppy') or a hard disk ('hd')."""

    def __init__(self, path: str | os.PathLike, kind: str, readonly: bool = False,
                 snapshot: bool = False) -> None:
        if kind not in ("floppy", "hd"):
            raise ValueError(kind)
        self.path = Path(path)
        self.kind = kind
        self.readonly = readonly
        self.snapshot = snapshot
        size = check_image(path, writable=not (readonly or snapshot))
        if kind == "floppy" and size > FLOPPY_MAX:
            raise ImageError(f"{self.path}: {size} bytes is larger than a 2.88 MB floppy")
        self.file_size = size
        self._overlay: dict[int, bytes] = {}     # --snapshot: writes stay in memory
        mode = "rb" if (readonly or snapshot) else "r+b"
        self._f = open(self.path, mode)
        if kind == "floppy":
            fmt = FLOPPY_FORMATS.get(size, FLOPPY_FORMATS[FLOPPY_144] if size < FLOPPY_144 else None)
            if fmt is None:
                raise ImageError(f"{self.path}: {size} bytes is not a floppy size (160K..2.88M)")
            c, h, s, self.cmos_type = fmt
            self.geometry = Geometry(c, h, s)
        else:
            self.cmos_type = 0
            sectors = size // SECTOR
            cyls = max(1, -(-sectors // (HD_HEADS * HD_SPT)))
            self.geometry = Geometry(min(cyls, 16383), HD_HEADS, HD_SPT)
        self.sectors = self.geometry.total if kind == "floppy" else max(
            size // SECTOR, self.geometry.total)

    def chs_to_lba(self, c: int, h: int, s: int) -> int:
        g = self.geometry
        if not (c < g.cylinders and h < g.heads and 1 <= s <= g.sectors):
            raise DiskError(OUT_OF_RANGE, f"CHS {c}/{h}/{s} outside {g}")
        return (c * g.heads + h) * g.sectors + s - 1

    def _check(self, lba: int, count: int) -> None:
        if lba < 0 or count < 0 or lba + count > self.sectors:
            raise DiskError(OUT_OF_RANGE, f"sectors {lba}+{count} beyond {self.sectors}")

    def read(self, lba: int, count: int) -> bytes:
        self._check(lba, count)
        out = bytearray()
        for i in range(lba, lba + count):
            if i in self._overlay:
                out += self._overlay[i]
                continue
            self._f.seek(i * SECTOR)
            data = self._f.read(SECTOR)
            out += data + bytes(SECTOR - len(data))   # past the file: zeros
        return bytes(out)

    def write(self, lba: int, data: bytes) -> None:
        if len(data) % SECTOR:
            raise DiskError(BAD_COMMAND, "partial sector write")
        count = len(data) // SECTOR
        self._check(lba, count)
        if self.readonly:
            raise DiskError(WRITE_PROTECTED, f"{self.path} is read-only")
        if self.snapshot:
            for i in range(count):
                self._overlay[lba + i] = bytes(data[i * SECTOR:(i + 1) * SECTOR])
            return
        self._f.seek(lba * SECTOR)
        self._f.write(data)

    def flush(self) -> None:
        if not (self.readonly or self.snapshot):
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()


class DiskStore:
    """The drives of one machine, by BIOS drive number (0x00, 0x01, 0x80, 0x81)."""

    def __init__(self) -> None:
        self.drives: dict[int, Disk] = {}

    def attach(self, number: int, disk: Disk) -> None:
        if number in self.drives:
            raise ValueError(f"drive {number:#x} already attached")
        self.drives[number] = disk

    def get(self, number: int) -> Disk:
        try:
            return self.drives[number]
        except KeyError:
            raise DiskError(NO_DRIVE, f"no drive {number:#x}") from None

    def floppies(self) -> list[Disk]:
        return [d for n, d in sorted(self.drives.items()) if n < 0x80]

    def hard_disks(self) -> list[Disk]:
        return [d for n, d in sorted(self.drives.items()) if n >= 0x80]

    def close(self) -> None:
        for d in self.drives.values():
            d.close()
