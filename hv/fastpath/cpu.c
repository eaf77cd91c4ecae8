/* What the CPU does that Unicorn does not, in C because it is on the hot path:
 *
 *  - interrupt and exception delivery through the IVT or the IDT, at any privilege
 *    level: gate checks, the TSS stack switch for a ring change, 16- and 32-bit gates,
 *    error codes, nested faults escalating to #DF and to a triple fault;
 *  - MSRs: the engine has no MSR hook, so hv points its two MSR helpers here (see
 *    hv/cpu.py: a 14-byte jump at their entry, the displaced prologue in a trampoline);
 *  - CPUID from a table, RDTSC from hv's clock, SYSENTER.
 *
 * The Python twin is hv/irq.py (delivery) and hv/cpu.py (MSRs, CPUID, TSC): the
 * pure-Python dispatcher runs those; both pass the same guests.
 *
 * State is read from and written to the engine's context blob (a copy of QEMU's
 * CPUX86State; offsets are checked by hv/cpu.py at start-up): EIP goes through the
 * blob so the engine keeps syncing EIP for later hooks in the slice, CPL is lowered
 * there for a ring 3 -> 0 switch (a register write cannot do it), and old_exception is
 * reset so the next fault is not taken for a double fault. Segment registers and
 * EFLAGS go through uc_reg_write afterwards, which loads descriptor caches properly.
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef int (*uc_ctx_fn)(void *uc, void *ctx);
typedef int (*uc_reg_write_fn)(void *uc, int regid, const void *value);
typedef void (*raise_err_ra_fn)(void *env, int intno, int err, uintptr_t ra);
typedef void (*msr_helper_fn)(void *env);

/* Calls back into Python (cffi extern "Python"). */
void hv_py_cpu_fault(void *handle);
void hv_py_apic_base(void *handle);

enum { KIND_EXT = 0, KIND_SOFT = 1, KIND_EXC = 2 };
enum { FAULT_NONE = 0, FAULT_TRIPLE = 1, FAULT_UNSUPPORTED = 2, FAULT_MMIO_STACK = 3 };

#define CPUID_LEAVES 48

typedef struct {
    uint32_t leaf, subleaf, has_subleaf;
    uint32_t eax, ebx, ecx, edx;
} hv_cpuid_entry;

typedef struct hv_cpu {
    hv_ctl *ctl;                /* RAM pointer and code invalidation */
    void *uc;
    void *ctx;                  /* a preallocated uc_context */
    uint8_t *env;               /* its CPUX86State copy */
    void *ctx_save, *ctx_restore;       /* uc_context_save / uc_context_restore */
    void *reg_read;                     /* uc_reg_read */
    void *reg_write;                    /* uc_reg_write */
    /* Register ids (unicorn x86_const) and CPUX86State offsets, given by hv/cpu.py. */
    int32_t r_eflags, r_cs, r_ss, r_esp, r_msr;
    int32_t o_eip, o_eflags, o_hflags, o_segs, o_ldt, o_tr, o_gdt, o_idt, o_cr,
            o_error_code, o_is_int, o_next_eip, o_old_exception;
    /* What C counted (merged into hv run --stats). */
    uint64_t softints[256], exceptions[256], irqs[256];
    uint64_t deliveries, ring_changes;
    /* Why C gave up on a delivery (the host ends the run with this). */
    int32_t fault, fault_vector, first_vector;
    uint32_t fault_error, fault_eip;
    /* MSRs hv owns; the rest are the engine's, or #GP. */
    uint64_t apic_base;
    int64_t tsc_offset;         /* TSC = virtual ns * tsc_ghz_num/den + offset */
    int64_t clock_origin_ns;    /* CLOCK_MONOTONIC at virtual time 0 (wall clock mode) */
    int64_t virtual_ns;         /* with a virtual clock: its value (the host updates it) */
    int32_t virtual_clock;
    uint32_t engine_msrs[32];   /* MSRs the engine implements, passed through */
    int32_t n_engine_msrs;
    uint64_t unknown_msrs;      /* #GP raised for these */
    uint64_t msr_calls;
    int32_t apic_base_dirty;    /* a guest wrote IA32_APIC_BASE: the host must look */
    uint64_t io_denied;         /* IN/OUT refused by the I/O permission check (#GP) */
    void *handle;               /* for calls back into Python */
    hv_cpuid_entry cpuid[CPUID_LEAVES];
    int32_t n_cpuid;
    uint32_t cpuid_max_basic, cpuid_max_ext;
} hv_cpu;

/* The vCPU whose engine runs on this thread now (hv_enter before each emu_start):
 * the patched MSR helpers find their hv_cpu through it. */
static __thread hv_cpu *hv_current;

void hv_enter(hv_cpu *k) { hv_current = k; }

/* Engine functions hv/cpu.py hands over once per process: raising an exception from
 * inside a helper, and trampolines to the engine's own MSR helpers. */
static raise_err_ra_fn hv_raise_err_ra;
static msr_helper_fn hv_orig_rdmsr, hv_orig_wrmsr;

void hv_set_msr_helpers(void *raise_err_ra, void *orig_rdmsr, void *orig_wrmsr) {
    hv_raise_err_ra = (raise_err_ra_fn)raise_err_ra;
    hv_orig_rdmsr = (msr_helper_fn)orig_rdmsr;
    hv_orig_wrmsr = (msr_helper_fn)orig_wrmsr;
}

/* ---- the context blob ----------------------------------------------------------- */
/* The offsets hv/cpu.py checks at start-up (the I/O check reads the live state). */
#define ENV_EFLAGS 136
#define ENV_HFLAGS 176
#define ENV_TR 352
#define ENV_CR 424

#define U32(k, off) (*(uint32_t *)((k)->env + (off)))
#define U64(k, off) (*(uint64_t *)((k)->env + (off)))
#define I32(k, off) (*(int32_t *)((k)->env + (off)))
#define SEG_SEL(k, i)   U32(k, (k)->o_segs + 24 * (i))
#define SEG_BASE(k, i)  U64(k, (k)->o_segs + 24 * (i) + 8)
#define SEG_FLAGS(k, i) U32(k, (k)->o_segs + 24 * (i) + 20)
#define R_ES 0
#define R_CS 1
#define R_SS 2
#define CR(k, n) U64(k, (k)->o_cr + 8 * (n))
#define HF_CPL_MASK 3u
#define HF_INHIBIT_IRQ (1u << 3)
#define DESC_B (1u << 22)

#define IF_FLAG (1u << 9)
#define TF_FLAG (1u << 8)
#define NT_FLAG (1u << 14)
#define RF_FLAG (1u << 16)
#define VM_FLAG (1u << 17)
#define AC_FLAG (1u << 18)

static inline uint32_t cpl_of(hv_cpu *k) { return U32(k, k->o_hflags) & HF_CPL_MASK; }
static inline int protected_mode(hv_cpu *k) { return CR(k, 0) & 1; }

/* ---- linear memory: the guest's page tables, walked by the host ------------------
 * Returns 0 and the physical address, or -1 with the #PF error code the access
 * would raise. Sets Accessed (and Dirty for writes) as the MMU does; supervisor
 * access (delivery touches system structures and inner-ring stacks). */
#define PF_P 1u
#define PF_W 2u

static inline uint8_t *ram_at(hv_cpu *k, uint64_t phys, uint32_t n) {
    if (phys + n > k->ctl->ram_span || phys + n < phys)
        return 0;
    if (phys >= 0xA0000 && phys < 0x100000 && phys + n > 0xC0000)
        return 0;          /* ROM: read through the host copy only (see rdlin) */
    return k->ctl->ram + phys;
}

static int walk(hv_cpu *k, uint32_t lin, int write, uint64_t *phys, uint32_t *err) {
    uint64_t cr0 = CR(k, 0), cr3 = CR(k, 3), cr4 = CR(k, 4);
    if (!(cr0 & 0x80000000u)) {
        *phys = lin;
        return 0;
    }
    int wp = (cr0 >> 16) & 1;
    uint8_t *ram = k->ctl->ram;
    uint64_t span = k->ctl->ram_span;
    *err = write ? PF_W : 0;
    if (cr4 & 0x20) {                              /* PAE */
        uint64_t a = (cr3 & ~0x1Full) + (lin >> 30) * 8;
        if (a + 8 > span) return -1;
        uint64_t pdpte = *(uint64_t *)(ram + a);
        if (!(pdpte & 1)) return -1;
        a = (pdpte & 0x000FFFFFFFFFF000ull) + ((lin >> 21) & 0x1FF) * 8;
        if (a + 8 > span) return -1;
        uint64_t *pde = (uint64_t *)(ram + a);
        if (!(*pde & 1)) return -1;
        if (write && wp && !(*pde & 2)) { *err |= PF_P; return -1; }
        if (*pde & 0x80) {
            *pde |= write ? 0x60 : 0x20;
            *phys = (*pde & 0x000FFFFFFFE00000ull) | (lin & 0x1FFFFF);
            return 0;
        }
        a = (*pde & 0x000FFFFFFFFFF000ull) + ((lin >> 12) & 0x1FF) * 8;
        if (a + 8 > span) return -1;
        uint64_t *pte = (uint64_t *)(ram + a);
        if (!(*pte & 1)) return -1;
        if (write && wp && !(*pte & 2)) { *err |= PF_P; return -1; }
        *pde |= 0x20;
        *pte |= write ? 0x60 : 0x20;
        *phys = (*pte & 0x000FFFFFFFFFF000ull) | (lin & 0xFFF);
        return 0;
    }
    uint64_t a = (cr3 & ~0xFFFull) + (lin >> 22) * 4;
    if (a + 4 > span) return -1;
    uint32_t *pde = (uint32_t *)(ram + a);
    if (!(*pde & 1)) return -1;
    if (write && wp && !(*pde & 2)) { *err |= PF_P; return -1; }
    if ((cr4 & 0x10) && (*pde & 0x80)) {
        *pde |= write ? 0x60 : 0x20;
        *phys = (*pde & 0xFFC00000u) | ((uint64_t)((*pde >> 13) & 0xFF) << 32) | (lin & 0x3FFFFF);
        return 0;
    }
    a = (*pde & ~0xFFFu) + ((lin >> 12) & 0x3FF) * 4;
    if (a + 4 > span) return -1;
    uint32_t *pte = (uint32_t *)(ram + a);
    if (!(*pte & 1)) return -1;
    if (write && wp && !(*pte & 2)) { *err |= PF_P; return -1; }
    *pde |= 0x20;
    *pte |= write ? 0x60 : 0x20;
    *phys = (*pte & ~0xFFFu) | (lin & 0xFFF);
    return 0;
}

/* A delivery step that failed raises one of these, carried back up to deliver(). */
typedef struct {
    int32_t vector;             /* -1: none */
    uint32_t error;
    uint32_t cr2;
    int32_t has_cr2;
} pending_fault;

static inline void raise_fault(pending_fault *f, int vector, uint32_t error) {
    if (f->vector < 0) {
        f->vector = vector;
        f->error = error;
    }
}

static int rdlin(hv_cpu *k, uint32_t lin, void *out, uint32_t n, pending_fault *f) {
    uint8_t *o = (uint8_t *)out;
    while (n) {
        uint32_t chunk = 0x1000 - (lin & 0xFFF);
        if (chunk > n) chunk = n;
        uint64_t phys; uint32_t err;
        if (walk(k, lin, 0, &phys, &err) < 0) {
            raise_fault(f, 14, err);
            f->cr2 = lin; f->has_cr2 = 1;
            return -1;
        }
        if (phys + chunk > k->ctl->ram_span) {     /* nothing readable there */
            memset(o, 0xFF, chunk);
        } else {
            memcpy(o, k->ctl->ram + phys, chunk);  /* the host buffer mirrors ROM too */
        }
        o += chunk; lin += chunk; n -= chunk;
    }
    return 0;
}

void hv_invalidate_phys(hv_ctl *c, uint64_t lo, uint64_t hi);

static int wrlin(hv_cpu *k, uint32_t lin, const void *data, uint32_t n, pending_fault *f) {
    const uint8_t *d = (const uint8_t *)data;
    while (n) {
        uint32_t chunk = 0x1000 - (lin & 0xFFF);
        if (chunk > n) chunk = n;
        uint64_t phys; uint32_t err;
        if (walk(k, lin, 1, &phys, &err) < 0) {
            raise_fault(f, 14, err);
            f->cr2 = lin; f->has_cr2 = 1;
            return -1;
        }
        uint8_t *p = ram_at(k, phys, chunk);
        if (!p) {                       /* a stack in ROM or MMIO: the run ends */
            k->fault = FAULT_MMIO_STACK;
            return -2;
        }
        memcpy(p, d, chunk);
        hv_invalidate_phys(k->ctl, phys, phys + chunk);
        d += chunk; lin += chunk; n -= chunk;
    }
    return 0;
}

/* ---- descriptors ------------------------------------------------------------------ */
typedef struct { uint32_t lo, hi; } desc_t;

static inline uint32_t desc_base(desc_t d) {
    return (d.lo >> 16) | ((d.hi & 0xFF) << 16) | (d.hi & 0xFF000000u);
}
static inline uint32_t desc_limit(desc_t d) {
    uint32_t l = (d.lo & 0xFFFF) | (d.hi & 0xF0000);
    return (d.hi & (1u << 23)) ? (l << 12) | 0xFFF : l;
}
static inline int desc_dpl(desc_t d) { return (d.hi >> 13) & 3; }
static inline int desc_present(desc_t d) { return (d.hi >> 15) & 1; }
static inline int desc_type(desc_t d) { return (d.hi >> 8) & 0xF; }
static inline int desc_s(desc_t d) { return (d.hi >> 12) & 1; }

/* The descriptor a selector names (GDT or LDT); -1 with #GP(selector) if beyond the
 * table, or a #PF if the table is not mapped. */
static int load_desc(hv_cpu *k, uint32_t sel, desc_t *d, pending_fault *f, int ext) {
    int o = (sel & 4) ? k->o_ldt : k->o_gdt;
    uint32_t base = (uint32_t)U64(k, o + 8), limit = U32(k, o + 16);
    if ((sel & ~7u) + 7 > limit) {
        raise_fault(f, 13, (sel & 0xFFFC) | ext);
        return -1;
    }
    return rdlin(k, base + (sel & ~7u), d, 8, f);
}

/* ---- delivery ---------------------------------------------------------------------- */
static inline int contributory(int v) { return v == 0 || (v >= 10 && v <= 13); }

static void blob_save(hv_cpu *k) { ((uc_ctx_fn)k->ctx_save)(k->uc, k->ctx); }
static void blob_restore(hv_cpu *k) { ((uc_ctx_fn)k->ctx_restore)(k->uc, k->ctx); }
#define REG_READ(k, id, p) ((uc_reg_read_fn)(k)->reg_read)((k)->uc, (id), (p))
#define REG_WRITE(k, id, p) ((uc_reg_write_fn)(k)->reg_write)((k)->uc, (id), (p))

/* Commit: EIP, CPL and old_exception through the blob, then the registers that need
 * descriptor loads. */
static void commit(hv_cpu *k, uint32_t eip, int new_cpl, uint32_t ss, uint32_t cs,
                   uint32_t esp, uint32_t eflags, int load_ss) {
    U64(k, k->o_eip) = eip;
    uint32_t hf = U32(k, k->o_hflags) & ~HF_INHIBIT_IRQ;
    if (new_cpl >= 0)
        hf = (hf & ~HF_CPL_MASK) | (uint32_t)new_cpl;
    U32(k, k->o_hflags) = hf;
    I32(k, k->o_old_exception) = -1;
    blob_restore(k);
    uint64_t v;
    if (load_ss) {
        v = ss;
        REG_WRITE(k, k->r_ss, &v);
    }
    v = cs;
    REG_WRITE(k, k->r_cs, &v);
    v = esp;
    REG_WRITE(k, k->r_esp, &v);
    v = eflags;
    REG_WRITE(k, k->r_eflags, &v);
}

static int deliver_real(hv_cpu *k, int vector, uint32_t eip, uint32_t eflags, pending_fault *f) {
    uint32_t idt = (uint32_t)U64(k, k->o_idt + 8), limit = U32(k, k->o_idt + 16);
    if ((uint32_t)vector * 4 + 3 > limit) {
        raise_fault(f, 13, vector * 8 + 2);
        return -1;
    }
    uint16_t ivt[2];
    if (rdlin(k, idt + vector * 4, ivt, 4, f) < 0)
        return -1;
    uint32_t ss_base = (uint32_t)SEG_BASE(k, R_SS);
    uint16_t sp = (uint16_t)U64(k, 4 * 8);
    uint16_t frame[3] = { (uint16_t)eip, (uint16_t)SEG_SEL(k, R_CS), (uint16_t)eflags };
    for (int i = 2; i >= 0; i--) {          /* push FLAGS, CS, IP; wraps in the segment */
        sp -= 2;
        if (wrlin(k, ss_base + sp, &frame[i], 2, f) < 0)
            return -1;
    }
    uint32_t esp = (U32(k, 4 * 8) & 0xFFFF0000u) | sp;
    commit(k, ivt[0], -1, 0, ivt[1], esp, eflags & ~(IF_FLAG | TF_FLAG | AC_FLAG), 0);
    return 0;
}

static int deliver_protected(hv_cpu *k, int vector, int kind, int has_err, uint32_t err,
                             uint32_t eip, uint32_t eflags, pending_fault *f) {
    int ext = kind == KIND_EXT ? 1 : 0;      /* EXT bit of error codes raised here */
    uint32_t idt = (uint32_t)U64(k, k->o_idt + 8), limit = U32(k, k->o_idt + 16);
    if ((uint32_t)vector * 8 + 7 > limit) {
        raise_fault(f, 13, vector * 8 + 2 + ext);
        return -1;
    }
    desc_t gate;
    if (rdlin(k, idt + vector * 8, &gate, 8, f) < 0)
        return -1;
    int type = desc_type(gate), cpl = (int)cpl_of(k);
    if (type == 5) {                          /* task gate: a hardware task switch */
        k->fault = FAULT_UNSUPPORTED;
        return -2;
    }
    if (type != 0xE && type != 0xF && type != 6 && type != 7) {
        raise_fault(f, 13, vector * 8 + 2 + ext);
        return -1;
    }
    if (kind == KIND_SOFT && desc_dpl(gate) < cpl) {
        raise_fault(f, 13, vector * 8 + 2);
        return -1;
    }
    if (!desc_present(gate)) {
        raise_fault(f, 11, vector * 8 + 2 + ext);
        return -1;
    }
    uint32_t sel = gate.lo >> 16;
    uint32_t offset = (gate.hi & 0xFFFF0000u) | (gate.lo & 0xFFFF);
    int gate32 = type >= 0xE;
    if (!gate32)
        offset &= 0xFFFF;
    if ((sel & ~3u) == 0) {
        raise_fault(f, 13, ext);
        return -1;
    }
    desc_t code;
    if (load_desc(k, sel, &code, f, ext) < 0)
        return -1;
    int dpl = desc_dpl(code);
    if (!desc_s(code) || !(desc_type(code) & 8) || dpl > cpl) {
        raise_fault(f, 13, (sel & 0xFFFC) + ext);
        return -1;
    }
    if (!desc_present(code)) {
        raise_fault(f, 11, (sel & 0xFFFC) + ext);
        return -1;
    }
    if (eflags & VM_FLAG) {                   /* virtual-8086 mode is not offered */
        k->fault = FAULT_UNSUPPORTED;
        return -2;
    }
    int conforming = desc_type(code) & 4;
    uint32_t old_ss = SEG_SEL(k, R_SS), old_esp = U32(k, 4 * 8);
    uint32_t new_ss = old_ss, new_esp = old_esp, ss_base;
    int ring_change = !conforming && dpl < cpl;
    if (ring_change) {
        /* The inner stack from the TSS: SS0:ESP0 (or 1, 2) for a 32-bit TSS. */
        uint32_t tr_base = (uint32_t)U64(k, k->o_tr + 8), tr_limit = U32(k, k->o_tr + 16);
        int tss32 = (U32(k, k->o_tr + 20) >> 8 & 0xF) >= 9;
        uint32_t at = tss32 ? 4 + 8 * dpl : 2 + 4 * dpl, n = tss32 ? 8 : 4;
        if (at + n - 1 > tr_limit) {
            raise_fault(f, 10, (U32(k, k->o_tr) & 0xFFFC) + ext);   /* #TS(TSS) */
            return -1;
        }
        uint8_t buf[8];
        if (rdlin(k, tr_base + at, buf, n, f) < 0)
            return -1;
        if (tss32) {
            memcpy(&new_esp, buf, 4);
            new_ss = buf[4] | (buf[5] << 8);
        } else {
            new_esp = buf[0] | (buf[1] << 8);
            new_ss = buf[2] | (buf[3] << 8);
        }
        desc_t ssd;
        if ((new_ss & ~3u) == 0 || (new_ss & 3) != (uint32_t)dpl) {
            raise_fault(f, 10, (new_ss & 0xFFFC) + ext);
            return -1;
        }
        if (load_desc(k, new_ss, &ssd, f, ext) < 0) {
            if (f->vector == 13) { f->vector = 10; }
            return -1;
        }
        if (!desc_s(ssd) || (desc_type(ssd) & 0xA) != 2 || desc_dpl(ssd) != dpl) {
            raise_fault(f, 10, (new_ss & 0xFFFC) + ext);
            return -1;
        }
        if (!desc_present(ssd)) {
            raise_fault(f, 12, (new_ss & 0xFFFC) + ext);
            return -1;
        }
        ss_base = desc_base(ssd);
        if (!(ssd.hi & DESC_B))
            new_esp &= 0xFFFF;
    } else {
        ss_base = (uint32_t)SEG_BASE(k, R_SS);
        dpl = cpl;                            /* conforming: stays at the current CPL */
    }
    /* The frame, highest address first: [SS ESP] EFLAGS CS EIP [error code]. */
    uint32_t frame[6];
    int n = 0;
    if (ring_change) {
        frame[n++] = old_ss;
        frame[n++] = old_esp;
    }
    frame[n++] = eflags;
    frame[n++] = SEG_SEL(k, R_CS);
    frame[n++] = eip;
    if (has_err)
        frame[n++] = err;
    int w = gate32 ? 4 : 2;
    uint32_t esp = new_esp;
    int ss32 = ring_change ? 1 : (SEG_FLAGS(k, R_SS) & DESC_B) != 0;
    for (int i = 0; i < n; i++) {
        esp -= w;
        uint32_t at = ss32 ? esp : (esp & 0xFFFF);
        if (wrlin(k, ss_base + at, &frame[i], w, f) < 0)
            return -1;
    }
    if (!ss32)
        esp = (new_esp & 0xFFFF0000u) | (esp & 0xFFFF);
    uint32_t clear = TF_FLAG | NT_FLAG | RF_FLAG | VM_FLAG | ((type & 1) ? 0 : IF_FLAG);
    uint32_t new_cs = (sel & 0xFFFC) | (uint32_t)dpl;
    commit(k, offset, ring_change ? dpl : -1, (new_ss & 0xFFFC) | (uint32_t)dpl, new_cs, esp,
           eflags & ~clear, ring_change);
    if (ring_change)
        k->ring_changes++;
    return 0;
}

/* Deliver `vector` as the CPU does. kind: external interrupt, software interrupt
 * (`int n`: gate DPL checked) or exception (error code pushed when has_err). `eip` is
 * the return address the frame gets; `fault_eip` the one a fault raised while
 * delivering gets (the `int n` instruction itself, for a software interrupt). A fault
 * while delivering is delivered in its turn, escalating to #DF by the SDM's table and
 * to a triple fault (k->fault = FAULT_TRIPLE) when #DF itself cannot be delivered.
 * Returns 0 when the guest is at a handler, -1 when the host must end the run. */
int hv_deliver(hv_cpu *k, int vector, int kind, int has_err, uint32_t err, uint32_t eip,
               uint32_t fault_eip) {
    k->fault = FAULT_NONE;
    k->first_vector = vector;
    blob_save(k);
    uint64_t fl = 0;
    REG_READ(k, k->r_eflags, &fl);
    for (int attempt = 0; attempt < 4; attempt++) {
        pending_fault f = { -1, 0, 0, 0 };
        int r = protected_mode(k)
            ? deliver_protected(k, vector, kind, has_err, err, eip, (uint32_t)fl, &f)
            : deliver_real(k, vector, eip, (uint32_t)fl, &f);
        if (r == 0) {
            k->deliveries++;
            return 0;
        }
        k->fault_vector = vector;
        k->fault_error = err;
        k->fault_eip = eip;
        if (r == -2 || f.vector < 0)
            return -1;
        /* Delivery faulted: CR2 for a #PF, then the double-fault rules (SDM 6.15). */
        if (f.has_cr2)
            CR(k, 2) = f.cr2;
        int next = f.vector;
        if (vector == 8 && kind == KIND_EXC) {
            k->fault = FAULT_TRIPLE;
            k->fault_vector = next;
            return -1;
        }
        if (kind == KIND_EXC && ((contributory(vector) && contributory(next))
                                 || (vector == 14 && (next == 14 || contributory(next))))) {
            next = 8;
            f.error = 0;
        }
        vector = next;
        kind = KIND_EXC;
        has_err = next == 8 || (next >= 10 && next <= 14) || next == 17;
        err = f.error;
        eip = fault_eip;              /* a fault points at the instruction */
    }
    k->fault = FAULT_TRIPLE;
    return -1;
}

/* The engine's UC_HOOK_INTR: `int n`, `int3`, `into` and CPU exceptions. EIP is past
 * the instruction for the first three, at the faulting one for exceptions. */
void hv_intr_hook(void *uc, uint32_t intno, void *ud) {
    hv_cpu *k = (hv_cpu *)ud;
    blob_save(k);
    int soft = I32(k, k->o_is_int) != 0;
    uint32_t eip = (uint32_t)U64(k, k->o_eip);
    int has_err = 0;
    uint32_t err = 0;
    if (soft) {
        k->softints[intno & 0xFF]++;
    } else {
        k->exceptions[intno & 0xFF]++;
        if (protected_mode(k) && (intno == 8 || (intno >= 10 && intno <= 14) || intno == 17)) {
            has_err = 1;
            err = U32(k, k->o_error_code);
        }
    }
    uint32_t at = eip;
    if (soft) {                    /* where the `int n`/int3/into/int1 starts */
        uint8_t b[2];
        pending_fault f = { -1, 0, 0, 0 };
        uint32_t cs = (uint32_t)SEG_BASE(k, R_CS);
        at = eip - 1;
        if (rdlin(k, cs + eip - 2, b, 2, &f) == 0 && b[0] == 0xCD && b[1] == (intno & 0xFF))
            at = eip - 2;
    }
    if (hv_deliver(k, (int)intno, soft ? KIND_SOFT : KIND_EXC, has_err, err, eip, at) < 0)
        hv_py_cpu_fault(k->handle);
}

/* ---- MSRs ---------------------------------------------------------------------------- */
#define MSR_TSC 0x10
#define MSR_APIC_BASE 0x1B

static inline int64_t virtual_now(hv_cpu *k) {
    if (k->virtual_clock)          /* the Python dispatcher's virtual clock, set per slice */
        return k->virtual_ns;
    return hv_clock_source(k->ctl) - k->clock_origin_ns;
}

/* The TSC runs at 1 GHz of virtual time: consistent with the PIT, the APIC timer and
 * the RTC, which all read the same clock. */
uint64_t hv_tsc(hv_cpu *k) { return (uint64_t)(virtual_now(k) + k->tsc_offset); }

static int engine_msr(hv_cpu *k, uint32_t msr) {
    for (int i = 0; i < k->n_engine_msrs; i++)
        if (k->engine_msrs[i] == msr)
            return 1;
    return 0;
}

#define ENV_REG(env, i) (*(uint64_t *)((uint8_t *)(env) + 8 * (i)))

void hv_rdmsr(void *env) {
    hv_cpu *k = hv_current;
    if (!k) {                      /* an engine hv does not run as a PC (a container) */
        hv_orig_rdmsr(env);
        return;
    }
    uint32_t msr = (uint32_t)ENV_REG(env, 1);
    uint64_t v;
    k->msr_calls++;
    switch (msr) {
    case MSR_TSC:
        v = hv_tsc(k);
        break;
    case MSR_APIC_BASE:
        v = k->apic_base;
        break;
    default:
        if (engine_msr(k, msr)) {
            hv_orig_rdmsr(env);
            return;
        }
        k->unknown_msrs++;
        hv_raise_err_ra(env, 13, 0, (uintptr_t)__builtin_return_address(0));
        return;
    }
    ENV_REG(env, 0) = (uint32_t)v;
    ENV_REG(env, 2) = (uint32_t)(v >> 32);
}

#define APIC_BASE_WRITABLE ((1ull << 8) | (1ull << 11) | 0xFFFFFF000ull)

void hv_wrmsr(void *env) {
    hv_cpu *k = hv_current;
    if (!k) {
        hv_orig_wrmsr(env);
        return;
    }
    uint32_t msr = (uint32_t)ENV_REG(env, 1);
    uint64_t v = (uint32_t)ENV_REG(env, 0) | ((uint64_t)(uint32_t)ENV_REG(env, 2) << 32);
    k->msr_calls++;
    switch (msr) {
    case MSR_TSC:
        k->tsc_offset = (int64_t)v - virtual_now(k);
        return;
    case MSR_APIC_BASE:
        /* Reserved bits (0-7, 9, 10 = x2APIC, not offered, and above bit 35) are #GP. */
        if (v & ~APIC_BASE_WRITABLE) {
            hv_raise_err_ra(env, 13, 0, (uintptr_t)__builtin_return_address(0));
            return;
        }
        k->apic_base = v;
        k->apic_base_dirty = 1;
        hv_py_apic_base(k->handle);
        return;
    default:
        if (engine_msr(k, msr)) {
            hv_orig_wrmsr(env);
            return;
        }
        k->unknown_msrs++;
        hv_raise_err_ra(env, 13, 0, (uintptr_t)__builtin_return_address(0));
        return;
    }
}

/* ---- CPUID, RDTSC, SYSENTER hooks ------------------------------------------------------- */
static int reg_u32(hv_cpu *k, int id, uint32_t *out) {
    uint64_t v = 0;
    int r = REG_READ(k, id, &v);
    *out = (uint32_t)v;
    return r;
}

int32_t hv_cpuid_ids[4];        /* EAX EBX ECX EDX register ids, set once */

/* UC_HOOK_INSN for CPUID: answer from hv's table (returning 1 skips the engine's own). */
int hv_cpuid_hook(void *uc, void *ud) {
    hv_cpu *k = (hv_cpu *)ud;
    uint32_t leaf, sub;
    reg_u32(k, hv_cpuid_ids[0], &leaf);
    reg_u32(k, hv_cpuid_ids[2], &sub);
    uint32_t out[4] = { 0, 0, 0, 0 };
    uint32_t max = leaf >= 0x80000000u ? k->cpuid_max_ext : (leaf >= 0x40000000u ? 0x40000001u
                                                                       : k->cpuid_max_basic);
    if (leaf > max && leaf < 0x40000000u)
        leaf = k->cpuid_max_basic;           /* as Intel CPUs answer out-of-range leaves */
    for (int i = 0; i < k->n_cpuid; i++) {
        hv_cpuid_entry *e = &k->cpuid[i];
        if (e->leaf == leaf && (!e->has_subleaf || e->subleaf == sub)) {
            out[0] = e->eax; out[1] = e->ebx; out[2] = e->ecx; out[3] = e->edx;
            break;
        }
    }
    if (leaf == 1 && !(k->apic_base & (1u << 11)))
        out[3] &= ~(1u << 9);               /* a globally disabled APIC is not there */
    for (int i = 0; i < 4; i++) {
        uint64_t v = out[i];
        REG_WRITE(k, hv_cpuid_ids[i], &v);
    }
    return 1;
}

/* UC_HOOK_INSN for RDTSC: EDX:EAX from hv's clock. */
int hv_rdtsc_hook(void *uc, void *ud) {
    hv_cpu *k = (hv_cpu *)ud;
    uint64_t t = hv_tsc(k), lo = (uint32_t)t, hi = t >> 32;
    REG_WRITE(k, hv_cpuid_ids[0], &lo);
    REG_WRITE(k, hv_cpuid_ids[3], &hi);
    return 1;
}

/* UC_HOOK_INSN for SYSENTER: the engine's helper only calls hooks and then adds the
 * instruction length to EIP, so hv does the privilege change: CS = SYSENTER_CS, SS =
 * CS + 8, ring 0, ESP/EIP from their MSRs, VM/IF/RF cleared. */
void hv_sysenter_hook(void *uc, void *ud) {
    hv_cpu *k = (hv_cpu *)ud;
    uint64_t msr[2];
    uint32_t cs, esp, eip;
    msr[0] = 0x174; REG_READ(k, k->r_msr, msr); cs = (uint32_t)msr[1];
    msr[0] = 0x175; REG_READ(k, k->r_msr, msr); esp = (uint32_t)msr[1];
    msr[0] = 0x176; REG_READ(k, k->r_msr, msr); eip = (uint32_t)msr[1];
    blob_save(k);
    uint64_t fl = 0;
    REG_READ(k, k->r_eflags, &fl);
    if (!protected_mode(k) || (cs & 0xFFFC) == 0) {
        /* #GP(0): deliver it with EIP at the sysenter (the helper adds 2 afterwards) */
        uint32_t at = (uint32_t)U64(k, k->o_eip);
        k->exceptions[13]++;
        if (hv_deliver(k, 13, KIND_EXC, 1, 0, at, at) < 0) {
            hv_py_cpu_fault(k->handle);
            return;
        }
        blob_save(k);
        U64(k, k->o_eip) -= 2;
        blob_restore(k);
        return;
    }
    commit(k, eip - 2, 0, (cs + 8) & 0xFFFC, cs & 0xFFFC, esp,
           (uint32_t)fl & ~(VM_FLAG | IF_FLAG | RF_FLAG), 1);
}


/* ---- I/O permission (SDM Vol. 1 §18.5) ----------------------------------------------------
 * The engine lets every IN/OUT through (its translator skips QEMU's check), so hv puts a
 * check in front of the engine's six port helpers: in protected mode with CPL > IOPL (or
 * in virtual-8086 mode) the TSS I/O bitmap decides, and a denied access is #GP(0) raised
 * from inside the helper with the translated block's return address, so the engine
 * rewinds EIP to the IN/OUT exactly (nothing after it has run; no device saw it).
 * The stubs are assembly so the jump to the engine's helper keeps the stack as the
 * translated code left it: the helper reads its caller's address from there. */
__attribute__((visibility("hidden"))) uintptr_t hv_orig_io[6];

static int read_env_lin(uint8_t *env, hv_ctl *ctl, uint32_t lin, void *out, uint32_t n) {
    hv_cpu probe;                      /* a walker over the live state (only these fields) */
    probe.env = env;
    probe.ctl = ctl;
    probe.o_cr = ENV_CR;
    uint8_t *o = (uint8_t *)out;
    while (n) {
        uint32_t chunk = 0x1000 - (lin & 0xFFF);
        if (chunk > n) chunk = n;
        uint64_t phys; uint32_t err;
        if (walk(&probe, lin, 0, &phys, &err) < 0 || phys + chunk > ctl->ram_span)
            return -1;
        memcpy(o, ctl->ram + phys, chunk);
        o += chunk; lin += chunk; n -= chunk;
    }
    return 0;
}

__attribute__((visibility("hidden")))
void hv_io_check(uint8_t *env, uint32_t port, uint32_t size, uintptr_t ra) {
    hv_cpu *k = hv_current;
    if (!k || !(*(uint64_t *)(env + ENV_CR) & 1))
        return;                                     /* real mode: no check */
    uint32_t eflags = (uint32_t)*(uint64_t *)(env + ENV_EFLAGS);
    uint32_t cpl = *(uint32_t *)(env + ENV_HFLAGS) & HF_CPL_MASK;
    if (!(eflags & VM_FLAG) && cpl <= ((eflags >> 12) & 3))
        return;
    /* The bitmap: its offset at TSS+0x66, one bit per port, every bit of the access clear. */
    uint32_t tr_base = (uint32_t)*(uint64_t *)(env + ENV_TR + 8);
    uint32_t tr_limit = *(uint32_t *)(env + ENV_TR + 16);
    uint16_t map = 0, bits = 0xFFFF;
    port &= 0xFFFF;
    if (tr_limit >= 0x67 && read_env_lin(env, k->ctl, tr_base + 0x66, &map, 2) == 0
            && (uint32_t)map + port / 8 + 1 <= tr_limit
            && read_env_lin(env, k->ctl, tr_base + map + port / 8, &bits, 2) == 0
            && !((bits >> (port & 7)) & ((1u << size) - 1)))
        return;
    k->io_denied++;
    hv_raise_err_ra(env, 13, 0, ra);
}

/* The stubs are assembly; C (and cffi's wrappers) see them through these prototypes. */
void hv_inb(void); void hv_inw(void); void hv_inl(void);
void hv_outb(void); void hv_outw(void); void hv_outl(void);

#define IO_STUB(name, index, size)                                              \
    __asm__(".text\n.globl " #name "\n.type " #name ",@function\n" #name ":\n"  \
            "push %rdi\npush %rsi\npush %rdx\n"                                 \
            "mov $" #size ", %edx\n"                                            \
            "mov 24(%rsp), %rcx\n"                                              \
            "call hv_io_check\n"                                                \
            "pop %rdx\npop %rsi\npop %rdi\n"                                    \
            "jmp *hv_orig_io+" #index "*8(%rip)\n"                              \
            ".size " #name ", .-" #name "\n");
IO_STUB(hv_inb, 0, 1)
IO_STUB(hv_inw, 1, 2)
IO_STUB(hv_inl, 2, 4)
IO_STUB(hv_outb, 3, 1)
IO_STUB(hv_outw, 4, 2)
IO_STUB(hv_outl, 5, 4)

void hv_set_io_helpers(void *inb, void *inw, void *inl, void *outb, void *outw, void *outl) {
    hv_orig_io[0] = (uintptr_t)inb; hv_orig_io[1] = (uintptr_t)inw; hv_orig_io[2] = (uintptr_t)inl;
    hv_orig_io[3] = (uintptr_t)outb; hv_orig_io[4] = (uintptr_t)outw; hv_orig_io[5] = (uintptr_t)outl;
}
