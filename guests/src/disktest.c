/* disktest: drives the primary ATA channel's master (ports 0x1F0-0x1F7, 0x3F6, IRQ 14)
 * with port I/O only -- no INT 13h after the boot sector has loaded the image.
 *
 * Expects the scratch disk of guests.scratch_disk() (its pattern, and the result lines
 * shared with disktest-virtio, are in disktest_common.h). Every read is checked against
 * that pattern and its FNV-1a checksum printed, so the output depends only on the disk's
 * contents and on ATA behaviour the standard fixes (never on model/serial/firmware strings).
 *
 * IDENTIFY and the reads are interrupt driven (IRQ 14, vector 0x76, one interrupt per
 * DRQ block); the other commands run with nIEN set and poll the alternate status. */
#include "cguest.h"
#include "disktest_common.h"

/* ATA command block registers (primary channel) */
#define ATA_DATA      0x1f0
#define ATA_ERROR     0x1f1     /* read */
#define ATA_FEATURES  0x1f1     /* write */
#define ATA_COUNT     0x1f2
#define ATA_LBA_LOW   0x1f3
#define ATA_LBA_MID   0x1f4
#define ATA_LBA_HIGH  0x1f5
#define ATA_DEVICE    0x1f6
#define ATA_STATUS    0x1f7     /* read: also acknowledges (clears) INTRQ */
#define ATA_COMMAND   0x1f7     /* write */
/* control block */
#define ATA_ALTSTATUS 0x3f6     /* read: status without acknowledging INTRQ */
#define ATA_DEVCTL    0x3f6     /* write */

#define ST_BSY  0x80
#define ST_DRDY 0x40
#define ST_DF   0x20
#define ST_DRQ  0x08
#define ST_ERR  0x01

#define CTL_NIEN 0x02           /* 1: the device keeps INTRQ deasserted */
#define CTL_SRST 0x04

#define DEV_LBA  0xe0           /* obsolete bits 7 and 5 set, LBA mode, device 0 */

#define CMD_READ_SECTORS     0x20
#define CMD_WRITE_SECTORS    0x30
#define CMD_READ_VERIFY      0x40
#define CMD_READ_MULTIPLE    0xc4
#define CMD_SET_MULTIPLE     0xc6
#define CMD_FLUSH_CACHE      0xe7
#define CMD_IDENTIFY_DEVICE  0xec

#define ATA_IRQ 14

#define IRQ_TIMEOUT  (2 * TICKS_PER_SECOND)
#define BUSY_TIMEOUT (5 * TICKS_PER_SECOND)

static u16 ident[SECTOR_WORDS];

/* ---- register level ------------------------------------------------------------------- */

static void delay400ns(void)
{
    for (int i = 0; i < 4; i++)
        inb(ATA_ALTSTATUS);
}

/* Poll the alternate status until BSY clears; returns it, or ST_BSY on timeout. */
static u8 wait_not_busy(void)
{
    u32 start = ticks();
    u8 st;
    delay400ns();
    while ((st = inb(ATA_ALTSTATUS)) & ST_BSY)
        if (ticks() - start > BUSY_TIMEOUT)
            return ST_BSY;
    return st;
}

static void set_nien(int off) { outb(ATA_DEVCTL, off ? CTL_NIEN : 0); }

/* Let the next interrupt through: acknowledge the device, zero the count, unmask IRQ 14
 * (the stub masked it when the last one came). */
static void arm_irq(void)
{
    inb(ATA_STATUS);
    cli();
    irq_counts[ATA_IRQ] = 0;
    sti();
    unmask_slave_irq(ATA_IRQ);
}

/* Wait for the device to finish the current step: for IRQ first the interrupt, then in
 * both modes BSY clear. Returns the status register (read last: it acknowledges INTRQ). */
static u8 wait_step(enum mode mode)
{
    if (mode == IRQ) {
        irq_waits++;
        if (!wait_irq(ATA_IRQ, IRQ_TIMEOUT))
            irq_missed++;
    }
    if (wait_not_busy() & ST_BSY)
        return ST_BSY;
    u8 st = inb(ATA_STATUS);
    if (mode == IRQ)
        arm_irq();
    return st;
}

static const char *issue(u8 cmd, u32 lba, u16 count, u8 features, enum mode mode)
{
    outb(ATA_DEVICE, (u8)(DEV_LBA | ((lba >> 24) & 0x0f)));
    if (wait_not_busy() & ST_BSY)
        return "busy before the command";
    set_nien(mode == POLL);
    if (mode == IRQ)
        arm_irq();
    outb(ATA_FEATURES, features);
    outb(ATA_COUNT, (u8)count);
    outb(ATA_LBA_LOW, (u8)lba);
    outb(ATA_LBA_MID, (u8)(lba >> 8));
    outb(ATA_LBA_HIGH, (u8)(lba >> 16));
    outb(ATA_COMMAND, cmd);
    return 0;
}

/* A command with no data phase: issue it and check it completes without error. */
static const char *nondata(u8 cmd, u32 lba, u16 count, enum mode mode)
{
    const char *err = issue(cmd, lba, count, 0, mode);
    if (err)
        return err;
    u8 st = wait_step(mode);
    if (st & ST_BSY)
        return "still busy";
    if (st & (ST_ERR | ST_DF))
        return "error status";
    if (st & ST_DRQ)
        return "DRQ set";
    return 0;
}

/* The status that must start each DRQ block of a PIO transfer: 0, or what is wrong. */
static const char *drq_error(u8 st)
{
    if (st & ST_BSY)
        return "still busy";
    if (st & (ST_ERR | ST_DF))
        return "error status";
    if (!(st & ST_DRQ))
        return "no DRQ";
    return 0;
}

/* PIO data-in (READ SECTORS, READ MULTIPLE, IDENTIFY): one DRQ block of `block` sectors
 * (the last may be shorter) per wait. */
static const char *pio_in(u8 cmd, u32 lba, u16 count, u16 block, u16 *dst, enum mode mode)
{
    const char *err = issue(cmd, lba, count, 0, mode);
    if (err)
        return err;
    for (u16 left = count; left;) {
        if ((err = drq_error(wait_step(mode))) != 0)
            return err;
        u16 n = left < block ? left : block;
        for (u32 i = 0; i < (u32)n * SECTOR_WORDS; i++)
            *dst++ = inw(ATA_DATA);
        left -= n;
    }
    u8 st = wait_not_busy();
    if (st & (ST_BSY | ST_DRQ | ST_ERR | ST_DF))
        return "bad status after the data";
    inb(ATA_STATUS);
    return 0;
}

/* PIO data-out (WRITE SECTORS), polled: DRQ for each sector, then completion. */
static const char *pio_out(u8 cmd, u32 lba, u16 count, const u16 *src)
{
    const char *err = issue(cmd, lba, count, 0, POLL);
    if (err)
        return err;
    for (u16 s = 0; s < count; s++) {
        if ((err = drq_error(wait_step(POLL))) != 0)
            return err;
        for (u32 i = 0; i < SECTOR_WORDS; i++)
            outw(ATA_DATA, *src++);
    }
    u8 st = wait_step(POLL);
    if (st & ST_BSY)
        return "still busy";
    if (st & (ST_ERR | ST_DF | ST_DRQ))
        return "bad status after the data";
    return 0;
}

static const char *read_polled(u32 lba, u16 count)
{
    return pio_in(CMD_READ_SECTORS, lba, count, 1, buf, POLL);
}

/* ---- the steps ---------------------------------------------------------------------------- */

static int step_reset(void)
{
    outb(ATA_DEVICE, DEV_LBA);
    outb(ATA_DEVCTL, CTL_SRST | CTL_NIEN);
    for (int i = 0; i < 8; i++)     /* SRST must stay set for at least 5 us */
        delay400ns();
    outb(ATA_DEVCTL, CTL_NIEN);
    u8 st = wait_not_busy();
    const char *err = 0;
    if (st == 0xff)
        err = "no device (floating bus)";
    else if (st & ST_BSY)
        err = "BSY never cleared";
    else if ((st & (ST_DRDY | ST_DF | ST_DRQ | ST_ERR)) != ST_DRDY)
        err = "status after reset";
    else if (inb(ATA_ERROR) != 0x01)
        err = "diagnostic code";    /* 01h: device 0 passed */
    else if (inb(ATA_COUNT) != 1 || inb(ATA_LBA_LOW) != 1 || inb(ATA_LBA_MID) != 0 ||
             inb(ATA_LBA_HIGH) != 0)
        err = "not the ATA signature";
    result("reset", err);
    endl();
    return !err;
}

static int step_identify(void)
{
    const char *err = pio_in(CMD_IDENTIFY_DEVICE, 0, 1, 1, ident, IRQ);
    if (!err && (ident[0] & 0x8000))
        err = "word 0 says not an ATA device";
    result("identify", err);
    endl();
    if (err)
        return 0;
    capacity = ident[60] | ((u32)ident[61] << 16);
    puts("capacity ");
    putdec(capacity);
    puts(" sectors, LBA ");
    puts(ident[49] & 0x0200 ? "yes" : "no");
    endl();
    return 1;
}

static void step_read(u32 lba, u16 count, u8 cmd, u16 block, const char *what)
{
    report_read(what, lba, count, disk_word, pio_in(cmd, lba, count, block, buf, IRQ));
}

static void step_set_multiple(void)
{
    const char *err = 0;
    if ((ident[47] & 0xff) < 4)
        err = "device's READ MULTIPLE limit below 4";
    else
        err = nondata(CMD_SET_MULTIPLE, 0, 4, POLL);
    result("set multiple 4", err);
    endl();
}

static void step_verify(void)
{
    const char *err = nondata(CMD_READ_VERIFY, 1000, 16, POLL);
    result("read verify lba 1000-1015", err);
    endl();
}

static void step_read_past_end(void)
{
    /* One sector beyond the last: the device must refuse (ERR) without a data phase. */
    const char *err = issue(CMD_READ_SECTORS, capacity, 1, 0, POLL);
    if (!err) {
        u8 st = wait_step(POLL);
        if (st & ST_BSY)
            err = "still busy";
        else if (!(st & ST_ERR))
            err = "no ERR";
        else if (st & ST_DRQ)
            err = "DRQ set";
        else if (!(inb(ATA_ERROR) & 0x14))
            err = "neither IDNF nor ABRT";
    }
    result("read past the end refused", err);
    endl();
}

static void step_write(void)
{
    fill_words(wbuf, 10, 8, write_word);
    const char *err = pio_out(CMD_WRITE_SECTORS, 10, 8, wbuf);
    result("write lba 10-17", err);
    endl();
    result("flush cache", nondata(CMD_FLUSH_CACHE, 0, 0, POLL));
    endl();
    step_read_back();
}

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    puts("disktest: ATA primary master, port I/O, IRQ 14\r\n");
    set_slave_vector(ATA_IRQ, isr_irq14);

    if (step_reset() && step_identify()) {
        step_read(0, 1, CMD_READ_SECTORS, 1, "read sectors");
        step_read(1, 1, CMD_READ_SECTORS, 1, "read sectors");
        step_read(100, 1, CMD_READ_SECTORS, 1, "read sectors");
        step_read(capacity - 1, 1, CMD_READ_SECTORS, 1, "read sectors");
        step_read(50, 4, CMD_READ_SECTORS, 1, "read sectors");
        step_set_multiple();
        step_read(200, 8, CMD_READ_MULTIPLE, 4, "read multiple");
        step_irq("a DRQ block came without its interrupt");
        step_verify();
        step_read_past_end();
        step_write();
    }
    set_nien(1);
    summary("disktest");
    halt();
}
