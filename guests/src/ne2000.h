/* NE2000 driver for the IPv4 host of ipv4.h (ARP, ICMP echo), shared by nettest and netpeer.
 *
 * The card is an NE2000 (DP8390 core) at I/O base 0x300, IRQ 9, driven by port I/O.
 * Receive is interrupt driven where the card allows it: IMR enables PRX, IRQ 9 (vector
 * 0x71) wakes the halted CPU; the ring is drained by polling CURR, so a lost interrupt
 * only costs a timer tick. Timeouts count BIOS ticks (0040:006C).
 *
 * This file is the card half: reset, init (station address from the PROM), transmit and
 * the receive ring, which are the hooks ipv4.h asks for. Include after cguest.h, with
 * MY_IP and PEER_IP defined as initialisers ({a, b, c, d}); see ipv4.h for the host. */
#ifndef NE2000_H
#define NE2000_H

#include "ipv4.h"

#define NE_BASE 0x300
#define NE_IRQ  9

/* DP8390 registers, page 0 unless noted (offsets from the base) */
#define NE_CR     0x00
#define NE_PSTART 0x01      /* write */
#define NE_PSTOP  0x02      /* write */
#define NE_BNRY   0x03
#define NE_TPSR   0x04      /* write */
#define NE_TSR    0x04      /* read */
#define NE_TBCR0  0x05
#define NE_TBCR1  0x06
#define NE_ISR    0x07
#define NE_RSAR0  0x08
#define NE_RSAR1  0x09
#define NE_RBCR0  0x0a
#define NE_RBCR1  0x0b
#define NE_RCR    0x0c      /* write */
#define NE_TCR    0x0d      /* write */
#define NE_DCR    0x0e      /* write */
#define NE_IMR    0x0f      /* write */
#define NE_PAR0   0x01      /* page 1: PAR0-5 */
#define NE_CURR   0x07      /* page 1 */
#define NE_MAR0   0x08      /* page 1: MAR0-7 */
/* NE2000 board (ASIC) ports */
#define NE_DATA   0x10      /* remote DMA data port */
#define NE_RESET  0x1f      /* reading it resets the card */

/* CR bits */
#define CR_STP 0x01
#define CR_STA 0x02
#define CR_TXP 0x04
#define CR_RD_READ  0x08
#define CR_RD_WRITE 0x10
#define CR_RD_ABORT 0x20    /* "abort/complete remote DMA": no DMA in progress */
#define CR_PAGE0 0x00
#define CR_PAGE1 0x40
/* ISR bits */
#define ISR_PRX 0x01
#define ISR_PTX 0x02
#define ISR_RXE 0x04
#define ISR_TXE 0x08
#define ISR_OVW 0x10
#define ISR_RDC 0x40
#define ISR_RST 0x80
/* DCR: word transfers, normal (not loopback) operation, FIFO threshold 8 bytes */
#define DCR_WTS 0x01
#define DCR_LS  0x08
#define DCR_FT1 0x40
#define RCR_AB  0x04        /* accept broadcast */
#define RCR_MON 0x20        /* monitor: check but do not buffer */
#define TCR_LB0 0x02        /* internal loopback */

/* The card's 16 KiB buffer RAM is pages 0x40-0x7F: 6 pages (one full frame) to
 * transmit from, the rest is the receive ring. */
#define TX_PAGE  0x40
#define RX_START 0x46
#define RX_STOP  0x80

static u8 next_page;        /* next ring page to read */

static void reg_out(u8 reg, u8 v) { outb(NE_BASE + reg, v); }
static u8 reg_in(u8 reg) { return inb(NE_BASE + reg); }

/* ---- the card ------------------------------------------------------------------------------ */

static int wait_isr(u8 bits)
{
    u32 start = ticks();
    while (!(reg_in(NE_ISR) & bits))
        if (ticks() - start > STEP_TIMEOUT)
            return 0;
    return 1;
}

static void dma_setup(u16 addr, u16 len, u8 dir)
{
    reg_out(NE_CR, CR_PAGE0 | CR_RD_ABORT | CR_STA);
    reg_out(NE_ISR, ISR_RDC);
    reg_out(NE_RBCR0, (u8)len);
    reg_out(NE_RBCR1, (u8)(len >> 8));
    reg_out(NE_RSAR0, (u8)addr);
    reg_out(NE_RSAR1, (u8)(addr >> 8));
    reg_out(NE_CR, CR_PAGE0 | dir | CR_STA);
}

/* Remote DMA between the card's RAM and ours, in words (len rounded up to even). */
static int dma_read(u16 addr, u8 *dst, u16 len)
{
    len = (u16)((len + 1) & ~1);
    dma_setup(addr, len, CR_RD_READ);
    for (u16 i = 0; i < len; i += 2) {
        u16 w = inw(NE_BASE + NE_DATA);
        dst[i] = (u8)w;
        dst[i + 1] = (u8)(w >> 8);
    }
    int ok = wait_isr(ISR_RDC);
    reg_out(NE_ISR, ISR_RDC);
    return ok;
}

static int dma_write(u16 addr, const u8 *src, u16 len)
{
    len = (u16)((len + 1) & ~1);
    dma_setup(addr, len, CR_RD_WRITE);
    for (u16 i = 0; i < len; i += 2)
        outw(NE_BASE + NE_DATA, (u16)(src[i] | src[i + 1] << 8));
    int ok = wait_isr(ISR_RDC);
    reg_out(NE_ISR, ISR_RDC);
    return ok;
}

static int step_reset(void)
{
    const char *err = 0;
    if (reg_in(NE_CR) == 0xff) {   /* the probe Linux's ne.c uses: no CR reads all ones */
        err = "no card (floating bus)";
    } else {
        u8 v = inb(NE_BASE + NE_RESET);
        outb(NE_BASE + NE_RESET, v);
        if (!wait_isr(ISR_RST))
            err = "ISR RST never set";
        reg_out(NE_ISR, 0xff);
    }
    result("reset", err);
    endl();
    return !err;
}

/* Initialisation in the order of the DP8390 datasheet, with the station address read
 * from the NE2000's PROM (words 0-5; in word mode each byte is in the low half). */
static int step_init(void)
{
    reg_out(NE_CR, CR_PAGE0 | CR_RD_ABORT | CR_STP);
    reg_out(NE_DCR, DCR_FT1 | DCR_LS | DCR_WTS);
    reg_out(NE_RBCR0, 0);
    reg_out(NE_RBCR1, 0);
    reg_out(NE_RCR, RCR_MON);
    reg_out(NE_TCR, TCR_LB0);
    reg_out(NE_PSTART, RX_START);
    reg_out(NE_PSTOP, RX_STOP);
    reg_out(NE_BNRY, RX_START);
    reg_out(NE_ISR, 0xff);
    reg_out(NE_IMR, 0);

    u8 prom[32];
    const char *err = 0;
    if (!dma_read(0, prom, sizeof prom))
        err = "PROM read: no remote DMA completion";
    for (int i = 0; i < 6; i++)
        mac[i] = prom[2 * i];
    reg_out(NE_CR, CR_PAGE0 | CR_RD_ABORT | CR_STP);
    if (!report_mac(err))
        return 0;

    reg_out(NE_CR, CR_PAGE1 | CR_RD_ABORT | CR_STP);
    for (int i = 0; i < 6; i++)
        reg_out(NE_PAR0 + i, mac[i]);
    for (int i = 0; i < 8; i++)
        reg_out(NE_MAR0 + i, 0);
    next_page = RX_START + 1;
    reg_out(NE_CURR, next_page);
    for (int i = 0; i < 6; i++)
        if (reg_in(NE_PAR0 + i) != mac[i])
            err = "PAR read back";
    if (!err && reg_in(NE_CURR) != next_page)
        err = "CURR read back";
    reg_out(NE_CR, CR_PAGE0 | CR_RD_ABORT | CR_STA);
    reg_out(NE_TCR, 0);
    reg_out(NE_RCR, RCR_AB);
    reg_out(NE_ISR, 0xff);
    reg_out(NE_IMR, ISR_PRX);
    if (!err && (reg_in(NE_CR) & (CR_STA | CR_STP)) != CR_STA)
        err = "not started";
    result("init", err);
    endl();
    return !err;
}

/* Interrupts off at the card, then stop it. */
static void card_stop(void)
{
    reg_out(NE_IMR, 0);
    reg_out(NE_CR, CR_PAGE0 | CR_RD_ABORT | CR_STP);
}

static const char *transmit(const u8 *data, u16 len)
{
    if (!dma_write(TX_PAGE << 8, data, len))
        return "remote DMA write never completed";
    reg_out(NE_ISR, ISR_PTX | ISR_TXE);
    reg_out(NE_TPSR, TX_PAGE);
    reg_out(NE_TBCR0, (u8)len);
    reg_out(NE_TBCR1, (u8)(len >> 8));
    reg_out(NE_CR, CR_PAGE0 | CR_RD_ABORT | CR_TXP | CR_STA);
    if (!wait_isr(ISR_PTX | ISR_TXE))
        return "transmit never completed";
    u8 isr = reg_in(NE_ISR);
    reg_out(NE_ISR, ISR_PTX | ISR_TXE);
    return isr & ISR_PTX ? 0 : "transmit error";
}

/* ---- the receive ring ------------------------------------------------------------------------ */

static u8 curr_page(void)
{
    reg_out(NE_CR, CR_PAGE1 | CR_RD_ABORT | CR_STA);
    u8 c = reg_in(NE_CURR);
    reg_out(NE_CR, CR_PAGE0 | CR_RD_ABORT | CR_STA);
    return c;
}

/* Read one frame out of the ring (split at PSTOP, where the ring wraps). */
static int ring_copy(u16 addr, u8 *dst, u16 len)
{
    u16 end = RX_STOP << 8;
    if (addr + len > end) {
        u16 first = (u16)(end - addr);
        return dma_read(addr, dst, first) && dma_read(RX_START << 8, dst + first, (u16)(len - first));
    }
    return dma_read(addr, dst, len);
}

/* Hand every frame the ring holds to the IPv4 host (ipv4.h's rx_drain). */
static void rx_drain(void)
{
    reg_out(NE_ISR, ISR_PRX | ISR_RXE | ISR_OVW);   /* ack first: later frames set it again */
    unmask_slave_irq(NE_IRQ);
    while (!ring_broken && next_page != curr_page()) {
        u8 hdr[4];
        dma_read((u16)(next_page << 8), hdr, 4);
        u16 count = (u16)(hdr[2] | hdr[3] << 8);   /* includes this 4-byte header */
        u8 next = hdr[1];
        if (next < RX_START || next >= RX_STOP || count < 4 + 14 || count > 4 + 1518) {
            ring_broken = 1;
            return;
        }
        u16 len = (u16)(count - 4);
        u16 data = (u16)((next_page << 8) + 4);
        if (data >= RX_STOP << 8)
            data = (u16)(data - ((RX_STOP - RX_START) << 8));
        if ((hdr[0] & 0x01) && ring_copy(data, pkt, len))
            handle_frame(pkt, len);
        next_page = next;
        reg_out(NE_BNRY, next == RX_START ? RX_STOP - 1 : next - 1);
    }
}

/* With interrupts off: no frame since the drain, so halt until IRQ 9. */
static int rx_idle(void) { return !(reg_in(NE_ISR) & ISR_PRX); }

#endif
