"""IRQ 1 (INT 09h) and INT 16h on the host: scancodes in, BDA keyboard buffer out."""
from __future__ import annotations

from hv.devices import bios_common as B
from hv.devices.bios_synthetic import keytable
from hv.hypercall import BLOCK, HypercallContext

KBD_DATA, KBD_STATUS = 0x60, 0x64
STATUS_OBF, STATUS_AUXB = 0x01, 0x20
PIC1_COMMAND, EOI = 0x20, 0x20
EXTENDED_ONLY_SCAN = 0x84        # scan codes above this exist only on 101-key keyboards
ASCII_EXTENDED, ASCII_FILL_IN = 0xE0, 0xF0
KEYPAD_SCAN = 0xE0               # keypad Enter and / store scan E0h
KBD_FUNCTIONALITY = 0x30         # INT 16h AH=09h: AH=0Ah and 10h-12h supported
KBD_ID = 0x41AB                  # MF2 keyboard through the 8042 translation


def _buffer_peek(mem) -> int | None:
    head, tail = mem.u16(B.KBD_HEAD), mem.u16(B.KBD_TAIL)
    if head == tail:
        return None
    return mem.u16(B.BDA + head)


def _buffer_drop(mem) -> None:
    head = mem.u16(B.KBD_HEAD) + 2
    if head >= mem.u16(B.KBD_BUFFER_STOP):
        head = mem.u16(B.KBD_BUFFER_START)
    mem.put16(B.KBD_HEAD, head)


def buffer_put(mem, key: int) -> bool:
    tail = mem.u16(B.KBD_TAIL)
    nxt = tail + 2
    if nxt >= mem.u16(B.KBD_BUFFER_STOP):
        nxt = mem.u16(B.KBD_BUFFER_START)
    if nxt == mem.u16(B.KBD_HEAD):
        return False          # full: a real BIOS beeps and drops the key
    mem.put16(B.BDA + tail, key)
    mem.put16(B.KBD_TAIL, nxt)
    return True


def compatible(key: int) -> int | None:
    """What AH=00h/01h return for a buffered key (IBM KIO_S_XLAT): keypad Enter and /
    get their old scan codes, grey keys lose ASCII E0h, enhanced-only keys vanish (None)."""
    scan, ascii_ = key >> 8, key & 0xFF
    if scan == KEYPAD_SCAN:
        return ((0x1C if ascii_ in (0x0D, 0x0A) else 0x35) << 8) | ascii_
    if scan > EXTENDED_ONLY_SCAN:
        return None
    if ascii_ == ASCII_FILL_IN:
        return key if scan == 0 else None
    if ascii_ == ASCII_EXTENDED and scan:
        return scan << 8
    return key


def extended(key: int) -> int:
    """What AH=10h/11h return: everything, fill-ins as ASCII 0 (IBM KIO_E_XLAT)."""
    if key & 0xFF == ASCII_FILL_IN and key >> 8:
        return key & 0xFF00
    return key


def _next_key(mem, enhanced: bool) -> int | None:
    """The next key the caller may see, dropping keys the old functions do not know."""
    while True:
        key = _buffer_peek(mem)
        if key is None:
            return None
        if enhanced:
            return extended(key)
        out = compatible(key)
        if out is not None:
            return out
        _buffer_drop(mem)


def irq1(ctx: HypercallContext) -> None:
    m = ctx.machine
    status = m.ports.host_read(KBD_STATUS, 1)
    if status & STATUS_OBF and not status & STATUS_AUXB:
        keytable.handle_scancode(m, m.ports.host_read(KBD_DATA, 1))
    m.ports.host_write(PIC1_COMMAND, 1, EOI)


def _read(ctx, enhanced: bool):
    key = _next_key(ctx.mem, enhanced)
    if key is None:
        return BLOCK
    _buffer_drop(ctx.mem)
    ctx.regs.ax = key


def _peek(ctx, enhanced: bool) -> None:
    key = _next_key(ctx.mem, enhanced)
    ctx.set_zf(key is None)
    if key is not None:
        ctx.regs.ax = key


def ah00(ctx):
    return _read(ctx, enhanced=False)


def ah01(ctx):
    _peek(ctx, enhanced=False)


def ah02(ctx):
    ctx.regs.al = ctx.mem.u8(B.KBD_FLAGS1)


def ah03(ctx):
    pass                      # typematic rate: the host keyboard repeats by itself


def ah05(ctx):
    ctx.regs.al = 0 if buffer_put(ctx.mem, ctx.regs.cx) else 1


def ah09(ctx):
    ctx.regs.al = KBD_FUNCTIONALITY


def ah0a(ctx):
    ctx.regs.bx = KBD_ID


def ah10(ctx):
    return _read(ctx, enhanced=True)


def ah11(ctx):
    _peek(ctx, enhanced=True)


def ah12(ctx):
    """Extended shift flags: AL = 0x417; AH = keys held (RBIL INT 16h/AH=12h)."""
    mem = ctx.mem
    f1, f2 = mem.u8(B.KBD_FLAGS2), mem.u8(B.KBD_FLAGS3)
    ah = (f1 & (keytable.KF1_LCTRL | keytable.KF1_LALT | keytable.KF1_SCROLL
                | keytable.KF1_NUM | keytable.KF1_CAPS))
    ah |= f2 & (keytable.KF2_RCTRL | keytable.KF2_RALT)
    if f1 & keytable.KF1_SYSREQ:
        ah |= 0x80
    ctx.regs.al = mem.u8(B.KBD_FLAGS1)
    ctx.regs.ah = ah


def ah92(ctx):
    ctx.regs.ah = 0x80        # DOS KEYB: functions 10h-12h supported


FUNCTIONS = {0x00: ah00, 0x01: ah01, 0x02: ah02, 0x03: ah03, 0x05: ah05, 0x09: ah09,
             0x0A: ah0a, 0x10: ah10, 0x11: ah11, 0x12: ah12, 0x92: ah92}


def int16(ctx: HypercallContext):
    fn = FUNCTIONS.get(ctx.regs.ah)
    if fn is not None:
        return fn(ctx)


SERVICES = {0x09: irq1, 0x16: int16}
