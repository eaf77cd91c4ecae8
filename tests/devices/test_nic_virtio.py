"""virtio-net on the virtio-mmio transport, driven at the register and ring
level by the mock driver."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices.base import RecordingIrq
from hv.devices.nic_virtio import (DEFAULT_MAC, RECEIVEQ, TRANSMITQ, VIRTIO_NET_F_MAC,
                                VIRTIO_NET_F_STATUS, VIRTIO_NET_HDR_SIZE, VIRTIO_NET_S_LINK_UP,
                                VirtioNet)
from hv.memory import GuestMemory, MiB
from hv.net import BROADCAST_MAC, NetPort, Switch, UserNet, inet_checksum
from hv.virtio import (TRANSPORT_FEATURES, VIRTIO_F_EVENT_IDX, VIRTIO_ID_NET, Status, VirtioMmio)
from hv.virtio import mmio as R
from hv.virtio.queue import VIRTQ_DESC_F_WRITE, ram_ranges, vring_need_event
from hv.virtio.testing import MockDriver

BASE = 0xD1000
GUEST_IP = bytes([10, 0, 2, 15])
HOST_IP = bytes([10, 0, 2, 2])
HOST_MAC = bytes.fromhex("52550a000202")
RX_BUF = VIRTIO_NET_HDR_SIZE + 1514


class GuardedMemory(GuestMemory):
    """Records every host write that lands outside guest RAM."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.bad_writes: list[tuple[int, int]] = []

    def write(self, addr: int, data: bytes) -> None:
        if not any(lo <= addr and addr + len(data) <= hi for lo, hi in ram_ranges(self)):
            self.bad_writes.append((addr, len(data)))
        super().write(addr, data)


class FakePort:
    """Stands in for hv.net.NetPort on the NIC side."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, frame) -> None:
        self.sent.append(bytes(frame))

    def poll(self, receive, ready=None, limit=None) -> int:
        return 0


class Rig:
    def __init__(self, port=None, mem_size: int = 2 * MiB, features=None) -> None:
        self.mem = GuardedMemory(mem_size)
        self.irq = RecordingIrq()
        self.port = FakePort() if port is None else port
        self.dev = VirtioNet(self.port)
        self.t = VirtioMmio(self.dev, self.mem, self.irq, BASE)
        self.drv = MockDriver(self.t, self.mem)
        self.features = features

    def start(self, queue_size: int = 16) -> "Rig":
        self.drv.init(self.features, queue_size=queue_size)
        return self

    @property
    def rxq(self):
        return self.drv.queues[RECEIVEQ]

    @property
    def txq(self):
        return self.drv.queues[TRANSMITQ]

    def transmit(self, frame: bytes, header: bytes = bytes(VIRTIO_NET_HDR_SIZE), kick=True) -> int:
        head = self.txq.add([header + frame])
        if kick:
            self.drv.kick(TRANSMITQ)
        return head


def frame(n: int = 60, fill: int = 0xAB) -> bytes:
    return BROADCAST_MAC + DEFAULT_MAC + b"\x08\x00" + bytes([fill]) * (n - 14)


@pytest.fixture
def rig() -> Rig:
    return Rig().start()


# --- identity and config -------------------------------------------------------------

def test_device_id_is_virtio_net():
    r = Rig()
    assert r.drv.read(R.DeviceID) == VIRTIO_ID_NET


def test_offers_mac_and_status_and_no_offloads():
    r = Rig()
    offered = r.drv.device_features()
    assert offered & ~TRANSPORT_FEATURES == (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS)


def test_mac_is_in_config_space():
    r = Rig()
    assert bytes(r.drv.config_read(i, 1) for i in range(6)) == DEFAULT_MAC


def test_custom_mac_is_in_config_space():
    mem = GuestMemory(2 * MiB)
    dev = VirtioNet(FakePort(), mac=b"\x02\x00\x00\xaa\xbb\xcc")
    t = VirtioMmio(dev, mem, RecordingIrq(), BASE)
    assert t.read(R.Config, 4) == 0xAA000002
    assert t.read(R.Config + 4, 2) == 0xCCBB


def test_link_is_up_with_a_port_attached():
    r = Rig()
    assert r.drv.config_read(6, 2) == VIRTIO_NET_S_LINK_UP


def test_link_is_down_without_a_port():
    mem = GuestMemory(2 * MiB)
    t = VirtioMmio(VirtioNet(None), mem, RecordingIrq(), BASE)
    assert t.read(R.Config + 6, 2) == 0


def test_config_space_ignores_driver_writes():
    r = Rig()
    r.drv.config_write(0, 4, 0)
    assert bytes(r.drv.config_read(i, 1) for i in range(6)) == DEFAULT_MAC


def test_bad_mac_length_is_refused():
    with pytest.raises(ValueError):
        VirtioNet(None, mac=b"\x00" * 5)


# --- transmit ------------------------------------------------------------------------

def test_transmitted_frame_reaches_port_without_header(rig):
    f = frame(100)
    rig.transmit(f)
    assert rig.port.sent == [f]


def test_transmit_chain_returns_with_length_zero(rig):
    head = rig.transmit(frame())
    assert [(u.id, u.len) for u in rig.txq.used()] == [(head, 0)]


def test_transmit_split_across_descriptors_is_joined(rig):
    f = frame(80)
    rig.txq.add([bytes(VIRTIO_NET_HDR_SIZE), f[:20], f[20:]])
    rig.drv.kick(TRANSMITQ)
    assert rig.port.sent == [f]


def test_transmit_header_offload_fields_are_ignored(rig):
    f = frame()
    rig.transmit(f, header=struct.pack("<BBHHHHH", 1, 1, 54, 1448, 34, 16, 0))
    assert rig.port.sent == [f]


def test_transmit_without_port_is_dropped_and_counted():
    r = Rig()
    r.dev.port = None
    r.start()
    r.transmit(frame())
    assert r.dev.counters.tx_dropped == 1 and r.dev.counters.tx_frames == 0


def test_transmit_counts_frames_and_bytes(rig):
    rig.transmit(frame(60))
    rig.transmit(frame(70))
    assert (rig.dev.counters.tx_frames, rig.dev.counters.tx_bytes) == (2, 130)


def test_transmit_raises_used_interrupt(rig):
    rig.transmit(frame())
    assert rig.irq.level and rig.drv.ack_interrupt() & R.VIRTIO_MMIO_INT_VRING


# --- receive ---------------------------------------------------------------------------

def test_received_frame_lands_in_posted_buffer_with_header(rig):
    head = rig.rxq.add(writable=[RX_BUF])
    f = frame(90)
    assert rig.dev.receive(f) is True
    [used] = rig.rxq.used()
    assert used.id == head and used.len == VIRTIO_NET_HDR_SIZE + len(f)
    assert used.data[VIRTIO_NET_HDR_SIZE:] == f


def test_receive_header_has_no_flags_gso_none_and_one_buffer(rig):
    rig.rxq.add(writable=[RX_BUF])
    rig.dev.receive(frame())
    hdr = rig.rxq.used()[0].data[:VIRTIO_NET_HDR_SIZE]
    assert struct.unpack("<BBHHHHH", hdr) == (0, 0, 0, 0, 0, 0, 1)


def test_receive_scatters_over_several_writable_descriptors(rig):
    rig.rxq.add(writable=[VIRTIO_NET_HDR_SIZE, 30, 100])
    f = frame(100)
    rig.dev.receive(f)
    assert rig.rxq.used()[0].data[VIRTIO_NET_HDR_SIZE:] == f


def test_receive_with_no_buffer_posted_is_dropped_and_counted(rig):
    assert rig.dev.receive(frame()) is False
    assert rig.dev.counters.rx_dropped_no_buffer == 1
    assert rig.rxq.used() == []


def test_can_receive_is_false_until_a_buffer_is_posted(rig):
    assert rig.dev.can_receive() is False
    rig.rxq.add(writable=[RX_BUF])
    assert rig.dev.can_receive() is True


def test_can_receive_is_false_before_driver_ok():
    r = Rig()
    assert r.dev.can_receive() is False


def test_receive_before_driver_ok_is_dropped():
    r = Rig()
    assert r.dev.receive(frame()) is False
    assert r.dev.counters.rx_dropped_no_buffer == 1


def test_frame_too_big_for_buffer_is_dropped_and_buffer_returned_empty(rig):
    head = rig.rxq.add(writable=[64])
    assert rig.dev.receive(frame(200)) is False
    assert rig.dev.counters.rx_dropped_too_big == 1
    assert [(u.id, u.len) for u in rig.rxq.used()] == [(head, 0)]


def test_each_frame_uses_its_own_buffer(rig):
    heads = [rig.rxq.add(writable=[RX_BUF]) for _ in range(3)]
    for i in range(3):
        rig.dev.receive(frame(60, fill=i))
    used = rig.rxq.used()
    assert [u.id for u in used] == heads
    assert [u.data[-1] for u in used] == [0, 1, 2]


def test_receive_raises_used_interrupt(rig):
    rig.rxq.add(writable=[RX_BUF])
    rig.dev.receive(frame())
    assert rig.irq.level and rig.t.interrupt_status & R.VIRTIO_MMIO_INT_VRING


def test_posting_receive_buffers_pulls_frames_held_by_the_port():
    sw = Switch("t")
    port = NetPort(sw, "nic")
    other = NetPort(sw, "other")
    r = Rig(port=port).start()
    other.send(frame())
    assert port.poll(r.dev.receive, ready=r.dev.can_receive) == 0   # held: nothing posted
    assert port.pending == 1
    r.rxq.add(writable=[RX_BUF])
    r.drv.kick(RECEIVEQ)
    assert port.pending == 0 and len(r.rxq.used()) == 1


def test_empty_receive_queue_asks_for_a_doorbell_with_event_idx(rig):
    rig.rxq.add(writable=[RX_BUF])
    rig.dev.receive(frame())
    rig.dev.can_receive()            # finds the ring empty
    # The next buffer the driver posts (avail idx 1 -> 2) must be kicked.
    assert vring_need_event(rig.rxq.avail_event, 2, 1)


# --- EVENT_IDX batching ---------------------------------------------------------------------

def test_one_doorbell_sends_a_batch_of_frames(rig):
    frames = [frame(60, fill=i) for i in range(5)]
    for f in frames:
        rig.transmit(f, kick=False)
    rig.drv.kick(TRANSMITQ)
    assert rig.port.sent == frames
    assert rig.t.stats.doorbells == 1
    assert rig.irq.edges == 1


def test_after_draining_driver_needs_one_kick_per_new_batch(rig):
    for _ in range(3):
        rig.transmit(frame(), kick=False)
    rig.drv.kick(TRANSMITQ)
    old = rig.txq.avail_idx
    for _ in range(4):
        rig.transmit(frame(), kick=False)
    new = rig.txq.avail_idx
    # Device published avail_event = 3: exactly the first new entry needs a kick.
    assert rig.txq.avail_event == old
    assert vring_need_event(rig.txq.avail_event, new, old)
    assert not vring_need_event(rig.txq.avail_event, new, old + 1)


def test_event_idx_suppresses_receive_interrupts_until_used_event(rig):
    for _ in range(3):
        rig.rxq.add(writable=[RX_BUF])
    rig.rxq.set_used_event(2)        # interrupt me once the third entry is used
    rig.dev.receive(frame())
    rig.dev.receive(frame())
    assert rig.irq.edges == 0
    rig.dev.receive(frame())
    assert rig.irq.edges == 1


def test_without_event_idx_every_receive_interrupts():
    r = Rig(features=None)
    r.features = (r.drv.device_features() & ~(1 << VIRTIO_F_EVENT_IDX))
    r.start()
    for _ in range(2):
        r.rxq.add(writable=[RX_BUF])
    r.dev.receive(frame())
    r.drv.ack_interrupt()
    r.dev.receive(frame())
    assert r.irq.edges == 2


# --- malformed rings ---------------------------------------------------------------------------

def _needs_reset(r: Rig) -> bool:
    return bool(r.drv.status & Status.DEVICE_NEEDS_RESET)


def test_transmit_chain_shorter_than_header_needs_reset(rig):
    rig.txq.add([b"\x00" * 5])
    rig.drv.kick(TRANSMITQ)
    assert _needs_reset(rig) and rig.port.sent == []


def test_transmit_chain_with_writable_buffer_needs_reset(rig):
    rig.txq.add([bytes(VIRTIO_NET_HDR_SIZE) + frame()], [64])
    rig.drv.kick(TRANSMITQ)
    assert _needs_reset(rig)


def test_receive_chain_with_readable_buffer_needs_reset(rig):
    rig.rxq.add([b"x"], [RX_BUF])
    assert rig.dev.receive(frame()) is False
    assert _needs_reset(rig)


def test_receive_descriptor_outside_ram_needs_reset(rig):
    q = rig.rxq
    q.write_desc(0, 0xB0000, RX_BUF, VIRTQ_DESC_F_WRITE)   # video memory: not DMA-able RAM
    q.publish(0)
    assert rig.dev.receive(frame()) is False
    assert _needs_reset(rig) and rig.mem.bad_writes == []


def test_avail_index_running_too_far_ahead_needs_reset(rig):
    rig.txq.set_avail_idx(1000)
    rig.drv.kick(TRANSMITQ)
    assert _needs_reset(rig)


def test_device_works_again_after_reset(rig):
    rig.txq.add([b"\x00"])
    rig.drv.kick(TRANSMITQ)
    assert _needs_reset(rig)
    rig.start()
    f = frame()
    rig.transmit(f)
    assert rig.port.sent == [f]


# --- a ping through the user-mode network -------------------------------------------------------

def _eth(dst: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + DEFAULT_MAC + struct.pack("!H", ethertype) + payload


def _arp_request(tip: bytes) -> bytes:
    return _eth(BROADCAST_MAC, 0x0806, struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1,
                                                   DEFAULT_MAC, GUEST_IP, bytes(6), tip))


def _icmp_echo_request(dst_mac: bytes, ident: int, seq: int, data: bytes) -> bytes:
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data)
    struct.pack_into("!H", icmp, 2, inet_checksum(icmp))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0x4000, 64, 1, 0,
                               GUEST_IP, HOST_IP))
    struct.pack_into("!H", ip, 10, inet_checksum(ip))
    return _eth(dst_mac, 0x0800, bytes(ip) + bytes(icmp))


def test_ping_gateway_through_usernet():
    sw = Switch("ping")
    UserNet(sw)
    port = NetPort(sw, "nic0")
    r = Rig(port=port).start()
    for _ in range(4):
        r.rxq.add(writable=[RX_BUF])
    r.drv.kick(RECEIVEQ)

    def exchange(request: bytes) -> bytes:
        r.transmit(request)
        # What the board does when it has the CPU back.
        assert port.poll(r.dev.receive, ready=r.dev.can_receive) == 1
        [used] = r.rxq.used()
        return used.data[VIRTIO_NET_HDR_SIZE:]

    arp = exchange(_arp_request(HOST_IP))
    assert arp[12:14] == b"\x08\x06" and struct.unpack_from("!H", arp, 20)[0] == 2
    gateway_mac = arp[22:28]
    assert gateway_mac == HOST_MAC and arp[28:32] == HOST_IP

    payload = b"virtio-net ping!"
    reply = exchange(_icmp_echo_request(gateway_mac, 0x1234, 1, payload))
    assert reply[0:6] == DEFAULT_MAC and reply[12:14] == b"\x08\x00"
    ihl = (reply[14] & 15) * 4
    ip, icmp = reply[14:14 + ihl], reply[14 + ihl:]
    assert ip[12:16] == HOST_IP and ip[16:20] == GUEST_IP and inet_checksum(ip) == 0
    assert icmp[0] == 0 and struct.unpack_from("!HH", icmp, 4) == (0x1234, 1)
    assert icmp[8:8 + len(payload)] == payload


# --- hostile input never escapes ------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(descs=st.lists(st.tuples(st.integers(0, 0x220000), st.integers(0, 0x3000),
                                st.integers(0, 7), st.integers(0, 20)), min_size=1, max_size=16),
       heads=st.lists(st.integers(0, 20), min_size=1, max_size=8),
       avail=st.integers(0, 0xFFFF),
       frames=st.lists(st.binary(max_size=1600), max_size=4))
def test_random_rings_and_frames_never_raise_or_write_outside_ram(descs, heads, avail, frames):
    r = Rig().start()
    for q in (r.rxq, r.txq):
        for i, (addr, n, flags, nxt) in enumerate(descs):
            q.write_desc(i, addr, n, flags, nxt)
        for h in heads:
            q.publish(h)
    r.txq.set_avail_idx(avail)
    r.drv.kick(TRANSMITQ)
    for f in frames:
        r.dev.receive(f)
        r.dev.can_receive()
    r.drv.kick(RECEIVEQ)
    assert r.mem.bad_writes == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x1FF), st.sampled_from([1, 2, 4, 3, 8]),
                          st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=40))
def test_random_register_accesses_never_raise(ops):
    r = Rig()
    for offset, size, value, is_write in ops:
        if is_write:
            r.t.write(offset, size, value)
        else:
            r.t.read(offset, size)
    r.dev.receive(frame())
    r.dev.can_receive()
    assert r.mem.bad_writes == []
