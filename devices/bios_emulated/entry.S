/* Real-mode side of the emulated BIOS: reset vector, POST entry, interrupt
 * entry points, and call32, the trampoline that runs a C handler in 32-bit
 * flat protected mode (like SeaBIOS's call32) and comes back.
 *
 * Every service entry pushes the caller's registers on the caller's stack
 * (struct bregs in bios.h) and jumps to call32 with the C function in ECX.
 * call32 saves the caller's SS:ESP and GDTR in the EBDA, loads the ROM GDT,
 * enables CR0.PE, and calls the C function on the EBDA stack (top at EBDA
 * offset 0x800) with a flat pointer to the register frame. On return it
 * drops back to real mode through a 16-bit code segment, restores SS:ESP and
 * GDTR, pops the (edited) registers and irets with the frame's FLAGS.
 * Interrupts stay disabled for the whole C call (there is no protected-mode
 * IDT), so the single EBDA stack is never re-entered; anything that waits
 * (INT 16h AH=00/10h, INT 15h AH=86h) waits here in real mode with sti;hlt,
 * and disk I/O waits for its IRQ through rm_wait (below). */

/* .text16 and .reset are linked at their offsets in segment F000 (rom.ld),
 * so a label is its real-mode offset; 32-bit code needs FLAT(). */
#define BASE 0xF0000
#define OFF(x) (x)
#define FLAT(x) ((x) + BASE)

#define SEL_CODE32 0x08
#define SEL_DATA32 0x10
#define SEL_CODE16 0x18
#define SEL_DATA16 0x20

#define EBDA_SAVED_ESP 0x04
#define EBDA_SAVED_SS 0x08
#define EBDA_SAVED_GDT 0x0A

/* Leave 32-bit protected mode from 16-bit code: reload every segment with a
 * 64 KiB real-mode-like descriptor before clearing PE (so no 4 GiB limit leaks
 * into real mode), then far-jump to \target in segment F000. */
.macro LEAVE_PM target
    movw $SEL_DATA16, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl %cr0, %eax
    andb $0xfe, %al
    movl %eax, %cr0
    ljmp $0xF000, $OFF(\target)
.endm
#define EBDA_STACK_TOP 0x800

#define TICKS_PER_DAY 0x1800B0
#define US_PER_TICK 54925

    .code16
    .section .text16, "ax"

.macro CALL_C func
    pushw %ds
    pushw %es
    pushw %fs
    pushw %gs
    pushal
    movl $\func, %ecx
    jmp call32
.endm

/* ---- call32 -------------------------------------------------------------- */
call32:
    cli
    cld
    xorl %eax, %eax
    movw %ss, %ax
    shll $4, %eax
    movzwl %sp, %edx
    addl %edx, %eax                 /* eax = flat address of struct bregs */
    xorw %dx, %dx
    movw %dx, %ds
    movw 0x40e, %dx                 /* EBDA segment */
    movw %dx, %ds
    movl %esp, EBDA_SAVED_ESP
    movw %ss, EBDA_SAVED_SS
    sgdtl EBDA_SAVED_GDT
    movzwl %dx, %edx
    shll $4, %edx
    addl $EBDA_STACK_TOP, %edx      /* edx = flat C stack top */
    lgdtl %cs:OFF(gdt_desc)
    movl %cr0, %ebx
    orb $1, %bl
    movl %ebx, %cr0
    ljmpl $SEL_CODE32, $FLAT(pm_entry)

    .code32
pm_entry:
    movw $SEL_DATA32, %bx
    movw %bx, %ds
    movw %bx, %es
    movw %bx, %fs
    movw %bx, %gs
    movw %bx, %ss
    movl %edx, %esp
    pushl %eax
    call *%ecx
    ljmpl $SEL_CODE16, $OFF(pm_exit16)

    .code16
pm_exit16:
    LEAVE_PM rm_return
rm_return:
    xorw %ax, %ax
    movw %ax, %ds
    movw 0x40e, %ax
    movw %ax, %ds
    lgdtl EBDA_SAVED_GDT
    movw EBDA_SAVED_SS, %ss
    movl EBDA_SAVED_ESP, %esp
    popal
    popw %gs
    popw %fs
    popw %es
    popw %ds
    iret

    .balign 8
gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF        /* 0x08 code32 flat */
    .quad 0x00CF93000000FFFF        /* 0x10 data32 flat */
    .quad 0x00009B0F0000FFFF        /* 0x18 code16, base 0xF0000, 64 KiB */
    .quad 0x000093000000FFFF        /* 0x20 data16, base 0, 64 KiB */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long FLAT(gdt)

/* ---- POST ------------------------------------------------------------------ */
    .globl post_entry
post_entry:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ss
    movl $0x7000, %esp              /* POST stack; nothing is loaded yet */
    movw %ax, %ds

    /* Warm-restart shutdown codes (CMOS 0x0F) that resume at 0040:0067:
     * 05h = flush keyboard, EOI, jump; 0Ah = jump. Used by 286-era software
     * returning from protected mode through a CPU reset. */
    movb $0x0f, %al
    outb %al, $0x70
    inb $0x71, %al
    cmpb $0x05, %al
    je 1f
    cmpb $0x0a, %al
    jne 2f
1:  movb %al, %bl
    movb $0x0f, %al
    outb %al, $0x70
    xorb %al, %al
    outb %al, $0x71
    cmpb $0x05, %bl
    jne 3f
    inb $0x60, %al
    movb $0x20, %al
    outb %al, $0x20
3:  ljmp *0x467

    /* Base memory size (KiB) from CMOS 0x15/0x16; the EBDA is its last 2 KiB. */
2:  movb $0x15, %al
    outb %al, $0x70
    inb $0x71, %al
    movb %al, %bl
    movb $0x16, %al
    outb %al, $0x70
    inb $0x71, %al
    movb %al, %bh
    cmpw $640, %bx
    ja 4f
    cmpw $64, %bx
    jae 5f
4:  movw $640, %bx
5:  subw $2, %bx
    shlw $6, %bx
    movw %bx, 0x40e
    /* Fake an INT frame so call32's iret lands on post_done. */
    pushw $0
    pushw $0xF000
    pushw $OFF(post_done)
    CALL_C c_post
post_done:
    int $0x19
    jmp boot_fail_halt

/* ---- interrupt entries ---------------------------------------------------- */
    .globl entry_iret, entry_irq_master, entry_irq_slave
entry_iret:
    iret

entry_irq_master:
    pushw %ax
    movb $0x20, %al
    outb %al, $0x20
    popw %ax
    iret

entry_irq_slave:
    pushw %ax
    movb $0x20, %al
    outb %al, $0xa0
    outb %al, $0x20
    popw %ax
    iret

/* IRQ0: PIT tick. BDA 0x46C counts ticks since midnight and wraps at
 * 0x1800B0 setting the midnight flag 0x470; then INT 1Ch, then EOI. */
    .globl entry_irq0
entry_irq0:
    pushw %ds
    pushl %eax
    xorw %ax, %ax
    movw %ax, %ds
    movl 0x46c, %eax
    incl %eax
    cmpl $TICKS_PER_DAY, %eax
    jb 1f
    xorl %eax, %eax
    movb $1, 0x470
1:  movl %eax, 0x46c
    /* Diskette motor timeout (BDA 0x440, set by INT 13h): motors off at 0. */
    cmpb $0, 0x440
    je 2f
    decb 0x440
    jnz 2f
    andb $0xf0, 0x43f
    pushw %dx
    movw $0x3f2, %dx
    movb $0x0c, %al                 /* DOR: not reset, DMA+IRQ, no motor */
    outb %al, %dx
    popw %dx
2:  int $0x1c
    cli
    movb $0x20, %al
    outb %al, $0x20
    popl %eax
    popw %ds
    iret

/* IRQ 6: diskette controller. Bit 7 of BDA 0x43E tells INT 13h (floppy.c,
 * which waits for it in rm_wait) that the command finished. */
    .globl entry_irq6
entry_irq6:
    pushw %ds
    pushw %ax
    xorw %ax, %ax
    movw %ax, %ds
    orb $0x80, 0x43e
    movb $0x20, %al
    outb %al, $0x20
    popw %ax
    popw %ds
    iret

/* IRQ 14/15: ATA channels. BDA 0x48E = FFh (AT "hard disk interrupt flag");
 * ata.c only uses the IRQ to wake up and re-reads the status register. */
    .globl entry_irq14, entry_irq15
entry_irq14:
entry_irq15:
    pushw %ds
    pushw %ax
    xorw %ax, %ax
    movw %ax, %ds
    movb $0xff, 0x48e
    movb $0x20, %al
    outb %al, $0xa0
    outb %al, $0x20
    popw %ax
    popw %ds
    iret

    .globl entry_irq1
entry_irq1:
    CALL_C c_irq1

    .globl entry_int10
entry_int10:
    CALL_C c_int10

    .globl entry_int11
entry_int11:
    pushw %ds
    xorw %ax, %ax
    movw %ax, %ds
    movw 0x410, %ax
    popw %ds
    iret

    .globl entry_int12
entry_int12:
    pushw %ds
    xorw %ax, %ax
    movw %ax, %ds
    movw 0x413, %ax
    popw %ds
    iret

    .globl entry_int13
entry_int13:
    CALL_C c_int13

/* INT 15h: AH=86h waits CX:DX microseconds here in real mode (rounded up to
 * whole 54.9 ms timer ticks, sti;hlt between ticks); the rest goes to C. */
    .globl entry_int15
entry_int15:
    cmpb $0x86, %ah
    je 1f
    CALL_C c_int15
1:  pushw %ds
    pushal
    xorw %bx, %bx
    movw %bx, %ds
    movw %cx, %ax
    shll $16, %eax
    movw %dx, %ax                   /* eax = microseconds */
    xorl %edx, %edx
    addl $(US_PER_TICK - 1), %eax
    adcl $0, %edx
    movl $US_PER_TICK, %ecx
    divl %ecx
    movl %eax, %ecx                 /* ticks to wait */
    movl 0x46c, %ebx                /* start */
2:  cli
    movl 0x46c, %eax
    subl %ebx, %eax                 /* elapsed ticks */
    jae 3f
    addl $TICKS_PER_DAY, %eax       /* the count wrapped at midnight */
3:
    cmpl %ecx, %eax
    jae 4f
    sti
    hlt
    jmp 2b
4:  popal
    popw %ds
    pushw %bp
    movw %sp, %bp
    andw $0xfffe, 6(%bp)            /* CF=0 in the caller's FLAGS */
    popw %bp
    iret

/* INT 16h: AH=00h/10h wait for a key here (sti;hlt - IRQ1 fills the buffer),
 * then C dequeues it. */
    .globl entry_int16
entry_int16:
    cmpb $0x00, %ah
    je 1f
    cmpb $0x10, %ah
    jne 3f
1:  pushw %ds
    pushw %ax
    xorw %ax, %ax
    movw %ax, %ds
2:  cli
    movw 0x41a, %ax
    cmpw 0x41c, %ax
    jne 4f
    sti                             /* sti;hlt: no wakeup is lost in between */
    hlt
    jmp 2b
4:  popw %ax
    popw %ds
3:  CALL_C c_int16

    .globl entry_int18
entry_int18:
    CALL_C c_int18

/* INT 19h: boot. C loads a boot sector to 0000:7C00 and edits the fake INT
 * frame built here to jump to it (CS=0, IP=7C00h, IF=1) with DL = drive and
 * SS:SP = 0000:7C00, or to boot_fail_halt. */
    .globl entry_int19
entry_int19:
    cli
    xorw %ax, %ax
    movw %ax, %ss
    movl $0x7c00, %esp
    pushw $0x0202
    pushw $0
    pushw $0x7c00
    CALL_C c_int19

    .globl boot_fail_halt
boot_fail_halt:
    cli
    hlt
    jmp boot_fail_halt

    .globl entry_int1a
entry_int1a:
    CALL_C c_int1a

/* ---- rm_wait: wait for an interrupt from inside a C handler ---------------
 * void rm_wait(u32 irq), cdecl, called from 32-bit C (call32 context, IF=0).
 * Goes back to real mode on the same (EBDA) stack, unmasks IRQ 0, the
 * cascade and `irq` and masks every other line, does one sti;hlt (woken by
 * the disk IRQ or the next timer tick), restores the masks and returns to
 * protected mode. The other IRQs stay masked meanwhile because their handlers
 * (IRQ 1's goes through call32) would reuse the EBDA stack we are on; a key
 * pressed meanwhile waits in the PIC's IRR and is delivered afterwards. */
rm_wait16:
    LEAVE_PM rm_wait_real
rm_wait_real:  xorw %ax, %ax
    movw %ax, %ds
    movzwl 0x40e, %eax
    movw %ax, %ss
    shll $4, %eax
    movl %edi, %esi
    subl %eax, %esi
    movl %esi, %esp                 /* the same stack as SS:SP */
    inb $0x21, %al
    movb %al, %bl
    inb $0xa1, %al
    movb %al, %bh                   /* bx = the masks to restore */
    movw $0xfffe, %dx               /* all masked but IRQ 0 ... */
    andw $15, %cx
    btrw %cx, %dx                   /* ... and the awaited one */
    cmpb $8, %cl
    jb 2f
    andb $0xfb, %dl                 /* slave IRQ: open the cascade */
2:  movb %dl, %al
    outb %al, $0x21
    movb %dh, %al
    outb %al, $0xa1
    sti                             /* sti;hlt: no wakeup is lost in between */
    hlt
    cli
    movb %bl, %al
    outb %al, $0x21
    movb %bh, %al
    outb %al, $0xa1
    movl %cr0, %eax
    orb $1, %al
    movl %eax, %cr0
    ljmpl $SEL_CODE32, $rm_wait_back

    .section .text, "ax"
    .code32
    .globl rm_wait
rm_wait:
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl 20(%esp), %ecx             /* irq */
    movl %esp, %edi                 /* flat ESP, kept across the wait */
    ljmpl $SEL_CODE16, $OFF(rm_wait16)
rm_wait_back:
    movw $SEL_DATA32, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    movw %ax, %ss
    movl %edi, %esp
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret
    .code16

/* ---- fixed locations at the top of the ROM -------------------------------- */
    .section .reset, "ax"
    .globl reset_vector
reset_vector:                       /* F000:FFF0 */
    ljmp $0xF000, $OFF(post_entry)
    .ascii "01/01/25"               /* F000:FFF5 BIOS date */
    .byte 0
    .byte 0xFC                      /* F000:FFFE model: PC/AT */
    .byte 0

    .section .note.GNU-stack, "", @progbits
