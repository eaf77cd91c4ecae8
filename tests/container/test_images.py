"""The image store: OCI layouts and docker-save archives built here with tarfile, imported,
merged by LayeredRoot; build, commit, list, remove; `hv image`; crash safety."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from hv.container.images import ImageError, ImageStore, main_image, normalize_name
from hv.container.layers import FsError, LayeredRoot

SECRET = b"host secret"


# -- building archives ---------------------------------------------------------------------------

def layer_tar(entries: list[tuple]) -> bytes:
    """A layer tar from (name, kind, payload[, mode]) entries: kind file (bytes), dir,
    symlink (target), hardlink (target), whiteout, opaque, fifo, chardev."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload, *mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            info.mode = mode[0] if mode else (0o755 if kind == "dir" else 0o644)
            data = None
            if kind == "file":
                data = payload
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "whiteout":
                head, _, base = name.rpartition("/")
                info.name = (head + "/" if head else "") + ".wh." + base
            elif kind == "opaque":
                info.name = name.rstrip("/") + "/.wh..wh..opq"
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "chardev":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


BASE = [("etc", "dir", None), ("etc/passwd", "file", b"root:x:0:0\n"),
        ("etc/hosts", "file", b"127.0.0.1\n"), ("usr/bin", "dir", None),
        ("usr/bin/app", "file", b"\x7fELF app", 0o755), ("usr/bin/alias", "hardlink", "usr/bin/app"),
        ("bin", "symlink", "usr/bin"), ("var/cache/a", "file", b"a"), ("var/cache/b", "file", b"b")]
TOP = [("etc", "dir", None), ("etc/hosts", "whiteout", None), ("etc/motd", "file", b"welcome\n"),
       ("var/cache", "dir", None), ("var/cache", "opaque", None), ("var/cache/c", "file", b"c")]


def write_blob(blobs: Path, data: bytes) -> dict:
    (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    return {"digest": sha(data), "size": len(data)}


def oci_layout(where: Path, layers: list[bytes], *, gzip_layers=False, as_tar=False,
               ref_name: str | None = None, config_extra: dict | None = None,
               corrupt=None) -> Path:
    """An OCI image layout (directory, or tar of one) holding one image of `layers`."""
    root = where.with_suffix(".dir") if as_tar else where
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    descs = []
    for tar in layers:
        blob = gzip.compress(tar, mtime=0) if gzip_layers else tar
        d = write_blob(blobs, blob)
        d["mediaType"] = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
        descs.append(d)
    config = {"architecture": "386", "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["A=1"]},
              "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]}}
    config.update(config_extra or {})
    cdesc = write_blob(blobs, json.dumps(config).encode())
    cdesc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cdesc, "layers": descs}
    mdesc = write_blob(blobs, json.dumps(manifest).encode())
    mdesc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    mdesc["platform"] = {"architecture": "386", "os": "linux"}
    if ref_name:
        mdesc["annotations"] = {"io.containerd.image.name": ref_name,
                                "org.opencontainers.image.ref.name": ref_name.rpartition(":")[2]}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    if corrupt:
        corrupt(root, descs)
    if not as_tar:
        return root
    with tarfile.open(where, "w") as tf:
        tf.add(root, arcname=".")
    return where


def docker_save(where: Path, layers: list[bytes], tag: str | None = "saved/app:v1") -> Path:
    """A `docker save` archive in the classic layout: <id>/layer.tar, <hex>.json, manifest.json."""
    config = json.dumps({"architecture": "386", "os": "linux", "config": {"Cmd": ["/app"]},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [sha(t) for t in layers]}}).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    with tarfile.open(where, "w") as tf:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        add(cname, config)
        paths = []
        for i, tar in enumerate(layers):
            paths.append(f"{i:064x}/layer.tar")
            add(paths[-1], tar)
        entry = {"Config": cname, "Layers": paths, "RepoTags": [tag] if tag else None}
        add("manifest.json", json.dumps([entry]).encode())
    return where


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("HV_HOME", str(tmp_path / "home"))
    return ImageStore()


def read(root: LayeredRoot, path: str) -> bytes:
    fd = root.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def tree_of(root: LayeredRoot, path: str = "") -> dict:
    """The whole merged view: path -> (type, mode, content or target)."""
    out = {}
    for e in root.listdir(path or "/"):
        p = f"{path}/{e.name}"
        st = root.stat(p, follow=False)
        if stat.S_ISDIR(st.st_mode):
            out[p] = ("dir", stat.S_IMODE(st.st_mode))
            out.update(tree_of(root, p))
        elif stat.S_ISLNK(st.st_mode):
            out[p] = ("link", root.readlink(p))
        else:
            out[p] = ("file", stat.S_IMODE(st.st_mode), read(root, p))
    return out


def leftovers(store: ImageStore) -> list[str]:
    return sorted(os.listdir(store.tmp))


# -- import ----------------------------------------------------------------------------------------

def test_an_oci_layout_imports_and_whiteouts_in_the_upper_layer_hide_lower_files(store, tmp_path):
    image = store.import_archive(oci_layout(tmp_path / "oci", [layer_tar(BASE), layer_tar(TOP)]), "app")
    assert image.name == "app:latest" and len(image.layers) == 2
    assert image.config == {"Cmd": ["/bin/sh"], "Env": ["A=1"]}
    root = LayeredRoot(image.lowers, None)
    assert sorted(e.name for e in root.listdir("/etc")) == ["motd", "passwd"]
    assert read(root, "/etc/motd") == b"welcome\n"
    assert sorted(e.name for e in root.listdir("/var/cache")) == ["c"]     # opaque
    assert read(root, "/bin/app") == b"\x7fELF app"
    assert stat.S_IMODE(root.stat("/usr/bin/app").st_mode) == 0o755
    assert root.stat("/usr/bin/alias").st_nlink == 2                    # the hard link kept
    assert store.get("app").diff_ids == image.diff_ids
    assert leftovers(store) == []


def test_a_tarred_layout_with_gzip_layers_gives_the_same_layers_stored_once(store, tmp_path):
    plain = store.import_archive(oci_layout(tmp_path / "a", [layer_tar(BASE), layer_tar(TOP)]), "a")
    zipped = store.import_archive(
        oci_layout(tmp_path / "b.tar", [layer_tar(BASE), layer_tar(TOP)], gzip_layers=True,
                   as_tar=True), "b")
    assert plain.diff_ids == zipped.diff_ids
    assert plain.layers == zipped.layers                    # the same extracted directories
    assert len(os.listdir(store.layers_dir)) == 2
    assert tree_of(LayeredRoot(plain.lowers, None)) == tree_of(LayeredRoot(zipped.lowers, None))


def test_a_docker_save_archive_imports_under_its_own_tag(store, tmp_path):
    image = store.import_archive(docker_save(tmp_path / "s.tar", [layer_tar(BASE), layer_tar(TOP)]))
    assert image.name == "saved/app:v1" and image.config == {"Cmd": ["/app"]}
    root = LayeredRoot(image.lowers, None)
    assert read(root, "/etc/passwd") == b"root:x:0:0\n"
    with pytest.raises(FsError):
        root.stat("/etc/hosts")


def test_an_oci_layout_imports_under_its_full_reference_not_a_bare_tag(store, tmp_path):
    named = oci_layout(tmp_path / "named", [layer_tar(BASE)], ref_name="docker.io/library/base:3.1")
    assert store.import_archive(named).name == "docker.io/library/base:3.1"
    index = json.loads((named / "index.json").read_text())
    del index["manifests"][0]["annotations"]["io.containerd.image.name"]   # only "3.1" is left
    (named / "index.json").write_text(json.dumps(index))
    with pytest.raises(ImageError, match="names no image"):
        store.import_archive(named)


def test_an_index_picks_the_386_manifest(store, tmp_path):
    layout = oci_layout(tmp_path / "oci", [layer_tar(BASE)])
    index = json.loads((layout / "index.json").read_text())
    other = dict(index["manifests"][0], platform={"architecture": "arm64", "os": "linux"},
                 digest="sha256:" + "0" * 64)
    index["manifests"].insert(0, other)                  # a missing blob: must not be chosen
    (layout / "index.json").write_text(json.dumps(index))
    assert len(store.import_archive(layout, "multi").layers) == 1


@pytest.mark.parametrize("damage, message", [
    ("layer-byte", "digest mismatch"),
    ("diff-id", "diff_id mismatch"),
    ("size", "size"),
    ("zstd", "zstd"),
    ("not-tar", "not a valid tar"),
    ("config-json", "digest mismatch"),
])
def test_a_damaged_archive_is_refused_and_leaves_nothing_behind(store, tmp_path, damage, message):
    def corrupt(root, descs):
        blobs = root / "blobs" / "sha256"
        layer = blobs / descs[0]["digest"][7:]
        if damage == "layer-byte":
            data = bytearray(layer.read_bytes())
            data[600] ^= 1
            layer.write_bytes(bytes(data))
        elif damage in ("size", "zstd", "not-tar"):
            data = {"size": layer.read_bytes() + b"x", "zstd": b"\x28\xb5\x2f\xfd" + b"\0" * 60,
                    "not-tar": b"this is not a tar archive" * 40}[damage]
            _rewrite_descriptor(root, descs[0], data, keep_size=damage == "size")
        elif damage == "config-json":
            cfg = next(p for p in blobs.iterdir() if b'"rootfs"' in p.read_bytes())
            cfg.write_bytes(cfg.read_bytes().replace(b"\"linux\"", b"\"Linux\""))   # same size
    config = {"rootfs": {"type": "layers", "diff_ids": [sha(b"wrong")]}} if damage == "diff-id" else None
    path = oci_layout(tmp_path / "oci", [layer_tar(BASE)], corrupt=corrupt, config_extra=config)
    with pytest.raises(ImageError, match=message):
        store.import_archive(path, "bad")
    assert store.list() == [] and os.listdir(store.layers_dir) == [] and leftovers(store) == []


def _rewrite_descriptor(root: Path, desc: dict, data: bytes, keep_size: bool) -> None:
    """Replace a layer blob and fix its descriptor's digest (and size) in the manifest,
    and the manifest's in the index, so only the layer itself is wrong."""
    blobs = root / "blobs" / "sha256"
    (blobs / desc["digest"][7:]).unlink()
    new = write_blob(blobs, data)
    index = json.loads((root / "index.json").read_text())
    mpath = blobs / index["manifests"][0]["digest"][7:]
    manifest = json.loads(mpath.read_text())
    manifest["layers"][0]["digest"] = new["digest"]
    if not keep_size:
        manifest["layers"][0]["size"] = new["size"]
    mpath.unlink()
    m = write_blob(blobs, json.dumps(manifest).encode())
    index["manifests"][0].update(m)
    (root / "index.json").write_text(json.dumps(index))


def test_not_an_image_archive_is_a_clear_error(store, tmp_path):
    (tmp_path / "junk").write_bytes(b"junk" * 100)
    (tmp_path / "emptydir").mkdir()
    for path, message in [(tmp_path / "junk", "not a readable archive"),
                          (tmp_path / "emptydir", "neither an OCI image layout"),
                          (tmp_path / "missing", "no such file")]:
        with pytest.raises(ImageError, match=message):
            store.import_archive(path, "x")
    with pytest.raises(ImageError, match="names no image"):
        store.import_archive(oci_layout(tmp_path / "oci", [layer_tar(BASE)]))


# -- hostile layers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("entries, message", [
    ([("../../escaped", "file", SECRET)], "leaves the layer"),
    ([("a/../../escaped", "file", SECRET)], "leaves the layer"),
    ([("link", "symlink", "/"), ("link/escaped", "file", SECRET)], "not a directory"),
    ([("up", "symlink", "../.."), ("up/escaped", "file", SECRET)], "not a directory"),
    ([("h", "hardlink", "../../sentinel/secret")], "leaves the layer"),
    ([("h", "hardlink", "nothing/here")], "missing"),
    ([("x" * 300, "file", b"")], "too long"),
])
def test_a_layer_cannot_write_or_link_outside_its_own_tree(store, tmp_path, entries, message):
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret").write_bytes(SECRET)
    with pytest.raises(ImageError, match=message):
        store.import_archive(oci_layout(tmp_path / "oci", [layer_tar(entries)]), "evil")
    assert sorted(os.listdir(sentinel)) == ["secret"] and os.stat(sentinel / "secret").st_nlink == 1
    assert not list(tmp_path.rglob("escaped"))
    assert os.listdir(store.layers_dir) == [] and leftovers(store) == []


def test_absolute_member_names_and_devices_stay_inside_and_symlinks_are_kept_verbatim(store, tmp_path):
    image = store.import_archive(oci_layout(tmp_path / "oci", [layer_tar([
        ("/etc/abs", "file", b"abs"), ("dev/null", "chardev", None), ("fifo", "fifo", None),
        ("out", "symlink", str(tmp_path / "sentinel")), ("./etc/dot", "file", b"dot")])]), "odd")
    tree = image.layers[0][0]
    assert (tree / "etc/abs").read_bytes() == b"abs" and (tree / "etc/dot").exists()
    assert not (tree / "dev/null").exists()                     # devices are never made
    assert stat.S_ISFIFO(os.lstat(tree / "fifo").st_mode)
    assert os.readlink(tree / "out") == str(tmp_path / "sentinel")
    root = LayeredRoot(image.lowers, None)
    with pytest.raises(FsError):
        root.stat("/out")                                        # dangling inside the container


def test_a_huge_pax_header_is_refused_without_reading_it_into_memory(store, tmp_path):
    tar = bytearray(layer_tar([("f", "file", b"x")]))
    header = tarfile.TarInfo("././@PaxHeader")
    header.type, header.size = tarfile.XHDTYPE, 1 << 32              # claims 4 GiB
    blob = header.tobuf(tarfile.USTAR_FORMAT) + bytes(tar)
    config = {"rootfs": {"type": "layers", "diff_ids": [sha(blob)]}}

    def swap(root, descs):
        _rewrite_descriptor(root, descs[0], blob, keep_size=False)
    with pytest.raises(ImageError, match="header too large"):
        store.import_archive(oci_layout(tmp_path / "oci", [tar], corrupt=swap, config_extra=config), "x")


# -- registry layers ---------------------------------------------------------------------------------

def test_a_layer_registry_travels_as_hv_registry_db_and_stays_out_of_the_tree(store, tmp_path):
    db = b"SQLite format 3\0 not really"
    image = store.import_archive(oci_layout(tmp_path / "oci", [
        layer_tar(BASE), layer_tar(TOP + [(".hv", "dir", None), (".hv/registry.db", "file", db),
                                          (".hv/other", "file", b"ignored")])]), "reg")
    (top_tree, top_db), (base_tree, base_db) = image.layers
    assert top_db is not None and top_db.read_bytes() == db and base_db is None
    assert top_db.parent == top_tree.parent and not (top_tree / ".hv").exists()
    root = LayeredRoot(image.lowers, tmp_path / "upper")
    assert ".hv" not in [e.name for e in root.listdir("/")]


# -- build, commit -----------------------------------------------------------------------------------

def test_build_makes_a_one_layer_image_from_a_folder(store, tmp_path):
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/prog").write_bytes(b"prog")
    os.chmod(src / "bin/prog", 0o750)
    os.link(src / "bin/prog", src / "bin/prog2")
    os.symlink("/bin/prog", src / "run")
    (src / ".hv").mkdir()
    (src / ".hv/registry.db").write_bytes(b"db")
    image = store.build(src, "tool:1")
    assert len(image.layers) == 1 and image.layers[0][1].read_bytes() == b"db"
    root = LayeredRoot(image.lowers, None)
    assert read(root, "/run") == b"prog" and stat.S_IMODE(root.stat("/bin/prog").st_mode) == 0o750
    assert root.stat("/bin/prog2").st_nlink == 2
    assert [e.name for e in root.listdir("/")] == ["bin", "run"]
    with pytest.raises(ImageError, match="not a directory"):
        store.build(tmp_path / "nothing", "x")


def test_commit_then_reopen_sees_every_change_including_deletions(store, tmp_path):
    base = store.import_archive(oci_layout(tmp_path / "oci", [layer_tar(BASE), layer_tar(TOP)]), "base")
    upper = tmp_path / "container"
    root = LayeredRoot(base.lowers, upper)
    fd = root.open("/etc/passwd", os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"user:x:1000\n")
    os.close(fd)
    root.unlink("/etc/motd")                          # deletes a lower file: a whiteout
    root.unlink("/var/cache/c")
    root.rmdir("/var/cache")
    root.mkdir("/var/cache")                          # made again: opaque
    fd = root.open("/var/cache/new", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    root.rename("/usr", "/opt")                       # a directory rename
    root.symlink("/opt/bin/app", "/app")
    root.link("/etc/passwd", "/etc/passwd.bak")
    root.chmod("/etc", 0o750)
    expected = tree_of(root)
    (tmp_path / "reg.db").write_bytes(b"registry upper")
    image = store.commit(upper, "base", "derived", registry_db=tmp_path / "reg.db")
    assert image.diff_ids[:2] == base.diff_ids and len(image.layers) == 3
    assert image.layers[0][1].read_bytes() == b"registry upper"
    assert image.config == base.config
    again = LayeredRoot(store.get("derived").lowers, tmp_path / "container2")
    assert tree_of(again) == expected
    assert again.stat("/etc/passwd").st_nlink == 2
    assert again.diff() == []
    # the layer is an OCI layer: its tar holds the whiteouts and the opaque marker
    with tarfile.open(store.blobs / image.diff_ids[-1][7:]) as tf:
        names = tf.getnames()
    assert {"etc/.wh.motd", ".wh.usr", "var/cache/.wh..wh..opq", ".hv/registry.db"} <= set(names)
    assert sha((store.blobs / image.diff_ids[-1][7:]).read_bytes()) == image.diff_ids[-1]


def test_committing_an_unchanged_container_adds_an_empty_layer(store, tmp_path):
    base = store.import_archive(oci_layout(tmp_path / "oci", [layer_tar(BASE)]), "base")
    (tmp_path / "up").mkdir()
    image = store.commit(tmp_path / "up", base, "same")
    assert len(image.layers) == 2
    assert tree_of(LayeredRoot(image.lowers, None)) == tree_of(LayeredRoot(base.lowers, None))


def test_commit_refuses_a_missing_base_or_upper(store, tmp_path):
    (tmp_path / "up").mkdir()
    with pytest.raises(ImageError, match="no image named"):
        store.commit(tmp_path / "up", "nothing", "x")
    with pytest.raises(ImageError, match="not a directory"):
        store.commit(tmp_path / "gone", None, "x")


# -- list, remove, names -------------------------------------------------------------------------

def test_remove_deletes_the_layers_no_other_image_uses(store, tmp_path):
    store.import_archive(oci_layout(tmp_path / "a", [layer_tar(BASE)]), "one")
    store.import_archive(oci_layout(tmp_path / "b", [layer_tar(BASE), layer_tar(TOP)]), "two")
    assert [i.name for i in store.list()] == ["one:latest", "two:latest"]
    assert len(os.listdir(store.layers_dir)) == 2
    store.remove("two")
    assert [i.name for i in store.list()] == ["one:latest"]
    assert os.listdir(store.layers_dir) == [store.get("one").diff_ids[0][7:]]
    store.remove("one:latest")
    assert store.list() == [] and os.listdir(store.layers_dir) == []
    assert os.listdir(store.blobs) == []
    with pytest.raises(ImageError, match="no image named"):
        store.remove("one")


def test_names_are_normalized_and_checked():
    assert normalize_name("alpine") == "alpine:latest"
    assert normalize_name("library/alpine:3.19") == "library/alpine:3.19"
    for bad in ("", "UPPER", "a b", "../x", "x:", "x/", "a:b:c", "x" * 300, "-x"):
        with pytest.raises(ImageError):
            normalize_name(bad)


def test_a_retagged_name_points_at_the_new_image(store, tmp_path):
    store.import_archive(oci_layout(tmp_path / "a", [layer_tar(BASE)]), "app")
    new = store.import_archive(oci_layout(tmp_path / "b", [layer_tar(TOP)]), "app")
    assert store.get("app").diff_ids == new.diff_ids and len(store.list()) == 1


# -- hv image --------------------------------------------------------------------------------------

def test_hv_image_import_ls_build_and_rm(store, tmp_path, capsys):
    layout = oci_layout(tmp_path / "oci.tar", [layer_tar(BASE)], as_tar=True)
    assert main_image(["import", str(layout), "-t", "demo"]) == 0
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("f")
    assert main_image(["build", str(tmp_path / "src"), "-t", "mine:2"]) == 0
    capsys.readouterr()
    assert main_image(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "LAYERS", "SIZE", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == ["demo:latest", "mine:2"]
    assert main_image(["rm", "demo", "mine:2"]) == 0
    assert store.list() == []


@pytest.mark.parametrize("argv, message", [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["import"], "required"),
    (["import", "/nonexistent/x.tar", "-t", "a"], "no such file"),
    (["import", "README", "-t", "Bad Name"], "not an image name"),
    (["build", "/nonexistent", "-t", "a"], "not a directory"),
    (["build", "."], "required"),
    (["rm", "absent"], "no image named absent:latest"),
])
def test_hv_image_bad_input_is_one_line_and_exit_2(store, capsys, argv, message):
    assert main_image(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and message in captured.err
    assert "Traceback" not in captured.err


# -- crash safety ------------------------------------------------------------------------------------

# A child process runs a commit or an import and, at a chosen point, says so and waits to
# be killed with SIGKILL (the instrumentation lives in the child only).
CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from hv.container import images
    stage, upper, archive = sys.argv[1], sys.argv[2], sys.argv[3]
    count = [0]

    def stop_here():
        print("stopped", flush=True)
        time.sleep(60)

    def wrap(owner, name, when):
        real = getattr(owner, name)
        def hooked(*a, **kw):
            count[0] += 1
            if when(count[0], a):
                stop_here()
            return real(*a, **kw)
        setattr(owner, name, hooked)

    if stage == "writing-tar":
        wrap(images, "_add_entry", lambda n, a: n == 50)
    elif stage == "extracting":
        wrap(images._TreeWriter, "add", lambda n, a: n == 50)
    elif stage == "before-record":
        wrap(images, "_write_durable", lambda n, a: True)
    elif stage == "record-before-rename":
        wrap(os, "replace", lambda n, a: True)
    store = images.ImageStore()
    if archive != "-":
        store.import_archive(archive, "new")
    else:
        store.commit(upper, "base", "new")
    print("done", flush=True)
    if stage == "after":
        time.sleep(60)
""")


@pytest.mark.parametrize("stage", ["writing-tar", "extracting", "before-record",
                                   "record-before-rename", "after", "import-extracting"])
def test_a_killed_commit_or_import_leaves_the_store_whole(store, tmp_path, stage):
    base = store.import_archive(oci_layout(tmp_path / "oci", [layer_tar(BASE)]), "base")
    upper = tmp_path / "upper"
    root = LayeredRoot(base.lowers, upper)
    for i in range(120):
        fd = root.open(f"/etc/file{i:03}", os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"x" * i)
        os.close(fd)
    root.unlink("/etc/passwd")
    expected = tree_of(root)
    archive = "-"
    if stage == "import-extracting":
        many = [(f"d/f{i}", "file", b"y") for i in range(200)]
        archive = str(oci_layout(tmp_path / "big", [layer_tar(BASE), layer_tar(many)]))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "extracting" if archive != "-" else stage, str(upper), archive],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        line = child.stdout.readline().strip()
        assert line == ("done" if stage == "after" else "stopped"), line
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    # What a killed writer leaves is either the whole new image or nothing of it.
    names = [i.name for i in store.list()]
    if stage == "after":
        assert names == ["base:latest", "new:latest"]
        assert tree_of(LayeredRoot(store.get("new").lowers, None)) == expected
    else:
        assert names == ["base:latest"]
    for image in store.list():
        for tree, _ in store.get(image.name).layers:
            assert (tree.parent / "layer.json").is_file()
    assert tree_of(LayeredRoot(store.get("base").lowers, None))["/etc/passwd"][2] == b"root:x:0:0\n"
    # The next writer sweeps the dead one's work area and succeeds.
    image = store.commit(upper, "base", "retry")
    assert leftovers(store) == []
    assert all(p.suffix == ".json" and not p.name.startswith(".") for p in store.refs.iterdir())
    assert tree_of(LayeredRoot(image.lowers, None)) == expected
    store.remove("retry")
    used = {d[7:] for i in store.list() for d in i.diff_ids}
    assert set(os.listdir(store.layers_dir)) == used       # orphans of the crash collected
