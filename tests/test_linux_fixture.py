"""The Debian kernel/busybox fixture's own logic (tests/linux_fixture.py): the cpio
"newc" writer read back by an independent reader (the kernel's buffer-format.rst),
the initramfs layout, apt output parsing, the cache, and the skip reasons, with fake
apt tools on PATH so nothing here needs the network."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests import linux_fixture as lf


def read_newc(data: bytes) -> list[dict]:
    """Parse a newc archive: "070701", 13 eight-digit hex fields, name, data, each padded
    to 4 bytes; stops at TRAILER!!!."""
    out, i = [], 0
    names = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor", "devminor",
             "rdevmajor", "rdevminor", "namesize", "check")
    while True:
        assert data[i:i + 6] == b"070701", f"bad magic at {i}"
        f = {n: int(data[i + 6 + 8 * k:i + 14 + 8 * k], 16) for k, n in enumerate(names)}
        i += 110
        f["name"] = data[i:i + f["namesize"] - 1].decode()
        assert data[i + f["namesize"] - 1] == 0
        i += f["namesize"]
        i += -i % 4
        f["data"] = data[i:i + f["filesize"]]
        i += f["filesize"]
        i += -i % 4
        if f["name"] == "TRAILER!!!":
            assert i == len(data)
            return out
        out.append(f)


def test_cpio_newc_round_trips_names_modes_data_and_device_numbers():
    entries = [lf.CpioEntry("d", stat.S_IFDIR | 0o755),
               lf.CpioEntry("d/f", stat.S_IFREG | 0o644, b"abc"),     # 3 bytes: padded
               lf.CpioEntry("d/link", stat.S_IFLNK | 0o777, b"f"),
               lf.CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))]
    got = read_newc(lf.cpio_newc(entries))
    assert [(g["name"], g["mode"], g["data"]) for g in got] == \
        [(e.name, e.mode, e.data) for e in entries]
    assert (got[3]["rdevmajor"], got[3]["rdevminor"]) == (5, 1)
    assert len({g["ino"] for g in got}) == 4 and all(g["mtime"] == 0 for g in got)
    assert [g["nlink"] for g in got] == [2, 1, 1, 1]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5])
def test_every_header_starts_on_a_4_byte_boundary(size):
    data = lf.cpio_newc([lf.CpioEntry("x" * size or "y", stat.S_IFREG, b"z" * size)] * 2)
    starts = [i for i in range(0, len(data), 4) if data[i:i + 6] == b"070701"]
    assert len(starts) == 3 and len(data) % 4 == 0


def test_initramfs_has_init_busybox_applets_and_a_console():
    image = lf.build_initramfs("#!/bin/sh\necho hi\n", b"\x7fELF fake busybox")
    assert image == lf.build_initramfs("#!/bin/sh\necho hi\n", b"\x7fELF fake busybox")  # deterministic
    files = {g["name"]: g for g in read_newc(gzip.decompress(image))}
    assert files["init"]["data"] == b"#!/bin/sh\necho hi\n"
    assert stat.S_ISREG(files["init"]["mode"]) and files["init"]["mode"] & 0o111
    assert files["bin/busybox"]["data"] == b"\x7fELF fake busybox"
    assert all(stat.S_ISLNK(files[f"bin/{a}"]["mode"]) and files[f"bin/{a}"]["data"] == b"busybox"
               for a in ("sh", "poweroff", "mount"))
    console = files["dev/console"]
    assert stat.S_ISCHR(console["mode"]) and (console["rdevmajor"], console["rdevminor"]) == (5, 1)
    assert {"proc", "sys", "dev"} <= {n for n, g in files.items() if stat.S_ISDIR(g["mode"])}


# -- apt output --------------------------------------------------------------------------------
def test_the_kernel_package_comes_from_the_metapackage_dependency():
    text = "linux-image-686:i386\n  Depends: linux-image-6.1.0-57-686:i386\n"
    assert lf.kernel_package_from_depends(text) == "linux-image-6.1.0-57-686"
    assert lf.kernel_package_from_depends("x\n  Depends: linux-image-6.1.0-9-686\n") == \
        "linux-image-6.1.0-9-686"


def test_no_kernel_dependency_is_a_named_failure():
    with pytest.raises(lf.FixtureUnavailable, match="resolve the kernel package"):
        lf.kernel_package_from_depends("linux-image-686:i386\n  Depends: initramfs-tools\n")


def test_package_version_reads_the_first_version_field():
    assert lf.package_version("Package: b\nVersion: 1:1.35.0-4\n\nVersion: 2\n") == "1:1.35.0-4"
    assert lf.package_version("nothing") == "unknown"


# -- the cache and the fetch, with fake apt tools ----------------------------------------------
FAKE_DPKG = """#!/bin/sh
[ "$1" = --print-foreign-architectures ] && { echo i386; exit 0; }
exit 0
"""
FAKE_APT_CACHE = """#!/bin/sh
case "$1" in
  depends) echo "linux-image-686:i386"; echo "  Depends: linux-image-6.1.0-99-686:i386";;
  show) echo "Package: $2"; echo "Version: 9.9-test";;
esac
"""


def fake_tools(tmp_path: Path, apt_get: str) -> Path:
    bin_ = tmp_path / "fakebin"
    bin_.mkdir()
    for name, text in (("dpkg", FAKE_DPKG), ("apt-cache", FAKE_APT_CACHE), ("apt-get", apt_get)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    return bin_


def build_deb(where: Path, package: str, files: dict[str, bytes]) -> Path:
    root = where / f"{package}.src"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 9.9-test\nArchitecture: i386\nMaintainer: t <t@t>\n"
        "Description: test\n")
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    deb = where / f"{package}_9.9-test_i386.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HV_TEST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_cache_directory_comes_from_hv_test_cache(cache):
    assert lf.cache_root() == cache


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is needed to build test packages")
def test_a_fetch_downloads_extracts_and_caches_then_reuses_the_cache(tmp_path, cache, monkeypatch):
    debs = tmp_path / "debs"
    debs.mkdir()
    build_deb(debs, "linux-image-6.1.0-99-686", {"boot/vmlinuz-6.1.0-99-686": b"KERNEL"})
    build_deb(debs, "busybox-static", {"bin/busybox": b"BUSYBOX"})
    apt_get = f"""#!/bin/sh
[ "$1" = download ] || exit 0
pkg=${{3%:i386}}
cp {debs}/${{pkg}}_*.deb .
"""
    monkeypatch.setenv("PATH", f"{fake_tools(tmp_path, apt_get)}:{os.environ['PATH']}")
    got = lf.fetch_debian_linux()
    assert got.kernel.read_bytes() == b"KERNEL" and got.busybox.read_bytes() == b"BUSYBOX"
    assert (got.kernel_package, got.kernel_version) == ("linux-image-6.1.0-99-686", "9.9-test")
    assert json.loads((cache / "debian-i386" / "manifest.json").read_text())["kernel_version"] == "9.9-test"
    # A second fetch uses the cache: with no tools on PATH at all it still succeeds.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert lf.fetch_debian_linux() == got


def test_a_failing_apt_get_update_is_reported_as_that_step(tmp_path, cache, monkeypatch):
    apt_get = '#!/bin/sh\necho "E: Failed to fetch http://deb.example/ Could not resolve" >&2\nexit 100\n'
    bin_ = fake_tools(tmp_path, apt_get)
    (bin_ / "apt-cache").write_text("#!/bin/sh\nexit 100\n")     # the i386 lists are missing
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(lf.FixtureUnavailable, match=r"^apt-get update: .* exited 100: E: Failed") as e:
        lf.fetch_debian_linux()
    assert e.value.step == "apt-get update"


def test_without_apt_the_fetch_names_the_missing_tool(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(lf.FixtureUnavailable, match="dpkg is not installed"):
        lf.fetch_debian_linux()


def test_adding_the_architecture_without_root_is_a_named_failure(tmp_path, cache, monkeypatch):
    bin_ = fake_tools(tmp_path, "#!/bin/sh\nexit 0\n")
    (bin_ / "dpkg").write_text("#!/bin/sh\nexit 0\n")            # no foreign architectures
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(lf.FixtureUnavailable, match=r"^dpkg --add-architecture i386: needs root"):
        lf.fetch_debian_linux()
