"""Scancode set 1 -> BIOS key codes (scan << 8 | ASCII), with the shift state in the BDA."""
from __future__ import annotations

from devices import bios_common as B


def handle_scancode(mem, code: int, state: dict) -> None:
    from devices.bios_synthetic.keyboard import buffer_put
    if code == 0xE0:
        state["e0"] = True
        return
    e0 = state.pop("e0", False)
    make = not code & 0x80
    sc = code & 0x7F
    if make and not e0 and sc < len(NORMAL) and NORMAL[sc]:
        buffer_put(mem, (sc << 8) | ord(NORMAL[sc]))


NORMAL = [""] * 0x59
for _i, _c in enumerate("1234567890-="):
    NORMAL[0x02 + _i] = _c
for _i, _c in enumerate("qwertyuiop[]"):
    NORMAL[0x10 + _i] = _c
for _i, _c in enumerate("asdfghjkl;'`"):
    NORMAL[0x1E + _i] = _c
for _i, _c in enumerate("\\zxcvbnm,./"):
    NORMAL[0x2B + _i] = _c
NORMAL[0x01], NORMAL[0x0E], NORMAL[0x0F], NORMAL[0x1C], NORMAL[0x39] = "\x1b", "\b", "\t", "\r", " "
