/* timer: own IRQ0 handler on vector 8, count 5 ticks with hlt between them,
 * check the PIT channel 0 counter counts down via latch reads, then halt. */
        .code16
        .include "macros.inc"

        PIC1_CMD  = 0x20
        PIC1_DATA = 0x21
        PIC_EOI   = 0x20        /* non-specific end of interrupt */
        PIT_CH0   = 0x40
        PIT_MODE  = 0x43
        PIT_LATCH_CH0 = 0x00    /* SC=00 RW=00: counter latch command for channel 0 */
        IRQ0_VEC  = 8 * 4       /* IVT slot of the master PIC's IRQ0 */
        NTICKS    = 5

        .text
        .globl  _start
_start:
        GUEST_ENTRY
        call    serial_init
        mov     $msg_start, %si
        call    puts

        cli
        mov     IRQ0_VEC, %ax           /* keep the BIOS vector to restore at the end */
        mov     %ax, old_vec
        mov     IRQ0_VEC+2, %ax
        mov     %ax, old_vec+2
        movw    $irq0, IRQ0_VEC
        movw    $0, IRQ0_VEC+2
        in      $PIC1_DATA, %al         /* make sure IRQ0 is unmasked */
        and     $0xfe, %al
        out     %al, $PIC1_DATA

        xor     %bx, %bx                /* ticks reported so far */
wait:   sti
        hlt                             /* sti's shadow: no tick can slip in before hlt */
        cli
        cmp     %bx, ticks
        je      wait                    /* woken by some other interrupt */
        inc     %bx
        mov     $msg_tick, %si
        call    puts
        mov     %bl, %al
        add     $'0', %al
        call    putc
        mov     $crlf, %si
        call    puts
        cmp     $NTICKS, %bx
        jb      wait

        /* Latch channel 0 twice; a running counter reads lower the second time
         * unless it reloaded in between, so allow a few tries. */
        mov     $8, %cx
pit_try:
        call    pit_read
        mov     %ax, %bx
        push    %cx
        mov     $64, %cx
1:      in      $0x61, %al              /* a few slow I/O reads as a delay */
        loop    1b
        pop     %cx
        call    pit_read
        cmp     %bx, %ax
        jb      pit_down
        loop    pit_try
        mov     $msg_pit_bad, %si
        jmp     pit_report
pit_down:
        mov     $msg_pit_ok, %si
pit_report:
        call    puts

        mov     old_vec, %ax            /* hand IRQ0 back to the BIOS */
        mov     %ax, IRQ0_VEC
        mov     old_vec+2, %ax
        mov     %ax, IRQ0_VEC+2
        mov     $msg_done, %si
        call    puts
        HALT

/* AX = channel 0 count (latched, LSB then MSB). */
pit_read:
        mov     $PIT_LATCH_CH0, %al
        out     %al, $PIT_MODE
        in      $PIT_CH0, %al
        mov     %al, %ah
        in      $PIT_CH0, %al
        xchg    %al, %ah
        ret

/* Replaces the BIOS handler: count, acknowledge the PIC, return. */
irq0:
        push    %ax
        incw    %cs:ticks
        mov     $PIC_EOI, %al
        out     %al, $PIC1_CMD
        pop     %ax
        iret

ticks:   .word  0
old_vec: .word  0, 0
msg_start:   .asciz "timer: counting IRQ0 ticks\r\n"
msg_tick:    .asciz "tick "
crlf:        .asciz "\r\n"
msg_pit_ok:  .asciz "pit: counting down\r\n"
msg_pit_bad: .asciz "pit: not counting\r\n"
msg_done:    .asciz "timer done\r\n"

        .include "common.inc"
        BOOT_SIGNATURE
