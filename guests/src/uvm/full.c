/* full.c (UVM_FULL, included by uvm.c): the full/enlightened VM's start and end.
 *
 * Start: find the boot disk (virtio-blk: the enlightened VM; else IDE: the full VM), mount
 * its FAT16 volume, attach the in-guest 9P server, read the launch block from /.hv/launch and
 * the registry from /.hv/registry.hiv. End: /.hv/exit (the status and the counters), the
 * registry back to its hive if it changed, the FAT written back, then ACPI S5 power-off. */

#define COM1 0x3F8
#define PM1A_CNT 0x604
#define S5_SLP_TYP 5                     /* the value hv's DSDT names \_S5 */

static u64 kernel_start_ns;


static void out_bytes(u32 stream, const u8 *p, u32 n)
{
    if (enlightened) {                   /* stdout and stderr kept apart, one exit a write */
        for (u32 done = 0; done < n; ) {
            u32 w = HC(0x0010, stream, (u32)(p + done), n - done);
            if (w == 0 || w > n - done) return;
            done += w;
        }
        return;
    }
    for (u32 i = 0; i < n; i++) {        /* one serial stream, as on real hardware */
        for (u32 spin = 0; !(inb(COM1 + 5) & 0x20) && spin < 100000; spin++)
            ;
        outb(COM1, p[i]);
    }
}

static __attribute__((noreturn)) void power_off(u32 code)
{
    if (enlightened)                     /* the host registers hv_poweroff there */
        __asm__ volatile("vmcall; .word 0x0003" : : "b"(code) : "memory");
    outw(PM1A_CNT, S5_SLP_TYP << 10 | 1 << 13);
    for (;;)
        __asm__ volatile("cli; hlt");
}

static __attribute__((noreturn)) void die(const char *why)
{
    kputs(why);
    power_off(125);
}

/* Find or make /.hv/<name> and give it `data`. */
static int hv_file_write(const char *name, const u8 *data, u32 n)
{
    static struct dent d;
    u32 lba, off;
    int r = dir_lookup(hv_dir, name, &d);
    if (r == 0) { lba = d.lba; off = d.off; }
    else if (r != -ENOENT || (r = dir_add(hv_dir, name, A_ARCH, 0, 0, &lba, &off)) < 0) return r;
    if ((r = file_truncate(lba, off, 0)) < 0) return r;
    return n ? file_write(lba, off, 0, data, n) : 0;
}

/* Read /.hv/<name> into buf (at most max bytes): its length, or -errno. */
static int hv_file_read(const char *name, u8 *buf, u32 max)
{
    static struct dent d;
    int r = dir_lookup(hv_dir, name, &d);
    if (r < 0) return r;
    if (d.raw[11] & A_DIR) return -EISDIR;
    if (de_size(d.raw) > max) return -7;                                 /* E2BIG */
    return file_read(d.lba, d.off, 0, buf, de_size(d.raw));
}

static u32 put_line(char *o, const char *name, u32 v)
{
    u32 n = strlen(name), k = 0;
    char digits[12];
    memcpy(o, name, n);
    o[n++] = ' ';
    do digits[k++] = (char)('0' + v % 10); while (v /= 10);
    while (k) o[n++] = digits[--k];
    o[n++] = '\n';
    return n;
}

static void full_poweroff(u32 code)
{
    static int leaving;
    if (!leaving++ && hv_dir) {
        static char text[512];
        u32 n = 0;
        n += put_line(text + n, "status", code & 0xFF);
        static const char *const names[] = {"ticks", "syscalls", "guest_calls", "p9_calls", "reg_calls",
                                            "unknown_calls", "p9_messages", "doorbells"};
        const u32 *v = &stats.ticks;
        for (u32 i = 0; i < 8; i++) n += put_line(text + n, names[i], v[i]);
        n += put_line(text + n, "disk_reads", disk_reads);
        n += put_line(text + n, "disk_writes", disk_writes);
        /* the machine clock (us) when the kernel started and when the program did */
        n += put_line(text + n, "kernel_start_us", (u32)udiv64(kernel_start_ns, 1000, NULL));
        n += put_line(text + n, "program_start_us",
                      (u32)udiv64((u64)stats.entry_hi << 32 | stats.entry_lo, 1000, NULL));
        if (hive_save() < 0) kputs("uvmfull: cannot write the registry hive\n");
        if (hv_file_write("exit", (const u8 *)text, n) < 0 || fat_sync() < 0)
            kputs("uvmfull: cannot write /.hv/exit\n");
    }
    power_off(code & 0xFF);
}

static struct launch *full_start(void)
{
    kernel_start_ns = now_ns();
    if (disk_probe() < 0) die("uvmfull: no boot disk (IDE primary master or virtio-blk)\n");
    enlightened = disk_kind == DISK_VIRTIO;
    if (fat_mount() < 0) die("uvmfull: the boot disk is not a FAT16 volume\n");
    static struct dent d;
    if (dir_lookup(0, ".hv", &d) < 0 || !(d.raw[11] & A_DIR) || !clus_ok(de_clus(d.raw)))
        die("uvmfull: no /.hv directory on the boot disk\n");
    hv_dir = de_clus(d.raw);

    t_begin(TVERSION); put32(MSIZE); putstr("9P2000.L", 8);
    t_send(TVERSION);
    t_begin(TATTACH); put32(0); put32(~0u); putstr("root", 4); putstr("", 0); put32(0);
    t_send(TATTACH);
    fid_used[0] = 1;

    struct launch *l = (struct launch *)launch_buf;
    int n = hv_file_read("launch", launch_buf, sizeof launch_buf);
    if (n < (int)sizeof *l + 2 || l->magic != LAUNCH_MAGIC || l->size > (u32)n || l->size < sizeof *l + 2)
        { kputs("uvmfull: no valid /.hv/launch\n"); full_poweroff(125); }
    /* prog, cwd, then argc + envc strings, all inside the block */
    u32 strings = 0;
    for (u32 i = sizeof *l; i < l->size; i++) strings += launch_buf[i] == 0;
    if (launch_buf[l->size - 1] != 0 || l->argc > 4096 || l->envc > 4096 || strings < 2 + l->argc + l->envc)
        { kputs("uvmfull: /.hv/launch is malformed\n"); full_poweroff(125); }
    if (hive_load() < 0) kputs("uvmfull: /.hv/registry.hiv is not a hive: registry calls fail\n");
    timer_init();
    return l;
}
