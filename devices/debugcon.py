"""Two write-mostly diagnostic ports.

``DebugConsole`` is the Bochs/QEMU "port E9 hack": every byte written to 0xE9
is printed on the host, and reading the port returns 0xE9 so a guest can tell
the console is there (real hardware floats to 0xFF).

``PostCode`` is the POST diagnostic port 0x80, where BIOSes and kernels write
progress codes (and Linux writes for an I/O delay); a POST card shows the last
one, so we keep it and a bounded history.
"""
from __future__ import annotations

from collections import deque

from hv.devices import state as st
from hv.devices.base import Device, PortRange, Sink

DEBUGCON_PORT = 0xE9
DEBUGCON_READBACK = 0xE9  # Bochs/QEMU answer: the port number, for detection
POST_PORT = 0x80
POST_HISTORY = 256


class DebugConsole(Device):
    name = "debugcon"
    ports = (PortRange(DEBUGCON_PORT, 1),)

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink

    def read(self, offset: int, size: int) -> int:
        # Only the byte at 0xE9 is ours; a wider read's other bytes float high.
        value = (1 << (8 * size)) - 1 if size > 0 else 0
        if offset == 0 and size > 0:
            value = (value & ~0xFF) | DEBUGCON_READBACK
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        # A wider OUT still only drives the low byte onto port 0xE9.
        if offset == 0 and size > 0 and self.sink is not None:
            self.sink(bytes([value & 0xFF]))

    def state(self) -> dict:
        """Nothing: each byte goes to the host sink at once (the sink is the host's)."""
        return st.versioned()

    def load_state(self, state: dict) -> None:
        st.check_version(state, self.name)


class PostCode(Device):
    name = "post"
    ports = (PortRange(POST_PORT, 1),)

    def __init__(self) -> None:
        self.codes: deque[int] = deque(maxlen=POST_HISTORY)
        self.last = 0

    def reset(self) -> None:
        # A POST card keeps showing its last code across reset; so do we.
        pass

    def read(self, offset: int, size: int) -> int:
        value = (1 << (8 * size)) - 1 if size > 0 else 0
        if offset == 0 and size > 0:
            value = (value & ~0xFF) | self.last
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == 0 and size > 0:
            self.last = value & 0xFF
            self.codes.append(self.last)

    def state(self) -> dict:
        """The code shown and the history behind it."""
        return st.versioned(last=self.last, codes=bytes(self.codes))

    def load_state(self, state: dict) -> None:
        st.check_version(state, self.name)
        last = st.integer(state, "last", self.name, 0, 0xFF)
        codes = st.blob(state, "codes", self.name, max_length=POST_HISTORY)
        self.last = last
        self.codes = deque(codes, maxlen=POST_HISTORY)
