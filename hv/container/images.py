"""The image store: OCI images kept as stacks of extracted layers under ``$HV_HOME``.

    hv image import FILE|DIR [-t NAME]   an OCI image layout or a `docker save` archive
    hv image build DIR -t NAME           a one-layer image from a folder
    hv image ls                          the images
    hv image rm NAME                     remove an image (and the layers no other image uses)
    hv image to-disk NAME disk.img [--size 32M]   a bootable FAT16 disk for the VM flavors

On disk (``$HV_HOME``, default ``~/.local/share/hv``)::

    images/                       mode 0700: layers hold other people's files
      lock                        flock: one process publishes or removes at a time
      blobs/sha256/HEX            layer tars as imported or committed, image configs
      layers/HEX/                 one per layer, named by its diff_id (sha256 of the tar)
        tree/                     the layer extracted, OCI whiteouts kept as files
        registry.db               the layer's registry, if its tar carried .hv/registry.db
        layer.json                {"diff_id", "blob", "media_type", "size"}
      refs/NAME.json              one per image name (URL-quoted): config and layers
      tmp/                        work in progress; swept when its owner is gone

Everything is written under ``tmp/`` first, made durable (syncfs), then renamed into place
under the lock, so a killed import or commit leaves nothing half-written in view: a layer
directory appears whole or not at all, and a name points at layers that all exist.
See ``docs/images.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import secrets
import stat
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import quote

from hv.container.layers import REGISTRY_DIR, TEMP_PREFIX
from hv.cliargs import OneLineParser, parse

REGISTRY_MEMBER = f"{REGISTRY_DIR}/registry.db"     # where a layer tar carries its registry

MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")

JSON_MAX = 4 << 20            # an index, manifest or config larger than this is refused
TAR_HEADER_MAX = 1 << 20      # a pax or GNU long-name header larger than this is refused
MEMBER_PATH_MAX = 1 << 16     # a member path longer than this is refused
LAYERS_MAX = 127              # as many layers as overlayfs takes in practice
INDEX_DEPTH_MAX = 4
CHUNK = 1 << 20

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?")


class ImageError(Exception):
    """Bad input or a damaged store: a one-line message for the user."""


def default_home() -> Path:
    return Path(os.environ.get("HV_HOME") or Path.home() / ".local" / "share" / "hv")


def normalize_name(name: str) -> str:
    """``alpine`` -> ``alpine:latest``, as Docker names images; ImageError if invalid."""
    if not isinstance(name, str) or len(name) > 255 or not _NAME.fullmatch(name):
        raise ImageError(f"{name!r} is not an image name (lower-case [a-z0-9._-] parts "
                         f"separated by '/', then an optional :tag)")
    return name if ":" in name else name + ":latest"


def _hex(digest: str) -> str:
    m = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        raise ImageError(f"{str(digest)[:80]!r} is not a sha256 digest")
    return m.group(1)


@dataclass(frozen=True)
class Image:
    name: str
    id: str                                   # the config digest (OCI's image ID)
    diff_ids: tuple[str, ...]                 # bottom first, as OCI lists them
    layers: tuple[tuple[Path, Path | None], ...]   # (tree, registry db), TOP FIRST
    config: dict                              # the config's "config": Env, Cmd, WorkingDir...
    created: str
    size: int                                 # bytes of the layer blobs

    @property
    def lowers(self) -> list[Path]:
        """The layer trees, top first: what LayeredRoot takes."""
        return [tree for tree, _ in self.layers]


# -- small durable-file helpers ---------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush the file system holding `path` (everything extracted there) in one call."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    except (OSError, AttributeError):
        os.sync()
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    """Replace `path` atomically: temporary name, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _rmtree(path: Path) -> None:
    """Remove a tree without following symlinks, with O(1) descriptors however deep it is
    (so a hostile layer cannot exhaust them); directories are made writable first."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            os.unlink(path)
            return
        raise
    names: list[str] = []
    try:
        while True:
            os.chmod(f"/proc/self/fd/{fd}", 0o700)
            descend = None
            for name in os.listdir(fd):
                try:
                    os.unlink(name, dir_fd=fd)
                except IsADirectoryError:
                    descend = name
                    break
            if descend is not None:
                child = os.open(descend, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                                os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(descend)
                continue
            if not names:
                break
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)


# -- reading archives ---------------------------------------------------------------------------

class _Source:
    """An OCI layout or docker-save archive: a directory, or a tar of one."""

    def __init__(self, path: Path):
        self.path = path
        self.tar: tarfile.TarFile | None = None
        if path.is_dir():
            return
        try:
            self.tar = tarfile.open(path, "r:*", tarinfo=_BoundedTarInfo)
            self.members = {_norm(m.name): m for m in self.tar.getmembers()}
        except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as e:
            raise ImageError(f"{path}: not a readable archive ({_why(e)})") from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, member: str) -> bool:
        if self.tar is not None:
            return member in self.members
        return (self.path / member).is_file()

    def open(self, member: str) -> BinaryIO:
        if any(p in ("", ".", "..") for p in member.split("/")) or member.startswith("/"):
            raise ImageError(f"{self.path}: bad member name {member[:80]!r}")
        if self.tar is not None:
            info = self.members.get(member)
            f = self.tar.extractfile(info) if info is not None else None
            if f is None:
                raise ImageError(f"{self.path}: {member} is missing")
            return f
        try:
            fd = os.open(self.path / member, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"{self.path}: {member}: {e.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageError(f"{self.path}: {member} is not a file")
        return os.fdopen(fd, "rb")

    def read_json(self, member: str, digest: str | None = None, size: int | None = None):
        with self.open(member) as f:
            data = f.read(JSON_MAX + 1)
        if len(data) > JSON_MAX:
            raise ImageError(f"{member}: larger than {JSON_MAX >> 20} MiB")
        if size is not None and len(data) != size:
            raise ImageError(f"{member}: size {len(data)}, expected {size}")
        if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"{member}: digest mismatch (expected {digest})")
        try:
            return json.loads(data), data
        except (ValueError, UnicodeDecodeError):
            raise ImageError(f"{member}: not JSON") from None


def _norm(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _blob_member(desc) -> str:
    return f"blobs/sha256/{_hex(_field(desc, 'digest', str))}"


def _field(obj, key: str, kind):
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ImageError(f"malformed image metadata: {key!r} missing or not {kind.__name__}")
    return value


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads pax and GNU long-name headers into memory whole: bound them."""

    def _proc_member(self, tarfile_):
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) \
                and self.size > TAR_HEADER_MAX:
            raise tarfile.HeaderError("extended header too large")
        return super()._proc_member(tarfile_)


class _Hashing:
    """A reader or writer that hashes (and counts) what passes through it."""

    def __init__(self, f, limit: int | None = None):
        self.f, self.limit = f, limit
        self.h = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n if n is not None and n >= 0 else CHUNK)
        self.h.update(data)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise ImageError(f"blob is larger than the size its descriptor gives ({self.limit})")
        return data

    def write(self, data) -> int:
        self.h.update(data)
        self.size += len(data)
        return self.f.write(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


# -- layers: extract and write ----------------------------------------------------------------

def _member_parts(name: str) -> list[str]:
    if len(os.fsencode(name)) > MEMBER_PATH_MAX or "\0" in name:
        raise ImageError(f"layer member {name[:80]!r}: bad name")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    for p in parts:
        if p == ".." or len(os.fsencode(p)) > 255:
            raise ImageError(f"layer member {name[:80]!r}: leaves the layer or is too long")
    return parts


class _TreeWriter:
    """Applies one layer's members under a directory, by descriptors only: a member's
    name or link can never lead the host outside the tree."""

    def __init__(self, root: Path, registry: Path):
        root.mkdir(mode=0o755)
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.registry = registry
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []
        self.as_root = os.geteuid() == 0

    def close(self) -> None:
        os.close(self.root_fd)

    def _dir(self, parts: list[str], create: bool = True) -> int:
        """An O_PATH fd of directory `parts` (missing ones created 0755, as tar does)."""
        fd = os.dup(self.root_fd)
        try:
            for name in parts:
                try:
                    child = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW |
                                    os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise ImageError(f"layer member below missing {'/'.join(parts)}")
                    os.mkdir(name, 0o755, dir_fd=fd)
                    child = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW |
                                    os.O_CLOEXEC, dir_fd=fd)
                    os.chmod(f"/proc/self/fd/{child}", 0o755)
                except OSError as e:
                    if e.errno in (errno.ENOTDIR, errno.ELOOP):
                        raise ImageError(f"layer member below {'/'.join(parts)}, which is not "
                                         f"a directory in this layer") from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _clear(self, name: str, dfd: int, keep_dir: bool) -> bool:
        """Make room for a member (the later entry wins, as the OCI spec says);
        True if a directory is kept."""
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            _rmtree(Path(f"/proc/self/fd/{dfd}") / name)
        else:
            os.unlink(name, dir_fd=dfd)
        return False

    def add(self, m: tarfile.TarInfo, data: BinaryIO | None) -> None:
        parts = _member_parts(m.name)
        if parts[:1] == [REGISTRY_DIR]:          # the registry travels beside the tree
            if parts == REGISTRY_MEMBER.split("/") and m.isreg():
                with open(self.registry, "wb") as out:
                    _copy_stream(data, out, m.size)
            return
        if not parts:
            if m.isdir():
                self.dirs.append((parts, m))
            return
        dfd = self._dir(parts[:-1])
        try:
            self._add_at(dfd, parts, m, data)
        finally:
            os.close(dfd)

    def _add_at(self, dfd: int, parts: list[str], m: tarfile.TarInfo, data) -> None:
        name = parts[-1]
        if m.isdir():
            if not self._clear(name, dfd, keep_dir=True):
                os.mkdir(name, 0o700, dir_fd=dfd)
            self.dirs.append((parts, m))
            return
        self._clear(name, dfd, keep_dir=False)
        if m.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600, dir_fd=dfd)
            with os.fdopen(fd, "wb") as out:
                _copy_stream(data, out, m.size)
                self._attrs(out.fileno(), name, dfd, m)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=dfd)
            self._attrs(None, name, dfd, m)
        elif m.islnk():
            target = _member_parts(m.linkname)
            if not target or target[:1] == [REGISTRY_DIR]:
                raise ImageError(f"layer member {m.name[:80]!r}: bad hard link target")
            tfd = self._dir(target[:-1], create=False)
            try:
                os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=dfd,
                        follow_symlinks=False)
            except OSError as e:
                raise ImageError(f"layer member {m.name[:80]!r}: hard link to "
                                 f"{m.linkname[:80]!r}: {e.strerror}") from None
            finally:
                os.close(tfd)
        elif m.isfifo():
            os.mkfifo(name, 0o600, dir_fd=dfd)
            self._attrs(None, name, dfd, m)
        # Device nodes are not created: a container gets its devices from hv, never
        # from an image (and an unprivileged hv could not make them anyway).

    def _attrs(self, fd: int | None, name: str, dfd: int, m: tarfile.TarInfo) -> None:
        if self.as_root:
            os.chown(name, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
        if fd is not None:
            os.fchmod(fd, m.mode & 0o7777)
        elif not m.issym():
            pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                os.chmod(f"/proc/self/fd/{pfd}", m.mode & 0o7777)
            finally:
                os.close(pfd)
        mtime = int(m.mtime * 1e9)
        os.utime(name, ns=(mtime, mtime), dir_fd=dfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory attributes last (deepest first), as tar does: a read-only
        directory must not stop its own entries from being written."""
        for parts, m in sorted(self.dirs, key=lambda d: -len(d[0])):
            if not parts:
                os.chmod(f"/proc/self/fd/{self.root_fd}", m.mode & 0o7777)
                mtime = int(m.mtime * 1e9)
                os.utime(f"/proc/self/fd/{self.root_fd}", ns=(mtime, mtime))
                continue
            try:
                dfd = self._dir(parts[:-1], create=False)
            except ImageError:
                continue                       # replaced by a later member
            try:
                st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    self._attrs(None, parts[-1], dfd, m)
            except FileNotFoundError:
                pass
            finally:
                os.close(dfd)


def _copy_stream(src: BinaryIO | None, out: BinaryIO, size: int) -> None:
    left = size
    while left > 0:
        chunk = src.read(min(CHUNK, left)) if src is not None else b""
        if not chunk:
            raise ImageError("layer member data is truncated")
        out.write(chunk)
        left -= len(chunk)


def _decompressed(f: BinaryIO):
    """The tar inside a layer blob: gzip or plain, told by its first bytes."""
    head = f.read(4)
    f.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")
    if head == b"\x28\xb5\x2f\xfd":
        raise ImageError("zstd-compressed layers are not supported (recompress with gzip)")
    return f


def extract_layer(blob: Path, layer_dir: Path, diff_id: str | None = None) -> str:
    """Apply a layer blob into layer_dir/tree (and layer_dir/registry.db); returns the
    diff_id it computed, checked against `diff_id` when given."""
    layer_dir.mkdir(mode=0o700, exist_ok=True)
    writer = _TreeWriter(layer_dir / "tree", layer_dir / "registry.db")
    try:
        with open(blob, "rb") as raw:
            stream = _Hashing(_decompressed(raw))
            try:
                with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tf:
                    for m in tf:
                        writer.add(m, tf.extractfile(m) if m.isreg() else None)
                stream.drain()
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, ValueError,
                    UnicodeError) as e:
                raise ImageError(f"layer {blob.name[:20]}: not a valid tar ({_why(e)})") \
                    from None
        writer.finish()
    finally:
        writer.close()
    if diff_id is not None and stream.digest != diff_id:
        raise ImageError(f"layer diff_id mismatch: the config says {diff_id}, "
                         f"the layer is {stream.digest}")
    return stream.digest


def write_layer_tar(root: Path, out: BinaryIO, registry_db: Path | None = None) -> None:
    """A directory tree as an OCI layer tar: whiteouts are already files, hard links
    become links, symlinks stay symlinks and are never followed. Root-level ``.hv`` and
    copy-up leftovers are left out; `registry_db` travels as ``.hv/registry.db``."""
    as_root = os.geteuid() == 0
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            todo: list[tuple[str, ...]] = [()]
            while todo:
                parts = todo.pop()
                dfd = _open_dir(root_fd, parts)
                try:
                    children = []
                    for name in sorted(os.listdir(dfd), reverse=True):
                        if name.startswith(TEMP_PREFIX) or (not parts and name == REGISTRY_DIR):
                            continue
                        if _add_entry(tf, dfd, parts + (name,), seen, as_root):
                            children.append(parts + (name,))
                    todo.extend(children)
                finally:
                    os.close(dfd)
        finally:
            os.close(root_fd)
        if registry_db is not None:
            d = tarfile.TarInfo(REGISTRY_DIR)
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tf.addfile(d)
            with open(registry_db, "rb") as f:
                info = tf.gettarinfo(arcname=REGISTRY_MEMBER, fileobj=f)
                info.uname = info.gname = ""
                info.uid = info.gid = 0
                tf.addfile(info, f)


def _open_dir(root_fd: int, parts: tuple[str, ...]) -> int:
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd)
    for name in parts:
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


def _add_entry(tf: tarfile.TarFile, dfd: int, parts: tuple[str, ...],
               seen: dict, as_root: bool) -> bool:
    """Add one entry; True if it is a directory to descend into."""
    name = parts[-1]
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    info = tarfile.TarInfo("/".join(parts))
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = (st.st_uid, st.st_gid) if as_root else (0, 0)
    info.uname = info.gname = ""
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
        return True
    if stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
        tf.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in seen:
            info.type, info.linkname = tarfile.LNKTYPE, seen[key]
            tf.addfile(info)
            return False
        seen[key] = info.name
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        with os.fdopen(fd, "rb") as f:
            info.size = os.fstat(fd).st_size
            tf.addfile(info, f)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        tf.addfile(info)
    return False                          # sockets and devices are not part of a layer


# -- the store ----------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made when missing): one writer of a store
    at a time, across hv processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class ImageStore:
    def __init__(self, home: Path | str | None = None):
        self.home = Path(home) if home is not None else default_home()
        self.root = self.home / "images"
        self.blobs = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers"
        self.refs = self.root / "refs"
        self.tmp = self.root / "tmp"
        for d in (self.root, self.blobs, self.layers_dir, self.refs, self.tmp):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)

    # -- locking and work areas -------------------------------------------------------------

    def _locked(self):
        return locked(self.root / "lock")

    @contextlib.contextmanager
    def _work(self) -> Iterator[Path]:
        """A private directory under tmp/, held by a lock file while this process lives;
        the sweep removes any whose holder is gone (a killed import or commit)."""
        with self._locked():
            self._sweep()
            token = secrets.token_hex(8)
            lock = os.open(self.tmp / f"{token}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
            fcntl.flock(lock, fcntl.LOCK_EX)
            work = self.tmp / token
            work.mkdir(mode=0o700)
        try:
            yield work
        finally:
            _rmtree(work)
            os.unlink(self.tmp / f"{token}.lock")
            os.close(lock)

    def _sweep(self) -> None:
        """Remove work areas nobody holds, and records a killed writer left half-written
        under their temporary names (called under the store lock)."""
        for leftover in self.refs.glob(".*.tmp"):
            leftover.unlink()
        names = set(os.listdir(self.tmp))
        for name in names:
            if name.endswith(".lock"):
                fd = os.open(self.tmp / name, os.O_RDWR | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue                  # its process is still at work
                finally:
                    os.close(fd)
                _rmtree(self.tmp / name[:-5])
                os.unlink(self.tmp / name)
            elif name + ".lock" not in names:
                _rmtree(self.tmp / name)

    # -- records ------------------------------------------------------------------------------

    def _ref_path(self, name: str) -> Path:
        return self.refs / (quote(name, safe="") + ".json")

    def _read_ref(self, path: Path) -> dict:
        try:
            rec = json.loads(path.read_bytes())
            _hex(rec["config"])
            if not isinstance(rec["name"], str) or not isinstance(rec["layers"], list):
                raise TypeError
            for layer in rec["layers"]:
                _hex(layer["diff_id"])
                int(layer.get("size", 0))
            return rec
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ImageError):
            raise ImageError(f"{path.name}: damaged image record") from None

    def _image(self, rec: dict) -> Image:
        layers = []
        for layer in reversed(rec["layers"]):
            d = self.layers_dir / _hex(layer["diff_id"])
            db = d / "registry.db"
            layers.append((d / "tree", db if db.is_file() else None))
        try:
            config = json.loads((self.blobs / _hex(rec["config"])).read_bytes())
        except (OSError, ValueError):
            config = {}
        inner = config.get("config") if isinstance(config, dict) else None
        return Image(name=rec["name"], id=rec["config"],
                     diff_ids=tuple(layer["diff_id"] for layer in rec["layers"]),
                     layers=tuple(layers), config=inner if isinstance(inner, dict) else {},
                     created=rec.get("created", ""),
                     size=sum(int(layer.get("size", 0)) for layer in rec["layers"]))

    def list(self) -> list[Image]:
        out = []
        for path in sorted(self.refs.glob("*.json")):
            try:
                out.append(self._image(self._read_ref(path)))
            except ImageError:
                continue
        return sorted(out, key=lambda i: i.name)

    def get(self, name: str) -> Image:
        name = normalize_name(name)
        path = self._ref_path(name)
        if not path.exists():
            raise ImageError(f"no image named {name}")
        image = self._image(self._read_ref(path))
        for tree, _ in image.layers:
            if not tree.is_dir():
                raise ImageError(f"image {name} is damaged: layer {tree.parent.name[:12]} "
                                 f"is missing")
        return image

    def remove(self, name: str) -> None:
        name = normalize_name(name)
        with self._locked():
            path = self._ref_path(name)
            if not path.exists():
                raise ImageError(f"no image named {name}")
            path.unlink()
            _fsync_dir(self.refs)
            self._collect()

    def _collect(self) -> None:
        """Remove layers and blobs no image names (under the lock): what a removed image
        or a killed import left behind."""
        layers, blobs = set(), set()
        for path in self.refs.glob("*.json"):
            try:
                rec = self._read_ref(path)
            except ImageError:
                return                        # unsure what is used: keep everything
            blobs.add(_hex(rec["config"]))
            for layer in rec["layers"]:
                layers.add(_hex(layer["diff_id"]))
                if layer.get("blob"):
                    blobs.add(_hex(layer["blob"]))
        for d in self.layers_dir.iterdir():
            if d.name not in layers:
                trash = self.tmp / f"trash-{secrets.token_hex(6)}"
                os.rename(d, trash)           # gone from view at once; removed below
                _rmtree(trash)
        for b in self.blobs.iterdir():
            if b.name not in blobs:
                b.unlink()

    # -- import ------------------------------------------------------------------------------

    def import_archive(self, path: Path | str, name: str | None = None) -> Image:
        """Import an OCI image layout or a `docker save` archive (a directory or a tar,
        plain or gzip); every blob's digest and every layer's diff_id is checked."""
        path = Path(path)
        if name is not None:
            name = normalize_name(name)
        if not path.exists():
            raise ImageError(f"{path}: no such file or directory")
        src = _Source(path)
        try:
            if src.exists("oci-layout") and src.exists("index.json"):
                config_raw, descs, own_name = self._read_oci(src)
            elif src.exists("manifest.json"):
                config_raw, descs, own_name = self._read_docker(src)
            else:
                raise ImageError(f"{path}: neither an OCI image layout (oci-layout, index.json) "
                                 f"nor a docker save archive (manifest.json)")
            name = name or (normalize_name(own_name) if own_name else None)
            if name is None:
                raise ImageError(f"{path}: the archive names no image; give -t NAME")
            config = json.loads(config_raw)
            diff_ids = _field(_field(config, "rootfs", dict), "diff_ids", list)
            if len(diff_ids) != len(descs):
                raise ImageError(f"{path}: the config lists {len(diff_ids)} layers, "
                                 f"the manifest {len(descs)}")
            if len(descs) > LAYERS_MAX:
                raise ImageError(f"{path}: more than {LAYERS_MAX} layers")
            with self._work() as work:
                layers, staged = [], {}
                for i, ((member, digest, size, media), diff_id) in enumerate(zip(descs, diff_ids)):
                    _hex(diff_id)
                    blob, layer_dir = work / f"blob{i}", work / f"layer{i}"
                    digest = self._copy_blob(src, member, blob, digest, size)
                    layers.append({"diff_id": diff_id, "blob": digest, "media_type": media,
                                   "size": blob.stat().st_size})
                    if diff_id not in staged and not (self.layers_dir / _hex(diff_id)).is_dir():
                        self._stage_layer(blob, layer_dir, layers[-1])
                    staged.setdefault(diff_id, (blob, layer_dir))
                return self._publish(work, name, config_raw, layers, staged)
        except (OSError, tarfile.TarError, EOFError, zlib.error) as e:
            raise ImageError(f"{path}: {_why(e)}") from None
        finally:
            src.close()

    def _read_oci(self, src: _Source):
        layout, _ = src.read_json("oci-layout")
        if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
            raise ImageError("oci-layout: not an OCI image layout")
        index, _ = src.read_json("index.json")
        own_name = None
        for depth in range(INDEX_DEPTH_MAX):
            desc = _pick_manifest(_field(index, "manifests", list))
            ann = desc.get("annotations") if isinstance(desc.get("annotations"), dict) else {}
            # A full reference names the image; a bare ref.name is usually only a tag.
            for ref in (ann.get("io.containerd.image.name"),
                        ann.get("org.opencontainers.image.ref.name")):
                if own_name is None and isinstance(ref, str) and ":" in ref and _NAME.fullmatch(ref):
                    own_name = ref
            doc, _ = src.read_json(_blob_member(desc), desc["digest"], _field(desc, "size", int))
            if desc.get("mediaType") in _INDEX_TYPES or doc.get("mediaType") in _INDEX_TYPES:
                index = doc
                continue
            manifest = doc
            break
        else:
            raise ImageError("index.json: image indexes nested too deep")
        cdesc = _field(manifest, "config", dict)
        _, config_raw = src.read_json(_blob_member(cdesc), cdesc["digest"],
                                      _field(cdesc, "size", int))
        descs = []
        for d in _field(manifest, "layers", list):
            media = d.get("mediaType", MT_LAYER_TAR) if isinstance(d, dict) else ""
            if not isinstance(media, str) or "tar" not in media:
                raise ImageError(f"manifest: {str(media)[:80]!r} is not a layer media type")
            descs.append((_blob_member(d), d["digest"], _field(d, "size", int), media))
        return config_raw, descs, own_name

    def _read_docker(self, src: _Source):
        manifest, _ = src.read_json("manifest.json")
        if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
            count = len(manifest) if isinstance(manifest, list) else "no"
            raise ImageError(f"manifest.json: {count} images; import takes an archive of one")
        entry = manifest[0]
        config_member = _norm(_field(entry, "Config", str))
        expected = None
        m = re.fullmatch(r"(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?", config_member)
        if m:
            expected = "sha256:" + m.group(1)
        _, config_raw = src.read_json(config_member, expected)
        descs = []
        for member in _field(entry, "Layers", list):
            if not isinstance(member, str):
                raise ImageError("manifest.json: a layer is not a path")
            member = _norm(member)
            m = re.fullmatch(r"blobs/sha256/([0-9a-f]{64})", member)
            descs.append((member, "sha256:" + m.group(1) if m else None, None, MT_LAYER_TAR))
        tags = entry.get("RepoTags")
        own = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else None
        return config_raw, descs, own if own and _NAME.fullmatch(own) else None

    @staticmethod
    def _copy_blob(src: _Source, member: str, dest: Path, digest: str | None,
                   size: int | None) -> str:
        with src.open(member) as f, open(dest, "wb") as out:
            reader = _Hashing(f, limit=size)
            while chunk := reader.read(CHUNK):
                out.write(chunk)
        if size is not None and reader.size != size:
            raise ImageError(f"{member}: size {reader.size}, the manifest says {size}")
        if digest is not None and reader.digest != digest:
            raise ImageError(f"{member}: digest mismatch (expected {digest}, got {reader.digest})")
        return reader.digest

    @staticmethod
    def _stage_layer(blob: Path, layer_dir: Path, layer: dict) -> None:
        extract_layer(blob, layer_dir, layer["diff_id"])
        (layer_dir / "layer.json").write_text(json.dumps(layer, sort_keys=True))

    def _publish(self, work: Path, name: str, config_raw: bytes, layers: list[dict],
                 staged: dict[str, tuple[Path, Path]]) -> Image:
        """Move what `work` staged (diff_id -> (blob, layer dir)) into place and point
        `name` at the image, atomically. Layers not staged must already be in the store."""
        config_hex = hashlib.sha256(config_raw).hexdigest()
        (work / "config").write_bytes(config_raw)
        _syncfs(work)
        with self._locked():
            for layer in layers:
                final = self.layers_dir / _hex(layer["diff_id"])
                blob_path, layer_dir = staged.get(layer["diff_id"], (None, None))
                if layer_dir is not None and layer_dir.is_dir() and not final.exists():
                    os.rename(layer_dir, final)
                if not final.is_dir():
                    raise ImageError(f"layer {layer['diff_id'][7:19]} vanished (removed "
                                     f"meanwhile?)")
                blob = self.blobs / _hex(layer["blob"])
                if blob_path is not None and not blob.exists():
                    os.rename(blob_path, blob)
            if not (self.blobs / config_hex).exists():
                os.rename(work / "config", self.blobs / config_hex)
            _fsync_dir(self.layers_dir)
            _fsync_dir(self.blobs)
            rec = {"name": name, "config": "sha256:" + config_hex, "layers": layers,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _write_durable(self._ref_path(name), json.dumps(rec, indent=1).encode())
            return self._image(rec)

    # -- build and commit -----------------------------------------------------------------

    def build(self, directory: Path | str, name: str) -> Image:
        """A one-layer image from a folder (its .hv/registry.db becomes the layer's registry)."""
        directory = Path(directory)
        name = normalize_name(name)
        if not directory.is_dir():
            raise ImageError(f"{directory}: not a directory")
        db = directory / REGISTRY_MEMBER
        registry = db if db.is_file() and not db.is_symlink() else None
        return self._new_layer(directory, None, name, registry, "hv image build")

    def commit(self, upper_dir: Path | str, base_image: Image | str | None, new_name: str,
               registry_db: Path | str | None = None) -> Image:
        """A container's upper layer as a new OCI layer on top of `base_image`."""
        new_name = normalize_name(new_name)
        base = self.get(base_image) if isinstance(base_image, str) else base_image
        if not Path(upper_dir).is_dir():
            raise ImageError(f"{upper_dir}: not a directory")
        if registry_db is not None and not Path(registry_db).is_file():
            raise ImageError(f"{registry_db}: no such registry file")
        return self._new_layer(Path(upper_dir), base, new_name,
                               None if registry_db is None else Path(registry_db), "hv commit")

    def _new_layer(self, tree: Path, base: Image | None, name: str, registry: Path | None,
                   created_by: str) -> Image:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        base_layers = self._read_ref(self._ref_path(base.name))["layers"] if base else []
        try:
            with self._work() as work:
                blob = work / "layer.tar"
                with open(blob, "wb") as f:
                    out = _Hashing(f)
                    write_layer_tar(tree, out, registry)
                    f.flush()
                    os.fsync(f.fileno())
                layer = {"diff_id": out.digest, "blob": out.digest, "media_type": MT_LAYER_TAR,
                         "size": out.size}
                staged = work / "layer"
                if not (self.layers_dir / _hex(out.digest)).is_dir():
                    self._stage_layer(blob, staged, layer)
                config = self._base_config(base)
                config["created"] = now
                config["rootfs"]["diff_ids"].append(out.digest)
                config.setdefault("history", []).append({"created": now, "created_by": created_by})
                config_raw = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
                return self._publish(work, name, config_raw, base_layers + [layer],
                                     {out.digest: (blob, staged)})
        except OSError as e:
            raise ImageError(f"{tree}: {_why(e)}") from None

    @staticmethod
    def _base_config(base: Image | None) -> dict:
        if base is None:
            return {"architecture": "386", "os": "linux", "config": {},
                    "rootfs": {"type": "layers", "diff_ids": []}}
        return {"architecture": "386", "os": "linux", "config": dict(base.config),
                "rootfs": {"type": "layers", "diff_ids": list(base.diff_ids)}}


def _pick_manifest(manifests: list) -> dict:
    """From an index, the manifest hv runs best: linux/386, then linux/amd64, then any
    (attestation manifests and other non-images last)."""
    def rank(desc) -> int:
        plat = desc.get("platform") if isinstance(desc.get("platform"), dict) else {}
        arch, os_ = plat.get("architecture"), plat.get("os")
        if arch == "386" and os_ in ("linux", None):
            return 0
        if arch == "amd64" and os_ in ("linux", None):
            return 1
        return 2 if os_ in ("linux", None) and arch != "unknown" else 3
    good = [d for d in manifests if isinstance(d, dict)]
    if not good:
        raise ImageError("index.json: no manifests")
    return min(good, key=rank)


# -- hv image ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="hv image", description="Container images: import, build, list, remove.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    imp = sub.add_parser("import", help="import an OCI image layout or a docker save archive")
    imp.add_argument("file", help="a directory or tar (plain or gzip)")
    imp.add_argument("-t", "--tag", dest="name", help="image name (default: the archive's own)")
    bld = sub.add_parser("build", help="a one-layer image from a folder")
    bld.add_argument("dir")
    bld.add_argument("-t", "--tag", dest="name", required=True)
    sub.add_parser("ls", help="list the images")
    rm = sub.add_parser("rm", help="remove images")
    rm.add_argument("names", nargs="+")
    disk = sub.add_parser("to-disk", help="a bootable FAT16 disk of an image, for the full and "
                          "enlightened VMs (mtools and Linux read it)")
    disk.add_argument("image")
    disk.add_argument("disk", help="the disk image to write (replaced)")
    disk.add_argument("--size", default="32M", help="disk size: 4M..2G (default 32M)")
    return p


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def main_image(argv: list[str]) -> int:
    """`hv image ...`: 0 on success, 2 on bad input (one line on stderr)."""
    args, status = parse(_parser(), argv, "hv: error: hv image: ")
    if args is None:
        return status
    try:
        store = ImageStore()
        if args.action == "import":
            image = store.import_archive(args.file, args.name)
            print(f"imported {image.name} ({len(image.layers)} layers, {image.id[7:19]})")
        elif args.action == "build":
            image = store.build(args.dir, args.name)
            print(f"built {image.name} ({image.id[7:19]})")
        elif args.action == "ls":
            rows = [("NAME", "ID", "LAYERS", "SIZE", "CREATED")]
            rows += [(i.name, i.id[7:19], str(len(i.layers)), _size(i.size), i.created)
                     for i in store.list()]
            widths = [max(len(r[c]) for r in rows) for c in range(5)]
            for r in rows:
                print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        elif args.action == "to-disk":
            from hv.container.vmflavor import FlavorError, image_to_disk, parse_disk_size
            try:
                size = parse_disk_size(args.size)
                disk = image_to_disk(store, args.image, args.disk, size,
                                     warn=lambda w: print(f"hv: warning: {w}", file=sys.stderr))
            except FlavorError as e:
                raise ImageError(str(e)) from None
            print(f"wrote {args.disk} ({size >> 20} MiB, {len(disk.manifest)} files and "
                  f"directories, FAT16)")
        else:
            for name in args.names:
                store.remove(name)
                print(f"removed {normalize_name(name)}")
    except ImageError as e:
        print(f"hv: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"hv: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main_image(sys.argv[1:]))
