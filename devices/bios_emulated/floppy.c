/* Diskettes through the 82077AA floppy controller (0x3F0-0x3F7, IRQ 6) and
 * 8237 DMA channel 2, the way an AT BIOS does it: reset through the DOR,
 * SPECIFY, RECALIBRATE / SEEK each followed by SENSE INTERRUPT STATUS, READ
 * DATA / WRITE DATA one track at a time with the result phase checked.
 *
 * Waiting for IRQ 6: the IRQ 6 handler (entry.S) sets bit 7 of BDA 0x43E;
 * the C code clears it before a command and calls rm_wait(6) (real-mode
 * sti;hlt) until it is set again, bounded by a 2 s timeout in timer ticks.
 * Geometry comes from the CMOS drive type (register 0x10). */
#include "bios.h"

/* 82077AA registers */
#define FDC_DOR 0x3F2
#define FDC_MSR 0x3F4
#define FDC_FIFO 0x3F5
#define FDC_CCR 0x3F7           /* write: configuration control (data rate) */
/* DOR */
#define DOR_NRESET 0x04
#define DOR_DMA_IRQ 0x08        /* DMA and IRQ 6 enabled */
#define DOR_MOTA 0x10
/* MSR */
#define MSR_RQM 0x80
#define MSR_DIO 0x40            /* 1: controller -> CPU */
/* Commands (MFM bit set for READ/WRITE DATA; no multi-track: one track per command) */
#define FDC_SPECIFY 0x03
#define FDC_RECALIBRATE 0x07
#define FDC_SENSE_INTERRUPT 0x08
#define FDC_SEEK 0x0F
#define FDC_WRITE_DATA 0x45
#define FDC_READ_DATA 0x46
/* ST0 */
#define ST0_IC 0xC0
#define ST0_SE 0x20
/* ST1 */
#define ST1_MA 0x01
#define ST1_NW 0x02
#define ST1_ND 0x04
#define ST1_OR 0x10
#define ST1_DE 0x20
/* ST2 */
#define ST2_DD 0x20

/* 8237 DMA channel 2 */
#define DMA_CH2_ADDR 0x04
#define DMA_CH2_COUNT 0x05
#define DMA_MASK 0x0A
#define DMA_MODE 0x0B
#define DMA_FLIPFLOP 0x0C
#define DMA_CH2_PAGE 0x81
#define DMA_MASK_SET_CH2 0x06
#define DMA_MASK_CLEAR_CH2 0x02
#define DMA_MODE_TO_MEMORY_CH2 0x46     /* single, increment, write transfer */
#define DMA_MODE_FROM_MEMORY_CH2 0x4A   /* single, increment, read transfer */

#define FD_TIMEOUT_TICKS 37     /* 2 s */
#define MAX_WAKEUPS 100000
#define MAX_POLLS 100000        /* FIFO handshakes answer at once on any sane FDC */

/* CMOS drive type -> geometry of its native medium and data rate (CCR). */
static const struct fd_geom fd_geoms[6] = {
    { 0, 0, 0, 0 },
    { 40, 2, 9, 2 },            /* 1: 360 KB 5.25", 250 kbit/s */
    { 80, 2, 15, 0 },           /* 2: 1.2 MB 5.25", 500 kbit/s */
    { 80, 2, 9, 2 },            /* 3: 720 KB 3.5", 250 kbit/s */
    { 80, 2, 18, 0 },           /* 4: 1.44 MB 3.5", 500 kbit/s */
    { 80, 2, 36, 3 },           /* 5: 2.88 MB 3.5", 1 Mbit/s */
};

const struct fd_geom *floppy_geom(u8 type)
{
    return type >= 1 && type <= 5 ? &fd_geoms[type] : 0;
}

static int fdc_out(u8 v)
{
    for (u32 i = 0; i < MAX_POLLS; i++) {
        if ((inb(FDC_MSR) & (MSR_RQM | MSR_DIO)) == MSR_RQM) {
            outb(v, FDC_FIFO);
            return 0;
        }
    }
    return -1;
}

static int fdc_in(u8 *v)
{
    for (u32 i = 0; i < MAX_POLLS; i++) {
        if ((inb(FDC_MSR) & (MSR_RQM | MSR_DIO)) == (MSR_RQM | MSR_DIO)) {
            *v = inb(FDC_FIFO);
            return 0;
        }
    }
    return -1;
}

static int fdc_send(const u8 *cmd, u32 n)
{
    BDA8(BDA_FD_RECAL) &= (u8)~FD_RECAL_IRQ;
    for (u32 i = 0; i < n; i++)
        if (fdc_out(cmd[i]))
            return -1;
    return 0;
}

static int fdc_wait_irq(void)
{
    u32 start = BDA32(BDA_TICKS);
    for (u32 n = 0; !(BDA8(BDA_FD_RECAL) & FD_RECAL_IRQ); n++) {
        if (ticks_since(start) > FD_TIMEOUT_TICKS || n > MAX_WAKEUPS)
            return -1;
        rm_wait(6);
    }
    BDA8(BDA_FD_RECAL) &= (u8)~FD_RECAL_IRQ;
    return 0;
}

static int fdc_sense_interrupt(u8 *st0, u8 *pcn)
{
    return fdc_out(FDC_SENSE_INTERRUPT) || fdc_in(st0) || fdc_in(pcn) ? -1 : 0;
}

/* Reset through the DOR (motors off), acknowledge the four drives' polling
 * interrupts, and SPECIFY the step/head timings of the diskette table. */
static int fdc_reset(void)
{
    BDA8(BDA_FD_RECAL) = 0;     /* nothing calibrated any more, no IRQ seen */
    BDA8(BDA_FD_MOTOR) = 0;
    outb(0, FDC_DOR);
    outb(DOR_NRESET | DOR_DMA_IRQ, FDC_DOR);
    if (fdc_wait_irq())
        return -1;
    u8 st0, pcn;
    for (int i = 0; i < 4; i++)
        if (fdc_sense_interrupt(&st0, &pcn))
            return -1;
    u8 specify[3] = { FDC_SPECIFY, diskette_param_table[0], (u8)(diskette_param_table[1] & ~1) };
    return fdc_send(specify, 3);
}

/* Seek (or recalibrate when cyl < 0) and check the SENSE INTERRUPT result. */
static int fdc_seek(u8 drive, u8 head, int cyl)
{
    u8 cmd[3] = { FDC_SEEK, (u8)((head << 2) | drive), (u8)cyl };
    if (cyl < 0) {
        cmd[0] = FDC_RECALIBRATE;
        cmd[1] = drive;
    }
    if (fdc_send(cmd, cyl < 0 ? 2 : 3) || fdc_wait_irq())
        return -1;
    u8 st0, pcn;
    if (fdc_sense_interrupt(&st0, &pcn))
        return -1;
    if ((st0 & (ST0_IC | ST0_SE)) != ST0_SE || pcn != (u8)(cyl < 0 ? 0 : cyl))
        return -1;
    BDA8(BDA_FD_CYL + drive) = pcn;
    return 0;
}

static void dma_setup(int write, u32 addr, u32 len)
{
    outb(DMA_MASK_SET_CH2, DMA_MASK);
    outb(0, DMA_FLIPFLOP);
    outb(write ? DMA_MODE_FROM_MEMORY_CH2 : DMA_MODE_TO_MEMORY_CH2, DMA_MODE);
    outb((u8)addr, DMA_CH2_ADDR);
    outb((u8)(addr >> 8), DMA_CH2_ADDR);
    outb((u8)(addr >> 16), DMA_CH2_PAGE);
    outb((u8)(len - 1), DMA_CH2_COUNT);
    outb((u8)((len - 1) >> 8), DMA_CH2_COUNT);
    outb(DMA_MASK_CLEAR_CH2, DMA_MASK);
}

static u8 result_to_ret(const u8 *res)
{
    u8 st1 = res[1], st2 = res[2];
    if (st1 & ST1_NW)
        return DISK_RET_EWRITEPROTECT;
    if (st1 & ST1_ND)
        return DISK_RET_ENOTFOUND;
    if (st1 & ST1_MA)
        return DISK_RET_EADDRNOTFOUND;
    if ((st1 & ST1_DE) || (st2 & ST2_DD))
        return DISK_RET_ECC;
    if (st1 & ST1_OR)
        return DISK_RET_EDMA;
    return DISK_RET_ECONTROLLER;
}

/* One READ/WRITE DATA of n sectors within a track; buffer already DMA-safe. */
static u8 fdc_xfer(u8 drive, int write, u8 cyl, u8 head, u8 sector, u32 n, u32 addr)
{
    dma_setup(write, addr, n * 512);
    u8 cmd[9] = {
        write ? FDC_WRITE_DATA : FDC_READ_DATA, (u8)((head << 2) | drive), cyl, head, sector,
        diskette_param_table[3],                /* N: 512-byte sectors */
        (u8)(sector + n - 1),                   /* EOT: stop after the last one */
        diskette_param_table[5], diskette_param_table[6],
    };
    if (fdc_send(cmd, 9) || fdc_wait_irq())
        return DISK_RET_ETIMEOUT;
    u8 *res = (u8 *)(BDA + BDA_FD_RESULT);
    for (int i = 0; i < 7; i++)
        if (fdc_in(&res[i]))
            return DISK_RET_ECONTROLLER;
    return (res[0] & ST0_IC) ? result_to_ret(res) : DISK_RET_SUCCESS;
}

/* A sector whose buffer straddles a 64 KiB DMA page (or lies above 16 MiB)
 * goes through the EBDA's bounce buffer, which is 512-aligned. */
static u8 fdc_bounce(u8 drive, int write, u8 cyl, u8 head, u8 sector, u32 buf)
{
    u8 *tmp = (u8 *)(ebda_base() + EBDA_BOUNCE);
    if (write)
        memcpy(tmp, (const void *)buf, 512);
    u8 ret = fdc_xfer(drive, write, cyl, head, sector, 1, (u32)tmp);
    if (!write && !ret)
        memcpy((void *)buf, tmp, 512);
    return ret;
}

void floppy_reset_request(void)
{
    BDA8(BDA_FD_RECAL) &= (u8)~3;       /* recalibrate before the next access */
}

u8 floppy_rw(u8 drive, int write, u32 lba, u32 count, u32 buf, u32 *done)
{
    *done = 0;
    const struct fd_geom *g = floppy_geom(disk_table()->fd_type[drive & 1]);
    if (!g || drive > 1)
        return DISK_RET_ENOTREADY;
    BDA8(BDA_FD_MOTOR_TICKS) = 0xFF;    /* IRQ 0 must not stop the motor meanwhile */
    u8 ret = DISK_RET_SUCCESS;
    if (!(BDA8(BDA_FD_RECAL) & (1 << drive))) {
        if (fdc_reset()) {
            ret = DISK_RET_ETIMEOUT;
            goto out;
        }
    }
    outb((u8)(DOR_NRESET | DOR_DMA_IRQ | (DOR_MOTA << drive) | drive), FDC_DOR);
    BDA8(BDA_FD_MOTOR) = (u8)((write ? 0x80 : 0) | (1 << drive));
    outb(g->rate, FDC_CCR);
    if (!(BDA8(BDA_FD_RECAL) & (1 << drive))) {
        /* An 80-track drive may need a second RECALIBRATE (77 steps at most). */
        if (fdc_seek(drive, 0, -1) && fdc_seek(drive, 0, -1)) {
            ret = DISK_RET_ESEEK;
            goto out;
        }
        BDA8(BDA_FD_RECAL) |= (u8)(1 << drive);
    }
    while (count) {
        u32 track = lba / g->spt;
        u8 sector = (u8)(lba % g->spt + 1);
        u8 head = (u8)(track % g->heads);
        u8 cyl = (u8)(track / g->heads);
        u32 n = g->spt - sector + 1;            /* to the end of the track */
        if (n > count)
            n = count;
        u32 room = (0x10000 - (buf & 0xFFFF)) / 512;    /* sectors before the DMA page ends */
        if (BDA8(BDA_FD_CYL + drive) != cyl && fdc_seek(drive, head, cyl)) {
            BDA8(BDA_FD_RECAL) &= (u8)~(1 << drive);
            ret = DISK_RET_ESEEK;
            break;
        }
        if (buf + n * 512 > 0x1000000 || room == 0) {
            n = 1;
            ret = fdc_bounce(drive, write, cyl, head, sector, buf);
        } else {
            if (n > room)
                n = room;
            ret = fdc_xfer(drive, write, cyl, head, sector, n, buf);
        }
        if (ret) {
            if (ret == DISK_RET_ETIMEOUT || ret == DISK_RET_ECONTROLLER)
                BDA8(BDA_FD_RECAL) &= (u8)~3;   /* start over with a reset */
            break;
        }
        lba += n;
        buf += n * 512;
        count -= n;
        *done += n;
    }
out:
    BDA8(BDA_FD_MOTOR) &= 0x7F;
    BDA8(BDA_FD_MOTOR_TICKS) = diskette_param_table[2];
    return ret;
}
