"""Emulated storage and network under hv: the disktest and nettest guests against their
QEMU golden output, durability across SIGKILL, pcap captures, drive options and bad input."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import hvcmd
from hv import guests
from hv.machine import BIOS_STYLES, DriveSpec, Machine, MachineConfig
from tests.asm import assemble, write_image
from tests.guest_run import expect_finished

GOLDEN = Path(__file__).parent / "golden"


def hv(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return hvcmd.run(list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.serial.txt").read_bytes().decode("latin-1")


@pytest.mark.parametrize("bios", BIOS_STYLES)
def test_disktest_with_no_options_prints_the_qemu_output(bios):
    r = hv("run", "disktest", "--bios", bios, "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace("\n", "\r\n") == golden("disktest") or r.stdout == golden("disktest")


@pytest.mark.parametrize("bios", BIOS_STYLES)
def test_nettest_with_no_options_pings_the_gateway_like_qemu(bios):
    r = hv("run", "nettest", "--bios", bios, "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace("\n", "\r\n") == golden("nettest") or r.stdout == golden("nettest")


def test_disktest_leaves_no_scratch_disk_behind(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = hvcmd.run(["run", "disktest", "--timeout", "60"], capture_output=True,
                       text=True, timeout=90, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_a_flushed_guest_write_survives_sigkill(tmp_path):
    disk = tmp_path / "disk.img"
    guests.scratch_disk(disk)
    before = disk.read_bytes()
    proc = hvcmd.popen(["run", "disktest", "--hda", str(disk), "--no-live"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    seen = b""
    deadline = time.monotonic() + 60
    while b"PASS flush cache" not in seen and time.monotonic() < deadline:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        seen += chunk
    proc.send_signal(signal.SIGKILL)     # right after the guest saw its flush complete
    proc.wait()
    assert b"PASS flush cache" in seen
    after = disk.read_bytes()
    changed = {i for i in range(len(after) // 512) if after[i * 512:(i + 1) * 512] != before[i * 512:(i + 1) * 512]}
    assert changed == set(range(10, 18))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
def test_a_ping_run_writes_a_pcap_that_tshark_reads_with_arp_and_icmp(tmp_path):
    pcap = tmp_path / "ping.pcap"
    r = hv("run", "nettest", "--pcap", str(pcap), "--timeout", "60")
    assert r.returncode == 0
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.protocols"],
                         capture_output=True, text=True, timeout=60).stdout
    protocols = out.split()
    assert any("arp" in p for p in protocols)
    assert sum("icmp" in p for p in protocols) >= 6          # 3 requests, 3 replies


@pytest.mark.parametrize("bios", BIOS_STYLES)
def test_a_boot_sector_writing_its_floppy_changes_exactly_those_sectors(bios, tmp_path):
    # Write sectors 5 and 6 (CHS 0/0/6-7) with a pattern through INT 13h AH=03h.
    img = write_image(tmp_path / "f.img", assemble("""
        xor %ax, %ax
        mov %ax, %es
        mov $0x8000, %di
        mov $1024, %cx
        mov $0xA5, %al
        rep stosb
        mov $0x0302, %ax        # write 2 sectors
        mov $0x0006, %cx        # cylinder 0, sector 6
        xor %dh, %dh
        mov $0x8000, %bx
        int $0x13
        cli
        hlt
"""))
    img.write_bytes(img.read_bytes().ljust(1474560, b"\0"))
    before = img.read_bytes()
    m = Machine(MachineConfig(bios=bios, fda=DriveSpec(str(img)), timeout=20))
    try:
        expect_finished(m, m.run())
    finally:
        m.close()
    after = img.read_bytes()
    changed = {i for i in range(len(after) // 512) if after[i * 512:(i + 1) * 512] != before[i * 512:(i + 1) * 512]}
    assert changed == {5, 6}
    assert after[5 * 512:7 * 512] == b"\xa5" * 1024


def test_snapshot_discards_the_guest_writes(tmp_path):
    disk = tmp_path / "disk.img"
    guests.scratch_disk(disk)
    digest = hashlib.sha256(disk.read_bytes()).hexdigest()
    r = hv("run", "disktest", "--hda", f"{disk},snapshot", "--timeout", "60")
    assert "PASS write lba 10-17" in r.stdout
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == digest


def test_a_read_only_disk_refuses_the_guest_write_with_an_ata_error(tmp_path):
    disk = tmp_path / "disk.img"
    guests.scratch_disk(disk)
    digest = hashlib.sha256(disk.read_bytes()).hexdigest()
    r = hv("run", "disktest", "--hda", f"{disk},ro", "--timeout", "60")
    assert "FAIL write lba 10-17" in r.stdout
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == digest


def test_overlay_keeps_the_base_untouched_and_commit_merges_it(tmp_path):
    base, ovl = tmp_path / "base.img", tmp_path / "disk.ovl"
    guests.scratch_disk(base)
    before = base.read_bytes()
    assert hv("disk", "create", str(ovl), "--base", str(base)).returncode == 0
    r = hv("run", "disktest", "--hda", str(ovl), "--timeout", "60")
    assert "PASS read back lba 10-17" in r.stdout
    assert base.read_bytes() == before
    assert hv("disk", "commit", str(ovl)).returncode == 0
    after = base.read_bytes()
    assert after[:10 * 512] == before[:10 * 512] and after[18 * 512:] == before[18 * 512:]
    assert after[10 * 512:18 * 512] != before[10 * 512:18 * 512]


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_read_only_file_attached_for_writing_is_refused(tmp_path):
    img = tmp_path / "ro.img"
    img.write_bytes(guests.image_path("hello").read_bytes())
    img.chmod(0o444)
    r = hv("run", "--hda", str(img))
    assert r.returncode == 2 and "read-only" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_overlay_whose_base_changed_is_refused_and_nothing_is_modified(tmp_path):
    base, ovl = tmp_path / "base.img", tmp_path / "disk.ovl"
    guests.scratch_disk(base)
    assert hv("disk", "create", str(ovl), "--base", str(base)).returncode == 0
    data = bytearray(base.read_bytes())
    data[0] ^= 0xFF
    base.write_bytes(bytes(data))
    b, o = digest(base), digest(ovl)
    r = hv("run", "--hda", str(ovl))
    assert r.returncode == 2 and "base" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (digest(base), digest(ovl)) == (b, o)


def test_bad_network_and_nic_options_get_one_line(tmp_path):
    for args, message in ((["--net", "bogus"], "net"), (["--nic", "e1000"], "--nic"),
                          (["--nic", "ne2000,irq=99"], "--nic"),
                          (["--pcap", str(tmp_path / "no" / "dir" / "x.pcap"), "--net", "user"], "")):
        r = hv("run", "hello", *args)
        assert r.returncode == 2, args
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_two_machines_on_one_switch_ping_each_other():
    """Two NE2000s on one switch: A (nettest, 10.0.2.15) pings B (netpeer, which plays the
    gateway 10.0.2.2), then B pings A back."""
    from tests.net_peer import run_pair
    a_out, b_out = run_pair()
    assert a_out.count("reply from 10.0.2.2: icmp_seq=") == 3, (a_out, b_out)
    assert b_out.count("reply from 10.0.2.15: icmp_seq=") == 3, (a_out, b_out)
