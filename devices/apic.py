"""The local APIC (xAPIC) of hv's one CPU.

Names follow the Intel SDM Vol. 3A ch. 10 "Advanced Programmable Interrupt
Controller": IRR/ISR/TMR (request, in-service and trigger-mode registers, 256
bits each), TPR/PPR (task and processor priority), SVR (spurious-interrupt
vector register), ESR (error status), ICR (interrupt command), LVT (local vector
table), LINT0/LINT1 (the local interrupt pins), IA32_APIC_BASE (MSR 0x1B).

Model choices (docs/apic.md has the whole picture):

* One CPU, APIC ID 0, version 0x00050014: what QEMU's APIC reports -- version 0x14
  (a Pentium 4 / Xeon integrated xAPIC, the generation whose behaviour is modelled:
  8-bit IDs, programmable SVR bits 0-3, no focus-processor bit) and six LVT entries
  (max LVT entry 5: timer, thermal, performance, LINT0, LINT1, error; no CMCI, so
  0x2F0 is a reserved address). Bit 24 (EOI-broadcast suppression) is not offered.
* The timer counts a 1 GHz bus clock (1 ns per tick at divide 1), as QEMU's does,
  and nothing runs per tick: the current count is computed from virtual time, and
  one ``Clock`` timer is armed for the next interrupt only while the timer LVT is
  unmasked. The count reaches 0 after ``initial count`` ticks (the SDM's count; QEMU
  takes one tick more). TSC-deadline mode is not offered (CPUID does not advertise
  it), so LVT timer bit 18 is reserved: it reads 0 and mode 10b is one-shot.
* Software-disabled (SVR bit 8 clear): every LVT mask is forced set and cannot be
  cleared; fixed interrupts still land in the IRR and are held there, presented to
  the CPU only once the APIC is enabled again (QEMU does the same).
* Globally disabled (IA32_APIC_BASE bit 11 clear): the APIC is invisible -- its
  window reads all ones and ignores writes, messages are dropped -- and the LINT0 pin
  is the CPU's plain INTR pin, so an 8259 wired to it reaches the CPU directly.
  Clearing bit 11 returns the registers to their power-up state; setting it again
  is allowed (FSB-era processors may re-enable without a reset).
* The window cannot move: a write of another base to IA32_APIC_BASE is recorded in
  ``requested_base`` but the register keeps reading 0xFEE00000, where the board maps
  the window once, so software that checks sees where the APIC really is.
* Delivery is instantaneous: delivery-status bits always read 0.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Callable

from hv.clock import Clock, Timer
from hv.devices import state as st
from hv.devices.base import Device

APIC_DEFAULT_BASE = 0xFEE00000
APIC_WINDOW = 0x1000

APIC_VERSION = 0x14              # xAPIC of the Pentium 4 / Xeon generation (QEMU's value)
LVT_COUNT = 6                    # timer, thermal, perf, LINT0, LINT1, error
VERSION_VALUE = (LVT_COUNT - 1) << 16 | APIC_VERSION      # 0x00050014

# IA32_APIC_BASE (MSR 0x1B), SDM Figure 10-5.
MSR_IA32_APIC_BASE = 0x1B
APIC_BASE_BSP = 1 << 8           # this is the bootstrap processor (read-only here)
APIC_BASE_EXTD = 1 << 10         # x2APIC mode: not offered, so writing it is refused
APIC_BASE_ENABLE = 1 << 11       # global enable
APIC_BASE_ADDRESS = 0xF_FFFF_F000    # bits 12..35 (a 36-bit physical address space)
APIC_BASE_RESET = APIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_BSP   # 0xFEE00900


class Reg(IntEnum):
    """Register offsets in the 4 KiB window (SDM Table 10-1); each owns a 16-byte slot
    of which only the first 4 bytes hold the register."""

    ID = 0x020
    VERSION = 0x030
    TPR = 0x080
    APR = 0x090
    PPR = 0x0A0
    EOI = 0x0B0
    RRD = 0x0C0
    LDR = 0x0D0
    DFR = 0x0E0
    SVR = 0x0F0
    ISR = 0x100                  # 8 registers, 0x100..0x170
    TMR = 0x180                  # 8 registers, 0x180..0x1F0
    IRR = 0x200                  # 8 registers, 0x200..0x270
    ESR = 0x280
    ICR_LOW = 0x300
    ICR_HIGH = 0x310
    LVT_TIMER = 0x320            # LVT entries follow in this order, 0x10 apart
    LVT_THERMAL = 0x330
    LVT_PERF = 0x340
    LVT_LINT0 = 0x350
    LVT_LINT1 = 0x360
    LVT_ERROR = 0x370
    TIMER_INITIAL = 0x380
    TIMER_CURRENT = 0x390
    TIMER_DIVIDE = 0x3E0


class Lvt(IntEnum):
    """Index of an entry in the local vector table (register order)."""

    TIMER = 0
    THERMAL = 1
    PERF = 2
    LINT0 = 3
    LINT1 = 4
    ERROR = 5


class DeliveryMode(IntEnum):
    """Bits 10:8 of an LVT entry, the ICR, and an I/O APIC redirection entry."""

    FIXED = 0
    LOWEST = 1
    SMI = 2
    NMI = 4
    INIT = 5
    STARTUP = 6
    EXTINT = 7


# Fields shared by LVT entries and the ICR (SDM Figures 10-8 and 10-12).
VECTOR_MASK = 0xFF
DELIVERY_MODE_SHIFT = 8
DELIVERY_STATUS = 1 << 12        # send pending: never, delivery is instantaneous
LVT_POLARITY_LOW = 1 << 13       # LINT pins: active low
LVT_REMOTE_IRR = 1 << 14         # LINT pins, level-triggered fixed: accepted, awaiting EOI
LVT_LEVEL = 1 << 15              # LINT pins: level-sensitive (fixed mode only)
LVT_MASKED = 1 << 16
LVT_TIMER_PERIODIC = 1 << 17     # bit 18 (TSC-deadline) is reserved: not offered
LVT_RESET = LVT_MASKED           # power-up: all zeros except the mask bits

# What software can write in each LVT entry; the rest is reserved (reads 0) or read-only.
LVT_WRITABLE = {
    Lvt.TIMER: VECTOR_MASK | LVT_MASKED | LVT_TIMER_PERIODIC,
    Lvt.THERMAL: VECTOR_MASK | 0x700 | LVT_MASKED,
    Lvt.PERF: VECTOR_MASK | 0x700 | LVT_MASKED,
    Lvt.LINT0: VECTOR_MASK | 0x700 | LVT_POLARITY_LOW | LVT_LEVEL | LVT_MASKED,
    Lvt.LINT1: VECTOR_MASK | 0x700 | LVT_POLARITY_LOW | LVT_LEVEL | LVT_MASKED,
    Lvt.ERROR: VECTOR_MASK | LVT_MASKED,
}

# ICR (SDM Figure 10-12).
ICR_DEST_LOGICAL = 1 << 11
ICR_LEVEL_ASSERT = 1 << 14
ICR_TRIGGER_LEVEL = 1 << 15
ICR_SHORTHAND_SHIFT = 18
ICR_LOW_WRITABLE = 0xFFF | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL | 3 << ICR_SHORTHAND_SHIFT
ICR_HIGH_WRITABLE = 0xFF000000   # destination field, bits 63:56


class Shorthand(IntEnum):
    NONE = 0
    SELF = 1
    ALL_INCLUDING_SELF = 2
    ALL_EXCLUDING_SELF = 3


# SVR (SDM Figure 10-23): vector bits 7:0 all programmable (Pentium 4 and later),
# bit 8 software enable; bit 9 (focus checking) is reserved on this generation.
SVR_ENABLE = 1 << 8
SVR_WRITABLE = 0x1FF
SVR_RESET = 0xFF

# ESR (SDM Figure 10-9). The checksum/accept errors belong to the P6 serial bus.
ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

ID_WRITABLE = 0xFF000000         # 8-bit xAPIC ID in bits 31:24 (read/write on this generation)
LDR_WRITABLE = 0xFF000000        # logical APIC ID
DFR_WRITABLE = 0xF0000000        # model; bits 27:0 are reserved and read as ones
DFR_RESERVED_ONES = 0x0FFFFFFF
DFR_FLAT = 0xF
DFR_CLUSTER = 0x0
TPR_WRITABLE = 0xFF
DIVIDE_WRITABLE = 0xB            # bits 0, 1 and 3
BROADCAST_ID = 0xFF              # physical destination "all APICs"

FIRST_LEGAL_VECTOR = 16          # 0..15 are illegal: never set in the IRR
BUS_NS_PER_TICK = 1              # the timer's input: a 1 GHz bus clock, as QEMU's

_READ_ONLY = {Reg.VERSION, Reg.PPR, Reg.APR, Reg.RRD, Reg.TIMER_CURRENT}


def divisor_of(divide_config: int) -> int:
    """The timer's clock divisor for a divide configuration value (SDM Figure 10-10):
    bits 3,1,0 = 000 -> 2, 001 -> 4, ... 110 -> 128, 111 -> 1."""
    code = (divide_config & 3) | (divide_config >> 1 & 4)
    return 1 << ((code + 1) & 7)


def _highest(bits: int) -> int:
    """The highest set bit of a 256-bit register (the highest-priority vector), or -1."""
    return bits.bit_length() - 1


class LocalApic(Device):
    """The local APIC behind 0xFEE00000.

    Inputs: ``pic_intr(level)`` (the 8259's INTR on LINT0), ``lint1(level)``,
    ``receive(vector, level_triggered)`` (a fixed message for this CPU),
    ``deliver_message(...)`` (any message from the I/O APIC) and ``nmi()``.
    Outputs: ``has_interrupt()`` / ``acknowledge()`` for the CPU, ``on_change(level)``
    whenever ``has_interrupt()`` may have changed, ``on_eoi(vector)`` (the EOI
    broadcast to the I/O APIC for level-triggered vectors), ``on_nmi()``.
    """

    name = "lapic"
    mmio = ((APIC_DEFAULT_BASE, APIC_WINDOW),)

    def __init__(self, clock: Clock, apic_id: int = 0,
                 pic_acknowledge: Callable[[], int] | None = None,
                 on_eoi: Callable[[int], None] | None = None,
                 on_change: Callable[[bool], None] | None = None,
                 on_nmi: Callable[[], None] | None = None) -> None:
        self.clock = clock
        self.hardware_id = apic_id & 0xFF
        self.pic_acknowledge = pic_acknowledge
        self.on_eoi = on_eoi
        self.on_change = on_change
        self.on_nmi = on_nmi
        self._lint_pins = [False, False]     # input pin levels (wires, not registers)
        self._timer: Timer | None = None
        self._timer_deadline = 0
        self._intr = False
        self.spurious_count = 0
        self.nmi_count = 0
        self.timer_interrupts = 0
        self.lost_timer_ticks = 0
        self.late_timer_deliveries = 0     # overdue timer interrupts a guest access delivered
        self.requested_base: int | None = None
        self.base_msr = APIC_BASE_RESET
        self._power_on_registers()
        self._update()

    # ---- state ----------------------------------------------------------------

    def _power_on_registers(self) -> None:
        """SDM 10.4.7.1, the state after power-up or reset."""
        self._cancel_timer()
        self.id = self.hardware_id << 24
        self.tpr = 0
        self.ldr = 0
        self.dfr = 0xFFFFFFFF
        self.svr = SVR_RESET                  # software-disabled
        self.irr = self.isr = self.tmr = 0
        self.esr = 0                          # what software reads
        self._esr_pending = 0                 # errors since the last ESR write
        self._error_armed = True              # an ESR write re-arms the error interrupt
        self.icr_low = self.icr_high = 0
        self.lvt = [LVT_RESET] * LVT_COUNT
        self.timer_initial = 0
        self.divide_config = 0
        self._timer_start = self.clock.now()  # virtual ns when the count was `timer_initial`
        self._timer_armed = False             # counting (one-shot not yet at 0, or periodic)
        self._extint_message = False          # an ExtINT message from the I/O APIC awaits INTA

    def reset(self) -> None:
        self.base_msr = APIC_BASE_RESET
        self.requested_base = None
        self._power_on_registers()
        self._update()

    @property
    def hardware_enabled(self) -> bool:
        return bool(self.base_msr & APIC_BASE_ENABLE)

    @property
    def software_enabled(self) -> bool:
        return bool(self.svr & SVR_ENABLE)

    # ---- snapshots -----------------------------------------------------------------

    _U32 = ("id", "tpr", "ldr", "dfr", "svr", "esr", "_esr_pending", "icr_low", "icr_high",
            "timer_initial", "divide_config")
    _U256 = ("irr", "isr", "tmr")
    _COUNTS = ("spurious_count", "nmi_count", "timer_interrupts", "lost_timer_ticks")

    def state(self) -> dict:
        """Every register (IRR/ISR/TMR as 256-bit numbers), IA32_APIC_BASE, the LINT pin
        levels, ESR's pending errors, the timer's start, divisor and next deadline."""
        out = {name: getattr(self, name) for name in self._U32 + self._U256 + self._COUNTS}
        return st.versioned(
            **out, base_msr=self.base_msr, requested_base=self.requested_base,
            lvt=list(self.lvt), lint_pins=list(self._lint_pins),
            error_armed=self._error_armed, timer_start=self._timer_start,
            timer_armed=self._timer_armed, extint_message=self._extint_message,
            timer_deadline=self._timer_deadline,
            timer=st.deadline(self._timer))

    def load_state(self, state: dict) -> None:
        """Restore the registers and re-arm the timer at its saved deadline; INTR is
        announced as a level (``on_change``), no interrupt is accepted or sent."""
        who = self.name
        st.check_version(state, who)
        u32 = {n: st.integer(state, n, who, 0, 0xFFFFFFFF) for n in self._U32}
        u256 = {n: st.integer(state, n, who, 0, (1 << 256) - 1) for n in self._U256}
        counts = {n: st.integer(state, n, who) for n in self._COUNTS}
        lvt = st.int_list(state, "lvt", who, LVT_COUNT, 0, 0xFFFFFFFF)
        pins = st.field(state, "lint_pins", who)
        if not isinstance(pins, list) or len(pins) != 2 or any(type(v) is not bool for v in pins):
            raise ValueError(f"{who}: saved lint_pins are not two levels")
        base_msr = st.integer(state, "base_msr", who)
        requested = st.optional_integer(state, "requested_base", who)
        i64 = (-(1 << 63), (1 << 63) - 1)
        timer_start = st.integer(state, "timer_start", who, *i64)
        timer_deadline = st.integer(state, "timer_deadline", who, *i64)
        flags = {n: st.flag(state, n, who) for n in ("error_armed", "timer_armed",
                                                    "extint_message")}
        self._cancel_timer()
        for name, value in {**u32, **u256, **counts}.items():
            setattr(self, name, value)
        self.lvt, self._lint_pins = lvt, list(pins)
        self.base_msr, self.requested_base = base_msr, requested
        self._timer_start, self._timer_deadline = timer_start, timer_deadline
        self._error_armed, self._timer_armed = flags["error_armed"], flags["timer_armed"]
        self._extint_message = flags["extint_message"]
        self._timer = st.rearm(self.clock, state, "timer", self._timer_fire, who)
        self._update()

    # ---- IA32_APIC_BASE ------------------------------------------------------------

    def apic_base(self) -> int:
        """RDMSR 0x1B."""
        return self.base_msr

    def set_apic_base(self, value: int) -> bool:
        """WRMSR 0x1B. Returns False for a value the CPU refuses with #GP: reserved bits
        (0-7, 9, 36-63) or x2APIC mode (not offered). The BSP flag is read-only; another
        base is recorded in ``requested_base`` but the window stays at 0xFEE00000."""
        value &= (1 << 64) - 1
        reserved = ~(APIC_BASE_ADDRESS | APIC_BASE_ENABLE | APIC_BASE_EXTD | APIC_BASE_BSP)
        if value & reserved & ((1 << 64) - 1) or value & APIC_BASE_EXTD:
            return False
        base = value & APIC_BASE_ADDRESS
        self.requested_base = None if base == APIC_DEFAULT_BASE else base
        was_enabled = self.hardware_enabled
        self.base_msr = APIC_DEFAULT_BASE | APIC_BASE_BSP | (value & APIC_BASE_ENABLE)
        if was_enabled and not self.hardware_enabled:
            self._power_on_registers()        # SDM 10.4.3: prior initialization is lost
        self._update()
        return True

    # ---- priority -------------------------------------------------------------------

    def ppr(self) -> int:
        """SDM 10.8.3.1: PPR = TPR if TPR[7:4] >= ISRV[7:4], else ISRV[7:4] << 4."""
        isrv = max(_highest(self.isr), 0)
        if self.tpr >> 4 >= isrv >> 4:
            return self.tpr
        return isrv & 0xF0

    def _deliverable(self) -> int:
        """The IRR vector the APIC presents to the CPU, or -1: the highest one whose
        priority class is above the processor priority class."""
        if not self.software_enabled:
            return -1
        irrv = _highest(self.irr)
        if irrv < 0 or irrv >> 4 <= self.ppr() >> 4:
            return -1
        return irrv

    def _extint_pending(self) -> bool:
        """An 8259 interrupt the CPU must fetch with INTA: LINT0 in ExtINT mode,
        unmasked and asserted (ExtINT ignores PPR), or an ExtINT message."""
        if self._extint_message:
            return True
        lvt = self.lvt[Lvt.LINT0]
        return (not lvt & LVT_MASKED and (lvt >> DELIVERY_MODE_SHIFT & 7) == DeliveryMode.EXTINT
                and self._lint_active(0))

    def has_interrupt(self) -> bool:
        """INTR as the CPU core sees it (kept current by ``_update``, which every
        state change ends with: the vCPU asks this between every two slices)."""
        return self._intr

    def _compute_intr(self) -> bool:
        if not self.hardware_enabled:
            return self._lint_pins[0]          # LINT0 is the plain INTR pin
        return self._extint_pending() or self._deliverable() >= 0

    def acknowledge(self) -> int:
        """The INTA cycle: the vector the CPU takes. A fixed interrupt moves from IRR
        to ISR; ExtINT asks the 8259; nothing deliverable gives the spurious vector
        (SVR[7:0]) without touching the ISR (SDM 10.9)."""
        if not self.hardware_enabled:
            return self._ask_pic()
        if self._extint_pending():
            self._extint_message = False
            vector = self._ask_pic()
            self._update()
            return vector
        vector = self._deliverable()
        if vector < 0:
            self.spurious_count += 1
            return self.svr & VECTOR_MASK
        self.irr &= ~(1 << vector)
        self.isr |= 1 << vector
        self._update()
        return vector

    def _ask_pic(self) -> int:
        if self.pic_acknowledge is None:       # no 8259 wired: nothing answers INTA
            self.spurious_count += 1
            return self.svr & VECTOR_MASK
        return self.pic_acknowledge() & 0xFF

    def _update(self) -> None:
        self._intr = self._compute_intr()
        if self.on_change is not None:
            self.on_change(self._intr)

    # ---- acceptance -------------------------------------------------------------------

    def receive(self, vector: int, level_triggered: bool = False) -> None:
        """A fixed (or lowest-priority) interrupt for this CPU: into the IRR, its TMR
        bit set for level-triggered ones (SDM 10.8.4). Vectors 0-15 are refused with
        ESR "received illegal vector"."""
        if not self.hardware_enabled:
            return
        self._accept(vector & 0xFF, level_triggered)
        self._update()

    def _accept(self, vector: int, level_triggered: bool) -> None:
        if vector < FIRST_LEGAL_VECTOR:
            self._error(ESR_RECEIVE_ILLEGAL_VECTOR)
            return
        bit = 1 << vector
        self.irr |= bit
        if level_triggered:
            self.tmr |= bit
        else:
            self.tmr &= ~bit

    def accepts(self, destination: int, logical: bool) -> bool:
        """Is this APIC a destination of a message (SDM 10.6.2.1-2)?"""
        destination &= 0xFF
        if not logical:
            return destination in (self.id >> 24, BROADCAST_ID)
        logical_id = self.ldr >> 24
        model = self.dfr >> 28
        if model == DFR_FLAT:
            return bool(destination & logical_id)
        if model == DFR_CLUSTER:
            cluster = destination >> 4
            return (cluster in (logical_id >> 4, 0xF)) and bool(destination & logical_id & 0xF)
        return False                           # an undefined model selects nobody

    def deliver_message(self, vector: int, level_triggered: bool, delivery_mode: int,
                        destination: int = BROADCAST_ID, logical: bool = False) -> None:
        """An interrupt message from the I/O APIC. Fixed and lowest-priority land in
        the IRR (one CPU: it is always the lowest-priority one), NMI raises NMI, ExtINT
        makes the CPU fetch the vector from the 8259; SMI, INIT, SIPI are ignored."""
        if not self.hardware_enabled or not self.accepts(destination, logical):
            return
        mode = delivery_mode & 7
        if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST):
            self._accept(vector & 0xFF, level_triggered)
        elif mode == DeliveryMode.NMI:
            self.nmi()
        elif mode == DeliveryMode.EXTINT:
            self._extint_message = True
        self._update()

    def nmi(self) -> None:
        """An NMI for this CPU (a message, an IPI or LINT1 in NMI mode)."""
        self.nmi_count += 1
        if self.on_nmi is not None:
            self.on_nmi()

    # ---- local interrupts ---------------------------------------------------------------

    def pic_intr(self, level: bool) -> None:
        """The 8259's INTR output on LINT0."""
        self._set_lint(0, bool(level))

    def lint1(self, level: bool) -> None:
        self._set_lint(1, bool(level))

    def _lint_active(self, pin: int) -> bool:
        lvt = self.lvt[Lvt.LINT0 + pin]
        return self._lint_pins[pin] != bool(lvt & LVT_POLARITY_LOW)

    def _set_lint(self, pin: int, level: bool) -> None:
        was_active = self._lint_active(pin)
        self._lint_pins[pin] = level
        if self.hardware_enabled:
            self._lint_event(pin, rising=not was_active and self._lint_active(pin))
        self._update()

    def _lint_event(self, pin: int, rising: bool) -> None:
        """Act on a LINT pin: edge modes on a rising edge, level-triggered fixed mode
        while asserted with remote IRR clear (ExtINT is read live by has_interrupt)."""
        index = Lvt.LINT0 + pin
        lvt = self.lvt[index]
        if lvt & LVT_MASKED or not self._lint_active(pin):
            return
        mode = lvt >> DELIVERY_MODE_SHIFT & 7
        if mode == DeliveryMode.FIXED:
            if lvt & LVT_LEVEL:
                if not lvt & LVT_REMOTE_IRR:
                    if lvt & VECTOR_MASK >= FIRST_LEGAL_VECTOR:
                        self.lvt[index] = lvt | LVT_REMOTE_IRR
                    self._accept(lvt & VECTOR_MASK, True)
            elif rising:
                self._accept(lvt & VECTOR_MASK, False)
        elif mode == DeliveryMode.NMI and rising:
            self.nmi()

    def _local_interrupt(self, index: Lvt) -> None:
        """The timer or the error entry fires (always fixed, edge)."""
        lvt = self.lvt[index]
        if lvt & LVT_MASKED:
            return
        self._accept(lvt & VECTOR_MASK, False)

    def _error(self, bits: int) -> None:
        """Record an error; the first one since the last ESR write raises the error
        interrupt (SDM 10.5.3). An illegal error vector records another error but
        cannot raise a second interrupt: the mechanism is disarmed by then."""
        self._esr_pending |= bits
        if self._error_armed and self.software_enabled:
            self._error_armed = False
            self._local_interrupt(Lvt.ERROR)

    # ---- EOI ------------------------------------------------------------------------

    def _eoi(self) -> None:
        isrv = _highest(self.isr)
        if isrv < 0:
            return
        bit = 1 << isrv
        self.isr &= ~bit
        if self.tmr & bit:
            for pin in (0, 1):                 # a level-triggered LINT entry may re-fire
                index = Lvt.LINT0 + pin
                if self.lvt[index] & LVT_REMOTE_IRR and self.lvt[index] & VECTOR_MASK == isrv:
                    self.lvt[index] &= ~LVT_REMOTE_IRR
                    self._lint_event(pin, rising=False)
            if self.on_eoi is not None:
                self.on_eoi(isrv)              # the EOI broadcast to the I/O APIC
        self._update()

    # ---- ICR ------------------------------------------------------------------------

    def _send_ipi(self) -> None:
        """A write to ICR low sends. One CPU: only what reaches this APIC matters."""
        icr = self.icr_low
        vector = icr & VECTOR_MASK
        mode = icr >> DELIVERY_MODE_SHIFT & 7
        shorthand = icr >> ICR_SHORTHAND_SHIFT & 3
        if shorthand == Shorthand.NONE:
            to_self = self.accepts(self.icr_high >> 24, bool(icr & ICR_DEST_LOGICAL))
        else:
            to_self = shorthand in (Shorthand.SELF, Shorthand.ALL_INCLUDING_SELF)
        if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST):
            if vector < FIRST_LEGAL_VECTOR:
                self._error(ESR_SEND_ILLEGAL_VECTOR)
            if to_self:
                self._accept(vector, False)    # IPIs are edge-triggered (SDM 10.6.1)
        elif mode == DeliveryMode.NMI and to_self:
            self.nmi()
        # SMI, INIT, SIPI and the reserved modes complete with no effect: there is no
        # other CPU to start, and this one is not reset by its own INIT.
        self._update()

    # ---- timer ------------------------------------------------------------------------

    def _divisor(self) -> int:
        return divisor_of(self.divide_config) * BUS_NS_PER_TICK

    def _periodic(self) -> bool:
        return bool(self.lvt[Lvt.TIMER] & LVT_TIMER_PERIODIC)

    def _sync_timer(self, now: int) -> None:
        """A one-shot count that reached 0 stays 0: stop counting."""
        if self._timer_armed and not self._periodic():
            if now - self._timer_start >= self.timer_initial * self._divisor():
                self._timer_armed = False

    def current_count(self, now: int | None = None) -> int:
        now = self.clock.now() if now is None else now
        self._sync_timer(now)
        if not self._timer_armed or self.timer_initial == 0:
            return 0
        ticks = (now - self._timer_start) // self._divisor()
        if self._periodic():
            return self.timer_initial - ticks % self.timer_initial
        return self.timer_initial - ticks

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deliver_overdue(self, now: int) -> None:
        """The count reached 0 (deadline passed) but the host has not run the clock's due
        timers yet: the ticker thread or the vCPU thread was not scheduled (a loaded host),
        and the guest went on running. On hardware the interrupt has been in the IRR since
        then. Every guest access delivers it first: a store to the LVT, SVR, divide or
        initial count would otherwise re-arm the timer and cancel it (or mask it), and a
        guest that then waits in HLT for that interrupt waits for ever."""
        t = self._timer
        if t is not None and not t.cancelled and t.deadline <= now:
            t.cancel()
            self.late_timer_deliveries += 1
            self._timer_fire(now)

    def _arm_timer(self, now: int | None = None) -> None:
        """One clock timer for the next interrupt, only while it can be delivered.
        ``now`` is the time of the register access that (re)started or rebased the
        count: read once per access, so a short count cannot expire between the store
        and the arming (a preempted host thread took longer than a 1 µs one-shot, and
        the interrupt was never armed: Linux then waited in HLT for ever). An interrupt
        already owed at ``now`` is delivered, not cancelled."""
        if now is None:
            now = self.clock.now()
        self._deliver_overdue(now)
        self._cancel_timer()
        self._sync_timer(now)
        if not self._timer_armed or self.timer_initial == 0 or self.lvt[Lvt.TIMER] & LVT_MASKED:
            return
        period = self.timer_initial * self._divisor()
        elapsed = now - self._timer_start
        if self._periodic():
            deadline = self._timer_start + (elapsed // period + 1) * period
        else:
            deadline = self._timer_start + period
        self._timer_deadline = deadline
        self._timer = self.clock.at(deadline, self._timer_fire)

    def _timer_fire(self, now: int) -> None:
        self._timer = None
        if self._periodic() and self.timer_initial:
            # Periods the host slept through are coalesced into this one interrupt.
            period = self.timer_initial * self._divisor()
            self.lost_timer_ticks += (now - self._timer_deadline) // period
        self.timer_interrupts += 1
        self._local_interrupt(Lvt.TIMER)
        self._arm_timer(now)
        self._update()

    def _rebase_timer(self, now: int, new_divisor: int | None = None,
                      periodic_now: bool | None = None) -> None:
        """Keep the count where it is across a divide or mode change: move the start
        so that the count read now stays the same (sub-tick phase kept when only the
        mode changes)."""
        self._sync_timer(now)
        if not self._timer_armed or self.timer_initial == 0:
            return
        old = self._divisor()
        elapsed = now - self._timer_start
        if self._periodic():
            elapsed %= self.timer_initial * old
        if new_divisor is not None:
            elapsed = elapsed // old * new_divisor
        self._timer_start = now - elapsed

    # ---- registers ------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        """Any access width: each byte comes from the 32-bit register of its 16-byte
        slot (bytes 4-15 of a slot read 0). Globally disabled: all ones."""
        size = max(1, min(size, 8))
        if not self.hardware_enabled:
            return (1 << (8 * size)) - 1
        if self._timer is not None:
            self._deliver_overdue(self.clock.now())
        if size == 4 and not offset & 0xF and 0 <= offset < APIC_WINDOW:
            return self._read_register(offset)  # what software does
        value = 0
        slot_value: dict[int, int] = {}
        for i in range(size):
            at = offset + i
            if not 0 <= at < APIC_WINDOW:
                continue
            slot, byte = at & ~0xF, at & 0xF
            if byte >= 4:
                continue
            if slot not in slot_value:
                slot_value[slot] = self._read_register(slot)
            value |= (slot_value[slot] >> (8 * byte) & 0xFF) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        """Only aligned 32-bit stores reach a register; narrower or misaligned stores
        are dropped (model-specific on hardware: the SDM asks for 32-bit accesses)."""
        if not self.hardware_enabled or size != 4 or offset & 0xF or not 0 <= offset < APIC_WINDOW:
            return
        if self._timer is not None:
            self._deliver_overdue(self.clock.now())
        self._write_register(offset, value & 0xFFFFFFFF)

    def _read_register(self, reg: int) -> int:
        if reg == Reg.ID:
            return self.id
        if reg == Reg.VERSION:
            return VERSION_VALUE
        if reg == Reg.TPR:
            return self.tpr
        if reg in (Reg.APR, Reg.RRD, Reg.EOI):
            return 0                           # APR, RRD: not on this generation; EOI: write-only
        if reg == Reg.PPR:
            return self.ppr()
        if reg == Reg.LDR:
            return self.ldr
        if reg == Reg.DFR:
            return self.dfr | DFR_RESERVED_ONES
        if reg == Reg.SVR:
            return self.svr
        if Reg.ISR <= reg < Reg.IRR + 0x80:
            bank, word = divmod(reg - Reg.ISR, 0x80)
            bits = (self.isr, self.tmr, self.irr)[bank]
            return bits >> (32 * (word >> 4)) & 0xFFFFFFFF
        if reg == Reg.ESR:
            return self.esr
        if reg == Reg.ICR_LOW:
            return self.icr_low                # delivery status (bit 12) always idle
        if reg == Reg.ICR_HIGH:
            return self.icr_high
        if Reg.LVT_TIMER <= reg <= Reg.LVT_ERROR:
            return self.lvt[(reg - Reg.LVT_TIMER) >> 4]
        if reg == Reg.TIMER_INITIAL:
            return self.timer_initial
        if reg == Reg.TIMER_CURRENT:
            return self.current_count()
        if reg == Reg.TIMER_DIVIDE:
            return self.divide_config
        self._error(ESR_ILLEGAL_REGISTER)
        self._update()
        return 0

    def _write_register(self, reg: int, value: int) -> None:
        if reg == Reg.ID:
            self.id = value & ID_WRITABLE
        elif reg == Reg.TPR:
            self.tpr = value & TPR_WRITABLE
        elif reg == Reg.EOI:
            self._eoi()
        elif reg == Reg.LDR:
            self.ldr = value & LDR_WRITABLE
        elif reg == Reg.DFR:
            self.dfr = value & DFR_WRITABLE | DFR_RESERVED_ONES
        elif reg == Reg.SVR:
            self._write_svr(value)
        elif reg == Reg.ESR:
            # Write-before-read (SDM 10.5.3): the write moves the errors logged since
            # the previous write into the readable register and re-arms the interrupt.
            self.esr, self._esr_pending = self._esr_pending, 0
            self._error_armed = True
        elif reg == Reg.ICR_LOW:
            self.icr_low = value & ICR_LOW_WRITABLE
            self._send_ipi()
        elif reg == Reg.ICR_HIGH:
            self.icr_high = value & ICR_HIGH_WRITABLE
        elif Reg.LVT_TIMER <= reg <= Reg.LVT_ERROR:
            self._write_lvt(Lvt((reg - Reg.LVT_TIMER) >> 4), value)
        elif reg == Reg.TIMER_INITIAL:
            now = self.clock.now()
            self.timer_initial = value
            self._timer_start = now
            self._timer_armed = value != 0     # writing 0 stops the timer
            self._arm_timer(now)
        elif reg == Reg.TIMER_DIVIDE:
            now = self.clock.now()
            new = value & DIVIDE_WRITABLE
            self._rebase_timer(now, new_divisor=divisor_of(new) * BUS_NS_PER_TICK)
            self.divide_config = new
            self._arm_timer(now)
        elif reg in _READ_ONLY or Reg.ISR <= reg < Reg.IRR + 0x80:
            pass                               # read-only: the write is ignored
        else:
            self._error(ESR_ILLEGAL_REGISTER)
        self._update()

    def _write_svr(self, value: int) -> None:
        self.svr = value & SVR_WRITABLE
        if not self.software_enabled:
            # SDM 10.4.7.2: every LVT mask is set, and stays set while disabled.
            self.lvt = [lvt | LVT_MASKED for lvt in self.lvt]
        self._arm_timer()

    def _write_lvt(self, index: Lvt, value: int) -> None:
        now = self.clock.now()
        old = self.lvt[index]
        new = value & LVT_WRITABLE[index] | old & LVT_REMOTE_IRR
        if not self.software_enabled:
            new |= LVT_MASKED
        if index == Lvt.TIMER and (old ^ new) & LVT_TIMER_PERIODIC:
            self._rebase_timer(now)            # the count carries on in the new mode
        if index in (Lvt.LINT0, Lvt.LINT1) and not new & LVT_LEVEL:
            new &= ~LVT_REMOTE_IRR             # remote IRR only means something for level
        self.lvt[index] = new
        if index == Lvt.TIMER:
            self._arm_timer(now)
        elif index in (Lvt.LINT0, Lvt.LINT1):
            self._lint_event(index - Lvt.LINT0, rising=False)
