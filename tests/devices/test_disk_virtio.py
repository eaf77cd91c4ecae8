"""virtio-blk driven at the register and ring level by the mock driver."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices.base import RecordingIrq
from hv.devices.disk_store import IO_ERROR, Disk, DiskError
from hv.devices.disk_virtio import (SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
                                 VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
                                 VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
                                 VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VirtioBlk)
from hv.memory import GuestMemory, MiB
from hv.virtio import TRANSPORT_FEATURES, VIRTIO_F_EVENT_IDX, Status, VirtioMmio
from hv.virtio import mmio as R
from hv.virtio.queue import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, \
    ram_ranges, vring_need_event
from hv.virtio.testing import MockDriver

BASE = 0xD0000
SECTORS = 2048                         # a 1 MiB image
HDR = struct.Struct("<IIQ")


class GuardedMemory(GuestMemory):
    """Guest memory that records every host access outside guest RAM."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.bad: list[tuple[str, int, int]] = []

    def _note(self, kind: str, addr: int, n: int) -> None:
        if n and not any(lo <= addr and addr + n <= hi for lo, hi in ram_ranges(self)):
            self.bad.append((kind, addr, n))

    def write(self, addr, data):
        self._note("write", addr, len(data))
        super().write(addr, data)

    def read(self, addr, length):
        self._note("read", addr, length)
        return super().read(addr, length)


def make_image(path, sectors=SECTORS, seed=1):
    data = bytes((i * 7 + seed + (i >> 9)) & 0xFF for i in range(sectors * 512))
    path.write_bytes(data)
    return data


class Rig:
    def __init__(self, disk, mem_size=2 * MiB, heap=(0x10000, 0x90000)):
        self.disk = disk
        self.mem = GuardedMemory(mem_size)
        self.irq = RecordingIrq()
        self.dev = VirtioBlk(disk)
        self.t = VirtioMmio(self.dev, self.mem, self.irq, BASE)
        self.drv = MockDriver(self.t, self.mem, heap=heap[0], heap_end=heap[1])

    def live(self, features=None, queue_size=None):
        self.drv.init(features, queue_size=queue_size)
        return self.drv.queues[0]

    def close(self):
        self.mem.close()


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "disk.img"
    return p, make_image(p)


@pytest.fixture
def rig(image):
    disk = Disk(image[0], "hd")
    r = Rig(disk)
    yield r
    assert r.mem.bad == []
    r.close()
    disk.close()


@pytest.fixture
def ro_rig(image):
    disk = Disk(image[0], "hd", readonly=True)
    r = Rig(disk)
    yield r
    r.close()
    disk.close()


def request(q, rtype, sector=0, out=(), ins=(), indirect=False, publish=True):
    """A request chain: header, ``out`` readable data segments, ``ins`` writable
    data segment sizes, then a 1-byte status descriptor."""
    return q.add([HDR.pack(rtype, 0, sector), *out], [*ins, 1], indirect=indirect, publish=publish)


def complete(r, q):
    r.drv.kick(0)
    return q.used()


def one(r, q):
    [u] = complete(r, q)
    return u


# ---- identity and config ------------------------------------------------------------

def test_device_id_is_block_and_offers_seg_max_blk_size_and_flush(rig):
    assert rig.t.read(R.DeviceID, 4) == 2
    f = rig.drv.device_features()
    for bit in (VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH):
        assert f >> bit & 1
    assert f & TRANSPORT_FEATURES == TRANSPORT_FEATURES
    assert not f >> VIRTIO_BLK_F_RO & 1


def test_read_only_disk_offers_f_ro(ro_rig):
    assert ro_rig.drv.device_features() >> VIRTIO_BLK_F_RO & 1


def test_one_request_queue_of_256(rig):
    rig.drv.write(R.QueueSel, 0)
    assert rig.drv.read(R.QueueNumMax) == 256
    rig.drv.write(R.QueueSel, 1)
    assert rig.drv.read(R.QueueNumMax) == 0


def test_config_reports_capacity_seg_max_and_blk_size(rig):
    rig.live()
    lo, hi = rig.drv.config_read(0, 4), rig.drv.config_read(4, 4)
    assert lo | hi << 32 == SECTORS
    assert rig.drv.config_read(12, 4) == SEG_MAX == 254
    assert rig.drv.config_read(20, 4) == 512


def test_config_geometry_is_the_disks_chs(rig):
    g = rig.disk.geometry
    assert rig.drv.config_read(16, 2) == g.cylinders
    assert rig.drv.config_read(18, 1) == g.heads
    assert rig.drv.config_read(19, 1) == g.sectors


def test_config_writes_are_ignored(rig):
    rig.drv.config_write(0, 4, 0xDEAD)
    assert rig.drv.config_read(0, 4) == SECTORS


# ---- reads and writes -------------------------------------------------------------------

def test_read_of_sectors_equals_the_image(rig, image):
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, 5, ins=[4 * 512])
    u = one(rig, q)
    assert u.data[:-1] == image[1][5 * 512:9 * 512]
    assert u.data[-1] == VIRTIO_BLK_S_OK


def test_used_length_covers_data_and_status(rig):
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, 0, ins=[1024])
    assert one(rig, q).len == 1025


def test_multi_segment_read_scatters_across_all_buffers_with_one_disk_read(rig, image, monkeypatch):
    calls = []
    real = rig.disk.read
    monkeypatch.setattr(rig.disk, "read", lambda lba, n: calls.append((lba, n)) or real(lba, n))
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, 10, ins=[512, 1536, 1024])
    u = one(rig, q)
    assert u.data[:-1] == image[1][10 * 512:16 * 512]
    assert u.data[-1] == VIRTIO_BLK_S_OK
    assert calls == [(10, 6)]


def test_multi_segment_write_gathers_all_buffers_into_one_disk_write(rig, monkeypatch):
    calls = []
    real = rig.disk.write
    monkeypatch.setattr(rig.disk, "write", lambda lba, d: calls.append((lba, bytes(d))) or real(lba, d))
    q = rig.live()
    segs = [b"A" * 512, b"B" * 1024, b"C" * 512]
    request(q, VIRTIO_BLK_T_OUT, 3, out=segs)
    assert one(rig, q).data[-1] == VIRTIO_BLK_S_OK
    assert calls == [(3, b"".join(segs))]


def test_write_then_read_back_and_file_contents(rig, image):
    q = rig.live()
    payload = os.urandom(3 * 512)
    request(q, VIRTIO_BLK_T_OUT, 100, out=[payload])
    assert one(rig, q).data == bytes([VIRTIO_BLK_S_OK])
    request(q, VIRTIO_BLK_T_IN, 100, ins=[3 * 512])
    assert one(rig, q).data[:-1] == payload
    request(q, VIRTIO_BLK_T_FLUSH)
    one(rig, q)
    on_disk = image[0].read_bytes()
    assert on_disk[100 * 512:103 * 512] == payload
    assert on_disk[:100 * 512] == image[1][:100 * 512]


def test_header_and_data_in_one_descriptor_is_accepted(rig):
    q = rig.live()
    q.add([HDR.pack(VIRTIO_BLK_T_OUT, 0, 7) + b"\x5a" * 512], [1])
    assert one(rig, q).data == bytes([VIRTIO_BLK_S_OK])
    assert rig.disk.read(7, 1) == b"\x5a" * 512


def test_status_may_share_a_descriptor_with_read_data(rig, image):
    q = rig.live()
    q.add([HDR.pack(VIRTIO_BLK_T_IN, 0, 2)], [512 + 1])
    u = one(rig, q)
    assert u.data[:512] == image[1][1024:1536] and u.data[512] == VIRTIO_BLK_S_OK


def test_flush_calls_disk_flush(rig, monkeypatch):
    flushed = []
    monkeypatch.setattr(rig.disk, "flush", lambda: flushed.append(True))
    q = rig.live()
    request(q, VIRTIO_BLK_T_FLUSH)
    assert one(rig, q).data == bytes([VIRTIO_BLK_S_OK])
    assert flushed == [True]


def test_flush_after_a_write_fsyncs_the_image(rig, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    q = rig.live()
    request(q, VIRTIO_BLK_T_OUT, 0, out=[bytes(512)])
    one(rig, q)
    request(q, VIRTIO_BLK_T_FLUSH)
    one(rig, q)
    assert synced


def test_get_id_returns_the_20_byte_serial(rig):
    q = rig.live()
    request(q, VIRTIO_BLK_T_GET_ID, ins=[VIRTIO_BLK_ID_BYTES])
    u = one(rig, q)
    assert u.data[-1] == VIRTIO_BLK_S_OK
    assert u.data[:VIRTIO_BLK_ID_BYTES] == rig.dev.serial
    assert rig.dev.serial.rstrip(b"\0") == b"hv-disk.img"


# ---- errors ---------------------------------------------------------------------------------

def test_write_to_read_only_disk_is_ioerr_and_file_unchanged(ro_rig, image):
    q = ro_rig.live()
    request(q, VIRTIO_BLK_T_OUT, 0, out=[b"\xff" * 512])
    assert one(ro_rig, q).data == bytes([VIRTIO_BLK_S_IOERR])
    assert image[0].read_bytes() == image[1]


def test_read_from_read_only_disk_works(ro_rig, image):
    q = ro_rig.live()
    request(q, VIRTIO_BLK_T_IN, 1, ins=[512])
    assert one(ro_rig, q).data[:-1] == image[1][512:1024]


def test_read_past_capacity_is_ioerr(rig):
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, SECTORS - 1, ins=[1024])
    assert one(rig, q).data[-1] == VIRTIO_BLK_S_IOERR


def test_write_past_capacity_is_ioerr_and_writes_nothing(rig, image):
    q = rig.live()
    request(q, VIRTIO_BLK_T_OUT, SECTORS - 1, out=[b"\xee" * 1024])
    assert one(rig, q).data == bytes([VIRTIO_BLK_S_IOERR])
    assert image[0].read_bytes() == image[1]


def test_huge_sector_number_is_ioerr(rig):
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, (1 << 64) - 1, ins=[512])
    assert one(rig, q).data[-1] == VIRTIO_BLK_S_IOERR


def test_unknown_request_type_is_unsupp(rig):
    q = rig.live()
    for rtype in (2, 11, 13, 0x80000000):
        request(q, rtype, ins=[512])
        assert one(rig, q).data[-1] == VIRTIO_BLK_S_UNSUPP


def test_data_length_not_a_multiple_of_512_is_ioerr(rig):
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, 0, ins=[100])
    assert one(rig, q).data[-1] == VIRTIO_BLK_S_IOERR
    request(q, VIRTIO_BLK_T_OUT, 0, out=[b"x" * 700])
    assert one(rig, q).data[-1] == VIRTIO_BLK_S_IOERR


def test_host_io_error_is_ioerr(rig, monkeypatch):
    def fail(lba, n):
        raise DiskError(IO_ERROR, "EIO")
    monkeypatch.setattr(rig.disk, "read", fail)
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, 0, ins=[512])
    assert one(rig, q).data[-1] == VIRTIO_BLK_S_IOERR
    assert not rig.t.status & Status.DEVICE_NEEDS_RESET


def test_chain_without_status_byte_needs_reset(rig):
    q = rig.live()
    q.add([HDR.pack(VIRTIO_BLK_T_FLUSH, 0, 0)], [])
    rig.drv.kick(0)
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert "status byte" in rig.t.last_error
    assert rig.t.interrupt_status & R.VIRTIO_MMIO_INT_CONFIG


def test_short_header_needs_reset(rig):
    q = rig.live()
    q.add([b"\0" * 8], [1])
    rig.drv.kick(0)
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert "header" in rig.t.last_error


def test_device_writable_header_needs_reset(rig):
    q = rig.live()
    q.add([], [16, 512, 1])
    rig.drv.kick(0)
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert "header" in rig.t.last_error


def test_device_works_again_after_reset_from_needs_reset(rig, image):
    q = rig.live()
    q.add([b"\0" * 8], [1])
    rig.drv.kick(0)
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, 0, ins=[512])
    assert one(rig, q).data[:-1] == image[1][:512]


# ---- indirect descriptors and batching --------------------------------------------------------

def test_indirect_descriptor_request_reads_and_writes(rig, image):
    q = rig.live()
    request(q, VIRTIO_BLK_T_IN, 4, ins=[512, 512], indirect=True)
    assert one(rig, q).data[:-1] == image[1][4 * 512:6 * 512]
    request(q, VIRTIO_BLK_T_OUT, 4, out=[b"\x11" * 512, b"\x22" * 512], indirect=True)
    assert one(rig, q).data == bytes([VIRTIO_BLK_S_OK])
    assert rig.disk.read(4, 2) == b"\x11" * 512 + b"\x22" * 512


def test_event_idx_batch_of_requests_with_one_doorbell_gives_at_most_one_interrupt(rig, image):
    q = rig.live()
    assert rig.t.queues[0].event_idx
    n = 16
    for i in range(n):
        request(q, VIRTIO_BLK_T_IN, i, ins=[512])
    rig.drv.kick(0)
    used = q.used()
    assert len(used) == n
    assert [u.data[:-1] for u in used] == [image[1][i * 512:(i + 1) * 512] for i in range(n)]
    assert rig.t.stats.doorbells == 1
    assert rig.t.stats.interrupts <= 1 and rig.irq.edges <= 1


def test_event_idx_driver_that_honours_avail_event_rings_once_per_batch(rig):
    """The driver kicks only when avail_event says so (§2.7.10); after each drain
    the device re-arms avail_event, so every batch costs exactly one doorbell."""
    q = rig.live()
    batches, per = 6, 8
    for b in range(batches):
        old = q.avail_idx
        for i in range(per):
            request(q, VIRTIO_BLK_T_IN, b * per + i, ins=[512])
        if vring_need_event(q.avail_event, q.avail_idx, old):
            rig.drv.kick(0)
        assert len(q.used()) == per
    assert rig.t.stats.doorbells == batches
    assert rig.t.stats.chains == batches * per


def test_event_idx_used_event_suppresses_interrupts_until_reached(rig):
    q = rig.live()
    q.set_used_event(2)        # interrupt me once the third completion is used
    for i in range(2):
        request(q, VIRTIO_BLK_T_IN, i, ins=[512])
        rig.drv.kick(0)
    assert rig.irq.edges == 0
    request(q, VIRTIO_BLK_T_IN, 2, ins=[512])
    rig.drv.kick(0)
    assert rig.irq.edges == 1
    assert len(q.used()) == 3


def test_without_event_idx_each_doorbell_interrupts(rig):
    q = rig.live(TRANSPORT_FEATURES & ~(1 << VIRTIO_F_EVENT_IDX))
    for i in range(3):
        request(q, VIRTIO_BLK_T_IN, i, ins=[512])
        rig.drv.kick(0)
        rig.drv.ack_interrupt()
    assert rig.irq.edges == 3 and len(q.used()) == 3


def test_large_sequential_read_in_batches_matches_the_image(tmp_path):
    p = tmp_path / "big.img"
    data = os.urandom(4 * MiB)
    p.write_bytes(data)
    with Disk(p, "hd") as disk:
        r = Rig(disk, mem_size=16 * MiB, heap=(1 * MiB, 16 * MiB))
        q = r.live()
        chunk, out = 128 * 1024, bytearray()
        for batch in range(0, len(data), 8 * chunk):
            for off in range(batch, batch + 8 * chunk, chunk):
                request(q, VIRTIO_BLK_T_IN, off // 512, ins=[chunk])
            r.drv.kick(0)
            for u in q.used():
                assert u.data[-1] == VIRTIO_BLK_S_OK
                out += u.data[:-1]
        assert out == data
        assert r.dev.disk_calls == len(data) // chunk
        assert r.t.stats.doorbells == len(data) // (8 * chunk)
        assert r.mem.bad == []
        r.close()


# ---- hostile input -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_disk(tmp_path_factory):
    p = tmp_path_factory.mktemp("vblk") / "h.img"
    make_image(p, sectors=64)
    with Disk(p, "hd", snapshot=True) as d:
        yield d


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.integers(0, 0x1FF), st.sampled_from([1, 2, 4]),
                              st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=40))
def test_random_register_accesses_never_raise(shared_disk, ops):
    r = Rig(shared_disk)
    try:
        for off, size, value, is_write in ops:
            if is_write:
                r.t.write(off, size, value & ((1 << 8 * size) - 1))
            else:
                assert 0 <= r.t.read(off, size) < 1 << 8 * size
        assert r.mem.bad == []
    finally:
        r.close()


HEAP = 0x20000
# Mostly plausible descriptors (buffers in RAM at the planted headers, sizes a request
# uses, NEXT/WRITE flags, indices inside the table) with hostile values mixed in.
N, W, I = VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT


def mostly(common, rare, odds=4):
    """Draw from ``common`` (plausible values) ``odds`` times as often as from ``rare``."""
    return st.integers(0, odds).flatmap(lambda k: rare if k == 0 else st.sampled_from(common))


addr_st = mostly([HEAP + 0x1000 * k + o for k in range(5) for o in (0, 0, 16, 0x200)],
                 st.one_of(st.integers(0, (1 << 64) - 1),
                           st.sampled_from([0x9FFF0, 0xA0000, 0xFFFF0, 0x1FFFF0, 0x200000])), 12)
len_st = mostly([16, 16, 17, 512, 1024, 1, 1, 0, 513, 32, 48], st.integers(0, 0xFFFFFFFF), 12)
# One descriptor: (addr, len, is_writable, flags override, next override). Chains are laid
# out as a driver would (NEXT links, readable before writable); overrides break them.
desc_st = st.tuples(addr_st, len_st, st.booleans(), mostly([None], st.integers(0, 0xFFFF), 12),
                    mostly([None], st.integers(0, 0xFFFF), 12))
chain_st = st.lists(desc_st, min_size=2, max_size=4)
QSIZE = 16


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chains=st.lists(chain_st, min_size=1, max_size=4),
       heads=mostly([None], st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4)),
       avail=mostly([None], st.integers(0, 0xFFFF)), used_event=st.integers(0, 0xFFFF),
       headers=st.lists(st.tuples(st.sampled_from([0, 1, 4, 8, 2, 0xFFFFFFFF]),
                                  st.one_of(st.integers(0, 70), st.integers(0, (1 << 64) - 1))),
                        min_size=5, max_size=5),
       indirect=st.booleans(),
       features=st.sampled_from([None, TRANSPORT_FEATURES & ~(1 << VIRTIO_F_EVENT_IDX)]))
def test_random_rings_never_raise_or_touch_memory_outside_ram(shared_disk, chains, heads, avail,
                                                              used_event, headers, indirect, features):
    r = Rig(shared_disk, heap=(0x10000, HEAP))
    try:
        q = r.live(features, queue_size=QSIZE)
        # Plant request headers where the descriptors mostly point.
        for i, (rtype, sector) in enumerate(headers):
            r.mem.write(HEAP + 0x1000 * i, HDR.pack(rtype, 0, sector))
        table = r.drv.alloc(16 * QSIZE, 16)       # for chains placed in an indirect table
        slot, starts = 0, []
        for chain in chains:
            base = 0 if indirect else slot
            for j, (addr, length, writable, flags, nxt) in enumerate(chain):
                last = j == len(chain) - 1
                default = (0 if last else N) | (W if j and (writable or last) else 0)
                q.write_desc(base + j, addr, length, default if flags is None else flags,
                             base + j + 1 if nxt is None else nxt, table=table if indirect else None)
            if indirect:
                q.write_desc(slot, table, 16 * len(chain), I)
                slot += 1
            else:
                slot += len(chain)
            starts.append(slot - (1 if indirect else len(chain)))
            if indirect:
                break                             # one shared table: one indirect chain
        for h in heads or starts:
            q.publish(h)
        if avail is not None:
            q.set_avail_idx(avail)
        q.set_used_event(used_event)
        r.drv.kick(0)
        r.drv.kick(0)
        assert r.mem.bad == []
    finally:
        r.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=st.one_of(st.sampled_from([0, 1, 4, 8]), st.integers(0, 0xFFFFFFFF)),
       sector=st.one_of(st.integers(0, 80), st.integers(0, (1 << 64) - 1)),
       out=st.lists(st.integers(0, 1100), max_size=3), ins=st.lists(st.integers(0, 1100), max_size=3),
       indirect=st.booleans())
def test_random_request_headers_complete_with_a_defined_status(shared_disk, rtype, sector, out, ins,
                                                                indirect):
    r = Rig(shared_disk)
    try:
        q = r.live()
        request(q, rtype, sector, out=[b"\x77" * n for n in out if n], ins=[n for n in ins if n],
                indirect=indirect)
        [u] = complete(r, q)
        assert u.data[-1] in (VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP)
        assert not r.t.status & Status.DEVICE_NEEDS_RESET
        assert r.mem.bad == []
    finally:
        r.close()


def test_descriptor_pointing_outside_ram_needs_reset_without_touching_it(rig):
    q = rig.live(queue_size=8)
    hdr = rig.drv.alloc(16)
    rig.mem.write(hdr, HDR.pack(VIRTIO_BLK_T_IN, 0, 0))
    q.write_desc(0, hdr, 16, VIRTQ_DESC_F_NEXT, 1)
    q.write_desc(1, 0xC0000, 512, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2)   # the ROM
    q.write_desc(2, hdr + 16, 1, VIRTQ_DESC_F_WRITE)
    q.publish(0)
    rig.drv.kick(0)
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert "outside guest RAM" in rig.t.last_error


def test_indirect_without_negotiation_needs_reset(rig):
    q = rig.live(TRANSPORT_FEATURES & ~(1 << 28))
    table = rig.drv.alloc(32, 16)
    q.write_desc(0, table, 32, VIRTQ_DESC_F_INDIRECT)
    q.publish(0)
    rig.drv.kick(0)
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
