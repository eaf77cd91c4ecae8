"""One shared host kernel for many process containers: a scheduler over a few pooled engines.

    k = Kernel(memory=256 << 20)                 # the host memory all containers share
    a = k.start("/bin/hog", ["hog", "cpu"], root=root_a, cpus=0.25)
    b = k.start("/bin/service", ["service"], root=root_b, registry=reg_b, memory=64 << 20)
    k.run_all()                                  # round robin until every task has exited
    b.status, b.process.cpu_ns

Tasks take turns in time slices (``slice_ms``) on an EnginePool: a process holds no engine
between its slices (one Unicorn engine is ~2.9 MiB, an idle process a few dozen KiB), and a
blocked process (nanosleep, a pipe, stdin) is skipped until its wait is over. What is shared
and what is not -- the weak spots of this design, shown by tests/container/test_containers.py:

* CPU: round robin gives every runnable task an equal turn, so a CPU hog halves what its
  neighbour gets. ``cpus=F`` bounds a task to F of one CPU over its lifetime (a token
  bucket: it runs only while its CPU time is below F times the time since it started).
* Memory: every task charges the host budget (``memory``); one without a limit of its own
  can take what its neighbours need (ENOMEM for them). ``memory=`` per task bounds it.
* Data: the named objects (``objects``) under Global\\ are shared by all tasks.

A single task without a quota runs on a non-preemptible engine of its own (no block hook:
CPU-bound code ~1.6x faster), waiting in the host thread when it blocks, as run_to_exit does.
"""
from __future__ import annotations

import time

from hv.container.engine import Engine, EnginePool, Step
from hv.container.fdtable import SleepUntil
from hv.container.guest_memory import MemoryBudget
from hv.container.objects import NamedObjects
from hv.container.process import Process

DEFAULT_HOST_MEMORY = 4 << 30        # bytes of guest memory all tasks of a kernel may map
IDLE_POLL_S = 0.002                   # longest nap when every task waits on something polled


class Task:
    """A process the kernel runs, with its scheduling facts."""

    def __init__(self, kernel: "Kernel", name: str, process: Process, cpus: float | None) -> None:
        self.kernel, self.name, self.process, self.cpus = kernel, name, process, cpus
        self.started_ns: int | None = None      # at its first slice
        self.ended_ns: int | None = None
        self.slices = 0
        self.on_exit = None           # fn(task) once it has exited

    @property
    def status(self) -> int | None:
        return self.process.exit_status

    @property
    def cpu_ns(self) -> int:
        return self.process.cpu_ns

    def share(self) -> float:
        """CPU time over lifetime so far: the fraction of one CPU it got."""
        end = self.ended_ns or time.monotonic_ns()
        return self.process.cpu_ns / max(end - (self.started_ns or end), 1)

    def throttled_until(self, now: int) -> int | None:
        """None when the quota allows a slice now, else when it will."""
        if self.cpus is None or self.started_ns is None:
            return None
        allowed = self.cpus * (now - self.started_ns)
        if self.process.cpu_ns <= allowed:
            return None
        return self.started_ns + int(self.process.cpu_ns / self.cpus)

    def kill(self) -> None:
        self.process.close()


class Kernel:
    """The scheduler and the services every task shares (engines, memory budget, objects)."""

    def __init__(self, *, engines: int = 1, warm: int = 1, slice_ms: float = 5.0,
                 memory: int = DEFAULT_HOST_MEMORY, dispatch: str = "auto") -> None:
        if slice_ms <= 0:
            raise ValueError("slice_ms must be positive")
        self.pool = EnginePool(size=engines, warm=warm, dispatch=dispatch)
        self.slice_ns = int(slice_ms * 1e6)
        self.budget = MemoryBudget(memory)
        self.objects = NamedObjects()
        self.tasks: list[Task] = []
        self.dispatch = dispatch
        self._solo: Engine | None = None
        self._names = 0

    # -- starting -----------------------------------------------------------------------
    def start(self, program: str, argv: list[str] | None = None, env=(), root=None, *, cwd: str = "/",
              name: str | None = None, cpus: float | None = None, memory: int | None = None,
              stdin=None, stdout=None, stderr=None, registry_calls=None, strace=None,
              fast_calls: bool = True) -> Task:
        """Load ``program`` (a guest path in ``root``, or a host path with root=None) as a new
        task; LoadError if it cannot be. ``cpus``: a fraction of one CPU; ``memory``: bytes."""
        if cpus is not None and not 0 < cpus:
            raise ValueError("cpus must be positive")
        self._names += 1
        name = name or f"task{self._names}"
        calls = self.objects.calls_for(name)
        p = Process(program, list(argv or [program]), list(env), root, cwd, stdin=stdin, stdout=stdout,
                    stderr=stderr, memory_limit=memory, strace=strace, registry_calls=registry_calls,
                    extra_calls=calls.table, memory_budget=self.budget, fast_calls=fast_calls,
                    pid=1)
        calls.process = p
        task = Task(self, name, p, cpus)
        self.tasks.append(task)
        return task

    # -- running ------------------------------------------------------------------------
    def live(self) -> list[Task]:
        return [t for t in self.tasks if t.ended_ns is None]

    def _ended(self, t: Task) -> None:
        t.ended_ns = time.monotonic_ns()
        if t.started_ns is None:
            t.started_ns = t.ended_ns
        if t.on_exit is not None:
            t.on_exit(t)

    def run_round(self) -> bool:
        """Give every runnable task one slice; False when none could run (all wait)."""
        ran = False
        now = time.monotonic_ns()
        for t in self.live():
            p = t.process
            if p.exit_status is not None:
                self._ended(t)
                continue
            if p.blocked_on is not None and not p.blocked_on.ready():
                continue
            if t.throttled_until(now) is not None:
                continue
            if t.started_ns is None:
                t.started_ns = now
            why = self.pool.run(p, self.slice_ns)
            t.slices += 1
            ran = True
            if why is Step.EXITED:
                self._ended(t)
            now = time.monotonic_ns()
        return ran

    def _nap(self) -> None:
        """Nothing can run: sleep until the next sleeper or throttled task is due, polling
        every IDLE_POLL_S while some task waits on something else (a pipe, stdin)."""
        now = time.monotonic_ns()
        due, polled = [], False
        for t in self.live():
            w = t.process.blocked_on
            if isinstance(w, SleepUntil):
                due.append(w.deadline_ns)
            elif w is not None:
                polled = True
            until = t.throttled_until(now)
            if until is not None:
                due.append(until)
        left = (min(due) - now) / 1e9 if due else IDLE_POLL_S
        time.sleep(max(0.0, min(left, IDLE_POLL_S) if polled else left))

    def _run_solo(self, t: Task) -> None:
        p = t.process
        if self._solo is None:
            self._solo = Engine(self.dispatch, preemptible=False)
        if p.space.engine is not None and p.space.engine is not self._solo:
            p.space.engine.detach()
        if t.started_ns is None:
            t.started_ns = time.monotonic_ns()
        while True:
            why = p.step(self._solo)
            if why is Step.EXITED:
                break
            p.blocked_on.wait()
        self._ended(t)

    def run_all(self, timeout: float | None = None) -> dict[str, int]:
        """Run until every task has exited (or ``timeout`` seconds: the rest are killed);
        returns name -> exit status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            live = self.live()
            if not live:
                break
            if deadline is not None and time.monotonic() >= deadline:
                for t in live:
                    t.kill()
                    self._ended(t)
                break
            if len(live) == 1 and live[0].cpus is None and deadline is None:
                self._run_solo(live[0])
                continue
            if not self.run_round():
                self._nap()
        return {t.name: t.status for t in self.tasks}

    def close(self) -> None:
        for t in self.live():
            t.kill()
            self._ended(t)
        self.pool.close()
        if self._solo is not None:
            self._solo.close()
