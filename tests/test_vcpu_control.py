"""The vCPU stays exact and in control (issue: lost kicks, CR2, linear addresses).

* Whatever the guest does, a kick, a timer deadline or --timeout ends the slice soon
  after it is due; a kick that gets lost is sent again by the ticker's watchdog and
  counted, never a hang.
* CR2 and the pending-exception state survive every host action (slice starts, code
  invalidation by host writes, register reads) in a paged guest.
* Every port exit is traced with the instruction that made it.
"""
from __future__ import annotations

import random
import threading
import time

import pytest

from unicorn import x86_const as X

from hv import boot
from hv.machine import Machine, MachineConfig
from tests.asm import assemble

DISPATCHERS = ["c", "python"]
MS = 1_000_000


def flat_kernel(tmp_path, source: str, name: str = "k.bin"):
    path = tmp_path / name
    path.write_bytes(assemble(".code32\n" + source, org=boot.FLAT_LOAD_ADDR, boot_sector=False))
    return path


# A protected-mode kernel with an IDT at 0x8000 whose vector-0x20 handler counts PIT
# ticks (IRQ 0 through the 8259 at vector 0x20) and sends EOI.
IDT_AND_PIC = """
        mov $0x8000, %edi              # the IDT: 256 empty gates, then ours
        mov $512, %ecx
        xor %eax, %eax
        rep stosl
        mov $timer, %eax
        mov %ax, 0x8000 + 0x20*8
        movw $0x08, 0x8000 + 0x20*8 + 2
        movw $0x8E00, 0x8000 + 0x20*8 + 4
        shr $16, %eax
        mov %ax, 0x8000 + 0x20*8 + 6
        lidt idtr
        mov $0x11, %al                 # 8259: ICW1..ICW4, vectors 0x20/0x28, all but IRQ0 masked
        out %al, $0x20
        out %al, $0xA0
        mov $0x20, %al
        out %al, $0x21
        mov $0x28, %al
        out %al, $0xA1
        mov $0x04, %al
        out %al, $0x21
        mov $0x02, %al
        out %al, $0xA1
        mov $0x01, %al
        out %al, $0x21
        out %al, $0xA1
        mov $0xFE, %al
        out %al, $0x21
        mov $0xFF, %al
        out %al, $0xA1
        mov $0x34, %al                 # PIT channel 0, mode 2, period 1193 (~1 kHz)
        out %al, $0x43
        mov $1193 & 0xFF, %al
        out %al, $0x40
        mov $1193 >> 8, %al
        out %al, $0x40
"""
IDT_DATA = """
timer:  incl ticks
        push %eax
        mov $0x20, %al
        out %al, $0x20
        pop %eax
        iret
        .balign 4
ticks:  .long 0
idtr:   .word 256*8 - 1
        .long 0x8000
"""

# Until TICKS timer interrupts have come: a busy loop of random length, an I/O exit,
# and now and then an `sti; hlt` -- every way a slice can end, in a random mix.
STRESS = IDT_AND_PIC + """
        mov $0x12345678, %esi          # xorshift state
        sti
1:      mov %esi, %eax
        shl $13, %eax
        xor %eax, %esi
        mov %esi, %eax
        shr $17, %eax
        xor %eax, %esi
        mov %esi, %eax
        shl $5, %eax
        xor %eax, %esi
        mov %esi, %ecx
        and $0x3FFF, %ecx
        or $1, %ecx                    # never 0: dec would wrap to 4 billion
2:      dec %ecx                       # busy: no exits at all
        jnz 2b
        out %al, $0x80                 # an I/O exit
        test $0x700, %esi
        jnz 3f
        hlt                            # idle until the next tick
3:      cmpl $TICKS, ticks
        jb 1b
        cli
        mov $'D', %al
        mov $0x3f8, %dx
        out %al, %dx
        hlt
""" + IDT_DATA


def _racing_kicks(m: Machine, stop: threading.Event) -> threading.Thread:
    """Kicks from another thread at random moments, as frames and doorbells send them."""
    def run():
        rng = random.Random(7)
        while not stop.is_set():
            m.vcpu.kick()
            time.sleep(rng.random() * 0.002)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# The 10 ms bound is issue 15's, "on an idle host": a busy host can deschedule the vCPU
# thread past any bound, so a run over it is tried again (up to three runs; the best one must
# meet it). A lost kick is no such noise: it overruns by seconds, in every run, and each run
# must stay under LOST_KICK.
ATTEMPTS = 3
LOST_KICK = 1000 * MS


def _stress_run(tmp_path, dispatch: str, ticks: int) -> tuple[int, int]:
    m = Machine(MachineConfig(kernel_format="flat", kernel=str(flat_kernel(tmp_path, STRESS.replace("TICKS", str(ticks)))),
                              dispatch=dispatch, timeout=120))
    stop = threading.Event()
    kicker = _racing_kicks(m, stop)
    try:
        result = m.run()
        stop.set()
        kicker.join()
        assert result.exit_code == 0, result.reason
        assert m.serial_text() == "D"
        counts = m.stats.counts
        slices = counts[("timer", "-")] + counts[("hlt", "-")] + m.stats.total("irq-inject")
        assert slices > ticks
        assert m.stats.total("irq-inject") >= ticks
        assert m.vcpu.max_overrun_ns < LOST_KICK, f"a slice ran {m.vcpu.max_overrun_ns / MS:.1f} ms past its deadline"
        return m.vcpu.max_overrun_ns, m.stats.total("watchdog")
    finally:
        stop.set()
        m.close()


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_no_slice_overruns_its_deadline_under_racing_kicks_irqs_hlt_and_io(tmp_path, dispatch):
    runs = []
    for _ in range(ATTEMPTS):
        overrun, missed = _stress_run(tmp_path, dispatch, ticks=3000)
        runs.append((overrun / MS, missed))
        if overrun <= 10 * MS and missed == 0:
            return
    pytest.fail(f"every run overran its deadline by more than 10 ms or missed one "
                f"(ms past the deadline, missed deadlines): {runs}")


SPIN = """
        cli
1:      inc %eax
        jmp 1b
"""


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_the_ticker_sends_an_unanswered_kick_again_every_10_ms_until_the_host_answers(dispatch):
    from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
    from hv import fastpath
    fast = fastpath.load(Uc(UC_ARCH_X86, UC_MODE_32), dispatch)
    try:
        fast.set_deadline(time.monotonic_ns())         # due now; nobody runs a block hook
        for _ in range(3):                              # swallow the kick three times over
            deadline = time.monotonic() + 1
            while not fast.kick and time.monotonic() < deadline:
                time.sleep(0.001)
            assert fast.kick
            fast.kick = 0
        assert fast.missed >= 2
        fast.ack()                                      # the host answers: no more kicks
        time.sleep(0.05)
        missed = fast.missed
        time.sleep(0.05)
        assert fast.missed == missed and not fast.kick
    finally:
        fast.close()


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_a_kick_the_watchdog_had_to_resend_is_logged_and_counted_by_the_loop(tmp_path, dispatch):
    """The ticker's watchdog (tested above) counts each kick it had to send again; the vCPU
    loop turns a new count into a warning and a `watchdog` exit. Simulate three."""
    warnings = []
    m = Machine(MachineConfig(kernel_format="flat", kernel=str(flat_kernel(tmp_path, SPIN)), dispatch=dispatch,
                              timeout=0.2, log=warnings.append))
    fast = m.vcpu.fast

    def missed_three(now: int) -> None:
        if dispatch == "c":
            fast.ctl.missed += 3
        else:
            fast.missed += 3
    m.clock.after(50 * MS, missed_three)
    try:
        result = m.run()
        assert result.exit_code == 124
        # (A loaded host can add real ones: the watchdog counts any kick left unanswered.)
        assert m.stats.counts[("watchdog", "missed deadline")] >= 3
        assert any("watchdog" in w for w in warnings)
    finally:
        m.close()


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_timeout_ends_a_guest_that_spins_with_interrupts_off(tmp_path, dispatch):
    overruns = []
    for _ in range(ATTEMPTS):                 # as above: the best of three meets 10 ms
        m = Machine(MachineConfig(kernel_format="flat", kernel=str(flat_kernel(tmp_path, SPIN)),
                                  dispatch=dispatch, timeout=0.3))
        try:
            result = m.run()
            assert result.exit_code == 124
            assert m.vcpu.max_overrun_ns < LOST_KICK
            overruns.append(m.vcpu.max_overrun_ns / MS)
        finally:
            m.close()
        if overruns[-1] <= 10:
            return
    pytest.fail(f"the timeout's slice overran by more than 10 ms in every run: {overruns} ms")


# Paging on: 0-4 MiB identity-mapped with 4 KiB pages, and a 256-page window at 4 MiB
# whose PTEs start not present. Each access to the window faults; the #PF handler checks
# CR2 and the error code against what the faulting code expected, maps the page and
# returns; the code then unmaps it again. After FAULTS faults: 'P' and the number of
# mismatches (a byte) on COM1.
PAGED = """
        mov $0x20000, %edi             # page directory at 0x20000, tables at 0x21000/0x22000
        mov $3*1024, %ecx
        xor %eax, %eax
        rep stosl
        movl $0x21003, 0x20000
        movl $0x22003, 0x20004
        mov $0x21000, %edi             # identity: 1024 pages, present + writable
        mov $0x003, %eax
        mov $1024, %ecx
1:      stosl
        add $0x1000, %eax
        loop 1b
        mov $0x8000, %edi              # IDT with a #PF gate
        mov $512, %ecx
        xor %eax, %eax
        rep stosl
        mov $pf, %eax
        mov %ax, 0x8000 + 14*8
        movw $0x08, 0x8000 + 14*8 + 2
        movw $0x8E00, 0x8000 + 14*8 + 4
        shr $16, %eax
        mov %ax, 0x8000 + 14*8 + 6
        lidt idtr
        mov $0x20000, %eax
        mov %eax, %cr3
        mov %cr0, %eax
        or $0x80000000, %eax
        mov %eax, %cr0
        jmp 2f
2:      xor %ebx, %ebx                 # fault number
3:      mov %ebx, %eax                 # address: window page (n % 256), offset (n * 12) % 4096
        and $0xFF, %eax
        shl $12, %eax
        mov %ebx, %ecx
        imul $12, %ecx
        and $0xFFC, %ecx
        add %ecx, %eax
        add $0x400000, %eax
        mov %eax, expect_cr2
        mov %ebx, %ecx                 # odd faults write (error code 2), even ones read (0)
        and $1, %ecx
        add %ecx, %ecx
        mov %ecx, expect_err
        test $1, %ebx
        jz 4f
        movl $0xA5A5A5A5, (%eax)
        jmp 5f
4:      mov (%eax), %ecx
5:      mov %eax, %ecx                 # unmap the page again
        shr $12, %ecx
        and $0xFF, %ecx
        movl $0, 0x22000(,%ecx,4)
        invlpg (%eax)
        inc %ebx
        cmp $FAULTS, %ebx
        jb 3b
        mov $0x3f8, %dx
        mov $'P', %al
        out %al, %dx
        mov bad, %al
        out %al, %dx
        cli
        hlt

pf:     push %eax
        push %ecx
        mov %cr2, %eax
        cmp expect_cr2, %eax
        je 1f
        incb bad
1:      mov 8(%esp), %ecx              # the error code, under the two pushes
        cmp expect_err, %ecx
        je 2f
        incb bad
2:      shr $12, %eax                  # map the faulting page
        and $0xFF, %eax
        shl $12, %eax
        or $0x400003, %eax
        mov %eax, %ecx
        shr $12, %ecx
        and $0xFF, %ecx
        mov %eax, 0x22000(,%ecx,4)
        pop %ecx
        pop %eax
        add $4, %esp                   # drop the error code
        iret
        .balign 4
expect_cr2: .long 0
expect_err: .long 0
bad:    .long 0
idtr:   .word 256*8 - 1
        .long 0x8000
"""


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_ten_thousand_page_faults_carry_the_right_cr2_and_error_code_through_host_actions(
        tmp_path, dispatch):
    faults = 10_000
    kernel = flat_kernel(tmp_path, PAGED.replace("FAULTS", str(faults)))
    m = Machine(MachineConfig(kernel=str(kernel), kernel_format="flat", dispatch=dispatch, timeout=240))
    code = kernel.read_bytes()

    # Host actions between slices, every millisecond: rewrite the kernel's code pages
    # (as a loader or DMA would; the engine must drop their translations by physical
    # address without touching CR2), and read registers.
    def host_actions(now: int) -> None:
        m.mem.write(boot.FLAT_LOAD_ADDR, code[:64])
        m.mem.write(0x500000, b"\x90" * 16)      # physical RAM the guest has no mapping for
        m.vcpu.uc.reg_read(X.UC_X86_REG_CR2)
        m.vcpu.lin2phys(boot.FLAT_LOAD_ADDR)
        m.clock.at(now + MS, host_actions)
    m.clock.after(MS, host_actions)
    try:
        result = m.run()
        assert result.exit_code == 0, result.reason
        assert m.serial_text() == "P\x00"
        assert m.stats.counts[("exception", "int 0x0e")] == faults
    finally:
        m.close()


def test_lin2phys_walks_2_level_4k_and_4m_pages_and_pae(tmp_path):
    """The host walker against page tables written by hand, in each paging mode."""
    m = Machine(MachineConfig(kernel_format="flat", kernel=str(flat_kernel(tmp_path, "cli\nhlt"))))
    try:
        mem, uc, v = m.mem, m.vcpu.uc, m.vcpu
        # 2-level: PDE 0 -> table at 0x21000 mapping linear 0x5000 -> 0x9000; PDE 1: 4 MiB page
        mem.put32(0x20000, 0x21003)
        mem.put32(0x20004, 0x00800083)          # linear 4M..8M -> 8M..12M (PS)
        mem.put32(0x21000 + 5 * 4, 0x9003)
        uc.reg_write(X.UC_X86_REG_CR3, 0x20000)
        uc.reg_write(X.UC_X86_REG_CR4, 0x10)    # PSE
        uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
        assert v.lin2phys(0x5123) == 0x9123
        assert v.lin2phys(0x400000 + 0x12345) == 0x800000 + 0x12345
        with pytest.raises(Exception, match="not mapped"):
            v.lin2phys(0x6000)
        mem.put32(0x21000 + 6 * 4, 0x3003)      # map 0x6000 -> 0x3000: a read across pages
        mem.write(0x9FFE, b"ab")
        mem.write(0x3000, b"cd")
        assert v.read_linear(0x5FFE, 4) == b"abcd"
        # PAE: PDPT at 0x30000, PD at 0x31000, PT at 0x32000; a 2 MiB page and a 4 KiB page
        mem.write(0x30000, (0x31001).to_bytes(8, "little"))
        mem.write(0x31000, (0x32003).to_bytes(8, "little"))            # 0..2M via PT
        mem.write(0x31008, (0x00600083 | 1 << 63).to_bytes(8, "little"))  # 2M..4M -> 6M (PS, NX)
        mem.write(0x32000 + 7 * 8, (0xA003).to_bytes(8, "little"))
        uc.reg_write(X.UC_X86_REG_CR0, 0x11)
        uc.reg_write(X.UC_X86_REG_CR4, 0x20)    # PAE
        uc.reg_write(X.UC_X86_REG_CR3, 0x30000)
        uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
        assert v.lin2phys(0x7ABC) == 0xAABC
        assert v.lin2phys(0x200000 + 0x1234) == 0x600000 + 0x1234
        with pytest.raises(Exception, match="not mapped"):
            v.lin2phys(0x40000000)              # PDPTE 1 not present
    finally:
        m.close()
