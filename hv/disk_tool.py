"""`hv disk create|commit|info`: blank disks and differencing overlays on the host side.

    hv disk create FILE --size 64M       a blank raw disk (sparse, all zeros)
    hv disk create OVERLAY --base BASE   new, empty HVOVL1 overlay over BASE
    hv disk commit OVERLAY               merge the overlay's sectors into its base
    hv disk info IMAGE                   format, size, base, allocated sectors

The overlay format is described in ``devices/disk_store.py``. ``commit`` copies
every allocated sector into the base, fsyncs the base, and then *empties* the
overlay (table zeroed, data truncated, fingerprint of the updated base stored),
so the overlay stays usable as a fresh overlay over the new base. While it copies,
the overlay header carries FLAG_COMMITTING: an interrupted commit leaves the
overlay refusing to attach, and running ``commit`` again finishes the job (the
copy is idempotent).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hv.cliargs import OneLineParser, parse
from hv.memory import parse_bytes

from hv.devices.disk_store import (
    FLAG_COMMITTING, SECTOR, ImageError, OverlayBackend, OverlayHeader, _load_table,
    _pwrite_full, check_base, check_image, fingerprint, is_overlay, is_writable, open_backend,
    read_header)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_overlay(overlay: str | os.PathLike, base: str | os.PathLike) -> None:
    """Create an empty overlay at ``overlay`` over ``base`` (raw or overlay).

    A relative ``base`` is stored relative to the overlay's directory, so the pair
    can be moved together; an absolute one is stored as given."""
    ov, b = Path(overlay), Path(base)
    vsize = check_image(b, writable=False)
    if ov.exists() or ov.is_symlink():
        raise ImageError(f"{ov}: already exists (refusing to overwrite)")
    if not ov.parent.is_dir() and str(ov.parent):
        raise ImageError(f"{ov}: directory {ov.parent} does not exist")
    stored = str(b) if b.is_absolute() else os.path.relpath(
        os.path.abspath(b), os.path.abspath(ov.parent if str(ov.parent) else "."))
    if len(os.fsencode(stored)) > 4096:
        raise ImageError(f"{b}: base path is too long")
    try:
        fp = fingerprint(b)
    except OSError as e:
        raise ImageError(f"{b}: cannot read ({e.strerror})") from None
    hdr = OverlayHeader.new(stored, vsize, fp)
    try:
        fd = os.open(ov, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise ImageError(f"{ov}: cannot create ({e.strerror})") from None
    try:
        _pwrite_full(fd, hdr.pack(), 0)
        os.ftruncate(fd, hdr.data_offset)        # a zero table: nothing allocated
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        os.unlink(ov)
        raise ImageError(f"{ov}: cannot write ({e.strerror})") from None
    os.close(fd)
    _fsync_dir(ov)


# The largest disk the 28-bit ATA and virtio-blk guests can address is far smaller; this
# only keeps a typo (64T) from making a file the host cannot hold.
MAX_BLANK = 2 << 40


def create_blank(path: str | os.PathLike, size: int) -> None:
    """A raw disk of ``size`` bytes (a multiple of 512), all zeros and sparse."""
    p = Path(path)
    if size <= 0 or size % SECTOR:
        raise ImageError(f"--size {size}: a disk is a positive whole number of 512-byte sectors")
    if size > MAX_BLANK:
        raise ImageError(f"--size {size}: larger than {MAX_BLANK >> 40} TiB")
    if p.exists() or p.is_symlink():
        raise ImageError(f"{p}: already exists (refusing to overwrite)")
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise ImageError(f"{p}: cannot create ({e.strerror})") from None
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        os.unlink(p)
        raise ImageError(f"{p}: cannot write ({e.strerror})") from None
    os.close(fd)
    _fsync_dir(p)


def _require_overlay(path: Path) -> None:
    if not path.exists():
        raise ImageError(f"{path}: no such image")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{path}: cannot read (permission denied)")
    if not is_overlay(path):
        raise ImageError(f"{path}: not an hv overlay (no HVOVL1 header)")


def commit(overlay: str | os.PathLike) -> int:
    """Merge the overlay's sectors into its base (fsynced), then empty the overlay.
    Returns the number of sectors merged."""
    ov = Path(overlay)
    _require_overlay(ov)
    if not is_writable(ov):
        raise ImageError(f"{ov}: overlay is read-only (commit empties it)")
    hdr = read_header(ov)
    base = hdr.base_location(ov)
    if hdr.flags & FLAG_COMMITTING:
        if not base.exists():                 # resuming: the base was already touched
            raise ImageError(f"{ov}: base image {base} is missing")
    else:
        check_base(ov, hdr)
    if base.exists() and not is_writable(base):
        raise ImageError(f"{ov}: base image {base} is read-only; cannot commit into it")
    check_image(base, writable=True)
    try:
        fd = os.open(ov, os.O_RDWR)
    except OSError as e:
        raise ImageError(f"{ov}: cannot open ({e.strerror})") from None
    try:
        table = _load_table(fd, hdr, ov)
        src = OverlayBackend(fd, table, hdr.data_offset, _NoBase(), hdr.table_offset)
        used = sorted(i for i, s in enumerate(table) if s) if src.allocated() else []
        if not used and not hdr.flags & FLAG_COMMITTING:
            return 0
        hdr.flags |= FLAG_COMMITTING
        _pwrite_full(fd, hdr.pack(), 0)
        os.fsync(fd)
        dst = open_backend(base, writable=True)
        try:
            i = 0
            while i < len(used):               # one read and one write per run of sectors
                j = i + 1
                while j < len(used) and used[j] == used[j - 1] + 1 and j - i < 2048:
                    j += 1
                dst.write(used[i], src.read(used[i], j - i))
                i = j
            dst.flush()
        finally:
            dst.close()
        # The base now holds everything: empty the overlay and bind it to the new base.
        os.ftruncate(fd, hdr.table_offset)
        os.ftruncate(fd, hdr.data_offset)
        hdr.base_size, hdr.base_mtime_ns, hdr.base_sample = fingerprint(base)
        hdr.flags &= ~FLAG_COMMITTING
        _pwrite_full(fd, hdr.pack(), 0)
        os.fsync(fd)
        return len(used)
    except OSError as e:
        raise ImageError(f"{ov}: commit failed ({e.strerror})") from None
    finally:
        os.close(fd)


class _NoBase:
    """Commit reads only allocated sectors; anything else is a bug."""
    format = "none"

    def read(self, lba: int, count: int) -> bytes:
        raise AssertionError("commit read an unallocated sector")

    def close(self) -> None:
        pass


def info(path: str | os.PathLike) -> str:
    """A few lines describing the image: format, size, base, allocated sectors."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{p}: no such image")
    if not p.is_file():
        raise ImageError(f"{p}: not a regular file")
    if not is_overlay(p):
        size = check_image(p, writable=False)
        return (f"image: {p}\nformat: raw\n"
                f"size: {size} bytes ({size // SECTOR} sectors)\n")
    hdr = read_header(p)
    try:
        fd = os.open(p, os.O_RDONLY)
        try:
            table = _load_table(fd, hdr, p)
            file_size = os.fstat(fd).st_size
        finally:
            os.close(fd)
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror})") from None
    allocated = len(table) - table.count(0)
    base = hdr.base_location(p)
    try:
        check_base(p, hdr)
        state = "unchanged"
    except ImageError as e:
        state = str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
    return (f"image: {p}\nformat: overlay (HVOVL1 v1)\n"
            f"virtual size: {hdr.virtual_size} bytes ({hdr.virtual_size // SECTOR} sectors)\n"
            f"base: {hdr.base_path}" + (f" ({base})" if str(base) != hdr.base_path else "") + "\n"
            f"base state: {state}\n"
            f"allocated: {allocated} sectors ({allocated * SECTOR} bytes)\n"
            f"file size: {file_size} bytes\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="hv disk", description="Manage disk images and overlays.")
    sub = p.add_subparsers(dest="action", required=True, metavar="{create,commit,info}")
    c = sub.add_parser("create", help="create a blank raw disk (--size) or an empty overlay "
                                      "over a base image (--base)")
    c.add_argument("overlay", metavar="FILE")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--size", metavar="SIZE",
                      help="a blank raw disk of SIZE bytes: 1440K, 64M, 2G")
    what.add_argument("--base", metavar="BASE",
                      help="an overlay: the image it reads unwritten sectors from")
    m = sub.add_parser("commit", help="merge an overlay into its base, then empty it")
    m.add_argument("overlay", metavar="OVERLAY")
    i = sub.add_parser("info", help="show an image's format, size, base and allocation")
    i.add_argument("image", metavar="IMAGE")
    return p


def main_disk(argv: list[str] | None = None) -> int:
    """`hv disk ...`; returns the exit status (2 for bad input, as `hv run`)."""
    args, status = parse(build_parser(), argv, 'hv disk: error: ')
    if args is None:
        return status
    try:
        if args.action == "create" and args.size is not None:
            try:
                size = parse_bytes(args.size, "disk size")
            except ValueError as e:
                raise ImageError(f"--size {args.size}: {e}") from None
            create_blank(args.overlay, size)
            print(f"created blank disk {args.overlay} ({size} bytes)")
        elif args.action == "create":
            create_overlay(args.overlay, args.base)
            print(f"created overlay {args.overlay} over {args.base}")
        elif args.action == "commit":
            n = commit(args.overlay)
            print(f"merged {n} sectors into the base of {args.overlay}")
        else:
            sys.stdout.write(info(args.image))
    except ImageError as e:
        print(f"hv: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main_disk())
