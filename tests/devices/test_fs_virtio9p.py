"""virtio-9p driven through virtio rings by the mock driver: the channel a utility VM's kernel uses."""
from __future__ import annotations

import errno
import struct

import pytest

from hv.container.layers import LayeredRoot
from hv.devices.base import RecordingIrq
from hv.devices.fs_virtio9p import MAX_TAG_LEN, QUEUE_SIZE, VIRTIO_9P_MOUNT_TAG, Virtio9p
from hv.memory import MiB
from hv.virtio import TRANSPORT_FEATURES, Status, VirtioMmio
from hv.virtio import mmio as R
from hv.virtio.queue import VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from hv.virtio.testing import MockDriver
from tests.container.p9client import (NOFID, NOTAG, O_RDONLY, QTFILE, RLERROR, TATTACH, TCLUNK, TGETATTR,
                                      TLOPEN, TREAD, TVERSION, TWALK, decode_reply, encode)

from tests.devices.harness import GuardedMemory

BASE = 0xD4000


class Rig:
    def __init__(self, top, tag="hvroot", **kw):
        (top / "etc").mkdir(parents=True, exist_ok=True)
        (top / "etc" / "hostname").write_bytes(b"utility-vm\n")
        (top / "big").write_bytes(bytes(range(256)) * 256)
        self.root = LayeredRoot.from_directory(top)
        self.mem = GuardedMemory(4 * MiB)
        self.irq = RecordingIrq()
        self.dev = Virtio9p(self.root, tag, **kw)
        self.t = VirtioMmio(self.dev, self.mem, self.irq, BASE)
        self.drv = MockDriver(self.t, self.mem)

    def live(self):
        self.drv.init()
        return self.drv.queues[0]

    def call(self, q, msg: bytes, room: int = 8192):
        q.add([msg], [room])
        self.drv.kick(0)
        [used] = q.used()
        assert used.len == len(used.data)
        return decode_reply(used.data)

    def mount(self, q, msize=8192):
        assert self.call(q, encode(TVERSION, msize, tag=NOTAG))[2] == (msize, b"9P2000.L")
        assert self.call(q, encode(TATTACH, 0, NOFID, "root", "", 0))[0] == TATTACH + 1

    @property
    def needs_reset(self) -> bool:
        return bool(self.drv.status & Status.DEVICE_NEEDS_RESET)


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path / "root")
    yield r
    assert r.mem.bad == []
    assert r.dev.server.internal_errors == 0
    r.root.close()
    r.mem.close()


# ---- identity and config -------------------------------------------------------------------------

def test_device_id_is_9p_with_one_request_queue(rig):
    assert rig.t.read(R.DeviceID, 4) == 9
    for i, expected in ((0, QUEUE_SIZE), (1, 0)):
        rig.drv.write(R.QueueSel, i)
        assert rig.drv.read(R.QueueNumMax) == expected


def test_offers_the_mount_tag_feature(rig):
    f = rig.drv.device_features()
    assert f >> VIRTIO_9P_MOUNT_TAG & 1
    assert f & TRANSPORT_FEATURES == TRANSPORT_FEATURES


def test_config_space_holds_the_tag_length_and_the_tag(tmp_path):
    r = Rig(tmp_path, tag="rootfs")
    assert r.drv.config_read(0, 2) == 6
    assert bytes(r.drv.config_read(2 + i, 1) for i in range(6)) == b"rootfs"
    assert r.drv.config_read(8, 1) == 0                       # past the tag: nothing


@pytest.mark.parametrize("tag", ["", "x" * (MAX_TAG_LEN + 1), "a\0b"])
def test_a_bad_mount_tag_is_refused_at_construction(tmp_path, tag):
    with pytest.raises(ValueError):
        Virtio9p(LayeredRoot.from_directory(tmp_path), tag)


# ---- requests through the ring --------------------------------------------------------------------

def test_a_batch_of_requests_is_served_by_one_doorbell_with_one_interrupt(rig):
    q = rig.live()
    batch = [encode(TVERSION, 8192, tag=NOTAG), encode(TATTACH, 0, NOFID, "root", "", 0, tag=1),
             encode(TWALK, 0, 1, "etc", "hostname", tag=2), encode(TLOPEN, 1, O_RDONLY, tag=3),
             encode(TREAD, 1, 0, 100, tag=4), encode(TCLUNK, 1, tag=5)]
    heads = [q.add([m], [256]) for m in batch]
    rig.drv.kick(0)
    used = q.used()
    assert [u.id for u in used] == heads
    replies = [decode_reply(u.data) for u in used]
    assert [r[0] for r in replies] == [TVERSION + 1, TATTACH + 1, TWALK + 1, TLOPEN + 1, TREAD + 1, TCLUNK + 1]
    assert [r[1] for r in replies] == [NOTAG, 1, 2, 3, 4, 5]
    assert replies[4][2] == b"utility-vm\n"
    assert (rig.t.stats.doorbells, rig.t.stats.chains, rig.t.stats.interrupts) == (1, 6, 1)
    assert rig.irq.level
    assert rig.dev.counters()["9p Tread"] == 1 and rig.dev.requests == 6


def test_messages_and_replies_may_be_scattered_over_many_descriptors(rig):
    q = rig.live()
    rig.mount(q)
    walk = encode(TWALK, 0, 1, "etc", "hostname")
    q.add([walk[:3], walk[3:9], walk[9:]], [5, 5, 200], indirect=True)
    rig.drv.kick(0)
    [used] = q.used()
    assert decode_reply(used.data)[2][1].type == QTFILE
    rig.call(q, encode(TLOPEN, 1, O_RDONLY))
    q.add([encode(TREAD, 1, 0, 100)], [4, 4, 4, 100])
    rig.drv.kick(0)
    [used] = q.used()
    assert decode_reply(used.data)[2] == b"utility-vm\n"


def test_a_read_is_cut_to_the_room_the_driver_gave(rig):
    q = rig.live()
    rig.mount(q)
    rig.call(q, encode(TWALK, 0, 1, "big"))
    rig.call(q, encode(TLOPEN, 1, O_RDONLY))
    rtype, _, data = rig.call(q, encode(TREAD, 1, 0, 8000), room=111)
    assert rtype == TREAD + 1 and data == (bytes(range(256)) * 256)[:100]
    assert not rig.needs_reset


def test_bytes_after_the_size_field_are_ignored(rig):
    q = rig.live()
    rig.mount(q)
    assert rig.call(q, encode(TGETATTR, 0) + b"junk")[0] == TGETATTR + 1


def test_a_size_field_past_msize_is_answered_emsgsize_from_the_header_alone(rig):
    q = rig.live()
    rig.mount(q)
    before = rig.dev.bytes_in
    msg = struct.pack("<IBH", 0xFFFFFFFF, TGETATTR, 7) + bytes(64)
    assert rig.call(q, msg) == (RLERROR, 7, errno.EMSGSIZE)
    assert rig.dev.bytes_in - before == 7


def test_a_chain_shorter_than_its_size_field_is_eproto(rig):
    q = rig.live()
    rig.mount(q)
    msg = encode(TGETATTR, 0, tag=3)
    assert rig.call(q, msg[:-2]) == (RLERROR, 3, errno.EPROTO)
    assert not rig.needs_reset


# ---- chains that break the rules ----------------------------------------------------------------------

def test_a_chain_without_a_whole_header_needs_reset(rig):
    q = rig.live()
    q.add([b"\x07\0\0"], [64])
    rig.drv.kick(0)
    assert rig.needs_reset and "header" in rig.t.last_error


def test_a_chain_without_room_for_a_reply_needs_reset(rig):
    q = rig.live()
    q.add([encode(TVERSION, 8192, tag=NOTAG)], [])
    rig.drv.kick(0)
    assert rig.needs_reset and "no room for a reply" in rig.t.last_error


def test_a_reply_larger_than_its_buffer_needs_reset_and_names_the_reply(rig):
    q = rig.live()
    rig.mount(q)
    q.add([encode(TGETATTR, 0)], [100])                      # Rgetattr is 160 bytes
    rig.drv.kick(0)
    assert rig.needs_reset
    assert "Rgetattr needs 160 bytes, the buffer has 100" in rig.t.last_error


def test_after_needs_reset_nothing_is_served_until_the_driver_resets(rig):
    q = rig.live()
    q.add([b"\0"], [64])
    rig.drv.kick(0)
    assert rig.needs_reset
    served = rig.dev.requests
    q.add([encode(TVERSION, 8192, tag=NOTAG)], [64])
    rig.drv.kick(0)
    assert rig.dev.requests == served and rig.t.stats.ignored_doorbells == 1
    q = rig.live()
    rig.mount(q)


def test_hostile_descriptors_put_the_device_in_needs_reset_without_touching_the_host(rig):
    q = rig.live()
    msg = rig.drv.alloc(64)
    rig.mem.write(msg, encode(TVERSION, 8192, tag=NOTAG))
    q.write_desc(0, msg, 19, VIRTQ_DESC_F_NEXT, 1)
    q.write_desc(1, 0xFFFF_0000, 64, VIRTQ_DESC_F_WRITE)      # outside guest RAM
    q.publish(0)
    rig.drv.kick(0)
    assert rig.needs_reset and "outside guest RAM" in rig.t.last_error
    q = rig.live()
    q.write_desc(0, msg, 19, VIRTQ_DESC_F_NEXT, 1)
    q.write_desc(1, msg, 19, VIRTQ_DESC_F_NEXT, 0)           # a loop
    q.publish(0)
    rig.drv.kick(0)
    assert rig.needs_reset and "loops" in rig.t.last_error
    assert rig.dev.requests == 0


def test_a_driver_reset_ends_the_9p_connection(rig):
    q = rig.live()
    rig.mount(q)
    rig.call(q, encode(TWALK, 0, 1, "big"))
    rig.call(q, encode(TLOPEN, 1, O_RDONLY))
    assert rig.dev.server.fids
    rig.drv.set_status(0)
    assert rig.dev.server.fids == {} and rig.dev.server._open == 0
    q = rig.live()
    assert rig.call(q, encode(TGETATTR, 0)) == (RLERROR, 1, errno.EPROTO)   # no Tversion yet
