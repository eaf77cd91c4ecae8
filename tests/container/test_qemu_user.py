"""Differential tests: the same static i386 binaries, argv, stdin and files under hv's
process containers and under Debian's qemu-i386 give the same stdout, stderr and exit status.

qemu-i386 runs with a temp directory as its cwd; hv runs with a root over another temp
directory holding the same files, cwd "/". The programs use relative paths only.
"""
from __future__ import annotations

import os

import pytest

from tests.container.conftest import needs_qemu, run_program, run_qemu

pytestmark = needs_qemu

INPUT = "first line\nsecond line\nthird line\n"
STDIN = b"hello stdin\nsecond line of it\n"


def _workdirs(tmp_path):
    dirs = []
    for side in ("hv", "qemu"):
        d = tmp_path / side
        d.mkdir()
        (d / "input.txt").write_text(INPUT)
        dirs.append(d)
    return dirs


def _tree(top):
    """Every path under ``top`` with its type and, for files, its contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                out[rel] = ("dir", oct(os.stat(path).st_mode & 0o777))
            else:
                out[rel] = ("file", open(path, "rb").read(), oct(os.stat(path).st_mode & 0o777))
    return out


CASES = [
    ("hello", []),
    ("args", ["one", "two words", ""]),
    ("files", []),
    ("errors", []),
    ("memory", []),
    ("io", []),
    ("sleep", []),
    ("cpuloop", ["300000"]),
    ("exitcode", []),
    ("exitcode", ["exit", "42"]),
    ("exitcode", ["exit", "300"]),
    ("exitcode", ["kill", "15"]),
    ("exitcode", ["ignore"]),
]


@pytest.mark.parametrize("name,args", CASES, ids=[f"{n}-{'-'.join(a) or 'noargs'}" for n, a in CASES])
def test_program_gives_the_same_output_and_status_as_qemu_i386(tmp_path, name, args):
    mine, theirs = _workdirs(tmp_path)
    hv = run_program(name, args, workdir=mine, stdin=STDIN, env=("HV_TEST=x y",))
    qemu = run_qemu(name, args, workdir=theirs, stdin=STDIN, env=("HV_TEST=x y",))
    assert hv.stdout == qemu.stdout
    assert hv.stderr == qemu.stderr
    assert hv.status == qemu.status
    assert _tree(mine) == _tree(theirs)      # the files the program left behind


@pytest.mark.parametrize("how,signo", [("abort", 6), ("segv", 11), ("ud2", 4)])
def test_program_killed_by_a_signal_ends_as_under_qemu_i386(tmp_path, how, signo):
    mine, theirs = _workdirs(tmp_path)
    hv = run_program("exitcode", [how], workdir=mine)
    qemu = run_qemu("exitcode", [how], workdir=theirs)
    assert hv.status == qemu.status == 128 + signo
    assert hv.stdout == qemu.stdout == f"ending by {how}\n".encode()
    # qemu prints its own notice where a shell would; hv keeps one line for its caller
    assert f"uncaught target signal {signo} " in qemu.stderr.decode()
    assert hv.stderr == b""
    assert "\n" not in hv.process.message and hv.process.message.startswith(
        {6: "SIGABRT", 11: "SIGSEGV", 4: "SIGILL"}[signo])


def test_large_stdin_is_streamed_through_like_qemu_i386(tmp_path):
    mine, theirs = _workdirs(tmp_path)
    data = b"".join(b"line %d of a long input\n" % i for i in range(20000))
    hv = run_program("io", [], workdir=mine, stdin=data)
    qemu = run_qemu("io", [], workdir=theirs, stdin=data)
    assert (hv.status, hv.stdout, hv.stderr) == (qemu.status, qemu.stdout, qemu.stderr)
    assert b"stdin: %d bytes, 20000 lines" % len(data) in hv.stdout
