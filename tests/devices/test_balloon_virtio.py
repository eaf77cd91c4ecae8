"""virtio-balloon on the virtio-mmio transport, driven by the mock driver."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.devices.balloon_virtio import (DEFLATEQ, INFLATEQ, STATSQ, VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
                                    VIRTIO_BALLOON_F_STATS_VQ, VIRTIO_BALLOON_S_AVAIL,
                                    VIRTIO_BALLOON_S_MEMFREE, VIRTIO_BALLOON_S_MEMTOT,
                                    VIRTIO_BALLOON_S_SWAP_IN, VirtioBalloon, madvise_release, runs)
from hv.devices.base import RecordingIrq
from hv.memory import GuestMemory, MiB
from hv.virtio import TRANSPORT_FEATURES, VIRTIO_ID_BALLOON, Status, VirtioMmio
from hv.virtio import mmio as R
from hv.virtio.queue import ram_ranges
from hv.virtio.testing import MockDriver

BASE = 0xD3000
PAGE = 4096


class GuardedMemory(GuestMemory):
    """Records every host write that lands outside guest RAM."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.bad_writes: list[tuple[int, int]] = []
        self.invalidated: list[tuple[int, int]] = []
        self.invalidate = lambda lo, hi: self.invalidated.append((lo, hi))

    def write(self, addr: int, data: bytes) -> None:
        if not any(lo <= addr and addr + len(data) <= hi for lo, hi in ram_ranges(self)):
            self.bad_writes.append((addr, len(data)))
        super().write(addr, data)


class Recorder:
    """An injected release(offset, length) that remembers its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> None:
        self.calls.append((offset, length))


class Rig:
    def __init__(self, mem_size: int = 4 * MiB, release="record", features=None) -> None:
        self.mem = GuardedMemory(mem_size)
        self.irq = RecordingIrq()
        self.release = Recorder() if release == "record" else release
        self.dev = VirtioBalloon(self.mem, release=self.release)
        self.t = VirtioMmio(self.dev, self.mem, self.irq, BASE)
        self.drv = MockDriver(self.t, self.mem)
        self.features = features

    def start(self) -> "Rig":
        self.drv.init(self.features, queue_size=16)
        return self

    def send(self, queue: int, pfns: list[int]) -> int:
        head = self.drv.queues[queue].add([struct.pack(f"<{len(pfns)}I", *pfns)])
        self.drv.kick(queue)
        return head

    def inflate(self, pfns: list[int]) -> int:
        return self.send(INFLATEQ, pfns)

    def deflate(self, pfns: list[int]) -> int:
        return self.send(DEFLATEQ, pfns)

    def post_stats(self, stats: dict[int, int]) -> int:
        body = b"".join(struct.pack("<HQ", tag, val) for tag, val in stats.items())
        head = self.drv.queues[STATSQ].add([body])
        self.drv.kick(STATSQ)
        return head


@pytest.fixture
def rig() -> Rig:
    return Rig().start()


def needs_reset(r: Rig) -> bool:
    return bool(r.drv.status & Status.DEVICE_NEEDS_RESET)


# --- identity and config -------------------------------------------------------------

def test_device_id_is_virtio_balloon():
    assert Rig().drv.read(R.DeviceID) == VIRTIO_ID_BALLOON


def test_offers_stats_queue_and_deflate_on_oom():
    offered = Rig().drv.device_features()
    assert offered & ~TRANSPORT_FEATURES == ((1 << VIRTIO_BALLOON_F_STATS_VQ)
                                             | (1 << VIRTIO_BALLOON_F_DEFLATE_ON_OOM))


def test_has_three_queues():
    r = Rig()
    depths = []
    for i in range(4):
        r.drv.write(R.QueueSel, i)
        depths.append(r.drv.read(R.QueueNumMax))
    assert [d > 0 for d in depths] == [True, True, True, False]


def test_target_starts_at_zero(rig):
    assert rig.drv.config_read(0) == 0


def test_set_target_appears_in_config_and_raises_config_interrupt(rig):
    rig.dev.set_target(2048)
    assert rig.drv.config_read(0) == 2048
    assert rig.drv.ack_interrupt() & R.VIRTIO_MMIO_INT_CONFIG


def test_set_target_bumps_config_generation(rig):
    before = rig.drv.read(R.ConfigGeneration)
    rig.dev.set_target(1)
    assert rig.drv.read(R.ConfigGeneration) != before


def test_driver_writes_actual(rig):
    rig.drv.config_write(4, 4, 1234)
    assert rig.dev.actual == 1234 and rig.drv.config_read(4) == 1234


def test_driver_cannot_write_num_pages(rig):
    rig.dev.set_target(77)
    rig.drv.config_write(0, 4, 999)
    rig.drv.config_write(2, 4, 0xFFFFFFFF)     # straddles num_pages and actual
    assert rig.dev.target == 77
    assert rig.dev.actual == 0x0000FFFF


# --- inflate ---------------------------------------------------------------------------

def test_inflate_releases_exactly_the_listed_pages(rig):
    rig.inflate([0x200, 0x300])
    assert sorted(rig.release.calls) == [(0x200 * PAGE, PAGE), (0x300 * PAGE, PAGE)]


def test_inflate_batches_contiguous_pages_into_one_release(rig):
    rig.inflate([0x203, 0x200, 0x201, 0x202, 0x210])
    assert rig.release.calls == [(0x200 * PAGE, 4 * PAGE), (0x210 * PAGE, PAGE)]


def test_inflate_counts_pages_and_released_bytes(rig):
    rig.inflate(list(range(0x200, 0x210)))
    assert rig.dev.counters.pages_inflated == 16
    assert rig.dev.counters.bytes_released == 16 * PAGE


def test_inflate_returns_chain_and_interrupts(rig):
    head = rig.inflate([0x200])
    assert [(u.id, u.len) for u in rig.drv.queues[INFLATEQ].used()] == [(head, 0)]
    assert rig.irq.level


def test_inflate_records_ballooned_pages(rig):
    rig.inflate([0x200, 0x201])
    assert rig.dev.ballooned == {0x200, 0x201}


def test_inflated_pages_read_back_as_zeros_and_neighbours_keep_data():
    r = Rig(release=None).start()
    r.mem.write(0x200000, b"\x5a" * (3 * PAGE))
    r.inflate([0x201])
    assert r.mem.read(0x201000, PAGE) == bytes(PAGE)
    assert r.mem.read(0x200000, PAGE) == b"\x5a" * PAGE
    assert r.mem.read(0x202000, PAGE) == b"\x5a" * PAGE


def test_inflate_invalidates_translated_code_of_released_pages(rig):
    rig.inflate([0x200, 0x201])
    assert (0x200 * PAGE, 0x202 * PAGE) in rig.mem.invalidated


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_inflating_8_mib_lowers_host_resident_memory_by_at_least_7_mib():
    r = Rig(mem_size=32 * MiB, release=None).start()
    lo = 16 * MiB
    r.mem.write(lo, b"\x01" * (8 * MiB))        # make the 8 MiB resident
    pfns = list(range(lo // PAGE, (lo + 8 * MiB) // PAGE))
    before = _rss()
    r.inflate(pfns)
    after = _rss()
    assert r.dev.counters.bytes_released == 8 * MiB
    assert before - after >= 7 * MiB


@pytest.mark.parametrize("pfn", [
    0xA0,              # video memory
    0xC0, 0xFF,        # ROM hole
    4 * MiB // PAGE,   # just past the end of RAM
    0xFFFFFFFF,
])
def test_bad_pfns_are_ignored_and_counted(rig, pfn):
    rig.inflate([pfn, 0x200])
    assert rig.release.calls == [(0x200 * PAGE, PAGE)]
    assert rig.dev.counters.bad_pfns == 1
    assert rig.dev.counters.pages_inflated == 1
    assert not needs_reset(rig)


def test_trailing_partial_pfn_is_ignored(rig):
    rig.drv.queues[INFLATEQ].add([struct.pack("<I", 0x200) + b"\x01\x02"])
    rig.drv.kick(INFLATEQ)
    assert rig.release.calls == [(0x200 * PAGE, PAGE)]


def test_release_failure_is_counted_not_raised():
    def refuse(offset, length):
        raise OSError(22, "Invalid argument")
    r = Rig(release=refuse).start()
    r.inflate([0x200])
    assert r.dev.counters.release_errors == 1 and r.dev.counters.bytes_released == 0
    assert not needs_reset(r)


def test_madvise_release_falls_back_to_dontneed_on_a_private_mapping():
    import mmap
    buf = mmap.mmap(-1, 4 * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf[:] = b"\x07" * (4 * PAGE)
    madvise_release(buf)(PAGE, 2 * PAGE)
    assert buf[PAGE:3 * PAGE] == bytes(2 * PAGE) and buf[0] == 7 and buf[3 * PAGE] == 7


def test_runs_merges_consecutive_and_duplicate_pfns():
    assert runs([5, 3, 4, 4, 9]) == [(3, 3), (9, 1)]


# --- deflate -----------------------------------------------------------------------------

def test_deflate_counts_and_forgets_pages(rig):
    rig.inflate([0x200, 0x201, 0x202])
    rig.deflate([0x201])
    assert rig.dev.counters.pages_deflated == 1
    assert rig.dev.ballooned == {0x200, 0x202}


def test_deflate_releases_nothing(rig):
    rig.deflate([0x200])
    assert rig.release.calls == []


def test_deflate_returns_chain(rig):
    head = rig.deflate([0x200])
    assert [u.id for u in rig.drv.queues[DEFLATEQ].used()] == [head]


def test_deflate_ignores_bad_pfns(rig):
    rig.deflate([0xB8, 0x200])
    assert rig.dev.counters.pages_deflated == 1 and rig.dev.counters.bad_pfns == 1


def test_deflated_page_is_usable_again():
    r = Rig(release=None).start()
    r.inflate([0x200])
    r.deflate([0x200])
    r.mem.write(0x200000, b"back")
    assert r.mem.read(0x200000, 4) == b"back"


# --- stats -----------------------------------------------------------------------------------

STATS = {VIRTIO_BALLOON_S_SWAP_IN: 1, VIRTIO_BALLOON_S_MEMFREE: 100 * MiB,
         VIRTIO_BALLOON_S_MEMTOT: 256 * MiB, VIRTIO_BALLOON_S_AVAIL: 200 * MiB}


def test_stats_buffer_is_parsed_by_tag_name(rig):
    rig.post_stats(STATS)
    assert rig.dev.stats == {"SWAP_IN": 1, "MEMFREE": 100 * MiB, "MEMTOT": 256 * MiB,
                             "AVAIL": 200 * MiB}


def test_stats_buffer_is_held_until_host_asks(rig):
    rig.post_stats(STATS)
    assert rig.drv.queues[STATSQ].used() == []


def test_request_stats_returns_buffer_and_new_stats_replace_old(rig):
    head = rig.post_stats(STATS)
    assert rig.dev.request_stats() is True
    assert [(u.id, u.len) for u in rig.drv.queues[STATSQ].used()] == [(head, 0)]
    assert rig.irq.level
    rig.post_stats({VIRTIO_BALLOON_S_MEMFREE: 5})
    assert rig.dev.stats == {"MEMFREE": 5}
    assert rig.dev.counters.stats_updates == 2


def test_request_stats_without_a_posted_buffer_returns_false(rig):
    assert rig.dev.request_stats() is False


def test_unknown_stat_tags_are_kept_by_number(rig):
    rig.post_stats({42: 7})
    assert rig.dev.stats == {"TAG_42": 7}


def test_second_stats_buffer_returns_the_first(rig):
    first = rig.post_stats(STATS)
    rig.post_stats(STATS)
    assert [u.id for u in rig.drv.queues[STATSQ].used()] == [first]


def test_reset_forgets_held_stats_buffer(rig):
    rig.post_stats(STATS)
    rig.drv.set_status(0)
    assert rig.dev.request_stats() is False


# --- malformed rings -----------------------------------------------------------------------------

def test_inflate_descriptor_outside_ram_needs_reset(rig):
    q = rig.drv.queues[INFLATEQ]
    q.write_desc(0, 0xC0000, 64)       # ROM is not guest RAM for DMA
    q.publish(0)
    rig.drv.kick(INFLATEQ)
    assert needs_reset(rig) and rig.release.calls == []


def test_looping_chain_needs_reset(rig):
    q = rig.drv.queues[DEFLATEQ]
    q.write_desc(0, 0x80000, 4, 1, 1)
    q.write_desc(1, 0x80000, 4, 1, 0)
    q.publish(0)
    rig.drv.kick(DEFLATEQ)
    assert needs_reset(rig)


def test_avail_index_too_far_ahead_needs_reset(rig):
    rig.drv.queues[INFLATEQ].set_avail_idx(500)
    rig.drv.kick(INFLATEQ)
    assert needs_reset(rig)


# --- hostile input never escapes --------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(descs=st.lists(st.tuples(st.integers(0, 0x420000), st.integers(0, 0x3000),
                                st.integers(0, 7), st.integers(0, 20)), min_size=1, max_size=16),
       heads=st.lists(st.integers(0, 20), min_size=1, max_size=6),
       pfns=st.lists(st.integers(0, 0xFFFFFFFF) | st.integers(0, 0x500), max_size=64),
       queue=st.sampled_from([INFLATEQ, DEFLATEQ, STATSQ]))
def test_random_rings_never_raise_or_touch_memory_outside_ram(descs, heads, pfns, queue):
    r = Rig().start()
    r.mem.write(0x80000, struct.pack(f"<{len(pfns)}I", *pfns))
    q = r.drv.queues[queue]
    for i, (addr, n, flags, nxt) in enumerate(descs):
        q.write_desc(i, addr if i % 2 else 0x80000, n, flags, nxt)
    for h in heads:
        q.publish(h)
    r.drv.kick(queue)
    r.dev.request_stats()
    ram = ram_ranges(r.mem)
    assert all(any(lo <= off and off + n <= hi for lo, hi in ram) for off, n in r.release.calls)
    assert r.mem.bad_writes == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x1FF), st.sampled_from([1, 2, 4, 3, 8]),
                          st.integers(0, 0xFFFFFFFF), st.booleans()), max_size=40))
def test_random_register_accesses_never_raise(ops):
    r = Rig()
    for offset, size, value, is_write in ops:
        if is_write:
            r.t.write(offset, size, value)
        else:
            r.t.read(offset, size)
    r.dev.set_target(10)
    r.dev.request_stats()
    assert r.mem.bad_writes == []
