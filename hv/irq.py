"""Interrupt and exception delivery: what the CPU does with a vector and Unicorn doesn't.

Unicorn never vectors ``int n``, CPU faults or external interrupts through the
IVT/IDT (notes §1): the first two arrive at ``UC_HOOK_INTR`` with EIP already
at the return address (after the instruction for ``int n``, at it for faults),
and there is no way to raise an external interrupt at all. So the host builds
the frame and loads CS:EIP itself:

* real mode: push FLAGS, CS, IP on SS:SP; clear IF/TF/AC; CS:IP from the IVT;
* protected mode, 32-bit gates: push EFLAGS, CS, EIP (+ error code) on the
  current stack when the handler runs at the current privilege level.

A ring change (CPL 3 -> 0 through the TSS stack) plugs into ``_stack_for``;
exceptions with error codes take ``error_code``; a local APIC would call
``deliver`` with its own vector. ``old_exception`` is reset after every
delivery, otherwise Unicorn turns the next fault into a #DF (notes §2).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from unicorn import x86_const as X

if TYPE_CHECKING:
    from hv.vcpu import Vcpu

IF, TF, NT, RF, VM, AC = 1 << 9, 1 << 8, 1 << 14, 1 << 16, 1 << 17, 1 << 18
INT_GATE32, TRAP_GATE32, INT_GATE16, TRAP_GATE16 = 0xE, 0xF, 0x6, 0x7
# Vectors whose CPU-raised form pushes an error code.
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17})


class GuestFault(Exception):
    """The guest did something the machine cannot continue from (the run ends)."""


class InterruptDelivery:
    def __init__(self, vcpu: "Vcpu") -> None:
        self.vcpu = vcpu
        self.uc = vcpu.uc
        self.mem = vcpu.mem

    def deliver(self, vector: int, error_code: int | None = None, soft: bool = False) -> None:
        if self.uc.reg_read(X.UC_X86_REG_CR0) & 1:
            self._deliver_protected(vector, error_code, soft)
        else:
            self._deliver_real(vector)
        self.vcpu.clear_old_exception()

    # -- real mode ---------------------------------------------------------------
    def _deliver_real(self, vector: int) -> None:
        uc, mem = self.uc, self.mem
        flags = uc.reg_read(X.UC_X86_REG_EFLAGS)
        cs = uc.reg_read(X.UC_X86_REG_CS)
        ip = uc.reg_read(X.UC_X86_REG_EIP) & 0xFFFF
        ss = uc.reg_read(X.UC_X86_REG_SS)
        sp = uc.reg_read(X.UC_X86_REG_ESP) & 0xFFFF
        frame = struct.pack("<HHH", ip, cs, flags & 0xFFFF)
        sp = (sp - 6) & 0xFFFF
        base = ss << 4
        if sp <= 0xFFFA:
            mem.write(base + sp, frame)
        else:  # the frame wraps around the segment, as it does on a real CPU
            for i, b in enumerate(frame):
                mem.write(base + ((sp + i) & 0xFFFF), bytes([b]))
        off, seg = struct.unpack("<HH", mem.read(vector * 4, 4))
        uc.reg_write(X.UC_X86_REG_SP, sp)
        uc.reg_write(X.UC_X86_REG_EFLAGS, flags & ~(IF | TF | AC))
        uc.reg_write(X.UC_X86_REG_CS, seg)
        self.vcpu.set_eip(off)

    # -- protected mode ------------------------------------------------------------
    def _deliver_protected(self, vector: int, error_code: int | None, soft: bool) -> None:
        uc, vcpu = self.uc, self.vcpu
        _, idt_base, idt_limit, _ = uc.reg_read(X.UC_X86_REG_IDTR)
        if vector * 8 + 7 > idt_limit:
            raise GuestFault(f"vector {vector:#x} is beyond the IDT limit {idt_limit:#x}")
        lo, hi = struct.unpack("<II", vcpu.read_linear(idt_base + vector * 8, 8))
        selector = lo >> 16
        offset = (hi & 0xFFFF0000) | (lo & 0xFFFF)
        gate_type = (hi >> 8) & 0xF
        dpl = (hi >> 13) & 3
        if not hi & 0x8000:
            raise GuestFault(f"IDT gate {vector:#x} is not present")
        if gate_type not in (INT_GATE32, TRAP_GATE32):
            raise GuestFault(f"IDT gate {vector:#x} has unsupported type {gate_type:#x}")
        cpl = uc.reg_read(X.UC_X86_REG_CS) & 3
        if soft and dpl < cpl:
            raise GuestFault(f"int {vector:#x} from ring {cpl} through a DPL{dpl} gate (#GP)")
        eflags = uc.reg_read(X.UC_X86_REG_EFLAGS)
        frame = [uc.reg_read(X.UC_X86_REG_EIP), uc.reg_read(X.UC_X86_REG_CS), eflags]
        if error_code is not None:
            frame.insert(0, error_code)
        esp = self._stack_for(selector, cpl) - 4 * len(frame)
        vcpu.write_linear(vcpu.ss_base() + esp, struct.pack(f"<{len(frame)}I", *frame))
        uc.reg_write(X.UC_X86_REG_CS, selector)
        uc.reg_write(X.UC_X86_REG_ESP, esp)
        clear = TF | NT | RF | VM | (IF if gate_type == INT_GATE32 else 0)
        uc.reg_write(X.UC_X86_REG_EFLAGS, eflags & ~clear)
        vcpu.set_eip(offset)

    def _stack_for(self, selector: int, cpl: int) -> int:
        """The ESP the frame goes below. Same privilege: the current stack.
        Ring 3 -> 0 would load SS0:ESP0 from the TSS and lower CPL through the
        context blob (notes §1.4 B); it is the one branch to add here."""
        target_dpl = selector & 3  # handlers run at the RPL of their code selector
        if target_dpl != cpl:
            raise GuestFault(f"interrupt from ring {cpl} into ring {target_dpl}: "
                             "privilege-changing delivery is not implemented yet")
        return self.uc.reg_read(X.UC_X86_REG_ESP)
