"""POST: what the synthetic BIOS sets up before INT 19h, done on the host."""
from __future__ import annotations

import struct

from hv.devices import bios_common as B
from hv.devices.bios_synthetic import (DPT_OFFSET, HC_VECTOR, IRQ0_STUB, ROM_BASE,
                                    stub_entry)
from hv.hypercall import HypercallContext

PIC_MASTER_BASE, PIC_SLAVE_BASE = 0x08, 0x70


def _program_pics(m) -> None:
    # The same ICW sequence the emulated BIOS sends, written through the device model.
    for cmd, data, base, icw3 in ((0x20, 0x21, PIC_MASTER_BASE, 0x04),
                                  (0xA0, 0xA1, PIC_SLAVE_BASE, 0x02)):
        m.ports.host_write(cmd, 1, 0x11)       # ICW1: edge, cascade, ICW4 needed
        m.ports.host_write(data, 1, base)      # ICW2: vector base
        m.ports.host_write(data, 1, icw3)      # ICW3: cascade wiring on IR2
        m.ports.host_write(data, 1, 0x01)      # ICW4: 8086 mode, normal EOI
    m.ports.host_write(0x21, 1, 0xF8)          # unmask IRQ 0 (timer), 1 (keyboard), 2 (cascade)
    m.ports.host_write(0xA1, 1, 0xFF)


def _program_pit(m) -> None:
    m.ports.host_write(0x43, 1, 0x36)          # channel 0, lobyte/hibyte, mode 3
    m.ports.host_write(0x40, 1, 0x00)          # count 0 = 65536: 18.2 Hz
    m.ports.host_write(0x40, 1, 0x00)


def _init_keyboard(m) -> None:
    # Command byte with IRQ 1 off, then on: a scancode that arrived before the
    # PIC was programmed raises a fresh edge instead of sitting unseen.
    for value in (0x44, 0x45):            # system flag, set-1 translation (+ IRQ 1 on)
        m.ports.host_write(0x64, 1, 0x60)      # write command byte
        m.ports.host_write(0x60, 1, value)


CMOS_SHUTDOWN = 0x0F             # why the CPU was reset (AT BIOS convention)
SHUTDOWN_EOI_JUMP = 0x05          # flush the keyboard, EOI the PICs, jump via 0040:0067
SHUTDOWN_JUMP = 0x0A              # jump via 0040:0067, nothing else
RESUME_VECTOR = 0x467             # far pointer (offset, segment) for the two above
CMOS_EQUIPMENT = 0x14
EQUIP_FLOPPY, EQUIP_FPU, EQUIP_VIDEO_80X25_COLOUR = 0x0001, 0x0002, 0x0020
EQUIP_SERIAL_SHIFT = 9
EBDA_KIB = 2                  # as bios_common.EBDA_BASE: the last 2 KiB below 640 KiB
FDPT_OFFSETS = (0x3D, 0x4D)      # hard disk parameter tables in the EBDA (as SeaBIOS)
FDPT_VECTORS = (0x41, 0x46)
HD_CONTROL = 0x476                # control byte: > 8 heads
HD_CONTROL_MANY_HEADS = 0x08
LPT_TIMEOUTS, COM_TIMEOUTS = 0x478, 0x47C
LPT_TIMEOUT, COM_TIMEOUT = 0x14, 0x01
VIDEO_PARAMS_VECTOR = 0x1D
FONT_VECTORS = {0x1F: 0x2400, 0x43: 0x2000}   # INT 1Fh: chars 128-255; INT 43h: all 8x8
FONT8X8_LOW_OFFSET = 0xFA6E       # the AT's 8x8 font location, kept for hard-coded users


def _install_rom_tables(mem) -> None:
    """Tables the ROM image does not carry: fonts and the configuration table."""
    from hv.devices.bios_synthetic import system, video
    from hv.devices.vga_font import FONT8X16, FONT8X8
    mem.write(ROM_BASE + video.FONT8X8_OFFSET, FONT8X8)
    mem.write(ROM_BASE + video.FONT8X16_OFFSET, FONT8X16)
    mem.write(ROM_BASE + FONT8X8_LOW_OFFSET, FONT8X8[:128 * 8])
    mem.write(ROM_BASE + system.CONFIG_TABLE_OFFSET, system.CONFIG_TABLE)


def _fdpt(disk) -> bytes:
    """A 16-byte fixed disk parameter table (INT 41h/46h) for the disk's CHS geometry."""
    g = disk.geometry
    cyls = min(g.cylinders, 1024)
    control = HD_CONTROL_MANY_HEADS if g.heads > 8 else 0
    return struct.pack("<HBHHBBBBBHBB", cyls, g.heads, 0, 0xFFFF, 0, control, 0, 0, 0,
                       cyls, g.sectors, 0)


def _resume_after_shutdown(ctx: HypercallContext) -> bool:
    """A program that reset the CPU to leave protected mode (CMOS 0Fh = 05h/0Ah)
    gets control back at 0040:0067 with memory untouched."""
    from hv.devices.bios_synthetic import system
    m, regs = ctx.machine, ctx.regs
    reason = system.cmos_read(m, CMOS_SHUTDOWN)
    if reason not in (SHUTDOWN_EOI_JUMP, SHUTDOWN_JUMP):
        return False
    system.cmos_write(m, CMOS_SHUTDOWN, 0)
    if reason == SHUTDOWN_EOI_JUMP:
        _program_pics(m)
        m.ports.host_write(0xA0, 1, 0x20)
        m.ports.host_write(0x20, 1, 0x20)
    off, seg = m.mem.u16(RESUME_VECTOR), m.mem.u16(RESUME_VECTOR + 2)
    regs.cs = seg
    regs.eip = off
    return True


def post(ctx: HypercallContext) -> None:
    m = ctx.machine
    mem = m.mem
    if _resume_after_shutdown(ctx):
        return
    from hv.devices.bios_synthetic import keytable, system, video
    m.bios_state.clear()
    soft_reset = mem.u16(B.RESET_FLAG)
    system.cmos_write(m, CMOS_SHUTDOWN, 0)
    _install_rom_tables(mem)
    # IVT: every vector to its stub; IRQ 0 to the stub that chains INT 1Ch.
    ivt = bytearray()
    for v in range(256):
        ivt += struct.pack("<HH", stub_entry(v), 0xF000)
    struct.pack_into("<HH", ivt, 0x08 * 4, IRQ0_STUB, 0xF000)
    struct.pack_into("<HH", ivt, 0x1E * 4, DPT_OFFSET, 0xF000)
    struct.pack_into("<HH", ivt, VIDEO_PARAMS_VECTOR * 4, 0, 0)
    for vec, off in FONT_VECTORS.items():
        struct.pack_into("<HH", ivt, vec * 4, off, 0xF000)
    for vec in range(0x60, 0x68):     # user interrupts: free for programs, null as on the AT
        struct.pack_into("<HH", ivt, vec * 4, 0, 0)
    mem.write(0, bytes(ivt))
    # BIOS data area and EBDA.
    mem.write(B.BDA, bytes(0x100))
    mem.write(B.EBDA_BASE, bytes(EBDA_KIB * 1024))
    mem.put8(B.EBDA_BASE, EBDA_KIB)
    mem.put16(B.COM1_BASE, 0x3F8)
    mem.put8(COM_TIMEOUTS, COM_TIMEOUT)
    mem.put8(LPT_TIMEOUTS, LPT_TIMEOUT)
    floppies = len(m.disks.floppies())
    equipment = EQUIP_VIDEO_80X25_COLOUR | (1 << EQUIP_SERIAL_SHIFT)
    if system.cmos_read(m, CMOS_EQUIPMENT) & EQUIP_FPU:
        equipment |= EQUIP_FPU
    if floppies:
        equipment |= EQUIP_FLOPPY | ((floppies - 1) << 6)
    mem.put16(B.EQUIPMENT, equipment)
    mem.put16(B.MEMORY_KB, B.base_memory_kb(m.mem.size))
    mem.put16(B.EBDA_SEGMENT, B.EBDA_BASE >> 4)
    mem.put16(B.KBD_HEAD, 0x1E)
    mem.put16(B.KBD_TAIL, 0x1E)
    mem.put16(B.KBD_BUFFER_START, 0x1E)
    mem.put16(B.KBD_BUFFER_STOP, 0x3E)
    mem.put8(B.KBD_FLAGS3, keytable.KF2_101KBD)
    hard_disks = m.disks.hard_disks()
    mem.put8(B.HD_COUNT, len(hard_disks))
    for disk, off, vec in zip(hard_disks, FDPT_OFFSETS, FDPT_VECTORS):
        mem.write(B.EBDA_BASE + off, _fdpt(disk))
        mem.put16(vec * 4, off)
        mem.put16(vec * 4 + 2, B.EBDA_BASE >> 4)
        if vec == FDPT_VECTORS[0]:
            mem.put8(HD_CONTROL, _fdpt(disk)[8])
    if soft_reset == keytable.SOFT_RESET_WARM:
        mem.put16(B.RESET_FLAG, soft_reset)
    mem.put32(B.TICKS, 0)
    _program_pics(m)
    _program_pit(m)
    _init_keyboard(m)
    system.set_ticks_from_rtc(m)
    mem.put8(video.VIDEO_CTL, video.VIDEO_CTL_DEFAULT)
    video.set_mode(m, 0x03)
    video.banner(m)


def default_vector(ctx: HypercallContext) -> None:
    """A vector with no service: hardware IRQs get their EOI, the rest just return."""
    vector = ctx.number - HC_VECTOR
    m = ctx.machine
    if 0x70 <= vector <= 0x77:
        m.ports.host_write(0xA0, 1, 0x20)
        m.ports.host_write(0x20, 1, 0x20)
    elif 0x08 <= vector <= 0x0F:
        m.ports.host_write(0x20, 1, 0x20)
