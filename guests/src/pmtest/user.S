/* pmtest's ring-3 code. Linked to run at USER_CODE (0x40000), stored in the image after
 * the kernel, and copied there by kmain onto user pages. It only touches user pages. Each
 * routine ends with int $0x80 SYS_EXIT, whose EBX is what the kernel's run_user() returns,
 * unless the check expects a handler to end the run (a fault, a timer tick). */
        .include "pmtest/pmtest.inc"
        .section .user.text, "ax"
        .code32

.macro  EXIT                            /* EBX is the result */
        mov     $SYS_EXIT, %eax
        int     $0x80
.endm

/* Three int $0x80 round trips (the kernel checks its side of each frame); after each one,
 * CS, SS and ESP must be what they were. EBX collects a bit per kind of difference. */
        .globl  user_probe_loop
user_probe_loop:
        mov     $3, %edi
        xor     %ebx, %ebx
        xor     %ecx, %ecx
1:      mov     %esp, %ebp
        mov     $SYS_PROBE, %eax
        int     $0x80
        mov     %cs, %cx
        cmp     $UCODE, %cx
        je      2f
        or      $1, %ebx
2:      mov     %ss, %cx
        cmp     $UDATA, %cx
        je      3f
        or      $2, %ebx
3:      cmp     %esp, %ebp
        je      4f
        or      $4, %ebx
4:      dec     %edi
        jnz     1b
        EXIT

/* A system call with arguments in EBX..EDI (from the kernel's uregs) and every arithmetic
 * flag and DF set: the result and the flags after it go to the user data page. */
        .globl  user_syscall_mix
user_syscall_mix:
        pushl   $0xed7                  /* CF PF AF ZF SF DF OF, IF, bit 1 */
        popfl
        int     $0x80
        pushfl
        popl    USER_DATA + 4
        cld
        mov     %eax, USER_DATA + 8
        xor     %ebx, %ebx
        EXIT

/* Faulting instructions; each is labelled so the kernel can check the saved EIP. Falling
 * through means no fault: EXIT with 1. */
        .globl  user_int_dpl0, user_int_dpl0_at
user_int_dpl0:
user_int_dpl0_at:
        int     $VEC_KONLY
        mov     $1, %ebx
        EXIT

        .globl  user_load_kernel_ds, user_load_kernel_ds_at
user_load_kernel_ds:
        mov     $KDATA, %eax
user_load_kernel_ds_at:
        mov     %eax, %ds
        mov     $1, %ebx
        EXIT

        .globl  user_hlt, user_hlt_at
user_hlt:
user_hlt_at:
        hlt
        mov     $1, %ebx
        EXIT

        .globl  user_in_port, user_in_port_at
user_in_port:
user_in_port_at:
        in      $0x80, %al              /* IOPL 0 and no I/O bitmap: #GP(0) */
        mov     $1, %ebx
        EXIT

/* One access at ESI (the #PF checks): a read returns the value, a write stores EDI. */
        .globl  user_read, user_write
user_read:
        mov     (%esi), %ebx
        EXIT
user_write:
        mov     %edi, (%esi)
        xor     %ebx, %ebx
        EXIT

/* A busy loop only an interrupt can end early (the periodic timer's handler takes the CPU
 * back for good); 1 if it ran to its end. */
        .globl  user_spin
user_spin:
        mov     $SPIN_LIMIT, %ecx
1:      dec     %ecx
        jnz     1b
        mov     $1, %ebx
        EXIT

/* Wait for the kernel to set the flag at USER_DATA (the one-shot timer's handler does):
 * 2 when it was seen, 1 if the wait ran to its end. */
        .globl  user_wait_flag
user_wait_flag:
        mov     $SPIN_LIMIT, %ecx
1:      cmpl    $0, USER_DATA
        jne     2f
        dec     %ecx
        jnz     1b
        mov     $1, %ebx
        EXIT
2:      mov     $2, %ebx
        EXIT

/* sysenter with EAX and EBX from the kernel's uregs; sysexit returns here (EDX) with the
 * stack pointer given in ECX. The result goes to USER_DATA+8; EBX gets a bit for each of
 * CS, SS, ESP and IF that is not as before. */
        .globl  user_sysenter
user_sysenter:
        mov     %esp, %ebp
        mov     %esp, %ecx
        mov     $1f, %edx
        sysenter
1:      mov     %eax, USER_DATA + 8
        xor     %ebx, %ebx
        xor     %ecx, %ecx
        mov     %cs, %cx
        cmp     $UCODE, %cx
        je      2f
        or      $1, %ebx
2:      mov     %ss, %cx
        cmp     $UDATA, %cx
        je      3f
        or      $2, %ebx
3:      cmp     %esp, %ebp
        je      4f
        or      $4, %ebx
4:      pushfl
        popl    %ecx
        test    $0x200, %ecx
        jnz     5f
        or      $8, %ebx
5:      EXIT
