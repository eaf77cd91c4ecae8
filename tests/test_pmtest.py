"""pmtest, the protected-mode conformance guest (docs/pmtest.md), differentially: QEMU +
SeaBIOS must print the golden output, and so must hv under both BIOS styles and both exit
dispatchers. Each run ends in the guest's deliberate triple fault: QEMU (-no-reboot) exits,
hv ends the run and says so."""
from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from hv import fastpath, guests
from hv.machine import BIOS_STYLES, DriveSpec, Machine, MachineConfig
from tests.conftest import disk_copy
from tests.guest_run import expect_finished
from tests.qemu_util import qemu_available, run_image

GOLDEN = Path(__file__).parent / "golden" / "pmtest.serial.txt"
HEADER = "pmtest: protected mode, paging, rings, APIC"
LAST_LINE = "triple fault next"
CHECK_LINE = re.compile(r"(PASS|FAIL) ([a-z0-9-]+)")

# Checks hv cannot pass yet, and what each one needs. The lead removes entries as the
# features land; test_hv_prints_the_golden_output stays an expected failure until the
# set is empty.
HV_MISSING: dict[str, str] = {}      # checks hv does not pass yet: none

DISPATCHERS = [
    "python",
    pytest.param("c", marks=pytest.mark.skipif(not fastpath.c_available(),
                                               reason="the C fast path was not built")),
]


def golden() -> str:
    return GOLDEN.read_bytes().decode("latin-1")


def check_lines(serial: str) -> dict[str, str]:
    """check name -> its whole result line."""
    return {m.group(2): line for line in serial.split("\r\n") if (m := CHECK_LINE.match(line))}


def line_diff(got: str, want: str) -> str:
    return "\n".join(difflib.unified_diff(want.split("\r\n"), got.split("\r\n"),
                                          "QEMU (golden)", "hv", lineterm=""))


@pytest.fixture(scope="module")
def hv_run(tmp_path_factory):
    """Boot pmtest under hv as the primary IDE master (IRQ 14 needs the drive), once per
    (BIOS style, dispatcher); returns (serial output, RunResult)."""
    runs = {}

    def run(bios: str, dispatch: str):
        if (bios, dispatch) not in runs:
            tmp = tmp_path_factory.mktemp(f"pmtest-{bios}-{dispatch}")
            img = disk_copy(guests.image_path("pmtest"), tmp / "pmtest.img", "hda")
            m = Machine(MachineConfig(bios=bios, dispatch=dispatch, timeout=120,
                                      hda=DriveSpec(str(img))))
            try:
                result = expect_finished(m, m.run(), "pmtest")
            finally:
                m.close()
            runs[bios, dispatch] = (m.serial_text(), result)
        return runs[bios, dispatch]
    return run


def test_the_golden_output_is_one_pass_line_per_check_then_the_triple_fault_notice():
    lines = golden().split("\r\n")
    assert lines[0] == HEADER and lines[-2:] == [LAST_LINE, ""]
    checks = lines[1:-3]
    assert all(CHECK_LINE.fullmatch(line) and line.startswith("PASS ") for line in checks), checks
    assert len(set(checks)) == len(checks) == 34
    assert lines[-3] == f"pmtest done: {len(checks)} passed, 0 failed"


def test_every_check_hv_is_said_to_miss_is_a_check_pmtest_makes():
    assert set(HV_MISSING) <= set(check_lines(golden()))


def test_qemu_prints_the_golden_output_and_stops_at_the_triple_fault():
    if not qemu_available():
        pytest.skip("qemu-system-i386 is not installed (apt-get install qemu-system-x86)")
    # No `until`: the run lasts until QEMU exits at the guest's triple fault (-no-reboot).
    out = run_image(guests.image_path("pmtest"), drive="hd", timeout=60)
    assert out == golden(), line_diff(out, golden())


@pytest.mark.parametrize("dispatch", DISPATCHERS)
@pytest.mark.parametrize("bios", BIOS_STYLES)
def test_hv_passes_every_check_it_has_the_features_for(hv_run, bios, dispatch):
    serial, result = hv_run(bios, dispatch)
    got, want = check_lines(serial), check_lines(golden())
    expected = {name: line for name, line in want.items() if name not in HV_MISSING}
    assert {name: got.get(name) for name in expected} == expected, line_diff(serial, golden())
    assert list(got) == list(want), "the checks ran in another order or some are missing"
    assert serial.endswith(f"\r\n{LAST_LINE}\r\n")


@pytest.mark.parametrize("dispatch", DISPATCHERS)
@pytest.mark.parametrize("bios", BIOS_STYLES)
def test_hv_reports_the_triple_fault_and_ends_the_run(hv_run, bios, dispatch):
    _, result = hv_run(bios, dispatch)
    assert result.exit_code == 1 and "triple fault" in result.reason, result


@pytest.mark.parametrize("dispatch", DISPATCHERS)
@pytest.mark.parametrize("bios", BIOS_STYLES)
def test_hv_prints_the_golden_output(hv_run, bios, dispatch):
    serial, _ = hv_run(bios, dispatch)
    assert serial == golden(), line_diff(serial, golden())
