"""virtio-console (one port) driven at the register and ring level by the mock driver."""
from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv.devices.base import RecordingIrq
from hv.devices.console_virtio import (RECEIVEQ0, TRANSMITQ0, TX_CHAIN_MAX, VIRTIO_CONSOLE_F_EMERG_WRITE,
                                    VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_SIZE, VirtioConsole)
from hv.memory import MiB
from hv.virtio import TRANSPORT_FEATURES, VIRTIO_F_EVENT_IDX, Status, VirtioMmio
from hv.virtio import mmio as R
from hv.virtio.queue import VIRTQ_DESC_F_NEXT
from hv.virtio.testing import MockDriver

from tests.devices.harness import GuardedMemory

BASE = 0xD2000


class Rig:
    def __init__(self, **kw):
        self.out: list[bytes] = []
        self.mem = GuardedMemory(2 * MiB)
        self.irq = RecordingIrq()
        self.dev = VirtioConsole(sink=self.out.append, **kw)
        self.t = VirtioMmio(self.dev, self.mem, self.irq, BASE)
        self.drv = MockDriver(self.t, self.mem)

    def live(self, features=None):
        self.drv.init(features)
        return self.drv.queues[RECEIVEQ0], self.drv.queues[TRANSMITQ0]

    @property
    def output(self) -> bytes:
        return b"".join(self.out)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    assert r.mem.bad == []
    r.mem.close()


# ---- identity and config ------------------------------------------------------------------

def test_device_id_is_console_with_two_queues(rig):
    assert rig.t.read(R.DeviceID, 4) == 3
    for i, expected in ((0, 256), (1, 256), (2, 0)):
        rig.drv.write(R.QueueSel, i)
        assert rig.drv.read(R.QueueNumMax) == expected


def test_offers_size_and_emergency_write_but_not_multiport(rig):
    f = rig.drv.device_features()
    assert f >> VIRTIO_CONSOLE_F_SIZE & 1 and f >> VIRTIO_CONSOLE_F_EMERG_WRITE & 1
    assert not f >> VIRTIO_CONSOLE_F_MULTIPORT & 1
    assert f & TRANSPORT_FEATURES == TRANSPORT_FEATURES


def test_config_reports_cols_and_rows():
    r = Rig(cols=132, rows=43)
    assert r.drv.config_read(0, 2) == 132
    assert r.drv.config_read(2, 2) == 43
    assert r.drv.config_read(4, 4) == 1


def test_resize_updates_config_and_sends_a_config_interrupt(rig):
    rig.live()
    gen = rig.drv.read(R.ConfigGeneration)
    rig.dev.resize(100, 30)
    assert rig.drv.config_read(0, 2) == 100 and rig.drv.config_read(2, 2) == 30
    assert rig.drv.read(R.ConfigGeneration) != gen
    assert rig.t.interrupt_status & R.VIRTIO_MMIO_INT_CONFIG and rig.irq.level


def test_emergency_write_goes_to_the_sink_even_before_init(rig):
    rig.drv.config_write(8, 4, ord("!"))
    assert rig.output == b"!"


# ---- transmit ---------------------------------------------------------------------------

def test_transmit_reaches_the_sink(rig):
    _, tx = rig.live()
    tx.add([b"hello, world\n"])
    rig.drv.kick(TRANSMITQ0)
    assert rig.output == b"hello, world\n"
    [u] = tx.used()
    assert u.len == 0


def test_transmit_chain_of_several_buffers_is_concatenated_and_chains_keep_order(rig):
    _, tx = rig.live()
    tx.add([b"ab", b"cd"])
    tx.add([b"ef"], indirect=True)
    tx.add([b"gh"])
    rig.drv.kick(TRANSMITQ0)
    assert rig.output == b"abcdefgh"
    assert len(tx.used()) == 3
    assert rig.dev.tx_bytes == 8


def test_transmit_completion_interrupts_the_driver(rig):
    _, tx = rig.live()
    tx.add([b"x"])
    rig.drv.kick(TRANSMITQ0)
    assert rig.irq.edges == 1
    assert rig.drv.ack_interrupt() == R.VIRTIO_MMIO_INT_VRING


def test_transmit_chain_with_a_writable_buffer_needs_reset(rig):
    _, tx = rig.live()
    tx.add([b"x"], [4])
    rig.drv.kick(TRANSMITQ0)
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert "writable" in rig.t.last_error
    assert rig.output == b""


# ---- receive ---------------------------------------------------------------------------------

def test_receive_fills_posted_buffers_in_order(rig):
    rx, _ = rig.live()
    for _ in range(3):
        rx.add([], [4])
    rig.drv.kick(RECEIVEQ0)
    assert rig.dev.receive(b"0123456789") == 10
    used = rx.used()
    assert [u.data for u in used] == [b"0123", b"4567", b"89"]
    assert [u.len for u in used] == [4, 4, 2]


def test_receive_signals_the_driver(rig):
    rx, _ = rig.live()
    rx.add([], [16])
    rig.dev.receive(b"k")
    assert rig.irq.edges == 1
    assert rig.t.interrupt_status & R.VIRTIO_MMIO_INT_VRING


def test_receive_without_buffers_is_held_until_the_driver_posts_some(rig):
    rx, _ = rig.live()
    rig.dev.receive(b"early")
    assert rx.used() == [] and rig.irq.edges == 0
    rx.add([], [64])
    rig.drv.kick(RECEIVEQ0)
    [u] = rx.used()
    assert u.data == b"early"
    assert rig.dev.pending == b""


def test_receive_does_not_take_buffers_when_there_is_no_input(rig):
    rx, _ = rig.live()
    rx.add([], [64])
    rig.drv.kick(RECEIVEQ0)
    assert rx.used() == []
    rig.dev.receive(b"later")
    assert [u.data for u in rx.used()] == [b"later"]


def test_input_beyond_the_posted_buffers_waits_for_more(rig):
    rx, _ = rig.live()
    rx.add([], [3])
    rig.dev.receive(b"abcdef")
    assert [u.data for u in rx.used()] == [b"abc"]
    rx.add([], [8])
    rig.drv.kick(RECEIVEQ0)
    assert [u.data for u in rx.used()] == [b"def"]


def test_input_before_driver_ok_is_delivered_once_buffers_are_posted(rig):
    rig.dev.receive(b"boot")
    rx, _ = rig.live()
    rx.add([], [8])
    rig.drv.kick(RECEIVEQ0)
    assert [u.data for u in rx.used()] == [b"boot"]


def test_held_input_is_bounded_and_the_excess_counted():
    r = Rig(rx_limit=8)
    assert r.dev.receive(b"0123456789") == 8
    assert r.dev.rx_dropped == 2
    rx, _ = r.live()
    rx.add([], [16])
    r.drv.kick(RECEIVEQ0)
    assert [u.data for u in rx.used()] == [b"01234567"]


def test_event_idx_receive_rearms_avail_event_when_out_of_buffers(rig):
    rx, _ = rig.live()
    rx.add([], [1])
    rx.add([], [1])
    rig.dev.receive(b"abc")
    # Two buffers used, "c" held: the device asks for a doorbell on the next buffer added.
    assert len(rx.used()) == 2
    assert rx.avail_event == rx.avail_idx == 2


def test_without_event_idx_receive_works_too(rig):
    rx, _ = rig.live(TRANSPORT_FEATURES & ~(1 << VIRTIO_F_EVENT_IDX))
    rig.dev.receive(b"q")
    rx.add([], [4])
    rig.drv.kick(RECEIVEQ0)
    assert [u.data for u in rx.used()] == [b"q"]


def test_receive_chain_with_a_readable_buffer_needs_reset(rig):
    rx, _ = rig.live()
    rx.add([b"bad"], [4])
    rig.dev.receive(b"x")
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert "readable" in rig.t.last_error


def test_receive_after_needs_reset_is_held_not_raised(rig):
    rx, _ = rig.live()
    rx.add([b"bad"], [4])
    rig.dev.receive(b"x")
    rig.dev.receive(b"y")
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert rig.dev.pending.endswith(b"y")


# ---- hostile input -------------------------------------------------------------------------

def chain_of(tx, pieces):
    """A transmit chain of raw descriptors: (addr, len) each, linked in order from 0."""
    for i, (addr, n) in enumerate(pieces):
        tx.write_desc(i, addr, n, VIRTQ_DESC_F_NEXT if i + 1 < len(pieces) else 0, i + 1)
    tx.publish(0)


def test_a_transmit_chain_naming_256_mib_of_one_range_needs_reset_and_is_never_copied(rig):
    _, tx = rig.live()
    chain_of(tx, [(0x100000, 0x100000)] * 256)      # 1 MiB of RAM, named 256 times
    tracemalloc.start()
    try:
        rig.drv.kick(TRANSMITQ0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rig.t.status & Status.DEVICE_NEEDS_RESET
    assert str(TX_CHAIN_MAX) in rig.t.last_error
    assert rig.output == b"" and rig.dev.tx_bytes == 0
    assert peak < 4 * MiB, f"{peak} bytes of host memory for a refused chain"


def test_a_transmit_chain_of_exactly_the_limit_is_sent_whole(rig):
    _, tx = rig.live()
    data = bytes(range(256)) * (TX_CHAIN_MAX // 256 // 2)
    rig.mem.write(0x100000, data)
    chain_of(tx, [(0x100000, len(data)), (0x100000, len(data))])
    rig.drv.kick(TRANSMITQ0)
    assert not rig.t.status & Status.DEVICE_NEEDS_RESET
    assert rig.output == data + data and rig.dev.tx_bytes == TX_CHAIN_MAX


def test_a_transmit_chain_one_byte_over_the_limit_needs_reset_and_sends_nothing(rig):
    _, tx = rig.live()
    chain_of(tx, [(0x100000, TX_CHAIN_MAX), (0x100000, 1)])
    rig.drv.kick(TRANSMITQ0)
    assert rig.t.status & Status.DEVICE_NEEDS_RESET and rig.output == b""


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 0x1FF), st.sampled_from([1, 2, 4]),
                              st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=40),
       rx=st.binary(max_size=64))
def test_random_register_accesses_and_input_never_raise(ops, rx):
    r = Rig()
    try:
        for off, size, value, is_write in ops:
            if is_write:
                r.t.write(off, size, value & ((1 << 8 * size) - 1))
            else:
                assert 0 <= r.t.read(off, size) < 1 << 8 * size
            r.dev.receive(rx)
        assert r.mem.bad == []
    finally:
        r.mem.close()


addr_st = st.one_of(st.integers(0x10000, 0x14000), st.integers(0, (1 << 64) - 1),
                    st.sampled_from([0x9FFF0, 0xA0000, 0xFFFF0, 0x1FFFF0]))


@settings(max_examples=150, deadline=None)
@given(descs=st.lists(st.tuples(addr_st, st.integers(0, 0x2000), st.integers(0, 7), st.integers(0, 9)),
                      min_size=8, max_size=8),
       heads=st.lists(st.integers(0, 9), min_size=1, max_size=8),
       queue=st.sampled_from([RECEIVEQ0, TRANSMITQ0]), rx=st.binary(max_size=100))
def test_random_rings_never_raise_or_write_outside_ram(descs, heads, queue, rx):
    r = Rig()
    try:
        r.drv.init(queue_size=None)
        q = r.drv.queues[queue]
        for i, (addr, length, flags, nxt) in enumerate(descs):
            q.write_desc(i, addr, length, flags, nxt)
        for h in heads:
            q.publish(h)
        r.drv.kick(queue)
        r.dev.receive(rx)
        assert r.mem.bad == []
    finally:
        r.mem.close()
