/* Kernel entry: record the CPU state the host set up, zero .bss (a flat binary
 * carries none), then call kmain(bootinfo). */
        .code32
        .section .text.entry, "ax"
        .globl _start
_start:
        mov %eax, entry_eax
        mov %ebx, entry_ebx
        mov %esp, entry_esp
        pushf
        popl entry_eflags
        mov %cr0, %eax
        mov %eax, entry_cr0
        mov %cs, %ax
        mov %ax, entry_cs
        mov %ds, %ax
        mov %ax, entry_ds
        mov %ss, %ax
        mov %ax, entry_ss
        mov $__bss_start, %edi
        mov $__bss_end, %ecx
        sub %edi, %ecx
        xor %eax, %eax
        cld
        rep stosb
        push entry_ebx
        call kmain
1:      cli
        hlt
        jmp 1b

        .data
        .balign 4
        .globl entry_eax, entry_ebx, entry_esp, entry_eflags, entry_cr0, entry_cs, entry_ds, entry_ss
entry_eax:    .long 0
entry_ebx:    .long 0
entry_esp:    .long 0
entry_eflags: .long 0
entry_cr0:    .long 0
entry_cs:     .word 0
entry_ds:     .word 0
entry_ss:     .word 0
