"""The ACPI PM block (devices/acpi_pm.py) at the register level: the PM timer against
a clock that only moves when told, TMR_STS and the SCI, SCI_EN, the S5 sleep that
powers the machine off, and hostile accesses."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv.devices.acpi_pm import AcpiPm
from hv.firmware_tables import PC_BOARD, PmDesc
from tests.devices.harness import Harness, ManualClock, RecordingIrq

BASE = 0x600
PM1_STS, PM1_EN, PM1_CNT, PM_TMR = BASE, BASE + 2, BASE + 4, BASE + 8
HZ = 3_579_545
NS = 1_000_000_000
SLP_EN = 1 << 13
TMR_STS = TMR_EN = 1


def slp(typ: int) -> int:
    return typ << 10


class Board:
    def __init__(self, **kw) -> None:
        self.clock = ManualClock()
        self.sci = RecordingIrq()
        self.poweroffs = 0
        self.pm = AcpiPm(self.clock, sci=self.sci, poweroff=self._poweroff, **kw)
        self.io = Harness(self.pm)

    def _poweroff(self) -> None:
        self.poweroffs += 1

    def step_ticks(self, ticks: int) -> None:
        """Move the clock to exactly ``ticks`` PM timer ticks after now (rounded up to a ns)."""
        now = self.clock.now()
        target = -(-(now * HZ // NS + ticks) * NS // HZ)
        self.clock.step(target - now)

    def tmr(self) -> int:
        return self.io.bus.read(PM_TMR, 4)


@pytest.fixture
def b():
    return Board()


# -- the timer -------------------------------------------------------------------------------
def test_timer_reads_zero_at_power_on_and_counts_at_3_579545_mhz(b):
    assert b.tmr() == 0
    b.clock.step(NS // 1000)
    assert b.tmr() == HZ // 1000
    b.clock.step(NS - NS // 1000)
    assert b.tmr() == HZ


def test_timer_does_not_move_while_the_clock_stands_still(b):
    b.clock.step(12_345_678)
    assert b.tmr() == b.tmr() == 12_345_678 * HZ // NS


def test_24_bit_timer_wraps_and_never_shows_bits_above_23(b):
    b.step_ticks((1 << 24) - 1)
    assert b.tmr() == 0xFFFFFF
    b.step_ticks(2)
    assert b.tmr() == 1


def test_32_bit_timer_keeps_counting_past_24_bits():
    b = Board(timer_32bit=True)
    b.step_ticks((1 << 24) + 5)
    assert b.tmr() == (1 << 24) + 5


def test_timer_word_and_byte_reads_agree_with_the_dword(b):
    b.step_ticks(0x123456)
    assert b.io.bus.read(PM_TMR, 2) | b.io.bus.read(PM_TMR + 2, 2) << 16 == 0x123456
    assert [b.io.inb(PM_TMR + i) for i in range(4)] == [0x56, 0x34, 0x12, 0x00]


def test_timer_is_read_only(b):
    b.step_ticks(1000)
    b.io.bus.write(PM_TMR, 4, 0)
    assert b.tmr() == 1000


# -- TMR_STS and the SCI ---------------------------------------------------------------------
def test_tmr_sts_sets_when_bit_23_changes_and_clears_on_writing_one(b):
    b.step_ticks((1 << 23) - 1)
    assert b.io.inw(PM1_STS) & TMR_STS == 0
    b.step_ticks(1)
    assert b.io.inw(PM1_STS) & TMR_STS
    b.io.outw(PM1_STS, 0)                     # writing 0 changes nothing
    assert b.io.inw(PM1_STS) & TMR_STS
    b.io.outw(PM1_STS, TMR_STS)
    assert b.io.inw(PM1_STS) & TMR_STS == 0
    b.step_ticks(1 << 23)                      # bit 23 changes again (1 -> 0 at 2**24)
    assert b.io.inw(PM1_STS) & TMR_STS


def test_32_bit_timer_sets_tmr_sts_at_bit_31_only():
    b = Board(timer_32bit=True)
    b.step_ticks(1 << 23)
    assert b.io.inw(PM1_STS) & TMR_STS == 0
    b.step_ticks((1 << 31) - (1 << 23))
    assert b.io.inw(PM1_STS) & TMR_STS


def test_sci_rises_at_the_timer_carry_only_when_tmr_en_is_set(b):
    b.step_ticks((1 << 23) + 10)
    assert not b.sci.level                     # TMR_STS set, TMR_EN clear
    b.io.outw(PM1_EN, TMR_EN)
    assert b.sci.level and b.sci.edges == 1
    b.io.outw(PM1_STS, TMR_STS)               # the handler acknowledges
    assert not b.sci.level
    b.step_ticks((1 << 23) - 11)               # one tick before the next carry ...
    assert not b.sci.level
    b.step_ticks(1)                            # ... and at it: raised by the clock timer
    assert b.sci.level and b.sci.edges == 2
    b.io.outw(PM1_EN, 0)
    assert not b.sci.level


def test_no_clock_timer_is_pending_while_the_timer_event_is_disabled(b):
    assert b.clock.next_deadline() is None
    b.io.outw(PM1_EN, TMR_EN)
    assert b.clock.next_deadline() == -(-(1 << 23) * NS // HZ)
    b.io.outw(PM1_EN, 0)
    assert b.clock.next_deadline() is None


def test_only_the_defined_enable_bits_stick(b):
    b.io.outw(PM1_EN, 0xFFFF)
    assert b.io.inw(PM1_EN) == 0x0721         # TMR, GBL, PWRBTN, SLPBTN, RTC


# -- PM1 control and sleep -------------------------------------------------------------------
def test_sci_en_reads_one_and_cannot_be_cleared(b):
    assert b.io.inw(PM1_CNT) & 1
    b.io.outw(PM1_CNT, 0)
    assert b.io.inw(PM1_CNT) == 1


def test_slp_en_with_the_s5_type_powers_off_once(b):
    b.io.outw(PM1_CNT, slp(5) | SLP_EN | 1)
    assert b.poweroffs == 1


def test_slp_typ_alone_does_not_power_off_and_slp_en_reads_zero(b):
    b.io.outw(PM1_CNT, slp(5))
    assert b.poweroffs == 0
    assert b.io.inw(PM1_CNT) == slp(5) | 1
    b.io.outw(PM1_CNT, slp(5) | SLP_EN)
    assert b.poweroffs == 1
    assert b.io.inw(PM1_CNT) & SLP_EN == 0


@pytest.mark.parametrize("typ", [0, 1, 2, 3, 4, 6, 7])
def test_other_sleep_types_are_ignored_and_recorded(b, typ):
    b.io.outw(PM1_CNT, slp(typ) | SLP_EN)
    assert b.poweroffs == 0
    assert list(b.pm.ignored_sleeps) == [typ]


def test_a_guest_asking_for_absent_sleep_states_forever_is_remembered_boundedly(b):
    for i in range(10_000):
        b.io.outw(PM1_CNT, slp(i % 5) | SLP_EN)
    assert len(b.pm.ignored_sleeps) <= 16 and b.poweroffs == 0


def test_a_byte_write_to_the_high_half_of_pm1_cnt_enters_s5(b):
    b.io.outb(PM1_CNT + 1, (slp(5) | SLP_EN) >> 8)
    assert b.poweroffs == 1


def test_the_s5_type_follows_the_board_description():
    pm = PmDesc(s5_slp_typ=3)
    b = Board(s5_slp_typ=pm.s5_slp_typ)
    b.io.outw(PM1_CNT, slp(5) | SLP_EN)
    b.io.outw(PM1_CNT, slp(3) | SLP_EN)
    assert (b.poweroffs, list(b.pm.ignored_sleeps)) == (1, [5])


def test_the_pc_board_device_sits_where_the_fadt_says():
    dev = AcpiPm.for_board(ManualClock(), PC_BOARD.pm)
    (r,) = dev.ports
    assert (r.base, r.length) == (PC_BOARD.pm.pm1a_evt, 12)
    assert PC_BOARD.pm.pm1a_cnt == r.base + 4 and PC_BOARD.pm.pm_tmr == r.base + 8
    assert (dev.s5_slp_typ, dev.timer_bits) == (PC_BOARD.pm.s5_slp_typ, 24)


def test_reset_clears_enables_sleep_type_and_the_sci(b):
    b.step_ticks(1 << 23)
    b.io.outw(PM1_EN, TMR_EN)
    b.io.outw(PM1_CNT, slp(2))
    assert b.sci.level
    b.pm.reset()
    assert (b.io.inw(PM1_EN), b.io.inw(PM1_CNT), b.io.inw(PM1_STS), b.sci.level) == (0, 1, 0, False)


# -- hostile accesses ------------------------------------------------------------------------
def test_bytes_between_and_after_the_registers_float_high(b):
    assert b.io.inw(BASE + 6) == 0xFFFF
    assert b.pm.read(12, 4) == 0xFFFFFFFF and b.pm.read(-3, 2) == 0xFFFF
    assert b.pm.read(10, 4) >> 16 == 0xFFFF    # past the timer's last byte


def test_a_dword_read_of_the_event_block_returns_status_and_enable(b):
    b.io.outw(PM1_EN, TMR_EN)
    b.step_ticks(1 << 23)
    assert b.io.bus.read(PM1_STS, 4) == TMR_STS | TMR_EN << 16


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-4, 20), st.sampled_from([0, 1, 2, 3, 4, 8]),
                          st.integers(0, (1 << 64) - 1), st.integers(0, 1 << 24)), max_size=30))
def test_any_access_sequence_keeps_reads_in_width_and_powers_off_only_on_s5(ops):
    b = Board()
    expected = 0
    for is_write, offset, size, value, ticks in ops:
        b.step_ticks(ticks)
        width = max(1, min(size, 4))
        if is_write:
            # A write reaches PM1_CNT's high byte (offset 5) when it covers it; S5 is
            # SLP_EN with SLP_TYP 5 in that byte.
            if offset <= 5 < offset + width:
                high = value >> (8 * (5 - offset)) & 0xFF
                expected += (high & 0x20 != 0) and (high >> 2 & 7) == 5
            b.pm.write(offset, size, value)
        else:
            assert 0 <= b.pm.read(offset, size) < 1 << (8 * width)
        assert b.poweroffs == expected
        assert b.pm.read(4, 2) & 1                   # SCI_EN stays set
        assert b.sci.level == bool(b.pm.read(0, 2) & b.pm.read(2, 2) & 0x0721)
