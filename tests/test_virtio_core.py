"""virtio-mmio transport and split virtqueues, driven by the mock driver."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv.devices.base import RecordingIrq
from hv.memory import GuestMemory, MiB
from hv.virtio import (TRANSPORT_FEATURES, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC,
                       VIRTIO_F_VERSION_1, Status, VirtioDevice, VirtioMmio, VirtqueueError)
from hv.virtio import mmio as R
from hv.virtio.queue import (VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
                             VIRTQ_USED_F_NO_NOTIFY, ram_ranges, vring_need_event)
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
    assert q.used_flags == VIRTQ_USED_F_NO_NOTIFY
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
