"""`hv bench --quick` runs the whole matrix and writes the report, the plots and the JSON
(about 30 s: the --quick profile itself, so the test runs what a person runs)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from hv import fastpath

SUMMARY_KEYS = [
    "exit_ns_pio_python", "exit_ns_pio_c", "exit_ns_mmio_python", "exit_ns_mmio_c",
    "disk_read_16m_mbps_ide", "disk_read_16m_mbps_virtio",
    "disk_exits_per_mib_ide", "disk_exits_per_mib_virtio",
    "net_pps_1500_ne2000", "net_pps_1500_virtio",
    "boot_ms_emulated_bios", "boot_ms_synthetic_bios", "boot_ms_direct",
    "cpu_ratio_vs_unicorn", "machine_overhead_mib",
    # process containers (issue 9) and utility VMs (issue 12)
    "container_start_cold_ms", "container_start_warm_ms", "container_getpid_us",
    "container_devnull_us", "container_regquery_us", "container_idle_mib_besides_guest",
    "uvm_cold_boot_ms", "uvm_start_from_template_ms", "uvm_stat_us", "uvm_openread_us",
    "uvm_regquery_us", "uvm_stat_process_container_us", "uvm_openread_process_container_us",
    "uvm_regquery_process_container_us", "uvm_idle_mib_per_vm",
]
QEMU_KEYS = ["container_service_hv_over_qemu", "container_cpu_hv_over_qemu"]
# Issues 9 and 12's targets, as the report names them (the density one ends with its N).
CONTAINER_TARGETS = [
    "container start, cold (create to first instruction)", "container start, from the warm pool",
    "container getpid round trip", "container service workload: hv / qemu-i386",
    "container CPU-bound (cpuloop): hv / qemu-i386",
    "host memory per idle container besides guest pages (N=10)",
    "utility VM: start from the template to the first instruction", "utility VM: cold boot to ready",
    "utility VM: forwarded stat", "utility VM: forwarded open+read",
    "utility VM: forwarded registry query", "utility VM: RSS per idle VM",
]
PLOTS = ["bench-exit-cost.png", "bench-disk.png", "bench-net.png", "bench-boot.png",
         "bench-cpu.png", "bench-machines.png", "bench-containers.png"]


# `hv bench --quick` takes about 30 s; a guest that hangs in it (an IDE off-by-one once
# made disktest wait forever) must fail the first test that needs the run, not the job.
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not fastpath.c_available():
        pytest.skip("the C dispatch was not built: the C half of the matrix cannot run")
    from hv.cli import main
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--out", str(out)])
    return code, out


def test_hv_bench_quick_exits_zero(quick_run):
    code, _out = quick_run
    assert code == 0


def test_hv_bench_quick_summary_has_every_key_with_a_number(quick_run):
    _code, out = quick_run
    summary = json.loads((out / "bench-report.json").read_text())["summary"]
    keys = SUMMARY_KEYS + (QEMU_KEYS if shutil.which("qemu-i386") else [])
    missing = [k for k in keys if not isinstance(summary.get(k), (int, float))
               or isinstance(summary.get(k), bool)]
    assert not missing, {k: summary.get(k) for k in missing}


def test_hv_bench_quick_report_lists_every_target_with_pass_or_miss(quick_run):
    _code, out = quick_run
    doc = json.loads((out / "bench-report.json").read_text())
    report = (out / "bench-report.md").read_text()
    # Without qemu-i386 the two ratios to it are not measured: n/a, and a note says why.
    unmeasured = [t["target"] for t in doc["targets"] if t["status"] not in ("PASS", "MISS")]
    if shutil.which("qemu-i386"):
        assert not unmeasured, unmeasured
    else:
        assert all("qemu-i386" in name for name in unmeasured), unmeasured
        assert any("qemu-i386 was not found" in n for n in doc["notes"]), doc["notes"]
    for t in doc["targets"]:
        assert f"| {t['target']} |" in report and t["status"] in report
    assert "hv bench --quick" in report and "unicorn" in report


def test_hv_bench_quick_reports_the_container_and_utility_vm_targets_and_sections(quick_run):
    _code, out = quick_run
    doc = json.loads((out / "bench-report.json").read_text())
    report = (out / "bench-report.md").read_text()
    targets = {t["target"]: t for t in doc["targets"]}
    assert [name for name in CONTAINER_TARGETS if name not in targets] == []
    # the forwarded calls are reported beside the process container's, in the row itself
    for kind in ("stat", "open+read", "registry query"):
        t = targets[f"utility VM: forwarded {kind}"]
        assert t["beside"].startswith("process container ") and t["beside"] in report
    assert "## Process containers (issue 9)" in report and "## Utility VMs (issue 12)" in report
    # every case ran without an error, at the --quick profile's counts
    cases = {k: f for k, f in doc["results"].items() if f.get("group") in ("container", "uvm")}
    assert {k for k, f in cases.items() if "error" in f} == set()
    assert sorted(f["containers"] for k, f in cases.items() if k.startswith("container density ")) == [1, 10]
    assert {"container start cold", "container start warm", "uvm cold boot", "uvm start",
            "uvm stat", "uvm openread", "uvm regquery", "uvm idle"} <= set(cases)
    from hv.container.engine import c_available
    assert cases["container getpid"]["path"] == ("c" if c_available() else "python")


def test_hv_bench_quick_writes_every_plot_as_png(quick_run):
    pytest.importorskip("matplotlib")
    _code, out = quick_run
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


# Runs ``hv bench`` (the tiny profile) in a fresh interpreter where ``import matplotlib``
# fails, as on a machine without it: the real code path, not a flag set by the test.
NO_MATPLOTLIB = """
import sys
class NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib' (hidden by the test)")
        return None
sys.meta_path.insert(0, NoMatplotlib())
from hv.cli import main
sys.exit(main(["bench", "--out", sys.argv[1]]))
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_hv_bench_without_matplotlib_writes_the_report_and_json_and_says_plots_were_skipped(tmp_path):
    if not fastpath.c_available():
        pytest.skip("the C dispatch was not built: the C half of the matrix cannot run")
    env = dict(os.environ, HV_BENCH_TINY="1")
    proc = subprocess.run([sys.executable, "-c", NO_MATPLOTLIB, str(tmp_path)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stderr[-2000:]
    why = "matplotlib is not installed (pip install 'hv[bench]')"
    assert f"hv bench: plots skipped: {why}" in proc.stderr
    assert "(plots skipped)" in proc.stderr
    report = (tmp_path / "bench-report.md").read_text()
    assert f"Plots skipped: {why}." in report and "## Plots" not in report
    assert "## Process containers (issue 9)" in report and "## Utility VMs (issue 12)" in report
    doc = json.loads((tmp_path / "bench-report.json").read_text())
    assert doc["plots"] == [] and doc["plots_skipped"] == why
    assert isinstance(doc["summary"]["uvm_start_from_template_ms"], float)
    assert list(tmp_path.glob("*.png")) == []
