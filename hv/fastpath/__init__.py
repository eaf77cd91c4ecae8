"""The vCPU's way back to the host: a block hook that tests a flag.

Unicorn offers no safe asynchronous stop (``emu_start(timeout=)`` and
cross-thread ``emu_stop`` can re-execute a guest instruction; docs/unicorn.md §3), so the
engine runs with one ``UC_HOOK_BLOCK`` that looks at two words:

* ``kick``: the host wants control back (a timer deadline passed, output to
  match, a device event); stop at the next block start, unconditionally;
* ``irq_pending``: the PIC's INTR output is high; stop only if EFLAGS.IF is set,
  so a guest running with interrupts off is not stopped in vain.

A ticker thread sets ``kick`` when the clock's next deadline passes. The C
version (``_fastpath``, built by cffi at install time) adds ~1.5 ns per block;
the pure-Python fallback is the same logic with a Python hook (~0.5 µs per
block): correct, much slower. ``load()`` picks C when it was built.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
import time
from functools import partial

from unicorn import UC_HOOK_BLOCK, Uc
from unicorn.unicorn_py3.unicorn import uclib
from unicorn.x86_const import UC_X86_REG_EFLAGS

# Why the last emu_start returned (ctl.stop_reason); 0 = nothing recorded,
# which the vCPU reads as HLT or a silent engine stop.
STOP_NONE, STOP_KICK, STOP_IRQ, STOP_HOST = 0, 1, 2, 3

IF_FLAG = 0x200
WATCHDOG_NS = 10_000_000      # an unanswered kick is sent again after this (fastpath.c)
NO_DEADLINE = (1 << 64) - 1   # the virtual clock's "no deadline" block count
DEADLINE_CHECK_BLOCKS = 16    # the Python block hook reads the clock every this many blocks

try:  # pragma: no cover - depends on the build
    from hv.fastpath import _fastpath  # type: ignore[attr-defined]
except ImportError:  # no C compiler at install time
    _fastpath = None


def c_available() -> bool:
    return _fastpath is not None


def _uch(uc: Uc) -> int:
    return ctypes.cast(uc._uch, ctypes.c_void_p).value


class _EngineFunctions:
    """Two engine internals libunicorn exports (x86 build): guest RAM host address ->
    QEMU ram_addr, and drop translated code by ram_addr range (i.e. by physical
    memory, whatever the guest's paging)."""

    def __init__(self) -> None:
        self.ram_addr = uclib.qemu_ram_addr_from_host_x86_64
        self.ram_addr.restype = ctypes.c_uint64
        self.ram_addr.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.tb_invalidate = uclib.tb_invalidate_phys_range_x86_64
        self.tb_invalidate.restype = None
        self.tb_invalidate.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
        self.ram_addr_ptr = ctypes.cast(self.ram_addr, ctypes.c_void_p).value
        self.tb_invalidate_ptr = ctypes.cast(self.tb_invalidate, ctypes.c_void_p).value


@functools.lru_cache(maxsize=1)
def _engine_functions() -> _EngineFunctions:
    return _EngineFunctions()


RAM_ADDR_INVALID = (1 << 64) - 1


class _Base:
    kind = "?"
    irq_hold = 0
    missed = 0
    virtual = False

    def ack(self) -> None:
        """The host has the CPU back (the watchdog's sign of life)."""

    def set_deadline(self, host_ns: int | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def counts(self) -> dict[tuple[str, str], int]:
        """Exits counted outside Python (by the C dispatch)."""
        return {}

    def service(self) -> None:
        """Host-loop work the fast path deferred (doorbells, buffered output)."""

    def flush_tx(self) -> None:
        """Deliver output the fast path buffered."""

    def doorbell_kick(self) -> bool:
        """Whether the last kick came from a doorbell waiting for the host loop."""
        return False


class CFastpath(_Base):
    """C block hook + C ticker thread; with ``install_dispatch`` also the port
    I/O and MMIO exit dispatch in C (see fastpath.c)."""

    kind = "c"

    def __init__(self, uc: Uc | None, ns_per_block: int = 0) -> None:
        """``uc`` None: the flags, clock and device tables only; the engine comes later
        with ``attach`` (a vCPU creates its engine when it first runs)."""
        ffi, lib = _fastpath.ffi, _fastpath.lib
        self._ffi, self._lib = ffi, lib
        self.uc = None
        self.ctl = ffi.new("hv_ctl *")
        self._handle = ffi.new_handle(self)
        stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        regread = ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p).value
        lib.hv_ctl_init(self.ctl, ffi.cast("void *", stop), ffi.cast("void *", regread),
                        UC_X86_REG_EFLAGS, self._handle)
        self.virtual = bool(ns_per_block)
        if self.virtual:
            self.ctl.virtual_clock, self.ctl.ns_per_block = 1, ns_per_block
            self.ctl.deadline_blocks = NO_DEADLINE
        self._ticking = False
        self.devices: list = []
        self.regions: dict[int, object] = {}      # mmio slot -> device (VirtioMmio or other)
        self.vcpu = None
        self._cdata: dict[int, tuple] = {}
        self._windows: list[Window] = []
        self._next_shadow = 0
        self._next_region = 0
        self._open_bus: dict[int, int] = {}
        self._tx_sink = None
        if uc is not None:
            self.attach(uc)

    def attach(self, uc: Uc) -> None:
        """Hook the engine: the block hook, and the ticker thread that kicks it (started
        only now: a machine that never runs needs no thread)."""
        self.uc = uc
        self._hook(UC_HOOK_BLOCK, "hv_block_hook_virtual" if self.virtual else "hv_block_hook")
        if self._lib.hv_ticker_start(self.ctl) != 0:
            raise RuntimeError("cannot start the ticker thread")
        self._ticking = True

    def _addr(self, name: str) -> int:
        return int(self._ffi.cast("uintptr_t", self._ffi.addressof(self._lib, name)))

    def _hook(self, kind: int, callback: str, *extra) -> None:
        hook = ctypes.c_size_t()
        ud = int(self._ffi.cast("uintptr_t", self.ctl))
        err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(hook), kind,
                                ctypes.c_void_p(self._addr(callback)), ctypes.c_void_p(ud),
                                ctypes.c_uint64(1), ctypes.c_uint64(0), *extra)
        if err:
            raise RuntimeError(f"uc_hook_add({callback}) failed: {err}")

    # The flags live in C memory; these properties keep one copy of the state.
    @property
    def kick(self) -> int:
        return self.ctl.kick

    @kick.setter
    def kick(self, v: int) -> None:
        self.ctl.kick = v

    @property
    def irq_pending(self) -> int:
        return self.ctl.irq_pending

    @irq_pending.setter
    def irq_pending(self, v: int) -> None:
        self.ctl.irq_pending = v

    @property
    def stop_reason(self) -> int:
        return self.ctl.stop_reason

    @stop_reason.setter
    def stop_reason(self, v: int) -> None:
        self.ctl.stop_reason = v

    @property
    def irq_hold(self) -> int:
        return self.ctl.irq_hold

    @irq_hold.setter
    def irq_hold(self, v: int) -> None:
        self.ctl.irq_hold = v

    @property
    def missed(self) -> int:
        return self.ctl.missed

    def ack(self) -> None:
        self.ctl.host_epoch += 1

    def set_deadline(self, host_ns: int | None) -> None:
        """The clock's next deadline, in time-source units: a host time for the ticker, or
        under the virtual clock the block count the block hook stops at."""
        if self.virtual:
            c = self.ctl
            self.ctl.deadline_blocks = NO_DEADLINE if host_ns is None else max(
                0, -(-(host_ns - c.skip_ns) // c.ns_per_block))
            return
        self._lib.hv_set_deadline(self.ctl, -1 if host_ns is None else host_ns)

    def clock_source(self) -> int:
        """The machine clock's time source (nanoseconds)."""
        return self._lib.hv_clock_source(self.ctl)

    def skip(self, ns: int) -> None:
        """Virtual clock: let ``ns`` of idle time pass at once (HLT with a deadline ahead)."""
        self.ctl.skip_ns += ns

    @property
    def blocks(self) -> int:
        return self.ctl.blocks

    def set_ram(self, host_ptr: int, span: int) -> None:
        ffi, fn = self._ffi, _engine_functions()
        self._lib.hv_set_engine(self.ctl, ffi.cast("void *", _uch(self.uc)),
                                ffi.cast("void *", fn.ram_addr_ptr),
                                ffi.cast("void *", fn.tb_invalidate_ptr),
                                ffi.cast("void *", host_ptr), span)
        self.invalidate_phys = partial(self._lib.hv_invalidate_phys, self.ctl)

    def close(self) -> None:
        if self._ticking:
            self._ticking = False
            self._lib.hv_ticker_stop(self.ctl)
        if _LAST_CALLER[0] is self:         # (it would keep a closed machine alive)
            _LAST_CALLER[0] = None

    def detach(self) -> None:
        """The engine is given back (its hooks and MMIO regions go with it): the ticker
        stops, and the next ``attach`` maps the regions again from the first."""
        self.close()
        self.uc = None
        self.regions, self._open_bus, self._next_region = {}, {}, 0

    # -- exit dispatch ---------------------------------------------------------------
    def set_devices(self, vcpu) -> None:
        """The port table and per-device counters in C (no engine needed: devices bind
        their C shares to the table before the engine exists)."""
        machine = vcpu.machine
        self.vcpu = vcpu
        self.devices = list(machine.devices)
        if len(self.devices) > 64:
            raise RuntimeError("the C dispatch table holds 64 devices")
        index = {id(d): i for i, d in enumerate(self.devices)}
        ctl = self.ctl
        # Only the registered ports: the table starts zeroed (PK_NONE), and pages of it
        # nothing touches cost no RSS.
        for port, dev, offset in machine.ports.assigned():
            slot = ctl.ports[port]
            slot.kind, slot.dev, slot.off = PK_PY, index[id(dev)], offset

    def install_dispatch(self, vcpu) -> None:
        """Take over port I/O and MMIO from the Python hooks: C callbacks registered
        with the engine, a port table and per-device counters in C."""
        from unicorn import UC_HOOK_INSN
        from unicorn.x86_const import UC_X86_INS_IN, UC_X86_INS_OUT
        machine = vcpu.machine
        if self.vcpu is not vcpu:
            self.set_devices(vcpu)
        index = {id(d): i for i, d in enumerate(self.devices)}
        self._hook(UC_HOOK_INSN, "hv_port_in", ctypes.c_int(UC_X86_INS_IN))
        self._hook(UC_HOOK_INSN, "hv_port_out", ctypes.c_int(UC_X86_INS_OUT))
        for base, length, dev in machine.mmio.ranges():
            lo, hi = vcpu._mmio_pages(base, length)
            i, region = self._region(lo, hi)
            region.dev, region.length = index[id(dev)], base - lo + length
            if hasattr(dev, "doorbell_offset"):
                region.doorbell_off = base - lo + dev.doorbell_offset
                region.doorbell_active = 1
            self.regions[i] = dev

    def _region(self, lo: int, hi: int, i: int | None = None):
        """A C MMIO region (the next free one unless ``i``), mapped over [lo, hi); its
        window starts empty (length 0: every access is unassigned) until the caller sets one."""
        if i is None:
            i = self._next_region
            if i >= len(self.ctl.mmio):
                raise RuntimeError(f"the C dispatch holds {len(self.ctl.mmio)} MMIO regions")
            self._next_region += 1
        region = self.ctl.mmio[i]
        region.ctl, region.base, region.length = self.ctl, lo, 0
        ud = ctypes.c_void_p(int(self._ffi.cast("uintptr_t", self._ffi.addressof(region))))
        err = uclib.uc_mmio_map(self.uc._uch, lo, hi - lo,
                                ctypes.c_void_p(self._addr("hv_mmio_read")), ud,
                                ctypes.c_void_p(self._addr("hv_mmio_write")), ud)
        if err:
            raise RuntimeError(f"uc_mmio_map({lo:#x}) failed: {err}")
        return i, region

    def map_open_bus(self, base: int, size: int) -> None:
        """Physical addresses nothing decodes: all ones, writes dropped, counted in C.
        Mapping the same range again (the A20 window) reuses its region."""
        i, _ = self._region(base, base + size, self._open_bus.get(base))
        self._open_bus[base] = i

    def doorbell_kick(self) -> bool:
        return bool(self.ctl.doorbells_pending)

    def service(self) -> None:
        ctl = self.ctl
        if ctl.txlen:
            self.flush_tx()
        if ctl.doorbells_pending:
            ctl.doorbells_pending = 0
            for i, dev in self.regions.items():
                region = ctl.mmio[i]
                bits = region.doorbells
                if bits:
                    region.doorbells = 0
                    q = 0
                    while bits:
                        if bits & 1:
                            dev.doorbell(q)
                        bits >>= 1
                        q += 1

    def counts(self) -> dict[tuple[str, str], int]:
        ctl = self.ctl
        out: dict[tuple[str, str], int] = {}
        for i, dev in enumerate(self.devices):
            if ctl.pio_count[i]:
                out[("pio", dev.name)] = ctl.pio_count[i]
            if ctl.mmio_count[i]:
                out[("mmio", dev.name)] = ctl.mmio_count[i]
        if ctl.unassigned:
            out[("unassigned", "ports")] = ctl.unassigned
        if ctl.unassigned_mmio:
            out[("unassigned", "mmio")] = ctl.unassigned_mmio
        return out

    # -- state a device model shares with C --------------------------------------------
    def buffer(self, size: int) -> memoryview:
        """Zeroed C memory a device uses as its data buffer (one copy of the data)."""
        cdata = self._ffi.new("uint8_t[]", size)
        view = memoryview(self._ffi.buffer(cdata)).cast("B")
        self._cdata[id(view)] = (view, cdata)
        return view

    def pointer(self, buf: memoryview):
        """The C address of a buffer from ``buffer()``, for ``Window.open``. (Kept
        from the allocation rather than taken with ffi.from_buffer, which would pin
        an export on the view that garbage collection then trips over at exit.)"""
        return self._cdata[id(buf)][1]

    def window(self, ports: list[int], sizes=(2, 4), on_done=None) -> "Window":
        """Serve IN/OUT on ``ports`` from a device buffer while the window is open;
        ``on_done()`` runs when the guest has moved the last byte."""
        i = len(self._windows)
        if i >= 8:
            raise RuntimeError("out of C data windows")
        w = self.ctl.win[i]
        w.sizes = sum(1 << n for n in sizes)
        win = Window(w, on_done)
        self._windows.append(win)
        for port in ports:
            self.ctl.ports[port].kind, self.ctl.ports[port].arg = PK_WINDOW, i
        return win

    def window_done(self, index: int) -> None:
        self._windows[index].done()

    def shadow(self, port: int) -> int:
        """Serve byte reads of ``port`` from a value the model keeps current."""
        k = self._next_shadow
        self._next_shadow += 1
        self.ctl.ports[port].kind, self.ctl.ports[port].arg = PK_SHADOW, k
        return k

    def pit_channel(self, port: int, channel: int, clock):
        """Serve unlatched counter reads of a mode 2/3 8254 channel in C; returns
        the shared ``hv_pit_chan`` the model fills (see fastpath.h)."""
        self.ctl.ports[port].kind, self.ctl.ports[port].arg = PK_PIT, channel
        self.ctl.clock_origin_ns = clock.host_time(0)
        return self.ctl.pit[channel]

    def pic_chip(self, index: int, ports: list[int]):
        """Serve byte reads of one 8259's two ports from its registers, which the
        model keeps in the returned ``hv_pic_chip``."""
        for a0, port in enumerate(ports):
            self.ctl.ports[port].kind, self.ctl.ports[port].arg = PK_PIC, index * 2 + a0
        return self.ctl.pic[index]

    def set_shadow(self, k: int, value: int | None) -> None:
        """``None``: the read has side effects now; send it to the model."""
        byte, bit = divmod(k, 8)
        if value is None:
            self.ctl.shadow_valid[byte] &= ~(1 << bit)
        else:
            self.ctl.shadow[k] = value
            self.ctl.shadow_valid[byte] |= 1 << bit

    def tx_buffer(self, port: int, sink) -> None:
        """Buffer byte OUTs to ``port`` in C while ``tx_enabled``; ``sink(bytes)``
        gets them in batches (full buffer, or whenever the host loop runs)."""
        self.ctl.ports[port].kind = PK_TXBUF
        self._tx_sink = sink

    @property
    def tx_enabled(self) -> bool:
        return bool(self.ctl.tx_enabled)

    @tx_enabled.setter
    def tx_enabled(self, on: bool) -> None:
        if not on:
            self.flush_tx()
        self.ctl.tx_enabled = 1 if on else 0

    def flush_tx(self) -> None:
        n = self.ctl.txlen
        if n and self._tx_sink is not None:
            data = bytes(self._ffi.buffer(self.ctl.tx, n))
            self.ctl.txlen = 0
            self._tx_sink(data)


class Window:
    """A device's data buffer and cursor as C sees them (``hv_window``)."""

    __slots__ = ("c", "on_done")

    def __init__(self, c, on_done) -> None:
        self.c = c
        self.on_done = on_done

    def open(self, pointer, start: int, end: int, writable: bool) -> None:
        """Bytes ``start..end`` of the buffer at ``pointer`` (see ``pointer()``)."""
        c = self.c
        c.buf = pointer + start
        c.pos, c.end, c.writable, c.active = 0, end - start, 1 if writable else 0, 1

    def close(self) -> None:
        self.c.active = 0

    @property
    def moved(self) -> int:
        """Bytes the guest moved through C since ``open``."""
        return self.c.pos

    @property
    def active(self) -> bool:
        return bool(self.c.active)

    def done(self) -> None:
        if self.on_done is not None:
            self.on_done()


PK_NONE, PK_PY, PK_WINDOW, PK_SHADOW, PK_TXBUF, PK_PIT, PK_PIC = range(7)


def _machine_of(handle):
    return _fastpath.ffi.from_handle(handle)


def _on_callback_error(exc_type, exc, tb) -> None:
    # A device model raised inside a C callback: end the run with the reason
    # rather than let cffi print it and carry on with a made-up value.
    import traceback
    fp = _LAST_CALLER[0]
    if fp is not None and fp.vcpu is not None:
        fp.vcpu.machine.fail("device model error: " + "".join(
            traceback.format_exception_only(exc_type, exc)).strip())
        fp.vcpu.kick()


_LAST_CALLER: list = [None]

if _fastpath is not None:  # pragma: no branch - depends on the build
    _ffi = _fastpath.ffi

    @_ffi.def_extern(onerror=_on_callback_error)
    def hv_py_in(handle, dev, off, size):
        fp = _machine_of(handle)
        _LAST_CALLER[0] = fp
        v = fp.devices[dev].read(off, size)
        fp.vcpu._after_io()
        return v

    @_ffi.def_extern(onerror=_on_callback_error)
    def hv_py_out(handle, dev, off, size, value):
        fp = _machine_of(handle)
        _LAST_CALLER[0] = fp
        fp.devices[dev].write(off, size, value)
        fp.vcpu._after_io()

    @_ffi.def_extern(onerror=_on_callback_error)
    def hv_py_mmio_read(handle, dev, addr, size):
        fp = _machine_of(handle)
        _LAST_CALLER[0] = fp
        return fp.vcpu.machine.mmio.read_uncounted(addr, size)

    @_ffi.def_extern(onerror=_on_callback_error)
    def hv_py_mmio_write(handle, dev, addr, size, value):
        fp = _machine_of(handle)
        _LAST_CALLER[0] = fp
        fp.vcpu.machine.mmio.write_uncounted(addr, size, value)
        fp.vcpu._after_io()

    @_ffi.def_extern(onerror=_on_callback_error)
    def hv_py_window_done(handle, window):
        fp = _machine_of(handle)
        fp.window_done(window)

    @_ffi.def_extern(onerror=_on_callback_error)
    def hv_py_tx_flush(handle):
        fp = _machine_of(handle)
        fp.flush_tx()


class PyFastpath(_Base):
    """The same contract in Python, for installs without a C compiler."""

    kind = "python"

    def __init__(self, uc: Uc | None, ns_per_block: int = 0) -> None:
        self.uc = None
        self.kick = 0
        self.irq_pending = 0
        self.irq_hold = 0
        self.stop_reason = STOP_NONE
        self.missed = 0
        self._epoch = 0
        self._deadline: int | None = None
        self.virtual = bool(ns_per_block)
        self.ns_per_block = ns_per_block
        self.blocks = 0
        self.skip_ns = 0
        self.deadline_blocks = NO_DEADLINE
        self._countdown = DEADLINE_CHECK_BLOCKS
        self._cv = threading.Condition()
        self._running = True
        self._thread = None
        if uc is not None:
            self.attach(uc)

    def attach(self, uc: Uc) -> None:
        """CFastpath.attach's twin: the block hook and the ticker thread."""
        self.uc = uc
        uc.hook_add(UC_HOOK_BLOCK, self._block_virtual if self.virtual else self._block)
        # The ticker needs the GIL to set `kick` while the block hook (Python) holds it
        # between blocks; a waiting thread gets it after at most the switch interval
        # (5 ms by default), which would be most of the 10 ms a deadline may slip.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self._thread = threading.Thread(target=self._ticker, name="hv-ticker", daemon=True)
        self._thread.start()

    def _block(self, uc: Uc, addr: int, size: int, ud: object) -> None:
        # The deadline is also looked at here, every DEADLINE_CHECK_BLOCKS blocks: the
        # ticker thread needs the GIL to kick, and with this hook taking it at every block
        # it got it up to several ms late (a 10 ms bound, issue 15, then failed).
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = DEADLINE_CHECK_BLOCKS
            d = self._deadline
            if d is not None and time.monotonic_ns() >= d:
                self._deadline = None          # the ticker need not kick as well
                self.kick = 1
        if self.kick:
            self.kick = 0
            self.stop_reason = STOP_KICK
            uc.emu_stop()
        elif self.irq_pending:
            if self.irq_hold:
                self.irq_hold = 0
            elif uc.reg_read(UC_X86_REG_EFLAGS) & IF_FLAG:
                self.stop_reason = STOP_IRQ
                uc.emu_stop()

    def _block_virtual(self, uc: Uc, addr: int, size: int, ud: object) -> None:
        # hv_block_hook_virtual's twin: a block stopped before is not counted.
        if self.blocks >= self.deadline_blocks:
            self.kick = 1
        if self.kick:
            self.kick = 0
            self.stop_reason = STOP_KICK
            uc.emu_stop()
            return
        if self.irq_pending:
            if self.irq_hold:
                self.irq_hold = 0
            elif uc.reg_read(UC_X86_REG_EFLAGS) & IF_FLAG:
                self.stop_reason = STOP_IRQ
                uc.emu_stop()
                return
        self.blocks += 1

    def clock_source(self) -> int:
        if self.virtual:
            return self.blocks * self.ns_per_block + self.skip_ns
        return time.monotonic_ns()

    def skip(self, ns: int) -> None:
        self.skip_ns += ns

    def ack(self) -> None:
        self._epoch += 1

    def _ticker(self) -> None:
        # The C ticker's logic, watchdog included (see fastpath.c).
        recheck, epoch = None, 0
        with self._cv:
            while self._running:
                now = time.monotonic_ns()
                if recheck is not None and now >= recheck:
                    if self._epoch == epoch:
                        self.kick = 1
                        self.missed += 1
                        recheck = now + WATCHDOG_NS
                    else:
                        recheck = None
                d = self._deadline
                if d is not None and now >= d:
                    self.kick = 1
                    self._deadline = None
                    epoch, recheck = self._epoch, now + WATCHDOG_NS
                    continue
                wake = min(x for x in (d, recheck, 1 << 62) if x is not None)
                if wake == 1 << 62:
                    self._cv.wait()
                else:
                    self._cv.wait(max(0.0, (wake - now) / 1e9))

    def set_ram(self, host_ptr: int, span: int) -> None:
        self._ram, self._span, self._fn = host_ptr, span, _engine_functions()

    def invalidate_phys(self, lo: int, hi: int) -> None:
        """fastpath.c's hv_invalidate_phys through ctypes."""
        fn, uch = self._fn, _uch(self.uc)
        hi = min(hi, self._span)
        run_lo = run_hi = 0
        while lo < hi:
            nxt = min((lo | 0xFFF) + 1, hi)
            ra = fn.ram_addr(uch, self._ram + lo)
            if ra != RAM_ADDR_INVALID:
                if run_hi == ra:
                    run_hi = ra + nxt - lo
                else:
                    if run_hi > run_lo:
                        fn.tb_invalidate(uch, run_lo, run_hi)
                    run_lo, run_hi = ra, ra + nxt - lo
            lo = nxt
        if run_hi > run_lo:
            fn.tb_invalidate(uch, run_lo, run_hi)

    def set_deadline(self, host_ns: int | None) -> None:
        if self.virtual:
            self.deadline_blocks = NO_DEADLINE if host_ns is None else max(
                0, -(-(host_ns - self.skip_ns) // self.ns_per_block))
            return
        with self._cv:
            self._deadline = host_ns
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def detach(self) -> None:
        self.close()
        self.uc = None
        self._running = True


def load(uc: Uc | None, dispatch: str = "auto", ns_per_block: int = 0) -> _Base:
    """'auto' prefers C (or what $HV_DISPATCH says); 'c' insists on it; 'python'
    forces the fallback. ``ns_per_block``: run on the virtual clock at that rate.
    ``uc`` None: attach the engine later (``attach``)."""
    if dispatch == "auto":
        dispatch = os.environ.get("HV_DISPATCH", "auto")
    if dispatch not in ("auto", "c", "python"):
        raise ValueError(f"dispatch {dispatch!r}: expected auto, c or python")
    if dispatch == "python" or (dispatch == "auto" and _fastpath is None):
        return PyFastpath(uc, ns_per_block)
    if _fastpath is None:
        raise RuntimeError("the C fast path was not built (no C compiler at install time); "
                           "use --dispatch python")
    return CFastpath(uc, ns_per_block)
