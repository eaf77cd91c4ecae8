/* Shared definitions for the emulated BIOS's 32-bit C part.
 *
 * The C code runs in 32-bit flat protected mode (entered from real mode by
 * call32 in entry.S) with interrupts disabled, on a stack at the top of the
 * EBDA. It must not have writable globals: the ROM at 0xF0000 is read-only,
 * so all state lives in the BDA (0x400) and the EBDA. */
#ifndef BIOS_H
#define BIOS_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed int s32;

#define BIOS_BASE 0xF0000u
#define BIOS_SEG 0xF000u

/* The caller's registers as entry.S pushed them on the caller's stack
 * (pushw ds, es, fs, gs; pushal) under the INT's IP/CS/FLAGS frame. The
 * C code edits them; entry.S pops them back and irets with FLAGS. */
#define REG32(e, x, l, h) union { u32 e; u16 x; struct { u8 l, h; }; }
struct bregs {
    union { u32 edi; u16 di; };
    union { u32 esi; u16 si; };
    union { u32 ebp; u16 bp; };
    u32 esp_unused;
    REG32(ebx, bx, bl, bh);
    REG32(edx, dx, dl, dh);
    REG32(ecx, cx, cl, ch);
    REG32(eax, ax, al, ah);
    u16 gs, fs, es, ds;
    u16 ip, cs, flags;
} __attribute__((packed));

#define F_CF 0x0001
#define F_ZF 0x0040
#define F_IF 0x0200

static inline void set_cf(struct bregs *r, int on)
{ if (on) r->flags |= F_CF; else r->flags &= ~F_CF; }
static inline void set_zf(struct bregs *r, int on)
{ if (on) r->flags |= F_ZF; else r->flags &= ~F_ZF; }
/* RBIL's "function not supported": CF set, AH=86h. */
static inline void set_unsupported(struct bregs *r) { r->ah = 0x86; set_cf(r, 1); }

/* Flat physical memory. */
#define MEM8(a)  (*(volatile u8 *)(u32)(a))
#define MEM16(a) (*(volatile u16 *)(u32)(a))
#define MEM32(a) (*(volatile u32 *)(u32)(a))
#define FLAT(seg, off) ((((u32)(u16)(seg)) << 4) + (u16)(off))

/* BIOS data area (segment 0x40), offsets as in the IBM AT tech ref / RBIL. */
#define BDA 0x400u
#define BDA8(o)  MEM8(BDA + (o))
#define BDA16(o) MEM16(BDA + (o))
#define BDA32(o) MEM32(BDA + (o))
enum {
    BDA_COM1 = 0x00, BDA_EQUIPMENT = 0x10, BDA_MEMSIZE_KB = 0x13,
    BDA_EBDA_SEG = 0x0E, BDA_KBD_FLAG0 = 0x17, BDA_KBD_FLAG1 = 0x18,
    BDA_KBD_HEAD = 0x1A, BDA_KBD_TAIL = 0x1C, BDA_KBD_BUF = 0x1E,
    BDA_FLOPPY_STATUS = 0x41,
    BDA_VIDEO_MODE = 0x49, BDA_VIDEO_COLS = 0x4A, BDA_VIDEO_PAGESIZE = 0x4C,
    BDA_VIDEO_PAGESTART = 0x4E, BDA_CURSOR_POS = 0x50, BDA_CURSOR_TYPE = 0x60,
    BDA_VIDEO_PAGE = 0x62, BDA_CRTC_ADDR = 0x63, BDA_VIDEO_MSR = 0x65,
    BDA_VIDEO_PAL = 0x66, BDA_TICKS = 0x6C, BDA_MIDNIGHT = 0x70,
    BDA_DISK_STATUS = 0x74, BDA_HD_COUNT = 0x75, BDA_COM_TIMEOUT = 0x7C,
    BDA_KBD_BUF_START = 0x80, BDA_KBD_BUF_END = 0x82,
    BDA_VIDEO_ROWS = 0x84, BDA_CHAR_HEIGHT = 0x85, BDA_VIDEO_CTL = 0x87,
    BDA_VIDEO_SWITCHES = 0x88, BDA_MODESET_CTL = 0x89, BDA_KBD_MODE = 0x96,
    BDA_KBD_LED = 0x97,
};

/* EBDA (2 KiB at the top of base memory, segment in BDA 0x0E). Offsets:
 *   0x000 size in KiB (2)          0x004 saved caller ESP (call32)
 *   0x008 saved caller SS          0x00A saved caller GDTR (6 bytes)
 *   0x010-0x03F disk table (struct disk_table)
 *   0x040-0x1FF free
 *   0x200-0x3FF diskette DMA bounce buffer (512-aligned: never crosses 64 KiB)
 *   0x400-0x7FF C stack (grows down from 0x800; entry.S has the same number) */
#define EBDA_KB 2
#define EBDA_SIZE_KB 0x00
#define EBDA_BOUNCE 0x200
#define EBDA_STACK_TOP 0x800

static inline u32 ebda_base(void) { return (u32)BDA16(BDA_EBDA_SEG) << 4; }

/* Port I/O. */
static inline void outb(u8 v, u16 port) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 v, u16 port) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u32 v, u16 port) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* 8259A */
#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_CMD 0xA0
#define PIC2_DATA 0xA1
#define PIC_EOI 0x20

/* CMOS / RTC (MC146818) */
#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71
enum {
    CMOS_SECONDS = 0x00, CMOS_MINUTES = 0x02, CMOS_HOURS = 0x04,
    CMOS_DAY = 0x07, CMOS_MONTH = 0x08, CMOS_YEAR = 0x09,
    CMOS_STATUS_A = 0x0A, CMOS_STATUS_B = 0x0B, CMOS_STATUS_C = 0x0C,
    CMOS_STATUS_D = 0x0D, CMOS_SHUTDOWN = 0x0F, CMOS_FLOPPY_TYPES = 0x10,
    CMOS_BASE_LO = 0x15, CMOS_BASE_HI = 0x16, CMOS_EXT_LO = 0x17, CMOS_EXT_HI = 0x18,
    CMOS_EXT2_LO = 0x30, CMOS_EXT2_HI = 0x31, CMOS_CENTURY = 0x32,
    CMOS_MEM16M_LO = 0x34, CMOS_MEM16M_HI = 0x35,
    CMOS_MEM4G_LO = 0x5B, CMOS_MEM4G_MID = 0x5C, CMOS_MEM4G_HI = 0x5D,
};
#define RTC_A_UIP 0x80
#define RTC_B_SET 0x80
#define RTC_B_BINARY 0x04
#define RTC_B_24HR 0x02
#define RTC_B_DSE 0x01

static inline u8 cmos_read(u8 reg) { outb(reg, CMOS_INDEX); return inb(CMOS_DATA); }
static inline void cmos_write(u8 reg, u8 v) { outb(reg, CMOS_INDEX); outb(v, CMOS_DATA); }

/* ---- disks ---------------------------------------------------------------- */

/* More BDA bytes the disk code keeps (IBM AT tech ref names). */
enum {
    BDA_FD_RECAL = 0x3E,        /* bits 0-1 drive calibrated, bit 7 IRQ 6 seen */
    BDA_FD_MOTOR = 0x3F,        /* bits 0-1 motor on, bit 7 write in progress */
    BDA_FD_MOTOR_TICKS = 0x40,  /* ticks until IRQ 0 turns the motors off */
    BDA_FD_RESULT = 0x42,       /* 7 result bytes of the last FDC command */
    BDA_HD_IRQ = 0x8E,          /* FFh once IRQ 14/15 came */
    BDA_FD_CYL = 0x94,          /* present cylinder, drive 0 and 1 */
};
#define FD_RECAL_IRQ 0x80

/* Drives found at POST, kept in the EBDA at offset 0x10 (0x10-0x3F is free). */
#define EBDA_DISKS 0x10
#define MAX_HD 4
struct ata_drive {
    u8 where;                   /* bit 0 slave, bit 1 secondary channel */
    u8 heads, spt, pad;
    u16 cyls;                   /* IDENTIFY words 1/3/6: default CHS */
    u32 total;                  /* words 60-61: LBA28 capacity */
} __attribute__((packed));
struct disk_table {
    u8 hd_count;
    u8 fd_type[2];              /* CMOS 0x10 nibbles: 4 = 1.44 MB etc. */
    u8 pad;
    struct ata_drive hd[MAX_HD];
} __attribute__((packed));
_Static_assert(EBDA_DISKS + sizeof(struct disk_table) <= 0x40, "disk table overlaps the C stack");
static inline struct disk_table *disk_table(void)
{ return (struct disk_table *)(ebda_base() + EBDA_DISKS); }

/* INT 13h status codes (RBIL table 00234). */
enum {
    DISK_RET_SUCCESS = 0x00, DISK_RET_EPARAM = 0x01, DISK_RET_EADDRNOTFOUND = 0x02,
    DISK_RET_EWRITEPROTECT = 0x03, DISK_RET_ENOTFOUND = 0x04, DISK_RET_EDMA = 0x08,
    DISK_RET_EBOUNDARY = 0x09, DISK_RET_EBADTRACK = 0x0C, DISK_RET_ECC = 0x10,
    DISK_RET_ECONTROLLER = 0x20, DISK_RET_ESEEK = 0x40, DISK_RET_ETIMEOUT = 0x80,
    DISK_RET_ENOTREADY = 0xAA,
};

/* ata.c / floppy.c: transfer count sectors between LBA lba and flat buffer buf.
 * Return an INT 13h status; *done = sectors moved before any error. */
int ata_probe(u8 where, struct ata_drive *d);
u8 ata_rw(const struct ata_drive *d, int write, u32 lba, u32 count, u32 buf, u32 *done);
u8 floppy_rw(u8 drive, int write, u32 lba, u32 count, u32 buf, u32 *done);
void floppy_reset_request(void);
struct fd_geom { u8 cyls, heads, spt, rate; };
const struct fd_geom *floppy_geom(u8 type);
void disk_post(void);

/* Ticks (BDA 0x46C) since start, across midnight. */
u32 ticks_since(u32 start);

/* entry.S: from C, drop to real mode and sti;hlt once with only IRQ 0, the
 * cascade and IRQ irq unmasked (so no handler re-enters call32), then return. */
void rm_wait(u32 irq);

/* Serial (16550 COM1). */
#define COM1 0x3F8

/* Library (lib.c). */
void *memset(void *d, int c, u32 n);
void *memcpy(void *d, const void *s, u32 n);
void *memmove(void *d, const void *s, u32 n);
void serial_puts(const char *s);
u8 bcd2bin(u8 v);
u8 bin2bcd(u8 v);

/* Video (video.c). */
void video_set_mode(u8 mode);
void video_puts(const char *s);
extern const u8 font8x8[256 * 8];
extern const u8 font8x16[256 * 16];

/* Keyboard (kbd.c). */
void kbd_post(void);

/* Memory size from CMOS (misc.c): first byte above usable RAM below 4G. */
u32 ram_top(void);
u16 base_mem_kb(void);

/* ROM tables (tables.c). */
extern const u8 diskette_param_table[11];
extern const u8 bios_config_table[10];

/* Real-mode entry points in entry.S. rom.ld links them at their offsets in
 * segment F000, so their "address" is that offset (use ASM_OFF). */
extern const char entry_iret[], entry_irq_master[], entry_irq_slave[];
extern const char entry_irq0[], entry_irq1[], entry_int10[], entry_int11[];
extern const char entry_int12[], entry_int13[], entry_int15[], entry_int16[];
extern const char entry_int19[], entry_int1a[], entry_int18[];
extern const char entry_irq6[], entry_irq14[], entry_irq15[];
extern const char boot_fail_halt[];

#define ASM_OFF(p) ((u16)(u32)(p))
/* Offset in segment F000 of C data in ROM (linked at flat addresses). */
#define ROM_OFF(p) ((u16)((u32)(p) - BIOS_BASE))

#endif
