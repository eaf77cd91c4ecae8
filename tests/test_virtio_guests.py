"""The virtio guests under hv: disktest-virtio and nettest-virtio print their emulated
twins' output line for line (all but the header), balloontest passes every check.
See docs/virtio-guests.md."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import hvcmd
from hv.machine import BIOS_STYLES

GOLDEN = Path(__file__).parent / "golden"


def hv_run(guest: str, *args: str) -> str:
    r = hvcmd.run(["run", guest, "--timeout", "60", *args], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout.replace("\r\n", "\n")


def golden_lines(name: str) -> list[str]:
    return (GOLDEN / f"{name}.serial.txt").read_bytes().decode("latin-1").replace("\r\n", "\n").splitlines()


@pytest.fixture(scope="module", params=BIOS_STYLES)
def outputs(request):
    """Each guest run once per BIOS style, shared by the tests of that style."""
    return {g: hv_run(g, "--bios", request.param).splitlines()
            for g in ("disktest-virtio", "nettest-virtio", "balloontest")}


def test_disktest_virtio_prints_disktest_lines_after_its_header(outputs):
    assert outputs["disktest-virtio"][1:] == golden_lines("disktest")[1:]


def test_disktest_virtio_header_names_the_virtio_blk_slot(outputs):
    assert outputs["disktest-virtio"][0] == "disktest-virtio: virtio-blk, virtio-mmio slot 0 at 0xd0000, IRQ 10"


def test_nettest_virtio_prints_nettest_lines_after_its_header(outputs):
    assert outputs["nettest-virtio"][1:] == golden_lines("nettest")[1:]


def test_nettest_virtio_header_names_the_virtio_net_slot(outputs):
    assert outputs["nettest-virtio"][0] == "nettest-virtio: virtio-net, virtio-mmio slot 1 at 0xd1000, IRQ 11"


def test_balloontest_passes_every_check(outputs):
    lines = outputs["balloontest"]
    verdicts = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
    assert verdicts and all(line.startswith("PASS ") for line in verdicts)
    assert lines[-1] == f"balloontest done: {len(verdicts)} passed, 0 failed"


def test_balloontest_inflates_and_deflates_the_default_8_mib(outputs):
    lines = outputs["balloontest"]
    assert "PASS inflated 2048 pages (8 MiB)" in lines
    assert "PASS deflated 2048 pages" in lines


@pytest.mark.parametrize("guest", ["disktest-virtio", "nettest-virtio", "balloontest"])
def test_output_matches_the_golden_file(outputs, guest):
    assert outputs[guest] == golden_lines(guest)


def test_balloontest_follows_the_balloon_size_option():
    lines = hv_run("balloontest", "--balloon", "4M").splitlines()
    assert "target 1024 pages (4 MiB)" in lines
    assert "PASS inflated 1024 pages (4 MiB)" in lines
    assert lines[-1].endswith(" 0 failed")
