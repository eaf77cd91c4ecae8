"""Stopping a running machine, stepping it, breakpoints and watchpoints: what the gdb stub
and the monitor are built on.

Threads. The protocol servers (hv/debug/gdbstub.py, hv/debug/monitor.py) run in their own
threads; the engine is not thread-safe, so they never touch it. They hand work to the vCPU
thread with ``request(fn)``: ``fn(machine)`` runs there between slices, or at once while
the machine is stopped, and its result (or exception) comes back. ``interrupt()`` (Ctrl-C
in gdb, ``stop`` in the monitor) is the only call that acts from another thread: it sets
the fast path's kick, so the guest stops at its next block.

Cost. Nothing is installed while no one debugs: a breakpoint is a code hook on exactly its
address (docs/unicorn.md §3: never a second block hook), a watchpoint a memory hook on its
range plus a per-instruction hook while any watchpoint exists (it makes the stop land just
after the accessing instruction, as hardware watchpoints do), a step one counted
instruction. Removing the last one removes the hooks.

While stopped the virtual clock is paused: guest time does not pass while a student reads
registers.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from unicorn import UC_HOOK_CODE, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE
from unicorn import x86_const as X

from hv import codepages, fastpath

SIGINT, SIGTRAP = 2, 5
WATCH_KINDS = {"w": UC_HOOK_MEM_WRITE, "r": UC_HOOK_MEM_READ,
               "a": UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE}


@dataclass
class StopEvent:
    """Why the machine stopped: ``signal`` for gdb (SIGTRAP for a breakpoint, watchpoint or
    step, SIGINT for an interrupt), with the details a stop reply or the monitor shows."""
    signal: int
    reason: str                     # "break", "watch", "step", "interrupt", "start"
    address: int | None = None      # breakpoint or watched address
    kind: str | None = None         # watchpoint kind: w, r, a

    def describe(self) -> str:
        if self.reason == "break":
            return f"breakpoint at {self.address:#x}"
        if self.reason == "watch":
            return f"watchpoint ({self.kind}) at {self.address:#x}"
        return {"step": "stepped", "interrupt": "stopped", "start": "stopped at start"}.get(
            self.reason, self.reason)


@dataclass
class _Request:
    fn: Callable[[Any], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


STEP_TRIES = 5                  # a step stopped by a kick before its instruction runs again


class Debugger:
    def __init__(self, machine, start_stopped: bool = False) -> None:
        self.m = machine
        self.vcpu = machine.vcpu
        self.uc = machine.vcpu.uc
        self._requests: queue.Queue[_Request] = queue.Queue()
        self._lock = threading.Lock()
        self.stopped = False
        self.event: StopEvent | None = None
        self.listeners: list[Callable[[StopEvent | None], None]] = []
        self.breakpoints: dict[int, int] = {}           # linear address -> hook handle
        self.watchpoints: dict[tuple[int, int, str], int] = {}
        self._watch_step_hook: int | None = None
        self._watch_hit: tuple[int, str] | None = None
        self._skip_break: int | None = None              # the instruction being stepped
        self._want_stop: StopEvent | None = None
        self._pending_step: str | None = None        # "stop": step and stop; "over": step, run
        if start_stopped:
            self._want_stop = StopEvent(SIGTRAP, "start")
        # Breakpoints and watchpoints stop from code hooks, at once only if the engine
        # looks for a stop after each hook (each adder flushes the blocks it needs redone).
        codepages.exit_checks(self.uc, True)

    # -- from any thread -------------------------------------------------------------------
    def request(self, fn: Callable[[Any], Any], timeout: float | None = 10.0) -> Any:
        """Run ``fn(machine)`` on the vCPU thread and return its result."""
        if threading.current_thread() is self.m.vcpu_thread:
            return fn(self.m)
        r = _Request(fn)
        self._requests.put(r)
        self.m.wake_vcpu()
        if not r.done.wait(timeout):
            raise TimeoutError("the machine did not answer (is it running?)")
        if r.error is not None:
            raise r.error
        return r.result

    def interrupt(self) -> None:
        """Stop the guest at its next block and report SIGINT (gdb's Ctrl-C)."""
        with self._lock:
            if not self.stopped:
                self._want_stop = StopEvent(SIGINT, "interrupt")
        self.m.wake_vcpu()

    # -- on the vCPU thread ------------------------------------------------------------------
    def service(self) -> None:
        """Between slices: run queued requests; become stopped if asked."""
        self._run_requests()
        with self._lock:
            want, self._want_stop = self._want_stop, None
        if want is not None and not self.stopped:
            self._enter_stop(want)

    def _run_requests(self) -> None:
        while True:
            try:
                r = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                r.result = r.fn(self.m)
            except BaseException as e:          # handed back to the requesting thread
                r.error = e
            r.done.set()

    def wait_while_stopped(self) -> None:
        """The vCPU loop's idle state while stopped: serve requests until someone continues,
        steps, or the run ends."""
        while self.stopped and not self.m.stop_requested:
            try:
                r = self._requests.get(timeout=0.05)
            except queue.Empty:
                continue
            self._requests.put(r)
            self._run_requests()

    def _enter_stop(self, event: StopEvent) -> None:
        self.stopped = True
        self.event = event
        self.m.clock.pause()
        for listener in list(self.listeners):
            listener(event)

    def _leave_stop(self) -> None:
        self.stopped = False
        self.event = None
        self.m.clock.resume()

    def cont(self) -> None:
        """Continue (from a request while stopped). A breakpoint at the current address is
        stepped over first, so continuing does not stop there again at once."""
        if not self.stopped:
            return
        if self.vcpu.pc() in self.breakpoints:
            self._pending_step = "over"     # run that one instruction first, then go on
        self._leave_stop()

    def step(self) -> None:
        """Execute one instruction, then stop with SIGTRAP (a request while stopped)."""
        if not self.stopped:
            raise RuntimeError("the machine is running: stop it first")
        self._pending_step = "stop"
        self._leave_stop()

    def take_step(self) -> bool:
        """Called by the vCPU loop before a slice: if a step is pending, run one
        instruction and stop. True when it did."""
        mode = self._pending_step
        if not mode:
            return False
        self._pending_step = None
        uc, vcpu = self.uc, self.vcpu
        at = vcpu.pc()
        eip = uc.reg_read(X.UC_X86_REG_EIP)
        try:
            was_hlt = vcpu.read_linear(at, 1) == b"\xf4"
        except Exception:
            was_hlt = False
        self._skip_break = at
        vcpu.cpu.enter()
        fast = vcpu.fast
        fast.irq_pending = 0          # a step does not take interrupts (as QEMU's gdbstub)
        # The engine counts instructions with a code hook it adds on the first counted run,
        # but blocks translated before that carry no hook calls: drop them, or the "one
        # instruction" would be the rest of a cached block.
        uc.ctl_flush_tb()
        try:
            # A kick stops the step at its block start, before the instruction: the request
            # that asked for the step sends one, and the ticker re-sends an unanswered one
            # while the CPU sat stopped. Answer it (ack), and go again if a kick still came
            # first; the loop looks at the clock after the step anyway.
            for _ in range(STEP_TRIES):
                fast.ack()
                fast.kick = 0
                fast.stop_reason = 0
                uc.emu_start(eip, 1 << 48, count=1)
                if fast.stop_reason != fastpath.STOP_KICK:
                    break
        except Exception as e:
            self.m.fail(f"guest fault while stepping: {e} at {vcpu.where()}")
            return True
        finally:
            self._skip_break = None
        # A counted stop leaves no reason either; HLT is the step that ran an F4 byte.
        if was_hlt and uc.reg_read(X.UC_X86_REG_EIP) == eip + 1:
            vcpu.halted = True
        if mode == "stop" and not self.m.stop_requested:
            self._enter_stop(StopEvent(SIGTRAP, "step"))
        return True

    # -- breakpoints -------------------------------------------------------------------------
    def add_breakpoint(self, address: int) -> None:
        address &= 0xFFFFFFFF
        if address in self.breakpoints:
            return
        self.breakpoints[address] = self.uc.hook_add(UC_HOOK_CODE, self._on_break, None,
                                                     address, address)
        self.uc.ctl_remove_cache(address, address + 1) if not self.vcpu.paging() else \
            self.uc.ctl_flush_tb()

    def remove_breakpoint(self, address: int) -> bool:
        handle = self.breakpoints.pop(address & 0xFFFFFFFF, None)
        if handle is None:
            return False
        self.uc.hook_del(handle)
        self.uc.ctl_flush_tb()
        return True

    def _on_break(self, uc, address: int, size: int, ud) -> None:
        if address == self._skip_break:         # the instruction being stepped over
            return
        if address in self.breakpoints:
            # A code hook runs before its instruction: stopping here is exact.
            self._want_stop = StopEvent(SIGTRAP, "break", address)
            self.vcpu.fast.stop_reason = 3          # STOP_HOST
            uc.emu_stop()

    # -- watchpoints ---------------------------------------------------------------------------
    def add_watchpoint(self, address: int, length: int, kind: str = "w") -> None:
        if kind not in WATCH_KINDS:
            raise ValueError(f"watchpoint kind {kind!r} (w, r, a)")
        if not 1 <= length <= 4096:
            raise ValueError("a watchpoint covers 1 to 4096 bytes")
        key = (address & 0xFFFFFFFF, length, kind)
        if key in self.watchpoints:
            return
        self.watchpoints[key] = self.uc.hook_add(WATCH_KINDS[kind], self._on_watch, key,
                                                 key[0], key[0] + length - 1)
        if self._watch_step_hook is None:
            self._watch_step_hook = self.uc.hook_add(UC_HOOK_CODE, self._after_watch)
            self.m.mem.write_observers.append(self._on_host_write)
        self.uc.ctl_flush_tb()
        # Stores through TLB entries already made dirty (hv/codepages.py) would skip the
        # write hook: a fresh TLB starts every entry on the slow path again.
        codepages.flush_tlb(self.uc)

    def remove_watchpoint(self, address: int, length: int, kind: str = "w") -> bool:
        handle = self.watchpoints.pop((address & 0xFFFFFFFF, length, kind), None)
        if handle is None:
            return False
        self.uc.hook_del(handle)
        if not self.watchpoints and self._watch_step_hook is not None:
            self.uc.hook_del(self._watch_step_hook)
            self._watch_step_hook = None
            self.m.mem.write_observers.remove(self._on_host_write)
        self.uc.ctl_flush_tb()
        return True

    def _on_watch(self, uc, access, address, size, value, key) -> None:
        # Let the access happen; the per-instruction hook stops before the next one.
        if self._watch_hit is None:
            self._watch_hit = (key[0], key[2])

    def _on_host_write(self, addr: int, length: int) -> None:
        """Host code wrote guest memory (a synthetic BIOS service, DMA, a virtio device): a
        write watchpoint over it fires too, once that host code is done. Watch addresses
        are compared as physical (the same when paging is off)."""
        for (start, n, kind) in self.watchpoints:
            if kind != "r" and addr < start + n and start < addr + length:
                if self._want_stop is None:
                    self._want_stop = StopEvent(SIGTRAP, "watch", start, kind)
                    self.vcpu.kick()
                return

    def _after_watch(self, uc, address, size, ud) -> None:
        if self._watch_hit is not None:
            addr, kind = self._watch_hit
            self._watch_hit = None
            self._want_stop = StopEvent(SIGTRAP, "watch", addr, kind)
            self.vcpu.fast.stop_reason = 3
            uc.emu_stop()

    def clear(self) -> None:
        """Remove every breakpoint and watchpoint (a debugger detached)."""
        for address in list(self.breakpoints):
            self.remove_breakpoint(address)
        for key in list(self.watchpoints):
            self.remove_watchpoint(*key)

    # -- memory writes for debuggers (added for the gdb stub and the monitor) -----------------
    def poke(self, linear: int, data: bytes) -> None:
        """Write guest memory at ``linear`` for a debugger user (gdb's M/X packets). Not a
        guest or device write: watchpoints over it stay quiet, as on hardware, where a
        debugger's own writes never trip a debug register. GuestFault if unmapped."""
        observing = self._on_host_write in self.m.mem.write_observers
        if observing:
            self.m.mem.write_observers.remove(self._on_host_write)
        try:
            self.vcpu.write_linear(linear & 0xFFFFFFFF, data)
        finally:
            if observing:
                self.m.mem.write_observers.append(self._on_host_write)
