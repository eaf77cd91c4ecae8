"""The emulated BIOS ROM (devices/bios_emulated): image layout, reproducible build,
and behaviour when it runs - under QEMU (real IDE, floppy controller and 8237 there,
so it boots bioscheck from either) and on hv's machine, with the same controllers."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.guests import IMAGES_DIR
from hv.devices.bios_emulated import ROM_SIZE, rom_path
from hv.devices.bios_emulated.build import build
from hv.machine import DriveSpec, Machine, MachineConfig
from tests.conftest import disk_copy, needs_binutils
from tests.guest_run import expect_finished

BIOSCHECK = IMAGES_DIR / "bioscheck.img"
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-i386") is None,
                                reason="qemu-system-i386 is not installed")
needs_toolchain = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ld") is None,
                                     reason="gcc and GNU binutils are needed to build the ROM")


def rom() -> bytes:
    return rom_path().read_bytes()


# ---- the image -------------------------------------------------------------------

def test_image_is_64_kib():
    assert len(rom()) == ROM_SIZE == 0x10000


def test_reset_vector_is_a_far_jump_into_the_rom():
    image = rom()
    assert image[0xFFF0] == 0xEA                      # jmp ptr16:16
    offset = int.from_bytes(image[0xFFF1:0xFFF3], "little")
    segment = int.from_bytes(image[0xFFF3:0xFFF5], "little")
    assert segment == 0xF000
    assert offset < 0xFFF0 and image[offset] == 0xFA  # POST starts with cli


def test_model_byte_says_pc_at():
    assert rom()[0xFFFE] == 0xFC


@needs_toolchain
def test_build_is_deterministic(tmp_path):
    a = build(tmp_path / "a")[0].read_bytes()
    b = build(tmp_path / "b")[0].read_bytes()
    assert a == b


@needs_toolchain
def test_committed_image_matches_the_sources(tmp_path):
    assert build(tmp_path)[0].read_bytes() == rom()


# ---- under QEMU -----------------------------------------------------------------

def run_qemu_until(pattern: bytes, timeout: float = 20) -> bytes:
    proc = subprocess.Popen(["qemu-system-i386", "-bios", str(rom_path()), "-nographic",
                             "-serial", "stdio", "-monitor", "none", "-display", "none"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = b""
    try:
        import select
        import time
        deadline = time.monotonic() + timeout
        while pattern not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = proc.stdout.read1(4096)
                if not chunk:
                    break
                out += chunk
    finally:
        proc.kill()
        proc.wait()
    return out


@needs_qemu
def test_qemu_with_no_disks_prints_no_bootable_device():
    assert b"No bootable device.\r\n" in run_qemu_until(b"No bootable device.\r\n")


BIOSCHECK_DONE = r"bioscheck done: \d+ passed, \d+ failed"


@needs_qemu
@pytest.mark.parametrize("drive", ["floppy", "hd"])
def test_bioscheck_passes_under_qemu_booted_by_this_rom(drive):
    from tests.qemu_util import run_image
    serial = run_image(BIOSCHECK, drive=drive, until=BIOSCHECK_DONE, bios=rom_path())
    assert [line for line in serial.splitlines() if line.startswith("FAIL")] == []
    assert re.search(r"bioscheck done: \d+ passed, 0 failed", serial)


def traced_ports(drive: str, tmp_path: Path) -> set[int]:
    """Boot bioscheck under QEMU with this ROM and return every I/O port touched
    (QEMU's memory_region_ops trace sees device and unassigned port accesses)."""
    from tests.qemu_util import run_image
    log = tmp_path / "trace.log"
    serial = run_image(BIOSCHECK, drive=drive, until=BIOSCHECK_DONE, bios=rom_path(),
                       extra_args=["-trace", "memory_region_ops_*", "-D", str(log)])
    assert re.search(BIOSCHECK_DONE, serial)
    text = log.read_text(errors="replace")
    return {int(a, 16) for a in re.findall(r"^memory_region_ops_\w+ .* addr (0x[0-9a-f]+) value", text, re.M)
            if int(a, 16) < 0x10000}


@needs_qemu
@pytest.mark.parametrize("drive", ["floppy", "hd"])
def test_the_rom_never_touches_the_host_disk_port(drive, tmp_path):
    ports = traced_ports(drive, tmp_path)
    assert not ports & set(range(0x5F0, 0x600))
    assert {0x1F6, 0x1F7} <= ports                    # it did probe the ATA channel


@needs_qemu
def test_floppy_boot_goes_through_the_fdc_and_dma_channel_2(tmp_path):
    ports = traced_ports("floppy", tmp_path)
    assert {0x3F2, 0x3F4, 0x3F5} <= ports             # DOR, MSR, FIFO
    assert {0x04, 0x05, 0x0A, 0x0B, 0x0C, 0x81} <= ports


@needs_qemu
def test_hard_disk_boot_reads_sectors_through_the_ata_data_port(tmp_path):
    ports = traced_ports("hd", tmp_path)
    assert {0x1F0, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6, 0x1F7} <= ports


# A boot sector that reads sectors 0-3 into buffers around the 64 KiB DMA page at
# 0x10000 (one straddling it, one ending on it) and writes and reads back sector 5
# through a straddling buffer; prints "DMA OK" or "DMA FAIL <step>" on COM1.
DMA_GUEST = """
        cli
        xor  %ax, %ax
        mov  %ax, %ds
        mov  %ax, %ss
        mov  $0x7c00, %sp
        sti
        cld
        mov  %dl, 0x500
        mov  $'1', %bp                  /* sector 0 at 0xFF00 straddles the page */
        mov  $0x0ff0, %ax
        call read4
        mov  $'2', %bp                  /* the page ends after two sectors */
        mov  $0x0fc0, %ax
        call read4
        mov  $'3', %bp                  /* write and read back through 0x1FF00 */
        mov  $0x1ff0, %ax
        mov  %ax, %es
        xor  %di, %di
        mov  $0x5a, %al
        mov  $512, %cx
        rep  stosb
        xor  %bx, %bx
        mov  $0x0301, %ax
        mov  $0x0006, %cx
        call disk
        xor  %di, %di
        xor  %al, %al
        mov  $512, %cx
        rep  stosb
        xor  %bx, %bx
        mov  $0x0201, %ax
        mov  $0x0006, %cx
        call disk
        xor  %di, %di
        mov  $0x5a, %al
        mov  $512, %cx
        repe scasb
        jne  fail
        mov  $ok, %si
        jmp  puts
read4:  mov  %ax, %es
        xor  %bx, %bx
        mov  $0x0204, %ax
        mov  $0x0001, %cx
        call disk
        cmp  $4, %al
        jne  fail
        mov  $0x7c00, %si
        xor  %di, %di
        mov  $512, %cx
        repe cmpsb
        jne  fail
        mov  $0x11, %al
        mov  $3, %dx
1:      mov  $512, %cx
        repe scasb
        jne  fail
        add  $0x11, %al
        dec  %dx
        jnz  1b
        ret
disk:   xor  %dh, %dh
        mov  0x500, %dl
        int  $0x13
        jc   fail
        ret
fail:   mov  %bp, %ax
        mov  %al, failno
        mov  $bad, %si
puts:   lodsb
        test %al, %al
        jz   2f
        mov  $0x3f8, %dx
        out  %al, %dx
        jmp  puts
2:      cli
        hlt
ok:     .asciz "DMA OK\r\n"
bad:    .ascii "DMA FAIL "
failno: .asciz "?\r\n"
"""


def dma_guest_sectors() -> tuple[bytes, ...]:
    return (bytes([0x11]) * 512, bytes([0x22]) * 512, bytes([0x33]) * 512, bytes(1024))


@needs_qemu
@needs_toolchain
@pytest.mark.parametrize("drive", ["floppy", "hd"])
def test_transfers_around_a_64k_dma_page_work_under_qemu(drive, tmp_path):
    from tests.asm import assemble, write_image
    from tests.qemu_util import run_image
    img = write_image(tmp_path / "dma.img", assemble(DMA_GUEST), *dma_guest_sectors())
    assert run_image(img, drive=drive, until=r"DMA.*\n", timeout=15, bios=rom_path()) == "DMA OK\r\n"


# ---- on hv's machine --------------------------------------------------------------

HALT_HERE = "cli\nhlt\n"


@needs_binutils
def test_post_fills_the_bios_data_area(boot):
    m = boot(HALT_HERE, bios="emulated")
    mem = m.mem
    assert mem.u16(0x400) == 0x3F8                    # COM1
    assert mem.u16(0x413) == 638
    assert mem.u16(0x40E) == 0x9F80
    assert mem.u8(0x9F800) == 2                       # EBDA size in KiB
    assert mem.u16(0x410) & 0x0031 == 0x0021          # one floppy, 80x25 colour
    assert (mem.u16(0x410) >> 9) & 7 == 1             # one serial port
    assert mem.u16(0x41A) == mem.u16(0x41C) == 0x1E
    assert (mem.u16(0x480), mem.u16(0x482)) == (0x1E, 0x3E)
    assert mem.u8(0x449) == 3 and mem.u16(0x44A) == 80 and mem.u16(0x44C) == 0x1000
    assert mem.u16(0x463) == 0x3D4 and mem.u8(0x484) == 24 and mem.u16(0x485) == 16
    assert mem.u16(0x460) == 0x0607


@needs_binutils
def test_every_vector_points_into_the_rom(boot):
    m = boot(HALT_HERE, bios="emulated")
    for n in range(256):
        if n in (0x1D, 0x1F):
            continue                                  # data pointers, deliberately null
        assert m.mem.u16(n * 4 + 2) == 0xF000, hex(n)


@needs_binutils
def test_boot_sector_runs_at_0000_7c00_with_drive_in_dl_and_interrupts_on(boot):
    m = boot("""
        pushf
        pop  %ax
        mov  %ax, 0x600
        mov  %dl, 0x602
        mov  %sp, 0x604
        mov  %ss, 0x606
        call 1f
1:      pop  %ax
        mov  %ax, 0x608
        mov  %cs, 0x60A
        cli
        hlt
    """, bios="emulated")
    mem = m.mem
    assert mem.u16(0x600) & 0x200                     # IF
    assert mem.u8(0x602) == 0x00                      # booted from floppy A
    assert (mem.u16(0x606), mem.u16(0x604)) == (0, 0x7C00)
    assert mem.u16(0x60A) == 0 and 0x7C00 < mem.u16(0x608) < 0x7E00


@needs_binutils
def test_int10_teletype_writes_to_text_memory_and_moves_the_cursor(boot):
    m = boot("""
        mov  $0x0e41, %ax
        int  $0x10
        mov  $0x0e42, %ax
        int  $0x10
        cli
        hlt
    """, bios="emulated")
    assert m.mem.read(0xB8000, 4) == b"A\x07B\x07"
    assert m.mem.u16(0x450) == 0x0002


@needs_binutils
def test_e820_map_describes_base_ebda_rom_and_extended_memory(boot):
    m = boot("""
        xor  %ax, %ax
        mov  %ax, %es
        mov  $0x1000, %di
        xor  %ebx, %ebx
1:      mov  $0xe820, %eax
        mov  $20, %ecx
        mov  $0x534d4150, %edx
        int  $0x15
        jc   2f
        add  $20, %di
        test %ebx, %ebx
        jnz  1b
2:      mov  %di, 0x0ffe
        cli
        hlt
    """, bios="emulated", mem=32 << 20)
    mem = m.mem
    n = (mem.u16(0xFFE) - 0x1000) // 20
    entries = [(mem.u32(0x1000 + 20 * i), mem.u32(0x1000 + 20 * i + 8), mem.u32(0x1000 + 20 * i + 16))
               for i in range(n)]
    assert entries == [(0, 0x9F800, 1), (0x9F800, 0x800, 2), (0xF0000, 0x10000, 2),
                       (0x100000, (32 << 20) - 0x100000, 1)]


@needs_binutils
def test_successful_boot_prints_nothing_on_com1(boot):
    m = boot(HALT_HERE, bios="emulated")
    assert m.serial_text() == ""


def run_guest(tmp_path, bios="emulated", **drives):
    cfg = MachineConfig(bios=bios, timeout=60, **{k: DriveSpec(str(v)) for k, v in drives.items()})
    m = Machine(cfg)
    try:
        result = expect_finished(m, m.run())
        return result, m.serial_text()
    finally:
        m.close()


@needs_binutils
@pytest.mark.parametrize("slot", ["fda", "hda"])
def test_transfers_around_a_64k_dma_page_work_on_hv(tmp_path, slot):
    # hv's 8237 wraps inside the 64 KiB page as the chip does, so a transfer the
    # BIOS did not split would land at the bottom of the page.
    from tests.asm import assemble, write_image
    img = write_image(tmp_path / "dma.img", assemble(DMA_GUEST), *dma_guest_sectors())
    _, serial = run_guest(tmp_path, **{slot: img})
    assert serial == "DMA OK\r\n"


# A boot floppy whose program uses INT 13h on a 300-cylinder hard disk, where the
# cylinder needs CL bits 6-7, then reads a floppy sector into F000:0000 (the ROM).
BIG_CYLS, BIG_HEADS, BIG_SPT = 300, 16, 63
CHS_GUEST = """
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7c00, %sp
    mov $0x0201, %ax            # read C256 H0 S1: CH=00h, CL=40h|1
    mov $0x0041, %cx
    mov $0x0080, %dx
    mov $0x1000, %bx
    int $0x13
    mov %ax, 0x600
    pushf
    pop 0x602
    mov $0x0201, %ax            # read C299 H15 S63: CH=2Bh, CL=40h|3Fh
    mov $0x2b7f, %cx
    mov $0x0f80, %dx
    mov $0x1200, %bx
    int $0x13
    mov %ax, 0x604
    pushf
    pop 0x606
    mov $0x1400, %di            # write C257 H7 S33 (CH=01h, CL=40h|21h) from A5A5...
    mov $0xa5a5, %ax
    mov $256, %cx
    cld
    rep stosw
    mov $0x0301, %ax
    mov $0x0161, %cx
    mov $0x0780, %dx
    mov $0x1400, %bx
    int $0x13
    mov %ax, 0x608
    pushf
    pop 0x60a
    mov $0x08, %ah              # the geometry, cylinder bits 8-9 in CL bits 6-7
    mov $0x80, %dl
    int $0x13
    mov %cx, 0x60c
    mov %dx, 0x60e
    mov $0xf000, %ax            # the floppy's boot sector into the BIOS ROM
    mov %ax, %es
    xor %bx, %bx
    mov $0x0201, %ax
    mov $0x0001, %cx
    xor %dx, %dx
    int $0x13
    cli
    hlt
"""


def big_marker(c: int, h: int, s: int) -> bytes:
    return (bytes([c & 0xFF, c >> 8, h, s]) * 128)


@needs_binutils
@pytest.mark.parametrize("bios", ["emulated", "synthetic"])
def test_chs_reads_and_writes_past_cylinder_255_reach_the_right_sectors_and_the_rom_stays(
        boot, tmp_path, bios):
    lba = lambda c, h, s: (c * BIG_HEADS + h) * BIG_SPT + s - 1
    disk = tmp_path / "big.img"
    with open(disk, "wb") as f:                   # sparse: only the marked sectors exist
        f.truncate(BIG_CYLS * BIG_HEADS * BIG_SPT * 512)
        for c, h, s in ((256, 0, 1), (299, 15, 63), (257, 7, 32), (257, 7, 34)):
            f.seek(lba(c, h, s) * 512)
            f.write(big_marker(c, h, s))
    rom_start = (rom() if bios == "emulated" else synthetic_rom())[:512]
    m = boot(CHS_GUEST, bios=bios, hda=DriveSpec(str(disk)))
    mem = m.mem
    assert (mem.u16(0x600), mem.u16(0x602) & 1) == (0x0001, 0)      # AH=0, AL=1, CF clear
    assert mem.read(0x1000, 512) == big_marker(256, 0, 1)
    assert (mem.u16(0x604), mem.u16(0x606) & 1) == (0x0001, 0)
    assert mem.read(0x1200, 512) == big_marker(299, 15, 63)
    assert (mem.u16(0x608), mem.u16(0x60A) & 1) == (0x0001, 0)
    cx, dx = mem.u16(0x60C), mem.u16(0x60E)
    # The last cylinder: SeaBIOS (and the emulated BIOS) keep one back for hard disks.
    last = BIG_CYLS - 2 if bios == "emulated" else BIG_CYLS - 1
    assert (cx >> 8 | (cx & 0xC0) << 2, cx & 0x3F, dx >> 8) == (last, BIG_SPT, BIG_HEADS - 1)
    data = disk.read_bytes()
    assert data[lba(257, 7, 33) * 512:lba(257, 7, 34) * 512] == b"\xa5" * 512
    assert data[lba(257, 7, 32) * 512:lba(257, 7, 33) * 512] == big_marker(257, 7, 32)
    assert data[lba(257, 7, 34) * 512:lba(257, 7, 35) * 512] == big_marker(257, 7, 34)
    assert mem.read(0xF0000, 512) == rom_start      # the boot sector did not land in ROM


def synthetic_rom() -> bytes:
    from hv.devices.bios_synthetic import rom_path as synthetic_rom_path
    return synthetic_rom_path().read_bytes()


def test_with_no_disks_it_reports_no_bootable_device_and_stops(tmp_path):
    result, serial = run_guest(tmp_path)
    assert serial == "No bootable device.\r\n"
    assert result.exit_code != 0


@pytest.mark.skipif(not BIOSCHECK.exists(), reason="bioscheck image not built")
@pytest.mark.parametrize("drive", ["fda", "hda"])
def test_bioscheck_passes_every_check(tmp_path, drive):
    img = disk_copy(BIOSCHECK, tmp_path / "bioscheck.img", drive)
    _, serial = run_guest(tmp_path, **{drive: img})
    assert [line for line in serial.splitlines() if line.startswith("FAIL")] == []
    assert re.search(r"bioscheck done: \d+ passed, 0 failed", serial)


# ---- hostile register values -------------------------------------------------------

# The guest loads AX, BX, CX, DX, SI, DI, BP from the 14 bytes at PARAMS, calls the
# interrupt whose number is patched in at INT_NUMBER, then marks 0x500 and halts.
# ES = DS = 2000h keeps buffers the BIOS writes away from the guest and the BDA.
FUZZ_GUEST = """
        mov  $0x2000, %ax
        mov  %ax, %ds
        mov  %ax, %es
        xor  %ax, %ax
        mov  %ax, %ss
        mov  $0x7000, %sp
        mov  %cs:params + 0, %ax
        mov  %cs:params + 2, %bx
        mov  %cs:params + 4, %cx
        mov  %cs:params + 6, %dx
        mov  %cs:params + 8, %si
        mov  %cs:params + 10, %di
        mov  %cs:params + 12, %bp
        .byte 0xcd
intno:  .byte 0x10
        xor  %ax, %ax
        mov  %ax, %ds
        movw $0x1234, 0x500
        cli
        hlt
params: .fill 14, 1, 0
"""


@pytest.fixture(scope="module")
def fuzz_image():
    from tests.asm import assemble
    code = bytearray(assemble(FUZZ_GUEST))
    # locate the patch points: `cd 10` then the 14 zero bytes after `cli; hlt`
    int_at = code.index(b"\xcd\x10") + 1
    params_at = code.index(b"\xfa\xf4") + 2
    return code, int_at, params_at


def words(n):
    return st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n)


# INT 15h AH=86h and INT 16h AH=00h/10h wait (by design); INT 18h/19h do not return.
def returns(intno, ax):
    ah = ax >> 8
    return not ((intno == 0x15 and ah == 0x86) or (intno == 0x16 and ah in (0x00, 0x10)))


@needs_binutils
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(intno=st.sampled_from([0x10, 0x11, 0x12, 0x13, 0x15, 0x16, 0x1A]), regs=words(7))
def test_any_register_values_return_from_the_bios_and_leave_the_rom_unchanged(tmp_path, fuzz_image,
                                                                              intno, regs):
    if not returns(intno, regs[0]):
        return
    code, int_at, params_at = fuzz_image
    code = bytearray(code)
    code[int_at] = intno
    for i, w in enumerate(regs):
        code[params_at + 2 * i:params_at + 2 * i + 2] = w.to_bytes(2, "little")
    img = tmp_path / "fuzz.img"
    img.write_bytes(bytes(code) + bytes(512 * 17))
    m = Machine(MachineConfig(bios="emulated", timeout=20, fda=DriveSpec(str(img), snapshot=True)))
    try:
        # The ROM as installed: the BIOS image, with the MP/ACPI tables in its spare window.
        installed = m.mem.read(0xF0000, ROM_SIZE)
        assert installed[:0xA000] == rom()[:0xA000]
        expect_finished(m, m.run())
        assert m.mem.u16(0x500) == 0x1234
        assert m.mem.read(0xF0000, ROM_SIZE) == installed
    finally:
        m.close()
