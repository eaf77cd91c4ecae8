/* Stage 0 of the C guests that drive hardware directly (disktest, nettest).
 *
 * The boot sector loads the rest of the image with INT 13h (sector by sector, CHS
 * from AH=08h so it works from floppy 00h and hard disk 80h), clears .bss and calls
 * guest_main(boot_drive). After that the guests touch no BIOS service except the
 * timer tick it keeps at 0040:006C; the hardware under test is driven by port I/O.
 *
 * Also holds the interrupt stubs for the slave PIC's IRQ 9 and IRQ 14 (see below). */
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
        calll   guest_main
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

/* Interrupt stubs for IRQs on the slave PIC (vectors 0x70-0x77 as the BIOS set it up).
 * Each one counts the interrupt in irq_counts[n] (u16), masks its own line at the slave
 * PIC and sends EOI to both PICs. Masking first makes the stub safe whether the line is
 * edge- or level-triggered (the device keeps its line up until the guest acknowledges
 * it at the device); the C code unmasks the line again once it has done so. */
        .text
.macro  SLAVE_IRQ n
        .globl  isr_irq\n
isr_irq\n:
        push    %ax
        in      $0xa1, %al
        or      $(1 << (\n - 8)), %al
        out     %al, $0xa1
        mov     $0x20, %al
        out     %al, $0xa0              /* EOI slave, then master (cascade on IR2) */
        out     %al, $0x20
        incw    %cs:irq_counts + 2 * \n
        pop     %ax
        iret
.endm
        SLAVE_IRQ 9
        SLAVE_IRQ 14

        .data
        .globl  irq_counts
        .balign 2
irq_counts:
        .fill   16, 2, 0
