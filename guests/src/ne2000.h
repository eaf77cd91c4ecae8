/* NE2000 driver and a tiny IPv4 host (ARP, ICMP echo) shared by nettest and netpeer.
 *
 * The card is an NE2000 (DP8390 core) at I/O base 0x300, IRQ 9, driven by port I/O.
 * Receive is interrupt driven where the card allows it: IMR enables PRX, IRQ 9 (vector
 * 0x71) wakes the halted CPU; the ring is drained by polling CURR, so a lost interrupt
 * only costs a timer tick. Timeouts count BIOS ticks (0040:006C).
 *
 * The host has one address, MY_IP, and talks to one peer, PEER_IP: it ARPs for the peer
 * and pings it (printing each reply's sequence number and ICMP length after checking id,
 * checksum and the echoed payload). Silently, whenever it drains the ring, it answers
 * ARP requests for MY_IP and ICMP echo requests to MY_IP, and calls the guest's
 * echo_answered(seq) after each echo reply it sent.
 *
 * Include after cguest.h, with MY_IP and PEER_IP defined as initialisers ({a, b, c, d}). */
#ifndef NE2000_H
#define NE2000_H

#ifndef MY_IP
#error "define MY_IP (and PEER_IP) before including ne2000.h"
#endif

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

#define STEP_TIMEOUT (TICKS_PER_SECOND / 2)
#define REPLY_TIMEOUT (2 * TICKS_PER_SECOND)

#define ETH_ARP 0x0806
#define ETH_IP  0x0800
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define PING_ID 0x6876      /* "hv" */
#define PING_PAYLOAD 56
#define PINGS 3
#define IP_TTL 64

static const u8 my_ip[4] = MY_IP;
static const u8 peer_ip[4] = PEER_IP;
static u8 mac[6], peer_mac[6];
static u8 frame[1536];      /* the frame being sent */
static u8 pkt[1536];        /* the frame being received */
static u8 next_page;        /* next ring page to read */
static int have_peer;
static u16 expect_seq;      /* echo reply being waited for */
static int got_reply;
static int ring_broken;
static u16 ip_ident;        /* IP id of the echo replies we send */
static u16 echoes_answered;
static u16 arps_answered;
/* Each guest defines it: called after an echo request was answered (seq from the request). */
static void echo_answered(u16 seq);

static void reg_out(u8 reg, u8 v) { outb(NE_BASE + reg, v); }
static u8 reg_in(u8 reg) { return inb(NE_BASE + reg); }

static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static void put_be16(u8 *p, u16 v)
{
    p[0] = (u8)(v >> 8);
    p[1] = (u8)v;
}

static void put_mac(const u8 *m)
{
    for (int i = 0; i < 6; i++) {
        if (i)
            putc(':');
        puthexn(m[i], 2);
    }
}

static void put_ip(const u8 *a)
{
    for (int i = 0; i < 4; i++) {
        if (i)
            putc('.');
        putdec(a[i]);
    }
}

/* Ones' complement sum of 16-bit big-endian words (RFC 1071). */
static u16 inet_checksum(const u8 *p, u32 len)
{
    u32 sum = 0;
    for (; len > 1; len -= 2, p += 2)
        sum += be16(p);
    if (len)
        sum += (u32)p[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

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
    result("station address from PROM", err);
    endl();
    if (err)
        return 0;
    puts("mac ");
    put_mac(mac);
    endl();

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
    if (len < 60) {
        memset((u8 *)data + len, 0, 60 - len);   /* callers' buffers have room */
        len = 60;
    }
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

/* ---- frames -------------------------------------------------------------------------------- */

static u8 *eth_header(u8 *f, const u8 *dst, u16 type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, mac, 6);
    put_be16(f + 12, type);
    return f + 14;
}

/* A 20-byte IPv4 header (no options, TTL 64) from us to `dst`; returns the payload. */
static u8 *ip_header(u8 *ip, u8 proto, u16 payload_len, u16 ident, const u8 *dst)
{
    ip[0] = 0x45;
    ip[1] = 0;
    put_be16(ip + 2, (u16)(20 + payload_len));
    put_be16(ip + 4, ident);
    put_be16(ip + 6, 0);
    ip[8] = IP_TTL;
    ip[9] = proto;
    put_be16(ip + 10, 0);
    memcpy(ip + 12, my_ip, 4);
    memcpy(ip + 16, dst, 4);
    put_be16(ip + 10, inet_checksum(ip, 20));
    return ip + 20;
}

static const char *send_arp(u16 op, const u8 *dst_mac, const u8 *tha, const u8 *tpa)
{
    static const u8 broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    u8 *a = eth_header(frame, dst_mac ? dst_mac : broadcast, ETH_ARP);
    put_be16(a, 1);             /* Ethernet */
    put_be16(a + 2, ETH_IP);
    a[4] = 6;
    a[5] = 4;
    put_be16(a + 6, op);
    memcpy(a + 8, mac, 6);
    memcpy(a + 14, my_ip, 4);
    memcpy(a + 18, tha, 6);
    memcpy(a + 24, tpa, 4);
    return transmit(frame, 14 + 28);
}

static u8 payload_byte(u16 seq, u16 i) { return (u8)(0x20 + (i * 7 + seq) % 0x5f); }

static const char *send_ping(u16 seq)
{
    u16 icmp_len = 8 + PING_PAYLOAD;
    u8 *ip = eth_header(frame, peer_mac, ETH_IP);
    u8 *icmp = ip_header(ip, 1, icmp_len, (u16)(0x4800 + seq), peer_ip);
    icmp[0] = ICMP_ECHO;
    icmp[1] = 0;
    put_be16(icmp + 2, 0);
    put_be16(icmp + 4, PING_ID);
    put_be16(icmp + 6, seq);
    for (u16 i = 0; i < PING_PAYLOAD; i++)
        icmp[8 + i] = payload_byte(seq, i);
    put_be16(icmp + 2, inet_checksum(icmp, icmp_len));
    return transmit(frame, (u16)(14 + 20 + icmp_len));
}

static void handle_arp(const u8 *a, u16 len)
{
    if (len < 28 || be16(a) != 1 || be16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4)
        return;
    u16 op = be16(a + 6);
    if (op == 2 && !memcmp(a + 14, peer_ip, 4) && !memcmp(a + 24, my_ip, 4) && !memcmp(a + 18, mac, 6)) {
        memcpy(peer_mac, a + 8, 6);
        have_peer = 1;
    } else if (op == 1 && !memcmp(a + 24, my_ip, 4)) {
        /* Someone asks for us: answer, print nothing. */
        u8 sha[6], spa[4];
        memcpy(sha, a + 8, 6);
        memcpy(spa, a + 14, 4);
        if (!send_arp(2, sha, sha, spa))
            arps_answered++;
    }
}

/* An echo request to us: the same ICMP message back as an echo reply (same id, sequence
 * and payload), to the frame's sender, from our address. */
static void answer_echo(const u8 *eth_src, const u8 *src_ip, const u8 *icmp, u16 icmp_len)
{
    if (icmp_len > sizeof frame - 14 - 20 || inet_checksum(icmp, icmp_len) != 0)
        return;
    u8 dst_mac[6], dst_ip[4];
    memcpy(dst_mac, eth_src, 6);
    memcpy(dst_ip, src_ip, 4);
    u8 *ip = eth_header(frame, dst_mac, ETH_IP);
    u8 *reply = ip_header(ip, 1, icmp_len, ip_ident++, dst_ip);
    memcpy(reply, icmp, icmp_len);
    reply[0] = ICMP_ECHOREPLY;
    put_be16(reply + 2, 0);
    put_be16(reply + 2, inet_checksum(reply, icmp_len));
    if (transmit(frame, (u16)(14 + 20 + icmp_len)))
        return;
    echoes_answered++;
    echo_answered(be16(icmp + 6));
}

/* An echo reply from the peer to the ping being waited for: check and print it. */
static void check_reply(const u8 *icmp, u16 icmp_len)
{
    if (icmp_len < 8 || icmp[1] != 0 || be16(icmp + 4) != PING_ID ||
        be16(icmp + 6) != expect_seq || got_reply)
        return;
    got_reply = 1;
    const char *err = 0;
    if (inet_checksum(icmp, icmp_len) != 0)
        err = "bad ICMP checksum";
    else if (icmp_len != 8 + PING_PAYLOAD)
        err = "payload length changed";
    else
        for (u16 i = 0; i < PING_PAYLOAD; i++)
            if (icmp[8 + i] != payload_byte(expect_seq, i))
                err = "payload not echoed";
    if (err) {
        puts("FAIL icmp_seq=");
        putdec(expect_seq);
        puts(": ");
        puts(err);
        nfail++;
    } else {
        puts("reply from ");
        put_ip(peer_ip);
        puts(": icmp_seq=");
        putdec(expect_seq);
        puts(" bytes=");
        putdec(icmp_len);
        npass++;
    }
    endl();
}

static void handle_ip(const u8 *eth_src, const u8 *ip, u16 len)
{
    if (len < 20 || (ip[0] >> 4) != 4)
        return;
    u16 ihl = (u16)((ip[0] & 15) * 4);
    u16 total = be16(ip + 2);
    if (ihl < 20 || total < ihl || total > len || inet_checksum(ip, ihl) != 0)
        return;
    if (ip[9] != 1 || memcmp(ip + 16, my_ip, 4) || (be16(ip + 6) & 0x3fff))
        return;                 /* not ICMP to us, or a fragment */
    const u8 *icmp = ip + ihl;
    u16 icmp_len = (u16)(total - ihl);
    if (icmp_len < 8)
        return;
    if (icmp[0] == ICMP_ECHO && icmp[1] == 0)
        answer_echo(eth_src, ip + 12, icmp, icmp_len);
    else if (icmp[0] == ICMP_ECHOREPLY && !memcmp(ip + 12, peer_ip, 4))
        check_reply(icmp, icmp_len);
}

static void handle_frame(const u8 *f, u16 len)
{
    if (len < 14)
        return;
    u16 type = be16(f + 12);
    if (type == ETH_ARP)
        handle_arp(f + 14, (u16)(len - 14));
    else if (type == ETH_IP && !memcmp(f, mac, 6))
        handle_ip(f + 6, f + 14, (u16)(len - 14));
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

static void drain_ring(void)
{
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

/* Process received frames until *done or `timeout` ticks pass; halts in between, woken by
 * IRQ 9 (or the next timer tick if the card's interrupt never comes). */
static int receive_until(volatile int *done, u32 timeout)
{
    u32 start = ticks();
    for (;;) {
        reg_out(NE_ISR, ISR_PRX | ISR_RXE | ISR_OVW);   /* ack first: later frames set it again */
        unmask_slave_irq(NE_IRQ);
        drain_ring();
        if (*done)
            return 1;
        if (ring_broken || ticks() - start > timeout)
            return 0;
        cli();
        if (!(reg_in(NE_ISR) & ISR_PRX))
            sti_hlt();
        sti();
    }
}

/* Answer ARP and echo requests, silently, until `idle` ticks pass without one (or
 * `limit` ticks in all). */
HELPER void serve_until_idle(u32 idle, u32 limit)
{
    static volatile int never;
    u32 start = ticks();
    for (;;) {
        u16 before = (u16)(echoes_answered + arps_answered);
        receive_until(&never, idle);
        if (ring_broken || (u16)(echoes_answered + arps_answered) == before ||
            ticks() - start > limit)
            return;
    }
}

/* ARP for the peer; `what` names it in the output ("gateway 10.0.2.2 is at ..."). */
static void step_arp(const char *what)
{
    static const u8 zero[6];
    const char *err = send_arp(1, 0, zero, peer_ip);
    if (!err && !receive_until(&have_peer, REPLY_TIMEOUT))
        err = ring_broken ? "receive ring corrupt" : "no ARP reply";
    result("arp", err);
    endl();
    if (!err) {
        puts(what);
        putc(' ');
        put_ip(peer_ip);
        puts(" is at ");
        put_mac(peer_mac);
        endl();
    }
}

static void step_ping(u16 seq)
{
    expect_seq = seq;
    got_reply = 0;
    const char *err = send_ping(seq);
    if (err) {
        result("echo request", err);
        endl();
        return;
    }
    if (!receive_until(&got_reply, REPLY_TIMEOUT)) {
        puts("timeout icmp_seq=");
        putdec(seq);
        endl();
        nfail++;
    }
}

/* ARP for the peer, then PINGS echo requests to it. */
HELPER void ping_peer(const char *what)
{
    step_arp(what);
    if (have_peer)
        for (u16 seq = 1; seq <= PINGS; seq++)
            step_ping(seq);
}

#endif
