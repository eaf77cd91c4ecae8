/* POST, INT 15h (memory map, A20, misc) and INT 1Ah (time). */
#include "bios.h"

#define KiB 1024u
#define MiB (1024u * KiB)
#define TICKS_PER_DAY 0x1800B0u

#define PORT_A20 0x92           /* "fast A20" system control port A */
#define A20_ENABLE_BIT 0x02
#define A20_RESET_BIT 0x01      /* writing 1 resets the CPU: always write 0 */

#define PIT_CH0 0x40
#define PIT_MODE 0x43
#define PIT_CH0_LOHI_MODE3 0x36 /* channel 0, lobyte/hibyte, mode 3, binary */

u16 base_mem_kb(void)
{
    /* entry.S already derived the EBDA segment from CMOS 0x15/0x16. */
    return (u16)((BDA16(BDA_EBDA_SEG) >> 6) + EBDA_KB);
}

/* First byte above RAM below 4 GiB: CMOS 0x34/0x35 (64 KiB units above
 * 16 MiB) when set, else CMOS 0x30/0x31 (KiB above 1 MiB; 0x17/0x18 mirror). */
u32 ram_top(void)
{
    u32 above16 = cmos_read(CMOS_MEM16M_LO) | (u32)cmos_read(CMOS_MEM16M_HI) << 8;
    if (above16)
        return 16 * MiB + above16 * 64 * KiB;
    u32 ext = cmos_read(CMOS_EXT2_LO) | (u32)cmos_read(CMOS_EXT2_HI) << 8;
    if (!ext)
        ext = cmos_read(CMOS_EXT_LO) | (u32)cmos_read(CMOS_EXT_HI) << 8;
    return 1 * MiB + ext * KiB;
}

/* ---- E820 ------------------------------------------------------------------ */

struct e820_entry { u32 base_lo, base_hi, len_lo, len_hi, type; } __attribute__((packed));
enum { E820_RAM = 1, E820_RESERVED = 2 };
#define SMAP 0x534D4150u

static int e820_get(u32 index, struct e820_entry *e)
{
    u32 ebda = ebda_base(), top = ram_top();
    u32 above4g = cmos_read(CMOS_MEM4G_LO) | (u32)cmos_read(CMOS_MEM4G_MID) << 8
                  | (u32)cmos_read(CMOS_MEM4G_HI) << 16;     /* 64 KiB units */
    memset(e, 0, sizeof(*e));
    switch (index) {
    case 0: e->len_lo = ebda; e->type = E820_RAM; return 0;
    case 1: e->base_lo = ebda; e->len_lo = 0xA0000 - ebda; e->type = E820_RESERVED; return 0;
    case 2: e->base_lo = 0xF0000; e->len_lo = 0x10000; e->type = E820_RESERVED; return 0;
    }
    if (top <= MiB)
        index++;                /* no extended memory: skip that entry */
    if (index == 3) {
        e->base_lo = MiB;
        e->len_lo = top - MiB;
        e->type = E820_RAM;
        return 0;
    }
    if (index == 4 && above4g) {
        e->base_hi = 1;
        e->len_lo = above4g << 16;
        e->len_hi = above4g >> 16;
        e->type = E820_RAM;
        return 0;
    }
    return -1;
}

static void int15_e820(struct bregs *r)
{
    struct e820_entry e;
    if (r->edx != SMAP || r->ecx < 20 || e820_get(r->ebx, &e)) {
        set_unsupported(r);
        return;
    }
    memcpy((void *)FLAT(r->es, r->di), &e, sizeof(e));
    struct e820_entry next;
    r->ebx = e820_get(r->ebx + 1, &next) ? 0 : r->ebx + 1;
    r->eax = SMAP;
    r->ecx = sizeof(e);
    set_cf(r, 0);
}

/* INT 15h AH=87h: copy CX words between the descriptors at ES:SI+10h/18h. */
static void int15_block_move(struct bregs *r)
{
    u32 gdt = FLAT(r->es, r->si);
    u32 src = MEM16(gdt + 0x12) | (u32)MEM8(gdt + 0x14) << 16 | (u32)MEM8(gdt + 0x17) << 24;
    u32 dst = MEM16(gdt + 0x1A) | (u32)MEM8(gdt + 0x1C) << 16 | (u32)MEM8(gdt + 0x1F) << 24;
    memmove((void *)dst, (void *)src, r->cx * 2u);
    r->ah = 0;
    set_cf(r, 0);
}

static int a20_enabled(void) { return (inb(PORT_A20) & A20_ENABLE_BIT) != 0; }
static void a20_set(int on)
{
    u8 v = inb(PORT_A20) & (u8)~(A20_ENABLE_BIT | A20_RESET_BIT);
    outb(on ? (u8)(v | A20_ENABLE_BIT) : v, PORT_A20);
}

void c_int15(struct bregs *r)
{
    if (r->ax == 0xE820) {
        int15_e820(r);
        return;
    }
    switch (r->ax) {
    case 0xE801: {
        u32 top = ram_top();
        u32 kb_1m_16m = top > 16 * MiB ? 15 * KiB : top > MiB ? (top - MiB) / KiB : 0;
        u32 blocks = top > 16 * MiB ? (top - 16 * MiB) / (64 * KiB) : 0;
        r->ax = r->cx = (u16)kb_1m_16m;
        r->bx = r->dx = (u16)(blocks > 0xFFFF ? 0xFFFF : blocks);
        set_cf(r, 0);
        return;
    }
    case 0x2400:
    case 0x2401:
        a20_set(r->al);
        r->ah = 0;
        set_cf(r, 0);
        return;
    case 0x2402:
        r->al = (u8)a20_enabled();
        r->ah = 0;
        set_cf(r, 0);
        return;
    case 0x2403:
        r->bx = 0x0003;         /* supported via 8042 and port 92h */
        r->ah = 0;
        set_cf(r, 0);
        return;
    }
    switch (r->ah) {
    case 0x88: {
        u32 top = ram_top();
        u32 kb = top > MiB ? (top - MiB) / KiB : 0;
        r->ax = (u16)(kb > 0xFFFF ? 0xFFFF : kb);
        set_cf(r, 0);
        return;
    }
    case 0x87:
        int15_block_move(r);
        return;
    case 0xC0:
        r->es = BIOS_SEG;
        r->bx = ROM_OFF(bios_config_table);
        r->ah = 0;
        set_cf(r, 0);
        return;
    case 0x4F:                  /* keyboard intercept: key not consumed */
        set_cf(r, 1);
        return;
    case 0x90:                  /* device busy / interrupt complete */
    case 0x91:
        r->ah = 0;
        set_cf(r, 0);
        return;
    }
    set_unsupported(r);
}

/* ---- INT 1Ah ------------------------------------------------------------------- */

static int rtc_wait_update(void)
{
    for (int i = 0; i < 100000; i++)
        if (!(cmos_read(CMOS_STATUS_A) & RTC_A_UIP))
            return 0;
    return -1;
}

/* RTC registers always reach the caller as BCD, 24-hour. */
static u8 rtc_get(u8 reg)
{
    u8 b = cmos_read(CMOS_STATUS_B), v = cmos_read(reg);
    if (reg == CMOS_HOURS && !(b & RTC_B_24HR)) {
        u8 pm = v & 0x80, h = v & 0x7F;
        if (!(b & RTC_B_BINARY))
            h = bcd2bin(h);
        h %= 12;
        if (pm)
            h += 12;
        return bin2bcd(h);
    }
    return (b & RTC_B_BINARY) ? bin2bcd(v) : v;
}

static void rtc_put(u8 reg, u8 bcd)
{
    u8 b = cmos_read(CMOS_STATUS_B);
    u8 v = bcd;
    if (reg == CMOS_HOURS && !(b & RTC_B_24HR)) {
        u8 h = bcd2bin(bcd), pm = h >= 12;
        h %= 12;
        if (!h)
            h = 12;
        v = (u8)(((b & RTC_B_BINARY) ? h : bin2bcd(h)) | (pm ? 0x80 : 0));
    } else if (b & RTC_B_BINARY) {
        v = bcd2bin(bcd);
    }
    cmos_write(reg, v);
}

void c_int1a(struct bregs *r)
{
    switch (r->ah) {
    case 0x00: {
        u32 t = BDA32(BDA_TICKS);
        r->cx = (u16)(t >> 16);
        r->dx = (u16)t;
        r->al = BDA8(BDA_MIDNIGHT);
        BDA8(BDA_MIDNIGHT) = 0;
        set_cf(r, 0);
        break;
    }
    case 0x01:
        BDA32(BDA_TICKS) = (u32)r->cx << 16 | r->dx;
        BDA8(BDA_MIDNIGHT) = 0;
        set_cf(r, 0);
        break;
    case 0x02:
        if (rtc_wait_update()) {
            set_cf(r, 1);
            break;
        }
        r->dh = rtc_get(CMOS_SECONDS);
        r->cl = rtc_get(CMOS_MINUTES);
        r->ch = rtc_get(CMOS_HOURS);
        r->dl = cmos_read(CMOS_STATUS_B) & RTC_B_DSE;
        r->ah = 0;
        set_cf(r, 0);
        break;
    case 0x03: {
        rtc_wait_update();
        u8 b = cmos_read(CMOS_STATUS_B);
        cmos_write(CMOS_STATUS_B, b | RTC_B_SET);
        rtc_put(CMOS_SECONDS, r->dh);
        rtc_put(CMOS_MINUTES, r->cl);
        rtc_put(CMOS_HOURS, r->ch);
        cmos_write(CMOS_STATUS_B, (u8)((b & ~(RTC_B_SET | RTC_B_DSE)) | (r->dl & RTC_B_DSE)));
        r->ah = 0;
        set_cf(r, 0);
        break;
    }
    case 0x04:
        if (rtc_wait_update()) {
            set_cf(r, 1);
            break;
        }
        r->dl = rtc_get(CMOS_DAY);
        r->dh = rtc_get(CMOS_MONTH);
        r->cl = rtc_get(CMOS_YEAR);
        r->ch = cmos_read(CMOS_CENTURY);
        r->ah = 0;
        set_cf(r, 0);
        break;
    case 0x05: {
        rtc_wait_update();
        u8 b = cmos_read(CMOS_STATUS_B);
        cmos_write(CMOS_STATUS_B, b | RTC_B_SET);
        rtc_put(CMOS_DAY, r->dl);
        rtc_put(CMOS_MONTH, r->dh);
        rtc_put(CMOS_YEAR, r->cl);
        cmos_write(CMOS_CENTURY, r->ch);
        cmos_write(CMOS_STATUS_B, b & (u8)~RTC_B_SET);
        r->ah = 0;
        set_cf(r, 0);
        break;
    }
    default:
        set_cf(r, 1);
        break;
    }
}

/* ---- POST ---------------------------------------------------------------------- */

static void set_vector_off(u8 n, u16 off)
{
    MEM16(n * 4u) = off;
    MEM16(n * 4u + 2) = BIOS_SEG;
}
#define set_vector(n, asm_entry) set_vector_off((u8)(n), ASM_OFF(asm_entry))

static void pic_setup(void)
{
    outb(0x11, PIC1_CMD);       /* ICW1: edge, cascade, ICW4 needed */
    outb(0x11, PIC2_CMD);
    outb(0x08, PIC1_DATA);      /* ICW2: master vectors 08h-0Fh */
    outb(0x70, PIC2_DATA);      /*       slave vectors 70h-77h */
    outb(0x04, PIC1_DATA);      /* ICW3: slave on IRQ2 */
    outb(0x02, PIC2_DATA);      /*       slave identity 2 */
    outb(0x01, PIC1_DATA);      /* ICW4: 8086 mode */
    outb(0x01, PIC2_DATA);
    outb(0xB8, PIC1_DATA);      /* OCW1: IRQ 0, 1, 2 and 6 (diskette) unmasked */
    outb(0x3F, PIC2_DATA);      /*       IRQ 14, 15 (ATA) unmasked */
}

/* A CPU with a local APIC comes out of reset with it software-disabled and
 * LINT0 masked (QEMU's does), which blocks the 8259's INTR. Put it in
 * virtual wire mode as SeaBIOS does: LINT0 = ExtINT, LINT1 = NMI. */
#define CPUID_APIC (1u << 9)
#define LAPIC_SVR 0xFEE000F0u
#define LAPIC_SVR_ENABLE 0x100
#define LAPIC_LINT0 0xFEE00350u
#define LAPIC_LINT1 0xFEE00360u
#define LVT_EXTINT_LEVEL 0x8700
#define LVT_NMI_LEVEL 0x8400

static void lapic_virtual_wire(void)
{
    u32 a = 1, b, c, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d));
    if (!(d & CPUID_APIC))
        return;
    MEM32(LAPIC_SVR) = MEM32(LAPIC_SVR) | LAPIC_SVR_ENABLE;
    MEM32(LAPIC_LINT0) = LVT_EXTINT_LEVEL;
    MEM32(LAPIC_LINT1) = LVT_NMI_LEVEL;
}

static void pit_setup(void)
{
    outb(PIT_CH0_LOHI_MODE3, PIT_MODE);
    outb(0, PIT_CH0);           /* count 0 = 65536: 18.2 Hz */
    outb(0, PIT_CH0);
}

static void rtc_setup(void)
{
    cmos_write(CMOS_STATUS_A, 0x26);    /* 32.768 kHz base, 1024 Hz rate */
    u8 b = cmos_read(CMOS_STATUS_B);
    cmos_write(CMOS_STATUS_B, (u8)((b & ~RTC_B_SET) | RTC_B_24HR));
    cmos_read(CMOS_STATUS_C);
    cmos_read(CMOS_STATUS_D);
}

/* Tick count of the current RTC time of day (18.2065 ticks per second). */
static u32 ticks_from_rtc(void)
{
    if (rtc_wait_update())
        return 0;
    u32 s = bcd2bin(rtc_get(CMOS_SECONDS)) + bcd2bin(rtc_get(CMOS_MINUTES)) * 60u
            + bcd2bin(rtc_get(CMOS_HOURS)) * 3600u;
    u32 t = s * 18 + s * 2065 / 10000;
    return t < TICKS_PER_DAY ? t : 0;
}

void c_post(struct bregs *r)
{
    (void)r;
    u16 ebda_seg = BDA16(BDA_EBDA_SEG);     /* set by entry.S */
    u16 basemem = base_mem_kb();

    for (u32 n = 0; n < 256; n++)
        set_vector((u8)n, entry_iret);
    for (u32 n = 0x08; n < 0x10; n++)
        set_vector((u8)n, entry_irq_master);
    for (u32 n = 0x70; n < 0x78; n++)
        set_vector((u8)n, entry_irq_slave);
    set_vector(0x08, entry_irq0);
    set_vector(0x09, entry_irq1);
    set_vector(0x10, entry_int10);
    set_vector(0x11, entry_int11);
    set_vector(0x12, entry_int12);
    set_vector(0x13, entry_int13);
    set_vector(0x15, entry_int15);
    set_vector(0x16, entry_int16);
    set_vector(0x18, entry_int18);
    set_vector(0x19, entry_int19);
    set_vector(0x1A, entry_int1a);
    set_vector(0x0E, entry_irq6);
    set_vector(0x76, entry_irq14);
    set_vector(0x77, entry_irq15);
    set_vector_off(0x1E, ROM_OFF(diskette_param_table));
    set_vector_off(0x43, ROM_OFF(font8x8));
    MEM32(0x1F * 4) = 0;        /* no user font for chars 80h-FFh */
    MEM32(0x1D * 4) = 0;

    memset((void *)BDA, 0, 0x100);
    BDA16(BDA_EBDA_SEG) = ebda_seg;
    /* The EBDA's first byte is its size in KiB; the rest of it holds
     * call32's saved state and our stack, so it is not cleared here. */
    MEM8(ebda_base() + EBDA_SIZE_KB) = EBDA_KB;
    BDA16(BDA_MEMSIZE_KB) = (u16)(basemem - EBDA_KB);
    BDA16(BDA_COM1) = COM1;
    BDA8(BDA_COM_TIMEOUT) = 0x0A;
    BDA16(BDA_KBD_HEAD) = BDA_KBD_BUF;
    BDA16(BDA_KBD_TAIL) = BDA_KBD_BUF;
    BDA16(BDA_KBD_BUF_START) = BDA_KBD_BUF;
    BDA16(BDA_KBD_BUF_END) = BDA_KBD_BUF + 32;
    BDA8(BDA_KBD_MODE) = 0x10;  /* 101/102-key keyboard */
    BDA8(BDA_MODESET_CTL) = 0x51;

    lapic_virtual_wire();
    pic_setup();
    pit_setup();
    rtc_setup();
    BDA32(BDA_TICKS) = ticks_from_rtc();

    /* Drives: diskette types from CMOS 0x10, ATA disks by IDENTIFY DEVICE. */
    disk_post();
    struct disk_table *t = disk_table();
    u16 floppies = (t->fd_type[0] != 0) + (t->fd_type[1] != 0);
    BDA8(BDA_HD_COUNT) = t->hd_count;

    /* Equipment: FPU, 80x25 colour, 1 serial port, floppies. */
    u16 equip = 0x0002 | 0x0020 | (1 << 9);
    if (floppies)
        equip |= 0x0001 | (u16)((floppies - 1) << 6);
    BDA16(BDA_EQUIPMENT) = equip;

    kbd_post();
    video_set_mode(0x03);
}
