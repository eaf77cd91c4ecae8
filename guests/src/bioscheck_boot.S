/* bioscheck stage 0: the boot sector (boot_sector.inc, shared with the other C guests)
 * loads the rest of the image and calls the C checks, bioscheck_main(boot_drive). Also
 * holds the INT thunk the C code uses for every BIOS call.
 *
 * Nothing here writes into 0000:7C00..7DFF: the int13_02 check compares the disk's
 * sector 0 with the copy the BIOS loaded there. */
        .code16
        .include "boot_sector.inc"
        BOOT_SECTOR bioscheck_main

/* void bios_call(void (*stub)(void), struct regs *r)
 * cdecl, 32-bit (gcc -m16). Loads EAX..EBP, DS, ES from *r, calls a stub that is a
 * real `int n` instruction (so BIOSes that trap INT opcodes see one), stores the
 * registers and FLAGS back. struct regs: eax ebx ecx edx esi edi ebp (u32 each),
 * ds es (u16 each), flags (u32). */
        .text
        .globl  bios_call
bios_call:
        pushal
        pushw   %ds
        pushw   %es
        movl    40(%esp), %eax          /* stub (ret 4 + pushal 32 + ds/es 4) */
        movw    %ax, %cs:stub_addr
        movl    44(%esp), %ebp          /* r */
        movw    30(%ebp), %es
        movl    0(%ebp), %eax
        movl    4(%ebp), %ebx
        movl    8(%ebp), %ecx
        movl    12(%ebp), %edx
        movl    16(%ebp), %esi
        movl    20(%ebp), %edi
        pushl   %ebp                    /* keep r */
        pushw   28(%ebp)
        movl    24(%ebp), %ebp
        popw    %ds
        callw   *%cs:stub_addr
        pushfw
        pushw   %ds
        pushl   %ebp
        xorw    %bp, %bp
        movw    %bp, %ds
        movl    8(%esp), %ebp           /* r: past ebp(4) ds(2) flags(2) */
        movl    %eax, 0(%ebp)
        movl    %ebx, 4(%ebp)
        movl    %ecx, 8(%ebp)
        movl    %edx, 12(%ebp)
        movl    %esi, 16(%ebp)
        movl    %edi, 20(%ebp)
        movw    %es, 30(%ebp)
        popl    %eax
        movl    %eax, 24(%ebp)
        popw    %ax
        movw    %ax, 28(%ebp)
        popw    %ax
        movzwl  %ax, %eax
        movl    %eax, 32(%ebp)
        addl    $4, %esp                /* drop the saved r */
        popw    %es
        popw    %ds
        popal
        cld                             /* C code assumes DF=0 */
        retl

stub_addr: .word 0

.macro  INT_STUB n
        .globl  bios_int_\n
bios_int_\n:
        int     $0x\n
        retw
.endm
        INT_STUB 10
        INT_STUB 11
        INT_STUB 12
        INT_STUB 13
        INT_STUB 15
        INT_STUB 16
        INT_STUB 19
        INT_STUB 1a

/* The last sector of the image: scratch space the INT 13h write checks overwrite
 * and then restore. Its content is a known pattern. */
        .section .scratch, "a"
        .globl  scratch_sector_image
scratch_sector_image:
        .rept   16
        .ascii  "hv bioscheck scratch sector ...\n"
        .endr
