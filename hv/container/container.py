"""Containers: an image, a writable file layer, a registry layer and a record, under ``$HV_HOME``.

    hv container run [--name N] [--rm] [-v HOST:GUEST[:ro]] [-e K=V] [-w DIR] [--cpus F]
                     [--memory SIZE] [--replicas N] [--strace]
                     [--isolation process|vm|enlightened|full]
                     [--stats] IMAGE PROG [ARGS]
    hv container ls [-a] | diff NAME | commit NAME -t IMAGE | logs NAME | rm [-f] NAME...

On disk::

    containers/
      lock                    flock: one process creates or removes a record at a time
      <id>/                   12 hex digits
        container.json        the record (written to a temporary name, fsynced, renamed)
        upper/                the container's file layer (OCI whiteouts)
        registry.db           the container's registry layer (SQLite, WAL)
        stdout, stderr        what the program wrote (``logs``)

Every record is replaced whole (write, fsync, rename, fsync of the directory), so a ``kill -9``
of hv leaves either the old record or the new one; a record that says "running" whose hv
process is gone is shown as "killed". A half-created container (no record yet) is swept.
The image's layers are never written: runs change only ``upper/`` and ``registry.db``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path

from hv.container.images import ImageError, ImageStore, _fsync_dir, default_home, locked
from hv.container.layers import LayeredRoot, Volume
from hv.container.loader import LoadError
from hv.container.registry import LayeredRegistry, RegistryError, seal_layer
from hv.cliargs import OneLineParser, parse

RECORD = "container.json"
NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}")
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SIZE_RE = re.compile(r"(\d+)([bkmg]?)", re.I)
MAX_REPLICAS = 10000
EXIT_HV_ERROR, EXIT_CANNOT_RUN = 125, 127        # as docker run: hv's own error, program not found


class ContainerError(Exception):
    """A one-line message for the user; ``status``: the exit status of ``run`` for it."""

    def __init__(self, message: str, status: int = EXIT_HV_ERROR) -> None:
        super().__init__(message)
        self.status = status


def parse_size(text: str) -> int:
    """``64m`` -> bytes (b, k, m, g; powers of 1024, as docker)."""
    m = SIZE_RE.fullmatch(text.strip())
    if not m:
        raise ContainerError(f"--memory {text!r}: expected a size such as 512k, 64m or 1g")
    n = int(m.group(1)) << {"": 0, "b": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if not 1 << 20 <= n <= 1 << 32:
        raise ContainerError(f"--memory {text!r}: must be between 1m and 4g")
    return n


def _write_durable(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(path.parent)


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _well_formed(rec, cid: str) -> bool:
    try:
        return (rec["id"] == cid and isinstance(rec["name"], str) and isinstance(rec["image"], str)
                and isinstance(rec["image_id"], str) and isinstance(rec["workdir"], str)
                and all(isinstance(a, str) for a in rec["argv"]) and rec["argv"]
                and all(isinstance(e, str) for e in rec["env"])
                and all(isinstance(h, str) and isinstance(g, str) for h, g, _ in rec["volumes"])
                and isinstance(rec["state"], str) and isinstance(rec["created"], str)
                and (rec["cpus"] is None or isinstance(rec["cpus"], (int, float)))
                and (rec["memory"] is None or isinstance(rec["memory"], int)))
    except (KeyError, TypeError, ValueError):
        return False


class Container:
    """One container's directory and record."""

    def __init__(self, path: Path, record: dict) -> None:
        self.path, self.record = path, record

    id = property(lambda self: self.record["id"])
    name = property(lambda self: self.record["name"])
    upper = property(lambda self: self.path / "upper")
    registry_db = property(lambda self: self.path / "registry.db")

    def save(self) -> None:
        _write_durable(self.path / RECORD, json.dumps(self.record, indent=1).encode())

    @property
    def state(self) -> str:
        r = self.record
        if r["state"] == "running" and not (r.get("hv_pid") == os.getpid() or _pid_alive(r.get("hv_pid", 0))):
            return "killed"
        return r["state"]

    def status_text(self) -> str:
        st = self.state
        if st == "exited":
            return f"exited ({self.record.get('status')})"
        return st


class ContainerStore:
    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        self.images = ImageStore(self.home)
        self.root = self.home / "containers"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _locked(self):
        return locked(self.root / "lock")

    def _load(self, d: Path) -> Container | None:
        """The container in ``d``; a record that is not what hv writes gives a container in
        state "damaged" (listed, removable, nothing else)."""
        try:
            rec = json.loads((d / RECORD).read_bytes())
        except (OSError, ValueError):
            rec = None
        if _well_formed(rec, d.name):
            return Container(d, rec)
        name = rec.get("name") if isinstance(rec, dict) else None
        return Container(d, {"id": d.name, "name": name if isinstance(name, str) else d.name, "image": "?",
                             "argv": [], "state": "damaged", "created": "", "damaged": True})

    def list(self) -> list[Container]:
        out = []
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                c = self._load(d)
                if c is not None:
                    out.append(c)
        return sorted(out, key=lambda c: (str(c.record.get("created", "")), int(c.record.get("created_ns") or 0)))

    def get(self, ref: str) -> Container:
        found = [c for c in self.list() if c.name == ref or c.id == ref]
        if not found and len(ref) >= 4:
            found = [c for c in self.list() if c.id.startswith(ref)]
        if len(found) != 1:
            raise ContainerError(f"no container named {ref}" if not found else f"{ref}: ambiguous id")
        return found[0]

    def create(self, image, argv: list[str], *, name: str | None = None, env=(), workdir: str = "/",
               volumes=(), cpus=None, memory=None) -> Container:
        if name is not None and not NAME_RE.fullmatch(name):
            raise ContainerError(f"{name!r} is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, "
                                 f"64 characters at most)")
        with self._locked():
            self._sweep()
            names = {c.name for c in self.list()}
            cid = secrets.token_hex(6)
            name = name or f"c-{cid[:6]}"
            if name in names:
                raise ContainerError(f"a container named {name} exists (hv container rm {name})")
            d = self.root / cid
            d.mkdir(mode=0o700)
            (d / "upper").mkdir(mode=0o755)
            rec = {"id": cid, "name": name, "image": image.name, "image_id": image.id, "argv": argv,
                   "env": list(env), "workdir": workdir, "volumes": [list(v) for v in volumes],
                   "cpus": cpus, "memory": memory, "state": "created", "status": None,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "created_ns": time.time_ns()}
            c = Container(d, rec)
            c.save()
        return c

    def _sweep(self) -> None:
        """Directories without a record: a create or rm that was killed half-way."""
        for d in self.root.iterdir():
            if d.is_dir() and not (d / RECORD).exists():
                shutil.rmtree(d, ignore_errors=True)

    def remove(self, c: Container, force: bool = False) -> None:
        if c.state == "running" and not force:
            raise ContainerError(f"container {c.name} is running (hv container rm -f)")
        with self._locked():
            trash = self.root / f".trash-{c.id}"
            os.rename(c.path, trash)            # gone from view at once
            _fsync_dir(self.root)
            shutil.rmtree(trash)

    def image_of(self, c: Container):
        if c.record.get("damaged"):
            raise ContainerError(f"container {c.name}: its record is damaged (hv container rm {c.name})")
        image = self.images.get(c.record["image"])
        if image.id != c.record["image_id"]:
            raise ContainerError(f"image {c.record['image']} was replaced since container {c.name} "
                                 f"was created")
        return image

    def open_root(self, c: Container, image=None) -> LayeredRoot:
        image = image or self.image_of(c)
        vols = [Volume(Path(h), g, bool(ro)) for h, g, ro in c.record["volumes"]]
        return LayeredRoot(image.lowers, c.upper, vols)

    def open_registry(self, c: Container, image=None) -> LayeredRegistry:
        image = image or self.image_of(c)
        return LayeredRegistry([db for _, db in image.layers if db is not None], c.registry_db)

    def diff(self, c: Container) -> list[tuple[str, str]]:
        image = self.image_of(c)
        with self.open_root(c, image) as root:
            files = root.diff()
        reg = self.open_registry(c, image)
        try:
            keys = reg.diff()
        finally:
            reg.close()
        return files + keys

    def commit(self, c: Container, new_name: str):
        if c.state == "running":
            raise ContainerError(f"container {c.name} is running")
        image = self.image_of(c)
        db = None
        if c.registry_db.exists():
            seal_layer(c.registry_db)           # the WAL folded in: the file alone is the layer
            db = c.registry_db
        return self.images.commit(c.upper, image, new_name, db)


# -- running ----------------------------------------------------------------------------------

class LazyRegistry:
    """A container's registry calls, opened at the program's first registry call: opening the
    layers (and creating the upper's database) costs tens of ms, most programs never ask."""

    def __init__(self, lowers, upper) -> None:
        self.lowers, self.upper = list(lowers), upper
        self.registry = self.calls = None

    def call(self, nr: int, args, mem) -> int:
        if self.calls is None:
            from hv.container.guest_memory import GuestFault
            from hv.container.registry_calls import RegistryCalls
            try:
                self.registry = LayeredRegistry(self.lowers, self.upper)
            except RegistryError as e:
                return -e.errno
            self.calls = RegistryCalls(self.registry, fault_types=(GuestFault,))
        return self.calls.call(nr, args, mem)

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()


class _Tee:
    """A container's stdout or stderr: passed through to hv's own and kept for ``logs``."""

    def __init__(self, fd: int, log: Path) -> None:
        self.fd, self.passing = fd, True
        self.log = open(log, "ab")

    def write(self, data: bytes) -> int:
        self.log.write(data)
        view = memoryview(data)
        while self.passing and view:
            try:
                view = view[os.write(self.fd, view):]
            except BrokenPipeError:
                self.passing = False               # the reader left: keep only the log
            except BlockingIOError:
                time.sleep(0.001)
        return len(data)

    def flush(self) -> None:
        self.log.flush()

    def close(self) -> None:
        self.log.close()


def _stdin_fd() -> int | None:
    """Host fd 0 when it is a pipe or a terminal (docker run -i), else nothing (/dev/null)."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return None
    return 0 if stat.S_ISFIFO(mode) or os.isatty(0) or stat.S_ISSOCK(mode) else None


def run_containers(store: ContainerStore, containers: list[Container], *, strace: bool = False,
                   kernel=None, stdin_fd: int | None = None) -> list[int]:
    """Run the containers' programs in one Kernel; returns their exit statuses."""
    from hv.container.kernel import Kernel
    own = kernel is None
    kernel = kernel or Kernel(warm=0)     # one container alone runs on a solo engine
    opened = []
    try:
        for c in containers:
            r = c.record
            image = store.image_of(c)
            root = store.open_root(c, image)
            opened.append(root)
            reg = LazyRegistry([db for _, db in image.layers if db is not None], c.registry_db)
            opened.append(reg)
            out, err = _Tee(1, c.path / "stdout"), _Tee(2, c.path / "stderr")
            opened += [out, err]
            env = [f"{k}={v}" for k, v in _image_env(image).items()] + r["env"]
            try:
                task = kernel.start(r["argv"][0], r["argv"], env, root, cwd=r["workdir"], name=c.name,
                                    cpus=r["cpus"], memory=r["memory"],
                                    stdin=stdin_fd if len(containers) == 1 else None,
                                    stdout=out, stderr=err,
                                    registry_calls=reg,
                                    strace=sys.stderr if strace else None)
            except LoadError as e:
                r.update(state="exited", status=EXIT_CANNOT_RUN)
                c.save()
                raise ContainerError(f"{c.name}: cannot run {e}", EXIT_CANNOT_RUN) from None
            r.update(state="running", hv_pid=os.getpid(), started=time.time())
            c.save()

            def ended(t, c=c):
                c.record.update(state="exited", status=t.status, message=t.process.message)
                c.save()
            task.on_exit = ended
        kernel.run_all()
        return [kernel_task.status for kernel_task in kernel.tasks[-len(containers):]]
    finally:
        for c in containers:                 # interrupted (Ctrl-C): not left "running"
            if c.record["state"] == "running":
                c.record.update(state="exited", status=130, message="hv was interrupted")
                c.save()
        for x in reversed(opened):
            x.close()
        if own:
            kernel.close()


def _image_env(image) -> dict[str, str]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for item in image.config.get("Env") or []:
        if isinstance(item, str) and "=" in item:
            k, v = item.split("=", 1)
            env[k] = v
    return env


# -- hv container ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="hv container", description="Containers: Linux i386 programs on hv's "
                "shared kernel (or, with --isolation vm, enlightened or full, each in a VM of "
                "its own), their files and registry in layers of their own.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="create containers from IMAGE and run PROG in them")
    run.add_argument("--name", help="the container's name (with --replicas: NAME-1, NAME-2...)")
    run.add_argument("--rm", action="store_true", help="remove the container when it exits")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:GUEST[:ro]",
                     help="mount a host directory (shared, not layered)")
    run.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    run.add_argument("-w", "--workdir", metavar="DIR", help="working directory (absolute guest path)")
    run.add_argument("--cpus", type=float, metavar="F", help="at most F of one CPU (e.g. 0.5)")
    run.add_argument("--memory", metavar="SIZE", help="at most SIZE of guest memory (e.g. 64m)")
    run.add_argument("--replicas", type=int, default=1, metavar="N",
                     help="N containers of the same command, on one shared kernel")
    run.add_argument("--strace", action="store_true", help="print every system call on stderr")
    run.add_argument("--isolation", choices=("process", "vm", "enlightened", "full"),
                     default="process",
                     help="process: hv's shared kernel serves the calls; vm: a utility VM each "
                          "(hv's trimmed kernel; files and registry forwarded to the host); "
                          "enlightened / full: a VM booted from a disk of the container's files "
                          "(synthetic BIOS and virtio-blk / emulated BIOS and IDE), every call "
                          "served inside it, its writes read back after the run")
    run.add_argument("--stats", action="store_true",
                     help="with --isolation vm, enlightened or full: print the VM's exits and "
                          "its kernel's counters")
    run.add_argument("image")
    run.add_argument("prog")
    run.add_argument("args", nargs=argparse.REMAINDER)
    ls = sub.add_parser("ls", help="list the containers")
    ls.add_argument("-q", "--quiet", action="store_true", help="names only")
    for name, text in (("diff", "what a container changed: A/C/D lines for files and registry keys"),
                       ("logs", "what a container's program wrote")):
        sub.add_parser(name, help=text).add_argument("container")
    com = sub.add_parser("commit", help="a container's changes as a new image (one more layer)")
    com.add_argument("container")
    com.add_argument("-t", "--tag", dest="image", required=True)
    rm = sub.add_parser("rm", help="remove containers, their layers and logs")
    rm.add_argument("-f", "--force", action="store_true", help="also a container marked running")
    rm.add_argument("containers", nargs="+")
    return p


def _run_args(args, store: ContainerStore):
    image = store.images.get(args.image)
    for spec in args.volume:
        try:
            vol = Volume.parse(spec)
        except ValueError as e:
            raise ContainerError(f"-v {e}") from None
        if not vol.host_dir.is_dir():
            raise ContainerError(f"-v {spec!r}: {vol.host_dir} is not a directory")
    vols = [(str(Volume.parse(s).host_dir.resolve()), Volume.parse(s).guest_path, Volume.parse(s).readonly)
            for s in args.volume]
    for e in args.env:
        if "=" not in e or not ENV_RE.fullmatch(e.split("=", 1)[0]):
            raise ContainerError(f"-e {e!r}: expected NAME=VALUE")
    if args.cpus is not None and not 0.01 <= args.cpus <= 1024:
        raise ContainerError(f"--cpus {args.cpus}: must be between 0.01 and 1024")
    memory = parse_size(args.memory) if args.memory is not None else None
    if not 1 <= args.replicas <= MAX_REPLICAS:
        raise ContainerError(f"--replicas must be 1..{MAX_REPLICAS}")
    workdir = args.workdir or image.config.get("WorkingDir") or "/"
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise ContainerError(f"-w {workdir!r}: must be an absolute guest path")
    return image, vols, memory, workdir


def main_container(argv: list[str]) -> int:
    args, status = parse(_parser(), argv, 'hv: error: hv container: ')
    if args is None:
        return status
    store = None
    try:
        store = ContainerStore()
        if args.action == "run":
            return _cmd_run(args, store)
        if args.action == "ls":
            rows = [("ID", "NAME", "IMAGE", "COMMAND", "STATUS", "CREATED")]
            for c in store.list():
                r = c.record
                rows.append((c.id, c.name, r["image"], " ".join(r["argv"])[:40], c.status_text(),
                             r["created"]))
            if args.quiet:
                for row in rows[1:]:
                    print(row[1])
                return 0
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for row in rows:
                print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        elif args.action == "diff":
            for kind, path in store.diff(store.get(args.container)):
                print(f"{kind} {path}")
        elif args.action == "logs":
            c = store.get(args.container)
            for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
                stream.flush()
                with contextlib.suppress(FileNotFoundError), open(c.path / name, "rb") as f:
                    shutil.copyfileobj(f, stream.buffer)
                stream.flush()
        elif args.action == "commit":
            image = store.commit(store.get(args.container), args.image)
            print(f"committed {image.name} ({image.id[7:19]}, {len(image.layers)} layers)")
        else:
            cs = [store.get(ref) for ref in args.containers]
            for c in cs:
                store.remove(c, args.force)
                print(c.name)
        return 0
    except (ContainerError, ImageError, RegistryError) as e:
        print(f"hv: error: {e}", file=sys.stderr)
        if args.action != "run":
            return 2
        return e.status if isinstance(e, ContainerError) else EXIT_HV_ERROR
    except OSError as e:
        print(f"hv: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return EXIT_HV_ERROR if args.action == "run" else 2


def _cmd_run(args, store: ContainerStore) -> int:
    image, vols, memory, workdir = _run_args(args, store)
    if args.isolation != "process":
        from hv.container.uvm import UvmError, check_ram
        if args.strace:
            raise ContainerError("--strace needs --isolation process (a VM's calls "
                                 "are served by its own kernel; see --stats)")
        try:
            check_ram(memory)
        except UvmError as e:
            raise ContainerError(str(e)) from None
    argv = [args.prog] + list(args.args)
    if args.replicas == 1:
        names = [args.name]
    else:
        names = [f"{args.name}-{i + 1}" if args.name else None for i in range(args.replicas)]
    cs = []
    try:
        for n in names:
            cs.append(store.create(image, argv, name=n, env=args.env, workdir=workdir, volumes=vols,
                                   cpus=args.cpus, memory=memory))
        if args.isolation == "vm":
            from hv.container.uvm import run_vm_containers
            for c in cs:
                c.record["isolation"] = "vm"
                c.save()
            statuses = run_vm_containers(store, cs, stats=args.stats,
                                         stdin_fd=_stdin_fd() if args.replicas == 1 else None)
        elif args.isolation in ("full", "enlightened"):
            from hv.container.vmflavor import run_flavor_containers
            for c in cs:
                c.record["isolation"] = args.isolation
                c.save()
            statuses = run_flavor_containers(store, cs, args.isolation, stats=args.stats)
        else:
            statuses = run_containers(store, cs, strace=args.strace,
                                      stdin_fd=_stdin_fd() if args.replicas == 1 else None)
    finally:
        if args.rm:
            for c in cs:
                store.remove(c, force=True)
    return next((s for s in statuses if s), 0)
