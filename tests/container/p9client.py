"""A small 9P2000.L client for the tests: encode T-messages, decode R-messages.

Written from the protocol (Linux's include/net/9p/9p.h and net/9p/client.c, the diod
protocol page), not from hv's server, so the tests check the server against the wire format.

    c = P9Client(server.handle)            # any callable bytes -> bytes
    c.version(); root = c.attach(0)
    c.walk(0, 1, "etc", "hostname"); c.lopen(1, O_RDONLY); c.read(1, 0, 100)

Every method raises ``P9Lerror(errno)`` on Rlerror. ``decode_reply(reply, request_type)``
parses any R-message completely (every field, no trailing bytes) and is what the fuzz tests
use to call a reply well-formed.
"""
from __future__ import annotations

import errno
import struct
from typing import Callable, NamedTuple

TLERROR, RLERROR = 6, 7
TSTATFS, TLOPEN, TLCREATE, TSYMLINK, TMKNOD, TRENAME, TREADLINK = 8, 12, 14, 16, 18, 20, 22
TGETATTR, TSETATTR, TXATTRWALK, TXATTRCREATE, TREADDIR = 24, 26, 30, 32, 40
TFSYNC, TLOCK, TGETLOCK, TLINK, TMKDIR, TRENAMEAT, TUNLINKAT = 50, 52, 54, 70, 72, 74, 76
TVERSION, TAUTH, TATTACH, TFLUSH, TWALK = 100, 102, 104, 108, 110
TREAD, TWRITE, TCLUNK, TREMOVE = 116, 118, 120, 122

NOTAG, NOFID = 0xFFFF, 0xFFFFFFFF
QTDIR, QTSYMLINK, QTFILE = 0x80, 0x02, 0x00

# Linux's generic open(2) flag values, as 9P2000.L carries them.
O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_DIRECTORY, O_NOFOLLOW = 0o100, 0o200, 0o1000, 0o2000, 0o200000, 0o400000
AT_REMOVEDIR = 0x200

GETATTR_ALL = 0x3FFF
SETATTR_MODE, SETATTR_UID, SETATTR_GID, SETATTR_SIZE = 0x1, 0x2, 0x4, 0x8
SETATTR_ATIME, SETATTR_MTIME, SETATTR_CTIME, SETATTR_ATIME_SET, SETATTR_MTIME_SET = 0x10, 0x20, 0x40, 0x80, 0x100


class P9Lerror(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code, errno.errorcode.get(code, str(code)))
        self.errno = code


class Qid(NamedTuple):
    type: int
    version: int
    path: int


class Attr(NamedTuple):
    valid: int
    qid: Qid
    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime: tuple[int, int]
    mtime: tuple[int, int]
    ctime: tuple[int, int]


class Dirent(NamedTuple):
    qid: Qid
    offset: int
    type: int
    name: bytes


# ---- encoding -------------------------------------------------------------------------------

def s(text: str | bytes) -> bytes:
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    return struct.pack("<H", len(data)) + data


def message(mtype: int, tag: int, body: bytes) -> bytes:
    return struct.pack("<IBH", 7 + len(body), mtype, tag) + body


BODIES: dict[int, Callable[..., bytes]] = {
    TVERSION: lambda msize, version="9P2000.L": struct.pack("<I", msize) + s(version),
    TATTACH: lambda fid, afid=NOFID, uname="", aname="", n_uname=0:
        struct.pack("<II", fid, afid) + s(uname) + s(aname) + struct.pack("<I", n_uname),
    TAUTH: lambda afid, uname="", aname="", n_uname=0:
        struct.pack("<I", afid) + s(uname) + s(aname) + struct.pack("<I", n_uname),
    TFLUSH: lambda oldtag: struct.pack("<H", oldtag),
    TWALK: lambda fid, newfid, *names: struct.pack("<IIH", fid, newfid, len(names)) + b"".join(map(s, names)),
    TLOPEN: lambda fid, flags: struct.pack("<II", fid, flags),
    TLCREATE: lambda fid, name, flags, mode, gid=0: struct.pack("<I", fid) + s(name) + struct.pack("<III", flags, mode, gid),
    TREAD: lambda fid, offset, count: struct.pack("<IQI", fid, offset, count),
    TWRITE: lambda fid, offset, data: struct.pack("<IQI", fid, offset, len(data)) + bytes(data),
    TCLUNK: lambda fid: struct.pack("<I", fid),
    TREMOVE: lambda fid: struct.pack("<I", fid),
    TGETATTR: lambda fid, mask=GETATTR_ALL: struct.pack("<IQ", fid, mask),
    TSETATTR: lambda fid, valid, mode=0, uid=0, gid=0, size=0, atime=(0, 0), mtime=(0, 0):
        struct.pack("<IIIIIQQQQQ", fid, valid, mode, uid, gid, size, *atime, *mtime),
    TREADDIR: lambda fid, offset, count: struct.pack("<IQI", fid, offset, count),
    TMKDIR: lambda dfid, name, mode, gid=0: struct.pack("<I", dfid) + s(name) + struct.pack("<II", mode, gid),
    TSYMLINK: lambda dfid, name, target, gid=0: struct.pack("<I", dfid) + s(name) + s(target) + struct.pack("<I", gid),
    TREADLINK: lambda fid: struct.pack("<I", fid),
    TLINK: lambda dfid, fid, name: struct.pack("<II", dfid, fid) + s(name),
    TRENAME: lambda fid, dfid, name: struct.pack("<II", fid, dfid) + s(name),
    TRENAMEAT: lambda olddir, oldname, newdir, newname:
        struct.pack("<I", olddir) + s(oldname) + struct.pack("<I", newdir) + s(newname),
    TUNLINKAT: lambda dfid, name, flags=0: struct.pack("<I", dfid) + s(name) + struct.pack("<I", flags),
    TSTATFS: lambda fid: struct.pack("<I", fid),
    TFSYNC: lambda fid, datasync=0: struct.pack("<II", fid, datasync),
    TMKNOD: lambda dfid, name, mode, major=0, minor=0, gid=0:
        struct.pack("<I", dfid) + s(name) + struct.pack("<IIII", mode, major, minor, gid),
    TXATTRWALK: lambda fid, newfid, name: struct.pack("<II", fid, newfid) + s(name),
    TXATTRCREATE: lambda fid, name, size, flags=0: struct.pack("<I", fid) + s(name) + struct.pack("<QI", size, flags),
    TLOCK: lambda fid, ltype, flags=0, start=0, length=0, proc_id=1, client_id="hv":
        struct.pack("<IBIQQI", fid, ltype, flags, start, length, proc_id) + s(client_id),
    TGETLOCK: lambda fid, ltype, start=0, length=0, proc_id=1, client_id="hv":
        struct.pack("<IBQQI", fid, ltype, start, length, proc_id) + s(client_id),
}


def encode(mtype: int, *args, tag: int = 1, **kw) -> bytes:
    return message(mtype, tag, BODIES[mtype](*args, **kw))


# ---- decoding ---------------------------------------------------------------------------------

class _Body:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        st = struct.Struct("<" + fmt)
        if self.pos + st.size > len(self.data):
            raise ValueError("truncated reply")
        out = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return out

    def qid(self) -> Qid:
        return Qid(*self.take("BIQ"))

    def str(self) -> bytes:
        (n,) = self.take("H")
        return self.bytes(n)

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated reply")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} trailing bytes in the reply")


def _dirents(b: _Body) -> list[Dirent]:
    (count,) = b.take("I")
    inner = _Body(b.bytes(count))
    out = []
    while inner.pos < count:
        out.append(Dirent(inner.qid(), *inner.take("QB"), inner.str()))
    return out


def _attr(b: _Body) -> Attr:
    valid = b.take("Q")[0]
    qid = b.qid()
    mode, uid, gid = b.take("III")
    nlink, rdev, size, blksize, blocks = b.take("QQQQQ")
    t = b.take("QQQQQQQQQQ")
    return Attr(valid, qid, mode, uid, gid, nlink, rdev, size, blksize, blocks, t[0:2], t[2:4], t[4:6])


DECODERS: dict[int, Callable[[_Body], object]] = {
    TVERSION: lambda b: (b.take("I")[0], b.str()),
    TATTACH: lambda b: b.qid(),
    TAUTH: lambda b: b.qid(),
    TFLUSH: lambda b: None,
    TWALK: lambda b: [b.qid() for _ in range(b.take("H")[0])],
    TLOPEN: lambda b: (b.qid(), b.take("I")[0]),
    TLCREATE: lambda b: (b.qid(), b.take("I")[0]),
    TREAD: lambda b: b.bytes(b.take("I")[0]),
    TWRITE: lambda b: b.take("I")[0],
    TCLUNK: lambda b: None,
    TREMOVE: lambda b: None,
    TGETATTR: _attr,
    TSETATTR: lambda b: None,
    TREADDIR: _dirents,
    TMKDIR: lambda b: b.qid(),
    TSYMLINK: lambda b: b.qid(),
    TREADLINK: lambda b: b.str(),
    TLINK: lambda b: None,
    TRENAME: lambda b: None,
    TRENAMEAT: lambda b: None,
    TUNLINKAT: lambda b: None,
    TSTATFS: lambda b: b.take("IIQQQQQQI"),
    TFSYNC: lambda b: None,
    TMKNOD: lambda b: b.qid(),
    TXATTRWALK: lambda b: b.take("Q")[0],
    TXATTRCREATE: lambda b: None,
    TLOCK: lambda b: b.take("B")[0],
    TGETLOCK: lambda b: (*b.take("BQQI"), b.str()),
}

MAX_ERRNO = 4095


def decode_reply(reply: bytes, request_type: int | None = None):
    """(type, tag, value) of a complete R-message; ValueError unless it is well-formed: the
    size field is the length, the type answers ``request_type`` (or is Rlerror), every field
    is there and nothing follows. Rlerror's value is its errno (1..4095)."""
    if len(reply) < 7:
        raise ValueError("reply shorter than a header")
    size, rtype, tag = struct.unpack_from("<IBH", reply)
    if size != len(reply):
        raise ValueError(f"size field {size}, reply of {len(reply)} bytes")
    body = _Body(reply[7:])
    if rtype == RLERROR:
        (code,) = body.take("I")
        body.end()
        if not 1 <= code <= MAX_ERRNO:
            raise ValueError(f"Rlerror with errno {code}")
        return rtype, tag, code
    if rtype & 1 == 0 or (request_type is not None and rtype != request_type + 1):
        raise ValueError(f"type {rtype} does not answer {request_type}")
    decoder = DECODERS.get(rtype - 1)
    if decoder is None:
        raise ValueError(f"unknown reply type {rtype}")
    value = decoder(body)
    body.end()
    return rtype, tag, value


# ---- the client -----------------------------------------------------------------------------------

class P9Client:
    """Blocking calls over ``transport(bytes) -> bytes``; tags count up from 1."""

    def __init__(self, transport: Callable[[bytes], bytes]) -> None:
        self.transport = transport
        self.tag = 0

    def rpc(self, mtype: int, *args, **kw):
        self.tag = (self.tag + 1) % NOTAG
        tag = NOTAG if mtype == TVERSION else self.tag
        rtype, rtag, value = decode_reply(self.transport(encode(mtype, *args, tag=tag, **kw)), mtype)
        if rtag != tag:
            raise ValueError(f"reply tag {rtag} for request tag {tag}")
        if rtype == RLERROR:
            raise P9Lerror(value)
        return value

    def version(self, msize: int = 65536, version: str = "9P2000.L"):
        return self.rpc(TVERSION, msize, version)

    def attach(self, fid: int, afid: int = NOFID, uname: str = "root", aname: str = "", n_uname: int = 0) -> Qid:
        return self.rpc(TATTACH, fid, afid, uname, aname, n_uname)

    def walk(self, fid: int, newfid: int, *names) -> list[Qid]:
        return self.rpc(TWALK, fid, newfid, *names)

    def lopen(self, fid: int, flags: int):
        return self.rpc(TLOPEN, fid, flags)

    def lcreate(self, fid: int, name, flags: int, mode: int = 0o644, gid: int = 0):
        return self.rpc(TLCREATE, fid, name, flags, mode, gid)

    def read(self, fid: int, offset: int, count: int) -> bytes:
        return self.rpc(TREAD, fid, offset, count)

    def read_all(self, fid: int, chunk: int = 8192) -> bytes:
        out, offset = bytearray(), 0
        while data := self.read(fid, offset, chunk):
            out += data
            offset += len(data)
        return bytes(out)

    def write(self, fid: int, offset: int, data: bytes) -> int:
        return self.rpc(TWRITE, fid, offset, data)

    def clunk(self, fid: int) -> None:
        self.rpc(TCLUNK, fid)

    def remove(self, fid: int) -> None:
        self.rpc(TREMOVE, fid)

    def getattr(self, fid: int, mask: int = GETATTR_ALL) -> Attr:
        return self.rpc(TGETATTR, fid, mask)

    def setattr(self, fid: int, valid: int, **kw) -> None:
        self.rpc(TSETATTR, fid, valid, **kw)

    def readdir(self, fid: int, offset: int = 0, count: int = 8192) -> list[Dirent]:
        return self.rpc(TREADDIR, fid, offset, count)

    def readdir_all(self, fid: int, count: int = 8192) -> list[Dirent]:
        out, offset = [], 0
        while batch := self.readdir(fid, offset, count):
            out += batch
            offset = batch[-1].offset
        return out

    def mkdir(self, dfid: int, name, mode: int = 0o755, gid: int = 0) -> Qid:
        return self.rpc(TMKDIR, dfid, name, mode, gid)

    def symlink(self, dfid: int, name, target, gid: int = 0) -> Qid:
        return self.rpc(TSYMLINK, dfid, name, target, gid)

    def readlink(self, fid: int) -> bytes:
        return self.rpc(TREADLINK, fid)

    def link(self, dfid: int, fid: int, name) -> None:
        self.rpc(TLINK, dfid, fid, name)

    def rename(self, fid: int, dfid: int, name) -> None:
        self.rpc(TRENAME, fid, dfid, name)

    def renameat(self, olddir: int, oldname, newdir: int, newname) -> None:
        self.rpc(TRENAMEAT, olddir, oldname, newdir, newname)

    def unlinkat(self, dfid: int, name, flags: int = 0) -> None:
        self.rpc(TUNLINKAT, dfid, name, flags)

    def statfs(self, fid: int) -> tuple:
        return self.rpc(TSTATFS, fid)

    def fsync(self, fid: int, datasync: int = 0) -> None:
        self.rpc(TFSYNC, fid, datasync)

    def flush(self, oldtag: int) -> None:
        self.rpc(TFLUSH, oldtag)

    def mknod(self, dfid: int, name, mode: int, major: int = 0, minor: int = 0) -> Qid:
        return self.rpc(TMKNOD, dfid, name, mode, major, minor)

    def xattrwalk(self, fid: int, newfid: int, name) -> int:
        return self.rpc(TXATTRWALK, fid, newfid, name)

    def xattrcreate(self, fid: int, name, size: int, flags: int = 0) -> None:
        self.rpc(TXATTRCREATE, fid, name, size, flags)

    def lock(self, fid: int, ltype: int, **kw) -> int:
        return self.rpc(TLOCK, fid, ltype, **kw)

    def getlock(self, fid: int, ltype: int, **kw):
        return self.rpc(TGETLOCK, fid, ltype, **kw)

    # ---- conveniences ----------------------------------------------------------------------------

    def mount(self, msize: int = 65536, fid: int = 0) -> Qid:
        self.version(msize)
        return self.attach(fid)

    def open_path(self, path: str, flags: int = O_RDONLY, fid: int = 100, root: int = 0):
        """Walk from ``root`` to ``path`` (names split on '/') into ``fid`` and open it."""
        names = [p for p in path.split("/") if p]
        self.walk(root, fid, *names)
        return self.lopen(fid, flags)

    def cat(self, path: str, fid: int = 100, root: int = 0) -> bytes:
        self.open_path(path, O_RDONLY, fid, root)
        try:
            return self.read_all(fid)
        finally:
            self.clunk(fid)
