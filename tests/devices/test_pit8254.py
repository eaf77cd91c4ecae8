from hypothesis import given, settings
from hypothesis import strategies as st

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
