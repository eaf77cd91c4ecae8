"""Hostile 9P messages: whatever arrives, the server answers one well-formed R-message.

Three generators: random bytes; messages of every type with random field values (and sizes
and lengths broken at random); random sequences of valid messages on a handful of fids. The
checks: the reply parses completely (``decode_reply``), answers the request's type or is
Rlerror with an errno, no host exception was turned into EIO, no host descriptor leaks, the
read-only layers are never modified and nothing is written outside the container's upper.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from hypothesis import strategies as st

from hv.container.layers import LayeredRoot
from hv.container.p9 import P9Server
from tests.container.p9client import (BODIES, NOFID, RLERROR, TATTACH, TVERSION, decode_reply,
                                      encode, message)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = sorted(BODIES)


def make_tree(top: Path) -> tuple[Path, Path, Path]:
    lower, upper, outside = top / "lower", top / "upper", top / "outside"
    for p, text in (("etc/hostname", "h"), ("data/a.txt", "aaaa"), ("data/sub/b", "b")):
        (lower / p).parent.mkdir(parents=True, exist_ok=True)
        (lower / p).write_text(text)
    (lower / "link").symlink_to("/data")
    (lower / "up").symlink_to("../../..")
    outside.mkdir()
    (outside / "secret").write_text("host")
    return lower, upper, outside


def digest(tree: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(tree.rglob("*")):
        h.update(str(p.relative_to(tree)).encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
        h.update(oct(p.lstat().st_mode).encode())
    return h.hexdigest()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Session:
    def __init__(self, top: Path, versioned: bool = True) -> None:
        self.lower, self.upper, self.outside = make_tree(top)
        self.before = digest(self.lower), digest(self.outside)
        self.fds = open_fds()
        self.root = LayeredRoot([self.lower], self.upper)
        self.server = P9Server(self.root, max_fids=64, max_open=16)
        if versioned:
            assert self.ask(encode(TVERSION, 8192, tag=0xFFFF))[0] == TVERSION + 1
            assert self.ask(encode(TATTACH, 0, NOFID, "root", "", 0))[0] == TATTACH + 1

    def ask(self, msg: bytes, expect: int | None = None):
        reply = self.server.handle(msg)
        rtype, tag, value = decode_reply(reply, expect)     # raises unless well-formed
        if len(msg) >= 7:
            assert tag == struct.unpack_from("<H", msg, 5)[0]
        assert len(reply) <= self.server.msize
        return rtype, tag, value

    def finish(self) -> None:
        assert self.server.internal_errors == 0
        assert self.server._open == sum(f.fd is not None for f in self.server.fids.values())
        self.server.close()
        self.root.close()
        assert open_fds() == self.fds
        assert (digest(self.lower), digest(self.outside)) == self.before


# ---- strategies --------------------------------------------------------------------------------

fids = st.one_of(st.integers(0, 5), st.just(NOFID), st.integers(0, 2**32 - 1))
names = st.one_of(st.sampled_from(["etc", "data", "a.txt", "sub", "b", "link", "up", ".", "..",
                                   "new", "dir", ".wh.x", "hostname", "", "a/b", "x\0y"]),
                  st.binary(max_size=12), st.text(max_size=300))
u8, u16, u32, u64 = (st.integers(0, 2**n - 1) for n in (8, 16, 32, 64))
small_offsets = st.one_of(st.integers(0, 64), u64)
flags = st.one_of(st.sampled_from([0, 1, 2, 3, 0o100, 0o1002, 0o2001, 0o200000, 0o400000, 0o302]), u32)
modes = st.one_of(st.sampled_from([0o644, 0o755, 0o40755, 0o10644, 0o20644]), u32)

ARGS = {
    TVERSION: st.tuples(u32, st.sampled_from(["9P2000.L", "9P2000", "9P2000.u", ""])),
    TATTACH: st.tuples(fids, fids, names, st.sampled_from(["", "/", "/etc"]), u32),
    102: st.tuples(fids, names, names, u32),
    108: st.tuples(u16),
    110: st.tuples(fids, fids).flatmap(lambda t: st.lists(names, max_size=18).map(lambda n: (*t, *n))),
    12: st.tuples(fids, flags),
    14: st.tuples(fids, names, flags, modes, u32),
    116: st.tuples(fids, small_offsets, u32),
    118: st.tuples(fids, small_offsets, st.binary(max_size=64)),
    120: st.tuples(fids),
    122: st.tuples(fids),
    24: st.tuples(fids, u64),
    26: st.tuples(fids, u32, modes, u32, u32, small_offsets, st.tuples(u64, u64), st.tuples(u64, u64)),
    40: st.tuples(fids, small_offsets, u32),
    72: st.tuples(fids, names, modes, u32),
    16: st.tuples(fids, names, names, u32),
    22: st.tuples(fids),
    70: st.tuples(fids, fids, names),
    20: st.tuples(fids, fids, names),
    74: st.tuples(fids, names, fids, names),
    76: st.tuples(fids, names, st.sampled_from([0, 0x200, 0x100]) | u32),
    8: st.tuples(fids),
    50: st.tuples(fids, u32),
    18: st.tuples(fids, names, modes, u32, u32, u32),
    30: st.tuples(fids, fids, names),
    32: st.tuples(fids, names, u64, u32),
    52: st.tuples(fids, u8, u32, u64, u64, u32, names),
    54: st.tuples(fids, u8, u64, u64, u32, names),
}
assert set(ARGS) == set(BODIES)

requests = st.sampled_from(TYPES).flatmap(lambda t: ARGS[t].map(lambda a: (t, a)))

def build(mtype: int, args: tuple, tag: int = 1) -> bytes:
    return message(mtype, tag, BODIES[mtype](*args))


# ---- the tests -----------------------------------------------------------------------------------

@FUZZ
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=8), st.booleans())
def test_random_bytes_always_get_a_well_formed_reply(blobs, versioned):
    with tempfile.TemporaryDirectory() as top:
        s = Session(Path(top), versioned)
        for blob in blobs:
            rtype, _, _ = s.ask(blob)
            assert rtype % 2 == 1
        s.finish()


@FUZZ
@given(st.lists(st.tuples(requests, st.sampled_from(["exact", "size+", "size-", "cut", "grow"]),
                          u16), min_size=1, max_size=10))
def test_messages_with_random_fields_and_broken_framing_get_a_well_formed_reply(batch):
    with tempfile.TemporaryDirectory() as top:
        s = Session(Path(top))
        for (mtype, args), how, tag in batch:
            m = bytearray(build(mtype, args, tag))
            if how == "size+":
                m[0:4] = struct.pack("<I", len(m) + 1)
            elif how == "size-":
                m[0:4] = struct.pack("<I", len(m) - 1)
            elif how == "cut" and len(m) > 8:
                m = m[:-1]
                m[0:4] = struct.pack("<I", len(m))
            elif how == "grow":
                m += b"\0"
                m[0:4] = struct.pack("<I", len(m))
            rtype, _, value = s.ask(bytes(m))
            assert rtype in (mtype + 1, RLERROR)
            if how != "exact":                     # framing broken: always an error
                assert rtype == RLERROR, (mtype, how, value)
        s.finish()


class P9Sequences(RuleBasedStateMachine):
    """Random sequences of valid messages on the fids the server handed out (and on some it
    did not, and on clunked ones): every reply answers its request, and the invariants hold."""

    fids = Bundle("fids")
    names = st.sampled_from(["etc", "data", "a.txt", "sub", "b", "link", "up", ".", "..", "new",
                             "dir", "hostname"])
    open_flags = st.sampled_from([0, 1, 2, 0o1001, 0o2001, 0o200000, 0o302, 0o102])

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.s = Session(Path(self.tmp.name))
        self.next_fid = 1
        self.ok = 0

    def ask(self, mtype: int, *args):
        rtype, _, value = self.s.ask(build(mtype, args), expect=mtype)
        self.ok += rtype != RLERROR
        return rtype != RLERROR, value

    @initialize(target=fids)
    def root(self):
        return 0

    @rule(target=fids, fid=fids, path=st.lists(names, max_size=3))
    def walk(self, fid, path):
        newfid, self.next_fid = self.next_fid, self.next_fid + 1
        self.ask(110, fid, newfid, *path)
        return newfid

    @rule(fid=fids, flags=open_flags)
    def lopen(self, fid, flags):
        self.ask(12, fid, flags)

    @rule(fid=fids, name=names, flags=open_flags)
    def lcreate(self, fid, name, flags):
        self.ask(14, fid, name, flags | 0o100, 0o644, 0)

    @rule(fid=fids, offset=st.integers(0, 20), count=st.integers(0, 300))
    def read(self, fid, offset, count):
        self.ask(116, fid, offset, count)

    @rule(fid=fids, offset=st.integers(0, 20), data=st.binary(max_size=32))
    def write(self, fid, offset, data):
        self.ask(118, fid, offset, data)

    @rule(fid=fids, offset=st.integers(0, 6), count=st.sampled_from([30, 60, 8192]))
    def readdir(self, fid, offset, count):
        self.ask(40, fid, offset, count)

    @rule(fid=fids)
    def getattr(self, fid):
        self.ask(24, fid, 0x3FFF)

    @rule(fid=fids, valid=st.sampled_from([1, 8, 0x30, 0x1B0]), size=st.integers(0, 20))
    def setattr(self, fid, valid, size):
        self.ask(26, fid, valid, 0o600, 0, 0, size, (5, 6), (7, 8))

    @rule(fid=fids, name=names)
    def mkdir(self, fid, name):
        self.ask(72, fid, name, 0o755, 0)

    @rule(fid=fids, name=names, points_to=st.sampled_from(["/data", "..", "loop", "a.txt", "/"]))
    def symlink(self, fid, name, points_to):
        self.ask(16, fid, name, points_to, 0)

    @rule(dfid=fids, fid=fids, name=names)
    def link(self, dfid, fid, name):
        self.ask(70, dfid, fid, name)

    @rule(old=fids, oldname=names, new=fids, newname=names)
    def renameat(self, old, oldname, new, newname):
        self.ask(74, old, oldname, new, newname)

    @rule(fid=fids, name=names, flags=st.sampled_from([0, 0x200]))
    def unlinkat(self, fid, name, flags):
        self.ask(76, fid, name, flags)

    @rule(fid=fids, kind=st.sampled_from([120, 122, 22, 8, 50]))
    def single_fid(self, fid, kind):          # clunk, remove, readlink, statfs, fsync
        self.ask(kind, fid, *((0,) if kind == 50 else ()))

    @rule(fid=fids, ltype=st.integers(0, 2))
    def locks(self, fid, ltype):
        self.ask(52, fid, ltype, 0, 0, 10, 1, "c")
        self.ask(54, fid, ltype, 0, 10, 1, "c")

    @invariant()
    def consistent(self):
        server = self.s.server
        assert server.internal_errors == 0
        assert server._open == sum(f.fd is not None for f in server.fids.values())

    def teardown(self):
        try:
            self.s.finish()
        finally:
            self.tmp.cleanup()


P9Sequences.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_random_sequences_of_valid_messages_keep_the_server_consistent = P9Sequences.TestCase
