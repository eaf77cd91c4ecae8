"""Scancode set 1 -> BIOS key codes (scan << 8 | ASCII), US layout, with the
shift state in the BDA (0x417, 0x418, 0x496), as an enhanced (101-key) AT BIOS.

Key codes follow Ralf Brown's keyboard table: the grey cursor keys (0xE0
prefix) store ASCII E0h, keypad Enter and / store scan E0h, and keys that only
exist on enhanced keyboards with no ASCII (Alt+punctuation) store ASCII F0h so
the non-extended INT 16h functions can drop them (see keyboard.py).
"""
from __future__ import annotations

from hv.devices import bios_common as B

# BDA 0x417 (KBD_FLAGS1)
KF0_RSHIFT, KF0_LSHIFT, KF0_CTRL, KF0_ALT = 0x01, 0x02, 0x04, 0x08
KF0_SCROLL, KF0_NUM, KF0_CAPS, KF0_INSERT = 0x10, 0x20, 0x40, 0x80
# BDA 0x418 (KBD_FLAGS2): keys held down
KF1_LCTRL, KF1_LALT, KF1_SYSREQ, KF1_PAUSE = 0x01, 0x02, 0x04, 0x08
KF1_SCROLL, KF1_NUM, KF1_CAPS, KF1_INSERT = 0x10, 0x20, 0x40, 0x80
# BDA 0x496 (KBD_FLAGS3)
KF2_LAST_E1, KF2_LAST_E0, KF2_RCTRL, KF2_RALT, KF2_101KBD = 0x01, 0x02, 0x04, 0x08, 0x10
# BDA 0x497 (KBD_LEDS) bits 0-2: scroll, num, caps
LED_MASK = 0x07

SC_ESC, SC_CTRL, SC_LSHIFT, SC_RSHIFT, SC_ALT = 0x01, 0x1D, 0x2A, 0x36, 0x38
SC_CAPS, SC_NUM, SC_SCROLL, SC_INSERT, SC_DELETE = 0x3A, 0x45, 0x46, 0x52, 0x53
SC_ENTER, SC_SLASH, SC_PRTSC, SC_SYSREQ = 0x1C, 0x35, 0x37, 0x54
SOFT_RESET_WARM = 0x1234         # BDA 0x472: Ctrl+Alt+Del, skip the memory test

LETTER, NUMPAD = 1, 2            # which lock key flips normal/shift

# scan -> (normal, shift, ctrl, alt, lock); None = the combination makes no key
Entry = tuple
KEYS: dict[int, Entry] = {
    0x01: (0x011B, 0x011B, 0x011B, 0x01F0, 0),
    0x0E: (0x0E08, 0x0E08, 0x0E7F, 0x0EF0, 0),
    0x0F: (0x0F09, 0x0F00, 0x9400, 0xA500, 0),
    0x1C: (0x1C0D, 0x1C0D, 0x1C0A, 0x1CF0, 0),
    0x39: (0x3920, 0x3920, 0x3920, 0x3920, 0),
    0x37: (0x372A, 0x372A, 0x9600, 0x37F0, 0),   # keypad *
    0x4A: (0x4A2D, 0x4A2D, 0x8E00, 0x4AF0, 0),   # keypad -
    0x4E: (0x4E2B, 0x4E2B, 0x9000, 0x4EF0, 0),   # keypad +
}
_DIGITS = "1234567890-="
_SHIFT_DIGITS = "!@#$%^&*()_+"
_CTRL_DIGITS = {0x03: 0x0300, 0x07: 0x071E, 0x0C: 0x0C1F}   # Ctrl+2, Ctrl+6, Ctrl+-
for _i, (_n, _s) in enumerate(zip(_DIGITS, _SHIFT_DIGITS)):
    _sc = 0x02 + _i
    KEYS[_sc] = ((_sc << 8) | ord(_n), (_sc << 8) | ord(_s), _CTRL_DIGITS.get(_sc),
                 (0x78 + _i) << 8, 0)
for _row, _base in (("qwertyuiop", 0x10), ("asdfghjkl", 0x1E), ("zxcvbnm", 0x2C)):
    for _i, _c in enumerate(_row):
        _sc = _base + _i
        KEYS[_sc] = ((_sc << 8) | ord(_c), (_sc << 8) | ord(_c.upper()),
                     (_sc << 8) | (ord(_c) - 0x60), _sc << 8, LETTER)
# punctuation: (scan, normal, shift, ctrl ASCII or None)
for _sc, _n, _s, _ctl in ((0x1A, "[", "{", 0x1B), (0x1B, "]", "}", 0x1D), (0x27, ";", ":", None),
                          (0x28, "'", '"', None), (0x29, "`", "~", None), (0x2B, "\\", "|", 0x1C),
                          (0x33, ",", "<", None), (0x34, ".", ">", None), (0x35, "/", "?", None),
                          (0x56, "\\", "|", None)):
    KEYS[_sc] = ((_sc << 8) | ord(_n), (_sc << 8) | ord(_s),
                 None if _ctl is None else (_sc << 8) | _ctl, (_sc << 8) | 0xF0, 0)
# F1-F10 (0x3B-0x44), F11 (0x57), F12 (0x58)
for _i in range(10):
    KEYS[0x3B + _i] = ((0x3B + _i) << 8, (0x54 + _i) << 8, (0x5E + _i) << 8, (0x68 + _i) << 8, 0)
KEYS[0x57] = (0x8500, 0x8700, 0x8900, 0x8B00, 0)
KEYS[0x58] = (0x8600, 0x8800, 0x8A00, 0x8C00, 0)
# numeric keypad 0x47-0x53 (NumLock or Shift: digits)
for _sc, _digit, _ctrl in ((0x47, "7", 0x7700), (0x48, "8", 0x8D00), (0x49, "9", 0x8400),
                           (0x4B, "4", 0x7300), (0x4C, "5", 0x8F00), (0x4D, "6", 0x7400),
                           (0x4F, "1", 0x7500), (0x50, "2", 0x9100), (0x51, "3", 0x7600),
                           (0x52, "0", 0x9200), (0x53, ".", 0x9300)):
    KEYS[_sc] = (_sc << 8, (_sc << 8) | ord(_digit), _ctrl, None, NUMPAD)

# 0xE0-prefixed keys: (normal, ctrl, alt); Shift and NumLock do not change them.
GREY: dict[int, tuple[int, int, int]] = {
    0x47: (0x47E0, 0x77E0, 0x9700), 0x48: (0x48E0, 0x8DE0, 0x9800),
    0x49: (0x49E0, 0x84E0, 0x9900), 0x4B: (0x4BE0, 0x73E0, 0x9B00),
    0x4D: (0x4DE0, 0x74E0, 0x9D00), 0x4F: (0x4FE0, 0x75E0, 0x9F00),
    0x50: (0x50E0, 0x91E0, 0xA000), 0x51: (0x51E0, 0x76E0, 0xA100),
    0x52: (0x52E0, 0x92E0, 0xA200), 0x53: (0x53E0, 0x93E0, 0xA300),
    SC_ENTER: (0xE00D, 0xE00A, 0xA600), SC_SLASH: (0xE02F, 0x9500, 0xA400),
}

# make code -> (0x417 bit, 0x418 bit for the left key, 0x496 bit for the right one)
MODIFIERS = {SC_LSHIFT: (KF0_LSHIFT, 0, 0), SC_RSHIFT: (KF0_RSHIFT, 0, 0),
             SC_CTRL: (KF0_CTRL, KF1_LCTRL, KF2_RCTRL), SC_ALT: (KF0_ALT, KF1_LALT, KF2_RALT)}
LOCKS = {SC_CAPS: (KF0_CAPS, KF1_CAPS), SC_NUM: (KF0_NUM, KF1_NUM),
         SC_SCROLL: (KF0_SCROLL, KF1_SCROLL)}


def _update_leds(mem, flags0: int) -> None:
    leds = (flags0 >> 4) & LED_MASK
    mem.put8(B.KBD_LEDS, (mem.u8(B.KBD_LEDS) & ~LED_MASK) | leds)


def translate(sc: int, e0: bool, flags0: int) -> int | None:
    """The key code for make code ``sc`` in shift state ``flags0`` (None: no key)."""
    if e0:
        grey = GREY.get(sc)
        if grey is None:
            return None
        if flags0 & KF0_ALT:
            return grey[2]
        if flags0 & KF0_CTRL:
            return grey[1]
        return grey[0]
    entry = KEYS.get(sc)
    if entry is None:
        return None
    normal, shift, ctrl, alt, lock = entry
    if flags0 & KF0_ALT:
        return alt
    if flags0 & KF0_CTRL:
        return ctrl
    shifted = bool(flags0 & (KF0_LSHIFT | KF0_RSHIFT))
    if (lock == LETTER and flags0 & KF0_CAPS) or (lock == NUMPAD and flags0 & KF0_NUM):
        shifted = not shifted
    return shift if shifted else normal


def handle_scancode(m, code: int) -> None:
    """One byte from port 0x60, as INT 09h handles it."""
    from hv.devices.bios_synthetic.keyboard import buffer_put
    mem = m.mem
    flags0, flags1, flags2 = mem.u8(B.KBD_FLAGS1), mem.u8(B.KBD_FLAGS2), mem.u8(B.KBD_FLAGS3)
    code &= 0xFF
    if flags2 & KF2_LAST_E1:
        # Pause is E1 1D 45 E1 9D C5: swallow the rest of the sequence.
        if code & 0x7F != SC_CTRL:
            mem.put8(B.KBD_FLAGS3, flags2 & ~KF2_LAST_E1)
        return
    if code == 0xE0:
        mem.put8(B.KBD_FLAGS3, flags2 | KF2_LAST_E0)
        return
    if code == 0xE1:
        mem.put8(B.KBD_FLAGS3, flags2 | KF2_LAST_E1)
        return
    e0 = bool(flags2 & KF2_LAST_E0)
    flags2 &= ~KF2_LAST_E0
    make = not code & 0x80
    sc = code & 0x7F
    if sc in MODIFIERS:
        if e0 and sc in (SC_LSHIFT, SC_RSHIFT):
            pass               # fake shifts around grey keys: not a shift key
        else:
            bit0, left, right = MODIFIERS[sc]
            if e0:
                flags2 = (flags2 | right) if make else (flags2 & ~right)
            else:
                flags1 = (flags1 | left) if make else (flags1 & ~left)
            # Ctrl/Alt stay active while either side is held.
            held = {SC_CTRL: (flags1 & KF1_LCTRL) or (flags2 & KF2_RCTRL),
                    SC_ALT: (flags1 & KF1_LALT) or (flags2 & KF2_RALT)}.get(sc, make)
            flags0 = (flags0 | bit0) if held else (flags0 & ~bit0)
    elif sc in LOCKS and not e0:
        active, pressed = LOCKS[sc]
        if make and not flags1 & pressed:        # typematic repeats do not toggle again
            flags0 ^= active
        flags1 = (flags1 | pressed) if make else (flags1 & ~pressed)
        _update_leds(mem, flags0)
    elif sc == SC_SYSREQ and not e0:          # Alt+Print Screen
        flags1 = (flags1 | KF1_SYSREQ) if make else (flags1 & ~KF1_SYSREQ)
    elif not make:
        if sc == SC_INSERT:
            flags1 &= ~KF1_INSERT
    else:
        if sc == SC_DELETE and flags0 & KF0_CTRL and flags0 & KF0_ALT:
            mem.put16(B.RESET_FLAG, SOFT_RESET_WARM)
            mem.put8(B.KBD_FLAGS1, flags0)
            mem.put8(B.KBD_FLAGS2, flags1)
            mem.put8(B.KBD_FLAGS3, flags2)
            m.request_reset()
            return
        if sc == SC_INSERT and not flags0 & (KF0_CTRL | KF0_ALT):
            shifted = bool(flags0 & (KF0_LSHIFT | KF0_RSHIFT)) != bool(flags0 & KF0_NUM)
            if e0 or not shifted:               # Insert, not keypad 0
                if not flags1 & KF1_INSERT:
                    flags0 ^= KF0_INSERT
                flags1 |= KF1_INSERT
        key = translate(sc, e0, flags0)
        if e0 and sc == SC_PRTSC:
            key = 0x7200 if flags0 & KF0_CTRL else None   # Print Screen (INT 05h not called)
        if key is not None:
            buffer_put(mem, key)
    mem.put8(B.KBD_FLAGS1, flags0)
    mem.put8(B.KBD_FLAGS2, flags1)
    mem.put8(B.KBD_FLAGS3, flags2)
