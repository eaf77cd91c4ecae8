from hypothesis import given, settings, strategies as st

from hv.devices.base import RecordingIrq
from hv.devices.i8042 import I8042, CmdByte, Status, SystemControlPortA
from tests.devices.harness import Harness


class Board:
    def __init__(self):
        self.irq1 = RecordingIrq()
        self.a20 = []
        self.resets = 0
        self.kbc = I8042(irq1=self.irq1, on_a20=self.a20.append, on_reset=self._reset)
        self.port92 = SystemControlPortA(on_a20=self.a20.append, on_reset=self._reset)
        self.h = Harness(self.kbc, self.port92)

    def _reset(self):
        self.resets += 1

    def cmd(self, value):
        self.h.outb(0x64, value)

    def data(self, value):
        self.h.outb(0x60, value)

    def status(self):
        return self.h.inb(0x64)

    def read(self):
        return self.h.inb(0x60)

    def drain(self):
        out = []
        for _ in range(64):                         # bounded: an OBF that never clears fails
            if not self.status() & Status.OBF:
                return out
            out.append(self.read())
        raise AssertionError(f"the output buffer never empties: {out[:16]}")


def test_power_on_status_has_empty_buffer_and_keyboard_not_inhibited():
    b = Board()
    assert b.status() == Status.INH


def test_self_test_answers_0x55_and_sets_system_flag():
    b = Board()
    b.cmd(0xAA)
    assert (b.status() & Status.SYS, b.drain()) == (Status.SYS, [0x55])


def test_interface_tests_pass():
    b = Board()
    b.cmd(0xAB)
    first = b.drain()
    b.cmd(0xA9)
    assert (first, b.drain()) == ([0x00], [0x00])


def test_command_write_sets_a2_and_data_write_clears_it():
    b = Board()
    b.cmd(0xAE)
    after_cmd = b.status() & Status.A2
    b.data(0xF4)
    assert (after_cmd, b.status() & Status.A2) == (Status.A2, 0)


def test_write_then_read_command_byte():
    b = Board()
    b.cmd(0x60)
    b.data(0x65)
    b.cmd(0x20)
    assert b.drain() == [0x65]


def test_command_byte_system_flag_shows_in_status():
    b = Board()
    b.cmd(0x60)
    b.data(CmdByte.SYS)
    assert b.status() & Status.SYS


def test_controller_ram_is_readable_and_writable_through_0x21_and_0x61():
    b = Board()
    b.cmd(0x61)
    b.data(0x5A)
    b.cmd(0x21)
    assert b.drain() == [0x5A]


def test_disable_and_enable_aux_flip_command_byte_bit_5():
    b = Board()
    b.cmd(0xA7)
    disabled = b.kbc.command_byte & CmdByte.DISABLE_AUX
    b.cmd(0xA8)
    assert (disabled, b.kbc.command_byte & CmdByte.DISABLE_AUX) == (CmdByte.DISABLE_AUX, 0)


def test_read_input_port_reports_keyboard_not_inhibited():
    b = Board()
    b.cmd(0xC0)
    assert b.drain()[0] & 0x80


def test_output_port_powers_on_with_a20_enabled_and_cpu_running():
    b = Board()
    b.cmd(0xD0)
    assert b.drain() == [0x03]


def test_write_output_port_without_a20_calls_on_a20_false():
    b = Board()
    b.cmd(0xD1)
    b.data(0x01)
    assert (b.a20, b.kbc.a20) == ([False], False)


def test_write_output_port_with_same_a20_does_not_call_back():
    b = Board()
    b.cmd(0xD1)
    b.data(0x03)
    assert b.a20 == []


def test_write_output_port_with_reset_bit_low_resets_the_machine():
    b = Board()
    b.cmd(0xD1)
    b.data(0x02)
    assert b.resets == 1


def test_dd_and_df_turn_a20_off_and_on():
    b = Board()
    b.cmd(0xDD)
    b.cmd(0xDF)
    assert b.a20 == [False, True]


def test_pulse_command_0xfe_resets_the_machine():
    b = Board()
    b.cmd(0xFE)
    assert b.resets == 1


def test_pulse_command_0xff_does_not_reset():
    b = Board()
    b.cmd(0xFF)
    assert b.resets == 0


def test_d2_puts_a_byte_in_the_output_buffer_as_keyboard_data():
    b = Board()
    b.cmd(0xD2)
    b.data(0x1E)
    assert (b.irq1.level, b.drain()) == (True, [0x1E])


def test_aux_write_without_mouse_times_out():
    b = Board()
    b.cmd(0xD4)
    b.data(0xFF)
    st_ = b.status()
    assert (st_ & (Status.TIMEOUT | Status.AUXB), b.read()) == (Status.TIMEOUT | Status.AUXB, 0xFE)


def test_aux_byte_does_not_raise_irq1():
    b = Board()
    b.cmd(0xD3)
    b.data(0x08)
    assert not b.irq1.level and b.status() & Status.AUXB


def test_keyboard_reset_replies_ack_then_bat_ok():
    b = Board()
    b.data(0xFF)
    assert b.drain() == [0xFA, 0xAA]


def test_keyboard_identify_replies_ack_ab_83():
    b = Board()
    b.data(0xF2)
    assert b.drain() == [0xFA, 0xAB, 0x83]


def test_keyboard_echo_replies_ee_without_ack():
    b = Board()
    b.data(0xEE)
    assert b.drain() == [0xEE]


def test_set_leds_acks_command_and_data_byte():
    b = Board()
    b.data(0xED)
    first = b.drain()
    b.data(0x07)
    assert (first, b.drain(), b.kbc.leds) == ([0xFA], [0xFA], 7)


def test_typematic_acks_command_and_rate_byte():
    b = Board()
    b.data(0xF3)
    b.data(0x20)
    assert (b.drain(), b.kbc.typematic) == ([0xFA, 0xFA], 0x20)


def test_get_scancode_set_reports_translated_set_2():
    b = Board()
    b.data(0xF0)
    b.data(0x00)
    assert b.drain() == [0xFA, 0xFA, 0x41]


def test_unknown_keyboard_command_asks_for_resend():
    b = Board()
    b.data(0x42)
    assert b.drain() == [0xFE]


def test_disable_scanning_holds_keys_until_enabled():
    b = Board()
    b.data(0xF5)
    b.drain()
    b.kbc.press(b"\x1e\x9e")
    held = b.drain()
    b.data(0xF4)
    assert (held, b.drain()) == ([], [0xFA, 0x1E, 0x9E])


def test_keyboard_reply_overtakes_queued_keys_but_not_the_buffered_one():
    b = Board()
    b.kbc.press(b"\x1e\x9e\x30")
    b.data(0xF4)
    assert b.drain() == [0x1E, 0xFA, 0x9E, 0x30]


def test_controller_reply_preempts_unread_key_without_losing_it():
    b = Board()
    b.kbc.press(b"\x1e")
    b.cmd(0x20)
    assert b.drain() == [b.kbc.command_byte, 0x1E]


def test_press_fills_buffer_and_raises_irq1():
    b = Board()
    b.kbc.press(b"\x1e")
    assert (b.status() & Status.OBF, b.irq1.level) == (Status.OBF, True)


def test_reading_the_data_port_clears_obf_and_lowers_irq1():
    b = Board()
    b.kbc.press(b"\x1e")
    b.read()
    assert (b.status() & Status.OBF, b.irq1.level) == (0, False)


def test_queued_keys_enter_buffer_one_per_read_with_an_edge_each():
    b = Board()
    b.kbc.press(b"\x2a\x1e\x9e\xaa")
    got = b.drain()
    assert (got, b.irq1.edges) == ([0x2A, 0x1E, 0x9E, 0xAA], 4)


def test_reading_status_does_not_advance_the_queue():
    b = Board()
    b.kbc.press(b"\x1e\x9e")
    b.status()
    b.status()
    assert (b.kbc.pending_keys(), b.read()) == (2, 0x1E)


def test_pending_keys_and_output_empty_track_unread_bytes():
    b = Board()
    b.kbc.press(b"\x1e\x9e")
    before = (b.kbc.pending_keys(), b.kbc.output_empty())
    b.drain()
    assert (before, b.kbc.pending_keys(), b.kbc.output_empty()) == ((2, False), 0, True)


def test_command_byte_without_int_keeps_irq1_low():
    b = Board()
    b.cmd(0x60)
    b.data(0x00)
    b.kbc.press(b"\x1e")
    assert (b.irq1.level, b.status() & Status.OBF) == (False, Status.OBF)


def test_enabling_int_with_a_full_buffer_raises_irq1():
    b = Board()
    b.cmd(0x60)
    b.data(0x00)
    b.kbc.press(b"\x1e")
    b.cmd(0x60)
    b.data(CmdByte.INT)
    assert b.irq1.level


def test_disabled_keyboard_interface_holds_keys():
    b = Board()
    b.cmd(0xAD)
    b.kbc.press(b"\x1e")
    held = b.status() & Status.OBF
    b.cmd(0xAE)
    assert (held, b.drain()) == (0, [0x1E])


def test_empty_data_port_rereads_last_byte():
    b = Board()
    b.kbc.press(b"\x1e")
    b.read()
    assert b.read() == 0x1E


def test_port92_powers_on_with_a20_set():
    b = Board()
    assert b.h.inb(0x92) == 0x02


def test_port92_a20_bit_calls_on_a20():
    b = Board()
    b.h.outb(0x92, 0x00)
    b.h.outb(0x92, 0x02)
    assert b.a20 == [False, True]


def test_port92_fast_reset_fires_on_rising_edge_only():
    b = Board()
    b.h.outb(0x92, 0x03)
    b.h.outb(0x92, 0x03)
    assert b.resets == 1


def test_reset_restores_power_on_state_but_keeps_host_keys():
    b = Board()
    b.kbc.press(b"\x1e\x9e")
    b.cmd(0x60)
    b.data(0x00)
    b.kbc.reset()
    assert (b.kbc.command_byte, b.drain()) == (CmdByte.INT | CmdByte.XLATE, [0x1E, 0x9E])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0, 4, 1, 2]),
                          st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF)),
                max_size=60),
       st.binary(max_size=8))
def test_random_port_accesses_never_raise(ops, keys):
    b = Board()
    b.kbc.press(keys)
    for is_write, offset, size, value in ops:
        if is_write:
            b.kbc.write(offset, size, value & ((1 << 8 * size) - 1))
            b.port92.write(offset, size, value & ((1 << 8 * size) - 1))
        else:
            assert 0 <= b.kbc.read(offset, size) < (1 << 8 * size)
            assert 0 <= b.port92.read(offset, size) < (1 << 8 * size)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0x60, 0x64]), st.integers(0, 0xFF)), max_size=40),
       st.binary(min_size=1, max_size=8))
def test_queued_keys_are_never_lost_or_reordered_by_guest_commands(ops, keys):
    b = Board()
    b.kbc.press(keys)
    seen = []

    def drain():
        for _ in range(64):
            if not b.status() & Status.OBF:
                return
            from_host = b.kbc._out_src == "key"   # white-box: who filled the buffer
            value = b.read()
            if from_host:
                seen.append(value)
        raise AssertionError("the output buffer never empties")

    for port, value in ops:
        b.h.outb(port, value)
        drain()
    b.cmd(0xAE)
    b.data(0xF4)   # may be eaten as a pending command's argument...
    b.data(0xF4)   # ...so enable scanning twice
    drain()
    assert bytes(seen) == keys
