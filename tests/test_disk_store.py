"""The disk store: raw images, HVOVL1 overlays, snapshots, durability, bad input."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices.disk_store import (
    BAD_COMMAND, FLAG_COMMITTING, OUT_OF_RANGE, SECTOR, WRITE_PROTECTED, Disk, DiskError,
    ImageError, check_image, read_header)
from hv.disk_tool import commit, create_overlay, info, main_disk

HD_SECTORS = 64          # a small hard disk image: 32 KiB


def pattern(n_sectors: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed + i // SECTOR) & 0xFF for i in range(n_sectors * SECTOR))


def sector(byte: int, n: int = 1) -> bytes:
    return bytes([byte]) * (SECTOR * n)


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def raw(tmp_path) -> Path:
    p = tmp_path / "base.img"
    p.write_bytes(pattern(HD_SECTORS))
    return p


@pytest.fixture
def overlay(tmp_path, raw) -> Path:
    ov = tmp_path / "ovl.hvo"
    create_overlay(ov, raw)
    return ov


def one_line_image_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- raw images

def test_raw_read_returns_the_file_content(raw):
    with Disk(raw, "hd") as d:
        assert d.read(3, 5) == raw.read_bytes()[3 * SECTOR:8 * SECTOR]


def test_raw_write_is_in_the_file_after_flush(raw):
    d = Disk(raw, "hd")
    d.write(10, sector(0xAB, 2))
    d.flush()
    assert raw.read_bytes()[10 * SECTOR:12 * SECTOR] == sector(0xAB, 2)
    d.close()


def test_raw_read_of_many_sectors_is_one_pread(raw, monkeypatch):
    calls = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: calls.append(n) or real(fd, n, off))
    with Disk(raw, "hd") as d:
        calls.clear()
        d.read(0, 48)
    assert calls == [48 * SECTOR]


def test_raw_write_of_many_sectors_is_one_pwrite(raw, monkeypatch):
    calls = []
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, b, off: calls.append(len(b)) or real(fd, b, off))
    with Disk(raw, "hd") as d:
        d.write(0, sector(1, 40))
    assert calls == [40 * SECTOR]


def test_hard_disk_capacity_is_the_file_and_geometry_is_qemus_guess(tmp_path):
    p = tmp_path / "small.img"
    p.write_bytes(sector(0x11, 3))
    with Disk(p, "hd") as d:
        assert d.sectors == 3
        assert (d.geometry.cylinders, d.geometry.heads, d.geometry.sectors) == (2, 16, 63)
        with pytest.raises(DiskError) as e:
            d.read(2, 2)
        assert e.value.code == OUT_OF_RANGE


def test_hard_disk_write_past_the_end_is_refused_and_the_file_keeps_its_size(tmp_path):
    p = tmp_path / "small.img"
    p.write_bytes(sector(0x11, 3))
    with Disk(p, "hd") as d:
        with pytest.raises(DiskError):
            d.write(5, sector(0x22))
    assert p.stat().st_size == 3 * SECTOR


def test_floppy_geometry_comes_from_the_image_size(tmp_path):
    p = tmp_path / "f.img"
    p.write_bytes(bytes(737280))
    with Disk(p, "floppy") as d:
        assert (d.geometry.cylinders, d.geometry.heads, d.geometry.sectors) == (80, 2, 9)
        assert d.cmos_type == 3 and d.sectors == 1440


def test_chs_outside_the_geometry_is_out_of_range(raw):
    with Disk(raw, "hd") as d:
        with pytest.raises(DiskError) as e:
            d.chs_to_lba(0, 16, 1)
        assert e.value.code == OUT_OF_RANGE


@pytest.mark.parametrize("lba, count", [(-1, 1), (0, -1), (16 * 63, 1), (16 * 63 - 1, 2),
                                        (1 << 70, 1)])
def test_read_outside_the_disk_is_out_of_range(raw, lba, count):
    with Disk(raw, "hd") as d:
        with pytest.raises(DiskError) as e:
            d.read(lba, count)
        assert e.value.code == OUT_OF_RANGE


def test_write_outside_the_disk_is_out_of_range_and_changes_nothing(raw):
    before = digest(raw)
    with Disk(raw, "hd") as d:
        with pytest.raises(DiskError) as e:
            d.write(16 * 63 - 1, sector(5, 2))
        assert e.value.code == OUT_OF_RANGE
    assert digest(raw) == before


def test_partial_sector_write_is_a_bad_command(raw):
    with Disk(raw, "hd") as d:
        with pytest.raises(DiskError) as e:
            d.write(0, b"x" * 100)
        assert e.value.code == BAD_COMMAND


def test_read_only_disk_refuses_writes_with_write_protected(raw):
    before = digest(raw)
    with Disk(raw, "hd", readonly=True) as d:
        with pytest.raises(DiskError) as e:
            d.write(0, sector(9))
        assert e.value.code == WRITE_PROTECTED
    assert digest(raw) == before


def test_read_only_file_attached_writable_is_a_one_line_image_error(raw, monkeypatch):
    raw.chmod(0o444)
    opened = []
    real = os.open
    monkeypatch.setattr(os, "open", lambda p, fl, *a: opened.append(fl) or real(p, fl, *a))
    with pytest.raises(ImageError) as e:
        Disk(raw, "hd")
    assert "read-only" in one_line_image_error(e)
    assert not any(fl & (os.O_WRONLY | os.O_RDWR) for fl in opened)


def test_read_only_file_attaches_with_ro(raw):
    raw.chmod(0o444)
    with Disk(raw, "hd", readonly=True) as d:
        assert d.read(0, 1) == raw.read_bytes()[:SECTOR]


def test_missing_image_is_a_one_line_image_error(tmp_path):
    with pytest.raises(ImageError) as e:
        Disk(tmp_path / "nope.img", "hd")
    assert "no such image" in one_line_image_error(e)


def test_unreadable_image_is_a_one_line_image_error(raw):
    if os.geteuid() == 0:
        pytest.skip("root can read a file without read permission")
    raw.chmod(0)
    with pytest.raises(ImageError) as e:
        Disk(raw, "hd")
    assert "cannot read" in one_line_image_error(e)


def test_empty_image_is_a_one_line_image_error(tmp_path):
    p = tmp_path / "e.img"
    p.write_bytes(b"")
    with pytest.raises(ImageError) as e:
        Disk(p, "hd")
    assert "empty" in one_line_image_error(e)


def test_image_size_not_a_multiple_of_512_is_a_one_line_image_error(tmp_path):
    p = tmp_path / "odd.img"
    p.write_bytes(bytes(1000))
    with pytest.raises(ImageError) as e:
        Disk(p, "hd")
    assert "multiple of 512" in one_line_image_error(e)
    assert p.read_bytes() == bytes(1000)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError) as e:
        Disk(tmp_path, "hd")
    assert "regular file" in one_line_image_error(e)


# ---------------------------------------------------------------- snapshot

def test_snapshot_reads_back_its_own_writes(raw):
    with Disk(raw, "hd", snapshot=True) as d:
        d.write(4, sector(0x5A, 3))
        assert d.read(3, 5) == raw.read_bytes()[3 * SECTOR:4 * SECTOR] + sector(0x5A, 3) + \
            raw.read_bytes()[7 * SECTOR:8 * SECTOR]


def test_snapshot_never_touches_the_image(raw):
    before = digest(raw)
    d = Disk(raw, "hd", snapshot=True)
    d.write(0, sector(0xEE, 10))
    d.flush()
    d.close()
    assert digest(raw) == before


def test_snapshot_attaches_a_read_only_file(raw):
    raw.chmod(0o444)
    with Disk(raw, "hd", snapshot=True) as d:
        d.write(0, sector(1))
        assert d.read(0, 1) == sector(1)


def test_snapshot_keeps_written_data_out_of_memory(raw):
    with Disk(raw, "hd", snapshot=True) as d:
        d.write(0, sector(7, 20))
        assert os.fstat(d._backend.fd).st_size == 20 * SECTOR   # in the unlinked temp file
        assert os.fstat(d._backend.fd).st_nlink == 0


def test_snapshot_over_an_overlay_changes_neither_file(raw, overlay):
    b, o = digest(raw), digest(overlay)
    with Disk(overlay, "hd", snapshot=True) as d:
        d.write(1, sector(3))
        assert d.read(1, 1) == sector(3)
    assert (digest(raw), digest(overlay)) == (b, o)


# ---------------------------------------------------------------- overlays

def test_created_overlay_starts_with_the_hvovl1_magic(overlay):
    assert overlay.read_bytes()[:6] == b"HVOVL1"


def test_overlay_reads_unwritten_sectors_from_the_base(raw, overlay):
    with Disk(overlay, "hd") as d:
        assert d.read(0, HD_SECTORS) == raw.read_bytes()


def test_overlay_has_the_geometry_of_its_base(raw, overlay):
    with Disk(overlay, "hd") as a, Disk(raw, "hd", readonly=True) as b:
        assert (a.sectors, a.geometry) == (b.sectors, b.geometry)
    assert check_image(overlay, writable=True) == raw.stat().st_size


def test_overlay_write_reads_back_and_mixes_with_the_base(raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(5, sector(0xC3, 2))
        want = raw.read_bytes()[4 * SECTOR:5 * SECTOR] + sector(0xC3, 2) + \
            raw.read_bytes()[7 * SECTOR:8 * SECTOR]
        assert d.read(4, 4) == want


def test_overlay_writes_never_modify_the_base(raw, overlay):
    before, mtime = digest(raw), raw.stat().st_mtime_ns
    with Disk(overlay, "hd") as d:
        d.write(0, sector(0xFF, HD_SECTORS))
        d.flush()
    assert digest(raw) == before and raw.stat().st_mtime_ns == mtime


def test_overlay_opens_its_base_read_only(raw, overlay, monkeypatch):
    opened = []
    real = os.open

    def spy(p, fl, *a):
        opened.append((Path(p).resolve(), fl))
        return real(p, fl, *a)
    monkeypatch.setattr(os, "open", spy)
    Disk(overlay, "hd").close()
    base_flags = [fl for p, fl in opened if p == raw.resolve()]
    assert base_flags and not any(fl & (os.O_WRONLY | os.O_RDWR) for fl in base_flags)


def test_overlay_writes_survive_close_and_reopen(overlay):
    with Disk(overlay, "hd") as d:
        d.write(9, sector(0x42, 3))
    with Disk(overlay, "hd", readonly=True) as d:
        assert d.read(9, 3) == sector(0x42, 3)


def test_overlay_has_the_capacity_of_its_base(raw, overlay):
    with Disk(overlay, "hd") as d:
        assert d.sectors == HD_SECTORS
        with pytest.raises(DiskError):
            d.write(HD_SECTORS, sector(0x77))


def test_overlay_sequential_write_is_one_pwrite_and_reads_back_with_one_pread(overlay,
                                                                              monkeypatch):
    with Disk(overlay, "hd") as d:
        writes, reads = [], []
        rw, rr = os.pwrite, os.pread
        monkeypatch.setattr(os, "pwrite", lambda fd, b, o: writes.append(len(b)) or rw(fd, b, o))
        monkeypatch.setattr(os, "pread", lambda fd, n, o: reads.append(n) or rr(fd, n, o))
        d.write(8, sector(1, 32))
        d.read(8, 32)
        monkeypatch.undo()
    assert writes == [32 * SECTOR] and reads == [32 * SECTOR]


def test_overlay_rewrite_of_a_sector_reuses_its_slot(overlay):
    with Disk(overlay, "hd") as d:
        d.write(3, sector(1))
        d.write(3, sector(2))
        d.flush()
        assert d.read(3, 1) == sector(2)
    assert "allocated: 1 sectors" in info(overlay)


def test_relative_base_is_found_after_moving_overlay_and_base_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    Path("a/base.img").write_bytes(pattern(8))
    create_overlay("a/o.hvo", "a/base.img")
    assert read_header("a/o.hvo").base_path == "base.img"
    os.rename("a/base.img", "base.img")   # keep mtime: rename, not copy
    os.rename("a/o.hvo", "o.hvo")
    with Disk("o.hvo", "hd") as d:
        assert d.read(0, 8) == pattern(8)


def test_absolute_base_path_is_stored_as_given(tmp_path, raw):
    create_overlay(tmp_path / "abs.hvo", raw.resolve())
    assert read_header(tmp_path / "abs.hvo").base_path == str(raw.resolve())


def test_overlay_over_an_overlay_reads_through_both(tmp_path, raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(1, sector(0x10))
    top = tmp_path / "top.hvo"
    create_overlay(top, overlay)
    with Disk(top, "hd") as d:
        d.write(2, sector(0x20))
        got = d.read(0, 3)
    assert got == raw.read_bytes()[:SECTOR] + sector(0x10) + sector(0x20)


def test_create_refuses_to_overwrite_an_existing_file(raw, overlay):
    before = digest(overlay)
    with pytest.raises(ImageError) as e:
        create_overlay(overlay, raw)
    assert "already exists" in one_line_image_error(e)
    assert digest(overlay) == before


def test_create_over_a_bad_base_is_an_image_error_and_creates_nothing(tmp_path):
    bad = tmp_path / "odd.img"
    bad.write_bytes(bytes(100))
    with pytest.raises(ImageError):
        create_overlay(tmp_path / "o.hvo", bad)
    assert not (tmp_path / "o.hvo").exists()


def test_changed_base_is_a_one_line_image_error_and_nothing_is_modified(raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(0, sector(1))
    data = bytearray(raw.read_bytes())
    data[0] ^= 0xFF
    raw.write_bytes(bytes(data))
    b, o = digest(raw), digest(overlay)
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    assert "changed since the overlay was made" in one_line_image_error(e)
    assert (digest(raw), digest(overlay)) == (b, o)


def test_base_with_the_same_bytes_but_a_new_mtime_counts_as_changed(raw, overlay):
    st = raw.stat()
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ImageError) as e:
        check_image(overlay, writable=True)
    assert "changed" in one_line_image_error(e)


def test_base_restored_with_old_mtime_but_new_first_sector_counts_as_changed(raw, overlay):
    st = raw.stat()
    data = bytearray(raw.read_bytes())
    data[0] ^= 1
    raw.write_bytes(bytes(data))
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    assert "changed" in one_line_image_error(e)


def test_missing_base_is_a_one_line_image_error(raw, overlay):
    raw.unlink()
    before = digest(overlay)
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    assert "missing" in one_line_image_error(e)
    assert digest(overlay) == before


@pytest.mark.parametrize("offset", [0, 5, 9, 17, 30, 90, 100])
def test_corrupt_overlay_header_is_a_one_line_image_error(overlay, offset):
    data = bytearray(overlay.read_bytes())
    data[offset] ^= 0x5A
    overlay.write_bytes(bytes(data))
    before = digest(overlay)
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    one_line_image_error(e)
    assert digest(overlay) == before


def test_truncated_overlay_is_a_one_line_image_error(overlay):
    os.truncate(overlay, 600)
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    assert "corrupt overlay header" in one_line_image_error(e)


def test_table_pointing_past_the_data_is_a_one_line_image_error(overlay):
    hdr = read_header(overlay)
    with open(overlay, "r+b") as f:
        f.seek(hdr.table_offset)
        f.write((1000).to_bytes(4, "little"))
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    assert "allocation table" in one_line_image_error(e)


def test_read_only_overlay_file_attached_writable_is_an_image_error(overlay):
    overlay.chmod(0o444)
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    assert "read-only" in one_line_image_error(e)


def test_read_only_overlay_refuses_writes_with_write_protected(overlay):
    with Disk(overlay, "hd", readonly=True) as d:
        with pytest.raises(DiskError) as e:
            d.write(0, sector(1))
        assert e.value.code == WRITE_PROTECTED


# ---------------------------------------------------------------- commit and info

def test_commit_merges_the_overlay_into_the_base(raw, overlay):
    want = bytearray(raw.read_bytes())
    with Disk(overlay, "hd") as d:
        d.write(2, sector(0xA1, 3))
        d.write(40, sector(0xB2))
    want[2 * SECTOR:5 * SECTOR] = sector(0xA1, 3)
    want[40 * SECTOR:41 * SECTOR] = sector(0xB2)
    assert commit(overlay) == 4
    assert raw.read_bytes() == bytes(want)


def test_commit_empties_the_overlay_which_stays_usable_over_the_new_base(raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(2, sector(0xA1))
    commit(overlay)
    assert "allocated: 0 sectors" in info(overlay)
    with Disk(overlay, "hd") as d:
        assert d.read(2, 1) == sector(0xA1)


def test_commit_of_an_empty_overlay_merges_nothing(raw, overlay):
    before = digest(raw)
    assert commit(overlay) == 0
    assert digest(raw) == before


def test_commit_refuses_a_changed_base(raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(0, sector(1))
    raw.write_bytes(pattern(HD_SECTORS, seed=3))
    before = digest(raw)
    with pytest.raises(ImageError) as e:
        commit(overlay)
    assert "changed" in one_line_image_error(e)
    assert digest(raw) == before


def test_commit_of_a_raw_image_is_an_image_error(raw):
    with pytest.raises(ImageError) as e:
        commit(raw)
    assert "not an hv overlay" in one_line_image_error(e)


def test_interrupted_commit_blocks_attach_until_commit_runs_again(raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(6, sector(0x66))
    hdr = read_header(overlay)
    hdr.flags |= FLAG_COMMITTING
    with open(overlay, "r+b") as f:
        f.write(hdr.pack())
    raw.write_bytes(raw.read_bytes())                  # the base was partly updated
    with pytest.raises(ImageError) as e:
        Disk(overlay, "hd")
    assert "interrupted" in one_line_image_error(e)
    assert commit(overlay) == 1
    assert raw.read_bytes()[6 * SECTOR:7 * SECTOR] == sector(0x66)
    Disk(overlay, "hd").close()


def test_info_of_a_raw_image_names_format_and_size(raw):
    out = info(raw)
    assert "format: raw" in out and f"size: {HD_SECTORS * SECTOR} bytes" in out


def test_info_of_an_overlay_names_base_size_and_allocation(raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(0, sector(1, 3))
    out = info(overlay)
    assert "format: overlay" in out
    assert f"virtual size: {HD_SECTORS * SECTOR} bytes" in out
    assert f"base: {raw}" in out and "base state: unchanged" in out
    assert "allocated: 3 sectors" in out


def test_info_reports_a_missing_base_instead_of_failing(raw, overlay):
    raw.unlink()
    assert "missing" in info(overlay)


def test_main_disk_create_info_commit_round_trip(tmp_path, raw, capsys):
    ov = tmp_path / "cli.hvo"
    assert main_disk(["create", str(ov), "--base", str(raw)]) == 0
    with Disk(ov, "hd") as d:
        d.write(1, sector(0x31))
    assert main_disk(["info", str(ov)]) == 0
    assert "allocated: 1 sectors" in capsys.readouterr().out
    assert main_disk(["commit", str(ov)]) == 0
    assert "merged 1 sectors" in capsys.readouterr().out
    assert raw.read_bytes()[SECTOR:2 * SECTOR] == sector(0x31)


def test_main_disk_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    assert main_disk(["info", str(tmp_path / "nope.img")]) == 2
    err = capsys.readouterr().err
    assert "no such image" in err and len(err.strip().splitlines()) == 1


def test_main_disk_create_needs_a_size_or_a_base(tmp_path, capsys):
    assert main_disk(["create", str(tmp_path / "o.hvo")]) == 2
    err = capsys.readouterr().err
    assert "--size" in err and "--base" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.hvo").exists()


# ---------------------------------------------------------------- durability

CHILD = textwrap.dedent("""
    import time
    from hv.devices.disk_store import Disk
    d = Disk({path!r}, "hd")
    d.write(3, bytes([0xD7]) * 512 * 5)
    d.flush()
    print("flushed", flush=True)
    time.sleep(60)
""")


def kill_after_flush(path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(path=str(path))], cwd=path.parent,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_flushed_raw_write_survives_sigkill(raw):
    kill_after_flush(raw)
    assert raw.read_bytes()[3 * SECTOR:8 * SECTOR] == sector(0xD7, 5)


def test_flushed_overlay_write_survives_sigkill(raw, overlay):
    before = digest(raw)
    kill_after_flush(overlay)
    with Disk(overlay, "hd", readonly=True) as d:
        assert d.read(3, 5) == sector(0xD7, 5)
    assert digest(raw) == before


def test_flush_fsyncs_overlay_data_before_its_table(overlay, monkeypatch):
    events = []
    real_fsync, real_pwrite = os.fsync, os.pwrite
    with Disk(overlay, "hd") as d:
        d.write(0, sector(1))
        table_off = read_header(overlay).table_offset
        monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
        monkeypatch.setattr(os, "pwrite", lambda fd, b, o: events.append(
            "table" if o == table_off else "data") or real_pwrite(fd, b, o))
        d.flush()
        monkeypatch.undo()
    assert events == ["fsync", "table", "fsync"]


def test_unflushed_overlay_allocation_is_not_yet_in_the_table_on_disk(overlay):
    d = Disk(overlay, "hd")
    d.write(0, sector(1))
    assert "allocated: 0 sectors" in info(overlay)
    d.flush()
    assert "allocated: 1 sectors" in info(overlay)
    d.close()


# ---------------------------------------------------------------- property tests

OPS = st.lists(st.tuples(st.sampled_from(["read", "write", "flush"]),
                         st.integers(-4, 16 * 63 + 4), st.integers(-2, 40),
                         st.integers(0, 255)), max_size=40)


def run_model(d: Disk, model: bytearray, ops) -> None:
    n = len(model) // SECTOR
    for op, lba, count, byte in ops:
        if op == "write":
            count = max(count, 0)        # a write's count is its data length
        inside = lba >= 0 and count >= 0 and lba + count <= n
        try:
            if op == "read":
                got = d.read(lba, count)
                assert inside and got == bytes(model[lba * SECTOR:(lba + count) * SECTOR])
            elif op == "write":
                data = bytes([byte]) * (count * SECTOR)
                d.write(lba, data)
                assert inside
                model[lba * SECTOR:(lba + count) * SECTOR] = data
            else:
                d.flush()
        except DiskError as e:
            assert not inside and e.code == OUT_OF_RANGE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_raw_image_behaves_like_a_bytearray(ops):
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / "r.img"
        p.write_bytes(pattern(HD_SECTORS))
        model = bytearray(p.read_bytes())
        with Disk(p, "hd") as d:
            run_model(d, model, ops)
            assert d.read(0, d.sectors) == bytes(model)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_overlay_behaves_like_a_bytearray_and_commits_it_to_the_base(ops):
    with tempfile.TemporaryDirectory() as t:
        base, ov = Path(t) / "b.img", Path(t) / "o.hvo"
        base.write_bytes(pattern(HD_SECTORS))
        create_overlay(ov, base)
        model = bytearray(base.read_bytes())
        before = digest(base)
        with Disk(ov, "hd") as d:
            run_model(d, model, ops)
        assert digest(base) == before
        with Disk(ov, "hd", readonly=True) as d:
            assert d.read(0, d.sectors) == bytes(model)
        commit(ov)
        merged = base.read_bytes()
        assert merged == bytes(model[:len(merged)])
        assert not any(model[len(merged):])


@settings(max_examples=200, deadline=None)
@given(st.integers(-(1 << 40), 1 << 40) | st.integers(-3, 6),
       st.integers(-(1 << 40), 1 << 40) | st.integers(-3, 6),
       st.binary(max_size=1200) | st.sampled_from([bytes(512), bytes(1024), b"\x5a" * 512]))
def test_hostile_read_and_write_arguments_succeed_exactly_when_inside_the_disk(lba, count, data):
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / "r.img"
        p.write_bytes(pattern(4))
        with Disk(p, "hd", snapshot=True) as d:
            inside = lba >= 0 and count >= 0 and lba + count <= d.sectors
            try:
                got = d.read(lba, count)
            except DiskError as e:
                assert not inside and e.code == OUT_OF_RANGE
            else:
                assert inside and got == pattern(4)[lba * SECTOR:(lba + count) * SECTOR]
            n = len(data) // SECTOR
            fits = len(data) % SECTOR == 0 and lba >= 0 and lba + n <= d.sectors
            try:
                d.write(lba, data)
            except DiskError as e:
                assert not fits
                assert e.code == (BAD_COMMAND if len(data) % SECTOR else OUT_OF_RANGE)
            else:
                assert fits and d.read(lba, n) == data
            assert p.read_bytes() == pattern(4)            # a snapshot never reaches the file


def test_commit_into_a_read_only_base_is_an_image_error_and_keeps_the_overlay(raw, overlay):
    with Disk(overlay, "hd") as d:
        d.write(0, sector(1))
    raw.chmod(0o444)
    before = digest(overlay)
    with pytest.raises(ImageError) as e:
        commit(overlay)
    assert "read-only" in one_line_image_error(e)
    assert digest(overlay) == before


def test_overlay_chain_loop_is_an_image_error_not_a_recursion_error(tmp_path, raw, overlay,
                                                                    monkeypatch):
    # A hand-made header may name any base; a loop must end in a one-line error.
    from hv.devices import disk_store
    monkeypatch.setattr(disk_store, "check_base", lambda p, hdr: Path(p))
    with pytest.raises(ImageError) as e:
        check_image(overlay, writable=False)
    assert "chain" in one_line_image_error(e)


def test_overlay_over_a_short_floppy_image_covers_the_whole_floppy(tmp_path):
    base = tmp_path / "boot.img"
    base.write_bytes(sector(0x55, 2))
    ov = tmp_path / "f.hvo"
    create_overlay(ov, base)
    with Disk(ov, "floppy") as d:
        assert d.sectors == 2880
        d.write(2879, sector(0x99))
        assert d.read(0, 3) == sector(0x55, 2) + sector(0)
        assert d.read(2879, 1) == sector(0x99)
