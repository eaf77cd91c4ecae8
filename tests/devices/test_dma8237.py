import pytest
from hypothesis import Phase, event, given, settings
from hypothesis import strategies as st

from hv.devices.dma8237 import Dma8237
from hv.memory import GuestMemory, GuestMemoryError
from tests.devices.harness import Harness, time_limit

# A device loop that never reaches terminal count must fail the test, not hang the run.
pytestmark = pytest.mark.timeout(5)

MiB = 1 << 20
# Mode register values for channel 2: single mode, write (device->memory) / read.
MODE_WRITE_CH2 = 0x46
MODE_READ_CH2 = 0x4A


class WatchedMemory(GuestMemory):
    """GuestMemory that records every host write and fails the test on any range
    outside guest RAM reaching the buffer."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.writes: list[tuple[int, int]] = []

    def write(self, addr: int, data: bytes) -> None:
        self.check(addr, len(data))
        self.writes.append((addr, len(data)))
        super().write(addr, data)


def make(size=MiB, **kw):
    mem = WatchedMemory(size)
    dma = Dma8237(mem, **kw)
    return dma, Harness(dma), mem


def program(h, channel, addr, count, mode, page_port=0x81):
    h.outb(0x0A, 0x04 | channel)          # mask while programming
    h.outb(0x0B, mode | channel)
    h.outb(0x0C, 0)
    h.outb(channel * 2, addr & 0xFF)
    h.outb(channel * 2, addr >> 8 & 0xFF)
    h.outb(page_port, addr >> 16 & 0xFF)
    h.outb(channel * 2 + 1, count & 0xFF)
    h.outb(channel * 2 + 1, count >> 8 & 0xFF)
    h.outb(0x0A, channel)                 # unmask


def test_address_register_is_written_low_byte_then_high_byte():
    dma, h, _ = make()
    h.outb(0x0C, 0)
    h.outb(0x04, 0x34)
    h.outb(0x04, 0x12)
    h.outb(0x0C, 0)
    assert h.inb(0x04) == 0x34
    assert h.inb(0x04) == 0x12


def test_clear_flip_flop_restarts_at_the_low_byte():
    dma, h, _ = make()
    h.outb(0x0C, 0)
    h.outb(0x05, 0xAA)                    # flip-flop now points at the high byte
    h.outb(0x0C, 0)
    h.outb(0x05, 0x11)
    h.outb(0x05, 0x22)
    assert dma.channel_state(2)["count"] == 0x2211


def test_page_register_0x81_supplies_channel_2_address_bits_16_to_23():
    dma, h, _ = make()
    program(h, 2, 0x123456, 0, MODE_WRITE_CH2)
    assert dma.channel_state(2)["address"] == 0x123456
    assert h.inb(0x81) == 0x12


def test_channels_start_masked_after_reset():
    dma, h, mem = make()
    assert h.inb(0x0F) & 0x0F == 0x0F
    assert dma.write_to_memory(2, b"abc") == 0
    assert mem.writes == []


def test_single_mask_register_unmasks_one_channel():
    dma, h, _ = make()
    h.outb(0x0A, 0x02)
    assert h.inb(0x0F) & 0x0F == 0x0B


def test_write_all_mask_bits_and_clear_mask_register():
    dma, h, _ = make()
    h.outb(0x0F, 0x05)
    assert h.inb(0x0F) & 0x0F == 0x05
    h.outb(0x0E, 0)
    assert h.inb(0x0F) & 0x0F == 0


def test_write_transfer_stores_count_plus_one_bytes_at_the_address():
    dma, h, mem = make()
    program(h, 2, 0x20000, 3, MODE_WRITE_CH2, page_port=0x81)
    assert dma.write_to_memory(2, b"ABCDEFG") == 4
    assert mem.read(0x20000, 5) == b"ABCD\0"


def test_terminal_count_sets_status_bit_and_masks_the_channel():
    dma, h, _ = make()
    program(h, 2, 0x1000, 1, MODE_WRITE_CH2)
    dma.write_to_memory(2, b"xy")
    assert dma.terminal_count(2)
    assert dma.masked(2)
    assert h.inb(0x08) & 0x04


def test_reading_status_clears_the_tc_bits():
    dma, h, _ = make()
    program(h, 2, 0x1000, 0, MODE_WRITE_CH2)
    dma.write_to_memory(2, b"x")
    h.inb(0x08)
    assert h.inb(0x08) & 0x0F == 0


def test_transfer_shorter_than_count_leaves_address_and_count_advanced():
    dma, h, _ = make()
    program(h, 2, 0x1000, 9, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"abc") == 3
    state = dma.channel_state(2)
    assert (state["address"], state["count"]) == (0x1003, 6)
    assert not dma.terminal_count(2)


def test_count_zero_transfers_exactly_one_byte_then_reaches_terminal_count():
    dma, h, mem = make()
    program(h, 2, 0x1000, 0, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"AB") == 1
    assert mem.read(0x1000, 2) == b"A\0"
    state = dma.channel_state(2)
    assert (state["address"], state["count"]) == (0x1001, 0xFFFF)
    assert dma.terminal_count(2) and dma.masked(2)


def test_count_zero_read_transfer_delivers_one_byte():
    dma, h, mem = make()
    mem.write(0x2000, b"xyz")
    program(h, 2, 0x2000, 0, MODE_READ_CH2)
    assert dma.read_from_memory(2, 3) == b"x"
    assert dma.terminal_count(2)


def test_count_ffff_transfers_the_whole_64k_page_and_wraps_the_address():
    dma, h, mem = make()
    data = bytes(i * 7 & 0xFF for i in range(0x10000)) + b"extra"
    program(h, 2, 0x20000, 0xFFFF, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, data) == 0x10000
    assert mem.read(0x20000, 0x10000) == data[:0x10000]
    assert mem.read(0x30000, 5) == bytes(5)
    state = dma.channel_state(2)
    assert (state["address"], state["count"]) == (0x20000, 0xFFFF)
    assert dma.terminal_count(2)


def test_count_ffff_in_pieces_reaches_terminal_count_only_with_the_last_byte():
    dma, h, mem = make()
    program(h, 2, 0x40000, 0xFFFF, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, bytes(0xFFFF)) == 0xFFFF
    assert not dma.terminal_count(2) and dma.channel_state(2)["count"] == 0
    assert dma.write_to_memory(2, b"z" * 4) == 1
    assert dma.terminal_count(2) and mem.read(0x4FFFF, 1) == b"z"


def test_word_channel_count_ffff_moves_128_kib():
    dma, h, mem = make()
    program_any(h, 5, 0x0000, 0xFFFF, 0x44 | 1, page=0x02)     # at 0x20000
    assert dma.write_to_memory(5, b"\x11" * 0x20002) == 0x20000
    assert mem.read(0x20000, 0x20000) == b"\x11" * 0x20000
    assert dma.terminal_count(5)


def test_autoinitialize_with_count_zero_moves_one_byte_per_cycle_and_stays_unmasked():
    dma, h, mem = make()
    program(h, 2, 0x3000, 0, MODE_WRITE_CH2 | 0x10)
    assert dma.write_to_memory(2, b"abc") == 1
    assert dma.write_to_memory(2, b"def") == 1
    assert mem.read(0x3000, 2) == b"d\0"
    assert not dma.masked(2)


def test_autoinitialize_reloads_base_address_and_count_at_tc():
    dma, h, _ = make()
    program(h, 2, 0x1000, 1, MODE_WRITE_CH2 | 0x10)
    dma.write_to_memory(2, b"ab")
    state = dma.channel_state(2)
    assert (state["address"], state["count"]) == (0x1000, 1)
    assert not dma.masked(2)


def test_decrement_mode_stores_bytes_downwards():
    dma, h, mem = make()
    program(h, 2, 0x1003, 3, MODE_WRITE_CH2 | 0x20)
    dma.write_to_memory(2, b"ABCD")
    assert mem.read(0x1000, 4) == b"DCBA"


def test_address_wraps_inside_the_64k_page():
    dma, h, mem = make()
    program(h, 2, 0x3FFFE, 3, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"WXYZ") == 4
    assert mem.read(0x3FFFE, 2) == b"WX"
    assert mem.read(0x30000, 2) == b"YZ"
    assert mem.read(0x40000, 2) == b"\0\0"


def test_a_write_transfer_into_the_bios_rom_is_dropped_but_counts_as_done():
    dma, h, mem = make()
    rom = bytes(range(256)) * 2
    mem.write(0xF0000, rom)
    program(h, 2, 0xF0000, 0x1FF, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"\xee" * 0x200) == 0x200
    assert mem.read(0xF0000, 0x200) == rom
    state = dma.channel_state(2)
    assert (state["address"], state["count"]) == (0xF0200, 0xFFFF) and dma.terminal_count(2)


def test_a_word_channel_transfer_into_option_rom_space_leaves_it_unchanged():
    dma, h, mem = make()
    mem.write(0xC0000, b"\x55\xaa" * 8)
    h.outb(0xD4, 0x04 | 1)
    h.outb(0xD6, 0x44 | 1)
    h.outb(0xD8, 0)
    h.outb(0xC4, 0x00)
    h.outb(0xC4, 0x00)
    h.outb(0x8B, 0x0C)                    # 0xC0000
    h.outb(0xC6, 7)
    h.outb(0xC6, 0)
    h.outb(0xD4, 1)
    assert dma.write_to_memory(5, b"\x11" * 16) == 16
    assert mem.read(0xC0000, 16) == b"\x55\xaa" * 8


def test_the_bytes_below_the_rom_window_still_land():
    dma, h, mem = make()
    program(h, 2, 0xBFFF0, 0x1F, MODE_WRITE_CH2)      # wraps inside page 0x0B: all RAM
    assert dma.write_to_memory(2, b"\x77" * 0x20) == 0x20
    assert mem.read(0xBFFF0, 0x10) == b"\x77" * 0x10 and mem.read(0xB0000, 0x10) == b"\x77" * 0x10


def test_read_transfer_delivers_memory_bytes_to_the_device():
    dma, h, mem = make()
    mem.write(0x5000, b"hello")
    program(h, 2, 0x5000, 4, MODE_READ_CH2)
    assert dma.read_from_memory(2, 5) == b"hello"


def test_channel_programmed_for_read_does_not_write_memory():
    dma, h, mem = make()
    program(h, 2, 0x5000, 4, MODE_READ_CH2)
    mem.writes.clear()
    assert dma.write_to_memory(2, b"hello") == 5     # pseudo transfer, as verify
    assert mem.writes == []
    assert mem.read(0x5000, 5) == bytes(5)


def test_disabled_controller_transfers_nothing():
    dma, h, _ = make()
    program(h, 2, 0x1000, 9, MODE_WRITE_CH2)
    h.outb(0x08, 0x04)
    assert dma.write_to_memory(2, b"abc") == 0


def test_request_register_bits_show_in_status_bits_4_to_7():
    dma, h, _ = make()
    h.outb(0x09, 0x04 | 2)                # request channel 2
    h.outb(0x09, 0x04 | 0)                # and channel 0
    assert h.inb(0x08) == 0x50
    h.outb(0x09, 0x00 | 2)                # clear channel 2's request
    assert h.inb(0x08) == 0x10


def test_command_bits_other_than_controller_disable_do_not_stop_transfers():
    dma, h, _ = make()
    program(h, 2, 0x1000, 9, MODE_WRITE_CH2)
    h.outb(0x08, 0xFB)                    # every command bit but CONTROLLER_DISABLE (bit 2)
    assert dma.write_to_memory(2, b"abc") == 3


def test_a_channel_in_cascade_mode_transfers_nothing():
    dma, h, mem = make()
    program(h, 2, 0x1000, 9, 0xC2)        # cascade, channel 2
    assert dma.write_to_memory(2, b"abc") == 0 and dma.read_from_memory(2, 3) == b""
    assert mem.writes == []


@pytest.mark.parametrize("channel,page_port", [(0, 0x87), (1, 0x83), (2, 0x81), (3, 0x82),
                                               (5, 0x8B), (6, 0x89), (7, 0x8A)])
def test_each_channel_takes_its_high_address_bits_from_its_own_page_register(channel, page_port):
    dma, h, _ = make()
    for port in range(0x81, 0x90):
        h.outb(port, 0x00)
    h.outb(page_port, 0x2B)
    expected = 0x2B0000 if channel < 4 else 0x2A0000     # word channels ignore the page's bit 0
    assert dma.channel_state(channel)["address"] == expected


def test_the_device_is_dma_on_ports_0_to_f_81_to_8f_and_c0_to_df():
    dma, h, _ = make()
    assert dma.name == "dma"
    assert [(r.base, r.length, r.bias) for r in dma.ports] == [(0x00, 0x10, 0x00), (0x81, 0x0F, 0x81),
                                                               (0xC0, 0x20, 0xC0)]


def test_power_on_registers_read_zero_and_no_channel_has_reached_terminal_count():
    dma, h, _ = make()
    assert [h.inb(p) for p in (0x00, 0x00, 0x01, 0x01, 0x08, 0x0D)] == [0] * 6
    assert not any(dma.terminal_count(c) for c in range(8))
    assert dma.terminal_count(2) is False


def test_master_clear_restarts_the_flip_flop_and_clears_requests_and_temp():
    dma, h, _ = make()
    h.outb(0x04, 0x99)                    # flip-flop now at the high byte
    h.outb(0x09, 0x04 | 1)                # a request
    h.outb(0x0D, 0)                       # master clear
    assert h.inb(0x08) == 0 and h.inb(0x0D) == 0
    h.outb(0x04, 0x34)
    h.outb(0x04, 0x12)
    assert dma.channel_state(2)["address"] & 0xFFFF == 0x1234


def test_reads_and_writes_share_one_byte_pointer_flip_flop():
    dma, h, _ = make()
    h.outb(0x0C, 0)
    h.outb(0x04, 0x34)
    h.outb(0x04, 0x12)                    # address 0x1234, pointer back at the low byte
    assert h.inb(0x04) == 0x34            # low; pointer -> high
    h.outb(0x04, 0x56)                    # this write goes to the high byte
    assert h.inb(0x04) == 0x34            # low again
    assert h.inb(0x04) == 0x56
    assert h.inb(0x04) == 0x34            # and the pointer keeps alternating


def test_a_low_byte_write_replaces_all_eight_low_bits():
    dma, h, _ = make()
    program(h, 2, 0xFFFF, 0xFFFF, MODE_WRITE_CH2, page_port=0x81)
    h.outb(0x0C, 0)
    h.outb(0x04, 0x00)
    h.outb(0x04, 0x00)
    h.outb(0x05, 0x00)
    h.outb(0x05, 0x00)
    assert (dma.channel_state(2)["address"] & 0xFFFF, dma.channel_state(2)["count"]) == (0, 0)


def test_single_mask_register_sets_one_mask_bit_and_keeps_the_others():
    dma, h, _ = make()
    h.outb(0x0F, 0x01)
    h.outb(0x0A, 0x04 | 2)
    assert h.inb(0x0F) & 0x0F == 0x05


def test_auto_initialize_reloads_the_base_registers_even_when_only_one_was_written():
    dma, h, mem = make()
    h.outb(0x0B, 0x56)                    # ch 2: single, auto-init, write
    h.outb(0x0C, 0)
    h.outb(0x05, 1)                       # count 1 only: the base address stays 0
    h.outb(0x05, 0)
    h.outb(0x81, 0x03)
    h.outb(0x0A, 0x02)
    assert dma.write_to_memory(2, b"ab") == 2
    state = dma.channel_state(2)
    assert (state["address"], state["count"]) == (0x30000, 1)


def test_channel_0_and_channel_5_registers_read_back_through_their_ports():
    dma, h, _ = make()
    h.outb(0x0C, 0)
    for port, value in ((0x00, 0x1234), (0x01, 0x5678)):
        h.outb(port, value & 0xFF)
        h.outb(port, value >> 8)
    h.outb(0xD8, 0)
    for port, value in ((0xC4, 0x9ABC), (0xC6, 0xDEF0)):
        h.outb(port, value & 0xFF)
        h.outb(port, value >> 8)
    h.outb(0x0C, 0)
    assert [h.inb(0x00), h.inb(0x00), h.inb(0x01), h.inb(0x01)] == [0x34, 0x12, 0x78, 0x56]
    h.outb(0xD8, 0)
    assert [h.inb(0xC4), h.inb(0xC4), h.inb(0xC6), h.inb(0xC6)] == [0xBC, 0x9A, 0xF0, 0xDE]
    h.outb(0xC0, 0x11)                        # channel 4 (the cascade) has registers too
    h.outb(0xD8, 0)
    assert h.inb(0xC0) == 0x11


def test_after_reset_dma2_masks_read_fe_and_channel_4_cascades():
    dma, h, _ = make()
    assert h.inb(0xDE) == 0xFE
    assert dma.channel_state(4)["mode"] == 0xC0 and not dma.masked(4)


def test_channel_numbers_outside_0_to_7_and_the_cascade_move_nothing():
    dma, h, _ = make()
    h.outb(0xD6, 0x44)                        # channel 4 made an ordinary write channel
    h.outb(0xD4, 0x00)
    for channel in (-1, 4, 8, 9):
        assert dma.write_to_memory(channel, b"abc") == 0
        assert dma.terminal_count(channel) is False
    assert dma.masked(8) and dma.masked(-1)


def test_channel_0_reaches_terminal_count_and_can_be_unmasked():
    dma, h, mem = make()
    program(h, 0, 0x1000, 0, 0x44, page_port=0x87)
    assert not dma.masked(0)
    assert dma.write_to_memory(0, b"q") == 1 and dma.terminal_count(0)


def test_one_byte_transfers_work_and_an_empty_one_leaves_terminal_count_alone():
    dma, h, mem = make()
    program(h, 2, 0x1000, 0, MODE_WRITE_CH2 | 0x10)      # auto-init: stays unmasked
    assert dma.write_to_memory(2, b"z") == 1 and dma.terminal_count(2)
    assert dma.write_to_memory(2, b"") == 0
    assert dma.terminal_count(2)


def test_transfer_moves_data_in_the_direction_its_arguments_say():
    dma, h, mem = make()
    program(h, 2, 0x6000, 3, MODE_WRITE_CH2)
    assert dma.transfer(2, b"wxyz", 0) == 4 and mem.read(0x6000, 4) == b"wxyz"
    program(h, 2, 0x6000, 3, MODE_READ_CH2)
    assert dma.transfer(2, None, 4) == b"wxyz"


def test_channel_state_reports_base_registers_and_mode():
    dma, h, _ = make()
    program(h, 2, 0x1234, 0x20, MODE_WRITE_CH2)
    dma.write_to_memory(2, b"ab")
    state = dma.channel_state(2)
    assert (state["base_address"], state["base_count"], state["mode"]) == (0x1234, 0x20, 0x44)


def test_decrement_mode_wraps_from_address_0_to_ffff_inside_the_page():
    dma, h, mem = make()
    program(h, 2, 0x50001, 3, MODE_WRITE_CH2 | 0x20)
    assert dma.write_to_memory(2, b"ABCD") == 4
    assert mem.read(0x50000, 2) == b"BA" and mem.read(0x5FFFE, 2) == b"DC"


def test_a_transfer_that_wraps_the_address_counts_only_what_it_moved():
    dma, h, mem = make()
    program(h, 2, 0x3FFFE, 100, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"WXYZ") == 4
    assert dma.channel_state(2)["count"] == 96


def test_auto_initialize_reloads_a_count_of_zero_when_only_the_address_was_written():
    dma, h, mem = make()
    h.outb(0x0B, 0x56)
    h.outb(0x0C, 0)
    h.outb(0x04, 0x00)
    h.outb(0x04, 0x70)                     # address 0x7000 only; the count stays 0
    h.outb(0x0A, 0x02)
    assert dma.write_to_memory(2, b"xy") == 1
    assert dma.channel_state(2)["count"] == 0


def test_master_clear_masks_every_channel():
    dma, h, _ = make()
    program(h, 2, 0x1000, 9, MODE_WRITE_CH2)
    h.outb(0x0D, 0)
    assert dma.masked(2)


def test_buffer_entirely_outside_guest_ram_transfers_nothing():
    dma, h, mem = make(size=MiB)
    program(h, 2, 0x200000, 511, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, bytes(512)) == 0
    assert mem.writes == []


def test_buffer_running_off_the_end_of_ram_stops_at_the_last_byte_inside():
    dma, h, mem = make(size=MiB + 4096)
    program(h, 2, MiB + 4094, 7, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"12345678") == 2
    assert mem.read(MiB + 4094, 2) == b"12"
    assert mem.writes == [(MiB + 4094, 2)]


def test_read_from_memory_outside_ram_returns_fewer_bytes():
    dma, h, mem = make(size=MiB)
    program(h, 2, 0xFF0000, 15, MODE_READ_CH2)
    assert dma.read_from_memory(2, 16) == b""


def test_sixteen_bit_channel_counts_words_and_uses_page_0x8b():
    dma, h, mem = make()
    # single, write, channel 5; word address 0x8000 -> byte 0x10000; page 0x8B = 02h
    # (A23-A17: 0x20000); 2 words
    program_any(h, 5, 0x8000, 1, 0x44 | 1, page=0x02)
    assert dma.write_to_memory(5, b"abcdef") == 4
    assert mem.read(0x30000, 5) == b"abcd\0"


def test_bare_chip_keeps_dma1_off_the_bus_until_cascade_is_unmasked():
    dma, h, _ = make(bios_initialized=False)
    program(h, 2, 0x1000, 9, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"abc") == 0
    h.outb(0xD6, 0xC0)                    # channel 4: cascade
    h.outb(0xD4, 0x00)                    # unmask channel 4
    assert dma.write_to_memory(2, b"abc") == 3


def test_word_write_to_an_8bit_port_is_two_byte_cycles():
    dma, h, _ = make()
    h.outb(0x0C, 0)
    h.outw(0x04, 0x3412)                  # 0x04 <- 0x12, 0x05 <- 0x34
    h.outb(0x0C, 0)
    assert h.inb(0x04) == 0x12
    assert h.inb(0x05) == 0x34


PORTS = list(range(0x00, 0x10)) + list(range(0x81, 0x90)) + list(range(0xC0, 0xE0))
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]   # a hanging example is not replayed


def program_any(h, channel, addr, count, mode, page):
    """Program any channel as a driver does: mask, mode, flip-flop, address, page, count, unmask."""
    k = channel & 3
    if channel < 4:
        mask, mode_port, ff, addr_port, count_port = 0x0A, 0x0B, 0x0C, 2 * k, 2 * k + 1
    else:
        mask, mode_port, ff, addr_port, count_port = 0xD4, 0xD6, 0xD8, 0xC0 + 4 * k, 0xC2 + 4 * k
    h.outb(mask, 0x04 | k)
    h.outb(mode_port, mode)
    h.outb(ff, 0)
    h.outb(addr_port, addr & 0xFF)
    h.outb(addr_port, addr >> 8)
    h.outb({0: 0x87, 1: 0x83, 2: 0x81, 3: 0x82, 5: 0x8B, 6: 0x89, 7: 0x8A}[channel], page)
    h.outb(count_port, count & 0xFF)
    h.outb(count_port, count >> 8)
    h.outb(mask, k)


def expected_transfer(dma, channel, length):
    """What the 8237 does with a request for ``length`` bytes on ``channel``, from the
    datasheet: (bytes moved, whether it reaches terminal count, real or pseudo)."""
    ctl = dma.dma1 if channel < 4 else dma.dma2
    c = ctl.ch[channel & 3]
    blocked = (ctl.command & 0x04 or ctl.mask >> (channel & 3) & 1 or c.mode & 0xC0 == 0xC0
               or channel < 4 and (dma.dma2.command & 0x04 or dma.dma2.mask & 1))
    if not 0 <= channel < 8 or channel == 4 or blocked:
        return 0, False
    unit = 1 if channel < 4 else 2
    units = min(length // unit, c.cur_count + 1)
    return units * unit, units == c.cur_count + 1


@settings(max_examples=500, deadline=None, phases=NO_SHRINK)
@given(ops=st.lists(st.tuples(st.sampled_from(PORTS), st.sampled_from([1, 2, 4]),
                              st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=30),
       transfers=st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, 5, 6, 7]) | st.integers(-2, 9),
                                    st.integers(0, 3000), st.booleans()), max_size=6),
       setup=st.lists(st.tuples(st.sampled_from([0, 1, 2, 3, 5, 6, 7]), st.integers(0, 0xFFFF),
                                st.integers(0, 0xFFFF) | st.integers(0, 40), st.integers(0, 0xFF),
                                st.integers(0, 0xFF)), max_size=3))
@pytest.mark.timeout(120)
def test_random_programming_then_transfers_move_address_count_and_memory_as_the_8237_does(
        ops, transfers, setup):
    dma, h, mem = make(size=16 * MiB)        # every page register value lands in RAM
    rom = bytes(range(256)) * 256
    mem.write(0xF0000, rom)
    mem.writes.clear()
    with time_limit(5):
        for channel, addr, count, mode, page in setup:   # a driver's sequence, random values
            program_any(h, channel, addr, count, mode & ~3 | channel & 3, page)
        for port, size, value, is_write in ops:
            if is_write:
                h.bus.write(port, size, value & ((1 << 8 * size) - 1))
            else:
                assert 0 <= dma.read(port, size) < 1 << (8 * size)   # the device's own answer
        for channel, length, to_memory in transfers:
            ok = 0 <= channel < 8
            ctl = dma.dma1 if channel < 4 else dma.dma2
            c = ctl.ch[channel & 3] if ok else None
            before = (c.cur_addr, c.cur_count, c.base_addr, c.base_count, c.mode) if ok else None
            was_masked = dma.masked(channel)
            moved, tc = expected_transfer(dma, channel, length)
            direction = 0x04 if to_memory else 0x08
            real = ok and before[4] & 0x0C == direction
            mem.writes.clear()
            if to_memory:
                assert dma.write_to_memory(channel, bytes(length)) == moved
            else:
                start = dma.channel_state(channel)["address"] if ok else 0
                got = dma.read_from_memory(channel, length)
                assert len(got) == moved
                if real and moved and not before[4] & 0x20:
                    span = min(moved, (0x10000 - before[0]) * (1 if channel < 4 else 2))
                    assert got[:span] == mem.read(start, span)
                elif moved and not real:
                    assert got == b"\xff" * moved       # pseudo transfer: the undriven bus
            if not moved:
                if ok:
                    assert (c.cur_addr, c.cur_count) == before[:2]
                continue
            event("a transfer moved data" + (" to terminal count" if tc else ""))
            units = moved // (1 if channel < 4 else 2)
            step = -1 if before[4] & 0x20 else 1
            assert dma.terminal_count(channel) == tc
            if tc:
                assert ctl.status >> (channel & 3) & 1
                if before[4] & 0x10:                  # auto-initialize: reloaded, still unmasked
                    assert (c.cur_addr, c.cur_count) == before[2:4] and dma.masked(channel) == was_masked
                else:
                    assert c.cur_count == 0xFFFF and dma.masked(channel)
                    assert c.cur_addr == (before[0] + step * units) & 0xFFFF
            else:
                assert (c.cur_addr, c.cur_count) == ((before[0] + step * units) & 0xFFFF, before[1] - units)
            page = dma.page[{0: 0x87, 1: 0x83, 2: 0x81, 3: 0x82, 5: 0x8B, 6: 0x89, 7: 0x8A}[channel] - 0x80]
            lo, hi = (page << 16, (page << 16) + 0x10000) if channel < 4 else \
                ((page & 0xFE) << 16, ((page & 0xFE) << 16) + 0x20000)
            for addr, n in mem.writes:
                assert to_memory and real                 # only a real write transfer stores
                assert lo <= addr and addr + n <= hi      # inside the channel's page: it wraps
                assert addr + n <= 0xC0000 or addr >= 0x100000   # never into the ROM
    assert mem.read(0xF0000, len(rom)) == rom


def test_watched_memory_refuses_writes_outside_guest_ram():
    mem = WatchedMemory(MiB)
    with pytest.raises(GuestMemoryError):
        mem.write(mem.span, b"x")


def test_decrement_mode_from_address_3_wraps_to_ffff_after_four_bytes():
    dma, h, mem = make()
    program(h, 2, 0x20003, 7, MODE_WRITE_CH2 | 0x20)
    assert dma.write_to_memory(2, b"ABCDEFGH") == 8
    assert mem.read(0x20000, 4) == b"DCBA" and mem.read(0x2FFFC, 4) == b"HGFE"
    assert dma.channel_state(2)["address"] == 0x2FFFB and dma.terminal_count(2)


def test_a_read_transfer_across_the_page_wrap_delivers_every_byte_in_order():
    dma, h, mem = make()
    mem.write(0x2FFFE, b"ab")
    mem.write(0x20000, b"cd")
    program(h, 2, 0x2FFFE, 3, MODE_READ_CH2)
    assert dma.read_from_memory(2, 4) == b"abcd"


def test_a_pseudo_read_across_the_page_wrap_delivers_ff_for_every_byte():
    dma, h, mem = make()
    program(h, 2, 0x2FFFE, 3, MODE_WRITE_CH2)     # programmed for the other direction
    assert dma.read_from_memory(2, 4) == b"\xff" * 4
    assert dma.channel_state(2)["address"] == 0x20002


def test_a_short_write_across_the_page_wrap_takes_only_the_bytes_given():
    dma, h, mem = make()
    program(h, 2, 0x2FFFE, 0x100, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"WXYZ") == 4
    assert mem.read(0x2FFFE, 2) + mem.read(0x20000, 3) == b"WXYZ\0"


def test_terminal_count_status_bits_of_two_channels_add_up():
    dma, h, _ = make()
    program(h, 2, 0x1000, 0, MODE_WRITE_CH2)
    program(h, 3, 0x2000, 0, 0x47, page_port=0x82)
    dma.write_to_memory(2, b"x")
    dma.write_to_memory(3, b"y")
    assert h.inb(0x08) & 0x0F == 0x0C


def test_terminal_count_masks_its_channel_and_leaves_the_other_mask_bits():
    dma, h, _ = make()
    program(h, 2, 0x1000, 0, MODE_WRITE_CH2)      # channels 0, 1 and 3 stay masked
    assert h.inb(0x0F) & 0x0F == 0x0B
    dma.write_to_memory(2, b"x")
    assert h.inb(0x0F) & 0x0F == 0x0F


def test_a_word_channel_in_decrement_mode_stores_whole_words_downwards():
    dma, h, mem = make()
    # single, decrement, write, channel 5; word address 0x8002 -> byte 0x10004; 3 words
    program_any(h, 5, 0x8002, 2, 0x64 | 1, page=0)
    assert dma.write_to_memory(5, b"abcdef") == 6
    assert mem.read(0x10000, 6) == b"efcdab"          # word order reversed, bytes kept
    program_any(h, 5, 0x8002, 2, 0x68 | 1, page=0)      # decrement, read
    assert dma.read_from_memory(5, 6) == b"abcdef"


def test_a_buffer_ending_an_odd_number_of_bytes_into_ram_stops_at_its_last_byte():
    dma, h, mem = make(size=MiB + 4096)
    program(h, 2, MiB + 4093, 7, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"12345678") == 3
    assert mem.read(MiB + 4093, 3) == b"123"


# ---- snapshots: state() / load_state() (devices/state.py) -------------------------------

def busy_dma():
    """Both controllers in a state where the saved fields differ from power-on: channel 2
    part-way through a transfer, channel 3 at terminal count (status bit, mask, last TC),
    channel 1 in auto-initialize decrement mode, word channel 5 programmed, request bits,
    a stored command bit and the byte pointer flip-flop on the high byte."""
    dma, h, mem = make()
    program(h, 2, 0x21000, 9, MODE_WRITE_CH2)
    assert dma.write_to_memory(2, b"abc") == 3
    program(h, 3, 0x3000, 0, 0x48, page_port=0x82)
    assert dma.read_from_memory(3, 4) == b"\0"
    program(h, 1, 0x4010, 0x20, 0x74, page_port=0x83)      # auto-init, decrement, write
    h.outb(0xD4, 0x04 | 1)
    h.outb(0xD6, 0x48 | 1)                # single, read, channel 5
    h.outb(0xD8, 0)
    h.outb(0xC4, 0x34)
    h.outb(0xC4, 0x12)
    h.outb(0x8B, 0x06)
    h.outb(0xC6, 0x78)
    h.outb(0xC6, 0x05)
    h.outb(0x09, 0x04 | 1)                # request channel 1
    h.outb(0xD2, 0x04 | 3)                # request channel 7
    h.outb(0x08, 0x10)                    # rotating priority: stored
    h.outb(0xD0, 0x10)
    h.outb(0x87, 0x42)                    # channel 0's page
    h.outb(0x0C, 0)
    h.outb(0x00, 0x99)                    # flip-flop now on the high byte
    return dma, h, mem


def test_a_saved_dma_loaded_into_a_fresh_one_has_every_register_and_moves_the_same_bytes():
    dma, h, mem = busy_dma()
    saved = dma.state()
    power_on = Dma8237(GuestMemory(MiB)).state()
    for key in ("dma1", "dma2"):
        assert saved[key] != power_on[key]
    fresh, h2, mem2 = make()
    mem2.write(0, mem.read(0, MiB))
    fresh.load_state(saved)
    assert fresh.state() == saved
    for d, harness in ((dma, h), (fresh, h2)):
        harness.outb(0x00, 0x10)          # the high byte of channel 0's address
        harness.outb(0x0A, 2)             # unmask channel 2 (programmed: not masked)
    assert [h.inb(p) for p in (0x08, 0x0F, 0xD0, 0xDE, 0x04, 0x04, 0x87)] == \
        [h2.inb(p) for p in (0x08, 0x0F, 0xD0, 0xDE, 0x04, 0x04, 0x87)]
    assert dma.write_to_memory(2, b"0123456789") == fresh.write_to_memory(2, b"0123456789") == 7
    assert dma.write_to_memory(1, bytes(range(40))) == fresh.write_to_memory(1, bytes(range(40)))
    h.outb(0xD4, 1)
    h2.outb(0xD4, 1)
    assert dma.read_from_memory(5, 8) == fresh.read_from_memory(5, 8)
    assert mem.read(0, MiB) == mem2.read(0, MiB)
    assert fresh.state() == dma.state()


def test_every_saved_dma_field_differs_from_power_on_somewhere():
    """So that the round trip above would see any field that ``load_state`` drops."""
    dma, _, _ = busy_dma()
    saved, power_on = dma.state(), Dma8237(GuestMemory(MiB)).state()
    differs = {k for c in ("dma1", "dma2") for k in saved[c] if saved[c][k] != power_on[c][k]}
    assert differs >= {"command", "status", "request", "flip_flop", "mask", "channels"}
    fields = {k for c in ("dma1", "dma2") for a, b in zip(saved[c]["channels"],
                                                          power_on[c]["channels"])
              for k in a if a[k] != b[k]}
    assert fields == {"base_addr", "base_count", "cur_addr", "cur_count", "mode", "last_tc"}
    assert saved["page"] != power_on["page"]


@pytest.mark.parametrize("key,good,bad", [
    ("command", (0, 0xFF), (-1, 0x100)), ("status", (0, 0xFF), (-1, 0x100)),
    ("request", (0, 0xFF), (-1, 0x100)), ("temp", (0, 0xFF), (-1, 0x100)),
    ("mask", (0, 0xFF), (-1, 0x100)),
])
def test_a_saved_controller_register_outside_a_byte_is_refused_and_its_bounds_load(key, good, bad):
    dma, _, _ = busy_dma()
    saved = dma.state()
    for which in ("dma1", "dma2"):
        for value in good:
            dma.load_state({**saved, which: {**saved[which], key: value}})
            assert dma.state()[which][key] == value
        for value in bad:
            with pytest.raises(ValueError, match=key):
                dma.load_state({**saved, which: {**saved[which], key: value}})


@pytest.mark.parametrize("key", ["base_addr", "base_count", "cur_addr", "cur_count", "mode"])
def test_a_saved_channel_register_outside_16_bits_is_refused_and_its_bounds_load(key):
    dma, _, _ = busy_dma()
    saved = dma.state()

    def with_value(which, value):
        chans = [dict(c) for c in saved[which]["channels"]]
        chans[3][key] = value
        return {**saved, which: {**saved[which], "channels": chans}}
    for which in ("dma1", "dma2"):
        for value in (0, 0xFFFF):
            dma.load_state(with_value(which, value))
            assert dma.state()[which]["channels"][3][key] == value
        for value in (-1, 0x10000, True):
            with pytest.raises(ValueError):
                dma.load_state(with_value(which, value))
    for bad in (None, 1):
        chans = [dict(c) for c in saved["dma2"]["channels"]]
        chans[0]["last_tc"] = bad
        with pytest.raises(ValueError, match="last_tc"):
            dma.load_state({**saved, "dma2": {**saved["dma2"], "channels": chans}})


def test_the_saved_byte_pointer_flip_flop_is_one_bit():
    dma, h, _ = busy_dma()
    saved = dma.state()
    for value, expect in ((0, 0), (1, 1), (2, 0), (3, 1), (0xFF, 1)):
        dma.load_state({**saved, "dma1": {**saved["dma1"], "flip_flop": value}})
        assert dma.state()["dma1"]["flip_flop"] == expect
    dma.load_state({**saved, "dma1": {**saved["dma1"], "flip_flop": 0x10}})
    h.outb(0x06, 0xAB)                    # the flip-flop is clear: this is the low byte
    assert dma.channel_state(3)["base_address"] & 0xFF == 0xAB


@pytest.mark.parametrize("damage", [
    lambda s: s.pop("dma2"), lambda s: s.update(dma1=[1, 2]), lambda s: s.pop("page"),
    lambda s: s.update(page=bytes(15)), lambda s: s.update(page=bytes(17)),
    lambda s: s["dma1"].pop("channels"), lambda s: s["dma1"].update(channels=None),
    lambda s: s["dma2"].update(channels=s["dma2"]["channels"][:3]),
    lambda s: s["dma2"].update(channels=s["dma2"]["channels"] * 2),
    lambda s: s["dma1"].update(channels=tuple(s["dma1"]["channels"])),
    lambda s: s["dma1"].update(channels=s["dma1"]["channels"][:3] + [7]),
    lambda s: s["dma1"]["channels"][1].pop("cur_count"),
])
def test_a_damaged_dma_state_is_refused_and_leaves_the_device_as_it_was(damage):
    dma, _, _ = busy_dma()
    saved = dma.state()
    damaged = dma.state()
    damaged["dma1"] = {**damaged["dma1"], "channels": [dict(c) for c in damaged["dma1"]["channels"]]}
    damaged["dma2"] = {**damaged["dma2"], "channels": [dict(c) for c in damaged["dma2"]["channels"]]}
    damage(damaged)
    with pytest.raises(ValueError, match="^dma[ :]"):      # the one-line error names the device
        dma.load_state(damaged)
    assert dma.state() == saved


def test_terminal_count_of_a_channel_number_outside_0_to_7_is_false_in_any_state():
    dma, _, _ = busy_dma()
    saved = dma.state()
    chans = [dict(c, last_tc=True) for c in saved["dma2"]["channels"]]
    dma.load_state({**saved, "dma2": {**saved["dma2"], "channels": chans}})
    assert dma.terminal_count(7) and dma.terminal_count(4)
    assert not dma.terminal_count(8) and not dma.terminal_count(-1) and not dma.terminal_count(12)
