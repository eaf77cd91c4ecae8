/* uvmkernel's entry and trap stubs: a stack, zeroed .bss (unless uvmfull's loader says, with
 * EAX = 0x68760002, that it is still power-on zero), kmain(bootinfo); every vector
 * lands in trap(frame) with the registers in a struct frame (uvm.h), and leaves by iret. */
        .code32
        .section .text.entry, "ax"
        .globl _start
_start:
        mov $kstack_top, %esp
        mov %ebx, %esi
        cmp $0x68760002, %eax           /* uvmfull's loader: .bss is untouched RAM, zero */
        je 2f
        mov $__bss_start, %edi
        mov $__bss_end, %ecx
        sub %edi, %ecx
        xor %eax, %eax
        cld
        mov %ecx, %edx                  /* dwords, then the odd bytes: 4x fewer iterations */
        shr $2, %ecx
        rep stosl
        mov %edx, %ecx
        and $3, %ecx
        rep stosb
2:      push %esi
        call kmain
1:      cli
        hlt
        jmp 1b

        .text
/* Vectors without an error code push a 0, so every frame has the same shape. */
.macro ISR n
        .globl isr\n
isr\n:
        .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17)
        .else
        push $0
        .endif
        push $\n
        jmp isr_common
.endm
        ISR 0; ISR 1; ISR 2; ISR 3; ISR 4; ISR 5; ISR 6; ISR 7
        ISR 8; ISR 9; ISR 10; ISR 11; ISR 12; ISR 13; ISR 14; ISR 15
        ISR 16; ISR 17; ISR 18; ISR 19
        ISR 32; ISR 128; ISR 255

isr_common:
        pusha
        push %ds
        push %es
        push %fs
        push %gs
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        push %esp
        call trap
        add $4, %esp
        .globl trap_return
trap_return:
        pop %gs
        pop %fs
        pop %es
        pop %ds
        popa
        add $8, %esp
        iret

/* enter_user(frame): start ring 3 from a frame built by the kernel. */
        .globl enter_user
enter_user:
        mov 4(%esp), %esp
        jmp trap_return

        .bss
        .balign 16
        .globl kstack_top
kstack: .skip 32768
kstack_top:
