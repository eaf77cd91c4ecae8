"""The virtual CPU: one Unicorn x86 engine and the loop that runs it.

Design (measured in ../shared/notes/unicorn-x86.md):
* The engine is opened in 32-bit mode even for real-mode guests (CR0.PE
  cleared); UC_MODE_16 mis-handles segment bases once a guest enters
  protected mode (notes §1.2).
* Guest RAM is the machine's ``mmap`` buffer mapped with ``mem_map_ptr``:
  no copies between devices and the engine.
* The host regains control only at translated-block starts, through the
  fast path's flag-testing block hook, or synchronously from a hook (port
  I/O, hypercalls). Never by timeout or a cross-thread stop.
* HLT makes ``emu_start`` return with no reason recorded; the loop then
  idles on the clock's next deadline instead of spinning.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Callable

from unicorn import (UC_ARCH_X86, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR,
                     UC_HOOK_MEM_FETCH_UNMAPPED, UC_HOOK_MEM_READ_UNMAPPED,
                     UC_HOOK_MEM_WRITE_PROT, UC_HOOK_MEM_WRITE_UNMAPPED, UC_MODE_32,
                     UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, Uc, UcError)
from unicorn import x86_const as X

from hv import exits, fastpath
from hv.hypercall import BLOCK, SITE_LEN, VMCALL, HypercallContext, Regs
from hv.irq import ERROR_CODE_VECTORS, IF, GuestFault, InterruptDelivery
from hv.memory import (CONVENTIONAL_END, HIGH_BASE, ROM_BASE, ROM_END, VIDEO_BASE,
                       GuestMemory)

if TYPE_CHECKING:
    from hv.machine import Machine

UNTIL = 1 << 48          # an address the guest can never reach: run until stopped
PAGE = 0x1000
A20_WRAP = 0x10000       # with A20 off, 1 MiB..1 MiB+64 KiB aliases 0..64 KiB

# CPUX86State offsets inside a Unicorn 2.1.4 context blob (notes §9); checked
# by calibrate() at start-up, because a rebuilt engine may move them.
CTX_HEADER = 40
ENV_HFLAGS = 176
ENV_SEGS = 184           # segs[6]: ES CS SS DS FS GS, 24 bytes each: sel, pad, base, limit, flags
ENV_ERROR_CODE = 5384
ENV_EXCEPTION_IS_INT = 5388
ENV_OLD_EXCEPTION = 5496
HF_INHIBIT_IRQ = 1 << 3
SEG_CS, SEG_SS = 1, 2


class Vcpu:
    def __init__(self, machine: "Machine", dispatch: str = "auto",
                 trace: Callable[[str], None] | None = None) -> None:
        self.machine = machine
        self.mem: GuestMemory = machine.mem
        self.stats: exits.ExitStats = machine.stats
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32)
        self._host_ptr = ctypes.addressof(ctypes.c_char.from_buffer(self.mem.buffer))
        self._open_bus_pages: set[int] = set()
        self._a20 = True
        self._map_memory()
        self.mem.invalidate = self._invalidate
        self._remove_cache = uc.ctl_remove_cache
        self.regs = Regs(uc)
        self.delivery = InterruptDelivery(self)
        self.trace = trace
        self.halted = False
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid)
        uc.hook_add(UC_HOOK_MEM_WRITE_PROT, self._on_rom_write)
        uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED, self._on_unmapped)
        uc.hook_add(UC_HOOK_MEM_FETCH_UNMAPPED, self._on_fetch_unmapped)
        if trace is not None and dispatch == "auto":
            dispatch = "python"          # --trace needs every exit to pass through Python
        self.fast = fastpath.load(uc, dispatch)
        if self.fast.kind == "c":
            self.fast.install_dispatch(self)
        else:
            uc.hook_add(UC_HOOK_INSN, self._on_in, None, 1, 0, X.UC_X86_INS_IN)
            uc.hook_add(UC_HOOK_INSN, self._on_out, None, 1, 0, X.UC_X86_INS_OUT)
            for base, length, dev in machine.mmio.ranges():
                self._map_mmio(base, length, dev.name, machine.mmio)
        self.stats.sources.append(self.fast.counts)
        self._remove_cache = getattr(self.fast, "remove_cache", uc.ctl_remove_cache)
        self.calibrate()
        self.reset()

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
        # Host writes bypass Unicorn's dirty tracking: drop translated code (notes §5).
        if lo < ROM_END and hi > ROM_BASE:
            for plo, phi in self._rom_pieces:
                a, b = max(lo, plo), min(hi, phi)
                if a < b:
                    self.uc.mem_write(a, bytes(self.mem.view[a:b]))
        self._remove_cache(lo, hi)

    def set_a20(self, enabled: bool) -> None:
        """Gate address line 20 by remapping 1 MiB..+64 KiB (Unicorn has no A20 gate).

        Call it from a hook while the guest runs (an OUT to the 8042 or port 0x92,
        a BIOS hypercall): Unicorn flushes the TLB on unmap only while a CPU is
        running (unicorn#552); remapped between runs, the first store after the
        change went through the stale mapping and was then replayed."""
        if enabled == self._a20:
            return
        uc, ptr = self.uc, self._host_ptr
        self._drop_open_bus(HIGH_BASE, HIGH_BASE + A20_WRAP)
        if self.mem.size > HIGH_BASE:
            uc.mem_unmap(HIGH_BASE, min(self.mem.size, HIGH_BASE + A20_WRAP) - HIGH_BASE)
        else:
            try:
                uc.mem_unmap(HIGH_BASE, A20_WRAP)
            except UcError:
                pass
        if enabled:
            if self.mem.size > HIGH_BASE:
                n = min(self.mem.size, HIGH_BASE + A20_WRAP) - HIGH_BASE
                uc.mem_map_ptr(HIGH_BASE, n, UC_PROT_ALL, ptr + HIGH_BASE)
        else:
            uc.mem_map_ptr(HIGH_BASE, A20_WRAP, UC_PROT_ALL, ptr)
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

    def _drop_open_bus(self, lo: int, hi: int) -> None:
        for page in [p for p in self._open_bus_pages if lo <= p < hi]:
            self.uc.mem_unmap(page, PAGE)
            self._open_bus_pages.discard(page)

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

    def _on_unmapped(self, uc, access, addr, size, value, ud) -> bool:
        # Nothing decodes this address: map an "open bus" page that reads as all
        # ones, ignores writes and counts each access, then retry the access.
        page = addr & ~(PAGE - 1)
        if page in self._open_bus_pages or page >= 1 << 32:
            return False
        stats = self.stats

        def rd(uc, offset, size, ud):
            stats.count(exits.UNASSIGNED, "mmio")
            return (1 << (8 * size)) - 1

        def wr(uc, offset, size, value, ud):
            stats.count(exits.UNASSIGNED, "mmio")
        uc.mmio_map(page, PAGE, rd, None, wr, None)
        self._open_bus_pages.add(page)
        return True

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
        ctx = self.uc.context_save()
        fn(self._ctx_ptr(ctx))
        self.uc.context_restore(ctx)

    def _peek_ctx(self, off: int, ctype=ctypes.c_uint32) -> int:
        ctx = self.uc.context_save()
        return ctype.from_address(self._ctx_ptr(ctx) + off).value

    def clear_old_exception(self) -> None:
        def edit(p: int) -> None:
            ctypes.c_int32.from_address(p + ENV_OLD_EXCEPTION).value = -1
        if self._peek_ctx(ENV_OLD_EXCEPTION, ctypes.c_int32) != -1:
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

    # -- linear memory (paging aware, no permission checks: host walker, notes §6) --
    def lin2phys(self, lin: int) -> int:
        uc = self.uc
        cr0 = uc.reg_read(X.UC_X86_REG_CR0)
        if not cr0 & (1 << 31):
            return lin & 0xFFFFFFFF
        cr3 = uc.reg_read(X.UC_X86_REG_CR3)
        cr4 = uc.reg_read(X.UC_X86_REG_CR4)
        pde = self.mem.u32((cr3 & ~0xFFF) + ((lin >> 22) & 0x3FF) * 4)
        if not pde & 1:
            raise GuestFault(f"linear {lin:#x} not mapped (PDE)")
        if cr4 & 0x10 and pde & 0x80:
            return (pde & 0xFFC00000) | (lin & 0x3FFFFF)
        pte = self.mem.u32((pde & ~0xFFF) + ((lin >> 12) & 0x3FF) * 4)
        if not pte & 1:
            raise GuestFault(f"linear {lin:#x} not mapped (PTE)")
        return (pte & ~0xFFF) | (lin & 0xFFF)

    def read_linear(self, lin: int, n: int) -> bytes:
        return b"".join(bytes([self.mem.u8(self.lin2phys(lin + i))]) for i in range(n)) \
            if n <= 8 else bytes(self.mem.u8(self.lin2phys(lin + i)) for i in range(n))

    def write_linear(self, lin: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.mem.write(self.lin2phys(lin + i), bytes([b]))

    # -- reset ---------------------------------------------------------------------
    def reset(self) -> None:
        """PC power-on: real mode, CS:IP = F000:FFF0 (linear 0xFFFF0)."""
        uc = self.uc
        uc.reg_write(X.UC_X86_REG_CR0, 0x60000010)   # CD, NW, ET as after RESET; PE = 0
        for r in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS,
                  X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            uc.reg_write(r, 0)
        uc.reg_write(X.UC_X86_REG_CS, 0xF000)
        uc.reg_write(X.UC_X86_REG_ESP, 0)
        uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2)
        uc.reg_write(X.UC_X86_REG_EIP, 0xFFF0)
        uc.reg_write(X.UC_X86_REG_EDX, 0x600)          # CPU signature in DX after reset
        self.halted = False
        if not self._a20:
            self.set_a20(True)
        uc.ctl_flush_tb()

    # -- hooks -----------------------------------------------------------------------
    def _stop(self) -> None:
        self.fast.stop_reason = fastpath.STOP_HOST
        self.uc.emu_stop()

    def kick(self) -> None:
        """Ask for control at the next block start (safe from any thread)."""
        self.fast.kick = 1

    def _trace(self, kind: str, detail: str) -> None:
        if self.trace:
            self.trace(f"{kind:<10} {self.where():<20} {self.disassemble_at_pc():<28} {detail}")

    def disassemble_at_pc(self) -> str:
        from hv.trace import disassemble
        try:
            code = self.mem.read(self.pc(), 15)
        except Exception:
            return "?"
        real = not self.uc.reg_read(X.UC_X86_REG_CR0) & 1
        return disassemble(code, self.uc.reg_read(X.UC_X86_REG_EIP), 16 if real else 32)

    def _on_in(self, uc, port, size, ud) -> int:
        v = self.machine.ports.read(port, size)
        if self.trace:
            self._trace("in", f"port {port:#06x} -> {v:#x}")
        self._after_io()
        return v

    def _on_out(self, uc, port, size, value, ud) -> None:
        if self.trace:
            self._trace("out", f"port {port:#06x} <- {value:#x}")
        self.machine.ports.write(port, size, value)
        self._after_io()

    def _after_io(self) -> None:
        # A device asked for something that must happen before the next instruction
        # (a reset, the run ending): stop right after this instruction.
        if self.machine.stop_requested:
            self._stop()

    def _on_intr(self, uc, intno, ud) -> None:
        soft = bool(self._peek_ctx(ENV_EXCEPTION_IS_INT))
        err = None
        real = not uc.reg_read(X.UC_X86_REG_CR0) & 1
        if not soft and not real and intno in ERROR_CODE_VECTORS:
            err = self._peek_ctx(ENV_ERROR_CODE)
        self.stats.count(exits.SOFTINT if soft else exits.EXCEPTION, f"int {intno:#04x}")
        if self.trace:
            self._trace("softint" if soft else "exception", f"vector {intno:#04x}")
        try:
            self.delivery.deliver(intno, err, soft)
        except GuestFault as e:
            self.machine.fail(f"{e} at {self.where()}")
            self._stop()

    def _on_invalid(self, uc, ud=None) -> bool:
        pc = self.pc()
        try:
            code = self.mem.read(pc, SITE_LEN)
        except Exception:
            code = b""
        if code[:3] == VMCALL:
            return self._hypercall(int.from_bytes(code[3:5], "little"))
        self.stats.count(exits.EXCEPTION, "#UD")
        if self.trace:
            self._trace("exception", "#UD")
        try:
            self.delivery.deliver(6)
        except GuestFault as e:
            self.machine.fail(f"invalid opcode {code[:4].hex()} and {e} at {self.where()}")
            self._stop()
        return True

    def _hypercall(self, number: int) -> bool:
        entry = self.machine.hypercalls.lookup(number)
        name = entry[0] if entry else f"unknown {number:#x}"
        self.stats.count(exits.HYPERCALL, name)
        if self.trace:
            self._trace("hypercall", name)
        eip = self.uc.reg_read(X.UC_X86_REG_EIP)
        if entry is None:
            self.machine.fail(f"unknown hypercall {number:#x} at {self.where()}")
            self._stop()
            return True
        ctx = HypercallContext(self.machine, self.regs, number)
        result = entry[1](ctx)
        if result is BLOCK:
            self.uc.reg_write(X.UC_X86_REG_EIP, eip - 2)      # back to the sti; hlt
        elif self.uc.reg_read(X.UC_X86_REG_EIP) == eip:
            self.uc.reg_write(X.UC_X86_REG_EIP, eip + SITE_LEN)
        if self.machine.stop_requested:
            self._stop()
        return True

    # -- interrupts ------------------------------------------------------------------
    def interrupts_enabled(self) -> bool:
        return bool(self.uc.reg_read(X.UC_X86_REG_EFLAGS) & IF)

    def inject_external(self) -> bool:
        """Deliver the PIC's pending interrupt if the CPU can take it now."""
        pic = self.machine.pic
        if not pic.has_interrupt() or not self.interrupts_enabled():
            return False
        if self.in_irq_shadow():
            # The instruction after sti / mov ss runs before any interrupt (notes §1.6).
            if self.halted or self.mem.u8(self.pc()) == 0xF4:
                if not self.halted:   # sti; hlt: the interrupt returns past the hlt
                    self.uc.reg_write(X.UC_X86_REG_EIP, self.uc.reg_read(X.UC_X86_REG_EIP) + 1)
            else:
                self.uc.emu_start(self.uc.reg_read(X.UC_X86_REG_EIP), UNTIL, count=1)
                if not self.interrupts_enabled():
                    return False
        vector = pic.acknowledge()
        self.stats.count(exits.IRQ, f"vector {vector:#04x}")
        if self.trace:
            self._trace("irq", f"vector {vector:#04x}")
        self.delivery.deliver(vector)
        self.halted = False
        return True

    # -- the loop --------------------------------------------------------------------
    def run(self) -> None:
        """Run until the machine asks to stop (guest end, --until, timeout, error)."""
        m, uc, fast = self.machine, self.uc, self.fast
        while not m.stop_requested:
            m.service()
            if m.stop_requested:
                break
            try:
                self.inject_external()
            except GuestFault as e:
                m.fail(f"{e} at {self.where()}")
                break
            fast.irq_pending = 1 if m.pic.has_interrupt() else 0
            if self.halted:
                if not self.interrupts_enabled():
                    m.halt_with_interrupts_disabled(self.where())
                    break
                m.idle()
                continue
            fast.stop_reason = fastpath.STOP_NONE
            try:
                uc.emu_start(uc.reg_read(X.UC_X86_REG_EIP), UNTIL)
            except UcError as e:
                m.fail(f"guest fault: {e} at {self.where()} (linear {self.pc():#x})")
                break
            if fast.stop_reason == fastpath.STOP_NONE:
                self._classify_silent_stop()
            elif fast.stop_reason == fastpath.STOP_KICK and not fast.doorbell_kick():
                self.stats.count(exits.TIMER)     # a doorbell's kick is that doorbell's exit

    def _classify_silent_stop(self) -> None:
        # HLT leaves no exit reason (notes §4): EIP is just past the hlt.
        try:
            after_hlt = self.mem.u8(self.pc() - 1) == 0xF4
        except Exception:
            after_hlt = False
        if after_hlt:
            self.halted = True
            self.stats.count(exits.HLT)
            if self.trace:
                self._trace("hlt", "")
        else:
            self.machine.fail(f"the CPU stopped (triple fault?) at {self.where()}")

    def close(self) -> None:
        self.fast.close()
