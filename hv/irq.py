"""Interrupt and exception delivery: what the CPU does with a vector and Unicorn doesn't.

Unicorn never vectors ``int n``, CPU faults or external interrupts through the IVT/IDT:
the first two arrive at ``UC_HOOK_INTR`` with EIP already at the return address (after
the instruction for ``int n``, at it for faults), and there is no way to raise an
external interrupt at all. So the host builds the frame and loads CS:EIP itself, as the
Intel SDM (Vol. 3A §6.12-6.15) describes:

* real mode: push FLAGS, CS, IP on SS:SP; clear IF/TF/AC; CS:IP from the IVT;
* protected mode: check the IDT gate (present, type, DPL against CPL for ``int n``) and
  the handler's code segment; for a handler at an inner privilege level take SS:ESP for
  that level from the TSS and push SS and ESP first; then EFLAGS, CS, EIP and the error
  code, 32-bit or 16-bit as the gate says; clear TF/NT/RF/VM, and IF for interrupt gates;
* a fault while delivering is delivered in its turn: a contributory fault during a
  contributory one, or a page fault or contributory fault during a page fault, becomes a
  double fault (#DF); a fault while delivering #DF is a triple fault: the CPU shuts down
  and the run ends with the state printed.

This is the Python twin of ``hv/fastpath/cpu.c`` (the C dispatcher runs that one); the
two follow the same steps in the same order and pass the same conformance guest. State
goes through the context blob as there: EIP (so the engine keeps syncing EIP for later
hooks of the slice), CPL (a register write cannot lower it for a ring 3 -> 0 switch) and
``old_exception`` (otherwise the next fault is taken for a double fault); segment
registers and EFLAGS go through register writes, which load descriptor caches.
"""
from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING

from unicorn import x86_const as X

from hv.cpu import ENV, KIND_EXC, KIND_EXT, KIND_SOFT, shutdown_text

if TYPE_CHECKING:
    from hv.vcpu import Vcpu

IF, TF, NT, RF, VM, AC = 1 << 9, 1 << 8, 1 << 14, 1 << 16, 1 << 17, 1 << 18
INT_GATE32, TRAP_GATE32, INT_GATE16, TRAP_GATE16, TASK_GATE = 0xE, 0xF, 0x6, 0x7, 0x5
# Vectors whose CPU-raised form pushes an error code.
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17})
CONTRIBUTORY = frozenset({0, 10, 11, 12, 13})
HF_CPL_MASK, HF_INHIBIT_IRQ = 3, 1 << 3
DESC_B = 1 << 22
PF_P, PF_W = 1, 2
SEG_CS, SEG_SS = 1, 2


class GuestFault(Exception):
    """The guest did something the machine cannot continue from (the run ends)."""


class _Fault(Exception):
    """An exception the CPU raises while delivering: vector, error code, CR2."""

    def __init__(self, vector: int, error: int = 0, cr2: int | None = None) -> None:
        super().__init__(vector)
        self.vector, self.error, self.cr2 = vector, error, cr2


class _Unsupported(Exception):
    pass


class InterruptDelivery:
    def __init__(self, vcpu: "Vcpu") -> None:
        self.vcpu = vcpu
        self.uc = vcpu.uc
        self.mem = vcpu.mem

    # -- the blob ---------------------------------------------------------------------
    def _load(self) -> None:
        self.uc.context_update(self.vcpu._ctx)
        self._env = self.vcpu._ctx_ptr(self.vcpu._ctx)

    def _u32(self, off: int) -> int:
        return ctypes.c_uint32.from_address(self._env + off).value

    def _u64(self, off: int) -> int:
        return ctypes.c_uint64.from_address(self._env + off).value

    def _cpl(self) -> int:
        return self._u32(ENV["hflags"]) & HF_CPL_MASK

    def _seg(self, i: int) -> tuple[int, int, int]:
        o = ENV["segs"] + 24 * i
        return self._u32(o), self._u64(o + 8), self._u32(o + 20)     # selector, base, flags

    def _table(self, name: str) -> tuple[int, int]:
        o = ENV[name]
        return self._u64(o + 8) & 0xFFFFFFFF, self._u32(o + 16)       # base, limit

    def _cr(self, n: int) -> int:
        return self._u64(ENV["cr"] + 8 * n)

    # -- linear memory, as the MMU sees it for a supervisor access ------------------------
    def _walk(self, lin: int, write: bool) -> int:
        try:
            return self.vcpu.lin2phys(lin, write=write, mark=True)
        except GuestFault:
            raise _Fault(14, PF_W if write else 0, cr2=lin) from None
        except PermissionError:
            raise _Fault(14, PF_P | PF_W, cr2=lin) from None

    def _read(self, lin: int, n: int) -> bytes:
        out = b""
        while n:
            chunk = min(n, 0x1000 - (lin & 0xFFF))
            phys = self._walk(lin, False)
            if phys + chunk > self.mem.span:
                out += b"\xff" * chunk
            else:
                out += bytes(self.mem.view[phys:phys + chunk])
            lin, n = lin + chunk, n - chunk
        return out

    def _write(self, lin: int, data: bytes) -> None:
        while data:
            chunk = min(len(data), 0x1000 - (lin & 0xFFF))
            phys = self._walk(lin, True)
            if phys + chunk > self.mem.span or (0xC0000 <= phys < 0x100000 and phys + chunk > 0xC0000):
                raise _Unsupported("interrupt stack outside RAM")
            self.mem.write(phys, data[:chunk])
            lin, data = lin + chunk, data[chunk:]

    def _descriptor(self, sel: int, ext: int) -> tuple[int, int]:
        base, limit = self._table("ldt" if sel & 4 else "gdt")
        if (sel & ~7) + 7 > limit:
            raise _Fault(13, (sel & 0xFFFC) | ext)
        return struct.unpack("<II", self._read(base + (sel & ~7), 8))

    # -- delivery ------------------------------------------------------------------------
    def deliver(self, vector: int, error_code: int | None = None, kind: int = KIND_EXT,
                eip: int | None = None, fault_eip: int | None = None) -> None:
        """Deliver ``vector`` (see hv_deliver in cpu.c); GuestFault if the CPU shuts down."""
        uc = self.uc
        if eip is None:
            eip = uc.reg_read(X.UC_X86_REG_EIP)
        if fault_eip is None:
            fault_eip = eip
        self._load()
        eflags = uc.reg_read(X.UC_X86_REG_EFLAGS)
        has_err = error_code is not None
        err = error_code or 0
        first = vector
        idt_limit = self._table("idt")[1]
        for _ in range(4):
            try:
                if self._cr(0) & 1:
                    self._protected(vector, kind, has_err, err, eip, eflags)
                else:
                    self._real(vector, eip, eflags)
                return
            except _Unsupported as e:
                raise GuestFault(shutdown_text(f"unsupported delivery ({e})", first, vector, eip,
                                               idt_limit)) from None
            except _Fault as f:
                if f.cr2 is not None:
                    ctypes.c_uint64.from_address(self._env + ENV["cr"] + 16).value = f.cr2
                nxt = f.vector
                if vector == 8 and kind == KIND_EXC:
                    raise GuestFault(shutdown_text("triple fault", first, nxt, eip,
                                                   idt_limit)) from None
                if kind == KIND_EXC and ((vector in CONTRIBUTORY and nxt in CONTRIBUTORY)
                                         or (vector == 14 and (nxt == 14 or nxt in CONTRIBUTORY))):
                    nxt, f.error = 8, 0
                vector, kind, err, eip = nxt, KIND_EXC, f.error, fault_eip
                has_err = nxt in ERROR_CODE_VECTORS
        raise GuestFault(shutdown_text("triple fault", first, vector, eip, idt_limit))

    def _commit(self, eip: int, cpl: int | None, ss: int | None, cs: int, esp: int,
                eflags: int) -> None:
        env = self._env
        ctypes.c_uint64.from_address(env + ENV["eip"]).value = eip & 0xFFFFFFFF
        hf = ctypes.c_uint32.from_address(env + ENV["hflags"])
        hf.value = hf.value & ~HF_INHIBIT_IRQ
        if cpl is not None:
            hf.value = (hf.value & ~HF_CPL_MASK) | cpl
        ctypes.c_int32.from_address(env + ENV["old_exception"]).value = -1
        uc = self.uc
        uc.context_restore(self.vcpu._ctx)
        if ss is not None:
            uc.reg_write(X.UC_X86_REG_SS, ss)
        uc.reg_write(X.UC_X86_REG_CS, cs)
        uc.reg_write(X.UC_X86_REG_ESP, esp)
        uc.reg_write(X.UC_X86_REG_EFLAGS, eflags)

    def _real(self, vector: int, eip: int, eflags: int) -> None:
        base, limit = self._table("idt")
        if vector * 4 + 3 > limit:
            raise _Fault(13, vector * 8 + 2)
        off, seg = struct.unpack("<HH", self._read(base + vector * 4, 4))
        _, ss_base, _ = self._seg(SEG_SS)
        esp = self._u64(4 * 8) & 0xFFFFFFFF
        sp = esp & 0xFFFF
        cs = self._seg(SEG_CS)[0]
        for word in (eflags & 0xFFFF, cs, eip & 0xFFFF):     # FLAGS, CS, IP; wraps in the segment
            sp = (sp - 2) & 0xFFFF
            self._write(ss_base + sp, struct.pack("<H", word))
        self._commit(off, None, None, seg, (esp & 0xFFFF0000) | sp, eflags & ~(IF | TF | AC))

    def _protected(self, vector: int, kind: int, has_err: bool, err: int, eip: int,
                   eflags: int) -> None:
        ext = 1 if kind == KIND_EXT else 0
        base, limit = self._table("idt")
        if vector * 8 + 7 > limit:
            raise _Fault(13, vector * 8 + 2 + ext)
        lo, hi = struct.unpack("<II", self._read(base + vector * 8, 8))
        gtype, cpl = (hi >> 8) & 0xF, self._cpl()
        if gtype == TASK_GATE:
            raise _Unsupported("a task gate (hardware task switch) is not supported")
        if gtype not in (INT_GATE32, TRAP_GATE32, INT_GATE16, TRAP_GATE16):
            raise _Fault(13, vector * 8 + 2 + ext)
        if kind == KIND_SOFT and (hi >> 13) & 3 < cpl:
            raise _Fault(13, vector * 8 + 2)
        if not hi & 0x8000:
            raise _Fault(11, vector * 8 + 2 + ext)
        sel = lo >> 16
        offset = (hi & 0xFFFF0000) | (lo & 0xFFFF)
        gate32 = gtype >= INT_GATE32
        if not gate32:
            offset &= 0xFFFF
        if sel & ~3 == 0:
            raise _Fault(13, ext)
        clo, chi = self._descriptor(sel, ext)
        dpl = (chi >> 13) & 3
        if not chi >> 12 & 1 or not (chi >> 8) & 8 or dpl > cpl:
            raise _Fault(13, (sel & 0xFFFC) + ext)
        if not chi & 0x8000:
            raise _Fault(11, (sel & 0xFFFC) + ext)
        if eflags & VM:
            raise _Unsupported("virtual-8086 mode is not supported")
        conforming = (chi >> 8) & 4
        old_ss, ss_base, ss_flags = self._seg(SEG_SS)
        old_esp = self._u64(4 * 8) & 0xFFFFFFFF
        new_ss, new_esp = old_ss, old_esp
        ring_change = not conforming and dpl < cpl
        if ring_change:
            tr_base, tr_limit = self._table("tr")
            tss32 = (self._u32(ENV["tr"] + 20) >> 8 & 0xF) >= 9
            at, n = (4 + 8 * dpl, 8) if tss32 else (2 + 4 * dpl, 4)
            if at + n - 1 > tr_limit:
                raise _Fault(10, (self._u32(ENV["tr"]) & 0xFFFC) + ext)
            raw = self._read(tr_base + at, n)
            new_esp, new_ss = struct.unpack("<IH", raw[:6]) if tss32 else struct.unpack("<HH", raw)
            if new_ss & ~3 == 0 or new_ss & 3 != dpl:
                raise _Fault(10, (new_ss & 0xFFFC) + ext)
            try:
                slo, shi = self._descriptor(new_ss, ext)
            except _Fault as f:
                raise _Fault(10 if f.vector == 13 else f.vector, f.error, f.cr2) from None
            if not shi >> 12 & 1 or (shi >> 8) & 0xA != 2 or (shi >> 13) & 3 != dpl:
                raise _Fault(10, (new_ss & 0xFFFC) + ext)
            if not shi & 0x8000:
                raise _Fault(12, (new_ss & 0xFFFC) + ext)
            ss_base = (slo >> 16) | ((shi & 0xFF) << 16) | (shi & 0xFF000000)
            if not shi & DESC_B:
                new_esp &= 0xFFFF
            ss32 = True
        else:
            dpl = cpl
            ss32 = bool(ss_flags & DESC_B)
        frame = ([old_ss, old_esp] if ring_change else []) + [eflags, self._seg(SEG_CS)[0], eip]
        if has_err:
            frame.append(err)
        width = 4 if gate32 else 2
        esp = new_esp
        for word in frame:
            esp = (esp - width) & 0xFFFFFFFF
            at = esp if ss32 else esp & 0xFFFF
            self._write((ss_base + at) & 0xFFFFFFFF,
                        struct.pack("<I" if gate32 else "<H", word & (0xFFFFFFFF if gate32 else 0xFFFF)))
        if not ss32:
            esp = (new_esp & 0xFFFF0000) | (esp & 0xFFFF)
        clear = TF | NT | RF | VM | (0 if gtype & 1 else IF)
        self._commit(offset, dpl if ring_change else None,
                     (new_ss & 0xFFFC) | dpl if ring_change else None,
                     (sel & 0xFFFC) | dpl, esp, eflags & ~clear)

    # -- SYSENTER --------------------------------------------------------------------------
    def sysenter(self) -> None:
        """hv_sysenter_hook's twin: the engine only calls hooks and then adds 2 to EIP."""
        uc = self.uc
        cs, esp, eip = (uc.msr_read(m) & 0xFFFFFFFF for m in (0x174, 0x175, 0x176))
        self._load()
        eflags = uc.reg_read(X.UC_X86_REG_EFLAGS)
        if not self._cr(0) & 1 or cs & 0xFFFC == 0:
            at = self._u64(ENV["eip"]) & 0xFFFFFFFF
            self.deliver(13, 0, KIND_EXC, at, at)
            self._load()
            ctypes.c_uint64.from_address(self._env + ENV["eip"]).value -= 2
            uc.context_restore(self.vcpu._ctx)
            return
        self._commit(eip - 2, 0, (cs + 8) & 0xFFFC, cs & 0xFFFC, esp, eflags & ~(VM | IF | RF))
