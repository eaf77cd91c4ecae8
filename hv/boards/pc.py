"""The PC: what hv boots boot sectors, BIOSes, its own kernels and Linux on.

| slot | device | where |
| --- | --- | --- |
| pic | 8259A pair | ports 0x20, 0xA0 |
| lapic | local APIC (xAPIC) | 0xFEE00000 |
| ioapic | I/O APIC, 24 pins | 0xFEC00000 |
| imcr | IMCR: where the 8259's INTR goes; the CPU's interrupt input | ports 0x22-0x23 |
| isa | the ISA IRQ wires: each to the 8259 and the I/O APIC (IRQ 0 to pin 2) | |
| pit | 8254 and port B | 0x40, 0x61 (IRQ 0) |
| uart | 16550A, COM1 | 0x3F8 (IRQ 4) |
| cmos | MC146818 RTC and CMOS | 0x70 (IRQ 8) |
| kbd, port92 | 8042 keyboard controller; port 0x92 (A20, reset) | 0x60, 0x64, 0x92 (IRQ 1) |
| vga | VGA (text, mode 13h) | 0x3C0-0x3DF, 0xA0000 |
| debugcon, post | Bochs/QEMU debug console; POST code port | 0xE9, 0x80 |
| pm | ACPI PM block: PM1a, PM timer, S5 power-off | 0x600 (SCI IRQ 9) |
| dma, fdc | 8237 pair; 82077AA floppy controller | 0x00, 0xC0...; 0x3F0 (IRQ 6, DMA 2) |
| nic | NE2000 | 0x300 (IRQ 9), `--nic` |
| virtio_* | virtio-mmio slots (see ``hv.machine.VIRTIO_SLOTS``) | 0xD0000 + n * 4 KiB |
| ide | two ATA channels | 0x1F0 (IRQ 14), 0x170 (IRQ 15) |
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hv.boards import Board, Slot
from hv.devices.acpi_pm import AcpiPm
from hv.devices.apic import LocalApic
from hv.devices.cmos import CmosRtc
from hv.devices.console_uart16550 import Uart16550
from hv.devices.debugcon import DebugConsole, PostCode
from hv.devices.disk_floppy import Fdc82077
from hv.devices.disk_ide import IdeChannel
from hv.devices.dma8237 import Dma8237
from hv.devices.i8042 import I8042, SystemControlPortA
from hv.devices.imcr import Imcr
from hv.devices.ioapic import IoApic
from hv.devices.irq_router import IsaIrqRouter
from hv.devices.nic_ne2000 import Ne2000
from hv.devices.pic8259 import DualPic8259
from hv.devices.pit8254 import Pit8254
from hv.devices.vga import Vga
from hv.firmware_tables import PC_BOARD
from hv.memory import VIDEO_BASE, VIDEO_END

if TYPE_CHECKING:
    from hv.machine import Machine

VIRTUAL_RTC_EPOCH = 1767225600.0   # the virtual clock's RTC starts at 2026-01-01 00:00 UTC


def _cmos(m: "Machine") -> CmosRtc:
    fda, fdb = m.slots["fda"], m.slots["fdb"]
    types = tuple(d.cmos_type if d else 0 for d in (fda, fdb))
    epoch = (lambda: VIRTUAL_RTC_EPOCH) if m.config.clock == "virtual" else time.time
    return CmosRtc(m.clock, irq=m.isa.line(8), mem_size=m.config.mem_size, host_time=epoch,
                   floppy_types=types, hd_count=len(m.disks.hard_disks()))


def _vga(m: "Machine") -> Vga:
    mem = m.mem
    return Vga(mem.view[VIDEO_BASE:VIDEO_END], m.clock,
               invalidate=lambda lo, hi: mem.invalidate(lo, hi))


def _nic(m: "Machine") -> Ne2000:
    cfg = m.config
    m.network = m.make_network(cfg.net, cfg.pcap if cfg.net != "none" else None)
    m.netport = m.network("nic0")
    if m.netport is not None:
        m.netport.on_frame = m.on_frame
    return Ne2000(irq=m.isa.line(cfg.nic_irq).source(), port=m.netport, mac=cfg.nic_mac,
                  base=cfg.nic_base, isa_irq=cfg.nic_irq)


def _acpi_pm(m: "Machine") -> AcpiPm:
    # The SCI shares ISA IRQ 9 with the NE2000's default, as on QEMU's PC: a wired-OR.
    return AcpiPm.for_board(m.clock, PC_BOARD.pm, sci=m.isa.line(9).source(),
                            poweroff=m.acpi_poweroff)


BOARD = Board(
    name="pc",
    description="a PC: 8259s and APICs, PIT, UART, RTC, 8042, VGA, IDE, floppy, NE2000, virtio",
    bios=True,
    slots=(
        Slot("pic", lambda m: DualPic8259()),
        Slot("lapic", lambda m: LocalApic(m.clock, pic_acknowledge=m.pic.acknowledge)),
        Slot("ioapic", lambda m: IoApic(deliver=m.lapic.deliver_message,
                                        apic_id=PC_BOARD.ioapic.apic_id)),
        Slot("imcr", lambda m: Imcr(m.pic, m.lapic)),
        Slot("isa", lambda m: IsaIrqRouter(m.pic, m.ioapic)),
        Slot("pit", lambda m: Pit8254(m.clock, irq0=m.isa.line(0))),
        Slot("uart", lambda m: Uart16550(irq=m.isa.line(4), sink=m.serial_out, clock=m.clock)),
        Slot("cmos", _cmos),
        Slot("kbd", lambda m: I8042(irq1=m.isa.line(1), irq12=m.isa.line(12), on_a20=m.set_a20,
                                    on_reset=m.request_reset)),
        Slot("port92", lambda m: SystemControlPortA(on_a20=m.set_a20, on_reset=m.request_reset)),
        Slot("vga", _vga),
        Slot("debugcon", lambda m: DebugConsole(m.config.debugcon)),
        Slot("post", lambda m: PostCode()),
        Slot("pm", _acpi_pm),
        Slot("dma", lambda m: Dma8237(m.mem)),
        Slot("fdc", lambda m: Fdc82077(irq=m.isa.line(6), dma=m.dma,
                                       drives=(m.slots["fda"], m.slots["fdb"]))),
        Slot("nic", _nic),
        Slot("virtio", lambda m: m.build_virtio(m.isa.line)),
        Slot("ide0", lambda m: IdeChannel(m.isa.line(14), (m.slots["hda"], m.slots["hdb"]),
                                          name="ide0")),
        Slot("ide1", lambda m: IdeChannel(m.isa.line(15), (m.slots["hdc"], m.slots["hdd"]),
                                          name="ide1", base=0x170, ctrl=0x376)),
    ),
)
