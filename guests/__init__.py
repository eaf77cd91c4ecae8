"""Guest programs: raw boot-disk images built from ``guests/src`` by ``python -m hv.guests.build``.

Each image is a boot sector (0x55AA, loaded at 0000:7C00 with DL = boot drive) plus any
further sectors it loads itself; its length is a multiple of 512 bytes.
"""
from __future__ import annotations

from pathlib import Path

IMAGES_DIR = Path(__file__).resolve().parent / "images"


def names() -> list[str]:
    """The guest image names, in build order (e.g. "hello", "bioscheck")."""
    # Imported here, not at the top, so `python -m hv.guests.build` doesn't import itself twice.
    from hv.guests.build import TARGETS

    return [t.name for t in TARGETS]


def kernel_names() -> list[str]:
    """The direct-boot kernels (``hv run --kernel NAME``), in build order."""
    from hv.guests.build import KERNEL_TARGETS

    return [t.name for t in KERNEL_TARGETS]


def kernel_path(name: str) -> Path:
    """Path of the committed ELF of kernel ``name`` (ValueError if there is no such kernel)."""
    if name not in kernel_names():
        raise ValueError(f"unknown kernel {name!r}; known: {', '.join(kernel_names())}")
    return IMAGES_DIR / f"{name}.elf"


def linux_program_names() -> list[str]:
    """The static Linux i386 programs for process containers, in build order."""
    from hv.guests.build import LINUX_TARGETS

    return [t.name for t in LINUX_TARGETS]


def linux_program_path(name: str) -> Path:
    """Path of the committed ELF of Linux program ``name`` (ValueError if there is none)."""
    if name not in linux_program_names():
        raise ValueError(f"unknown Linux program {name!r}; known: {', '.join(linux_program_names())}")
    return IMAGES_DIR / "linux" / name


def descriptions() -> dict[str, tuple[str, str]]:
    """name -> (kind, one-line description) for every built-in guest and kernel."""
    from hv.guests.build import KERNEL_TARGETS, TARGETS

    out = {t.name: ("disk", t.description) for t in TARGETS}
    out.update({t.name: ("kernel", t.description) for t in KERNEL_TARGETS})
    return out


def image_path(name: str) -> Path:
    """Path of the committed image for guest ``name`` (ValueError if there is no such guest)."""
    if name not in names():
        raise ValueError(f"unknown guest {name!r}; known: {', '.join(names())}")
    return IMAGES_DIR / f"{name}.img"


SCRATCH_SECTORS = 8192  # 4 MiB


def scratch_word(sector: int, index: int) -> int:
    """Word ``index`` (0..127) of scratch-disk sector ``sector``: ``sector * 0x01000193 ^ index``
    modulo 2**32, stored little-endian."""
    return ((sector * 0x01000193) ^ index) & 0xFFFFFFFF


def scratch_sector(sector: int) -> bytes:
    """The 512 bytes of scratch-disk sector ``sector`` (see ``scratch_word``)."""
    import struct

    base = (sector * 0x01000193) & 0xFFFFFFFF
    return struct.pack("<128I", *(base ^ i for i in range(128)))


def scratch_disk(path: Path | str, sectors: int = SCRATCH_SECTORS) -> Path:
    """Write the "fresh scratch disk" disktest expects: a raw image of ``sectors`` sectors
    (default 8192 = 4 MiB) where sector n is ``scratch_sector(n)``. The same bytes for every
    emulator, so the checksums disktest prints depend only on this pattern."""
    path = Path(path)
    with open(path, "wb") as f:
        for n in range(sectors):
            f.write(scratch_sector(n))
    return path
