"""The synthetic BIOS ROM: built from rom.S, committed, and laid out as hypercall stubs."""
from __future__ import annotations

import shutil

import pytest

from hv.devices.bios_synthetic import (HC_VECTOR, ROM_BASE, STUB_ENTRY, VECTOR_STUBS, build,
                                    rom_path, stub_entry)

pytestmark = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils are needed")


def test_committed_rom_matches_its_source(tmp_path):
    built = build.build(tmp_path)[0]
    assert built.read_bytes() == rom_path().read_bytes()


def test_every_vector_entry_is_one_hypercall_then_iret():
    rom = rom_path().read_bytes()
    for vector in (0x00, 0x10, 0x13, 0x16, 0xFF):
        entry = stub_entry(vector)
        assert rom[entry:entry + 3] == b"\x0f\x01\xc1"                       # vmcall
        assert int.from_bytes(rom[entry + 3:entry + 5], "little") == HC_VECTOR + vector
        assert rom[entry + 5] == 0xCF                                         # iret
        assert rom[entry - STUB_ENTRY:entry] == b"\xfb\xf4"                   # sti; hlt


def test_reset_vector_jumps_into_the_rom():
    rom = rom_path().read_bytes()
    assert len(rom) == 0x10000 and ROM_BASE == 0xF0000
    assert rom[0xFFF0] == 0xEA and rom[0xFFF3:0xFFF5] == b"\x00\xf0"
    assert VECTOR_STUBS == 0x1000
