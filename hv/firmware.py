"""Choosing the BIOS: the emulated ROM (guest code) or the synthetic one (host code)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hv.memory import BIOS_BASE

if TYPE_CHECKING:
    from hv.machine import Machine


class EmulatedBios:
    """A PC BIOS that runs inside the guest and drives the emulated hardware."""

    name = "emulated"

    def install(self, machine: "Machine") -> None:
        from hv.devices.bios_emulated import rom_path
        machine.mem.load_rom(BIOS_BASE, rom_path().read_bytes())

    def post_reset(self, machine: "Machine") -> None:
        """The ROM does its own POST from the reset vector."""


def firmware_for(style: str):
    if style == "direct":       # --kernel: no BIOS; the kernel comes from machine.config
        from hv.boot import DirectBoot
        return DirectBoot()
    if style == "emulated":
        return EmulatedBios()
    if style == "synthetic":
        from hv.devices.bios_synthetic import SyntheticBios
        return SyntheticBios()
    raise ValueError(f"unknown BIOS style {style!r} (emulated or synthetic)")
