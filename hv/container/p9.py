"""A 9P2000.L server over a container's layered root: how a utility VM reaches its files.

A utility VM's kernel forwards file-system calls to the host as 9P2000.L messages (the
protocol of QEMU's ``-virtfs``, WSL2 and LCOW; Linux's v9fs is a client). ``P9Server`` is one
connection: it keeps the negotiated message size and the fid table, and answers one
T-message with one R-message:

    server = P9Server(root)                 # root: hv.container.layers.LayeredRoot
    reply = server.handle(message)          # bytes in, bytes out; never raises

Every path is resolved by the same ``LayeredRoot`` that serves process containers, so copy-up,
whiteouts, volumes and confinement (``..`` at the root stays there, absolute symlinks start
at the container's root) are exactly theirs: a measured difference between the two
container flavours is the cost of the channel.

Fids name canonical guest paths (QEMU's path-based model): a walk moves one name at a time
and never follows a symlink, renames carry the fids below the renamed name along, and a fid
whose file was removed answers ENOENT (an open one keeps its host descriptor and goes on
reading and writing, as an unlinked open file does). qid.path is the layered root's stable
inode number; qid.version is 0 (no client-side cache validation by version).

Messages are hostile: sizes, counts, fids, offsets, flags and strings are checked before use.
A malformed message gets Rlerror (EPROTO: truncated, trailing bytes, size field wrong;
EMSGSIZE: larger than msize; EOPNOTSUPP: a type this server does not serve; EBADF: no such
fid; EINVAL: fid in use, bad argument), and limits bound what one connection holds (fids,
open files, directory listings). See ``docs/9p.md`` for every message, rule and limit.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import struct
import time
from collections import Counter
from typing import Callable

from hv.container.layers import DT_DIR, DT_LNK, FsError, LayeredRoot, _ino as inode_number

log = logging.getLogger(__name__)

# ---- protocol constants (Linux include/net/9p/9p.h) ----------------------------------------

TLERROR, RLERROR = 6, 7
TSTATFS, TLOPEN, TLCREATE, TSYMLINK, TMKNOD, TRENAME, TREADLINK = 8, 12, 14, 16, 18, 20, 22
TGETATTR, TSETATTR, TXATTRWALK, TXATTRCREATE, TREADDIR = 24, 26, 30, 32, 40
TFSYNC, TLOCK, TGETLOCK, TLINK, TMKDIR, TRENAMEAT, TUNLINKAT = 50, 52, 54, 70, 72, 74, 76
TVERSION, TAUTH, TATTACH, TERROR, TFLUSH, TWALK = 100, 102, 104, 106, 108, 110
TOPEN, TCREATE, TREAD, TWRITE, TCLUNK, TREMOVE, TSTAT, TWSTAT = 112, 114, 116, 118, 120, 122, 124, 126

NOTAG = 0xFFFF
NOFID = 0xFFFFFFFF
MAXWELEM = 16                     # names in one Twalk
IOHDRSZ = 24                      # room Linux keeps for a Tread/Twrite header
HEADER = struct.Struct("<IBH")    # size[4] type[1] tag[2]
VERSION = b"9P2000.L"

QTDIR, QTSYMLINK, QTFILE = 0x80, 0x02, 0x00

# Tlopen / Tlcreate flags: Linux's generic open(2) values, whatever the host's are.
P9_DOTL_ACCMODE = 0o3
P9_DOTL_CREATE, P9_DOTL_EXCL, P9_DOTL_TRUNC, P9_DOTL_APPEND = 0o100, 0o200, 0o1000, 0o2000
P9_DOTL_NONBLOCK, P9_DOTL_DSYNC, P9_DOTL_DIRECTORY = 0o4000, 0o10000, 0o200000
P9_DOTL_NOFOLLOW, P9_DOTL_SYNC = 0o400000, 0o4000000
# The flags that reach the host; NOCTTY, FASYNC, DIRECT, LARGEFILE, NOATIME, CLOEXEC are dropped
# (as QEMU drops them): they describe the client's descriptor, not the file.
_DOTL_TO_HOST = ((P9_DOTL_TRUNC, os.O_TRUNC), (P9_DOTL_APPEND, os.O_APPEND),
                 (P9_DOTL_NONBLOCK, os.O_NONBLOCK), (P9_DOTL_DSYNC, os.O_DSYNC),
                 (P9_DOTL_DIRECTORY, os.O_DIRECTORY), (P9_DOTL_SYNC, os.O_SYNC))

P9_DOTL_AT_REMOVEDIR = 0x200       # Tunlinkat

# Tgetattr: the fields this server fills (P9_STATS_BASIC: mode .. blocks).
P9_STATS_BASIC = 0x7FF

# Tsetattr valid bits (Linux's ATTR_*).
P9_SETATTR_MODE, P9_SETATTR_UID, P9_SETATTR_GID, P9_SETATTR_SIZE = 0x1, 0x2, 0x4, 0x8
P9_SETATTR_ATIME, P9_SETATTR_MTIME, P9_SETATTR_CTIME = 0x10, 0x20, 0x40
P9_SETATTR_ATIME_SET, P9_SETATTR_MTIME_SET = 0x80, 0x100

P9_LOCK_TYPE_RDLCK, P9_LOCK_TYPE_WRLCK, P9_LOCK_TYPE_UNLCK = 0, 1, 2
P9_LOCK_SUCCESS = 0
P9_LOCK_FLAGS_BLOCK = 1

V9FS_MAGIC = 0x01021997            # statfs f_type of a 9p mount (Linux's magic.h)
FSID = 0x6876                      # "hv"

# ---- limits -----------------------------------------------------------------------------------

MIN_MSIZE = 4096                   # as QEMU: a smaller msize is refused with EMSGSIZE
MAX_MSIZE = 512 * 1024             # above Linux's virtio default (500 KiB); the host buffers one
MAX_FIDS = 16384                   # fids per connection
MAX_OPEN = 1024                    # open fids (host descriptors) per connection
SNAPSHOT_BUDGET = 1 << 18          # directory entries held for readdir across a connection
MAX_OFFSET = (1 << 63) - 1         # the host's off_t
NAME_MAX = 255

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_QID = struct.Struct("<BIQ")
_VERSION_REQ = _U32
_ATTACH = struct.Struct("<II")
_WALK = struct.Struct("<IIH")
_FID_FLAGS = struct.Struct("<II")
_FID = _U32
_IO = struct.Struct("<IQI")        # fid, offset, count
_GETATTR = struct.Struct("<IQ")
_SETATTR = struct.Struct("<IIIIIQQQQQ")
_GETATTR_REPLY = struct.Struct("<QBIQIIIQQQQQQQQQQQQQQQ")
_STATFS_REPLY = struct.Struct("<IIQQQQQQI")
_MODE_GID = struct.Struct("<II")
_FIDS2 = struct.Struct("<II")
_LOCK = struct.Struct("<IBIQQI")
_GETLOCK = struct.Struct("<IBQQI")
_GETLOCK_REPLY = struct.Struct("<BQQI")
_DIRENT = struct.Struct("<BIQQBH")  # qid, offset, type, name length
_XATTRCREATE = struct.Struct("<QI")
_LCREATE_TAIL = struct.Struct("<III")      # flags, mode, gid
_MKNOD = struct.Struct("<IIII")

NAMES = {TLERROR: "Tlerror", TSTATFS: "Tstatfs", TLOPEN: "Tlopen", TLCREATE: "Tlcreate",
         TSYMLINK: "Tsymlink", TMKNOD: "Tmknod", TRENAME: "Trename", TREADLINK: "Treadlink",
         TGETATTR: "Tgetattr", TSETATTR: "Tsetattr", TXATTRWALK: "Txattrwalk",
         TXATTRCREATE: "Txattrcreate", TREADDIR: "Treaddir", TFSYNC: "Tfsync", TLOCK: "Tlock",
         TGETLOCK: "Tgetlock", TLINK: "Tlink", TMKDIR: "Tmkdir", TRENAMEAT: "Trenameat",
         TUNLINKAT: "Tunlinkat", TVERSION: "Tversion", TAUTH: "Tauth", TATTACH: "Tattach",
         TERROR: "Terror", TFLUSH: "Tflush", TWALK: "Twalk", TOPEN: "Topen", TCREATE: "Tcreate",
         TREAD: "Tread", TWRITE: "Twrite", TCLUNK: "Tclunk", TREMOVE: "Tremove", TSTAT: "Tstat",
         TWSTAT: "Twstat"}


class P9Error(Exception):
    """Answer the current message with Rlerror(errno)."""

    def __init__(self, code: int, why: str = "") -> None:
        super().__init__(why or os.strerror(code))
        self.errno = code


class _Malformed(P9Error):
    def __init__(self, why: str) -> None:
        super().__init__(errno.EPROTO, why)


class _Reader:
    """The fields of one message, each checked to lie inside it."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = HEADER.size

    def take(self, st: struct.Struct) -> tuple:
        pos = self.pos
        if pos + st.size > len(self.buf):
            raise _Malformed("truncated message")
        self.pos = pos + st.size
        return st.unpack_from(self.buf, pos)

    def string(self) -> bytes:
        (n,) = self.take(_U16)
        pos = self.pos
        if pos + n > len(self.buf):
            raise _Malformed("string runs past the message")
        self.pos = pos + n
        return bytes(self.buf[pos:pos + n])

    def rest(self) -> bytes:
        data = bytes(self.buf[self.pos:])
        self.pos = len(self.buf)
        return data

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise _Malformed(f"{len(self.buf) - self.pos} bytes after the last field")


def _string(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


def _qid(mode: int, ino: int) -> bytes:
    kind = QTDIR if stat.S_ISDIR(mode) else QTSYMLINK if stat.S_ISLNK(mode) else QTFILE
    return _QID.pack(kind, 0, ino)


_DIR_QID_TYPE = {DT_DIR: QTDIR, DT_LNK: QTSYMLINK}


def _guest(path: tuple[str, ...]) -> str:
    return "/" + "/".join(path)


class _Fid:
    """One fid: the canonical guest path it names and, once opened, its host descriptor."""

    __slots__ = ("path", "fd", "writable", "is_dir", "entries", "uname")

    def __init__(self, path: tuple[str, ...], uname: int) -> None:
        self.path = path
        self.fd: int | None = None
        self.writable = False               # opened for writing: its file is in a writable layer
        self.is_dir = False
        self.entries: list | None = None    # readdir snapshot: [(name, qid type, ino, d_type)]
        self.uname = uname


class P9Server:
    """One 9P2000.L connection over ``root``. Counters: ``counts`` (messages by name),
    ``lerrors`` (Rlerror answers by errno), ``internal_errors`` (host exceptions turned into
    EIO: a bug if ever non-zero)."""

    def __init__(self, root: LayeredRoot, *, max_msize: int = MAX_MSIZE, max_fids: int = MAX_FIDS,
                 max_open: int = MAX_OPEN, snapshot_budget: int = SNAPSHOT_BUDGET) -> None:
        if not MIN_MSIZE <= max_msize <= 1 << 24:
            raise ValueError(f"max_msize must be {MIN_MSIZE}..{1 << 24}")
        self.root = root
        self.max_msize = max_msize
        self.max_fids = max_fids
        self.max_open = max_open
        self.snapshot_budget = snapshot_budget
        self.counts: Counter[str] = Counter()
        self.lerrors: Counter[int] = Counter()
        self.internal_errors = 0
        self.fids: dict[int, _Fid] = {}
        self.msize = max_msize             # until Tversion: the most this server takes
        self.versioned = False
        self._open = 0
        self._snapshot_entries = 0
        self._handlers: dict[int, Callable[[_Reader, int], bytes]] = {
            TVERSION: self._version, TATTACH: self._attach, TAUTH: self._auth,
            TFLUSH: self._flush, TWALK: self._walk, TLOPEN: self._lopen,
            TLCREATE: self._lcreate, TREAD: self._read, TWRITE: self._write,
            TCLUNK: self._clunk, TREMOVE: self._remove, TGETATTR: self._getattr,
            TSETATTR: self._setattr, TREADDIR: self._readdir, TMKDIR: self._mkdir,
            TSYMLINK: self._symlink, TREADLINK: self._readlink, TLINK: self._link,
            TRENAME: self._rename, TRENAMEAT: self._renameat, TUNLINKAT: self._unlinkat,
            TSTATFS: self._statfs, TFSYNC: self._fsync, TMKNOD: self._mknod,
            TXATTRWALK: self._xattrwalk, TXATTRCREATE: self._xattrcreate,
            TLOCK: self._lock, TGETLOCK: self._getlock,
        }

    # ---- the connection ----------------------------------------------------------------------

    def handle(self, message: bytes, max_response: int | None = None) -> bytes:
        """One T-message -> one R-message (Rlerror on any failure). ``max_response``: the
        room the transport has for the answer; Rread and Rreaddir are cut to fit it."""
        tag = NOTAG
        mtype = -1
        try:
            if len(message) < HEADER.size:
                raise _Malformed(f"{len(message)}-byte message: the header alone is 7")
            size, mtype, tag = HEADER.unpack_from(message)
            self.counts[NAMES.get(mtype, "unknown")] += 1
            if size > self.msize:
                raise P9Error(errno.EMSGSIZE, f"message of {size} bytes, msize is {self.msize}")
            if size != len(message):
                raise _Malformed(f"size field {size}, message of {len(message)} bytes")
            if mtype & 1 or mtype == TERROR:
                raise _Malformed(f"type {mtype} is not a request")
            handler = self._handlers.get(mtype)
            if handler is None:
                raise P9Error(errno.EOPNOTSUPP, f"type {mtype} is not served (9P2000.L only)")
            if not self.versioned and mtype != TVERSION:
                raise _Malformed("no Tversion yet")
            room = self.msize if max_response is None else min(self.msize, max_response)
            body = handler(_Reader(message), room)
            reply = HEADER.pack(HEADER.size + len(body), mtype + 1, tag) + body
            if len(reply) > self.msize:
                # Only Rreadlink can grow past msize (a target longer than msize - 9 bytes).
                raise P9Error(errno.EMSGSIZE, f"reply of {len(reply)} bytes, msize is {self.msize}")
            return reply
        except P9Error as e:
            code = e.errno
        except OSError as e:                # FsError from the layered root, or the host
            code = e.errno or errno.EIO
        except (ValueError, OverflowError):  # an argument the host refused (NUL, range)
            code = errno.EINVAL
        except Exception:                   # a bug: answered, counted, logged
            log.exception("9p: message type %s", mtype)
            self.internal_errors += 1
            code = errno.EIO
        self.lerrors[code] += 1
        return HEADER.pack(HEADER.size + 4, RLERROR, tag) + _U32.pack(code)

    def reset(self) -> None:
        """Forget every fid and close every host descriptor (Tversion, transport reset)."""
        for f in self.fids.values():
            self._close(f)
        self.fids.clear()
        self.msize = self.max_msize
        self.versioned = False

    close = reset

    def counters(self) -> dict[str, int]:
        """For ``--stats``: messages by name, and the errors answered."""
        out = {f"9p {name}": n for name, n in sorted(self.counts.items())}
        out["9p Rlerror"] = sum(self.lerrors.values())
        if self.internal_errors:
            out["9p internal errors"] = self.internal_errors
        return out

    # ---- fids --------------------------------------------------------------------------------

    def _fid(self, fid: int) -> _Fid:
        f = self.fids.get(fid)
        if f is None:
            raise P9Error(errno.EBADF, f"no fid {fid}")
        return f

    def _new_fid(self, fid: int, path: tuple[str, ...], uname: int) -> _Fid:
        if fid == NOFID or fid in self.fids:
            raise P9Error(errno.EINVAL, f"fid {fid} is in use")
        if len(self.fids) >= self.max_fids:
            raise P9Error(errno.EMFILE, f"{self.max_fids} fids in use")
        f = self.fids[fid] = _Fid(path, uname)
        return f

    def _unopened(self, fid: int) -> _Fid:
        f = self._fid(fid)
        if f.fd is not None:
            raise P9Error(errno.EINVAL, f"fid {fid} is open")
        return f

    def _opened(self, fid: int) -> _Fid:
        f = self._fid(fid)
        if f.fd is None:
            raise P9Error(errno.EBADF, f"fid {fid} is not open")
        return f

    def _room_to_open(self) -> None:
        if self._open >= self.max_open:
            raise P9Error(errno.EMFILE, f"{self.max_open} fids open")

    def _set_open(self, f: _Fid, fd: int, flags: int) -> int:
        """Record ``fd`` as the fid's open file; returns its st_mode."""
        mode = os.fstat(fd).st_mode
        f.fd = fd
        f.writable = flags & P9_DOTL_ACCMODE in (os.O_WRONLY, os.O_RDWR)
        f.is_dir = stat.S_ISDIR(mode)
        self._open += 1
        return mode

    def _close(self, f: _Fid) -> None:
        self._drop_snapshot(f)
        if f.fd is not None:
            fd, f.fd = f.fd, None
            self._open -= 1
            try:
                os.close(fd)
            except OSError:
                pass

    def _directory(self, fid: int) -> tuple[str, ...]:
        """The path of a directory fid, checked to still be a real directory (a path walked
        through a symlink since would lead elsewhere: ENOTDIR)."""
        path = self._fid(fid).path
        st = self.root.stat(_guest(path), follow=False)
        if not stat.S_ISDIR(st.st_mode) or st.st_ino != inode_number(path):
            raise P9Error(errno.ENOTDIR)
        return path

    @staticmethod
    def _name(raw: bytes, what: int = errno.ENOENT) -> str:
        """A name from the wire: one component, not empty, no '/', no NUL (QEMU's rule, and its
        ENOENT); '.' and '..' pass, the caller decides."""
        if not raw or b"/" in raw or b"\0" in raw:
            raise P9Error(what, "illegal name")
        if len(raw) > NAME_MAX:
            raise P9Error(errno.ENAMETOOLONG)
        return os.fsdecode(raw)

    def _new_name(self, raw: bytes) -> str:
        """A name to create: '.' and '..' already exist (EEXIST, as QEMU)."""
        name = self._name(raw)
        if name in (".", ".."):
            raise P9Error(errno.EEXIST)
        return name

    # ---- session -------------------------------------------------------------------------------

    def _version(self, r: _Reader, room: int) -> bytes:
        (msize,) = r.take(_VERSION_REQ)
        version = r.string()
        r.end()
        self.reset()                       # Tversion aborts everything: all fids are clunked
        if version != VERSION:
            return _U32.pack(min(msize, self.max_msize)) + _string(b"unknown")
        if msize < MIN_MSIZE:
            raise P9Error(errno.EMSGSIZE, f"msize {msize} < {MIN_MSIZE}")
        self.msize = min(msize, self.max_msize)
        self.versioned = True
        return _U32.pack(self.msize) + _string(VERSION)

    def _attach(self, r: _Reader, room: int) -> bytes:
        fid, afid = r.take(_ATTACH)
        r.string()                          # uname: no identities, hv's own access serves all
        aname = r.string()
        (n_uname,) = r.take(_U32)
        r.end()
        if afid != NOFID:
            raise P9Error(errno.EINVAL, "no authentication: afid must be NOFID")
        if aname not in (b"", b"/"):
            raise P9Error(errno.ENOENT, "the only tree is the container's root ('' or '/')")
        st = self.root.stat("/", follow=False)
        self._new_fid(fid, (), n_uname)
        return _qid(st.st_mode, st.st_ino)

    def _auth(self, r: _Reader, room: int) -> bytes:
        raise P9Error(errno.EOPNOTSUPP, "authentication is not required")

    def _flush(self, r: _Reader, room: int) -> bytes:
        r.take(_U16)                        # oldtag: every request is answered before the next
        r.end()
        return b""

    # ---- walk --------------------------------------------------------------------------------

    def _walk(self, r: _Reader, room: int) -> bytes:
        fid, newfid, nwname = r.take(_WALK)
        if nwname > MAXWELEM:
            raise P9Error(errno.EINVAL, f"{nwname} names, at most {MAXWELEM}")
        raws = [r.string() for _ in range(nwname)]
        r.end()
        f = self._fid(fid)
        if newfid == fid:
            if f.fd is not None:
                raise P9Error(errno.EINVAL, "walking an open fid in place")
        elif newfid in self.fids or newfid == NOFID:
            raise P9Error(errno.EINVAL, f"fid {newfid} is in use")
        names = [self._name(raw) for raw in raws]
        path, qids = self._walk_names(f.path, names)
        if len(qids) == nwname:             # complete: newfid names the result
            if newfid == fid:
                f.path = path
            else:
                self._new_fid(newfid, path, f.uname)
        # A partial walk returns the qids it got; newfid is left alone (9P spec).
        return _U16.pack(len(qids)) + b"".join(qids)

    def _walk_names(self, start: tuple[str, ...], names: list[str]):
        if not names:
            return start, []
        if "." not in names and ".." not in names:
            # The usual walk in one lookup: the layered root's inode number is a hash of the
            # canonical path, so an equal one means no component was a symlink.
            target = start + tuple(names)
            try:
                st = self.root.stat(_guest(target), follow=False)
            except FsError:
                st = None
            if st is not None and st.st_ino == inode_number(target):
                qids = [_QID.pack(QTDIR, 0, inode_number(target[:i]))
                        for i in range(len(start) + 1, len(target))]
                return target, qids + [_qid(st.st_mode, st.st_ino)]
        return self._walk_steps(start, names)

    def _walk_steps(self, path: tuple[str, ...], names: list[str]):
        """One name at a time: the first failure ends the walk (an error if it is the first)."""
        qids: list[bytes] = []
        is_dir: bool | None = None          # the current node's kind, once known
        for name in names:
            try:
                if name in (".", ".."):
                    if is_dir is None:
                        st = self.root.stat(_guest(path), follow=False)
                        is_dir = stat.S_ISDIR(st.st_mode) and st.st_ino == inode_number(path)
                    if not is_dir:
                        raise P9Error(errno.ENOTDIR)
                    if name == ".." and path:       # '..' at the root stays at the root
                        path = path[:-1]
                    qids.append(_QID.pack(QTDIR, 0, inode_number(path)))
                    continue
                child = path + (name,)
                try:
                    st = self.root.stat(_guest(child), follow=False)
                except FsError as e:
                    # Through a symlink the layered root follows it; a 9P walk never does.
                    if e.errno == errno.ENOENT and is_dir is None and path:
                        pst = self.root.stat(_guest(path), follow=False)
                        if not stat.S_ISDIR(pst.st_mode) or pst.st_ino != inode_number(path):
                            raise P9Error(errno.ENOTDIR) from None
                    raise
                if st.st_ino != inode_number(child):
                    raise P9Error(errno.ENOTDIR)     # the lookup went through a symlink
                path = child
                is_dir = stat.S_ISDIR(st.st_mode)
                qids.append(_qid(st.st_mode, st.st_ino))
            except (P9Error, OSError):
                if not qids:
                    raise
                break
        return path, qids

    # ---- open, create, I/O, clunk ------------------------------------------------------------

    @staticmethod
    def _host_flags(flags: int) -> int:
        out = flags & P9_DOTL_ACCMODE
        for dotl, host in _DOTL_TO_HOST:
            if flags & dotl:
                out |= host
        return out | os.O_NOFOLLOW          # a fid naming a symlink is never opened through it

    def _iounit(self) -> int:
        return self.msize - IOHDRSZ

    def _lopen(self, r: _Reader, room: int) -> bytes:
        fid, flags = r.take(_FID_FLAGS)
        r.end()
        f = self._unopened(fid)
        self._room_to_open()
        fd = self.root.open(_guest(f.path), self._host_flags(flags))
        mode = self._set_open(f, fd, flags)
        return _qid(mode, inode_number(f.path)) + _U32.pack(self._iounit())

    def _lcreate(self, r: _Reader, room: int) -> bytes:
        (fid,) = r.take(_FID)
        raw = r.string()
        flags, mode, _gid = r.take(_LCREATE_TAIL)
        r.end()
        name = self._new_name(raw)
        f = self._unopened(fid)
        self._room_to_open()
        path = self._directory(fid) + (name,)
        host = self._host_flags(flags) | os.O_CREAT | (os.O_EXCL if flags & P9_DOTL_EXCL else 0)
        fd = self.root.open(_guest(path), host, mode & 0o7777)
        f.path = path                       # the fid now names the new file, open
        mode = self._set_open(f, fd, flags)
        return _qid(mode, inode_number(path)) + _U32.pack(self._iounit())

    def _read(self, r: _Reader, room: int) -> bytes:
        fid, offset, count = r.take(_IO)
        r.end()
        f = self._opened(fid)
        if f.is_dir:
            raise P9Error(errno.EISDIR)
        if offset > MAX_OFFSET:
            raise P9Error(errno.EINVAL, "offset beyond the host's off_t")
        count = min(count, room - HEADER.size - 4)
        data = os.pread(f.fd, count, offset) if count > 0 else b""
        return _U32.pack(len(data)) + data

    def _write(self, r: _Reader, room: int) -> bytes:
        fid, offset, count = r.take(_IO)
        data = r.rest()
        if count != len(data):
            raise _Malformed(f"count {count}, {len(data)} data bytes")
        f = self._opened(fid)
        if f.is_dir:
            raise P9Error(errno.EISDIR)
        if offset > MAX_OFFSET:
            raise P9Error(errno.EINVAL, "offset beyond the host's off_t")
        return _U32.pack(os.pwrite(f.fd, data, offset))

    def _clunk(self, r: _Reader, room: int) -> bytes:
        (fid,) = r.take(_FID)
        r.end()
        self._close(self._fid(fid))
        del self.fids[fid]
        return b""

    def _remove(self, r: _Reader, room: int) -> bytes:
        (fid,) = r.take(_FID)
        r.end()
        f = self._fid(fid)
        # The fid is clunked whether or not the remove succeeds (9P spec).
        self._close(f)
        del self.fids[fid]
        path = _guest(f.path)
        try:
            self.root.unlink(path)
        except FsError as e:
            if e.errno != errno.EISDIR:
                raise
            self.root.rmdir(path)
        return b""

    def _fsync(self, r: _Reader, room: int) -> bytes:
        (fid,) = r.take(_FID)
        datasync = 0
        if r.pos < len(r.buf):              # Linux sends datasync[4]; older clients did not
            (datasync,) = r.take(_U32)
        r.end()
        f = self._opened(fid)
        (os.fdatasync if datasync else os.fsync)(f.fd)
        return b""

    # ---- attributes ------------------------------------------------------------------------------

    def _getattr(self, r: _Reader, room: int) -> bytes:
        fid, _mask = r.take(_GETATTR)       # any mask: the BASIC fields are always answered
        r.end()
        f = self._fid(fid)
        if f.fd is not None and not f.is_dir:
            st = os.fstat(f.fd)             # an open file (perhaps unlinked since) as it is now
            ino = inode_number(f.path)
        else:
            st = self.root.stat(_guest(f.path), follow=False)
            ino = st.st_ino
        mode = st.st_mode
        kind = QTDIR if stat.S_ISDIR(mode) else QTSYMLINK if stat.S_ISLNK(mode) else QTFILE
        m = 0xFFFFFFFFFFFFFFFF
        a_s, a_ns = divmod(st.st_atime_ns, 10**9)
        m_s, m_ns = divmod(st.st_mtime_ns, 10**9)
        c_s, c_ns = divmod(st.st_ctime_ns, 10**9)
        return _GETATTR_REPLY.pack(
            P9_STATS_BASIC, kind, 0, ino, mode, st.st_uid, st.st_gid, st.st_nlink, st.st_rdev,
            st.st_size, st.st_blksize, st.st_blocks, a_s & m, a_ns, m_s & m, m_ns, c_s & m, c_ns,
            0, 0, 0, 0)                     # btime, gen, data_version: not provided

    def _setattr(self, r: _Reader, room: int) -> bytes:
        (fid, valid, mode, uid, gid, size, a_s, a_ns, m_s, m_ns) = r.take(_SETATTR)
        r.end()
        f = self._fid(fid)
        path = _guest(f.path)
        open_file = f.fd is not None and not f.is_dir
        try:
            st = self.root.stat(path, follow=False)
            gone = False
        except FsError as e:
            if e.errno != errno.ENOENT or not open_file:
                raise
            st, gone = os.fstat(f.fd), True       # an open file whose name was removed
        changes = valid & (P9_SETATTR_MODE | P9_SETATTR_SIZE | P9_SETATTR_ATIME | P9_SETATTR_MTIME)
        if changes and stat.S_ISLNK(st.st_mode):
            # The layered root changes what a symlink points to, never the link itself.
            raise P9Error(errno.EOPNOTSUPP, "attributes of a symlink itself")
        if valid & P9_SETATTR_UID and uid != st.st_uid or valid & P9_SETATTR_GID and gid != st.st_gid:
            raise P9Error(errno.EPERM, "owners are the host's")
        if valid & P9_SETATTR_SIZE and size > MAX_OFFSET:
            raise P9Error(errno.EINVAL)
        # ftruncate of an open file goes to its descriptor, which a write open put in a
        # writable layer; anything else on a removed name has no path left to change.
        by_fd = valid & P9_SETATTR_SIZE and open_file and f.writable
        if gone and (changes & ~P9_SETATTR_SIZE or valid & P9_SETATTR_SIZE and not by_fd):
            raise P9Error(errno.ENOENT)
        times = []
        for bit, given, sec, nsec in ((P9_SETATTR_ATIME, P9_SETATTR_ATIME_SET, a_s, a_ns),
                                      (P9_SETATTR_MTIME, P9_SETATTR_MTIME_SET, m_s, m_ns)):
            if not valid & bit:
                times.append(None)
            elif valid & given:
                if nsec >= 10**9 or sec > MAX_OFFSET // 10**9:
                    raise P9Error(errno.EINVAL, "time out of range")
                times.append(sec * 10**9 + nsec)
            else:
                times.append(time.time_ns())
        # Linux's order (QEMU's too): mode, times, owners, size.
        if valid & P9_SETATTR_MODE:
            self.root.chmod(path, mode & 0o7777)
        if times != [None, None]:
            self.root.utime(path, times[0], times[1])
        if by_fd:
            os.ftruncate(f.fd, size)
        elif valid & P9_SETATTR_SIZE:
            self.root.truncate(path, size)
        return b""

    def _statfs(self, r: _Reader, room: int) -> bytes:
        (fid,) = r.take(_FID)
        r.end()
        f = self._fid(fid)
        if f.fd is not None:
            sv = os.fstatvfs(f.fd)
        else:
            try:
                fd = self.root.open(_guest(f.path), os.O_RDONLY | os.O_NOFOLLOW)
            except FsError as e:
                if e.errno not in (errno.ELOOP, errno.ENXIO):
                    raise
                fd = self.root.open("/", os.O_RDONLY)   # a symlink or special file: the root's
            try:
                sv = os.fstatvfs(fd)
            finally:
                os.close(fd)
        return _STATFS_REPLY.pack(V9FS_MAGIC, sv.f_bsize, sv.f_blocks, sv.f_bfree, sv.f_bavail,
                                  sv.f_files, sv.f_ffree, FSID, NAME_MAX)

    # ---- directories -------------------------------------------------------------------------------

    def _readdir(self, r: _Reader, room: int) -> bytes:
        fid, offset, count = r.take(_IO)
        r.end()
        f = self._opened(fid)
        if not f.is_dir:
            raise P9Error(errno.ENOTDIR)
        if offset == 0 or f.entries is None:   # offset 0 rewinds: a fresh listing
            self._snapshot(f)
        entries = f.entries
        count = min(count, room - HEADER.size - 4)
        out = bytearray()
        pos = offset
        while pos < len(entries):
            name, qtype, ino, d_type = entries[pos]
            size = _DIRENT.size + len(name)
            if len(out) + size > count:
                break
            pos += 1
            out += _DIRENT.pack(qtype, 0, ino, pos, d_type, len(name))   # offset: of the next
            out += name
        if not out and pos < len(entries):
            raise P9Error(errno.EINVAL, "count too small for the next entry")
        return _U32.pack(len(out)) + out

    def _snapshot(self, f: _Fid) -> None:
        """The merged listing, '.' and '..' first; offsets index it until the next rewind."""
        self._drop_snapshot(f)
        path = f.path
        parent = path[:-1] if path else path
        listing = self.root.listdir(_guest(path))
        need = len(listing) + 2
        if need > self.snapshot_budget:
            raise P9Error(errno.ENOMEM, f"{need} entries, more than the {self.snapshot_budget} held")
        for other in self.fids.values():       # make room: others re-list where they were
            if self._snapshot_entries + need <= self.snapshot_budget:
                break
            self._drop_snapshot(other)
        entries = [(b".", QTDIR, inode_number(path), DT_DIR),
                   (b"..", QTDIR, inode_number(parent), DT_DIR)]
        entries += [(os.fsencode(e.name), _DIR_QID_TYPE.get(e.d_type, QTFILE), e.ino, e.d_type)
                    for e in listing]
        f.entries = entries
        self._snapshot_entries += len(entries)

    def _drop_snapshot(self, f: _Fid) -> None:
        if f.entries is not None:
            self._snapshot_entries -= len(f.entries)
            f.entries = None

    def _mkdir(self, r: _Reader, room: int) -> bytes:
        (dfid,) = r.take(_FID)
        raw = r.string()
        mode, _gid = r.take(_MODE_GID)
        r.end()
        name = self._new_name(raw)
        path = self._directory(dfid) + (name,)
        self.root.mkdir(_guest(path), mode & 0o7777)
        return _QID.pack(QTDIR, 0, inode_number(path))

    def _symlink(self, r: _Reader, room: int) -> bytes:
        (dfid,) = r.take(_FID)
        raw = r.string()
        target = r.string()
        (_gid,) = r.take(_U32)
        r.end()
        name = self._new_name(raw)
        path = self._directory(dfid) + (name,)
        self.root.symlink(os.fsdecode(target), _guest(path))
        return _QID.pack(QTSYMLINK, 0, inode_number(path))

    def _mknod(self, r: _Reader, room: int) -> bytes:
        (dfid,) = r.take(_FID)
        raw = r.string()
        r.take(_MKNOD)                     # mode, major, minor, gid
        r.end()
        self._new_name(raw)
        self._fid(dfid)
        # Device nodes, FIFOs and sockets are not created in a container's layers (as an
        # unprivileged container, and as copy-up refuses to copy device nodes).
        raise P9Error(errno.EPERM, "mknod")

    def _readlink(self, r: _Reader, room: int) -> bytes:
        (fid,) = r.take(_FID)
        r.end()
        return _string(os.fsencode(self.root.readlink(_guest(self._fid(fid).path))))

    def _link(self, r: _Reader, room: int) -> bytes:
        dfid, fid = r.take(_FIDS2)
        raw = r.string()
        r.end()
        name = self._new_name(raw)
        old = self._fid(fid).path
        path = self._directory(dfid) + (name,)
        self.root.link(_guest(old), _guest(path))
        return b""

    def _rename(self, r: _Reader, room: int) -> bytes:
        """Trename (fid, dfid, name): Linux uses it when Trenameat is not served."""
        fid, dfid = r.take(_FIDS2)
        raw = r.string()
        r.end()
        name = self._name(raw)
        old = self._fid(fid).path
        if not old:
            raise P9Error(errno.EBUSY, "the root")
        self._move(old, self._directory(dfid) + (name,))
        return b""

    def _renameat(self, r: _Reader, room: int) -> bytes:
        (olddir,) = r.take(_FID)
        oldraw = r.string()
        (newdir,) = r.take(_FID)
        newraw = r.string()
        r.end()
        oldname, newname = self._name(oldraw), self._name(newraw)
        old = self._directory(olddir) + (oldname,)
        new = self._directory(newdir) + (newname,)
        self._move(old, new)
        return b""

    def _move(self, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        self.root.rename(_guest(old), _guest(new))   # '.' and '..' refused there (EBUSY)
        n = len(old)
        for f in self.fids.values():                   # fids below the old name move along
            if f.path[:n] == old:
                f.path = new + f.path[n:]

    def _unlinkat(self, r: _Reader, room: int) -> bytes:
        (dfid,) = r.take(_FID)
        raw = r.string()
        (flags,) = r.take(_U32)
        r.end()
        name = self._name(raw)
        if flags & ~P9_DOTL_AT_REMOVEDIR:
            raise P9Error(errno.EINVAL, f"flags {flags:#x}")
        if name == ".":
            raise P9Error(errno.EINVAL)          # as rmdir(2)
        if name == "..":
            raise P9Error(errno.ENOTEMPTY)
        path = _guest(self._directory(dfid) + (name,))
        if flags & P9_DOTL_AT_REMOVEDIR:
            self.root.rmdir(path)
        else:
            self.root.unlink(path)
        return b""

    # ---- extended attributes and locks: served trivially ------------------------------------------

    def _xattrwalk(self, r: _Reader, room: int) -> bytes:
        fid, _newfid = r.take(_FIDS2)
        r.string()
        r.end()
        self._fid(fid)
        raise P9Error(errno.EOPNOTSUPP, "no extended attributes")

    def _xattrcreate(self, r: _Reader, room: int) -> bytes:
        (fid,) = r.take(_FID)
        r.string()
        r.take(_XATTRCREATE)
        r.end()
        self._fid(fid)
        raise P9Error(errno.EOPNOTSUPP, "no extended attributes")

    def _lock(self, r: _Reader, room: int) -> bytes:
        fid, ltype, flags, _start, _length, _proc = r.take(_LOCK)
        r.string()                          # client_id
        r.end()
        self._fid(fid)
        if ltype > P9_LOCK_TYPE_UNLCK or flags & ~P9_LOCK_FLAGS_BLOCK:
            raise P9Error(errno.EINVAL)
        # One client per connection and no other sharer: every lock is granted at once.
        return bytes((P9_LOCK_SUCCESS,))

    def _getlock(self, r: _Reader, room: int) -> bytes:
        fid, ltype, start, length, proc = r.take(_GETLOCK)
        client = r.string()
        r.end()
        self._fid(fid)
        if ltype > P9_LOCK_TYPE_UNLCK:
            raise P9Error(errno.EINVAL)
        # Nothing ever conflicts: the answer is "unlocked", the request's range echoed (as QEMU).
        return _GETLOCK_REPLY.pack(P9_LOCK_TYPE_UNLCK, start, length, proc) + _string(client)


__all__ = ["P9Server", "P9Error", "NAMES", "MIN_MSIZE", "MAX_MSIZE", "MAX_FIDS", "MAX_OPEN",
           "SNAPSHOT_BUDGET", "NOFID", "NOTAG", "MAXWELEM", "IOHDRSZ", "VERSION"]
