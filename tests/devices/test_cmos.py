import calendar

from hypothesis import given, settings, strategies as st

from hv.devices.base import RecordingIrq
from hv.devices.cmos import CmosRtc, Reg, RegA, RegB, RegC
from hv.clock import NS_PER_S
from tests.devices.harness import Harness, ManualClock

MiB = 1 << 20
# 2024-02-29 (a Thursday) 13:45:30 UTC
T0 = calendar.timegm((2024, 2, 29, 13, 45, 30, 0, 0, 0))


def make(**kw):
    clock = ManualClock()
    irq = RecordingIrq()
    kw.setdefault("host_time", lambda: T0)
    rtc = CmosRtc(clock, irq=irq, **kw)
    return rtc, Harness(rtc), clock, irq


def rd(h, reg):
    h.outb(0x70, reg)
    return h.inb(0x71)


def wr(h, reg, value):
    h.outb(0x70, reg)
    h.outb(0x71, value)


def test_time_registers_read_host_utc_time_in_bcd():
    _, h, _, _ = make()
    assert [rd(h, r) for r in (0, 2, 4, 7, 8, 9)] == [0x30, 0x45, 0x13, 0x29, 0x02, 0x24]


def test_day_of_week_counts_sunday_as_one():
    _, h, _, _ = make()
    assert rd(h, Reg.DAY_OF_WEEK) == 5  # Thursday


def test_binary_mode_returns_plain_numbers():
    _, h, _, _ = make()
    wr(h, Reg.B, RegB.H24 | RegB.DM)
    assert [rd(h, r) for r in (0, 2, 4, 7, 8, 9)] == [30, 45, 13, 29, 2, 24]


def test_twelve_hour_mode_sets_bit7_for_pm():
    _, h, _, _ = make()
    wr(h, Reg.B, 0)  # 12 h, BCD
    assert rd(h, Reg.HOURS) == 0x80 | 0x01


def test_twelve_hour_mode_shows_midnight_as_twelve_am():
    _, h, _, _ = make(host_time=lambda: calendar.timegm((2024, 1, 1, 0, 5, 0, 0, 0, 0)))
    wr(h, Reg.B, 0)
    assert rd(h, Reg.HOURS) == 0x12


def test_time_advances_with_the_virtual_clock():
    _, h, clock, _ = make()
    clock.step(31 * NS_PER_S)
    assert (rd(h, Reg.SECONDS), rd(h, Reg.MINUTES)) == (0x01, 0x46)


def test_time_does_not_follow_the_host_clock_after_power_on():
    t = [T0]
    _, h, _, _ = make(host_time=lambda: t[0])
    t[0] += 3600
    assert rd(h, Reg.HOURS) == 0x13


def test_guest_write_sets_the_time_and_it_keeps_running():
    _, h, clock, _ = make()
    wr(h, Reg.HOURS, 0x08)
    clock.step(2 * NS_PER_S)
    assert (rd(h, Reg.HOURS), rd(h, Reg.SECONDS)) == (0x08, 0x32)


def test_guest_write_in_twelve_hour_mode_understands_pm_bit():
    rtc, h, _, _ = make()
    wr(h, Reg.B, RegB.DM)  # binary, 12 h
    wr(h, Reg.HOURS, 0x80 | 3)
    wr(h, Reg.B, RegB.DM | RegB.H24)
    assert rd(h, Reg.HOURS) == 15


def test_guest_write_of_year_uses_the_century_byte():
    _, h, _, _ = make()
    wr(h, Reg.YEAR, 0x99)
    wr(h, Reg.B, RegB.H24 | RegB.DM)
    assert rd(h, Reg.YEAR) == 99 and rd(h, Reg.CENTURY) == 0x20


def test_set_bit_freezes_the_clock_until_cleared():
    _, h, clock, _ = make()
    wr(h, Reg.B, RegB.SET | RegB.H24)
    clock.step(5 * NS_PER_S)
    frozen = rd(h, Reg.SECONDS)
    wr(h, Reg.B, RegB.H24)
    clock.step(2 * NS_PER_S)
    assert (frozen, rd(h, Reg.SECONDS)) == (0x30, 0x32)


def test_uip_is_set_only_in_the_last_244_microseconds_of_a_second():
    _, h, clock, _ = make()
    clock.step(NS_PER_S - 245_000)
    before = rd(h, Reg.A) & RegA.UIP
    clock.step(2_000)
    during = rd(h, Reg.A) & RegA.UIP
    clock.step(243_000)
    after = rd(h, Reg.A) & RegA.UIP
    assert (before, during, after) == (0, RegA.UIP, 0)


def test_register_a_resets_to_0x26_and_keeps_divider_and_rate_writes():
    _, h, _, _ = make()
    first = rd(h, Reg.A)
    wr(h, Reg.A, 0xAF)  # UIP bit in the write is ignored
    assert (first, rd(h, Reg.A)) == (0x26, 0x2F)


def test_register_b_resets_to_24h_bcd():
    _, h, _, _ = make()
    assert rd(h, Reg.B) == 0x02


def test_register_d_reports_valid_ram_and_time():
    _, h, _, _ = make()
    wr(h, Reg.D, 0)
    assert rd(h, Reg.D) == 0x80


def test_register_c_reports_update_flag_and_clears_on_read():
    _, h, clock, _ = make()
    clock.step(NS_PER_S)
    assert (rd(h, Reg.C) & RegC.UF, rd(h, Reg.C)) == (RegC.UF, 0)


def test_register_c_is_read_only():
    _, h, clock, _ = make()
    wr(h, Reg.C, 0xFF)
    assert rd(h, Reg.C) == 0


def test_periodic_interrupt_raises_irq8_and_reading_c_lowers_it():
    _, h, clock, irq = make()
    rd(h, Reg.C)
    wr(h, Reg.B, RegB.H24 | RegB.PIE)  # 1024 Hz from the reset rate
    clock.step(NS_PER_S // 1024 + 1)
    raised = irq.level
    c = rd(h, Reg.C)
    assert (raised, c & (RegC.IRQF | RegC.PF), irq.level) == (True, RegC.IRQF | RegC.PF, False)


def test_periodic_interrupt_repeats_after_each_read_of_c():
    _, h, clock, irq = make()
    wr(h, Reg.B, RegB.H24 | RegB.PIE)
    for _ in range(3):
        clock.step(NS_PER_S // 1024 + 1)
        rd(h, Reg.C)
    assert irq.edges == 3


def test_periodic_flag_without_pie_does_not_raise_irq():
    _, h, clock, irq = make()
    clock.step(NS_PER_S // 100)
    assert (rd(h, Reg.C) & (RegC.PF | RegC.IRQF), irq.edges) == (RegC.PF, 0)


def test_update_ended_interrupt_fires_each_second():
    _, h, clock, irq = make()
    wr(h, Reg.B, RegB.H24 | RegB.UIE)
    clock.step(NS_PER_S)
    assert irq.level and rd(h, Reg.C) & RegC.UF


def test_alarm_interrupt_fires_at_the_programmed_second():
    _, h, clock, irq = make()
    wr(h, Reg.SECONDS_ALARM, 0x33)
    wr(h, Reg.MINUTES_ALARM, 0xC0)  # don't care
    wr(h, Reg.HOURS_ALARM, 0xFF)
    wr(h, Reg.B, RegB.H24 | RegB.AIE)
    clock.step(2 * NS_PER_S)
    early = irq.level
    clock.step(NS_PER_S)
    assert (early, irq.level, bool(rd(h, Reg.C) & RegC.AF)) == (False, True, True)


def test_nmi_bit_does_not_change_the_selected_register():
    rtc, h, _, _ = make()
    h.outb(0x70, 0x80 | Reg.MONTH)
    assert (h.inb(0x71), rtc.nmi_disabled) == (0x02, True)


def test_index_selects_only_128_bytes_of_ram():
    _, h, _, _ = make()
    wr(h, 0x50, 0xA5)
    assert rd(h, 0x50) == 0xA5


def test_sixteen_mib_reports_640k_base_and_15m_extended():
    _, h, _, _ = make(mem_size=16 * MiB)
    assert [rd(h, r) for r in (0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35)] == \
        [0x80, 0x02, 0x00, 0x3C, 0x00, 0x3C, 0, 0]


def test_small_memory_reports_less_base_memory_and_no_extended():
    _, h, _, _ = make(mem_size=512 * 1024)
    assert [rd(h, r) for r in (0x15, 0x16, 0x17, 0x18)] == [0x00, 0x02, 0, 0]


def test_large_memory_caps_extended_and_counts_64k_blocks_above_16m():
    _, h, _, _ = make(mem_size=128 * MiB)
    ext = rd(h, 0x17) | rd(h, 0x18) << 8
    above = rd(h, 0x34) | rd(h, 0x35) << 8
    assert (ext, above) == (0xFFFF, (112 * MiB) // 65536)


def test_floppy_and_equipment_bytes_describe_one_144m_drive():
    _, h, _, _ = make()
    assert (rd(h, 0x10), rd(h, 0x14) & 0xC1) == (0x40, 0x01)


def test_set_floppy_types_reports_two_drives():
    rtc, h, _, _ = make()
    rtc.set_floppy_types(4, 3)
    assert (rd(h, 0x10), rd(h, 0x14) & 0xC1) == (0x43, 0x41)


def test_set_hd_count_marks_disks_as_extended_types():
    rtc, h, _, _ = make()
    rtc.set_hd_count(1)
    assert (rd(h, 0x12), rd(h, 0x19)) == (0xF0, 47)


def test_century_byte_is_bcd_20():
    _, h, _, _ = make()
    assert rd(h, Reg.CENTURY) == 0x20


def test_checksum_covers_0x10_to_0x2d_and_follows_config_changes():
    rtc, h, _, _ = make(mem_size=64 * MiB)
    rtc.set_hd_count(2)
    total = sum(rd(h, r) for r in range(0x10, 0x2E))
    assert (rd(h, 0x2E) << 8 | rd(h, 0x2F)) == total


def test_reset_keeps_ram_and_clears_interrupt_enables():
    rtc, h, _, _ = make()
    wr(h, Reg.SHUTDOWN_STATUS, 0x05)
    wr(h, Reg.B, RegB.H24 | RegB.PIE)
    rtc.reset()
    assert (rd(h, Reg.SHUTDOWN_STATUS), rd(h, Reg.B)) == (0x05, 0x02)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.sampled_from([1, 2, 4]),
                          st.integers(0, 0xFFFFFFFF), st.integers(0, 3 * NS_PER_S)),
                max_size=40))
def test_random_port_accesses_never_raise(ops):
    rtc, h, clock, _ = make()
    for is_write, offset, size, value, dt in ops:
        clock.step(dt)
        if is_write:
            rtc.write(offset, size, value & ((1 << 8 * size) - 1))
        else:
            assert 0 <= rtc.read(offset, size) < (1 << 8 * size)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFF), st.integers(0, 0xFF)), max_size=40))
def test_random_register_writes_never_raise_and_time_stays_readable(ops):
    _, h, clock, _ = make()
    for reg, value in ops:
        wr(h, reg, value)
        clock.step(NS_PER_S // 3)
    for reg in range(14):
        assert 0 <= rd(h, reg) <= 0xFF
