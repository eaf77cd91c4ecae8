/* 8042 setup, the IRQ1 scancode handler (set 1, US layout) and INT 16h.
 * Keystrokes go into the BDA ring buffer as scan << 8 | ascii. */
#include "bios.h"

#define KBC_DATA 0x60
#define KBC_STATUS 0x64
#define KBC_CMD 0x64
#define KBC_STR_OBF 0x01        /* output buffer full */
#define KBC_STR_IBF 0x02        /* input buffer full */
#define KBC_STR_AUXDATA 0x20    /* byte came from the aux port */

enum { KBC_CMD_READ_CTR = 0x20, KBC_CMD_WRITE_CTR = 0x60, KBC_CMD_SELF_TEST = 0xAA,
       KBC_CMD_KBD_TEST = 0xAB };
#define KBC_SELF_TEST_OK 0x55
#define CTR_KBDINT 0x01
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40

enum { KBD_CMD_ENABLE = 0xF4, KBD_CMD_RESET = 0xFF };
#define KBD_ACK 0xFA
#define KBD_BAT_OK 0xAA

/* shift flags 0x417 */
#define KF0_RSHIFT 0x01
#define KF0_LSHIFT 0x02
#define KF0_CTRL 0x04
#define KF0_ALT 0x08
#define KF0_SCROLL 0x10
#define KF0_NUM 0x20
#define KF0_CAPS 0x40
#define KF0_INSERT 0x80
/* 0x418 */
#define KF1_LCTRL 0x01
#define KF1_LALT 0x02
#define KF1_SCROLL 0x10
#define KF1_NUM 0x20
#define KF1_CAPS 0x40
#define KF1_INSERT 0x80
/* 0x496 */
#define KF2_E1 0x01
#define KF2_E0 0x02
#define KF2_RCTRL 0x04
#define KF2_RALT 0x08
#define KF2_101KBD 0x10

static int kbc_wait_write(void)
{
    for (int i = 0; i < 100000; i++)
        if (!(inb(KBC_STATUS) & KBC_STR_IBF))
            return 0;
    return -1;
}

static int kbc_read(void)
{
    for (int i = 0; i < 200000; i++)
        if (inb(KBC_STATUS) & KBC_STR_OBF)
            return inb(KBC_DATA);
    return -1;
}

static void kbc_command(u8 cmd) { kbc_wait_write(); outb(cmd, KBC_CMD); }
static void kbc_data(u8 v) { kbc_wait_write(); outb(v, KBC_DATA); }
static void process_scancode(u8 code);

/* Drain the output buffer. Keystrokes typed during POST are kept (decoded
 * into the BDA buffer, which is set up by then); stray ACK/BAT bytes decode
 * to nothing harmful (FAh is no key, AAh a left-shift release). */
static void kbc_flush(void)
{
    for (int i = 0; i < 64; i++) {
        u8 st = inb(KBC_STATUS);
        if (!(st & KBC_STR_OBF))
            break;
        u8 b = inb(KBC_DATA);
        if (!(st & KBC_STR_AUXDATA))
            process_scancode(b);
    }
}

void kbd_post(void)
{
    kbc_flush();
    kbc_command(KBC_CMD_SELF_TEST);
    if (kbc_read() != KBC_SELF_TEST_OK)
        return;                 /* no (working) controller: leave IRQ1 off */
    /* Keyboard interrupts off while we talk to the keyboard by polling. */
    kbc_command(KBC_CMD_WRITE_CTR);
    kbc_data(CTR_SYS | CTR_AUXDIS | CTR_XLATE);
    kbc_data(KBD_CMD_RESET);
    if (kbc_read() == KBD_ACK)
        kbc_read();             /* BAT result (AAh) */
    kbc_data(KBD_CMD_ENABLE);
    kbc_read();                 /* ACK */
    kbc_flush();
    kbc_command(KBC_CMD_WRITE_CTR);
    kbc_data(CTR_KBDINT | CTR_SYS | CTR_AUXDIS | CTR_XLATE);
}

/* ---- the ring buffer ------------------------------------------------------ */

static int enqueue_key(u16 key)
{
    u16 tail = BDA16(BDA_KBD_TAIL), next = tail + 2;
    if (next >= BDA16(BDA_KBD_BUF_END))
        next = BDA16(BDA_KBD_BUF_START);
    if (next == BDA16(BDA_KBD_HEAD))
        return -1;              /* full: the key is dropped */
    BDA16(tail) = key;          /* offsets are relative to segment 40h */
    BDA16(BDA_KBD_TAIL) = next;
    return 0;
}

/* ---- scancode set 1 -> keycode ------------------------------------------- */

/* normal, shift, ctrl, alt keycodes per make code 00h-58h (0 = none). */
struct keymap { u16 normal, shift, ctrl, alt; };
static const struct keymap keymap[0x59] = {
    [0x01] = { 0x011B, 0x011B, 0x011B, 0x0100 },
    [0x02] = { 0x0231, 0x0221, 0, 0x7800 }, [0x03] = { 0x0332, 0x0340, 0x0300, 0x7900 },
    [0x04] = { 0x0433, 0x0423, 0, 0x7A00 }, [0x05] = { 0x0534, 0x0524, 0, 0x7B00 },
    [0x06] = { 0x0635, 0x0625, 0, 0x7C00 }, [0x07] = { 0x0736, 0x075E, 0x071E, 0x7D00 },
    [0x08] = { 0x0837, 0x0826, 0, 0x7E00 }, [0x09] = { 0x0938, 0x092A, 0, 0x7F00 },
    [0x0A] = { 0x0A39, 0x0A28, 0, 0x8000 }, [0x0B] = { 0x0B30, 0x0B29, 0, 0x8100 },
    [0x0C] = { 0x0C2D, 0x0C5F, 0x0C1F, 0x8200 }, [0x0D] = { 0x0D3D, 0x0D2B, 0, 0x8300 },
    [0x0E] = { 0x0E08, 0x0E08, 0x0E7F, 0x0E00 }, [0x0F] = { 0x0F09, 0x0F00, 0x9400, 0xA500 },
    [0x10] = { 0x1071, 0x1051, 0x1011, 0x1000 }, [0x11] = { 0x1177, 0x1157, 0x1117, 0x1100 },
    [0x12] = { 0x1265, 0x1245, 0x1205, 0x1200 }, [0x13] = { 0x1372, 0x1352, 0x1312, 0x1300 },
    [0x14] = { 0x1474, 0x1454, 0x1414, 0x1400 }, [0x15] = { 0x1579, 0x1559, 0x1519, 0x1500 },
    [0x16] = { 0x1675, 0x1655, 0x1615, 0x1600 }, [0x17] = { 0x1769, 0x1749, 0x1709, 0x1700 },
    [0x18] = { 0x186F, 0x184F, 0x180F, 0x1800 }, [0x19] = { 0x1970, 0x1950, 0x1910, 0x1900 },
    [0x1A] = { 0x1A5B, 0x1A7B, 0x1A1B, 0x1A00 }, [0x1B] = { 0x1B5D, 0x1B7D, 0x1B1D, 0x1B00 },
    [0x1C] = { 0x1C0D, 0x1C0D, 0x1C0A, 0x1C00 },
    [0x1E] = { 0x1E61, 0x1E41, 0x1E01, 0x1E00 }, [0x1F] = { 0x1F73, 0x1F53, 0x1F13, 0x1F00 },
    [0x20] = { 0x2064, 0x2044, 0x2004, 0x2000 }, [0x21] = { 0x2166, 0x2146, 0x2106, 0x2100 },
    [0x22] = { 0x2267, 0x2247, 0x2207, 0x2200 }, [0x23] = { 0x2368, 0x2348, 0x2308, 0x2300 },
    [0x24] = { 0x246A, 0x244A, 0x240A, 0x2400 }, [0x25] = { 0x256B, 0x254B, 0x250B, 0x2500 },
    [0x26] = { 0x266C, 0x264C, 0x260C, 0x2600 }, [0x27] = { 0x273B, 0x273A, 0, 0x2700 },
    [0x28] = { 0x2827, 0x2822, 0, 0x2800 }, [0x29] = { 0x2960, 0x297E, 0, 0x2900 },
    [0x2B] = { 0x2B5C, 0x2B7C, 0x2B1C, 0x2B00 },
    [0x2C] = { 0x2C7A, 0x2C5A, 0x2C1A, 0x2C00 }, [0x2D] = { 0x2D78, 0x2D58, 0x2D18, 0x2D00 },
    [0x2E] = { 0x2E63, 0x2E43, 0x2E03, 0x2E00 }, [0x2F] = { 0x2F76, 0x2F56, 0x2F16, 0x2F00 },
    [0x30] = { 0x3062, 0x3042, 0x3002, 0x3000 }, [0x31] = { 0x316E, 0x314E, 0x310E, 0x3100 },
    [0x32] = { 0x326D, 0x324D, 0x320D, 0x3200 }, [0x33] = { 0x332C, 0x333C, 0, 0x3300 },
    [0x34] = { 0x342E, 0x343E, 0, 0x3400 }, [0x35] = { 0x352F, 0x353F, 0, 0x3500 },
    [0x37] = { 0x372A, 0x372A, 0x9600, 0x3700 },
    [0x39] = { 0x3920, 0x3920, 0x3920, 0x3920 },
    [0x3B] = { 0x3B00, 0x5400, 0x5E00, 0x6800 }, [0x3C] = { 0x3C00, 0x5500, 0x5F00, 0x6900 },
    [0x3D] = { 0x3D00, 0x5600, 0x6000, 0x6A00 }, [0x3E] = { 0x3E00, 0x5700, 0x6100, 0x6B00 },
    [0x3F] = { 0x3F00, 0x5800, 0x6200, 0x6C00 }, [0x40] = { 0x4000, 0x5900, 0x6300, 0x6D00 },
    [0x41] = { 0x4100, 0x5A00, 0x6400, 0x6E00 }, [0x42] = { 0x4200, 0x5B00, 0x6500, 0x6F00 },
    [0x43] = { 0x4300, 0x5C00, 0x6600, 0x7000 }, [0x44] = { 0x4400, 0x5D00, 0x6700, 0x7100 },
    /* keypad: "shift" column is the NumLock digit */
    [0x47] = { 0x4700, 0x4737, 0x7700, 0 }, [0x48] = { 0x4800, 0x4838, 0x8D00, 0 },
    [0x49] = { 0x4900, 0x4939, 0x8400, 0 }, [0x4A] = { 0x4A2D, 0x4A2D, 0x8E00, 0x4A00 },
    [0x4B] = { 0x4B00, 0x4B34, 0x7300, 0 }, [0x4C] = { 0x4C00, 0x4C35, 0x8F00, 0 },
    [0x4D] = { 0x4D00, 0x4D36, 0x7400, 0 }, [0x4E] = { 0x4E2B, 0x4E2B, 0x9000, 0x4E00 },
    [0x4F] = { 0x4F00, 0x4F31, 0x7500, 0 }, [0x50] = { 0x5000, 0x5032, 0x9100, 0 },
    [0x51] = { 0x5100, 0x5133, 0x7600, 0 }, [0x52] = { 0x5200, 0x5230, 0x9200, 0 },
    [0x53] = { 0x5300, 0x532E, 0x9300, 0 },
    [0x57] = { 0x8500, 0x8700, 0x8900, 0x8B00 }, [0x58] = { 0x8600, 0x8800, 0x8A00, 0x8C00 },
};

static int is_letter(u8 sc)
{
    return (sc >= 0x10 && sc <= 0x19) || (sc >= 0x1E && sc <= 0x26) || (sc >= 0x2C && sc <= 0x32);
}

static void set_bit8(u32 off, u8 bit, int on)
{
    if (on) BDA8(off) |= bit; else BDA8(off) &= (u8)~bit;
}

/* Lock keys toggle on make only when not already held (no repeat toggling). */
static void lock_key(u8 held_bit, u8 active_bit, int make)
{
    if (make && !(BDA8(BDA_KBD_FLAG1) & held_bit))
        BDA8(BDA_KBD_FLAG0) ^= active_bit;
    set_bit8(BDA_KBD_FLAG1, held_bit, make);
}

static void process_scancode(u8 code)
{
    u8 mode = BDA8(BDA_KBD_MODE);
    if (code == 0xE0) {
        BDA8(BDA_KBD_MODE) = mode | KF2_E0;
        return;
    }
    if (code == 0xE1) {
        BDA8(BDA_KBD_MODE) = mode | KF2_E1;
        return;
    }
    BDA8(BDA_KBD_MODE) = mode & (u8)~(KF2_E0 | KF2_E1);
    if (mode & KF2_E1)
        return;                 /* Pause sequence: ignored */
    int e0 = mode & KF2_E0;
    int make = !(code & 0x80);
    u8 sc = code & 0x7F;
    u8 f0 = BDA8(BDA_KBD_FLAG0);

    switch (sc) {
    case 0x2A:                  /* left shift (E0 2A is a fake shift: ignore) */
        if (!e0)
            set_bit8(BDA_KBD_FLAG0, KF0_LSHIFT, make);
        return;
    case 0x36:
        if (!e0)
            set_bit8(BDA_KBD_FLAG0, KF0_RSHIFT, make);
        return;
    case 0x1D:
    case 0x38: {
        u8 left = sc == 0x1D ? KF1_LCTRL : KF1_LALT;
        u8 right = sc == 0x1D ? KF2_RCTRL : KF2_RALT;
        u8 any = sc == 0x1D ? KF0_CTRL : KF0_ALT;
        if (e0)
            set_bit8(BDA_KBD_MODE, right, make);
        else
            set_bit8(BDA_KBD_FLAG1, left, make);
        int down = (BDA8(BDA_KBD_FLAG1) & left) || (BDA8(BDA_KBD_MODE) & right);
        set_bit8(BDA_KBD_FLAG0, any, down);
        return;
    }
    case 0x3A:
        lock_key(KF1_CAPS, KF0_CAPS, make);
        return;
    case 0x45:
        lock_key(KF1_NUM, KF0_NUM, make);
        return;
    case 0x46:
        lock_key(KF1_SCROLL, KF0_SCROLL, make);
        return;
    case 0x52:
        if (!(f0 & (KF0_CTRL | KF0_ALT)) && (e0 || !(f0 & KF0_NUM) || (f0 & (KF0_LSHIFT | KF0_RSHIFT))))
            lock_key(KF1_INSERT, KF0_INSERT, make);
        else
            set_bit8(BDA_KBD_FLAG1, KF1_INSERT, make);
        break;
    }
    if (!make || sc >= 0x59)
        return;

    const struct keymap *k = &keymap[sc];
    int shift = f0 & (KF0_LSHIFT | KF0_RSHIFT);
    u16 key;
    if (e0 && sc == 0x1C)                   /* keypad Enter */
        key = (f0 & KF0_CTRL) ? 0xE00A : 0xE00D;
    else if (e0 && sc == 0x35)              /* keypad / */
        key = (f0 & KF0_CTRL) ? 0x9500 : (f0 & KF0_ALT) ? 0xA400 : 0xE02F;
    else if (f0 & KF0_ALT)
        key = k->alt;
    else if (f0 & KF0_CTRL)
        key = k->ctrl;
    else if (sc >= 0x47 && sc <= 0x53 && sc != 0x4A && sc != 0x4E) {
        /* keypad: digits when NumLock xor Shift, gray keys always cursor keys */
        if (e0)
            key = (u16)(k->normal | 0xE0);
        else
            key = (!!(f0 & KF0_NUM) != !!shift) ? k->shift : k->normal;
    } else {
        int sh = shift;
        if ((f0 & KF0_CAPS) && is_letter(sc))
            sh = !sh;
        key = sh ? k->shift : k->normal;
    }
    if (e0 && (f0 & (KF0_ALT | KF0_CTRL)) && sc >= 0x47 && sc <= 0x53) {
        /* Alt+gray cursor keys have their own codes; Ctrl ones are above */
        if (f0 & KF0_ALT)
            key = (u16)((sc + 0x50) << 8);
    }
    if (key)
        enqueue_key(key);
}

void c_irq1(struct bregs *r)
{
    (void)r;
    u8 st = inb(KBC_STATUS);
    if ((st & KBC_STR_OBF) && !(st & KBC_STR_AUXDATA))
        process_scancode(inb(KBC_DATA));
    else if (st & KBC_STR_OBF)
        inb(KBC_DATA);
    outb(PIC_EOI, PIC1_CMD);
}

/* ---- INT 16h ---------------------------------------------------------------- */

/* Non-extended calls (AH=00/01) see extended keys in the old form. */
static u16 classic_key(u16 key)
{
    if ((key >> 8) == 0xE0)
        return (u16)(((key & 0xFF) == 0x2F ? 0x3500 : 0x1C00) | (key & 0xFF));
    if ((key & 0xFF) == 0xE0)
        return key & 0xFF00;
    return key;
}

static int peek_key(u16 *key)
{
    u16 head = BDA16(BDA_KBD_HEAD);
    if (head == BDA16(BDA_KBD_TAIL))
        return 0;
    *key = BDA16(head);
    return 1;
}

static void drop_key(void)
{
    u16 next = BDA16(BDA_KBD_HEAD) + 2;
    if (next >= BDA16(BDA_KBD_BUF_END))
        next = BDA16(BDA_KBD_BUF_START);
    BDA16(BDA_KBD_HEAD) = next;
}

void c_int16(struct bregs *r)
{
    u16 key;
    switch (r->ah) {
    case 0x00:
    case 0x10:                  /* entry.S waited until the buffer is non-empty */
        if (peek_key(&key)) {
            drop_key();
            r->ax = r->ah == 0x10 ? key : classic_key(key);
        } else {
            r->ax = 0;
        }
        break;
    case 0x01:
    case 0x11:
        if (peek_key(&key)) {
            r->ax = r->ah == 0x11 ? key : classic_key(key);
            set_zf(r, 0);
        } else {
            set_zf(r, 1);
        }
        break;
    case 0x02:
        r->al = BDA8(BDA_KBD_FLAG0);
        break;
    case 0x03:                  /* typematic: accepted, nothing to program */
        break;
    case 0x05:
        r->al = enqueue_key(r->cx) ? 1 : 0;
        set_cf(r, r->al);
        break;
    case 0x09:
        r->al = 0x30;           /* AH=0Ah and AH=10h-12h supported */
        break;
    case 0x0A:
        r->bx = 0xAB41;         /* MF2 keyboard ID */
        break;
    case 0x12: {
        u8 f1 = BDA8(BDA_KBD_FLAG1), m = BDA8(BDA_KBD_MODE);
        r->al = BDA8(BDA_KBD_FLAG0);
        /* AH: bit0 LCtrl, 1 LAlt, 2 RCtrl, 3 RAlt, 4 Scroll, 5 Num, 6 Caps, 7 SysRq held */
        r->ah = (u8)((f1 & (KF1_LCTRL | KF1_LALT)) | (m & (KF2_RCTRL | KF2_RALT))
                     | (f1 & (KF1_SCROLL | KF1_NUM | KF1_CAPS)) | ((f1 & 0x04) << 5));
        break;
    }
    }
}
