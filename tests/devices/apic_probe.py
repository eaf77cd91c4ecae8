"""A differential probe: the same script of 32-bit MMIO stores and loads runs on QEMU's
local APIC / I/O APIC (a boot floppy under qemu-system-i386 + SeaBIOS, results on COM1)
and on hv's models, and the loads must agree.

The scripts keep to what both QEMU and the SDM/datasheet define: values with reserved
bits clear where QEMU stores registers whole, no ESR (QEMU does not latch it), no
illegal vectors (QEMU accepts them), no timer counts (QEMU's run with the host's time).
Every register a script reads is written by it first, or is one SeaBIOS leaves at its
reset value, so QEMU's firmware having run first does not matter. The guest runs with
interrupts off and the 8259 masked, so nothing but the script touches the APICs.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from hv.devices.apic import APIC_DEFAULT_BASE, LocalApic, Reg
from hv.devices.ioapic import IOAPIC_DEFAULT_BASE, IOREGSEL, IOWIN, IoApic
from tests.asm import assemble
from tests.devices.harness import ManualClock
from tests.qemu_util import require_qemu, run_image

QEMU_ARGS = ["-global", "ioapic.version=0x11"]     # QEMU 7's default is 0x20


def _lapic(reg: int) -> int:
    return APIC_DEFAULT_BASE + reg


def _w(reg: int, value: int) -> tuple:
    return ("w", _lapic(reg), value)


def _r(reg: int) -> tuple:
    return ("r", _lapic(reg))


def _banks() -> list[tuple]:
    return [_r(bank + 0x10 * i) for bank in (Reg.IRR, Reg.ISR, Reg.TMR) for i in range(8)]


def _ipi(high: int, low: int) -> list[tuple]:
    return [_w(Reg.ICR_HIGH, high), _w(Reg.ICR_LOW, low)]


LAPIC_SCRIPT: list[tuple] = [
    _r(Reg.VERSION), _r(Reg.ID),
    _w(Reg.SVR, 0xFFFFFFFF), _r(Reg.SVR), _w(Reg.SVR, 0x1EF), _r(Reg.SVR),
    _w(Reg.TPR, 0xFFFFFFFF), _r(Reg.TPR), _r(Reg.PPR),
    _w(Reg.TPR, 0x5A), _r(Reg.TPR), _r(Reg.PPR),
    _w(Reg.TPR, 0), _r(Reg.PPR),
    _w(Reg.LDR, 0xFFFFFFFF), _r(Reg.LDR),
    _w(Reg.DFR, 0), _r(Reg.DFR), _w(Reg.DFR, 0xFFFFFFFF), _r(Reg.DFR),
    *[op for value in [*range(16), 0xFFFFFFFF] for op in (_w(Reg.TIMER_DIVIDE, value),
                                                          _r(Reg.TIMER_DIVIDE))],
    _w(Reg.LVT_TIMER, 0x000300FE), _w(Reg.LVT_THERMAL, 0x000104EE),
    _w(Reg.LVT_PERF, 0x000102DD), _w(Reg.LVT_LINT0, 0x0001A7F0),
    _w(Reg.LVT_LINT1, 0x0001A4CC), _w(Reg.LVT_ERROR, 0x000100BB),
    *[_r(reg) for reg in range(Reg.LVT_TIMER, Reg.LVT_ERROR + 1, 0x10)],
    _w(Reg.TIMER_INITIAL, 0), _r(Reg.TIMER_INITIAL), _r(Reg.TIMER_CURRENT),
    _w(Reg.TIMER_INITIAL, 0x12345678), _r(Reg.TIMER_INITIAL), _w(Reg.TIMER_INITIAL, 0),
    _r(Reg.TIMER_CURRENT),
    *_banks(),
    *_ipi(0x00000000, 0x00040040), _r(Reg.ICR_LOW),  # self
    *_ipi(0x00000000, 0x00000051),                   # physical: own ID
    *_ipi(0x01000000, 0x00000062), _r(Reg.ICR_HIGH), # physical: absent CPU
    *_ipi(0xFF000000, 0x00000073),                   # physical broadcast
    *_ipi(0xFF000000, 0x000C0084),                   # all excluding self
    *_ipi(0x00000000, 0x00080095),                   # all including self
    _w(Reg.LDR, 0x01000000), _w(Reg.DFR, 0xFFFFFFFF),
    *_ipi(0x01000000, 0x000008A6), *_ipi(0x02000000, 0x000008B7),   # flat logical
    _w(Reg.DFR, 0x0FFFFFFF), _w(Reg.LDR, 0x21000000),
    *_ipi(0x21000000, 0x000008C8), *_ipi(0x31000000, 0x000008D9),   # cluster logical
    _w(Reg.DFR, 0xFFFFFFFF),
    *_ipi(0x00000000, 0x000C4500), *_ipi(0x00000000, 0x000C469F),   # INIT, SIPI to APs
    _w(Reg.EOI, 0),                                                 # nothing in service
    *_banks(), _r(Reg.PPR), _r(Reg.ICR_LOW),
]


def _sel(index: int) -> tuple:
    return ("w", IOAPIC_DEFAULT_BASE + IOREGSEL, index)


def _win_w(value: int) -> tuple:
    return ("w", IOAPIC_DEFAULT_BASE + IOWIN, value)


_WIN_R = ("r", IOAPIC_DEFAULT_BASE + IOWIN)
_SEL_R = ("r", IOAPIC_DEFAULT_BASE + IOREGSEL)


def _entry(pin: int, low: int, high: int) -> list[tuple]:
    return [_sel(0x10 + 2 * pin), _win_w(low), _WIN_R, _sel(0x11 + 2 * pin), _win_w(high), _WIN_R]


IOAPIC_SCRIPT: list[tuple] = [
    _sel(0x01), _WIN_R, _win_w(0xFFFFFFFF), _WIN_R,                 # version is read-only
    _sel(0x00), _win_w(0x0A000000), _WIN_R, _sel(0x02), _WIN_R,     # ARB follows the ID
    _sel(0x00), _win_w(0xFF000000), _WIN_R,
    _sel(0x00), _win_w(0x00000000), _WIN_R,
    _sel(0x10 + 2 * 20), _WIN_R, _sel(0x11 + 2 * 20), _WIN_R,        # untouched: reset value
    *_entry(5, 0x0001A9F1, 0xAB000000),
    *_entry(23, 0x000108E2, 0x5C000000),
    *_entry(0, 0x0001F7FF, 0xFF000000),
    *_entry(5, 0x00010000, 0x00000000),
    _sel(0x40), _WIN_R, _SEL_R, _sel(0x3F), _WIN_R, _sel(0xFF), _WIN_R, _SEL_R,
    _sel(0x1FF), _SEL_R,
]


def _guest(script: list[tuple]) -> bytes:
    ops = []
    for op in script:
        if op[0] == "w":
            ops.append(f"movl ${op[2]:#x}, {op[1]:#x}")
        else:
            ops.append(f"movl {op[1]:#x}, %eax\n    call hex")
    source = f"""
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7C00, %sp
    sti
    mov $0x0210, %ax            # read 16 sectors: the rest of the probe
    mov $0x0002, %cx
    xor %dh, %dh
    mov $0x7E00, %bx
    int $0x13
    cli
    mov $0xFF, %al              # mask both 8259s: nothing reaches the APICs but the script
    out %al, $0x21
    out %al, $0xA1
    lgdt gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmp $0x08, $pm32
.code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7C00, %esp
    jmp stage2
.p2align 3
gdt: .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
gdtr: .word gdtr - gdt - 1
    .long gdt
.org 510
    .word 0xAA55
stage2:
    mov $begin, %esi
    call puts
    {chr(10).join('    ' + o for o in ops)}
    mov $end, %esi
    call puts
9:  cli
    hlt
    jmp 9b
putc:                           # %bl -> COM1
    push %eax
    push %edx
    mov $0x3FD, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    mov $0x3F8, %dx
    mov %bl, %al
    out %al, %dx
    pop %edx
    pop %eax
    ret
hex:                            # %eax as 8 hex digits and a newline
    push %ecx
    push %ebx
    push %edx
    mov %eax, %edx
    mov $8, %ecx
2:  rol $4, %edx
    mov %dl, %bl
    and $0x0F, %bl
    add $0x30, %bl
    cmp $0x39, %bl
    jbe 3f
    add $7, %bl
3:  call putc
    loop 2b
    mov $0x0A, %bl
    call putc
    pop %edx
    pop %ebx
    pop %ecx
    ret
puts:
    push %ebx
4:  lodsb
    test %al, %al
    jz 5f
    mov %al, %bl
    call putc
    jmp 4b
5:  pop %ebx
    ret
begin: .asciz "BEGIN\\n"
end: .asciz "END\\n"
"""
    code = assemble(source, boot_sector=False)
    if len(code) > 512 + 16 * 512:
        raise ValueError("the probe script does not fit in 16 sectors")
    return code


def _label(op: tuple) -> str:
    return f"{op[1]:#010x}"


def run_probe(script: list[tuple], tmp: Path) -> list[str]:
    """Run ``script`` on QEMU; one "address=value" per load, in order."""
    require_qemu()
    if shutil.which("as") is None or shutil.which("ld") is None:
        import pytest
        pytest.skip("GNU binutils (as, ld) not installed: the probe guest cannot be built")
    image = tmp / "probe.img"
    image.write_bytes(_guest(script))
    out = run_image(image, until=r"END\n", timeout=30, extra_args=QEMU_ARGS)
    body = out.split("BEGIN\n", 1)[1].split("END\n", 1)[0].split()
    loads = [op for op in script if op[0] == "r"]
    assert len(body) == len(loads), out
    return [f"{_label(op)}={int(v, 16):#010x}" for op, v in zip(loads, body, strict=True)]


def _replay(script: list[tuple], device, base: int) -> list[str]:
    result = []
    for op in script:
        if op[0] == "w":
            device.write(op[1] - base, 4, op[2])
        else:
            result.append(f"{_label(op)}={device.read(op[1] - base, 4):#010x}")
    return result


def replay_lapic(script: list[tuple]) -> list[str]:
    """The script on hv's local APIC, started where SeaBIOS leaves QEMU's (its virtual
    wire setup: software-enabled, LINT0 ExtINT, LINT1 NMI)."""
    apic = LocalApic(ManualClock())
    apic.write(Reg.SVR, 4, 0x1FF)
    apic.write(Reg.LVT_LINT0, 4, 0x8700)
    apic.write(Reg.LVT_LINT1, 4, 0x8400)
    return _replay(script, apic, APIC_DEFAULT_BASE)


def replay_ioapic(script: list[tuple]) -> list[str]:
    return _replay(script, IoApic(), IOAPIC_DEFAULT_BASE)
