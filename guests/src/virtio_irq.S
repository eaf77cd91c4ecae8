/* Interrupt stubs for the virtio guests (see virtio.h): IRQ 5 (master PIC, vector 0x0D)
 * and IRQ 10-12 (slave PIC, vectors 0x72-0x74 as the BIOS set it up).
 *
 * Each saves every register the C code may touch (FS too: the driver's register
 * accesses load it, and the interrupt may land between the load and the access),
 * and calls virtio_irq(n), which acknowledges the device and sends the EOIs. The C
 * code runs with DS=ES=SS=0 and ESP's upper half clear, as everywhere in these guests. */
        .code16
        .text
.macro  VIRTIO_IRQ n
        .globl  virtio_isr\n
virtio_isr\n:
        pushal
        push    %ds
        push    %es
        push    %fs
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        cld
        pushl   $\n
        calll   virtio_irq
        addl    $4, %esp
        pop     %fs
        pop     %es
        pop     %ds
        popal
        iret
.endm
        VIRTIO_IRQ 5
        VIRTIO_IRQ 10
        VIRTIO_IRQ 11
        VIRTIO_IRQ 12
