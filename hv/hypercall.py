"""The hypercall ABI shared by the synthetic firmware and (later) direct-boot kernels.

A hypercall is the 5-byte sequence::

    vmcall              ; 0F 01 C1
    .word NR            ; the call number, read by the host from the instruction stream

Unicorn treats ``vmcall`` as an invalid opcode, which reaches the host as
``UC_HOOK_INSN_INVALID`` without touching guest state; the host reads NR at
CS:EIP+3, runs the handler registered for it and resumes at EIP+5. Carrying the
number in the instruction stream leaves every register free for the service's
own arguments (BIOS calls use all of AX..DX, SI, DI, ES, and EBX for E820).
The same sequence works in real mode and in 32-bit protected mode.

A handler receives a ``HypercallContext`` (registers by name, guest memory, the
machine) and returns ``None`` when done or ``BLOCK`` when it must wait for an
interrupt: the host then resumes at EIP-2, where every blocking call site keeps
``sti; hlt`` (FB F4) in front of its ``vmcall``, so the guest idles in HLT and
retries after the next interrupt, like a BIOS polling its keyboard buffer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from unicorn import x86_const as X

if TYPE_CHECKING:
    from hv.machine import Machine

VMCALL = b"\x0f\x01\xc1"
SITE_LEN = 5          # vmcall + 16-bit call number
WAIT_PROLOGUE = b"\xfb\xf4"   # sti; hlt, before every blocking call site
BLOCK = object()

CF, ZF = 0x0001, 0x0040

_NAMES = ["eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags",
          "ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip", "flags",
          "ah", "al", "bh", "bl", "ch", "cl", "dh", "dl",
          "cs", "ds", "es", "ss", "fs", "gs", "cr0"]
REG_IDS = {n: getattr(X, "UC_X86_REG_" + n.upper()) for n in _NAMES}


class Regs:
    """Guest registers by name: ``regs.ah``, ``regs.es = 0x1000``. Writes to EIP/IP go
    through ``set_eip`` when given (the vCPU's: inside a hook it keeps EIP in sync for
    later I/O hooks of the slice, see hv/vcpu.py)."""

    __slots__ = ("_uc", "_set_eip")

    def __init__(self, uc, set_eip=None) -> None:
        object.__setattr__(self, "_uc", uc)
        object.__setattr__(self, "_set_eip", set_eip)

    def __getattr__(self, name: str) -> int:
        try:
            return self._uc.reg_read(REG_IDS[name])
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: int) -> None:
        if name in ("eip", "ip") and self._set_eip is not None:
            self._set_eip(value & (0xFFFF if name == "ip" else 0xFFFFFFFF))
            return
        self._uc.reg_write(REG_IDS[name], value)


class HypercallContext:
    """What a hypercall handler sees. In real mode, ``flags_image`` reads and
    writes the FLAGS word the ``int`` instruction pushed, so CF/ZF results travel
    back through the stub's ``iret``."""

    def __init__(self, machine: "Machine", regs: Regs, number: int) -> None:
        self.machine = machine
        self.regs = regs
        self.mem = machine.mem
        self.number = number

    def _frame(self) -> int:
        return self.regs.ss * 16 + self.regs.sp + 4   # IP, CS, FLAGS

    @property
    def flags_image(self) -> int:
        return self.mem.u16(self._frame())

    @flags_image.setter
    def flags_image(self, value: int) -> None:
        self.mem.put16(self._frame(), value)

    def set_flag(self, mask: int, on: bool) -> None:
        f = self.flags_image
        self.flags_image = (f | mask) if on else (f & ~mask)

    def set_cf(self, on: bool) -> None:
        self.set_flag(CF, on)

    def set_zf(self, on: bool) -> None:
        self.set_flag(ZF, on)


Handler = Callable[[HypercallContext], object]


class HypercallTable:
    def __init__(self) -> None:
        self._handlers: dict[int, tuple[str, Handler]] = {}

    def register(self, number: int, name: str, handler: Handler) -> None:
        if number in self._handlers:
            raise ValueError(f"hypercall {number:#x} already registered ({self._handlers[number][0]})")
        self._handlers[number] = (name, handler)

    def lookup(self, number: int) -> tuple[str, Handler] | None:
        return self._handlers.get(number)
