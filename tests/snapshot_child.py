"""One run of a built-in guest for tests/test_snapshot.py, in a process of its own.

``python tests/snapshot_child.py SPEC.json`` reads what to do and prints the result as
JSON: a run from power-on (``"save_at"``: the host-loop turns at which to save a snapshot
on the way), or restores of snapshots, each into a fresh machine run to its end.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from hv import guests
from hv.devices.keymap import parse_input
from hv.machine import DriveSpec, Machine, MachineConfig

KEYS = "Hi{up}\r{esc}"


def config(name: str, workdir: str, dispatch: str, restoring: bool = False,
           bios: str = "synthetic") -> MachineConfig:
    """What ``hv run NAME`` attaches, with every writable disk a throw-away overlay (so a
    run that goes on after a save leaves the files as the snapshot found them)."""
    kw: dict = {"clock": "virtual", "dispatch": dispatch, "timeout": 120, "bios": bios}
    if name in guests.kernel_names():
        kw["kernel"] = str(guests.kernel_path(name))
    else:
        slot = "hda" if name == "pmtest" else "fda"
        kw[slot] = DriveSpec(str(guests.image_path(name)), snapshot=True)
    scratch = {"disktest": "hda", "disktest-virtio": "vda"}.get(name)
    if scratch:
        path = Path(workdir) / "scratch.img"
        if not path.exists():
            guests.scratch_disk(path)
        kw[scratch] = DriveSpec(str(path), snapshot=True)
    kw.update({"nettest": {"net": "user"}, "nettest-virtio": {"virtio_net": "user"},
               "balloontest": {"balloon_target": 8 << 20},
               "netpeer": {"net": "switch:alone", "nic_mac": bytes.fromhex("52550a000202"),
                           "until": "netpeer: serving"}}.get(name, {}))
    if name == "keyecho" and not restoring:      # a restore brings the keys still to type
        kw["input_keys"] = [ev for k in parse_input(KEYS) for ev in k.events]
    return MachineConfig(**kw)


def outcome(m: Machine, result) -> dict:
    return {"code": result.exit_code, "reason": result.reason, "serial": m.serial_text(),
            "exits": counts(m), "now": m.clock.now()}


def tick(m: Machine, period: int) -> None:
    """A host timer at every multiple of ``period`` virtual ns that does nothing: more turns
    of the host loop (more places to save) in a guest that needs few. At absolute times,
    so a restored machine re-arms it where the saved one had it."""
    if period:
        def fire(now: int) -> None:
            m.clock.at((now // period + 1) * period, fire)
        m.clock.at((m.clock.now() // period + 1) * period, fire)


def counts(m: Machine) -> dict:
    return {f"{kind}|{who}": n for (kind, who), n in m.stats.counts.items() if n}


def run(spec: dict) -> dict:
    m = Machine(config(spec["guest"], spec["workdir"], spec["dispatch"],
                       bios=spec.get("bios", "synthetic")))
    tick(m, spec.get("tick", 0))
    save_at, points, turns = set(spec.get("save_at", ())), [], 0
    service = m.service

    def service_and_save() -> None:
        # Between slices, where the monitor's savevm runs too.
        nonlocal turns
        turns += 1
        if turns in save_at:
            path = f"{spec['workdir']}/{spec['guest']}-{turns}.hvsnap"
            m.save(path)
            points.append({"path": path, "turn": turns, "serial": len(m.serial_log),
                           "exits": counts(m)})
        service()
    m.service = service_and_save
    try:
        out = outcome(m, m.run())
    finally:
        m.close()
    return {**out, "turns": turns, "points": points}


def restore(spec: dict) -> list[dict]:
    out = []
    for path in spec["restore"]:
        m = Machine(config(spec["guest"], spec["workdir"], spec["dispatch"], restoring=True,
                           bios=spec.get("bios", "synthetic")), restore=path)
        tick(m, spec.get("tick", 0))
        try:
            out.append(outcome(m, m.run()))
        finally:
            m.close()
    return out


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(restore(spec) if "restore" in spec else run(spec)))
