"""Boot time from reset to the first boot-sector instruction, and the exits it takes,
for each BIOS style. The boot sector is `cli; hlt`, so the run ends right there.
Run: python -m pytest bench/test_boot.py --benchmark-only
"""
from __future__ import annotations

import pytest

from hv.bench.guests import FIRST_INSTRUCTION
from hv.machine import BIOS_STYLES, DriveSpec, Machine, MachineConfig


@pytest.mark.parametrize("bios", BIOS_STYLES)
def test_boot_to_first_instruction(benchmark, tmp_path, bios):
    img = tmp_path / "boot.img"
    img.write_bytes(FIRST_INSTRUCTION)
    last = {}

    def boot():
        m = Machine(MachineConfig(fda=DriveSpec(str(img)), bios=bios, timeout=30))
        r = m.run()
        m.close()
        assert r.exit_code == 0 and "0000:7C02" in r.reason, r.reason
        last["m"] = m

    benchmark.pedantic(boot, rounds=5, iterations=1, warmup_rounds=1)
    stats = last["m"].stats
    benchmark.extra_info.update({
        "exits": stats.total(),
        "pio_exits": stats.total("pio"),
        "hypercalls": stats.total("hypercall"),
        "softints": stats.total("softint"),
    })
