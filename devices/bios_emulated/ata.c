/* ATA (IDE) hard disks in PIO mode: IDENTIFY DEVICE at POST, READ SECTORS /
 * WRITE SECTORS with LBA28 addressing, FLUSH CACHE after writes.
 *
 * Waiting: the C code runs with interrupts off, so whenever the device is
 * busy it calls rm_wait(14/15), which sleeps in real mode (sti;hlt) until
 * the channel's IRQ or the next timer tick. The condition is always re-read
 * from the status register (which also acknowledges INTRQ): the IRQ is only
 * the wake-up, so an IRQ that came early or late cannot confuse a transfer. */
#include "bios.h"

/* Command block registers (offsets from 0x1F0 / 0x170). */
enum {
    ATA_DATA = 0, ATA_ERROR = 1, ATA_SECTOR_COUNT = 2, ATA_LBA_LOW = 3,
    ATA_LBA_MID = 4, ATA_LBA_HIGH = 5, ATA_DEVICE = 6, ATA_STATUS = 7, ATA_COMMAND = 7,
};
/* Status */
#define ATA_BSY 0x80
#define ATA_DRDY 0x40
#define ATA_DF 0x20
#define ATA_DRQ 0x08
#define ATA_ERR 0x01
/* Error */
#define ATA_ERR_UNC 0x40
#define ATA_ERR_IDNF 0x10
/* Device register: bits 7 and 5 are obsolete and set; bit 6 selects LBA. */
#define ATA_DEV_OBS 0xA0
#define ATA_DEV_LBA 0x40
#define ATA_DEV_SLAVE 0x10
/* Device control (0x3F6 / 0x376): nIEN clear so the device interrupts. */
#define ATA_CTL_NIEN 0x02
/* Commands */
#define ATA_CMD_READ_SECTORS 0x20
#define ATA_CMD_WRITE_SECTORS 0x30
#define ATA_CMD_FLUSH_CACHE 0xE7
#define ATA_CMD_IDENTIFY 0xEC

#define ATA_TIMEOUT_TICKS 91    /* 5 s: spin-up of a real disk */
#define MAX_WAKEUPS 100000      /* if IRQ 0 is masked, still give up some day */

struct ata_chan { u16 base, ctl; u8 irq; };
static const struct ata_chan channels[2] = {
    { 0x1F0, 0x3F6, 14 },
    { 0x170, 0x376, 15 },
};

static const struct ata_chan *chan_of(u8 where) { return &channels[(where >> 1) & 1]; }

u32 ticks_since(u32 start)
{
    u32 now = BDA32(BDA_TICKS);
    return now >= start ? now - start : now + 0x1800B0u - start;
}

/* Status once BSY is clear, or -1 on timeout or a floating bus (0xFF). */
static int ata_wait_ready(const struct ata_chan *c)
{
    u32 start = BDA32(BDA_TICKS);
    for (u32 n = 0;; n++) {
        u8 st = inb((u16)(c->base + ATA_STATUS));
        if (st == 0xFF)
            return -1;
        if (!(st & ATA_BSY))
            return st;
        if (ticks_since(start) > ATA_TIMEOUT_TICKS || n > MAX_WAKEUPS)
            return -1;
        rm_wait(c->irq);
    }
}

static void ata_select(const struct ata_chan *c, u8 where, u8 lba_high4)
{
    outb((u8)(ATA_DEV_OBS | ATA_DEV_LBA | ((where & 1) ? ATA_DEV_SLAVE : 0) | (lba_high4 & 0x0F)),
         (u16)(c->base + ATA_DEVICE));
    /* 400 ns for the device to answer the selection: four alternate status reads. */
    for (int i = 0; i < 4; i++)
        inb(c->ctl);
}

int ata_probe(u8 where, struct ata_drive *d)
{
    const struct ata_chan *c = chan_of(where);
    ata_select(c, where, 0);
    u8 st = inb((u16)(c->base + ATA_STATUS));
    if (st == 0xFF || st == 0x00)
        return -1;              /* no channel (floating) / no such device */
    outb(0, c->ctl);            /* nIEN = 0 */
    if (ata_wait_ready(c) < 0)
        return -1;
    outb(ATA_CMD_IDENTIFY, (u16)(c->base + ATA_COMMAND));
    int s = ata_wait_ready(c);
    /* ERR: not an ATA device (an ATAPI one aborts IDENTIFY DEVICE). */
    if (s < 0 || (s & (ATA_ERR | ATA_DF)) || !(s & ATA_DRQ))
        return -1;
    u32 cyls = 0, heads = 0, spt = 0, total = 0;
    for (u32 i = 0; i < 256; i++) {
        u16 w = inw((u16)(c->base + ATA_DATA));
        switch (i) {
        case 1: cyls = w; break;
        case 3: heads = w; break;
        case 6: spt = w; break;
        case 60: total = w; break;
        case 61: total |= (u32)w << 16; break;
        }
    }
    if (!cyls || !heads || heads > 16 || !spt || spt > 63)
        return -1;
    if (!total)
        total = cyls * heads * spt;
    if (total > 0x0FFFFFFF)
        total = 0x0FFFFFFF;     /* LBA28 */
    d->where = where;
    d->heads = (u8)heads;
    d->spt = (u8)spt;
    d->pad = 0;
    d->cyls = (u16)cyls;
    d->total = total;
    return 0;
}

static u8 ata_error(const struct ata_chan *c, int st)
{
    if (st < 0)
        return DISK_RET_ETIMEOUT;
    if (st & ATA_ERR) {
        u8 e = inb((u16)(c->base + ATA_ERROR));
        if (e & ATA_ERR_IDNF)
            return DISK_RET_ENOTFOUND;
        if (e & ATA_ERR_UNC)
            return DISK_RET_ECC;
    }
    return DISK_RET_ECONTROLLER;
}

/* One sector through the data register as 128 32-bit accesses: the PCI IDE
 * controllers (PIIX, which QEMU models) and hv's channel take 32-bit PIO, and
 * it halves the port accesses (and exits) per sector. */
static void ata_pio(u16 port, int write, u32 buf)
{
    u32 n = 128;
    if (write)
        __asm__ volatile("rep outsl" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
    else
        __asm__ volatile("rep insl" : "+D"(buf), "+c"(n) : "d"(port) : "memory");
}

u8 ata_rw(const struct ata_drive *d, int write, u32 lba, u32 count, u32 buf, u32 *done)
{
    const struct ata_chan *c = chan_of(d->where);
    *done = 0;
    while (count) {
        u32 n = count > 256 ? 256 : count;      /* sector count 0 means 256 */
        outb(0, c->ctl);
        ata_select(c, d->where, (u8)(lba >> 24));
        int st = ata_wait_ready(c);     /* ERR here is the last command's */
        if (st < 0)
            return ata_error(c, st);
        outb((u8)n, (u16)(c->base + ATA_SECTOR_COUNT));
        outb((u8)lba, (u16)(c->base + ATA_LBA_LOW));
        outb((u8)(lba >> 8), (u16)(c->base + ATA_LBA_MID));
        outb((u8)(lba >> 16), (u16)(c->base + ATA_LBA_HIGH));
        outb(write ? ATA_CMD_WRITE_SECTORS : ATA_CMD_READ_SECTORS, (u16)(c->base + ATA_COMMAND));
        for (u32 i = 0; i < n; i++) {
            st = ata_wait_ready(c);
            if (st < 0 || (st & (ATA_ERR | ATA_DF)) || !(st & ATA_DRQ))
                return ata_error(c, st);
            ata_pio(c->base + ATA_DATA, write, buf);
            buf += 512;
            if (!write)
                ++*done;
        }
        if (write) {
            /* The last sector is on the medium once BSY drops without an error. */
            st = ata_wait_ready(c);
            if (st < 0 || (st & (ATA_ERR | ATA_DF)))
                return ata_error(c, st);
            *done += n;
        }
        lba += n;
        count -= n;
    }
    if (write) {
        /* Devices without a write cache abort FLUSH CACHE: that is fine. */
        outb(ATA_CMD_FLUSH_CACHE, (u16)(c->base + ATA_COMMAND));
        int st = ata_wait_ready(c);
        if (st < 0 || (st & ATA_DF))
            return ata_error(c, st);
    }
    return DISK_RET_SUCCESS;
}
