"""virtio-mmio transport and split virtqueues, driven by the mock driver."""
from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv.devices.base import RecordingIrq
from hv.memory import GuestMemory, MiB
from hv.virtio import (TRANSPORT_FEATURES, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC,
                       VIRTIO_F_VERSION_1, Status, VirtioDevice, VirtioMmio, VirtqueueError)
from hv.virtio import mmio as R
from hv.virtio.queue import (VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
                             VIRTQ_USED_F_NO_NOTIFY, Chain, VirtioStats, Virtqueue, check_ram,
                             ram_ranges, vring_need_event)
from hv.virtio.testing import MockDriver, MockDriverError

ALL = TRANSPORT_FEATURES
NO_EVENT_IDX = ALL & ~(1 << VIRTIO_F_EVENT_IDX)
BASE = 0xD0000000


class EchoDevice(VirtioDevice):
    """Copies each chain's readable bytes, upper-cased, into its writable part."""

    name = "echo"
    device_id = 0x7E
    features = 1 << 3            # a device-specific bit
    num_queues = 2
    queue_max = 16

    def __init__(self) -> None:
        super().__init__()
        self.config = bytearray(b"\x11\x22\x33\x44\x55\x66\x77\x88")
        self.activations = 0
        self.resets = 0
        self.refuse_features = False
        self.hold = False        # leave chains on the ring (a busy device)

    def ack_features(self, features: int) -> bool:
        return not self.refuse_features

    def activate(self, queues) -> None:
        super().activate(queues)
        self.activations += 1

    def notify(self, queue_index: int) -> None:
        if self.hold:
            return
        q = self.queues[queue_index]
        if queue_index == 1:     # queue 1 is a transmit-style queue: readable buffers only
            self.drain(q, lambda c: (c.require_read_only(), 0)[1])
        else:
            self.drain(q, lambda c: c.write(c.read_all(limit=1 << 16).upper()))

    def reset(self) -> None:
        super().reset()
        self.resets += 1


class GuardedMemory(GuestMemory):
    """Guest memory that records every host write outside guest RAM."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.bad_writes: list[tuple[int, int]] = []
        self.writes = 0

    def write(self, addr: int, data: bytes) -> None:
        self.writes += 1
        if not any(lo <= addr and addr + len(data) <= hi for lo, hi in ram_ranges(self)):
            self.bad_writes.append((addr, len(data)))
        super().write(addr, data)


@pytest.fixture
def rig():
    mem = GuardedMemory(2 * MiB)
    irq = RecordingIrq()
    dev = EchoDevice()
    t = VirtioMmio(dev, mem, irq, BASE)
    drv = MockDriver(t, mem)
    yield t, drv, dev, irq, mem
    assert mem.bad_writes == []
    mem.close()


def live(rig, features=None, **kw):
    t, drv, dev, irq, mem = rig
    drv.init(features, **kw)
    return drv.queues[0]


def assert_needs_reset(t, irq, word):
    assert t.status & Status.DEVICE_NEEDS_RESET
    assert word in t.last_error
    assert t.interrupt_status & R.VIRTIO_MMIO_INT_CONFIG
    assert irq.level


# ---- identification ------------------------------------------------------------

def test_window_is_0x200_bytes_at_base(rig):
    assert rig[0].mmio == ((BASE, 0x200),)


def test_magic_version_and_ids_read_at_spec_offsets(rig):
    t = rig[0]
    assert t.read(0x000, 4) == 0x74726976
    assert t.read(0x004, 4) == 2
    assert t.read(0x008, 4) == 0x7E
    assert t.read(0x00C, 4) == R.VENDOR_ID


def test_device_features_offer_version_1_event_idx_indirect_and_device_bits(rig):
    drv = rig[1]
    f = drv.device_features()
    for bit in (VIRTIO_F_VERSION_1, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, 3):
        assert f >> bit & 1


def test_non_32_bit_register_accesses_read_zero_and_write_nothing(rig):
    t = rig[0]
    assert t.read(0x000, 2) == 0
    assert t.read(0x000, 1) == 0
    assert t.read(0x002, 4) == 0
    t.write(R.StatusReg, 1, Status.ACKNOWLEDGE)
    t.write(R.StatusReg, 2, Status.ACKNOWLEDGE)
    assert t.status == 0


def test_shared_memory_regions_are_absent(rig):
    t = rig[0]
    assert t.read(R.SHMLenLow, 4) == 0xFFFFFFFF and t.read(R.SHMLenHigh, 4) == 0xFFFFFFFF


# ---- initialisation and status ----------------------------------------------------

def test_init_sequence_reaches_driver_ok_and_activates_device(rig):
    t, drv, dev, irq, mem = rig
    f = drv.init()
    assert t.status == Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK
    assert dev.activations == 1
    assert dev.driver_features == f == t.driver_features
    assert all(q.ready for q in dev.queues) and len(dev.queues) == 2


def test_negotiated_features_set_event_idx_and_indirect_on_queues(rig):
    t = rig[0]
    live(rig, NO_EVENT_IDX)
    assert not t.queues[0].event_idx and t.queues[0].indirect


def test_features_ok_is_refused_without_version_1(rig):
    t, drv = rig[0], rig[1]
    with pytest.raises(MockDriverError):
        drv.negotiate(ALL & ~(1 << VIRTIO_F_VERSION_1))
    assert not t.status & Status.FEATURES_OK
    assert "VERSION_1" in t.last_rejected


def test_features_ok_is_refused_for_a_feature_not_offered(rig):
    t, drv = rig[0], rig[1]
    with pytest.raises(MockDriverError):
        drv.negotiate(ALL | 1 << 40)
    assert not t.status & Status.FEATURES_OK


def test_device_may_refuse_a_feature_combination(rig):
    t, drv, dev = rig[0], rig[1], rig[2]
    dev.refuse_features = True
    with pytest.raises(MockDriverError):
        drv.negotiate()
    assert not t.status & Status.FEATURES_OK


def test_driver_features_read_back_what_was_written(rig):
    t, drv = rig[0], rig[1]
    drv.set_status(Status.ACKNOWLEDGE)
    drv.add_status(Status.DRIVER)
    drv.write_features(ALL)
    drv.write(R.DriverFeaturesSel, 1)
    assert drv.read(R.DriverFeatures) == ALL >> 32


def test_driver_features_written_after_features_ok_are_ignored(rig):
    t, drv = rig[0], rig[1]
    drv.negotiate(NO_EVENT_IDX)
    drv.write(R.DriverFeaturesSel, 0)
    drv.write(R.DriverFeatures, 0xFFFFFFFF)
    assert t.driver_features == NO_EVENT_IDX


def test_status_skipping_acknowledge_is_ignored(rig):
    t, drv = rig[0], rig[1]
    drv.set_status(Status.ACKNOWLEDGE | Status.DRIVER)
    assert t.status == 0
    assert "not allowed" in t.last_rejected


def test_driver_ok_before_features_ok_is_ignored(rig):
    t, drv, dev = rig[0], rig[1], rig[2]
    drv.set_status(Status.ACKNOWLEDGE)
    drv.add_status(Status.DRIVER)
    drv.add_status(Status.DRIVER_OK)
    assert t.status == Status.ACKNOWLEDGE | Status.DRIVER
    assert dev.activations == 0


def test_clearing_a_status_bit_without_reset_is_ignored(rig):
    t, drv = rig[0], rig[1]
    drv.init()
    drv.set_status(Status.ACKNOWLEDGE | Status.DRIVER)
    assert t.status & Status.DRIVER_OK


def test_failed_is_accepted_any_time_and_stops_doorbells(rig):
    t, drv, dev = rig[0], rig[1], rig[2]
    q = live(rig)
    drv.add_status(Status.FAILED)
    assert t.status & Status.FAILED
    q.add([b"x"], [4])
    drv.kick(0)
    assert q.used() == [] and t.stats.doorbells == 0 and t.stats.ignored_doorbells == 1


def test_after_needs_reset_only_reset_is_accepted(rig):
    t, drv = rig[0], rig[1]
    t.fail("test")
    drv.set_status(Status.ACKNOWLEDGE)
    assert t.status == Status.DEVICE_NEEDS_RESET
    drv.set_status(0)
    assert t.status == 0


# ---- queue setup --------------------------------------------------------------------

def test_queue_num_max_is_zero_for_a_queue_that_does_not_exist(rig):
    t, drv = rig[0], rig[1]
    drv.write(R.QueueSel, 0)
    assert drv.read(R.QueueNumMax) == 16
    drv.write(R.QueueSel, 2)
    assert drv.read(R.QueueNumMax) == 0
    assert drv.read(R.QueueReady) == 0


def test_queue_setup_before_features_ok_is_ignored(rig):
    t, drv = rig[0], rig[1]
    drv.set_status(Status.ACKNOWLEDGE)
    drv.add_status(Status.DRIVER)
    drv.write(R.QueueSel, 0)
    drv.write(R.QueueNum, 8)
    drv.write(R.QueueReady, 1)
    assert t.queues[0].num == 16 and not t.queues[0].ready


def test_queue_setup_after_driver_ok_is_ignored(rig):
    t, drv = rig[0], rig[1]
    q = live(rig)
    drv.write(R.QueueSel, 0)
    drv.write(R.QueueDescLow, 0x5000)
    drv.write(R.QueueNum, 4)
    assert t.queues[0].desc == q.desc and t.queues[0].num == 16


def test_queue_registers_read_back_the_64_bit_addresses(rig):
    t, drv = rig[0], rig[1]
    q = live(rig)
    drv.write(R.QueueSel, 0)
    assert drv.read(R.QueueDriverLow) == q.avail and drv.read(R.QueueDriverHigh) == 0
    assert drv.read(R.QueueReady) == 1


def test_queue_size_not_a_power_of_2_needs_reset(rig):
    t, drv, dev, irq, mem = rig
    drv.negotiate()
    with pytest.raises(MockDriverError):
        drv.init(queue_size=6)
    assert t.status & Status.DEVICE_NEEDS_RESET and "power of 2" in t.last_error
    assert dev.activations == 0


def test_queue_size_above_queue_num_max_needs_reset(rig):
    t, drv = rig[0], rig[1]
    with pytest.raises(MockDriverError):
        drv.init(queue_size=32)
    assert t.status & Status.DEVICE_NEEDS_RESET and "not in 1..16" in t.last_error


def test_ring_outside_guest_ram_needs_reset(rig):
    t, drv = rig[0], rig[1]
    drv.negotiate()
    drv.write(R.QueueSel, 0)
    drv.write(R.QueueDescLow, 0)
    drv.write(R.QueueDescHigh, 1)          # 4 GiB up
    drv.write(R.QueueReady, 1)
    assert t.status & Status.DEVICE_NEEDS_RESET and "outside guest RAM" in t.last_error


def test_ring_in_the_rom_hole_needs_reset(rig):
    t, drv = rig[0], rig[1]
    drv.negotiate()
    drv.write(R.QueueSel, 0)
    drv.write(R.QueueDeviceLow, 0xF0000)
    drv.write(R.QueueReady, 1)
    assert t.status & Status.DEVICE_NEEDS_RESET and "used ring" in t.last_error


def test_misaligned_descriptor_table_needs_reset(rig):
    t, drv = rig[0], rig[1]
    drv.negotiate()
    drv.write(R.QueueSel, 0)
    drv.write(R.QueueDescLow, 0x20008)
    drv.write(R.QueueReady, 1)
    assert "not 16-aligned" in t.last_error


def test_queues_in_high_memory_work(rig):
    t, drv, dev, irq, mem = rig
    drv._next, drv._end = 0x180000, 0x200000
    q = live(rig)
    assert q.desc >= 0x100000
    q.add([b"hi"], [8])
    drv.kick(0)
    assert q.used()[0].data == b"HI"


# ---- the data path ------------------------------------------------------------------

def test_chain_round_trip_through_echo_device(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    head = q.add([b"hello ", b"world"], [4, 16])
    drv.kick(0)
    [u] = q.used()
    assert (u.id, u.len, u.data) == (head, 11, b"HELLO WORLD")


def test_used_buffer_raises_interrupt_and_ack_lowers_line(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    q.add([b"a"], [1])
    drv.kick(0)
    assert irq.level and drv.read(R.InterruptStatus) == R.VIRTIO_MMIO_INT_VRING
    assert drv.ack_interrupt() == R.VIRTIO_MMIO_INT_VRING
    assert not irq.level and drv.read(R.InterruptStatus) == 0


def test_each_notification_makes_a_new_edge_while_line_is_high(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, NO_EVENT_IDX)
    for _ in range(3):
        q.add([b"a"], [1])
        drv.kick(0)
    assert irq.edges == 3 and irq.level


def test_stats_count_doorbells_chains_and_interrupts(rig):
    t, drv = rig[0], rig[1]
    q = live(rig, NO_EVENT_IDX)
    for _ in range(3):
        q.add([b"a"], [1], publish=True)
    drv.kick(0)
    drv.kick(0)
    assert (t.stats.doorbells, t.stats.chains, t.stats.interrupts) == (2, 3, 1)


def test_multiple_chains_in_one_doorbell_are_all_processed(rig):
    t, drv = rig[0], rig[1]
    q = live(rig)
    heads = [q.add([bytes([65 + i])], [1]) for i in range(5)]
    drv.kick(0)
    assert [(u.id, u.data) for u in q.used()] == [(h, bytes([97 + i]).upper()) for i, h in enumerate(heads)]


def test_writable_data_is_truncated_to_the_buffers_given(rig):
    t, drv = rig[0], rig[1]
    q = live(rig)
    q.add([b"abcdef"], [2, 1])
    drv.kick(0)
    [u] = q.used()
    assert (u.len, u.data) == (3, b"ABC")


def test_ring_wraps_past_queue_size(rig):
    t, drv = rig[0], rig[1]
    q = live(rig, queue_size=4)
    for i in range(10):
        q.add([b"x%d" % i], [2])
        drv.kick(0)
        assert q.used()[0].data == b"X%d" % i
    assert q.used_idx == 10


def test_indirect_descriptors_round_trip(rig):
    t, drv = rig[0], rig[1]
    q = live(rig)
    head = q.add([b"in", b"dir"], [3, 3], indirect=True)
    drv.kick(0)
    [u] = q.used()
    assert (u.id, u.data) == (head, b"INDIR")
    assert len(q.free) == q.size   # one ring descriptor for the whole request


def test_direct_descriptors_followed_by_an_indirect_table_are_accepted(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    table = drv.alloc(32)
    a, b = drv.alloc(4), drv.alloc(4)
    mem.write(a, b"abcd")
    q.write_desc(0, table, 16, VIRTQ_DESC_F_INDIRECT, table=None)
    q.write_desc(0, b, 4, VIRTQ_DESC_F_WRITE, table=table)
    q.write_desc(1, a, 4, VIRTQ_DESC_F_NEXT, 2)
    q.write_desc(2, table, 16, VIRTQ_DESC_F_INDIRECT)
    q.publish(1)
    drv.kick(0)
    assert mem.read(b, 4) == b"ABCD" and not t.status & Status.DEVICE_NEEDS_RESET


def test_indirect_descriptor_without_the_feature_needs_reset(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, ALL & ~(1 << VIRTIO_F_INDIRECT_DESC))
    q.add([b"x"], [1], indirect=True)
    drv.kick(0)
    assert_needs_reset(t, irq, "VIRTIO_F_INDIRECT_DESC")


# ---- notification suppression -----------------------------------------------------

def test_vring_need_event_is_true_only_when_event_is_crossed():
    assert vring_need_event(0, 1, 0)
    assert not vring_need_event(5, 3, 0)
    assert vring_need_event(5, 6, 3)
    assert vring_need_event(0xFFFF, 1, 0xFFFE)      # wraps
    assert not vring_need_event(2, 2, 2)


def test_event_idx_suppresses_interrupts_until_used_event_is_crossed(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    q.set_used_event(2)                # interrupt me when used idx passes 2
    for expect_irq in (False, False, True):
        q.add([b"a"], [1])
        drv.kick(0)
        assert bool(t.interrupt_status) is expect_irq
    assert irq.edges == 1 and t.stats.suppressed == 2


def test_event_idx_device_publishes_avail_event_after_draining(rig):
    t, drv = rig[0], rig[1]
    q = live(rig)
    for _ in range(3):
        q.add([b"a"], [1])
    drv.kick(0)
    assert q.avail_event == 3


def test_busy_device_leaves_avail_event_behind_to_suppress_doorbells(rig):
    t, drv, dev = rig[0], rig[1], rig[2]
    q = live(rig)
    q.add([b"a"], [1])
    drv.kick(0)
    assert q.avail_event == 1
    vq = t.queues[0]
    q.add([b"b"], [1])
    assert vq.pop() is not None        # device busy: popped, avail_event not moved
    q.add([b"c"], [1])                 # driver: avail 2 -> 3 does not cross event 1
    assert not vring_need_event(q.avail_event, 3, 2)
    assert vq.enable_notification()    # done: chains arrived meanwhile, keep going
    assert q.avail_event == 2


def test_no_interrupt_flag_suppresses_interrupts_without_event_idx(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, NO_EVENT_IDX)
    q.set_no_interrupt(True)
    q.add([b"a"], [1])
    drv.kick(0)
    assert q.used() and t.interrupt_status == 0 and not irq.level
    q.set_no_interrupt(False)
    q.add([b"a"], [1])
    drv.kick(0)
    assert irq.level


def test_the_no_interrupt_flag_is_bit_0_of_the_available_ring_flags(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, NO_EVENT_IDX)
    mem.put16(q.avail, 0x0001)                 # §2.7.7: VIRTQ_AVAIL_F_NO_INTERRUPT = 1
    q.add([b"a"], [1])
    drv.kick(0)
    assert q.used() and not irq.level
    mem.put16(q.avail, 0xFFFE)                 # every other bit: reserved, no suppression
    q.add([b"a"], [1])
    drv.kick(0)
    assert irq.level


def test_no_interrupt_flag_is_ignored_with_event_idx(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    q.set_no_interrupt(True)
    q.add([b"a"], [1])
    drv.kick(0)
    assert irq.level


def test_no_notify_flag_is_clear_after_the_device_drains(rig):
    t, drv = rig[0], rig[1]
    q = live(rig, NO_EVENT_IDX)
    vq = t.queues[0]
    vq.disable_notification()
    assert q.used_flags == VIRTQ_USED_F_NO_NOTIFY == 1      # §2.7.10: bit 0 of the used ring's flags
    q.add([b"a"], [1])
    drv.kick(0)
    assert q.used_flags == 0


# ---- malformed rings: NEEDS_RESET, a reason, nothing touched outside RAM -----------

def _raw_chain(q, *descs, head=0):
    for i, d in enumerate(descs):
        q.write_desc(i, *d)
    q.publish(head)


MALFORMED = {
    "buffer outside RAM": (lambda q, m: _raw_chain(q, (0x7FFFFFF0, 64, VIRTQ_DESC_F_WRITE)),
                           "outside guest RAM"),
    "buffer in ROM": (lambda q, m: _raw_chain(q, (0xF0000, 16, VIRTQ_DESC_F_WRITE)),
                      "outside guest RAM"),
    "buffer straddling RAM end": (lambda q, m: _raw_chain(q, (0x9FFF0, 0x20, VIRTQ_DESC_F_WRITE)),
                                  "outside guest RAM"),
    "head index >= num": (lambda q, m: q.publish(q.size), "descriptor index"),
    "next index >= num": (lambda q, m: _raw_chain(q, (0x40000, 4, VIRTQ_DESC_F_NEXT, 99)),
                          "descriptor index 99"),
    "loop": (lambda q, m: _raw_chain(q, (0x40000, 4, VIRTQ_DESC_F_NEXT, 1),
                                     (0x40000, 4, VIRTQ_DESC_F_NEXT, 0)), "loops"),
    "self loop": (lambda q, m: _raw_chain(q, (0x40000, 4, VIRTQ_DESC_F_NEXT, 0)), "loops"),
    "indirect length not multiple of 16": (
        lambda q, m: _raw_chain(q, (0x40000, 24, VIRTQ_DESC_F_INDIRECT)), "multiple of 16"),
    "indirect length zero": (lambda q, m: _raw_chain(q, (0x40000, 0, VIRTQ_DESC_F_INDIRECT)),
                             "multiple of 16"),
    "nested indirect": (lambda q, m: (q.write_desc(0, 0x40000, 16, VIRTQ_DESC_F_INDIRECT, table=0x40000),
                                      _raw_chain(q, (0x40000, 16, VIRTQ_DESC_F_INDIRECT))), "nested"),
    "indirect with next": (lambda q, m: _raw_chain(q, (0x40000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1)),
                           "NEXT"),
    "indirect table outside RAM": (lambda q, m: _raw_chain(q, (0x9FFF0, 32, VIRTQ_DESC_F_INDIRECT)),
                                   "indirect table"),
    "indirect chain loops": (lambda q, m: (q.write_desc(0, 0x41000, 4, VIRTQ_DESC_F_NEXT, 1, table=0x40000),
                                           q.write_desc(1, 0x41000, 4, VIRTQ_DESC_F_NEXT, 0, table=0x40000),
                                           _raw_chain(q, (0x40000, 32, VIRTQ_DESC_F_INDIRECT))), "loops"),
    "indirect next beyond table": (lambda q, m: (q.write_desc(0, 0x41000, 4, VIRTQ_DESC_F_NEXT, 5, table=0x40000),
                                                 _raw_chain(q, (0x40000, 16, VIRTQ_DESC_F_INDIRECT))),
                                   "table size 1"),
    "avail idx runs ahead": (lambda q, m: q.set_avail_idx(q.size + 1), "runs"),
    "readable after writable": (lambda q, m: _raw_chain(q, (0x40000, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1),
                                                        (0x40000, 4, 0)), "after a writable"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_ring_needs_reset_with_a_reason(rig, case):
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    build, word = MALFORMED[case]
    build(q, mem)
    drv.ack_interrupt()
    drv.kick(0)
    assert_needs_reset(t, irq, word)
    assert q.used() == [] and t.stats.errors == 1
    drv.kick(0)                                  # the device processes nothing more
    assert t.stats.ignored_doorbells == 1


def test_writable_buffer_on_a_read_only_queue_needs_reset(rig):
    t, drv, dev, irq, mem = rig
    live(rig)
    q1 = drv.queues[1]
    q1.add([b"a"], [4])
    drv.kick(1)
    assert_needs_reset(t, irq, "read-only queue")


def test_chain_shorter_than_a_request_header_is_refused(rig):
    t, drv, dev, irq, mem = rig
    live(rig)
    vq = t.queues[0]
    drv.queues[0].add([b"ab"], [4])
    chain = vq.pop()
    with pytest.raises(VirtqueueError):
        chain.read(0, 16)
    with pytest.raises(VirtqueueError):
        chain.require(readable=16)


def test_read_all_takes_a_chain_up_to_its_limit_and_refuses_a_longer_one_uncopied(rig):
    t, drv, dev, irq, mem = rig
    live(rig)
    vq = t.queues[0]
    drv.queues[0].add([b"abcd", b"efgh"], [4])
    chain = vq.pop()
    assert chain.read_all(limit=8) == b"abcdefgh"
    with pytest.raises(VirtqueueError) as e:
        chain.read_all(limit=7)
    assert "8 readable bytes" in str(e.value) and "7" in str(e.value)


def test_needs_reset_is_cleared_by_reset_and_the_device_works_again(rig):
    t, drv = rig[0], rig[1]
    q = live(rig)
    q.publish(99)
    drv.kick(0)
    assert t.status & Status.DEVICE_NEEDS_RESET
    q = live(rig)
    q.add([b"ok"], [2])
    drv.kick(0)
    assert q.used()[0].data == b"OK"


# ---- reset and config --------------------------------------------------------------

def test_reset_clears_status_features_queues_and_interrupts(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    q.add([b"a"], [1])
    drv.kick(0)
    drv.write(R.QueueSel, 1)
    dev.resets = 0
    drv.set_status(0)
    assert (t.status, t.interrupt_status, t.driver_features, t.queue_sel) == (0, 0, 0, 0)
    assert not irq.level and dev.resets == 1 and dev.queues == []
    assert all(not vq.ready and vq.num == 16 and vq.desc == 0 and vq.next_avail == 0
               for vq in t.queues)
    drv.write(R.QueueSel, 0)
    assert drv.read(R.QueueReady) == 0


def test_config_space_accepts_1_2_and_4_byte_reads(rig):
    drv = rig[1]
    assert drv.config_read(0, 1) == 0x11
    assert drv.config_read(1, 2) == 0x3322
    assert drv.config_read(4, 4) == 0x88776655
    assert rig[0].read(R.Config, 8) == 0
    assert drv.config_read(0x40, 4) == 0        # beyond the device's config


def test_config_change_bumps_generation_and_interrupts_a_live_driver(rig):
    t, drv, dev, irq, mem = rig
    gen = drv.read(R.ConfigGeneration)
    t.config_changed()                           # before DRIVER_OK: no interrupt
    assert drv.read(R.ConfigGeneration) == gen + 1 and not irq.level
    live(rig)
    t.config_changed()
    assert drv.read(R.ConfigGeneration) == gen + 2
    assert drv.read(R.InterruptStatus) == R.VIRTIO_MMIO_INT_CONFIG and irq.level


def test_interrupt_ack_clears_only_the_acknowledged_bits(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    q.add([b"a"], [1])
    drv.kick(0)
    t.config_changed()
    drv.write(R.InterruptACK, R.VIRTIO_MMIO_INT_VRING)
    assert drv.read(R.InterruptStatus) == R.VIRTIO_MMIO_INT_CONFIG and irq.level


def test_machine_reset_resets_device(rig):
    t, drv, dev = rig[0], rig[1], rig[2]
    live(rig)
    dev.resets = 0
    t.reset()
    assert t.status == 0 and dev.resets == 1


# ---- hostile guests (hypothesis) -------------------------------------------------------

REG_OFFSETS = [0x000, 0x004, 0x008, 0x00C, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034, 0x038,
               0x044, 0x050, 0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0A0, 0x0A4,
               0x0AC, 0x0B0, 0x0C0, 0x0FC]

access = st.tuples(
    st.one_of(st.sampled_from(REG_OFFSETS), st.integers(0, 0x1FF)),
    st.sampled_from([1, 2, 4, 8]),
    st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 2, 3, 4, 7, 8, 11, 15, 0x40, 0x80,
                                                           0x10000, 0x20000, 0xF0000])),
    st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(access, max_size=60), st.booleans())
def test_random_register_accesses_never_raise_or_write_outside_ram(ops, start_live):
    mem = GuardedMemory(1 * MiB)
    t = VirtioMmio(EchoDevice(), mem, RecordingIrq(), BASE)
    try:
        if start_live:                           # so doorbells and queue writes meet a live device
            drv = MockDriver(t, mem)
            drv.init(queue_size=4)
            drv.queues[0].add([b"abc"], [4])
        for off, size, value, is_write in ops:
            if is_write:
                t.write(off, size, value & ((1 << (8 * size)) - 1))
            else:
                assert 0 <= t.read(off, size) < 1 << (8 * size)
        assert mem.bad_writes == []
    finally:
        mem.close()


def _addr():
    # Mostly plausible buffers in RAM, sometimes at RAM/ROM edges, sometimes anywhere in 64 bits.
    return st.one_of(st.integers(0x20000, 0x30000), st.integers(0x20000, 0x30000),
                     st.integers(0x9FF00, 0xA0100), st.integers(0xEFF00, 0x100100),
                     st.integers(0, (1 << 64) - 1))


descriptor = st.tuples(
    _addr(),
    st.one_of(st.integers(0, 64), st.integers(0, 0xFFFFFFFF)),
    st.one_of(st.sampled_from([0, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_NEXT,
                               VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT]),
              st.integers(0, 0xFFFF)),
    st.one_of(st.integers(0, 7), st.integers(0, 0xFFFF)))
head = st.one_of(st.integers(0, 7), st.integers(0, 0xFFFF))


@settings(max_examples=300, deadline=None)
@given(descs=st.lists(descriptor, min_size=8, max_size=8),
       ring=st.lists(head, min_size=8, max_size=8),
       avail_idx=st.one_of(st.integers(0, 9), st.integers(1, 8), st.integers(0, 0xFFFF)),
       avail_flags=st.integers(0, 0xFFFF), used_event=st.integers(0, 0xFFFF),
       indirect=st.lists(descriptor, max_size=4), event_idx=st.booleans(), kicks=st.integers(1, 3))
def test_random_ring_contents_never_raise_or_write_outside_ram(descs, ring, avail_idx, avail_flags,
                                                               used_event, indirect, event_idx, kicks):
    mem = GuardedMemory(1 * MiB)
    irq = RecordingIrq()
    t = VirtioMmio(EchoDevice(), mem, irq, BASE)
    try:
        drv = MockDriver(t, mem)
        drv.init(None if event_idx else NO_EVENT_IDX, queue_size=8)
        q = drv.queues[0]
        table = 0x20000                          # an indirect table the descriptors may point at
        for i, d in enumerate(indirect):
            q.write_desc(i, *d, table=table)
        for i, d in enumerate(descs):
            q.write_desc(i, *d)
        for i, head in enumerate(ring):
            mem.put16(q.avail + 4 + 2 * i, head)
        mem.put16(q.avail, avail_flags)
        q.set_used_event(used_event)
        q.set_avail_idx(avail_idx)
        for _ in range(kicks):
            drv.kick(0)
        drv.ack_interrupt()
        assert mem.bad_writes == []
        # Either the ring was acceptable or the device stopped with a reason.
        assert (not t.status & Status.DEVICE_NEEDS_RESET) or t.last_error
        assert 0 <= q.used_idx <= 8
    finally:
        mem.close()


# ---- a chain's buffers, as one byte string (the device's view) ---------------------------------

def scattered(mem, sizes, at=0x1000, gap=7):
    """Buffers of ``sizes`` bytes with gaps between them, and memory filled with a pattern."""
    mem.write(0, bytes(i * 13 & 0xFF for i in range(0x4000)))
    bufs = []
    for n in sizes:
        bufs.append((at, n))
        at += n + gap
    return bufs


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=5), offset=st.integers(-2, 45),
       length=st.integers(-2, 45))
def test_chain_read_gives_the_readable_part_as_if_it_were_one_buffer(sizes, offset, length):
    mem = GuestMemory(MiB)
    bufs = scattered(mem, sizes)
    flat = b"".join(mem.read(a, n) for a, n in bufs)
    chain = Chain(mem, 0, bufs, [(0x3000, 16)])
    assert (chain.readable_len, chain.writable_len) == (len(flat), 16)
    if offset < 0 or length < 0 or offset + length > len(flat):
        with pytest.raises(VirtqueueError, match="^chain 0: read "):
            chain.read(offset, length)
    else:
        assert chain.read(offset, length) == flat[offset:offset + length]


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=5), data=st.binary(max_size=45),
       offset=st.integers(-2, 45), again=st.binary(max_size=9), offset2=st.integers(0, 45))
def test_chain_write_scatters_into_the_writable_part_as_if_it_were_one_buffer(sizes, data, offset,
                                                                               again, offset2):
    mem = GuestMemory(MiB)
    bufs = scattered(mem, sizes)
    before = mem.read(0, 0x4000)
    chain = Chain(mem, 5, [(0x3000, 16)], bufs)
    flat = b"".join(mem.read(a, n) for a, n in bufs)
    if offset < 0:
        with pytest.raises(VirtqueueError, match="^chain 5: "):
            chain.write(data, offset)
        return
    done = chain.write(data, offset)
    assert done == max(0, min(len(data), len(flat) - offset))
    want = (flat[:offset] + data[:done] + flat[offset + done:])[:len(flat)]
    assert b"".join(mem.read(a, n) for a, n in bufs) == want
    assert chain.written == (offset + done if done else 0)       # the high-water mark
    outside = bytearray(mem.read(0, 0x4000))
    for a, n in bufs:                                             # nothing else changed
        outside[a:a + n] = before[a:a + n]
    assert bytes(outside) == before
    first = chain.written
    done2 = chain.write(again, offset2)
    assert chain.written == max(first, offset2 + done2 if done2 else 0)


def test_a_write_starting_inside_a_buffer_continues_in_the_next_and_stops_at_each_end():
    mem = GuestMemory(MiB)
    mem.write(0x1000, b"\xee" * 0x20)
    chain = Chain(mem, 1, [], [(0x1000, 8), (0x1010, 8)])
    assert chain.write(bytes(range(1, 11)), 4) == 10
    assert mem.read(0x1000, 0x20) == (b"\xee" * 4 + bytes(range(1, 5)) + b"\xee" * 8 +
                                      bytes(range(5, 11)) + b"\xee" * 10)
    assert chain.written == 14
    assert chain.write(b"\x55\x66", 10) == 2                  # wholly in the second buffer
    assert mem.read(0x1010, 8) == bytes((5, 6, 0x55, 0x66, 9, 10)) + b"\xee\xee"


def test_require_accepts_exactly_enough_bytes_and_refuses_one_fewer():
    mem = GuestMemory(MiB)
    chain = Chain(mem, 2, [(0x1000, 6), (0x2000, 4)], [(0x3000, 3)])
    chain.require()
    chain.require(readable=10, writable=3)
    for readable, writable in ((11, 0), (0, 4), (11, 4)):
        with pytest.raises(VirtqueueError, match="^chain 2: needs"):
            chain.require(readable=readable, writable=writable)
    Chain(mem, 3, [], []).require()                              # a request format of nothing
    assert Chain(mem, 3, [], []).indirect is False                # unless the walk says so


def test_chain_read_refuses_a_negative_offset_or_length_and_stops_at_length_across_buffers():
    mem = GuestMemory(MiB)
    bufs = scattered(mem, [4, 4, 4])
    flat = b"".join(mem.read(a, n) for a, n in bufs)
    chain = Chain(mem, 0, bufs, [])
    for offset, length in ((-1, 1), (-2, 3), (0, -1), (3, -1)):
        with pytest.raises(VirtqueueError):
            chain.read(offset, length)
    assert chain.read(2, 4) == flat[2:6] and chain.read(3, 6) == flat[3:9]


def test_guest_ram_is_conventional_memory_and_extended_memory_only():
    assert ram_ranges(GuestMemory(MiB)) == ((0, 0xA0000),)
    assert ram_ranges(GuestMemory(MiB // 2)) == ((0, MiB // 2),)
    assert ram_ranges(GuestMemory(2 * MiB)) == ((0, 0xA0000), (MiB, 2 * MiB))


def test_check_ram_accepts_a_buffer_ending_at_the_end_of_a_run_and_nothing_past_it():
    mem = GuestMemory(2 * MiB)
    check_ram(mem, 0, 0)
    check_ram(mem, 0x9F000, 0x1000)                              # ends at 0xA0000
    check_ram(mem, MiB, MiB)
    check_ram(mem, 0x1000, 0)
    for addr, length in ((0x9F000, 0x1001), (-1, 4), (4, -1), (-4, 8), (2 * MiB, 1), (MiB - 1, 2)):
        with pytest.raises(VirtqueueError, match="^buffer "):
            check_ram(mem, addr, length)
    with pytest.raises(VirtqueueError, match="^descriptor table "):
        check_ram(GuestMemory(MiB), MiB, 0, "descriptor table")


# ---- a queue's setup rules and its snapshot, on the device side ---------------------------------

def placed(mem, num, desc=0x10000, driver=0x20000, device=0x30000, max_size=16, index=0):
    vq = Virtqueue(mem, max_size, index)
    vq.num, vq.desc, vq.driver, vq.device = num, desc, driver, device
    return vq


def test_a_queue_of_one_entry_is_valid_and_sizes_0_3_and_above_the_maximum_are_not():
    mem = GuestMemory(2 * MiB)
    placed(mem, 1).validate()
    placed(mem, 16).validate()
    for num, why in ((0, "size 0 not in 1..16"), (3, "size 3 is not a power of 2"),
                     (32, "size 32 not in 1..16")):
        with pytest.raises(VirtqueueError, match=f"^queue 0: {why}"):
            placed(mem, num).validate()


def test_the_largest_queue_the_spec_allows_is_valid():
    mem = GuestMemory(2 * MiB)
    placed(mem, 32768, desc=MiB, driver=0x10000, device=0x40000, max_size=32768).validate()
    with pytest.raises(VirtqueueError, match="not in 1..32768"):
        placed(mem, 65536, desc=MiB, driver=0x10000, device=0x40000, max_size=32768).validate()


@pytest.mark.parametrize("ring,size", [("desc", 16 * 16), ("driver", 6 + 2 * 16)])
def test_a_ring_may_end_exactly_where_conventional_memory_ends_and_not_past_it(ring, size):
    mem = GuestMemory(2 * MiB)
    placed(mem, 16, **{ring: 0xA0000 - size}).validate()
    name = "descriptor table" if ring == "desc" else "available ring"
    step = 16 if ring == "desc" else 2
    with pytest.raises(VirtqueueError, match=f"^queue 0: {name} .* outside guest RAM"):
        placed(mem, 16, **{ring: 0xA0000 - size + step}).validate()


def test_the_used_ring_is_six_plus_eight_bytes_an_entry_long():
    mem = GuestMemory(2 * MiB)
    placed(mem, 16, device=0xA0000 - 136).validate()               # 134 bytes, 4-aligned start
    with pytest.raises(VirtqueueError, match="^queue 0: used ring .* outside guest RAM"):
        placed(mem, 16, device=0xA0000 - 132).validate()


@pytest.mark.parametrize("ring,name,align", [("desc", "descriptor table", 16),
                                             ("driver", "available ring", 2),
                                             ("device", "used ring", 4)])
def test_a_misaligned_ring_is_refused_by_its_name(ring, name, align):
    mem = GuestMemory(2 * MiB)
    with pytest.raises(VirtqueueError, match=f"^queue 2: {name} at .* not {align}-aligned"):
        placed(mem, 16, index=2, **{ring: 0x50000 + align // 2}).validate()


def test_the_device_reads_back_the_avail_event_it_published(rig):
    t = rig[0]
    q = live(rig)
    vq = t.queues[0]
    for value in (7, 0xFFFF, 0):
        vq.set_avail_event(value)
        assert vq.avail_event == q.avail_event == value


def test_a_ring_with_every_entry_available_is_full_not_overrun(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig)
    dev.hold = True
    for _ in range(16):
        q.add([b"x"], [])                          # one descriptor each: 16 fill the ring
    vq = t.queues[0]
    assert vq.pending() == 16
    assert [vq.pop() is not None for _ in range(3)] == [True] * 3
    assert (vq.pending(), vq.popped) == (13, 3)


def busy_queue(rig):
    """A live queue with EVENT_IDX and INDIRECT_DESC after some chains: every saved
    field differs from a reset queue's."""
    t, drv, dev, irq, mem = rig
    q = live(rig)
    for _ in range(3):
        q.add([b"ab"], [2])
        drv.kick(0)
    dev.hold = True
    q.add([b"cd"], [2])
    vq = t.queues[0]
    vq.pop()
    vq.num = 16
    return vq


def test_a_saved_queue_loaded_into_a_fresh_one_has_every_field_and_pops_the_same(rig):
    vq = busy_queue(rig)
    saved = vq.state()
    power_on = Virtqueue(vq.mem, 16).state()
    assert {k for k in saved if saved[k] != power_on[k]} == set(saved) - {"num"}
    fresh = Virtqueue(vq.mem, 16, index=0)
    fresh.load_state(dict(saved))
    assert fresh.state() == saved
    rig[4].put16(vq.driver + 4 + 2 * (vq.next_avail % 16), 0)   # (a chain the driver made)
    rig[1].queues[0].add([b"ef"], [1])
    a, b = vq.pop(), fresh.pop()
    assert (a.head, a.readable, a.writable) == (b.head, b.readable, b.writable)
    assert fresh.state() == vq.state()


@pytest.mark.parametrize("key,good,bad", [
    ("num", (0, 16), (-1, 1 << 32)),
    ("next_avail", (0, 0xFFFF), (-1, 0x10000)), ("next_used", (0, 0xFFFF), (-1, 0x10000)),
    ("signalled_used", (0, 0xFFFF), (-1, 0x10000)),
    ("popped", (0, 1 << 40), (-1, None)), ("pushed", (0, 1 << 40), (-1, None)),
    ("desc", (0x20000,), (-1, "x")), ("ready", (False, True), (0, None)),
    ("event_idx", (False, True), (1, None)), ("indirect", (False, True), (1, None)),
])
def test_a_saved_queue_value_outside_its_range_is_refused_and_its_bounds_load(rig, key, good, bad):
    vq = busy_queue(rig)
    saved = vq.state()
    for value in good:
        fresh = Virtqueue(vq.mem, 16, index=3)
        fresh.load_state({**saved, key: value, "ready": False} if key == "num" else {**saved, key: value})
        assert fresh.state()[key] == value
    for value in bad:
        with pytest.raises(ValueError, match=f"^virtqueue 3: saved {key} "):
            Virtqueue(vq.mem, 16, index=3).load_state({**saved, key: value, "ready": False}
                                                      if key in ("num", "desc") else {**saved, key: value})
    with pytest.raises(ValueError, match=f"^virtqueue 3: the saved state has no '{key}'"):
        Virtqueue(vq.mem, 16, index=3).load_state({k: v for k, v in saved.items() if k != key})


def test_a_saved_ready_queue_whose_rings_do_not_fit_is_refused_and_an_idle_one_loads(rig):
    vq = busy_queue(rig)
    saved = vq.state()
    with pytest.raises(ValueError, match="^virtqueue 1: queue 1: used ring"):
        Virtqueue(vq.mem, 16, index=1).load_state({**saved, "device": 0x9FFFC})
    idle = Virtqueue(vq.mem, 16, index=1)
    idle.load_state({**saved, "device": 0x9FFFC, "ready": False})
    assert not idle.ready and idle.pop() is None


# ---- the edges of the chain rules ---------------------------------------------------------------

@pytest.mark.parametrize("build,reason", [
    (lambda q: q.publish(q.size), "^queue 0: descriptor index 4 >= queue size 4$"),
    (lambda q: _raw_chain(q, (0x40000, 4, VIRTQ_DESC_F_NEXT, 4)),
     "^queue 0: descriptor index 4 >= table size 4$"),
    (lambda q: (q.write_desc(0, 0x41000, 4, VIRTQ_DESC_F_NEXT, 1, table=0x40000),
                _raw_chain(q, (0x40000, 16, VIRTQ_DESC_F_INDIRECT))),
     "^queue 0: descriptor index 1 >= table size 1$"),
])
def test_an_index_equal_to_the_size_is_past_the_end_and_the_reason_names_the_queue(rig, build, reason):
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    build(q)
    drv.kick(0)
    assert t.status & Status.DEVICE_NEEDS_RESET
    assert re.search(reason, t.last_error), t.last_error


def test_a_chain_through_every_descriptor_of_the_table_is_not_a_loop(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    mem.write(0x40000, b"abcd")
    _raw_chain(q, (0x40000, 1, VIRTQ_DESC_F_NEXT, 1), (0x40001, 1, VIRTQ_DESC_F_NEXT, 2),
               (0x40002, 1, VIRTQ_DESC_F_NEXT, 3), (0x41000, 4, VIRTQ_DESC_F_WRITE))
    drv.kick(0)
    assert not t.status & Status.DEVICE_NEEDS_RESET
    assert mem.read(0x41000, 3) == b"ABC"


def test_direct_and_indirect_chains_say_which_they_are(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    dev.hold = True
    vq = t.queues[0]
    _raw_chain(q, (0x40000, 4, 0))
    assert vq.pop().indirect is False
    q.write_desc(0, 0x41000, 4, 0, table=0x42000)
    _raw_chain(q, (0x42000, 16, VIRTQ_DESC_F_INDIRECT))
    assert vq.pop().indirect is True


@pytest.mark.parametrize("entries,ok", [(65536, True), (65537, False)])
def test_an_indirect_table_may_hold_65536_descriptors_and_no_more(rig, entries, ok):
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    mem.write(MiB, bytes(16))                   # entry 0: an empty readable buffer, no NEXT
    _raw_chain(q, (MiB, 16 * entries, VIRTQ_DESC_F_INDIRECT))
    drv.kick(0)
    if ok:
        assert not t.status & Status.DEVICE_NEEDS_RESET
    else:
        assert "max 65536 entries" in t.last_error


@pytest.mark.parametrize("count,ok", [(4096, True), (4097, False)])
def test_a_chain_may_name_4_gib_and_not_a_byte_more(rig, count, ok):
    # §2.7.5.2: the same MiB of RAM named again and again, as a writable buffer.
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    table = 0x40000
    entry = MiB.to_bytes(8, "little") + MiB.to_bytes(4, "little")
    raw = b"".join(entry + (VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT).to_bytes(2, "little")
                   + (i + 1).to_bytes(2, "little") for i in range(count - 1))
    mem.write(table, raw + entry + VIRTQ_DESC_F_WRITE.to_bytes(2, "little") + bytes(2))
    _raw_chain(q, (table, 16 * count, VIRTQ_DESC_F_INDIRECT))
    drv.kick(0)
    if ok:
        assert not t.status & Status.DEVICE_NEEDS_RESET and len(q.used()) == 1
    else:
        assert "exceeds 2^32 bytes" in t.last_error


# ---- the used ring and notifications, on the device side ---------------------------------------

def test_push_reports_what_was_written_or_the_length_given_clamped_to_the_writable_bytes(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    dev.hold = True
    vq = t.queues[0]
    for claim, want in ((None, 3), (0, 0), (-5, 0), (2, 2), (1000, 6)):
        q.add([b"r"], [6])
        chain = vq.pop()
        chain.write(b"abc")
        vq.push(chain) if claim is None else vq.push(chain, claim)
        assert [u.len for u in q.used()] == [want], claim
    assert (vq.popped, vq.pushed) == (5, 5)


def test_a_push_into_the_last_slot_leaves_avail_event_after_the_ring_alone(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, queue_size=4)
    dev.hold = True
    vq = t.queues[0]
    vq.set_avail_event(0x1234)
    lengths = []
    for _ in range(4):
        q.add([b"r"], [2])
        vq.push(vq.pop(), 0xFFFFFFFF)
        assert q.avail_event == 0x1234
        lengths += [u.len for u in q.used()]
    assert lengths == [2, 2, 2, 2]


def test_a_queue_that_is_not_ready_notifies_nothing_and_writes_nothing():
    mem = GuestMemory(MiB)
    vq = placed(mem, 4, desc=0, driver=0, device=0)        # rings not set up: all at 0
    vq.event_idx = True
    before = mem.read(0, 0x1000)
    vq.set_avail_event(5)
    vq.event_idx = False
    vq.disable_notification()
    assert (vq.needs_notification(), vq.enable_notification()) == (False, False)
    assert mem.read(0, 0x1000) == before


def test_needs_notification_is_false_when_nothing_was_pushed_since_the_last_ask(rig):
    t, drv, dev, irq, mem = rig
    q = live(rig, NO_EVENT_IDX, queue_size=4)
    dev.hold = True
    vq = t.queues[0]
    q.add([b"r"], [2])
    vq.push(vq.pop(), 1)
    assert vq.needs_notification() is True
    assert vq.needs_notification() is False


def test_a_new_queue_is_queue_0_at_its_maximum_size_not_ready_with_everything_else_zero():
    mem = GuestMemory(MiB)
    vq = Virtqueue(mem, 16)
    assert vq.state() == {"num": 16, "ready": False, "event_idx": False, "indirect": False,
                          "desc": 0, "driver": 0, "device": 0, "next_avail": 0, "next_used": 0,
                          "signalled_used": 0, "popped": 0, "pushed": 0}
    vq.num = 3
    with pytest.raises(VirtqueueError, match="^queue 0: "):
        vq.validate()


def test_the_transport_counters_start_at_zero_and_save_as_a_record():
    assert dataclasses.asdict(VirtioStats()) == {
        "doorbells": 0, "ignored_doorbells": 0, "chains": 0, "interrupts": 0, "suppressed": 0,
        "config_changes": 0, "errors": 0}
