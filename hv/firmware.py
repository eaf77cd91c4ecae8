"""Choosing the firmware: the emulated ROM (guest code), the synthetic one (host code),
direct kernel boot (hv/boot.py), or the Linux boot protocol (hv/linux_boot.py)."""
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
        from hv.firmware_tables import install_tables
        machine.mem.load_rom(BIOS_BASE, rom_path().read_bytes())
        install_tables(machine.mem)          # MP and ACPI tables in the ROM's spare window

    def post_reset(self, machine: "Machine") -> None:
        """The ROM does its own POST from the reset vector."""


def firmware_for(config):
    """The firmware a configuration boots with: the Linux boot protocol for a bzImage,
    direct boot for another kernel, else the BIOS style asked for."""
    if config.kernel:
        from hv.linux_boot import is_bzimage
        fmt = getattr(config, "kernel_format", "auto")
        if fmt == "bzimage" or (fmt == "auto" and is_bzimage(config.kernel)):
            from hv.linux_boot import LinuxBoot
            return LinuxBoot()
        from hv.boot import DirectBoot
        return DirectBoot()
    if getattr(config, "initrd", None):
        raise ValueError("--initrd needs --kernel")
    if config.bios == "emulated":
        return EmulatedBios()
    if config.bios == "synthetic":
        from hv.devices.bios_synthetic import SyntheticBios
        return SyntheticBios()
    raise ValueError(f"unknown BIOS style {config.bios!r} (emulated or synthetic)")
