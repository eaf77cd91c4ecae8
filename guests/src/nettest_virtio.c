/* nettest-virtio: nettest's work on a virtio-net device (virtio-mmio, split virtqueues,
 * EVENT_IDX): ARP for the gateway 10.0.2.2 from 10.0.2.15 and three pings, printing the
 * same result lines as nettest (only the header differs; the IPv4 host is the same code,
 * ipv4.h). How nettest's NE2000 steps map onto virtio-net (the names stay):
 *
 *   reset                       probe the slots, reset (Status 0 reads back 0)
 *   station address from PROM   features (VIRTIO_NET_F_MAC), the MAC from config space
 *   init                        receiveq/transmitq, DRIVER_OK, receive buffers posted,
 *                               link up (if VIRTIO_NET_F_STATUS)
 *   irq9                        received frames came with used-buffer interrupts
 *
 * Every frame has the 12-byte virtio_net_hdr in front (all zero on transmit: no checksum
 * offload, no GSO). Transmit is polled (the frame buffer is reused at once); receive
 * halts until the receive queue's interrupt, with used_event set to the next entry. */
#include "cguest.h"
#include "virtio.h"

#define MY_IP   {10, 0, 2, 15}
#define PEER_IP {10, 0, 2, 2}     /* the gateway */
#include "ipv4.h"

/* virtio-net (§5.1) */
#define VIRTIO_NET_F_MAC    5
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_CFG_MAC    0     /* u8[6] */
#define VIRTIO_NET_CFG_STATUS 6     /* le16 */
#define VIRTIO_NET_S_LINK_UP  1

#define RECEIVEQ  0
#define TRANSMITQ 1

#define RX_BUFS 8
#define RX_BUF_SIZE 1536            /* header + 1514-byte frame, and more (§5.1.6.3.1) */

#define SERVE_IDLE (2 * TICKS_PER_SECOND)
#define SERVE_LIMIT (30 * TICKS_PER_SECOND)

struct virtio_net_hdr {
    u8 flags;
    u8 gso_type;
    u16 hdr_len;
    u16 gso_size;
    u16 csum_start;
    u16 csum_offset;
    u16 num_buffers;
};

static struct vdev net;
static struct virtq rxq, txq;
static struct virtq_mem rxmem, txmem;
static u8 rxbuf[RX_BUFS][RX_BUF_SIZE] __attribute__((aligned(4)));
static const struct virtio_net_hdr txhdr;   /* zero: VIRTIO_NET_HDR_GSO_NONE, no flags */

static void echo_answered(u16 seq) { (void)seq; }   /* silent, as nettest */

/* ---- the card -------------------------------------------------------------------------- */

static int post_rx(u16 i)
{
    struct vbuf b = {rxbuf[i], RX_BUF_SIZE, 1};
    return vq_add(&rxq, &b, 1, i, 0) >= 0;
}

static const char *transmit(const u8 *data, u16 len)
{
    if (len < 60) {
        memset((u8 *)data + len, 0, 60 - len);   /* as nettest pads; callers have room */
        len = 60;
    }
    struct vbuf b[2] = {{&txhdr, sizeof txhdr, 0}, {data, len, 0}};
    if (vq_add(&txq, b, 2, 0, 0) < 0)
        return "transmit queue full";
    vq_kick(&txq);
    if (!vq_wait_used(&txq, STEP_TIMEOUT))
        return virtio_broken(&net) ? "device needs reset" : "transmit never completed";
    if (!vq_get(&txq, 0, 0))
        return "bad used entry";
    return 0;
}

/* Hand every received frame to the IPv4 host; each buffer goes straight back. */
static void drain_rx(void)
{
    u16 id;
    u32 len;
    while (!ring_broken && vq_has_used(&rxq)) {
        if (!vq_get(&rxq, &id, &len) || id >= RX_BUFS || len > RX_BUF_SIZE) {
            ring_broken = 1;
            return;
        }
        u16 flen = len > sizeof(struct virtio_net_hdr) ? (u16)(len - sizeof(struct virtio_net_hdr)) : 0;
        memcpy(pkt, rxbuf[id] + sizeof(struct virtio_net_hdr), flen);
        post_rx(id);
        vq_kick(&rxq);
        if (flen >= 14)
            handle_frame(pkt, flen);
    }
}

/* Process received frames until *done or `timeout` ticks pass; halts in between, woken
 * by the receive queue's interrupt (or the next timer tick if it never comes). */
static int receive_until(volatile int *done, u32 timeout)
{
    u32 start = ticks();
    for (;;) {
        drain_rx();
        if (*done)
            return 1;
        if (ring_broken || ticks() - start > timeout)
            return 0;
        cli();
        if (!vq_enable_cb(&rxq, 1))     /* nothing arrived since the drain: sleep */
            sti_hlt();
        sti();
    }
}

/* ---- the steps ------------------------------------------------------------------------- */

static int step_reset(void)
{
    const char *err = 0;
    if (!probe(&net, VIRTIO_ID_NET))
        err = "no virtio-net device in the virtio-mmio slots";
    else
        err = virtio_reset(&net);
    result("reset", err);
    endl();
    return !err;
}

static int step_station_address(void)
{
    const char *err = virtio_negotiate(&net, (1u << VIRTIO_NET_F_MAC) | (1u << VIRTIO_NET_F_STATUS), 0, 0);
    if (!err && !accepted(&net, VIRTIO_NET_F_MAC)) {
        virtio_fail(&net);
        err = "device has no VIRTIO_NET_F_MAC";
    }
    if (!err)
        vcfg_read(&net, VIRTIO_NET_CFG_MAC, mac, 6, 1);
    result("station address from PROM", err);
    endl();
    if (err)
        return 0;
    puts("mac ");
    put_mac(mac);
    endl();
    return 1;
}

static int step_init(void)
{
    virtio_hook_irq(&net);
    const char *err = vq_setup(&net, &rxq, &rxmem, RECEIVEQ, 0);
    if (!err)
        err = vq_setup(&net, &txq, &txmem, TRANSMITQ, 0);
    if (err)
        virtio_fail(&net);
    if (!err)
        err = virtio_driver_ok(&net);
    if (!err) {
        vq_disable_cb(&txq);
        for (u16 i = 0; i < RX_BUFS && i < rxq.num; i++)
            post_rx(i);
        vq_kick(&rxq);
        if (accepted(&net, VIRTIO_NET_F_STATUS) &&
            !(vcfg16(&net, VIRTIO_NET_CFG_STATUS) & VIRTIO_NET_S_LINK_UP))
            err = "link down";
    }
    result("init", err);
    endl();
    return !err;
}

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    int found = probe(&net, VIRTIO_ID_NET);
    puts("nettest-virtio: virtio-net");
    if (found) {
        puts(", ");
        put_vdev(&net);
    }
    endl();

    int up = step_reset() && step_station_address() && step_init();
    if (up) {
        ping_peer("gateway");
        result("irq9", net.vring_irqs ? 0 : "no interrupt from the card");
        endl();
    }
    summary("nettest");
    if (up)
        serve_until_idle(SERVE_IDLE, SERVE_LIMIT);
    if (found)
        virtio_reset(&net);
    halt();
}
