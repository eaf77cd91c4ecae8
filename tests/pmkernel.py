"""Small protected-mode test kernels (direct boot, flat, 32-bit) for the CPU tests.

``kernel(body, data="", handlers={vector: label or (label, type_attr)})`` gives the
source of a kernel that sets up a GDT (0x08 code0, 0x10 data0, 0x1B code3, 0x23 data3,
0x28 TSS with SS0:ESP0 = 0x10:0x9F000), an IDT at 0x8000 with the given gates, then runs
``body`` at ring 0. Helpers available to the body and handlers:

* ``call putc`` (AL), ``call puthex`` (EAX as 8 hex digits), ``call puts`` (ESI: NUL-
  terminated), each to COM1, preserving registers;
* ``to_ring3 LABEL``: a macro that irets to LABEL at ring 3 (stack 0x80000, IF=0);
* ``halt``: cli; hlt (the run ends with exit 0).
"""
from __future__ import annotations

from hv import boot
from tests.asm import assemble

INT_GATE0, TRAP_GATE0, INT_GATE3, TRAP_GATE3 = 0x8E00, 0x8F00, 0xEE00, 0xEF00

PRELUDE = """
.macro to_ring3 target
        push $0x23
        push $0x80000
        push $0x002
        push $0x1B
        push $\\target
        iret
.endm
.macro halt
        cli
        hlt
.endm
        lgdt gdtr
        ljmp $0x08, $1f
1:      mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $0x9F000, %esp
        mov $tss, %eax
        mov %ax, gdt + 0x28 + 2
        shr $16, %eax
        mov %al, gdt + 0x28 + 4
        mov %ah, gdt + 0x28 + 7
        movl $0x9F000, tss + 4
        movl $0x10, tss + 8
        mov $0x28, %ax
        ltr %ax
        mov $0x8000, %edi
        mov $512, %ecx
        xor %eax, %eax
        rep stosl
        mov $gates, %esi
2:      mov (%esi), %ebx               # vector (0xFFFFFFFF ends the list)
        cmp $0xFFFFFFFF, %ebx
        je 3f
        mov 4(%esi), %eax              # handler
        mov 8(%esi), %edx              # type/attributes word
        lea 0x8000(,%ebx,8), %edi
        mov %ax, (%edi)
        movw $0x08, 2(%edi)
        mov %dx, 4(%edi)
        shr $16, %eax
        mov %ax, 6(%edi)
        add $12, %esi
        jmp 2b
3:      lidt idtr
        jmp body
putc:   push %edx
        mov $0x3f8, %dx
        out %al, %dx
        pop %edx
        ret
puts:   push %eax
        push %esi
1:      lodsb
        test %al, %al
        jz 2f
        call putc
        jmp 1b
2:      pop %esi
        pop %eax
        ret
puthex: push %eax
        push %ecx
        mov $8, %ecx
1:      rol $4, %eax
        push %eax
        and $0xF, %al
        add $'0', %al
        cmp $'9', %al
        jbe 2f
        add $7, %al
2:      call putc
        pop %eax
        loop 1b
        pop %ecx
        pop %eax
        ret
body:
"""

TAIL = """
        .balign 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF
        .quad 0x00CF92000000FFFF
        .quad 0x00CFFA000000FFFF
        .quad 0x00CFF2000000FFFF
        .quad 0x0000890000000067
gdt_end:
gdtr:   .word gdt_end - gdt - 1
        .long gdt
idtr:   .word 256*8 - 1
        .long 0x8000
        .balign 4
tss:    .fill 104, 1, 0
"""


def kernel(body: str, data: str = "", handlers: dict | None = None) -> str:
    gates = ["gates:"]
    for vector, spec in (handlers or {}).items():
        label, attr = (spec, INT_GATE0) if isinstance(spec, str) else spec
        gates.append(f"        .long {vector}, {label}, {attr}")
    gates.append("        .long 0xFFFFFFFF")
    return PRELUDE + body + "\n" + data + "\n        .balign 4\n" + "\n".join(gates) + TAIL


def write_kernel(path, source: str):
    path.write_bytes(assemble(".code32\n" + source, org=boot.FLAT_LOAD_ADDR, boot_sector=False))
    return path
