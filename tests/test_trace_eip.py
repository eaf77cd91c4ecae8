"""--trace names the instruction that made each port exit, in every slice (issue 15).

After hv delivers a vector from inside a hook (`int n`, a fault), the engine used to leave
the EIP seen by later I/O hooks stale until the slice ended (docs/unicorn.md §7): a trace
line then named the block's first instruction instead of the `in`/`out`. This guest mixes
hook-delivered `int $0x30` (whose handler does port I/O too), port exits at different
places in their blocks, and PIT interrupts that end slices at random points.
"""
from __future__ import annotations

import re

from hv.machine import Machine, MachineConfig
from tests.test_vcpu_control import IDT_AND_PIC, IDT_DATA, flat_kernel

GUEST = IDT_AND_PIC + """
        mov $soft, %eax                # gate 0x30: a trap gate to `soft`
        mov %ax, 0x8000 + 0x30*8
        movw $0x08, 0x8000 + 0x30*8 + 2
        movw $0x8F00, 0x8000 + 0x30*8 + 4
        shr $16, %eax
        mov %ax, 0x8000 + 0x30*8 + 6
        sti
        mov $3000, %ebx
1:      int $0x30
        mov %ebx, %eax
        add $1, %eax
        out %al, $0x80
        inc %eax
        xor %ecx, %ecx
        in $0x61, %al
        mov $0x3f8 + 7, %dx
        out %al, %dx                   # the UART's scratch register
        dec %ebx
        jnz 1b
        cli
        hlt
soft:   push %eax
        mov $0x55, %al
        add $1, %al
        out %al, $0x80
        pop %eax
        iret
""" + IDT_DATA


def test_every_port_exit_is_traced_at_its_own_instruction(tmp_path):
    lines: list[str] = []
    # Tracing runs every exit through Python (the Python dispatcher and delivery).
    m = Machine(MachineConfig(kernel=str(flat_kernel(tmp_path, GUEST)), kernel_format="flat",
                              trace=lines.append, timeout=60))
    try:
        result = m.run()
    finally:
        m.close()
    assert "halted" in result.reason or result.exit_code == 0, result.reason
    io = [line for line in lines if line.split()[0] in ("in", "out")]
    # 4 port exits per round in the loop and 1 in the handler, plus the set-up's.
    assert len(io) >= 3000 * 4
    wrong = [line for line in io if not re.search(r"CS:IP=\S+\s+(in|out)\b", line)]
    assert not wrong, wrong[:5]
    assert any(line.split()[0] == "irq" for line in lines)     # slices did end on ticks
