"""Booting a Linux bzImage through the Linux/x86 32-bit boot protocol, with no BIOS.

The protocol is Documentation/arch/x86/boot.rst ("32-bit boot protocol") and
zero-page.rst. A bzImage is a 512-byte boot sector, ``setup_sects`` sectors of
real-mode setup code (which a 32-bit boot loader does not run), and the
protected-mode kernel. The loader:

1. checks the setup header at 0x1F1 (the "HdrS" magic, protocol >= 2.06, a bzImage
   that loads high, a 32-bit kernel) and that the kernel, its decompression area
   (``init_size`` bytes from where it will run) and the initrd fit guest RAM;
2. copies the protected-mode kernel to 0x100000 (``code32_start``: what LOADED_HIGH
   means, and what QEMU and GRUB do; a relocatable kernel then moves itself up to
   ``pref_address`` aligned to ``kernel_alignment`` before it decompresses);
3. builds ``boot_params`` (the "zero page"): all zero, the image's setup header copied
   in at 0x1F1 and completed (type_of_loader, loadflags, heap_end_ptr,
   cmd_line_ptr, ramdisk_image/size), the E820 map, ``acpi_rsdp_addr`` (2.14+), and a
   ``screen_info`` that says there is no video console (the machine is run serial only);
4. enters the kernel in flat 32-bit protected mode: ``__BOOT_CS`` 0x10 and ``__BOOT_DS``
   0x18 in a GDT of its own, paging off, interrupts off, ESI = boot_params,
   EBP = EDI = EBX = 0.

``LinuxBoot`` is a firmware object shaped like ``hv.boot.DirectBoot``: ``install`` reads
and checks the files once and writes the MP/ACPI tables into the ROM window
(``hv.firmware_tables``); ``post_reset`` (re)loads everything from the pristine copies
and sets the CPU, so a guest-requested reset boots the kernel again.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unicorn import x86_const as X

from hv.boot import CR0_ET, CR0_PE, EFLAGS_RESERVED, KernelImageError
from hv.devices.bios_common import E820_RAM, e820_map, extended_memory_kb
from hv.firmware_tables import PC_BOARD, Board, install_tables
from hv.memory import HIGH_BASE, KiB

if TYPE_CHECKING:
    from hv.machine import Machine

# -- the setup header (offsets in the file and in boot_params alike) -------------------
SETUP_SECTS = 0x1F1
BOOT_FLAG = 0x1FE                 # 0xAA55
JUMP = 0x200                      # a short jump; 0x202 + the byte at 0x201 ends the header
HEADER_MAGIC_AT = 0x202
HEADER_MAGIC = b"HdrS"
VERSION = 0x206
KERNEL_VERSION = 0x20E            # offset (from 0x200) of the version string
TYPE_OF_LOADER = 0x210
LOADFLAGS = 0x211
CODE32_START = 0x214
RAMDISK_IMAGE = 0x218
RAMDISK_SIZE = 0x21C
HEAP_END_PTR = 0x224
EXT_LOADER_VER = 0x226            # 2.02+: with ext_loader_type, 0 for loader ID 0xFF
CMD_LINE_PTR = 0x228
INITRD_ADDR_MAX = 0x22C           # 2.03+
KERNEL_ALIGNMENT = 0x230          # 2.05+
RELOCATABLE_KERNEL = 0x234        # 2.05+
XLOADFLAGS = 0x236                # 2.12+
CMDLINE_SIZE = 0x238              # 2.06+
HARDWARE_SUBARCH = 0x23C          # 2.07+: 0 = a normal PC; 8 bytes of subarch data follow
SETUP_DATA = 0x250                # 2.09+: the list of setup_data blobs (hv passes none)
PREF_ADDRESS = 0x258              # 2.10+
INIT_SIZE = 0x260                 # 2.10+
SETUP_HEADER_END = 0x290          # struct setup_header never reaches past this in boot_params

MIN_VERSION = 0x0206              # cmdline_size, and the 32-bit protocol as documented
BOOT_FLAG_MAGIC = 0xAA55
LOADED_HIGH = 0x01                # loadflags: the protected-mode code loads at 0x100000
CAN_USE_HEAP = 0x80               # loadflags: heap_end_ptr is valid
XLF_KERNEL_64 = 0x01              # xloadflags: an x86-64 kernel
TYPE_OF_LOADER_UNDEFINED = 0xFF   # "no assigned boot loader ID"
HEAP_END = 0xFE00                 # the usual value: the real-mode segment's end less 0x200
DEFAULT_INITRD_ADDR_MAX = 0x37FFFFFF     # boot.rst: before 2.03
DEFAULT_SETUP_SECTS = 4           # setup_sects 0 means 4

# -- boot_params (zero page) ------------------------------------------------------------
BOOT_PARAMS_SIZE = 0x1000
SCREEN_EXT_MEM_K = 0x002          # screen_info.ext_mem_k: KiB above 1 MiB, at most 0xFFFF
ACPI_RSDP_ADDR = 0x070            # 2.14+
ALT_MEM_K = 0x1E0
E820_ENTRIES = 0x1E8
E820_TABLE = 0x2D0
E820_MAX_ENTRIES = 128
E820_ENTRY = struct.Struct("<QQI")
ACPI_RSDP_SINCE = 0x020E

# -- guest memory used by the boot ------------------------------------------------------
KERNEL_LOAD_ADDR = HIGH_BASE      # 0x100000
GDT_ADDR = 0x1000
BOOT_PARAMS_ADDR = 0x10000
CMDLINE_ADDR = 0x20000
CMDLINE_AREA = 0x10000            # the command line and its NUL must fit in 64 KiB
STACK_TOP = 0x9F000               # not required by the protocol; below the EBDA
INITRD_ALIGN = 0x1000
BOOT_CS, BOOT_DS = 0x10, 0x18     # __BOOT_CS, __BOOT_DS
# null, unused, then flat 4 GiB code (execute/read) and data (read/write), base 0,
# 4 KiB granularity, 32-bit, "accessed" set so loading them never writes the GDT.
GDT = struct.pack("<QQQQ", 0, 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF)


@dataclass
class BzImage:
    path: str
    version: int                  # boot protocol, e.g. 0x020F
    setup_header: bytes           # file bytes 0x1F1 .. end of the setup header
    kernel: bytes                 # the protected-mode part
    loadflags: int
    code32_start: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable: bool
    xloadflags: int
    cmdline_size: int             # longest command line, without its NUL
    pref_address: int
    init_size: int                # bytes the kernel needs from where it runs
    kernel_version: str

    @property
    def run_address(self) -> int:
        """Where the kernel decompresses to and runs, loaded at KERNEL_LOAD_ADDR: a
        relocatable kernel rounds its load address up to kernel_alignment and never runs
        below pref_address (LOAD_PHYSICAL_ADDR); any other runs at pref_address."""
        if self.relocatable:
            align = self.kernel_alignment
            return max((KERNEL_LOAD_ADDR + align - 1) & -align, self.pref_address)
        return self.pref_address


def is_bzimage(path: str | Path) -> bool:
    """Whether a file carries the Linux setup header magic (a bzImage, or an old zImage
    that ``load_bzimage`` will refuse with a reason)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_MAGIC_AT + 4)
    except OSError:
        return False
    return head[HEADER_MAGIC_AT:HEADER_MAGIC_AT + 4] == HEADER_MAGIC


def _read_limited(path: str | Path, what: str, limit: int) -> bytes:
    """Read a user-named file, refusing before the read one that could not fit RAM."""
    try:
        size = os.stat(path).st_size
        if size > limit:
            raise KernelImageError(f"{what} {path}: {size} bytes cannot fit in guest RAM "
                                   f"({limit} bytes)")
        data = Path(path).read_bytes()
    except OSError as e:
        raise KernelImageError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    if not data:
        raise KernelImageError(f"{what} {path}: the file is empty")
    return data


def load_bzimage(path: str | Path, mem_size: int) -> BzImage:
    """Read and check a bzImage; raises KernelImageError with a one-line message."""
    return parse_bzimage(_read_limited(path, "kernel", mem_size), str(path))


def parse_bzimage(data: bytes, name: str = "bzImage") -> BzImage:
    def bad(why: str) -> KernelImageError:
        return KernelImageError(f"kernel {name}: {why}")

    if len(data) < HEADER_MAGIC_AT + 4 or data[HEADER_MAGIC_AT:HEADER_MAGIC_AT + 4] != HEADER_MAGIC:
        raise bad("not a Linux bzImage (no 'HdrS' setup header at 0x202)")
    if len(data) < VERSION + 2:
        raise bad("truncated setup header")
    version = struct.unpack_from("<H", data, VERSION)[0]
    if version < MIN_VERSION:
        raise bad(f"boot protocol {version >> 8}.{version & 0xFF:02d} is older than 2.06")
    header_end = min(JUMP + 2 + data[JUMP + 1], SETUP_HEADER_END)
    needed = CMDLINE_SIZE + 4 if version < 0x020A else INIT_SIZE + 4
    if header_end < needed or len(data) < header_end:
        raise bad(f"truncated setup header (ends at {min(header_end, len(data)):#x}, "
                  f"protocol {version >> 8}.{version & 0xFF:02d} needs {needed:#x})")

    def u(fmt: str, off: int) -> int:
        return struct.unpack_from(fmt, data, off)[0]

    if u("<H", BOOT_FLAG) != BOOT_FLAG_MAGIC:
        raise bad(f"boot_flag is {u('<H', BOOT_FLAG):#06x}, not 0xaa55")
    loadflags = data[LOADFLAGS]
    if not loadflags & LOADED_HIGH:
        raise bad("a zImage (loads below 1 MiB); only bzImages are supported")
    xloadflags = u("<H", XLOADFLAGS) if version >= 0x020C else 0
    if xloadflags & XLF_KERNEL_64:
        raise bad("an x86-64 kernel; hv boots 32-bit (i386) kernels")
    setup_sects = data[SETUP_SECTS] or DEFAULT_SETUP_SECTS
    setup_size = (setup_sects + 1) * 512
    syssize = u("<I", 0x1F4) * 16
    if setup_size >= len(data) or setup_size + syssize > len(data):
        raise bad(f"truncated: setup_sects {setup_sects} and syssize {syssize:#x} need "
                  f"{setup_size + syssize} bytes, the file has {len(data)}")
    kernel = data[setup_size:]
    alignment = u("<I", KERNEL_ALIGNMENT)
    relocatable = bool(data[RELOCATABLE_KERNEL])
    if relocatable and (alignment == 0 or alignment & (alignment - 1) or alignment > 1 << 30):
        raise bad(f"kernel_alignment {alignment:#x} is not a power of two up to 1 GiB")
    if version >= 0x020A:
        pref_address, init_size = u("<Q", PREF_ADDRESS), u("<I", INIT_SIZE)
    else:
        pref_address, init_size = KERNEL_LOAD_ADDR, len(kernel)
    kver, kver_at = b"", u("<H", KERNEL_VERSION)   # the string's offset less 0x200; 0: none
    if kver_at and kver_at + JUMP < setup_size:
        kver = data[kver_at + JUMP:kver_at + JUMP + 128].split(b"\0")[0]
    return BzImage(
        path=name, version=version, setup_header=data[SETUP_SECTS:header_end], kernel=kernel,
        loadflags=loadflags, code32_start=u("<I", CODE32_START),
        initrd_addr_max=u("<I", INITRD_ADDR_MAX), kernel_alignment=alignment,
        relocatable=relocatable, xloadflags=xloadflags, cmdline_size=u("<I", CMDLINE_SIZE),
        pref_address=pref_address, init_size=max(init_size, len(kernel)),
        kernel_version=kver.decode("ascii", "replace"))


# -- where everything goes --------------------------------------------------------------
@dataclass
class LinuxLayout:
    load_addr: int
    run_start: int                # the area the kernel decompresses into and runs from
    run_end: int
    initrd_addr: int              # 0 without an initrd
    initrd_size: int


def _ram_ranges(mem_size: int) -> list[tuple[int, int]]:
    return [(b, b + n) for b, n, t in e820_map(mem_size) if t == E820_RAM]


def plan_layout(image: BzImage, mem_size: int, initrd_size: int = 0) -> LinuxLayout:
    """Check the kernel and initrd fit guest RAM and choose the initrd's place: as high as
    RAM and initrd_addr_max allow, page aligned, above everything the kernel uses."""
    ram = _ram_ranges(mem_size)

    def in_ram(lo: int, hi: int) -> bool:
        return any(a <= lo and hi <= b for a, b in ram)

    load_end = KERNEL_LOAD_ADDR + len(image.kernel)
    run_start = image.run_address
    run_end = run_start + image.init_size
    if run_start < KERNEL_LOAD_ADDR:
        raise KernelImageError(f"kernel {image.path}: it would run at {run_start:#x}, below 1 MiB "
                               f"(pref_address)")
    if not in_ram(KERNEL_LOAD_ADDR, load_end) or not in_ram(run_start, run_end) or run_end > 1 << 32:
        need_mib = -(-max(load_end, run_end) // (1 << 20))
        raise KernelImageError(
            f"kernel {image.path}: it runs at {run_start:#x}-{run_end:#x} (pref_address, "
            f"init_size), beyond guest RAM ({mem_size // KiB} KiB); use --mem {need_mib}M or more")
    layout = LinuxLayout(KERNEL_LOAD_ADDR, run_start, run_end, 0, 0)
    if not initrd_size:
        return layout
    top_ram = max(b for a, b in ram if a >= KERNEL_LOAD_ADDR)
    top = min(top_ram, image.initrd_addr_max + 1)
    addr = (top - initrd_size) & ~(INITRD_ALIGN - 1)
    floor = max(load_end, run_end)
    if addr < floor:
        raise KernelImageError(
            f"initrd: {initrd_size} bytes do not fit between the kernel's end ({floor:#x}) and "
            f"{top:#x} (the top of RAM or initrd_addr_max); use a larger --mem")
    layout.initrd_addr, layout.initrd_size = addr, initrd_size
    return layout


def check_cmdline(image: BzImage, text: str) -> bytes:
    cmdline = (text or "").encode("utf-8")
    if b"\0" in cmdline:
        raise KernelImageError("the kernel command line must not contain NUL characters")
    limit = min(image.cmdline_size, CMDLINE_AREA - 1)
    if len(cmdline) > limit:
        raise KernelImageError(f"the kernel command line is {len(cmdline)} bytes; "
                               f"kernel {image.path} accepts at most {limit}")
    return cmdline


def build_boot_params(image: BzImage, layout: LinuxLayout, mem_size: int,
                      cmdline_addr: int = CMDLINE_ADDR, rsdp_addr: int = 0) -> bytes:
    bp = bytearray(BOOT_PARAMS_SIZE)
    # screen_info: no video mode, no columns, no lines: vgacon finds no VGA, the kernel
    # uses a dummy console and the serial console named on the command line.
    struct.pack_into("<H", bp, SCREEN_EXT_MEM_K, extended_memory_kb(mem_size))
    if rsdp_addr and image.version >= ACPI_RSDP_SINCE:
        struct.pack_into("<Q", bp, ACPI_RSDP_ADDR, rsdp_addr)
    struct.pack_into("<I", bp, ALT_MEM_K, max(mem_size - HIGH_BASE, 0) // KiB)
    e820 = e820_map(mem_size)[:E820_MAX_ENTRIES]
    bp[E820_ENTRIES] = len(e820)
    for i, entry in enumerate(e820):
        E820_ENTRY.pack_into(bp, E820_TABLE + i * E820_ENTRY.size, *entry)
    bp[SETUP_SECTS:SETUP_SECTS + len(image.setup_header)] = image.setup_header
    bp[TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED
    bp[LOADFLAGS] = image.loadflags | CAN_USE_HEAP
    struct.pack_into("<I", bp, CODE32_START, layout.load_addr)
    struct.pack_into("<II", bp, RAMDISK_IMAGE, layout.initrd_addr, layout.initrd_size)
    struct.pack_into("<H", bp, HEAP_END_PTR, HEAP_END)
    struct.pack_into("<I", bp, CMD_LINE_PTR, cmdline_addr)
    # Fields the loader owns, whatever the image holds: a PC, no extensions.
    struct.pack_into("<BB", bp, EXT_LOADER_VER, 0, 0)          # ext_loader_ver, ext_loader_type
    if image.version >= 0x0207:
        struct.pack_into("<IQ", bp, HARDWARE_SUBARCH, 0, 0)    # hardware_subarch and its data
    if image.version >= 0x0209:
        struct.pack_into("<Q", bp, SETUP_DATA, 0)
    return bytes(bp)


# -- the firmware object ------------------------------------------------------------------
def enter_linux(uc, entry: int, boot_params: int, esp: int) -> None:
    """The 32-bit boot protocol's entry state (GDTR first: selectors written while PE is
    set are loaded from the GDT at once)."""
    uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT_ADDR, len(GDT) - 1, 0))
    uc.reg_write(X.UC_X86_REG_IDTR, (0, 0, 0, 0))
    uc.reg_write(X.UC_X86_REG_CR0, CR0_PE | CR0_ET)
    uc.reg_write(X.UC_X86_REG_EFLAGS, EFLAGS_RESERVED)           # IF = 0
    for r in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
        uc.reg_write(r, BOOT_DS)
    uc.reg_write(X.UC_X86_REG_CS, BOOT_CS)
    for r in (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX,
              X.UC_X86_REG_EDI, X.UC_X86_REG_EBP):
        uc.reg_write(r, 0)
    uc.reg_write(X.UC_X86_REG_ESI, boot_params)
    uc.reg_write(X.UC_X86_REG_ESP, esp)
    uc.reg_write(X.UC_X86_REG_EIP, entry)
    uc.ctl_flush_tb()


class LinuxBoot:
    """Firmware for ``hv run --kernel bzImage [--initrd FILE] [--append CMDLINE]``."""

    name = "linux"

    def __init__(self, kernel: str | None = None, cmdline: str | None = None,
                 initrd: str | None = None, board: Board = PC_BOARD, tables: bool = True) -> None:
        self.kernel_path = kernel
        self.cmdline_text = cmdline
        self.initrd_path = initrd
        self.board = board
        self.tables = tables          # write the MP/ACPI tables and pass the RSDP
        self.image: BzImage | None = None

    def install(self, machine: "Machine") -> None:
        cfg = machine.config
        path = self.kernel_path if self.kernel_path is not None else getattr(cfg, "kernel", None)
        text = self.cmdline_text if self.cmdline_text is not None else getattr(cfg, "cmdline", "")
        initrd = self.initrd_path if self.initrd_path is not None else getattr(cfg, "initrd", None)
        if not path:
            raise KernelImageError("Linux boot needs a kernel file (--kernel FILE)")
        self.image = load_bzimage(path, cfg.mem_size)
        self.cmdline = check_cmdline(self.image, text)
        self.initrd = _read_limited(initrd, "initrd", cfg.mem_size) if initrd else b""
        self.layout = plan_layout(self.image, cfg.mem_size, len(self.initrd))
        rsdp = install_tables(machine.mem, self.board).rsdp_addr if self.tables else 0
        self.boot_params = build_boot_params(self.image, self.layout, cfg.mem_size,
                                             CMDLINE_ADDR, rsdp)

    def load(self, machine: "Machine") -> None:
        """Copy the kernel, initrd, GDT, command line and boot_params into guest RAM."""
        mem = machine.mem
        mem.write(self.layout.load_addr, self.image.kernel)
        if self.initrd:
            mem.write(self.layout.initrd_addr, self.initrd)
        mem.write(GDT_ADDR, GDT)
        mem.write(CMDLINE_ADDR, self.cmdline + b"\0")
        mem.write(BOOT_PARAMS_ADDR, self.boot_params)

    def post_reset(self, machine: "Machine") -> None:
        self.load(machine)
        low_ram_end = _ram_ranges(machine.config.mem_size)[0][1]
        enter_linux(machine.vcpu.uc, self.layout.load_addr, BOOT_PARAMS_ADDR,
                    min(STACK_TOP, low_ram_end) & ~0xF)
