"""Unicorn engines for process containers, and the pool that shares a few among many processes.

An engine costs ~2.9 MiB of host memory, so processes do not own one: a process
owns its guest memory and a saved CPU context, and runs on whichever engine it
is given. ``attach`` maps the process's areas with ``mem_map_ptr`` (no copy)
and restores its context; the process stays resident after its slice, so the
next slice on the same engine costs nothing and keeps its translated code.
Only when another process needs the engine are the areas unmapped (the cost
scales with the mapped size; docs/linux-abi.md).

The hooks, all registered once per engine:

* ``UC_HOOK_INTR``: ``lx_intr`` in C (hv/fastpath/linux_syscall.c): `int $0x80`
  system calls, answered in C when hot, else by the Python table; any other
  vector ends the program with the signal Linux would send;
* ``UC_HOOK_BLOCK``: ``lx_block_hook`` in C: the end of a time slice (a deadline
  it checks every 256 blocks, or ``kick``), exactly at a block start: never
  ``emu_start(timeout=)`` or a cross-thread ``emu_stop`` (docs/unicorn.md §3);
* ``IN``/``OUT``: a fault, as at CPL3 with IOPL 0 (Unicorn does not check it);
* unmapped and protected accesses (Python; they run only on a miss): the stack
  grows on demand, anything else is SIGSEGV with the address recorded.

Without the C module (no compiler at install time) the same hooks run in
Python, much slower.
"""
from __future__ import annotations

import ctypes
import enum
import time

from unicorn import (UC_ARCH_X86, UC_HOOK_BLOCK, UC_HOOK_INSN, UC_HOOK_INTR, UC_HOOK_MEM_FETCH_UNMAPPED,
                     UC_HOOK_MEM_PROT, UC_HOOK_MEM_READ_UNMAPPED, UC_HOOK_MEM_WRITE_UNMAPPED, UC_MODE_32,
                     Uc)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from hv import codepages
from hv.container.loader import (ENTRY_FRAME, GDT_ADDR, GDT_ENTRIES, KERNEL_CS, KERNEL_DS, TRAMPOLINE,
                                 USER_DS)

try:  # pragma: no cover - depends on the build
    from hv.fastpath import _fastpath  # type: ignore[attr-defined]
    if not hasattr(_fastpath.lib, "lx_intr"):     # built before linux_syscall.c existed
        _fastpath = None
except ImportError:
    _fastpath = None

FNINIT_FPCW = 0x037F
MXCSR_DEFAULT = 0x1F80
UNTIL = 1 << 48                 # an emu_start end address a 32-bit guest never reaches
TCG_BUFFER = 32 << 20           # translation cache per engine (virtual; default is 1 GiB)

# Why emu_start returned (lx_engine.stop_reason, linux_syscall.c)
STOP_NONE, STOP_KICK, STOP_SLICE, STOP_FAULT, STOP_PY = range(5)

# uc_context blob: a 40-byte header, then CPUX86State (docs/unicorn.md §2)
CTX_HEADER = 40
ENV_EIP = 128
ENV_OLD_EXCEPTION = 5496

ARG_REGS = (X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX, X.UC_X86_REG_ESI,
            X.UC_X86_REG_EDI, X.UC_X86_REG_EBP)


def c_available() -> bool:
    return _fastpath is not None


class Step(enum.Enum):
    """Why ``Process.step`` returned."""

    EXITED = "exited"           # exit_status is set
    BLOCKED = "blocked"         # process.blocked_on says what it waits for
    PREEMPTED = "preempted"     # the time slice ended (or the engine was kicked)


def _blob_base(ctx) -> int:
    return ctypes.cast(ctx.context, ctypes.c_void_p).value + CTX_HEADER


class Engine:
    """One Unicorn x86 engine that runs one process at a time."""

    def __init__(self, dispatch: str = "auto", preemptible: bool = True) -> None:
        """``preemptible=False`` leaves out the block hook: ~1.6x faster CPU-bound code
        (measured: docs/linux-abi.md), but ``run`` can then not end a time slice, and a
        fault found by an I/O hook ends the program only at its next system call."""
        if dispatch not in ("auto", "c", "python"):
            raise ValueError(f"dispatch must be auto, c or python, not {dispatch!r}")
        if dispatch == "c" and _fastpath is None:
            raise RuntimeError("the C fast path was not built (no C compiler at install time)")
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.ctl_set_tcg_buffer_size(TCG_BUFFER)
        codepages.track(uc)             # stores at full speed off pages with code
        # Stops come between blocks (interrupt hook): without the engine's per-access exit
        # checks an access to an unmapped page ends the slice only at the end of its block,
        # so the memory hooks mark the fault pending and no system call is served after it.
        codepages.exit_checks(uc, False)
        self.kind = "python" if dispatch == "python" or _fastpath is None else "c"
        self.preemptible = preemptible
        self.resident = None            # the process whose areas are mapped here
        self.fault_addr = None          # (access, address) of the last failed access
        self.fault_eip = None           # and the instruction that made it
        self._py_block_hook = None
        if self.kind == "c":
            self._install_c()
        else:
            self.ctl = _PyCtl()
            uc.hook_add(UC_HOOK_INTR, self._py_intr)
            uc.hook_add(UC_HOOK_INSN, self._py_port, None, 1, 0, X.UC_X86_INS_IN)
            uc.hook_add(UC_HOOK_INSN, self._py_port, None, 1, 0, X.UC_X86_INS_OUT)
        uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED | UC_HOOK_MEM_FETCH_UNMAPPED,
                    self._on_unmapped)
        uc.hook_add(UC_HOOK_MEM_PROT, self._on_prot)
        # A new process starts from this CPL0 state: once a process has run the engine is
        # at CPL3, where the host can no longer load CS/SS with ring-0 selectors (docs/unicorn.md §1).
        self.ctx0 = uc.context_save()
        self._calibrate()

    def _install_c(self) -> None:
        ffi, lib = _fastpath.ffi, _fastpath.lib
        self._ffi, self._lib = ffi, lib
        self.ctl = ctl = ffi.new("lx_engine *")
        self._handle = ffi.new_handle(self)
        addr = lambda f: ffi.cast("void *", ctypes.cast(f, ctypes.c_void_p).value)
        ctl.reg_read, ctl.reg_write, ctl.emu_stop = (addr(uclib.uc_reg_read), addr(uclib.uc_reg_write),
                                                     addr(uclib.uc_emu_stop))
        for i, r in enumerate((X.UC_X86_REG_EAX,) + ARG_REGS + (X.UC_X86_REG_EIP,)):
            ctl.regs[i] = r
        ctl.handle = self._handle
        ctl.fast = 1
        ud = ctypes.c_void_p(int(ffi.cast("uintptr_t", ctl)))
        self._hooks = []
        hooks = [(UC_HOOK_INTR, "lx_intr", ()),
                 (UC_HOOK_INSN, "lx_port_in", (ctypes.c_int(X.UC_X86_INS_IN),)),
                 (UC_HOOK_INSN, "lx_port_out", (ctypes.c_int(X.UC_X86_INS_OUT),))]
        if self.preemptible:
            hooks.append((UC_HOOK_BLOCK, "lx_block_hook", ()))
        for kind, name, extra in hooks:
            hook = ctypes.c_size_t()
            fn = ctypes.c_void_p(int(ffi.cast("uintptr_t", ffi.addressof(lib, name))))
            err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(hook), kind, fn, ud, ctypes.c_uint64(1),
                                    ctypes.c_uint64(0), *extra)
            if err:
                raise RuntimeError(f"uc_hook_add({name}) failed: {err}")
            self._hooks.append(hook)

    def _calibrate(self) -> None:
        """Refuse to run if the context blob is not laid out as the notes measured (the
        old_exception reset below writes into it)."""
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_EIP, 0x55667788)
        ctx = uc.context_save()
        base = _blob_base(ctx)
        ok = (ctypes.c_uint32.from_address(base + ENV_EIP).value == 0x55667788
              and ctypes.c_int32.from_address(base + ENV_OLD_EXCEPTION).value == -1)
        uc.context_restore(self.ctx0)
        if not ok:
            raise RuntimeError("unexpected Unicorn context layout (hv needs unicorn 2.1.4)")

    # -- attaching processes ---------------------------------------------------------------
    def attach(self, process) -> None:
        """Make ``process`` the one that runs here (map its areas, restore its CPU)."""
        if self.resident is process:
            return
        self.detach()
        uc = self.uc
        for a in process.space.areas:
            uc.mem_map_ptr(a.start, a.end - a.start, a.prot, a.buf.addr + a.offset)
        process.space.engine = self
        self.resident = process
        self.ctl.proc = process.cproc
        self.ctl.fast = 1 if process.fast_calls else 0
        if process.ctx is None:
            self._enter_setup()
        else:
            uc.context_restore(process.ctx)

    def detach(self) -> None:
        """Unmap the resident process (its context was saved at the end of its slice)."""
        p = self.resident
        if p is None:
            return
        for a in p.space.areas:
            self.uc.mem_unmap(a.start, a.end - a.start)
        p.space.engine = None
        self.resident = None
        self.ctl.proc = self._ffi.NULL if self.kind == "c" else None

    def _enter_setup(self) -> None:
        """CPU state for a new process: CPL0 at the trampoline, whose `iretd` enters the
        program at CPL3. The CPU makes the ring transition itself (docs/linux-abi.md)."""
        uc = self.uc
        uc.context_restore(self.ctx0)
        uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_ADDR, GDT_ENTRIES * 8 - 1, 0))
        uc.reg_write(X.UC_X86_REG_CS, KERNEL_CS)
        uc.reg_write(X.UC_X86_REG_SS, KERNEL_DS)
        # DS/ES must already be DPL3: an iret to an outer ring nulls DPL0 data segments.
        uc.reg_write(X.UC_X86_REG_DS, USER_DS)
        uc.reg_write(X.UC_X86_REG_ES, USER_DS)
        uc.reg_write(X.UC_X86_REG_FS, 0)
        uc.reg_write(X.UC_X86_REG_GS, 0)
        uc.reg_write(X.UC_X86_REG_ESP, ENTRY_FRAME)
        uc.reg_write(X.UC_X86_REG_EIP, TRAMPOLINE)
        # The x87 state Linux gives a new program (fninit): 64-bit precision. The CPU's reset
        # value (0x0040) would round every x87 result to single precision.
        uc.reg_write(X.UC_X86_REG_FPCW, FNINIT_FPCW)
        uc.reg_write(X.UC_X86_REG_MXCSR, MXCSR_DEFAULT)

    def enter(self, process) -> None:
        """Attach a new process and run its `iretd` to the program's first instruction."""
        self.attach(process)
        if process.ctx is None:
            self.uc.emu_start(TRAMPOLINE, process.entry)
            process.ctx = self.uc.context_save()

    # -- mirroring the resident process's memory changes ----------------------------------
    def map_area(self, area, start: int, end: int) -> None:
        self.uc.mem_map_ptr(start, end - start, area.prot, area.buf.addr + area.host(start))

    def unmap_range(self, space, start: int, end: int) -> None:
        """Unmap whatever of [start, end) is mapped (the range may have holes)."""
        addr = start
        while addr < end:
            a = space.area_at(addr)
            if a is None:
                nxt = [b.start for b in space.areas if b.start > addr]
                addr = min(nxt) if nxt else end
                continue
            hi = min(a.end, end)
            self.uc.mem_unmap(addr, hi - addr)
            addr = hi

    def protect_range(self, start: int, end: int, prot: int) -> None:
        self.uc.mem_protect(start, end - start, prot)

    def remove_cache(self, lo: int, hi: int) -> None:
        self.uc.ctl_remove_cache(lo, hi)

    def reset_old_exception(self) -> None:
        """Unicorn never clears ``old_exception``: without this the next fault on this engine
        would arrive as #DF and the one after as a silent stop (docs/unicorn.md §1)."""
        ctx = self.uc.context_save()
        ctypes.c_int32.from_address(_blob_base(ctx) + ENV_OLD_EXCEPTION).value = -1
        self.uc.context_restore(ctx)

    # -- running ---------------------------------------------------------------------------
    def run(self, max_ns: int | None) -> tuple[int, Exception | None]:
        """Run the resident process from its EIP; returns (stop reason, UcError or None)."""
        ctl, uc = self.ctl, self.uc
        ctl.stop_reason = STOP_NONE
        ctl.kick = ctl.fault_pending = 0
        if max_ns is not None and not self.preemptible:
            raise ValueError("time slices need a preemptible engine")
        if max_ns is not None:
            ctl.deadline_ns = time.monotonic_ns() + max(max_ns, 1)
            ctl.countdown = 1
            if self.kind == "python":
                self._py_block_hook = uc.hook_add(UC_HOOK_BLOCK, self._py_block)
        else:
            ctl.deadline_ns = 0
        self.fault_addr = self.fault_eip = None
        error = None
        try:
            uc.emu_start(uc.reg_read(X.UC_X86_REG_EIP), UNTIL)
        except Exception as exc:        # UcError: an access the hooks could not fix
            error = exc
        finally:
            if self._py_block_hook is not None:
                uc.hook_del(self._py_block_hook)
                self._py_block_hook = None
        return ctl.stop_reason, error

    def kick(self) -> None:
        """Stop at the next block start (safe from another thread)."""
        self.ctl.kick = 1

    def close(self) -> None:
        self.detach()

    # -- memory hooks (Python: they run only when an access misses) --------------------------
    def _on_unmapped(self, uc, access, address, size, value, ud) -> bool:
        p = self.resident
        if p is not None and access != 23 and p.grow_stack(address):   # 23: UC_MEM_FETCH_UNMAPPED
            return True
        return self._memory_fault(access, address)

    def _on_prot(self, uc, access, address, size, value, ud) -> bool:
        return self._memory_fault(access, address)

    def _memory_fault(self, access, address) -> bool:
        """The access fails (the engine reports it when the slice ends); until then nothing
        may run on the program's behalf: the block hook stops at the next block start and
        the interrupt hook serves no system call (docs/unicorn.md §10)."""
        self.fault_addr = (access, address)
        self.fault_eip = self.uc.reg_read(X.UC_X86_REG_EIP)
        self.ctl.fault_pending = self.ctl.kick = 1
        return False

    # -- the Python fallback -------------------------------------------------------------------
    def _py_intr(self, uc, intno, ud) -> None:
        ctl, p = self.ctl, self.resident
        if ctl.fault_pending or intno != 0x80 or p is None:
            intno = ctl.fault_vector if ctl.fault_pending else intno
            ctl.fault_vector = intno
            ctl.stop_reason = STOP_FAULT
            uc.emu_stop()
            return
        nr = uc.reg_read(X.UC_X86_REG_EAX)
        if nr < len(p.cproc.calls):
            p.cproc.calls[nr] += 1
        args = [uc.reg_read(r) for r in ARG_REGS]
        ret = p.syscall(nr, args)
        if ctl.py_restart:
            ctl.py_restart = 0
            if nr < len(p.cproc.calls):
                p.cproc.calls[nr] -= 1
            uc.reg_write(X.UC_X86_REG_EIP, uc.reg_read(X.UC_X86_REG_EIP) - 2)
        else:
            uc.reg_write(X.UC_X86_REG_EAX, ret)
        if ctl.py_stop:
            ctl.py_stop = 0
            ctl.stop_reason = STOP_PY
            uc.emu_stop()

    def _py_port(self, uc, *args) -> int:
        self.ctl.fault_vector = 13
        self.ctl.fault_pending = self.ctl.kick = 1
        if self._py_block_hook is None:
            self._py_block_hook = uc.hook_add(UC_HOOK_BLOCK, self._py_block)
        return 0xFFFFFFFF

    def _py_block(self, uc, addr, size, ud) -> None:
        ctl = self.ctl
        if ctl.kick:
            ctl.kick = 0
            ctl.stop_reason = STOP_FAULT if ctl.fault_pending else STOP_KICK
            uc.emu_stop()
        elif ctl.deadline_ns and time.monotonic_ns() >= ctl.deadline_ns:
            ctl.stop_reason = STOP_SLICE
            uc.emu_stop()


class _PyCtl:
    """The lx_engine fields the Python fallback uses."""

    def __init__(self) -> None:
        self.proc = None
        self.fast = 0
        self.kick = 0
        self.stop_reason = STOP_NONE
        self.fault_vector = -1
        self.fault_pending = 0
        self.deadline_ns = 0
        self.countdown = 0
        self.py_stop = 0
        self.py_restart = 0
        self.n_c = self.n_py = 0


class EnginePool:
    """A few engines shared by many processes: ``run(process, max_ns)`` gives the process
    an engine for one slice, preferring the one it is still resident on."""

    def __init__(self, size: int = 1, warm: int = 0, dispatch: str = "auto") -> None:
        if size < 1 or not 0 <= warm <= size:
            raise ValueError("need size >= 1 and 0 <= warm <= size")
        self.size, self.dispatch = size, dispatch
        self.idle: list[Engine] = [Engine(dispatch) for _ in range(warm)]
        self.busy: list[Engine] = []

    def acquire(self, process=None) -> Engine:
        for e in self.idle:
            if process is not None and e.resident is process:
                break
        else:
            empty = [e for e in self.idle if e.resident is None]
            if empty:
                e = empty[0]
            elif self.idle:
                e = self.idle[0]
            elif len(self.busy) < self.size:
                e = Engine(self.dispatch)
                self.idle.append(e)
            else:
                raise RuntimeError(f"all {self.size} engines are busy")
        self.idle.remove(e)
        self.busy.append(e)
        return e

    def release(self, engine: Engine) -> None:
        self.busy.remove(engine)
        self.idle.append(engine)

    def run(self, process, max_ns: int | None = None) -> Step:
        engine = self.acquire(process)
        try:
            return process.step(engine, max_ns)
        finally:
            self.release(engine)

    def close(self) -> None:
        for e in self.idle + self.busy:
            e.close()
        self.idle.clear()
        self.busy.clear()


def _on_syscall_error(exc_type, exc, tb) -> None:
    # A handler raised something it should have turned into an errno: a bug in hv, not the
    # guest's doing. End the process with SIGSYS and the reason, not a crash of the host.
    import traceback
    engine = _CURRENT[0]
    if engine is not None and engine.resident is not None:
        reason = "".join(traceback.format_exception_only(exc_type, exc)).strip()
        engine.resident.kill_internal(f"internal error in a system call: {reason}")
        engine.ctl.py_stop = 1


_CURRENT: list = [None]

if _fastpath is not None:  # pragma: no branch - depends on the build
    @_fastpath.ffi.def_extern(onerror=_on_syscall_error)
    def lx_py_syscall(handle, nr, args):
        engine = _fastpath.ffi.from_handle(handle)
        _CURRENT[0] = engine
        return engine.resident.syscall(nr, _fastpath.ffi.unpack(args, 6))
