"""Intel 82093AA I/O APIC: 24 interrupt inputs turned into messages for the local APIC.

Names follow the 82093AA datasheet: IOREGSEL (the register select, offset 0x00),
IOWIN (the data window, offset 0x10), IOAPICID, IOAPICVER, IOAPICARB, and the
redirection table IOREDTBL0-23 (64-bit entries at indirect registers 0x10-0x3F,
low half at the even index).

Model choices:

* Version 0x00170011: version 0x11 (the 82093AA) with 24 entries (max index 0x17).
  Version 0x11 has no EOI register, so remote IRR is cleared by the local APIC's
  EOI broadcast (``eoi(vector)``), or by switching the entry to edge-triggered
  (what QEMU does and what Linux relies on to unstick a level entry).
* Inputs are wires: ``set_irq(pin, level)`` gives the pin's electrical level and
  the entry's polarity decides what "asserted" means (active low inverts it). An
  edge-triggered entry sends on the asserting edge if unmasked at that moment
  (a masked edge is lost, as the datasheet says); a level-triggered entry sends
  while asserted with remote IRR clear, sets remote IRR, and after the EOI sends
  again if the pin is still asserted; unmasking an asserted level entry sends.
  Rewriting an entry (polarity included) creates no edge.
* Messages go to the injected ``deliver(vector, level_triggered, delivery_mode,
  destination, logical)`` (the board connects ``LocalApic.deliver_message``) at
  once, so delivery status always reads idle. Fixed, lowest priority, NMI and
  ExtINT are sent; SMI, INIT and the reserved modes are dropped (nothing is sent,
  remote IRR is left alone).
* Any access width reads the bytes it covers (IOREGSEL reads back its 8 bits,
  bits 31:8 are 0); only 32-bit stores at 0x10 write IOWIN, and a store that covers
  byte 0x00 sets IOREGSEL. Everything else in the 4 KiB window reads 0 and ignores
  writes; an unimplemented indirect register reads 0.
"""
from __future__ import annotations

from typing import Callable

from hv.devices.apic import DeliveryMode
from hv.devices import state as st
from hv.devices.base import Device

IOAPIC_DEFAULT_BASE = 0xFEC00000
IOAPIC_WINDOW = 0x1000

IOREGSEL = 0x00
IOWIN = 0x10

# Indirect registers (datasheet 3.2).
IOAPICID = 0x00
IOAPICVER = 0x01
IOAPICARB = 0x02
IOREDTBL = 0x10                  # entry n: low half at 0x10 + 2n, high half at 0x11 + 2n

PIN_COUNT = 24
IOAPIC_VERSION = 0x11
VERSION_VALUE = (PIN_COUNT - 1) << 16 | IOAPIC_VERSION    # 0x00170011
ID_SHIFT = 24
ID_MASK = 0xF                    # bits 27:24

# Redirection entry fields (datasheet 3.2.4).
VECTOR_MASK = 0xFF
DELIVERY_MODE_SHIFT = 8
DEST_LOGICAL = 1 << 11
DELIVERY_STATUS = 1 << 12        # send pending: never, delivery is instantaneous
POLARITY_LOW = 1 << 13
REMOTE_IRR = 1 << 14
TRIGGER_LEVEL = 1 << 15
MASKED = 1 << 16
DEST_SHIFT = 56
LOW_WRITABLE = VECTOR_MASK | 0x700 | DEST_LOGICAL | POLARITY_LOW | TRIGGER_LEVEL | MASKED
HIGH_WRITABLE = 0xFF000000       # destination field, bits 63:56
ENTRY_RESET = MASKED             # power-up: every entry masked, the rest 0

SENT_MODES = (DeliveryMode.FIXED, DeliveryMode.LOWEST, DeliveryMode.NMI, DeliveryMode.EXTINT)

Deliver = Callable[[int, bool, int, int, bool], None]


class IoApic(Device):
    name = "ioapic"
    mmio = ((IOAPIC_DEFAULT_BASE, IOAPIC_WINDOW),)

    def __init__(self, deliver: Deliver | None = None, apic_id: int = 0) -> None:
        self.deliver = deliver
        self.apic_id = apic_id & 0xF           # the ID at reset: what the firmware tables say
        self.pins = 0                          # electrical levels of the 24 inputs
        self.messages = 0                      # messages sent (introspection)
        self.reset()

    def reset(self) -> None:
        self.pins = 0                          # the devices drop their lines on reset too
        self.ioregsel = 0
        self.id = self.apic_id
        self.redirection = [ENTRY_RESET] * PIN_COUNT

    # ---- snapshots ------------------------------------------------------------------

    def state(self) -> dict:
        """The pins' electrical levels, IOREGSEL, the ID and the 24 redirection entries
        (remote IRR included)."""
        return st.versioned(pins=self.pins, ioregsel=self.ioregsel, id=self.id,
                            redirection=list(self.redirection), messages=self.messages)

    def load_state(self, state: dict) -> None:
        """Registers and pin levels as saved: nothing is sent (a message that was due has
        been sent before the snapshot)."""
        who = self.name
        st.check_version(state, who)
        pins = st.integer(state, "pins", who, 0, (1 << PIN_COUNT) - 1)
        ioregsel = st.integer(state, "ioregsel", who, 0, 0xFF)
        apic_id = st.integer(state, "id", who, 0, ID_MASK)
        redirection = st.int_list(state, "redirection", who, PIN_COUNT, 0, (1 << 64) - 1)
        messages = st.integer(state, "messages", who)
        self.pins, self.ioregsel, self.id = pins, ioregsel, apic_id
        self.redirection, self.messages = redirection, messages

    # ---- inputs ----------------------------------------------------------------

    @staticmethod
    def _check_pin(pin: int) -> None:
        if not 0 <= pin < PIN_COUNT:
            raise ValueError(f"no I/O APIC pin {pin}")

    def _asserted(self, pin: int) -> bool:
        level = bool(self.pins >> pin & 1)
        return level != bool(self.redirection[pin] & POLARITY_LOW)

    def set_irq(self, pin: int, level: bool) -> None:
        """The electrical level of input ``pin``."""
        self._check_pin(pin)
        was = self._asserted(pin)
        if level:
            self.pins |= 1 << pin
        else:
            self.pins &= ~(1 << pin)
        entry = self.redirection[pin]
        if entry & TRIGGER_LEVEL:
            self._service_level(pin)
        elif not was and self._asserted(pin) and not entry & MASKED:
            self._send(pin)

    def _service_level(self, pin: int) -> None:
        entry = self.redirection[pin]
        if entry & (MASKED | REMOTE_IRR) or not self._asserted(pin):
            return
        if entry >> DELIVERY_MODE_SHIFT & 7 in SENT_MODES:
            self.redirection[pin] = entry | REMOTE_IRR
        self._send(pin)

    def _send(self, pin: int) -> None:
        entry = self.redirection[pin]
        mode = entry >> DELIVERY_MODE_SHIFT & 7
        if mode not in SENT_MODES or self.deliver is None:
            return
        self.messages += 1
        self.deliver(entry & VECTOR_MASK, bool(entry & TRIGGER_LEVEL), mode,
                     entry >> DEST_SHIFT & 0xFF, bool(entry & DEST_LOGICAL))

    def eoi(self, vector: int) -> None:
        """The local APIC's EOI broadcast for a level-triggered ``vector``: clear remote
        IRR of the level entries with that vector, and send again where still asserted."""
        for pin, entry in enumerate(self.redirection):
            if entry & TRIGGER_LEVEL and entry & REMOTE_IRR and entry & VECTOR_MASK == vector:
                self.redirection[pin] = entry & ~REMOTE_IRR
                self._service_level(pin)

    # ---- registers ---------------------------------------------------------------

    def _read_indirect(self) -> int:
        sel = self.ioregsel
        if sel == IOAPICID or sel == IOAPICARB:
            return self.id << ID_SHIFT         # the arbitration ID is loaded from the ID
        if sel == IOAPICVER:
            return VERSION_VALUE
        if IOREDTBL <= sel < IOREDTBL + 2 * PIN_COUNT:
            entry = self.redirection[(sel - IOREDTBL) >> 1]
            return entry >> 32 if sel & 1 else entry & 0xFFFFFFFF
        return 0

    def _write_indirect(self, value: int) -> None:
        sel = self.ioregsel
        if sel == IOAPICID:
            self.id = value >> ID_SHIFT & ID_MASK
        elif IOREDTBL <= sel < IOREDTBL + 2 * PIN_COUNT:
            pin = (sel - IOREDTBL) >> 1
            old = self.redirection[pin]
            if sel & 1:
                new = (value & HIGH_WRITABLE) << 32 | old & 0xFFFFFFFF
            else:
                new = old & ~0xFFFFFFFF | value & LOW_WRITABLE | old & REMOTE_IRR
            if not new & TRIGGER_LEVEL:
                new &= ~REMOTE_IRR             # an edge entry has no remote IRR
            self.redirection[pin] = new
            if new & TRIGGER_LEVEL:
                self._service_level(pin)       # e.g. unmasked while asserted

    def _register(self, offset: int) -> int | None:
        if offset == IOREGSEL:
            return self.ioregsel
        if offset == IOWIN:
            return self._read_indirect()
        return None

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(max(1, min(size, 8))):
            at = offset + i
            reg = self._register(at & ~3)
            if reg is not None:
                value |= (reg >> (8 * (at & 3)) & 0xFF) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        if offset == IOWIN and size == 4:
            self._write_indirect(value & 0xFFFFFFFF)
        elif offset <= IOREGSEL < offset + size:
            self.ioregsel = value >> (8 * (IOREGSEL - offset)) & 0xFF
