"""disktest and nettest on the reference PC (QEMU + SeaBIOS): ATA by port I/O against the
documented scratch disk, and an NE2000 at 0x300/IRQ 9 on QEMU's user-mode network (slirp).

QEMU command lines (plus -display none -serial stdio -monitor none -no-reboot -m 32):
  disktest: -drive file=disktest.img(padded),if=floppy,format=raw,index=0 -boot a
            -drive if=ide,index=0,media=disk,format=raw,file=SCRATCH   (guests.scratch_disk)
  nettest:  -drive file=nettest.img(padded),if=floppy,format=raw,index=0 -boot a
            -device ne2k_isa,iobase=0x300,irq=9,netdev=n0,mac=52:54:00:12:34:56
            -netdev user,id=n0
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from hv import guests
from tests.qemu_util import NE2000_ARGS, require_qemu, run_image, scratch_disk_args

GOLDEN = Path(__file__).parent / "golden"
DONE = r"(disktest|nettest) done: \d+ passed, \d+ failed\r\n"
SECTOR = 512


def fnv1a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def written_sector(lba: int) -> bytes:
    """What disktest writes to LBA 10-17 (write_word in disktest.c)."""
    return struct.pack("<128I", *((0xA5C30000 ^ (lba << 20) ^ (i * 0x00010101)) & 0xFFFFFFFF
                                  for i in range(128)))


def run_disktest(scratch: Path) -> str:
    return run_image(guests.image_path("disktest"), until=DONE, timeout=60,
                     extra_args=scratch_disk_args(scratch))


def run_nettest(extra_args: list[str] = NE2000_ARGS, timeout: float = 60) -> str:
    return run_image(guests.image_path("nettest"), until=DONE, timeout=timeout, extra_args=extra_args)


@pytest.fixture(scope="module")
def disk_run(tmp_path_factory):
    require_qemu()
    scratch = guests.scratch_disk(tmp_path_factory.mktemp("disk") / "scratch.img")
    return run_disktest(scratch), scratch.read_bytes()


@pytest.fixture(scope="module")
def disk_serial(disk_run):
    return disk_run[0]


@pytest.fixture(scope="module")
def net_serial():
    require_qemu()
    return run_nettest()


# ---- the scratch disk (no QEMU needed) -------------------------------------------------------

def test_scratch_disk_is_4_mib_of_the_documented_pattern(tmp_path):
    data = guests.scratch_disk(tmp_path / "s.img").read_bytes()
    assert len(data) == 8192 * SECTOR
    for n in (0, 1, 100, 8191):
        words = struct.unpack_from("<128I", data, n * SECTOR)
        assert words == tuple(((n * 0x01000193) ^ i) & 0xFFFFFFFF for i in range(128))


def test_scratch_disk_size_is_a_parameter(tmp_path):
    assert guests.scratch_disk(tmp_path / "s.img", sectors=16).stat().st_size == 16 * SECTOR


# ---- disktest --------------------------------------------------------------------------------

def test_disktest_output_matches_the_golden_file(disk_serial):
    assert disk_serial == (GOLDEN / "disktest.serial.txt").read_bytes().decode("latin-1")


def test_disktest_passes_every_step(disk_serial):
    assert not [line for line in disk_serial.splitlines() if line.startswith("FAIL")]
    assert re.search(r"disktest done: \d+ passed, 0 failed\r\n$", disk_serial)


def test_disktest_reports_the_scratch_disk_capacity(disk_serial):
    assert "capacity 8192 sectors, LBA yes\r\n" in disk_serial


def test_disktest_checksums_are_fnv1a_of_the_scratch_pattern(disk_serial):
    sums = re.findall(r"^PASS read (?:sectors|multiple) lba (\d+)(?:-(\d+))? fnv1a ([0-9a-f]{8})\r$",
                      disk_serial, re.M)
    assert len(sums) == 6
    for first, last, digest in sums:
        lbas = range(int(first), int(last or first) + 1)
        assert int(digest, 16) == fnv1a(b"".join(guests.scratch_sector(n) for n in lbas))


def test_disktest_read_back_checksum_is_of_the_written_pattern(disk_serial):
    m = re.search(r"^PASS read back lba 10-17 fnv1a ([0-9a-f]{8})\r$", disk_serial, re.M)
    assert m and int(m.group(1), 16) == fnv1a(b"".join(written_sector(n) for n in range(10, 18)))


def test_disktest_writes_lba_10_to_17_and_nothing_else(disk_run):
    _, after = disk_run
    expected = bytearray(b"".join(guests.scratch_sector(n) for n in range(8192)))
    expected[10 * SECTOR:18 * SECTOR] = b"".join(written_sector(n) for n in range(10, 18))
    assert after == bytes(expected)


def test_disktest_fails_on_a_disk_without_the_pattern(tmp_path):
    require_qemu()
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(8192 * SECTOR))
    out = run_disktest(blank)
    assert "FAIL read sectors lba 0: data differs from the pattern" in out
    assert re.search(r"disktest done: \d+ passed, [1-9]\d* failed", out)


def test_disktest_output_is_the_same_on_a_second_run(disk_serial, tmp_path):
    assert run_disktest(guests.scratch_disk(tmp_path / "s.img")) == disk_serial


# ---- nettest ---------------------------------------------------------------------------------

def test_nettest_output_matches_the_golden_file(net_serial):
    assert net_serial == (GOLDEN / "nettest.serial.txt").read_bytes().decode("latin-1")


def test_nettest_passes_every_step(net_serial):
    assert not [line for line in net_serial.splitlines() if line.startswith(("FAIL", "timeout"))]
    assert re.search(r"nettest done: \d+ passed, 0 failed\r\n$", net_serial)


def test_nettest_finds_the_slirp_gateway_mac(net_serial):
    assert "gateway 10.0.2.2 is at 52:55:0a:00:02:02\r\n" in net_serial


def test_nettest_gets_one_echo_reply_per_request(net_serial):
    assert re.findall(r"^reply from 10\.0\.2\.2: icmp_seq=(\d) bytes=64\r$", net_serial, re.M) == ["1", "2", "3"]


def test_nettest_reads_the_station_address_from_the_card_prom():
    require_qemu()
    args = [a.replace("52:54:00:12:34:56", "52:54:00:ab:cd:ef") for a in NE2000_ARGS]
    out = run_nettest(args)
    assert "mac 52:54:00:ab:cd:ef\r\n" in out
    assert re.search(r"nettest done: \d+ passed, 0 failed", out)


def test_nettest_reports_a_missing_arp_reply_when_the_gateway_is_elsewhere():
    require_qemu()
    # slirp's gateway is 10.0.3.2 on this network, so nobody answers for 10.0.2.2.
    args = [a.replace("user,id=n0", "user,id=n0,net=10.0.3.0/24") for a in NE2000_ARGS]
    out = run_nettest(args)
    assert "FAIL arp: no ARP reply\r\n" in out
    assert "reply from" not in out
    assert re.search(r"nettest done: \d+ passed, [1-9]\d* failed", out)


def test_nettest_reports_a_missing_card():
    require_qemu()
    out = run_nettest([])
    assert "FAIL reset: no card (floating bus)\r\n" in out
    assert out.endswith("nettest done: 0 passed, 1 failed\r\n")
