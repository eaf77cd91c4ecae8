"""The microVM: what a lightweight VM keeps, as Firecracker's and QEMU's microvm do.

One vCPU and RAM; a 16550A for the console; the local APIC (timer, interrupts) and an I/O
APIC that routes the devices' interrupt lines; virtio-mmio slots. No 8259, PIT, RTC, 8042,
VGA, IDE, floppy or BIOS: the kernel is booted directly (``--kernel``) and finds every
device in the boot-information block's device list (docs/direct-boot.md), so nothing is
probed at legacy addresses.

| slot | device | where |
| --- | --- | --- |
| lapic | local APIC (xAPIC): the CPU's interrupt input | 0xFEE00000 |
| ioapic | I/O APIC, 24 pins | 0xFEC00000 |
| gsi | the interrupt wires: line n is I/O APIC pin n | |
| uart | 16550A | 0x3F8 (pin 4) |
| virtio | virtio-mmio slots (``hv.machine.VIRTIO_SLOTS``) | 0xD0000 + n * 4 KiB |
"""
from __future__ import annotations

from hv.boards import Board, Slot
from hv.devices.apic import LocalApic
from hv.devices.console_uart16550 import Uart16550
from hv.devices.ioapic import IoApic
from hv.devices.irq_router import IsaIrqRouter

BOARD = Board(
    name="microvm",
    description="a microVM: one vCPU, a UART, the APICs and virtio-mmio slots; direct boot only",
    bios=False,
    slots=(
        Slot("lapic", lambda m: LocalApic(m.clock)),
        Slot("ioapic", lambda m: IoApic(deliver=m.lapic.deliver_message)),
        Slot("isa", lambda m: IsaIrqRouter(None, m.ioapic)),     # no 8259: wires to pins
        Slot("uart", lambda m: Uart16550(irq=m.isa.line(4), sink=m.serial_out, clock=m.clock)),
        Slot("virtio", lambda m: m.build_virtio(m.isa.line)),
    ),
)
