"""The IMCR (Interrupt Mode Configuration Register, MP spec 1.4 section 3.6.2.1) and
the CPU's INTR input: the one object the vCPU asks for interrupts.

Ports: 0x22 selects a register, 0x23 reads or writes it; register 0x70 is the IMCR.
Its bit 0 chooses where the 8259's INTR goes:

* 0 -- **PIC mode** (power-on): the 8259's INTR goes straight to the CPU, around the
  local APIC, which is what a guest that never heard of an APIC expects. The local
  APIC's own interrupts (timer, IPIs, I/O APIC messages) still reach the CPU; LINT0
  sees nothing from the 8259.
* 1 -- **APIC mode** (symmetric I/O): the 8259's INTR drives LINT0, so it reaches the
  CPU only as the LVT LINT0 entry says (ExtINT: the vector comes from the 8259;
  masked, or the APIC software-disabled: not at all).

The CPU side is ``has_interrupt()`` / ``acknowledge()`` whatever the mode. In PIC mode
INTR is "8259 INTR or local APIC", and INTA serves the 8259 first (as QEMU does: an
ExtINT interrupt does not take part in APIC priority); in APIC mode both are the
local APIC's. A local APIC that is globally disabled passes its LINT0 pin through, so
in APIC mode with IA32_APIC_BASE bit 11 clear the 8259 still reaches the CPU.

Guests: an MP-table OS that finds the IMCR present bit writes 0x70/0x01 here when
it switches to symmetric I/O; an ACPI OS leaves the IMCR alone and masks the 8259
lines it routes through the I/O APIC, which is equally correct here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from hv.devices import state as st
from hv.devices.base import ByteRegisterDevice, PortRange

if TYPE_CHECKING:
    from hv.devices.apic import LocalApic
    from hv.devices.pic8259 import DualPic8259

IMCR_SELECT = 0                  # port 0x22
IMCR_DATA = 1                    # port 0x23
IMCR_INDEX = 0x70
IMCR_APIC_MODE = 0x01            # bit 0: 8259 INTR through LINT0 (else straight to the CPU)


class Imcr(ByteRegisterDevice):
    """Takes over ``pic.on_intr`` and ``lapic.on_change``; the board sets ``on_change``
    (INTR to the CPU may have changed) where it used to set the 8259's ``on_intr``."""

    name = "imcr"
    ports = (PortRange(0x22, 2, 0),)

    def __init__(self, pic: "DualPic8259", lapic: "LocalApic") -> None:
        self.pic = pic
        self.lapic = lapic
        self.on_change: Callable[[bool], None] | None = None
        self.select = 0
        self.apic_mode = False
        self._pic_level = bool(pic.has_interrupt)   # the 8259's INTR, as last reported
        pic.on_intr = self._pic_intr
        lapic.on_change = self._lapic_changed

    def reset(self) -> None:
        self.select = 0
        self._set_mode(False)

    # ---- snapshots ------------------------------------------------------------------

    def state(self) -> dict:
        """The select register, the mode, and the 8259's INTR as last reported."""
        return st.versioned(select=self.select, apic_mode=self.apic_mode,
                            pic_level=self._pic_level)

    def load_state(self, state: dict) -> None:
        """Restores after the 8259 and the local APIC (the board's order): tells the CPU
        the INTR level that follows (a level, not an edge)."""
        st.check_version(state, self.name)
        select = st.integer(state, "select", self.name, 0, 0xFF)
        apic_mode = st.flag(state, "apic_mode", self.name)
        pic_level = st.flag(state, "pic_level", self.name)
        self.select, self.apic_mode, self._pic_level = select, apic_mode, pic_level
        self._notify()

    # ---- ports ----------------------------------------------------------------

    def _byte_read(self, offset: int) -> int:
        if offset == IMCR_DATA and self.select == IMCR_INDEX:
            return IMCR_APIC_MODE if self.apic_mode else 0
        return 0xFF                            # the select port is write-only

    def _byte_write(self, offset: int, value: int) -> None:
        if offset == IMCR_SELECT:
            self.select = value
        elif offset == IMCR_DATA and self.select == IMCR_INDEX:
            self._set_mode(bool(value & IMCR_APIC_MODE))

    def _set_mode(self, apic_mode: bool) -> None:
        self.apic_mode = apic_mode
        self.lapic.pic_intr(self._pic_level if apic_mode else False)
        self._notify()

    # ---- the wires ----------------------------------------------------------------

    def _pic_intr(self, level: bool) -> None:
        # The 8259 reports INTR after every change, so the level is kept, not recomputed.
        self._pic_level = bool(level)
        if self.apic_mode:
            self.lapic.pic_intr(level)         # notifies through _lapic_changed
        else:
            self._notify()

    def _lapic_changed(self, level: bool) -> None:
        self._notify()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self.has_interrupt())

    # ---- the CPU side ---------------------------------------------------------------

    def has_interrupt(self) -> bool:
        if self.apic_mode:
            return self.lapic.has_interrupt()
        return self._pic_level or self.lapic.has_interrupt()

    def acknowledge(self) -> int:
        """The INTA cycle: the vector the CPU takes."""
        if not self.apic_mode and self._pic_level:
            return self.pic.acknowledge()
        if self.apic_mode or self.lapic.has_interrupt():
            return self.lapic.acknowledge()
        return self.pic.acknowledge()          # nothing at all: the 8259's spurious IRQ 7
