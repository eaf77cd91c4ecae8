"""The VM flavors of a container image (hv/container/vmflavor.py): ``hv image to-disk``, the disk
read back into a container's layers, and ``hv container run --isolation full|enlightened``.

Until the full configuration of hv's guest kernel is built (guests/images/uvmfull.sys), the runs
use stand-in boot sectors made here: they do what the kernel's last steps do (the POST code
before the program, output on COM1 or through UVM_WRITE, power-off) so the host side is tested on
its own. The tests with the real kernel skip, saying so, while it is missing."""
from __future__ import annotations

import dataclasses
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from hv import guests
from hv.container import fatdisk, hive, vmflavor
from hv.container.container import ContainerStore, main_container
from hv.container.images import ImageStore, main_image
from hv.container.registry import LayeredRegistry
from tests.container.conftest import cli
from tests.container.test_containers import tree_digest

MTOOLS = shutil.which("mdir") and shutil.which("mtype") and shutil.which("mcopy") and shutil.which("mdel")
needs_mtools = pytest.mark.skipif(not MTOOLS, reason="mtools not installed (apt-get install mtools)")
needs_as = pytest.mark.skipif(shutil.which("as") is None, reason="GNU binutils needed for the stand-in")
KERNEL_BUILT = (Path(guests.IMAGES_DIR) / "uvmfull.sys").exists() and \
    (Path(guests.IMAGES_DIR) / "fatboot.bin").exists()
needs_kernel = pytest.mark.skipif(not KERNEL_BUILT, reason="the full-VM kernel is not built yet "
                                  "(guests/images/uvmfull.sys, fatboot.bin)")

_HEAD = "jmp start\nnop\n.fill 0x3E - 3, 1, 0\nstart: xor %ax, %ax\nmov %ax, %ds\n" \
        "mov $0xE0, %al\nout %al, $0x80\n"
# The full VM's stand-in: the message on COM1, then ACPI S5.
FULL = _HEAD + r"""
        mov $msg, %si
        mov $0x3F8, %dx
1:      lodsb
        test %al, %al
        jz 2f
        out %al, %dx
        jmp 1b
2:      mov $0x604, %dx
        mov $0x3400, %ax
        out %ax, %dx
        cli
        hlt
msg:    .asciz "hello from the stand-in\n"
"""
# The enlightened VM's: UVM_WRITE to stream 1 and 2, then hv_poweroff(7).
ENLIGHTENED = _HEAD + r"""
        mov $1, %ebx
        mov $msg, %ecx
        mov $(end - msg), %edx
        .byte 0x0f, 0x01, 0xc1
        .word 0x0010
        mov $2, %ebx
        .byte 0x0f, 0x01, 0xc1
        .word 0x0010
        mov $7, %ebx
        .byte 0x0f, 0x01, 0xc1
        .word 0x0003
        cli
        hlt
msg:    .ascii "hello from the stand-in\n"
end:
"""
PLACEHOLDER_BOOT = b"\xeb\x3c\x90" + bytes(0x3B) + b"\xfa\xf4" + bytes(0x200 - 0x40 - 2) + b"\x55\xaa"


def stand_in(flavor: str) -> bytes:
    from tests.asm import assemble
    return assemble(FULL if flavor == "full" else ENLIGHTENED)


@pytest.fixture
def placeholder(monkeypatch):
    """Boot files for to-disk when the real ones are not built (never shipped)."""
    if not KERNEL_BUILT:
        monkeypatch.setattr(vmflavor, "boot_files", lambda: (PLACEHOLDER_BOOT, b"K" * 3000))


def mtype(img, path) -> bytes:
    return subprocess.run(["mcopy", "-n", "-i", str(img), f"::{path}", "-"], capture_output=True,
                          check=True).stdout


# -- hv image to-disk -------------------------------------------------------------------------------

@needs_mtools
def test_to_disk_is_read_by_mtools(home, tmp_path, placeholder, capfd):
    img = tmp_path / "svc.img"
    assert main_image(["to-disk", "svc", str(img)]) == 0
    assert "wrote" in capfd.readouterr().out
    assert img.stat().st_size == 32 << 20
    listing = subprocess.run(["mdir", "-/", "-b", "-a", "-i", str(img), "::/"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert {"::/bin/service", "::/etc/service.conf", "::/srv/data/b.bin", "::/.hv/registry.hiv"} \
        <= {p.rstrip("/") for p in listing}
    assert mtype(img, "/etc/service.conf") == (tmp_path / "imgdir/etc/service.conf").read_bytes()
    assert mtype(img, "/bin/service") == (tmp_path / "imgdir/bin/service").read_bytes()
    h = hive.decode(mtype(img, "/.hv/registry.hiv"))
    assert h[("HKLM", "SOFTWARE", "HV", "SERVICE")].values["GREETING"][2] == b"hello from the image\0"
    boot, kernel = vmflavor.boot_files()
    raw = img.read_bytes()
    assert raw[:3] == boot[:3] and raw[0x3E:0x200] == boot[0x3E:]
    assert raw[512:512 + len(kernel)] == kernel
    if shutil.which("fsck.fat"):
        r = subprocess.run(["fsck.fat", "-n", str(img)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_to_disk_one_line_errors(home, tmp_path, placeholder, capfd):
    for argv, msg in ((["to-disk", "nope", "d.img"], "no image named nope"),
                      (["to-disk", "svc", "d.img", "--size", "12q"], "expected a size"),
                      (["to-disk", "svc", "d.img", "--size", "1M"], "4M to 2G")):
        capfd.readouterr()
        assert main_image(argv[:2] + [str(tmp_path / argv[2])] + argv[3:]) == 2
        err = capfd.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    big = tmp_path / "bigdir"
    big.mkdir()
    (big / "huge").write_bytes(bytes(5 << 20))
    ImageStore(home).build(big, "big")
    capfd.readouterr()
    assert main_image(["to-disk", "big", str(tmp_path / "b.img"), "--size", "4M"]) == 2
    err = capfd.readouterr().err
    assert "do not fit" in err and err.count("\n") == 1
    assert not (tmp_path / "b.img").exists()


def test_to_disk_without_the_kernel_says_so(home, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(guests, "IMAGES_DIR", str(tmp_path / "nowhere"))
    assert main_image(["to-disk", "svc", str(tmp_path / "d.img")]) == 2
    assert "not built" in capfd.readouterr().err


def test_to_disk_writes_the_launch_of_the_image_command(home, tmp_path, placeholder, monkeypatch):
    store = ImageStore(home)
    assert "/.hv/launch" not in vmflavor.image_to_disk(store, "svc", tmp_path / "a.img").offsets
    image = dataclasses.replace(store.get("svc"), config={
        "Entrypoint": ["/bin/service"], "Cmd": ["2"], "WorkingDir": "/srv", "Env": ["MODE=disk"]})
    monkeypatch.setattr(store, "get", lambda name: image)
    vmflavor.image_to_disk(store, "svc", tmp_path / "b.img")
    with fatdisk.Volume(tmp_path / "b.img") as v:
        launch = v.read_file(v.tree().entries[".hv"].entries["launch"])
    magic, size, _, argc, envc = struct.unpack_from("<IIQII", launch)
    strings = launch[24:size].split(b"\0")[:-1]
    assert (magic, argc) == (0x4C4D5655, 2) and size == len(launch)
    assert strings[:4] == [b"/bin/service", b"/srv", b"/bin/service", b"2"]
    assert b"MODE=disk" in strings[4:] and len(strings) == 4 + envc


# -- reading the disk back into the container -------------------------------------------------------

@needs_mtools
def test_read_back_applies_files_and_registry(home, tmp_path):
    """What a guest would do, done with mtools on the disk: the changes land in the container's
    layers, `diff` shows them, the image stays as it was."""
    store = ContainerStore(home)
    image = store.images.get("svc")
    before_image = tree_digest(image.lowers[0])
    c = store.create(image, ["/bin/service"])
    root = store.open_root(c, image)
    reg = store.open_registry(c, image)
    img = tmp_path / "d.img"
    disk = vmflavor.build_disk(img, root, reg, boot=PLACEHOLDER_BOOT, kernel=b"K" * 3000)
    src = tmp_path / "new.txt"
    src.write_bytes(b"made in the VM\n")
    m = ["-i", str(img)]
    subprocess.run(["mcopy", *m, str(src), "::/new.txt"], check=True)
    subprocess.run(["mcopy", "-o", *m, str(src), "::/etc/service.conf"], check=True)
    subprocess.run(["mdel", *m, "::/srv/data/a.txt"], check=True)
    subprocess.run(["mdeltree", *m, "::/var"], check=True)
    subprocess.run(["mcopy", *m, str(src), "::/.wh.evil"], check=True)   # a name layers reserve
    after = hive.decode(disk.hive_bytes)
    svc = ("HKLM", "SOFTWARE", "HV", "SERVICE")
    after[svc].values["MODE"] = ("Mode", 1, b"vm\0")
    (tmp_path / "hive").write_bytes(hive.encode(after))
    subprocess.run(["mcopy", "-o", *m, str(tmp_path / "hive"), "::/.hv/registry.hiv"], check=True)
    (tmp_path / "exit").write_bytes(b"status 3\nsyscalls 12\ndisk_writes 4\nbogus line\n")
    subprocess.run(["mcopy", *m, str(tmp_path / "exit"), "::/.hv/exit"], check=True)

    back = vmflavor.read_back(img)
    assert vmflavor.parse_exit(back.exit_text) == (3, {"syscalls": 12, "disk_writes": 4})
    warnings = []
    changes = vmflavor.apply_files(root, disk.manifest, back.files, warnings.append)
    hive.apply(reg, disk.hive_before, hive.decode(back.hive_bytes))
    assert len(warnings) == 1 and warnings[0].startswith("/.wh.evil: not applied")
    root.close()
    reg.close()
    assert sorted(changes) == [("A", "/new.txt"), ("C", "/etc/service.conf"),
                               ("D", "/srv/data/a.txt"), ("D", "/var")]
    diff = store.diff(c)
    assert ("A", "/new.txt") in diff and ("C", "/etc/service.conf") in diff
    assert ("D", "/srv/data/a.txt") in diff and ("D", "/var") in diff
    assert ("C", "HKLM\\Software\\hv\\service\\:Mode") in diff
    assert (c.upper / "new.txt").read_bytes() == b"made in the VM\n"
    assert tree_digest(image.lowers[0]) == before_image


def test_read_back_of_a_damaged_disk_applies_nothing(home, tmp_path):
    store = ContainerStore(home)
    image = store.images.get("svc")
    c = store.create(image, ["/bin/service"])
    with store.open_root(c, image) as root:
        reg = store.open_registry(c, image)
        img = tmp_path / "d.img"
        vmflavor.build_disk(img, root, reg, boot=PLACEHOLDER_BOOT, kernel=b"")
        reg.close()
    raw = bytearray(img.read_bytes())
    raw[0x0B:0x0D] = b"\x00\x04"
    img.write_bytes(raw)
    with pytest.raises(fatdisk.FatError):
        vmflavor.read_back(img)
    assert store.diff(c) == []


def test_parse_exit_is_bounded():
    assert vmflavor.parse_exit(None) == (None, {})
    assert vmflavor.parse_exit(b"status 300\n") == (None, {})
    with pytest.raises(vmflavor.FlavorError):
        vmflavor.parse_exit(b"x" * 5000)


def test_symlinks_are_stored_as_files_or_left_off(tmp_path):
    from hv.container.layers import LayeredRoot
    top = tmp_path / "t"
    (top / "d").mkdir(parents=True)
    (top / "f").write_text("data")
    (top / "to_f").symlink_to("f")
    (top / "to_d").symlink_to("d")
    (top / "dangling").symlink_to("nowhere")
    warnings = []
    with LayeredRoot.from_directory(top) as root:
        tree, manifest = vmflavor.view_tree(root, warnings.append)
        f = tree.entries["to_f"]
        fd = f.opener()
        assert f.size == 4 and os.read(fd, 10) == b"data"
        os.close(fd)
    assert "to_d" not in tree.entries and "dangling" not in tree.entries
    assert sorted(manifest) == ["/d", "/f", "/to_f"]
    assert len(warnings) == 2


# -- runs with the stand-in --------------------------------------------------------------------------

@needs_as
@pytest.mark.parametrize("flavor", vmflavor.FLAVORS)
def test_run_disk_vm_with_a_stand_in(tmp_path, flavor):
    from hv.container.layers import LayeredRoot
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "f.txt").write_text("x")
    out, err, stats = [], [], {}
    with LayeredRoot.from_directory(tmp_path / "root") as root:
        status = vmflavor.run_disk_vm(
            flavor, root, lambda: LayeredRegistry([], tmp_path / "reg.db"), "/bin/x", ["x"], [], "/",
            stdout=out.append, stderr=err.append, stats=stats, boot=stand_in(flavor),
            kernel=b"K" * 1000, timeout=60)
    assert b"".join(out) == b"hello from the stand-in\n"
    if flavor == "full":
        assert status == 0 and stats["exits pio com1"] >= 24
    else:
        assert status == 7 and b"".join(err) == b"hello from the stand-in\n"
        assert stats["exits hypercall uvm:write"] == 2
    for k in ("disk_ms", "machine_ms", "boot_ms", "run_ms", "readback_ms", "start_ms", "workload_ms"):
        assert isinstance(stats[k], float) and stats[k] >= 0, k
    assert stats["start_ms"] >= stats["boot_ms"]


@needs_as
def test_container_run_full_with_a_stand_in(home, monkeypatch, capfd):
    monkeypatch.setattr(vmflavor, "boot_files", lambda: (stand_in("full"), b"K" * 1000))
    status = main_container(["run", "--name", "f", "--isolation", "full", "--stats", "svc", "/bin/service"])
    out, err = capfd.readouterr()
    assert status == 0, err
    assert out == "hello from the stand-in\n"
    assert "start_ms" in err and "exits" in err
    store = ContainerStore(home)
    c = store.get("f")
    assert c.record["isolation"] == "full" and c.state == "exited"
    assert (c.path / "stdout").read_bytes() == b"hello from the stand-in\n"
    assert not (c.path / "disk.img").exists()
    assert store.diff(c) == []


def test_container_run_refuses_strace_in_a_vm(home, capfd):
    assert main_container(["run", "--rm", "--isolation", "enlightened", "--strace", "svc", "/bin/x"]) != 0
    assert "--strace needs --isolation process" in capfd.readouterr().err


# -- the real kernel ---------------------------------------------------------------------------------

def _service(hv_run, isolation: str, name: str):
    return hv_run("run", "--name", name, "--isolation", isolation, "svc", "/bin/service")


@pytest.fixture
def hv(home, capfd):
    return cli(capfd)


@needs_kernel
def test_service_output_equal_in_every_flavor(hv, home):
    outputs = {}
    for isolation in ("process", "vm", "enlightened", "full"):
        status, out, err = _service(hv, isolation, f"s-{isolation}")
        assert status == 0, (isolation, err)
        outputs[isolation] = out
    assert len(set(outputs.values())) == 1, outputs
    store = ContainerStore(home)
    for isolation in ("enlightened", "full"):
        diff = store.diff(store.get(f"s-{isolation}"))
        assert ("A", "/var/log/service.log") in diff, (isolation, diff)
        assert any("Runs" in p for _, p in diff), (isolation, diff)


@needs_kernel
@pytest.mark.parametrize("isolation", ["enlightened", "full"])
def test_vm_write_shows_in_diff_and_image_unchanged(hv, home, isolation):
    store = ContainerStore(home)
    image = store.images.get("svc")
    before = tree_digest(image.lowers[0])
    status, out, err = hv("run", "--name", "w", "--isolation", isolation, "svc", "/bin/escape",
                          "u", "/etc/service.conf", "w", "/new.txt")
    assert status == 0, err
    assert hv("diff", "w")[1].splitlines() == ["C /etc", "D /etc/service.conf", "A /new.txt"]
    assert tree_digest(image.lowers[0]) == before


def _disk_for(home, tmp_path):
    store = ContainerStore(home)
    image = store.images.get("svc")
    c = store.create(image, ["/bin/service"])
    root = store.open_root(c, image)
    reg = store.open_registry(c, image)
    disk = vmflavor.build_disk(tmp_path / "d.img", root, reg, boot=PLACEHOLDER_BOOT, kernel=b"",
                               launch_slot=True)
    return store, c, root, reg, disk


def test_read_back_skips_what_the_run_did_not_write(home, tmp_path):
    store, c, root, reg, disk = _disk_for(home, tmp_path)
    with fatdisk.Volume(disk.path) as v:
        sectors = v.size // 512
    dirty = bytearray(sectors)
    back = vmflavor.read_back(disk.path, disk, dirty)
    files = {p: d for p, d in back.files.items() if d is not None}
    assert files and all(d is vmflavor.UNCHANGED for d in files.values())
    # A write in place (same size, same clusters) in one file: that file alone is read.
    off, size = disk.offsets["/etc/service.conf"]
    with open(disk.path, "r+b") as f:
        f.seek(off)
        f.write(b"NAME")
    dirty[off // 512] = 1
    back = vmflavor.read_back(disk.path, disk, dirty)
    assert back.files["/etc/service.conf"].startswith(b"NAME")
    assert back.files["/bin/service"] is vmflavor.UNCHANGED
    assert vmflavor.apply_files(root, disk.manifest, back.files) == [("C", "/etc/service.conf")]
    # the same bytes written again are no change
    (c.upper / "etc" / "service.conf").unlink()
    (c.upper / "etc").rmdir()
    with open(disk.path, "r+b") as f:
        f.seek(off)
        f.write(b"name")
    back = vmflavor.read_back(disk.path, disk, dirty)
    assert vmflavor.apply_files(root, disk.manifest, back.files) == []
    root.close()
    reg.close()
    assert store.diff(c) == []


@needs_kernel
@pytest.mark.parametrize("isolation", ["enlightened", "full"])
def test_missing_program_is_one_line(hv, isolation):
    status, out, err = hv("run", "--rm", "--isolation", isolation, "svc", "/bin/nope")
    assert status == 127 and "cannot run /bin/nope: no such file" in err


@needs_mtools
def test_launch_slot_filled_through_the_disk(home, tmp_path):
    """write_launch puts an exact file in the slot: data, size, FAT chain cut (fsck agrees)."""
    from hv.devices.disk_store import Disk
    store, c, root, reg, disk = _disk_for(home, tmp_path)
    root.close()
    reg.close()
    launch = vmflavor.launch_block("/bin/service", "/", ["/bin/service", "x" * 5000], ["A=1"])
    with Disk(disk.path, "hd") as d:
        vmflavor.write_launch(d, disk, launch)
    assert mtype(disk.path, "/.hv/launch") == bytes(launch)
    if shutil.which("fsck.fat"):
        r = subprocess.run(["fsck.fat", "-n", str(disk.path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    with pytest.raises(vmflavor.FlavorError):
        with Disk(disk.path, "hd") as d:
            vmflavor.write_launch(d, disk, bytes(vmflavor.LAUNCH_MAX + 1))


@needs_kernel
@pytest.mark.parametrize("isolation", ["enlightened", "full"])
def test_fresh_containers_share_a_cached_disk_and_runs_add_up(hv, home, isolation):
    """Fresh containers boot from one cached disk (never written: each VM has an overlay);
    a second run of a container sees its first run's writes (the disk is built from its view)."""
    for name in ("a", "b"):
        status, out, err = hv("run", "--name", name, "--isolation", isolation, "svc", "/bin/service")
        assert status == 0, err
        assert "has 1 line" in out and "Runs=1" in out
    cached = list((home / "cache" / "flavor-disks").glob("*.img"))
    assert len(cached) == 1
    before = cached[0].read_bytes()
    store = ContainerStore(home)
    c = store.get("a")
    r = vmflavor.run_flavor_containers(store, [c], isolation)
    assert r == [0]
    assert "has 2 lines" in (c.path / "stdout").read_text() and "Runs=2" in (c.path / "stdout").read_text()
    assert cached[0].read_bytes() == before


@needs_kernel
@pytest.mark.parametrize("isolation", ["enlightened", "full"])
def test_store_api_keep_and_inject(home, isolation):
    """What hv flavors calls: a kept VM stays alive; a fault injected into the guest kernel
    (its IDT zeroed as the program starts) ends that VM alone, with status 125."""
    store = ContainerStore(home)
    image = store.images.get("svc")

    def zero_idt(machine):
        from unicorn.x86_const import UC_X86_REG_IDTR
        _, base, limit, _ = machine.vcpu.uc.reg_read(UC_X86_REG_IDTR)
        machine.mem.write(base, bytes(limit + 1))
    keep, out = [], []
    a = store.create(image, ["/bin/hog", "spin", "20000000"])
    status = vmflavor.run_in_vm_flavor(isolation, store, a, stdout=out.append, stderr=out.append,
                                       keep=keep, inject=zero_idt, timeout=60)
    assert status == vmflavor.EXIT_VM_FAILED, b"".join(out)
    assert len(keep) == 1 and keep[0].machine.result is not None
    b = store.create(image, ["/bin/service"])
    stats = {}
    assert vmflavor.run_in_vm_flavor(isolation, store, b, stdout=out.append, stderr=out.append,
                                     stats=stats) == 0
    assert stats["start_ms"] > 0 and stats["workload_ms"] > 0
    keep[0].close()


@needs_kernel
def test_to_disk_image_boots_its_command_under_hv_run(home, tmp_path, monkeypatch):
    """The docs' `hv run --bios emulated --hda disk.img`: the image's command runs, on COM1."""
    from hv.machine import DriveSpec, Machine, MachineConfig
    store = ImageStore(home)
    image = dataclasses.replace(store.get("svc"), config={"Cmd": ["/bin/service"]})
    monkeypatch.setattr(store, "get", lambda name: image)
    vmflavor.image_to_disk(store, "svc", tmp_path / "d.img")
    m = Machine(MachineConfig(bios="emulated", hda=DriveSpec(str(tmp_path / "d.img")), timeout=60,
                              mem_size=64 << 20))
    try:
        result = m.run()
        assert result.reason.startswith("guest powered off"), result.reason
        assert "svc: hi there, done" in m.serial_text()
    finally:
        m.close()


@needs_kernel
@pytest.mark.skipif(not shutil.which("fsck.fat"), reason="fsck.fat not installed (dosfstools)")
@pytest.mark.parametrize("isolation", ["enlightened", "full"])
def test_the_guest_leaves_a_clean_volume(home, tmp_path, isolation):
    """After the guest's FAT code wrote the log, the hive and /.hv/exit, fsck.fat finds the
    volume (base and overlay together) clean."""
    store = ContainerStore(home)
    c = store.create(store.images.get("svc"), ["/bin/service"])
    keep, out = [], []
    assert vmflavor.run_in_vm_flavor(isolation, store, c, stdout=out.append, stderr=out.append,
                                     keep=keep) == 0
    m = keep[0].machine
    disk = m.slots["hda"] if isolation == "full" else m.vdisk
    img = tmp_path / "after.img"
    with open(img, "wb") as f:
        for lba in range(0, disk.sectors, 2048):
            f.write(disk.read(lba, min(2048, disk.sectors - lba)))
    keep[0].close()
    r = subprocess.run(["fsck.fat", "-n", str(img)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"status 0" in mtype(img, "/.hv/exit")
    assert mtype(img, "/var/log/service.log").count(b"\n") == 1
