/* hello: one line on screen and COM1, then halt. */
        .code16
        .include "macros.inc"
        .text
        .globl  _start
_start:
        GUEST_ENTRY
        call    serial_init
        mov     $msg, %si
        call    puts
        HALT

msg:    .asciz  "Hello from hv!\r\n"

        .include "common.inc"
        BOOT_SIGNATURE
