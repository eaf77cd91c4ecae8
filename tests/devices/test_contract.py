"""The contract every device on the PC board keeps: any guest access, of any size at
any port, with any value, is defined behaviour (the device's answer fits the access,
never a host exception), and a reset brings every register back to its power-on value."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.machine import Machine, MachineConfig

# Ports whose reading depends on time or that keep state across a reset by design:
# the PIT counters and port B's refresh toggle, the VGA's retrace status, the CMOS (its
# RAM and clock survive a reset), the POST card's last code and the ACPI PM timer.
NOT_RESET = set(range(0x40, 0x44)) | {0x61, 0x3BA, 0x3DA, 0x70, 0x71, 0x80} | set(range(0x608, 0x60C))


@pytest.fixture(scope="module")
def machine():
    m = Machine(MachineConfig(mem_size=1 << 20))
    yield m
    m.close()


def claimed_ports(m: Machine) -> list[int]:
    return [p for p in range(0x10000) if m.ports.device_at(p) is not None]


def test_every_board_device_claims_its_datasheet_ports(machine):
    names = {machine.ports.device_at(p).name for p in claimed_ports(machine)}
    assert {"pic", "pit", "com1", "cmos", "i8042", "port92", "vga", "debugcon", "post",
            "ide0", "ide1", "dma", "fdc", "ne2000"} <= names


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_port_accesses_to_every_device_answer_within_the_access_size(machine, data):
    ports = claimed_ports(machine)
    for _ in range(20):
        port = data.draw(st.sampled_from(ports))
        size = data.draw(st.sampled_from([1, 2, 4]))
        dev, off = machine.ports.device_at(port), machine.ports.offset_at(port)
        if data.draw(st.booleans()):
            dev.write(off, size, data.draw(st.integers(0, (1 << (8 * size)) - 1)))
        else:
            v = dev.read(off, size)              # the device's own answer, before any bus mask
            assert 0 <= v < 1 << (8 * size), (dev.name, hex(port), size, v)
    machine.clock.run_due()


def power_on_readings(m: Machine) -> dict[int, int]:
    return {p: m.ports.read(p, 1) for p in claimed_ports(m) if p not in NOT_RESET}


@settings(max_examples=25, deadline=None)
@given(writes=st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFF)), min_size=1,
                       max_size=200))
def test_a_reset_after_any_register_writes_reads_back_like_power_on(writes):
    fresh = Machine(MachineConfig(mem_size=1 << 20))
    used = Machine(MachineConfig(mem_size=1 << 20))
    try:
        ports = claimed_ports(used)
        for i, value in writes:
            used.ports.write(ports[i % len(ports)], 1, value)
        for dev in used.devices:
            dev.reset()
        expected, got = power_on_readings(fresh), power_on_readings(used)
        assert {hex(p): (expected[p], got[p]) for p in expected if expected[p] != got[p]} == {}
    finally:
        fresh.close()
        used.close()
