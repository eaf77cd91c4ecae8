"""The contract every device on the PC board keeps: any guest access, of any size at
any port, with any value, is defined behaviour (never a host exception)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.machine import Machine, MachineConfig


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
def test_random_port_accesses_to_every_device_never_raise(machine, data):
    ports = claimed_ports(machine)
    for _ in range(20):
        port = data.draw(st.sampled_from(ports))
        size = data.draw(st.sampled_from([1, 2, 4]))
        if data.draw(st.booleans()):
            machine.ports.write(port, size, data.draw(st.integers(0, (1 << (8 * size)) - 1)))
        else:
            v = machine.ports.read(port, size)
            assert 0 <= v < 1 << (8 * size)
    machine.clock.run_due()


def test_every_device_resets_without_error(machine):
    for dev in machine.devices:
        dev.reset()
