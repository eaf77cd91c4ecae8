"""Exit accounting: every transition from guest to host is counted by kind and
by device, so the cost of a device model can be read off ``hv run --stats``."""
from __future__ import annotations

from collections import Counter

# Kinds of exit, as the stats table and the benchmarks name them.
PIO = "pio"
MMIO = "mmio"
HLT = "hlt"
IRQ = "irq-inject"
SOFTINT = "softint"
EXCEPTION = "exception"
HYPERCALL = "hypercall"
TIMER = "timer"           # the vCPU stopped because a deadline passed
UNASSIGNED = "unassigned"  # an access that reached no device
WATCHDOG = "watchdog"      # a deadline the vCPU missed, kicked again (never expected)


class ExitStats:
    """Counts kept in Python, plus ``sources``: callables returning counts kept
    elsewhere (the C dispatch counts its exits in C memory)."""

    def __init__(self) -> None:
        self.counted: Counter[tuple[str, str]] = Counter()
        self.sources: list = []
        # callables returning {name: count} for engine events that are not exits (shown
        # under the table, outside the total)
        self.engine_notes: list = []

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        merged = Counter(self.counted)
        for source in self.sources:
            merged.update(source())
        return merged

    def count(self, kind: str, who: str = "-", n: int = 1) -> None:
        self.counted[(kind, who)] += n

    def total(self, kind: str | None = None) -> int:
        return sum(v for (k, _), v in self.counts.items() if kind is None or k == kind)

    def by_device(self, who: str) -> int:
        return sum(v for (_, w), v in self.counts.items() if w == who)

    def table(self) -> str:
        rows = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        lines = [f"{'exit kind':<12} {'device':<16} {'count':>10}"]
        lines += [f"{k:<12} {w:<16} {v:>10}" for (k, w), v in rows]
        lines.append(f"{'total':<12} {'':<16} {self.total():>10}")
        for source in self.engine_notes:
            lines += [f"{'engine':<12} {name:<16} {v:>10}" for name, v in source().items()]
        return "\n".join(lines)
