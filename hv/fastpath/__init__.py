"""The vCPU's way back to the host: a block hook that tests a flag.

Unicorn offers no safe asynchronous stop (``emu_start(timeout=)`` and
cross-thread ``emu_stop`` can re-execute a guest instruction; notes §3), so the
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
import threading
import time

from unicorn import UC_HOOK_BLOCK, Uc
from unicorn.unicorn_py3.unicorn import uclib
from unicorn.x86_const import UC_X86_REG_EFLAGS

# Why the last emu_start returned (ctl.stop_reason); 0 = nothing recorded,
# which the vCPU reads as HLT or a silent engine stop.
STOP_NONE, STOP_KICK, STOP_IRQ, STOP_HOST = 0, 1, 2, 3

IF_FLAG = 0x200

try:  # pragma: no cover - depends on the build
    from hv.fastpath import _fastpath  # type: ignore[attr-defined]
except ImportError:  # no C compiler at install time
    _fastpath = None


def c_available() -> bool:
    return _fastpath is not None


class _Base:
    kind = "?"

    def set_deadline(self, host_ns: int | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class CFastpath(_Base):
    """C block hook + C ticker thread."""

    kind = "c"

    def __init__(self, uc: Uc) -> None:
        ffi, lib = _fastpath.ffi, _fastpath.lib
        self._ffi, self._lib = ffi, lib
        self.ctl = ffi.new("hv_ctl *")
        stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
        regread = ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p).value
        lib.hv_ctl_init(self.ctl, ffi.cast("void *", stop), ffi.cast("void *", regread),
                        UC_X86_REG_EFLAGS)
        hook = ctypes.c_size_t()
        cb = int(ffi.cast("uintptr_t", ffi.addressof(lib, "hv_block_hook")))
        ud = int(ffi.cast("uintptr_t", self.ctl))
        err = uclib.uc_hook_add(uc._uch, ctypes.byref(hook), UC_HOOK_BLOCK,
                                ctypes.c_void_p(cb), ctypes.c_void_p(ud),
                                ctypes.c_uint64(1), ctypes.c_uint64(0))
        if err:
            raise RuntimeError(f"uc_hook_add(block) failed: {err}")
        if lib.hv_ticker_start(self.ctl) != 0:
            raise RuntimeError("cannot start the ticker thread")

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

    def set_deadline(self, host_ns: int | None) -> None:
        self._lib.hv_set_deadline(self.ctl, -1 if host_ns is None else host_ns)

    def close(self) -> None:
        self._lib.hv_ticker_stop(self.ctl)


class PyFastpath(_Base):
    """The same contract in Python, for installs without a C compiler."""

    kind = "python"

    def __init__(self, uc: Uc) -> None:
        self.kick = 0
        self.irq_pending = 0
        self.stop_reason = STOP_NONE
        self._deadline: int | None = None
        self._cv = threading.Condition()
        self._running = True
        uc.hook_add(UC_HOOK_BLOCK, self._block)
        self._thread = threading.Thread(target=self._ticker, name="hv-ticker", daemon=True)
        self._thread.start()

    def _block(self, uc: Uc, addr: int, size: int, ud: object) -> None:
        if self.kick:
            self.kick = 0
            self.stop_reason = STOP_KICK
            uc.emu_stop()
        elif self.irq_pending and uc.reg_read(UC_X86_REG_EFLAGS) & IF_FLAG:
            self.stop_reason = STOP_IRQ
            uc.emu_stop()

    def _ticker(self) -> None:
        with self._cv:
            while self._running:
                if self._deadline is None:
                    self._cv.wait()
                    continue
                wait = (self._deadline - time.monotonic_ns()) / 1e9
                if wait <= 0:
                    self.kick = 1
                    self._deadline = None
                else:
                    self._cv.wait(wait)

    def set_deadline(self, host_ns: int | None) -> None:
        with self._cv:
            self._deadline = host_ns
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        self._thread.join()


def load(uc: Uc, dispatch: str = "auto") -> _Base:
    """'auto' prefers C; 'c' insists on it; 'python' forces the fallback."""
    if dispatch == "python" or (dispatch == "auto" and _fastpath is None):
        return PyFastpath(uc)
    if _fastpath is None:
        raise RuntimeError("the C fast path was not built (no C compiler at install time); "
                           "use --dispatch python")
    return CFastpath(uc)
