"""--timeout is honoured whatever the guest does (issue 15): Debian's Linux is cut off
mid-boot again and again, each run stopping at a different point of the boot (the kernel's
decompressor, its timer calibration, the drivers' probes, /init), and every run must end
with exit 124 and say so. Before the vCPU's control guarantee, a boot could hang in a way
--timeout did not end (one run was killed after 698 s).

Issue 15's acceptance is 100 boots; the suite runs fewer (two at a time, about 6 s each)
to keep its total time down. ``HV_LINUX_TIMEOUT_BOOTS=100`` runs the full count.
"""
from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import hvcmd, linux_fixture

debian_linux = linux_fixture.debian_linux

TIMEOUT_S = 5
BOOTS = int(os.environ.get("HV_LINUX_TIMEOUT_BOOTS", "16"))
PARALLEL = 2
# Python's start-up and the machine's construction come before --timeout's clock starts,
# and a loaded CI host slows both: the bound only separates "ended" from "hung".
SLACK_S = 5


@pytest.fixture(scope="module")
def initrd(debian_linux, tmp_path_factory):
    # If a run ever got as far as /init, it spins there: the timeout must still end it.
    script = "#!/bin/sh\nwhile :; do :; done\n"
    path = tmp_path_factory.mktemp("linux") / "initrd.gz"
    path.write_bytes(linux_fixture.build_initramfs(script, debian_linux.busybox.read_bytes()))
    return path


@pytest.mark.slow
@pytest.mark.timeout(BOOTS * (TIMEOUT_S + SLACK_S + 30))
def test_every_linux_boot_cut_off_by_timeout_ends_with_exit_124(debian_linux, initrd):
    argv = ["run", "--kernel", str(debian_linux.kernel), "--initrd", str(initrd),
            "--append", "console=ttyS0", "--mem", "256M", "--serial", "none", "--no-live",
            "--timeout", str(TIMEOUT_S)]

    def boot(_):
        t0 = time.monotonic()
        try:
            p = hvcmd.run(argv, capture_output=True, timeout=TIMEOUT_S + SLACK_S)
        except subprocess.TimeoutExpired:
            return None, "", time.monotonic() - t0
        return p.returncode, p.stderr.decode("latin-1"), time.monotonic() - t0

    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = list(pool.map(boot, range(BOOTS)))
    hung = [i for i, (code, _, _) in enumerate(runs) if code is None]
    assert not hung, f"runs {hung} of {BOOTS} did not end within {TIMEOUT_S + SLACK_S} s"
    for code, err, _ in runs:
        assert code == 124 and f"timeout after {TIMEOUT_S} s" in err, (code, err[-2000:])
    times = sorted(t for _, _, t in runs)
    print(f"{BOOTS} boots, --timeout {TIMEOUT_S}: ended after {times[len(times) // 2]:.2f} s "
          f"(median), {times[-1]:.2f} s (slowest), from process start to exit")
