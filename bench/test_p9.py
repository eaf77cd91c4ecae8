"""The utility VM's channel to the host: 9P and registry round trips, host side only.

Run: python -m pytest bench/test_p9.py --benchmark-only --benchmark-timer time.process_time
or:  python -m hv.bench.test_p9          (the same figures as a table, in CPU time, no pytest)

What is timed is what the host does for one guest request: the 9P server over a two-layer
LayeredRoot (directly, and behind virtio-9p with the chain already in the ring, from the
doorbell to the used entry), the registry device for one QUERY_VALUE, and, as the floor, the
layered root's own calls that a process container makes for the same work. The guest
kernel's share of the 30 us budget is not here.
"""
from __future__ import annotations

import struct
import tempfile
import time
import timeit
from pathlib import Path

import pytest

from hv.container.layers import LayeredRoot
from hv.container.p9 import P9Server
from hv.container.registry import REG_SZ, LayeredRegistry
from hv.container.registry_calls import HKEY_LOCAL_MACHINE, Op, encode_request
from hv.devices.base import RecordingIrq
from hv.devices.fs_virtio9p import Virtio9p
from hv.devices.registry_virtio import VirtioRegistry
from hv.memory import GuestMemory, MiB
from hv.virtio import VirtioMmio
from hv.virtio.testing import MockDriver

NOFID = 0xFFFFFFFF


def _s(text: str) -> bytes:
    return struct.pack("<H", len(text)) + text.encode()


def _msg(mtype: int, body: bytes, tag: int = 1) -> bytes:
    return struct.pack("<IBH", 7 + len(body), mtype, tag) + body


VERSION = _msg(100, struct.pack("<I", 65536) + _s("9P2000.L"), 0xFFFF)
ATTACH = _msg(104, struct.pack("<II", 0, NOFID) + _s("root") + _s("") + struct.pack("<I", 0))
WALK_DIR = _msg(110, struct.pack("<IIH", 0, 1, 2) + _s("usr") + _s("share"))       # fid 1: /usr/share
GETATTR = _msg(24, struct.pack("<IQ", 2, 0x3FFF))                                   # fid 2: the file
WALK_FILE = _msg(110, struct.pack("<IIH", 1, 3, 1) + _s("motd"))                   # fid 3 <- 1/motd
LOPEN = _msg(12, struct.pack("<II", 3, 0))
READ = _msg(116, struct.pack("<IQI", 3, 0, 4096))
CLUNK = _msg(120, struct.pack("<I", 3))
OPEN_READ_CLUNK = (WALK_FILE, LOPEN, READ, CLUNK)


class Setup:
    """A two-layer image with /usr/share/motd (200 bytes) in the lower layer."""

    def __init__(self, top: Path) -> None:
        lower = top / "lower" / "usr" / "share"
        lower.mkdir(parents=True)
        (lower / "motd").write_bytes(b"m" * 200)
        (top / "middle").mkdir()
        self.root = LayeredRoot([top / "middle", top / "lower"], top / "upper")
        self.server = P9Server(self.root)
        for m in (VERSION, ATTACH, WALK_DIR,
                  _msg(110, struct.pack("<IIH", 1, 2, 1) + _s("motd"))):
            assert self.server.handle(m)[4] != 7
        # virtio-9p with its own connection, chains built once and published again each time.
        self.mem = GuestMemory(4 * MiB)
        self.dev = Virtio9p(self.root, "bench")
        self.drv = MockDriver(VirtioMmio(self.dev, self.mem, RecordingIrq(), 0xD0000), self.mem)
        self.drv.init()
        self.q = self.drv.queues[0]
        for m in (VERSION, ATTACH, WALK_DIR, _msg(110, struct.pack("<IIH", 1, 2, 1) + _s("motd"))):
            self.q.add([m], [8192])
            self.drv.kick(0)
        self.q.used()
        self.getattr_heads = [self.q.add([GETATTR], [256], publish=False)]
        self.orc_heads = [self.q.add([m], [8192], publish=False) for m in OPEN_READ_CLUNK]
        # The registry device: one key with one value, one open handle.
        self.registry = LayeredRegistry([], top / "reg.db")
        self.reg = VirtioRegistry(self.registry)
        self.rdrv = MockDriver(VirtioMmio(self.reg, self.mem, RecordingIrq(), 0xD1000), self.mem,
                               heap=0x90000 - 0x20000, heap_end=0x90000)
        self.rdrv.init()
        self.rq = self.rdrv.queues[0]
        for m in (encode_request(Op.CREATE_KEY, HKEY_LOCAL_MACHINE, "Software\\hv"),
                  encode_request(Op.SET_VALUE, 1, "greeting", REG_SZ, b"hello")):
            self.rq.add([m], [64])
            self.rdrv.kick(0)
        self.rq.used()
        self.query_heads = [self.rq.add([encode_request(Op.QUERY_VALUE, 1, "greeting", 64)], [128],
                                        publish=False)]

    # ---- the timed operations ------------------------------------------------------------------

    def getattr_direct(self) -> None:
        self.server.handle(GETATTR)

    def open_read_clunk_direct(self) -> None:
        for m in OPEN_READ_CLUNK:
            self.server.handle(m)

    @staticmethod
    def _doorbell(drv, q, heads) -> None:
        for h in heads:
            q.publish(h)
        drv.kick(0)                   # every chain published is served by this one doorbell

    def getattr_virtio(self) -> None:
        self._doorbell(self.drv, self.q, self.getattr_heads)

    def open_read_clunk_virtio(self) -> None:
        self._doorbell(self.drv, self.q, self.orc_heads)

    def registry_query_virtio(self) -> None:
        self._doorbell(self.rdrv, self.rq, self.query_heads)

    def layered_stat(self) -> None:
        self.root.stat("/usr/share/motd", follow=False)

    def layered_open_read_close(self) -> None:
        import os
        fd = self.root.open("/usr/share/motd", os.O_RDONLY)
        os.pread(fd, 4096, 0)
        os.close(fd)


OPERATIONS = ["getattr_direct", "open_read_clunk_direct", "getattr_virtio", "open_read_clunk_virtio",
              "registry_query_virtio", "layered_stat", "layered_open_read_close"]


@pytest.fixture(scope="module")
def setup():
    with tempfile.TemporaryDirectory() as top:
        yield Setup(Path(top))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_round_trip(benchmark, setup, operation):
    benchmark.group = "p9"
    benchmark(getattr(setup, operation))
    assert setup.server.internal_errors == 0 and not setup.dev.transport.last_error


def main() -> None:
    with tempfile.TemporaryDirectory() as top:
        s = Setup(Path(top))
        print(f"{'operation':<26} {'us':>8}")
        for name in OPERATIONS:
            fn = getattr(s, name)
            # CPU time, not wall time: on a shared machine waiting for a core is not the cost.
            best = min(timeit.repeat(fn, number=500, repeat=7, timer=time.process_time)) / 500
            print(f"{name:<26} {best * 1e6:8.1f}")


if __name__ == "__main__":
    main()
