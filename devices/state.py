"""What the devices' ``state()`` / ``load_state()`` pairs share (machine snapshots:
``hv/debug/snapshot.py``).

A device's state is a dict of JSON types and ``bytes`` with its format version in ``"v"``:
everything the device needs to behave as it would have -- registers, latches, FIFOs,
counters, flip-flops, transfer progress, its interrupt output's level, and its timers as
absolute virtual deadlines (``None`` when not armed). ``load_state`` runs with the clock
already at the saved time and every clock timer cleared: a device re-arms its own timers
at their saved deadlines, and sets what its interrupt wire remembers of its level without
driving the wire (the interrupt controllers restore their own inputs, so a restore makes
no edge that was not there).

A state comes from a file: ``load_state`` takes nothing on trust. A value of the wrong
type or out of its range is a ``ValueError`` (the snapshot loader turns it into one line
for the user), never a host exception later or an access outside a buffer.
"""
from __future__ import annotations

from typing import Any, Callable

STATE_VERSION = 1


def versioned(**fields: Any) -> dict:
    """A state dict: the format version, then ``fields``."""
    return {"v": STATE_VERSION, **fields}


def check_version(state: Any, who: str, version: int = STATE_VERSION) -> dict:
    """``state`` if it is a dict of format ``version``; ValueError otherwise."""
    if not isinstance(state, dict):
        raise ValueError(f"{who}: the saved state is not a record")
    if state.get("v") != version:
        raise ValueError(f"{who}: saved state format version {state.get('v')!r}; "
                         f"this hv reads version {version}")
    return state


def field(state: dict, key: str, who: str) -> Any:
    if not isinstance(state, dict):
        raise ValueError(f"{who}: a saved part is not a record")
    try:
        return state[key]
    except KeyError:
        raise ValueError(f"{who}: the saved state has no {key!r}") from None


def integer(state: dict, key: str, who: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    """An integer field in [lo, hi] (bool is refused: it is another field's type)."""
    value = field(state, key, who)
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{who}: saved {key} = {value!r} is not an integer in {lo}..{hi}")
    return value


def optional_integer(state: dict, key: str, who: str, lo: int = 0,
                     hi: int = (1 << 64) - 1) -> int | None:
    if field(state, key, who) is None:
        return None
    return integer(state, key, who, lo, hi)


def flag(state: dict, key: str, who: str) -> bool:
    value = field(state, key, who)
    if type(value) is not bool:
        raise ValueError(f"{who}: saved {key} = {value!r} is not true or false")
    return value


def blob(state: dict, key: str, who: str, length: int | None = None,
         max_length: int | None = None) -> bytes:
    """A bytes field, of exactly ``length`` bytes or at most ``max_length``."""
    value = field(state, key, who)
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{who}: saved {key} is not bytes")
    if length is not None and len(value) != length:
        raise ValueError(f"{who}: saved {key} holds {len(value)} bytes, not {length}")
    if max_length is not None and len(value) > max_length:
        raise ValueError(f"{who}: saved {key} holds {len(value)} bytes, more than {max_length}")
    return bytes(value)


def int_list(state: dict, key: str, who: str, length: int | None = None, lo: int = 0,
             hi: int = (1 << 64) - 1, max_length: int | None = None) -> list[int]:
    value = field(state, key, who)
    if not isinstance(value, list) or (length is not None and len(value) != length) or \
            (max_length is not None and len(value) > max_length):
        raise ValueError(f"{who}: saved {key} is not a list of the right length")
    for v in value:
        if type(v) is not int or not lo <= v <= hi:
            raise ValueError(f"{who}: saved {key} holds {v!r}, not an integer in {lo}..{hi}")
    return list(value)


# ---- timers -------------------------------------------------------------------------------

def deadline(timer) -> int | None:
    """A ``hv.clock.Timer``'s absolute virtual deadline, or None when none is armed."""
    if timer is None or timer.cancelled:
        return None
    return timer.deadline


def rearm(clock, state: dict, key: str, callback: Callable[[int], None], who: str):
    """Arm ``callback`` at the deadline saved under ``key`` (or nothing): the new Timer."""
    at = optional_integer(state, key, who, 0, (1 << 63) - 1)
    if at is None or clock is None:
        return None
    return clock.at(at, callback)


# ---- interrupt wires ------------------------------------------------------------------------

def restore_level(line, level: bool) -> None:
    """Make ``line`` remember ``level`` without driving it: no edge reaches a controller
    (they restore their own input state). A line that keeps more than a level (a shared
    wire's hold) says how with ``restore_level``."""
    restore = getattr(line, "restore_level", None)
    if restore is not None:
        restore(bool(level))
    elif hasattr(line, "level"):
        line.level = bool(level)


def line_level(line) -> bool:
    """The level a wire was last driven to (False for a wire that does not remember)."""
    return bool(getattr(line, "level", False))
