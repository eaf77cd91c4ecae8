"""Utility-VM containers (hv/container/uvm.py, guests/src/uvm/uvm.c): the same programs in a
microVM of their own, byte-identical to process containers; the image never changes; the
Global\\ leak does not cross VMs; the kernel's timer preempts a hog; files stay private."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hv.container.container import ContainerStore
from hv.container.uvm import kernel_path, run_in_vm, template_path
from tests.container.conftest import cli, service_home
from tests.container.test_containers import tree_digest

pytestmark = pytest.mark.skipif(not kernel_path().exists(), reason="uvmkernel image not built")

EXTRA = ("hello", "files", "memory", "args", "errors", "regdemo", "sleep", "exitcode")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """One image and one template for the module (the template takes a cold boot)."""
    return service_home(tmp_path_factory.mktemp("uvm"), EXTRA)


@pytest.fixture
def hv(home, capfd, monkeypatch):
    monkeypatch.setenv("HV_HOME", str(home))
    return cli(capfd)


def _layers(home: Path) -> str:
    return tree_digest(home / "images")


@pytest.mark.parametrize("prog,args", [("hello", []), ("files", []), ("memory", []),
                                       ("service", []), ("args", ["one", "two words", ""]),
                                       ("errors", []), ("regdemo", []), ("sleep", []),
                                       ("exitcode", ["kill", "15"]), ("exitcode", ["abort"]),
                                       ("exitcode", ["segv"])])
def test_vm_output_status_and_changes_are_those_of_a_process_container(hv, home, prog, args):
    before = _layers(home)
    p = hv("run", "--name", "p", "svc", f"/bin/{prog}", *args)
    v = hv("run", "--name", "v", "--isolation", "vm", "svc", f"/bin/{prog}", *args)
    assert v == p
    assert hv("diff", "v") == hv("diff", "p")
    assert _layers(home) == before                       # the image is never written
    hv("rm", "p", "v")


def test_service_sees_its_own_layers_only_and_commit_carries_them(hv):
    for name in ("a", "b"):
        status, out, _ = hv("run", "--name", name, "--isolation", "vm", "svc", "/bin/service")
        assert status == 0
        assert "registry: Runs=1\n" in out and "log: var/log/service.log has 1 line\n" in out
    status, out, _ = hv("run", "--name", "a2", "--isolation", "vm", "svc", "/bin/service")
    assert "registry: Runs=1\n" in out                  # a fresh container: its own registry
    assert hv("commit", "a", "-t", "svc2")[0] == 0
    status, out, _ = hv("run", "--rm", "--isolation", "vm", "svc2", "/bin/service")
    assert "registry: Runs=2\n" in out and "log: var/log/service.log has 2 lines\n" in out
    assert hv("rm", "a", "b", "a2")[0] == 0


def test_global_named_objects_are_not_there_in_a_utility_vm(hv):
    status, out, err = hv("run", "--rm", "--isolation", "vm", "svc", "/bin/leak", "write",
                          "Global\\x", "s3cret")
    assert status == 1 and "Function not implemented" in out + err
    status, out, err = hv("run", "--rm", "--isolation", "vm", "svc", "/bin/leak", "read", "Global\\x")
    assert "section: Function not implemented" in out + err and "s3cret" not in out + err


def test_memory_is_the_vms_ram(hv):
    assert hv("run", "--rm", "--isolation", "vm", "--memory", "8m", "svc", "/bin/hog", "alloc",
              "16") == (1, "alloc 16 MiB: Cannot allocate memory\n", "")
    assert hv("run", "--rm", "--isolation", "vm", "--memory", "8m", "svc", "/bin/hog", "alloc",
              "4") == (0, "alloc 4 MiB: ok\n", "")
    status, _, err = hv("run", "--rm", "--isolation", "vm", "--memory", "1g", "svc", "/bin/hello")
    assert status == 125 and err.count("\n") == 1 and "4m to 128m" in err


def _vm_run(home, argv, cpus=None):
    store = ContainerStore(home)
    image = store.images.get("svc")
    c = store.create(image, argv)
    out, stats = bytearray(), {}
    status = run_in_vm(store.open_root(c, image), lambda: store.open_registry(c, image),
                       argv[0], argv, [], "/", memory=None, stdout=out.extend,
                       stderr=out.extend, home=home, stats=stats, cpus=cpus)
    store.remove(c)
    return status, bytes(out), stats


def test_a_hog_is_preempted_by_its_own_kernel_timer(home):
    status, out, quiet = _vm_run(home, ["/bin/hello"])
    assert status == 0
    status, out, hog = _vm_run(home, ["/bin/hog", "spin", "30000000"])
    assert status == 0 and out.startswith(b"spin 30000000: ")
    # The hog makes no call while it spins: every tick is a LAPIC timer interrupt taken at
    # ring 3, the kernel's, in this VM (100 Hz; the spin takes a good part of a second).
    assert hog["syscalls"] <= quiet["syscalls"] + 2
    assert hog["ticks"] >= quiet["ticks"] + 5


def test_cold_boot_and_template_clone_give_the_same_run(home):
    store = ContainerStore(home)
    image = store.images.get("svc")
    outs = []
    for cold in (True, False):
        c = store.create(image, ["/bin/hello"])
        out, stats = bytearray(), {}
        status = run_in_vm(store.open_root(c, image), lambda: store.open_registry(c, image),
                           "/bin/hello", ["/bin/hello"], [], "/", memory=None, stdout=out.extend,
                           stderr=out.extend, home=home, cold=cold, stats=stats)
        outs.append((status, bytes(out)))
        assert stats["p9_messages"] > 0 and stats["unknown_calls"] >= 1     # rseq: ENOSYS
        store.remove(c)
    assert outs[0] == outs[1] and outs[0][0] == 0
    assert template_path(home, 64 << 20).exists()


def test_missing_program_and_strace_are_one_line_errors(hv):
    status, _, err = hv("run", "--rm", "--isolation", "vm", "svc", "/bin/nope")
    assert status == 127 and err.count("\n") == 1 and "cannot run /bin/nope" in err
    status, _, err = hv("run", "--rm", "--isolation", "vm", "--strace", "svc", "/bin/hello")
    assert status == 125 and err.count("\n") == 1


def test_stats_count_forwarded_calls(hv):
    status, out, err = hv("run", "--rm", "--isolation", "vm", "--stats", "svc", "/bin/service")
    assert status == 0
    rows = [line.rsplit(None, 1) for line in err.splitlines() if line.startswith("  ")]
    stats = {name.strip(): int(value) for name, value in rows}
    assert stats["reg_calls"] == 8 and stats["p9_calls"] > 20
    assert stats["registry QUERY_VALUE"] == 3


def test_escape_attempts_stay_inside_as_in_a_process_container(hv, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("host secret\n")
    ops = ["r", "../../../../" + str(outside), "r", str(outside), "s", str(outside), "/lnk",
           "r", "/lnk", "w", "../../../../" + str(tmp_path / "new.txt"), "l", "/etc/service.conf",
           "/hard", "r", "/hard"]
    p = hv("run", "--rm", "svc", "/bin/escape", *ops)
    v = hv("run", "--rm", "--isolation", "vm", "svc", "/bin/escape", *ops)
    assert v == p and "host secret" not in v[1]
    assert not (tmp_path / "new.txt").exists() and outside.read_text() == "host secret\n"


def test_volumes_reach_the_vm(hv, tmp_path):
    (tmp_path / "v.txt").write_text("from the host\n")
    assert hv("run", "--rm", "--isolation", "vm", "-v", f"{tmp_path}:/mnt", "svc", "/bin/escape",
              "r", "/mnt/v.txt") == (0, 'r /mnt/v.txt: read "from the host"\n', "")


def test_a_damaged_template_is_made_again(hv, home):
    assert hv("run", "--rm", "--isolation", "vm", "svc", "/bin/hello")[0] == 0
    path = template_path(home, 64 << 20)
    path.write_bytes(b"not a snapshot")
    status, out, err = hv("run", "--rm", "--isolation", "vm", "svc", "/bin/hello")
    assert status == 0 and out.startswith("hello from a container") and err == ""
    assert path.stat().st_size > 1 << 20


def test_cpus_pauses_a_hog_on_the_host_and_changes_nothing_inside(home):
    free = _vm_run(home, ["/bin/hog", "spin", "20000000"])
    capped = _vm_run(home, ["/bin/hog", "spin", "20000000"], cpus=0.25)
    assert capped[:2] == free[:2] and free[0] == 0
    assert "cpu share pauses" not in free[2]
    assert capped[2]["cpu share pauses"] > 0 and capped[2]["cpu share paused ms"] > 0


def test_a_hypercall_from_the_program_at_ring_3_is_an_invalid_opcode_not_a_power_off(home):
    """vmcall belongs to the kernel: at CPL 3 hv delivers #UD (the VM's kernel makes it
    SIGILL), so the program cannot use the direct-boot power-off (0x0003, EBX = code)."""
    from tests.container.conftest import tiny_elf
    poweroff_42 = bytes.fromhex("bb2a000000" "0f01c10300")      # mov ebx,42; vmcall 0x0003
    store = ContainerStore(home)
    image = store.images.get("svc")
    c = store.create(image, ["/bin/tiny"])
    root = store.open_root(c, image)
    fd = root.open("/bin/tiny", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    try:
        os.write(fd, tiny_elf(poweroff_42))
    finally:
        os.close(fd)
    out = bytearray()
    status = run_in_vm(root, lambda: store.open_registry(c, image), "/bin/tiny", ["/bin/tiny"], [],
                       "/", memory=None, stdout=out.extend, stderr=out.extend, home=home,
                       stats={})
    store.remove(c)
    assert status == 128 + 4, (status, bytes(out))              # SIGILL, not "powered off 42"


@pytest.mark.parametrize("isolation", ["process", "vm"])
def test_stdin_from_a_pipe_reaches_the_program_in_both_flavors(home, isolation):
    from tests import hvcmd
    data = b"hello from the pipe\n" + b"x" * 100_000 + b"\nlast\n"      # more than one read
    proc = hvcmd.run(["container", "run", "--rm", "--isolation", isolation, "svc", "/bin/io"],
                     input=data, capture_output=True, timeout=120,
                     env=dict(os.environ, HV_HOME=str(home)))
    assert proc.returncode == 0, proc.stderr
    assert b"HELLO FROM THE PIPE\n" in proc.stdout                  # io upper-cases its stdin
    assert f"stdin: {len(data)} bytes, 3 lines\n".encode() in proc.stdout
    assert proc.stderr == b"a line on stderr\n"
