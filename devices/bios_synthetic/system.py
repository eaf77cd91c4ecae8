"""INT 11h, 12h, 15h, 1Ah and the IRQ 0 tick, on the host."""
from __future__ import annotations

from devices import bios_common as B
from hv.hypercall import HypercallContext


def set_ticks_from_rtc(m) -> None:
    """POST seeds the tick count from the RTC's time of day, as a PC BIOS does."""
    import time
    t = time.gmtime()
    secs = t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec
    m.mem.put32(B.TICKS, secs * B.TICKS_PER_DAY // 86400)


def irq0(ctx: HypercallContext) -> None:
    mem = ctx.mem
    ticks = mem.u32(B.TICKS) + 1
    if ticks >= B.TICKS_PER_DAY:
        ticks = 0
        mem.put8(B.MIDNIGHT, 1)
    mem.put32(B.TICKS, ticks)
    ctx.machine.ports.write(0x20, 1, 0x20)


def int11(ctx):
    ctx.regs.ax = ctx.mem.u16(B.EQUIPMENT)


def int12(ctx):
    ctx.regs.ax = ctx.mem.u16(B.MEMORY_KB)


def int1a(ctx):
    r, mem = ctx.regs, ctx.mem
    if r.ah == 0x00:
        ticks = mem.u32(B.TICKS)
        r.cx, r.dx = ticks >> 16, ticks & 0xFFFF
        r.al = mem.u8(B.MIDNIGHT)
        mem.put8(B.MIDNIGHT, 0)
        ctx.set_cf(False)
    else:
        ctx.set_cf(True)


def int15(ctx):
    ctx.regs.ah = 0x86
    ctx.set_cf(True)


SERVICES = {0x08: irq0, 0x11: int11, 0x12: int12, 0x15: int15, 0x1A: int1a}
