"""Run the hostile guest on a fully equipped machine and report, as one JSON line, how it
ended and the peak memory of this process (run in a subprocess by test_hostile_guest.py).

    python child.py KERNEL DISPATCH WORKDIR
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from hv.machine import DriveSpec, Machine, MachineConfig

GUEST_RAM = 16 << 20


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(kernel: str, dispatch: str, workdir: str) -> None:
    d = Path(workdir)
    disks = {}
    for name, size in (("fda", 1_474_560), ("hda", 4 << 20), ("hdb", 1 << 20), ("vda", 1 << 20)):
        path = d / f"{name}.img"
        path.write_bytes(bytes(size))
        disks[name] = DriveSpec(str(path), snapshot=True)
    flat = {"kernel_format": "flat"} if "kernel_format" in MachineConfig.__dataclass_fields__ else {}
    config = MachineConfig(kernel=kernel, **flat, mem_size=GUEST_RAM, dispatch=dispatch, timeout=240,
                           net="user", virtio_net="user", virtio_console=lambda b: None,
                           serial=lambda b: None, debugcon=lambda b: None,
                           balloon_target=4 << 20, **disks)
    t0 = time.monotonic()
    m = Machine(config)
    reasons: dict[str, int] = {}            # every NEEDS_RESET reason, counted by its kind
    for t in m.virtio.values():
        def fail(reason, t=t, fail=t.fail):
            words = (w for w in reason.split() if not any(c.isdigit() for c in w))
            kind = f"{t.device.name}: " + " ".join(words)
            reasons[kind] = reasons.get(kind, 0) + 1
            fail(reason)
        t.fail = fail
    try:
        result = m.run()
        report = {
            "exit_code": result.exit_code, "reason": result.reason,
            "seconds": round(time.monotonic() - t0, 2),
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "vm_hwm_kib": vm_hwm_kib(),
            "needs_reset": reasons,
            "exits": m.stats.total() if hasattr(m.stats, "total") else None,
        }
    finally:
        m.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
