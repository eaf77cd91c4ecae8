/* hv's C fast path: the block hook that gives the host control back, the ticker,
 * and the exit dispatch for port I/O and MMIO.
 *
 * Nothing here links against libunicorn: the Python binding already loaded it,
 * so the host hands over uc_emu_stop / uc_reg_read as function pointers and
 * registers these callbacks itself (uc_hook_add, uc_mmio_map through ctypes).
 *
 * Dispatch: every port has a slot {kind, device, offset}. Most kinds end in a
 * call back into the Python device model (hv_py_in / hv_py_out, cffi
 * "extern Python"); the hot registers are served here from state the Python
 * model shares with C (hv_window: a device's data buffer and cursor; shadow
 * registers the model keeps current; the UART transmit buffer; virtio
 * doorbells recorded for the host loop, like KVM's ioeventfd).
 */
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <time.h>

#include "fastpath.h"

/* ---- regaining control ------------------------------------------------------ */

void hv_ctl_init(hv_ctl *c, void *emu_stop, void *reg_read, int eflags_reg, void *handle) {
    pthread_condattr_t a;
    c->emu_stop = (uc_emu_stop_fn)emu_stop;
    c->reg_read = (uc_reg_read_fn)reg_read;
    c->eflags_reg = eflags_reg;
    c->deadline_ns = -1;
    c->handle = handle;
    pthread_mutex_init(&c->mu, 0);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &a);
}

void hv_set_engine(hv_ctl *c, void *uc, void *ram_addr, void *tb_invalidate, void *ram,
                   uint64_t ram_span) {
    c->uc = uc;
    c->ram_addr = (uc_ram_addr_fn)ram_addr;
    c->tb_invalidate = (uc_tb_invalidate_fn)tb_invalidate;
    c->ram = (uint8_t *)ram;
    c->ram_span = ram_span;
}

/* Drop translated code for guest-physical [lo, hi) of RAM after a host write (DMA,
 * a loader). Each page's ram_addr comes from its host address, so the range is
 * physical whatever the guest's paging (uc_ctl_remove_cache would walk the guest's
 * page tables, and a failed walk overwrites the guest's CR2). Runs of pages with
 * consecutive ram_addrs go to the engine in one call. */
void hv_invalidate_phys(hv_ctl *c, uint64_t lo, uint64_t hi) {
    if (hi > c->ram_span)
        hi = c->ram_span;
    uint64_t run_lo = 0, run_hi = 0;            /* ram_addr range pending */
    while (lo < hi) {
        uint64_t next = (lo | 0xFFF) + 1;
        if (next > hi)
            next = hi;
        uint64_t ra = c->ram_addr(c->uc, c->ram + lo);
        if (ra == (uint64_t)-1) {               /* not RAM the engine knows */
            lo = next;
            continue;
        }
        if (run_hi == ra) {
            run_hi = ra + (next - lo);
        } else {
            if (run_hi > run_lo)
                c->tb_invalidate(c->uc, run_lo, run_hi);
            run_lo = ra;
            run_hi = ra + (next - lo);
        }
        lo = next;
    }
    if (run_hi > run_lo)
        c->tb_invalidate(c->uc, run_lo, run_hi);
}

/* At every translated-block start: two loads in the common case. */
void hv_block_hook(void *uc, uint64_t addr, uint32_t size, void *ud) {
    hv_ctl *c = (hv_ctl *)ud;
    if (c->kick) {
        c->kick = 0;
        c->stop_reason = STOP_KICK;
        c->emu_stop(uc);
    } else if (c->irq_pending) {
        uint64_t fl = 0;
        if (c->irq_hold) {          /* the shadowed instruction runs first */
            c->irq_hold = 0;
            return;
        }
        c->reg_read(uc, c->eflags_reg, &fl);
        if (fl & 0x200) {
            c->stop_reason = STOP_IRQ;
            c->emu_stop(uc);
        }
    }
}

#define WATCHDOG_NS 10000000LL

/* The virtual clock's block hook: the same stops, and the deadline as a block count.
 * A block the guest is stopped before is not counted (it runs, and counts, after the
 * resume), so where the host happens to stop never changes the count: a run repeats
 * exactly, snapshots included. */
void hv_block_hook_virtual(void *uc, uint64_t addr, uint32_t size, void *ud) {
    hv_ctl *c = (hv_ctl *)ud;
    if (c->blocks >= c->deadline_blocks)
        c->kick = 1;
    if (c->kick) {
        c->kick = 0;
        c->stop_reason = STOP_KICK;
        c->emu_stop(uc);
        return;
    }
    if (c->irq_pending) {
        if (c->irq_hold) {
            c->irq_hold = 0;
        } else {
            uint64_t fl = 0;
            c->reg_read(uc, c->eflags_reg, &fl);
            if (fl & 0x200) {
                c->stop_reason = STOP_IRQ;
                c->emu_stop(uc);
                return;
            }
        }
    }
    c->blocks++;
}

static int64_t now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* The time source the machine's Clock reads (virtual time = this - clock_origin_ns). */
int64_t hv_clock_source(hv_ctl *c) {
    if (c->virtual_clock)
        return (int64_t)c->blocks * c->ns_per_block + c->skip_ns;
    return now_ns();
}

/* Sets kick when the clock's next deadline passes. A kick the host does not
 * answer (host_epoch unchanged) is sent again every WATCHDOG_NS and counted in
 * `missed`: a lost kick becomes a counted event, never a hang. */
static void *ticker(void *arg) {
    hv_ctl *c = (hv_ctl *)arg;
    int64_t recheck = -1;           /* when to look for an unanswered kick */
    uint64_t epoch = 0;             /* host_epoch when that kick was sent */
    pthread_mutex_lock(&c->mu);
    while (c->running) {
        int64_t n = now_ns(), d = c->deadline_ns;
        if (recheck >= 0 && n >= recheck) {
            if (c->host_epoch == epoch) {
                c->kick = 1;
                c->missed++;
                recheck = n + WATCHDOG_NS;
            } else {
                recheck = -1;
            }
        }
        if (d >= 0 && n >= d) {
            c->kick = 1;
            c->kicks++;
            c->deadline_ns = -1;
            epoch = c->host_epoch;
            recheck = n + WATCHDOG_NS;
            continue;
        }
        int64_t wake = d;
        if (recheck >= 0 && (wake < 0 || recheck < wake))
            wake = recheck;
        if (wake < 0) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        struct timespec ts = { wake / 1000000000LL, wake % 1000000000LL };
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

/* ---- port I/O -------------------------------------------------------------- */

static inline uint32_t ones(int size) {
    return size >= 4 ? 0xFFFFFFFFu : (1u << (8 * size)) - 1;
}

/* A data-port access served from a device buffer; 0 when the Python model must act. */
static inline int window_in(hv_ctl *c, hv_window *w, int size, uint32_t *value, int index) {
    if (!w->active || w->writable || !(w->sizes >> size & 1) || w->pos + (uint32_t)size > w->end)
        return 0;
    uint32_t v = 0;
    memcpy(&v, w->buf + w->pos, size);
    w->pos += size;
    *value = v;
    if (w->pos == w->end) {
        w->active = 0;
        hv_py_window_done(c->handle, index);
    }
    return 1;
}

static inline int window_out(hv_ctl *c, hv_window *w, int size, uint32_t value, int index) {
    if (!w->active || !w->writable || !(w->sizes >> size & 1) || w->pos + (uint32_t)size > w->end)
        return 0;
    memcpy(w->buf + w->pos, &value, size);
    w->pos += size;
    if (w->pos == w->end) {
        w->active = 0;
        hv_py_window_done(c->handle, index);
    }
    return 1;
}

#define PIT_HZ 1193182

static inline int64_t pit_now_tick(hv_ctl *c) {
    int64_t ns = hv_clock_source(c) - c->clock_origin_ns;
    return (int64_t)((__int128)ns * PIT_HZ / 1000000000LL);
}

/* Counter read for modes 2 and 3 (devices/pit8254.py: Counter._raw_count). */
static inline uint32_t pit_read(hv_ctl *c, hv_pit_chan *p) {
    int64_t e = pit_now_tick(c) - p->load, n = p->n, count;
    if (e < 0)
        e = 0;
    if (p->mode == 2) {
        count = n - e % n;
    } else {
        int64_t ph = e % n, high = (n + 1) / 2, odd = n & 1;
        if (ph < high)
            count = ph == 0 ? n : n + odd - 2 * ph;
        else {
            int64_t q = ph - high;
            count = q == 0 ? n : n - odd - 2 * q;
        }
    }
    count %= 65536;
    if (p->rw == 2)
        return (count >> 8) & 0xFF;
    if (p->rw == 3) {
        int msb = p->msb_next;
        p->msb_next = !msb;
        return msb ? (count >> 8) & 0xFF : count & 0xFF;
    }
    return count & 0xFF;
}

uint32_t hv_port_in(void *uc, uint32_t port, int size, void *ud) {
    hv_ctl *c = (hv_ctl *)ud;
    hv_port_slot *s = &c->ports[port & 0xFFFF];
    uint32_t v;
    switch (s->kind) {
    case PK_NONE:
        c->unassigned++;
        return ones(size);
    case PK_WINDOW:
        if (window_in(c, &c->win[s->arg], size, &v, s->arg)) {
            c->pio_count[s->dev]++;
            return v;
        }
        break;
    case PK_SHADOW:
        if (size == 1 && (c->shadow_valid[s->arg >> 3] >> (s->arg & 7)) & 1) {
            c->pio_count[s->dev]++;
            return c->shadow[s->arg];
        }
        break;
    case PK_PIC:
        if (size == 1) {            /* arg: chip * 2 + A0 */
            hv_pic_chip *p = &c->pic[s->arg >> 1];
            if (s->arg & 1) {
                c->pio_count[s->dev]++;
                return p->imr;      /* OCW1 reads back */
            }
            if (!p->poll) {
                c->pio_count[s->dev]++;
                return p->read_isr ? p->isr : p->irr;
            }
        }
        break;
    case PK_PIT:
        if (size == 1 && c->pit[s->arg].valid) {
            c->pio_count[s->dev]++;
            return pit_read(c, &c->pit[s->arg]);
        }
        break;
    }
    c->pio_count[s->dev]++;
    return hv_py_in(c->handle, s->dev, s->off, size) & ones(size);
}

void hv_port_out(void *uc, uint32_t port, int size, uint32_t value, void *ud) {
    hv_ctl *c = (hv_ctl *)ud;
    hv_port_slot *s = &c->ports[port & 0xFFFF];
    switch (s->kind) {
    case PK_NONE:
        c->unassigned++;
        return;
    case PK_WINDOW:
        if (window_out(c, &c->win[s->arg], size, value, s->arg)) {
            c->pio_count[s->dev]++;
            return;
        }
        break;
    case PK_TXBUF:
        if (c->tx_enabled && size == 1) {
            c->pio_count[s->dev]++;
            c->tx[c->txlen++] = (uint8_t)value;
            if (c->txlen == sizeof c->tx)
                hv_py_tx_flush(c->handle);
            return;
        }
        break;
    }
    c->pio_count[s->dev]++;
    hv_py_out(c->handle, s->dev, s->off, size, value & ones(size));
}

/* ---- MMIO ------------------------------------------------------------------ */

uint64_t hv_mmio_read(void *uc, uint64_t offset, unsigned size, void *ud) {
    hv_mmio_region *r = (hv_mmio_region *)ud;
    if (offset >= r->length) {         /* past the device's window: nothing there */
        r->ctl->unassigned_mmio++;
        return ones(size);
    }
    r->ctl->mmio_count[r->dev]++;
    return hv_py_mmio_read(r->ctl->handle, r->dev, r->base + offset, size) & ones(size);
}

void hv_mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *ud) {
    hv_mmio_region *r = (hv_mmio_region *)ud;
    hv_ctl *c = r->ctl;
    if (offset >= r->length) {
        c->unassigned_mmio++;
        return;
    }
    c->mmio_count[r->dev]++;
    if (r->doorbell_active && offset == r->doorbell_off && size == 4 && value < 32) {
        /* Record the queue and let the host loop run the device after this block. */
        r->doorbells |= 1u << value;
        r->doorbell_count++;
        c->doorbells_pending = 1;
        c->kick = 1;
        return;
    }
    hv_py_mmio_write(c->handle, r->dev, r->base + offset, size, value & ones(size));
}
