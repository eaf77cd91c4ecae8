"""Benchmark workloads, assembled at run time with GNU as (the same code runs under
hv and on bare Unicorn)."""
from __future__ import annotations

from tests.asm import assemble

LOOP_ITERATIONS = 5_000_000

# A CPU-bound kernel: a byte-wise Fletcher-style checksum over a 64-byte buffer,
# unrolled 4x, in a loop. About 20 instructions per translated block: what a
# real compute loop looks like, so the per-block cost of the timer check shows in
# proportion. TIGHT_LOOP is the worst case (3 instructions per block).
CHECKSUM_BODY = f"""
        mov ${LOOP_ITERATIONS}, %ecx
        xor %eax, %eax
        xor %edx, %edx
        xor %ebx, %ebx
1:      mov %ebx, %esi
        and $0x3c, %esi
        addb 0x8000(%esi), %al
        add %eax, %edx
        addb 0x8001(%esi), %al
        add %eax, %edx
        addb 0x8002(%esi), %al
        add %eax, %edx
        addb 0x8003(%esi), %al
        add %eax, %edx
        rol $3, %edx
        xor %ecx, %edx
        add $4, %ebx
        dec %ecx
        jnz 1b
"""

TIGHT_BODY = f"""
        mov ${LOOP_ITERATIONS * 8}, %ecx
        xor %eax, %eax
1:      add %ecx, %eax
        dec %ecx
        jnz 1b
"""

KERNELS = {"checksum": CHECKSUM_BODY, "tight": TIGHT_BODY}


def boot_sector(kernel: str) -> bytes:
    """The kernel as a boot sector: interrupts on (the timer runs), a POST code
    0x01 when the kernel starts (the benchmark times from that write), then cli; hlt."""
    return assemble("""
        xor %ax, %ax
        mov %ax, %ds
        sti
        mov $1, %al
        out %al, $0x80
""" + KERNELS[kernel] + """
        cli
        hlt
""")


def bare(kernel: str) -> bytes:
    """The kernel alone, ending with hlt, for bare Unicorn."""
    return assemble(KERNELS[kernel] + "\n hlt\n", boot_sector=False)


FIRST_INSTRUCTION = assemble("cli\n hlt\n")   # for boot time: the run ends at the boot sector's start
