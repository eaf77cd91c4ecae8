"""Registry hives ("hvhive1"): a container's registry as one file on a VM flavor's disk.

The full and enlightened VMs serve registry calls inside the guest, from ``/.hv/registry.hiv``
on their FAT disk; the host writes the file from the container's ``LayeredRegistry`` view before
the run and, after it, applies what changed to the container's registry layer, so
``hv container diff|commit`` see the VM's registry writes as a process container's.

Format (little-endian)::

    header : b"hvhive1\\0", u32 record count
    record : u8 kind
      1 key  : u16 path length, path (UTF-8, components joined by '\\', the first
               HKEY_LOCAL_MACHINE or HKEY_CURRENT_USER)
      2 value: u16 name length, name (UTF-8; "" is the default value), u32 type, u32 size,
               data (as the guest API gives and returns it: strings UTF-8 with their NULs);
               it belongs to the last key record

Every key is listed, a parent before its children, the two roots first. A hive read back is
hostile: a short file, a count that does not match, a key before its parent or listed twice, a
value before any key, a name or datum over the registry's limits, bytes left over: each is a
``HiveError`` and nothing is applied.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hv.container.registry import (
    LONG_ROOT, MAX_DATA, ROOTS, LayeredRegistry, RegistryError, check_value_name, fold, split_path)
from hv.container.registry_calls import to_guest, to_stored

MAGIC = b"hvhive1\0"
HEADER = struct.Struct("<8sI")
KIND_KEY, KIND_VALUE = 1, 2
HIVE_MAX = 64 << 20             # bytes of a hive read back
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


class HiveError(Exception):
    """A hive that cannot be read, or applied: one line."""


@dataclass
class Key:
    parts: tuple[str, ...]                         # as stored: ('HKLM', 'Software', 'hv')
    # folded name -> (name, type, data as the guest API gives it)
    values: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)


# A hive in memory: folded key path -> Key, parents before children.
Hive = dict


def _fold_key(parts) -> tuple[str, ...]:
    return (parts[0],) + tuple(fold(p) for p in parts[1:])


def from_registry(registry: LayeredRegistry | None) -> Hive:
    """The merged view of ``registry`` (None: an empty registry, the two roots alone)."""
    hive: Hive = {}
    for root in ROOTS:
        hive[(root,)] = Key((root,))
    if registry is None:
        return hive
    for path in registry.walk(ROOTS):
        parts = split_path(path)
        key = hive.setdefault(_fold_key(parts), Key(parts))
        for name, value in registry.values(parts):
            key.values[fold(name)] = (name, value.type, to_guest(value.type, value.data))
    return hive


def encode(hive: Hive) -> bytes:
    """The file: the roots first, then each root's subtree in pre-order (walk order)."""
    keys = [k for k in hive.values() if len(k.parts) == 1] + [k for k in hive.values() if len(k.parts) > 1]
    out = [b""]
    count = 0
    for key in keys:
        path = "\\".join((LONG_ROOT[key.parts[0]],) + key.parts[1:]).encode()
        out.append(bytes([KIND_KEY]) + _U16.pack(len(path)) + path)
        count += 1
        for name, type_, data in key.values.values():
            raw = name.encode("utf-8", "surrogatepass")
            if len(raw) > 0xFFFF:
                raise HiveError(f"{name[:40]!r}...: a value name over 65535 bytes does not fit a hive")
            out.append(bytes([KIND_VALUE]) + _U16.pack(len(raw)) + raw
                       + struct.pack("<II", type_, len(data)) + data)
            count += 1
    out[0] = HEADER.pack(MAGIC, count)
    return b"".join(out)


def decode(data: bytes) -> Hive:
    """A hive file -> Hive, checked completely before anything is returned."""
    if len(data) > HIVE_MAX:
        raise HiveError(f"the hive is {len(data)} bytes (at most {HIVE_MAX})")
    if len(data) < HEADER.size:
        raise HiveError("the hive is shorter than its header")
    magic, count = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise HiveError("not an hvhive1 file (bad magic)")
    if count > (len(data) - HEADER.size) // 3:        # a record takes 3 bytes at least
        raise HiveError(f"the hive claims {count} records in {len(data)} bytes")
    view = memoryview(data)
    pos = HEADER.size
    hive: Hive = {}
    key: Key | None = None

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise HiveError(f"record {i}: truncated in its {what}")
        out = bytes(view[pos:pos + n])
        pos += n
        return out

    def text(raw: bytes, what: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HiveError(f"record {i}: the {what} is not UTF-8") from None

    for i in range(count):
        kind = take(1, "kind")[0]
        if kind == KIND_KEY:
            path = text(take(_U16.unpack(take(2, "path length"))[0], "path"), "path")
            try:
                parts = split_path(path)
            except RegistryError as e:
                raise HiveError(f"record {i}: {e}") from None
            folded = _fold_key(parts)
            if folded in hive:
                raise HiveError(f"record {i}: key {path!r} is listed twice")
            if len(parts) > 1 and folded[:-1] not in hive:
                raise HiveError(f"record {i}: key {path!r} comes before its parent")
            key = hive[folded] = Key(parts)
        elif kind == KIND_VALUE:
            name = text(take(_U16.unpack(take(2, "name length"))[0], "name"), "value name")
            type_, size = struct.unpack("<II", take(8, "type and size"))
            if key is None:
                raise HiveError(f"record {i}: a value before any key")
            if size > MAX_DATA:
                raise HiveError(f"record {i}: {size} bytes of data (at most {MAX_DATA})")
            value = take(size, "data")
            try:
                check_value_name(name)
            except RegistryError as e:
                raise HiveError(f"record {i}: {e}") from None
            if fold(name) in key.values:
                raise HiveError(f"record {i}: value {name!r} is listed twice")
            key.values[fold(name)] = (name, type_, value)
        else:
            raise HiveError(f"record {i}: unknown kind {kind}")
    if pos != len(data):
        raise HiveError(f"{len(data) - pos} bytes after the last record")
    for root in ROOTS:
        if (root,) not in hive:
            raise HiveError(f"the hive lacks the root {LONG_ROOT[root]}")
    return hive


def apply(registry: LayeredRegistry, before: Hive, after: Hive) -> list[tuple[str, str]]:
    """Make ``registry`` (whose view is ``before``) show ``after``: keys and values created,
    changed and deleted, in one transaction. Returns what changed as (A|C|D, path)."""
    changes = []
    try:
        with registry.transaction():
            for folded, key in before.items():          # deletions, the topmost key of a subtree
                if folded not in after and folded[:-1] in after:
                    registry.delete_key(key.parts, tree=True)
                    changes.append(("D", "\\".join(key.parts)))
            for folded, key in after.items():
                old = before.get(folded)
                if old is None:
                    registry.create_key(key.parts)
                    changes.append(("A", "\\".join(key.parts)))
                old_values = old.values if old is not None else {}
                for vfold, (name, type_, data) in key.values.items():
                    was = old_values.get(vfold)
                    if was is None or was[1:] != (type_, data):
                        registry.set_value(key.parts, name, type_, to_stored(type_, data))
                        changes.append(("C" if was else "A", f"{chr(92).join(key.parts)}\\:{name}"))
                for vfold, (name, _, _) in old_values.items():
                    if vfold not in key.values:
                        registry.delete_value(key.parts, name)
                        changes.append(("D", f"{chr(92).join(key.parts)}\\:{name}"))
    except RegistryError as e:
        raise HiveError(f"the registry layer refused a change: {e}") from None
    return changes
