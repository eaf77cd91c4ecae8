/* hellokernel: a direct-boot test kernel. It reports what it was handed
 * (the entry state, the boot-information block) through the console hypercall
 * and greets on COM1 by port I/O, then powers off with code 0 through the
 * hypercall, or, built with END_WITH_HLT (haltkernel), stops with cli; hlt. */
#include "hvboot.h"

extern u32 entry_eax, entry_ebx, entry_esp, entry_eflags, entry_cr0;
extern u16 entry_cs, entry_ds, entry_ss;

#define COM1 0x3F8
#define LSR_THRE 0x20

static char line[256];
static u32 len;
static u32 bss_probe;          /* zeroed by entry.S: must read 0 */

static void put(const char *s) { while (*s && len < sizeof line - 1) line[len++] = *s++; }
static void putn(const char *s, u32 n) { while (n-- && len < sizeof line - 1) line[len++] = *s++; }

static void hex(u32 v, int digits)
{
    while (digits--)
        if (len < sizeof line - 1)
            line[len++] = "0123456789abcdef"[(v >> (4 * digits)) & 0xF];
}

static void dec(u32 v)
{
    char tmp[10];
    int n = 0;
    do tmp[n++] = '0' + v % 10; while (v /= 10);
    while (n--) if (len < sizeof line - 1) line[len++] = tmp[n];
}

static void flush(void)        /* one line through the console hypercall */
{
    line[len++] = '\n';
    const char *p = line;
    while (len) {
        u32 n = hv_console_write(p, len);
        if (n == 0xFFFFFFFFu || n == 0)
            break;
        p += n;
        len -= n;
    }
    len = 0;
}

static void com1_puts(const char *s)   /* polled UART output */
{
    for (; *s; s++) {
        while (!(inb(COM1 + 5) & LSR_THRE))
            ;
        outb(COM1, *s);
    }
}

static const char *dev_name(u16 kind)
{
    static const char *names[] = {"?", "virtio-mmio", "uart16550", "pic8259", "pit8254",
                                  "rtc-cmos", "debugcon"};
    return kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

void kmain(const struct hv_bootinfo *bi)
{
    put("Hello from a direct-boot kernel"); flush();
    put("entry: eax="); hex(entry_eax, 8);
    put(" ebx="); hex(entry_ebx, 8);
    put(" cs="); hex(entry_cs, 4);
    put(" ds="); hex(entry_ds, 4);
    put(" ss="); hex(entry_ss, 4);
    put(" esp="); hex(entry_esp, 8);
    put(" cr0.pe="); dec(entry_cr0 & 1);
    put(" cr0.pg="); dec(entry_cr0 >> 31);
    put(" eflags.if="); dec((entry_eflags >> 9) & 1);
    flush();
    if (entry_eax != HV_BOOT_MAGIC || bi->magic != HV_BOOTINFO_MAGIC) {
        put("bootinfo: bad magic"); flush();
        hv_poweroff(3);
    }
    put("bootinfo: version="); dec(bi->version);
    put(" size="); dec(bi->size);
    put(" abi="); dec(bi->hypercall_abi);
    put(" mem="); dec(bi->mem_size >> 10); put(" KiB");
    put(" kernel="); hex(bi->kernel_start, 8); put("-"); hex(bi->kernel_end, 8);
    flush();
    put("cmdline: \""); putn((const char *)bi->cmdline_addr, bi->cmdline_len); put("\"");
    flush();

    const struct hv_e820 *e = (const struct hv_e820 *)bi->e820_addr;
    u32 ram_kib = 0;
    for (u32 i = 0; i < bi->e820_count; i++)
        if (e[i].type == 1)
            ram_kib += (u32)(e[i].length >> 10);
    put("e820: "); dec(bi->e820_count); put(" entries, "); dec(ram_kib); put(" KiB RAM");
    flush();

    const struct hv_device *d = (const struct hv_device *)bi->dev_addr;
    u32 virtio = 0;
    for (u32 i = 0; i < bi->dev_count; i++)
        virtio += d[i].kind == HV_DEV_VIRTIO_MMIO;
    put("virtio: "); dec(virtio); put(" devices"); flush();
    for (u32 i = 0; i < bi->dev_count; i++) {
        put("device: "); put(dev_name(d[i].kind));
        put(" id="); dec(d[i].device_id);
        put(" base="); hex(d[i].base, 8);
        put(" irq="); if (d[i].irq == 0xFF) put("none"); else dec(d[i].irq);
        if (d[i].kind == HV_DEV_VIRTIO_MMIO) {
            put(" magic="); hex(*(volatile u32 *)d[i].base, 8);
        }
        flush();
    }

    u64 t0 = hv_time_ns(), t1 = hv_time_ns();
    put("time: "); put(t1 >= t0 ? "monotonic" : "BACKWARDS"); flush();
    put("bss: "); put(bss_probe == 0 ? "zero" : "DIRTY"); flush();

    com1_puts("com1: Hello from a direct-boot kernel\r\n");
#ifdef END_WITH_HLT
    put("halting with interrupts off"); flush();
    __asm__ volatile("cli; hlt");
    hv_poweroff(2);            /* not reached: the run ends at the hlt */
#else
    put("powering off"); flush();
    hv_poweroff(0);
#endif
}
