"""The Linux system-call table: hostile arguments, fds, memory, strace, the C and Python paths,
private calls, faults, and running many processes on few engines."""
from __future__ import annotations

import io
import struct

import pytest

from hv import guests
from hv.container import linux_abi
from hv.container.engine import Engine, EnginePool, Step, c_available
from hv.container.linux_abi import AT_FDCWD, E, TABLE, dispatch
from hv.container.loader import MMAP_TOP
from hv.container.process import Process
from tests.container.conftest import EXIT_7, make_root, run_program, run_tiny

HELLO = "/bin/hello"
NR = {entry.name: nr for nr, entry in TABLE.items()}


@pytest.fixture
def proc(tmp_path):
    """A loaded (not started) process over a root with a few files, plus scratch memory."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "hello").write_bytes(guests.linux_program_path("hello").read_bytes())
    (tmp_path / "data.txt").write_bytes(b"0123456789" * 10)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_text("x")
    (tmp_path / "link").symlink_to("data.txt")
    p = Process(HELLO, ["hello"], [], make_root(tmp_path), stdout=io.BytesIO(), stderr=io.BytesIO(),
                stdin=io.BytesIO(b"input"))
    p.scratch = call(p, "mmap2", 0, 0x10000, 3, 0x22, 0xFFFFFFFF, 0)
    assert p.scratch > 0
    yield p
    p.close()


def call(p, name, *args):
    args = list(args) + [0] * (6 - len(args))
    return dispatch(p, NR[name], [a & 0xFFFFFFFF for a in args])


def put(p, offset, data: bytes) -> int:
    """Write ``data`` into scratch memory at ``offset``; returns its guest address."""
    p.space.write(p.scratch + offset, data)
    return p.scratch + offset


# -- hostile pointers ------------------------------------------------------------------
BAD_POINTERS = [0, 0x1000, 0x30000000, 0xFFFFF000, 0xFFFFFFFE]


def _straddling(p) -> int:
    """The last byte of the scratch mapping, not NUL: any longer read or write runs off its end."""
    return put(p, 0x10000 - 1, b"a")


def _cases(p):
    """(call, args with None where the bad pointer goes, NULL means 'none' here)."""
    path = put(p, 0, b"data.txt\0")
    dpath = put(p, 0x40, b"dir\0")
    lpath = put(p, 0x80, b"link\0")
    newp = put(p, 0xC0, b"newname\0")
    buf = p.scratch + 0x1000
    iov = put(p, 0x100, struct.pack("<II", buf, 16))
    fd = call(p, "open", path, 2)
    dfd = call(p, "open", dpath, 0x10000)
    X = None
    return [
        ("read", (fd, X, 16), False), ("write", (1, X, 16), False), ("readv", (fd, X, 1), False),
        ("readv", (fd, put(p, 0x108, struct.pack("<II", 0x1000, 16)), 1), "iov"),
        ("writev", (1, X, 1), False), ("pread64", (fd, X, 16, 0, 0), False),
        ("pwrite64", (fd, X, 16, 0, 0), False),
        ("open", (X, 0, 0), False), ("openat", (AT_FDCWD, X, 0, 0), False),
        ("stat64", (X, buf), False), ("stat64", (path, X), False), ("lstat64", (X, buf), False),
        ("lstat64", (lpath, X), False), ("fstat64", (fd, X), False),
        ("fstatat64", (AT_FDCWD, X, buf, 0), False), ("fstatat64", (AT_FDCWD, path, X, 0), False),
        ("statx", (AT_FDCWD, X, 0, 0x7FF, buf), False), ("statx", (AT_FDCWD, path, 0, 0x7FF, X), False),
        ("getdents64", (dfd, X, 4096), False), ("_llseek", (fd, 0, 0, X, 0), False),
        ("mkdir", (X, 0o755), False), ("mkdirat", (AT_FDCWD, X, 0o755), False), ("rmdir", (X,), False),
        ("unlink", (X,), False), ("unlinkat", (AT_FDCWD, X, 0), False),
        ("rename", (X, newp), False), ("rename", (path, X), False),
        ("renameat", (AT_FDCWD, X, AT_FDCWD, newp), False), ("renameat2", (AT_FDCWD, path, AT_FDCWD, X, 0), False),
        ("chdir", (X,), False), ("getcwd", (X, 100), False),
        ("readlink", (X, buf, 10), False), ("readlink", (lpath, X, 10), False),
        ("readlinkat", (AT_FDCWD, lpath, X, 10), False),
        ("access", (X, 0), False), ("faccessat", (AT_FDCWD, X, 0), False),
        ("faccessat2", (AT_FDCWD, X, 0, 0), False),
        ("symlink", (X, newp), False), ("symlink", (path, X), False), ("symlinkat", (path, AT_FDCWD, X), False),
        ("link", (X, newp), False), ("linkat", (AT_FDCWD, path, AT_FDCWD, X, 0), False),
        ("truncate", (X, 0), False), ("truncate64", (X, 0, 0), False), ("chmod", (X, 0o644), False),
        ("fchmodat", (AT_FDCWD, X, 0o644), False),
        ("pipe", (X,), False), ("pipe2", (X, 0), False), ("ioctl", (fd, linux_abi.FIONREAD, X), False),
        ("uname", (X,), False), ("set_thread_area", (X,), False),
        ("rt_sigaction", (2, X, 0, 8), True), ("rt_sigaction", (2, 0, X, 8), True),
        ("rt_sigprocmask", (0, X, 0, 8), True), ("rt_sigprocmask", (0, 0, X, 8), True),
        ("ugetrlimit", (3, X), False), ("prlimit64", (0, 3, 0, X), True), ("prlimit64", (0, 3, X, 0), True),
        ("getrandom", (X, 16, 0), False), ("time", (X,), True), ("gettimeofday", (X, 0), True),
        ("gettimeofday", (0, X), True), ("clock_gettime", (0, X), False), ("clock_gettime64", (1, X), False),
        ("clock_getres", (0, X), True), ("clock_getres_time64", (0, X), True),
        ("nanosleep", (X, 0), False), ("clock_nanosleep", (0, 0, X, 0), False),
        ("clock_nanosleep_time64", (0, 0, X, 0), False),
    ]


# Calls whose pointer-looking arguments Linux does not dereference (or where NULL is valid).
NOT_DEREFERENCED = {"brk", "mmap2", "munmap", "mprotect", "madvise", "set_tid_address", "set_robust_list",
                    "rseq", "fcntl64", "fcntl", "ioctl"}


def test_every_pointer_taking_call_is_in_the_bad_pointer_loop(proc):
    cases = _cases(proc)
    covered = {name for name, _args, _null in cases}
    takes_pointers = {e.name for e in TABLE.values() if {"p", "path", "rbuf", "wbuf"} & set(e.args)}
    assert takes_pointers - NOT_DEREFERENCED - covered == set()


def test_bad_pointers_give_efault_for_every_call_that_takes_one(proc):
    cases = _cases(proc)
    fds_before = set(proc.fds.files)
    failures = []
    for name, args, null_ok in cases:
        for bad in BAD_POINTERS + [_straddling(proc)]:
            if bad == 0 and null_ok is True:
                continue
            filled = [bad if a is None else a for a in args]
            if null_ok == "iov":                      # the iovec itself points at the bad buffer
                put(proc, 0x108, struct.pack("<II", bad, 16))
                if bad == 0:
                    continue
            ret = call(proc, name, *filled)
            if ret != -E.EFAULT:
                failures.append((name, hex(bad), ret))
    assert failures == [], failures
    assert set(proc.fds.files) == fds_before | {3, 4}   # the two fds _cases opened, nothing leaked


def test_a_write_to_dev_null_checks_only_the_address_range_as_linux_does(proc):
    fd = call(proc, "open", put(proc, 0, b"/dev/null\0"), 1)
    assert call(proc, "write", fd, 0x1000, 100) == 100          # unmapped but in range: never read
    assert call(proc, "write", fd, 0xFFFFFF00, 0x200) == -E.EFAULT
    assert call(proc, "write", fd, 0x08048000, 0xF0000000) == linux_abi.MAX_RW   # capped as Linux


def test_a_path_without_a_nul_within_path_max_is_enametoolong(proc):
    addr = put(proc, 0x2000, b"a/" * 2500)
    assert call(proc, "open", addr, 0) == -E.ENAMETOOLONG
    assert call(proc, "stat64", put(proc, 0x3000, b"x" * 300 + b"\0"), proc.scratch) == -E.ENAMETOOLONG


def test_iovec_counts_beyond_uio_maxiov_are_einval(proc):
    iov = put(proc, 0x100, struct.pack("<II", proc.scratch, 1) * 4)
    assert call(proc, "writev", 1, iov, 1025) == -E.EINVAL
    assert call(proc, "readv", 0, iov, 0xFFFFFFFF) == -E.EINVAL
    big = put(proc, 0x200, struct.pack("<IIII", proc.scratch, 0x7FFFFFFF, proc.scratch, 0x7FFFFFFF))
    assert call(proc, "writev", 1, big, 2) == -E.EINVAL          # the total overflows ssize_t


def test_a_huge_read_length_is_served_from_what_the_file_has(proc):
    fd = call(proc, "open", put(proc, 0, b"data.txt\0"), 0)
    assert call(proc, "read", fd, proc.scratch + 0x1000, 0xF000) == 100
    assert proc.space.read(proc.scratch + 0x1000, 12) == b"012345678901"
    assert call(proc, "read", fd, proc.scratch, 0x7FFFFFFF) == -E.EFAULT   # beyond the mapping


# -- fds ---------------------------------------------------------------------------------
def test_the_fd_table_is_bounded_with_emfile(tmp_path):
    p = Process(str(guests.linux_program_path("hello")), ["hello"], [], max_fds=8)
    addr = p.space.areas[0].start            # any readable guest memory holding a path
    p.space.poke(p.initial_sp - 64, b"/dev/null\0")
    results = [call(p, "open", p.initial_sp - 64, 0) for _ in range(7)]
    assert results == [3, 4, 5, 6, 7, -E.EMFILE, -E.EMFILE] and addr
    assert call(p, "dup", 0) == -E.EMFILE
    assert call(p, "close", 5) == 0 and call(p, "dup", 0) == 5
    assert call(p, "dup2", 0, 8) == -E.EBADF
    p.close()


def test_closed_and_never_opened_fds_are_ebadf(proc):
    assert call(proc, "close", 3) == -E.EBADF
    assert call(proc, "read", 50, proc.scratch, 1) == -E.EBADF
    assert call(proc, "write", 0, proc.scratch, 1) == -E.EBADF     # stdin is read-only
    assert call(proc, "fstat64", 0xFFFFFFFF, proc.scratch) == -E.EBADF
    assert call(proc, "close", 1) == 0 and call(proc, "write", 1, proc.scratch, 1) == -E.EBADF


def test_dup_shares_the_offset_and_dup2_replaces_the_target(proc):
    fd = call(proc, "open", put(proc, 0, b"data.txt\0"), 0)
    other = call(proc, "dup2", fd, 9)
    assert other == 9
    assert call(proc, "read", fd, proc.scratch + 0x100, 4) == 4
    assert call(proc, "read", 9, proc.scratch + 0x100, 4) == 4
    assert proc.space.read(proc.scratch + 0x100, 4) == b"4567"
    assert call(proc, "fcntl64", 9, linux_abi.F_GETFD) == 0
    assert call(proc, "dup3", fd, 9, linux_abi.O_CLOEXEC) == 9
    assert call(proc, "fcntl64", 9, linux_abi.F_GETFD) == 1


def test_special_files_are_served_by_hv(proc):
    assert call(proc, "open", put(proc, 0, b"/dev/tty\0"), 2) == -E.ENXIO
    fd = call(proc, "open", put(proc, 0, b"/dev/zero\0"), 0)
    put(proc, 0x100, b"\xff" * 8)
    assert call(proc, "read", fd, proc.scratch + 0x100, 8) == 8
    assert proc.space.read(proc.scratch + 0x100, 8) == bytes(8)
    n = call(proc, "readlink", put(proc, 0, b"/proc/self/exe\0"), proc.scratch + 0x100, 100)
    assert proc.space.read(proc.scratch + 0x100, n) == b"/bin/hello"
    assert call(proc, "ioctl", 1, linux_abi.TCGETS, proc.scratch) == -E.ENOTTY


# -- memory ------------------------------------------------------------------------------
def test_munmap_frees_a_range_that_the_next_mmap_reuses(proc):
    a = call(proc, "mmap2", 0, 3 << 20, 3, 0x22, -1, 0)
    assert call(proc, "munmap", a + (1 << 20), 1 << 20) == 0
    assert proc.space.area_at(a + (1 << 20)) is None and proc.space.area_at(a) is not None
    b = call(proc, "mmap2", 0, 1 << 20, 3, 0x22, -1, 0)
    assert b == a + (1 << 20)                              # the hole, not fresh address space
    assert call(proc, "munmap", a, 3 << 20) == 0
    assert call(proc, "mmap2", 0, 3 << 20, 3, 0x22, -1, 0) == a


def test_map_fixed_replaces_what_was_there_and_noreplace_refuses(proc):
    a = call(proc, "mmap2", 0, 0x4000, 3, 0x22, -1, 0)
    proc.space.write(a, b"old data")
    assert call(proc, "mmap2", a, 0x1000, 3, 0x22 | 0x10, -1, 0) == a
    assert proc.space.read(a, 8) == bytes(8)
    assert call(proc, "mmap2", a, 0x1000, 3, 0x22 | 0x100000, -1, 0) == -E.EEXIST
    assert call(proc, "mmap2", a + 1, 0x1000, 3, 0x22 | 0x10, -1, 0) == -E.EINVAL
    assert call(proc, "mmap2", 0, 0x1000, 3, 0x22 | 0x10, -1, 0) == -E.EPERM


def test_a_private_file_mapping_is_a_copy_of_the_file(proc):
    fd = call(proc, "open", put(proc, 0, b"data.txt\0"), 0)
    a = call(proc, "mmap2", 0, 0x2000, 1, 2, fd, 0)
    assert proc.space.read(a, 100) == b"0123456789" * 10 and proc.space.read(a + 100, 10) == bytes(10)
    assert call(proc, "mmap2", 0, 0x1000, 3, 1, fd, 0) == -E.ENODEV   # shared and writable


def test_the_memory_limit_gives_enomem_and_brk_stops_growing(tmp_path):
    p = Process(str(guests.linux_program_path("hello")), ["hello"], [], memory_limit=16 << 20)
    assert call(p, "mmap2", 0, 32 << 20, 3, 0x22, -1, 0) == -E.ENOMEM
    start = call(p, "brk", 0)
    assert call(p, "brk", start + (1 << 20)) == start + (1 << 20)
    assert call(p, "brk", start + (64 << 20)) == start + (1 << 20)     # refused: brk stays
    a = call(p, "mmap2", 0, 4 << 20, 3, 0x22, -1, 0)
    assert a > 0 and p.space.mapped <= 16 << 20
    p.close()


def test_brk_grows_on_demand_and_shrinking_gives_zeroed_memory_back(proc):
    start = call(proc, "brk", 0)
    assert call(proc, "brk", start + 0x5000) == start + 0x5000
    proc.space.write(start + 0x4FF0, b"heap")
    assert call(proc, "brk", start) == start
    assert proc.space.area_at(start + 0x10) is None
    assert call(proc, "brk", start + 0x5000) == start + 0x5000
    assert proc.space.read(start + 0x4FF0, 4) == bytes(4)


def test_mmap_areas_stay_below_the_stack_gap(proc):
    a = call(proc, "mmap2", 0, 0x1000, 3, 0x22, -1, 0)
    assert 0 < a < MMAP_TOP


def test_a_program_that_grows_its_stack_within_the_limit_runs_and_beyond_it_faults(tmp_path):
    grow = bytes.fromhex("81ec00001000" "890424")             # sub esp,0x100000; mov [esp],eax
    assert run_tiny(tmp_path, grow + EXIT_7).exit_status == 7
    too_far = bytes.fromhex("81ec00009000" "890424")          # 9 MiB below: past RLIMIT_STACK
    p = run_tiny(tmp_path, too_far + EXIT_7)
    assert p.exit_status == 139 and "write of" in p.message


# -- faults and signals ------------------------------------------------------------------
FAULTS = [
    (bytes.fromhex("31c9f7f1"), 136, "divide error"),           # xor ecx,ecx; div ecx
    (bytes.fromhex("cd81"), 139, "int 0x81"),                   # a vector with no gate
    (bytes.fromhex("ee"), 139, "general protection"),           # out dx, al at CPL3
    (bytes.fromhex("ec"), 139, "general protection"),           # in al, dx
    (bytes.fromhex("f4"), 139, "general protection"),           # hlt
    (bytes.fromhex("a100000000"), 139, "read of 0x0"),
    (bytes.fromhex("cc"), 133, "breakpoint"),                   # int3
]


def test_faults_end_the_program_with_the_signal_linux_sends_on_one_reused_engine(tmp_path):
    engine = Engine()
    for _round in range(2):   # a stale old_exception would turn later faults into #DF or silence
        for code, status, words in FAULTS:
            p = run_tiny(tmp_path, code + EXIT_7, engine)
            assert (p.exit_status, words in p.message) == (status, True), p.message
    assert run_tiny(tmp_path, EXIT_7, engine).exit_status == 7


def test_kill_and_tgkill_of_another_process_are_esrch(proc):
    assert call(proc, "kill", 99, 15) == -E.ESRCH
    assert call(proc, "tgkill", 1, 99, 15) == -E.ESRCH
    assert call(proc, "kill", 1, 65) == -E.EINVAL
    assert proc.exit_status is None
    assert call(proc, "kill", 1, 0) == 0 and proc.exit_status is None
    assert call(proc, "tgkill", 1, 1, 10) == 0 and proc.exit_status == 138


# -- unknown and private calls -----------------------------------------------------------
def test_unknown_calls_are_enosys_and_counted_per_number(tmp_path):
    r = run_program("syscalls", ["unknown", "5"], workdir=tmp_path)
    assert r.stdout == b"unknown x 5: %d\n" % (-5 * E.ENOSYS)
    assert r.process.call_counts()[0x1FF] == 5


def test_numbers_outside_the_table_are_counted_without_growing_without_bound(proc):
    for nr in range(0x2000_0000, 0x2000_0000 + linux_abi.MAX_OTHER_COUNTS + 10):
        assert dispatch(proc, nr, [0] * 6) == -E.ENOSYS
    assert len(proc.other_calls) == linux_abi.MAX_OTHER_COUNTS + 1 and proc.other_calls[-1] == 10


# mov eax,0x1001; mov ebx,<ptr>; int 0x80; mov ebx,eax; mov eax,1; int 0x80
def _private_call_program(ptr: int) -> bytes:
    return (bytes.fromhex("b801100000") + b"\xbb" + struct.pack("<I", ptr) + bytes.fromhex("cd80")
            + bytes.fromhex("89c3" "b801000000" "cd80"))


def test_private_calls_reach_extra_calls_with_a_memory_accessor(tmp_path):
    seen = []

    def handler(nr, args, mem):
        s = mem.read_cstr(args[0], 64)
        seen.append((nr, s))
        return len(s)
    from tests.container.conftest import TINY_CODE
    code = _private_call_program(TINY_CODE + 5)        # points into its own code bytes
    p = run_tiny(tmp_path, code, extra_calls={0x1001: handler})
    assert seen and seen[0][0] == 0x1001 and p.exit_status == len(seen[0][1])
    p = run_tiny(tmp_path, _private_call_program(0x1000), extra_calls={0x1001: handler})
    assert p.exit_status == (-E.EFAULT) & 0xFF


def test_private_calls_go_to_the_registry_when_no_extra_call_claims_them(tmp_path):
    class Registry:
        def call(self, nr, args, mem):
            return 40 + len(mem.read(args[0], 2))
    assert run_tiny(tmp_path, _private_call_program(0x08048000), registry_calls=Registry()).exit_status == 42
    assert run_tiny(tmp_path, _private_call_program(0x08048000)).exit_status == (-E.ENOSYS) & 0xFF


def test_extra_calls_must_be_in_the_private_range(tmp_path):
    with pytest.raises(ValueError):
        Process(str(guests.linux_program_path("hello")), ["x"], [], extra_calls={20: lambda *a: 0})


def test_a_handler_that_raises_ends_the_process_with_sigsys_not_the_host(tmp_path):
    def broken(nr, args, mem):
        raise KeyError("bug")
    p = run_tiny(tmp_path, _private_call_program(0x08048000), extra_calls={0x1001: broken})
    assert p.exit_status == 128 + 31 and "KeyError" in p.message


# -- strace --------------------------------------------------------------------------------
def test_strace_prints_each_call_strace_style(tmp_path):
    (tmp_path / "input.txt").write_text("a\n")
    log = io.StringIO()
    run_program("files", [], workdir=tmp_path, strace=log)
    lines = log.getvalue().splitlines()
    assert 'openat(AT_FDCWD, "input.txt", O_RDONLY|O_LARGEFILE) = 3' in lines
    assert 'mkdir("work", 0755) = 0' in lines
    assert 'readlink("work/link", 0x' in log.getvalue()
    assert lines[-1] == "exit_group(0) = ?"
    err = io.StringIO()
    run_program("errors", [], workdir=tmp_path, strace=err)
    assert ('openat(AT_FDCWD, "missing.txt", O_RDONLY) = -1 ENOENT (No such file or directory)'
            in err.getvalue().splitlines())
    assert 'write(1, "open(\\"missing.txt\\", O_RDONLY)   "..., ' in err.getvalue()


# -- the C and the Python paths ------------------------------------------------------------
@pytest.mark.skipif(not c_available(), reason="the C fast path was not built")
@pytest.mark.parametrize("program,args", [("syscalls", ["getpid", "1000"]), ("syscalls", ["devnull", "1000"]),
                                          ("errors", []), ("files", [])])
def test_the_c_and_python_paths_give_identical_results(tmp_path, program, args):
    results = []
    for engine, fast in ((Engine("c"), True), (Engine("c"), False), (Engine("python"), False)):
        work = tmp_path / f"{engine.kind}-{fast}"
        work.mkdir()
        (work / "input.txt").write_text("one\ntwo\n")
        r = run_program(program, args, workdir=work, engine=engine, fast_calls=fast)
        counts = r.process.call_counts()
        results.append((r.status, r.stdout, r.stderr, counts))
    assert results[0] == results[1] == results[2]
    if args[:1] == ["getpid"]:
        assert results[0][3][20] >= 1000 and results[0][1] == b"getpid x 1000: 1000\n"


# -- many processes, few engines -----------------------------------------------------------
def test_processes_interleaved_on_one_engine_give_their_solo_outputs(tmp_path):
    solo = run_program("cpuloop", ["3000000"], workdir=tmp_path).stdout
    pool = EnginePool(size=1, warm=1)
    procs, outs = [], []
    for i in range(3):
        out = io.BytesIO()
        procs.append(Process(str(guests.linux_program_path("cpuloop")), ["cpuloop", "3000000"], [], stdout=out))
        outs.append(out)
    preempted = 0
    while any(p.exit_status is None for p in procs):
        for p in procs:
            if p.exit_status is None:
                preempted += pool.run(p, max_ns=2_000_000) is Step.PREEMPTED
    assert preempted >= 3
    assert [o.getvalue() for o in outs] == [solo] * 3
    assert [p.exit_status for p in procs] == [0, 0, 0]
    pool.close()


def test_a_sleeping_process_blocks_and_leaves_the_engine(tmp_path):
    engine = Engine()
    out = io.BytesIO()
    p = Process(str(guests.linux_program_path("sleep")), ["sleep"], [], stdout=out)
    assert p.step(engine) is Step.BLOCKED
    assert p.blocked_on is not None and not p.blocked_on.ready()
    assert p.step(engine) is Step.BLOCKED           # still asleep: nothing ran
    p.blocked_on.wait()
    while p.step(engine) is not Step.EXITED:
        if p.blocked_on is not None:
            p.blocked_on.wait()
    assert p.exit_status == 0 and b"slept at least 20 ms: 1" in out.getvalue()
    assert engine.resident is None and p.space.areas == []


def test_an_idle_process_holds_no_engine_and_its_pages_only(tmp_path):
    import os
    r, w = os.pipe()
    try:
        pool = EnginePool(size=1, warm=1)
        outs = [io.BytesIO() for _ in range(3)]
        procs = [Process(str(guests.linux_program_path("io")), ["io"], [], stdin=r, stdout=out) for out in outs]
        assert [pool.run(p) for p in procs] == [Step.BLOCKED] * 3     # all wait on the empty stdin
        resident = [pool.idle[0].resident is p for p in procs]
        assert resident == [False, False, True]                       # only the last one is mapped
        assert all(0 < p.space.resident_bytes() < 1 << 20 for p in procs)
        os.write(w, b"late input\n")
        os.close(w)
        w = -1
        for p in procs:
            while pool.run(p) is not Step.EXITED:
                pass
        # the first to read takes the line; the others then see end of file
        assert sorted(b"LATE INPUT" in out.getvalue() for out in outs) == [False, False, True]
        assert [p.exit_status for p in procs] == [0, 0, 0]
        pool.close()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_no_system_call_runs_after_a_faulting_store_in_the_same_block(tmp_path):
    """The engine reports a bad access only when its block ends (no per-access exit checks,
    docs/unicorn.md §10): the exit(42) right after the store must not run."""
    from tests.container.conftest import TINY_CODE
    store_then_exit = bytes.fromhex("a300100000"                # mov [0x1000], eax (unmapped)
                                    "b801000000" "bb2a000000" "cd80")   # exit(42)
    p = run_tiny(tmp_path, store_then_exit)
    assert p.exit_status == 139, p.message
    assert p.message == f"SIGSEGV: invalid write of 0x1000 at eip {TINY_CODE:#x}"
