/* disktest-virtio: disktest's work on a virtio-blk device (virtio-mmio, split virtqueue,
 * EVENT_IDX), printing the same result lines so the two styles compare on the same work.
 * Only the header line differs.
 *
 * Expects the scratch disk of guests.scratch_disk() (see disktest_common.h). How disktest's ATA
 * steps map onto virtio-blk (the printed names stay the ATA ones):
 *
 *   reset              probe the slots, reset the device (Status 0 reads back 0)
 *   identify           features, queue, DRIVER_OK; capacity from config space
 *   read sectors       one VIRTIO_BLK_T_IN request per step, interrupt driven
 *   set multiple 4     the queue holds a batch of 4 requests (3 descriptors each)
 *   read multiple      4 requests of 2 sectors made available with one doorbell; one
 *                      interrupt for the batch (used_event set 4 entries ahead)
 *   irq14              every interrupt-driven wait got its used-buffer interrupt
 *   read verify        16 sectors read to a buffer outside the program (0x10000) and
 *                      only compared there, polled
 *   read past the end  sector = capacity: status VIRTIO_BLK_S_IOERR
 *   write              LBA 10-17 in one request with 8 data segments (an indirect
 *                      table if VIRTIO_F_INDIRECT_DESC was negotiated), polled
 *   flush cache        VIRTIO_BLK_T_FLUSH, polled
 *   read back / 9, 18  polled reads */
#include "cguest.h"
#include "virtio.h"
#include "disktest_common.h"

#define BATCH 4                 /* "read multiple": requests per doorbell */
#define VERIFY_BUF 0x10000u     /* physical, outside segment 0 */
#define VERIFY_LBA 1000
#define VERIFY_SECTORS 16

static struct virtio_blk_req hdr[BATCH];
static volatile u8 status[BATCH];
static struct virtq_desc indirect_table[BATCH][MAX_SECTORS + 2] __attribute__((aligned(16)));
static struct virtq_mem qmem;
static struct virtq vq;
static struct vdev blk;
static u32 seg_max = MAX_SECTORS;

/* ---- requests ------------------------------------------------------------------------------- */

/* Build request `slot` (header, `nseg` data segments of `data`, status byte) and make it
 * available; not yet kicked. The chain goes through the slot's indirect table if
 * VIRTIO_F_INDIRECT_DESC was negotiated and either `use_indirect` asks for it or the
 * ring has no room for a direct chain. */
static const char *queue_req(int slot, u32 type, u32 sector, void *data, u32 bytes, u16 nseg,
                             int use_indirect)
{
    struct vbuf b[MAX_SECTORS + 2];
    u16 n = 0;
    hdr[slot].type = type;
    hdr[slot].reserved = 0;
    hdr[slot].sector_lo = sector;
    hdr[slot].sector_hi = 0;
    status[slot] = STATUS_UNSET;
    b[n++] = (struct vbuf){&hdr[slot], sizeof hdr[slot], 0};
    for (u16 s = 0; s < nseg; s++)
        b[n++] = (struct vbuf){(u8 *)data + s * (bytes / nseg), bytes / nseg, type == VIRTIO_BLK_T_IN};
    b[n++] = (struct vbuf){(const void *)&status[slot], 1, 1};
    if (!accepted(&blk, VIRTIO_F_INDIRECT_DESC))
        use_indirect = 0;
    else if (vq.num_free < n)
        use_indirect = 1;
    if (vq_add(&vq, b, n, (u16)slot, use_indirect ? indirect_table[slot] : 0) < 0)
        return "no room in the queue";
    return 0;
}

static const char *status_error(u8 st)
{
    switch (st) {
    case VIRTIO_BLK_S_OK: return 0;
    case VIRTIO_BLK_S_IOERR: return "status IOERR";
    case VIRTIO_BLK_S_UNSUPP: return "status UNSUPP";
    case STATUS_UNSET: return "status byte not written";
    default: return "bad status byte";
    }
}

/* Kick `count` queued requests and collect their completions: for IRQ one interrupt
 * for the whole batch (used_event set `count` entries ahead), for POLL none. */
static const char *run_batch(u16 count, enum mode mode)
{
    u16 seen = blk.vring_irqs;
    if (mode == IRQ)
        vq_enable_cb(&vq, count);
    else
        vq_disable_cb(&vq);
    vq_kick(&vq);
    if (mode == IRQ) {
        irq_waits++;
        if (!virtio_wait_irq(&blk, seen, 2 * TICKS_PER_SECOND))
            irq_missed++;
    }
    const char *err = 0;
    for (u16 done = 0; done < count; done++) {
        if (!vq_wait_used(&vq, 5 * TICKS_PER_SECOND))
            return virtio_broken(&blk) ? "device needs reset" : "request never completed";
        u16 slot;
        u32 len;
        if (!vq_get(&vq, &slot, &len))
            return "bad used entry";
        if (!err && slot < BATCH)
            err = status_error(status[slot]);
    }
    vq_disable_cb(&vq);
    return err;
}

static const char *blk_rw(u32 type, u32 lba, u16 count, void *data, enum mode mode)
{
    const char *err = queue_req(0, type, lba, data, (u32)count * 512, 1, 0);
    return err ? err : run_batch(1, mode);
}

static const char *read_polled(u32 lba, u16 count)
{
    return blk_rw(VIRTIO_BLK_T_IN, lba, count, buf, POLL);
}

/* ---- the steps ---------------------------------------------------------------------------- */

static int step_reset(void)
{
    return virtio_step_reset(&blk, VIRTIO_ID_BLOCK, "no virtio-blk device in the virtio-mmio slots");
}

static int step_identify(void)
{
    virtio_hook_irq(&blk);
    const char *err = virtio_negotiate(&blk, (1u << VIRTIO_BLK_F_SEG_MAX) | (1u << VIRTIO_BLK_F_FLUSH), 0, 1);
    if (!err && (err = vq_setup(&blk, &vq, &qmem, 0, 0)) != 0)
        virtio_fail(&blk);
    if (!err)
        err = virtio_driver_ok(&blk);
    u32 cap[2] = {0, 0};
    if (!err) {
        vcfg_read(&blk, VIRTIO_BLK_CFG_CAPACITY, cap, sizeof cap, 4);
        if (accepted(&blk, VIRTIO_BLK_F_SEG_MAX)) {
            vcfg_read(&blk, VIRTIO_BLK_CFG_SEG_MAX, &seg_max, sizeof seg_max, 4);
            if (!seg_max)
                seg_max = 1;
        }
        if (cap[1])
            err = "capacity beyond 2^32 sectors";
        else if (offered(&blk, VIRTIO_BLK_F_RO))
            err = "device is read-only";
    }
    result("identify", err);
    endl();
    if (err)
        return 0;
    capacity = cap[0];
    puts("capacity ");
    putdec(capacity);
    puts(" sectors, LBA yes");      /* virtio-blk addresses sectors only */
    endl();
    return 1;
}

static void step_read(u32 lba, u16 count)
{
    memset(buf, 0, sizeof buf);
    report_read("read sectors", lba, count, disk_word, blk_rw(VIRTIO_BLK_T_IN, lba, count, buf, IRQ));
}

static void step_set_multiple(void)
{
    const char *err = 0;
    if (vq.num_free < (accepted(&blk, VIRTIO_F_INDIRECT_DESC) ? BATCH : BATCH * 3))
        err = "queue too small for a batch of 4 requests";
    result("set multiple 4", err);
    endl();
}

/* 8 sectors as 4 requests of 2, one doorbell, one interrupt. */
static void step_read_multiple(u32 lba)
{
    const char *err = 0;
    u16 queued = 0;
    int ind = vq.num_free < BATCH * 3;     /* indirect if the direct chains won't all fit */
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < BATCH && !err; i++)
        if (!(err = queue_req(i, VIRTIO_BLK_T_IN, lba + 2 * (u32)i, buf + i * 2 * SECTOR_WORDS,
                              2 * 512, 1, ind)))
            queued++;
    if (queued) {   /* even after a failure: what was made available must come back */
        const char *e = run_batch(queued, IRQ);
        if (!err)
            err = e;
    }
    if (!err && vq.notifies == 0)
        err = "no doorbell";
    report_read("read multiple", lba, 2 * BATCH, disk_word, err);
}

static void step_verify(void)
{
    const char *err = blk_rw(VIRTIO_BLK_T_IN, VERIFY_LBA, VERIFY_SECTORS, (void *)VERIFY_BUF, POLL);
    for (u32 s = 0; !err && s < VERIFY_SECTORS; s++)
        for (u32 i = 0; i < 128; i++)
            if (far_r32(VERIFY_BUF + s * 512 + i * 4) != disk_word(VERIFY_LBA + s, i)) {
                err = "data differs from the pattern";
                break;
            }
    result("read verify lba 1000-1015", err);
    endl();
}

static void step_read_past_end(void)
{
    const char *err = queue_req(0, VIRTIO_BLK_T_IN, capacity, buf, 512, 1, 0);
    if (!err) {
        err = run_batch(1, POLL);
        if (!err)
            err = "completed OK";
        else if (status[0] == VIRTIO_BLK_S_IOERR)
            err = 0;
    }
    result("read past the end refused", err);
    endl();
}

static void step_write(void)
{
    fill_words(wbuf, 10, 8, write_word);
    int ind = accepted(&blk, VIRTIO_F_INDIRECT_DESC);
    u16 nseg = MAX_SECTORS;     /* fewer, larger segments if the device or ring wants */
    while (nseg > 1 && (nseg > seg_max || (!ind && nseg + 2u > vq.num_free)))
        nseg >>= 1;
    const char *err = queue_req(0, VIRTIO_BLK_T_OUT, 10, wbuf, 8 * 512, nseg, ind);
    if (!err)
        err = run_batch(1, POLL);
    result("write lba 10-17", err);
    endl();

    if (accepted(&blk, VIRTIO_BLK_F_FLUSH)) {
        err = queue_req(0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, 0);
        if (!err)
            err = run_batch(1, POLL);
    } else {
        err = 0;    /* §5.2.6.2: without FLUSH (and CONFIG_WCE) the device writes through */
    }
    result("flush cache", err);
    endl();

    step_read_back();
}

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    int found = virtio_title(&blk, VIRTIO_ID_BLOCK, "disktest-virtio: virtio-blk");

    if (step_reset() && step_identify()) {
        step_read(0, 1);
        step_read(1, 1);
        step_read(100, 1);
        step_read(capacity - 1, 1);
        step_read(50, 4);
        step_set_multiple();
        step_read_multiple(200);
        step_irq("a request completed without its interrupt");
        step_verify();
        step_read_past_end();
        step_write();
    }
    if (found)
        virtio_reset(&blk);     /* stop the device before we stop looking after it */
    summary("disktest");
    halt();
}
