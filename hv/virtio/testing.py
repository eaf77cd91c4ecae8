"""A mock virtio driver (rust-vmm style) for testing device models without a guest.

It lays virtqueues out in a ``GuestMemory``, drives a ``VirtioMmio`` through
32-bit register accesses exactly as a guest driver would (reset, ACKNOWLEDGE,
DRIVER, features, FEATURES_OK, queue setup, DRIVER_OK), builds direct and
indirect chains, kicks, and reads the used ring back.

    drv = MockDriver(transport, mem)
    drv.init()                                   # accept every offered feature
    q = drv.queues[0]
    head = q.add([b"request"], [64])             # one readable, one writable buffer
    drv.kick(0)
    [(id, length, data)] = q.used()              # data: bytes the device wrote
"""
from __future__ import annotations

from typing import NamedTuple

from hv.virtio import Status
from hv.virtio import mmio as R
from hv.virtio.queue import (DESC_SIZE, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT,
                             VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE)


class MockDriverError(Exception):
    pass


class Used(NamedTuple):
    id: int
    len: int
    data: bytes   # the first ``len`` bytes of the chain's writable buffers


class DriverQueue:
    """The driver's half of one split virtqueue."""

    def __init__(self, driver: "MockDriver", index: int, size: int) -> None:
        self.driver = driver
        self.mem = driver.mem
        self.index = index
        self.size = size
        self.desc = driver.alloc(DESC_SIZE * size, 16)
        self.avail = driver.alloc(6 + 2 * size, 2)
        self.used_ring = driver.alloc(6 + 8 * size, 4)
        self.free = list(range(size))
        self.avail_idx = 0
        self.last_used = 0
        self.inflight: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}

    # ---- raw layout, also for building malformed rings -------------------------

    def write_desc(self, i: int, addr: int, length: int, flags: int = 0, next: int = 0,
                   table: int | None = None) -> None:
        base = self.desc if table is None else table
        self.mem.write(base + DESC_SIZE * i,
                       addr.to_bytes(8, "little") + length.to_bytes(4, "little")
                       + flags.to_bytes(2, "little") + next.to_bytes(2, "little"))

    def publish(self, head: int) -> None:
        """Put ``head`` in the available ring and bump avail idx."""
        self.mem.put16(self.avail + 4 + 2 * (self.avail_idx % self.size), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.mem.put16(self.avail + 2, self.avail_idx)

    def set_avail_idx(self, value: int) -> None:
        self.avail_idx = value & 0xFFFF
        self.mem.put16(self.avail + 2, self.avail_idx)

    def set_used_event(self, value: int) -> None:
        self.mem.put16(self.avail + 4 + 2 * self.size, value)

    def set_no_interrupt(self, on: bool = True) -> None:
        self.mem.put16(self.avail, VIRTQ_AVAIL_F_NO_INTERRUPT if on else 0)

    @property
    def avail_event(self) -> int:
        return self.mem.u16(self.used_ring + 4 + 8 * self.size)

    @property
    def used_flags(self) -> int:
        return self.mem.u16(self.used_ring)

    @property
    def used_idx(self) -> int:
        return self.mem.u16(self.used_ring + 2)

    # ---- chains -------------------------------------------------------------------

    def _buffers(self, readable, writable) -> list[tuple[int, int, int]]:
        out = []
        for data in readable:
            addr = self.driver.alloc(max(len(data), 1))
            self.mem.write(addr, bytes(data))
            out.append((addr, len(data), 0))
        for n in writable:
            addr = self.driver.alloc(max(n, 1))
            self.mem.write(addr, bytes(n))
            out.append((addr, n, VIRTQ_DESC_F_WRITE))
        return out

    def add(self, readable=(), writable=(), indirect: bool = False, publish: bool = True) -> int:
        """Build a chain: ``readable`` a list of bytes the device may read,
        ``writable`` a list of buffer sizes it may fill. Returns the head."""
        bufs = self._buffers(readable, writable)
        if not bufs:
            raise MockDriverError("a chain needs at least one buffer")
        if indirect:
            table = self.driver.alloc(DESC_SIZE * len(bufs), 16)
            for i, (addr, n, flags) in enumerate(bufs):
                more = VIRTQ_DESC_F_NEXT if i + 1 < len(bufs) else 0
                self.write_desc(i, addr, n, flags | more, i + 1, table=table)
            descs = self._take(1)
            self.write_desc(descs[0], table, DESC_SIZE * len(bufs), VIRTQ_DESC_F_INDIRECT)
        else:
            descs = self._take(len(bufs))
            for j, (addr, n, flags) in enumerate(bufs):
                more = VIRTQ_DESC_F_NEXT if j + 1 < len(bufs) else 0
                nxt = descs[j + 1] if more else 0
                self.write_desc(descs[j], addr, n, flags | more, nxt)
        head = descs[0]
        self.inflight[head] = (descs, [(a, n) for a, n, f in bufs if f & VIRTQ_DESC_F_WRITE])
        if publish:
            self.publish(head)
        return head

    def _take(self, n: int) -> list[int]:
        if len(self.free) < n:
            raise MockDriverError(f"queue {self.index}: {n} descriptors wanted, {len(self.free)} free")
        taken, self.free = self.free[:n], self.free[n:]
        return taken

    def used(self) -> list[Used]:
        """New used-ring entries since the last call (their descriptors are freed)."""
        out = []
        idx = self.used_idx
        while self.last_used != idx:
            elem = self.used_ring + 4 + 8 * (self.last_used % self.size)
            uid, ulen = self.mem.u32(elem), self.mem.u32(elem + 4)
            descs, wbufs = self.inflight.pop(uid, ([], []))
            self.free += descs
            data, left = bytearray(), ulen
            for addr, n in wbufs:
                take = min(n, left)
                data += self.mem.read(addr, take)
                left -= take
            out.append(Used(uid, ulen, bytes(data)))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out


class MockDriver:
    """Drives one VirtioMmio transport through its registers."""

    def __init__(self, transport, mem, heap: int = 0x10000, heap_end: int = 0x90000) -> None:
        self.transport = transport
        self.mem = mem
        self._next = heap
        self._end = heap_end
        self.queues: dict[int, DriverQueue] = {}

    def alloc(self, size: int, align: int = 16) -> int:
        addr = -(-self._next // align) * align
        if addr + size > self._end:
            raise MockDriverError("mock driver heap exhausted")
        self._next = addr + size
        return addr

    # ---- registers -----------------------------------------------------------------

    def read(self, offset: int) -> int:
        return self.transport.read(offset, 4)

    def write(self, offset: int, value: int) -> None:
        self.transport.write(offset, 4, value & 0xFFFFFFFF)

    @property
    def status(self) -> int:
        return self.read(R.StatusReg)

    def set_status(self, bits: int) -> None:
        self.write(R.StatusReg, bits)

    def add_status(self, bits: int) -> None:
        self.write(R.StatusReg, self.status | bits)

    def device_features(self) -> int:
        words = []
        for sel in (0, 1):
            self.write(R.DeviceFeaturesSel, sel)
            words.append(self.read(R.DeviceFeatures))
        return words[0] | words[1] << 32

    def write_features(self, features: int) -> None:
        for sel in (0, 1):
            self.write(R.DriverFeaturesSel, sel)
            self.write(R.DriverFeatures, features >> (32 * sel))

    def negotiate(self, features: int | None = None) -> int:
        """ACK, DRIVER, write features (default: all offered), FEATURES_OK.
        Raises MockDriverError if the device refuses FEATURES_OK."""
        self.set_status(0)
        self.queues.clear()
        self.add_status(Status.ACKNOWLEDGE)
        self.add_status(Status.DRIVER)
        offered = self.device_features()
        if features is None:
            features = offered
        self.write_features(features)
        self.add_status(Status.FEATURES_OK)
        if not self.status & Status.FEATURES_OK:
            raise MockDriverError(f"device refused features {features:#x}")
        return features

    def setup_queue(self, index: int, size: int | None = None) -> DriverQueue:
        self.write(R.QueueSel, index)
        qmax = self.read(R.QueueNumMax)
        if qmax == 0:
            raise MockDriverError(f"queue {index} not available")
        size = qmax if size is None else size
        q = DriverQueue(self, index, size)
        self.write(R.QueueNum, size)
        for lo, addr in ((R.QueueDescLow, q.desc), (R.QueueDriverLow, q.avail),
                         (R.QueueDeviceLow, q.used_ring)):
            self.write(lo, addr)
            self.write(lo + 4, addr >> 32)
        self.write(R.QueueReady, 1)
        self.queues[index] = q
        return q

    def init(self, features: int | None = None, queue_size: int | None = None,
             num_queues: int | None = None) -> int:
        """The whole §3.1.1 sequence; returns the negotiated features."""
        f = self.negotiate(features)
        n = len(self.transport.queues) if num_queues is None else num_queues
        for i in range(n):
            self.setup_queue(i, queue_size)
        self.add_status(Status.DRIVER_OK)
        if self.status & (Status.DEVICE_NEEDS_RESET | Status.FAILED) or not self.status & Status.DRIVER_OK:
            raise MockDriverError(f"device did not go live: status {self.status:#x}, "
                                  f"{self.transport.last_error}")
        return f

    def kick(self, index: int) -> None:
        self.write(R.QueueNotify, index)

    def ack_interrupt(self) -> int:
        """What an interrupt handler does: read InterruptStatus, acknowledge it."""
        isr = self.read(R.InterruptStatus)
        self.write(R.InterruptACK, isr)
        return isr

    def config_read(self, offset: int, size: int = 4) -> int:
        return self.transport.read(R.Config + offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        self.transport.write(R.Config + offset, size, value)
