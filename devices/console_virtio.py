"""virtio-console (virtio 1.2 §5.3): one port, no MULTIPORT, over hv's virtio core.

Queues: receiveq0 (0) carries host input to the guest in buffers the driver
posts (device-writable only); transmitq0 (1) carries guest output (device-readable
only). A chain with the wrong kind of buffer for its queue is a ring violation
(``VirtqueueError`` -> DEVICE_NEEDS_RESET), and so is a transmit chain longer than
``TX_CHAIN_MAX``: the host never copies more than that out of one chain.

Host input (``receive``) is appended to a bounded buffer and copied into posted
receive buffers, in order, as many as it fills; what does not fit waits for the
driver to post more (its doorbell on queue 0 delivers it). Bytes past the bound
are dropped and counted, as a UART overrun would. Input held when the driver
resets the device is kept: it is the host's stream, not the guest's state.

Config (§5.3.4): cols and rows (VIRTIO_CONSOLE_F_SIZE; ``resize`` changes them and
sends a configuration change notification), max_nr_ports (only meaningful with
MULTIPORT; 1 here) and emerg_wr (VIRTIO_CONSOLE_F_EMERG_WRITE: a driver may write a
character there at any time, even before the queues exist; it goes to the sink).

``receive`` and ``resize`` touch guest memory: call them from the machine's
thread (between vCPU slices), as the UART's input path is.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable

from hv.devices import state as st
from hv.virtio import VIRTIO_ID_CONSOLE, VirtioDevice

if TYPE_CHECKING:
    from hv.virtio.queue import Chain, Virtqueue

# Feature bits (§5.3.3).
VIRTIO_CONSOLE_F_SIZE = 0          # cols/rows are valid
VIRTIO_CONSOLE_F_MULTIPORT = 1     # not offered: one port, no control queues
VIRTIO_CONSOLE_F_EMERG_WRITE = 2   # emerg_wr is valid

RECEIVEQ0 = 0
TRANSMITQ0 = 1

# struct virtio_console_config: le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr.
CONFIG = struct.Struct("<HHII")
CFG_COLS, CFG_ROWS, CFG_MAX_NR_PORTS, CFG_EMERG_WR = 0, 2, 4, 8

RX_LIMIT = 64 * 1024               # host input held for the guest before dropping
# The longest transmit chain taken (Linux sends at most 32 KiB a buffer). A chain may name
# up to 4 GiB by repeating one RAM range; a longer one is a driver error (NEEDS_RESET).
TX_CHAIN_MAX = 1 << 20


class VirtioConsole(VirtioDevice):
    """``VirtioConsole(sink=None, cols=80, rows=25, rx_limit=RX_LIMIT)``.

    ``sink(bytes)`` gets the guest's output; ``receive(data)`` queues host input
    (returns how many bytes were accepted). Counters: ``tx_bytes``, ``rx_bytes``
    (delivered into guest buffers), ``rx_dropped``."""

    name = "console"
    device_id = VIRTIO_ID_CONSOLE
    features = (1 << VIRTIO_CONSOLE_F_SIZE) | (1 << VIRTIO_CONSOLE_F_EMERG_WRITE)
    num_queues = 2
    queue_max = 256

    def __init__(self, sink: Callable[[bytes], object] | None = None, cols: int = 80,
                 rows: int = 25, rx_limit: int = RX_LIMIT) -> None:
        super().__init__()
        self.sink = sink
        self.rx_limit = rx_limit
        self.pending = bytearray()     # host input not yet in a guest buffer
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.rx_dropped = 0
        self.cols, self.rows = cols & 0xFFFF, rows & 0xFFFF
        self.config = bytearray(CONFIG.pack(self.cols, self.rows, 1, 0))

    # ---- host side ----------------------------------------------------------------

    def receive(self, data: bytes) -> int:
        """Queue host input for the guest; returns the bytes accepted (the rest
        is dropped because the guest has not taken ``rx_limit`` bytes yet)."""
        room = max(0, self.rx_limit - len(self.pending))
        take = min(room, len(data))
        self.pending += data[:take]
        self.rx_dropped += len(data) - take
        self._deliver()
        return take

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols & 0xFFFF, rows & 0xFFFF
        CONFIG.pack_into(self.config, 0, self.cols, self.rows, 1, 0)
        if self.transport is not None:
            self.transport.config_changed()

    # ---- snapshots -------------------------------------------------------------------

    def state(self) -> dict:
        """Host input not yet in a guest buffer, the size shown in config space, and the
        counters. Output is written to the sink as the guest sends it: nothing is held."""
        return st.versioned(pending=bytes(self.pending), cols=self.cols, rows=self.rows,
                            tx_bytes=self.tx_bytes, rx_bytes=self.rx_bytes,
                            rx_dropped=self.rx_dropped)

    def load_state(self, state: dict) -> None:
        who = "virtio-console"
        st.check_version(state, who)
        pending = st.blob(state, "pending", who, max_length=self.rx_limit)
        cols = st.integer(state, "cols", who, 0, 0xFFFF)
        rows = st.integer(state, "rows", who, 0, 0xFFFF)
        counts = {n: st.integer(state, n, who) for n in ("tx_bytes", "rx_bytes", "rx_dropped")}
        self.pending = bytearray(pending)
        self.cols, self.rows = cols, rows
        for name, value in counts.items():
            setattr(self, name, value)

    # ---- virtio ops -------------------------------------------------------------------

    def activate(self, queues: list["Virtqueue"]) -> None:
        super().activate(queues)
        self._deliver()                # input typed before the driver was up

    def notify(self, queue_index: int) -> None:
        if len(self.queues) < 2:
            return
        if queue_index == TRANSMITQ0:
            self.drain(self.queues[TRANSMITQ0], self._transmit)
        elif queue_index == RECEIVEQ0:
            self._deliver()            # new receive buffers: hand over what is waiting

    def config_write(self, offset: int, size: int, value: int) -> None:
        # emerg_wr: one character, written without any queue (early boot, panics).
        if offset == CFG_EMERG_WR and self.sink is not None:
            self.sink(bytes((value & 0xFF,)))
            self.tx_bytes += 1

    # ---- queues -----------------------------------------------------------------------

    def _transmit(self, chain: "Chain") -> int:
        chain.require_read_only()
        data = chain.read_all(limit=TX_CHAIN_MAX)
        self.tx_bytes += len(data)
        if data and self.sink is not None:
            self.sink(data)
        return 0                       # the device wrote nothing into the chain

    def _deliver(self) -> None:
        t = self.transport
        if not self.pending or t is None or not t.live or len(self.queues) < 2:
            return
        q = self.queues[RECEIVEQ0]
        if not q.ready:
            return
        with t.guarded():
            filled = 0
            while self.pending:
                chain = q.pop()
                if chain is None:
                    # Ask for a doorbell when buffers come; re-check the race.
                    if q.enable_notification():
                        continue
                    break
                chain.require_write_only()
                n = chain.write(bytes(self.pending[:chain.writable_len]))
                del self.pending[:n]
                self.rx_bytes += n
                q.push(chain, n)
                filled += 1
            if filled:
                self.signal_used(q)


__all__ = ["VirtioConsole", "VIRTIO_CONSOLE_F_SIZE", "VIRTIO_CONSOLE_F_MULTIPORT",
           "VIRTIO_CONSOLE_F_EMERG_WRITE", "RECEIVEQ0", "TRANSMITQ0", "RX_LIMIT", "TX_CHAIN_MAX"]
