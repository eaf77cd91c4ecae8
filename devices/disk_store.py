"""The host side of every disk: raw images, differencing overlays, snapshots.

One store serves every front end (the host disk port, the synthetic BIOS, later
the IDE, floppy and virtio-blk controllers), so geometry rules, bounds checks and
durability live in one place.

Geometry
--------
Floppies take their geometry from the image size (160K .. 2.88M); an image
smaller than 1.44 MB that is not a standard size is a 1.44 MB disk whose
missing tail reads as zeros. Hard disks report the file's sectors as their LBA
capacity and a CHS geometry of 16 heads x 63 sectors x (sectors // 1008, at
least 2) cylinders -- what QEMU guesses for a disk with no partition table, so
both emulators give a guest the same numbers; on a tiny image the CHS range
runs past the end and those sectors are out of range. For an overlay, "the
file" is the overlay's virtual size (the base's size when the overlay was made).

Back ends
---------
* raw: the image file itself; a read or write of N sectors is one
  ``os.pread``/``os.pwrite``.
* overlay (``HVOVL1``, below): reads come from the overlay where a sector is
  allocated and from the base elsewhere; writes go to the overlay only. The base
  is opened read-only and never modified (except by ``hv disk commit``).
* snapshot (``Disk(..., snapshot=True)``): an anonymous overlay over the
  image (raw or overlay, opened read-only): data in an unlinked temporary file
  under ``$TMPDIR``, table in memory (4 bytes per sector, whatever the guest
  writes), all gone when the disk is closed or the process exits.

Durability: ``flush()`` makes every completed write durable with ``os.fsync``.
Overlays fsync the data first, then write the changed part of the allocation
table and fsync again, so the table never points at data that is not on disk.
Until the guest flushes, newly allocated overlay sectors live only in the
in-memory table (a volatile write cache, as on real disks); ``close()`` flushes.

Overlay file format (all integers little-endian)
------------------------------------------------
======  ====  ===============================================================
offset  size  field
======  ====  ===============================================================
0       8     magic ``b"HVOVL1\\0\\0"``
8       4     CRC-32 of the whole header (``header size`` bytes) with this field 0
12      4     format version (1)
16      4     header size in bytes: a multiple of 512 (table offset)
20      4     flags: bit 0 = a commit was interrupted (base partly updated)
24      8     virtual size in bytes (the base's size at creation)
32      8     table entries (addressable sectors, see ``addressable_sectors``)
40      8     data offset (header size + table rounded up to 512)
48      8     base fingerprint: file size in bytes
56      8     base fingerprint: st_mtime_ns
64      32    base fingerprint: SHA-256 of the first MiB + the last MiB
96      2     base path length in bytes
98      n     base path (file-system encoding); relative paths are relative to
              the overlay's directory
======  ====  ===============================================================

The table is one little-endian u32 per virtual sector: 0 = not allocated, k =
the data is at ``data offset + (k - 1) * 512``. Slots are handed out in order
and never freed (``commit`` empties the whole overlay), so a sequential write
lands in consecutive slots and reads back with one ``pread``.

The fingerprint is size + mtime_ns + a hash of the first and last MiB rather
than a full SHA-256: attaching costs the same for a 1.44 MB floppy and a
multi-GiB disk, and any write through the file system changes mtime_ns, while
the sampled hash catches a copy or restore that kept the old timestamp but
changed the boot sector or the end of the disk. The price: copying the base
without preserving timestamps (``cp`` without ``-p``) invalidates the overlay.

Every bad input is an ``ImageError`` with a one-line message, raised before
anything is opened for writing; a guest request the disk refuses is a
``DiskError`` with a status code.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import operator
import os
import struct
import sys
import tempfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512
MIB = 1 << 20

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
HD_MAX_CYLINDERS = 16383


class DiskError(Exception):
    """A guest request the disk refuses; ``code`` is the host-disk status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# Status codes shared by the host disk port and the synthetic BIOS.
# IO_ERROR: the host file failed (EIO, ENOSPC); the guest sees a failed transfer.
OK, NO_DRIVE, OUT_OF_RANGE, WRITE_PROTECTED, BAD_BUFFER, BAD_COMMAND, IO_ERROR = range(7)


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


def floppy_geometry(size: int) -> tuple[Geometry, int] | None:
    """(geometry, CMOS type) of a floppy image of ``size`` bytes, or None."""
    fmt = FLOPPY_FORMATS.get(size, FLOPPY_FORMATS[FLOPPY_144] if size < FLOPPY_144 else None)
    if fmt is None:
        return None
    c, h, s, cmos = fmt
    return Geometry(c, h, s), cmos


def hd_geometry(size: int) -> tuple[Geometry, int]:
    """(CHS geometry, addressable sectors) of a hard disk image of ``size`` bytes.

    As QEMU guesses for a disk without a partition table: 16 heads, 63 sectors
    per track, cylinders = sectors // 1008 clamped to 2..16383. The LBA capacity
    is the file's own sector count, so on a tiny image the last CHS cylinders lie
    past the end and read as errors, as on QEMU."""
    sectors = -(-size // SECTOR)
    cyls = min(max(sectors // (HD_HEADS * HD_SPT), 2), HD_MAX_CYLINDERS)
    return Geometry(cyls, HD_HEADS, HD_SPT), sectors


def addressable_sectors(size: int) -> int:
    """Sectors a Disk of either kind may address on an image of ``size`` bytes:
    an overlay's table covers all of them, so the guest can write the zero tail."""
    n = hd_geometry(size)[1]
    fg = floppy_geometry(size) if size <= FLOPPY_MAX else None
    return max(n, fg[0].total) if fg else n


# ---------------------------------------------------------------- overlay header

OVL_MAGIC = b"HVOVL1\0\0"
OVL_VERSION = 1
FLAG_COMMITTING = 1             # set while `commit` copies into the base
_HDR = struct.Struct("<8sIIIIQQQQq32sH")
_CRC_OFFSET = 8
MAX_PATH_BYTES = 4096
MAX_HEADER = 16 * SECTOR        # fixed part + the longest path, rounded up
MAX_VIRTUAL = (1 << 32) * SECTOR - MIB   # u32 slots; 2 TiB is far past any guest here
MAX_CHAIN = 8                   # overlays of overlays; also stops crafted loops


def _round_up(n: int, a: int = SECTOR) -> int:
    return -(-n // a) * a


@dataclass
class OverlayHeader:
    header_size: int
    flags: int
    virtual_size: int
    entries: int
    data_offset: int
    base_size: int
    base_mtime_ns: int
    base_sample: bytes
    base_path: str              # as stored

    @property
    def table_offset(self) -> int:
        return self.header_size

    def base_location(self, overlay: str | os.PathLike) -> Path:
        b = Path(self.base_path)
        return b if b.is_absolute() else Path(overlay).parent / b

    def pack(self) -> bytes:
        raw = os.fsencode(self.base_path)
        body = _HDR.pack(OVL_MAGIC, 0, OVL_VERSION, self.header_size, self.flags,
                         self.virtual_size, self.entries, self.data_offset, self.base_size,
                         self.base_mtime_ns, self.base_sample, len(raw)) + raw
        body += bytes(self.header_size - len(body))
        crc = zlib.crc32(body)
        return body[:_CRC_OFFSET] + struct.pack("<I", crc) + body[_CRC_OFFSET + 4:]

    @classmethod
    def new(cls, base_path: str, virtual_size: int,
            fingerprint: tuple[int, int, bytes]) -> "OverlayHeader":
        raw = os.fsencode(base_path)
        hsize = _round_up(_HDR.size + len(raw))
        entries = addressable_sectors(virtual_size)
        data = hsize + _round_up(entries * 4)
        return cls(hsize, 0, virtual_size, entries, data, *fingerprint, base_path)


def _corrupt(p, why: str) -> ImageError:
    return ImageError(f"{p}: corrupt overlay header ({why})")


def _looks_like_overlay(head: bytes) -> bool:
    """The magic, or the magic with a damaged byte or two: a raw disk image does
    not start with 'HVOVL1', so a near miss is a corrupt overlay, not a raw disk."""
    return len(head) == len(OVL_MAGIC) and sum(a == b for a, b in zip(head, OVL_MAGIC)) >= 6


def is_overlay(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as f:
            return _looks_like_overlay(f.read(len(OVL_MAGIC)))
    except OSError:
        return False


def read_header(path: str | os.PathLike, fd: int | None = None) -> OverlayHeader:
    """Parse and validate an overlay header (not the base): ImageError if corrupt."""
    p = Path(path)
    try:
        own = fd is None
        if own:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            fixed = os.pread(fd, _HDR.size, 0)
            file_size = os.fstat(fd).st_size
            if len(fixed) < _HDR.size:
                raise _corrupt(p, "truncated")
            (magic, crc, version, hsize, flags, vsize, entries, data, bsize, bmtime, sample,
             plen) = _HDR.unpack(fixed)
            if magic != OVL_MAGIC:
                raise _corrupt(p, "bad magic")
            if not (SECTOR <= hsize <= MAX_HEADER and hsize % SECTOR == 0):
                raise _corrupt(p, f"header size {hsize}")
            whole = os.pread(fd, hsize, 0)
        finally:
            if own:
                os.close(fd)
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror})") from None
    if len(whole) < hsize:
        raise _corrupt(p, "truncated")
    if zlib.crc32(whole[:_CRC_OFFSET] + bytes(4) + whole[_CRC_OFFSET + 4:]) != crc:
        raise _corrupt(p, "checksum mismatch")
    if version != OVL_VERSION:
        raise ImageError(f"{p}: overlay format version {version} is not supported")
    if not (0 < vsize <= MAX_VIRTUAL and vsize % SECTOR == 0):
        raise _corrupt(p, f"virtual size {vsize}")
    if entries != addressable_sectors(vsize):
        raise _corrupt(p, f"table of {entries} entries for {vsize} bytes")
    if data != hsize + _round_up(entries * 4):
        raise _corrupt(p, "data offset")
    if not (0 < plen <= MAX_PATH_BYTES and _HDR.size + plen <= hsize):
        raise _corrupt(p, "base path length")
    raw = whole[_HDR.size:_HDR.size + plen]
    if b"\0" in raw:
        raise _corrupt(p, "base path")
    if file_size < data:
        raise _corrupt(p, "file shorter than its table")
    if flags & ~FLAG_COMMITTING:
        raise _corrupt(p, f"unknown flags {flags:#x}")
    return OverlayHeader(hsize, flags, vsize, entries, data, bsize, bmtime, sample,
                         os.fsdecode(raw))


def fingerprint(path: str | os.PathLike) -> tuple[int, int, bytes]:
    """(size, mtime_ns, SHA-256 of the first and last MiB) of a base image."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        h = hashlib.sha256(os.pread(f.fileno(), MIB, 0))
        if st.st_size > MIB:
            h.update(os.pread(f.fileno(), MIB, max(MIB, st.st_size - MIB)))
    return st.st_size, st.st_mtime_ns, h.digest()


def check_base(path: str | os.PathLike, hdr: OverlayHeader) -> Path:
    """The overlay's base path if it is there and unchanged; ImageError otherwise."""
    base = hdr.base_location(path)
    if hdr.flags & FLAG_COMMITTING:
        raise ImageError(f"{path}: a commit into {base} was interrupted; "
                         f"run 'hv disk commit {path}' again")
    if not base.exists():
        raise ImageError(f"{path}: base image {base} is missing")
    try:
        fp = fingerprint(base)
    except OSError as e:
        raise ImageError(f"{path}: cannot read base image {base} ({e.strerror})") from None
    if fp != (hdr.base_size, hdr.base_mtime_ns, hdr.base_sample):
        raise ImageError(f"{path}: base image {base} changed since the overlay was made")
    return base


def _load_table(fd: int, hdr: OverlayHeader, p) -> array:
    t = array("I")
    t.frombytes(_pread_full(fd, hdr.entries * 4, hdr.table_offset))
    if sys.byteorder == "big":
        t.byteswap()
    slots = (os.fstat(fd).st_size - hdr.data_offset) // SECTOR
    used = [s for s in t if s] if t.count(0) != len(t) else []
    if used and (max(used) > slots or len(set(used)) != len(used)):
        raise _corrupt(p, "allocation table points outside the data or twice at one sector")
    return t


def _le(t: array) -> bytes:
    if sys.byteorder == "big":
        t = array("I", t)
        t.byteswap()
    return t.tobytes()


# ---------------------------------------------------------------- validation

def is_writable(path: str | os.PathLike) -> bool:
    """May we write the image? No write permission bit at all counts as
    read-only even for root (for whom os.access always says yes): a user who
    ran chmod a-w meant it."""
    try:
        return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & 0o222)
    except OSError:
        return False


def check_image(path: str | os.PathLike, writable: bool, _depth: int = 0) -> int:
    """Validate a user-supplied image before anything touches it; return its
    (virtual) size in bytes. Overlays are checked with their whole base chain."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such image")
    if not p.is_file():
        raise ImageError(f"{p}: not a regular file")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(len(OVL_MAGIC))
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror})") from None
    if size == 0:
        raise ImageError(f"{p}: image is empty")
    if writable and not is_writable(p):
        raise ImageError(f"{p}: image is read-only (attach it with ,ro)")
    if _looks_like_overlay(head):
        if _depth >= MAX_CHAIN:
            raise ImageError(f"{p}: overlay chain deeper than {MAX_CHAIN}")
        hdr = read_header(p)
        base = check_base(p, hdr)
        check_image(base, writable=False, _depth=_depth + 1)
        try:
            fd = os.open(p, os.O_RDONLY)
            try:
                _load_table(fd, hdr, p)
            finally:
                os.close(fd)
        except OSError as e:
            raise ImageError(f"{p}: cannot read ({e.strerror})") from None
        return hdr.virtual_size
    if size % SECTOR:
        raise ImageError(f"{p}: size {size} is not a multiple of 512 bytes")
    return size


# ---------------------------------------------------------------- back ends

def _pread_full(fd: int, n: int, off: int) -> bytes:
    data = os.pread(fd, n, off)
    if len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n and data:
        data = os.pread(fd, n - got, off + got)
        parts.append(data)
        got += len(data)
    return b"".join(parts) + bytes(n - got)          # past the end of the file: zeros


def _pwrite_full(fd: int, data, off: int) -> None:
    mv = memoryview(data)
    while mv:
        n = os.pwrite(fd, mv, off)
        mv, off = mv[n:], off + n


def _open_fd(path, writable: bool) -> int:
    """Open an image and lock it as QEMU does: a writer excludes everyone, readers share.
    The lock belongs to this open file (flock), so the same image attached twice in one
    hv, or in two hv processes at once, is refused rather than corrupted."""
    fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if writable else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(errno.EBUSY, "in use: a writer excludes every other user, in this hv "
                      "or another one (as QEMU locks images)") from None
    return fd


class RawBackend:
    """The image file itself."""
    format = "raw"

    def __init__(self, path, writable: bool) -> None:
        self.fd = _open_fd(path, writable)
        self._unsynced = False

    def read(self, lba: int, count: int) -> bytes:
        return _pread_full(self.fd, count * SECTOR, lba * SECTOR)

    def write(self, lba: int, data) -> None:
        _pwrite_full(self.fd, data, lba * SECTOR)
        self._unsynced = True

    def flush(self) -> None:
        if self._unsynced:
            os.fsync(self.fd)
            self._unsynced = False

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self.fd)
                self.fd = -1


class OverlayBackend:
    """Allocated sectors from our own file, the rest from ``base``."""
    format = "overlay"

    def __init__(self, fd: int, table: array, data_offset: int, base,
                 table_offset: int | None) -> None:
        self.fd = fd
        self.table = table
        self.data_offset = data_offset
        self.base = base
        self.table_offset = table_offset       # None: anonymous, nothing to persist
        self.next_slot = max(table) + 1 if table.count(0) != len(table) else 1
        self._dirty: tuple[int, int] | None = None   # table entries [lo, hi) not on disk
        self._unsynced = False

    @classmethod
    def open(cls, path, writable: bool, depth: int = 0) -> "OverlayBackend":
        if depth >= MAX_CHAIN:
            raise ImageError(f"{path}: overlay chain deeper than {MAX_CHAIN}")
        fd = _open_fd(path, writable)
        base = None
        try:
            hdr = read_header(path, fd)
            base_path = check_base(path, hdr)
            table = _load_table(fd, hdr, path)
            base = open_backend(base_path, writable=False, depth=depth + 1)
            return cls(fd, table, hdr.data_offset, base, hdr.table_offset)
        except BaseException:
            os.close(fd)
            if base is not None:
                base.close()
            raise

    @classmethod
    def anonymous(cls, base, sectors: int) -> "OverlayBackend":
        """--snapshot: data in an unlinked temp file, the table only in memory."""
        f = tempfile.TemporaryFile(prefix="hv-snapshot-")
        fd = os.dup(f.fileno())
        f.close()          # the dup keeps the (already unlinked) file alive
        return cls(fd, array("I", bytes(4 * sectors)), 0, base, None)

    def allocated(self) -> int:
        return len(self.table) - self.table.count(0)

    def _off(self, slot: int) -> int:
        return self.data_offset + (slot - 1) * SECTOR

    def read(self, lba: int, count: int) -> bytes:
        n = len(self.table)
        end = min(lba + count, n)
        if lba >= end:
            return self.base.read(lba, count)
        slots = self.table[lba:end]
        if slots.count(0) == len(slots):
            return self.base.read(lba, count)
        out = bytearray()
        i, m = 0, len(slots)
        while i < m:
            s = slots[i]
            j = i + 1
            if s == 0:
                while j < m and slots[j] == 0:
                    j += 1
                out += self.base.read(lba + i, j - i)
            else:
                while j < m and slots[j] == slots[j - 1] + 1:
                    j += 1
                out += _pread_full(self.fd, (j - i) * SECTOR, self._off(s))
            i = j
        if lba + count > end:
            out += self.base.read(end, lba + count - end)
        return bytes(out)

    def write(self, lba: int, data) -> None:
        count = len(data) // SECTOR
        if lba + count > len(self.table):
            raise DiskError(OUT_OF_RANGE, f"sectors {lba}+{count} beyond the overlay table")
        slots = self.table[lba:lba + count]
        first_free = self.next_slot
        nxt = first_free
        if slots.count(0) == count:                  # all new: one run, one pwrite
            slots = array("I", range(nxt, nxt + count))
            nxt += count
        else:
            for i in range(count):
                if slots[i] == 0:
                    slots[i] = nxt
                    nxt += 1
        mv = memoryview(data)
        i = 0
        while i < count:                             # one pwrite per run of consecutive slots
            j = i + 1
            while j < count and slots[j] == slots[j - 1] + 1:
                j += 1
            _pwrite_full(self.fd, mv[i * SECTOR:j * SECTOR], self._off(slots[i]))
            i = j
        # Only now, with the data written, may the table point at it.
        self.table[lba:lba + count] = slots
        self.next_slot = nxt
        self._unsynced = True
        if nxt != first_free:
            lo, hi = self._dirty or (lba, lba + count)
            self._dirty = (min(lo, lba), max(hi, lba + count))

    def flush(self) -> None:
        if self.table_offset is None:
            return                                   # a snapshot is thrown away anyway
        if self._unsynced:
            os.fsync(self.fd)                        # the data before the table that points at it
            self._unsynced = False
        if self._dirty:
            lo, hi = self._dirty
            _pwrite_full(self.fd, _le(self.table[lo:hi]), self.table_offset + lo * 4)
            os.fsync(self.fd)
            self._dirty = None

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.flush()
            finally:
                os.close(self.fd)
                self.fd = -1
                self.base.close()


def open_backend(path, writable: bool, depth: int = 0):
    """A raw or overlay back end for ``path`` (validated with check_image first)."""
    if is_overlay(path):
        return OverlayBackend.open(path, writable, depth)
    return RawBackend(path, writable)


# ---------------------------------------------------------------- the disk

class Disk:
    """An image (raw or overlay) attached as a floppy ('floppy') or a hard disk ('hd')."""

    def __init__(self, path: str | os.PathLike, kind: str, readonly: bool = False,
                 snapshot: bool = False) -> None:
        if kind not in ("floppy", "hd"):
            raise ValueError(kind)
        self.path = Path(path)
        self.kind = kind
        self.readonly = readonly
        self.snapshot = snapshot
        self._backend = None
        size = check_image(path, writable=not (readonly or snapshot))
        self.file_size = size
        if kind == "floppy":
            if size > FLOPPY_MAX:
                raise ImageError(f"{self.path}: {size} bytes is larger than a 2.88 MB floppy")
            fg = floppy_geometry(size)
            if fg is None:
                raise ImageError(f"{self.path}: {size} bytes is not a floppy size (160K..2.88M)")
            self.geometry, self.cmos_type = fg
            self.sectors = self.geometry.total
        else:
            self.cmos_type = 0
            self.geometry, self.sectors = hd_geometry(size)
        try:
            backend = open_backend(self.path, writable=not (readonly or snapshot))
        except OSError as e:
            raise ImageError(f"{self.path}: cannot open ({e.strerror})") from None
        if snapshot:
            try:
                backend = OverlayBackend.anonymous(backend, self.sectors)
            except OSError as e:
                backend.close()
                raise ImageError(f"{self.path}: cannot create the snapshot file "
                                 f"({e.strerror})") from None
        self._backend = backend

    @property
    def format(self) -> str:
        """'raw' or 'overlay' (the image's own format, snapshot or not)."""
        b = self._backend
        return b.base.format if self.snapshot else b.format

    def chs_to_lba(self, c: int, h: int, s: int) -> int:
        g = self.geometry
        if not (0 <= c < g.cylinders and 0 <= h < g.heads and 1 <= s <= g.sectors):
            raise DiskError(OUT_OF_RANGE, f"CHS {c}/{h}/{s} outside {g}")
        return (c * g.heads + h) * g.sectors + s - 1

    def _check(self, lba, count) -> tuple[int, int]:
        try:
            lba, count = operator.index(lba), operator.index(count)
        except TypeError:
            raise DiskError(BAD_COMMAND, "sector numbers must be integers") from None
        if lba < 0 or count < 0 or lba + count > self.sectors:
            raise DiskError(OUT_OF_RANGE, f"sectors {lba}+{count} beyond {self.sectors}")
        if self._backend is None or self._backend.fd < 0:
            raise DiskError(NO_DRIVE, f"{self.path} is closed")
        return lba, count

    def read(self, lba: int, count: int) -> bytes:
        lba, count = self._check(lba, count)
        if count == 0:
            return b""
        try:
            return self._backend.read(lba, count)
        except OSError as e:
            raise DiskError(IO_ERROR, f"{self.path}: read failed ({e.strerror})") from None

    def write(self, lba: int, data: bytes) -> None:
        try:
            n = len(data)
        except TypeError:
            raise DiskError(BAD_COMMAND, "data must be bytes") from None
        if n % SECTOR:
            raise DiskError(BAD_COMMAND, "partial sector write")
        lba, count = self._check(lba, n // SECTOR)
        if self.readonly:
            raise DiskError(WRITE_PROTECTED, f"{self.path} is read-only")
        if count == 0:
            return
        try:
            self._backend.write(lba, data)
        except OSError as e:
            raise DiskError(IO_ERROR, f"{self.path}: write failed ({e.strerror})") from None

    def flush(self) -> None:
        """Make every completed write durable (ATA FLUSH CACHE, INT 13h writes, close)."""
        if self._backend is None or self._backend.fd < 0 or self.readonly:
            return
        try:
            self._backend.flush()
        except OSError as e:
            raise DiskError(IO_ERROR, f"{self.path}: flush failed ({e.strerror})") from None

    def close(self) -> None:
        if self._backend is not None and self._backend.fd >= 0:
            self._backend.close()

    def __enter__(self) -> "Disk":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DiskStore:
    """The drives of one machine, by BIOS drive number (0x00, 0x01, 0x80, 0x81)."""

    def __init__(self) -> None:
        self.drives: dict[int, Disk] = {}
        self.extra: list[Disk] = []      # disks no BIOS numbers (virtio-blk)

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

    def flush(self) -> None:
        for d in [*self.drives.values(), *self.extra]:
            d.flush()

    def close(self) -> None:
        for d in [*self.drives.values(), *self.extra]:
            d.close()
