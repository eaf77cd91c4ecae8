"""Host text -> PC keystrokes in scancode set 1 (US layout).

A ``Key`` is one keystroke with its modifiers: the ordered make/break byte
sequences to feed the 8042 (``I8042.press``), one entry per scancode event.
A set-1 break code is the make code with bit 7 set; extended keys (arrows,
Home, Del...) carry an 0xE0 prefix on both.

``parse_input`` reads a scripted string: printable ASCII types itself (Shift for
capitals and shifted symbols), ``\\r``/``\\n`` is Enter, ``\\t`` Tab, ``\\b``
Backspace, ``{name}`` a named key or ``{ctrl-x}``/``{alt-x}``/``{shift-x}``
combination, and ``{{``/``}}`` literal braces.

``terminal_to_keys`` reads bytes from a terminal in raw mode for a live console:
control characters become Ctrl+letter, VT100/xterm escape sequences become
arrows, function and editing keys, and ESC followed by a character is Alt+it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

EXTENDED = 0xE0
BREAK = 0x80

# Modifier make codes.
LCTRL, LSHIFT, LALT = 0x1D, 0x2A, 0x38

# Unshifted character -> make code.
_BASE = {
    "1": 0x02, "2": 0x03, "3": 0x04, "4": 0x05, "5": 0x06, "6": 0x07, "7": 0x08,
    "8": 0x09, "9": 0x0A, "0": 0x0B, "-": 0x0C, "=": 0x0D,
    "q": 0x10, "w": 0x11, "e": 0x12, "r": 0x13, "t": 0x14, "y": 0x15, "u": 0x16,
    "i": 0x17, "o": 0x18, "p": 0x19, "[": 0x1A, "]": 0x1B,
    "a": 0x1E, "s": 0x1F, "d": 0x20, "f": 0x21, "g": 0x22, "h": 0x23, "j": 0x24,
    "k": 0x25, "l": 0x26, ";": 0x27, "'": 0x28, "`": 0x29, "\\": 0x2B,
    "z": 0x2C, "x": 0x2D, "c": 0x2E, "v": 0x2F, "b": 0x30, "n": 0x31, "m": 0x32,
    ",": 0x33, ".": 0x34, "/": 0x35, " ": 0x39,
}
# Shifted symbol -> the unshifted character on the same key (US layout).
_SHIFTED = dict(zip('!@#$%^&*()_+{}|:"~<>?', "1234567890-=[]\\;'`,./"))

# Named keys -> (make code, extended?).
_NAMED: dict[str, tuple[int, bool]] = {
    "esc": (0x01, False), "escape": (0x01, False),
    "backspace": (0x0E, False), "bs": (0x0E, False),
    "tab": (0x0F, False),
    "enter": (0x1C, False), "return": (0x1C, False),
    "space": (0x39, False),
    "ctrl": (LCTRL, False), "shift": (LSHIFT, False), "alt": (LALT, False),
    "capslock": (0x3A, False), "numlock": (0x45, False), "scrolllock": (0x46, False),
    "home": (0x47, True), "up": (0x48, True), "pgup": (0x49, True), "pageup": (0x49, True),
    "left": (0x4B, True), "right": (0x4D, True), "end": (0x4F, True),
    "down": (0x50, True), "pgdn": (0x51, True), "pagedown": (0x51, True),
    "ins": (0x52, True), "insert": (0x52, True), "del": (0x53, True), "delete": (0x53, True),
    "f11": (0x57, False), "f12": (0x58, False),
}
_NAMED.update({f"f{n}": (0x3B + n - 1, False) for n in range(1, 11)})

# Modifier prefixes accepted inside braces.
_MODIFIERS = {"ctrl": LCTRL, "control": LCTRL, "alt": LALT, "shift": LSHIFT}

# Control characters that are keys of their own rather than Ctrl+letter.
_CONTROL_KEYS = {"\r": "enter", "\n": "enter", "\t": "tab", "\b": "backspace",
                 "\x1b": "esc", "\x7f": "backspace"}


@dataclass
class Key:
    """One keystroke: ``events`` are the make/break byte runs, in order."""

    events: list[bytes] = field(default_factory=list)
    label: str = ""

    @property
    def codes(self) -> bytes:
        return b"".join(self.events)


def _make(code: int, ext: bool) -> bytes:
    return bytes([EXTENDED, code]) if ext else bytes([code])


def _break(code: int, ext: bool) -> bytes:
    return bytes([EXTENDED, code | BREAK]) if ext else bytes([code | BREAK])


def _stroke(code: int, ext: bool, mods: tuple[int, ...], label: str) -> Key:
    """Modifiers down, key down, key up, modifiers up in reverse."""
    ordered = tuple(dict.fromkeys(mods))  # a modifier pressed twice is still one key
    events = [_make(m, False) for m in ordered]
    events += [_make(code, ext), _break(code, ext)]
    events += [_break(m, False) for m in reversed(ordered)]
    return Key(events, label)


def _char_key(ch: str, mods: tuple[int, ...] = ()) -> Key:
    """A key for one character; raises ValueError if it has none."""
    if ch in _CONTROL_KEYS:
        code, ext = _NAMED[_CONTROL_KEYS[ch]]
        return _stroke(code, ext, mods, _CONTROL_KEYS[ch])
    if ch in _BASE:
        return _stroke(_BASE[ch], False, mods, ch)
    lower = ch.lower()
    if len(ch) == 1 and ch.isascii() and ch.isalpha():   # capital letter
        if LCTRL in mods or LALT in mods:
            return _stroke(_BASE[lower], False, mods, ch)  # Ctrl+A is Ctrl+a
        return _stroke(_BASE[lower], False, mods + (LSHIFT,), ch)
    if ch in _SHIFTED:
        return _stroke(_BASE[_SHIFTED[ch]], False, mods + (LSHIFT,), ch)
    if len(ch) == 1 and 0 < ord(ch) < 0x20:                # ^A .. ^_
        ctrl_char = chr(ord(ch) + 0x40).lower()             # 0x1C-0x1F -> \ ] ^ _
        return _char_key(ctrl_char, mods + (LCTRL,))
    raise ValueError(f"no PC key types the character {ch!r}")


def named_key(name: str) -> Key:
    """The key for a brace name such as ``up``, ``f5``, ``ctrl-c``, ``ctrl-alt-del``."""
    rest, mods = name, []
    while True:
        head, sep, tail = rest.partition("-")
        if sep and tail and head.lower() in _MODIFIERS:
            mods.append(_MODIFIERS[head.lower()])
            rest = tail
        else:
            break
    key_name = rest.lower()
    if key_name in _NAMED:
        code, ext = _NAMED[key_name]
        return _stroke(code, ext, tuple(mods), name)
    if len(rest) == 1 and mods:
        try:
            return _char_key(rest, tuple(mods))
        except ValueError:
            pass
    raise ValueError(f"unknown key name {name!r} in braces")


def parse_input(text: str) -> list[Key]:
    """Script text -> keystrokes; raises ValueError on an unknown ``{name}``."""
    keys: list[Key] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "{":
            if text.startswith("{{", i):
                keys.append(_char_key("{"))
                i += 2
                continue
            end = text.find("}", i + 1)
            if end < 0:
                raise ValueError(f"unterminated '{{' at position {i}")
            keys.append(named_key(text[i + 1:end]))
            i = end + 1
        elif ch == "}":
            if not text.startswith("}}", i):
                raise ValueError(f"lone '}}' at position {i} (write '}}}}' for a brace)")
            keys.append(_char_key("}"))
            i += 2
        else:
            keys.append(_char_key(ch))
            i += 1
    return keys


# --- terminal input ----------------------------------------------------------

# CSI final letters (ESC [ X or ESC O X, optionally with ";mod") -> key name.
_CSI_LETTER = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
               "P": "f1", "Q": "f2", "R": "f3", "S": "f4"}
# ESC [ n ~ -> key name (vt220 / xterm numbering).
_CSI_TILDE = {1: "home", 2: "ins", 3: "del", 4: "end", 5: "pgup", 6: "pgdn", 7: "home",
              8: "end", 11: "f1", 12: "f2", 13: "f3", 14: "f4", 15: "f5", 17: "f6",
              18: "f7", 19: "f8", 20: "f9", 21: "f10", 23: "f11", 24: "f12"}


def _xterm_mods(param: int) -> tuple[int, ...]:
    """xterm modifier parameter (1 + bits: 1 Shift, 2 Alt, 4 Ctrl) -> make codes."""
    bits = max(0, param - 1)
    return tuple(code for bit, code in ((1, LSHIFT), (2, LALT), (4, LCTRL)) if bits & bit)


def _csi(data: bytes, i: int) -> tuple[Key | None, int]:
    """Parse ``ESC [ ...`` or ``ESC O ...`` starting at data[i] == ESC.

    Returns (key or None for an unknown sequence, index after it), or (None, -1)
    if the bytes do not form a complete sequence."""
    intro = data[i + 1]
    j = i + 2
    while j < len(data) and (0x30 <= data[j] <= 0x3F):   # parameter bytes
        j += 1
    if j >= len(data):
        return None, -1
    final = chr(data[j])
    params = [int(p) if p.isdigit() and len(p) < 6 else 0
              for p in data[i + 2:j].decode("ascii").split(";")] if j > i + 2 else []
    if not 0x40 <= data[j] <= 0x7E:
        return None, -1
    mods = _xterm_mods(params[1]) if len(params) > 1 else ()
    if final in _CSI_LETTER:
        code, ext = _NAMED[_CSI_LETTER[final]]
        return _stroke(code, ext, mods, _CSI_LETTER[final]), j + 1
    if final == "~" and intro == ord("[") and params and params[0] in _CSI_TILDE:
        name = _CSI_TILDE[params[0]]
        code, ext = _NAMED[name]
        return _stroke(code, ext, mods, name), j + 1
    return None, j + 1


def terminal_to_keys(data: bytes) -> list[Key]:
    """Raw-mode terminal bytes -> keystrokes. Unknown sequences and non-ASCII
    bytes are dropped; a lone ESC (or one at the end of the data) is Esc."""
    keys: list[Key] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x1B and i + 1 < n:
            nxt = data[i + 1]
            if nxt in (ord("["), ord("O")):
                key, after = _csi(data, i)
                if after > 0:
                    if key is not None:
                        keys.append(key)
                    i = after
                    continue
            elif nxt != 0x1B and nxt < 0x80:
                try:                                # ESC x = Alt+x (meta)
                    keys.append(_char_key(chr(nxt), (LALT,)))
                    i += 2
                    continue
                except ValueError:
                    pass
            keys.append(named_key("esc"))
            i += 1
        elif b == 0x00:
            keys.append(_stroke(_BASE["2"], False, (LCTRL,), "ctrl-@"))
            i += 1
        elif b < 0x80:
            try:
                keys.append(_char_key(chr(b)))
            except ValueError:
                pass
            i += 1
        else:
            i += 1   # UTF-8 and other 8-bit bytes have no US-layout key
    return keys
