"""Guest programs: raw boot-disk images built from ``guests/src`` by ``python -m guests.build``.

Each image is a boot sector (0x55AA, loaded at 0000:7C00 with DL = boot drive) plus any
further sectors it loads itself; its length is a multiple of 512 bytes.
"""
from __future__ import annotations

from pathlib import Path

IMAGES_DIR = Path(__file__).resolve().parent / "images"


def names() -> list[str]:
    """The guest image names, in build order (e.g. "hello", "bioscheck")."""
    # Imported here, not at the top, so `python -m guests.build` doesn't import itself twice.
    from guests.build import TARGETS

    return [t.name for t in TARGETS]


def image_path(name: str) -> Path:
    """Path of the committed image for guest ``name`` (ValueError if there is no such guest)."""
    if name not in names():
        raise ValueError(f"unknown guest {name!r}; known: {', '.join(names())}")
    return IMAGES_DIR / f"{name}.img"
