"""The emulated BIOS: a real PC BIOS ROM built from source in this package.

It runs inside the guest (loaded at 0xF0000-0xFFFFF, reset at F000:FFF0) and
does its work through the emulated hardware. ``build.py`` rebuilds
``bios.bin``; see ``README.md`` for the memory and stack layout.
"""
from __future__ import annotations

from pathlib import Path

ROM_LOAD_ADDRESS = 0xF0000
ROM_SIZE = 0x10000


def rom_path() -> Path:
    """Path of the built 64 KiB ROM image."""
    return Path(__file__).resolve().parent / "bios.bin"
