"""Host-side failures end the run cleanly (issue 8, item 4).

Each case gets one ``hv: ...`` line on stderr and no traceback, a non-zero exit status,
and whatever was written before the failure stays written: a serial or pcap file that
fails mid-run (EFBIG, ENOSPC, EIO), a device model that raises (under both dispatchers),
errors in Machine.service() and Machine.close(), a reader that closes the pipe, and
``hv build`` without a toolchain.

EIO is simulated by wrapping the file hv opens (a real EIO needs a failing block device:
dm-error or a FUSE file system, i.e. root and kernel modules, not available in CI).
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from hv import cli, fastpath
from hv.machine import Machine, MachineConfig
from tests import hvcmd
from tests.test_vcpu_control import flat_kernel

DISPATCHERS = ["python"] + (["c"] if fastpath.c_available() else [])


def one_hv_line(stderr: str) -> str:
    """The run's single stderr line; fails on a traceback or any other line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hv: "), stderr
    return lines[0]


def reference_serial(name: str, *extra: str) -> bytes:
    """What the guest writes on serial when nothing fails."""
    r = hvcmd.run(["run", name, "--no-live", "--timeout", "30", *extra], capture_output=True,
                  stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def limit_file_size(nbytes: int):
    """preexec_fn: files larger than nbytes fail with EFBIG (SIGXFSZ ignored, so the write
    returns the error instead of killing the process)."""
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return preexec


# -- a serial or pcap file that fails mid-run ----------------------------------------------

def test_serial_file_too_large_efbig_ends_the_run_in_one_line_keeping_what_was_written(tmp_path):
    full = reference_serial("bioscheck")
    assert len(full) > 600
    out = tmp_path / "serial.txt"
    r = hvcmd.run(["run", "bioscheck", "--no-live", "--serial", str(out), "--timeout", "30"],
                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                  preexec_fn=limit_file_size(300))
    assert r.returncode == 1
    line = one_hv_line(r.stderr)
    assert f"--serial {out}" in line and "too large" in line.lower()
    assert out.read_bytes() == full[:300]          # everything up to the limit is kept


def test_serial_stdout_too_large_efbig_keeps_the_lines_before(tmp_path):
    full = reference_serial("bioscheck")
    out = tmp_path / "stdout.txt"
    with open(out, "wb") as f:
        r = hvcmd.run(["run", "bioscheck", "--no-live", "--timeout", "30"], stdout=f,
                      stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, timeout=60,
                      preexec_fn=limit_file_size(300))
    assert r.returncode == 1
    assert "--serial stdio" in one_hv_line(r.stderr)
    assert out.read_bytes() == full[:300]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this host")
@pytest.mark.parametrize("where", ["file", "stdout"])
def test_serial_on_a_full_disk_enospc_ends_the_run_in_one_line(where):
    args = ["run", "bioscheck", "--no-live", "--timeout", "30"]
    with open("/dev/full", "wb") as full:
        if where == "file":
            r = hvcmd.run(args + ["--serial", "/dev/full"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
        else:
            r = hvcmd.run(args, stdout=full, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 1
    assert "No space left on device" in one_hv_line(r.stderr)


def test_pcap_file_too_large_efbig_ends_the_run_keeping_what_was_written(tmp_path):
    pcap = tmp_path / "net.pcap"
    r = hvcmd.run(["run", "nettest", "--no-live", "--pcap", str(pcap), "--timeout", "30"],
                  capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                  preexec_fn=limit_file_size(200))
    assert r.returncode == 1
    line = one_hv_line(r.stderr)
    assert f"--pcap {pcap}" in line and "too large" in line.lower()
    data = pcap.read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1") and len(data) == 200   # written up to the limit
    assert "nettest done" not in r.stdout          # the run ended at the failure
    assert "PASS reset" in r.stdout                # serial written before it is kept


# A prelude for `python -c`: hv's own open() of one path returns a file whose writes fail
# with EIO once `budget` bytes went through, then the CLI runs as usual.
EIO_PRELUDE = textwrap.dedent("""
    import builtins, errno, sys
    import hv.cli, hv.net
    TARGET, BUDGET = sys.argv[1], int(sys.argv[2])

    class FailingFile:
        def __init__(self, f):
            self.f, self.left = f, BUDGET
        def write(self, data):
            if len(data) > self.left:
                n = self.left
                self.f.write(data[:n]); self.f.flush(); self.left = 0
                raise OSError(errno.EIO, "Input/output error")
            self.left -= len(data)
            return self.f.write(data)
        def __getattr__(self, name):
            return getattr(self.f, name)

    def failing_open(path, *a, **k):
        f = builtins.open(path, *a, **k)
        return FailingFile(f) if str(path) == TARGET else f
    hv.cli.open = hv.net.open = failing_open
    sys.exit(hv.cli.main(sys.argv[3:]))
""")


@pytest.mark.parametrize("what", ["serial", "pcap"])
def test_eio_mid_run_ends_the_run_in_one_line(tmp_path, what):
    target = tmp_path / f"out.{what}"
    guest = "bioscheck" if what == "serial" else "nettest"
    r = subprocess.run([sys.executable, "-c", EIO_PRELUDE, str(target), "300", "run", guest,
                        "--no-live", f"--{what}", str(target), "--timeout", "30"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                       cwd=hvcmd.OUTSIDE)
    assert r.returncode == 1
    line = one_hv_line(r.stderr)
    assert f"--{what} {target}: Input/output error" in line
    assert target.stat().st_size == 300                # what got through is kept


# -- a device model that raises ------------------------------------------------------------

def raise_model_bug(offset: int, size: int, value: int) -> None:
    raise ZeroDivisionError("model bug")


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_device_model_error_is_reported_the_same_under_both_dispatchers(tmp_path, dispatch):
    kernel = flat_kernel(tmp_path, """
        mov $0x3F8, %dx
        mov $'A', %al
        out %al, %dx                   # serial output before the failure
        out %al, $0x70                 # the CMOS model raises
        cli
        hlt
    """)
    out = bytearray()
    m = Machine(MachineConfig(kernel=str(kernel), kernel_format="flat", dispatch=dispatch,
                              serial=out.extend, timeout=10))
    try:
        cmos = m.ports.device_at(0x70)
        assert not hasattr(cmos, "bind_fast")      # a Python model under either dispatcher
        cmos.write = raise_model_bug               # a buggy model, this machine only
        result = m.run()
        assert m.vcpu.fast.kind == dispatch
    finally:
        m.close()
    assert result.exit_code == 1
    assert result.reason == "device model error: ZeroDivisionError: model bug"
    assert bytes(out) == b"A"


# -- errors in Machine.service() and Machine.close() ---------------------------------------

def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["run", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_an_error_in_machine_service_ends_the_run_in_one_line(monkeypatch, capsys):
    calls = [0]
    real = Machine.service

    def service(self) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(5, "Input/output error")
        real(self)
    monkeypatch.setattr(Machine, "service", service)
    code, _, err = run_cli(capsys, "timer", "--no-live", "--serial", "none", "--timeout", "20")
    assert code == 1
    assert one_hv_line(err) == "hv: host error: OSError: [Errno 5] Input/output error"


def test_an_error_in_machine_close_fails_the_run_in_one_more_line(monkeypatch, capsys):
    real = Machine.close

    def close(self) -> None:
        real(self)
        raise RuntimeError("back end would not close")
    monkeypatch.setattr(Machine, "close", close)
    code, _, err = run_cli(capsys, "hello", "--no-live", "--serial", "none", "--timeout", "20")
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    # The run's own closing line, then the close error on one line.
    assert len(lines) == 2 and all(x.startswith("hv: ") for x in lines), err
    assert lines[1] == "hv: error while closing the machine: RuntimeError: back end would not close"


# -- a reader that closes the pipe ---------------------------------------------------------

def test_stdout_closed_before_the_first_write_is_one_line_and_exit_1():
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = hvcmd.run(["run", "bioscheck", "--no-live", "--timeout", "30"], stdout=write_end,
                      stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, timeout=60)
    finally:
        os.close(write_end)
    assert r.returncode == 1           # README: a host-side error ends the run with exit 1
    assert one_hv_line(r.stderr) == "hv: --serial: the reader closed the pipe"


def test_piped_into_head_never_prints_a_traceback(tmp_path):
    hv = " ".join(map(str, hvcmd.HV))
    r = subprocess.run(f"{hv} run bioscheck --no-live --timeout 30 | head -2; "
                       f"echo \"status ${{PIPESTATUS[0]}}\" >&2",
                       shell=True, executable="/bin/bash", capture_output=True, text=True,
                       cwd=hvcmd.OUTSIDE, timeout=60)
    assert r.stdout.splitlines() == ["PASS int10_00_mode03", "PASS int10_00_mode02"]
    *hv_lines, status = r.stderr.strip().splitlines()
    assert len(hv_lines) == 1 and "Traceback" not in r.stderr, r.stderr
    # Whether head closed the pipe before hv finished writing is a race: either way
    # one line, and exit 1 exactly when the pipe was closed under it.
    if "the reader closed the pipe" in hv_lines[0]:
        assert status == "status 1"
    else:
        assert hv_lines[0].startswith("hv: guest halted") and status == "status 0"


# -- hv build without a toolchain ----------------------------------------------------------

def test_build_without_a_toolchain_is_one_line_and_non_zero(tmp_path):
    bin_dir = tmp_path / "bin"                 # PATH with python and nothing else
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python3")
    for tool in ("gcc", "as", "ld"):
        assert shutil.which(tool, path=str(bin_dir)) is None
    env = dict(os.environ, PATH=str(bin_dir))
    out = tmp_path / "out"
    r = subprocess.run([str(bin_dir / "python3"), "-m", "hv", "build", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=hvcmd.OUTSIDE, timeout=60)
    assert r.returncode == 1
    line = one_hv_line(r.stderr)
    assert line.startswith("hv: build failed: ")
