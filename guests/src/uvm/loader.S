/* The loader at the head of uvmfull.sys, one sector: fatboot puts it at 1000:0000 with the
 * kernel (uvmkernel built with -DUVM_FULL, flat, linked at 1 MiB) right after it.
 * Real mode: the RAM size from INT 15h E801 (AH=88h if that fails), checked against what the
 * kernel needs (a message on COM1 and ACPI power-off if it is short), the 8259s masked (the
 * kernel takes its interrupts from the local APIC), A20 on. Then 32-bit protected mode: the
 * kernel's bytes are copied to 1 MiB and it is entered with EBX = an hv_bootinfo (hvboot.h)
 * that has the RAM size, EDX = the BIOS boot drive, and EAX = HV_BOOT_MAGIC + 1: "RAM above
 * the image is as it was at power-on, zero", so entry.S need not clear .bss (pages never
 * written cost the host no memory). build.py fills in the two numbers below. */
        .code16
        .equ BASE, 0x10000              /* linear address of this sector */
        .equ KERNEL, 0x100000
        .globl _start
_start:
        jmp     1f
        .balign 4
kernel_len: .long 0                     /* offset 4: the flat kernel's bytes */
ram_needed: .long 0                     /* offset 8: the end of its .bss, and room to run */
1:      cli
        mov     %cs, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %dl, drive
        xor     %cx, %cx
        xor     %dx, %dx
        mov     $0xE801, %ax
        int     $0x15
        jc      1f
        jcxz    2f                      /* CX/DX zero: the answer is in AX/BX */
        mov     %cx, %ax
        mov     %dx, %bx
2:      movzwl  %ax, %eax               /* KiB between 1 and 16 MiB */
        shl     $10, %eax
        movzwl  %bx, %ebx               /* 64 KiB blocks above 16 MiB */
        shl     $16, %ebx
        add     %ebx, %eax
        jmp     3f
1:      mov     $0x88, %ah              /* KiB above 1 MiB (at most 64 MiB) */
        int     $0x15
        movzwl  %ax, %eax
        shl     $10, %eax
3:      add     $0x100000, %eax
        mov     %eax, bi_mem
        cmp     ram_needed, %eax
        jae     4f
        mov     $short_msg, %si         /* too little RAM: say so, power off */
5:      lodsb
        test    %al, %al
        jz      6f
        mov     $0x3F8, %dx
        out     %al, %dx
        jmp     5b
6:      mov     $0x604, %dx
        mov     $0x3400, %ax            /* ACPI PM1a_CNT: SLP_TYP 5 (S5), SLP_EN */
        out     %ax, %dx
7:      cli
        hlt
        jmp     7b
4:      cli
        mov     $0xFF, %al              /* no 8259 interrupts: vectors 8-15 are exceptions */
        out     %al, $0x21
        out     %al, $0xA1
        in      $0x92, %al              /* fast A20 */
        or      $2, %al
        and     $0xFE, %al
        out     %al, $0x92
        xor     %ax, %ax
        mov     %ax, %fs
        movzwl  %fs:0x7C0E, %eax        /* BPB_RsvdSecCnt: what fatboot loaded */
        dec     %eax
        shl     $9, %eax
        sub     $512, %eax              /* minus this sector */
        cmp     kernel_len, %eax
        jb      8f                      /* the reserved area is shorter than the kernel */
        mov     kernel_len, %eax
8:      mov     %eax, copy_len
        lgdtl   gdt_desc
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        .byte   0x66, 0xEA              /* ljmpl $0x08, $BASE + pm32 */
        .long   BASE + pm32
        .word   0x08

        .code32
pm32:   mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $0x9F000, %esp
        cld
        mov     $BASE + 512, %esi
        mov     $KERNEL, %edi
        mov     BASE + copy_len, %ecx
        rep movsb
        mov     $0x68760002, %eax       /* HV_BOOT_MAGIC + 1: .bss is zero */
        movzbl  BASE + drive, %edx
        mov     $BASE + bootinfo, %ebx
        mov     $KERNEL, %ecx
        jmp     *%ecx

        .balign 8
gdt:    .quad   0
        .quad   0x00CF9A000000FFFF      /* 0x08: code, flat */
        .quad   0x00CF92000000FFFF      /* 0x10: data, flat */
gdt_desc:
        .word   gdt_desc - gdt - 1
        .long   BASE + gdt
copy_len: .long 0
drive:  .byte   0
short_msg: .asciz "uvmfull: not enough RAM for the kernel\r\n"

        .balign 4
bootinfo:                               /* struct hv_bootinfo */
        .long   0x49427668              /* magic "hvBI" */
        .word   1, 76                   /* version, header size */
        .long   76, 0                   /* size, hypercall ABI: none */
bi_mem: .long   0                       /* mem_size */
        .fill   12, 4, 0                /* cmdline, e820, devices: none; kernel_start.. */

        .org    512
