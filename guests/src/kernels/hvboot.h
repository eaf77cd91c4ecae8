/* The hv direct-boot protocol (docs/direct-boot.md) and hypercalls, for kernels. */
#ifndef HVBOOT_H
#define HVBOOT_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define HV_BOOT_MAGIC      0x68760001u   /* EAX at entry */
#define HV_BOOTINFO_MAGIC  0x49427668u   /* "hvBI" */

struct hv_bootinfo {
    u32 magic;
    u16 version;
    u16 header_size;
    u32 size;
    u32 hypercall_abi;
    u32 mem_size;
    u32 cmdline_addr, cmdline_len;
    u32 e820_addr, e820_count, e820_entry_size;
    u32 dev_addr, dev_count, dev_entry_size;
    u32 kernel_start, kernel_end;
    u32 stack_top;
};

struct hv_e820 {
    u64 base, length;
    u32 type;
} __attribute__((packed));

enum { HV_DEV_VIRTIO_MMIO = 1, HV_DEV_UART16550, HV_DEV_PIC8259, HV_DEV_PIT8254,
       HV_DEV_RTC_CMOS, HV_DEV_DEBUGCON };

struct hv_device {
    u16 kind, device_id;
    u32 base, size;
    u8 irq, flags;
    u16 reserved;
};

/* A hypercall: vmcall followed by its 16-bit number. */
static inline u32 hv_console_write(const void *p, u32 n)
{
    u32 r;
    __asm__ volatile("vmcall; .word 0x0002" : "=a"(r) : "b"(p), "c"(n) : "memory");
    return r;
}

static inline __attribute__((noreturn)) void hv_poweroff(u32 code)
{
    __asm__ volatile("vmcall; .word 0x0003" : : "b"(code) : "memory");
    for (;;)
        __asm__ volatile("cli; hlt");
}

static inline u64 hv_time_ns(void)
{
    u32 lo, hi;
    __asm__ volatile("vmcall; .word 0x0004" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }

#endif
