"""The MP and ACPI tables (hv/firmware_tables.py), read back by the small parsers in
this file, written from the specifications' layouts (MP spec 1.4 ch. 4, ACPI 3.0 ch. 5),
not from the builder's structs; found the way the MP spec and Linux search for them;
and the DSDT disassembled by iasl where it is installed."""
from __future__ import annotations

import shutil
import subprocess

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from hv.devices.bios_emulated import rom_path as emulated_rom
from hv.devices.bios_synthetic import rom_path as synthetic_rom
from hv.firmware_tables import (PC_BOARD, TABLES_BASE, TABLES_SIZE, Board, FirmwareTablesError,
                                PmDesc, ResetReg, aml_integer, aml_pkg_length, build_tables,
                                check_rom_window, install_tables)
from hv.memory import GuestMemory

MiB = 1 << 20


def u8(b, o): return b[o]
def u16(b, o): return int.from_bytes(b[o:o + 2], "little")
def u32(b, o): return int.from_bytes(b[o:o + 4], "little")
def u64(b, o): return int.from_bytes(b[o:o + 8], "little")


@pytest.fixture
def mem():
    m = GuestMemory(16 * MiB)
    yield m
    m.close()


@pytest.fixture(params=["synthetic", "emulated", "none"])
def installed(request, mem):
    """Guest memory with a BIOS ROM (or none, as direct boot) and the tables on top."""
    rom = {"synthetic": synthetic_rom, "emulated": emulated_rom}.get(request.param)
    if rom is not None:
        mem.load_rom(0xF0000, rom().read_bytes())
    tables = install_tables(mem, PC_BOARD)
    return mem, tables


def phys(mem, addr, n):
    return mem.read(addr, n)


# -- the searches an OS does ------------------------------------------------------------------
def linux_rsdp_search(mem) -> int | None:
    """drivers/acpi/acpica/tbxfroot.c: the first KiB of the EBDA (segment at 0x40E), then
    0xE0000-0xFFFFF, on 16-byte boundaries; signature and the checksum(s)."""
    def valid(a):
        b = phys(mem, a, 36)
        if b[:8] != b"RSD PTR " or sum(b[:20]) & 0xFF:
            return False
        return b[15] < 2 or sum(b[:36]) & 0xFF == 0
    ebda = u16(phys(mem, 0x40E, 2), 0) << 4
    areas = ([(ebda, ebda + 1024)] if ebda > 0x400 else []) + [(0xE0000, 0x100000)]
    for lo, hi in areas:
        for a in range(lo, hi, 16):
            if valid(a):
                return a
    return None


def mp_search(mem, base_kb: int = 639) -> int | None:
    """MP spec 1.4 section 4: the first KiB of the EBDA, else the last KiB of base memory,
    then the BIOS ROM 0xF0000-0xFFFFF; "_MP_" on a 16-byte boundary, checksum over its
    16 * length bytes."""
    def valid(a):
        b = phys(mem, a, 16)
        return b[:4] == b"_MP_" and b[8] >= 1 and sum(phys(mem, a, 16 * b[8])) & 0xFF == 0
    ebda = u16(phys(mem, 0x40E, 2), 0) << 4
    first = (ebda, ebda + 1024) if ebda else (base_kb * 1024, base_kb * 1024 + 1024)
    for lo, hi in (first, (0xF0000, 0x100000)):
        for a in range(lo, hi, 16):
            if valid(a):
                return a
    return None


def sdt(mem, addr):
    """(signature, revision, whole table) of an ACPI table, after checking its checksum."""
    length = u32(phys(mem, addr + 4, 4), 0)
    assert 36 <= length <= TABLES_SIZE
    t = phys(mem, addr, length)
    assert sum(t) & 0xFF == 0, f"{t[:4]} checksum"
    return t[:4], t[8], t


def acpi_tables(mem, rsdp_addr) -> dict[bytes, tuple[int, bytes, int]]:
    """Signature -> (revision, table, address), through the XSDT and the FADT."""
    r = phys(mem, rsdp_addr, 36)
    out = {}
    sig, rev, xsdt = sdt(mem, u64(r, 24))
    assert sig == b"XSDT"
    for i in range(36, len(xsdt), 8):
        a = u64(xsdt, i)
        s, v, t = sdt(mem, a)
        out[s] = (v, t, a)
    fadt = out[b"FACP"][1]
    s, v, t = sdt(mem, u32(fadt, 40))
    out[s] = (v, t, u32(fadt, 40))
    out[b"FACS"] = (None, phys(mem, u32(fadt, 36), 64), u32(fadt, 36))
    return out


# -- RSDP, RSDT, XSDT -------------------------------------------------------------------------
def test_rsdp_is_where_linux_searches_for_it_under_every_firmware(installed):
    mem, tables = installed
    assert linux_rsdp_search(mem) == tables.rsdp_addr
    assert TABLES_BASE <= tables.rsdp_addr < TABLES_BASE + TABLES_SIZE


def test_rsdp_is_acpi_2_with_both_checksums_and_both_table_pointers(installed):
    mem, tables = installed
    r = phys(mem, tables.rsdp_addr, 36)
    assert r[:8] == b"RSD PTR " and sum(r[:20]) & 0xFF == 0 and sum(r) & 0xFF == 0
    assert (r[9:15], r[15], u32(r, 20)) == (b"HV    ", 2, 36)
    assert sdt(mem, u32(r, 16))[0] == b"RSDT"
    assert sdt(mem, u64(r, 24))[0] == b"XSDT"


def test_rsdt_and_xsdt_list_the_fadt_and_the_madt(installed):
    mem, tables = installed
    r = phys(mem, tables.rsdp_addr, 36)
    _, rsdt_rev, rsdt = sdt(mem, u32(r, 16))
    _, xsdt_rev, xsdt = sdt(mem, u64(r, 24))
    in_rsdt = [u32(rsdt, i) for i in range(36, len(rsdt), 4)]
    in_xsdt = [u64(xsdt, i) for i in range(36, len(xsdt), 8)]
    assert in_rsdt == in_xsdt
    assert [sdt(mem, a)[0] for a in in_rsdt] == [b"FACP", b"APIC"]
    assert (rsdt_rev, xsdt_rev) == (1, 1)


def test_every_acpi_table_has_its_signature_length_revision_and_oem_fields(installed):
    mem, tables = installed
    found = acpi_tables(mem, tables.rsdp_addr)
    revisions = {sig: rev for sig, (rev, _, _) in found.items() if sig != b"FACS"}
    assert revisions == {b"FACP": 4, b"APIC": 2, b"DSDT": 2}
    for sig, (_, t, _) in found.items():
        if sig == b"FACS":
            continue
        assert (t[10:16], t[16:24], u32(t, 24), t[28:32], u32(t, 32)) == \
            (b"HV    ", b"HVPC    ", 1, b"HV  ", 1)
    assert len(found[b"FACP"][1]) == 244


# -- FADT and FACS ----------------------------------------------------------------------------
def gas(t, off):
    return t[off], t[off + 1], t[off + 2], t[off + 3], u64(t, off + 4)


def test_fadt_declares_the_pm_block_the_sci_and_no_smi_handshake(installed):
    mem, tables = installed
    f = acpi_tables(mem, tables.rsdp_addr)[b"FACP"][1]
    assert u16(f, 46) == 9                                   # SCI_INT
    assert (u32(f, 48), f[52], f[53]) == (0, 0, 0)            # SMI_CMD, ACPI_ENABLE/DISABLE
    blocks = [u32(f, o) for o in range(56, 88, 4)]
    assert blocks == [0x600, 0, 0x604, 0, 0, 0x608, 0, 0]      # PM1a/b EVT, CNT, PM2, TMR, GPE0/1
    assert list(f[88:96]) == [4, 2, 0, 4, 0, 0, 0, 0]          # the block lengths
    assert (u16(f, 96), u16(f, 98)) == (0x0FFF, 0x0FFF)        # no C2, no C3
    assert f[108] == 0x32                                      # CMOS century index
    assert u16(f, 109) == 0b11                                 # legacy devices, 8042
    # The 64-bit blocks say the same, as system I/O.
    assert gas(f, 148) == (1, 32, 0, 2, 0x600)                 # X_PM1a_EVT_BLK
    assert gas(f, 172) == (1, 16, 0, 2, 0x604)                 # X_PM1a_CNT_BLK
    assert gas(f, 208) == (1, 32, 0, 3, 0x608)                 # X_PM_TMR_BLK
    for off in (160, 184, 196, 220, 232):
        assert gas(f, off) == (0, 0, 0, 0, 0)


def test_fadt_flags_say_no_fixed_buttons_24_bit_timer_and_a_reset_register(installed):
    mem, tables = installed
    f = acpi_tables(mem, tables.rsdp_addr)[b"FACP"][1]
    flags = u32(f, 112)
    named = {"WBINVD": 0, "PROC_C1": 2, "PWR_BUTTON": 4, "SLP_BUTTON": 5, "FIX_RTC": 6,
             "TMR_VAL_EXT": 8, "RESET_REG_SUP": 10, "USE_PLATFORM_CLOCK": 15}
    assert {n for n, bit in named.items() if flags >> bit & 1} == \
        {"WBINVD", "PROC_C1", "PWR_BUTTON", "SLP_BUTTON", "FIX_RTC", "RESET_REG_SUP",
         "USE_PLATFORM_CLOCK"}
    assert flags & ~sum(1 << b for b in named.values()) == 0
    assert gas(f, 116) == (1, 8, 0, 1, 0x64) and f[128] == 0xFE   # RESET_REG, RESET_VALUE


def test_fadt_points_at_the_facs_and_dsdt(installed):
    mem, tables = installed
    found = acpi_tables(mem, tables.rsdp_addr)
    f = found[b"FACP"][1]
    assert u32(f, 36) == found[b"FACS"][2] and u32(f, 40) == found[b"DSDT"][2]
    assert (u64(f, 132), u64(f, 140)) == (0, found[b"DSDT"][2])   # X_FIRMWARE_CTRL, X_DSDT


def test_facs_is_64_bytes_on_a_64_byte_boundary_with_no_waking_vector(installed):
    mem, tables = installed
    _, facs, addr = acpi_tables(mem, tables.rsdp_addr)[b"FACS"]
    assert addr % 64 == 0
    assert (facs[:4], u32(facs, 4), u32(facs, 12), u32(facs, 16), facs[32]) == (b"FACS", 64, 0, 0, 1)


def test_a_32_bit_pm_timer_sets_tmr_val_ext(mem):
    tables = install_tables(mem, Board(pm=PmDesc(timer_32bit=True)))
    f = acpi_tables(mem, tables.rsdp_addr)[b"FACP"][1]
    assert u32(f, 112) >> 8 & 1


# -- MADT ------------------------------------------------------------------------------------
def madt_entries(t):
    out, i = [], 44
    while i < len(t):
        kind, length = t[i], t[i + 1]
        assert length >= 2 and i + length <= len(t)
        e = t[i:i + length]
        if kind == 0:
            out.append(("lapic", e[2], e[3], u32(e, 4)))
        elif kind == 1:
            out.append(("ioapic", e[2], u32(e, 4), u32(e, 8)))
        elif kind == 2:
            out.append(("override", e[2], e[3], u32(e, 4), u16(e, 8)))
        elif kind == 4:
            out.append(("lapic-nmi", e[2], u16(e, 3), e[5]))
        else:
            out.append(("?", kind))
        i += length
    return out


def test_madt_lists_the_cpu_the_io_apic_the_overrides_and_lint1_nmi(installed):
    mem, tables = installed
    m = acpi_tables(mem, tables.rsdp_addr)[b"APIC"][1]
    assert (u32(m, 36), u32(m, 40)) == (0xFEE00000, 1)        # LAPIC address, PCAT_COMPAT
    assert madt_entries(m) == [
        ("lapic", 0, 0, 1),                       # processor UID 0, APIC ID 0, enabled
        ("ioapic", 1, 0xFEC00000, 0),             # ID 1, GSI base 0
        ("override", 0, 0, 2, 0x0000),            # ISA IRQ 0 -> GSI 2, conforming
        ("override", 0, 9, 9, 0x000D),            # SCI: level, active high
        ("lapic-nmi", 0xFF, 0x0000, 1),           # every CPU's LINT1 is NMI
    ]


# -- DSDT ------------------------------------------------------------------------------------
# Name (\_S5, Package (4) {5, 5, 0, 0}), encoded by hand from the AML grammar.
S5_AML = bytes([0x08, 0x5C]) + b"_S5_" + bytes([0x12, 0x08, 0x04, 0x0A, 5, 0x0A, 5, 0x00, 0x00])


def test_dsdt_holds_exactly_the_s5_package(installed):
    mem, tables = installed
    d = acpi_tables(mem, tables.rsdp_addr)[b"DSDT"][1]
    assert d[36:] == S5_AML


@pytest.mark.skipif(shutil.which("iasl") is None,
                    reason="iasl (apt-get install acpica-tools) is needed to disassemble the tables")
def test_iasl_disassembles_every_table_and_finds_s5_in_the_dsdt(mem, tmp_path):
    tables = install_tables(mem, PC_BOARD)
    found = acpi_tables(mem, tables.rsdp_addr)
    for sig, (_, t, _) in found.items():
        path = tmp_path / f"{sig.decode()}.dat"
        path.write_bytes(t)
        p = subprocess.run(["iasl", "-d", str(path)], capture_output=True, text=True, cwd=tmp_path)
        assert p.returncode == 0, p.stdout + p.stderr
        dsl = path.with_suffix(".dsl").read_text()
        assert "Error" not in dsl and "**** " not in dsl, dsl
    dsl = (tmp_path / "DSDT.dsl").read_text()
    body = " ".join(dsl[dsl.index("Name (\\_S5"):].split())
    assert body.startswith("Name (\\_S5, Package (0x04) // _S5_: S5 System State { 0x05, 0x05, Zero, Zero })")
    fadt = (tmp_path / "FACP.dsl").read_text()
    assert "PM1A Control Block Address : 00000604" in fadt
    assert "32-bit PM Timer (V1) : 0" in fadt


# -- MP tables -------------------------------------------------------------------------------
def test_mp_floating_pointer_is_where_the_mp_spec_search_finds_it(installed):
    mem, tables = installed
    assert mp_search(mem) == tables.mp_floating_addr


def test_mp_floating_pointer_says_spec_1_4_imcr_present_and_a_config_table(installed):
    mem, tables = installed
    fp = phys(mem, tables.mp_floating_addr, 16)
    assert (fp[8], fp[9], fp[11], fp[12], fp[13:16]) == (1, 4, 0, 0x80, b"\0\0\0")
    assert phys(mem, u32(fp, 4), 4) == b"PCMP"


def mp_config(mem, fp_addr):
    cfg = u32(phys(mem, fp_addr, 16), 4)
    head = phys(mem, cfg, 44)
    table = phys(mem, cfg, u16(head, 4))
    assert sum(table) & 0xFF == 0
    entries, i = [], 44
    for _ in range(u16(head, 34)):
        kind = table[i]
        if kind == 0:
            e = table[i:i + 20]
            entries.append(("cpu", e[1], e[2], e[3], u32(e, 4), u32(e, 8)))
            i += 20
            continue
        e = table[i:i + 8]
        if kind == 1:
            entries.append(("bus", e[1], e[2:8]))
        elif kind == 2:
            entries.append(("ioapic", e[1], e[2], e[3], u32(e, 4)))
        else:   # 3 I/O interrupt, 4 local interrupt
            entries.append(("io-int" if kind == 3 else "local-int", e[1], u16(e, 2), e[4], e[5],
                            e[6], e[7]))
        i += 8
    assert i == len(table)
    return head, entries


def test_mp_config_table_header(installed):
    mem, tables = installed
    head, entries = mp_config(mem, tables.mp_floating_addr)
    assert (head[6], head[8:16], head[16:28], u32(head, 28), u16(head, 32)) == \
        (4, b"HV      ", b"PC          ", 0, 0)
    assert (u32(head, 36), u16(head, 40), head[42]) == (0xFEE00000, 0, 0)


def test_mp_entries_come_in_spec_order_with_the_isa_interrupt_routing(installed):
    mem, tables = installed
    _, entries = mp_config(mem, tables.mp_floating_addr)
    order = {"cpu": 0, "bus": 1, "ioapic": 2, "io-int": 3, "local-int": 4}
    kinds = [order[e[0]] for e in entries]
    assert kinds == sorted(kinds)
    assert entries[:3] == [("cpu", 0, 0x14, 0x03, 0x000306C4, 0x078BFBFD),   # enabled BSP
                           ("bus", 0, b"ISA   "),
                           ("ioapic", 1, 0x11, 1, 0xFEC00000)]
    io = [e[1:] for e in entries if e[0] == "io-int"]
    # (type, flags, source bus, source IRQ, I/O APIC, pin); type 3 ExtINT, 0 INT.
    expected = [(3, 0, 0, 0, 1, 0), (0, 0, 0, 0, 1, 2), (0, 0, 0, 1, 1, 1)]
    expected += [(0, 0x0D if irq == 9 else 0, 0, irq, 1, irq) for irq in range(3, 16)]
    assert io == expected
    local = [e[1:] for e in entries if e[0] == "local-int"]
    assert local == [(3, 0, 0, 0, 0, 0), (1, 0, 0, 0, 0xFF, 1)]    # LINT0 ExtINT, LINT1 NMI


def test_mp_processor_entry_repeats_what_the_vcpu_says_in_cpuid_leaf_1():
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x1000)
    uc.mem_write(0, b"\x0f\xa2")        # cpuid
    uc.reg_write(X.UC_X86_REG_EAX, 1)
    uc.emu_start(0, 2)
    assert (uc.reg_read(X.UC_X86_REG_EAX), uc.reg_read(X.UC_X86_REG_EDX)) == \
        (PC_BOARD.cpu_signature, PC_BOARD.cpu_features)


# -- placement -------------------------------------------------------------------------------
@pytest.mark.parametrize("rom", [synthetic_rom, emulated_rom], ids=["synthetic", "emulated"])
def test_both_bios_roms_leave_the_table_window_unused(rom):
    data = rom().read_bytes()
    window = data[TABLES_BASE - 0xF0000:TABLES_BASE - 0xF0000 + TABLES_SIZE]
    assert len(set(window)) == 1 and window[0] in (0x00, 0xFF)
    check_rom_window(data, 0xF0000)


def test_a_rom_grown_into_the_window_is_refused_with_the_address(mem):
    rom = bytearray(synthetic_rom().read_bytes())
    rom[TABLES_BASE - 0xF0000 + 0x123] = 0x90
    with pytest.raises(FirmwareTablesError, match=r"uses 0xfa123"):
        check_rom_window(bytes(rom), 0xF0000)
    mem.load_rom(0xF0000, bytes(rom))
    with pytest.raises(FirmwareTablesError) as e:
        install_tables(mem, PC_BOARD)
    assert "\n" not in str(e.value)
    assert mem.u8(TABLES_BASE) == 0          # nothing was written


def test_installing_the_tables_leaves_the_rest_of_the_rom_alone(mem):
    rom = emulated_rom().read_bytes()
    mem.load_rom(0xF0000, rom)
    tables = install_tables(mem, PC_BOARD)
    after = mem.read(0xF0000, 0x10000)
    lo, hi = TABLES_BASE - 0xF0000, TABLES_BASE - 0xF0000 + len(tables.image)
    assert after[:lo] == rom[:lo] and after[hi:] == rom[hi:]


def test_installing_twice_gives_the_same_tables(mem):
    first = install_tables(mem, PC_BOARD)
    second = install_tables(mem, PC_BOARD)
    assert first.addrs == second.addrs
    assert mem.read(TABLES_BASE, len(first.image)) == first.image


def test_tables_that_outgrow_their_window_are_refused():
    with pytest.raises(FirmwareTablesError, match="need"):
        build_tables(PC_BOARD, size=0x100)


# -- another board ---------------------------------------------------------------------------
def test_a_board_without_pm_or_imcr_and_with_two_cpus_describes_itself(mem):
    board = Board(cpu_apic_ids=(0, 1), imcr=False, extint_pin=None, pm=None, reset=None)
    tables = install_tables(mem, board)
    found = acpi_tables(mem, tables.rsdp_addr)
    f = found[b"FACP"][1]
    assert [u32(f, o) for o in range(56, 88, 4)] == [0] * 8 and u16(f, 46) == 0
    assert not u32(f, 112) >> 10 & 1                         # no RESET_REG_SUP
    assert found[b"DSDT"][1][36:] == b""                     # no \_S5 without a PM block
    assert [e for e in madt_entries(found[b"APIC"][1]) if e[0] == "lapic"] == \
        [("lapic", 0, 0, 1), ("lapic", 1, 1, 1)]
    _, entries = mp_config(mem, mp_search(mem))
    assert [e[3] for e in entries if e[0] == "cpu"] == [0x03, 0x01]   # only the first is the BSP
    assert all(e[1] != 3 for e in entries if e[0] == "io-int")         # no ExtINT pin
    assert phys(mem, tables.mp_floating_addr, 16)[12] == 0            # no IMCR


def test_a_reset_register_elsewhere_is_declared_as_given(mem):
    tables = install_tables(mem, Board(reset=ResetReg(port=0xCF9, value=0x06)))
    f = acpi_tables(mem, tables.rsdp_addr)[b"FACP"][1]
    assert gas(f, 116) == (1, 8, 0, 1, 0xCF9) and f[128] == 0x06


# -- the AML encoder's corner cases ------------------------------------------------------------
def decode_pkg_length(b: bytes) -> tuple[int, int]:
    """(value, bytes used), per the AML spec's PkgLength grammar."""
    extra = b[0] >> 6
    if extra == 0:
        return b[0] & 0x3F, 1
    value = b[0] & 0x0F
    for i in range(extra):
        value |= b[1 + i] << (4 + 8 * i)
    return value, 1 + extra


@pytest.mark.parametrize("body", [0, 1, 62, 63, 64, 4093, 4094, 1 << 20, (1 << 28) - 5])
def test_pkg_length_counts_itself_and_uses_the_fewest_bytes(body):
    enc = aml_pkg_length(body)
    value, used = decode_pkg_length(enc)
    assert (value, used) == (body + len(enc), len(enc))
    assert len(enc) == 1 + (value >= 0x40) + (value >= 1 << 12) + (value >= 1 << 20)


@pytest.mark.parametrize("n, enc", [(0, b"\x00"), (1, b"\x01"), (2, b"\x0a\x02"),
                                    (0xFF, b"\x0a\xff"), (0x100, b"\x0b\x00\x01"),
                                    (0x10000, b"\x0c\x00\x00\x01\x00"),
                                    (1 << 32, b"\x0e" + (1 << 32).to_bytes(8, "little")),
                                    ((1 << 64) - 1, b"\xff")])
def test_integers_use_the_shortest_aml_constant(n, enc):
    assert aml_integer(n) == enc
