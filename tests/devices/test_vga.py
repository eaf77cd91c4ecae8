"""VGA register file, mode sets and screen readers, driven through the port bus."""
from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from hv.devices import vga_font
from hv.devices.vga import (CP437, DEFAULT_PALETTE, EGA_PALETTE, FRAME_NS, MODE_TABLES, VBLANK_NS, Vga,
                         decode_cp437, encode_png)
from tests.devices.harness import Harness, ManualClock

TEXT = 0x18000       # 0xB8000 inside the vram view
IS1 = 0x3DA


def make(clock=None):
    vram = memoryview(bytearray(0x20000))
    dev = Vga(vram, clock=clock)
    return dev, Harness(dev), vram


def put_text(vram, row, col, text: bytes, attr=0x07):
    for i, ch in enumerate(text):
        off = TEXT + (row * 80 + col + i) * 2
        vram[off] = ch
        vram[off + 1] = attr


def pixel(render, x, y):
    w, _, rgb = render
    i = (y * w + x) * 3
    return tuple(rgb[i:i + 3])


def dac_read(h, index):
    h.outb(0x3C7, index)
    return h.inb(0x3C9), h.inb(0x3C9), h.inb(0x3C9)


# ---------------------------------------------------------------- index/data registers

def test_sequencer_data_port_reads_back_the_indexed_register():
    _, h, _ = make()
    h.outb(0x3C4, 0x02)
    h.outb(0x3C5, 0x0A)
    h.outb(0x3C4, 0x04)
    h.outb(0x3C5, 0x06)
    h.outb(0x3C4, 0x02)
    assert h.inb(0x3C5) == 0x0A
    assert h.inb(0x3C4) == 0x02


def test_graphics_controller_data_port_reads_back_the_indexed_register():
    _, h, _ = make()
    h.outb(0x3CE, 0x08)
    h.outb(0x3CF, 0x5A)
    assert h.inb(0x3CF) == 0x5A


def test_crtc_word_write_sets_index_then_data():
    dev, h, _ = make()
    h.outw(0x3D4, 0x340C)        # out dx, ax: AL = index 0Ch, AH = data 34h
    assert dev.cr[0x0C] == 0x34
    assert h.inb(0x3D4) == 0x0C
    assert h.inb(0x3D5) == 0x34


def test_sequencer_word_write_sets_index_then_data():
    dev, h, _ = make()
    h.outw(0x3C4, 0x0F02)
    assert dev.sr[2] == 0x0F


def test_crtc_protect_bit_blocks_writes_to_horizontal_timing():
    dev, h, _ = make()
    h.outw(0x3D4, 0x8011)        # CR11 bit 7: protect CR00-CR07
    h.outw(0x3D4, 0x1200)
    assert dev.cr[0] != 0x12
    h.outw(0x3D4, 0x0011)
    h.outw(0x3D4, 0x1200)
    assert dev.cr[0] == 0x12


def test_crtc_is_absent_at_3d4_in_mono_addressing():
    dev, h, _ = make()
    h.outb(0x3C2, 0x66)          # Misc Output bit 0 clear: CRTC moves to 3B4
    h.outw(0x3D4, 0x550E)
    assert dev.cr[0x0E] != 0x55
    assert h.inb(0x3D5) == 0xFF


def test_misc_output_is_written_at_3c2_and_read_at_3cc():
    _, h, _ = make()
    h.outb(0x3C2, 0xE3)
    assert h.inb(0x3CC) == 0xE3


def test_unassigned_port_in_the_range_reads_all_ones():
    _, h, _ = make()
    assert h.inb(0x3CD) == 0xFF


# ---------------------------------------------------------------- attribute controller

def test_attribute_writes_alternate_between_index_and_data():
    dev, h, _ = make()
    h.inb(IS1)
    h.outb(0x3C0, 0x01)
    h.outb(0x3C0, 0x3F)
    h.outb(0x3C0, 0x11)
    h.outb(0x3C0, 0x05)
    assert dev.ar[0x01] == 0x3F
    assert dev.ar[0x11] == 0x05


def test_attribute_data_is_read_at_3c1():
    _, h, _ = make()
    h.inb(IS1)
    h.outb(0x3C0, 0x12)
    h.outb(0x3C0, 0x0A)
    h.outb(0x3C0, 0x32)          # index 12h again, PAS set
    assert h.inb(0x3C1) == 0x0A
    assert h.inb(0x3C0) == 0x32


def test_reading_input_status_1_resets_the_attribute_flip_flop():
    dev, h, _ = make()
    h.inb(IS1)
    h.outb(0x3C0, 0x02)          # index; flip-flop now expects data
    h.inb(IS1)                   # back to index
    h.outb(0x3C0, 0x05)          # so this is an index, not data for AR02
    h.outb(0x3C0, 0x2A)
    assert dev.ar[0x05] == 0x2A
    assert dev.ar[0x02] == 0x02


# ---------------------------------------------------------------- retrace

def test_retrace_bit_alternates_without_a_clock():
    _, h, _ = make()
    seen = {h.inb(IS1) & 0x08 for _ in range(4)}
    assert seen == {0x00, 0x08}


def test_retrace_bit_follows_the_clock_at_70_hz():
    clock = ManualClock()
    _, h, _ = make(clock)
    assert h.inb(IS1) & 0x09 == 0x09          # frame start: vertical blanking
    clock.step(VBLANK_NS + 1000)
    assert h.inb(IS1) & 0x08 == 0
    clock.step(FRAME_NS - VBLANK_NS - 1000)   # next frame
    assert h.inb(IS1) & 0x08 == 0x08


def test_a_retrace_polling_loop_terminates_with_a_moving_clock():
    clock = ManualClock()
    _, h, _ = make(clock)
    clock.step(VBLANK_NS * 2)
    polls = 0
    while not h.inb(IS1) & 0x08:               # wait for vertical retrace
        clock.step(100_000)
        polls += 1
        assert polls < 1000
    while h.inb(IS1) & 0x08:                   # wait for its end
        clock.step(100_000)
        polls += 1
        assert polls < 1000


# ---------------------------------------------------------------- DAC

def test_power_on_dac_holds_the_standard_256_colour_palette():
    _, h, _ = make()
    assert dac_read(h, 0) == (0, 0, 0)
    assert dac_read(h, 1) == (0, 0, 42)
    assert dac_read(h, 6) == (42, 21, 0)       # brown, not dark yellow
    assert dac_read(h, 15) == (63, 63, 63)
    assert dac_read(h, 16) == (0, 0, 0)
    assert dac_read(h, 31) == (63, 63, 63)
    assert dac_read(h, 32) == (0, 0, 63)
    assert dac_read(h, 40) == (63, 0, 0)
    assert dac_read(h, 104) == (0, 0, 28)
    assert dac_read(h, 247) == (11, 12, 16)
    assert dac_read(h, 248) == (0, 0, 0)


def test_default_palette_matches_known_rows_of_the_standard_table():
    # Rows copied from the standard table (SeaBIOS vgatables.c palette3).
    assert DEFAULT_PALETTE[24 * 3:28 * 3] == bytes(
        [0x1C, 0x1C, 0x1C, 0x20, 0x20, 0x20, 0x24, 0x24, 0x24, 0x28, 0x28, 0x28])
    assert DEFAULT_PALETTE[80 * 3:84 * 3] == bytes(
        [0x2D, 0x2D, 0x3F, 0x31, 0x2D, 0x3F, 0x36, 0x2D, 0x3F, 0x3A, 0x2D, 0x3F])
    assert DEFAULT_PALETTE[188 * 3:192 * 3] == bytes(
        [0x10, 0x10, 0x00, 0x0C, 0x10, 0x00, 0x08, 0x10, 0x00, 0x04, 0x10, 0x00])


def test_ega_text_palette_matches_known_entries():
    assert EGA_PALETTE[0x14 * 3:0x15 * 3] == bytes([0x2A, 0x15, 0x00])
    assert EGA_PALETTE[0x3F * 3:0x40 * 3] == bytes([0x3F, 0x3F, 0x3F])
    assert EGA_PALETTE[0x08 * 3:0x09 * 3] == bytes([0x00, 0x00, 0x15])


def test_dac_write_stores_rgb_and_auto_increments_the_index():
    _, h, _ = make()
    h.outb(0x3C8, 0x10)
    for v in (1, 2, 3, 4, 5, 6):
        h.outb(0x3C9, v)
    assert h.inb(0x3C8) == 0x12
    assert dac_read(h, 0x10) == (1, 2, 3)
    assert dac_read(h, 0x11) == (4, 5, 6)


def test_dac_read_auto_increments_across_entries():
    _, h, _ = make()
    h.outb(0x3C7, 1)
    values = [h.inb(0x3C9) for _ in range(6)]
    assert values == [0, 0, 42, 0, 42, 0]


def test_dac_keeps_six_bits_per_component():
    _, h, _ = make()
    h.outb(0x3C8, 5)
    for v in (0xFF, 0x40, 0x3F):
        h.outb(0x3C9, v)
    assert dac_read(h, 5) == (0x3F, 0x00, 0x3F)


def test_dac_state_reports_read_or_write_mode():
    _, h, _ = make()
    h.outb(0x3C7, 0)
    assert h.inb(0x3C7) == 0x03
    h.outb(0x3C8, 0)
    assert h.inb(0x3C7) == 0x00


def test_pel_mask_reads_back():
    _, h, _ = make()
    assert h.inb(0x3C6) == 0xFF
    h.outb(0x3C6, 0x0F)
    assert h.inb(0x3C6) == 0x0F


# ---------------------------------------------------------------- cursor

def test_cursor_location_comes_from_crtc_registers():
    dev, h, _ = make()
    dev.set_mode(0x03)
    pos = 5 * 80 + 17
    h.outw(0x3D4, ((pos >> 8) << 8) | 0x0E)
    h.outw(0x3D4, ((pos & 0xFF) << 8) | 0x0F)
    assert dev.cursor() == (5, 17, True)


def test_cursor_disable_bit_hides_the_cursor():
    dev, h, _ = make()
    dev.set_mode(0x03)
    h.outw(0x3D4, 0x200A)
    assert dev.cursor()[2] is False


def test_cursor_is_relative_to_the_start_address():
    dev, h, _ = make()
    dev.set_mode(0x03)
    h.outw(0x3D4, (80 << 8) | 0x0D)            # screen starts one row down
    h.outw(0x3D4, ((81 & 0xFF) << 8) | 0x0F)
    assert dev.cursor()[:2] == (0, 1)


# ---------------------------------------------------------------- text mode

def test_mode_03_is_text_with_standard_registers():
    dev, h, _ = make()
    assert dev.set_mode(0x03) is True
    assert not dev.is_graphics()
    h.outb(0x3C4, 0x04)
    assert h.inb(0x3C5) == 0x02
    h.outb(0x3D4, 0x09)
    assert h.inb(0x3D5) == 0x4F
    assert h.inb(0x3CC) == 0x67


def test_mode_set_clears_the_text_screen_to_grey_blanks():
    dev, _, vram = make()
    vram[TEXT] = ord("X")
    dev.set_mode(0x03)
    assert bytes(vram[TEXT:TEXT + 4]) == b"\x20\x07\x20\x07"


def test_mode_number_bit_7_keeps_video_memory():
    dev, _, vram = make()
    vram[TEXT] = ord("X")
    dev.set_mode(0x83)
    assert dev.text_rows()[0][0] == "X"


def test_unknown_mode_is_refused_and_changes_nothing():
    dev, _, _ = make()
    before = list(dev.gr)
    assert dev.set_mode(0x6A) is False
    assert dev.gr == before


def test_characters_written_to_text_memory_appear_in_text_rows():
    dev, _, vram = make()
    dev.set_mode(0x03)
    put_text(vram, 2, 10, b"Hello, VGA")
    rows = dev.text_rows()
    assert len(rows) == 25 and all(len(r) == 80 for r in rows)
    assert rows[2][10:20] == "Hello, VGA"
    assert rows[0].strip() == ""


def test_text_rows_decode_cp437_graphics():
    dev, _, vram = make()
    dev.set_mode(0x03)
    put_text(vram, 0, 0, bytes([0x01, 0x03, 0xC9, 0xCD, 0xBB, 0xB0, 0xDB, 0xE1, 0x9C, 0x7F]))
    assert dev.text_rows()[0][:10] == "☺♥╔═╗░█ß£⌂"


def test_text_rows_follow_the_crtc_start_address():
    dev, h, vram = make()
    dev.set_mode(0x03)
    put_text(vram, 1, 0, b"second line")
    h.outw(0x3D4, (80 << 8) | 0x0D)
    assert dev.text_rows()[0].startswith("second line")


def test_cp437_table_has_256_single_characters():
    assert len(CP437) == 256 and all(len(c) == 1 for c in CP437)
    assert decode_cp437(bytes([0x41, 0xB3, 0xFB])) == "A│√"


def test_text_render_is_720_by_400_with_attribute_colours():
    dev, _, vram = make()
    dev.set_mode(0x03)
    put_text(vram, 0, 0, bytes([0xDB]), attr=0x1E)     # full block, yellow on blue
    put_text(vram, 0, 1, b" ", attr=0x1E)
    w, h, rgb = r = dev.render()
    assert (w, h, len(rgb)) == (720, 400, 720 * 400 * 3)
    assert pixel(r, 3, 3) == (255, 255, 85)            # bright yellow foreground
    assert pixel(r, 9 + 3, 3) == (0, 0, 170)           # blue background
    assert pixel(r, 400, 200) == (0, 0, 0)


def test_eight_dot_clocking_makes_a_640_pixel_text_screen():
    dev, h, _ = make()
    dev.set_mode(0x03)
    h.outw(0x3C4, 0x0101)
    assert dev.render()[:2] == (640, 400)


def test_text_render_draws_the_cursor_in_the_foreground_colour():
    dev, h, vram = make()
    dev.set_mode(0x03)
    put_text(vram, 0, 0, b" ", attr=0x0F)
    h.outw(0x3D4, 0x000E)
    h.outw(0x3D4, 0x000F)
    r = dev.render()
    assert pixel(r, 2, 14) == (255, 255, 255)          # cursor lines 0Dh-0Eh
    assert pixel(r, 2, 2) == (0, 0, 0)


def test_power_on_text_colours_are_right_before_any_mode_set():
    dev, _, vram = make()
    put_text(vram, 0, 0, bytes([0xDB]), attr=0x0C)     # light red
    assert pixel(dev.render(), 2, 2) == (255, 85, 85)


# ---------------------------------------------------------------- mode 13h

def test_mode_13h_is_graphics_with_chain_4():
    dev, _, _ = make()
    dev.set_mode(0x13)
    assert dev.is_graphics()
    assert dev.is_256_colour()


def test_graphics_mode_is_derived_from_registers_not_remembered():
    dev, h, _ = make()
    dev.set_mode(0x13)
    h.outw(0x3CE, 0x0E06)        # GR06 back to text, B8000
    assert not dev.is_graphics()


def test_mode_13h_render_maps_pixels_through_the_dac():
    dev, h, vram = make()
    dev.set_mode(0x13)
    vram[0] = 4                              # red
    vram[319] = 15                           # white
    vram[199 * 320 + 5] = 40                 # bright red from the hue wheel
    h.outb(0x3C8, 200)
    for v in (63, 0, 63):
        h.outb(0x3C9, v)
    vram[100 * 320 + 100] = 200
    r = dev.render()
    assert r[:2] == (320, 200) and len(r[2]) == 320 * 200 * 3
    assert pixel(r, 0, 0) == (170, 0, 0)
    assert pixel(r, 319, 0) == (255, 255, 255)
    assert pixel(r, 5, 199) == (255, 0, 0)
    assert pixel(r, 100, 100) == (255, 0, 255)
    assert pixel(r, 1, 0) == (0, 0, 0)


def test_pel_mask_applies_to_graphics_pixels():
    dev, h, vram = make()
    dev.set_mode(0x13)
    vram[0] = 0x1F                           # masked to 0x0F: white
    h.outb(0x3C6, 0x0F)
    assert pixel(dev.render(), 0, 0) == (255, 255, 255)


def test_screen_is_blank_while_the_palette_belongs_to_the_cpu():
    dev, h, vram = make()
    dev.set_mode(0x13)
    vram[0] = 15
    h.inb(IS1)
    h.outb(0x3C0, 0x00)                      # PAS clear
    assert pixel(dev.render(), 0, 0) == (0, 0, 0)


# ---------------------------------------------------------------- PNG

def test_screenshot_is_a_valid_png(tmp_path):
    dev, _, vram = make()
    dev.set_mode(0x13)
    vram[0] = 9
    path = tmp_path / "shot.png"
    dev.screenshot_png(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    ihdr = data[16:29]
    assert struct.unpack(">IIBBBBB", ihdr) == (320, 200, 8, 2, 0, 0, 0)
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(b"IHDR" + ihdr)
    assert data.endswith(b"IEND\xaeB`\x82")


def test_png_pixel_data_round_trips():
    rgb = bytes(range(2 * 2 * 3))
    png = encode_png(2, 2, rgb)
    idat_at = png.index(b"IDAT")
    length = struct.unpack(">I", png[idat_at - 4:idat_at])[0]
    raw = zlib.decompress(png[idat_at + 4:idat_at + 4 + length])
    assert raw == b"\x00" + rgb[:6] + b"\x00" + rgb[6:]


# ---------------------------------------------------------------- font

def test_font_covers_256_characters_in_both_sizes():
    assert len(vga_font.FONT8X8) == 256 * 8
    assert len(vga_font.FONT8X16) == 256 * 16
    assert vga_font.glyph8x8(0x20) == bytes(8)
    assert vga_font.glyph8x8(0xDB) == b"\xff" * 8


def test_font_rows_have_the_leftmost_pixel_in_bit_7():
    # ▌ (DDh) is the left half of the cell, ▐ (DEh) the right half.
    assert vga_font.glyph8x8(0xDD) == b"\xf0" * 8
    assert vga_font.glyph8x8(0xDE) == b"\x0f" * 8
    assert vga_font.glyph8x16(0xDD) == b"\xf0" * 16


def test_every_printable_character_has_a_glyph():
    blank = {0x00, 0x20, 0xFF}
    assert all(any(vga_font.glyph8x8(c)) for c in range(256) if c not in blank)


# ---------------------------------------------------------------- robustness

accesses = st.lists(
    st.tuples(st.integers(0, 0x1F), st.sampled_from([1, 2, 4]), st.integers(0, 0xFFFFFFFF),
              st.booleans()),
    max_size=60)


@settings(max_examples=60, deadline=None)
@given(accesses)
def test_random_port_accesses_never_raise_and_the_screen_still_renders(ops):
    dev, _, _ = make()
    for offset, size, value, is_write in ops:
        if is_write:
            dev.write(offset, size, value & ((1 << (8 * size)) - 1))
        else:
            assert 0 <= dev.read(offset, size) < (1 << (8 * size))
    w, h, rgb = dev.render()
    assert len(rgb) == w * h * 3
    assert len(dev.text_rows()) == 25
    dev.cursor()


@settings(max_examples=300, deadline=None)
@given(st.integers(-5, 0x40), st.integers(-1, 9), st.integers(-(1 << 40), 1 << 40))
def test_accesses_at_unclaimed_offsets_read_all_ones_and_leave_the_registers_alone(offset, size, value):
    dev, _, vram = make()
    before = (bytes(dev.cr), bytes(dev.gr), bytes(vram))
    n = max(0, min(size, 4))
    claimed = {offset + i for i in range(n)} & (set(dev._readers) | set(dev._writers))
    dev.write(offset, size, value)
    got = dev.read(offset, size)
    assert 0 <= got < 1 << (8 * n) if n else got == 0
    if not claimed:
        assert got == (1 << (8 * n)) - 1
        assert (bytes(dev.cr), bytes(dev.gr), bytes(vram)) == before


@settings(max_examples=200, deadline=None)
@given(st.integers(-1000, 1000))
def test_set_mode_programs_only_the_modes_it_knows_and_leaves_others_untouched(mode):
    dev, _, vram = make()
    dev.set_mode(0x03)
    before = (bytes(dev.cr), bytes(dev.gr), bytes(vram))
    known = (mode & 0x7F) in MODE_TABLES
    assert dev.set_mode(mode) is known
    if not known:
        assert (bytes(dev.cr), bytes(dev.gr), bytes(vram)) == before
    else:
        assert dev.is_graphics() == ((mode & 0x7F) == 0x13)
        w, h, rgb = dev.render()
        assert len(rgb) == w * h * 3 and (w, h) in ((640, 400), (720, 400), (320, 200))


@pytest.mark.parametrize("size", [0x100, 0x18000])
def test_a_short_vram_view_never_breaks_the_readers(size):
    dev = Vga(memoryview(bytearray(size)))
    dev.set_mode(0x03)
    assert len(dev.text_rows()) == 25
    dev.set_mode(0x13)
    dev.render()
