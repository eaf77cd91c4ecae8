"""The device-benchmark guests (blkbench, netbench) do the work they report, delimited by
the POST codes bench/test_devices.py times between. Small sizes: these are correctness
tests, not benchmarks."""
from __future__ import annotations

import struct

from hv import guests
from hv.machine import DriveSpec, Machine, MachineConfig
from tests.guest_run import expect_finished

MAGIC = b"HVBENCH\0"
SECTOR = 512


def patched(tmp_path, name: str, *values: int):
    data = bytearray(guests.image_path(name).read_bytes())
    at = data.index(MAGIC)
    struct.pack_into(f"<{len(values)}I", data, at + len(MAGIC), *values)
    path = tmp_path / f"{name}.img"
    path.write_bytes(data)
    return path


def run(config: MachineConfig) -> tuple[Machine, str, list[int]]:
    m = Machine(config)
    try:
        result = expect_finished(m, m.run())
    finally:
        m.close()
    assert result.exit_code == 0, result.reason
    return m, m.serial_log.decode("latin-1"), list(m.post.codes)


def tagged_disk(tmp_path, sectors: int):
    data = bytearray(sectors * SECTOR)
    for lba in range(sectors):
        struct.pack_into("<I", data, lba * SECTOR, lba)
    path = tmp_path / "disk.img"
    path.write_bytes(data)
    return path


def test_blkbench_reads_and_writes_the_whole_disk_including_a_short_last_request(tmp_path):
    sectors = 2048 + 3                                  # 1 MiB and a 3-sector tail
    disk = tagged_disk(tmp_path, sectors)
    m, serial, codes = run(MachineConfig(fda=DriveSpec(str(guests.image_path("blkbench"))),
                                         vda=DriveSpec(str(disk)), timeout=30))
    assert "blkbench: read 1 MiB + 3 sectors, wrote 1 MiB + 3 sectors, ok" in serial
    blk = m.virtio["blk"].device
    assert blk.bytes_read == blk.bytes_written == sectors * SECTOR
    assert codes[-3:] == [1, 2, 3]


def test_blkbench_checks_the_disk_tags_when_asked(tmp_path):
    disk = tagged_disk(tmp_path, 2048)
    boot = patched(tmp_path, "blkbench", 1 | 4)         # read, check
    _, serial, _ = run(MachineConfig(fda=DriveSpec(str(boot)), vda=DriveSpec(str(disk)), timeout=30))
    assert "blkbench: read 1 MiB, wrote 0 MiB, ok" in serial


def test_blkbench_tag_check_catches_wrong_data(tmp_path):
    disk = tmp_path / "zero.img"
    disk.write_bytes(bytes(1 << 20))                   # sector 256 does not start with 256
    boot = patched(tmp_path, "blkbench", 1 | 4)
    _, serial, _ = run(MachineConfig(fda=DriveSpec(str(boot)), vda=DriveSpec(str(disk)), timeout=30))
    assert "data differs from the disk's tags" in serial


def test_blkbench_batches_four_requests_per_doorbell(tmp_path):
    disk = tagged_disk(tmp_path, 2048)                  # 8 requests of 128 KiB: 2 batches
    boot = patched(tmp_path, "blkbench", 1)
    m, _, _ = run(MachineConfig(fda=DriveSpec(str(boot)), vda=DriveSpec(str(disk)), timeout=30))
    stats = m.virtio["blk"].stats
    assert (stats.chains, stats.doorbells, stats.interrupts) == (8, 2, 0)


def test_netbench_sends_the_patched_number_of_frames_of_the_patched_size(tmp_path):
    boot = patched(tmp_path, "netbench", 100, 1500)
    m, serial, codes = run(MachineConfig(fda=DriveSpec(str(boot)), virtio_net="switch:netbench-test",
                                         timeout=30))
    assert "netbench: sent 100 frames of 1500 bytes, ok" in serial
    c = m.vnet.counters
    assert (c.tx_frames, c.tx_bytes) == (100, 100 * 1500)
    assert m.virtio["net"].stats.doorbells == 4         # 32 + 32 + 32 + 4
    assert codes[-2:] == [1, 2]
