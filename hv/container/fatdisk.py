"""FAT16 volumes: the disk of a VM-flavor container, written and read back on the host.

The layout is "hv disk layout 1" (``docs/images.md``): a whole-disk FAT16 volume (no partition
table, 512-byte sectors), two FATs, 512 root entries, media 0xF8, geometry 16 heads x 63 sectors,
VFAT long names wherever a name is not a plain upper-case 8.3 name. Sector 0 may carry a boot
sector's code around the BPB written here, and the reserved sectors after it the loader and
kernel the boot code loads, so the same file boots and mounts (``mdir -i disk.img``, Linux
``mount -o loop``).

Writing takes a tree of ``Dir`` and ``File`` and lays the files out contiguously, in pre-order.
Reading gives the tree back. Every on-disk value is hostile when reading: a BPB that does not
describe a FAT16 volume inside the file, a cluster number out of range, a chain that loops or
crosses another, a size its chain cannot hold, a directory reached twice: each is a
``FatError`` with one line saying what, and the work is bounded by the volume's cluster count
(every cluster is visited at most once).
"""
from __future__ import annotations

import array
import math
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

SECTOR = 512
DEFAULT_SIZE = 32 << 20
MIN_SIZE, MAX_SIZE = 4 << 20, 2 << 30
DEFAULT_SPC = 4                      # sectors per cluster at the default size (the contract's)
FAT_COUNT = 2
ROOT_ENTRIES = 512
MEDIA = 0xF8
HEADS, SPT = 16, 63
DRIVE = 0x80
MIN_CLUSTERS, MAX_CLUSTERS = 4085, 65524      # FAT16's range (fatgen103)
EOC = 0xFFFF                          # end of chain as written; >= 0xFFF8 read as end
BAD_CLUSTER = 0xFFF7
ENTRY = 32
MAX_DEPTH = 64                        # directory levels read back
MAX_NAME = 255                        # UTF-16 units of a long name

ATTR_RO, ATTR_HIDDEN, ATTR_SYSTEM, ATTR_VOLUME, ATTR_DIR, ATTR_ARCHIVE = 1, 2, 4, 8, 0x10, 0x20
ATTR_LFN = 0x0F
LFN_LAST = 0x40
NTRES_LOWER_BASE, NTRES_LOWER_EXT = 0x08, 0x10

# The characters a short name may hold besides A-Z and 0-9 (fatgen103), and those a long
# name may not.
_SHORT_OK = set(b"!#$%&'()-@^_`{}~") | set(range(0x80, 0x100))
_LONG_BAD = set('"*/:<>?\\|') | {chr(c) for c in range(0x20)}

BPB = struct.Struct("<3s8sHBHBHHBHHHIIBBBI11s8s")     # bytes 0..0x3E of sector 0
DIRENT = struct.Struct("<11sBBBHHHHHHHI")


class FatError(Exception):
    """A volume that cannot be written as asked, or read as found: one line."""


@dataclass
class File:
    """A file's bytes, or (``data`` None) ``size`` bytes read from the fd ``opener()`` returns
    (copied by the kernel, closed after; a shorter file leaves zeros)."""
    data: bytes | None
    mtime: float = 0.0
    attr: int = ATTR_ARCHIVE
    size: int = 0
    opener: Callable[[], int] | None = None

    @property
    def length(self) -> int:
        return len(self.data) if self.data is not None else self.size


@dataclass
class Dir:
    entries: dict[str, "File | Dir"] = field(default_factory=dict)
    mtime: float = 0.0
    attr: int = 0


@dataclass
class Geometry:
    total: int               # sectors
    spc: int
    reserved: int
    fat_sectors: int
    root_sectors: int
    clusters: int
    first_data: int          # the sector of cluster 2

    @property
    def cluster_bytes(self) -> int:
        return self.spc * SECTOR

    def cluster_offset(self, cluster: int) -> int:
        return (self.first_data + (cluster - 2) * self.spc) * SECTOR


def geometry(size: int, reserved: int, spc: int | None = None) -> Geometry:
    """The layout of a ``size``-byte volume with ``reserved`` sectors before the first FAT;
    ``spc``: sectors per cluster (default: 4 at 32 MiB, else the smallest that fits)."""
    if size % SECTOR or not MIN_SIZE <= size <= MAX_SIZE:
        raise FatError(f"a disk is {MIN_SIZE >> 20} MiB to {MAX_SIZE >> 30} GiB, in whole sectors "
                       f"(asked: {size} bytes)")
    total = size // SECTOR
    root_sectors = ROOT_ENTRIES * ENTRY // SECTOR
    choices = [spc] if spc else ([DEFAULT_SPC] if size == DEFAULT_SIZE else []) + [1 << i for i in range(7)]
    for spc in choices:
        fat_sectors = 1
        for _ in range(8):        # converges in two or three rounds
            data = total - reserved - root_sectors - FAT_COUNT * fat_sectors
            clusters = data // spc
            need = math.ceil((clusters + 2) * 2 / SECTOR)
            if need == fat_sectors:
                break
            fat_sectors = need
        if data > 0 and MIN_CLUSTERS <= clusters <= MAX_CLUSTERS:
            return Geometry(total, spc, reserved, fat_sectors, root_sectors, clusters,
                            reserved + FAT_COUNT * fat_sectors + root_sectors)
    raise FatError(f"{size} bytes with {reserved} reserved sectors makes no FAT16 volume")


# -- names -------------------------------------------------------------------------------------

def _is_short(name: str) -> bool:
    """A plain upper-case 8.3 name, stored without a long-name entry."""
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        return False
    if name in (".", "..") or raw.count(b".") > 1:
        return False
    base, _, ext = raw.partition(b".")
    if not 1 <= len(base) <= 8 or len(ext) > 3 or (b"." in raw and not ext):
        return False
    return all(65 <= c <= 90 or 48 <= c <= 57 or c in _SHORT_OK for c in base + ext)


def _short_field(name: str) -> bytes:
    base, _, ext = name.partition(".")
    return base.encode("ascii").ljust(8) + ext.encode("ascii").ljust(3)


def _basis(name: str) -> tuple[bytes, bytes]:
    """The short-name basis of a long name (fatgen103's algorithm, without code pages)."""
    def clean(text: str) -> bytes:
        out = bytearray()
        for ch in text.upper():
            c = ord(ch)
            if ch == " ":
                continue
            out.append(c if (65 <= c <= 90 or 48 <= c <= 57 or (c < 0x80 and c in _SHORT_OK))
                       else ord("_"))
        return bytes(out)
    stripped = name.lstrip(".")
    base, dot, ext = stripped.rpartition(".")
    if not dot:
        base, ext = stripped, ""
    return clean(base)[:8] or b"_", clean(ext)[:3]


def lfn_checksum(short: bytes) -> int:
    s = 0
    for c in short:
        s = (((s & 1) << 7) + (s >> 1) + c) & 0xFF
    return s


def _lfn_entries(name: str, short: bytes) -> list[bytes]:
    units = name.encode("utf-16-le")
    units = [units[i:i + 2] for i in range(0, len(units), 2)]
    if len(units) > MAX_NAME:
        raise FatError(f"{name!r}: a name is 255 UTF-16 units at most")
    units.append(b"\0\0")
    while len(units) % 13:
        units.append(b"\xff\xff")
    chunks = [units[i:i + 13] for i in range(0, len(units), 13)]
    if len(chunks) > 1 and chunks[-1][0] == b"\0\0":       # a name of exactly 13k units
        chunks.pop()
    csum = lfn_checksum(short)
    out = []
    for seq in range(len(chunks), 0, -1):
        c = chunks[seq - 1]
        order = seq | (LFN_LAST if seq == len(chunks) else 0)
        out.append(bytes([order]) + b"".join(c[0:5]) + bytes([ATTR_LFN, 0, csum])
                   + b"".join(c[5:11]) + b"\0\0" + b"".join(c[11:13]))
    return out


def _fat_time(t: float) -> tuple[int, int]:
    """(time, date) fields for Unix time ``t`` in local time, as mtools and Linux write them;
    clamped to FAT's 1980..2107."""
    tm = time.localtime(max(t, 315532800))
    year = min(max(tm.tm_year, 1980), 2107)
    return ((tm.tm_hour << 11) | (tm.tm_min << 5) | (min(tm.tm_sec, 59) // 2),
            ((year - 1980) << 9) | (tm.tm_mon << 5) | tm.tm_mday)


def _from_fat_time(t: int, d: int) -> float:
    year, month, day = 1980 + (d >> 9), (d >> 5) & 15, d & 31
    hour, minute, sec = t >> 11, (t >> 5) & 63, (t & 31) * 2
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and sec < 60):
        return 315532800.0                       # 1980-01-01: a date the guest never set
    return time.mktime((year, month, day, hour, minute, sec, 0, 0, -1))


# -- writing -----------------------------------------------------------------------------------

def _check_long(name: str) -> None:
    if name in ("", ".", "..") or any(ch in _LONG_BAD for ch in name) or name != name.rstrip(" ."):
        raise FatError(f"{name!r} cannot be a FAT long name")


def _dir_entries(d: Dir, self_cluster: int | None, parent_cluster: int,
                 clusters: dict[int, int], where: dict[str, int] | None = None) -> list[bytes]:
    """The 32-byte entries of directory ``d`` (its children's first clusters in ``clusters``,
    by ``id``); ``where`` gets the index of each child's short entry."""
    out = []
    if self_cluster is not None:                     # not the root: "." and ".."
        t, dt = _fat_time(d.mtime)
        for short, cl in ((b".          ", self_cluster), (b"..         ", parent_cluster)):
            out.append(DIRENT.pack(short, ATTR_DIR, 0, 0, t, dt, dt, 0, t, dt, cl, 0))
    used: set[bytes] = set()
    plain = {n for n in d.entries if _is_short(n)}
    used |= {_short_field(n) for n in plain}
    for name, node in d.entries.items():
        _check_long(name)
        if name in plain:
            short, lfn = _short_field(name), []
        else:
            base, ext = _basis(name)
            for n in range(1, 1000000):
                tail = b"~%d" % n
                short = (base[:8 - len(tail)] + tail).ljust(8) + ext.ljust(3)
                if short not in used:
                    break
            else:
                raise FatError(f"too many similar names beside {name!r}")
            used.add(short)
            lfn = _lfn_entries(name, short)
        t, dt = _fat_time(node.mtime)
        size = node.length if isinstance(node, File) else 0
        attr = node.attr | (ATTR_DIR if isinstance(node, Dir) else 0)
        out += lfn
        if where is not None:
            where[name] = len(out)
        out.append(DIRENT.pack(short, attr, 0, 0, t, dt, dt, 0, t, dt, clusters.get(id(node), 0), size))
    return out


def reserved_sectors(kernel_bytes: int) -> int:
    """BPB_RsvdSecCnt for a loader and kernel of ``kernel_bytes``: the boot sector and the
    kernel's sectors, rounded up to a multiple of 8."""
    return -(-(1 + -(-kernel_bytes // SECTOR)) // 8) * 8


def build(path: str | os.PathLike, root: Dir, *, size: int = DEFAULT_SIZE, boot: bytes | None = None,
          reserved_data: bytes = b"", label: str = "HV", spc: int | None = None,
          volume_id: int | None = None, entries: dict[str, int] | None = None) -> dict[str, tuple[int, int]]:
    """Write the volume holding ``root`` to ``path`` (created or replaced; sparse). ``boot``:
    a 512-byte boot sector whose bytes [0:3] and [0x3E:0x200] frame the BPB; ``reserved_data``
    goes from LBA 1 (the reserved area: 1 + its sectors, rounded up to 8). Returns each file's
    (byte offset, size) on the disk by path ("/a/b"), for patching in place; ``entries`` (if
    given) gets the byte offset of each file's short directory entry."""
    if boot is not None and (len(boot) != SECTOR or boot[510:] != b"\x55\xaa"):
        raise FatError("the boot sector must be 512 bytes ending in 55 AA")
    g = geometry(size, reserved_sectors(len(reserved_data)), spc)
    cb = g.cluster_bytes

    # Clusters, in pre-order: a directory's own, then its children's.
    clusters: dict[int, int] = {}
    order: list[tuple[str, File | Dir, Dir | None]] = []
    nxt = 2

    def need(node) -> int:
        if isinstance(node, File):
            return -(-node.length // cb)
        n = 2 + sum(1 + (0 if _is_short(k) else -(-(len(k.encode("utf-16-le")) // 2 + 1) // 13))
                    for k in node.entries)
        return max(1, -(-n * ENTRY // cb))

    stack: list[tuple[str, File | Dir, Dir | None, int]] = [("", root, None, 0)]
    while stack:
        p, node, parent, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FatError(f"{p}: deeper than {MAX_DEPTH} directories")
        order.append((p, node, parent))
        if node is not root:
            n = need(node)
            if n:
                if nxt + n > g.clusters + 2:
                    raise FatError(f"the files do not fit in a {size >> 20} MiB disk "
                                   f"(use a larger --size)")
                clusters[id(node)] = nxt
                nxt += n
        if isinstance(node, Dir):
            for name, child in reversed(list(node.entries.items())):
                stack.append((f"{p}/{name}", child, node, depth + 1))

    fat = bytearray(g.fat_sectors * SECTOR)
    struct.pack_into("<HH", fat, 0, 0xFF00 | MEDIA, 0xFFFF)
    offsets: dict[str, tuple[int, int]] = {}
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, size)
        for p, node, parent in order:
            first = clusters.get(id(node))
            if isinstance(node, Dir):
                pc = clusters.get(id(parent), 0) if parent is not None and parent is not root else 0
                where: dict[str, int] = {}
                raw = b"".join(_dir_entries(node, first if node is not root else None, pc, clusters, where))
                base = (g.cluster_offset(first) if node is not root
                        else g.cluster_offset(2) - g.root_sectors * SECTOR)
                if node is root and label:
                    t, dt = _fat_time(time.time())
                    raw = DIRENT.pack(label.upper().encode("ascii")[:11].ljust(11), ATTR_VOLUME,
                                      0, 0, 0, 0, 0, 0, t, dt, 0, 0) + raw
                    base += ENTRY
                if entries is not None:
                    entries.update({f"{p}/{name}": base + ENTRY * i for name, i in where.items()})
                if node is root:
                    if len(raw) > ROOT_ENTRIES * ENTRY:
                        raise FatError(f"the root directory holds {ROOT_ENTRIES} entries at most "
                                       f"(long names take more than one)")
                    os.pwrite(fd, raw, base - (ENTRY if label else 0))
                    continue
                data = raw
            else:
                data = node.data
                offsets[p] = (g.cluster_offset(first) if first else 0, node.length)
            if first is None:
                continue
            n = need(node)
            for i in range(n - 1):
                struct.pack_into("<H", fat, 2 * (first + i), first + i + 1)
            struct.pack_into("<H", fat, 2 * (first + n - 1), EOC)
            if data is not None:
                os.pwrite(fd, data, g.cluster_offset(first))
            else:
                _copy_in(node, fd, g.cluster_offset(first))
        for i in range(FAT_COUNT):
            os.pwrite(fd, fat, (g.reserved + i * g.fat_sectors) * SECTOR)
        if reserved_data:
            os.pwrite(fd, reserved_data, SECTOR)
        os.pwrite(fd, _boot_sector(g, boot, label, volume_id), 0)
    except BaseException:
        os.close(fd)
        fd = -1
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    return offsets


def _copy_in(node: File, out: int, at: int) -> None:
    src = node.opener()
    try:
        done = 0
        while done < node.size:
            try:
                n = os.copy_file_range(src, out, node.size - done, done, at + done)
            except OSError:                       # another file system, an old kernel
                chunk = os.pread(src, min(node.size - done, 1 << 20), done)
                n = os.pwrite(out, chunk, at + done) if chunk else 0
            if n == 0:
                break                              # the file shrank: zeros remain
            done += n
    finally:
        os.close(src)


def _boot_sector(g: Geometry, boot: bytes | None, label: str, volume_id: int | None) -> bytes:
    if boot is None:        # not bootable: a jump to a "cli; hlt", as mkfs.fat's message does
        boot = b"\xeb\x3c\x90" + bytes(0x3B) + b"\xfa\xf4" + bytes(0x200 - 0x40 - 2) + b"\x55\xaa"
    total16 = g.total if g.total < 0x10000 else 0
    vid = volume_id if volume_id is not None else int(time.time()) & 0xFFFFFFFF
    bpb = BPB.pack(boot[0:3], b"HV      ", SECTOR, g.spc, g.reserved, FAT_COUNT, ROOT_ENTRIES,
                   total16, MEDIA, g.fat_sectors, SPT, HEADS, 0, 0 if total16 else g.total,
                   DRIVE, 0, 0x29, vid, label.upper().encode("ascii")[:11].ljust(11), b"FAT16   ")
    return bpb + boot[0x3E:0x200]


# -- reading -----------------------------------------------------------------------------------

@dataclass
class Entry:
    """One file or directory read back: ``cluster`` its first cluster, ``size`` a file's bytes."""
    name: str
    is_dir: bool
    cluster: int
    size: int
    attr: int
    mtime: float
    entries: dict[str, "Entry"] | None = None      # a directory's, by name
    chain: list[int] | None = None                 # a file's clusters, checked


class Volume:
    """A FAT16 volume in a file (or bytes) opened for reading; ``tree()`` reads the directories.
    Nothing the volume says is trusted (see the module's docstring)."""

    def __init__(self, source) -> None:
        """``source``: a file name, bytes, or a disk with ``read(lba, count)`` and ``sectors``
        (``hv.devices.disk_store.Disk``: a VM's disk, overlay included)."""
        self._disk = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._data, self._fd, self.size = bytes(source), -1, len(source)
        elif hasattr(source, "read") and hasattr(source, "sectors"):
            self._data, self._fd, self._disk = None, -1, source
            self.size = source.sectors * SECTOR
        else:
            self._data = None
            self._fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            self.size = os.fstat(self._fd).st_size
        try:
            self.g = self._parse_bpb(self._read(0, SECTOR))
            fat = self._read(self.g.reserved * SECTOR, self.g.fat_sectors * SECTOR)
            count = min(self.g.clusters + 2, len(fat) // 2)
            self.fat = struct.unpack_from(f"<{count}H", fat)
            self._fat_raw = fat[:2 * count]
            self._seen = bytearray(count)            # 1: a chain or directory claimed it
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Volume":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise FatError(f"bytes {offset}..{offset + n} lie outside the {self.size}-byte disk")
        if self._data is not None:
            return self._data[offset:offset + n]
        if self._disk is not None:
            lba, skip = divmod(offset, SECTOR)
            try:
                raw = self._disk.read(lba, -(-(skip + n) // SECTOR))
            except Exception as e:          # DiskError: the store failed under us
                raise FatError(f"the disk cannot be read: {e}") from None
            return bytes(raw[skip:skip + n])
        out = os.pread(self._fd, n, offset)
        if len(out) != n:
            raise FatError(f"the disk ended at byte {offset + len(out)} (it changed while read)")
        return out

    def _parse_bpb(self, s: bytes) -> Geometry:
        (_, _, bps, spc, reserved, nfats, root_entries, total16, _, fat16, _, _, _, total32,
         *_rest) = BPB.unpack_from(s)
        if s[510:512] != b"\x55\xaa":
            raise FatError("no boot sector signature (55 AA): not a FAT volume")
        if bps != SECTOR:
            raise FatError(f"{bps} bytes per sector (hv reads 512)")
        if spc == 0 or spc & (spc - 1) or spc > 128:
            raise FatError(f"{spc} sectors per cluster is not a power of two up to 128")
        if reserved < 1 or nfats not in (1, 2) or fat16 == 0 or root_entries == 0 \
                or root_entries * ENTRY % SECTOR:
            raise FatError("the BPB does not describe a FAT16 volume (reserved sectors, FATs, "
                           "FAT size or root entries)")
        total = total16 or total32
        if total * SECTOR > self.size or total == 0:
            raise FatError(f"the BPB says {total} sectors; the disk has {self.size // SECTOR}")
        root_sectors = root_entries * ENTRY // SECTOR
        first_data = reserved + nfats * fat16 + root_sectors
        if first_data >= total:
            raise FatError("the BPB leaves no data area")
        clusters = (total - first_data) // spc
        if not MIN_CLUSTERS <= clusters <= MAX_CLUSTERS:
            raise FatError(f"{clusters} clusters: not FAT16 (FAT12 below {MIN_CLUSTERS}, "
                           f"FAT32 above {MAX_CLUSTERS})")
        if fat16 * SECTOR // 2 < clusters + 2:
            raise FatError(f"a FAT of {fat16} sectors cannot map {clusters} clusters")
        self.root_entries = root_entries
        return Geometry(total, spc, reserved, fat16, root_sectors, clusters, first_data)

    def chain(self, first: int, what: str) -> list[int]:
        """The clusters of the chain starting at ``first``; each cluster is claimed once for the
        whole volume, so a loop or a cross-link is an error and the work is bounded."""
        out: list[int] = []
        c = first
        while True:
            if not 2 <= c < self.g.clusters + 2:
                raise FatError(f"{what}: cluster {c} is outside the volume "
                               f"(2..{self.g.clusters + 1})")
            if self._seen[c]:
                raise FatError(f"{what}: cluster {c} is used twice (a loop or a cross-link)")
            n = self._run(c)
            if n > 1:                            # c..c+n-1 each point to the next: one step
                if any(self._seen[c:c + n]):
                    raise FatError(f"{what}: a cluster in {c}..{c + n - 1} is used twice")
                self._seen[c:c + n] = b"\1" * n
                out.extend(range(c, c + n))
                c += n - 1
            else:
                self._seen[c] = 1
                out.append(c)
            nxt = self.fat[c]
            if nxt >= 0xFFF8:
                return out
            if nxt == BAD_CLUSTER:
                raise FatError(f"{what}: the chain reaches a bad cluster")
            c = nxt

    def _run(self, c: int) -> int:
        """How many clusters from ``c`` on each point to the next (1 if none does): files are
        mostly contiguous, so this is compared in C, in doubling steps."""
        n, limit = 1, len(self.fat) - c
        step = 64
        while n < limit:
            k = min(step, limit - n)             # compare entries c+n-1 .. c+n+k-2
            want = array.array("H", range(c + n, c + n + k))
            if sys.byteorder == "big":
                want.byteswap()
            want = want.tobytes()
            have = self._fat_raw[2 * (c + n - 1):2 * (c + n - 1 + k)]
            if have == want:
                n += k
                step *= 2
                continue
            for i in range(k):                   # the first mismatch within this step
                if have[2 * i:2 * i + 2] != want[2 * i:2 * i + 2]:
                    return n + i
            return n + k
        return n

    def _cluster_data(self, clusters: list[int]) -> bytes:
        cb, out = self.g.cluster_bytes, []
        i = 0
        while i < len(clusters):      # one read per run of consecutive clusters
            j = i
            while j + 1 < len(clusters) and clusters[j + 1] == clusters[j] + 1:
                j += 1
            out.append(self._read(self.g.cluster_offset(clusters[i]), (j - i + 1) * cb))
            i = j + 1
        return b"".join(out)

    def _entries(self, raw: bytes, where: str) -> Iterator[tuple[str, int, int, int, float]]:
        """(name, attr, first cluster, size, mtime) of a directory's live entries."""
        lfn: list[tuple[int, bytes]] = []
        csum = -1
        for off in range(0, len(raw) - ENTRY + 1, ENTRY):
            e = raw[off:off + ENTRY]
            if e[0] == 0:
                return
            if e[0] == 0xE5:
                lfn = []
                continue
            attr = e[11]
            if attr & 0x3F == ATTR_LFN:
                order = e[0]
                if order & LFN_LAST:
                    lfn, csum = [], e[13]
                if not lfn and not order & LFN_LAST or e[13] != csum:
                    lfn = []
                    continue
                lfn.append((order & 0x1F, e[1:11] + e[14:26] + e[28:32]))
                continue
            (short, attr, ntres, _, _, _, _, hi, t, d, cl, size) = DIRENT.unpack(e)
            long = self._long_name(lfn, short, csum) if lfn else None
            lfn = []
            if attr & ATTR_VOLUME:
                continue
            if short in (b".          ", b"..         "):
                continue
            name = long if long is not None else self._short_name(short, ntres)
            if not name or name in (".", "..") or "/" in name or "\0" in name:
                raise FatError(f"{where}: an entry has the name {name!r}")
            yield name, attr, cl | (hi << 16), size, _from_fat_time(t, d)

    @staticmethod
    def _long_name(parts: list[tuple[int, bytes]], short: bytes, csum: int) -> str | None:
        """The long name the entries spell, or None when they do not belong to ``short`` (then
        the short name counts, as Linux decides)."""
        n = len(parts)
        if [p[0] for p in parts] != list(range(n, 0, -1)) or lfn_checksum(short) != csum:
            return None
        units = b"".join(p[1] for p in reversed(parts))
        for i in range(0, len(units), 2):
            if units[i:i + 2] == b"\0\0":
                units = units[:i]
                break
        return units.decode("utf-16-le", "replace") if units else None

    @staticmethod
    def _short_name(short: bytes, ntres: int) -> str:
        if short[0] == 0x05:
            short = b"\xe5" + short[1:]
        # Bytes above 0x7F: code page 850, mtools' default (hv writes ASCII short names only).
        base = short[:8].rstrip(b" ").decode("cp850")
        ext = short[8:].rstrip(b" ").decode("cp850")
        if ntres & NTRES_LOWER_BASE:
            base = base.lower()
        if ntres & NTRES_LOWER_EXT:
            ext = ext.lower()
        return f"{base}.{ext}" if ext else base

    def tree(self) -> Entry:
        """Every directory from the root down. Each directory's clusters are claimed (a second
        path to one is an error), files' chains are checked against their sizes."""
        g = self.g
        root_raw = self._read((g.first_data - g.root_sectors) * SECTOR, g.root_sectors * SECTOR)
        root = Entry("", True, 0, 0, ATTR_DIR, 0.0, {})
        todo = [(root, root_raw, "/", 0)]
        while todo:
            d, raw, where, depth = todo.pop()
            for name, attr, cl, size, mtime in self._entries(raw, where):
                if name in d.entries:
                    raise FatError(f"{where}: the name {name!r} appears twice")
                path = where.rstrip("/") + "/" + name
                if attr & ATTR_DIR:
                    if depth + 1 > MAX_DEPTH:
                        raise FatError(f"{path}: deeper than {MAX_DEPTH} directories")
                    if cl == 0:
                        raise FatError(f"{path}: a directory without a cluster")
                    e = Entry(name, True, cl, 0, attr, mtime, {})
                    todo.append((e, self._cluster_data(self.chain(cl, path)), path, depth + 1))
                else:
                    e = Entry(name, False, cl, size, attr, mtime)
                    if size and cl == 0 or size > g.clusters * g.cluster_bytes:
                        raise FatError(f"{path}: {size} bytes but no clusters to hold them")
                    if cl:
                        e.chain = self.chain(cl, path)
                        n = len(e.chain)
                        if n * g.cluster_bytes < size:
                            raise FatError(f"{path}: {size} bytes in a chain of {n} clusters")
                d.entries[name] = e
        return root

    def read_file(self, e: Entry) -> bytes:
        """A file's bytes (its chain was checked by ``tree``; it is walked again here without
        claiming, bounded by the cluster count)."""
        if e.is_dir:
            raise FatError(f"{e.name}: a directory")
        if not e.size:
            return b""
        cb = self.g.cluster_bytes
        if e.chain is not None:
            return self._cluster_data(e.chain[:-(-e.size // cb)])[:e.size]
        out, c = [], e.cluster
        for _ in range(-(-e.size // cb)):
            if not 2 <= c < self.g.clusters + 2:
                raise FatError(f"{e.name}: cluster {c} is outside the volume")
            out.append(c)
            c = self.fat[c]
        return self._cluster_data(out)[:e.size]


def walk(root: Entry, prefix: str = "") -> Iterator[tuple[str, Entry]]:
    """(path, entry) of everything below ``root``, parents before children, sorted by name."""
    stack = [(f"{prefix}/{name}", e) for name, e in sorted(root.entries.items(), reverse=True)]
    while stack:
        p, e = stack.pop()
        yield p, e
        if e.is_dir:
            stack += [(f"{p}/{name}", c) for name, c in sorted(e.entries.items(), reverse=True)]


def read_tree(source, on_file: Callable[[str, bytes], None] | None = None) -> Entry:
    with Volume(source) as v:
        root = v.tree()
        if on_file is not None:
            for p, e in walk(root):
                if not e.is_dir:
                    on_file(p, v.read_file(e))
        return root
