/* Shared helpers for the C guests started by cguest_boot.S (disktest, nettest, the virtio
 * guests): result lines, BIOS ticks, the slave PIC's interrupts; the base (types, port
 * I/O, COM1 output) is realmode.h. Only deterministic facts are printed, so the output is
 * byte-identical on any correct machine. */
#ifndef CGUEST_H
#define CGUEST_H

#include "realmode.h"

#define BDA_TICKS 0x46c         /* 18.2 Hz tick count the BIOS's IRQ 0 handler keeps */
#define TICKS_PER_SECOND 18

#define PIC1_CMD 0x20
#define PIC1_DATA 0x21
#define PIC2_DATA 0xa1
#define SLAVE_VECTOR_BASE 0x70  /* the BIOS programs the slave PIC's ICW2 to 0x70 */

extern volatile u16 irq_counts[16];     /* bumped by the stubs in cguest_boot.S */
extern void isr_irq9(void), isr_irq14(void);

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

/* Wait (halting between interrupts) until the interrupt count *count differs from `seen`
 * or `timeout` ticks pass. Returns nonzero if it changed. Timer ticks wake the hlt, so
 * this terminates. */
HELPER int wait_count(volatile u16 *count, u16 seen, u32 timeout)
{
    u32 start = ticks();
    for (;;) {
        cli();
        if (*count != seen) {
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

/* Until irq_counts[irq] != 0 (an interrupt came on the line) or `timeout` ticks pass. */
HELPER int wait_irq(int irq, u32 timeout) { return wait_count(&irq_counts[irq], 0, timeout); }

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
