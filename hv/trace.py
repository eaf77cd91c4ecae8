"""Disassembly for --trace, with capstone."""
from __future__ import annotations

import capstone

_cs = {16: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16),
       32: capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)}


def disassemble(code: bytes, address: int, bits: int) -> str:
    for insn in _cs[bits].disasm(code, address, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "(bad)"


def instruction_length(code: bytes, address: int, bits: int) -> int:
    """The length of the first instruction in ``code`` (0 if it does not decode)."""
    for insn in _cs[bits].disasm(code, address, 1):
        return insn.size
    return 0
