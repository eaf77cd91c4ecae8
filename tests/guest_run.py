"""A guest run that did not finish is a failure that says so, not an output mismatch.

hv's ``Machine.run`` ends a run that reaches ``MachineConfig.timeout`` with exit code 124;
``expect_finished`` turns that into ``GuestTimeout`` naming the limit and showing the
serial output so far (QEMU runs do the same in ``tests.qemu_util.run_image``).
"""
from __future__ import annotations

from hv.machine import TIMEOUT_EXIT


class GuestTimeout(AssertionError):
    """A guest (under hv or QEMU) did not finish within its wall-clock limit."""


def expect_finished(machine, result, what: str = "the guest"):
    """Return ``result``, or raise GuestTimeout if the run hit its timeout."""
    if result is not None and result.exit_code == TIMEOUT_EXIT:
        raise GuestTimeout(f"hv: {what} did not finish within {machine.config.timeout:g} s; "
                           f"serial output so far: {machine.serial_text()[-2000:]!r}")
    return result
