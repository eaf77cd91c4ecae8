"""Stopping, stepping, breakpoints and watchpoints (hv/debug/control.py), driven from
another thread as the gdb stub and the monitor drive them."""
from __future__ import annotations

import threading

import pytest
from unicorn import x86_const as X

from hv import guests
from hv.machine import DriveSpec, Machine, MachineConfig

DISPATCHERS = ["c", "python"]


class Session:
    """A machine running in a thread, with its debugger and the stop events it reports."""

    def __init__(self, dispatch: str, image: str = "hello", bios: str = "synthetic") -> None:
        self.m = Machine(MachineConfig(fda=DriveSpec(str(guests.image_path(image)), readonly=True),
                                       dispatch=dispatch, bios=bios, timeout=60))
        self.dbg = self.m.attach_debugger(start_stopped=True)
        self.events: list = []
        self.stopped = threading.Event()
        self.dbg.listeners.append(self._on_stop)
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.wait_stop()

    def _on_stop(self, event) -> None:
        self.events.append(event)
        self.stopped.set()

    def _run(self) -> None:
        self.result = self.m.run()
        self.stopped.set()

    def wait_stop(self, timeout: float = 30):
        assert self.stopped.wait(timeout), "the machine did not stop"
        self.stopped.clear()
        return self.events[-1] if self.events else None

    def regs(self, *names):
        return self.dbg.request(lambda m: tuple(
            m.vcpu.uc.reg_read(getattr(X, f"UC_X86_REG_{n.upper()}")) for n in names))

    def close(self) -> None:
        self.m.finish(0, "test over")
        self.m.wake_vcpu()
        self.thread.join(10)
        self.m.close()


@pytest.fixture(params=DISPATCHERS)
def session(request):
    s = Session(request.param)
    yield s
    s.close()


def test_start_stopped_holds_the_cpu_at_the_reset_vector(session):
    assert session.events[0].reason == "start"
    assert session.regs("cs", "eip") == (0xF000, 0xFFF0)


def test_a_breakpoint_at_the_boot_sector_stops_before_its_first_instruction(session):
    dbg = session.dbg
    dbg.request(lambda m: dbg.add_breakpoint(0x7C00))
    dbg.request(lambda m: dbg.cont())
    event = session.wait_stop()
    assert (event.reason, event.address) == ("break", 0x7C00)
    assert session.regs("cs", "eip") == (0, 0x7C00)


def test_step_runs_exactly_one_instruction(session):
    dbg = session.dbg
    dbg.request(lambda m: dbg.add_breakpoint(0x7C00))
    dbg.request(lambda m: dbg.cont())
    session.wait_stop()
    code = dbg.request(lambda m: m.vcpu.read_linear(0x7C00, 16))
    from hv.trace import instruction_length
    length = instruction_length(code, 0x7C00, 16)
    assert length > 0
    dbg.request(lambda m: dbg.step())
    event = session.wait_stop()
    assert event.reason == "step"
    assert session.regs("eip")[0] == 0x7C00 + length


def test_continuing_from_a_breakpoint_does_not_stop_there_again(session):
    dbg = session.dbg
    dbg.request(lambda m: dbg.add_breakpoint(0x7C00))
    dbg.request(lambda m: dbg.cont())
    session.wait_stop()
    dbg.request(lambda m: dbg.cont())
    session.thread.join(30)
    assert session.result is not None and session.result.exit_code == 0
    assert "Hello" in session.m.serial_text()


@pytest.mark.parametrize("bios", ["emulated", "synthetic"])
def test_a_write_watchpoint_on_a_bios_data_word_stops_after_the_write(session, bios):
    """The cursor word of page 0 (0x450) moves with hello's teletype output: written by guest
    code under the emulated BIOS, by host code (a hypercall) under the synthetic one."""
    if bios == "emulated":
        session.close()
        session = Session(session.m.config.dispatch, bios="emulated")
    dbg = session.dbg
    dbg.request(lambda m: dbg.add_breakpoint(0x7C00))
    dbg.request(lambda m: dbg.cont())
    session.wait_stop()
    before = dbg.request(lambda m: m.mem.u16(0x450))
    dbg.request(lambda m: dbg.add_watchpoint(0x450, 2, "w"))
    dbg.request(lambda m: dbg.cont())
    event = session.wait_stop()
    assert (event.reason, event.address, event.kind) == ("watch", 0x450, "w")
    assert dbg.request(lambda m: m.mem.u16(0x450)) != before
    dbg.request(lambda m: dbg.remove_watchpoint(0x450, 2, "w"))
    assert not dbg.watchpoints and dbg._watch_step_hook is None
    if bios == "emulated":
        session.close()


def test_interrupt_stops_a_running_guest_with_sigint(session):
    s = Session(session.m.config.dispatch, "timer")
    try:
        s.dbg.request(lambda m: s.dbg.cont())
        s.dbg.interrupt()
        event = s.wait_stop()
        assert (event.reason, event.signal) == ("interrupt", 2)
    finally:
        s.close()


@pytest.mark.parametrize("dispatch", DISPATCHERS)
def test_without_a_debugger_no_code_or_memory_hook_is_installed_and_removing_breakpoints_removes_them(
        dispatch):
    """--gdb off costs nothing: the hooks a debugger needs exist only while it uses them."""
    from hv.codepages import exit_checks_enabled
    m = Machine(MachineConfig(fda=DriveSpec(str(guests.image_path("hello")), readonly=True),
                              dispatch=dispatch, timeout=60))
    try:
        base = set(m.vcpu.uc._callbacks)
        assert exit_checks_enabled(m.vcpu.uc) in (False, None)   # None: the switch is unknown
        dbg = m.attach_debugger(start_stopped=False)
        dbg.add_breakpoint(0x7C00)
        dbg.add_watchpoint(0x46C, 2, "w")
        assert len(set(m.vcpu.uc._callbacks) - base) >= 2
        dbg.remove_breakpoint(0x7C00)
        dbg.remove_watchpoint(0x46C, 2, "w")
        assert set(m.vcpu.uc._callbacks) == base
    finally:
        m.close()
