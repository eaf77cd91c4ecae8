"""hv's 9P server against diod, a reference 9P2000.L server, on the same script.

diod (``apt-get install diod``) serves a copy of the same directory over a socket pair. One
script of messages runs against both (the messages diod 1.0 serves: Trename and Tremove
rather than Trenameat and Tunlinkat, which Linux's v9fs falls back to as well); each step's outcome is compared after normalising what
legitimately differs (qid paths: hv's are the layered root's inode numbers; iounit; readdir
order and offsets). Then the two directories must hold the same files, modes and contents.

Where hv departs from diod by design it is not compared here but tested in test_p9.py:
confinement (diod walks ``..`` above its export), mknod (diod, as root, makes device nodes),
extended attributes (diod serves them), the errno for bad fids, and a Twalk of more than 16
names (diod drops the connection; hv answers EINVAL, as QEMU). A walk whose later names fail
gets the partial Rwalk the spec asks for, as from QEMU (diod answered some with ENOTDIR).
"""
from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess

import pytest

from hv.container.layers import LayeredRoot
from hv.container.p9 import P9Server
from tests.container.p9client import (O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC,
                                      O_WRONLY, SETATTR_MODE, SETATTR_MTIME, SETATTR_MTIME_SET,
                                      SETATTR_SIZE, Attr, Dirent, P9Client, P9Lerror, Qid)

DIOD = shutil.which("diod") or (os.path.exists("/usr/sbin/diod") and "/usr/sbin/diod") or None
pytestmark = pytest.mark.skipif(
    DIOD is None or os.geteuid() != 0,
    reason="needs diod, the reference 9P2000.L server (apt-get install diod), run as root")


class Diod:
    """diod serving ``export`` on one end of a socket pair."""

    def __init__(self, export) -> None:
        self.sock, theirs = socket.socketpair()
        fd = theirs.fileno()
        self.proc = subprocess.Popen(
            [DIOD, "-f", "-n", "-N", f"--rfdno={fd}", f"--wfdno={fd}", "-e", str(export),
             "-c", "/dev/null", "-L", "stderr"],
            pass_fds=[fd], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs.close()
        self.sock.settimeout(30)

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("diod closed the connection")
            out += chunk
        return out

    def __call__(self, message: bytes) -> bytes:
        self.sock.sendall(message)
        head = self._recv(4)
        return head + self._recv(struct.unpack("<I", head)[0] - 4)

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def normalise(value):
    """What both servers must agree on."""
    if isinstance(value, Qid):
        return ("qid", value.type)
    if isinstance(value, Attr):
        kind = stat.S_IFMT(value.mode)
        # Directory sizes and link counts are the host file system's business.
        size = None if stat.S_ISDIR(value.mode) else value.size
        nlink = None if stat.S_ISDIR(value.mode) else value.nlink
        # An mtime the script set is compared; "now" is not (the runs may straddle a second).
        mtime = value.mtime[0] if value.mtime[0] < 1_000_000_000 else "now"
        return ("attr", value.qid.type, kind, stat.S_IMODE(value.mode), size, nlink, mtime)
    if isinstance(value, list) and value and isinstance(value[0], Dirent):
        return ("dir", sorted((d.name, d.type, d.qid.type) for d in value))
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Qid):
        return ("open", value[0].type)                       # iounit differs (diod: 0)
    return value


def script(c: P9Client, aname: str) -> list:
    """The steps, each (name, outcome): ("ok", normalised value) or ("err", errno)."""
    out = []

    def step(name, call, *args, **kw):
        try:
            out.append((name, "ok", normalise(call(*args, **kw))))
        except P9Lerror as e:
            out.append((name, "err", e.errno))

    step("version", c.version, 65536)
    step("attach", c.attach, 0, aname=aname)
    step("walk file", c.walk, 0, 1, "etc", "hostname")
    step("open file", c.lopen, 1, O_RDONLY)
    step("read", c.read, 1, 0, 100)
    step("read at offset", c.read, 1, 3, 100)
    step("read past the end", c.read, 1, 1000, 100)
    step("getattr open file", c.getattr, 1)
    step("clunk", c.clunk, 1)
    step("walk missing", c.walk, 0, 2, "missing")
    step("partial walk", c.walk, 0, 2, "etc", "missing", "x")
    step("walk from a file", c.walk, 0, 3, "etc", "hostname", "x")
    step("walk clone", c.walk, 0, 4)
    step("walk etc", c.walk, 0, 5, "etc")
    step("create", c.lcreate, 5, "new", O_RDWR | O_CREAT | O_EXCL, 0o640)
    step("write", c.write, 5, 0, b"new contents")
    step("write at offset", c.write, 5, 4, b"CONT")
    step("read back", c.read, 5, 0, 100)
    step("getattr created", c.getattr, 5)
    step("walk etc again", c.walk, 0, 6, "etc")
    step("create existing with excl", c.lcreate, 6, "new", O_WRONLY | O_CREAT | O_EXCL, 0o600)
    step("mkdir", c.mkdir, 0, "d", 0o750)
    step("mkdir existing", c.mkdir, 0, "d", 0o750)
    step("walk d", c.walk, 0, 7, "d")
    step("symlink", c.symlink, 7, "l", "../etc/hostname")
    step("walk symlink", c.walk, 7, 8, "l")
    step("readlink", c.readlink, 8)
    step("getattr symlink", c.getattr, 8)
    step("walk hostname", c.walk, 0, 9, "etc", "hostname")
    step("link", c.link, 7, 9, "hard")
    step("getattr linked", c.getattr, 9)
    step("walk new", c.walk, 0, 10, "etc", "new")
    step("rename", c.rename, 10, 7, "moved")                 # diod 1.0 has no Trenameat
    step("walk old name", c.walk, 0, 11, "etc", "new")
    step("walk new name", c.walk, 0, 11, "d", "moved")
    step("chmod", c.setattr, 11, SETATTR_MODE, mode=0o600)
    step("truncate", c.setattr, 11, SETATTR_SIZE, size=3)
    step("set mtime", c.setattr, 11, SETATTR_MTIME | SETATTR_MTIME_SET, mtime=(1_000_000, 0))
    step("getattr after setattr", c.getattr, 11)
    step("open for write with trunc", c.lopen, 11, O_WRONLY | O_TRUNC)
    step("fsync", c.fsync, 11)
    step("getattr truncated", c.getattr, 11)
    step("lock", c.lock, 11, 1)
    step("getlock", c.getlock, 11, 1, start=0, length=5)
    step("open d", c.lopen, 7, O_RDONLY)
    step("readdir d", c.readdir_all, 7)
    step("walk d 12", c.walk, 0, 12, "d")
    step("remove a non-empty directory", c.remove, 12)     # and Tunlinkat (diod 1.0 lacks it)
    step("walk hard", c.walk, 0, 13, "d", "hard")
    step("remove hard", c.remove, 13)
    step("walk hard again", c.walk, 0, 13, "d", "hard")
    step("walk symlink 14", c.walk, 0, 14, "d", "l")
    step("remove symlink", c.remove, 14)
    step("mkdir e", c.mkdir, 0, "e", 0o755)
    step("walk e", c.walk, 0, 15, "e")
    step("remove e", c.remove, 15)
    step("statfs type", lambda: c.statfs(0)[0])
    return out


@pytest.fixture
def trees(tmp_path):
    hv_dir, diod_dir = tmp_path / "hv", tmp_path / "diod"
    for top in (hv_dir, diod_dir):
        (top / "etc").mkdir(parents=True)
        (top / "etc" / "hostname").write_bytes(b"reference\n")
        os.utime(top / "etc" / "hostname", (1000, 1000))
    return hv_dir, diod_dir


def tree(top) -> dict:
    return {str(p.relative_to(top)): (stat.S_IFMT(p.lstat().st_mode), stat.S_IMODE(p.lstat().st_mode),
                                      os.readlink(p) if p.is_symlink() else
                                      p.read_bytes() if p.is_file() else None)
            for p in sorted(top.rglob("*"))}


def test_hv_answers_the_script_as_diod_does_and_leaves_the_same_files(trees):
    hv_dir, diod_dir = trees
    root = LayeredRoot.from_directory(hv_dir)
    server = P9Server(root)
    ours = script(P9Client(server.handle), "")
    diod = Diod(diod_dir)
    try:
        theirs = script(P9Client(diod), str(diod_dir))
    finally:
        diod.close()
    assert server.internal_errors == 0
    differences = [(a, b) for a, b in zip(ours, theirs) if a != b]
    assert differences == []
    assert tree(hv_dir) == tree(diod_dir)
    root.close()
