"""virtio-balloon (virtio 1.2 §5.5): the guest hands RAM back to the host.

The host sets a target (``num_pages`` in config space, 4 KiB pages) with
``set_target``; the driver inflates the balloon towards it by sending arrays of
le32 page frame numbers on inflateq, and reports how many pages it holds in
``actual`` (the one driver-writable config field). Deflating (deflateq) hands
pages back to the guest.

* Inflate: each listed page's host memory is released. Guest RAM is a shared
  anonymous ``mmap`` (``GuestMemory.buffer``), so the release is
  ``madvise(MADV_REMOVE)``: MADV_DONTNEED on a MAP_SHARED mapping only unmaps
  the pages from this process (RSS drops) but the shmem object keeps them, so
  no memory would be freed and the old contents would come back. MADV_REMOVE
  frees the backing pages; they fault back in zero-filled. (A private mapping
  refuses MADV_REMOVE with EINVAL; then MADV_DONTNEED does the job.) Contiguous
  PFNs are released in one call. A PFN whose page is not wholly inside guest
  RAM -- beyond the end, or in the video/ROM hole at 0xA0000-0xFFFFF -- is
  ignored and counted (``bad_pfns``).
* Deflate: nothing to do on the host (the pages fault back in zero-filled on
  the next touch); the pages are recorded and counted.
* Stats (VIRTIO_BALLOON_F_STATS_VQ, §5.5.6.3): the driver posts one readable
  buffer of packed ``{le16 tag; le64 val}`` entries. The device keeps the
  latest values (``stats``) and holds on to the buffer; ``request_stats()``
  returns it through the used ring, which is how the device asks the driver
  for a fresh set (the driver refills and re-posts it).

MUST_TELL_HOST is not offered (we don't care whether the guest touches a page
before telling us on deflate), nor FREE_PAGE_HINT / PAGE_POISON / PAGE_REPORTING.
"""
from __future__ import annotations

import logging
import mmap
import struct
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Callable

from hv.devices import state as st
from hv.virtio import VIRTIO_ID_BALLOON, Chain, VirtioDevice, Virtqueue
from hv.virtio.queue import VirtqueueError, check_ram, ram_ranges

if TYPE_CHECKING:
    from hv.memory import GuestMemory

log = logging.getLogger(__name__)

# Feature bits (§5.5.3).
VIRTIO_BALLOON_F_MUST_TELL_HOST = 0
VIRTIO_BALLOON_F_STATS_VQ = 1
VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2
VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3
VIRTIO_BALLOON_F_PAGE_POISON = 4
VIRTIO_BALLOON_F_PAGE_REPORTING = 5

# Virtqueues (§5.5.2).
INFLATEQ = 0
DEFLATEQ = 1
STATSQ = 2

VIRTIO_BALLOON_PFN_SHIFT = 12          # PFNs are always 4 KiB pages, whatever the guest's page size
BALLOON_PAGE_SIZE = 1 << VIRTIO_BALLOON_PFN_SHIFT

# Config space (§5.5.4): le32 num_pages (device), le32 actual (driver).
CONFIG_NUM_PAGES = 0
CONFIG_ACTUAL = 4
CONFIG_SIZE = 8

# Memory statistics tags (§5.5.6.3).
VIRTIO_BALLOON_S_SWAP_IN = 0
VIRTIO_BALLOON_S_SWAP_OUT = 1
VIRTIO_BALLOON_S_MAJFLT = 2
VIRTIO_BALLOON_S_MINFLT = 3
VIRTIO_BALLOON_S_MEMFREE = 4
VIRTIO_BALLOON_S_MEMTOT = 5
VIRTIO_BALLOON_S_AVAIL = 6
VIRTIO_BALLOON_S_CACHES = 7
VIRTIO_BALLOON_S_HTLB_PGALLOC = 8
VIRTIO_BALLOON_S_HTLB_PGFAIL = 9

STAT_NAMES = {
    VIRTIO_BALLOON_S_SWAP_IN: "SWAP_IN",
    VIRTIO_BALLOON_S_SWAP_OUT: "SWAP_OUT",
    VIRTIO_BALLOON_S_MAJFLT: "MAJFLT",
    VIRTIO_BALLOON_S_MINFLT: "MINFLT",
    VIRTIO_BALLOON_S_MEMFREE: "MEMFREE",
    VIRTIO_BALLOON_S_MEMTOT: "MEMTOT",
    VIRTIO_BALLOON_S_AVAIL: "AVAIL",
    VIRTIO_BALLOON_S_CACHES: "CACHES",
    VIRTIO_BALLOON_S_HTLB_PGALLOC: "HTLB_PGALLOC",
    VIRTIO_BALLOON_S_HTLB_PGFAIL: "HTLB_PGFAIL",
}

VIRTIO_BALLOON_STAT = struct.Struct("<HQ")    # packed: 10 bytes
MAX_STATS = 64                 # entries read from one stats buffer (Linux sends 10)
MAX_PFNS_PER_CHAIN = 65536     # Linux sends at most 256; more is read no further (aliasing
                               # descriptors could claim 4 GiB of "array")


@dataclass
class BalloonCounters:
    pages_inflated: int = 0     # valid PFNs received on inflateq
    pages_deflated: int = 0     # valid PFNs received on deflateq
    bytes_released: int = 0     # host memory handed back to the OS
    bad_pfns: int = 0           # PFNs outside guest RAM / in the hole, or past the cap
    release_errors: int = 0     # madvise refused (memory stays allocated; guest unaffected)
    stats_updates: int = 0      # stats buffers received


def madvise_release(buffer: mmap.mmap) -> Callable[[int, int], None]:
    """The default ``release(offset, length)``: free the host pages behind a
    range of ``buffer``. The range is narrowed to host-page boundaries (a no-op
    on 4 KiB-page hosts)."""
    page = mmap.PAGESIZE
    advice = [a for a in (getattr(mmap, "MADV_REMOVE", None), getattr(mmap, "MADV_DONTNEED", None))
              if a is not None]

    def release(offset: int, length: int) -> None:
        lo = -(-offset // page) * page
        hi = (offset + length) // page * page
        if hi <= lo:
            return
        while advice:
            try:
                buffer.madvise(advice[0], lo, hi - lo)
                return
            except OSError:
                if len(advice) == 1:
                    raise
                advice.pop(0)          # e.g. MADV_REMOVE on a private mapping: fall back for good

    return release


class VirtioBalloon(VirtioDevice):
    """``VirtioBalloon(mem, release=None)``: ``mem`` the GuestMemory;
    ``release(offset, length)`` frees host memory behind a run of guest RAM
    (default: madvise on ``mem.buffer``; tests inject a recorder).

    Host API: ``set_target(pages)``, ``request_stats()``; read ``target``,
    ``actual``, ``stats`` (latest values by tag name), ``counters``,
    ``ballooned`` (the set of PFNs the guest has given up)."""

    name = "balloon"
    device_id = VIRTIO_ID_BALLOON
    features = (1 << VIRTIO_BALLOON_F_STATS_VQ) | (1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM)
    num_queues = 3
    queue_max = 128

    def __init__(self, mem: "GuestMemory", release: Callable[[int, int], None] | None = None) -> None:
        super().__init__()
        self.mem = mem
        self.release = release if release is not None else madvise_release(mem.buffer)
        self.config = bytearray(CONFIG_SIZE)     # num_pages 0: the host wants nothing back yet
        self.counters = BalloonCounters()
        self.ballooned: set[int] = set()
        self.stats: dict[str, int] = {}
        self._stats_chain: Chain | None = None   # the driver's stats buffer, held until we want more
        self._ram = ram_ranges(mem)

    # ---- host side -------------------------------------------------------------

    @property
    def target(self) -> int:
        return int.from_bytes(self.config[CONFIG_NUM_PAGES:CONFIG_NUM_PAGES + 4], "little")

    @property
    def actual(self) -> int:
        return int.from_bytes(self.config[CONFIG_ACTUAL:CONFIG_ACTUAL + 4], "little")

    def set_target(self, pages: int) -> None:
        """Ask the guest to hold ``pages`` 4 KiB pages in its balloon."""
        pages = max(0, min(int(pages), 0xFFFFFFFF))
        self.config[CONFIG_NUM_PAGES:CONFIG_NUM_PAGES + 4] = pages.to_bytes(4, "little")
        if self.transport is not None:
            self.transport.config_changed()

    def request_stats(self) -> bool:
        """Hand the held stats buffer back so the driver sends fresh values.
        False if the driver has not posted one (no STATS_VQ, or not yet)."""
        chain, q = self._stats_chain, self._live_queue(STATSQ)
        if chain is None or q is None or self.transport is None:
            return False
        self._stats_chain = None
        done = False
        with self.transport.guarded():
            q.push(chain, 0)
            self.signal_used(q)
            done = True
        return done

    # ---- snapshots -------------------------------------------------------------------

    def state(self) -> dict:
        """The pages in the balloon (their RAM is zero: saved as holes), the latest
        statistics, the stats buffer the device holds (as the chain it was popped as),
        and the counters. Target and actual are config space, saved by the transport."""
        chain = self._stats_chain
        held = None if chain is None else {
            "head": chain.head, "readable": [list(b) for b in chain.readable],
            "writable": [list(b) for b in chain.writable], "written": chain.written,
            "indirect": chain.indirect}
        return st.versioned(ballooned=sorted(self.ballooned), stats=dict(self.stats),
                            stats_chain=held, counters=asdict(self.counters))

    def load_state(self, state: dict) -> None:
        who = "virtio-balloon"
        st.check_version(state, who)
        pages = self.mem.size >> VIRTIO_BALLOON_PFN_SHIFT
        ballooned = st.int_list(state, "ballooned", who, None, 0, max(pages - 1, 0), pages)
        stats = st.field(state, "stats", who)
        if not isinstance(stats, dict) or len(stats) > MAX_STATS or any(
                not isinstance(k, str) or type(v) is not int for k, v in stats.items()):
            raise ValueError(f"{who}: saved stats are not named values")
        saved = st.field(state, "counters", who)
        names = [f.name for f in fields(BalloonCounters)]
        if not isinstance(saved, dict) or set(saved) != set(names):
            raise ValueError(f"{who}: saved counters are not the device's")
        counters = BalloonCounters(**{n: st.integer(saved, n, who) for n in names})
        held = st.field(state, "stats_chain", who)
        chain = None
        if held is not None:
            if not isinstance(held, dict):
                raise ValueError(f"{who}: saved stats_chain is not a chain")
            bufs = {}
            for key in ("readable", "writable"):
                runs = held.get(key)
                if not isinstance(runs, list) or len(runs) > 0x10000 or any(
                        not isinstance(b, list) or len(b) != 2 or
                        any(type(v) is not int or v < 0 for v in b) for b in runs):
                    raise ValueError(f"{who}: saved stats_chain {key} is not buffers")
                try:
                    for addr, n in runs:
                        check_ram(self.mem, addr, n, "stats buffer")
                except VirtqueueError as e:
                    raise ValueError(f"{who}: {e.reason}") from None
                bufs[key] = [(a, n) for a, n in runs]
            chain = Chain(self.mem, st.integer(held, "head", who, 0, 0xFFFF), bufs["readable"],
                          bufs["writable"], st.flag(held, "indirect", who))
            chain.written = st.integer(held, "written", who, 0, 0xFFFFFFFF)
        self.ballooned = set(ballooned)
        self.stats = dict(stats)
        self.counters = counters
        self._stats_chain = chain

    # ---- config ---------------------------------------------------------------------

    def config_write(self, offset: int, size: int, value: int) -> None:
        # Only `actual` belongs to the driver; bytes of a write outside it are dropped.
        data = value.to_bytes(size, "little")
        for i, byte in enumerate(data):
            pos = offset + i
            if CONFIG_ACTUAL <= pos < CONFIG_ACTUAL + 4:
                self.config[pos] = byte

    # ---- queues ---------------------------------------------------------------------------

    def _live_queue(self, index: int) -> Virtqueue | None:
        if index < len(self.queues) and self.queues[index].ready:
            return self.queues[index]
        return None

    def notify(self, queue_index: int) -> None:
        q = self._live_queue(queue_index)
        if q is None:
            return
        handler = {INFLATEQ: self._inflate, DEFLATEQ: self._deflate}.get(queue_index)
        if handler is not None:
            self.drain(q, handler)
        elif queue_index == STATSQ:
            self._stats(q)

    def _pfns(self, chain: Chain) -> list[int]:
        """The chain's le32 PFNs (a trailing partial entry is ignored), valid ones
        only; the rest are counted as bad."""
        n = chain.readable_len // 4
        if n > MAX_PFNS_PER_CHAIN:
            self.counters.bad_pfns += n - MAX_PFNS_PER_CHAIN
            n = MAX_PFNS_PER_CHAIN
        raw = chain.read(0, 4 * n)
        good = []
        for pfn in struct.unpack(f"<{n}I", raw):
            addr = pfn << VIRTIO_BALLOON_PFN_SHIFT
            if any(lo <= addr and addr + BALLOON_PAGE_SIZE <= hi for lo, hi in self._ram):
                good.append(pfn)
            else:
                self.counters.bad_pfns += 1
        return good

    def _inflate(self, chain: Chain) -> int:
        pfns = self._pfns(chain)
        self.counters.pages_inflated += len(pfns)
        self.ballooned.update(pfns)
        for first, count in runs(pfns):
            offset, length = first << VIRTIO_BALLOON_PFN_SHIFT, count << VIRTIO_BALLOON_PFN_SHIFT
            try:
                self.release(offset, length)
            except OSError as e:
                # The host keeps the memory; the guest can't tell the difference.
                self.counters.release_errors += 1
                log.warning("balloon: releasing %#x+%#x failed: %s", offset, length, e)
                continue
            self.counters.bytes_released += length
            # The pages now read as zeros: drop code the CPU translated from them.
            self.mem.invalidate(offset, offset + length)
        return 0

    def _deflate(self, chain: Chain) -> int:
        pfns = self._pfns(chain)
        self.counters.pages_deflated += len(pfns)
        self.ballooned.difference_update(pfns)
        return 0

    def _stats(self, q: Virtqueue) -> None:
        # §5.5.6.3: the device uses the buffer and keeps it until it wants an update.
        # A driver that posts a second one gets the previous back at once.
        while (chain := q.pop()) is not None:
            if self._stats_chain is not None:
                q.push(self._stats_chain, 0)
                self.signal_used(q)
            self._stats_chain = chain
            if not self.has_feature(VIRTIO_BALLOON_F_STATS_VQ):
                continue     # a queue the driver should not be using: hold, but don't read
            n = min(chain.readable_len // VIRTIO_BALLOON_STAT.size, MAX_STATS)
            raw = chain.read(0, n * VIRTIO_BALLOON_STAT.size)
            stats = {}
            for i in range(n):
                tag, val = VIRTIO_BALLOON_STAT.unpack_from(raw, i * VIRTIO_BALLOON_STAT.size)
                stats[STAT_NAMES.get(tag, f"TAG_{tag}")] = val
            self.stats = stats          # the latest report replaces the previous one
            self.counters.stats_updates += 1

    def reset(self) -> None:
        super().reset()
        self._stats_chain = None
        # The guest's memory is its own again: a fresh driver starts with an empty balloon.
        self.ballooned.clear()
        self.config[CONFIG_ACTUAL:CONFIG_ACTUAL + 4] = bytes(4)


def runs(pfns: list[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated PFNs as (first, count) runs of consecutive pages."""
    out: list[tuple[int, int]] = []
    for pfn in sorted(set(pfns)):
        if out and out[-1][0] + out[-1][1] == pfn:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((pfn, 1))
    return out
