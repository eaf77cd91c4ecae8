/* pmtest: the kernel's view of its own machine. Selectors, vectors, the fixed memory map,
 * the trap frame, and the few privileged instructions C needs as inline functions.
 *
 * The layout in memory (identity-mapped with 4 KiB pages; all below 640 KiB so it needs
 * neither A20 nor more than the BIOS's conventional memory):
 *   0x07C00  the image: boot sector, kernel text/rodata/data (linked here, < 64 KiB)
 *   after it .bss: page directory and tables, IDT, TSS, kernel/trap/sysenter stacks
 *   0x40000  user code (copied from the image; user, read-only)
 *   0x41000  user data page (user, read/write): flags the kernel and ring 3 share
 *   0x42000  user stack, 2 pages, top at 0x44000
 *   0x50000  test pages for the #PF checks, one per case
 * plus the LAPIC (0xFEE00000) and I/O APIC (0xFEC00000) pages, uncached, supervisor,
 * and a small window through which firmware tables anywhere in RAM are read. */
#ifndef PMTEST_H
#define PMTEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

/* GDT: sysenter/sysexit need kernel code, kernel data, user code, user data in this order. */
#define KCODE   0x08
#define KDATA   0x10
#define UCODE   0x1b            /* 0x18 | RPL 3 */
#define UDATA   0x23            /* 0x20 | RPL 3 */
#define TSS_SEL 0x28
#define CODE16  0x30            /* 16-bit ring-0 code, base 0, limit 64 KiB: the 16-bit gate */
#define BAD_SEL 0x1230          /* beyond the GDT limit */

/* Vectors. 0-31 are the CPU's; the rest are ours. */
#define VEC_DF          8
#define VEC_GP          13
#define VEC_PF          14
#define VEC_TIMER       0x20    /* LAPIC timer, periodic */
#define VEC_ONESHOT     0x21    /* LAPIC timer, one-shot */
#define VEC_KBD         0x31    /* I/O APIC: ISA IRQ 1 */
#define VEC_IDE         0x3e    /* I/O APIC: ISA IRQ 14 */
#define VEC_INTGATE     0x41    /* ring-0 interrupt gate */
#define VEC_TRAPGATE    0x42    /* ring-0 trap gate */
#define VEC_GATE16      0x43    /* 16-bit interrupt gate */
#define VEC_SYSCALL     0x80    /* DPL3 trap gate */
#define VEC_KONLY       0x81    /* DPL0 gate: int from ring 3 must #GP */
#define VEC_SPURIOUS    0xff

/* System calls through int $0x80: number in EAX, arguments in EBX ECX EDX ESI EDI, result in EAX. */
#define SYS_EXIT        0       /* leave ring 3; EBX becomes run_user()'s result */
#define SYS_MIX         1       /* EAX = EBX + 2*ECX + 3*EDX + 4*ESI + 5*EDI */
#define SYS_PROBE       2       /* the kernel checks the frame it was entered with */

/* run_user() results other than SYS_EXIT's argument: set by kernel handlers that end the run. */
#define RUN_TRAPPED     0xdead0000u   /* | vector: an exception ended the ring-3 run */
#define RUN_PREEMPTED   0x7100e000u   /* the timer took the CPU back */

/* Fixed memory. */
#define USER_CODE       0x40000u
#define USER_DATA       0x41000u
#define USER_STACK      0x42000u
#define USER_STACK_TOP  0x44000u
#define TEST_PAGES      0x50000u
#define N_TEST_PAGES    12
#define WINDOW          0x00400000u   /* 4 MiB: linear window onto any physical page (PDE 1) */
#define WINDOW_PAGES    4
#define LAPIC_BASE      0xfee00000u
#define IOAPIC_DEFAULT  0xfec00000u

/* Page table entry bits. */
#define PTE_P   0x001
#define PTE_W   0x002
#define PTE_U   0x004
#define PTE_PWT 0x008
#define PTE_PCD 0x010

/* #PF error code bits. */
#define PF_P 1
#define PF_W 2
#define PF_U 4

#define EFLAGS_IF  0x0200

/* What trap_common (entry.S) builds below the CPU's frame; esp/ss only from ring 3. */
struct trapframe {
    u32 gs, fs, es, ds;
    u32 edi, esi, ebp, esp_at_pusha, ebx, edx, ecx, eax;
    u32 vector, err;
    u32 eip, cs, eflags;
    u32 esp, ss;
};

/* The registers ring 3 starts with (run_user). */
struct uregs {
    u32 eax, ebx, ecx, edx, esi, edi, ebp;
    u32 eip, esp, eflags;
};

struct tss {
    u32 link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
    u32 eax, ecx, edx, ebx, esp, ebp, esi, edi, es, cs, ss, ds, fs, gs, ldt;
    u16 trap, iomap;
} __attribute__((packed));

/* entry.S */
extern u32 kcatch(u32 (*fn)(void *), void *arg);
extern void kthrow(u32 value) __attribute__((noreturn));
extern u32 enter_user(void *uregs);
extern void sysenter_entry(void);
extern void gate16_handler(void);
extern const u32 isr_table[][2];      /* {vector, stub address}, ends with {0, 0} */
extern u32 gate16_esp_seen;           /* ESP inside the 16-bit handler */
extern u16 gate16_frame[3];           /* the words it found there: IP, CS, FLAGS */
extern u32 sysenter_seen[4];          /* CS, SS, ESP, EFLAGS at sysenter_entry */
extern u32 kernel_stack_top[], trap_stack_top[], sysenter_stack_top[];

/* user.S: ring-3 routines, linked at USER_CODE (addresses valid after the copy). */
extern void user_probe_loop(void), user_syscall_mix(void), user_int_dpl0(void);
extern void user_load_kernel_ds(void), user_hlt(void), user_in_port(void);
extern void user_read(void), user_write(void), user_spin(void), user_wait_flag(void);
extern void user_sysenter(void);
extern char user_int_dpl0_at[], user_load_kernel_ds_at[], user_hlt_at[], user_in_port_at[];
extern char __user_lma[], __user_size[];     /* pmtest.ld: where user code is in the image */

/* ---- instructions ------------------------------------------------------------------------- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline u16 inw(u16 port)
{
    u16 v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline u32 read_eflags(void)
{
    u32 v;
    __asm__ volatile("pushfl; popl %0" : "=r"(v));
    return v;
}
static inline u32 read_cr0(void) { u32 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u32 read_cr2(void) { u32 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline u32 read_cr3(void) { u32 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline u32 read_cr4(void) { u32 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void write_cr0(u32 v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline void write_cr3(u32 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void invlpg(u32 lin) { __asm__ volatile("invlpg (%0)" : : "r"(lin) : "memory"); }
static inline u16 read_cs(void) { u16 v; __asm__ volatile("mov %%cs, %0" : "=r"(v)); return v; }
static inline u16 read_ss(void) { u16 v; __asm__ volatile("mov %%ss, %0" : "=r"(v)); return v; }
static inline u16 read_tr(void) { u16 v; __asm__ volatile("str %0" : "=r"(v)); return v; }
static inline u32 read_esp(void) { u32 v; __asm__ volatile("mov %%esp, %0" : "=r"(v)); return v; }

static inline u64 rdmsr(u32 msr)
{
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}
static inline void cpuid(u32 leaf, u32 r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(0));
}

#define MMIO32(a) (*(volatile u32 *)(a))

#endif
