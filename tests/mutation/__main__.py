"""Mutation testing of the device models against their own unit tests, with mutmut 2.5.1.

    pip install mutmut==2.5.1
    python -m tests.mutation                      # every module below (hours: 300-700 mutants
                                                  # a module, a few seconds each)
    python -m tests.mutation pic8259 dma8237      # some of them
    python -m tests.mutation --report docs/mutation-results.md

Each module is mutated in its own copy of the checkout under ``--workdir`` (default
``/tmp/hv-mutation``), never in place: other people run tests against the checkout while
this runs. In a copy the ``hv`` import namespace is rebuilt with symlinks (``hv/devices ->
devices`` and so on, as setup.py maps it) and put first on PYTHONPATH, so the tests import
the mutated copy, not the editable install. The workdir keeps mutmut's cache: a second run
re-tests only the survivors (and every mutant again when the module's source changed).

A mutant counts as killed when its unit tests fail (pytest exits non-zero for any reason:
a failed assertion, an error, a per-test timeout). Survivors listed in ``equivalents.py``
are equivalent mutants (no test can tell them apart); the score is killed / (mutants -
equivalent).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.mutation.equivalents import EQUIVALENT

CHECKOUT = Path(__file__).resolve().parents[2]
COPY = ["hv", "devices", "guests", "bench", "tests", "pyproject.toml", "setup.py"]
NAMESPACE = {"devices": "devices", "guests": "guests", "bench": "bench"}   # hv/<name> -> <folder>
# f-strings are the reasons in error messages: mutating them tests wording, not behaviour.
SKIPPED_TYPES = ["fstring"]
MAX_RESTARTS = 40
STALL_SECONDS = 300         # longer than any one mutant's test run may take (mutmut's own limit)
PER_TEST_TIMEOUT = 20       # seconds; a mutant that makes a test loop is a failure, not a hang


@dataclass
class Module:
    source: str                     # path in the checkout
    tests: list[str]                # pytest arguments: the module's fast unit tests


MODULES = {
    "disk_ide": Module("devices/disk_ide.py", ["tests/devices/test_disk_ide.py"]),
    "pic8259": Module("devices/pic8259.py", ["tests/devices/test_pic8259.py"]),
    "pit8254": Module("devices/pit8254.py", ["tests/devices/test_pit8254.py"]),
    "nic_ne2000": Module("devices/nic_ne2000.py", [
        "tests/devices/test_nic_ne2000.py",     # all but the QEMU cross-check (a boot per run)
        "--deselect", "tests/devices/test_nic_ne2000.py::test_register_and_remote_dma_reads_match_qemu_ne2k_isa"]),
    "dma8237": Module("devices/dma8237.py", ["tests/devices/test_dma8237.py"]),
    "virtio_queue": Module("hv/virtio/queue.py", ["tests/test_virtio_core.py"]),
    "bios_disk": Module("devices/bios_synthetic/disk.py",
                        ["tests/test_bios_synthetic_disk.py", "tests/test_bios_synthetic.py", "-k",
                         "not bioscheck and (chs or status or reset_succeeds or unknown_drive or "
                         "parameters or disk_type or edd or extended or bios_synthetic_disk)"]),
}

STATUS_WORDS = {"ok_killed": "killed", "bad_timeout": "timeout", "ok_suspicious": "suspicious",
                "bad_survived": "survived", "skipped": "skipped", "untested": "untested"}


@dataclass
class Survivor:
    mutant_id: int
    line_number: int
    before: str
    after: str
    reason: str | None = None       # why it is equivalent, if it is
    status: str = "survived"


@dataclass
class Result:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[Survivor] = field(default_factory=list)
    seconds: float = 0.0
    clean: bool = True              # the unmutated code passes its tests in the workdir

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def equivalent(self) -> int:
        return sum(1 for s in self.survivors if s.reason and s.status == "survived")

    @property
    def detected(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("killed", "timeout", "suspicious"))

    @property
    def score(self) -> float:
        relevant = self.total - self.equivalent
        return 100.0 * self.detected / relevant if relevant else 100.0


def mutmut_command() -> list[str]:
    exe = shutil.which("mutmut")
    if exe is None:
        sys.exit("mutation: mutmut is not installed (pip install mutmut==2.5.1)")
    return [exe]


def prepare(workdir: Path) -> dict[str, str]:
    """Refresh the copy of the checkout in ``workdir`` (sources and tests; mutmut's cache
    stays) and return the environment that makes ``hv`` import from it."""
    workdir.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "build", "*.egg-info")
    for name in COPY:
        src, dst = CHECKOUT / name, workdir / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=skip, dirs_exist_ok=True, symlinks=True)
        else:
            shutil.copy2(src, dst)
    for bak in workdir.rglob("*.py.bak"):     # left behind by an interrupted mutmut
        bak.unlink()
    for inside, folder in NAMESPACE.items():
        link = workdir / "hv" / inside
        if not link.exists():
            link.symlink_to(Path("..") / folder)
    site = workdir / "site"
    site.mkdir(exist_ok=True)
    if not (site / "hv").exists():
        (site / "hv").symlink_to(Path("..") / "hv")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(workdir)])
    env.pop("HV_TEST_INSTALLED", None)
    where = subprocess.run([sys.executable, "-c", "import hv.devices.pic8259 as m; print(m.__file__)"],
                           env=env, cwd=workdir, capture_output=True, text=True, check=True).stdout
    if not where.strip().startswith(str(workdir)):
        sys.exit(f"mutation: the copy does not shadow the installed hv ({where.strip()})")
    return env


def runner(workdir: Path, tests: list[str]) -> str:
    """The test command mutmut runs per mutant: any pytest failure is a kill (mutmut itself
    counts only exit status 1 as one; a collection error would look like a survivor)."""
    script = workdir / "run-unit-tests.sh"
    # Only the plugins the tests use: autoloading every installed plugin doubles the start-up.
    script.write_text(
        "#!/bin/sh\n"
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 "
        f"{sys.executable} -m pytest -x -q --no-header -p _hypothesis_pytestplugin -p pytest_timeout "
        "-p tests.mutation.fewer_examples -p no:cacheprovider "
        f"--timeout={PER_TEST_TIMEOUT} \"$@\" >/dev/null 2>&1 || exit 1\n")
    return "sh run-unit-tests.sh " + " ".join(shlex.quote(t) for t in tests)


def unmutated_tests_pass(workdir: Path, env: dict[str, str], tests: list[str]) -> bool:
    """Run the module's tests once on the restored copy, with the workdir's Hypothesis database.
    A failure here means the kills are not the mutants' doing: an example saved while a mutant
    ran (or a flaky test) fails the unmutated code too, and mutmut counts every later mutant as
    killed. mutmut checks this only before its run, when the database does not hold it yet."""
    return subprocess.run(["sh", "run-unit-tests.sh", *tests], env=env, cwd=workdir).returncode == 0


def read_cache(workdir: Path, source: str) -> tuple[dict[str, int], list[tuple[int, int, str]]]:
    db = sqlite3.connect(workdir / ".mutmut-cache")
    rows = db.execute(
        "SELECT m.id, m.status, l.line_number, l.line FROM mutant m JOIN line l ON m.line = l.id "
        "JOIN sourcefile f ON l.sourcefile = f.id WHERE f.filename = ?", (source,)).fetchall()
    db.close()
    counts: dict[str, int] = {}
    survivors = []
    for mid, status, line_number, line in rows:
        word = STATUS_WORDS.get(status, status)
        counts[word] = counts.get(word, 0) + 1
        if word in ("survived", "untested", "skipped"):
            survivors.append((mid, line_number + 1, word))
    return counts, survivors


def untested_ids(workdir: Path, source: str) -> list[int]:
    db = sqlite3.connect(workdir / ".mutmut-cache")
    rows = db.execute(
        "SELECT m.id FROM mutant m JOIN line l ON m.line = l.id JOIN sourcefile f ON "
        "l.sourcefile = f.id WHERE f.filename = ? AND m.status = 'untested'", (source,)).fetchall()
    db.close()
    return [r[0] for r in rows]


def mutant_diff(workdir: Path, env: dict[str, str], mutant_id: int) -> tuple[str, str]:
    out = subprocess.run(mutmut_command() + ["show", str(mutant_id)], env=env, cwd=workdir,
                         capture_output=True, text=True).stdout
    before = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    after = [ln[1:].strip() for ln in out.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " / ".join(before), " / ".join(after)


def run_mutmut(cmd: list[str], env: dict[str, str], workdir: Path, source: str) -> None:
    """Run mutmut until it ends, or until it has recorded nothing for STALL_SECONDS (its
    main process waits forever when its worker dies); then end its whole process group."""
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                            start_new_session=True)
    last, since = None, time.monotonic()
    while proc.poll() is None:
        time.sleep(10)
        if not (workdir / ".mutmut-cache").exists():
            continue
        try:
            counts, _ = read_cache(workdir, source)
        except sqlite3.Error:
            continue
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since > STALL_SECONDS:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()


def run_module(name: str, workdir_root: Path, only_report: bool) -> Result:
    mod = MODULES[name]
    workdir = workdir_root / name
    env = prepare(workdir)
    result = Result(name)
    t0 = time.monotonic()
    if not only_report:
        cmd = mutmut_command() + [
            "run", "--paths-to-mutate", mod.source, "--tests-dir", "tests",
            "--runner", runner(workdir, mod.tests), "--no-progress", "--simple-output",
            "--disable-mutation-types", ",".join(SKIPPED_TYPES)]
        print(f"mutation: {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        # mutmut 2.5.1 sometimes dies between two mutants (its worker-cycling races with its
        # cache), leaving the source mutated: restore the copy and go on from the cache.
        left = None
        for _attempt in range(MAX_RESTARTS):
            run_mutmut(cmd, env, workdir, mod.source)
            counts, _ = read_cache(workdir, mod.source)
            now_left = counts.get("untested", 0)
            if now_left == 0 or now_left == left:
                break
            left = now_left
            print(f"mutation: {name}: mutmut stopped with {now_left} mutants to go; resuming",
                  file=sys.stderr, flush=True)
            env = prepare(workdir)
        # What a crashing run never reaches (mutmut 2.5.1 stops at the same mutant each time,
        # apparently over its cache of repeated source lines): one mutant per run.
        for mutant_id in untested_ids(workdir, mod.source):
            env = prepare(workdir)
            one = cmd[:2] + [str(mutant_id)] + cmd[2:]
            try:
                subprocess.run(one, env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=STALL_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        env = prepare(workdir)
        result.clean = unmutated_tests_pass(workdir, env, mod.tests)
        if not result.clean:
            print(f"mutation: {name}: the unmutated code FAILS its tests in {workdir} (its Hypothesis "
                  "database replays an example that fails without any mutant): every kill since "
                  "that example was saved is worthless; fix the test or the code, delete "
                  f"{workdir}/.mutmut-cache and run again", file=sys.stderr, flush=True)
    result.seconds = time.monotonic() - t0
    counts, survivors = read_cache(workdir, mod.source)
    result.counts = counts
    known = EQUIVALENT.get(name, {})
    for mid, line_number, word in survivors:
        if word == "untested":
            continue                    # counted in the table, not listed one by one
        before, after = mutant_diff(workdir, env, mid)
        result.survivors.append(Survivor(mid, line_number, before, after, known.get((before, after)),
                                         word))
    return result


def markdown(results: list[Result]) -> str:
    out = ["| module | mutants | killed | timeout | survived | not yet run | equivalent | "
           "score (non-equivalent killed) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        out.append(f"| `{MODULES[r.name].source}` | {r.total} | {r.counts.get('killed', 0)} | "
                   f"{r.counts.get('timeout', 0) + r.counts.get('suspicious', 0)} | "
                   f"{r.counts.get('survived', 0)} | {r.counts.get('untested', 0)} | "
                   f"{r.equivalent} | {r.score:.1f} % |")
    for r in results:
        if not r.clean:
            out += ["", f"**`{MODULES[r.name].source}`: the unmutated code failed its tests after "
                        "the run: its kills are not trustworthy.**"]
    for r in results:
        if not r.survivors:
            continue
        out += ["", f"### `{MODULES[r.name].source}`: surviving mutants", ""]
        for s in sorted(r.survivors, key=lambda s: s.line_number):
            if s.reason:
                why = f"equivalent because {s.reason}"
            else:
                why = "NOT KILLED"
            out.append(f"- line {s.line_number}: `{s.before}` → `{s.after}`: {why}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", metavar="MODULE", help=f"some of: {', '.join(MODULES)}")
    ap.add_argument("--workdir", default="/tmp/hv-mutation", help="where the copies and caches live")
    ap.add_argument("--report", metavar="FILE", help="also write the results table and survivors here")
    ap.add_argument("--only-report", action="store_true", help="read the caches, run nothing")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        ap.error(f"unknown module {unknown[0]!r} (one of: {', '.join(MODULES)})")
    results = [run_module(name, Path(args.workdir), args.only_report) for name in args.modules or MODULES]
    text = markdown(results)
    print(text)
    if args.report:
        Path(args.report).write_text(text)
    for r in results:
        print(f"mutation: {r.name}: {r.score:.1f} % of {r.total - r.equivalent} non-equivalent "
              f"mutants killed ({r.seconds:.0f} s)", file=sys.stderr)
    return 0 if all(r.score >= 90.0 and r.clean for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
