"""Builds rom.bin from rom.S with GNU as/ld/objcopy (python -m hv.devices.bios_synthetic.build)."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROM_SIZE = 0x10000


def build(outdir: str | Path | None = None) -> list[Path]:
    out = Path(outdir) if outdir else HERE
    out.mkdir(parents=True, exist_ok=True)
    target = out / "rom.bin"
    with tempfile.TemporaryDirectory() as tmp:
        obj, elf = Path(tmp) / "rom.o", Path(tmp) / "rom.elf"
        subprocess.run(["as", "--32", "-o", obj, HERE / "rom.S"], check=True)
        subprocess.run(["ld", "-m", "elf_i386", "-Ttext", "0", "-o", elf, obj], check=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", elf, target], check=True)
    data = target.read_bytes()
    if len(data) != ROM_SIZE:
        raise SystemExit(f"rom.bin is {len(data)} bytes, expected {ROM_SIZE}")
    return [target]


if __name__ == "__main__":
    for p in build(sys.argv[1] if len(sys.argv) > 1 else None):
        print(p)
