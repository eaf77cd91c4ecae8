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

/* EBDA (1 KiB at the top of base memory, segment in BDA 0x0E). Offsets:
 *   0x000 size in KiB (1)          0x004 saved caller ESP (call32)
 *   0x008 saved caller SS          0x00A saved caller GDTR (6 bytes)
 *   0x010-0x03F free               0x040-0x3FF C stack (grows down from 0x400) */
#define EBDA_SIZE_KB 0x00
#define EBDA_STACK_TOP 0x400

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

/* Host disk port (the project's stand-in for disk controllers). */
#define HD_PORT 0x5F0
enum {
    HD_COMMAND = 0x00, HD_STATUS = 0x00, HD_DRIVE = 0x04, HD_LBA = 0x08,
    HD_COUNT = 0x0C, HD_BUFFER = 0x10, HD_TOTAL = 0x14, HD_CYLS = 0x18,
    HD_HEADS = 0x1C, HD_SPT = 0x20, HD_TYPE = 0x24, HD_FLOPPY_TYPE = 0x28,
};
enum { HD_CMD_READ = 1, HD_CMD_WRITE = 2, HD_CMD_IDENTIFY = 3 };
enum { HD_OK = 0, HD_NO_DRIVE = 1, HD_OUT_OF_RANGE = 2, HD_WRITE_PROTECTED = 3,
       HD_BAD_BUFFER = 4, HD_BAD_COMMAND = 5 };
enum { HD_TYPE_NONE = 0, HD_TYPE_FLOPPY = 1, HD_TYPE_DISK = 2 };

struct drive_geom {
    u32 total, cyls, heads, spt, type, floppy_type;
};
int hostdisk_identify(u8 drive, struct drive_geom *g);

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
extern const char boot_fail_halt[];

#define ASM_OFF(p) ((u16)(u32)(p))
/* Offset in segment F000 of C data in ROM (linked at flat addresses). */
#define ROM_OFF(p) ((u16)((u32)(p) - BIOS_BASE))

#endif
