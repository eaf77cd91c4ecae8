"""The Linux i386 system calls hv serves as a container's kernel: a table, one handler per call.

Organised as qemu-user's ``linux-user/syscall.c`` and gVisor's Sentry are: a call
number selects one handler, registered with ``@syscall(nr, name, args)``, which
gets the process and the argument registers (EBX, ECX, EDX, ESI, EDI, EBP) as
unsigned 32-bit values and returns the result or ``-errno``. ``args`` names the
arguments' kinds for the strace output. The hottest calls never get here: the
C hook answers them (hv/fastpath/linux_syscall.c); the handlers below answer
the same calls identically for the Python path (strace, no C compiler).

Every argument is hostile. Handlers reach guest memory only through the
process's AddressSpace, which raises GuestFault (-EFAULT) for anything outside
the process's readable/writable areas; lengths are capped (MAX_RW, as Linux) and
data is moved in bounded chunks, never in a host buffer sized by the guest;
paths stop at PATH_MAX (-ENAMETOOLONG); iovec counts at UIO_MAXIOV (-EINVAL).
Host exceptions map to Linux errnos by name (``linux_errno``); an unknown call
is -ENOSYS and is counted.

Calls from PRIVATE_BASE (0x1000) up are hv's own: ``extra_calls`` handlers and
the registry (``registry_calls.call(nr, args, mem)``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import posixpath
import signal
import stat as stat_mod
import struct
import termios
import time

from hv.container.fdtable import (IO_CHUNK, O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECT,
                                  O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_PATH, O_RDONLY,
                                  O_TMPFILE, O_TRUNC, STATUS_FLAGS, DevNull, DevRandom, DevZero,
                                  HostFile, OpenFile, Pipe, PipeEnd, StatInfo, WouldBlock, SleepUntil,
                                  host_open_flags)
from hv.container.guest_memory import GuestFault, OutOfMemory
from hv.container.loader import MIN_ADDR, PAGE, TASK_TOP, TLS_ENTRIES, TLS_ENTRY_MIN, GDT_ADDR, tls_descriptor

PRIVATE_BASE = 0x1000
COUNTED_CALLS = 512             # numbers below this are counted by the C hook (lx_proc.calls)
MAX_FDS = 1024                  # RLIMIT_NOFILE, and the C side's /dev/null bitmap
MAX_RW = 0x7FFFF000             # Linux's MAX_RW_COUNT
PATH_MAX = 4096
NAME_MAX = 255
UIO_MAXIOV = 1024
MAX_OTHER_COUNTS = 4096         # distinct uncounted numbers remembered (then lumped under -1)
BRK_RESERVE = 1 << 30           # host address space held for the brk heap (not memory)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x400
AT_EACCESS, AT_NO_AUTOMOUNT, AT_EMPTY_PATH, AT_STATX_SYNC_TYPE = 0x200, 0x800, 0x1000, 0x6000

MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_TYPE = 1, 2, 3, 0xF
MAP_FIXED, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x10, 0x20, 0x100000
PROT_READ, PROT_WRITE, PROT_EXEC, PROT_GROWSDOWN, PROT_GROWSUP = 1, 2, 4, 0x01000000, 0x02000000
MADV_DONTNEED = 4

SIG_DFL, SIG_IGN = 0, 1
# signals whose default action is to do nothing
DEFAULT_IGNORED = {signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH}
JOB_CONTROL = {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}

CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC, 4: time.CLOCK_MONOTONIC_RAW,
          5: getattr(time, "CLOCK_REALTIME_COARSE", time.CLOCK_REALTIME),
          6: getattr(time, "CLOCK_MONOTONIC_COARSE", time.CLOCK_MONOTONIC),
          7: getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)}
CPU_CLOCKS = (2, 3)             # process and thread CPU time: the time spent running

# -- errno ---------------------------------------------------------------------------------
# Linux's numbers (include/uapi/asm-generic/errno-base.h, errno.h); host errors map by name.
LINUX_ERRNO = {name: n for n, name in enumerate(
    "_ EPERM ENOENT ESRCH EINTR EIO ENXIO E2BIG ENOEXEC EBADF ECHILD EAGAIN ENOMEM EACCES EFAULT "
    "ENOTBLK EBUSY EEXIST EXDEV ENODEV ENOTDIR EISDIR EINVAL ENFILE EMFILE ENOTTY ETXTBSY EFBIG "
    "ENOSPC ESPIPE EROFS EMLINK EPIPE EDOM ERANGE EDEADLK ENAMETOOLONG ENOLCK ENOSYS ENOTEMPTY "
    "ELOOP".split()) if n}
LINUX_ERRNO.update(EWOULDBLOCK=11, EDEADLOCK=35, ENODATA=61, EOVERFLOW=75, EILSEQ=84, ENOTSUP=95,
                   EOPNOTSUPP=95, ETIMEDOUT=110, ESTALE=116, EDQUOT=122)
ERRNO_NAMES = {n: name for name, n in LINUX_ERRNO.items() if name not in ("EWOULDBLOCK", "EDEADLOCK",
                                                                           "ENOTSUP")}
E = type("E", (), {name: n for name, n in LINUX_ERRNO.items()})   # E.ENOENT == 2


def linux_errno(exc: OSError) -> int:
    """The Linux errno for a host OSError (EIO for anything without one)."""
    name = errno.errorcode.get(exc.errno or 0)
    return LINUX_ERRNO.get(name, E.EIO)


class SysError(Exception):
    """A handler's way to say -errno from deep inside a helper."""

    def __init__(self, code: int) -> None:
        super().__init__(ERRNO_NAMES.get(code, str(code)))
        self.code = code


def s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def page_up(v: int) -> int:
    return (v + PAGE - 1) & ~(PAGE - 1)


# -- the table -----------------------------------------------------------------------------
class Syscall:
    __slots__ = ("nr", "name", "fn", "args", "nargs")

    def __init__(self, nr, name, fn, args) -> None:
        self.nr, self.name, self.fn = nr, name, fn
        self.args = tuple(args.split()) if args else ()
        self.nargs = len(self.args)


TABLE: dict[int, Syscall] = {}
NAMES: dict[int, str] = {}


def syscall(nr: int, name: str, args: str = ""):
    """Register a handler for call ``nr``; ``args`` gives each argument's strace kind."""
    def register(fn):
        TABLE[nr] = Syscall(nr, name, fn, args)
        NAMES[nr] = name
        return fn
    return register


def alias(nr: int, name: str, of: int) -> None:
    TABLE[nr] = Syscall(nr, name, TABLE[of].fn, " ".join(TABLE[of].args))
    NAMES[nr] = name


def dispatch(p, nr: int, args) -> int:
    """Serve call ``nr`` for process ``p``; returns the result (negative: -errno)."""
    entry = TABLE.get(nr)
    if nr >= COUNTED_CALLS:
        if nr not in p.other_calls and len(p.other_calls) >= MAX_OTHER_COUNTS:
            p.other_calls[-1] = p.other_calls.get(-1, 0) + 1
        else:
            p.other_calls[nr] = p.other_calls.get(nr, 0) + 1
    try:
        if entry is not None:
            ret = entry.fn(p, *args[:entry.nargs])
        elif nr >= PRIVATE_BASE:
            ret = _private_call(p, nr, args)
        else:
            ret = -E.ENOSYS
    except GuestFault:
        ret = -E.EFAULT
    except SysError as exc:
        ret = -exc.code
    except OutOfMemory:
        ret = -E.ENOMEM
    except WouldBlock as wb:
        p.block(wb.wait)
        return 0
    except OSError as exc:
        ret = -linux_errno(exc)
    if p.strace is not None:
        p.strace.write(format_call(p, nr, entry, args, ret) + "\n")
    return ret


def _private_call(p, nr: int, args) -> int:
    handler = p.extra_calls.get(nr)
    if handler is not None:
        return int(handler(nr, tuple(args), p.mem))
    if p.registry_calls is not None:
        return int(p.registry_calls.call(nr, tuple(args), p.mem))
    return -E.ENOSYS


# -- strace --------------------------------------------------------------------------------
OPEN_FLAG_NAMES = ((O_CREAT, "O_CREAT"), (O_EXCL, "O_EXCL"), (0o400, "O_NOCTTY"), (O_TRUNC, "O_TRUNC"),
                   (O_APPEND, "O_APPEND"), (O_NONBLOCK, "O_NONBLOCK"), (0o100000, "O_LARGEFILE"),
                   (O_DIRECTORY, "O_DIRECTORY"), (O_NOFOLLOW, "O_NOFOLLOW"), (O_CLOEXEC, "O_CLOEXEC"))


def _quote(data: bytes, limit: int = 32) -> str:
    out = []
    for b in data[:limit]:
        c = chr(b)
        out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\"}.get(c)
                   or (c if 32 <= b < 127 else f"\\{b:o}"))
    return '"' + "".join(out) + '"' + ("..." if len(data) > limit else "")


def _format_arg(p, kind: str, v: int, args, i: int, ret: int) -> str:
    if kind in ("fd", "d"):
        return str(s32(v))
    if kind == "dirfd":
        return "AT_FDCWD" if s32(v) == AT_FDCWD else str(s32(v))
    if kind == "path":
        try:
            s = p.space.read_cstr(v, PATH_MAX)
        except GuestFault:
            s = None
        return _quote(s, PATH_MAX) if s is not None else f"{v:#x}"
    if kind in ("wbuf", "rbuf"):
        n = args[i + 1] if kind == "wbuf" else ret
        if kind == "rbuf" and ret <= 0:
            return f"{v:#x}"
        try:
            return _quote(p.space.read(v, min(n, 32))) + ("..." if n > 32 else "")
        except GuestFault:
            return f"{v:#x}"
    if kind == "oflags":
        names = [("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[v & O_ACCMODE]]
        rest = v & ~O_ACCMODE
        for bit, name in OPEN_FLAG_NAMES:
            if rest & bit:
                names.append(name)
                rest &= ~bit
        if rest:
            names.append(f"{rest:#o}")
        return "|".join(names)
    if kind == "mode":
        return f"0{v:o}"
    if kind == "sig":
        try:
            return signal.Signals(v).name
        except ValueError:
            return str(v)
    if kind == "p":
        return "NULL" if v == 0 else f"{v:#x}"
    return f"{v:#x}" if kind == "x" else str(v)


def format_call(p, nr: int, entry: Syscall | None, args, ret: int) -> str:
    """One strace-style line: ``openat(AT_FDCWD, "/etc/config", O_RDONLY) = 3``."""
    if entry is None:
        text = f"syscall_{nr:#x}({', '.join(f'{a:#x}' for a in args)})"
    else:
        parts = [_format_arg(p, k, args[i], args, i, ret) for i, k in enumerate(entry.args)]
        if entry.args[-1:] == ("mode",) and "oflags" in entry.args and not args[len(parts) - 2] & O_CREAT:
            parts.pop()                      # as strace: open's mode only when it creates
        text = f"{entry.name}({', '.join(parts)})"
    if p.exit_status is not None and entry is not None and entry.name in ("exit", "exit_group", "kill",
                                                                           "tgkill", "tkill"):
        return f"{text} = ?"
    if ret < 0 and -ret in ERRNO_NAMES and ret > -4096:
        return f"{text} = -1 {ERRNO_NAMES[-ret]} ({os.strerror(-ret)})"
    if entry is not None and entry.name in ("mmap2", "brk"):
        return f"{text} = {ret & 0xFFFFFFFF:#x}"
    return f"{text} = {ret}"


# -- helpers: strings, paths, files --------------------------------------------------------
def read_path(p, addr: int, allow_empty: bool = False) -> str:
    """A path argument: bounded, NUL-terminated, decoded without loss."""
    raw = p.space.read_cstr(addr, PATH_MAX)
    if raw is None:
        raise SysError(E.ENAMETOOLONG)
    if not raw and not allow_empty:
        raise SysError(E.ENOENT)
    if any(len(c) > NAME_MAX for c in raw.split(b"/")):
        raise SysError(E.ENAMETOOLONG)
    return raw.decode("utf-8", "surrogateescape")


def _dir_of(p, dirfd: int) -> str:
    if dirfd == AT_FDCWD:
        return p.cwd
    f = p.fds.get(dirfd)
    if not isinstance(f, HostFile) or not f.is_dir:
        raise SysError(E.ENOTDIR)
    return f.guest_path


def guest_path(p, dirfd: int, path: str) -> str:
    """An absolute guest path for the root (which resolves '..' and symlinks itself)."""
    if path.startswith("/"):
        return path
    return _dir_of(p, dirfd).rstrip("/") + "/" + path


def canonical(path: str) -> str:
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/")


def _root(p):
    if p.root is None:
        raise SysError(E.ENOENT)
    return p.root


SPECIAL_FILES = {"/dev/null": DevNull, "/dev/zero": DevZero, "/dev/urandom": DevRandom,
                 "/dev/random": DevRandom}


def _special_stat(p, path: str):
    c = canonical(path)
    cls = SPECIAL_FILES.get(c)
    if cls is not None:
        return cls(O_RDONLY).stat()
    if c == "/dev/tty":
        return StatInfo(stat_mod.S_IFCHR | 0o666, ino=7, rdev=os.makedev(5, 0))
    return None


def stat_path(p, dirfd: int, path: str, follow: bool) -> StatInfo:
    gp = guest_path(p, dirfd, path)
    special = _special_stat(p, gp)
    if special is not None:
        return special
    if canonical(gp) == "/proc/self/exe" and p.root is None:
        return StatInfo.of(os.stat(p.exe))
    return StatInfo.of(_root(p).stat(gp, follow))


def _file(p, fd: int) -> OpenFile:
    return p.fds.get(s32(fd))


def _encode_dev(d: int) -> int:
    major, minor = os.major(d), os.minor(d)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def pack_stat64(st: StatInfo) -> bytes:
    """struct stat64 of arch/x86/include/uapi/asm/stat.h (i386), 96 bytes."""
    def ts(ns):
        return (ns // 1_000_000_000) & 0xFFFFFFFF, ns % 1_000_000_000
    return struct.pack("<Q4xIIIIIQ4xqIQIIIIIIQ", _encode_dev(st.dev), st.ino & 0xFFFFFFFF, st.mode,
                       st.nlink & 0xFFFFFFFF, st.uid, st.gid, _encode_dev(st.rdev), st.size, st.blksize,
                       st.blocks, *ts(st.atime_ns), *ts(st.mtime_ns), *ts(st.ctime_ns),
                       st.ino & 0xFFFFFFFFFFFFFFFF)


def pack_statx(st: StatInfo) -> bytes:
    """struct statx (include/uapi/linux/stat.h), 256 bytes; every basic field (mask 0x7ff)."""
    def ts(ns):
        return struct.pack("<qIi", ns // 1_000_000_000, ns % 1_000_000_000, 0)
    head = struct.pack("<IIQIIIHHQQQQ", 0x7FF, st.blksize, 0, st.nlink & 0xFFFFFFFF, st.uid, st.gid,
                       st.mode & 0xFFFF, 0, st.ino, st.size, st.blocks, 0)
    times = ts(st.atime_ns) + bytes(16) + ts(st.ctime_ns) + ts(st.mtime_ns)
    devs = struct.pack("<IIII", os.major(st.rdev), os.minor(st.rdev), os.major(st.dev), os.minor(st.dev))
    return (head + times + devs).ljust(256, b"\0")


# -- process -------------------------------------------------------------------------------
@syscall(1, "exit", "d")
def sys_exit(p, code):
    p.exit(code)
    return 0


alias(252, "exit_group", 1)


@syscall(20, "getpid")
def sys_getpid(p):
    return p.pid


alias(224, "gettid", 20)              # one thread per process: its tid is the pid


@syscall(64, "getppid")
def sys_getppid(p):
    return p.ppid


@syscall(199, "getuid32")
def sys_getuid(p):
    return p.uid


@syscall(200, "getgid32")
def sys_getgid(p):
    return p.gid


alias(201, "geteuid32", 199)
alias(202, "getegid32", 200)
alias(24, "getuid", 199)
alias(47, "getgid", 200)
alias(49, "geteuid", 199)
alias(50, "getegid", 200)


@syscall(258, "set_tid_address", "p")
def sys_set_tid_address(p, ptr):
    return p.pid


@syscall(311, "set_robust_list", "p d")
def sys_set_robust_list(p, head, length):
    return 0 if length == 12 else -E.EINVAL     # sizeof(struct robust_list_head) on i386


@syscall(386, "rseq", "p d x x")
def sys_rseq(p, rseq, length, flags, sig):
    return -E.ENOSYS                            # glibc then runs without restartable sequences


@syscall(158, "sched_yield")
def sys_sched_yield(p):
    return 0


@syscall(243, "set_thread_area", "p")
def sys_set_thread_area(p, uinfo):
    entry, base, limit, flags = struct.unpack("<iIII", p.space.read(uinfo, 16))
    gdt = lambda i: GDT_ADDR + 8 * i
    if entry == -1:
        for i in range(TLS_ENTRY_MIN, TLS_ENTRY_MIN + TLS_ENTRIES):
            if p.space.peek(gdt(i), 8) == bytes(8):
                entry = i
                break
        else:
            return -E.ESRCH
        p.space.write(uinfo, struct.pack("<i", entry))
    if not TLS_ENTRY_MIN <= entry < TLS_ENTRY_MIN + TLS_ENTRIES:
        return -E.EINVAL
    empty = base == 0 and limit == 0 and (flags & 0x7F) == 0x28   # LDT_empty(): read_exec_only, not present
    if empty:
        desc = bytes(8)
    else:
        seg_32bit, contents = flags & 1, (flags >> 1) & 3
        if not seg_32bit or contents > 1:       # tls_desc_okay(): 32-bit data segments only
            return -E.EINVAL
        desc = tls_descriptor(base, limit, flags)
    p.space.poke(gdt(entry), desc)
    return 0


@syscall(122, "uname", "p")
def sys_uname(p, buf):
    field = lambda s: s.encode().ljust(65, b"\0")
    p.space.write(buf, b"".join(field(s) for s in ("Linux", "container", "6.1.0", "#1 SMP hv", "i686",
                                                   "(none)")))
    return 0


@syscall(174, "rt_sigaction", "sig p p d")
def sys_rt_sigaction(p, sig, act, oact, sigsetsize):
    if sigsetsize != 8 or not 1 <= sig <= 64:
        return -E.EINVAL
    if act and sig in (signal.SIGKILL, signal.SIGSTOP):
        return -E.EINVAL
    new = p.space.read(act, 20) if act else None   # handler, flags, restorer, mask (u64)
    if oact:
        old = p.sigactions.get(sig, (SIG_DFL, 0, 0, 0))
        p.space.write(oact, struct.pack("<IIIQ", *old))
    if new is not None:
        p.sigactions[sig] = struct.unpack("<IIIQ", new)
    return 0


@syscall(175, "rt_sigprocmask", "d p p d")
def sys_rt_sigprocmask(p, how, nset, oset, sigsetsize):
    if sigsetsize != 8:
        return -E.EINVAL
    mask = getattr(p, "sigmask", 0)
    new = struct.unpack("<Q", p.space.read(nset, 8))[0] if nset else None
    if new is not None and how not in (0, 1, 2):
        return -E.EINVAL
    if oset:
        p.space.write(oset, struct.pack("<Q", mask))
    if new is not None:
        new &= ~((1 << (signal.SIGKILL - 1)) | (1 << (signal.SIGSTOP - 1)))
        p.sigmask = (mask | new, mask & ~new, new)[how]
    return 0


def _signal_self(p, sig: int) -> int:
    if sig == 0:
        return 0
    if not 1 <= sig <= 64:
        return -E.EINVAL
    handler = p.sigactions.get(sig, (SIG_DFL,))[0]
    if sig not in (signal.SIGKILL, signal.SIGSTOP) and handler == SIG_IGN:
        return 0
    if (sig in DEFAULT_IGNORED and handler == SIG_DFL) or sig in JOB_CONTROL:
        return 0
    # A handler the program installed is never run: signals are not delivered (docs/linux-abi.md).
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    p.die(sig, f"{name}: sent by the program to itself")
    return 0


@syscall(37, "kill", "d sig")
def sys_kill(p, pid, sig):
    if s32(pid) not in (0, -1, p.pid):
        return -E.ESRCH
    return _signal_self(p, sig)


@syscall(270, "tgkill", "d d sig")
def sys_tgkill(p, tgid, tid, sig):
    if s32(tgid) <= 0 or s32(tid) <= 0:
        return -E.EINVAL
    if tgid != p.pid or tid != p.pid:
        return -E.ESRCH
    return _signal_self(p, sig)


@syscall(238, "tkill", "d sig")
def sys_tkill(p, tid, sig):
    if s32(tid) <= 0:
        return -E.EINVAL
    return _signal_self(p, sig) if tid == p.pid else -E.ESRCH


RLIMITS = {3: (8 << 20, 0xFFFFFFFF), 7: (MAX_FDS, MAX_FDS)}   # RLIMIT_STACK, RLIMIT_NOFILE
RLIM_NLIMITS = 16


def _rlimit(p, resource: int) -> tuple[int, int]:
    if resource in (9, 2) and p.space.limit is not None:       # RLIMIT_AS, RLIMIT_DATA
        return p.space.limit, p.space.limit
    return RLIMITS.get(resource, (-1, -1))


@syscall(191, "ugetrlimit", "d p")
def sys_ugetrlimit(p, resource, rlim):
    if resource >= RLIM_NLIMITS:
        return -E.EINVAL
    cur, lim = _rlimit(p, resource)
    clamp = lambda v: 0xFFFFFFFF if v < 0 or v > 0xFFFFFFFF else v
    p.space.write(rlim, struct.pack("<II", clamp(cur), clamp(lim)))
    return 0


@syscall(340, "prlimit64", "d d p p")
def sys_prlimit64(p, pid, resource, new, old):
    if s32(pid) not in (0, p.pid):
        return -E.ESRCH
    if resource >= RLIM_NLIMITS:
        return -E.EINVAL
    if new:
        p.space.read(new, 16)           # accepted, not applied: the caller's limits stand
    if old:
        cur, lim = _rlimit(p, resource)
        p.space.write(old, struct.pack("<qq", cur, lim))
    return 0


@syscall(355, "getrandom", "p u x")
def sys_getrandom(p, buf, n, flags):
    if flags & ~7:
        return -E.EINVAL
    n = min(n, 33554431)                # the kernel's largest single getrandom
    p.space.check(buf, n, writable=True)
    for at in range(0, n, IO_CHUNK):
        p.space.write(buf + at, os.urandom(min(IO_CHUNK, n - at)))
    return n


@syscall(60, "umask", "mode")
def sys_umask(p, mask):
    old, p.umask = p.umask, mask & 0o777
    return old


# -- memory --------------------------------------------------------------------------------
@syscall(45, "brk", "p")
def sys_brk(p, addr):
    if addr == 0 or addr < p.brk_start or addr > TASK_TOP:
        return p.brk
    space = p.space
    if p.brk_area is not None and p.brk_area not in space.areas:
        p.brk_area = None                # the guest unmapped its own heap
    new_end, cur_end = page_up(addr), page_up(p.brk)
    try:
        if new_end > cur_end:
            if p.brk_area is None:
                if space.overlaps(p.brk_start, new_end):
                    return p.brk
                reserve = BRK_RESERVE if space.limit is None else min(BRK_RESERVE, page_up(space.limit))
                p.brk_area = space.map_anonymous(p.brk_start, new_end - p.brk_start,
                                                 PROT_READ | PROT_WRITE, kind="brk",
                                                 reserve=max(reserve, new_end - p.brk_start))
            else:
                space.grow_up(p.brk_area, new_end)
        elif new_end < cur_end and p.brk_area is not None:
            space.unmap(new_end, cur_end)
            if new_end <= p.brk_start:
                p.brk_area = None
    except OutOfMemory:
        return p.brk                     # brk reports failure by not moving
    p.brk = addr
    return addr


@syscall(192, "mmap2", "p u x x fd x")
def sys_mmap2(p, addr, length, prot, flags, fd, pgoff):
    if length == 0 or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
        return -E.EINVAL
    maptype = flags & MAP_TYPE
    if maptype not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        return -E.EINVAL
    size = page_up(length)
    if size > TASK_TOP - MIN_ADDR:
        return -E.ENOMEM
    fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)
    source = None
    if not flags & MAP_ANONYMOUS:
        f = _file(p, fd)
        if isinstance(f, DevZero):
            pass                             # a private /dev/zero mapping is anonymous memory
        elif not isinstance(f, HostFile) or f.is_dir:
            return -E.ENODEV
        elif not f.readable:
            return -E.EACCES
        elif maptype != MAP_PRIVATE and prot & PROT_WRITE:
            return -E.ENODEV                 # shared writable file mappings are not served
        else:
            source = (f.fd, pgoff * PAGE)
    space = p.space
    if fixed:
        if addr & (PAGE - 1):
            return -E.EINVAL
        if addr < MIN_ADDR:
            return -E.EPERM
        if addr + size > TASK_TOP:
            return -E.ENOMEM
        if space.overlaps(addr, addr + size):
            if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED:
                return -E.EEXIST
            space.unmap(addr, addr + size)
        start = addr
    else:
        start = space.find_free(size, addr & ~(PAGE - 1))
        if start is None:
            return -E.ENOMEM
    area = space.map_anonymous(start, size, prot, kind="mmap")
    if source is not None:                   # a private file mapping, by copy
        hostfd, offset = source
        view = area.buf.view
        for at in range(0, size, IO_CHUNK):
            data = os.pread(hostfd, min(IO_CHUNK, size - at), offset + at)
            view[at:at + len(data)] = data
            if len(data) < IO_CHUNK:
                break
        if prot & PROT_EXEC and space.engine is not None:
            space.engine.remove_cache(start, start + size)
    return start


@syscall(91, "munmap", "p u")
def sys_munmap(p, addr, length):
    if addr & (PAGE - 1) or length == 0 or addr + page_up(length) > TASK_TOP:
        return -E.EINVAL
    p.space.unmap(addr, addr + page_up(length))
    return 0


@syscall(125, "mprotect", "p u x")
def sys_mprotect(p, addr, length, prot):
    if addr & (PAGE - 1) or prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP):
        return -E.EINVAL
    if length == 0:
        return 0
    end = addr + page_up(length)
    if end > TASK_TOP:
        return -E.ENOMEM
    p.space.protect(addr, end, prot & 7)
    return 0


@syscall(219, "madvise", "p u d")
def sys_madvise(p, addr, length, advice):
    if addr & (PAGE - 1):
        return -E.EINVAL
    end = addr + page_up(length)
    if end > TASK_TOP:
        return -E.EINVAL
    at = addr
    while at < end:                          # the whole range must be mapped
        a = p.space.area_at(at)
        if a is None:
            return -E.ENOMEM
        at = a.end
    if advice == MADV_DONTNEED:
        at = addr
        while at < end:
            a = p.space.area_at(at)
            hi = min(a.end, end)
            if a.kind != "image":            # anonymous memory reads as zero again
                a.buf.discard(a.host(at), hi - at)
            at = hi
    return 0


# -- reading and writing -------------------------------------------------------------------
@syscall(3, "read", "fd rbuf u")
def sys_read(p, fd, buf, count):
    f = _file(p, fd)
    if not f.readable:
        return -E.EBADF
    count = min(count, MAX_RW)
    if count == 0:
        return 0
    return f.read_into(p.space.views(buf, count, writable=True), count)


def _write_stream(p, f: OpenFile, pieces) -> int:
    """Write the guest ranges ``pieces`` [(addr, n)] in bounded chunks; partial on short writes."""
    total = 0
    for addr, n in pieces:
        at = 0
        while at < n:
            take = min(IO_CHUNK, n - at)
            try:
                done = f.write_from(p.space.read(addr + at, take))
            except (WouldBlock, OSError) as exc:
                if total:
                    return total
                if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                    _sigpipe(p)
                raise
            total += done
            at += done
            if done < take:
                return total
    return total


def _sigpipe(p) -> None:
    if p.sigactions.get(signal.SIGPIPE, (SIG_DFL,))[0] == SIG_DFL:
        p.die(signal.SIGPIPE, "SIGPIPE: write to a pipe with no reader")


@syscall(4, "write", "fd wbuf u")
def sys_write(p, fd, buf, count):
    f = _file(p, fd)
    if not f.writable:
        return -E.EBADF
    if f.is_devnull:                         # as the C path: Linux reads nothing (access_ok only)
        return min(count, MAX_RW) if buf + count <= 1 << 32 else -E.EFAULT
    count = min(count, MAX_RW)
    p.space.check(buf, count)
    return _write_stream(p, f, [(buf, count)])


def _iovecs(p, iov: int, iovcnt: int):
    if s32(iovcnt) < 0 or iovcnt > UIO_MAXIOV:
        raise SysError(E.EINVAL)
    raw = p.space.read(iov, 8 * iovcnt)
    vecs = [struct.unpack_from("<II", raw, 8 * i) for i in range(iovcnt)]
    total = 0
    for _base, n in vecs:
        if n & 0x80000000:
            raise SysError(E.EINVAL)
        total += n
    if total > 0x7FFFFFFF:
        raise SysError(E.EINVAL)
    return vecs


@syscall(145, "readv", "fd p d")
def sys_readv(p, fd, iov, iovcnt):
    f = _file(p, fd)
    if not f.readable:
        return -E.EBADF
    vecs = _iovecs(p, iov, iovcnt)
    views = []
    for base, n in vecs:
        if n:
            views += p.space.views(base, n, writable=True)
    total = sum(len(v) for v in views)
    return f.read_into(views, total) if total else 0


@syscall(146, "writev", "fd p d")
def sys_writev(p, fd, iov, iovcnt):
    f = _file(p, fd)
    if not f.writable:
        return -E.EBADF
    vecs = _iovecs(p, iov, iovcnt)
    for base, n in vecs:
        p.space.check(base, n)
    if f.is_devnull:
        return sum(n for _b, n in vecs)
    return _write_stream(p, f, vecs)


@syscall(180, "pread64", "fd rbuf u x x")
def sys_pread64(p, fd, buf, count, lo, hi):
    f = _file(p, fd)
    if not f.readable:
        return -E.EBADF
    if not isinstance(f, HostFile):
        return -E.ESPIPE
    if f.is_dir:
        return -E.EISDIR
    pos = s32(hi) << 32 | lo
    if pos < 0:
        return -E.EINVAL
    count = min(count, MAX_RW)
    total = 0
    for v in p.space.views(buf, count, writable=True):
        for at in range(0, len(v), IO_CHUNK):
            data = os.pread(f.fd, min(IO_CHUNK, len(v) - at), pos + total)
            v[at:at + len(data)] = data
            total += len(data)
            if len(data) < min(IO_CHUNK, len(v) - at):
                return total
    return total


@syscall(181, "pwrite64", "fd wbuf u x x")
def sys_pwrite64(p, fd, buf, count, lo, hi):
    f = _file(p, fd)
    if not f.writable:
        return -E.EBADF
    if not isinstance(f, HostFile):
        return -E.ESPIPE
    pos = s32(hi) << 32 | lo
    if pos < 0:
        return -E.EINVAL
    count = min(count, MAX_RW)
    p.space.check(buf, count)
    total = 0
    while total < count:
        done = os.pwrite(f.fd, p.space.read(buf + total, min(IO_CHUNK, count - total)), pos + total)
        total += done
        if done == 0:
            break
    return total


@syscall(19, "lseek", "fd d d")
def sys_lseek(p, fd, offset, whence):
    f = _file(p, fd)
    if whence > 4:
        return -E.EINVAL
    pos = f.lseek(s32(offset), whence)
    return pos if pos <= 0x7FFFFFFF else -E.EOVERFLOW


@syscall(140, "_llseek", "fd x x p d")
def sys_llseek(p, fd, hi, lo, result, whence):
    f = _file(p, fd)
    if whence > 4:
        return -E.EINVAL
    p.space.check(result, 8, writable=True)
    pos = f.lseek(s32(hi) << 32 | lo, whence)
    p.space.write(result, struct.pack("<q", pos))
    return 0


# -- opening and closing -------------------------------------------------------------------
def do_open(p, dirfd: int, path: str, flags: int, mode: int) -> int:
    if flags & O_TMPFILE == O_TMPFILE:
        return -E.EOPNOTSUPP
    gp = guest_path(p, dirfd, path)
    fd = p.fds.lowest_free()                 # EMFILE before anything is opened
    c = canonical(gp)
    if flags & O_PATH:
        flags &= ~(O_ACCMODE | O_CREAT | O_TRUNC)
    special = SPECIAL_FILES.get(c)
    if special is not None:
        if flags & O_DIRECTORY:
            return -E.ENOTDIR
        return p.fds.install(special(flags), cloexec=bool(flags & O_CLOEXEC), at=fd)
    if c == "/dev/tty":
        return -E.ENXIO                      # no controlling terminal in a container
    if c == "/proc/self/exe" and p.root is None:
        if flags & O_ACCMODE != O_RDONLY:
            return -E.EACCES
        hostfd = os.open(p.exe, os.O_RDONLY | os.O_CLOEXEC)
    else:
        hostfd = _root(p).open(gp, host_open_flags(flags), mode & ~p.umask & 0o7777)
    try:
        f = HostFile(hostfd, flags, c, p.root)
        if f.is_dir and p.root is not None:
            f.guest_path = p.root.resolve(gp)   # canonical: symlinks followed, as the root did
    except BaseException:
        os.close(hostfd)
        raise
    return p.fds.install(f, cloexec=bool(flags & O_CLOEXEC), at=fd)


@syscall(5, "open", "path oflags mode")
def sys_open(p, path, flags, mode):
    return do_open(p, AT_FDCWD, read_path(p, path), flags, mode)


@syscall(295, "openat", "dirfd path oflags mode")
def sys_openat(p, dirfd, path, flags, mode):
    return do_open(p, s32(dirfd), read_path(p, path), flags, mode)


@syscall(6, "close", "fd")
def sys_close(p, fd):
    p.fds.close(s32(fd))
    return 0


@syscall(41, "dup", "fd")
def sys_dup(p, fd):
    return p.fds.install(_file(p, fd))


@syscall(63, "dup2", "fd fd")
def sys_dup2(p, old, new):
    f = _file(p, old)
    if old == new:
        return new
    if new >= p.fds.limit:
        return -E.EBADF
    return p.fds.install(f, at=new)


@syscall(330, "dup3", "fd fd x")
def sys_dup3(p, old, new, flags):
    if flags & ~O_CLOEXEC:
        return -E.EINVAL
    f = _file(p, old)
    if old == new:
        return -E.EINVAL
    if new >= p.fds.limit:
        return -E.EBADF
    return p.fds.install(f, at=new, cloexec=bool(flags & O_CLOEXEC))


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
FD_CLOEXEC = 1


@syscall(221, "fcntl64", "fd d x")
def sys_fcntl64(p, fd, cmd, arg):
    f = _file(p, fd)
    fd = s32(fd)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        if arg >= p.fds.limit:
            return -E.EINVAL
        return p.fds.install(f, start=arg, cloexec=cmd == F_DUPFD_CLOEXEC)
    if cmd == F_GETFD:
        return FD_CLOEXEC if fd in p.fds.cloexec else 0
    if cmd == F_SETFD:
        (p.fds.cloexec.add if arg & FD_CLOEXEC else p.fds.cloexec.discard)(fd)
        return 0
    if cmd == F_GETFL:
        return f.flags
    if cmd == F_SETFL:
        new = (f.flags & ~STATUS_FLAGS) | (arg & STATUS_FLAGS)
        if isinstance(f, HostFile) and (new ^ f.flags) & O_APPEND:
            hostflags = fcntl.fcntl(f.fd, fcntl.F_GETFL)
            fcntl.fcntl(f.fd, fcntl.F_SETFL, (hostflags | os.O_APPEND) if new & O_APPEND
                        else (hostflags & ~os.O_APPEND))
        f.flags = new
        return 0
    return -E.EINVAL


alias(55, "fcntl", 221)


@syscall(42, "pipe", "p")
def sys_pipe(p, fds):
    return _pipe(p, fds, 0)


@syscall(331, "pipe2", "p x")
def sys_pipe2(p, fds, flags):
    return _pipe(p, fds, flags)


def _pipe(p, fds_ptr: int, flags: int) -> int:
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        return -E.EINVAL
    p.space.check(fds_ptr, 8, writable=True)
    pipe = Pipe()
    cloexec = bool(flags & O_CLOEXEC)
    rfd = p.fds.install(PipeEnd(pipe, False, flags), cloexec=cloexec)
    try:
        wfd = p.fds.install(PipeEnd(pipe, True, flags), cloexec=cloexec)
    except OSError:
        p.fds.close(rfd)
        raise
    p.space.write(fds_ptr, struct.pack("<ii", rfd, wfd))
    return 0


TCGETS, TIOCGWINSZ, FIONREAD, FIONCLEX, FIOCLEX = 0x5401, 0x5413, 0x541B, 0x5450, 0x5451


@syscall(54, "ioctl", "fd x p")
def sys_ioctl(p, fd, request, arg):
    f = _file(p, fd)
    hostfd = f.host_fd()
    tty = hostfd is not None and os.isatty(hostfd)
    if request == TCGETS:
        if not tty:
            return -E.ENOTTY
        iflag, oflag, cflag, lflag, _ispeed, _ospeed, cc = termios.tcgetattr(hostfd)
        cc19 = bytes((c[0] if isinstance(c, bytes) else c) for c in cc[:19])
        p.space.write(arg, struct.pack("<IIIIB", iflag, oflag, cflag, lflag, 0) + cc19)
        return 0
    if request == TIOCGWINSZ:
        if not tty:
            return -E.ENOTTY
        p.space.check(arg, 8, writable=True)
        p.space.write(arg, fcntl.ioctl(hostfd, termios.TIOCGWINSZ, bytes(8)))
        return 0
    if request == FIONREAD:
        if isinstance(f, PipeEnd):
            n = len(f.pipe.data)
        elif isinstance(f, HostFile) and not f.is_dir:
            n = max(0, os.fstat(f.fd).st_size - os.lseek(f.fd, 0, os.SEEK_CUR))
        else:
            return -E.ENOTTY
        p.space.write(arg, struct.pack("<i", n))
        return 0
    if request in (FIOCLEX, FIONCLEX):
        (p.fds.cloexec.add if request == FIOCLEX else p.fds.cloexec.discard)(s32(fd))
        return 0
    return -E.ENOTTY


@syscall(118, "fsync", "fd")
def sys_fsync(p, fd):
    f = _file(p, fd)
    if isinstance(f, PipeEnd):
        return -E.EINVAL
    f.sync()
    return 0


alias(148, "fdatasync", 118)


@syscall(93, "ftruncate", "fd d")
def sys_ftruncate(p, fd, length):
    if s32(length) < 0:
        return -E.EINVAL
    _file(p, fd).truncate(length)
    return 0


@syscall(194, "ftruncate64", "fd x x")
def sys_ftruncate64(p, fd, lo, hi):
    length = s32(hi) << 32 | lo
    if length < 0:
        return -E.EINVAL
    _file(p, fd).truncate(length)
    return 0


@syscall(92, "truncate", "path d")
def sys_truncate(p, path, length):
    if s32(length) < 0:
        return -E.EINVAL
    _root(p).truncate(guest_path(p, AT_FDCWD, read_path(p, path)), length)
    return 0


@syscall(193, "truncate64", "path x x")
def sys_truncate64(p, path, lo, hi):
    length = s32(hi) << 32 | lo
    if length < 0:
        return -E.EINVAL
    _root(p).truncate(guest_path(p, AT_FDCWD, read_path(p, path)), length)
    return 0


# -- metadata ------------------------------------------------------------------------------
def _stat_at(p, dirfd: int, path_ptr: int, flags: int, allowed: int) -> StatInfo:
    if flags & ~allowed:
        raise SysError(E.EINVAL)
    path = read_path(p, path_ptr, allow_empty=bool(flags & AT_EMPTY_PATH))
    if not path:                             # AT_EMPTY_PATH: the fd itself
        if dirfd == AT_FDCWD:
            return stat_path(p, AT_FDCWD, p.cwd, True)
        return p.fds.get(dirfd).stat()
    return stat_path(p, dirfd, path, follow=not flags & AT_SYMLINK_NOFOLLOW)


@syscall(195, "stat64", "path p")
def sys_stat64(p, path, buf):
    st = stat_path(p, AT_FDCWD, read_path(p, path), True)
    p.space.write(buf, pack_stat64(st))
    return 0


@syscall(196, "lstat64", "path p")
def sys_lstat64(p, path, buf):
    st = stat_path(p, AT_FDCWD, read_path(p, path), False)
    p.space.write(buf, pack_stat64(st))
    return 0


@syscall(197, "fstat64", "fd p")
def sys_fstat64(p, fd, buf):
    p.space.write(buf, pack_stat64(_file(p, fd).stat()))
    return 0


@syscall(300, "fstatat64", "dirfd path p x")
def sys_fstatat64(p, dirfd, path, buf, flags):
    st = _stat_at(p, s32(dirfd), path, flags, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT)
    p.space.write(buf, pack_stat64(st))
    return 0


@syscall(383, "statx", "dirfd path x x p")
def sys_statx(p, dirfd, path, flags, mask, buf):
    if mask & 0x80000000:                    # STATX__RESERVED
        return -E.EINVAL
    st = _stat_at(p, s32(dirfd), path, flags,
                  AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)
    p.space.write(buf, pack_statx(st))
    return 0


DT_DIR = 4


@syscall(220, "getdents64", "fd p u")
def sys_getdents64(p, fd, dirp, count):
    f = _file(p, fd)
    if not isinstance(f, HostFile) or not f.is_dir:
        return -E.ENOTDIR
    if f.dir_entries is None:
        root = _root(p)
        here = root.stat(f.guest_path)
        parent = root.stat(posixpath.dirname(f.guest_path.rstrip("/")) or "/")
        f.dir_entries = [(b".", here.st_ino, DT_DIR), (b"..", parent.st_ino, DT_DIR)] + [
            (e.name.encode("utf-8", "surrogateescape") if isinstance(e.name, str) else e.name,
             e.ino, e.d_type) for e in root.listdir(f.guest_path)]
    out = bytearray()
    entries, pos = f.dir_entries, f.dir_pos
    while pos < len(entries):
        name, ino, d_type = entries[pos]
        reclen = (19 + len(name) + 1 + 7) & ~7
        if len(out) + reclen > count:
            break
        out += struct.pack("<QqHB", ino & 0xFFFFFFFFFFFFFFFF, pos + 1, reclen, d_type)
        out += name.ljust(reclen - 19, b"\0")
        pos += 1
    if not out and pos < len(entries):
        return -E.EINVAL                     # the buffer cannot hold the next entry
    p.space.write(dirp, bytes(out))
    f.dir_pos = pos                          # only entries the guest received are consumed
    return len(out)


@syscall(33, "access", "path d")
def sys_access(p, path, mode):
    return _access(p, AT_FDCWD, path, mode, 0)


@syscall(307, "faccessat", "dirfd path d")
def sys_faccessat(p, dirfd, path, mode):
    return _access(p, s32(dirfd), path, mode, 0)


@syscall(439, "faccessat2", "dirfd path d x")
def sys_faccessat2(p, dirfd, path, mode, flags):
    return _access(p, s32(dirfd), path, mode, flags)


def _access(p, dirfd: int, path_ptr: int, mode: int, flags: int) -> int:
    if mode & ~7 or flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        return -E.EINVAL
    path = read_path(p, path_ptr, allow_empty=bool(flags & AT_EMPTY_PATH))
    gp = guest_path(p, dirfd, path or ".")
    if _special_stat(p, gp) is not None:
        return 0 if not mode & 1 else -E.EACCES
    if p.root is None and canonical(gp) == "/proc/self/exe":
        return 0 if os.access(p.exe, mode) else -E.EACCES
    ok = _root(p).access(gp, mode)
    return -E.EACCES if ok is False else 0


@syscall(85, "readlink", "path p d")
def sys_readlink(p, path, buf, size):
    return _readlink(p, AT_FDCWD, path, buf, size)


@syscall(305, "readlinkat", "dirfd path p d")
def sys_readlinkat(p, dirfd, path, buf, size):
    return _readlink(p, s32(dirfd), path, buf, size)


def _readlink(p, dirfd: int, path_ptr: int, buf: int, size: int) -> int:
    if s32(size) <= 0:
        return -E.EINVAL
    gp = guest_path(p, dirfd, read_path(p, path_ptr))
    if canonical(gp) == "/proc/self/exe":
        target = p.exe                       # absolute: glibc asserts otherwise
    else:
        target = _root(p).readlink(gp)
    data = target.encode("utf-8", "surrogateescape") if isinstance(target, str) else bytes(target)
    data = data[:size]
    p.space.write(buf, data)
    return len(data)


@syscall(183, "getcwd", "p u")
def sys_getcwd(p, buf, size):
    data = p.cwd.encode("utf-8", "surrogateescape") + b"\0"
    if size < len(data):
        return -E.ERANGE
    p.space.write(buf, data)
    return len(data)


@syscall(12, "chdir", "path")
def sys_chdir(p, path):
    gp = guest_path(p, AT_FDCWD, read_path(p, path))
    st = stat_path(p, AT_FDCWD, gp, True)
    if not stat_mod.S_ISDIR(st.mode):
        return -E.ENOTDIR
    p.cwd = _root(p).resolve(gp)             # canonical, as getcwd reports it
    return 0


@syscall(133, "fchdir", "fd")
def sys_fchdir(p, fd):
    f = _file(p, fd)
    if not isinstance(f, HostFile) or not f.is_dir:
        return -E.ENOTDIR
    p.cwd = f.guest_path
    return 0


@syscall(39, "mkdir", "path mode")
def sys_mkdir(p, path, mode):
    _root(p).mkdir(guest_path(p, AT_FDCWD, read_path(p, path)), mode & ~p.umask & 0o7777)
    return 0


@syscall(296, "mkdirat", "dirfd path mode")
def sys_mkdirat(p, dirfd, path, mode):
    _root(p).mkdir(guest_path(p, s32(dirfd), read_path(p, path)), mode & ~p.umask & 0o7777)
    return 0


@syscall(40, "rmdir", "path")
def sys_rmdir(p, path):
    _root(p).rmdir(guest_path(p, AT_FDCWD, read_path(p, path)))
    return 0


@syscall(10, "unlink", "path")
def sys_unlink(p, path):
    _root(p).unlink(guest_path(p, AT_FDCWD, read_path(p, path)))
    return 0


@syscall(301, "unlinkat", "dirfd path x")
def sys_unlinkat(p, dirfd, path, flags):
    if flags & ~AT_REMOVEDIR:
        return -E.EINVAL
    gp = guest_path(p, s32(dirfd), read_path(p, path))
    (_root(p).rmdir if flags & AT_REMOVEDIR else _root(p).unlink)(gp)
    return 0


@syscall(38, "rename", "path path")
def sys_rename(p, old, new):
    _root(p).rename(guest_path(p, AT_FDCWD, read_path(p, old)), guest_path(p, AT_FDCWD, read_path(p, new)))
    return 0


@syscall(302, "renameat", "dirfd path dirfd path")
def sys_renameat(p, olddir, old, newdir, new):
    return sys_renameat2(p, olddir, old, newdir, new, 0)


@syscall(353, "renameat2", "dirfd path dirfd path x")
def sys_renameat2(p, olddir, old, newdir, new, flags):
    if flags:
        return -E.EINVAL                     # RENAME_NOREPLACE/EXCHANGE/WHITEOUT are not served
    _root(p).rename(guest_path(p, s32(olddir), read_path(p, old)),
                    guest_path(p, s32(newdir), read_path(p, new)))
    return 0


@syscall(83, "symlink", "path path")
def sys_symlink(p, target, path):
    _root(p).symlink(read_path(p, target), guest_path(p, AT_FDCWD, read_path(p, path)))
    return 0


@syscall(304, "symlinkat", "path dirfd path")
def sys_symlinkat(p, target, dirfd, path):
    _root(p).symlink(read_path(p, target), guest_path(p, s32(dirfd), read_path(p, path)))
    return 0


@syscall(9, "link", "path path")
def sys_link(p, old, new):
    _root(p).link(guest_path(p, AT_FDCWD, read_path(p, old)), guest_path(p, AT_FDCWD, read_path(p, new)))
    return 0


@syscall(303, "linkat", "dirfd path dirfd path x")
def sys_linkat(p, olddir, old, newdir, new, flags):
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        return -E.EINVAL
    _root(p).link(guest_path(p, s32(olddir), read_path(p, old)),
                  guest_path(p, s32(newdir), read_path(p, new)))
    return 0


@syscall(15, "chmod", "path mode")
def sys_chmod(p, path, mode):
    _root(p).chmod(guest_path(p, AT_FDCWD, read_path(p, path)), mode & 0o7777)
    return 0


@syscall(306, "fchmodat", "dirfd path mode")
def sys_fchmodat(p, dirfd, path, mode):
    _root(p).chmod(guest_path(p, s32(dirfd), read_path(p, path)), mode & 0o7777)
    return 0


@syscall(94, "fchmod", "fd mode")
def sys_fchmod(p, fd, mode):
    f = _file(p, fd)
    if not isinstance(f, HostFile):
        return -E.EPERM
    os.fchmod(f.fd, mode & 0o7777)
    return 0


# -- time ----------------------------------------------------------------------------------
def _clock_ns(p, clk: int) -> int:
    clk = s32(clk)
    if clk in CPU_CLOCKS:
        return p.cpu_ns
    if clk not in CLOCKS:
        raise SysError(E.EINVAL)
    return time.clock_gettime_ns(CLOCKS[clk])


@syscall(13, "time", "p")
def sys_time(p, tloc):
    now = time.time_ns() // 1_000_000_000
    if tloc:
        p.space.write(tloc, struct.pack("<i", now & 0xFFFFFFFF if now < 1 << 31 else -1))
    return now


@syscall(78, "gettimeofday", "p p")
def sys_gettimeofday(p, tv, tz):
    ns = time.time_ns()
    if tv:
        p.space.write(tv, struct.pack("<iI", (ns // 1_000_000_000) & 0x7FFFFFFF, ns % 1_000_000_000 // 1000))
    if tz:
        p.space.write(tz, bytes(8))
    return 0


@syscall(265, "clock_gettime", "d p")
def sys_clock_gettime(p, clk, ts):
    ns = _clock_ns(p, clk)
    p.space.write(ts, struct.pack("<iI", (ns // 1_000_000_000) & 0x7FFFFFFF, ns % 1_000_000_000))
    return 0


@syscall(403, "clock_gettime64", "d p")
def sys_clock_gettime64(p, clk, ts):
    ns = _clock_ns(p, clk)
    p.space.write(ts, struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000))
    return 0


@syscall(266, "clock_getres", "d p")
def sys_clock_getres(p, clk, res):
    _clock_ns(p, clk)
    if res:
        p.space.write(res, struct.pack("<iI", 0, 1))
    return 0


@syscall(406, "clock_getres_time64", "d p")
def sys_clock_getres64(p, clk, res):
    _clock_ns(p, clk)
    if res:
        p.space.write(res, struct.pack("<qq", 0, 1))
    return 0


def _sleep(p, deadline_ns) -> int:
    """Sleep until ``deadline_ns()`` (monotonic): the process leaves the engine meanwhile and
    runs the same call again when woken; the deadline is kept across that restart."""
    if p.sleep_deadline is None:
        p.sleep_deadline = deadline_ns()
    if time.monotonic_ns() >= p.sleep_deadline:
        p.sleep_deadline = None
        return 0
    raise WouldBlock(SleepUntil(p.sleep_deadline))


def _timespec(p, ptr: int, wide: bool) -> int:
    if wide:
        sec, nsec = struct.unpack("<qq", p.space.read(ptr, 16))
        nsec &= 0xFFFFFFFF                   # compat tasks: the upper half is ignored
        nsec = nsec - (1 << 32) if nsec & 0x80000000 else nsec
    else:
        sec, nsec = struct.unpack("<ii", p.space.read(ptr, 8))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise SysError(E.EINVAL)
    return sec * 1_000_000_000 + nsec


@syscall(162, "nanosleep", "p p")
def sys_nanosleep(p, req, rem):
    if p.sleep_deadline is not None:
        return _sleep(p, None)
    ns = _timespec(p, req, False)
    return _sleep(p, lambda: time.monotonic_ns() + ns)


def _clock_nanosleep(p, clk, flags, req, wide):
    clk = s32(clk)
    if p.sleep_deadline is not None:
        return _sleep(p, None)
    if clk not in (0, 1, 7):
        return -E.EINVAL if clk not in CPU_CLOCKS else -E.EOPNOTSUPP
    ns = _timespec(p, req, wide)
    if flags & 1:                            # TIMER_ABSTIME: convert to the monotonic clock
        now = time.clock_gettime_ns(CLOCKS[clk])
        return _sleep(p, lambda: time.monotonic_ns() + max(0, ns - now))
    return _sleep(p, lambda: time.monotonic_ns() + ns)


@syscall(267, "clock_nanosleep", "d x p p")
def sys_clock_nanosleep(p, clk, flags, req, rem):
    return _clock_nanosleep(p, clk, flags, req, False)


@syscall(407, "clock_nanosleep_time64", "d x p p")
def sys_clock_nanosleep64(p, clk, flags, req, rem):
    return _clock_nanosleep(p, clk, flags, req, True)
