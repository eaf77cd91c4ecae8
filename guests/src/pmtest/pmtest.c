/* pmtest: a protected-mode conformance guest. It sets up what a 32-bit OS sets up (GDT,
 * TSS, IDT, 4 KiB paging, ring 3, the local and I/O APICs, sysenter) and checks that the
 * machine honours each piece: one PASS/FAIL line per check on COM1, in a fixed order, with
 * nothing in the text that depends on timing or addresses (only failures print values).
 * The output is compared byte for byte between QEMU (the reference) and hv; the run ends
 * with a deliberate triple fault. docs/pmtest.md says what each check does and why. */
#include "pmtest.h"

#define TIMER_TICKS     3           /* periodic ticks before the handler takes the CPU back */
#define TIMER_COUNT     0x10000     /* initial count; with divide-by-16 about 1 ms on QEMU */
#define WAIT_LIMIT      (1u << 28)  /* kernel waits for an interrupt give up after this */

/* Local APIC registers (Intel SDM Vol. 3A, table 11-1). */
#define LAPIC_ID        0x020
#define LAPIC_VERSION   0x030
#define LAPIC_TPR       0x080
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define LAPIC_ISR       0x100       /* 8 registers, 16 bytes apart */
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_ICR 0x380
#define LAPIC_TIMER_CCR 0x390
#define LAPIC_TIMER_DCR 0x3e0
#define SVR_ENABLE      0x100
#define LVT_MASKED      0x10000
#define LVT_PERIODIC    0x20000
#define DCR_DIVIDE_16   0x3
#define MSR_APIC_BASE   0x1b
#define MSR_SYSENTER_CS  0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176

/* I/O APIC (82093AA): an index register and a data window. */
#define IOREGSEL        0x00
#define IOWIN           0x10
#define IOAPIC_VER      0x01
#define IOAPIC_REDIR    0x10        /* entry n: 0x10 + 2n (low), 0x11 + 2n (high) */
#define REDIR_MASKED    0x10000

/* The primary ATA channel and the 8042. */
#define ATA_DATA        0x1f0
#define ATA_COUNT       0x1f2
#define ATA_LBA0        0x1f3
#define ATA_LBA1        0x1f4
#define ATA_LBA2        0x1f5
#define ATA_DEVICE      0x1f6
#define ATA_STATUS      0x1f7       /* reading it acknowledges the drive's interrupt */
#define ATA_COMMAND     0x1f7
#define ATA_ALTSTATUS   0x3f6       /* same bits, no acknowledge */
#define ATA_CONTROL     0x3f6
#define ATA_BSY         0x80
#define ATA_DRQ         0x08
#define ATA_IDENTIFY    0xec
#define ATA_READ        0x20
#define KBC_DATA        0x60
#define KBC_STATUS      0x64
#define KBC_COMMAND     0x64
#define KBC_OBF         0x01
#define KBC_IBF         0x02
#define KBC_READ_CB     0x20
#define KBC_WRITE_CB    0x60
#define KBC_WRITE_KBD_OBUF 0xd2
#define CB_KBD_INT      0x01

#define INT_GATE32      0xe
#define TRAP_GATE32     0xf
#define INT_GATE16      0x6

#define USER_WORD(n) (((volatile u32 *)USER_DATA)[n])   /* 0 flag, 1 flags seen, 2 result */

/* gcc may call these even when freestanding. */
void *memset(void *d, int c, unsigned n)
{
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, unsigned n)
{
    u8 *p = d;
    const u8 *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

int memcmp(const void *a, const void *b, unsigned n)
{
    const u8 *p = a, *q = b;
    for (; n--; p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

/* ---- output ---------------------------------------------------------------------------- */

#define COM1 0x3f8

static void serial_putc(char c)
{
    while (!(inb(COM1 + 5) & 0x20))
        ;
    outb(COM1, (u8)c);
}

static void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

static void serial_dec(u32 v)
{
    char d[10];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while (v /= 10);
    while (n--)
        serial_putc(d[n]);
}

/* Why a check failed: " what=got want=expected" notes, printed after "FAIL name:". */
static char why[200];
static u32 why_len;

static void why_str(const char *s)
{
    while (*s && why_len < sizeof why - 1)
        why[why_len++] = *s++;
    why[why_len] = 0;
}

static void why_hex(u32 v)
{
    char d[8];
    int n = 0;
    do
        d[n++] = "0123456789abcdef"[v & 15];
    while (v >>= 4);
    why_str("0x");
    while (n--) {
        char s[2] = {d[n], 0};
        why_str(s);
    }
}

static void note(const char *what, u32 value)
{
    why_str(" ");
    why_str(what);
    why_str("=");
    why_hex(value);
}

static int want(const char *what, u32 got, u32 expected)
{
    if (got == expected)
        return 1;
    note(what, got);
    note("want", expected);
    return 0;
}

static int expect(const char *what, int cond)
{
    if (!cond) {
        why_str(" no ");
        why_str(what);
    }
    return cond;
}

static u32 npass, nfail;

static void report(const char *name, int ok)
{
    serial_puts(ok ? "PASS " : "FAIL ");
    serial_puts(name);
    if (!ok) {
        serial_putc(':');
        serial_puts(why);
    }
    serial_puts("\r\n");
    if (ok)
        npass++;
    else
        nfail++;
    why_len = 0;
    why[0] = 0;
}

/* ---- the machine's tables ---------------------------------------------------------------- */

struct gate {
    u32 lo, hi;
};

extern u32 gdt[][2];                    /* boot.S */
static struct gate idt[256] __attribute__((aligned(8)));
static struct tss tss __attribute__((aligned(128)));
static u32 page_dir[1024] __attribute__((aligned(4096)));
static u32 pt_low[1024] __attribute__((aligned(4096)));     /* 0 - 4 MiB, identity */
static u32 pt_window[1024] __attribute__((aligned(4096)));  /* WINDOW: any physical page */
static u32 pt_apic[1024] __attribute__((aligned(4096)));    /* 0xFEC00000 - 0xFEFFFFFF */
static u8 table[4096];                  /* a firmware table read through the window */
static u16 sector[256];                 /* an ATA data block */

static void set_gate(u32 vector, u32 handler, u32 selector, u32 type, u32 dpl)
{
    idt[vector].lo = (handler & 0xffff) | (selector << 16);
    idt[vector].hi = (handler & 0xffff0000) | 0x8000 | (dpl << 13) | (type << 8);
}

static void set_gate_present(u32 vector, int present)
{
    if (present)
        idt[vector].hi |= 0x8000;
    else
        idt[vector].hi &= ~0x8000u;
}

static void load_idt(u32 base, u16 limit)
{
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) desc = {limit, base};
    __asm__ volatile("lidt %0" : : "m"(desc) : "memory");
}

/* Map physical page `phys` at window slot `slot`; returns the linear address of `phys`. */
static u32 map_phys(u32 slot, u32 phys)
{
    u32 lin = WINDOW + slot * 4096;
    pt_window[slot] = (phys & ~0xfffu) | PTE_P | PTE_W;
    invlpg(lin);
    return lin + (phys & 0xfff);
}

/* Copy `len` bytes of physical memory, wherever in RAM they are, page by page. */
static void phys_read(u32 phys, void *dst, u32 len)
{
    u8 *d = dst;
    while (len) {
        u32 n = 4096 - (phys & 0xfff);
        if (n > len)
            n = len;
        memcpy(d, (const void *)map_phys(0, phys), n);
        d += n;
        phys += n;
        len -= n;
    }
}

static u32 *pte_of(u32 lin) { return &pt_low[lin >> 12]; }    /* lin below 4 MiB */

static void set_pte(u32 lin, u32 flags)
{
    *pte_of(lin) = (lin & ~0xfffu) | flags;
    invlpg(lin);
}

static u32 lapic_read(u32 reg) { return MMIO32(LAPIC_BASE + reg); }
static void lapic_write(u32 reg, u32 v) { MMIO32(LAPIC_BASE + reg) = v; }
static void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

static int lapic_isr_clear(void)
{
    for (u32 i = 0; i < 8; i++)
        if (lapic_read(LAPIC_ISR + 16 * i))
            return 0;
    return 1;
}

static u32 ioapic_read(u32 index)
{
    MMIO32(IOAPIC_DEFAULT + IOREGSEL) = index;
    return MMIO32(IOAPIC_DEFAULT + IOWIN);
}

static void ioapic_write(u32 index, u32 v)
{
    MMIO32(IOAPIC_DEFAULT + IOREGSEL) = index;
    MMIO32(IOAPIC_DEFAULT + IOWIN) = v;
}

/* Fixed delivery, physical destination (our APIC ID), edge, active high. */
static void ioapic_route(u32 pin, u32 vector)
{
    ioapic_write(IOAPIC_REDIR + 2 * pin + 1, lapic_read(LAPIC_ID) & 0xff000000);
    ioapic_write(IOAPIC_REDIR + 2 * pin, vector);
}

static void ioapic_mask(u32 pin) { ioapic_write(IOAPIC_REDIR + 2 * pin, REDIR_MASKED); }

/* ---- traps ----------------------------------------------------------------------------------- */

/* What the last exception (or test gate) looked like. Checks clear it first. */
static volatile struct {
    u32 count, vector, err, eip, cs, eflags, esp, ss, cr2;
    u32 if_in_handler, ss_in_handler;
    u32 stack_top;                  /* where the CPU frame ends: ESP0 for entries from ring 3 */
} seen;

static void forget(void) { memset((void *)&seen, 0, sizeof seen); }

static void record(struct trapframe *tf)
{
    int from_user = (tf->cs & 3) == 3;
    seen.count++;
    seen.vector = tf->vector;
    seen.err = tf->err;
    seen.eip = tf->eip;
    seen.cs = tf->cs & 0xffff;
    seen.eflags = tf->eflags;
    seen.esp = from_user ? tf->esp : 0;
    seen.ss = from_user ? tf->ss & 0xffff : 0;
    seen.stack_top = from_user ? (u32)&tf->ss + 4 : 0;
    seen.cr2 = read_cr2();
    seen.if_in_handler = read_eflags() & EFLAGS_IF;
    seen.ss_in_handler = read_ss();
}

static u32 fixup_eip;               /* where a ring-0 fault a check provoked resumes */
static u32 probe_count, probe_bad;  /* SYS_PROBE: entries seen, bits of what was wrong */
static volatile struct { u32 ticks, in_ring3, on_trap_stack; } periodic, oneshot;
static volatile struct { u32 count, vector, status; } ide;
static volatile struct { u32 count, vector; u8 data[4]; } kbd;

static void finish(void) __attribute__((noreturn));

static void panic(struct trapframe *tf) __attribute__((noreturn));
static void panic(struct trapframe *tf)
{
    note("vector", tf->vector);
    note("err", tf->err);
    note("cs", tf->cs & 0xffff);
    note("eip", tf->eip);
    note("cr2", read_cr2());
    report("unexpected-trap", 0);
    finish();
}

static void syscall(struct trapframe *tf)
{
    switch (tf->eax) {
    case SYS_EXIT:
        kthrow(tf->ebx);
    case SYS_MIX:
        record(tf);
        tf->eax = tf->ebx + 2 * tf->ecx + 3 * tf->edx + 4 * tf->esi + 5 * tf->edi;
        return;
    case SYS_PROBE:
        probe_count++;
        if ((tf->cs & 0xffff) != UCODE)
            probe_bad |= 1;
        if ((tf->ss & 0xffff) != UDATA)
            probe_bad |= 2;
        if (tf->esp != USER_STACK_TOP)
            probe_bad |= 4;
        if ((u32)&tf->ss + 4 != (u32)trap_stack_top)
            probe_bad |= 8;
        if (read_ss() != KDATA)
            probe_bad |= 16;
        return;
    default:
        tf->eax = 0xffffffff;
    }
}

static void count_tick(volatile u32 *in_ring3, volatile u32 *on_trap_stack, struct trapframe *tf)
{
    if ((tf->cs & 3) == 3) {
        (*in_ring3)++;
        if ((u32)&tf->ss + 4 == (u32)trap_stack_top)
            (*on_trap_stack)++;
    }
}

/* #PF on a test page: make the access that faulted legal (present; writable for a write;
 * user for a user access) and return to retry it. Any other #PF is not ours. */
static int fix_test_page(struct trapframe *tf)
{
    u32 cr2 = read_cr2();
    if (cr2 - TEST_PAGES >= N_TEST_PAGES * 4096)
        return 0;
    *pte_of(cr2) |= PTE_P | (tf->err & PF_W ? PTE_W : 0) | (tf->err & PF_U ? PTE_U : 0);
    invlpg(cr2);
    return 1;
}

void trap(struct trapframe *tf);
void trap(struct trapframe *tf)
{
    u32 v = tf->vector;
    switch (v) {
    case VEC_SYSCALL:
        syscall(tf);
        return;
    case VEC_TIMER:
        periodic.ticks++;
        count_tick(&periodic.in_ring3, &periodic.on_trap_stack, tf);
        lapic_eoi();
        if (periodic.ticks == TIMER_TICKS) {
            lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
            lapic_write(LAPIC_TIMER_ICR, 0);
            kthrow(RUN_PREEMPTED);
        }
        return;
    case VEC_ONESHOT:
        oneshot.ticks++;
        count_tick(&oneshot.in_ring3, &oneshot.on_trap_stack, tf);
        USER_WORD(0) = 1;
        lapic_eoi();
        return;
    case VEC_IDE:
        ide.count++;
        ide.vector = v;
        ide.status = inb(ATA_STATUS);
        lapic_eoi();
        return;
    case VEC_KBD:
        kbd.data[kbd.count & 3] = inb(KBC_DATA);
        kbd.count++;
        kbd.vector = v;
        lapic_eoi();
        return;
    case VEC_SPURIOUS:
        return;                     /* no EOI for the spurious vector */
    }
    record(tf);
    if (v == VEC_INTGATE || v == VEC_TRAPGATE)
        return;
    if (v == VEC_PF && fix_test_page(tf))
        return;
    if (v == VEC_DF) {              /* the double-fault checks took gates away */
        set_gate_present(VEC_GP, 1);
        set_gate_present(VEC_PF, 1);
        kthrow(RUN_TRAPPED | v);
    }
    if ((tf->cs & 3) == 3)
        kthrow(RUN_TRAPPED | v);
    if (fixup_eip) {
        tf->eip = fixup_eip;
        fixup_eip = 0;
        return;
    }
    panic(tf);
}

/* Run `entry` in ring 3 with registers `r` (ESP and EFLAGS default to the user stack top
 * and IF set) until SYS_EXIT or a handler ends the run; returns the run's result. */
static u32 run_user(void (*entry)(void), struct uregs *r)
{
    r->eip = (u32)entry;
    if (!r->esp)
        r->esp = USER_STACK_TOP;
    if (!r->eflags)
        r->eflags = 0x202;
    return kcatch(enter_user, r);
}

static u32 run_user_zeroed(void (*entry)(void))
{
    struct uregs r = {0};
    return run_user(entry, &r);
}

/* Wait with interrupts enabled until *count reaches n; 0 if it never does. */
static int wait_count(volatile u32 *count, u32 n)
{
    sti();
    for (u32 i = 0; i < WAIT_LIMIT && *count < n; i++)
        pause();
    cli();
    return *count >= n;
}

/* ---- setup ------------------------------------------------------------------------------------ */

static void setup_tss(void)
{
    u32 base = (u32)&tss, limit = sizeof tss - 1;
    tss.ss0 = KDATA;
    tss.esp0 = (u32)trap_stack_top;
    tss.iomap = sizeof tss;         /* beyond the limit: no I/O bitmap, ring 3 has no ports */
    gdt[TSS_SEL / 8][0] = (limit & 0xffff) | (base << 16);
    gdt[TSS_SEL / 8][1] = ((base >> 16) & 0xff) | 0x8900 | (limit & 0xf0000) | (base & 0xff000000);
    __asm__ volatile("ltr %w0" : : "r"(TSS_SEL));
}

static void setup_idt(void)
{
    for (u32 i = 0; isr_table[i][0] != 0xffffffffu; i++) {
        u32 v = isr_table[i][0];
        u32 type = (v == VEC_SYSCALL || v == VEC_TRAPGATE) ? TRAP_GATE32 : INT_GATE32;
        set_gate(v, isr_table[i][1], KCODE, type, v == VEC_SYSCALL ? 3 : 0);
    }
    set_gate(VEC_GATE16, (u32)gate16_handler, CODE16, INT_GATE16, 0);
    load_idt((u32)idt, sizeof idt - 1);
}

/* Identity-map the first 4 MiB, supervisor and writable, except: the user code page (user,
 * read-only), the user data and stack pages (user), the test pages (not present). The page
 * directory entries allow everything, so the page table entries decide. */
static void setup_paging(void)
{
    for (u32 i = 0; i < 1024; i++)
        pt_low[i] = (i << 12) | PTE_P | PTE_W;
    *pte_of(USER_CODE) = USER_CODE | PTE_P | PTE_U;
    for (u32 a = USER_DATA; a < USER_STACK_TOP; a += 4096)
        *pte_of(a) |= PTE_U;
    for (u32 i = 0; i < N_TEST_PAGES; i++)
        *pte_of(TEST_PAGES + i * 4096) = TEST_PAGES + i * 4096;
    page_dir[0] = (u32)pt_low | PTE_P | PTE_W | PTE_U;
    page_dir[WINDOW >> 22] = (u32)pt_window | PTE_P | PTE_W;
    page_dir[LAPIC_BASE >> 22] = (u32)pt_apic | PTE_P | PTE_W;
    pt_apic[(IOAPIC_DEFAULT >> 12) & 0x3ff] = IOAPIC_DEFAULT | PTE_P | PTE_W | PTE_PCD | PTE_PWT;
    pt_apic[(LAPIC_BASE >> 12) & 0x3ff] = LAPIC_BASE | PTE_P | PTE_W | PTE_PCD | PTE_PWT;
    write_cr3((u32)page_dir);
    write_cr0(read_cr0() | 0x80010000);     /* PG, and WP: ring 0 honours read-only pages */
}

/* ---- 1. protected mode, paging, gates ---------------------------------------------------------- */

static volatile u32 alias_probe = 0x5aa5c33c;

static int check_pm_paging(void)
{
    int ok = want("cr0", read_cr0() & 0x80010001, 0x80010001);
    ok &= want("cr3", read_cr3(), (u32)page_dir);
    ok &= want("cs", read_cs(), KCODE);
    ok &= want("tr", read_tr(), TSS_SEL);
    /* A second linear address for one physical page: both name the same bytes. */
    volatile u32 *alias = (volatile u32 *)map_phys(1, (u32)&alias_probe);
    ok &= want("alias-read", *alias, 0x5aa5c33c);
    *alias = 0x01234567;
    ok &= want("alias-write", alias_probe, 0x01234567);
    return ok;
}

/* int from ring 0 through an interrupt gate (IF cleared in the handler) and a trap gate
 * (IF kept); the saved EFLAGS has IF set in both. */
static int check_gate(u32 vector, u32 if_in_handler)
{
    forget();
    sti();
    if (vector == VEC_INTGATE)
        __asm__ volatile("int $0x41" ::: "memory");
    else
        __asm__ volatile("int $0x42" ::: "memory");
    cli();
    int ok = want("count", seen.count, 1);
    ok &= want("vector", seen.vector, vector);
    ok &= want("if-in-handler", seen.if_in_handler, if_in_handler);
    ok &= want("saved-if", seen.eflags & EFLAGS_IF, EFLAGS_IF);
    ok &= want("cs", seen.cs, KCODE);
    return ok;
}

/* ---- 2-4. ring 3 --------------------------------------------------------------------------------- */

static int check_ring3_round_trips(void)
{
    probe_count = probe_bad = 0;
    u32 res = run_user_zeroed(user_probe_loop);
    int ok = want("user-bits", res, 0);
    ok &= want("probes", probe_count, 3);
    ok &= want("kernel-bits", probe_bad, 0);
    ok &= want("cs", read_cs(), KCODE);
    ok &= want("ss", read_ss(), KDATA);
    return ok;
}

static int check_int80(void)
{
    struct uregs r = {.eax = SYS_MIX, .ebx = 1, .ecx = 0x10, .edx = 0x100, .esi = 0x1000, .edi = 0x10000};
    forget();
    USER_WORD(1) = USER_WORD(2) = 0;
    u32 res = run_user(user_syscall_mix, &r);
    int ok = want("exit", res, 0);
    ok &= want("result", USER_WORD(2), 0x54321);
    ok &= want("flags-after", USER_WORD(1), 0xed7);
    ok &= want("saved-flags", seen.eflags, 0xed7);
    ok &= want("if-in-handler", seen.if_in_handler, EFLAGS_IF);     /* a trap gate */
    ok &= want("cs", seen.cs, UCODE);
    ok &= want("ss", seen.ss, UDATA);
    ok &= want("ss0", seen.ss_in_handler, KDATA);
    ok &= want("esp0", seen.stack_top, (u32)trap_stack_top);
    return ok;
}

/* A ring-3 instruction that must fault with #GP(err) at `at`. */
static int check_user_gp(void (*entry)(void), const char *at, u32 err)
{
    forget();
    u32 res = run_user_zeroed(entry);
    int ok = want("result", res, RUN_TRAPPED | VEC_GP);
    ok &= want("err", seen.err, err);
    ok &= want("eip", seen.eip, (u32)at);
    ok &= want("cs", seen.cs, UCODE);
    ok &= want("esp0", seen.stack_top, (u32)trap_stack_top);
    return ok;
}

/* ---- 5. #GP and #PF -------------------------------------------------------------------------------- */

static int check_gp_bad_selector(void)
{
    u32 at = 0;
    forget();
    __asm__ volatile("movl $2f, %[fix]\n\t"
                     "movl $1f, %[at]\n"
                     "1:\tmovw %w[sel], %%fs\n"
                     "2:"
                     : [fix] "=m"(fixup_eip), [at] "=m"(at)
                     : [sel] "r"(BAD_SEL)
                     : "memory");
    __asm__ volatile("movw %w0, %%fs" : : "r"(KDATA));
    int ok = want("count", seen.count, 1);
    ok &= want("vector", seen.vector, VEC_GP);
    ok &= want("err", seen.err, BAD_SEL);
    ok &= want("eip", seen.eip, at);
    return ok;
}

enum { READ, WRITE, FETCH };

struct pf_case {
    const char *name;
    u8 ring3, access, pte, err;
};

static const struct pf_case pf_cases[] = {
    {"pf-ring0-read-not-present", 0, READ, 0, 0},
    {"pf-ring0-write-not-present", 0, WRITE, 0, PF_W},
    {"pf-ring0-write-read-only", 0, WRITE, PTE_P, PF_P | PF_W},
    {"pf-ring0-fetch-not-present", 0, FETCH, 0, 0},
    {"pf-ring3-read-not-present", 1, READ, PTE_U, PF_U},
    {"pf-ring3-write-not-present", 1, WRITE, PTE_U | PTE_W, PF_U | PF_W},
    {"pf-ring3-read-supervisor", 1, READ, PTE_P | PTE_W, PF_P | PF_U},
    {"pf-ring3-write-read-only", 1, WRITE, PTE_P | PTE_U, PF_P | PF_W | PF_U},
};

/* mov $0x600dc0de, %eax; ret: what the fetch case finds on its page once it is mapped. */
static const u8 fetch_code[] = {0xb8, 0xde, 0xc0, 0x0d, 0x60, 0xc3};

/* One access to a test page set up to fault; the handler fixes the page and the access is
 * retried: it must then complete with the page's contents. */
static int check_pf(u32 i, const struct pf_case *c)
{
    u32 page = TEST_PAGES + i * 4096, addr = page + 0x124;
    u32 before = 0xc0de0000 + i, written = 0xbeef0000 + i, got = 0, expect_eip = 0;
    set_pte(page, PTE_P | PTE_W);
    if (c->access == FETCH)
        memcpy((void *)addr, fetch_code, sizeof fetch_code);
    else
        *(volatile u32 *)addr = before;
    set_pte(page, c->pte);
    forget();
    if (!c->ring3) {
        if (c->access == READ)
            got = *(volatile u32 *)addr;
        else if (c->access == WRITE)
            *(volatile u32 *)addr = written;
        else
            got = ((u32 (*)(void))addr)();
        expect_eip = c->access == FETCH ? addr : 0;
    } else {
        struct uregs r = {.esi = addr, .edi = written};
        void (*entry)(void) = c->access == READ ? user_read : user_write;
        got = run_user(entry, &r);
        expect_eip = (u32)entry;
    }
    int ok = want("count", seen.count, 1);
    ok &= want("vector", seen.vector, VEC_PF);
    ok &= want("err", seen.err, c->err);
    ok &= want("cr2", seen.cr2, addr);
    ok &= want("cs", seen.cs, c->ring3 ? UCODE : KCODE);
    if (expect_eip)
        ok &= want("eip", seen.eip, expect_eip);
    if (c->access == READ) {
        ok &= want("value", got, before);
    } else if (c->access == WRITE) {
        ok &= want("stored", *(volatile u32 *)addr, written);
        ok &= want("exit", got, 0);
    } else {
        ok &= want("returned", got, 0x600dc0de);
    }
    set_pte(page, 0);
    return ok;
}

/* ---- 9, 10. sysenter, CPUID ---------------------------------------------------------------- */

static int check_sysenter(void)
{
    wrmsr(MSR_SYSENTER_CS, KCODE);
    wrmsr(MSR_SYSENTER_ESP, (u32)sysenter_stack_top);
    wrmsr(MSR_SYSENTER_EIP, (u32)sysenter_entry);
    int ok = want("msr-cs", (u32)rdmsr(MSR_SYSENTER_CS), KCODE);
    ok &= want("msr-esp", (u32)rdmsr(MSR_SYSENTER_ESP), (u32)sysenter_stack_top);
    ok &= want("msr-eip", (u32)rdmsr(MSR_SYSENTER_EIP), (u32)sysenter_entry);
    struct uregs r = {.eax = 7, .ebx = 5};
    USER_WORD(2) = 0;
    memset(sysenter_seen, 0, sizeof sysenter_seen);
    u32 res = run_user(user_sysenter, &r);
    ok &= want("user-bits", res, 0);
    ok &= want("result", USER_WORD(2), 7 * 3 + 5);
    ok &= want("cs", sysenter_seen[0], KCODE);
    ok &= want("ss", sysenter_seen[1], KDATA);
    ok &= want("esp", sysenter_seen[2], (u32)sysenter_stack_top);
    ok &= want("if", sysenter_seen[3] & EFLAGS_IF, 0);
    return ok;
}

#define CPUID_FPU (1u << 0)
#define CPUID_PSE (1u << 3)
#define CPUID_TSC (1u << 4)
#define CPUID_MSR (1u << 5)
#define CPUID_APIC (1u << 9)
#define CPUID_SEP (1u << 11)

static int check_cpuid(void)
{
    u32 r[4], need = CPUID_FPU | CPUID_PSE | CPUID_TSC | CPUID_MSR | CPUID_APIC | CPUID_SEP;
    cpuid(0, r);
    int ok = expect("leaf-1", r[0] >= 1);
    cpuid(1, r);
    ok &= want("edx-features", r[3] & need, need);
    return ok;
}

/* ---- 7. local APIC --------------------------------------------------------------------------------- */

static int lapic_present;

static int check_lapic_base_msr(void)
{
    u64 base = rdmsr(MSR_APIC_BASE);
    int ok = want("apic-base", (u32)base, LAPIC_BASE | 0x900);     /* enabled, BSP */
    ok &= want("apic-base-high", (u32)(base >> 32), 0);
    return ok;
}

static int check_lapic_id_version(void)
{
    u32 r[4], ver = lapic_read(LAPIC_VERSION);
    cpuid(1, r);
    lapic_present = ver != 0xffffffff && (ver & 0xff) >= 0x10 && (ver & 0xff) <= 0x15;
    int ok = expect("integrated-apic-version", lapic_present);
    ok &= expect("4-lvt-entries", ((ver >> 16) & 0xff) >= 3 && ver != 0xffffffff);
    ok &= want("id-vs-cpuid", lapic_read(LAPIC_ID) >> 24, r[1] >> 24);
    return ok;
}

static int check_lapic_enable(void)
{
    lapic_write(LAPIC_SVR, SVR_ENABLE | VEC_SPURIOUS);
    lapic_write(LAPIC_TPR, 0);
    int ok = want("svr", lapic_read(LAPIC_SVR) & 0x1ff, SVR_ENABLE | VEC_SPURIOUS);
    ok &= want("tpr", lapic_read(LAPIC_TPR) & 0xff, 0);
    return ok;
}

/* Periodic timer against a ring-3 busy loop: every tick must interrupt ring 3 (on the TSS
 * stack); the third one's handler stops the timer and takes the CPU back for the kernel. */
static int check_timer_periodic(void)
{
    if (!expect("local-apic", lapic_present))
        return 0;
    memset((void *)&periodic, 0, sizeof periodic);
    lapic_write(LAPIC_TIMER_DCR, DCR_DIVIDE_16);
    lapic_write(LAPIC_LVT_TIMER, VEC_TIMER | LVT_PERIODIC);
    lapic_write(LAPIC_TIMER_ICR, TIMER_COUNT);
    u32 res = run_user_zeroed(user_spin);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
    lapic_write(LAPIC_TIMER_ICR, 0);
    int ok = want("result", res, RUN_PREEMPTED);
    ok &= want("ticks", periodic.ticks, TIMER_TICKS);
    ok &= want("in-ring3", periodic.in_ring3, TIMER_TICKS);
    ok &= want("on-trap-stack", periodic.on_trap_stack, TIMER_TICKS);
    ok &= expect("isr-clear", lapic_isr_clear());
    return ok;
}

/* One-shot timer: one tick, whose handler sets the flag ring 3 waits for; the count then
 * stays at 0. */
static int check_timer_oneshot(void)
{
    if (!expect("local-apic", lapic_present))
        return 0;
    memset((void *)&oneshot, 0, sizeof oneshot);
    USER_WORD(0) = 0;
    lapic_write(LAPIC_TIMER_DCR, DCR_DIVIDE_16);
    lapic_write(LAPIC_LVT_TIMER, VEC_ONESHOT);
    lapic_write(LAPIC_TIMER_ICR, TIMER_COUNT);
    u32 res = run_user_zeroed(user_wait_flag);
    u32 ccr = lapic_read(LAPIC_TIMER_CCR);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
    lapic_write(LAPIC_TIMER_ICR, 0);
    int ok = want("result", res, 2);
    ok &= want("ticks", oneshot.ticks, 1);
    ok &= want("in-ring3", oneshot.in_ring3, 1);
    ok &= want("current-count", ccr, 0);
    ok &= expect("isr-clear", lapic_isr_clear());
    return ok;
}

/* ---- 8. MP table, MADT, I/O APIC ------------------------------------------------------------ */

static u32 rd16(const u8 *p) { return p[0] | (u32)p[1] << 8; }
static u32 rd32(const u8 *p) { return rd16(p) | rd16(p + 2) << 16; }

static u8 checksum(const u8 *p, u32 n)
{
    u8 sum = 0;
    while (n--)
        sum += *p++;
    return sum;
}

/* A structure with signature `sig` and a zero checksum over `sumlen` bytes on a 16-byte
 * boundary in [lo, hi) (below 1 MiB: identity-mapped). */
static const u8 *scan(u32 lo, u32 hi, const char *sig, u32 siglen, u32 sumlen)
{
    for (u32 a = lo; a + sumlen <= hi; a += 16)
        if (!memcmp((const void *)a, sig, siglen) && checksum((const u8 *)a, sumlen) == 0)
            return (const u8 *)a;
    return 0;
}

static u32 ebda(void) { return (u32)*(volatile u16 *)0x40e << 4; }

/* Read a table of at least `min` bytes whose length is at `len_at` (`len_size` bytes) into
 * `table`; 0 if it does not fit. */
static u32 read_table(u32 phys, u32 min, u32 len_at, u32 len_size)
{
    phys_read(phys, table, min);
    u32 len = len_size == 2 ? rd16(table + len_at) : rd32(table + len_at);
    if (len < min || len > sizeof table)
        return 0;
    phys_read(phys, table, len);
    return len;
}

static struct {
    int imcr;
    u32 pin_irq1, pin_irq14;        /* I/O APIC inputs of ISA IRQ 1 and 14 */
} mp = {0, 1, 14};

/* The MP floating pointer and configuration table (MP spec 1.4): checksums, the local
 * APIC address, an enabled bootstrap processor, an ISA bus, an enabled I/O APIC at
 * 0xFEC00000 and interrupt entries for ISA IRQ 1 and 14 on it (their pins are used below). */
static int check_mp_table(void)
{
    u32 base_kb = *(volatile u16 *)0x413;
    const u8 *fp = 0;
    if (ebda())
        fp = scan(ebda(), ebda() + 1024, "_MP_", 4, 16);
    if (!fp && base_kb >= 1)
        fp = scan(base_kb * 1024 - 1024, base_kb * 1024, "_MP_", 4, 16);
    if (!fp)
        fp = scan(0xf0000, 0x100000, "_MP_", 4, 16);
    if (!expect("floating-pointer", fp != 0) || !expect("config-table", rd32(fp + 4) != 0))
        return 0;
    mp.imcr = fp[12] & 0x80;
    u32 len = read_table(rd32(fp + 4), 44, 4, 2);
    if (!expect("table-length", len != 0))
        return 0;
    int ok = expect("PCMP", !memcmp(table, "PCMP", 4));
    ok &= expect("checksum", checksum(table, len) == 0);
    ok &= want("lapic", rd32(table + 36), LAPIC_BASE);
    int bsp = 0, isa = -1, ioapic_id = -1, pin1 = -1, pin14 = -1;
    u32 ioapic_addr = 0, entries = rd16(table + 34), off = 44;
    static const u8 size[] = {20, 8, 8, 8, 8};
    for (u32 n = 0; n < entries && off < len; n++) {
        const u8 *e = table + off;
        if (e[0] > 4 || off + size[e[0]] > len) {
            ok &= want("entry-type", e[0], 0);
            break;
        }
        if (e[0] == 0 && (e[3] & 3) == 3)
            bsp = 1;
        else if (e[0] == 1 && !memcmp(e + 2, "ISA", 3))
            isa = e[1];
        else if (e[0] == 2 && (e[3] & 1)) {
            ioapic_id = e[1];
            ioapic_addr = rd32(e + 4);
        } else if (e[0] == 3 && e[1] == 0 && e[4] == isa && (e[6] == ioapic_id || e[6] == 0xff)) {
            if (e[5] == 1)
                pin1 = e[7];
            if (e[5] == 14)
                pin14 = e[7];
        }
        off += size[e[0]];
    }
    ok &= expect("bsp", bsp);
    ok &= expect("isa-bus", isa >= 0);
    ok &= want("ioapic", ioapic_addr, IOAPIC_DEFAULT);
    ok &= expect("irq1-entry", pin1 >= 0);
    ok &= expect("irq14-entry", pin14 >= 0);
    if (pin1 >= 0 && pin14 >= 0) {
        mp.pin_irq1 = pin1;
        mp.pin_irq14 = pin14;
    }
    return ok;
}

/* ACPI: the RSDP (EBDA or 0xE0000-0xFFFFF), the RSDT and its MADT: checksums, the local
 * APIC address, our processor enabled, the I/O APIC at 0xFEC00000 from GSI 0, and ISA
 * IRQ 1 and 14 on the same inputs the MP table gave. */
static int check_madt(void)
{
    const u8 *rsdp = 0;
    if (ebda())
        rsdp = scan(ebda(), ebda() + 1024, "RSD PTR ", 8, 20);
    if (!rsdp)
        rsdp = scan(0xe0000, 0x100000, "RSD PTR ", 8, 20);
    if (!expect("rsdp", rsdp != 0))
        return 0;
    u32 len = read_table(rd32(rsdp + 16), 36, 4, 4);
    if (!expect("rsdt", len != 0 && !memcmp(table, "RSDT", 4) && checksum(table, len) == 0))
        return 0;
    u32 madt = 0;
    for (u32 off = 36; off + 4 <= len && !madt; off += 4) {
        u8 sig[4];
        u32 at = rd32(table + off);
        phys_read(at, sig, 4);
        if (!memcmp(sig, "APIC", 4))
            madt = at;
    }
    if (!expect("madt", madt != 0))
        return 0;
    len = read_table(madt, 44, 4, 4);
    if (!expect("madt-length", len != 0))
        return 0;
    int ok = expect("checksum", checksum(table, len) == 0);
    ok &= want("lapic", rd32(table + 36), LAPIC_BASE);
    u32 my_id = lapic_read(LAPIC_ID) >> 24, gsi1 = 1, gsi14 = 14;
    int cpu = 0, ioapic = 0;
    for (u32 off = 44; off + 2 <= len;) {
        const u8 *e = table + off;
        if (e[1] < 2 || off + e[1] > len) {
            ok &= want("entry-length", e[1], 2);
            break;
        }
        if (e[0] == 0 && e[1] >= 8 && e[3] == my_id && (rd32(e + 4) & 1))
            cpu = 1;
        else if (e[0] == 1 && e[1] >= 12 && rd32(e + 4) == IOAPIC_DEFAULT && rd32(e + 8) == 0)
            ioapic = 1;
        else if (e[0] == 2 && e[1] >= 10 && e[2] == 0) {
            if (e[3] == 1)
                gsi1 = rd32(e + 4);
            if (e[3] == 14)
                gsi14 = rd32(e + 4);
        }
        off += e[1];
    }
    ok &= expect("cpu", cpu);
    ok &= expect("ioapic", ioapic);
    ok &= want("irq1-gsi", gsi1, mp.pin_irq1);
    ok &= want("irq14-gsi", gsi14, mp.pin_irq14);
    return ok;
}

static int ioapic_present;

static int check_ioapic_registers(void)
{
    u32 ver = ioapic_read(IOAPIC_VER);
    ioapic_present = ver != 0xffffffff && ((ver >> 16) & 0xff) >= 15;
    int ok = expect("16-redirection-entries", ioapic_present);
    /* A redirection entry keeps what was written (vector, mask) */
    ioapic_write(IOAPIC_REDIR + 2 * 3, REDIR_MASKED | 0x5a);
    ok &= want("redir-3", ioapic_read(IOAPIC_REDIR + 2 * 3) & 0x100ff, REDIR_MASKED | 0x5a);
    ioapic_mask(3);
    if (mp.imcr) {                  /* leave PIC mode: the 8259 no longer reaches the CPU */
        outb(0x22, 0x70);
        outb(0x23, 0x01);
    }
    return ok;
}

static int ata_not_busy(void)
{
    for (u32 i = 0; i < WAIT_LIMIT; i++)
        if (!(inb(ATA_ALTSTATUS) & ATA_BSY))
            return 1;
    return 0;
}

/* Issue an ATA command with the drive's interrupt routed through the I/O APIC; wait for
 * the interrupt, then read the data block. */
static int ata_command(u8 command)
{
    ide.count = 0;
    ide.vector = 0;
    if (!expect("ready", ata_not_busy()))
        return 0;
    outb(ATA_COMMAND, command);
    int ok = expect("interrupt", wait_count(&ide.count, 1));
    ok &= want("count", ide.count, 1);
    ok &= want("vector", ide.vector, VEC_IDE);
    ok &= want("drq", ide.status & (ATA_BSY | ATA_DRQ), ATA_DRQ);
    if (!ok)
        return 0;
    for (u32 i = 0; i < 256; i++)
        sector[i] = inw(ATA_DATA);
    return expect("isr-clear", lapic_isr_clear());
}

static int check_ide_identify(void)
{
    if (!expect("ioapic", ioapic_present) || !expect("local-apic", lapic_present))
        return 0;
    outb(ATA_DEVICE, 0xa0);         /* master */
    outb(ATA_CONTROL, 0x00);        /* nIEN clear: the drive interrupts */
    (void)inb(ATA_STATUS);          /* drop any interrupt the BIOS left pending */
    ioapic_route(mp.pin_irq14, VEC_IDE);
    int ok = ata_command(ATA_IDENTIFY);
    if (ok) {
        ok &= want("ata-device", sector[0] & 0x8000, 0);
        ok &= want("lba", sector[49] & 0x200, 0x200);
    }
    return ok;
}

/* A second interrupt on the same line only arrives if the first one's EOI was taken. */
static int check_ide_read(void)
{
    if (!expect("ioapic", ioapic_present) || !expect("local-apic", lapic_present))
        return 0;
    outb(ATA_COUNT, 1);
    outb(ATA_LBA0, 0);
    outb(ATA_LBA1, 0);
    outb(ATA_LBA2, 0);
    outb(ATA_DEVICE, 0xe0);         /* LBA, master */
    int ok = ata_command(ATA_READ);
    if (ok)
        ok &= expect("boot-sector", !memcmp(sector, (const void *)0x7c00, 512));
    ioapic_mask(mp.pin_irq14);
    return ok;
}

static int kbc_wait(u8 bit, u8 value)
{
    for (u32 i = 0; i < WAIT_LIMIT; i++)
        if ((inb(KBC_STATUS) & bit) == value)
            return 1;
    return 0;
}

static void kbc_drain(void)
{
    for (u32 i = 0; i < 32 && (inb(KBC_STATUS) & KBC_OBF); i++)
        (void)inb(KBC_DATA);
}

/* 8042 command 0xD2 puts a byte in the output buffer as if the keyboard sent it: IRQ 1,
 * through the I/O APIC. Twice, so the second needs the first one's EOI. */
static int check_kbd_irq(void)
{
    static const u8 bytes[2] = {0xa5, 0x5a};
    if (!expect("ioapic", ioapic_present) || !expect("local-apic", lapic_present))
        return 0;
    kbc_drain();
    outb(KBC_COMMAND, KBC_READ_CB);
    int ok = expect("command-byte", kbc_wait(KBC_OBF, KBC_OBF));
    u8 cb = inb(KBC_DATA);
    ok &= expect("input-empty", kbc_wait(KBC_IBF, 0));
    outb(KBC_COMMAND, KBC_WRITE_CB);
    ok &= expect("input-empty", kbc_wait(KBC_IBF, 0));
    outb(KBC_DATA, cb | CB_KBD_INT);
    ok &= expect("input-empty", kbc_wait(KBC_IBF, 0));
    kbc_drain();
    memset((void *)&kbd, 0, sizeof kbd);
    ioapic_route(mp.pin_irq1, VEC_KBD);
    for (u32 i = 0; i < 2 && ok; i++) {
        outb(KBC_COMMAND, KBC_WRITE_KBD_OBUF);
        ok &= expect("input-empty", kbc_wait(KBC_IBF, 0));
        outb(KBC_DATA, bytes[i]);
        ok &= expect("interrupt", wait_count(&kbd.count, i + 1));
    }
    ioapic_mask(mp.pin_irq1);
    ok &= want("count", kbd.count, 2);
    ok &= want("vector", kbd.vector, VEC_KBD);
    ok &= want("byte-1", kbd.data[0], bytes[0]);
    ok &= want("byte-2", kbd.data[1], bytes[1]);
    ok &= expect("isr-clear", lapic_isr_clear());
    return ok;
}

/* ---- late checks: a VMM without them tends to end the run, not print FAIL ------------------ */

/* int through a 16-bit interrupt gate from 32-bit ring 0: IP, CS and FLAGS pushed as words
 * (6 bytes), a 16-bit handler, and a 16-bit iret back into 32-bit code. */
static int check_gate16(void)
{
    u32 esp_before, return_ip, flags_before;
    gate16_esp_seen = 0;
    memset(gate16_frame, 0, sizeof gate16_frame);
    __asm__ volatile("pushfl\n\t"
                     "popl %[fl]\n\t"
                     "movl $1f, %[ip]\n\t"
                     "movl %%esp, %[sp]\n\t"
                     "int $0x43\n"
                     "1:"
                     : [fl] "=&r"(flags_before), [sp] "=&r"(esp_before), [ip] "=&r"(return_ip)
                     :
                     : "memory");
    int ok = want("esp", gate16_esp_seen, esp_before - 6);
    ok &= want("ip", gate16_frame[0], return_ip & 0xffff);
    ok &= want("cs", gate16_frame[1], KCODE);
    ok &= want("flags", gate16_frame[2], flags_before & 0xffff);
    return ok;
}

/* #GP whose gate is not present: delivering it raises #NP, two contributory exceptions
 * make a #DF, which arrives through the vector 8 interrupt gate with error code 0. */
static u32 provoke_gp_without_gate(void *unused)
{
    (void)unused;
    set_gate_present(VEC_GP, 0);
    __asm__ volatile("movl $1f, %[fix]\n\t"
                     "movw %w[sel], %%fs\n"
                     "1:"
                     : [fix] "=m"(fixup_eip)
                     : [sel] "r"(BAD_SEL)
                     : "memory");
    return 0;
}

static int check_double_fault_ring0(void)
{
    forget();
    u32 res = kcatch(provoke_gp_without_gate, 0);
    set_gate_present(VEC_GP, 1);
    fixup_eip = 0;
    __asm__ volatile("movw %w0, %%fs" : : "r"(KDATA));
    int ok = want("result", res, RUN_TRAPPED | VEC_DF);
    ok &= want("count", seen.count, 1);
    ok &= want("err", seen.err, 0);
    return ok;
}

/* The same from ring 3 with a #PF whose gate is not present: #PF then #NP is a #DF,
 * delivered on the TSS stack with the user's SS:ESP; CR2 holds the faulting address. */
static int check_double_fault_ring3(void)
{
    u32 addr = TEST_PAGES + (N_TEST_PAGES - 1) * 4096 + 0x10;
    struct uregs r = {.esi = addr};
    set_pte(addr, 0);
    forget();
    set_gate_present(VEC_PF, 0);
    u32 res = run_user(user_read, &r);
    set_gate_present(VEC_PF, 1);
    int ok = want("result", res, RUN_TRAPPED | VEC_DF);
    ok &= want("count", seen.count, 1);
    ok &= want("err", seen.err, 0);
    ok &= want("cr2", seen.cr2, addr);
    ok &= want("ss", seen.ss, UDATA);
    ok &= want("esp", seen.esp, USER_STACK_TOP);
    ok &= want("esp0", seen.stack_top, (u32)trap_stack_top);
    return ok;
}

/* ---- the end: 11. a triple fault ----------------------------------------------------------- */

static void finish(void)
{
    serial_puts("pmtest done: ");
    serial_dec(npass);
    serial_puts(" passed, ");
    serial_dec(nfail);
    serial_puts(" failed\r\n");
    serial_puts("triple fault next\r\n");
    /* int3 with an empty IDT: #GP, then #DF, then nothing can be delivered: shutdown. */
    cli();
    load_idt(0, 0);
    __asm__ volatile("int3");
    for (;;)
        __asm__ volatile("hlt");
}

void kmain(void);
/* The checks run in a fixed order (the golden file's). Those a VMM tends to get wrong by
 * ending the run rather than by printing FAIL (16-bit gates, double faults) come last, so
 * everything before them still reports. */
void kmain(void)
{
    /* Before paging: the user code page is read-only once mapped (CR0.WP). */
    memcpy((void *)USER_CODE, __user_lma, (u32)__user_size);
    memset((void *)USER_DATA, 0, USER_STACK_TOP - USER_DATA);
    setup_tss();
    setup_idt();
    setup_paging();
    serial_puts("pmtest: protected mode, paging, rings, APIC\r\n");

    report("protected-mode-paging", check_pm_paging());
    report("idt-interrupt-gate-clears-if", check_gate(VEC_INTGATE, 0));
    report("idt-trap-gate-keeps-if", check_gate(VEC_TRAPGATE, EFLAGS_IF));
    report("ring3-iret-round-trips", check_ring3_round_trips());
    report("int80-dpl3-trap-gate", check_int80());
    report("int-dpl0-gate-from-ring3-gp", check_user_gp(user_int_dpl0, user_int_dpl0_at,
                                                          VEC_KONLY * 8 + 2));
    report("gp-bad-selector-ring0", check_gp_bad_selector());
    report("gp-kernel-ds-ring3", check_user_gp(user_load_kernel_ds, user_load_kernel_ds_at, KDATA));
    report("gp-hlt-ring3", check_user_gp(user_hlt, user_hlt_at, 0));
    report("gp-in-ring3", check_user_gp(user_in_port, user_in_port_at, 0));
    for (u32 i = 0; i < sizeof pf_cases / sizeof pf_cases[0]; i++)
        report(pf_cases[i].name, check_pf(i, &pf_cases[i]));
    report("sysenter-sysexit", check_sysenter());
    report("cpuid-apic-sep", check_cpuid());
    report("lapic-base-msr", check_lapic_base_msr());
    report("lapic-id-version", check_lapic_id_version());
    report("lapic-software-enable", check_lapic_enable());
    report("lapic-timer-periodic-preempts-ring3", check_timer_periodic());
    report("lapic-timer-one-shot", check_timer_oneshot());
    report("mp-table", check_mp_table());
    report("acpi-madt", check_madt());
    report("ioapic-registers", check_ioapic_registers());
    report("ioapic-irq14-ata-identify", check_ide_identify());
    report("ioapic-irq14-ata-read", check_ide_read());
    report("ioapic-irq1-8042-d2", check_kbd_irq());
    report("idt-16bit-gate", check_gate16());
    report("double-fault-ring0", check_double_fault_ring0());
    report("double-fault-ring3", check_double_fault_ring3());
    finish();
}
