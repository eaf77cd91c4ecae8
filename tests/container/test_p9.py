"""The 9P2000.L server over a layered root, message by message, through the test client.

The image is two read-only layers under a writable upper (OCI conventions: a whiteout in the
middle layer hides a file of the bottom one); the tests look at the host directories to see
that copy-up, whiteouts and confinement happen exactly as for process containers.
"""
from __future__ import annotations

import errno
import os
import stat

import pytest

from hv.container.layers import LayeredRoot, Volume
from hv.container.p9 import MAX_MSIZE, MIN_MSIZE, P9Server
from tests.container.p9client import (
    AT_REMOVEDIR, NOFID, NOTAG, O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC,
    O_WRONLY, QTDIR, QTFILE, QTSYMLINK, SETATTR_ATIME, SETATTR_ATIME_SET, SETATTR_GID, SETATTR_MODE,
    SETATTR_MTIME, SETATTR_MTIME_SET, SETATTR_SIZE, SETATTR_UID, TATTACH, TGETATTR, TWRITE,
    P9Client, P9Lerror, decode_reply, encode, message)


class Image:
    """lower: /etc/hostname, /etc/passwd, /data/a.txt, /data/sub/deep.txt, /gone.txt, /bin/sh -> busybox
    middle: /etc/motd, a whiteout of /gone.txt, /data/b.txt
    upper: empty."""

    def __init__(self, tmp_path, volumes=()):
        self.lower, self.middle, self.upper = tmp_path / "lower", tmp_path / "middle", tmp_path / "upper"
        for p, text in (("etc/hostname", "lower-host\n"), ("etc/passwd", "root:x:0:0\n"),
                        ("data/a.txt", "A" * 100), ("data/sub/deep.txt", "deep"), ("gone.txt", "old"),
                        ("bin/busybox", "#!")):
            f = self.lower / p
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
        (self.lower / "bin" / "sh").symlink_to("busybox")
        (self.middle / "etc").mkdir(parents=True)
        (self.middle / "etc" / "motd").write_text("hello")
        (self.middle / ".wh.gone.txt").touch()
        (self.middle / "data").mkdir()
        (self.middle / "data" / "b.txt").write_text("B")
        self.root = LayeredRoot([self.middle, self.lower], self.upper, volumes)
        self.server = P9Server(self.root)
        self.c = P9Client(self.server.handle)
        self.c.mount()

    def raw(self, mtype, *args, **kw):
        """(type, tag, value) of one message, Rlerror included."""
        return decode_reply(self.server.handle(encode(mtype, *args, **kw)))


@pytest.fixture
def img(tmp_path):
    image = Image(tmp_path)
    yield image
    assert image.server.internal_errors == 0
    image.server.close()
    image.root.close()


def lerror(call, *args, **kw) -> int:
    with pytest.raises(P9Lerror) as e:
        call(*args, **kw)
    return e.value.errno


def snapshot(tree) -> dict:
    return {str(p.relative_to(tree)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(tree.rglob("*"))}


# ---- version, attach ------------------------------------------------------------------------

def test_version_answers_9p2000L_with_the_smaller_msize(img):
    assert img.c.version(8192) == (8192, b"9P2000.L")
    assert img.c.version(1 << 30) == (MAX_MSIZE, b"9P2000.L")


def test_a_version_other_than_9p2000L_is_answered_unknown_and_serves_nothing(img):
    assert img.c.version(8192, "9P2000.u")[1] == b"unknown"
    assert lerror(img.c.attach, 0) == errno.EPROTO


def test_an_msize_below_4096_is_refused_with_emsgsize(img):
    assert lerror(img.c.version, MIN_MSIZE - 1) == errno.EMSGSIZE


def test_messages_before_a_version_are_refused_with_eproto(tmp_path):
    image = Image(tmp_path)
    server = P9Server(image.root)
    assert decode_reply(server.handle(encode(TATTACH, 0)))[2] == errno.EPROTO


def test_version_clunks_every_fid_and_closes_its_descriptor(img):
    img.c.walk(0, 1, "etc", "hostname")
    img.c.lopen(1, O_RDONLY)
    fd = img.server.fids[1].fd
    img.c.version(8192)
    assert img.server.fids == {}
    with pytest.raises(OSError):
        os.fstat(fd)
    assert lerror(img.c.getattr, 0) == errno.EBADF


def test_attach_gives_the_root_as_a_directory_qid_with_its_inode_number(img):
    qid = img.c.attach(7)
    assert qid.type == QTDIR and qid.path == img.root.stat("/").st_ino


def test_attach_needs_no_authentication_and_refuses_an_afid_or_another_tree(img):
    assert lerror(img.c.attach, 8, afid=3) == errno.EINVAL
    assert lerror(img.c.attach, 8, aname="/etc") == errno.ENOENT
    assert img.c.attach(8, aname="/").type == QTDIR
    assert lerror(img.c.rpc, 102, 9) == errno.EOPNOTSUPP          # Tauth


def test_attach_to_a_fid_in_use_is_einval(img):
    assert lerror(img.c.attach, 0) == errno.EINVAL


# ---- walk -----------------------------------------------------------------------------------

def test_walk_gives_one_typed_qid_per_name_with_the_layered_roots_inode_numbers(img):
    qids = img.c.walk(0, 1, "bin", "sh")
    assert [q.type for q in qids] == [QTDIR, QTSYMLINK]
    assert qids[0].path == img.root.stat("/bin").st_ino
    assert qids[1].path == img.root.stat("/bin/sh", follow=False).st_ino
    assert img.c.walk(0, 2, "etc", "motd")[1].type == QTFILE


def test_walk_without_names_clones_the_fid(img):
    img.c.walk(0, 1, "data")
    assert img.c.walk(1, 2) == []
    assert img.c.getattr(2).qid == img.c.getattr(1).qid


def test_a_partial_walk_returns_the_qids_walked_and_leaves_newfid_unused(img):
    qids = img.c.walk(0, 1, "data", "sub", "missing", "x")
    assert len(qids) == 2 and qids[1].type == QTDIR
    assert 1 not in img.server.fids
    assert lerror(img.c.getattr, 1) == errno.EBADF


def test_a_walk_whose_first_name_fails_is_an_error(img):
    assert lerror(img.c.walk, 0, 1, "missing", "etc") == errno.ENOENT
    assert lerror(img.c.walk, 0, 1, "gone.txt") == errno.ENOENT      # whited out


def test_a_walk_of_more_than_16_names_is_einval(img):
    assert lerror(img.c.walk, 0, 1, *["."] * 17) == errno.EINVAL
    assert len(img.c.walk(0, 1, *["."] * 16)) == 16


@pytest.mark.parametrize("name", ["", "a/b", "nul\0byte", "/"])
def test_illegal_names_in_a_walk_are_enoent(img, name):
    assert lerror(img.c.walk, 0, 1, name) == errno.ENOENT


def test_dotdot_at_the_root_stays_at_the_root_and_elsewhere_goes_up(img):
    root = img.c.getattr(0).qid
    assert img.c.walk(0, 1, "..", "..", "..") == [root] * 3
    qids = img.c.walk(0, 2, "data", "sub", "..", "..", "etc")
    assert qids[2] == qids[0] and qids[3] == root
    assert img.c.cat("hostname", root=2) == b"lower-host\n"         # fid 2 is /etc


def test_a_walk_never_follows_a_symlink(img):
    img.c.walk(0, 1, "etc")
    img.c.symlink(1, "to_data", "/data")
    assert img.c.walk(0, 2, "etc", "to_data")[1].type == QTSYMLINK
    assert lerror(img.c.walk, 2, 3, "a.txt") == errno.ENOTDIR
    # In one walk, the names after the symlink are not walked.
    assert len(img.c.walk(0, 4, "etc", "to_data", "a.txt")) == 2


def test_a_walk_from_a_file_is_enotdir(img):
    img.c.walk(0, 1, "etc", "motd")
    assert lerror(img.c.walk, 1, 2, "x") == errno.ENOTDIR
    assert lerror(img.c.walk, 1, 2, "..") == errno.ENOTDIR


def test_an_open_fid_is_not_walked_in_place_but_may_be_cloned(img):
    img.c.walk(0, 1, "data")
    img.c.lopen(1, O_RDONLY)
    assert lerror(img.c.walk, 1, 1, "a.txt") == errno.EINVAL
    assert img.c.walk(1, 2, "a.txt")[0].type == QTFILE      # Linux's v9fs does this


def test_walk_to_a_newfid_in_use_or_from_an_unknown_fid_fails(img):
    img.c.walk(0, 1)
    assert lerror(img.c.walk, 0, 1, "etc") == errno.EINVAL
    assert lerror(img.c.walk, 0, NOFID, "etc") == errno.EINVAL
    assert lerror(img.c.walk, 99, 2, "etc") == errno.EBADF


def test_qid_paths_stay_the_same_across_copy_up(img):
    before = img.c.walk(0, 1, "etc", "passwd")[1]
    img.c.lopen(1, O_RDWR)
    img.c.write(1, 0, b"x")
    assert (img.upper / "etc" / "passwd").exists()
    assert img.c.walk(0, 2, "etc", "passwd")[1] == before
    assert img.c.getattr(2).qid == before


# ---- open, read, write, create, clunk, remove ----------------------------------------------------

def test_reading_a_file_of_a_lower_layer(img):
    img.c.walk(0, 1, "data", "a.txt")
    qid, iounit = img.c.lopen(1, O_RDONLY)
    assert qid.type == QTFILE and iounit == 65536 - 24
    assert img.c.read(1, 90, 50) == b"A" * 10
    assert img.c.read(1, 100, 50) == b""
    assert img.c.read(1, 0, 1 << 30) == b"A" * 100


def test_a_read_is_cut_to_the_msize(img, tmp_path):
    (img.upper / "big").write_bytes(bytes(range(256)) * 64)
    img.c.version(MIN_MSIZE)
    img.c.attach(0)
    img.c.walk(0, 1, "big")
    img.c.lopen(1, O_RDONLY)
    data = img.c.read(1, 0, 1 << 20)
    assert len(data) == MIN_MSIZE - 11 and data == (bytes(range(256)) * 64)[:MIN_MSIZE - 11]


def test_writing_a_lower_file_copies_it_up_and_leaves_the_layers_alone(img):
    lower = snapshot(img.lower), snapshot(img.middle)
    img.c.walk(0, 1, "etc", "hostname")
    img.c.lopen(1, O_WRONLY | O_TRUNC)
    assert img.c.write(1, 0, b"container\n") == 10
    img.c.clunk(1)
    assert (img.upper / "etc" / "hostname").read_text() == "container\n"
    assert img.c.cat("etc/hostname") == b"container\n"
    assert (snapshot(img.lower), snapshot(img.middle)) == lower


def test_append_mode_writes_at_the_end(img):
    img.c.walk(0, 1, "etc", "motd")
    img.c.lopen(1, O_WRONLY | O_APPEND)
    img.c.write(1, 0, b"!")
    assert img.c.cat("etc/motd") == b"hello!"


def test_open_refuses_symlinks_writable_directories_and_an_open_fid(img):
    img.c.walk(0, 1, "bin", "sh")
    assert lerror(img.c.lopen, 1, O_RDONLY) == errno.ELOOP
    img.c.walk(0, 2, "etc")
    assert lerror(img.c.lopen, 2, O_WRONLY) == errno.EISDIR
    img.c.walk(0, 3, "etc", "motd")
    assert lerror(img.c.lopen, 3, O_RDONLY | O_DIRECTORY) == errno.ENOTDIR
    img.c.lopen(3, O_RDONLY)
    assert lerror(img.c.lopen, 3, O_RDONLY) == errno.EINVAL


def test_reads_and_writes_need_the_right_kind_of_open_fid(img):
    img.c.walk(0, 1, "etc", "motd")
    assert lerror(img.c.read, 1, 0, 10) == errno.EBADF
    img.c.lopen(1, O_WRONLY)
    assert lerror(img.c.read, 1, 0, 10) == errno.EBADF
    img.c.walk(0, 2, "etc", "passwd")
    img.c.lopen(2, O_RDONLY)
    assert lerror(img.c.write, 2, 0, b"x") == errno.EBADF
    img.c.walk(0, 3, "etc")
    img.c.lopen(3, O_RDONLY)
    assert lerror(img.c.read, 3, 0, 10) == errno.EISDIR
    assert lerror(img.c.read, 2, 1 << 63, 10) == errno.EINVAL


def test_a_write_whose_count_disagrees_with_its_data_is_eproto(img):
    img.c.walk(0, 1, "etc", "motd")
    img.c.lopen(1, O_WRONLY)
    body = encode(TWRITE, 1, 0, b"abc")[7:-1]                  # count 3, two data bytes
    assert decode_reply(img.server.handle(message(TWRITE, 5, body)))[2] == errno.EPROTO


def test_lcreate_makes_the_file_in_the_upper_layer_and_opens_the_fid_on_it(img):
    img.c.walk(0, 1, "data")
    qid, _ = img.c.lcreate(1, "new.txt", O_RDWR | O_CREAT | O_EXCL, 0o640)
    assert qid.type == QTFILE and qid.path == img.root.stat("/data/new.txt").st_ino
    img.c.write(1, 0, b"fresh")
    assert img.c.read(1, 0, 10) == b"fresh"
    host = img.upper / "data" / "new.txt"
    assert host.read_bytes() == b"fresh" and stat.S_IMODE(host.stat().st_mode) == 0o640
    assert img.c.getattr(1).qid == qid


def test_lcreate_refuses_existing_names_with_excl_dot_names_and_bad_names(img):
    for name, code in (("a.txt", errno.EEXIST), (".", errno.EEXIST), ("..", errno.EEXIST),
                       ("x/y", errno.ENOENT), ("", errno.ENOENT), (".wh.x", errno.EINVAL),
                       ("n" * 256, errno.ENAMETOOLONG)):
        img.c.walk(0, 1, "data")
        assert lerror(img.c.lcreate, 1, name, O_WRONLY | O_CREAT | O_EXCL) == code, name
        img.c.clunk(1)


def test_lcreate_of_a_whited_out_name_makes_a_new_file(img):
    qid, _ = img.c.lcreate(0, "gone.txt", O_RDWR | O_CREAT | O_EXCL, 0o600)
    assert img.c.read(0, 0, 10) == b""
    assert (img.upper / "gone.txt").read_bytes() == b""


def test_lcreate_in_a_file_fid_is_enotdir(img):
    img.c.walk(0, 1, "etc", "motd")
    assert lerror(img.c.lcreate, 1, "x", O_WRONLY | O_CREAT) == errno.ENOTDIR


def test_a_clunked_fid_is_gone(img):
    img.c.walk(0, 1, "etc")
    img.c.clunk(1)
    assert lerror(img.c.clunk, 1) == errno.EBADF
    assert lerror(img.c.getattr, 1) == errno.EBADF


def test_remove_of_a_lower_file_leaves_a_whiteout(img):
    img.c.walk(0, 1, "etc", "passwd")
    img.c.remove(1)
    assert (img.upper / "etc" / ".wh.passwd").exists()
    assert (img.lower / "etc" / "passwd").exists()
    assert len(img.c.walk(0, 2, "etc", "passwd")) == 1          # a partial walk: etc only
    assert 1 not in img.server.fids


def test_remove_clunks_the_fid_even_when_it_fails(img):
    img.c.walk(0, 1, "data")
    assert lerror(img.c.remove, 1) == errno.ENOTEMPTY
    assert 1 not in img.server.fids
    img.c.walk(0, 2, "data", "sub", "deep.txt")
    img.c.remove(2)
    img.c.walk(0, 3, "data", "sub")
    img.c.remove(3)
    assert len(img.c.walk(0, 4, "data", "sub")) == 1


def test_an_open_file_stays_readable_and_its_attributes_visible_after_its_name_is_removed(img):
    img.c.walk(0, 1, "data", "a.txt")
    img.c.lopen(1, O_RDWR)
    img.c.walk(0, 2, "data")
    img.c.unlinkat(2, "a.txt")
    assert img.c.read(1, 0, 3) == b"AAA"
    assert img.c.getattr(1).size == 100
    img.c.setattr(1, SETATTR_SIZE, size=10)                  # ftruncate of the open file
    assert img.c.getattr(1).size == 10


# ---- attributes --------------------------------------------------------------------------------

def test_getattr_reports_the_layered_roots_stat(img):
    img.c.walk(0, 1, "data", "a.txt")
    a = img.c.getattr(1)
    st = img.root.stat("/data/a.txt")
    assert a.valid == 0x7FF and a.qid.path == st.st_ino and a.qid.type == QTFILE
    assert (a.mode, a.size, a.nlink, a.uid, a.gid) == (st.st_mode, 100, st.st_nlink, st.st_uid, st.st_gid)
    assert a.mtime == divmod(st.st_mtime_ns, 10**9)
    img.c.walk(0, 2, "data")
    assert img.c.getattr(2).nlink == 1                       # a merged directory, as overlayfs


def test_setattr_changes_mode_size_and_times_in_the_upper_layer(img):
    img.c.walk(0, 1, "etc", "motd")
    img.c.setattr(1, SETATTR_MODE, mode=0o600)
    img.c.setattr(1, SETATTR_SIZE, size=2)
    img.c.setattr(1, SETATTR_ATIME | SETATTR_ATIME_SET | SETATTR_MTIME | SETATTR_MTIME_SET,
                  atime=(1000, 5), mtime=(2000, 7))
    host = (img.upper / "etc" / "motd").stat()
    assert stat.S_IMODE(host.st_mode) == 0o600 and host.st_size == 2
    assert host.st_atime_ns == 1000 * 10**9 + 5 and host.st_mtime_ns == 2000 * 10**9 + 7
    assert (img.middle / "etc" / "motd").read_text() == "hello"
    img.c.setattr(1, SETATTR_MTIME)                          # "now"
    assert img.c.getattr(1).mtime[0] > 2000


def test_setattr_refuses_owner_changes_symlinks_and_bad_times(img):
    img.c.walk(0, 1, "etc", "motd")
    a = img.c.getattr(1)
    img.c.setattr(1, SETATTR_UID | SETATTR_GID, uid=a.uid, gid=a.gid)   # no change: fine
    assert lerror(img.c.setattr, 1, SETATTR_UID, uid=a.uid + 1) == errno.EPERM
    assert lerror(img.c.setattr, 1, SETATTR_MTIME | SETATTR_MTIME_SET, mtime=(1, 10**9)) == errno.EINVAL
    img.c.walk(0, 2, "bin", "sh")
    assert lerror(img.c.setattr, 2, SETATTR_MODE, mode=0o777) == errno.EOPNOTSUPP
    assert lerror(img.c.setattr, 2, SETATTR_SIZE, size=0) == errno.EOPNOTSUPP


# ---- directories -------------------------------------------------------------------------------------

def names(entries) -> list[bytes]:
    return [e.name for e in entries]


def test_readdir_lists_the_merged_directory_with_dot_and_dotdot(img):
    img.c.walk(0, 1, "data")
    img.c.lopen(1, O_RDONLY)
    entries = img.c.readdir_all(1)
    assert names(entries) == [b".", b"..", b"a.txt", b"b.txt", b"sub"]
    by = {e.name: e for e in entries}
    assert by[b"sub"].qid.type == QTDIR and by[b"sub"].type == 4
    assert by[b"a.txt"].qid == img.c.walk(0, 2, "data", "a.txt")[1]
    assert by[b".."].qid == img.c.getattr(0).qid
    assert [e.offset for e in entries] == [1, 2, 3, 4, 5]


def test_readdir_of_the_root_hides_whiteouts_and_the_registry_folder(img):
    (img.lower / ".hv").mkdir()
    img.c.lopen(0, O_RDONLY)
    assert names(img.c.readdir_all(0)) == [b".", b"..", b"bin", b"data", b"etc"]


def test_readdir_offsets_continue_across_calls_and_zero_rewinds(img):
    for i in range(40):
        (img.upper / f"f{i:02}").write_text("x")
    img.c.lopen(0, O_RDONLY)
    whole = names(img.c.readdir_all(0, count=8192))
    pieces = img.c.readdir_all(0, count=60)                   # two entries a call at most
    assert names(pieces) == whole and len(whole) == 45
    (img.upper / "late").write_text("x")
    assert img.c.readdir(0, 3, 60)[0].name == whole[3]         # the listing taken before
    assert b"late" not in names(img.c.readdir(0, 40, 8192))
    assert b"late" in names(img.c.readdir_all(0))             # offset 0 lists afresh


def test_readdir_needs_an_open_directory_and_room_for_an_entry(img):
    img.c.walk(0, 1, "data")
    assert lerror(img.c.readdir, 1) == errno.EBADF
    img.c.walk(0, 2, "etc", "motd")
    img.c.lopen(2, O_RDONLY)
    assert lerror(img.c.readdir, 2) == errno.ENOTDIR
    img.c.lopen(1, O_RDONLY)
    assert lerror(img.c.readdir, 1, 0, 10) == errno.EINVAL


def test_mkdir_creates_in_the_upper_layer(img):
    img.c.walk(0, 1, "data")
    qid = img.c.mkdir(1, "made", 0o750)
    assert qid.type == QTDIR and qid.path == img.root.stat("/data/made").st_ino
    assert stat.S_IMODE((img.upper / "data" / "made").stat().st_mode) == 0o750
    assert lerror(img.c.mkdir, 1, "made") == errno.EEXIST
    assert lerror(img.c.mkdir, 1, "..") == errno.EEXIST


def test_a_directory_removed_and_made_again_is_opaque(img):
    img.c.walk(0, 1, "data", "sub")
    img.c.walk(0, 2, "data")
    img.c.unlinkat(1, "deep.txt")
    img.c.unlinkat(2, "sub", AT_REMOVEDIR)
    img.c.mkdir(2, "sub")
    img.c.walk(0, 3, "data", "sub")
    img.c.lopen(3, O_RDONLY)
    assert names(img.c.readdir_all(3)) == [b".", b".."]
    assert (img.upper / "data" / "sub" / ".wh..wh..opq").exists()


def test_symlink_and_readlink(img):
    img.c.walk(0, 1, "etc")
    qid = img.c.symlink(1, "link", "../data/a.txt")
    assert qid.type == QTSYMLINK
    img.c.walk(0, 2, "etc", "link")
    assert img.c.readlink(2) == b"../data/a.txt"
    assert os.readlink(img.upper / "etc" / "link") == "../data/a.txt"
    img.c.walk(0, 3, "etc", "motd")
    assert lerror(img.c.readlink, 3) == errno.EINVAL
    assert lerror(img.c.symlink, 1, "empty", "") == errno.ENOENT


def test_link_of_a_lower_file_copies_it_up_and_shares_it(img):
    img.c.walk(0, 1, "data")
    img.c.walk(0, 2, "data", "a.txt")
    img.c.link(1, 2, "hard")
    assert os.path.samefile(img.upper / "data" / "a.txt", img.upper / "data" / "hard")
    img.c.walk(0, 3, "data")
    assert lerror(img.c.link, 3, 1, "dirlink") == errno.EPERM


def test_renameat_moves_the_name_and_the_fids_below_it(img):
    img.c.walk(0, 1, "data", "sub")
    img.c.walk(0, 2, "data", "sub", "deep.txt")
    img.c.lopen(2, O_RDONLY)
    img.c.walk(0, 3, "data")
    img.c.renameat(3, "sub", 0, "moved")
    assert len(img.c.walk(0, 4, "data", "sub")) == 1
    assert img.c.read(2, 0, 10) == b"deep"
    assert img.c.walk(1, 5, "deep.txt")[0].path == img.root.stat("/moved/deep.txt").st_ino
    assert img.c.getattr(1).qid.path == img.root.stat("/moved").st_ino
    assert (img.upper / "moved" / "deep.txt").read_text() == "deep"


def test_the_old_rename_message_works_too(img):
    img.c.walk(0, 1, "etc", "motd")
    img.c.walk(0, 2, "data")
    img.c.rename(1, 2, "motd2")
    assert img.c.cat("data/motd2") == b"hello"
    assert img.c.getattr(1).qid.path == img.root.stat("/data/motd2").st_ino
    assert lerror(img.c.rename, 0, 2, "root") == errno.EBUSY


def test_unlinkat_removes_files_and_with_removedir_directories(img):
    img.c.walk(0, 1, "data")
    img.c.unlinkat(1, "b.txt")
    assert lerror(img.c.unlinkat, 1, "sub") == errno.EISDIR
    assert lerror(img.c.unlinkat, 1, "sub", AT_REMOVEDIR) == errno.ENOTEMPTY
    assert lerror(img.c.unlinkat, 1, "a.txt", 0x100) == errno.EINVAL
    assert lerror(img.c.unlinkat, 1, ".", AT_REMOVEDIR) == errno.EINVAL
    assert lerror(img.c.unlinkat, 1, "..", AT_REMOVEDIR) == errno.ENOTEMPTY
    assert lerror(img.c.unlinkat, 1, "missing") == errno.ENOENT
    assert (img.upper / "data" / ".wh.b.txt").exists()


# ---- statfs, fsync, flush, mknod, xattrs, locks ---------------------------------------------------

def test_statfs_reports_a_9p_file_system_with_the_hosts_numbers(img):
    ftype, bsize, blocks, _bfree, _bavail, files, _ffree, _fsid, namelen = img.c.statfs(0)
    sv = os.statvfs(img.upper)
    assert ftype == 0x01021997 and namelen == 255
    assert (bsize, blocks, files) == (sv.f_bsize, sv.f_blocks, sv.f_files)
    img.c.walk(0, 1, "bin", "sh")
    assert img.c.statfs(1)[0] == 0x01021997                     # a symlink: the root's


def test_fsync_needs_an_open_fid(img):
    img.c.walk(0, 1, "etc", "motd")
    assert lerror(img.c.fsync, 1) == errno.EBADF
    img.c.lopen(1, O_WRONLY)
    img.c.fsync(1)
    img.c.fsync(1, datasync=1)


def test_flush_is_answered(img):
    assert img.c.flush(3) is None


def test_mknod_is_eperm(img):
    assert lerror(img.c.mknod, 0, "fifo", stat.S_IFIFO | 0o644) == errno.EPERM
    assert not (img.upper / "fifo").exists()


def test_extended_attributes_are_not_supported(img):
    assert lerror(img.c.xattrwalk, 0, 1, "user.x") == errno.EOPNOTSUPP
    assert lerror(img.c.xattrcreate, 0, "user.x", 3) == errno.EOPNOTSUPP
    assert lerror(img.c.xattrwalk, 42, 1, "user.x") == errno.EBADF
    assert 1 not in img.server.fids


def test_locks_are_granted_and_nothing_is_ever_locked(img):
    img.c.walk(0, 1, "etc", "motd")
    img.c.lopen(1, O_RDWR)
    assert img.c.lock(1, 1, flags=1, start=0, length=10) == 0
    assert img.c.getlock(1, 1, start=5, length=3, proc_id=9, client_id="c") == (2, 5, 3, 9, b"c")
    assert lerror(img.c.lock, 1, 3) == errno.EINVAL
    assert lerror(img.c.lock, 1, 0, flags=2) == errno.EINVAL


# ---- confinement -----------------------------------------------------------------------------------

def test_dotdot_never_leaves_the_container(img, tmp_path):
    (tmp_path / "secret").write_text("host")
    qids = img.c.walk(0, 1, "..", "..", "..")
    assert all(q == img.c.getattr(0).qid for q in qids)
    assert lerror(img.c.walk, 1, 2, "secret") == errno.ENOENT


def test_an_absolute_symlink_is_only_text_to_a_walk(img, tmp_path):
    (tmp_path / "secret").write_text("host")
    img.c.symlink(0, "abs", str(tmp_path))
    img.c.walk(0, 1, "abs")
    assert img.c.readlink(1) == str(tmp_path).encode()
    assert lerror(img.c.walk, 1, 2, "secret") == errno.ENOTDIR
    assert lerror(img.c.lopen, 1, O_RDONLY) == errno.ELOOP


def test_a_fid_whose_directory_became_a_symlink_stays_inside_the_container(img, tmp_path):
    (tmp_path / "secret").write_text("host")
    img.c.mkdir(0, "d")
    img.c.walk(0, 1, "d")
    img.c.lcreate(1, "secret", O_WRONLY | O_CREAT, 0o644)     # fid 1 -> /d/secret
    img.c.clunk(1)
    img.c.walk(0, 1, "d", "secret")
    img.c.walk(0, 2, "d")
    img.c.unlinkat(2, "secret")
    img.c.unlinkat(0, "d", AT_REMOVEDIR)
    img.c.symlink(0, "d", str(tmp_path))                       # /d -> the host's directory
    # /d/secret now resolves through the symlink, inside the container: there is no such file.
    assert lerror(img.c.getattr, 1) == errno.ENOENT
    assert lerror(img.c.lopen, 1, O_RDONLY) == errno.ENOENT
    assert lerror(img.c.lcreate, 2, "x", O_WRONLY | O_CREAT) == errno.ENOTDIR
    assert (tmp_path / "secret").read_text() == "host"


def test_symlink_loops_end_in_eloop_not_in_the_host(img):
    img.c.mkdir(0, "loop")
    img.c.walk(0, 1, "loop")
    img.c.mkdir(1, "inner")
    img.c.walk(1, 2, "inner")
    img.c.unlinkat(1, "inner", AT_REMOVEDIR)
    img.c.unlinkat(0, "loop", AT_REMOVEDIR)
    img.c.symlink(0, "loop", "loop")                           # /loop -> loop
    assert lerror(img.c.getattr, 2) == errno.ELOOP
    img.c.walk(0, 3, "loop")
    assert lerror(img.c.lopen, 3, O_RDONLY) == errno.ELOOP


def test_volumes_are_served_and_dotdot_leaves_them_for_the_container(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "shared.txt").write_text("vol")
    (tmp_path / "img").mkdir()
    image = Image(tmp_path / "img", volumes=[Volume(host, "/mnt/vol")])
    c = image.c
    assert c.cat("mnt/vol/shared.txt") == b"vol"
    c.walk(0, 1, "mnt", "vol")
    c.lcreate(1, "out.txt", O_WRONLY | O_CREAT, 0o644)
    c.write(1, 0, b"written")
    assert (host / "out.txt").read_bytes() == b"written"
    assert c.walk(0, 2, "mnt", "vol", "..", "..")[-1] == c.getattr(0).qid
    image.root.close()


# ---- malformed messages ------------------------------------------------------------------------------

def test_a_message_shorter_than_a_header_is_eproto_with_notag(img):
    reply = img.server.handle(b"\x05\x00\x00")
    assert decode_reply(reply) == (7, NOTAG, errno.EPROTO)


def test_a_size_field_that_disagrees_with_the_message_is_eproto(img):
    m = bytearray(encode(TGETATTR, 0, tag=9))
    m[0] += 1
    assert decode_reply(img.server.handle(bytes(m))) == (7, 9, errno.EPROTO)


def test_a_message_larger_than_msize_is_emsgsize(img):
    img.c.version(MIN_MSIZE)
    m = encode(TWRITE, 0, 0, b"x" * MIN_MSIZE, tag=4)
    assert decode_reply(img.server.handle(m)) == (7, 4, errno.EMSGSIZE)


def test_trailing_bytes_and_truncated_fields_are_eproto(img):
    m = encode(TGETATTR, 0, tag=3)
    assert decode_reply(img.server.handle(message(TGETATTR, 3, m[7:] + b"\0")))[2] == errno.EPROTO
    assert decode_reply(img.server.handle(message(TGETATTR, 3, m[7:-1])))[2] == errno.EPROTO
    walk = message(110, 3, b"\0\0\0\0\1\0\0\0\1\0\x09\0ab")       # a name longer than the message
    assert decode_reply(img.server.handle(walk))[2] == errno.EPROTO


def test_unknown_and_legacy_types_are_eopnotsupp_and_replies_are_eproto(img):
    for mtype in (112, 114, 124, 126, 200, 2):                 # Topen, Tcreate, Tstat, Twstat, ...
        assert decode_reply(img.server.handle(message(mtype, 1, b"")))[2] == errno.EOPNOTSUPP
    for mtype in (101, 7, 106):                                # Rversion, Rlerror, Terror
        assert decode_reply(img.server.handle(message(mtype, 1, b"")))[2] == errno.EPROTO


# ---- limits -------------------------------------------------------------------------------------------

def test_fids_per_connection_are_bounded(img):
    server = P9Server(img.root, max_fids=4)
    c = P9Client(server.handle)
    c.mount()
    for fid in (1, 2, 3):
        c.walk(0, fid)
    assert lerror(c.walk, 0, 4) == errno.EMFILE
    c.clunk(3)
    c.walk(0, 4)


def test_open_fids_per_connection_are_bounded(img):
    server = P9Server(img.root, max_open=2)
    c = P9Client(server.handle)
    c.mount()
    for fid in (1, 2, 3):
        c.walk(0, fid, "etc", "motd")
    c.lopen(1, O_RDONLY)
    c.lopen(2, O_RDONLY)
    assert lerror(c.lopen, 3, O_RDONLY) == errno.EMFILE
    c.clunk(1)
    c.lopen(3, O_RDONLY)
    server.close()


def test_directory_listings_held_are_bounded_and_evicted_listings_are_taken_again(img):
    for i in range(6):
        (img.upper / f"f{i}").write_text("x")
    server = P9Server(img.root, snapshot_budget=12)
    c = P9Client(server.handle)
    c.mount()
    c.walk(0, 1)
    c.lopen(1, O_RDONLY)
    first = c.readdir(1, 0, 60)                                  # root: 11 entries held
    c.walk(0, 2, "data")
    c.lopen(2, O_RDONLY)
    assert names(c.readdir_all(2)) == [b".", b"..", b"a.txt", b"b.txt", b"sub"]   # evicts fid 1's
    assert server.fids[1].entries is None
    offset, got = first[-1].offset, names(first)
    while batch := c.readdir(1, offset, 60):
        got += names(batch)
        offset = batch[-1].offset
    assert got == [b".", b"..", b"bin", b"data", b"etc"] + [f"f{i}".encode() for i in range(6)]
    for i in range(20):
        (img.upper / f"g{i}").write_text("x")
    c.walk(0, 3)
    c.lopen(3, O_RDONLY)
    assert lerror(c.readdir, 3) == errno.ENOMEM
    server.close()


def test_counters_count_messages_by_name_and_errors(img):
    img.c.walk(0, 1, "etc")
    lerror(img.c.walk, 0, 2, "missing")
    counts = img.server.counters()
    assert counts["9p Twalk"] == 2 and counts["9p Tversion"] == 1 and counts["9p Rlerror"] == 1
