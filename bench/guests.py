"""Benchmark workloads, assembled at run time with GNU as (the same code runs under
hv and on bare Unicorn)."""
from __future__ import annotations

from hv.guests.asm import assemble

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


def boot_sector(kernel: str, body: str | None = None) -> bytes:
    """The kernel (or ``body``, its source with other parameters) as a boot sector:
    interrupts on (the timer runs), a POST code 0x01 when the kernel starts (the
    benchmark times from that write), then cli; hlt."""
    return assemble("""
        xor %ax, %ax
        mov %ax, %ds
        sti
        mov $1, %al
        out %al, $0x80
""" + (KERNELS[kernel] if body is None else body) + """
        cli
        hlt
""")


def bare(kernel: str) -> bytes:
    """The kernel alone, ending with hlt, for bare Unicorn."""
    return assemble(KERNELS[kernel] + "\n hlt\n", boot_sector=False)


FIRST_INSTRUCTION = assemble("cli\n hlt\n")   # for boot time: the run ends at the boot sector's start


# POST codes (port 0x80) that delimit the timed phases of the disk benchmarks, the
# same in the ATA guest below and in guests/src/blkbench.c (virtio-blk).
POST_START, POST_READ_DONE, POST_WRITE_DONE = 0x01, 0x02, 0x03


def _ata_pass(size: int, write: bool) -> str:
    """One pass over the first ``size`` bytes of the primary master: READ/WRITE SECTORS
    commands of up to 256 sectors (128 KiB), one `rep insw`/`rep outsw` per sector (the
    way a simple driver does it) to/from the 512 bytes at 1000:0000."""
    sectors = size // 512
    per = min(256, sectors)
    if not per or sectors % per:
        raise ValueError(f"{size} bytes is not a whole number of {per}-sector commands")
    command = 0x30 if write else 0x20
    transfer = ("xor %si, %si; push %ds; push %es; pop %ds; rep outsw; pop %ds" if write
                else "xor %di, %di; rep insw")
    return f"""
        xor %ebx, %ebx                  # LBA
        mov ${sectors // per}, %bp      # commands
1:      mov $0x1F7, %dx
4:      in %dx, %al                     # the previous command has finished (BSY clear)
        test $0x80, %al
        jnz 4b
        mov $0x1F2, %dx
        mov ${per & 0xFF}, %al          # sector count (0 = 256)
        out %al, %dx
        mov %ebx, %eax
        inc %dx                         # 0x1F3 LBA low
        out %al, %dx
        shr $8, %eax
        inc %dx
        out %al, %dx
        shr $8, %eax
        inc %dx
        out %al, %dx
        shr $8, %eax
        and $0x0F, %al
        or $0xE0, %al                   # LBA, master
        inc %dx
        out %al, %dx
        mov ${command:#x}, %al
        inc %dx                         # 0x1F7 command
        out %al, %dx
        mov ${per}, %si
        push %si
2:      mov $0x1F7, %dx
3:      in %dx, %al
        test $0x80, %al                 # BSY
        jnz 3b
        test $0x08, %al                 # DRQ
        jz 3b
        mov $0x1F0, %dx
        mov $256, %cx
        {transfer}
        pop %si
        dec %si
        push %si
        jnz 2b
        pop %si
        add ${per}, %ebx
        dec %bp
        jnz 1b
"""


def ata_sequential(size: int, write: bool | None = None) -> bytes:
    """Sequential ATA PIO transfer of ``size`` bytes on the primary master (see
    _ata_pass): ``write=None`` reads the whole range and then writes it, False only
    reads, True only writes. POST code 0x01 just before the first command, 0x02 when the
    reads are done, 0x03 when the writes and a FLUSH CACHE are (the codes blkbench
    writes), then `cli; hlt`."""
    read_pass = _ata_pass(size, write=False) if not write else ""
    write_pass = (_ata_pass(size, write=True) + """
        mov $0x1F7, %dx
        mov $0xE7, %al                  # FLUSH CACHE
        out %al, %dx
5:      in %dx, %al
        test $0x80, %al
        jnz 5b
""") if write is not False else ""
    return assemble(f"""
        xor %ax, %ax
        mov %ax, %ds
        mov $0x1000, %ax
        mov %ax, %es
        mov ${POST_START}, %al
        out %al, $0x80
{read_pass}
        mov ${POST_READ_DONE}, %al
        out %al, $0x80
{write_pass}
        mov ${POST_WRITE_DONE}, %al
        out %al, $0x80
        cli
        hlt
""")


def ne2000_transmit(frames: int, size: int) -> bytes:
    """Transmit ``frames`` frames of ``size`` bytes on the NE2000 at 0x300: remote DMA
    write of the frame into card RAM (`rep outsw`), then TXP, then wait for PTX. POST code
    0x01 before the first frame, 0x02 after the last (as netbench on virtio-net)."""
    words = (size + 1) // 2
    return assemble(f"""
        xor %ax, %ax
        mov %ax, %ds
        mov %ax, %es
        mov $0x300, %dx
        mov $0x21, %al                  # CR: stop, abort remote DMA, page 0
        out %al, %dx
        mov $0x30E, %dx
        mov $0x49, %al                  # DCR: word transfers, normal, FIFO 8
        out %al, %dx
        mov $0x30D, %dx
        xor %al, %al                    # TCR: normal
        out %al, %dx
        mov $0x30F, %dx
        xor %al, %al                    # IMR: no interrupts (polled)
        out %al, %dx
        mov $0x307, %dx
        mov $0xFF, %al                  # ISR: clear all
        out %al, %dx
        mov $0x300, %dx
        mov $0x22, %al                  # CR: start
        out %al, %dx
        mov $1, %al
        out %al, $0x80
        mov ${frames}, %bp
1:      mov $0x30A, %dx                 # RBCR0/1 = size
        mov ${size & 0xFF}, %al
        out %al, %dx
        inc %dx
        mov ${size >> 8}, %al
        out %al, %dx
        mov $0x308, %dx                 # RSAR = 0x4000
        xor %al, %al
        out %al, %dx
        inc %dx
        mov $0x40, %al
        out %al, %dx
        mov $0x300, %dx
        mov $0x12, %al                  # CR: remote write, start
        out %al, %dx
        mov $0x310, %dx
        mov $0x8000, %si
        mov ${words}, %cx
        rep outsw
        mov $0x304, %dx                 # TPSR = 0x40
        mov $0x40, %al
        out %al, %dx
        mov $0x305, %dx                 # TBCR = size
        mov ${size & 0xFF}, %al
        out %al, %dx
        inc %dx
        mov ${size >> 8}, %al
        out %al, %dx
        mov $0x300, %dx
        mov $0x26, %al                  # CR: transmit, start, no remote DMA
        out %al, %dx
        mov $0x307, %dx
2:      in %dx, %al
        test $0x02, %al                 # PTX
        jz 2b
        mov $0x0A, %al                  # clear PTX and RDC
        out %al, %dx
        dec %bp
        jnz 1b
        mov $2, %al                     # POST 0x02: the last frame went out
        out %al, $0x80
        cli
        hlt
""")


# A direct-boot kernel that drops to ring 3 and makes SYSCALLS `int $0x80` system calls
# through a DPL-3 trap gate (handler: add the arguments, iret), then leaves through
# `int $0x81`, whose ring-0 handler prints on COM1 and halts. Flat segments, a TSS with
# SS0:ESP0, no paging: the cost measured is the ring 3 -> 0 -> 3 round trip itself.
# GDT: 0x08 code0, 0x10 data0, 0x1B code3, 0x23 data3, 0x28 TSS.
RING3_SOURCE = """
        mov $gdt_end - gdt - 1, %ax
        mov %ax, gdtr
        movl $gdt, gdtr + 2
        lgdt gdtr
        ljmp $0x08, $1f
1:      mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $tss, %eax                 # the TSS descriptor's base
        mov %ax, gdt + 0x28 + 2
        shr $16, %eax
        mov %al, gdt + 0x28 + 4
        mov %ah, gdt + 0x28 + 7
        movl $0x9F000, tss + 4         # ESP0
        movl $0x10, tss + 8            # SS0
        mov $0x28, %ax
        ltr %ax
        mov $0x8000, %edi              # the IDT: 256 empty gates, then 0x80, 0x81
        mov $512, %ecx
        xor %eax, %eax
        rep stosl
        mov $syscall, %eax
        mov %ax, 0x8000 + 0x80*8
        movw $0x08, 0x8000 + 0x80*8 + 2
        movw $0xEF00, 0x8000 + 0x80*8 + 4     # present, DPL 3, 32-bit trap gate
        shr $16, %eax
        mov %ax, 0x8000 + 0x80*8 + 6
        mov $leave, %eax
        mov %ax, 0x8000 + 0x81*8
        movw $0x08, 0x8000 + 0x81*8 + 2
        movw $0xEE00, 0x8000 + 0x81*8 + 4     # present, DPL 3, 32-bit interrupt gate
        shr $16, %eax
        mov %ax, 0x8000 + 0x81*8 + 6
        lidt idtr
        mov $0x3f8, %dx                # POST-like mark: the timed part starts
        mov $'<', %al
        out %al, %dx
        push $0x23                     # iret to ring 3: SS, ESP, EFLAGS, CS, EIP
        push $0x80000
        push $0x202
        push $0x1B
        push $user
        iret
user:   mov $0x23, %ax
        mov %ax, %ds
        mov $SYSCALLS, %esi
        xor %edi, %edi
2:      test %esi, %esi
        jz 3f
        mov $1, %ebx
        mov $2, %ecx
        int $0x80
        add %eax, %edi
        dec %esi
        jmp 2b
3:      int $0x81
syscall:
        lea (%ebx,%ecx), %eax
        iret
leave:  mov $0x10, %ax
        mov %ax, %ds
        cmp 4(%esp), %eax              # (CS pushed at +4 must be the ring-3 0x1B)
        mov 4(%esp), %eax
        and $3, %eax
        add $'0', %al
        mov $0x3f8, %dx
        out %al, %dx                   # '3': the interrupt came from ring 3
        mov %edi, %eax                 # the sum of the results, 3 * SYSCALLS
        mov $0x3f8, %dx
        mov $8, %ecx
4:      rol $4, %eax
        push %eax
        and $0xF, %al
        add $'0', %al
        cmp $'9', %al
        jbe 5f
        add $7, %al
5:      out %al, %dx
        pop %eax
        loop 4b
        cli
        hlt
        .balign 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF
        .quad 0x00CF92000000FFFF
        .quad 0x00CFFA000000FFFF
        .quad 0x00CFF2000000FFFF
        .quad 0x0000890000000067
gdt_end:
gdtr:   .word 0
        .long 0
idtr:   .word 256*8 - 1
        .long 0x8000
        .balign 4
tss:    .fill 104, 1, 0
"""


def ring3_kernel(syscalls: int) -> bytes:
    """RING3_SOURCE as a flat kernel at 1 MiB (hv run --kernel)."""
    return assemble(".code32\n" + RING3_SOURCE.replace("SYSCALLS", str(syscalls)),
                    org=0x100000, boot_sector=False)
