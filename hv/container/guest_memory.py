"""A guest process's memory: host buffers, the areas the guest sees (VMAs), and checked access.

Every area is backed by a host ``mmap`` the process owns (anonymous and
``MAP_NORESERVE``, or a private copy-on-write mapping of the program file), so
an idle process costs only the pages its guest touched and holds no engine.
While the process runs, an engine mirrors the areas with ``mem_map_ptr`` (no
copy); every change made here while it is attached (map, unmap, protect, brk
and stack growth) is mirrored at once. Unicorn's ``mem_unmap`` drops the
translated code and TLB entries of the range itself (docs/linux-abi.md), so a
remap needs no extra flush; host writes into code that already ran do
(``ctl_remove_cache``), and ``write`` does that for executable areas.

Accesses made on the guest's behalf (system-call arguments) go through
``read``/``write``/``read_cstr``, which check the range against the areas and
their protection and raise ``GuestFault`` (the caller's ``-EFAULT``) instead of
touching anything outside the guest's memory. Free address space is the gaps
between areas, searched top-down as Linux's allocator does; a freed range is
reused by the next allocation that fits.
"""
from __future__ import annotations

import bisect
import ctypes
import mmap
import os

from hv.container.loader import MIN_ADDR, MMAP_TOP, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE, TASK_TOP

MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)   # Python < 3.12 lacks the name
MAX_AREAS = 4096            # bounds the host bookkeeping (Linux: vm.max_map_count)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MAP_FAILED = ctypes.c_void_p(-1).value


class GuestFault(Exception):
    """A guest address the process cannot access this way (the caller answers -EFAULT)."""

    def __init__(self, addr: int, what: str = "access") -> None:
        super().__init__(f"bad guest address {addr:#x} ({what})")
        self.addr = addr


class OutOfMemory(Exception):
    """No room: the memory limit, the address space or the area count (-ENOMEM)."""


class HostBuffer:
    """One host mapping that backs guest areas; unmapped when the last area using it goes.

    Made with libc's mmap rather than Python's, which would keep a dup of the program
    file's fd open for every file mapping of every process."""

    __slots__ = ("view", "addr", "size", "users")

    def __init__(self, size: int, fd: int | None = None, offset: int = 0) -> None:
        if fd is None:
            flags, fd = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1
        else:
            flags = mmap.MAP_PRIVATE
        addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, offset)
        if addr is None or addr == MAP_FAILED:
            raise OutOfMemory(f"host mmap of {size} bytes failed: {os.strerror(ctypes.get_errno())}")
        self.addr, self.size = addr, size
        self.view = memoryview((ctypes.c_ubyte * size).from_address(addr)).cast("B")
        self.users = 0

    def discard(self, offset: int, length: int) -> None:
        """Give the host pages back; they read as zero (anonymous) or the file again."""
        _libc.madvise(ctypes.c_void_p(self.addr + offset), length, mmap.MADV_DONTNEED)

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.view.release()
            _libc.munmap(ctypes.c_void_p(self.addr), self.size)


class Area:
    """A VMA: guest [start, end) with one protection, backed by ``buf`` from ``offset``."""

    __slots__ = ("start", "end", "prot", "buf", "offset", "kind")

    def __init__(self, start, end, prot, buf, offset, kind) -> None:
        self.start, self.end, self.prot = start, end, prot
        self.buf, self.offset, self.kind = buf, offset, kind
        buf.users += 1

    def host(self, addr: int) -> int:
        """Offset of guest ``addr`` in the backing buffer."""
        return self.offset + addr - self.start

    def __repr__(self) -> str:
        return f"Area({self.start:#x}-{self.end:#x} prot={self.prot} {self.kind})"


class MemoryBudget:
    """Bytes of user areas shared by several address spaces (the host kernel's memory for
    the containers that have no limit of their own): a mapping that would take ``used``
    past ``limit`` fails with OutOfMemory, in whichever process asks."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0


class AddressSpace:
    """The guest-visible memory of one process."""

    def __init__(self, limit: int | None = None, budget: MemoryBudget | None = None) -> None:
        self.areas: list[Area] = []
        self._starts: list[int] = []
        self.limit = limit          # bytes of user areas; None: the address space bounds it
        self.budget = budget        # shared with other processes (charged as ``mapped`` changes)
        self._mapped = 0
        self.engine = None          # the attached Engine, which mirrors every change

    @property
    def mapped(self) -> int:
        """Bytes of user areas (the system page is not counted)."""
        return self._mapped

    @mapped.setter
    def mapped(self, value: int) -> None:
        if self.budget is not None:
            self.budget.used += value - self._mapped
        self._mapped = value

    # -- lookup -------------------------------------------------------------------------
    def area_at(self, addr: int) -> Area | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.areas[i].end:
            return self.areas[i]
        return None

    def _spans(self, addr: int, n: int, prot: int):
        """(area, start, length) pieces covering [addr, addr+n); GuestFault on any gap."""
        if addr < 0 or n < 0 or addr + n > TASK_TOP:
            raise GuestFault(addr, "outside the user address space")
        pieces = []
        while n > 0:
            a = self.area_at(addr)
            if a is None or a.kind == "sys" or (a.prot & prot) != prot:
                raise GuestFault(addr)
            take = min(n, a.end - addr)
            pieces.append((a, addr, take))
            addr += take
            n -= take
        return pieces

    def check(self, addr: int, n: int, writable: bool = False) -> None:
        """Raise GuestFault unless the guest may read (or write) all of [addr, addr+n)."""
        self._spans(addr, n, PROT_WRITE if writable else PROT_READ)

    # -- access on the guest's behalf -------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        out = []
        for a, at, take in self._spans(addr, n, PROT_READ):
            off = a.host(at)
            out.append(bytes(a.buf.view[off:off + take]))
        return out[0] if len(out) == 1 else b"".join(out)

    def write(self, addr: int, data: bytes) -> None:
        pos = 0
        for a, at, take in self._spans(addr, len(data), PROT_WRITE):
            off = a.host(at)
            a.buf.view[off:off + take] = data[pos:pos + take]
            pos += take
            if a.prot & PROT_EXEC and self.engine is not None:
                self.engine.remove_cache(at, at + take)

    def views(self, addr: int, n: int, writable: bool):
        """memoryviews of the guest bytes [addr, addr+n) (for readinto/os.readv); check first."""
        out = []
        for a, at, take in self._spans(addr, n, PROT_WRITE if writable else PROT_READ):
            off = a.host(at)
            out.append(a.buf.view[off:off + take])
        return out

    def read_cstr(self, addr: int, limit: int) -> bytes | None:
        """The NUL-terminated string at ``addr`` (without the NUL), or None when no NUL
        comes within ``limit`` bytes (the caller's ENAMETOOLONG). GuestFault when the
        string runs into unmapped memory first."""
        out = b""
        while len(out) < limit:
            a = self.area_at(addr)
            if a is None or a.kind == "sys" or not a.prot & PROT_READ:
                raise GuestFault(addr)
            off = a.host(addr)
            stop = min(a.end - addr, limit - len(out))
            chunk = bytes(a.buf.view[off:off + stop])
            end = chunk.find(b"\0")
            if end >= 0:
                return out + chunk[:end]
            out += chunk
            addr += stop
        return None

    def peek(self, addr: int, n: int) -> bytes:
        """Host-side read with no permission check (the system page's GDT)."""
        a = self.area_at(addr)
        if a is None or addr + n > a.end:
            raise GuestFault(addr, "peek")
        off = a.host(addr)
        return bytes(a.buf.view[off:off + n])

    def poke(self, addr: int, data: bytes) -> None:
        """Host-side write with no permission check (loader, set_thread_area)."""
        while data:
            a = self.area_at(addr)
            if a is None:
                raise GuestFault(addr, "poke")
            take = min(len(data), a.end - addr)
            off = a.host(addr)
            a.buf.view[off:off + take] = data[:take]
            data, addr = data[take:], addr + take

    # -- mapping ------------------------------------------------------------------------
    def _insert(self, area: Area) -> None:
        if len(self.areas) >= MAX_AREAS:
            area.buf.release()
            raise OutOfMemory("too many memory areas")
        i = bisect.bisect_left(self._starts, area.start)
        self.areas.insert(i, area)
        self._starts.insert(i, area.start)
        if area.kind != "sys":
            self.mapped += area.end - area.start
        if self.engine is not None:
            self.engine.map_area(area, area.start, area.end)

    def _reserve(self, size: int) -> None:
        if self.limit is not None and self.mapped + size > self.limit:
            raise OutOfMemory("memory limit")
        if self.budget is not None and self.budget.used + size > self.budget.limit:
            raise OutOfMemory("host memory budget")

    def map_anonymous(self, start: int, size: int, prot: int, kind: str = "mmap",
                      reserve: int | None = None) -> Area:
        """Zeroed memory at [start, start+size); the caller made sure the range is free.
        ``reserve`` backs it with a larger host buffer the area can grow into (brk)."""
        if kind != "sys":
            self._reserve(size)
        buf = HostBuffer(max(size, reserve or 0))
        area = Area(start, start + size, prot, buf, 0, kind)
        self._insert(area)
        return area

    def map_file(self, start: int, size: int, prot: int, fd: int, offset: int,
                 kind: str = "image") -> Area:
        """A private copy-on-write mapping of host ``fd`` (page-aligned ``offset``)."""
        self._reserve(size)
        area = Area(start, start + size, prot, HostBuffer(size, fd, offset), 0, kind)
        self._insert(area)
        return area

    def map_buffer(self, start: int, size: int, prot: int, buf: HostBuffer, kind: str) -> Area:
        """``buf`` (another owner's host buffer: a shared section) at [start, start+size)."""
        self._reserve(size)
        area = Area(start, start + size, prot, buf, 0, kind)
        self._insert(area)
        return area

    def map_stack(self, top: int, initial: int, maximum: int) -> Area:
        """The stack: ``maximum`` bytes of host buffer, the top ``initial`` mapped."""
        self._reserve(initial)
        buf = HostBuffer(maximum)
        area = Area(top - initial, top, PROT_READ | PROT_WRITE, buf, maximum - initial, "stack")
        self._insert(area)
        return area

    def grow_down(self, area: Area, new_start: int) -> None:
        """Extend ``area`` (the stack) down to ``new_start`` within its buffer."""
        grow = area.start - new_start
        if grow <= 0:
            return
        if new_start < area.start - area.offset or self.overlaps(new_start, area.start):
            raise OutOfMemory("stack cannot grow there")
        self._reserve(grow)
        i = self.areas.index(area)
        area.offset -= grow
        area.start = new_start
        self._starts[i] = new_start
        self.mapped += grow
        if self.engine is not None:
            self.engine.map_area(area, new_start, new_start + grow)

    def grow_up(self, area: Area, new_end: int) -> None:
        """Extend ``area`` (the brk heap) up to ``new_end`` within its buffer."""
        grow = new_end - area.end
        if grow <= 0:
            return
        if area.offset + new_end - area.start > area.buf.size or self.overlaps(area.end, new_end):
            raise OutOfMemory("heap cannot grow there")
        self._reserve(grow)
        old_end, area.end = area.end, new_end
        self.mapped += grow
        if self.engine is not None:
            self.engine.map_area(area, old_end, new_end)

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._starts, end - 1) - 1
        return i >= 0 and self.areas[i].end > start

    def unmap(self, start: int, end: int) -> None:
        """Remove [start, end) from every area it touches (splitting them); give the host
        pages back. Unmapped holes in the range are fine, as for Linux's munmap."""
        if self.engine is not None:
            self.engine.unmap_range(self, start, end)
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while i < len(self.areas):
            a = self.areas[i]
            if a.start >= end:
                break
            if a.end <= start:
                i += 1
                continue
            lo, hi = max(a.start, start), min(a.end, end)
            self._discard_pages(a, lo, hi)
            if a.kind != "sys":
                self.mapped -= hi - lo
            if a.start < lo and hi < a.end:          # a hole in the middle: split in two
                right = Area(hi, a.end, a.prot, a.buf, a.host(hi), a.kind)
                a.end = lo
                self.areas.insert(i + 1, right)
                self._starts.insert(i + 1, hi)
                break
            if a.start < lo:                         # cut the tail
                a.end = lo
                i += 1
            elif hi < a.end:                         # cut the head
                a.offset, a.start = a.host(hi), hi
                self._starts[i] = hi
                i += 1
            else:                                    # the whole area
                del self.areas[i]
                del self._starts[i]
                a.buf.release()

    @staticmethod
    def _discard_pages(a: Area, lo: int, hi: int) -> None:
        if a.buf.users > 1 or lo > a.start or hi < a.end:
            # the buffer outlives this piece: give its pages back, reading as zero again
            a.buf.discard(a.host(lo), hi - lo)

    def protect(self, start: int, end: int, prot: int) -> None:
        """Set the protection of [start, end), which must be mapped (else OutOfMemory)."""
        addr = start
        while addr < end:
            a = self.area_at(addr)
            if a is None or a.kind == "sys":
                raise OutOfMemory("range not mapped")
            addr = a.end
        for cut in (start, end):                     # split at the range's edges
            a = self.area_at(cut)
            if a is not None and a.start < cut:
                i = self.areas.index(a)
                right = Area(cut, a.end, a.prot, a.buf, a.host(cut), a.kind)
                a.end = cut
                self.areas.insert(i + 1, right)
                self._starts.insert(i + 1, cut)
        for a in self.areas:
            if start <= a.start and a.end <= end:
                a.prot = prot
        if self.engine is not None:
            self.engine.protect_range(start, end, prot)

    def find_free(self, size: int, hint: int = 0, top: int = MMAP_TOP) -> int | None:
        """A free range of ``size`` bytes: at ``hint`` if it is free, else the highest gap
        below ``top`` (Linux's top-down search)."""
        if hint and MIN_ADDR <= hint and hint + size <= top and not self.overlaps(hint, hint + size):
            return hint
        ceiling = top
        for a in reversed(self.areas):
            if a.start >= ceiling:
                continue
            if a.end <= ceiling and ceiling - a.end >= size:
                return ceiling - size
            ceiling = min(ceiling, a.start)
        if ceiling - MIN_ADDR >= size:
            return ceiling - size
        return None

    # -- the engine ---------------------------------------------------------------------
    def close(self) -> None:
        """Give every host buffer back (the process has ended and is detached)."""
        for a in self.areas:
            a.buf.release()
        self.areas.clear()
        self._starts.clear()
        self.mapped = 0

    def resident_bytes(self) -> int:
        """Host pages the guest has touched (mincore over every buffer)."""
        return sum(_resident(buf) for buf in {id(a.buf): a.buf for a in self.areas}.values())


def _resident(buf: HostBuffer) -> int:
    pages = (buf.size + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * pages)()
    if _libc.mincore(ctypes.c_void_p(buf.addr), ctypes.c_size_t(buf.size), vec) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return sum(v & 1 for v in vec) * PAGE
