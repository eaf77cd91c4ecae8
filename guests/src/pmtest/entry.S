/* pmtest's kernel entry points: the interrupt stubs and their common path into C, the
 * catch/throw pair that lets a handler end a check, the jump to ring 3, the sysenter entry
 * and the 16-bit gate's handler. */
        .include "pmtest/pmtest.inc"
        .code32

/* One stub per vector the IDT uses. Each pushes a zero where the CPU pushes no error
 * code, then the vector, so every frame has the same shape (struct trapframe), and adds
 * {vector, stub} to isr_table, which kmain turns into IDT gates. */
.macro  STUB vec, has_error_code=0
        .section .rodata
        .long   \vec, 1f
        .text
1:
        .if     \has_error_code == 0
        pushl   $0
        .endif
        pushl   $\vec
        jmp     trap_common
.endm

        .section .rodata
        .balign 4
        .globl  isr_table
isr_table:
        .text
        STUB    0                       /* #DE */
        STUB    1
        STUB    2
        STUB    3                       /* #BP */
        STUB    4
        STUB    5
        STUB    6                       /* #UD */
        STUB    7
        STUB    8, 1                    /* #DF */
        STUB    9
        STUB    10, 1                   /* #TS */
        STUB    11, 1                   /* #NP */
        STUB    12, 1                   /* #SS */
        STUB    13, 1                   /* #GP */
        STUB    14, 1                   /* #PF */
        STUB    16
        STUB    17, 1                   /* #AC */
        STUB    18
        STUB    19
        STUB    0x20                    /* LAPIC timer, periodic */
        STUB    0x21                    /* LAPIC timer, one-shot */
        STUB    0x31                    /* I/O APIC: ISA IRQ 1 */
        STUB    0x3e                    /* I/O APIC: ISA IRQ 14 */
        STUB    0x41                    /* interrupt gate */
        STUB    0x42                    /* trap gate */
        STUB    0x80                    /* system call, DPL 3 */
        STUB    VEC_KONLY               /* DPL 0: int from ring 3 is a #GP */
        STUB    0xff                    /* LAPIC spurious */
        .section .rodata
        .long   -1, 0                   /* end */
        .text

/* Save everything, switch to kernel data segments, clear DF (C assumes it clear; ring 3
 * may have set it), call trap(frame), restore and return. A handler may rewrite the frame
 * (resume elsewhere, return a value in EAX) or never return (kthrow). */
trap_common:
        pushal
        push    %ds
        push    %es
        push    %fs
        push    %gs
        mov     $KDATA, %ax
        mov     %ax, %ds
        mov     %ax, %es
        cld
        push    %esp
        call    trap
        add     $4, %esp
        pop     %gs
        pop     %fs
        pop     %es
        pop     %ds
        popal
        add     $8, %esp                /* vector, error code */
        iret

/* u32 kcatch(u32 (*fn)(void *), void *arg): call fn(arg) and return what it returns, or
 * the value a later kthrow(value) passes, from wherever it is called (a handler on the
 * trap stack, ring 3 having been left for good). One level: checks do not nest. */
        .globl  kcatch, kthrow
kcatch:
        push    %ebp
        push    %ebx
        push    %esi
        push    %edi
        mov     %esp, catch_esp
        pushl   24(%esp)                /* arg: above 4 saved registers, the return address, fn */
        call    *24(%esp)               /* fn, at the same offset after the push */
        add     $4, %esp
catch_return:
        pop     %edi
        pop     %esi
        pop     %ebx
        pop     %ebp
        ret

kthrow:
        cli
        mov     4(%esp), %eax
        mov     catch_esp, %esp
        jmp     catch_return

/* u32 enter_user(struct uregs *r), called through kcatch: iret to ring 3 at r->eip with
 * r->esp, r->eflags and r's general registers; user data segments everywhere. Returns only
 * through kthrow (SYS_EXIT or a handler that ends the run). */
        .globl  enter_user
enter_user:
        mov     4(%esp), %eax
        pushl   $UDATA
        pushl   32(%eax)                /* esp */
        pushl   36(%eax)                /* eflags */
        pushl   $UCODE
        pushl   28(%eax)                /* eip */
        mov     $UDATA, %bx
        mov     %bx, %ds
        mov     %bx, %es
        mov     %bx, %fs
        mov     %bx, %gs
        mov     4(%eax), %ebx
        mov     8(%eax), %ecx
        mov     12(%eax), %edx
        mov     16(%eax), %esi
        mov     20(%eax), %edi
        mov     24(%eax), %ebp
        mov     (%eax), %eax
        iret

/* sysenter lands here with CS=KCODE, SS=KDATA, ESP=IA32_SYSENTER_ESP and IF clear; DS and
 * ES are still the user's flat segments, which ring 0 may use. It records what it was
 * entered with, returns EAX*3 + EBX in EAX, and goes back with sysexit to EDX/ECX. sysexit
 * leaves IF alone, so sti goes first; its one-instruction shadow covers the sysexit, as
 * in Linux. */
        .globl  sysenter_entry, sysenter_seen
sysenter_entry:
        push    %eax
        xor     %eax, %eax
        mov     %cs, %ax
        mov     %eax, sysenter_seen
        mov     %ss, %ax
        mov     %eax, sysenter_seen + 4
        lea     4(%esp), %eax
        mov     %eax, sysenter_seen + 8
        pushfl
        popl    sysenter_seen + 12
        pop     %eax
        lea     (%eax,%eax,2), %eax
        add     %ebx, %eax
        sti
        sysexit

/* The 16-bit interrupt gate's handler, in the 16-bit code segment: the CPU pushed IP, CS
 * and FLAGS as words, on the kernel stack (SS is the 32-bit kernel data segment, so the
 * stack pointer is ESP). It records ESP and the three words, and returns with a 16-bit
 * iret. Code and data here must stay below 64 KiB (16-bit offsets). */
        .code16
        .globl  gate16_handler, gate16_esp_seen, gate16_frame
gate16_handler:
        movl    %esp, %ss:gate16_esp_seen
        pushl   %eax
        movl    %ss:4(%esp), %eax       /* IP, CS */
        movl    %eax, %ss:gate16_frame
        movw    %ss:8(%esp), %ax        /* FLAGS */
        movw    %ax, %ss:gate16_frame + 4
        popl    %eax
        iret
        .code32

        .data
        .balign 4
catch_esp:          .long 0
sysenter_seen:      .long 0, 0, 0, 0    /* CS, SS, ESP, EFLAGS */
gate16_esp_seen:    .long 0
gate16_frame:       .word 0, 0, 0       /* IP, CS, FLAGS as the 16-bit gate pushed them */

/* Stacks: the kernel's (kmain runs on it), the trap stack (TSS.ESP0: where entries from
 * ring 3 land) and sysenter's (IA32_SYSENTER_ESP). */
        .bss
        .balign 4096
        .globl  kernel_stack_top, trap_stack_top, sysenter_stack_top
        .skip   8192
kernel_stack_top:
        .skip   8192
trap_stack_top:
        .skip   1024
sysenter_stack_top:
