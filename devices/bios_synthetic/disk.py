"""INT 13h disk services on the host, straight from the disk store."""
from __future__ import annotations

from devices import bios_common as B
from devices.disk_store import (BAD_BUFFER, NO_DRIVE, OUT_OF_RANGE, WRITE_PROTECTED,
                                DiskError)
from hv.hypercall import HypercallContext
from hv.memory import GuestMemoryError

# INT 13h status codes (AH)
ST_OK, ST_BAD_COMMAND, ST_SECTOR_NOT_FOUND, ST_WRITE_PROTECTED = 0x00, 0x01, 0x04, 0x03
ST_DMA_BOUNDARY, ST_TIMEOUT = 0x09, 0x80
STATUS_OF = {NO_DRIVE: ST_TIMEOUT, OUT_OF_RANGE: ST_SECTOR_NOT_FOUND,
             WRITE_PROTECTED: ST_WRITE_PROTECTED, BAD_BUFFER: ST_DMA_BOUNDARY}


def _finish(ctx: HypercallContext, status: int) -> None:
    drive = ctx.regs.dl
    ctx.mem.put8(B.HD_STATUS if drive & 0x80 else B.DISKETTE_STATUS, status)
    ctx.regs.ah = status
    ctx.set_cf(status != ST_OK)


def _chs(ctx: HypercallContext) -> tuple[int, int, int]:
    r = ctx.regs
    cx = r.cx
    return ((cx >> 8) | ((cx & 0xC0) << 2)), r.dh, cx & 0x3F


def ah00(ctx):
    _finish(ctx, ST_OK)


def ah02_03(ctx):
    r, m = ctx.regs, ctx.machine
    write = r.ah == 0x03
    count = r.al
    try:
        disk = m.disks.get(r.dl)
        lba = disk.chs_to_lba(*_chs(ctx))
        buf = (r.es << 4) + r.bx
        if write:
            disk.write(lba, ctx.mem.read(buf, count * 512))
        else:
            ctx.mem.write(buf, disk.read(lba, count))
    except DiskError as e:
        r.al = 0
        _finish(ctx, STATUS_OF.get(e.code, ST_BAD_COMMAND))
        return
    except GuestMemoryError:
        r.al = 0
        _finish(ctx, ST_DMA_BOUNDARY)
        return
    r.al = count
    _finish(ctx, ST_OK)


FUNCTIONS = {0x00: ah00, 0x02: ah02_03, 0x03: ah02_03}


def int13(ctx: HypercallContext) -> None:
    fn = FUNCTIONS.get(ctx.regs.ah)
    if fn is None:
        _finish(ctx, ST_BAD_COMMAND)
    else:
        fn(ctx)


SERVICES = {0x13: int13}
