"""Debian's i386 Linux and busybox for tests: fetched once with apt, cached, and an
initramfs built around an ``/init`` script the test gives.

What is fetched (Debian's packages, through the ordinary apt client):

* ``linux-image-686`` (the metapackage) names the current kernel package,
  ``linux-image-<version>-686``; its ``boot/vmlinuz-*`` is the bzImage;
* ``busybox-static:i386``: its ``bin/busybox`` is the whole userland.

Both land in ``$HV_TEST_CACHE/debian-i386`` (default ``~/.cache/hv-tests``), so only the
first run needs the network. When a step cannot be done (no apt, no root to add the i386
architecture, no network) the fixture skips and the reason names the step.

The initramfs is a cpio archive in the "newc" format (what the kernel's initramfs
unpacker reads: Documentation/driver-api/early-userspace/buffer-format.rst), gzipped,
written here in Python, so no ``cpio`` tool is needed. It is deterministic: every
timestamp is 0.
"""
from __future__ import annotations

import fcntl
import gzip
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ARCH = "i386"
KERNEL_META = "linux-image-686"
BUSYBOX_PACKAGE = "busybox-static"
APT_TIMEOUT = 600            # seconds for one apt-get update or download
MANIFEST = "manifest.json"

# The applets /init scripts use; each becomes a symlink to /bin/busybox.
APPLETS = ("sh", "echo", "cat", "mount", "poweroff", "reboot", "halt", "ls", "uname", "sleep",
           "dmesg", "true", "false", "test", "[", "grep", "sync")


class FixtureUnavailable(Exception):
    """A step of getting the kernel or busybox failed; ``str()`` names the step."""

    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"{step}: {why}")
        self.step = step


@dataclass(frozen=True)
class DebianLinux:
    kernel: Path              # the bzImage (boot/vmlinuz-*)
    busybox: Path             # a static i386 busybox
    kernel_package: str       # e.g. linux-image-6.1.0-41-686
    kernel_version: str       # the package's version string
    busybox_version: str


def cache_root() -> Path:
    return Path(os.environ.get("HV_TEST_CACHE") or Path.home() / ".cache" / "hv-tests")


# -- running the apt tools ---------------------------------------------------------------
def _run(step: str, argv: list[str], cwd: Path | None = None, timeout: float = APT_TIMEOUT) -> str:
    """Run a tool; any failure becomes FixtureUnavailable naming ``step``."""
    if shutil.which(argv[0]) is None:
        raise FixtureUnavailable(step, f"{argv[0]} is not installed (this needs a Debian-style apt)")
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise FixtureUnavailable(step, f"{' '.join(argv)} took more than {timeout:g} s") from None
    except OSError as e:
        raise FixtureUnavailable(step, f"{' '.join(argv)}: {e}") from None
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise FixtureUnavailable(step, f"{' '.join(argv)} exited {p.returncode}: {tail[0]}")
    return p.stdout


def kernel_package_from_depends(text: str) -> str:
    """The versioned kernel package named in ``apt-cache depends linux-image-686:i386``."""
    names = re.findall(r"Depends:\s*(linux-image-\d[\w.+-]*-686)(?::i386)?\s*$", text, re.MULTILINE)
    if not names:
        raise FixtureUnavailable("resolve the kernel package",
                                 f"no linux-image-*-686 dependency in apt-cache's answer: {text[:200]!r}")
    return names[0]


def package_version(text: str) -> str:
    """The Version: field of ``apt-cache show`` output (the first stanza)."""
    m = re.search(r"^Version:\s*(\S+)", text, re.MULTILINE)
    return m.group(1) if m else "unknown"


def _ensure_i386_lists() -> None:
    foreign = _run("list dpkg architectures", ["dpkg", "--print-foreign-architectures"]).split()
    if ARCH not in foreign:
        if os.geteuid() != 0:
            raise FixtureUnavailable("dpkg --add-architecture i386",
                                     "needs root (run once as root, or fill $HV_TEST_CACHE)")
        _run("dpkg --add-architecture i386", ["dpkg", "--add-architecture", ARCH])
    try:
        _run("apt-cache show", ["apt-cache", "show", f"{KERNEL_META}:{ARCH}"])
    except FixtureUnavailable:
        if os.geteuid() != 0:
            raise FixtureUnavailable("apt-get update", "the i386 package lists are missing and "
                                     "apt-get update needs root") from None
        _run("apt-get update", ["apt-get", "update", "-q"])


def _download_and_extract(package: str, member: str, work: Path) -> Path:
    """apt-get download PACKAGE:i386, dpkg-deb -x it, return the file ``member`` matches."""
    _run(f"apt-get download {package}:{ARCH}", ["apt-get", "download", "-q", f"{package}:{ARCH}"],
         cwd=work)
    debs = sorted(work.glob(f"{package}_*.deb"))
    if not debs:
        raise FixtureUnavailable(f"apt-get download {package}:{ARCH}", "no .deb file appeared")
    root = work / f"{package}.root"
    _run(f"dpkg-deb -x {debs[0].name}", ["dpkg-deb", "-x", str(debs[0]), str(root)])
    found = sorted(root.glob(member))
    if not found:
        raise FixtureUnavailable(f"dpkg-deb -x {debs[0].name}", f"no {member} in the package")
    return found[0]


def fetch_debian_linux(cache: Path | None = None) -> DebianLinux:
    """Return the cached kernel and busybox, fetching them first if the cache is empty.
    Raises FixtureUnavailable naming the step that failed."""
    base = (cache or cache_root()) / "debian-i386"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FixtureUnavailable("create the cache directory", f"{base}: {e.strerror}") from None
    # One fetch at a time, even with parallel test processes sharing the cache.
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _read_manifest(base)
        if cached is not None:
            return cached
        _ensure_i386_lists()
        package = kernel_package_from_depends(
            _run("resolve the kernel package", ["apt-cache", "depends", f"{KERNEL_META}:{ARCH}"]))
        kver = package_version(_run("apt-cache show", ["apt-cache", "show", f"{package}:{ARCH}"]))
        bver = package_version(_run("apt-cache show", ["apt-cache", "show", f"{BUSYBOX_PACKAGE}:{ARCH}"]))
        with tempfile.TemporaryDirectory(dir=base) as tmp:
            work = Path(tmp)
            vmlinuz = _download_and_extract(package, "boot/vmlinuz-*", work)
            busybox = _download_and_extract(BUSYBOX_PACKAGE, "bin/busybox", work)
            shutil.copyfile(vmlinuz, base / "vmlinuz")
            shutil.copyfile(busybox, base / "busybox")
        (base / MANIFEST).write_text(json.dumps({
            "kernel_package": package, "kernel_version": kver, "busybox_version": bver}))
        return _read_manifest(base)


def _read_manifest(base: Path) -> DebianLinux | None:
    try:
        info = json.loads((base / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    kernel, busybox = base / "vmlinuz", base / "busybox"
    if not (kernel.is_file() and busybox.is_file()):
        return None
    return DebianLinux(kernel, busybox, info.get("kernel_package", "?"),
                       info.get("kernel_version", "?"), info.get("busybox_version", "?"))


# -- the initramfs ------------------------------------------------------------------------
@dataclass(frozen=True)
class CpioEntry:
    name: str                 # path inside the archive, without a leading "/"
    mode: int                 # file type and permission bits (stat.S_IFREG | 0o755, ...)
    data: bytes = b""         # file contents, or a symlink's target
    rdev: tuple[int, int] = (0, 0)   # (major, minor) of a device node


CPIO_MAGIC = b"070701"
CPIO_TRAILER = "TRAILER!!!"


def _pad4(n: int) -> int:
    return -n % 4


def cpio_newc(entries: list[CpioEntry]) -> bytes:
    """The archive: a 110-byte ASCII header per entry (13 eight-digit hex fields after
    the magic), the NUL-terminated name, padding to 4 bytes, the data, padding to 4,
    and the TRAILER!!! entry."""
    out = io.BytesIO()
    for ino, e in enumerate([*entries, CpioEntry(CPIO_TRAILER, 0)], start=1):
        name = e.name.encode() + b"\0"
        fields = (ino if e.name != CPIO_TRAILER else 0, e.mode, 0, 0,   # ino, mode, uid, gid
                  2 if stat.S_ISDIR(e.mode) else 1, 0, len(e.data),     # nlink, mtime, filesize
                  0, 0, e.rdev[0], e.rdev[1], len(name), 0)             # dev, rdev, namesize, check
        out.write(CPIO_MAGIC + b"".join(b"%08X" % f for f in fields))
        out.write(name + bytes(_pad4(110 + len(name))))
        out.write(e.data + bytes(_pad4(len(e.data))))
    return out.getvalue()


def initramfs_entries(init_script: str, busybox: bytes) -> list[CpioEntry]:
    """A minimal root: /init (the script), busybox and its applet links, /dev/console
    (so /init has a console before anything is mounted), and mount points."""
    d = stat.S_IFDIR | 0o755
    entries = [CpioEntry(p, d) for p in ("bin", "dev", "proc", "sys", "tmp")]
    entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox))
    entries += [CpioEntry(f"bin/{a}", stat.S_IFLNK | 0o777, b"busybox") for a in APPLETS]
    entries.append(CpioEntry("init", stat.S_IFREG | 0o755, init_script.encode()))
    return entries


def build_initramfs(init_script: str, busybox: bytes) -> bytes:
    """gzip(cpio newc) of ``initramfs_entries``; byte-identical for the same inputs."""
    return gzip.compress(cpio_newc(initramfs_entries(init_script, busybox)), mtime=0)


# -- pytest fixtures ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def debian_linux() -> DebianLinux:
    """Debian's i386 kernel and busybox; skips, naming the failed step, when unavailable."""
    try:
        return fetch_debian_linux()
    except FixtureUnavailable as e:
        pytest.skip(f"Debian i386 kernel/busybox unavailable: {e}")


@pytest.fixture
def make_initramfs(debian_linux, tmp_path):
    """``make_initramfs(script) -> Path`` of a gzipped initramfs whose /init is ``script``."""
    def make(init_script: str, name: str = "initrd.gz") -> Path:
        path = tmp_path / name
        path.write_bytes(build_initramfs(init_script, debian_linux.busybox.read_bytes()))
        return path
    return make
