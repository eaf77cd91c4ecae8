/* uvmkernel: hv's trimmed kernel for utility-VM containers (docs/containers.md).
 *
 * 32-bit protected mode with paging; one static Linux i386 ELF at ring 3. The kernel serves
 * the process, memory and time calls itself and forwards file calls to the host as 9P2000.L
 * over virtio-9p, registry calls as registry messages over hv's registry device; stdout and
 * stderr leave by a hypercall (UVM_WRITE), one exit per write. The switch in `syscall()`,
 * near the end of this file, says call by call which stay here (GUEST) and which go to the
 * host (HOST).
 *
 * Life: boot -> paging, IDT, TSS, LAPIC timer, virtio drivers, 9P attach -> "ready"
 * hypercall (the host may snapshot the VM here: every container is a clone of that state)
 * -> the host's launch block (argv, env, cwd) -> load the program over 9P -> ring 3.
 *
 * Every value the program passes is hostile: pointers are checked against its mappings,
 * lengths are bounded, and a bad one is -EFAULT/-EINVAL, never a kernel fault.
 *
 * Built with -DUVM_FULL it is the full/enlightened VM's kernel (uvmfull.sys, docs/vm-flavors.md):
 * booted by the BIOS from a FAT16 disk, it answers the same 9P and registry messages itself
 * (t_send -> p9_serve in p9local.c, reg_send -> hive_serve in hive.c) from the disk it booted
 * from (blk.c, fat.c). Nothing is forwarded to the host.
 */
#include "../kernels/hvboot.h"

typedef int s32;
typedef long long s64;
#define NULL ((void *)0)

/* ---- hypercalls of the utility VM (hv/container/uvm.py) ------------------------------- */
#define UVM_WRITE 0x0010    /* EBX fd (1, 2), ECX phys, EDX len -> EAX written */
#define UVM_READY 0x0011    /* EBX phys of the launch block, ECX its size: the host fills it */
#define UVM_STATS 0x0012    /* EBX phys of struct uvm_stats, at exit */
#define UVM_READ  0x0013    /* EBX phys, ECX len: the container's stdin -> EAX bytes (0: end) */
#define LAUNCH_MAGIC 0x4C4D5655u   /* "UVML" */

#define HC(nr, b, c, d) ({ u32 _r; __asm__ volatile("vmcall; .word " #nr \
        : "=a"(_r) : "b"(b), "c"(c), "d"(d) : "memory"); _r; })

struct launch {
    u32 magic, size;
    u64 epoch_ns;            /* realtime minus the hv clock, for CLOCK_REALTIME */
    u32 argc, envc;
    char strings[];          /* prog, cwd, argv..., envp... each NUL-terminated */
};

struct uvm_stats {
    u32 ticks, syscalls, guest_calls, p9_calls, reg_calls, unknown_calls, p9_messages, doorbells;
    u32 entry_lo, entry_hi;  /* the hv clock (ns) at the program's first instruction */
};

/* ---- small library -------------------------------------------------------------------- */
/* rep movs/stos: one emulated instruction per copy, not a loop of them */
static void *memcpy(void *d, const void *s, u32 n)
{
    void *dd = d;
    u32 words = n >> 2, rest = n & 3;
    __asm__ volatile("rep movsl; mov %3, %%ecx; rep movsb"
                     : "+D"(dd), "+S"(s), "+c"(words) : "r"(rest) : "memory");
    return d;
}

static void *memset(void *d, int v, u32 n)
{
    void *dd = d;
    u32 words = n >> 2, rest = n & 3, fill = (u8)v * 0x01010101u;
    __asm__ volatile("rep stosl; mov %3, %%ecx; rep stosb"
                     : "+D"(dd), "+c"(words), "+a"(fill) : "r"(rest) : "memory");
    return d;
}
static u32 strlen(const char *s) { u32 n = 0; while (s[n]) n++; return n; }
static int streq(const char *a, const char *b) { while (*a && *a == *b) a++, b++; return *a == *b; }
#ifdef UVM_FULL
static int memcmp(const void *a, const void *b, u32 n)
{
    const u8 *x = a, *y = b;
    for (u32 i = 0; i < n; i++) if (x[i] != y[i]) return x[i] - y[i];
    return 0;
}
#endif

#ifdef UVM_FULL
/* Output: COM1 in the full VM (polled 16550), UVM_WRITE in the enlightened one. */
static int enlightened;
static void out_bytes(u32 stream, const u8 *p, u32 n);
static void kputs(const char *s) { out_bytes(2, (const u8 *)s, strlen(s)); }
#else
static void kputs(const char *s) { hv_console_write(s, strlen(s)); }
#endif

/* ---- errno -------------------------------------------------------------------------------- */
enum { EPERM = 1, ENOENT = 2, EIO = 5, EBADF = 9, ENOMEM = 12, EACCES = 13, EFAULT = 14,
       EEXIST = 17, ENOTDIR = 20, EISDIR = 21, EINVAL = 22, EMFILE = 24, ENOTTY = 25,
       ESPIPE = 29, ERANGE = 34, ENAMETOOLONG = 36, ENOSYS = 38, EOVERFLOW = 75 };

/* ---- descriptors, traps ------------------------------------------------------------------- */
struct frame {
    u32 gs, fs, es, ds;
    u32 edi, esi, ebp, esp0, ebx, edx, ecx, eax;
    u32 vector, err;
    u32 eip, cs, eflags, esp, ss;
};

static u64 gdt[9];
static u64 idt[256];
static struct { u32 link, esp0, ss0, pad[23]; } __attribute__((packed)) tss;
extern char kstack_top[];
extern void enter_user(struct frame *f) __attribute__((noreturn));

static u64 seg(u32 base, u32 limit, u32 access, u32 flags)
{
    return (u64)(limit & 0xFFFF) | (u64)(base & 0xFFFFFF) << 16 | (u64)access << 40 |
           (u64)((limit >> 16) & 0xF) << 48 | (u64)flags << 52 | (u64)(base >> 24) << 56;
}

static void set_gate(int v, void (*fn)(void), int dpl)
{
    u32 a = (u32)fn;
    idt[v] = (u64)(a & 0xFFFF) | (u64)0x08 << 16 | (u64)(0x8E | dpl << 5) << 40 |
             (u64)(a >> 16) << 48;
}

#define ISRS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) \
    X(14) X(15) X(16) X(17) X(18) X(19) X(32) X(128) X(255)
#define DECL(n) extern void isr##n(void);
ISRS(DECL)

static void cpu_tables(void)
{
    gdt[1] = seg(0, 0xFFFFF, 0x9A, 0xC);
    gdt[2] = seg(0, 0xFFFFF, 0x92, 0xC);
    gdt[3] = seg(0, 0xFFFFF, 0xFA, 0xC);
    gdt[4] = seg(0, 0xFFFFF, 0xF2, 0xC);
    tss.esp0 = (u32)kstack_top;
    tss.ss0 = 0x10;
    gdt[5] = seg((u32)&tss, sizeof tss - 1, 0x89, 0);
    struct { u16 limit; u32 base; } __attribute__((packed)) g = {sizeof gdt - 1, (u32)gdt},
                                                             i = {sizeof idt - 1, (u32)idt};
#define GATE(n) set_gate(n, isr##n, n == 128 ? 3 : 0);
    ISRS(GATE)
    __asm__ volatile("lgdt %0; lidt %1" : : "m"(g), "m"(i));
    __asm__ volatile("ljmp $0x08, $1f; 1: mov $0x10, %%ax; mov %%ax, %%ds; mov %%ax, %%es;"
                     "mov %%ax, %%ss; mov %%ax, %%fs; mov %%ax, %%gs; mov $0x28, %%ax; ltr %%ax"
                     : : : "eax", "memory");
}

/* ---- physical memory and paging ----------------------------------------------------------- */
#define PAGE 4096u
#define KERNEL_MAP_END 0x08000000u   /* RAM is identity-mapped (supervisor) below 128 MiB */
#define USER_BOTTOM 0x08000000u
#define USER_TOP 0xC0000000u
#define STACK_MAX (8u << 20)
#define MMAP_TOP (USER_TOP - STACK_MAX - (1u << 20))
#define PTE_P 1u
#define PTE_W 2u
#define PTE_U 4u
#define PTE_PS 0x80u
#define PTE_PCD 0x10u

static u32 pgdir[1024] __attribute__((aligned(4096)));
static u32 next_frame, ram_end, free_list, frames_free, commit_limit;
static struct uvm_stats stats;

static u32 frame_alloc(void)      /* a zeroed 4 KiB frame, or 0 */
{
    u32 f;
    if (free_list) {
        f = free_list;
        free_list = *(u32 *)f;
        memset((void *)f, 0, PAGE);
    } else if (next_frame + PAGE <= ram_end) {
        f = next_frame;            /* never used since power-on: RAM starts zeroed */
        next_frame += PAGE;
    } else {
        return 0;
    }
    frames_free--;
    return f;
}

static void frame_free(u32 f) { *(u32 *)f = free_list; free_list = f; frames_free++; }

static void paging_init(const struct hv_bootinfo *bi)
{
    ram_end = bi->mem_size < KERNEL_MAP_END ? bi->mem_size : KERNEL_MAP_END;
#ifdef UVM_FULL
    extern char __bss_end[];               /* the loader knows only the file's size */
    next_frame = ((u32)__bss_end + PAGE - 1) & ~(PAGE - 1);
#else
    next_frame = (bi->kernel_end + PAGE - 1) & ~(PAGE - 1);
#endif
    if (next_frame < 0x200000)
        next_frame = 0x200000;
    frames_free = (ram_end - next_frame) / PAGE;
    commit_limit = frames_free - frames_free / 64;   /* the rest: page tables */
    for (u32 i = 0; i < KERNEL_MAP_END >> 22; i++)
        pgdir[i] = i << 22 | PTE_PS | PTE_W | PTE_P;
    pgdir[0xFEC00000u >> 22] = 0xFEC00000u | PTE_PS | PTE_PCD | PTE_W | PTE_P;   /* APICs */
    u32 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | 0x10 | 0x600));  /* PSE, SSE (OSFXSR, OSXMMEXCPT) */
    __asm__ volatile("mov %0, %%cr3" : : "r"(pgdir));
    u32 cr0;
    __asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
    cr0 = (cr0 & ~0x4u) | 0x22u;                                  /* FPU: not emulated, MP, NE */
    __asm__ volatile("mov %0, %%cr0" : : "r"(cr0 | 0x80000000u) : "memory");
    __asm__ volatile("fninit");
}

static u32 *pte_of(u32 va, int make)
{
    u32 *pde = &pgdir[va >> 22];
    if (!(*pde & PTE_P)) {
        if (!make)
            return NULL;
        u32 t = frame_alloc();
        if (!t)
            return NULL;
        *pde = t | PTE_U | PTE_W | PTE_P;
    }
    return (u32 *)(*pde & ~(PAGE - 1)) + ((va >> 12) & 1023);
}

static void invlpg(u32 va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }

/* ---- the program's mappings ----------------------------------------------------------------- */
#define MAX_VMAS 64
static struct vma { u32 start, end; } vmas[MAX_VMAS];
static u32 nvmas, committed_pages;
static u32 brk_start, brk_cur;

static struct vma *vma_of(u32 va)
{
    for (u32 i = 0; i < nvmas; i++)
        if (va >= vmas[i].start && va < vmas[i].end)
            return &vmas[i];
    return NULL;
}

static int commit(u32 pages)       /* memory is promised when mapped, as with overcommit off */
{
    if (pages > commit_limit || committed_pages + pages > commit_limit)
        return -ENOMEM;
    committed_pages += pages;
    return 0;
}

static int vma_add_committing(u32 start, u32 end, u32 pages)
{
    if (nvmas == MAX_VMAS)
        return -ENOMEM;
    if (commit(pages))
        return -ENOMEM;
    vmas[nvmas].start = start;
    vmas[nvmas++].end = end;
    return 0;
}

static int vma_add(u32 start, u32 end) { return vma_add_committing(start, end, (end - start) / PAGE); }

static void unmap_range(u32 start, u32 end)
{
    for (u32 va = start; va < end; va += PAGE) {
        u32 *pte = pte_of(va, 0);
        if (pte && (*pte & PTE_P)) {
            frame_free(*pte & ~(PAGE - 1));
            *pte = 0;
            invlpg(va);
        }
    }
}

static void vma_remove(u32 start, u32 end)     /* punch [start, end) out of every mapping */
{
    for (u32 i = 0; i < nvmas; i++) {
        struct vma *v = &vmas[i];
        u32 s = start > v->start ? start : v->start, e = end < v->end ? end : v->end;
        if (s >= e)
            continue;
        unmap_range(s, e);
        u32 pages = (e - s) / PAGE;
        committed_pages -= pages < committed_pages ? pages : committed_pages;
        if (s == v->start && e == v->end) {
            *v = vmas[--nvmas];
            i--;
        } else if (s == v->start) {
            v->start = e;
        } else if (e == v->end) {
            v->end = s;
        } else if (nvmas < MAX_VMAS) {
            vmas[nvmas].start = e;
            vmas[nvmas++].end = v->end;
            v->end = s;
        }
    }
}

static int fault_in(u32 va)        /* demand paging: a zero page where the program may be */
{
    if (va < USER_BOTTOM || va >= USER_TOP || !vma_of(va))
        return -EFAULT;
    u32 *pte = pte_of(va, 1);
    if (!pte)
        return -ENOMEM;
    if (!(*pte & PTE_P)) {
        u32 f = frame_alloc();
        if (!f)
            return -ENOMEM;
        *pte = f | PTE_U | PTE_W | PTE_P;
    }
    return 0;
}

/* [p, p+n) lies in the program's mappings. Its pages come in when the kernel touches them
 * (a page fault at CPL 0 in a mapping is served as the program's own). */
static int user_ok(u32 p, u32 n)
{
    if (p < USER_BOTTOM || p >= USER_TOP || n > USER_TOP - p)
        return 0;
    for (u32 va = p & ~(PAGE - 1); va < p + n; ) {
        struct vma *v = vma_of(va);
        if (!v)
            return 0;
        va = v->end;                       /* the rest of this mapping is fine */
    }
    return 1;
}

static int user_string(u32 p, char *out, u32 max)   /* copy a NUL-terminated string in */
{
    for (u32 i = 0; i < max; i++) {
        if (((p + i) & (PAGE - 1)) == 0 || i == 0)
            if (!user_ok(p + i, 1))
                return -EFAULT;
        out[i] = *(char *)(p + i);
        if (!out[i])
            return (int)i;
    }
    return -ENAMETOOLONG;
}

/* ---- LAPIC timer: preemption inside the VM ------------------------------------------------ */
#define LAPIC 0xFEE00000u
#define TICK_NS 10000000u
static inline void lapic_w(u32 reg, u32 v) { *(volatile u32 *)(LAPIC + reg) = v; }

static void timer_init(void)
{
    lapic_w(0xF0, 0x1FF);              /* software enable, spurious vector 0xFF */
    lapic_w(0x3E0, 0xB);               /* divide by 1: the 1 GHz bus clock */
    lapic_w(0x320, 32 | 1u << 17);     /* periodic, vector 32 */
    lapic_w(0x380, TICK_NS);
}

/* ---- virtio-mmio, polled: the device answers inside the doorbell's exit --------------------- */
#define QSZ 64
struct vq {
    u32 base;
    u16 last_used, avail_idx;
    struct { u64 addr; u32 len; u16 flags, next; } *desc;
    struct { u16 flags, idx, ring[QSZ]; } *avail;
    struct { u16 flags, idx; struct { u32 id, len; } ring[QSZ]; } *used;
};
#ifdef UVM_FULL
#define VQ_SLOTS 3                         /* 9P, registry (unused there), virtio-blk */
#else
#define VQ_SLOTS 2
#endif
static u8 vq_pages[VQ_SLOTS][3][PAGE] __attribute__((aligned(4096)));
static struct vq q9p __attribute__((unused)), qreg __attribute__((unused));

static inline u32 mr(u32 base, u32 off) { return *(volatile u32 *)(base + off); }
static inline void mw(u32 base, u32 off, u32 v) { *(volatile u32 *)(base + off) = v; }

static int vq_init(struct vq *q, u32 base, int slot)
{
    mw(base, 0x070, 0);
    mw(base, 0x070, 1);
    mw(base, 0x070, 1 | 2);
    mw(base, 0x014, 0);
    u32 f0 = mr(base, 0x010);
    mw(base, 0x024, 0); mw(base, 0x020, f0 & 1);     /* the device's bit 0 (tag / messages v1) */
    mw(base, 0x024, 1); mw(base, 0x020, 1);          /* VIRTIO_F_VERSION_1 */
    mw(base, 0x070, 1 | 2 | 8);
    if (!(mr(base, 0x070) & 8)) {
        kputs("uvmkernel: virtio features refused\n");
        return -1;
    }
    mw(base, 0x030, 0);
    u32 max = mr(base, 0x034);
    if (max < QSZ) {
        kputs("uvmkernel: virtio queue too small\n");
        return -1;
    }
    q->base = base;
    q->desc = (void *)vq_pages[slot][0];
    q->avail = (void *)vq_pages[slot][1];
    q->used = (void *)vq_pages[slot][2];
    mw(base, 0x038, QSZ);
    mw(base, 0x080, (u32)q->desc); mw(base, 0x084, 0);
    mw(base, 0x090, (u32)q->avail); mw(base, 0x094, 0);
    mw(base, 0x0a0, (u32)q->used); mw(base, 0x0a4, 0);
    q->avail->flags = 1;                               /* no interrupts: we poll */
    mw(base, 0x044, 1);
    mw(base, 0x070, 1 | 2 | 8 | 4);
    return 0;
}

/* A batch: chain i is out[i] (device-readable), then in[i] (device-writable, ilen[i] bytes),
 * then nsg[i] more device-writable pieces (a read straight into the program's pages); one
 * doorbell for all of them. The device serves the chains in order; got[i] are the bytes it
 * wrote. */
#define SG_MAX 18
static int vq_batch(struct vq *q, u32 n, u8 *const *out, const u32 *olen, u8 *const *in,
                    const u32 *ilen, const u32 *nsg, u32 (*sga)[SG_MAX], u32 (*sgl)[SG_MAX],
                    u32 *got)
{
    u32 d = 0, heads[QSZ];
    for (u32 i = 0; i < n; i++) {
        u32 extra = nsg ? nsg[i] : 0;
        if (d + 2 + extra > QSZ)
            return -EIO;
        heads[i] = d;
        q->desc[d].addr = (u32)out[i]; q->desc[d].len = olen[i];
        q->desc[d].flags = 1; q->desc[d].next = d + 1;
        d++;
        q->desc[d].addr = (u32)in[i]; q->desc[d].len = ilen[i];
        q->desc[d].flags = 2 | (extra ? 1 : 0); q->desc[d].next = d + 1;
        d++;
        for (u32 k = 0; k < extra; k++, d++) {
            q->desc[d].addr = sga[i][k]; q->desc[d].len = sgl[i][k];
            q->desc[d].flags = 2 | (k + 1 < extra ? 1 : 0); q->desc[d].next = d + 1;
        }
        q->avail->ring[(q->avail_idx + i) % QSZ] = heads[i];
        got[i] = 0;
    }
    __asm__ volatile("" ::: "memory");
    q->avail_idx += n;
    q->avail->idx = q->avail_idx;
    __asm__ volatile("" ::: "memory");
    mw(q->base, 0x050, 0);
    stats.doorbells++;
    for (u32 spin = 0; (u16)(*(volatile u16 *)&q->used->idx - q->last_used) < n; spin++)
        if (spin > 10000000)
            return -EIO;
    for (u32 i = 0; i < n; i++, q->last_used++) {
        u32 id = q->used->ring[q->last_used % QSZ].id;
        for (u32 k = 0; k < n; k++)
            if (heads[k] == id)
                got[k] = q->used->ring[q->last_used % QSZ].len;
    }
    return 0;
}

static __attribute__((unused)) int vq_call(struct vq *q, u8 *out, u32 olen, u8 *in, u32 ilen)
{
    u32 got;
    int r = vq_batch(q, 1, &out, &olen, &in, &ilen, NULL, NULL, NULL, &got);
    return r < 0 ? r : (int)got;
}

/* ---- 9P2000.L client ------------------------------------------------------------------------ */
/* Messages are queued in slots and sent together: a stat is Twalk + Tgetattr + Tclunk in one
 * doorbell (the client picks the new fid, so the later messages can name it), and the Tclunk
 * of a close() waits for the next batch. */
#define MSIZE 65536u
#define IOMAX (MSIZE - 24)
#define SLOTS 5                    /* MAX_PENDING clunks + a stat's three messages */
#define MAX_PENDING 2
static u8 txs[SLOTS][MSIZE] __attribute__((aligned(16))), rxs[SLOTS][MSIZE] __attribute__((aligned(16)));
static u8 *tx = txs[0], *rx = rxs[0];
static u32 tlen, rpos, rlen, nslots, tlens[SLOTS], rlens[SLOTS];
static u8 types[SLOTS];
static u32 sg_n[SLOTS], sg_addr[SLOTS][SG_MAX], sg_len[SLOTS][SG_MAX];
#define RREAD_HEADER 11            /* size, type, tag, count: then the data */
static u32 pending[MAX_PENDING], npending;
static u32 p9_touched;             /* messages made or queued: did a call go to the host? */
static int have_9p __attribute__((unused)), have_reg __attribute__((unused));

static void put8(u8 v) { if (tlen < MSIZE) tx[tlen++] = v; }
static void put16(u16 v) { put8(v); put8(v >> 8); }
static void put32(u32 v) { put16(v); put16(v >> 16); }
static void put64(u64 v) { put32((u32)v); put32((u32)(v >> 32)); }
static void putbytes(const void *p, u32 n) { if (tlen + n <= MSIZE) { memcpy(tx + tlen, p, n); tlen += n; } }
static void putstr(const char *s, u32 n) { put16(n); putbytes(s, n); }
static u8 get8(void) { return rpos < rlen ? rx[rpos++] : 0; }
static u16 get16(void) { u16 v = get8(); return v | get8() << 8; }
static u32 get32(void) { u32 v = get16(); return v | (u32)get16() << 16; }
static u64 get64(void) { u64 v = get32(); return v | (u64)get32() << 32; }

static void t_close_slot(void)
{
    if (!nslots) return;
    tlens[nslots - 1] = tlen;
    u8 *t = txs[nslots - 1];
    t[0] = tlen; t[1] = tlen >> 8; t[2] = tlen >> 16; t[3] = tlen >> 24;
}

/* Start a message in the next slot; returns the slot. Queued clunks go first. */
static u32 t_begin(u8 type)
{
    p9_touched++;
    t_close_slot();
    if (nslots == 0)
        while (npending) {
            u32 fid = pending[--npending];
            tx = txs[nslots]; tlen = 0; sg_n[nslots] = 0; types[nslots++] = 120;
            put32(0); put8(120); put16(1); put32(fid);
            t_close_slot();
        }
    tx = txs[nslots]; tlen = 0; types[nslots] = type; sg_n[nslots] = 0;
    put32(0); put8(type); put16(1);
    return nslots++;
}

/* The reply in `slot`: 0 (rpos past the header) or -errno from Rlerror. */
static int t_reply(u32 slot)
{
    rx = rxs[slot];
    rlen = rlens[slot];
    rpos = 4;
    if (rlen < 7) return -EIO;
    u8 r = get8();
    get16();
    if (r == 7) return -(int)get32();
    return r == types[slot] + 1 ? 0 : -EIO;
}

/* Send the batch in one doorbell; the result is the last message's (t_reply). */
#ifdef UVM_FULL
static u32 p9_serve(const u8 *t, u32 tl, u8 *rbuf, u32 rmax, u32 nsg, const u32 *sga, const u32 *sgl);
#endif
static int t_send(u8 type)
{
    (void)type;
#ifdef UVM_FULL
    /* The full VM: the same messages, answered here, one after the other. */
    t_close_slot();
    stats.p9_messages += nslots;
    u32 n = nslots;
    nslots = 0;
    for (u32 i = 0; i < n; i++)
        rlens[i] = p9_serve(txs[i], tlens[i], rxs[i], sg_n[i] ? RREAD_HEADER : MSIZE,
                            sg_n[i], sg_addr[i], sg_len[i]);
    return t_reply(n - 1);
#else
    if (!have_9p) { nslots = 0; return -ENOSYS; }
    t_close_slot();
    u8 *outs[SLOTS], *ins[SLOTS];
    u32 ilens[SLOTS];
    for (u32 i = 0; i < nslots; i++) {
        outs[i] = txs[i]; ins[i] = rxs[i];
        ilens[i] = sg_n[i] ? RREAD_HEADER : MSIZE;
    }
    stats.p9_messages += nslots;
    u32 n = nslots;
    nslots = 0;
    if (vq_batch(&q9p, n, outs, tlens, ins, ilens, sg_n, sg_addr, sg_len, rlens) < 0) return -EIO;
    return t_reply(n - 1);
#endif
}

enum { TLOPEN = 12, TLCREATE = 14, TREADLINK = 22, TGETATTR = 24, TSETATTR = 26,
       TREADDIR = 40, TMKDIR = 72, TRENAMEAT = 74, TUNLINKAT = 76, TVERSION = 100,
       TATTACH = 104, TWALK = 110, TREAD = 116, TWRITE = 118, TCLUNK = 120 };

#define MAX_FIDS 256
static u8 fid_used[MAX_FIDS];

static int fid_new(void)
{
    for (int i = 1; i < MAX_FIDS; i++)
        if (!fid_used[i]) { fid_used[i] = 1; return i; }
    return -EMFILE;
}

static void fid_clunk(int fid)       /* sent with the next batch */
{
    if (npending == MAX_PENDING) {
        t_begin(TCLUNK); put32(pending[--npending]); t_send(TCLUNK);
    }
    pending[npending++] = (u32)fid;
    fid_used[fid] = 0;
    p9_touched++;
}

/* Paths: the program's, resolved against the cwd by name (".." stops at the root); the
 * host resolves them again inside the container's root. */
#define PATH_MAX 4096
static char cwd[PATH_MAX] = "/";
static char prog_path[PATH_MAX];

static int normalize(const char *in, char *out)      /* -> "/a/b", at most PATH_MAX */
{
    char tmp[PATH_MAX * 2];
    u32 n = 0;
    if (in[0] != '/') {
        u32 c = strlen(cwd);
        memcpy(tmp, cwd, c);
        n = c;
        tmp[n++] = '/';
    }
    u32 l = strlen(in);
    if (n + l + 1 > sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp + n, in, l + 1);
    u32 o = 0;
    for (char *p = tmp; *p;) {
        while (*p == '/') p++;
        char *s = p;
        while (*p && *p != '/') p++;
        u32 len = p - s;
        if (!len || (len == 1 && s[0] == '.'))
            continue;
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[--o] != '/')
                ;
            continue;
        }
        if (o + len + 2 > PATH_MAX)
            return -ENAMETOOLONG;
        out[o++] = '/';
        memcpy(out + o, s, len);
        o += len;
    }
    if (!o)
        out[o++] = '/';
    out[o] = 0;
    return 0;
}

/* Queue one Twalk from the root to `path` into `fid` (at most 16 names); returns its slot and
 * the number of names in *count, or -E2BIG (longer: use walk()). */
static int queue_walk(const char *path, int fid, u32 *count)
{
    u32 n = 0;
    for (const char *p = path; *p; ) {
        while (*p == '/') p++;
        if (!*p) break;
        while (*p && *p != '/') p++;
        n++;
    }
    if (n > 16) return -7;
    u32 slot = t_begin(TWALK); put32(0); put32(fid); put16(n);
    for (const char *p = path; *p; ) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != '/') p++;
        putstr(s, p - s);
    }
    *count = n;
    return (int)slot;
}

/* The result of a queued walk's reply: 0 when every name was walked (the fid exists). */
static int walked(u32 slot, u32 count)
{
    int r = t_reply(slot);
    if (r < 0) return r;
    return get16() == count ? 0 : -ENOENT;
}

/* Walk from the root fid 0 to `path` ("/a/b") into a new fid; `parent` stops one short and
 * leaves the last name in *last. */
static int walk(const char *path, int parent, const char **last)
{
    int fid = fid_new();
    if (fid < 0)
        return fid;
    const char *names[512];
    u32 lens[512], count = 0;
    for (const char *p = path; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != '/') p++;
        if (count == 512) { fid_used[fid] = 0; return -ENAMETOOLONG; }
        names[count] = s;
        lens[count++] = p - s;
    }
    if (parent) {
        if (!count) { fid_used[fid] = 0; return -EEXIST; }
        count--;
        *last = names[count];
    }
    u32 from = 0, done = 0;
    do {                                   /* at most 16 names per Twalk */
        u32 n = count - done > 16 ? 16 : count - done;
        t_begin(TWALK); put32(from); put32(fid); put16(n);
        for (u32 i = 0; i < n; i++)
            putstr(names[done + i], lens[done + i]);
        int r = t_send(TWALK);
        if (r < 0 || get16() != n) {
            if (from == (u32)fid)
                fid_clunk(fid);
            else
                fid_used[fid] = 0;
            return r < 0 ? r : -ENOENT;
        }
        from = fid;
        done += n;
    } while (done < count);
    return fid;
}

struct attr { u32 mode, uid, gid; u64 nlink, rdev, size, blksize, blocks, ino;
              u64 at, atn, mt, mtn, ct, ctn; };
static void parse_attr(struct attr *a);

static int getattr(int fid, struct attr *a)
{
    t_begin(TGETATTR); put32(fid); put64(0x7FF);
    int r = t_send(TGETATTR);
    if (r < 0)
        return r;
    parse_attr(a);
    return 0;
}

static void parse_attr(struct attr *a)
{
    get64();                               /* valid */
    get8(); get32(); a->ino = get64();     /* qid */
    a->mode = get32(); a->uid = get32(); a->gid = get32();
    a->nlink = get64(); a->rdev = get64(); a->size = get64();
    a->blksize = get64(); a->blocks = get64();
    a->at = get64(); a->atn = get64(); a->mt = get64(); a->mtn = get64();
    a->ct = get64(); a->ctn = get64();
}

/* ---- open files ------------------------------------------------------------------------------ */
enum { F_STDIN = 1, F_STDOUT, F_P9, F_NULL, F_PIPE_R, F_PIPE_W };
#define MAX_FD 64
#define FILE_PATH 1024             /* a directory kept for *at() calls; longer ones are not kept */
static struct file { u8 kind, isdir, refs, append; int fid; u32 flags; u64 off;
                     char path[FILE_PATH]; } files[MAX_FD];
static struct file *fds[MAX_FD];

/* Pipes stay in the guest: one program, so a ring buffer each (a full or empty one with a
 * live other end would block forever: it answers EAGAIN instead). */
#define PIPES 4
#define PIPE_BUF_SIZE 16384
static struct pipe { u8 used, readers, writers; u32 head, len; u8 data[PIPE_BUF_SIZE]; } pipes[PIPES];
static u8 fd_cloexec[MAX_FD];
static u32 umask_v = 022;

static struct file *file_new(u8 kind)
{
    for (int i = 0; i < MAX_FD; i++)
        if (!files[i].refs) {
            memset(&files[i], 0, sizeof files[i]);
            files[i].kind = kind;
            files[i].refs = 1;
            return &files[i];
        }
    return NULL;
}

static int fd_install(struct file *f, int from)
{
    for (int i = from; i < MAX_FD; i++)
        if (!fds[i]) { fds[i] = f; fd_cloexec[i] = 0; return i; }
    return -EMFILE;
}

static struct file *fd_get(u32 fd) { return fd < MAX_FD ? fds[fd] : NULL; }

static void file_put(struct file *f)
{
    if (--f->refs)
        return;
    if (f->kind == F_P9)
        fid_clunk(f->fid);
    if (f->kind == F_PIPE_R || f->kind == F_PIPE_W) {
        struct pipe *p = &pipes[f->fid];
        if (f->kind == F_PIPE_R) p->readers--; else p->writers--;
        if (!p->readers && !p->writers) p->used = 0;
    }
}

static int do_pipe(u32 ufds, u32 flags)
{
    if (!user_ok(ufds, 8)) return -EFAULT;
    int i = 0;
    while (i < PIPES && pipes[i].used) i++;
    if (i == PIPES) return -23;                       /* ENFILE */
    struct file *r = file_new(F_PIPE_R);
    if (!r) return -EMFILE;
    struct file *w = file_new(F_PIPE_W);
    if (!w) { r->refs = 0; return -EMFILE; }
    int a = fd_install(r, 0);
    int b = a < 0 ? a : fd_install(w, 0);
    if (b < 0) { if (a >= 0) fds[a] = NULL; r->refs = w->refs = 0; return -EMFILE; }
    memset(&pipes[i], 0, sizeof pipes[i] - PIPE_BUF_SIZE);
    pipes[i].used = pipes[i].readers = pipes[i].writers = 1;
    r->fid = w->fid = i;
    r->flags = 0; w->flags = 1;
    fd_cloexec[a] = fd_cloexec[b] = (flags & 02000000) != 0;     /* O_CLOEXEC */
    ((u32 *)ufds)[0] = (u32)a;
    ((u32 *)ufds)[1] = (u32)b;
    return 0;
}

static int pipe_io(struct file *f, u8 *buf, u32 n, int writing)
{
    struct pipe *p = &pipes[f->fid];
    if (writing) {
        if (!p->readers) { return -32; }              /* EPIPE (no SIGPIPE here) */
        u32 k = PIPE_BUF_SIZE - p->len < n ? PIPE_BUF_SIZE - p->len : n;
        if (!k) return -11;                           /* EAGAIN */
        for (u32 i = 0; i < k; i++) p->data[(p->head + p->len + i) % PIPE_BUF_SIZE] = buf[i];
        p->len += k;
        return (int)k;
    }
    if (!p->len) return p->writers ? -11 : 0;
    u32 k = p->len < n ? p->len : n;
    for (u32 i = 0; i < k; i++) buf[i] = p->data[(p->head + i) % PIPE_BUF_SIZE];
    p->head = (p->head + k) % PIPE_BUF_SIZE;
    p->len -= k;
    return (int)k;
}

#define O_ACCMODE 3
#define O_CREAT 0100
#define O_EXCL 0200
#define O_TRUNC 01000
#define O_APPEND 02000
#define O_DIRECTORY 0200000
#define O_CLOEXEC 02000000
#define AT_FDCWD (-100)
#define AT_REMOVEDIR 0x200
#define AT_EMPTY_PATH 0x1000
#define AT_SYMLINK_NOFOLLOW 0x100

/* A dirfd-relative path to an absolute one: relative to the directory the dirfd opened. */
static int user_path(int dirfd, u32 uptr, char *out)
{
    static char raw[PATH_MAX], joined[PATH_MAX + FILE_PATH];
    int n = user_string(uptr, raw, PATH_MAX);
    if (n < 0)
        return n;
    if (n == 0)
        return -ENOENT;
    if (raw[0] == '/' || dirfd == AT_FDCWD)
        return normalize(raw, out);
    struct file *f = fd_get((u32)dirfd);
    if (!f) return -EBADF;
    if (f->kind != F_P9 || !f->isdir) return -ENOTDIR;
    if (!f->path[0]) return -ENAMETOOLONG;
    u32 l = strlen(f->path);
    memcpy(joined, f->path, l);
    joined[l] = '/';
    memcpy(joined + l + 1, raw, (u32)n + 1);
    return normalize(joined, out);
}

/* The last name of `path` a symlink? Then `path` becomes its target (up to 8 links). */
static int follow(char *path)
{
    static char target[PATH_MAX], joined[2 * PATH_MAX];
    for (int hops = 0; hops < 8; hops++) {
        int fid = walk(path, 0, NULL);
        if (fid < 0) return fid;
        struct attr a;
        int r = getattr(fid, &a);
        if (r < 0 || (a.mode & 0170000) != 0120000) { fid_clunk(fid); return r; }
        t_begin(TREADLINK); put32(fid);
        r = t_send(TREADLINK);
        u32 n = r < 0 ? 0 : get16();
        if (r >= 0 && (n >= PATH_MAX || rpos + n > rlen)) r = -ENAMETOOLONG;
        memcpy(target, rx + rpos, r < 0 ? 0 : n);      /* before the clunk reuses rx */
        target[n] = 0;
        fid_clunk(fid);
        if (r < 0) return r;
        if (target[0] == '/') {
            memcpy(joined, target, n + 1);
        } else {
            u32 l = strlen(path);
            while (l > 0 && path[l - 1] != '/') l--;
            memcpy(joined, path, l);
            memcpy(joined + l, target, n + 1);
        }
        r = normalize(joined, path);
        if (r < 0) return r;
    }
    return -40;                                   /* ELOOP */
}

static char pbuf[PATH_MAX];

static int do_open(int dirfd, u32 upath, u32 flags, u32 mode)
{
    int r = user_path(dirfd, upath, pbuf);
    if (r < 0)
        return r;
    if (streq(pbuf, "/dev/null")) {
        struct file *f = file_new(F_NULL);
        if (!f) return -EMFILE;
        return fd_install(f, 0);
    }
    int fid = fid_new();
    u32 count;
    int w = fid < 0 ? fid : queue_walk(pbuf, fid, &count);
    if (w >= 0 && !((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))) {
        /* Twalk + Tlopen: one doorbell */
        u32 o = t_begin(TLOPEN); put32(fid); put32(flags & ~(O_CREAT | O_EXCL | O_CLOEXEC));
        t_send(TLOPEN);
        int wr = walked((u32)w, count);
        if (wr == 0) {
            r = t_reply(o);
            if (r == 0) goto opened;
            fid_clunk(fid);
            if (r != -40 || (flags & 0400000)) return r;      /* ELOOP: a symlink to follow */
            if ((r = follow(pbuf)) < 0) return r;
        } else {
            fid_used[fid] = 0;                 /* the host made no fid */
            if (wr != -ENOENT) return wr;
        }
        fid = -ENOENT;
    } else if (w >= 0) {
        fid_used[fid] = 0;
        fid = walk(pbuf, 0, NULL);
    } else {
        if (fid >= 0) fid_used[fid] = 0;
        if (!(flags & 0400000) && (r = follow(pbuf)) < 0 && r != -ENOENT) return r;
        fid = walk(pbuf, 0, NULL);
    }
    if (fid == -ENOENT && !(flags & O_CREAT)) {          /* after following a link */
        fid = walk(pbuf, 0, NULL);
        if (fid >= 0) {
            t_begin(TLOPEN); put32(fid); put32(flags & ~(O_CREAT | O_EXCL | O_CLOEXEC));
            r = t_send(TLOPEN);
            if (r < 0) { fid_clunk(fid); return r; }
            goto opened;
        }
        return fid;
    }
    if (fid == -ENOENT && (flags & O_CREAT)) {
        const char *name;
        fid = walk(pbuf, 1, &name);
        if (fid < 0)
            return fid;
        t_begin(TLCREATE); put32(fid); putstr(name, strlen(name));
        put32(flags & ~(O_CLOEXEC | O_DIRECTORY)); put32(mode & ~umask_v & 07777); put32(0);
        r = t_send(TLCREATE);
        if (r < 0) { fid_clunk(fid); return r; }
    } else if (fid < 0) {
        return fid;
    } else {
        if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) { fid_clunk(fid); return -EEXIST; }
        t_begin(TLOPEN); put32(fid); put32(flags & ~(O_CREAT | O_EXCL | O_CLOEXEC));
        r = t_send(TLOPEN);
        if (r < 0) { fid_clunk(fid); return r; }
    }
opened:;
    u32 qtype = get8();                    /* the qid's type: QTDIR is 0x80 */
    struct file *f = file_new(F_P9);
    if (!f) { fid_clunk(fid); return -EMFILE; }
    f->fid = fid;
    f->flags = flags;
    f->isdir = (qtype & 0x80) != 0;
    f->append = (flags & O_APPEND) != 0;
    if (strlen(pbuf) < FILE_PATH) memcpy(f->path, pbuf, strlen(pbuf) + 1);
    r = fd_install(f, 0);
    if (r < 0) { file_put(f); return r; }
    fd_cloexec[r] = (flags & O_CLOEXEC) != 0;
    return r;
}

static u8 bounce[IOMAX] __attribute__((aligned(16)));

/* stdin is the host's: one hypercall per read, which returns what the host's read gave
 * (as a read from a pipe does); 0 is the end. */
static int console_read(u8 *p, u32 n)
{
    if (n && !user_ok((u32)p, n)) return -EFAULT;
    u32 k = n > sizeof bounce ? sizeof bounce : n;
#ifdef UVM_FULL
    k = 0;                                 /* the VM flavors have no stdin: end of file */
#endif
    if (!k) return 0;
    u32 got = HC(0x0013, (u32)bounce, k, 0);
    if (got > k) return -EIO;
    memcpy(p, bounce, got);
    return (int)got;
}

static int do_read(u32 fd, u32 buf, u32 count)
{
    struct file *f = fd_get(fd);
    if (!f) return -EBADF;
    if (f->kind == F_NULL) return 0;
    if (f->kind == F_STDIN) return console_read((u8 *)buf, count);
    if (f->kind == F_PIPE_R) return count && !user_ok(buf, count) ? -EFAULT : pipe_io(f, (u8 *)buf, count, 0);
    if (f->kind != F_P9 || (f->flags & O_ACCMODE) == 1) return -EBADF;
    if (f->isdir) return -EISDIR;
    if (count && !user_ok(buf, count)) return -EFAULT;
    u32 done = 0, batch = 1;            /* one Tread first: most files are small */
    while (done < count) {              /* then up to three per doorbell */
        u32 slots[3], sizes[3], k = 0, queued = 0;
        while (k < batch && done + queued < count) {
            u32 n = count - done - queued > IOMAX ? IOMAX : count - done - queued;
            u32 sl = t_begin(TREAD); put32(f->fid); put64(f->off + queued); put32(n);
            /* The data goes straight into the program's pages: no copy in the guest. */
            u32 va = buf + done + queued, left = n, pieces = 0;
            while (left && pieces < SG_MAX) {
                if (fault_in(va)) { nslots = 0; return done ? (int)done : -ENOMEM; }
                u32 in_page = PAGE - (va & (PAGE - 1)), len = left < in_page ? left : in_page;
                sg_addr[sl][pieces] = (*pte_of(va, 0) & ~(PAGE - 1)) | (va & (PAGE - 1));
                sg_len[sl][pieces++] = len;
                va += len;
                left -= len;
            }
            n -= left;                          /* SG_MAX pieces always hold IOMAX bytes */
            sg_n[sl] = pieces;
            tx[tlen - 4] = n; tx[tlen - 3] = n >> 8; tx[tlen - 2] = n >> 16; tx[tlen - 1] = n >> 24;
            slots[k] = sl;
            sizes[k++] = n;
            queued += n;
        }
        t_send(TREAD);
        for (u32 i = 0; i < k; i++) {
            int r = t_reply(slots[i]);
            if (r < 0) return done ? (int)done : r;
            u32 got = get32();
            if (got > sizes[i] || RREAD_HEADER + got > rlens[slots[i]]) return -EIO;
            f->off += got;
            done += got;
            if (got < sizes[i]) return (int)done;
        }
        batch = 3;
    }
    return (int)done;
}

static int console_write(u32 stream, const u8 *p, u32 n)
{
    u32 done = 0;
    while (done < n) {
        u32 k = n - done > sizeof bounce ? sizeof bounce : n - done;
        memcpy(bounce, p + done, k);
#ifdef UVM_FULL
        out_bytes(stream, bounce, k);
        u32 w = k;
#else
        u32 w = HC(0x0010, stream, (u32)bounce, k);
#endif
        if (w == 0 || w > k) break;
        done += w;
    }
    return (int)done;
}

static int do_write(u32 fd, u32 buf, u32 count)
{
    struct file *f = fd_get(fd);
    if (!f) return -EBADF;
    if (count && !user_ok(buf, count)) return -EFAULT;
    if (f->kind == F_NULL) return (int)count;
    if (f->kind == F_PIPE_W) return pipe_io(f, (u8 *)buf, count, 1);
    if (f->kind == F_STDOUT) return console_write(fd == 2 ? 2 : 1, (const u8 *)buf, count);
    if (f->kind != F_P9 || (f->flags & O_ACCMODE) == 0) return -EBADF;
    if (f->append) {
        struct attr a;
        int r = getattr(f->fid, &a);
        if (r < 0) return r;
        f->off = a.size;
    }
    u32 done = 0;
    while (done < count) {
        u32 n = count - done > IOMAX ? IOMAX : count - done;
        t_begin(TWRITE); put32(f->fid); put64(f->off); put32(n);
        putbytes((void *)(buf + done), n);
        int r = t_send(TWRITE);
        if (r < 0) return done ? (int)done : r;
        u32 w = get32();
        if (w > n) return -EIO;
        f->off += w;
        done += w;
        if (w < n) break;
    }
    return (int)done;
}

/* stat: the host's attributes in Linux's struct stat64 or struct statx. */
static int stat_target(int dirfd, u32 upath, int fd, struct attr *a, int nofollow)
{
    if (fd >= 0) {
        struct file *f = fd_get(fd);
        if (!f) return -EBADF;
        if (f->kind == F_P9) return getattr(f->fid, a);
        memset(a, 0, sizeof *a);
        a->mode = f->kind == F_NULL ? 020666 : 010600;     /* a pipe, as process containers */
        a->nlink = 1; a->blksize = 4096;
        return 0;
    }
    int r = user_path(dirfd, upath, pbuf);
    if (r < 0) return r;
    for (int hops = 0; hops < 2; hops++) {
        int fid = fid_new();
        if (fid < 0) return fid;
        u32 count;
        int w = queue_walk(pbuf, fid, &count);
        if (w < 0) {                           /* a deep path: one message at a time */
            fid_used[fid] = 0;
            if (!nofollow && (r = follow(pbuf)) < 0) return r;
            if ((fid = walk(pbuf, 0, NULL)) < 0) return fid;
            r = getattr(fid, a);
            fid_clunk(fid);
            return r;
        }
        /* Twalk + Tgetattr + Tclunk: one doorbell */
        u32 g = t_begin(TGETATTR); put32(fid); put64(0x7FF);
        t_begin(TCLUNK); put32(fid);
        t_send(TCLUNK);
        fid_used[fid] = 0;
        if ((r = walked((u32)w, count)) < 0) return r;
        if ((r = t_reply(g)) < 0) return r;
        parse_attr(a);
        if (nofollow || (a->mode & 0170000) != 0120000) return 0;
        if ((r = follow(pbuf)) < 0) return r;  /* a symlink: its target, once more */
    }
    return -40;
}

static void fill_stat64(u8 *s, const struct attr *a)
{
    memset(s, 0, 96);
    *(u64 *)(s + 0) = 0x23;
    *(u32 *)(s + 12) = (u32)a->ino;
    *(u32 *)(s + 16) = a->mode;
    *(u32 *)(s + 20) = (u32)a->nlink;
    *(u32 *)(s + 24) = a->uid;
    *(u32 *)(s + 28) = a->gid;
    *(u64 *)(s + 32) = a->rdev;
    *(u64 *)(s + 44) = a->size;
    *(u32 *)(s + 52) = (u32)a->blksize;
    *(u64 *)(s + 56) = a->blocks;
    *(u32 *)(s + 64) = (u32)a->at; *(u32 *)(s + 68) = (u32)a->atn;
    *(u32 *)(s + 72) = (u32)a->mt; *(u32 *)(s + 76) = (u32)a->mtn;
    *(u32 *)(s + 80) = (u32)a->ct; *(u32 *)(s + 84) = (u32)a->ctn;
    *(u64 *)(s + 88) = a->ino;
}

static void fill_statx(u8 *s, const struct attr *a)
{
    memset(s, 0, 256);
    *(u32 *)(s + 0) = 0x7FF;
    *(u32 *)(s + 4) = (u32)a->blksize;
    *(u32 *)(s + 16) = (u32)a->nlink;
    *(u32 *)(s + 20) = a->uid;
    *(u32 *)(s + 24) = a->gid;
    *(u16 *)(s + 28) = (u16)a->mode;
    *(u64 *)(s + 32) = a->ino;
    *(u64 *)(s + 40) = a->size;
    *(u64 *)(s + 48) = a->blocks;
    *(u64 *)(s + 64) = a->at; *(u32 *)(s + 72) = (u32)a->atn;
    *(u64 *)(s + 96) = a->ct; *(u32 *)(s + 104) = (u32)a->ctn;
    *(u64 *)(s + 112) = a->mt; *(u32 *)(s + 120) = (u32)a->mtn;
    *(u32 *)(s + 128) = (u32)(a->rdev >> 8) & 0xFFF;
    *(u32 *)(s + 132) = (u32)(a->rdev & 0xFF);
    *(u32 *)(s + 140) = 0x23;
}

static int do_stat64(int dirfd, u32 upath, int fd, u32 out, int nofollow)
{
    struct attr a;
    if (!user_ok(out, 96)) return -EFAULT;
    int r = stat_target(dirfd, upath, fd, &a, nofollow);
    if (r < 0) return r;
    fill_stat64((u8 *)out, &a);
    return 0;
}

static int do_statx(int dirfd, u32 upath, u32 flags, u32 out)
{
    struct attr a;
    if (!user_ok(out, 256)) return -EFAULT;
    int r;
    if (flags & AT_EMPTY_PATH) {
        char c;
        r = user_string(upath, &c, 1);
        if (r == 0) {
            r = stat_target(0, 0, dirfd, &a, 1);
            goto done;
        }
    }
    r = stat_target(dirfd, upath, -1, &a, flags & AT_SYMLINK_NOFOLLOW);
done:
    if (r < 0) return r;
    fill_statx((u8 *)out, &a);
    return 0;
}

static int do_getdents64(u32 fd, u32 buf, u32 count)
{
    struct file *f = fd_get(fd);
    if (!f || f->kind != F_P9) return -EBADF;
    if (!f->isdir) return -ENOTDIR;
    if (!user_ok(buf, count)) return -EFAULT;
    u32 ask = count > IOMAX ? IOMAX : count;
    t_begin(TREADDIR); put32(f->fid); put64(f->off); put32(ask);
    int r = t_send(TREADDIR);
    if (r < 0) return r;
    u32 n = get32(), end = rpos + n, out = 0;
    if (end > rlen) return -EIO;
    while (rpos + 24 <= end) {
        u8 type = get8(); (void)type; get32(); u64 ino = get64();
        u64 off = get64(); u8 dtype = get8(); u16 nlen = get16();
        if (rpos + nlen > end) return -EIO;
        u32 reclen = (19 + nlen + 1 + 7) & ~7u;
        if (out + reclen > count) {
            if (!out) return -EINVAL;
            break;
        }
        u8 *d = (u8 *)(buf + out);
        memset(d, 0, reclen);
        *(u64 *)d = ino;
        *(u64 *)(d + 8) = off;
        *(u16 *)(d + 16) = reclen;
        d[18] = dtype;
        memcpy(d + 19, rx + rpos, nlen);
        rpos += nlen;
        out += reclen;
        f->off = off;
    }
    return (int)out;
}

static int do_llseek(u32 fd, u32 hi, u32 lo, u32 result, u32 whence)
{
    struct file *f = fd_get(fd);
    if (!f) return -EBADF;
    if (f->kind != F_P9) return -ESPIPE;
    s64 off = (s64)((u64)hi << 32 | lo), base = 0;
    if (whence == 1) base = (s64)f->off;
    else if (whence == 2) {
        struct attr a;
        int r = getattr(f->fid, &a);
        if (r < 0) return r;
        base = (s64)a.size;
    } else if (whence != 0) return -EINVAL;
    if (base + off < 0) return -EINVAL;
    if (result && !user_ok(result, 8)) return -EFAULT;
    f->off = (u64)(base + off);
    if (result) *(u64 *)result = f->off;
    return 0;
}

static int path_op(u8 type, int dirfd, u32 upath, u32 a1, u32 a2)  /* mkdir, unlink */
{
    int r = user_path(dirfd, upath, pbuf);
    if (r < 0) return r;
    const char *name;
    int fid = walk(pbuf, 1, &name);
    if (fid < 0) return fid;
    t_begin(type); put32(fid); putstr(name, strlen(name));
    if (type == TMKDIR) { put32(a1 & ~umask_v & 07777); put32(0); }
    else put32(a2);
    r = t_send(type);
    fid_clunk(fid);
    return r < 0 ? r : 0;
}

static int do_rename(int olddir, u32 oldp, int newdir, u32 newp)
{
    static char other[PATH_MAX];
    int r = user_path(olddir, oldp, pbuf);
    if (r < 0) return r;
    r = user_path(newdir, newp, other);
    if (r < 0) return r;
    const char *on, *nn;
    int of = walk(pbuf, 1, &on);
    if (of < 0) return of;
    int nf = walk(other, 1, &nn);
    if (nf < 0) { fid_clunk(of); return nf; }
    t_begin(TRENAMEAT); put32(of); putstr(on, strlen(on)); put32(nf); putstr(nn, strlen(nn));
    r = t_send(TRENAMEAT);
    fid_clunk(of);
    fid_clunk(nf);
    return r < 0 ? r : 0;
}

static int do_readlink(int dirfd, u32 upath, u32 buf, u32 size)
{
    int r = user_path(dirfd, upath, pbuf);
    if (r < 0) return r;
    if ((s32)size <= 0) return -EINVAL;
    if (!user_ok(buf, size)) return -EFAULT;
    if (streq(pbuf, "/proc/self/exe")) {
        u32 n = strlen(prog_path);
        n = n < size ? n : size;
        memcpy((void *)buf, prog_path, n);
        return (int)n;
    }
    int fid = walk(pbuf, 0, NULL);
    if (fid < 0) return fid;
    t_begin(TREADLINK); put32(fid);
    r = t_send(TREADLINK);
    u32 n = r < 0 ? 0 : get16();
    if (r >= 0 && rpos + n > rlen) r = -EIO;
    n = n < size ? n : size;
    if (r >= 0) memcpy((void *)buf, rx + rpos, n);   /* before the clunk reuses rx */
    fid_clunk(fid);
    return r < 0 ? r : (int)n;
}

static int do_access(int dirfd, u32 upath, u32 mode)   /* as root: X needs an x bit */
{
    struct attr a;
    int r = stat_target(dirfd, upath, -1, &a, 0);
    if (r < 0) return r;
    if ((mode & 1) && (a.mode & 0170000) != 0040000 && !(a.mode & 0111)) return -EACCES;
    return 0;
}

enum { TSYMLINK = 16, TLINK = 70 };

static int do_symlink(u32 utarget, int dirfd, u32 upath)
{
    static char target[PATH_MAX];
    int n = user_string(utarget, target, PATH_MAX);
    if (n < 0) return n;
    if (n == 0) return -ENOENT;
    int r = user_path(dirfd, upath, pbuf);
    if (r < 0) return r;
    const char *name;
    int fid = walk(pbuf, 1, &name);
    if (fid < 0) return fid;
    t_begin(TSYMLINK); put32(fid); putstr(name, strlen(name)); putstr(target, (u32)n); put32(0);
    r = t_send(TSYMLINK);
    fid_clunk(fid);
    return r < 0 ? r : 0;
}

static int do_link(int olddir, u32 oldp, int newdir, u32 newp)
{
    static char other[PATH_MAX];
    int r = user_path(olddir, oldp, other);
    if (r < 0) return r;
    r = user_path(newdir, newp, pbuf);
    if (r < 0) return r;
    int src = walk(other, 0, NULL);
    if (src < 0) return src;
    const char *name;
    int dir = walk(pbuf, 1, &name);
    if (dir < 0) { fid_clunk(src); return dir; }
    t_begin(TLINK); put32(dir); put32(src); putstr(name, strlen(name));
    r = t_send(TLINK);
    fid_clunk(src);
    fid_clunk(dir);
    return r < 0 ? r : 0;
}

static int do_chdir(u32 upath)
{
    int r = user_path(AT_FDCWD, upath, pbuf);
    if (r < 0) return r;
    int fid = walk(pbuf, 0, NULL);
    if (fid < 0) return fid;
    struct attr a;
    r = getattr(fid, &a);
    fid_clunk(fid);
    if (r < 0) return r;
    if ((a.mode & 0170000) != 0040000) return -ENOTDIR;
    memcpy(cwd, pbuf, strlen(pbuf) + 1);
    return 0;
}

static int do_ftruncate(u32 fd, u64 size)
{
    struct file *f = fd_get(fd);
    if (!f) return -EBADF;
    if (f->kind != F_P9 || (f->flags & O_ACCMODE) == 0) return -EINVAL;
    t_begin(TSETATTR); put32(f->fid); put32(8); put32(0); put32(0); put32(0); put64(size);
    put64(0); put64(0); put64(0); put64(0);
    int r = t_send(TSETATTR);
    return r < 0 ? r : 0;
}

/* ---- registry calls: hvreg.h's numbers as registry messages (docs/registry.md) -------------- */
static u8 rtx[2 * 65536 + 64] __attribute__((aligned(16)));   /* a name and data of 64 KiB */
static u8 rrx[65536 + 64] __attribute__((aligned(16)));
static u32 rt, rp, rl;
static void rput32(u32 v) { memcpy(rtx + rt, &v, 4); rt += 4; }
static void rputbytes(const void *p, u32 n) { memcpy(rtx + rt, p, n); rt += n; }
static u32 rget32(void) { u32 v = 0; if (rp + 4 <= rl) memcpy(&v, rrx + rp, 4); rp += 4; return v; }
static char rname[65536];

static int rput_ustr(u32 p)        /* a program's string (NULL: "") as a message str */
{
    int n = 0;
    if (p) {
        n = user_string(p, rname, 65536);
        if (n < 0) return n == -ENAMETOOLONG ? -ENAMETOOLONG : -EFAULT;
    }
    rput32((u32)n);
    rputbytes(rname, (u32)n);
    return 0;
}

#ifdef UVM_FULL
static int hive_serve(const u8 *t, u32 tl, u8 *rbuf, u32 rmax);
#endif
static int reg_send(void)
{
#ifdef UVM_FULL
    int n = hive_serve(rtx, rt, rrx, sizeof rrx);
#else
    if (!have_reg) return -ENOSYS;
    int n = vq_call(&qreg, rtx, rt, rrx, sizeof rrx);
#endif
    if (n < 12) return -EIO;
    rl = (u32)n;
    rp = 8;
    return (int)rget32();
}

static int reg_call(u32 nr, u32 a, u32 b, u32 c, u32 d, u32 e, u32 f)
{
    int r;
    rt = 0;
    rput32(nr);
    rput32(1);
    rput32(a);
    switch (nr) {
    case 0x1000:                                   /* OPEN_KEY parent, path */
        if ((r = rput_ustr(b))) return r;
        return reg_send();
    case 0x1001:                                   /* CREATE_KEY parent, path, &disp */
        if (c && !user_ok(c, 4)) return -EFAULT;
        if ((r = rput_ustr(b))) return r;
        r = reg_send();
        if (r >= 0 && c) *(u32 *)c = rget32();
        return r;
    case 0x1002:                                   /* CLOSE_KEY */
        return reg_send();
    case 0x1003: {                                 /* SET_VALUE key, name, type, data, size */
        if ((r = rput_ustr(b))) return r;
        rput32(c);
        if (e > 65536) return -7;                  /* E2BIG: more than this kernel carries */
        if (e && !user_ok(d, e)) return -EFAULT;
        rput32(e);
        rputbytes((void *)d, e);
        return reg_send();
    }
    case 0x1004: {                                 /* QUERY_VALUE key, name, &type, data, &size */
        if ((c && !user_ok(c, 4)) || (e && !user_ok(e, 4))) return -EFAULT;
        u32 cap = e ? *(u32 *)e : 0;
        if (!d) cap = 0;
        if (cap > 65536) cap = 65536;
        if (d && cap && !user_ok(d, cap)) return -EFAULT;
        if ((r = rput_ustr(b))) return r;
        rput32(cap);
        r = reg_send();
        if (r < 0 && r != -EOVERFLOW) return r;
        u32 type = rget32(), size = rget32(), blen = rget32();
        if (rp + blen > rl || blen > cap) blen = 0;
        if (c) *(u32 *)c = type;
        if (e) *(u32 *)e = size;
        if (d && blen) memcpy((void *)d, rrx + rp, blen);
        return r;
    }
    case 0x1005:                                   /* DELETE_VALUE key, name */
        if ((r = rput_ustr(b))) return r;
        return reg_send();
    case 0x1006:                                   /* DELETE_KEY key, path, flags */
        if ((r = rput_ustr(b))) return r;
        rput32(c);
        return reg_send();
    case 0x1007: case 0x1008: {                    /* ENUM_KEY / ENUM_VALUE key, index, name, &len */
        if (!user_ok(d, 4)) return -EFAULT;
        if (nr == 0x1008 && ((e && !user_ok(e, 4)) || (f && !user_ok(f, 4)))) return -EFAULT;
        rput32(b);
        r = reg_send();
        if (r < 0) return r;
        u32 n = rget32();
        if (rp + n > rl) return -EIO;
        u32 room = *(u32 *)d, at = rp;
        rp += n;
        if (nr == 0x1008) {
            u32 type = rget32(), size = rget32();
            if (e) *(u32 *)e = type;
            if (f) *(u32 *)f = size;
        }
        *(u32 *)d = n;
        if (n + 1 > room) return -EOVERFLOW;
        if (!user_ok(c, n + 1)) return -EFAULT;
        memcpy((void *)c, rrx + at, n);
        ((char *)c)[n] = 0;
        return 0;
    }
    }
    return -ENOSYS;
}

/* ---- process, memory and time: served here ---------------------------------------------------- */
static u64 epoch_ns;
static u32 pid = 1;
static u64 udiv64(u64 n, u32 d, u32 *rem);

#ifdef UVM_FULL
/* The ACPI PM timer (3.579545 MHz, 24 bits at 0x608): read at least every tick (10 ms), so
 * its wraps (every 4.7 s) are all seen. */
static u64 pm_ticks;
static u32 pm_last;
static u64 now_ns(void)
{
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"((u16)0x608));
    v &= 0xFFFFFF;
    pm_ticks += (v - pm_last) & 0xFFFFFF;
    pm_last = v;
    u64 s = udiv64(pm_ticks, 3579545u, &v);
    return s * 1000000000u + udiv64((u64)v * 1000000000u, 3579545u, NULL);
}
#define hv_time_ns now_ns
#else
static u64 now_ns(void) { return hv_time_ns(); }
#endif

static u64 udiv64(u64 n, u32 d, u32 *rem)   /* no libgcc here: shift and subtract */
{
    u64 q = 0, r = 0;
    for (int i = 63; i >= 0; i--) {
        r = r << 1 | (n >> i & 1);
        if (r >= d) { r -= d; q |= 1ull << i; }
    }
    if (rem) *rem = (u32)r;
    return q;
}

static int do_brk(u32 addr)
{
    if (addr <= brk_start || addr > MMAP_TOP / 2 + USER_BOTTOM) return (int)brk_cur;
    u32 old_end = (brk_cur + PAGE - 1) & ~(PAGE - 1), new_end = (addr + PAGE - 1) & ~(PAGE - 1);
    if (new_end > old_end) {
        for (u32 va = old_end; va < new_end; va += PAGE)
            if (vma_of(va)) return (int)brk_cur;
        if (vma_add(old_end, new_end)) return (int)brk_cur;
    } else if (new_end < old_end) {
        vma_remove(new_end, old_end);
    }
    brk_cur = addr;
    return (int)brk_cur;
}

static u32 mmap_hint = MMAP_TOP;

static int range_free(u32 s, u32 e)
{
    for (u32 i = 0; i < nvmas; i++)
        if (s < vmas[i].end && vmas[i].start < e) return 0;
    return 1;
}

static int do_mmap2(u32 addr, u32 len, u32 prot, u32 flags, s32 fd, u32 pgoff)
{
    (void)prot;
    if (!len || len > USER_TOP) return -EINVAL;
    len = (len + PAGE - 1) & ~(PAGE - 1);
    if (!(flags & 0x20) || fd != -1) {             /* files: read them in (private copy) */
        struct file *f = fd_get((u32)fd);
        if (!f || f->kind != F_P9) return -EBADF;
        int a = do_mmap2(addr, len, 3, 0x22 | (flags & 0x10), -1, 0);
        if (a < 0 && a > -4096) return a;
        u64 save = f->off;
        f->off = (u64)pgoff * PAGE;
        do_read((u32)fd, (u32)a, len);
        f->off = save;
        return a;
    }
    u32 start;
    if (flags & 0x10) {                            /* MAP_FIXED */
        if (addr & (PAGE - 1) || addr < USER_BOTTOM || addr + len > USER_TOP || addr + len < addr)
            return -EINVAL;
        vma_remove(addr, addr + len);
        start = addr;
    } else {
        start = 0;
        for (u32 top = mmap_hint; top >= len + brk_cur + (64u << 20); top -= PAGE) {
            if (range_free(top - len, top)) { start = top - len; break; }
        }
        if (!start) return -ENOMEM;
    }
    if (vma_add(start, start + len)) return -ENOMEM;
    if (!(flags & 0x10)) mmap_hint = start;
    return (int)start;
}

static int do_munmap(u32 addr, u32 len)
{
    if (addr & (PAGE - 1) || !len || addr < USER_BOTTOM || addr + len > USER_TOP) return -EINVAL;
    len = (len + PAGE - 1) & ~(PAGE - 1);
    vma_remove(addr, addr + len);
    if (addr + len > mmap_hint && addr <= mmap_hint) mmap_hint = addr + len;
    if (mmap_hint < addr + len && range_free(mmap_hint, MMAP_TOP)) mmap_hint = MMAP_TOP;
    return 0;
}

static int do_set_thread_area(u32 uinfo)
{
    if (!user_ok(uinfo, 16)) return -EFAULT;
    u32 *u = (u32 *)uinfo;
    s32 entry = (s32)u[0];
    if (entry == -1) entry = 6;
    if (entry < 6 || entry > 8) return -EINVAL;
    u32 base = u[1], limit = u[2], flags = u[3];
    u32 access = 0xF2, gran = (flags >> 4 & 1) ? 0xC : 0x4;     /* limit_in_pages */
    if (flags & 0x20) access &= ~0x80;                            /* seg_not_present */
    gdt[entry] = seg(base, limit, access, gran);
    u[0] = (u32)entry;
    return 0;
}

static int do_uname(u32 buf)
{
    static const char *f[6] = {"Linux", "container", "6.1.0", "#1 SMP hv", "i686", "(none)"};
    if (!user_ok(buf, 6 * 65)) return -EFAULT;
    memset((void *)buf, 0, 6 * 65);
    for (int i = 0; i < 6; i++) memcpy((char *)buf + 65 * i, f[i], strlen(f[i]));
    return 0;
}

static int do_clock_gettime(u32 clk, u32 ts)
{
    if (!user_ok(ts, 8)) return -EFAULT;
    u64 t = now_ns();
    if (clk == 0 || clk == 5) t += epoch_ns;       /* REALTIME, REALTIME_COARSE */
    else if (clk > 7) return -EINVAL;
    u32 ns;
    ((u32 *)ts)[0] = (u32)udiv64(t, 1000000000u, &ns);
    ((u32 *)ts)[1] = ns;
    return 0;
}

static int do_gettimeofday(u32 tv)
{
    if (!tv) return 0;
    if (!user_ok(tv, 8)) return -EFAULT;
    u64 t = now_ns() + epoch_ns;
    u32 ns;
    ((u32 *)tv)[0] = (u32)udiv64(t, 1000000000u, &ns);
    ((u32 *)tv)[1] = ns / 1000;
    return 0;
}

/* clock_gettime64: struct __kernel_timespec, two 64-bit fields */
static int do_clock_gettime64(u32 clk, u32 ts)
{
    if (!user_ok(ts, 16)) return -EFAULT;
    u64 t = now_ns();
    if (clk == 0 || clk == 5) t += epoch_ns;
    else if (clk > 7) return -EINVAL;
    u32 ns;
    ((u64 *)ts)[0] = udiv64(t, 1000000000u, &ns);
    ((u64 *)ts)[1] = ns;
    return 0;
}

/* Sleep until the clock reads `until` (ns, the clock's own scale). */
static void sleep_until(u64 until)
{
    while (now_ns() < until)
        __asm__ volatile("sti; hlt; cli");          /* the next tick wakes us */
}

static int do_nanosleep(u32 req)
{
    if (!user_ok(req, 8)) return -EFAULT;
    u32 s = ((u32 *)req)[0], ns = ((u32 *)req)[1];
    if (ns >= 1000000000u) return -EINVAL;
    sleep_until(now_ns() + (u64)s * 1000000000u + ns);
    return 0;
}

/* clock_nanosleep (32-bit timespec) and clock_nanosleep_time64; flags 1 = TIMER_ABSTIME */
static int do_clock_nanosleep(u32 clk, u32 flags, u32 req, int wide)
{
    if (!user_ok(req, wide ? 16 : 8)) return -EFAULT;
    if (clk > 7) return -EINVAL;
    u64 s = wide ? ((u64 *)req)[0] : ((u32 *)req)[0];
    u64 ns = wide ? ((u64 *)req)[1] : ((u32 *)req)[1];
    if (ns >= 1000000000u || (s >> 62)) return -EINVAL;
    u64 t = s * 1000000000u + ns;
    if (flags & 1) {
        if (clk == 0 || clk == 5) t = t > epoch_ns ? t - epoch_ns : 0;
        sleep_until(t);
    } else {
        sleep_until(now_ns() + t);
    }
    return 0;
}

/* Signals: no handlers run here. A signal the program sends itself ends it with 128 + its
 * number, as Linux's default action, unless it is ignored (SIG_IGN, or ignored by default). */
static u8 sig_ignored[65];
static __attribute__((noreturn)) void do_exit(u32 code);

static int do_kill(u32 target, u32 sig)
{
    if (target != pid) return -3;                   /* ESRCH: one process in this VM */
    if (sig == 0) return 0;
    if (sig > 64) return -EINVAL;
    if (sig_ignored[sig] || sig == 17 || sig == 18 || sig == 23 || sig == 28) return 0;
    do_exit(128 + sig);
}

static int do_sigaction(u32 sig, u32 act, u32 oact)
{
    if (!sig || sig > 64) return -EINVAL;
    if (oact) {
        if (!user_ok(oact, 20)) return -EFAULT;
        memset((void *)oact, 0, 20);
        ((u32 *)oact)[0] = sig_ignored[sig];
    }
    if (act) {
        if (!user_ok(act, 20)) return -EFAULT;
        if (sig == 9 || sig == 19) return -EINVAL;
        sig_ignored[sig] = ((u32 *)act)[0] == 1;        /* SIG_IGN; a handler is never run */
    }
    return 0;
}

static int do_getrandom(u32 buf, u32 n)
{
    if (n > 65536) n = 65536;
    if (!user_ok(buf, n)) return -EFAULT;
    static u64 x;
    if (!x) x = now_ns() ^ 0x9E3779B97F4A7C15ull;
    for (u32 i = 0; i < n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ((u8 *)buf)[i] = (u8)x;
    }
    return (int)n;
}

#ifdef UVM_FULL
static __attribute__((noreturn)) void full_poweroff(u32 code);
#define hv_poweroff full_poweroff
#define HC_STATS() ((void)0)
#else
#define HC_STATS() HC(0x0012, (u32)&stats, sizeof stats, 0)
#endif

static __attribute__((noreturn)) void do_exit(u32 code)
{
    HC_STATS();
    hv_poweroff(code & 0xFF);
}

static int do_fcntl(u32 fd, u32 cmd, u32 arg)
{
    struct file *f = fd_get(fd);
    if (!f) return -EBADF;
    switch (cmd) {
    case 0: case 1030: {                           /* F_DUPFD, F_DUPFD_CLOEXEC */
        int r = fd_install(f, arg < MAX_FD ? (int)arg : MAX_FD);
        if (r >= 0) { f->refs++; fd_cloexec[r] = cmd == 1030; }
        return r;
    }
    case 1: return fd_cloexec[fd];
    case 2: fd_cloexec[fd] = arg & 1; return 0;
    case 3: return (int)f->flags & ~O_CLOEXEC;
    case 4: f->append = (arg & O_APPEND) != 0; return 0;
    }
    return -EINVAL;
}

static int do_dup2(u32 old, u32 new)
{
    struct file *f = fd_get(old);
    if (!f) return -EBADF;
    if (new >= MAX_FD) return -EBADF;
    if (old == new) return (int)new;
    if (fds[new]) file_put(fds[new]);
    fds[new] = f;
    f->refs++;
    fd_cloexec[new] = 0;
    return (int)new;
}

static int do_close(u32 fd)
{
    struct file *f = fd_get(fd);
    if (!f) return -EBADF;
    fds[fd] = NULL;
    file_put(f);
    return 0;
}

static int do_iov(u32 fd, u32 iov, u32 cnt, int writing)
{
    if (cnt > 1024 || !user_ok(iov, cnt * 8)) return -EINVAL;
    int total = 0;
    for (u32 i = 0; i < cnt; i++) {
        u32 b = ((u32 *)iov)[2 * i], l = ((u32 *)iov)[2 * i + 1];
        if (!l) continue;
        int r = writing ? do_write(fd, b, l) : do_read(fd, b, l);
        if (r < 0) return total ? total : r;
        total += r;
        if ((u32)r < l) break;
    }
    return total;
}

static int do_getcwd(u32 buf, u32 size)
{
    u32 n = strlen(cwd) + 1;
    if (size < n) return -ERANGE;
    if (!user_ok(buf, n)) return -EFAULT;
    memcpy((void *)buf, cwd, n);
    return (int)n;
}

/* ---- the call table: where each Linux i386 call is served ------------------------------------- */
enum { GUEST, HOST_9P, HOST_REG };
#define A f->ebx, f->ecx, f->edx, f->esi, f->edi, f->ebp

static int syscall(struct frame *f, int *where)
{
    u32 nr = f->eax;
    *where = HOST_9P;
    switch (nr) {
    /* HOST: files and directories, as 9P2000.L messages over virtio-9p */
    case 3:   return do_read(f->ebx, f->ecx, f->edx);
    case 4:   return do_write(f->ebx, f->ecx, f->edx);          /* stdout/stderr: UVM_WRITE */
    case 5:   return do_open(AT_FDCWD, f->ebx, f->ecx, f->edx);
    case 295: return do_open((s32)f->ebx, f->ecx, f->edx, f->esi);
    case 6:   return do_close(f->ebx);
    case 10:  return path_op(TUNLINKAT, AT_FDCWD, f->ebx, 0, 0);
    case 301: return path_op(TUNLINKAT, (s32)f->ebx, f->ecx, 0, f->edx & AT_REMOVEDIR);
    case 40:  return path_op(TUNLINKAT, AT_FDCWD, f->ebx, 0, AT_REMOVEDIR);
    case 39:  return path_op(TMKDIR, AT_FDCWD, f->ebx, f->ecx, 0);
    case 296: return path_op(TMKDIR, (s32)f->ebx, f->ecx, f->edx, 0);
    case 38:  return do_rename(AT_FDCWD, f->ebx, AT_FDCWD, f->ecx);
    case 302: return do_rename((s32)f->ebx, f->ecx, (s32)f->edx, f->esi);
    case 195: return do_stat64(AT_FDCWD, f->ebx, -1, f->ecx, 0);   /* stat64 */
    case 196: return do_stat64(AT_FDCWD, f->ebx, -1, f->ecx, 1);   /* lstat64 */
    case 197: return do_stat64(0, 0, (s32)f->ebx, f->ecx, 1);      /* fstat64 */
    case 300: return do_stat64((s32)f->ebx, f->ecx, -1, f->edx, f->esi & AT_SYMLINK_NOFOLLOW);
    case 83:  return do_symlink(f->ebx, AT_FDCWD, f->ecx);
    case 304: return do_symlink(f->ebx, (s32)f->ecx, f->edx);
    case 9:   return do_link(AT_FDCWD, f->ebx, AT_FDCWD, f->ecx);
    case 303: return do_link((s32)f->ebx, f->ecx, (s32)f->edx, f->esi);
    case 194: return do_ftruncate(f->ebx, (u64)f->edx << 32 | f->ecx);   /* ftruncate64 */
    case 383: return do_statx((s32)f->ebx, f->ecx, f->edx, f->edi);
    case 220: return do_getdents64(f->ebx, f->ecx, f->edx);
    case 140: return do_llseek(f->ebx, f->ecx, f->edx, f->esi, f->edi);
    case 19:  { int r = do_llseek(f->ebx, (s32)f->ecx < 0 ? ~0u : 0, f->ecx, 0, f->edx);
                return r < 0 ? r : (int)fd_get(f->ebx)->off; }
    case 85:  return do_readlink(AT_FDCWD, f->ebx, f->ecx, f->edx);
    case 305: return do_readlink((s32)f->ebx, f->ecx, f->edx, f->esi);
    case 33:  return do_access(AT_FDCWD, f->ebx, f->ecx);
    case 307: return do_access((s32)f->ebx, f->ecx, f->edx);
    case 12:  return do_chdir(f->ebx);
    case 93:  return do_ftruncate(f->ebx, f->ecx);
    case 145: return do_iov(f->ebx, f->ecx, f->edx, 0);
    case 146: return do_iov(f->ebx, f->ecx, f->edx, 1);
    }
    *where = HOST_REG;
    /* HOST: the registry (guests/include/hvreg.h), as messages over hv's registry device */
    if (nr >= 0x1000 && nr <= 0x1008)
        return reg_call(nr, A);
    *where = GUEST;
    switch (nr) {
    /* GUEST: process, memory, time and descriptors, served by this kernel */
    case 1: case 252: do_exit(f->ebx);                           /* exit, exit_group */
    case 45:  return do_brk(f->ebx);
    case 192: return do_mmap2(A);
    case 91:  return do_munmap(f->ebx, f->ecx);
    case 125: return f->ebx & (PAGE - 1) ? -EINVAL : 0;          /* mprotect: pages stay RW */
    case 42:  return do_pipe(f->ebx, 0);
    case 331: return do_pipe(f->ebx, f->ecx);
    case 219: return 0;                                          /* madvise */
    case 243: return do_set_thread_area(f->ebx);
    case 265: return do_clock_gettime(f->ebx, f->ecx);
    case 78:  return do_gettimeofday(f->ebx);
    case 13:  { u32 t = (u32)udiv64(now_ns() + epoch_ns, 1000000000u, NULL);
                if (f->ebx) { if (!user_ok(f->ebx, 4)) return -EFAULT; *(u32 *)f->ebx = t; }
                return (int)t; }
    case 162: return do_nanosleep(f->ebx);
    case 267: return do_clock_nanosleep(f->ebx, f->ecx, f->edx, 0);
    case 407: return do_clock_nanosleep(f->ebx, f->ecx, f->edx, 1);
    case 403: return do_clock_gettime64(f->ebx, f->ecx);
    case 37:  return do_kill(f->ebx, f->ecx);                    /* kill */
    case 238: return do_kill(f->ebx, f->ecx);                    /* tkill */
    case 270: return f->ebx != pid ? -3 : do_kill(f->ecx, f->edx);   /* tgkill */
    case 174: return do_sigaction(f->ebx, f->ecx, f->edx);       /* rt_sigaction */
    case 20: case 224: case 258: return (int)pid;                /* getpid, gettid, set_tid_address */
    case 64:  return 0;                                          /* getppid */
    case 199: case 200: case 201: case 202: return 0;            /* uids and gids: root */
    case 122: return do_uname(f->ebx);
    case 60:  { u32 o = umask_v; umask_v = f->ebx & 0777; return (int)o; }
    case 183: return do_getcwd(f->ebx, f->ecx);
    case 41:  return do_fcntl(f->ebx, 0, 0);                     /* dup */
    case 63:  return do_dup2(f->ebx, f->ecx);
    case 221: case 55: return do_fcntl(f->ebx, f->ecx, f->edx);
    case 54:  return fd_get(f->ebx) ? -ENOTTY : -EBADF;          /* ioctl: no terminals */
    case 355: return do_getrandom(f->ebx, f->ecx);
    case 191: case 76:                                           /* ugetrlimit */
        if (!user_ok(f->ecx, 8)) return -EFAULT;
        ((u32 *)f->ecx)[0] = f->ebx == 3 ? STACK_MAX : ~0u;
        ((u32 *)f->ecx)[1] = ~0u;
        return 0;
    case 311: case 175: return 0;                                /* robust list, sigprocmask */
    case 158: return 0;                                          /* sched_yield */
    }
    stats.unknown_calls++;
    return -ENOSYS;                                              /* rseq, Global\ objects... */
}

/* ---- traps ------------------------------------------------------------------------------------ */
void trap(struct frame *f)
{
    if (f->vector == 128) {
        int where;
        u32 sent = p9_touched;
        stats.syscalls++;
        f->eax = (u32)syscall(f, &where);
        if (where == HOST_9P && p9_touched == sent)
            where = GUEST;                 /* stdout, a pipe, /dev/null: no message went out */
        if (where == GUEST) stats.guest_calls++;
        else if (where == HOST_9P) stats.p9_calls++;
        else stats.reg_calls++;
        return;
    }
    if (f->vector == 32) {                 /* the tick: the program was preempted, and resumes */
        stats.ticks++;
#ifdef UVM_FULL
        now_ns();                          /* the PM timer's wraps */
#endif
        lapic_w(0xB0, 0);
        return;
    }
    if (f->vector == 255)
        return;
    if (f->vector == 14) {
        u32 cr2;
        __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
        int r = f->err & 1 ? -EFAULT : fault_in(cr2);
        if (r == 0)
            return;
        if (r == -ENOMEM)
            do_exit(128 + 9);               /* out of memory: SIGKILL, as Linux's OOM killer */
        if ((f->cs & 3) == 0) {            /* the kernel touched a bad user address */
            kputs("uvmkernel: page fault in the kernel\n");
            hv_poweroff(125);
        }
    }
    if ((f->cs & 3) == 3)
        do_exit(128 + (f->vector == 6 ? 4 :                              /* SIGILL */
                       f->vector == 0 || f->vector == 16 || f->vector == 19 ? 8 :   /* SIGFPE */
                       f->vector == 1 || f->vector == 3 ? 5 : 11));      /* SIGTRAP, SIGSEGV */
    kputs("uvmkernel: unexpected trap in the kernel\n");
    hv_poweroff(125);
}

/* ---- loading the program ------------------------------------------------------------------------ */
static int load_elf(const char *path, u32 *entry, u32 *phdr, u32 *phnum)
{
    int fid = walk(path, 0, NULL);
    if (fid < 0) return fid;
    t_begin(TLOPEN); put32(fid); put32(0);
    int r = t_send(TLOPEN);
    if (r < 0) { fid_clunk(fid); return r; }
    struct file *f = file_new(F_P9);
    f->fid = fid;
    int fd = fd_install(f, 10);
    static u8 eh[52 + 64 * 32];
    /* the header and program headers, through the kernel's own buffer */
    t_begin(TREAD); put32(fid); put64(0); put32(sizeof eh);
    if (t_send(TREAD) < 0) { do_close(fd); return -EIO; }
    u32 got = get32();
    memcpy(eh, rx + rpos, got < sizeof eh ? got : sizeof eh);
    if (got < 52 || *(u32 *)eh != 0x464C457Fu || eh[4] != 1 || *(u16 *)(eh + 16) != 2 ||
        *(u16 *)(eh + 18) != 3) { do_close(fd); return -8; }       /* ENOEXEC */
    u32 phoff = *(u32 *)(eh + 28), n = *(u16 *)(eh + 44);
    if (n > 64 || phoff + n * 32 > got) { do_close(fd); return -8; }
    u32 top = 0;
    *phdr = 0;
    for (u32 i = 0; i < n; i++) {
        u32 *p = (u32 *)(eh + phoff + 32 * i);
        if (p[0] != 1) continue;                                  /* PT_LOAD */
        u32 off = p[1], va = p[2], filesz = p[4], memsz = p[5];
        u32 s = va & ~(PAGE - 1), e = (va + memsz + PAGE - 1) & ~(PAGE - 1);
        if (va < USER_BOTTOM || e > MMAP_TOP / 2 || filesz > memsz || e < s) { do_close(fd); return -8; }
        if (vma_add(s, e)) { do_close(fd); return -ENOMEM; }
        for (u32 va = s; va < e; va += PAGE)        /* in without a fault per page */
            if (fault_in(va)) { do_close(fd); return -ENOMEM; }
        f->off = off;
        if (filesz && do_read((u32)fd, va, filesz) != (int)filesz) { do_close(fd); return -EIO; }
        if (off <= phoff && phoff < off + filesz) *phdr = va + phoff - off;
        if (e > top) top = e;
    }
    do_close(fd);
    *entry = *(u32 *)(eh + 24);
    *phnum = n;
    brk_start = brk_cur = top;
    return 0;
}

static struct frame uframe;
static u8 launch_buf[65536] __attribute__((aligned(16)));

#ifdef UVM_FULL
#include "blk.c"
#include "fat.c"
#include "p9local.c"
#include "hive.c"
#include "full.c"
#endif

void kmain(const struct hv_bootinfo *bi)
{
    cpu_tables();
    paging_init(bi);
#ifdef UVM_FULL
    struct launch *l = full_start();
#else
    const struct hv_device *d = (const struct hv_device *)bi->dev_addr;
    for (u32 i = 0; i < bi->dev_count; i++) {
        if (d[i].kind != HV_DEV_VIRTIO_MMIO) continue;
        if (d[i].device_id == 9 && !have_9p) have_9p = vq_init(&q9p, d[i].base, 0) == 0;
        if (d[i].device_id == 0xB0 && !have_reg) have_reg = vq_init(&qreg, d[i].base, 1) == 0;
    }
    if (!have_9p) { kputs("uvmkernel: no virtio-9p device\n"); hv_poweroff(125); }
    t_begin(TVERSION); put32(MSIZE); putstr("9P2000.L", 8);
    if (t_send(TVERSION) < 0) { kputs("uvmkernel: Tversion failed\n"); hv_poweroff(125); }
    t_begin(TATTACH); put32(0); put32(~0u); putstr("root", 4); putstr("", 0); put32(0);
    if (t_send(TATTACH) < 0) { kputs("uvmkernel: Tattach failed\n"); hv_poweroff(125); }
    fid_used[0] = 1;
    timer_init();

    /* Ready: the host may save the VM here; each container resumes with its launch block. */
    struct launch *l = (struct launch *)launch_buf;
    while (l->magic != LAUNCH_MAGIC)
        HC(0x0011, (u32)launch_buf, sizeof launch_buf, 0);
#endif
    epoch_ns = l->epoch_ns;
#ifdef UVM_FULL
    fat_stamp(udiv64(now_ns() + epoch_ns, 1000000000u, NULL));
#endif
    u32 size = l->size < sizeof launch_buf ? l->size : sizeof launch_buf;
    launch_buf[size - 1] = 0;
    const char *s = l->strings;
    const char *prog = s;  s += strlen(s) + 1;
    const char *wd = s;    s += strlen(s) + 1;
    memcpy(prog_path, prog, strlen(prog) + 1);
    if (normalize(wd, cwd) < 0) memcpy(cwd, "/", 2);

    struct file *out = file_new(F_STDOUT), *in = file_new(F_STDIN);
    fds[0] = in;
    fds[1] = out;
    fds[2] = out;
    out->refs = 2;

    u32 entry = 0, phdr = 0, phnum = 0;
    static char full[PATH_MAX];
    normalize(prog, full);
    int r = load_elf(full, &entry, &phdr, &phnum);
    if (r < 0) {
        HC_STATS();
        hv_poweroff(r == -ENOENT ? 127 : 126);
    }

    /* The stack as Linux builds it: strings, AT_RANDOM, argv, envp, auxv. */
    /* The stack may grow to STACK_MAX; only what it starts with is promised. */
    if (vma_add_committing(USER_TOP - STACK_MAX, USER_TOP, 64) ||
        !user_ok(USER_TOP - (256u << 10), 256u << 10)) {
        HC_STATS();
        hv_poweroff(126);
    }
    u32 sp = USER_TOP - 4;
    const char *argv_s = s;
    u32 argc = l->argc, envc = l->envc;
    if (argc + envc > 4096) hv_poweroff(125);
    static u32 argp[4096 + 2];
    sp -= strlen(full) + 1; memcpy((void *)sp, full, strlen(full) + 1);
    u32 execfn = sp;
    const char *q = argv_s;
    for (u32 i = 0; i < argc + envc; i++) {
        u32 n = strlen(q) + 1;
        if (sp - n < USER_TOP - (200u << 10)) hv_poweroff(125);
        sp -= n;
        memcpy((void *)sp, q, n);
        argp[i] = sp;
        q += n;
    }
    sp -= 5; memcpy((void *)sp, "i686", 5);
    u32 platform = sp;
    sp &= ~15u;
    sp -= 16; do_getrandom(sp, 16);
    u32 random = sp;
    u32 aux[] = {3, phdr, 4, 32, 5, phnum, 6, PAGE, 7, 0, 8, 0, 9, entry, 11, 0, 12, 0, 13, 0,
                 14, 0, 16, 0x178BFBFF, 17, 100, 15, platform, 23, 0, 25, random, 26, 0,
                 31, execfn, 0, 0};
    u32 words = 1 + argc + 1 + envc + 1 + sizeof aux / 4;
    sp = (sp - 4 * words) & ~15u;
    u32 *w = (u32 *)sp;
    *w++ = argc;
    for (u32 i = 0; i < argc; i++) *w++ = argp[i];
    *w++ = 0;
    for (u32 i = 0; i < envc; i++) *w++ = argp[argc + i];
    *w++ = 0;
    memcpy(w, aux, sizeof aux);

    memset(&uframe, 0, sizeof uframe);
    uframe.ds = uframe.es = uframe.fs = uframe.gs = 0x23;
    uframe.eip = entry;
    uframe.cs = 0x1B;
    uframe.eflags = 0x202;
    uframe.esp = sp;
    uframe.ss = 0x23;
    u64 t = hv_time_ns();
    stats.entry_lo = (u32)t;
    stats.entry_hi = (u32)(t >> 32);
#ifdef UVM_FULL
    outb(0x80, 0xE0);                      /* POST code: the program's first instruction next */
#endif
    enter_user(&uframe);
}
