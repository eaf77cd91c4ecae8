"""The host disk port: the emulated BIOS's one shortcut to the disk store.

Until IDE and floppy controllers exist, the emulated BIOS's INT 13h moves
sectors through this block of 32-bit registers (base 0x5F0); the host copies
whole transfers straight into guest RAM, so one request costs one exit.

  0x00 COMMAND (write: 1 READ, 2 WRITE, 3 IDENTIFY; runs at once) / STATUS (read)
  0x04 DRIVE   BIOS drive number       0x08 LBA      0x0C COUNT (sectors)
  0x10 BUFFER  guest physical address  -- after IDENTIFY: --
  0x14 TOTAL_SECTORS 0x18 CYLINDERS 0x1C HEADS 0x20 SECTORS_PER_TRACK
  0x24 TYPE (0 none, 1 floppy, 2 hard disk) 0x28 FLOPPY_CMOS_TYPE
STATUS: 0 OK, 1 no such drive, 2 out of range, 3 write protected,
4 bad buffer address, 5 bad command.
"""
from __future__ import annotations

from devices.base import Device, PortRange
from devices.disk_store import (BAD_BUFFER, BAD_COMMAND, OK, SECTOR, DiskError, DiskStore)
from hv.memory import GuestMemory, GuestMemoryError

BASE = 0x5F0
CMD_READ, CMD_WRITE, CMD_IDENTIFY = 1, 2, 3
REG_COMMAND, REG_DRIVE, REG_LBA, REG_COUNT, REG_BUFFER = 0x00, 0x04, 0x08, 0x0C, 0x10
REG_TOTAL, REG_CYLS, REG_HEADS, REG_SPT, REG_TYPE, REG_CMOS = 0x14, 0x18, 0x1C, 0x20, 0x24, 0x28
NREGS = 11
MAX_TRANSFER = 0x10000 // SECTOR * 16   # generous cap: one request never exceeds 4 MiB


class HostDiskPort(Device):
    name = "hostdisk"
    ports = (PortRange(BASE, NREGS * 4),)

    def __init__(self, store: DiskStore, mem: GuestMemory) -> None:
        self.store = store
        self.mem = mem
        self.reset()

    def reset(self) -> None:
        self.regs = [0] * NREGS
        self.status = OK

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):
            value |= self._read_byte(offset + i) << (8 * i)
        return value

    def _read_byte(self, off: int) -> int:
        idx, shift = divmod(off, 4)
        if idx >= NREGS:
            return 0xFF
        reg = self.status if idx == 0 else self.regs[idx]
        return (reg >> (8 * shift)) & 0xFF

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            idx, shift = divmod(offset + i, 4)
            if idx < NREGS:
                b = (value >> (8 * i)) & 0xFF
                self.regs[idx] = (self.regs[idx] & ~(0xFF << (8 * shift))) | (b << (8 * shift))
        if offset == REG_COMMAND:
            self._execute(self.regs[0] & 0xFF)

    def _execute(self, cmd: int) -> None:
        r = self.regs
        try:
            if cmd == CMD_IDENTIFY:
                self._identify()
            elif cmd in (CMD_READ, CMD_WRITE):
                disk = self.store.get(r[1] & 0xFF)
                lba, count, buf = r[2], r[3], r[4]
                if count > MAX_TRANSFER:
                    raise DiskError(BAD_COMMAND, "transfer too long")
                try:
                    self.mem.check(buf, count * SECTOR)
                except GuestMemoryError:
                    raise DiskError(BAD_BUFFER, "buffer outside guest RAM") from None
                if cmd == CMD_READ:
                    self.mem.write(buf, disk.read(lba, count))
                else:
                    disk.write(lba, self.mem.read(buf, count * SECTOR))
            else:
                raise DiskError(BAD_COMMAND, f"unknown command {cmd}")
            self.status = OK
        except DiskError as e:
            self.status = e.code

    def _identify(self) -> None:
        r = self.regs
        for i in range(5, NREGS):
            r[i] = 0
        disk = self.store.drives.get(r[1] & 0xFF)
        if disk is None:
            return
        g = disk.geometry
        r[5], r[6], r[7], r[8] = disk.sectors, g.cylinders, g.heads, g.sectors
        r[9] = 1 if disk.kind == "floppy" else 2
        r[10] = disk.cmos_type
