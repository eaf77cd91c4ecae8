"""Assemble small guest programs with GNU as/ld (as the guests are built): used by
the benchmarks (which ship with the package) and the tests."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def assemble(source: str, org: int = 0x7C00, boot_sector: bool = True) -> bytes:
    """GNU as source (AT&T syntax, starts in .code16) -> flat binary at ``org``.

    With ``boot_sector`` the result is padded to 512 bytes and signed 0x55AA."""
    with tempfile.TemporaryDirectory() as tmp:
        src, obj, out = Path(tmp, "t.S"), Path(tmp, "t.o"), Path(tmp, "t.bin")
        src.write_text(".code16\n.globl _start\n_start:\n" + source + "\n")
        subprocess.run(["as", "--32", "-o", obj, src], check=True, capture_output=True)
        subprocess.run(["ld", "-m", "elf_i386", "-Ttext", hex(org), "--oformat", "binary",
                        "-o", out, obj], check=True, capture_output=True)
        code = out.read_bytes()
    if boot_sector:
        if len(code) > 510:
            raise ValueError(f"boot sector code is {len(code)} bytes")
        code = code.ljust(510, b"\0") + b"\x55\xaa"
    return code


def write_image(path: Path, *sectors: bytes) -> Path:
    data = b"".join(s.ljust(-(-len(s) // 512) * 512, b"\0") for s in sectors)
    path.write_bytes(data)
    return path
