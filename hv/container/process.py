"""A guest process: its memory, its CPU context, its fds, and running it on an engine.

    p = Process("/bin/app", ["app", "-v"], ["HOME=/"], root, stdout=sys.stdout.buffer)
    status = run_to_exit(p)                 # one process, its own engine

    pool = EnginePool(size=2, warm=2)       # many processes, few engines
    while p.exit_status is None:
        why = pool.run(p, max_ns=10_000_000)    # Step.EXITED / BLOCKED / PREEMPTED
        if why is Step.BLOCKED:
            p.blocked_on.wait()             # or poll p.blocked_on.ready() among others

A process holds no engine while it is not running: its memory is host buffers
(``guest_memory``), its CPU state a saved Unicorn context (5.6 KB), its fds a
table (``fdtable``). ``step`` attaches it to the engine it is given, runs it
until it exits, blocks or its slice ends, and saves the context again.

``exit_status`` is what a shell shows: the exit code, or 128 + the signal
number for a program that was killed (a fault is SIGSEGV: 139), with a
one-line ``message`` saying why.
"""
from __future__ import annotations

import os
import posixpath
import signal
import stat
import time
import types

from unicorn.x86_const import UC_X86_REG_EIP

from hv.container import linux_abi
from hv.container.engine import STOP_FAULT, STOP_KICK, STOP_SLICE, Engine, Step, _fastpath
from hv.container.fdtable import O_RDONLY, O_WRONLY, FdTable, Stream, Wait
from hv.container.guest_memory import AddressSpace, GuestFault, OutOfMemory
from hv.container.loader import (PAGE, PROT_EXEC, PROT_READ, STACK_INITIAL, STACK_MAX, STACK_TOP, SYS_PAGE,
                                 LoadError, build_stack, map_image, read_elf, system_page)

MAX_ACCESS = 1 << 20            # the largest single read through MemoryAccess

# CPU vector -> the signal Linux sends for it (arch/x86/kernel/traps.c)
SIGNAL_OF_VECTOR = {0: signal.SIGFPE, 1: signal.SIGTRAP, 3: signal.SIGTRAP, 6: signal.SIGILL,
                    7: signal.SIGFPE, 16: signal.SIGFPE, 17: signal.SIGBUS, 19: signal.SIGFPE}
VECTOR_NAMES = {0: "divide error", 1: "debug trap", 3: "breakpoint", 4: "overflow", 5: "bound range",
                6: "invalid opcode", 7: "no FPU", 8: "double fault", 12: "stack fault",
                13: "general protection", 14: "page fault", 16: "FPU error", 17: "alignment check",
                19: "SIMD error"}
ACCESS_NAMES = {19: "read", 20: "write", 21: "fetch", 22: "write", 23: "fetch", 24: "read", 25: "read",
                26: "write", 27: "fetch"}


class MemoryAccess:
    """What a private system call (registry, extra calls) sees of guest memory: ``read``,
    ``write`` and ``read_cstr`` raise GuestFault (-EFAULT) for anything the guest could not
    access itself."""

    def __init__(self, space: AddressSpace) -> None:
        self._space = space

    def read(self, addr: int, n: int) -> bytes:
        if not 0 <= n <= MAX_ACCESS:
            raise GuestFault(addr, f"read of {n} bytes")
        return self._space.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self._space.write(addr, bytes(data))

    def read_cstr(self, addr: int, max: int = 4096) -> bytes:
        s = self._space.read_cstr(addr, min(max, MAX_ACCESS))
        if s is None:
            raise GuestFault(addr, "unterminated string")
        return s


class Process:
    """One guest program. ``program_path`` is a guest path in ``root`` (a LayeredRoot),
    or with ``root=None`` a host path and no file system beyond /dev and /proc/self/exe.
    stdin/stdout/stderr: a host fd (int) or a binary file object; None is /dev/null.
    ``strace``: a text stream that gets one line per call. ``fast_calls=False`` sends the
    calls C would answer to the Python table too (for comparing the two). ``memory_budget``:
    a guest_memory.MemoryBudget shared with other processes (the host's, for containers
    without a limit of their own). A LoadError (one line) if the program cannot be loaded."""

    def __init__(self, program_path: str, argv: list[str], envp: list[str], root=None, cwd: str = "/",
                 stdin=None, stdout=None, stderr=None, memory_limit: int | None = None, strace=None,
                 registry_calls=None, extra_calls: dict | None = None, *, pid: int = 1, ppid: int = 0,
                 uid: int = 0, gid: int = 0, max_fds: int = 1024,
                 fast_calls: bool = True, memory_budget=None) -> None:
        if not cwd.startswith("/"):
            raise ValueError("cwd must be an absolute guest path")
        for nr in extra_calls or {}:
            if nr < linux_abi.PRIVATE_BASE:
                raise ValueError(f"extra call {nr:#x} is below the private range {linux_abi.PRIVATE_BASE:#x}")
        if not 3 <= max_fds <= linux_abi.MAX_FDS:
            raise ValueError(f"max_fds must be 3..{linux_abi.MAX_FDS}")
        self.root = root
        self.cwd = posixpath.normpath(cwd)
        self.strace = strace
        # answer the hot calls in C (never under strace, which must see every call)
        self.fast_calls = fast_calls and strace is None
        self.registry_calls = registry_calls
        self.extra_calls = dict(extra_calls or {})
        self.pid, self.ppid, self.uid, self.gid = pid, ppid, uid, gid
        self.umask = 0o022
        self.sigactions: dict[int, int] = {}      # signal -> handler address (never run)
        self.exit_status: int | None = None
        self.message = ""
        self.blocked_on: Wait | None = None
        self.sleep_deadline: int | None = None    # a nanosleep in progress
        self.ctx = None
        self.cpu_ns = 0
        self.other_calls: dict[int, int] = {}     # counts of numbers C does not count
        self.engine: Engine | None = None
        self._stop = self._restart = False
        self.cproc = self._new_cproc()
        self.fds = FdTable(max_fds, self._fd_changed)
        self.space = AddressSpace(memory_limit, memory_budget)
        self.mem = MemoryAccess(self.space)
        try:
            self._load(program_path, argv, envp)
        except BaseException:
            self.space.close()
            raise
        for fd, target, mode in ((0, stdin, O_RDONLY), (1, stdout, O_WRONLY), (2, stderr, O_WRONLY)):
            self.fds.install(Stream(target, mode), at=fd)

    def _new_cproc(self):
        if _fastpath is not None:
            c = _fastpath.ffi.new("lx_proc *")
        else:
            c = types.SimpleNamespace(devnull_w=bytearray(linux_abi.MAX_FDS // 8),
                                      calls=[0] * linux_abi.COUNTED_CALLS)
        c.pid, c.tid, c.ppid = self.pid, self.pid, self.ppid
        c.uid = c.euid = self.uid
        c.gid = c.egid = self.gid
        return c

    def _fd_changed(self, fd: int, f) -> None:
        # keep the C side's "this fd is /dev/null for writing" bits current
        if fd < linux_abi.MAX_FDS:
            bit = 1 << (fd & 7)
            if f is not None and f.is_devnull and f.writable:
                self.cproc.devnull_w[fd >> 3] |= bit
            else:
                self.cproc.devnull_w[fd >> 3] &= ~bit & 0xFF

    # -- loading -------------------------------------------------------------------------
    def _load(self, program_path: str, argv: list[str], envp: list[str]) -> None:
        if self.root is None:
            self.exe = os.path.abspath(program_path)
            opener = lambda: os.open(program_path, os.O_RDONLY | os.O_CLOEXEC)
        else:
            self.exe = posixpath.normpath(posixpath.join(self.cwd, program_path))
            opener = lambda: self.root.open(self.exe, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd = opener()
        except OSError as exc:
            raise LoadError(f"{program_path}: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LoadError(f"{program_path}: not a regular file")
            image, _size = read_elf(fd)
            try:
                map_image(self.space, image, fd)
            except OutOfMemory as exc:
                raise LoadError(f"{program_path}: {exc}") from None
        finally:
            os.close(fd)
        self.image = image
        self.entry = image.entry
        self.brk_start = self.brk = image.end
        self.brk_area = None
        try:
            self.stack_area = self.space.map_stack(STACK_TOP, STACK_INITIAL, STACK_MAX)
        except OutOfMemory:
            raise LoadError("memory limit too small for the initial stack") from None
        enc = lambda s: s.encode("utf-8", "surrogateescape") if isinstance(s, str) else bytes(s)
        self.initial_sp = build_stack(self.space, image, [enc(a) for a in argv], [enc(e) for e in envp],
                                      enc(program_path), (self.uid, self.uid, self.gid, self.gid),
                                      os.urandom(16))
        self.space.map_anonymous(SYS_PAGE, PAGE, PROT_READ | PROT_EXEC, kind="sys")
        self.space.poke(SYS_PAGE, system_page(self.entry, self.initial_sp))

    # -- running -------------------------------------------------------------------------
    def step(self, engine: Engine, max_ns: int | None = None) -> Step:
        """Run on ``engine`` until the program exits, blocks or ``max_ns`` have passed."""
        if self.exit_status is not None:
            return Step.EXITED
        if self.blocked_on is not None:
            if not self.blocked_on.ready():
                return Step.BLOCKED
            self.blocked_on = None
        self.engine = engine
        engine.enter(self)
        t0 = time.perf_counter_ns()
        reason, error = engine.run(max_ns)
        self.cpu_ns += time.perf_counter_ns() - t0
        engine.uc.context_update(self.ctx)
        if self.exit_status is None:
            if reason == STOP_FAULT or error is not None:
                self._fault(engine, error)
            elif self.blocked_on is not None:
                return Step.BLOCKED
            elif reason in (STOP_SLICE, STOP_KICK):
                return Step.PREEMPTED
            else:   # e.g. a triple fault: emu_start returns with no hook having run
                eip = engine.uc.reg_read(UC_X86_REG_EIP)
                self.die(signal.SIGSEGV, f"the CPU stopped at eip {eip:#x}")
        self._finish()
        return Step.EXITED

    def _fault(self, engine: Engine, error) -> None:
        eip = engine.uc.reg_read(UC_X86_REG_EIP)
        if error is None:
            vector = engine.ctl.fault_vector
            engine.reset_old_exception()
            sig = SIGNAL_OF_VECTOR.get(vector, signal.SIGSEGV)
            what = VECTOR_NAMES.get(vector, f"int {vector:#x}")
            self.die(sig, f"{signal.Signals(sig).name}: {what} at eip {eip:#x}")
            return
        if "INSN_INVALID" in repr(error) or "Invalid instruction" in str(error):
            self.die(signal.SIGILL, f"SIGILL: invalid instruction at eip {eip:#x}")
            return
        if engine.fault_addr is not None:
            access, addr = engine.fault_addr
            what = f"{ACCESS_NAMES.get(access, 'access')} of {addr:#x}"
            # the faulting instruction: the engine reports the fault only at its block's end
            eip = engine.fault_eip if engine.fault_eip is not None else eip
        else:
            what = str(error)
        self.die(signal.SIGSEGV, f"SIGSEGV: invalid {what} at eip {eip:#x}")

    def _finish(self) -> None:
        """The program has ended: give back its engine mapping, memory and fds."""
        engine = self.space.engine
        if engine is not None and engine.resident is self:
            engine.detach()
        self.engine = None
        self.space.close()
        self.fds.close_all()

    def close(self) -> None:
        """Discard a process that has not exited (it is killed)."""
        if self.exit_status is None:
            self.die(signal.SIGKILL, "killed")
        self._finish()

    # -- what system calls do to the process -----------------------------------------------
    def syscall(self, nr: int, args) -> int:
        """One call from the guest (C or Python hook); returns EAX as unsigned."""
        ret = linux_abi.dispatch(self, nr, args)
        if self._stop or self._restart:
            ctl = self.engine.ctl
            ctl.py_stop = 1
            ctl.py_restart = 1 if self._restart else 0
            self._stop = self._restart = False
        return ret & 0xFFFFFFFF

    def exit(self, code: int) -> None:
        self.exit_status = code & 0xFF
        self.message = f"exited with status {self.exit_status}"
        self._stop = True

    def die(self, sig: int, message: str) -> None:
        """End by a signal: exit status 128 + sig, as a shell shows it."""
        self.exit_status = 128 + int(sig)
        self.message = message
        self._stop = True

    def kill_internal(self, message: str) -> None:
        self.die(signal.SIGSYS, message)

    def block(self, wait: Wait) -> None:
        """The current call waits: leave the engine, run the call again when ``wait`` is over."""
        self.blocked_on = wait
        self._restart = True

    def grow_stack(self, addr: int) -> bool:
        """A fault below the stack: grow it (64 KiB at a time) if ``addr`` is within RLIMIT_STACK."""
        a = self.stack_area
        if not STACK_TOP - STACK_MAX <= addr < a.start:
            return False
        try:
            self.space.grow_down(a, max(STACK_TOP - STACK_MAX, addr & ~0xFFFF))
        except OutOfMemory:
            return False
        return True

    def call_counts(self) -> dict[int, int]:
        """System calls made so far, by number (C and Python counts merged)."""
        out = {nr: n for nr, n in enumerate(self.cproc.calls) if n}
        for nr, n in self.other_calls.items():
            out[nr] = out.get(nr, 0) + n
        return out


def run_to_exit(process: Process, engine: Engine | None = None) -> int:
    """Run one process until it exits, waiting in the host thread whenever it blocks;
    returns its exit status. Without ``engine`` it gets one of its own with no time
    slices (no block hook: CPU-bound code runs ~1.6x faster)."""
    own = engine is None
    if own:
        engine = Engine(preemptible=False)
    try:
        while True:
            why = process.step(engine)
            if why is Step.EXITED:
                return process.exit_status
            if why is Step.BLOCKED:
                process.blocked_on.wait()
    finally:
        if own:
            engine.close()
