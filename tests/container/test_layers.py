"""The layered root: overlay semantics over OCI-format layers, and confinement.

Layers are built here as directories in the OCI on-disk form (``.wh.NAME`` whiteouts,
``.wh..wh..opq`` opaque markers). The random differential tests against the kernel
(openat2 RESOLVE_IN_ROOT, overlayfs) are in test_layers_hypothesis.py.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from hv.container import layers as layers_mod
from hv.container.layers import (DT_DIR, DT_LNK, DT_REG, OPAQUE_MARKER, FsError, LayeredRoot,
                                  Volume)

SECRET = b"host secret: never in a container"


class Link(str):
    """A symlink target in a layer spec."""


def mklayer(path: Path, spec: dict) -> Path:
    """A layer directory from {relative path: content}: bytes/str = file, None = directory,
    Link(target) = symlink. Parent directories are made as needed."""
    path.mkdir(parents=True, exist_ok=True)
    for rel, what in spec.items():
        p = path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if what is None:
            p.mkdir(exist_ok=True)
        elif isinstance(what, Link):
            os.symlink(str(what), p)
        else:
            p.write_bytes(what.encode() if isinstance(what, str) else what)
    return path


def read(root: LayeredRoot, path: str) -> bytes:
    fd = root.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def write(root: LayeredRoot, path: str, data: bytes,
          flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> None:
    fd = root.open(path, flags)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def err(fn, *args) -> str:
    """The errno name a call fails with ('' if it succeeds)."""
    try:
        fn(*args)
    except FsError as e:
        return errno.errorcode[e.errno]
    return ""


def names(root: LayeredRoot, path: str) -> list[str]:
    return [e.name for e in root.listdir(path)]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def image(tmp_path):
    """Two lower layers (OCI form) and an empty upper; a sentinel tree beside them."""
    base = mklayer(tmp_path / "base", {
        "etc/passwd": "root:x:0:0\n", "etc/hosts": "127.0.0.1 localhost\n",
        "etc/old.d/a.conf": "a", "etc/old.d/b.conf": "b",
        "usr/bin/tool": "#!tool", "usr/lib/libc.so": "libc", "var/log": None,
        "bin": Link("usr/bin"), "data/keep": "keep",
    })
    os.chmod(base / "usr/bin/tool", 0o751)
    os.utime(base / "usr/bin/tool", ns=(1_000_000_000, 1_500_000_000_123))
    top = mklayer(tmp_path / "top", {
        "etc/.wh.hosts": "", "etc/motd": "hello\n", "data/.wh..wh..opq": "", "data/new": "new",
    })
    sentinel = mklayer(tmp_path / "sentinel", {"secret": SECRET})
    upper = tmp_path / "upper"
    root = LayeredRoot([top, base], upper)
    yield root, tmp_path
    root.close()
    assert (sentinel / "secret").read_bytes() == SECRET


# -- merged view --------------------------------------------------------------------------------

def test_lookups_go_top_down_and_directories_merge(image):
    root, _ = image
    assert names(root, "/etc") == ["motd", "old.d", "passwd"]
    assert read(root, "/etc/motd") == b"hello\n"
    assert read(root, "/etc/passwd") == b"root:x:0:0\n"


def test_a_whiteout_in_an_upper_layer_hides_the_lower_file(image):
    root, _ = image
    assert err(root.stat, "/etc/hosts") == "ENOENT"
    assert "hosts" not in names(root, "/etc")


def test_an_opaque_directory_hides_every_lower_entry(image):
    root, _ = image
    assert names(root, "/data") == ["new"]
    assert err(root.stat, "/data/keep") == "ENOENT"


def test_whiteout_and_marker_files_are_never_visible(image):
    root, tmp = image
    write(root, "/etc/motd", b"x")
    root.unlink("/etc/passwd")
    root.rmdir("/var/log")
    for d in ("/", "/etc", "/data", "/var"):
        assert not [n for n in names(root, d) if n.startswith(".wh.")]
    assert err(root.stat, "/etc/.wh.hosts") == "ENOENT"
    assert err(root.stat, "/data/" + OPAQUE_MARKER) == "ENOENT"
    assert err(root.open, "/etc/.wh.passwd", os.O_RDONLY) == "ENOENT"


def test_a_guest_cannot_create_whiteout_names_or_the_registry_folder(image):
    root, _ = image
    assert err(root.open, "/etc/.wh.passwd", os.O_WRONLY | os.O_CREAT) == "EINVAL"
    assert err(root.mkdir, "/.wh..wh..opq") == "EINVAL"
    assert err(root.symlink, "x", "/etc/.wh.x") == "EINVAL"
    assert err(root.rename, "/etc/motd", "/etc/.wh.motd") == "EINVAL"
    assert err(root.link, "/etc/motd", "/.wh.motd") == "EINVAL"
    assert err(root.mkdir, "/.hv") == "EINVAL"
    root.mkdir("/etc/.hv")                    # only the root's .hv is reserved
    assert names(root, "/etc")[0] == ".hv"
    assert read(root, "/etc/passwd") == b"root:x:0:0\n"


def test_listdir_gives_d_types_and_the_inodes_stat_gives(image):
    root, _ = image
    entries = {e.name: e for e in root.listdir("/")}
    assert entries["etc"].d_type == DT_DIR and entries["bin"].d_type == DT_LNK
    assert {e.d_type for e in root.listdir("/usr/bin")} == {DT_REG}
    for name, e in entries.items():
        assert e.ino == root.stat("/" + name, follow=False).st_ino


# -- copy-up ------------------------------------------------------------------------------------

def test_writing_a_lower_file_copies_it_up_and_leaves_the_layer_alone(image):
    root, tmp = image
    write(root, "/etc/passwd", b"changed\n")
    assert read(root, "/etc/passwd") == b"changed\n"
    assert (tmp / "base/etc/passwd").read_text() == "root:x:0:0\n"
    assert (tmp / "upper/etc/passwd").read_bytes() == b"changed\n"


def test_copy_up_preserves_mode_and_times_and_keeps_symlinks_symlinks(image):
    root, tmp = image
    before = root.stat("/usr/bin/tool")
    fd = root.open("/usr/bin/tool", os.O_RDWR)
    os.close(fd)
    after = root.stat("/usr/bin/tool")
    assert (tmp / "upper/usr/bin/tool").exists()
    assert stat.S_IMODE(after.st_mode) == 0o751
    assert after.st_mtime_ns == before.st_mtime_ns == 1_500_000_000_123
    assert after.st_ino == before.st_ino            # the guest sees one file throughout
    root.utime("/bin", 5_000_000_000, 6_000_000_000)   # follows the link: copies up usr/bin
    assert (tmp / "upper/usr/bin").is_dir() and not (tmp / "upper/bin").exists()
    root.rename("/bin", "/bin2")
    assert os.readlink(tmp / "upper/bin2") == "usr/bin"
    assert root.readlink("/bin2") == "usr/bin"


def test_an_append_open_copies_up_the_whole_file_first(image):
    root, _ = image
    write(root, "/etc/passwd", b"daemon\n", os.O_WRONLY | os.O_APPEND)
    assert read(root, "/etc/passwd") == b"root:x:0:0\ndaemon\n"


def test_o_trunc_copies_up_an_empty_file(image):
    root, tmp = image
    fd = root.open("/usr/lib/libc.so", os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert read(root, "/usr/lib/libc.so") == b""
    assert (tmp / "base/usr/lib/libc.so").read_bytes() == b"libc"


def test_a_read_only_open_does_not_copy_up(image):
    root, tmp = image
    read(root, "/usr/lib/libc.so")
    root.stat("/usr/lib/libc.so")
    assert not (tmp / "upper/usr").exists()


# -- deletes and opaque directories --------------------------------------------------------------

def test_deleting_a_lower_file_leaves_a_whiteout(image):
    root, tmp = image
    root.unlink("/etc/passwd")
    assert err(root.stat, "/etc/passwd") == "ENOENT"
    assert (tmp / "upper/etc/.wh.passwd").is_file()
    assert (tmp / "base/etc/passwd").exists()


def test_deleting_an_upper_only_file_leaves_no_whiteout(image):
    root, tmp = image
    write(root, "/etc/fresh", b"1")
    root.unlink("/etc/fresh")
    assert not (tmp / "upper/etc/.wh.fresh").exists() and not (tmp / "upper/etc/fresh").exists()


def test_recreating_a_deleted_file_removes_its_whiteout(image):
    root, tmp = image
    root.unlink("/etc/passwd")
    write(root, "/etc/passwd", b"new\n")
    assert read(root, "/etc/passwd") == b"new\n"
    assert not (tmp / "upper/etc/.wh.passwd").exists()


def test_a_directory_removed_and_created_again_is_opaque(image):
    root, tmp = image
    root.unlink("/etc/old.d/a.conf")
    root.unlink("/etc/old.d/b.conf")
    root.rmdir("/etc/old.d")
    assert err(root.stat, "/etc/old.d") == "ENOENT"
    root.mkdir("/etc/old.d", 0o700)
    assert names(root, "/etc/old.d") == []
    assert (tmp / f"upper/etc/old.d/{OPAQUE_MARKER}").is_file()
    assert stat.S_IMODE(root.stat("/etc/old.d").st_mode) == 0o700


def test_rmdir_of_a_merged_directory_with_entries_is_enotempty(image):
    root, _ = image
    assert err(root.rmdir, "/etc/old.d") == "ENOTEMPTY"
    root.unlink("/etc/old.d/a.conf")
    assert err(root.rmdir, "/etc/old.d") == "ENOTEMPTY"
    root.unlink("/etc/old.d/b.conf")
    root.rmdir("/etc/old.d")


# -- rename and link ----------------------------------------------------------------------------

def test_renaming_a_lower_directory_copies_its_tree_and_whites_out_the_old_name(image):
    root, tmp = image
    root.unlink("/usr/lib/libc.so")
    root.rename("/usr", "/opt")
    assert err(root.stat, "/usr") == "ENOENT"
    assert (tmp / "upper/.wh.usr").is_file()
    assert read(root, "/opt/bin/tool") == b"#!tool"
    assert names(root, "/opt/lib") == []               # the deletion moved with it
    assert stat.S_IMODE(root.stat("/opt/bin/tool").st_mode) == 0o751
    root.mkdir("/usr")                                  # a new /usr shows nothing old
    assert names(root, "/usr") == []


def test_renaming_over_an_empty_lower_directory_hides_its_old_contents(image):
    root, _ = image
    root.mkdir("/fresh")
    write(root, "/fresh/f", b"f")
    root.unlink("/etc/old.d/a.conf")
    root.unlink("/etc/old.d/b.conf")
    root.rename("/fresh", "/etc/old.d")
    assert names(root, "/etc/old.d") == ["f"]


def test_renaming_a_file_over_another_replaces_it(image):
    root, _ = image
    root.rename("/etc/motd", "/etc/passwd")
    assert read(root, "/etc/passwd") == b"hello\n"
    assert err(root.stat, "/etc/motd") == "ENOENT"


def test_rename_follows_linux_rules_for_kinds_and_ancestors(image):
    root, _ = image
    assert err(root.rename, "/etc", "/etc/old.d/x") == "EINVAL"
    assert err(root.rename, "/etc/old.d/a.conf", "/etc") == "ENOTEMPTY"   # over its ancestor
    assert err(root.rename, "/etc/passwd", "/usr/bin") == "EISDIR"
    assert err(root.rename, "/etc", "/etc/passwd") == "EINVAL"       # into itself
    assert err(root.rename, "/etc/old.d", "/usr/lib/libc.so") == "ENOTDIR"
    assert err(root.rename, "/usr", "/etc") == "ENOTEMPTY"
    assert err(root.rename, "/", "/x") == "EBUSY"
    assert err(root.rename, "/nothing", "/x") == "ENOENT"
    root.rename("/etc/passwd", "/etc/passwd")           # the same file: nothing happens
    assert read(root, "/etc/passwd") == b"root:x:0:0\n"


def test_a_hard_link_to_a_lower_file_copies_it_up_and_shares_the_data(image):
    root, tmp = image
    root.link("/etc/passwd", "/etc/passwd.link")
    assert root.stat("/etc/passwd").st_nlink == 2
    write(root, "/etc/passwd.link", b"both\n")
    assert read(root, "/etc/passwd") == b"both\n"
    up = tmp / "upper/etc"
    assert os.stat(up / "passwd").st_ino == os.stat(up / "passwd.link").st_ino
    assert err(root.link, "/etc", "/etc2") == "EPERM"
    assert err(root.link, "/etc/passwd", "/etc/motd") == "EEXIST"


# -- diff ----------------------------------------------------------------------------------------

def test_diff_lists_added_changed_and_deleted_paths_sorted(image):
    root, _ = image
    write(root, "/etc/passwd", b"x")
    root.unlink("/etc/motd")
    root.mkdir("/srv")
    write(root, "/srv/index.html", b"<p>")
    root.unlink("/etc/old.d/a.conf")
    root.unlink("/etc/old.d/b.conf")
    root.rmdir("/etc/old.d")
    assert root.diff() == [("C", "/etc"), ("D", "/etc/motd"), ("D", "/etc/old.d"),
                           ("C", "/etc/passwd"), ("A", "/srv"), ("A", "/srv/index.html")]


def test_diff_of_an_untouched_container_is_empty(image):
    root, _ = image
    read(root, "/etc/passwd")
    assert root.diff() == []


# -- open flags -----------------------------------------------------------------------------------

def test_open_honours_excl_nofollow_directory_and_refuses_writing_directories(image):
    root, _ = image
    assert err(root.open, "/etc/passwd", os.O_WRONLY | os.O_CREAT | os.O_EXCL) == "EEXIST"
    assert err(root.open, "/bin", os.O_CREAT | os.O_EXCL | os.O_WRONLY) == "EEXIST"
    assert err(root.open, "/bin", os.O_RDONLY | os.O_NOFOLLOW) == "ELOOP"
    assert err(root.open, "/etc/passwd", os.O_RDONLY | os.O_DIRECTORY) == "ENOTDIR"
    assert err(root.open, "/etc", os.O_WRONLY) == "EISDIR"
    assert err(root.open, "/etc", os.O_RDONLY | os.O_CREAT) == "EISDIR"
    assert err(root.open, "/etc/new/", os.O_WRONLY | os.O_CREAT) == "EISDIR"
    assert err(root.open, "/etc/passwd", os.O_ACCMODE) == "EINVAL"
    fd = root.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)
        assert os.get_inheritable(fd) is False
    finally:
        os.close(fd)


def test_o_creat_through_a_dangling_symlink_creates_its_target_inside_the_root(image):
    root, tmp = image
    root.symlink("/etc/made-by-link", "/dangling")
    write(root, "/dangling", b"via link")
    assert read(root, "/etc/made-by-link") == b"via link"
    assert (tmp / "upper/etc/made-by-link").exists()


def test_a_new_file_gets_exactly_the_mode_asked_for(image):
    root, _ = image
    old = os.umask(0o077)
    try:
        fd = root.open("/etc/m", os.O_WRONLY | os.O_CREAT, 0o664)
        os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat("/etc/m").st_mode) == 0o664


def test_chmod_truncate_and_utime_copy_up_and_apply(image):
    root, tmp = image
    root.chmod("/etc/passwd", 0o600)
    root.truncate("/usr/lib/libc.so", 2)
    root.utime("/etc/motd", 7_000_000_000, 8_000_000_000)
    assert stat.S_IMODE(root.stat("/etc/passwd").st_mode) == 0o600
    assert read(root, "/usr/lib/libc.so") == b"li"
    assert root.stat("/etc/motd").st_mtime_ns == 8_000_000_000
    assert (tmp / "base/usr/lib/libc.so").read_bytes() == b"libc"
    assert err(root.truncate, "/etc", 0) == "EISDIR"
    assert err(root.truncate, "/etc/passwd", -1) == "EINVAL"


def test_access_reports_missing_paths_and_bad_modes(image):
    root, _ = image
    root.access("/etc/passwd", os.R_OK | os.W_OK)
    assert err(root.access, "/etc/none", os.F_OK) == "ENOENT"
    assert err(root.access, "/etc/passwd", 0o10) == "EINVAL"


# -- read-only roots and volumes -------------------------------------------------------------------

def test_a_read_only_root_refuses_every_write_with_erofs(tmp_path):
    base = mklayer(tmp_path / "base", {"etc/passwd": "x", "d": None})
    root = LayeredRoot([base], None)
    assert read(root, "/etc/passwd") == b"x"
    for call in [(root.open, "/etc/passwd", os.O_WRONLY), (root.open, "/new", os.O_CREAT | os.O_WRONLY),
                 (root.mkdir, "/x"), (root.unlink, "/etc/passwd"), (root.rmdir, "/d"),
                 (root.rename, "/d", "/e"), (root.symlink, "t", "/s"), (root.chmod, "/d", 0o700),
                 (root.truncate, "/etc/passwd", 0), (root.link, "/etc/passwd", "/l"),
                 (root.access, "/etc/passwd", os.W_OK)]:
        assert err(*call) == "EROFS", call
    assert err(root.mkdir, "/d") == "EEXIST"            # as Linux: EEXIST before EROFS
    assert root.diff() == []
    assert sorted(os.listdir(base)) == ["d", "etc"]


def test_volumes_take_writes_directly_and_are_confined_to_their_folder(tmp_path):
    base = mklayer(tmp_path / "base", {"etc/passwd": "x"})
    vol = mklayer(tmp_path / "vol", {"in-volume": "v", "up": Link("../../../.."),
                                     "abs": Link("/etc/passwd")})
    ro = mklayer(tmp_path / "ro", {"r": "r"})
    mklayer(tmp_path / "sentinel", {"secret": SECRET})
    root = LayeredRoot([base], tmp_path / "upper",
                       [Volume(vol, "/mnt/data"), Volume(ro, "/ro", readonly=True)])
    try:
        write(root, "/mnt/data/out", b"to host")
        assert (vol / "out").read_bytes() == b"to host"
        assert read(root, "/mnt/data/in-volume") == b"v"
        assert read(root, "/mnt/data/abs") == b"x"          # absolute: the container's /etc
        assert root.resolve("/mnt/data/up") == "/"          # '..' climbs the guest tree, not the host
        assert err(root.open, "/mnt/data/up/sentinel/secret", os.O_RDONLY) == "ENOENT"
        assert root.resolve("/mnt/data/..") == "/mnt"
        assert err(root.rename, "/mnt/data/out", "/out") == "EXDEV"
        assert err(root.link, "/mnt/data/out", "/out") == "EXDEV"
        assert err(root.rename, "/etc/passwd", "/mnt/data/passwd") == "EXDEV"
        assert err(root.rmdir, "/mnt/data") == "EBUSY"
        assert err(root.rename, "/mnt/data", "/elsewhere") == "EBUSY"
        assert err(root.rename, "/mnt", "/elsewhere") == "EBUSY"
        assert err(root.open, "/ro/r", os.O_WRONLY) == "EROFS"
        assert err(root.mkdir, "/ro/x") == "EROFS"
        assert read(root, "/ro/r") == b"r"
        assert names(root, "/mnt") == ["data"]
        assert root.stat("/mnt/data").st_dev != root.stat("/").st_dev
        root.mkdir("/mnt/data/.wh.plain")                   # volumes are not layered
        assert (vol / ".wh.plain").is_dir()
        assert ("A", "/mnt/data") in root.diff() and ("A", "/mnt/data/out") not in root.diff()
    finally:
        root.close()


def test_a_bad_volume_mount_point_is_an_error(tmp_path):
    base = mklayer(tmp_path / "base", {"file": "x"})
    vol = mklayer(tmp_path / "vol", {})
    with pytest.raises(FsError) as e:
        LayeredRoot([base], tmp_path / "up", [Volume(vol, "/file")])
    assert e.value.errno == errno.ENOTDIR
    with pytest.raises(FsError) as e:
        LayeredRoot([base], None, [Volume(vol, "/missing")])
    assert e.value.errno == errno.EROFS
    with pytest.raises(FsError) as e:
        LayeredRoot([base], tmp_path / "up", [Volume(vol, "/")])
    assert e.value.errno == errno.EINVAL


def test_volume_specs_parse_as_docker_writes_them(tmp_path):
    assert Volume.parse("/h:/g") == Volume(Path("/h"), "/g", False)
    assert Volume.parse("/h:/g:ro") == Volume(Path("/h"), "/g", True)
    for bad in ("/h", "/h:g", ":/g", "/h:/g:rx", "/h:/g:ro:x"):
        with pytest.raises(ValueError):
            Volume.parse(bad)


# -- confinement by hand ------------------------------------------------------------------------------

@pytest.fixture
def hostile(tmp_path):
    """A layer full of ways out; the sentinel beside it must never be reached."""
    sentinel = mklayer(tmp_path / "sentinel", {"secret": SECRET})
    base = mklayer(tmp_path / "base", {
        "etc/passwd": "inside",
        "abs": Link(str(sentinel)),                      # the host's absolute path
        "rel": Link("../../sentinel"),                   # relative, past the layer root
        "deep": Link("../" * 50 + "sentinel/secret"),
        "root": Link("/"), "etc/up": Link("../.."),
        "loop1": Link("loop2"), "loop2": Link("loop1"), "self": Link("self"),
    })
    os.link(sentinel / "secret", tmp_path / "outside-link")   # a host hard link, outside
    root = LayeredRoot([base], tmp_path / "upper")
    yield root, tmp_path, sentinel
    root.close()
    assert (sentinel / "secret").read_bytes() == SECRET
    assert sorted(os.listdir(sentinel)) == ["secret"]


def test_dotdot_at_the_root_stays_at_the_root(hostile):
    root, *_ = hostile
    assert root.resolve("/../../..") == "/"
    assert root.resolve("/etc/../../../etc/passwd") == "/etc/passwd"
    assert read(root, "/../../../../etc/passwd") == b"inside"
    assert root.resolve("/etc/up") == "/"


def test_symlinks_resolve_inside_the_container_never_on_the_host(hostile):
    root, tmp, sentinel = hostile
    for path in ("/abs/secret", "/rel/secret", "/deep", "/root" + str(sentinel) + "/secret",
                 str(sentinel) + "/secret", "/etc/up/../sentinel/secret"):
        assert err(root.open, path, os.O_RDONLY) == "ENOENT", path
        assert err(root.stat, path) == "ENOENT", path
    assert root.resolve("/root/etc/passwd") == "/etc/passwd"
    assert root.resolve("/rel", follow=False) == "/rel"
    # O_CREAT through the link names a path inside the container, whose folders do not exist
    assert err(write, root, "/abs", b"a new file") == "ENOENT"
    assert not (tmp / "upper").exists() or os.listdir(tmp / "upper") == []


def test_symlink_loops_give_eloop_after_forty_links(tmp_path):
    chain = {f"l{i}": Link(f"l{i + 1}") for i in range(40)}
    chain["l40"] = "end"
    base = mklayer(tmp_path / "base", chain | {"a": Link("b"), "b": Link("a")})
    root = LayeredRoot([base], None)
    assert read(root, "/l1") == b"end"                     # 39 links
    assert read(root, "/l0") == b"end"                     # 40 links: Linux's limit
    root2 = LayeredRoot([mklayer(tmp_path / "more", {"m": Link("l0")}), base], None)
    assert err(root2.open, "/m", os.O_RDONLY) == "ELOOP"   # 41
    assert err(root.stat, "/a") == "ELOOP"
    assert err(root.open, "/a/x", os.O_WRONLY | os.O_CREAT) == "ELOOP"
    assert root.readlink("/a") == "b"


def test_long_names_long_paths_and_nul_are_refused(hostile):
    root, *_ = hostile
    assert err(root.stat, "/" + "n" * 256) == "ENAMETOOLONG"
    assert err(root.mkdir, "/" + "n" * 256) == "ENAMETOOLONG"
    assert err(root.stat, "/" + "n" * 255) == "ENOENT"
    assert err(root.stat, "/" + "a/" * 2048) == "ENAMETOOLONG"
    assert err(root.stat, "/etc/" + "./" * 2044) == ""      # 4094 bytes: fine
    assert err(root.open, "/etc/passwd\0/x", os.O_RDONLY) == "EINVAL"
    assert err(root.symlink, "a\0b", "/s") == "EINVAL"
    assert err(root.stat, "") == "ENOENT"
    root.mkdir("/" + "n" * 255)


def test_hard_links_can_only_name_files_inside_the_container(hostile):
    root, tmp, sentinel = hostile
    for old in (str(sentinel) + "/secret", "/abs/secret", "/rel/secret", "/../outside-link"):
        assert err(root.link, old, "/stolen") == "ENOENT", old
    root.link("/etc/passwd", "/mine")
    assert read(root, "/mine") == b"inside"
    assert os.stat(sentinel / "secret").st_nlink == 2      # only the test's own link


def test_a_symlink_created_by_the_guest_is_stored_verbatim_and_never_followed_by_the_host(hostile):
    root, tmp, sentinel = hostile
    root.symlink(str(sentinel / "secret"), "/mine")
    assert os.readlink(tmp / "upper/mine") == str(sentinel / "secret")
    assert err(root.open, "/mine", os.O_RDONLY) == "ENOENT"
    assert err(root.chmod, "/mine", 0o777) == "ENOENT"
    assert err(root.truncate, "/mine", 0) == "ENOENT"
    root.unlink("/mine")
    assert not (tmp / "upper/mine").exists()


def test_a_deep_path_with_many_dotdots_resolves_with_bounded_descriptors(tmp_path, monkeypatch):
    depth = 300
    base = mklayer(tmp_path / "base", {"/".join(["d"] * depth) + "/f": "bottom"})
    root = LayeredRoot([base], tmp_path / "upper")
    before = open_fds()
    peak = [0]

    class CountingOs:                     # the most descriptors open at any host open()
        def open(self, *args, **kw):
            fd = os.open(*args, **kw)
            peak[0] = max(peak[0], len(open_fds()))
            return fd

        def __getattr__(self, name):
            return getattr(os, name)

    monkeypatch.setattr(layers_mod, "os", CountingOs())
    deep = "/" + "/".join(["d"] * depth)
    assert read(root, deep + "/f") == b"bottom"
    assert root.resolve(deep + "/.." * (depth - 1)) == "/d"
    zigzag = deep + "/.." * 150 + "/d" * 150 + "/f"
    assert read(root, zigzag) == b"bottom"
    write(root, deep + "/g", b"up")
    root.rename(deep + "/g", "/g")
    monkeypatch.setattr(layers_mod, "os", os)
    assert open_fds() == before
    assert peak[0] - len(before) < 2 * layers_mod.CHAIN_KEEP + 8     # not one per level


def test_no_operation_leaks_a_descriptor_even_when_it_fails(image):
    root, _ = image
    before = open_fds()
    for call in [(root.stat, "/etc/passwd"), (root.stat, "/nope/x"), (root.listdir, "/etc"),
                 (root.rename, "/usr", "/opt"), (root.rename, "/opt", "/etc"), (root.diff,),
                 (root.unlink, "/etc/hosts"), (root.link, "/etc/passwd", "/p"),
                 (root.mkdir, "/etc"), (root.resolve, "/bin/tool")]:
        err(*call)
    assert open_fds() == before


def test_a_host_side_swap_mid_walk_cannot_lead_outside(image, monkeypatch):
    """Replace a layer directory by a symlink to the sentinel just before, and just after,
    the walk opens it: the host never follows, the guest never sees the secret."""
    root, tmp = image
    real_open = os.open
    victim = tmp / "base/etc"

    def swap():
        os.rename(victim, tmp / "base/etc.moved")
        os.symlink(tmp / "sentinel", victim)

    def unswap():
        os.unlink(victim)
        os.rename(tmp / "base/etc.moved", victim)

    class RacingOs:
        def __init__(self, when):
            self.when, self.done = when, False

        def open(self, path, flags, mode=0o777, *, dir_fd=None):
            racing = path == "etc" and dir_fd is not None and not self.done
            if racing and self.when == "before":
                self.done = True
                swap()
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            if racing and self.when == "after":
                self.done = True
                swap()
            return fd

        def __getattr__(self, name):
            return getattr(os, name)

    for when in ("before", "after"):
        monkeypatch.setattr(layers_mod, "os", RacingOs(when))
        try:
            for path in ("/etc/secret", "/etc/passwd"):
                try:
                    assert SECRET not in read(root, path)
                except FsError:
                    pass
        finally:
            monkeypatch.setattr(layers_mod, "os", os)
            if victim.is_symlink():
                unswap()
    assert read(root, "/etc/passwd") == b"root:x:0:0\n"


def test_special_files_in_a_layer_are_not_opened(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    os.mkfifo(base / "fifo")
    root = LayeredRoot([base], tmp_path / "upper")
    assert stat.S_ISFIFO(root.stat("/fifo").st_mode)
    assert err(root.open, "/fifo", os.O_RDONLY) == "ENXIO"    # and never blocks the host
    assert err(root.open, "/fifo", os.O_WRONLY) == "ENXIO"


def test_from_directory_is_a_writable_root_over_one_folder(tmp_path):
    top = mklayer(tmp_path / "top", {"bin/prog": "elf"})
    root = LayeredRoot.from_directory(top)
    write(root, "/bin/out", b"o")
    assert (top / "bin/out").read_bytes() == b"o"
    root.unlink("/bin/prog")
    assert sorted(os.listdir(top / "bin")) == ["out"]            # no whiteout: nothing below
