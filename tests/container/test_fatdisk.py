"""The FAT16 writer and reader (hv/container/fatdisk.py): round trips, the on-disk details the
contract fixes (BPB, boot-sector framing, reserved area, long names), differential checks with
mtools and fsck.fat, and hostile volumes (loops, cross-links, out-of-range clusters, bad sizes,
a BPB that lies) that must give a FatError and nothing else."""
from __future__ import annotations

import random
import shutil
import struct
import subprocess

import pytest

from hv.container import fatdisk
from hv.container.fatdisk import BPB, Dir, FatError, File

MTOOLS = shutil.which("mdir") and shutil.which("mtype") and shutil.which("mcopy") \
    and shutil.which("mformat") and shutil.which("mmd")
FSCK = shutil.which("fsck.fat")
needs_mtools = pytest.mark.skipif(not MTOOLS, reason="mtools not installed (apt-get install mtools)")
needs_fsck = pytest.mark.skipif(not FSCK, reason="fsck.fat not installed (apt-get install dosfstools)")

BIG = bytes(random.Random(1).randbytes(70_000))
NAMES = ["README", "A.TXT", "lower.txt", "Mixed Case Name.text", "a" * 200, "ünïcödé ✓.md",
         "two.dots.tar.gz", ".hidden", "exactly13char", "x" * 26, "LONGERTHAN8.TXT", "sp ace"]


def sample_tree() -> Dir:
    etc = Dir({"service.conf": File(b"name=svc\n", 1_700_000_000.0)})
    deep = Dir()
    d = deep
    for i in range(10):
        d.entries[f"level{i}"] = d = Dir()
    d.entries["bottom"] = File(b"deep")
    many = Dir({f"file{i:03d}.dat": File(bytes([i]) * i) for i in range(150)})
    root = Dir({"etc": etc, "deep": deep, "many": many, "big.bin": File(BIG),
                "empty": File(b""), "cluster": File(b"c" * 2048), "emptydir": Dir()})
    for n in NAMES:
        root.entries[n] = File(n.encode())
    return root


def flatten(d: Dir, p: str = "") -> dict[str, bytes | None]:
    out = {}
    for name, e in d.entries.items():
        out[f"{p}/{name}"] = None if isinstance(e, Dir) else e.data
        if isinstance(e, Dir):
            out.update(flatten(e, f"{p}/{name}"))
    return out


def read_all(path) -> dict[str, bytes | None]:
    out = {}
    with fatdisk.Volume(path) as v:
        for p, e in fatdisk.walk(v.tree()):
            out[p] = None if e.is_dir else v.read_file(e)
    return out


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    fatdisk.build(path, sample_tree())
    return path


def test_round_trip(image):
    assert read_all(image) == flatten(sample_tree())


def test_bpb_as_the_contract_says(tmp_path):
    boot = (bytes([0xEB, 0x3C, 0x90]) + bytes(range(3, 0x3E)) + bytes([0xAB] * (0x200 - 0x3E - 2))
            + b"\x55\xaa")
    kernel = b"K" * 5000                 # 10 sectors: 11 reserved, rounded up to 16
    path = tmp_path / "d.img"
    fatdisk.build(path, Dir({"F": File(b"f")}), boot=boot, reserved_data=kernel)
    raw = path.read_bytes()
    assert len(raw) == 32 << 20
    (jump, oem, bps, spc, rsvd, nfats, root_entries, total16, media, fatsz, spt, heads, hidden,
     total32, drive, _, sig, _, label, fstype) = BPB.unpack_from(raw)
    assert (jump, bps, spc, rsvd, nfats, root_entries, media, spt, heads, hidden, drive, sig) == \
        (boot[:3], 512, 4, 16, 2, 512, 0xF8, 63, 16, 0, 0x80, 0x29)
    assert (total16 or total32) == (32 << 20) // 512 and label == b"HV         " and fstype == b"FAT16   "
    assert raw[0x3E:0x200] == boot[0x3E:]
    assert raw[512:512 + len(kernel)] == kernel
    clusters = ((32 << 20) // 512 - rsvd - 2 * fatsz - 32) // spc
    assert 4085 <= clusters <= 65524


@pytest.mark.parametrize("size", [4 << 20, 16 << 20, 100 << 20, 1 << 30])
def test_geometry_keeps_fat16(size):
    g = fatdisk.geometry(size, 8)
    assert fatdisk.MIN_CLUSTERS <= g.clusters <= fatdisk.MAX_CLUSTERS
    assert g.fat_sectors * 256 >= g.clusters + 2


@pytest.mark.parametrize("size", [1 << 20, (4 << 20) + 1, 4 << 30])
def test_geometry_refuses(size):
    with pytest.raises(FatError):
        fatdisk.geometry(size, 8)


def test_too_many_files_for_the_disk(tmp_path):
    with pytest.raises(FatError, match="do not fit"):
        fatdisk.build(tmp_path / "d.img", Dir({"huge": File(bytes(5 << 20))}), size=4 << 20)


def test_root_directory_overflow(tmp_path):
    root = Dir({f"long name number {i}": File(b"") for i in range(200)})
    with pytest.raises(FatError, match="root directory"):
        fatdisk.build(tmp_path / "d.img", root)


def test_short_names_and_aliases():
    assert fatdisk._is_short("README") and fatdisk._is_short("A.TXT")
    assert not fatdisk._is_short("lower.txt") and not fatdisk._is_short("A.B.C")
    assert not fatdisk._is_short("LONGERTHAN8.TXT")
    entries = fatdisk._dir_entries(Dir({"Long File Name.text": File(b""), "long file name.txt": File(b"")}),
                                   None, 0, {})
    shorts = [e[:11] for e in entries if e[11] != fatdisk.ATTR_LFN]
    assert shorts == [b"LONGFI~1TEX", b"LONGFI~1TXT"]
    # every long-name entry carries the checksum of its short entry
    lfn = [e for e in entries if e[11] == fatdisk.ATTR_LFN]
    assert {e[13] for e in lfn} == {fatdisk.lfn_checksum(s) for s in shorts}


def test_bad_names_refused(tmp_path):
    for bad in ("a/b", "a:b", "trailing.", "nul\0"):
        with pytest.raises(FatError):
            fatdisk.build(tmp_path / "d.img", Dir({bad: File(b"")}))


# -- mtools and fsck.fat ----------------------------------------------------------------------------

@needs_mtools
def test_mtools_reads_what_we_write(image, tmp_path):
    listing = subprocess.run(["mdir", "-/", "-b", "-i", str(image), "::/"], capture_output=True,
                             text=True, check=True).stdout.split("\n")
    seen = {line[2:].rstrip("/") for line in listing if line.startswith("::")}
    expected = flatten(sample_tree())
    assert seen == set(expected)
    for p, data in expected.items():
        if data is None:
            continue
        out = subprocess.run(["mcopy", "-n", "-i", str(image), f"::{p}", "-"], capture_output=True,
                             check=True).stdout
        assert out == data, p
    conf = subprocess.run(["mtype", "-i", str(image), "::/etc/service.conf"], capture_output=True,
                          check=True).stdout
    assert conf == b"name=svc\n"


@needs_fsck
def test_fsck_finds_nothing_wrong(image):
    r = subprocess.run(["fsck.fat", "-n", str(image)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "files" in r.stdout


@needs_mtools
def test_we_read_what_mtools_writes(tmp_path):
    img = tmp_path / "m.img"
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mformat", "-i", str(img), "-T", str((32 << 20) // 512), "-h", "16", "-s", "63",
                    "-c", "4", "-v", "MT", "::"], check=True, capture_output=True)
    src = tmp_path / "src"
    (src / "sub dir" / "inner").mkdir(parents=True)
    files = {"/hello.txt": b"hello\n", "/UPPER.TXT": b"U", "/sub dir/Long Name With Spaces.bin": BIG,
             "/sub dir/inner/x": b"", "/sub dir/inner/ünï.txt": b"unicode"}
    for p, data in files.items():
        (src / p.lstrip("/")).write_bytes(data)
    subprocess.run(["mcopy", "-s", "-i", str(img), str(src / "hello.txt"), str(src / "UPPER.TXT"),
                    str(src / "sub dir"), "::/"], check=True, capture_output=True)
    got = read_all(img)
    assert {p: d for p, d in got.items() if d is not None} == files
    assert {p for p, d in got.items() if d is None} == {"/sub dir", "/sub dir/inner"}


# -- hostile volumes ---------------------------------------------------------------------------------

def small_volume(tmp_path) -> bytearray:
    path = tmp_path / "s.img"
    fatdisk.build(path, Dir({"A.TXT": File(b"A" * 5000), "DIR": Dir({"B.TXT": File(b"B" * 3000)}),
                             "C.TXT": File(b"C" * 100)}), size=4 << 20)
    return bytearray(path.read_bytes())


def layout(raw: bytes):
    v = fatdisk.Volume(bytes(raw))
    return v.g


def fat_set(raw: bytearray, cluster: int, value: int) -> None:
    g = layout(raw)
    for i in range(2):
        struct.pack_into("<H", raw, (g.reserved + i * g.fat_sectors) * 512 + 2 * cluster, value)


def root_entry(raw: bytearray, short: bytes) -> int:
    g = layout(raw)
    base = (g.first_data - g.root_sectors) * 512
    for off in range(base, base + g.root_sectors * 512, 32):
        if raw[off:off + 11] == short:
            return off
    raise AssertionError(short)


def test_hostile_loop(tmp_path):
    raw = small_volume(tmp_path)
    off = root_entry(raw, b"A       TXT")
    first = struct.unpack_from("<H", raw, off + 26)[0]
    fat_set(raw, first + 1, first)                     # the chain's second cluster points back
    with pytest.raises(FatError, match="used twice"):
        fatdisk.Volume(bytes(raw)).tree()


def test_hostile_cross_link(tmp_path):
    raw = small_volume(tmp_path)
    a = struct.unpack_from("<H", raw, root_entry(raw, b"A       TXT") + 26)[0]
    struct.pack_into("<H", raw, root_entry(raw, b"C       TXT") + 26, a)
    with pytest.raises(FatError, match="used twice"):
        fatdisk.Volume(bytes(raw)).tree()


def test_hostile_out_of_range_cluster(tmp_path):
    raw = small_volume(tmp_path)
    struct.pack_into("<H", raw, root_entry(raw, b"C       TXT") + 26, 0xFFF0)
    with pytest.raises(FatError, match="outside the volume"):
        fatdisk.Volume(bytes(raw)).tree()


def test_hostile_size_beyond_chain(tmp_path):
    raw = small_volume(tmp_path)
    struct.pack_into("<I", raw, root_entry(raw, b"C       TXT") + 28, 1 << 20)
    with pytest.raises(FatError, match="chain of 1 clusters"):
        fatdisk.Volume(bytes(raw)).tree()


def test_hostile_directory_reached_twice(tmp_path):
    raw = small_volume(tmp_path)
    d = root_entry(raw, b"DIR        ")
    c = root_entry(raw, b"C       TXT")
    raw[c:c + 32] = raw[d:d + 11].replace(b"DIR", b"DI2") + raw[d + 11:d + 32]
    with pytest.raises(FatError, match="used twice"):
        fatdisk.Volume(bytes(raw)).tree()


def test_hostile_duplicate_name(tmp_path):
    raw = small_volume(tmp_path)
    a, c = root_entry(raw, b"A       TXT"), root_entry(raw, b"C       TXT")
    raw[c:c + 11] = raw[a:a + 11]
    with pytest.raises(FatError, match="twice"):
        fatdisk.Volume(bytes(raw)).tree()


@pytest.mark.parametrize("field,value,match", [
    (0x0B, b"\x00\x04", "bytes per sector"),
    (0x0D, b"\x03", "sectors per cluster"),
    (0x0E, b"\x00\x00", "FAT16"),
    (0x13, b"\xff\xff", "sectors"),
    (0x16, b"\x01\x00", "cannot map"),
    (0x1FE, b"\x00\x00", "signature"),
])
def test_hostile_bpb(tmp_path, field, value, match):
    raw = small_volume(tmp_path)
    raw[field:field + len(value)] = value
    with pytest.raises(FatError, match=match):
        fatdisk.Volume(bytes(raw))


def test_fat12_and_truncated_files_refused(tmp_path):
    raw = small_volume(tmp_path)
    with pytest.raises(FatError, match="disk has"):
        fatdisk.Volume(bytes(raw[:1 << 20]))
    struct.pack_into("<B", raw, 0x0D, 64)             # 64 sectors a cluster: too few clusters
    with pytest.raises(FatError, match="not FAT16"):
        fatdisk.Volume(bytes(raw))


def test_random_damage_gives_fat_errors_only(tmp_path):
    """Random bytes over the metadata (BPB, FATs, directories): the reader either reads a tree
    or raises FatError; nothing else escapes."""
    clean = small_volume(tmp_path)
    g = layout(clean)
    meta_end = g.cluster_offset(2) + 8 * g.cluster_bytes
    rng = random.Random(7)
    outcomes = set()
    for _ in range(300):
        raw = bytearray(clean)
        for _ in range(rng.randint(1, 8)):
            at = rng.choice([rng.randrange(0, 0x40), rng.randrange(g.reserved * 512, meta_end)])
            raw[at] = rng.randrange(256)
        try:
            with fatdisk.Volume(bytes(raw)) as v:
                for _, e in fatdisk.walk(v.tree()):
                    if not e.is_dir:
                        v.read_file(e)
            outcomes.add("ok")
        except FatError:
            outcomes.add("error")
    assert outcomes == {"ok", "error"}
