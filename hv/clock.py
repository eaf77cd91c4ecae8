"""The virtual clock: one time base for every timer device, and the deadlines
at which the vCPU must regain control.

Virtual time runs with the host's monotonic clock (so 18.2 Hz is 18.2 Hz on
the wall) but only advances while the machine runs; devices never read the
host clock themselves. Timers are one-shot callbacks kept in a heap; the vCPU
loop asks ``next_deadline()`` to know how long it may run (or sleep in HLT)
and calls ``run_due()`` when it regains control.
"""
from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable

NS_PER_S = 1_000_000_000
# The virtual clock's rate (--clock virtual): each translated block the guest runs is 10 ns
# of virtual time (roughly a 1 GHz CPU running 10-instruction blocks); idle time in HLT is
# skipped to the next deadline. Time then depends only on the guest's own work.
VIRTUAL_NS_PER_BLOCK = 10


class Timer:
    __slots__ = ("deadline", "callback", "cancelled")

    def __init__(self, deadline: int, callback: Callable[[int], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """Virtual nanoseconds since power-on."""

    def __init__(self, source: Callable[[], int] = time.monotonic_ns) -> None:
        self._source = source
        self._origin = source()
        self._paused_at: int | None = None
        self._heap: list[tuple[int, int, Timer]] = []
        self._seq = itertools.count()
        self.on_deadline_change: Callable[[int | None], None] | None = None
        # Called with the new origin when pause/resume/advance move it: C code that reads
        # the host clock itself (the PIT's counters, the TSC) keeps the same time base.
        self.on_origin_change: Callable[[int], None] | None = None

    def now(self) -> int:
        if self._paused_at is not None:
            return self._paused_at
        return self._source() - self._origin

    def host_time(self, virtual: int) -> int:
        """The host monotonic time at which virtual time reaches ``virtual``."""
        return virtual + self._origin

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self.now()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._origin = self._source() - self._paused_at
            self._paused_at = None
            self._origin_moved()

    def advance(self, ns: int) -> None:
        """Step virtual time (tests and a paused clock use this)."""
        if self._paused_at is not None:
            self._paused_at += ns
        else:
            self._origin -= ns
            self._origin_moved()

    def set_now(self, ns: int) -> None:
        """Make virtual time read ``ns`` from now on (restoring a snapshot)."""
        if self._paused_at is not None:
            self._paused_at = ns
        else:
            self._origin = self._source() - ns
            self._origin_moved()

    def clear_timers(self) -> None:
        """Forget every timer (restoring a snapshot: devices re-arm their own)."""
        self._heap.clear()
        if self.on_deadline_change:
            self.on_deadline_change(None)

    def _origin_moved(self) -> None:
        if self.on_origin_change is not None:
            self.on_origin_change(self._origin)

    def at(self, deadline: int, callback: Callable[[int], None]) -> Timer:
        """Call ``callback(now)`` once virtual time reaches ``deadline``."""
        t = Timer(deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._seq), t))
        if self._heap[0][2] is t and self.on_deadline_change:
            self.on_deadline_change(deadline)
        return t

    def after(self, delay: int, callback: Callable[[int], None]) -> Timer:
        return self.at(self.now() + delay, callback)

    def next_deadline(self) -> int | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self) -> int:
        """Fire every timer whose deadline had passed when the call began; return how
        many fired. One reading of the time, and timers armed by the callbacks wait for
        the next call even if already due: otherwise a guest's periodic timer with a
        period shorter than a callback (a 1 ns local APIC timer) is due again every time
        the clock is read, and this loop, and the host with it, never returns."""
        fired = 0
        heap = self._heap
        now = self.now()
        first_new = next(self._seq)            # timers armed from here on are new
        while True:
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            if not heap or heap[0][0] > now or heap[0][1] > first_new:
                break
            _, _, t = heapq.heappop(heap)
            t.cancelled = True
            t.callback(now)
            fired += 1
        if self.on_deadline_change:
            self.on_deadline_change(self.next_deadline())
        return fired
