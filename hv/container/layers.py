"""The layered root: the file system a process container sees.

An image is an ordered list of read-only layer directories; a container adds its own
writable upper layer. The guest sees them merged as overlayfs merges them:

* lookups go top-down; the first layer holding a name decides what it is; a directory
  merges with the directories of the same name below it until a layer holds a
  non-directory there, hides the name, or makes the directory opaque;
* layers use the OCI image spec's on-disk conventions, so a layer tarred is an OCI layer:
  ``.wh.NAME`` hides NAME in the layers below, ``.wh..wh..opq`` in a directory hides every
  lower entry of that directory. Names starting with ``.wh.`` are never visible to the
  guest and cannot be created by it (EINVAL); nor can ``/.hv``, where a layer tar carries
  the layer's registry;
* writes copy the file up into the upper layer first (data, mode, owner, times; symlinks as
  symlinks); deleting a name a lower layer holds leaves a whiteout; a directory removed and
  created again is opaque; renaming a directory copies its whole merged tree up.

Confinement (``openat2(RESOLVE_IN_ROOT)`` semantics): every guest path is resolved here,
component by component, inside the container: ``..`` at the root stays at the root,
absolute symlinks start again at the container's root, 40 symlinks at most (ELOOP),
255-byte names and 4095-byte paths at most (ENAMETOOLONG), no NUL (EINVAL). Host files are
reached only through directory file descriptors with ``O_PATH|O_NOFOLLOW`` one name at a
time, so the host kernel never follows a symlink found in a layer or a volume, and a
symlink planted or swapped in on the host side cannot lead out of the tree either.
Volumes (``-v HOST:GUEST[:ro]``) are host directories mounted at a guest path, unlayered
and confined the same way.

Inode numbers are a 32-bit hash of the canonical guest path (stable across copy-up, and
within what a 32-bit program without large-file support can take). Not thread-safe: the
system-call layer serialises calls. Needs Linux with ``/proc`` (``/proc/self/fd`` reopens
an ``O_PATH`` descriptor without a second lookup by name). See ``docs/images.md``.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

WHITEOUT_PREFIX = ".wh."                 # OCI: .wh.NAME hides NAME in lower layers
OPAQUE_MARKER = ".wh..wh..opq"           # OCI: this directory hides its lower namesakes' entries
TEMP_PREFIX = ".wh..wh..hvtmp."          # copy-up in progress: hidden like any .wh. name
REGISTRY_DIR = ".hv"                     # in a layer tar, .hv/registry.db; never in a tree

MAX_SYMLINKS = 40                        # Linux's MAXSYMLINKS
NAME_MAX = 255
PATH_MAX = 4096                          # including the NUL: paths of 4095 bytes at most

# A walk keeps the descriptors of this many directories above its position; a '..' above
# them walks down again from the root. Bounds the descriptors a hostile deep path can pin.
CHAIN_KEEP = 32
FACTS_MAX = 1 << 16       # remembered whiteout/marker answers of the lower layers

DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12
_DT_OF_FMT = {stat.S_IFIFO: DT_FIFO, stat.S_IFCHR: DT_CHR, stat.S_IFDIR: DT_DIR,
              stat.S_IFBLK: DT_BLK, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK,
              stat.S_IFSOCK: DT_SOCK}

_O_LOOKUP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_O_TMPFILE_BIT = os.O_TMPFILE & ~os.O_DIRECTORY
# Open flags that reach the host as given; the rest are decided here.
_O_PASS = os.O_APPEND | os.O_NONBLOCK | os.O_DSYNC | os.O_SYNC | os.O_TRUNC

# The last component of a path, as Linux's path walk classifies it.
LAST_NORM, LAST_DOT, LAST_DOTDOT, LAST_ROOT = range(4)

_DEV_ROOT = 0x6876                       # st_dev of the layered root; volumes count up from it


class FsError(OSError):
    """A file-system error for the guest; ``errno`` is what the system call returns."""

    def __init__(self, code: int, path: str | None = None):
        if path is None:
            super().__init__(code, os.strerror(code))
        else:
            super().__init__(code, os.strerror(code), path)


@dataclass(frozen=True)
class Volume:
    """A host directory mounted at a guest path: ``-v HOST:GUEST[:ro]``."""
    host_dir: Path
    guest_path: str
    readonly: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Volume":
        """``HOST:GUEST[:ro|:rw]`` -> Volume; ValueError with a one-line reason."""
        parts = spec.split(":")
        readonly = False
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            readonly = parts.pop() == "ro"
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{spec!r}: expected HOST:GUEST[:ro]")
        if not parts[1].startswith("/"):
            raise ValueError(f"{spec!r}: the guest path must be absolute")
        return cls(Path(parts[0]), parts[1], readonly)


class DirEntry(NamedTuple):
    name: str
    ino: int
    d_type: int


def inode_number(path: tuple[str, ...]) -> int:
    """The st_ino of a canonical guest path, given as its components (() is '/')."""
    digest = hashlib.blake2b("/".join(path).encode("utf-8", "surrogateescape"),
                             digest_size=4).digest()
    return int.from_bytes(digest, "little") or 1


_ino = inode_number


def _reserved(name: str, parent: tuple[str, ...]) -> bool:
    """Names the layered root keeps for itself: whiteouts and the root's registry folder."""
    return name.startswith(WHITEOUT_PREFIX) or (name == REGISTRY_DIR and not parent)


def _split(path) -> tuple[list[str], bool]:
    """A guest path -> (components, ends with '/'), with Linux's limits checked."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        raise TypeError(f"guest path must be str, not {type(path).__name__}")
    if "\0" in path:
        raise FsError(errno.EINVAL)
    if not path:
        raise FsError(errno.ENOENT)
    if len(os.fsencode(path)) >= PATH_MAX:
        raise FsError(errno.ENAMETOOLONG)
    parts = [p for p in path.split("/") if p]
    return parts, bool(parts) and path.endswith("/")


def _check_name(name: str) -> None:
    if len(os.fsencode(name)) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG)


def _open_at(name: str, dir_fd: int) -> int | None:
    """An O_PATH descriptor of `name` itself (never following it), or None if absent."""
    try:
        return os.open(name, _O_LOOKUP, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _exists_at(name: str, dir_fd: int) -> bool:
    # faccessat(AT_SYMLINK_NOFOLLOW): a yes/no without the cost of a Python exception
    return os.access(name, os.F_OK, dir_fd=dir_fd, follow_symlinks=False)


def _unlink_quiet(name: str, dir_fd: int) -> bool:
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENAMETOOLONG):
            return False
        raise


def _touch_at(name: str, dir_fd: int) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                 dir_fd=dir_fd)
    os.close(fd)


def _proc_fd(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _chmod_fd(fd: int, mode: int) -> None:
    """chmod the inode an O_PATH descriptor holds (Linux has no lchmod; this never follows)."""
    os.chmod(_proc_fd(fd), mode)


def _remove_upper_entry(name: str, dir_fd: int) -> None:
    """Remove an upper-layer entry; a directory here holds whiteouts and markers only."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return
    except IsADirectoryError:
        pass
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove_upper_entry(child, fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _copy_data(src: int, dst: int) -> None:
    while True:
        try:
            if os.copy_file_range(src, dst, 1 << 30) == 0:
                return
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            break
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


def _host_errors(method):
    """Host OSErrors leave as FsError with the same errno: the guest gets an errno, always."""
    @functools.wraps(method)
    def wrapper(*args, **kw):
        try:
            return method(*args, **kw)
        except FsError:
            raise
        except OSError as e:
            raise FsError(e.errno or errno.EIO) from None
        except ValueError:                    # e.g. a NUL the host refused
            raise FsError(errno.EINVAL) from None
    return wrapper


class _Branch:
    """One host tree serving part of the guest namespace: the layered root or a volume."""

    def __init__(self, roots: list[int], root_paths: list[str], writable: bool,
                 layered: bool, dev: int, mount: tuple[str, ...]):
        self.roots = roots                # O_PATH fds of the layer roots, top first
        self.root_paths = root_paths      # their host paths (trusted configuration)
        self.writable = writable          # layer 0 takes writes (the upper, or a rw volume)
        self.layered = layered            # whiteouts, opaque directories, reserved names
        self.dev = dev
        self.mount = mount
        self.root_node: _Node | None = None


class _Node:
    """A guest path resolved to the host: its top layer entry (and, for a directory, the
    stack of every layer's directory that merges into it)."""
    __slots__ = ("branch", "path", "layer", "parent_fd", "name", "fd", "st", "stack",
                 "shared")

    def __init__(self, branch: _Branch, path: tuple[str, ...], layer: int,
                 parent_fd: int | None, name: str | None, fd: int, st: os.stat_result):
        self.branch = branch
        self.path = path            # canonical guest components
        self.layer = layer          # index of the top layer holding it
        self.parent_fd = parent_fd  # its directory in that layer (None: a branch root)
        self.name = name
        self.fd = fd                # O_PATH descriptor of the entry itself
        self.st = st
        self.stack: list[tuple[int, int]] = []   # (layer, O_PATH dir fd), top first
        self.shared = False         # a branch root: owned by the LayeredRoot, not a walk

    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def is_link(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)

    @property
    def in_upper(self) -> bool:
        return self.branch.writable and self.layer == 0

    def at(self) -> tuple[str, int | None]:
        """(name, dir_fd) naming this entry for the *at calls."""
        if self.parent_fd is None:
            return self.branch.root_paths[self.layer], None
        return self.name, self.parent_fd


class _Scope:
    """The descriptors one operation opens; all closed when it ends."""

    def __init__(self):
        self.fds: set[int] = set()

    def track(self, fd: int) -> int:
        self.fds.add(fd)
        return fd

    def close_fd(self, fd: int) -> None:
        if fd in self.fds:
            self.fds.discard(fd)
            os.close(fd)

    def release(self, node: _Node) -> None:
        if node.shared:
            return
        self.close_fd(node.fd)
        for _, fd in node.stack:
            self.close_fd(fd)

    def __enter__(self) -> "_Scope":
        return self

    def __exit__(self, *exc) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


class _Lookup(NamedTuple):
    parent: _Node | None     # the directory holding the last component (None: '/')
    name: str                # the last component ('.', '..' or '' for the dot kinds and root)
    node: _Node | None       # what the path names; None when the last component is missing
    kind: int                # LAST_NORM, LAST_DOT, LAST_DOTDOT, LAST_ROOT
    trailing: bool           # the path ended with '/'


class LayeredRoot:
    """A container's root: read-only `lowers` (top first) under a writable `upper`
    (None: a read-only root, writes fail with EROFS), plus volumes."""

    def __init__(self, lowers: list[Path], upper: Path | None, volumes: Sequence[Volume] = ()):
        self._owned: list[int] = []
        self._mounts: dict[tuple[str, ...], _Node] = {}
        self._facts: dict[tuple, bool] = {}
        try:
            paths = [Path(p) for p in lowers]
            if upper is not None:
                Path(upper).mkdir(parents=True, exist_ok=True)
                paths.insert(0, Path(upper))
            if not paths:
                raise FsError(errno.EINVAL, "a layered root needs at least one layer")
            self.upper = None if upper is None else Path(upper)
            self.lowers = [Path(p) for p in lowers]
            self._root_branch = self._branch(paths, upper is not None, True, ())
            self._root = self._root_branch.root_node
            # The image alone (what diff compares against): the lower layers merged.
            if upper is not None and lowers:
                lower = _Node(self._root_branch, (), 1, None, None,
                              self._root_branch.roots[1], os.fstat(self._root_branch.roots[1]))
                lower.stack = self._root_stack(self._root_branch, first=1)
                lower.shared = True
                self._lower_root = lower
            else:
                self._lower_root = None
            for vol in sorted(volumes, key=lambda v: len(_split(v.guest_path)[0])):
                self._mount(vol)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_directory(cls, top: Path, volumes: Sequence[Volume] = ()) -> "LayeredRoot":
        """A writable root straight over one host directory, with no image below it."""
        return cls([], Path(top), volumes)

    # -- set-up ---------------------------------------------------------------------------

    def _branch(self, paths: list[Path], writable: bool, layered: bool,
                mount: tuple[str, ...]) -> _Branch:
        roots, real = [], []
        for p in paths:
            try:
                fd = os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                raise FsError(e.errno, str(p)) from None
            self._owned.append(fd)
            roots.append(fd)
            real.append(os.path.realpath(p))
        branch = _Branch(roots, real, writable, layered, _DEV_ROOT + len(self._mounts) +
                         (1 if mount else 0), mount)
        node = _Node(branch, mount, 0, None, None, roots[0], os.fstat(roots[0]))
        node.stack = self._root_stack(branch)
        node.shared = True
        branch.root_node = node
        return branch

    @staticmethod
    def _root_stack(branch: _Branch, first: int = 0) -> list[tuple[int, int]]:
        stack = []
        for layer in range(first, len(branch.roots)):
            stack.append((layer, branch.roots[layer]))
            if branch.layered and _exists_at(OPAQUE_MARKER, branch.roots[layer]):
                break
        return stack

    def _mount(self, vol: Volume) -> None:
        if not vol.guest_path.startswith("/"):
            raise FsError(errno.EINVAL, vol.guest_path)
        with _Scope() as s:
            try:
                missing = self._walk(s, vol.guest_path).node is None
            except FsError as e:
                if e.errno != errno.ENOENT:
                    raise FsError(e.errno, vol.guest_path) from None
                missing = True
            if missing:
                self._make_mount_point(vol.guest_path)
            lk = self._walk(s, vol.guest_path)
            if lk.node is None:
                raise FsError(errno.ENOENT, vol.guest_path)
            if not lk.node.is_dir():
                raise FsError(errno.ENOTDIR, vol.guest_path)
            where = lk.node.path
        if not where:
            raise FsError(errno.EINVAL, f"{vol.guest_path}: a volume cannot replace the root")
        if where in self._mounts:
            raise FsError(errno.EBUSY, vol.guest_path)
        branch = self._branch([Path(vol.host_dir)], not vol.readonly, False, where)
        self._mounts[where] = branch.root_node

    def _make_mount_point(self, guest_path: str) -> None:
        """As Docker does: create a missing mount point and its missing parents."""
        parts = _split(guest_path)[0]
        for i in range(1, len(parts) + 1):
            try:
                self.mkdir("/" + "/".join(parts[:i]))
            except FsError as e:
                if e.errno != errno.EEXIST:
                    raise FsError(e.errno, guest_path) from None

    def close(self) -> None:
        for fd in self._owned:
            os.close(fd)
        self._owned = []

    def __enter__(self) -> "LayeredRoot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- lookup ---------------------------------------------------------------------------

    def _child(self, s: _Scope, d: _Node, name: str, mounts: bool = True) -> _Node | None:
        """Look `name` up in directory `d`, merging the layers of its stack."""
        path = d.path + (name,)
        if mounts:
            vol = self._mounts.get(path)
            if vol is not None:
                return vol
        _check_name(name)
        branch = d.branch
        if branch.layered and _reserved(name, d.path):
            return None
        top: _Node | None = None
        last = len(d.stack) - 1
        for i, (layer, dfd) in enumerate(d.stack):
            if top is None:
                fd = _open_at(name, dfd)
                if fd is not None:
                    s.track(fd)
                    top = _Node(branch, path, layer, dfd, name, fd, os.fstat(fd))
                    if not top.is_dir():
                        return top
                    top.stack.append((layer, fd))
            else:                           # below a directory: only directories merge
                try:
                    fd = os.open(name, _O_LOOKUP | os.O_DIRECTORY, dir_fd=dfd)
                except (FileNotFoundError, NotADirectoryError) as e:
                    if isinstance(e, NotADirectoryError):
                        break               # a non-directory below ends the merge
                    fd = None
                if fd is not None:
                    top.stack.append((layer, s.track(fd)))
            if i == last or not branch.layered:
                continue
            if fd is not None and self._marker(branch, layer, fd, path, OPAQUE_MARKER):
                break
            if self._marker(branch, layer, dfd, d.path, WHITEOUT_PREFIX + name):
                break
        return top

    def _marker(self, branch: _Branch, layer: int, dfd: int, path: tuple[str, ...],
                name: str) -> bool:
        """Whether directory `path` of `layer` holds whiteout or marker `name`. Lower layers
        never change, so their answers are remembered (booleans only, never descriptors:
        every access still walks by descriptors)."""
        if branch.writable and layer == 0:
            return _exists_at(name, dfd)
        key = (layer, path, name)
        known = self._facts.get(key)
        if known is None:
            if len(self._facts) >= FACTS_MAX:
                self._facts.clear()
            known = self._facts[key] = _exists_at(name, dfd)
        return known

    def _walk(self, s: _Scope, path, follow: bool = True, parent_only: bool = False,
              create: bool = False) -> _Lookup:
        """Resolve a guest path inside the container, as Linux's path walk does under
        RESOLVE_IN_ROOT. `parent_only`: stop before the last component (unlink, mkdir...).
        `create` (O_CREAT): a last name with a trailing slash is EISDIR before any lookup."""
        comps, trailing = _split(path)
        todo = comps[::-1]
        chain: list = [self._root]          # _Node, or the path of an evicted one
        links = 0
        while todo:
            name = todo.pop()
            last = not todo
            if name in (".", ".."):
                kind = LAST_DOT if name == "." else LAST_DOTDOT
                if last and parent_only:
                    return _Lookup(self._top(s, chain), name, None, kind, trailing)
                if name == ".." and len(chain) > 1:
                    gone = chain.pop()
                    if isinstance(gone, _Node):
                        s.release(gone)
                if last:
                    return _Lookup(None, name, self._top(s, chain), kind, trailing)
                continue
            d = self._top(s, chain)
            if last and parent_only:
                return _Lookup(d, name, None, LAST_NORM, trailing)
            if last and create and trailing:
                raise FsError(errno.EISDIR)
            node = self._child(s, d, name)
            if node is None:
                if last:
                    return _Lookup(d, name, None, LAST_NORM, trailing)
                raise FsError(errno.ENOENT)
            if node.is_link() and (not last or follow or trailing):
                links += 1
                if links > MAX_SYMLINKS:
                    raise FsError(errno.ELOOP)
                target = os.readlink(node.name, dir_fd=node.parent_fd)
                s.release(node)
                if not target:
                    raise FsError(errno.ENOENT)
                if last and target.endswith("/"):
                    trailing = True
                if target.startswith("/"):
                    for gone in chain[1:]:
                        if isinstance(gone, _Node):
                            s.release(gone)
                    del chain[1:]
                todo.extend(p for p in reversed(target.split("/")) if p)
                continue
            if last:
                if trailing and not node.is_dir():
                    raise FsError(errno.ENOTDIR)
                return _Lookup(d, name, node, LAST_NORM, trailing)
            if not node.is_dir():
                raise FsError(errno.ENOTDIR)
            chain.append(node)
            self._forget_far(s, chain, len(chain) - 1)
        return _Lookup(None, "", self._top(s, chain), LAST_ROOT, trailing)

    @staticmethod
    def _forget_far(s: _Scope, chain: list, k: int) -> None:
        """Keep descriptors for the CHAIN_KEEP directories up to chain[k] only."""
        if k > CHAIN_KEEP:
            far = chain[k - CHAIN_KEEP]
            if isinstance(far, _Node) and not far.shared:
                s.release(far)
                chain[k - CHAIN_KEEP] = far.path

    def _top(self, s: _Scope, chain: list) -> _Node:
        """The walk's current directory, walked down to again if it was forgotten."""
        if isinstance(chain[-1], _Node):
            return chain[-1]
        i = len(chain) - 1
        while not isinstance(chain[i], _Node):
            i -= 1
        for k in range(i + 1, len(chain)):
            node = self._child(s, chain[k - 1], chain[k][-1])
            if node is None or not node.is_dir():
                raise FsError(errno.ENOENT)   # the host tree changed under the walk
            chain[k] = node
            self._forget_far(s, chain, k)
        return chain[-1]

    def _canonical(self, s: _Scope, path: tuple[str, ...], root: _Node | None = None,
                   mounts: bool = True) -> _Node | None:
        """A canonical path (no symlinks, no dots) -> its node, or None."""
        node, parent = root or self._root, None
        for name in path:
            if not node.is_dir():
                return None
            child = self._child(s, node, name, mounts)
            if child is None:
                return None
            if parent is not None:
                s.release(parent)           # the node and its parent stay open: enough
            parent, node = node, child
        return node

    def _lower_child(self, s: _Scope, d: _Node, name: str) -> _Node | None:
        """What the lower layers show at d/name, through d's merge: decides whiteouts."""
        lower = [(layer, fd) for layer, fd in d.stack if not (d.branch.writable and layer == 0)]
        if not lower or not d.branch.layered:
            return None
        view = _Node(d.branch, d.path, lower[0][0], None, None, lower[0][1], d.st)
        view.stack = lower
        view.shared = True
        return self._child(s, view, name, mounts=False)

    def _listing(self, node: _Node) -> dict[str, tuple[os.DirEntry, tuple[str, ...]]]:
        """The merged entries of a directory: name -> (host entry of its top layer)."""
        seen: dict[str, os.DirEntry] = {}
        hidden: set[str] = set()
        layered = node.branch.layered
        for _, fd in node.stack:
            rfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            try:
                with os.scandir(rfd) as it:
                    entries = list(it)
            finally:
                os.close(rfd)
            whiteouts = set()
            for e in entries:
                name = e.name
                if layered and name.startswith(WHITEOUT_PREFIX):
                    if name != OPAQUE_MARKER and not name.startswith(TEMP_PREFIX):
                        whiteouts.add(name[len(WHITEOUT_PREFIX):])
                    continue
                if name in seen or name in hidden:
                    continue
                if layered and name == REGISTRY_DIR and not node.path:
                    continue
                seen[name] = e
            hidden |= whiteouts
        return seen

    # -- copy-up --------------------------------------------------------------------------

    def _upper_dir(self, s: _Scope, d: _Node) -> int:
        """A host directory fd in which to change directory `d`, copying it up if needed."""
        if not d.branch.writable:
            raise FsError(errno.EROFS)
        if d.in_upper:
            return d.fd
        return self._copy_up_dirs(s, d.path).fd

    def _copy_up_dirs(self, s: _Scope, path: tuple[str, ...]) -> _Node:
        """Make the upper layer hold directory `path` and its parents; its upper node."""
        node, parent = self._root, None
        for name in path:
            child = self._child(s, node, name, mounts=False)
            if child is None or not child.is_dir():
                raise FsError(errno.ENOENT)
            if not child.in_upper:
                os.mkdir(name, 0o700, dir_fd=node.fd)
                fd = s.track(os.open(name, _O_LOOKUP, dir_fd=node.fd))
                self._copy_attrs(fd, name, node.fd, child.st)
                child.stack.insert(0, (0, fd))
                child.layer, child.parent_fd, child.fd, child.st = 0, node.fd, fd, os.fstat(fd)
            if parent is not None:
                s.release(parent)           # callers use the node and its parent_fd only
            parent, node = node, child
        return node

    @staticmethod
    def _copy_attrs(fd: int, name: str, dir_fd: int, st: os.stat_result) -> None:
        if os.geteuid() == 0:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            _chmod_fd(fd, stat.S_IMODE(st.st_mode))
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd,
                 follow_symlinks=False)

    def _copy_up(self, s: _Scope, node: _Node, truncate: bool = False) -> _Node:
        """The upper-layer copy of a non-directory (written under a hidden temporary name,
        then renamed, so a crash never leaves a half-copied file visible)."""
        if node.in_upper:
            return node
        if not node.branch.writable:
            raise FsError(errno.EROFS)
        dfd = self._copy_up_dirs(s, node.path[:-1]).fd
        tmp = TEMP_PREFIX + secrets.token_hex(8)
        mode = node.st.st_mode
        if stat.S_ISREG(mode):
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600, dir_fd=dfd)
            try:
                if not truncate:
                    src = os.open(_proc_fd(node.fd), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        _copy_data(src, out)
                    finally:
                        os.close(src)
            except BaseException:
                os.close(out)
                _unlink_quiet(tmp, dfd)
                raise
            os.close(out)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(node.name, dir_fd=node.parent_fd), tmp, dir_fd=dfd)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(tmp, 0o600, dir_fd=dfd)
        else:
            raise FsError(errno.EPERM)          # device nodes and sockets are not copied
        try:
            fd = s.track(os.open(tmp, _O_LOOKUP, dir_fd=dfd))
            self._copy_attrs(fd, tmp, dfd, node.st)
            os.rename(tmp, node.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            _unlink_quiet(tmp, dfd)
            raise
        up = _Node(node.branch, node.path, 0, dfd, node.name, fd, os.fstat(fd))
        s.release(node)
        return up

    def _materialize(self, s: _Scope, path: tuple[str, ...]) -> _Node:
        """Copy a directory's whole merged tree into the upper layer and make every copied
        directory opaque, so the tree no longer depends on the layers below."""
        todo, copied = [path], []
        while todo:
            p = todo.pop()
            with _Scope() as sub:
                self._copy_up_dirs(sub, p)
                merged = self._canonical(sub, p, mounts=False)
                if all(layer == 0 for layer, _ in merged.stack):
                    continue                    # upper only: nothing below to depend on
                copied.append(p)
                for name in sorted(self._listing(merged)):
                    child = self._child(sub, merged, name, mounts=False)
                    if child.is_dir():
                        todo.append(p + (name,))
                    elif not child.in_upper:
                        self._copy_up(sub, child)
        for p in reversed(copied):              # deepest first: markers hide what is below
            with _Scope() as sub:
                _touch_at(OPAQUE_MARKER, self._copy_up_dirs(sub, p).fd)
        return self._copy_up_dirs(s, path)

    # -- guest operations -----------------------------------------------------------------

    @_host_errors
    def resolve(self, path: str, follow: bool = True) -> str:
        """The canonical guest path `path` names (ENOENT if it names nothing)."""
        with _Scope() as s:
            node = self._walk(s, path, follow).node
            if node is None:
                raise FsError(errno.ENOENT)
            return "/" + "/".join(node.path)

    @_host_errors
    def stat(self, path: str, follow: bool = True) -> os.stat_result:
        with _Scope() as s:
            node = self._walk(s, path, follow).node
            if node is None:
                raise FsError(errno.ENOENT)
            return self._stat_of(node)

    @staticmethod
    def _stat_of(node: _Node) -> os.stat_result:
        st = os.fstat(node.fd) if node.shared else node.st   # branch roots live on
        seq, extra = st.__reduce__()[1]
        seq = list(seq)
        seq[1], seq[2] = _ino(node.path), node.branch.dev
        if node.is_dir() and len(node.stack) > 1:
            seq[3] = 1          # as overlayfs: a merged directory's link count is unknown
        return os.stat_result(seq, extra)

    @_host_errors
    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """A host fd (O_CLOEXEC) for the guest to read and write; the caller keeps offsets.
        A directory gives a read-only fd of its top layer (for fstat/fchdir; list it with
        `listdir`). Special files in layers are not served (ENXIO)."""
        acc = flags & os.O_ACCMODE
        if acc == os.O_ACCMODE:
            raise FsError(errno.EINVAL)
        if flags & _O_TMPFILE_BIT:
            raise FsError(errno.EOPNOTSUPP)
        create, excl = bool(flags & os.O_CREAT), bool(flags & os.O_EXCL)
        writes = acc != os.O_RDONLY or bool(flags & os.O_TRUNC)
        copy_up = writes or create or bool(flags & os.O_APPEND)
        follow = not (flags & os.O_NOFOLLOW) and not (create and excl)
        with _Scope() as s:
            lk = self._walk(s, path, follow, create=create)
            node = lk.node
            if lk.kind != LAST_NORM:                # '.', '..' or '/': a directory
                if create:
                    raise FsError(errno.EEXIST if excl else errno.EISDIR)
            elif node is None:
                if not create:
                    raise FsError(errno.ENOENT)
                if lk.trailing:
                    raise FsError(errno.EISDIR)
                return self._create_file(s, lk, flags, mode)
            elif create and excl:
                raise FsError(errno.EEXIST)
            if node.is_link():
                raise FsError(errno.ELOOP)
            if node.is_dir():
                if writes or create:
                    raise FsError(errno.EISDIR)
                return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.fd)
            if flags & os.O_DIRECTORY:
                raise FsError(errno.ENOTDIR)
            if not stat.S_ISREG(node.st.st_mode):
                raise FsError(errno.ENXIO)
            if writes and not node.branch.writable:
                raise FsError(errno.EROFS)
            if copy_up and node.branch.writable:
                node = self._copy_up(s, node, truncate=bool(flags & os.O_TRUNC))
            return os.open(_proc_fd(node.fd),
                           acc | (flags & _O_PASS) | os.O_CLOEXEC | os.O_NOCTTY)

    def _create_file(self, s: _Scope, lk: _Lookup, flags: int, mode: int) -> int:
        dfd, _ = self._prepare_create(s, lk)
        fd = os.open(lk.name, (flags & (os.O_ACCMODE | _O_PASS)) | os.O_CREAT | os.O_EXCL |
                     os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY, 0o600, dir_fd=dfd)
        try:
            os.fchmod(fd, mode & 0o7777)     # exactly: the host's umask is not the guest's
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _prepare_create(self, s: _Scope, lk: _Lookup) -> tuple[int, bool]:
        """The host directory fd to create lk.name in; whether a whiteout of it was removed."""
        parent = lk.parent
        if not parent.branch.writable:
            raise FsError(errno.EROFS)
        if parent.branch.layered and _reserved(lk.name, parent.path):
            raise FsError(errno.EINVAL)
        dfd = self._upper_dir(s, parent)
        removed = parent.branch.layered and _unlink_quiet(WHITEOUT_PREFIX + lk.name, dfd)
        return dfd, removed

    def _creation(self, s: _Scope, path: str) -> _Lookup:
        """The parent walk every create-a-name call shares (mkdir, symlink, link's new)."""
        lk = self._walk(s, path, parent_only=True)
        if lk.kind != LAST_NORM:
            raise FsError(errno.EEXIST)
        if self._child(s, lk.parent, lk.name) is not None:
            raise FsError(errno.EEXIST)
        return lk

    @_host_errors
    def mkdir(self, path: str, mode: int = 0o755) -> None:
        with _Scope() as s:
            lk = self._creation(s, path)
            dfd, was_whited_out = self._prepare_create(s, lk)
            os.mkdir(lk.name, 0o700, dir_fd=dfd)
            fd = s.track(os.open(lk.name, _O_LOOKUP, dir_fd=dfd))
            if was_whited_out:        # removed and created again: hide the old contents
                _touch_at(OPAQUE_MARKER, fd)
            _chmod_fd(fd, mode & 0o1777)

    @_host_errors
    def symlink(self, target: str, path: str) -> None:
        if "\0" in target:
            raise FsError(errno.EINVAL)
        if not target:
            raise FsError(errno.ENOENT)
        if len(os.fsencode(target)) >= PATH_MAX:
            raise FsError(errno.ENAMETOOLONG)
        with _Scope() as s:
            lk = self._creation(s, path)
            if lk.trailing:
                raise FsError(errno.ENOENT)
            dfd, _ = self._prepare_create(s, lk)
            os.symlink(target, lk.name, dir_fd=dfd)

    @_host_errors
    def link(self, old: str, new: str) -> None:
        """A hard link (linkat without AT_SYMLINK_FOLLOW); a lower file is copied up first."""
        with _Scope() as s:
            olk = self._walk(s, old, follow=False)
            src = olk.node
            if src is None:
                raise FsError(errno.ENOENT)
            lk = self._creation(s, new)
            if lk.trailing:
                raise FsError(errno.ENOENT)
            if not lk.parent.branch.writable:
                raise FsError(errno.EROFS)
            if src.branch is not lk.parent.branch:
                raise FsError(errno.EXDEV)
            if src.is_dir():
                raise FsError(errno.EPERM)
            src = self._copy_up(s, src)
            dfd, _ = self._prepare_create(s, lk)
            os.link(src.name, lk.name, src_dir_fd=src.parent_fd, dst_dir_fd=dfd,
                    follow_symlinks=False)

    @_host_errors
    def readlink(self, path: str) -> str:
        with _Scope() as s:
            node = self._walk(s, path, follow=False).node
            if node is None:
                raise FsError(errno.ENOENT)
            if not node.is_link():
                raise FsError(errno.EINVAL)
            return os.readlink(node.name, dir_fd=node.parent_fd)

    def _hide(self, s: _Scope, parent: _Node, name: str, dfd: int) -> None:
        """After removing name from the upper layer: whiteout what the lower layers still show."""
        if parent.branch.layered and self._lower_child(s, parent, name) is not None:
            _touch_at(WHITEOUT_PREFIX + name, dfd)

    @_host_errors
    def unlink(self, path: str) -> None:
        with _Scope() as s:
            lk = self._walk(s, path, parent_only=True)
            if lk.kind != LAST_NORM:
                raise FsError(errno.EISDIR)
            if not lk.parent.branch.writable:
                raise FsError(errno.EROFS)
            node = self._child(s, lk.parent, lk.name)
            if node is None:
                raise FsError(errno.ENOENT)
            if node.is_dir():
                raise FsError(errno.EISDIR)
            if lk.trailing:
                raise FsError(errno.ENOTDIR)
            dfd = self._upper_dir(s, lk.parent)
            if node.in_upper:
                os.unlink(node.name, dir_fd=node.parent_fd)
            self._hide(s, lk.parent, lk.name, dfd)

    @_host_errors
    def rmdir(self, path: str) -> None:
        with _Scope() as s:
            lk = self._walk(s, path, parent_only=True)
            if lk.kind == LAST_DOT:
                raise FsError(errno.EINVAL)
            if lk.kind == LAST_DOTDOT:
                raise FsError(errno.ENOTEMPTY)
            if lk.kind == LAST_ROOT:
                raise FsError(errno.EBUSY)
            if not lk.parent.branch.writable:
                raise FsError(errno.EROFS)
            node = self._child(s, lk.parent, lk.name)
            if node is None:
                raise FsError(errno.ENOENT)
            if not node.is_dir():
                raise FsError(errno.ENOTDIR)
            if node.branch is not lk.parent.branch:
                raise FsError(errno.EBUSY)          # a volume's mount point
            if self._listing(node):
                raise FsError(errno.ENOTEMPTY)
            if not node.branch.layered:
                os.rmdir(node.name, dir_fd=node.parent_fd)
                return
            dfd = self._upper_dir(s, lk.parent)
            if node.in_upper:
                _remove_upper_entry(node.name, node.parent_fd)
            self._hide(s, lk.parent, lk.name, dfd)

    @_host_errors
    def rename(self, old: str, new: str) -> None:
        """rename(2). Checks in Linux's order: EXDEV, EBUSY, EROFS, ENOENT, EINVAL/ENOTEMPTY
        for a directory moved into itself, then the kinds of the two names."""
        with _Scope() as s:
            olk = self._walk(s, old, parent_only=True)
            nlk = self._walk(s, new, parent_only=True)
            oparent = olk.parent or olk.node
            nparent = nlk.parent or nlk.node
            if oparent.branch is not nparent.branch:
                raise FsError(errno.EXDEV)
            if olk.kind != LAST_NORM or nlk.kind != LAST_NORM:
                raise FsError(errno.EBUSY)
            if not oparent.branch.writable:
                raise FsError(errno.EROFS)
            src = self._child(s, oparent, olk.name)
            if src is None:
                raise FsError(errno.ENOENT)
            if not src.is_dir() and (olk.trailing or nlk.trailing):
                raise FsError(errno.ENOTDIR)
            dst = self._child(s, nparent, nlk.name)
            if src.path == nparent.path[:len(src.path)]:
                raise FsError(errno.EINVAL)        # into itself
            if dst is not None and dst.path == oparent.path[:len(dst.path)]:
                raise FsError(errno.ENOTEMPTY)     # over one of its own ancestors
            if dst is not None and src.branch is dst.branch and \
                    (src.st.st_dev, src.st.st_ino) == (dst.st.st_dev, dst.st.st_ino):
                return                             # the same file: nothing to do
            if dst is not None:
                if src.is_dir() and not dst.is_dir():
                    raise FsError(errno.ENOTDIR)
                if not src.is_dir() and dst.is_dir():
                    raise FsError(errno.EISDIR)
            if src.branch is not oparent.branch or \
                    (dst is not None and dst.branch is not nparent.branch):
                raise FsError(errno.EBUSY)         # a volume's mount point
            if dst is not None and dst.is_dir() and self._listing(dst):
                raise FsError(errno.ENOTEMPTY)
            if oparent.branch.layered and _reserved(nlk.name, nparent.path):
                raise FsError(errno.EINVAL)
            if src.is_dir() and any(m[:len(src.path)] == src.path for m in self._mounts):
                raise FsError(errno.EBUSY)         # a volume is mounted below it
            if not oparent.branch.layered:
                os.rename(olk.name, nlk.name, src_dir_fd=oparent.fd, dst_dir_fd=nparent.fd)
                return
            self._rename_layered(s, olk, src, nlk, dst)

    def _rename_layered(self, s: _Scope, olk: _Lookup, src: _Node, nlk: _Lookup,
                        dst: _Node | None) -> None:
        # Decide the whiteouts from the lower layers before the upper layer changes.
        new_hides_lower = self._lower_child(s, nlk.parent, nlk.name) is not None
        if src.is_dir():
            src = self._materialize(s, src.path)
        else:
            src = self._copy_up(s, src)
        odfd = src.parent_fd
        ndfd = self._upper_dir(s, nlk.parent)
        if dst is not None and dst.in_upper and dst.is_dir():
            _remove_upper_entry(dst.name, dst.parent_fd)   # empty: whiteouts only
        _unlink_quiet(WHITEOUT_PREFIX + nlk.name, ndfd)
        os.rename(src.name, nlk.name, src_dir_fd=odfd, dst_dir_fd=ndfd)
        if src.is_dir() and new_hides_lower:
            _touch_at(OPAQUE_MARKER, src.fd)
        self._hide(s, olk.parent, olk.name, odfd)

    @_host_errors
    def chmod(self, path: str, mode: int) -> None:
        with _Scope() as s:
            node = self._writable_node(s, path)
            _chmod_fd(node.fd, mode & 0o7777)

    def _writable_node(self, s: _Scope, path: str, truncate: bool = False) -> _Node:
        """Follow `path` to an existing node in a writable layer (copied up if needed)."""
        node = self._walk(s, path).node
        if node is None:
            raise FsError(errno.ENOENT)
        if not node.branch.writable:
            raise FsError(errno.EROFS)
        if node.in_upper:
            return node
        if node.is_dir():
            return self._copy_up_dirs(s, node.path)
        return self._copy_up(s, node, truncate)

    @_host_errors
    def truncate(self, path: str, length: int) -> None:
        if length < 0:
            raise FsError(errno.EINVAL)
        with _Scope() as s:
            node = self._walk(s, path).node
            if node is None:
                raise FsError(errno.ENOENT)
            if node.is_dir():
                raise FsError(errno.EISDIR)
            if not stat.S_ISREG(node.st.st_mode):
                raise FsError(errno.EINVAL)
            node = self._writable_node(s, path, truncate=length == 0)
            fd = os.open(_proc_fd(node.fd), os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
            try:
                os.ftruncate(fd, length)
            finally:
                os.close(fd)

    @_host_errors
    def utime(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        """Set the times (follows symlinks); None leaves that time as it is."""
        with _Scope() as s:
            node = self._writable_node(s, path)
            st = node.st
            times = (st.st_atime_ns if atime_ns is None else atime_ns,
                     st.st_mtime_ns if mtime_ns is None else mtime_ns)
            name, dfd = node.at()
            os.utime(name, ns=times, dir_fd=dfd, follow_symlinks=False)

    @_host_errors
    def access(self, path: str, mode: int) -> None:
        if mode & ~(os.R_OK | os.W_OK | os.X_OK):
            raise FsError(errno.EINVAL)
        with _Scope() as s:
            node = self._walk(s, path).node
            if node is None:
                raise FsError(errno.ENOENT)
            if mode & os.W_OK and not node.branch.writable:
                raise FsError(errno.EROFS)
            if mode and not os.access(_proc_fd(node.fd), mode):
                raise FsError(errno.EACCES)

    @_host_errors
    def listdir(self, path: str) -> list[DirEntry]:
        """The merged entries, sorted by name, without '.' and '..'."""
        with _Scope() as s:
            node = self._walk(s, path).node
            if node is None:
                raise FsError(errno.ENOENT)
            if not node.is_dir():
                raise FsError(errno.ENOTDIR)
            out = []
            for name, e in sorted(self._listing(node).items()):
                child = node.path + (name,)
                out.append(DirEntry(name, _ino(child),
                                    DT_DIR if child in self._mounts else _d_type(e)))
            return out

    @_host_errors
    def diff(self) -> list[tuple[str, str]]:
        """What the container changed against its image: [("A"|"C"|"D", guest path)],
        sorted by path. A directory holding a change is itself "C"; a deleted directory
        is one "D"; a name whose type changed is "C", with the entries of a new directory
        "A" and those of a replaced one "D". Volumes are not part of the layered root."""
        if self.upper is None:
            return []
        out: list[tuple[str, str]] = []
        todo = [()]
        while todo:
            path = todo.pop()
            with _Scope() as s:
                merged = self._canonical(s, path, mounts=False)
                if merged is None or not merged.in_upper:
                    continue            # nothing below a directory the upper lacks changed
                lower = self._canonical(s, path, self._lower_root, mounts=False) \
                    if self._lower_root else None
                now = self._listing(merged)
                before = self._listing(lower) if lower is not None and lower.is_dir() else {}
                for name in sorted(set(now) | set(before)):
                    child = path + (name,)
                    if name not in now:
                        out.append(("D", _guest(child)))
                        continue
                    if name not in before:
                        out.append(("A", _guest(child)))
                        self._added_below(child, out)
                        continue
                    now_node = self._child(s, merged, name, mounts=False)
                    if not now_node.in_upper:
                        continue
                    out.append(("C", _guest(child)))
                    old_node = self._child(s, lower, name, mounts=False)
                    if now_node.is_dir() and old_node.is_dir():
                        todo.append(child)
                    elif now_node.is_dir():          # a directory where a file was
                        self._added_below(child, out)
                    elif old_node.is_dir():          # a file where a directory was
                        out.extend(("D", _guest(child + (n,))) for n in self._listing(old_node))
        return sorted(out, key=lambda change: change[1])

    def _added_below(self, path: tuple[str, ...], out: list) -> None:
        todo = [path]
        while todo:
            p = todo.pop()
            with _Scope() as s:
                node = self._canonical(s, p, mounts=False)
                if node is None or not node.is_dir():
                    continue
                for name, e in self._listing(node).items():
                    out.append(("A", _guest(p + (name,))))
                    if e.is_dir(follow_symlinks=False):
                        todo.append(p + (name,))


def _guest(path: tuple[str, ...]) -> str:
    return "/" + "/".join(path)


def _d_type(e: os.DirEntry) -> int:
    if e.is_symlink():
        return DT_LNK
    if e.is_dir(follow_symlinks=False):
        return DT_DIR
    if e.is_file(follow_symlinks=False):
        return DT_REG
    try:
        return _DT_OF_FMT.get(stat.S_IFMT(e.stat(follow_symlinks=False).st_mode), DT_UNKNOWN)
    except OSError:
        return DT_UNKNOWN
