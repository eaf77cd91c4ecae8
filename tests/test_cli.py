"""The hv command: bad input gets one line and a non-zero exit, and no image is modified."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests import hvcmd
from hv import guests



def hv(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return hvcmd.run(list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_help_lists_run_and_its_options():
    out = hv("run", "--help").stdout
    for opt in ("--mem", "--bios", "--serial", "--screen", "--screenshot", "--input",
                "--input-file", "--until", "--timeout", "--stats", "--trace", "--fda", "--hda"):
        assert opt in out


def test_run_hello_prints_on_serial_and_exits_zero():
    r = hv("run", "hello", "--timeout", "20")
    assert r.returncode == 0
    assert "Hello" in r.stdout


def test_screen_prints_the_final_text_screen():
    r = hv("run", "hello", "--serial", "none", "--screen", "--timeout", "20")
    assert r.returncode == 0
    assert "Hello" in r.stdout


def test_until_stops_with_exit_zero_when_serial_matches():
    r = hv("run", "timer", "--until", r"tick 2", "--timeout", "20")
    assert r.returncode == 0
    assert "tick 2" in r.stdout and "timer done" not in r.stdout


def test_timeout_stops_and_says_so():
    r = hv("run", "keyecho", "--timeout", "1")
    assert r.returncode == 124
    assert "timeout" in r.stderr


def test_stats_prints_the_exit_table_and_the_dispatch():
    r = hv("run", "hello", "--stats", "--timeout", "20")
    assert "dispatch:" in r.stderr
    assert "hypercall" in r.stderr or "pio" in r.stderr


def test_trace_shows_exits_with_disassembly():
    r = hv("run", "hello", "--trace", "--serial", "none", "--timeout", "20")
    assert r.returncode == 0
    assert "out" in r.stderr and "CS:IP=" in r.stderr


def test_screenshot_writes_a_png(tmp_path):
    png = tmp_path / "s.png"
    r = hv("run", "hello", "--screenshot", str(png), "--timeout", "20")
    assert r.returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("content, message", [
    (None, "no such image"),
    (b"", "empty"),
    (b"\0" * 700, "multiple of 512"),
])
def test_bad_images_get_one_line_and_exit_2(tmp_path, content, message):
    img = tmp_path / "x.img"
    if content is not None:
        img.write_bytes(content)
    r = hv("run", str(img))
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unreadable_image_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read a file without read permission")
    img = tmp_path / "x.img"
    img.write_bytes(bytes(512))
    img.chmod(0)
    r = hv("run", str(img))
    assert r.returncode == 2 and "cannot read" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--mem", "12Q"], "--mem"),
    (["--mem", "1000"], "--mem"),
    (["--input", "{nosuchkey}"], "--input"),
    (["--until", "("], "--until"),
    (["--timeout", "-1"], "--timeout"),
    (["--fda", "x.img,rw"], "drive flag"),
    (["--screenshot", "shot.jpg"], "png"),
])
def test_bad_option_values_get_one_line_and_do_not_touch_the_image(tmp_path, args, message):
    img = tmp_path / "boot.img"
    img.write_bytes(guests.image_path("hello").read_bytes())
    before = digest(img)
    r = hv("run", str(img), *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert digest(img) == before


def test_list_names_the_built_in_guests():
    out = hv("list").stdout
    for name in ("hello", "timer", "keyecho", "bioscheck"):
        assert name in out


def test_disk_create_size_makes_a_blank_sparse_disk_a_guest_can_use(tmp_path):
    disk = tmp_path / "blank.img"
    r = hv("disk", "create", str(disk), "--size", "64M")
    assert r.returncode == 0, r.stderr
    assert disk.stat().st_size == 64 << 20
    assert disk.stat().st_blocks * 512 < 1 << 20           # sparse: nothing written
    assert "131072 sectors" in hv("disk", "info", str(disk)).stdout
    r = hv("run", "hello", "--hda", str(disk), "--timeout", "20")     # attaches as disk 0x80
    assert r.returncode == 0 and disk.stat().st_size == 64 << 20


@pytest.mark.parametrize("args, message", [
    (["--size", "1000"], "512-byte sectors"),
    (["--size", "1x"], "bad disk size"),
    ([], "one of the arguments --size --base is required"),
    (["--size", "1M", "--base", "x"], "not allowed with"),
])
def test_disk_create_refuses_bad_input_in_one_line(tmp_path, args, message):
    r = hv("disk", "create", str(tmp_path / "d.img"), *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "d.img").exists()


def test_disk_create_never_overwrites(tmp_path):
    disk = tmp_path / "d.img"
    disk.write_bytes(b"keep" * 128)
    r = hv("disk", "create", str(disk), "--size", "1M")
    assert r.returncode == 2 and "already exists" in r.stderr
    assert disk.read_bytes() == b"keep" * 128
