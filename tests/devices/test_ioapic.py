"""The 82093AA I/O APIC at the register level (IOREGSEL/IOWIN), its redirection of
edge and level inputs, and a differential run against QEMU's I/O APIC."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv.devices.ioapic import PIN_COUNT, IoApic

IOREGSEL, IOWIN = 0x00, 0x10
FIXED, LOWEST, SMI, NMI, INIT, EXTINT = 0, 1, 2, 4, 5, 7
LOGICAL, POLARITY_LOW, REMOTE_IRR, LEVEL, MASKED = 1 << 11, 1 << 13, 1 << 14, 1 << 15, 1 << 16


def make():
    sent = []
    io = IoApic(deliver=lambda *message: sent.append(message))
    return io, sent


def reg_read(io: IoApic, index: int) -> int:
    io.write(IOREGSEL, 4, index)
    return io.read(IOWIN, 4)


def reg_write(io: IoApic, index: int, value: int) -> None:
    io.write(IOREGSEL, 4, index)
    io.write(IOWIN, 4, value)


def program(io: IoApic, pin: int, low: int, destination: int = 0) -> None:
    reg_write(io, 0x11 + 2 * pin, destination << 24)
    reg_write(io, 0x10 + 2 * pin, low)


def entry(io: IoApic, pin: int) -> int:
    return reg_read(io, 0x11 + 2 * pin) << 32 | reg_read(io, 0x10 + 2 * pin)


# ---- registers ------------------------------------------------------------------------------

def test_power_up_registers_hold_their_datasheet_values():
    io, _ = make()
    assert io.read(IOREGSEL, 4) == 0
    assert reg_read(io, 0x00) == 0                      # IOAPICID
    assert reg_read(io, 0x01) == 0x00170011             # 24 entries, version 0x11
    assert reg_read(io, 0x02) == 0                      # IOAPICARB
    assert [entry(io, pin) for pin in range(PIN_COUNT)] == [MASKED] * PIN_COUNT


def test_the_id_is_four_bits_and_the_arbitration_id_follows_it():
    io, _ = make()
    reg_write(io, 0x00, 0xFFFFFFFF)
    assert reg_read(io, 0x00) == 0x0F000000
    assert reg_read(io, 0x02) == 0x0F000000
    reg_write(io, 0x02, 0)                              # ARB and version are read-only
    reg_write(io, 0x01, 0)
    assert reg_read(io, 0x02) == 0x0F000000 and reg_read(io, 0x01) == 0x00170011


def test_only_the_defined_bits_of_a_redirection_entry_are_writable():
    io, _ = make()
    reg_write(io, 0x10 + 2 * 7, 0xFFFFFFFF)
    reg_write(io, 0x11 + 2 * 7, 0xFFFFFFFF)
    # vector, delivery mode, destination mode, polarity, trigger, mask; no delivery
    # status, no remote IRR, reserved bits 17-55 zero
    assert entry(io, 7) == 0xFF000000_0001AFFF


def test_ioregsel_keeps_eight_bits_and_reads_back():
    io, _ = make()
    io.write(IOREGSEL, 4, 0x1234)
    assert io.read(IOREGSEL, 4) == 0x34
    io.write(IOREGSEL, 1, 0x12)
    assert io.read(IOREGSEL, 1) == 0x12
    io.write(IOREGSEL + 1, 1, 0x55)                     # a reserved byte: ignored
    assert io.read(IOREGSEL, 4) == 0x12


@pytest.mark.parametrize("index", [0x03, 0x0F, 0x40, 0x41, 0x80, 0xFF])
def test_unimplemented_indirect_registers_read_zero_and_ignore_writes(index):
    io, _ = make()
    before = [entry(io, pin) for pin in range(PIN_COUNT)]
    reg_write(io, index, 0xFFFFFFFF)
    assert reg_read(io, index) == 0
    assert [entry(io, pin) for pin in range(PIN_COUNT)] == before
    assert reg_read(io, 0x00) == 0


def test_narrow_iowin_stores_are_dropped_and_narrow_loads_read_the_covered_bytes():
    io, _ = make()
    program(io, 3, MASKED | 0x2456)
    io.write(IOREGSEL, 4, 0x10 + 2 * 3)
    io.write(IOWIN, 1, 0x00)
    io.write(IOWIN, 2, 0x0000)
    io.write(IOWIN + 1, 4, 0)
    assert io.read(IOWIN, 4) == MASKED | 0x2456
    assert io.read(IOWIN + 1, 1) == 0x24
    assert io.read(IOWIN, 2) == 0x2456


@pytest.mark.parametrize("offset", [0x04, 0x08, 0x0C, 0x14, 0x20, 0x40, 0x100, 0xFFC])
def test_the_rest_of_the_window_reads_zero_and_ignores_writes(offset):
    io, _ = make()
    program(io, 1, MASKED | 0x41)
    io.write(offset, 4, 0xFFFFFFFF)
    assert io.read(offset, 4) == 0
    assert entry(io, 1) == MASKED | 0x41 and io.read(IOREGSEL, 4) == 0x10 + 2 * 1


# ---- redirection ---------------------------------------------------------------------------

def test_an_edge_entry_sends_once_per_rising_edge():
    io, sent = make()
    program(io, 4, 0x34)
    io.set_irq(4, True)
    io.set_irq(4, True)                                 # held high: no new edge
    assert sent == [(0x34, False, FIXED, 0, False)]
    io.set_irq(4, False)
    io.set_irq(4, True)
    assert len(sent) == 2


def test_a_masked_edge_is_lost():
    io, sent = make()
    program(io, 4, MASKED | 0x34)
    io.set_irq(4, True)
    program(io, 4, 0x34)                                # unmasked while still high
    assert sent == []
    io.set_irq(4, False)
    io.set_irq(4, True)
    assert sent == [(0x34, False, FIXED, 0, False)]


def test_a_level_entry_sends_once_and_waits_for_the_eoi():
    io, sent = make()
    program(io, 9, LEVEL | 0x39)
    io.set_irq(9, True)
    assert sent == [(0x39, True, FIXED, 0, False)]
    assert entry(io, 9) & REMOTE_IRR
    io.set_irq(9, False)
    io.set_irq(9, True)                                 # remote IRR still set: nothing
    assert len(sent) == 1


def test_the_eoi_of_a_still_asserted_level_entry_sends_it_again():
    io, sent = make()
    program(io, 9, LEVEL | 0x39)
    io.set_irq(9, True)
    io.eoi(0x39)
    assert len(sent) == 2 and entry(io, 9) & REMOTE_IRR
    io.set_irq(9, False)
    io.eoi(0x39)
    assert len(sent) == 2 and not entry(io, 9) & REMOTE_IRR


def test_an_eoi_for_another_vector_leaves_remote_irr_set():
    io, sent = make()
    program(io, 9, LEVEL | 0x39)
    io.set_irq(9, True)
    io.eoi(0x3A)
    assert entry(io, 9) & REMOTE_IRR and len(sent) == 1


def test_an_eoi_serves_every_level_entry_sharing_the_vector():
    io, sent = make()
    program(io, 10, LEVEL | 0x50)
    program(io, 11, LEVEL | 0x50)
    io.set_irq(10, True)
    io.set_irq(11, True)
    io.set_irq(10, False)
    io.eoi(0x50)
    assert not entry(io, 10) & REMOTE_IRR
    assert entry(io, 11) & REMOTE_IRR and len(sent) == 3


def test_unmasking_an_asserted_level_entry_sends_it():
    io, sent = make()
    program(io, 9, MASKED | LEVEL | 0x39)
    io.set_irq(9, True)
    assert sent == []
    program(io, 9, LEVEL | 0x39)
    assert sent == [(0x39, True, FIXED, 0, False)]


def test_an_active_low_level_entry_is_asserted_by_a_low_wire():
    io, sent = make()
    io.set_irq(12, True)                                # idle high, as an active-low line
    program(io, 12, POLARITY_LOW | LEVEL | 0x3C)
    assert sent == []
    io.set_irq(12, False)
    assert sent == [(0x3C, True, FIXED, 0, False)]


def test_an_active_low_edge_entry_sends_on_the_falling_wire_edge():
    io, sent = make()
    io.set_irq(6, True)
    program(io, 6, POLARITY_LOW | 0x36)
    io.set_irq(6, False)
    io.set_irq(6, True)
    assert sent == [(0x36, False, FIXED, 0, False)]


def test_reprogramming_the_polarity_of_an_edge_entry_makes_no_edge():
    io, sent = make()
    program(io, 6, 0x36)
    program(io, 6, POLARITY_LOW | 0x36)                 # the low wire now reads asserted
    assert sent == []


def test_switching_an_entry_to_edge_clears_a_stuck_remote_irr():
    io, sent = make()
    program(io, 9, LEVEL | 0x39)
    io.set_irq(9, True)
    io.set_irq(9, False)
    program(io, 9, MASKED | 0x39)                       # what Linux does without an EOI register
    assert not entry(io, 9) & REMOTE_IRR
    program(io, 9, LEVEL | 0x39)
    io.set_irq(9, True)
    assert len(sent) == 2


def test_rewriting_a_level_entry_keeps_its_remote_irr():
    io, sent = make()
    program(io, 9, LEVEL | 0x39)
    io.set_irq(9, True)
    program(io, 9, LEVEL | 0x39)
    assert entry(io, 9) & REMOTE_IRR and len(sent) == 1


@pytest.mark.parametrize("mode, is_sent", [(FIXED, True), (LOWEST, True), (NMI, True),
                                           (EXTINT, True), (SMI, False), (INIT, False),
                                           (3, False), (6, False)])
def test_delivery_modes_reach_the_local_apic_or_are_dropped(mode, is_sent):
    io, sent = make()
    program(io, 2, mode << 8 | LOGICAL | 0x30, destination=0x0F)
    io.set_irq(2, True)
    assert sent == ([(0x30, False, mode, 0x0F, True)] if is_sent else [])


def test_a_dropped_level_message_sets_no_remote_irr():
    io, sent = make()
    program(io, 2, SMI << 8 | LEVEL | 0x30)
    io.set_irq(2, True)
    assert sent == [] and not entry(io, 2) & REMOTE_IRR


def test_reset_masks_every_entry_and_forgets_the_wires():
    io, sent = make()
    program(io, 9, LEVEL | 0x39)
    io.set_irq(9, True)
    io.reset()
    assert entry(io, 9) == MASKED and io.pins == 0
    program(io, 9, LEVEL | 0x39)
    assert len(sent) == 1                               # the wire reads low after reset


@pytest.mark.parametrize("pin", [-1, 24, 100])
def test_wiring_a_pin_that_does_not_exist_is_refused(pin):
    io, _ = make()
    with pytest.raises(ValueError):
        io.set_irq(pin, True)


# ---- properties -----------------------------------------------------------------------------

ACCESS = st.one_of(
    st.tuples(st.just("w"), st.integers(0, 0xFFF), st.sampled_from([1, 2, 4, 8]),
              st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("r"), st.integers(0, 0xFFF), st.sampled_from([1, 2, 4, 8]), st.just(0)),
    st.tuples(st.just("sel"), st.integers(0, 0xFF), st.just(4), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("irq"), st.integers(0, PIN_COUNT - 1), st.just(0), st.booleans()),
    st.tuples(st.just("eoi"), st.integers(0, 255), st.just(0), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(accesses=st.lists(ACCESS, max_size=80))
def test_entries_stay_well_formed_under_any_access_sequence(accesses):
    io, sent = make()
    for kind, a, size, value in accesses:
        if kind == "w":
            io.write(a, size, value & ((1 << (8 * size)) - 1))
        elif kind == "r":
            assert 0 <= io.read(a, size) < 1 << (8 * size)
        elif kind == "sel":
            io.write(IOREGSEL, 4, a)
            io.write(IOWIN, 4, value)
        elif kind == "irq":
            io.set_irq(a, bool(value))
        else:
            io.eoi(a)
        for e in io.redirection:
            assert e < 1 << 64
            assert e & 0x00FFFFFF_FFFE0000 == 0          # reserved bits 17-55
            assert not e & 1 << 12                      # delivery is instantaneous
            assert not e & REMOTE_IRR or e & LEVEL      # remote IRR only on level entries
        assert 0 <= io.ioregsel <= 0xFF and 0 <= io.id <= 0xF
    for vector, level, mode, destination, logical in sent:
        assert 0 <= vector <= 255 and mode in (FIXED, LOWEST, NMI, EXTINT)
        assert 0 <= destination <= 255 and isinstance(level, bool) and isinstance(logical, bool)


# ---- differential: QEMU's I/O APIC ----------------------------------------------------------

def test_register_behaviour_matches_qemu_with_version_0x11(tmp_path):
    from tests.devices.apic_probe import IOAPIC_SCRIPT, replay_ioapic, run_probe
    qemu = run_probe(IOAPIC_SCRIPT, tmp_path)
    assert replay_ioapic(IOAPIC_SCRIPT) == qemu
