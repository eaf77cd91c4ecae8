"""Split virtqueues (virtio 1.2 §2.7), the device side.

A split queue is three structures in guest memory, placed by the driver:

  descriptor table  16 * num bytes, 16-aligned: {le64 addr; le32 len; le16 flags; le16 next}
  available ring     6 + 2 * num, 2-aligned:     {le16 flags; le16 idx; le16 ring[num]; le16 used_event}
  used ring          6 + 8 * num, 4-aligned:     {le16 flags; le16 idx; {le32 id; le32 len} ring[num];
                                                  le16 avail_event}

Everything in them is written by the guest and is hostile: every address,
length, index and flag is checked before it is used, and any violation raises
``VirtqueueError`` (the transport turns that into DEVICE_NEEDS_RESET). Host
accesses go only through ``GuestMemory`` and only inside guest RAM (see
``check_ram``), so a malformed ring can never make the host touch a byte
outside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hv.devices import state as st
from hv.memory import CONVENTIONAL_END, HIGH_BASE, GuestMemoryError

if TYPE_CHECKING:
    from hv.memory import GuestMemory

# Descriptor flags (§2.7.5).
VIRTQ_DESC_F_NEXT = 1       # the chain continues at `next`
VIRTQ_DESC_F_WRITE = 2      # device-writable (otherwise device-readable)
VIRTQ_DESC_F_INDIRECT = 4   # the buffer is a table of descriptors (§2.7.5.3)

VIRTQ_AVAIL_F_NO_INTERRUPT = 1  # driver: don't interrupt me (ignored with EVENT_IDX)
VIRTQ_USED_F_NO_NOTIFY = 1      # device: don't kick me (ignored with EVENT_IDX)

DESC_SIZE = 16
USED_ELEM_SIZE = 8
DESC_ALIGN, AVAIL_ALIGN, USED_ALIGN = 16, 2, 4   # §2.7 alignment requirements
MAX_QUEUE_SIZE = 32768          # §2.7: queue size is a power of 2, at most 32768
MAX_INDIRECT = 0x10000          # an indirect table is indexed by le16 `next`
MAX_CHAIN_BYTES = 1 << 32       # §2.7.5.2: drivers must not build chains longer than 2^32 bytes


class VirtqueueError(Exception):
    """The driver broke the virtqueue rules; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ram_ranges(mem: "GuestMemory") -> tuple[tuple[int, int], ...]:
    """The [lo, hi) runs of real RAM: conventional memory and extended memory.
    Video memory and the ROM hole are not DMA targets."""
    low = min(mem.size, CONVENTIONAL_END)
    if mem.size > HIGH_BASE:
        return ((0, low), (HIGH_BASE, mem.size))
    return ((0, low),)


def check_ram(mem: "GuestMemory", addr: int, length: int, what: str = "buffer") -> None:
    """Raise VirtqueueError unless [addr, addr+length) lies inside one RAM run."""
    if addr >= 0 and length >= 0:
        for lo, hi in ram_ranges(mem):
            if lo <= addr and addr + length <= hi:
                return
    raise VirtqueueError(f"{what} {addr:#x}+{length:#x} is outside guest RAM")


def vring_need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """§2.7.10: true if event_idx lies in [old_idx, new_idx) modulo 2^16."""
    return ((new_idx - event_idx - 1) & 0xFFFF) < ((new_idx - old_idx) & 0xFFFF)


class Chain:
    """One descriptor chain popped from the available ring.

    ``readable`` are the device-readable buffers, ``writable`` the device-writable
    ones, each a list of (guest address, length) already checked to be in RAM.
    ``written`` is the high-water mark of bytes written through ``write`` and is
    what ``Virtqueue.push`` reports by default.
    """

    __slots__ = ("mem", "head", "readable", "writable", "written", "indirect")

    def __init__(self, mem: "GuestMemory", head: int, readable: list[tuple[int, int]],
                 writable: list[tuple[int, int]], indirect: bool = False) -> None:
        self.mem = mem
        self.head = head
        self.readable = readable
        self.writable = writable
        self.written = 0
        self.indirect = indirect

    def __repr__(self) -> str:
        return (f"Chain(head={self.head}, readable={self.readable}, "
                f"writable={self.writable}, written={self.written})")

    @property
    def readable_len(self) -> int:
        return sum(n for _, n in self.readable)

    @property
    def writable_len(self) -> int:
        return sum(n for _, n in self.writable)

    def read_all(self, limit: int) -> bytes:
        """Every device-readable byte, in chain order. A chain may name up to 4 GiB
        (the same RAM many times over), so the device says how much it takes at once:
        a longer chain raises VirtqueueError and is never copied."""
        if self.readable_len > limit:
            raise VirtqueueError(f"chain {self.head}: {self.readable_len} readable bytes, "
                                 f"more than the {limit} the device takes in one chain")
        return b"".join(self.mem.read(a, n) for a, n in self.readable)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` device-readable bytes starting ``offset`` bytes into the
        readable part; raises VirtqueueError if the chain is too short (a device
        that needs a header calls this and so refuses malformed requests)."""
        if offset < 0 or length < 0 or offset + length > self.readable_len:
            raise VirtqueueError(f"chain {self.head}: read {offset}+{length} beyond "
                                 f"{self.readable_len} readable bytes")
        out = bytearray()
        for addr, n in self.readable:
            if offset >= n:
                offset -= n
                continue
            take = min(n - offset, length - len(out))
            out += self.mem.read(addr + offset, take)
            offset = 0
            if len(out) == length:
                break
        return bytes(out)

    def write(self, data: bytes, offset: int = 0) -> int:
        """Scatter ``data`` into the device-writable buffers, starting ``offset``
        bytes in; returns how many bytes fit. Never touches a readable buffer."""
        if offset < 0:
            raise VirtqueueError(f"chain {self.head}: negative write offset")
        done = 0
        pos = offset
        for addr, n in self.writable:
            if done == len(data):
                break
            if pos >= n:
                pos -= n
                continue
            take = min(n - pos, len(data) - done)
            self.mem.write(addr + pos, data[done:done + take])
            done += take
            pos = 0
        self.written = max(self.written, offset + done) if done else self.written
        return done

    def require(self, readable: int = 0, writable: int = 0) -> None:
        """Refuse a chain with fewer than the given byte counts (a device's
        request format); raises VirtqueueError."""
        if self.readable_len < readable or self.writable_len < writable:
            raise VirtqueueError(
                f"chain {self.head}: needs {readable} readable / {writable} writable bytes, "
                f"has {self.readable_len} / {self.writable_len}")

    def require_read_only(self) -> None:
        """For queues where the device only consumes (a transmit queue)."""
        if self.writable:
            raise VirtqueueError(f"chain {self.head}: device-writable buffer on a read-only queue")

    def require_write_only(self) -> None:
        """For queues where the device only fills (a receive queue)."""
        if self.readable:
            raise VirtqueueError(f"chain {self.head}: device-readable buffer on a write-only queue")


@dataclass
class VirtioStats:
    """Per-device counters, for 'exits per request batch' style benchmarks."""

    doorbells: int = 0            # QueueNotify writes that reached the device
    ignored_doorbells: int = 0    # QueueNotify while not live / bad index
    chains: int = 0               # used-ring entries pushed
    interrupts: int = 0           # interrupt notifications raised (edges offered)
    suppressed: int = 0           # signal_used calls that needed no interrupt
    config_changes: int = 0
    errors: int = 0               # times the device was put in NEEDS_RESET


class Virtqueue:
    """The device's view of one split virtqueue.

    The transport writes ``num``, ``desc``, ``driver`` (avail ring) and ``device``
    (used ring) from the registers, calls ``validate()`` when the driver sets
    QueueReady, and sets ``event_idx`` / ``indirect`` from the negotiated features.
    """

    def __init__(self, mem: "GuestMemory", max_size: int, index: int = 0,
                 stats: VirtioStats | None = None) -> None:
        self.mem = mem
        self.max_size = max_size
        self.index = index
        self.stats = stats if stats is not None else VirtioStats()
        self.reset()

    def reset(self) -> None:
        self.num = self.max_size       # QueueNum defaults to the maximum (as rust-vmm)
        self.ready = False
        self.desc = 0
        self.driver = 0                # available ring
        self.device = 0                # used ring
        self.event_idx = False
        self.indirect = False
        self.next_avail = 0            # free-running 16-bit counters
        self.next_used = 0
        self.signalled_used = 0        # used idx when we last decided about an interrupt
        self.popped = 0
        self.pushed = 0

    # ---- snapshots ---------------------------------------------------------

    _ADDRS = ("desc", "driver", "device")
    _INDICES = ("next_avail", "next_used", "signalled_used")

    def state(self) -> dict:
        """Size, ring addresses, readiness, the negotiated EVENT_IDX / INDIRECT_DESC, the
        free-running indices (the last avail seen, the next used, the used idx last
        signalled) and the chain counters. The rings themselves are guest RAM."""
        return {"num": self.num, "ready": self.ready, "event_idx": self.event_idx,
                "indirect": self.indirect, **{n: getattr(self, n) for n in self._ADDRS},
                **{n: getattr(self, n) for n in self._INDICES},
                "popped": self.popped, "pushed": self.pushed}

    def load_state(self, state: dict) -> None:
        """Restore a saved queue; a ready one is validated again (its rings must lie in
        this machine's RAM), else VirtqueueError."""
        who = f"virtqueue {self.index}"
        num = st.integer(state, "num", who, 0, 0xFFFFFFFF)
        flags = {n: st.flag(state, n, who) for n in ("ready", "event_idx", "indirect")}
        addrs = {n: st.integer(state, n, who) for n in self._ADDRS}
        indices = {n: st.integer(state, n, who, 0, 0xFFFF) for n in self._INDICES}
        counts = {n: st.integer(state, n, who) for n in ("popped", "pushed")}
        self.reset()
        self.num = num
        for name, value in {**addrs, **indices, **counts}.items():
            setattr(self, name, value)
        self.event_idx, self.indirect = flags["event_idx"], flags["indirect"]
        if flags["ready"]:
            try:
                self.validate()
            except VirtqueueError as e:
                raise ValueError(f"{who}: {e.reason}") from None
        self.ready = flags["ready"]

    # ---- setup -------------------------------------------------------------

    def validate(self) -> None:
        """Check size, alignment and placement before the queue goes live."""
        num = self.num
        if not 0 < num <= self.max_size:
            raise VirtqueueError(f"queue {self.index}: size {num} not in 1..{self.max_size}")
        if num & (num - 1) or num > MAX_QUEUE_SIZE:
            raise VirtqueueError(f"queue {self.index}: size {num} is not a power of 2")
        for name, addr, align, length in (
                ("descriptor table", self.desc, DESC_ALIGN, DESC_SIZE * num),
                ("available ring", self.driver, AVAIL_ALIGN, 6 + 2 * num),
                ("used ring", self.device, USED_ALIGN, 6 + USED_ELEM_SIZE * num)):
            if addr % align:
                raise VirtqueueError(f"queue {self.index}: {name} at {addr:#x} not {align}-aligned")
            check_ram(self.mem, addr, length, f"queue {self.index}: {name}")

    # ---- guest memory, checked ---------------------------------------------

    def _u16(self, addr: int) -> int:
        try:
            return self.mem.u16(addr)
        except GuestMemoryError as e:  # unreachable after validate(); belt and braces
            raise VirtqueueError(str(e)) from None

    def _put16(self, addr: int, value: int) -> None:
        check_ram(self.mem, addr, 2, f"queue {self.index}: ring field")
        self.mem.put16(addr, value)

    @property
    def avail_idx(self) -> int:
        return self._u16(self.driver + 2)

    @property
    def avail_flags(self) -> int:
        return self._u16(self.driver)

    @property
    def used_event(self) -> int:
        return self._u16(self.driver + 4 + 2 * self.num)

    @property                       # (a trailing word: mutmut 2 keys its cache by line text)
    def avail_event(self) -> int:
        return self._u16(self.device + 4 + USED_ELEM_SIZE * self.num)

    def pending(self) -> int:
        """How many chains the driver has made available and we have not popped."""
        ahead = (self.avail_idx - self.next_avail) & 0xFFFF
        if ahead > self.num:
            raise VirtqueueError(f"queue {self.index}: avail idx runs {ahead} ahead of "
                                 f"{self.next_avail} with only {self.num} entries")
        return ahead

    # ---- the device's operations -------------------------------------------

    def pop(self) -> Chain | None:
        """The next available chain, or None if the ring is empty."""
        if not self.ready:
            return None
        if not self.pending():
            return None
        slot = self.driver + 4 + 2 * (self.next_avail % self.num)
        head = self._u16(slot)
        chain = self._walk(head)
        self.next_avail = (self.next_avail + 1) & 0xFFFF
        self.popped += 1
        return chain

    def _read_desc(self, table: int, i: int) -> tuple[int, int, int, int]:
        raw = self.mem.read(table + DESC_SIZE * i, DESC_SIZE)  # table range already checked
        return (int.from_bytes(raw[0:8], "little"), int.from_bytes(raw[8:12], "little"),
                int.from_bytes(raw[12:14], "little"), int.from_bytes(raw[14:16], "little"))

    def _walk(self, head: int) -> Chain:
        q = f"queue {self.index}"
        if head >= self.num:
            raise VirtqueueError(f"{q}: descriptor index {head} >= queue size {self.num}")
        readable: list[tuple[int, int]] = []
        writable: list[tuple[int, int]] = []
        table, table_len = self.desc, self.num
        idx, seen, total = head, 0, 0
        in_indirect = False
        while True:
            if idx >= table_len:
                raise VirtqueueError(f"{q}: descriptor index {idx} >= table size {table_len}")
            seen += 1
            if seen > table_len:   # more visits than entries: the chain loops
                raise VirtqueueError(f"{q}: chain from {head} loops or is longer than {table_len}")
            addr, length, flags, nxt = self._read_desc(table, idx)
            if flags & VIRTQ_DESC_F_INDIRECT:
                if in_indirect:
                    raise VirtqueueError(f"{q}: nested indirect descriptor in chain {head}")
                if not self.indirect:
                    raise VirtqueueError(f"{q}: indirect descriptor without VIRTIO_F_INDIRECT_DESC")
                if flags & VIRTQ_DESC_F_NEXT:
                    raise VirtqueueError(f"{q}: indirect descriptor with NEXT set")
                if length == 0 or length % DESC_SIZE or length // DESC_SIZE > MAX_INDIRECT:
                    raise VirtqueueError(f"{q}: indirect table length {length} is not a "
                                         f"non-zero multiple of 16 (max {MAX_INDIRECT} entries)")
                if addr % DESC_ALIGN:
                    raise VirtqueueError(f"{q}: indirect table at {addr:#x} not 16-aligned")
                check_ram(self.mem, addr, length, f"{q}: indirect table")
                table, table_len = addr, length // DESC_SIZE
                idx, seen, in_indirect = 0, 0, True
                continue
            check_ram(self.mem, addr, length, f"{q}: descriptor {idx} buffer")
            total += length
            if total > MAX_CHAIN_BYTES:
                raise VirtqueueError(f"{q}: chain from {head} exceeds 2^32 bytes")
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append((addr, length))
            elif writable:
                # §2.7.4.2: device-writable descriptors come after every readable one.
                raise VirtqueueError(f"{q}: device-readable descriptor after a writable one "
                                     f"in chain {head}")
            else:
                readable.append((addr, length))
            if not flags & VIRTQ_DESC_F_NEXT:
                return Chain(self.mem, head, readable, writable, in_indirect)
            idx = nxt

    def push(self, chain: Chain, written_len: int | None = None) -> None:
        """Return a chain to the driver through the used ring."""
        if not self.ready:
            return
        n = chain.written if written_len is None else written_len
        n = max(0, min(n, chain.writable_len))   # never claim more than the driver gave
        elem = self.device + 4 + USED_ELEM_SIZE * (self.next_used % self.num)
        check_ram(self.mem, elem, USED_ELEM_SIZE, f"queue {self.index}: used element")
        self.mem.write(elem, chain.head.to_bytes(4, "little") + n.to_bytes(4, "little"))
        self.next_used = (self.next_used + 1) & 0xFFFF
        # The element must be visible before idx (one host thread: program order suffices).
        self._put16(self.device + 2, self.next_used)
        self.pushed += 1
        self.stats.chains += 1

    def needs_notification(self) -> bool:
        """Whether the driver wants an interrupt for what was pushed since the
        last call (§2.7.7.2 / §2.7.10)."""
        if not self.ready:
            return False
        old, new = self.signalled_used, self.next_used
        self.signalled_used = new
        if old == new:
            return False
        if self.event_idx:
            return vring_need_event(self.used_event, new, old)
        return not self.avail_flags & VIRTQ_AVAIL_F_NO_INTERRUPT

    def set_avail_event(self, value: int | None = None) -> None:
        """EVENT_IDX: ask for a doorbell once the driver's avail idx passes
        ``value`` (default: the next chain we will pop). A device that leaves it
        behind while busy gets no doorbells for chains added meanwhile."""
        if self.ready and self.event_idx:
            self._put16(self.device + 4 + USED_ELEM_SIZE * self.num,
                        self.next_avail if value is None else value)

    def disable_notification(self) -> None:
        """Ask the driver not to kick (while the device drains the ring)."""
        if self.ready and not self.event_idx:
            self._put16(self.device, VIRTQ_USED_F_NO_NOTIFY)
        # With EVENT_IDX, not moving avail_event is what suppresses doorbells.

    def enable_notification(self) -> bool:
        """Ask for doorbells again; returns True if chains arrived meanwhile, in
        which case the device must keep draining (closes the race with the driver)."""
        if not self.ready:
            return False
        if self.event_idx:
            self.set_avail_event()
        else:
            self._put16(self.device, 0)
        return self.pending() > 0
