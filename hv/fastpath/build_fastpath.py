"""cffi build script for hv.fastpath._fastpath (run by setup.py at install time).

The module does not link against libunicorn: the Python binding already loaded
it, so the host passes ``uc_emu_stop``/``uc_reg_read`` as function pointers and
registers ``hv_block_hook`` itself. That keeps the build free of Unicorn headers
and of the build environment's library path.
"""
import cffi

CDEF = """
typedef struct {
    volatile int32_t kick;
    volatile int32_t irq_pending;
    int32_t stop_reason;
    int32_t eflags_reg;
    volatile int64_t deadline_ns;
    uint64_t kicks;
    ...;
} hv_ctl;
void hv_ctl_init(hv_ctl *c, void *emu_stop, void *reg_read, int eflags_reg);
void hv_block_hook(void *uc, uint64_t addr, uint32_t size, void *ud);
int hv_ticker_start(hv_ctl *c);
void hv_ticker_stop(hv_ctl *c);
void hv_set_deadline(hv_ctl *c, int64_t host_ns);
"""

SOURCE = r"""
#include <stdint.h>
#include <pthread.h>
#include <time.h>
#include <errno.h>

typedef int (*uc_emu_stop_fn)(void *uc);
typedef int (*uc_reg_read_fn)(void *uc, int regid, void *value);

enum { STOP_NONE, STOP_KICK, STOP_IRQ, STOP_HOST };

typedef struct {
    volatile int32_t kick;          /* host wants control at the next block start */
    volatile int32_t irq_pending;   /* PIC INTR high: stop only when EFLAGS.IF = 1 */
    int32_t stop_reason;
    int32_t eflags_reg;
    volatile int64_t deadline_ns;   /* CLOCK_MONOTONIC; < 0 = none */
    uint64_t kicks;
    uc_emu_stop_fn emu_stop;
    uc_reg_read_fn reg_read;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
} hv_ctl;

void hv_ctl_init(hv_ctl *c, void *emu_stop, void *reg_read, int eflags_reg) {
    pthread_condattr_t a;
    c->emu_stop = (uc_emu_stop_fn)emu_stop;
    c->reg_read = (uc_reg_read_fn)reg_read;
    c->eflags_reg = eflags_reg;
    c->deadline_ns = -1;
    pthread_mutex_init(&c->mu, 0);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &a);
}

/* Runs at every translated-block start: keep it to two loads in the common case. */
void hv_block_hook(void *uc, uint64_t addr, uint32_t size, void *ud) {
    hv_ctl *c = (hv_ctl *)ud;
    if (c->kick) {
        c->kick = 0;
        c->stop_reason = STOP_KICK;
        c->emu_stop(uc);
    } else if (c->irq_pending) {
        uint64_t fl = 0;
        c->reg_read(uc, c->eflags_reg, &fl);
        if (fl & 0x200) {
            c->stop_reason = STOP_IRQ;
            c->emu_stop(uc);
        }
    }
}

static void *ticker(void *arg) {
    hv_ctl *c = (hv_ctl *)arg;
    pthread_mutex_lock(&c->mu);
    while (c->running) {
        int64_t d = c->deadline_ns;
        if (d < 0) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t n = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
        if (n >= d) {
            c->kick = 1;
            c->kicks++;
            c->deadline_ns = -1;
            continue;
        }
        struct timespec ts = { d / 1000000000LL, d % 1000000000LL };
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int hv_ticker_start(hv_ctl *c) {
    c->running = 1;
    return pthread_create(&c->thread, 0, ticker, c);
}

void hv_ticker_stop(hv_ctl *c) {
    pthread_mutex_lock(&c->mu);
    c->running = 0;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, 0);
}

void hv_set_deadline(hv_ctl *c, int64_t host_ns) {
    pthread_mutex_lock(&c->mu);
    c->deadline_ns = host_ns;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source("hv.fastpath._fastpath", SOURCE, extra_compile_args=["-O2"],
                      libraries=["pthread"])

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
