"""The Linux/x86 32-bit boot protocol (hv/linux_boot.py): Debian's real bzImage parsed
and laid out in boot_params (read back at the offsets of boot.rst and zero-page.rst),
the entry state as a tiny kernel sees it on the vCPU, one-line errors for hostile
images built here, and (slow) Debian's kernel booting to /init and powering off
through ACPI S5, with the APICs found and calibrated, and /init's lines identical to
qemu-system-i386's (issue 10)."""
from __future__ import annotations

import re
import struct
import subprocess

import pytest

from hv.boot import KernelImageError
from hv.devices.bios_common import e820_map
from hv.guests import IMAGES_DIR
from hv.linux_boot import (BOOT_PARAMS_ADDR, LinuxBoot, is_bzimage, load_bzimage, parse_bzimage,
                           plan_layout)
from hv.machine import Machine, MachineConfig
from tests.asm import assemble
from tests.conftest import needs_binutils
from tests import hvcmd, linux_fixture, qemu_util

# The Debian kernel fixtures, visible to this module's tests.
debian_linux = linux_fixture.debian_linux
make_initramfs = linux_fixture.make_initramfs

MiB = 1 << 20


def u8(b, o): return b[o]
def u16(b, o): return int.from_bytes(b[o:o + 2], "little")
def u32(b, o): return int.from_bytes(b[o:o + 4], "little")
def u64(b, o): return int.from_bytes(b[o:o + 8], "little")


def fake_bzimage(kernel: bytes = b"\xfa\xf4", *, version=0x020F, setup_sects=1, loadflags=0x01,
                 relocatable=0, alignment=0x200000, pref=0x100000, init_size=None,
                 cmdline_size=255, initrd_max=0x7FFFFFFF, xloadflags=0, boot_flag=0xAA55,
                 header_len=0x26C - 0x202, syssize=None) -> bytes:
    """A bzImage built from boot.rst's field table: boot sector, setup_sects of setup,
    then ``kernel`` (the protected-mode part)."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    paragraphs = -(-len(kernel) // 16) if syssize is None else syssize
    struct.pack_into("<I", setup, 0x1F4, paragraphs)
    struct.pack_into("<H", setup, 0x1FE, boot_flag)
    setup[0x200], setup[0x201] = 0xEB, header_len
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    struct.pack_into("<H", setup, 0x20E, 0x100)               # version string at 0x300
    setup[0x300:0x308] = b"fake-1.0"
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, 0x100000)
    struct.pack_into("<II", setup, 0x22C, initrd_max, alignment)
    setup[0x234] = relocatable
    struct.pack_into("<HI", setup, 0x236, xloadflags, cmdline_size)
    struct.pack_into("<QI", setup, 0x258, pref, init_size if init_size is not None else len(kernel))
    return bytes(setup) + kernel.ljust(-(-len(kernel) // 16) * 16, b"\0")


@pytest.fixture
def linux_machine():
    """Build a Machine for a bzImage: `hv run --kernel bzImage --initrd FILE` picks LinuxBoot."""
    machines = []

    def make(kernel, cmdline: str = "", initrd=None, mem: int = 64 * MiB, **kw):
        kw.setdefault("kernel_format", "bzimage")
        m = Machine(MachineConfig(mem_size=mem, kernel=str(kernel), cmdline=cmdline,
                                  initrd=initrd and str(initrd), **kw))
        assert isinstance(m.firmware, LinuxBoot)
        machines.append(m)
        return m
    yield make
    for m in machines:
        m.close()


def write(tmp_path, data: bytes, name: str = "bzImage"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# -- Debian's bzImage ------------------------------------------------------------------------
def test_debian_kernel_is_a_relocatable_32_bit_bzimage_of_a_recent_protocol(debian_linux):
    data = debian_linux.kernel.read_bytes()
    image = load_bzimage(debian_linux.kernel, 256 * MiB)
    assert is_bzimage(debian_linux.kernel)
    assert image.version >= 0x020E and image.relocatable and image.xloadflags & 1 == 0
    setup_sects = data[0x1F1] or 4
    assert image.kernel == data[(setup_sects + 1) * 512:]
    assert image.kernel_alignment & (image.kernel_alignment - 1) == 0
    assert (image.pref_address, image.init_size) == (u64(data, 0x258), u32(data, 0x260))
    # The version string in the header is the one the package is named after.
    assert image.kernel_version.startswith(debian_linux.kernel_package.removeprefix("linux-image-"))


def test_debian_kernel_runs_above_its_load_address_where_pref_address_says(debian_linux):
    image = load_bzimage(debian_linux.kernel, 256 * MiB)
    layout = plan_layout(image, 256 * MiB, 4 * MiB)
    assert layout.load_addr == 0x100000
    assert layout.run_start == max(image.pref_address, image.kernel_alignment)
    assert layout.run_end == layout.run_start + image.init_size
    assert layout.initrd_addr >= layout.run_end and layout.initrd_addr % 4096 == 0
    assert layout.initrd_addr + 4 * MiB <= 256 * MiB


def test_boot_params_carry_the_setup_header_and_what_the_loader_fills_in(
        debian_linux, make_initramfs, linux_machine):
    initrd = make_initramfs("#!/bin/sh\necho hi\n")
    m = linux_machine(debian_linux.kernel, "console=ttyS0 quiet", initrd, mem=128 * MiB)
    data = debian_linux.kernel.read_bytes()
    bp = m.mem.read(BOOT_PARAMS_ADDR, 4096)
    hdr_end = 0x202 + data[0x201]
    filled = {0x210, 0x211} | set(range(0x214, 0x220)) | set(range(0x224, 0x22C)) \
        | set(range(0x23C, 0x248)) | set(range(0x250, 0x258))
    assert all(bp[i] == 0 for i in filled - set(range(0x210, 0x22C)))  # ext loader, subarch, setup_data
    assert all(bp[i] == data[i] for i in range(0x1F1, hdr_end) if i not in filled)
    assert (bp[0x210], bp[0x211], u16(bp, 0x224)) == (0xFF, 0x81, 0xFE00)   # loader, flags, heap
    assert u32(bp, 0x214) == 0x100000                                      # code32_start
    cmdline = m.mem.read(u32(bp, 0x228), 20)
    assert cmdline == b"console=ttyS0 quiet\0"
    image, size = u32(bp, 0x218), u32(bp, 0x21C)
    assert m.mem.read(image, size) == initrd.read_bytes()
    assert image % 4096 == 0 and image + size <= min(128 * MiB, u32(data, 0x22C) + 1)
    assert image >= 0x1000000 + u32(data, 0x260)                           # above the kernel
    assert bp[0x1E8] == len(e820_map(128 * MiB))
    e820 = [struct.unpack_from("<QQI", bp, 0x2D0 + 20 * i) for i in range(bp[0x1E8])]
    assert e820 == e820_map(128 * MiB)
    assert u32(bp, 0x1E0) == 127 * 1024                                   # alt_mem_k
    assert bp[0x1EF] == 0                                                  # sentinel
    rsdp = u64(bp, 0x070)
    assert m.mem.read(rsdp, 8) == b"RSD PTR " and sum(m.mem.read(rsdp, 36)) & 0xFF == 0
    assert m.mem.read(0x100000, 4096) == data[((data[0x1F1] or 4) + 1) * 512:][:4096]


def test_screen_info_says_there_is_no_video_console(debian_linux, linux_machine):
    bp = linux_machine(debian_linux.kernel).mem.read(BOOT_PARAMS_ADDR, 0x40)
    # orig_video_mode, cols, lines, isVGA: all 0 -> vgacon gives up, the serial console rules.
    assert (bp[0x06], bp[0x07], bp[0x0E], bp[0x0F]) == (0, 0, 0, 0)
    assert u16(bp, 0x02) == 63 * 1024                                     # ext_mem_k


def test_without_an_initrd_the_ramdisk_fields_are_zero(debian_linux, linux_machine):
    bp = linux_machine(debian_linux.kernel).mem.read(BOOT_PARAMS_ADDR, 4096)
    assert (u32(bp, 0x218), u32(bp, 0x21C)) == (0, 0)


def test_debian_kernel_needs_room_to_decompress(debian_linux, linux_machine):
    with pytest.raises(KernelImageError, match=r"beyond guest RAM .*--mem 33M"):
        linux_machine(debian_linux.kernel, mem=24 * MiB)


# -- the entry state, as a kernel sees it ---------------------------------------------------------
PROBE = """
.code32
    mov %esi, 0x500
    mov %ebx, 0x504
    mov %ebp, 0x508
    mov %edi, 0x50c
    mov %cs, 0x510
    mov %ds, 0x512
    mov %es, 0x514
    mov %ss, 0x516
    pushf
    pop %eax
    mov %eax, 0x518
    mov %cr0, %eax
    mov %eax, 0x51c
    call 1f
1:  pop %eax
    mov %eax, 0x520
    mov 0x228(%esi), %eax
    mov %eax, 0x524
    sgdt 0x528
    cli
    hlt
"""


@needs_binutils
def test_the_kernel_is_entered_as_the_32_bit_protocol_says(tmp_path, linux_machine):
    code = assemble(PROBE, org=0x100000, boot_sector=False)
    m = linux_machine(write(tmp_path, fake_bzimage(code)), "probe", mem=16 * MiB, timeout=10)
    result = m.run()
    assert result.exit_code == 0, result.reason
    r = m.mem.read(0x500, 0x530)
    esi, ebx, ebp, edi = struct.unpack_from("<IIII", r, 0)
    cs, ds, es, ss = struct.unpack_from("<HHHH", r, 0x10)
    eflags, cr0, call_site, cmdline_ptr = struct.unpack_from("<IIII", r, 0x18)
    assert (esi, ebx, ebp, edi) == (BOOT_PARAMS_ADDR, 0, 0, 0)
    assert (cs, ds, es, ss) == (0x10, 0x18, 0x18, 0x18)
    assert eflags & 0x200 == 0 and cr0 & 1 and not cr0 & 0x80000000
    assert call_site == 0x100000 + code.index(b"\xe8\0\0\0\0") + 5      # EIP = load address
    assert m.mem.read(cmdline_ptr, 6) == b"probe\0"
    limit, base = struct.unpack_from("<HI", r, 0x28)
    gdt = m.mem.read(base, limit + 1)
    for sel, type_ in ((0x10, 0xB), (0x18, 0x3)):          # code exec/read, data read/write
        lo, hi = struct.unpack_from("<II", gdt, sel)
        seg_base = (lo >> 16) | (hi & 0xFF) << 16 | (hi & 0xFF000000)
        seg_limit = (lo & 0xFFFF) | (hi & 0xF0000)
        assert (seg_base, seg_limit, hi >> 23 & 1, hi >> 22 & 1) == (0, 0xFFFFF, 1, 1)  # 4 GiB, 32-bit
        assert hi >> 8 & 0xF == type_ and hi >> 12 & 1 and hi >> 15 & 1 and hi >> 13 & 3 == 0


@needs_binutils
def test_a_reset_boots_the_pristine_kernel_again(tmp_path, linux_machine):
    code = assemble(".code32\n movl $0x11223344, 0x600\n cli\n hlt\n", org=0x100000,
                    boot_sector=False)
    m = linux_machine(write(tmp_path, fake_bzimage(code)), mem=16 * MiB, timeout=10)
    m.mem.write(0x100000, b"\xcc" * len(code))               # scribble over the kernel
    m.mem.write(BOOT_PARAMS_ADDR + 0x228, b"\0\0\0\0")
    m.reset()
    assert m.run().exit_code == 0
    assert m.mem.u32(0x600) == 0x11223344
    assert m.mem.u32(BOOT_PARAMS_ADDR + 0x228) != 0


def test_the_tables_are_installed_for_the_kernel_to_find(tmp_path, linux_machine):
    m = linux_machine(write(tmp_path, fake_bzimage()), mem=16 * MiB)
    rsdp = u64(m.mem.read(BOOT_PARAMS_ADDR, 0x80), 0x70)
    found = [a for a in range(0xE0000, 0x100000, 16) if m.mem.read(a, 8) == b"RSD PTR "]
    assert found == [rsdp]
    assert any(m.mem.read(a, 4) == b"_MP_" for a in range(0xF0000, 0x100000, 16))


def test_the_loader_clears_the_fields_it_owns_whatever_the_image_says(tmp_path, linux_machine):
    data = bytearray(fake_bzimage())
    data[0x226:0x228] = b"\x12\x34"                           # ext_loader_ver, ext_loader_type
    struct.pack_into("<IQ", data, 0x23C, 2, 0xDEAD)            # hardware_subarch: Xen
    struct.pack_into("<Q", data, 0x250, 0x123456)              # a setup_data list
    bp = linux_machine(write(tmp_path, bytes(data)), mem=16 * MiB).mem.read(BOOT_PARAMS_ADDR, 4096)
    assert bytes(bp[0x226:0x228]) == b"\0\0"
    assert (u32(bp, 0x23C), u64(bp, 0x240), u64(bp, 0x250)) == (0, 0, 0)


def test_old_protocols_get_no_acpi_rsdp_addr(tmp_path, linux_machine):
    m = linux_machine(write(tmp_path, fake_bzimage(version=0x020D)), mem=16 * MiB)
    assert u64(m.mem.read(BOOT_PARAMS_ADDR, 0x80), 0x70) == 0


# -- what is recognised as a bzImage ---------------------------------------------------------------
def test_is_bzimage_knows_the_setup_header_magic(tmp_path):
    assert is_bzimage(write(tmp_path, fake_bzimage()))
    assert not is_bzimage(IMAGES_DIR / "hellokernel.elf")
    assert not is_bzimage(write(tmp_path, b"HdrS", "short"))
    assert not is_bzimage(tmp_path / "missing")


# -- hostile images and inputs ---------------------------------------------------------------------
@pytest.mark.parametrize("data, message", [
    (fake_bzimage()[:0x204], r"not a Linux bzImage"),
    (fake_bzimage()[:0x207], r"truncated setup header"),
    (fake_bzimage(version=0x0204), r"boot protocol 2\.04 is older than 2\.06"),
    (fake_bzimage(header_len=0x20), r"truncated setup header"),
    (fake_bzimage()[:0x240], r"truncated setup header"),
    (fake_bzimage(boot_flag=0x1234), r"boot_flag is 0x1234"),
    (fake_bzimage(loadflags=0), r"a zImage"),
    (fake_bzimage(xloadflags=1), r"x86-64 kernel"),
    (fake_bzimage(b"\x90" * 64, syssize=0x100), r"truncated: setup_sects 1 and syssize 0x1000"),
    (fake_bzimage(relocatable=1, alignment=0), r"kernel_alignment 0x0 is not a power of two"),
    (fake_bzimage(relocatable=1, alignment=0x3000), r"kernel_alignment 0x3000"),
], ids=["no-magic", "short-header", "old-protocol", "header-length", "cut-in-header",
        "boot-flag", "zimage", "x86-64", "syssize", "alignment-0", "alignment-odd"])
def test_hostile_headers_get_one_line_errors_naming_the_file(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(KernelImageError, match=message) as e:
        load_bzimage(path, 16 * MiB)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize("kw, mem, message", [
    (dict(init_size=64 * MiB), 32 * MiB, r"runs at 0x100000-0x4100000 .*--mem 65M"),
    (dict(relocatable=1, alignment=0x1000000, pref=0x1000000, init_size=MiB), 16 * MiB,
     r"runs at 0x1000000-0x1100000"),
    (dict(pref=0x8000), 16 * MiB, r"below 1 MiB"),
    (dict(pref=0xFFFFF000, init_size=0x2000), 3 << 30, r"beyond guest RAM"),
], ids=["init-size", "pref-address", "below-1m", "past-4g"])
def test_kernels_that_cannot_run_in_guest_ram_are_refused(kw, mem, message):
    with pytest.raises(KernelImageError, match=message):
        plan_layout(parse_bzimage(fake_bzimage(**kw)), mem)


def test_an_initrd_too_big_for_the_ram_above_the_kernel_is_refused():
    image = parse_bzimage(fake_bzimage(init_size=4 * MiB))
    plan_layout(image, 16 * MiB, 11 * MiB)                     # fits: 5..16 MiB
    with pytest.raises(KernelImageError, match=r"initrd: 12582912 bytes do not fit"):
        plan_layout(image, 16 * MiB, 12 * MiB)


def test_initrd_addr_max_keeps_the_initrd_low_or_refuses_it():
    image = parse_bzimage(fake_bzimage(initrd_max=8 * MiB - 1))
    layout = plan_layout(image, 64 * MiB, MiB)
    assert layout.initrd_addr + MiB <= 8 * MiB
    with pytest.raises(KernelImageError, match="initrd"):
        plan_layout(parse_bzimage(fake_bzimage(initrd_max=MiB)), 64 * MiB, 4096)


@pytest.mark.parametrize("cmdline, message", [
    ("x" * 256, r"256 bytes; kernel .* accepts at most 255"),
    ("a\0b", r"must not contain NUL"),
])
def test_bad_command_lines_are_refused(tmp_path, linux_machine, cmdline, message):
    with pytest.raises(KernelImageError, match=message):
        linux_machine(write(tmp_path, fake_bzimage(cmdline_size=255)), cmdline, mem=16 * MiB)


def test_a_command_line_of_exactly_cmdline_size_is_accepted(tmp_path, linux_machine):
    m = linux_machine(write(tmp_path, fake_bzimage(cmdline_size=255)), "y" * 255, mem=16 * MiB)
    ptr = m.mem.u32(BOOT_PARAMS_ADDR + 0x228)
    assert m.mem.read(ptr, 256) == b"y" * 255 + b"\0"


@pytest.mark.parametrize("which", ["kernel", "initrd"])
def test_missing_empty_and_oversized_files_are_refused_before_reading(tmp_path, linux_machine, which):
    good = write(tmp_path, fake_bzimage())
    missing, empty, huge = tmp_path / "missing", write(tmp_path, b"", "empty"), tmp_path / "huge"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)                                    # sparse: 1 TiB, never read
    for bad, message in ((missing, "cannot read"), (empty, "is empty"), (huge, "cannot fit")):
        kernel, initrd = (bad, None) if which == "kernel" else (good, bad)
        with pytest.raises(KernelImageError, match=message) as e:
            linux_machine(kernel, initrd=initrd, mem=16 * MiB)
        assert str(e.value).startswith(f"{which} {bad}:")


def test_linux_finds_the_same_table_bytes_as_under_either_bios(tmp_path, linux_machine):
    """Direct boot installs the synthetic BIOS's tables; the emulated BIOS installs the
    same ones. So the slow boots below, which read them, cover both BIOS styles' tables."""
    from hv.firmware_tables import TABLES_BASE, build_tables
    n = len(build_tables().image)
    seen = {}
    for bios in ("emulated", "synthetic"):
        m = Machine(MachineConfig(bios=bios, mem_size=16 * MiB))
        try:
            seen[bios] = m.mem.read(TABLES_BASE, n)
        finally:
            m.close()
    linux = linux_machine(write(tmp_path, fake_bzimage()), mem=16 * MiB)
    assert seen["emulated"] == seen["synthetic"] == linux.mem.read(TABLES_BASE, n)


# -- Debian's Linux, all the way (slow) -------------------------------------------------------------
# One hv boot serves three tests (each boot costs 25-50 s on a loaded 2-core machine): the /init
# script's lines against qemu-system-i386's, the APICs in the boot log, and the S5 power-off.
# The command is issue 10's (`hv run --kernel vmlinuz --initrd initrd.gz --append ... --mem 256M`)
# plus `earlyprintk=serial apic=verbose`, so that the same boot log says how the APICs came up
# (apic=verbose prints the APIC timer's calibration); neither changes what /init prints.

INIT_SCRIPT = """#!/bin/sh
mount -t proc proc /proc
echo ==== init
uname -sr
echo "cpus: $(grep -c ^processor /proc/cpuinfo)"
grep IO-APIC /proc/interrupts
echo ==== poweroff
poweroff -f
"""
CMDLINE = "console=ttyS0 earlyprintk=serial apic=verbose"
# QEMU's TCG fails Linux's check_timer() timing test ("MP-BIOS bug: 8254 timer not connected
# to IO-APIC": jiffies must advance during a 10 ms mdelay) and falls back to a virtual-wire
# timer that /proc/interrupts does not list under IO-APIC. no_timer_check skips that test, so
# QEMU routes IRQ 0 through I/O APIC pin 2 as its own MP/ACPI tables say (hv passes the test).
QEMU_EXTRA = " no_timer_check"
BOOT_TIMEOUT = 300


@pytest.fixture(scope="module")
def linux_initrd(debian_linux, tmp_path_factory):
    path = tmp_path_factory.mktemp("linux") / "initrd.gz"
    path.write_bytes(linux_fixture.build_initramfs(INIT_SCRIPT, debian_linux.busybox.read_bytes()))
    return path


@pytest.fixture(scope="module")
def hv_linux_boot(debian_linux, linux_initrd):
    """``hv run`` as a user types it: (exit code, serial output, hv's messages)."""
    try:
        p = hvcmd.run(["run", "--kernel", str(debian_linux.kernel), "--initrd", str(linux_initrd),
                       "--append", CMDLINE, "--mem", "256M", "--serial", "stdio", "--no-live",
                       "--timeout", str(BOOT_TIMEOUT)],
                      capture_output=True, timeout=BOOT_TIMEOUT + 60)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hv did not honour --timeout {BOOT_TIMEOUT}: {e}")
    return p.returncode, p.stdout.decode("latin-1"), p.stderr.decode("latin-1")


def script_lines(serial: str) -> list[str]:
    """What /init printed: the lines between its markers, without the kernel's own console
    messages (they start with a [timestamp]). /proc/interrupts counts are the only
    machine-specific part (how often each line fired depends on the machine's speed and
    timing): each becomes N; everything else is compared as printed."""
    lines = serial.replace("\r", "").split("\n")
    try:
        body = lines[lines.index("==== init") + 1:lines.index("==== poweroff")]
    except ValueError:
        raise AssertionError(f"/init's markers are missing; serial tail: {serial[-2000:]!r}") from None
    out = []
    for line in body:
        if line.startswith("["):
            continue
        m = re.fullmatch(r"\s*(\d+):\s+\d+\s+(.*)", line)
        out.append(f"{m[1]}: N {' '.join(m[2].split())}" if m else line)
    return out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_debian_linux_boots_to_init_and_powers_off_through_acpi_s5(hv_linux_boot):
    code, serial, messages = hv_linux_boot
    assert "Linux version" in serial
    assert "found SMP MP-table at [mem 0x000fa030-0x000fa03f]" in serial
    assert "ACPI: RSDP 0x00000000000FA000 000024 (v02 HV    )" in serial
    assert "ACPI: PM: (supports S0 S5)" in serial
    assert "==== poweroff" in serial
    assert code == 0 and "guest powered off (ACPI S5)" in messages, (code, messages, serial[-3000:])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_boot_log_shows_both_apics_found_and_the_apic_timer_calibrated(hv_linux_boot):
    _, serial, _ = hv_linux_boot
    assert "printk: bootconsole [earlyser0] enabled" in serial       # earlyprintk=serial
    assert "IOAPIC[0]: apic_id 1, version 17, address 0xfec00000, GSI 0-23" in serial
    assert "Enabling APIC mode:  Flat.  Using 1 I/O APICs" in serial
    assert "..TIMER: vector=0x30 apic1=0 pin1=2 apic2=-1 pin2=-1" in serial
    assert "MP-BIOS bug" not in serial            # the PIT reached the I/O APIC, pin 2
    # The local APIC: Linux counts its timer against the PIT's ticks and keeps it.
    assert "Using local APIC timer interrupts." in serial
    assert re.search(r"\.\.\.\.\. calibration result: \d+", serial), serial[-3000:]
    assert "APIC timer disabled" not in serial
    for bad in ("APIC error", "Kernel panic", "BUG:"):
        assert bad not in serial, bad


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_init_prints_the_same_lines_on_hv_and_on_qemu(debian_linux, linux_initrd, hv_linux_boot):
    if not qemu_util.qemu_available():
        pytest.skip(f"{qemu_util.QEMU} not installed")
    try:
        q = subprocess.run([qemu_util.QEMU, "-kernel", str(debian_linux.kernel), "-initrd",
                            str(linux_initrd), "-append", CMDLINE + QEMU_EXTRA, "-m", "256",
                            "-display", "none", "-serial", "stdio", "-monitor", "none",
                            "-no-reboot"], capture_output=True, timeout=BOOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qemu-system-i386 did not power off within {BOOT_TIMEOUT} s")
    code, serial, _ = hv_linux_boot
    assert code == 0
    hv_lines = script_lines(serial)
    assert hv_lines == script_lines(q.stdout.decode("latin-1"))
    release = debian_linux.kernel_package.removeprefix("linux-image-")
    assert hv_lines[:2] == [f"Linux {release}", "cpus: 1"]
    # The routed ISA lines, the keyboard's AUX port (IRQ 12) included.
    assert [line.split()[0] for line in hv_lines[2:]] == ["0:", "1:", "4:", "8:", "9:", "12:"]
