"""The board's ISA interrupt wires: each reaches both the 8259 pair and the I/O APIC.

A device gets ``router.line(n)`` where it used to get ``pic.line(n)``; the line keeps
the ``IrqLine`` protocol (``set_level``, ``pulse``). Wiring, as on QEMU's PC and as
the firmware tables declare it:

* ISA IRQ n reaches 8259 input n and I/O APIC pin n;
* except ISA IRQ 0 (the PIT), which reaches I/O APIC pin 2 -- the interrupt source
  override every PC declares, since pin 0 carries the 8259's own INTR on real boards
  (not modelled: nothing drives pin 0 here);
* and ISA IRQ 2, which is the AT's IRQ 9 wire (the 8259 pair already redirects it),
  so it reaches I/O APIC pin 9.

``pulse()`` is what the PIT does: on the 8259 a rising edge whose request is held
until INTA (``DualPic8259.pulse_irq``); on the I/O APIC the pin is raised and lowered
again, so an edge entry sends once and a level entry sends once (its remote IRR
then waits for the EOI). A line already held high makes no new edge on either.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hv.devices import state as st
from hv.devices.base import Device

if TYPE_CHECKING:
    from hv.devices.ioapic import IoApic
    from hv.devices.pic8259 import DualPic8259

ISA_IRQ_COUNT = 16
PIT_IRQ, PIT_PIN = 0, 2          # the interrupt source override: ISA IRQ 0 -> GSI 2
CASCADE_IRQ, CASCADE_REDIRECT = 2, 9


def ioapic_pin_of(irq: int) -> int:
    """The I/O APIC input (GSI) an ISA IRQ reaches."""
    if not 0 <= irq < ISA_IRQ_COUNT:
        raise ValueError(f"no ISA IRQ {irq}")
    if irq == PIT_IRQ:
        return PIT_PIN
    if irq == CASCADE_IRQ:
        return CASCADE_REDIRECT
    return irq


class IsaIrqLine:
    """One ISA IRQ wire, fanned out to the 8259 input and the I/O APIC pin. Devices that
    share the wire (the NE2000 and the ACPI SCI on IRQ 9) each drive it through their own
    ``source()``: the wire is high while any of them holds it high (wired-OR)."""

    def __init__(self, router: "IsaIrqRouter", irq: int) -> None:
        self._router = router
        self.irq = irq
        self.pin = ioapic_pin_of(irq)
        self.level = False
        self._held: set["_SharedSource"] = set()   # sources holding the wire high

    def source(self) -> "_SharedSource":
        return _SharedSource(self)

    def _drive(self, level: bool) -> None:
        if self._router.pic is not None:
            self._router.pic.set_irq(self.irq, level)
        if self._router.ioapic is not None:
            self._router.ioapic.set_irq(self.pin, level)

    def set_level(self, level: bool) -> None:
        self.level = bool(level)
        self._drive(self.level or bool(self._held))

    def pulse(self) -> None:
        if self._router.pic is not None:
            self._router.pic.pulse_irq(self.irq)
        ioapic = self._router.ioapic
        if ioapic is not None and not (self.level or self._held):
            ioapic.set_irq(self.pin, True)
            ioapic.set_irq(self.pin, False)


class _SharedSource:
    """One device's hold on a shared wire (``IsaIrqLine.source``)."""

    def __init__(self, line: IsaIrqLine) -> None:
        self._line = line
        self.level = False

    def set_level(self, level: bool) -> None:
        self.level = bool(level)
        held = self._line._held
        if self.level:
            held.add(self)
        else:
            held.discard(self)
        self._line._drive(self._line.level or bool(held))

    def pulse(self) -> None:
        self._line.pulse()

    def restore_level(self, level: bool) -> None:
        """A snapshot's level: the hold is taken or let go without driving the wire (the
        8259 and the I/O APIC restore their own inputs)."""
        self.level = bool(level)
        if self.level:
            self._line._held.add(self)
        else:
            self._line._held.discard(self)


class IsaIrqRouter(Device):
    """Hands out the 16 ISA lines; ``ioapic`` may be None (a board with no I/O APIC), and
    ``pic`` too (a board with no 8259s, such as the microVM: the wires reach the I/O APIC).
    A device with no registers: the board adds it so that a machine reset drops
    the lines it remembers as held high."""

    name = "isa-irq"

    def __init__(self, pic: "DualPic8259 | None", ioapic: "IoApic | None") -> None:
        self.pic = pic
        self.ioapic = ioapic
        self._lines = [IsaIrqLine(self, n) for n in range(ISA_IRQ_COUNT)]

    def line(self, irq: int) -> IsaIrqLine:
        ioapic_pin_of(irq)                     # refuses a bad number
        return self._lines[irq]

    def state(self) -> dict:
        """The level each wire was last driven to directly. A shared wire's holds belong
        to the devices holding it: each restores its own (``_SharedSource.restore_level``)."""
        return st.versioned(levels=[line.level for line in self._lines])

    def load_state(self, state: dict) -> None:
        st.check_version(state, self.name)
        levels = st.field(state, "levels", self.name)
        if not isinstance(levels, list) or len(levels) != ISA_IRQ_COUNT or \
                any(type(v) is not bool for v in levels):
            raise ValueError(f"{self.name}: saved levels are not {ISA_IRQ_COUNT} levels")
        for line, level in zip(self._lines, levels):
            line.level = level

    def reset(self) -> None:
        """Power-on: every wire low (the controllers reset themselves)."""
        for line in self._lines:
            line.level = False
            line._held.clear()
