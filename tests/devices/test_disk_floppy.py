import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices.disk_floppy import Fdc82077, Phase
from hv.devices.disk_store import Disk
from hv.devices.dma8237 import Dma8237
from tests.devices.harness import Harness, RecordingIrq
from tests.devices.test_dma8237 import WatchedMemory

MiB = 1 << 20
DOR, MSR, DSR, FIFO, DIR, CCR = 0x3F2, 0x3F4, 0x3F4, 0x3F5, 0x3F7, 0x3F7
RQM, DIO, NDMA, CB = 0x80, 0x40, 0x20, 0x10
READ, WRITE = 0xE6, 0xC5                  # MT|MFM|SK READ DATA, MT|MFM WRITE DATA
BUF = 0x20000


def sector_bytes(lba: int) -> bytes:
    return bytes([lba & 0xFF, lba >> 8]) + bytes((lba * 7 + i) & 0xFF for i in range(510))


@functools.lru_cache(maxsize=None)
def image_bytes(size: int) -> bytes:
    return b"".join(sector_bytes(i) for i in range(size // 512))


def make_image(path: Path, size: int = 1474560) -> Path:
    path.write_bytes(image_bytes(size))
    return path


class Rig:
    def __init__(self, tmp_path, size=1474560, readonly=False, mem_size=MiB, **kw):
        self.path = make_image(tmp_path / "fd.img", size)
        self.disk = Disk(self.path, "floppy", readonly=readonly)
        self.mem = WatchedMemory(mem_size)
        self.dma = Dma8237(self.mem)
        self.irq = RecordingIrq()
        self.fdc = Fdc82077(self.irq, self.dma, drives=(self.disk, None), **kw)
        self.h = Harness(self.dma, self.fdc)

    def dma_setup(self, addr, length, to_memory=True):
        h = self.h
        h.outb(0x0A, 0x06)
        h.outb(0x0B, 0x46 if to_memory else 0x4A)
        h.outb(0x0C, 0)
        h.outb(0x04, addr & 0xFF)
        h.outb(0x04, addr >> 8 & 0xFF)
        h.outb(0x81, addr >> 16 & 0xFF)
        h.outb(0x05, (length - 1) & 0xFF)
        h.outb(0x05, (length - 1) >> 8 & 0xFF)
        h.outb(0x0A, 0x02)

    def command(self, *data):
        for b in data:
            assert self.h.inb(MSR) & (RQM | DIO) == RQM
            self.h.outb(FIFO, b)

    def results(self):
        out = []
        for _ in range(16):                         # a result phase has at most 10 bytes
            if self.h.inb(MSR) & (RQM | DIO) != RQM | DIO:
                return out
            out.append(self.h.inb(FIFO))
        raise AssertionError(f"the result phase never ends: {out}")

    def rw(self, op, c, h, r, eot=18, hds=None, drive=0):
        hds = h if hds is None else hds
        self.command(op, hds << 2 | drive, c, h, r, 2, eot, 0x1B, 0xFF)
        return self.results()

    def image_sector(self, lba):
        data = self.path.read_bytes()
        return data[lba * 512:(lba + 1) * 512]


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.disk.close()


def test_version_reports_82077aa(rig):
    rig.command(0x10)
    assert rig.results() == [0x90]


def test_idle_controller_msr_shows_rqm_only(rig):
    assert rig.h.inb(MSR) == RQM


def test_invalid_command_answers_0x80(rig):
    rig.command(0x1F)
    assert rig.results() == [0x80]
    assert rig.h.inb(MSR) == RQM


def test_msr_shows_command_busy_while_parameters_are_expected(rig):
    rig.command(0x03)
    assert rig.h.inb(MSR) == RQM | CB
    rig.command(0xDF, 0x02)
    assert rig.h.inb(MSR) == RQM


def test_read_data_of_sector_1_lands_in_guest_memory_exactly(rig):
    rig.dma_setup(BUF, 512)
    res = rig.rw(READ, 0, 0, 1)
    assert rig.mem.read(BUF, 512) == sector_bytes(0)
    assert rig.mem.read(BUF + 512, 16) == bytes(16)
    assert rig.mem.writes == [(BUF, 512)]
    assert res == [0x00, 0x00, 0x00, 0, 0, 2, 2]


def test_read_data_raises_irq6_until_the_result_is_read(rig):
    rig.dma_setup(BUF, 512)
    rig.command(READ, 0, 0, 0, 1, 2, 18, 0x1B, 0xFF)
    assert rig.irq.level
    assert rig.h.inb(MSR) == RQM | DIO | CB
    rig.results()
    assert not rig.irq.level


def test_multi_sector_read_ends_at_tc_with_the_next_sector_id(rig):
    rig.dma_setup(BUF, 3 * 512)
    res = rig.rw(READ, 0, 0, 4)
    assert rig.mem.read(BUF, 3 * 512) == b"".join(sector_bytes(i) for i in (3, 4, 5))
    assert res == [0x00, 0x00, 0x00, 0, 0, 7, 2]


def test_multi_track_read_continues_on_head_1(rig):
    rig.dma_setup(BUF, 4 * 512)
    res = rig.rw(READ, 0, 0, 17)
    assert rig.mem.read(BUF, 4 * 512) == b"".join(sector_bytes(i) for i in (16, 17, 18, 19))
    assert res[:3] == [0x04, 0x00, 0x00]          # ST0 shows head 1
    assert res[3:] == [0, 1, 3, 2]


def test_read_ending_exactly_at_eot_of_head_1_moves_to_the_next_cylinder(rig):
    rig.dma_setup(BUF, 2 * 512)
    res = rig.rw(READ, 0, 1, 17)
    assert res == [0x04, 0x00, 0x00, 1, 0, 1, 2]


def test_reading_past_eot_without_tc_sets_en_and_abnormal_termination(rig):
    rig.dma_setup(BUF, 8 * 512)
    res = rig.rw(0x46, 2, 0, 17)                    # no MT: track ends at 18
    assert res[0] & 0xC0 == 0x40
    assert res[1] == 0x80                           # EN
    assert res[3:] == [3, 0, 1, 2]
    assert rig.mem.read(BUF, 1024) == sector_bytes(2 * 36 + 16) + sector_bytes(2 * 36 + 17)


def test_read_of_a_sector_beyond_the_track_reports_no_data(rig):
    rig.dma_setup(BUF, 512)
    res = rig.rw(READ, 0, 0, 19, eot=19)
    assert res[0] & 0xC0 == 0x40
    assert res[1] == 0x04                           # ND
    assert rig.mem.writes == []


def test_read_at_the_wrong_data_rate_finds_no_address_mark(rig):
    rig.h.outb(CCR, 2)                              # 250 kbps; a 1.44M disk needs 500
    rig.dma_setup(BUF, 512)
    res = rig.rw(READ, 0, 0, 1)
    assert res[:2] == [0x40, 0x01]


def test_read_with_dma_channel_masked_is_an_overrun(rig):
    rig.dma_setup(BUF, 512)
    rig.h.outb(0x0A, 0x06)
    res = rig.rw(READ, 0, 0, 1)
    assert res[:2] == [0x40, 0x10]


def test_write_data_changes_exactly_those_bytes_of_the_image(rig):
    before = rig.path.read_bytes()
    rig.mem.write(BUF, b"\xA5" * 1024)
    rig.dma_setup(BUF, 1024, to_memory=False)
    res = rig.rw(WRITE, 1, 1, 5)
    after = rig.path.read_bytes()
    lba = (1 * 2 + 1) * 18 + 4
    assert res == [0x04, 0x00, 0x00, 1, 1, 7, 2]
    assert after[lba * 512:(lba + 2) * 512] == b"\xA5" * 1024
    assert after[:lba * 512] == before[:lba * 512]
    assert after[(lba + 2) * 512:] == before[(lba + 2) * 512:]


def test_write_to_a_read_only_image_reports_not_writable_and_leaves_it(tmp_path):
    rig = Rig(tmp_path, readonly=True)
    before = rig.path.read_bytes()
    rig.mem.write(BUF, b"\x5A" * 512)
    rig.dma_setup(BUF, 512, to_memory=False)
    res = rig.rw(WRITE, 0, 0, 1)
    assert res[0] & 0xC0 == 0x40
    assert res[1] == 0x02                           # NW
    assert rig.path.read_bytes() == before
    rig.disk.close()


def test_sense_drive_status_shows_write_protect_and_track_0(tmp_path):
    rig = Rig(tmp_path, readonly=True)
    rig.command(0x04, 0x00)
    assert rig.results() == [0x40 | 0x20 | 0x10 | 0x08]
    rig.disk.close()


def test_seek_raises_irq_and_sense_interrupt_status_reports_the_cylinder(rig):
    rig.command(0x0F, 0x00, 40)
    assert rig.irq.level
    assert rig.h.inb(MSR) & 0x01                    # drive 0 busy until sensed
    rig.command(0x08)
    assert rig.results() == [0x20, 40]
    assert not rig.irq.level
    assert rig.h.inb(MSR) == RQM


def test_recalibrate_returns_to_cylinder_0(rig):
    rig.command(0x0F, 0x00, 10)
    rig.command(0x08)
    rig.results()
    rig.command(0x07, 0x00)
    rig.command(0x08)
    assert rig.results() == [0x20, 0]


def test_recalibrate_of_a_missing_drive_reports_equipment_check(rig):
    rig.command(0x07, 0x01)
    rig.command(0x08)
    assert rig.results() == [0x71, 0]


def test_sense_interrupt_status_without_an_interrupt_is_invalid(rig):
    rig.command(0x08)
    assert rig.results() == [0x80]


def test_seek_clears_the_disk_change_bit(rig):
    assert rig.h.inb(DIR) & 0x80
    rig.command(0x0F, 0x00, 1)
    assert not rig.h.inb(DIR) & 0x80


def test_dor_reset_interrupts_and_gives_four_sense_results(rig):
    rig.h.outb(DOR, 0x08)
    assert rig.h.inb(MSR) == 0
    rig.h.outb(DOR, 0x0C)
    assert rig.irq.level
    senses = []
    for _ in range(4):
        rig.command(0x08)
        senses.append(rig.results())
    assert senses == [[0xC0, 0], [0xC1, 0], [0xC2, 0], [0xC3, 0]]
    assert not rig.irq.level
    rig.command(0x08)
    assert rig.results() == [0x80]


def test_dsr_software_reset_also_interrupts(rig):
    rig.h.outb(DSR, 0x80)
    assert rig.irq.level
    rig.command(0x08)
    assert rig.results() == [0xC0, 0]


def test_dma_gate_clear_keeps_irq6_low(rig):
    rig.h.outb(DOR, 0x04)
    rig.command(0x0F, 0x00, 3)
    assert not rig.irq.level
    rig.h.outb(DOR, 0x0C)
    assert rig.irq.level


def test_bare_chip_is_held_in_reset_until_nreset_is_set(tmp_path):
    rig = Rig(tmp_path, bios_initialized=False)
    assert rig.h.inb(MSR) == 0
    rig.h.outb(DOR, 0x0C)
    assert rig.h.inb(MSR) == RQM
    assert rig.irq.level
    rig.disk.close()


def test_read_id_reports_the_current_cylinder(rig):
    rig.command(0x0F, 0x04, 7)
    rig.command(0x08)
    rig.results()
    rig.command(0x4A, 0x04)
    res = rig.results()
    assert res[:5] == [0x04, 0, 0, 7, 1]
    assert 1 <= res[5] <= 18 and res[6] == 2


def test_dma_buffer_outside_guest_ram_raises_nothing_and_writes_nothing(rig):
    rig.dma_setup(0xF00000, 512)                    # page 0xF0: far beyond 1 MiB
    res = rig.rw(READ, 0, 0, 1)
    assert res[:2] == [0x40, 0x10]
    assert rig.mem.writes == []


def test_lock_configure_and_dumpreg(rig):
    rig.command(0x94)
    assert rig.results() == [0x10]
    rig.command(0x13, 0x00, 0x57, 0x03)
    rig.command(0x0E)
    res = rig.results()
    assert len(res) == 10
    assert res[7] & 0x80 and res[8:] == [0x57, 0x03]


def test_locked_configure_survives_a_reset(rig):
    rig.command(0x94)
    rig.results()
    rig.command(0x13, 0x00, 0x57, 0x03)
    rig.h.outb(DSR, 0x80)
    for _ in range(4):
        rig.command(0x08)
        rig.results()
    rig.command(0x0E)
    assert rig.results()[8:] == [0x57, 0x03]


def test_non_dma_read_moves_the_sector_through_the_fifo(rig):
    rig.command(0x03, 0xDF, 0x03)                   # SPECIFY with ND=1
    rig.command(0x46, 0x00, 0, 0, 1, 2, 1, 0x1B, 0xFF)  # no MT, EOT = 1
    assert rig.h.inb(MSR) == RQM | DIO | NDMA | CB
    data = bytes(rig.h.inb(FIFO) for _ in range(512))
    assert data == sector_bytes(0)
    assert rig.results() == [0x40, 0x80, 0, 1, 0, 1, 2]  # no TC without DMA: EN


def test_non_dma_write_takes_bytes_from_the_fifo(rig):
    rig.command(0x03, 0xDF, 0x03)
    rig.command(0x45, 0x00, 0, 0, 2, 2, 2, 0x1B, 0xFF)  # one sector: R=2, EOT=2
    assert rig.h.inb(MSR) == RQM | NDMA | CB
    for _ in range(512):
        rig.h.outb(FIFO, 0x3C)
    rig.results()
    assert rig.image_sector(1) == b"\x3C" * 512


def test_format_track_fills_the_sectors_with_the_fill_byte(rig):
    ids = b"".join(bytes([0, 0, r, 2]) for r in range(1, 19))
    rig.mem.write(BUF, ids)
    rig.dma_setup(BUF, len(ids), to_memory=False)
    rig.command(0x4D, 0x00, 2, 18, 0x54, 0xF6)
    res = rig.results()
    assert res[0] & 0xC0 == 0
    assert rig.image_sector(5) == b"\xF6" * 512
    assert rig.image_sector(18) == sector_bytes(18)


def test_720k_image_reads_at_250_kbps(tmp_path):
    rig = Rig(tmp_path, size=737280)
    rig.h.outb(CCR, 2)
    rig.dma_setup(BUF, 512)
    res = rig.rw(READ, 79, 1, 9, eot=9)
    assert res[:3] == [0x04, 0, 0]
    assert rig.mem.read(BUF, 512) == sector_bytes(1439)
    rig.disk.close()


OPCODES = [0x06, 0x46, 0x66, 0xE6, 0x45, 0xC5, 0x56, 0x4A, 0x4D, 0x07, 0x08, 0x03, 0x04,
           0x0F, 0x8F, 0xCF, 0x13, 0x10, 0x0E, 0x14, 0x94, 0x12]
FDC_PORTS = [0x3F0, 0x3F1, 0x3F2, 0x3F3, 0x3F4, 0x3F5, 0x3F7]
DMA_PORTS = list(range(0x10)) + list(range(0x81, 0x90)) + list(range(0xC0, 0xE0))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(FDC_PORTS + DMA_PORTS), st.sampled_from([1, 2, 4]),
                              st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=80))
def test_random_port_accesses_keep_msr_and_the_irq_line_consistent_and_memory_in_ram(tmp_path, ops):
    rig = Rig(tmp_path)
    fdc = rig.fdc
    try:
        for port, size, value, is_write in ops:
            if is_write:
                rig.h.bus.write(port, size, value & ((1 << 8 * size) - 1))
            else:
                dev, off = rig.h.bus.device_at(port), rig.h.bus.offset_at(port)
                assert 0 <= dev.read(off, size) < 1 << (8 * size)   # the device's own answer
            msr = fdc._msr()
            if fdc.phase == Phase.RESET:
                assert msr == 0                                   # nothing while in reset
            else:
                assert msr & RQM                                  # always ready for the CPU
                assert bool(msr & DIO) == (fdc.phase in (Phase.EXEC_READ, Phase.RESULT))
            assert rig.irq.level == (fdc._pending() and bool(fdc.dor & 0x08)
                                     and fdc.phase != Phase.RESET)
        for addr, n in rig.mem.writes:
            assert addr + n <= rig.mem.span
    finally:
        rig.disk.close()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmds=st.lists(st.tuples(st.one_of(st.sampled_from(OPCODES), st.integers(0, 255)),
                               st.lists(st.integers(0, 255), max_size=9)), max_size=12),
       page=st.integers(0, 255), addr=st.integers(0, 0xFFFF), count=st.integers(0, 0xFFFF),
       dor=st.sampled_from([0x0C, 0x1C, 0x08, 0x04, 0x00]))
def test_random_command_sequences_never_raise_or_touch_memory_outside_ram(tmp_path, cmds, page,
                                                                          addr, count, dor):
    rig = Rig(tmp_path)
    try:
        rig.dma_setup(page << 16 | addr, count + 1)
        rig.h.outb(DOR, dor)
        for first, params in cmds:
            for b in (first, *params):
                rig.h.outb(FIFO, b)
            for _ in range(600):                    # drain results / PIO data
                if rig.h.inb(MSR) & (RQM | DIO) != RQM | DIO:
                    break
                rig.h.inb(FIFO)
        for a, n in rig.mem.writes:
            assert a + n <= rig.mem.span
    finally:
        rig.disk.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.sampled_from([0x00, 0x0F, 0x10, 0x11, 0x80, 0xFF]), addr=st.integers(0, 0xFFFF),
       length=st.integers(1, 0x10000), mode=st.sampled_from([0x46, 0x56, 0x66, 0x06, 0x86, 0x4A]),
       r=st.integers(1, 18), mt=st.booleans())
def test_reads_with_random_dma_programming_stay_inside_guest_ram(tmp_path, page, addr, length,
                                                                 mode, r, mt):
    rig = Rig(tmp_path, mem_size=MiB + 4096)
    try:
        h = rig.h
        rig.dma_setup(page << 16 | addr, length)
        h.outb(0x0B, mode)                          # channel 2, any mode/direction
        res = rig.rw(0xC6 if mt else 0x46, 0, 0, r)
        assert len(res) == 7
        written = sum(n for _, n in rig.mem.writes)
        assert written <= length
        for a, n in rig.mem.writes:
            assert a + n <= rig.mem.span
    finally:
        rig.disk.close()
