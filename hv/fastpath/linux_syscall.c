/* The process container's system-call entry (hv/container/engine.py).
 *
 * A ring-3 `int $0x80` reaches lx_intr, registered with uc_hook_add as a
 * UC_HOOK_INTR callback: EIP already points past the instruction, so answering
 * a call is one register write. The hottest calls are answered here from the
 * running process's lx_proc (ids, and write() to an fd that is /dev/null);
 * every other call goes to the Python table (hv/container/linux_abi.py) in one
 * extern "Python" call carrying the number and the six argument registers.
 * Calls are counted per number here, whichever side answers them.
 *
 * lx_block_hook ends a time slice exactly at a block start (docs/unicorn.md §3): when the
 * host sets `kick`, or every LX_CHECK_EVERY blocks once the slice's deadline
 * has passed. Any other vector (a fault, a stray `int n`) and any port I/O at
 * CPL3 stop the engine with the vector recorded; Python turns it into a signal.
 */
#include <stdint.h>
#include <time.h>

#define LX_NR_COUNTED 512
#define LX_FDS_C 1024           /* fds whose /dev/null bit lives in lx_proc */
#define LX_CHECK_EVERY 256      /* blocks between two clock reads (a read costs ~30 ns here) */
#define LX_MAX_RW 0x7FFFF000u   /* Linux's MAX_RW_COUNT */

enum { LX_STOP_NONE, LX_STOP_KICK, LX_STOP_SLICE, LX_STOP_FAULT, LX_STOP_PY };
/* argument registers in the order of lx_engine.regs */
enum { LX_EAX, LX_EBX, LX_ECX, LX_EDX, LX_ESI, LX_EDI, LX_EBP, LX_EIP };

typedef int (*lx_reg_fn)(void *uc, int regid, void *value);
typedef int (*lx_stop_fn)(void *uc);

/* What the C side needs of one guest process; owned by hv.container.process. */
typedef struct {
    uint32_t pid, tid, ppid, uid, gid, euid, egid;
    uint8_t devnull_w[LX_FDS_C / 8];  /* bit fd: fd is /dev/null, open for writing */
    uint64_t calls[LX_NR_COUNTED];    /* calls per number (larger numbers: Python counts) */
} lx_proc;

/* One Unicorn engine's entry state; owned by hv.container.engine.Engine. */
typedef struct {
    void *reg_read, *reg_write, *emu_stop;
    int32_t regs[8];            /* Unicorn ids of EAX EBX ECX EDX ESI EDI EBP EIP */
    lx_proc *proc;              /* the attached process */
    void *handle;               /* the Python Engine (cffi handle) */
    int32_t fast;               /* answer the hot calls here (off under strace) */
    volatile int32_t kick;      /* the host wants the engine back */
    int32_t stop_reason;
    int32_t fault_vector;
    int32_t fault_pending;      /* a fault seen where stopping is unsafe: stop at the next chance */
    int64_t deadline_ns;        /* CLOCK_MONOTONIC end of the slice; 0 = none */
    int32_t countdown;
    int32_t py_stop;            /* set by Python: stop after this call */
    int32_t py_restart;         /* set by Python: the call blocks; run it again on resume */
    uint64_t n_c, n_py;
} lx_engine;

uint32_t lx_py_syscall(void *handle, uint32_t nr, uint32_t *args);

int64_t lx_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void lx_stop(lx_engine *e, void *uc, int reason) {
    e->stop_reason = reason;
    ((lx_stop_fn)e->emu_stop)(uc);
}

void lx_block_hook(void *uc, uint64_t addr, uint32_t size, void *ud) {
    lx_engine *e = (lx_engine *)ud;
    (void)addr; (void)size;
    if (e->kick) {
        e->kick = 0;
        lx_stop(e, uc, e->fault_pending ? LX_STOP_FAULT : LX_STOP_KICK);
    } else if (e->deadline_ns && --e->countdown <= 0) {
        e->countdown = LX_CHECK_EVERY;
        if (lx_now_ns() >= e->deadline_ns)
            lx_stop(e, uc, LX_STOP_SLICE);
    }
}

/* The C answer to call nr, or 0 with *done unset when Python must answer. */
static inline uint32_t lx_fast(lx_engine *e, void *uc, uint32_t nr, int *done) {
    lx_proc *p = e->proc;
    lx_reg_fn rd = (lx_reg_fn)e->reg_read;
    *done = 1;
    switch (nr) {
    case 20: return p->pid;                 /* getpid */
    case 224: return p->tid;                /* gettid */
    case 64: return p->ppid;                /* getppid */
    case 24: case 199: return p->uid;       /* getuid, getuid32 */
    case 47: case 200: return p->gid;       /* getgid, getgid32 */
    case 49: case 201: return p->euid;      /* geteuid, geteuid32 */
    case 50: case 202: return p->egid;      /* getegid, getegid32 */
    case 4: {                               /* write(fd, buf, n) to /dev/null */
        uint32_t fd = 0, buf = 0, n = 0;
        rd(uc, e->regs[LX_EBX], &fd);
        if (fd < LX_FDS_C && (p->devnull_w[fd >> 3] >> (fd & 7) & 1)) {
            rd(uc, e->regs[LX_ECX], &buf);
            rd(uc, e->regs[LX_EDX], &n);
            /* Linux checks only that the range lies in the address space (access_ok) */
            if ((uint64_t)buf + n <= 0x100000000ULL)
                return n > LX_MAX_RW ? LX_MAX_RW : n;
        }
        break;
    }
    }
    *done = 0;
    return 0;
}

void lx_intr(void *uc, uint32_t intno, void *ud) {
    lx_engine *e = (lx_engine *)ud;
    lx_reg_fn rd = (lx_reg_fn)e->reg_read, wr = (lx_reg_fn)e->reg_write;
    uint32_t r[7] = {0}, ret;
    int done = 0;
    if (e->fault_pending || intno != 0x80 || e->proc == 0) {
        if (e->fault_pending)
            intno = (uint32_t)e->fault_vector;
        e->fault_vector = (int32_t)intno;
        lx_stop(e, uc, LX_STOP_FAULT);
        return;
    }
    rd(uc, e->regs[LX_EAX], &r[0]);
    if (r[0] < LX_NR_COUNTED)
        e->proc->calls[r[0]]++;
    if (e->fast) {
        ret = lx_fast(e, uc, r[0], &done);
        if (done) {
            e->n_c++;
            wr(uc, e->regs[LX_EAX], &ret);
            return;
        }
    }
    for (int i = 1; i < 7; i++)
        rd(uc, e->regs[i], &r[i]);
    e->n_py++;
    ret = lx_py_syscall(e->handle, r[0], r + 1);
    if (e->py_restart) {
        /* back onto the `int $0x80` (2 bytes), EAX still holding the number */
        uint32_t eip = 0;
        e->py_restart = 0;
        if (r[0] < LX_NR_COUNTED)
            e->proc->calls[r[0]]--;
        rd(uc, e->regs[LX_EIP], &eip);
        eip -= 2;
        wr(uc, e->regs[LX_EIP], &eip);
    } else {
        wr(uc, e->regs[LX_EAX], &ret);
    }
    if (e->py_stop) {
        e->py_stop = 0;
        lx_stop(e, uc, LX_STOP_PY);
    }
}

/* IN/OUT at CPL3 with IOPL 0 is #GP on a real CPU; Unicorn does not check it (docs/unicorn.md §5).
 * An emu_stop from an I/O hook is not reliable (docs/unicorn.md §7), so the fault is recorded and
 * the engine stops at the next block start or system call, before any call is served. */
static void lx_io_fault(lx_engine *e) {
    e->fault_vector = 13;
    e->fault_pending = 1;
    e->kick = 1;
}

uint32_t lx_port_in(void *uc, uint32_t port, int size, void *ud) {
    (void)uc; (void)port; (void)size;
    lx_io_fault((lx_engine *)ud);
    return 0xFFFFFFFFu;
}

void lx_port_out(void *uc, uint32_t port, int size, uint32_t value, void *ud) {
    (void)uc; (void)port; (void)size; (void)value;
    lx_io_fault((lx_engine *)ud);
}
