"""INT 13h of the synthetic BIOS at the service level, on a hard disk of 300 cylinders:
CHS addresses whose cylinder needs CL bits 6-7 (>= 256), the boundaries of the disk, and
properties every call keeps whatever the registers say (status in AH, CF and the BDA
agree; nothing outside the caller's buffer changes)."""
from __future__ import annotations

import shutil
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices import bios_common as B
from hv.devices.bios_synthetic import disk
from hv.machine import DriveSpec, Machine, MachineConfig
from hv.memory import ROM_BASE, ROM_END
from tests.asm import assemble, write_image
from tests.bios_ctx import call

pytestmark = [pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils needed"),
              pytest.mark.timeout(120)]

SECTOR = 512
CYLS, HEADS, SPT = 300, 16, 63          # 147.7 MiB, sparse: only the marked sectors exist
TOTAL = CYLS * HEADS * SPT
PARTIAL = 100                           # sectors past the last whole cylinder
HUGE_CYLS = 1100                        # the second hard disk: past the 1024 CHS can address
MARKED = [(0, 0, 1), (1, 5, 17), (127, 3, 9), (128, 0, 1), (255, 15, 63), (256, 0, 1),
          (256, 0, 62), (256, 0, 63), (256, 1, 1), (257, 7, 33), (299, 15, 63)]
BUF = 0x7000
SNAPSHOT = 0x120000                     # every address a real-mode buffer can reach


def lba_of(c: int, h: int, s: int) -> int:
    return (c * HEADS + h) * SPT + s - 1


def marker(c: int, h: int, s: int) -> bytes:
    head = struct.pack("<HHH", c, h, s) + b"CHS"
    return (head * (SECTOR // len(head) + 1))[:SECTOR]


def chs_regs(c: int, h: int, s: int) -> dict[str, int]:
    """CX and DH as INT 13h wants them: CH = cylinder bits 0-7, CL bits 6-7 = cylinder
    bits 8-9, CL bits 0-5 = sector."""
    return {"cx": (c & 0xFF) << 8 | (c >> 2) & 0xC0 | s, "dh": h}


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("bigdisk")
    img = d / "c.img"
    with open(img, "wb") as f:
        f.truncate((TOTAL + PARTIAL) * SECTOR)    # and a partial cylinder CHS cannot name
        for c, h, s in MARKED:
            f.seek(lba_of(c, h, s) * SECTOR)
            f.write(marker(c, h, s))
    boot = write_image(d / "a.img", assemble("cli\nhlt"))
    floppy_b = d / "b.img"
    floppy_b.write_bytes(bytes(1_474_560))
    huge = d / "d.img"                              # more cylinders than CH/CL can name
    with open(huge, "wb") as f:
        f.truncate(HUGE_CYLS * HEADS * SPT * SECTOR)
    m = Machine(MachineConfig(fda=DriveSpec(str(boot)), fdb=DriveSpec(str(floppy_b), snapshot=True),
                              hda=DriveSpec(str(img), snapshot=True),
                              hdb=DriveSpec(str(huge), snapshot=True), mem_size=32 << 20, timeout=10))
    result = m.run()
    assert result.exit_code == 0, result.reason
    yield m
    m.close()


def read_chs(m, c, h, s, count=1, es=0, bx=BUF):
    return call(m, disk.int13, ah=0x02, al=count, dl=0x80, es=es, bx=bx, **chs_regs(c, h, s))


# ---- CHS addressing past cylinder 255 ---------------------------------------------------

@pytest.mark.parametrize("c,h,s", MARKED)
def test_chs_read_reaches_the_sector_its_cylinder_head_and_sector_name(big, c, h, s):
    big.mem.write(BUF, bytes(SECTOR))
    ctx = read_chs(big, c, h, s)
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (False, 0, 1)
    assert big.mem.read(BUF, SECTOR) == marker(c, h, s)


def test_a_chs_read_of_three_sectors_at_cylinder_256_runs_on_into_the_next_head(big):
    ctx = read_chs(big, 256, 0, 62, count=3)
    assert not ctx.cf and ctx.regs.al == 3
    assert big.mem.read(BUF, 3 * SECTOR) == marker(256, 0, 62) + marker(256, 0, 63) + marker(256, 1, 1)


def test_chs_write_at_cylinder_257_lands_in_that_sector_and_nowhere_else(big):
    d = big.disks.drives[0x80]
    target = lba_of(257, 9, 40)
    around = d.read(target - 1, 3)
    big.mem.write(0x8000, b"\x5a\xa5" * (SECTOR // 2))
    ctx = call(big, disk.int13, ah=0x03, al=1, dl=0x80, es=0, bx=0x8000, **chs_regs(257, 9, 40))
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (False, 0, 1)
    assert d.read(target, 1) == b"\x5a\xa5" * (SECTOR // 2)
    assert d.read(target - 1, 1) + d.read(target + 1, 1) == around[:SECTOR] + around[2 * SECTOR:]


def test_get_parameters_encode_cylinder_bits_8_and_9_in_cl_bits_6_and_7(big):
    r = call(big, disk.int13, ah=0x08, dl=0x80).regs
    assert r.ch | (r.cl & 0xC0) << 2 == CYLS - 1
    assert (r.cl & 0x3F, r.dh, r.dl) == (SPT, HEADS - 1, 2)


def test_get_parameters_of_a_disk_past_1024_cylinders_report_cylinder_1023(big):
    r = call(big, disk.int13, ah=0x08, dl=0x81).regs
    assert r.ch | (r.cl & 0xC0) << 2 == 1023


def test_the_second_floppy_answers_floppy_calls_and_refuses_edd(big):
    params = call(big, disk.int13, ah=0x08, dl=0x01)
    assert not params.cf and (params.regs.bl, params.regs.dl) == (4, 2)     # 1.44M, two floppies
    edd = call(big, disk.int13, ah=0x41, bx=0x55AA, dl=0x01)
    assert (edd.cf, edd.regs.ah, edd.regs.bx) == (True, 0x01, 0x55AA)


@pytest.mark.parametrize("ah", [0x00, 0x01, 0x04, 0x05, 0x08, 0x15, 0x16])
def test_every_classic_function_is_answered_for_a_floppy(big, ah):
    call(big, disk.int13, ah=0x00, dl=0x00)
    ctx = call(big, disk.int13, ah=ah, al=1, dl=0x00, cx=0x0001, dh=0)
    assert ctx.regs.ah != 0x01 or ah == 0x15        # never "invalid function" (15h: a type)
    assert not ctx.cf or ah == 0x16                 # 16h: "changed", as SeaBIOS answers


def test_edd_parameters_in_a_1x_sized_buffer_are_the_26_byte_form_with_chs_valid(big):
    big.mem.write(0x700, struct.pack("<H", 0x1A) + bytes(0x20))
    ctx = call(big, disk.int13, ah=0x48, dl=0x80, ds=0, si=0x700)
    size, flags, cyls = struct.unpack_from("<HHI", big.mem.read(0x700, 8))
    assert not ctx.cf and (size, flags, cyls) == (0x1A, 0x0002, CYLS)
    assert big.mem.read(0x71A, 4) == bytes(4)       # nothing past the 1.x form
    big.mem.write(0x700, struct.pack("<H", 0x19))
    assert call(big, disk.int13, ah=0x48, dl=0x80, ds=0, si=0x700).cf


@pytest.mark.parametrize("c", [CYLS, 511, 1023])
def test_a_cylinder_past_the_last_is_refused_with_invalid_parameter(big, c):
    big.mem.write(BUF, b"\xee" * SECTOR)
    ctx = read_chs(big, c, 0, 1)
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (True, 0x01, 0)
    assert big.mem.u8(B.HD_STATUS) == 0x01
    assert big.mem.read(BUF, SECTOR) == b"\xee" * SECTOR


def test_verify_of_the_last_sector_succeeds_and_one_more_is_refused(big):
    # The last CHS sector, then a count that runs past the disk's last sector (the partial
    # cylinder after the geometry's end is on the disk, so it is in range).
    ok = call(big, disk.int13, ah=0x04, al=1 + PARTIAL, dl=0x80, **chs_regs(CYLS - 1, HEADS - 1, SPT))
    past = call(big, disk.int13, ah=0x04, al=2 + PARTIAL, dl=0x80, **chs_regs(CYLS - 1, HEADS - 1, SPT))
    assert (ok.cf, ok.regs.ah, ok.regs.al) == (False, 0, 1 + PARTIAL)
    assert (past.cf, past.regs.ah, past.regs.al) == (True, 0x01, 0)


def test_a_read_running_past_the_last_sector_moves_nothing(big):
    n = 2 + PARTIAL
    big.mem.write(BUF, b"\xee" * n * SECTOR)
    ctx = read_chs(big, CYLS - 1, HEADS - 1, SPT, count=n)
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (True, 0x01, 0)
    assert big.mem.read(BUF, n * SECTOR) == b"\xee" * n * SECTOR


def test_a_head_past_the_last_is_refused_not_wrapped_into_the_next_cylinder(big):
    ctx = call(big, disk.int13, ah=0x02, al=1, dl=0x80, es=0, bx=BUF, cx=(1 << 8) | 1, dh=HEADS)
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (True, 0x01, 0)


def test_verify_checks_the_sectors_and_writes_nothing_to_es_bx(big):
    big.mem.write(BUF, b"\xee" * SECTOR)
    ctx = call(big, disk.int13, ah=0x04, al=1, dl=0x80, es=0, bx=BUF, **chs_regs(256, 0, 1))
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (False, 0, 1)
    assert big.mem.read(BUF, SECTOR) == b"\xee" * SECTOR


def test_a_count_of_zero_is_refused(big):
    ctx = read_chs(big, 1, 0, 1, count=0)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x01)


def test_get_parameters_leave_al_zero(big):
    assert call(big, disk.int13, ax=0x08FF, dl=0x80).regs.al == 0


def test_ah01_reports_the_floppy_status_for_the_second_floppy(big):
    big.mem.put8(B.DISKETTE_STATUS, 0x06)
    big.mem.put8(B.HD_STATUS, 0x00)
    ctx = call(big, disk.int13, ah=0x01, dl=0x01)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x06)
    big.mem.put8(B.DISKETTE_STATUS, 0x00)


def test_disk_type_of_a_hard_disk_past_65535_sectors_gives_its_count_in_cx_dx(big):
    ctx = call(big, disk.int13, ah=0x15, dl=0x80)
    assert (ctx.cf, ctx.regs.ah) == (False, 0x03)               # a hard disk
    assert (ctx.regs.cx, ctx.regs.dx) == (TOTAL >> 16, TOTAL & 0xFFFF) and TOTAL >> 16 == 4


def edd(big, ah, count, lba, flat, dap=0x700):
    big.mem.write(dap, struct.pack("<BBHHHQQ", 0x18, 0, count, 0xFFFF, 0xFFFF, lba, flat))
    return call(big, disk.int13, ah=ah, dl=0x80, ds=0, si=dap)


def test_an_edd_read_of_200_sectors_fills_exactly_its_buffer(big):
    big.mem.write(0x200000, b"\xee" * 201 * SECTOR)
    ctx = edd(big, 0x42, 200, lba_of(256, 0, 1) - 2, 0x200000)
    assert not ctx.cf
    want = big.disks.drives[0x80].read(lba_of(256, 0, 1) - 2, 200)
    assert big.mem.read(0x200000, 200 * SECTOR) == want
    assert big.mem.read(0x200000 + 200 * SECTOR, SECTOR) == b"\xee" * SECTOR


def test_an_edd_write_of_200_sectors_lands_on_its_own_sectors(big):
    data = bytes(range(256)) * 2 * 200
    big.mem.write(0x300000, data)
    ctx = edd(big, 0x43, 200, 5000, 0x300000)
    assert not ctx.cf
    assert big.disks.drives[0x80].read(5000, 200) == data


def test_an_edd_read_running_past_the_end_moves_nothing(big):
    big.mem.write(0x200000, b"\xee" * 200 * SECTOR)
    end = big.disks.drives[0x80].sectors
    ctx = edd(big, 0x42, 200, end - 150, 0x200000)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x01)
    assert big.mem.read(0x200000, 200 * SECTOR) == b"\xee" * 200 * SECTOR


def test_an_edd_packet_at_ds_si_with_a_seg_off_buffer_uses_seg_off_even_in_a_24_byte_packet(big):
    big.mem.write(0x7000, b"\xee" * SECTOR)
    big.mem.write(0x9000, b"\xee" * SECTOR)
    big.mem.write(0x1230, struct.pack("<BBHHHQQ", 0x18, 0, 1, 0x0000, 0x0700, lba_of(256, 0, 1), 0x9000))
    ctx = call(big, disk.int13, ah=0x42, dl=0x80, ds=0x0123, si=0x0000)
    assert (ctx.cf, ctx.regs.ah) == (False, 0)
    assert big.mem.read(0x7000, SECTOR) == marker(256, 0, 1)
    assert big.mem.read(0x9000, SECTOR) == b"\xee" * SECTOR      # the flat field: unused


def test_a_24_byte_packet_takes_its_64_bit_flat_address_and_nothing_after_it(big):
    big.mem.write(0x700 + 0x18, b"\x01" * 8)
    ctx = edd(big, 0x42, 1, lba_of(1, 5, 17), 0x200000)
    assert (ctx.cf, ctx.regs.ah) == (False, 0)
    assert big.mem.read(0x200000, SECTOR) == marker(1, 5, 17)


@pytest.mark.parametrize("ah", [0x42, 0x43, 0x44, 0x47])
def test_an_edd_call_at_the_first_lba_past_the_end_is_refused_even_for_zero_sectors(big, ah):
    end = big.disks.drives[0x80].sectors
    ctx = edd(big, ah, 0, end, 0x200000)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x01)
    ok = edd(big, ah, 0, end - 1, 0x200000)
    assert (ok.cf, ok.regs.ah) == (False, 0)


@pytest.mark.parametrize("ah", [0x42, 0x44])
def test_an_edd_read_or_verify_ending_at_the_last_sector_succeeds_and_one_more_is_refused(big, ah):
    end = big.disks.drives[0x80].sectors
    ok = edd(big, ah, 2, end - 2, 0x200000)
    assert (ok.cf, ok.regs.ah, big.mem.u16(0x702)) == (False, 0, 2)
    past = edd(big, ah, 3, end - 2, 0x200000)
    assert (past.cf, past.regs.ah, big.mem.u16(0x702)) == (True, 0x01, 0)    # 0 blocks moved


@pytest.mark.parametrize("ah", [0x44, 0x47])
def test_edd_verify_and_seek_answer_ok_and_leave_the_buffer_alone(big, ah):
    big.mem.write(0x200000, b"\xee" * 4 * SECTOR)
    ctx = edd(big, ah, 4, lba_of(256, 0, 1), 0x200000)
    assert (ctx.cf, ctx.regs.ah, big.mem.u16(0x702)) == (False, 0, 4)
    assert big.mem.read(0x200000, 4 * SECTOR) == b"\xee" * 4 * SECTOR


def test_a_failed_edd_call_zeroes_the_packets_block_count_and_nothing_else(big):
    end = big.disks.drives[0x80].sectors
    big.mem.write(0x700, struct.pack("<BBHHHQQ", 0x18, 0, 3, 0x1234, 0x0056, end, 0) + b"\xee" * 8)
    ctx = call(big, disk.int13, ah=0x42, dl=0x80, ds=0, si=0x700)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x01)
    assert big.mem.read(0x700, 0x20) == struct.pack("<BBHHHQQ", 0x18, 0, 0, 0x1234, 0x0056, end, 0) \
        + b"\xee" * 8


def test_an_edd_read_of_zero_sectors_succeeds_and_moves_nothing(big):
    big.mem.write(0x200000, b"\xee" * SECTOR)
    ctx = edd(big, 0x42, 0, 0, 0x200000)
    assert (ctx.cf, ctx.regs.ah) == (False, 0)
    assert big.mem.read(0x200000, SECTOR) == b"\xee" * SECTOR


def test_edd_drive_parameters_land_at_ds_si(big):
    big.mem.write(0x1230, struct.pack("<H", 0x1E) + bytes(0x1C))
    ctx = call(big, disk.int13, ah=0x48, dl=0x80, ds=0x0120, si=0x0030)
    assert (ctx.cf, ctx.regs.ah) == (False, 0)
    size, _, cyls, heads, spt, total, bps = struct.unpack("<HHIIIQH", big.mem.read(0x1230, 0x1A))
    assert (size, cyls, heads, spt, total, bps) == (0x1E, CYLS, HEADS, SPT, TOTAL + PARTIAL, SECTOR)


@pytest.mark.parametrize("ah", [0x09, 0x0C, 0x0D, 0x10, 0x11, 0x14, 0x45, 0x49])
def test_the_hard_disk_housekeeping_functions_succeed(big, ah):
    # init parameters, seek, alternate reset, test ready, recalibrate, diagnostics, lock,
    # event handler: SeaBIOS answers each with success.
    ctx = call(big, disk.int13, ah=ah, dl=0x80)
    assert (ctx.cf, ctx.regs.ah) == (False, 0)


def test_the_status_of_a_call_on_the_second_floppy_lands_in_the_diskette_status_byte(big):
    big.mem.put8(B.HD_STATUS, 0x00)
    ctx = call(big, disk.int13, ah=0x16, dl=0x01)             # "disk changed"
    assert (ctx.cf, ctx.regs.ah) == (True, 0x06)
    assert (big.mem.u8(B.DISKETTE_STATUS), big.mem.u8(B.HD_STATUS)) == (0x06, 0x00)
    call(big, disk.int13, ah=0x00, dl=0x01)
    assert big.mem.u8(B.DISKETTE_STATUS) == 0x00


def test_int_40h_the_floppy_vector_a_disk_bios_moves_is_served_by_int_13h(big):
    from hv.devices.bios_synthetic import HC_VECTOR
    assert big.hypercalls.lookup(HC_VECTOR + 0x40)[1] is disk.int13


def test_edd_parameters_asked_into_the_rom_window_leave_the_rom_unchanged(big):
    # Found by the mutation run's Hypothesis database: F000:FFFC took the 30-byte result
    # and the BIOS model byte at F000:FFFE was overwritten.
    rom = big.mem.read(ROM_BASE, ROM_END - ROM_BASE)
    for ds, si in ((0xFFFF, 0x000C), (0xF000, 0xFFF0), (0xC000, 0x0000)):
        call(big, disk.int13, ah=0x48, dl=0x80, ds=ds, si=si)
    assert big.mem.read(ROM_BASE, ROM_END - ROM_BASE) == rom


def test_a_failed_edd_read_whose_packet_lies_in_rom_leaves_the_rom_unchanged(big):
    rom = big.mem.read(ROM_BASE, ROM_END - ROM_BASE)
    at = next(a for a in range(0xF0000, 0x100000 - 0x18, 2)
              if big.mem.u8(a) in (0x10, 0x18) and big.mem.u16(a + 2) != 0
              and int.from_bytes(big.mem.read(a + 8, 8), "little") >= big.disks.drives[0x80].sectors)
    ctx = call(big, disk.int13, ah=0x42, dl=0x80, ds=at >> 4, si=at & 0xF)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x01)
    assert big.mem.read(ROM_BASE, ROM_END - ROM_BASE) == rom


def test_the_partial_cylinder_at_the_end_is_not_reachable_through_chs(big):
    ctx = read_chs(big, CYLS, 0, 1)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x01)
    assert big.disks.drives[0x80].sectors == TOTAL + PARTIAL


# ---- status codes, as SeaBIOS numbers them ------------------------------------------------------

def test_a_count_of_129_sectors_is_refused_and_128_is_read(big):
    over = read_chs(big, 0, 0, 1, count=129)
    assert (over.cf, over.regs.ah, over.regs.al) == (True, 0x01, 0)
    ok = read_chs(big, 0, 0, 1, count=128, es=0x1000, bx=0)
    assert (ok.cf, ok.regs.ah, ok.regs.al) == (False, 0x00, 128)


def test_a_write_to_a_read_only_disk_fails_with_03h(big, monkeypatch):
    monkeypatch.setattr(big.disks.drives[0x80], "readonly", True)
    ctx = call(big, disk.int13, ah=0x03, al=1, dl=0x80, es=0, bx=0x8000, **chs_regs(1, 0, 1))
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (True, 0x03, 0)
    assert big.mem.u8(B.HD_STATUS) == 0x03


@pytest.mark.parametrize("code,status", [("WRITE_PROTECTED", 0x03), ("BAD_BUFFER", 0x09),
                                         ("NO_DRIVE", 0x01), ("IO_ERROR", 0x01)])
def test_a_disk_error_during_the_transfer_maps_to_its_int13_status(big, monkeypatch, code, status):
    from hv.devices import disk_store

    def fail(*args):
        raise disk_store.DiskError(getattr(disk_store, code), "injected")
    monkeypatch.setattr(big.disks.drives[0x80], "read", fail)
    ctx = read_chs(big, 1, 0, 1)
    assert (ctx.cf, ctx.regs.ah, ctx.regs.al) == (True, status, 0)


def test_disk_changed_on_a_floppy_is_06h_and_not_removable_is_b2h(big):
    changed = call(big, disk.int13, ah=0x16, dl=0x00)
    fixed = call(big, disk.int13, ah=0x46, dl=0x80)
    assert (changed.cf, changed.regs.ah) == (True, 0x06)
    assert (fixed.cf, fixed.regs.ah) == (True, 0xB2)


# ---- the ROM and the host's memory ---------------------------------------------------------

def test_a_read_into_the_bios_rom_leaves_the_rom_unchanged(big):
    rom = big.mem.read(ROM_BASE, ROM_END - ROM_BASE)
    ctx = read_chs(big, 255, 15, 63, count=4, es=0xF000, bx=0x0000)
    assert not ctx.cf
    assert big.mem.read(ROM_BASE, ROM_END - ROM_BASE) == rom


def test_a_read_that_straddles_the_start_of_the_rom_lands_below_it_only(big):
    rom = big.mem.read(ROM_BASE, ROM_END - ROM_BASE)
    ctx = read_chs(big, 256, 0, 62, count=2, es=0xBFE0, bx=0x0000)   # 0xBFE00-0xC0200
    assert not ctx.cf and ctx.regs.al == 2
    assert big.mem.read(0xBFE00, SECTOR) == marker(256, 0, 62)
    assert big.mem.read(ROM_BASE, ROM_END - ROM_BASE) == rom


def test_an_edd_read_of_4_mib_holds_only_a_bounded_piece_in_host_memory(big):
    count = 8192                                   # 4 MiB into extended memory at 1 MiB
    dap = 0x700
    big.mem.write(dap, struct.pack("<BBHHHQQ", 0x18, 0, count, 0xFFFF, 0xFFFF, lba_of(128, 0, 1),
                                   0x100000))
    big.mem.write(0x100000, b"\xee" * count * SECTOR)
    tracemalloc.start()
    try:
        ctx = call(big, disk.int13, ah=0x42, dl=0x80, ds=0, si=dap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not ctx.cf and ctx.regs.ah == 0
    assert peak < 512 * 1024, f"peak {peak} bytes of host memory for a {count * SECTOR}-byte read"
    assert big.mem.read(0x100000, SECTOR) == marker(128, 0, 1)
    moved = big.mem.read(0x100000, count * SECTOR)
    assert moved == big.disks.drives[0x80].read(lba_of(128, 0, 1), count)


def test_an_edd_read_into_memory_that_does_not_exist_fails_with_a_boundary_error(big):
    dap = 0x700
    big.mem.write(dap, struct.pack("<BBHHHQQ", 0x18, 0, 0x7F, 0xFFFF, 0xFFFF, 0, (32 << 20) - 0x200))
    ctx = call(big, disk.int13, ah=0x42, dl=0x80, ds=0, si=dap)
    assert (ctx.cf, ctx.regs.ah) == (True, 0x09)
    assert big.mem.u16(dap + 2) == 0


# ---- properties of every call ----------------------------------------------------------------

def buffer_ranges(m, ah: int, regs) -> list[tuple[int, int]]:
    """Where INT 13h may write for this call: the caller's buffer, the packet's count
    field, the EDD result buffer, the two BDA status bytes."""
    ranges = [(B.DISKETTE_STATUS, 1), (B.HD_STATUS, 1)]
    if ah == 0x02:
        ranges.append(((regs["es"] << 4) + regs["bx"], regs["al"] * SECTOR))
    elif ah in (0x42, 0x43, 0x44, 0x47):
        pkt = (regs["ds"] << 4) + regs["si"]
        ranges.append((pkt + 2, 2))
        size, count, off, seg = struct.unpack("<BxHHH", m.mem.read(pkt, 8))
        flat = m.mem.u64(pkt + 16) if size >= 0x18 else 0
        buf = flat if (seg, off) == (0xFFFF, 0xFFFF) and size >= 0x18 else (seg << 4) + off
        if ah == 0x42:
            ranges.append((buf, count * SECTOR))
    elif ah == 0x48:
        ranges.append(((regs["ds"] << 4) + regs["si"], 0x1E))
    return ranges


def changed_outside(before: bytes, after: bytes, allowed: list[tuple[int, int]]) -> list[int]:
    """Offsets of differing 4 KiB blocks that no allowed range touches."""
    bad = []
    for at in range(0, len(before), 4096):
        if before[at:at + 4096] != after[at:at + 4096]:
            if not any(lo < at + 4096 and at < lo + n for lo, n in allowed):
                bad.append(at)
    return bad


FUNCTIONS = [0x00, 0x01, 0x02, 0x04, 0x05, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x11, 0x14, 0x15, 0x16,
             0x41, 0x42, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x06, 0x17, 0x4E, 0xFF]
word = st.integers(0, 0xFFFF)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ah=st.sampled_from(FUNCTIONS), al=st.integers(0, 0xFF),
       chs=st.tuples(st.integers(0, 1023), st.integers(0, 0xFF), st.integers(0, 63)),
       dl=st.sampled_from([0x00, 0x01, 0x80, 0x81, 0xE0]), es=word, bx=word, ds=word, si=word,
       packet=st.tuples(st.sampled_from([0x10, 0x18, 0x0F, 0x1E]), st.integers(0, 300),
                        word, word, st.integers(0, TOTAL + 10)))
def test_any_call_reports_one_status_in_ah_cf_and_the_bda_and_writes_only_its_buffer(
        big, ah, al, chs, dl, es, bx, ds, si, packet):
    m = big
    c, h, s = chs
    size, count, off, seg, lba = packet
    if (ds << 4) + si + 0x20 <= 0x100000:
        m.mem.write((ds << 4) + si, struct.pack("<BBHHHQQ", size, 0, count, off, seg, lba, 0))
    regs = dict(ah=ah, al=al, dl=dl, es=es, bx=bx, ds=ds, si=si, **chs_regs(c, h, s))
    allowed = buffer_ranges(m, ah, regs)
    before = m.mem.read(0, SNAPSHOT)
    disk_before = m.disks.drives[0x80].read(0, 16)
    ctx = call(m, disk.int13, **regs)
    r = ctx.regs
    status = m.mem.u8(B.HD_STATUS if dl & 0x80 else B.DISKETTE_STATUS)
    # One status, three places: CF set exactly when the BDA holds an error; AH holds it
    # too, except for the calls whose AH is an answer (15h: drive type, 41h: EDD version).
    assert ctx.cf == (status != 0)
    if ah not in (0x15, 0x41) or ctx.cf:
        assert r.ah == status
    if ah in (0x02, 0x04) and ctx.cf and dl in m.disks.drives:
        assert r.al == 0                          # sectors transferred: none
    if ah == 0x02 and not ctx.cf:
        assert r.al == al and 0 < al <= 128
        buf = (es << 4) + bx
        want = m.disks.drives[dl].read(m.disks.drives[dl].chs_to_lba(c, h, s), al)
        if buf + len(want) <= ROM_BASE:           # (the part in ROM is dropped: checked below)
            assert m.mem.read(buf, len(want)) == want
    if dl not in m.disks.drives and ah != 0x15:
        assert ctx.cf and r.ah == 0x01
    after = m.mem.read(0, SNAPSHOT)
    assert after[ROM_BASE:ROM_END] == before[ROM_BASE:ROM_END]
    assert changed_outside(before, after, allowed) == []
    assert m.disks.drives[0x80].read(0, 16) == disk_before   # this table never writes
