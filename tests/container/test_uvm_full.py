"""The guest kernel's full configuration (guests/src/uvm/, -DUVM_FULL; docs/vm-flavors.md): it
boots through the BIOS from a FAT16 disk and serves every file and registry call itself, with
its own ATA PIO / virtio-blk driver, FAT driver and registry.

The disks here are made with mtools alone (mformat -B fatboot.bin, uvmfull.sys in the reserved
area, mcopy), not with `hv image to-disk`, so the guest side is tested against an independent
FAT implementation: what the guest writes, mtools reads back, and the other way round.
Full VM = emulated BIOS + IDE disk; enlightened VM = synthetic BIOS + virtio-blk disk."""
from __future__ import annotations

import math
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from hv import guests
from hv.container.uvm import launch_block
from hv.machine import DriveSpec, Machine, MachineConfig
from tests.container.conftest import cli, service_home

IMAGES = Path(guests.IMAGES_DIR)
MTOOLS = ("mformat", "mcopy", "mmd", "mtype", "mdir", "mshowfat", "mdel")
pytestmark = [
    pytest.mark.skipif(any(shutil.which(t) is None for t in MTOOLS), reason="mtools not installed"),
    pytest.mark.skipif(not (IMAGES / "uvmfull.sys").exists(), reason="uvmfull.sys not built"),
]
FLAVORS = ("full", "enlightened")
SECTORS = 65536                                   # 32 MiB, the contract's default size
RAM = 64 << 20
CONF = "name=svc\ngreeting=hi there\nrounds=3\n"


def make_disk(path: Path, files: dict[str, bytes], prog: str, args: list[str] = (),
              hive: bytes | None = None, epoch_ns: int = 0) -> Path:
    """A bootable disk as the contract lays it out, made by mtools; `files` by path."""
    boot, kernel = IMAGES / "fatboot.bin", (IMAGES / "uvmfull.sys").read_bytes()
    reserved = 1 + math.ceil(len(kernel) / 512)
    reserved += -reserved % 8
    subprocess.run(["mformat", "-i", str(path), "-C", "-T", str(SECTORS), "-h", "16", "-s", "63",
                    "-R", str(reserved), "-c", "4", "-r", "32", "-v", "HV", "-B", str(boot), "::"],
                   check=True, capture_output=True)
    with open(path, "r+b") as f:
        f.seek(512)
        f.write(kernel)
    stage = path.parent / (path.name + ".files")
    stage.mkdir()
    files = dict(files)
    block = launch_block(prog, "/", [Path(prog).name, *args], ["PATH=/bin"], 65536)
    struct.pack_into("<Q", block, 8, epoch_ns)     # CLOCK_REALTIME at the VM clock's 0
    files["/.hv/launch"] = bytes(block)
    if hive is not None:
        files["/.hv/registry.hiv"] = hive
    made = set()
    for name, data in files.items():
        parts = name.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                subprocess.run(["mmd", "-i", str(path), f"::/{d}"], check=True, capture_output=True)
                made.add(d)
        local = stage / f"f{len(made)}-{len(list(stage.iterdir()))}"
        local.write_bytes(data)
        subprocess.run(["mcopy", "-i", str(path), str(local), f"::{name}"], check=True, capture_output=True)
    return path


def program(name: str) -> bytes:
    return guests.linux_program_path(name).read_bytes()


def boot(disk: Path, flavor: str, timeout: float = 60, ram: int = RAM) -> tuple[str, bytes, dict]:
    """Boot the disk; (how the run ended, the output, /.hv/exit as a dict)."""
    out = bytearray()
    spec = DriveSpec(str(disk))
    if flavor == "full":
        cfg = MachineConfig(board="pc", bios="emulated", hda=spec, mem_size=ram, serial=out.extend,
                            timeout=timeout)
    else:
        cfg = MachineConfig(board="pc", bios="synthetic", vda=spec, mem_size=ram, timeout=timeout,
                            serial=out.extend)
    m = Machine(cfg)
    if flavor == "enlightened":                   # what the host registers for this flavor
        def write(ctx):
            out.extend(ctx.mem.read(ctx.regs.ecx, min(ctx.regs.edx, 1 << 20)))
            ctx.regs.eax = ctx.regs.edx
        m.hypercalls.register(0x0010, "uvm:write", write)
        m.hypercalls.register(0x0003, "direct:poweroff", lambda ctx: m.finish(ctx.regs.ebx & 0xFF, "poweroff"))
    try:
        result = m.run()
    finally:
        m.close()
    return result.reason, bytes(out), read_exit(disk)


def mtype(disk: Path, name: str) -> bytes | None:
    p = subprocess.run(["mtype", "-i", str(disk), f"::{name}"], capture_output=True)
    return p.stdout if p.returncode == 0 else None


def read_exit(disk: Path) -> dict:
    text = mtype(disk, "/.hv/exit")
    if text is None:
        return {}
    return {k: int(v) for k, v in (line.split() for line in text.decode().splitlines())}


def fsck_clean(disk: Path) -> None:
    """dosfstools' checker finds nothing to fix (lost clusters, bad chains, bad long names)."""
    if shutil.which("fsck.fat") is None:
        return
    p = subprocess.run(["fsck.fat", "-n", str(disk)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def names(disk: Path, folder: str) -> set[str]:
    """The long names in a folder, as mtools reads them (mdir -b: one path a line)."""
    p = subprocess.run(["mdir", "-i", str(disk), "-b", f"::{folder}"], capture_output=True, text=True)
    return {line.rstrip("/").rsplit("/", 1)[-1] for line in p.stdout.splitlines() if line.strip()}


def service_files() -> dict[str, bytes]:
    return {"/bin/service": program("service"), "/etc/service.conf": CONF.encode(),
            "/srv/data/a.txt": b"alpha\n", "/srv/data/b.bin": bytes(range(256)) * 40,
            "/var/log/.keep": b""}


def hive(*keys: tuple[str, list[tuple[str, int, bytes]]]) -> bytes:
    """An "hvhive1" file: the two roots first, then `keys` (path, [(name, type, data)])."""
    records = [(r, []) for r in ("HKEY_LOCAL_MACHINE", "HKEY_CURRENT_USER")] + list(keys)
    body = b""
    count = 0
    for path, values in records:
        p = path.encode()
        body += struct.pack("<BH", 1, len(p)) + p
        count += 1
        for name, type_, data in values:
            n = name.encode()
            body += struct.pack("<BH", 2, len(n)) + n + struct.pack("<II", type_, len(data)) + data
            count += 1
    return b"hvhive1\0" + struct.pack("<I", count) + body


SERVICE_HIVE = hive(("HKEY_LOCAL_MACHINE\\Software", []), ("HKEY_LOCAL_MACHINE\\Software\\hv", []),
                    ("HKEY_LOCAL_MACHINE\\Software\\hv\\service",
                     [("Greeting", 1, b"hello from the image\0"), ("Mode", 1, b"test\0")]))


# -- the boot path and the two drivers ------------------------------------------------------------
@pytest.mark.parametrize("flavor", FLAVORS)
def test_hello_boots_from_the_disk_and_prints(tmp_path, flavor):
    disk = make_disk(tmp_path / "d.img", {"/bin/hello": program("hello")}, "/bin/hello")
    reason, out, ex = boot(disk, flavor)
    assert b"hello from a container\n" in out
    assert b"sum of squares 1..100 = 338350\n" in out
    assert ex["status"] == 0 and ex["syscalls"] > 0 and ex["disk_reads"] > 0
    assert 0 < ex["kernel_start_us"] < ex["program_start_us"]   # the machine clock, from power-on
    # The flavor is the disk it found: IDE (no virtio doorbells) or virtio-blk.
    assert (ex["doorbells"] > 0) == (flavor == "enlightened")
    assert ex["p9_messages"] > 0 and ex["p9_calls"] == 0      # 9P messages, answered in the guest


def test_the_boot_files_are_what_the_build_makes(tmp_path):
    from hv.guests import build
    built = build.build_full(tmp_path)
    for p in built:
        assert p.read_bytes() == (IMAGES / p.name).read_bytes(), p.name
    boot_sector = (IMAGES / "fatboot.bin").read_bytes()
    assert len(boot_sector) == 512 and boot_sector[510:] == b"\x55\xaa" and boot_sector[0] == 0xEB
    assert len((IMAGES / "uvmfull.sys").read_bytes()) % 512 == 0


# -- files: the guest's FAT driver against mtools ---------------------------------------------------
@pytest.mark.parametrize("flavor", FLAVORS)
def test_service_reads_long_names_and_its_writes_are_read_by_mtools(tmp_path, flavor):
    long_name = "a rather long file name, over 26 characters.dat"
    files = service_files()
    files[f"/srv/data/{long_name}"] = b"x" * 5000
    disk = make_disk(tmp_path / "d.img", files, "/bin/service", hive=SERVICE_HIVE)
    reason, out, ex = boot(disk, flavor)
    text = out.decode()
    assert ex["status"] == 0, text
    assert 'config: name=svc rounds=3 greeting="hi there"' in text
    assert 'registry: Greeting="hello from the image"' in text and "registry: Runs=1" in text
    assert "data: 3 files in srv/data" in text
    assert f"crc32 {zlib.crc32(b'x' * 5000):08x}" in text and long_name[:20] in text
    assert mtype(disk, "/var/log/service.log").count(b"\n") == 1
    # The second boot sees the first one's writes: the log and the registry (the hive).
    reason, out, ex = boot(disk, flavor)
    assert "registry: Runs=2" in out.decode() and "has 2 lines" in out.decode()
    fsck_clean(disk)


def test_files_program_results_are_on_the_disk(tmp_path):
    now = time.time_ns()
    disk = make_disk(tmp_path / "d.img", {"/bin/files": program("files"),
                                          "/input.txt": b"first line\nsecond line\n"}, "/bin/files",
                     epoch_ns=now)
    reason, out, ex = boot(disk, "full")
    text = out.decode()
    assert ex["status"] == 0
    assert "line 2: second line" in text and "after ftruncate size=18" in text
    assert "work: [d .] [d ..] [f a.txt] [f b.txt]" in text
    # FAT has no symbolic or hard links: those calls fail, as on a Linux vfat mount.
    assert 'symlink("a.txt", "work/link"): Operation not permitted' in text
    assert mtype(disk, "/output.txt") == b"lines=2\n"
    assert mtype(disk, "/work/a.txt") == b"record 0\nrecord 1\n"
    assert mtype(disk, "/work/b.txt") == b"via openat\n"
    assert names(disk, "/work") == {"a.txt", "b.txt"}            # sub was removed
    # Written files carry the launch block's clock as their FAT time (UTC), as mtools shows it.
    listing = subprocess.run(["mdir", "-i", str(disk), "::/output.txt"], capture_output=True,
                             text=True).stdout
    days = {time.strftime("%Y-%m-%d", time.gmtime(now / 1e9 + d)) for d in (0, 60)}
    assert any(day in listing for day in days), listing
    fsck_clean(disk)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_many_long_names_grow_a_directory_and_mtools_agrees(tmp_path, flavor):
    # 120 files with long names: 4 entries each, so the folder grows to 8 clusters of 64.
    made = [f"d/a file with a long name number {i:03d}.txt" for i in range(120)]
    ops = [x for n in made for x in ("w", n)] + ["u", made[5], "r", made[7], "r", "d/NOPE.TXT"]
    disk = make_disk(tmp_path / "d.img", {"/bin/escape": program("escape"), "/d/KEEP.TXT": b"k\n"},
                     "/bin/escape", ops)
    reason, out, ex = boot(disk, flavor)
    lines = out.decode().splitlines()
    assert ex["status"] == 0
    assert lines[:120] == [f"w {n}: ok" for n in made]
    assert lines[120:] == [f"u {made[5]}: ok", f"r {made[7]}: read \"escaped\"",
                           "r d/NOPE.TXT: No such file or directory"]
    expected = {n.split("/")[1] for n in made} - {made[5].split("/")[1]} | {"KEEP.TXT"}
    assert names(disk, "/d") == expected
    assert mtype(disk, "/" + made[119]) == b"escaped\n"
    fsck_clean(disk)


# -- hostile disks: an error, never a hang ------------------------------------------------------------
def _fat_offsets(disk: Path) -> tuple[list[int], int]:
    """Byte offsets of the FAT copies, and the cluster count."""
    bs = disk.read_bytes()[:512]
    reserved, nfats, fatsz = struct.unpack_from("<H", bs, 14)[0], bs[16], struct.unpack_from("<H", bs, 22)[0]
    return [(reserved + i * fatsz) * 512 for i in range(nfats)], fatsz * 256


def _clusters(disk: Path, name: str) -> list[int]:
    out = subprocess.run(["mshowfat", "-i", str(disk), f"::{name}"], capture_output=True, text=True).stdout
    runs = out.split("<", 1)[1].split(">", 1)[0].split()
    found = []
    for r in runs:
        a, _, b = r.partition("-")
        found += range(int(a), int(b or a) + 1)
    return found


@pytest.mark.parametrize("damage", ["loop", "out_of_range", "free", "cut_short"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_corrupt_fat_chain_is_an_error_for_the_program_not_a_hang(tmp_path, flavor, damage):
    disk = make_disk(tmp_path / "d.img", {"/bin/hello": program("hello")}, "/bin/hello")
    chain = _clusters(disk, "/bin/hello")
    at = chain[len(chain) // 2]
    link = {"loop": chain[1], "out_of_range": 0xFFF0, "free": 0, "cut_short": 0xFFFF}[damage]
    offsets, _ = _fat_offsets(disk)

    def set_link(value: int) -> None:
        with open(disk, "r+b") as f:
            for base in offsets:
                f.seek(base + 2 * at)
                f.write(struct.pack("<H", value))
    good = struct.unpack_from("<H", disk.read_bytes(), offsets[0] + 2 * at)[0]
    set_link(link)
    reason, out, ex = boot(disk, flavor, timeout=60)
    assert reason.startswith("guest powered off") or reason == "poweroff", reason
    set_link(good)                               # so that mtools reads the disk again
    assert read_exit(disk)["status"] == 126      # the program could not be read: exec failed


@pytest.mark.parametrize("field,value", [(11, b"\x00\x04"),     # 1024-byte sectors
                                         (13, b"\x03"),         # 3 sectors per cluster
                                         (32, b"\xff\xff\xff\x7f")])   # more sectors than the disk
def test_a_bad_volume_is_refused_with_a_message(tmp_path, field, value):
    disk = make_disk(tmp_path / "d.img", {"/bin/hello": program("hello")}, "/bin/hello")
    with open(disk, "r+b") as f:
        f.seek(field)
        f.write(value)
    reason, out, ex = boot(disk, "full", timeout=60)
    assert reason.startswith("guest powered off")
    assert b"uvmfull: the boot disk is not a FAT16 volume" in out


def test_a_directory_without_end_is_an_error(tmp_path):
    # /d: one cluster of deleted entries (no end marker) whose chain points back at itself.
    # A lookup must stop at the 65536-entry limit with EIO, not spin.
    disk = make_disk(tmp_path / "d.img", {"/bin/escape": program("escape"), "/d/A.TXT": b"a\n"},
                     "/bin/escape", ["r", "d/MISSING.TXT", "w", "d/new name.txt"])
    d_first = _clusters(disk, "/d")[0]
    offsets, _ = _fat_offsets(disk)
    bs = disk.read_bytes()[:512]
    spc, root = bs[13], struct.unpack_from("<H", bs, 17)[0]
    data = offsets[-1] + (offsets[1] - offsets[0] if len(offsets) > 1 else 0) + root * 32
    with open(disk, "r+b") as f:
        for base in offsets:
            f.seek(base + 2 * d_first)
            f.write(struct.pack("<H", d_first))
        f.seek(data + (d_first - 2) * spc * 512)
        f.write((b"\xe5" + b"X" * 31) * (spc * 16))
    reason, out, ex = boot(disk, "full", timeout=60)
    lines = out.decode().splitlines()
    assert ex["status"] == 0
    assert lines[0] == "r d/MISSING.TXT: Input/output error"
    assert lines[1] == "w d/new name.txt: Input/output error"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_bad_hive_makes_registry_calls_fail_and_is_left_alone(tmp_path, flavor):
    bad = b"hvhive1\0" + struct.pack("<I", 5) + b"\x01\xff\xff"      # a record past the end
    disk = make_disk(tmp_path / "d.img", service_files(), "/bin/service", hive=bad)
    reason, out, ex = boot(disk, flavor)
    text = out.decode()
    assert "registry: HKLM\\Software\\hv\\service: error 5" in text, text   # EIO
    assert ex["status"] == 1                     # service: a registry operation failed
    assert mtype(disk, "/.hv/registry.hiv") == bad


@pytest.mark.parametrize("flavor", FLAVORS)
def test_too_little_ram_is_a_message_not_a_crash(tmp_path, flavor):
    disk = make_disk(tmp_path / "d.img", {"/bin/hello": program("hello")}, "/bin/hello")
    reason, out, ex = boot(disk, flavor, ram=4 << 20)        # the kernel's .bss ends above 6 MiB
    assert reason.startswith("guest powered off")
    assert b"uvmfull: not enough RAM for the kernel" in out
    assert ex == {}                                           # the kernel never ran


def test_no_launch_block_is_a_message_and_status_125(tmp_path):
    disk = make_disk(tmp_path / "d.img", {"/bin/hello": program("hello")}, "/bin/hello")
    subprocess.run(["mdel", "-i", str(disk), "::/.hv/launch"], check=True)
    reason, out, ex = boot(disk, "full")
    assert b"uvmfull: no valid /.hv/launch" in out
    assert ex["status"] == 125


def test_the_program_cannot_see_or_touch_the_hv_folder(tmp_path):
    disk = make_disk(tmp_path / "d.img", {"/bin/escape": program("escape")}, "/bin/escape",
                     ["r", "/.hv/launch", "w", "/.hv/exit", "u", "/.hv/launch"])
    reason, out, ex = boot(disk, "full")
    assert out.decode().splitlines() == ["r /.hv/launch: No such file or directory",
                                         "w /.hv/exit: No such file or directory",
                                         "u /.hv/launch: No such file or directory"]
    assert ex["status"] == 0 and mtype(disk, "/.hv/launch") is not None


# -- the same programs as a process container, end to end (hv container run) -------------------------
EXTRA = ("hello", "files", "memory", "args", "errors", "regdemo", "sleep", "exitcode")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    pytest.importorskip("hv.container.vmflavor")
    return service_home(tmp_path_factory.mktemp("full"), EXTRA)


@pytest.fixture
def hv(home, capfd, monkeypatch):
    monkeypatch.setenv("HV_HOME", str(home))
    return cli(capfd)


@pytest.mark.parametrize("prog,args", [("service", []), ("regdemo", []), ("errors", []),
                                       ("args", ["one", "two words", ""]), ("memory", []),
                                       ("sleep", []), ("exitcode", ["kill", "15"]),
                                       ("exitcode", ["segv"])])
def test_output_status_and_changes_are_those_of_a_process_container(hv, prog, args):
    p = hv("run", "--name", "p", "svc", f"/bin/{prog}", *args)
    for flavor in FLAVORS:
        v = hv("run", "--name", flavor, "--isolation", flavor, "svc", f"/bin/{prog}", *args)
        assert v == p, flavor
        assert hv("diff", flavor) == hv("diff", "p"), flavor
    hv("rm", "p", *FLAVORS)


def test_files_differs_from_a_process_container_only_where_fat_cannot_follow(hv):
    """FAT has no symbolic or hard links and no modes: those lines differ, nothing else."""
    status, p, _ = hv("run", "--name", "p", "svc", "/bin/files")
    status_f, f, _ = hv("run", "--name", "f", "--isolation", "full", "svc", "/bin/files")
    assert status == status_f == 0
    differing = set(p.splitlines()) ^ set(f.splitlines())
    assert differing and all(any(w in line for w in ("link", "mode=", "moved", "X_OK", "[d sub]", "work/sub:"))
                             for line in differing), differing
    assert hv("diff", "f") == hv("diff", "p")
    hv("rm", "p", "f")


# -- the in-guest registry against the host's (regops: registry calls from a script) ---------------
def registry_script(seed: int, n: int = 60) -> list[str]:
    """Random registry calls over a few names that differ in case, with bad handles, bad names,
    deletions under open handles and enumerations past the end."""
    import random
    rng = random.Random(seed)
    paths = ["a", "A", "a\\b", "A\\B\\c", "b", "x\\y\\z", ".", "a\\\\b", "bad\x01name", "Software\\hv",
             "SOFTWARE\\HV\\service", "k" * 256, "-"]
    values = ["v", "V", ".", "w", "Greeting", "-", "bad\x02"]
    handles = ["L", "U", "$0", "$1", "$2", "$3", "$0", "$1", "$2", "$3", "$4", "$5", "7", "0"]
    ops = ["c", "L", "Software\\hv\\service", "c", "U", "a", "c", "L", "a\\b", "o", "U", "a"]
    for _ in range(n):
        op = rng.choice("cccooxssqqdkkeevv")
        h = rng.choice(handles)
        if op in "co":
            ops += [op, h, rng.choice(paths)]
        elif op == "x":
            ops += [op, h]
        elif op == "s":
            ops += [op, h, rng.choice(values), rng.choice(["1", "3", "4", "7"]), rng.choice(["text", "", "x" * 40])]
        elif op == "q":
            ops += [op, h, rng.choice(values), rng.choice(["0", "3", "64"])]
        elif op == "d":
            ops += [op, h, rng.choice(values)]
        elif op == "k":
            ops += [op, h, rng.choice(paths), rng.choice(["0", "1", "2"])]
        else:
            ops += [op, h, str(rng.choice([0, 0, 1, 2, 5]))]
    return ops


@pytest.fixture(scope="module")
def reg_home(tmp_path_factory):
    pytest.importorskip("hv.container.vmflavor")
    return service_home(tmp_path_factory.mktemp("fullreg"), ("regops",), image="reg")


@pytest.mark.parametrize("seed", range(6))
def test_the_in_guest_registry_answers_as_the_hosts(reg_home, capfd, monkeypatch, seed):
    monkeypatch.setenv("HV_HOME", str(reg_home))
    run = cli(capfd)
    script = registry_script(seed, 120)
    vm = run("run", "--name", "vm", "--isolation", "vm", "reg", "/bin/regops", *script)
    assert vm[0] == 0 and vm[1].count("\n") > 30
    for flavor in FLAVORS:
        assert run("run", "--name", flavor, "--isolation", flavor, "reg", "/bin/regops", *script) == vm
        assert run("diff", flavor) == run("diff", "vm")
    run("rm", "vm", *FLAVORS)


# -- the in-guest FAT driver against the host's files (escape: file operations from a script) ------
FILE_NAMES = ["alpha.txt", "Beta", "GAMMA.DAT", "a long name with spaces.txt", "n" * 60,
              "d1/inner.txt", "Dir Two/f", "Dir Two/deeper/x.y.z", "missing/q", "d1"]


def files_script(seed: int, n: int = 80) -> list[str]:
    """Random creates, reads and unlinks over names of every kind (8.3, long, dotted, nested)."""
    import random
    rng = random.Random(seed)
    ops = []
    for _ in range(n):
        op = rng.choice("wwwrru")
        ops += [op, rng.choice(FILE_NAMES)]
    return ops


@pytest.fixture(scope="module")
def files_home(tmp_path_factory):
    pytest.importorskip("hv.container.vmflavor")
    from hv.container.images import ImageStore
    top = tmp_path_factory.mktemp("fullfiles")
    d = top / "imgdir"
    (d / "bin").mkdir(parents=True)
    shutil.copyfile(guests.linux_program_path("escape"), d / "bin" / "escape")
    (d / "bin" / "escape").chmod(0o755)
    (d / "d1").mkdir()
    (d / "Dir Two" / "deeper").mkdir(parents=True)
    (d / "Beta").write_text("from the image\n")
    (d / "d1" / "inner.txt").write_text("inner\n")
    h = top / "home"
    ImageStore(h).build(d, "files")
    return h


@pytest.mark.parametrize("seed", range(4))
def test_file_operations_answer_as_the_hosts(files_home, capfd, monkeypatch, seed):
    monkeypatch.setenv("HV_HOME", str(files_home))
    run = cli(capfd)
    script = files_script(seed)
    p = run("run", "--name", "p", "files", "/bin/escape", *script)
    assert p[0] == 0 and p[1].count("\n") == len(script) // 2
    def added_and_deleted(name):
        # A process container copies a folder up when a file in it comes and goes ("C"); the
        # read-back of a VM's disk reports net changes only: compare what was added or removed.
        return sorted(line for line in run("diff", name)[1].splitlines() if not line.startswith("C "))
    for flavor in FLAVORS:
        assert run("run", "--name", flavor, "--isolation", flavor, "files", "/bin/escape", *script) == p
        assert added_and_deleted(flavor) == added_and_deleted("p")
    run("rm", "p", *FLAVORS)
