/* A small virtio 1.x driver core for the real-mode C guests (disktest-virtio,
 * nettest-virtio, balloontest): the virtio-mmio transport (version 2) and split
 * virtqueues with VIRTIO_F_EVENT_IDX, as virtio 1.2 §2, §3.1 and §4.2 describe them.
 *
 * Devices are found by probing the board's virtio-mmio slots at 0xD0000 + n * 0x1000
 * (n = 0..7). They lie above the 64 KiB that CS=DS=0 reaches, so registers are accessed
 * through FS = 0xD000 + n * 0x100 with 32-bit moves (the spec requires 32-bit accesses
 * to the registers; config fields are accessed at their own width, 64-bit ones as two
 * 32-bit halves). Everything the device
 * reads or writes by DMA is in segment 0, so a C pointer is its physical address.
 *
 * Interrupts: virtio_isr10/11/12 (virtio_irq.S) call virtio_irq(n), which reads
 * InterruptStatus, writes it to InterruptACK, counts used-buffer notifications per
 * device and sends EOI to both PICs. The line number comes from the board's slot table
 * (virtio-mmio has no register for it; a real platform says so in its device tree).
 *
 * Include after cguest.h. */
#ifndef VIRTIO_H
#define VIRTIO_H

/* ---- virtio-mmio registers (§4.2.2) -------------------------------------------------------- */
#define VIRTIO_MMIO_BASE        0xd0000u
#define VIRTIO_MMIO_SLOTS       8
#define VIRTIO_MMIO_SLOT_SIZE   0x1000u

#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

#define VIRTIO_MMIO_MAGIC   0x74726976u     /* "virt" */
#define VIRTIO_MMIO_VERSION_MODERN 2        /* 1 is the legacy layout, not supported */

#define VIRTIO_MMIO_INT_VRING  1
#define VIRTIO_MMIO_INT_CONFIG 2

/* Device status (§2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* Device IDs (§5) */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_BALLOON 5

/* Transport feature bits (§6); bit numbers, 64-bit feature space in two words */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29
#define VIRTIO_F_VERSION_1     32

/* Split virtqueue (§2.7) */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

#ifndef VQ_MAX           /* a guest may define a larger one before including this */
#define VQ_MAX 16       /* our largest queue; smaller if the device's QueueNumMax is */
#endif

#define VIRTIO_RESET_TIMEOUT (TICKS_PER_SECOND / 2)
#define VIRTIO_TIMEOUT       (2 * TICKS_PER_SECOND)

struct virtq_desc {
    u32 addr_lo, addr_hi;   /* le64 addr */
    u32 len;
    u16 flags;
    u16 next;
};

struct virtq_used_elem {
    u32 id;
    u32 len;
};

/* The rings, sized for VQ_MAX; with a smaller queue used_event/avail_event sit right
 * after ring[num] (§2.7.6/§2.7.8), which vq_setup points at. */
struct virtq_avail {
    u16 flags;
    u16 idx;
    u16 ring[VQ_MAX + 1];   /* + used_event */
};

struct virtq_used {
    u16 flags;
    u16 idx;
    struct virtq_used_elem ring[VQ_MAX];
    u16 avail_event;
};

struct vdev {
    u16 seg;                /* real-mode segment of the register window */
    u8 slot;
    u8 irq;                 /* ISA line from the board's slot table, 0: none (poll) */
    u32 device_id;
    u32 offered_lo, offered_hi;         /* DeviceFeatures */
    u32 accepted_lo, accepted_hi;       /* what we wrote to DriverFeatures */
    int event_idx;
    volatile u16 vring_irqs;            /* used-buffer notifications seen by virtio_irq */
    volatile u16 config_irqs;
    volatile u16 irqs;
};

struct virtq {
    struct vdev *dev;
    u16 index;
    u16 num;                            /* QueueNum */
    struct virtq_desc *desc;
    struct virtq_avail *avail;
    struct virtq_used *used;
    volatile u16 *used_event;           /* driver -> device: interrupt me after this one */
    volatile u16 *avail_event;          /* device -> driver: kick me after this one */
    u16 free_head, num_free;
    u16 avail_shadow;                   /* our avail idx */
    u16 kicked;                         /* avail idx at the last notification decision */
    u16 last_used;                      /* next used entry to consume */
    u16 cookie[VQ_MAX];                 /* caller's token per head */
    u16 notifies, suppressed;
};

/* Storage for one queue: descriptor table 16-aligned, avail 2-aligned, used 4-aligned. */
struct virtq_mem {
    struct virtq_desc desc[VQ_MAX] __attribute__((aligned(16)));
    struct virtq_avail avail __attribute__((aligned(16)));
    struct virtq_used used __attribute__((aligned(16)));
};

/* A buffer for vq_add: address, length, device-writable? */
struct vbuf {
    const void *addr;
    u32 len;
    int write;
};

/* ---- the device types two guests each drive ------------------------------------------------ */

/* virtio-blk (§5.2): disktest-virtio, blkbench */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO       5
#define VIRTIO_BLK_F_FLUSH    9

#define VIRTIO_BLK_CFG_CAPACITY 0   /* le64, in 512-byte sectors */
#define VIRTIO_BLK_CFG_SIZE_MAX 8   /* le32 */
#define VIRTIO_BLK_CFG_SEG_MAX  12  /* le32 */

#define VIRTIO_BLK_T_IN    0
#define VIRTIO_BLK_T_OUT   1
#define VIRTIO_BLK_T_FLUSH 4

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define STATUS_UNSET 0xff       /* what we put in the status byte before the device writes it */

struct virtio_blk_req {
    u32 type;
    u32 reserved;
    u32 sector_lo, sector_hi;   /* le64 */
};

/* virtio-net (§5.1): nettest-virtio, netbench */
#define VIRTIO_NET_F_MAC    5
#define VIRTIO_NET_F_STATUS 16

#define VIRTIO_NET_CFG_MAC    0     /* u8[6] */
#define VIRTIO_NET_CFG_STATUS 6     /* le16 */
#define VIRTIO_NET_S_LINK_UP  1

#define RECEIVEQ  0
#define TRANSMITQ 1

/* In front of every frame (VERSION_1: always 12 bytes, num_buffers included). */
struct virtio_net_hdr {
    u8 flags;
    u8 gso_type;
    u16 hdr_len;
    u16 gso_size;
    u16 csum_start;
    u16 csum_offset;
    u16 num_buffers;
};

/* ---- MMIO through FS (realmode.h's peek/poke: one access of exactly that width) ---------- */

/* Full barrier: orders our ring stores before the loads of avail_event/used idx that
 * decide whether to notify or sleep (x86 only reorders a later load before a store). */
static inline void mb(void) { __asm__ volatile("lock; orl $0, (%%esp)" ::: "memory", "cc"); }
/* x86 keeps stores in order and loads in order: the compiler is all we must stop. */
static inline void wmb(void) { __asm__ volatile("" ::: "memory"); }
static inline void rmb(void) { __asm__ volatile("" ::: "memory"); }

static u32 vreg(struct vdev *d, u16 reg) { return peekl(d->seg, reg); }
static void vreg_w(struct vdev *d, u16 reg, u32 v) { pokel(d->seg, reg, v); }

HELPER u8 vcfg8(struct vdev *d, u16 off) { return peekb(d->seg, (u16)(VIRTIO_MMIO_CONFIG + off)); }
HELPER u16 vcfg16(struct vdev *d, u16 off) { return peekw(d->seg, (u16)(VIRTIO_MMIO_CONFIG + off)); }
HELPER u32 vcfg32(struct vdev *d, u16 off) { return peekl(d->seg, (u16)(VIRTIO_MMIO_CONFIG + off)); }
HELPER void vcfg_w32(struct vdev *d, u16 off, u32 v) { pokel(d->seg, (u16)(VIRTIO_MMIO_CONFIG + off), v); }

/* Read a config field consistently (§4.2.2.2): retry while ConfigGeneration changes
 * under us. Accesses have the field's width, as the spec requires: `width` 1 for byte
 * arrays (a MAC), 4 for 32- and 64-bit fields (`len` a multiple of 4). */
HELPER void vcfg_read(struct vdev *d, u16 off, void *dst, u16 len, u16 width)
{
    u32 before, after;
    int tries = 0;
    do {
        before = vreg(d, VIRTIO_MMIO_CONFIG_GENERATION);
        for (u16 i = 0; i < len; i += width) {
            if (width == 4)
                *(u32 *)((u8 *)dst + i) = vcfg32(d, (u16)(off + i));
            else
                ((u8 *)dst)[i] = vcfg8(d, (u16)(off + i));
        }
        after = vreg(d, VIRTIO_MMIO_CONFIG_GENERATION);
    } while (before != after && ++tries < 100);
}

/* ---- interrupts ---------------------------------------------------------------------------- */

/* Board wiring: slot -> ISA IRQ (0: none, the driver polls). */
static const u8 virtio_slot_irq[VIRTIO_MMIO_SLOTS] = {10, 11, 5, 12, 0, 0, 0, 0};

static struct vdev *irq_owner[16];

extern void virtio_isr5(void), virtio_isr10(void), virtio_isr11(void), virtio_isr12(void);

/* Called by the stubs in virtio_irq.S (DS=ES=SS=0, all registers saved). The handler
 * reads and acknowledges the cause at the device before the EOI, so the next
 * notification makes a new edge on the (edge-triggered) PIC input. */
__attribute__((used)) void virtio_irq(u32 irq)
{
    struct vdev *d = irq_owner[irq & 15];
    if (d) {
        u32 isr = vreg(d, VIRTIO_MMIO_INTERRUPT_STATUS);
        if (isr)
            vreg_w(d, VIRTIO_MMIO_INTERRUPT_ACK, isr);
        if (isr & VIRTIO_MMIO_INT_VRING)
            d->vring_irqs++;
        if (isr & VIRTIO_MMIO_INT_CONFIG)
            d->config_irqs++;
        d->irqs++;
    }
    irq_counts[irq & 15]++;
    if (irq >= 8)
        outb(0xa0, 0x20);       /* EOI slave, then master (cascade on IR2) */
    outb(PIC1_CMD, 0x20);
}

/* Hook the device's line: vector, owner, unmask (before DRIVER_OK, so nothing is lost). */
static void virtio_hook_irq(struct vdev *d)
{
    void (*stub)(void) = 0;
    switch (d->irq) {
    case 5: stub = virtio_isr5; break;
    case 10: stub = virtio_isr10; break;
    case 11: stub = virtio_isr11; break;
    case 12: stub = virtio_isr12; break;
    }
    if (!stub) {
        d->irq = 0;
        return;
    }
    cli();
    irq_owner[d->irq] = d;
    if (d->irq >= 8) {
        D((SLAVE_VECTOR_BASE + d->irq - 8) * 4) = (u32)(u16)(u32)stub;
        sti();
        unmask_slave_irq(d->irq);
    } else {
        D((0x08 + d->irq) * 4) = (u32)(u16)(u32)stub;
        outb(PIC1_DATA, inb(PIC1_DATA) & ~(1 << d->irq));
        sti();
    }
}

/* Wait (halting) until the device's used-buffer notification count differs from `seen`
 * or `timeout` ticks pass. Returns nonzero if an interrupt came. */
HELPER int virtio_wait_irq(struct vdev *d, u16 seen, u32 timeout)
{
    return wait_count(&d->vring_irqs, seen, timeout);
}

/* ---- discovery and initialisation (§3.1.1, §4.2.3) --------------------------------------- */

static int probe(struct vdev *d, u32 device_id)
{
    for (u8 n = 0; n < VIRTIO_MMIO_SLOTS; n++) {
        u16 seg = (u16)((VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SLOT_SIZE) >> 4);
        if (peekl(seg, VIRTIO_MMIO_MAGIC_VALUE) != VIRTIO_MMIO_MAGIC)
            continue;
        if (peekl(seg, VIRTIO_MMIO_VERSION) != VIRTIO_MMIO_VERSION_MODERN)
            continue;
        if (peekl(seg, VIRTIO_MMIO_DEVICE_ID) != device_id)
            continue;       /* 0: a placeholder slot with no device behind it */
        memset(d, 0, sizeof *d);
        d->seg = seg;
        d->slot = n;
        d->irq = virtio_slot_irq[n];
        d->device_id = device_id;
        return 1;
    }
    return 0;
}

HELPER void put_vdev(struct vdev *d)
{
    puts("virtio-mmio slot ");
    putdec(d->slot);
    puts(" at 0x");
    puthexn((u32)d->seg << 4, 5);
    if (d->irq) {
        puts(", IRQ ");
        putdec(d->irq);
    }
}

/* A guest's first line: "title[, virtio-mmio slot n at 0x..., IRQ n]"; 1 if the device is there. */
HELPER int virtio_title(struct vdev *d, u32 device_id, const char *title)
{
    int found = probe(d, device_id);
    puts(title);
    if (found) {
        puts(", ");
        put_vdev(d);
    }
    endl();
    return found;
}

static u32 vstatus(struct vdev *d) { return vreg(d, VIRTIO_MMIO_STATUS) & 0xff; }
static void vstatus_add(struct vdev *d, u32 bits) { vreg_w(d, VIRTIO_MMIO_STATUS, vstatus(d) | bits); }
HELPER void virtio_fail(struct vdev *d) { vstatus_add(d, VIRTIO_STATUS_FAILED); }

/* Write 0 to Status and wait for it to read back 0 (§4.2.3.1: the reset may take time). */
static const char *virtio_reset(struct vdev *d)
{
    vreg_w(d, VIRTIO_MMIO_STATUS, 0);
    u32 start = ticks();
    while (vstatus(d))
        if (ticks() - start > VIRTIO_RESET_TIMEOUT)
            return "status never read back 0 after reset";
    return 0;
}

/* Find the device in the slots and reset it: 0, or `missing` / why the reset failed. */
HELPER const char *virtio_probe_reset(struct vdev *d, u32 device_id, const char *missing)
{
    return probe(d, device_id) ? virtio_reset(d) : missing;
}

/* The virtio guests' "reset" step (nettest's and disktest's first result line). */
HELPER int virtio_step_reset(struct vdev *d, u32 device_id, const char *missing)
{
    const char *err = virtio_probe_reset(d, device_id, missing);
    result("reset", err);
    endl();
    return !err;
}

HELPER int offered(struct vdev *d, int bit)
{
    return (int)((bit < 32 ? d->offered_lo >> bit : d->offered_hi >> (bit - 32)) & 1);
}
HELPER int accepted(struct vdev *d, int bit)
{
    return (int)((bit < 32 ? d->accepted_lo >> bit : d->accepted_hi >> (bit - 32)) & 1);
}

/* Steps 2-6 of §3.1.1: ACKNOWLEDGE, DRIVER, features, FEATURES_OK (and check it stuck).
 * `want_lo/hi` are the device-specific bits we can use; we accept those the device
 * offers plus VERSION_1 and EVENT_IDX (and INDIRECT_DESC if `indirect`). */
static const char *virtio_negotiate(struct vdev *d, u32 want_lo, u32 want_hi, int indirect)
{
    vstatus_add(d, VIRTIO_STATUS_ACKNOWLEDGE);
    vstatus_add(d, VIRTIO_STATUS_DRIVER);
    vreg_w(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    d->offered_lo = vreg(d, VIRTIO_MMIO_DEVICE_FEATURES);
    vreg_w(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    d->offered_hi = vreg(d, VIRTIO_MMIO_DEVICE_FEATURES);
    if (!offered(d, VIRTIO_F_VERSION_1)) {
        virtio_fail(d);
        return "device does not offer VIRTIO_F_VERSION_1";
    }
    want_lo |= 1u << VIRTIO_F_EVENT_IDX;
    if (indirect)
        want_lo |= 1u << VIRTIO_F_INDIRECT_DESC;
    want_hi |= 1u << (VIRTIO_F_VERSION_1 - 32);
    d->accepted_lo = d->offered_lo & want_lo;
    d->accepted_hi = d->offered_hi & want_hi;
    vreg_w(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    vreg_w(d, VIRTIO_MMIO_DRIVER_FEATURES, d->accepted_lo);
    vreg_w(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    vreg_w(d, VIRTIO_MMIO_DRIVER_FEATURES, d->accepted_hi);
    vstatus_add(d, VIRTIO_STATUS_FEATURES_OK);
    if (!(vstatus(d) & VIRTIO_STATUS_FEATURES_OK)) {
        virtio_fail(d);
        return "device refused FEATURES_OK";
    }
    d->event_idx = accepted(d, VIRTIO_F_EVENT_IDX);
    return 0;
}

/* Step 7: one queue. `size` 0 = as large as we and the device allow (power of 2). */
static const char *vq_setup(struct vdev *d, struct virtq *q, struct virtq_mem *m, u16 index, u16 size)
{
    vreg_w(d, VIRTIO_MMIO_QUEUE_SEL, index);
    if (vreg(d, VIRTIO_MMIO_QUEUE_READY))
        return "queue already live after reset";
    u32 max = vreg(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (!max)
        return "queue not available";
    u16 num = size ? size : VQ_MAX;
    while (num > max)
        num >>= 1;      /* split queues are powers of 2 (§2.7) */
    if (!num)
        return "queue too small";
    memset(m, 0, sizeof *m);
    memset(q, 0, sizeof *q);
    q->dev = d;
    q->index = index;
    q->num = num;
    q->desc = m->desc;
    q->avail = &m->avail;
    q->used = &m->used;
    q->used_event = &m->avail.ring[num];
    q->avail_event = (volatile u16 *)&m->used.ring[num];
    for (u16 i = 0; i < num; i++)
        q->desc[i].next = (u16)(i + 1);
    q->num_free = num;
    vreg_w(d, VIRTIO_MMIO_QUEUE_NUM, num);
    vreg_w(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (u32)q->desc);
    vreg_w(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
    vreg_w(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (u32)q->avail);
    vreg_w(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
    vreg_w(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (u32)q->used);
    vreg_w(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
    vreg_w(d, VIRTIO_MMIO_QUEUE_READY, 1);
    if (vreg(d, VIRTIO_MMIO_QUEUE_READY) != 1)
        return "QueueReady did not stick";
    return 0;
}

/* Step 8. */
static const char *virtio_driver_ok(struct vdev *d)
{
    vstatus_add(d, VIRTIO_STATUS_DRIVER_OK);
    u32 st = vstatus(d);
    if (st & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
        return "device needs reset";
    if (!(st & VIRTIO_STATUS_DRIVER_OK))
        return "DRIVER_OK did not stick";
    return 0;
}

HELPER int virtio_broken(struct vdev *d)
{
    return (vstatus(d) & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED)) != 0;
}

/* ---- the split virtqueue, driver side (§2.7.13) ------------------------------------------- */

/* §2.7.10: has the index `event` been passed going from `old` to `new`? */
static int vring_need_event(u16 event, u16 new_idx, u16 old)
{
    return (u16)(new_idx - event - 1) < (u16)(new_idx - old);
}

/* Chain `n` buffers (device-readable ones first) and make the chain available.
 * With `indirect` (a table of n descriptors, 16-aligned, VIRTIO_F_INDIRECT_DESC
 * negotiated) the chain takes one ring descriptor. Returns the head, or -1 if the
 * ring is full. The avail idx is published; the device hears of it at vq_kick. */
HELPER int vq_add(struct virtq *q, const struct vbuf *b, u16 n, u16 cookie, struct virtq_desc *indirect)
{
    u16 need = indirect ? 1 : n;
    if (!n || q->num_free < need)
        return -1;
    u16 head = q->free_head;
    if (indirect) {
        for (u16 i = 0; i < n; i++) {
            indirect[i].addr_lo = (u32)b[i].addr;
            indirect[i].addr_hi = 0;
            indirect[i].len = b[i].len;
            indirect[i].flags = (u16)((b[i].write ? VIRTQ_DESC_F_WRITE : 0) |
                                      (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
            indirect[i].next = (u16)(i + 1);
        }
        struct virtq_desc *t = &q->desc[head];
        q->free_head = t->next;
        t->addr_lo = (u32)indirect;
        t->addr_hi = 0;
        t->len = (u32)n * sizeof *indirect;
        t->flags = VIRTQ_DESC_F_INDIRECT;
    } else {
        u16 i = head, last = head;
        for (u16 k = 0; k < n; k++) {
            struct virtq_desc *t = &q->desc[i];
            t->addr_lo = (u32)b[k].addr;
            t->addr_hi = 0;
            t->len = b[k].len;
            t->flags = (u16)((b[k].write ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
            last = i;
            i = t->next;        /* the free list is linked through `next` too */
        }
        q->free_head = q->desc[last].next;
    }
    q->num_free -= need;
    q->cookie[head] = cookie;
    q->avail->ring[q->avail_shadow % q->num] = head;
    wmb();                      /* the ring entry before the index that publishes it */
    q->avail_shadow++;
    *(volatile u16 *)&q->avail->idx = q->avail_shadow;
    return head;
}

/* Tell the device about what vq_add published, unless it asked not to be told yet. */
HELPER void vq_kick(struct virtq *q)
{
    mb();                       /* avail idx visible before we read avail_event */
    u16 old = q->kicked, new_idx = q->avail_shadow;
    q->kicked = new_idx;
    int notify;
    if (q->dev->event_idx)
        notify = vring_need_event(*q->avail_event, new_idx, old);
    else
        notify = !(*(volatile u16 *)&q->used->flags & VIRTQ_USED_F_NO_NOTIFY);
    if (notify) {
        vreg_w(q->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q->index);
        q->notifies++;
    } else {
        q->suppressed++;
    }
}

HELPER int vq_has_used(struct virtq *q)
{
    return *(volatile u16 *)&q->used->idx != q->last_used;
}

/* Take the next used entry: 1 and its cookie and written length, or 0 if none. */
HELPER int vq_get(struct virtq *q, u16 *cookie, u32 *len)
{
    if (!vq_has_used(q))
        return 0;
    rmb();                      /* the entry after the index that published it */
    struct virtq_used_elem *e = &q->used->ring[q->last_used % q->num];
    u16 head = (u16)e->id;
    u32 written = e->len;
    q->last_used++;
    if (head >= q->num)
        return 0;               /* a broken device; don't follow it into the table */
    u16 i = head, n = 1;
    while ((q->desc[i].flags & VIRTQ_DESC_F_NEXT) && n < q->num) {
        i = q->desc[i].next;
        n++;
    }
    q->desc[i].next = q->free_head;
    q->free_head = head;
    q->num_free += n;
    if (cookie)
        *cookie = q->cookie[head];
    if (len)
        *len = written;
    return 1;
}

/* Interrupt me when the used entry `after` entries from now (1 = the next one) is
 * written; returns nonzero if entries are already there (then don't wait for one). */
HELPER int vq_enable_cb(struct virtq *q, u16 after)
{
    if (q->dev->event_idx)
        *q->used_event = (u16)(q->last_used + after - 1);
    else
        *(volatile u16 *)&q->avail->flags = 0;
    mb();                       /* used_event visible before we look at used idx again */
    return vq_has_used(q);
}

/* No interrupts for this queue: used_event one behind the next entry is never passed
 * until the index wraps (EVENT_IDX), else the NO_INTERRUPT hint. */
HELPER void vq_disable_cb(struct virtq *q)
{
    if (q->dev->event_idx)
        *q->used_event = (u16)(q->last_used - 1);
    else
        *(volatile u16 *)&q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
}

/* Poll (no interrupts) until a used entry is there; 0 if `timeout` ticks pass first. */
HELPER int vq_wait_used(struct virtq *q, u32 timeout)
{
    u32 start = ticks();
    while (!vq_has_used(q))
        if (ticks() - start > timeout)
            return 0;
    return 1;
}

/* Far reads from physical memory outside segment 0 (DMA targets we only inspect). */
HELPER u32 far_r32(u32 phys)
{
    return peekl((u16)(phys >> 4), (u16)(phys & 15));
}

#endif
