"""The synthetic BIOS boots from a virtio-blk disk when there is no IDE hard disk, as SeaBIOS
does: INT 19h and INT 13h drive 0x80 are the virtio disk's store (one Disk object, so a write
through INT 13h and a read through the virtio queue see the same sectors)."""
from __future__ import annotations

import shutil

import pytest

from hv.machine import DriveSpec, Machine, MachineConfig
from tests import hvcmd
from tests.asm import assemble, write_image

pytestmark = [pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils needed"),
              pytest.mark.timeout(120)]

# Read LBA 1 with INT 13h AH=02h from the boot drive, print its text on COM1, mark the buffer
# and write it to LBA 2 with AH=03h, print the drive number's low digit, halt.
BOOT = r"""
        xor %ax, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %dl, drive
        mov $0x0201, %ax
        mov $0x0002, %cx
        xor %dh, %dh
        mov $0x8000, %bx
        int $0x13
        jc fail
        mov $0x8000, %si
        call print
        movb $'W', 0x8000
        mov $0x0301, %ax
        mov $0x0003, %cx
        xor %dh, %dh
        mov drive, %dl
        mov $0x8000, %bx
        int $0x13
        jc fail
        mov $done, %si
        call print
        cli
        hlt
fail:   mov $failed, %si
        call print
        cli
        hlt
print:  mov $0x3F8, %dx
1:      lodsb
        test %al, %al
        jz 2f
        out %al, %dx
        jmp 1b
2:      ret
drive:  .byte 0
done:   .asciz "written\n"
failed: .asciz "int13 failed\n"
"""


@pytest.fixture
def vda(tmp_path):
    return write_image(tmp_path / "vda.img", assemble(BOOT), b"read from the virtio disk\n\0",
                       bytes(512), bytes(8 << 20))


def test_synthetic_bios_boots_from_vda(vda):
    m = Machine(MachineConfig(bios="synthetic", vda=DriveSpec(str(vda)), timeout=30))
    try:
        assert m.disks.drives[0x80] is m.vdisk          # the same store, not a copy
        result = m.run()
        assert result.exit_code == 0, result.reason
        assert m.serial_text() == "read from the virtio disk\nwritten\n"
        assert m.vdisk.read(2, 1)[:1] == b"W"             # what the queue would read
    finally:
        m.close()
    assert vda.read_bytes()[1024:1025] == b"W"


def test_vda_is_not_drive_80_beside_an_ide_disk(vda, tmp_path):
    hda = write_image(tmp_path / "hda.img", assemble("cli\nhlt"), bytes(8 << 20))
    m = Machine(MachineConfig(bios="synthetic", vda=DriveSpec(str(vda)), hda=DriveSpec(str(hda))))
    try:
        assert m.disks.drives[0x80] is m.slots["hda"]
        assert m.vdisk not in m.disks.drives.values()
    finally:
        m.close()


def test_emulated_bios_does_not_see_vda(vda):
    m = Machine(MachineConfig(bios="emulated", vda=DriveSpec(str(vda)), timeout=30))
    try:
        assert 0x80 not in m.disks.drives
        result = m.run()
        assert "read from the virtio disk" not in m.serial_text(), result.reason
    finally:
        m.close()


def test_hv_run_vda_alone(vda):
    r = hvcmd.run(["run", "--bios", "synthetic", "--vda", str(vda), "--no-live", "--timeout", "30"],
                  capture_output=True, text=True, timeout=120)
    assert "read from the virtio disk\nwritten\n" in r.stdout, r.stdout + r.stderr
