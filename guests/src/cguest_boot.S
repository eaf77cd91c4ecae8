/* Stage 0 of the C guests that drive hardware directly (disktest, nettest, the virtio ones).
 *
 * The boot sector (boot_sector.inc) loads the rest of the image with INT 13h, clears .bss
 * and calls guest_main(boot_drive). After that the guests touch no BIOS service except the
 * timer tick it keeps at 0040:006C; the hardware under test is driven by port I/O.
 *
 * Also holds the interrupt stubs for the slave PIC's IRQ 9 and IRQ 14 (see below). */
        .code16
        .include "boot_sector.inc"
        BOOT_SECTOR guest_main

/* Interrupt stubs for IRQs on the slave PIC (vectors 0x70-0x77 as the BIOS set it up).
 * Each one counts the interrupt in irq_counts[n] (u16), masks its own line at the slave
 * PIC and sends EOI to both PICs. Masking first makes the stub safe whether the line is
 * edge- or level-triggered (the device keeps its line up until the guest acknowledges
 * it at the device); the C code unmasks the line again once it has done so. */
        .text
.macro  SLAVE_IRQ n
        .globl  isr_irq\n
isr_irq\n:
        push    %ax
        in      $0xa1, %al
        or      $(1 << (\n - 8)), %al
        out     %al, $0xa1
        mov     $0x20, %al
        out     %al, $0xa0              /* EOI slave, then master (cascade on IR2) */
        out     %al, $0x20
        incw    %cs:irq_counts + 2 * \n
        pop     %ax
        iret
.endm
        SLAVE_IRQ 9
        SLAVE_IRQ 14

        .data
        .globl  irq_counts
        .balign 2
irq_counts:
        .fill   16, 2, 0
