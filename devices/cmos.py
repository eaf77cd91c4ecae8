"""MC146818 real-time clock and the PC/AT's 128 bytes of CMOS RAM (ports 0x70/0x71).

Port 0x70 selects a register (bit 7 is the NMI mask the board wires there; it is
kept in ``nmi_disabled`` and never reaches the index), port 0x71 reads or writes
it. Registers 0x00-0x0D are the clock; 0x0E-0x7F are battery-backed RAM that the
BIOS reads its configuration from (memory sizes, drive types, checksum).

Time model: the clock holds one number, RTC seconds at virtual time 0 (``_base``),
taken from the host's UTC clock at power-on. The time registers are computed from
``_base + clock.now() // 1 s`` whenever they are read, so the RTC ticks with the
virtual clock and seconds roll over exactly on virtual-second boundaries. A guest
write to a time register rewrites ``_base`` (an offset), and status register B's
SET bit freezes the count while the guest programs it, as on the chip.

Flags in register C are computed lazily from the virtual time that passed since
the last look (``_sync``), so an idle RTC costs nothing; a clock timer is armed
only while an enabled interrupt (PIE, UIE, AIE) could raise IRQ 8 and IRQF is
still clear. The line stays high until the guest reads C, as the chip's IRQ pin.
"""
from __future__ import annotations

import datetime
import time
from enum import IntEnum, IntFlag
from typing import Callable

from hv.devices import state as st
from hv.devices.base import Device, IrqLine, NullIrq, PortRange
from hv.clock import NS_PER_S, Clock, Timer

KiB = 1024
MiB = 1024 * KiB


class Reg(IntEnum):
    SECONDS = 0x00
    SECONDS_ALARM = 0x01
    MINUTES = 0x02
    MINUTES_ALARM = 0x03
    HOURS = 0x04
    HOURS_ALARM = 0x05
    DAY_OF_WEEK = 0x06
    DAY_OF_MONTH = 0x07
    MONTH = 0x08
    YEAR = 0x09
    A = 0x0A
    B = 0x0B
    C = 0x0C
    D = 0x0D
    # PC/AT CMOS RAM layout (IBM AT Technical Reference; what SeaBIOS/QEMU use)
    SHUTDOWN_STATUS = 0x0F
    FLOPPY_TYPES = 0x10
    HD_TYPES = 0x12
    EQUIPMENT = 0x14
    BASE_MEM_LO = 0x15
    BASE_MEM_HI = 0x16
    EXT_MEM_LO = 0x17
    EXT_MEM_HI = 0x18
    HD0_EXT_TYPE = 0x19
    HD1_EXT_TYPE = 0x1A
    CHECKSUM_HI = 0x2E
    CHECKSUM_LO = 0x2F
    EXT_MEM_LO2 = 0x30
    EXT_MEM_HI2 = 0x31
    CENTURY = 0x32
    MEM_ABOVE_16M_LO = 0x34
    MEM_ABOVE_16M_HI = 0x35


class RegA(IntFlag):
    UIP = 0x80        # update in progress (read-only)
    DV_MASK = 0x70    # divider select; 010 = 32.768 kHz time base
    RS_MASK = 0x0F    # periodic rate select


class RegB(IntFlag):
    SET = 0x80    # halt updates so the guest can program the time
    PIE = 0x40    # periodic interrupt enable
    AIE = 0x20    # alarm interrupt enable
    UIE = 0x10    # update-ended interrupt enable
    SQWE = 0x08   # square-wave output (no pin here)
    DM = 0x04     # data mode: 1 = binary, 0 = BCD
    H24 = 0x02    # 1 = 24-hour mode, 0 = 12-hour with bit 7 = PM
    DSE = 0x01    # daylight saving (not modelled)


class RegC(IntFlag):
    IRQF = 0x80
    PF = 0x40
    AF = 0x20
    UF = 0x10


class RegD(IntFlag):
    VRT = 0x80    # valid RAM and time: the battery is always good


REG_A_RESET = 0x26   # divider 010 (32.768 kHz crystal), rate 0110 = 1024 Hz: what a BIOS programs
REG_B_RESET = RegB.H24  # 0x02: 24 h, BCD, no interrupts - the PC BIOS convention
UIP_WINDOW_NS = 244_000  # UIP rises 244 us before each update (datasheet tBUC)
ALARM_DONT_CARE = 0xC0   # alarm bytes 0xC0-0xFF match any value
CMOS_SIZE = 128
CHECKSUM_RANGE = range(0x10, 0x2E)
EQUIP_FPU = 0x02         # maths coprocessor present (QEMU always reports one)
EQUIP_PS2_MOUSE = 0x04   # pointing device installed
EQUIP_FLOPPY = 0x01      # at least one floppy; bits 7-6 = drives - 1
HD_USER_TYPE = 47        # "user-defined" drive type in 0x19/0x1A, as QEMU writes
_EPOCH = datetime.datetime(1970, 1, 1)
_TIME_REGS = (Reg.SECONDS, Reg.MINUTES, Reg.HOURS, Reg.DAY_OF_WEEK,
              Reg.DAY_OF_MONTH, Reg.MONTH, Reg.YEAR)


def _to_bcd(v: int) -> int:
    return ((v // 10) << 4) | (v % 10)


def _from_bcd(v: int) -> int:
    # Tolerant: a hostile nibble above 9 still yields a number, clamped later.
    return ((v >> 4) & 0x0F) * 10 + (v & 0x0F)


def _clamp(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else hi if v > hi else v


def _days_in_month(year: int, month: int) -> int:
    nxt = datetime.date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - datetime.date(year, month, 1)).days


class CmosRtc(Device):
    name = "cmos"
    ports = (PortRange(0x70, 2),)
    irq = 8

    INDEX, DATA = 0, 1

    def __init__(self, clock: Clock, irq: IrqLine | None = None, mem_size: int = 16 << 20,
                 host_time: Callable[[], float] = time.time,
                 floppy_types: tuple[int, int] = (4, 0), hd_count: int = 0) -> None:
        self._clock = clock
        self._line = irq if irq is not None else NullIrq()
        self.mem_size = mem_size
        self._floppy = (floppy_types[0] & 0x0F, floppy_types[1] & 0x0F)
        self._hd_count = hd_count
        self.ram = bytearray(CMOS_SIZE)
        self._base = int(host_time())   # RTC seconds at virtual time 0 (UTC)
        self._frozen: int | None = None  # RTC seconds held while B.SET is 1
        self._dow_delta = 0              # guest-written day of week vs the calendar's
        self._timer: Timer | None = None
        self.index = 0
        self.nmi_disabled = False
        self._a = REG_A_RESET
        self._b = int(REG_B_RESET)
        self._c = 0
        self._synced = clock.now()
        self._load_config()
        self.ram[Reg.CENTURY] = _to_bcd(self._fields(self._now_s())[6] // 100)
        self._checksum()

    # --- configuration bytes the BIOS reads ------------------------------

    def _load_config(self) -> None:
        ram = self.ram
        base_kb = min(640, self.mem_size // KiB)
        ram[Reg.BASE_MEM_LO], ram[Reg.BASE_MEM_HI] = base_kb & 0xFF, base_kb >> 8
        ext_kb = min(0xFFFF, max(0, self.mem_size - MiB) // KiB)
        for lo in (Reg.EXT_MEM_LO, Reg.EXT_MEM_LO2):
            ram[lo], ram[lo + 1] = ext_kb & 0xFF, ext_kb >> 8
        above16 = min(0xFFFF, max(0, self.mem_size - 16 * MiB) // (64 * KiB))
        ram[Reg.MEM_ABOVE_16M_LO], ram[Reg.MEM_ABOVE_16M_HI] = above16 & 0xFF, above16 >> 8
        self._write_drives()

    def _write_drives(self) -> None:
        ram = self.ram
        a, b = self._floppy
        ram[Reg.FLOPPY_TYPES] = (a << 4) | b
        drives = (a != 0) + (b != 0)
        equip = EQUIP_FPU | EQUIP_PS2_MOUSE
        if drives:
            equip |= EQUIP_FLOPPY | ((drives - 1) << 6)
        ram[Reg.EQUIPMENT] = equip
        n = self._hd_count
        # Type 0xF in a nibble means "see the extended type byte" (0x19/0x1A).
        ram[Reg.HD_TYPES] = (0xF0 if n >= 1 else 0) | (0x0F if n >= 2 else 0)
        ram[Reg.HD0_EXT_TYPE] = HD_USER_TYPE if n >= 1 else 0
        ram[Reg.HD1_EXT_TYPE] = HD_USER_TYPE if n >= 2 else 0

    def _checksum(self) -> None:
        total = sum(self.ram[CHECKSUM_RANGE.start:CHECKSUM_RANGE.stop]) & 0xFFFF
        self.ram[Reg.CHECKSUM_HI], self.ram[Reg.CHECKSUM_LO] = total >> 8, total & 0xFF

    def set_floppy_types(self, a: int, b: int = 0) -> None:
        """Drive types (0 none, 1 360K, 2 1.2M, 3 720K, 4 1.44M, 5 2.88M)."""
        self._floppy = (a & 0x0F, b & 0x0F)
        self._write_drives()
        self._checksum()

    def set_hd_count(self, n: int) -> None:
        self._hd_count = max(0, n)
        self._write_drives()
        self._checksum()

    # --- time ------------------------------------------------------------

    def _now_s(self) -> int:
        if self._frozen is not None:
            return self._frozen
        return self._base + self._clock.now() // NS_PER_S

    def _set_now_s(self, s: int) -> None:
        if self._frozen is not None:
            self._frozen = s
        else:
            self._base = s - self._clock.now() // NS_PER_S

    @staticmethod
    def _fields(s: int) -> tuple[int, int, int, int, int, int, int]:
        """(sec, min, hour, weekday 1=Sunday, day, month, year) of RTC second ``s``."""
        try:
            dt = _EPOCH + datetime.timedelta(seconds=s)
        except OverflowError:
            dt = _EPOCH
        return (dt.second, dt.minute, dt.hour, dt.isoweekday() % 7 + 1,
                dt.day, dt.month, dt.year)

    def _encode(self, v: int) -> int:
        return v if self._b & RegB.DM else _to_bcd(v)

    def _decode(self, v: int) -> int:
        return v if self._b & RegB.DM else _from_bcd(v)

    def _encode_hours(self, h: int) -> int:
        if self._b & RegB.H24:
            return self._encode(h)
        return self._encode(h % 12 or 12) | (0x80 if h >= 12 else 0)

    def _decode_hours(self, v: int) -> int:
        if self._b & RegB.H24:
            return self._decode(v)
        return self._decode(v & 0x7F) % 12 + (12 if v & 0x80 else 0)

    def _century(self) -> int:
        c = _from_bcd(self.ram[Reg.CENTURY])
        return c if 1 <= c <= 99 else 20

    def _read_time(self, reg: int) -> int:
        sec, mn, hr, dow, day, mon, yr = self._fields(self._now_s())
        if reg == Reg.HOURS:
            return self._encode_hours(hr)
        if reg == Reg.DAY_OF_WEEK:
            return self._encode((dow - 1 + self._dow_delta) % 7 + 1)
        value = {Reg.SECONDS: sec, Reg.MINUTES: mn, Reg.DAY_OF_MONTH: day,
                 Reg.MONTH: mon, Reg.YEAR: yr % 100}[reg]
        return self._encode(value)

    def _write_time(self, reg: int, value: int) -> None:
        self._sync()  # account elapsed seconds against the old time first
        sec, mn, hr, dow, day, mon, yr = self._fields(self._now_s())
        if reg == Reg.DAY_OF_WEEK:
            self._dow_delta = (_clamp(self._decode(value), 1, 7) - dow) % 7
            return
        v = self._decode(value)
        if reg == Reg.SECONDS:
            sec = _clamp(v, 0, 59)
        elif reg == Reg.MINUTES:
            mn = _clamp(v, 0, 59)
        elif reg == Reg.HOURS:
            hr = _clamp(self._decode_hours(value), 0, 23)
        elif reg == Reg.DAY_OF_MONTH:
            day = v
        elif reg == Reg.MONTH:
            mon = _clamp(v, 1, 12)
        elif reg == Reg.YEAR:
            yr = self._century() * 100 + _clamp(v, 0, 99)
        yr = _clamp(yr, 1, 9998)
        day = _clamp(day, 1, _days_in_month(yr, mon))
        dt = datetime.datetime(yr, mon, day, hr, mn, sec)
        self._set_now_s((dt - _EPOCH) // datetime.timedelta(seconds=1))

    # --- interrupts --------------------------------------------------------

    def _period_ns(self) -> int:
        """Periodic interrupt period for rate select RS (0 = off)."""
        rs = self._a & RegA.RS_MASK
        if rs == 0:
            return 0
        if rs < 3:
            rs += 7   # rates 1 and 2 repeat 8 and 9 with a 32.768 kHz base
        return NS_PER_S * (1 << (rs - 1)) // 32768

    def _alarm_hit(self, first: int, last: int) -> bool:
        """Does any RTC second in [first, last] match the alarm bytes?

        Compares in the current data format as the chip does; works on
        seconds-of-day arithmetic (UTC days are exactly 86400 s) so a long
        gap between looks costs at most one pass over a day."""
        def matching(byte: int, values: range, enc) -> set[int]:
            if byte & ALARM_DONT_CARE == ALARM_DONT_CARE:
                return set(values)
            return {v for v in values if enc(v) == byte}
        secs = matching(self.ram[Reg.SECONDS_ALARM], range(60), self._encode)
        mins = matching(self.ram[Reg.MINUTES_ALARM], range(60), self._encode)
        hours = matching(self.ram[Reg.HOURS_ALARM], range(24), self._encode_hours)
        if not (secs and mins and hours):
            return False
        first = max(first, last - 86399)
        return any(t % 60 in secs and t // 60 % 60 in mins and t // 3600 % 24 in hours
                   for t in range(first, last + 1))

    def _sync(self) -> None:
        """Set PF/UF/AF for the virtual time that passed since the last call."""
        now = self._clock.now()
        last = self._synced
        if now > last:
            period = self._period_ns()
            if period and now // period != last // period:
                self._c |= RegC.PF
            ticks = now // NS_PER_S - last // NS_PER_S
            if ticks and self._frozen is None:
                self._c |= RegC.UF
                if not self._c & RegC.AF:
                    end = self._base + now // NS_PER_S
                    if self._alarm_hit(end - ticks + 1, end):
                        self._c |= RegC.AF
            self._synced = now
        enabled = ((self._c & RegC.PF and self._b & RegB.PIE)
                   or (self._c & RegC.AF and self._b & RegB.AIE)
                   or (self._c & RegC.UF and self._b & RegB.UIE))
        if enabled:
            self._c |= RegC.IRQF
        self._line.set_level(bool(self._c & RegC.IRQF))

    def _schedule(self) -> None:
        """Arm one clock timer for the next moment IRQF could rise."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._c & RegC.IRQF:
            return  # the line is already high; reading C re-arms
        now = self._clock.now()
        deadlines = []
        period = self._period_ns()
        if period and self._b & RegB.PIE:
            deadlines.append((now // period + 1) * period)
        if self._b & (RegB.UIE | RegB.AIE) and self._frozen is None:
            deadlines.append((now // NS_PER_S + 1) * NS_PER_S)
        if deadlines:
            self._timer = self._clock.at(min(deadlines), self._on_timer)

    def _on_timer(self, _now: int) -> None:
        self._timer = None
        self._sync()
        self._schedule()

    # --- registers ---------------------------------------------------------

    def _in_uip_window(self) -> bool:
        if self._frozen is not None:
            return False  # SET stops updates, so none is ever in progress
        return self._clock.now() % NS_PER_S >= NS_PER_S - UIP_WINDOW_NS

    def _read_reg(self, reg: int) -> int:
        if reg in _TIME_REGS:
            return self._read_time(reg)
        if reg == Reg.A:
            return self._a | (RegA.UIP if self._in_uip_window() else 0)
        if reg == Reg.B:
            return self._b
        if reg == Reg.C:
            self._sync()
            value = self._c
            self._c = 0
            self._line.set_level(False)
            self._schedule()
            return value
        if reg == Reg.D:
            return RegD.VRT
        return self.ram[reg]

    def _write_reg(self, reg: int, value: int) -> None:
        if reg in _TIME_REGS:
            self._write_time(reg, value)
        elif reg == Reg.A:
            self._sync()
            self._a = value & ~int(RegA.UIP) & 0xFF
            self._schedule()
        elif reg == Reg.B:
            self._sync()
            was_set = self._b & RegB.SET
            if value & RegB.SET:
                value &= ~int(RegB.UIE)  # datasheet: SET=1 clears UIE
                if not was_set:
                    self._frozen = self._now_s()
            elif was_set and self._frozen is not None:
                self._base = self._frozen - self._clock.now() // NS_PER_S
                self._frozen = None
            self._b = value & 0xFF
            self._sync()
            self._schedule()
        elif reg in (Reg.C, Reg.D):
            pass  # read-only
        else:
            self.ram[reg] = value

    def read(self, offset: int, size: int) -> int:
        result = 0
        for i in range(size):
            off = offset + i
            if off == self.DATA:
                byte = self._read_reg(self.index)
            else:
                byte = 0xFF  # the index port is write-only
            result |= (int(byte) & 0xFF) << (8 * i)
        return result

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            off, byte = offset + i, (value >> (8 * i)) & 0xFF
            if off == self.INDEX:
                self.nmi_disabled = bool(byte & 0x80)
                self.index = byte & 0x7F
            elif off == self.DATA:
                self._write_reg(self.index, byte)

    # --- snapshots ---------------------------------------------------------

    def state(self) -> dict:
        """The index and NMI mask, CMOS RAM, registers A-C, the time as its offset from
        virtual time (or the value frozen by SET), the last virtual time flags were
        computed for, the update/periodic timer's deadline and IRQ 8's level."""
        return st.versioned(index=self.index, nmi_disabled=self.nmi_disabled,
                            ram=bytes(self.ram), base=self._base, frozen=self._frozen,
                            dow_delta=self._dow_delta, a=int(self._a), b=int(self._b), c=int(self._c),
                            synced=self._synced, timer=st.deadline(self._timer),
                            irq=st.line_level(self._line))

    def load_state(self, state: dict) -> None:
        who = self.name
        st.check_version(state, who)
        i64 = (-(1 << 62), 1 << 62)
        index = st.integer(state, "index", who, 0, 0x7F)
        nmi = st.flag(state, "nmi_disabled", who)
        ram = st.blob(state, "ram", who, CMOS_SIZE)
        base = st.integer(state, "base", who, *i64)
        frozen = st.optional_integer(state, "frozen", who, *i64)
        dow = st.integer(state, "dow_delta", who, 0, 6)
        regs = {n: st.integer(state, n, who, 0, 0xFF) for n in ("a", "b", "c")}
        synced = st.integer(state, "synced", who, *i64)
        irq = st.flag(state, "irq", who)
        if self._timer is not None:
            self._timer.cancel()
        self.index, self.nmi_disabled, self.ram[:] = index, nmi, ram
        self._base, self._frozen, self._dow_delta, self._synced = base, frozen, dow, synced
        self._a, self._b, self._c = regs["a"], regs["b"], regs["c"]
        self._timer = st.rearm(self._clock, state, "timer", self._on_timer, who)
        st.restore_level(self._line, irq)

    def reset(self) -> None:
        """What the chip's RESET pin does: interrupt enables and flags clear.

        Time, register A, the data format and all of CMOS RAM are battery-backed
        and survive, which a BIOS relies on (the shutdown byte 0x0F tells it why
        the CPU was reset)."""
        self._sync()
        self._b &= ~int(RegB.PIE | RegB.AIE | RegB.UIE | RegB.SQWE)
        self._c = 0
        self._line.set_level(False)
        self._schedule()
        self.index = 0
        self.nmi_disabled = False
