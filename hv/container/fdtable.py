"""A guest process's file descriptors and the open files behind them.

An fd is a slot in a bounded table (``EMFILE`` past ``limit``) that points at an
open file description (``OpenFile``), shared by ``dup`` and friends as in
Linux: the offset and status flags belong to the description, close-on-exec to
the slot. Kinds of open file:

* ``HostFile``: a host fd the layered root opened (regular files, directories);
  the host fd keeps the offset;
* ``DevNull``, ``DevZero``, ``DevRandom``: the devices hv serves itself;
* ``Stream``: the caller's stdin/stdout/stderr, a host fd or a Python file object;
* ``PipeEnd``: one end of a pipe held in host memory (64 KiB, as Linux's default).

A call that would block raises ``WouldBlock`` with a ``Wait`` saying for what;
the process then leaves the engine and runs the call again once the wait is over.
"""
from __future__ import annotations

import errno
import os
import select
import stat as stat_mod
import time

PIPE_CAPACITY = 65536
IO_CHUNK = 64 << 10             # host I/O is done in pieces of at most this many bytes

# open(2) flags, Linux i386 values
O_ACCMODE, O_RDONLY, O_WRONLY, O_RDWR = 3, 0, 1, 2
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC, O_APPEND, O_NONBLOCK = 0o100, 0o200, 0o400, 0o1000, 0o2000, 0o4000
O_DSYNC, O_ASYNC, O_DIRECT, O_LARGEFILE, O_DIRECTORY = 0o10000, 0o20000, 0o40000, 0o100000, 0o200000
O_NOFOLLOW, O_NOATIME, O_CLOEXEC, O_SYNC, O_PATH, O_TMPFILE = (0o400000, 0o1000000, 0o2000000,
                                                              0o4010000, 0o10000000, 0o20200000)
STATUS_FLAGS = O_APPEND | O_NONBLOCK   # what F_SETFL may change (O_ASYNC/O_DIRECT: not served)

# Linux flag bit -> host os flag, for opening through the root.
_HOST_OPEN = ((O_CREAT, os.O_CREAT), (O_EXCL, os.O_EXCL), (O_TRUNC, os.O_TRUNC),
              (O_APPEND, os.O_APPEND), (O_DIRECTORY, os.O_DIRECTORY), (O_NOFOLLOW, os.O_NOFOLLOW),
              (O_DSYNC, os.O_DSYNC), (O_NOCTTY, os.O_NOCTTY))


def host_open_flags(flags: int) -> int:
    out = (os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_RDWR)[flags & O_ACCMODE]
    for linux, host in _HOST_OPEN:
        if flags & linux:
            out |= host
    return out | os.O_CLOEXEC | os.O_NONBLOCK   # never block the host thread on an open fifo


# -- waiting ------------------------------------------------------------------------------
class Wait:
    """What a blocked call waits for."""

    def ready(self) -> bool:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> None:
        """Block the host thread until ready or ``timeout`` seconds have passed."""
        raise NotImplementedError


class SleepUntil(Wait):
    def __init__(self, deadline_ns: int) -> None:
        self.deadline_ns = deadline_ns

    def ready(self) -> bool:
        return time.monotonic_ns() >= self.deadline_ns

    def wait(self, timeout=None) -> None:
        left = (self.deadline_ns - time.monotonic_ns()) / 1e9
        if timeout is not None:
            left = min(left, timeout)
        if left > 0:
            time.sleep(left)


class WaitFd(Wait):
    """A host fd becoming readable or writable."""

    def __init__(self, fd: int, write: bool) -> None:
        self.fd, self.write = fd, write

    def _poll(self, timeout) -> bool:
        r, w, x = select.select([] if self.write else [self.fd], [self.fd] if self.write else [],
                                [self.fd], timeout)
        return bool(r or w or x)

    def ready(self) -> bool:
        return self._poll(0)

    def wait(self, timeout=None) -> None:
        self._poll(timeout)


class WaitPipe(Wait):
    """Data in (or room in) a pipe; another process's call ends the wait."""

    def __init__(self, pipe: "Pipe", write: bool) -> None:
        self.pipe, self.write = pipe, write

    def ready(self) -> bool:
        p = self.pipe
        if self.write:
            return len(p.data) < PIPE_CAPACITY or p.broken()
        return bool(p.data) or p.at_eof()

    def wait(self, timeout=None) -> None:
        # Nothing else runs in this host thread; a scheduler with other processes polls ready().
        if not self.ready():
            time.sleep(timeout if timeout is not None else 0.01)


class WouldBlock(Exception):
    def __init__(self, wait: Wait) -> None:
        super().__init__("would block")
        self.wait = wait


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


# -- open files ---------------------------------------------------------------------------
class OpenFile:
    """An open file description. Methods raise OSError (errno) or WouldBlock."""

    kind = "file"
    seekable = False
    is_devnull = False

    def __init__(self, flags: int) -> None:
        self.flags = flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC)
        self.refs = 0
        self.guest_path = None      # for fchdir, getdents, strace

    @property
    def readable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_RDONLY, O_RDWR)

    @property
    def writable(self) -> bool:
        return (self.flags & O_ACCMODE) in (O_WRONLY, O_RDWR)

    def read_into(self, views: list[memoryview], n: int) -> int:
        """Read up to ``n`` bytes into ``views`` (guest memory); returns the count."""
        raise _err(errno.EINVAL)

    def write_from(self, data: bytes) -> int:
        raise _err(errno.EINVAL)

    def lseek(self, offset: int, whence: int) -> int:
        raise _err(errno.ESPIPE)

    def stat(self) -> StatInfo:
        raise _err(errno.EBADF)

    def host_fd(self) -> int | None:
        return None

    def truncate(self, length: int) -> None:
        raise _err(errno.EINVAL)

    def sync(self) -> None:
        return None

    def close(self) -> None:
        return None


def _fill(views: list[memoryview], data: bytes) -> None:
    pos = 0
    for v in views:
        take = min(len(v), len(data) - pos)
        if take <= 0:
            break
        v[:take] = data[pos:pos + take]
        pos += take


class StatInfo:
    """What stat64/statx report about a file (host stat results and hv's own devices)."""

    __slots__ = ("mode", "ino", "dev", "nlink", "uid", "gid", "size", "rdev", "blksize", "blocks",
                 "atime_ns", "mtime_ns", "ctime_ns")

    def __init__(self, mode, ino=1, dev=5, nlink=1, uid=0, gid=0, size=0, rdev=0, blksize=4096,
                 blocks=0, atime_ns=0, mtime_ns=0, ctime_ns=0) -> None:
        self.mode, self.ino, self.dev, self.nlink, self.uid, self.gid = mode, ino, dev, nlink, uid, gid
        self.size, self.rdev, self.blksize, self.blocks = size, rdev, blksize, blocks
        self.atime_ns, self.mtime_ns, self.ctime_ns = atime_ns, mtime_ns, ctime_ns

    @classmethod
    def of(cls, st: os.stat_result) -> "StatInfo":
        return cls(st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                   st.st_rdev, st.st_blksize, st.st_blocks, st.st_atime_ns, st.st_mtime_ns,
                   st.st_ctime_ns)


def _synthetic_stat(mode: int, rdev: int = 0, ino: int = 1) -> StatInfo:
    return StatInfo(mode, ino=ino, rdev=rdev)


class HostFile(OpenFile):
    """A file or directory opened through the layered root."""

    seekable = True

    def __init__(self, fd: int, flags: int, guest_path: str, root=None) -> None:
        super().__init__(flags)
        self.fd = fd
        self.guest_path = guest_path
        self.root = root
        self.is_dir = stat_mod.S_ISDIR(os.fstat(fd).st_mode)
        self.kind = "dir" if self.is_dir else "file"
        self.dir_entries = None     # getdents64 snapshot: [(name, ino, d_type)]
        self.dir_pos = 0

    def host_fd(self) -> int:
        return self.fd

    def read_into(self, views, n):
        if self.is_dir:
            raise _err(errno.EISDIR)
        total = 0
        for v in views:
            while len(v):
                try:
                    got = os.readv(self.fd, [v[:IO_CHUNK]])
                except BlockingIOError:
                    if total:
                        return total
                    if self.flags & O_NONBLOCK:
                        raise _err(errno.EAGAIN)
                    raise WouldBlock(WaitFd(self.fd, write=False)) from None
                total += got
                if got < min(len(v), IO_CHUNK):
                    return total
                v = v[got:]
        return total

    def write_from(self, data):
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            if self.flags & O_NONBLOCK:
                raise _err(errno.EAGAIN)
            raise WouldBlock(WaitFd(self.fd, write=True)) from None

    def lseek(self, offset, whence):
        if self.is_dir:
            if whence != os.SEEK_SET or offset < 0:
                raise _err(errno.EINVAL)
            self.dir_pos = offset
            if offset == 0:
                self.dir_entries = None     # rewinddir: a fresh listing
            return offset
        return os.lseek(self.fd, offset, whence)

    def stat(self):
        return StatInfo.of(os.fstat(self.fd))

    def truncate(self, length):
        if not self.writable:
            raise _err(errno.EINVAL)
        os.ftruncate(self.fd, length)

    def sync(self):
        os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


class DevNull(OpenFile):
    kind = "dev"
    is_devnull = True
    seekable = True

    def read_into(self, views, n):
        return 0

    def write_from(self, data):
        return len(data)

    def lseek(self, offset, whence):
        return 0

    def stat(self):
        return _synthetic_stat(stat_mod.S_IFCHR | 0o666, os.makedev(1, 3), 4)


class DevZero(DevNull):
    is_devnull = False

    def read_into(self, views, n):
        total = 0
        for v in views:
            v[:] = bytes(len(v))
            total += len(v)
        return total

    def stat(self):
        return _synthetic_stat(stat_mod.S_IFCHR | 0o666, os.makedev(1, 5), 5)


class DevRandom(DevNull):
    is_devnull = False

    def read_into(self, views, n):
        total = 0
        for v in views:
            for at in range(0, len(v), IO_CHUNK):
                piece = v[at:at + IO_CHUNK]
                piece[:] = os.urandom(len(piece))
            total += len(v)
        return total

    def stat(self):
        return _synthetic_stat(stat_mod.S_IFCHR | 0o666, os.makedev(1, 9), 9)


class Stream(OpenFile):
    """stdin/stdout/stderr: a host fd (used as is, not owned) or a Python binary file object."""

    kind = "stream"

    def __init__(self, target, flags: int) -> None:
        super().__init__(flags)
        self.target = target
        self.fd = target if isinstance(target, int) else None

    def host_fd(self):
        return self.fd

    def read_into(self, views, n):
        if self.fd is not None:
            if not WaitFd(self.fd, write=False).ready():
                if self.flags & O_NONBLOCK:
                    raise _err(errno.EAGAIN)
                raise WouldBlock(WaitFd(self.fd, write=False))
            data = os.read(self.fd, min(n, IO_CHUNK))
        elif self.target is None:
            data = b""
        else:
            reader = getattr(self.target, "read1", self.target.read)
            data = reader(min(n, IO_CHUNK)) or b""
        _fill(views, data)
        return len(data)

    def write_from(self, data):
        if self.fd is not None:
            try:
                return os.write(self.fd, data)
            except BlockingIOError:
                raise WouldBlock(WaitFd(self.fd, write=True)) from None
        if self.target is None:
            return len(data)
        self.target.write(data)
        flush = getattr(self.target, "flush", None)
        if flush is not None:
            flush()
        return len(data)

    def lseek(self, offset, whence):
        if self.fd is not None:
            return os.lseek(self.fd, offset, whence)
        raise _err(errno.ESPIPE)

    def stat(self):
        if self.fd is not None:
            return StatInfo.of(os.fstat(self.fd))
        # A Python object behaves as a pipe would (stdio then buffers fully, as under a pipe).
        return _synthetic_stat(stat_mod.S_IFIFO | 0o600, 0, 6)


class Pipe:
    def __init__(self) -> None:
        self.data = bytearray()
        self.readers = 0
        self.writers = 0
        self.ino = id(self) & 0xFFFFFFF

    def at_eof(self) -> bool:
        """An empty pipe reads as end of file: no writer is left."""
        return self.writers == 0

    def broken(self) -> bool:
        """A write fails with EPIPE: no reader is left."""
        return self.readers == 0


class PipeEnd(OpenFile):
    kind = "pipe"

    def __init__(self, pipe: Pipe, write: bool, flags: int) -> None:
        super().__init__((O_WRONLY if write else O_RDONLY) | (flags & O_NONBLOCK))
        self.pipe, self.write_end = pipe, write
        if write:
            pipe.writers += 1
        else:
            pipe.readers += 1

    def read_into(self, views, n):
        p = self.pipe
        if not p.data:
            if p.at_eof():
                return 0
            if self.flags & O_NONBLOCK:
                raise _err(errno.EAGAIN)
            raise WouldBlock(WaitPipe(p, write=False))
        take = min(n, len(p.data))
        _fill(views, bytes(p.data[:take]))
        del p.data[:take]
        return take

    def write_from(self, data):
        p = self.pipe
        if p.broken():
            raise _err(errno.EPIPE)
        room = PIPE_CAPACITY - len(p.data)
        if room <= 0:
            if self.flags & O_NONBLOCK:
                raise _err(errno.EAGAIN)
            raise WouldBlock(WaitPipe(p, write=True))
        take = min(room, len(data))
        p.data += data[:take]
        return take

    def stat(self):
        return _synthetic_stat(stat_mod.S_IFIFO | 0o600, 0, self.pipe.ino)

    def close(self):
        if self.write_end:
            self.pipe.writers -= 1
        else:
            self.pipe.readers -= 1


# -- the table ----------------------------------------------------------------------------
class FdTable:
    """fd -> OpenFile, lowest free number first, at most ``limit`` fds."""

    def __init__(self, limit: int = 1024, on_change=None) -> None:
        self.limit = limit
        self.files: dict[int, OpenFile] = {}
        self.cloexec: set[int] = set()
        self.on_change = on_change      # fn(fd, OpenFile | None): keeps the C side current

    def get(self, fd: int) -> OpenFile:
        f = self.files.get(fd)
        if f is None:
            raise _err(errno.EBADF)
        return f

    def lowest_free(self, start: int = 0) -> int:
        fd = start
        while fd in self.files:
            fd += 1
        if fd >= self.limit:
            raise _err(errno.EMFILE)
        return fd

    def install(self, f: OpenFile, start: int = 0, cloexec: bool = False, at: int | None = None) -> int:
        """Put ``f`` in the lowest free slot >= ``start`` (or in slot ``at``, closing what
        was there); returns the fd."""
        if at is None:
            fd = self.lowest_free(start)
        else:
            if not 0 <= at < self.limit:
                raise _err(errno.EBADF)
            fd = at
            if fd in self.files:
                self.close(fd)
        f.refs += 1
        self.files[fd] = f
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        if self.on_change is not None:
            self.on_change(fd, f)
        return fd

    def close(self, fd: int) -> None:
        f = self.files.pop(fd, None)
        if f is None:
            raise _err(errno.EBADF)
        self.cloexec.discard(fd)
        if self.on_change is not None:
            self.on_change(fd, None)
        f.refs -= 1
        if f.refs == 0:
            f.close()

    def close_all(self) -> None:
        for fd in list(self.files):
            try:
                self.close(fd)
            except OSError:
                pass
