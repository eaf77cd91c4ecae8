"""Intel 82077AA floppy disk controller in PC/AT mode, with up to four drives.

Registers (offset = port - 0x3F0; 0x3F6 belongs to the IDE channel):
  0 SRA  status register A (PS/2 layout; read only)
  1 SRB  status register B (read only)
  2 DOR  digital output register: DRIVE SEL, nRESET, DMA GATE, MOT EN0-3
  3 TDR  tape drive register (stored only)
  4 MSR  main status register (read) / DSR data rate select register (write)
  5 FIFO the data register: command bytes in, result bytes out
  7 DIR  digital input register (read: DSKCHG) / CCR configuration control (write)

A command goes through three phases: command (the CPU writes the command
bytes; MSR shows RQM, then CB), execution, result (MSR shows RQM|DIO|CB until
the CPU has read every result byte). Execution takes no virtual time: the
last command byte runs the command, moves its data through the injected 8237
(channel 2) in one go and enters the result phase. IRQ 6 rises at the end of
the execution phase (cleared by reading the first result byte), when a SEEK or
RECALIBRATE completes and after a reset (both cleared by SENSE INTERRUPT
STATUS, which after a reset reports the four drives' ready-line changes, ST0
0xC0..0xC3). As in AT mode on the chip, DOR's DMA GATE gates both the IRQ and
the DMA request: with it clear nothing reaches the PIC or the 8237.

Non-DMA mode (SPECIFY with ND=1) is supported: the execution phase then moves
its bytes through the FIFO (MSR shows NON DMA) and, with no TC in that mode,
runs to the end of the track, as on the chip.

The medium: a ``Disk`` image with a fixed geometry. Every sector carries the
ID (C, H, R, N=2) of its physical place; a command at a wrong data rate, in
FM mode, on the second side of a single-sided disk or past the last cylinder
finds no ID at all (ST1 MA), an ID that is not on the track is ST1 ND.
Like QEMU and Bochs (and unlike the chip without EIS), READ/WRITE/VERIFY move
the head to the command's C first, so a guest that skipped SEEK still reads
what it asked for.

Reset defaults: hardware reset holds the controller in reset (DOR = 0, as the
datasheet says) until the guest sets nRESET. hv's BIOSes do not initialise the
FDC, so by default ``reset`` also does what a PC BIOS POST leaves behind:
DOR = 0x0C, the four post-reset SENSE INTERRUPT STATUS results consumed, the
data rate set for drive A's medium. ``bios_initialized=False`` gives the chip.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Callable, Sequence

from hv.devices import state as st
from hv.devices.base import ByteRegisterDevice, IrqLine, NullIrq, PortRange
from hv.devices.disk_store import SECTOR, Disk, DiskError

DMA_CHANNEL = 2
VERSION_82077AA = 0x90


class Reg(IntEnum):
    SRA = 0
    SRB = 1
    DOR = 2
    TDR = 3
    MSR_DSR = 4     # read MSR, write DSR
    FIFO = 5
    DIR_CCR = 7     # read DIR, write CCR


class Dor(IntFlag):
    DRIVE_SEL = 0x03
    NRESET = 0x04
    DMA_GATE = 0x08
    MOT_EN0 = 0x10
    MOT_EN1 = 0x20
    MOT_EN2 = 0x40
    MOT_EN3 = 0x80


class Msr(IntFlag):
    DRV0_BUSY = 0x01
    DRV1_BUSY = 0x02
    DRV2_BUSY = 0x04
    DRV3_BUSY = 0x08
    CB = 0x10       # command busy
    NON_DMA = 0x20
    DIO = 0x40      # 1: controller -> CPU
    RQM = 0x80      # request for master: the FIFO is ready


DSR_SW_RESET = 0x80     # self-clearing
DSR_POWER_DOWN = 0x40
DSR_PRECOMP = 0x1C
DRATE_SEL = 0x03
DIR_DSKCHG = 0x80


class Drate(IntEnum):
    R500K = 0
    R300K = 1
    R250K = 2
    R1M = 3


class St0(IntFlag):
    DS = 0x03
    H = 0x04
    EC = 0x10       # equipment check (no TRK0 after a recalibrate)
    SE = 0x20       # seek end
    IC_ABNORMAL = 0x40
    IC_INVALID = 0x80
    IC_POLLING = 0xC0   # abnormal termination because of polling (ready change)


class St1(IntFlag):
    MA = 0x01       # missing address mark
    NW = 0x02       # not writable
    ND = 0x04       # no data: the sector ID was not found
    OR = 0x10       # overrun/underrun: the DMA did not keep up
    DE = 0x20       # data error (CRC)
    EN = 0x80       # end of cylinder: ran past EOT


class St2(IntFlag):
    MD = 0x01
    BC = 0x02
    SN = 0x04
    SH = 0x08
    WC = 0x10       # wrong cylinder
    DD = 0x20
    CM = 0x40


class St3(IntFlag):
    DS = 0x03
    HD = 0x04
    TS = 0x08       # two-sided: always 1 on the 82077AA
    T0 = 0x10       # track 0
    RDY = 0x20      # ready: always 1 on the 82077AA
    WP = 0x40


# Command modifier bits in the first byte.
MT, MFM, SK = 0x80, 0x40, 0x20
REL_DIR = 0x40      # RELATIVE SEEK: 1 = step in (towards higher cylinders)
LOCK_BIT = 0x80

# CONFIGURE byte 2.
CONF_EIS, CONF_EFIFO, CONF_POLL, CONF_FIFOTHR = 0x40, 0x20, 0x10, 0x0F
CONF_DEFAULT = CONF_EFIFO          # reset: implied seek off, FIFO off, polling on
VERIFY_EC = 0x80                   # VERIFY byte 1: SC (not EOT) ends the command


@dataclass(frozen=True)
class Command:
    name: str
    opcode: int
    modifiers: int      # bits that may be set on top of the opcode
    length: int         # command-phase bytes, opcode included
    handler: str


COMMANDS = (
    Command("READ DATA", 0x06, MT | MFM | SK, 9, "_cmd_read_data"),
    Command("WRITE DATA", 0x05, MT | MFM, 9, "_cmd_write_data"),
    Command("VERIFY", 0x16, MT | MFM | SK, 9, "_cmd_verify"),
    Command("READ ID", 0x0A, MFM, 2, "_cmd_read_id"),
    Command("FORMAT TRACK", 0x0D, MFM, 6, "_cmd_format_track"),
    Command("RECALIBRATE", 0x07, 0, 2, "_cmd_recalibrate"),
    Command("SENSE INTERRUPT STATUS", 0x08, 0, 1, "_cmd_sense_interrupt_status"),
    Command("SPECIFY", 0x03, 0, 3, "_cmd_specify"),
    Command("SENSE DRIVE STATUS", 0x04, 0, 2, "_cmd_sense_drive_status"),
    Command("SEEK", 0x0F, 0, 3, "_cmd_seek"),
    Command("RELATIVE SEEK", 0x8F, REL_DIR, 3, "_cmd_relative_seek"),
    Command("CONFIGURE", 0x13, 0, 4, "_cmd_configure"),
    Command("VERSION", 0x10, 0, 1, "_cmd_version"),
    Command("DUMPREG", 0x0E, 0, 1, "_cmd_dumpreg"),
    Command("LOCK", 0x14, LOCK_BIT, 1, "_cmd_lock"),
    Command("PERPENDICULAR MODE", 0x12, 0, 2, "_cmd_perpendicular_mode"),
)


def decode(byte: int) -> Command | None:
    for cmd in COMMANDS:
        if byte & ~cmd.modifiers & 0xFF == cmd.opcode:
            return cmd
    return None


def media_rates(disk: Disk) -> frozenset[int]:
    """Data rates at which the medium's address marks can be read."""
    g = disk.geometry
    if g.sectors >= 36:
        return frozenset({Drate.R1M})
    if g.sectors >= 15:
        return frozenset({Drate.R500K})
    if g.cylinders <= 40:   # 5.25" DD: 250 kbps, or 300 kbps in a 1.2M drive
        return frozenset({Drate.R250K, Drate.R300K})
    return frozenset({Drate.R250K})


class Phase(IntEnum):
    RESET = 0
    COMMAND = 1
    EXEC_READ = 2       # non-DMA: controller -> CPU through the FIFO
    EXEC_WRITE = 3      # non-DMA: CPU -> controller
    RESULT = 4


class Drive:
    def __init__(self, disk: Disk | None) -> None:
        self.disk = disk
        self.pcn = 0            # present cylinder number: where the head is
        self.head = 0
        self.dskchg = True      # the changeline is active at power-on
        self.next_r = 1         # sector passing under the head (READ ID)


@dataclass
class _Xfer:
    """Where a READ/WRITE/VERIFY stands: the ID it looks for next."""
    ds: int
    head: int
    c: int
    h: int
    r: int
    n: int
    eot: int
    mt: bool
    mfm: bool


class Fdc82077(ByteRegisterDevice):
    name = "fdc"
    ports = (PortRange(0x3F0, 6, 0), PortRange(0x3F7, 1, 7))
    irq = 6

    def __init__(self, irq: IrqLine | None = None, dma=None,
                 drives: Sequence[Disk | None] = (None, None),
                 bios_initialized: bool = True, check_data_rate: bool = True) -> None:
        self.irq_line = irq or NullIrq()
        self.dma = dma
        disks = list(drives)[:4] + [None] * (4 - min(len(drives), 4))
        self.drives = [Drive(d) for d in disks]
        self.bios_initialized = bios_initialized
        self.check_data_rate = check_data_rate
        self.reset()

    # -- reset ----------------------------------------------------------------------
    def reset(self) -> None:
        self.dor = 0                        # hardware reset: nRESET low, controller held
        self.tdr = 0
        self.drate = Drate.R250K            # hardware reset default data rate
        self.precomp = 0
        self.power_down = False
        self.srt_hut = 0                    # SPECIFY values: unknown until programmed
        self.hlt_nd = 0
        self.lock = False
        self.config = CONF_DEFAULT
        self.pretrk = 0
        self.perp = 0                       # D3-D0 GAP WGATE of PERPENDICULAR MODE
        self.eot_reg = 0                    # last SC/EOT, for DUMPREG
        for d in self.drives:
            d.pcn = d.head = 0
            d.dskchg = True
            d.next_r = 1
        self._irq_level = False
        self.irq_line.set_level(False)
        self._enter_reset()
        if self.bios_initialized:
            self.dor = Dor.NRESET | Dor.DMA_GATE
            self._leave_reset(poll=False)
            a = self.drives[0].disk
            if a is not None:
                rates = media_rates(a)   # what the BIOS media sense would have chosen
                self.drate = next(r for r in (Drate.R500K, Drate.R250K, Drate.R1M, Drate.R300K)
                                  if r in rates)
        self._update_irq()

    def _enter_reset(self) -> None:
        self.phase = Phase.RESET
        self._cmd: Command | None = None
        self._cmd_bytes = bytearray()
        self._result = bytearray()
        self._pio = bytearray()
        self._pio_need = 0
        self._pio_done: Callable[[], None] | None = None
        self._pio_then: tuple | None = None   # _pio_done as data (snapshots: _resume)
        self._int_result = False
        self._int_sense = False
        self._reset_polls = 0
        self._seek_done: dict[int, tuple[int, int]] = {}
        if not self.lock:
            self.config = CONF_DEFAULT
            self.pretrk = 0
        for d in self.drives:
            d.pcn = 0

    def _leave_reset(self, poll: bool = True) -> None:
        self.phase = Phase.COMMAND
        if poll and not self.config & CONF_POLL:
            # Drive polling sees every ready line change: one interrupt, four statuses.
            self._reset_polls = 4
            self._int_sense = True

    # -- IRQ ------------------------------------------------------------------------
    def _pending(self) -> bool:
        return self._int_result or self._int_sense

    def _update_irq(self) -> None:
        level = self._pending() and bool(self.dor & Dor.DMA_GATE) and self.phase != Phase.RESET
        if level != self._irq_level:
            self._irq_level = level
            self.irq_line.set_level(level)

    def _raise_result_irq(self) -> None:
        # A fresh edge even if the line was already high (non-DMA data requests).
        self._int_result = False
        self._update_irq()
        self._int_result = True
        self._update_irq()

    # -- port access (ByteRegisterDevice splits wide accesses into byte cycles) -----
    def _selected(self) -> Drive:
        return self.drives[self.dor & Dor.DRIVE_SEL]

    def _byte_read(self, off: int) -> int:
        if off == Reg.SRA:
            d = self._selected()
            v = 0x04                                        # nINDX inactive
            v |= 0x80 if self._pending() else 0             # INT PENDING
            v |= 0x40 if self.drives[1].disk is None else 0  # nDRV2
            v |= 0x10 if d.pcn != 0 else 0                  # nTRK0
            v |= 0x08 if d.head else 0                      # HDSEL
            v |= 0x02 if d.disk is not None and d.disk.readonly else 0
            return v
        if off == Reg.SRB:
            return (0xC0 | (0x20 if self.dor & 1 else 0)
                    | (0x02 if self.dor & Dor.MOT_EN1 else 0)
                    | (0x01 if self.dor & Dor.MOT_EN0 else 0))
        if off == Reg.DOR:
            return self.dor
        if off == Reg.TDR:
            return self.tdr
        if off == Reg.MSR_DSR:
            return self._msr()
        if off == Reg.FIFO:
            return self._fifo_read()
        if off == Reg.DIR_CCR:
            d = self._selected()
            return DIR_DSKCHG if d.dskchg or d.disk is None else 0
        return 0xFF

    def _byte_write(self, off: int, v: int) -> None:
        if off == Reg.DOR:
            self._write_dor(v)
        elif off == Reg.TDR:
            self.tdr = v & 0x03
        elif off == Reg.MSR_DSR:
            self.drate = Drate(v & DRATE_SEL)
            self.precomp = (v & DSR_PRECOMP) >> 2
            self.power_down = bool(v & DSR_POWER_DOWN)
            if v & DSR_SW_RESET and self.dor & Dor.NRESET:
                self._enter_reset()
                self._leave_reset()
            self._update_irq()
        elif off == Reg.FIFO:
            self._fifo_write(v)
        elif off == Reg.DIR_CCR:
            self.drate = Drate(v & DRATE_SEL)

    def _write_dor(self, v: int) -> None:
        old, self.dor = self.dor, v
        if old & Dor.NRESET and not v & Dor.NRESET:
            self._enter_reset()
        elif not old & Dor.NRESET and v & Dor.NRESET:
            self._enter_reset()             # clean state whatever happened while held
            self._leave_reset()
        self._update_irq()

    def _msr(self) -> int:
        busy = sum(1 << ds for ds in self._seek_done)
        if self.phase == Phase.RESET:
            return 0
        if self.phase == Phase.COMMAND:
            return Msr.RQM | (Msr.CB if self._cmd_bytes else 0) | busy
        if self.phase == Phase.EXEC_READ:
            return Msr.RQM | Msr.DIO | Msr.NON_DMA | Msr.CB | busy
        if self.phase == Phase.EXEC_WRITE:
            return Msr.RQM | Msr.NON_DMA | Msr.CB | busy
        return Msr.RQM | Msr.DIO | Msr.CB | busy

    # -- FIFO -----------------------------------------------------------------------
    def _fifo_write(self, v: int) -> None:
        if self.phase == Phase.EXEC_WRITE:
            self._pio.append(v)
            if len(self._pio) >= self._pio_need:
                self._int_result = False
                done, self._pio_done = self._pio_done, None
                if done is not None:
                    done()
            return
        if self.phase != Phase.COMMAND:
            return                          # result / execution-read / reset: ignored
        if not self._cmd_bytes:
            cmd = decode(v)
            if cmd is None:
                self._enter_result(bytes([St0.IC_INVALID]), irq=False)
                return
            self._cmd = cmd
        self._cmd_bytes.append(v)
        if self._cmd is not None and len(self._cmd_bytes) >= self._cmd.length:
            cmd, params = self._cmd, bytes(self._cmd_bytes)
            self._cmd, self._cmd_bytes = None, bytearray()
            getattr(self, cmd.handler)(params)

    def _fifo_read(self) -> int:
        if self.phase == Phase.RESULT:
            v = self._result.pop(0) if self._result else 0xFF
            if self._int_result:
                self._int_result = False
                self._update_irq()
            if not self._result:
                self.phase = Phase.COMMAND
                if self._seek_done:
                    # Another drive's seek ended too: interrupt again for it. (The
                    # four post-reset statuses share the one reset interrupt.)
                    self._int_sense = True
                    self._update_irq()
            return v
        if self.phase == Phase.EXEC_READ:
            v = self._pio.pop(0) if self._pio else 0xFF
            if not self._pio:
                done, self._pio_done = self._pio_done, None
                if done is not None:
                    done()
            return v
        return 0xFF

    def _enter_result(self, data: bytes, irq: bool) -> None:
        self.phase = Phase.RESULT
        self._result = bytearray(data)
        if irq:
            self._raise_result_irq()
        else:
            self._update_irq()

    # -- medium -----------------------------------------------------------------------
    def _track_error(self, drv: Drive, head: int, mfm: bool) -> int:
        """ST1 MA when no ID address mark can be read on (pcn, head) at all."""
        d = drv.disk
        if d is None or not mfm:
            return St1.MA
        if self.check_data_rate and self.drate not in media_rates(d):
            return St1.MA
        g = d.geometry
        if head >= g.heads or drv.pcn >= g.cylinders:
            return St1.MA
        return 0

    def _find(self, x: _Xfer) -> tuple[int | None, int, int]:
        """The LBA of the sector with ID (c, h, r, n) on the current track, or the
        ST1/ST2 bits of why it is not there."""
        drv = self.drives[x.ds]
        err = self._track_error(drv, x.head, x.mfm)
        if err:
            return None, err, 0
        g = drv.disk.geometry
        if x.c != drv.pcn:
            return None, St1.ND, St2.BC if x.c == 0xFF else St2.WC
        if x.h != x.head or x.n != 2 or not 1 <= x.r <= g.sectors:
            return None, St1.ND, 0
        return (drv.pcn * g.heads + x.head) * g.sectors + x.r - 1, 0, 0

    @staticmethod
    def _advance(x: _Xfer) -> bool:
        """Step the ID to the next sector; True when the cylinder's end was passed."""
        if x.r != x.eot:
            x.r = (x.r + 1) & 0xFF
            return False
        x.r = 1
        if x.mt and x.head == 0:
            x.head, x.h = 1, x.h ^ 1        # multi-track: side 1 follows side 0
            return False
        x.c = (x.c + 1) & 0xFF
        if x.mt:
            x.h ^= 1
        return True

    def _xfer_from(self, p: bytes) -> _Xfer:
        hds, ds = p[1] >> 2 & 1, p[1] & 3
        drv = self.drives[ds]
        if drv.disk is not None:
            drv.pcn, drv.head = p[2], hds   # implied seek (see the module docstring)
        self.eot_reg = p[6]
        return _Xfer(ds, hds, p[2], p[3], p[4], p[5], p[6], bool(p[0] & MT), bool(p[0] & MFM))

    def _rw_result(self, x: _Xfer, ic: int, st1: int, st2: int) -> bytes:
        self.drives[x.ds].head = x.head
        return bytes([ic | x.head << 2 | x.ds, st1, st2, x.c, x.h, x.r, x.n])

    def _finish_rw(self, x: _Xfer, ic: int, st1: int, st2: int) -> None:
        self._enter_result(self._rw_result(x, ic, st1, st2), irq=True)

    # Data movers: put(sector) -> (bytes taken, TC); get(n) -> (bytes, TC).
    def _dma_ready(self) -> bool:
        return self.dma is not None and bool(self.dor & Dor.DMA_GATE)

    def _dma_put(self, data: bytes) -> tuple[int, bool]:
        if not self._dma_ready():
            return 0, False
        n = self.dma.write_to_memory(DMA_CHANNEL, data)
        return n, self.dma.terminal_count(DMA_CHANNEL)

    def _dma_get(self, length: int) -> tuple[bytes, bool]:
        if not self._dma_ready():
            return b"", False
        data = self.dma.read_from_memory(DMA_CHANNEL, length)
        return data, self.dma.terminal_count(DMA_CHANNEL)

    def _run(self, x: _Xfer, kind: str, put=None, get=None, sc: int = 0) -> bytes:
        """Run READ ("read"), WRITE ("write") or VERIFY ("verify") from ``x``'s ID
        until TC, the end of the cylinder or an error; return the result bytes."""
        drv = self.drives[x.ds]
        ic, st1, st2, done = 0, 0, 0, 0
        wrote = False
        while True:
            lba, e1, e2 = self._find(x)
            if lba is None:
                ic, st1, st2 = St0.IC_ABNORMAL, st1 | e1, st2 | e2
                break
            tc = False
            try:
                if kind == "read":
                    n, tc = put(drv.disk.read(lba, 1))
                    if n < SECTOR and not tc:
                        ic, st1 = St0.IC_ABNORMAL, st1 | St1.OR
                        break
                elif kind == "write":
                    data, tc = get(SECTOR)
                    if len(data) < SECTOR and not tc:
                        ic, st1 = St0.IC_ABNORMAL, st1 | St1.OR
                        break
                    # TC inside the sector: the chip fills the rest with zeros.
                    drv.disk.write(lba, bytes(data).ljust(SECTOR, b"\0"))
                    wrote = True
            except (DiskError, OSError, ValueError):
                ic, st1 = St0.IC_ABNORMAL, st1 | St1.DE
                break
            done += 1
            drv.next_r = x.r % drv.disk.geometry.sectors + 1
            end_of_cylinder = self._advance(x)
            if kind == "verify" and sc:
                tc = done >= sc
            if tc:
                break                       # TC: normal termination, ID of the next sector
            if end_of_cylinder:
                # Without TC the chip goes on looking past EOT and gives up with EN
                # (VERIFY without EC ends at EOT by design).
                if not (kind == "verify" and not sc):
                    ic, st1 = St0.IC_ABNORMAL, st1 | St1.EN
                break
        if wrote:
            self._flush(drv)
        return self._rw_result(x, ic, st1, st2)

    @staticmethod
    def _flush(drv: Drive) -> None:
        try:
            drv.disk.flush()
        except OSError:
            pass

    def _non_dma(self) -> bool:
        return bool(self.hlt_nd & 1)

    # -- commands -------------------------------------------------------------------
    def _cmd_read_data(self, p: bytes) -> None:
        x = self._xfer_from(p)
        if not self._non_dma():
            self._enter_result(self._run(x, "read", put=self._dma_put), irq=True)
            return
        buf = bytearray()

        def collect(data: bytes) -> tuple[int, bool]:
            buf.extend(data)
            return len(data), False
        result = self._run(x, "read", put=collect)
        if not buf:
            self._enter_result(result, irq=True)
            return
        # Non-DMA: the bytes go out through the FIFO before the result phase.
        self.phase = Phase.EXEC_READ
        self._pio = buf
        self._pio_done = lambda: self._enter_result(result, irq=True)
        self._pio_then = ("result", result)
        self._raise_result_irq()

    def _cmd_write_data(self, p: bytes) -> None:
        x = self._xfer_from(p)
        drv = self.drives[x.ds]
        if drv.disk is not None and drv.disk.readonly and not self._track_error(drv, x.head, x.mfm):
            self._finish_rw(x, St0.IC_ABNORMAL, St1.NW, 0)
            return
        if not self._non_dma():
            self._enter_result(self._run(x, "write", get=self._dma_get), irq=True)
            return
        # Non-DMA: count the sectors up to EOT first, then collect their bytes.
        sectors = self._count_sectors(_Xfer(**x.__dict__))
        if not sectors:
            self._enter_result(self._run(x, "write", get=lambda n: (b"", False)), irq=True)
            return
        self._collect(sectors * SECTOR, lambda data: self._enter_result(
            self._run(x, "write", get=_reader(data)), irq=True))
        self._pio_then = ("write", x)

    def _count_sectors(self, x: _Xfer) -> int:
        n = 0
        while self._find(x)[0] is not None:
            n += 1
            if self._advance(x):
                break
        return n

    def _collect(self, need: int, then: Callable[[bytes], None]) -> None:
        self.phase = Phase.EXEC_WRITE
        self._pio = bytearray()
        self._pio_need = need
        self._pio_done = lambda: then(bytes(self._pio))
        self._raise_result_irq()

    def _cmd_verify(self, p: bytes) -> None:
        x = self._xfer_from(p)
        self._enter_result(self._run(x, "verify", sc=p[8] if p[1] & VERIFY_EC else 0), irq=True)

    def _cmd_read_id(self, p: bytes) -> None:
        hds, ds = p[1] >> 2 & 1, p[1] & 3
        drv = self.drives[ds]
        drv.head = hds
        err = self._track_error(drv, hds, bool(p[0] & MFM))
        r = drv.next_r
        if not err:
            drv.next_r = r % drv.disk.geometry.sectors + 1
        st0 = (St0.IC_ABNORMAL if err else 0) | hds << 2 | ds
        self._enter_result(bytes([st0, err, 0, drv.pcn, hds, r, 2]), irq=True)

    def _cmd_format_track(self, p: bytes) -> None:
        hds, ds = p[1] >> 2 & 1, p[1] & 3
        n, sc, fill = p[2], p[3], p[5]
        self.eot_reg = sc
        drv = self.drives[ds]
        drv.head = hds
        x = _Xfer(ds, hds, drv.pcn, hds, 1, n, sc, False, bool(p[0] & MFM))
        err = self._track_error(drv, hds, x.mfm)
        if err:
            self._finish_rw(x, St0.IC_ABNORMAL, err, 0)
            return
        if drv.disk.readonly:
            self._finish_rw(x, St0.IC_ABNORMAL, St1.NW, 0)
            return
        if self._non_dma():
            self._collect(sc * 4, lambda ids: self._format(x, ids, True, fill))
            self._pio_then = ("format", x, fill)
            return
        ids, tc = self._dma_get(sc * 4)
        self._format(x, ids, len(ids) == sc * 4 or tc, fill)

    def _format(self, x: _Xfer, ids: bytes, complete: bool, fill: int) -> None:
        """Write the fill byte into each sector whose ID the image can hold (the image
        has no place for IDs: the sector's place decides where it lands)."""
        drv = self.drives[x.ds]
        g = drv.disk.geometry
        for i in range(0, len(ids) - 3, 4):
            c, h, r, n = ids[i:i + 4]
            x.c, x.h, x.r, x.n = c, h, r, n
            if n == 2 and 1 <= r <= g.sectors:
                lba = (drv.pcn * g.heads + x.head) * g.sectors + r - 1
                try:
                    drv.disk.write(lba, bytes([fill]) * SECTOR)
                except (DiskError, OSError, ValueError):
                    self._finish_rw(x, St0.IC_ABNORMAL, St1.DE, 0)
                    return
        self._flush(drv)
        if complete:
            self._finish_rw(x, 0, 0, 0)
        else:
            self._finish_rw(x, St0.IC_ABNORMAL, St1.OR, 0)

    def _seek_end(self, ds: int, st0: int) -> None:
        self._seek_done[ds] = (st0, self.drives[ds].pcn)
        self._int_sense = True
        self.phase = Phase.COMMAND
        self._update_irq()

    def _cmd_recalibrate(self, p: bytes) -> None:
        ds = p[1] & 3
        drv = self.drives[ds]
        drv.pcn, drv.head = 0, 0
        if drv.disk is None:                # no TRK0 after the step pulses
            self._seek_end(ds, St0.IC_ABNORMAL | St0.SE | St0.EC | ds)
            return
        drv.dskchg = False
        self._seek_end(ds, St0.SE | ds)

    def _cmd_seek(self, p: bytes) -> None:
        hds, ds = p[1] >> 2 & 1, p[1] & 3
        self._seek_to(ds, hds, p[2])

    def _cmd_relative_seek(self, p: bytes) -> None:
        hds, ds = p[1] >> 2 & 1, p[1] & 3
        pcn = self.drives[ds].pcn
        target = pcn + p[2] if p[0] & REL_DIR else pcn - p[2]
        self._seek_to(ds, hds, max(0, min(0xFF, target)))

    def _seek_to(self, ds: int, hds: int, ncn: int) -> None:
        drv = self.drives[ds]
        drv.pcn, drv.head = ncn, hds
        if drv.disk is not None:
            drv.dskchg = False              # a step with a disk in clears the changeline
        self._seek_end(ds, St0.SE | hds << 2 | ds)

    def _cmd_sense_interrupt_status(self, p: bytes) -> None:
        if self._reset_polls:
            ds = 4 - self._reset_polls
            self._reset_polls -= 1
            st0, pcn = St0.IC_POLLING | ds, self.drives[ds].pcn
        elif self._seek_done:
            ds = min(self._seek_done)
            st0, pcn = self._seek_done.pop(ds)
        else:
            self._enter_result(bytes([St0.IC_INVALID]), irq=False)
            return
        self._int_sense = False
        self._enter_result(bytes([st0, pcn]), irq=False)

    def _cmd_specify(self, p: bytes) -> None:
        self.srt_hut, self.hlt_nd = p[1], p[2]
        self.phase = Phase.COMMAND

    def _cmd_sense_drive_status(self, p: bytes) -> None:
        hds, ds = p[1] >> 2 & 1, p[1] & 3
        drv = self.drives[ds]
        drv.head = hds
        st3 = St3.RDY | St3.TS | hds << 2 | ds
        st3 |= St3.T0 if drv.pcn == 0 else 0
        st3 |= St3.WP if drv.disk is not None and drv.disk.readonly else 0
        self._enter_result(bytes([st3]), irq=False)

    def _cmd_configure(self, p: bytes) -> None:
        self.config, self.pretrk = p[2] & 0x7F, p[3]
        self.phase = Phase.COMMAND

    def _cmd_version(self, p: bytes) -> None:
        self._enter_result(bytes([VERSION_82077AA]), irq=False)

    def _cmd_dumpreg(self, p: bytes) -> None:
        pcns = bytes(d.pcn for d in self.drives)
        self._enter_result(pcns + bytes([
            self.srt_hut, self.hlt_nd, self.eot_reg,
            (0x80 if self.lock else 0) | self.perp,
            self.config, self.pretrk]), irq=False)

    def _cmd_lock(self, p: bytes) -> None:
        self.lock = bool(p[0] & LOCK_BIT)
        self._enter_result(bytes([0x10 if self.lock else 0]), irq=False)

    def _cmd_perpendicular_mode(self, p: bytes) -> None:
        v = p[1]
        drives = (v & 0x3C) if v & 0x80 else (self.perp & 0x3C)   # OW: overwrite D3-D0
        self.perp = drives | (v & 0x03)
        self.phase = Phase.COMMAND

    # -- snapshots ------------------------------------------------------------------
    _BYTES = ("dor", "tdr", "precomp", "srt_hut", "hlt_nd", "config", "pretrk", "perp", "eot_reg")
    _XFER = tuple(f.name for f in dataclasses.fields(_Xfer))

    def state(self) -> dict:
        """Registers, SPECIFY/CONFIGURE/LOCK settings, each drive's head position and
        changeline, the command phase with the bytes in flight (command, result,
        non-DMA data and what follows it), pending interrupts and seek results, and the
        IRQ level. The media are the machine's disks (saved as references)."""
        then = self._pio_then if self._pio_done is not None else None
        if then is not None:
            then = [then[0], bytes(then[1]) if then[0] == "result" else dataclasses.asdict(then[1]),
                    *then[2:]]
        return st.versioned(
            **{n: int(getattr(self, n)) for n in self._BYTES}, drate=int(self.drate),
            power_down=self.power_down, lock=self.lock,
            drives=[{"pcn": d.pcn, "head": d.head, "dskchg": d.dskchg, "next_r": d.next_r}
                    for d in self.drives],
            phase=int(self.phase), cmd_bytes=bytes(self._cmd_bytes), result=bytes(self._result),
            pio=bytes(self._pio), pio_need=self._pio_need, pio_then=then,
            int_result=self._int_result, int_sense=self._int_sense,
            reset_polls=self._reset_polls,
            seek_done=[[ds, st0, pcn] for ds, (st0, pcn) in sorted(self._seek_done.items())],
            irq=self._irq_level)

    def load_state(self, state: dict) -> None:
        who = self.name
        st.check_version(state, who)
        values = {n: st.integer(state, n, who, 0, 0xFF) for n in self._BYTES}
        drate = Drate(st.integer(state, "drate", who, 0, 3))
        flags = {n: st.flag(state, n, who) for n in ("power_down", "lock", "int_result",
                                                    "int_sense", "irq")}
        drives = st.field(state, "drives", who)
        if not isinstance(drives, list) or len(drives) != 4 or not all(isinstance(d, dict) for d in drives):
            raise ValueError(f"{who}: saved drives are not four drives")
        heads = [(st.integer(d, "pcn", who, 0, 0xFF), st.integer(d, "head", who, 0, 1),
                  st.flag(d, "dskchg", who), st.integer(d, "next_r", who, 0, 0xFF)) for d in drives]
        phase = Phase(st.integer(state, "phase", who, 0, len(Phase) - 1))
        cmd_bytes = st.blob(state, "cmd_bytes", who, max_length=9)
        cmd = decode(cmd_bytes[0]) if cmd_bytes else None
        if cmd_bytes and (cmd is None or len(cmd_bytes) >= cmd.length):
            raise ValueError(f"{who}: saved command bytes are not a command in progress")
        result = st.blob(state, "result", who, max_length=16)
        pio = st.blob(state, "pio", who, max_length=2 * 36 * SECTOR * 256)
        pio_need = st.integer(state, "pio_need", who, 0, 2 * 36 * SECTOR * 256)
        reset_polls = st.integer(state, "reset_polls", who, 0, 4)
        seeks = st.field(state, "seek_done", who)
        if not isinstance(seeks, list) or any(
                not isinstance(e, list) or len(e) != 3 or any(type(v) is not int for v in e)
                or not 0 <= e[0] <= 3 or not 0 <= e[1] <= 0xFF or not 0 <= e[2] <= 0xFF
                for e in seeks):
            raise ValueError(f"{who}: saved seek_done is not a list of (drive, ST0, PCN)")
        then = self._load_resume(st.field(state, "pio_then", who), phase, who)
        for name, value in values.items():
            setattr(self, name, value)
        self.drate, self.power_down, self.lock = drate, flags["power_down"], flags["lock"]
        for d, (pcn, head, dskchg, next_r) in zip(self.drives, heads):
            d.pcn, d.head, d.dskchg, d.next_r = pcn, head, dskchg, next_r
        self.phase, self._cmd, self._cmd_bytes = phase, cmd, bytearray(cmd_bytes)
        self._result, self._pio, self._pio_need = bytearray(result), bytearray(pio), pio_need
        self._pio_then = then
        self._pio_done = self._resume(then) if then is not None else None
        self._int_result, self._int_sense = flags["int_result"], flags["int_sense"]
        self._reset_polls = reset_polls
        self._seek_done = {ds: (st0, pcn) for ds, st0, pcn in seeks}
        self._irq_level = flags["irq"]
        st.restore_level(self.irq_line, self._irq_level)

    def _load_resume(self, then, phase: Phase, who: str) -> tuple | None:
        """A saved non-DMA continuation, checked: ("result", bytes), ("write", xfer) or
        ("format", xfer, fill byte); only an execution phase has one."""
        if then is None:
            return None
        if phase not in (Phase.EXEC_READ, Phase.EXEC_WRITE) or not isinstance(then, list) or not then:
            raise ValueError(f"{who}: saved pio_then outside an execution phase")
        kind = then[0]
        if kind == "result" and len(then) == 2 and isinstance(then[1], (bytes, bytearray)) \
                and len(then[1]) <= 16:
            return ("result", bytes(then[1]))
        if kind in ("write", "format") and len(then) == (2 if kind == "write" else 3) \
                and isinstance(then[1], dict) and set(then[1]) == set(self._XFER):
            x = then[1]
            for name in self._XFER:
                if name in ("mt", "mfm"):
                    st.flag(x, name, who)
                else:
                    st.integer(x, name, who, 0, 0xFF if name != "ds" else 3)
            xfer = _Xfer(**x)
            if kind == "write":
                return ("write", xfer)
            return ("format", xfer, st.integer({"fill": then[2]}, "fill", who, 0, 0xFF))
        raise ValueError(f"{who}: saved pio_then is not a continuation")

    def _resume(self, then: tuple) -> Callable[[], None]:
        """The callable a non-DMA execution phase ends with (the lambdas the commands
        build), from its description in ``_pio_then``."""
        if then[0] == "result":
            result = then[1]
            return lambda: self._enter_result(result, irq=True)
        x = then[1]
        if then[0] == "write":
            return lambda: self._enter_result(
                self._run(x, "write", get=_reader(bytes(self._pio))), irq=True)
        fill = then[2]
        return lambda: self._format(x, bytes(self._pio), True, fill)

    # -- the board ------------------------------------------------------------------
    def insert(self, index: int, disk: Disk | None) -> None:
        """Change the medium in drive ``index``; the changeline goes active."""
        drv = self.drives[index]
        drv.disk = disk
        drv.dskchg = True
        drv.next_r = 1


def _reader(data: bytes) -> Callable[[int], tuple[bytes, bool]]:
    pos = 0

    def get(n: int) -> tuple[bytes, bool]:
        nonlocal pos
        chunk, pos = data[pos:pos + n], pos + n
        return chunk, False
    return get
