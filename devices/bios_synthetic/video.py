"""INT 10h video services on the host, writing VGA memory, the CRTC and the BDA.

Text modes 02h/03h (80x25, 8 pages of 4 KiB at B800:0000) and mode 13h
(320x200x256 at A000:0000, 40x25 character cells of 8x8 pixels drawn from
``vga_font.FONT8X8``). Semantics follow SeaBIOS vgasrc and Ralf Brown's list;
where they differ (the blank line a teletype scroll inserts) the IBM BIOS wins:
the new line takes the attribute of the cell under the cursor.
"""
from __future__ import annotations

from hv.devices import bios_common as B
from hv.devices.vga_font import FONT8X8
from hv.hypercall import HypercallContext

TEXT_BASE = 0xB8000
GFX_BASE = 0xA0000
TEXT_PAGE_SIZE = 0x1000        # 80x25x2 rounded up to 4 KiB, as every CGA/VGA BIOS
TEXT_PAGES = 8
GFX_PAGE_SIZE = 0xFA00         # 320x200 bytes
COLS, ROWS = 80, 25
GFX_WIDTH, GFX_HEIGHT = 320, 200
GFX_COLS = GFX_WIDTH // 8
GLYPH = 8                      # mode 13h character cells are 8x8
DEFAULT_ATTR = 0x07            # light grey on black
TEXT_MODES = (0x02, 0x03)
GFX_MODE = 0x13
DONT_CLEAR = 0x80

# CRTC registers (port 0x3D4 index)
CR_CURSOR_START, CR_CURSOR_END = 0x0A, 0x0B
CR_START_HIGH, CR_START_LOW = 0x0C, 0x0D
CR_CURSOR_HIGH, CR_CURSOR_LOW = 0x0E, 0x0F

# BDA 0x465 (CGA mode control register image) per mode, as the IBM tables give it.
CRT_MODE_VALUE = {0x02: 0x2D, 0x03: 0x29, 0x13: 0x09}
VIDEO_CTL = 0x487              # bit 7: the last mode set kept video memory
VIDEO_SWITCHES = 0x488
MODESET_CTL = 0x489
VIDEO_CTL_DEFAULT = 0x60       # 256K of video memory, cursor emulation on
SWITCHES_DEFAULT = 0xF9        # EGA/VGA switches: colour display, as SeaBIOS
MODESET_DEFAULT = 0x51         # VGA active, 400 scan lines, default palette loading


def _crtc(m, index: int, value: int) -> None:
    m.vga.write(0x14, 1, index)        # 0x3D4
    m.vga.write(0x15, 1, value & 0xFF)  # 0x3D5


def _graphics(m) -> bool:
    return m.mem.u8(B.VIDEO_MODE) == GFX_MODE


def _cols(m) -> int:
    return GFX_COLS if _graphics(m) else COLS


def _page_size(m) -> int:
    return GFX_PAGE_SIZE if _graphics(m) else TEXT_PAGE_SIZE


def _page_base(m, page: int) -> int:
    return TEXT_BASE + (page & 7) * TEXT_PAGE_SIZE


# --------------------------------------------------------------- mode and cursor

def set_mode(m, mode: int, clear: bool = True) -> bool:
    """INT 10h AH=00h. Returns False (nothing changed) for a mode we do not have."""
    mem = m.mem
    mode &= 0x7F
    if mode not in CRT_MODE_VALUE:
        return False
    m.vga.set_mode(mode if clear else mode | DONT_CLEAR)
    graphics = mode == GFX_MODE
    mem.put8(B.VIDEO_MODE, mode)
    mem.put16(B.VIDEO_COLUMNS, GFX_COLS if graphics else COLS)
    mem.put16(B.VIDEO_PAGE_SIZE, GFX_PAGE_SIZE if graphics else TEXT_PAGE_SIZE)
    mem.put16(B.VIDEO_PAGE_OFFSET, 0)
    for page in range(8):
        mem.put16(B.CURSOR_POS + 2 * page, 0)
    mem.put8(B.ACTIVE_PAGE, 0)
    mem.put16(B.CRTC_BASE, 0x3D4)
    mem.put8(B.CRT_MODE_REG, CRT_MODE_VALUE[mode])
    mem.put8(B.CRT_PALETTE, 0x3F if graphics else 0x30)
    mem.put8(B.VIDEO_ROWS, ROWS - 1)
    mem.put16(B.CHAR_HEIGHT, GLYPH if graphics else 16)
    ctl = mem.u8(VIDEO_CTL) or VIDEO_CTL_DEFAULT
    mem.put8(VIDEO_CTL, (ctl & 0x7F) | (0 if clear else DONT_CLEAR))
    mem.put8(VIDEO_SWITCHES, SWITCHES_DEFAULT)
    mem.put8(MODESET_CTL, MODESET_DEFAULT)
    if clear:
        if graphics:
            mem.write(GFX_BASE, bytes(GFX_WIDTH * GFX_HEIGHT))
        else:
            mem.write(TEXT_BASE, bytes([0x20, DEFAULT_ATTR]) * (TEXT_PAGES * TEXT_PAGE_SIZE // 2))
    _crtc(m, CR_START_HIGH, 0)
    _crtc(m, CR_START_LOW, 0)
    set_cursor_shape(m, 0x0607)
    _sync_cursor(m)
    return True


def emulated_cursor_shape(cursor: int, char_height: int) -> int:
    """CGA cursor lines (0-7) scaled to the character height (SeaBIOS get_cursor_shape):
    programs written for 8-line cells keep a sensible cursor on 16-line VGA text."""
    start, end = (cursor >> 8) & 0x3F, cursor & 0x1F
    if char_height <= 8 or end >= 8 or start >= 0x20:
        return cursor
    if end != start + 1:
        start = (start + 1) * char_height // 8 - 1
    else:
        start = (end + 1) * char_height // 8 - 2
    end = (end + 1) * char_height // 8 - 1
    return (start << 8) | end


def set_cursor_shape(m, cursor: int) -> None:
    """INT 10h AH=01h: BDA 0x460 keeps what the caller asked for; the CRTC gets the
    shape scaled to the font unless VIDEO_CTL bit 0 turns emulation off."""
    cursor &= 0xFFFF
    m.mem.put16(B.CURSOR_SHAPE, cursor)
    shape = cursor
    if not m.mem.u8(VIDEO_CTL) & 0x01:
        shape = emulated_cursor_shape(cursor, m.mem.u8(B.CHAR_HEIGHT))
    _crtc(m, CR_CURSOR_START, shape >> 8)
    _crtc(m, CR_CURSOR_END, shape & 0xFF)


def banner(m) -> None:
    write_string(m, "hv synthetic BIOS\r\n")


def _cursor(m, page: int) -> tuple[int, int]:
    pos = m.mem.u16(B.CURSOR_POS + 2 * (page & 7))
    return pos >> 8, pos & 0xFF


def _set_cursor(m, page: int, row: int, col: int) -> None:
    page &= 7
    m.mem.put16(B.CURSOR_POS + 2 * page, ((row & 0xFF) << 8) | (col & 0xFF))
    if page == m.mem.u8(B.ACTIVE_PAGE):
        _sync_cursor(m)


def _sync_cursor(m) -> None:
    page = m.mem.u8(B.ACTIVE_PAGE) & 7
    row, col = _cursor(m, page)
    pos = (m.mem.u16(B.VIDEO_PAGE_OFFSET) // 2 + row * _cols(m) + col) & 0xFFFF
    _crtc(m, CR_CURSOR_HIGH, pos >> 8)
    _crtc(m, CR_CURSOR_LOW, pos & 0xFF)


def set_active_page(m, page: int) -> None:
    """INT 10h AH=05h: the CRTC start address moves to the page; its cursor shows."""
    if _graphics(m) or page > 7:
        return                 # mode 13h has one page; SeaBIOS ignores bad pages too
    offset = page * TEXT_PAGE_SIZE
    m.mem.put8(B.ACTIVE_PAGE, page)
    m.mem.put16(B.VIDEO_PAGE_OFFSET, offset)
    start = offset // 2        # the CRTC counts character cells (words)
    _crtc(m, CR_START_HIGH, start >> 8)
    _crtc(m, CR_START_LOW, start & 0xFF)
    _sync_cursor(m)


# --------------------------------------------------------------- cells

def _gfx_draw(m, row: int, col: int, ch: int, colour: int) -> None:
    """One 8x8 glyph in mode 13h: set pixels get the colour, the rest colour 0
    (SeaBIOS gfx_write_char for 8-bit modes, where bit 7 does not mean XOR)."""
    if not (0 <= row < ROWS and 0 <= col < GFX_COLS):
        return
    glyph = FONT8X8[ch * 8:ch * 8 + 8]
    base = GFX_BASE + row * GLYPH * GFX_WIDTH + col * 8
    for y, bits in enumerate(glyph):
        line = bytes(colour if bits & (0x80 >> x) else 0 for x in range(8))
        m.mem.write(base + y * GFX_WIDTH, line)


def _gfx_read_char(m, row: int, col: int) -> int:
    """The character whose glyph matches the cell's lit pixels (0 if none)."""
    if not (0 <= row < ROWS and 0 <= col < GFX_COLS):
        return 0
    base = GFX_BASE + row * GLYPH * GFX_WIDTH + col * 8
    pattern = bytes(
        sum(0x80 >> x for x, p in enumerate(m.mem.read(base + y * GFX_WIDTH, 8)) if p)
        for y in range(GLYPH))
    for ch in range(256):
        if FONT8X8[ch * 8:ch * 8 + 8] == pattern:
            return ch
    return 0


def _put_cell(m, page: int, row: int, col: int, ch: int, attr: int | None) -> None:
    """Write one character (and its attribute unless ``attr`` is None)."""
    if _graphics(m):
        _gfx_draw(m, row, col, ch, DEFAULT_ATTR if attr is None else attr)
        return
    if not (0 <= row < ROWS and 0 <= col < COLS):
        return
    addr = _page_base(m, page) + (row * COLS + col) * 2
    if attr is None:
        m.mem.put8(addr, ch)
    else:
        m.mem.write(addr, bytes([ch & 0xFF, attr & 0xFF]))


def _get_cell(m, page: int, row: int, col: int) -> tuple[int, int]:
    if _graphics(m):
        return _gfx_read_char(m, row, col), 0
    row, col = min(row, ROWS - 1), min(col, COLS - 1)
    addr = _page_base(m, page) + (row * COLS + col) * 2
    return m.mem.u8(addr), m.mem.u8(addr + 1)


def scroll(m, page: int, lines: int, top: int, left: int, bottom: int, right: int,
           attr: int, up: bool = True) -> None:
    """Scroll a window up (AH=06h) or down (AH=07h); 0 lines or more lines than the
    window holds clears it. Out-of-screen corners are clipped as SeaBIOS does."""
    cols = _cols(m)
    bottom, right = min(bottom, ROWS - 1), min(right, cols - 1)
    if top > bottom or left > right:
        return
    height, width = bottom - top + 1, right - left + 1
    if lines == 0 or lines > height:
        lines = height
    order = range(top, bottom + 1) if up else range(bottom, top - 1, -1)
    for row in order:
        src = row + lines if up else row - lines
        inside = top <= src <= bottom
        if _graphics(m):
            _gfx_copy_row(m, src if inside else None, row, left, width, attr)
            continue
        base = _page_base(m, page)
        dst = base + (row * COLS + left) * 2
        if inside:
            m.mem.write(dst, m.mem.read(base + (src * COLS + left) * 2, width * 2))
        else:
            m.mem.write(dst, bytes([0x20, attr & 0xFF]) * width)


def _gfx_copy_row(m, src: int | None, dst: int, left: int, width: int, colour: int) -> None:
    for y in range(GLYPH):
        d = GFX_BASE + (dst * GLYPH + y) * GFX_WIDTH + left * 8
        if src is None:
            m.mem.write(d, bytes([colour & 0xFF]) * (width * 8))
        else:
            s = GFX_BASE + (src * GLYPH + y) * GFX_WIDTH + left * 8
            m.mem.write(d, m.mem.read(s, width * 8))


def teletype(m, ch: int, page: int | None = None, color: int | None = None,
             attr: int | None = None, cursor: tuple[int, int] | None = None
             ) -> tuple[int, int]:
    """INT 10h AH=0Eh on ``page`` (default: the active one). ``color`` is the mode
    13h foreground; ``attr`` (AH=13h modes 0/1) also sets the text attribute.
    Starts at ``cursor`` if given; returns the new (row, col) and stores it."""
    page = m.mem.u8(B.ACTIVE_PAGE) if page is None else page & 7
    graphics = _graphics(m)
    cols = _cols(m)
    row, col = _cursor(m, page) if cursor is None else cursor
    if ch == 0x0D:
        col = 0
    elif ch == 0x0A:
        row += 1
    elif ch == 0x08:
        col = max(col - 1, 0)
    elif ch == 0x07:
        pass                   # BEL: no speaker here
    else:
        if graphics:
            _put_cell(m, page, row, col, ch, (color if color is not None else
                                              attr if attr is not None else DEFAULT_ATTR))
        else:
            _put_cell(m, page, row, col, ch, attr)
        col += 1
    if col >= cols:
        col = 0
        row += 1
    if row >= ROWS:
        row = ROWS - 1
        if graphics:
            fill = 0
        else:
            fill = _get_cell(m, page, row, min(col, cols - 1))[1]
        scroll(m, page, 1, 0, 0, ROWS - 1, cols - 1, fill)
    _set_cursor(m, page, row, col)
    return row, col


def write_string(m, text: str) -> None:
    for ch in text.encode("cp437", "replace"):
        teletype(m, ch)


# --------------------------------------------------------------- INT 10h functions

def ah00(ctx: HypercallContext) -> None:
    al = ctx.regs.al
    if set_mode(ctx.machine, al & 0x7F, clear=not al & DONT_CLEAR):
        # SeaBIOS returns AL = 30h (text) / 20h (mode 6) / 3Fh (others)
        ctx.regs.al = 0x30 if (al & 0x7F) in TEXT_MODES else 0x20


def ah01(ctx: HypercallContext) -> None:
    set_cursor_shape(ctx.machine, ctx.regs.cx)


def ah02(ctx: HypercallContext) -> None:
    r = ctx.regs
    _set_cursor(ctx.machine, r.bh, r.dh, r.dl)


def ah03(ctx: HypercallContext) -> None:
    r = ctx.regs
    row, col = _cursor(ctx.machine, r.bh)
    r.dx = (row << 8) | col
    r.cx = ctx.mem.u16(B.CURSOR_SHAPE)
    r.ax = 0


def ah05(ctx: HypercallContext) -> None:
    set_active_page(ctx.machine, ctx.regs.al)


def _scroll_regs(ctx: HypercallContext, up: bool) -> None:
    r, m = ctx.regs, ctx.machine
    scroll(m, m.mem.u8(B.ACTIVE_PAGE), r.al, r.ch, r.cl, r.dh, r.dl, r.bh, up)


def ah06(ctx: HypercallContext) -> None:
    _scroll_regs(ctx, up=True)


def ah07(ctx: HypercallContext) -> None:
    _scroll_regs(ctx, up=False)


def ah08(ctx: HypercallContext) -> None:
    r = ctx.regs
    m = ctx.machine
    row, col = _cursor(m, r.bh)
    ch, attr = _get_cell(m, r.bh, row, col)
    r.ax = (attr << 8) | ch


def _write_repeated(ctx: HypercallContext, with_attr: bool) -> None:
    """AH=09h/0Ah: CX copies from the cursor on, continuing on the next rows,
    the cursor itself stays (in graphics the colour is BL either way)."""
    r, m = ctx.regs, ctx.machine
    page = r.bh & 7
    row, col = _cursor(m, page)
    cols = _cols(m)
    ch, bl = r.al, r.bl
    start = row * cols + col
    count = min(r.cx, ROWS * cols - start) if start < ROWS * cols else 0
    if not _graphics(m) and with_attr and count > 0:
        addr = _page_base(m, page) + start * 2
        m.mem.write(addr, bytes([ch, bl]) * count)
        return
    for i in range(count):
        y, x = divmod(start + i, cols)
        _put_cell(m, page, y, x, ch, bl if (with_attr or _graphics(m)) else None)


def ah09(ctx: HypercallContext) -> None:
    _write_repeated(ctx, with_attr=True)


def ah0a(ctx: HypercallContext) -> None:
    _write_repeated(ctx, with_attr=False)


def ah0c(ctx: HypercallContext) -> None:
    """Write a pixel: AL colour, CX column, DX row (mode 13h)."""
    r, m = ctx.regs, ctx.machine
    if _graphics(m) and r.cx < GFX_WIDTH and r.dx < GFX_HEIGHT:
        # 8-bit modes: bit 7 is part of the colour, not the XOR flag of 16-colour modes
        m.mem.put8(GFX_BASE + r.dx * GFX_WIDTH + r.cx, r.al)


def ah0d(ctx: HypercallContext) -> None:
    r, m = ctx.regs, ctx.machine
    if _graphics(m) and r.cx < GFX_WIDTH and r.dx < GFX_HEIGHT:
        r.al = m.mem.u8(GFX_BASE + r.dx * GFX_WIDTH + r.cx)
    else:
        r.al = 0


def ah0e(ctx: HypercallContext) -> None:
    teletype(ctx.machine, ctx.regs.al, color=ctx.regs.bl)


def ah0f(ctx: HypercallContext) -> None:
    r, mem = ctx.regs, ctx.mem
    r.al = mem.u8(B.VIDEO_MODE) | (mem.u8(VIDEO_CTL) & DONT_CLEAR)
    r.ah = mem.u8(B.VIDEO_COLUMNS)
    r.bh = mem.u8(B.ACTIVE_PAGE)


def ah10(ctx: HypercallContext) -> None:
    """Palette: the DAC and attribute-controller subfunctions a boot program uses."""
    r, m = ctx.regs, ctx.machine
    vga = m.vga
    al = r.al
    if al == 0x00:             # set one palette register BL to BH
        vga.read(0x1A, 1)      # 0x3DA: reset the AR flip-flop
        vga.write(0x00, 1, r.bl & 0x1F)
        vga.write(0x00, 1, r.bh)
        vga.write(0x00, 1, 0x20)
    elif al == 0x10:           # set DAC register BX to DH, CH, CL
        vga.write(0x08, 1, r.bl)
        for v in (r.dh, r.ch, r.cl):
            vga.write(0x09, 1, v & 0x3F)
    elif al == 0x12:           # set CX DAC registers from BX from ES:DX
        vga.write(0x08, 1, r.bx & 0xFF)
        data = m.mem.read((r.es << 4) + r.dx, min(r.cx, 256) * 3)
        for v in data:
            vga.write(0x09, 1, v & 0x3F)
    elif al == 0x15:           # read DAC register BX -> DH, CH, CL
        vga.write(0x07, 1, r.bl)
        r.dh = vga.read(0x09, 1) & 0x3F
        r.ch = vga.read(0x09, 1) & 0x3F
        r.cl = vga.read(0x09, 1) & 0x3F


FONT8X8_OFFSET = 0x2000         # F000:2000, written into the ROM by POST
FONT8X16_OFFSET = 0x3000


def ah11(ctx: HypercallContext) -> None:
    """AX=1130h: font information (the only AH=11h call a boot program tends to make)."""
    r, mem = ctx.regs, ctx.mem
    if r.al != 0x30:
        return
    offset = {0x03: FONT8X8_OFFSET, 0x04: FONT8X8_OFFSET + 0x400,
              0x06: FONT8X16_OFFSET}.get(r.bh)
    if offset is None:
        vec = {0x00: 0x1F, 0x01: 0x43}.get(r.bh)
        if vec is None:
            offset = FONT8X16_OFFSET
        else:
            r.es, r.bp = mem.u16(vec * 4 + 2), mem.u16(vec * 4)
            offset = None
    if offset is not None:
        r.es, r.bp = 0xF000, offset
    r.cx = mem.u16(B.CHAR_HEIGHT)
    r.dl = mem.u8(B.VIDEO_ROWS)


def ah12(ctx: HypercallContext) -> None:
    r = ctx.regs
    if r.bl == 0x10:           # EGA information: colour, 256K, switches
        r.bx = 0x0003
        r.cx = ctx.mem.u8(VIDEO_SWITCHES) & 0x0F


def ah13(ctx: HypercallContext) -> None:
    """Write string: ES:BP, CX characters (AL bit 1: char/attribute pairs) at DH,DL
    of page BH with teletype rules; AL bit 0 leaves the cursor after the string."""
    r, m = ctx.regs, ctx.machine
    mode = r.al
    if mode > 3:
        return
    page = r.bh & 7
    old = _cursor(m, page)
    pos = old if r.dx == 0xFFFF else (r.dh, r.dl)   # DX=FFFFh: at the cursor (RBIL)
    addr = (r.es << 4) + r.bp
    attr = r.bl
    step = 2 if mode & 2 else 1
    for i in range(r.cx):
        try:
            ch = m.mem.u8(addr + i * step)
            if mode & 2:
                attr = m.mem.u8(addr + i * step + 1)
        except ValueError:
            break
        pos = teletype(m, ch, page=page, attr=attr, cursor=pos)
    if not mode & 1:
        _set_cursor(m, page, *old)


def ah1a(ctx: HypercallContext) -> None:
    r = ctx.regs
    if r.al == 0x00:           # display combination: VGA with colour analog display
        r.al = 0x1A
        r.bx = 0x0008


FUNCTIONS = {0x00: ah00, 0x01: ah01, 0x02: ah02, 0x03: ah03, 0x05: ah05, 0x06: ah06,
             0x07: ah07, 0x08: ah08, 0x09: ah09, 0x0A: ah0a, 0x0C: ah0c, 0x0D: ah0d,
             0x0E: ah0e, 0x0F: ah0f, 0x10: ah10, 0x11: ah11, 0x12: ah12, 0x13: ah13,
             0x1A: ah1a}


def int10(ctx: HypercallContext) -> None:
    fn = FUNCTIONS.get(ctx.regs.ah)
    if fn is not None:
        fn(ctx)


SERVICES = {0x10: int10}
