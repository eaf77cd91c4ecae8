"""``hv flavors``: the report's shape, the same output in every flavor, and isolation checks
that measure (a flavor broken on purpose shows in the matrix)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from hv.bench import flavors as F
from tests import hvcmd

REQUIRED = ("start_ms", "workload_ms", "rss_mib_per_instance", "exits", "isolation")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("flavors")
    r = hvcmd.run(["flavors", "service", "--flavors", "process,utility_vm", "--instances", "1,2",
                   "--out", str(out)], capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr
    return out, json.loads((out / "flavors.json").read_text()), r


def test_report_files_and_json_shape(report):
    out, doc, r = report
    assert (out / "flavors.md").read_text().startswith("# hv flavors")
    for name in ("process", "utility_vm"):
        entry = doc["flavors"][name]
        for key in REQUIRED:
            assert key in entry, (name, key)
        assert entry["status"] == 0
        assert entry["start_ms"] > 0 and entry["workload_ms"] > 0
        assert set(entry["density"]) == {"1", "2"}
        assert set(entry["isolation"]) == set(F.CHECKS)
    # a VM's exits are counted by kind; a process container's calls all go to the host kernel
    assert doc["flavors"]["utility_vm"]["exits"].get("mmio virtio-9p", 0) > 0
    assert doc["flavors"]["process"]["calls_in_guest"] == 0
    assert doc["flavors"]["utility_vm"]["calls_in_guest"] > 0


def test_same_output_in_each_flavor(report):
    _, doc, _ = report
    assert doc["same_output"] is True
    assert "registry: Mode=\"flavors\"" in doc["output"]
    assert "data: 8 files in srv/data" in doc["output"]


def test_isolation_outcomes_are_measured(report):
    _, doc, _ = report
    proc, vm = doc["flavors"]["process"]["isolation"], doc["flavors"]["utility_vm"]["isolation"]
    # The process container's known weak spots, seen by the checks ...
    assert proc["global_objects"]["yes"] is True
    assert "flavor-secret" in proc["global_objects"]["evidence"]
    assert proc["kernel_fault"]["yes"] is True
    # ... which a utility VM closes: its kernel answers the named-object calls ENOSYS and a
    # triple fault ends only its own machine.
    assert vm["global_objects"]["yes"] is False
    assert vm["kernel_fault"]["yes"] is False
    assert "triple fault" in vm["kernel_fault"]["evidence"]
    for iso in (proc, vm):
        assert iso["files"]["yes"] is False and iso["memory"]["yes"] is False
        assert iso["base_image"]["yes"] is True


def test_a_shared_volume_breaks_file_isolation_and_the_check_sees_it():
    with tempfile.TemporaryDirectory() as td:
        bench = F.Bench(Path(td) / "home")
        f = F.ProcessFlavor(bench)
        try:
            private = F.check_files(f)
            volume = Path(td) / "volume"
            volume.mkdir()
            shared = F.check_files(f, shared_volume=volume)
        finally:
            f.close()
    assert private["yes"] is False
    assert shared["yes"] is True, shared
    assert F.SECRET in shared["evidence"]


def test_the_matrix_shows_a_broken_flavor():
    doc = {"argv": ["x"], "budget_mib": 1, "machine": {"cpus": 2, "python": "3", "platform": "p"},
           "flavors": {"process": {"start_ms": 1.0, "isolation": {
               "files": {"yes": True, "evidence": "B: get: secret"}}}}}
    md = F.markdown(doc, "hv flavors service")
    assert "yes (exposed)" in md


@pytest.mark.parametrize("args, words", [
    (["service", "--instances", "ten"], "--instances"),
    (["service", "--flavors", "process,zone"], "unknown zone"),
    (["nope"], "invalid choice"),
    (["service", "--budget", "lots"], "--budget"),
])
def test_bad_arguments_give_one_line(args, words):
    r = hvcmd.run(["flavors", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert words in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
