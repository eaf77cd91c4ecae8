"""Fixtures for the process-container tests: a root, a way to run a program, qemu-i386.

The root is hv's ``LayeredRoot`` straight over a host directory (``make_root``).
"""
from __future__ import annotations

import collections
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from hv import guests
from hv.container.layers import LayeredRoot

QEMU = shutil.which("qemu-i386")
needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-i386 not installed (apt-get install qemu-user)")


def make_root(top) -> LayeredRoot:
    return LayeredRoot.from_directory(Path(top))


Result = collections.namedtuple("Result", "status stdout stderr process")


def run_program(name: str, args=(), *, workdir=None, stdin: bytes = b"", argv0: str | None = None,
                env=("HV_TEST=1",), engine=None, **kw) -> Result:
    """Run guest program ``name`` in hv: the program sits at /bin/<name> of a root over
    ``workdir`` (a fresh temp dir when None), cwd /; returns (status, stdout, stderr, process)."""
    from hv.container.process import Process, run_to_exit
    top = Path(workdir)
    (top / "bin").mkdir(exist_ok=True)
    prog = top / "bin" / name
    if not prog.exists():
        shutil.copyfile(guests.linux_program_path(name), prog)
    out, err = io.BytesIO(), io.BytesIO()
    p = Process(f"/bin/{name}", [argv0 or name, *args], list(env), make_root(top), cwd="/",
                stdin=io.BytesIO(stdin), stdout=out, stderr=err, **kw)
    status = run_to_exit(p, engine)
    prog.unlink()
    if not any((top / "bin").iterdir()):
        (top / "bin").rmdir()
    return Result(status, out.getvalue(), err.getvalue(), p)


def run_qemu(name: str, args=(), *, workdir, stdin: bytes = b"", argv0: str | None = None,
             env=("HV_TEST=1",)) -> Result:
    """The same program under qemu-i386 with ``workdir`` as its cwd."""
    proc = subprocess.run([QEMU, "-0", argv0 or name, str(guests.linux_program_path(name)), *args],
                          cwd=workdir, input=stdin, capture_output=True, env=dict(e.split("=", 1) for e in env),
                          timeout=120)
    return Result(proc.returncode if proc.returncode >= 0 else 128 - proc.returncode, proc.stdout,
                  proc.stderr, None)


@pytest.fixture
def hv_run(tmp_path):
    """run_program in a fresh directory per test."""
    def run(name, args=(), **kw):
        kw.setdefault("workdir", tmp_path)
        return run_program(name, args, **kw)
    return run


# -- hand-made programs --------------------------------------------------------------------
TINY_BASE = 0x08048000
TINY_CODE = TINY_BASE + 0x54        # right after the ELF header and the one program header


def tiny_elf(code: bytes, *, e_type: int = 2, flags: int = 5, memsz: int | None = None) -> bytes:
    """A minimal static i386 executable: one PT_LOAD (R+X by default) holding the headers
    and ``code``, entry at ``code``."""
    import struct
    size = 0x54 + len(code)
    ehdr = struct.pack("<4sBBBB8xHHIIIIIHHHHHH", b"\x7fELF", 1, 1, 1, 0, e_type, 3, 1, TINY_CODE, 52, 0,
                       0, 52, 32, 1, 0, 0, 0)
    phdr = struct.pack("<8I", 1, 0, TINY_BASE, TINY_BASE, size, memsz or size, flags, 0x1000)
    return ehdr + phdr + code


# machine code pieces, each with its assembly
EXIT_7 = bytes.fromhex("b801000000" "bb07000000" "cd80")     # mov eax,1; mov ebx,7; int 0x80


def run_tiny(tmp_path, code: bytes, engine=None, **kw):
    """Write tiny_elf(code) to a host file and run it (no root); returns the process."""
    from hv.container.process import Process, run_to_exit
    path = tmp_path / f"tiny{len(list(tmp_path.iterdir()))}"
    path.write_bytes(tiny_elf(code))
    p = Process(str(path), ["tiny"], [], **kw)
    run_to_exit(p, engine)
    return p


@pytest.fixture
def home(tmp_path, monkeypatch):
    """HV_HOME with the test image "svc" (a module's own ``home`` takes precedence)."""
    from hv.container.images import ImageStore
    from tests.container.test_containers import make_image_dir
    h = tmp_path / "home"
    monkeypatch.setenv("HV_HOME", str(h))
    ImageStore(h).build(make_image_dir(tmp_path / "imgdir"), "svc")
    return h


def cli(capfd):
    """`hv container ARGS` in this process: a function returning (status, stdout, stderr)."""
    from hv.container.container import main_container

    def run(*argv):
        capfd.readouterr()
        status = main_container([str(a) for a in argv])
        out, err = capfd.readouterr()
        return status, out, err
    return run


def service_home(top: Path, programs=(), image: str = "svc") -> Path:
    """An image store at ``top/home`` holding the test image (named ``image``), with these
    guest programs added under /bin and an /input.txt."""
    from hv.container.images import ImageStore
    from tests.container.test_containers import make_image_dir
    d = make_image_dir(top / "imgdir")
    for prog in programs:
        shutil.copyfile(guests.linux_program_path(prog), d / "bin" / prog)
        (d / "bin" / prog).chmod(0o755)
    (d / "input.txt").write_text("first line\nsecond line\n")
    h = top / "home"
    ImageStore(h).build(d, image)
    return h
