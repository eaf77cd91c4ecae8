"""Novell NE2000 ISA Ethernet card: a National DP8390D NIC core plus the board logic.

Register, bit and command names follow the DP8390D datasheet. The board (the
NE2000 "ASIC") adds three things around the NIC, at offsets from its I/O base:

* 0x00-0x0F  the DP8390 registers, in four pages selected by CR.PS0/PS1;
* 0x10       the data port: each access moves one byte or word (DCR.WTS) of
             remote DMA between the host and the card's buffer memory;
* 0x1F       the reset port: a read resets the NIC (ISR.RST is set).

Card addresses (the remote DMA address space) as on an NE2000 in 16-bit mode:
0x0000-0x001F is the station address PROM (16 bytes, each byte doubled because
the 8-bit PROM answers on both halves of the data bus), 0x4000-0x7FFF the 16 KiB
packet RAM. Everything else reads as 0xFF and ignores writes.

Quirks kept so the same guest driver runs here and on QEMU's ``ne2k_isa``
(hw/net/ne2000.c): only byte accesses reach the registers at 0x00-0x0F; the data
port moves data whatever the CR remote-DMA bits say (writes only while RBCR is
non-zero); word transfers force an even address; RSAR reads back as the current
remote DMA address (CRDA) and wraps from PSTOP to PSTART; a RD read/write
command with RBCR = 0 completes at once (RDC); page 0 offsets 0x0A/0x0B read the
RTL8029 ID ("P", "C") and page 3 the RTL8029 CONFIG registers; frames shorter
than 60 bytes arriving from the host are padded to 60; the receive header and
next-page arithmetic are QEMU's (byte count = frame + 4, a 4-byte CRC reserved);
an unaligned word/dword access to a register reads 0 (QEMU's I/O core refuses it).

Where this model follows the datasheet instead (no driver that runs on QEMU can
depend on the difference): PAR0-5 (not the PROM) filter unicast frames; a STP
command sets ISR.RST; the reset port puts CR/IMR/DCR in their reset state; PROM
bytes 6-13 are 0 (QEMU's in-place doubling leaves copies of the MAC there); the
PROM is read-only; page 2 reads back TPSR/RCR/TCR/DCR/IMR (QEMU reads 0); TCR
loopback keeps frames off the wire; frames need ring space, not a fixed 1518
bytes, and CURR never catches up with BNRY; the RAM is 16 KiB (QEMU has 32 KiB:
``ram_size=0x8000``).

Host side: ``port.send(frame)`` is called on transmit (``port=None`` is an
unplugged cable: the transmit completes and the frame is lost);
``receive(frame) -> bool`` delivers one frame from the wire.
"""
from __future__ import annotations

from enum import IntFlag

from hv.devices import state as st
from hv.devices.base import NullIrq, PortRange, SharedStateDevice

# ---- board (NE2000 ASIC) ----------------------------------------------------

NIC_REGS = 0x10          # offsets 0x00-0x0F: the DP8390
DATA_PORT = 0x10         # remote DMA data window
RESET_PORT = 0x1F        # read = reset the NIC
PORT_SPAN = 0x20

PROM_SIZE = 32           # 16 PROM bytes, each doubled
RAM_START = 0x4000       # page 0x40: NE2000 16-bit mode packet RAM
RAM_SIZE = 0x4000        # 16 KiB (QEMU's ne2k has 32 KiB; pass ram_size=0x8000 to match)
ADDR_SPACE = 0x10000     # RSAR/CRDA are 16-bit
PROM_SIGNATURE = 0x57    # PROM bytes 14 and 15: "W" "W" marks an NE2000 (vs NE1000)

MIN_FRAME = 60           # shortest Ethernet frame without CRC
MAX_FRAME = 1514         # longest untagged Ethernet frame without CRC
CRC_LEN = 4              # the NIC reserves room for the CRC in the ring
RX_HEADER = 4            # receive status, next page, byte count lo/hi
ADDR_LEN = 6

# ---- DP8390 register offsets (page << 4 | offset) ----------------------------

CR = 0x00                # command register, same in every page
# page 0, read
CLDA0, CLDA1, BNRY, TSR, NCR, FIFO, ISR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
CRDA0, CRDA1, RSR, CNTR0, CNTR1, CNTR2 = 0x08, 0x09, 0x0C, 0x0D, 0x0E, 0x0F
RTL8029ID0, RTL8029ID1 = 0x0A, 0x0B   # reserved on the DP8390; QEMU answers the RTL8029 ID
# page 0, write
PSTART, PSTOP, TPSR, TBCR0, TBCR1 = 0x01, 0x02, 0x04, 0x05, 0x06
RSAR0, RSAR1, RBCR0, RBCR1, RCR, TCR, DCR, IMR = 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F
# page 1, read/write
PAR0 = 0x11              # PAR0-5 at 0x11-0x16
CURR = 0x17
MAR0 = 0x18              # MAR0-7 at 0x18-0x1F
# page 2, read back (diagnostics)
P2_PSTART, P2_PSTOP, P2_RNPP, P2_TPSR, P2_LNPP = 0x21, 0x22, 0x23, 0x24, 0x25
P2_ACU, P2_ACL = 0x26, 0x27          # local DMA address counter upper/lower
P2_RCR, P2_TCR, P2_DCR, P2_IMR = 0x2C, 0x2D, 0x2E, 0x2F
# page 3: RTL8029 configuration as QEMU answers it
P3_CONFIG0, P3_CONFIG2, P3_CONFIG3 = 0x33, 0x35, 0x36

RTL8029_ID = (0x50, 0x43)
RTL8029_CONFIG = {P3_CONFIG0: 0x00,   # 10BaseT media
                  P3_CONFIG2: 0x40,   # 10BaseT active
                  P3_CONFIG3: 0x40}   # full duplex


class CR_(IntFlag):
    STP = 0x01           # stop: offline, enters the reset state
    STA = 0x02           # start
    TXP = 0x04           # transmit packet (self-clearing)
    RD0 = 0x08           # remote DMA command, RD2..RD0
    RD1 = 0x10
    RD2 = 0x20
    PS0 = 0x40           # register page select
    PS1 = 0x80


RD_MASK = 0x38
# RD2..RD0 values (CR & RD_MASK)
RD_NOT_ALLOWED = 0x00
RD_REMOTE_READ = 0x08
RD_REMOTE_WRITE = 0x10
RD_SEND_PACKET = 0x18
# 0x20-0x38: abort/complete remote DMA


class ISR_(IntFlag):
    PRX = 0x01           # packet received
    PTX = 0x02           # packet transmitted
    RXE = 0x04           # receive error
    TXE = 0x08           # transmit error
    OVW = 0x10           # receive ring overwrite warning (ring full)
    CNT = 0x20           # a tally counter's MSB is set
    RDC = 0x40           # remote DMA complete
    RST = 0x80           # reset state; not maskable, not cleared by writing 1


ISR_IRQ_MASK = 0x7F      # RST never interrupts


class TSR_(IntFlag):
    PTX = 0x01           # transmitted without error
    COL = 0x04
    ABT = 0x08
    CRS = 0x10
    FU = 0x20
    CDH = 0x40
    OWC = 0x80


class RSR_(IntFlag):
    PRX = 0x01           # received intact
    CRC = 0x02
    FAE = 0x04
    FO = 0x08
    MPA = 0x10           # missed packet (ring full or monitor mode)
    PHY = 0x20           # 1 = multicast/broadcast destination
    DIS = 0x40           # receiver disabled (monitor mode)
    DFR = 0x80


class RCR_(IntFlag):
    SEP = 0x01           # save errored packets (there are none here)
    AR = 0x02            # accept runts (< 64 bytes on the wire)
    AB = 0x04            # accept broadcast
    AM = 0x08            # accept multicast through the MAR hash
    PRO = 0x10           # promiscuous physical
    MON = 0x20           # monitor: check and count, never buffer


class TCR_(IntFlag):
    CRC = 0x01           # inhibit CRC
    LB0 = 0x02           # loopback mode LB1..LB0
    LB1 = 0x04
    ATD = 0x08
    OFST = 0x10


LB_MASK = int(TCR_.LB0 | TCR_.LB1)


class DCR_(IntFlag):
    WTS = 0x01           # word transfer select: 16-bit data port
    BOS = 0x02
    LAS = 0x04           # long address select (32-bit local DMA); set by reset
    LS = 0x08
    ARM = 0x10
    FT0 = 0x20
    FT1 = 0x40


# Plain ints for the data-port path and stored register values (IntFlag
# arithmetic is several times slower and would leak flag objects into registers).
_WTS = int(DCR_.WTS)
_RDC = int(ISR_.RDC)
_RST = int(ISR_.RST)

# ---- multicast hash ----------------------------------------------------------

_POLY_BE = 0x04C11DB7


def ether_crc(data: bytes) -> int:
    """The Ethernet CRC-32 register, bits fed LSB first, MSB-first register and no
    final inversion: the form whose top 6 bits index the DP8390's MAR hash."""
    crc = 0xFFFFFFFF
    for b in data:
        for _ in range(8):
            carry = (crc >> 31) ^ (b & 1)
            crc = (crc << 1) & 0xFFFFFFFF
            b >>= 1
            if carry:
                crc ^= _POLY_BE
    return crc


def mar_hash_index(dest: bytes) -> int:
    """MAR bit number (0-63) for a multicast destination address."""
    return ether_crc(dest[:ADDR_LEN]) >> 26


class Ne2000(SharedStateDevice):
    name = "ne2000"
    ports = (PortRange(0x300, PORT_SPAN),)
    irq = 9

    DEFAULT_MAC = b"\x52\x54\x00\x12\x34\x56"    # QEMU's first NIC (52:54:00:12:34:56)

    def __init__(self, irq=None, mac: bytes = DEFAULT_MAC, port=None, base: int | None = None,
                 isa_irq: int | None = None, ram_size: int = RAM_SIZE) -> None:
        # ``self.irq`` stays the ISA line number; the injected wire is ``irq_line``.
        # Base and ISA line default to the class's declaration (300h, IRQ 9).
        self.irq_line = irq if irq is not None else NullIrq()
        self.irq = type(self).irq if isa_irq is None else isa_irq
        self.port = port
        self.mac = bytes(mac[:ADDR_LEN]).ljust(ADDR_LEN, b"\0")
        if base is not None:
            self.ports = (PortRange(base, PORT_SPAN),)
        # RAM is whole pages from 0x4000 up to at most 0xC000 (QEMU's 32 KiB).
        ram_size = max(0x100, min(int(ram_size), 0x8000)) & ~0xFF
        self.ram_end = RAM_START + ram_size
        # The whole 64 KiB card address space plus slack for a 4-byte access at
        # 0xFFFE, so data-port reads index without bounds checks; only PROM and
        # RAM hold anything but 0xFF, and writes are confined to RAM.
        self._mem = bytearray(b"\xff" * (ADDR_SPACE + 4))
        self.reset()

    # ---- state ---------------------------------------------------------------

    def reset(self) -> None:
        """Power-on: RAM cleared, PROM loaded, every register at its reset value."""
        if self._bound:
            self._pull()
        self._reset()
        if self._bound:
            self._push()

    def _reset(self) -> None:
        m = self._mem
        m[RAM_START:self.ram_end] = bytes(self.ram_end - RAM_START)
        prom = self.mac + bytes(8) + bytes((PROM_SIGNATURE, PROM_SIGNATURE))
        m[0:PROM_SIZE] = bytes(x for b in prom for x in (b, b))
        self.pstart = 0
        self.pstop = 0
        self.bnry = 0
        self.curr = 0
        self.tpsr = 0
        self.tbcr = 0
        self.rsar = 0              # doubles as CRDA: advances with the remote DMA
        self.rbcr = 0              # counts down with the remote DMA
        self.rnpp = 0              # remote next packet pointer (send-packet command)
        self.clda = 0              # current local DMA address (last receive write)
        self.rcr = 0               # accept only frames for PAR until the driver says more
        self.tcr = 0               # normal transmission: QEMU ignores TCR, so drivers may never set it
        self.tsr = 0
        self.rsr = 0
        self.ncr = 0               # no collisions on a host link
        self.cntr = [0, 0, 0]      # CNTR0 frame alignment, CNTR1 CRC, CNTR2 missed packets
        self.par = bytearray(ADDR_LEN)
        self.mar = bytearray(8)
        self.dcr = 0
        self._nic_reset()          # CR, ISR and IMR

    def _nic_reset(self) -> None:
        """The NIC's reset state (RESET pin, or a read of the board's reset port):
        stopped with remote DMA aborted, RST set, interrupts masked, LAS set."""
        self.cr = int(CR_.STP | CR_.RD2)
        self.isr = _RST
        self.imr = 0
        self.dcr |= int(DCR_.LAS)
        self._update_irq()

    def _update_irq(self) -> None:
        self.irq_line.set_level((self.isr & self.imr & ISR_IRQ_MASK) != 0)

    # ---- the C fast path -----------------------------------------------------------
    def bind_fast(self, fast, port_of) -> None:
        """Let C serve word-mode remote DMA through the data port (``rep insw``/
        ``outsw``) straight from card memory, which moves into C memory."""
        cmem = fast.buffer(len(self._mem))
        cmem[:] = self._mem
        self._mem, self._cmem = cmem, fast.pointer(cmem)
        self._win = fast.window([port_of(DATA_PORT)], sizes=(2, 4), on_done=self._window_done)
        self._win_at = None               # (``_push`` opens the window or leaves it shut)
        self._bound = True
        self._push()

    def _pull(self) -> None:
        """Account for the bytes C moved: CRDA on, RBCR down, wrap, RDC."""
        if self._win_at is not None:
            moved = self._win.moved
            self._win.close()
            self._win_at = None
            if moved:
                self._dma_advance(self.rsar + moved, moved)

    def _push(self) -> None:
        """Open the window on the contiguous part of the remote DMA still to run:
        word mode, aligned, up to RBCR, the PSTOP wrap and (for writes) RAM's end."""
        a, n = self.rsar, self.rbcr
        if not (self.dcr & _WTS) or a & 1 or n < 2 or self.cr & CR_.STP:
            self._win.close()
            return
        end = a + (n & ~1)
        stop = self.pstop << 8
        if a < stop < end:
            end = stop
        writing = (self.cr & RD_MASK) == RD_REMOTE_WRITE
        if writing:
            if not RAM_START <= a < self.ram_end:
                self._win.close()
                return
            end = min(end, self.ram_end)
        end = min(end, ADDR_SPACE)
        if end - a < 2:
            self._win.close()
            return
        self._win.open(self._cmem, a, end, writable=writing)
        self._win_at = a

    def _window_done(self) -> None:
        self._pull()
        self._push()

    # ---- snapshots ---------------------------------------------------------------

    _BYTES = ("pstart", "pstop", "bnry", "curr", "tpsr", "rnpp", "rcr", "tcr", "tsr", "rsr",
              "ncr", "isr", "imr", "dcr", "cr")
    _WORDS = ("tbcr", "rsar", "rbcr", "clda")

    def state(self) -> dict:
        """The DP8390 registers of every page, the remote DMA's address and count (taken
        back from C: the words the guest moved there), the tally counters, and the packet
        RAM; the IRQ level. The PROM is the configured MAC. Frames waiting on the network
        are not the card's: a restored machine starts with none."""
        if self._bound:
            self._pull()
        out = st.versioned(**{n: getattr(self, n) for n in self._BYTES + self._WORDS},
                           cntr=list(self.cntr), par=bytes(self.par), mar=bytes(self.mar),
                           ram=bytes(self._mem[RAM_START:self.ram_end]),
                           irq=st.line_level(self.irq_line))
        if self._bound:
            self._push()
        return out

    def load_state(self, state: dict) -> None:
        """Registers and packet RAM as saved (copied into the C memory already there); under
        the C dispatch the remote DMA window reopens where the saved transfer stands."""
        who = self.name
        st.check_version(state, who)
        values = {n: st.integer(state, n, who, 0, 0xFF) for n in self._BYTES}
        values.update({n: st.integer(state, n, who, 0, 0xFFFF) for n in self._WORDS})
        cntr = st.int_list(state, "cntr", who, 3, 0, 0xFF)
        par = st.blob(state, "par", who, ADDR_LEN)
        mar = st.blob(state, "mar", who, 8)
        ram = st.blob(state, "ram", who, self.ram_end - RAM_START)
        irq = st.flag(state, "irq", who)
        if self._bound:
            self._pull()
        for name, value in values.items():
            setattr(self, name, value)
        self.cntr, self.par, self.mar = cntr, bytearray(par), bytearray(mar)
        self._mem[RAM_START:self.ram_end] = ram
        st.restore_level(self.irq_line, irq)
        if self._bound:
            self._push()

    # ---- port I/O (SharedStateDevice.read/write wrap these) -------------------

    def _read(self, offset: int, size: int) -> int:
        if offset == DATA_PORT:
            # Remote DMA (under the C dispatch, word-mode transfers are served in C from
            # card memory and do not come here).
            at, n = self._data_access(size)
            v = int.from_bytes(self._mem[at:at + n], "little")
            self._dma_advance(self.rsar + n, n)
            return v & 0xFF if size == 1 else v
        if size > 1 and offset & (size - 1):
            return 0                       # QEMU's I/O core rejects unaligned accesses: reads 0
        if size == 1:
            if offset < NIC_REGS:
                return self._reg_read(offset)
            if offset == RESET_PORT:
                self._nic_reset()
                return 0
        return (1 << (8 * size)) - 1

    def _write(self, offset: int, size: int, value: int) -> None:
        if offset == DATA_PORT:
            if self.rbcr:                   # with nothing left to transfer: ignored (as QEMU)
                at, n = self._data_access(size)
                if RAM_START <= at and at + n <= self.ram_end:     # the PROM is read-only
                    self._mem[at:at + n] = (value & 0xFFFFFFFF).to_bytes(4, "little")[:n]
                self._dma_advance(self.rsar + n, n)
        elif size == 1 and offset < NIC_REGS:
            self._reg_write(offset, value & 0xFF)
        # the reset port's write only ends the reset pulse

    # ---- remote DMA ------------------------------------------------------------

    def _dma_advance(self, a: int, n: int) -> None:
        """Move CRDA on to ``a`` (wrapping at PSTOP as the ring does) and count RBCR down."""
        if a == self.pstop << 8:
            a = self.pstart << 8
        self.rsar = a & 0xFFFF
        if self.rbcr <= n:
            self.rbcr = 0
            self.isr |= _RDC
            self._update_irq()
        else:
            self.rbcr -= n

    def _data_access(self, size: int) -> tuple[int, int]:
        """Where one data-port access moves card memory, and how many bytes it moves
        (and counts): a byte in byte mode; a word in word mode (a byte access too: the bus
        takes its low byte), two for a 32-bit access; words at CRDA rounded down to even
        (as QEMU: the access is aligned, CRDA is not)."""
        if size == 4:
            return self.rsar & 0xFFFE, 4
        if self.dcr & _WTS:
            return self.rsar & 0xFFFE, 2
        return self.rsar, 1

    def card_read(self, addr: int, length: int) -> bytes:
        """Bytes of the card address space (for tests and debugging); outside
        PROM and RAM reads as 0xFF, addresses wrap at 64 KiB."""
        addr &= 0xFFFF
        length = max(0, min(length, ADDR_SPACE))
        out = self._mem[addr:min(addr + length, ADDR_SPACE)]
        return bytes(out) + bytes(self._mem[0:length - len(out)])

    # ---- registers -------------------------------------------------------------

    def _reg_read(self, offset: int) -> int:
        if offset == CR:
            return self.cr
        reg = offset | ((self.cr >> 6) << 4)
        fn = _READS.get(reg)
        return fn(self) & 0xFF if fn is not None else 0x00

    def _reg_write(self, offset: int, value: int) -> None:
        if offset == CR:
            self._command(value)
            return
        reg = offset | ((self.cr >> 6) << 4)
        fn = _WRITES.get(reg)
        if fn is not None:
            fn(self, value)

    def _command(self, value: int) -> None:
        self.cr = value
        if value & CR_.STP:
            # Software reset: the NIC goes offline and says so in ISR.RST.
            self.isr |= _RST
            self._update_irq()
            return
        self.isr &= ~_RST & 0xFF
        rd = value & RD_MASK
        if rd == RD_SEND_PACKET:
            self._send_packet_setup()
        elif rd in (RD_REMOTE_READ, RD_REMOTE_WRITE) and self.rbcr == 0:
            self.isr |= _RDC           # zero-length transfer completes at once
        if value & CR_.TXP:
            self._transmit()
            self.cr &= ~int(CR_.TXP) & 0xFF
        self._update_irq()

    def _send_packet_setup(self) -> None:
        """RD=011: remote read of the packet at BNRY, its length from its header."""
        a = self.bnry << 8
        self.rsar = a & 0xFFFF
        if RAM_START <= a and a + RX_HEADER <= self.ram_end:
            _status, self.rnpp, count_lo, count_hi = self._mem[a:a + RX_HEADER]
            self.rbcr = count_lo | count_hi << 8
        else:
            self.rbcr = 0                     # no packet in RAM there: nothing to read
        if self.rbcr == 0:
            self.isr |= _RDC                  # nothing to read completes at once

    # ---- transmit --------------------------------------------------------------

    def _transmit(self) -> None:
        start = self.tpsr << 8
        if RAM_START <= start < self.ram_end:
            # A count running past the end of RAM is cut there.
            frame = bytes(self._mem[start:min(start + self.tbcr, self.ram_end)])
            if len(frame) < MIN_FRAME:
                frame += bytes(MIN_FRAME - len(frame))
            if self.tcr & LB_MASK:
                pass                    # loopback: the frame never reaches the wire
            elif self.port is not None:
                self.port.send(frame)
        # TPSR outside RAM: nothing to send (QEMU also drops an out-of-range frame).
        self.tsr = int(TSR_.PTX)
        self.ncr = 0
        self.isr |= int(ISR_.PTX)

    # ---- receive ---------------------------------------------------------------

    def _accepts(self, frame: bytes) -> bool:
        rcr = self.rcr
        if rcr & RCR_.PRO:
            return True
        dest = frame[:ADDR_LEN]
        if dest == b"\xff" * ADDR_LEN:
            return bool(rcr & RCR_.AB)
        if dest[0] & 1:
            if not rcr & RCR_.AM:
                return False
            bit = mar_hash_index(dest)
            return bool(self.mar[bit >> 3] & (1 << (bit & 7)))
        return dest == self.par

    def _missed(self) -> None:
        self.rsr |= int(RSR_.MPA)
        self._count(2)

    def _count(self, i: int) -> None:
        c = min(self.cntr[i] + 1, 0xFF)
        self.cntr[i] = c
        if c & 0x80:
            self.isr |= int(ISR_.CNT)

    def can_receive(self) -> bool:
        """QEMU's ``can_receive``, for a link that holds frames back instead of
        losing them: False while the ring has no room for a full-size frame.
        A stopped NIC (or a ring it cannot use) says True: it drops at once."""
        start, stop = self.pstart, self.pstop
        if self.cr & CR_.STP or not (RAM_START >> 8 <= start < stop <= self.ram_end >> 8
                                    and start <= self.curr < stop and start <= self.bnry < stop):
            return True                       # it drops the frame at once
        ring = stop - start
        avail = (self.bnry - self.curr) % ring or ring
        return avail > (MAX_FRAME + RX_HEADER + CRC_LEN + 0xFF) >> 8

    def receive(self, frame: bytes) -> bool:
        """One frame from the wire (no CRC). True if it was stored in the ring."""
        frame = bytes(frame)
        if self.cr & CR_.STP or len(frame) < ADDR_LEN or not self._accepts(frame):
            return False
        if self.rcr & RCR_.MON:
            self.rsr = int(RSR_.DIS | RSR_.MPA)
            self._count(2)
            self._update_irq()
            return False
        if len(frame) < MIN_FRAME and not self.rcr & RCR_.AR:
            # The host link delivers frames unpadded; on a wire they were padded.
            frame += bytes(MIN_FRAME - len(frame))
        start, stop = self.pstart, self.pstop
        ok_ring = (RAM_START >> 8 <= start < stop <= self.ram_end >> 8
                   and start <= self.curr < stop and start <= self.bnry < stop)
        size = len(frame)
        total = size + RX_HEADER                       # the header's byte count
        pages = (total + CRC_LEN + 0xFF) >> 8
        if ok_ring:
            ring = stop - start
            avail = (self.bnry - self.curr) % ring or ring
        if not ok_ring or pages >= avail:
            # No room (CURR may never catch up with BNRY): overwrite warning, frame lost.
            if ok_ring:
                self.isr |= int(ISR_.OVW)
            self._missed()
            self._update_irq()
            return False

        nxt = self.curr + pages
        if nxt >= stop:
            nxt -= ring
        rsr = int(RSR_.PRX) | (int(RSR_.PHY) if frame[0] & 1 else 0)
        m = self._mem
        index = self.curr << 8
        m[index:index + RX_HEADER] = bytes((rsr, nxt, total & 0xFF, total >> 8))
        index += RX_HEADER
        lo, hi = start << 8, stop << 8
        pos = 0
        while pos < size:
            n = min(size - pos, hi - index)
            m[index:index + n] = frame[pos:pos + n]
            pos += n
            index += n
            if index >= hi:
                index = lo
        self.clda = index
        self.curr = nxt
        self.rsr = rsr
        self.isr |= int(ISR_.PRX)
        self._update_irq()
        return True

    # ---- register accessors (tables below) ---------------------------------------

    def _read_counter(self, i: int) -> int:
        v = self.cntr[i]
        self.cntr[i] = 0                 # tally counters clear when read
        return v

    def _write_isr(self, v: int) -> None:
        self.isr &= ~(v & ISR_IRQ_MASK) & 0xFF   # write 1 to clear; RST only via STA
        self._update_irq()

    def _write_imr(self, v: int) -> None:
        self.imr = v & ISR_IRQ_MASK
        self._update_irq()


def _setter(attr: str):
    def fn(nic: Ne2000, v: int) -> None:
        setattr(nic, attr, v)
    return fn


def _set_lo(attr: str):
    def fn(nic: Ne2000, v: int) -> None:
        setattr(nic, attr, (getattr(nic, attr) & 0xFF00) | v)
    return fn


def _set_hi(attr: str):
    def fn(nic: Ne2000, v: int) -> None:
        setattr(nic, attr, (getattr(nic, attr) & 0x00FF) | (v << 8))
    return fn


def _par_w(i: int):
    def fn(nic: Ne2000, v: int) -> None:
        nic.par[i] = v
    return fn


def _mar_w(i: int):
    def fn(nic: Ne2000, v: int) -> None:
        nic.mar[i] = v
    return fn


_READS = {
    CLDA0: lambda n: n.clda,
    CLDA1: lambda n: n.clda >> 8,
    BNRY: lambda n: n.bnry,
    TSR: lambda n: n.tsr,
    NCR: lambda n: n.ncr,
    FIFO: lambda n: 0,
    ISR: lambda n: n.isr,
    CRDA0: lambda n: n.rsar,
    CRDA1: lambda n: n.rsar >> 8,
    RTL8029ID0: lambda n: RTL8029_ID[0],
    RTL8029ID1: lambda n: RTL8029_ID[1],
    RSR: lambda n: n.rsr,
    CNTR0: lambda n: n._read_counter(0),
    CNTR1: lambda n: n._read_counter(1),
    CNTR2: lambda n: n._read_counter(2),
    CURR: lambda n: n.curr,
    P2_PSTART: lambda n: n.pstart,
    P2_PSTOP: lambda n: n.pstop,
    P2_RNPP: lambda n: n.rnpp,
    P2_TPSR: lambda n: n.tpsr,
    P2_LNPP: lambda n: n.curr,
    P2_ACU: lambda n: n.clda >> 8,
    P2_ACL: lambda n: n.clda,
    P2_RCR: lambda n: n.rcr,
    P2_TCR: lambda n: n.tcr,
    P2_DCR: lambda n: n.dcr,
    P2_IMR: lambda n: n.imr,
    **{PAR0 + i: (lambda n, i=i: n.par[i]) for i in range(ADDR_LEN)},
    **{MAR0 + i: (lambda n, i=i: n.mar[i]) for i in range(8)},
    **{reg: (lambda n, v=v: v) for reg, v in RTL8029_CONFIG.items()},
}

_WRITES = {
    PSTART: _setter("pstart"),
    PSTOP: _setter("pstop"),
    BNRY: _setter("bnry"),
    TPSR: _setter("tpsr"),
    TBCR0: _set_lo("tbcr"),
    TBCR1: _set_hi("tbcr"),
    ISR: Ne2000._write_isr,
    RSAR0: _set_lo("rsar"),
    RSAR1: _set_hi("rsar"),
    RBCR0: _set_lo("rbcr"),
    RBCR1: _set_hi("rbcr"),
    RCR: lambda n, v: setattr(n, "rcr", v & 0x3F),
    TCR: lambda n, v: setattr(n, "tcr", v & 0x1F),
    DCR: lambda n, v: setattr(n, "dcr", v & 0x7F),
    IMR: Ne2000._write_imr,
    CURR: _setter("curr"),
    **{PAR0 + i: _par_w(i) for i in range(ADDR_LEN)},
    **{MAR0 + i: _mar_w(i) for i in range(8)},
}
