/* A tiny IPv4 host (ARP, ICMP echo) for one network card, shared by nettest and netpeer
 * (NE2000, ne2000.h) and nettest-virtio (virtio-net): one address MY_IP, one peer PEER_IP;
 * it ARPs for the peer and pings it, printing each reply's sequence number and ICMP length
 * after checking id, checksum and payload, and silently answers ARP requests for MY_IP and
 * echo requests to MY_IP, calling the guest's echo_answered(seq) after each echo reply sent.
 *
 * The includer defines MY_IP and PEER_IP (initialisers {a, b, c, d}) before including it,
 * and the card driver after it:
 *   static const char *transmit(const u8 *frame, u16 len);   0 or why it failed; len >= 60
 *   static void rx_drain(void);     hand every frame received so far to handle_frame()
 *   static int rx_idle(void);       called with interrupts off: nonzero if nothing arrived
 *                                   since rx_drain, so halting until the card's interrupt
 *                                   (or the next timer tick) loses nothing
 *   static void echo_answered(u16 seq);
 * and sets mac[] (its station address) and ring_broken (the receive path failed). */
#ifndef IPV4_H
#define IPV4_H

#ifndef MY_IP
#error "define MY_IP (and PEER_IP) before including ipv4.h"
#endif

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
#define ETH_MIN_FRAME 60    /* without the FCS; shorter frames are padded with zeros */

static const u8 my_ip[4] = MY_IP;
static const u8 peer_ip[4] = PEER_IP;
static u8 mac[6], peer_mac[6];
static u8 frame[1536];      /* the frame being sent */
static u8 pkt[1536];        /* the frame being received */
static int have_peer;
static u16 expect_seq;      /* echo reply being waited for */
static int got_reply;
static int ring_broken;
static u16 ip_ident;        /* IP id of the echo replies we send */
static u16 echoes_answered;
static u16 arps_answered;
/* Each guest defines it: called after an echo request was answered (seq from the request). */
static void echo_answered(u16 seq);

static const char *transmit(const u8 *data, u16 len);
static void rx_drain(void);
static int rx_idle(void);

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

/* Every frame goes out from `frame` through here, padded to the Ethernet minimum. */
static const char *send_frame(u16 len)
{
    if (len < ETH_MIN_FRAME) {
        memset(frame + len, 0, ETH_MIN_FRAME - len);
        len = ETH_MIN_FRAME;
    }
    return transmit(frame, len);
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
    return send_frame(14 + 28);
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
    return send_frame((u16)(14 + 20 + icmp_len));
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
    if (send_frame((u16)(14 + 20 + icmp_len)))
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

/* ---- the card's steps' shared lines ---------------------------------------------------------- */

/* "station address from PROM" (the name nettest gave it), then "mac ..." if `err` is 0. */
static int report_mac(const char *err)
{
    result("station address from PROM", err);
    endl();
    if (err)
        return 0;
    puts("mac ");
    put_mac(mac);
    endl();
    return 1;
}

/* ---- receiving ------------------------------------------------------------------------------ */

/* Process received frames until *done or `timeout` ticks pass; halts in between, woken by
 * the card's interrupt (or the next timer tick if it never comes). */
static int receive_until(volatile int *done, u32 timeout)
{
    u32 start = ticks();
    for (;;) {
        rx_drain();
        if (*done)
            return 1;
        if (ring_broken || ticks() - start > timeout)
            return 0;
        cli();
        if (rx_idle())
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
