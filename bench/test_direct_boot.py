"""Direct kernel boot against a BIOS boot: time from reset to the first guest
instruction, and the exits it takes. The direct-boot kernel is a flat binary that
is just `hlt` (interrupts are off at entry, so the run ends there), the BIOS boot
sector `cli; hlt`, as in bench/test_boot.py. Both times include building the
machine, as a `hv run` does.
Run: python -m pytest bench/test_direct_boot.py --benchmark-only
"""
from __future__ import annotations

import pytest

from hv.bench.guests import FIRST_INSTRUCTION
from hv.machine import DriveSpec, Machine, MachineConfig

KERNEL_FIRST_INSTRUCTION = b"\xf4"     # hlt, entered at 0008:00100000


@pytest.mark.parametrize("boot", ["direct", "synthetic", "emulated"])
def test_reset_to_first_instruction(benchmark, tmp_path, boot):
    if boot == "direct":
        path = tmp_path / "kernel.bin"
        path.write_bytes(KERNEL_FIRST_INSTRUCTION)
        config = lambda: MachineConfig(kernel=str(path), kernel_format="flat", timeout=30)
        where = "0008:100001"
    else:
        path = tmp_path / "boot.img"
        path.write_bytes(FIRST_INSTRUCTION)
        config = lambda: MachineConfig(fda=DriveSpec(str(path)), bios=boot, timeout=30)
        where = "0000:7C02"
    last = {}

    def run():
        m = Machine(config())
        r = m.run()
        m.close()
        assert r.exit_code == 0 and where in r.reason, r.reason
        last["m"] = m

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    stats = last["m"].stats
    benchmark.extra_info.update({
        "exits": stats.total(),
        "pio_exits": stats.total("pio"),
        "hypercalls": stats.total("hypercall"),
        "softints": stats.total("softint"),
    })
