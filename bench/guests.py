"""Benchmark workloads, assembled at run time with GNU as (the same code runs under
hv and on bare Unicorn)."""
from __future__ import annotations

from tests.asm import assemble

LOOP_ITERATIONS = 5_000_000   # tight loop: x8 iterations

# A CPU-bound kernel: bitwise CRC-32 (polynomial 0xEDB88320) over a 256-byte
# buffer, one byte per iteration, the 8 bit steps unrolled and branch-free: about
# 55 instructions per translated block, the shape of a real compute loop.
# TIGHT_BODY is the worst case for any per-block cost (3 instructions per block).
_CRC_BIT = """
        mov %eax, %edx
        and $1, %edx
        neg %edx
        and $0xEDB88320, %edx
        shr $1, %eax
        xor %edx, %eax
"""
CRC_ITERATIONS = 10_000_000
CHECKSUM_BODY = f"""
        mov ${CRC_ITERATIONS}, %ecx
        mov $0xFFFFFFFF, %eax
        xor %ebx, %ebx
1:      movzbl 0x8000(%ebx), %esi
        xor %esi, %eax
""" + _CRC_BIT * 8 + """
        inc %bl
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
