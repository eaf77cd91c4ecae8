"""The virtual CPU: one Unicorn x86 engine and the loop that runs it.

Design (measured, see docs/unicorn.md):
* The engine is opened in 32-bit mode even for real-mode guests (CR0.PE
  cleared); UC_MODE_16 mis-handles segment bases once a guest enters
  protected mode.
* Guest RAM is the machine's ``mmap`` buffer mapped with ``mem_map_ptr``:
  no copies between devices and the engine.
* The host regains control only at translated-block starts, through the
  fast path's flag-testing block hook. Never by timeout, a cross-thread stop,
  or an ``emu_stop`` from an I/O or MMIO hook (those re-run instructions): a hook
  that needs the host sets ``kick`` and the block hook stops at the next block.
* Hooks that move the guest (interrupt delivery, hypercalls) write EIP through
  the context blob, so the engine keeps syncing EIP for later I/O hooks in the
  same slice (a ``reg_write(EIP)`` inside a hook leaves them a stale EIP).
* Every host read at a guest-visible address (EIP, the stack, IDT/GDT/TSS) goes
  through ``read_linear``, a page-table walk (2-level and PAE) with no side effects.
* HLT makes ``emu_start`` return with no reason recorded; the loop then
  idles on the clock's next deadline instead of spinning.
"""
from __future__ import annotations

import ctypes
import threading
import traceback
from typing import TYPE_CHECKING, Callable

from unicorn import (UC_ARCH_X86, UC_HOOK_INSN, UC_HOOK_INSN_INVALID,
                     UC_HOOK_MEM_FETCH_UNMAPPED, UC_HOOK_MEM_WRITE_PROT, UC_MODE_32,
                     UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, Uc, UcError)
from unicorn import x86_const as X

from hv import codepages, exits, fastpath
from hv.clock import VIRTUAL_NS_PER_BLOCK
from hv.hypercall import BLOCK, SITE_LEN, VMCALL, HypercallContext, Regs
from hv.cpu import APIC_BASE_RESET, KIND_EXC, KIND_SOFT, CpuAssist, check_layout
from hv.irq import ERROR_CODE_VECTORS, IF, GuestFault, InterruptDelivery
from hv.memory import (CONVENTIONAL_END, HIGH_BASE, ROM_BASE, ROM_END, VIDEO_BASE,
                       GuestMemory, GuestMemoryError)

if TYPE_CHECKING:
    from hv.machine import Machine


UNTIL = 1 << 48          # unused with the exits list enabled: run until stopped
PAGE = 0x1000
A20_WRAP = 0x10000       # with A20 off, 1 MiB..1 MiB+64 KiB aliases 0..64 KiB

# CPUX86State offsets inside a Unicorn 2.1.4 context blob (docs/unicorn.md §2); checked
# by calibrate() at start-up, because a rebuilt engine may move them.
CTX_HEADER = 40
ENV_EIP = 128
ENV_HFLAGS = 176
ENV_SEGS = 184           # segs[6]: ES CS SS DS FS GS, 24 bytes each: sel, pad, base, limit, flags
ENV_ERROR_CODE = 5384
ENV_EXCEPTION_IS_INT = 5388
ENV_OLD_EXCEPTION = 5496
# The engine's breakpoints for DR0-DR3: 4 host pointers just before old_exception.
HW_BREAKPOINTS = slice(ENV_OLD_EXCEPTION - 32, ENV_OLD_EXCEPTION)
HF_INHIBIT_IRQ = 1 << 3
SEG_CS, SEG_SS = 1, 2
CR0_PG = 1 << 31
CR0_WP = 1 << 16
CR4_PSE, CR4_PAE = 1 << 4, 1 << 5
PDE_PS = 1 << 7
PAE_ADDR = 0x000FFFFFFFFFF000      # physical address bits of a PAE entry (NX and flags off)


# What exists only with the engine: reading one of these before the vCPU has run
# creates the engine (``Vcpu.__getattr__``).
ENGINE_ATTRS = frozenset(("uc", "cpu", "regs", "delivery", "codepages", "_ctx", "_rom_pieces",
                          "_open_bus"))


class Vcpu:
    """One vCPU. Its Unicorn engine is created when it is first needed: at the first run,
    or when something reads the engine before (the gdb stub, the monitor, a boot loader
    writing registers). Until then the CPU state is data -- the power-on state, or the
    saved registers of a snapshot -- because an engine costs about 3 MiB of host memory
    as soon as it is initialised (its translation cache and tables), and a hundred clones
    restored from one snapshot should cost their pages, not a hundred idle engines."""

    def __init__(self, machine: "Machine", dispatch: str = "auto",
                 trace: Callable[[str], None] | None = None) -> None:
        check_layout()                   # (once per process) a wrong engine is refused now
        self.machine = machine
        self.mem: GuestMemory = machine.mem
        self.stats: exits.ExitStats = machine.stats
        self._in_hook = False
        self._host_ptr = ctypes.addressof(ctypes.c_char.from_buffer(self.mem.buffer))
        self._a20 = True
        # Until the engine exists no code is translated: host writes need no invalidation.
        self.mem.invalidate = self._invalidate
        self.trace = trace
        self.halted = False
        if trace is not None and dispatch == "auto":
            dispatch = "python"          # --trace needs every exit to pass through Python
        # The fast path's flags, clock and device tables exist from the start (devices
        # bind their C shares to them); it is attached to the engine when that is made.
        self.fast = fastpath.load(None, dispatch, VIRTUAL_NS_PER_BLOCK
                                  if machine.config.clock == "virtual" else 0)
        if self.fast.kind == "c":
            self.fast.set_devices(self)
        self.stats.sources.append(self.fast.counts)
        self.stats.sources.append(self._cpu_counts)
        self.max_overrun_ns = 0            # the latest return to the host after a deadline
        self._starting = False
        self._engine_lock = threading.Lock()
        self._on_apic_base = None
        # The CPU as data while there is no engine: the context blob (None: the power-on
        # state), IA32_APIC_BASE, and the TSC as an offset from the machine's clock.
        self._blob: bytes | None = None
        self._apic_base = APIC_BASE_RESET
        self._tsc_offset = -machine.clock.now()
        self._released_counts: dict = {}     # exits counted by engines given back

    def __getattr__(self, name: str):
        # Only called for attributes not set yet: the engine's, before it exists.
        if name in ENGINE_ATTRS and not self.__dict__.get("_starting", True):
            self.start_engine()
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def started(self) -> bool:
        """Whether the engine exists (a restored machine that has not run has none)."""
        return "uc" in self.__dict__

    def start_engine(self) -> None:
        """Create the engine, map memory and devices, hook it, and load the CPU state
        held as data. Idempotent."""
        with self._engine_lock:             # (a monitor thread may read it first)
            if self.started:
                return
            self._starting = True
            try:
                self._build_engine()
            except BaseException:
                # No half-made engine: the next attempt starts from the data again.
                self.fast.detach()
                for name in ENGINE_ATTRS | {"_engine_note", "_open_bus_callbacks"}:
                    self.__dict__.pop(name, None)
                raise
            finally:
                self._starting = False

    def _build_engine(self) -> None:
        machine = self.machine
        uc = Uc(UC_ARCH_X86, UC_MODE_32)
        # With no exits list, emu_start translates its `until` address to place a
        # stop there: under paging that walk faults and overwrites CR2 and
        # old_exception. An enabled, empty exits list makes `until` unused.
        uc.ctl_exits_enabled(True)
        uc.ctl_set_exits([])
        # Stores go to RAM at full speed except on pages holding translated code.
        self.codepages = codepages.track(uc)
        codepages.exit_checks(uc, False)   # on again while a debugger is attached
        self._ctx = uc.context_save()      # one reusable blob for peeks and edits
        self.uc = uc
        self._map_memory()
        self.regs = Regs(uc, self.set_eip)
        self.delivery = InterruptDelivery(self)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_MEM_WRITE_PROT, self._on_rom_write)
        uc.hook_add(UC_HOOK_MEM_FETCH_UNMAPPED, self._on_fetch_unmapped)
        self.fast.attach(uc)
        if self.fast.kind == "c":
            self.fast.install_dispatch(self)
        else:
            uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
            uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
            for base, length, dev in machine.mmio.ranges():
                self._map_mmio(base, length, dev.name, machine.mmio)
        self._map_open_bus()
        self.fast.set_ram(self._host_ptr, self.mem.span)
        self._engine_note = None
        if self.codepages:
            self._engine_note = lambda: codepages.counts(uc)
            self.stats.engine_notes.append(self._engine_note)
        # Delivery, MSRs, CPUID, TSC, SYSENTER: in C with the C dispatcher (hv/cpu.py).
        cpu = CpuAssist(self, c=self.fast.kind == "c")
        cpu.install()
        cpu.on_apic_base = self._on_apic_base
        self.calibrate()
        # The CPU state kept as data goes into the engine.
        if self._blob is None:
            self._power_on_registers()
        else:
            self._load_blob(self._blob)
            self._blob = None
        if not self._a20:                   # the memory map was made with A20 on
            self._a20 = True
            self.set_a20(False)
        cpu.set_apic_base(self._apic_base)
        cpu.set_tsc(machine.clock.now() + self._tsc_offset)
        self.cpu = cpu
        uc.ctl_flush_tb()

    def release_engine(self) -> None:
        """Give the engine back between runs: the CPU state becomes data again, as in a
        clone that has not run, and the engine (about 3.5 MiB once it has run) is freed.
        The next run makes a new one, which translates the guest's code again. The
        guest's own hardware breakpoints (DR0-DR3) are kept as register values and armed
        again when it next writes DR7, as after a restore. Not while a debugger is
        attached: it holds the engine."""
        if not self.started:
            return
        if self.machine.debugger is not None:
            raise RuntimeError("cannot release the engine: a debugger is attached")
        blob = bytearray(self.cpu_blob())
        blob[HW_BREAKPOINTS] = bytes(32)        # host pointers, meaningless in a new engine
        self._blob = bytes(blob)
        self._apic_base = self.cpu.apic_base
        self._tsc_offset = self.cpu.tsc() - self.machine.clock.now()
        for key, n in self.cpu.counts().items():   # exits counted in the engine's C state
            self._released_counts[key] = self._released_counts.get(key, 0) + n
        uc = self.uc
        self.cpu.close()
        self.fast.detach()
        codepages.forget(uc)
        if self._engine_note in self.stats.engine_notes:
            self.stats.engine_notes.remove(self._engine_note)
        for name in ENGINE_ATTRS | {"_engine_note", "_open_bus_callbacks"}:
            self.__dict__.pop(name, None)
        # (The engine is freed when Python's cyclic collector next runs: the binding's
        # ctypes hook wrappers hold it in reference cycles.)

    # -- the CPU state, with or without an engine (snapshots) ---------------------------
    def _cpu_counts(self) -> dict:
        out = dict(self._released_counts)
        if self.started:
            for key, n in self.cpu.counts().items():
                out[key] = out.get(key, 0) + n
        return out

    @property
    def on_apic_base(self):
        """callable(written value) -> the value IA32_APIC_BASE holds now (the board's)."""
        return self._on_apic_base

    @on_apic_base.setter
    def on_apic_base(self, fn) -> None:
        self._on_apic_base = fn
        if self.started:
            self.cpu.on_apic_base = fn

    @property
    def apic_base(self) -> int:
        return self.cpu.apic_base if self.started else self._apic_base

    def set_apic_base(self, value: int) -> None:
        if self.started:
            self.cpu.set_apic_base(value)
        self._apic_base = value

    def tsc(self) -> int:
        return self.cpu.tsc() if self.started else self.machine.clock.now() + self._tsc_offset

    def set_tsc(self, value: int) -> None:
        """Make the TSC read ``value`` now."""
        if self.started:
            self.cpu.set_tsc(value)
        self._tsc_offset = value - self.machine.clock.now()

    def cpu_blob(self) -> bytes:
        """The engine's CPU state (its context, without the header): every register."""
        if not self.started and self._blob is not None:
            return self._blob
        ctx = self.uc.context_save()
        return ctypes.string_at(self._ctx_ptr(ctx), ctx.size - CTX_HEADER)

    def load_cpu_blob(self, blob: bytes) -> None:
        """Set every register from a context blob of this engine's layout (checked by
        the caller); kept as data until the engine exists."""
        if self.started:
            self._load_blob(blob)
        else:
            self._blob = bytes(blob)

    def _load_blob(self, blob: bytes) -> None:
        ctx = self.uc.context_save()
        ctypes.memmove(self._ctx_ptr(ctx), blob, len(blob))
        self.uc.context_restore(ctx)

    # -- memory map ---------------------------------------------------------------
    def _map_memory(self) -> None:
        uc, ptr, size = self.uc, self._host_ptr, self.mem.size
        low = min(size, CONVENTIONAL_END)
        uc.mem_map_ptr(0, low, UC_PROT_ALL, ptr)
        uc.mem_map_ptr(VIDEO_BASE, ROM_BASE - VIDEO_BASE, UC_PROT_ALL, ptr + VIDEO_BASE)
        # ROM is engine-owned memory: with mem_map_ptr a write-protect hook that
        # returns True still lets the store through; with mem_map it is dropped.
        # The host buffer keeps an identical copy for device and hypercall reads.
        # MMIO windows inside the ROM area (the virtio slots at 0xD0000) are holes.
        holes = sorted(self._mmio_pages(b, n) for b, n, _ in self.machine.mmio.ranges()
                       if b < ROM_END and b + n > ROM_BASE)
        self._rom_pieces: list[tuple[int, int]] = []
        at = ROM_BASE
        for lo, hi in holes + [(ROM_END, ROM_END)]:
            if lo > at:
                self._rom_pieces.append((at, lo))
            at = max(at, hi)
        for lo, hi in self._rom_pieces:
            uc.mem_map(lo, hi - lo, UC_PROT_READ | UC_PROT_EXEC)
            uc.mem_write(lo, bytes(self.mem.view[lo:hi]))
        if size > HIGH_BASE:
            uc.mem_map_ptr(HIGH_BASE, size - HIGH_BASE, UC_PROT_ALL, ptr + HIGH_BASE)

    def _invalidate(self, lo: int, hi: int) -> None:
        """Host writes bypass Unicorn's dirty tracking: drop the translated code of
        physical [lo, hi) (docs/unicorn.md). RAM is invalidated by physical range in
        any paging state; ROM is engine-owned memory, refreshed from the host copy.
        Without an engine there is nothing to drop (it copies ROM when it is made)."""
        if not self.started:
            return
        self.fast.invalidate_phys(lo, hi)
        if lo < ROM_END and hi > ROM_BASE:
            for plo, phi in self._rom_pieces:
                a, b = max(lo, plo), min(hi, phi)
                if a < b:
                    self.uc.mem_write(a, bytes(self.mem.view[a:b]))
                    if self.paging():
                        self.uc.ctl_flush_tb()      # no physical handle on ROM pages
                    else:
                        self.uc.ctl_remove_cache(a, b)

    def set_a20(self, enabled: bool) -> None:
        """Gate address line 20 by remapping 1 MiB..+64 KiB (Unicorn has no A20 gate).

        Call it from a hook while the guest runs (an OUT to the 8042 or port 0x92,
        a BIOS hypercall): Unicorn flushes the TLB on unmap only while a CPU is
        running (unicorn#552); remapped between runs, the first store after the
        change went through the stale mapping and was then replayed."""
        if enabled == self._a20:
            return
        if not self.started:                # the engine maps it so when it is made
            self._a20 = enabled
            return
        uc, ptr = self.uc, self._host_ptr
        lo, hi = HIGH_BASE, HIGH_BASE + A20_WRAP
        ram_end = min(max(self.mem.size, lo), hi)            # RAM inside the window
        holes = [(a, b) for a, b in self._open_bus if lo <= a and b <= hi]
        if enabled:
            uc.mem_unmap(lo, A20_WRAP)
            if ram_end > lo:
                uc.mem_map_ptr(lo, ram_end - lo, UC_PROT_ALL, ptr + lo)
            for a, b in holes:
                self._map_open_bus_range(a, b)
        else:
            if ram_end > lo:
                uc.mem_unmap(lo, ram_end - lo)
            for a, b in holes:
                uc.mem_unmap(a, b - a)
            uc.mem_map_ptr(lo, A20_WRAP, UC_PROT_ALL, ptr)
        self._a20 = enabled
        self.flush_tlb()
        uc.ctl_flush_tb()

    def flush_tlb(self) -> None:
        """Forget cached address translations (after the memory map changes)."""
        from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    @property
    def a20(self) -> bool:
        return self._a20

    @staticmethod
    def _mmio_pages(base: int, length: int) -> tuple[int, int]:
        """Unicorn maps whole pages: the window rounded out to 4 KiB."""
        return base & ~(PAGE - 1), (base + length + PAGE - 1) & ~(PAGE - 1)

    def _map_mmio(self, base: int, length: int, name: str, bus) -> None:
        # The rest of the page goes to the bus too, which counts it as unassigned.
        lo, hi = self._mmio_pages(base, length)

        def rd(uc, offset, size, ud):
            return bus.read(lo + offset, size)

        def wr(uc, offset, size, value, ud):
            bus.write(lo + offset, size, value)
        self.uc.mmio_map(lo, hi - lo, rd, None, wr, None)

    # -- open bus: every physical address nothing decodes ---------------------------
    def _decoded(self) -> list[tuple[int, int]]:
        """Page ranges that RAM, video memory, ROM or a device answers (A20 on)."""
        size = self.mem.size
        spans = [(0, min(size, CONVENTIONAL_END)), (VIDEO_BASE, ROM_BASE)] + self._rom_pieces
        if size > HIGH_BASE:
            spans.append((HIGH_BASE, size))
        spans += [self._mmio_pages(b, n) for b, n, _ in self.machine.mmio.ranges()]
        return sorted(s for s in spans if s[1] > s[0])

    def _map_open_bus(self) -> None:
        """Map every hole below 4 GiB once, as MMIO that reads all ones, drops writes and
        counts each access as ``unassigned``: constant host memory and set-up time, however
        much of the address space a guest probes. The 64 KiB above 1 MiB is its own piece
        where it is a hole, so the A20 gate can remap it alone."""
        holes, at = [], 0
        for lo, hi in self._decoded() + [(1 << 32, 1 << 32)]:
            if lo > at:
                holes.append((at, lo))
            at = max(at, hi)
        window = (HIGH_BASE, HIGH_BASE + A20_WRAP)
        self._open_bus: list[tuple[int, int]] = []
        for lo, hi in holes:
            for a, b in ((lo, min(hi, window[0])), (max(lo, window[0]), min(hi, window[1])),
                         (max(lo, window[1]), hi)):
                if a < b:
                    self._open_bus.append((a, b))
        for lo, hi in self._open_bus:
            self._map_open_bus_range(lo, hi)

    def _map_open_bus_range(self, lo: int, hi: int) -> None:
        if self.fast.kind == "c":
            self.fast.map_open_bus(lo, hi - lo)
            return
        stats = self.stats

        def rd(uc, offset, size, ud):
            stats.count(exits.UNASSIGNED, "mmio")
            return (1 << (8 * size)) - 1

        def wr(uc, offset, size, value, ud):
            stats.count(exits.UNASSIGNED, "mmio")
        self._open_bus_callbacks = getattr(self, "_open_bus_callbacks", []) + [(rd, wr)]
        self.uc.mmio_map(lo, hi - lo, rd, None, wr, None)

    def _on_fetch_unmapped(self, uc, access, addr, size, value, ud) -> bool:
        return False   # emu_start raises; the loop reports the address

    def _on_rom_write(self, uc, access, addr, size, value, ud) -> bool:
        self.stats.count(exits.MMIO, "rom-write")
        return True    # ROM ignores writes; the guest continues

    # -- context blob --------------------------------------------------------------
    def _ctx_ptr(self, ctx) -> int:
        return ctypes.cast(ctx.context, ctypes.c_void_p).value + CTX_HEADER

    def calibrate(self) -> None:
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_EAX, 0x11223344)
        uc.reg_write(X.UC_X86_REG_EIP, 0x55667788)
        ctx = uc.context_save()
        base = self._ctx_ptr(ctx)
        u32 = lambda off: ctypes.c_uint32.from_address(base + off).value
        ok = (u32(0) == 0x11223344 and u32(128) == 0x55667788
              and ctypes.c_int32.from_address(base + ENV_OLD_EXCEPTION).value == -1)
        if not ok:
            raise RuntimeError("this Unicorn build's CPU state layout is not the one hv knows "
                               "(unicorn==2.1.4 is required)")

    def _edit_ctx(self, fn: Callable[[int], None]) -> None:
        ctx = self._ctx
        self.uc.context_update(ctx)
        fn(self._ctx_ptr(ctx))
        self.uc.context_restore(ctx)

    def _peek_ctx(self, off: int, ctype=ctypes.c_uint32) -> int:
        ctx = self._ctx
        self.uc.context_update(ctx)
        return ctype.from_address(self._ctx_ptr(ctx) + off).value

    def clear_old_exception(self) -> None:
        def edit(p: int) -> None:
            ctypes.c_int32.from_address(p + ENV_OLD_EXCEPTION).value = -1
        if self._peek_ctx(ENV_OLD_EXCEPTION, ctypes.c_int32) != -1:
            self._edit_ctx(edit)

    def set_eip(self, eip: int) -> None:
        """Move the guest to ``eip``. Inside a hook the write goes through the
        context blob: a ``reg_write(EIP)`` there would leave every later I/O hook of
        the slice a stale EIP (docs/unicorn.md). Between slices it is a plain write."""
        if not self._in_hook:
            self.uc.reg_write(X.UC_X86_REG_EIP, eip)
            return

        def edit(p: int) -> None:
            ctypes.c_uint64.from_address(p + ENV_EIP).value = eip & 0xFFFFFFFF
        self._edit_ctx(edit)

    def in_irq_shadow(self) -> bool:
        return bool(self._peek_ctx(ENV_HFLAGS) & HF_INHIBIT_IRQ)

    def seg_base(self, seg: int) -> int:
        return self._peek_ctx(ENV_SEGS + 24 * seg + 8, ctypes.c_uint64)

    def ss_base(self) -> int:
        if not self.uc.reg_read(X.UC_X86_REG_CR0) & 1:
            return self.uc.reg_read(X.UC_X86_REG_SS) << 4
        return self.seg_base(SEG_SS)

    def pc(self) -> int:
        """Linear address of CS:EIP."""
        eip = self.uc.reg_read(X.UC_X86_REG_EIP)
        if not self.uc.reg_read(X.UC_X86_REG_CR0) & 1:
            return (self.uc.reg_read(X.UC_X86_REG_CS) << 4) + (eip & 0xFFFF)
        return (self.seg_base(SEG_CS) + eip) & 0xFFFFFFFF

    def where(self) -> str:
        cs = self.uc.reg_read(X.UC_X86_REG_CS)
        return f"CS:IP={cs:04X}:{self.uc.reg_read(X.UC_X86_REG_EIP):04X}"

    # -- linear memory (paging aware, no permission checks, no side effects) ----------
    def paging(self) -> bool:
        return bool(self.uc.reg_read(X.UC_X86_REG_CR0) & CR0_PG)

    def lin2phys(self, lin: int, write: bool = False, mark: bool = False) -> int:
        """The physical address of linear ``lin`` through the guest's page tables
        (32-bit 2-level with 4 MiB pages, or PAE with 2 MiB pages), as the MMU would
        find it for a supervisor access. GuestFault if unmapped. ``mark`` sets the
        Accessed (and, for ``write``, Dirty) bits as the MMU does, and a ``write`` to a
        read-only page with CR0.WP raises PermissionError; plain lookups (tracing, the
        host reading a hypercall's site) change nothing and never touch CR2."""
        uc, mem = self.uc, self.mem
        lin &= 0xFFFFFFFF
        cr0 = uc.reg_read(X.UC_X86_REG_CR0)
        if not cr0 & CR0_PG:
            return lin
        cr3 = uc.reg_read(X.UC_X86_REG_CR3)
        cr4 = uc.reg_read(X.UC_X86_REG_CR4)
        wp = write and cr0 & CR0_WP
        pae = bool(cr4 & CR4_PAE)
        size = 8 if pae else 4
        entry = mem.u64 if pae else mem.u32

        def step(addr: int, what: str) -> int:
            e = entry(addr)
            if not e & 1:
                raise GuestFault(f"linear {lin:#x} not mapped ({what})")
            if wp and what != "PDPTE" and not e & 2:
                raise PermissionError(f"linear {lin:#x} is read-only")
            return e

        def touch(addr: int, e: int, dirty: bool) -> None:
            if mark:
                new = e | 0x20 | (0x40 if dirty else 0)
                if new != e:
                    mem.write(addr, new.to_bytes(size, "little"))
        try:
            if pae:
                pdpte = step((cr3 & ~0x1F) + (lin >> 30) * 8, "PDPTE")
                at = (pdpte & PAE_ADDR) + ((lin >> 21) & 0x1FF) * 8
                pde = step(at, "PDE")
                if pde & PDE_PS:
                    touch(at, pde, write)
                    return (pde & PAE_ADDR & ~0x1FFFFF) | (lin & 0x1FFFFF)
                touch(at, pde, False)
                at = (pde & PAE_ADDR) + ((lin >> 12) & 0x1FF) * 8
                pte = step(at, "PTE")
                touch(at, pte, write)
                return (pte & PAE_ADDR) | (lin & 0xFFF)
            at = (cr3 & ~0xFFF) + (lin >> 22) * 4
            pde = step(at, "PDE")
            if cr4 & CR4_PSE and pde & PDE_PS:
                touch(at, pde, write)
                return (pde & 0xFFC00000) | ((pde >> 13 & 0xFF) << 32) | (lin & 0x3FFFFF)
            touch(at, pde, False)
            at = (pde & ~0xFFF) + ((lin >> 12) & 0x3FF) * 4
            pte = step(at, "PTE")
            touch(at, pte, write)
            return (pte & ~0xFFF) | (lin & 0xFFF)
        except GuestMemoryError:
            raise GuestFault(f"linear {lin:#x}: page tables point outside guest RAM") from None

    def read_linear(self, lin: int, n: int) -> bytes:
        """``n`` bytes at linear ``lin``, page by page. GuestFault if any page is
        unmapped or outside RAM."""
        out = bytearray()
        while n > 0:
            chunk = min(n, PAGE - (lin & (PAGE - 1)))
            try:
                out += self.mem.read(self.lin2phys(lin), chunk)
            except GuestMemoryError:
                raise GuestFault(f"linear {lin:#x} is outside guest RAM") from None
            lin, n = lin + chunk, n - chunk
        return bytes(out)

    def write_linear(self, lin: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            chunk = min(len(view), PAGE - (lin & (PAGE - 1)))
            try:
                self.mem.write(self.lin2phys(lin), bytes(view[:chunk]))
            except GuestMemoryError:
                raise GuestFault(f"linear {lin:#x} is outside guest RAM") from None
            lin, view = lin + chunk, view[chunk:]

    # -- reset ---------------------------------------------------------------------
    def reset(self) -> None:
        """PC power-on: real mode, CS:IP = F000:FFF0 (linear 0xFFFF0)."""
        self.halted = False
        if not self.started:                # the state as data, for the engine to load
            self._blob, self._a20 = None, True
            self._apic_base, self._tsc_offset = APIC_BASE_RESET, -self.machine.clock.now()
            return
        self._power_on_registers()
        if not self._a20:
            self.set_a20(True)
        self.cpu.reset()
        self.uc.ctl_flush_tb()

    def _power_on_registers(self) -> None:
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_CR0, 0x60000010)   # CD, NW, ET as after RESET; PE = 0
        # IDTR and GDTR as after RESET: base 0, limit 0xFFFF (the engine starts them at 0).
        uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
        uc.reg_write(X.UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
        for r in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS,
                  X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            uc.reg_write(r, 0)
        uc.reg_write(X.UC_X86_REG_CS, 0xF000)
        uc.reg_write(X.UC_X86_REG_ESP, 0)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        uc.reg_write(X.UC_X86_REG_EIP, 0xFFF0)
        # The rest as the SDM's table of state after RESET says (the engine's own defaults
        # differ: CR4 with OSFXSR and OSXSAVE set, FCW and MXCSR zero).
        for r in (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_ESI,
                  X.UC_X86_REG_EDI, X.UC_X86_REG_EBP, X.UC_X86_REG_CR2, X.UC_X86_REG_CR3,
                  X.UC_X86_REG_CR4):
            uc.reg_write(r, 0)
        uc.reg_write(X.UC_X86_REG_EDX, 0x600)          # CPU signature in DX after reset
        uc.reg_write(X.UC_X86_REG_FPCW, 0x40)
        uc.reg_write(X.UC_X86_REG_MXCSR, 0x1F80)

    # -- hooks -----------------------------------------------------------------------
    def kick(self) -> None:
        """Ask for control at the next block start (safe from any thread, and the only
        way a hook may end the slice: an emu_stop inside an I/O or MMIO hook resumes at
        the instruction being executed and runs it again)."""
        self.fast.kick = 1

    def _fail_in_hook(self, reason: str) -> None:
        self.machine.fail(reason)
        self.kick()

    def _device_error(self, exc: BaseException) -> None:
        """A device model raised while serving the guest: end the run with the reason,
        as the C dispatch does, instead of letting the exception escape the engine."""
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self._fail_in_hook(f"device model error: {text}")

    def _trace(self, kind: str, detail: str, at: int | None = None) -> None:
        """One trace line; ``at`` is the EIP of the instruction that made the exit when
        it is not the current EIP (a software interrupt has already moved past it)."""
        eip = self.uc.reg_read(X.UC_X86_REG_EIP) if at is None else at
        cs = self.uc.reg_read(X.UC_X86_REG_CS)
        self.trace(f"{kind:<10} {f'CS:IP={cs:04X}:{eip:04X}':<20} "
                   f"{self.disassemble_at(eip):<28} {detail}")

    def disassemble_at(self, eip: int) -> str:
        from hv.trace import disassemble
        real = not self.uc.reg_read(X.UC_X86_REG_CR0) & 1
        try:
            code = self.read_linear(self._cs_base() + (eip & (0xFFFF if real else 0xFFFFFFFF)), 15)
        except GuestFault:
            return "?"
        return disassemble(code, eip, 16 if real else 32)

    def disassemble_at_pc(self) -> str:
        return self.disassemble_at(self.uc.reg_read(X.UC_X86_REG_EIP))

    def _cs_base(self) -> int:
        if not self.uc.reg_read(X.UC_X86_REG_CR0) & 1:
            return self.uc.reg_read(X.UC_X86_REG_CS) << 4
        return self.seg_base(SEG_CS)

    def _soft_int_eip(self, intno: int) -> int:
        """Where the `int n` (CD n), `int3` (CC), `into` (CE) or `int1` (F1) that raised
        ``intno`` starts: EIP has already moved past it."""
        eip = self.uc.reg_read(X.UC_X86_REG_EIP)
        try:
            before = self.read_linear(self._cs_base() + eip - 2, 2)
        except GuestFault:
            return eip
        return eip - 2 if before == bytes([0xCD, intno]) else eip - 1

    def _on_in(self, uc, port, size, ud) -> int:
        try:
            v = self.machine.ports.read(port, size)
        except Exception as e:                    # a device model bug, reported
            self._device_error(e)
            return (1 << (8 * size)) - 1
        if self.trace:
            self._trace("in", f"port {port:#06x} -> {v:#x}")
        self._after_io()
        return v

    def _on_out(self, uc, port, size, value, ud) -> None:
        if self.trace:
            self._trace("out", f"port {port:#06x} <- {value:#x}")
        try:
            self.machine.ports.write(port, size, value)
        except Exception as e:
            self._device_error(e)
            return
        self._after_io()

    def _after_io(self) -> None:
        # A device asked for something that needs the host loop (a reset, the run
        # ending): stop at the next block start.
        if self.machine.stop_requested:
            self.kick()

    def _on_intr(self, uc, intno, ud) -> None:
        """`int n`, int3, into and CPU exceptions under the Python dispatcher (the C one
        runs hv_intr_hook in hv/fastpath/cpu.c)."""
        self._in_hook = True
        try:
            soft = bool(self._peek_ctx(ENV_EXCEPTION_IS_INT))
            err = None
            real = not uc.reg_read(X.UC_X86_REG_CR0) & 1
            if not soft and not real and intno in ERROR_CODE_VECTORS:
                err = self._peek_ctx(ENV_ERROR_CODE)
            self.stats.count(exits.SOFTINT if soft else exits.EXCEPTION, f"int {intno:#04x}")
            eip = uc.reg_read(X.UC_X86_REG_EIP)
            at = self._soft_int_eip(intno) if soft else eip
            if self.trace:
                self._trace("softint" if soft else "exception", f"vector {intno:#04x}", at=at)
            self.delivery.deliver(intno, err, KIND_SOFT if soft else KIND_EXC, eip, at)
        except GuestFault as e:
            self._fail_in_hook(f"{e} ({self.where()})")
        except Exception as e:
            self._device_error(e)
        finally:
            self._in_hook = False

    def _on_invalid(self, uc, ud=None) -> bool:
        self._in_hook = True
        try:
            try:
                code = self.read_linear(self.pc(), SITE_LEN)
            except GuestFault:
                code = b""
            # Hypercalls are the kernel's: at CPL > 0 a vmcall is #UD, as KVM makes it, so a
            # program at ring 3 can neither power off nor write through its kernel's channel.
            if code[:3] == VMCALL and self.cpl() == 0:
                self._hypercall(int.from_bytes(code[3:5], "little"))
                return True
            self.stats.count(exits.EXCEPTION, "#UD")
            if self.trace:
                self._trace("exception", "#UD")
            try:
                eip = uc.reg_read(X.UC_X86_REG_EIP)
                self.cpu.deliver(6, None, KIND_EXC, eip, eip)
            except GuestFault as e:
                self._fail_in_hook(f"{e} ({self.where()})")
        except Exception as e:
            self._device_error(e)
        finally:
            self._in_hook = False
        return True

    def cpl(self) -> int:
        """The current privilege level: 0 in real mode, 3 in virtual-8086 mode, else CS's
        RPL (which a CS load always sets to the CPL)."""
        uc = self.uc
        if not uc.reg_read(X.UC_X86_REG_CR0) & 1:
            return 0
        if uc.reg_read(X.UC_X86_REG_EFLAGS) & (1 << 17):
            return 3
        return uc.reg_read(X.UC_X86_REG_CS) & 3

    def _hypercall(self, number: int) -> None:
        entry = self.machine.hypercalls.lookup(number)
        name = entry[0] if entry else f"unknown {number:#x}"
        self.stats.count(exits.HYPERCALL, name)
        if self.trace:
            self._trace("hypercall", name)
        eip = self.uc.reg_read(X.UC_X86_REG_EIP)
        if entry is None:
            self._fail_in_hook(f"unknown hypercall {number:#x} at {self.where()}")
            return
        ctx = HypercallContext(self.machine, self.regs, number)
        result = entry[1](ctx)
        if result is BLOCK:
            self.set_eip(eip - 2)                 # back to the sti; hlt
        elif self.uc.reg_read(X.UC_X86_REG_EIP) == eip:
            self.set_eip(eip + SITE_LEN)
        if self.machine.stop_requested:
            self.kick()

    # -- interrupts ------------------------------------------------------------------
    def interrupts_enabled(self) -> bool:
        return bool(self.uc.reg_read(X.UC_X86_REG_EFLAGS) & IF)

    def inject_external(self) -> bool:
        """Deliver the interrupt INTR presents (8259 or local APIC, as the IMCR routes
        them) if the CPU can take it now."""
        pic = self.machine.intr
        if not pic.has_interrupt() or not self.interrupts_enabled():
            return False
        if self.in_irq_shadow():
            # The instruction after sti / mov ss runs before any interrupt.
            if not self.halted:
                try:
                    at_hlt = self.read_linear(self.pc(), 1) == b"\xf4"
                except GuestFault:
                    at_hlt = False
                if not at_hlt:
                    # Let the shadowed block run; the block hook stops at the next one.
                    self.fast.irq_hold = 1
                    return False
                # sti; hlt: the interrupt returns past the hlt, as on hardware.
                self.uc.reg_write(X.UC_X86_REG_EIP, self.uc.reg_read(X.UC_X86_REG_EIP) + 1)
        vector = pic.acknowledge()
        self.stats.count(exits.IRQ, f"vector {vector:#04x}")
        if self.trace:
            self._trace("irq", f"vector {vector:#04x}")
        self.cpu.deliver(vector)
        self.halted = False
        return True

    # -- the loop --------------------------------------------------------------------
    def run(self) -> None:
        """Run until the machine asks to stop (guest end, --until, timeout, error)."""
        try:
            self.start_engine()
        except (RuntimeError, ValueError, UcError) as e:   # (a board the C dispatch cannot hold)
            self.machine.fail(f"cannot start the vCPU: {e}")
            return
        try:
            self._loop()
        finally:
            self.cpu.leave()

    def _loop(self) -> None:
        m, uc, fast, clock = self.machine, self.uc, self.fast, self.machine.clock
        missed = fast.missed
        while not m.stop_requested:
            fast.ack()
            try:
                m.service()
            except Exception as e:              # a timer callback or back end failed
                m.fail("host error: " + "".join(
                    traceback.format_exception_only(type(e), e)).strip())
                break
            if m.stop_requested:
                break
            dbg = m.debugger
            if dbg is not None:
                if dbg.stopped:
                    dbg.wait_while_stopped()
                    continue
                if dbg.take_step():
                    continue
            try:
                self.inject_external()
            except GuestFault as e:
                m.fail(f"{e} at {self.where()}")
                break
            fast.irq_pending = 1 if m.intr.has_interrupt() else 0
            if self.halted:
                if not self.interrupts_enabled():
                    m.halt_with_interrupts_disabled(self.where())
                    break
                m.idle()
                continue
            fast.stop_reason = fastpath.STOP_NONE
            due = clock.next_deadline()
            self.cpu.enter()
            try:
                uc.emu_start(uc.reg_read(X.UC_X86_REG_EIP), UNTIL)
            except UcError as e:
                m.fail(f"guest fault: {e} at {self.where()} (linear {self.pc():#x})")
                break
            if due is not None:
                late = clock.now() - due
                if late > self.max_overrun_ns:
                    self.max_overrun_ns = late
            if fast.missed != missed:
                self.stats.count(exits.WATCHDOG, "missed deadline", fast.missed - missed)
                m.warn(f"watchdog: the vCPU missed a deadline; kicked it again "
                       f"({fast.missed - missed} time(s))")
                missed = fast.missed
            if fast.stop_reason == fastpath.STOP_NONE:
                self._classify_silent_stop()
            elif fast.stop_reason == fastpath.STOP_KICK and not fast.doorbell_kick():
                self.stats.count(exits.TIMER)     # a doorbell's kick is that doorbell's exit

    def _classify_silent_stop(self) -> None:
        # HLT leaves no exit reason: EIP is just past the hlt.
        try:
            after_hlt = self.read_linear(self.pc() - 1, 1) == b"\xf4"
        except GuestFault:
            after_hlt = False
        if after_hlt:
            self.halted = True
            self.stats.count(exits.HLT)
            if self.trace:
                self._trace("hlt", "", at=self.uc.reg_read(X.UC_X86_REG_EIP) - 1)
        else:
            self.machine.fail(f"the CPU stopped (triple fault?) at {self.where()}")

    def close(self) -> None:
        self.fast.close()
        if self.started:
            codepages.forget(self.uc)
            self.cpu.close()
