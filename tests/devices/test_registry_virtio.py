"""hv's registry device driven through virtio rings: docs/registry.md's messages over a request queue."""
from __future__ import annotations

import errno
import struct

import pytest

from hv.container.registry import REG_BINARY, REG_SZ, LayeredRegistry
from hv.container.registry_calls import (CREATED_NEW_KEY, HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE,
                                         MAX_REQUEST, Op, RegistryCalls, decode_response,
                                         encode_request)
from hv.devices.base import RecordingIrq
from hv.devices.registry_virtio import (MIN_RESPONSE, QUEUE_SIZE, VIRTIO_ID_HV_REGISTRY,
                                        VIRTIO_REGISTRY_F_MESSAGES_V1, VirtioRegistry)
from hv.memory import HIGH_BASE, GuestMemory, MiB
from hv.virtio import TRANSPORT_FEATURES, VIRTIO_F_VERSION_1, Status, VirtioMmio
from hv.virtio import mmio as R
from hv.virtio.queue import VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from hv.virtio.testing import MockDriver, MockDriverError

BASE = 0xD5000


class Rig:
    def __init__(self, path):
        self.registry = LayeredRegistry([], path)
        self.mem = GuestMemory(4 * MiB)
        self.irq = RecordingIrq()
        self.dev = VirtioRegistry(self.registry)
        self.t = VirtioMmio(self.dev, self.mem, self.irq, BASE)
        self.drv = MockDriver(self.t, self.mem)

    def live(self):
        self.drv.init()
        return self.drv.queues[0]

    def call(self, q, request: bytes, room: int = 256):
        q.add([request], [room])
        self.drv.kick(0)
        [used] = q.used()
        return decode_response(used.data)

    @property
    def needs_reset(self) -> bool:
        return bool(self.drv.status & Status.DEVICE_NEEDS_RESET)


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path / "upper.db")
    yield r
    r.registry.close()
    r.mem.close()


def test_device_id_is_hvs_registry_with_one_request_queue(rig):
    assert rig.t.read(R.DeviceID, 4) == VIRTIO_ID_HV_REGISTRY == 0xB0
    rig.drv.write(R.QueueSel, 0)
    assert rig.drv.read(R.QueueNumMax) == QUEUE_SIZE
    rig.drv.write(R.QueueSel, 1)
    assert rig.drv.read(R.QueueNumMax) == 0


def test_offers_the_version_1_message_format_and_requires_it(rig):
    f = rig.drv.device_features()
    assert f >> VIRTIO_REGISTRY_F_MESSAGES_V1 & 1 and f & TRANSPORT_FEATURES == TRANSPORT_FEATURES
    with pytest.raises(MockDriverError):
        rig.drv.negotiate(1 << VIRTIO_F_VERSION_1)
    assert not rig.drv.status & Status.FEATURES_OK


def test_config_gives_the_request_and_response_bounds(rig):
    assert rig.drv.config_read(0, 4) == MAX_REQUEST
    assert rig.drv.config_read(4, 4) == MIN_RESPONSE


def test_a_batch_of_calls_is_served_by_one_doorbell_with_one_interrupt(rig):
    q = rig.live()
    batch = [encode_request(Op.CREATE_KEY, HKEY_LOCAL_MACHINE, "Software\\hv", tag=1),
             encode_request(Op.SET_VALUE, 1, "greeting", REG_SZ, "hello".encode(), tag=2),
             encode_request(Op.QUERY_VALUE, 1, "greeting", 64, tag=3),
             encode_request(Op.CLOSE_KEY, 1, tag=4)]
    for m in batch:
        q.add([m], [128])
    rig.drv.kick(0)
    responses = [decode_response(u.data) for u in q.used()]
    assert [(r.op, r.tag, r.result) for r in responses] == [
        (Op.CREATE_KEY, 1, 1), (Op.SET_VALUE, 2, 0), (Op.QUERY_VALUE, 3, 0), (Op.CLOSE_KEY, 4, 0)]
    assert responses[0].fields == (CREATED_NEW_KEY,)
    assert responses[2].fields == (REG_SZ, 5, b"hello")
    assert (rig.t.stats.doorbells, rig.t.stats.chains, rig.t.stats.interrupts) == (1, 4, 1)
    assert rig.dev.counters() == {"registry CLOSE_KEY": 1, "registry CREATE_KEY": 1,
                                  "registry QUERY_VALUE": 1, "registry SET_VALUE": 1,
                                  "registry errors": 0}


def test_responses_are_exactly_what_the_message_handler_gives(rig, tmp_path):
    direct = RegistryCalls(LayeredRegistry([], tmp_path / "direct.db"))
    q = rig.live()
    requests = [encode_request(Op.CREATE_KEY, HKEY_CURRENT_USER, "A\\B", tag=9),
                encode_request(Op.SET_VALUE, 1, "", REG_BINARY, b"\1\2\3", tag=8),
                encode_request(Op.ENUM_VALUE, 1, 0, tag=7),
                encode_request(Op.OPEN_KEY, HKEY_CURRENT_USER, "missing", tag=6),
                encode_request(Op.DELETE_KEY, 77, "", 0, tag=5),
                b"\x01\x02", struct.pack("<II", 0x10FF, 3), encode_request(Op.CLOSE_KEY, 1)[:-1]]
    for m in requests:
        q.add([m], [256])
    rig.drv.kick(0)
    got = [u.data for u in q.used()]
    assert got == [direct.handle_request(m) for m in requests]
    assert rig.dev.errors == 5 and rig.dev.calls["invalid"] == 2


def test_a_request_may_be_scattered_over_many_descriptors(rig):
    q = rig.live()
    m = encode_request(Op.OPEN_KEY, HKEY_LOCAL_MACHINE, "", tag=5)
    q.add([m[:1], m[1:10], m[10:]], [8, 8, 64], indirect=True)
    rig.drv.kick(0)
    [used] = q.used()
    assert decode_response(used.data).result == 1


def test_a_response_larger_than_its_buffer_becomes_emsgsize(rig):
    q = rig.live()
    rig.call(q, encode_request(Op.CREATE_KEY, HKEY_LOCAL_MACHINE, "K"))
    rig.call(q, encode_request(Op.SET_VALUE, 1, "a-long-value-name", REG_BINARY, b"x"))
    r = rig.call(q, encode_request(Op.ENUM_VALUE, 1, 0, tag=4), room=MIN_RESPONSE)
    assert (r.op, r.tag, r.result) == (Op.ENUM_VALUE, 4, -errno.EMSGSIZE)
    assert not rig.needs_reset


def test_a_chain_with_less_room_than_a_response_needs_reset(rig):
    q = rig.live()
    q.add([encode_request(Op.CREATE_KEY, HKEY_LOCAL_MACHINE, "K")], [MIN_RESPONSE - 1])
    rig.drv.kick(0)
    assert rig.needs_reset and "writable bytes" in rig.t.last_error
    assert not rig.registry.key_exists(("HKLM", "K"))        # refused before anything changed


def test_a_request_longer_than_the_bound_is_e2big_without_being_read(rig):
    q = rig.live()
    big = HIGH_BASE                                           # 256 KiB of RAM, named six times
    rig.mem.write(big, encode_request(Op.SET_VALUE, 1, "v", REG_BINARY, b"", tag=33))
    out = rig.drv.alloc(64)
    for i in range(6):
        q.write_desc(i, big, 256 * 1024, VIRTQ_DESC_F_NEXT, i + 1)
    q.write_desc(6, out, 64, VIRTQ_DESC_F_WRITE)
    q.publish(0)
    rig.drv.kick(0)
    elem = q.used_ring + 4
    assert rig.mem.u32(elem + 4) == 12
    r = decode_response(rig.mem.read(out, 12))
    assert (r.op, r.tag, r.result) == (Op.SET_VALUE, 33, -errno.E2BIG)
    assert rig.dev.bytes_in == 0 and not rig.needs_reset


def test_a_driver_reset_closes_every_handle(rig):
    q = rig.live()
    assert rig.call(q, encode_request(Op.OPEN_KEY, HKEY_LOCAL_MACHINE, "")).result == 1
    assert rig.dev.session.open_handles() == 1
    q = rig.live()
    assert rig.dev.session.open_handles() == 0
    assert rig.call(q, encode_request(Op.CLOSE_KEY, 1)).result == -errno.EBADF


def test_hostile_descriptors_put_the_device_in_needs_reset(rig):
    q = rig.live()
    req = rig.drv.alloc(64)
    rig.mem.write(req, encode_request(Op.OPEN_KEY, HKEY_LOCAL_MACHINE, ""))
    q.write_desc(0, req, 18, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1)
    q.write_desc(1, req, 18, 0)                               # readable after writable
    q.publish(0)
    rig.drv.kick(0)
    assert rig.needs_reset and "readable descriptor after a writable" in rig.t.last_error
    assert rig.dev.session.open_handles() == 0
