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

#define RX_BUFS 8
#define RX_BUF_SIZE 1536            /* header + 1514-byte frame, and more (§5.1.6.3.1) */

#define SERVE_IDLE (2 * TICKS_PER_SECOND)
#define SERVE_LIMIT (30 * TICKS_PER_SECOND)

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
static void rx_drain(void)
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

/* With interrupts off: re-arm the receive queue's interrupt for the next entry; halt only
 * if nothing arrived since the drain. */
static int rx_idle(void) { return !vq_enable_cb(&rxq, 1); }

/* ---- the steps ------------------------------------------------------------------------- */

static int step_reset(void)
{
    return virtio_step_reset(&net, VIRTIO_ID_NET, "no virtio-net device in the virtio-mmio slots");
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
    return report_mac(err);
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
    int found = virtio_title(&net, VIRTIO_ID_NET, "nettest-virtio: virtio-net");

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
