"""Register-level tests of the 16550A model, driven through port I/O."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from hv.devices.console_uart16550 import Uart16550
from tests.devices.harness import Harness, ManualClock, RecordingIrq

COM1 = 0x3F8
RBR = THR = DLL = COM1 + 0
IER = DLM = COM1 + 1
IIR = FCR = COM1 + 2
LCR = COM1 + 3
MCR = COM1 + 4
LSR = COM1 + 5
MSR = COM1 + 6
SCR = COM1 + 7

OUT2 = 0x08
LOOP = 0x10


def make(clock=None, base=0x3F8):
    out = bytearray()
    irq = RecordingIrq()
    uart = Uart16550(irq=irq, sink=out.extend, clock=clock, base=base)
    return Harness(uart), uart, irq, out


# ---- reset values ----------------------------------------------------------

def test_reset_values_match_the_datasheet():
    h, *_ = make()
    assert h.inb(IER) == 0
    assert h.inb(IIR) == 0x01
    assert h.inb(LCR) == 0
    assert h.inb(MCR) == 0
    assert h.inb(LSR) == 0x60
    assert h.inb(MSR) & 0x0F == 0
    assert h.inb(SCR) == 0


def test_reset_keeps_the_divisor_latch():
    h, uart, *_ = make()
    h.outb(LCR, 0x80)
    h.outb(DLL, 0x03)
    h.outb(DLM, 0x00)
    uart.reset()
    h.outb(LCR, 0x80)
    assert h.inb(DLL) == 0x03 and h.inb(DLM) == 0x00


def test_reset_returns_registers_to_power_on_values():
    h, uart, *_ = make()
    h.outb(IER, 0x0F)
    h.outb(LCR, 0x1B)
    h.outb(MCR, 0x1F)
    h.outb(SCR, 0x55)
    h.outb(FCR, 0x01)
    uart.receive(b"x")
    uart.reset()
    assert (h.inb(IER), h.inb(IIR), h.inb(LCR), h.inb(MCR), h.inb(LSR), h.inb(SCR)) == (0, 1, 0, 0, 0x60, 0)


def test_a_different_base_moves_the_ports():
    h, uart, _, out = make(base=0x2F8)
    h.outb(0x2F8, ord("z"))
    assert out == b"z"
    assert uart.name == "com1" and uart.ports[0].base == 0x2F8


# ---- divisor latch ---------------------------------------------------------

def test_dlab_exposes_the_divisor_latch_at_offsets_0_and_1():
    h, uart, _, out = make()
    h.outb(LCR, 0x83)
    h.outb(DLL, 0x01)
    h.outb(DLM, 0x02)
    assert (h.inb(DLL), h.inb(DLM)) == (0x01, 0x02)
    assert uart.divisor == 0x0201
    assert out == b""  # the DLL write did not transmit


def test_clearing_dlab_restores_thr_and_ier():
    h, uart, _, out = make()
    h.outb(LCR, 0x80)
    h.outb(DLM, 0x05)
    h.outb(LCR, 0x03)
    h.outb(IER, 0x01)
    h.outb(THR, ord("A"))
    assert h.inb(IER) == 0x01
    assert out == b"A"
    assert uart.divisor >> 8 == 0x05


def test_character_time_follows_the_divisor():
    _, uart, *_ = make()
    uart.divisor = 1  # 115200 baud: 10 bits take ~86.8 us
    assert uart.char_time_ns() == 1 * 16 * 10 * 1_000_000_000 // 1_843_200


# ---- transmit --------------------------------------------------------------

def test_bytes_written_to_thr_reach_the_sink():
    h, _, _, out = make()
    for c in b"hi\n":
        h.outb(THR, c)
    assert out == b"hi\n"


def test_transmitter_is_empty_again_right_after_a_write():
    h, *_ = make()
    h.outb(THR, 0x41)
    assert h.inb(LSR) & 0x60 == 0x60


# ---- receive and LSR -------------------------------------------------------

def test_received_bytes_set_data_ready_and_read_back_in_order():
    h, uart, *_ = make()
    h.outb(FCR, 0x01)
    uart.receive(b"ab")
    assert h.inb(LSR) & 0x01
    assert h.inb(RBR) == ord("a")
    assert h.inb(RBR) == ord("b")
    assert not h.inb(LSR) & 0x01


def test_rx_room_is_one_byte_without_fifo_and_sixteen_with_it():
    h, uart, *_ = make()
    assert uart.rx_room() == 1
    h.outb(FCR, 0x01)
    assert uart.rx_room() == 16
    uart.receive(b"abc")
    assert uart.rx_room() == 13


def test_fifo_overflow_sets_overrun_and_drops_the_new_byte():
    h, uart, *_ = make()
    h.outb(FCR, 0x01)
    uart.receive(bytes(range(17)))
    assert h.inb(LSR) & 0x02
    got = [h.inb(RBR) for _ in range(16)]
    assert got == list(range(16))
    assert not h.inb(LSR) & 0x01


def test_overrun_without_fifo_replaces_the_unread_byte():
    h, uart, *_ = make()
    uart.receive(b"xy")
    assert h.inb(LSR) & 0x02
    assert h.inb(RBR) == ord("y")


def test_reading_lsr_clears_overrun():
    h, uart, *_ = make()
    uart.receive(b"xy")
    h.inb(LSR)
    assert not h.inb(LSR) & 0x02


def test_break_sets_bi_and_the_fifo_error_bit():
    h, uart, *_ = make()
    h.outb(FCR, 0x01)
    uart.receive_break()
    lsr = h.inb(LSR)
    assert lsr & 0x10 and lsr & 0x80
    assert h.inb(RBR) == 0
    assert not h.inb(LSR) & 0x90


# ---- FIFO control ----------------------------------------------------------

def test_iir_reports_fifos_enabled_in_bits_6_and_7():
    h, *_ = make()
    h.outb(FCR, 0x01)
    assert h.inb(IIR) & 0xC0 == 0xC0
    h.outb(FCR, 0x00)
    assert h.inb(IIR) & 0xC0 == 0


def test_fcr_bit_1_clears_the_receive_fifo():
    h, uart, *_ = make()
    h.outb(FCR, 0x01)
    uart.receive(b"abc")
    h.outb(FCR, 0x03)
    assert not h.inb(LSR) & 0x01
    assert h.inb(IIR) & 0xC0 == 0xC0  # FIFOs stay enabled


def test_disabling_the_fifo_empties_it():
    h, uart, *_ = make()
    h.outb(FCR, 0x01)
    uart.receive(b"abc")
    h.outb(FCR, 0x00)
    assert not h.inb(LSR) & 0x01


def test_rx_trigger_level_gates_the_data_available_interrupt():
    h, uart, *_ = make(clock=ManualClock())
    h.outb(FCR, 0x81)  # trigger level 8
    h.outb(IER, 0x01)
    uart.receive(b"1234567")
    assert h.inb(IIR) & 0x0F == 0x01
    uart.receive(b"8")
    assert h.inb(IIR) & 0x0F == 0x04


def test_each_trigger_level_code_selects_1_4_8_14():
    h, uart, *_ = make()
    for bits, level in ((0x00, 1), (0x40, 4), (0x80, 8), (0xC0, 14)):
        h.outb(FCR, 0x01 | bits)
        assert uart.rx_trigger == level


# ---- character timeout -----------------------------------------------------

def test_without_a_clock_a_short_fifo_reports_timeout_at_once():
    h, uart, *_ = make()
    h.outb(FCR, 0xC1)
    h.outb(IER, 0x01)
    uart.receive(b"a")
    assert h.inb(IIR) & 0x0F == 0x0C


def test_character_timeout_waits_four_character_times():
    clock = ManualClock()
    h, uart, irq, _ = make(clock=clock)
    h.outb(MCR, OUT2)
    h.outb(FCR, 0xC1)
    h.outb(IER, 0x01)
    uart.receive(b"a")
    assert h.inb(IIR) & 0x0F == 0x01 and not irq.level
    clock.step(4 * uart.char_time_ns())
    assert h.inb(IIR) & 0x0F == 0x0C
    assert irq.level


def test_reading_rbr_clears_the_character_timeout():
    clock = ManualClock()
    h, uart, *_ = make(clock=clock)
    h.outb(FCR, 0xC1)
    h.outb(IER, 0x01)
    uart.receive(b"ab")
    clock.step(4 * uart.char_time_ns())
    h.inb(RBR)
    assert h.inb(IIR) & 0x0F == 0x01


# ---- interrupt identification ----------------------------------------------

def test_enabling_thre_interrupt_reports_thr_empty():
    h, *_ = make()
    h.outb(IER, 0x02)
    assert h.inb(IIR) == 0x02


def test_reading_iir_clears_thre_interrupt():
    h, *_ = make()
    h.outb(IER, 0x02)
    assert h.inb(IIR) == 0x02
    assert h.inb(IIR) == 0x01


def test_writing_thr_reraises_thre_after_the_byte_leaves():
    h, *_ = make()
    h.outb(IER, 0x02)
    h.inb(IIR)
    h.outb(THR, 0x41)
    assert h.inb(IIR) == 0x02


def test_writing_thr_gives_a_fresh_irq_edge():
    h, _, irq, _ = make()
    h.outb(MCR, OUT2)
    h.outb(IER, 0x02)
    edges = irq.edges
    h.outb(THR, 0x41)
    assert irq.level and irq.edges == edges + 1


def test_reading_iir_does_not_clear_a_lower_thre_interrupt_hidden_by_rx_data():
    h, uart, *_ = make()
    h.outb(IER, 0x03)
    uart.receive(b"a")
    assert h.inb(IIR) == 0x04
    h.inb(RBR)
    assert h.inb(IIR) == 0x02


def test_line_status_outranks_received_data():
    h, uart, *_ = make()
    h.outb(IER, 0x0F)
    uart.receive(b"ab")  # overrun in 16450 mode
    assert h.inb(IIR) == 0x06
    h.inb(LSR)
    assert h.inb(IIR) == 0x04


def test_received_data_outranks_thr_empty():
    h, uart, *_ = make()
    h.outb(IER, 0x03)
    uart.receive(b"a")
    assert h.inb(IIR) == 0x04


def test_thr_empty_outranks_modem_status():
    h, uart, *_ = make()
    h.outb(IER, 0x0A)
    uart.set_modem_inputs(cts=False)
    assert h.inb(IIR) == 0x02
    assert h.inb(IIR) == 0x00


def test_reading_msr_clears_the_modem_status_interrupt():
    h, uart, *_ = make()
    h.outb(IER, 0x08)
    uart.set_modem_inputs(dsr=False)
    assert h.inb(MSR) & 0x02
    assert h.inb(IIR) == 0x01


def test_ier_upper_bits_read_as_zero():
    h, *_ = make()
    h.outb(IER, 0xFF)
    assert h.inb(IER) == 0x0F


# ---- IRQ line and OUT2 -----------------------------------------------------

def test_irq_line_stays_low_without_out2():
    h, uart, irq, _ = make()
    h.outb(IER, 0x01)
    uart.receive(b"a")
    assert not irq.level


def test_setting_out2_lets_a_pending_interrupt_reach_the_line():
    h, uart, irq, _ = make()
    h.outb(IER, 0x01)
    uart.receive(b"a")
    h.outb(MCR, OUT2)
    assert irq.level


def test_irq_line_drops_when_the_interrupt_is_serviced():
    h, uart, irq, _ = make()
    h.outb(MCR, OUT2)
    h.outb(IER, 0x01)
    uart.receive(b"a")
    assert irq.level
    h.inb(RBR)
    assert not irq.level


def test_loopback_forces_out2_inactive_so_no_irq_leaves_the_chip():
    h, uart, irq, _ = make()
    h.outb(IER, 0x01)
    h.outb(MCR, OUT2 | LOOP)
    h.outb(THR, 0x55)
    assert h.inb(IIR) == 0x04
    assert not irq.level


# ---- loopback --------------------------------------------------------------

def test_loopback_sends_transmitted_bytes_to_the_receiver():
    h, _, _, out = make()
    h.outb(MCR, LOOP)
    h.outb(THR, 0xA5)
    assert out == b""
    assert h.inb(LSR) & 0x01
    assert h.inb(RBR) == 0xA5


def test_loopback_maps_modem_outputs_to_msr_inputs():
    h, *_ = make()
    h.outb(MCR, LOOP | 0x01)  # DTR -> DSR
    assert h.inb(MSR) & 0xF0 == 0x20
    h.outb(MCR, LOOP | 0x02)  # RTS -> CTS
    assert h.inb(MSR) & 0xF0 == 0x10
    h.outb(MCR, LOOP | 0x04)  # OUT1 -> RI
    assert h.inb(MSR) & 0xF0 == 0x40
    h.outb(MCR, LOOP | 0x08)  # OUT2 -> DCD
    assert h.inb(MSR) & 0xF0 == 0x80


def test_loopback_changes_set_msr_delta_bits():
    h, *_ = make()
    h.outb(MCR, LOOP)
    h.inb(MSR)
    h.outb(MCR, LOOP | 0x0F)
    assert h.inb(MSR) == 0xFB  # all four lines up, DCTS|DDSR|DDCD (TERI needs RI to fall)
    h.outb(MCR, LOOP)
    assert h.inb(MSR) == 0x0F  # RI fell: TERI


def test_msr_delta_bits_clear_on_read():
    h, *_ = make()
    h.outb(MCR, LOOP | 0x03)
    h.inb(MSR)
    assert h.inb(MSR) & 0x0F == 0


def test_outside_loopback_msr_shows_the_host_modem_lines():
    h, *_ = make()
    assert h.inb(MSR) & 0xF0 == 0xB0  # CTS, DSR, DCD of an attached terminal


# ---- scratch ---------------------------------------------------------------

def test_scratch_register_holds_any_byte():
    h, *_ = make()
    for v in (0x00, 0x55, 0xAA, 0xFF):
        h.outb(SCR, v)
        assert h.inb(SCR) == v


def test_lcr_reads_back_what_was_written():
    h, *_ = make()
    h.outb(LCR, 0x1B)
    assert h.inb(LCR) == 0x1B


# ---- wide accesses and hostile guests --------------------------------------

def test_a_word_read_at_lcr_returns_lcr_and_mcr():
    h, *_ = make()
    h.outb(LCR, 0x03)
    h.outb(MCR, 0x0B)
    assert h.inw(LCR) == 0x0B03


def test_a_word_access_past_the_last_register_floats_high():
    h, *_ = make()
    h.outb(SCR, 0x12)
    assert Uart16550.read(h.bus.device_at(SCR), 7, 2) == 0xFF12


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.sampled_from([1, 2, 4]),
                          st.integers(0, 0xFFFFFFFF), st.binary(max_size=4)), max_size=40),
       st.binary(max_size=20))
def test_random_port_traffic_keeps_lsr_iir_and_the_irq_line_consistent(ops, rx):
    clock = ManualClock()
    h, uart, irq, out = make(clock=clock)
    uart.receive(rx)
    for is_write, off, size, value, more in ops:
        if is_write:
            h.bus.write(COM1 + off, size, value & ((1 << (8 * size)) - 1))
        else:
            got = uart.read(off, size)          # the device's own answer
            assert 0 <= got < 1 << (8 * size)
        uart.receive(more)
        clock.step(100_000)
        lsr = uart._lsr()
        assert bool(lsr & 0x01) == bool(uart.rx)                  # DR: data waiting
        assert lsr & 0x60 == 0x60                                  # THRE, TEMT: never busy
        assert len(uart.rx) <= uart.rx_capacity                    # a full FIFO overruns
        pending = uart._pending()
        assert pending in (0x01, 0x06, 0x04, 0x0C, 0x02, 0x00)     # a 16550 IIR code
        gate = uart.mcr & 0x18 == 0x08                             # OUT2 on, not looped back
        assert irq.level == (gate and pending != 0x01)
        assert uart.ier <= 0x0F and uart.mcr <= 0x1F               # reserved bits read 0
    assert 0 <= uart.rx_room() <= 16


@settings(max_examples=200, deadline=None)
@given(st.integers(-4, 16), st.sampled_from([0, 1, 2, 3, 4, 8]), st.integers(0, 2**64))
def test_accesses_outside_the_eight_registers_read_all_ones_and_send_nothing(off, size, value):
    out = bytearray()
    uart = Uart16550(sink=out.extend)
    uart.write(off, size, value)
    got = uart.read(off, size)
    n = max(1, min(size, 8))                    # byte cycles: a size-0 call is one of them
    mine = {off + i for i in range(n)} & set(range(8))
    assert 0 <= got < 1 << (8 * n)
    if not mine:
        assert got == (1 << (8 * n)) - 1
        assert out == b"" and uart.ier == 0 and uart.lcr == 0 and uart.mcr == 0
