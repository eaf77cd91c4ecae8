"""The registry's guest call set: private Linux i386 system calls, and the same calls as messages.

A process container's program calls ``int $0x80`` with EAX = a number from 0x1000 up and its
arguments in EBX, ECX, EDX, ESI, EDI, EBP; the system-call layer hands those numbers to
``RegistryCalls.call(nr, args, mem)`` and puts the result in EAX. A utility VM's kernel forwards the
same operations as byte messages (``encode_request`` / ``RegistryCalls.handle_request``). Both reach
one core, so the two flavors differ only in the channel.

The calls follow the Windows ANSI registry API with UTF-8 as its code page: a guest passes and gets
UTF-8 strings; string data (REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ) is stored as UTF-16LE, as in a hive,
and converted at this boundary (invalid UTF-8 becomes U+FFFD, as MultiByteToWideChar does).

Results: >= 0 is success (0, or a handle); < 0 is minus a Linux errno (the table in
docs/registry.md gives the Windows status each stands for). Every pointer, length, handle, index and
flag is hostile: guest memory is touched only through the accessor ``mem`` (``read(addr, n)``,
``write(addr, data)``, raising ``GuestMemoryFault`` or one of ``fault_types``), which becomes
-EFAULT; inputs are all read before the registry changes, and no length a guest gives is ever
allocated: reads are bounded by the limits below.
"""
from __future__ import annotations

import enum
import errno
import struct
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from hv.container.registry import (
    MAX_DATA, STRING_TYPES, KeyNotFound, LayeredRegistry, RegistryError, fold, join_path,
    split_path, split_subkey)
from hv.memory import GuestMemoryError


class Op(enum.IntEnum):
    """Call numbers (EAX), also the message operation codes. 0x1009..0x10FF are reserved."""
    OPEN_KEY = 0x1000       # EBX parent handle, ECX path -> handle
    CREATE_KEY = 0x1001     # EBX parent handle, ECX path, EDX &disposition (or 0) -> handle
    CLOSE_KEY = 0x1002      # EBX handle
    SET_VALUE = 0x1003      # EBX handle, ECX name, EDX type, ESI data, EDI size
    QUERY_VALUE = 0x1004    # EBX handle, ECX name, EDX &type, ESI data, EDI &size (in/out)
    DELETE_VALUE = 0x1005   # EBX handle, ECX name
    DELETE_KEY = 0x1006     # EBX handle, ECX path, EDX flags
    ENUM_KEY = 0x1007       # EBX handle, ECX index, EDX name, ESI &length (in/out)
    ENUM_VALUE = 0x1008     # EBX handle, ECX index, EDX name, ESI &length, EDI &type, EBP &size


FIRST_CALL, LAST_CALL = 0x1000, 0x10FF      # the range the system-call layer routes here

HKEY_CURRENT_USER = 0x8000_0001             # predefined handles, as in winreg.h
HKEY_LOCAL_MACHINE = 0x8000_0002
ROOT_HANDLES = {HKEY_CURRENT_USER: "HKCU", HKEY_LOCAL_MACHINE: "HKLM"}

CREATED_NEW_KEY = 1                         # REG_CREATED_NEW_KEY
OPENED_EXISTING_KEY = 2                     # REG_OPENED_EXISTING_KEY
DELETE_TREE = 0x1                           # DELETE_KEY flag: RegDeleteTree instead of RegDeleteKey

MAX_HANDLES = 1024                          # open keys per container
MAX_STRING = 65536                          # bytes of a guest string, its NUL included
MAX_REQUEST = MAX_DATA + 2 * MAX_STRING     # bytes of one message
PAGE = 4096


class GuestMemoryFault(Exception):
    """An accessor's answer to an address the guest cannot access (the call returns -EFAULT)."""


class GuestMemory(Protocol):
    def read(self, addr: int, n: int) -> bytes: ...
    def write(self, addr: int, data: bytes) -> None: ...


def to_stored(type_: int, data: bytes) -> bytes:
    """Guest data -> stored data: strings UTF-8 -> UTF-16LE."""
    if type_ in STRING_TYPES:
        return data.decode("utf-8", "replace").encode("utf-16-le")
    return data


def to_guest(type_: int, data: bytes) -> bytes:
    """Stored data -> guest data: strings UTF-16LE -> UTF-8 (a broken unit becomes U+FFFD)."""
    if type_ in STRING_TYPES:
        return data.decode("utf-16-le", "replace").encode("utf-8")
    return data


@dataclass
class _Handle:
    parts: tuple[str, ...]          # the key's path as stored
    fold: str                       # its folded path: what a delete compares with
    stale: bool = False             # the key was deleted through this call set
    # Enumeration cursors (generation, index, folded name, name): the next index continues after
    # the last name instead of walking from the first, while nothing was written in between.
    key_cursor: tuple | None = field(default=None, repr=False)
    value_cursor: tuple | None = field(default=None, repr=False)


def _fold_path(parts: Sequence[str]) -> str:
    return "\\".join([parts[0]] + [fold(p) for p in parts[1:]])


def _fail(code: int, message: str):
    raise RegistryError(code, message)


class RegistryCalls:
    """One container's handle table over its registry, served as system calls and as messages."""

    def __init__(self, registry: LayeredRegistry, *, max_handles: int = MAX_HANDLES,
                 fault_types: Sequence[type[BaseException]] = ()) -> None:
        self.registry = registry
        self.max_handles = max_handles
        self._faults = (GuestMemoryFault, GuestMemoryError, *fault_types)
        self._handles: dict[int, _Handle] = {}
        self._roots = {h: _Handle((root,), root) for h, root in ROOT_HANDLES.items()}

    # ------------------------------------------------------------------ the core (Python values)

    def open_handles(self) -> int:
        return len(self._handles)

    def _key(self, handle: int, *, exists: bool = True) -> _Handle:
        """The open key behind ``handle``; with ``exists``, checked to be there still."""
        h = self._roots.get(handle) or self._handles.get(handle)
        if h is None:
            _fail(errno.EBADF, f"no open key with handle {handle:#x}")
        if h.stale or exists and not self.registry.key_exists(h.parts):
            self._stale(h)
        return h

    def _stale(self, h: _Handle):
        h.stale = True
        _fail(errno.ESTALE, f"{join_path(h.parts)}: the key was deleted")

    def _on_key(self, handle: int, operation, *args):
        """``operation(key path, *args)`` on the handle's key; the key being gone is ESTALE.
        (One lookup instead of two: the operation's own lookup does the checking.)"""
        h = self._key(handle, exists=False)
        try:
            return operation(h.parts, *args)
        except KeyNotFound:
            self._stale(h)

    def _new_handle(self, parts: tuple[str, ...]) -> int:
        handle = next(n for n in range(1, self.max_handles + 2) if n not in self._handles)
        self._handles[handle] = _Handle(parts, _fold_path(parts))
        return handle

    def _room(self) -> None:
        if len(self._handles) >= self.max_handles:
            _fail(errno.EMFILE, f"{self.max_handles} keys are open already")

    def _below(self, handle: int, path: str) -> tuple[str, ...]:
        return split_path(self._key(handle).parts + split_subkey(path))

    def open_key(self, parent: int, path: str) -> int:
        """RegOpenKeyEx: a new handle to an existing key ('' opens the parent's key again)."""
        parts = self._below(parent, path)
        self._room()
        return self._new_handle(tuple(self.registry.key_path(parts).split("\\")))

    def create_key(self, parent: int, path: str) -> tuple[int, int]:
        """RegCreateKeyEx: (handle, CREATED_NEW_KEY or OPENED_EXISTING_KEY)."""
        parts = self._below(parent, path)
        self._room()
        stored, created = self.registry.create_key(parts)
        return (self._new_handle(tuple(stored.split("\\"))),
                CREATED_NEW_KEY if created else OPENED_EXISTING_KEY)

    def close_key(self, handle: int) -> int:
        """RegCloseKey; closing a predefined root handle does nothing, as in Windows."""
        if handle in self._roots:
            return 0
        if self._handles.pop(handle, None) is None:
            _fail(errno.EBADF, f"no open key with handle {handle:#x}")
        return 0

    def set_value(self, handle: int, name: str, type_: int, data: bytes) -> int:
        if len(data) > MAX_DATA:
            _fail(errno.E2BIG, f"value data of {len(data)} bytes is over the {MAX_DATA}-byte limit")
        self._on_key(handle, self.registry.set_value, name, type_, to_stored(type_, data))
        return 0

    def query_value(self, handle: int, name: str) -> tuple[int, bytes]:
        value = self._on_key(handle, self.registry.query_value, name)
        return value.type, to_guest(value.type, value.data)

    def delete_value(self, handle: int, name: str) -> int:
        self._on_key(handle, self.registry.delete_value, name)
        return 0

    def delete_key(self, handle: int, path: str, flags: int) -> int:
        """RegDeleteKey(handle, path): the key, which must have no subkeys ('' is the handle's own
        key). With DELETE_TREE, RegDeleteTree(handle, path): the key and all below it; with ''
        everything below the handle's key and its values, the key itself staying."""
        if flags & ~DELETE_TREE:
            _fail(errno.EINVAL, f"unknown delete flags {flags:#x}")
        parts = self._below(handle, path)
        clear = path == "" and bool(flags & DELETE_TREE)
        if clear:
            self.registry.clear_key(parts)
        else:
            self.registry.delete_key(parts, tree=bool(flags & DELETE_TREE))
        # Handles to deleted keys answer -ESTALE from now on (ERROR_KEY_DELETED), even if a key of
        # the same name is made again.
        target = _fold_path(parts)
        for h in self._handles.values():
            if h.fold.startswith(target + "\\") or (h.fold == target and not clear):
                h.stale = True
        return 0

    def enum_key(self, handle: int, index: int) -> str:
        """RegEnumKeyEx: the index-th subkey's name (sorted case-insensitively)."""
        h = self._key(handle, exists=False)
        h.key_cursor = self._on_key(handle, self._step, h.key_cursor, index, self.registry.subkey_at)
        return h.key_cursor[3]

    def enum_value(self, handle: int, index: int) -> tuple[str, int, int]:
        """RegEnumValue: the index-th value's (name, type, size as the guest would receive it)."""
        h = self._key(handle, exists=False)
        h.value_cursor = self._on_key(handle, self._step, h.value_cursor, index, self.registry.value_at)
        name, type_, size = h.value_cursor[3:6]
        if type_ in STRING_TYPES:
            size = len(self.query_value(handle, name)[1])
        return name, type_, size

    def _step(self, parts, cursor, index: int, at) -> tuple:
        generation = self.registry.generation
        if cursor is not None and cursor[0] == generation and cursor[1] == index:
            if not self.registry.key_exists(parts):
                raise KeyNotFound(join_path(parts))
            return cursor
        if cursor is not None and cursor[0] == generation and cursor[1] + 1 == index:
            found = at(parts, 0, after=cursor[2])
        else:
            found = at(parts, index)
        if found is None:
            _fail(errno.ENODATA, f"no item {index}")
        return (generation, index, found[0]) + tuple(found[1:])

    # ------------------------------------------------------------------ system calls

    def call(self, nr: int, args: Sequence[int], mem: GuestMemory) -> int:
        """Serve system call ``nr`` with the guest's EBX..EBP; the result for EAX (negative: -errno;
        the system-call layer writes it as 32 bits)."""
        handler = _SYSCALLS.get(nr)
        if handler is None:
            return -errno.ENOSYS
        regs = [int(a) & 0xFFFF_FFFF for a in args[:6]]
        regs += [0] * (6 - len(regs))
        try:
            return handler(self, _Guest(mem, self._faults), *regs)
        except RegistryError as e:
            return -e.errno
        except self._faults:
            return -errno.EFAULT

    def _sys_open_key(self, g, parent, path, *_):
        return self.open_key(parent, g.cstr(path))

    def _sys_create_key(self, g, parent, path, disposition, *_):
        path = g.cstr(path)
        if disposition:
            g.probe(disposition, 4)
        handle, how = self.create_key(parent, path)
        try:
            if disposition:
                g.write_u32(disposition, how)
        except self._faults:
            self.close_key(handle)         # no handle the guest never learnt of
            raise
        return handle

    def _sys_close_key(self, g, handle, *_):
        return self.close_key(handle)

    def _sys_set_value(self, g, handle, name, type_, data, size, *_):
        name = g.cstr(name)
        if size > MAX_DATA:
            _fail(errno.E2BIG, f"value data of {size} bytes is over the {MAX_DATA}-byte limit")
        return self.set_value(handle, name, type_, g.read(data, size))

    def _sys_query_value(self, g, handle, name, type_ptr, data_ptr, size_ptr, *_):
        name = g.cstr(name)
        if data_ptr and not size_ptr:
            _fail(errno.EINVAL, "a data buffer needs its size")
        capacity = g.read_u32(size_ptr) if size_ptr else 0
        type_, data = self.query_value(handle, name)
        if type_ptr:
            g.write_u32(type_ptr, type_)
        if size_ptr:
            g.write_u32(size_ptr, len(data))
        if data_ptr:
            if len(data) > capacity:
                return -errno.EOVERFLOW
            g.write(data_ptr, data)
        return 0

    def _sys_delete_value(self, g, handle, name, *_):
        return self.delete_value(handle, g.cstr(name))

    def _sys_delete_key(self, g, handle, path, flags, *_):
        return self.delete_key(handle, g.cstr(path), flags)

    def _sys_enum_key(self, g, handle, index, name_ptr, length_ptr, *_):
        if not name_ptr or not length_ptr:
            _fail(errno.EINVAL, "ENUM_KEY needs a name buffer and its length")
        capacity = g.read_u32(length_ptr)
        return g.put_name(name_ptr, length_ptr, capacity, self.enum_key(handle, index))

    def _sys_enum_value(self, g, handle, index, name_ptr, length_ptr, type_ptr, size_ptr):
        if not name_ptr or not length_ptr:
            _fail(errno.EINVAL, "ENUM_VALUE needs a name buffer and its length")
        capacity = g.read_u32(length_ptr)
        name, type_, size = self.enum_value(handle, index)
        if type_ptr:
            g.write_u32(type_ptr, type_)
        if size_ptr:
            g.write_u32(size_ptr, size)
        return g.put_name(name_ptr, length_ptr, capacity, name)

    # ------------------------------------------------------------------ messages

    def handle_request(self, request: bytes) -> bytes:
        """One request message -> one response message; a malformed request gets an error
        response (-EINVAL, -ENOSYS for an unknown operation, -E2BIG when oversized)."""
        op = tag = 0
        fields: tuple = ()
        try:
            request = bytes(request)
            if len(request) > MAX_REQUEST:
                _fail(errno.E2BIG, "request too large")
            if len(request) < _HEADER.size:
                raise _Malformed("short header")
            op, tag = _HEADER.unpack_from(request)
            if op not in REQUEST_FIELDS:
                result = -errno.ENOSYS
            else:
                args = _unpack(REQUEST_FIELDS[op], request[_HEADER.size:])
                result, fields = _WIRE[op](self, *args)
        except _Malformed:
            result = -errno.EINVAL
        except RegistryError as e:
            result = -e.errno
        return _RESPONSE_HEADER.pack(op, tag, result) + (
            _pack(RESPONSE_FIELDS[op], fields) if fields else b"")

    def _wire_open_key(self, parent, path):
        return self.open_key(parent, path), ()

    def _wire_create_key(self, parent, path):
        handle, how = self.create_key(parent, path)
        return handle, (how,)

    def _wire_close_key(self, handle):
        return self.close_key(handle), ()

    def _wire_set_value(self, handle, name, type_, data):
        return self.set_value(handle, name, type_, data), ()

    def _wire_delete_value(self, handle, name):
        return self.delete_value(handle, name), ()

    def _wire_delete_key(self, handle, path, flags):
        return self.delete_key(handle, path, flags), ()

    def _wire_enum_key(self, handle, index):
        return 0, (self.enum_key(handle, index),)

    def _wire_enum_value(self, handle, index):
        return 0, self.enum_value(handle, index)

    def _wire_query_value(self, handle, name, capacity):
        type_, data = self.query_value(handle, name)
        if len(data) > capacity:
            return -errno.EOVERFLOW, (type_, len(data), b"")
        return 0, (type_, len(data), data)


class _Guest:
    """Bounded, checked access to guest memory for one call."""

    def __init__(self, mem: GuestMemory, faults: tuple) -> None:
        self.mem, self.faults = mem, faults

    def read(self, addr: int, n: int) -> bytes:
        if n == 0:
            return b""
        if addr + n > 1 << 32:
            raise GuestMemoryFault(f"{addr:#x}+{n:#x} wraps the address space")
        data = self.mem.read(addr, n)
        if len(data) != n:
            raise GuestMemoryFault(f"short read at {addr:#x}")
        return bytes(data)

    def write(self, addr: int, data: bytes) -> None:
        if data:
            if addr + len(data) > 1 << 32:
                raise GuestMemoryFault(f"{addr:#x}+{len(data):#x} wraps the address space")
            self.mem.write(addr, data)

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, value.to_bytes(4, "little"))

    def probe(self, addr: int, n: int) -> None:
        """Fail now, before anything changes, if ``addr`` cannot be written later."""
        self.write(addr, self.read(addr, n))

    def cstr(self, addr: int) -> str:
        """The NUL-terminated UTF-8 string at ``addr`` (0: ''), read a page at a time so a string
        ending just before an unmapped page is fine. At most MAX_STRING bytes."""
        if addr == 0:
            return ""
        out = bytearray()
        while len(out) < MAX_STRING:
            n = min(MAX_STRING - len(out), PAGE - addr % PAGE)
            chunk = self.read(addr, n)
            end = chunk.find(b"\0")
            if end >= 0:
                out += chunk[:end]
                try:
                    return out.decode("utf-8")
                except UnicodeDecodeError:
                    _fail(errno.EINVAL, "a name or path is not UTF-8")
            out += chunk
            addr += n
        _fail(errno.ENAMETOOLONG, f"no NUL within {MAX_STRING} bytes")

    def put_name(self, name_ptr: int, length_ptr: int, capacity: int, name: str) -> int:
        """RegEnumKeyEx's name out: *length = the name's bytes without its NUL; -EOVERFLOW when
        the buffer (capacity bytes, NUL included) is too small."""
        data = name.encode("utf-8", "surrogatepass")
        self.write_u32(length_ptr, len(data))
        if len(data) + 1 > capacity:
            return -errno.EOVERFLOW
        self.write(name_ptr, data + b"\0")
        return 0


_SYSCALLS = {op: getattr(RegistryCalls, f"_sys_{op.name.lower()}") for op in Op}


# ------------------------------------------------------------------------------------ message format
#
# request:  u32 op | u32 tag | fields of REQUEST_FIELDS[op]
# response: u32 op | u32 tag | i32 result | fields of RESPONSE_FIELDS[op] (on success; a QUERY_VALUE
#           answered -EOVERFLOW carries them too, with empty data; other errors carry none)
# u32 = 4 bytes little-endian; str = u32 length + that many UTF-8 bytes (no NUL, < MAX_STRING);
# blob = u32 length + bytes (<= MAX_DATA, or the larger UTF-8 form of stored strings in a response).

_HEADER = struct.Struct("<II")
_RESPONSE_HEADER = struct.Struct("<IIi")

REQUEST_FIELDS = {
    Op.OPEN_KEY: ("u32", "str"),                      # parent, path
    Op.CREATE_KEY: ("u32", "str"),                    # parent, path
    Op.CLOSE_KEY: ("u32",),                           # handle
    Op.SET_VALUE: ("u32", "str", "u32", "blob"),      # handle, name, type, data
    Op.QUERY_VALUE: ("u32", "str", "u32"),            # handle, name, capacity for the data
    Op.DELETE_VALUE: ("u32", "str"),                  # handle, name
    Op.DELETE_KEY: ("u32", "str", "u32"),             # handle, path, flags
    Op.ENUM_KEY: ("u32", "u32"),                      # handle, index
    Op.ENUM_VALUE: ("u32", "u32"),                    # handle, index
}
RESPONSE_FIELDS = {
    Op.CREATE_KEY: ("u32",),                          # disposition
    Op.QUERY_VALUE: ("u32", "u32", "blob"),           # type, size, data
    Op.ENUM_KEY: ("str",),                            # name
    Op.ENUM_VALUE: ("str", "u32", "u32"),             # name, type, size
}
_WIRE = {op: getattr(RegistryCalls, f"_wire_{op.name.lower()}") for op in Op}


class _Malformed(Exception):
    pass


def _pack(kinds: Sequence[str], fields: Sequence) -> bytes:
    out = bytearray()
    for kind, value in zip(kinds, fields, strict=True):
        if kind == "u32":
            out += struct.pack("<I", value)
        else:
            data = value.encode("utf-8", "surrogatepass") if kind == "str" else bytes(value)
            out += struct.pack("<I", len(data)) + data
    return bytes(out)


def _unpack(kinds: Sequence[str], body: bytes) -> list:
    fields, at = [], 0
    for kind in kinds:
        if at + 4 > len(body):
            raise _Malformed("truncated")
        (n,) = struct.unpack_from("<I", body, at)
        at += 4
        if kind == "u32":
            fields.append(n)
            continue
        if n > len(body) - at or n > (MAX_STRING - 1 if kind == "str" else MAX_REQUEST):
            raise _Malformed("length beyond the message")
        data = body[at:at + n]
        at += n
        if kind == "str":
            try:
                fields.append(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise _Malformed("not UTF-8") from None
        else:
            fields.append(data)
    if at != len(body):
        raise _Malformed("trailing bytes")
    return fields


def encode_request(op: int, *fields, tag: int = 0) -> bytes:
    """The message for one call: ``encode_request(Op.OPEN_KEY, HKEY_LOCAL_MACHINE, 'Software')``."""
    return _HEADER.pack(op, tag) + _pack(REQUEST_FIELDS[Op(op)], fields)


@dataclass(frozen=True)
class Response:
    op: int
    tag: int
    result: int
    fields: tuple


def decode_response(message: bytes) -> Response:
    """A response message -> Response (ValueError if it is not one)."""
    if len(message) < _RESPONSE_HEADER.size:
        raise ValueError("short response")
    op, tag, result = _RESPONSE_HEADER.unpack_from(message)
    body = message[_RESPONSE_HEADER.size:]
    try:
        fields = tuple(_unpack(RESPONSE_FIELDS[op], body)) if body else ()
    except _Malformed as e:
        raise ValueError(f"bad response body: {e}") from None
    return Response(op, tag, result, fields)
