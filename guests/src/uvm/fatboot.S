/* fatboot: the boot sector of an hv VM-flavor disk (docs/vm-flavors.md).
 *
 * The disk is one FAT16 volume; the host (or mformat -B) keeps bytes [3, 0x3E) for its BPB and
 * copies the rest of this sector around it. The loader and kernel (uvmfull.sys) live in the
 * volume's reserved area from LBA 1: this code reads BPB_RsvdSecCnt - 1 sectors from there to
 * 1000:0000 with INT 13h AH=42h (64 sectors a call) and jumps there with DL = the boot drive.
 * Both BIOSes serve AH=42h for drive 80h: the emulated one from the IDE disk, the synthetic
 * one from the virtio disk when there is no IDE disk. */
        .code16
        .globl _start
_start:
        jmp     boot
        nop
        .fill   0x3E - 3, 1, 0          /* the BPB: written by whoever formats the disk */

        .equ LOAD_SEG, 0x1000
        .equ MAX_SECTORS, 1144          /* 0x10000 .. 0x9F000: below the EBDA */

boot:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7C00, %sp
        ljmp    $0, $1f                 /* some BIOSes enter at 07C0:0000 */
1:      sti
        cld
        mov     %dl, drive
        mov     0x7C0E, %cx             /* BPB_RsvdSecCnt */
        dec     %cx
        jz      fail                    /* nothing to load */
        cmp     $MAX_SECTORS, %cx
        ja      fail
        movw    $LOAD_SEG, dap_seg
        movl    $1, dap_lba
2:      mov     %cx, %bx
        cmp     $64, %bx
        jbe     3f
        mov     $64, %bx
3:      mov     %bx, dap_count
        push    %cx
        push    %bx
        mov     $dap, %si
        mov     drive, %dl
        mov     $0x42, %ah
        int     $0x13
        pop     %bx
        pop     %cx
        jc      fail
        movzwl  %bx, %eax
        addl    %eax, dap_lba
        shl     $5, %bx                 /* 512-byte sectors in 16-byte paragraphs */
        add     %bx, dap_seg
        shr     $5, %bx
        sub     %bx, %cx
        jnz     2b
        mov     drive, %dl
        ljmp    $LOAD_SEG, $0

fail:   mov     $msg, %si
4:      lodsb
        test    %al, %al
        jz      5f
        mov     %al, %bl
        mov     $0x3FD, %dx             /* COM1: wait for THRE, then send */
6:      in      %dx, %al
        test    $0x20, %al
        jz      6b
        mov     $0x3F8, %dx
        mov     %bl, %al
        out     %al, %dx
        mov     $0x0E, %ah              /* and the screen */
        mov     %bl, %al
        xor     %bh, %bh
        int     $0x10
        jmp     4b
5:      cli
        hlt
        jmp     5b

msg:    .asciz  "fatboot: cannot load the kernel\r\n"
drive:  .byte   0
        .balign 4
dap:    .byte   16, 0
dap_count: .word 0
        .word   0                       /* offset */
dap_seg: .word  0
dap_lba: .long  0, 0

        .org    510
        .byte   0x55, 0xAA
