"""Direct kernel boot (hv/boot.py): loading, the entry state, the boot-information
block, the direct-boot hypercalls and the one-line errors for bad kernels."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unicorn import x86_const as X

from hv.guests import IMAGES_DIR
from hv.devices.bios_common import e820_map
from hv import boot
from hv.boot import (BOOT_MAGIC, BOOTINFO_ADDR, BOOTINFO_MAGIC, GDT_ADDR, HEADER, HC_EFAULT,
                     KernelImageError, load_kernel)
from hv.machine import DriveSpec, Machine, MachineConfig
from tests.asm import assemble
from tests.conftest import needs_binutils

IMAGES = IMAGES_DIR
HELLO_ELF, HELLO_BIN = IMAGES / "hellokernel.elf", IMAGES / "hellokernel.bin"
HALT_ELF = IMAGES / "haltkernel.elf"
MiB = 1 << 20


@pytest.fixture
def run_kernel():
    machines = []

    def run(kernel, cmdline: str = "", machine_class=Machine, **kw):
        if Path(kernel).read_bytes()[:4] != boot.ELF_MAGIC:     # the flat test kernels
            kw.setdefault("kernel_format", "flat")
        m = machine_class(MachineConfig(kernel=str(kernel), cmdline=cmdline, timeout=10, **kw))
        machines.append(m)
        m.result_ = m.run()
        return m
    yield run
    for m in machines:
        m.close()


def flat_kernel(tmp_path, source: str, name: str = "k.bin") -> Path:
    """32-bit GNU as source -> flat binary linked at 1 MiB."""
    code = assemble(".code32\n" + source, org=boot.FLAT_LOAD_ADDR, boot_sector=False)
    path = tmp_path / name
    path.write_bytes(code)
    return path


def entry_fields(serial: str) -> dict[str, str]:
    line = next(l for l in serial.splitlines() if l.startswith("entry:"))
    return dict(kv.split("=") for kv in line.split()[1:])


# -- booting the test kernels ---------------------------------------------------------------
def test_hellokernel_elf_boots_and_powers_off_with_code_0(run_kernel):
    m = run_kernel(HELLO_ELF)
    assert (m.result_.exit_code, m.result_.reason) == (0, "guest powered off with code 0")
    assert "Hello from a direct-boot kernel\n" in m.serial_text()


def test_hellokernel_flat_binary_boots_the_same_way(run_kernel):
    m = run_kernel(HELLO_BIN, cmdline="flat")
    assert m.result_.exit_code == 0
    assert 'cmdline: "flat"' in m.serial_text()


def test_kernel_is_entered_in_flat_protected_mode_with_interrupts_off(run_kernel):
    fields = entry_fields(run_kernel(HELLO_ELF).serial_text())
    assert fields == {"eax": f"{BOOT_MAGIC:08x}", "ebx": f"{BOOTINFO_ADDR:08x}", "cs": "0008",
                      "ds": "0010", "ss": "0010", "esp": "0009f000", "cr0.pe": "1",
                      "cr0.pg": "0", "eflags.if": "0"}


def test_command_line_arrives_in_the_kernel(run_kernel):
    m = run_kernel(HELLO_ELF, cmdline="console=ttyS0 root=/dev/vda rw")
    assert 'cmdline: "console=ttyS0 root=/dev/vda rw"' in m.serial_text()


def test_empty_command_line_arrives_empty(run_kernel):
    assert 'cmdline: ""' in run_kernel(HELLO_ELF).serial_text()


def test_kernel_counts_the_e820_entries_of_the_board(run_kernel):
    m = run_kernel(HELLO_ELF, mem_size=32 * MiB)
    ram = sum(n for _, n, t in e820_map(32 * MiB) if t == 1) // 1024
    assert f"e820: {len(e820_map(32 * MiB))} entries, {ram} KiB RAM" in m.serial_text()


def test_com1_is_listed_as_a_legacy_device(run_kernel):
    assert "device: uart16550 id=0 base=000003f8 irq=4" in run_kernel(HELLO_ELF).serial_text()


def test_output_arrives_through_both_the_hypercall_and_com1_ports(run_kernel):
    m = run_kernel(HELLO_ELF)
    assert "com1: Hello from a direct-boot kernel\r\n" in m.serial_text()
    assert m.stats.total("pio") >= len("com1: Hello from a direct-boot kernel\r\n")
    assert m.stats.total("hypercall") > 0


def test_kernel_sees_monotonic_time_and_zeroed_bss(run_kernel):
    text = run_kernel(HELLO_ELF).serial_text()
    assert "time: monotonic" in text and "bss: zero" in text


def test_haltkernel_ends_the_run_at_hlt_with_interrupts_off(run_kernel):
    m = run_kernel(HALT_ELF)
    assert m.result_.exit_code == 0
    assert m.result_.reason.startswith("guest halted with interrupts disabled at CS:IP=0008:")
    assert "halting with interrupts off" in m.serial_text()


def test_virtio_slots_are_listed_with_base_irq_and_device_id(run_kernel, tmp_path):
    from hv import guests
    from hv.machine import DriveSpec
    disk = tmp_path / "vda.img"
    guests.scratch_disk(disk)
    text = run_kernel(HELLO_ELF, vda=DriveSpec(str(disk))).serial_text()
    # blk (slot 0), console (slot 2) and balloon (slot 3); the kernel reads each
    # slot's MagicValue ("virt") through the listed base.
    assert "virtio: 3 devices" in text
    assert "device: virtio-mmio id=2 base=000d0000 irq=10 magic=74726976" in text
    assert "device: virtio-mmio id=3 base=000d2000 irq=5 magic=74726976" in text


# -- the host side of the entry state and the block --------------------------------------------
def test_host_sets_gdtr_selectors_and_cr0_before_the_first_instruction():
    m = Machine(MachineConfig(kernel=str(HELLO_ELF)))
    try:
        uc = m.vcpu.uc
        _, base, limit, _ = uc.reg_read(X.UC_X86_REG_GDTR)
        assert (base, limit) == (GDT_ADDR, len(boot.GDT) - 1)
        assert m.mem.read(GDT_ADDR, len(boot.GDT)) == boot.GDT
        assert uc.reg_read(X.UC_X86_REG_CR0) == boot.CR0_PE | boot.CR0_ET
        assert uc.reg_read(X.UC_X86_REG_EFLAGS) == 0x2
        assert uc.reg_read(X.UC_X86_REG_EIP) == 0x100000
        assert m.vcpu.seg_base(1) == 0      # CS came from the GDT: flat
    finally:
        m.close()


def test_boot_information_block_header_describes_its_tables():
    m = Machine(MachineConfig(kernel=str(HELLO_ELF), cmdline="abc", mem_size=8 * MiB))
    try:
        h = HEADER.unpack(m.mem.read(BOOTINFO_ADDR, HEADER.size))
        (magic, version, hsize, size, abi, mem_size, cl_addr, cl_len, e_addr, e_count, e_size,
         d_addr, d_count, d_size, k_start, k_end, stack) = h
        assert (magic, version, hsize, abi, mem_size) == (BOOTINFO_MAGIC, 1, 64, 1, 8 * MiB)
        assert m.mem.read(cl_addr, cl_len + 1) == b"abc\0"
        assert size == hsize + e_count * e_size + d_count * d_size
        entries = [struct.unpack_from("<QQI", m.mem.read(e_addr + i * e_size, e_size))
                   for i in range(e_count)]
        assert entries == e820_map(8 * MiB)
        assert (k_start, stack) == (0x100000, 0x9F000)
    finally:
        m.close()


def test_host_zeroes_elf_bss_even_over_dirty_memory():
    m = Machine(MachineConfig(kernel=str(HELLO_ELF)))
    try:
        img = m.firmware.image
        seg = img.segments[0]
        assert seg.memsz > len(seg.data)
        m.mem.write(seg.paddr, b"\xff" * seg.memsz)
        m.firmware.load(m)
        assert m.mem.read(seg.paddr + len(seg.data), seg.memsz - len(seg.data)) == \
            bytes(seg.memsz - len(seg.data))
    finally:
        m.close()


def test_reset_reloads_a_pristine_kernel_and_reenters_it(run_kernel):
    m = run_kernel(HELLO_BIN)
    data = HELLO_BIN.read_bytes()
    assert m.mem.read(0x100000, len(data)) != data      # the kernel wrote its .data
    m.reset()
    assert m.mem.read(0x100000, len(data)) == data
    assert m.vcpu.uc.reg_read(X.UC_X86_REG_EIP) == 0x100000
    assert m.vcpu.regs.eax == BOOT_MAGIC


# -- hypercalls ------------------------------------------------------------------------------
def test_poweroff_exit_code_becomes_the_run_exit_code(tmp_path, run_kernel):
    k = flat_kernel(tmp_path, "mov $7, %ebx\n vmcall\n .word 0x0003\n")
    m = run_kernel(k)
    assert (m.result_.exit_code, m.result_.reason) == (7, "guest powered off with code 7")


def test_console_write_outside_guest_ram_returns_efault(tmp_path, run_kernel):
    k = flat_kernel(tmp_path, """
        mov $0xFFFFFF00, %ebx
        mov $16, %ecx
        vmcall
        .word 0x0002
        mov %eax, %ebx
        vmcall
        .word 0x0003
    """)
    m = run_kernel(k)
    assert m.result_.reason == f"guest powered off with code {HC_EFAULT}"
    assert m.serial_log == b""


def test_console_write_returns_the_bytes_written(tmp_path, run_kernel):
    k = flat_kernel(tmp_path, """
        mov $msg, %ebx
        mov $3, %ecx
        vmcall
        .word 0x0002
        mov %eax, %ebx
        vmcall
        .word 0x0003
    msg: .ascii "hv!"
    """)
    m = run_kernel(k)
    assert (m.serial_log, m.result_.exit_code) == (b"hv!", 3)


def test_time_hypercall_returns_the_virtual_clock_in_edx_eax(tmp_path, run_kernel):
    k = flat_kernel(tmp_path, """
        vmcall
        .word 0x0004
        hlt
    """)
    m = run_kernel(k)
    ns = (m.vcpu.regs.edx << 32) | m.vcpu.regs.eax
    assert 0 <= ns <= m.clock.now()


def test_unknown_direct_boot_hypercall_ends_the_run_with_an_error(tmp_path, run_kernel):
    m = run_kernel(flat_kernel(tmp_path, "vmcall\n .word 0x00FE\n"))
    assert m.result_.exit_code == 1 and "unknown hypercall 0xfe" in m.result_.reason


class _Ctx:
    def __init__(self, machine, regs):
        self.machine, self.mem, self.regs = machine, machine.mem, regs


class _Regs:
    pass


@pytest.fixture(scope="module")
def shared_machine():
    m = Machine(MachineConfig(kernel=str(HELLO_ELF), serial=lambda b: None))
    yield m
    m.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=st.sampled_from(sorted(boot.HYPERCALLS)),
       ebx=st.integers(0, 0xFFFFFFFF) | st.integers(0, 0x20000),
       ecx=st.integers(0, 0xFFFFFFFF) | st.integers(0, 0x20000))
def test_direct_boot_hypercalls_answer_as_documented_for_any_register_values(shared_machine, number,
                                                                            ebx, ecx):
    m = shared_machine
    regs = _Regs()
    regs.ebx, regs.ecx, regs.eax, regs.edx = ebx, ecx, 0, 0
    written = []
    sink, m.uart.sink = m.uart.sink, written.append
    before = m.clock.now()
    try:
        boot.HYPERCALLS[number][1](_Ctx(m, regs))
    finally:
        m.uart.sink = sink
    name = boot.HYPERCALLS[number][0]
    assert 0 <= regs.eax <= 0xFFFFFFFF and 0 <= regs.edx <= 0xFFFFFFFF
    if number == boot.HC_CONSOLE_WRITE:
        n = min(ecx, boot.CONSOLE_CHUNK)                 # bounded: never more than 64 KiB a call
        if ebx + n <= m.mem.span:
            assert regs.eax == n and b"".join(written) == m.mem.read(ebx, n)
        else:
            assert regs.eax == HC_EFAULT and written == []
    elif number == boot.HC_POWEROFF:
        assert m.result.exit_code == ebx & 0xFF, name
    elif number == boot.HC_TIME:
        assert before <= regs.edx << 32 | regs.eax <= m.clock.now()
    m.result = None
    m.stop_requested = False


# -- bad kernels: one-line errors ---------------------------------------------------------
def _elf(machine=3, cls=1, etype=2, entry=0x100000, paddr=0x100000, filesz=4, memsz=4,
         phnum=1) -> bytes:
    ident = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9)
    hdr = boot.ELF_HEADER.pack(ident, etype, machine, 1, entry, 52, 0, 0, 52, 32, phnum, 40, 0, 0)
    ph = boot.PHDR.pack(1, 84, paddr, paddr, filesz, memsz, 5, 0x1000) * phnum
    return hdr + ph + b"\xf4" * filesz


BAD_KERNELS = {
    "empty": (b"", "the file is empty"),
    "elf64": (_elf(cls=2), "not an ELF32 i386"),
    "x86_64": (_elf(machine=62), "not an ELF32 i386"),
    "shared-object": (_elf(etype=3), "not an executable"),
    "no-phdrs": (_elf(phnum=0), "program headers"),
    "truncated": (_elf()[:60], "program headers"),
    "beyond-ram": (_elf(paddr=0x2000000, entry=0x2000000), "does not fit in guest RAM"),
    "in-rom-hole": (_elf(paddr=0xF0000, entry=0xF0000), "does not fit in guest RAM"),
    "over-boot-info": (_elf(paddr=0x2000, entry=0x2000), "overlaps the boot structures"),
    "over-stack": (_elf(paddr=0x90000, entry=0x90000), "overlaps the entry stack"),
    "entry-outside": (_elf(entry=0x200000), "entry point 0x200000 is outside"),
    "bss-smaller": (_elf(filesz=8, memsz=4), "truncated or larger in the file"),
    "flat-too-big": (b"\x90" * (16 * MiB), "does not fit in guest RAM"),
}
FLAT_CASES = {"flat-too-big"}


@pytest.mark.parametrize("case", sorted(BAD_KERNELS))
def test_bad_kernel_gets_a_one_line_error_naming_the_file(tmp_path, case):
    data, why = BAD_KERNELS[case]
    path = tmp_path / f"{case}.bin"
    path.write_bytes(data)
    with pytest.raises(ValueError) as err:
        Machine(MachineConfig(kernel=str(path), kernel_format="flat" if case in FLAT_CASES
                              else "auto"))
    msg = str(err.value)
    assert isinstance(err.value, KernelImageError)
    assert why in msg and str(path) in msg and "\n" not in msg


def test_missing_kernel_file_gets_a_one_line_error(tmp_path):
    with pytest.raises(KernelImageError, match=r"cannot read: No such file"):
        load_kernel(tmp_path / "nope", 16 * MiB)


def test_a_directory_is_not_a_kernel(tmp_path):
    with pytest.raises(KernelImageError, match="cannot read"):
        load_kernel(tmp_path, 16 * MiB)


def test_kernel_that_fits_only_in_more_memory_is_refused_in_a_small_machine(tmp_path):
    path = tmp_path / "k.bin"
    path.write_bytes(b"\xf4")
    with pytest.raises(KernelImageError, match="does not fit"):
        load_kernel(path, 640 * 1024, "flat")


def test_a_file_with_no_kernel_header_is_refused_unless_the_format_is_flat(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just some text, not code\n")
    with pytest.raises(KernelImageError, match="neither an ELF nor a bzImage.*--kernel-format flat"):
        load_kernel(path, 16 * MiB)
    assert load_kernel(path, 16 * MiB, "flat").kind == "flat"


def test_command_line_with_a_nul_is_refused():
    with pytest.raises(KernelImageError, match="NUL"):
        Machine(MachineConfig(kernel=str(HELLO_ELF), cmdline="a\0b"))


def test_overlong_command_line_is_refused():
    with pytest.raises(KernelImageError, match="command line is 5000 bytes"):
        Machine(MachineConfig(kernel=str(HELLO_ELF), cmdline="x" * 5000))


def test_higher_half_entry_address_is_translated_to_its_physical_address(tmp_path):
    ident = b"\x7fELF" + bytes([1, 1, 1]) + bytes(9)
    hdr = boot.ELF_HEADER.pack(ident, 2, 3, 1, 0xC0100010, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    ph = boot.PHDR.pack(1, 84, 0xC0100000, 0x100000, 32, 32, 5, 0x1000)
    path = tmp_path / "hh.elf"
    path.write_bytes(hdr + ph + bytes(32))
    assert load_kernel(path, 16 * MiB).entry == 0x100010


# -- cost: exits to the first kernel instruction -----------------------------------------------
def test_direct_boot_reaches_the_kernel_with_far_fewer_exits_than_a_bios_boot(tmp_path, run_kernel):
    from hv.bench.guests import FIRST_INSTRUCTION
    k = flat_kernel(tmp_path, "hlt\n")
    direct = run_kernel(k)
    assert direct.result_.reason == "guest halted with interrupts disabled at CS:IP=0008:100001"
    img = tmp_path / "boot.img"
    img.write_bytes(FIRST_INSTRUCTION)
    exits = {}
    for style in ("synthetic", "emulated"):
        bios = Machine(MachineConfig(fda=DriveSpec(str(img)), bios=style, timeout=10))
        try:
            r = bios.run()
            assert "0000:7C02" in r.reason
            exits[style] = bios.stats.total()
        finally:
            bios.close()
    # The synthetic BIOS already does POST in a couple of hypercalls; the emulated
    # one programs every device through its ports.
    assert direct.stats.total() < exits["synthetic"]
    assert direct.stats.total() * 100 < exits["emulated"]


# -- the build ---------------------------------------------------------------------------------
@needs_binutils
def test_rebuilding_the_kernels_gives_the_committed_files_byte_for_byte(tmp_path):
    from hv.guests import build
    for target in build.KERNEL_TARGETS:
        for path in build.build_kernel(target, tmp_path):
            assert path.read_bytes() == (IMAGES / path.name).read_bytes(), path.name


def test_a_fault_before_the_kernel_loads_an_idt_ends_the_run_with_a_clear_error(tmp_path, run_kernel):
    m = run_kernel(flat_kernel(tmp_path, "ud2\n"))
    assert m.result_.exit_code == 1
    # No IDT: #UD cannot be delivered, nor the #GP and #DF that follow: the CPU shuts down.
    assert "triple fault" in m.result_.reason and "IDT limit 0x0" in m.result_.reason
    assert "0008:100000" in m.result_.reason
