/* bioscheck: BIOS conformance checks, one COM1 line each ("PASS name" or
 * "FAIL name detail"), then "bioscheck done: N passed, M failed".
 *
 * Built with gcc -m16 -ffreestanding: 32-bit code with operand-size prefixes running
 * in real mode with CS=DS=ES=SS=0, so every C object lives below 64 KiB. Other
 * segments (video memory, FFFF:xxxx) are reached through FS in peek/poke.
 * Every check verifies its own result (BDA, video memory, read-back buffers) and
 * prints nothing machine-specific, so the output is the same on any correct BIOS. */

#include "realmode.h"

typedef unsigned long long u64;

struct regs {
    u32 eax, ebx, ecx, edx, esi, edi, ebp;
    u16 ds, es;
    u32 flags;
};

extern void bios_call(void (*stub)(void), struct regs *r);
extern void bios_int_10(void), bios_int_11(void), bios_int_12(void), bios_int_13(void),
    bios_int_15(void), bios_int_16(void), bios_int_19(void), bios_int_1a(void);
extern const u8 scratch_sector_image[512];
extern const char scratch_lba[]; /* linker symbol: its address is the LBA */

#define FLAG_CF 0x0001
#define FLAG_ZF 0x0040

#define AL(r) ((u8)(r).eax)
#define AH(r) ((u8)((r).eax >> 8))
#define AX(r) ((u16)(r).eax)
#define BL(r) ((u8)(r).ebx)
#define BH(r) ((u8)((r).ebx >> 8))
#define BX(r) ((u16)(r).ebx)
#define CL(r) ((u8)(r).ecx)
#define CH(r) ((u8)((r).ecx >> 8))
#define CX(r) ((u16)(r).ecx)
#define DL(r) ((u8)(r).edx)
#define DH(r) ((u8)((r).edx >> 8))
#define DX(r) ((u16)(r).edx)
#define CF(r) ((r).flags & FLAG_CF)
#define ZF(r) ((r).flags & FLAG_ZF)

/* BIOS data area fields used by the checks */
#define BDA_EQUIPMENT   0x410
#define BDA_MEMSIZE_KB  0x413
#define BDA_KBD_FLAG0   0x417
#define BDA_KBD_FLAG1   0x418
#define BDA_VIDEO_MODE  0x449
#define BDA_COLUMNS     0x44a
#define BDA_CURSOR_POS  0x450   /* 8 words, one per page: low = column, high = row */
#define BDA_CURSOR_TYPE 0x460
#define BDA_ACTIVE_PAGE 0x462
#define BDA_TICKS       0x46c

#define INT19_MARKER    0x500   /* survives INT 19h: magic, passed, failed */
#define INT19_MAGIC     0x39316876u /* "hv19" */
#define A20_LOW         0x600   /* 0000:0600 aliases FFFF:0610 when A20 is off */

#define VSEG_TEXT 0xb800
#define VSEG_GFX  0xa000
#define COLS 80
#define ROWS 25

/* ---- COM1 output (the rest is realmode.h) ------------------------------------------------ */

static void puthex(u32 v)
{
    int started = 0;
    for (int sh = 28; sh >= 0; sh -= 4) {
        u8 d = (v >> sh) & 15;
        if (d || started || sh == 0) {
            putc("0123456789abcdef"[d]);
            started = 1;
        }
    }
}

/* ---- results ---------------------------------------------------------------------- */

static u16 npass, nfail;
static u32 detail;      /* value printed after a failure message */
static int has_detail;

#define FAIL(msg) return (msg)
#define FAILV(msg, v) do { detail = (u32)(v); has_detail = 1; return (msg); } while (0)

static void report(const char *name, const char *err)
{
    if (!err) {
        puts("PASS ");
        puts(name);
        npass++;
    } else {
        puts("FAIL ");
        puts(name);
        putc(' ');
        puts(err);
        if (has_detail) {
            puts(" 0x");
            puthex(detail);
        }
        nfail++;
    }
    puts("\r\n");
}

static void summary(void)
{
    puts("bioscheck done: ");
    putdec(npass);
    puts(" passed, ");
    putdec(nfail);
    puts(" failed\r\n");
}

static struct regs R;

static struct regs *call(void (*stub)(void), u32 eax, u32 ebx, u32 ecx, u32 edx)
{
    memset(&R, 0, sizeof R);
    R.eax = eax;
    R.ebx = ebx;
    R.ecx = ecx;
    R.edx = edx;
    bios_call(stub, &R);
    return &R;
}

/* ---- INT 10h ------------------------------------------------------------------------ */

static void set_mode(u8 mode) { call(bios_int_10, mode, 0, 0, 0); }
static void set_cursor(u8 page, u8 row, u8 col) { call(bios_int_10, 0x0200, (u32)page << 8, 0, ((u32)row << 8) | col); }
static u16 bda_cursor(u8 page) { return W(BDA_CURSOR_POS + 2 * page); }
static u16 rc(u8 row, u8 col) { return (u16)((row << 8) | col); }
static void vput(int row, int col, u16 cell) { pokew(VSEG_TEXT, (u16)((row * COLS + col) * 2), cell); }
static u16 vget(int row, int col) { return peekw(VSEG_TEXT, (u16)((row * COLS + col) * 2)); }

static const char *chk_mode03(void)
{
    for (int i = 0; i < COLS * ROWS; i++)
        pokew(VSEG_TEXT, (u16)(i * 2), 0x4e58);     /* garbage the mode set must clear */
    set_cursor(0, 3, 3);
    set_mode(0x03);
    if (B(BDA_VIDEO_MODE) != 0x03)
        FAILV("bda mode", B(BDA_VIDEO_MODE));
    if (W(BDA_COLUMNS) != 80)
        FAILV("bda columns", W(BDA_COLUMNS));
    if (bda_cursor(0) != 0)
        FAILV("cursor not home", bda_cursor(0));
    for (int i = 0; i < COLS * ROWS; i++)
        if (peekw(VSEG_TEXT, (u16)(i * 2)) != 0x0720)
            FAILV("not cleared at cell", i);
    return 0;
}

static const char *chk_mode02(void)
{
    set_mode(0x02);
    if (B(BDA_VIDEO_MODE) != 0x02)
        FAILV("bda mode", B(BDA_VIDEO_MODE));
    if (W(BDA_COLUMNS) != 80)
        FAILV("bda columns", W(BDA_COLUMNS));
    return 0;
}

static const char *chk_mode13(void)
{
    const char *err = 0;
    set_mode(0x13);
    if (B(BDA_VIDEO_MODE) != 0x13) {
        detail = B(BDA_VIDEO_MODE);
        has_detail = 1;
        err = "bda mode";
    }
    for (u16 i = 0; !err && i < 64000; i++)
        if (peekb(VSEG_GFX, i) != 0) {
            detail = i;
            has_detail = 1;
            err = "not cleared at";
        }
    for (u16 i = 0; !err && i < 64000; i++)
        pokeb(VSEG_GFX, i, (u8)(i * 37 + (i >> 8) + 11));
    for (u16 i = 0; !err && i < 64000; i++)
        if (peekb(VSEG_GFX, i) != (u8)(i * 37 + (i >> 8) + 11)) {
            detail = i;
            has_detail = 1;
            err = "readback at";
        }
    set_mode(0x03);     /* the remaining video checks run in text mode */
    return err;
}

static const char *chk_int10_01(void)
{
    call(bios_int_10, 0x0100, 0, 0x0507, 0);
    if (W(BDA_CURSOR_TYPE) != 0x0507)
        FAILV("bda 460", W(BDA_CURSOR_TYPE));
    call(bios_int_10, 0x0100, 0, 0x0607, 0);
    if (W(BDA_CURSOR_TYPE) != 0x0607)
        FAILV("bda 460", W(BDA_CURSOR_TYPE));
    return 0;
}

static const char *chk_int10_02_03(void)
{
    set_cursor(0, 5, 10);
    if (bda_cursor(0) != rc(5, 10))
        FAILV("bda 450", bda_cursor(0));
    struct regs *r = call(bios_int_10, 0x0300, 0x0000, 0, 0);
    if (DX(*r) != rc(5, 10))
        FAILV("get DX", DX(*r));
    if (CX(*r) != W(BDA_CURSOR_TYPE))
        FAILV("get CX", CX(*r));
    set_cursor(1, 3, 7);
    if (bda_cursor(1) != rc(3, 7))
        FAILV("bda 452", bda_cursor(1));
    if (bda_cursor(0) != rc(5, 10))
        FAILV("page 0 moved", bda_cursor(0));
    r = call(bios_int_10, 0x0300, 0x0100, 0, 0);
    if (DX(*r) != rc(3, 7))
        FAILV("get page 1 DX", DX(*r));
    set_cursor(1, 0, 0);
    return 0;
}

static const char *chk_int10_05(void)
{
    call(bios_int_10, 0x0501, 0, 0, 0);
    u8 page = B(BDA_ACTIVE_PAGE);
    struct regs *r = call(bios_int_10, 0x0f00, 0, 0, 0);
    u8 bh = BH(*r);
    call(bios_int_10, 0x0500, 0, 0, 0);
    if (page != 1)
        FAILV("bda 462 after page 1", page);
    if (bh != 1)
        FAILV("AH=0F BH", bh);
    if (B(BDA_ACTIVE_PAGE) != 0)
        FAILV("bda 462 after page 0", B(BDA_ACTIVE_PAGE));
    return 0;
}

/* A screen where every cell differs from its neighbours in character or attribute. */
static u16 pattern(int row, int col)
{
    return (u16)(((0x10 * (row % 7 + 1) | 0x07) << 8) | ('A' + (row * 3 + col) % 26));
}

static void fill_pattern(void)
{
    for (int row = 0; row < ROWS; row++)
        for (int col = 0; col < COLS; col++)
            vput(row, col, pattern(row, col));
}

/* Check the whole screen after scrolling the window by n lines (up if up != 0). */
static const char *verify_scroll(int top, int left, int bottom, int right, int n, int up, u8 attr)
{
    for (int row = 0; row < ROWS; row++)
        for (int col = 0; col < COLS; col++) {
            u16 want = pattern(row, col);
            if (row >= top && row <= bottom && col >= left && col <= right) {
                int src = up ? row + n : row - n;
                want = (src >= top && src <= bottom) ? pattern(src, col) : (u16)((attr << 8) | ' ');
            }
            if (vget(row, col) != want)
                FAILV("cell", (row << 8) | col);
        }
    return 0;
}

static const char *chk_int10_06(void)
{
    fill_pattern();
    call(bios_int_10, 0x0601, 0x1e00, rc(2, 10), rc(6, 19));
    return verify_scroll(2, 10, 6, 19, 1, 1, 0x1e);
}

static const char *chk_int10_07(void)
{
    fill_pattern();
    call(bios_int_10, 0x0702, 0x5a00, rc(10, 30), rc(16, 59));
    return verify_scroll(10, 30, 16, 59, 2, 0, 0x5a);
}

static const char *chk_int10_08(void)
{
    vput(4, 4, 0x2c51);
    set_cursor(0, 4, 4);
    struct regs *r = call(bios_int_10, 0x0800, 0, 0, 0);
    if (AX(*r) != 0x2c51)
        FAILV("AX", AX(*r));
    return 0;
}

static const char *chk_int10_09(void)
{
    for (int col = 4; col <= 8; col++)
        vput(6, col, 0x0741);
    set_cursor(0, 6, 5);
    call(bios_int_10, 0x095a, 0x001f, 3, 0);
    for (int col = 5; col <= 7; col++)
        if (vget(6, col) != 0x1f5a)
            FAILV("cell", vget(6, col));
    if (vget(6, 4) != 0x0741 || vget(6, 8) != 0x0741)
        FAIL("wrote outside count");
    if (bda_cursor(0) != rc(6, 5))
        FAILV("cursor moved", bda_cursor(0));
    return 0;
}

static const char *chk_int10_0a(void)
{
    for (int col = 4; col <= 8; col++)
        vput(7, col, 0x4e61);
    set_cursor(0, 7, 5);
    call(bios_int_10, 0x0a4b, 0x001f, 2, 0);
    for (int col = 5; col <= 6; col++)
        if (vget(7, col) != 0x4e4b)
            FAILV("cell", vget(7, col));
    if (vget(7, 4) != 0x4e61 || vget(7, 7) != 0x4e61)
        FAIL("wrote outside count");
    if (bda_cursor(0) != rc(7, 5))
        FAILV("cursor moved", bda_cursor(0));
    return 0;
}

static void tty(char c) { call(bios_int_10, 0x0e00 | (u8)c, 0x0007, 0, 0); }

static const char *chk_int10_0e(void)
{
    set_cursor(0, 10, 0);
    tty('H');
    tty('i');
    if ((u8)vget(10, 0) != 'H' || (u8)vget(10, 1) != 'i')
        FAIL("chars");
    if (bda_cursor(0) != rc(10, 2))
        FAILV("cursor after chars", bda_cursor(0));
    tty('\b');
    if (bda_cursor(0) != rc(10, 1))
        FAILV("cursor after BS", bda_cursor(0));
    if ((u8)vget(10, 1) != 'i')
        FAIL("BS erased");
    tty('\r');
    if (bda_cursor(0) != rc(10, 0))
        FAILV("cursor after CR", bda_cursor(0));
    tty('\n');
    if (bda_cursor(0) != rc(11, 0))
        FAILV("cursor after LF", bda_cursor(0));
    set_cursor(0, 12, 79);
    tty('W');
    if ((u8)vget(12, 79) != 'W')
        FAIL("char at column 79");
    if (bda_cursor(0) != rc(13, 0))
        FAILV("cursor after wrap", bda_cursor(0));
    vput(24, 0, 0x074d);
    set_cursor(0, 24, 0);
    tty('\n');
    if (bda_cursor(0) != rc(24, 0))
        FAILV("cursor after LF on last row", bda_cursor(0));
    if ((u8)vget(23, 0) != 'M' || (u8)vget(24, 0) != ' ')
        FAIL("LF on last row did not scroll");
    return 0;
}

static const char *chk_int10_0f(void)
{
    struct regs *r = call(bios_int_10, 0x0f00, 0, 0, 0);
    if (AL(*r) != 0x03)
        FAILV("mode", AL(*r));
    if (AH(*r) != 80)
        FAILV("columns", AH(*r));
    if (BH(*r) != 0)
        FAILV("page", BH(*r));
    return 0;
}

static const char str13[] = "hv13";

static const char *chk_int10_13(void)
{
    set_cursor(0, 2, 2);
    memset(&R, 0, sizeof R);
    R.eax = 0x1300;                 /* mode 0: attribute in BL, cursor stays */
    R.ebx = 0x002f;
    R.ecx = 4;
    R.edx = rc(14, 5);
    R.ebp = (u32)str13;
    bios_call(bios_int_10, &R);
    for (int i = 0; i < 4; i++)
        if (vget(14, 5 + i) != (u16)(0x2f00 | (u8)str13[i]))
            FAILV("mode 0 cell", vget(14, 5 + i));
    if (bda_cursor(0) != rc(2, 2))
        FAILV("mode 0 moved cursor", bda_cursor(0));
    memset(&R, 0, sizeof R);
    R.eax = 0x1301;                 /* mode 1: attribute in BL, cursor follows */
    R.ebx = 0x003e;
    R.ecx = 4;
    R.edx = rc(15, 0);
    R.ebp = (u32)str13;
    bios_call(bios_int_10, &R);
    for (int i = 0; i < 4; i++)
        if (vget(15, i) != (u16)(0x3e00 | (u8)str13[i]))
            FAILV("mode 1 cell", vget(15, i));
    if (bda_cursor(0) != rc(15, 4))
        FAILV("mode 1 cursor", bda_cursor(0));
    return 0;
}

/* ---- INT 11h, 12h --------------------------------------------------------------------- */

static const char *chk_int11(void)
{
    struct regs *r = call(bios_int_11, 0, 0, 0, 0);
    if (AX(*r) != W(BDA_EQUIPMENT))
        FAILV("AX != bda 410", AX(*r));
    return 0;
}

static const char *chk_int12(void)
{
    struct regs *r = call(bios_int_12, 0, 0, 0, 0);
    if (AX(*r) != W(BDA_MEMSIZE_KB))
        FAILV("AX != bda 413", AX(*r));
    if (AX(*r) == 0 || AX(*r) > 640)
        FAILV("AX out of range", AX(*r));
    return 0;
}

/* ---- INT 13h ---------------------------------------------------------------------------- */

static u8 drive;
static u16 spt, heads, max_cyl;   /* from AH=08h */
static int have_ext;              /* AH=41h says the extensions (42h-44h, 47h, 48h) exist */

static u8 buf[512] __attribute__((aligned(512)));
static u8 save[512] __attribute__((aligned(512)));
static u8 pat[512] __attribute__((aligned(512)));
static u8 params[0x42] __attribute__((aligned(16)));

struct dap {
    u8 size, reserved;
    u16 count;
    u16 off, seg;
    u64 lba;
};
static struct dap dap;

static struct regs *disk_chs(u8 ah, u16 cyl, u8 head, u8 sector, void *dst)
{
    memset(&R, 0, sizeof R);
    R.eax = ((u32)ah << 8) | 1;
    R.ecx = ((u32)(cyl & 0xff) << 8) | ((cyl >> 2) & 0xc0) | (sector & 0x3f);
    R.edx = ((u32)head << 8) | drive;
    R.ebx = (u32)dst;
    bios_call(bios_int_13, &R);
    return &R;
}

static struct regs *disk_lba(u8 ah, u32 lba, void *dst)
{
    u32 track = lba / spt;
    return disk_chs(ah, (u16)(track / heads), (u8)(track % heads), (u8)(lba % spt + 1), dst);
}

static struct regs *disk_ext(u8 ah, u32 lba, void *dst)
{
    dap.size = 0x10;
    dap.reserved = 0;
    dap.count = 1;
    dap.off = (u16)(u32)dst;
    dap.seg = 0;
    dap.lba = lba;
    memset(&R, 0, sizeof R);
    R.eax = (u32)ah << 8;           /* AL=0: no write verify for 43h */
    R.edx = drive;
    R.esi = (u32)&dap;
    bios_call(bios_int_13, &R);
    return &R;
}

static u32 scratch(void) { return (u32)scratch_lba; }

static void fill_pat(u8 seed)
{
    for (int i = 0; i < 512; i++)
        pat[i] = (u8)(i * 13 + seed + (i >> 7));
}

static int get_geometry(void)
{
    memset(&R, 0, sizeof R);
    R.eax = 0x0800;
    R.edx = drive;
    bios_call(bios_int_13, &R);
    if (CF(R) || (CL(R) & 0x3f) == 0)
        return 0;
    spt = CL(R) & 0x3f;
    heads = DH(R) + 1;
    max_cyl = CH(R) | ((CL(R) & 0xc0) << 2);
    return 1;
}

static const char *chk_int13_00(void)
{
    struct regs *r = call(bios_int_13, 0x0000, 0, 0, drive);
    if (CF(*r) || AH(*r))
        FAILV("status", AH(*r));
    return 0;
}

static const char *chk_int13_01(void)
{
    struct regs *r = call(bios_int_13, 0x0100, 0, 0, drive);
    if (CF(*r) || AH(*r))
        FAILV("status after reset", AH(*r));
    return 0;
}

static const char *chk_int13_02(void)
{
    memset(buf, 0xee, sizeof buf);
    struct regs *r = disk_chs(0x02, 0, 0, 1, buf);
    if (CF(*r))
        FAILV("read status", AH(*r));
    if (memcmp(buf, (const void *)0x7c00, 512))
        FAIL("sector 0 differs from 7C00");
    r = disk_lba(0x02, scratch(), buf);
    if (CF(*r))
        FAILV("read last image sector", AH(*r));
    return 0;
}

static const char *chk_int13_03(void)
{
    struct regs *r = disk_lba(0x02, scratch(), save);
    if (CF(*r))
        FAILV("read status", AH(*r));
    if (memcmp(save, scratch_sector_image, 512))
        FAIL("scratch sector differs from the loaded image");
    fill_pat(0x5a);
    r = disk_lba(0x03, scratch(), pat);
    if (CF(*r))
        FAILV("write status", AH(*r));
    memset(buf, 0, sizeof buf);
    r = disk_lba(0x02, scratch(), buf);
    if (CF(*r))
        FAILV("read back status", AH(*r));
    int same = !memcmp(buf, pat, 512);
    r = disk_lba(0x03, scratch(), save);
    if (CF(*r))
        FAILV("restore status", AH(*r));
    if (!same)
        FAIL("read back differs");
    r = disk_lba(0x02, scratch(), buf);
    if (CF(*r) || memcmp(buf, save, 512))
        FAIL("restore differs");
    return 0;
}

static const char *chk_int13_08(void)
{
    struct regs *r = call(bios_int_13, 0x0800, 0, 0, drive);
    if (CF(*r))
        FAILV("status", AH(*r));
    if ((CL(*r) & 0x3f) == 0)
        FAIL("zero sectors per track");
    if (DL(*r) == 0)
        FAIL("zero drives");
    if ((u32)(max_cyl + 1) * heads * spt <= scratch())
        FAIL("smaller than the image");
    r = disk_chs(0x02, max_cyl, (u8)(heads - 1), (u8)spt, buf);
    if (CF(*r))
        FAILV("read of last CHS sector", AH(*r));
    return 0;
}

static const char *chk_int13_15(void)
{
    struct regs *r = call(bios_int_13, 0x15ff, 0, 0, drive);
    if (CF(*r))
        FAILV("CF set AH", AH(*r));
    if (drive & 0x80) {
        if (AH(*r) != 3)
            FAILV("hard disk type", AH(*r));
        if (CX(*r) == 0 && DX(*r) == 0)
            FAIL("zero sectors");
    } else if (AH(*r) != 1 && AH(*r) != 2) {
        FAILV("floppy type", AH(*r));
    }
    return 0;
}

static const char *chk_int13_41(void)
{
    struct regs *r = call(bios_int_13, 0x4100, 0x55aa, 0, drive);
    have_ext = !CF(*r) && BX(*r) == 0xaa55 && (CX(*r) & 1);
    /* Does 42h really work? It must agree with what 41h claims. */
    memset(buf, 0xee, sizeof buf);
    r = disk_ext(0x42, 0, buf);
    int works = !CF(*r) && !memcmp(buf, (const void *)0x7c00, 512);
    if ((drive & 0x80) && !have_ext)
        FAIL("no extensions on a hard disk");
    if (have_ext != works)
        FAILV("41h disagrees with 42h", have_ext);
    return 0;
}

static const char *chk_int13_42(void)
{
    if (!have_ext)
        return 0;   /* absence was validated by the 41h check */
    memset(buf, 0, sizeof buf);
    struct regs *r = disk_ext(0x42, scratch(), buf);
    if (CF(*r))
        FAILV("status", AH(*r));
    r = disk_lba(0x02, scratch(), save);
    if (CF(*r) || memcmp(buf, save, 512))
        FAIL("differs from CHS read");
    return 0;
}

static const char *chk_int13_43(void)
{
    if (!have_ext)
        return 0;
    struct regs *r = disk_ext(0x42, scratch(), save);
    if (CF(*r))
        FAILV("read status", AH(*r));
    fill_pat(0xa7);
    r = disk_ext(0x43, scratch(), pat);
    if (CF(*r))
        FAILV("write status", AH(*r));
    memset(buf, 0, sizeof buf);
    r = disk_ext(0x42, scratch(), buf);
    int ext_same = !CF(*r) && !memcmp(buf, pat, 512);
    memset(buf, 0, sizeof buf);
    r = disk_lba(0x02, scratch(), buf);
    int chs_same = !CF(*r) && !memcmp(buf, pat, 512);
    r = disk_ext(0x43, scratch(), save);
    if (CF(*r))
        FAILV("restore status", AH(*r));
    if (!ext_same)
        FAIL("42h read back differs");
    if (!chs_same)
        FAIL("CHS read back differs");
    r = disk_ext(0x42, scratch(), buf);
    if (CF(*r) || memcmp(buf, save, 512))
        FAIL("restore differs");
    return 0;
}

static const char *chk_int13_48(void)
{
    if (!have_ext)
        return 0;
    memset(params, 0, sizeof params);
    *(u16 *)params = 0x1a;
    memset(&R, 0, sizeof R);
    R.eax = 0x4800;
    R.edx = drive;
    R.esi = (u32)params;
    bios_call(bios_int_13, &R);
    if (CF(R))
        FAILV("status", AH(R));
    if (*(u16 *)(params + 0x18) != 512)
        FAILV("sector size", *(u16 *)(params + 0x18));
    u64 total = *(u64 *)(params + 0x10);
    if (total < (u64)(max_cyl + 1) * heads * spt)
        FAIL("fewer sectors than the CHS geometry");
    return 0;
}

/* ---- INT 15h ------------------------------------------------------------------------------ */

#define SMAP 0x534d4150u

struct e820 {
    u64 base, length;
    u32 type, ext;
};
static struct e820 e820;

static const char *chk_int15_e820(void)
{
    u32 cont = 0;
    int entries = 0, low_ok = 0;
    do {
        memset(&e820, 0, sizeof e820);
        memset(&R, 0, sizeof R);
        R.eax = 0xe820;
        R.ebx = cont;
        R.ecx = 20;
        R.edx = SMAP;
        R.edi = (u32)&e820;
        bios_call(bios_int_15, &R);
        if (CF(R))
            FAILV("CF set at entry", entries);
        if (R.eax != SMAP)
            FAILV("signature", R.eax);
        if (R.ecx < 20)
            FAILV("entry size", R.ecx);
        entries++;
        if (e820.base == 0 && e820.type == 1 && e820.length >= 0x80000)
            low_ok = 1;
        cont = R.ebx;
    } while (cont && entries < 64);
    if (cont)
        FAIL("no end of list");
    if (entries < 2)
        FAILV("entries", entries);
    if (!low_ok)
        FAIL("no usable region of 512K at 0");
    return 0;
}

static const char *chk_int15_88(void)
{
    struct regs *r = call(bios_int_15, 0x8800, 0, 0, 0);
    if (CF(*r))
        FAILV("CF set AH", AH(*r));
    return 0;
}

/* Does FFFF:0610 (1 MiB + 0x600) alias 0000:0600? Two patterns rule out coincidence. */
static int a20_wraps(void)
{
    u8 lo = B(A20_LOW), hi = peekb(0xffff, A20_LOW + 0x10);
    int wraps = 1;
    static const u8 pats[2][2] = {{0x00, 0xa5}, {0x3c, 0xc3}};
    for (int i = 0; i < 2; i++) {
        B(A20_LOW) = pats[i][0];
        pokeb(0xffff, A20_LOW + 0x10, pats[i][1]);
        if (B(A20_LOW) != pats[i][1])
            wraps = 0;
    }
    pokeb(0xffff, A20_LOW + 0x10, hi);
    B(A20_LOW) = lo;
    return wraps;
}

static const char *chk_int15_2400(void)
{
    struct regs *r = call(bios_int_15, 0x2400, 0, 0, 0);
    if (CF(*r) || AH(*r))
        FAILV("status", AH(*r));
    if (!a20_wraps())
        FAIL("no wraparound with A20 disabled");
    return 0;
}

static const char *chk_int15_2401(void)
{
    struct regs *r = call(bios_int_15, 0x2401, 0, 0, 0);
    if (CF(*r) || AH(*r))
        FAILV("status", AH(*r));
    if (a20_wraps())
        FAIL("wraparound with A20 enabled");
    return 0;
}

static const char *chk_int15_2402(void)
{
    call(bios_int_15, 0x2400, 0, 0, 0);
    struct regs *r = call(bios_int_15, 0x2402, 0, 0, 0);
    int off_ok = !CF(*r) && !AH(*r) && AL(*r) == 0;
    u8 off_al = AL(*r);
    call(bios_int_15, 0x2401, 0, 0, 0);
    r = call(bios_int_15, 0x2402, 0, 0, 0);
    if (!off_ok)
        FAILV("disabled AL", off_al);
    if (CF(*r) || AH(*r) || AL(*r) != 1)
        FAILV("enabled AL", AL(*r));
    return 0;
}

static const char *chk_int15_2403(void)
{
    struct regs *r = call(bios_int_15, 0x2403, 0, 0, 0);
    if (CF(*r) || AH(*r))
        FAILV("status", AH(*r));
    if (!(BX(*r) & 3))
        FAILV("no method in BX", BX(*r));
    return 0;
}

static const char *chk_int15_86(void)
{
    __asm__ volatile("sti");
    u32 before = D(BDA_TICKS);
    struct regs *r = call(bios_int_15, 0x8600, 0, 0, 10000);  /* CX:DX = 10000 us */
    u32 after = D(BDA_TICKS);
    if (CF(*r))
        FAILV("CF set AH", AH(*r));
    if (after < before)
        FAIL("tick count went backwards");
    return 0;
}

/* ---- INT 16h ------------------------------------------------------------------------------ */

static void kbd_flush(void)
{
    for (int i = 0; i < 64; i++) {
        if (ZF(*call(bios_int_16, 0x0100, 0, 0, 0)))
            return;
        call(bios_int_16, 0x0000, 0, 0, 0);
    }
}

static const char *stuff(u16 key)
{
    struct regs *r = call(bios_int_16, 0x0500, 0, key, 0);
    if (CF(*r) || AL(*r))
        FAILV("store failed AL", AL(*r));
    return 0;
}

static const char *chk_int16_05(void)
{
    kbd_flush();
    const char *e = stuff(0x1e61);          /* 'a' */
    return e ? e : stuff(0x3062);           /* 'b' */
}

static const char *chk_int16_01(void)
{
    for (int i = 0; i < 2; i++) {           /* twice: 01h must not remove the key */
        struct regs *r = call(bios_int_16, 0x0100, 0, 0, 0);
        if (ZF(*r))
            FAIL("ZF set with a key waiting");
        if (AX(*r) != 0x1e61)
            FAILV("AX", AX(*r));
    }
    return 0;
}

static const char *chk_int16_00(void)
{
    struct regs *r = call(bios_int_16, 0x0000, 0, 0, 0);
    if (AX(*r) != 0x1e61)
        FAILV("first key", AX(*r));
    r = call(bios_int_16, 0x0100, 0, 0, 0);
    if (ZF(*r) || AX(*r) != 0x3062)
        FAILV("key not removed, next", AX(*r));
    r = call(bios_int_16, 0x0000, 0, 0, 0);
    if (AX(*r) != 0x3062)
        FAILV("second key", AX(*r));
    return 0;
}

static const char *chk_int16_11_10(void)
{
    static const u16 keys[2] = {0x1f73, 0x48e0};    /* 's', grey Up (E0 prefix) */
    for (int i = 0; i < 2; i++) {
        const char *e = stuff(keys[i]);
        if (e)
            return e;
        struct regs *r = call(bios_int_16, 0x1100, 0, 0, 0);
        if (ZF(*r) || AX(*r) != keys[i])
            FAILV("11h AX", AX(*r));
        r = call(bios_int_16, 0x1000, 0, 0, 0);
        if (AX(*r) != keys[i])
            FAILV("10h AX", AX(*r));
    }
    return 0;
}

static const char *chk_int16_01_empty(void)
{
    kbd_flush();
    struct regs *r = call(bios_int_16, 0x0100, 0, 0, 0);
    if (!ZF(*r))
        FAILV("ZF clear with empty buffer AX", AX(*r));
    return 0;
}

static const char *chk_int16_02_12(void)
{
    struct regs *r = call(bios_int_16, 0x0200, 0, 0, 0);
    if (AL(*r) != B(BDA_KBD_FLAG0))
        FAILV("02h AL", AL(*r));
    u8 saved = B(BDA_KBD_FLAG0);
    B(BDA_KBD_FLAG0) = saved ^ 0x80;                /* toggle "insert active" */
    r = call(bios_int_16, 0x0200, 0, 0, 0);
    u8 al = AL(*r);
    B(BDA_KBD_FLAG0) = saved;
    if (al != (saved ^ 0x80))
        FAILV("02h AL after bda 417 change", al);
    r = call(bios_int_16, 0x1200, 0, 0, 0);
    if (AL(*r) != B(BDA_KBD_FLAG0))
        FAILV("12h AL", AL(*r));
    /* scroll/num/caps "pressed" are bits 4-6 of both AH and BDA 418 */
    if ((AH(*r) & 0x70) != (B(BDA_KBD_FLAG1) & 0x70))
        FAILV("12h AH", AH(*r));
    return 0;
}

/* ---- INT 1Ah ------------------------------------------------------------------------------- */

static u32 ticks(struct regs *r) { return ((u32)CX(*r) << 16) | DX(*r); }

static const char *chk_int1a_00(void)
{
    struct regs *r = call(bios_int_1a, 0x0000, 0, 0, 0);
    u32 t0 = ticks(r), t1 = t0;
    int midnight = 0;
    for (int i = 0; i < 100 && t1 == t0; i++) {
        __asm__ volatile("sti; hlt");
        r = call(bios_int_1a, 0x0000, 0, 0, 0);
        t1 = ticks(r);
        midnight |= AL(*r);
    }
    if (t1 == t0)
        FAIL("tick count did not advance");
    if (t1 < t0 && !midnight)
        FAIL("tick count went backwards");
    return 0;
}

static int bcd_ok(u8 v, u8 max) { return (v & 0x0f) <= 9 && (v >> 4) <= 9 && v <= max; }

/* AH=02h/04h report CF set while the RTC is mid-update; a few tries ride that out. */
static struct regs *rtc_call(u16 ax)
{
    struct regs *r = 0;
    for (int i = 0; i < 5; i++) {
        r = call(bios_int_1a, ax, 0, 0, 0);
        if (!CF(*r))
            break;
    }
    return r;
}

static const char *chk_int1a_02(void)
{
    struct regs *r = rtc_call(0x0200);
    if (CF(*r))
        FAIL("CF set");
    if (!bcd_ok(CH(*r), 0x23) || !bcd_ok(CL(*r), 0x59) || !bcd_ok(DH(*r), 0x59))
        FAIL("not BCD");
    return 0;
}

static const char *chk_int1a_04(void)
{
    struct regs *r = rtc_call(0x0400);
    if (CF(*r))
        FAIL("CF set");
    if (CH(*r) != 0x19 && CH(*r) != 0x20)
        FAIL("century");
    if (!bcd_ok(CL(*r), 0x99))
        FAIL("year not BCD");
    if (!bcd_ok(DH(*r), 0x12) || DH(*r) == 0)
        FAIL("month");
    if (!bcd_ok(DL(*r), 0x31) || DL(*r) == 0)
        FAIL("day");
    return 0;
}

/* ---- the table ------------------------------------------------------------------------------ */

struct check {
    const char *name;
    const char *(*fn)(void);
};

static const struct check checks[] = {
    {"int10_00_mode03", chk_mode03},
    {"int10_00_mode02", chk_mode02},
    {"int10_00_mode13", chk_mode13},
    {"int10_01", chk_int10_01},
    {"int10_02_03", chk_int10_02_03},
    {"int10_05", chk_int10_05},
    {"int10_06", chk_int10_06},
    {"int10_07", chk_int10_07},
    {"int10_08", chk_int10_08},
    {"int10_09", chk_int10_09},
    {"int10_0a", chk_int10_0a},
    {"int10_0e", chk_int10_0e},
    {"int10_0f", chk_int10_0f},
    {"int10_13", chk_int10_13},
    {"int11", chk_int11},
    {"int12", chk_int12},
    {"int13_00", chk_int13_00},
    {"int13_01", chk_int13_01},
    {"int13_02", chk_int13_02},
    {"int13_03", chk_int13_03},
    {"int13_08", chk_int13_08},
    {"int13_15", chk_int13_15},
    {"int13_41", chk_int13_41},
    {"int13_42", chk_int13_42},
    {"int13_43", chk_int13_43},
    {"int13_48", chk_int13_48},
    {"int15_e820", chk_int15_e820},
    {"int15_88", chk_int15_88},
    {"int15_2400", chk_int15_2400},
    {"int15_2401", chk_int15_2401},
    {"int15_2402", chk_int15_2402},
    {"int15_2403", chk_int15_2403},
    {"int15_86", chk_int15_86},
    {"int16_05", chk_int16_05},
    {"int16_01", chk_int16_01},
    {"int16_00", chk_int16_00},
    {"int16_11_10", chk_int16_11_10},
    {"int16_01_empty", chk_int16_01_empty},
    {"int16_02_12", chk_int16_02_12},
    {"int1a_00", chk_int1a_00},
    {"int1a_02", chk_int1a_02},
    {"int1a_04", chk_int1a_04},
};

void bioscheck_main(u32 boot_drive)
{
    serial_init();
    drive = (u8)boot_drive;

    if (D(INT19_MARKER) == INT19_MAGIC) {   /* second boot, via INT 19h */
        D(INT19_MARKER) = 0;
        npass = W(INT19_MARKER + 4);
        nfail = W(INT19_MARKER + 6);
        report("int19", 0);
        summary();
        halt();
    }

    if (!get_geometry()) {  /* the loader coped; the disk checks need real numbers */
        spt = (drive & 0x80) ? 63 : 18;
        heads = (drive & 0x80) ? 16 : 2;
        max_cyl = 0;
    }

    for (unsigned i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        has_detail = 0;
        report(checks[i].name, checks[i].fn());
    }

    D(INT19_MARKER) = INT19_MAGIC;
    W(INT19_MARKER + 4) = npass;
    W(INT19_MARKER + 6) = nfail;
    call(bios_int_19, 0, 0, 0, drive);
    D(INT19_MARKER) = 0;
    has_detail = 0;
    report("int19", "returned");
    summary();
    halt();
}
