"""Intel 8259A programmable interrupt controller, and the PC/AT's cascaded pair.

Names follow the 8259A datasheet: IRR (interrupt request register), ISR
(in-service register), IMR (interrupt mask register), ICW1-ICW4 (initialization
command words), OCW1-OCW3 (operation command words).

Model choices:

* Inputs are edge-triggered (the PC programs LTIM=0): a rising edge latches the
  IRR bit, which then stays set until INTA, but only while the input stays high
  -- lowering the line before INTA withdraws the request, as on the real chip.
  ``pulse()`` is a rising edge whose request is held until INTA (the way a PIT
  tick reaches the PIC); a device that keeps its line high must lower it and
  raise it again to request another interrupt. With LTIM=1 (level mode) a high
  line also re-requests after its EOI.
* Power-on: IMR = 0xFF and the chip is "not ready": it drives no INTR until the
  first ICW1..ICW2[..ICW4] sequence completes (the real power-on state is
  undefined; a BIOS initializes both chips, vector base 0x08 master and 0x70
  slave, before it enables interrupts). ICW1 itself clears the IMR, as the
  datasheet says, but INTR stays quiet until the sequence ends.
* Vectors are always 8086-mode (ICW2 T7-T3 | level); the MCS-80 mode is not
  modelled. The buffered/SP-EN modes of ICW4 are stored and ignored.
* The board wiring is fixed: the slave's INT drives master IR2, whatever ICW3
  says. ISA IRQ 2 (the XT's IRQ 2 pin) reaches the slave's IR1 (IRQ 9), as on
  every AT.
"""
from __future__ import annotations

from typing import Callable

from hv.devices import state as st
from hv.devices.base import Device, PortRange

# ICW1 bits (written to the even port with D4 = 1).
ICW1_IC4 = 0x01     # ICW4 follows
ICW1_SNGL = 0x02    # single chip: no ICW3
ICW1_ADI = 0x04     # call address interval (MCS-80 only; ignored)
ICW1_LTIM = 0x08    # level-triggered inputs
ICW1_INIT = 0x10    # D4 = 1 marks ICW1

# ICW4 bits.
ICW4_UPM = 0x01     # 8086 mode (always assumed)
ICW4_AEOI = 0x02    # automatic end of interrupt
ICW4_MS = 0x04      # master/slave (buffered mode only)
ICW4_BUF = 0x08     # buffered mode
ICW4_SFNM = 0x10    # special fully nested mode

# OCW3 bits (even port, D4 = 0, D3 = 1).
OCW3_RIS = 0x01     # with RR: 1 = read ISR, 0 = read IRR
OCW3_RR = 0x02      # read-register command valid
OCW3_P = 0x04       # poll command
OCW3_SEL = 0x08     # D3 = 1 marks OCW3 (else OCW2)
OCW3_SMM = 0x20     # with ESMM: set (1) / reset (0) special mask mode
OCW3_ESMM = 0x40    # enable special mask mode change

# OCW2: D7-D5 = R SL EOI select the command, D2-D0 = L2-L0 the level.
OCW2_NONSPECIFIC_EOI = 0b001
OCW2_NOP = 0b010
OCW2_SPECIFIC_EOI = 0b011
OCW2_ROTATE_AEOI_CLEAR = 0b000
OCW2_ROTATE_NONSPECIFIC_EOI = 0b101
OCW2_ROTATE_AEOI_SET = 0b100
OCW2_SET_PRIORITY = 0b110
OCW2_ROTATE_SPECIFIC_EOI = 0b111

POLL_I = 0x80       # poll word: an interrupt was pending

SPURIOUS_LEVEL = 7  # INTA with no request answers with the chip's IR7 vector
CASCADE_IR = 2      # PC/AT: slave INT on master IR2
AT_IRQ2_REDIRECT = 9


class _Registers:
    """IRR, ISR, IMR and the OCW3 read state of one chip. Plain attributes here; with
    the C fast path bound they are the fields of a ``hv_pic_chip`` struct in C memory,
    which C reads to answer the chip's ports itself: one copy, two readers."""

    __slots__ = ("irr", "isr", "imr", "read_isr", "poll")

    def __init__(self) -> None:
        self.irr = self.isr = self.imr = self.read_isr = self.poll = 0


def _register(name: str, flag: bool = False) -> property:
    def get(self):
        value = getattr(self._regs, name)
        return bool(value) if flag else value

    def put(self, value) -> None:
        setattr(self._regs, name, int(value))
    return property(get, put)


class Pic8259:
    """One 8259A. Not a bus device: ``DualPic8259`` owns the ports."""

    irr = _register("irr")
    isr = _register("isr")
    imr = _register("imr")
    read_isr = _register("read_isr", flag=True)
    poll = _register("poll", flag=True)

    def __init__(self, master: bool = True) -> None:
        self.master = master
        self.spurious = 0
        self._regs = _Registers()
        self.reset()

    def share(self, cstruct) -> None:
        """Move the registers into ``cstruct`` (an ``hv_pic_chip``) for the C side."""
        for name in _Registers.__slots__:
            setattr(cstruct, name, getattr(self._regs, name))
        self._regs = cstruct

    def reset(self) -> None:
        self.irr = 0
        self.isr = 0
        self.imr = 0xFF           # power-on: everything masked (real value undefined)
        self.pins = 0             # current input levels, for edge detection
        self.ltim = False
        self.icw_step = 0         # 0 = operational, else the ICW expected next
        self.ready = False        # no INTR until initialized
        self.icw1 = 0
        self.icw3 = 0
        self.icw4 = 0
        self.vector_base = 0
        self.auto_eoi = False
        self.sfnm = False
        self.rotate_on_aeoi = False
        self.lowest = 7           # fixed priority: IR0 highest, IR7 lowest
        self.read_isr = False     # OCW3 RR/RIS: status read selects IRR
        self.poll = False
        self.special_mask = False

    # ---- priority resolver -------------------------------------------------

    def _rank(self, mask: int) -> int:
        """Priority rank (0 = highest) of the best bit in ``mask``; 8 if none."""
        for rank in range(8):
            if mask >> ((self.lowest + 1 + rank) & 7) & 1:
                return rank
        return 8

    def _level(self, rank: int) -> int:
        return (self.lowest + 1 + rank) & 7

    def pending(self) -> int:
        """The IR level the chip would signal on INT, or -1."""
        if not self.ready:
            return -1
        rank = self._rank(self.irr & ~self.imr)
        if rank == 8:
            return -1
        in_service = self.isr
        if self.special_mask:
            # SMM: a masked in-service level no longer blocks lower levels.
            in_service &= ~self.imr
        if self.sfnm and self.master:
            # SFNM: the slave may interrupt again while its cascade level is in service.
            in_service &= ~(1 << CASCADE_IR)
        if rank < self._rank(in_service):
            return self._level(rank)
        return -1

    @property
    def int_output(self) -> bool:
        return self.pending() >= 0

    def intack(self, level: int) -> None:
        """The INTA pulses for ``level``: IRR -> ISR (or automatic EOI)."""
        bit = 1 << level
        if not self.ltim or not self.pins & bit:
            self.irr &= ~bit
        if self.auto_eoi:
            if self.rotate_on_aeoi:
                self.lowest = level
        else:
            self.isr |= bit

    # ---- inputs --------------------------------------------------------------

    def set_input(self, level_no: int, high: bool) -> None:
        bit = 1 << (level_no & 7)
        if high:
            if not self.pins & bit or self.ltim:
                self.irr |= bit
            self.pins |= bit
        else:
            self.pins &= ~bit
            self.irr &= ~bit      # request withdrawn before INTA

    def pulse_input(self, level_no: int) -> None:
        bit = 1 << (level_no & 7)
        if not self.pins & bit:   # a line already held high makes no new edge
            self.irr |= bit

    # ---- registers -----------------------------------------------------------

    def read(self, reg: int) -> int:
        if reg & 1:
            return self.imr                       # OCW1 reads back
        if self.poll:
            self.poll = False
            level = self.pending()
            if level < 0:
                return 0
            self.intack(level)
            return POLL_I | level
        return self.isr if self.read_isr else self.irr

    def write(self, reg: int, value: int) -> None:
        value &= 0xFF
        if reg & 1:
            self._icw_table.get(self.icw_step, Pic8259._ocw1)(self, value)
        elif value & ICW1_INIT:
            self._icw1(value)
        elif value & OCW3_SEL:
            self._ocw3(value)
        else:
            self._ocw2_table[value >> 5](self, value & 7)

    def _icw1(self, value: int) -> None:
        self.icw1 = value
        self.ltim = bool(value & ICW1_LTIM)
        # Edge-sense reset: lines already high need a fresh rising edge.
        self.irr = 0
        self.isr = 0
        self.imr = 0
        self.lowest = 7
        self.special_mask = False
        self.read_isr = False
        self.poll = False
        self.icw3 = 7 if not self.master else 0   # "slave mode address set to 7"
        if not value & ICW1_IC4:
            self.icw4 = 0
            self.auto_eoi = False
            self.sfnm = False
        self.rotate_on_aeoi = False
        self.ready = False
        self.icw_step = 2

    def _next_after(self, step: int) -> None:
        if step == 2 and not self.icw1 & ICW1_SNGL:
            self.icw_step = 3
        elif step <= 3 and self.icw1 & ICW1_IC4:
            self.icw_step = 4
        else:
            self.icw_step = 0
            self.ready = True

    def _icw2(self, value: int) -> None:
        self.vector_base = value & 0xF8           # T7-T3; low bits come from the level
        self._next_after(2)

    def _icw3(self, value: int) -> None:
        self.icw3 = value
        self._next_after(3)

    def _icw4(self, value: int) -> None:
        self.icw4 = value
        self.auto_eoi = bool(value & ICW4_AEOI)
        self.sfnm = bool(value & ICW4_SFNM)
        self._next_after(4)

    def _ocw1(self, value: int) -> None:
        self.imr = value

    def _ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)
        self.poll = bool(value & OCW3_P)

    # OCW2 commands.
    def _eoi_nonspecific(self, _level: int, rotate: bool = False) -> None:
        rank = self._rank(self.isr)
        if rank == 8:
            return
        level = self._level(rank)
        self.isr &= ~(1 << level)
        if rotate:
            self.lowest = level

    def _eoi_specific(self, level: int, rotate: bool = False) -> None:
        self.isr &= ~(1 << level)
        if rotate:
            self.lowest = level

    def _set_priority(self, level: int) -> None:
        self.lowest = level

    def _rotate_aeoi(self, on: bool) -> None:
        self.rotate_on_aeoi = on

    _icw_table = {2: _icw2, 3: _icw3, 4: _icw4}
    _ocw2_table: dict[int, Callable[["Pic8259", int], None]] = {
        OCW2_ROTATE_AEOI_CLEAR: lambda s, l: s._rotate_aeoi(False),
        OCW2_NONSPECIFIC_EOI: lambda s, l: s._eoi_nonspecific(l),
        OCW2_NOP: lambda s, l: None,
        OCW2_SPECIFIC_EOI: lambda s, l: s._eoi_specific(l),
        OCW2_ROTATE_AEOI_SET: lambda s, l: s._rotate_aeoi(True),
        OCW2_ROTATE_NONSPECIFIC_EOI: lambda s, l: s._eoi_nonspecific(l, rotate=True),
        OCW2_SET_PRIORITY: lambda s, l: s._set_priority(l),
        OCW2_ROTATE_SPECIFIC_EOI: lambda s, l: s._eoi_specific(l, rotate=True),
    }

    # ---- snapshots ------------------------------------------------------------

    _FLAGS = ("ltim", "ready", "auto_eoi", "sfnm", "rotate_on_aeoi", "read_isr", "poll",
              "special_mask")
    _BYTES = ("irr", "isr", "imr", "pins", "icw1", "icw3", "icw4", "vector_base")

    def state(self) -> dict:
        """Registers (read through the C struct when it holds them), input levels, the
        initialization sequence's progress and the priority rotation."""
        out = {name: int(getattr(self, name)) for name in self._BYTES}
        out.update({name: bool(getattr(self, name)) for name in self._FLAGS})
        out.update(icw_step=self.icw_step, lowest=self.lowest, spurious=self.spurious)
        return out

    def load_state(self, state: dict, who: str = "pic") -> None:
        values = {name: st.integer(state, name, who, 0, 0xFF) for name in self._BYTES}
        flags = {name: st.flag(state, name, who) for name in self._FLAGS}
        icw_step = st.integer(state, "icw_step", who, 0, 4)
        if icw_step == 1:
            raise ValueError(f"{who}: saved icw_step 1 is not a step of the sequence")
        lowest = st.integer(state, "lowest", who, 0, 7)
        spurious = st.integer(state, "spurious", who)
        for name, value in {**values, **flags}.items():
            setattr(self, name, value)           # into the C struct when shared
        self.icw_step, self.lowest, self.spurious = icw_step, lowest, spurious


class _IntrState(int):
    """INTR as read from ``DualPic8259.has_interrupt``: usable both as a bool
    property and called as a method, so neither spelling silently misbehaves."""

    def __call__(self) -> bool:
        return bool(self)


class PicLine:
    """One ISA IRQ wire into the pair (the ``IrqLine`` protocol)."""

    def __init__(self, pic: "DualPic8259", irq: int) -> None:
        self._pic = pic
        self.irq = irq
        self.level = False

    def set_level(self, level: bool) -> None:
        self.level = bool(level)
        self._pic.set_irq(self.irq, self.level)

    def pulse(self) -> None:
        self._pic.pulse_irq(self.irq)


class DualPic8259(Device):
    """The PC/AT pair: master at 0x20-0x21, slave at 0xA0-0xA1 on master IR2."""

    name = "pic"
    ports = (PortRange(0x20, 2, 0), PortRange(0xA0, 2, 0x80))
    SLAVE_OFFSET = 0x80

    def __init__(self) -> None:
        self.master = Pic8259(master=True)
        self.slave = Pic8259(master=False)
        self.on_intr: Callable[[bool], None] | None = None
        self._lines = [PicLine(self, n) for n in range(16)]

    def reset(self) -> None:
        self.master.reset()
        self.slave.reset()
        for line in self._lines:
            line.level = False
        self._update()

    # ---- wiring --------------------------------------------------------------

    def _route(self, irq: int) -> tuple[Pic8259, int]:
        if not 0 <= irq < 16:
            raise ValueError(f"no ISA IRQ {irq}")
        if irq == CASCADE_IR:
            irq = AT_IRQ2_REDIRECT
        return (self.master, irq) if irq < 8 else (self.slave, irq - 8)

    def line(self, irq: int) -> PicLine:
        self._route(irq)
        return self._lines[irq]

    def set_irq(self, irq: int, level: bool) -> None:
        chip, n = self._route(irq)
        chip.set_input(n, bool(level))
        self._update()

    def pulse_irq(self, irq: int) -> None:
        chip, n = self._route(irq)
        chip.pulse_input(n)
        self._update()

    def _update(self) -> None:
        """Fold the slave's INT into master IR2 and tell the CPU side."""
        self.master.set_input(CASCADE_IR, self.slave.int_output)
        if self.on_intr is not None:
            self.on_intr(self.master.int_output)

    @property
    def has_interrupt(self) -> _IntrState:
        return _IntrState(self.master.int_output)

    def acknowledge(self) -> int:
        """The INTA cycle: the vector the CPU should take."""
        m = self.master
        level = m.pending()
        if level < 0:
            # The request vanished between INTR and INTA: spurious IRQ 7.
            m.spurious += 1
            vector = m.vector_base | SPURIOUS_LEVEL
        else:
            m.intack(level)
            if level != CASCADE_IR:
                vector = m.vector_base | level
            else:
                # The slave's INT falls during INTA, so a request still pending
                # there (e.g. in AEOI mode) makes a fresh edge on IR2 afterwards.
                m.pins &= ~(1 << CASCADE_IR)
                s = self.slave
                slevel = s.pending()
                if slevel < 0:
                    # Spurious IRQ 15: the master's IR2 stays in service, so
                    # the handler must EOI the master only (as Linux does).
                    s.spurious += 1
                    vector = s.vector_base | SPURIOUS_LEVEL
                else:
                    s.intack(slevel)
                    vector = s.vector_base | slevel
        self._update()
        return vector

    # ---- ports -----------------------------------------------------------------

    # ---- the C fast path -----------------------------------------------------

    def bind_fast(self, fast, port_of) -> None:
        """Let C answer register reads (IMR, and IRR/ISR as OCW3 selects) from the
        chips' registers, which move into C memory; a poll command (a read with side
        effects) still goes to the model."""
        for index, chip, base in ((0, self.master, 0), (1, self.slave, self.SLAVE_OFFSET)):
            chip.share(fast.pic_chip(index, [port_of(base), port_of(base + 1)]))

    # ---- snapshots ------------------------------------------------------------

    def state(self) -> dict:
        """Both chips (their registers live in C memory when bound: read in place) and
        the level each ISA wire into the pair was last driven to."""
        return st.versioned(master=self.master.state(), slave=self.slave.state(),
                            lines=[line.level for line in self._lines])

    def load_state(self, state: dict) -> None:
        """The chips' registers and input levels as saved. INTR is not re-announced: its
        consumer (the IMCR) restores the level it last saw, and no edge is made."""
        st.check_version(state, self.name)
        lines = st.field(state, "lines", self.name)
        if not isinstance(lines, list) or len(lines) != len(self._lines) or \
                any(type(v) is not bool for v in lines):
            raise ValueError(f"{self.name}: saved lines are not 16 levels")
        self.master.load_state(st.field(state, "master", self.name), "pic master")
        self.slave.load_state(st.field(state, "slave", self.name), "pic slave")
        for line, level in zip(self._lines, lines):
            line.level = level

    def _chip(self, offset: int) -> Pic8259 | None:
        if offset in (0, 1):
            return self.master
        if offset in (self.SLAVE_OFFSET, self.SLAVE_OFFSET + 1):
            return self.slave
        return None

    def read(self, offset: int, size: int) -> int:
        # A wide access is consecutive byte cycles on the ISA bus.
        value = 0
        for i in range(max(1, min(size, 4))):
            chip = self._chip(offset + i)
            byte = 0xFF if chip is None else chip.read(offset + i)
            value |= byte << (8 * i)
        self._update()
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(max(1, min(size, 4))):
            chip = self._chip(offset + i)
            if chip is not None:
                chip.write(offset + i, value >> (8 * i))
        self._update()
