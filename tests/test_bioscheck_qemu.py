"""bioscheck passes every check on the reference PC (QEMU + SeaBIOS), floppy and hard disk."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hv import guests
from tests.qemu_util import run_image

GOLDEN = Path(__file__).parent / "golden" / "bioscheck.serial.txt"
DONE = r"bioscheck done: \d+ passed, \d+ failed\r\n"


@pytest.fixture(scope="module", params=["floppy", "hd"])
def serial(request):
    return run_image(guests.image_path("bioscheck"), drive=request.param, until=DONE, timeout=25)


def test_bioscheck_finishes_with_a_summary(serial):
    assert re.search(DONE, serial)


def test_every_check_passes(serial):
    fails = [line for line in serial.splitlines() if line.startswith("FAIL")]
    assert fails == []
    assert re.search(r"bioscheck done: \d+ passed, 0 failed", serial)


def test_every_line_is_a_result_or_the_summary(serial):
    for line in serial.split("\r\n")[:-1]:
        assert re.fullmatch(r"(PASS \w+|FAIL \w+ .*|bioscheck done: \d+ passed, \d+ failed)", line), line


def test_int19_reboot_is_reported_just_before_the_summary(serial):
    lines = serial.split("\r\n")
    assert lines[-3:] == ["PASS int19", lines[-2], ""] and lines[-2].startswith("bioscheck done")


def test_output_matches_the_golden_file(serial):
    assert serial == GOLDEN.read_bytes().decode("latin-1")


def test_a_write_protected_floppy_makes_the_write_check_fail():
    # Shows the checks can fail: the BIOS reports the write error and bioscheck says so.
    out = run_image(guests.image_path("bioscheck"), until=DONE, timeout=25, readonly=True)
    assert re.search(r"^FAIL int13_03 write status", out, re.M)
    assert re.search(r"bioscheck done: \d+ passed, [1-9]\d* failed", out)
