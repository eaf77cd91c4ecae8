"""INT 13h disk services on the host, straight from the disk store.

Follows SeaBIOS src/disk.c: a drive number with no drive, a bad CHS address or
an LBA past the end fail with status 01h (invalid parameter); floppies accept
only the classic functions (00-05, 08, 15, 16) and answer everything else,
the EDD calls 41h-48h included, with 01h. The status of every call lands in
BDA 0x441 (floppies) or 0x474 (hard disks) for AH=01h.
"""
from __future__ import annotations

import struct

from hv.devices import bios_common as B
from hv.devices.base import write_ram
from hv.devices.bios_synthetic import DPT_OFFSET
from hv.devices.disk_store import BAD_BUFFER, NO_DRIVE, OUT_OF_RANGE, WRITE_PROTECTED, DiskError
from hv.hypercall import HypercallContext
from hv.memory import GuestMemoryError

SECTOR = 512

# INT 13h status codes (AH), names as SeaBIOS std/disk.h
ST_OK = 0x00
ST_EPARAM = 0x01              # bad command / invalid parameter
ST_EADDRNOTFOUND = 0x02
ST_EWRITEPROTECT = 0x03
ST_ENOTFOUND = 0x04           # sector not found
ST_EBOUNDARY = 0x09           # DMA across a 64K boundary (here: a buffer outside RAM)
ST_ECHANGED = 0x06
ST_ENOTREMOVABLE = 0xB2
ST_TIMEOUT = 0x80
STATUS_OF = {NO_DRIVE: ST_EPARAM, OUT_OF_RANGE: ST_EPARAM,
             WRITE_PROTECTED: ST_EWRITEPROTECT, BAD_BUFFER: ST_EBOUNDARY}

MAX_CHS_SECTORS = 128         # SeaBIOS refuses AL > 128 (a 64K buffer)
CHUNK_SECTORS = 128           # sectors moved per disk call (64 KiB of host memory)
MAX_CYLINDER = 1023           # what CH/CL can express
EDD_VERSION = 0x30            # EDD 3.0
EDD_FEATURES = 0x0007         # 42h-44h,47h,48h | 45h,46h,48h,49h | EDD (SeaBIOS)
EDD_SIG_OUT = 0xAA55
EDD_PARAMS_1X, EDD_PARAMS_2X = 0x1A, 0x1E
EDD_FLAG_CHS_VALID = 0x0002
NO_DPTE = 0xFFFFFFFF
DASD_NONE, DASD_FLOPPY_NO_CHANGELINE, DASD_HARD_DISK = 0x00, 0x01, 0x03
FLOPPY_FUNCTIONS = frozenset((0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x15, 0x16))


def _set_status(ctx: HypercallContext, status: int) -> None:
    ctx.mem.put8(B.HD_STATUS if ctx.regs.dl & 0x80 else B.DISKETTE_STATUS, status)


def _finish(ctx: HypercallContext, status: int) -> None:
    _set_status(ctx, status)
    ctx.regs.ah = status
    ctx.set_cf(status != ST_OK)


def _floppy(ctx: HypercallContext) -> bool:
    return not ctx.regs.dl & 0x80


def _chs(ctx: HypercallContext) -> tuple[int, int, int]:
    r = ctx.regs
    cx = r.cx
    return ((cx >> 8) | ((cx & 0xC0) << 2)), r.dh, cx & 0x3F


def _transfer(ctx: HypercallContext, disk, write: bool, lba: int, count: int,
              buf: int) -> int:
    """Move ``count`` sectors between the disk and guest address ``buf``; returns
    the status. The LBA range and the buffer are checked before anything moves; the
    data moves in pieces of ``CHUNK_SECTORS`` (an EDD packet may ask for 65535 sectors,
    32 MiB, which the host need not hold at once). A read into the ROM window
    leaves the ROM as it was (the bytes are dropped, as a bus master's are)."""
    if lba < 0 or count < 0 or lba + count > disk.sectors:
        return ST_EPARAM
    try:
        ctx.mem.check(buf, count * SECTOR)
    except GuestMemoryError:
        return ST_EBOUNDARY
    if write and disk.readonly:
        return ST_EWRITEPROTECT
    try:
        for done in range(0, count, CHUNK_SECTORS):
            n = min(CHUNK_SECTORS, count - done)
            at = buf + done * SECTOR
            if write:
                disk.write(lba + done, ctx.mem.read(at, n * SECTOR))
            else:
                write_ram(ctx.mem, at, disk.read(lba + done, n))
    except DiskError as e:
        return STATUS_OF.get(e.code, ST_EPARAM)
    return ST_OK


def ah00(ctx, disk):
    _finish(ctx, ST_OK)


def ah01(ctx, disk):
    status = ctx.mem.u8(B.HD_STATUS if ctx.regs.dl & 0x80 else B.DISKETTE_STATUS)
    ctx.regs.ah = status
    ctx.set_cf(status != ST_OK)


def _basic_access(ctx, disk, op: str) -> None:
    """AH=02h/03h/04h: AL sectors at CHS CX/DH to ES:BX."""
    r = ctx.regs
    count = r.al
    cyl, head, sector = _chs(ctx)
    g = disk.geometry
    if not 0 < count <= MAX_CHS_SECTORS or sector == 0 or cyl >= g.cylinders \
            or head >= g.heads or sector > g.sectors:
        r.al = 0
        _finish(ctx, ST_EPARAM)
        return
    lba = (cyl * g.heads + head) * g.sectors + sector - 1
    if op == "verify":
        status = ST_OK if lba + count <= disk.sectors else ST_EPARAM
    else:
        status = _transfer(ctx, disk, op == "write", lba, count, (r.es << 4) + r.bx)
    r.al = count if status == ST_OK else 0
    _finish(ctx, status)


def ah02(ctx, disk):
    _basic_access(ctx, disk, "read")


def ah03(ctx, disk):
    _basic_access(ctx, disk, "write")


def ah04(ctx, disk):
    _basic_access(ctx, disk, "verify")


def ah05(ctx, disk):
    _finish(ctx, ST_OK)       # format track: the image needs no formatting


def ah08(ctx, disk):
    r, m = ctx.regs, ctx.machine
    g = disk.geometry
    max_cyl = min(g.cylinders - 1, MAX_CYLINDER)
    if _floppy(ctx):
        count = len(m.disks.floppies())
        r.bx = disk.cmos_type
        r.es, r.di = 0xF000, DPT_OFFSET
    else:
        count = len(m.disks.hard_disks())
    r.al = 0
    r.ch = max_cyl & 0xFF
    r.cl = ((max_cyl >> 2) & 0xC0) | (g.sectors & 0x3F)
    r.dh = g.heads - 1
    _finish(ctx, ST_OK)
    r.dl = count


def ah15(ctx, disk):
    r = ctx.regs
    _finish(ctx, ST_OK)
    if _floppy(ctx):
        r.ah = DASD_FLOPPY_NO_CHANGELINE   # SeaBIOS: no change-line support
        return
    total = disk.geometry.total
    r.cx, r.dx = total >> 16, total & 0xFFFF
    r.ah = DASD_HARD_DISK


def ah16(ctx, disk):
    # Floppy: "disk changed" as SeaBIOS answers (it cannot tell); hard disk: invalid.
    _finish(ctx, ST_EPARAM if not _floppy(ctx) else ST_ECHANGED)


def ah_success(ctx, disk):
    _finish(ctx, ST_OK)


def ah41(ctx, disk):
    r = ctx.regs               # BX=55AAh on input; SeaBIOS does not insist on it
    r.bx = EDD_SIG_OUT
    r.cx = EDD_FEATURES
    _finish(ctx, ST_OK)
    r.ah = EDD_VERSION


def _extended_access(ctx, disk, op: str) -> None:
    """AH=42h/43h/44h/47h: the disk address packet at DS:SI."""
    r, mem = ctx.regs, ctx.mem
    pkt = (r.ds << 4) + r.si
    try:
        size = mem.u8(pkt)
        count = mem.u16(pkt + 2)
        off, seg = mem.u16(pkt + 4), mem.u16(pkt + 6)
        lba = int.from_bytes(mem.read(pkt + 8, 8), "little")
        flat = int.from_bytes(mem.read(pkt + 16, 8), "little") if size >= 0x18 else 0
    except GuestMemoryError:
        _finish(ctx, ST_EPARAM)
        return
    if size < 0x10:
        _finish(ctx, ST_EPARAM)
        return
    buf = flat if (seg, off) == (0xFFFF, 0xFFFF) and size >= 0x18 else (seg << 4) + off
    if lba >= disk.sectors:
        status = ST_EPARAM
    elif count == 0 or op == "seek":
        status = ST_OK
    elif op == "verify":
        status = ST_OK if lba + count <= disk.sectors else ST_EPARAM
    else:
        status = _transfer(ctx, disk, op == "write", lba, count, buf)
    if status != ST_OK:
        write_ram(mem, pkt + 2, bytes(2))     # blocks transferred: none (dropped in ROM)
    _finish(ctx, status)


def ah42(ctx, disk):
    _extended_access(ctx, disk, "read")


def ah43(ctx, disk):
    _extended_access(ctx, disk, "write")


def ah44(ctx, disk):
    _extended_access(ctx, disk, "verify")


def ah46(ctx, disk):
    _finish(ctx, ST_ENOTREMOVABLE)


def ah47(ctx, disk):
    _extended_access(ctx, disk, "seek")


def ah48(ctx, disk):
    """EDD drive parameters into the buffer at DS:SI (its first word: the size)."""
    r, mem = ctx.regs, ctx.mem
    buf = (r.ds << 4) + r.si
    try:
        size = mem.u16(buf)
    except GuestMemoryError:
        _finish(ctx, ST_EPARAM)
        return
    if size < EDD_PARAMS_1X:
        _finish(ctx, ST_EPARAM)
        return
    g = disk.geometry
    out = struct.pack("<HHIIIQH", EDD_PARAMS_1X, EDD_FLAG_CHS_VALID, g.cylinders,
                      g.heads, g.sectors, disk.sectors, SECTOR)
    if size >= EDD_PARAMS_2X:
        out = struct.pack("<H", EDD_PARAMS_2X) + out[2:] + struct.pack("<I", NO_DPTE)
    try:
        write_ram(mem, buf, out)  # a buffer in the ROM window leaves the ROM as it was
    except GuestMemoryError:
        _finish(ctx, ST_EPARAM)
        return
    _finish(ctx, ST_OK)


FUNCTIONS = {0x00: ah00, 0x01: ah01, 0x02: ah02, 0x03: ah03, 0x04: ah04, 0x05: ah05,
             0x08: ah08, 0x09: ah_success, 0x0C: ah_success, 0x0D: ah_success,
             0x10: ah_success, 0x11: ah_success, 0x14: ah_success, 0x15: ah15, 0x16: ah16,
             0x41: ah41, 0x42: ah42, 0x43: ah43, 0x44: ah44, 0x45: ah_success,
             0x46: ah46, 0x47: ah47, 0x48: ah48, 0x49: ah_success}


def int13(ctx: HypercallContext) -> None:
    r = ctx.regs
    disk = ctx.machine.disks.drives.get(r.dl)
    fn = FUNCTIONS.get(r.ah)
    if disk is None and r.ah == 0x15:
        _finish(ctx, ST_OK)    # RBIL: type 00h, no such drive
        r.ah = DASD_NONE
        return
    if disk is None or fn is None or (_floppy(ctx) and r.ah not in FLOPPY_FUNCTIONS):
        _finish(ctx, ST_EPARAM)
        return
    fn(ctx, disk)


SERVICES = {0x13: int13, 0x40: int13}
