"""The committed guest images are exactly what `python -m hv.guests.build` makes, and bootable."""
from __future__ import annotations

import shutil
import sys
import types

import pytest

from hv import guests
from hv.guests import build

needs_toolchain = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("as", "ld", "gcc")), reason="GNU as/ld/gcc not installed"
)


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    out = tmp_path_factory.mktemp("images")
    build.build_guests(out)
    return out


@needs_toolchain
@pytest.mark.parametrize("name", guests.names())
def test_rebuilding_gives_the_committed_image_byte_for_byte(rebuilt, name):
    assert (rebuilt / f"{name}.img").read_bytes() == guests.image_path(name).read_bytes()


@pytest.mark.parametrize("name", guests.names())
def test_image_is_whole_sectors(name):
    size = guests.image_path(name).stat().st_size
    assert size > 0 and size % 512 == 0


@pytest.mark.parametrize("name", guests.names())
def test_sector_zero_has_the_boot_signature(name):
    assert guests.image_path(name).read_bytes()[510:512] == b"\x55\xaa"


def test_names_lists_every_guest():
    assert set(guests.names()) >= {"hello", "timer", "keyecho", "bioscheck", "disktest", "nettest"}


def test_image_path_rejects_an_unknown_guest():
    with pytest.raises(ValueError):
        guests.image_path("no-such-guest")


def test_bioscheck_scratch_sector_is_the_last_sector():
    # The INT 13h write checks overwrite (then restore) the image's last sector.
    data = guests.image_path("bioscheck").read_bytes()
    assert data[-512:].startswith(b"hv bioscheck scratch sector")


def test_firmware_hook_skips_builders_that_do_not_exist(monkeypatch):
    monkeypatch.setattr(build, "FIRMWARE_BUILDERS", ("hv.devices.no_such_firmware.build",))
    assert build.build_firmware() == []


def test_firmware_hook_passes_outdir_to_a_builder(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("fake_fw_build")
    fake.build = lambda *args: calls.append(args) or [tmp_path / "fw.bin"]
    monkeypatch.setitem(sys.modules, "fake_fw_build", fake)
    monkeypatch.setattr(build, "FIRMWARE_BUILDERS", ("fake_fw_build",))
    assert build.build_firmware(tmp_path) == [tmp_path / "fw.bin"]
    assert calls == [(tmp_path,)]


def test_firmware_hook_calls_a_builder_with_no_arguments_by_default(monkeypatch):
    calls = []
    fake = types.ModuleType("fake_fw_build")
    fake.build = lambda *args: calls.append(args) or []
    monkeypatch.setitem(sys.modules, "fake_fw_build", fake)
    monkeypatch.setattr(build, "FIRMWARE_BUILDERS", ("fake_fw_build",))
    build.build_firmware()
    assert calls == [()]
