"""virtio-blk (virtio 1.2 §5.2): a block device over hv's virtio core.

One request queue. A request is one descriptor chain laid out as

    struct virtio_blk_req {
        le32 type; le32 reserved; le64 sector;   16 bytes, device-readable
        u8 data[];                               readable for OUT, writable for IN/GET_ID
        u8 status;                               the last device-writable byte
    };

Byte offsets decide, not descriptor boundaries (VERSION_1 implies ANY_LAYOUT,
§2.7.4.3): the header is the first 16 readable bytes, OUT data the readable bytes
after it, IN data every writable byte but the last, and the status the last.

Malformed chains: a chain whose readable part is shorter than the header (which
includes a header placed in device-writable descriptors) or that has no writable
byte for the status cannot be answered, so it is a device error: the handler raises
``VirtqueueError``, the core puts the device in DEVICE_NEEDS_RESET with the reason
(as QEMU's ``virtio_error("virtio-blk missing headers")``). A well-formed chain
with a bad request (unknown type, out-of-range sector, data not a multiple of 512
bytes, a write to a read-only disk, a host I/O error) completes with
VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP and the device carries on.

Data path: one ``disk.read``/``disk.write`` per request (up to ``MAX_IO_BYTES``;
a larger request is cut into pieces of that size so a hostile request cannot make
the host allocate gigabytes at once). Reads scatter a memoryview of the disk's
bytes into the writable buffers with one ``GuestMemory.write`` per buffer (bounds
check + drop translated code for that range, no per-byte work); writes gather the
readable buffers from ``mem.view`` into one bytearray.
"""
from __future__ import annotations

import struct
from collections import Counter
from typing import TYPE_CHECKING

from hv.devices import state as st
from hv.devices.disk_store import SECTOR, DiskError
from hv.virtio import VIRTIO_ID_BLOCK, VirtioDevice, VirtqueueError

if TYPE_CHECKING:
    from hv.devices.disk_store import Disk
    from hv.virtio.queue import Chain

# Feature bits (§5.2.3).
VIRTIO_BLK_F_SIZE_MAX = 1    # size_max is valid
VIRTIO_BLK_F_SEG_MAX = 2     # seg_max is valid
VIRTIO_BLK_F_GEOMETRY = 4    # geometry is valid
VIRTIO_BLK_F_RO = 5          # the disk is read-only
VIRTIO_BLK_F_BLK_SIZE = 6    # blk_size is valid
VIRTIO_BLK_F_FLUSH = 9       # VIRTIO_BLK_T_FLUSH is supported

# Request types (§5.2.6).
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_T_GET_LIFETIME = 10
VIRTIO_BLK_T_DISCARD = 11
VIRTIO_BLK_T_WRITE_ZEROES = 13
VIRTIO_BLK_T_SECURE_ERASE = 14

# Status byte values.
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2

VIRTIO_BLK_ID_BYTES = 20     # GET_ID: the serial, NUL-padded, no terminator at 20 bytes

REQ_HEADER = struct.Struct("<IIQ")   # type, reserved, sector
QUEUE_SIZE = 256
SEG_MAX = QUEUE_SIZE - 2             # as QEMU: the header and status take two descriptors
SIZE_MAX = 1 << 20                   # largest single data buffer we advertise
MAX_IO_BYTES = 4 << 20               # host memory bound for one disk call

# struct virtio_blk_config (§5.2.4) up to the write-zeroes fields; features we do
# not offer (topology, discard, write zeroes, secure erase) leave their fields 0.
CONFIG = struct.Struct("<QIIHBBIBBHIBBHIIIIIB3x")
CONFIG_SIZE = CONFIG.size            # 60 bytes


class VirtioBlk(VirtioDevice):
    """``VirtioBlk(disk, serial=None)``: ``disk`` a ``devices.disk_store.Disk``.
    ``serial`` (up to 20 bytes) is what GET_ID returns; default from the file name.

    Counters: ``requests`` (a Counter by request type), ``disk_calls``,
    ``bytes_read``, ``bytes_written``, ``errors`` (IOERR/UNSUPP completions).
    Doorbells and interrupts are in the transport's ``VirtioStats``."""

    name = "blk"
    device_id = VIRTIO_ID_BLOCK
    num_queues = 1
    queue_max = QUEUE_SIZE

    def __init__(self, disk: "Disk", serial: str | bytes | None = None) -> None:
        super().__init__()
        self.disk = disk
        # Instance attribute: F_RO depends on the disk (the transport reads it at construction).
        self.features = ((1 << VIRTIO_BLK_F_SIZE_MAX) | (1 << VIRTIO_BLK_F_SEG_MAX)
                         | (1 << VIRTIO_BLK_F_GEOMETRY) | (1 << VIRTIO_BLK_F_BLK_SIZE)
                         | (1 << VIRTIO_BLK_F_FLUSH)
                         | ((1 << VIRTIO_BLK_F_RO) if disk.readonly else 0))
        if serial is None:
            path = getattr(disk, "path", None)
            serial = f"hv-{path.name}" if path is not None else "hv-disk"
        if isinstance(serial, str):
            serial = serial.encode("ascii", "replace")
        self.serial = bytes(serial[:VIRTIO_BLK_ID_BYTES]).ljust(VIRTIO_BLK_ID_BYTES, b"\0")
        g = disk.geometry
        self.config = bytearray(CONFIG.pack(
            disk.sectors,                 # capacity in 512-byte sectors, whatever blk_size says
            SIZE_MAX, SEG_MAX,
            min(g.cylinders, 0xFFFF), min(g.heads, 0xFF), min(g.sectors, 0xFF),
            SECTOR,                       # blk_size: the image is addressed in 512-byte sectors
            0, 0, 0, 0,                   # topology (not offered)
            0, 0, 1,                      # writeback, unused0, num_queues (MQ not offered)
            0, 0, 0, 0, 0, 0))            # discard / write zeroes (not offered)
        self.handlers = {
            VIRTIO_BLK_T_IN: self._do_in,
            VIRTIO_BLK_T_OUT: self._do_out,
            VIRTIO_BLK_T_FLUSH: self._do_flush,
            VIRTIO_BLK_T_GET_ID: self._do_get_id,
        }
        self.requests: Counter[int] = Counter()
        self.disk_calls = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.errors = 0

    # ---- virtio ops ------------------------------------------------------------

    def notify(self, queue_index: int) -> None:
        if queue_index == 0 and self.queues:
            self.drain(self.queues[0], self._request)

    # ---- snapshots -----------------------------------------------------------------

    def state(self) -> dict:
        """The request counters: a request completes within its doorbell, so nothing is in
        flight between two slices. The image is the machine's disk (a reference)."""
        return st.versioned(requests=sorted(self.requests.items()), disk_calls=self.disk_calls,
                            bytes_read=self.bytes_read, bytes_written=self.bytes_written,
                            errors=self.errors)

    def load_state(self, state: dict) -> None:
        who = "virtio-blk"
        st.check_version(state, who)
        requests = st.field(state, "requests", who)
        if not isinstance(requests, list) or any(
                not isinstance(e, list) or len(e) != 2 or type(e[0]) is not int
                or type(e[1]) is not int for e in requests):
            raise ValueError(f"{who}: saved requests are not (type, count) pairs")
        counts = {n: st.integer(state, n, who)
                  for n in ("disk_calls", "bytes_read", "bytes_written", "errors")}
        self.requests = Counter({t: n for t, n in requests})
        for name, value in counts.items():
            setattr(self, name, value)

    # ---- one request --------------------------------------------------------------

    def _request(self, chain: "Chain") -> int:
        rlen, wlen = chain.readable_len, chain.writable_len
        if rlen < REQ_HEADER.size:
            raise VirtqueueError(f"virtio-blk: chain {chain.head} has {rlen} device-readable bytes, "
                                 f"the request header needs {REQ_HEADER.size}")
        if wlen < 1:
            raise VirtqueueError(f"virtio-blk: chain {chain.head} has no device-writable status byte")
        rtype, _reserved, sector = REQ_HEADER.unpack(chain.read(0, REQ_HEADER.size))
        self.requests[rtype] += 1
        handler = self.handlers.get(rtype)
        status = VIRTIO_BLK_S_UNSUPP if handler is None else \
            handler(chain, sector, rlen - REQ_HEADER.size, wlen - 1)
        if status != VIRTIO_BLK_S_OK:
            self.errors += 1
        chain.write(bytes((status,)), wlen - 1)
        # Used length: bytes written into the chain; the status is the last writable byte,
        # so this is the whole writable part (as QEMU reports it).
        return chain.written

    def _in_range(self, sector: int, count: int) -> bool:
        return sector + count <= self.disk.sectors

    def _do_in(self, chain: "Chain", sector: int, _rdata: int, wdata: int) -> int:
        if wdata % SECTOR or not self._in_range(sector, wdata // SECTOR):
            return VIRTIO_BLK_S_IOERR
        done = 0
        try:
            while done < wdata:
                n = min(wdata - done, MAX_IO_BYTES)
                data = self.disk.read(sector + done // SECTOR, n // SECTOR)
                self.disk_calls += 1
                # A memoryview so the per-buffer slices inside Chain.write are not copies.
                chain.write(memoryview(data), done)
                done += n
        except DiskError:
            return VIRTIO_BLK_S_IOERR
        self.bytes_read += done
        return VIRTIO_BLK_S_OK

    def _do_out(self, chain: "Chain", sector: int, rdata: int, _wdata: int) -> int:
        # §5.2.6.2: with F_RO offered, a write fails and must not write any data.
        if self.disk.readonly or rdata % SECTOR or not self._in_range(sector, rdata // SECTOR):
            return VIRTIO_BLK_S_IOERR
        done = 0
        try:
            while done < rdata:
                n = min(rdata - done, MAX_IO_BYTES)
                self.disk.write(sector + done // SECTOR, self._gather(chain, REQ_HEADER.size + done, n))
                self.disk_calls += 1
                done += n
        except DiskError:
            return VIRTIO_BLK_S_IOERR
        self.bytes_written += done
        return VIRTIO_BLK_S_OK

    def _gather(self, chain: "Chain", offset: int, length: int) -> bytearray:
        """``length`` readable bytes from ``offset``, copied straight out of guest
        memory into one buffer (Chain.read copies each piece twice more)."""
        out = bytearray(length)
        mem, pos = chain.mem, 0
        for addr, n in chain.readable:
            if offset >= n:
                offset -= n
                continue
            take = min(n - offset, length - pos)
            mem.check(addr + offset, take)      # the queue checked it already; stay honest
            out[pos:pos + take] = mem.view[addr + offset:addr + offset + take]
            pos += take
            offset = 0
            if pos == length:
                break
        return out

    def _do_flush(self, chain: "Chain", sector: int, _rdata: int, _wdata: int) -> int:
        try:
            self.disk.flush()
        except DiskError:
            return VIRTIO_BLK_S_IOERR
        self.disk_calls += 1
        return VIRTIO_BLK_S_OK

    def _do_get_id(self, chain: "Chain", sector: int, _rdata: int, wdata: int) -> int:
        # A shorter buffer gets the serial truncated (as QEMU), not an error.
        chain.write(self.serial[:min(wdata, VIRTIO_BLK_ID_BYTES)])
        return VIRTIO_BLK_S_OK


__all__ = [
    "VirtioBlk", "VIRTIO_BLK_F_SIZE_MAX", "VIRTIO_BLK_F_SEG_MAX", "VIRTIO_BLK_F_GEOMETRY",
    "VIRTIO_BLK_F_RO", "VIRTIO_BLK_F_BLK_SIZE", "VIRTIO_BLK_F_FLUSH",
    "VIRTIO_BLK_T_IN", "VIRTIO_BLK_T_OUT", "VIRTIO_BLK_T_FLUSH", "VIRTIO_BLK_T_GET_ID",
    "VIRTIO_BLK_S_OK", "VIRTIO_BLK_S_IOERR", "VIRTIO_BLK_S_UNSUPP", "VIRTIO_BLK_ID_BYTES",
    "CONFIG_SIZE", "SEG_MAX", "SIZE_MAX",
]
