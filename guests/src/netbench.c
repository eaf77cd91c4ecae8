/* netbench: transmit throughput of the virtio-net device (bench/test_devices.py).
 *
 * Sends `frames` frames of `size` bytes (Ethernet header included, no CRC) on the
 * transmit queue: up to TX_BATCH chains made available per doorbell (EVENT_IDX decides
 * whether the doorbell is needed), used entries reclaimed before each batch, polled with
 * interrupts suppressed. Every chain is one device-readable descriptor holding the zero
 * 12-byte virtio_net_hdr followed by the frame (VERSION_1 implies ANY_LAYOUT); all of
 * them point at the same buffer, which the device only reads.
 *
 * POST codes (port 0x80): 0x01 just before the first frame is made available, 0x02 when
 * the last one has come back through the used ring; then a result line on COM1 and
 * cli; hlt. The benchmark patches `params` in a copy of the image (found by its magic). */
#include "cguest.h"
#define VQ_MAX 64                   /* room for a batch of 32 and the next one */
#include "virtio.h"

#define VIRTIO_NET_HDR_SIZE sizeof(struct virtio_net_hdr)

#define TX_BATCH 32
#define MIN_FRAME 60                /* without the CRC */
#define MAX_FRAME 1514
#define ETHERTYPE_BENCH 0x88b5      /* IEEE local experimental: nobody answers it */

#define POST_PORT 0x80
#define POST_START 0x01
#define POST_DONE 0x02

struct bench_params {
    char magic[8];                  /* "HVBENCH\0": where the benchmark patches */
    u32 frames;
    u32 size;
};
static volatile struct bench_params params = {"HVBENCH", 2000, 64};

static struct vdev net;
static struct virtq rxq, txq;
static struct virtq_mem rxmem, txmem;
static u8 packet[VIRTIO_NET_HDR_SIZE + MAX_FRAME] __attribute__((aligned(4)));
static u8 mac[6];

static const char *init(void)
{
    const char *err = virtio_probe_reset(&net, VIRTIO_ID_NET,
                                         "no virtio-net device in the virtio-mmio slots");
    if (!err)
        err = virtio_negotiate(&net, 1u << VIRTIO_NET_F_MAC, 0, 0);
    if (err)
        return err;
    virtio_hook_irq(&net);          /* only so a stray interrupt is acknowledged */
    err = vq_setup(&net, &rxq, &rxmem, RECEIVEQ, 0);   /* no buffers: we only send */
    if (!err)
        err = vq_setup(&net, &txq, &txmem, TRANSMITQ, 0);
    if (!err && txq.num < TX_BATCH)
        err = "transmit queue too small for a batch";
    if (!err)
        err = virtio_driver_ok(&net);
    if (err) {
        virtio_fail(&net);
        return err;
    }
    if (accepted(&net, VIRTIO_NET_F_MAC))
        vcfg_read(&net, VIRTIO_NET_CFG_MAC, mac, 6, 1);
    vq_disable_cb(&rxq);
    return 0;
}

/* Header zero (no offloads), then a frame to a locally administered unicast address. */
static void build_frame(u16 size)
{
    u8 *f = packet + VIRTIO_NET_HDR_SIZE;
    memset(packet, 0, VIRTIO_NET_HDR_SIZE);
    static const u8 dst[6] = {0x02, 0, 0, 0, 0, 0x01};
    memcpy(f, dst, 6);
    memcpy(f + 6, mac, 6);
    f[12] = ETHERTYPE_BENCH >> 8;
    f[13] = ETHERTYPE_BENCH & 0xff;
    for (u16 i = 14; i < size; i++)
        f[i] = (u8)i;
}

static const char *transmit(u32 frames, u16 size)
{
    struct vbuf b = {packet, (u32)VIRTIO_NET_HDR_SIZE + size, 0};
    u32 sent = 0, done = 0;
    while (done < frames) {
        while (vq_get(&txq, 0, 0))
            done++;
        u16 added = 0;
        while (sent < frames && added < TX_BATCH && txq.num_free) {
            if (vq_add(&txq, &b, 1, 0, 0) < 0)
                return "transmit queue full";
            sent++;
            added++;
        }
        if (added) {
            vq_disable_cb(&txq);
            vq_kick(&txq);
        } else if (done < frames && !vq_wait_used(&txq, 5 * TICKS_PER_SECOND)) {
            return virtio_broken(&net) ? "device needs reset" : "transmit never completed";
        }
    }
    return 0;
}

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    u32 frames = params.frames;
    u32 size = params.size;
    if (size < MIN_FRAME)
        size = MIN_FRAME;
    if (size > MAX_FRAME)
        size = MAX_FRAME;
    const char *err = init();
    if (!err) {
        build_frame((u16)size);
        outb(POST_PORT, POST_START);
        err = transmit(frames, (u16)size);
        outb(POST_PORT, POST_DONE);
    }
    puts("netbench: sent ");
    putdec(err ? 0 : frames);
    puts(" frames of ");
    putdec(size);
    puts(" bytes, ");
    puts(err ? err : "ok");
    endl();
    halt();
}
