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
