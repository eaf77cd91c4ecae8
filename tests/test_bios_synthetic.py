"""The synthetic BIOS: its services, booted for real or called directly on a machine
that has run POST. Guest programs leave results at 0000:0600 and end in cli; hlt."""
from __future__ import annotations

import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.guests import IMAGES_DIR
from hv.devices import bios_common as B
from hv.devices.bios_synthetic import DPT_OFFSET, disk, keyboard, keytable, system, video
from hv.hypercall import BLOCK, CF
from hv.machine import DriveSpec, Machine, MachineConfig
from tests.asm import assemble, write_image
from tests.bios_ctx import call
from tests.guest_run import expect_finished

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils needed")

OUT = 0x600                        # where guest programs store results
HALT = "\ncli\nhlt\n"
IMAGES = IMAGES_DIR


# ------------------------------------------------------------------ helpers

@pytest.fixture
def machines():
    made = []
    yield made
    for m in made:
        m.close()


@pytest.fixture
def boot(tmp_path, machines):
    """Assemble ``source`` as a boot sector, boot it (floppy by default), run to its hlt."""

    def run(source: str, *extra: bytes, as_hd: bool = False, hd: bytes | None = None,
            **cfg) -> Machine:
        img = write_image(tmp_path / f"b{len(machines)}.img", assemble(source + HALT), *extra)
        drives = {"hda": DriveSpec(str(img))} if as_hd else {"fda": DriveSpec(str(img))}
        if hd is not None:
            drives["hda"] = DriveSpec(str(write_image(tmp_path / f"h{len(machines)}.img", hd)))
        m = Machine(MachineConfig(timeout=10, **drives, **cfg))
        machines.append(m)
        m.result_ = expect_finished(m, m.run())
        assert m.result_.exit_code == 0, m.result_.reason
        return m
    return run


@pytest.fixture
def posted(boot):
    """A machine that ran POST and booted a program that only halts (floppy 1.44M)."""
    return boot("")


# ------------------------------------------------------------------ POST and boot

def test_post_equipment_word_reports_floppy_colour_video_and_one_serial_port(posted):
    eq = posted.mem.u16(B.EQUIPMENT)
    assert eq & 0x0001 and (eq >> 4) & 3 == 2 and (eq >> 9) & 7 == 1 and (eq >> 6) & 3 == 0


def test_post_reports_638_kib_of_conventional_memory_and_the_ebda_segment(posted):
    assert posted.mem.u16(B.MEMORY_KB) == 638
    assert posted.mem.u16(B.EBDA_SEGMENT) == 0x9F80


def test_post_sets_up_the_keyboard_buffer_in_the_bda(posted):
    mem = posted.mem
    assert (mem.u16(B.KBD_BUFFER_START), mem.u16(B.KBD_BUFFER_STOP)) == (0x1E, 0x3E)
    assert mem.u16(B.KBD_HEAD) == mem.u16(B.KBD_TAIL) == 0x1E


def test_post_points_int_1e_at_the_diskette_parameter_table(posted):
    assert posted.mem.u32(0x1E * 4) == (0xF000 << 16) | DPT_OFFSET


def test_post_installs_the_8x8_font_behind_int_43(posted):
    from hv.devices.vga_font import FONT8X8
    off, seg = posted.mem.u16(0x43 * 4), posted.mem.u16(0x43 * 4 + 2)
    assert posted.mem.read(seg * 16 + off + 8 * 0x41, 8) == FONT8X8[8 * 0x41:8 * 0x42]


def test_post_installs_a_fixed_disk_parameter_table_for_the_hard_disk(boot):
    m = boot("", hd=bytes(512 * 4))
    off, seg = m.mem.u16(0x41 * 4), m.mem.u16(0x41 * 4 + 2)
    table = m.mem.read(seg * 16 + off, 16)
    assert struct.unpack_from("<H", table)[0] == 2 and table[2] == 16 and table[14] == 63
    assert m.mem.u8(B.HD_COUNT) == 1


def test_boot_sector_starts_with_dl_holding_the_boot_drive(boot):
    m = boot("mov %dl, 0x600", as_hd=True)
    assert m.mem.u8(OUT) == 0x80


def test_reset_with_shutdown_code_0a_resumes_at_the_bda_vector(boot):
    m = boot("""
        cmpb $1, 0x601
        je 2f
        movb $1, 0x601
        movw $resume, 0x467
        movw $0, 0x469
        mov $0x0f, %al
        out %al, $0x70
        mov $0x0a, %al
        out %al, $0x71
        mov $0xfe, %al
        out %al, $0x64          # pulse the reset line
    1:  hlt
        jmp 1b
    resume:
        movb $0x5a, 0x600
    2:""")
    assert m.mem.u8(OUT) == 0x5A


def test_no_bootable_device_prints_a_message_and_halts(tmp_path, machines):
    img = write_image(tmp_path / "blank.img", bytes(512))
    m = Machine(MachineConfig(fda=DriveSpec(str(img)), timeout=10))
    machines.append(m)
    r = m.run()
    assert "No bootable device." in m.screen_text()
    assert "No bootable device." in m.serial_text()
    assert "firmware halted" in r.reason


# ------------------------------------------------------------------ INT 10h

def test_mode_set_clears_the_screen_and_homes_the_cursor(posted):
    m = posted
    m.mem.write(video.TEXT_BASE, b"X\x4e" * 100)
    video._set_cursor(m, 0, 3, 3)
    call(m, video.int10, ax=0x0003)
    assert m.mem.read(video.TEXT_BASE, 200) == b" \x07" * 100
    assert m.mem.u16(B.CURSOR_POS) == 0 and m.mem.u8(B.VIDEO_MODE) == 3


def test_mode_set_with_bit_7_keeps_video_memory(posted):
    m = posted
    m.mem.write(video.TEXT_BASE, b"X\x4e")
    call(m, video.int10, ax=0x0083)
    assert m.mem.read(video.TEXT_BASE, 2) == b"X\x4e"
    assert call(m, video.int10, ax=0x0F00).regs.al == 0x83


def test_mode_13h_sets_the_bda_for_40_columns_and_clears_graphics_memory(posted):
    m = posted
    m.mem.write(video.GFX_BASE, b"\x05" * 64)
    ctx = call(m, video.int10, ax=0x0013)
    assert m.mem.read(video.GFX_BASE, 64) == bytes(64)
    assert m.mem.u8(B.VIDEO_MODE) == 0x13 and m.mem.u16(B.VIDEO_COLUMNS) == 40
    assert m.vga.is_graphics() and ctx.regs.al == 0x20


def test_cursor_shape_goes_to_the_bda_and_the_crtc(posted):
    m = posted
    call(m, video.int10, ah=0x01, cx=0x2000)          # bit 5: cursor off
    assert m.mem.u16(B.CURSOR_SHAPE) == 0x2000
    assert m.vga.cr[0x0A] == 0x20 and m.vga.cr[0x0B] == 0x00
    assert not m.vga.cursor()[2]


def test_set_cursor_position_moves_the_hardware_cursor(posted):
    m = posted
    call(m, video.int10, ah=0x02, bh=0, dx=0x050A)
    assert m.mem.u16(B.CURSOR_POS) == 0x050A
    assert m.vga.cursor()[:2] == (5, 10)


def test_get_cursor_returns_position_and_shape_of_the_requested_page(posted):
    m = posted
    call(m, video.int10, ah=0x02, bh=2, dx=0x0307)
    ctx = call(m, video.int10, ah=0x03, bh=2)
    assert ctx.regs.dx == 0x0307 and ctx.regs.cx == m.mem.u16(B.CURSOR_SHAPE)


def test_select_page_updates_bda_and_crtc_start_address(posted):
    m = posted
    call(m, video.int10, ax=0x0502)
    assert m.mem.u8(B.ACTIVE_PAGE) == 2
    assert m.mem.u16(B.VIDEO_PAGE_OFFSET) == 0x2000
    assert m.vga.start_address() == 0x1000
    assert call(m, video.int10, ah=0x0F).regs.bh == 2


def _fill_rows(m, page=0):
    for row in range(25):
        m.mem.write(video.TEXT_BASE + page * 0x1000 + row * 160, bytes([0x41 + row, 0x07]) * 80)


def test_scroll_up_moves_the_window_and_blanks_with_bh(posted):
    m = posted
    _fill_rows(m)
    call(m, video.int10, ax=0x0601, bh=0x1E, cx=0x0202, dx=0x0505)
    cell = lambda r, c: m.mem.read(video.TEXT_BASE + r * 160 + c * 2, 2)
    assert cell(2, 2) == b"D\x07" and cell(5, 5) == b" \x1e"
    assert cell(2, 1) == b"C\x07" and cell(2, 6) == b"C\x07"   # outside the window


def test_scroll_down_moves_the_window_down(posted):
    m = posted
    _fill_rows(m)
    call(m, video.int10, ax=0x0702, bh=0x70, cx=0x0000, dx=0x184F)
    cell = lambda r, c: m.mem.read(video.TEXT_BASE + r * 160 + c * 2, 2)
    assert cell(0, 0) == b" \x70" and cell(1, 79) == b" \x70" and cell(2, 0) == b"A\x07"


def test_scroll_with_zero_lines_clears_the_window(posted):
    m = posted
    _fill_rows(m)
    call(m, video.int10, ax=0x0600, bh=0x17, cx=0x0000, dx=0x184F)
    assert m.mem.read(video.TEXT_BASE, 4000) == b" \x17" * 2000


def test_read_char_and_attribute_at_the_cursor(posted):
    m = posted
    m.mem.write(video.TEXT_BASE + 0x1000 + (4 * 80 + 4) * 2, b"Q\x2c")
    call(m, video.int10, ah=0x02, bh=1, dx=0x0404)
    assert call(m, video.int10, ah=0x08, bh=1).regs.ax == 0x2C51


def test_write_char_and_attribute_repeats_without_moving_the_cursor(posted):
    m = posted
    call(m, video.int10, ah=0x02, bh=0, dx=0x0605)
    call(m, video.int10, ax=0x095A, bx=0x001F, cx=3)
    row = m.mem.read(video.TEXT_BASE + 6 * 160, 20)
    assert row[8:16] == b"\x20\x07" + b"Z\x1f" * 3 and row[16:18] == b" \x07"
    assert m.mem.u16(B.CURSOR_POS) == 0x0605


def test_write_char_only_keeps_the_attribute(posted):
    m = posted
    m.mem.write(video.TEXT_BASE + 7 * 160, b"a\x4e" * 10)
    call(m, video.int10, ah=0x02, bh=0, dx=0x0701)
    call(m, video.int10, ax=0x0A4B, bx=0x001F, cx=2)
    assert m.mem.read(video.TEXT_BASE + 7 * 160, 8) == b"a\x4eK\x4eK\x4ea\x4e"


def test_teletype_handles_bs_cr_lf_and_wraps_at_column_80(posted):
    m = posted
    call(m, video.int10, ah=0x02, bh=0, dx=0x0A4F)
    call(m, video.int10, ax=0x0E57)
    assert m.mem.u16(B.CURSOR_POS) == 0x0B00
    for ch in b"ab\x08":
        call(m, video.int10, ax=0x0E00 | ch)
    assert m.mem.u16(B.CURSOR_POS) == 0x0B01
    call(m, video.int10, ax=0x0E0D)
    call(m, video.int10, ax=0x0E0A)
    assert m.mem.u16(B.CURSOR_POS) == 0x0C00


def test_teletype_bell_writes_nothing(posted):
    m = posted
    call(m, video.int10, ah=0x02, bh=0, dx=0x0303)
    call(m, video.int10, ax=0x0E07)
    assert m.mem.u16(B.CURSOR_POS) == 0x0303
    assert m.mem.read(video.TEXT_BASE + 3 * 160 + 6, 2) == b" \x07"


def test_teletype_scrolls_at_the_bottom_with_the_cursor_cells_attribute(posted):
    m = posted
    m.mem.write(video.TEXT_BASE + 24 * 160, b"M\x1e")
    call(m, video.int10, ah=0x02, bh=0, dx=0x1800)
    call(m, video.int10, ax=0x0E0A)
    assert m.mem.u16(B.CURSOR_POS) == 0x1800
    assert m.mem.read(video.TEXT_BASE + 23 * 160, 2) == b"M\x1e"
    assert m.mem.read(video.TEXT_BASE + 24 * 160, 2) == b" \x1e"


def test_teletype_in_mode_13h_draws_the_glyph_in_colour_bl(posted):
    from hv.devices.vga_font import FONT8X8
    m = posted
    call(m, video.int10, ax=0x0013)
    call(m, video.int10, ax=0x0E41, bx=0x000C)
    for y in range(8):
        line = m.mem.read(video.GFX_BASE + y * 320, 8)
        assert line == bytes(0x0C if FONT8X8[0x41 * 8 + y] & (0x80 >> x) else 0 for x in range(8))
    assert m.mem.u16(B.CURSOR_POS) == 0x0001


def test_read_char_in_mode_13h_recognises_a_drawn_glyph(posted):
    m = posted
    call(m, video.int10, ax=0x0013)
    call(m, video.int10, ax=0x0948, bx=0x0005, cx=1)
    assert call(m, video.int10, ah=0x08, bh=0).regs.al == 0x48


def test_write_string_mode_1_writes_attribute_and_moves_the_cursor(posted):
    m = posted
    m.mem.write(0x700, b"Hi!")
    call(m, video.int10, ax=0x1301, bx=0x002F, cx=3, dx=0x0204, es=0, bp=0x700)
    assert m.mem.read(video.TEXT_BASE + 2 * 160 + 8, 6) == b"H/i/!/"
    assert m.mem.u16(B.CURSOR_POS) == 0x0207


def test_write_string_mode_2_takes_attributes_from_the_string_and_keeps_the_cursor(posted):
    m = posted
    m.mem.write(0x700, b"A\x1eB\x4f")
    call(m, video.int10, ah=0x02, bh=0, dx=0x0000)
    call(m, video.int10, ax=0x1302, bx=0, cx=2, dx=0x0101, es=0, bp=0x700)
    assert m.mem.read(video.TEXT_BASE + 160 + 2, 4) == b"A\x1eB\x4f"
    assert m.mem.u16(B.CURSOR_POS) == 0


def test_int10_from_a_guest_prints_through_teletype(boot):
    m = boot("mov $0x0e48, %ax\n mov $7, %bx\n int $0x10\n mov $0x0e69, %ax\n int $0x10")
    assert m.screen_text().splitlines()[1].startswith("Hi")


# ------------------------------------------------------------------ INT 11h, 12h

def test_int11_and_int12_from_a_guest(boot):
    m = boot("int $0x11\n mov %ax, 0x600\n int $0x12\n mov %ax, 0x602")
    assert m.mem.u16(OUT) == m.mem.u16(B.EQUIPMENT)
    assert m.mem.u16(OUT + 2) == 638


# ------------------------------------------------------------------ INT 13h

SECTOR_TAGS = b"".join(bytes([i]) * 512 for i in range(1, 40))


def test_chs_read_loads_sectors_and_reports_the_count(boot):
    m = boot("""
        mov $0x0203, %ax      # read 3 sectors
        mov $0x0002, %cx      # cylinder 0, sector 2
        xor %dh, %dh
        mov $0x1000, %bx
        int $0x13
        mov %ax, 0x600
        pushf
        pop 0x602""", SECTOR_TAGS)
    assert m.mem.u16(OUT) == 0x0003 and not m.mem.u16(OUT + 2) & CF
    assert m.mem.read(0x1000, 3 * 512) == bytes([1]) * 512 + bytes([2]) * 512 + bytes([3]) * 512


def test_chs_read_beyond_the_geometry_fails_with_invalid_parameter(posted):
    ctx = call(posted, disk.int13, ax=0x0201, cx=0x0014, dx=0x0000, es=0, bx=0x1000)  # sector 20
    assert ctx.cf and ctx.regs.ah == 0x01
    assert posted.mem.u8(B.DISKETTE_STATUS) == 0x01


def test_chs_write_reaches_the_image(posted, tmp_path):
    m = posted
    m.mem.write(0x2000, b"\xab" * 512)
    ctx = call(m, disk.int13, ax=0x0301, cx=0x0103, dx=0x0100, es=0, bx=0x2000)  # C1 H1 S3
    assert not ctx.cf and ctx.regs.ax == 0x0001
    lba = (1 * 2 + 1) * 18 + 2
    assert m.disks.drives[0].read(lba, 1) == b"\xab" * 512


def test_status_of_last_operation_is_returned_by_ah01(posted):
    call(posted, disk.int13, ax=0x0201, cx=0x0000, dx=0x0000, es=0, bx=0x1000)   # sector 0
    ctx = call(posted, disk.int13, ah=0x01, dl=0x00)
    assert ctx.regs.ah == 0x01 and ctx.cf


def test_reset_succeeds_and_clears_the_status(posted):
    posted.mem.put8(B.DISKETTE_STATUS, 0x04)
    ctx = call(posted, disk.int13, ah=0x00, dl=0x00)
    assert not ctx.cf and ctx.regs.ah == 0 and posted.mem.u8(B.DISKETTE_STATUS) == 0


def test_unknown_drive_fails_with_invalid_parameter(posted):
    ctx = call(posted, disk.int13, ax=0x0201, cx=1, dx=0x0081, es=0, bx=0x1000)
    assert ctx.cf and ctx.regs.ah == 0x01 and posted.mem.u8(B.HD_STATUS) == 0x01


def test_get_parameters_of_a_floppy_returns_geometry_type_and_table(posted):
    ctx = call(posted, disk.int13, ah=0x08, dl=0x00)
    r = ctx.regs
    assert not ctx.cf and r.ah == 0
    assert (r.ch, r.cl, r.dh, r.dl, r.bl) == (79, 18, 1, 1, 4)
    assert (r.es, r.di) == (0xF000, DPT_OFFSET)


def test_get_parameters_of_a_hard_disk_counts_hard_disks(boot):
    m = boot("", hd=bytes(512 * 3000))
    ctx = call(m, disk.int13, ah=0x08, dl=0x80)
    r = ctx.regs
    cyls = max(3000 // (16 * 63), 2)      # QEMU's guess: whole cylinders, at least 2
    assert not ctx.cf and r.dl == 1 and r.dh == 15 and r.cl & 0x3F == 63
    assert r.ch | ((r.cl & 0xC0) << 2) == cyls - 1


def test_get_disk_type_floppy_without_change_line(posted):
    ctx = call(posted, disk.int13, ah=0x15, dl=0x00)
    assert not ctx.cf and ctx.regs.ah == 0x01


def test_get_disk_type_hard_disk_reports_its_sector_count(boot):
    m = boot("", hd=bytes(512 * 2016))
    ctx = call(m, disk.int13, ah=0x15, dl=0x80)
    assert not ctx.cf and ctx.regs.ah == 0x03
    assert (ctx.regs.cx << 16) | ctx.regs.dx == 2016


def test_get_disk_type_with_no_drive_says_no_drive(posted):
    ctx = call(posted, disk.int13, ah=0x15, dl=0x81)
    assert ctx.regs.ah == 0x00


def test_edd_check_on_a_hard_disk_answers_version_and_features(boot):
    m = boot("", hd=bytes(512 * 8))
    ctx = call(m, disk.int13, ah=0x41, bx=0x55AA, dl=0x80)
    assert not ctx.cf and ctx.regs.bx == 0xAA55 and ctx.regs.ah == 0x30
    assert ctx.regs.cx & 0x0005 == 0x0005


def test_edd_check_on_a_floppy_is_refused_as_seabios_does(posted):
    ctx = call(posted, disk.int13, ah=0x41, bx=0x55AA, dl=0x00)
    assert ctx.cf and ctx.regs.ah == 0x01 and ctx.regs.bx == 0x55AA


def test_extended_read_loads_from_the_packets_lba(boot):
    m = boot("""
        mov $0x80, %dl
        mov $0x42, %ah
        mov $dap, %si
        int $0x13
        mov %ax, 0x600
        pushf
        pop 0x602
        cli
        hlt
    dap: .byte 0x10, 0
        .word 2, 0x3000, 0
        .quad 5""", SECTOR_TAGS, as_hd=True)
    assert m.mem.u16(OUT + 2) & CF == 0 and m.mem.u8(OUT + 1) == 0
    assert m.mem.read(0x3000, 1024) == bytes([5]) * 512 + bytes([6]) * 512


def test_extended_read_past_the_end_fails_and_zeroes_the_count(boot):
    m = boot("", hd=bytes(512 * 8))
    m.mem.write(0x700, struct.pack("<BBHHHQ", 0x10, 0, 4, 0x3000, 0, 5000))
    ctx = call(m, disk.int13, ah=0x42, dl=0x80, ds=0, si=0x700)
    assert ctx.cf and ctx.regs.ah == 0x01 and m.mem.u16(0x702) == 0


def test_extended_write_then_read_round_trips(boot):
    m = boot("", hd=bytes(512 * 8))
    m.mem.write(0x4000, b"\x5a" * 512)
    m.mem.write(0x700, struct.pack("<BBHHHQ", 0x10, 0, 1, 0x4000, 0, 3))
    assert not call(m, disk.int13, ah=0x43, dl=0x80, ds=0, si=0x700).cf
    assert m.disks.drives[0x80].read(3, 1) == b"\x5a" * 512


def test_edd_drive_parameters_fill_the_result_buffer(boot):
    m = boot("", hd=bytes(512 * 100))
    m.mem.write(0x700, struct.pack("<H", 0x1E) + bytes(0x1C))
    ctx = call(m, disk.int13, ah=0x48, dl=0x80, ds=0, si=0x700)
    size, flags, cyl, heads, spt, total, bps = struct.unpack_from("<HHIIIQH", m.mem.read(0x700, 26))
    assert not ctx.cf and size == 0x1E and (heads, spt, bps) == (16, 63, 512)
    assert cyl == 2 and total == 100 and m.mem.u32(0x71A) == 0xFFFFFFFF


def test_edd_drive_parameters_refuse_a_small_buffer(boot):
    m = boot("", hd=bytes(512 * 8))
    m.mem.write(0x700, struct.pack("<H", 0x10))
    assert call(m, disk.int13, ah=0x48, dl=0x80, ds=0, si=0x700).cf


# ------------------------------------------------------------------ INT 15h

def test_e820_walks_the_memory_map_to_the_end(boot):
    m = boot("""
        xor %ebx, %ebx
        mov $0x800, %di
    1:  mov $0xe820, %eax
        mov $0x534d4150, %edx
        mov $20, %ecx
        int $0x15
        jc 2f
        cmp $0x534d4150, %eax
        jne 2f
        add $20, %di
        test %ebx, %ebx
        jnz 1b
    2:  mov %di, 0x600""")
    entries = B.e820_map(m.mem.size)
    assert m.mem.u16(OUT) == 0x800 + 20 * len(entries)
    got = [struct.unpack_from("<QQI", m.mem.read(0x800 + 20 * i, 20)) for i in range(len(entries))]
    assert got == [tuple(e) for e in entries]


def test_e820_refuses_a_small_buffer(posted):
    ctx = call(posted, system.int15, eax=0xE820, edx=system.SMAP, ecx=16, ebx=0, es=0, di=0x800)
    assert ctx.cf


def test_int15_88_reports_extended_memory(posted):
    ctx = call(posted, system.int15, ah=0x88)
    assert not ctx.cf and ctx.regs.ax == (16 << 10) - 1024


def test_unknown_int15_function_fails_with_86h(posted):
    ctx = call(posted, system.int15, ah=0x99)
    assert ctx.cf and ctx.regs.ah == 0x86


def test_a20_disable_wraps_addresses_and_enable_unwraps(boot):
    m = boot("""
        mov $0xffff, %ax
        mov %ax, %es
        movb $0x22, 0x500
        movb $0x11, %es:0x510
        mov $0x2400, %ax
        int $0x15
        mov %es:0x510, %al
        mov %al, 0x600
        mov $0x2402, %ax
        int $0x15
        mov %ax, 0x602
        mov $0x2401, %ax
        int $0x15
        mov %es:0x510, %al
        mov %al, 0x601""")
    assert m.mem.u8(OUT) == 0x22 and m.mem.u8(OUT + 1) == 0x11
    assert m.mem.u16(OUT + 2) == 0x0000          # AH=0, AL=0: was off
    assert m.kbd.a20 and m.port92.a20


def test_a20_query_support_reports_both_gates(posted):
    ctx = call(posted, system.int15, ax=0x2403)
    assert not ctx.cf and ctx.regs.ah == 0 and ctx.regs.bx == 3


def test_int15_86_waits_while_the_timer_keeps_ticking(boot):
    m = boot("""
        mov 0x46c, %eax
        mov %eax, 0x604
        mov $0x86, %ah
        mov $0x0003, %cx       # 0x30D40 us = 200 ms
        mov $0x0d40, %dx
        int $0x15
        pushf
        pop 0x600
        mov 0x46c, %eax
        mov %eax, 0x608""")
    assert not m.mem.u16(OUT) & CF
    assert m.mem.u32(0x608) - m.mem.u32(0x604) >= 2


def test_int15_86_blocks_until_its_deadline(posted):
    m = posted
    first = call(m, system.int15, ah=0x86, cx=0, dx=1000)
    assert first.result is BLOCK
    m.clock.advance(2_000_000)
    done = call(m, system.int15, ah=0x86, cx=0, dx=1000)
    assert done.result is None and not done.cf


def test_int15_c0_points_at_a_configuration_table(posted):
    ctx = call(posted, system.int15, ah=0xC0)
    addr = ctx.regs.es * 16 + ctx.regs.bx
    assert not ctx.cf and posted.mem.u16(addr) == 8 and posted.mem.u8(addr + 2) == 0xFC


def test_int15_87_copies_between_descriptor_bases(posted):
    m = posted
    m.mem.write(0x110000, b"hv-block-move!!!")
    gdt = bytearray(48)
    for desc, base in ((0x10, 0x110000), (0x18, 0x5000)):
        struct.pack_into("<HHBBBB", gdt, desc, 0xFFFF, base & 0xFFFF, (base >> 16) & 0xFF,
                         0x93, 0, base >> 24)
    m.mem.write(0x800, bytes(gdt))
    ctx = call(m, system.int15, ah=0x87, cx=8, es=0, si=0x800)
    assert not ctx.cf and m.mem.read(0x5000, 16) == b"hv-block-move!!!"


# ------------------------------------------------------------------ keyboard

def press(m, *codes):
    for c in codes:
        keytable.handle_scancode(m, c)


def keys(m):
    """Every key waiting in the BIOS buffer (it holds 15: more means the buffer is broken)."""
    out = []
    for _ in range(64):
        ctx = call(m, keyboard.int16, ah=0x11)
        if ctx.zf:
            return out
        out.append(call(m, keyboard.int16, ah=0x10).regs.ax)
    raise AssertionError(f"the keyboard buffer never empties: {out[:20]}")


def test_letters_and_shifted_letters(posted):
    press(posted, 0x1E, 0x9E, 0x2A, 0x1E, 0x9E, 0xAA)
    assert keys(posted) == [0x1E61, 0x1E41]


def test_caps_lock_toggles_letters_and_shift_undoes_it(posted):
    press(posted, 0x3A, 0xBA, 0x10, 0x36, 0x10, 0xB6)
    assert keys(posted) == [0x1051, 0x1071]
    assert posted.mem.u8(B.KBD_FLAGS1) & keytable.KF0_CAPS


def test_ctrl_letter_gives_control_codes(posted):
    press(posted, 0x1D, 0x2E, 0xAE, 0x9D)
    assert keys(posted) == [0x2E03]


def test_alt_letter_gives_ascii_zero(posted):
    press(posted, 0x38, 0x2D, 0xAD, 0xB8)
    assert keys(posted) == [0x2D00]


def test_function_keys_and_their_shift_ctrl_alt_variants(posted):
    press(posted, 0x3B, 0x2A, 0x3B, 0xAA, 0x1D, 0x3B, 0x9D, 0x38, 0x58, 0xB8)
    assert keys(posted) == [0x3B00, 0x5400, 0x5E00, 0x8C00]


def test_grey_arrow_keys_store_ascii_e0(posted):
    press(posted, 0xE0, 0x48, 0xE0, 0xC8, 0xE0, 0x53)
    assert keys(posted) == [0x48E0, 0x53E0]


def test_num_lock_makes_the_keypad_type_digits(posted):
    press(posted, 0x47, 0x45, 0xC5, 0x47)
    assert keys(posted) == [0x4700, 0x4737]
    assert posted.mem.u8(B.KBD_LEDS) & 0x02


def test_keypad_enter_is_e00d_for_extended_reads(posted):
    press(posted, 0xE0, 0x1C)
    assert keys(posted) == [0xE00D]


def test_non_extended_read_translates_extended_keys(posted):
    press(posted, 0xE0, 0x4B, 0xE0, 0x1C)
    assert call(posted, keyboard.int16, ah=0x00).regs.ax == 0x4B00
    assert call(posted, keyboard.int16, ah=0x00).regs.ax == 0x1C0D


def test_non_extended_read_skips_keys_that_only_exist_on_enhanced_keyboards(posted):
    press(posted, 0x57, 0xD7, 0x1E)              # F11, then 'a'
    ctx = call(posted, keyboard.int16, ah=0x01)
    assert not ctx.zf and ctx.regs.ax == 0x1E61
    assert call(posted, keyboard.int16, ah=0x00).regs.ax == 0x1E61


def test_shift_flags_follow_make_and_break(posted):
    press(posted, 0x2A, 0x1D)
    assert call(posted, keyboard.int16, ah=0x02).regs.al == 0x06
    press(posted, 0xAA, 0x9D)
    assert call(posted, keyboard.int16, ah=0x02).regs.al == 0x00


def test_extended_shift_flags_tell_left_and_right_keys_apart(posted):
    press(posted, 0xE0, 0x1D, 0x38)              # right Ctrl, left Alt
    ctx = call(posted, keyboard.int16, ah=0x12)
    assert ctx.regs.al & 0x0C == 0x0C
    assert ctx.regs.ah & 0x0F == 0x06           # right Ctrl (bit 2) + left Alt (bit 1)


def test_extended_shift_flags_report_sysreq_held(posted):
    press(posted, 0x38, 0x54)
    assert call(posted, keyboard.int16, ah=0x12).regs.ah & 0x80
    press(posted, 0xD4)
    assert not call(posted, keyboard.int16, ah=0x12).regs.ah & 0x80


def test_rtc_interrupt_handler_reads_register_c_to_release_irq8(posted):
    m = posted
    m.clock.pause()          # virtual time stands still: no new periodic flag after the read
    system.cmos_write(m, 0x0B, system.cmos_read(m, 0x0B) | 0x40)   # periodic interrupt on
    m.clock.advance(10_000_000)
    m.clock.run_due()
    call(m, system.irq8)
    assert system.cmos_read(m, 0x0C) == 0


def test_ah01_on_an_empty_buffer_sets_zf(posted):
    assert call(posted, keyboard.int16, ah=0x01).zf


def test_ah00_on_an_empty_buffer_blocks(posted):
    assert call(posted, keyboard.int16, ah=0x00).result is BLOCK


def test_ah05_stores_a_key_and_reports_a_full_buffer(posted):
    results = [call(posted, keyboard.int16, ah=0x05, cx=0x1234 + i).regs.al for i in range(16)]
    assert results == [0] * 15 + [1]
    assert call(posted, keyboard.int16, ah=0x10).regs.ax == 0x1234


def test_ctrl_alt_del_requests_a_warm_reset(posted):
    press(posted, 0x1D, 0x38, 0x53)
    assert posted.mem.u16(B.RESET_FLAG) == 0x1234
    assert posted._reset_requested


def test_typed_keys_reach_a_guest_through_irq1_and_int16(boot):
    m = boot("""
        mov $0x600, %di
    1:  xor %ah, %ah
        int $0x16
        mov %ax, (%di)
        add $2, %di
        cmp $0x604, %di
        jb 1b""", input_keys=[b"\x23", b"\xa3", b"\x17", b"\x97"])
    assert m.mem.u16(OUT) == 0x2368 and m.mem.u16(OUT + 2) == 0x1769


# ------------------------------------------------------------------ timer and RTC

def test_irq0_counts_ticks_and_sets_the_midnight_flag(posted):
    posted.mem.put32(B.TICKS, B.TICKS_PER_DAY - 1)
    call(posted, system.irq0)
    assert posted.mem.u32(B.TICKS) == 0 and posted.mem.u8(B.MIDNIGHT) == 1
    ctx = call(posted, system.int1a, ah=0x00)
    assert ctx.regs.al == 1 and posted.mem.u8(B.MIDNIGHT) == 0


def test_set_tick_count_then_read_it_back(posted):
    call(posted, system.int1a, ah=0x01, cx=0x0012, dx=0x3456)
    ctx = call(posted, system.int1a, ah=0x00)
    assert (ctx.regs.cx, ctx.regs.dx) == (0x0012, 0x3456)


def test_set_rtc_time_then_read_it_back_in_bcd(posted):
    call(posted, system.int1a, ah=0x03, cx=0x2359, dx=0x4500)
    ctx = call(posted, system.int1a, ah=0x02)
    assert not ctx.cf and ctx.regs.ch == 0x23 and ctx.regs.cl == 0x59
    assert 0x45 <= ctx.regs.dh <= 0x47 and ctx.regs.dl == 0


def test_set_rtc_date_then_read_it_back(posted):
    call(posted, system.int1a, ah=0x05, cx=0x2024, dx=0x0229)
    ctx = call(posted, system.int1a, ah=0x04)
    assert not ctx.cf and (ctx.regs.cx, ctx.regs.dx) == (0x2024, 0x0229)


def test_rtc_date_comes_from_the_cmos_registers(posted):
    ctx = call(posted, system.int1a, ah=0x04)
    assert ctx.regs.ch == system.cmos_read(posted, 0x32)
    assert ctx.regs.dl == system.cmos_read(posted, 0x07)


# ------------------------------------------------------------------ robustness

SERVICES = [video.int10, disk.int13, system.int15, keyboard.int16, system.int1a,
            system.int11, system.int12]
word = st.integers(0, 0xFFFF)


@pytest.fixture(scope="module")
def fuzz_machine(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    img = write_image(d / "f.img", assemble("cli\nhlt"))
    hd = write_image(d / "h.img", bytes(512 * 64))
    m = Machine(MachineConfig(fda=DriveSpec(str(img), snapshot=True),
                              hda=DriveSpec(str(hd), snapshot=True), timeout=10))
    m.run()
    yield m
    m.close()


BDA_RANGE = (0x400, 0x500)
VIDEO_RANGE = (0xA0000, 0xC0000)
ROM_RANGE = (0xC0000, 0x100000)


def may_write(service, r) -> list[tuple[int, int]]:
    """Where a service may store for these registers: the BDA, video memory, and the
    caller's buffer (INT 15h E820 at ES:DI, INT 10h palette/state reads at ES:DX/ES:DI)."""
    ranges = [BDA_RANGE, VIDEO_RANGE]
    if service is system.int15 or service is video.int10:
        ranges += [((r["es"] << 4) + r["di"], (r["es"] << 4) + r["di"] + 0x40),
                   ((r["es"] << 4) + r["dx"], (r["es"] << 4) + r["dx"] + 0x300)]
    return ranges


def outside(before: bytes, after: bytes, allowed) -> list[int]:
    bad = []
    for at in range(0, len(before), 4096):
        if before[at:at + 4096] != after[at:at + 4096]:
            for i in range(at, min(at + 4096, len(before))):
                if before[i] != after[i] and not any(lo <= i < hi for lo, hi in allowed):
                    bad.append(i)
                    break
    return bad


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(service=st.sampled_from(SERVICES), ax=word, bx=word, cx=word, dx=word, si=word,
       di=word, bp=word, es=word, ds=word, ebx_hi=word)
def test_any_service_call_stores_only_where_it_may_and_reports_errors_in_cf_and_ah(
        fuzz_machine, service, ax, bx, cx, dx, si, di, bp, es, ds, ebx_hi):
    m = fuzz_machine
    if service is system.int15 and ax >> 8 == 0x86:
        cx = 0                     # keep waits short
    regs = dict(ax=ax, ebx=(ebx_hi << 16) | bx, cx=cx, dx=dx, si=si, di=di, bp=bp, es=es, ds=ds)
    before = m.mem.read(0, 0x110000)
    ctx = call(m, service, **regs)
    waiting = ctx.result is BLOCK
    if waiting and service is system.int15:
        # A wait of CX:DX > 0 µs blocks the vCPU (sti; hlt) and returns to the guest only once
        # its deadline passes: AH and CF are not the answer yet. (INT 16h's key reads block
        # the same way until a key comes.)
        assert ax >> 8 == 0x86 and (cx << 16 | dx) > 0
        assert "int15_86_deadline" in m.bios_state
    m.bios_state.pop("int15_86_deadline", None)
    if service is system.int1a and ax >> 8 in (0x03, 0x05):
        # The RTC keeps what it is told, BCD or not (as SeaBIOS's and a real one do); set a
        # valid time and date again, so the next example's reads check the service, not this.
        call(m, system.int1a, ax=0x0300, cx=0x1234, dx=0x5600)
        call(m, system.int1a, ax=0x0500, cx=0x2026, dx=0x1202)
    after = m.mem.read(0, 0x110000)
    r = ctx.regs
    # The firmware itself never changes, whatever a service is asked to do.
    assert after[ROM_RANGE[0]:ROM_RANGE[1]] == before[ROM_RANGE[0]:ROM_RANGE[1]]
    if not (service is system.int15 and ax >> 8 == 0x87):   # a block move writes where it is told
        assert outside(before, after, may_write(service, regs)) == [], (service.__name__, hex(ax))
    if service is system.int15 and ctx.cf:
        assert r.ah in (0x86, 0x02)                          # unsupported, or a faulting move
    if service is system.int15 and not ctx.cf and ax >> 8 not in (0x88, 0xE8) and not waiting:
        assert r.ah == 0
    if service is system.int1a:
        assert ctx.cf == (ax >> 8 not in system.RTC_FUNCTIONS) or ax >> 8 in (0x02, 0x04)
        if not ctx.cf and ax >> 8 in (0x02, 0x04):
            assert all((b >> 4) <= 9 and (b & 15) <= 9 for b in (r.ch, r.cl, r.dh))   # BCD
    if service in (system.int11, system.int12):
        assert r.ax == m.mem.u16(B.EQUIPMENT if service is system.int11 else B.MEMORY_KB)
        assert (r.bx, r.cx, r.dx, r.si, r.di) == (bx, cx, dx, si, di)   # nothing else


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(codes=st.lists(st.integers(0, 0xFF), max_size=40))
def test_random_scancodes_keep_the_keyboard_buffer_pointers_inside_the_buffer(fuzz_machine, codes):
    m = fuzz_machine
    m.request_reset = lambda: None
    for c in codes:
        keytable.handle_scancode(m, c)
        start, stop = m.mem.u16(B.KBD_BUFFER_START), m.mem.u16(B.KBD_BUFFER_STOP)
        head, tail = m.mem.u16(B.KBD_HEAD), m.mem.u16(B.KBD_TAIL)
        assert start <= head < stop and start <= tail < stop
        assert (head - start) % 2 == 0 and (tail - start) % 2 == 0
    got = keys(m)
    assert len(got) <= (m.mem.u16(B.KBD_BUFFER_STOP) - m.mem.u16(B.KBD_BUFFER_START)) // 2


# ------------------------------------------------------------------ the conformance guest

@pytest.mark.skipif(not (IMAGES / "bioscheck.img").exists(), reason="bioscheck.img not built")
@pytest.mark.parametrize("drive", ["fda", "hda"])
def test_bioscheck_passes_everything(drive, machines, tmp_path):
    from tests.conftest import disk_copy
    spec = DriveSpec(str(disk_copy(IMAGES / "bioscheck.img", tmp_path / "b.img", drive)))
    m = Machine(MachineConfig(timeout=30, until=r"bioscheck done", **{drive: spec}))
    machines.append(m)
    m.run()
    out = m.serial_text()
    assert "bioscheck done" in out
    assert "FAIL" not in out, out


def test_int15_86_with_a_zero_wait_returns_as_a_finished_wait(fuzz_machine):
    """Found by the service fuzz test: CX:DX = 0 returned CF clear with AH still 86h."""
    ctx = call(fuzz_machine, system.int15, ax=0x8600, cx=0, dx=0)
    assert not ctx.cf and ctx.regs.ah == 0
