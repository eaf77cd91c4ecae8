/* balloontest: drives a virtio-balloon (virtio-mmio, split virtqueues, EVENT_IDX).
 *
 * Reads the host's target (num_pages), checks in the BIOS's E820 map that the pages it
 * will give back -- 4 KiB pages from PFN 0x200 (2 MiB) upward -- are usable RAM, inflates
 * the balloon by that many pages in batches of 256 PFNs on inflateq (interrupt driven:
 * one used-buffer interrupt per batch), writes `actual`, hands a statistics buffer to
 * the stats queue, then deflates the same pages on deflateq and sets `actual` to 0.
 *
 * The pages are above 1 MiB, out of real mode's reach; the guest never touches them, it
 * only names them. Everything printed follows from the target and the E820 map. */
#include "cguest.h"
#include "virtio.h"

/* virtio-balloon (§5.5) */
#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ       1

#define VIRTIO_BALLOON_CFG_NUM_PAGES 0  /* le32, the host's target */
#define VIRTIO_BALLOON_CFG_ACTUAL    4  /* le32, written by the driver */

#define INFLATEQ 0
#define DEFLATEQ 1
#define STATSQ   2

#define VIRTIO_BALLOON_S_MEMFREE 4
#define VIRTIO_BALLOON_S_MEMTOT  5
#define VIRTIO_BALLOON_S_AVAIL   6

#define PAGE_SHIFT 12
#define FIRST_PFN 0x200u        /* 2 MiB: leaves the first MiB above 1 MiB alone */
#define BATCH_PFNS 256          /* as Linux's VIRTIO_BALLOON_ARRAY_PFNS_MAX */

#define SMAP 0x534d4150u
#define E820_RAM 1

struct e820 {
    u32 base_lo, base_hi, len_lo, len_hi;
    u32 type;
    u32 ext;
};

struct balloon_stat {
    u16 tag;
    u32 val_lo, val_hi;         /* le64 */
} __attribute__((packed));

static struct vdev bal;
static struct virtq vqs[3];
static struct virtq_mem qmem[3];
static u32 pfns[BATCH_PFNS];
static struct balloon_stat stats[3];
static struct e820 e820;
static u32 target, pages;       /* what the host asks for, what we give */
static u32 ram_total, ram_high; /* E820 RAM in bytes: all, and above 1 MiB */
static int have_stats;
static u16 irq_waits, irq_missed;

/* INT 15h AX=E820h, one entry; returns the continuation (0: last), or -1 on error. */
static int e820_next(u32 *cont)
{
    u32 eax = 0xe820, ebx = *cont, ecx = sizeof e820, edx = SMAP;
    u8 cf;
    memset(&e820, 0, sizeof e820);
    __asm__ volatile("pushl %%ebp\n\tpushw %%ds\n\tpushw %%es\n\t"
                     "int $0x15\n\t"
                     "popw %%es\n\tpopw %%ds\n\tpopl %%ebp\n\tsetc %4"
                     : "+a"(eax), "+b"(ebx), "+c"(ecx), "+d"(edx), "=m"(cf)
                     : "D"(&e820)
                     : "esi", "memory", "cc");
    if (cf || eax != SMAP || ecx < 20)
        return -1;
    *cont = ebx;
    return 0;
}

/* Sum the RAM, and find how many pages from FIRST_PFN on lie in one RAM entry. */
static const char *scan_e820(u32 *usable_pages)
{
    u32 cont = 0;
    int entries = 0;
    *usable_pages = 0;
    do {
        if (e820_next(&cont) < 0)
            return entries ? "E820 error mid-map" : "no E820 map";
        entries++;
        if (e820.type != E820_RAM || e820.base_hi)
            continue;
        u32 end = e820.base_lo + e820.len_lo;
        if (e820.len_hi || end < e820.base_lo)
            end = 0xfffff000u;      /* clamp at 4 GiB: we name PFNs in 32 bits anyway */
        ram_total += end - e820.base_lo;
        if (e820.base_lo >= 0x100000)
            ram_high += end - e820.base_lo;
        u32 first = FIRST_PFN << PAGE_SHIFT;
        if (e820.base_lo <= first && first < end)
            *usable_pages = (end - first) >> PAGE_SHIFT;
    } while (cont && entries < 64);
    return 0;
}

/* ---- the device ---------------------------------------------------------------------------- */

static int step_reset(void)
{
    return virtio_step_reset(&bal, VIRTIO_ID_BALLOON, "no virtio-balloon device in the virtio-mmio slots");
}

static int step_init(void)
{
    virtio_hook_irq(&bal);
    const char *err = virtio_negotiate(&bal, (1u << VIRTIO_BALLOON_F_MUST_TELL_HOST) |
                                       (1u << VIRTIO_BALLOON_F_STATS_VQ), 0, 0);
    if (!err) {
        have_stats = accepted(&bal, VIRTIO_BALLOON_F_STATS_VQ);
        int nq = have_stats ? 3 : 2;
        for (int i = 0; i < nq && !err; i++)
            err = vq_setup(&bal, &vqs[i], &qmem[i], (u16)i, 0);
        if (err)
            virtio_fail(&bal);
    }
    if (!err)
        err = virtio_driver_ok(&bal);
    result("init", err);
    endl();
    if (err)
        return 0;
    target = vcfg32(&bal, VIRTIO_BALLOON_CFG_NUM_PAGES);
    puts("target ");
    putdec(target);
    puts(" pages (");
    putdec(target >> (20 - PAGE_SHIFT));
    puts(" MiB)");
    endl();
    return 1;
}

static void puthex(u32 v)
{
    int digits = 1;
    while (digits < 8 && v >> (4 * digits))
        digits++;
    puthexn(v, digits);
}

static int step_e820(void)
{
    u32 usable;
    const char *err = scan_e820(&usable);
    pages = target < usable ? target : usable;
    if (!err && pages < target)
        err = "not enough usable RAM from 2 MiB for the target";
    verdict(err);
    puts("e820 ");
    putdec(ram_total >> 10);
    puts(" KiB RAM, pfn 0x");
    puthex(FIRST_PFN);
    if (pages) {
        puts("-0x");
        puthex(FIRST_PFN + pages - 1);
    }
    puts(" usable");
    reason(err);
    endl();
    return pages != 0;
}

/* Send PFNs FIRST_PFN .. FIRST_PFN + pages - 1 on queue `q`, BATCH_PFNS per buffer, and
 * wait (for the interrupt) until the device has taken each batch: the host must know
 * before the guest may rely on the change (MUST_TELL_HOST). */
static const char *send_pfns(struct virtq *q)
{
    for (u32 done = 0; done < pages;) {
        u32 n = pages - done < BATCH_PFNS ? pages - done : BATCH_PFNS;
        for (u32 i = 0; i < n; i++)
            pfns[i] = FIRST_PFN + done + i;
        struct vbuf b = {pfns, n * 4, 0};
        if (vq_add(q, &b, 1, 0, 0) < 0)
            return "no room in the queue";
        u16 seen = bal.vring_irqs;
        (void)vq_enable_cb(q, 1);   /* the batch's completion interrupts us */
        vq_kick(q);
        irq_waits++;
        if (!virtio_wait_irq(&bal, seen, VIRTIO_TIMEOUT))
            irq_missed++;
        if (!vq_wait_used(q, VIRTIO_TIMEOUT))
            return virtio_broken(&bal) ? "device needs reset" : "batch never taken";
        if (!vq_get(q, 0, 0))
            return "bad used entry";
        done += n;
    }
    vq_disable_cb(q);
    return 0;
}

static void set_actual(u32 n, const char *what)
{
    vcfg_w32(&bal, VIRTIO_BALLOON_CFG_ACTUAL, n);
    u32 back = vcfg32(&bal, VIRTIO_BALLOON_CFG_ACTUAL);
    verdict(back == n ? 0 : "");
    puts("actual ");
    putdec(back);
    puts(what);
    reason(back == n ? 0 : "does not read back");
    endl();
}

static void step_inflate(void)
{
    const char *err = send_pfns(&vqs[INFLATEQ]);
    verdict(err);
    puts("inflated ");
    putdec(pages);
    puts(" pages (");
    putdec(pages >> (20 - PAGE_SHIFT));
    puts(" MiB)");
    reason(err);
    endl();
    set_actual(err ? 0 : pages, " after inflating");
}

static void put_stat(int i, u16 tag, u32 val)
{
    stats[i].tag = tag;
    stats[i].val_lo = val;
    stats[i].val_hi = 0;
}

/* One buffer of statistics (§5.5.6.3). MEMFREE and AVAIL: the RAM above 1 MiB minus the
 * balloon (this guest uses nothing up there); MEMTOT: all E820 RAM. */
static void step_stats(void)
{
    if (!have_stats) {
        puts("SKIP stats: device has no VIRTIO_BALLOON_F_STATS_VQ");
        endl();
        return;
    }
    u32 balloon = pages << PAGE_SHIFT;
    u32 free = ram_high > balloon ? ram_high - balloon : 0;
    put_stat(0, VIRTIO_BALLOON_S_MEMTOT, ram_total);
    put_stat(1, VIRTIO_BALLOON_S_MEMFREE, free);
    put_stat(2, VIRTIO_BALLOON_S_AVAIL, free);
    puts("stats memtot ");
    putdec(ram_total >> 10);
    puts(" KiB, memfree ");
    putdec(free >> 10);
    puts(" KiB, avail ");
    putdec(free >> 10);
    puts(" KiB");
    endl();
    struct virtq *q = &vqs[STATSQ];
    struct vbuf b = {stats, sizeof stats, 0};
    const char *err = 0;
    vq_disable_cb(q);           /* the device keeps it until it wants fresh numbers */
    if (vq_add(q, &b, 1, 0, 0) < 0)
        err = "no room in the queue";
    else
        vq_kick(q);
    if (!err && virtio_broken(&bal))
        err = "device needs reset";
    result("stats sent", err);
    endl();
}

static void step_deflate(void)
{
    const char *err = send_pfns(&vqs[DEFLATEQ]);
    verdict(err);
    puts("deflated ");
    putdec(pages);
    puts(" pages");
    reason(err);
    endl();
    set_actual(0, " after deflating");
}

static void step_irq(void)
{
    const char *err = 0;
    if (!irq_waits)
        err = "no interrupt-driven transfer ran";
    else if (irq_missed)
        err = "a batch completed without its interrupt";
    verdict(err);
    puts("irq");
    putdec(bal.irq);
    reason(err);
    endl();
}

void guest_main(u32 boot_drive)
{
    (void)boot_drive;
    serial_init();
    int found = virtio_title(&bal, VIRTIO_ID_BALLOON, "balloontest: virtio-balloon");
    if (step_reset() && step_init() && step_e820()) {
        step_inflate();
        step_stats();
        step_deflate();
        if (bal.irq)
            step_irq();
    }
    if (found)
        virtio_reset(&bal);
    summary("balloontest");
    halt();
}
