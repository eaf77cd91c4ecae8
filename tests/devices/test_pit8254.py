import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv import fastpath
from hv.devices.pit8254 import PIT_HZ, Pit8254, ns_at
from tests.devices.harness import CrawlingClock, Harness, ManualClock, RecordingIrq

CH0, CH1, CH2, CTRL, PORT_B = 0x40, 0x41, 0x42, 0x43, 0x61


def make():
    clock = ManualClock()
    irq = RecordingIrq()
    pit = Pit8254(clock, irq)
    return pit, Harness(pit), clock, irq


def program(h, ch, mode, count, rw=3, bcd=False):
    h.outb(CTRL, ch << 6 | rw << 4 | mode << 1 | int(bcd))
    if rw in (1, 3):
        h.outb(CH0 + ch, count & 0xFF)
    if rw in (2, 3):
        h.outb(CH0 + ch, count >> 8 & 0xFF)


def read16(h, ch):
    lo = h.inb(CH0 + ch)
    return lo | h.inb(CH0 + ch) << 8


def step_to(clock, ns):
    return clock.step(ns - clock.now())


def test_power_on_pit_raises_no_irq():
    pit, h, clock, irq = make()
    clock.step(2_000_000_000)
    assert irq.edges == 0
    assert pit.channel_frequency(0) == 0.0


def test_bios_mode3_count0_gives_18_2_hz():
    pit, h, clock, irq = make()
    program(h, 0, 3, 0)
    assert abs(pit.channel_frequency(0) - 18.2065) < 0.001


def test_mode3_irq0_first_edge_exactly_one_period_after_load():
    pit, h, clock, irq = make()
    program(h, 0, 3, 0)               # written at tick 0, CE loaded at tick 1
    step_to(clock, ns_at(1 + 65536) - 1)
    assert irq.edges == 0
    clock.step(1)
    assert irq.edges == 1


def test_mode3_irq0_repeats_every_period():
    pit, h, clock, irq = make()
    program(h, 0, 3, 0)
    for k in range(1, 11):
        step_to(clock, ns_at(1 + k * 65536))
        assert irq.edges == k
    assert pit.lost_ticks == 0


def test_mode2_irq0_period_matches_count():
    pit, h, clock, irq = make()
    program(h, 0, 2, 1193)
    for k in range(1, 5):
        step_to(clock, ns_at(1 + k * 1193) - 1)
        assert irq.edges == k - 1
        clock.step(1)
        assert irq.edges == k


def test_only_one_timer_is_pending_for_channel0():
    pit, h, clock, irq = make()
    program(h, 0, 2, 1000)
    program(h, 0, 2, 500)
    program(h, 0, 3, 0)
    live = [e for e in clock._heap if not e[2].cancelled]
    assert len(live) == 1


def test_host_falling_behind_fires_once_and_counts_lost_ticks():
    pit, h, clock, irq = make()
    program(h, 0, 2, 1193)
    fired = clock.step(1_000_000_000)
    assert fired == 1 and irq.edges == 1
    # edges at ticks 1 + k*1193 up to tick 1193182: k = 1..1000, one delivered
    assert pit.lost_ticks == 999
    assert clock.next_deadline() > clock.now()


def test_mode0_raises_irq_once_at_terminal_count():
    pit, h, clock, irq = make()
    program(h, 0, 0, 100)
    step_to(clock, ns_at(101) - 1)
    assert irq.edges == 0
    clock.step(1)
    assert irq.edges == 1
    clock.step(1_000_000_000)
    assert irq.edges == 1


def test_a_short_mode0_count_cannot_pass_its_edge_inside_the_write_that_arms_it():
    # A loaded host: 5 us (6 ticks) pass between any two reads of the time, longer than
    # the count. The edge must still be armed and fire.
    clock = CrawlingClock(crawl=5_000)
    irq = RecordingIrq()
    h = Harness(Pit8254(clock, irq))
    program(h, 0, 0, 2)
    clock.run_due()
    assert irq.edges == 1


def test_mode0_out_low_until_terminal_count_in_status():
    pit, h, clock, irq = make()
    program(h, 0, 0, 100)
    h.outb(CTRL, 0xE2)                # read-back: status only, counter 0
    assert h.inb(CH0) & 0x80 == 0
    step_to(clock, ns_at(101))
    h.outb(CTRL, 0xE2)
    assert h.inb(CH0) & 0x80


def test_reads_count_down_as_clock_advances():
    pit, h, clock, irq = make()
    program(h, 2, 2, 50000)
    h.outb(PORT_B, 0x01)              # gate 2 rising edge starts mode-2 counting
    clock.step(1_000)
    first = read16(h, 2)
    clock.step(10_000)
    second = read16(h, 2)
    assert second < first
    assert first - second in (11, 12, 13)   # 10 us = ~11.9 ticks


def test_counter0_reads_count_down():
    pit, h, clock, irq = make()
    program(h, 0, 3, 0)
    clock.step(1_000_000)
    a = read16(h, 0)
    clock.step(1_000_000)
    b = read16(h, 0)
    assert a != b


def test_mode2_count_value_after_n_ticks():
    pit, h, clock, irq = make()
    program(h, 0, 2, 1000)
    step_to(clock, ns_at(1 + 300))
    assert read16(h, 0) == 700


def test_mode3_even_count_decrements_by_two():
    pit, h, clock, irq = make()
    program(h, 0, 3, 1000)
    step_to(clock, ns_at(1 + 100))
    assert read16(h, 0) == 800


def test_latch_command_freezes_read_value():
    pit, h, clock, irq = make()
    program(h, 0, 2, 60000)
    step_to(clock, ns_at(1 + 1000))
    h.outb(CTRL, 0x00)                # counter latch, counter 0
    clock.step(5_000_000)
    assert read16(h, 0) == 59000
    assert read16(h, 0) != 59000      # latch released after both bytes


def test_second_latch_before_read_is_ignored():
    pit, h, clock, irq = make()
    program(h, 0, 2, 60000)
    step_to(clock, ns_at(1 + 1000))
    h.outb(CTRL, 0x00)
    clock.step(1_000_000)
    h.outb(CTRL, 0x00)
    assert read16(h, 0) == 59000


def test_lsb_msb_flip_flop_for_writes_and_reads():
    pit, h, clock, irq = make()
    h.outb(CTRL, 0x34)                # counter 0, LSB then MSB, mode 2
    h.outb(CH0, 0x34)
    h.outb(CH0, 0x12)
    assert pit.counters[0].cr == 0x1234
    h.outb(CTRL, 0x00)
    assert h.inb(CH0) == 0x34
    assert h.inb(CH0) == 0x12


def test_lsb_only_access_mode():
    pit, h, clock, irq = make()
    program(h, 0, 2, 0x80, rw=1)
    assert pit.counters[0].cr == 0x80
    assert h.inb(CH0) == 0x80
    assert h.inb(CH0) == 0x80


def test_msb_only_access_mode():
    pit, h, clock, irq = make()
    program(h, 0, 2, 0x1200, rw=2)
    assert pit.counters[0].cr == 0x1200
    assert h.inb(CH0) == 0x12


def test_read_back_status_byte_reports_mode_access_and_null_count():
    pit, h, clock, irq = make()
    h.outb(CTRL, 0xB6)                # counter 2, LSB/MSB, mode 3, binary
    h.outb(CTRL, 0xE8)                # read-back status of counter 2
    status = h.inb(CH2)
    assert status & 0x3F == 0x36
    assert status & 0x40              # NULL COUNT: no count written yet
    h.outb(CH2, 0x00)
    h.outb(CH2, 0x10)
    clock.step(2_000)
    h.outb(CTRL, 0xE8)
    assert h.inb(CH2) & 0x40 == 0


def test_read_back_status_comes_before_latched_count():
    pit, h, clock, irq = make()
    program(h, 0, 2, 5000)
    step_to(clock, ns_at(1 + 10))
    h.outb(CTRL, 0xC2)                # latch count and status, counter 0
    assert h.inb(CH0) == 0x34 | 0x80  # OUT high in mode 2, count loaded
    assert read16(h, 0) == 4990


def test_read_back_latches_several_counters():
    pit, h, clock, irq = make()
    program(h, 0, 2, 5000)
    program(h, 1, 2, 3000)
    step_to(clock, ns_at(1 + 100))
    h.outb(CTRL, 0xD6)                # latch count of counters 0 and 1
    clock.step(1_000_000)
    assert read16(h, 0) == 4900
    assert read16(h, 1) == 2900


def test_port_b_gate_and_speaker_bits_read_back():
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x03)
    assert h.inb(PORT_B) & 0x03 == 0x03
    h.outb(PORT_B, 0xF0)              # high bits are read-only
    assert h.inb(PORT_B) & 0x0F == 0


def test_refresh_bit_toggles_every_15_us():
    pit, h, clock, irq = make()
    a = h.inb(PORT_B) & 0x10
    clock.step(15_085)
    b = h.inb(PORT_B) & 0x10
    assert a != b


def test_out2_follows_mode0_terminal_count_with_gate_high():
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x01)
    program(h, 2, 0, 100)
    assert h.inb(PORT_B) & 0x20 == 0
    step_to(clock, ns_at(101))
    assert h.inb(PORT_B) & 0x20


def test_gate2_low_suspends_mode0_counting():
    pit, h, clock, irq = make()
    program(h, 2, 0, 1000)            # gate 2 low at power-on
    clock.step(1_000_000)
    assert read16(h, 2) == 1000
    assert h.inb(PORT_B) & 0x20 == 0


def test_out2_square_wave_in_mode3():
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x01)
    program(h, 2, 3, 100)
    step_to(clock, ns_at(1 + 10))
    assert h.inb(PORT_B) & 0x20
    step_to(clock, ns_at(1 + 60))
    assert h.inb(PORT_B) & 0x20 == 0
    step_to(clock, ns_at(1 + 110))
    assert h.inb(PORT_B) & 0x20


def test_gate2_rising_edge_restarts_mode2_count():
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x01)
    program(h, 2, 2, 1000)
    step_to(clock, ns_at(1 + 500))
    h.outb(PORT_B, 0x00)
    h.outb(PORT_B, 0x01)
    step_to(clock, ns_at(1 + 500 + 1 + 10))
    assert read16(h, 2) == 990


def test_mode1_one_shot_triggered_by_gate2():
    pit, h, clock, irq = make()
    program(h, 2, 1, 100)
    assert h.inb(PORT_B) & 0x20           # OUT high until triggered
    h.outb(PORT_B, 0x01)                  # trigger at tick 0
    clock.step(ns_at(50))
    assert h.inb(PORT_B) & 0x20 == 0
    step_to(clock, ns_at(1 + 100))
    assert h.inb(PORT_B) & 0x20


def test_mode4_strobe_pulses_irq0_once():
    pit, h, clock, irq = make()
    program(h, 0, 4, 100)
    clock.step(ns_at(1 + 101))
    clock.step(1_000_000_000)
    assert irq.edges == 1


def test_mode2_count_rewrite_takes_effect_at_end_of_period():
    pit, h, clock, irq = make()
    program(h, 0, 2, 1000)
    step_to(clock, ns_at(1 + 200))
    h.outb(CH0, 0xF4)                 # new count 500, no control word
    h.outb(CH0, 0x01)
    assert read16(h, 0) == 800        # current period continues
    step_to(clock, ns_at(1 + 1000))
    assert irq.edges == 1
    step_to(clock, ns_at(1 + 1500))
    assert irq.edges == 2


def test_bcd_count_is_decimal():
    pit, h, clock, irq = make()
    program(h, 0, 2, 0x0100, bcd=True)  # BCD 100
    assert pit.channel_frequency(0) == PIT_HZ / 100
    step_to(clock, ns_at(1 + 1))
    assert read16(h, 0) == 0x0099


def test_control_word_reprogram_cancels_pending_irq():
    pit, h, clock, irq = make()
    program(h, 0, 0, 100)
    h.outb(CTRL, 0x30)                # mode 0 control word, no count yet
    clock.step(1_000_000)
    assert irq.edges == 0


def test_reset_returns_to_unprogrammed_state():
    pit, h, clock, irq = make()
    program(h, 0, 3, 0)
    pit.reset()
    clock.step(1_000_000_000)
    assert irq.edges == 0


def is_bcd(v: int) -> bool:
    return all((v >> s & 0xF) <= 9 for s in (0, 4, 8, 12))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([CH0, CH1, CH2, CTRL, PORT_B]),
                          st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF),
                          st.booleans(), st.integers(0, 2_000_000_000)),
                max_size=60))
def test_random_port_traffic_and_clock_steps_keep_counts_in_range_and_one_timer(ops):
    pit, h, clock, irq = make()
    for port, size, value, is_write, step in ops:
        if is_write:
            h.bus.write(port, size, value & ((1 << (8 * size)) - 1))
        else:
            got = pit.read(port - 0x40 if port != PORT_B else 0x21, size)   # the device's answer
            assert 0 <= got < 1 << (8 * size)
        clock.step(step % 3 and step % 100_000)
        t = pit._now_tick()
        for c in pit.counters:
            if c.programmed and c.armed:
                count = c.count(t)
                assert 0 <= count < 0x10000
                if c.bcd:
                    assert is_bcd(count)       # a BCD counter never shows a hex digit
                if c.mode in (2, 3) and c.gate and c.pending is None and c.frozen is None:
                    raw = c._raw_count(t)
                    assert 0 < raw <= c.n       # periodic: counts down from N, reloads at 0
        live = [e for e in clock._heap if not e[2].cancelled]
        assert len(live) <= 1                   # one timer, for channel 0's next edge
        assert clock.next_deadline() is None or clock.next_deadline() > clock.now()
        assert irq.edges == pit.irq_count       # every edge reached IRQ 0
        if not pit.counters[0].programmed:
            assert irq.edges == 0


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFF), st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF),
       st.integers(0, 10**12))
def test_accesses_outside_the_counters_and_port_b_read_all_ones_and_program_nothing(
        offset, size, value, step):
    pit, h, clock, irq = make()
    mine = {offset + i for i in range(size)} & {0, 1, 2, 3, 0x21}
    pit.write(offset, size, value)
    clock.step(step)
    got = pit.read(offset, size)
    assert 0 <= got < 1 << (8 * size)
    if not mine:
        assert got == (1 << (8 * size)) - 1
        assert not any(c.programmed for c in pit.counters) and pit.port_b == 0
        assert irq.edges == 0


def test_mode3_odd_count_high_half_is_one_tick_longer():
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x01)
    program(h, 2, 3, 5)               # high 3 ticks, low 2 ticks
    highs = []
    for tick in range(1, 11):
        step_to(clock, ns_at(tick))
        highs.append(bool(h.inb(PORT_B) & 0x20))
    assert highs == [True, True, True, False, False] * 2


def test_mode3_count_rewrite_in_high_half_takes_effect_at_half_cycle():
    pit, h, clock, irq = make()
    program(h, 0, 3, 1000)
    step_to(clock, ns_at(1 + 100))
    h.outb(CH0, 400 & 0xFF)
    h.outb(CH0, 400 >> 8)
    # old high half ends at tick 501; the new low half lasts 200 ticks
    step_to(clock, ns_at(701) - 1)
    assert irq.edges == 0
    clock.step(1)
    assert irq.edges == 1
    assert pit.channel_frequency(0) == PIT_HZ / 400


def test_a_mode3_rewrite_reloads_the_new_count_at_the_half_cycle_tick_itself():
    pit, h, clock, irq = make()
    program(h, 1, 3, 1000)
    step_to(clock, ns_at(1 + 100))
    h.outb(CH1, 400 & 0xFF)
    h.outb(CH1, 400 >> 8)
    step_to(clock, ns_at(500))
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) & 0x40                        # NULL COUNT: not loaded yet
    assert count_and_out(h, 1) == (2, True)         # the old high half's last tick
    step_to(clock, ns_at(501))
    assert count_and_out(h, 1) == (400, False)      # the new count, in the low half
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) & 0x40 == 0


def test_channel0_ticks_reach_the_cpu_through_the_pic():
    from hv.devices.pic8259 import DualPic8259
    clock = ManualClock()
    pic = DualPic8259()
    pit = Pit8254(clock, pic.line(0))
    h = Harness(pic, pit)
    for port, value in ((0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01)):
        h.outb(port, value)
    program(h, 0, 3, 0)
    clock.step(ns_at(1 + 65536))
    assert pic.has_interrupt()
    assert pic.acknowledge() == 0x08


def test_the_input_clock_is_1_193182_mhz():
    pit, h, clock, irq = make()
    program(h, 0, 2, 2)
    assert pit.channel_frequency(0) == 596_591.0            # 14.31818 MHz / 12 / 2
    program(h, 1, 3, 11932)
    assert pit.channel_frequency(1) == 1_193_182 / 11932


def test_read_back_ignores_the_reserved_bit_0():
    pit, h, clock, irq = make()
    program(h, 0, 2, 5000)
    program(h, 1, 2, 3000)
    step_to(clock, ns_at(1 + 10))
    h.outb(CTRL, 0xC5)                # latch count and status of counter 1 (D0 reserved, set)
    h.outb(CTRL, 0xE3)                # status only, counter 0
    h.outb(CTRL, 0xD3)                # count only, counter 0 (its status already latched)
    clock.step(1_000_000)
    assert h.inb(CH0) == 0x34 | 0x80                # status first
    assert read16(h, 0) == 4990                     # then the count latched with it
    assert h.inb(CH1) == 0x34 | 0x80
    assert read16(h, 1) == 2990


def test_a_read_back_with_the_reserved_bit_0_set_latches_no_other_counter():
    pit, h, clock, irq = make()
    for ch in range(3):
        program(h, ch, 2, 5000)
    h.outb(PORT_B, 0x01)                            # gate 2 high: counter 2 counts too
    step_to(clock, ns_at(1 + 10))
    h.outb(CTRL, 0xC3)                              # counter 0 only (and D0)
    step_to(clock, ns_at(1 + 110))
    assert [read16(h, 1), read16(h, 2)] == [4890, 4890]      # live counts, no status byte
    assert h.inb(CH0) == 0x80 | 0x34 and read16(h, 0) == 4990   # counter 0's own latch
    h.outb(CTRL, 0xC5)                              # counter 1 only (and D0)
    step_to(clock, ns_at(1 + 210))
    assert [read16(h, 0), read16(h, 2)] == [4790, 4790]


def test_port_b_reads_exactly_its_stored_bits_refresh_and_out2():
    pit, h, clock, irq = make()
    seen = set()
    for _ in range(4):
        seen.add(h.inb(PORT_B))
        clock.step(15_085)
    assert seen == {0x00, 0x10}                     # refresh toggles; OUT2 low: unprogrammed
    program(h, 2, 3, 100)
    h.outb(PORT_B, 0x0D)                            # gate 2 on, bits 2-3 stored
    clock.step(ns_at(10))
    assert h.inb(PORT_B) & ~0x10 == 0x2D            # OUT2 high in the first half-cycle
    h.outb(PORT_B, 0x0C)                            # gate 2 off: OUT2 held high
    assert h.inb(PORT_B) & ~0x10 == 0x2C


def test_the_speaker_sounds_only_with_gate_2_and_data_on_and_counter_2_in_mode_3():
    pit, h, clock, irq = make()
    program(h, 2, 3, 1193)
    for port_b, on in ((0x00, False), (0x01, False), (0x02, False), (0x03, True)):
        h.outb(PORT_B, port_b)
        assert pit.speaker_on is on, port_b
    program(h, 2, 2, 1193)
    assert not pit.speaker_on


@pytest.mark.parametrize("mode,alias", [(6, 2), (7, 3)])
def test_modes_6_and_7_count_as_modes_2_and_3_and_report_their_own_bits(mode, alias):
    pit, h, clock, irq = make()
    program(h, 0, mode, 1000)
    step_to(clock, ns_at(1 + 1000) - 1)
    assert irq.edges == 0
    clock.step(1)
    assert irq.edges == 1
    h.outb(CTRL, 0xE2)
    assert h.inb(CH0) & 0x0E == mode << 1
    assert pit.counters[0].mode == alias


def test_mode5_counts_from_the_gate_trigger_and_strobes_out_low_for_one_tick():
    pit, h, clock, irq = make()
    program(h, 2, 5, 100)
    clock.step(ns_at(500))
    assert h.inb(PORT_B) & 0x20                     # no trigger yet: OUT high
    t0 = pit._now_tick()
    h.outb(PORT_B, 0x01)                            # rising gate edge triggers
    step_to(clock, ns_at(t0 + 1 + 100))
    assert h.inb(PORT_B) & 0x20 == 0                # the strobe at count 0
    clock.step(ns_at(2))
    assert h.inb(PORT_B) & 0x20


def test_a_bcd_count_counts_down_in_decimal_with_every_digit():
    pit, h, clock, irq = make()
    program(h, 0, 2, 0x9876, bcd=True)
    assert pit.channel_frequency(0) == PIT_HZ / 9876
    for ticks, shown in ((0, 0x9876), (1111, 0x8765), (5432, 0x4444), (9875, 0x0001)):
        step_to(clock, ns_at(1 + ticks))
        h.outb(CTRL, 0x00)
        assert read16(h, 0) == shown, ticks


def test_a_bcd_count_of_zero_is_10000_and_hostile_digits_count_as_written():
    pit, h, clock, irq = make()
    program(h, 0, 2, 0, bcd=True)
    assert pit.channel_frequency(0) == PIT_HZ / 10000
    program(h, 1, 2, 0x1A0F, bcd=True)              # digits 1, 10, 0, 15: 1000 + 1000 + 15
    assert pit.channel_frequency(1) == PIT_HZ / 2015
    step_to(clock, ns_at(1 + 16))
    assert read16(h, 1) == 0x1999                   # 1999: decimal again after 16 ticks


@pytest.mark.skipif(not fastpath.c_available(), reason="the C fast path was not built")
def test_bound_to_the_c_fast_path_the_count_state_lives_in_the_shared_c_struct():
    from unicorn import UC_ARCH_X86, UC_MODE_16, Uc
    fast = fastpath.CFastpath(Uc(UC_ARCH_X86, UC_MODE_16))
    try:
        pit, h, clock, irq = make()
        program(h, 0, 2, 1000)
        program(h, 2, 3, 0x1234, bcd=True)
        pit.bind_fast(fast, lambda off: 0x40 + off)
        chans = fast.ctl.pit
        assert (chans[0].mode, chans[0].rw, chans[0].n, chans[0].load, chans[0].valid) == \
            (2, 3, 1000, 1, 1)
        assert (chans[2].mode, chans[2].n, chans[2].valid) == (3, 1234, 0)    # BCD: the model
        assert chans[1].valid == 0                                           # unprogrammed
        h.outb(CTRL, 0x00)                            # a latch: the model answers
        assert chans[0].valid == 0
        read16(h, 0)
        assert chans[0].valid == 1
        h.inb(CH0)                                    # the read flip-flop, in the struct
        assert chans[0].msb_next == 1
        program(h, 1, 3, 200, rw=1)
        assert (chans[1].mode, chans[1].rw, chans[1].n, chans[1].valid) == (3, 1, 200, 1)
        h.outb(CTRL, 0xE4)                            # a status latch: the model answers
        assert chans[1].valid == 0
        h.inb(CH1)
        assert chans[1].valid == 1
        clock.step(ns_at(10))
        h.outb(CH1, 100)                              # a rewrite waits for the half-cycle
        assert chans[1].valid == 0
        h.outb(CTRL, 0x74)                            # a control word alone: no count yet
        assert chans[1].valid == 0
        h.outb(PORT_B, 0x01)
        program(h, 2, 2, 300)                         # binary now, gate high
        assert chans[2].valid == 1
        h.outb(PORT_B, 0x00)                          # gate low holds the count
        assert chans[2].valid == 0
    finally:
        fast.close()


def count_and_out(h, ch):
    """Counter ``ch``'s count and OUT, latched together by one read-back command."""
    h.outb(CTRL, 0xC0 | 2 << ch)
    status = h.inb(CH0 + ch)
    return read16(h, ch), bool(status & 0x80)


@pytest.mark.parametrize("n,counts,outs", [
    (7, [7, 6, 4, 2, 7, 4, 2], [1, 1, 1, 1, 0, 0, 0]),      # odd: -1, then -2; low half: -3, -2
    (5, [5, 4, 2, 5, 2], [1, 1, 1, 0, 0]),
    (6, [6, 4, 2, 6, 4, 2], [1, 1, 1, 0, 0, 0]),             # even: -2 in both halves
])
def test_mode3_counts_and_out_follow_the_datasheet_tick_by_tick(n, counts, outs):
    pit, h, clock, irq = make()
    program(h, 1, 3, n)
    got = []
    for k in range(2 * n):
        step_to(clock, ns_at(1 + k))
        got.append(count_and_out(h, 1))
    assert got == list(zip(counts, map(bool, outs))) * 2


def test_mode2_out_goes_low_for_the_one_tick_the_count_is_1():
    pit, h, clock, irq = make()
    program(h, 1, 2, 4)
    got = []
    for k in range(8):
        step_to(clock, ns_at(1 + k))
        got.append(count_and_out(h, 1))
    assert got == [(4, True), (3, True), (2, True), (1, False)] * 2


@pytest.mark.parametrize("bcd,after", [(False, [0, 0xFFFF, 0xFFFB]), (True, [0, 0x9999, 0x9995])])
def test_mode0_keeps_counting_down_past_terminal_count(bcd, after):
    pit, h, clock, irq = make()
    program(h, 1, 0, 0x10 if bcd else 10, bcd=bcd)
    got = []
    for ticks in (10, 11, 15):
        step_to(clock, ns_at(1 + ticks))
        got.append(count_and_out(h, 1))
    assert got == [(v, True) for v in after]


def test_mode4_out_strobes_low_for_exactly_one_tick_at_count_0():
    pit, h, clock, irq = make()
    program(h, 1, 4, 3)
    got = []
    for k in range(6):
        step_to(clock, ns_at(1 + k))
        got.append(count_and_out(h, 1)[1])
    assert got == [True, True, True, False, True, True]


@pytest.mark.parametrize("mode", [2, 3])
def test_gate2_low_forces_out2_high_in_modes_2_and_3(mode):
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x01)
    program(h, 2, mode, 4)
    step_to(clock, ns_at(1 + 3))                    # OUT low: mode 2's last tick, mode 3's low half
    assert h.inb(PORT_B) & 0x20 == 0
    h.outb(PORT_B, 0x00)
    assert h.inb(PORT_B) & 0x20


def test_at_power_on_counters_read_0_ignore_counts_and_latches_and_have_no_status():
    pit, h, clock, irq = make()
    clock.step(1_000_000)
    for ch in range(3):
        h.outb(CH0 + ch, 0x55)                      # no access mode yet: ignored
        h.outb(CTRL, ch << 6)                       # counter latch: ignored
        h.outb(CTRL, 0xE0 | 2 << ch)                # status latch: ignored
        assert [h.inb(CH0 + ch) for _ in range(3)] == [0, 0, 0]
    assert irq.edges == 0


@pytest.mark.parametrize("mode,out", [(0, False), (1, True), (2, True), (3, True), (4, True), (5, True)])
def test_a_control_word_alone_holds_the_power_on_count_of_0_with_null_count_set(mode, out):
    pit, h, clock, irq = make()
    clock.step(1_000_000)
    h.outb(CTRL, 0x70 | mode << 1)                  # counter 1, LSB then MSB, binary
    clock.step(1_000_000)
    assert count_and_out(h, 1) == (0, out)
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) == (0x80 if out else 0) | 0x40 | 0x30 | mode << 1
    pit.reset()
    h.outb(CTRL, 0x74)
    assert count_and_out(h, 1) == (0, True)


def test_power_on_reset_and_just_programmed_pits_save_and_load_as_they_are():
    pit, h, clock, irq = make()
    states = [pit.state()]
    h.outb(CTRL, 0x34)                              # counter 0, mode 2: no count yet
    h.outb(CTRL, 0x70)                              # counter 1, mode 0
    h.outb(CTRL, 0xB2)                              # counter 2, mode 1
    states.append(pit.state())
    pit.reset()
    states.append(pit.state())
    assert states[0] == states[2]
    for saved in states:
        fresh = fresh_pit_at(clock.now())[0]
        fresh.load_state(saved)
        assert fresh.state() == saved


def test_null_count_clears_on_the_tick_the_count_is_loaded_into_ce():
    pit, h, clock, irq = make()
    step_to(clock, ns_at(10))
    program(h, 1, 2, 100)                           # written at tick 10, loaded at 11
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) == 0x80 | 0x40 | 0x34
    step_to(clock, ns_at(11))
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) == 0x80 | 0x34


def test_a_mode0_status_before_terminal_count_is_exactly_its_programming():
    pit, h, clock, irq = make()
    program(h, 1, 0, 100)
    step_to(clock, ns_at(50))
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) == 0x30                       # OUT low, count loaded, LSB/MSB, mode 0, binary


@pytest.mark.parametrize("rw,reads", [(3, 2), (1, 1), (2, 1)])
def test_a_latched_count_is_held_for_exactly_the_reads_its_access_mode_takes(rw, reads):
    pit, h, clock, irq = make()
    program(h, 1, 2, 0x5678 if rw == 3 else 0x78 if rw == 1 else 0x5600, rw=rw)
    step_to(clock, ns_at(1 + 0x10))
    h.outb(CTRL, 0x40)                              # latch counter 1
    clock.step(ns_at(0x100))
    latched = [h.inb(CH1) for _ in range(reads)]
    live = [h.inb(CH1) for _ in range(reads)]
    assert latched != live                          # the latch ends after its reads
    h.outb(CTRL, 0x40)
    assert [h.inb(CH1) for _ in range(reads)] == live


def test_a_second_status_latch_before_the_read_is_ignored():
    pit, h, clock, irq = make()
    program(h, 1, 0, 10)
    h.outb(CTRL, 0xE4)                              # OUT low, count not yet loaded
    step_to(clock, ns_at(100))
    h.outb(CTRL, 0xE4)                              # OUT now high: ignored
    assert h.inb(CH1) == 0x40 | 0x30
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) == 0x80 | 0x30


def test_mode4_irq0_edge_comes_one_tick_after_count_0():
    pit, h, clock, irq = make()
    program(h, 0, 4, 100)                           # loaded at tick 1, count 0 at tick 101
    step_to(clock, ns_at(102) - 1)
    assert irq.edges == 0
    clock.step(1)
    assert irq.edges == 1


def test_a_bcd_count_shows_each_digit_at_its_place():
    pit, h, clock, irq = make()
    program(h, 1, 2, 0x2100, bcd=True)
    step_to(clock, ns_at(1 + 100))
    h.outb(CTRL, 0x40)
    assert read16(h, 1) == 0x2000
    step_to(clock, ns_at(1 + 111))
    h.outb(CTRL, 0x40)
    assert read16(h, 1) == 0x1989


def test_the_pit_is_irq_0_on_ports_40_to_43_and_port_b_at_61():
    # What the boot-information block tells a guest about it.
    assert [(r.base, r.length) for r in Pit8254.ports] == [(0x40, 4), (0x61, 1)]
    assert Pit8254.irq == 0


def test_the_first_byte_of_a_new_mode0_count_stops_the_counter_and_drops_out():
    pit, h, clock, irq = make()
    program(h, 0, 0, 100)
    step_to(clock, ns_at(1 + 30))
    h.outb(CH0, 0x10)                               # the low byte only
    held = count_and_out(h, 0)
    step_to(clock, ns_at(1 + 200))
    assert count_and_out(h, 0) == held and held[1] is False
    assert irq.edges == 0                           # the old terminal count never comes


def test_a_new_count_for_a_running_one_shot_sets_null_count_until_the_next_trigger():
    pit, h, clock, irq = make()
    program(h, 2, 1, 100)
    h.outb(CTRL, 0xE8)
    assert h.inb(CH2) & 0x40                        # written, not loaded: no trigger yet
    h.outb(PORT_B, 0x01)                            # trigger: CR -> CE on the next tick
    clock.step(ns_at(2))
    h.outb(CTRL, 0xE8)
    assert h.inb(CH2) & 0x40 == 0
    h.outb(CH2, 50)
    h.outb(CH2, 0)
    h.outb(CTRL, 0xE8)
    assert h.inb(CH2) & 0x40                        # the new count waits for a trigger
    h.outb(PORT_B, 0x00)
    h.outb(PORT_B, 0x01)
    clock.step(ns_at(2))
    h.outb(CTRL, 0xE8)
    assert h.inb(CH2) & 0x40 == 0


def test_a_mode1_one_shot_holds_out_low_for_exactly_its_count_after_the_trigger():
    pit, h, clock, irq = make()
    program(h, 2, 1, 100)
    step_to(clock, ns_at(10))
    h.outb(PORT_B, 0x01)                            # trigger at tick 10, CE loaded at 11
    step_to(clock, ns_at(11 + 100) - 1)
    assert h.inb(PORT_B) & 0x20 == 0
    clock.step(1)
    assert h.inb(PORT_B) & 0x20


def test_a_mode2_rewrite_on_the_load_tick_still_waits_for_the_period_end():
    pit, h, clock, irq = make()
    program(h, 0, 2, 100)                           # written at tick 0, loaded at tick 1
    step_to(clock, ns_at(1))
    h.outb(CH0, 50)
    h.outb(CH0, 0)
    step_to(clock, ns_at(101) - 1)
    assert irq.edges == 0
    clock.step(1)
    assert irq.edges == 1                           # the first period was the old count's
    step_to(clock, ns_at(151))
    assert irq.edges == 2


def test_a_mode3_rewrite_on_the_falling_tick_waits_for_the_end_of_the_low_half():
    pit, h, clock, irq = make()
    program(h, 1, 3, 1000)                          # loaded at 1, OUT falls at 501
    step_to(clock, ns_at(501))
    h.outb(CH1, 400 & 0xFF)
    h.outb(CH1, 400 >> 8)
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) & 0x40                        # NULL COUNT until the switch
    step_to(clock, ns_at(600))
    assert count_and_out(h, 1) == (802, False)      # the old low half runs on
    step_to(clock, ns_at(1001))
    assert count_and_out(h, 1) == (400, True)
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) & 0x40 == 0


def test_a_mode2_rewrite_sets_null_count_until_the_period_end():
    pit, h, clock, irq = make()
    program(h, 1, 2, 100)
    step_to(clock, ns_at(1 + 30))
    h.outb(CH1, 50)
    h.outb(CH1, 0)
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) & 0x40
    step_to(clock, ns_at(101))
    h.outb(CTRL, 0xE4)
    assert h.inb(CH1) & 0x40 == 0


def test_gate2_low_during_a_pending_rewrite_makes_the_next_rising_edge_load_the_new_count():
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x01)
    program(h, 2, 2, 1000)
    step_to(clock, ns_at(100))
    h.outb(CH2, 300 & 0xFF)
    h.outb(CH2, 300 >> 8)                           # waits for the period end (tick 1001)
    step_to(clock, ns_at(200))
    h.outb(PORT_B, 0x00)
    step_to(clock, ns_at(300))
    h.outb(PORT_B, 0x01)                            # rising edge: reload at tick 301
    step_to(clock, ns_at(310))
    h.outb(CTRL, 0x80)
    assert read16(h, 2) == 291


def test_gate2_low_then_high_resumes_mode0_where_it_stopped():
    pit, h, clock, irq = make()
    h.outb(PORT_B, 0x01)
    program(h, 2, 0, 1000)                          # loaded at tick 1
    step_to(clock, ns_at(101))
    h.outb(PORT_B, 0x00)                            # stops at 900
    step_to(clock, ns_at(5000))
    h.outb(CTRL, 0x80)
    assert read16(h, 2) == 900
    h.outb(PORT_B, 0x01)
    step_to(clock, ns_at(5010))
    h.outb(CTRL, 0x80)
    assert read16(h, 2) == 890


def test_mode0_with_gate2_low_from_the_start_counts_from_its_full_count_once_enabled():
    pit, h, clock, irq = make()
    program(h, 2, 0, 1000)                          # gate 2 low: loaded, held
    step_to(clock, ns_at(500))
    h.outb(PORT_B, 0x01)
    step_to(clock, ns_at(510))
    h.outb(CTRL, 0x80)
    assert read16(h, 2) == 990


def test_lost_ticks_add_up_over_two_stalls_and_a_one_shot_loses_none():
    pit, h, clock, irq = make()
    clock.step(1_000_000_000)
    program(h, 0, 2, 1193)                          # loaded at a large tick
    clock.step(1_000_000_000)
    first = pit.lost_ticks
    assert first in (998, 999) and irq.edges == 1
    clock.step(1_000_000_000)
    assert pit.lost_ticks in (2 * first, 2 * first + 1, 2 * first + 2)
    assert pit.irq_count == irq.edges == 2
    program(h, 0, 0, 100)
    clock.step(1_000_000_000)
    assert irq.edges == 3 and pit.lost_ticks in (2 * first, 2 * first + 1, 2 * first + 2)


def test_word_accesses_are_two_byte_cycles_on_consecutive_ports():
    pit, h, clock, irq = make()
    h.outb(CTRL, 0x54)                              # counter 1, LSB only, mode 2
    h.outb(CH1, 0x77)
    h.outb(CTRL, 0x14)                              # counter 0, LSB only, mode 2
    h.outb(CH0, 0x99)                               # a byte write reaches counter 0 only
    assert (pit.counters[0].cr, pit.counters[1].cr) == (0x99, 0x77)
    h.outw(CH0, 0x2345)                             # 0x40 <- 0x45, 0x41 <- 0x23
    assert (pit.counters[0].cr, pit.counters[1].cr) == (0x45, 0x23)
    step_to(clock, ns_at(1 + 5))
    h.outb(CTRL, 0xD6)                              # latch both counts
    assert h.inw(CH0) == (0x23 - 5) << 8 | (0x45 - 5)


def test_a_read_back_command_latches_only_the_counters_it_names():
    pit, h, clock, irq = make()
    program(h, 0, 2, 5000)
    program(h, 1, 2, 3000)
    program(h, 2, 2, 1000)
    step_to(clock, ns_at(1 + 10))
    h.outb(CTRL, 0xC2)                              # count and status of counter 0 only
    clock.step(ns_at(100))
    assert h.inb(CH0) == 0x80 | 0x34 and read16(h, 0) == 4990
    assert read16(h, 1) < 2990 and read16(h, 2) == 1000   # counter 2: gate low, held


def test_only_periodic_armed_counters_have_a_frequency():
    pit, h, clock, irq = make()
    program(h, 0, 0, 100)
    program(h, 1, 4, 100)
    h.outb(CTRL, 0xB4)                              # counter 2, mode 2, no count
    assert [pit.channel_frequency(c) for c in range(3)] == [0.0, 0.0, 0.0]


# ---- snapshots: state() / load_state() (devices/state.py) -------------------------------

def busy_pit():
    """Counters in states where every saved field differs from power-on somewhere: channel
    0 in mode 2 with a count rewrite waiting for the period's end and lost ticks behind it,
    channel 1 in BCD mode 0 half-written with a latched count half read, channel 2 in mode
    3 held by a low gate with its status latched, port B's gate and speaker bits."""
    pit, h, clock, irq = make()
    program(h, 0, 2, 1193)
    clock.step(10_000_000)                        # host behind: one IRQ, lost ticks
    h.outb(CH0, 700 & 0xFF)                       # rewrite: takes effect at the period's end
    h.outb(CH0, 700 >> 8)
    program(h, 1, 0, 0x1234, bcd=True)
    clock.step(50_000)
    h.outb(CTRL, 0x40)                            # latch counter 1
    h.inb(CH1)                                    # its low byte read, the high byte left
    h.outb(CH1, 0x99)                             # the low byte of a new count
    program(h, 2, 3, 1001)
    h.outb(PORT_B, 0x03)                          # gate 2 high, speaker data on
    clock.step(30_000)
    h.outb(PORT_B, 0x02)                          # gate 2 low: counting held
    h.outb(CTRL, 0xE8)                            # read-back: status of counter 2
    return pit, h, clock, irq


def fresh_pit_at(clock_now):
    clock = ManualClock()
    clock.step(clock_now)
    irq = RecordingIrq()
    pit = Pit8254(clock, irq)
    return pit, Harness(pit), clock, irq


def test_a_saved_pit_loaded_into_a_fresh_one_has_every_register_and_behaves_the_same():
    pit, h, clock, irq = busy_pit()
    saved = pit.state()
    assert saved["lost_ticks"] > 0 and saved["irq_count"] == 1 and saved["timer"] is not None
    pit2, h2, clock2, irq2 = fresh_pit_at(clock.now())
    pit2.load_state(saved)
    assert pit2.state() == saved
    base = irq.edges
    for step in (0, 1_000, 333_333, 2_000_000):
        clock.step(step)
        clock2.step(step)
        assert irq.edges - base == irq2.edges
        assert [h.inb(p) for p in (CH0, CH0, CH1, CH1, CH2, CH2, PORT_B)] == \
            [h2.inb(p) for p in (CH0, CH0, CH1, CH1, CH2, CH2, PORT_B)]
    assert irq2.edges > 0
    for harness in (h, h2):
        harness.outb(CH1, 0x00)                   # completes counter 1's new count
        harness.outb(PORT_B, 0x03)                # gate 2 rises again
        harness.outb(CTRL, 0xEE)                  # read-back: status of all three
    clock.step(5_000_000)
    clock2.step(5_000_000)
    assert [h.inb(p) for p in (CH0, CH1, CH2, CH0, CH1, CH2)] == \
        [h2.inb(p) for p in (CH0, CH1, CH2, CH0, CH1, CH2)]
    assert pit2.state() == pit.state()


def test_every_saved_pit_field_differs_from_power_on_somewhere():
    """So that the round trip above sees any field ``load_state`` drops."""
    pit, _, clock, _ = busy_pit()
    saved, power_on = pit.state(), fresh_pit_at(clock.now())[0].state()
    differs = {k for a, b in zip(saved["counters"], power_on["counters"]) for k in a if a[k] != b[k]}
    assert differs == set(saved["counters"][0]) - {"gate"}      # gate: see the range test
    assert [k for k in saved if saved[k] != power_on[k]] == \
        ["counters", "port_b", "timer", "timer_tick", "lost_ticks", "irq_count"]


TICKS = 1 << 62


@pytest.mark.parametrize("key,good,bad", [
    ("mode_bits", (0, 7), (-1, 8)), ("mode", (0, 5), (-1, 6)), ("rw", (0, 3), (-1, 4)),
    ("cr", (0, 0xFFFF), (-1, 0x10000)), ("cr_lsb", (0, 0xFF), (-1, 0x100)),
    ("ol", (None, 0, 0xFFFF), (-1, 0x10000)), ("ol_reads_left", (0, 2), (-1, 3)),
    ("status_latch", (None, 0, 0xFF), (-1, 0x100)),
    ("load", (-TICKS, TICKS), (-TICKS - 1, TICKS + 1)), ("n", (1, 0x10000), (-1, 0x10001)),
    ("frozen", (None, 0, TICKS), (-1, TICKS + 1)), ("idle_count", (0, 0xFFFF), (-1, 0x10000)),
    ("null_until", (None, -TICKS, TICKS), (-TICKS - 1, TICKS + 1)),
    ("pending", (None, [0, 0, 1], [TICKS, -TICKS, 0x10000]),
     ([0, 0, 0], [0, 0, 0x10001], [0, TICKS + 1, 5], [-TICKS - 1, 0, 5], (0, 0, 5), [0, 5],
      [0, 0, 5, 0], [0, 0, 5.0], "x")),
    *[(flag, (False, True), (0, 1, None)) for flag in ("programmed", "bcd", "write_msb_next",
                                                       "read_msb_next", "gate", "idle_out",
                                                       "armed")],
])
def test_a_saved_counter_value_outside_its_range_is_refused_and_its_bounds_load(key, good, bad):
    pit, _, _, _ = busy_pit()
    saved = pit.state()

    def with_value(i, value):
        counters = [dict(c) for c in saved["counters"]]
        counters[i][key] = value
        return {**saved, "counters": counters}
    for i in range(3):
        for value in good:
            pit.load_state(with_value(i, value))
            assert pit.state()["counters"][i][key] == value
        for value in bad:
            with pytest.raises(ValueError, match=f"^pit counter {i}: "):
                pit.load_state(with_value(i, value))
        pit.load_state(saved)


def test_an_armed_counter_needs_a_count_and_an_idle_one_does_not():
    pit, _, _, _ = busy_pit()
    saved = pit.state()
    for armed, n, ok in ((True, 0, False), (True, 1, True), (False, 0, True)):
        counters = [dict(c) for c in saved["counters"]]
        counters[1].update(armed=armed, n=n)
        if ok:
            pit.load_state({**saved, "counters": counters})
            assert pit.state()["counters"][1]["n"] == n
        else:
            with pytest.raises(ValueError, match="armed"):
                pit.load_state({**saved, "counters": counters})


@pytest.mark.parametrize("key,good,bad", [
    ("port_b", (0, 0x0F), (-1, 0x10)), ("timer_tick", (0, TICKS), (-1, TICKS + 1)),
    ("lost_ticks", (0, 1 << 40), (-1, None)), ("irq_count", (0, 1 << 40), (-1, None)),
    ("counters", (), (None, [], "abc", ({},) * 3)),
])
def test_a_saved_pit_value_outside_its_range_is_refused_and_its_bounds_load(key, good, bad):
    pit, _, _, _ = busy_pit()
    saved = pit.state()
    for value in good:
        pit.load_state({**saved, key: value})
        assert pit.state()[key] == value
    for value in bad:
        with pytest.raises(ValueError, match=f"^pit: .*{key}"):
            pit.load_state({**saved, key: value})
    for counters in (saved["counters"][:2], saved["counters"] + saved["counters"][:1],
                     saved["counters"][:2] + [None]):
        with pytest.raises(ValueError, match="three counters"):
            pit.load_state({**saved, "counters": counters})
