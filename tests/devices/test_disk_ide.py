"""Register-level tests of the IDE/ATA channel, driven through port I/O as a
polling or interrupt-driven driver would."""
from __future__ import annotations

import functools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices.disk_ide import IdeChannel
from hv.devices.disk_store import IO_ERROR, SECTOR, Disk, DiskError
from tests.devices.harness import Harness, RecordingIrq

DATA, ERROR, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE, STATUS = range(0x1F0, 0x1F8)
FEATURES, COMMAND = ERROR, STATUS
ALT_STATUS = DEVICE_CONTROL = 0x3F6

BSY, DRDY, DF, DSC, DRQ, ERR = 0x80, 0x40, 0x20, 0x10, 0x08, 0x01
ABRT, IDNF, UNC = 0x04, 0x10, 0x40
NIEN, SRST = 0x02, 0x04
READY = DRDY | DSC

IMAGE_SECTORS = 1100     # more than 256 (a count-0 read) and than one 1008-sector cylinder


@functools.lru_cache(maxsize=None)      # made once: every test's image starts from it
def pattern(sectors: int, seed: int = 0) -> bytes:
    return bytes(((i * 7 + (i // SECTOR) * 13 + seed) & 0xFF) for i in range(sectors * SECTOR))


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "hd.img"
    p.write_bytes(pattern(IMAGE_SECTORS))
    return p


def make(path, readonly=False, slave=None):
    irq = RecordingIrq()
    disks = [Disk(path, "hd", readonly=readonly), Disk(slave, "hd") if slave else None]
    ch = IdeChannel(irq, drives=tuple(disks))
    return Harness(ch), ch, irq


@pytest.fixture
def ide(image):
    h, ch, irq = make(image)
    yield h, ch, irq
    for d in ch.drives:
        if d is not None:
            d.close()


def file_sectors(path, lba, count):
    data = path.read_bytes()[lba * SECTOR:(lba + count) * SECTOR]
    return data + bytes(count * SECTOR - len(data))


def lba_command(h, cmd, lba, count, dev=0):
    h.outb(DEVICE, 0xE0 | (dev << 4) | ((lba >> 24) & 0x0F))
    h.outb(COUNT, count & 0xFF)
    h.outb(LBA_LOW, lba & 0xFF)
    h.outb(LBA_MID, (lba >> 8) & 0xFF)
    h.outb(LBA_HIGH, (lba >> 16) & 0xFF)
    h.outb(COMMAND, cmd)


def chs_command(h, cmd, c, hd, s, count):
    h.outb(DEVICE, 0xA0 | hd)
    h.outb(COUNT, count)
    h.outb(LBA_LOW, s)
    h.outb(LBA_MID, c & 0xFF)
    h.outb(LBA_HIGH, c >> 8)
    h.outb(COMMAND, cmd)


def read_words(h, n=256) -> bytes:
    return b"".join(h.inw(DATA).to_bytes(2, "little") for _ in range(n))


def write_words(h, data: bytes) -> None:
    for i in range(0, len(data), 2):
        h.outw(DATA, int.from_bytes(data[i:i + 2], "little"))


def identify(h) -> bytes:
    h.outb(DEVICE, 0xA0)
    h.outb(COMMAND, 0xEC)
    return read_words(h)


def word(raw: bytes, n: int) -> int:
    return int.from_bytes(raw[2 * n:2 * n + 2], "little")


def ata_text(raw: bytes, first: int, last: int) -> str:
    b = raw[2 * first:2 * (last + 1)]
    return bytes(x for i in range(0, len(b), 2) for x in (b[i + 1], b[i])).decode().rstrip()


# ---- power-on state -----------------------------------------------------------

def test_power_on_registers_hold_the_ata_signature(ide):
    h, *_ = ide
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH)) == (1, 1, 0, 0)
    assert h.inb(STATUS) == READY
    assert h.inb(ERROR) == 0x01


def test_the_primary_channel_sits_at_1f0_3f6_on_irq_14(ide):
    _, ch, _ = ide
    assert [(r.base, r.length, r.bias) for r in ch.ports] == [(0x1F0, 8, 0), (0x3F6, 1, 8)]
    assert ch.irq == 14
    sec = IdeChannel(None, (None, None), name="ide1", base=0x170, ctrl=0x376)
    assert sec.irq == 15 and sec.ports[1].base == 0x376 and sec.name == "ide1"


# ---- IDENTIFY DEVICE ----------------------------------------------------------

def test_identify_strings_are_byte_swapped_as_ata_requires(ide):
    h, *_ = ide
    raw = identify(h)
    assert ata_text(raw, 27, 46) == "HV HARDDISK"
    assert ata_text(raw, 23, 26) == "1.0"
    assert ata_text(raw, 10, 19) == "HV-IDE0-0"
    assert raw[54:56] == b"VH"       # first character in the high byte


def test_identify_reports_capacity_and_default_geometry(ide):
    h, ch, _ = ide
    raw = identify(h)
    disk = ch.drives[0]
    assert word(raw, 60) | word(raw, 61) << 16 == disk.sectors
    assert (word(raw, 1), word(raw, 3), word(raw, 6)) == (disk.geometry.cylinders, 16, 63)
    assert word(raw, 53) & 1
    assert (word(raw, 54), word(raw, 55), word(raw, 56)) == (disk.geometry.cylinders, 16, 63)
    assert word(raw, 57) | word(raw, 58) << 16 == disk.geometry.total


def test_identify_advertises_lba_multiple_and_flush_cache(ide):
    h, *_ = ide
    raw = identify(h)
    assert word(raw, 0) == 0x0040
    assert word(raw, 47) == 0x8010
    assert word(raw, 49) & (1 << 9)
    assert word(raw, 83) & 0x1000 and word(raw, 86) & 0x1000
    assert word(raw, 83) >> 14 == 1 and word(raw, 80) & (1 << 6)


def test_identify_integrity_word_makes_the_bytes_sum_to_zero(ide):
    h, *_ = ide
    raw = identify(h)
    assert raw[510] == 0xA5
    assert sum(raw) % 256 == 0


def test_identify_interrupts_with_drq_and_drops_drq_after_the_last_word(ide):
    h, _, irq = ide
    h.outb(DEVICE, 0xA0)
    h.outb(COMMAND, 0xEC)
    assert irq.level and irq.edges == 1
    assert h.inb(ALT_STATUS) == READY | DRQ
    read_words(h)
    assert h.inb(ALT_STATUS) == READY
    assert irq.edges == 1


def test_identify_packet_device_aborts_on_an_ata_disk(ide):
    h, _, irq = ide
    h.outb(DEVICE, 0xA0)
    h.outb(COMMAND, 0xA1)
    assert h.inb(STATUS) == DRDY | ERR
    assert h.inb(ERROR) == ABRT
    assert irq.edges == 1


def test_an_unknown_command_aborts(ide):
    h, *_ = ide
    h.outb(COMMAND, 0x24)            # READ SECTORS EXT: no LBA48
    assert h.inb(STATUS) & ERR
    assert h.inb(ERROR) == ABRT


# ---- READ SECTORS -------------------------------------------------------------

def test_read_sectors_in_lba_mode_returns_the_image_contents(ide, image):
    h, *_ = ide
    lba_command(h, 0x20, 5, 3)
    data = b"".join(read_words(h) for _ in range(3))
    assert data == file_sectors(image, 5, 3)
    assert h.inb(STATUS) == READY


def test_read_sectors_interrupts_once_per_sector(ide):
    h, _, irq = ide
    lba_command(h, 0x20, 0, 3)
    for n in range(1, 4):
        assert irq.edges == n
        assert h.inb(STATUS) == READY | DRQ    # clears the interrupt
        assert not irq.level
        read_words(h)
    assert irq.edges == 3 and not irq.level


def test_reading_past_the_file_end_inside_the_capacity_gives_zeros(ide):
    h, ch, _ = ide
    lba_command(h, 0x20, IMAGE_SECTORS + 1, 1)
    assert read_words(h) == bytes(SECTOR)


def test_registers_point_past_the_transfer_after_a_read(ide):
    h, *_ = ide
    lba_command(h, 0x20, 0x10, 2)
    read_words(h, 512)
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID)) == (0, 0x12, 0)


def test_sector_count_zero_means_256_sectors(ide):
    h, _, irq = ide
    lba_command(h, 0x20, 0, 0)
    blocks = 0
    for _ in range(300):                        # bounded: a DRQ that never drops fails
        if not h.inb(STATUS) & DRQ:
            break
        read_words(h)
        blocks += 1
    assert blocks == 256 and irq.edges == 256


def test_read_sectors_in_chs_mode_uses_the_default_translation(ide, image):
    h, *_ = ide
    chs_command(h, 0x20, 0, 1, 2, 1)          # (0*16 + 1)*63 + 2 - 1 = 64
    assert read_words(h) == file_sectors(image, 64, 1)


def test_initialize_device_parameters_sets_the_chs_translation(ide, image):
    h, *_ = ide
    h.outb(DEVICE, 0xA0 | 3)                  # 4 heads
    h.outb(COUNT, 17)                         # 17 sectors per track
    h.outb(COMMAND, 0x91)
    assert h.inb(STATUS) == READY
    chs_command(h, 0x20, 0, 1, 1, 1)          # (0*4 + 1)*17 + 0 = 17
    assert read_words(h) == file_sectors(image, 17, 1)
    raw = identify(h)
    assert (word(raw, 55), word(raw, 56)) == (4, 17)


def test_initialize_device_parameters_with_zero_sectors_aborts_and_chs_reads_fail(ide):
    h, *_ = ide
    h.outb(DEVICE, 0xA0 | 15)
    h.outb(COUNT, 0)
    h.outb(COMMAND, 0x91)
    assert h.inb(ERROR) == ABRT
    chs_command(h, 0x20, 0, 0, 1, 1)
    assert h.inb(STATUS) & ERR and h.inb(ERROR) == IDNF


def test_a_chs_sector_number_of_zero_is_not_found(ide):
    h, *_ = ide
    chs_command(h, 0x20, 0, 0, 0, 1)
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == IDNF


def test_reading_beyond_the_capacity_fails_with_idnf(ide):
    h, ch, irq = ide
    lba_command(h, 0x20, ch.drives[0].sectors, 1)
    assert h.inb(STATUS) == DRDY | ERR
    assert h.inb(ERROR) == IDNF
    assert irq.edges == 1


def test_a_read_running_off_the_end_fails_at_the_first_missing_sector(ide):
    h, ch, _ = ide
    last = ch.drives[0].sectors - 1
    lba_command(h, 0x20, last, 2)
    read_words(h)
    assert h.inb(STATUS) & ERR and h.inb(ERROR) == IDNF
    assert h.inb(LBA_LOW) | h.inb(LBA_MID) << 8 == last + 1


# ---- the last sector, from both directions ---------------------------------------

def test_the_last_sector_reads_back_its_data_without_error(ide, image):
    h, ch, irq = ide
    last = ch.drives[0].sectors - 1
    lba_command(h, 0x20, last, 1)
    assert h.inb(STATUS) == READY | DRQ and irq.edges == 1
    assert read_words(h) == file_sectors(image, last, 1)
    assert h.inb(STATUS) == READY
    assert h.inb(LBA_LOW) | h.inb(LBA_MID) << 8 == last + 1


def test_a_read_ending_exactly_at_the_last_sector_completes(ide, image):
    h, ch, _ = ide
    last = ch.drives[0].sectors - 1
    lba_command(h, 0x20, last - 3, 4)
    data = b"".join(read_words(h) for _ in range(4))
    assert data == file_sectors(image, last - 3, 4)
    assert h.inb(STATUS) == READY and h.inb(ERROR) == 0


def test_the_last_sector_takes_a_write(ide, image):
    h, ch, irq = ide
    last = ch.drives[0].sectors - 1
    data = pattern(1, seed=31)
    lba_command(h, 0x30, last, 1)
    assert h.inb(ALT_STATUS) == READY | DRQ
    write_words(h, data)
    assert h.inb(STATUS) == READY and irq.edges == 1
    h.outb(COMMAND, 0xE7)
    assert file_sectors(image, last, 1) == data


def test_a_write_multiple_ending_exactly_at_the_last_sector_completes(ide, image):
    h, ch, _ = ide
    last = ch.drives[0].sectors - 1
    h.outb(COUNT, 4)
    h.outb(COMMAND, 0xC6)
    data = pattern(4, seed=8)
    lba_command(h, 0xC5, last - 3, 4)
    write_words(h, data)
    assert h.inb(STATUS) == READY
    h.outb(COMMAND, 0xE7)
    assert file_sectors(image, last - 3, 4) == data


@pytest.mark.parametrize("command", [0x20, 0x30, 0x40, 0xC4, 0xC5])
def test_the_first_sector_past_the_end_is_refused_with_err_and_idnf(ide, command):
    h, ch, irq = ide
    end = ch.drives[0].sectors
    h.outb(COUNT, 4)
    h.outb(COMMAND, 0xC6)                     # multiple mode, for C4h/C5h
    h.inb(STATUS)
    lba_command(h, command, end, 1)
    assert h.inb(ALT_STATUS) == DRDY | ERR     # no DRQ: not a byte moves
    assert h.inb(ERROR) == IDNF
    assert irq.level
    assert h.inb(LBA_LOW) | h.inb(LBA_MID) << 8 == end


def test_the_verify_of_the_last_sector_succeeds(ide):
    h, ch, _ = ide
    lba_command(h, 0x40, ch.drives[0].sectors - 1, 1)
    assert h.inb(STATUS) == READY and h.inb(ERROR) == 0


def test_a_host_read_error_reports_unc(ide, monkeypatch):
    h, ch, _ = ide

    def broken(lba, count):
        raise DiskError(IO_ERROR, "EIO")
    monkeypatch.setattr(ch.drives[0], "read", broken)
    lba_command(h, 0x20, 0, 1)
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == UNC


def test_32_bit_data_reads_return_two_words(ide, image):
    h, *_ = ide
    lba_command(h, 0x20, 2, 1)
    data = b"".join(h.bus.read(DATA, 4).to_bytes(4, "little") for _ in range(128))
    assert data == file_sectors(image, 2, 1)
    assert h.inb(STATUS) == READY


# ---- WRITE SECTORS ------------------------------------------------------------

def test_write_sectors_sets_drq_at_once_without_an_interrupt(ide):
    h, _, irq = ide
    lba_command(h, 0x30, 3, 2)
    assert h.inb(ALT_STATUS) == READY | DRQ
    assert irq.edges == 0


def test_write_sectors_interrupts_after_every_block_including_the_last(ide):
    h, _, irq = ide
    lba_command(h, 0x30, 3, 2)
    write_words(h, bytes(SECTOR))
    assert irq.edges == 1 and h.inb(STATUS) == READY | DRQ
    write_words(h, bytes(SECTOR))
    assert irq.edges == 2 and h.inb(STATUS) == READY


def test_write_sectors_in_lba_mode_reaches_the_image(ide, image):
    h, ch, _ = ide
    data = pattern(2, seed=99)
    lba_command(h, 0x30, 7, 2)
    write_words(h, data)
    h.outb(COMMAND, 0xE7)
    assert file_sectors(image, 7, 2) == data
    assert file_sectors(image, 6, 1) == pattern(IMAGE_SECTORS)[6 * SECTOR:7 * SECTOR]


def test_write_sectors_in_chs_mode_reaches_the_image(ide, image):
    h, *_ = ide
    data = pattern(1, seed=5)
    chs_command(h, 0x30, 0, 0, 10, 1)         # lba 9
    write_words(h, data)
    h.outb(COMMAND, 0xE7)
    assert file_sectors(image, 9, 1) == data


def test_32_bit_data_writes_store_two_words(ide, image):
    h, *_ = ide
    data = pattern(1, seed=42)
    lba_command(h, 0x30, 1, 1)
    for i in range(0, SECTOR, 4):
        h.bus.write(DATA, 4, int.from_bytes(data[i:i + 4], "little"))
    h.outb(COMMAND, 0xE7)
    assert file_sectors(image, 1, 1) == data


def test_a_read_only_disk_aborts_writes_and_keeps_the_file(image):
    h, ch, irq = make(image, readonly=True)
    before = image.read_bytes()
    lba_command(h, 0x30, 0, 1)
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == ABRT
    write_words(h, bytes(SECTOR))
    assert image.read_bytes() == before
    ch.drives[0].close()


def test_writing_beyond_the_capacity_fails_with_idnf_before_any_data(ide):
    h, ch, _ = ide
    lba_command(h, 0x30, ch.drives[0].sectors + 5, 1)
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == IDNF


def test_flush_cache_calls_fsync(ide, monkeypatch):
    h, ch, irq = ide
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    lba_command(h, 0x30, 0, 1)
    write_words(h, bytes(SECTOR))
    h.inb(STATUS)
    assert calls == []
    h.outb(COMMAND, 0xE7)
    assert len(calls) == 1
    assert h.inb(STATUS) == READY and irq.edges == 2


def test_a_failing_flush_reports_a_device_fault(ide, monkeypatch):
    h, ch, _ = ide

    def broken():
        raise DiskError(IO_ERROR, "EIO")
    monkeypatch.setattr(ch.drives[0], "flush", broken)
    h.outb(COMMAND, 0xE7)
    assert h.inb(STATUS) == DRDY | DF | ERR and h.inb(ERROR) == ABRT


# ---- multiple mode ------------------------------------------------------------

def test_read_multiple_without_set_multiple_aborts(ide):
    h, *_ = ide
    lba_command(h, 0xC4, 0, 4)
    assert h.inb(ERROR) == ABRT


@pytest.mark.parametrize("count", [3, 32])
def test_set_multiple_mode_rejects_unsupported_block_sizes(ide, count):
    h, *_ = ide
    h.outb(COUNT, count)
    h.outb(COMMAND, 0xC6)
    assert h.inb(STATUS) & ERR and h.inb(ERROR) == ABRT


def test_read_multiple_transfers_a_block_per_interrupt(ide, image):
    h, ch, irq = ide
    h.outb(COUNT, 4)
    h.outb(COMMAND, 0xC6)
    assert h.inb(STATUS) == READY
    lba_command(h, 0xC4, 0, 10)
    data = b""
    blocks = 0
    for _ in range(10):
        if not h.inb(STATUS) & DRQ:
            break
        blocks += 1
        data += read_words(h, 256 * min(4, 10 - 4 * (blocks - 1)))
    assert blocks == 3 and irq.edges == 1 + 3      # SET MULTIPLE's interrupt, then one per block
    assert data == file_sectors(image, 0, 10)
    assert word(identify(h), 59) == 0x0104


def test_write_multiple_commits_a_block_per_interrupt(ide, image):
    h, _, irq = ide
    h.outb(COUNT, 8)
    h.outb(COMMAND, 0xC6)
    h.inb(STATUS)
    data = pattern(9, seed=3)
    lba_command(h, 0xC5, 20, 9)
    write_words(h, data[:8 * SECTOR])
    assert h.inb(STATUS) == READY | DRQ and irq.edges == 2
    write_words(h, data[8 * SECTOR:])
    assert h.inb(STATUS) == READY and irq.edges == 3
    h.outb(COMMAND, 0xE7)
    assert file_sectors(image, 20, 9) == data


# ---- non-data commands --------------------------------------------------------

def test_read_verify_completes_with_an_interrupt_and_no_data(ide):
    h, _, irq = ide
    lba_command(h, 0x40, 0, 8)
    assert irq.edges == 1
    assert h.inb(STATUS) == READY


def test_read_verify_beyond_the_capacity_fails_with_idnf(ide):
    h, ch, _ = ide
    lba_command(h, 0x40, ch.drives[0].sectors - 1, 4)
    assert h.inb(STATUS) & ERR and h.inb(ERROR) == IDNF


def test_seek_outside_the_disk_fails_with_idnf(ide):
    h, ch, _ = ide
    lba_command(h, 0x70, ch.drives[0].sectors, 0)
    assert h.inb(ERROR) == IDNF


def test_check_power_mode_follows_standby_and_idle(ide):
    h, *_ = ide
    h.outb(COMMAND, 0xE0)                     # STANDBY IMMEDIATE
    h.outb(COMMAND, 0xE5)
    assert h.inb(COUNT) == 0x00
    h.outb(COMMAND, 0xE1)                     # IDLE IMMEDIATE
    h.outb(COMMAND, 0xE5)
    assert h.inb(COUNT) == 0xFF


def test_set_features_disables_the_write_cache(ide):
    h, *_ = ide
    h.outb(FEATURES, 0x82)
    h.outb(COMMAND, 0xEF)
    assert h.inb(STATUS) == READY
    assert not word(identify(h), 85) & 0x20


def test_set_features_rejects_a_dma_transfer_mode(ide):
    h, *_ = ide
    h.outb(FEATURES, 0x03)
    h.outb(COUNT, 0x42)                       # UDMA 2
    h.outb(COMMAND, 0xEF)
    assert h.inb(ERROR) == ABRT


def test_execute_device_diagnostic_posts_the_signature_and_code_01(ide):
    h, _, irq = ide
    lba_command(h, 0x20, 0x123, 5)
    h.inb(STATUS)
    h.outb(COMMAND, 0x90)
    assert irq.level
    assert h.inb(ERROR) == 0x01
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH)) == (1, 1, 0, 0)
    assert h.inb(DEVICE) & 0x10 == 0 and h.inb(STATUS) == READY


# ---- interrupts and the control block -----------------------------------------

def test_reading_status_clears_the_interrupt_but_alternate_status_does_not(ide):
    h, _, irq = ide
    h.outb(COMMAND, 0xE5)
    assert irq.level
    h.inb(ALT_STATUS)
    assert irq.level
    h.inb(STATUS)
    assert not irq.level


def test_nien_masks_the_interrupt_line(ide):
    h, _, irq = ide
    h.outb(DEVICE_CONTROL, NIEN)
    h.outb(COMMAND, 0xE5)
    assert not irq.level
    h.outb(DEVICE_CONTROL, 0)
    assert irq.level                          # still pending: the line follows when unmasked


def test_srst_holds_bsy_then_posts_the_signature(ide):
    h, _, irq = ide
    lba_command(h, 0x20, 0x42, 3)
    h.outb(DEVICE_CONTROL, SRST)
    assert h.inb(ALT_STATUS) & BSY
    assert not irq.level
    h.outb(DEVICE_CONTROL, 0)
    assert h.inb(STATUS) == READY
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH)) == (1, 1, 0, 0)
    assert h.inb(ERROR) == 0x01 and h.inw(DATA) == 0


def test_srst_keeps_the_multiple_setting(ide):
    h, *_ = ide
    h.outb(COUNT, 8)
    h.outb(COMMAND, 0xC6)
    h.outb(DEVICE_CONTROL, SRST)
    h.outb(DEVICE_CONTROL, 0)
    assert word(identify(h), 59) == 0x0108


def test_an_absent_slave_reads_status_zero_and_ignores_commands(ide):
    h, _, irq = ide
    h.outb(DEVICE, 0xB0)
    assert h.inb(STATUS) == 0 and h.inb(ALT_STATUS) == 0
    h.outb(COMMAND, 0xEC)
    assert h.inb(STATUS) == 0 and not irq.level
    assert h.inb(DEVICE) == 0xB0
    h.outb(DEVICE, 0xA0)
    assert h.inb(STATUS) == READY


def test_a_channel_without_drives_reads_zero(image):
    h = Harness(IdeChannel(RecordingIrq(), (None, None)))
    h.outb(DEVICE, 0xA0)
    assert h.inb(STATUS) == 0 and h.inb(DEVICE) == 0 and h.inb(COUNT) == 0


def test_the_slave_answers_from_its_own_image(tmp_path, image):
    other = tmp_path / "slave.img"
    other.write_bytes(pattern(8, seed=77))
    h, ch, _ = make(image, slave=other)
    lba_command(h, 0x20, 1, 1, dev=1)
    assert read_words(h) == file_sectors(other, 1, 1)
    assert ata_text(identify_dev(h, 1), 10, 19) == "HV-IDE0-1"
    for d in ch.drives:
        d.close()


def identify_dev(h, dev):
    h.outb(DEVICE, 0xA0 | dev << 4)
    h.outb(COMMAND, 0xEC)
    return read_words(h)


def test_only_the_selected_drive_drives_the_interrupt_line(tmp_path, image):
    other = tmp_path / "slave.img"
    other.write_bytes(pattern(8))
    h, ch, irq = make(image, slave=other)
    h.outb(DEVICE, 0xA0)
    h.outb(COMMAND, 0xE5)
    assert irq.level
    h.outb(DEVICE, 0xB0)
    assert not irq.level
    h.outb(DEVICE, 0xA0)
    assert irq.level
    for d in ch.drives:
        d.close()


def test_reset_returns_to_power_on_state(ide):
    h, ch, irq = ide
    h.outb(COUNT, 4)
    h.outb(COMMAND, 0xC6)
    lba_command(h, 0x20, 9, 2)
    ch.reset()
    assert not irq.level and h.inb(STATUS) == READY
    assert word(identify(h), 59) == 0x0100


def test_stats_count_commands_and_sectors(ide):
    h, ch, _ = ide
    lba_command(h, 0x20, 0, 2)
    read_words(h, 512)
    s = ch.stats()
    assert s["commands"] == 1 and s["sectors_read"] == 2


# ---- properties ---------------------------------------------------------------

PORTS = list(range(0x1F0, 0x1F8)) + [0x3F6]


def check_channel(ch, irq):
    """The ATA protocol's invariants on the selected drive's registers."""
    u = ch._cur
    status = u.status
    in_data_phase = u.pos < (u.rd_end or u.wr_end)
    if u.present:
        assert bool(status & DRQ) == in_data_phase          # DRQ exactly while data is due
        assert not status & BSY or ch.control & SRST          # BSY only while reset is held
        assert not status & ERR or u.error                    # an error says which
        assert not (status & ERR and status & DRQ)
    else:
        assert status == 0 and not in_data_phase
    assert irq.level == (u.pending and not ch.control & NIEN)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(PORTS), st.sampled_from([1, 2, 4]),
                              st.booleans(), st.integers(0, 0xFFFFFFFF)), max_size=60))
def test_random_register_accesses_keep_drq_bsy_err_and_intrq_consistent(ide, ops):
    h, ch, irq = ide
    for port, size, is_write, value in ops:
        value &= (1 << (8 * size)) - 1
        if is_write:
            h.bus.write(port, size, value)
        else:
            off = port - 0x1F0 if port != ALT_STATUS else 8
            got = ch.read(off, size)                  # the device's own answer
            assert 0 <= got < 1 << (8 * size)
        check_channel(ch, irq)
    ch.reset()
    check_channel(ch, irq)
    assert h.inb(STATUS) == READY


COMMANDS = [0x20, 0x21, 0x30, 0x31, 0x40, 0x41, 0xC4, 0xC5, 0xC6, 0xE7, 0x91, 0x90, 0xA1,
            0x10, 0x70, 0xEF, 0xE5, 0xE0, 0xE1, 0xEC, 0x00, 0x24, 0xFF]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_command_sequences_keep_the_protocol_and_write_only_inside_the_image(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ide") / "small.img"
    path.write_bytes(bytes(4 * SECTOR))
    disk = Disk(path, "hd")
    writes = []
    real_write = disk.write

    def checked_write(lba, buf):
        writes.append((lba, len(buf) // SECTOR))
        return real_write(lba, buf)
    disk.write = checked_write
    irq = RecordingIrq()
    ch = IdeChannel(irq, (disk, None))
    h = Harness(ch)
    byte = st.integers(0, 255)
    for _ in range(data.draw(st.integers(1, 8))):
        for port in (FEATURES, COUNT, LBA_LOW, LBA_MID, LBA_HIGH, DEVICE):
            if data.draw(st.booleans()):
                h.outb(port, data.draw(byte))
        h.outb(COMMAND, data.draw(st.sampled_from(COMMANDS) | byte))
        for _ in range(data.draw(st.integers(0, 600))):
            check_channel(ch, irq)
            if h.inb(ALT_STATUS) & DRQ == 0:
                break
            if data.draw(st.booleans()):
                h.inw(DATA)
            else:
                h.outw(DATA, 0xA5A5)
        check_channel(ch, irq)
        h.inb(STATUS)
    disk.close()
    assert all(0 <= lba and lba + n <= disk.sectors for lba, n in writes)
    assert path.stat().st_size <= disk.sectors * SECTOR


# ---- every opcode the model implements, aliases included -------------------------

def check_power(h) -> int:
    h.outb(COMMAND, 0xE5)
    return h.inb(COUNT)


@pytest.mark.parametrize("opcode", [0x20, 0x21])
def test_both_read_sectors_opcodes_read(ide, image, opcode):
    h, *_ = ide
    lba_command(h, opcode, 40, 1)
    assert read_words(h) == file_sectors(image, 40, 1) and h.inb(STATUS) == READY


@pytest.mark.parametrize("opcode", [0x30, 0x31])
def test_both_write_sectors_opcodes_write(ide, image, opcode):
    h, *_ = ide
    data = pattern(1, seed=opcode)
    lba_command(h, opcode, 41, 1)
    write_words(h, data)
    h.outb(COMMAND, 0xE7)
    assert file_sectors(image, 41, 1) == data


@pytest.mark.parametrize("opcode", [0x40, 0x41])
def test_both_read_verify_opcodes_verify_without_data(ide, opcode):
    h, ch, irq = ide
    lba_command(h, opcode, ch.drives[0].sectors - 2, 2)
    assert h.inb(STATUS) == READY and irq.edges == 1
    assert h.inb(LBA_LOW) | h.inb(LBA_MID) << 8 == ch.drives[0].sectors


def test_check_power_mode_answers_active_after_power_on(ide):
    h, *_ = ide
    assert check_power(h) == 0xFF and h.inb(STATUS) == READY


@pytest.mark.parametrize("standby", [0x94, 0x96, 0x99, 0xE0, 0xE2, 0xE6])
@pytest.mark.parametrize("check", [0x98, 0xE5])
def test_every_standby_and_sleep_opcode_spins_down_and_a_read_spins_up(ide, standby, check):
    h, *_ = ide
    h.outb(COMMAND, standby)
    assert h.inb(STATUS) == READY
    h.outb(COMMAND, check)
    assert h.inb(STATUS) == READY and h.inb(COUNT) == 0x00
    lba_command(h, 0x20, 0, 1)                # a media access spins the drive up
    read_words(h)
    h.outb(COMMAND, check)
    assert h.inb(COUNT) == 0xFF


@pytest.mark.parametrize("idle", [0x95, 0x97, 0xE1, 0xE3])
def test_every_idle_opcode_spins_up(ide, idle):
    h, *_ = ide
    h.outb(COMMAND, 0xE0)
    h.outb(COMMAND, idle)
    assert h.inb(STATUS) == READY and check_power(h) == 0xFF


@pytest.mark.parametrize("opcode", [0x10, 0x13, 0x1F])
def test_recalibrate_completes_for_all_sixteen_opcodes(ide, opcode):
    h, _, irq = ide
    h.outb(COMMAND, opcode)
    assert h.inb(STATUS) == READY and irq.edges == 1


@pytest.mark.parametrize("opcode", [0x70, 0x7F])
def test_seek_inside_the_disk_completes_for_all_sixteen_opcodes(ide, opcode):
    h, ch, _ = ide
    lba_command(h, opcode, ch.drives[0].sectors - 1, 0)
    assert h.inb(STATUS) == READY


@pytest.mark.parametrize("opcode", [0x00, 0x0F, 0x22, 0x50, 0x80, 0xA0, 0xA1, 0xC8, 0xCA, 0xE4, 0xE8,
                                    0xFF])
def test_opcodes_the_model_does_not_implement_abort(ide, opcode):
    h, _, irq = ide
    h.outb(COMMAND, opcode)
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == ABRT and irq.edges == 1


# ---- SET FEATURES ------------------------------------------------------------------

def features(h, sub, count=0):
    h.outb(FEATURES, sub)
    h.outb(COUNT, count)
    h.outb(COMMAND, 0xEF)
    return h.inb(STATUS)


def test_the_write_cache_and_look_ahead_are_on_after_power_on(ide):
    h, *_ = ide
    assert word(identify(h), 85) & 0x60 == 0x60


def test_set_features_turns_the_write_cache_and_look_ahead_off_and_on(ide):
    h, *_ = ide
    for sub, w85 in ((0x82, 0x40), (0x55, 0x00), (0x02, 0x20), (0xAA, 0x60)):
        assert features(h, sub) == READY
        assert word(identify(h), 85) & 0x60 == w85, hex(sub)


def test_with_the_write_cache_off_the_last_block_is_flushed_before_completion(ide, monkeypatch):
    h, ch, _ = ide
    features(h, 0x82)
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd))
    lba_command(h, 0x30, 0, 2)
    write_words(h, bytes(SECTOR))
    assert calls == []                        # not after the first of two blocks
    write_words(h, bytes(SECTOR))
    assert len(calls) == 1 and h.inb(STATUS) == READY


def test_reverting_to_defaults_makes_srst_clear_the_settings(ide):
    h, *_ = ide
    h.outb(COUNT, 8)
    h.outb(COMMAND, 0xC6)
    features(h, 0x82)
    features(h, 0x55)
    assert features(h, 0xCC) == READY         # enable reverting to power-on defaults
    h.outb(DEVICE_CONTROL, SRST)
    h.outb(DEVICE_CONTROL, 0)
    raw = identify(h)
    assert word(raw, 59) == 0x0100 and word(raw, 85) & 0x60 == 0x60
    h.outb(COUNT, 8)
    h.outb(COMMAND, 0xC6)
    features(h, 0x82)
    assert features(h, 0x66) == READY         # and off again: SRST keeps them
    h.outb(DEVICE_CONTROL, SRST)
    h.outb(DEVICE_CONTROL, 0)
    raw = identify(h)
    assert word(raw, 59) == 0x0108 and not word(raw, 85) & 0x20


@pytest.mark.parametrize("mode", [0x00, 0x01, 0x08, 0x09, 0x0A, 0x0B, 0x0C])
def test_set_transfer_mode_takes_pio_default_and_pio_modes_0_to_4(ide, mode):
    h, ch, _ = ide
    assert features(h, 0x03, mode) == READY
    assert ch.state()["units"][0]["pio_mode"] == (mode & 7 if mode >= 8 else 0)


@pytest.mark.parametrize("mode", [0x02, 0x07, 0x0D, 0x0F, 0x10, 0x20, 0x22, 0x40, 0x45])
def test_set_transfer_mode_aborts_other_modes(ide, mode):
    h, ch, _ = ide
    assert features(h, 0x03, 0x0C) == READY
    assert features(h, 0x03, mode) == DRDY | ERR and h.inb(ERROR) == ABRT
    assert ch.state()["units"][0]["pio_mode"] == 4


@pytest.mark.parametrize("sub", [0x00, 0x01, 0x04, 0x56, 0x67, 0x83, 0xAB, 0xCD, 0xFF])
def test_set_features_aborts_subcommands_it_does_not_know(ide, sub):
    h, *_ = ide
    assert features(h, sub) == DRDY | ERR and h.inb(ERROR) == ABRT


def test_set_features_after_a_reset_without_a_features_write_aborts(ide):
    h, *_ = ide
    h.outb(FEATURES, 0x82)
    h.outb(DEVICE_CONTROL, SRST)
    h.outb(DEVICE_CONTROL, 0)                 # the Features register is 00h again
    h.outb(COMMAND, 0xEF)
    assert h.inb(ERROR) == ABRT and word(identify(h), 85) & 0x20


# ---- geometry and capacity limits ----------------------------------------------------

@pytest.fixture
def big_image(tmp_path):
    """A sparse image two sectors past what LBA28 can address (no blocks on the host)."""
    p = tmp_path / "big.img"
    with open(p, "wb") as f:
        f.truncate((0x10000000 + 2) * SECTOR)
    return p


def test_a_disk_past_lba28_reports_0fffffff_sectors_and_16383_cylinders(big_image):
    h, ch, _ = make(big_image)
    raw = identify(h)
    assert word(raw, 60) | word(raw, 61) << 16 == 0x0FFFFFFF
    assert (word(raw, 1), word(raw, 3), word(raw, 6)) == (16383, 16, 63)
    assert [word(raw, i) for i in range(256)] == expected_identify(ch)     # words 57-58 past 64 Ki
    lba_command(h, 0x20, 0x0FFFFFFE, 1)       # the last sector LBA28 reaches
    assert h.inb(STATUS) == READY | DRQ and read_words(h) == bytes(SECTOR)
    lba_command(h, 0x20, 0x0FFFFFFF, 1)       # in the file, but past the reported capacity
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == IDNF
    assert (h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH), h.inb(DEVICE) & 0x0F) == (0xFF, 0xFF, 0xFF, 0x0F)
    ch.drives[0].close()


def test_a_translation_of_one_head_and_one_sector_caps_the_cylinders_at_65535(big_image):
    h, ch, _ = make(big_image)
    h.outb(DEVICE, 0xA0)                      # 1 head
    h.outb(COUNT, 1)                          # 1 sector per track
    h.outb(COMMAND, 0x91)
    assert h.inb(STATUS) == READY
    raw = identify(h)
    assert (word(raw, 54), word(raw, 55), word(raw, 56)) == (65535, 1, 1)
    assert word(raw, 57) | word(raw, 58) << 16 == 65535
    chs_command(h, 0x20, 65534, 0, 1, 1)      # the last cylinder of the translation
    assert h.inb(STATUS) == READY | DRQ
    ch.drives[0].close()


def test_a_translation_with_a_single_cylinder_is_valid(ide, image):
    h, *_ = ide
    h.outb(DEVICE, 0xA0 | 15)                 # 16 heads x 63 sectors: 1100 sectors hold 1 cylinder
    h.outb(COUNT, 63)
    h.outb(COMMAND, 0x91)
    assert h.inb(STATUS) == READY
    assert word(identify(h), 54) == 1
    chs_command(h, 0x20, 0, 15, 63, 1)        # the translation's last sector, LBA 1007
    assert read_words(h) == file_sectors(image, 1007, 1)
    chs_command(h, 0x20, 1, 0, 1, 1)
    assert h.inb(ERROR) == IDNF


def test_a_chs_error_points_the_registers_at_the_sector_in_chs_terms(ide):
    h, ch, _ = ide
    h.outb(DEVICE, 0xA0 | 1)                  # 2 heads x 10 sectors: 55 cylinders of 1100 sectors
    h.outb(COUNT, 10)
    h.outb(COMMAND, 0x91)
    chs_command(h, 0x20, 54, 1, 9, 3)         # LBA 1098, 1099, then 1100: past the end
    read_words(h, 512)
    assert h.inb(STATUS) & ERR and h.inb(ERROR) == IDNF
    assert (h.inb(LBA_HIGH) << 8 | h.inb(LBA_MID), h.inb(DEVICE) & 0x0F, h.inb(LBA_LOW)) == (55, 0, 1)


def test_a_serial_number_outside_ascii_is_sent_with_question_marks():
    h = Harness(IdeChannel(RecordingIrq(), (None, None), name="ïde"))
    ch = h.bus.device_at(0x1F0)
    assert ch._units[0].serial == "HV-ÏDE-0"
    words = ch.identify_words(0)
    raw = b"".join(w.to_bytes(2, "little") for w in words)
    assert ata_text(raw, 10, 19) == "HV-?DE-0"


def test_a_third_drive_is_ignored_and_a_missing_one_is_absent(image):
    disk = Disk(image, "hd")
    ch = IdeChannel(RecordingIrq(), (disk, None, disk))
    assert len(ch.drives) == 2 and len(ch.state()["units"]) == 2
    assert IdeChannel(None, (disk,)).drives == (disk, None)
    disk.close()


def test_the_class_declares_the_primary_channel_its_instances_default_to():
    ch = IdeChannel()
    assert ch.ports == IdeChannel.ports and ch.name == IdeChannel.name == "ide0"
    assert ch.irq == 14 and IdeChannel(base=0x170, ctrl=0x376).irq == 15
    assert IdeChannel(base=0x1E8, ctrl=0x3EE).irq is None


def test_srst_shows_bsy_alone_on_a_present_drive(ide):
    h, *_ = ide
    h.outb(DEVICE_CONTROL, SRST)
    assert h.inb(ALT_STATUS) == BSY and h.inb(STATUS) == BSY
    h.outb(DEVICE_CONTROL, SRST | NIEN)       # still held: nothing changes
    assert h.inb(ALT_STATUS) == BSY


# ---- snapshots ------------------------------------------------------------------------

def fresh_copy(tmp_path, image, name):
    p = tmp_path / name
    p.write_bytes(image.read_bytes())
    return p


def test_a_snapshot_in_the_middle_of_a_read_multiple_continues_on_another_channel(ide, image, tmp_path):
    h, ch, irq = ide
    h.outb(COUNT, 4)
    h.outb(COMMAND, 0xC6)
    lba_command(h, 0xC4, 30, 6)
    first = read_words(h, 300)                # into the first block of four sectors
    saved = ch.state()
    h2, ch2, irq2 = make(fresh_copy(tmp_path, image, "other.img"))
    ch2.load_state(saved)
    assert ch2.state() == saved and irq2.level == irq.level
    rest = b""
    while h2.inb(STATUS) & DRQ:
        rest += read_words(h2, 1)
    assert first + rest == file_sectors(image, 30, 6)
    assert ch2.stats()["sectors_read"] == 6 and h2.inb(STATUS) == READY
    ch2.drives[0].close()


def test_a_snapshot_in_the_middle_of_a_write_continues_on_another_channel(ide, image, tmp_path):
    h, ch, _ = ide
    data = pattern(3, seed=12)
    lba_command(h, 0x30, 50, 3)
    write_words(h, data[:700])
    saved = ch.state()
    other = fresh_copy(tmp_path, image, "other.img")
    h2, ch2, _ = make(other)
    ch2.load_state(saved)
    write_words(h2, data[700:])
    h2.outb(COMMAND, 0xE7)
    # the first sector reached the image before the snapshot (and so the copy); the rest
    # came through the second channel
    assert file_sectors(other, 50, 3) == data
    assert h2.inb(STATUS) == READY and ch2.stats()["sectors_written"] == 3
    ch2.drives[0].close()


def test_a_restored_slave_selection_and_control_register_take_effect(tmp_path, image):
    other = tmp_path / "slave.img"
    other.write_bytes(pattern(8, seed=77))
    h, ch, irq = make(image, slave=other)
    h.outb(DEVICE, 0xB0)
    h.outb(DEVICE_CONTROL, NIEN)
    h.outb(COMMAND, 0xE5)
    saved = ch.state()
    h2, ch2, irq2 = make(fresh_copy(tmp_path, image, "m2.img"), slave=fresh_copy(tmp_path, other, "s2.img"))
    ch2.load_state(saved)
    assert not irq2.level and h2.inb(DEVICE) == 0xB0
    h2.outb(DEVICE_CONTROL, 0)
    assert irq2.level                          # the slave's pending interrupt, unmasked
    assert h2.inb(COUNT) == 0xFF
    for c in (ch, ch2):
        for d in c.drives:
            d.close()


UNIT_LIMITS = {"mult": 16, "power": 0xFF, "pio_mode": 7, "tr_cyls": 65535, "tr_heads": 16,
               "tr_spt": 0xFF, "features": 0xFF, "nsector": 0xFF, "sector": 0xFF, "lcyl": 0xFF,
               "hcyl": 0xFF, "select": 0xFF, "error": 0xFF, "status": 0xFF, "lba": 0x0FFFFFFF,
               "remaining": 256, "block": 16, "xfer_sectors": 16, "pos": 4096, "rd_end": 4096,
               "wr_end": 4096}


@pytest.mark.parametrize("name", sorted(UNIT_LIMITS))
def test_a_saved_register_is_taken_up_to_its_limit_and_refused_past_it(ide, name):
    _, ch, _ = ide
    top = dict(ch.state(), units=[dict(u) for u in ch.state()["units"]])
    top["units"][1][name] = UNIT_LIMITS[name]
    if name == "pos":
        top["units"][1]["rd_end"] = UNIT_LIMITS["rd_end"]
    ch.load_state(top)
    assert ch.state()["units"][1][name] == UNIT_LIMITS[name]
    for bad in (UNIT_LIMITS[name] + 1, -1, True, "1", None):
        wrong = dict(top, units=[top["units"][0], dict(top["units"][1], **{name: bad})])
        with pytest.raises(ValueError, match="ide0"):
            ch.load_state(wrong)
        assert ch.state() == top               # nothing of a refused state is applied


def broken_states(good):
    u0, u1 = good["units"]
    yield "control", dict(good, control=0x100)
    yield "current", dict(good, current=2)
    yield "units", dict(good, units=[u0])
    yield "units", dict(good, units=(u0, u1))
    yield "units", dict(good, units=[u0, "drive"])
    for flag in ("write_cache", "look_ahead", "revert_defaults", "tr_valid", "pending"):
        yield flag, dict(good, units=[u0, dict(u1, **{flag: 2})])
        missing = dict(u1)
        del missing[flag]
        yield flag, dict(good, units=[u0, missing])
    yield "phase", dict(good, units=[u0, dict(u1, rd_end=8, wr_end=8)])
    yield "phase", dict(good, units=[u0, dict(u1, pos=9, rd_end=8)])
    yield "phase", dict(good, units=[u0, dict(u1, pos=9, wr_end=8)])
    yield "buf", dict(good, units=[u0, dict(u1, buf=bytes(100))])
    yield "counts", dict(good, counts={})
    yield "counts", dict(good, counts=dict(good["counts"], commands=-1))
    yield "counts", dict(good, counts=dict(good["counts"], errors=1.0))
    yield "counts", dict(good, counts=[])
    yield "irq", dict(good, irq=3)
    yield "version", dict(good, v=0)


def test_a_broken_saved_state_is_refused_with_the_channel_named_and_nothing_applied(ide):
    h, ch, _ = ide
    lba_command(h, 0x20, 3, 2)
    read_words(h, 10)
    good = ch.state()
    for what, bad in broken_states(good):
        with pytest.raises(ValueError, match="ide0"):
            ch.load_state(bad)
        assert ch.state() == good, what
    ch.load_state(dict(good, units=[good["units"][0], dict(good["units"][1], pos=8, wr_end=8)]))


def test_a_saved_state_round_trips_at_power_on_and_after_each_kind_of_command(ide):
    h, ch, _ = ide
    steps = [lambda: None,
             lambda: lba_command(h, 0x20, 0, 1),
             lambda: read_words(h, 256),
             lambda: lba_command(h, 0x30, 0, 1),
             lambda: h.outb(COMMAND, 0x99),
             lambda: h.inb(STATUS),
             lambda: h.outb(COMMAND, 0xEC),
             lambda: h.outb(DEVICE_CONTROL, SRST)]
    for step in steps:
        step()
        saved = ch.state()
        ch.load_state(saved)
        assert ch.state() == saved


# ---- the C fast path -------------------------------------------------------------------

from hv import fastpath  # noqa: E402
from tests.devices.harness import CHarness, port_access, port_burst  # noqa: E402

needs_c = pytest.mark.skipif(not fastpath.c_available(), reason="the C fast path was not built")


def make_c(path):
    irq = RecordingIrq()
    ch = IdeChannel(irq, drives=(Disk(path, "hd"), None))
    return CHarness(ch), ch, irq


@needs_c
def test_bound_to_c_the_data_port_moves_whole_blocks_without_the_model(image):
    h, ch, irq = make_c(image)
    try:
        calls = h.model_accesses(ch)
        lba_command(h, 0x20, 7, 2)
        assert h.inb(STATUS) == READY | DRQ     # each block interrupts; reading Status clears it
        data = read_words(h, 256)
        assert irq.level and h.inb(STATUS) == READY | DRQ
        data += b"".join(h.bus.read(DATA, 4).to_bytes(4, "little") for _ in range(128))
        assert data == file_sectors(image, 7, 2)
        assert 0 not in calls                  # both sectors came from the C window
        assert irq.edges == 2 and h.inb(STATUS) == READY
        assert ch.stats()["sectors_read"] == 2
        write = pattern(2, seed=4)
        lba_command(h, 0x30, 9, 2)
        write_words(h, write[:SECTOR])
        for i in range(SECTOR, 2 * SECTOR, 4):
            h.bus.write(DATA, 4, int.from_bytes(write[i:i + 4], "little"))
        h.outb(COMMAND, 0xE7)
        assert file_sectors(image, 9, 2) == write and irq.edges == 3   # line still high from the last block
        assert ch.stats()["sectors_written"] == 2 and 0 not in calls
    finally:
        h.close()
        ch.drives[0].close()


@needs_c
def test_bound_to_c_a_snapshot_mid_block_takes_the_words_c_moved(image, tmp_path):
    h, ch, _ = make_c(image)
    try:
        lba_command(h, 0x20, 11, 2)
        first = read_words(h, 100)
        saved = ch.state()
        assert saved["units"][0]["pos"] == 100 and saved["units"][0]["rd_end"] == 256
        h2, ch2, _ = make_c(fresh_copy(tmp_path, image, "other.img"))
        try:
            ch2.load_state(saved)
            rest = read_words(h2, 156 + 256)
            assert first + rest == file_sectors(image, 11, 2)
            assert h2.inb(STATUS) == READY
        finally:
            h2.close()
            ch2.drives[0].close()
        assert read_words(h, 156) == file_sectors(image, 11, 1)[200:]   # the first goes on too
    finally:
        h.close()
        ch.drives[0].close()


DIFF_COMMANDS = [0x20, 0x30, 0x40, 0xC4, 0xC5, 0xC6, 0xE7, 0xEC, 0x90, 0x91, 0xE5]


def ide_program():
    # a command and the driver's data burst right after it (in or out as the command goes)
    cmd = st.tuples(st.just("cmd"), st.sampled_from(DIFF_COMMANDS),
                    st.integers(0, 12) | st.integers(IMAGE_SECTORS - 6, IMAGE_SECTORS + 2),
                    st.integers(0, 20), st.integers(0, 1), st.integers(0, 1200), st.sampled_from([2, 4]))
    words = st.tuples(st.just("words"), st.integers(1, 600), st.sampled_from([2, 4]), st.booleans())
    reg = st.tuples(st.just("reg"), st.sampled_from(PORTS), st.sampled_from([1, 2, 4]),
                    st.booleans(), st.integers(0, 0xFFFFFFFF))
    snap = st.tuples(st.just("snapshot"))
    return st.lists(st.one_of(cmd, words, words, reg, snap), max_size=25)


def run_ide_op(h, ch, op, out):
    kind = op[0]
    if kind == "cmd":
        _, opcode, lba, count, dev, burst, size = op
        if opcode == 0xC6:
            count = 4
        lba_command(h, opcode, lba, count, dev)
        port_burst(h, DATA, burst, size, opcode in (0x30, 0xC5), out)
    elif kind == "words":
        port_burst(h, DATA, *op[1:], out)
    elif kind == "reg":
        port_access(h, *op[1:], out)
    else:
        ch.load_state(ch.state())
    out.append(("state", ch.state()))


@needs_c
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(program=ide_program())
def test_bound_to_c_the_channel_behaves_exactly_as_in_python(tmp_path_factory, program):
    """The same guest program on two copies of one image, one channel dispatched in Python
    and one bound to C: every value read, the IRQ line, the saved state and the image agree."""
    folder = tmp_path_factory.mktemp("diff")
    py_img, c_img = folder / "py.img", folder / "c.img"
    py_img.write_bytes(pattern(IMAGE_SECTORS))
    c_img.write_bytes(pattern(IMAGE_SECTORS))
    hp, chp, irqp = make(py_img)
    hc, chc, irqc = make_c(c_img)
    try:
        for op in program:
            got_py, got_c = [], []
            run_ide_op(hp, chp, op, got_py)
            run_ide_op(hc, chc, op, got_c)
            assert got_c == got_py, op
            assert irqc.level == irqp.level
        assert chc.stats() == chp.stats()
    finally:
        hc.close()
        for c in (chp, chc):
            c.drives[0].close()
    assert c_img.read_bytes() == py_img.read_bytes()


# ---- wide accesses to the byte registers -----------------------------------------------------

def test_a_word_or_dword_access_to_the_command_block_is_consecutive_byte_registers(ide):
    h, ch, irq = ide
    h.bus.write(COUNT, 2, 0x3412)              # Sector Count, LBA Low
    h.bus.write(LBA_MID, 4, 0x00E00056)        # LBA Mid, LBA High, Device, and Command 00h
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH)) == (0x12, 0x34, 0x56, 0)
    assert h.inb(DEVICE) == 0xE0 and h.inb(ERROR) == ABRT     # NOP aborted
    assert h.bus.read(COUNT, 2) == 0x3412
    assert irq.level
    assert h.bus.read(LBA_MID, 4) == (DRDY | ERR) << 24 | 0xE0 << 16 | 0x0056
    assert not irq.level                       # its Status byte cleared the interrupt


def test_a_wide_access_past_the_last_register_floats_high(ide):
    h, *_ = ide
    assert h.bus.read(STATUS, 2) == 0xFF00 | READY          # 1F8h is not the channel's
    assert h.bus.read(ALT_STATUS, 2) == 0xFF00 | READY      # nor 3F7h (the floppy's)
    assert h.bus.read(ALT_STATUS, 4) == 0xFFFFFF00 | READY
    h.bus.write(ALT_STATUS, 2, 0x0400)                      # SRST would be in the spilled byte
    assert h.inb(ALT_STATUS) == READY
    h.bus.write(STATUS, 2, 0xFFE5)                          # CHECK POWER MODE; FFh goes nowhere
    assert h.inb(COUNT) == 0xFF and h.inb(STATUS) == READY


def test_an_8_bit_access_to_the_data_port_is_not_decoded(ide, image):
    h, *_ = ide
    lba_command(h, 0x20, 0, 1)
    assert h.inb(DATA) == 0xFF
    h.outb(DATA, 0x12)
    assert read_words(h) == file_sectors(image, 0, 1)        # neither moved a byte


def test_a_fresh_channel_saves_the_ata_reset_values(tmp_path, image):
    h, ch, _ = make(image)
    saved = ch.state()
    assert (saved["control"], saved["current"], saved["irq"]) == (0, 0, False)
    assert saved["counts"] == {"commands": 0, "sectors_read": 0, "sectors_written": 0, "errors": 0}
    present, absent = saved["units"]
    common = dict(mult=0, power=0xFF, pio_mode=0, features=0, nsector=1, sector=1, lcyl=0, hcyl=0,
                  select=0xA0, error=1, lba=0, remaining=0, block=0, xfer_sectors=0, pos=0,
                  rd_end=0, wr_end=0, write_cache=True, look_ahead=True, revert_defaults=False,
                  pending=False)
    assert {k: present[k] for k in common} == common and {k: absent[k] for k in common} == common
    g = ch.drives[0].geometry
    assert (present["tr_cyls"], present["tr_heads"], present["tr_spt"], present["tr_valid"]) == \
        (g.cylinders, g.heads, g.sectors, True)
    assert (absent["tr_cyls"], absent["tr_heads"], absent["tr_spt"], absent["tr_valid"]) == (0, 0, 0, False)
    assert (present["status"], absent["status"]) == (READY, 0)
    ch.drives[0].close()


# ---- IDENTIFY, word by word --------------------------------------------------------------

def expected_identify(ch, unit=0) -> list[int]:
    """Every IDENTIFY DEVICE word this model answers (ATA/ATAPI-6 and QEMU's choices for the
    obsolete ones); everything not listed is 0."""
    u = ch._units[unit]
    g = ch.drives[unit].geometry
    cur = u.tr_cyls * u.tr_heads * u.tr_spt
    w = {0: 0x0040, 1: g.cylinders, 3: g.heads, 4: 512 * g.sectors, 5: 512, 6: g.sectors,
         20: 3, 21: 512, 22: 4, 47: 0x8010, 49: 0x0200, 50: 0x4000, 51: 0x0200,
         53: 3 if u.tr_valid else 2, 59: 0x0100 | u.mult,
         60: u.capacity & 0xFFFF, 61: u.capacity >> 16, 64: 3, 65: 120, 66: 120, 67: 120, 68: 120,
         80: 0x007E, 82: 0x4068, 83: 0x5000, 84: 0x4000,
         85: 0x4008 | (0x40 if u.look_ahead else 0) | (0x20 if u.write_cache else 0),
         86: 0x1000, 87: 0x4000}
    if u.tr_valid:
        w.update({54: u.tr_cyls, 55: u.tr_heads, 56: u.tr_spt, 57: cur & 0xFFFF, 58: cur >> 16})
    text = lambda s, n: [int.from_bytes(s.ljust(n).encode()[i:i + 2], "big") for i in range(0, n, 2)]
    words = [w.get(i, 0) for i in range(256)]
    words[10:20], words[23:27], words[27:47] = text(u.serial, 20), text("1.0", 8), text("HV HARDDISK", 40)
    words[255] = 0xA5 | ((-(sum(b for x in words[:255] for b in x.to_bytes(2, "little")) + 0xA5) & 0xFF) << 8)
    return words


def test_identify_answers_exactly_the_documented_words(ide):
    h, ch, _ = ide
    raw = identify(h)
    assert [word(raw, i) for i in range(256)] == expected_identify(ch)
    features(h, 0x82)
    features(h, 0x55)
    h.outb(COUNT, 2)
    h.outb(COMMAND, 0xC6)
    h.outb(DEVICE, 0xA0 | 7)
    h.outb(COUNT, 0)                          # INITIALIZE DEVICE PARAMETERS that fails
    h.outb(COMMAND, 0x91)
    raw = identify(h)
    assert [word(raw, i) for i in range(256)] == expected_identify(ch)
    assert word(raw, 53) == 2 and word(raw, 85) == 0x4008 and word(raw, 59) == 0x0102


# ---- the registers after a command --------------------------------------------------------

def test_after_each_block_the_count_and_address_registers_name_what_is_left(ide):
    h, *_ = ide
    lba_command(h, 0x20, 0x0102, 3)
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID)) == (2, 0x03, 0x01)
    read_words(h)
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID)) == (1, 0x04, 0x01)
    read_words(h, 512)
    lba_command(h, 0x30, 0x0205, 2)
    write_words(h, bytes(SECTOR))
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID)) == (1, 0x06, 0x02)
    write_words(h, bytes(SECTOR))
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID)) == (0, 0x07, 0x02)
    lba_command(h, 0x40, 0x0300, 5)
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID)) == (0, 0x05, 0x03)


def test_after_a_read_the_lba_registers_and_device_hold_all_28_bits_of_the_next_sector(big_image):
    h, ch, _ = make(big_image)
    for lba, nxt in ((0x00ABCDEF, 0x00ABCDF0), (0x01FFFFFF, 0x02000000)):
        lba_command(h, 0x20, lba, 1)
        read_words(h)
        assert (h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH), h.inb(DEVICE)) == \
            (nxt & 0xFF, nxt >> 8 & 0xFF, nxt >> 16 & 0xFF, 0xE0 | nxt >> 24)
    ch.drives[0].close()


def test_chs_reads_past_cylinder_255_and_the_registers_after_them(ide, image):
    h, *_ = ide
    h.outb(DEVICE, 0xA0)                      # 1 head x 1 sector: cylinder = LBA
    h.outb(COUNT, 1)
    h.outb(COMMAND, 0x91)
    chs_command(h, 0x20, 300, 0, 1, 1)
    assert read_words(h) == file_sectors(image, 300, 1)
    assert (h.inb(LBA_HIGH), h.inb(LBA_MID), h.inb(LBA_LOW)) == (1, 45, 1)     # cylinder 301
    h.outb(DEVICE, 0xA0 | 1)                  # 2 heads x 10 sectors
    h.outb(COUNT, 10)
    h.outb(COMMAND, 0x91)
    chs_command(h, 0x20, 0, 0, 10, 1)
    assert read_words(h) == file_sectors(image, 9, 1)
    assert (h.inb(LBA_HIGH) << 8 | h.inb(LBA_MID), h.inb(DEVICE) & 0x0F, h.inb(LBA_LOW)) == (0, 1, 1)
    chs_command(h, 0x20, 0, 2, 1, 1)          # head 2 of a 2-head translation
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == IDNF


def test_a_block_that_runs_past_the_end_fails_naming_the_first_missing_sector(ide):
    h, ch, _ = ide
    end = ch.drives[0].sectors
    h.outb(COUNT, 4)
    h.outb(COMMAND, 0xC6)
    for cmd in (0xC4, 0xC5):
        lba_command(h, cmd, end - 1, 4)
        assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == IDNF
        assert h.inb(LBA_LOW) | h.inb(LBA_MID) << 8 == end


def test_a_request_past_the_end_does_not_spin_the_drive_up(ide):
    h, ch, _ = ide
    h.outb(COMMAND, 0xE0)
    lba_command(h, 0x20, ch.drives[0].sectors, 1)
    assert h.inb(ERROR) == IDNF and check_power(h) == 0x00


@pytest.mark.parametrize("n", [0, 1, 2, 4, 8, 16])
def test_set_multiple_takes_powers_of_two_up_to_16_and_0(ide, n):
    h, *_ = ide
    h.outb(COUNT, n)
    h.outb(COMMAND, 0xC6)
    assert h.inb(STATUS) == READY and word(identify(h), 59) == 0x0100 | n


@pytest.mark.parametrize("n", [3, 5, 6, 7, 9, 12, 15, 17, 32, 255])
def test_a_refused_set_multiple_turns_multiple_mode_off(ide, n):
    h, *_ = ide
    h.outb(COUNT, 8)
    h.outb(COMMAND, 0xC6)
    h.outb(COUNT, n)
    h.outb(COMMAND, 0xC6)
    assert h.inb(STATUS) == DRDY | ERR and h.inb(ERROR) == ABRT
    assert word(identify(h), 59) == 0x0100
    lba_command(h, 0xC4, 0, 1)
    assert h.inb(ERROR) == ABRT


@pytest.mark.parametrize("code, error, status", [(0, IDNF, DRDY | ERR), (1, ABRT, DRDY | ERR),
                                                 (2, ABRT, DRDY | DF | ERR)])
def test_a_failed_host_write_reports_what_failed(ide, monkeypatch, code, error, status):
    from hv.devices.disk_store import OUT_OF_RANGE, WRITE_PROTECTED
    h, ch, irq = ide
    kind = (OUT_OF_RANGE, WRITE_PROTECTED, IO_ERROR)[code]

    def broken(lba, data):
        raise DiskError(kind, "no")
    monkeypatch.setattr(ch.drives[0], "write", broken)
    lba_command(h, 0x30, 0x10, 2)
    write_words(h, bytes(SECTOR))
    assert h.inb(STATUS) == status and h.inb(ERROR) == error and irq.edges == 1
    assert h.inb(LBA_LOW) == 0x10 and ch.stats()["errors"] == 1


def test_stats_count_every_command_sector_and_error(ide):
    h, ch, _ = ide
    lba_command(h, 0x20, 0, 2)
    read_words(h, 512)
    lba_command(h, 0x30, 0, 1)
    write_words(h, bytes(SECTOR))
    h.outb(COMMAND, 0xA1)                     # aborts
    lba_command(h, 0x20, ch.drives[0].sectors, 1)   # IDNF
    assert ch.stats() == {"commands": 4, "sectors_read": 2, "sectors_written": 1, "errors": 2}


def test_diagnostic_on_a_channel_with_only_a_slave_has_the_slave_answer(tmp_path, image):
    irq = RecordingIrq()
    ch = IdeChannel(irq, (None, Disk(image, "hd")))
    h = Harness(ch)
    h.outb(DEVICE, 0xB0)
    h.outb(COMMAND, 0x90)
    assert h.inb(DEVICE) == 0xA0              # device 0 selected again
    h.outb(DEVICE, 0xB0)
    assert irq.level and h.inb(STATUS) == READY and h.inb(ERROR) == 0x01
    ch.drives[1].close()


def test_after_the_last_word_the_saved_state_has_no_data_phase(ide):
    h, ch, _ = ide
    lba_command(h, 0x20, 0, 1)
    read_words(h)
    unit = ch.state()["units"][0]
    assert (unit["pos"], unit["rd_end"], unit["wr_end"]) == (0, 0, 0)
    lba_command(h, 0x30, 0, 1)
    write_words(h, bytes(SECTOR))
    unit = ch.state()["units"][0]
    assert (unit["pos"], unit["rd_end"], unit["wr_end"]) == (0, 0, 0)


def test_a_spilled_byte_of_a_wide_control_write_reaches_no_register(ide):
    h, *_ = ide
    h.bus.write(ALT_STATUS, 4, 0x33221100)
    assert (h.inb(COUNT), h.inb(LBA_LOW), h.inb(LBA_MID), h.inb(LBA_HIGH)) == (1, 1, 0, 0)
    assert h.inb(ERROR) == 0x01 and h.inb(DEVICE) == 0xA0
