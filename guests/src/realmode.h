/* The freestanding base every real-mode C guest shares (bioscheck, and through cguest.h
 * the hardware tests): types, port I/O, far access, the mem* functions gcc may call, and
 * polled COM1 output.
 *
 * gcc -m16 -ffreestanding: 32-bit code with operand-size prefixes running in real mode
 * with CS=DS=ES=SS=0, so every C object and low memory (IVT, BDA) is directly addressable;
 * other segments are reached through FS (peek/poke). Lines end in "\r\n". */
#ifndef REALMODE_H
#define REALMODE_H

/* Not every guest uses every helper. */
#define HELPER static __attribute__((unused))

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

/* Low memory (segment 0) is directly addressable. */
#define B(a) (*(volatile u8 *)(a))
#define W(a) (*(volatile u16 *)(a))
#define D(a) (*(volatile u32 *)(a))

#define COM1 0x3f8
#define LSR_THRE 0x20

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u16 inw(u16 port)
{
    u16 v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
/* sti's one-instruction shadow makes "sti; hlt" atomic: an interrupt that became
 * pending after the caller's check (made with IF=0) wakes the hlt instead of being lost. */
static inline void sti_hlt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

/* ---- far access: seg:off through FS, one move of exactly the named width ----------------- */

static inline u8 peekb(u16 seg, u16 off)
{
    u8 v;
    __asm__ volatile("movw %w1, %%fs\n\tmovb %%fs:(%k2), %0" : "=q"(v) : "r"(seg), "r"((u32)off) : "memory");
    return v;
}
static inline u16 peekw(u16 seg, u16 off)
{
    u16 v;
    __asm__ volatile("movw %w1, %%fs\n\tmovw %%fs:(%k2), %0" : "=r"(v) : "r"(seg), "r"((u32)off) : "memory");
    return v;
}
static inline u32 peekl(u16 seg, u16 off)
{
    u32 v;
    __asm__ volatile("movw %w1, %%fs\n\tmovl %%fs:(%k2), %0" : "=r"(v) : "r"(seg), "r"((u32)off) : "memory");
    return v;
}
static inline void pokeb(u16 seg, u16 off, u8 v)
{
    __asm__ volatile("movw %w0, %%fs\n\tmovb %1, %%fs:(%k2)" : : "r"(seg), "q"(v), "r"((u32)off) : "memory");
}
static inline void pokew(u16 seg, u16 off, u16 v)
{
    __asm__ volatile("movw %w0, %%fs\n\tmovw %1, %%fs:(%k2)" : : "r"(seg), "r"(v), "r"((u32)off) : "memory");
}
static inline void pokel(u16 seg, u16 off, u32 v)
{
    __asm__ volatile("movw %w0, %%fs\n\tmovl %1, %%fs:(%k2)" : : "r"(seg), "r"(v), "r"((u32)off) : "memory");
}

/* gcc may emit calls to these even when freestanding. */
void *memset(void *d, int c, unsigned n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}
void *memcpy(void *d, const void *s, unsigned n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}
int memcmp(const void *a, const void *b, unsigned n)
{
    const u8 *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

/* ---- COM1 ------------------------------------------------------------------------------ */

HELPER void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* IER: we poll */
    outb(COM1 + 3, 0x80);   /* LCR: DLAB to reach the divisor latch */
    outb(COM1 + 0, 0x01);   /* DLL: 115200 baud */
    outb(COM1 + 1, 0x00);   /* DLM */
    outb(COM1 + 3, 0x03);   /* LCR: 8N1 */
    outb(COM1 + 2, 0x07);   /* FCR: FIFOs on and cleared */
    outb(COM1 + 4, 0x03);   /* MCR: DTR | RTS */
}

HELPER void putc(char c)
{
    for (u16 i = 0; i < 0xffff && !(inb(COM1 + 5) & LSR_THRE); i++)
        ;   /* bounded so a machine without a UART still finishes */
    outb(COM1, (u8)c);
}

HELPER void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

HELPER void putdec(u32 v)
{
    char buf[11];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        putc(buf[--i]);
}

/* Exactly `digits` lower-case hex digits. */
HELPER void puthexn(u32 v, int digits)
{
    for (int sh = (digits - 1) * 4; sh >= 0; sh -= 4)
        putc("0123456789abcdef"[(v >> sh) & 15]);
}

HELPER void halt(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

#endif
