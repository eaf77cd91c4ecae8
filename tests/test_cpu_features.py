"""What hv does for the CPU that the engine does not: delivery at any privilege level,
MSRs, CPUID, the TSC, SYSENTER. Each kernel prints its findings on COM1; every test runs
under both dispatchers, so the C path (hv/fastpath/cpu.c) and its Python twin (hv/irq.py,
hv/cpu.py) are held to the same output."""
from __future__ import annotations

import pytest

from hv.bench.guests import ring3_kernel
from hv.machine import Machine, MachineConfig
from tests.pmkernel import INT_GATE0, INT_GATE3, TRAP_GATE3, kernel, write_kernel

DISPATCHERS = ["c", "python"]


@pytest.fixture(params=DISPATCHERS)
def run(request, tmp_path):
    machines = []

    def go(source: str, timeout: float = 30):
        path = write_kernel(tmp_path / f"k{len(machines)}.bin", source)
        m = Machine(MachineConfig(kernel=str(path), kernel_format="flat", dispatch=request.param, timeout=timeout))
        machines.append(m)
        m.result_ = m.run()
        return m
    go.dispatch = request.param
    yield go
    for m in machines:
        m.close()


def test_ring3_system_calls_round_trip_through_a_dpl3_trap_gate(run, tmp_path):
    path = tmp_path / "r3.bin"
    path.write_bytes(ring3_kernel(50))
    m = Machine(MachineConfig(kernel=str(path), kernel_format="flat", dispatch=run.dispatch, timeout=30))
    try:
        result = m.run()
        assert result.exit_code == 0, result.reason
        # '<', then the ring the exit call came from, then the sum of 50 results of 1+2.
        assert m.serial_text() == "<3" + f"{150:08X}"
    finally:
        m.close()


# Paging: 0-4 MiB identity-mapped, user-accessible, except the page at 0x300000, which is
# not present until the #PF handler maps it.
PAGING = """
        mov $0x20000, %edi
        mov $2*1024, %ecx
        xor %eax, %eax
        rep stosl
        movl $0x21007, 0x20000
        mov $0x21000, %edi
        mov $0x007, %eax
        mov $1024, %ecx
1:      stosl
        add $0x1000, %eax
        loop 1b
        movl $0, 0x21000 + 0x300*4
        mov $0x20000, %eax
        mov %eax, %cr3
        mov %cr0, %eax
        or $0x80010000, %eax           # PG and WP
        mov %eax, %cr0
"""


def test_a_ring3_page_fault_has_cr2_and_the_user_write_error_code_and_resumes(run):
    m = run(kernel(PAGING + """
        to_ring3 user
user:   movl $0x1234, 0x300010         # faults: not present, write, user
        mov 0x300010, %eax
        int $0x81                      # back to ring 0 with EAX
""", data="""
pf:     mov %cr2, %eax
        call puthex
        mov $' ', %al
        call putc
        mov (%esp), %eax               # error code
        call puthex
        mov $' ', %al
        call putc
        mov 8(%esp), %eax              # CS pushed: the fault came from ring 3
        and $3, %eax
        call puthex
        mov $' ', %al
        call putc
        movl $0x300007, 0x21000 + 0x300*4
        invlpg 0x300000
        add $4, %esp
        iret
done:   call puthex
        halt
""", handlers={14: "pf", 0x81: ("done", INT_GATE3)}))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == "00300010 00000006 00000003 00001234"


def test_int_through_a_dpl0_gate_from_ring3_is_a_gp_with_the_gate_in_the_error_code(run):
    m = run(kernel("""
        to_ring3 user
user:   int $0x40
""", data="""
gp:     mov (%esp), %eax
        call puthex
        mov 4(%esp), %eax              # EIP: the int instruction itself
        sub $user, %eax
        call puthex
        halt
never:  halt
""", handlers={13: "gp", 0x40: ("never", INT_GATE0)}))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == f"{0x40 * 8 + 2:08X}00000000"


def test_a_fault_while_delivering_a_page_fault_becomes_a_double_fault(run):
    # The #PF gate is not present: #NP (contributory) during #PF delivery -> #DF, error 0.
    m = run(kernel(PAGING + """
        movl $0, 0x8000 + 14*8 + 4     # clear the #PF gate's present bit
        mov 0x300000, %eax
""", data="""
pf:     halt
df:     mov (%esp), %eax
        call puthex
        mov $'D', %al
        call putc
        halt
""", handlers={14: "pf", 8: "df"}))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == "00000000D"


def test_a_fault_that_cannot_be_delivered_at_all_ends_the_run_as_a_triple_fault(run):
    m = run(kernel("""
        lidt empty
        int3
""", data="""
empty:  .word 0
        .long 0
"""))
    assert m.result_.exit_code == 1
    assert m.result_.reason.startswith("triple fault: vector 0x03")


def test_apic_base_msr_reads_enabled_bsp_at_fee00000_and_tsc_is_writable(run):
    m = run(kernel("""
        mov $0x1B, %ecx
        rdmsr
        call puthex
        mov $' ', %al
        call putc
        mov $0x10, %ecx                # TSC: write 5 << 32, read the high half back
        mov $0, %eax
        mov $5, %edx
        wrmsr
        rdmsr
        mov %edx, %eax
        call puthex
        mov $' ', %al
        call putc
        mov $0x174, %ecx               # SYSENTER_CS: the engine's own MSR, passed through
        mov $0x08, %eax
        xor %edx, %edx
        wrmsr
        xor %eax, %eax
        rdmsr
        call puthex
        halt
"""))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == "FEE00900 00000005 00000008"


def test_an_unknown_msr_raises_gp(run):
    if run.dispatch == "python":
        pytest.skip("only the C helpers can raise #GP from inside the engine (hv/cpu.py)")
    m = run(kernel("""
        mov $0x12345, %ecx
        rdmsr
        mov $'N', %al
        call putc
        halt
""", data="""
gp:     mov (%esp), %eax
        call puthex
        halt
""", handlers={13: "gp"}))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == "00000000"


def test_cpuid_offers_apic_and_sep_and_hides_what_hv_does_not_model(run):
    m = run(kernel("""
        mov $1, %eax
        cpuid
        mov %edx, %eax
        and $((1<<9)|(1<<11)|(1<<7)|(1<<12)|(1<<14)), %eax
        call puthex
        mov %ecx, %eax
        and $((1<<31)|(1<<21)|(1<<24)), %eax
        call puthex
        mov $0x40000000, %eax
        cpuid
        mov %ebx, sig
        mov %ecx, sig + 4
        mov %edx, sig + 8
        mov $sig, %esi
        call puts
        halt
""", data="""
sig:    .fill 13, 1, 0
"""))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == f"{(1 << 9) | (1 << 11):08X}{1 << 31:08X}hvhvhvhvhvhv"


def test_sysenter_enters_ring0_at_the_msr_address_and_sysexit_returns_to_ring3(run):
    m = run(kernel("""
        mov $0x174, %ecx               # SYSENTER_CS = 0x08: CS 0x08, SS 0x10, ring 3 0x1B/0x23
        mov $0x08, %eax
        xor %edx, %edx
        wrmsr
        mov $0x175, %ecx
        mov $0x9E000, %eax
        wrmsr
        mov $0x176, %ecx
        mov $kentry, %eax
        wrmsr
        to_ring3 user
user:   mov $back, %edx                # sysexit: EIP = EDX, ESP = ECX
        mov %esp, %ecx
        sysenter
back:   mov %cs, %eax
        int $0x81
""", data="""
kentry: mov %cs, %eax
        call puthex
        mov %esp, %eax
        call puthex
        sysexit
done:   call puthex
        halt
""", handlers={0x81: ("done", INT_GATE3)}))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == "000000080009E000" + "0000001B"


def test_a_trap_gate_keeps_interrupts_enabled_and_an_interrupt_gate_clears_if(run):
    m = run(kernel("""
        sti
        int $0x30
        int $0x31
        halt
""", data="""
trap:   pushf
        pop %eax
        shr $9, %eax
        and $1, %eax
        call puthex
        iret
intr:   pushf
        pop %eax
        shr $9, %eax
        and $1, %eax
        call puthex
        iret
""", handlers={0x30: ("trap", TRAP_GATE3 & ~0x6000), 0x31: ("intr", INT_GATE0)}))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == "0000000100000000"


def test_ring3_port_io_needs_iopl_or_the_tss_bitmap_and_a_denied_access_never_reaches_a_device(run):
    """Ring 3, IOPL 0: the TSS I/O bitmap (at TSS+0x68, 8 KiB, in the free RAM after the
    kernel) allows COM1's data port only.
    An OUT to it prints; an OUT to 0x3F9 and an IN from 0x80 are #GP(0) at the instruction,
    and the denied OUT never reaches the UART (its 'X' must not appear)."""
    if run.dispatch == "python" and not __import__("hv.fastpath", fromlist=["x"]).c_available():
        pytest.skip("the I/O permission check is C code in front of the engine's port helpers")
    m = run(kernel("""
        movw $0x68, tss + 0x66          # the bitmap starts right after the TSS
        mov $tss + 0x68, %edi
        mov $0x2000 / 4, %ecx
        mov $0xFFFFFFFF, %eax
        rep stosl
        mov $0x3F8, %eax                # allow port 0x3F8 (and nothing else)
        btr %eax, tss + 0x68
        movl $0x68 + 0x2000, %eax       # TSS limit covers the bitmap: rewrite the descriptor
        mov %ax, gdt + 0x28
        movb $0x89, gdt + 0x28 + 5      # available TSS again (ltr marked it busy)
        mov $0x28, %ax
        ltr %ax
        to_ring3 user
user:   mov $0x3f8, %dx
        mov $'A', %al
        out %al, %dx                    # allowed by the bitmap
        mov $0x3f9, %dx
        mov $'X', %al
out1:   out %al, %dx                    # denied
        in $0x80, %al
        int $0x81
""", data="""
gp:     mov (%esp), %eax                # error code 0
        call puthex
        mov 4(%esp), %eax               # EIP: the OUT itself
        sub $out1, %eax
        call puthex
        halt
done:   halt
""", handlers={13: "gp", 0x81: ("done", INT_GATE3)}))
    assert m.result_.exit_code == 0, m.result_.reason
    assert m.serial_text() == "A" + "00000000" + "00000000"
