"""Both exit dispatchers run the same device suite, and hv works with no C compiler."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hv import fastpath

ROOT = Path(__file__).resolve().parent.parent

# The tests that run devices inside a machine (register-level device unit tests
# do not involve the dispatcher at all).
MACHINE_SUITE = [
    "tests/test_machine_core.py", "tests/test_guests_hv.py", "tests/test_storage_network_hv.py",
    "tests/test_virtio_guests.py", "tests/test_net_pair.py", "tests/devices/test_contract.py",
    "tests/test_bios_synthetic.py", "tests/test_direct_boot.py",
]


@pytest.mark.skipif(os.environ.get("HV_DISPATCH") == "python",
                    reason="already running under the Python dispatcher")
@pytest.mark.skipif(not fastpath.c_available(),
                    reason="the C fast path was not built, so the main run already used Python")
def test_the_machine_device_suite_passes_under_the_python_dispatcher(tmp_path):
    env = dict(os.environ, HV_DISPATCH="python")
    # From a neutral folder: `python -m` puts its working directory first on sys.path,
    # and the checkout there would shadow the installed hv under test.
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "--rootdir", str(ROOT),
                        "-c", str(ROOT / "pyproject.toml"), *(str(ROOT / t) for t in MACHINE_SUITE)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_the_default_dispatcher_is_c_when_built():
    from hv.machine import Machine, MachineConfig
    m = Machine(MachineConfig())
    try:
        expected = "c" if fastpath.c_available() and os.environ.get("HV_DISPATCH") != "python" \
            else "python"
        assert m.vcpu.fast.kind == expected
    finally:
        m.close()


def test_without_a_c_compiler_hv_installs_boots_hello_and_reports_python_dispatch(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "*.so", "*.o", "__pycache__", "*.egg-info", ".hypothesis", ".benchmarks"))
    venv = tmp_path / "venv"
    # The runtime dependencies come from the system site; the build environment
    # (setuptools, wheel, cffi) is fetched by pip from the package index as in a
    # fresh install.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    # PATH holds the venv and nothing else: no gcc, no cc.
    env = dict(os.environ, PATH=str(venv / "bin"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("HV_DISPATCH", None)
    assert shutil.which("gcc", path=env["PATH"]) is None and shutil.which("cc", path=env["PATH"]) is None
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(src)],
                       env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(venv / "bin" / "hv"), "run", "hello", "--stats", "--no-live",
                        "--timeout", "30"], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "Hello" in r.stdout
    assert "dispatch: python" in r.stderr
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import hv, hv.fastpath as f; print(hv.__file__, f.c_available())"],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert str(venv) in probe.stdout and probe.stdout.split()[-1] == "False", probe.stdout
