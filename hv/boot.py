"""Direct kernel boot, as a microVM does it: no BIOS, no POST, no boot sector.

The host copies a 32-bit kernel (an ELF32 i386 executable or a flat binary) into
guest RAM, writes a flat GDT and a boot-information block, and starts the vCPU in
protected mode at the kernel's entry point. The kernel talks to the host through
the hypercall ABI (``hv/hypercall.py``) or the COM1 UART. The entry state and the
block's layout are documented in docs/direct-boot.md; the layout constants below
are that document in code.

``DirectBoot`` is a firmware object (``install`` before the vCPU exists,
``post_reset`` after every reset): ``install`` reads and checks the kernel once and
registers the hypercalls, ``post_reset`` (re)loads the image and sets the CPU, so a
guest-requested reset restarts the kernel from a pristine copy.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unicorn import x86_const as X

from hv.devices.bios_common import E820_RAM, e820_map
from hv.hypercall import HypercallContext

if TYPE_CHECKING:
    from hv.machine import Machine

# -- the boot protocol ---------------------------------------------------------------
BOOT_MAGIC = 0x68760001        # EAX at entry: 'hv' + protocol 1
BOOTINFO_MAGIC = 0x49427668    # "hvBI" at offset 0 of the block
BOOTINFO_VERSION = 1
HYPERCALL_ABI_VERSION = 1      # bumped when a direct-boot call changes meaning

FLAT_LOAD_ADDR = 0x100000      # a flat binary is loaded here and entered at its first byte
GDT_ADDR = 0x1000
BOOTINFO_ADDR = 0x2000
BOOTINFO_MAX = 0x1000
CMDLINE_ADDR = 0x3000
CMDLINE_MAX = 0x1000 - 1       # bytes, without the terminating NUL
RESERVED_END = 0x4000          # 0..0x3FFF: IVT page, GDT, boot info, command line
STACK_TOP = 0x9F000            # below the EBDA that e820_map reserves; 16-byte aligned
STACK_SIZE = 0x10000           # the 64 KiB below STACK_TOP are the entry stack

CODE_SEL, DATA_SEL = 0x08, 0x10
# Flat 4 GiB descriptors, base 0, granularity 4 KiB, 32-bit; "accessed" already set
# so loading them never writes the GDT back.
GDT = struct.pack("<QQQ", 0,
                  0x00CF9B000000FFFF,     # 0x08: code, DPL 0, execute/read
                  0x00CF93000000FFFF)     # 0x10: data, DPL 0, read/write
CR0_PE, CR0_ET = 0x1, 0x10      # ET is hard-wired to 1 on a 486 and later
EFLAGS_RESERVED = 0x2           # bit 1 always reads 1; IF = 0

# Header: magic, version, header size, total size, hypercall ABI, mem size,
# cmdline (addr, len), e820 (addr, count, entry size), devices (addr, count,
# entry size), kernel (start, end), stack top.
HEADER = struct.Struct("<IHHIIIIIIIIIIIIII")
E820_ENTRY = struct.Struct("<QQI")              # base, length, type (as INT 15h E820)
DEV_ENTRY = struct.Struct("<HHIIBBH")           # kind, device id, base, size, irq, flags, reserved
IRQ_NONE = 0xFF

# Device kinds in the device list.
DEV_VIRTIO_MMIO = 1
DEV_UART16550 = 2
DEV_PIC8259 = 3
DEV_PIT8254 = 4
DEV_RTC_CMOS = 5
DEV_DEBUGCON = 6
DEV_LAPIC = 7                  # base: the local APIC's MMIO window
DEV_IOAPIC = 8                 # base: the I/O APIC's window; irq: its first GSI (0)
DEV_IO_PORTS = 0x01            # flags: base is an I/O port (else a physical address)
# The legacy devices of note, in this order: (kind, Machine attribute).
LEGACY = ((DEV_UART16550, "uart"), (DEV_PIC8259, "pic"), (DEV_PIT8254, "pit"),
          (DEV_RTC_CMOS, "cmos"), (DEV_DEBUGCON, "debugcon"))

# -- hypercalls (numbers 0x0002..0x00FF are reserved for direct boot) ---------------
HC_CONSOLE_WRITE = 0x0002      # EBX = phys addr, ECX = length -> EAX = bytes written or HC_EFAULT
HC_POWEROFF = 0x0003           # EBX = exit code: the run ends
HC_TIME = 0x0004               # -> EDX:EAX = virtual time in ns
HC_EFAULT = 0xFFFFFFFF
CONSOLE_CHUNK = 0x10000        # at most 64 KiB per call; the kernel loops on EAX

# -- ELF -----------------------------------------------------------------------------
ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFDATA2LSB, ET_EXEC, EM_386, PT_LOAD = 1, 1, 2, 3, 1
ELF_HEADER = struct.Struct("<16sHHIIIIIHHHHHH")
PHDR = struct.Struct("<IIIIIIII")   # type, offset, vaddr, paddr, filesz, memsz, flags, align


class KernelImageError(ValueError):
    """The kernel cannot be booted. The message is one line, naming the file."""


@dataclass
class Segment:
    paddr: int
    data: bytes
    memsz: int          # >= len(data); the rest is zeroed (bss)


@dataclass
class KernelImage:
    path: str
    kind: str                       # "elf" or "flat"
    entry: int
    segments: list[Segment] = field(default_factory=list)

    @property
    def start(self) -> int:
        return min(s.paddr for s in self.segments)

    @property
    def end(self) -> int:
        return max(s.paddr + s.memsz for s in self.segments)


def _ram_ranges(mem_size: int) -> list[tuple[int, int]]:
    return [(b, b + n) for b, n, t in e820_map(mem_size) if t == E820_RAM]


def _stack_top(mem_size: int) -> int:
    """STACK_TOP, or the top of low RAM when that is lower (small machines)."""
    low_end = _ram_ranges(mem_size)[0][1]
    return min(STACK_TOP, low_end) & ~0xF


KERNEL_FORMATS = ("auto", "elf", "flat", "bzimage")


def load_kernel(path: str | Path, mem_size: int, fmt: str = "auto") -> KernelImage:
    """Read and check a kernel file; raises KernelImageError with a one-line message.
    ``fmt``: "auto" takes an ELF and refuses anything without a header it recognises (a
    flat binary has none: a typo'd path to some other file must not be run as code);
    "flat" loads the bytes at 1 MiB and enters at the first; "elf" insists on ELF."""
    name = str(path)
    if fmt not in KERNEL_FORMATS:
        raise KernelImageError(f"unknown kernel format {fmt!r} ({', '.join(KERNEL_FORMATS)})")
    try:
        size = os.stat(path).st_size
        if size > mem_size:          # no host allocation sized by a file that cannot fit
            raise KernelImageError(f"kernel {name}: {size} bytes cannot fit in "
                                   f"{mem_size // 1024} KiB of guest RAM")
        data = Path(path).read_bytes()
    except OSError as e:
        raise KernelImageError(f"kernel {name}: cannot read: {e.strerror or e}") from None
    if not data:
        raise KernelImageError(f"kernel {name}: the file is empty")
    if fmt == "flat":
        image = KernelImage(name, "flat", FLAT_LOAD_ADDR, [Segment(FLAT_LOAD_ADDR, data, len(data))])
    elif data[:4] == ELF_MAGIC:
        image = _parse_elf(name, data)
    elif fmt == "elf":
        raise KernelImageError(f"kernel {name}: not an ELF file")
    else:
        raise KernelImageError(f"kernel {name}: neither an ELF nor a bzImage; give "
                               "--kernel-format flat to load it as a flat binary at 1 MiB")
    _check_placement(image, mem_size)
    return image


def _parse_elf(name: str, data: bytes) -> KernelImage:
    def bad(why: str) -> KernelImageError:
        return KernelImageError(f"kernel {name}: {why}")

    if len(data) < ELF_HEADER.size:
        raise bad("truncated ELF header")
    (ident, e_type, e_machine, _ver, e_entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum, _shentsize, _shnum, _shstrndx) = ELF_HEADER.unpack_from(data)
    if ident[4] != ELFCLASS32 or ident[5] != ELFDATA2LSB or e_machine != EM_386:
        raise bad("not an ELF32 i386 (EM_386, little-endian) file")
    if e_type != ET_EXEC:
        raise bad(f"not an executable (ELF type {e_type}, expected ET_EXEC)")
    if e_phnum == 0 or e_phentsize != PHDR.size or e_phoff + e_phnum * PHDR.size > len(data):
        raise bad("missing or truncated program headers")
    image = KernelImage(name, "elf", e_entry)
    entry = None
    for i in range(e_phnum):
        p_type, off, vaddr, paddr, filesz, memsz, _fl, _al = PHDR.unpack_from(data, e_phoff + i * PHDR.size)
        if p_type != PT_LOAD or memsz == 0:
            continue
        if filesz > memsz or off + filesz > len(data):
            raise bad(f"segment {i} is truncated or larger in the file than in memory")
        image.segments.append(Segment(paddr, data[off:off + filesz], memsz))
        # Paging is off at entry: an entry point given as a virtual address (a
        # higher-half kernel) is entered at the matching physical address.
        if entry is None:
            if paddr <= e_entry < paddr + memsz:
                entry = e_entry
            elif vaddr <= e_entry < vaddr + memsz:
                entry = e_entry - vaddr + paddr
    if not image.segments:
        raise bad("no loadable (PT_LOAD) segment")
    if entry is None:
        raise bad(f"entry point {e_entry:#x} is outside every loaded segment")
    image.entry = entry
    return image


def _check_placement(image: KernelImage, mem_size: int) -> None:
    ram = _ram_ranges(mem_size)
    top = _stack_top(mem_size)
    taken = [(0, RESERVED_END, "the boot structures"),
             (max(0, top - STACK_SIZE), top, "the entry stack")]
    for s in image.segments:
        lo, hi = s.paddr, s.paddr + s.memsz
        if not any(a <= lo and hi <= b for a, b in ram):
            raise KernelImageError(
                f"kernel {image.path}: {lo:#x}-{hi:#x} does not fit in guest RAM "
                f"({mem_size // 1024} KiB; RAM is {', '.join(f'{a:#x}-{b:#x}' for a, b in ram)})")
        for a, b, what in taken:
            if lo < b and a < hi:
                raise KernelImageError(
                    f"kernel {image.path}: {lo:#x}-{hi:#x} overlaps {what} at {a:#x}-{b:#x}")


# -- the boot-information block ---------------------------------------------------------
def device_list(machine: "Machine") -> list[tuple[int, int, int, int, int, int]]:
    """(kind, device id, base, size, irq, flags): virtio-mmio slots, then legacy devices."""
    out = []
    for base, length, dev in machine.mmio.ranges():
        if getattr(dev, "name", "").startswith("virtio-"):
            irq = getattr(dev, "irq", None)
            out.append((DEV_VIRTIO_MMIO, dev.device.device_id, base, length,
                        IRQ_NONE if irq is None else irq, 0))
    for kind, attr in LEGACY:
        dev = getattr(machine, attr, None)
        if dev is None or not dev.ports:
            continue
        r = dev.ports[0]
        irq = dev.irq
        out.append((kind, 0, r.base, r.length, IRQ_NONE if irq is None else irq, DEV_IO_PORTS))
    for kind, attr in ((DEV_LAPIC, "lapic"), (DEV_IOAPIC, "ioapic")):
        dev = getattr(machine, attr, None)
        if dev is not None and dev.mmio:
            base, length = dev.mmio[0]
            out.append((kind, 0, base, length, 0 if kind == DEV_IOAPIC else IRQ_NONE, 0))
    return out


def build_bootinfo(machine: "Machine", cmdline: bytes, kernel: KernelImage,
                   addr: int = BOOTINFO_ADDR) -> bytes:
    """The block as it lands at ``addr``: header, E820 entries, device entries."""
    mem_size = machine.config.mem_size
    e820 = e820_map(mem_size)
    devices = device_list(machine)
    e820_at = addr + HEADER.size
    dev_at = e820_at + len(e820) * E820_ENTRY.size
    size = dev_at - addr + len(devices) * DEV_ENTRY.size
    if size > BOOTINFO_MAX:
        raise ValueError(f"boot information ({size} bytes) exceeds {BOOTINFO_MAX}")
    header = HEADER.pack(BOOTINFO_MAGIC, BOOTINFO_VERSION, HEADER.size, size,
                         HYPERCALL_ABI_VERSION, mem_size,
                         CMDLINE_ADDR, len(cmdline),
                         e820_at, len(e820), E820_ENTRY.size,
                         dev_at, len(devices), DEV_ENTRY.size,
                         kernel.start, kernel.end, _stack_top(mem_size))
    return (header + b"".join(E820_ENTRY.pack(*e) for e in e820)
            + b"".join(DEV_ENTRY.pack(*d, 0) for d in devices))


# -- hypercalls ------------------------------------------------------------------------
def hc_console_write(ctx: HypercallContext) -> None:
    addr, length = ctx.regs.ebx, ctx.regs.ecx
    n = min(length, CONSOLE_CHUNK)
    try:
        data = ctx.mem.read(addr, n)
    except ValueError:                  # GuestMemoryError: outside guest RAM
        ctx.regs.eax = HC_EFAULT
        return
    sink = ctx.machine.uart.sink
    if data and sink is not None:
        sink(data)
    ctx.regs.eax = n


def hc_poweroff(ctx: HypercallContext) -> None:
    code = ctx.regs.ebx
    ctx.machine.finish(code & 0xFF, f"guest powered off with code {code}")


def hc_time(ctx: HypercallContext) -> None:
    ns = ctx.machine.clock.now() & 0xFFFFFFFFFFFFFFFF
    ctx.regs.eax = ns & 0xFFFFFFFF
    ctx.regs.edx = ns >> 32


HYPERCALLS = {
    HC_CONSOLE_WRITE: ("direct:console-write", hc_console_write),
    HC_POWEROFF: ("direct:poweroff", hc_poweroff),
    HC_TIME: ("direct:time", hc_time),
}


# -- the firmware object ------------------------------------------------------------------
def enter_protected_mode(uc, entry: int, esp: int, eax: int, ebx: int) -> None:
    """Flat 32-bit protected mode at CPL 0, paging off, IF = 0 (the GDT is in memory).

    GDTR goes first: a selector written while PE is set is loaded from the GDT at
    once (the engine checks it as the CPU would), so the table must be in place."""
    uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_ADDR, len(GDT) - 1, 0))
    uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0, 0))    # no IDT yet: any vector is a clean error
    uc.reg_write(X.UC_X86_REG_CR0, CR0_PE | CR0_ET)   # also clears CD/NW left by RESET
    uc.reg_write(X.UC_X86_REG_EFLAGS, EFLAGS_RESERVED)
    for r in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
        uc.reg_write(r, DATA_SEL)
    uc.reg_write(X.UC_X86_REG_CS, CODE_SEL)
    for r in (X.UC_X86_REG_ECX, X.UC_X86_REG_EDX, X.UC_X86_REG_ESI, X.UC_X86_REG_EDI,
              X.UC_X86_REG_EBP):
        uc.reg_write(r, 0)
    uc.reg_write(X.UC_X86_REG_EAX, eax)
    uc.reg_write(X.UC_X86_REG_EBX, ebx)
    uc.reg_write(X.UC_X86_REG_ESP, esp)
    uc.reg_write(X.UC_X86_REG_EIP, entry)
    uc.ctl_flush_tb()


class DirectBoot:
    """Firmware for ``hv run --kernel FILE [--append CMDLINE]``."""

    name = "direct"

    def __init__(self, kernel: str | None = None, cmdline: str | None = None) -> None:
        self.kernel_path = kernel
        self.cmdline_text = cmdline
        self.image: KernelImage | None = None

    def install(self, machine: "Machine") -> None:
        cfg = machine.config
        path = self.kernel_path if self.kernel_path is not None else getattr(cfg, "kernel", None)
        text = self.cmdline_text if self.cmdline_text is not None else getattr(cfg, "cmdline", "")
        if not path:
            raise KernelImageError("direct boot needs a kernel file (--kernel FILE)")
        cmdline = (text or "").encode("utf-8")
        if b"\0" in cmdline:
            raise KernelImageError("the kernel command line must not contain NUL characters")
        if len(cmdline) > CMDLINE_MAX:
            raise KernelImageError(f"the kernel command line is {len(cmdline)} bytes "
                                   f"(at most {CMDLINE_MAX})")
        self.image = load_kernel(path, cfg.mem_size, getattr(cfg, "kernel_format", "auto"))
        self.cmdline = cmdline
        for number, (hc_name, handler) in HYPERCALLS.items():
            machine.hypercalls.register(number, hc_name, handler)
        if machine.board.name == "pc":
            from hv.firmware_tables import install_tables
            install_tables(machine.mem)      # a kernel that looks for MP/ACPI tables finds them

    def load(self, machine: "Machine") -> None:
        """Copy the kernel, GDT, command line and boot information into guest RAM."""
        mem, image = machine.mem, self.image
        for s in image.segments:
            mem.write(s.paddr, s.data + bytes(s.memsz - len(s.data)))
        mem.write(GDT_ADDR, GDT)
        mem.write(CMDLINE_ADDR, self.cmdline + b"\0")
        mem.write(BOOTINFO_ADDR, build_bootinfo(machine, self.cmdline, image))

    def post_reset(self, machine: "Machine") -> None:
        self.load(machine)
        enter_protected_mode(machine.vcpu.uc, self.image.entry,
                             _stack_top(machine.config.mem_size), BOOT_MAGIC, BOOTINFO_ADDR)
