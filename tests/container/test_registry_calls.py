"""The registry call set: system calls through a guest memory accessor, and the message format."""
from __future__ import annotations

import errno
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.container.registry import (
    MAX_DATA, REG_BINARY, REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ, REG_SZ, LayeredRegistry,
    RegistryError, seal_layer)
from hv.container.registry_calls import (
    CREATED_NEW_KEY, DELETE_TREE, HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE, MAX_STRING,
    OPENED_EXISTING_KEY, REQUEST_FIELDS, GuestMemoryFault, Op, RegistryCalls, decode_response,
    encode_request)

ROOT = Path(__file__).resolve().parents[2]
BASE, SIZE, PAGE = 0x10000, 0x10000, 0x1000
EXPECTED_ERRORS = {errno.ENOENT, errno.EIO, errno.E2BIG, errno.EBADF, errno.EACCES, errno.EFAULT,
                   errno.EINVAL, errno.EMFILE, errno.ENAMETOOLONG, errno.ENOSYS, errno.ENOTEMPTY,
                   errno.ENODATA, errno.EOVERFLOW, errno.ESTALE, errno.EDQUOT}


class FakeMemory:
    """Guest memory for tests: RAM at [BASE, BASE+SIZE), some pages read-only, faults elsewhere.
    Strings and buffers are placed with ``put``/``alloc`` from the bottom up."""

    def __init__(self, size: int = SIZE) -> None:
        self.ram = bytearray(size)
        self.read_only: set[int] = set()
        self.next = BASE

    def _check(self, addr: int, n: int, write: bool) -> None:
        if addr < BASE or addr + n > BASE + len(self.ram):
            raise GuestMemoryFault(f"{addr:#x}+{n} unmapped")
        if write and any(p in self.read_only for p in range(addr // PAGE, (addr + n - 1) // PAGE + 1)):
            raise GuestMemoryFault(f"{addr:#x}+{n} read-only")

    def read(self, addr: int, n: int) -> bytes:
        self._check(addr, n, False)
        return bytes(self.ram[addr - BASE:addr - BASE + n])

    def write(self, addr: int, data: bytes) -> None:
        self._check(addr, len(data), True)
        self.ram[addr - BASE:addr - BASE + len(data)] = data

    def alloc(self, n: int) -> int:
        addr, self.next = self.next, (self.next + n + 15) & ~15
        assert self.next <= BASE + len(self.ram)
        return addr

    def put(self, data: bytes | str) -> int:
        data = data.encode() + b"\0" if isinstance(data, str) else data
        addr = self.alloc(len(data))
        self.ram[addr - BASE:addr - BASE + len(data)] = data
        return addr

    def u32(self, addr: int) -> int:
        return struct.unpack_from("<I", self.ram, addr - BASE)[0]

    def set_u32(self, addr: int, value: int) -> None:
        struct.pack_into("<I", self.ram, addr - BASE, value)


@pytest.fixture
def reg(tmp_path):
    with LayeredRegistry([], tmp_path / "upper.db") as r:
        yield r


@pytest.fixture
def calls(reg):
    return RegistryCalls(reg)


@pytest.fixture
def mem():
    return FakeMemory()


class Guest:
    """The hvreg.h wrappers, in Python: each builds its arguments in ``mem`` and calls."""

    def __init__(self, calls: RegistryCalls, mem: FakeMemory) -> None:
        self.calls, self.mem = calls, mem

    def __call__(self, op: Op, *args) -> int:
        return self.calls.call(op, args, self.mem)

    def create(self, parent, path):
        disp = self.mem.alloc(4)
        h = self(Op.CREATE_KEY, parent, self.mem.put(path), disp)
        return h, self.mem.u32(disp)

    def open(self, parent, path):
        return self(Op.OPEN_KEY, parent, self.mem.put(path))

    def set(self, h, name, type_, data: bytes):
        return self(Op.SET_VALUE, h, self.mem.put(name), type_, self.mem.put(data), len(data))

    def query(self, h, name, capacity=256):
        t, buf, size = self.mem.alloc(4), self.mem.alloc(max(capacity, 1)), self.mem.alloc(4)
        self.mem.set_u32(size, capacity)
        r = self(Op.QUERY_VALUE, h, self.mem.put(name), t, buf, size)
        n = self.mem.u32(size)
        return r, self.mem.u32(t), self.mem.read(buf, n) if r == 0 else None, n

    def enum_key(self, h, index, capacity=256):
        buf, length = self.mem.alloc(capacity), self.mem.alloc(4)
        self.mem.set_u32(length, capacity)
        r = self(Op.ENUM_KEY, h, index, buf, length)
        n = self.mem.u32(length)
        return r, (self.mem.read(buf, n).decode() if r == 0 else n)

    def enum_value(self, h, index, capacity=256):
        buf, length, t, size = (self.mem.alloc(capacity), self.mem.alloc(4), self.mem.alloc(4),
                                self.mem.alloc(4))
        self.mem.set_u32(length, capacity)
        r = self(Op.ENUM_VALUE, h, index, buf, length, t, size)
        name = self.mem.read(buf, self.mem.u32(length)).decode() if r == 0 else None
        return r, name, self.mem.u32(t), self.mem.u32(size)


@pytest.fixture
def guest(calls, mem):
    return Guest(calls, mem)


# ------------------------------------------------------------------------------------ each call

def test_create_key_makes_missing_parents_and_says_whether_it_was_new(guest, reg):
    h, how = guest.create(HKEY_CURRENT_USER, "Software\\Vendor\\App")
    assert h > 0 and how == CREATED_NEW_KEY
    assert reg.key_exists("HKCU\\Software\\Vendor\\App")
    h2, how2 = guest.create(HKEY_CURRENT_USER, "software\\VENDOR")
    assert h2 not in (h, 0) and how2 == OPENED_EXISTING_KEY
    h3, how3 = guest.create(h2, "App\\Deeper")                     # relative to an open key
    assert how3 == CREATED_NEW_KEY and reg.key_exists("HKCU\\Software\\Vendor\\App\\Deeper")
    assert guest(Op.CREATE_KEY, HKEY_LOCAL_MACHINE, guest.mem.put("X"), 0) > 0   # no disposition


def test_open_key_finds_only_existing_keys_and_an_empty_path_reopens_the_parent(guest, reg):
    reg.create_key("HKLM\\Software\\There")
    h = guest.open(HKEY_LOCAL_MACHINE, "SOFTWARE\\there")
    assert h > 0
    assert guest.open(HKEY_LOCAL_MACHINE, "Software\\Missing") == -errno.ENOENT
    again = guest.open(h, "")
    assert again > 0 and again != h
    assert guest(Op.OPEN_KEY, h, 0) > 0                               # NULL path: the same


def test_close_key_frees_the_handle_and_roots_ignore_it(guest):
    h, _ = guest.create(HKEY_CURRENT_USER, "K")
    assert guest(Op.CLOSE_KEY, h) == 0
    assert guest(Op.CLOSE_KEY, h) == -errno.EBADF
    assert guest.set(h, "v", REG_DWORD, b"\1\0\0\0") == -errno.EBADF
    assert guest(Op.CLOSE_KEY, HKEY_LOCAL_MACHINE) == 0
    assert guest.query(HKEY_LOCAL_MACHINE, "nothing")[0] == -errno.ENOENT   # still usable


def test_set_and_query_value_round_trip_each_type_as_the_ansi_api(guest, reg):
    h, _ = guest.create(HKEY_CURRENT_USER, "Types")
    cases = [(REG_SZ, "grüße ☃\0".encode()), (REG_EXPAND_SZ, b"%PATH%\0"),
             (REG_MULTI_SZ, b"a\0b\0\0"), (REG_DWORD, b"\x2a\0\0\0"), (REG_BINARY, bytes(range(50))),
             (0x77, b"custom")]
    for i, (type_, data) in enumerate(cases):
        assert guest.set(h, f"v{i}", type_, data) == 0
    for i, (type_, data) in enumerate(cases):
        assert guest.query(h, f"V{i}") == (0, type_, data, len(data))
    # strings are stored as a hive stores them: UTF-16LE
    assert reg.query_value("HKCU\\Types", "v0").value == "grüße ☃"
    assert reg.query_value("HKCU\\Types", "v0").data == "grüße ☃\0".encode("utf-16-le")
    # invalid UTF-8 becomes U+FFFD, as MultiByteToWideChar does
    assert guest.set(h, "bad", REG_SZ, b"a\xffb\0") == 0
    assert guest.query(h, "bad")[2] == "a\ufffdb\0".encode()


def test_query_value_reports_more_data_with_the_size_needed(guest, mem):
    h, _ = guest.create(HKEY_CURRENT_USER, "Q")
    guest.set(h, "text", REG_SZ, b"0123456789\0")
    r, type_, data, size = guest.query(h, "text", capacity=4)
    assert (r, type_, data, size) == (-errno.EOVERFLOW, REG_SZ, None, 11)
    # size query: no data buffer, just type and size
    t, size_ptr = mem.alloc(4), mem.alloc(4)
    assert guest(Op.QUERY_VALUE, h, mem.put("text"), t, 0, size_ptr) == 0
    assert (mem.u32(t), mem.u32(size_ptr)) == (REG_SZ, 11)
    # existence only: no type, no buffer, no size
    assert guest(Op.QUERY_VALUE, h, mem.put("text"), 0, 0, 0) == 0
    assert guest(Op.QUERY_VALUE, h, mem.put("nope"), 0, 0, 0) == -errno.ENOENT
    # a buffer without its size is an error, as in Windows
    assert guest(Op.QUERY_VALUE, h, mem.put("text"), t, mem.alloc(16), 0) == -errno.EINVAL


def test_the_default_value_is_named_by_an_empty_or_null_name(guest, mem):
    h, _ = guest.create(HKEY_CURRENT_USER, "D")
    assert guest(Op.SET_VALUE, h, 0, REG_DWORD, mem.put(b"\7\0\0\0"), 4) == 0
    assert guest.query(h, "")[:3] == (0, REG_DWORD, b"\7\0\0\0")
    assert guest(Op.DELETE_VALUE, h, 0) == 0
    assert guest.query(h, "")[0] == -errno.ENOENT


def test_delete_value_removes_one_value(guest):
    h, _ = guest.create(HKEY_CURRENT_USER, "DV")
    guest.set(h, "a", REG_DWORD, b"\1\0\0\0")
    guest.set(h, "b", REG_DWORD, b"\2\0\0\0")
    assert guest(Op.DELETE_VALUE, h, guest.mem.put("A")) == 0
    assert guest(Op.DELETE_VALUE, h, guest.mem.put("a")) == -errno.ENOENT
    assert guest.query(h, "b")[0] == 0


def test_delete_key_without_the_tree_flag_refuses_a_key_with_subkeys(guest, reg, mem):
    h, _ = guest.create(HKEY_CURRENT_USER, "T\\A\\B")
    top = guest.open(HKEY_CURRENT_USER, "T")
    assert guest(Op.DELETE_KEY, top, mem.put("A"), 0) == -errno.ENOTEMPTY
    assert guest(Op.DELETE_KEY, top, mem.put("A\\B"), 0) == 0
    assert guest(Op.DELETE_KEY, top, mem.put("A"), 0) == 0
    assert reg.subkeys("HKCU\\T") == []
    assert guest(Op.DELETE_KEY, top, mem.put("A"), 0) == -errno.ENOENT
    assert guest(Op.DELETE_KEY, top, mem.put("x"), 0x2) == -errno.EINVAL       # unknown flag
    assert guest(Op.DELETE_KEY, HKEY_CURRENT_USER, 0, 0) == -errno.EACCES       # a root


def test_delete_tree_removes_a_subtree_or_with_an_empty_path_empties_the_key(guest, reg, mem):
    top, _ = guest.create(HKEY_CURRENT_USER, "Tree")
    guest.create(top, "A\\B\\C")
    guest.create(top, "Z")
    guest.set(top, "v", REG_DWORD, b"\1\0\0\0")
    assert guest(Op.DELETE_KEY, top, mem.put("A"), DELETE_TREE) == 0
    assert reg.subkeys("HKCU\\Tree") == ["Z"]
    assert guest(Op.DELETE_KEY, top, 0, DELETE_TREE) == 0
    assert reg.key_exists("HKCU\\Tree") and reg.subkeys("HKCU\\Tree") == [] and reg.values("HKCU\\Tree") == []
    assert guest.query(top, "v")[0] == -errno.ENOENT and guest.set(top, "w", REG_DWORD, b"\0" * 4) == 0


def test_a_handle_to_a_deleted_key_answers_estale_even_after_the_key_is_made_again(guest, mem):
    h, _ = guest.create(HKEY_CURRENT_USER, "Gone\\Child")
    parent = guest.open(HKEY_CURRENT_USER, "Gone")
    assert guest(Op.DELETE_KEY, HKEY_CURRENT_USER, mem.put("Gone"), DELETE_TREE) == 0
    assert guest.set(h, "v", REG_DWORD, b"\0" * 4) == -errno.ESTALE
    assert guest.query(parent, "v")[0] == -errno.ESTALE
    guest.create(HKEY_CURRENT_USER, "Gone\\Child")
    assert guest.set(h, "v", REG_DWORD, b"\0" * 4) == -errno.ESTALE
    assert guest(Op.CLOSE_KEY, h) == 0                               # a stale handle still closes
    assert guest(Op.DELETE_KEY, parent, 0, 0) == -errno.ESTALE      # deleting itself


def test_a_handle_whose_key_vanished_from_the_host_side_answers_estale(guest, reg):
    h, _ = guest.create(HKEY_CURRENT_USER, "Host")
    reg.delete_key("HKCU\\Host")
    assert guest.query(h, "x")[0] == -errno.ESTALE


def test_enum_key_lists_subkeys_in_order_and_then_says_no_more(guest, reg):
    for name in ("beta", "Alpha", "gamma", "Delta"):
        reg.create_key(f"HKCU\\E\\{name}")
    h = guest.open(HKEY_CURRENT_USER, "E")
    names = []
    for i in range(10):
        r, name = guest.enum_key(h, i)
        if r == -errno.ENODATA:
            break
        assert r == 0
        names.append(name)
    assert names == ["Alpha", "beta", "Delta", "gamma"]
    assert guest.enum_key(h, 2, capacity=5) == (-errno.EOVERFLOW, 5)   # 'Delta' + NUL needs 6
    assert guest.enum_key(h, 2, capacity=6) == (0, "Delta")
    assert guest.enum_key(h, 0xFFFFFFFF) == (-errno.ENODATA, 256)        # *length untouched
    assert guest(Op.ENUM_KEY, h, 0, 0, guest.mem.alloc(4)) == -errno.EINVAL


def test_enumeration_by_index_sees_writes_made_between_calls(guest, reg):
    for name in ("a", "b", "c"):
        reg.create_key(f"HKCU\\W\\{name}")
    h = guest.open(HKEY_CURRENT_USER, "W")
    assert guest.enum_key(h, 0) == (0, "a")
    assert guest.enum_key(h, 1) == (0, "b")
    reg.create_key("HKCU\\W\\a2")                 # the list shifts under the cursor
    assert guest.enum_key(h, 2) == (0, "b")
    # the Windows idiom: delete index 0 until there is none
    while (r := guest.enum_key(h, 0))[0] == 0:
        assert guest(Op.DELETE_KEY, h, guest.mem.put(r[1]), 0) == 0
    assert r[0] == -errno.ENODATA and reg.subkeys("HKCU\\W") == []


def test_enum_value_gives_names_types_and_the_size_the_guest_will_receive(guest):
    h, _ = guest.create(HKEY_CURRENT_USER, "EV")
    guest.set(h, "text", REG_SZ, "☃\0".encode())                     # 4 UTF-8 bytes, 4 stored
    guest.set(h, "", REG_BINARY, b"xyz")
    guest.set(h, "Num", REG_DWORD, b"\1\0\0\0")
    got = [guest.enum_value(h, i) for i in range(4)]
    assert got == [(0, "", REG_BINARY, 3), (0, "Num", REG_DWORD, 4), (0, "text", REG_SZ, 4),
                   (-errno.ENODATA, None, 0, 0)]
    mem = guest.mem
    buf, length = mem.alloc(3), mem.alloc(4)
    mem.set_u32(length, 3)                                           # 'Num' + NUL needs 4
    assert guest(Op.ENUM_VALUE, h, 1, buf, length, 0, 0) == -errno.EOVERFLOW
    assert mem.u32(length) == 3


def test_calls_outside_the_call_set_answer_enosys(guest):
    for nr in (0x0FFF, 0x1009, 0x10FF, 0, 4):
        assert guest(nr, 0, 0, 0) == -errno.ENOSYS


# --------------------------------------------------------------------------------- hostile input

UNMAPPED = (0x1000, BASE + SIZE, 0xFFFFFFFF, 0xFFFFFFFC)


@pytest.mark.parametrize("bad", UNMAPPED)
def test_every_pointer_argument_may_point_anywhere_and_gets_efault(guest, mem, reg, bad):
    h, _ = guest.create(HKEY_CURRENT_USER, "P")
    guest.set(h, "v", REG_SZ, b"text\0")
    reg.create_key("HKCU\\P\\sub")
    name, buf, size = mem.put("v"), mem.alloc(64), mem.alloc(4)
    mem.set_u32(size, 64)
    assert guest(Op.OPEN_KEY, h, bad) == -errno.EFAULT
    assert guest(Op.CREATE_KEY, h, bad, 0) == -errno.EFAULT
    assert guest(Op.CREATE_KEY, h, mem.put("new"), bad) == -errno.EFAULT
    assert guest(Op.SET_VALUE, h, bad, REG_DWORD, buf, 4) == -errno.EFAULT
    assert guest(Op.SET_VALUE, h, mem.put("w"), REG_DWORD, bad, 4) == -errno.EFAULT
    assert guest(Op.QUERY_VALUE, h, bad, 0, 0, 0) == -errno.EFAULT
    assert guest(Op.QUERY_VALUE, h, name, bad, buf, size) == -errno.EFAULT
    assert guest(Op.QUERY_VALUE, h, name, 0, bad, size) == -errno.EFAULT
    assert guest(Op.QUERY_VALUE, h, name, 0, buf, bad) == -errno.EFAULT
    assert guest(Op.DELETE_VALUE, h, bad) == -errno.EFAULT
    assert guest(Op.DELETE_KEY, h, bad, DELETE_TREE) == -errno.EFAULT
    assert guest(Op.ENUM_KEY, h, 0, bad, size) == -errno.EFAULT
    assert guest(Op.ENUM_KEY, h, 0, buf, bad) == -errno.EFAULT
    assert guest(Op.ENUM_VALUE, h, 0, bad, size, 0, 0) == -errno.EFAULT
    assert guest(Op.ENUM_VALUE, h, 0, buf, size, bad, 0) == -errno.EFAULT
    assert guest(Op.ENUM_VALUE, h, 0, buf, size, 0, bad) == -errno.EFAULT
    # nothing changed and no handle leaked
    assert reg.subkeys("HKCU\\P") == ["sub"] and [n for n, _ in reg.values("HKCU\\P")] == ["v"]
    assert guest.calls.open_handles() == 1


def test_a_disposition_pointer_that_cannot_be_written_leaks_no_handle(guest, mem, reg):
    disp = mem.alloc(PAGE + 4)
    mem.read_only.add((disp + PAGE) // PAGE)
    ro = (disp + PAGE) & ~(PAGE - 1)
    assert guest(Op.CREATE_KEY, HKEY_CURRENT_USER, mem.put("K"), ro) == -errno.EFAULT
    assert guest.calls.open_handles() == 0 and not reg.key_exists("HKCU\\K")


def test_strings_are_read_up_to_their_nul_even_at_the_edge_of_memory(guest, mem, reg):
    end = BASE + SIZE
    mem.ram[-4:] = b"Edg\0"
    assert guest.create(HKEY_CURRENT_USER, "x")[0] > 0
    assert guest(Op.CREATE_KEY, HKEY_CURRENT_USER, end - 4, 0) > 0
    assert reg.key_exists("HKCU\\Edg")
    mem.ram[-3:] = b"abc"                               # runs off the end: no NUL
    assert guest(Op.CREATE_KEY, HKEY_CURRENT_USER, end - 3, 0) == -errno.EFAULT


def test_a_string_without_a_nul_within_the_limit_is_too_long(calls):
    big = FakeMemory(MAX_STRING + PAGE)
    big.ram[:] = b"a" * len(big.ram)
    assert calls.call(Op.OPEN_KEY, (HKEY_CURRENT_USER, BASE), big) == -errno.ENAMETOOLONG
    # a long path over many pages is read whole: 80 names of 255 characters
    path = "\\".join([f"{i:02}" + "k" * 253 for i in range(80)]).encode() + b"\0"
    big.ram[:len(path)] = path
    handle = calls.call(Op.CREATE_KEY, (HKEY_CURRENT_USER, BASE, 0), big)
    assert handle > 0 and calls.registry.key_exists("HKCU\\" + path[:-1].decode())


def test_names_that_are_not_utf8_or_break_the_rules_are_refused(guest, mem):
    assert guest(Op.CREATE_KEY, HKEY_CURRENT_USER, mem.put(b"bad\xff\0"), 0) == -errno.EINVAL
    assert guest(Op.CREATE_KEY, HKEY_CURRENT_USER, mem.put("a\\\\b"), 0) == -errno.EINVAL
    assert guest(Op.CREATE_KEY, HKEY_CURRENT_USER, mem.put("k" * 256), 0) == -errno.ENAMETOOLONG
    assert guest(Op.SET_VALUE, HKEY_CURRENT_USER, mem.put("tab\there"), REG_DWORD, mem.put(b"1234"), 4) \
        == -errno.EINVAL


def test_hostile_sizes_are_refused_before_anything_is_read(guest, mem, reg):
    name = mem.put("v")
    for size in (MAX_DATA + 1, 0xFFFFFFFF, 0x80000000):
        assert guest(Op.SET_VALUE, HKEY_CURRENT_USER, name, REG_BINARY, BASE, size) == -errno.E2BIG
    assert guest(Op.SET_VALUE, HKEY_CURRENT_USER, name, REG_BINARY, BASE, SIZE) == 0    # all of RAM
    assert guest(Op.SET_VALUE, HKEY_CURRENT_USER, name, REG_SZ, BASE, SIZE) == 0
    assert reg.values("HKCU")[0][1].type == REG_SZ
    assert guest(Op.SET_VALUE, HKEY_CURRENT_USER, name, 0x1_0000_0000 + REG_DWORD, BASE, 4) == 0  # masked
    assert reg.query_value("HKCU", "v").type == REG_DWORD


def test_data_over_the_limit_once_stored_as_utf16_is_refused(tmp_path):
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        calls = RegistryCalls(reg)
        text = b"a" * (MAX_DATA // 2 + 1)
        assert calls.set_value(HKEY_CURRENT_USER, "ok", REG_BINARY, text) == 0
        with pytest.raises(RegistryError) as info:
            calls.set_value(HKEY_CURRENT_USER, "big", REG_SZ, text)
        assert info.value.errno == errno.E2BIG
        assert not reg.value_exists("HKCU", "big")


@pytest.mark.parametrize("handle", [0, 7, 0xFFFFFFFF, 0x80000000, 0x80000003, -1, 1 << 40])
def test_handles_that_were_never_opened_answer_ebadf(guest, mem, handle):
    assert guest(Op.SET_VALUE, handle, mem.put("v"), REG_DWORD, mem.put(b"1234"), 4) == -errno.EBADF
    assert guest(Op.CLOSE_KEY, handle) in (-errno.EBADF, 0)
    assert guest(Op.OPEN_KEY, handle, mem.put("x")) == -errno.EBADF
    assert guest.enum_key(handle, 0)[0] == -errno.EBADF


def test_open_handles_are_bounded_per_container(reg, mem):
    calls = RegistryCalls(reg, max_handles=8)
    g = Guest(calls, mem)
    path = mem.put("K")
    handles = [g(Op.CREATE_KEY, HKEY_CURRENT_USER, path, 0) for _ in range(8)]
    assert sorted(handles) == list(range(1, 9))
    assert g(Op.CREATE_KEY, HKEY_CURRENT_USER, path, 0) == -errno.EMFILE
    assert g(Op.OPEN_KEY, HKEY_CURRENT_USER, path) == -errno.EMFILE
    assert g(Op.CLOSE_KEY, handles[3]) == 0
    assert g(Op.OPEN_KEY, HKEY_CURRENT_USER, path) == handles[3]        # the lowest free number
    other = RegistryCalls(reg, max_handles=8)                             # another container
    assert Guest(other, mem)(Op.OPEN_KEY, HKEY_CURRENT_USER, path) == 1


def test_a_read_only_registry_answers_eacces_to_writes(tmp_path, mem):
    with LayeredRegistry([], tmp_path / "l.db") as r:
        r.create_key("HKLM\\Ro")
    seal_layer(tmp_path / "l.db")
    with LayeredRegistry([tmp_path / "l.db"], None) as ro:
        g = Guest(RegistryCalls(ro), mem)
        h = g.open(HKEY_LOCAL_MACHINE, "Ro")
        assert h > 0
        assert g.create(h, "new")[0] == -errno.EACCES
        assert g.set(h, "v", REG_DWORD, b"1234") == -errno.EACCES
        assert g(Op.DELETE_KEY, h, 0, 0) == -errno.EACCES


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls_=st.lists(st.tuples(
    st.one_of(st.sampled_from(list(Op)), st.integers(0x0FF0, 0x1010)),
    st.lists(st.one_of(st.integers(0, 2**32 - 1), st.integers(BASE - 8, BASE + SIZE + 8),
                       st.sampled_from([0, 1, 2, HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE, DELETE_TREE])),
             min_size=0, max_size=7)), min_size=1, max_size=12),
       ram=st.binary(min_size=0, max_size=512))
def test_random_calls_with_random_registers_give_a_handle_zero_or_a_known_errno(reg, calls_, ram):
    mem = FakeMemory()
    mem.ram[:len(ram)] = ram
    mem.ram[SIZE - 16:] = b"Fuzz\\Key\0" + bytes(7)
    calls = RegistryCalls(reg, max_handles=4)
    for nr, args in calls_:
        result = calls.call(nr, args, mem)
        assert isinstance(result, int)
        assert 0 <= result <= 4 or -result in EXPECTED_ERRORS, (nr, args, result)
        assert calls.open_handles() <= 4


# ---------------------------------------------------------------------------------- the messages

def ask(calls, op, *fields, tag=7):
    response = decode_response(calls.handle_request(encode_request(op, *fields, tag=tag)))
    assert (response.op, response.tag) == (op, tag)
    return response.result, response.fields


def test_every_operation_works_as_a_message_with_the_same_results(calls, reg):
    h, (how,) = ask(calls, Op.CREATE_KEY, HKEY_CURRENT_USER, "Msg\\Sub")
    assert h > 0 and how == CREATED_NEW_KEY
    top = ask(calls, Op.OPEN_KEY, HKEY_CURRENT_USER, "msg")[0]
    assert top > 0
    assert ask(calls, Op.SET_VALUE, top, "Name", REG_SZ, "wörld\0".encode()) == (0, ())
    assert ask(calls, Op.QUERY_VALUE, top, "name", 100) == (0, (REG_SZ, 7, "wörld\0".encode()))
    assert ask(calls, Op.QUERY_VALUE, top, "name", 3) == (-errno.EOVERFLOW, (REG_SZ, 7, b""))
    assert ask(calls, Op.QUERY_VALUE, top, "nothing", 3) == (-errno.ENOENT, ())
    assert ask(calls, Op.ENUM_KEY, top, 0) == (0, ("Sub",))
    assert ask(calls, Op.ENUM_KEY, top, 1) == (-errno.ENODATA, ())
    assert ask(calls, Op.ENUM_VALUE, top, 0) == (0, ("Name", REG_SZ, 7))
    assert ask(calls, Op.DELETE_VALUE, top, "NAME") == (0, ())
    assert ask(calls, Op.DELETE_KEY, top, "Sub", 0) == (0, ())
    assert ask(calls, Op.CLOSE_KEY, top) == (0, ())
    assert ask(calls, Op.CLOSE_KEY, top) == (-errno.EBADF, ())
    assert ask(calls, Op.SET_VALUE, h, "x", REG_DWORD, b"1234") == (-errno.ESTALE, ())
    assert reg.subkeys("HKCU\\Msg") == [] and reg.values("HKCU\\Msg") == []


def test_the_message_layout_is_the_documented_one(calls):
    calls.registry.create_key("HKLM\\ab")
    request = encode_request(Op.OPEN_KEY, HKEY_LOCAL_MACHINE, "ab", tag=0x01020304)
    assert request == (b"\x00\x10\x00\x00" b"\x04\x03\x02\x01" b"\x02\x00\x00\x80"
                       b"\x02\x00\x00\x00ab")
    response = calls.handle_request(request)
    assert response == b"\x00\x10\x00\x00\x04\x03\x02\x01\x01\x00\x00\x00"     # handle 1
    assert calls.handle_request(b"\x00\x10\x00\x00\x04\x03\x02\x01") == \
        b"\x00\x10\x00\x00\x04\x03\x02\x01" + struct.pack("<i", -errno.EINVAL)


@pytest.mark.parametrize("request_, result", [
    (b"", -errno.EINVAL),
    (b"\x00\x10\x00", -errno.EINVAL),
    (struct.pack("<II", 0x1002, 1), -errno.EINVAL),                            # no handle field
    (struct.pack("<III", 0x1002, 1, 5) + b"x", -errno.EINVAL),                 # trailing byte
    (struct.pack("<IIII", 0x1000, 1, HKEY_CURRENT_USER, 10) + b"short", -errno.EINVAL),
    (struct.pack("<IIII", 0x1000, 1, HKEY_CURRENT_USER, 0xFFFFFFFF), -errno.EINVAL),
    (struct.pack("<IIII", 0x1000, 1, HKEY_CURRENT_USER, 2) + b"\xff\xfe", -errno.EINVAL),
    (struct.pack("<II", 0x2000, 1), -errno.ENOSYS),
    (struct.pack("<II", 0x1009, 1) + b"anything", -errno.ENOSYS),
    (struct.pack("<III", 0x1003, 1, 1) + bytes(MAX_DATA + 2 * MAX_STRING), -errno.E2BIG),
])
def test_a_malformed_message_gets_an_error_response(calls, request_, result):
    response = decode_response(calls.handle_request(request_))
    assert response.result == result and response.fields == ()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_messages_always_get_a_well_formed_response(calls, data):
    valid = encode_request(Op.SET_VALUE, HKEY_CURRENT_USER, "v", REG_SZ, b"abc\0", tag=9)
    kind = data.draw(st.sampled_from(["random", "truncated", "flipped", "op"]))
    if kind == "random":
        request = data.draw(st.binary(max_size=64))
    elif kind == "truncated":
        request = valid[:data.draw(st.integers(0, len(valid)))]
    elif kind == "flipped":
        i = data.draw(st.integers(0, len(valid) - 1))
        request = valid[:i] + bytes([valid[i] ^ data.draw(st.integers(1, 255))]) + valid[i + 1:]
    else:
        request = struct.pack("<II", data.draw(st.sampled_from(list(REQUEST_FIELDS))), 1) + \
            data.draw(st.binary(max_size=40))
    response = decode_response(calls.handle_request(request))
    assert response.result >= 0 or -response.result in EXPECTED_ERRORS
    if len(request) >= 8:
        assert (response.op, response.tag) == struct.unpack_from("<II", request)


# ----------------------------------------------------------------- hvreg.h in a real i386 program

CFLAGS = ["-m32", "-static", "-nostdlib", "-ffreestanding", "-fno-pic", "-no-pie",
          "-fno-stack-protector", "-fcf-protection=none", "-Wall", "-Wextra", "-Werror",
          "-I", str(ROOT / "guests" / "include")]


def build_regdemo(tmp_path, opt: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the i386 demo program")
    out = tmp_path / f"regdemo{opt}"
    built = subprocess.run(["gcc", *CFLAGS, opt, str(ROOT / "guests" / "src" / "linux" / "regdemo.c"),
                            "-o", str(out)], capture_output=True, text=True)
    if built.returncode and ("m32" in built.stderr or "cannot find" in built.stderr):
        pytest.skip(f"gcc cannot build i386 programs here: {built.stderr.strip()[:200]}")
    assert built.returncode == 0, built.stderr
    return out


def run_i386(program: Path, calls: RegistryCalls) -> tuple[int, str]:
    """Run a static i386 ELF on Unicorn with a three-call Linux: write, exit_group, and the
    registry range handed to ``calls`` (the system-call layer's part, reduced to a test)."""
    from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc, UcError
    from unicorn.x86_const import (UC_X86_REG_EAX, UC_X86_REG_EBP, UC_X86_REG_EBX, UC_X86_REG_ECX,
                                   UC_X86_REG_EDI, UC_X86_REG_EDX, UC_X86_REG_ESI, UC_X86_REG_ESP)
    elf = program.read_bytes()
    entry, phoff = struct.unpack_from("<II", elf, 0x18)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x2A)
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    for i in range(phnum):
        p_type, off, vaddr, _, filesz, memsz = struct.unpack_from("<6I", elf, phoff + i * phentsize)
        if p_type == 1:
            lo, hi = vaddr & ~0xFFF, (vaddr + memsz + 0xFFF) & ~0xFFF
            uc.mem_map(lo, hi - lo)
            uc.mem_write(vaddr, elf[off:off + filesz])
    stack_top = 0xBF000000
    uc.mem_map(stack_top - 0x10000, 0x10000)
    uc.reg_write(UC_X86_REG_ESP, stack_top - 16)

    class UcMemory:
        def read(self, addr, n):
            try:
                return bytes(uc.mem_read(addr, n))
            except UcError:
                raise GuestMemoryFault(hex(addr)) from None

        def write(self, addr, data):
            try:
                uc.mem_write(addr, data)
            except UcError:
                raise GuestMemoryFault(hex(addr)) from None
    out, status = bytearray(), []

    def on_int(uc, intno, _):
        assert intno == 0x80
        nr = uc.reg_read(UC_X86_REG_EAX)
        args = [uc.reg_read(r) for r in (UC_X86_REG_EBX, UC_X86_REG_ECX, UC_X86_REG_EDX,
                                         UC_X86_REG_ESI, UC_X86_REG_EDI, UC_X86_REG_EBP)]
        if nr == 4:
            out.extend(uc.mem_read(args[1], args[2]))
            result = args[2]
        elif nr == 252:
            status.append(args[0])
            uc.emu_stop()
            return
        else:
            result = calls.call(nr, args, UcMemory())
        uc.reg_write(UC_X86_REG_EAX, result & 0xFFFFFFFF)
    uc.hook_add(UC_HOOK_INTR, on_int)
    uc.emu_start(entry, 0, count=5_000_000)
    assert status, "the program did not exit"
    return status[0], out.decode()


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_the_demo_program_uses_hvreg_h_wrappers_against_the_call_set(tmp_path, opt):
    program = build_regdemo(tmp_path, opt)
    with LayeredRegistry([], tmp_path / "upper.db") as reg:
        calls = RegistryCalls(reg)
        first = run_i386(program, calls)
        second = run_i386(program, calls)
        assert first == (0, "regdemo: key created\nregdemo: runs = 1\nregdemo: greeting needs 23 bytes\n"
                            "regdemo: greeting = hello from a container\n"
                            "regdemo: value greeting type 1 size 23\nregdemo: value runs type 4 size 4\n")
        assert second[0] == 0 and "key opened\nregdemo: runs = 2\n" in second[1]
        assert reg.query_value("HKCU\\Software\\hv\\regdemo", "runs").value == 2
        assert reg.query_value("HKCU\\Software\\hv\\regdemo", "greeting").value == "hello from a container"
        assert calls.open_handles() == 0                         # it closed what it opened


def test_the_demo_program_reports_no_registry_under_qemu_i386(tmp_path):
    if shutil.which("qemu-i386") is None:
        pytest.skip("qemu-i386 is needed (apt-get install qemu-user)")
    program = build_regdemo(tmp_path, "-O2")
    ran = subprocess.run(["qemu-i386", str(program)], capture_output=True, text=True, timeout=60)
    # Linux itself answers the private numbers with ENOSYS: the same result hv gives outside the range
    assert (ran.returncode, ran.stdout) == (3, "regdemo: no registry here (ENOSYS)\n")
