"""An IDE/ATA channel: the command and control blocks of one ATA cable, with a
master and a slave drive behind them.

Register, bit and command names follow ATA/ATAPI-6 (T13/1410D); behaviour where
the standard leaves room follows QEMU's ``hw/ide/core.c`` (so a guest sees the same
device under hv and under QEMU):

* both drives receive every command-block write; the DEV bit of the Device
  register chooses which one answers reads and executes commands;
* an absent drive reads as 00h in every register but Device (the present drive
  answers for its absent partner with status 00h) and ignores commands; a
  channel with no drive at all reads 00h everywhere;
* transfers take no time: a command has finished (or is waiting for data) by the
  time the ``out`` to the Command register returns, so a polling driver never
  sees BSY; the bits are still set as the PIO protocols say.

PIO data-in (IDENTIFY, READ SECTORS/MULTIPLE): each DRQ data block is loaded, DRQ
set and INTRQ asserted; after the last word of the last block DRQ drops with no
interrupt. PIO data-out (WRITE SECTORS/MULTIPLE): DRQ is set at once without an
interrupt; each block written is committed to the image and followed by an
interrupt (the last one announces completion).

INTRQ is asserted by the selected drive only: ``line = pending and not nIEN``,
recomputed in ``_update_irq``. Reading Status (not Alternate Status) or writing
Command clears the pending interrupt.

Only LBA28/CHS PIO is modelled: no DMA, no 48-bit commands, no ATAPI.
"""
from __future__ import annotations

import struct
from enum import IntEnum, IntFlag

from hv.devices import state as st
from hv.devices.base import IrqLine, NullIrq, PortRange, SharedStateDevice
from hv.devices.disk_store import IO_ERROR, OUT_OF_RANGE, SECTOR, Disk, DiskError

WORDS_PER_SECTOR = SECTOR // 2
MAX_MULTIPLE = 16                 # sectors per DRQ block for READ/WRITE MULTIPLE (word 47)
LBA28_MAX = 0x0FFFFFFF            # highest sector count LBA28 can address (words 60-61)
MAX_CURRENT_CYLINDERS = 65535     # word 54 is 16 bits


class Reg(IntEnum):
    """Offsets the device sees: command block 0-7, control block at 8."""
    DATA = 0
    ERROR = 1               # read; FEATURES on write
    SECTOR_COUNT = 2
    LBA_LOW = 3             # Sector Number in CHS mode
    LBA_MID = 4             # Cylinder Low
    LBA_HIGH = 5            # Cylinder High
    DEVICE = 6              # Device/Head
    STATUS = 7              # read; COMMAND on write
    ALT_STATUS = 8          # read; DEVICE_CONTROL on write


FEATURES, COMMAND, DEVICE_CONTROL = Reg.ERROR, Reg.STATUS, Reg.ALT_STATUS


class Status(IntFlag):
    ERR = 0x01
    IDX = 0x02              # obsolete index pulse; never set
    CORR = 0x04             # obsolete corrected data; never set
    DRQ = 0x08
    DSC = 0x10              # device seek complete (SERV in ATA-6)
    DF = 0x20
    DRDY = 0x40
    BSY = 0x80


class Error(IntFlag):
    AMNF = 0x01             # also "no error" diagnostic code 01h after reset
    TK0NF = 0x02
    ABRT = 0x04
    MCR = 0x08
    IDNF = 0x10
    MC = 0x20
    UNC = 0x40
    ICRC = 0x80             # BBK before ATA-4; also "device 1 failed" in diagnostic codes


class DeviceBits(IntFlag):
    """Device/Head register bits above the head/LBA[27:24] nibble."""
    DEV = 0x10
    LBA = 0x40
    OBSOLETE = 0xA0         # bits 7 and 5: read back as one (QEMU: ATA_DEV_ALWAYS_ON)


class Control(IntFlag):
    NIEN = 0x02
    SRST = 0x04
    HOB = 0x80              # 48-bit high-order byte readback; unused (no LBA48)


class Cmd(IntEnum):
    NOP = 0x00
    RECALIBRATE = 0x10      # 0x10-0x1F
    READ_SECTORS = 0x20
    READ_SECTORS_NO_RETRY = 0x21
    WRITE_SECTORS = 0x30
    WRITE_SECTORS_NO_RETRY = 0x31
    READ_VERIFY_SECTORS = 0x40
    READ_VERIFY_SECTORS_NO_RETRY = 0x41
    SEEK = 0x70             # 0x70-0x7F
    EXECUTE_DEVICE_DIAGNOSTIC = 0x90
    INITIALIZE_DEVICE_PARAMETERS = 0x91
    STANDBY_IMMEDIATE_OLD = 0x94
    IDLE_IMMEDIATE_OLD = 0x95
    STANDBY_OLD = 0x96
    IDLE_OLD = 0x97
    CHECK_POWER_MODE_OLD = 0x98
    SLEEP_OLD = 0x99
    IDENTIFY_PACKET_DEVICE = 0xA1
    READ_MULTIPLE = 0xC4
    WRITE_MULTIPLE = 0xC5
    SET_MULTIPLE_MODE = 0xC6
    STANDBY_IMMEDIATE = 0xE0
    IDLE_IMMEDIATE = 0xE1
    STANDBY = 0xE2
    IDLE = 0xE3
    CHECK_POWER_MODE = 0xE5
    SLEEP = 0xE6
    FLUSH_CACHE = 0xE7
    IDENTIFY_DEVICE = 0xEC
    SET_FEATURES = 0xEF


class Feature(IntEnum):
    """SET FEATURES subcommands (Features register)."""
    ENABLE_WRITE_CACHE = 0x02
    SET_TRANSFER_MODE = 0x03
    DISABLE_READ_LOOK_AHEAD = 0x55
    DISABLE_REVERTING_TO_DEFAULTS = 0x66
    DISABLE_WRITE_CACHE = 0x82
    ENABLE_READ_LOOK_AHEAD = 0xAA
    ENABLE_REVERTING_TO_DEFAULTS = 0xCC


POWER_ACTIVE, POWER_STANDBY = 0xFF, 0x00      # CHECK POWER MODE's Sector Count answers

_ERR, _DRQ, _DSC, _DF, _DRDY, _BSY = (int(b) for b in (
    Status.ERR, Status.DRQ, Status.DSC, Status.DF, Status.DRDY, Status.BSY))
_READY = _DRDY | _DSC                          # idle, no error: 50h
_ABRT, _IDNF, _UNC = int(Error.ABRT), int(Error.IDNF), int(Error.UNC)
_DEV, _LBA, _OBSOLETE = int(DeviceBits.DEV), int(DeviceBits.LBA), int(DeviceBits.OBSOLETE)
_NIEN, _SRST = int(Control.NIEN), int(Control.SRST)
DIAG_PASSED = 0x01             # diagnostic code: no error (and device 1 passed or absent)

MODEL = "HV HARDDISK"
FIRMWARE = "1.0"


def ata_string(text: str, length: int) -> list[int]:
    """An IDENTIFY string: space padded, two characters a word, first one in the high byte."""
    raw = text.encode("ascii", "replace")[:length].ljust(length, b" ")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, length, 2)]


class _Unit:
    """One drive's registers, settings and transfer state (absent drives keep
    registers too, since both drives latch every command-block write)."""

    def __init__(self, disk: Disk | None, unit: int, serial: str) -> None:
        self.disk = disk
        self.present = disk is not None
        self.unit = unit
        self.serial = serial
        self.capacity = min(disk.sectors, LBA28_MAX) if disk is not None else 0
        self.buf = bytearray(SECTOR * MAX_MULTIPLE)
        self.words = memoryview(self.buf).cast("H")   # x86 hosts: native = little endian
        self.power_on()

    def power_on(self) -> None:
        self.mult = 0                  # READ/WRITE MULTIPLE disabled until SET MULTIPLE MODE
        self.write_cache = True        # QEMU's default: writes are buffered until FLUSH CACHE
        self.look_ahead = True
        self.revert_defaults = False   # SRST keeps settings (66h state)
        self.power = POWER_ACTIVE
        self.pio_mode = 0
        g = self.disk.geometry if self.disk is not None else None
        # (The disk's geometry already stops at 16383 cylinders, word 1's limit past 8.4 GB.)
        self.default_chs = (g.cylinders, g.heads, g.sectors) if g else (0, 0, 0)
        # The power-on translation is the default geometry itself (as QEMU reports it,
        # even when a tiny image holds fewer sectors than its 2 minimum cylinders).
        self.tr_cyls, self.tr_heads, self.tr_spt = self.default_chs
        self.tr_valid = self.tr_cyls > 0
        self.signature()

    def set_translation(self, heads: int, spt: int) -> bool:
        """INITIALIZE DEVICE PARAMETERS: the CHS view used for CHS addressing."""
        cyls = min(self.capacity // (heads * spt), MAX_CURRENT_CYLINDERS) if heads and spt else 0
        self.tr_heads, self.tr_spt, self.tr_cyls = heads, spt, cyls
        self.tr_valid = cyls > 0
        return self.tr_valid

    def signature(self) -> None:
        """After reset or diagnostics: an ATA device's signature and a passed diagnostic."""
        self.features = 0
        self.nsector = 1
        self.sector = 1
        self.lcyl = self.hcyl = 0          # 00h/00h: ATA (ATAPI would be 14h/EBh)
        self.select = _OBSOLETE            # DEV=0: device 0 selected after reset
        self.error = DIAG_PASSED
        self.status = _READY if self.present else 0
        self.pending = False
        self.stop_transfer()

    def stop_transfer(self) -> None:
        self.pos = self.rd_end = self.wr_end = 0
        self.lba = self.remaining = self.block = 0
        self.xfer_sectors = 0


class IdeChannel(SharedStateDevice):
    """One ATA channel. ``drives`` is (master, slave), each a Disk or None."""

    # The primary channel; the secondary is IdeChannel(..., "ide1", base=0x170, ctrl=0x376).
    name = "ide0"
    ports = (PortRange(0x1F0, 8, 0), PortRange(0x3F6, 1, 8))
    ISA_IRQ = {0x1F0: 14, 0x170: 15}      # the PC/AT's two channels (others: no ISA line)

    def __init__(self, irq: IrqLine | None = None, drives=(None, None), name: str | None = None,
                 base: int | None = None, ctrl: int | None = None) -> None:
        # ``self.irq`` stays the ISA line number; the injected wire is ``irq_line``.
        self.irq_line = irq if irq is not None else NullIrq()
        cmd_block, ctrl_block = type(self).ports
        base = cmd_block.base if base is None else base
        ctrl = ctrl_block.base if ctrl is None else ctrl
        self.name = name or type(self).name
        self.ports = (PortRange(base, cmd_block.length, cmd_block.bias),
                      PortRange(ctrl, ctrl_block.length, ctrl_block.bias))
        self.irq = self.ISA_IRQ.get(base)
        drives = tuple(drives)[:2] + (None,) * max(0, 2 - len(tuple(drives)))
        self.drives: tuple[Disk | None, Disk | None] = drives
        self._units = tuple(_Unit(d, i, f"HV-{self.name.upper()}-{i}") for i, d in enumerate(drives))
        self._any = any(u.present for u in self._units)
        self._counts = {"commands": 0, "sectors_read": 0, "sectors_written": 0, "errors": 0}
        self.reset()

    # ---- board interface ----------------------------------------------------------
    def reset(self) -> None:
        """Power-on / hardware reset: both drives back to defaults, device 0 selected."""
        if self._bound:
            self._pull()
        for u in self._units:
            u.power_on()
        self.control = 0
        self._cur = self._units[0]
        self._update_irq()
        if self._bound:
            self._push()

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    # ---- the C fast path -----------------------------------------------------------
    def bind_fast(self, fast, port_of) -> None:
        """Let C serve the data port (``rep insw``/``outsw``) from the selected
        drive's sector buffer, which moves into C memory: one copy of the data."""
        for u in self._units:
            cbuf = fast.buffer(len(u.buf))
            cbuf[:] = u.buf
            u.buf, u.words, u.cptr = cbuf, cbuf.cast("H"), fast.pointer(cbuf)
        self._win = fast.window([port_of(0)], sizes=(2, 4), on_done=self._window_done)
        self._win_unit = None
        self._bound = True
        self._push()

    def _pull(self) -> None:
        """Words C moved since the window opened become the drive's position."""
        u = self._win_unit
        if u is not None:
            u.pos = self._win_start + self._win.moved // 2
            self._win_unit = None
            self._win.close()

    def _push(self) -> None:
        """Open the window on what is left of the current data phase."""
        u = self._cur
        end = u.rd_end or u.wr_end
        if u.pos < end:
            self._win.open(u.cptr, u.pos * 2, end * 2, writable=bool(u.wr_end))
            self._win_unit, self._win_start = u, u.pos
        else:
            self._win.close()

    def _window_done(self) -> None:
        u = self._win_unit
        self._pull()
        if u is not None:
            if u.rd_end:
                self._data_in_done(u)
            else:
                self._data_out_done(u)
        self._push()

    # ---- snapshots --------------------------------------------------------------------
    _UNIT_INTS = (("mult", MAX_MULTIPLE), ("power", 0xFF), ("pio_mode", 7),
                  ("tr_cyls", MAX_CURRENT_CYLINDERS), ("tr_heads", 16), ("tr_spt", 0xFF),
                  ("features", 0xFF), ("nsector", 0xFF), ("sector", 0xFF), ("lcyl", 0xFF),
                  ("hcyl", 0xFF), ("select", 0xFF), ("error", 0xFF), ("status", 0xFF),
                  ("lba", LBA28_MAX), ("remaining", 256), ("block", MAX_MULTIPLE),
                  ("xfer_sectors", MAX_MULTIPLE))
    _UNIT_FLAGS = ("write_cache", "look_ahead", "revert_defaults", "tr_valid", "pending")
    _WORDS = WORDS_PER_SECTOR * MAX_MULTIPLE

    def state(self) -> dict:
        """Device control, the selected drive, and per drive its registers, settings,
        CHS translation, data-phase cursor (taken back from C: the words the guest moved
        there) and sector buffer; the IRQ level. The images are the machine's disks."""
        if self._bound:
            self._pull()
        units = []
        for u in self._units:
            units.append({**{n: getattr(u, n) for n, _ in self._UNIT_INTS},
                          **{n: getattr(u, n) for n in self._UNIT_FLAGS},
                          "pos": u.pos, "rd_end": u.rd_end, "wr_end": u.wr_end,
                          "buf": bytes(u.buf)})
        out = st.versioned(control=self.control, current=self._units.index(self._cur),
                           units=units, counts=dict(self._counts),
                           irq=st.line_level(self.irq_line))
        if self._bound:
            self._push()
        return out

    def load_state(self, state: dict) -> None:
        """Everything as saved; under the C dispatch the data window reopens where the
        saved data phase stands (buffers are copied into the C memory already there)."""
        who = self.name
        st.check_version(state, who)
        control = st.integer(state, "control", who, 0, 0xFF)
        current = st.integer(state, "current", who, 0, 1)
        saved = st.field(state, "units", who)
        if not isinstance(saved, list) or len(saved) != 2 or not all(isinstance(u, dict) for u in saved):
            raise ValueError(f"{who}: saved units are not two drives")
        units = []
        for i, s in enumerate(saved):
            w = f"{who} drive {i}"
            values = {n: st.integer(s, n, w, 0, hi) for n, hi in self._UNIT_INTS}
            flags = {n: st.flag(s, n, w) for n in self._UNIT_FLAGS}
            pos = st.integer(s, "pos", w, 0, self._WORDS)
            rd_end = st.integer(s, "rd_end", w, 0, self._WORDS)
            wr_end = st.integer(s, "wr_end", w, 0, self._WORDS)
            if (rd_end and wr_end) or pos > max(rd_end, wr_end):
                raise ValueError(f"{w}: saved data phase {pos}/{rd_end}/{wr_end} is not one")
            units.append((values, flags, pos, rd_end, wr_end, st.blob(s, "buf", w, len(self._units[i].buf))))
        counts = st.field(state, "counts", who)
        if not isinstance(counts, dict) or set(counts) != set(self._counts) or \
                any(type(v) is not int or v < 0 for v in counts.values()):
            raise ValueError(f"{who}: saved counts are not the channel's counters")
        irq = st.flag(state, "irq", who)
        if self._bound:
            self._pull()
        for u, (values, flags, pos, rd_end, wr_end, buf) in zip(self._units, units):
            for name, value in {**values, **flags}.items():
                setattr(u, name, value)
            u.pos, u.rd_end, u.wr_end = pos, rd_end, wr_end
            u.buf[:] = buf                      # in place: C may hold this buffer
        self.control, self._cur = control, self._units[current]
        self._counts = dict(counts)
        st.restore_level(self.irq_line, irq)
        if self._bound:
            self._push()

    # ---- register access (SharedStateDevice.read/write wrap these) ------------------
    def _read(self, offset: int, size: int) -> int:
        if offset == 0:
            # The data port is the hot path (rep insw: one exit per word).
            u = self._cur
            if size == 2:
                p = u.pos
                if p < u.rd_end:
                    v = u.words[p]
                    p += 1
                    u.pos = p
                    if p == u.rd_end:
                        self._data_in_done(u)
                    return v
                return 0                      # DRQ clear: QEMU reads 0
            if size == 4:                     # 32-bit PIO: two words, low first
                lo = self._read(0, 2)
                return lo | (self._read(0, 2) << 16)
            return 0xFF                       # an 8-bit data access: not decoded (floats high)
        value = 0
        for i in range(size):                 # x86 port I/O: 1, 2 or 4 bytes
            value |= self._read_reg(offset + i, i) << (8 * i)
        return value

    def _write(self, offset: int, size: int, value: int) -> None:
        if offset == 0:
            u = self._cur
            if size == 2:
                p = u.pos
                if p < u.wr_end:
                    u.words[p] = value & 0xFFFF
                    p += 1
                    u.pos = p
                    if p == u.wr_end:
                        self._data_out_done(u)
                return
            if size == 4:
                self._write(0, 2, value)
                self._write(0, 2, value >> 16)
            return
        for i in range(size):
            self._write_reg(offset + i, i, (value >> (8 * i)) & 0xFF)

    def _read_reg(self, off: int, i: int) -> int:
        # A wide access at offset 7 spills onto ports that are not ours (float
        # high); the control block is the single port at offset 8.
        if off > 8 or off < 1 or (off == 8 and i):
            return 0xFF
        u = self._cur
        if off == Reg.DEVICE:
            return u.select if self._any else 0
        if not u.present:
            return 0
        if off == Reg.STATUS:
            if u.pending:
                u.pending = False
                self._update_irq()
            return u.status
        if off == Reg.ALT_STATUS:
            return u.status
        return (u.error, u.nsector, u.sector, u.lcyl, u.hcyl)[off - 1]

    def _write_reg(self, off: int, i: int, v: int) -> None:
        if off > 8 or off < 1 or (off == 8 and i):
            return
        if off == DEVICE_CONTROL:
            self._device_control(v)
            return
        if self.control & _SRST:
            return                            # BSY during reset: command block writes ignored
        if off == COMMAND:
            self._command(v)
            return
        for u in self._units:                 # both drives latch command-block writes
            if off == Reg.DEVICE:
                u.select = v | _OBSOLETE
            elif off == FEATURES:
                u.features = v
            elif off == Reg.SECTOR_COUNT:
                u.nsector = v
            elif off == Reg.LBA_LOW:
                u.sector = v
            elif off == Reg.LBA_MID:
                u.lcyl = v
            else:
                u.hcyl = v
        if off == Reg.DEVICE:
            self._cur = self._units[(v & _DEV) >> 4]
            self._update_irq()

    def _device_control(self, v: int) -> None:
        old, self.control = self.control, v
        if v & _SRST and not old & _SRST:
            for u in self._units:             # reset asserted: drives busy, transfers dropped
                u.stop_transfer()
                u.pending = False
                u.status = _BSY if u.present else 0
        elif old & _SRST and not v & _SRST:
            for u in self._units:             # reset released: signature, ready
                if u.revert_defaults:
                    u.mult, u.write_cache, u.look_ahead = 0, True, True
                u.signature()
            self._cur = self._units[0]
        self._update_irq()

    def _update_irq(self) -> None:
        self.irq_line.set_level(self._cur.pending and not self.control & _NIEN)

    # ---- command dispatch ---------------------------------------------------------
    def _command(self, op: int) -> None:
        u = self._cur
        if op == Cmd.EXECUTE_DEVICE_DIAGNOSTIC:   # runs on both drives whatever DEV says
            self._diagnostic()
            return
        if not u.present:
            return                            # device 0 ignores commands for an absent device 1
        self._counts["commands"] += 1
        u.pending = False
        u.stop_transfer()
        u.error = 0
        u.status = _READY                     # (every handler sets its own status)
        _COMMANDS.get(op, IdeChannel._cmd_abort)(self, u)
        self._update_irq()

    def _complete(self, u: _Unit) -> None:
        u.status = _READY
        u.pending = True

    def _fail(self, u: _Unit, error: int, status: int = _DRDY | _ERR) -> None:
        u.stop_transfer()
        u.error = error
        u.status = status
        u.pending = True
        self._counts["errors"] += 1

    def _cmd_abort(self, u: _Unit) -> None:
        self._fail(u, _ABRT)

    def _cmd_ok(self, u: _Unit) -> None:
        self._complete(u)

    def _diagnostic(self) -> None:
        for u in self._units:
            u.signature()
        self._cur = self._units[0]
        first = self._units[0] if self._units[0].present else self._units[1]
        if first.present:
            first.pending = True              # device 0 interrupts for both
        self._update_irq()

    # ---- addressing ---------------------------------------------------------------
    def _address(self, u: _Unit) -> int | None:
        """The command's first sector from the registers (LBA28 or CHS), None if the
        CHS address is outside the current translation."""
        if u.select & _LBA:
            return ((u.select & 0x0F) << 24) | (u.hcyl << 16) | (u.lcyl << 8) | u.sector
        c, h, s = (u.hcyl << 8) | u.lcyl, u.select & 0x0F, u.sector
        if not u.tr_valid or not (1 <= s <= u.tr_spt and h < u.tr_heads and c < u.tr_cyls):
            return None
        return (c * u.tr_heads + h) * u.tr_spt + s - 1

    def _set_address(self, u: _Unit, lba: int) -> None:
        """Point the registers at ``lba`` (the next sector, or the one in error)."""
        if u.select & _LBA:
            lba = min(lba, LBA28_MAX)
            u.sector, u.lcyl, u.hcyl = lba & 0xFF, (lba >> 8) & 0xFF, (lba >> 16) & 0xFF
            u.select = (u.select & 0xF0) | (lba >> 24)
            return
        # CHS: the translation is valid here (``_address`` fails a command before otherwise)
        c, rem = divmod(lba, u.tr_heads * u.tr_spt)
        h, s = divmod(rem, u.tr_spt)
        c &= 0xFFFF
        u.sector, u.lcyl, u.hcyl = s + 1, c & 0xFF, c >> 8
        u.select = (u.select & 0xF0) | h

    def _range(self, u: _Unit) -> tuple[int, int] | None:
        """(first sector, count) of a media command, or None after failing it with IDNF."""
        lba = self._address(u)
        count = u.nsector or 256
        if lba is None:
            self._fail(u, _IDNF)
            return None
        if lba >= u.capacity:
            self._set_address(u, lba)
            self._fail(u, _IDNF)
            return None
        u.power = POWER_ACTIVE
        return lba, count

    def _out_of_range(self, u: _Unit, lba: int, n: int) -> bool:
        if lba + n <= u.capacity:
            return False
        self._set_address(u, max(lba, u.capacity))   # the first sector not found
        self._fail(u, _IDNF)
        return True

    # ---- PIO data-in: READ SECTORS / READ MULTIPLE / IDENTIFY ------------------------
    def _cmd_read(self, u: _Unit, block: int = 1) -> None:
        r = self._range(u)
        if r is not None:
            u.lba, u.remaining = r
            u.block = block
            self._load_block(u)

    def _cmd_read_multiple(self, u: _Unit) -> None:
        if not u.mult:
            self._fail(u, _ABRT)
        else:
            self._cmd_read(u, u.mult)

    def _load_block(self, u: _Unit) -> None:
        n = min(u.block, u.remaining)
        if self._out_of_range(u, u.lba, n):
            return
        try:
            data = u.disk.read(u.lba, n)
        except (DiskError, OSError, ValueError) as e:
            self._set_address(u, u.lba)
            self._fail(u, _read_error(e))
            return
        u.buf[:len(data)] = data
        u.lba += n
        u.remaining -= n
        self._counts["sectors_read"] += n
        self._set_address(u, u.lba)
        u.nsector = u.remaining & 0xFF
        self._start_data_in(u, n * WORDS_PER_SECTOR)

    def _start_data_in(self, u: _Unit, words: int) -> None:
        u.pos, u.rd_end, u.wr_end = 0, words, 0
        u.status = _READY | _DRQ
        u.pending = True

    def _data_in_done(self, u: _Unit) -> None:
        u.pos = u.rd_end = 0
        if u.remaining:
            self._load_block(u)               # the next DRQ block: another interrupt
        else:
            u.status = _READY                 # last word read: no interrupt
        self._update_irq()

    def _cmd_identify(self, u: _Unit) -> None:
        struct.pack_into("<256H", u.buf, 0, *self.identify_words(u.unit))
        self._start_data_in(u, WORDS_PER_SECTOR)

    def identify_words(self, unit: int) -> list[int]:
        """The 256 IDENTIFY DEVICE words for drive ``unit`` (0 master, 1 slave)."""
        u = self._units[unit]
        w = [0] * 256
        cyls, heads, spt = u.default_chs
        w[0] = 0x0040                          # ATA device, fixed (not removable)
        w[1], w[3], w[6] = cyls, heads, spt
        w[4], w[5] = SECTOR * spt, SECTOR      # obsolete unformatted bytes per track/sector
        w[10:20] = ata_string(u.serial, 20)
        w[20], w[21], w[22] = 3, 512, 4        # obsolete buffer type/size, ECC bytes (as QEMU)
        w[23:27] = ata_string(FIRMWARE, 8)
        w[27:47] = ata_string(MODEL, 40)
        w[47] = 0x8000 | MAX_MULTIPLE
        w[49] = 1 << 9                         # LBA supported; no DMA (bit 8 clear)
        w[50] = 0x4000
        w[51] = 0x0200                         # obsolete PIO timing mode 2
        w[53] = 0x0002 | (0x0001 if u.tr_valid else 0)   # words 64-70 valid; 54-58 if translated
        if u.tr_valid:
            cur = u.tr_cyls * u.tr_heads * u.tr_spt
            w[54], w[55], w[56] = u.tr_cyls, u.tr_heads, u.tr_spt
            w[57], w[58] = cur & 0xFFFF, cur >> 16
        w[59] = 0x0100 | u.mult                # multiple setting valid
        w[60], w[61] = u.capacity & 0xFFFF, u.capacity >> 16
        w[64] = 0x0003                         # PIO modes 3 and 4
        w[65] = w[66] = w[67] = w[68] = 120    # cycle times (ns)
        w[80] = 0x007E                         # ATA-1 .. ATA-6
        # 82-87: NOP, look-ahead, write cache, power management; FLUSH CACHE
        w[82] = 0x4000 | 0x0040 | 0x0020 | 0x0008
        w[83] = 0x4000 | 0x1000
        w[84] = 0x4000
        w[85] = 0x4000 | (0x0040 if u.look_ahead else 0) | (0x0020 if u.write_cache else 0) | 0x0008
        w[86] = 0x1000
        w[87] = 0x4000
        raw = struct.pack("<255H", *w[:255])
        w[255] = 0x00A5 | (((-(sum(raw) + 0xA5)) & 0xFF) << 8)   # integrity word: bytes sum to 0
        return w

    # ---- PIO data-out: WRITE SECTORS / WRITE MULTIPLE --------------------------------
    def _cmd_write(self, u: _Unit, block: int = 1) -> None:
        if u.disk.readonly:
            self._fail(u, _ABRT)
            return
        r = self._range(u)
        if r is not None:
            u.lba, u.remaining = r
            u.block = block
            self._arm_block(u)                # the first DRQ block comes without an interrupt

    def _cmd_write_multiple(self, u: _Unit) -> None:
        if not u.mult:
            self._fail(u, _ABRT)
        else:
            self._cmd_write(u, u.mult)

    def _arm_block(self, u: _Unit) -> None:
        n = min(u.block, u.remaining)
        if self._out_of_range(u, u.lba, n):
            return
        u.xfer_sectors = n
        u.pos, u.rd_end, u.wr_end = 0, 0, n * WORDS_PER_SECTOR
        u.status = _READY | _DRQ

    def _data_out_done(self, u: _Unit) -> None:
        n = u.xfer_sectors                    # (each way below ends this data phase)
        try:
            u.disk.write(u.lba, bytes(u.buf[:n * SECTOR]))
            if not u.remaining - n and not u.write_cache:
                u.disk.flush()                # write cache off: on the media before completion
        except (DiskError, OSError, ValueError) as e:
            self._set_address(u, u.lba)
            self._fail(u, *_write_error(e))
        else:
            u.lba += n
            u.remaining -= n
            self._counts["sectors_written"] += n
            self._set_address(u, u.lba)
            u.nsector = u.remaining & 0xFF
            if u.remaining:
                self._arm_block(u)
            else:
                u.stop_transfer()
                u.status = _READY
            u.pending = True                  # every block written interrupts
        self._update_irq()

    # ---- non-data commands ----------------------------------------------------------
    def _cmd_read_verify(self, u: _Unit) -> None:
        r = self._range(u)
        if r is None:
            return
        lba, count = r
        if self._out_of_range(u, lba, count):
            return
        try:
            u.disk.read(lba, count)
        except (DiskError, OSError, ValueError) as e:
            self._set_address(u, lba)
            self._fail(u, _read_error(e))
            return
        self._set_address(u, lba + count)
        u.nsector = 0
        self._complete(u)

    def _cmd_seek(self, u: _Unit) -> None:
        lba = self._address(u)
        if lba is None or lba >= u.capacity:
            self._fail(u, _IDNF)
        else:
            self._complete(u)

    def _cmd_set_multiple(self, u: _Unit) -> None:
        n = u.nsector
        if n > MAX_MULTIPLE or n & (n - 1):
            u.mult = 0                        # an unsupported block size disables multiple mode
            self._fail(u, _ABRT)
        else:
            u.mult = n                        # 0 disables READ/WRITE MULTIPLE
            self._complete(u)

    def _cmd_initialize_device_parameters(self, u: _Unit) -> None:
        if u.set_translation((u.select & 0x0F) + 1, u.nsector):
            self._complete(u)
        else:
            self._fail(u, _ABRT)              # CHS commands then fail with IDNF until fixed

    def _cmd_flush(self, u: _Unit) -> None:
        try:
            u.disk.flush()
        except (DiskError, OSError, ValueError) as e:
            self._fail(u, *_write_error(e))
            return
        self._complete(u)

    def _cmd_set_features(self, u: _Unit) -> None:
        f = u.features
        if f == Feature.SET_TRANSFER_MODE:
            mode = u.nsector
            if mode in (0x00, 0x01) or 0x08 <= mode <= 0x0C:   # PIO default / PIO flow control 0-4
                u.pio_mode = mode & 0x07 if mode >= 0x08 else 0
            else:
                self._fail(u, _ABRT)          # DMA modes: not modelled
                return
        elif f in _FEATURE_FLAGS:
            attr, value = _FEATURE_FLAGS[f]
            setattr(u, attr, value)
        else:
            self._fail(u, _ABRT)
            return
        self._complete(u)

    def _cmd_check_power_mode(self, u: _Unit) -> None:
        u.nsector = u.power
        self._complete(u)

    def _cmd_idle(self, u: _Unit) -> None:
        u.power = POWER_ACTIVE
        self._complete(u)

    def _cmd_standby(self, u: _Unit) -> None:
        u.power = POWER_STANDBY               # SLEEP too: the next media access spins up
        self._complete(u)


def _read_error(e: Exception) -> int:
    """Error register bits for a failed read: IDNF past the end, UNC for a host I/O error."""
    code = e.code if isinstance(e, DiskError) else IO_ERROR
    return {OUT_OF_RANGE: _IDNF, IO_ERROR: _UNC}.get(code, _ABRT)


def _write_error(e: Exception) -> tuple[int, int]:
    """(error, status) for a failed write or flush: IDNF past the end, ABRT for a
    refused write, a device fault (DF, ABRT) when the host file failed."""
    code = e.code if isinstance(e, DiskError) else IO_ERROR
    if code == OUT_OF_RANGE:
        return _IDNF, _DRDY | _ERR
    if code == IO_ERROR:
        return _ABRT, _DRDY | _DF | _ERR
    return _ABRT, _DRDY | _ERR


_FEATURE_FLAGS = {
    Feature.ENABLE_WRITE_CACHE: ("write_cache", True),
    Feature.DISABLE_WRITE_CACHE: ("write_cache", False),
    Feature.ENABLE_READ_LOOK_AHEAD: ("look_ahead", True),
    Feature.DISABLE_READ_LOOK_AHEAD: ("look_ahead", False),
    Feature.ENABLE_REVERTING_TO_DEFAULTS: ("revert_defaults", True),
    Feature.DISABLE_REVERTING_TO_DEFAULTS: ("revert_defaults", False),
}

# opcode -> handler; anything else (NOP, IDENTIFY PACKET DEVICE, 48-bit, DMA, PACKET) aborts.
_COMMANDS = {
    Cmd.IDENTIFY_DEVICE: IdeChannel._cmd_identify,
    Cmd.READ_SECTORS: IdeChannel._cmd_read,
    Cmd.READ_SECTORS_NO_RETRY: IdeChannel._cmd_read,
    Cmd.WRITE_SECTORS: IdeChannel._cmd_write,
    Cmd.WRITE_SECTORS_NO_RETRY: IdeChannel._cmd_write,
    Cmd.READ_MULTIPLE: IdeChannel._cmd_read_multiple,
    Cmd.WRITE_MULTIPLE: IdeChannel._cmd_write_multiple,
    Cmd.SET_MULTIPLE_MODE: IdeChannel._cmd_set_multiple,
    Cmd.READ_VERIFY_SECTORS: IdeChannel._cmd_read_verify,
    Cmd.READ_VERIFY_SECTORS_NO_RETRY: IdeChannel._cmd_read_verify,
    Cmd.FLUSH_CACHE: IdeChannel._cmd_flush,
    Cmd.INITIALIZE_DEVICE_PARAMETERS: IdeChannel._cmd_initialize_device_parameters,
    Cmd.SET_FEATURES: IdeChannel._cmd_set_features,
    Cmd.CHECK_POWER_MODE: IdeChannel._cmd_check_power_mode,
    Cmd.CHECK_POWER_MODE_OLD: IdeChannel._cmd_check_power_mode,
    Cmd.IDLE: IdeChannel._cmd_idle,
    Cmd.IDLE_IMMEDIATE: IdeChannel._cmd_idle,
    Cmd.IDLE_OLD: IdeChannel._cmd_idle,
    Cmd.IDLE_IMMEDIATE_OLD: IdeChannel._cmd_idle,
    Cmd.STANDBY: IdeChannel._cmd_standby,
    Cmd.STANDBY_IMMEDIATE: IdeChannel._cmd_standby,
    Cmd.STANDBY_OLD: IdeChannel._cmd_standby,
    Cmd.STANDBY_IMMEDIATE_OLD: IdeChannel._cmd_standby,
    Cmd.SLEEP: IdeChannel._cmd_standby,
    Cmd.SLEEP_OLD: IdeChannel._cmd_standby,
    **{Cmd.RECALIBRATE + i: IdeChannel._cmd_ok for i in range(16)},
    **{Cmd.SEEK + i: IdeChannel._cmd_seek for i in range(16)},
}
_COMMANDS = {int(k): v for k, v in _COMMANDS.items()}
