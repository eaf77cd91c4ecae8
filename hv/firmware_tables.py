"""The tables an OS reads to find the board's interrupt controllers and power
management: the MP tables (Intel MultiProcessor Specification 1.4) and the ACPI
tables (RSDP, RSDT, XSDT, FADT, FACS, DSDT, MADT; ACPI 3.0 revisions).

Everything is built from a ``Board`` description, so another board (a microVM) can
describe itself with the same code. ``PC_BOARD`` is today's PC: one CPU (LAPIC ID 0),
an 82093AA-style I/O APIC (ID 1, version 0x11, 24 pins at 0xFEC00000), the ISA bus
with IRQ 0 on I/O APIC pin 2, and the ACPI PM block of ``hv.devices.acpi_pm`` at
port 0x600 with its SCI on ISA IRQ 9 (level, active high, as QEMU's PIIX4 declares it).

``install_tables(mem, board, base)`` writes the tables into a window of the BIOS ROM
area (0xFA000-0xFBFFF by default) that both of hv's BIOS ROMs leave free, and refuses
to write over ROM code. The window lies in 0xF0000-0xFFFFF, which every E820 map hv
reports already marks reserved, and where both the MP specification's search and
Linux's RSDP search look.

The DSDT's AML is produced by a tiny encoder for the few opcodes needed (ACPI 6.x
"ACPI Machine Language Specification": NameOp, PackageOp, integer constants).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

# -- where the tables go --------------------------------------------------------------------
TABLES_BASE = 0xFA000            # inside both ROMs' free space (see check_rom_window)
TABLES_SIZE = 0x2000
ROM_FILL_BYTES = (0x00, 0xFF)    # what an unused ROM area holds (synthetic: 0x00, emulated: 0xFF)


class FirmwareTablesError(ValueError):
    """The tables cannot be placed (a board that does not fit, a window in use)."""


# -- interrupt flags shared by the MP table and the MADT (MPS INTI flags) -------------------
POLARITY_CONFORMS, POLARITY_ACTIVE_HIGH, POLARITY_ACTIVE_LOW = 0x0, 0x1, 0x3
TRIGGER_CONFORMS, TRIGGER_EDGE, TRIGGER_LEVEL = 0x0, 0x4, 0xC
SCI_FLAGS = POLARITY_ACTIVE_HIGH | TRIGGER_LEVEL      # 0x000D, what QEMU's MADT gives IRQ 9

ISA_IRQS = 16
ISA_CASCADE_IRQ = 2              # the 8259 cascade: no device, no I/O APIC entry


# -- the board description ------------------------------------------------------------------
@dataclass(frozen=True)
class IoApicDesc:
    apic_id: int = 1             # not 0: distinct from the BSP's LAPIC ID on the APIC bus
    version: int = 0x11          # 82093AA
    base: int = 0xFEC00000
    pins: int = 24
    gsi_base: int = 0


@dataclass(frozen=True)
class IrqOverride:
    """ISA IRQ ``isa_irq`` arrives at global system interrupt ``gsi`` with ``flags``."""
    isa_irq: int
    gsi: int
    flags: int = POLARITY_CONFORMS | TRIGGER_CONFORMS


@dataclass(frozen=True)
class PmDesc:
    """The ACPI fixed-hardware block, as hv.devices.acpi_pm.AcpiPm implements it."""
    io_base: int = 0x600         # QEMU/SeaBIOS's PIIX4 PM base
    sci_irq: int = 9
    timer_32bit: bool = False    # TMR_VAL_EXT: False = a 24-bit PM timer, as PIIX4's
    s5_slp_typ: int = 5          # SLP_TYP value \_S5 names (3 bits)

    # PM1a event block (PM1_STS, PM1_EN: 2 bytes each), PM1a control, PM timer.
    PM1_EVT_LEN = 4
    PM1_CNT_LEN = 2
    PM_TMR_LEN = 4

    @property
    def pm1a_evt(self) -> int:
        return self.io_base

    @property
    def pm1a_cnt(self) -> int:
        return self.io_base + 4

    @property
    def pm_tmr(self) -> int:
        return self.io_base + 8


@dataclass(frozen=True)
class ResetReg:
    """FADT RESET_REG: write ``value`` to I/O ``port`` (one byte) to reset the machine."""
    port: int = 0x64             # the 8042's command port ...
    value: int = 0xFE            # ... "pulse the reset line"


@dataclass(frozen=True)
class Board:
    # Identification strings (space padded): ACPI OEMID (6), OEM table ID (8), creator;
    # MP OEM ID (8) and product ID (12).
    oem_id: str = "HV"
    oem_table_id: str = "HVPC"
    creator_id: str = "HV"
    mp_product_id: str = "PC"
    cpu_apic_ids: tuple[int, ...] = (0,)          # the first is the BSP
    lapic_base: int = 0xFEE00000
    lapic_version: int = 0x14                     # the LAPIC version register's low byte
    # CPUID leaf 1 EAX / EDX of the vCPU (Unicorn 2.1.4's default x86 CPU model),
    # which the MP processor entry repeats.
    cpu_signature: int = 0x000306C4
    cpu_features: int = 0x078BFBFD
    ioapic: IoApicDesc = field(default_factory=IoApicDesc)
    isa_overrides: tuple[IrqOverride, ...] = (
        IrqOverride(0, 2),                        # the PIT's IRQ 0 is wired to pin 2
        IrqOverride(9, 9, SCI_FLAGS),             # the SCI: level, active high
    )
    imcr: bool = True            # IMCR at 0x22/0x23: the OS starts in PIC mode
    extint_pin: int | None = 0   # the 8259's INTR on an I/O APIC pin (MP table only)
    pm: PmDesc | None = field(default_factory=PmDesc)
    reset: ResetReg | None = field(default_factory=ResetReg)
    century_cmos_index: int = 0x32               # devices/cmos.py keeps the century there
    has_8042: bool = True
    has_vga: bool = True

    def isa_route(self, irq: int) -> IrqOverride:
        """Where ISA IRQ ``irq`` arrives (identity, conforming, unless overridden)."""
        for o in self.isa_overrides:
            if o.isa_irq == irq:
                return o
        return IrqOverride(irq, irq)


PC_BOARD = Board()


# -- small helpers ------------------------------------------------------------------------
def checksum_byte(data: bytes) -> int:
    """The byte that makes ``data`` sum to 0 mod 256."""
    return -sum(data) & 0xFF


def _with_checksum(data: bytearray, offset: int, end: int | None = None) -> bytes:
    data[offset] = 0
    data[offset] = checksum_byte(bytes(data[:end]))
    return bytes(data)


def _text(s: str, n: int) -> bytes:
    b = s.encode("ascii")[:n]
    return b.ljust(n, b" ")


def _align(n: int, a: int) -> int:
    return (n + a - 1) & ~(a - 1)


# -- MP specification 1.4 -----------------------------------------------------------------
MP_FLOATING_SIG = b"_MP_"
MP_CONFIG_SIG = b"PCMP"
MP_SPEC_REV = 4                  # 1.4
MP_FEATURE2_IMCRP = 0x80

MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_IO_INTERRUPT, MP_LOCAL_INTERRUPT = range(5)
MP_CPU_ENABLED, MP_CPU_BSP = 0x01, 0x02
MP_IOAPIC_ENABLED = 0x01
MP_INT, MP_NMI, MP_SMI, MP_EXTINT = range(4)     # interrupt types
MP_ALL_LAPICS = 0xFF
ISA_BUS_ID = 0

MP_FLOATING = struct.Struct("<4sIBBB5s")          # signature, table, length/16, rev, checksum, features
MP_HEADER = struct.Struct("<4sHBB8s12sIHHIHBB")   # 44 bytes
MP_PROC = struct.Struct("<BBBBII8x")              # 20 bytes
MP_BUS_ENTRY = struct.Struct("<BB6s")
MP_IOAPIC_ENTRY = struct.Struct("<BBBBI")
MP_INTR = struct.Struct("<BBHBBBB")               # io and local interrupt entries, 8 bytes


def mp_config_table(board: Board) -> bytes:
    entries = []
    for i, apic_id in enumerate(board.cpu_apic_ids):
        entries.append(MP_PROC.pack(MP_PROCESSOR, apic_id, board.lapic_version,
                                    MP_CPU_ENABLED | (MP_CPU_BSP if i == 0 else 0),
                                    board.cpu_signature, board.cpu_features))
    entries.append(MP_BUS_ENTRY.pack(MP_BUS, ISA_BUS_ID, b"ISA   "))
    io = board.ioapic
    entries.append(MP_IOAPIC_ENTRY.pack(MP_IOAPIC, io.apic_id, io.version, MP_IOAPIC_ENABLED, io.base))
    if board.extint_pin is not None:
        entries.append(MP_INTR.pack(MP_IO_INTERRUPT, MP_EXTINT, 0, ISA_BUS_ID, 0,
                                    io.apic_id, board.extint_pin))
    for irq in range(ISA_IRQS):
        if irq == ISA_CASCADE_IRQ:
            continue
        route = board.isa_route(irq)
        entries.append(MP_INTR.pack(MP_IO_INTERRUPT, MP_INT, route.flags, ISA_BUS_ID, irq,
                                    io.apic_id, route.gsi - io.gsi_base))
    # The 8259 in virtual-wire mode on the BSP's LINT0; NMI on every CPU's LINT1.
    entries.append(MP_INTR.pack(MP_LOCAL_INTERRUPT, MP_EXTINT, 0, ISA_BUS_ID, 0,
                                board.cpu_apic_ids[0], 0))
    entries.append(MP_INTR.pack(MP_LOCAL_INTERRUPT, MP_NMI, 0, ISA_BUS_ID, 0, MP_ALL_LAPICS, 1))
    body = b"".join(entries)
    header = bytearray(MP_HEADER.pack(MP_CONFIG_SIG, MP_HEADER.size + len(body), MP_SPEC_REV, 0,
                                      _text(board.oem_id, 8), _text(board.mp_product_id, 12),
                                      0, 0, len(entries), board.lapic_base, 0, 0, 0))
    return _with_checksum(header + body, 7)


def mp_floating_pointer(board: Board, config_addr: int) -> bytes:
    feature2 = MP_FEATURE2_IMCRP if board.imcr else 0
    fp = bytearray(MP_FLOATING.pack(MP_FLOATING_SIG, config_addr, 1, MP_SPEC_REV, 0,
                                    bytes([0, feature2, 0, 0, 0])))
    return _with_checksum(fp, 10)


# -- ACPI ---------------------------------------------------------------------------------
ACPI_HEADER = struct.Struct("<4sIBB6s8sI4sI")     # 36 bytes
ACPI_OEM_REVISION = 1
ACPI_CREATOR_REVISION = 1

RSDP_SIG = b"RSD PTR "
RSDP_REVISION = 2                # ACPI 2.0 or later: XSDT, 36-byte RSDP
RSDP = struct.Struct("<8sB6sBIIQB3x")
RSDP_V1_LEN = 20

FADT_REVISION = 4                # ACPI 3.0: 244 bytes, GAS access sizes
FADT_LEN = 244
MADT_REVISION = 2
DSDT_REVISION = 2                # 64-bit AML integers
FACS_VERSION = 1
FACS_LEN = 64

# FADT flags (ACPI 3.0 table 5-10).
FADT_WBINVD = 1 << 0
FADT_PROC_C1 = 1 << 2
FADT_PWR_BUTTON = 1 << 4         # set: no fixed-feature power button
FADT_SLP_BUTTON = 1 << 5         # set: no fixed-feature sleep button
FADT_FIX_RTC = 1 << 6            # set: RTC wake status is not in fixed register space
FADT_TMR_VAL_EXT = 1 << 8        # set: the PM timer is 32 bits wide
FADT_RESET_REG_SUP = 1 << 10
FADT_USE_PLATFORM_CLOCK = 1 << 15
# IAPC_BOOT_ARCH.
BOOT_ARCH_LEGACY_DEVICES = 1 << 0
BOOT_ARCH_8042 = 1 << 1
BOOT_ARCH_VGA_NOT_PRESENT = 1 << 2
# P_LVL2_LAT > 100 and P_LVL3_LAT > 1000 say C2 and C3 are not supported.
C2_UNSUPPORTED, C3_UNSUPPORTED = 0x0FFF, 0x0FFF

GAS = struct.Struct("<BBBBQ")    # address space, bit width, bit offset, access size, address
GAS_SYSTEM_IO = 1
ACCESS_BYTE, ACCESS_WORD, ACCESS_DWORD = 1, 2, 3

MADT_LAPIC, MADT_IOAPIC, MADT_ISO, MADT_LAPIC_NMI = 0, 1, 2, 4
MADT_PCAT_COMPAT = 1             # the 8259s are present
MADT_CPU_ENABLED = 1
MADT_ALL_PROCESSORS = 0xFF


def acpi_header(board: Board, signature: bytes, length: int, revision: int) -> bytes:
    return ACPI_HEADER.pack(signature, length, revision, 0, _text(board.oem_id, 6),
                            _text(board.oem_table_id, 8), ACPI_OEM_REVISION,
                            _text(board.creator_id, 4), ACPI_CREATOR_REVISION)


def acpi_table(board: Board, signature: bytes, revision: int, body: bytes) -> bytes:
    """Header + body, with the length and checksum filled in."""
    data = bytearray(acpi_header(board, signature, ACPI_HEADER.size + len(body), revision) + body)
    return _with_checksum(data, 9)


def rsdp(board: Board, rsdt_addr: int, xsdt_addr: int) -> bytes:
    data = bytearray(RSDP.pack(RSDP_SIG, 0, _text(board.oem_id, 6), RSDP_REVISION, rsdt_addr,
                               RSDP.size, xsdt_addr, 0))
    data[8] = checksum_byte(bytes(data[:RSDP_V1_LEN]))     # ACPI 1.0 checksum: first 20 bytes
    return _with_checksum(data, 32)                        # extended checksum: all 36


def rsdt(board: Board, tables: list[int]) -> bytes:
    return acpi_table(board, b"RSDT", 1, b"".join(struct.pack("<I", a) for a in tables))


def xsdt(board: Board, tables: list[int]) -> bytes:
    return acpi_table(board, b"XSDT", 1, b"".join(struct.pack("<Q", a) for a in tables))


def _io_gas(port: int, length: int, access: int) -> bytes:
    if not port or not length:
        return GAS.pack(0, 0, 0, 0, 0)
    return GAS.pack(GAS_SYSTEM_IO, 8 * length, 0, access, port)


def fadt(board: Board, facs_addr: int, dsdt_addr: int) -> bytes:
    pm = board.pm
    evt, cnt, tmr = (pm.pm1a_evt, pm.pm1a_cnt, pm.pm_tmr) if pm else (0, 0, 0)
    evt_len, cnt_len, tmr_len = ((PmDesc.PM1_EVT_LEN, PmDesc.PM1_CNT_LEN, PmDesc.PM_TMR_LEN)
                                 if pm else (0, 0, 0))
    flags = (FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_FIX_RTC
             | FADT_USE_PLATFORM_CLOCK)
    if pm and pm.timer_32bit:
        flags |= FADT_TMR_VAL_EXT
    if board.reset:
        flags |= FADT_RESET_REG_SUP
    boot_arch = BOOT_ARCH_LEGACY_DEVICES
    boot_arch |= BOOT_ARCH_8042 if board.has_8042 else 0
    boot_arch |= 0 if board.has_vga else BOOT_ARCH_VGA_NOT_PRESENT
    reset_gas = _io_gas(board.reset.port, 1, ACCESS_BYTE) if board.reset else _io_gas(0, 0, 0)
    body = b"".join((
        struct.pack("<IIBBH", facs_addr, dsdt_addr, 0, 0, pm.sci_irq if pm else 0),
        # SMI_CMD = 0: no SMM handshake; the machine is always in ACPI mode (SCI_EN = 1).
        struct.pack("<IBBBB", 0, 0, 0, 0, 0),
        struct.pack("<8I", evt, 0, cnt, 0, 0, tmr, 0, 0),   # PM1a/b EVT, PM1a/b CNT, PM2, TMR, GPE0/1
        struct.pack("<8B", evt_len, cnt_len, 0, tmr_len, 0, 0, 0, 0),
        struct.pack("<HHHHBBBBBHB", C2_UNSUPPORTED, C3_UNSUPPORTED, 0, 0, 0, 0, 0, 0,
                    board.century_cmos_index, boot_arch, 0),
        struct.pack("<I", flags),
        reset_gas,
        struct.pack("<B3x", board.reset.value if board.reset else 0),
        # X_FIRMWARE_CTRL stays 0: the 32-bit FIRMWARE_CTRL reaches the FACS (as QEMU
        # does; with both set, ACPICA installs the FACS twice).
        struct.pack("<QQ", 0, dsdt_addr),
        _io_gas(evt, evt_len, ACCESS_WORD), _io_gas(0, 0, 0),
        _io_gas(cnt, cnt_len, ACCESS_WORD), _io_gas(0, 0, 0),
        _io_gas(0, 0, 0),
        _io_gas(tmr, tmr_len, ACCESS_DWORD),
        _io_gas(0, 0, 0), _io_gas(0, 0, 0),
    ))
    table = acpi_table(board, b"FACP", FADT_REVISION, body)
    assert len(table) == FADT_LEN
    return table


def facs() -> bytes:
    # Hardware signature 0, no waking vector, global lock free, no S4BIOS.
    return struct.pack("<4sIIIIIQB3xI24x", b"FACS", FACS_LEN,
                       0, 0, 0, 0, 0, FACS_VERSION, 0)


def madt(board: Board) -> bytes:
    entries = [struct.pack("<II", board.lapic_base, MADT_PCAT_COMPAT)]
    for uid, apic_id in enumerate(board.cpu_apic_ids):
        entries.append(struct.pack("<BBBBI", MADT_LAPIC, 8, uid, apic_id, MADT_CPU_ENABLED))
    io = board.ioapic
    entries.append(struct.pack("<BBBBII", MADT_IOAPIC, 12, io.apic_id, 0, io.base, io.gsi_base))
    for o in board.isa_overrides:
        entries.append(struct.pack("<BBBBIH", MADT_ISO, 10, 0, o.isa_irq, o.gsi, o.flags))
    entries.append(struct.pack("<BBBHB", MADT_LAPIC_NMI, 6, MADT_ALL_PROCESSORS, 0, 1))
    return acpi_table(board, b"APIC", MADT_REVISION, b"".join(entries))


# -- AML (just what the DSDT needs) --------------------------------------------------------
AML_ZERO, AML_ONE, AML_ONES = 0x00, 0x01, 0xFF
AML_BYTE_PREFIX, AML_WORD_PREFIX, AML_DWORD_PREFIX, AML_QWORD_PREFIX = 0x0A, 0x0B, 0x0C, 0x0E
AML_NAME_OP = 0x08
AML_PACKAGE_OP = 0x12
AML_ROOT_PREFIX = 0x5C           # '\'
PKG_LENGTH_MAX = (1 << 28) - 1


def aml_pkg_length(body_len: int) -> bytes:
    """PkgLength for ``body_len`` bytes that follow it; the length counts itself too.
    One byte up to 63; else 1-3 extra bytes, the lead byte holding the low nibble."""
    for extra in range(4):
        total = body_len + 1 + extra
        if extra == 0 and total < 0x40:
            return bytes([total])
        if extra and total < 1 << (4 + 8 * extra):
            return bytes([extra << 6 | total & 0xF]) + (total >> 4).to_bytes(extra, "little")
    raise ValueError(f"AML package of {body_len} bytes is too long")


def aml_integer(n: int) -> bytes:
    if not 0 <= n < 1 << 64:
        raise ValueError(f"AML integer {n} out of range")
    if n in (AML_ZERO, AML_ONE):
        return bytes([n])
    if n == (1 << 64) - 1:
        return bytes([AML_ONES])
    for prefix, size in ((AML_BYTE_PREFIX, 1), (AML_WORD_PREFIX, 2), (AML_DWORD_PREFIX, 4),
                         (AML_QWORD_PREFIX, 8)):
        if n < 1 << (8 * size):
            return bytes([prefix]) + n.to_bytes(size, "little")
    raise AssertionError("unreachable")


def aml_name_seg(name: str) -> bytes:
    """A NameSeg: 4 characters [A-Z_][A-Z0-9_]*, padded with '_'."""
    if not 1 <= len(name) <= 4 or not name.isascii() or not (name[0].isupper() or name[0] == "_") \
            or not all(c.isupper() or c.isdigit() or c == "_" for c in name):
        raise ValueError(f"bad AML name {name!r}")
    return name.ljust(4, "_").encode()


def aml_name_string(path: str) -> bytes:
    """A root-relative (``\\NAME``) or plain single-segment name."""
    if path.startswith("\\"):
        return bytes([AML_ROOT_PREFIX]) + aml_name_seg(path[1:])
    return aml_name_seg(path)


def aml_package(elements: list[bytes]) -> bytes:
    if len(elements) > 0xFF:
        raise ValueError("an AML Package holds at most 255 elements")
    body = bytes([len(elements)]) + b"".join(elements)
    return bytes([AML_PACKAGE_OP]) + aml_pkg_length(len(body)) + body


def aml_name(path: str, value: bytes) -> bytes:
    """DefName: Name (path, value)."""
    return bytes([AML_NAME_OP]) + aml_name_string(path) + value


def dsdt(board: Board) -> bytes:
    aml = b""
    if board.pm is not None:
        # \_S5: {PM1a_CNT.SLP_TYP, PM1b_CNT.SLP_TYP, reserved, reserved}.
        s5 = board.pm.s5_slp_typ
        aml += aml_name("\\_S5", aml_package([aml_integer(s5), aml_integer(s5),
                                              aml_integer(0), aml_integer(0)]))
    return acpi_table(board, b"DSDT", DSDT_REVISION, aml)


# -- layout and installation --------------------------------------------------------------
@dataclass
class FirmwareTables:
    """The window's bytes and where each table starts (physical addresses)."""
    base: int
    image: bytes
    addrs: dict[str, int]

    @property
    def rsdp_addr(self) -> int:
        return self.addrs["RSDP"]

    @property
    def mp_floating_addr(self) -> int:
        return self.addrs["MP"]


def build_tables(board: Board = PC_BOARD, base: int = TABLES_BASE,
                 size: int = TABLES_SIZE) -> FirmwareTables:
    """Lay the tables out from ``base``: the RSDP and the MP floating pointer first (both
    on 16-byte boundaries, found by a scan), the FACS 64-byte aligned, then the rest."""
    if base % 64:
        raise FirmwareTablesError(f"table window {base:#x} is not 64-byte aligned")
    addrs: dict[str, int] = {}
    cursor = base

    def place(name: str, length: int, align: int = 16) -> int:
        nonlocal cursor
        cursor = _align(cursor, align)
        addrs[name] = cursor
        cursor += length
        return addrs[name]

    mp_config = mp_config_table(board)
    dsdt_bytes, madt_bytes, facs_bytes = dsdt(board), madt(board), facs()
    place("RSDP", RSDP.size)
    place("MP", MP_FLOATING.size)
    place("FACS", FACS_LEN, 64)
    place("MPCONFIG", len(mp_config))
    place("RSDT", ACPI_HEADER.size + 4 * 2)
    place("XSDT", ACPI_HEADER.size + 8 * 2, 8)
    place("FACP", FADT_LEN)
    place("APIC", len(madt_bytes))
    place("DSDT", len(dsdt_bytes))
    if cursor - base > size:
        raise FirmwareTablesError(f"the tables need {cursor - base} bytes; the window has {size}")
    blobs = {
        "RSDP": rsdp(board, addrs["RSDT"], addrs["XSDT"]),
        "MP": mp_floating_pointer(board, addrs["MPCONFIG"]),
        "FACS": facs_bytes,
        "MPCONFIG": mp_config,
        "RSDT": rsdt(board, [addrs["FACP"], addrs["APIC"]]),
        "XSDT": xsdt(board, [addrs["FACP"], addrs["APIC"]]),
        "FACP": fadt(board, addrs["FACS"], addrs["DSDT"]),
        "APIC": madt_bytes,
        "DSDT": dsdt_bytes,
    }
    image = bytearray(cursor - base)
    for name, blob in blobs.items():
        off = addrs[name] - base
        image[off:off + len(blob)] = blob
    return FirmwareTables(base, bytes(image), addrs)


def check_rom_window(rom: bytes, rom_base: int, base: int = TABLES_BASE,
                     size: int = TABLES_SIZE) -> None:
    """Raise FirmwareTablesError unless ``rom`` (loaded at ``rom_base``) leaves the window
    [base, base + size) as one unused fill byte (0x00 or 0xFF). A ROM that does not
    reach the window leaves it free."""
    lo, hi = max(base - rom_base, 0), min(base + size - rom_base, len(rom))
    window = rom[lo:hi]
    if window and not any(window == bytes([f]) * len(window) for f in ROM_FILL_BYTES):
        used = next(i for i, b in enumerate(window) if b != window[0]) + rom_base + lo
        raise FirmwareTablesError(
            f"the ROM uses {used:#x}, inside the firmware table window {base:#x}-{base + size - 1:#x}")


def install_tables(mem, board: Board = PC_BOARD, base: int = TABLES_BASE) -> FirmwareTables:
    """Write the tables into guest ROM at ``base`` (after the BIOS ROM is loaded) and
    return where they are. Refuses a window that holds anything but fill bytes or these
    very tables (installing twice is harmless)."""
    tables = build_tables(board, base)
    current = mem.read(base, TABLES_SIZE)
    if current[:len(tables.image)] != tables.image:
        check_rom_window(current, base, base)
    mem.load_rom(base, tables.image)
    return tables
