"""INT 10h video services on the host, writing VGA memory, the CRTC and the BDA."""
from __future__ import annotations

from devices import bios_common as B
from hv.hypercall import HypercallContext

TEXT_BASE = 0xB8000
GFX_BASE = 0xA0000
TEXT_PAGE_SIZE = 0x1000
COLS, ROWS = 80, 25
DEFAULT_ATTR = 0x07


def _crtc(m, index: int, value: int) -> None:
    m.vga.write(0x14, 1, index)        # 0x3D4
    m.vga.write(0x15, 1, value)        # 0x3D5


def set_mode(m, mode: int, clear: bool = True) -> None:
    mem = m.mem
    mode &= 0x7F
    m.vga.set_mode(mode)
    graphics = mode == 0x13
    mem.put8(B.VIDEO_MODE, mode)
    mem.put16(B.VIDEO_COLUMNS, 40 if graphics else COLS)
    mem.put16(B.VIDEO_PAGE_SIZE, 0xFA00 if graphics else TEXT_PAGE_SIZE)
    mem.put16(B.VIDEO_PAGE_OFFSET, 0)
    for page in range(8):
        mem.put16(B.CURSOR_POS + 2 * page, 0)
    mem.put16(B.CURSOR_SHAPE, 0x0607)
    mem.put8(B.ACTIVE_PAGE, 0)
    mem.put16(B.CRTC_BASE, 0x3D4)
    mem.put8(B.VIDEO_ROWS, ROWS - 1)
    mem.put16(B.CHAR_HEIGHT, 8 if graphics else 16)
    if clear:
        if graphics:
            mem.write(GFX_BASE, bytes(320 * 200))
        else:
            mem.write(TEXT_BASE, bytes([0x20, DEFAULT_ATTR]) * (0x8000 // 2))
    _sync_cursor(m)


def banner(m) -> None:
    write_string(m, "hv synthetic BIOS\r\n")


def _cursor(m, page: int) -> tuple[int, int]:
    pos = m.mem.u16(B.CURSOR_POS + 2 * (page & 7))
    return pos >> 8, pos & 0xFF


def _set_cursor(m, page: int, row: int, col: int) -> None:
    m.mem.put16(B.CURSOR_POS + 2 * (page & 7), (row << 8) | col)
    if page == m.mem.u8(B.ACTIVE_PAGE):
        _sync_cursor(m)


def _sync_cursor(m) -> None:
    page = m.mem.u8(B.ACTIVE_PAGE)
    row, col = _cursor(m, page)
    pos = page * TEXT_PAGE_SIZE // 2 + row * COLS + col
    _crtc(m, 0x0E, pos >> 8)
    _crtc(m, 0x0F, pos & 0xFF)


def _graphics(m) -> bool:
    return m.mem.u8(B.VIDEO_MODE) == 0x13


def _scroll_up(m, page: int, lines: int, top: int, left: int, bottom: int, right: int,
               attr: int) -> None:
    mem = m.mem
    base = TEXT_BASE + page * TEXT_PAGE_SIZE
    height = bottom - top + 1
    width = right - left + 1
    if lines == 0 or lines > height:
        lines = height
    for row in range(top, bottom + 1):
        src = row + lines
        dst = base + (row * COLS + left) * 2
        if src <= bottom:
            mem.write(dst, mem.read(base + (src * COLS + left) * 2, width * 2))
        else:
            mem.write(dst, bytes([0x20, attr]) * width)


def teletype(m, ch: int, page: int | None = None, color: int | None = None) -> None:
    page = m.mem.u8(B.ACTIVE_PAGE) if page is None else page & 7
    row, col = _cursor(m, page)
    if ch == 0x0D:
        col = 0
    elif ch == 0x0A:
        row += 1
    elif ch == 0x08:
        col = max(col - 1, 0)
    elif ch == 0x07:
        pass
    else:
        if not _graphics(m):
            m.mem.put8(TEXT_BASE + page * TEXT_PAGE_SIZE + (row * COLS + col) * 2, ch)
        col += 1
        if col >= COLS:
            col = 0
            row += 1
    if row >= ROWS:
        attr = m.mem.u8(TEXT_BASE + page * TEXT_PAGE_SIZE + ((ROWS - 1) * COLS) * 2 + 1)
        if not _graphics(m):
            _scroll_up(m, page, 1, 0, 0, ROWS - 1, COLS - 1, attr)
        row = ROWS - 1
    _set_cursor(m, page, row, col)


def write_string(m, text: str) -> None:
    for ch in text.encode("cp437", "replace"):
        teletype(m, ch)


def ah00(ctx: HypercallContext) -> None:
    al = ctx.regs.al
    set_mode(ctx.machine, al & 0x7F, clear=not al & 0x80)


def ah02(ctx: HypercallContext) -> None:
    r = ctx.regs
    _set_cursor(ctx.machine, r.bh, r.dh, r.dl)


def ah03(ctx: HypercallContext) -> None:
    r = ctx.regs
    row, col = _cursor(ctx.machine, r.bh)
    r.dx = (row << 8) | col
    r.cx = ctx.mem.u16(B.CURSOR_SHAPE)


def ah0e(ctx: HypercallContext) -> None:
    teletype(ctx.machine, ctx.regs.al)


def ah0f(ctx: HypercallContext) -> None:
    r, mem = ctx.regs, ctx.mem
    r.ax = (mem.u8(B.VIDEO_COLUMNS) << 8) | mem.u8(B.VIDEO_MODE)
    r.bh = mem.u8(B.ACTIVE_PAGE)


FUNCTIONS = {0x00: ah00, 0x02: ah02, 0x03: ah03, 0x0E: ah0e, 0x0F: ah0f}


def int10(ctx: HypercallContext) -> None:
    fn = FUNCTIONS.get(ctx.regs.ah)
    if fn is not None:
        fn(ctx)


SERVICES = {0x10: int10}
