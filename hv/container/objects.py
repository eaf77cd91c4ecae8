"""Named objects: shared-memory sections and pipes, in hv's host-wide namespace (hvobj.h).

Unlike files and registry keys these are not layered. ``Global\\name`` is one namespace for
every container of a Kernel (one hv process): the documented way, and a weak spot, through
which one container reaches another's data. ``Local\\name`` (or a bare name) is the
container's own namespace.

    objects = NamedObjects()
    calls = objects.calls_for("web-1")       # one per container
    Process(..., extra_calls=calls.table)    # 0x1100 map_section, 0x1101 open_pipe
    calls.process = p

Every argument is hostile: names are bounded and checked, sizes capped (MAX_SECTION), the
objects one container creates and the objects alive are counted (ENOSPC), and a section's
memory is charged to every process that maps a view (its limit, the host budget).
"""
from __future__ import annotations

import errno

from hv.container.fdtable import Pipe, PipeEnd, _err
from hv.container.guest_memory import HostBuffer
from hv.container.loader import PAGE, PROT_READ, PROT_WRITE

NR_MAP_SECTION, NR_OPEN_PIPE = 0x1100, 0x1101
CREATE, EXCL, WRITE = 0x1, 0x2, 0x4
MAX_NAME = 255
MAX_SECTION = 64 << 20
MAX_PER_CONTAINER = 256
MAX_OBJECTS = 4096
GLOBAL, LOCAL = "Global\\", "Local\\"


class SectionBuffer(HostBuffer):
    """A section's memory: shared by every view, so a view going away never discards
    pages (the others still see them); freed with the last view."""

    __slots__ = ("on_free",)

    def discard(self, offset: int, length: int) -> None:
        pass

    def release(self) -> None:
        super().release()
        if self.users == 0:
            self.on_free()


class Section:
    kind = "section"

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = SectionBuffer((size + PAGE - 1) & ~(PAGE - 1))


class NamedPipe(Pipe):
    """hvobj.h's pipe: a read before any writer connected waits (not end of file); a write
    before any reader connected is kept."""
    kind = "pipe"

    def __init__(self) -> None:
        super().__init__()
        self.had_writer = self.had_reader = False
        self.on_idle = None

    def at_eof(self) -> bool:
        return self.had_writer and self.writers == 0

    def broken(self) -> bool:
        return self.had_reader and self.readers == 0


class NamedPipeEnd(PipeEnd):
    def __init__(self, pipe: NamedPipe, write: bool) -> None:
        super().__init__(pipe, write, 0)
        if write:
            pipe.had_writer = True
        else:
            pipe.had_reader = True

    def close(self):
        super().close()
        p = self.pipe
        if p.readers == 0 and p.writers == 0 and (not p.data or p.had_reader):
            p.on_idle()          # no end open and nothing a reader could still get


class NamedObjects:
    """The host kernel's object namespaces: Global (one) and Local (one per container)."""

    def __init__(self, max_objects: int = MAX_OBJECTS, max_per_container: int = MAX_PER_CONTAINER) -> None:
        self.max_objects, self.max_per_container = max_objects, max_per_container
        self.table: dict[tuple[str, str], object] = {}    # (namespace, name) -> Section | NamedPipe
        self.created: dict[str, int] = {}                 # container -> objects it created, alive

    def calls_for(self, container: str) -> "ObjectCalls":
        return ObjectCalls(self, container)

    def names(self, namespace: str = "Global") -> list[str]:
        return sorted(n for ns, n in self.table if ns == namespace)

    def _add(self, key, obj, creator: str) -> None:
        if len(self.table) >= self.max_objects or self.created.get(creator, 0) >= self.max_per_container:
            raise _err(errno.ENOSPC)
        self.table[key] = obj
        self.created[creator] = self.created.get(creator, 0) + 1

        def gone():
            if self.table.get(key) is obj:
                del self.table[key]
                self.created[creator] -= 1
        return gone


class ObjectCalls:
    """One container's view of the namespaces: the two private system calls."""

    def __init__(self, objects: NamedObjects, container: str) -> None:
        self.objects, self.container = objects, container
        self.process = None
        self.table = {NR_MAP_SECTION: self._errno(self.map_section),
                      NR_OPEN_PIPE: self._errno(self.open_pipe)}

    @staticmethod
    def _errno(fn):
        def call(nr, args, mem) -> int:
            try:
                return fn(args)
            except OSError as e:
                return -e.errno
        return call

    def _key(self, addr: int) -> tuple[str, str]:
        raw = self.process.space.read_cstr(addr, len(LOCAL) + MAX_NAME + 2)   # GuestFault: -EFAULT
        if raw is None:
            raise _err(errno.ENAMETOOLONG)
        name = raw.decode("utf-8", "surrogateescape")
        if name.startswith(GLOBAL):
            ns, rest = "Global", name[len(GLOBAL):]
        else:
            ns, rest = "Local:" + self.container, name[len(LOCAL):] if name.startswith(LOCAL) else name
        if len(rest.encode("utf-8", "surrogateescape")) > MAX_NAME:
            raise _err(errno.ENAMETOOLONG)
        if not rest or "\\" in rest or any(ord(c) < 32 or ord(c) == 127 for c in rest):
            raise _err(errno.EINVAL)
        return ns, rest

    def _existing(self, key, kind: str, flags: int):
        """(the object named ``key``, 0), (None, 0) when CREATE may make it, or (None, -errno)."""
        obj = self.objects.table.get(key)
        if obj is None:
            return None, (0 if flags & CREATE else -errno.ENOENT)
        if obj.kind != kind:
            return None, -errno.EPROTOTYPE
        return (None, -errno.EEXIST) if flags & EXCL else (obj, 0)

    def map_section(self, args) -> int:
        name_ptr, size, flags = args[0], args[1], args[2]
        if flags & ~(CREATE | EXCL) or (flags & EXCL and not flags & CREATE):
            return -errno.EINVAL
        key = self._key(name_ptr)
        obj, error = self._existing(key, "section", flags)
        if error:
            return error
        created = False
        if obj is None:
            if size == 0:
                return -errno.EINVAL
            if size > MAX_SECTION:
                return -errno.EFBIG
            obj = Section(size)
            obj.buf.on_free = self.objects._add(key, obj, self.container)
            created = True
        view = size or obj.size
        if view > obj.size:
            return -errno.EINVAL
        view = (view + PAGE - 1) & ~(PAGE - 1)
        space = self.process.space
        start = space.find_free(view)
        try:
            if start is None:
                return -errno.ENOMEM
            space.map_buffer(start, view, PROT_READ | PROT_WRITE, obj.buf, "section")
        finally:
            if created and obj.buf.users == 0:       # no view after all: the section goes
                obj.buf.users = 1
                obj.buf.release()
        return start

    def open_pipe(self, args) -> int:
        name_ptr, flags = args[0], args[1]
        if flags & ~(CREATE | EXCL | WRITE) or (flags & EXCL and not flags & CREATE):
            return -errno.EINVAL
        key = self._key(name_ptr)
        obj, error = self._existing(key, "pipe", flags)
        if error:
            return error
        if obj is None:
            obj = NamedPipe()
            obj.on_idle = self.objects._add(key, obj, self.container)
        end = NamedPipeEnd(obj, bool(flags & WRITE))
        try:
            return self.process.fds.install(end)
        except OSError:
            end.close()
            raise

