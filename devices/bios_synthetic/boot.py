"""INT 19h: bootstrap loader. Floppy A first, then the first hard disk."""
from __future__ import annotations

from hv.devices.bios_synthetic import HALT_STUB, video
from hv.devices.disk_store import DiskError
from hv.hypercall import HypercallContext

BOOT_ADDR = 0x7C00
BOOT_ORDER = (0x00, 0x80)
NO_BOOT_MESSAGE = "No bootable device."


def int19(ctx: HypercallContext) -> None:
    m, regs = ctx.machine, ctx.regs
    for drive in BOOT_ORDER:
        disk = m.disks.drives.get(drive)
        if disk is None:
            continue
        try:
            sector = disk.read(0, 1)
        except DiskError:
            continue
        if sector[510:512] != b"\x55\xaa":
            continue
        m.mem.write(BOOT_ADDR, sector)
        # The state a boot sector may rely on: CS:IP = 0000:7C00, DL = drive,
        # a stack below the boot sector, segments zero, interrupts on.
        for seg in ("ds", "es", "ss"):
            setattr(regs, seg, 0)
        regs.esp = BOOT_ADDR
        regs.edx = drive
        regs.eflags = 0x202
        regs.cs = 0
        regs.eip = BOOT_ADDR          # last: forces the engine to leave this block
        return
    video.write_string(m, NO_BOOT_MESSAGE + "\r\n")
    m.uart_write(NO_BOOT_MESSAGE + "\r\n")
    regs.cs = 0xF000
    regs.eip = HALT_STUB


SERVICES = {0x19: int19}
