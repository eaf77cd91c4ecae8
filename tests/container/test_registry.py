"""The container registry: layered storage, Windows semantics, limits, crash safety, .reg files."""
from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.container.registry import (
    MAX_DATA, MAX_DEPTH, MAX_KEY_NAME, MAX_VALUE_NAME, REG_BINARY, REG_DWORD, REG_EXPAND_SZ,
    REG_MULTI_SZ, REG_NONE, REG_QWORD, REG_SZ, LayeredRegistry, RegFileError, RegistryError, Value,
    create_layer, decode_reg_file, encode_data, export_reg, import_reg, main_registry, seal_layer,
    write_reg_file)

APP = "HKLM\\Software\\Vendor\\App"


def make_layer(path: Path, build) -> Path:
    """A sealed lower layer made by ``build(registry)``, as an image layer would be."""
    with LayeredRegistry([], path) as reg:
        build(reg)
    seal_layer(path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fails(code: int, fn, *args, **kwargs) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        fn(*args, **kwargs)
    assert info.value.errno == code, info.value
    return info.value


@pytest.fixture
def image(tmp_path):
    """Two image layers (bottom, then top) and a fresh container upper over them."""
    def bottom(reg):
        reg.create_key(APP + "\\Plugins\\Old")
        reg.set_value(APP, "Path", REG_SZ, "C:\\app")
        reg.set_value(APP, "Version", REG_DWORD, 1)
        reg.set_value(APP + "\\Plugins\\Old", "Enabled", REG_DWORD, 1)
        reg.create_key("HKCU\\Console")

    def top(reg):
        reg.create_key(APP + "\\Plugins\\New")
        reg.set_value(APP, "Version", REG_DWORD, 2)
        reg.set_value(APP, "Channel", REG_SZ, "stable")
    make_layer(tmp_path / "bottom.db", bottom)
    with LayeredRegistry([tmp_path / "bottom.db"], tmp_path / "top.db") as reg:   # a diff layer
        top(reg)
    seal_layer(tmp_path / "top.db")
    lowers = [tmp_path / "top.db", tmp_path / "bottom.db"]            # TOP FIRST
    reg = LayeredRegistry(lowers, tmp_path / "upper.db")
    yield reg, lowers
    reg.close()


# ------------------------------------------------------------------------------------------- layers

def test_values_and_keys_of_every_lower_layer_are_read_through_the_upper(image):
    reg, _ = image
    assert reg.query_value(APP, "Path").value == "C:\\app"           # bottom layer
    assert reg.query_value(APP, "Version").value == 2                # top layer wins
    assert reg.query_value(APP, "Channel").value == "stable"
    assert reg.subkeys(APP + "\\Plugins") == ["New", "Old"]
    assert reg.key_exists("HKCU\\Console")


def test_writes_land_in_the_upper_and_leave_the_lower_files_byte_identical(image, tmp_path):
    reg, lowers = image
    before = {p: digest(p) for p in lowers}
    listing = sorted(os.listdir(tmp_path))
    reg.set_value(APP, "Version", REG_DWORD, 3)
    reg.delete_value(APP, "Path")
    reg.delete_key(APP + "\\Plugins", tree=True)
    reg.create_key(APP + "\\Plugins\\Mine")
    reg.create_key("HKCU\\Environment")
    assert reg.query_value(APP, "Version").value == 3
    reg.close()
    assert {p: digest(p) for p in lowers} == before
    # no journal or WAL files appeared beside the sealed lowers, only the upper's
    assert sorted(n for n in os.listdir(tmp_path) if not n.startswith("upper.db")) == \
        sorted(n for n in listing if not n.startswith("upper.db"))
    with LayeredRegistry(lowers, None) as untouched:
        assert untouched.query_value(APP, "Version").value == 2
        assert untouched.subkeys(APP + "\\Plugins") == ["New", "Old"]


def test_a_lower_left_in_wal_mode_is_read_through_its_wal_and_not_modified(tmp_path):
    with LayeredRegistry([], tmp_path / "unsealed.db") as reg:
        reg.set_value("HKCU", "v", REG_DWORD, 5)
    assert (tmp_path / "unsealed.db").read_bytes()[18] == 2                # WAL mode
    before = digest(tmp_path / "unsealed.db")
    with LayeredRegistry([tmp_path / "unsealed.db"], tmp_path / "up.db") as reg:
        assert reg.query_value("HKCU", "v").value == 5
        reg.set_value("HKCU", "v", REG_DWORD, 6)
    assert digest(tmp_path / "unsealed.db") == before


def test_a_deleted_value_is_hidden_by_a_tombstone_while_the_lower_keeps_it(image):
    reg, lowers = image
    reg.delete_value(APP, "path")
    fails(errno.ENOENT, reg.query_value, APP, "Path")
    assert "Path" not in [name for name, _ in reg.values(APP)]
    fails(errno.ENOENT, reg.delete_value, APP, "Path")                # already gone
    with LayeredRegistry(lowers, None) as below:
        assert below.query_value(APP, "Path").value == "C:\\app"
    reg.set_value(APP, "Path", REG_SZ, "D:\\app")                     # and it can come back
    assert reg.query_value(APP, "Path").value == "D:\\app"


def test_a_deleted_key_hides_its_whole_lower_subtree(image):
    reg, _ = image
    reg.delete_key(APP + "\\Plugins", tree=True)
    assert not reg.key_exists(APP + "\\Plugins")
    assert not reg.key_exists(APP + "\\Plugins\\Old")
    fails(errno.ENOENT, reg.query_value, APP + "\\Plugins\\Old", "Enabled")
    fails(errno.ENOENT, reg.subkeys, APP + "\\Plugins")
    assert reg.subkeys(APP) == []


def test_a_key_deleted_then_made_again_shows_nothing_of_the_lower_layers(image):
    reg, _ = image
    reg.delete_key(APP, tree=True)
    path, created = reg.create_key(APP + "\\Plugins")
    assert created and path == APP + "\\Plugins"
    assert reg.values(APP) == []
    assert reg.subkeys(APP) == ["Plugins"]
    assert reg.subkeys(APP + "\\Plugins") == []                       # not Old, not New
    assert not reg.key_exists(APP + "\\Plugins\\Old")
    fails(errno.ENOENT, reg.query_value, APP, "Version")
    # the parent was not recreated: its other lower content is still there
    assert reg.subkeys("HKLM\\Software\\Vendor") == ["App"]


def test_enumeration_merges_the_layers_sorted_without_duplicates_or_deleted_entries(tmp_path):
    def bottom(reg):
        for name in ("b", "D", "f", "Zeta"):
            reg.create_key(f"HKLM\\K\\{name}")
            reg.set_value("HKLM\\K", name, REG_DWORD, 1)
    make_layer(tmp_path / "bottom.db", bottom)
    with LayeredRegistry([tmp_path / "bottom.db"], tmp_path / "middle.db") as reg:
        for name in ("A", "c", "d"):                                  # "d" duplicates "D"
            reg.create_key(f"HKLM\\K\\{name}")
            reg.set_value("HKLM\\K", name, REG_DWORD, 2)
        reg.delete_key("HKLM\\K\\f")
        reg.delete_value("HKLM\\K", "f")
    seal_layer(tmp_path / "middle.db")
    with LayeredRegistry([tmp_path / "middle.db", tmp_path / "bottom.db"], tmp_path / "up.db") as reg:
        reg.create_key("HKLM\\K\\e")
        reg.delete_key("HKLM\\K\\b")
        reg.set_value("HKLM\\K", "e", REG_DWORD, 3)
        reg.delete_value("HKLM\\K", "b")
        assert reg.subkeys("HKLM\\K") == ["A", "c", "D", "e", "Zeta"]
        assert [(n, v.value) for n, v in reg.values("HKLM\\K")] == \
            [("A", 2), ("c", 2), ("D", 2), ("e", 3), ("Zeta", 1)]
        # index walks agree with the lists, from the start or after a name
        assert [reg.subkey_at("HKLM\\K", i)[1] for i in range(5)] == ["A", "c", "D", "e", "Zeta"]
        assert reg.subkey_at("HKLM\\K", 5) is None
        assert reg.subkey_at("HKLM\\K", 0, after="D") == ("E", "e")
        assert reg.value_at("HKLM\\K", 1, after="C")[1] == "e"


def test_deletions_and_recreations_in_an_image_layer_still_hide_the_layers_below_it(tmp_path):
    def bottom(reg):
        for sub in ("X", "Y"):
            reg.create_key(f"HKLM\\A\\{sub}\\Deep")
        reg.set_value("HKLM\\A", "old", REG_DWORD, 1)
        reg.set_value("HKLM\\A\\Y", "kept", REG_DWORD, 1)
    make_layer(tmp_path / "bottom.db", bottom)
    with LayeredRegistry([tmp_path / "bottom.db"], tmp_path / "middle.db") as reg:   # a container
        reg.delete_key("HKLM\\A\\Y\\Deep")
        reg.delete_key("HKLM\\A", tree=True)
        reg.create_key("HKLM\\A\\Y")                      # opaque: the old Y stays hidden
        reg.create_key("HKLM\\A\\Z")
    seal_layer(tmp_path / "middle.db")                      # ... committed as an image layer
    lowers = [tmp_path / "middle.db", tmp_path / "bottom.db"]
    with LayeredRegistry(lowers, tmp_path / "upper.db") as reg:
        assert reg.subkeys("HKLM\\A") == ["Y", "Z"]
        assert reg.values("HKLM\\A") == [] and reg.values("HKLM\\A\\Y") == []
        assert not reg.key_exists("HKLM\\A\\X") and not reg.key_exists("HKLM\\A\\Y\\Deep")
        reg.delete_key("HKLM\\A\\Y")
        assert reg.subkeys("HKLM\\A") == ["Z"] and reg.diff() == [("D", "HKLM\\A\\Y")]
        with LayeredRegistry([reg.flatten(tmp_path / "flat.db")], None) as flat:
            assert flat.walk() == reg.walk() == ["HKLM", "HKLM\\A", "HKLM\\A\\Z", "HKCU"]


def test_listings_longer_than_one_query_batch_merge_correctly(tmp_path):
    def bottom(reg):
        with reg.transaction():
            for i in range(0, 700, 2):
                reg.create_key(f"HKCU\\Many\\k{i:04}")
    make_layer(tmp_path / "bottom.db", bottom)
    with LayeredRegistry([tmp_path / "bottom.db"], tmp_path / "up.db") as reg:
        with reg.transaction():
            for i in range(1, 700, 2):
                reg.create_key(f"HKCU\\Many\\k{i:04}")
            for i in range(0, 700, 10):
                reg.delete_key(f"HKCU\\Many\\k{i:04}")
        expected = [f"k{i:04}" for i in range(700) if i % 10]
        assert reg.subkeys("HKCU\\Many") == expected


def test_names_are_case_insensitive_and_keep_the_spelling_they_were_made_with(image):
    reg, _ = image
    assert reg.key_path("hkey_local_machine\\SOFTWARE\\vendor\\APP") == APP
    path, created = reg.create_key("hklm\\software\\VENDOR\\app\\Sub")
    assert (path, created) == (APP + "\\Sub", True)
    assert reg.create_key(APP.upper() + "\\SUB") == (APP + "\\Sub", False)
    reg.set_value(APP, "CHANNEL", REG_SZ, "beta")
    assert ("Channel", Value(REG_SZ, encode_data(REG_SZ, "beta"))) in reg.values(APP)
    # Windows' upcase is per character: sharp s stays itself and matches only itself
    reg.create_key("HKCU\\Straße")
    assert reg.key_exists("HKCU\\STRAßE") and not reg.key_exists("HKCU\\STRASSE")


def test_the_registry_is_back_to_the_image_when_the_upper_is_discarded(image, tmp_path):
    reg, lowers = image
    reg.set_value(APP, "Version", REG_DWORD, 99)
    reg.delete_key(APP + "\\Plugins", tree=True)
    reg.close()
    for name in os.listdir(tmp_path):
        if name.startswith("upper.db"):
            os.unlink(tmp_path / name)
    with LayeredRegistry(lowers, tmp_path / "upper.db") as fresh:
        assert fresh.query_value(APP, "Version").value == 2
        assert fresh.subkeys(APP + "\\Plugins") == ["New", "Old"]
        assert fresh.diff() == []


def test_diff_lists_what_the_upper_adds_changes_and_deletes(image):
    reg, _ = image
    reg.create_key(APP + "\\Fresh")
    reg.set_value(APP + "\\Fresh", "", REG_SZ, "default")
    reg.set_value(APP, "Version", REG_DWORD, 3)
    reg.delete_value(APP, "Path")
    reg.delete_key(APP + "\\Plugins\\Old")
    reg.delete_key("HKCU\\Console")
    reg.create_key("HKCU\\Console")                     # deleted, then made again: changed
    assert reg.diff() == [
        ("C", "HKCU\\Console"),
        ("D", APP + "\\:Path"),
        ("C", APP + "\\:Version"),
        ("A", APP + "\\Fresh"),
        ("A", APP + "\\Fresh\\:"),
        ("D", APP + "\\Plugins\\Old"),
    ]


def test_a_key_made_and_deleted_in_the_upper_leaves_no_trace(image):
    reg, _ = image
    reg.create_key("HKCU\\Tmp\\Deep")
    reg.set_value("HKCU\\Tmp\\Deep", "x", REG_BINARY, b"\1")
    reg.delete_key("HKCU\\Tmp", tree=True)
    assert reg.diff() == []


def test_flatten_writes_the_merged_view_as_one_layer(image, tmp_path):
    reg, _ = image
    reg.delete_key(APP + "\\Plugins\\Old")
    reg.set_value("HKCU\\Console", "Font", REG_SZ, "Consolas")
    reg.set_value("HKLM", "AtTheRoot", REG_QWORD, 1 << 40)
    flat = reg.flatten(tmp_path / "flat.db")
    with LayeredRegistry([flat], None) as one:
        assert export_reg(one) == export_reg(reg)
    conn = sqlite3.connect(flat)
    assert conn.execute("SELECT count(*) FROM keys WHERE state != 1").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM vals WHERE deleted").fetchone() == (0,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()
    fails(errno.EEXIST, reg.flatten, flat)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".flat")] == []


# ------------------------------------------------------------------------------------- the model

def test_every_type_stores_and_reads_back_its_python_value(tmp_path):
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        cases = [(REG_SZ, "text ☃"), (REG_EXPAND_SZ, "%SystemRoot%\\x"), (REG_DWORD, 0xFFFFFFFF),
                 (REG_QWORD, 1 << 63), (REG_BINARY, b"\0\1\2"), (REG_MULTI_SZ, ["a", "b c"]),
                 (REG_MULTI_SZ, []), (REG_NONE, b""), (0x1234, b"\xff")]
        for i, (type_, value) in enumerate(cases):
            reg.set_value("HKCU", f"v{i}", type_, value)
        for i, (type_, value) in enumerate(cases):
            stored = reg.query_value("HKCU", f"v{i}")
            assert (stored.type, stored.value) == (type_, value)
        assert reg.query_value("HKCU", "v0").data == "text ☃\0".encode("utf-16-le")   # as a hive
        assert reg.query_value("HKCU", "v5").data == "a\0b c\0\0".encode("utf-16-le")


@pytest.mark.parametrize("type_, value", [(REG_DWORD, -1), (REG_DWORD, 1 << 32), (REG_QWORD, 1 << 64),
                                          (REG_SZ, 5), (REG_MULTI_SZ, ["ok", ""]),
                                          (REG_MULTI_SZ, ["a\0b"]), (REG_DWORD, True)])
def test_a_python_value_that_does_not_fit_its_type_is_refused(tmp_path, type_, value):
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        fails(errno.EINVAL, reg.set_value, "HKCU", "v", type_, value)
        assert reg.values("HKCU") == []


def test_names_paths_and_data_are_held_to_the_windows_limits(tmp_path):
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        longest = "k" * MAX_KEY_NAME
        reg.create_key("HKCU\\" + longest)
        fails(errno.ENAMETOOLONG, reg.create_key, "HKCU\\" + longest + "k")
        reg.set_value("HKCU", "v" * MAX_VALUE_NAME, REG_NONE, b"")
        fails(errno.ENAMETOOLONG, reg.set_value, "HKCU", "v" * (MAX_VALUE_NAME + 1), REG_NONE, b"")
        reg.create_key("HKCU\\" + "\\".join(["d"] * MAX_DEPTH))
        fails(errno.ENAMETOOLONG, reg.create_key, "HKCU\\" + "\\".join(["d"] * (MAX_DEPTH + 1)))
        fails(errno.ENAMETOOLONG, reg.create_key, "HKCU\\" + "\\".join(["n" * 255] * 128))  # > 32767
        reg.set_value("HKCU", "big", REG_BINARY, bytes(MAX_DATA))
        fails(errno.E2BIG, reg.set_value, "HKCU", "bigger", REG_BINARY, bytes(MAX_DATA + 1))
        for bad in ("HKCU\\a\\\\b", "HKCU\\a\\", "HKCU\\tab\there", "HKCU\\nul\0", "HKXX\\a", "",
                    "HKCU\\\ud800"):
            fails(errno.EINVAL, reg.create_key, bad)
        fails(errno.EINVAL, reg.set_value, "HKCU", "new\nline", REG_NONE, b"")
        fails(errno.EINVAL, reg.set_value, "HKCU", "v", -1, b"")
        fails(errno.EINVAL, reg.set_value, "HKCU", "v", 1 << 32, b"")
        assert not reg.key_exists("HKCU\\a")
        # value names may hold backslashes; the default value is ''
        reg.set_value("HKCU", "a\\b", REG_DWORD, 1)
        reg.set_value("HKCU", "", REG_DWORD, 2)
        assert reg.query_value("HKCU", "a\\b").value == 1 and reg.query_value("HKCU", "").value == 2


def test_root_keys_are_always_there_and_cannot_be_deleted(tmp_path):
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        assert reg.key_exists("HKEY_LOCAL_MACHINE") and reg.key_exists("hkcu")
        fails(errno.EACCES, reg.delete_key, "HKLM", tree=True)
        fails(errno.EACCES, reg.delete_key, "HKEY_CURRENT_USER")
        assert reg.create_key("HKEY_CURRENT_USER") == ("HKCU", False)


def test_delete_key_refuses_a_key_with_subkeys_unless_asked_for_the_tree(image):
    reg, _ = image
    fails(errno.ENOTEMPTY, reg.delete_key, APP + "\\Plugins")
    assert reg.subkeys(APP + "\\Plugins") == ["New", "Old"]
    reg.delete_key(APP + "\\Plugins\\New")                       # a leaf: fine
    reg.delete_key(APP + "\\Plugins", tree=True)
    assert not reg.key_exists(APP + "\\Plugins")
    fails(errno.ENOENT, reg.delete_key, APP + "\\Plugins")


def test_clearing_a_key_removes_its_subkeys_and_values_but_keeps_it(image):
    reg, _ = image
    reg.clear_key(APP)
    assert reg.key_exists(APP)
    assert reg.subkeys(APP) == [] and reg.values(APP) == []
    assert reg.subkeys("HKLM\\Software\\Vendor") == ["App"]


def test_a_read_only_registry_reads_but_refuses_every_write(image):
    _, lowers = image
    with LayeredRegistry(lowers, None) as reg:
        assert reg.read_only and reg.query_value(APP, "Version").value == 2
        fails(errno.EACCES, reg.create_key, "HKCU\\New")
        fails(errno.EACCES, reg.set_value, APP, "x", REG_DWORD, 1)
        fails(errno.EACCES, reg.delete_value, APP, "Path")
        fails(errno.EACCES, reg.delete_key, APP, tree=True)
        assert reg.diff() == []


def test_the_upper_layer_stops_at_its_quota_and_keeps_what_it_had(tmp_path):
    with LayeredRegistry([], tmp_path / "r.db", quota=256 * 1024) as reg:
        reg.set_value("HKCU", "small", REG_BINARY, b"x" * 1000)
        fails(errno.EDQUOT, reg.set_value, "HKCU", "big", REG_BINARY, bytes(MAX_DATA))
        assert [name for name, _ in reg.values("HKCU")] == ["small"]
        reg.delete_value("HKCU", "small")                        # shrinking is always allowed


# ----------------------------------------------------------------------------------- crash safety

def test_a_transaction_that_fails_midway_leaves_nothing_behind(tmp_path):
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        reg.set_value("HKCU", "kept", REG_DWORD, 1)
        with pytest.raises(RegistryError):
            with reg.transaction():
                reg.create_key("HKCU\\A\\B")
                reg.set_value("HKCU", "kept", REG_DWORD, 2)
                reg.delete_value("HKCU", "missing")              # ENOENT: the whole group goes
        assert not reg.key_exists("HKCU\\A")
        assert reg.query_value("HKCU", "kept").value == 1


def test_a_process_killed_inside_a_transaction_leaves_only_what_was_committed(tmp_path):
    db = tmp_path / "r.db"
    script = textwrap.dedent(f"""
        import os
        from hv.container.registry import LayeredRegistry, REG_DWORD
        reg = LayeredRegistry([], {str(db)!r})
        reg.set_value("HKCU", "committed", REG_DWORD, 1)
        with reg.transaction():
            reg.create_key("HKCU\\\\Half\\\\Done")
            for i in range(200):
                reg.set_value("HKCU\\\\Half", f"v{{i}}", REG_DWORD, i)
            os._exit(9)                          # dies with the transaction open
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    with LayeredRegistry([], db) as reg:
        assert reg.query_value("HKCU", "committed").value == 1
        assert not reg.key_exists("HKCU\\Half")
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


# --------------------------------------------------------------------------------- hostile layers

def test_a_file_that_is_not_a_registry_layer_is_refused(tmp_path):
    (tmp_path / "text.db").write_text("hello")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE keys (x)")
    other.close()
    for bad in ("text.db", "other.db"):
        fails(errno.EIO, LayeredRegistry, [tmp_path / bad], None)
        fails(errno.EIO, LayeredRegistry, [], tmp_path / bad)
    fails(errno.ENOENT, LayeredRegistry, [tmp_path / "missing.db"], None)
    create_layer(tmp_path / "new.db")
    fails(errno.EEXIST, create_layer, tmp_path / "new.db")


def test_a_layer_with_rows_of_the_wrong_types_gives_eio_not_a_crash(tmp_path):
    make_layer(tmp_path / "bad.db", lambda reg: reg.create_key("HKCU\\Fine"))
    conn = sqlite3.connect(tmp_path / "bad.db")
    conn.execute("INSERT INTO keys VALUES ('HKCU\\BLOB', 'HKCU', x'00ff', 1)")
    conn.execute("INSERT INTO vals VALUES ('HKCU\\FINE', 'V', 'v', 'not a number', x'00', 0)")
    conn.commit()
    conn.close()
    with LayeredRegistry([tmp_path / "bad.db"], None) as reg:
        fails(errno.EIO, reg.subkeys, "HKCU")
        fails(errno.EIO, reg.key_exists, "HKCU\\Blob")
        fails(errno.EIO, reg.query_value, "HKCU\\Fine", "v")
        fails(errno.EIO, reg.values, "HKCU\\Fine")


# ------------------------------------------------------------------------------------- .reg files

def rich(reg: LayeredRegistry) -> None:
    reg.create_key("HKLM\\Software\\Empty")
    k = "HKLM\\Software\\Odd ]Names[ \"q\" "            # brackets, quotes, a trailing space
    reg.create_key(k)
    reg.set_value(k, "", REG_SZ, "default ☃")
    reg.set_value(k, 'quote " and back \\ slash', REG_SZ, 'C:\\dir\\"x"')
    reg.set_value(k, "dw", REG_DWORD, 0x2A)
    reg.set_value(k, "short dword", REG_DWORD, b"\1\2")
    reg.set_value(k, "qw", REG_QWORD, 0x1122334455667788)
    reg.set_value(k, "bin", REG_BINARY, bytes(range(200)))
    reg.set_value(k, "exp", REG_EXPAND_SZ, "%PATH%;C:\\bin")
    reg.set_value(k, "multi", REG_MULTI_SZ, ["one", "two ☃"])
    reg.set_value(k, "none", REG_NONE, b"")
    reg.set_value(k, "custom", 0xABC, b"\xde\xad")
    reg.set_value(k, "sz without nul", REG_SZ, "abc".encode("utf-16-le"))
    reg.set_value(k, "sz with newline", REG_SZ, "two\nlines")
    reg.set_value(k, "odd sz", REG_SZ, b"\x41")
    reg.set_value("HKCU", "at root", REG_SZ, "")


def test_export_then_import_into_an_empty_registry_then_export_gives_the_same_text(tmp_path):
    with LayeredRegistry([], tmp_path / "a.db") as a, LayeredRegistry([], tmp_path / "b.db") as b:
        rich(a)
        text = export_reg(a)
        import_reg(b, text)
        assert export_reg(b) == text
        odd = "HKLM\\Software\\Odd ]Names[ \"q\" "
        assert b.values(odd) == a.values(odd) and len(a.values(odd)) == 13


def test_export_writes_the_regedit_forms_of_each_type(tmp_path):
    with LayeredRegistry([], tmp_path / "a.db") as reg:
        rich(reg)
        text = export_reg(reg, "HKLM\\Software\\odd ]names[ \"q\" ")
    assert all(len(line) <= 80 for line in text.split("\n"))
    binary = [line for line in text.split("\n") if line.startswith('"bin"=hex:')]
    assert binary and binary[0].endswith(",\\")              # long data is continued
    lines = text.replace(",\\\n  ", ",").split("\n")
    assert lines[:3] == ["Windows Registry Editor Version 5.00", "",
                         '[HKEY_LOCAL_MACHINE\\Software\\Odd ]Names[ "q" ]']
    assert '@="default ☃"' in lines
    assert '"quote \\" and back \\\\ slash"="C:\\\\dir\\\\\\"x\\""' in lines
    assert '"dw"=dword:0000002a' in lines
    assert '"short dword"=hex(4):01,02' in lines
    assert '"qw"=hex(b):88,77,66,55,44,33,22,11' in lines
    assert '"none"=hex(0):' in lines
    assert '"custom"=hex(abc):de,ad' in lines
    assert '"sz without nul"=hex(1):61,00,62,00,63,00' in lines
    assert '"multi"=hex(7):6f,00,6e,00,65,00,00,00,74,00,77,00,6f,00,20,00,03,26,00,00,00,00' in lines
    assert '"bin"=hex:' + ",".join(f"{i:02x}" for i in range(200)) in lines


def test_a_hand_written_reg_file_with_every_type_is_read(tmp_path):
    text = textwrap.dedent("""\
        Windows Registry Editor Version 5.00

        ; a comment
        [HKEY_CURRENT_USER\\Software\\Hand]
        @="the default"
        "Str"="a \\"quoted\\" C:\\\\path"
        "Dword"=dword:2A
        "Bin"=hex:de,ad,\\
          be,ef
        "Qword"=hex(b):01,00,00,00,00,00,00,00
        "Expand"=hex(2):25,00,50,00,41,00,54,00,48,00,25,00,00,00
        "Multi"=hex(7):61,00,00,00,62,00,00,00,00,00
        "None"=hex(0):
        "Spaced" = "ok"

        [HKEY_LOCAL_MACHINE\\Software\\Other\\Deep]
        """).replace("\n", "\r\n")
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        import_reg(reg, text)
        got = {name: (v.type, v.value) for name, v in reg.values("HKCU\\Software\\Hand")}
        assert got == {"": (REG_SZ, "the default"), "Str": (REG_SZ, 'a "quoted" C:\\path'),
                       "Dword": (REG_DWORD, 42), "Bin": (REG_BINARY, b"\xde\xad\xbe\xef"),
                       "Qword": (REG_QWORD, 1), "Expand": (REG_EXPAND_SZ, "%PATH%"),
                       "Multi": (REG_MULTI_SZ, ["a", "b"]), "None": (REG_NONE, b""),
                       "Spaced": (REG_SZ, "ok")}
        assert reg.key_exists("HKLM\\Software\\Other\\Deep")


def test_minus_sections_and_minus_values_delete_and_missing_ones_are_ignored(image):
    reg, _ = image
    import_reg(reg, "Windows Registry Editor Version 5.00\n\n"
                    "[-HKEY_LOCAL_MACHINE\\Software\\Vendor\\App\\Plugins]\n"
                    "\"ignored\"=\"in a deleted section\"\n"
                    "[-HKEY_LOCAL_MACHINE\\Software\\Nothing\\Here]\n"
                    "[HKEY_LOCAL_MACHINE\\Software\\Vendor\\App]\n"
                    "\"Path\"=-\n\"NeverWas\"=-\n")
    assert not reg.key_exists(APP + "\\Plugins")
    assert not reg.value_exists(APP, "Path")
    assert reg.value_exists(APP, "Version")


@pytest.mark.parametrize("bad, line", [
    ("REGEDIT4\n[HKEY_CURRENT_USER\\A]\n", 1),
    ("Windows Registry Editor Version 5.00\n\"v\"=\"before any section\"\n", 2),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n\"v\"=dword:123456789\n", 3),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n\"v\"=hex:1,2\n", 3),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n\"v\"=\"open\n", 3),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n\"v\"=\"a\\tb\"\n", 3),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n\"v\"=str:x\n", 3),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n[HKEY_NOWHERE\\B]\n", 3),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n[HKEY_CURRENT_USER\\B\n", 3),
    ("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\nv=1\n", 3),
])
def test_a_bad_reg_file_imports_nothing_and_names_its_line(tmp_path, bad, line):
    with LayeredRegistry([], tmp_path / "r.db") as reg:
        with pytest.raises(RegFileError, match=f"^line {line}: "):
            import_reg(reg, bad)
        assert reg.subkeys("HKCU") == [] and reg.diff() == []


def test_reg_files_are_written_as_regedit_does_and_read_in_either_encoding(tmp_path):
    text = "Windows Registry Editor Version 5.00\n\n[HKEY_CURRENT_USER\\☃]\n\n"
    write_reg_file(tmp_path / "a.reg", text)
    raw = (tmp_path / "a.reg").read_bytes()
    assert raw.startswith(b"\xff\xfe") and "\r\n".encode("utf-16-le") in raw
    assert decode_reg_file(raw).replace("\r\n", "\n") == text
    assert decode_reg_file(b"\xef\xbb\xbf" + text.encode()) == text
    fails(errno.EINVAL, decode_reg_file, b"\xff\xfe\x00")
    fails(errno.EINVAL, decode_reg_file, b"\xc3\x28")


names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\\"),
                min_size=1, max_size=12)
values = st.one_of(
    st.tuples(st.just(REG_SZ), st.text(st.characters(min_codepoint=1, max_codepoint=0xFFFF,
                                                     exclude_categories=("Cs",)), max_size=20)),
    st.tuples(st.just(REG_DWORD), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(REG_QWORD), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(REG_MULTI_SZ), st.lists(st.text(st.characters(min_codepoint=1, max_codepoint=0x7FF),
                                                      min_size=1, max_size=8), max_size=3)),
    st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=100)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.lists(st.tuples(st.lists(names, min_size=1, max_size=3),
                               st.lists(st.tuples(st.one_of(st.just(""), names), values), max_size=4)),
                     max_size=6))
def test_any_registry_survives_an_export_import_export_round_trip(tmp_path_factory, tree):
    where = tmp_path_factory.mktemp("rt")
    with LayeredRegistry([], where / "a.db") as a, LayeredRegistry([], where / "b.db") as b:
        for path, vals in tree:
            key = a.create_key("HKCU\\" + "\\".join(path))[0]
            for name, (type_, value) in vals:
                a.set_value(key, name, type_, value)
        text = export_reg(a)
        import_reg(b, text)
        assert export_reg(b) == text
        assert [(k, b.values(k)) for k in b.walk()] == [(k, a.values(k)) for k in a.walk()]


# ---------------------------------------------------------------------------------- hv registry

def test_hv_registry_exports_a_layer_to_a_file_and_imports_it_into_another(tmp_path, capsys):
    make_layer(tmp_path / "src.db", rich)
    out = tmp_path / "out.reg"
    assert main_registry(["export", "--db", str(tmp_path / "src.db"), "HKLM\\Software", "-o", str(out)]) == 0
    assert main_registry(["import", str(out), "--db", str(tmp_path / "dst.db")]) == 0
    assert main_registry(["export", "--db", str(tmp_path / "dst.db"), "hklm\\software"]) == 0
    printed = capsys.readouterr().out
    with LayeredRegistry([tmp_path / "src.db"], None) as src:
        assert printed == export_reg(src, "HKLM\\Software")
    assert decode_reg_file(out.read_bytes()).replace("\r\n", "\n") == printed


def test_hv_registry_uses_a_registry_or_image_its_caller_binds(image, tmp_path, capsys):
    reg, _ = image
    (tmp_path / "add.reg").write_text("Windows Registry Editor Version 5.00\n\n"
                                      "[HKEY_LOCAL_MACHINE\\Software\\Vendor\\App\\Plugins\\Added]\n")
    assert main_registry(["import", str(tmp_path / "add.reg")], registry=reg) == 0
    assert reg.subkeys(APP + "\\Plugins") == ["Added", "New", "Old"]
    assert main_registry(["export", APP + "\\Plugins"], registry=reg) == 0
    assert "[HKEY_LOCAL_MACHINE\\Software\\Vendor\\App\\Plugins\\Old]" in capsys.readouterr().out
    opened = []

    def open_image(name):
        opened.append(name)
        return LayeredRegistry(image[1], None)
    assert main_registry(["export", "--image", "base", "HKCU"], open_image=open_image) == 0
    assert opened == ["base"] and "[HKEY_CURRENT_USER\\Console]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["export"], "export wants --db FILE or --image NAME"),
    (["export", "--image", "x"], "--image needs the image store"),
    (["export", "--db", "{tmp}/missing.db"], "no such registry layer"),
    (["export", "--db", "{tmp}/text.db"], "not a registry layer"),
    (["export", "--db", "{tmp}/ok.db", "HKCU\\Nope"], "HKCU\\Nope: no such key"),
    (["export", "--db", "{tmp}/ok.db", "HKEY_CLASSES_ROOT"], "a key path starts with HKLM"),
    (["import", "{tmp}/missing.reg", "--db", "{tmp}/new.db"], "No such file"),
    (["import", "{tmp}/bad.reg", "--db", "{tmp}/new.db"], "bad.reg: line 3: "),
    (["import", "{tmp}/bad.reg"], "import wants --db FILE"),
    (["frobnicate"], "invalid choice"),
    ([], "the following arguments are required"),
])
def test_hv_registry_reports_bad_input_in_one_line_with_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "text.db").write_text("not sqlite")
    create_layer(tmp_path / "ok.db")
    (tmp_path / "bad.reg").write_text("Windows Registry Editor Version 5.00\n[HKEY_CURRENT_USER\\A]\n"
                                      "\"v\"=dword:xyz\n")
    assert main_registry([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("hv registry: error: ") and captured.err.count("\n") == 1
    assert message in captured.err
    if (tmp_path / "new.db").exists():                   # a failed import leaves the layer empty
        with LayeredRegistry([tmp_path / "new.db"], None) as left:
            assert left.walk() == ["HKLM", "HKCU"]
