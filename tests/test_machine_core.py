"""The machine core, driven by tiny boot-sector programs: interrupt delivery in
real and protected mode, HLT, the memory map, code invalidation, exit counting."""
from __future__ import annotations

import pytest

from hv.bus import BusConflict, MmioBus, PortBus
from hv.memory import GuestMemory, GuestMemoryError, parse_size
from tests.conftest import needs_binutils

pytestmark = needs_binutils

PUTC = """
putc:   push %dx
        mov $0x3f8, %dx
        out %al, %dx
        pop %dx
        ret
"""


@pytest.fixture(params=["c", "python"])
def dispatch(request):
    from hv import fastpath
    if request.param == "c" and not fastpath.c_available():
        pytest.skip("the C fast path was not built (no C compiler at install time)")
    return request.param


def test_memory_sizes_parse_with_suffixes():
    assert parse_size("640K") == 640 * 1024
    assert parse_size("16M") == 16 << 20
    assert parse_size("1G") == 1 << 30
    for bad in ("", "12X", "0", "3T", "1000"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_guest_memory_refuses_ranges_outside_ram():
    mem = GuestMemory(1 << 20)
    with pytest.raises(GuestMemoryError):
        mem.read((1 << 20) - 2, 4)
    with pytest.raises(GuestMemoryError):
        mem.write(-1, b"x")
    mem.close()


def test_overlapping_port_registrations_are_refused():
    from hv.devices.debugcon import DebugConsole, PostCode
    bus = PortBus()
    bus.register(0x80, 1, PostCode())
    with pytest.raises(BusConflict):
        bus.register(0x7F, 2, DebugConsole())


def test_overlapping_mmio_windows_are_refused():
    from hv.devices.debugcon import PostCode
    bus = MmioBus()
    bus.register(0xFEC00000, 0x1000, PostCode())
    with pytest.raises(BusConflict):
        bus.register(0xFEC00800, 0x1000, PostCode())


def test_ports_with_no_device_read_all_ones_and_are_counted():
    bus = PortBus()
    assert bus.read(0x1234, 1) == 0xFF
    assert bus.read(0x1234, 2) == 0xFFFF
    assert bus.read(0x1234, 4) == 0xFFFFFFFF
    assert bus.stats.total("unassigned") == 3


def test_machine_resets_to_f000_fff0_in_real_mode():
    from hv.machine import Machine, MachineConfig
    from unicorn import x86_const as X
    m = Machine(MachineConfig())
    try:
        uc = m.vcpu.uc
        assert uc.reg_read(X.UC_X86_REG_CS) == 0xF000
        assert uc.reg_read(X.UC_X86_REG_EIP) == 0xFFF0
        assert uc.reg_read(X.UC_X86_REG_CR0) & 1 == 0
        assert m.mem.read(0xFFFF0, 1) == b"\xea"     # the ROM's far jump
    finally:
        m.close()


def test_guest_installed_real_mode_vector_is_called_by_int(boot, dispatch):
    m = boot("""
        xor %ax, %ax
        mov %ax, %ds
        movw $handler, 0x60*4
        movw $0, 0x60*4+2
        mov $'a', %al
        int $0x60
        call putc
        cli
        hlt
handler: inc %al            # the vector really ran
        iret
""" + PUTC, dispatch=dispatch)
    assert m.serial_text() == "b"
    assert m.result_.exit_code == 0


def test_timer_interrupts_wake_hlt_through_the_ivt(boot, dispatch):
    m = boot("""
        xor %ax, %ax
        mov %ax, %ds
        movw $tick, 8*4
        movw $0, 8*4+2
        sti
1:      hlt
        cmpw $3, count
        jb 1b
        mov $'T', %al
        call putc
        cli
        hlt
tick:   incw %cs:count
        push %ax
        mov $0x20, %al
        out %al, $0x20
        pop %ax
        iret
count:  .word 0
""" + PUTC, dispatch=dispatch)
    assert m.serial_text() == "T"
    assert m.stats.total("irq-inject") >= 3
    assert m.stats.total("hlt") >= 3


def test_hlt_with_interrupts_disabled_ends_the_run_naming_cs_ip(boot):
    m = boot("""
        cli
        nop
        hlt
""")
    assert "CS:IP=0000:7C03" in m.result_.reason
    assert m.result_.exit_code == 0


PM_GUEST = """
        cli
        xor %ax, %ax
        mov %ax, %ds
        lgdt gdtr
        mov %cr0, %eax
        or $1, %eax
        mov %eax, %cr0
        ljmp $0x08, $pm
        .code32
pm:     mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $0x90000, %esp
        mov $idt, %edi             # 256 gates to 'other', then two real handlers
        mov $256, %ecx
1:      mov $other, %eax
        call setgate
        add $8, %edi
        loop 1b
        mov $idt + 0x30*8, %edi
        mov $soft, %eax
        call setgate
        mov $idt + 0x08*8, %edi    # the BIOS left the PIC master at vector 8
        mov $irq0, %eax
        call setgate
        lidt idtr
        mov $'x', %al
        int $0x30                  # soft interrupt through the IDT
        call putc32
        sti
2:      hlt
        cmpl $2, ticks
        jb 2b
        cli
        mov $'!', %al
        call putc32
        hlt
setgate: mov %ax, (%edi)
        movw $0x08, 2(%edi)
        movw $0x8E00, 4(%edi)      # present, DPL0, 32-bit interrupt gate
        shr $16, %eax
        mov %ax, 6(%edi)
        ret
soft:   inc %al
        iret
irq0:   incl ticks
        push %eax
        mov $0x20, %al
        out %al, $0x20
        pop %eax
        iret
other:  mov $'?', %al
        call putc32
        iret
putc32: push %edx
        mov $0x3f8, %dx
        out %al, %dx
        pop %edx
        ret
ticks:  .long 0
        .p2align 3
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF    # 0x08 flat 32-bit code
        .quad 0x00CF92000000FFFF    # 0x10 flat data
gdtr:   .word gdtr - gdt - 1
        .long gdt
idtr:   .word 256*8 - 1
        .long idt
        .set idt, 0x1000
"""


def test_protected_mode_soft_and_hardware_interrupts_go_through_the_idt(boot, dispatch):
    m = boot(PM_GUEST, dispatch=dispatch)
    assert m.serial_text() == "y!", m.result_.reason
    assert m.stats.total("irq-inject") >= 2


def test_code_written_by_a_device_replaces_code_that_already_ran(boot, tmp_path):
    # Sector 1 holds a routine printing 'A'; sector 2 one printing 'B'. The guest
    # loads sector 1 at 0x8000, runs it, loads sector 2 over it, runs it again.
    from tests.asm import assemble
    routine_a = assemble("mov $'A', %al\n out %al, %dx\n ret", org=0x8000, boot_sector=False)
    routine_b = assemble("mov $'B', %al\n out %al, %dx\n ret", org=0x8000, boot_sector=False)
    m = boot("""
        xor %ax, %ax
        mov %ax, %es
        mov $0x0201, %ax       # read 1 sector
        mov $0x0002, %cx       # cylinder 0, sector 2
        xor %dx, %dx           # drive 0, head 0
        mov $0x8000, %bx
        int $0x13
        mov $0x3f8, %dx
        call 0x8000
        mov $0x0201, %ax
        mov $0x0003, %cx       # sector 3 over the same code
        xor %dx, %dx           # drive 0, head 0
        mov $0x8000, %bx
        int $0x13
        mov $0x3f8, %dx
        call 0x8000
        cli
        hlt
""", routine_a, routine_b)
    assert m.serial_text() == "AB"


def test_guest_self_modifying_code_runs_the_new_bytes(boot):
    m = boot("""
        mov $0x3f8, %dx
        call patchme
        movb $'2', %cs:patchme+1   # rewrite the immediate of the mov below
        call patchme
        cli
        hlt
patchme: mov $'1', %al
        out %al, %dx
        ret
""")
    assert m.serial_text() == "12"


def test_writes_to_rom_are_ignored(boot):
    m = boot("""
        mov $0xF000, %ax
        mov %ax, %es
        mov %es:0x0000, %al
        mov %al, %bl
        notb %es:0x0000
        mov %es:0x0000, %al
        mov $0x3f8, %dx
        cmp %al, %bl
        je 1f
        mov $'W', %al
        out %al, %dx
        jmp 2f
1:      mov $'R', %al
        out %al, %dx
2:      cli
        hlt
""")
    assert m.serial_text() == "R"
    assert m.stats.counts[("mmio", "rom-write")] == 1


def test_memory_with_nothing_behind_it_reads_as_all_ones(boot):
    m = boot("""
        mov $0x9000, %ax           # 0x90000 is beyond 512K of RAM
        mov %ax, %es
        mov %es:0, %al
        mov $0x3f8, %dx
        cmp $0xFF, %al
        jne 1f
        mov $'1', %al
        out %al, %dx
1:      cli
        hlt
""", mem=512 << 10)
    assert m.serial_text() == "1"
    assert m.stats.total("unassigned") >= 1


def test_a20_gate_off_wraps_the_megabyte(boot):
    m = boot("""
        xor %ax, %ax
        mov %ax, %ds
        mov $0xFFFF, %ax
        mov %ax, %es
        movb $0x5A, 0x0500
        mov $0x00, %al              # port 0x92 bit 1 clear: A20 off
        out %al, $0x92
        mov %es:0x0510, %al         # FFFF:0510 = 0x100500 -> wraps to 0x500
        mov $0x3f8, %dx
        out %al, %dx
        mov $0x02, %al              # A20 back on: no more wrap
        out %al, $0x92
        movb $0x33, %es:0x0510
        mov 0x0500, %al
        out %al, %dx
        cli
        hlt
""")
    assert m.serial_text() == "\x5a\x5a"


def test_exits_are_counted_per_kind_and_device(boot):
    m = boot("""
        mov $0x3f8, %dx
        mov $'x', %al
        out %al, %dx
        out %al, %dx
        out %al, $0x80
        cli
        hlt
""")
    assert m.stats.counts[("pio", "com1")] == 2
    assert m.stats.counts[("pio", "post")] == 1
    assert m.stats.counts[("hlt", "-")] == 1
    assert m.stats.counts[("hypercall", "bios:post")] == 1
