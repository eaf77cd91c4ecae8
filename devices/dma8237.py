"""Intel 8237A DMA controllers as wired on the PC/AT, with the page registers.

Two 8237As: DMA1 (channels 0-3, byte transfers) at ports 0x00-0x0F and DMA2
(channels 4-7, word transfers) at 0xC0-0xDF, where the board ignores A0, so its
registers sit on even ports (0xC0 + 2*reg, the odd port is an alias). Channel 4
cascades DMA1 into DMA2. The upper address bits come from the 74LS612 page
registers at 0x81-0x8F (0x80 is the POST port and belongs to someone else).

Registers, as the datasheet names them (offset within a controller):
  0-7  base/current address and word count of channels 0-3 (address at 2n,
       count at 2n+1), accessed low byte then high byte through the byte
       pointer flip-flop
  8    read: status (TC bits 0-3, cleared by the read; request bits 4-7)
       write: command
  9    write: request      0x0A write: single mask bit   0x0B write: mode
  0x0C write: clear byte pointer flip-flop
  0x0D read: temporary register; write: master clear
  0x0E write: clear mask register   0x0F write: write all mask bits
       (read: the mask bits, as the AT chipsets that followed return them)

Offsets seen by ``read``/``write`` are the port numbers themselves (each
PortRange's bias equals its base), so 0x0B is DMA1's mode register, 0x81 the
channel 2 page register and 0xD6 DMA2's mode register.

Hardware reset masks every channel, including the cascade channel 4, so DMA1
could not reach the bus until firmware set it up. hv's BIOSes do not, so by
default ``reset`` also does what a BIOS POST does (channel 4 in cascade mode,
unmasked); ``bios_initialized=False`` gives the bare chip.

Devices do not raise DREQ and wait: a transfer happens at once, inside
``write_to_memory`` (device -> memory, a "write transfer" in 8237 terms) or
``read_from_memory`` (memory -> device, a "read transfer"). Both honour the
channel's mask, mode, direction (increment/decrement), current address and
count (count + 1 units), stop at terminal count (reloading the base registers
when auto-initialize is set, otherwise setting the channel's mask bit, as the
chip does) and wrap the address inside its 64 KiB page (128 KiB for the word
channels), because the page register does not count. Single, demand and block
modes behave the same here: the device always has the data ready.

A channel programmed for the other direction, or for verify, performs the
8237's pseudo transfer: address and count advance, memory is not touched, a
device reading gets 0xFF (the undriven bus). Every guest-supplied address goes
through ``GuestMemory``: the transfer stops at the first unit outside guest
RAM and reports fewer bytes; nothing outside the buffer is ever touched. Units
written into the ROM window (0xC0000-0xFFFFF) count as transferred and are
dropped, as on a real board: DMA never changes the BIOS a reset reruns.
"""
from __future__ import annotations

from enum import IntEnum, IntFlag

from hv.devices import state as st
from hv.devices.base import ByteRegisterDevice, PortRange, write_ram
from hv.memory import GuestMemory, GuestMemoryError

# Register numbers inside one controller.
class Reg(IntEnum):
    STATUS_COMMAND = 0x08     # read status / write command
    REQUEST = 0x09
    SINGLE_MASK = 0x0A
    MODE = 0x0B
    CLEAR_FLIP_FLOP = 0x0C
    TEMP_MASTER_CLEAR = 0x0D  # read temporary / write master clear
    CLEAR_MASK = 0x0E
    WRITE_ALL_MASK = 0x0F


class Command(IntFlag):
    MEM_TO_MEM = 0x01         # not wired on the PC; stored only
    CH0_ADDR_HOLD = 0x02
    CONTROLLER_DISABLE = 0x04
    COMPRESSED_TIMING = 0x08
    ROTATING_PRIORITY = 0x10
    EXTENDED_WRITE = 0x20
    DREQ_SENSE_LOW = 0x40
    DACK_SENSE_HIGH = 0x80


# Mode register fields.
MODE_CHANNEL = 0x03
MODE_TRANSFER = 0x0C
MODE_AUTOINIT = 0x10
MODE_DECREMENT = 0x20
MODE_SELECT = 0xC0


class Transfer(IntEnum):      # mode bits 3-2
    VERIFY = 0x00
    WRITE = 0x04              # I/O device -> memory
    READ = 0x08               # memory -> I/O device
    ILLEGAL = 0x0C


class ModeSelect(IntEnum):    # mode bits 7-6
    DEMAND = 0x00
    SINGLE = 0x40
    BLOCK = 0x80
    CASCADE = 0xC0


REQ_SET = 0x04                # request / single mask: bit 2 sets, bits 1-0 channel
STATUS_TC = 0x0F
STATUS_REQ_SHIFT = 4

# Channel -> page register port (the AT's irregular 74LS612 wiring).
PAGE_PORT = {0: 0x87, 1: 0x83, 2: 0x81, 3: 0x82, 4: 0x8F, 5: 0x8B, 6: 0x89, 7: 0x8A}
PAGE_BASE, PAGE_END = 0x81, 0x90
DMA1_BASE, DMA2_BASE = 0x00, 0xC0


class Channel:
    def __init__(self) -> None:
        # Undefined at power-on; zero is as good as anything.
        self.base_addr = 0
        self.base_count = 0
        self.cur_addr = 0
        self.cur_count = 0
        self.mode = 0
        self.last_tc = False   # the last transfer ended at terminal count


class Controller:
    """One 8237A."""

    def __init__(self) -> None:
        self.ch = [Channel() for _ in range(4)]
        self.master_clear()

    def master_clear(self) -> None:
        # Master clear = hardware reset: command, status, request, temporary and
        # flip-flop cleared, all four channels masked.
        self.command = 0
        self.status = 0
        self.request = 0
        self.temp = 0
        self.flip_flop = 0
        self.mask = 0x0F

    def read(self, reg: int) -> int:
        if reg < 8:
            c = self.ch[reg >> 1]
            v = c.cur_count if reg & 1 else c.cur_addr
            v = v >> 8 if self.flip_flop else v
            self.flip_flop ^= 1
            return v & 0xFF
        if reg == Reg.STATUS_COMMAND:
            v = self.status | self.request << STATUS_REQ_SHIFT
            self.status &= ~STATUS_TC  # TC bits clear when read
            return v & 0xFF
        if reg == Reg.TEMP_MASTER_CLEAR:
            return self.temp
        if reg == Reg.WRITE_ALL_MASK:
            return 0xF0 | self.mask
        return 0xFF                    # write-only registers: nothing drives the bus

    def write(self, reg: int, v: int) -> None:
        v &= 0xFF
        if reg < 8:
            c = self.ch[reg >> 1]
            shift = 8 if self.flip_flop else 0
            keep = 0x00FF if shift else 0xFF00
            if reg & 1:
                c.base_count = c.cur_count = (c.base_count & keep) | v << shift
            else:
                c.base_addr = c.cur_addr = (c.base_addr & keep) | v << shift
            self.flip_flop ^= 1
            return
        handler = _WRITES.get(reg)
        if handler is not None:
            handler(self, v)

    def _command(self, v: int) -> None:
        self.command = v

    def _request(self, v: int) -> None:
        bit = 1 << (v & 3)
        self.request = self.request | bit if v & REQ_SET else self.request & ~bit

    def _single_mask(self, v: int) -> None:
        bit = 1 << (v & 3)
        self.mask = self.mask | bit if v & REQ_SET else self.mask & ~bit

    def _mode(self, v: int) -> None:
        self.ch[v & MODE_CHANNEL].mode = v & ~MODE_CHANNEL

    def _clear_flip_flop(self, v: int) -> None:
        self.flip_flop = 0

    def _master_clear(self, v: int) -> None:
        self.master_clear()

    def _clear_mask(self, v: int) -> None:
        self.mask = 0

    def _write_all_mask(self, v: int) -> None:
        self.mask = v & 0x0F


_WRITES = {
    Reg.STATUS_COMMAND: Controller._command,
    Reg.REQUEST: Controller._request,
    Reg.SINGLE_MASK: Controller._single_mask,
    Reg.MODE: Controller._mode,
    Reg.CLEAR_FLIP_FLOP: Controller._clear_flip_flop,
    Reg.TEMP_MASTER_CLEAR: Controller._master_clear,
    Reg.CLEAR_MASK: Controller._clear_mask,
    Reg.WRITE_ALL_MASK: Controller._write_all_mask,
}


class Dma8237(ByteRegisterDevice):
    name = "dma"
    ports = (PortRange(DMA1_BASE, 0x10, DMA1_BASE),
             PortRange(PAGE_BASE, PAGE_END - PAGE_BASE, PAGE_BASE),
             PortRange(DMA2_BASE, 0x20, DMA2_BASE))

    def __init__(self, mem: GuestMemory, bios_initialized: bool = True) -> None:
        self.mem = mem
        self.bios_initialized = bios_initialized
        self.dma1 = Controller()
        self.dma2 = Controller()
        self.page = bytearray(0x10)    # index = port - 0x80
        self.reset()

    def reset(self) -> None:
        self.dma1.master_clear()
        self.dma2.master_clear()
        for ctl in (self.dma1, self.dma2):
            for c in ctl.ch:
                c.__init__()
        self.page[:] = bytes(0x10)     # the 74LS612 powers up undefined; zero it
        if self.bios_initialized:
            # What every PC BIOS POST does and guests rely on (hv's BIOSes do not
            # touch the DMA controllers): channel 4 cascades DMA1 and is unmasked.
            self.dma2.ch[0].mode = ModeSelect.CASCADE
            self.dma2.mask &= ~1

    # -- snapshots ----------------------------------------------------------------------
    _CONTROLLER = ("command", "status", "request", "temp", "flip_flop", "mask")
    _CHANNEL = ("base_addr", "base_count", "cur_addr", "cur_count", "mode")

    def state(self) -> dict:
        """Both controllers' registers (the byte-pointer flip-flop included), every
        channel's base and current address/count, mode and TC, and the page registers."""
        def controller(ctl: Controller) -> dict:
            return {**{n: int(getattr(ctl, n)) for n in self._CONTROLLER},
                    "channels": [{**{n: int(getattr(c, n)) for n in self._CHANNEL},
                                  "last_tc": c.last_tc} for c in ctl.ch]}
        return st.versioned(dma1=controller(self.dma1), dma2=controller(self.dma2),
                            page=bytes(self.page))

    def load_state(self, state: dict) -> None:
        who = self.name
        st.check_version(state, who)
        saved = []
        for key in ("dma1", "dma2"):
            ctl = st.field(state, key, who)
            if not isinstance(ctl, dict):
                raise ValueError(f"{who}: saved {key} is not a controller")
            regs = {n: st.integer(ctl, n, f"{who} {key}", 0, 0xFF) for n in self._CONTROLLER}
            chans = st.field(ctl, "channels", who)
            if not isinstance(chans, list) or len(chans) != 4 or \
                    not all(isinstance(c, dict) for c in chans):
                raise ValueError(f"{who}: saved {key} channels are not four channels")
            channels = [({n: st.integer(c, n, f"{who} {key}", 0, 0xFFFF) for n in self._CHANNEL},
                         st.flag(c, "last_tc", who)) for c in chans]
            saved.append((regs, channels))
        page = st.blob(state, "page", who, len(self.page))
        for ctl, (regs, channels) in zip((self.dma1, self.dma2), saved):
            for name, value in regs.items():
                setattr(ctl, name, value)
            ctl.flip_flop &= 1
            for c, (values, last_tc) in zip(ctl.ch, channels):
                for name, value in values.items():
                    setattr(c, name, value)
                c.last_tc = last_tc
        self.page[:] = page

    # -- port access ----------------------------------------------------------------
    def _byte_read(self, off: int) -> int:
        if 0 <= off < 0x10:
            return self.dma1.read(off)
        if PAGE_BASE <= off < PAGE_END:
            return self.page[off - 0x80]
        if DMA2_BASE <= off < DMA2_BASE + 0x20:
            return self.dma2.read((off - DMA2_BASE) >> 1)
        return 0xFF

    def _byte_write(self, off: int, v: int) -> None:
        if 0 <= off < 0x10:
            self.dma1.write(off, v)
        elif PAGE_BASE <= off < PAGE_END:
            self.page[off - 0x80] = v & 0xFF
        elif DMA2_BASE <= off < DMA2_BASE + 0x20:
            self.dma2.write((off - DMA2_BASE) >> 1, v)

    # -- what devices call ------------------------------------------------------------
    def write_to_memory(self, channel: int, data: bytes) -> int:
        """Device -> memory (8237 write transfer). Returns bytes taken from ``data``."""
        return self._transfer(channel, Transfer.WRITE, bytes(data), len(data))[0]

    def read_from_memory(self, channel: int, length: int) -> bytes:
        """Memory -> device (8237 read transfer). Returns the bytes delivered."""
        return self._transfer(channel, Transfer.READ, None, length)[1]

    def transfer(self, channel: int, data: bytes | None, length: int) -> bytes | int:
        """One entry for both directions: ``data`` given -> write transfer (returns the
        byte count), ``data`` None -> read transfer of ``length`` bytes."""
        if data is not None:
            return self.write_to_memory(channel, data)
        return self.read_from_memory(channel, length)

    def terminal_count(self, channel: int) -> bool:
        """Did the last transfer on ``channel`` end at terminal count (the EOP a device sees)?"""
        if not 0 <= channel < 8:
            return False
        return self._controller(channel).ch[channel & 3].last_tc

    def masked(self, channel: int) -> bool:
        return not 0 <= channel < 8 or bool(self._controller(channel).mask >> (channel & 3) & 1)

    def channel_state(self, channel: int) -> dict[str, int]:
        """Current registers of a channel (for tests and the monitor)."""
        c = self._controller(channel).ch[channel & 3]
        return {"address": self._phys(channel, c.cur_addr), "count": c.cur_count,
                "base_address": c.base_addr, "base_count": c.base_count, "mode": c.mode}

    # -- internals ----------------------------------------------------------------------
    def _controller(self, channel: int) -> Controller:
        return self.dma1 if channel < 4 else self.dma2

    def _phys(self, channel: int, unit_addr: int) -> int:
        page = self.page[PAGE_PORT[channel] - 0x80]
        if channel < 4:
            return page << 16 | unit_addr
        # Word channels: the address register holds A16-A1, the page A23-A17.
        return (page & 0xFE) << 16 | unit_addr << 1

    def _in_ram(self, addr: int, length: int) -> bool:
        try:
            self.mem.check(addr, length)
        except GuestMemoryError:
            return False
        return True

    def _transfer(self, channel: int, want: Transfer, data: bytes | None,
                  length: int) -> tuple[int, bytes]:
        if not 0 <= channel < 8 or channel == 4 or length <= 0:
            return 0, b""
        ctl = self._controller(channel)
        c = ctl.ch[channel & 3]
        c.last_tc = False
        # DMA1 reaches the bus only through DMA2's cascade channel 4.
        blocked = ctl.command & Command.CONTROLLER_DISABLE or ctl.mask >> (channel & 3) & 1
        if channel < 4:
            blocked = blocked or self.dma2.command & Command.CONTROLLER_DISABLE \
                or self.dma2.mask & 1
        if blocked or c.mode & MODE_SELECT == ModeSelect.CASCADE:
            return 0, b""
        unit = 1 if channel < 4 else 2
        units = length // unit
        real = c.mode & MODE_TRANSFER == want
        step = -1 if c.mode & MODE_DECREMENT else 1
        out = bytearray()
        done = 0
        while done < units:
            to_wrap = 0x10000 - c.cur_addr if step > 0 else c.cur_addr + 1
            n = min(units - done, c.cur_count + 1, to_wrap)
            lo = c.cur_addr if step > 0 else c.cur_addr - n + 1
            stopped = False
            if real and not self._in_ram(self._phys(channel, lo), n * unit):
                # Keep the units, in transfer order, that lie inside guest RAM.
                k = 0
                while k < n and self._in_ram(self._phys(channel, c.cur_addr + step * k), unit):
                    k += 1
                n, stopped = k, True
                lo = c.cur_addr if step > 0 else c.cur_addr - n + 1
            if n:
                nb = n * unit
                if real:
                    phys = self._phys(channel, lo)
                    if want == Transfer.WRITE:
                        chunk = data[done * unit:done * unit + nb]
                        write_ram(self.mem, phys, chunk if step > 0 else _reverse_units(chunk, unit))
                    else:
                        chunk = self.mem.read(phys, nb)
                        out += chunk if step > 0 else _reverse_units(chunk, unit)
                elif want == Transfer.READ:
                    out += b"\xff" * nb
                c.cur_addr = (c.cur_addr + step * n) & 0xFFFF
                c.cur_count -= n
                done += n
            if c.cur_count < 0:
                # Terminal count: the count rolled over from 0 to 0xFFFF.
                ctl.status |= 1 << (channel & 3)
                c.last_tc = True
                if c.mode & MODE_AUTOINIT:
                    c.cur_addr, c.cur_count = c.base_addr, c.base_count
                else:
                    c.cur_count = 0xFFFF
                    ctl.mask |= 1 << (channel & 3)
                break
            if stopped:
                break
        return done * unit, bytes(out)


def _reverse_units(chunk: bytes, unit: int) -> bytes:
    if unit == 1:
        return chunk[::-1]
    return b"".join(chunk[i:i + unit] for i in range(len(chunk) - unit, -1, -unit))
