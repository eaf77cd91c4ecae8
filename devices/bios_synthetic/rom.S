/* The synthetic BIOS ROM: every service entry point is one hypercall.
 *
 * The services themselves run on the host (devices/bios_synthetic/*.py).
 * Hypercall sequence (hv/hypercall.py): vmcall; .word NR.
 *   NR 0x0001            POST (then int 19h boots)
 *   NR 0x0100 + vector   the service behind IVT[vector]
 *
 * Vector stubs are 8 bytes each at 0x1000 + 8*vector:
 *     sti; hlt            <- a blocking service resumes here (hypercall BLOCK)
 *     vmcall; .word NR    <- IVT entry points here (stub + 2)
 *     iret
 * so a service that must wait (INT 16h with an empty buffer) idles in HLT with
 * interrupts on and retries after the next interrupt.
 * Assembled at offset 0 of segment F000 (physical 0xF0000).
 */
        .code16
        .text
        .globl _start
_start:

        .org 0x0100
post:   cli
        xorw %ax, %ax
        movw %ax, %ss
        movw $0x7000, %sp               /* POST stack below the boot sector */
        vmcall
        .word 0x0001
        int $0x19                       /* host boots; only returns if nothing booted */
halt:   cli
        hlt
        jmp halt

        /* IRQ 0: the host advances the tick count and sends EOI, then the
           BIOS calls the user timer hook INT 1Ch as a PC BIOS does. */
        .org 0x0200
irq0:   vmcall
        .word 0x0108
        int $0x1c
        iret

        .org 0x1000
vectors:
        .set vec, 0
        .rept 256
        sti
        hlt
        vmcall
        .word 0x0100 + vec
        iret
        .set vec, vec + 1
        .endr

        /* Diskette parameter table (INT 1Eh, returned by INT 13h AH=08h) for 1.44M:
           specify bytes, motor-off delay, 512-byte sectors, 18 sectors/track, gap,
           data length, format gap, fill byte, head settle, motor start. */
        .org 0xEFC7
dpt:    .byte 0xAF, 0x02, 0x25, 0x02, 0x12, 0x1B, 0xFF, 0x6C, 0xF6, 0x0F, 0x08

        .org 0xFFF0
reset:  ljmp $0xF000, $post
        .ascii "11/28/26"                   /* BIOS date at F000:FFF5 */
        .byte 0
        .byte 0xFC                          /* model byte: AT */
        .byte 0
