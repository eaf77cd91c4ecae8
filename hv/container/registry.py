"""The container registry: a Windows-style registry kept in layered SQLite databases.

A container sees keys under two roots, ``HKLM`` and ``HKCU``, each holding subkeys and named, typed
values, as the Windows registry does. Its writes go to a layer of its own (the *upper*); reads fall
through to the image's read-only layers (the *lowers*); deleting the container deletes the upper.

    model      names, paths, types, limits, ``Value``                   (as Windows documents them)
    storage    one SQLite database per layer; ``LayeredRegistry`` merges a stack of them
    .reg       ``export_reg`` / ``import_reg``: "Windows Registry Editor Version 5.00" text
    command    ``main_registry(argv)``: ``hv registry export|import``

Every name, path, type and datum may come from a guest, so each is checked against the limits below
and a bad one raises ``RegistryError`` carrying a Linux errno; nothing else escapes the public API
(SQLite errors, including a corrupt or hostile layer file, become ``EIO``). The guest call set on top
of this is ``hv/container/registry_calls.py``; the whole design is in ``docs/registry.md``.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import itertools
import os
import re
import sqlite3
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence
from hv.cliargs import OneLineParser, UsageError

# --------------------------------------------------------------------------------------------- model

# Value types, numbered as in winnt.h. Any other 32-bit type number is accepted and kept as bytes,
# as RegSetValueEx does.
REG_NONE = 0
REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_MULTI_SZ = 7
REG_QWORD = 11
TYPE_NAMES = {REG_NONE: "REG_NONE", REG_SZ: "REG_SZ", REG_EXPAND_SZ: "REG_EXPAND_SZ",
              REG_BINARY: "REG_BINARY", REG_DWORD: "REG_DWORD", REG_MULTI_SZ: "REG_MULTI_SZ",
              REG_QWORD: "REG_QWORD"}
STRING_TYPES = frozenset({REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ})   # stored as UTF-16LE text
MAX_TYPE = 0xFFFF_FFFF

# Limits ("Registry element size limits" in the Windows documentation, except MAX_DATA: Windows
# allows data up to available memory; hv stops at 1 MiB so a guest cannot make the host allocate
# without bound).
MAX_KEY_NAME = 255            # characters in one key name (a path component)
MAX_VALUE_NAME = 16383        # characters in a value name
MAX_DEPTH = 512               # key levels below a root
MAX_PATH = 32767              # characters in a key's full path (a UNICODE_STRING's bound)
MAX_DATA = 1 << 20            # bytes of stored value data
DEFAULT_QUOTA = 256 << 20     # bytes an upper layer may grow to (Windows' old registry quota, RSL)

# The roots: short canonical names, and the long names .reg files use.
ROOT_ALIASES = {"HKLM": "HKLM", "HKEY_LOCAL_MACHINE": "HKLM",
                "HKCU": "HKCU", "HKEY_CURRENT_USER": "HKCU"}
LONG_ROOT = {"HKLM": "HKEY_LOCAL_MACHINE", "HKCU": "HKEY_CURRENT_USER"}
ROOTS = ("HKLM", "HKCU")


class RegistryError(Exception):
    """A registry operation failed; ``errno`` says why (docs/registry.md maps each to Windows)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


class KeyNotFound(RegistryError):
    """The key an operation names does not exist (ENOENT; a missing value is a plain ENOENT)."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ENOENT, f"{path}: no such key")


def _fail(code: int, message: str):
    raise RegistryError(code, message)


def fold(name: str) -> str:
    """The comparison form of a name: each character upper-cased on its own, as Windows' upcase
    table does (so 'ß' stays 'ß': a fold never changes a name's length)."""
    upper = name.upper()
    if len(upper) == len(name):        # no character expanded, so each mapped 1:1
        return upper
    return "".join(u if len(u := c.upper()) == 1 else c for c in name)


def _check_text(name: str, what: str, limit: int) -> None:
    if not isinstance(name, str):
        _fail(errno.EINVAL, f"{what} must be text")
    if len(name) > limit:
        _fail(errno.ENAMETOOLONG, f"{what} {name[:40]!r}...: longer than {limit} characters")
    if any(c < " " or "\ud800" <= c <= "\udfff" for c in name):
        _fail(errno.EINVAL, f"{what} {name!r}: control characters and lone surrogates are not allowed")


def check_key_name(name: str) -> None:
    """One path component: 1..255 characters, no backslash, no control characters."""
    _check_text(name, "key name", MAX_KEY_NAME)
    if not name or "\\" in name:
        _fail(errno.EINVAL, f"key name {name!r}: empty, or contains a backslash")


def check_value_name(name: str) -> None:
    """A value name: up to 16383 characters ('' is the default value), no control characters."""
    _check_text(name, "value name", MAX_VALUE_NAME)


def split_subkey(path: str) -> tuple[str, ...]:
    """'A\\B\\C' -> ('A', 'B', 'C'); '' -> () (the key itself). No empty components."""
    if not isinstance(path, str):
        _fail(errno.EINVAL, "a key path must be text")
    if len(path) > MAX_PATH:
        _fail(errno.ENAMETOOLONG, f"key path longer than {MAX_PATH} characters")
    if path == "":
        return ()
    parts = tuple(path.split("\\"))
    for part in parts:
        check_key_name(part)
    return parts


def split_path(path: str | Sequence[str]) -> tuple[str, ...]:
    """'HKEY_LOCAL_MACHINE\\Software\\X' -> ('HKLM', 'Software', 'X'); a tuple is checked as is."""
    if isinstance(path, str):
        if len(path) > MAX_PATH:
            _fail(errno.ENAMETOOLONG, f"key path longer than {MAX_PATH} characters")
        parts = tuple(path.split("\\"))
    else:
        parts = tuple(path)
    if not parts or not isinstance(parts[0], str) or parts[0].upper() not in ROOT_ALIASES:
        _fail(errno.EINVAL, f"{path!r}: a key path starts with HKLM, HKCU, HKEY_LOCAL_MACHINE "
                            f"or HKEY_CURRENT_USER")
    for part in parts[1:]:
        check_key_name(part)
    if len(parts) - 1 > MAX_DEPTH:
        _fail(errno.ENAMETOOLONG, f"key path deeper than {MAX_DEPTH} levels")
    if sum(map(len, parts)) + len(parts) - 1 > MAX_PATH:
        _fail(errno.ENAMETOOLONG, f"key path longer than {MAX_PATH} characters")
    return (ROOT_ALIASES[parts[0].upper()], *parts[1:])


def join_path(parts: Sequence[str]) -> str:
    return "\\".join(parts)


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def _from_utf16(data: bytes) -> str:
    return data[:len(data) & ~1].decode("utf-16-le", "surrogatepass")


def encode_data(type_: int, value) -> bytes:
    """A Python value -> the stored bytes for ``type_``: str for REG_SZ/REG_EXPAND_SZ (stored
    UTF-16LE with its NUL, as a hive does), list of str for REG_MULTI_SZ, int for REG_DWORD and
    REG_QWORD (little-endian). Bytes are stored as they are, whatever the type."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if type_ in (REG_SZ, REG_EXPAND_SZ) and isinstance(value, str):
        return _utf16(value + "\0")
    if type_ == REG_MULTI_SZ and isinstance(value, (list, tuple)) \
            and all(isinstance(s, str) and s and "\0" not in s for s in value):
        return _utf16("".join(s + "\0" for s in value) + "\0")
    if type_ in (REG_DWORD, REG_QWORD) and isinstance(value, int) and not isinstance(value, bool):
        size = 4 if type_ == REG_DWORD else 8
        if 0 <= value < 1 << (8 * size):
            return value.to_bytes(size, "little")
    _fail(errno.EINVAL, f"cannot store {value!r} as {TYPE_NAMES.get(type_, f'type {type_}')}")


@dataclass(frozen=True)
class Value:
    """A value as stored: its type and its bytes (strings as UTF-16LE, as in a hive)."""
    type: int
    data: bytes

    @property
    def value(self):
        """The data as Python sees it: str, list of str, int, or bytes when it has another shape."""
        if self.type in (REG_SZ, REG_EXPAND_SZ):
            return _from_utf16(self.data).split("\0", 1)[0]
        if self.type == REG_MULTI_SZ:
            items = _from_utf16(self.data).split("\0")
            return items[:items.index("")] if "" in items else items
        if self.type == REG_DWORD and len(self.data) == 4 or self.type == REG_QWORD and len(self.data) == 8:
            return int.from_bytes(self.data, "little")
        return self.data


# ------------------------------------------------------------------------------------------- storage

LAYER_FORMAT = "hv-registry-layer"
LAYER_VERSION = "1"

# A key row's state. PRESENT adds to what lower layers hold; OPAQUE (a key created where none was
# visible, e.g. deleted then created again) hides lower layers' subkeys and values, as an opaque
# directory does in overlayfs; DELETED (a tombstone) hides the key and everything below it.
PRESENT, OPAQUE, DELETED = 1, 2, 3

SCHEMA = f"""
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE keys (
    path   TEXT PRIMARY KEY,     -- folded full path: 'HKLM\\SOFTWARE\\HV'
    parent TEXT NOT NULL,        -- folded parent path: 'HKLM\\SOFTWARE'
    name   TEXT NOT NULL,        -- the last component as written: 'hv'
    state  INTEGER NOT NULL      -- {PRESENT} present, {OPAQUE} opaque, {DELETED} deleted
) WITHOUT ROWID;
CREATE INDEX keys_by_parent ON keys (parent, path);
CREATE TABLE vals (
    key     TEXT NOT NULL,       -- folded key path
    fold    TEXT NOT NULL,       -- folded value name ('' is the default value)
    name    TEXT NOT NULL,       -- the name as written
    type    INTEGER NOT NULL,
    data    BLOB NOT NULL,
    deleted INTEGER NOT NULL,    -- 1: a tombstone hiding lower layers' value
    PRIMARY KEY (key, fold)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('format', '{LAYER_FORMAT}'), ('version', '{LAYER_VERSION}');
"""
_BATCH = 256      # rows per query when walking a listing
_CACHED_KEYS = 1024


def _in_wal_mode(path: Path) -> bool:
    """Whether a database file's header says WAL (byte 18, the file format write version, is 2)."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2


def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
    if read_only:
        # A sealed lower never changes, so SQLite may skip file locking and change checks on every
        # statement (4x faster reads); a lower still in WAL mode needs its WAL read, so no.
        uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro" + (
            "" if _in_wal_mode(path) else "&immutable=1")
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    # A layer file may come from anywhere: no functions with side effects from its schema.
    conn.execute("PRAGMA trusted_schema = OFF")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _check_layer(conn: sqlite3.Connection, path: Path) -> None:
    try:
        tables = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name IN "
                                   "('meta', 'keys', 'vals')").fetchall())
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall()) \
            if tables.get("meta") == "table" else {}
    except sqlite3.Error as e:
        _fail(errno.EIO, f"{path}: not a registry layer ({e})")
    if tables != {"meta": "table", "keys": "table", "vals": "table"} \
            or meta.get("format") != LAYER_FORMAT:
        _fail(errno.EIO, f"{path}: not a registry layer")
    if meta.get("version") != LAYER_VERSION:
        _fail(errno.EIO, f"{path}: registry layer version {meta.get('version')!r}, "
                         f"this hv reads {LAYER_VERSION}")


def create_layer(path: str | os.PathLike) -> Path:
    """Make a new, empty layer database at ``path`` (refuses to overwrite)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        _fail(errno.EEXIST, f"{path}: already exists (refusing to overwrite)")
    try:
        conn = _connect(path, read_only=False)
        try:
            conn.executescript("BEGIN;" + SCHEMA + "COMMIT;")
        finally:
            conn.close()
    except sqlite3.Error as e:
        _fail(errno.EIO, f"{path}: cannot create a registry layer ({e})")
    except OSError as e:
        _fail(e.errno or errno.EIO, f"{path}: cannot create a registry layer ({e.strerror})")
    return path


def seal_layer(path: str | os.PathLike) -> None:
    """Fold the write-ahead log into the database file and leave it in rollback-journal mode, so
    the file alone is the layer: ready to be a read-only lower (on read-only media too)."""
    path = Path(path)
    try:
        conn = _connect(path, read_only=False)
        try:
            _check_layer(conn, path)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
    except sqlite3.Error as e:
        _fail(errno.EIO, f"{path}: cannot seal ({e})")


def _storage(method):
    """A public method: one caller at a time, and SQLite failures become RegistryError(EIO)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            with self._lock:
                return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise RegistryError(errno.EIO, f"registry storage failed: {e}") from None
    return wrapper


@dataclass(frozen=True)
class _Key:
    """A key found in the merged view."""
    parts: tuple[str, ...]     # canonical path: root, then each name as its topmost layer spells it
    fold: str                  # folded full path, the row key in every layer
    layers: tuple[int, ...]    # stack indexes of the layers holding its values and subkeys, top first

    @property
    def path(self) -> str:
        return join_path(self.parts)


def _prefix_folds(parts: Sequence[str]) -> list[str]:
    folds, current = [], parts[0]
    for part in parts[1:]:
        current = current + "\\" + fold(part)
        folds.append(current)
    return folds


def _text_row(*cells):
    if not all(isinstance(c, str) for c in cells):
        _fail(errno.EIO, "corrupt registry layer: a name is not text")


class LayeredRegistry:
    """A registry view over read-only ``lowers`` (TOP FIRST) and a writable ``upper`` (created when
    missing; None: a read-only view). One transaction per call; ``transaction()`` groups calls."""

    def __init__(self, lowers: Sequence[str | os.PathLike], upper: str | os.PathLike | None, *,
                 quota: int = DEFAULT_QUOTA) -> None:
        self.quota = quota
        self.generation = 0          # counts committed writes (cursors of the call set use it)
        # Keys found outside transactions, by path as asked: lowers never change and only this
        # object writes the upper, so the cache holds until the next transaction ends.
        self._found: dict[tuple[str, ...], _Key] = {}
        self._lock = threading.RLock()
        self._depth = 0
        self._stack: list[sqlite3.Connection] = []
        try:
            if upper is not None:
                upper = Path(upper)
                if not upper.exists():
                    create_layer(upper)
                self._stack.append(self._open(upper, read_only=False))
                self._stack[0].execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode: every transaction is atomic; the last ones may be lost on
                # power failure, as Windows' lazy hive flush allows.
                self._stack[0].execute("PRAGMA synchronous = NORMAL")
            for lower in lowers:
                lower = Path(lower)
                if not lower.is_file():
                    _fail(errno.ENOENT, f"{lower}: no such registry layer")
                self._stack.append(self._open(lower, read_only=True))
        except sqlite3.Error as e:
            self.close()
            raise RegistryError(errno.EIO, f"cannot open registry layer: {e}") from None
        except BaseException:
            self.close()
            raise
        self._upper = self._stack[0] if upper is not None else None

    @staticmethod
    def _open(path: Path, read_only: bool) -> sqlite3.Connection:
        conn = _connect(path, read_only)
        try:
            _check_layer(conn, path)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        for conn in self._stack:
            conn.close()
        self._stack = []

    def __enter__(self) -> "LayeredRegistry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def read_only(self) -> bool:
        return self._upper is None

    # ---------------------------------------------------------------- transactions

    @contextlib.contextmanager
    def transaction(self):
        """All registry writes inside happen, or none does. Nested uses join the outer one."""
        with self._lock:
            if self._upper is None:
                _fail(errno.EACCES, "the registry is read-only (no upper layer)")
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            upper = self._upper
            try:
                upper.execute("BEGIN IMMEDIATE")
                size_before = self._used_bytes()
            except sqlite3.Error as e:
                raise RegistryError(errno.EIO, f"registry storage failed: {e}") from None
            self._depth = 1
            try:
                yield
                used = self._used_bytes()
                if used > size_before and used > self.quota:
                    _fail(errno.EDQUOT, f"the registry's upper layer would exceed its quota "
                                        f"({self.quota} bytes)")
                upper.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    upper.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise RegistryError(errno.EIO, f"registry storage failed: {exc}") from None
                raise
            finally:
                self._depth = 0
                self._found.clear()
            self.generation += 1

    def _used_bytes(self) -> int:
        return self._upper.execute("SELECT (page_count - freelist_count) * page_size FROM "
                                   "pragma_page_count, pragma_freelist_count, pragma_page_size"
                                   ).fetchone()[0]

    # ---------------------------------------------------------------- resolution

    def _key_rows(self, conn: sqlite3.Connection, folds: list[str]) -> dict[str, tuple[str, int]]:
        rows = {}
        for start in range(0, len(folds), 500):
            chunk = folds[start:start + 500]
            for path, name, state in conn.execute(
                    f"SELECT path, name, state FROM keys WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk):
                _text_row(path, name)
                rows[path] = (name, state)
        return rows

    def _resolve(self, parts: Sequence[str], stack: Sequence[sqlite3.Connection] | None = None
                 ) -> _Key | None:
        """Find ``parts`` (a checked path) in the merged view of ``stack`` (default: all layers)."""
        cacheable = stack is None and not self._depth
        if cacheable and (key := self._found.get(tuple(parts))) is not None:
            return key
        key = self._deepest(parts, stack)
        if len(key.parts) != len(parts):
            return None
        if cacheable:
            if len(self._found) >= _CACHED_KEYS:
                self._found.clear()
            self._found[tuple(parts)] = key
        return key

    def _deepest(self, parts: Sequence[str], stack: Sequence[sqlite3.Connection] | None = None
                 ) -> _Key:
        """The deepest key of ``parts`` (at least its root) that the merged view holds.

        Top first, the first layer with a row for a key decides whether it exists and how its name
        is spelled; a layer with an opaque or deleted ancestor row hides everything below it."""
        stack = self._stack if stack is None else stack
        folds = _prefix_folds(parts)
        root = _Key((parts[0],), parts[0], tuple(range(len(stack))))   # in every layer
        if not folds:
            return root
        rows = [self._key_rows(conn, folds) for conn in stack]
        # seal[L]: the shallowest depth at which layer L hides what lies below it.
        seal = [min((i for i, f in enumerate(folds) if f in r and r[f][1] in (OPAQUE, DELETED)),
                    default=len(folds)) for r in rows]
        names = [parts[0]]
        for depth, f in enumerate(folds):
            for layer, r in enumerate(rows):
                if f in r:
                    if r[f][1] != DELETED:
                        names.append(r[f][0])
                    break
                if seal[layer] < depth:
                    break
            if len(names) == depth + 1:        # not found at this depth
                if depth == 0:
                    return root
                folds = folds[:depth]
                break
        own, last = folds[-1], len(folds) - 1
        layers = []
        for layer, r in enumerate(rows):
            if own in r:
                if r[own][1] == DELETED:
                    break
                layers.append(layer)
                if r[own][1] == OPAQUE or seal[layer] < last:
                    break
            elif seal[layer] < last:
                break
            else:
                layers.append(layer)
        return _Key(tuple(names), own, tuple(layers))

    def _find(self, path) -> _Key:
        parts = split_path(path)
        key = self._resolve(parts)
        if key is None:
            raise KeyNotFound(join_path(parts))
        return key

    def _value_row(self, key: _Key, name_fold: str, stack=None, skip: int = -1):
        """The topmost visible row of a value: (name, type, data), or None."""
        stack = self._stack if stack is None else stack
        for layer in key.layers:
            if layer == skip:
                continue
            row = stack[layer].execute("SELECT name, type, data, deleted FROM vals "
                                       "WHERE key = ? AND fold = ?", (key.fold, name_fold)).fetchone()
            if row is not None:
                if row[3]:
                    return None
                name, type_, data = row[:3]
                _text_row(name)
                if not isinstance(type_, int) or not 0 <= type_ <= MAX_TYPE \
                        or not isinstance(data, bytes):
                    _fail(errno.EIO, "corrupt registry layer: a value has a bad type or data")
                return name, type_, data
        return None

    def _merged(self, key: _Key, query: str, after: str | None, first: int = _BATCH
                ) -> Iterator[tuple]:
        """Merge one listing across the key's layers, in folded order, topmost row winning.
        ``query`` selects (sort fold, name, hidden, extra...) for (key fold, start, batch), its
        comparison with the start left as {op}: '>=' from the beginning, then '>'. The first
        batch from each layer is ``first`` rows (a caller wanting one item asks for one)."""
        def layer_rows(rank: int, conn: sqlite3.Connection):
            start, op, size = (after, ">", first) if after is not None else ("", ">=", first)
            while True:
                batch = conn.execute(query.format(op=op), (key.fold, start, size)).fetchall()
                for row in batch:
                    _text_row(row[0], row[1])
                    yield (row[0], rank) + tuple(row[1:])
                if len(batch) < size:
                    return
                start, op, size = batch[-1][0], ">", _BATCH
        previous = None
        for row in heapq.merge(*(layer_rows(rank, self._stack[layer])
                                 for rank, layer in enumerate(key.layers))):
            if row[0] != previous:
                previous = row[0]
                if not row[3]:
                    yield row

    _CHILDREN = (f"SELECT substr(path, length(parent) + 2), name, state = {DELETED} FROM keys "
                 "WHERE parent = ?1 AND path {op} ?1 || '\\' || ?2 ORDER BY path LIMIT ?3")
    _VALUES = ("SELECT fold, name, deleted, type, length(CAST(data AS BLOB)) FROM vals "
               "WHERE key = ?1 AND fold {op} ?2 ORDER BY fold LIMIT ?3")

    # ---------------------------------------------------------------- reading

    def _subkeys(self, key: _Key, after: str | None = None, first: int = _BATCH
                 ) -> Iterator[tuple[str, str]]:
        yield from ((row[0], row[2]) for row in self._merged(key, self._CHILDREN, after, first))

    def _values(self, key: _Key, after: str | None = None, first: int = _BATCH
                ) -> Iterator[tuple[str, str, int, int]]:
        for fold_, _, name, _, type_, size in self._merged(key, self._VALUES, after, first):
            if not isinstance(type_, int) or not isinstance(size, int):
                _fail(errno.EIO, "corrupt registry layer: a value has a bad type or data")
            yield fold_, name, type_, size

    @_storage
    def key_exists(self, path) -> bool:
        return self._resolve(split_path(path)) is not None

    @_storage
    def key_path(self, path) -> str:
        """The key's path as stored: 'hklm\\software' -> 'HKLM\\Software'."""
        return self._find(path).path

    @_storage
    def subkeys(self, path) -> list[str]:
        """The names of a key's subkeys, sorted case-insensitively (by folded name)."""
        return [name for _, name in self._subkeys(self._find(path))]

    @_storage
    def subkey_at(self, path, index: int, after: str | None = None) -> tuple[str, str] | None:
        """The ``index``-th subkey (from 0) after the folded name ``after`` (default: from the
        first) as (folded name, name), or None past the end: RegEnumKeyEx's walk."""
        walk = self._subkeys(self._find(path), after, min(index + 1, _BATCH))
        return next(itertools.islice(walk, index, None), None)

    @_storage
    def values(self, path) -> list[tuple[str, Value]]:
        """Every value of a key as (name, Value), sorted case-insensitively."""
        key = self._find(path)
        return [(name, Value(*self._value_row(key, fold_)[1:])) for fold_, name, _, _ in self._values(key)]

    @_storage
    def value_at(self, path, index: int, after: str | None = None) -> tuple[str, str, int, int] | None:
        """The ``index``-th value after the folded name ``after`` as (folded name, name, type,
        stored size), or None past the end: RegEnumValue's walk."""
        walk = self._values(self._find(path), after, min(index + 1, _BATCH))
        return next(itertools.islice(walk, index, None), None)

    @_storage
    def query_value(self, path, name: str) -> Value:
        """RegQueryValueEx."""
        check_value_name(name)
        key = self._find(path)
        row = self._value_row(key, fold(name))
        if row is None:
            _fail(errno.ENOENT, f"{key.path}: no value {name!r}")
        return Value(row[1], row[2])

    @_storage
    def value_exists(self, path, name: str) -> bool:
        check_value_name(name)
        return self._value_row(self._find(path), fold(name)) is not None

    @_storage
    def walk(self, paths: Sequence = ROOTS) -> list[str]:
        """The paths of every key at or below ``paths``, depth first, subkeys in sorted order."""
        return [join_path(parts) for parts in self._walk(paths)]

    def _walk(self, paths: Sequence) -> Iterator[tuple[str, ...]]:
        stack = [self._find(p).parts for p in reversed(paths)]
        while stack:
            parts = stack.pop()
            yield parts
            key = self._resolve(parts)
            stack.extend(parts + (name,) for _, name in reversed(list(self._subkeys(key))))

    # ---------------------------------------------------------------- writing

    @_storage
    def create_key(self, path) -> tuple[str, bool]:
        """RegCreateKeyEx: make the key and any missing parents. Returns (stored path, created)."""
        parts = split_path(path)
        with self.transaction():
            found = self._deepest(parts)
            depth = len(found.parts)           # parts[:depth] exist
            if depth == len(parts):
                return found.path, False
            folds = [parts[0]] + _prefix_folds(parts)
            # A key made where none was visible is opaque: older rows below it (a deleted key's
            # values and subkeys in lower layers) stay hidden.
            self._upper.executemany(
                "INSERT OR REPLACE INTO keys (path, parent, name, state) VALUES (?, ?, ?, ?)",
                [(folds[i], folds[i - 1], parts[i], OPAQUE) for i in range(depth, len(parts))])
            return self._resolve(parts).path, True

    @_storage
    def set_value(self, path, name: str, type_: int, data) -> None:
        """RegSetValueEx. ``data``: bytes as stored, or a Python value (see encode_data)."""
        check_value_name(name)
        if not isinstance(type_, int) or not 0 <= type_ <= MAX_TYPE:
            _fail(errno.EINVAL, f"value type {type_!r} is not a 32-bit number")
        data = encode_data(type_, data)
        if len(data) > MAX_DATA:
            _fail(errno.E2BIG, f"value data of {len(data)} bytes is over the {MAX_DATA}-byte limit")
        with self.transaction():
            key = self._find(path)
            existing = self._value_row(key, fold(name))
            self._upper.execute("INSERT OR REPLACE INTO vals (key, fold, name, type, data, deleted) "
                                "VALUES (?, ?, ?, ?, ?, 0)",
                                (key.fold, fold(name), existing[0] if existing else name, type_, data))

    @_storage
    def delete_value(self, path, name: str) -> None:
        """RegDeleteValue. A value still visible from a lower layer gets a tombstone."""
        check_value_name(name)
        with self.transaction():
            key = self._find(path)
            found = self._value_row(key, fold(name))
            if found is None:
                _fail(errno.ENOENT, f"{key.path}: no value {name!r}")
            self._upper.execute("DELETE FROM vals WHERE key = ? AND fold = ?", (key.fold, fold(name)))
            if self._value_row(key, fold(name)) is not None:
                self._upper.execute("INSERT INTO vals (key, fold, name, type, data, deleted) "
                                    "VALUES (?, ?, ?, 0, x'', 1)", (key.fold, fold(name), found[0]))

    @_storage
    def delete_key(self, path, *, tree: bool = False) -> None:
        """RegDeleteKey (refused while the key has subkeys), or with ``tree`` RegDeleteTree on the
        key's parent: the key and everything below it. Root keys cannot be deleted."""
        parts = split_path(path)
        if len(parts) == 1:
            _fail(errno.EACCES, f"{parts[0]}: a root key cannot be deleted")
        with self.transaction():
            key = self._find(parts)
            if not tree and next(self._merged(key, self._CHILDREN, None), None) is not None:
                _fail(errno.ENOTEMPTY, f"{key.path}: has subkeys (delete the tree instead)")
            self._remove(key)

    @_storage
    def clear_key(self, path) -> None:
        """RegDeleteTree with no subkey: delete every subkey and value, keep the key."""
        with self.transaction():
            key = self._find(path)
            for _, name in list(self._subkeys(key)):
                self._remove(self._resolve(key.parts + (name,)))
            for _, name, _, _ in list(self._values(key)):
                self.delete_value(key.parts, name)

    def _remove(self, key: _Key) -> None:
        """Drop the upper layer's rows for a key and all below it; if lower layers still show the
        key, hide it with a tombstone."""
        below = (key.fold, key.fold + "\\", key.fold + "]")     # ']' sorts right after '\'
        self._upper.execute("DELETE FROM keys WHERE path = ? OR (path > ? AND path < ?)", below)
        self._upper.execute("DELETE FROM vals WHERE key = ? OR (key > ? AND key < ?)", below)
        if self._resolve(key.parts) is not None:
            self._upper.execute("INSERT INTO keys (path, parent, name, state) VALUES (?, ?, ?, ?)",
                                (key.fold, key.fold.rsplit("\\", 1)[0], key.parts[-1], DELETED))

    # ---------------------------------------------------------------- layers

    @_storage
    def diff(self) -> list[tuple[str, str]]:
        """What the upper layer changes: ("A" added, "C" changed, "D" deleted, path), where a value
        is 'KEY\\:NAME' (the default value 'KEY\\:'). Sorted case-insensitively."""
        if self._upper is None:
            return []
        lowers = self._stack[1:]
        out = []
        for path, name, state in self._upper.execute("SELECT path, name, state FROM keys"):
            if state not in (OPAQUE, DELETED):
                continue
            parts = path.split("\\")
            parent = self._resolve(parts[:-1])
            shown = join_path((parent.parts if parent else tuple(parts[:-1])) + (name,))
            below = self._resolve(parts, lowers)
            out.append((path, "", "D" if state == DELETED else "C" if below else "A", shown))
        for key_fold, fold_, name, deleted in self._upper.execute(
                "SELECT key, fold, name, deleted FROM vals"):
            key = self._resolve(key_fold.split("\\"))
            below = self._resolve(key_fold.split("\\"), lowers)
            in_lower = below is not None and self._value_row(below, fold_, lowers) is not None
            shown = f"{key.path if key else key_fold}\\:{name}"
            out.append((key_fold, "\0" + fold_, "D" if deleted else "C" if in_lower else "A", shown))
        return [(kind, shown) for _, _, kind, shown in sorted(out)]

    @_storage
    def flatten(self, dest: str | os.PathLike) -> Path:
        """Write the merged view as one new layer database at ``dest`` (atomically: a temporary
        file renamed into place), sealed for use as a read-only lower or a full VM's hive."""
        dest = Path(dest)
        if dest.exists() or dest.is_symlink():
            _fail(errno.EEXIST, f"{dest}: already exists (refusing to overwrite)")
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        create_layer(tmp)
        try:
            out = _connect(tmp, read_only=False)
            try:
                out.execute("BEGIN")
                for parts in self._walk(ROOTS):
                    key = self._resolve(parts)
                    if len(parts) > 1:
                        out.execute("INSERT INTO keys (path, parent, name, state) VALUES (?, ?, ?, ?)",
                                    (key.fold, key.fold.rsplit("\\", 1)[0], parts[-1], PRESENT))
                    for fold_, name, _, _ in list(self._values(key)):
                        _, type_, data = self._value_row(key, fold_)
                        out.execute("INSERT INTO vals (key, fold, name, type, data, deleted) "
                                    "VALUES (?, ?, ?, ?, ?, 0)", (key.fold, fold_, name, type_, data))
                out.execute("COMMIT")
            finally:
                out.close()
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return dest


# ---------------------------------------------------------------------------------------- .reg files

REG_HEADER = "Windows Registry Editor Version 5.00"
_LINE_WIDTH = 80


class RegFileError(RegistryError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(errno.EINVAL, f"line {line}: {message}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _plain_string(data: bytes) -> str | None:
    """The text of REG_SZ data that a quoted string reproduces exactly, else None."""
    if len(data) < 2 or len(data) % 2:
        return None
    try:
        text = data.decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    body = text[:-1]
    if text[-1] != "\0" or any(c < " " for c in body):
        return None
    return body


def _format_value(name: str, value: Value) -> str:
    head = ("@" if name == "" else _quote(name)) + "="
    if value.type == REG_SZ and (text := _plain_string(value.data)) is not None:
        return head + _quote(text)
    if value.type == REG_DWORD and len(value.data) == 4:
        return head + f"dword:{int.from_bytes(value.data, 'little'):08x}"
    line = head + ("hex:" if value.type == REG_BINARY else f"hex({value.type:x}):")
    lines = []
    for i, byte in enumerate(value.data):
        piece = f"{byte:02x}" + ("," if i + 1 < len(value.data) else "")
        if len(line) + len(piece) + 1 > _LINE_WIDTH and line.strip():
            lines.append(line + "\\")
            line = "  "
        line += piece
    return "\n".join(lines + [line])


def export_reg(registry: LayeredRegistry, key_path: str | None = None) -> str:
    """The key (default: both roots) and everything below it, as a .reg file's text ("\\n" line
    ends; ``write_reg_file`` writes the CRLF UTF-16 form regedit writes)."""
    out = [REG_HEADER, ""]
    for path in registry.walk([key_path] if key_path else ROOTS):
        root, _, rest = path.partition("\\")
        out.append("[" + LONG_ROOT[root] + ("\\" + rest if rest else "") + "]")
        out.extend(_format_value(name, value) for name, value in registry.values(path))
        out.append("")
    return "\n".join(out) + "\n"


def write_reg_file(path: str | os.PathLike, text: str) -> None:
    """Write .reg text as regedit does: UTF-16LE with a byte-order mark, CRLF line ends."""
    Path(path).write_bytes(b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le", "surrogatepass"))


def decode_reg_file(data: bytes) -> str:
    """A .reg file's bytes -> text: UTF-16LE with BOM (regedit), UTF-8 with or without BOM."""
    try:
        if data.startswith(b"\xff\xfe"):
            return data[2:].decode("utf-16-le", "surrogatepass")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        _fail(errno.EINVAL, f"not UTF-16LE (with a byte-order mark) or UTF-8 text: {e.reason} "
                            f"at byte {e.start}")


def _parse_quoted(text: str, line: int) -> tuple[str, str]:
    """'"a\\"b" rest' -> ('a"b', ' rest'). Escapes: \\\\ and \\" only, as regedit writes."""
    out, i = [], 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), text[i + 1:]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in '\\"':
                raise RegFileError(line, f"unknown escape {text[i:i + 2]!r} in a quoted string")
            c, i = text[i + 1], i + 1
        out.append(c)
        i += 1
    raise RegFileError(line, "unterminated quoted string")


_HEX_TYPE = re.compile(r"hex(?:\(([0-9a-fA-F]{1,8})\))?:", re.ASCII)
_HEX_BYTE = re.compile(r"[0-9a-fA-F]{2}", re.ASCII)


def _parse_data(spec: str, line: int) -> tuple[int, bytes] | None:
    """The text after '=': a value's (type, stored bytes), or None for '-' (delete)."""
    if spec == "-":
        return None
    if spec.startswith('"'):
        text, rest = _parse_quoted(spec, line)
        if rest.strip():
            raise RegFileError(line, f"unexpected {rest.strip()!r} after the string")
        if "\0" in text:
            raise RegFileError(line, "a quoted string cannot hold NUL")
        return REG_SZ, _utf16(text + "\0")
    if spec.lower().startswith("dword:"):
        digits = spec[6:].strip()
        if not re.fullmatch(r"[0-9a-fA-F]{1,8}", digits, re.ASCII):
            raise RegFileError(line, f"dword: wants 1 to 8 hex digits, got {digits!r}")
        return REG_DWORD, int(digits, 16).to_bytes(4, "little")
    m = _HEX_TYPE.match(spec.lower())
    if m is None:
        raise RegFileError(line, f"unknown value data {spec[:40]!r} (want \"...\", dword:, hex: or -)")
    type_ = int(m.group(1), 16) if m.group(1) else REG_BINARY
    body = spec[m.end():].strip()
    tokens = [t.strip() for t in body.split(",")] if body else []
    if len(tokens) > MAX_DATA:
        raise RegFileError(line, f"value data over the {MAX_DATA}-byte limit")
    if not all(_HEX_BYTE.fullmatch(t) for t in tokens):
        raise RegFileError(line, "hex data wants comma-separated two-digit hex bytes")
    return type_, bytes(int(t, 16) for t in tokens)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) with hex continuations ('\\' at the end) joined."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].strip()
        i += 1
        while line.endswith("\\") and not line.startswith(("[", ";")) and i < len(lines):
            line = line[:-1] + lines[i].strip()
            i += 1
        yield number, line


def import_reg(registry: LayeredRegistry, text: str) -> None:
    """Apply a "Windows Registry Editor Version 5.00" file: [KEY] creates, [-KEY] deletes the tree,
    "name"=... / @=... sets, "name"=- deletes. All of it in one transaction, or nothing."""
    lines = _logical_lines(text.lstrip("\ufeff"))
    for number, line in lines:
        if line:
            if line != REG_HEADER:
                raise RegFileError(number, f"not a .reg file: the first line must be {REG_HEADER!r}")
            break
    else:
        raise RegFileError(1, f"not a .reg file: the first line must be {REG_HEADER!r}")
    with registry.transaction():
        key = None          # the current section's key; None also in a [-KEY] section
        in_section = False
        for number, line in lines:
            if not line or line.startswith(";"):
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise RegFileError(number, "a section line wants a closing ']'")
                inner = line[1:-1]
                in_section = True
                try:
                    if inner.startswith("-"):
                        key = None
                        if registry.key_exists(inner[1:]):
                            registry.delete_key(inner[1:], tree=True)
                    else:
                        key = registry.create_key(inner)[0]
                except RegistryError as e:
                    raise RegFileError(number, str(e)) from None
                continue
            if not in_section:
                raise RegFileError(number, "a value line before any [KEY] section")
            if line.startswith("@"):
                name, rest = "", line[1:]
            elif line.startswith('"'):
                name, rest = _parse_quoted(line, number)
            else:
                raise RegFileError(number, f"cannot read {line[:40]!r} (want [KEY], \"name\"=... or @=...)")
            rest = rest.lstrip()
            if not rest.startswith("="):
                raise RegFileError(number, "a value line wants '=' after the name")
            parsed = _parse_data(rest[1:].strip(), number)
            if key is None:
                continue             # regedit ignores the values of a deleted section
            try:
                if parsed is None:
                    if registry.value_exists(key, name):      # regedit ignores a missing one
                        registry.delete_value(key, name)
                else:
                    registry.set_value(key, name, *parsed)
            except RegistryError as e:
                raise RegFileError(number, str(e)) from None


# ------------------------------------------------------------------------------------------ command

def _parser() -> OneLineParser:
    parser = OneLineParser(prog="hv registry", description="Export or import container registry keys "
                                                     "as .reg files (Windows Registry Editor 5.00).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="export|import")
    export = sub.add_parser("export", help="write a key and everything below it as .reg text")
    export.add_argument("key", nargs="?", help="e.g. HKLM\\Software\\hv (default: HKLM and HKCU)")
    source = export.add_mutually_exclusive_group()
    source.add_argument("--image", metavar="NAME", help="an image's merged registry")
    source.add_argument("--db", metavar="FILE", type=Path, help="one registry layer database")
    export.add_argument("-o", "--output", metavar="FILE", type=Path,
                        help="write the file as regedit does (UTF-16LE, CRLF); default: stdout")
    imp = sub.add_parser("import", help="apply a .reg file, all of it or nothing")
    imp.add_argument("file", type=Path)
    imp.add_argument("--db", metavar="FILE", type=Path,
                     help="the layer database to write (created when missing)")
    return parser


def main_registry(argv: Sequence[str], *, registry: LayeredRegistry | None = None,
                  open_image: Callable[[str], LayeredRegistry] | None = None) -> int:
    """``hv registry export|import``. A caller that owns a registry (a container's, an image's)
    passes it as ``registry``; ``open_image(name)`` serves ``--image NAME``. Errors: one line on
    stderr, exit 2."""
    opened = None
    try:
        try:
            args = _parser().parse_args(list(argv))
        except SystemExit as e:                  # --help
            return e.code if isinstance(e.code, int) else 0
        if args.command == "export":
            if args.image is not None:
                if open_image is None:
                    raise UsageError("--image needs the image store (use hv registry through the "
                                      "container commands, or --db FILE)")
                registry = opened = open_image(args.image)
            elif args.db is not None:
                registry = opened = LayeredRegistry([args.db], None)
            elif registry is None:
                raise UsageError("export wants --db FILE or --image NAME")
            text = export_reg(registry, args.key)
            if args.output is not None:
                write_reg_file(args.output, text)
            else:
                sys.stdout.write(text)
        else:
            if args.db is not None:
                registry = opened = LayeredRegistry([], args.db)
            elif registry is None:
                raise UsageError("import wants --db FILE")
            try:
                data = args.file.read_bytes()
            except OSError as e:
                raise RegistryError(e.errno or errno.EIO, f"{args.file}: {e.strerror}") from None
            try:
                import_reg(registry, decode_reg_file(data))
            except RegistryError as e:
                raise RegistryError(e.errno, f"{args.file}: {e}") from None
        return 0
    except (UsageError, RegistryError) as e:
        print(f"hv registry: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"hv registry: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 2
    finally:
        if opened is not None:
            opened.close()
