"""The board's interrupt wiring: ISA lines fanned out to the 8259 pair and the I/O
APIC (IRQ 0 on pin 2), the IMCR at ports 0x22/0x23, and whole paths from a device
line to the vector the CPU takes, with real 8259, PIT, I/O APIC and local APIC models."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv.devices.apic import LocalApic, Reg
from hv.devices.imcr import Imcr
from hv.devices.ioapic import IoApic
from hv.devices.irq_router import IsaIrqRouter, ioapic_pin_of
from hv.devices.pic8259 import DualPic8259
from hv.devices.pit8254 import Pit8254, ns_at
from tests.devices.harness import Harness, ManualClock

IMCR_SELECT, IMCR_DATA = 0x22, 0x23
LEVEL, MASKED = 1 << 15, 1 << 16
EXTINT_LINT0 = 7 << 8


class Board:
    """The wiring the lead's machine is meant to build (docs/apic.md)."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.pic = DualPic8259()
        self.lapic = LocalApic(self.clock, pic_acknowledge=self.pic.acknowledge)
        self.ioapic = IoApic(deliver=self.lapic.deliver_message)
        self.lapic.on_eoi = self.ioapic.eoi
        self.imcr = Imcr(self.pic, self.lapic)
        self.intr: list[bool] = []
        self.imcr.on_change = self.intr.append
        self.router = IsaIrqRouter(self.pic, self.ioapic)
        self.ports = Harness(self.pic, self.imcr)
        for cmd, data, base, icw3 in ((0x20, 0x21, 0x08, 0x04), (0xA0, 0xA1, 0x70, 0x02)):
            self.ports.outb(cmd, 0x11)
            self.ports.outb(data, base)
            self.ports.outb(data, icw3)
            self.ports.outb(data, 0x01)
        self.ports.outb(0x21, 0x00)
        self.ports.outb(0xA1, 0x00)

    def apic_mode(self) -> None:
        self.ports.outb(IMCR_SELECT, 0x70)
        self.ports.outb(IMCR_DATA, 0x01)

    def lapic_write(self, reg: int, value: int) -> None:
        self.lapic.write(reg, 4, value)

    def enable_lapic(self, lint0: int = MASKED | EXTINT_LINT0) -> None:
        self.lapic_write(Reg.SVR, 0x1FF)
        self.lapic_write(Reg.LVT_LINT0, lint0)

    def route(self, pin: int, low: int) -> None:
        self.ioapic.write(0x00, 4, 0x11 + 2 * pin)
        self.ioapic.write(0x10, 4, 0)                   # physical destination APIC 0
        self.ioapic.write(0x00, 4, 0x10 + 2 * pin)
        self.ioapic.write(0x10, 4, low)

    def eoi(self) -> None:
        self.lapic_write(Reg.EOI, 0)


# ---- the fan-out -----------------------------------------------------------------------------

@pytest.mark.parametrize("irq, pin", [(0, 2), (1, 1), (2, 9), (3, 3), (8, 8), (9, 9), (14, 14),
                                      (15, 15)])
def test_each_isa_irq_reaches_its_8259_input_and_its_ioapic_pin(irq, pin):
    board = Board()
    board.router.line(irq).set_level(True)
    pic_irq = 9 if irq == 2 else irq
    chip = board.pic.master if pic_irq < 8 else board.pic.slave
    assert chip.irr >> (pic_irq & 7) & 1
    assert board.ioapic.pins == 1 << pin
    board.router.line(irq).set_level(False)
    assert board.ioapic.pins == 0 and not chip.irr >> (pic_irq & 7) & 1


def test_isa_irq_0_never_reaches_ioapic_pin_0():
    assert ioapic_pin_of(0) == 2
    assert all(ioapic_pin_of(irq) != 0 for irq in range(16))


@pytest.mark.parametrize("irq", [-1, 16, 24])
def test_a_line_that_does_not_exist_is_refused(irq):
    with pytest.raises(ValueError):
        Board().router.line(irq)


def test_a_pulse_latches_in_the_8259_and_sends_one_ioapic_edge_message():
    board = Board()
    board.route(2, 0x30)
    board.router.line(0).pulse()
    assert board.pic.master.irr & 1                     # held until INTA, as the PIT needs
    assert board.ioapic.pins == 0 and board.ioapic.messages == 1


def test_a_pulse_on_a_line_held_high_makes_no_new_edge():
    board = Board()
    board.route(5, 0x35)
    line = board.router.line(5)
    line.set_level(True)
    line.pulse()
    assert board.ioapic.messages == 1 and board.ioapic.pins == 1 << 5


def test_a_pulse_on_a_level_entry_sends_once_until_the_eoi():
    board = Board()
    board.apic_mode()
    board.enable_lapic()
    board.route(2, LEVEL | 0x30)
    board.router.line(0).pulse()
    board.router.line(0).pulse()
    assert board.ioapic.messages == 1
    assert board.imcr.acknowledge() == 0x30
    board.eoi()                                         # the wire is low again: no resend
    assert board.ioapic.messages == 1 and not board.imcr.has_interrupt()


def test_the_router_reset_forgets_lines_left_high():
    board = Board()
    board.route(5, 0x35)
    board.router.line(5).set_level(True)
    board.router.reset()
    board.ioapic.reset()
    board.route(5, 0x35)
    board.router.line(5).pulse()
    assert board.ioapic.messages == 2


# ---- the IMCR --------------------------------------------------------------------------------

def test_the_imcr_powers_up_in_pic_mode_and_reads_back_its_bit():
    board = Board()
    board.ports.outb(IMCR_SELECT, 0x70)
    assert board.ports.inb(IMCR_DATA) == 0x00 and not board.imcr.apic_mode
    board.ports.outb(IMCR_DATA, 0xFF)
    assert board.ports.inb(IMCR_DATA) == 0x01 and board.imcr.apic_mode
    board.ports.outb(IMCR_DATA, 0xFE)
    assert board.ports.inb(IMCR_DATA) == 0x00 and not board.imcr.apic_mode


def test_other_imcr_indexes_and_the_select_port_read_all_ones_and_ignore_writes():
    board = Board()
    board.ports.outb(IMCR_SELECT, 0x71)
    board.ports.outb(IMCR_DATA, 0x01)
    assert board.ports.inb(IMCR_DATA) == 0xFF
    assert board.ports.inb(IMCR_SELECT) == 0xFF
    assert not board.imcr.apic_mode


def test_pic_mode_sends_the_8259_straight_to_the_cpu_around_a_disabled_lapic():
    board = Board()
    board.router.line(1).pulse()
    assert board.imcr.has_interrupt() and board.intr[-1] is True
    assert board.imcr.acknowledge() == 0x09
    assert board.intr[-1] is False


def test_apic_mode_routes_the_8259_through_lint0():
    board = Board()
    board.apic_mode()
    board.router.line(1).pulse()
    assert not board.imcr.has_interrupt()               # LAPIC software-disabled, LINT0 masked
    board.enable_lapic(lint0=EXTINT_LINT0)
    assert board.imcr.has_interrupt()
    assert board.imcr.acknowledge() == 0x09


def test_switching_back_to_pic_mode_disconnects_lint0():
    board = Board()
    board.enable_lapic(lint0=EXTINT_LINT0)
    board.apic_mode()
    board.router.line(1).set_level(True)
    assert board.lapic.has_interrupt()
    board.ports.outb(IMCR_DATA, 0x00)
    assert not board.lapic.has_interrupt()              # LINT0 sees nothing now
    assert board.imcr.has_interrupt() and board.imcr.acknowledge() == 0x09


def test_pic_mode_serves_the_8259_before_the_local_apic():
    board = Board()
    board.enable_lapic()
    board.lapic.receive(0xE0)
    board.router.line(3).pulse()
    assert board.imcr.acknowledge() == 0x0B
    assert board.imcr.acknowledge() == 0xE0
    assert not board.imcr.has_interrupt()


def test_a_globally_disabled_lapic_lets_the_8259_through_in_apic_mode():
    board = Board()
    board.apic_mode()
    board.lapic.set_apic_base(0xFEE00000)               # bit 11 clear
    board.router.line(1).pulse()
    assert board.imcr.has_interrupt() and board.imcr.acknowledge() == 0x09


def test_imcr_reset_returns_to_pic_mode():
    board = Board()
    board.apic_mode()
    board.imcr.reset()
    assert not board.imcr.apic_mode
    board.router.line(1).pulse()
    assert board.imcr.acknowledge() == 0x09


@settings(max_examples=200, deadline=None)
@given(accesses=st.lists(st.tuples(st.sampled_from([IMCR_SELECT, IMCR_DATA]),
                                   st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF),
                                   st.booleans()), max_size=40))
def test_imcr_port_accesses_of_any_width_keep_a_consistent_mode(accesses):
    board = Board()
    for port, size, value, is_write in accesses:
        if is_write:
            board.ports.bus.write(port, size, value & ((1 << (8 * size)) - 1))
        else:
            assert 0 <= board.ports.bus.read(port, size) < 1 << (8 * size)
    board.ports.outb(IMCR_SELECT, 0x70)
    assert board.ports.inb(IMCR_DATA) == int(board.imcr.apic_mode)
    board.router.line(1).pulse()                        # INTR reaches the CPU as the mode says
    assert board.imcr.has_interrupt() is (not board.imcr.apic_mode)


# ---- whole paths -------------------------------------------------------------------------------

def test_pit_channel_0_reaches_the_cpu_through_ioapic_pin_2():
    board = Board()
    pit = Pit8254(board.clock, irq0=board.router.line(0))
    pit_ports = Harness(pit)
    board.apic_mode()
    board.enable_lapic()
    board.route(2, 0x30)
    board.ports.outb(0x21, 0xFF)                        # the OS masks the 8259 in APIC mode
    pit_ports.outb(0x43, 0x34)                          # channel 0, mode 2, count 1000
    pit_ports.outb(0x40, 1000 & 0xFF)
    pit_ports.outb(0x40, 1000 >> 8)
    board.clock.step(ns_at(1 + 1000) - 1)
    assert not board.imcr.has_interrupt()
    board.clock.step(1)
    assert board.imcr.has_interrupt() and board.imcr.acknowledge() == 0x30
    board.eoi()
    board.clock.step(ns_at(1 + 2000) - board.clock.now())
    assert board.imcr.acknowledge() == 0x30


def test_a_level_triggered_device_interrupts_again_until_it_lowers_its_line():
    board = Board()
    board.apic_mode()
    board.enable_lapic()
    board.route(10, LEVEL | 0x3A)
    line = board.router.line(10)
    line.set_level(True)
    assert board.imcr.acknowledge() == 0x3A
    assert board.lapic.tmr >> 0x3A & 1
    board.eoi()                                         # still high: re-sent at once
    assert board.imcr.has_interrupt() and board.imcr.acknowledge() == 0x3A
    line.set_level(False)
    board.eoi()
    assert not board.imcr.has_interrupt()
    assert not board.ioapic.redirection[10] & 1 << 14
    line.set_level(True)                                # a new request goes through
    assert board.imcr.acknowledge() == 0x3A


def test_an_ioapic_message_to_another_apic_is_not_taken():
    board = Board()
    board.apic_mode()
    board.enable_lapic()
    board.ioapic.write(0x00, 4, 0x11 + 2 * 4)
    board.ioapic.write(0x10, 4, 0x01000000)             # physical destination APIC 1
    board.ioapic.write(0x00, 4, 0x10 + 2 * 4)
    board.ioapic.write(0x10, 4, 0x34)
    board.router.line(4).set_level(True)
    assert board.ioapic.messages == 1 and not board.imcr.has_interrupt()


def test_a_logical_flat_destination_reaches_the_apic_with_that_ldr_bit():
    board = Board()
    board.apic_mode()
    board.enable_lapic()
    board.lapic_write(Reg.LDR, 0x01000000)
    board.ioapic.write(0x00, 4, 0x11 + 2 * 4)
    board.ioapic.write(0x10, 4, 0x01000000)
    board.ioapic.write(0x00, 4, 0x10 + 2 * 4)
    board.ioapic.write(0x10, 4, 1 << 11 | 1 << 8 | 0x34)   # logical, lowest priority
    board.router.line(4).set_level(True)
    assert board.imcr.acknowledge() == 0x34


def test_an_extint_entry_makes_the_cpu_fetch_the_vector_from_the_8259():
    board = Board()
    board.apic_mode()
    board.enable_lapic()                                # LINT0 masked: no virtual wire
    board.route(7, 7 << 8)                              # ExtINT on pin 7
    board.router.line(7).set_level(True)                # also 8259 IRQ 7 -> vector 0x0F
    assert board.imcr.has_interrupt()
    assert board.imcr.acknowledge() == 0x0F
    assert board.lapic.isr == 0 and board.pic.master.isr == 1 << 7


def test_an_nmi_entry_raises_nmi_on_the_cpu():
    board = Board()
    nmis = []
    board.lapic.on_nmi = lambda: nmis.append(1)
    board.apic_mode()
    board.enable_lapic()
    board.route(3, 4 << 8 | 0x02)
    board.router.line(3).pulse()
    assert nmis == [1] and not board.imcr.has_interrupt()


def test_the_lapic_timer_reaches_the_cpu_in_either_imcr_mode():
    for apic_mode in (False, True):
        board = Board()
        if apic_mode:
            board.apic_mode()
        board.enable_lapic()
        board.lapic_write(Reg.TIMER_DIVIDE, 0xB)
        board.lapic_write(Reg.LVT_TIMER, 0xEC)
        board.lapic_write(Reg.TIMER_INITIAL, 1000)
        board.clock.step(1000)
        assert board.intr[-1] is True
        assert board.imcr.acknowledge() == 0xEC
