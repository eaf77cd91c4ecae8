"""The synthetic BIOS: a ROM of hypercall stubs, with the services on the host.

Where the emulated BIOS drives the 8259, the VGA CRTC or the disk port from
guest code, this one does the same work in Python: one exit per BIOS call
instead of dozens of port accesses. Both pass the same conformance guest
(``bioscheck``). Services are tables keyed by interrupt vector, then by AH.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from hv.hypercall import HypercallContext

if TYPE_CHECKING:
    from hv.machine import Machine

HERE = Path(__file__).resolve().parent
ROM_BASE = 0xF0000
HC_POST = 0x0001
HC_VECTOR = 0x0100          # + vector number
VECTOR_STUBS = 0x1000       # ROM offset of the 256 8-byte stubs
STUB_SIZE = 8
STUB_ENTRY = 2              # the IVT points past the stub's sti; hlt
IRQ0_STUB = 0x0200          # IRQ 0 calls INT 1Ch from guest code
HALT_STUB = 0x010F          # cli; hlt: where a failed boot ends
DPT_OFFSET = 0xEFC7         # diskette parameter table (INT 1Eh)


def rom_path() -> Path:
    return HERE / "rom.bin"


def stub_entry(vector: int) -> int:
    """ROM offset of the IVT entry point for ``vector``."""
    return VECTOR_STUBS + STUB_SIZE * vector + STUB_ENTRY


Service = Callable[[HypercallContext], object]


class SyntheticBios:
    name = "synthetic"

    def install(self, machine: "Machine") -> None:
        from hv.devices.bios_synthetic import boot, disk, keyboard, post, system, video
        from hv.firmware_tables import install_tables
        machine.mem.load_rom(ROM_BASE, rom_path().read_bytes())
        install_tables(machine.mem)          # MP and ACPI tables in the ROM's spare window
        self.machine = machine
        self.state: dict[str, object] = {}
        services: dict[int, Service] = {}
        for module in (video, disk, keyboard, system, boot):
            services.update(module.SERVICES)
        self.services = services
        machine.hypercalls.register(HC_POST, "bios:post", post.post)
        for vector in range(256):
            handler = services.get(vector, post.default_vector)
            machine.hypercalls.register(HC_VECTOR + vector, f"bios:int{vector:02x}", handler)

    def post_reset(self, machine: "Machine") -> None:
        """Nothing to do before the CPU starts: POST runs when the ROM calls it."""
