"""The built-in guests under hv, with both BIOS styles; bioscheck against QEMU + SeaBIOS."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hv import guests
from hv.machine import BIOS_STYLES, DriveSpec, Machine, MachineConfig
from tests.conftest import disk_copy
from tests.guest_run import expect_finished
from tests.qemu_util import qemu_available, run_image

GOLDEN = Path(__file__).parent / "golden" / "bioscheck.serial.txt"
DONE = r"bioscheck done: \d+ passed, \d+ failed\r\n"


def run_guest(name: str, bios: str, tmp_path: Path, drive: str = "fda", timeout: float = 20,
              **kw) -> Machine:
    # A scratch copy: bioscheck writes (and restores) sectors of its own disk.
    img = disk_copy(guests.image_path(name), tmp_path / f"{name}.img", drive)
    m = Machine(MachineConfig(bios=bios, timeout=timeout, **{drive: DriveSpec(str(img))}, **kw))
    try:
        m.result_ = expect_finished(m, m.run(), name)
    finally:
        m.close()
    return m


@pytest.fixture(params=BIOS_STYLES)
def bios(request):
    return request.param


def test_hello_greets_on_serial_and_screen(bios, tmp_path):
    m = run_guest("hello", bios, tmp_path)
    assert "Hello" in m.serial_text()
    assert "Hello" in m.screen_text()
    assert m.result_.exit_code == 0


def test_timer_guest_counts_five_ticks_and_sees_the_pit_count_down(bios, tmp_path):
    m = run_guest("timer", bios, tmp_path)
    out = m.serial_text()
    assert [f"tick {i}" in out for i in range(1, 6)] == [True] * 5
    assert "pit: counting down" in out and "timer done" in out


def test_keyecho_echoes_typed_keys_and_names_arrows(bios, tmp_path):
    from hv.devices.keymap import parse_input
    keys = [ev for k in parse_input("Hi{up}\r{esc}") for ev in k.events]
    m = run_guest("keyecho", bios, tmp_path, input_keys=keys)
    out = m.serial_text()
    assert "Hi<up>\r\n" in out and out.rstrip().endswith("bye"), out


@pytest.mark.parametrize("drive", ["fda", "hda"])
def test_bioscheck_passes_every_check(bios, drive, tmp_path):
    m = run_guest("bioscheck", bios, tmp_path, drive=drive, until=DONE, timeout=60)
    out = m.serial_text()
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fails == [] and re.search(r"bioscheck done: \d+ passed, 0 failed", out), out


@pytest.mark.parametrize("drive", ["fda", "hda"])
def test_bioscheck_serial_output_is_identical_to_qemu_with_seabios(bios, drive, tmp_path):
    if not qemu_available():
        pytest.skip("qemu-system-i386 is not installed (apt-get install qemu-system-x86)")
    reference = run_image(guests.image_path("bioscheck"), drive="floppy" if drive == "fda" else "hd",
                          until=DONE, timeout=30)
    m = run_guest("bioscheck", bios, tmp_path, drive=drive, until=DONE, timeout=60)
    assert m.serial_text() == reference
    assert reference == GOLDEN.read_bytes().decode("latin-1")


def test_a_disk_with_no_boot_signature_is_refused_on_screen_and_serial(bios, tmp_path):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1474560))
    m = Machine(MachineConfig(bios=bios, fda=DriveSpec(str(blank)), timeout=10))
    result = m.run()
    m.close()
    assert "No bootable device." in m.serial_text()
    assert "No bootable device." in m.screen_text()
    assert result.exit_code != 0
