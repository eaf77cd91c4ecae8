"""`hv container` end to end (hv/container/container.py): run, ls, logs, diff, commit, rm; the
image never changes; state survives kill -9; escape attempts stay inside; the service workload
gives qemu-i386's output."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hv import guests
from hv.container.container import ContainerStore, parse_size, ContainerError
from hv.container.images import ImageStore
from hv.container.registry import REG_SZ, LayeredRegistry, seal_layer
from tests.container.conftest import QEMU, cli, needs_qemu
from tests import hvcmd

PROGRAMS = ("service", "hog", "leak", "escape", "io")
CONF = "name=svc\ngreeting=hi there\nrounds=3\n"


def make_image_dir(d: Path, registry: bool = True) -> Path:
    (d / "bin").mkdir(parents=True)
    for prog in PROGRAMS:
        shutil.copyfile(guests.linux_program_path(prog), d / "bin" / prog)
        os.chmod(d / "bin" / prog, 0o755)
    (d / "etc").mkdir()
    (d / "etc" / "service.conf").write_text(CONF)
    (d / "var" / "log").mkdir(parents=True)
    (d / "srv" / "data").mkdir(parents=True)
    (d / "srv" / "data" / "a.txt").write_text("alpha\n")
    (d / "srv" / "data" / "b.bin").write_bytes(bytes(range(256)) * 40)
    if registry:
        (d / ".hv").mkdir()
        db = d / ".hv" / "registry.db"
        with LayeredRegistry([], db) as r:
            r.create_key("HKLM\\Software\\hv\\service")
            r.set_value("HKLM\\Software\\hv\\service", "Greeting", REG_SZ, "hello from the image")
            r.set_value("HKLM\\Software\\hv\\service", "Mode", REG_SZ, "test")
        seal_layer(db)
    return d


@pytest.fixture
def hv(home, capfd):
    """`hv container ARGS` in this process: (status, stdout, stderr)."""
    return cli(capfd)


def tree_digest(top: Path) -> str:
    """Names, modes and contents of everything under ``top``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(top)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            h.update(f"{p.relative_to(top)} {st.st_mode:o}\n".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
    return h.hexdigest()


# -- run, ls, logs -----------------------------------------------------------------------------
def test_run_passes_output_through_keeps_it_for_logs_and_exits_with_the_status(hv):
    status, out, err = hv("run", "--name", "one", "svc", "/bin/service")
    assert status == 0
    assert "registry: Greeting=\"hello from the image\"\n" in out
    assert out.endswith("svc: hi there, done\n")
    status, out2, err2 = hv("logs", "one")
    assert (status, out2, err2) == (0, out, "")
    status, out, err = hv("run", "--name", "two", "svc", "/bin/hog")      # bad usage: 2
    assert status == 2 and err.startswith("usage: hog")
    status, out, _ = hv("ls")
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "IMAGE", "COMMAND", "STATUS", "CREATED"]
    assert any(" one " in line and "exited (0)" in line for line in lines)
    assert any(" two " in line and "exited (2)" in line for line in lines)
    assert hv("ls", "-q")[1] == "one\ntwo\n"


def test_env_workdir_and_cpus_and_memory_reach_the_program(hv):
    status, out, _ = hv("run", "--rm", "-w", "/srv", "--cpus", "0.5", "--memory", "16m", "svc",
                        "/bin/escape", "r", "data/a.txt")
    assert (status, out) == (0, 'r data/a.txt: read "alpha"\n')
    status, out, _ = hv("run", "--rm", "--memory", "8m", "svc", "/bin/hog", "alloc", "16")
    assert (status, out) == (1, "alloc 16 MiB: Cannot allocate memory\n")


def test_replicas_share_one_kernel_but_each_has_its_own_layers(hv, home):
    status, out, _ = hv("run", "--replicas", "3", "--name", "r", "svc", "/bin/service", "1")
    assert status == 0
    assert out.count("registry: Runs=1\n") == 3 and out.count("done\n") == 3
    assert hv("ls", "-q")[1].split() == ["r-1", "r-2", "r-3"]


def test_stdin_is_passed_when_it_is_a_pipe(home, tmp_path):
    proc = hvcmd.run(["container", "run", "--rm", "svc", "/bin/io"],
                     input=b"hello from the pipe\n", capture_output=True, timeout=120,
                     env=dict(os.environ, HV_HOME=str(home)))
    assert proc.returncode == 0, proc.stderr
    assert b"HELLO FROM THE PIPE\n" in proc.stdout                      # io upper-cases its stdin
    assert b"stdin: 20 bytes, 1 lines\n" in proc.stdout
    assert proc.stderr == b"a line on stderr\n"


# -- diff, commit, rm ----------------------------------------------------------------------------
def test_diff_lists_files_and_registry_keys(hv):
    hv("run", "--name", "c", "svc", "/bin/service")
    hv("run", "--name", "d", "svc", "/bin/escape", "u", "/etc/service.conf", "w", "/new.txt")
    status, out, _ = hv("diff", "c")
    assert status == 0
    assert out.splitlines() == ["C /var", "C /var/log", "A /var/log/service.log",
                                "A HKLM\\Software\\hv\\service\\State",
                                "A HKLM\\Software\\hv\\service\\State\\:Runs"]
    assert hv("diff", "d")[1].splitlines() == ["C /etc", "D /etc/service.conf", "A /new.txt"]


def test_commit_then_run_sees_the_changes_including_deletions(hv, home):
    hv("run", "--name", "c", "svc", "/bin/escape", "u", "/srv/data/a.txt", "w", "/new.txt")
    hv("run", "--name", "s", "svc", "/bin/service")
    store = ContainerStore(home)
    reg = store.open_registry(store.get("c"))
    reg.delete_value("HKLM\\Software\\hv\\service", "Mode")          # a registry deletion too
    reg.close()
    status, out, _ = hv("commit", "c", "-t", "svc2")
    assert status == 0 and out.startswith("committed svc2:latest")
    assert hv("commit", "s", "-t", "svc3")[0] == 0
    status, out, _ = hv("run", "--rm", "svc2", "/bin/escape", "r", "/srv/data/a.txt", "r", "/new.txt")
    assert out == 'r /srv/data/a.txt: No such file or directory\nr /new.txt: read "escaped"\n'
    status, out, _ = hv("run", "--rm", "svc2", "/bin/service")
    assert "registry: Mode: error 2\n" in out and "data: 1 file in srv/data\n" in out
    status, out, _ = hv("run", "--rm", "svc3", "/bin/service")       # the log and the counter
    assert "registry: Runs=2\n" in out and "service.log has 2 lines\n" in out


def test_runs_never_change_the_image_and_rm_leaves_nothing(hv, home):
    images = home / "images"
    before = tree_digest(images)
    hv("run", "--name", "a", "svc", "/bin/service")
    hv("run", "--name", "b", "svc", "/bin/escape", "u", "/etc/service.conf", "w", "/bin/service",
       "u", "/srv/data/a.txt")
    hv("run", "--rm", "svc", "/bin/service")
    assert tree_digest(images) == before
    status, out, _ = hv("rm", "a", "b")
    assert (status, out) == (0, "a\nb\n")
    assert sorted(os.listdir(home / "containers")) == ["lock"]
    assert hv("ls", "-q")[1] == ""


def test_user_errors_are_one_line_with_a_nonzero_status(hv, tmp_path):
    cases = [
        (("run", "nosuch", "/bin/x"), 125, "no image named nosuch:latest"),
        (("run", "-v", "/no/such/dir:/x", "svc", "/bin/io"), 125, "is not a directory"),
        (("run", "-v", "relative", "svc", "/bin/io"), 125, "expected HOST:GUEST[:ro]"),
        (("run", "-v", f"{tmp_path}:rel", "svc", "/bin/io"), 125, "must be absolute"),
        (("run", "--memory", "12q", "svc", "/bin/io"), 125, "expected a size"),
        (("run", "--memory", "1k", "svc", "/bin/io"), 125, "between 1m and 4g"),
        (("run", "--cpus", "0", "svc", "/bin/io"), 125, "--cpus"),
        (("run", "-e", "1X=2", "svc", "/bin/io"), 125, "expected NAME=VALUE"),
        (("run", "--replicas", "0", "svc", "/bin/io"), 125, "--replicas"),
        (("run", "--name", "bad/name", "svc", "/bin/io"), 125, "is not a container name"),
        (("run", "svc", "/bin/nothing"), 127, "cannot run /bin/nothing"),
        (("diff", "nosuch"), 2, "no container named nosuch"),
        (("logs", "nosuch"), 2, "no container named nosuch"),
        (("rm", "nosuch"), 2, "no container named nosuch"),
        (("commit", "nosuch"), 2, "the following arguments are required: -t"),
        (("frobnicate",), 2, "invalid choice"),
    ]
    for argv, want_status, want in cases:
        status, out, err = hv(*argv)
        assert status == want_status, (argv, err)
        assert err.count("\n") == 1 and err.startswith("hv: error: ") and want in err, (argv, err)
    hv("run", "--name", "dup", "svc", "/bin/io")
    status, _, err = hv("run", "--name", "dup", "svc", "/bin/io")
    assert status == 125 and "a container named dup exists" in err


def test_parse_size():
    assert parse_size("64m") == 64 << 20 and parse_size("1G") == 1 << 30
    assert parse_size("2097152") == 2 << 20
    with pytest.raises(ContainerError):
        parse_size("-1m")


def test_the_record_survives_kill_9_and_the_container_shows_as_killed(home, hv):
    proc = hvcmd.popen(["container", "run", "--name", "k", "svc", "/bin/hog", "cpu"],
                       env=dict(os.environ, HV_HOME=str(home)),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            recs = list((home / "containers").glob("*/container.json"))
            if recs and json.loads(recs[0].read_bytes())["state"] == "running":
                break
            time.sleep(0.05)
        else:
            pytest.fail("the container never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    status, out, _ = hv("ls")
    assert status == 0 and " k " in out and "killed" in out
    assert not list((home / "containers").glob("*/.*.tmp"))           # no half-written record
    assert hv("rm", "k")[0] == 0
    assert sorted(os.listdir(home / "containers")) == ["lock"]


# -- escapes -------------------------------------------------------------------------------------
def test_escape_attempts_never_reach_a_host_file_outside_the_layers(hv, home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary"
    canary.write_text("HOSTSECRET\n")
    # An image whose layer carries symlinks aimed at the host, absolute and relative.
    d = make_image_dir(tmp_path / "evil", registry=False)
    os.symlink(str(canary), d / "abs")
    os.symlink("../../../../../../../../" + str(canary), d / "rel")
    os.symlink(str(outside), d / "dirlink")
    (d / str(outside).lstrip("/")).mkdir(parents=True)        # the same path inside the image
    ImageStore(home).build(d, "evil")
    depth = "../" * 40
    ops = ["r", str(canary), "r", depth + str(canary), "r", "/abs", "r", "/rel", "r", "/dirlink/canary",
           "l", str(canary), "/hard", "l", depth + str(canary), "/hard2", "l", "/abs", "/hard3",
           "r", "/hard3",
           "s", str(canary), "/mine", "r", "/mine", "w", "/mine", "w", "/abs", "w", "/dirlink/canary",
           "r", "/" + "x" * 300, "w", depth + str(outside / "planted")]
    status, out, _ = hv("run", "--name", "e", "evil", "/bin/escape", *ops)
    assert status == 0
    assert "HOSTSECRET" not in out
    assert canary.read_text() == "HOSTSECRET\n" and os.listdir(outside) == ["canary"]
    assert "File name too long" in out
    assert "w /abs: ok" in out and "l /abs /hard3: ok" in out     # link names the symlink itself
    # what the container wrote through its symlinks landed in its own layer
    upper = ContainerStore(home).get("e").upper
    assert (upper / str(canary).lstrip("/")).read_text() == "escaped\n"


def test_a_volume_is_shared_with_the_host_and_ro_is_enforced(hv, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "shared.txt").write_text("from the host\n")
    status, out, _ = hv("run", "--rm", "-v", f"{vol}:/mnt", "svc", "/bin/escape", "r", "/mnt/shared.txt",
                        "w", "/mnt/out.txt", "r", "/mnt/../../" + str(vol / "shared.txt"))
    assert out.splitlines()[:2] == ['r /mnt/shared.txt: read "from the host"', "w /mnt/out.txt: ok"]
    assert (vol / "out.txt").read_text() == "escaped\n"               # volumes are not layered
    status, out, _ = hv("run", "--rm", "-v", f"{vol}:/mnt:ro", "svc", "/bin/escape", "w", "/mnt/x")
    assert out == "w /mnt/x: Read-only file system\n" and not (vol / "x").exists()


# -- the service workload against qemu-i386 -------------------------------------------------------
@needs_qemu
def test_service_output_is_qemu_i386s_apart_from_the_registry(hv, tmp_path):
    status, out, err = hv("run", "--rm", "svc", "/bin/service", "7")
    # qemu-i386 lists no entries on ext4 (glibc's 32-bit readdir refuses its 64-bit directory
    # offsets, EOVERFLOW): give it a tmpfs
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("qemu-i386 needs a tmpfs (/dev/shm) to list directories")
    qdir = make_image_dir(Path(tempfile.mkdtemp(dir="/dev/shm")) / "qemu", registry=False)
    proc = subprocess.run([QEMU, str(guests.linux_program_path("service")), "7"], cwd=qdir,
                          capture_output=True, timeout=120)
    q_out = proc.stdout.decode()
    assert status == proc.returncode == 0
    strip = lambda text: [line for line in text.splitlines() if not line.startswith("registry:")]
    assert strip(out) == strip(q_out)
    assert "registry: not available" in q_out and "registry: Runs=1" in out
    assert (qdir / "var/log/service.log").read_text() == "svc: started, 7 rounds\n"
    shutil.rmtree(qdir.parent)


def test_a_damaged_record_is_listed_refused_and_removable(hv, home):
    hv("run", "--name", "ok", "svc", "/bin/io")
    hv("run", "--name", "bad", "svc", "/bin/io")
    rec_path = ContainerStore(home).get("bad").path / "container.json"
    rec = json.loads(rec_path.read_bytes())
    rec["argv"], rec["volumes"] = 5, None
    rec_path.write_text(json.dumps(rec))
    status, out, _ = hv("ls")
    assert status == 0 and any(" bad " in line and "damaged" in line for line in out.splitlines())
    assert any(" ok " in line and "exited (0)" in line for line in out.splitlines())
    status, _, err = hv("diff", "bad")
    assert status == 2 and "its record is damaged" in err
    assert hv("rm", "bad")[0] == 0 and hv("ls", "-q")[1] == "ok\n"


def test_hv_registry_exports_an_images_merged_registry_and_names_a_missing_image(
        tmp_path, monkeypatch, capsys):
    from hv.cli import main
    monkeypatch.setenv("HV_HOME", str(tmp_path / "home"))
    assert main(["image", "build", str(make_image_dir(tmp_path / "app")), "-t", "svc"]) == 0
    capsys.readouterr()
    assert main(["registry", "export", "--image", "svc", "HKLM\\Software\\hv\\service"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Windows Registry Editor Version 5.00")
    assert '"Greeting"="hello from the image"' in out
    assert main(["registry", "export", "--image", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "hv registry: error: no image named nosuch:latest"
