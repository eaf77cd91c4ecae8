"""The ACPI power-management block: the fixed-hardware registers an ACPI OS drives
(ACPI 3.0 section 4.7, "ACPI Hardware Specification", register names as there).

At ``io_base`` (0x600 on the PC, as QEMU's PIIX4 and SeaBIOS place it):

  +0  PM1a_STS  16 bits  status, write 1 to clear
  +2  PM1a_EN   16 bits  enables: a set status bit with its enable set asserts the SCI
  +4  PM1a_CNT  16 bits  SCI_EN (always 1), BM_RLD, GBL_RLS, SLP_TYP, SLP_EN
  +6            2 bytes  nothing (reads all ones)
  +8  PM_TMR    32 bits  the 3.579545 MHz power-management timer, read only

There is no GPE block (the FADT declares none) and no SMI command port: the FADT's
SMI_CMD is 0, so the machine is in ACPI mode from power-on and SCI_EN reads 1.

The PM timer is 24 bits wide by default (TMR_VAL_EXT clear, as PIIX4's); with
``timer_32bit`` it is 32 bits. Nothing ticks: the count is computed from
``clock.now()`` at every read, and TMR_STS (set when the timer's top bit changes) is
computed from the tick at which software last cleared it. Only when TMR_EN is set
does a ``clock.at`` Timer wait for the next top-bit change, to raise the SCI.

Sleep: writing SLP_EN with SLP_TYP = the value the DSDT's ``\\_S5`` names calls the
injected ``poweroff()`` (the board ends the run with exit code 0). Other sleep types
are not offered by the DSDT; a write that asks for one is recorded and ignored.

Every access is defined: byte, word and dword accesses at any offset are split into
byte lanes (a dword read of PM1a_STS returns PM1a_EN in its upper half); lanes
outside the registers read 0xFF and ignore writes.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from hv.clock import NS_PER_S, Clock, Timer
from hv.devices import state as st
from hv.devices.base import Device, IrqLine, NullIrq, PortRange

PM_TIMER_HZ = 3_579_545                     # ACPI: the PM timer runs at 3.579545 MHz

# Register offsets in the block, and their widths in bytes.
PM1_STS, PM1_EN, PM1_CNT, PM_TMR = 0x0, 0x2, 0x4, 0x8
REGISTERS = ((PM1_STS, 2), (PM1_EN, 2), (PM1_CNT, 2), (PM_TMR, 4))
BLOCK_LEN = 12

# PM1_STS / PM1_EN bits.
TMR_STS = TMR_EN = 1 << 0
BM_STS = 1 << 4
GBL_STS = GBL_EN = 1 << 5
PWRBTN_STS = PWRBTN_EN = 1 << 8
SLPBTN_STS = SLPBTN_EN = 1 << 9
RTC_STS = RTC_EN = 1 << 10
WAK_STS = 1 << 15
# Only the timer can set a status bit here (no buttons, no RTC alarm, no global lock
# owner); these are the enables an OS may set and read back.
PM1_EN_WRITABLE = TMR_EN | GBL_EN | PWRBTN_EN | SLPBTN_EN | RTC_EN

# PM1_CNT bits.
SCI_EN = 1 << 0
BM_RLD = 1 << 1
GBL_RLS = 1 << 2                            # write-only: tell the firmware the lock is free
SLP_TYP_SHIFT = 10
SLP_TYP_MASK = 0x7 << SLP_TYP_SHIFT
SLP_EN = 1 << 13                            # write-only: enter the SLP_TYP sleep state
PM1_CNT_STORED = BM_RLD | SLP_TYP_MASK     # what reads back (SCI_EN is forced to 1)
IGNORED_SLEEPS_KEPT = 16


def ticks_at(ns: int) -> int:
    return ns * PM_TIMER_HZ // NS_PER_S


def ns_at(tick: int) -> int:
    """The first nanosecond at which ``tick`` has happened."""
    return -(-tick * NS_PER_S // PM_TIMER_HZ)


class AcpiPm(Device):
    name = "acpi-pm"
    ports = (PortRange(0x600, BLOCK_LEN),)  # the default place; __init__ takes io_base
    irq = 9                                 # the SCI (level, active high: see the MADT)

    def __init__(self, clock: Clock, sci: IrqLine | None = None,
                 poweroff: Callable[[], None] | None = None, io_base: int = 0x600,
                 s5_slp_typ: int = 5, timer_32bit: bool = False) -> None:
        self.clock = clock
        self.sci: IrqLine = sci if sci is not None else NullIrq()
        self.poweroff = poweroff
        self.ports = (PortRange(io_base, BLOCK_LEN),)
        self.s5_slp_typ = s5_slp_typ & 7
        self.timer_bits = 32 if timer_32bit else 24
        self._timer: Timer | None = None
        # The last SLP_TYP values asked for and not offered (bounded: a guest may loop).
        self.ignored_sleeps: deque[int] = deque(maxlen=IGNORED_SLEEPS_KEPT)
        self.reset()

    @classmethod
    def for_board(cls, clock: Clock, pm, sci: IrqLine | None = None,
                  poweroff: Callable[[], None] | None = None) -> "AcpiPm":
        """The device a ``hv.firmware_tables.PmDesc`` declares."""
        return cls(clock, sci, poweroff, io_base=pm.io_base, s5_slp_typ=pm.s5_slp_typ,
                   timer_32bit=pm.timer_32bit)

    def reset(self) -> None:
        self.pm1_en = 0
        self.pm1_cnt = 0                    # SLP_TYP 0, BM_RLD 0 (SCI_EN reads 1 regardless)
        self._tmr_sts_from = self._tick()   # TMR_STS clear: no top-bit change since now
        self._update_sci()

    # -- the timer ---------------------------------------------------------------------
    def _tick(self) -> int:
        return ticks_at(self.clock.now())

    def timer_value(self) -> int:
        return self._tick() & ((1 << self.timer_bits) - 1)

    def _period_index(self, tick: int) -> int:
        # The top bit changes every 2**(bits-1) ticks.
        return tick >> (self.timer_bits - 1)

    def _tmr_sts(self) -> bool:
        return self._period_index(self._tick()) != self._period_index(self._tmr_sts_from)

    def pm1_sts(self) -> int:
        return TMR_STS if self._tmr_sts() else 0

    # -- the SCI -------------------------------------------------------------------------
    def sci_level(self) -> bool:
        return bool(self.pm1_sts() & self.pm1_en)

    def _update_sci(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.pm1_en & TMR_EN and not self._tmr_sts():
            next_change = (self._period_index(self._tmr_sts_from) + 1) << (self.timer_bits - 1)
            self._timer = self.clock.at(ns_at(next_change), self._on_timer_carry)
        self.sci.set_level(self.sci_level())

    def _on_timer_carry(self, now: int) -> None:
        self._timer = None
        self._update_sci()

    # -- snapshots -------------------------------------------------------------------------
    def state(self) -> dict:
        """PM1_EN, PM1_CNT, the tick TMR_STS counts from (the timer itself is virtual
        time), the carry timer's deadline, the sleep requests ignored, the SCI's level."""
        return st.versioned(pm1_en=self.pm1_en, pm1_cnt=self.pm1_cnt,
                            tmr_sts_from=self._tmr_sts_from, timer=st.deadline(self._timer),
                            ignored_sleeps=list(self.ignored_sleeps),
                            sci=st.line_level(self.sci))

    def load_state(self, state: dict) -> None:
        who = self.name
        st.check_version(state, who)
        en = st.integer(state, "pm1_en", who, 0, PM1_EN_WRITABLE)
        cnt = st.integer(state, "pm1_cnt", who, 0, PM1_CNT_STORED)
        since = st.integer(state, "tmr_sts_from", who, -(1 << 62), 1 << 62)
        ignored = st.int_list(state, "ignored_sleeps", who, None, 0, 7, IGNORED_SLEEPS_KEPT)
        sci = st.flag(state, "sci", who)
        if self._timer is not None:
            self._timer.cancel()
        self.pm1_en, self.pm1_cnt, self._tmr_sts_from = en, cnt, since
        self.ignored_sleeps = deque(ignored, maxlen=IGNORED_SLEEPS_KEPT)
        self._timer = st.rearm(self.clock, state, "timer", self._on_timer_carry, who)
        st.restore_level(self.sci, sci)

    # -- register access -------------------------------------------------------------------
    def _read_register(self, reg: int) -> int:
        if reg == PM1_STS:
            return self.pm1_sts()
        if reg == PM1_EN:
            return self.pm1_en
        if reg == PM1_CNT:
            return self.pm1_cnt | SCI_EN
        return self.timer_value()

    def _write_register(self, reg: int, value: int, mask: int) -> None:
        """``mask`` has ones in the bytes this access drives."""
        if reg == PM1_STS:
            if value & mask & TMR_STS:
                self._tmr_sts_from = self._tick()
            self._update_sci()
        elif reg == PM1_EN:
            self.pm1_en = (self.pm1_en & ~mask | value & mask) & PM1_EN_WRITABLE
            self._update_sci()
        elif reg == PM1_CNT:
            self.pm1_cnt = (self.pm1_cnt & ~mask | value & mask) & PM1_CNT_STORED
            if value & mask & SLP_EN:
                self._sleep((self.pm1_cnt & SLP_TYP_MASK) >> SLP_TYP_SHIFT)
        # PM_TMR is read only: a write changes nothing.

    def _sleep(self, slp_typ: int) -> None:
        if slp_typ == self.s5_slp_typ:
            if self.poweroff is not None:
                self.poweroff()
            return
        self.ignored_sleeps.append(slp_typ)

    def _lanes(self, offset: int, size: int):
        """(register offset, register shift, access shift, width) for each register the
        access [offset, offset + size) touches, in bytes."""
        for reg, length in REGISTERS:
            lo, hi = max(offset, reg), min(offset + size, reg + length)
            if lo < hi:
                yield reg, lo - reg, lo - offset, hi - lo

    def read(self, offset: int, size: int) -> int:
        size = max(1, min(size, 4))
        value = (1 << (8 * size)) - 1       # lanes outside every register float high
        for reg, reg_shift, acc_shift, width in self._lanes(offset, size):
            lane_mask = (1 << (8 * width)) - 1
            part = self._read_register(reg) >> (8 * reg_shift) & lane_mask
            value = value & ~(lane_mask << (8 * acc_shift)) | part << (8 * acc_shift)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        size = max(1, min(size, 4))
        for reg, reg_shift, acc_shift, width in self._lanes(offset, size):
            lane_mask = (1 << (8 * width)) - 1
            part = (value >> (8 * acc_shift) & lane_mask) << (8 * reg_shift)
            self._write_register(reg, part, lane_mask << (8 * reg_shift))
