/* blk.c (UVM_FULL, included by uvm.c): the boot disk's block drivers, polled.
 *
 * ATA PIO on the primary channel's master (0x1F0, LBA28, 32-bit data-port accesses, interrupts
 * off with nIEN): the full VM's IDE disk. virtio-blk on virtio-mmio slot 0 (0xD0000, one split virtqueue of three
 * descriptors a request): the enlightened VM's synthetic disk. The kernel takes the virtio
 * disk if one answers, else the IDE disk; which one it found is its flavor.
 * Every wait is bounded: a device that never answers is -EIO, not a hang. */

#define SECTOR 512u
#define BLK_MAX 128u                      /* sectors per request: 64 KiB */
enum { DISK_NONE, DISK_ATA, DISK_VIRTIO };
static int disk_kind;
static u32 disk_sectors, disk_reads, disk_writes;

static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }

/* ---- ATA PIO ------------------------------------------------------------------------------- */
#define ATA 0x1F0
#define ATA_CTL 0x3F6
enum { ST_ERR = 0x01, ST_DRQ = 0x08, ST_DF = 0x20, ST_DRDY = 0x40, ST_BSY = 0x80 };

static int ata_wait(u8 want)            /* BSY clear and `want` set; -EIO on error or timeout */
{
    for (u32 spin = 0; spin < 1000000; spin++) {
        u8 s = inb(ATA + 7);
        if (s == 0xFF) return -EIO;     /* floating bus: no drive */
        if (s & ST_BSY) continue;
        if (s & (ST_ERR | ST_DF)) return -EIO;
        if ((s & want) == want) return 0;
    }
    return -EIO;
}

static int ata_probe(void)
{
    static u16 id[256];
    outb(ATA_CTL, 0x02);                /* nIEN: we poll */
    outb(ATA + 6, 0xA0);                /* master */
    u8 s = inb(ATA + 7);
    if (s == 0xFF || s == 0) return -1;
    outb(ATA + 7, 0xEC);                /* IDENTIFY DEVICE */
    if (inb(ATA + 7) == 0 || ata_wait(ST_DRQ)) return -1;
    __asm__ volatile("rep insw" : : "D"(id), "c"(256), "d"(ATA) : "memory");
    disk_sectors = id[60] | (u32)id[61] << 16;
    return disk_sectors ? 0 : -1;
}

static int ata_io(u32 lba, u32 n, u8 *buf, int writing)
{
    if (ata_wait(0)) return -EIO;
    outb(ATA + 6, 0xE0 | (lba >> 24 & 0x0F));
    outb(ATA + 2, (u8)n);               /* n <= 128 */
    outb(ATA + 3, (u8)lba);
    outb(ATA + 4, (u8)(lba >> 8));
    outb(ATA + 5, (u8)(lba >> 16));
    outb(ATA + 7, writing ? 0x30 : 0x20);
    for (u32 i = 0; i < n; i++) {
        if (ata_wait(ST_DRQ)) return -EIO;
        /* 32-bit PIO (two words an access, low first): half the port accesses of insw */
        u32 words = SECTOR / 4;
        if (writing)
            __asm__ volatile("rep outsl" : "+S"(buf), "+c"(words) : "d"(ATA) : "memory");
        else
            __asm__ volatile("rep insl" : "+D"(buf), "+c"(words) : "d"(ATA) : "memory");
    }
    return writing ? ata_wait(0) : 0;
}

/* ---- virtio-blk ---------------------------------------------------------------------------- */
#define VBLK_BASE 0xD0000u
static struct vq qblk;
static struct { u32 type, reserved; u64 sector; } vblk_hdr __attribute__((aligned(16)));
static volatile u8 vblk_status;

static int vblk_probe(void)
{
    if (mr(VBLK_BASE, 0) != 0x74726976u || mr(VBLK_BASE, 4) != 2 || mr(VBLK_BASE, 8) != 2)
        return -1;
    if (vq_init(&qblk, VBLK_BASE, 2) < 0) return -1;
    disk_sectors = mr(VBLK_BASE, 0x104) ? 0xFFFFFFFFu : mr(VBLK_BASE, 0x100);
    return 0;
}

static int vblk_io(u32 lba, u32 n, u8 *buf, int writing)
{
    struct vq *q = &qblk;
    vblk_hdr.type = writing ? 1 : 0;
    vblk_hdr.sector = lba;
    vblk_status = 0xFF;
    q->desc[0].addr = (u32)&vblk_hdr; q->desc[0].len = 16; q->desc[0].flags = 1; q->desc[0].next = 1;
    q->desc[1].addr = (u32)buf; q->desc[1].len = n * SECTOR;
    q->desc[1].flags = 1 | (writing ? 0 : 2); q->desc[1].next = 2;
    q->desc[2].addr = (u32)&vblk_status; q->desc[2].len = 1; q->desc[2].flags = 2; q->desc[2].next = 0;
    q->avail->ring[q->avail_idx % QSZ] = 0;
    __asm__ volatile("" ::: "memory");
    q->avail->idx = ++q->avail_idx;
    __asm__ volatile("" ::: "memory");
    mw(q->base, 0x050, 0);
    stats.doorbells++;
    for (u32 spin = 0; *(volatile u16 *)&q->used->idx == q->last_used; spin++)
        if (spin > 10000000) return -EIO;
    q->last_used++;
    return vblk_status == 0 ? 0 : -EIO;
}

/* ---- the disk --------------------------------------------------------------------------------- */
static int disk_probe(void)
{
    if (vblk_probe() == 0) disk_kind = DISK_VIRTIO;
    else if (ata_probe() == 0) disk_kind = DISK_ATA;
    return disk_kind == DISK_NONE ? -1 : 0;
}

static int disk_io(u32 lba, u32 n, void *buf, int writing)
{
    u8 *p = buf;
    while (n) {
        u32 k = n > BLK_MAX ? BLK_MAX : n;
        if (lba >= disk_sectors || k > disk_sectors - lba) return -EIO;
        int r = disk_kind == DISK_VIRTIO ? vblk_io(lba, k, p, writing) : ata_io(lba, k, p, writing);
        if (r < 0) return r;
        if (writing) disk_writes++; else disk_reads++;
        lba += k; n -= k; p += k * SECTOR;
    }
    return 0;
}

static int disk_read(u32 lba, u32 n, void *buf) { return disk_io(lba, n, buf, 0); }
static int disk_write(u32 lba, u32 n, const void *buf) { return disk_io(lba, n, (void *)buf, 1); }
