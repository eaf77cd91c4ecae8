"""Machine snapshots (hv/debug/snapshot.py): exact continuation, checks on restore, RAM shared
copy-on-write, and the user's ways in (``hv run --restore``, the monitor's savevm/loadvm).

The acceptance test runs each built-in guest under the virtual clock in processes of their
own: twice from power-on (the runs must be identical), once saving snapshots at several
turns of the host loop on the way (the run must still be identical: saving perturbs
nothing), then restores every snapshot into a fresh machine in another fresh process and
runs it to the end. Each restored run must print exactly what the full run printed after
that point, make exactly the exits it made after that point, and end the same way. (A guest
that needs fewer than 8 turns, such as a kernel that runs in one slice, gets a do-nothing
host timer in all of these runs, so it has places to be saved at.)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from unicorn import x86_const as X

from hv import guests
from hv.debug import snapshot
from hv.debug.snapshot import SnapshotError
from hv.machine import DriveSpec, Machine, MachineConfig
from tests import hvcmd

CHILD = Path(__file__).resolve().parent / "snapshot_child.py"
GUESTS = guests.names() + guests.kernel_names()


def children(specs: list[dict], tmp_path: Path) -> list:
    """Run tests/snapshot_child.py once per spec, each in a new process, side by side."""
    procs = []
    for spec in specs:
        path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.json"
        path.write_text(json.dumps(spec))
        # A script, run from outside the checkout: it imports the hv under test.
        procs.append(subprocess.Popen([sys.executable, str(CHILD), str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=hvcmd.OUTSIDE))
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout))
    return out


def child(spec: dict, tmp_path: Path):
    return children([spec], tmp_path)[0]


MIN_TURNS = 8


def minus(total: dict, before: dict) -> dict:
    keys = set(total) | set(before)
    return {k: total.get(k, 0) - before.get(k, 0) for k in keys
            if total.get(k, 0) != before.get(k, 0)}


def check_continuation(guest: str, dispatch: str, tmp_path: Path,
                       bios: str = "synthetic") -> None:
    base = {"guest": guest, "workdir": str(tmp_path), "dispatch": dispatch, "bios": bios}
    guests.scratch_disk(tmp_path / "scratch.img")     # before the runs side by side use it
    a, b = children([base, base], tmp_path)
    if a["turns"] < MIN_TURNS:
        # A short guest (a kernel that runs in one slice): a do-nothing host timer in every
        # run, this check's reference runs included, gives it turns to save at.
        base["tick"] = max(a["now"] // (2 * MIN_TURNS), 1)
        a, b = children([base, base], tmp_path)
        assert a["turns"] >= MIN_TURNS
    end = ("code", "reason", "serial", "exits")
    assert [a[k] for k in end] == [b[k] for k in end], "two runs from power-on differ"
    assert a["turns"] == b["turns"]
    n = a["turns"]
    # Power-on, and points spread over the run (the last turn is the one that ends it).
    at = sorted({1} | {max(1, n * i // 5) for i in range(1, 5)})
    saving = child({**base, "save_at": at}, tmp_path)
    assert [saving[k] for k in end] == [a[k] for k in end], "saving changed the run"
    assert [p["turn"] for p in saving["points"]] == at
    restored = child({**base, "restore": [p["path"] for p in saving["points"]]}, tmp_path)
    for point, run in zip(saving["points"], restored):
        where = f"restored at turn {point['turn']} of {n}"
        assert run["serial"] == a["serial"][point["serial"]:], where
        assert run["exits"] == minus(a["exits"], point["exits"]), where
        assert (run["code"], run["reason"]) == (a["code"], a["reason"]), where


def test_every_guest_is_covered():
    assert set(GUESTS) >= {"hello", "timer", "keyecho", "bioscheck", "disktest", "nettest",
                           "netpeer", "disktest-virtio", "nettest-virtio", "balloontest",
                           "pmtest", "hellokernel"}


@pytest.mark.parametrize("dispatch", ["c", "python"])
def test_a_restored_timer_run_continues_exactly(dispatch, tmp_path):
    """The quick check: the PIT, the PICs and the BIOS tick count carried across."""
    check_continuation("timer", dispatch, tmp_path)


# Every guest under the C dispatcher (the default); under the Python one, the guests whose
# devices keep state in C under the other (PIT, PICs, UART, NE2000 and IDE windows, virtio);
# under the emulated BIOS, those that drive the floppy controller, DMA, IDE and keyboard.
PYTHON_TOO = ("keyecho", "bioscheck", "disktest", "nettest", "disktest-virtio",
              "nettest-virtio", "pmtest")
EMULATED_TOO = ("hello", "keyecho", "bioscheck", "disktest")


@pytest.mark.slow
@pytest.mark.parametrize("guest, dispatch, bios",
                         [(g, "c", "synthetic") for g in GUESTS] +
                         [(g, "python", "synthetic") for g in PYTHON_TOO] +
                         [(g, "c", "emulated") for g in EMULATED_TOO])
def test_every_guest_restored_in_a_fresh_process_continues_exactly(guest, dispatch, bios,
                                                                   tmp_path):
    check_continuation(guest, dispatch, tmp_path, bios)


# ---- in one process ------------------------------------------------------------------------

def timer_config(**kw) -> MachineConfig:
    return MachineConfig(clock="virtual", **{"fda": DriveSpec(str(guests.image_path("timer")),
                                                              snapshot=True), **kw})


def run_saving(config: MachineConfig, path: Path, turn: int, then=None) -> Machine:
    """Run ``config`` to its end, saving at host-loop turn ``turn`` (and calling ``then(m)``
    at the next turn)."""
    m = Machine(config)
    service, turns = m.service, [0]

    def hook() -> None:
        turns[0] += 1
        if turns[0] == turn:
            m.save(path)
        elif turns[0] == turn + 1 and then is not None:
            then(m)
        service()
    m.service = hook
    m.run()
    return m


def test_loadvm_in_a_running_machine_goes_back_to_the_saved_moment(tmp_path):
    full = Machine(timer_config())
    full.run()
    want = full.serial_text()
    full.close()
    # Save at turn 10, go on to turn 25, load the snapshot: the run repeats turns 10..25.
    path = tmp_path / "t.hvsnap"
    m = Machine(timer_config())
    service, turns, marks = m.service, [0], {}

    def hook() -> None:
        turns[0] += 1
        if turns[0] == 10:
            m.save(path)
            marks["save"] = len(m.serial_log)
        if turns[0] == 25:
            marks["load"] = len(m.serial_log)
            m.restore(path)
        service()
    m.service = hook
    m.run()
    got = m.serial_text()
    m.close()
    assert marks["load"] > marks["save"]
    assert got == want[:marks["load"]] + want[marks["save"]:]


def test_ram_is_saved_with_zero_pages_as_holes_and_mapped_copy_on_write(tmp_path):
    path = tmp_path / "t.hvsnap"
    run_saving(timer_config(), path, 20).close()
    st = os.stat(path)
    assert st.st_size > 16 << 20 and st.st_blocks * 512 < 2 << 20   # 16 MiB, mostly holes
    meta, ram_off = snapshot.read(path)
    a, b = Machine(timer_config(), restore=str(path)), Machine(timer_config(), restore=str(path))
    try:
        before = path.read_bytes()
        a.mem.write(0x80000, b"only in a")
        assert b.mem.read(0x80000, 9) != b"only in a"
        assert path.read_bytes() == before              # MAP_PRIVATE: the file never changes
        assert a.mem.read(0x400, 16) == before[ram_off + 0x400:ram_off + 0x410]
    finally:
        a.close()
        b.close()


def _rss_kib(name: str | None = None) -> int:
    """The process's resident set (KiB), or only that of the mappings of file ``name``."""
    if name is None:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    total, mine = 0, False
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            mine = line.rstrip().endswith(name)
        elif mine and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_a_hundred_clones_share_the_snapshots_ram(tmp_path):
    """Each clone's guest RAM costs at most 1 MiB of RSS until it writes; a clone costs no
    more than 1 MiB above a machine built from scratch (neither has an engine before it
    runs). The figures themselves: bench/test_snapshot.py, test_hundred_clones_rss."""
    path = tmp_path / "t.hvsnap"
    run_saving(timer_config(), path, 20).close()
    n = 100
    clones = [Machine(timer_config(), restore=str(path))]
    fresh = [Machine(timer_config())]
    try:
        ram0, rss0 = _rss_kib(str(path)), _rss_kib()
        clones += [Machine(timer_config(), restore=str(path)) for _ in range(n)]
        ram_each = (_rss_kib(str(path)) - ram0) / n
        clone_each = (_rss_kib() - rss0) / n
        rss0 = _rss_kib()
        fresh += [Machine(timer_config()) for _ in range(n // 5)]
        fresh_each = (_rss_kib() - rss0) / (n // 5)
        assert ram_each <= 1024, f"{ram_each:.0f} KiB of guest RAM per clone"
        assert clone_each <= fresh_each + 1024, (clone_each, fresh_each)
    finally:
        for m in clones + fresh:
            m.close()


def test_a_restored_clone_holds_no_engine_until_it_runs(tmp_path):
    """A restored machine keeps its CPU state as data (an engine is a few MiB of host memory
    once initialised): the engine is made at the first run, or when something reads it
    first, and either way the machine goes on exactly as the saved one would."""
    path = tmp_path / "t.hvsnap"
    run_saving(timer_config(), path, 12).close()
    meta, ram_off = snapshot.read(path)
    lazy, eager, peeked = (Machine(timer_config(), restore=str(path)) for _ in range(3))
    try:
        assert not lazy.vcpu.started and "uc" not in vars(lazy.vcpu)
        # Saving a clone that never ran makes no engine and saves the same machine.
        again = tmp_path / "again.hvsnap"
        lazy.save(again)
        assert not lazy.vcpu.started
        assert snapshot.read(again)[0]["cpu"] == meta["cpu"]
        # The monitor or the gdb stub reading registers first gets the saved ones.
        saved_eip = int.from_bytes(meta["cpu"]["blob"][128:132], "little")
        assert peeked.vcpu.uc.reg_read(X.UC_X86_REG_EIP) == saved_eip
        assert peeked.vcpu.started
        eager.vcpu.start_engine()
        runs = []
        for m in (lazy, eager, peeked):
            result = m.run()
            runs.append((result.exit_code, result.reason, m.serial_text(), m.stats.counts))
            assert m.vcpu.started
        assert runs[0] == runs[1] == runs[2]
        assert "timer done" in runs[0][2]
    finally:
        for m in (lazy, eager, peeked):
            m.close()


@pytest.mark.parametrize("dispatch", ["c", "python"])
def test_a_machine_that_gives_its_engine_back_goes_on_exactly(tmp_path, dispatch):
    """release_engine between runs turns the CPU state back into data and drops the engine;
    the next run makes a new one. Released at several points, a run still prints and exits
    exactly as one that kept its engine."""
    path = tmp_path / "t.hvsnap"
    run_saving(timer_config(), path, 4).close()
    straight = Machine(timer_config(dispatch=dispatch), restore=str(path))
    cycled = Machine(timer_config(dispatch=dispatch), restore=str(path))
    try:
        want = straight.run()
        for _ in range(4):
            service, left = cycled.service, [6]

            def hook(service=service, left=left) -> None:
                left[0] -= 1
                if left[0] < 0:
                    cycled.stop_requested = True        # leave the loop between slices
                service()
            cycled.service = hook
            cycled.run()
            cycled.service = service
            assert cycled.vcpu.started and cycled.result is None    # still running
            cycled.release_engine()
            assert not cycled.vcpu.started and "cpu" not in vars(cycled.vcpu)
        got = cycled.run()
        assert (got.exit_code, got.reason) == (want.exit_code, want.reason)
        assert cycled.serial_text() == straight.serial_text()
        assert cycled.stats.counts == straight.stats.counts
    finally:
        straight.close()
        cycled.close()


def test_a_clone_that_ran_is_freed_when_closed(tmp_path):
    """Nothing keeps a closed machine (and its engine, a few MiB) alive: a process that
    starts and ends clones, as utility VMs do, does not grow with each."""
    import gc
    import weakref
    path = tmp_path / "t.hvsnap"
    run_saving(timer_config(), path, 4).close()
    m = Machine(timer_config(), restore=str(path))
    m.run()
    assert m.vcpu.started
    vcpu, engine = weakref.ref(m.vcpu), weakref.ref(m.vcpu.uc)
    m.close()
    del m
    gc.collect()
    assert vcpu() is None and engine() is None


def test_a_restored_machine_keeps_the_rom_it_was_saved_with(tmp_path):
    """The firmware writes tables into its ROM at power-on (fonts, the diskette parameters);
    a restore keeps them instead of placing the pristine image again (which also copied
    64 KiB of the shared mapping into every clone)."""
    path = tmp_path / "t.hvsnap"
    run_saving(timer_config(), path, 12).close()
    meta, ram_off = snapshot.read(path)
    saved_rom = path.read_bytes()[ram_off + 0xC0000:ram_off + 0x100000]
    m = Machine(timer_config(), restore=str(path))
    try:
        assert m.mem.read(0xC0000, 0x40000) == saved_rom
        m.vcpu.start_engine()                       # the engine's own copy of the ROM too
        assert bytes(m.vcpu.uc.mem_read(0xF0000, 0x10000)) == saved_rom[0x30000:]
    finally:
        m.close()


# ---- refusals ------------------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "t.hvsnap"
    run_saving(timer_config(), path, 12).close()
    return path


def test_a_snapshot_of_another_machine_is_refused(saved):
    with pytest.raises(SnapshotError, match=r"another machine configuration \(mem_size differ"):
        Machine(timer_config(mem_size=32 << 20), restore=str(saved))
    with pytest.raises(SnapshotError, match=r"another machine configuration \(bios differ"):
        Machine(timer_config(bios="emulated"), restore=str(saved))


def test_a_disk_that_changed_since_the_save_is_refused(tmp_path):
    disk = tmp_path / "scratch.img"
    guests.scratch_disk(disk)
    cfg = lambda: timer_config(hda=DriveSpec(str(disk)))       # noqa: E731
    path = tmp_path / "d.hvsnap"
    run_saving(cfg(), path, 5).close()
    Machine(cfg(), restore=str(path)).close()                   # unchanged: accepted
    with open(disk, "r+b") as f:
        f.write(b"changed")
    with pytest.raises(SnapshotError, match=f"disk {disk} changed since the snapshot"):
        Machine(cfg(), restore=str(path))
    disk.unlink()
    with pytest.raises(SnapshotError, match="No such file"):
        Machine(cfg(), restore=str(path))


def test_a_throw_away_overlay_travels_in_the_snapshot(tmp_path):
    disk = tmp_path / "scratch.img"
    guests.scratch_disk(disk)
    cfg = lambda: timer_config(hda=DriveSpec(str(disk), snapshot=True))   # noqa: E731
    path = tmp_path / "o.hvsnap"

    def write(m):
        m.slots["hda"].write(100, b"\xAB" * 1024)
    m = run_saving(cfg(), path, 5)
    m.close()
    m = Machine(cfg())
    write(m)
    m.save(path)
    m.slots["hda"].write(300, b"\xCD" * 512)       # after the save: not in the snapshot
    m.restore(path)
    assert m.slots["hda"].read(100, 2) == b"\xAB" * 1024
    assert m.slots["hda"].read(300, 1) == disk.read_bytes()[300 * 512:301 * 512]
    m.close()
    r = Machine(cfg(), restore=str(path))
    assert r.slots["hda"].read(100, 2) == b"\xAB" * 1024
    r.close()


def header_with(path: Path, **fields) -> bytes:
    data = bytearray(path.read_bytes())
    names = ("magic", "version", "reserved", "json_off", "json_len", "ram_off", "ram_len")
    values = dict(zip(names, snapshot.HEADER.unpack_from(data)))
    values.update(fields)
    snapshot.HEADER.pack_into(data, 0, *(values[n] for n in names))
    return bytes(data)


@pytest.mark.parametrize("damage, message", [
    (lambda p: b"not a snapshot at all", "not an hv snapshot"),
    (lambda p: header_with(p, version=2), "format version 2; this hv reads version 1"),
    (lambda p: p.read_bytes()[:100_000], "truncated"),
    (lambda p: header_with(p, json_len=1 << 40), "header is damaged"),
    (lambda p: header_with(p, ram_off=4097), "truncated"),
    (lambda p: p.read_bytes()[:80] + b"\xff" * 20 + p.read_bytes()[100:], "description is damaged"),
])
def test_a_damaged_file_is_one_clear_error(saved, tmp_path, damage, message):
    bad = tmp_path / "bad.hvsnap"
    bad.write_bytes(damage(saved))
    with pytest.raises(SnapshotError, match=re.escape(message)):
        Machine(timer_config(), restore=str(bad))


def rewrite(path: Path, out: Path, edit) -> None:
    """``path`` with its description edited by ``edit(meta)`` (RAM kept in place)."""
    meta, ram_off = snapshot.read(path)
    ram_len = meta["_ram"][1]
    for k in ("_ram", "_path"):
        meta.pop(k)
    edit(meta)
    body = json.dumps(snapshot._encode(meta)).encode()
    assert snapshot.HEADER_SIZE + len(body) <= ram_off
    data = bytearray(path.read_bytes())
    data[snapshot.HEADER_SIZE:ram_off] = body.ljust(ram_off - snapshot.HEADER_SIZE, b" ")
    snapshot.HEADER.pack_into(data, 0, snapshot.MAGIC, snapshot.VERSION, 0,
                              snapshot.HEADER_SIZE, len(body), ram_off, ram_len)
    out.write_bytes(data)


def _set(path: list, value):
    def edit(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


HOSTILE = [(["cpu", "blob"], b"\0" * 10), (["cpu", "halted"], 3), (["cpu", "tsc"], -1),
           (["cpu", "tsc"], 1 << 64), (["clock", "now"], (1 << 63) - 1),
           (["clock", "blocks"], "1"),
           (["cpu", "apic_base"], "x"), (["clock", "now"], 1 << 70), (["clock"], []),
           (["bios_state"], {"a": "b"}), (["input"], [1, 2]), (["input"], "keys"),
           (["host_timers", "housekeeping"], -5), (["devices", "pic"], None),
           (["devices", "pit"], {"v": 1}), (["devices"], {}), (["hardware", "mem_size"], 0),
           (["overlays"], {"fda": {"runs": [[0, 1 << 30]], "at": 0}}),
           (["overlays"], {"fda": {"runs": [[5, 1], [0, 1]], "at": 0}}),
           (["overlays"], {"hda": {"runs": [], "at": 0}}), (["disks", "fda"], {"size": "1"}),
           (["hardware", "nic_mac"], "zz"), (["hardware", "fda"], {"path": 1}),
           (["hardware", "kernel"], 5), (["hardware", "nic_irq"], "9"),
           (["hardware", "board"], None)]


@pytest.mark.parametrize("where, value", HOSTILE, ids=[".".join(w) for w, _ in HOSTILE])
def test_a_hostile_description_is_one_clear_error(saved, tmp_path, where, value):
    bad = tmp_path / "bad.hvsnap"
    rewrite(saved, bad, _set(where, value))
    with pytest.raises(SnapshotError) as e:
        Machine(timer_config(), restore=str(bad))
    assert "\n" not in str(e.value)


def test_a_rewritten_but_intact_description_still_restores(saved, tmp_path):
    """The hostile cases above fail for what they change, not for the rewriting."""
    good = tmp_path / "good.hvsnap"
    rewrite(saved, good, lambda meta: None)
    Machine(timer_config(), restore=str(good)).close()


@pytest.mark.parametrize("tsc", [0, (1 << 63) + 5, (1 << 64) - 1])
def test_any_64_bit_tsc_is_restored(saved, tmp_path, tsc):
    """A guest may write any value to the TSC (WRMSR 0x10): it is saved and restored as is."""
    path = tmp_path / "tsc.hvsnap"
    rewrite(saved, path, _set(["cpu", "tsc"], tsc))
    m = Machine(timer_config(), restore=str(path))
    try:
        assert m.vcpu.cpu.tsc() == tsc            # the clock is not running: no time passed
    finally:
        m.close()


# ---- the user's ways in --------------------------------------------------------------------

def test_hv_run_restore_continues_a_savevm_of_the_monitor(tmp_path):
    snap = tmp_path / "timer.hvsnap"
    plain = hvcmd.run(["run", "timer", "--clock", "virtual", "--no-live"],
                      capture_output=True, text=True, timeout=60)
    saved = hvcmd.run(["run", "timer", "--clock", "virtual", "--monitor", "stdio", "-S",
                       "--no-live", "--serial", str(tmp_path / "serial.txt")],
                      input=f"savevm {snap}\ncont\n", capture_output=True, text=True,
                      timeout=60)
    assert saved.returncode == 0, saved.stderr
    assert snap.exists()
    restored = hvcmd.run(["run", "--restore", str(snap), "--no-live"],
                         capture_output=True, text=True, timeout=60)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout == plain.stdout and "timer done" in restored.stdout


@pytest.mark.parametrize("args, message", [
    (["--restore", "{snap}", "--mem", "32M"], "--mem cannot be given with it"),
    (["timer", "--restore", "{snap}"], "IMAGE cannot be given with it"),
    (["--restore", "{missing}"], "No such file or directory"),
    (["--restore", "{junk}"], "not an hv snapshot"),
])
def test_hv_run_restore_errors_are_one_line_and_exit_2(saved, tmp_path, args, message):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\0" * 200)
    args = [a.format(snap=saved, missing=tmp_path / "nope", junk=junk) for a in args]
    out = hvcmd.run(["run", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_hv_run_restore_of_a_deleted_disk_says_which(tmp_path):
    disk = tmp_path / "scratch.img"
    guests.scratch_disk(disk)
    snap = tmp_path / "d.hvsnap"
    run_saving(timer_config(hda=DriveSpec(str(disk))), snap, 5).close()
    disk.unlink()
    out = hvcmd.run(["run", "--restore", str(snap)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and str(disk) in out.stderr and out.stderr.count("\n") == 1


def test_the_header_is_64_bytes_then_the_json_then_page_aligned_ram(saved):
    head = saved.read_bytes()[:64]
    magic, version, _, json_off, json_len, ram_off, ram_len = snapshot.HEADER.unpack_from(head)
    assert (magic, version, json_off) == (b"HVSNAP\0\0", 1, 64)
    assert ram_off % 4096 == 0 and ram_off >= 64 + json_len and ram_len == 16 << 20
    meta = json.loads(saved.read_bytes()[64:64 + json_len])
    assert {"hardware", "disks", "cpu", "clock", "devices", "overlays"} <= set(meta)


@pytest.mark.parametrize("saved_under, restored_under", [("c", "python"), ("python", "c")])
def test_a_snapshot_restores_under_the_other_dispatcher(tmp_path, saved_under, restored_under):
    full = Machine(timer_config(dispatch=saved_under))
    full.run()
    want = full.serial_text()
    full.close()
    path = tmp_path / "x.hvsnap"
    marks = {}
    m = Machine(timer_config(dispatch=saved_under))
    service, turns = m.service, [0]

    def hook() -> None:
        turns[0] += 1
        if turns[0] == 15:
            m.save(path)
            marks["at"] = len(m.serial_log)
        service()
    m.service = hook
    m.run()
    m.close()
    r = Machine(timer_config(dispatch=restored_under), restore=str(path))
    assert r.vcpu.fast.kind == restored_under
    result = r.run()
    r.close()
    assert result.exit_code == 0 and r.serial_text() == want[marks["at"]:]
