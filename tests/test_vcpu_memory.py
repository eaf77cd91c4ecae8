"""The physical address map as the vCPU builds it: holes are open bus, mapped once.

A guest can probe every page of the 4 GiB space; each probe must read all ones, be
counted, and cost the host nothing that grows with the number of pages touched."""
from __future__ import annotations

import pytest

from hv import boot
from hv.machine import Machine, MachineConfig
from tests.asm import assemble

DISPATCHERS = ["c", "python"]


def flat_kernel(tmp_path, source: str):
    path = tmp_path / "k.bin"
    path.write_bytes(assemble(".code32\n" + source, org=boot.FLAT_LOAD_ADDR, boot_sector=False))
    return path


def run(tmp_path, source: str, **kw) -> Machine:
    m = Machine(MachineConfig(kernel=str(flat_kernel(tmp_path, source)), kernel_format="flat", timeout=60, **kw))
    m.regions_before = len(list(m.vcpu.uc.mem_regions()))
    m.result_ = m.run()
    return m


# Read one dword from each of PAGES pages spread over 0x40000000-0xF0000000, summing the
# values; print 'Y' on COM1 if every read gave all ones, then hlt.
PAGES = 4096
SCAN = f"""
        mov $0x40000000, %esi
        mov ${PAGES}, %ecx
        xor %ebx, %ebx
1:      mov (%esi), %eax
        not %eax
        or %eax, %ebx
        movl $0x12345678, (%esi)     # a write to nothing is dropped
        add $0x2b000, %esi
        loop 1b
        mov $'N', %al
        test %ebx, %ebx
        jnz 2f
        mov $'Y', %al
2:      mov $0x3f8, %dx
        out %al, %dx
        cli
        hlt
"""


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_probing_thousands_of_unmapped_pages_maps_nothing_new_and_reads_all_ones(tmp_path, dispatch):
    m = run(tmp_path, SCAN, dispatch=dispatch)
    try:
        assert m.result_.exit_code == 0, m.result_.reason
        assert m.serial_text() == "Y"
        # Two accesses per page, each counted; no region was added to the engine's map.
        assert m.stats.counts[("unassigned", "mmio")] == 2 * PAGES
        assert len(list(m.vcpu.uc.mem_regions())) == m.regions_before
    finally:
        m.close()


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_the_whole_space_below_4_gib_is_decoded_by_something(tmp_path, dispatch):
    m = Machine(MachineConfig(dispatch=dispatch, mem_size=640 << 10))
    try:
        regions = sorted((lo, hi + 1) for lo, hi, _ in m.vcpu.uc.mem_regions())
        at = 0
        for lo, hi in regions:
            assert lo == at, f"a gap at {at:#x}-{lo:#x}"
            at = hi
        assert at == 1 << 32
    finally:
        m.close()


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_a20_off_on_a_machine_without_extended_memory_wraps_then_reads_open_bus(boot, dispatch):
    m = boot("""
        xor %ax, %ax
        mov %ax, %ds
        mov $0xFFFF, %ax
        mov %ax, %es
        movb $0x5A, 0x0500
        mov $0x00, %al              # A20 off: FFFF:0510 = 0x100500 wraps to 0x500
        out %al, $0x92
        mov %es:0x0510, %al
        mov $0x3f8, %dx
        out %al, %dx
        mov $0x02, %al              # A20 on: 0x100500 is nothing on a 640K machine
        out %al, $0x92
        mov %es:0x0510, %al
        out %al, %dx
        mov $0x00, %al              # and off and on once more: the same regions come back
        out %al, $0x92
        mov $0x02, %al
        out %al, $0x92
        mov %es:0x0510, %al
        out %al, %dx
        cli
        hlt
""", mem=640 << 10, dispatch=dispatch)
    assert m.serial_text() == "\x5a\xff\xff"
