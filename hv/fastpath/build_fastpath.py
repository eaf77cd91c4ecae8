"""cffi build script for hv.fastpath._fastpath (run by setup.py at install time).

The C sources are every ``*.c`` beside this file (``fastpath.c``/``fastpath.h`` is the
vCPU's block hook and exit dispatch; other parts of hv add their own file), compiled as
one module. Each C file other than fastpath.c declares what Python sees of it in a
``.cdef`` file of the same name. The module
does not link against libunicorn: the Python binding already loaded it, so the
host passes ``uc_emu_stop``/``uc_reg_read`` as function pointers and registers
the callbacks itself. That keeps the build free of Unicorn headers and of the
build environment's library path.
"""
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent

CDEF = """
typedef struct { uint8_t kind; uint8_t dev; uint8_t arg; uint8_t pad; uint16_t off; } hv_port_slot;
typedef struct { uint8_t *buf; uint32_t pos; uint32_t end; int32_t active; int32_t writable;
                 uint32_t sizes; } hv_window;
typedef struct {
    struct hv_ctl *ctl; uint64_t base; uint64_t length; int32_t dev; uint32_t doorbell_off;
    int32_t doorbell_active; uint32_t doorbells; uint64_t doorbell_count;
} hv_mmio_region;
typedef struct { int32_t valid; int32_t mode; int32_t rw; int32_t msb_next; int64_t load; int64_t n; } hv_pit_chan;
typedef struct { uint8_t irr; uint8_t isr; uint8_t imr; uint8_t read_isr; uint8_t poll; } hv_pic_chip;
typedef struct hv_ctl {
    volatile int32_t kick;
    volatile int32_t irq_pending;
    int32_t stop_reason;
    volatile int64_t deadline_ns;
    uint64_t kicks;
    int32_t irq_hold;
    volatile uint64_t host_epoch;
    uint64_t missed;
    hv_port_slot ports[65536];
    uint64_t pio_count[64];
    uint64_t mmio_count[64];
    uint64_t unassigned;
    uint64_t unassigned_mmio;
    hv_window win[8];
    uint8_t shadow[64];
    uint8_t shadow_valid[8];
    int32_t tx_enabled;
    uint32_t txlen;
    uint8_t tx[4096];
    int32_t doorbells_pending;
    hv_mmio_region mmio[32];
    hv_pit_chan pit[3];
    hv_pic_chip pic[2];
    int64_t clock_origin_ns;
    int32_t virtual_clock;
    int32_t ns_per_block;
    uint64_t blocks;
    int64_t skip_ns;
    uint64_t deadline_blocks;
    ...;
} hv_ctl;
void hv_ctl_init(hv_ctl *c, void *emu_stop, void *reg_read, int eflags_reg, void *handle);
void hv_block_hook(void *uc, uint64_t addr, uint32_t size, void *ud);
void hv_block_hook_virtual(void *uc, uint64_t addr, uint32_t size, void *ud);
int64_t hv_clock_source(hv_ctl *c);
void hv_set_engine(hv_ctl *c, void *uc, void *ram_addr, void *tb_invalidate, void *ram,
                   uint64_t ram_span);
void hv_invalidate_phys(hv_ctl *c, uint64_t lo, uint64_t hi);
int hv_ticker_start(hv_ctl *c);
void hv_ticker_stop(hv_ctl *c);
void hv_set_deadline(hv_ctl *c, int64_t host_ns);
uint32_t hv_port_in(void *uc, uint32_t port, int size, void *ud);
void hv_port_out(void *uc, uint32_t port, int size, uint32_t value, void *ud);
uint64_t hv_mmio_read(void *uc, uint64_t offset, unsigned size, void *ud);
void hv_mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *ud);
extern "Python+C" uint32_t hv_py_in(void *handle, int dev, int off, int size);
extern "Python+C" void hv_py_out(void *handle, int dev, int off, int size, uint32_t value);
extern "Python+C" uint64_t hv_py_mmio_read(void *handle, int dev, uint64_t addr, int size);
extern "Python+C" void hv_py_mmio_write(void *handle, int dev, uint64_t addr, int size, uint64_t value);
extern "Python+C" void hv_py_window_done(void *handle, int window);
extern "Python+C" void hv_py_tx_flush(void *handle);
"""

C_FILES = ["fastpath.c"] + sorted(p.name for p in HERE.glob("*.c")
                                 if p.name != "fastpath.c" and not p.name.startswith("_"))

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF + "".join((HERE / f).with_suffix(".cdef").read_text()
                               for f in C_FILES[1:]))
ffibuilder.set_source(
    "hv.fastpath._fastpath",
    "".join(f'#include "{f}"\n' for f in C_FILES),
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent.parent), verbose=False)
