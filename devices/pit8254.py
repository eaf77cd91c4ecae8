"""Intel 8254 programmable interval timer, plus the PC's system control port B.

Names follow the 8254 datasheet: CR (count register, what the CPU writes), CE
(counting element), OL (output latch), the control word fields SC/RW/M/BCD, the
counter latch and read-back commands, and the status byte (OUTPUT, NULL COUNT).

Nothing ticks. Each counter remembers the CLK tick at which its CE was loaded;
the count and the OUT pin are computed from ``clock.now()`` whenever they are
read, so successive reads count down. Only channel 0's OUT is wired to an
interrupt (IRQ 0, edge-triggered at the PIC): its next rising edge is one
``clock.at`` Timer, re-armed in its own callback from the current time. If the
host fell behind, the callback fires once and the missed edges are counted in
``lost_ticks`` instead of being replayed.

Timing detail: a count written at tick t is loaded into CE on the next CLK
pulse (t+1), as the datasheet's mode diagrams show; mode 0 therefore raises
OUT N+1 ticks after the write, and modes 2/3 give a period of exactly N ticks.

PC wiring: GATE0/GATE1 are tied high; GATE2 and the speaker data enable come
from port 0x61 (offset 0x21 here), which also shows OUT2 and the refresh toggle.
"""
from __future__ import annotations

from hv.devices import state as st
from hv.devices.base import IrqLine, NullIrq, PortRange, SharedStateDevice
from hv.clock import NS_PER_S, Clock, Timer

PIT_HZ = 1_193_182          # the PC's 14.31818 MHz crystal / 12

# Port offsets.
COUNTER0, COUNTER1, COUNTER2, CONTROL = 0, 1, 2, 3
PORT_B = 0x21               # system control port B (0x61)

# Control word fields.
CW_BCD = 0x01
CW_M_SHIFT = 1              # M2 M1 M0 in D3-D1
CW_RW_SHIFT = 4             # RW1 RW0 in D5-D4
CW_SC_SHIFT = 6             # SC1 SC0 in D7-D6
SC_READ_BACK = 3
RW_LATCH = 0                # counter latch command
RW_LSB, RW_MSB, RW_LSB_MSB = 1, 2, 3

# Read-back command bits (active low /COUNT, /STATUS).
RB_CNT0, RB_CNT1, RB_CNT2 = 0x02, 0x04, 0x08
RB_NOT_STATUS = 0x10
RB_NOT_COUNT = 0x20

# Status byte.
STATUS_OUTPUT = 0x80
STATUS_NULL_COUNT = 0x40

# Port B bits.
PORTB_GATE2 = 0x01          # timer 2 gate
PORTB_SPKR_DATA = 0x02      # speaker data enable (AND with OUT2)
PORTB_WRITABLE = 0x0F       # bits 2-3: parity/IOCHK check enables (stored only)
PORTB_REFRESH = 0x10        # toggles with every DRAM refresh request
PORTB_OUT2 = 0x20
REFRESH_NS = 15_085         # channel 1's BIOS setting: count 18 = 15.085 us

# Modes 6 and 7 are 2 and 3 (M2 is "don't care").
MODE_ALIAS = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 2, 7: 3}
GATE_TRIGGERED = (1, 5)
PERIODIC = (2, 3)


def ticks_at(ns: int) -> int:
    return ns * PIT_HZ // NS_PER_S


def ns_at(tick: int) -> int:
    """The first nanosecond at which ``tick`` has happened."""
    return -(-tick * NS_PER_S // PIT_HZ)


def _to_bcd(n: int) -> int:
    n %= 10000
    return (n // 1000) << 12 | (n // 100 % 10) << 8 | (n // 10 % 10) << 4 | n % 10


def _from_bcd(v: int) -> int:
    # Hostile digits above 9 are weighted as written; nothing can raise.
    return (v >> 12 & 15) * 1000 + (v >> 8 & 15) * 100 + (v >> 4 & 15) * 10 + (v & 15)


class _CountState:
    """What a counter read needs: plain attributes here; with the C fast path bound,
    the fields of an ``hv_pit_chan`` struct in C memory, from which C answers
    counter reads itself (the read flip-flop then advances in one place)."""

    __slots__ = ("mode", "rw", "load", "n", "msb_next", "valid")

    def __init__(self) -> None:
        self.mode = self.rw = self.load = self.n = self.msb_next = self.valid = 0


def _shared(name: str, flag: bool = False) -> property:
    def get(self):
        value = getattr(self._state, name)
        return bool(value) if flag else value

    def put(self, value) -> None:
        setattr(self._state, name, int(value))
    return property(get, put)


class Counter:
    """One counter; every method takes the current CLK tick ``t``."""

    mode = _shared("mode")
    rw = _shared("rw")
    load = _shared("load")             # tick at which CE held the full count
    n = _shared("n")                   # full count in CLK units (0 -> 65536/10000)
    read_msb_next = _shared("msb_next", flag=True)

    def __init__(self, index: int) -> None:
        self.index = index
        self._state = _CountState()
        self.reset()

    def share(self, cstruct) -> None:
        """Move the count state into ``cstruct`` (an ``hv_pit_chan``) for the C side."""
        for name in _CountState.__slots__:
            setattr(cstruct, name, getattr(self._state, name))
        self._state = cstruct

    def reset(self) -> None:
        # Power-on: unprogrammed. No count, no OUT edge, reads as 0.
        self.programmed = False
        self.mode_bits = 0        # M2-M0 as written (status shows them)
        self.mode = 0
        self.rw = 0
        self.bcd = False
        self.cr = 0
        self.cr_lsb = 0
        self.write_msb_next = False
        self.read_msb_next = False
        self.ol: int | None = None        # latched count
        self.ol_reads_left = 0
        self.status_latch: int | None = None
        self.gate = self.index != 2       # GATE0/1 tied high on the PC
        self.armed = False                # CE loaded and counting
        self.load = 0
        self.n = 0
        self.frozen: int | None = None    # elapsed ticks while the gate holds counting
        self.idle_count = 0
        self.idle_out = False
        self.null_until: int | None = None  # NULL COUNT clears at this tick
        # A count rewritten in mode 2/3 takes effect at a period/half-cycle
        # boundary: (switch tick, new load, new n).
        self.pending: tuple[int, int, int] | None = None

    # ---- derived state ---------------------------------------------------------

    @property
    def modulus(self) -> int:
        return 10000 if self.bcd else 65536

    def full_count(self) -> int:
        n = _from_bcd(self.cr) if self.bcd else self.cr
        return n or self.modulus              # count 0 is the largest count

    def _sync(self, t: int) -> None:
        if self.pending is not None and t >= self.pending[0]:
            _, self.load, self.n = self.pending
            self.pending = None

    def _elapsed(self, t: int) -> int:
        if self.frozen is not None:
            return self.frozen
        return max(0, t - self.load)

    def _raw_count(self, t: int) -> int:
        self._sync(t)
        if not self.armed:
            return self.idle_count
        e, n = self._elapsed(t), self.n
        if self.mode == 2:
            return n - e % n
        if self.mode == 3:
            p, high = e % n, (n + 1) // 2
            odd = n & 1
            if p < high:     # odd counts: the first pulse takes 1, later ones 2
                return n if p == 0 else n + odd - 2 * p
            q = p - high     # odd counts: after the reload the first pulse takes 3
            return n if q == 0 else n - odd - 2 * q
        return (n - e) % self.modulus         # modes 0, 1, 4, 5 wrap after terminal count

    def count(self, t: int) -> int:
        c = self._raw_count(t) % self.modulus
        return _to_bcd(c) if self.bcd else c

    def out(self, t: int) -> bool:
        self._sync(t)
        if not self.armed:
            return self.idle_out
        if self.mode in PERIODIC and not self.gate:
            return True                       # gate low forces OUT high
        e, n = self._elapsed(t), self.n
        if self.mode in (0, 1):
            return e >= n
        if self.mode == 2:
            return e % n != n - 1             # low while the count is 1
        if self.mode == 3:
            return e % n < (n + 1) // 2
        return e != n                         # modes 4/5: one-CLK strobe at count 0

    def next_edge(self, t: int) -> int | None:
        """The first tick after ``t`` at which OUT rises, or None."""
        self._sync(t)
        if not self.armed or self.frozen is not None or not self.gate and self.mode in PERIODIC:
            return None
        if self.pending is not None:
            s, new_load, new_n = self.pending
            edge = self._periodic_edge(t, self.load, self.n)
            if edge <= s:
                return edge
            return self._periodic_edge(s - 1, new_load, new_n)
        if self.mode in PERIODIC:
            return self._periodic_edge(t, self.load, self.n)
        edge = self.load + self.n + (1 if self.mode in (4, 5) else 0)
        return edge if edge > t else None

    @staticmethod
    def _periodic_edge(t: int, load: int, n: int) -> int:
        return load + n * max(1, (t - load) // n + 1)

    def null_count(self, t: int) -> bool:
        return self.null_until is None or t < self.null_until

    def status(self, t: int) -> int:
        return ((STATUS_OUTPUT if self.out(t) else 0)
                | (STATUS_NULL_COUNT if self.null_count(t) else 0)
                | self.rw << CW_RW_SHIFT | self.mode_bits << CW_M_SHIFT | int(self.bcd))

    # ---- commands --------------------------------------------------------------

    def control(self, value: int, t: int) -> None:
        """A control word for this counter: reset its logic, OUT to its initial state."""
        self.idle_count = self._raw_count(t) % self.modulus
        self.programmed = True
        self.rw = value >> CW_RW_SHIFT & 3
        self.mode_bits = value >> CW_M_SHIFT & 7
        self.mode = MODE_ALIAS[self.mode_bits]
        self.bcd = bool(value & CW_BCD)
        self.write_msb_next = self.read_msb_next = False
        self.ol = None
        self.ol_reads_left = 0
        self.status_latch = None
        self.armed = False
        self.frozen = None
        self.pending = None
        self.null_until = None
        self.idle_out = self.mode != 0        # mode 0 starts low, all others high

    def latch_count(self, t: int) -> None:
        if self.ol is None and self.programmed:   # a second latch is ignored until read
            self.ol = self.count(t)
            self.ol_reads_left = 2 if self.rw == RW_LSB_MSB else 1

    def latch_status(self, t: int) -> None:
        if self.status_latch is None and self.programmed:
            self.status_latch = self.status(t)

    def read(self, t: int) -> int:
        if self.status_latch is not None:
            value, self.status_latch = self.status_latch, None
            return value
        if self.ol is not None:
            value = self._select_byte(self.ol)
            self.ol_reads_left -= 1
            if self.ol_reads_left <= 0:
                self.ol = None
            return value
        if not self.programmed:
            return 0
        return self._select_byte(self.count(t))

    def _select_byte(self, value: int) -> int:
        if self.rw == RW_MSB:
            return value >> 8 & 0xFF
        if self.rw == RW_LSB_MSB:
            msb = self.read_msb_next
            self.read_msb_next = not msb
            return value >> 8 & 0xFF if msb else value & 0xFF
        return value & 0xFF

    def write(self, value: int, t: int) -> None:
        if not self.programmed:
            return                            # power-on: no access mode yet
        value &= 0xFF
        if self.rw == RW_LSB:
            self.cr = value
        elif self.rw == RW_MSB:
            self.cr = value << 8
        elif not self.write_msb_next:
            self.cr_lsb = value
            self.write_msb_next = True
            if self.mode == 0:                # first byte stops mode-0 counting, OUT low
                self.idle_count = self._raw_count(t) % self.modulus
                self.armed = False
                self.idle_out = False
            return
        else:
            self.cr = self.cr_lsb | value << 8
            self.write_msb_next = False
        self._new_count(t)

    def _new_count(self, t: int) -> None:
        self._sync(t)
        n = self.full_count()
        if self.mode in GATE_TRIGGERED:
            # Takes effect at the next gate trigger; until then the CR holds a count the CE
            # has not loaded, running or not: NULL COUNT is 1 (the datasheet's status rule).
            self.null_until = None
            return
        if self.mode in PERIODIC and self.armed and self.frozen is None and self.gate and t >= self.load:
            self._schedule_switch(t, n)
            return
        self.armed = True
        self.n = n
        self.load = t + 1
        self.null_until = self.load
        self.pending = None
        self.frozen = 0 if not self.gate else None

    def _schedule_switch(self, t: int, n: int) -> None:
        """Modes 2/3: the running period (mode 3: half-cycle) finishes first."""
        period_end = self._periodic_edge(t, self.load, self.n)
        if self.mode == 3:
            high = (self.n + 1) // 2
            fall = period_end - self.n + high
            if fall > t:                      # still in the high half: switch at its end
                self.pending = (fall, fall - (n + 1) // 2, n)
                self.null_until = fall
                return
        self.pending = (period_end, period_end, n)
        self.null_until = period_end

    def set_gate(self, high: bool, t: int) -> None:
        self._sync(t)
        if high == self.gate:
            return
        self.gate = high
        if not self.programmed:
            return
        if self.mode in GATE_TRIGGERED:
            if high:                          # rising edge triggers: CR -> CE on next CLK
                self.armed = True
                self.n = self.full_count()
                self.load = t + 1
                self.null_until = self.load
                self.frozen = None
            return
        if not self.armed:
            return
        if not high:
            self.frozen = self._elapsed(t)
            if self.pending is not None:      # the reload on the next rising edge uses the new CR
                self.n = self.pending[2]
                self.pending = None
        elif self.mode in PERIODIC:
            self.frozen = None                # rising edge reloads the counter
            self.load = t + 1
        else:
            self.load = t - (self.frozen or 0)  # modes 0/4 resume where they stopped
            self.frozen = None


def _counter_state(c: Counter) -> dict:
    """One counter: programming, the count register and its write/read flip-flops, the
    latches, the gate, and the CE's load tick (the count follows from it and the clock)."""
    return {"programmed": c.programmed, "mode_bits": c.mode_bits, "mode": c.mode, "rw": c.rw,
            "bcd": c.bcd, "cr": c.cr, "cr_lsb": c.cr_lsb, "write_msb_next": c.write_msb_next,
            "read_msb_next": c.read_msb_next, "ol": c.ol, "ol_reads_left": c.ol_reads_left,
            "status_latch": c.status_latch, "gate": c.gate, "armed": c.armed, "load": c.load,
            "n": c.n, "frozen": c.frozen, "idle_count": c.idle_count, "idle_out": c.idle_out,
            "null_until": c.null_until,
            "pending": list(c.pending) if c.pending is not None else None}


def _load_counter(c: Counter, s: dict, who: str) -> None:
    ticks = (-(1 << 62), 1 << 62)
    values = dict(
        mode_bits=st.integer(s, "mode_bits", who, 0, 7), mode=st.integer(s, "mode", who, 0, 5),
        rw=st.integer(s, "rw", who, 0, 3), cr=st.integer(s, "cr", who, 0, 0xFFFF),
        cr_lsb=st.integer(s, "cr_lsb", who, 0, 0xFF),
        ol=st.optional_integer(s, "ol", who, 0, 0xFFFF),
        ol_reads_left=st.integer(s, "ol_reads_left", who, 0, 2),
        status_latch=st.optional_integer(s, "status_latch", who, 0, 0xFF),
        load=st.integer(s, "load", who, *ticks), n=st.integer(s, "n", who, 0, 0x10000),
        frozen=st.optional_integer(s, "frozen", who, 0, 1 << 62),
        idle_count=st.integer(s, "idle_count", who, 0, 0xFFFF),
        null_until=st.optional_integer(s, "null_until", who, *ticks))
    flags = {n: st.flag(s, n, who) for n in ("programmed", "bcd", "write_msb_next",
                                             "read_msb_next", "gate", "armed", "idle_out")}
    pending = st.field(s, "pending", who)
    if pending is not None:
        if not isinstance(pending, list) or len(pending) != 3 or \
                any(type(v) is not int or abs(v) > 1 << 62 for v in pending) or \
                not 0 < pending[2] <= 0x10000:
            raise ValueError(f"{who}: saved pending reload is not (tick, load, count)")
        pending = tuple(pending)
    if flags["armed"] and not 0 < values["n"]:
        raise ValueError(f"{who}: an armed counter with no count")
    for name, value in {**values, **flags}.items():
        setattr(c, name, value)                  # count state into the C struct when shared
    c.pending = pending


class Pit8254(SharedStateDevice):
    name = "pit"
    ports = (PortRange(0x40, 4, 0), PortRange(0x61, 1, PORT_B))
    irq = 0

    def __init__(self, clock: Clock, irq0: IrqLine | None = None) -> None:
        self.clock = clock
        self.irq0: IrqLine = irq0 if irq0 is not None else NullIrq()
        self.counters = [Counter(i) for i in range(3)]
        self._timer: Timer | None = None
        self._timer_tick = 0
        self.lost_ticks = 0
        self.irq_count = 0
        self.port_b = 0
        self.reset()

    def reset(self) -> None:
        for c in self.counters:
            c.reset()
        self.port_b = 0                       # speaker off, GATE2 low
        self._rearm()

    def _now_tick(self) -> int:
        return ticks_at(self.clock.now())

    # ---- channel 0 interrupt -------------------------------------------------

    def _rearm(self, t: int | None = None) -> None:
        """Channel 0's next OUT edge as a clock timer. ``t`` is the tick of the access that
        changed the counter: read once per access, so a short mode-0 count cannot pass its
        edge between the write and the arming (the edge was then never armed, and a guest
        waiting for that one-shot interrupt waited for ever)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        edge = self.counters[0].next_edge(self._now_tick() if t is None else t)
        if edge is not None:
            self._timer_tick = edge
            self._timer = self.clock.at(ns_at(edge), self._fire)

    def _fire(self, now: int) -> None:
        self._timer = None
        t = ticks_at(now)
        c = self.counters[0]
        c._sync(t)
        if c.armed and c.mode in PERIODIC and c.pending is None and c.frozen is None:
            # Edges in (deadline, now] that the host slept through: coalesced.
            base = max(self._timer_tick, c.load)
            self.lost_ticks += max(0, (t - c.load) // c.n - (base - c.load) // c.n)
        self.irq_count += 1
        self.irq0.pulse()
        if self._bound:
            self._pull()
        self._rearm(t)
        if self._bound:
            self._push()

    # ---- snapshots ------------------------------------------------------------

    def state(self) -> dict:
        """The three counters (the read flip-flop C advanced included), port B, and channel
        0's next OUT edge as a virtual deadline. The IRQ 0 wire is only ever pulsed."""
        if self._bound:
            self._pull()
        out = st.versioned(counters=[_counter_state(c) for c in self.counters],
                           port_b=self.port_b, timer=st.deadline(self._timer),
                           timer_tick=self._timer_tick, lost_ticks=self.lost_ticks,
                           irq_count=self.irq_count)
        if self._bound:
            self._push()
        return out

    def load_state(self, state: dict) -> None:
        """Counters and port B as saved; channel 0's timer re-armed at its saved deadline;
        the counters C may serve are handed back to it."""
        who = self.name
        st.check_version(state, who)
        counters = st.field(state, "counters", who)
        if not isinstance(counters, list) or len(counters) != 3 or \
                not all(isinstance(c, dict) for c in counters):
            raise ValueError(f"{who}: saved counters are not three counters")
        port_b = st.integer(state, "port_b", who, 0, PORTB_WRITABLE)
        timer_tick = st.integer(state, "timer_tick", who, 0, 1 << 62)
        lost, fired = st.integer(state, "lost_ticks", who), st.integer(state, "irq_count", who)
        if self._bound:
            self._pull()
        for i, (c, saved) in enumerate(zip(self.counters, counters)):
            _load_counter(c, saved, f"{who} counter {i}")
        if self._timer is not None:
            self._timer.cancel()
        self.port_b, self._timer_tick = port_b, timer_tick
        self.lost_ticks, self.irq_count = lost, fired
        self._timer = st.rearm(self.clock, state, "timer", self._fire, who)
        if self._bound:
            self._push()

    # ---- the C fast path -----------------------------------------------------

    def bind_fast(self, fast, port_of) -> None:
        """Let C answer counter reads of channels in mode 2 or 3 with no latch
        pending (programs polling the count, seeding random numbers) from the
        counters' count state, which moves into C memory."""
        for i, c in enumerate(self.counters):
            c.share(fast.pit_channel(port_of(i), i, self.clock))
        self._bound = True
        self._push()

    def _pull(self) -> None:
        for c in self.counters:
            c._state.valid = 0

    def _push(self) -> None:
        """Tell C which counters it may read: the count follows from the shared
        state alone (no latch, reload pending, BCD or held gate)."""
        t = self._now_tick()
        for c in self.counters:
            c._sync(t)
            c._state.valid = int(
                c.programmed and c.armed and c.mode in PERIODIC and not c.bcd
                and c.ol is None and c.status_latch is None and c.frozen is None
                and c.pending is None and c.gate and c.rw in (RW_LSB, RW_MSB, RW_LSB_MSB)
                and c.n > 0 and self.clock._paused_at is None)

    # ---- ports ---------------------------------------------------------------

    # (SharedStateDevice.read/write wrap these)
    def _read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):                 # x86 port I/O: 1, 2 or 4 bytes
            value |= self._read_byte(offset + i) << (8 * i)
        return value

    def _write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            self._write_byte(offset + i, value >> (8 * i) & 0xFF)

    def _read_byte(self, offset: int) -> int:
        t = self._now_tick()
        if offset in (COUNTER0, COUNTER1, COUNTER2):
            return self.counters[offset].read(t)
        if offset == PORT_B:
            return self._read_port_b()
        return 0xFF                            # the control word register is write-only

    def _write_byte(self, offset: int, value: int) -> None:
        t = self._now_tick()
        if offset in (COUNTER0, COUNTER1, COUNTER2):
            self.counters[offset].write(value, t)
            if offset == 0:
                self._rearm(t)
        elif offset == CONTROL:
            self._control(value, t)
        elif offset == PORT_B:
            self.port_b = value & PORTB_WRITABLE
            self.counters[2].set_gate(bool(value & PORTB_GATE2), t)

    def _control(self, value: int, t: int) -> None:
        sc = value >> CW_SC_SHIFT
        if sc == SC_READ_BACK:
            for i, bit in enumerate((RB_CNT0, RB_CNT1, RB_CNT2)):
                if value & bit:
                    if not value & RB_NOT_COUNT:
                        self.counters[i].latch_count(t)
                    if not value & RB_NOT_STATUS:
                        self.counters[i].latch_status(t)
            return
        c = self.counters[sc]
        if value >> CW_RW_SHIFT & 3 == RW_LATCH:
            c.latch_count(t)
            return
        c.control(value, t)
        if sc == 0:
            self._rearm(t)

    def _read_port_b(self) -> int:
        now = self.clock.now()
        refresh = PORTB_REFRESH if (now // REFRESH_NS) & 1 else 0
        out2 = PORTB_OUT2 if self.counters[2].out(ticks_at(now)) else 0
        return self.port_b | refresh | out2

    # ---- introspection ------------------------------------------------------------

    def channel_frequency(self, ch: int) -> float:
        """OUT frequency in Hz for a periodic (mode 2/3) channel, else 0.0."""
        c = self.counters[ch]
        c._sync(self._now_tick())
        if not c.armed or c.mode not in PERIODIC:
            return 0.0
        return PIT_HZ / c.n

    @property                       # (a trailing word: mutmut 2 keys its cache by line text)
    def speaker_on(self) -> bool:
        return (self.port_b & (PORTB_GATE2 | PORTB_SPKR_DATA)) == PORTB_GATE2 | PORTB_SPKR_DATA \
            and self.counters[2].armed and self.counters[2].mode == 3
