import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hv.devices.dma8237 import Dma8237
from hv.memory import GuestMemory, GuestMemoryError
from tests.devices.harness import Harness

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
    h.outb(0xD4, 0x04 | 1)                # mask channel 5
    h.outb(0xD6, 0x44 | 1)                # single, write, channel 5
    h.outb(0xD8, 0)
    h.outb(0xC4, 0x00)                    # word address 0x8000 -> byte 0x10000
    h.outb(0xC4, 0x80)
    h.outb(0x8B, 0x02)                    # A23-A17: 0x20000
    h.outb(0xC6, 1)                       # 2 words
    h.outb(0xC6, 0)
    h.outb(0xD4, 1)
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


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(PORTS), st.sampled_from([1, 2, 4]),
                              st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=60),
       transfers=st.lists(st.tuples(st.integers(-2, 9), st.integers(0, 3000), st.booleans()),
                          max_size=6))
def test_random_port_accesses_and_transfers_never_raise_or_leave_ram(ops, transfers):
    dma, h, mem = make(size=MiB)
    for port, size, value, is_write in ops:
        if is_write:
            h.bus.write(port, size, value & ((1 << 8 * size) - 1))
        else:
            assert 0 <= h.bus.read(port, size) < 1 << (8 * size)
    for channel, length, to_memory in transfers:
        if to_memory:
            n = dma.write_to_memory(channel, bytes(length))
            assert 0 <= n <= length
        else:
            assert len(dma.read_from_memory(channel, length)) <= length
    for addr, n in mem.writes:
        assert 0 <= addr and addr + n <= mem.span


def test_watched_memory_refuses_writes_outside_guest_ram():
    mem = WatchedMemory(MiB)
    with pytest.raises(GuestMemoryError):
        mem.write(mem.span, b"x")
