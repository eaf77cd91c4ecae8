"""INT 11h, 12h, 15h, 1Ah and the IRQ 0 tick, on the host."""
from __future__ import annotations

import struct

from hv.devices import bios_common as B
from hv.devices.base import write_ram
from hv.hypercall import BLOCK, HypercallContext
from hv.memory import GuestMemoryError

PIC1_COMMAND, EOI = 0x20, 0x20
CMOS_INDEX, CMOS_DATA = 0x70, 0x71
# MC146818 registers
RTC_SECONDS, RTC_MINUTES, RTC_HOURS = 0x00, 0x02, 0x04
RTC_DAY, RTC_MONTH, RTC_YEAR, RTC_CENTURY = 0x07, 0x08, 0x09, 0x32
RTC_A, RTC_B = 0x0A, 0x0B
RTC_A_UIP = 0x80
RTC_B_DSE, RTC_B_24H, RTC_B_KEEP = 0x01, 0x02, 0x60   # keep PIE/AIE... as SeaBIOS: 0x60
UIP_POLLS = 10_000               # the update lasts 244 us; a few host reads outlast it

SMAP = 0x534D4150                # 'SMAP'
E820_ENTRY = 20
RET_EUNSUPPORTED = 0x86
PORT92 = 0x92
PORT92_A20 = 0x02
A20_SUPPORT = 0x0003             # INT 15h AX=2403h: keyboard controller and port 92h
CONFIG_TABLE_OFFSET = 0xE6F5     # F000:E6F5, where the IBM AT keeps it
# size, model FCh (AT), submodel, BIOS revision, feature bytes 1-5:
# feature 1: second 8259 (bit 6), RTC (bit 5); feature 2: INT 16h AH=09h (bit 6)
CONFIG_TABLE = struct.pack("<HBBBBBBBB", 8, 0xFC, 0x00, 0x01, 0x60, 0x40, 0x00, 0x00, 0x00)
E801_LOW_LIMIT = 0x3C00          # KiB between 1 MiB and 16 MiB
SIXTEEN_MB = 16 << 20


# --------------------------------------------------------------- CMOS through its ports

def cmos_read(m, reg: int) -> int:
    m.ports.host_write(CMOS_INDEX, 1, reg)
    return m.ports.host_read(CMOS_DATA, 1) & 0xFF


def cmos_write(m, reg: int, value: int) -> None:
    m.ports.host_write(CMOS_INDEX, 1, reg)
    m.ports.host_write(CMOS_DATA, 1, value & 0xFF)


def _wait_rtc_update(m) -> bool:
    """True once the RTC is not in its update cycle (SeaBIOS rtc_updating)."""
    for _ in range(UIP_POLLS):
        if not cmos_read(m, RTC_A) & RTC_A_UIP:
            return True
    return False


def _from_bcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0x0F)


def set_ticks_from_rtc(m) -> None:
    """POST seeds the tick count from the RTC's time of day, as a PC BIOS does."""
    _wait_rtc_update(m)
    secs = (_from_bcd(cmos_read(m, RTC_HOURS) & 0x3F) * 3600
            + _from_bcd(cmos_read(m, RTC_MINUTES)) * 60 + _from_bcd(cmos_read(m, RTC_SECONDS)))
    m.mem.put32(B.TICKS, (secs * B.TICKS_PER_DAY // 86400) % B.TICKS_PER_DAY)


# --------------------------------------------------------------- IRQ 0, INT 11h, 12h

DISKETTE_MOTOR_COUNT = 0x440


def irq0(ctx: HypercallContext) -> None:
    mem = ctx.mem
    ticks = mem.u32(B.TICKS) + 1
    if ticks >= B.TICKS_PER_DAY:
        ticks = 0
        mem.put8(B.MIDNIGHT, 1)
    mem.put32(B.TICKS, ticks)
    motor = mem.u8(DISKETTE_MOTOR_COUNT)
    if motor:                  # the floppy motors turn off when the count runs out
        mem.put8(DISKETTE_MOTOR_COUNT, motor - 1)
        if motor == 1:
            mem.put8(B.DISKETTE_MOTOR, mem.u8(B.DISKETTE_MOTOR) & 0xF0)
    ctx.machine.ports.host_write(PIC1_COMMAND, 1, EOI)


RTC_C = 0x0C
PIC2_COMMAND = 0xA0


def irq8(ctx: HypercallContext) -> None:
    """INT 70h: acknowledge the RTC by reading register C (it holds IRQ 8 until read)."""
    m = ctx.machine
    cmos_read(m, RTC_C)
    m.ports.host_write(PIC2_COMMAND, 1, EOI)
    m.ports.host_write(PIC1_COMMAND, 1, EOI)


def int11(ctx):
    ctx.regs.ax = ctx.mem.u16(B.EQUIPMENT)


def int12(ctx):
    ctx.regs.ax = ctx.mem.u16(B.MEMORY_KB)


# --------------------------------------------------------------- INT 1Ah

def _success(ctx) -> None:
    ctx.set_cf(False)


def rtc_00(ctx):
    r, mem = ctx.regs, ctx.mem
    ticks = mem.u32(B.TICKS)
    r.cx, r.dx = ticks >> 16, ticks & 0xFFFF
    r.al = mem.u8(B.MIDNIGHT)
    mem.put8(B.MIDNIGHT, 0)
    _success(ctx)


def rtc_01(ctx):
    r, mem = ctx.regs, ctx.mem
    mem.put32(B.TICKS, (r.cx << 16) | r.dx)
    mem.put8(B.MIDNIGHT, 0)
    r.ah = 0
    _success(ctx)


def rtc_02(ctx):
    r, m = ctx.regs, ctx.machine
    if not _wait_rtc_update(m):
        ctx.set_cf(True)
        return
    r.dh = cmos_read(m, RTC_SECONDS)
    r.cl = cmos_read(m, RTC_MINUTES)
    r.ch = cmos_read(m, RTC_HOURS)
    r.dl = cmos_read(m, RTC_B) & RTC_B_DSE
    r.ah = 0
    r.al = r.ch
    _success(ctx)


def rtc_03(ctx):
    r, m = ctx.regs, ctx.machine
    _wait_rtc_update(m)
    cmos_write(m, RTC_SECONDS, r.dh)
    cmos_write(m, RTC_MINUTES, r.cl)
    cmos_write(m, RTC_HOURS, r.ch)
    b = (cmos_read(m, RTC_B) & RTC_B_KEEP) | RTC_B_24H | (r.dl & RTC_B_DSE)
    cmos_write(m, RTC_B, b)
    r.ah, r.al = 0, b
    _success(ctx)


def rtc_04(ctx):
    r, m = ctx.regs, ctx.machine
    if not _wait_rtc_update(m):
        ctx.set_cf(True)
        return
    r.ch = cmos_read(m, RTC_CENTURY)
    r.cl = cmos_read(m, RTC_YEAR)
    r.dh = cmos_read(m, RTC_MONTH)
    r.dl = cmos_read(m, RTC_DAY)
    r.ah = 0
    r.al = r.ch
    _success(ctx)


def rtc_05(ctx):
    r, m = ctx.regs, ctx.machine
    _wait_rtc_update(m)
    # Century first: the RTC model derives the full year from it; the day last,
    # so it is checked against the new month.
    cmos_write(m, RTC_CENTURY, r.ch)
    cmos_write(m, RTC_YEAR, r.cl)
    cmos_write(m, RTC_MONTH, r.dh)
    cmos_write(m, RTC_DAY, r.dl)
    b = cmos_read(m, RTC_B) & 0x7F          # SeaBIOS: clear SET
    cmos_write(m, RTC_B, b)
    r.ah, r.al = 0, b
    _success(ctx)


RTC_FUNCTIONS = {0x00: rtc_00, 0x01: rtc_01, 0x02: rtc_02, 0x03: rtc_03, 0x04: rtc_04,
                 0x05: rtc_05}


def int1a(ctx):
    fn = RTC_FUNCTIONS.get(ctx.regs.ah)
    if fn is None:
        ctx.set_cf(True)
    else:
        fn(ctx)


# --------------------------------------------------------------- INT 15h

def _fail(ctx, code: int = RET_EUNSUPPORTED) -> None:
    ctx.regs.ah = code
    ctx.set_cf(True)


def set_a20(m, enabled: bool) -> None:
    """Both gates (8042 output port and port 92h) to the same state, then the CPU."""
    out = m.kbd.output_port
    m.kbd.output_port = (out | PORT92_A20) if enabled else (out & ~PORT92_A20 & 0xFF)
    p92 = m.ports.host_read(PORT92, 1) & ~0x01              # never pulse the fast reset
    m.ports.host_write(PORT92, 1, (p92 | PORT92_A20) if enabled else (p92 & ~PORT92_A20))
    m.set_a20(enabled)


def a20_state(m) -> bool:
    pending = getattr(m.vcpu, "pending_a20", None)
    return bool(m.vcpu.a20 if pending is None else pending)


def sys_24(ctx):
    r, m = ctx.regs, ctx.machine
    al = r.al
    if al in (0x00, 0x01):
        set_a20(m, bool(al))
        r.ah = 0
        _success(ctx)
    elif al == 0x02:
        r.ah = 0
        r.al = 1 if a20_state(m) else 0
        _success(ctx)
    elif al == 0x03:
        r.ah = 0
        r.bx = A20_SUPPORT
        _success(ctx)
    else:
        _fail(ctx)


def sys_86(ctx):
    """Wait CX:DX microseconds with interrupts on: BLOCK in sti; hlt until the deadline,
    a do-nothing clock timer making sure the idle loop wakes up in time."""
    r, m = ctx.regs, ctx.machine
    now = m.clock.now()
    deadline = m.bios_state.get("int15_86_deadline")
    if deadline is None:
        us = (r.cx << 16) | r.dx
        if us == 0:                       # nothing to wait for: done, as a finished wait
            r.ah = 0
            _success(ctx)
            return None
        deadline = now + us * 1000
        m.bios_state["int15_86_deadline"] = deadline
        m.clock.at(deadline, lambda _now: None)
    if now < deadline:
        return BLOCK
    del m.bios_state["int15_86_deadline"]
    r.ah = 0
    _success(ctx)
    return None


def sys_87(ctx):
    """Copy CX words between the two descriptors of the GDT at ES:SI (physical addresses)."""
    r, mem = ctx.regs, ctx.mem
    gdt = (r.es << 4) + r.si

    def base(desc: int) -> int:
        raw = mem.read(gdt + desc, 8)
        return raw[2] | (raw[3] << 8) | (raw[4] << 16) | (raw[7] << 24)

    count = r.cx * 2
    try:
        src, dst = base(0x10), base(0x18)
        write_ram(mem, dst, mem.read(src, count))   # a move into ROM leaves the ROM as it was
    except GuestMemoryError:
        r.ah = 0x02            # exception interrupt: what a faulting move reports
        ctx.set_cf(True)
        return
    r.ah = 0
    ctx.set_cf(False)
    ctx.set_zf(True)


def sys_88(ctx):
    ctx.regs.ax = B.extended_memory_kb(ctx.mem.size)
    _success(ctx)


def sys_c0(ctx):
    r = ctx.regs
    r.es, r.bx = 0xF000, CONFIG_TABLE_OFFSET
    r.ah = 0
    _success(ctx)


def sys_e8(ctx):
    r, size = ctx.regs, ctx.mem.size
    if r.al == 0x20:
        return _e820(ctx)
    if r.al == 0x01:
        low = min(max(size - B.HIGH_BASE, 0) // 1024, E801_LOW_LIMIT)
        high = max(size - SIXTEEN_MB, 0) // 65536
        r.ax = r.cx = low
        r.bx = r.dx = min(high, 0xFFFF)
        _success(ctx)
        return None
    _fail(ctx)
    return None


def _e820(ctx):
    r, mem = ctx.regs, ctx.mem
    if r.edx != SMAP or r.ecx < E820_ENTRY:
        _fail(ctx)
        return
    entries = B.e820_map(mem.size)
    index = r.ebx
    if index >= len(entries):
        _fail(ctx)
        return
    base, length, kind = entries[index]
    try:
        write_ram(mem, (r.es << 4) + r.di, struct.pack("<QQI", base, length, kind))
    except GuestMemoryError:
        _fail(ctx)
        return
    r.ebx = 0 if index + 1 >= len(entries) else index + 1
    r.eax = SMAP
    r.ecx = E820_ENTRY
    _success(ctx)


def sys_success(ctx):
    ctx.regs.ah = 0
    _success(ctx)


SYS_FUNCTIONS = {0x24: sys_24, 0x86: sys_86, 0x87: sys_87, 0x88: sys_88, 0x90: sys_success,
                 0x91: sys_success, 0xC0: sys_c0, 0xE8: sys_e8}


def int15(ctx):
    fn = SYS_FUNCTIONS.get(ctx.regs.ah)
    if fn is None:
        _fail(ctx)
        return None
    return fn(ctx)


SERVICES = {0x08: irq0, 0x70: irq8, 0x11: int11, 0x12: int12, 0x15: int15, 0x1A: int1a}
