/* A hostile guest: from a seeded xorshift PRNG it hammers every I/O port, the virtio-mmio
 * windows and unmapped memory, and builds virtio rings with wild descriptors (lengths up
 * to 4 GiB, addresses anywhere, loops, indirect tables, a 3.5 GiB console chain made of
 * one RAM range repeated). It is a flat 32-bit kernel for hv's direct boot, built by
 * tests/test_hostile_guest.py with -DSEED=... -DITERATIONS=...; when every iteration is
 * done it powers off with code 42.
 *
 * It keeps itself alive, so that the whole run is fuzzing: no reset (ports 0x64 commands
 * D1/DD/DF/Fx, 0x92 bit 0, 0xCF9), A20 stays on, DMA page registers and every buffer a
 * device may write point into SCRATCH, never at this code (1 MiB) or its stack.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define MEM_SIZE   (16u << 20)
#define SCRATCH    0x400000u        /* 8 MiB the devices may scribble on */
#define SCRATCH_SZ 0x800000u
#define VIRTIO     0xD0000u         /* four 4 KiB virtio-mmio windows: blk, net, console, balloon */
#define BIG_ADDR   0x100000u        /* the console chain: this range, 256 times */
#define BIG_LEN    0xE00000u

static u32 seed = SEED;

static u32 rnd(void)
{
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    return seed;
}

static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u16 inw(u16 p) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline u32 inl(u16 p) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }

static void rep_outs(int size, u16 port, u32 src, u32 n)
{
    if (size == 1)
        __asm__ volatile("rep outsb" : "+S"(src), "+c"(n) : "d"(port) : "memory");
    else if (size == 2)
        __asm__ volatile("rep outsw" : "+S"(src), "+c"(n) : "d"(port) : "memory");
    else
        __asm__ volatile("rep outsl" : "+S"(src), "+c"(n) : "d"(port) : "memory");
}

static void rep_ins(int size, u16 port, u32 dst, u32 n)
{
    if (size == 1)
        __asm__ volatile("cld; rep insb" : "+D"(dst), "+c"(n) : "d"(port) : "memory");
    else if (size == 2)
        __asm__ volatile("cld; rep insw" : "+D"(dst), "+c"(n) : "d"(port) : "memory");
    else
        __asm__ volatile("cld; rep insl" : "+D"(dst), "+c"(n) : "d"(port) : "memory");
}

static void w8(u32 a, u8 v) { *(volatile u8 *)a = v; }
static void w16(u32 a, u16 v) { *(volatile u16 *)a = v; }
static void w32(u32 a, u32 v) { *(volatile u32 *)a = v; }
static u32 r32(u32 a) { return *(volatile u32 *)a; }

/* A value a device may use as the address of a buffer it writes: in SCRATCH. */
static u32 scratch_addr(u32 room) { return SCRATCH + rnd() % (SCRATCH_SZ - room); }

/* Port writes that would end the run (reset, A20 off) are bent into harmless ones. */
static int safe_port_write(u16 port, u32 *v, int size)
{
    if (port == 0xCF9 || (port <= 0x64 && port + size > 0x64))
        return 0;                                       /* reset control, 8042 commands */
    if (port <= 0x92 && port + size > 0x92) {
        u32 shift = (0x92 - port) * 8;
        *v = (*v | 2u << shift) & ~(1u << shift);       /* A20 on, no fast reset */
    }
    if (port >= 0x81 && port <= 0x8F)                   /* DMA pages: only into SCRATCH */
        *v = (*v & 0x7F7F7F7F) | 0x40404040;
    return 1;
}

static void port_access(void)
{
    u32 r = rnd(), v = rnd();
    u16 port = r & 0xFFFF;
    int size = 1 << (r >> 16) % 3;
    if (r >> 20 & 1) {
        if (!safe_port_write(port, &v, size))
            return;
        if (size == 1) outb(port, v); else if (size == 2) outw(port, v); else outl(port, v);
    } else {
        if (size == 1) (void)inb(port); else if (size == 2) (void)inw(port); else (void)inl(port);
    }
}

/* The ports with devices behind them, so string I/O mostly hits something. */
static const u16 busy_ports[] = { 0x1F0, 0x1F7, 0x170, 0x300, 0x310, 0x3F8, 0x3F5, 0x3F4,
                                  0x3C0, 0x3C5, 0x3D5, 0x40, 0x43, 0x20, 0x21, 0xA0, 0x70,
                                  0x71, 0x60, 0x00, 0x0B, 0xC0, 0xE9, 0x80, 0x1234 };

static void string_io(void)
{
    u32 r = rnd();
    u16 port = (r & 1) ? busy_ports[rnd() % (sizeof busy_ports / sizeof busy_ports[0])] : rnd();
    int size = 1 << (r >> 1) % 3;
    u32 n = (r >> 8 & 3) == 0 ? rnd() % 0x4000 : rnd() % 0x200;   /* sometimes 16K elements */
    if (r >> 4 & 1) {
        u32 src = (r >> 5 & 1) ? rnd() : scratch_addr(n * 4);    /* anywhere: reads only */
        if (port == 0xCF9 || port == 0x64 || port == 0x92 || (port >= 0x81 && port <= 0x8F))
            return;
        rep_outs(size, port, src, n);
    } else {
        rep_ins(size, port, scratch_addr(n * 4), n);
    }
}

static void unmapped_access(void)
{
    u32 a = (MEM_SIZE + rnd() % (0xFFFFF000u - MEM_SIZE)) & ~3u;
    if (rnd() & 1)
        w32(a, rnd());
    else
        (void)r32(a);
}

enum { MAGIC = 0x000, DEVICE_FEATURES = 0x010, DEVICE_FEATURES_SEL = 0x014,
       DRIVER_FEATURES = 0x020, DRIVER_FEATURES_SEL = 0x024, QUEUE_SEL = 0x030,
       QUEUE_NUM_MAX = 0x034, QUEUE_NUM = 0x038, QUEUE_READY = 0x044, QUEUE_NOTIFY = 0x050,
       INTERRUPT_ACK = 0x064, STATUS = 0x070, QUEUE_DESC = 0x080, QUEUE_DRIVER = 0x090,
       QUEUE_DEVICE = 0x0A0, CONFIG = 0x100 };

static void mmio_access(void)
{
    u32 r = rnd();
    u32 a = VIRTIO + (r & 0x3FFF);
    int size = 1 << (r >> 16) % 3;
    a &= ~(u32)(size - 1);
    if (r >> 20 & 1) {
        u32 v = rnd();
        if (size == 1) w8(a, v); else if (size == 2) w16(a, v); else w32(a, v);
    } else {
        (void)r32(a & ~3u);
    }
}

/* Bring a device up far enough for its queues to be used, then fill one queue with wild
 * descriptors, publish some heads and ring the doorbell. */
static void virtio_ring(void)
{
    u32 slot = rnd() % 4, base = VIRTIO + 0x1000 * slot;
    u32 q = rnd() % 3, num, i;
    u32 table = SCRATCH + 0x10000 * (slot * 4 + q);    /* rings: the first 1 MiB of SCRATCH */
    u32 avail = table + 0x8000, used = table + 0xA000;
    int balloon = slot == 3, big = slot == 2 && q == 1 && rnd() % 4 == 0;

    if (r32(base + MAGIC) != 0x74726976)
        return;
    w32(base + STATUS, 0);
    w32(base + STATUS, 1);
    w32(base + STATUS, 3);
    w32(base + DEVICE_FEATURES_SEL, 0);
    w32(base + DRIVER_FEATURES_SEL, 0);
    w32(base + DRIVER_FEATURES, r32(base + DEVICE_FEATURES) & rnd());
    w32(base + DRIVER_FEATURES_SEL, 1);
    w32(base + DRIVER_FEATURES, 1);                     /* VERSION_1 */
    w32(base + STATUS, 11);
    w32(base + QUEUE_SEL, q);
    num = r32(base + QUEUE_NUM_MAX);
    if (num == 0 || num > 256)
        return;
    if (rnd() & 1)
        num >>= rnd() % 4;
    w32(base + QUEUE_NUM, num);
    w32(base + QUEUE_DESC, table);
    w32(base + QUEUE_DESC + 4, 0);
    w32(base + QUEUE_DRIVER, avail);
    w32(base + QUEUE_DRIVER + 4, 0);
    w32(base + QUEUE_DEVICE, used);
    w32(base + QUEUE_DEVICE + 4, 0);
    w32(base + QUEUE_READY, 1);
    w32(base + STATUS, 15);
    for (i = 0; i < num; i++) {
        u32 d = table + 16 * i, pick = rnd() % 8;
        u64 addr;
        u32 len, flags = rnd() & 7, next = rnd() % (num + 2);
        if (big) {
            addr = BIG_ADDR; len = BIG_LEN; flags = i + 1 < num ? 1 : 0; next = i + 1;
        } else if (balloon) {
            /* the balloon frees the pages a chain names: name only SCRATCH pages */
            u32 k, pfns = SCRATCH + 0x100000 + 0x1000 * (rnd() % 16);
            for (k = 0; k < 64; k++)
                w32(pfns + 4 * k, (rnd() & 3) ? (SCRATCH >> 12) + 0x200 + rnd() % 0x500 : rnd() | 0x10000);
            addr = pfns; len = pick ? rnd() % 0x400 : rnd(); flags &= ~2u;
        } else if (pick == 0) {
            addr = (u64)rnd() << 32 | rnd(); len = rnd();           /* anything at all */
        } else if (pick == 1) {
            addr = scratch_addr(0); len = rnd();                    /* a wild length */
        } else if (pick == 2) {
            addr = BIG_ADDR; len = BIG_LEN; flags &= ~2u;           /* large, never written */
        } else {
            len = rnd() % 0x3000; addr = scratch_addr(0x3000);      /* plausible */
        }
        w32(d, addr);
        w32(d + 4, addr >> 32);
        w32(d + 8, len);
        w16(d + 12, flags);
        w16(d + 14, next);
    }
    w16(avail, rnd() & 1);
    for (i = 0; i < num; i++)
        w16(avail + 4 + 2 * i, big ? 0 : rnd() % (num + 1));
    w16(avail + 2, big ? 1 : (rnd() % 8 ? rnd() % (num + 1) : rnd()));   /* sometimes too far */
    w32(base + QUEUE_NOTIFY, rnd() % 4 ? q : rnd());
    w32(base + INTERRUPT_ACK, rnd());
}

static void hv_poweroff(u32 code)
{
    __asm__ volatile("vmcall; .word 0x0003" : : "b"(code) : "memory");
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* The entry: a stack of our own (well away from every buffer a device writes), no
 * interrupts, then the loop. */
__asm__(".section .text.entry, \"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        "    cli\n"
        "    mov $0xF00000, %esp\n"
        "    call fuzz\n"
        "1:  hlt\n"
        "    jmp 1b\n"
        ".text\n");

__attribute__((used)) void fuzz(void)
{
    u32 i;
    for (i = 0; i < ITERATIONS; i++) {
        switch (rnd() % 16) {
        case 0: case 1: case 2: case 3: case 4: port_access(); break;
        case 5: case 6: case 7: string_io(); break;
        case 8: case 9: case 10: mmio_access(); break;
        case 11: case 12: case 13: virtio_ring(); break;
        default: unmapped_access(); break;
        }
    }
    hv_poweroff(42);
}
