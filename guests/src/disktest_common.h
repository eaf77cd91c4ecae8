/* What disktest (ATA) and disktest-virtio (virtio-blk) share: the scratch disk's
 * pattern, the buffers, and the result lines both print for the same work, so the two
 * outputs differ only in their header line.
 *
 * The scratch disk of guests.scratch_disk(): sector n holds 128 little-endian 32-bit
 * words, word i = n * 0x01000193 ^ i. The write test puts write_word() on LBA 10-17.
 *
 * Include after cguest.h; the includer defines
 *   static const char *read_polled(u32 lba, u16 count);   `count` sectors into buf, polled
 */
#ifndef DISKTEST_COMMON_H
#define DISKTEST_COMMON_H

#define SECTOR_WORDS 256
#define MAX_SECTORS 8

enum mode { POLL, IRQ };

static u16 buf[MAX_SECTORS * SECTOR_WORDS];     /* reads land here */
static u16 wbuf[MAX_SECTORS * SECTOR_WORDS];    /* what the write test writes */
static u32 capacity;
static u16 irq_waits, irq_missed;               /* interrupt-driven waits, and those that timed out */

static const char *read_polled(u32 lba, u16 count);

/* The scratch disk's documented content. */
static u32 disk_word(u32 lba, u32 i) { return lba * 0x01000193u ^ i; }
/* What the write test puts on LBA 10-17. */
static u32 write_word(u32 lba, u32 i) { return 0xa5c30000u ^ (lba << 20) ^ (i * 0x00010101u); }

static const char *check_words(const u16 *p, u32 lba, u32 n, u32 (*word)(u32, u32))
{
    const u32 *w = (const u32 *)p;
    for (u32 s = 0; s < n; s++)
        for (u32 i = 0; i < 128; i++)
            if (*w++ != word(lba + s, i))
                return "data differs from the pattern";
    return 0;
}

static void fill_words(u16 *p, u32 lba, u32 n, u32 (*word)(u32, u32))
{
    u32 *w = (u32 *)p;
    for (u32 s = 0; s < n; s++)
        for (u32 i = 0; i < 128; i++)
            *w++ = word(lba + s, i);
}

/* "PASS what lba a[-b] fnv1a h" for `count` sectors read into buf (`err`: the read
 * failed) that match `word`, else "FAIL what lba a[-b]: why". */
static void report_read(const char *what, u32 lba, u16 count, u32 (*word)(u32, u32), const char *err)
{
    if (!err)
        err = check_words(buf, lba, count, word);
    verdict(err);
    puts(what);
    puts(" lba ");
    putdec(lba);
    if (count > 1) {
        putc('-');
        putdec(lba + count - 1);
    }
    if (!err) {
        puts(" fnv1a ");
        puthexn(fnv1a(buf, (u32)count * 512), 8);
    }
    reason(err);
    endl();
}

/* "irq14": some transfer waited for its interrupt and none timed out (`missed` says
 * what a timeout means on this device). */
static void step_irq(const char *missed)
{
    const char *err = 0;
    if (!irq_waits)
        err = "no interrupt-driven transfer ran";
    else if (irq_missed)
        err = missed;
    result("irq14", err);
    endl();
}

/* After the write of LBA 10-17: read it back, and check LBA 9 and 18 around it kept the
 * scratch pattern. */
static void step_read_back(void)
{
    memset(buf, 0, sizeof buf);
    report_read("read back", 10, 8, write_word, read_polled(10, 8));
    const char *err = read_polled(9, 1);
    if (!err)
        err = check_words(buf, 9, 1, disk_word);
    if (!err)
        err = read_polled(18, 1);
    if (!err)
        err = check_words(buf, 18, 1, disk_word);
    result("lba 9 and 18 untouched", err);
    endl();
}

#endif
