"""The layered root against the Linux kernel, on random layers and random operations.

Hypothesis draws a stack of OCI layers (files, directories, opaque directories, whiteouts
and hostile symlinks: absolute host paths, climbs past the layer root, loops) and a
sequence of operations on random, often hostile, paths. The same operations run on

* hv's LayeredRoot over those layers, with every host call it makes audited: a name used
  with a directory fd is one component and never followed, and every descriptor it uses
  or returns lies inside the layers;
* the reference: the kernel itself, resolving with openat2(RESOLVE_IN_ROOT), over either
  the layers flattened as the OCI spec applies them (any user), or a real overlayfs mount
  of the same layers converted to overlayfs' own format (root only).

After each operation the results (or errnos) must agree; at the end the whole merged
trees must be equal, the upper layer applied as an OCI layer over the image must give
that same tree, diff() must account for every change, and the sentinel tree beside the
layers must be untouched and its secret never read.
"""
from __future__ import annotations

import copy
import ctypes
import errno
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.container import layers as layers_mod
from hv.container.layers import OPAQUE_MARKER, TEMP_PREFIX, WHITEOUT_PREFIX, FsError, LayeredRoot

SECRET = b"sentinel secret"
SENTINEL = "@SENTINEL@"                   # replaced by the sentinel's absolute host path

# -- the kernel as reference -------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_OPENAT2, RESOLVE_IN_ROOT = 437, 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, mode: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, RESOLVE_IN_ROOT)
    fd = _libc.syscall(SYS_OPENAT2, ctypes.c_int(dirfd), os.fsencode(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def _has_openat2() -> bool:
    try:
        os.close(openat2(os.open("/", os.O_PATH), ".", os.O_PATH))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _has_openat2(),
                                reason="the reference needs openat2(RESOLVE_IN_ROOT) (Linux 5.6+)")


class KernelRoot:
    """The LayeredRoot calls done by the kernel in a directory, paths resolved inside it
    with RESOLVE_IN_ROOT. Calls on a path's last component (mkdir, unlink, rename...) get
    the parent from openat2 and the last component as the kernel's *at call sees it."""

    def __init__(self, top: Path):
        self.top = os.path.realpath(top)
        self.fd = os.open(self.top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def _parent(self, path: str) -> tuple[int, str]:
        if not path:
            raise OSError(errno.ENOENT, "empty")
        stripped = path.rstrip("/")
        if not stripped:
            return os.dup(self.fd), "."
        head, _, last = stripped.rpartition("/")
        pfd = openat2(self.fd, head or "/", os.O_PATH | os.O_DIRECTORY)
        return pfd, last + ("/" if path.endswith("/") else "")

    def _at(self, path: str, fn) -> object:
        pfd, last = self._parent(path)
        try:
            return fn(pfd, last)
        finally:
            os.close(pfd)

    def resolve(self, path: str) -> str:
        fd = openat2(self.fd, path, os.O_PATH)
        try:
            host = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        rel = os.path.relpath(host, self.top)
        return "/" if rel == "." else "/" + rel

    def stat(self, path: str, follow: bool) -> os.stat_result:
        fd = openat2(self.fd, path, os.O_PATH | (0 if follow else os.O_NOFOLLOW))
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def open(self, path: str, flags: int, mode: int) -> int:
        return openat2(self.fd, path, flags, mode)

    def listdir(self, path: str) -> list[str]:
        fd = openat2(self.fd, path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def readlink(self, path: str) -> str:
        if path.endswith("/"):           # readlink follows a trailing-slash path: confine it
            os.close(openat2(self.fd, path, os.O_PATH))
            raise OSError(errno.EINVAL, path)
        return self._at(path, lambda d, n: os.readlink(n, dir_fd=d))

    def mkdir(self, path: str, mode: int) -> None:
        self._at(path, lambda d, n: os.mkdir(n, mode, dir_fd=d))

    def rmdir(self, path: str) -> None:
        if not path.strip("/") and path:
            raise OSError(errno.EBUSY, "root")
        self._at(path, lambda d, n: os.rmdir(n, dir_fd=d))

    def unlink(self, path: str) -> None:
        self._at(path, lambda d, n: os.unlink(n, dir_fd=d))

    def symlink(self, target: str, path: str) -> None:
        self._at(path, lambda d, n: os.symlink(target, n, dir_fd=d))

    def rename(self, old: str, new: str) -> None:
        self._at(old, lambda od, on: self._at(
            new, lambda nd, nn: os.rename(on, nn, src_dir_fd=od, dst_dir_fd=nd)))

    def link(self, old: str, new: str) -> None:
        os.close(openat2(self.fd, old, os.O_PATH | os.O_NOFOLLOW))   # linkat looks old up first
        if old.endswith("/") or old.rpartition("/")[2] in (".", ".."):
            old = self.resolve(old)      # a directory the kernel would reach unconfined
        self._at(old, lambda od, on: self._at(
            new, lambda nd, nn: os.link(on, nn, src_dir_fd=od, dst_dir_fd=nd,
                                        follow_symlinks=False)))

    def chmod(self, path: str, mode: int) -> None:
        fd = openat2(self.fd, path, os.O_PATH)
        try:
            os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)

    def truncate(self, path: str, length: int) -> None:
        fd = openat2(self.fd, path, os.O_PATH)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise OSError(errno.EISDIR, path)
            if not stat.S_ISREG(mode):
                raise OSError(errno.EINVAL, path)
            os.truncate(f"/proc/self/fd/{fd}", length)
        finally:
            os.close(fd)


# -- auditing every host call hv makes ------------------------------------------------------------

class AuditedOs:
    """Stands in for `os` inside hv.container.layers: checks each host call, then makes it."""

    def __init__(self, allowed: list[str]):
        self.allowed = [os.path.realpath(a) for a in allowed]
        self.calls = 0

    def _inside(self, host: str) -> bool:
        host = host.removesuffix(" (deleted)")
        return any(host == a or host.startswith(a + "/") for a in self.allowed)

    def _fd(self, fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        assert self._inside(target), f"hv used a descriptor outside the layers: {target}"

    def _name(self, name, dir_fd, nofollow: bool = True) -> None:
        self.calls += 1
        if isinstance(name, int):
            return self._fd(name)
        name = os.fspath(name)
        m = re.fullmatch(r"/proc/self/fd/(\d+)", name)
        if m:
            return self._fd(int(m.group(1)))
        if dir_fd is None:
            assert self._inside(os.path.realpath(name)), f"hv used a host path: {name}"
            return
        self._fd(dir_fd)
        assert "/" not in name and name != "..", f"not one component: {name!r}"
        assert nofollow or name == ".", f"a name the host would follow: {name!r}"

    def open(self, path, flags, mode=0o777, *, dir_fd=None):
        excl = flags & os.O_CREAT and flags & os.O_EXCL
        self._name(path, dir_fd, bool(flags & os.O_NOFOLLOW or excl))
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
        self._fd(fd)
        return fd

    def stat(self, path, *, dir_fd=None, follow_symlinks=True):
        self._name(path, dir_fd, not follow_symlinks)
        return os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def fstat(self, fd):
        self._fd(fd)
        return os.fstat(fd)

    def _simple(fn_name):
        def call(self, path, *args, dir_fd=None, **kw):
            self._name(path, dir_fd)
            return getattr(os, fn_name)(path, *args, dir_fd=dir_fd, **kw)
        return call

    readlink = _simple("readlink")
    mkdir = _simple("mkdir")
    rmdir = _simple("rmdir")
    unlink = _simple("unlink")
    mkfifo = _simple("mkfifo")

    def chmod(self, path, mode, **kw):
        assert str(path).startswith("/proc/self/fd/") and not kw, "chmod by name follows"
        self._name(path, None)
        return os.chmod(path, mode)

    def access(self, path, mode, *, dir_fd=None, follow_symlinks=True):
        self._name(path, dir_fd, not follow_symlinks)
        return os.access(path, mode, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def chown(self, path, uid, gid, *, dir_fd=None, follow_symlinks=True):
        self._name(path, dir_fd, not follow_symlinks)
        return os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def utime(self, path, *, ns, dir_fd=None, follow_symlinks=True):
        self._name(path, dir_fd, not follow_symlinks)
        return os.utime(path, ns=ns, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def symlink(self, target, path, *, dir_fd=None):
        self._name(path, dir_fd)
        return os.symlink(target, path, dir_fd=dir_fd)

    def rename(self, src, dst, *, src_dir_fd=None, dst_dir_fd=None):
        self._name(src, src_dir_fd)
        self._name(dst, dst_dir_fd)
        return os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def link(self, src, dst, *, src_dir_fd=None, dst_dir_fd=None, follow_symlinks=True):
        self._name(src, src_dir_fd, not follow_symlinks)
        self._name(dst, dst_dir_fd)
        return os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,
                       follow_symlinks=follow_symlinks)

    def listdir(self, fd):
        assert isinstance(fd, int)
        self._fd(fd)
        return os.listdir(fd)

    def scandir(self, fd):
        assert isinstance(fd, int)
        self._fd(fd)
        return os.scandir(fd)

    def __getattr__(self, name):
        return getattr(os, name)


# -- layers as data, applied as the OCI spec says ------------------------------------------------

NAMES = ["a", "b", "c"]
TARGETS = ["a", "b", "a/b", "c/a", "..", "../..", "../a", "/", "/a", "/b", "/c", "/a/b", "/c/a",
           "/b/../a", "a/", ".", "loop", "b/../../c", SENTINEL, SENTINEL + "/secret",
           "../../sentinel/secret", "../../../sentinel", "../" * 6 + "sentinel/secret"]
MODES = [0o644, 0o600, 0o755]


def _leaf():
    return st.one_of(
        st.tuples(st.just("file"), st.binary(max_size=5), st.sampled_from(MODES)),
        st.tuples(st.just("link"), st.sampled_from(TARGETS)),
        st.just(("wh",)))


def _tree(depth: int, min_size: int = 0):
    entry = _leaf() if depth == 0 else st.one_of(
        _leaf(), st.tuples(st.just("dir"), st.sampled_from([0o755, 0o711]),
                           st.sampled_from([False, False, True]), _tree(depth - 1, 1)))
    return st.dictionaries(st.sampled_from(NAMES), entry, min_size=min_size, max_size=3)


LAYER_STACKS = st.lists(_tree(2, min_size=1), min_size=1, max_size=3)     # bottom first


def apply_layer(tree: dict, layer: dict) -> None:
    """OCI 'applying changesets' on a model tree: whiteouts (and opaque) first, then entries."""
    for name, e in layer.items():
        if e[0] == "wh":
            tree.pop(name, None)
    for name, e in layer.items():
        if e[0] == "wh":
            continue
        if e[0] == "dir":
            old = tree.get(name)
            children = old[2] if old is not None and old[0] == "dir" and not e[2] else {}
            tree[name] = ("dir", e[1], children)
            apply_layer(children, e[3])
        else:
            tree[name] = e


def target_of(t: str, sentinel: Path) -> str:
    return t.replace(SENTINEL, str(sentinel))


def write_layer(d: Path, layer: dict, sentinel: Path, below: dict | None = None,
                overlay: bool = False) -> None:
    """A layer spec as a directory: OCI form, or overlayfs form (char 0/0 whiteouts,
    trusted.overlay.opaque) for the overlayfs reference. overlayfs lists a whiteout that
    hides nothing in a directory it does not merge, so in that form a whiteout is only
    written where `below` (the image under this layer, at this directory) has the name."""
    d.mkdir(parents=True, exist_ok=True)
    for name, e in layer.items():
        p = d / name
        if e[0] == "file":
            p.write_bytes(e[1])
            os.chmod(p, e[2])
        elif e[0] == "link":
            os.symlink(target_of(e[1], sentinel), p)
        elif e[0] == "wh":
            if not overlay:
                (d / (WHITEOUT_PREFIX + name)).write_bytes(b"")
            elif below and name in below:
                os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        else:
            p.mkdir()
            if e[2]:
                if overlay:
                    os.setxattr(p, "trusted.overlay.opaque", b"y")
                else:
                    (p / OPAQUE_MARKER).write_bytes(b"")
            under = (below or {}).get(name)
            under = under[2] if under is not None and under[0] == "dir" and not e[2] else None
            write_layer(p, e[3], sentinel, under, overlay)
            os.chmod(p, e[1])


def write_tree(d: Path, tree: dict, sentinel: Path) -> None:
    """A model tree as a plain directory (the flattened image)."""
    for name, e in tree.items():
        p = d / name
        if e[0] == "file":
            p.write_bytes(e[1])
            os.chmod(p, e[2])
        elif e[0] == "link":
            os.symlink(target_of(e[1], sentinel), p)
        else:
            p.mkdir()
            write_tree(p, e[2], sentinel)
            os.chmod(p, e[1])


def upper_as_layer(d: Path) -> dict:
    """Read the upper directory back as a layer spec (what a commit would tar)."""
    out = {}
    for name in os.listdir(d):
        p = d / name
        st_ = os.lstat(p)
        if name.startswith(TEMP_PREFIX) or name == OPAQUE_MARKER:
            continue
        if name.startswith(WHITEOUT_PREFIX):
            out[name[len(WHITEOUT_PREFIX):]] = ("wh",)
        elif stat.S_ISLNK(st_.st_mode):
            out[name] = ("link", os.readlink(p))
        elif stat.S_ISDIR(st_.st_mode):
            out[name] = ("dir", stat.S_IMODE(st_.st_mode), (p / OPAQUE_MARKER).exists(),
                         upper_as_layer(p))
        else:
            out[name] = ("file", p.read_bytes(), stat.S_IMODE(st_.st_mode))
    return out


def model_snapshot(tree: dict, sentinel: Path, prefix: str = "") -> dict:
    out = {}
    for name, e in tree.items():
        path = f"{prefix}/{name}"
        if e[0] == "file":
            out[path] = ("file", stat.S_IMODE(e[2]), e[1])
        elif e[0] == "link":
            out[path] = ("link", target_of(e[1], sentinel))
        else:
            out[path] = ("dir", e[1])
            out.update(model_snapshot(e[2], sentinel, path))
    return out


# -- snapshots of both sides ----------------------------------------------------------------

def _entry(st_: os.stat_result, data=None, target=None):
    if stat.S_ISDIR(st_.st_mode):
        return ("dir", stat.S_IMODE(st_.st_mode))
    if stat.S_ISLNK(st_.st_mode):
        return ("link", target)
    return ("file", stat.S_IMODE(st_.st_mode), data)


def snapshot_hv(root: LayeredRoot, path: str = "") -> dict:
    out = {}
    for e in root.listdir(path or "/"):
        p = f"{path}/{e.name}"
        st_ = root.stat(p, follow=False)
        if stat.S_ISREG(st_.st_mode):
            fd = root.open(p, os.O_RDONLY)
            with os.fdopen(fd, "rb") as f:
                out[p] = _entry(st_, f.read())
        else:
            out[p] = _entry(st_, target=root.readlink(p) if stat.S_ISLNK(st_.st_mode) else None)
        if stat.S_ISDIR(st_.st_mode):
            out.update(snapshot_hv(root, p))
    return out


def snapshot_host(top: Path, path: str = "") -> dict:
    out = {}
    for name in os.listdir(str(top) + path):
        p = f"{path}/{name}"
        host = str(top) + p
        st_ = os.lstat(host)
        if stat.S_ISREG(st_.st_mode):
            out[p] = _entry(st_, Path(host).read_bytes())
        else:
            out[p] = _entry(st_, target=os.readlink(host) if stat.S_ISLNK(st_.st_mode) else None)
        if stat.S_ISDIR(st_.st_mode):
            out.update(snapshot_host(top, p))
    return out


def sentinel_state(sentinel: Path) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(sentinel):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            s = os.lstat(p)
            out[p] = (s.st_mode, s.st_size, s.st_mtime_ns, s.st_nlink,
                      Path(p).read_bytes() if stat.S_ISREG(s.st_mode) else None)
    return out


# -- operations ----------------------------------------------------------------------------------

# Mostly names a layer may hold, so that most operations do something; some dots, empty
# components, trailing slashes, and now and then a straight attempt at the sentinel.
COMPONENTS = st.sampled_from(["a"] * 4 + ["b"] * 4 + ["c"] * 3 + ["d", ".", "..", ""])
HOSTILE = [SENTINEL + "/secret", "/" + SENTINEL, "/../../sentinel/secret", "/a/../../../sentinel"]


def _path(parts: list[str], depth: int, trail: bool, hostile: int) -> str:
    if hostile < len(HOSTILE):
        return HOSTILE[hostile]
    return "/" + "/".join(parts[:depth]) + ("/" if trail else "")


class Pick(int):
    """A path chosen when the operation runs: the k-th of the paths that exist then."""


def resolve_picks(op: tuple, existing: list[str]) -> tuple:
    return tuple(existing[a % len(existing)] if isinstance(a, Pick) and existing
                 else "/" if isinstance(a, Pick) else a for a in op)


PATHS = st.one_of(
    st.builds(Pick, st.integers(0, 60)),
    st.builds(_path, st.lists(COMPONENTS, min_size=3, max_size=3),
              st.sampled_from([1, 1, 1, 2, 2, 3]), st.sampled_from([False] * 5 + [True]),
              st.integers(0, 40)))
OPEN_FLAGS = st.sampled_from([
    os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_WRONLY | os.O_APPEND, os.O_RDWR,
    os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.O_RDONLY | os.O_CREAT, os.O_RDONLY | os.O_TRUNC,
    os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, os.O_RDONLY | os.O_DIRECTORY, os.O_WRONLY | os.O_TRUNC])
FRESH = st.sampled_from(["/d", "/e", "/a/d", "/b/e", "/c/d", "/d/"])     # names no layer holds
TO_PATHS = st.one_of(PATHS, FRESH)
OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), PATHS, OPEN_FLAGS, st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("read"), PATHS),
    st.tuples(st.just("stat"), PATHS, st.booleans()),
    st.tuples(st.just("mkdir"), TO_PATHS, st.sampled_from([0o755, 0o700])),
    st.tuples(st.just("rmdir"), PATHS),
    st.tuples(st.just("unlink"), PATHS),
    st.tuples(st.just("rename"), PATHS, TO_PATHS),
    st.tuples(st.just("rename"), st.builds(Pick, st.integers(0, 60)), FRESH),
    st.tuples(st.just("symlink"), st.sampled_from(TARGETS), TO_PATHS),
    st.tuples(st.just("link"), PATHS, TO_PATHS),
    st.tuples(st.just("replace_dir"), st.builds(Pick, st.integers(0, 60)),
              st.sampled_from([0o755, 0o700])),
    st.tuples(st.just("chmod"), PATHS, st.sampled_from([0o700, 0o640])),
    st.tuples(st.just("truncate"), PATHS, st.integers(0, 3)),
    st.tuples(st.just("readlink"), PATHS),
    st.tuples(st.just("listdir"), PATHS),
    st.tuples(st.just("resolve"), PATHS),
), min_size=3, max_size=16)


def run_op(side, op: tuple, sentinel: Path):
    """One operation on either side: its result, or ('errno', name)."""
    kind, *args = op
    args = [target_of(a, sentinel) if isinstance(a, str) else a for a in args]
    hv = isinstance(side, LayeredRoot)
    try:
        if kind == "write":
            path, flags, data = args
            fd = side.open(path, flags, 0o644)
            try:
                if flags & os.O_ACCMODE != os.O_RDONLY:
                    os.write(fd, data)
            finally:
                os.close(fd)
            return "ok"
        if kind == "read":
            fd = side.open(args[0], os.O_RDONLY, 0)
            try:
                return os.read(fd, 64) if stat.S_ISREG(os.fstat(fd).st_mode) else "dir"
            finally:
                os.close(fd)
        if kind == "stat":
            s = side.stat(*args)
            return (stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode),
                    None if stat.S_ISDIR(s.st_mode) else (s.st_size, s.st_nlink))
        if kind == "listdir":
            got = side.listdir(args[0])
            return sorted(e.name for e in got) if hv else got
        if kind == "resolve":
            return side.resolve(args[0])
        if kind == "replace_dir":         # rm -r, then mkdir: the second directory is new
            remove_tree(side, args[0], hv)
            side.mkdir(args[0], args[1])
            return "ok"
        result = getattr(side, kind)(*args)
        return "ok" if result is None else result
    except (FsError, OSError) as e:
        return ("errno", errno.errorcode.get(e.errno, e.errno))


def remove_tree(side, path: str, hv: bool) -> None:
    """rm -r through the calls under test (a symlink is removed, not followed)."""
    if not stat.S_ISDIR(side.stat(path, False).st_mode):
        return side.unlink(path)
    for name in side.listdir(path):
        remove_tree(side, path.rstrip("/") + "/" + (name.name if hv else name), hv)
    side.rmdir(path)


def check_diff(root: LayeredRoot, before: dict, after: dict) -> None:
    changes = root.diff()
    assert changes == sorted(changes, key=lambda c: c[1])
    kinds = dict((p, k) for k, p in changes)
    for kind, p in changes:
        assert (kind == "A") == (p not in before) and (kind == "D") == (p not in after), (kind, p)
    for p in set(before) | set(after):
        if before.get(p) == after.get(p):
            continue
        ancestors = [p[:i] for i in range(len(p)) if p[i] == "/" and i] + [p]
        assert p in kinds or any(kinds.get(a) in ("A", "D") for a in ancestors), \
            f"diff misses the change at {p}"


# -- the tests -----------------------------------------------------------------------------------

SETTINGS = settings(max_examples=120, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


def _can_mount_overlay() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    with tempfile.TemporaryDirectory() as d:
        for sub in ("l", "u", "w", "m"):
            os.mkdir(os.path.join(d, sub))
        ok = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                             f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w", f"{d}/m"],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", f"{d}/m"], check=True)
        return ok


class Example:
    """One drawn image: the layers on disk, hv's root over them, and the kernel's."""

    def __init__(self, base: Path, stack: list[dict], reference: str):
        self.dir = Path(tempfile.mkdtemp(dir=base))
        self.sentinel = self.dir / "sentinel"
        self.sentinel.mkdir()
        (self.sentinel / "secret").write_bytes(SECRET)
        (self.sentinel / "dir").mkdir()
        self.mounted = None
        lowers = []
        for i, layer in enumerate(stack):
            write_layer(self.dir / f"l{i}", layer, self.sentinel)
            lowers.insert(0, self.dir / f"l{i}")
        self.image = {}
        for layer in stack:
            apply_layer(self.image, copy.deepcopy(layer))
        if reference == "overlay":
            ov, below = [], {}
            for i, layer in enumerate(stack):
                write_layer(self.dir / f"o{i}", layer, self.sentinel, below, overlay=True)
                apply_layer(below, copy.deepcopy(layer))
                ov.insert(0, str(self.dir / f"o{i}"))
            for sub in ("ou", "ow", "mnt"):
                (self.dir / sub).mkdir()
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={':'.join(ov)},upperdir={self.dir}/ou,workdir={self.dir}/ow,"
                            f"redirect_dir=on,index=off,metacopy=off", f"{self.dir}/mnt"],
                           check=True, capture_output=True)
            self.mounted = self.dir / "mnt"
            self.ref_top = self.mounted
        else:
            self.ref_top = self.dir / "flat"
            self.ref_top.mkdir()
            write_tree(self.ref_top, self.image, self.sentinel)
        self.upper = self.dir / "upper"
        self.root = self.kernel = None
        try:
            self.kernel = KernelRoot(self.ref_top)
            self.before_sentinel = sentinel_state(self.sentinel)
            self.audit = AuditedOs([str(p) for p in lowers] + [str(self.upper)])
            layers_mod.os = self.audit
            self.root = LayeredRoot(lowers, self.upper)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Everything undone, whatever state the example got to (a mount never outlives it)."""
        layers_mod.os = os
        try:
            if self.root is not None:
                self.root.close()
            if self.kernel is not None:
                self.kernel.close()
        finally:
            if self.mounted is not None:
                subprocess.run(["umount", str(self.mounted)], check=True)
            shutil.rmtree(self.dir)


def differential(tmp_path, stack, ops, reference):
    old_umask = os.umask(0)                  # both sides create files with exactly the modes asked
    ex = Example(tmp_path, stack, reference)
    try:
        image = snapshot_hv(ex.root)
        assert image == snapshot_host(ex.ref_top), "the merged image differs from the kernel's"
        if reference == "flat":
            assert image == model_snapshot(ex.image, ex.sentinel)
        for op in ops:
            op = resolve_picks(op, sorted(snapshot_host(ex.ref_top)))
            mine, theirs = run_op(ex.root, op, ex.sentinel), run_op(ex.kernel, op, ex.sentinel)
            assert mine == theirs, f"{op}: hv {mine}, kernel {theirs}"
            assert SECRET not in repr(mine).encode()
        final = snapshot_hv(ex.root)
        assert final == snapshot_host(ex.ref_top), "the merged trees differ after the operations"
        assert not any(SECRET in repr(v).encode() for v in final.values())
        # The upper layer is an OCI layer: applied over the image it gives the same tree.
        layers_mod.os = os
        committed = copy.deepcopy(ex.image)
        apply_layer(committed, upper_as_layer(ex.upper))
        assert model_snapshot(committed, ex.sentinel) == final
        check_diff(ex.root, image, final)
        assert sentinel_state(ex.sentinel) == ex.before_sentinel
        assert ex.audit.calls > 0
    finally:
        os.umask(old_umask)
        ex.close()


@SETTINGS
@given(stack=LAYER_STACKS, ops=OPS)
def test_random_operations_on_random_layers_match_the_kernel_on_the_flattened_image(
        tmp_path, stack, ops):
    differential(tmp_path, stack, ops, "flat")


@pytest.mark.skipif(not _can_mount_overlay(), reason="mounting overlayfs needs root")
@settings(SETTINGS, max_examples=60)
@given(stack=LAYER_STACKS, ops=OPS)
def test_random_operations_on_random_layers_match_the_kernels_overlayfs(tmp_path, stack, ops):
    differential(tmp_path, stack, ops, "overlay")


def test_the_audit_catches_a_host_call_that_would_follow_a_name(tmp_path):
    """The audit above is only worth something if it fails on a bad call."""
    audit = AuditedOs([str(tmp_path)])
    fd = os.open(tmp_path, os.O_PATH)
    try:
        with pytest.raises(AssertionError):
            audit.open("x", os.O_RDONLY | os.O_CREAT, dir_fd=fd)        # would follow
        with pytest.raises(AssertionError):
            audit.stat("../x", dir_fd=fd, follow_symlinks=False)
        with pytest.raises(AssertionError):
            audit.stat("/etc/passwd")
        os.close(audit.open("y", os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, dir_fd=fd))
    finally:
        os.close(fd)
