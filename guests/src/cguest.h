/* Shared helpers for the C guests started by cguest_boot.S (disktest, nettest).
 *
 * gcc -m16 -ffreestanding: 32-bit code with operand-size prefixes running in real mode
 * with CS=DS=ES=SS=0, so every object and low memory (IVT, BDA) is directly addressable.
 * Output goes to COM1 by polling; lines end in "\r\n". Only deterministic facts are
 * printed, so the output is byte-identical on any correct machine. */
#ifndef CGUEST_H
#define CGUEST_H

/* Not every guest uses every helper. */
#define HELPER static __attribute__((unused))

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;

#define B(a) (*(volatile u8 *)(a))
#define W(a) (*(volatile u16 *)(a))
#define D(a) (*(volatile u32 *)(a))

#define BDA_TICKS 0x46c         /* 18.2 Hz tick count the BIOS's IRQ 0 handler keeps */
#define TICKS_PER_SECOND 18

#define COM1 0x3f8
#define LSR_THRE 0x20

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1
#define SLAVE_VECTOR_BASE 0x70  /* the BIOS programs the slave PIC's ICW2 to 0x70 */

extern volatile u16 irq_counts[16];     /* bumped by the stubs in cguest_boot.S */
extern void isr_irq9(void), isr_irq14(void);

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

/* ---- results ---------------------------------------------------------------------------- */

HELPER u16 npass, nfail;

/* A result line is "PASS what[ details]" or "FAIL what[ details]: why":
 * verdict(err), the name and details, then reason(err). */
HELPER void verdict(const char *err)
{
    puts(err ? "FAIL " : "PASS ");
    if (err)
        nfail++;
    else
        npass++;
}

HELPER void reason(const char *err)
{
    if (err) {
        puts(": ");
        puts(err);
    }
}

HELPER int result(const char *what, const char *err)
{
    verdict(err);
    puts(what);
    reason(err);
    return !err;
}

HELPER void endl(void) { puts("\r\n"); }

HELPER void summary(const char *name)
{
    puts(name);
    puts(" done: ");
    putdec(npass);
    puts(" passed, ");
    putdec(nfail);
    puts(" failed\r\n");
}

/* ---- time and interrupts ------------------------------------------------------------------ */

HELPER u32 ticks(void) { return D(BDA_TICKS); }

/* Point the vector of slave-PIC line `irq` (8..15) at `handler` (segment 0). */
HELPER void set_slave_vector(int irq, void (*handler)(void))
{
    cli();
    D((SLAVE_VECTOR_BASE + irq - 8) * 4) = (u32)(u16)(u32)handler;   /* offset, segment 0 */
    sti();
}

HELPER void unmask_slave_irq(int irq)
{
    cli();
    outb(PIC1_DATA, inb(PIC1_DATA) & ~0x04);            /* the cascade line, IR2 */
    outb(PIC2_DATA, inb(PIC2_DATA) & ~(1 << (irq - 8)));
    sti();
}

/* Wait (halting between interrupts) until irq_counts[irq] != 0 or `timeout` ticks pass.
 * Returns nonzero if the interrupt came. Timer ticks wake the hlt, so this terminates. */
HELPER int wait_irq(int irq, u32 timeout)
{
    u32 start = ticks();
    for (;;) {
        cli();
        if (irq_counts[irq]) {
            sti();
            return 1;
        }
        if (ticks() - start > timeout) {
            sti();
            return 0;
        }
        sti_hlt();
    }
}

/* FNV-1a, 32 bits. */
HELPER u32 fnv1a(const void *data, u32 len)
{
    const u8 *p = data;
    u32 h = 0x811c9dc5u;
    while (len--) {
        h ^= *p++;
        h *= 0x01000193u;
    }
    return h;
}

#endif
