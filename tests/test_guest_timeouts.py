"""A guest that does not finish in time is a failure that says so, with what it printed,
under hv and under QEMU: never partial output passed on as the result."""
from __future__ import annotations

import pytest

from hv import guests
from tests.conftest import needs_binutils
from tests.guest_run import GuestTimeout
from tests.qemu_util import QemuTimeout, qemu_available, run_image

SPIN = """
    mov $0x3f8, %dx
    mov $'x', %al
    out %al, %dx
1:  jmp 1b
"""


@needs_binutils
def test_a_guest_that_spins_past_its_timeout_fails_with_guest_timeout_and_its_output(boot):
    with pytest.raises(GuestTimeout) as e:
        boot(SPIN, timeout=0.5)
    assert "did not finish within 0.5 s" in str(e.value) and "'x'" in str(e.value)


@pytest.mark.skipif(not qemu_available(), reason="qemu-system-i386 not installed")
def test_qemu_output_that_never_matches_fails_with_qemu_timeout_and_the_output_so_far():
    with pytest.raises(QemuTimeout) as e:
        run_image(guests.image_path("hello"), until=r"never printed", timeout=3)
    message = str(e.value)
    assert message.startswith("QEMU did not finish within 3 s; output so far:")
    assert "Hello" in message


@pytest.mark.skipif(not qemu_available(), reason="qemu-system-i386 not installed")
def test_qemu_output_that_matches_is_returned_whole():
    out = run_image(guests.image_path("hello"), until=r"Hello.*\r\n", timeout=15)
    assert "Hello" in out
