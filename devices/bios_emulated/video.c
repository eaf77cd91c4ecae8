/* INT 10h: VGA text modes 02h/03h and mode 13h, programmed register by
 * register (no VGA option ROM is involved). Behaviour follows SeaBIOS's
 * vgabios: BDA fields, clearing with 0x0720, teletype scrolling. */
#include "bios.h"

#define VGA_AC_INDEX 0x3C0      /* index/data flip-flop, reset by reading INSTAT1 */
#define VGA_AC_READ 0x3C1
#define VGA_MISC_WRITE 0x3C2
#define VGA_SEQ_INDEX 0x3C4
#define VGA_SEQ_DATA 0x3C5
#define VGA_PEL_MASK 0x3C6
#define VGA_DAC_READ_INDEX 0x3C7
#define VGA_DAC_WRITE_INDEX 0x3C8
#define VGA_DAC_DATA 0x3C9
#define VGA_GC_INDEX 0x3CE
#define VGA_GC_DATA 0x3CF
#define VGA_CRTC_INDEX 0x3D4
#define VGA_CRTC_DATA 0x3D5
#define VGA_INSTAT1 0x3DA
#define AC_PAS 0x20             /* palette address source: video on */

enum { CRTC_CURSOR_START = 0x0A, CRTC_CURSOR_END = 0x0B, CRTC_START_HI = 0x0C,
       CRTC_START_LO = 0x0D, CRTC_CURSOR_HI = 0x0E, CRTC_CURSOR_LO = 0x0F,
       CRTC_VRETRACE_END = 0x11 };

#define TEXT_FB 0xB8000u
#define GFX_FB 0xA0000u
#define GFX_WIDTH 320u
#define GFX_HEIGHT 200u

struct vga_mode {
    u8 mode, gfx, cols, rows, cheight, msr;
    u16 pagesize;
    u8 misc, seq[5], crtc[25], gc[9], ac[21];
};

#define TEXT80_REGS \
    0x67, \
    { 0x03, 0x00, 0x03, 0x00, 0x02 }, \
    { 0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, \
      0x00, 0x00, 0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF }, \
    { 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF }, \
    { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, \
      0x3C, 0x3D, 0x3E, 0x3F, 0x0C, 0x00, 0x0F, 0x08, 0x00 }

static const struct vga_mode vga_modes[] = {
    { 0x02, 0, 80, 25, 16, 0x2D, 0x1000, TEXT80_REGS },
    { 0x03, 0, 80, 25, 16, 0x29, 0x1000, TEXT80_REGS },
    { 0x13, 1, 40, 25, 8, 0x09, 0x2000,
      0x63,
      { 0x03, 0x01, 0x0F, 0x00, 0x0E },
      { 0x5F, 0x4F, 0x50, 0x82, 0x54, 0x80, 0xBF, 0x1F, 0x00, 0x41, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x9C, 0x0E, 0x8F, 0x28, 0x40, 0x96, 0xB9, 0xA3, 0xFF },
      { 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0F, 0xFF },
      { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
        0x0C, 0x0D, 0x0E, 0x0F, 0x41, 0x00, 0x0F, 0x00, 0x00 } },
};

static const struct vga_mode *find_mode(u8 mode)
{
    for (u32 i = 0; i < sizeof(vga_modes) / sizeof(vga_modes[0]); i++)
        if (vga_modes[i].mode == mode)
            return &vga_modes[i];
    return 0;
}

static int is_gfx(void) { return BDA8(BDA_VIDEO_MODE) == 0x13; }
static u8 ncols(void) { return (u8)BDA16(BDA_VIDEO_COLS); }
static u8 nrows(void) { return (u8)(BDA8(BDA_VIDEO_ROWS) + 1); }

static void seq_write(u8 i, u8 v) { outb(i, VGA_SEQ_INDEX); outb(v, VGA_SEQ_DATA); }
static void gc_write(u8 i, u8 v) { outb(i, VGA_GC_INDEX); outb(v, VGA_GC_DATA); }
static void crtc_write(u8 i, u8 v) { outb(i, VGA_CRTC_INDEX); outb(v, VGA_CRTC_DATA); }
static void ac_write(u8 i, u8 v)
{
    inb(VGA_INSTAT1);
    outb(i, VGA_AC_INDEX);
    outb(v, VGA_AC_INDEX);
    outb(AC_PAS, VGA_AC_INDEX);
}

static void program_regs(const struct vga_mode *m)
{
    seq_write(0, 0x01);                     /* synchronous reset while changing clocks */
    outb(m->misc, VGA_MISC_WRITE);
    for (u8 i = 1; i < 5; i++)
        seq_write(i, m->seq[i]);
    seq_write(0, m->seq[0]);
    crtc_write(CRTC_VRETRACE_END, m->crtc[CRTC_VRETRACE_END] & 0x7F);   /* unlock 0-7 */
    for (u8 i = 0; i < 25; i++)
        crtc_write(i, m->crtc[i]);
    for (u8 i = 0; i < 9; i++)
        gc_write(i, m->gc[i]);
    inb(VGA_INSTAT1);
    for (u8 i = 0; i < 21; i++) {
        outb(i, VGA_AC_INDEX);
        outb(m->ac[i], VGA_AC_INDEX);
    }
    outb(AC_PAS, VGA_AC_INDEX);
}

static void dac_put(u8 r, u8 g, u8 b) { outb(r, VGA_DAC_DATA); outb(g, VGA_DAC_DATA); outb(b, VGA_DAC_DATA); }

/* The EGA 64-colour palette: index bits 5-0 = r' g' b' R G B. */
static void dac_ega(u8 i)
{
    dac_put((u8)(((i >> 2) & 1) * 42 + ((i >> 5) & 1) * 21),
            (u8)(((i >> 1) & 1) * 42 + ((i >> 4) & 1) * 21),
            (u8)((i & 1) * 42 + ((i >> 3) & 1) * 21));
}

static const u8 cga_to_ega[16] = { 0, 1, 2, 3, 4, 5, 20, 7, 56, 57, 58, 59, 60, 61, 62, 63 };
static const u8 grey_ramp[16] = { 0, 5, 8, 11, 14, 17, 20, 24, 28, 32, 36, 40, 45, 50, 56, 63 };
/* The VGA default palette's 9 hue wheels (3 intensities x 3 saturations),
 * each 24 entries built from 5 levels (low .. high). */
static const u8 hue_levels[9][5] = {
    { 0, 16, 31, 47, 63 }, { 31, 39, 47, 55, 63 }, { 45, 49, 54, 58, 63 },
    { 0, 7, 14, 21, 28 }, { 14, 17, 21, 24, 28 }, { 20, 22, 24, 26, 28 },
    { 0, 4, 8, 12, 16 }, { 8, 10, 12, 14, 16 }, { 11, 12, 13, 15, 16 },
};

static void load_dac(int gfx)
{
    outb(0xFF, VGA_PEL_MASK);
    outb(0, VGA_DAC_WRITE_INDEX);
    if (!gfx) {
        for (u32 i = 0; i < 64; i++)
            dac_ega((u8)i);
        for (u32 i = 64; i < 256; i++)
            dac_put(0, 0, 0);
        return;
    }
    for (u32 i = 0; i < 16; i++)
        dac_ega(cga_to_ega[i]);
    for (u32 i = 0; i < 16; i++)
        dac_put(grey_ramp[i], grey_ramp[i], grey_ramp[i]);
    for (u32 w = 0; w < 9; w++) {
        const u8 *L = hue_levels[w];
        u8 lo = L[0], hi = L[4];
        for (u32 k = 0; k < 4; k++) dac_put(L[k], lo, hi);         /* blue -> magenta */
        for (u32 k = 0; k < 4; k++) dac_put(hi, lo, L[4 - k]);     /* magenta -> red */
        for (u32 k = 0; k < 4; k++) dac_put(hi, L[k], lo);         /* red -> yellow */
        for (u32 k = 0; k < 4; k++) dac_put(L[4 - k], hi, lo);     /* yellow -> green */
        for (u32 k = 0; k < 4; k++) dac_put(lo, hi, L[k]);         /* green -> cyan */
        for (u32 k = 0; k < 4; k++) dac_put(lo, L[4 - k], hi);     /* cyan -> blue */
    }
    for (u32 i = 248; i < 256; i++)
        dac_put(0, 0, 0);
}

/* Text modes draw characters from plane 2; without a VGA BIOS nobody else
 * puts a font there. */
static void load_text_font(void)
{
    seq_write(2, 0x04);     /* write plane 2 only */
    seq_write(4, 0x06);     /* sequential addressing */
    gc_write(4, 0x02);
    gc_write(5, 0x00);
    gc_write(6, 0x04);      /* A0000-AFFFF, no odd/even */
    for (u32 c = 0; c < 256; c++)
        memcpy((void *)(GFX_FB + c * 32), &font8x16[c * 16], 16);
    seq_write(2, 0x03);
    seq_write(4, 0x02);
    gc_write(4, 0x00);
    gc_write(5, 0x10);
    gc_write(6, 0x0E);
}

static void hw_cursor_update(void)
{
    if (is_gfx())
        return;
    u8 page = BDA8(BDA_VIDEO_PAGE);
    u16 pos = BDA16(BDA_CURSOR_POS + 2 * page);
    u16 addr = (u16)(BDA16(BDA_VIDEO_PAGESTART) / 2 + (pos >> 8) * ncols() + (pos & 0xFF));
    crtc_write(CRTC_CURSOR_HI, (u8)(addr >> 8));
    crtc_write(CRTC_CURSOR_LO, (u8)addr);
}

static void set_cursor_shape(u16 cx)
{
    BDA16(BDA_CURSOR_TYPE) = cx;
    u8 start = cx >> 8, end = cx & 0xFF;
    u8 ch = BDA8(BDA_CHAR_HEIGHT);
    /* CGA-style 0-7 shapes are scaled to the 16-line cell (SeaBIOS's rule). */
    if (ch > 8 && end < 8 && start < 0x20) {
        if (end != start + 1)
            start = (u8)((start + 1) * ch / 8 - 1);
        else
            start = (u8)((end + 1) * ch / 8 - 2);
        end = (u8)((end + 1) * ch / 8 - 1);
    }
    crtc_write(CRTC_CURSOR_START, start);
    crtc_write(CRTC_CURSOR_END, end);
}

static void set_cursor_pos(u8 page, u8 col, u8 row)
{
    if (page > 7)
        return;
    BDA16(BDA_CURSOR_POS + 2 * page) = (u16)(row << 8 | col);
    if (page == BDA8(BDA_VIDEO_PAGE))
        hw_cursor_update();
}

static void set_active_page(u8 page)
{
    if (page > 7)
        return;
    u16 start = (u16)(BDA16(BDA_VIDEO_PAGESIZE) * page);
    BDA8(BDA_VIDEO_PAGE) = page;
    BDA16(BDA_VIDEO_PAGESTART) = start;
    if (!is_gfx()) {
        crtc_write(CRTC_START_HI, (u8)(start / 2 >> 8));
        crtc_write(CRTC_START_LO, (u8)(start / 2));
    }
    hw_cursor_update();
}

void video_set_mode(u8 al)
{
    u8 mode = al & 0x7F, noclear = al & 0x80;
    const struct vga_mode *m = find_mode(mode);
    if (!m)
        return;
    program_regs(m);
    load_dac(m->gfx);
    if (!m->gfx)
        load_text_font();
    if (!noclear) {
        if (m->gfx)
            memset((void *)GFX_FB, 0, 0x10000);
        else
            for (u32 i = 0; i < 0x4000; i++)
                MEM16(TEXT_FB + 2 * i) = 0x0720;
    }
    BDA8(BDA_VIDEO_MODE) = mode;
    BDA16(BDA_VIDEO_COLS) = m->cols;
    BDA16(BDA_VIDEO_PAGESIZE) = m->pagesize;
    BDA16(BDA_CRTC_ADDR) = 0x3D4;
    BDA8(BDA_VIDEO_ROWS) = (u8)(m->rows - 1);
    BDA16(BDA_CHAR_HEIGHT) = m->cheight;
    BDA8(BDA_VIDEO_CTL) = (u8)(0x60 | noclear);
    BDA8(BDA_VIDEO_SWITCHES) = 0xF9;
    BDA8(BDA_MODESET_CTL) &= 0x7F;
    BDA8(BDA_VIDEO_MSR) = m->msr;
    BDA8(BDA_VIDEO_PAL) = 0x30;
    for (u32 i = 0; i < 8; i++)
        BDA16(BDA_CURSOR_POS + 2 * i) = 0;
    BDA16(BDA_VIDEO_PAGESTART) = 0;
    BDA8(BDA_VIDEO_PAGE) = 0;
    if (!m->gfx)
        set_cursor_shape(0x0607);
    set_active_page(0);
}

/* ---- character cells ---------------------------------------------------- */

static u32 text_cell(u8 page, u8 col, u8 row)
{
    return TEXT_FB + page * BDA16(BDA_VIDEO_PAGESIZE) + (row * ncols() + col) * 2u;
}

static u32 gfx_cell(u8 col, u8 row) { return GFX_FB + row * 8u * GFX_WIDTH + col * 8u; }

static void gfx_glyph(u8 col, u8 row, u8 ch, u8 color)
{
    if (col >= ncols() || row >= nrows())
        return;
    const u8 *g = &font8x8[ch * 8];
    u32 p = gfx_cell(col, row);
    for (u32 y = 0; y < 8; y++, p += GFX_WIDTH)
        for (u32 x = 0; x < 8; x++)
            MEM8(p + x) = (g[y] & (0x80 >> x)) ? color : 0;
}

static void write_chars(u8 page, u8 col, u8 row, u8 ch, u8 attr, int use_attr, u16 count)
{
    if (is_gfx()) {
        while (count-- && col < ncols())
            gfx_glyph(col++, row, ch, attr);
        return;
    }
    if (page > 7)
        return;
    u32 a = text_cell(page, col, row);
    u32 end = TEXT_FB + 0x8000;
    for (; count-- && a < end; a += 2) {
        MEM8(a) = ch;
        if (use_attr)
            MEM8(a + 1) = attr;
    }
}

static void copy_row(u8 page, u8 dst, u8 src, u8 c0, u8 c1)
{
    if (is_gfx()) {
        for (u32 y = 0; y < 8; y++)
            memmove((void *)(gfx_cell(c0, dst) + y * GFX_WIDTH),
                    (void *)(gfx_cell(c0, src) + y * GFX_WIDTH), (c1 - c0 + 1) * 8u);
        return;
    }
    memmove((void *)text_cell(page, c0, dst), (void *)text_cell(page, c0, src), (c1 - c0 + 1) * 2u);
}

static void clear_row(u8 page, u8 row, u8 c0, u8 c1, u8 attr)
{
    if (is_gfx()) {
        for (u32 y = 0; y < 8; y++)
            memset((void *)(gfx_cell(c0, row) + y * GFX_WIDTH), attr, (c1 - c0 + 1) * 8u);
        return;
    }
    u32 a = text_cell(page, c0, row);
    for (u32 c = c0; c <= c1; c++, a += 2)
        MEM16(a) = (u16)(attr << 8 | ' ');
}

static void scroll(u8 page, u8 lines, u8 attr, u8 r0, u8 c0, u8 r1, u8 c1, int up)
{
    if (is_gfx())
        page = 0;
    if (page > 7)
        return;
    if (r1 >= nrows())
        r1 = nrows() - 1;
    if (c1 >= ncols())
        c1 = ncols() - 1;
    if (r0 > r1 || c0 > c1)
        return;
    u8 h = (u8)(r1 - r0 + 1);
    if (lines == 0 || lines > h)
        lines = h;
    if (up) {
        for (u32 r = r0; r <= r1; r++)
            if (r + lines <= r1)
                copy_row(page, (u8)r, (u8)(r + lines), c0, c1);
            else
                clear_row(page, (u8)r, c0, c1, attr);
    } else {
        for (s32 r = r1; r >= r0; r--)
            if (r - lines >= r0)
                copy_row(page, (u8)r, (u8)(r - lines), c0, c1);
            else
                clear_row(page, (u8)r, c0, c1, attr);
    }
}

/* Teletype output at (*col, *row) of page: BEL, BS, CR, LF, TAB handled,
 * wrap and scroll (blank attribute 07h in text, colour 0 in graphics). */
static void teletype(u8 page, u8 *col, u8 *row, u8 ch, u8 attr, int use_attr)
{
    switch (ch) {
    case 7:
        break;
    case 8:
        if (*col > 0)
            (*col)--;
        break;
    case '\r':
        *col = 0;
        break;
    case '\n':
        (*row)++;
        break;
    case '\t':
        do
            teletype(page, col, row, ' ', attr, use_attr);
        while (*col % 8);
        return;
    default:
        write_chars(page, *col, *row, ch, attr, use_attr || is_gfx(), 1);
        (*col)++;
    }
    if (*col >= ncols()) {
        *col = 0;
        (*row)++;
    }
    if (*row >= nrows()) {
        *row = (u8)(nrows() - 1);
        scroll(page, 1, is_gfx() ? 0 : 0x07, 0, 0, (u8)(nrows() - 1), (u8)(ncols() - 1), 1);
    }
}

static void teletype_cursor(u8 page, u8 ch, u8 attr, int use_attr)
{
    if (page > 7)
        return;
    u16 pos = BDA16(BDA_CURSOR_POS + 2 * page);
    u8 col = pos & 0xFF, row = pos >> 8;
    teletype(page, &col, &row, ch, attr, use_attr);
    set_cursor_pos(page, col, row);
}

void video_puts(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            teletype_cursor(BDA8(BDA_VIDEO_PAGE), '\r', 0x07, 0);
        teletype_cursor(BDA8(BDA_VIDEO_PAGE), (u8)*s, 0x07, 0);
    }
}

static u16 read_char_attr(u8 page, u8 col, u8 row)
{
    if (!is_gfx()) {
        if (page > 7)
            return 0;
        return MEM16(text_cell(page, col, row));
    }
    u8 rows[8];
    u32 p = gfx_cell(col, row);
    for (u32 y = 0; y < 8; y++, p += GFX_WIDTH) {
        u8 bits = 0;
        for (u32 x = 0; x < 8; x++)
            if (MEM8(p + x))
                bits |= (u8)(0x80 >> x);
        rows[y] = bits;
    }
    for (u32 c = 0; c < 256; c++) {
        u32 y = 0;
        while (y < 8 && font8x8[c * 8 + y] == rows[y])
            y++;
        if (y == 8)
            return (u16)c;
    }
    return 0;
}

/* ---- INT 10h --------------------------------------------------------------- */

static void int10_palette(struct bregs *r)
{
    switch (r->al) {
    case 0x00:
        if (r->bl < 0x15)
            ac_write(r->bl, r->bh);
        break;
    case 0x01:
        ac_write(0x11, r->bh);
        break;
    case 0x02:
        for (u8 i = 0; i < 16; i++)
            ac_write(i, MEM8(FLAT(r->es, r->dx + i)));
        ac_write(0x11, MEM8(FLAT(r->es, r->dx + 16)));
        break;
    case 0x10:
        outb(r->bl, VGA_DAC_WRITE_INDEX);
        dac_put(r->dh, r->ch, r->cl);
        break;
    case 0x12:
        outb(r->bl, VGA_DAC_WRITE_INDEX);
        for (u32 i = 0; i < r->cx * 3u; i++)
            outb(MEM8(FLAT(r->es, r->dx + i)), VGA_DAC_DATA);
        break;
    case 0x15:
        outb(r->bl, VGA_DAC_READ_INDEX);
        r->dh = inb(VGA_DAC_DATA);
        r->ch = inb(VGA_DAC_DATA);
        r->cl = inb(VGA_DAC_DATA);
        break;
    case 0x17:
        outb(r->bl, VGA_DAC_READ_INDEX);
        for (u32 i = 0; i < r->cx * 3u; i++)
            MEM8(FLAT(r->es, r->dx + i)) = inb(VGA_DAC_DATA);
        break;
    }
}

static void int10_font_info(struct bregs *r)
{
    if (r->al != 0x30)
        return;
    u32 p;
    switch (r->bh) {
    case 0x00: p = FLAT(MEM16(0x1F * 4 + 2), MEM16(0x1F * 4)); break;
    case 0x01: p = FLAT(MEM16(0x43 * 4 + 2), MEM16(0x43 * 4)); break;
    case 0x03: p = (u32)font8x8; break;
    case 0x04: p = (u32)&font8x8[128 * 8]; break;
    default: p = (u32)font8x16; break;
    }
    r->es = (u16)(p >> 4);
    r->bp = (u16)(p & 0x0F);
    r->cx = BDA16(BDA_CHAR_HEIGHT);
    r->dl = BDA8(BDA_VIDEO_ROWS);
}

void c_int10(struct bregs *r)
{
    u8 page = BDA8(BDA_VIDEO_PAGE);
    switch (r->ah) {
    case 0x00: {
        u8 mode = r->al & 0x7F;
        video_set_mode(r->al);
        r->al = mode > 7 ? 0x20 : mode == 6 ? 0x3F : 0x30;
        break;
    }
    case 0x01:
        set_cursor_shape(r->cx);
        break;
    case 0x02:
        set_cursor_pos(r->bh, r->dl, r->dh);
        break;
    case 0x03:
        r->cx = BDA16(BDA_CURSOR_TYPE);
        r->dx = r->bh < 8 ? BDA16(BDA_CURSOR_POS + 2 * r->bh) : 0;
        break;
    case 0x05:
        set_active_page(r->al);
        break;
    case 0x06:
    case 0x07:
        scroll(page, r->al, r->bh, r->ch, r->cl, r->dh, r->dl, r->ah == 0x06);
        break;
    case 0x08:
        if (r->bh < 8) {
            u16 pos = BDA16(BDA_CURSOR_POS + 2 * r->bh);
            r->ax = read_char_attr(r->bh, pos & 0xFF, pos >> 8);
        }
        break;
    case 0x09:
    case 0x0A:
        if (r->bh < 8) {
            u16 pos = BDA16(BDA_CURSOR_POS + 2 * r->bh);
            write_chars(r->bh, pos & 0xFF, pos >> 8, r->al, r->bl, r->ah == 0x09, r->cx);
        }
        break;
    case 0x0C:
        if (is_gfx() && r->cx < GFX_WIDTH && r->dx < GFX_HEIGHT)
            MEM8(GFX_FB + r->dx * GFX_WIDTH + r->cx) = r->al;
        break;
    case 0x0D:
        if (is_gfx() && r->cx < GFX_WIDTH && r->dx < GFX_HEIGHT)
            r->al = MEM8(GFX_FB + r->dx * GFX_WIDTH + r->cx);
        else
            r->al = 0;
        break;
    case 0x0E:
        teletype_cursor(page, r->al, r->bl, 0);
        break;
    case 0x0F:
        r->al = (u8)(BDA8(BDA_VIDEO_MODE) | (BDA8(BDA_VIDEO_CTL) & 0x80));
        r->ah = ncols();
        r->bh = page;
        break;
    case 0x10:
        int10_palette(r);
        break;
    case 0x11:
        int10_font_info(r);
        break;
    case 0x12:
        if (r->bl == 0x10) {
            r->bh = 0x00;   /* colour */
            r->bl = 0x03;   /* 256 KiB */
            r->ch = (u8)(BDA8(BDA_VIDEO_SWITCHES) >> 4);
            r->cl = BDA8(BDA_VIDEO_SWITCHES) & 0x0F;
        }
        break;
    case 0x13: {
        /* AL bit 0: move the cursor; bit 1: string alternates char, attr. */
        if (r->bh > 7)
            break;
        u8 col = r->dl, row = r->dh;
        if (row == 0xFF) {
            u16 pos = BDA16(BDA_CURSOR_POS + 2 * r->bh);
            col = pos & 0xFF;
            row = pos >> 8;
        }
        u16 off = r->bp;
        for (u16 n = r->cx; n; n--) {
            u8 ch = MEM8(FLAT(r->es, off++));
            u8 attr = r->bl;
            if (r->al & 2)
                attr = MEM8(FLAT(r->es, off++));
            teletype(r->bh, &col, &row, ch, attr, 1);
        }
        if (r->al & 1)
            set_cursor_pos(r->bh, col, row);
        break;
    }
    case 0x1A:
        if (r->al == 0x00) {
            r->al = 0x1A;
            r->bx = 0x0008;     /* VGA with colour display */
        }
        break;
    }
}
