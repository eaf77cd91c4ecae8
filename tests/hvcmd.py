"""Run the installed ``hv`` command as a user does: from a folder outside the checkout.

``python -m hv`` puts its working directory first on sys.path, so run from the checkout
it would import the source tree instead of the installed package under test.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile

HV = [sys.executable, "-m", "hv"]
OUTSIDE = tempfile.mkdtemp(prefix="hv-test-cwd-")


def run(args, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("cwd", OUTSIDE)
    return subprocess.run(HV + list(args), **kw)


def popen(args, **kw) -> subprocess.Popen:
    kw.setdefault("cwd", OUTSIDE)
    return subprocess.Popen(HV + list(args), **kw)
