"""Registry hives (hv/container/hive.py): a LayeredRegistry view to the "hvhive1" file and back,
the differences applied to a container's registry layer, and hostile hives refused whole."""
from __future__ import annotations

import copy
import struct

import pytest

from hv.container import hive
from hv.container.hive import HiveError, Key
from hv.container.registry import (
    REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_SZ, LayeredRegistry, seal_layer)


@pytest.fixture
def image_db(tmp_path):
    db = tmp_path / "image.db"
    with LayeredRegistry([], db) as r:
        r.create_key("HKLM\\Software\\hv\\service\\State")
        r.set_value("HKLM\\Software\\hv\\service", "Greeting", REG_SZ, "hello ✓")
        r.set_value("HKLM\\Software\\hv\\service", "", REG_DWORD, 7)
        r.set_value("HKLM\\Software\\hv\\service", "Multi", REG_MULTI_SZ, ["a", "b"])
        r.set_value("HKLM\\Software\\hv", "Blob", REG_BINARY, bytes(range(256)))
        r.create_key("HKCU\\Environment")
        r.create_key("HKLM\\Software\\Old\\Tree")
    seal_layer(db)
    return db


@pytest.fixture
def reg(tmp_path, image_db):
    r = LayeredRegistry([image_db], tmp_path / "upper.db")
    yield r
    r.close()


def as_plain(h: dict) -> dict:
    return {k: (v.parts, v.values) for k, v in h.items()}


def test_round_trip(reg):
    h = hive.from_registry(reg)
    data = hive.encode(h)
    assert data.startswith(b"hvhive1\0")
    assert as_plain(hive.decode(data)) == as_plain(h)
    # the roots first, long names, strings as UTF-8 with their NUL
    assert data[12:12 + 21] == b"\x01\x12\x00HKEY_LOCAL_MACHINE"
    assert h[("HKLM", "SOFTWARE", "HV", "SERVICE")].values["GREETING"] == \
        ("Greeting", REG_SZ, "hello ✓\0".encode())
    assert h[("HKLM", "SOFTWARE", "HV", "SERVICE")].values["MULTI"][2] == b"a\0b\0\0"


def test_empty_registry_is_the_two_roots():
    h = hive.decode(hive.encode(hive.from_registry(None)))
    assert list(h) == [("HKLM",), ("HKCU",)]


def test_changes_applied_to_the_upper_layer(reg):
    before = hive.from_registry(reg)
    after = copy.deepcopy(before)
    svc = ("HKLM", "SOFTWARE", "HV", "SERVICE")
    after[svc].values["GREETING"] = ("Greeting", REG_SZ, b"changed\0")
    del after[svc].values["MULTI"]
    after[svc + ("STATE",)].values["RUNS"] = ("Runs", REG_DWORD, struct.pack("<I", 1))
    del after[("HKLM", "SOFTWARE", "OLD")]
    del after[("HKLM", "SOFTWARE", "OLD", "TREE")]
    after[("HKCU", "NEW")] = Key(("HKCU", "New"))
    changes = hive.apply(reg, before, hive.decode(hive.encode(after)))
    assert ("D", "HKLM\\Software\\Old") in changes
    assert reg.query_value("HKLM\\Software\\hv\\service", "greeting").value == "changed"
    assert not reg.value_exists("HKLM\\Software\\hv\\service", "Multi")
    assert reg.query_value("HKLM\\Software\\hv\\service\\State", "Runs").value == 1
    assert not reg.key_exists("HKLM\\Software\\Old")
    assert reg.key_exists("HKCU\\New")
    assert dict((p, k) for k, p in reg.diff()) == {
        "HKCU\\New": "A", "HKLM\\Software\\Old": "D",
        "HKLM\\Software\\hv\\service\\:Greeting": "C", "HKLM\\Software\\hv\\service\\:Multi": "D",
        "HKLM\\Software\\hv\\service\\State\\:Runs": "A"}
    # and what the registry now shows is what the hive said
    assert as_plain(hive.from_registry(reg)) == as_plain(hive.decode(hive.encode(after)))


def test_unchanged_hive_changes_nothing(reg):
    h = hive.from_registry(reg)
    assert hive.apply(reg, h, hive.decode(hive.encode(h))) == []
    assert reg.diff() == []


def _hive(*records: bytes, count: int | None = None) -> bytes:
    return struct.pack("<8sI", b"hvhive1\0", len(records) if count is None else count) + b"".join(records)


def key(path: str) -> bytes:
    raw = path.encode()
    return b"\x01" + struct.pack("<H", len(raw)) + raw


def value(name: str, type_: int, data: bytes, size: int | None = None) -> bytes:
    raw = name.encode()
    size = len(data) if size is None else size
    return b"\x02" + struct.pack("<H", len(raw)) + raw + struct.pack("<II", type_, size) + data


ROOTS = (key("HKEY_LOCAL_MACHINE"), key("HKEY_CURRENT_USER"))


def test_minimal_hive_reads():
    h = hive.decode(_hive(*ROOTS, key("HKEY_LOCAL_MACHINE\\A"), value("v", REG_DWORD, b"\1\0\0\0")))
    assert h[("HKLM", "A")].values == {"V": ("v", REG_DWORD, b"\1\0\0\0")}


@pytest.mark.parametrize("data,match", [
    (b"hvhive1", "shorter"),
    (_hive(*ROOTS).replace(b"hvhive1", b"hvhive2"), "magic"),
    (_hive(*ROOTS, count=3), "claims|truncated"),
    (_hive(*ROOTS, count=1_000_000), "claims"),
    (_hive(*ROOTS, count=1), "after the last record"),
    (_hive(value("v", 1, b"x"), *ROOTS), "before any key"),
    (_hive(*ROOTS, key("HKEY_LOCAL_MACHINE\\A\\B")), "before its parent"),
    (_hive(*ROOTS, key("HKEY_LOCAL_MACHINE\\A"), key("HKEY_LOCAL_MACHINE\\a")), "twice"),
    (_hive(*ROOTS, value("v", 1, b""), value("V", 1, b"")), "twice"),
    (_hive(*ROOTS, value("v", 3, b"", size=(1 << 20) + 1)), "bytes of data"),
    (_hive(*ROOTS, value("v", 3, b"abc", size=100)), "truncated"),
    (_hive(*ROOTS, key("HKEY_CLASSES_ROOT")), "starts with"),
    (_hive(*ROOTS, b"\x01\x02\x00\xff\xfe"), "UTF-8"),
    (_hive(*ROOTS, b"\x07"), "unknown kind"),
    (_hive(key("HKEY_LOCAL_MACHINE")), "lacks the root"),
    (_hive(*ROOTS, key("HKEY_LOCAL_MACHINE\\" + "x" * 300)), "longer than"),
    (_hive(*ROOTS, key("HKEY_LOCAL_MACHINE\\a\tb")), "control"),
])
def test_hostile_hives(data, match):
    with pytest.raises(HiveError, match=match):
        hive.decode(data)


def test_every_truncation_is_refused(reg):
    data = hive.encode(hive.from_registry(reg))
    for n in range(len(data)):
        with pytest.raises(HiveError):
            hive.decode(data[:n])


def test_oversize_hive_refused():
    with pytest.raises(HiveError, match="at most"):
        hive.decode(b"hvhive1\0" + bytes(hive.HIVE_MAX))
