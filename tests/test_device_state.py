"""Device state round trips (machine snapshots): a device driven into any state, saved with
``state()``, loaded into a fresh device with ``load_state()``, behaves exactly as the
original from then on.

Each property test drives a device (direct calls, a clock that moves only when told,
recording interrupt lines) with random register traffic; takes its state through the
snapshot file's JSON encoding; builds a fresh device on a clock set to the same time with
no timers (what ``hv/debug/snapshot.py`` does), with copies of guest memory and disk
images as they were; loads the state; applies the same random continuation to both, and
compares every read, interrupt level and edge count, every output, and the final states.
The board test does the same with whole machines under both dispatchers (the C one serves
registers from its own memory), saving and restoring through real snapshot files.
"""
from __future__ import annotations

import copy
import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hv.clock import Clock
from hv.debug import snapshot
from hv.devices.acpi_pm import AcpiPm
from hv.devices.apic import LocalApic, Reg
from hv.devices.base import RecordingIrq
from hv.devices.cmos import CmosRtc
from hv.devices.console_uart16550 import Uart16550
from hv.devices.debugcon import DebugConsole, PostCode
from hv.devices.disk_floppy import COMMANDS, Fdc82077
from hv.devices.disk_ide import IdeChannel
from hv.devices.disk_store import Disk
from hv.devices.dma8237 import Dma8237
from hv.devices.i8042 import I8042, SystemControlPortA
from hv.devices.imcr import Imcr
from hv.devices.ioapic import IoApic
from hv.devices.irq_router import IsaIrqRouter
from hv.devices.nic_ne2000 import Ne2000
from hv.devices.pic8259 import DualPic8259
from hv.devices.pit8254 import Pit8254
from hv.devices.vga import Vga
from hv.memory import GuestMemory
from tests.devices.harness import ManualClock

MiB = 1 << 20
SETTINGS = dict(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def through_file(state):
    """What a snapshot file gives back: the device's state through the writer's JSON."""
    return snapshot._decode(json.loads(json.dumps(snapshot._encode(state))))


# ---- the round-trip engine ------------------------------------------------------------------

class Env:
    """What a device touches besides its registers: a clock, guest memory, disk images."""

    def __init__(self, workdir: Path, mem_size: int = 0) -> None:
        self.workdir = workdir
        self.clock = ManualClock()
        self.mem = GuestMemory(mem_size) if mem_size else None
        self.images: dict[str, Path] = {}

    def image(self, name: str, data: bytes) -> Path:
        path = self.workdir / name
        path.write_bytes(data)
        self.images[name] = path
        return path

    def restored(self) -> "Env":
        """The environment a restore starts in: the clock at the saved time with every timer
        cleared, guest RAM and the disks as they were at the save."""
        other = Env(Path(tempfile.mkdtemp(dir=self.workdir)))
        other.clock.set_now(self.clock.now())
        if self.mem is not None:
            other.mem = GuestMemory(self.mem.size)
            other.mem.view[:] = self.mem.view
        for name, path in self.images.items():
            other.images[name] = Path(shutil.copy2(path, other.workdir / name))
        return other


class Rig:
    """A device (or a few wired together, in board order) with recording lines and sinks.
    Subclasses build it in ``build`` and give ``apply(op) -> result``; ``PROBE`` is what
    every continuation ends with: reads that show what a lost field would change."""

    PROBE: tuple = ()

    def __init__(self, env: Env, restoring: bool = False) -> None:
        self.env = env
        self.clock = env.clock
        self.lines: dict[str, RecordingIrq] = {}
        self.outputs: dict[str, list] = {}
        self.build(restoring)
        if restoring:
            self.clock.clear_timers()        # as snapshot.apply: devices re-arm their own

    def build(self, restoring: bool) -> None:
        raise NotImplementedError

    def line(self, name: str) -> RecordingIrq:
        return self.lines.setdefault(name, RecordingIrq())

    def output(self, name: str) -> list:
        return self.outputs.setdefault(name, [])

    def devices(self) -> list:
        raise NotImplementedError

    def apply(self, op):
        kind = op[0]
        if kind == "step":
            return self.clock.step(op[1])
        return getattr(self, "op_" + kind)(*op[1:])

    def observe(self) -> dict:
        return {"lines": {n: (line.level, line.edges) for n, line in self.lines.items()},
                "outputs": {n: list(v) for n, v in self.outputs.items()},
                "extra": self.extra()}

    def extra(self):
        return None

    def finish(self):
        """What must be equal at the end besides the states (memory, disks)."""
        out = {}
        if self.env.mem is not None:
            out["ram"] = bytes(self.env.mem.view)
        for name, path in self.env.images.items():
            self.close_disks()
            out[name] = path.read_bytes()
        return out

    def close_disks(self) -> None:
        pass


def since(now: dict, before: dict) -> dict:
    """What changed since ``before``: levels as they are, edge counts and outputs since."""
    lines = {n: (level, edges - before["lines"].get(n, (False, 0))[1])
             for n, (level, edges) in now["lines"].items()}
    outputs = {n: v[len(before["outputs"].get(n, [])):] for n, v in now["outputs"].items()}
    outputs = {n: v for n, v in outputs.items() if v}
    return {"lines": lines, "outputs": outputs, "extra": now["extra"]}


def round_trip(rig_type, workdir: Path, prefix, continuation, **kw) -> None:
    env = Env(Path(tempfile.mkdtemp(dir=workdir)), **kw)
    a = rig_type(env)
    for op in prefix:
        a.apply(op)
    saved = through_file([d.state() for d in a.devices()])
    assert all(s["v"] == 1 for s in saved)
    b = rig_type(env.restored(), restoring=True)
    for dev, state in zip(b.devices(), saved):
        dev.load_state(state)
    base_a, base_b = a.observe(), b.observe()
    for op in [*continuation, *rig_type.PROBE]:
        ra, rb = a.apply(op), b.apply(op)
        assert ra == rb, (op, ra, rb)
        assert since(a.observe(), base_a) == since(b.observe(), base_b), op
    assert through_file([d.state() for d in a.devices()]) == \
        through_file([d.state() for d in b.devices()])
    assert a.finish() == b.finish()


def ops_test(rig_type, ops, tail=None, **kw):
    """A Hypothesis test of ``rig_type``: a random prefix (ending, with ``tail``, in an
    operation left half done: the states a save is most likely to lose), a save, a random
    continuation."""
    ends = st.lists(tail, min_size=1, max_size=2) if tail is not None else st.just([])

    @settings(**SETTINGS)
    @given(prefix=st.lists(ops, max_size=60), ends=ends, continuation=st.lists(ops, max_size=60))
    def test(tmp_path, prefix, ends, continuation):
        round_trip(rig_type, tmp_path, prefix + ends, continuation, **kw)
    return test


byte = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)


def step(hi: int):
    return st.tuples(st.just("step"), st.integers(0, hi))


# ---- 8259 pair -------------------------------------------------------------------------------

class PicRig(Rig):
    PROBE = (("in", 0), ("in", 1), ("in", 0x80), ("in", 0x81), ("out", 1, 0x55), ("in", 1),
             ("out", 0x81, 0x2A), ("in", 0x81), ("out", 0, 0x0B), ("in", 0), ("out", 0, 0x0A),
             ("init", 0, 1, 0x08, 1), ("init", 0x80, 1, 0x70, 1),
             ("requests", (0, 3, 5, 7, 9, 12)), ("inta",), ("inta",), ("inta",))

    def build(self, restoring):
        self.pic = DualPic8259()
        self.pic.on_intr = self.output("intr").append

    def devices(self):
        return [self.pic]

    def op_out(self, offset, value):
        self.pic.write(offset, 1, value)

    def op_in(self, offset):
        return self.pic.read(offset, 1)

    def op_irq(self, irq, level):
        self.pic.line(irq).set_level(level)

    def op_pulse(self, irq):
        self.pic.pulse_irq(irq)

    def op_inta(self):
        return self.pic.acknowledge()

    def op_init(self, chip, icw1, base, icw4):
        for offset, value in ((0, 0x10 | icw1 & 0x0B), (1, base), (1, 4 if chip == 0 else 2),
                              (1, icw4)):
            self.pic.write(chip + offset, 1, value)

    def op_icw1(self, chip, bits):
        self.pic.write(chip, 1, 0x10 | bits & 0x0B)

    def op_rotate(self, chip, command):
        self.pic.write(chip, 1, command)

    def op_requests(self, irqs):
        for irq in irqs:
            self.pic.pulse_irq(irq)
        return [self.pic.acknowledge() for _ in irqs[:2]]

    def extra(self):
        return bool(self.pic.has_interrupt), [line.level for line in self.pic._lines]


PIC_PORTS = st.sampled_from([0, 1, 0x80, 0x81])
PIC_OPS = st.one_of(
    st.tuples(st.just("out"), PIC_PORTS, byte),
    st.tuples(st.just("out"), PIC_PORTS, st.sampled_from([0x0A, 0x0B, 0x0C, 0x20, 0x60, 0x68,
                                                          0xA0, 0xC0, 0xE0, 0x48])),
    st.tuples(st.just("in"), PIC_PORTS),
    st.tuples(st.just("irq"), st.integers(0, 15), st.booleans()),
    st.tuples(st.just("pulse"), st.integers(0, 15)),
    st.tuples(st.just("inta")),
    st.tuples(st.just("init"), st.sampled_from([0, 0x80]), st.integers(0, 0xF),
              st.sampled_from([0x08, 0x70, 0x20]), st.sampled_from([1, 3, 0x11, 0x13])),
)

PIC_TAIL = st.one_of(
    st.tuples(st.just("init"), st.sampled_from([0, 0x80]), st.integers(0, 0xF),
              st.sampled_from([0x08, 0x70]), st.sampled_from([1, 3])),
    st.tuples(st.just("icw1"), st.sampled_from([0, 0x80]), st.integers(0, 0xF)),
    st.tuples(st.just("rotate"), st.sampled_from([0, 0x80]),
              st.one_of(st.integers(0xC0, 0xC7), st.sampled_from([0xA0, 0x80, 0x0B, 0x0E]))),
    st.tuples(st.just("requests"), st.lists(st.integers(0, 15), min_size=1, max_size=6)),
)
PIC_OPS = st.one_of(PIC_OPS, PIC_TAIL)

test_pic_pair_round_trip = ops_test(PicRig, PIC_OPS, PIC_TAIL)


# ---- local APIC ------------------------------------------------------------------------------

class LapicRig(Rig):
    PROBE = (("read", int(Reg.TIMER_CURRENT)), ("step", 300_000), ("read", int(Reg.TIMER_CURRENT)),
             *(("read", int(Reg.IRR) + 0x10 * i) for i in range(8)), ("read", int(Reg.PPR)),
             ("inta",), ("write", int(Reg.ESR), 0), ("read", int(Reg.ESR)))

    def build(self, restoring):
        self.apic = LocalApic(self.clock, pic_acknowledge=lambda: 0x28,
                              on_eoi=self.output("eoi").append,
                              on_change=self.output("intr").append,
                              on_nmi=lambda: self.output("nmi").append(1))

    def devices(self):
        return [self.apic]

    def op_write(self, reg, value):
        self.apic.write(reg, 4, value)

    def op_read(self, reg):
        return self.apic.read(reg, 4)

    def op_receive(self, vector, level):
        self.apic.receive(vector, level)

    def op_lint(self, pin, level):
        (self.apic.pic_intr if pin == 0 else self.apic.lint1)(level)

    def op_inta(self):
        return self.apic.acknowledge() if self.apic.has_interrupt() else None

    def op_base(self, value):
        return self.apic.set_apic_base(value)

    def op_timer(self, divide, lvt, initial):
        for reg, value in ((Reg.SVR, 0x1FF), (Reg.TIMER_DIVIDE, divide), (Reg.LVT_TIMER, lvt),
                           (Reg.TIMER_INITIAL, initial)):
            self.apic.write(reg, 4, value)

    def extra(self):
        return self.apic.has_interrupt(), self.apic.current_count()


APIC_REGS = st.sampled_from([int(r) for r in Reg] + [Reg.ISR + 0x10 * i for i in range(8)]
                            + [Reg.IRR + 0x10 * i for i in range(8)] + [0x2F0, 0x3F0])
APIC_VALUES = st.one_of(u32, st.sampled_from(
    [0x1FF, 0x13F, 0x20030, 0x30, 0x10040, 0x700, 0x8700, 0x0A031, 0x400, 0x4030, 0x40031,
     0x80031, 0xC0031, 0x3, 0xB, 0x0]), st.integers(1, 50_000))
LAPIC_OPS = st.one_of(
    st.tuples(st.just("write"), APIC_REGS, APIC_VALUES),
    st.tuples(st.just("write"), st.just(int(Reg.EOI)), st.just(0)),
    st.tuples(st.just("read"), APIC_REGS),
    st.tuples(st.just("receive"), byte, st.booleans()),
    st.tuples(st.just("lint"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("inta")),
    st.tuples(st.just("base"), st.sampled_from([0xFEE00900, 0xFEE00100, 0xFED00900, 0x1FF])),
    st.tuples(st.just("timer"), st.sampled_from([0, 1, 3, 8, 0xB]),
              st.sampled_from([0x30, 0x20031, 0x10032]), st.integers(1, 20_000)),
    st.tuples(st.just("read"), st.just(int(Reg.TIMER_CURRENT))),
    step(400_000),
    step(400_000),
)

LAPIC_TAIL = st.one_of(
    st.tuples(st.just("timer"), st.sampled_from([0, 3, 0xB]), st.sampled_from([0x30, 0x20031]),
              st.integers(1, 200_000)),
    step(100_000),
)

test_local_apic_round_trip = ops_test(LapicRig, LAPIC_OPS, LAPIC_TAIL)


# ---- I/O APIC ---------------------------------------------------------------------------------

class IoapicRig(Rig):
    def build(self, restoring):
        sent = self.output("messages")
        self.ioapic = IoApic(deliver=lambda *m: sent.append(m), apic_id=2)

    def devices(self):
        return [self.ioapic]

    def op_select(self, reg):
        self.ioapic.write(0, 4, reg)

    def op_write(self, value):
        self.ioapic.write(0x10, 4, value)

    def op_read(self, offset):
        return self.ioapic.read(offset, 4)

    def op_irq(self, pin, level):
        self.ioapic.set_irq(pin, level)

    def op_eoi(self, vector):
        self.ioapic.eoi(vector)


IOAPIC_OPS = st.one_of(
    st.tuples(st.just("select"), st.integers(0, 0x40)),
    st.tuples(st.just("write"), st.one_of(u32, st.sampled_from([0x30, 0x8031, 0xA032, 0x10033,
                                                               0x2030, 0x431, 0x731]))),
    st.tuples(st.just("read"), st.sampled_from([0, 0x10])),
    st.tuples(st.just("irq"), st.integers(0, 23), st.booleans()),
    st.tuples(st.just("eoi"), st.sampled_from([0x30, 0x31, 0x32, 0x33])),
)

test_io_apic_round_trip = ops_test(IoapicRig, IOAPIC_OPS)


# ---- the IMCR and the ISA wires: 8259s, APICs and the fan-out together ---------------------

class _Holder:
    """A device that holds a shared wire (as the NE2000 and the ACPI SCI hold IRQ 9): it
    restores its own hold."""

    def __init__(self, source) -> None:
        self.source = source

    def state(self) -> dict:
        return {"v": 1, "level": self.source.level}

    def load_state(self, state: dict) -> None:
        from hv.devices.state import restore_level
        restore_level(self.source, state["level"])


class WiringRig(Rig):
    """The PC's interrupt path in board order: 8259 pair, local APIC, I/O APIC, IMCR,
    ISA wires (two devices share IRQ 9, as the NE2000 and the ACPI SCI do)."""

    def build(self, restoring):
        self.pic = DualPic8259()
        self.lapic = LocalApic(self.clock, pic_acknowledge=self.pic.acknowledge)
        self.ioapic = IoApic(deliver=self.lapic.deliver_message, apic_id=2)
        self.lapic.on_eoi = self.ioapic.eoi
        self.imcr = Imcr(self.pic, self.lapic)
        self.imcr.on_change = self.output("intr").append
        self.isa = IsaIrqRouter(self.pic, self.ioapic)
        self.shared = [_Holder(self.isa.line(9).source()), _Holder(self.isa.line(9).source())]

    def devices(self):
        return [self.pic, self.lapic, self.ioapic, self.imcr, self.isa, *self.shared]

    def op_imcr(self, offset, value):
        self.imcr.write(offset, 1, value)

    def op_imcr_in(self, offset):
        return self.imcr.read(offset, 1)

    def op_pic(self, offset, value):
        self.pic.write(offset, 1, value)

    def op_init(self):
        for offset, value in ((0, 0x11), (1, 0x08), (1, 4), (1, 1), (0x80, 0x11), (0x81, 0x70),
                              (0x81, 2), (0x81, 1), (1, 0), (0x81, 0)):
            self.pic.write(offset, 1, value)

    def op_apic(self, reg, value):
        self.lapic.write(reg, 4, value)

    def op_ioapic(self, pin, low):
        self.ioapic.write(0, 4, 0x10 + 2 * pin)
        self.ioapic.write(0x10, 4, low)

    def op_wire(self, irq, level):
        self.isa.line(irq).set_level(level)

    def op_pulse(self, irq):
        self.isa.line(irq).pulse()

    def op_share(self, which, level):
        self.shared[which].source.set_level(level)

    def op_inta(self):
        return self.imcr.acknowledge() if self.imcr.has_interrupt() else None

    def op_request(self, irq):
        self.op_init()
        self.isa.line(irq).set_level(True)

    def extra(self):
        return (self.imcr.has_interrupt(), [line.level for line in self.isa._lines],
                bool(self.isa.line(9)._held), self.ioapic.pins)


WIRING_OPS = st.one_of(
    st.tuples(st.just("imcr"), st.integers(0, 1), st.sampled_from([0x70, 0x01, 0x00, 0x71, 0xFF])),
    st.tuples(st.just("imcr_in"), st.integers(0, 1)),
    st.tuples(st.just("pic"), st.sampled_from([1, 0x81]), byte),
    st.tuples(st.just("pic"), st.just(0), st.sampled_from([0x20, 0x0B, 0x0A])),
    st.tuples(st.just("init")),
    st.tuples(st.just("apic"), st.sampled_from([int(Reg.SVR), int(Reg.LVT_LINT0), int(Reg.EOI),
                                                int(Reg.TPR), int(Reg.LVT_TIMER),
                                                int(Reg.TIMER_INITIAL)]),
              st.sampled_from([0x1FF, 0x700, 0x10700, 0, 0x8730, 0x20040, 500, 0x10])),
    st.tuples(st.just("ioapic"), st.sampled_from([1, 2, 4, 9, 14]),
              st.sampled_from([0x31, 0x8032, 0x10033, 0xA034, 0x735])),
    st.tuples(st.just("wire"), st.integers(0, 15), st.booleans()),
    st.tuples(st.just("pulse"), st.integers(0, 15)),
    st.tuples(st.just("share"), st.integers(0, 1), st.booleans()),
    st.tuples(st.just("inta")),
    st.tuples(st.just("request"), st.sampled_from([1, 4, 9, 14])),
    step(2000),
)

test_interrupt_wiring_round_trip = ops_test(WiringRig, WIRING_OPS)


# ---- 8254 PIT and port B -----------------------------------------------------------------------

class PitRig(Rig):
    PROBE = (*(("in", ch) for ch in (0, 0, 0, 1, 1, 2, 2, 2, 0x21)), ("step", 2_000_000),
             *(("in", ch) for ch in (0, 0, 2, 2, 0x21)), ("step", 20_000_000), ("in", 0))

    def build(self, restoring):
        self.pit = Pit8254(self.clock, irq0=self.line("irq0"))

    def devices(self):
        return [self.pit]

    def op_out(self, offset, value):
        self.pit.write(offset, 1, value)

    def op_in(self, offset):
        return self.pit.read(offset, 1)

    def op_program(self, channel, mode, count):
        self.pit.write(3, 1, channel << 6 | 0x30 | mode << 1)
        self.op_reload(channel, count)

    def op_reload(self, channel, count):
        self.pit.write(channel, 1, count & 0xFF)
        self.pit.write(channel, 1, count >> 8)

    def extra(self):
        return self.pit.irq_count, self.pit.lost_ticks


PIT_OPS = st.one_of(
    st.tuples(st.just("out"), st.sampled_from([0, 1, 2, 0x21]), byte),
    st.tuples(st.just("out"), st.just(3), st.one_of(byte, st.sampled_from(
        [0x34, 0x36, 0x30, 0x32, 0x14, 0x24, 0xB6, 0xB0, 0x76, 0x00, 0x40, 0xC2, 0xDE, 0xE2]))),
    st.tuples(st.just("out"), st.sampled_from([0, 2]), st.sampled_from([0, 1, 2, 3, 0x10])),
    st.tuples(st.just("in"), st.sampled_from([0, 1, 2, 0x21])),
    st.tuples(st.just("program"), st.sampled_from([0, 0, 2]), st.integers(0, 5),
              st.sampled_from([2, 3, 100, 1193, 5000, 0])),
    step(3_000_000),
    step(3_000_000),
)

PIT_TAIL = st.one_of(
    st.tuples(st.just("in"), st.sampled_from([0, 2])),
    st.tuples(st.just("reload"), st.sampled_from([0, 2]), st.sampled_from([2, 3, 999, 4000])),
    st.tuples(st.just("out"), st.just(3), st.sampled_from([0x00, 0x80, 0xC2, 0xE8, 0xD2])),
    st.tuples(st.just("out"), st.just(0x21), st.sampled_from([0, 1, 3])),
)
PIT_OPS = st.one_of(PIT_OPS, PIT_TAIL)

test_pit_round_trip = ops_test(PitRig, PIT_OPS, PIT_TAIL)


# ---- 16550A UART ----------------------------------------------------------------------------------

class UartRig(Rig):
    def build(self, restoring):
        self.uart = Uart16550(irq=self.line("irq4"), sink=self.output("tx").append,
                              clock=self.clock)

    def devices(self):
        return [self.uart]

    def op_out(self, offset, value):
        self.uart.write(offset, 1, value)

    def op_in(self, offset):
        return self.uart.read(offset, 1)

    def op_receive(self, data):
        self.uart.receive(data)

    def op_brk(self):
        self.uart.receive_break()

    def op_modem(self, cts, dsr, ri, dcd):
        self.uart.set_modem_inputs(cts, dsr, ri, dcd)


UART_OPS = st.one_of(
    st.tuples(st.just("out"), st.integers(0, 7), byte),
    st.tuples(st.just("out"), st.just(2), st.sampled_from([0x01, 0x07, 0xC1, 0x41, 0x00])),
    st.tuples(st.just("out"), st.just(1), st.sampled_from([0x01, 0x02, 0x0F, 0x05])),
    st.tuples(st.just("out"), st.just(4), st.sampled_from([0x08, 0x0B, 0x1B, 0x10])),
    st.tuples(st.just("in"), st.integers(0, 7)),
    st.tuples(st.just("receive"), st.binary(max_size=20)),
    st.tuples(st.just("brk")),
    st.tuples(st.just("modem"), st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    step(8_000_000),
)

test_uart_round_trip = ops_test(UartRig, UART_OPS)


# ---- CMOS / RTC -------------------------------------------------------------------------------------

class CmosRig(Rig):
    def build(self, restoring):
        self.cmos = CmosRtc(self.clock, irq=self.line("irq8"), host_time=lambda: 1767225600.0)

    def devices(self):
        return [self.cmos]

    def op_out(self, offset, value):
        self.cmos.write(offset, 1, value)

    def op_in(self, offset):
        return self.cmos.read(offset, 1)

    def op_reg(self, index, value):
        self.cmos.write(0, 1, index)
        self.cmos.write(1, 1, value)


CMOS_OPS = st.one_of(
    st.tuples(st.just("out"), st.integers(0, 1), byte),
    st.tuples(st.just("in"), st.just(1)),
    st.tuples(st.just("reg"), st.sampled_from([0x0A, 0x0B]),
              st.sampled_from([0x26, 0x2F, 0x23, 0x42, 0x52, 0x22, 0x12, 0x86, 0x06, 0x72])),
    st.tuples(st.just("reg"), st.integers(0, 0x7F), byte),
    st.tuples(st.just("out"), st.just(0), st.sampled_from([0x0C, 0x00, 0x0A, 0x8C])),
    step(1_500_000_000),
)

test_cmos_round_trip = ops_test(CmosRig, CMOS_OPS)


# ---- 8042 and port 0x92 -------------------------------------------------------------------------

class KbdRig(Rig):
    def build(self, restoring):
        self.kbd = I8042(irq1=self.line("irq1"), irq12=self.line("irq12"),
                         on_a20=self.output("a20").append,
                         on_reset=lambda: self.output("reset").append(1))
        self.port92 = SystemControlPortA(on_a20=self.output("a20").append,
                                         on_reset=lambda: self.output("reset").append(92))

    def devices(self):
        return [self.kbd, self.port92]

    def op_out(self, offset, value):
        self.kbd.write(offset, 1, value)

    def op_in(self, offset):
        return self.kbd.read(offset, 1)

    def op_press(self, codes):
        self.kbd.press(codes)

    def op_kbd_cmd(self, cmd):
        self.kbd.write(0, 1, cmd)
        return self.kbd.read(0, 1)

    def op_p92(self, value):
        self.port92.write(0, 1, value)

    def op_p92_in(self):
        return self.port92.read(0, 1)


KBD_OPS = st.one_of(
    st.tuples(st.just("out"), st.just(4), st.one_of(byte, st.sampled_from(
        [0x20, 0x60, 0xAA, 0xAB, 0xAD, 0xAE, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xDD, 0xDF, 0xA7]))),
    st.tuples(st.just("out"), st.just(0), st.one_of(byte, st.sampled_from(
        [0xED, 0xEE, 0xF0, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xFE, 0xFF, 0x00, 0x01, 0x02]))),
    st.tuples(st.just("in"), st.sampled_from([0, 4])),
    st.tuples(st.just("in"), st.just(0)),
    st.tuples(st.just("press"), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("kbd_cmd"), st.sampled_from([0xED, 0xF0, 0xF3])),
    st.tuples(st.just("out"), st.just(0), st.sampled_from([0x00, 0x02, 0x07])),
    st.tuples(st.just("p92"), byte),
    st.tuples(st.just("p92_in")),
)

test_keyboard_controller_and_port_92_round_trip = ops_test(KbdRig, KBD_OPS)


# ---- VGA -----------------------------------------------------------------------------------------------

class VgaRig(Rig):
    def build(self, restoring):
        if not restoring:
            self.env.vram = bytearray(0x20000)
        else:
            self.env.vram = bytearray(self.env.vram)
        self.vga = Vga(memoryview(self.env.vram), self.clock)

    def devices(self):
        return [self.vga]

    def op_out(self, offset, value):
        self.vga.write(offset, 1, value)

    def op_in(self, offset):
        return self.vga.read(offset, 1)

    def op_mode(self, mode):
        return self.vga.set_mode(mode)

    def op_dac(self, port, index, values):
        self.vga.write(port, 1, index)
        for v in values:
            self.vga.write(0x09, 1, v)

    def op_dac_in(self, count):
        return [self.vga.read(0x09, 1) for _ in range(count)]

    def op_text(self, at, data):
        self.env.vram[0x18000 + at:0x18000 + at + len(data)] = data

    def extra(self):
        return self.vga.text_rows(), self.vga.cursor(), self.vga.is_graphics()


class _VgaEnv(Env):
    def restored(self):
        other = super().restored()
        other.vram = self.vram
        return other


VGA_OPS = st.one_of(
    st.tuples(st.just("out"), st.integers(0, 0x1F), byte),
    st.tuples(st.just("out"), st.sampled_from([0x04, 0x0E, 0x14]), st.integers(0, 0x1F)),
    st.tuples(st.just("in"), st.integers(0, 0x1F)),
    st.tuples(st.just("mode"), st.sampled_from([0x03, 0x13, 0x83, 0x05])),
    st.tuples(st.just("dac"), st.sampled_from([0x07, 0x08]), byte, st.lists(byte, max_size=5)),
    st.tuples(st.just("dac_in"), st.integers(1, 5)),
    st.tuples(st.just("text"), st.integers(0, 3000), st.binary(max_size=40)),
    step(20_000_000),
)


@settings(**SETTINGS)
@given(prefix=st.lists(VGA_OPS, max_size=60), continuation=st.lists(VGA_OPS, max_size=60))
def test_vga_round_trip(tmp_path, prefix, continuation):
    env = _VgaEnv(Path(tempfile.mkdtemp(dir=tmp_path)))
    a = VgaRig(env)
    for op in prefix:
        a.apply(op)
    saved = through_file([a.vga.state()])
    b = VgaRig(env.restored(), restoring=True)   # video memory is RAM: copied with it
    b.vga.load_state(saved[0])
    for op in continuation:
        assert a.apply(op) == b.apply(op), op
        assert a.extra() == b.extra()
    assert a.vga.render() == b.vga.render()
    assert through_file(a.vga.state()) == through_file(b.vga.state())


# ---- debug console, POST port, ACPI PM ------------------------------------------------------------

class DiagRig(Rig):
    def build(self, restoring):
        self.debugcon = DebugConsole(self.output("e9").append)
        self.post = PostCode()
        self.pm = AcpiPm(self.clock, sci=self.line("sci"),
                         poweroff=lambda: self.output("off").append(1))

    def devices(self):
        return [self.debugcon, self.post, self.pm]

    def op_e9(self, value):
        self.debugcon.write(0, 1, value)

    def op_post(self, value):
        self.post.write(0, 1, value)

    def op_post_in(self):
        return self.post.read(0, 1), list(self.post.codes)

    def op_pm(self, offset, size, value):
        self.pm.write(offset, size, value)

    def op_pm_in(self, offset, size):
        return self.pm.read(offset, size)


DIAG_OPS = st.one_of(
    st.tuples(st.just("e9"), byte),
    st.tuples(st.just("post"), byte),
    st.tuples(st.just("post_in")),
    st.tuples(st.just("pm"), st.integers(0, 11), st.sampled_from([1, 2, 4]), st.one_of(
        u32, st.sampled_from([1, 0x21, 0x121, 0x2000 | 3 << 10, 0x2000 | 5 << 10, 0x1]))),
    st.tuples(st.just("pm_in"), st.integers(0, 11), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("pm"), st.just(0), st.just(2), st.just(1)),
    st.tuples(st.just("pm_in"), st.just(0), st.just(2)),
    step(3_000_000_000),
    step(3_000_000_000),
)

test_debug_console_post_and_acpi_pm_round_trip = ops_test(DiagRig, DIAG_OPS)


# ---- 8237 DMA -------------------------------------------------------------------------------------------

class DmaRig(Rig):
    def build(self, restoring):
        self.dma = Dma8237(self.env.mem)

    def devices(self):
        return [self.dma]

    def op_out(self, port, value):
        self.dma.write(port, 1, value)

    def op_in(self, port):
        return self.dma.read(port, 1)

    def op_to_mem(self, channel, data):
        return self.dma.write_to_memory(channel, data), self.dma.terminal_count(channel)

    def op_from_mem(self, channel, length):
        return self.dma.read_from_memory(channel, length), self.dma.terminal_count(channel)

    def op_program(self, channel, addr, count, mode):
        base = 0 if channel < 4 else 0xC0
        shift = 0 if channel < 4 else 1
        reg = channel & 3
        self.dma.write(base + (0x0A << shift), 1, 4 | reg)
        self.dma.write(base + (0x0C << shift), 1, 0)
        self.dma.write(base + ((2 * reg) << shift), 1, addr & 0xFF)
        self.dma.write(base + ((2 * reg) << shift), 1, addr >> 8 & 0xFF)
        self.dma.write(base + ((2 * reg + 1) << shift), 1, count & 0xFF)
        self.dma.write(base + ((2 * reg + 1) << shift), 1, count >> 8 & 0xFF)
        self.dma.write(base + (0x0B << shift), 1, mode | reg)
        self.dma.write(base + (0x0A << shift), 1, reg)


DMA_PORTS = st.sampled_from(list(range(0x10)) + list(range(0x81, 0x90)) + list(range(0xC0, 0xE0)))
DMA_OPS = st.one_of(
    st.tuples(st.just("out"), DMA_PORTS, byte),
    st.tuples(st.just("in"), DMA_PORTS),
    st.tuples(st.just("program"), st.sampled_from([1, 2, 3, 5, 6]), st.integers(0, 0xFFFF),
              st.integers(0, 600), st.sampled_from([0x44, 0x48, 0x54, 0x64, 0x40, 0x84])),
    st.tuples(st.just("out"), st.sampled_from([0x81, 0x82, 0x83, 0x89]), st.integers(0, 0x0F)),
    st.tuples(st.just("to_mem"), st.integers(0, 7), st.binary(max_size=300)),
    st.tuples(st.just("from_mem"), st.integers(0, 7), st.integers(0, 300)),
)

test_dma_round_trip = ops_test(DmaRig, DMA_OPS, mem_size=MiB)


# ---- 82077AA floppy controller (with its DMA channel and a disk) -------------------------------------

FLOPPY_BYTES = bytes((i * 7 + (i >> 9)) & 0xFF for i in range(163840))


class FdcRig(Rig):
    def build(self, restoring):
        if not restoring:
            self.env.image("fd.img", FLOPPY_BYTES)
        self.disk = Disk(self.env.images["fd.img"], "floppy")
        self.dma = Dma8237(self.env.mem)
        self.fdc = Fdc82077(irq=self.line("irq6"), dma=self.dma, drives=(self.disk, None))

    def devices(self):
        return [self.dma, self.fdc]

    def close_disks(self):
        self.disk.close()

    def op_out(self, offset, value):
        self.fdc.write(offset, 1, value)

    def op_in(self, offset):
        return self.fdc.read(offset, 1)

    def op_cmd(self, opcode, params):
        for value in (opcode, *params):
            self.fdc.write(5, 1, value)

    def op_drain(self, n):
        return [self.fdc.read(5, 1) for _ in range(n)]

    def op_fill(self, n, value):
        for _ in range(n):
            self.fdc.write(5, 1, value)

    op_program = DmaRig.op_program

    def op_seek(self, ds, cylinder):
        self.op_cmd(0x0F, (ds, cylinder))

    def op_pio_read(self, r, eot):
        self.op_cmd(0x03, (0xAF, 0x03))                  # SPECIFY: non-DMA
        self.op_cmd(0x46, (0, 0, 0, r, 2, eot, 0x1B, 0xFF))


def _fdc_command():
    cmd = st.sampled_from(COMMANDS)
    return cmd.flatmap(lambda c: st.tuples(
        st.just("cmd"), st.integers(0, 0xFF).map(lambda m: c.opcode | (m & c.modifiers)),
        st.lists(st.one_of(st.integers(0, 3), byte), min_size=c.length - 1,
                 max_size=c.length - 1)))


FDC_OPS = st.one_of(
    st.tuples(st.just("out"), st.sampled_from([2, 4, 7]), st.one_of(byte, st.sampled_from(
        [0x0C, 0x1C, 0x08, 0x00, 0x04, 0x02, 0x80]))),
    st.tuples(st.just("in"), st.sampled_from([0, 1, 2, 3, 4, 5, 7])),
    _fdc_command(),
    st.tuples(st.just("cmd"), st.just(0x03), st.tuples(byte, st.sampled_from([0, 1, 2, 3]))),
    st.tuples(st.just("cmd"), st.sampled_from([0xE6, 0xC5, 0x46, 0x45, 0x4D]),
              st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(0, 1),
                        st.integers(1, 18), st.just(2), st.integers(1, 18), st.just(0x1B),
                        st.just(0xFF))),
    st.tuples(st.just("seek"), st.integers(0, 1), st.integers(0, 5)),
    st.tuples(st.just("pio_read"), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.just("cmd"), st.just(0x08), st.just(())),
    st.tuples(st.just("drain"), st.integers(1, 600)),
    st.tuples(st.just("fill"), st.integers(1, 600), byte),
    st.tuples(st.just("program"), st.just(2), st.integers(0, 0xFFFF), st.integers(0, 1100),
              st.sampled_from([0x46, 0x4A, 0x56])),
)

test_floppy_controller_round_trip = ops_test(FdcRig, FDC_OPS, mem_size=MiB)


# ---- IDE channel -----------------------------------------------------------------------------------

HD_BYTES = bytes((i * 13 + (i >> 9) * 7) & 0xFF for i in range(300 * 512))


class IdeRig(Rig):
    def build(self, restoring):
        if not restoring:
            self.env.image("hd0.img", HD_BYTES)
            self.env.image("hd1.img", HD_BYTES[:40 * 512])
        self.disks = [Disk(self.env.images["hd0.img"], "hd"), Disk(self.env.images["hd1.img"], "hd")]
        self.ide = IdeChannel(self.line("irq14"), drives=tuple(self.disks))

    def devices(self):
        return [self.ide]

    def close_disks(self):
        for d in self.disks:
            d.close()

    def op_out(self, offset, value):
        self.ide.write(offset, 1, value)

    def op_in(self, offset):
        return self.ide.read(offset, 1)

    def op_data_in(self, words, size):
        return [self.ide.read(0, size) for _ in range(words)]

    def op_data_out(self, words, size, seed):
        for i in range(words):
            self.ide.write(0, size, (seed * (i + 1) * 0x9E3779B1) & ((1 << (8 * size)) - 1))

    def op_cmd(self, dev, lba, count, command):
        for offset, value in ((6, 0xE0 | dev << 4 | lba >> 24 & 0xF), (2, count), (3, lba & 0xFF),
                              (4, lba >> 8 & 0xFF), (5, lba >> 16 & 0xFF), (7, command)):
            self.ide.write(offset, 1, value)

    def op_partial(self, dev, lba, count, command, words):
        """A command whose data phase is left part done (multiple mode set first)."""
        self.op_cmd(dev, 0, 4, 0xC6)
        self.op_cmd(dev, lba, count, command)
        if command in (0x30, 0xC5):
            self.op_data_out(words, 2, lba + 1)
            return None
        return self.op_data_in(words, 2)


IDE_OPS = st.one_of(
    st.tuples(st.just("out"), st.integers(1, 8), byte),
    st.tuples(st.just("out"), st.just(8), st.sampled_from([0x00, 0x02, 0x04, 0x06])),
    st.tuples(st.just("in"), st.integers(1, 8)),
    st.tuples(st.just("cmd"), st.integers(0, 1), st.integers(0, 320), st.integers(0, 20),
              st.sampled_from([0x20, 0x30, 0xC4, 0xC5, 0xC6, 0xEC, 0x91, 0xE7, 0x40, 0x70,
                               0xEF, 0xE5, 0x90, 0xE0, 0x00])),
    st.tuples(st.just("cmd"), st.integers(0, 1), st.integers(0, 40), st.integers(0, 3),
              st.sampled_from([0x20, 0x30, 0xC4, 0xC5])),
    st.tuples(st.just("data_in"), st.integers(1, 300), st.sampled_from([2, 4])),
    st.tuples(st.just("data_in"), st.integers(1, 100), st.just(2)),
    st.tuples(st.just("data_out"), st.integers(1, 300), st.sampled_from([2, 4]), u32),
)

IDE_TAIL = st.one_of(
    st.tuples(st.just("partial"), st.integers(0, 1), st.integers(0, 40), st.integers(1, 20),
              st.sampled_from([0x20, 0xC4, 0x30, 0xC5, 0xEC]), st.integers(1, 600)),
)

test_ide_channel_round_trip = ops_test(IdeRig, st.one_of(IDE_OPS, IDE_TAIL), IDE_TAIL)


# ---- NE2000 ---------------------------------------------------------------------------------------

class _Port:
    def __init__(self, sent: list) -> None:
        self.sent = sent

    def send(self, frame: bytes) -> None:
        self.sent.append(bytes(frame))


class NicRig(Rig):
    def build(self, restoring):
        self.nic = Ne2000(irq=self.line("irq9"), port=_Port(self.output("sent")))

    def devices(self):
        return [self.nic]

    def op_out(self, offset, value):
        self.nic.write(offset, 1, value)

    def op_in(self, offset):
        return self.nic.read(offset, 1)

    def op_dout(self, size, count, seed):
        for i in range(count):
            self.nic.write(0x10, size, (seed + i * 0x01010101) & ((1 << (8 * size)) - 1))

    def op_din(self, size, count):
        return [self.nic.read(0x10, size) for _ in range(count)]

    def op_reset(self):
        return self.nic.read(0x1F, 1)

    def op_rx(self, length, dest, seed):
        frame = dest + bytes((seed + i) & 0xFF for i in range(max(0, length - 6)))
        return self.nic.receive(frame), self.nic.can_receive()

    def op_setup(self, word):
        for offset, value in ((0, 0x21), (0x0E, 0x48 | word), (0x0A, 0), (0x0B, 0), (0x0C, 0x1C),
                              (0x0D, 0), (0x01, 0x46), (0x02, 0x60), (0x03, 0x46), (0x0F, 0xFF),
                              (0x07, 0xFF), (0, 0x61), (0x07, 0x47), (0x01, 0x52), (0, 0x22)):
            self.nic.write(offset, 1, value)

    def op_remote(self, addr, count, cmd):
        for offset, value in ((0x08, addr & 0xFF), (0x09, addr >> 8), (0x0A, count & 0xFF),
                              (0x0B, count >> 8), (0, cmd)):
            self.nic.write(offset, 1, value)


NIC_OPS = st.one_of(
    st.tuples(st.just("setup"), st.integers(0, 1)),
    st.tuples(st.just("out"), st.integers(0, 0x0F), byte),
    st.tuples(st.just("out"), st.just(0), st.sampled_from([0x22, 0x26, 0x62, 0xA2, 0xE2, 0x21, 0x1A])),
    st.tuples(st.just("in"), st.one_of(st.integers(0, 0x0F), st.just(0x1F))),
    st.tuples(st.just("remote"), st.sampled_from([0x4600, 0x4601, 0x5000, 0x5FFE, 0x0000]),
              st.integers(0, 700), st.sampled_from([0x0A, 0x12, 0x1A, 0x22, 0x26])),
    st.tuples(st.just("dout"), st.sampled_from([1, 2, 4]), st.integers(1, 200), u32),
    st.tuples(st.just("din"), st.sampled_from([1, 2, 4]), st.integers(1, 200)),
    st.tuples(st.just("reset")),
    st.tuples(st.just("rx"), st.integers(6, 1514),
              st.sampled_from([b"\xff" * 6, b"\x00\x00\x00\x00\x00\x00", b"\x01\x00\x5e\x00\x00\x01"]),
              byte),
)

test_ne2000_round_trip = ops_test(NicRig, NIC_OPS)


# ---- every device refuses a state of another format version ---------------------------------------

def _board_devices(full: bool = False):
    """A PC; ``full``: with every optional device too (virtio-blk and -net, the NE2000 on a
    network, a floppy and a hard disk), so each device model's state is checked."""
    from hv import guests
    from hv.machine import DriveSpec, Machine, MachineConfig
    kw = {}
    if full:
        image = str(guests.image_path("hello"))
        kw = dict(fda=DriveSpec(image, snapshot=True), hda=DriveSpec(image, snapshot=True),
                  vda=DriveSpec(image, snapshot=True), net="user", virtio_net="user",
                  balloon_target=MiB // 4)
    return Machine(MachineConfig(mem_size=MiB, clock="virtual", **kw))


@pytest.mark.parametrize("full", [False, True])
def test_every_board_device_refuses_a_state_of_another_version(full):
    m = _board_devices(full)
    try:
        for dev in m.devices:
            state = dev.state()
            assert state["v"] == 1
            with pytest.raises(ValueError, match="version"):
                dev.load_state({**state, "v": 2})
    finally:
        m.close()


@pytest.mark.parametrize("full", [False, True])
def test_a_damaged_state_is_a_value_error_never_a_host_exception(full):
    m = _board_devices(full)
    try:
        for dev in m.devices:
            state = through_file(dev.state())
            for key in [k for k in state if k != "v"]:
                for bad in (None, -1, 1 << 70, "x", [1] * 40, {"a": 1}, b"\0" * 3):
                    damaged = {**state, key: bad}
                    try:
                        dev.load_state(damaged)
                    except ValueError:
                        pass
                    dev.load_state(state)        # and the device is whole again
            assert through_file(dev.state()) == state, dev.name
    finally:
        m.close()


def test_an_ide_data_phase_past_the_sector_buffer_is_refused():
    m = _board_devices()
    try:
        state = m.ide0.state()
        unit = dict(state["units"][0], rd_end=1 << 20, pos=0)
        with pytest.raises(ValueError):
            m.ide0.load_state({**state, "units": [unit, state["units"][1]]})
    finally:
        m.close()


# ---- virtio-mmio with virtio-blk and virtio-console, driven by the mock driver ---------------------

VIRTIO_BASE = 0xD0000
BLK_HDR = struct.Struct("<IIQ")                   # type, reserved, sector


class VirtioSide:
    """One transport with its device, guest memory, a disk image and a mock driver."""

    def __init__(self, workdir: Path, mem: GuestMemory, image: Path, driver=None) -> None:
        from hv.devices.console_virtio import VirtioConsole
        from hv.devices.disk_virtio import VirtioBlk
        from hv.virtio import VirtioMmio
        from hv.virtio.testing import MockDriver
        self.mem, self.image = mem, image
        self.disk = Disk(image, "hd")
        self.blk_irq, self.con_irq, self.out = RecordingIrq(), RecordingIrq(), []
        self.blk = VirtioMmio(VirtioBlk(self.disk), mem, self.blk_irq, VIRTIO_BASE)
        self.console = VirtioConsole(sink=self.out.append)
        self.con = VirtioMmio(self.console, mem, self.con_irq, VIRTIO_BASE + 0x1000)
        if driver is None:
            self.drv = MockDriver(self.blk, mem, heap=0x10000, heap_end=0x50000)
            self.cdrv = MockDriver(self.con, mem, heap=0x50000, heap_end=0x90000)
            self.drv.init()
            self.cdrv.init()
        else:
            # The driver's own bookkeeping (free descriptors, indexes) as the saved side's,
            # pointed at this side's transports and memory.
            self.drv, self.cdrv = driver

    def clone_drivers(self, other: "VirtioSide"):
        memo = {id(self.blk): other.blk, id(self.con): other.con, id(self.mem): other.mem}
        return copy.deepcopy((self.drv, self.cdrv), memo)

    def apply(self, op):
        kind = op[0]
        q = self.drv.queues[0]
        if kind == "write" and len(q.free) >= 3:
            _, lba, n, fill = op
            return q.add(readable=[BLK_HDR.pack(1, 0, lba), bytes([fill]) * 512 * n],
                         writable=[1])
        if kind == "read" and len(q.free) >= 3:
            _, lba, n = op
            return q.add(readable=[BLK_HDR.pack(0, 0, lba)], writable=[512 * n, 1])
        if kind == "kick":
            return self.drv.kick(0)
        if kind == "used":
            return [tuple(u) for u in q.used()] + [tuple(u) for u in
                                                    self.cdrv.queues[0].used()]
        if kind == "ack":
            return self.drv.ack_interrupt(), self.cdrv.ack_interrupt()
        if kind == "rx_buffer" and self.cdrv.queues[0].free:
            return self.cdrv.queues[0].add(writable=[op[1]])
        if kind == "host_input":
            return self.console.receive(op[1])
        if kind == "tx" and self.cdrv.queues[1].free:
            self.cdrv.queues[1].add(readable=[op[1]])
            return self.cdrv.kick(1)
        if kind == "rx_kick":
            return self.cdrv.kick(0)
        return None

    def observe(self):
        return (self.blk_irq.level, self.blk_irq.edges, self.con_irq.level, self.con_irq.edges,
                list(self.out))

    def close(self):
        self.disk.close()


VIRTIO_OPS = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 60), st.integers(1, 4), byte),
    st.tuples(st.just("read"), st.integers(0, 60), st.integers(1, 4)),
    st.tuples(st.just("kick")), st.tuples(st.just("used")), st.tuples(st.just("ack")),
    st.tuples(st.just("rx_buffer"), st.integers(1, 64)),
    st.tuples(st.just("host_input"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("tx"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("rx_kick")),
)


@settings(**SETTINGS)
@given(prefix=st.lists(VIRTIO_OPS, max_size=40), continuation=st.lists(VIRTIO_OPS, max_size=40))
def test_virtio_blk_and_console_round_trip(tmp_path, prefix, continuation):
    """Chains published but not yet kicked, completions not yet collected, interrupts not
    yet acknowledged, console input waiting for buffers: all carried across."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    image = work / "a.img"
    image.write_bytes(bytes(range(256)) * 2 * 64)
    a = VirtioSide(work, GuestMemory(MiB), image)
    try:
        for op in prefix:
            a.apply(op)
        saved = through_file([a.blk.state(), a.con.state()])
        a.disk.flush()
        mem = GuestMemory(MiB)
        mem.view[:] = a.mem.view
        copy_path = Path(shutil.copy2(image, work / "b.img"))
        b = VirtioSide(work, mem, copy_path, driver=(None, None))
        b.drv, b.cdrv = a.clone_drivers(b)
        b.blk.load_state(saved[0])
        b.con.load_state(saved[1])
        b.out.extend(a.out)
        assert b.observe()[::2] == a.observe()[::2]          # levels and output
        base_a, base_b = a.observe(), b.observe()
        for op in [*continuation, ("kick",), ("rx_kick",), ("used",), ("ack",)]:
            assert a.apply(op) == b.apply(op), op
            oa, ob = a.observe(), b.observe()
            assert (oa[0], oa[1] - base_a[1], oa[2], oa[3] - base_a[3], oa[4]) == \
                (ob[0], ob[1] - base_b[1], ob[2], ob[3] - base_b[3], ob[4]), op
        assert through_file([a.blk.state(), a.con.state()]) == \
            through_file([b.blk.state(), b.con.state()])
        assert bytes(a.mem.view) == bytes(b.mem.view)
        a.close()
        b.close()
        assert image.read_bytes() == copy_path.read_bytes()
    finally:
        a.close()
