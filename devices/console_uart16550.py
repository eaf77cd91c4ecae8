"""National/TI PC16550D UART: the PC's COM port, used as the machine's console.

Register and bit names follow the PC16550D datasheet. The host side of the
line has infinite speed: a byte written to THR reaches ``sink`` at once and the
transmitter is empty again immediately, so THRE/TEMT never stay clear and the
TX FIFO never holds anything. Host input arrives through ``receive()``.

The IRQ output is wired as on a PC: the 16550's INTR pin reaches the ISA line
only through a gate driven by the OUT2 modem-control output, and loopback mode
forces OUT2 (like every modem output) inactive, so no interrupt leaves the chip
while it loops back. All interrupt state is folded into the line in one place,
``_update_irq()``, after every state change (as kvmtool does).
"""
from __future__ import annotations

from collections import deque
from enum import IntEnum, IntFlag

from hv.devices import state as st
from hv.devices.base import Device, NullIrq, PortRange, Sink
from hv.clock import NS_PER_S, Clock, Timer

# Register offsets (DLAB selects the divisor latch at 0 and 1).
RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

FIFO_SIZE = 16
XTAL_HZ = 1_843_200           # the PC's UART crystal; baud = XTAL / (16 * divisor)
CHAR_BITS = 10                # start + 8 data + stop, the usual framing
TIMEOUT_CHARS = 4             # datasheet: FIFO timeout after 4 character times
DEFAULT_DIVISOR = 12          # 9600 baud; the real latch is undefined at power-on


class IER_(IntFlag):
    ERBFI = 0x01   # received data available (and FIFO timeout)
    ETBEI = 0x02   # transmitter holding register empty
    ELSI = 0x04    # receiver line status
    EDSSI = 0x08   # modem status


IER_MASK = 0x0F  # bits 4-7 are always 0 on a 16550


class IIR_(IntEnum):
    """Interrupt identification codes, highest priority first."""

    RLS = 0x06          # receiver line status
    RDA = 0x04          # received data available
    CTI = 0x0C          # character timeout (FIFO mode only)
    THRI = 0x02         # transmitter holding register empty
    MSI = 0x00          # modem status
    NO_INT = 0x01       # bit 0 set = no interrupt pending


IIR_FIFO_ENABLED = 0xC0  # bits 6-7 mirror FCR0


class FCR_(IntFlag):
    FIFO_ENABLE = 0x01
    RCVR_FIFO_RESET = 0x02
    XMIT_FIFO_RESET = 0x04
    DMA_MODE_SELECT = 0x08


# FCR bits 6-7 -> RX FIFO trigger level
RX_TRIGGER = {0: 1, 1: 4, 2: 8, 3: 14}


class LCR_(IntFlag):
    WLS0 = 0x01
    WLS1 = 0x02
    STB = 0x04
    PEN = 0x08
    EPS = 0x10
    STICK_PARITY = 0x20
    SET_BREAK = 0x40
    DLAB = 0x80


class MCR_(IntFlag):
    DTR = 0x01
    RTS = 0x02
    OUT1 = 0x04
    OUT2 = 0x08
    LOOP = 0x10


MCR_MASK = 0x1F  # bits 5-7 are always 0 on a 16550


class LSR_(IntFlag):
    DR = 0x01          # data ready
    OE = 0x02          # overrun error
    PE = 0x04          # parity error
    FE = 0x08          # framing error
    BI = 0x10          # break interrupt
    THRE = 0x20        # transmitter holding register empty
    TEMT = 0x40        # transmitter empty
    RCVR_FIFO_ERROR = 0x80  # some character in the RX FIFO has PE/FE/BI


LSR_ERRORS = LSR_.OE | LSR_.PE | LSR_.FE | LSR_.BI
CHAR_ERRORS = LSR_.PE | LSR_.FE | LSR_.BI  # travel with the character through the FIFO


class MSR_(IntFlag):
    DCTS = 0x01
    DDSR = 0x02
    TERI = 0x04        # trailing edge of RI
    DDCD = 0x08
    CTS = 0x10
    DSR = 0x20
    RI = 0x40
    DCD = 0x80


MSR_DELTAS = MSR_.DCTS | MSR_.DDSR | MSR_.TERI | MSR_.DDCD

# Loopback wires the modem outputs back to the inputs: MCR bit -> MSR status bit.
LOOPBACK_MAP = {
    MCR_.RTS: MSR_.CTS,
    MCR_.DTR: MSR_.DSR,
    MCR_.OUT1: MSR_.RI,
    MCR_.OUT2: MSR_.DCD,
}

# A host terminal that is attached and ready: CTS, DSR and DCD asserted.
DEFAULT_MODEM_INPUTS = MSR_.CTS | MSR_.DSR | MSR_.DCD


class Uart16550(Device):
    name = "com1"
    ports = (PortRange(0x3F8, 8),)
    irq = 4

    def __init__(self, irq=None, sink: Sink | None = None, clock: Clock | None = None,
                 name: str = "com1", base: int = 0x3F8) -> None:
        # ``self.irq`` stays the ISA line number; the injected wire is ``irq_line``.
        self.irq_line = irq if irq is not None else NullIrq()
        self.sink = sink
        self.clock = clock
        self.name = name
        if base != 0x3F8:
            self.ports = (PortRange(base, 8),)
        self.divisor = DEFAULT_DIVISOR
        self.modem_inputs = int(DEFAULT_MODEM_INPUTS)
        self._timer: Timer | None = None
        self.reset()

    # ---- state -------------------------------------------------------------

    def reset(self) -> None:
        """Datasheet master-reset values; the divisor latch is not reset."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.ier = 0                  # all interrupts disabled
        self.lcr = 0                  # 5N1, DLAB off
        self.mcr = 0                  # all modem outputs inactive, no loopback
        self.fcr = 0                  # 16450 mode: FIFOs off
        self.scr = 0
        self.rx: deque[tuple[int, int]] = deque()   # (byte, PE|FE|BI flags)
        self.lsr_errors = 0           # OE and the top character's PE/FE/BI, until LSR is read
        self.thre_pending = False     # IIR=1 at reset: no THRE interrupt until ETBEI is set
        self.msr_deltas = 0           # MSR low nibble 0
        self._last_rx_activity = self._now()
        self._update_irq()

    def _now(self) -> int:
        return self.clock.now() if self.clock is not None else 0

    @property
    def fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_.FIFO_ENABLE)

    @property
    def loopback(self) -> bool:
        return bool(self.mcr & MCR_.LOOP)

    @property
    def rx_capacity(self) -> int:
        return FIFO_SIZE if self.fifo_enabled else 1

    @property
    def rx_trigger(self) -> int:
        return RX_TRIGGER[self.fcr >> 6]

    def char_time_ns(self) -> int:
        divisor = self.divisor or 0x10000  # a zero latch divides by 65536
        return divisor * 16 * CHAR_BITS * NS_PER_S // XTAL_HZ

    # ---- host side ---------------------------------------------------------

    def rx_room(self) -> int:
        """How many bytes ``receive`` accepts before the receiver overruns."""
        return max(0, self.rx_capacity - len(self.rx))

    def receive(self, data: bytes) -> None:
        """Bytes arriving on the serial line from the host."""
        for b in data:
            self._rx_char(b, 0)
        self._rx_activity()
        self._update_irq()

    def receive_break(self) -> None:
        """A break condition on the line: a zero character flagged BI (and FE)."""
        self._rx_char(0, LSR_.BI | LSR_.FE)
        self._rx_activity()
        self._update_irq()

    def set_modem_inputs(self, cts: bool = True, dsr: bool = True,
                         ri: bool = False, dcd: bool = True) -> None:
        """The host's modem lines (seen in MSR unless in loopback)."""
        before = self._modem_status()
        self.modem_inputs = ((MSR_.CTS if cts else 0) | (MSR_.DSR if dsr else 0)
                             | (MSR_.RI if ri else 0) | (MSR_.DCD if dcd else 0))
        self._modem_changed(before)
        self._update_irq()

    def _rx_char(self, b: int, flags: int) -> None:
        if len(self.rx) >= self.rx_capacity:
            self.lsr_errors |= LSR_.OE
            if self.fifo_enabled:
                return  # FIFO mode: the shift register is overwritten, the FIFO kept
            self.rx.clear()  # 16450 mode: the new character destroys the unread one
        self.rx.append((b & 0xFF, flags))
        if len(self.rx) == 1:
            self.lsr_errors |= flags  # errors show once the character reaches the top

    def _rx_activity(self) -> None:
        """Restart the FIFO character-timeout window (on receive and RBR read)."""
        self._last_rx_activity = self._now()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.clock is not None and self.fifo_enabled and self.rx:
            self._timer = self.clock.after(TIMEOUT_CHARS * self.char_time_ns(), self._timeout)

    def _timeout(self, _now: int) -> None:
        self._timer = None
        self._update_irq()

    def _timed_out(self) -> bool:
        if not (self.fifo_enabled and self.rx):
            return False
        if self.clock is None:
            return True  # no time base: the guest never has to wait for the tail
        return self._now() - self._last_rx_activity >= TIMEOUT_CHARS * self.char_time_ns()

    # ---- modem lines -------------------------------------------------------

    def _modem_status(self) -> int:
        if self.loopback:
            return sum(int(msr) for mcr, msr in LOOPBACK_MAP.items() if self.mcr & mcr)
        return self.modem_inputs

    def _modem_changed(self, before: int) -> None:
        after = self._modem_status()
        changed = before ^ after
        if changed & MSR_.CTS:
            self.msr_deltas |= MSR_.DCTS
        if changed & MSR_.DSR:
            self.msr_deltas |= MSR_.DDSR
        if before & MSR_.RI and not after & MSR_.RI:
            self.msr_deltas |= MSR_.TERI
        if changed & MSR_.DCD:
            self.msr_deltas |= MSR_.DDCD

    # ---- interrupts --------------------------------------------------------

    def _lsr(self) -> int:
        lsr = LSR_.THRE | LSR_.TEMT | self.lsr_errors  # infinite-speed transmitter
        if self.rx:
            lsr |= LSR_.DR
        if self.fifo_enabled and any(f for _, f in self.rx):
            lsr |= LSR_.RCVR_FIFO_ERROR
        return int(lsr)

    def _pending(self) -> int:
        """The highest-priority interrupt the chip would report in IIR."""
        ier = self.ier
        if ier & IER_.ELSI and self.lsr_errors & LSR_ERRORS:
            return IIR_.RLS
        if ier & IER_.ERBFI and self.rx:
            if not self.fifo_enabled or len(self.rx) >= self.rx_trigger:
                return IIR_.RDA
            if self._timed_out():
                return IIR_.CTI
        if ier & IER_.ETBEI and self.thre_pending:
            return IIR_.THRI
        if ier & IER_.EDSSI and self.msr_deltas:
            return IIR_.MSI
        return IIR_.NO_INT

    def _update_irq(self) -> None:
        gate = (self.mcr & (MCR_.OUT2 | MCR_.LOOP)) == MCR_.OUT2
        self.irq_line.set_level(gate and self._pending() != IIR_.NO_INT)
        if self._fast is not None:
            self._sync_fast()

    # ---- the C fast path ---------------------------------------------------

    _fast = None

    def bind_fast(self, fast, port_of) -> None:
        """Let C take THR writes into a buffer flushed to the sink in batches, and
        answer LSR reads, while neither has a side effect: DLAB clear, no
        loopback, no THRE interrupt enabled; LSR with no data or errors waiting."""
        self._fast = fast
        fast.tx_buffer(port_of(0), self._sink_batch)
        self._lsr_shadow = fast.shadow(port_of(5))
        self._sync_fast()

    def _sink_batch(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink(data)

    def _sync_fast(self) -> None:
        fast = self._fast
        quiet_tx = not (self.lcr & LCR_.DLAB or self.loopback or self.ier & IER_.ETBEI)
        if fast.tx_enabled != quiet_tx:
            fast.tx_enabled = quiet_tx
        quiet_lsr = not self.rx and not self.lsr_errors
        fast.set_shadow(self._lsr_shadow, self._lsr() if quiet_lsr else None)

    # ---- snapshots ---------------------------------------------------------

    def state(self) -> dict:
        """Registers, the divisor latch, the receive FIFO with each character's error
        bits, pending error/THRE/modem-delta state, the character-timeout window and its
        timer, and the interrupt wire's level. Bytes C buffered from THR are written to
        the sink first: the guest sent them before the snapshot."""
        if self._fast is not None:
            self._fast.flush_tx()
        return st.versioned(
            divisor=self.divisor, modem_inputs=int(self.modem_inputs), ier=int(self.ier),
            lcr=self.lcr, mcr=int(self.mcr), fcr=int(self.fcr), scr=self.scr,
            rx=[[b, int(f)] for b, f in self.rx], lsr_errors=int(self.lsr_errors),
            thre_pending=self.thre_pending, msr_deltas=int(self.msr_deltas),
            last_rx_activity=self._last_rx_activity,
            timer=st.deadline(self._timer), irq=st.line_level(self.irq_line))

    def load_state(self, state: dict) -> None:
        who = self.name
        st.check_version(state, who)
        regs = {n: st.integer(state, n, who, 0, 0xFF)
                for n in ("modem_inputs", "ier", "lcr", "mcr", "fcr", "scr", "lsr_errors",
                          "msr_deltas")}
        divisor = st.integer(state, "divisor", who, 0, 0xFFFF)
        rx = st.field(state, "rx", who)
        if not isinstance(rx, list) or len(rx) > FIFO_SIZE or any(
                not isinstance(e, list) or len(e) != 2 or
                any(type(v) is not int or not 0 <= v <= 0xFF for v in e) for e in rx):
            raise ValueError(f"{who}: saved rx is not a FIFO of (byte, flags)")
        thre = st.flag(state, "thre_pending", who)
        activity = st.integer(state, "last_rx_activity", who, -(1 << 63), (1 << 63) - 1)
        irq = st.flag(state, "irq", who)
        if self._fast is not None:
            self._fast.flush_tx()               # the pre-restore run's output, in order
        if self._timer is not None:
            self._timer.cancel()
        for name, value in regs.items():
            setattr(self, name, value)
        self.ier &= IER_MASK
        self.mcr &= MCR_MASK
        self.divisor, self.thre_pending, self._last_rx_activity = divisor, thre, activity
        self.rx = deque((b, f) for b, f in rx)
        self._timer = st.rearm(self.clock, state, "timer", self._timeout, who)
        st.restore_level(self.irq_line, irq)
        if self._fast is not None:
            self._sync_fast()

    # ---- register access ---------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        # A wide access touches consecutive ports; bytes past the chip float high.
        value = 0
        for i in range(max(1, min(size, 8))):
            off = offset + i
            byte = self._read_reg(off) if 0 <= off < 8 else 0xFF
            value |= byte << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(max(1, min(size, 8))):
            off = offset + i
            if 0 <= off < 8:
                self._write_reg(off, (value >> (8 * i)) & 0xFF)

    def _dlab(self) -> bool:
        return bool(self.lcr & LCR_.DLAB)

    def _read_reg(self, off: int) -> int:
        value = _READERS[off](self)
        self._update_irq()
        return value & 0xFF

    def _write_reg(self, off: int, value: int) -> None:
        _WRITERS[off](self, value)
        self._update_irq()

    def _read_rbr(self) -> int:
        if self._dlab():
            return self.divisor & 0xFF
        if not self.rx:
            return 0  # an empty RBR reads as the last value; 0 is good enough
        b, _ = self.rx.popleft()
        if self.rx:
            self.lsr_errors |= self.rx[0][1]  # the next character's errors surface
        self._rx_activity()
        return b

    def _read_ier(self) -> int:
        if self._dlab():
            return self.divisor >> 8
        return self.ier

    def _read_iir(self) -> int:
        pending = self._pending()
        if pending == IIR_.THRI:
            self.thre_pending = False  # datasheet: reading IIR as the source clears it
        return pending | (IIR_FIFO_ENABLED if self.fifo_enabled else 0)

    def _read_lcr(self) -> int:
        return self.lcr

    def _read_mcr(self) -> int:
        return self.mcr

    def _read_lsr(self) -> int:
        lsr = self._lsr()
        self.lsr_errors = 0  # OE/PE/FE/BI clear on read (RCVR_FIFO_ERROR follows the FIFO)
        return lsr

    def _read_msr(self) -> int:
        msr = self._modem_status() | self.msr_deltas
        self.msr_deltas = 0
        return msr

    def _read_scr(self) -> int:
        return self.scr

    def _write_thr(self, value: int) -> None:
        if self._dlab():
            self.divisor = (self.divisor & 0xFF00) | value
            return
        # Writing THR clears a THRE interrupt (the line drops), the byte leaves
        # at once and the now-empty holding register raises it again: a fresh
        # edge per byte, which an edge-triggered 8259 needs.
        self.thre_pending = False
        self._update_irq()
        if self.loopback:
            self._rx_char(value, 0)
            self._rx_activity()
        elif self.sink is not None:
            if self._fast is not None:
                self._fast.flush_tx()       # bytes C buffered go out first
            self.sink(bytes([value]))
        self.thre_pending = True

    def _write_ier(self, value: int) -> None:
        if self._dlab():
            self.divisor = (self.divisor & 0x00FF) | (value << 8)
            return
        newly = (value & ~self.ier) & IER_.ETBEI
        self.ier = value & IER_MASK
        if newly:
            # Enabling ETBEI while THR is empty (it always is) raises THRE at once.
            self.thre_pending = True

    def _write_fcr(self, value: int) -> None:
        if (value ^ self.fcr) & FCR_.FIFO_ENABLE:
            self.rx.clear()  # changing the FIFO mode empties both FIFOs
        if not value & FCR_.FIFO_ENABLE:
            self.fcr = 0  # other FCR bits only program while FCR0 is set
            return
        if value & FCR_.RCVR_FIFO_RESET:
            self.rx.clear()
        # XMIT_FIFO_RESET: the TX FIFO is always empty here.
        self.fcr = value & (FCR_.FIFO_ENABLE | FCR_.DMA_MODE_SELECT | 0xC0)
        self._rx_activity()

    def _write_lcr(self, value: int) -> None:
        self.lcr = value

    def _write_mcr(self, value: int) -> None:
        before = self._modem_status()
        self.mcr = value & MCR_MASK
        self._modem_changed(before)

    def _write_lsr(self, value: int) -> None:
        pass  # LSR is read-only here (the datasheet reserves writes for factory test)

    def _write_msr(self, value: int) -> None:
        pass  # MSR status reflects input pins; writes do nothing

    def _write_scr(self, value: int) -> None:
        self.scr = value


_READERS = {
    RBR: Uart16550._read_rbr,
    IER: Uart16550._read_ier,
    IIR: Uart16550._read_iir,
    LCR: Uart16550._read_lcr,
    MCR: Uart16550._read_mcr,
    LSR: Uart16550._read_lsr,
    MSR: Uart16550._read_msr,
    SCR: Uart16550._read_scr,
}

_WRITERS = {
    THR: Uart16550._write_thr,
    IER: Uart16550._write_ier,
    FCR: Uart16550._write_fcr,
    LCR: Uart16550._write_lcr,
    MCR: Uart16550._write_mcr,
    LSR: Uart16550._write_lsr,
    MSR: Uart16550._write_msr,
    SCR: Uart16550._write_scr,
}
