"""IRQ 1 (INT 09h) and INT 16h on the host: scancodes in, BDA keyboard buffer out."""
from __future__ import annotations

from devices import bios_common as B
from hv.hypercall import BLOCK, HypercallContext


def _buffer_get(mem, remove: bool) -> int | None:
    head, tail = mem.u16(B.KBD_HEAD), mem.u16(B.KBD_TAIL)
    if head == tail:
        return None
    key = mem.u16(B.BDA + head)
    if remove:
        head += 2
        if head >= mem.u16(B.KBD_BUFFER_STOP):
            head = mem.u16(B.KBD_BUFFER_START)
        mem.put16(B.KBD_HEAD, head)
    return key


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


def irq1(ctx: HypercallContext) -> None:
    from devices.bios_synthetic import keytable
    m = ctx.machine
    code = m.ports.read(0x60, 1)
    keytable.handle_scancode(m.mem, code, m.bios_state)
    m.ports.write(0x20, 1, 0x20)


def ah00(ctx):
    key = _buffer_get(ctx.mem, remove=True)
    if key is None:
        return BLOCK
    ctx.regs.ax = key


def ah01(ctx):
    key = _buffer_get(ctx.mem, remove=False)
    ctx.set_zf(key is None)
    if key is not None:
        ctx.regs.ax = key


FUNCTIONS = {0x00: ah00, 0x01: ah01}


def int16(ctx: HypercallContext):
    fn = FUNCTIONS.get(ctx.regs.ah)
    if fn is not None:
        return fn(ctx)


SERVICES = {0x09: irq1, 0x16: int16}
