/* blkbench: sequential throughput of the virtio-blk device (bench/test_devices.py).
 *
 * Reads the whole disk (capacity from config space), then writes it back, with large
 * requests: REQ_BYTES per request, BATCH requests per doorbell, data buffers above the
 * program (0x10000..0x90000, physical) reused round-robin. The device completes a batch
 * inside its doorbell, so the driver polls the used ring with interrupts suppressed
 * (EVENT_IDX: used_event one behind): one exit per batch, the QueueNotify write.
 *
 * POST codes (port 0x80) delimit what the benchmark times:
 *   0x01  just before the first request
 *   0x02  the read phase completed (at once after 0x01 if reads are not asked for)
 *   0x03  the write phase and a FLUSH completed (at once after 0x02 if no writes)
 * then a result line on COM1 and cli; hlt.
 *
 * The benchmark patches `params` in a copy of the image (found by its magic):
 *   ops  bit 0 read phase, bit 1 write phase, bit 2 check that every request's first
 *        sector starts with its LBA (le32; the benchmark's disk is tagged so). */
#include "cguest.h"
#include "virtio.h"

#define SECTOR 512u
#define REQ_BYTES (128u * 1024)
#define REQ_SECTORS (REQ_BYTES / SECTOR)
#define BATCH 4                     /* requests per doorbell: 3 descriptors each, 12 of 16 */
#define BUF_BASE 0x10000u           /* BATCH * REQ_BYTES up to 0x90000, below the EBDA */

#define OP_READ  1
#define OP_WRITE 2
#define OP_CHECK 4

#define POST_PORT 0x80
#define POST_START 0x01
#define POST_READ_DONE 0x02
#define POST_WRITE_DONE 0x03

struct bench_params {
    char magic[8];                  /* "HVBENCH\0": where the benchmark patches */
    u32 ops;
};
static volatile struct bench_params params = {"HVBENCH", OP_READ | OP_WRITE};

static struct virtio_blk_req hdr[BATCH];
static volatile u8 status[BATCH];
static u32 req_lba[BATCH];
static struct virtq_mem qmem;
static struct virtq vq;
static struct vdev blk;
static u32 capacity;

static const char *queue_req(u16 slot, u32 type, u32 lba, u32 bytes)
{
    hdr[slot].type = type;
    hdr[slot].reserved = 0;
    hdr[slot].sector_lo = lba;
    hdr[slot].sector_hi = 0;
    status[slot] = STATUS_UNSET;
    req_lba[slot] = lba;
    struct vbuf b[3] = {
        {&hdr[slot], sizeof hdr[slot], 0},
        {(const void *)(BUF_BASE + slot * REQ_BYTES), bytes, type == VIRTIO_BLK_T_IN},
        {(const void *)&status[slot], 1, 1},
    };
    u16 n = bytes ? 3 : 2;
    if (!bytes)
        b[1] = b[2];                /* FLUSH: header and status only */
    return vq_add(&vq, b, n, slot, 0) < 0 ? "no room in the queue" : 0;
}

/* Kick what is queued (one doorbell, no interrupt) and take `count` completions. */
static const char *complete(u16 count, int check)
{
    vq_disable_cb(&vq);
    vq_kick(&vq);
    for (u16 i = 0; i < count; i++) {
        u16 slot;
        if (!vq_wait_used(&vq, 5 * TICKS_PER_SECOND))
            return virtio_broken(&blk) ? "device needs reset" : "request never completed";
        if (!vq_get(&vq, &slot, 0) || slot >= BATCH)
            return "bad used entry";
        if (status[slot] != VIRTIO_BLK_S_OK)
            return status[slot] == STATUS_UNSET ? "status byte not written" : "request failed";
        if (check && far_r32(BUF_BASE + slot * REQ_BYTES) != req_lba[slot])
            return "data differs from the disk's tags";
    }
    return 0;
}

/* The whole disk, sequentially, in batches of BATCH requests. */
static const char *pass(u32 type, int check)
{
    for (u32 lba = 0; lba < capacity;) {
        u16 n = 0;
        for (; n < BATCH && lba < capacity; n++) {
            u32 count = capacity - lba < REQ_SECTORS ? capacity - lba : REQ_SECTORS;
            const char *err = queue_req(n, type, lba, count * SECTOR);
            if (err)
                return err;
            lba += count;
        }
        const char *err = complete(n, check);
        if (err)
            return err;
    }
    return 0;
}

static const char *init(void)
{
    const char *err = virtio_probe_reset(&blk, VIRTIO_ID_BLOCK,
                                         "no virtio-blk device in the virtio-mmio slots");
    if (!err)
        err = virtio_negotiate(&blk, 1u << VIRTIO_BLK_F_FLUSH, 0, 0);
    if (err)
        return err;
    virtio_hook_irq(&blk);          /* only so a stray interrupt is acknowledged */
    err = vq_setup(&blk, &vq, &qmem, 0, 0);
    if (!err && vq.num < 3 * BATCH)
        err = "queue too small for a batch";
    if (!err)
        err = virtio_driver_ok(&blk);
    if (err) {
        virtio_fail(&blk);
        return err;
    }
    u32 cap[2];
    vcfg_read(&blk, VIRTIO_BLK_CFG_CAPACITY, cap, 8, 4);
    if (cap[1])
        return "disk larger than 2^32 sectors";
    capacity = cap[0];
    return 0;
}

static void put_mib(u32 sectors)
{
    putdec(sectors / 2048);
    if (sectors % 2048) {
        puts(" MiB + ");
        putdec(sectors % 2048);
        puts(" sectors");
    } else {
        puts(" MiB");
    }
}

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    u32 ops = params.ops;
    const char *err = init();
    u32 read = 0, written = 0;
    if (!err) {
        outb(POST_PORT, POST_START);
        if (ops & OP_READ) {
            err = pass(VIRTIO_BLK_T_IN, (ops & OP_CHECK) != 0);
            if (!err)
                read = capacity;
        }
        outb(POST_PORT, POST_READ_DONE);
        if (!err && (ops & OP_WRITE)) {
            err = pass(VIRTIO_BLK_T_OUT, 0);
            if (!err)
                err = queue_req(0, VIRTIO_BLK_T_FLUSH, 0, 0);
            if (!err)
                err = complete(1, 0);
            if (!err)
                written = capacity;
        }
        outb(POST_PORT, POST_WRITE_DONE);
    }
    puts("blkbench: read ");
    put_mib(read);
    puts(", wrote ");
    put_mib(written);
    puts(", ");
    puts(err ? err : "ok");
    endl();
    halt();
}
