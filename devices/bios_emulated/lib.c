/* Freestanding helpers: gcc may emit calls to memset/memcpy/memmove. */
#include "bios.h"

void *memset(void *d, int c, u32 n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, u32 n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

void *memmove(void *d, const void *s, u32 n)
{
    u8 *p = d;
    const u8 *q = s;
    if (p < q)
        return memcpy(d, s, n);
    while (n--)
        p[n] = q[n];
    return d;
}

/* 16550 line status register bit 5: transmitter holding register empty. */
#define UART_LSR 5
#define UART_LSR_THRE 0x20

static void serial_putc(char c)
{
    /* Bounded wait: an absent UART reads 0xFF (THRE set) anyway. */
    for (int i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & UART_LSR_THRE); i++)
        ;
    outb((u8)c, COM1);
}

void serial_puts(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s);
    }
}

u8 bcd2bin(u8 v) { return (u8)((v >> 4) * 10 + (v & 0x0F)); }
u8 bin2bcd(u8 v) { return (u8)(((v / 10) << 4) | (v % 10)); }
