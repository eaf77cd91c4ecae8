"""`hv bench --quick` runs the whole matrix and writes the report, the plots and the JSON
(about 15 s: the --quick profile itself, so the test runs what a person runs)."""
from __future__ import annotations

import json
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
]
PLOTS = ["bench-exit-cost.png", "bench-disk.png", "bench-net.png", "bench-boot.png",
         "bench-cpu.png", "bench-machines.png"]


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
    missing = [k for k in SUMMARY_KEYS if not isinstance(summary.get(k), (int, float))
               or isinstance(summary.get(k), bool)]
    assert not missing, {k: summary.get(k) for k in missing}


def test_hv_bench_quick_report_lists_every_target_with_pass_or_miss(quick_run):
    _code, out = quick_run
    doc = json.loads((out / "bench-report.json").read_text())
    report = (out / "bench-report.md").read_text()
    assert doc["targets"] and all(t["status"] in ("PASS", "MISS") for t in doc["targets"])
    for t in doc["targets"]:
        assert f"| {t['target']} |" in report and t["status"] in report
    assert "hv bench --quick" in report and "unicorn" in report


def test_hv_bench_quick_writes_every_plot_as_png(quick_run):
    pytest.importorskip("matplotlib")
    _code, out = quick_run
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_report_is_written_without_matplotlib_and_says_plots_were_skipped(tmp_path, monkeypatch):
    from hv.bench import report
    doc = {"command": "hv bench", "profile": "quick", "started": "now", "seconds": 1.0,
           "machine": report.machine_info(), "summary": {"boot_ms_direct": 0.1}, "targets": [],
           "notes": [], "results": {}, "plots": []}
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib -> ImportError
    with pytest.raises(ImportError):
        report.plots(doc, tmp_path)
    doc["plots_skipped"] = "matplotlib is not installed"
    assert "Plots skipped: matplotlib is not installed" in report.markdown(doc)
