/* keyecho: echo INT 16h keys to screen and COM1; name special keys; Esc quits. */
        .code16
        .include "macros.inc"

        ASCII_ESC = 0x1b
        ASCII_CR  = 0x0d

        .text
        .globl  _start
_start:
        GUEST_ENTRY
        call    serial_init
        mov     $msg_prompt, %si
        call    puts
next:
        xor     %ah, %ah                /* AH=00h: wait for a key, AL=ASCII AH=scancode */
        int     $0x16
        cmp     $ASCII_ESC, %al
        je      quit
        cmp     $ASCII_CR, %al
        je      enter
        test    %al, %al
        jz      special
        cmp     $0xe0, %al              /* extended keys on the grey keypad */
        je      special
        call    putc
        jmp     next
enter:
        mov     $crlf, %si
        call    puts
        jmp     next
special:
        mov     $'<', %al
        call    putc
        mov     $names, %si
1:      lodsb                           /* table: scancode, NUL-terminated name; 0 ends */
        test    %al, %al
        jz      unknown
        cmp     %ah, %al
        je      found
2:      lodsb
        test    %al, %al
        jnz     2b
        jmp     1b
found:
        call    puts
        jmp     3f
unknown:
        mov     %ah, %al
        call    puthex8
3:      mov     $'>', %al
        call    putc
        jmp     next
quit:
        mov     $msg_bye, %si
        call    puts
        HALT

msg_prompt: .asciz "keyecho: type keys, Esc quits\r\n"
msg_bye:    .asciz "\r\nbye\r\n"
crlf:       .asciz "\r\n"
names:
        .byte 0x48; .asciz "up"
        .byte 0x50; .asciz "down"
        .byte 0x4b; .asciz "left"
        .byte 0x4d; .asciz "right"
        .byte 0x47; .asciz "home"
        .byte 0x4f; .asciz "end"
        .byte 0x49; .asciz "pgup"
        .byte 0x51; .asciz "pgdn"
        .byte 0x52; .asciz "ins"
        .byte 0x53; .asciz "del"
        .byte 0x3b; .asciz "f1"
        .byte 0x3c; .asciz "f2"
        .byte 0x3d; .asciz "f3"
        .byte 0x3e; .asciz "f4"
        .byte 0x3f; .asciz "f5"
        .byte 0x40; .asciz "f6"
        .byte 0x41; .asciz "f7"
        .byte 0x42; .asciz "f8"
        .byte 0x43; .asciz "f9"
        .byte 0x44; .asciz "f10"
        .byte 0x85; .asciz "f11"
        .byte 0x86; .asciz "f12"
        .byte 0

        .include "common.inc"
        BOOT_SIGNATURE
