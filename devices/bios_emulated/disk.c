/* INT 13h and INT 19h over the real controllers: ATA disks (ata.c, BIOS
 * drives 80h-83h in the order primary master, primary slave, secondary
 * master, secondary slave) and diskettes (floppy.c, drives 00h/01h). The
 * drives are found once at POST (disk_post) and kept in the EBDA. */
#include "bios.h"

struct drive_geom {
    u32 total, cyls, heads, spt, floppy_type;
};

static int is_floppy(u8 drive) { return drive < 0x80; }

static int drive_geom(u8 drive, struct drive_geom *g)
{
    struct disk_table *t = disk_table();
    if (is_floppy(drive)) {
        const struct fd_geom *f = drive < 2 ? floppy_geom(t->fd_type[drive]) : 0;
        if (!f)
            return -1;
        g->cyls = f->cyls;
        g->heads = f->heads;
        g->spt = f->spt;
        g->total = g->cyls * g->heads * g->spt;
        g->floppy_type = t->fd_type[drive];
        return 0;
    }
    u8 i = (u8)(drive - 0x80);
    if (i >= t->hd_count || i >= MAX_HD)
        return -1;
    const struct ata_drive *d = &t->hd[i];
    g->cyls = d->cyls;
    g->heads = d->heads;
    g->spt = d->spt;
    g->total = d->total;
    g->floppy_type = 0;
    return 0;
}

static u8 drive_rw(u8 drive, int write, u32 lba, u32 count, u32 buf, u32 *done)
{
    if (is_floppy(drive))
        return floppy_rw(drive, write, lba, count, buf, done);
    return ata_rw(&disk_table()->hd[(u8)(drive - 0x80) & (MAX_HD - 1)], write, lba, count, buf, done);
}

void disk_post(void)
{
    struct disk_table *t = disk_table();
    memset(t, 0, sizeof(*t));
    u8 types = cmos_read(CMOS_FLOPPY_TYPES);
    t->fd_type[0] = floppy_geom(types >> 4) ? types >> 4 : 0;
    t->fd_type[1] = floppy_geom(types & 0x0F) ? types & 0x0F : 0;
    for (u8 where = 0; where < 4 && t->hd_count < MAX_HD; where++)
        if (!ata_probe(where, &t->hd[t->hd_count]))
            t->hd_count++;
}

static void disk_ret(struct bregs *r, u8 code)
{
    if (is_floppy(r->dl))
        BDA8(BDA_FLOPPY_STATUS) = code;
    else
        BDA8(BDA_DISK_STATUS) = code;
    r->ah = code;
    set_cf(r, code != 0);
}

static u8 drive_count(int floppies)
{
    if (floppies) {
        u16 eq = BDA16(BDA_EQUIPMENT);
        return (eq & 1) ? (u8)(((eq >> 6) & 3) + 1) : 0;
    }
    return BDA8(BDA_HD_COUNT);
}

/* Legacy CHS geometry as INT 13h reports it (cylinders capped at 1024). */
static u32 lchs_cyls(const struct drive_geom *g) { return g->cyls > 1024 ? 1024 : g->cyls; }

static void int13_rw_chs(struct bregs *r, const struct drive_geom *g, int write)
{
    u32 count = r->al;
    u32 sector = r->cl & 0x3F;
    u32 cyl = ((r->cl & 0xC0u) << 2) | r->ch;
    u32 head = r->dh;
    if (!count || count > 128 || !sector || sector > g->spt || head >= g->heads
            || cyl >= lchs_cyls(g)) {
        r->al = 0;
        disk_ret(r, DISK_RET_EPARAM);
        return;
    }
    u32 lba = (cyl * g->heads + head) * g->spt + sector - 1;
    u32 done;
    u8 code = drive_rw(r->dl, write, lba, count, FLAT(r->es, r->bx), &done);
    r->al = (u8)done;           /* sectors transferred, also after an error */
    disk_ret(r, code);
}

/* Disk address packet (INT 13h AH=42h/43h). */
struct dap {
    u8 size, reserved;
    u16 count;
    u16 buf_off, buf_seg;
    u32 lba_lo, lba_hi;
    u32 buf64_lo, buf64_hi;
} __attribute__((packed));

static void int13_rw_ext(struct bregs *r, const struct drive_geom *g, int write)
{
    struct dap *d = (struct dap *)FLAT(r->ds, r->si);
    if (d->size < 0x10) {
        disk_ret(r, DISK_RET_EPARAM);
        return;
    }
    u32 count = d->count;
    u32 buf = FLAT(d->buf_seg, d->buf_off);
    if (d->buf_off == 0xFFFF && d->buf_seg == 0xFFFF && d->size >= 0x18) {
        if (d->buf64_hi) {
            d->count = 0;
            disk_ret(r, DISK_RET_EPARAM);
            return;
        }
        buf = d->buf64_lo;
    }
    if (d->lba_hi || (u64)d->lba_lo + count > g->total) {
        d->count = 0;
        disk_ret(r, DISK_RET_EPARAM);
        return;
    }
    if (!count) {
        disk_ret(r, DISK_RET_SUCCESS);
        return;
    }
    u32 done;
    u8 code = drive_rw(r->dl, write, d->lba_lo, count, buf, &done);
    d->count = (u16)done;
    disk_ret(r, code);
}

/* EDD drive parameters (INT 13h AH=48h). */
struct edd_params {
    u16 size, infos;
    u32 cyls, heads, spt;
    u32 total_lo, total_hi;
    u16 bytes_per_sector;
    u32 dpte;
} __attribute__((packed));

static void int13_params(struct bregs *r, const struct drive_geom *g)
{
    struct edd_params *p = (struct edd_params *)FLAT(r->ds, r->si);
    u16 size = p->size;
    if (size < 0x1A) {
        disk_ret(r, DISK_RET_EPARAM);
        return;
    }
    p->size = size >= 0x1E ? 0x1E : 0x1A;
    p->infos = 0x02;            /* CHS information valid */
    p->cyls = g->cyls;
    p->heads = g->heads;
    p->spt = g->spt;
    p->total_lo = g->total;
    p->total_hi = 0;
    p->bytes_per_sector = 512;
    if (size >= 0x1E)
        p->dpte = 0xFFFFFFFF;   /* no device parameter table extension */
    disk_ret(r, DISK_RET_SUCCESS);
}

static void int13_geometry(struct bregs *r, const struct drive_geom *g)
{
    u32 cyls = lchs_cyls(g) - 1;        /* highest cylinder number */
    u8 count = drive_count(is_floppy(r->dl));
    if (is_floppy(r->dl)) {
        u32 t = g->floppy_type;
        if (t == 0 || t > 5)
            t = (cmos_read(CMOS_FLOPPY_TYPES) >> (r->dl ? 0 : 4)) & 0x0F;
        r->bx = (u16)t;
        r->es = BIOS_SEG;
        r->di = ROM_OFF(diskette_param_table);
    } else if (cyls) {
        cyls--;                         /* SeaBIOS: last cylinder reserved */
    }
    r->al = 0;
    r->ch = (u8)cyls;
    r->cl = (u8)(((cyls >> 2) & 0xC0) | (g->spt & 0x3F));
    r->dh = (u8)(g->heads - 1);
    disk_ret(r, DISK_RET_SUCCESS);
    r->dl = count;
}

void c_int13(struct bregs *r)
{
    struct drive_geom g;
    u8 drive = r->dl;
    int present = drive_geom(drive, &g) == 0;

    if (r->ah == 0x08 && !present) {
        /* RBIL: DL = number of drives even when this one is absent. */
        u8 count = drive_count(is_floppy(drive));
        disk_ret(r, DISK_RET_EPARAM);
        r->dl = count;
        return;
    }
    if (r->ah == 0x15 && !present) {
        r->ah = 0x00;           /* no such drive */
        set_cf(r, 0);
        return;
    }
    if (r->ah == 0x01) {
        u8 v = is_floppy(drive) ? BDA8(BDA_FLOPPY_STATUS) : BDA8(BDA_DISK_STATUS);
        r->ah = v;
        set_cf(r, v != 0);
        return;
    }
    if (!present) {
        disk_ret(r, DISK_RET_EPARAM);
        return;
    }
    if (is_floppy(drive) && r->ah >= 0x41) {
        /* As SeaBIOS: no EDD extensions for diskettes (41h says so too). */
        disk_ret(r, DISK_RET_EPARAM);
        return;
    }
    switch (r->ah) {
    case 0x00:                  /* reset */
    case 0x0D:                  /* alternate reset */
        if (is_floppy(drive))
            floppy_reset_request();
        disk_ret(r, DISK_RET_SUCCESS);
        break;
    case 0x10:                  /* test unit ready */
    case 0x11:                  /* recalibrate */
    case 0x04:                  /* verify */
    case 0x0C:                  /* seek */
    case 0x16:                  /* change line: not changed */
        disk_ret(r, DISK_RET_SUCCESS);
        break;
    case 0x02:
        int13_rw_chs(r, &g, 0);
        break;
    case 0x03:
        int13_rw_chs(r, &g, 1);
        break;
    case 0x08:
        int13_geometry(r, &g);
        break;
    case 0x15:
        disk_ret(r, DISK_RET_SUCCESS);
        if (is_floppy(drive)) {
            r->ah = 0x01;       /* diskette, no change line */
        } else {
            /* SeaBIOS reports (cylinders - 1) * heads * spt; QEMU never has
             * fewer than 2 cylinders, a tiny image here may have 1. */
            u32 n = lchs_cyls(&g) > 1 ? lchs_cyls(&g) - 1 : 1;
            u32 sectors = n * g.heads * g.spt;
            r->cx = (u16)(sectors >> 16);
            r->dx = (u16)sectors;
            r->ah = 0x03;       /* fixed disk */
        }
        break;
    case 0x41:
        if (r->bx != 0x55AA) {         /* RBIL: BX=55AAh in, AA55h out */
            disk_ret(r, DISK_RET_EPARAM);
            break;
        }
        disk_ret(r, DISK_RET_SUCCESS);
        r->bx = 0xAA55;
        r->ah = 0x30;           /* EDD 3.0 */
        r->cx = 0x0001;         /* extended disk access (42h-44h, 47h, 48h) */
        break;
    case 0x42:
        int13_rw_ext(r, &g, 0);
        break;
    case 0x43:
        int13_rw_ext(r, &g, 1);
        break;
    case 0x44:                  /* verify */
    case 0x47:                  /* seek */
        disk_ret(r, DISK_RET_SUCCESS);
        break;
    case 0x48:
        int13_params(r, &g);
        break;
    default:
        disk_ret(r, DISK_RET_EPARAM);
        break;
    }
}

/* ---- boot ------------------------------------------------------------------ */

#define BOOT_ADDR 0x7C00u
#define MBR_SIGNATURE 0xAA55

static int try_boot(u8 drive)
{
    struct drive_geom g;
    u32 done;
    if (drive_geom(drive, &g))
        return 0;
    /* A diskette may need a second try after the reset (change line). */
    if (drive_rw(drive, 0, 0, 1, BOOT_ADDR, &done)
            && (!is_floppy(drive) || drive_rw(drive, 0, 0, 1, BOOT_ADDR, &done)))
        return 0;
    return MEM16(BOOT_ADDR + 510) == MBR_SIGNATURE;
}

static const u8 boot_order[] = { 0x00, 0x80 };

/* entry.S built an INT frame returning to 0000:7C00 with IF=1 on the stack
 * 0000:7C00; on failure send it to boot_fail_halt (cli; hlt) instead. */
void c_int19(struct bregs *r)
{
    for (u32 i = 0; i < sizeof(boot_order); i++) {
        u8 drive = boot_order[i];
        if (try_boot(drive)) {
            memset(r, 0, 8 * 4);        /* all general registers 0 ... */
            r->dl = drive;              /* ... except DL = boot drive */
            r->ds = r->es = r->fs = r->gs = 0;
            return;
        }
    }
    video_puts("No bootable device.\n");
    serial_puts("No bootable device.\n");
    r->cs = BIOS_SEG;
    r->ip = ASM_OFF(boot_fail_halt);
    r->flags = 0;
}

/* INT 18h: "ROM BASIC" - what a boot sector calls when it gives up. */
void c_int18(struct bregs *r)
{
    (void)r;
    video_puts("No bootable device.\n");
    serial_puts("No bootable device.\n");
    r->cs = BIOS_SEG;
    r->ip = ASM_OFF(boot_fail_halt);
    r->flags = 0;
}
