/* Shared between fastpath.c and the cffi declarations (build_fastpath.py). */
#ifndef HV_FASTPATH_H
#define HV_FASTPATH_H
#include <stdint.h>
#include <pthread.h>

typedef int (*uc_emu_stop_fn)(void *uc);
typedef int (*uc_reg_read_fn)(void *uc, int regid, void *value);
/* Engine internals (libunicorn exports them): guest RAM host pointer -> QEMU ram_addr,
 * and dropping translated code by ram_addr range, i.e. by physical memory, whatever
 * the guest's paging state (uc_ctl_remove_cache takes guest-virtual addresses). */
typedef uint64_t (*uc_ram_addr_fn)(void *uc, void *host);
typedef void (*uc_tb_invalidate_fn)(void *uc, uint64_t start, uint64_t end);

enum { STOP_NONE, STOP_KICK, STOP_IRQ, STOP_HOST };
enum { PK_NONE = 0, PK_PY = 1, PK_WINDOW = 2, PK_SHADOW = 3, PK_TXBUF = 4, PK_PIT = 5,
       PK_PIC = 6 };

#define HV_MAX_DEVS 64
#define HV_MAX_WINDOWS 8
#define HV_MAX_MMIO 32
#define HV_SHADOWS 64

typedef struct {
    uint8_t kind;
    uint8_t dev;        /* index into the machine's device list */
    uint8_t arg;        /* window or shadow register number */
    uint8_t pad;
    uint16_t off;       /* the offset the device model sees */
} hv_port_slot;

/* A device's data buffer and cursor, shared by the Python model and C. */
typedef struct {
    uint8_t *buf;
    uint32_t pos;
    uint32_t end;
    int32_t active;
    int32_t writable;   /* 1: the guest writes (OUT), 0: the guest reads (IN) */
    uint32_t sizes;     /* access sizes served here: bit n = n-byte accesses */
} hv_window;

/* An 8254 counter's count state, owned here and used by the Python model as its
 * own (devices/pit8254.py: Counter.share). In mode 2 or 3 with no latch pending
 * (``valid``), C derives the count from the clock exactly as the model does. */
typedef struct {
    int32_t valid;          /* the model says the count follows from this alone */
    int32_t mode;
    int32_t rw;
    int32_t msb_next;       /* the read flip-flop */
    int64_t load;           /* PIT tick at which the count was loaded */
    int64_t n;              /* full count */
} hv_pit_chan;

/* One 8259A's registers, owned here and used by the Python model as its own
 * (devices/pic8259.py: Pic8259.share). */
typedef struct {
    uint8_t irr;
    uint8_t isr;
    uint8_t imr;
    uint8_t read_isr;   /* OCW3: status reads return ISR */
    uint8_t poll;       /* OCW3 poll command pending: the read acknowledges */
} hv_pic_chip;

struct hv_ctl;
typedef struct {
    struct hv_ctl *ctl;
    uint64_t base;
    uint64_t length;            /* the device's window; the rest of the page is open bus */
    int32_t dev;
    uint32_t doorbell_off;
    int32_t doorbell_active;
    uint32_t doorbells;         /* queues notified since the host last looked */
    uint64_t doorbell_count;
} hv_mmio_region;

typedef struct hv_ctl {
    volatile int32_t kick;
    volatile int32_t irq_pending;
    int32_t stop_reason;
    int32_t eflags_reg;
    volatile int64_t deadline_ns;
    uint64_t kicks;
    /* An interrupt shadow: let the first block run before stopping for an IRQ. */
    int32_t irq_hold;
    /* The watchdog: the host bumps host_epoch whenever it has the CPU back; a
     * kick the host has not answered within WATCHDOG_NS is sent again and counted. */
    volatile uint64_t host_epoch;
    uint64_t missed;
    uc_emu_stop_fn emu_stop;
    uc_reg_read_fn reg_read;
    uc_ram_addr_fn ram_addr;
    uc_tb_invalidate_fn tb_invalidate;
    void *uc;
    uint8_t *ram;           /* guest physical 0 in host memory */
    uint64_t ram_span;
    void *handle;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
    /* dispatch */
    hv_port_slot ports[65536];
    uint64_t pio_count[HV_MAX_DEVS];
    uint64_t mmio_count[HV_MAX_DEVS];
    uint64_t unassigned;
    uint64_t unassigned_mmio;
    hv_window win[HV_MAX_WINDOWS];
    uint8_t shadow[HV_SHADOWS];
    uint8_t shadow_valid[HV_SHADOWS / 8];
    int32_t tx_enabled;
    uint32_t txlen;
    uint8_t tx[4096];
    int32_t doorbells_pending;
    hv_mmio_region mmio[HV_MAX_MMIO];
    hv_pit_chan pit[3];
    hv_pic_chip pic[2];
    int64_t clock_origin_ns;        /* the time source's value at virtual time 0 */
    /* The virtual clock (--clock virtual): time is guest work, not the host's clock.
     * Each block the guest runs is ns_per_block; idle time skipped in HLT is skip_ns.
     * The block hook stops the guest when `blocks` reaches `deadline_blocks`. */
    int32_t virtual_clock;
    int32_t ns_per_block;
    uint64_t blocks;
    int64_t skip_ns;
    uint64_t deadline_blocks;
} hv_ctl;

/* Calls back into Python (cffi extern "Python"). */
uint32_t hv_py_in(void *handle, int dev, int off, int size);
void hv_py_out(void *handle, int dev, int off, int size, uint32_t value);
uint64_t hv_py_mmio_read(void *handle, int dev, uint64_t addr, int size);
void hv_py_mmio_write(void *handle, int dev, uint64_t addr, int size, uint64_t value);
void hv_py_window_done(void *handle, int window);
void hv_py_tx_flush(void *handle);

#endif
