/* bioscheck stage 0: the boot sector. Loads the rest of the image (sector by sector,
 * CHS from INT 13h AH=08h so it works from floppy 00h and hard disk 80h), then calls
 * the C checks. Also holds the INT thunk the C code uses for every BIOS call.
 *
 * Nothing here writes into 0000:7C00..7DFF: the int13_02 check compares the disk's
 * sector 0 with the copy the BIOS loaded there. */
        .code16

        .section .boot, "ax"
        .globl  _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %esp
        ljmp    $0, $1f                 /* some BIOSes jump to 07C0:0000 */
1:      sti
        cld
        mov     %sp, %bp
        sub     $8, %sp
        /* frame: -2 drive, -4 sectors per track, -6 heads, -8 LBA being loaded */
        movzbw  %dl, %ax
        mov     %ax, -2(%bp)
        movw    $18, -4(%bp)            /* 1.44 MB floppy, in case AH=08h fails */
        movw    $2, -6(%bp)
        mov     $0x08, %ah
        xor     %di, %di                /* ES:DI=0 guards against buggy BIOSes */
        int     $0x13
        jc      2f
        and     $0x3f, %cx
        jz      2f
        mov     %cx, -4(%bp)
        movzbw  %dh, %ax
        inc     %ax
        mov     %ax, -6(%bp)
2:      xor     %ax, %ax
        mov     %ax, %es
        movw    $1, -8(%bp)
load:
        mov     -8(%bp), %ax
        cmp     $_image_sectors, %ax
        jae     loaded
        mov     $3, %si                 /* tries: floppies may need a spin-up reset */
retry:
        mov     -8(%bp), %ax            /* LBA -> CHS */
        xor     %dx, %dx
        divw    -4(%bp)
        inc     %dx
        mov     %dx, %cx                /* CL = sector */
        xor     %dx, %dx
        divw    -6(%bp)                 /* AX = cylinder, DX = head */
        mov     %al, %ch
        shl     $6, %ah
        or      %ah, %cl
        mov     %dl, %dh
        mov     -2(%bp), %dl
        mov     -8(%bp), %bx
        shl     $9, %bx
        add     $0x7c00, %bx
        mov     $0x0201, %ax
        int     $0x13
        jnc     3f
        xor     %ah, %ah
        mov     -2(%bp), %dl
        int     $0x13
        dec     %si
        jnz     retry
        mov     $msg_loadfail, %si
        jmp     die
3:      incw    -8(%bp)
        jmp     load
loaded:
        mov     $_bss_start, %di
        mov     $_bss_end, %cx
        sub     %di, %cx
        xor     %al, %al
        rep     stosb
        movzwl  -2(%bp), %eax
        mov     $0x7c00, %esp
        pushl   %eax
        calll   bioscheck_main
        mov     $msg_return, %si
die:
        /* Minimal COM1 output; the UART is left as the BIOS set it up. */
        lodsb
        test    %al, %al
        jz      4f
        mov     $0x3f8, %dx
        out     %al, %dx
        jmp     die
4:      cli
        hlt
        jmp     4b

msg_loadfail: .asciz "FAIL load\r\n"
msg_return:   .asciz "FAIL main returned\r\n"

        .org    510
        .word   0xaa55

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
