"""POST: what the synthetic BIOS sets up before INT 19h, done on the host."""
from __future__ import annotations

import struct

from devices import bios_common as B
from devices.bios_synthetic import (DPT_OFFSET, HC_VECTOR, IRQ0_STUB, ROM_BASE,
                                    stub_entry)
from hv.hypercall import HypercallContext

PIC_MASTER_BASE, PIC_SLAVE_BASE = 0x08, 0x70


def _program_pics(m) -> None:
    # The same ICW sequence the emulated BIOS sends, written through the device model.
    for cmd, data, base, icw3 in ((0x20, 0x21, PIC_MASTER_BASE, 0x04),
                                  (0xA0, 0xA1, PIC_SLAVE_BASE, 0x02)):
        m.ports.write(cmd, 1, 0x11)       # ICW1: edge, cascade, ICW4 needed
        m.ports.write(data, 1, base)      # ICW2: vector base
        m.ports.write(data, 1, icw3)      # ICW3: cascade wiring on IR2
        m.ports.write(data, 1, 0x01)      # ICW4: 8086 mode, normal EOI
    m.ports.write(0x21, 1, 0xF8)          # unmask IRQ 0 (timer), 1 (keyboard), 2 (cascade)
    m.ports.write(0xA1, 1, 0xFF)


def _program_pit(m) -> None:
    m.ports.write(0x43, 1, 0x36)          # channel 0, lobyte/hibyte, mode 3
    m.ports.write(0x40, 1, 0x00)          # count 0 = 65536: 18.2 Hz
    m.ports.write(0x40, 1, 0x00)


def _init_keyboard(m) -> None:
    m.ports.write(0x64, 1, 0x60)          # write command byte:
    m.ports.write(0x60, 1, 0x45)          # IRQ1 on, system flag, set-1 translation


def post(ctx: HypercallContext) -> None:
    m = ctx.machine
    mem = m.mem
    # IVT: every vector to its stub; IRQ 0 to the stub that chains INT 1Ch.
    ivt = bytearray()
    for v in range(256):
        ivt += struct.pack("<HH", stub_entry(v), 0xF000)
    struct.pack_into("<HH", ivt, 0x08 * 4, IRQ0_STUB, 0xF000)
    struct.pack_into("<HH", ivt, 0x1E * 4, DPT_OFFSET, 0xF000)
    mem.write(0, bytes(ivt))
    # BIOS data area and EBDA.
    mem.write(B.BDA, bytes(0x100))
    mem.write(B.EBDA_BASE, bytes(0x400))
    mem.put8(B.EBDA_BASE, 1)              # EBDA size in KiB
    mem.put16(B.COM1_BASE, 0x3F8)
    floppies = len(m.disks.floppies())
    equipment = 0x0020 | (1 << 9)         # 80x25 colour, one serial port
    if floppies:
        equipment |= 0x0001 | ((floppies - 1) << 6)
    mem.put16(B.EQUIPMENT, equipment)
    mem.put16(B.MEMORY_KB, B.base_memory_kb(m.mem.size))
    mem.put16(B.EBDA_SEGMENT, B.EBDA_BASE >> 4)
    mem.put16(B.KBD_HEAD, 0x1E)
    mem.put16(B.KBD_TAIL, 0x1E)
    mem.put16(B.KBD_BUFFER_START, 0x1E)
    mem.put16(B.KBD_BUFFER_STOP, 0x3E)
    mem.put8(B.HD_COUNT, len(m.disks.hard_disks()))
    mem.put32(B.TICKS, 0)
    _program_pics(m)
    _program_pit(m)
    _init_keyboard(m)
    from devices.bios_synthetic import system, video
    system.set_ticks_from_rtc(m)
    video.set_mode(m, 0x03)
    video.banner(m)


def default_vector(ctx: HypercallContext) -> None:
    """A vector with no service: hardware IRQs get their EOI, the rest just return."""
    vector = ctx.number - HC_VECTOR
    m = ctx.machine
    if 0x70 <= vector <= 0x77:
        m.ports.write(0xA0, 1, 0x20)
        m.ports.write(0x20, 1, 0x20)
    elif 0x08 <= vector <= 0x0F:
        m.ports.write(0x20, 1, 0x20)
