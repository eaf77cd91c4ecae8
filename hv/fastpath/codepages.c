/* Which guest pages hold translated code, so that stores elsewhere run at full speed.
 *
 * QEMU sends a store down its slow path (TLB_NOTDIRTY) only while the target page holds
 * translated code, to catch self-modifying code; once the page has none, the TLB entry
 * is made "dirty" and stores go straight to RAM. Unicorn 2.1.4 keeps no dirty bitmap:
 * every RAM TLB entry starts NOTDIRTY, and its notdirty_write() cleans an entry only
 * when the page is not executable. Without NX every x86 page is executable, so every
 * guest store took the slow path for good: a TLB-hit store cost ~190 ns instead of ~1.
 *
 * hv points three engine functions here (hv/engine.py checks their code first):
 *   tlb_protect_code(uc, ram_addr)    a page got its first translated block
 *   tlb_unprotect_code(uc, ram_addr)  a page lost its last one
 *   notdirty_write(...)               a store through a NOTDIRTY entry
 * and keeps, per engine, a bitmap of ram pages that may hold code. A store to a page
 * with code goes on to the engine's invalidation as before; a store to a page without
 * code cleans the TLB entry (tlb_set_dirty) so the next ones do not come here. When a
 * page gets code again, every TLB entry that writes to it is made NOTDIRTY again
 * (tlb_reset_dirty on its host address), as QEMU does, whatever virtual address maps it.
 *
 * An engine hv did not register (or while Unicorn's memory-write hooks or its own
 * snapshots are in use) gets the engine's original behaviour: always the slow path.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

/* uc_struct / CPUState offsets in unicorn 2.1.4 (hv/engine.py checks the engine's code
 * that uses them before patching) */
#define CPU_UC            0x81a8      /* CPUState.uc */
#define UC_SNAPSHOT_LEVEL 0x3a20      /* uc_struct.snapshot_level */
#define UC_HOOK_MEM_WRITE_HEAD 0x448  /* uc_struct.hook[UC_HOOK_MEM_WRITE_IDX].head */

typedef void *(*page_lock_fn)(void *uc, uint64_t start, uint64_t end);
typedef void (*page_unlock_fn)(void *pages);
typedef void (*invalidate_fast_fn)(void *uc, void *pages, uint64_t start, int len, uintptr_t ra);
typedef void (*set_dirty_fn)(void *cpu, uint64_t vaddr);
typedef void (*reset_dirty_fn)(void *cpu, uintptr_t host, uintptr_t length);
typedef void *(*map_ram_fn)(void *uc, void *block, uint64_t ram_addr);
typedef void (*notdirty_fn)(void *cpu, uint64_t vaddr, unsigned size, uint64_t iotlb_addr,
                            uintptr_t ra, void *tlbe);

static page_lock_fn cp_page_lock;
static page_unlock_fn cp_page_unlock;
static invalidate_fast_fn cp_invalidate_fast;
static set_dirty_fn cp_set_dirty;
static reset_dirty_fn cp_reset_dirty;
static map_ram_fn cp_map_ram;
static notdirty_fn cp_orig_notdirty;

/* What each engine counted (hv run --stats, the tests). */
typedef struct {
    uint64_t cleaned;           /* TLB entries made dirty: their stores now go to RAM */
    uint64_t code_stores;       /* stores to pages with code (checked for SMC) */
    uint64_t protected_pages, unprotected_pages;   /* pages that gained / lost code */
    uint64_t slow;              /* the engine's own handling (hooks, snapshots, no bitmap) */
} hv_codepage_counts;

typedef struct {
    void *uc;
    void *cpu;              /* learnt from the first store: no entry is dirty before it */
    uint64_t *bits;         /* ram page -> may hold translated code */
    uint64_t nwords;
    int broken;             /* the bitmap could not grow: never clean again */
    hv_codepage_counts n;
} cp_engine;

#define CP_ENGINES 1024
static cp_engine cp_engines[CP_ENGINES];
static pthread_mutex_t cp_mu = PTHREAD_MUTEX_INITIALIZER;
static __thread cp_engine *cp_last;

void hv_codepages_set_engine(void *page_lock, void *page_unlock, void *invalidate_fast,
                             void *set_dirty, void *reset_dirty, void *map_ram,
                             void *orig_notdirty) {
    cp_page_lock = (page_lock_fn)page_lock;
    cp_page_unlock = (page_unlock_fn)page_unlock;
    cp_invalidate_fast = (invalidate_fast_fn)invalidate_fast;
    cp_set_dirty = (set_dirty_fn)set_dirty;
    cp_reset_dirty = (reset_dirty_fn)reset_dirty;
    cp_map_ram = (map_ram_fn)map_ram;
    cp_orig_notdirty = (notdirty_fn)orig_notdirty;
}

static cp_engine *cp_find(void *uc) {
    cp_engine *e = cp_last;
    if (e && e->uc == uc)
        return e;
    for (int i = 0; i < CP_ENGINES; i++)
        if (cp_engines[i].uc == uc) {
            cp_last = &cp_engines[i];
            return cp_last;
        }
    return 0;
}

/* Before the engine's first emu_start (no translated code yet). Returns 0 when the table
 * is full: that engine keeps the slow path. */
int hv_codepages_track(void *uc) {
    int ok = 0;
    pthread_mutex_lock(&cp_mu);
    cp_engine *e = cp_find(uc);         /* a stale entry of a closed engine at this address */
    for (int i = 0; !e && i < CP_ENGINES; i++)
        if (!cp_engines[i].uc)
            e = &cp_engines[i];
    if (e) {
        free(e->bits);
        memset(e, 0, sizeof *e);
        e->uc = uc;
        ok = 1;
    }
    pthread_mutex_unlock(&cp_mu);
    return ok;
}

void hv_codepages_forget(void *uc) {
    pthread_mutex_lock(&cp_mu);
    for (int i = 0; i < CP_ENGINES; i++)
        if (cp_engines[i].uc == uc) {
            free(cp_engines[i].bits);
            memset(&cp_engines[i], 0, sizeof cp_engines[i]);
        }
    cp_last = 0;
    pthread_mutex_unlock(&cp_mu);
}

/* Zeros for an engine not tracked. */
hv_codepage_counts hv_codepages_counts(void *uc) {
    hv_codepage_counts n = {0};
    pthread_mutex_lock(&cp_mu);
    cp_engine *e = cp_find(uc);
    if (e)
        n = e->n;
    pthread_mutex_unlock(&cp_mu);
    return n;
}

static int cp_has_code(cp_engine *e, uint64_t page) {
    uint64_t w = page >> 6;
    return w < e->nwords && (e->bits[w] >> (page & 63) & 1);
}

void hv_tlb_protect_code(void *uc, uint64_t ram_addr) {
    cp_engine *e = cp_find(uc);
    if (!e)
        return;
    uint64_t page = ram_addr >> 12, w = page >> 6;
    if (w >= e->nwords && !e->broken) {
        uint64_t n = e->nwords ? e->nwords : 64;
        while (n <= w)
            n *= 2;
        uint64_t *b = realloc(e->bits, n * sizeof *b);
        if (b) {
            memset(b + e->nwords, 0, (n - e->nwords) * sizeof *b);
            e->bits = b;
            e->nwords = n;
        } else {
            e->broken = 1;
        }
    }
    if (w < e->nwords && !(e->bits[w] >> (page & 63) & 1)) {
        e->bits[w] |= 1ull << (page & 63);
        e->n.protected_pages++;
    }
    /* Entries cleaned earlier, under any virtual address, must catch stores again. */
    if (e->cpu) {
        void *host = cp_map_ram(uc, 0, ram_addr & ~0xFFFull);
        if (host)
            cp_reset_dirty(e->cpu, (uintptr_t)host, 0x1000);
    }
}

void hv_tlb_unprotect_code(void *uc, uint64_t ram_addr) {
    cp_engine *e = cp_find(uc);
    if (!e)
        return;
    uint64_t page = ram_addr >> 12;
    if (cp_has_code(e, page)) {
        e->bits[page >> 6] &= ~(1ull << (page & 63));
        e->n.unprotected_pages++;
    }
}

void hv_notdirty_write(void *cpu, uint64_t vaddr, unsigned size, uint64_t iotlb_addr,
                       uintptr_t ra, void *tlbe) {
    uint8_t *uc = *(uint8_t **)((uint8_t *)cpu + CPU_UC);
    cp_engine *e = cp_find(uc);
    if (!e || e->broken || *(int32_t *)(uc + UC_SNAPSHOT_LEVEL) != 0
            || *(void **)(uc + UC_HOOK_MEM_WRITE_HEAD) != 0) {
        if (e) {
            e->cpu = cpu;
            e->n.slow++;
        }
        cp_orig_notdirty(cpu, vaddr, size, iotlb_addr, ra, tlbe);
        return;
    }
    e->cpu = cpu;
    uint64_t ram_addr = vaddr + iotlb_addr;
    if (cp_has_code(e, ram_addr >> 12)) {
        e->n.code_stores++;
        /* may longjmp out (the store hit the running block); the pages are unlocked */
        void *pages = cp_page_lock(uc, ram_addr, ram_addr + size);
        cp_invalidate_fast(uc, pages, ram_addr, (int)size, ra);
        cp_page_unlock(pages);
        if (cp_has_code(e, ram_addr >> 12))
            return;
    }
    e->n.cleaned++;
    cp_set_dirty(cpu, vaddr);
}
