"""virtio-net (virtio 1.2 §5.1): a paravirtual Ethernet NIC on hv's virtio core.

The smallest useful network device: one receive queue (0) and one transmit
queue (1), a MAC address and a link status in config space, no offloads
(no CSUM/GSO bits, so every header is flags 0 / GSO_NONE), no mergeable
receive buffers and no control queue.

Every frame travels behind a 12-byte ``virtio_net_hdr`` (§5.1.6: with
VIRTIO_F_VERSION_1 the header always includes ``num_buffers``):

    u8 flags; u8 gso_type; le16 hdr_len; le16 gso_size; le16 csum_start;
    le16 csum_offset; le16 num_buffers

* TX: a doorbell on transmitq drains it; each chain is device-readable only,
  its first 12 bytes are the header (ignored: we negotiated no offloads, and
  §5.1.6.2.2 has the device ignore what it doesn't recognise), the rest is the
  frame, handed to ``port.send``. A chain shorter than the header is a broken
  driver (QEMU: "virtio-net header incorrect") -> DEVICE_NEEDS_RESET.
* RX: the board calls ``receive(frame)`` (through ``NetPort.poll``). Without
  MRG_RXBUF the frame goes into exactly one posted chain (§5.1.6.3.2), header
  first with num_buffers = 1. No chain posted -> the frame is dropped and
  counted; ``can_receive()`` is what lets the board hold frames back instead.
  A chain too small for header + frame is returned with length 0 (Linux counts
  that as a length error and reposts the buffer) and the frame is counted as
  dropped.
"""
from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from hv.devices import state as st
from hv.virtio import VIRTIO_ID_NET, VirtioDevice, Virtqueue, VirtqueueError

if TYPE_CHECKING:
    from hv.net import NetPort

# Feature bits (§5.1.3). Only MAC and STATUS are offered: no checksum/GSO offloads,
# no MRG_RXBUF, no CTRL_VQ, no MQ.
VIRTIO_NET_F_CSUM = 0
VIRTIO_NET_F_GUEST_CSUM = 1
VIRTIO_NET_F_MTU = 3
VIRTIO_NET_F_MAC = 5
VIRTIO_NET_F_MRG_RXBUF = 15
VIRTIO_NET_F_STATUS = 16
VIRTIO_NET_F_CTRL_VQ = 17
VIRTIO_NET_F_MQ = 22

# Config status bits (§5.1.4).
VIRTIO_NET_S_LINK_UP = 1
VIRTIO_NET_S_ANNOUNCE = 2

# virtio_net_hdr flags / gso_type (§5.1.6).
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_F_RSC_INFO = 4
VIRTIO_NET_HDR_GSO_NONE = 0

VIRTIO_NET_HDR = struct.Struct("<BBHHHHH")   # flags gso_type hdr_len gso_size csum_start csum_offset num_buffers
VIRTIO_NET_HDR_SIZE = VIRTIO_NET_HDR.size    # 12 (VERSION_1 always carries num_buffers)

RECEIVEQ = 0
TRANSMITQ = 1

# Config space offsets (§5.1.4).
CONFIG_MAC = 0
CONFIG_STATUS = 6
CONFIG_SIZE = 8

# The largest frame we move (the switch's limit). A TX chain claiming more is not
# read at all: descriptors may alias one RAM region up to 4 GiB in total.
MAX_FRAME = 65535

DEFAULT_MAC = b"\x52\x54\x00\x12\x34\x57"

# The receive header: no flags (GUEST_CSUM not offered), GSO_NONE, num_buffers = 1 (§5.1.6.4).
RX_HEADER = VIRTIO_NET_HDR.pack(0, VIRTIO_NET_HDR_GSO_NONE, 0, 0, 0, 0, 1)


@dataclass
class NetCounters:
    tx_frames: int = 0          # frames handed to the port
    tx_bytes: int = 0
    tx_dropped: int = 0         # no port, or a chain claiming more than MAX_FRAME
    rx_frames: int = 0          # frames written into a receive chain
    rx_bytes: int = 0
    rx_dropped_no_buffer: int = 0   # nothing posted, device not live, or device broken
    rx_dropped_too_big: int = 0     # the posted chain could not hold header + frame


class VirtioNet(VirtioDevice):
    """``VirtioNet(port, mac=...)``: ``port`` an ``hv.net.NetPort`` or None (no
    cable: link down, transmitted frames are counted and dropped).

    The board wires ``port.poll(dev.receive, ready=dev.can_receive)``; the device
    also polls the port itself when the driver posts receive buffers, so frames
    held back for lack of buffers flow as soon as there is room."""

    name = "net"
    device_id = VIRTIO_ID_NET
    features = (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS)
    num_queues = 2
    queue_max = 256

    def __init__(self, port: "NetPort | None", mac: bytes = DEFAULT_MAC) -> None:
        super().__init__()
        mac = bytes(mac)
        if len(mac) != 6:
            raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")
        self.port = port
        self.mac = mac
        self.counters = NetCounters()
        # Link is up whenever a cable (port) is attached; nothing changes it at run time.
        status = VIRTIO_NET_S_LINK_UP if port is not None else 0
        self.config = bytearray(mac + status.to_bytes(2, "little"))

    # ---- config --------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        return bool(int.from_bytes(self.config[CONFIG_STATUS:CONFIG_STATUS + 2], "little")
                    & VIRTIO_NET_S_LINK_UP)

    def set_link(self, up: bool) -> None:
        """Host side: plug/unplug the cable (a config-change interrupt tells the driver)."""
        self.config[CONFIG_STATUS:CONFIG_STATUS + 2] = (
            VIRTIO_NET_S_LINK_UP if up else 0).to_bytes(2, "little")
        if self.transport is not None:
            self.transport.config_changed()

    # ---- snapshots ----------------------------------------------------------------

    def state(self) -> dict:
        """The counters (the MAC and link status are config space, saved by the
        transport). Frames the network holds for the guest are not the device's: they
        are dropped on restore, as a cable pulled and plugged back would lose them."""
        return st.versioned(counters=asdict(self.counters))

    def load_state(self, state: dict) -> None:
        who = "virtio-net"
        st.check_version(state, who)
        saved = st.field(state, "counters", who)
        names = [f.name for f in fields(NetCounters)]
        if not isinstance(saved, dict) or set(saved) != set(names):
            raise ValueError(f"{who}: saved counters are not the device's")
        self.counters = NetCounters(**{n: st.integer(saved, n, who) for n in names})

    # ---- queues -------------------------------------------------------------------

    def _queue(self, index: int) -> Virtqueue | None:
        if index < len(self.queues) and self.queues[index].ready:
            return self.queues[index]
        return None

    def notify(self, queue_index: int) -> None:
        if queue_index == TRANSMITQ:
            q = self._queue(TRANSMITQ)
            if q is not None:
                self.drain(q, self._transmit)
        elif queue_index == RECEIVEQ:
            # New receive buffers: let frames the port held back in.
            if self.port is not None:
                self.port.poll(self.receive, ready=self.can_receive)

    def _transmit(self, chain) -> int:
        chain.require_read_only()
        total = chain.readable_len
        if total < VIRTIO_NET_HDR_SIZE:
            raise VirtqueueError(f"transmit chain {chain.head}: {total} bytes, "
                                 f"shorter than the {VIRTIO_NET_HDR_SIZE}-byte virtio_net_hdr")
        length = total - VIRTIO_NET_HDR_SIZE
        if length > MAX_FRAME or self.port is None:
            self.counters.tx_dropped += 1
            return 0
        frame = chain.read(VIRTIO_NET_HDR_SIZE, length)
        self.counters.tx_frames += 1
        self.counters.tx_bytes += length
        self.port.send(frame)
        return 0

    # ---- receive path (called by the board through NetPort.poll) ----------------------

    def can_receive(self) -> bool:
        """True if a receive chain is posted (the board holds frames otherwise)."""
        t = self.transport
        q = self._queue(RECEIVEQ)
        if t is None or q is None or not t.live:
            return False
        ok = False
        with t.guarded():
            ok = self._has_buffer(q)
        return ok

    @staticmethod
    def _has_buffer(q: Virtqueue) -> bool:
        """Whether a receive chain is posted. While none is, ask for a doorbell
        when one arrives (as QEMU's virtio-net does), so held frames move on at once;
        while some are, doorbells on receiveq are wasted exits, so suppress them."""
        if q.pending():
            q.disable_notification()
            return True
        return q.enable_notification()    # True if one slipped in meanwhile

    def receive(self, frame: bytes) -> bool:
        """Put ``frame`` into the next posted receive chain. Returns True if the
        guest got it, False if it was dropped (and counted)."""
        t = self.transport
        q = self._queue(RECEIVEQ)
        if t is None or q is None or not t.live:
            self.counters.rx_dropped_no_buffer += 1
            return False
        stored = False
        with t.guarded():
            stored = self._receive(q, bytes(frame))
        if not stored and not t.live:
            self.counters.rx_dropped_no_buffer += 1   # the ring was broken: NEEDS_RESET now
        return stored

    def _receive(self, q: Virtqueue, frame: bytes) -> bool:
        chain = q.pop() if self._has_buffer(q) else None
        if chain is None:
            self.counters.rx_dropped_no_buffer += 1
            return False
        chain.require_write_only()
        need = VIRTIO_NET_HDR_SIZE + len(frame)
        if chain.writable_len < need:
            self.counters.rx_dropped_too_big += 1
            q.push(chain, 0)
            self.signal_used(q)
            return False
        chain.write(RX_HEADER + frame)
        q.push(chain, need)
        self.counters.rx_frames += 1
        self.counters.rx_bytes += len(frame)
        self.signal_used(q)
        return True
