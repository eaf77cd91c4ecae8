"""Run a guest image under qemu-system-i386 + SeaBIOS (the reference PC) and collect COM1.

The image is copied to a temporary file padded to the media size (a 1.44 MB floppy or a
small hard disk), so the committed image is never written to. QEMU is killed as soon as
the serial output matches ``until`` or the timeout passes.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

QEMU = "qemu-system-i386"


class QemuTimeout(AssertionError):
    """QEMU did not print what the test waits for within its wall-clock limit (or exited
    first): a failure that says so, never partial output passed on as the result."""


def not_finished(what: str, timeout: float, out: bytes | bytearray, exited: bool = False) -> QemuTimeout:
    how = "exited before it printed what was expected" if exited else f"did not finish within {timeout:g} s"
    return QemuTimeout(f"{what} {how}; output so far: {bytes(out).decode('latin-1')[-2000:]!r}")
FLOPPY_BYTES = 1_474_560
HD_BYTES = 4 * 1024 * 1024  # small, but big enough for any guest and a scratch area


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


def require_qemu() -> None:
    """Skip the calling test when QEMU is not installed."""
    if not qemu_available():
        import pytest

        pytest.skip(f"{QEMU} not installed")


def _padded_copy(image: Path, size: int, tmp: Path) -> Path:
    data = Path(image).read_bytes()
    if len(data) > size:
        raise ValueError(f"{image} is larger than the {size}-byte medium")
    out = tmp / ("disk.img")
    out.write_bytes(data + bytes(size - len(data)))
    return out


class _Qmp:
    """Just enough QMP to press keys on the emulated PS/2 keyboard."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise TimeoutError("QMP socket never appeared")
                time.sleep(0.02)
        self.file = self.sock.makefile("rwb")
        self._reply()  # greeting
        self.command("qmp_capabilities")

    def _reply(self) -> dict:
        while True:
            msg = json.loads(self.file.readline())
            if "event" not in msg:
                return msg

    def command(self, name: str, **arguments) -> dict:
        req = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        self.file.write(json.dumps(req).encode() + b"\n")
        self.file.flush()
        return self._reply()

    def send_key(self, qcode: str) -> None:
        self.command("send-key", keys=[{"type": "qcode", "data": qcode}])

    def close(self) -> None:
        self.sock.close()


def run_image(
    image: Path | str,
    *,
    drive: str = "floppy",
    until: str | None = None,
    timeout: float = 20.0,
    keys: list[str] | None = None,
    keys_after: str | None = None,
    readonly: bool = False,
    extra_args: list[str] | None = None,
    bios: Path | str | None = None,
) -> str:
    """Boot ``image`` and return everything written to COM1 (decoded as latin-1).

    drive: "floppy" (-fda, padded to 1.44 MB) or "hd" (-hda, padded, -boot c).
    until: stop as soon as the output matches this regex; if it has not matched when
        ``timeout`` passes (or QEMU exits first), raise ``QemuTimeout`` with the output so
        far. Without ``until`` the run lasts ``timeout`` seconds (or until QEMU exits).
    keys: QMP qcodes pressed one by one once ``keys_after`` (a regex) has appeared.
    readonly: write-protect the medium (floppy only; QEMU refuses read-only IDE disks).
    extra_args: more QEMU arguments (devices, more drives), e.g. ``scratch_disk_args`` or
        ``NE2000_ARGS``.
    bios: a firmware image for ``-bios`` instead of QEMU's SeaBIOS (e.g. hv's emulated BIOS).
    """
    require_qemu()
    if drive not in ("floppy", "hd"):
        raise ValueError(f"drive must be 'floppy' or 'hd', not {drive!r}")
    with tempfile.TemporaryDirectory(prefix="hv-qemu-") as td:
        tmp = Path(td)
        if drive == "floppy":
            disk = _padded_copy(Path(image), FLOPPY_BYTES, tmp)
            ro = ",readonly=on" if readonly else ""
            media = ["-drive", f"file={disk},if=floppy,format=raw,index=0{ro}", "-boot", "a"]
        else:
            if readonly:
                raise ValueError("QEMU has no read-only IDE disks")
            disk = _padded_copy(Path(image), HD_BYTES, tmp)
            media = ["-drive", f"file={disk},if=ide,format=raw,index=0", "-boot", "c"]
        qmp_path = tmp / "qmp.sock"
        cmd = [
            # Not -nographic: that makes SeaBIOS mirror INT 10h text onto COM1 (sercon),
            # interleaving it with the guest's own serial output.
            QEMU, "-display", "none", "-serial", "stdio", "-monitor", "none",
            "-no-reboot", "-m", "32",
            *media,
            *(extra_args or []),
            *(["-bios", str(bios)] if bios is not None else []),
        ]
        if keys:
            cmd += ["-qmp", f"unix:{qmp_path},server=on,wait=off"]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out = bytearray()
        deadline = time.monotonic() + timeout
        pending = list(keys or [])
        qmp = None
        matched = exited = False
        try:
            fd = proc.stdout.fileno()
            while time.monotonic() < deadline:
                text = out.decode("latin-1")
                if until is not None and re.search(until, text):
                    matched = True
                    break
                if pending and (keys_after is None or re.search(keys_after, text)):
                    if qmp is None:
                        qmp = _Qmp(qmp_path, deadline)
                    qmp.send_key(pending.pop(0))
                    time.sleep(0.05)
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        exited = True  # QEMU exited
                        break
                    out += chunk
            if until is not None and not matched:
                matched = re.search(until, out.decode("latin-1")) is not None
        finally:
            if qmp is not None:
                qmp.close()
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        if until is not None and not matched:
            raise not_finished("QEMU", timeout, out, exited)
        return out.decode("latin-1")


def scratch_disk_args(path: Path | str) -> list[str]:
    """QEMU arguments attaching a raw image (``guests.scratch_disk``) as the primary IDE
    master, next to a boot floppy (disktest)."""
    return ["-drive", f"if=ide,index=0,media=disk,format=raw,file={path}"]


# nettest's card: an ISA NE2000 at 0x300/IRQ 9 on QEMU's user-mode network (slirp:
# gateway 10.0.2.2, guest 10.0.2.15), with QEMU's default MAC spelled out.
NE2000_ARGS = [
    "-device", "ne2k_isa,iobase=0x300,irq=9,netdev=n0,mac=52:54:00:12:34:56",
    "-netdev", "user,id=n0",
]
