/* pmtest stage 0: the shared boot sector (boot_sector.inc) loads the image from the boot
 * disk with INT 13h and calls pm_enter in real mode. pm_enter masks both 8259s (nothing but
 * the checks' own interrupt sources may fire), loads the GDT, sets CR0.PE, and jumps to
 * 32-bit code that sets up the kernel stack, clears .bss and calls kmain. The BIOS is not
 * used again. */
        .code16
        .include "boot_sector.inc"
        .include "pmtest/pmtest.inc"
        BOOT_SECTOR pm_enter

        .text
pm_enter:
        cli
        mov     $0xff, %al
        out     %al, $0xa1
        out     %al, $0x21
        lgdtl   gdt_desc
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $KCODE, $pm32

        .code32
pm32:
        mov     $KDATA, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $kernel_stack_top, %esp
        mov     $__bss_start, %edi
        mov     $__bss_end, %ecx
        sub     %edi, %ecx
        xor     %eax, %eax
        cld
        rep stosb
        call    kmain
1:      cli                             /* kmain ends in a triple fault; never here */
        hlt
        jmp     1b

/* The GDT. sysenter/sysexit derive SS, user CS and user SS from SYSENTER_CS (0x08) as
 * +8, +16, +24, so the first four descriptors must be in this order. The TSS descriptor
 * (0x28) is filled in by kmain, which knows the TSS's address. */
        .data
        .balign 8
        .globl  gdt
gdt:
        .quad   0                       /* null */
        .quad   0x00cf9a000000ffff      /* 0x08 kernel code: flat, 32-bit, DPL 0 */
        .quad   0x00cf92000000ffff      /* 0x10 kernel data */
        .quad   0x00cffa000000ffff      /* 0x18 user code: DPL 3 */
        .quad   0x00cff2000000ffff      /* 0x20 user data */
        .quad   0                       /* 0x28 TSS */
        .quad   0x00009a000000ffff      /* 0x30 16-bit code, base 0, limit 64 KiB: the 16-bit gate */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt
